#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh on Debian/Ubuntu:
# the Python venv in .venv, and (for the tests) the Debian packages of the real
# servers. Sourced, not run. Set HASHFLEET_NO_APT=1 to forbid apt-get; then a
# missing package is reported with the command to install it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}

say() { printf '[hashfleet] %s\n' "$*" >&2; }

can_be_root() { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {  # apt_install PACKAGE... (only those missing)
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${HASHFLEET_NO_APT:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing Debian packages: ${missing[*]}"
        say "install them with: sudo apt-get install ${missing[*]}"
        exit 1
    fi
    if ! can_be_root; then  # (as_root would fail, and under set -e end the script without a word)
        say "missing Debian packages: ${missing[*]}; installing them needs root, and there is no sudo"
        say "as root, run: apt-get install ${missing[*]}; then run this script again"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_ok() { python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

venv_broken() {  # a venv whose python is there but not pip: an interrupted `python3 -m venv` (ensurepip)
    [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1
}

ensure_venv() {  # ensure_venv EXTRAS   (e.g. "" or "[test]")
    python_ok || { say "hashfleet needs Python >= 3.11 as python3"; exit 1; }
    if venv_broken; then
        say "$VENV has no pip (its set-up was interrupted?): creating it again"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.installed$1" tests="$VENV/.installed[test]"
    if [ -z "$1" ] && [ -f "$tests" ] && [ ! pyproject.toml -nt "$tests" ]; then
        return 0  # the tests' set-up installed hashfleet with everything the demo needs
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing hashfleet$1 into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e ".$1"
        touch "$stamp"
    fi
}

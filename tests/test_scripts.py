"""The README's set-up scripts (scripts/setup.sh, scripts/demo.sh) as a new user runs them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest

from tests.support import wait_for

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)  # the tests' own venv, set up by scripts/test.sh


def _setup(venv_dir: Path, call: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source scripts/setup.sh && {call}'], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "VENV": str(venv_dir), "HASHFLEET_NO_APT": "1"})


def test_a_venv_left_without_pip_by_an_interrupted_set_up_is_made_again(tmp_path):
    # Ctrl-C while `python3 -m venv` runs ensurepip leaves bin/python and no pip: every later run of
    # demo.sh or test.sh failed with "No module named pip" until .venv was deleted by hand.
    venv.create(tmp_path / "interrupted", with_pip=False)
    assert _setup(tmp_path / "interrupted", "venv_broken").returncode == 0
    assert _setup(VENV, "venv_broken").returncode == 1
    assert _setup(tmp_path / "absent", "venv_broken").returncode == 1


def test_the_demo_stops_cleanly_on_ctrl_c(tmp_path):
    # Ctrl-C reaches the simulator and the live view alike; the exit trap then found the simulator gone,
    # failed under `set -e`, left its temp file in /tmp and made the demo exit 1.
    if not (VENV / ".installed[test]").exists():
        pytest.fail(f"{VENV} was not set up by scripts/test.sh (no .installed[test] stamp): run ./scripts/test.sh",
                    pytrace=False)
    temp, out, log = tmp_path / "tmp", tmp_path / "screen.txt", tmp_path / "log.txt"
    temp.mkdir()
    env = {**os.environ, "VENV": str(VENV), "HASHFLEET_NO_APT": "1", "TMPDIR": str(temp),
           "FLEET": "a1566:1,q:1", "BASE": "127.72.0.1", "INTERVAL": "1", "COLUMNS": "120", "LINES": "40"}
    with out.open("w") as screen, log.open("w") as stderr:
        demo = subprocess.Popen(["scripts/demo.sh"], cwd=REPO, env=env, stdout=screen, stderr=stderr,
                                start_new_session=True)
    try:
        wait_for(lambda: "collector.service: cycle 1:" in log.read_text(), timeout=60, what="the live view's first cycle")
        assert len(list(temp.iterdir())) == 1  # the simulator's fleet list
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        demo.wait(timeout=30)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    err = log.read_text()
    assert demo.returncode == 0, err
    assert "simulated fleet:" in err and "Traceback" not in err and "per BTC" in out.read_text()
    assert list(temp.iterdir()) == []


def test_without_root_or_sudo_the_set_up_says_what_to_run_as_root():
    # Not root and no sudo: as_root failed under set -e and the script ended after "installing Debian packages".
    with tempfile.TemporaryDirectory() as temp:  # (pytest's tmp_path is root's alone: 0700)
        bin_dir = Path(temp)  # the commands setup.sh uses, and no sudo
        bin_dir.chmod(0o755)
        for command in ("dirname", "id", "dpkg-query", "grep", "apt-get"):
            found = shutil.which(command)
            assert found, f"{command} is needed by scripts/setup.sh"
            (bin_dir / command).symlink_to(found)
        as_nobody = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 else []
        result = subprocess.run([*as_nobody, shutil.which("bash"), "-c",
                                 "source scripts/setup.sh && apt_install hashfleet-no-such-package"],
                                cwd=REPO, capture_output=True, text=True, timeout=60,
                                env={"PATH": str(bin_dir), "HOME": temp})
    assert result.returncode == 1
    assert "installing them needs root, and there is no sudo" in result.stderr, result.stderr
    assert "as root, run: apt-get install hashfleet-no-such-package" in result.stderr


def test_the_readme_names_every_debian_package_the_test_script_installs():
    script = (REPO / "scripts" / "test.sh").read_text()
    packages = re.search(r"^apt_install (.+)$", script, flags=re.MULTILINE)[1].split()
    readme = (REPO / "README.md").read_text()
    tests_section = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    assert [p for p in packages if f"`{p}`" not in tests_section] == []

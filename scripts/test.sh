#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
# Extra arguments go to pytest, e.g. scripts/test.sh -k avalon -x
source "$(dirname "$0")/setup.sh"
# docker-compose (1.29) validates docker-compose.yml; no Docker engine is needed for that.
# busybox: the secrets script runs under its sh, as in the image; tmux: a real terminal for `watch`;
# logrotate: the audit log rotated as docs/curtailment.md configures it.
apt_install influxdb influxdb-client mosquitto mosquitto-clients docker-compose busybox tmux logrotate
ensure_venv "[test]"
# The stack rehearsal runs each service under its own user id, as its container would: those users must
# reach this checkout. A clone inside `mktemp -d` (mode 0700) is out of their reach, so temporary parent
# directories get the search bit for others (x only: nothing becomes listable); nothing outside /tmp.
dir=$(cd "$(dirname "$0")/.." && pwd)
while [ "$(id -u)" = 0 ] && [ "$dir" != / ]; do
  case "$dir" in
    /tmp/?*) if [ -n "$(find "$dir" -maxdepth 0 ! -perm -o=x)" ]; then
               echo "test.sh: $dir lets other users not through (the rehearsal's service users): chmod o+x" >&2
               chmod o+x "$dir"
             fi ;;
  esac
  dir=$(dirname "$dir")
done
exec "$VENV/bin/python" -m pytest "$@"

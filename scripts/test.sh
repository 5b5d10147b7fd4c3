#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
# Extra arguments go to pytest, e.g. scripts/test.sh -k avalon -x
source "$(dirname "$0")/setup.sh"
# docker-compose (1.29) validates docker-compose.yml; no Docker engine is needed for that.
# busybox: the secrets script runs under its sh, as in the image; tmux: a real terminal for `watch`.
apt_install influxdb influxdb-client mosquitto mosquitto-clients docker-compose busybox tmux
ensure_venv "[test]"
exec "$VENV/bin/python" -m pytest "$@"

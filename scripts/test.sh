#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
# Extra arguments go to pytest, e.g. scripts/test.sh -k avalon -x
source "$(dirname "$0")/setup.sh"
apt_install influxdb influxdb-client mosquitto mosquitto-clients
ensure_venv "[test]"
exec "$VENV/bin/python" -m pytest "$@"

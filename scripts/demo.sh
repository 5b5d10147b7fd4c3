#!/usr/bin/env bash
# The main job on its embedded default, no servers needed: a simulated Avalon
# fleet answering on loopback. Ctrl-C stops it.
source "$(dirname "$0")/setup.sh"
ensure_venv ""
exec "$VENV/bin/hashfleet" simulate --fleet "${FLEET:-a1246:2,a1566:2,a1466:1,q:1,nano3s:1}" --base "${BASE:-127.10.0.1}" --seed "${SEED:-7}" "$@"

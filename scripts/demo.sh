#!/usr/bin/env bash
# The main job on its embedded default, no servers needed: a simulated Avalon
# fleet on loopback (127.10.0.1-9) and the live terminal view of it, with cost
# per BTC from hashfleet.example.yaml. Ctrl-C stops both.
source "$(dirname "$0")/setup.sh"
ensure_venv ""

FLEET=${FLEET:-a1246:2,a1566:2,a1466:1,q:1,nano3s:1,nano3:1,av741:1}
addresses=$(mktemp)
# (Ctrl-C reaches the simulator too: it may be gone already, and the trap must still clean up.)
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; rm -f "$addresses"' EXIT
"$VENV/bin/hashfleet" simulate --fleet "$FLEET" --base "${BASE:-127.10.0.1}" --seed "${SEED:-7}" >"$addresses" &
sim=$!
# The simulator prints one ADDRESS MODEL line per miner once it listens: wait for all of them.
expected=$("$VENV/bin/python" -c "import sys; print(sum(int((p.split(':') + ['1'])[1]) for p in sys.argv[1].split(',')))" "$FLEET")
for _ in $(seq 100); do
    [ "$(wc -l <"$addresses")" -ge "$expected" ] && break
    kill -0 "$sim" 2>/dev/null || { say "the simulator stopped"; exit 1; }
    sleep 0.1
done
say "simulated fleet:"; cat "$addresses" >&2
miners=$(cut -d' ' -f1 "$addresses" | paste -sd, -)
"$VENV/bin/hashfleet" watch --config hashfleet.example.yaml --miners "$miners" --interval "${INTERVAL:-5}" "$@"

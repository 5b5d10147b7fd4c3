"""`python -m bench.avalon_parse FILE...`: CPU time of one `avalon.parse` call on recorded Avalon replies.

Each FILE is the raw bytes of a `version+summary+estats+pools` reply (a simulated miner's, recorded
with `--record HOST:PORT FILE`, or a reply fixture from tests/data/replies/avalon/). Decoding is done
once, outside the timing; `time.process_time`, best of --rounds x --number calls.

To compare two versions of the driver in one session, run this file against each checkout in turn
(PYTHONPATH=<checkout>; the first line printed names the driver module that was timed), alternating,
and take the best of each: the shared machine's noise is larger than the differences measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path

from collector.sources import avalon
from collector.sources import cgminer_client as cgminer

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def per_call_us(raw: bytes, rounds: int, number: int) -> float:
    reply = cgminer.decode(raw, "bench")
    timer = timeit.Timer(lambda: avalon.parse(reply, host="10.0.0.9", port=4028, site="s", ts=TS),
                         timer=time.process_time)
    return min(timer.repeat(repeat=rounds, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.avalon_parse", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path, help="raw replies to parse")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--number", type=int, default=3000)
    p.add_argument("--record", nargs=2, metavar=("HOST:PORT", "FILE"),
                   help="first save the reply of the miner at HOST:PORT to FILE (and time it too)")
    args = p.parse_args(argv)
    files = list(args.files)
    if args.record:
        address, out = args.record
        host, _, port = address.rpartition(":")
        Path(out).write_bytes(asyncio.run(cgminer.request(host, int(port), avalon.POLL_COMMAND)))
        files.append(Path(out))
    print(f"driver: {avalon.__file__}")
    for file in files:
        print(f"{per_call_us(file.read_bytes(), args.rounds, args.number):8.1f} µs  {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

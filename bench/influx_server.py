"""`python -m bench.influx_server --workdir DIR --database NAME`: a real InfluxDB for a benchmark.

Runs the test suite's server classes (tests/servers: influxd 1.6.7 from Debian plus the v2-write
shim, DESIGN.md section 7) in this helper process, so neither influxd's nor the shim's CPU lands in
the measured process. Prints one JSON line (url, raw_url, token, org, database, pids) once influxd
answers and the database exists; stops both when its stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--database", default="hashfleet_bench")
    args = parser.parse_args()

    sys.path.insert(0, str(TESTS))  # tests/ is not a package: its server classes import as `servers`
    from servers import InfluxDB

    server = InfluxDB(args.workdir, token="hashfleet-bench-token")

    def stop(*_: object) -> None:
        server.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start()
        server.create_database(args.database)
        process = getattr(server, "_process", None)
        influxd = getattr(getattr(process, "proc", None), "pid", None)
        print(json.dumps({"url": server.url, "raw_url": server.raw_url, "token": server.token, "org": server.org,
                          "database": args.database, "influxd_pid": influxd, "helper_pid": os.getpid()}), flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    finally:
        server.close()


if __name__ == "__main__":
    main()

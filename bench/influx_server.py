"""`python -m bench.influx_server --workdir DIR --database NAME`: a real InfluxDB for a benchmark.

Runs the test suite's server classes (tests/servers, an importable package: influxd 1.6.7 from Debian plus the v2-write
shim, DESIGN.md section 7) in this helper process, so neither influxd's nor the shim's CPU lands in
the measured process. Prints one JSON line (url, raw_url, token, org, database, pids) once influxd
answers and the database exists; stops both when its stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SNAPSHOT = "INFLUXD_STORAGE_CACHE_SNAPSHOT_MEMORY_SIZE"


def compose_cache_snapshot_bytes(compose_file: Path = ROOT / "docker-compose.yml") -> int:
    """The cache snapshot size the site stack gives InfluxDB (its `${VAR:-default}` default), so the
    benchmark's influxd is tuned as a site's is."""
    import yaml

    environment = yaml.safe_load(compose_file.read_text())["services"]["influxdb"]["environment"]
    value = str(environment[COMPOSE_SNAPSHOT])
    match = re.fullmatch(r"\$\{\w+:-(\d+)\}|(\d+)", value)
    if match is None:
        raise ValueError(f"{compose_file}: {COMPOSE_SNAPSHOT} is {value!r}, expected bytes or ${{VAR:-bytes}}")
    return int(match.group(1) or match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--database", default="hashfleet_bench")
    parser.add_argument("--cache-snapshot-bytes", type=int, default=None,
                        help="influxd's cache snapshot size (default: docker-compose.yml's; 0: influxd's own 25 MiB)")
    args = parser.parse_args()
    snapshot = compose_cache_snapshot_bytes() if args.cache_snapshot_bytes is None else args.cache_snapshot_bytes

    from tests.servers import InfluxDB

    # influxd 1.6's name for InfluxDB 2's storage-cache-snapshot-memory-size (the same TSM engine)
    settings = {"INFLUXDB_DATA_CACHE_SNAPSHOT_MEMORY_SIZE": str(snapshot)} if snapshot else {}
    server = InfluxDB(args.workdir, token="hashfleet-bench-token", settings=settings)

    def stop(*_: object) -> None:
        server.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.start()
        server.create_database(args.database)
        influxd = server.pid
        print(json.dumps({"url": server.url, "raw_url": server.raw_url, "token": server.token, "org": server.org,
                          "database": args.database, "influxd_pid": influxd, "helper_pid": os.getpid(),
                          "cache_snapshot_bytes": snapshot or None}), flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    finally:
        server.close()


if __name__ == "__main__":
    main()

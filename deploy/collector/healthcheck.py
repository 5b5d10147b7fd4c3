"""Container healthcheck of the collector: healthy while this site's `collector` points keep arriving.

Asks InfluxDB (InfluxQL over /query, which 1.x, 2.x and 3.x answer) for the last `collector` point
of HASHFLEET_SITE newer than HEALTH_MAX_AGE_S (default 120 s), with the token in
HEALTHCHECK_INFLUX_TOKEN_FILE (else INFLUX_TOKEN or INFLUX_TOKEN_FILE). Exit 0: it exists; exit 1: it does
not, or InfluxDB cannot be asked (the reason is printed, never the token). Measurement and field names
come from the schema's one home (models/schema.py, installed in the image with the collector).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from models.schema import COLLECTOR

FIELD = "poll_duration_s"  # written every cycle (tests/dashboards/test_schema_names.py checks it exists)


def token() -> str:
    # The compose stack gives the healthcheck its own read-only token: the collector's is write-only.
    if os.environ.get("HEALTHCHECK_INFLUX_TOKEN_FILE"):
        with open(os.environ["HEALTHCHECK_INFLUX_TOKEN_FILE"]) as f:
            return f.read().strip()
    if os.environ.get("INFLUX_TOKEN"):
        return os.environ["INFLUX_TOKEN"]
    path = os.environ.get("INFLUX_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return ""


def main() -> int:
    url = os.environ.get("INFLUX_URL", "http://influxdb:8086").rstrip("/")
    bucket = os.environ.get("INFLUX_BUCKET", "hashfleet")
    site = os.environ.get("HASHFLEET_SITE", "default").replace("\\", "\\\\").replace("'", "\\'")
    max_age = int(float(os.environ.get("HEALTH_MAX_AGE_S", "120")))
    query = (f'SELECT last("{FIELD}") FROM "{COLLECTOR.name}" WHERE "site" = \'{site}\' '
             f"AND time > now() - {max_age}s")
    body = urllib.parse.urlencode({"db": bucket, "q": query}).encode()
    request = urllib.request.Request(f"{url}/query", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    secret = token()
    if secret:
        request.add_header("Authorization", f"Token {secret}")
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            reply = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"unhealthy: cannot query InfluxDB at {url}: {e}")
        return 1
    results = reply.get("results") or [{}]
    if "error" in results[0]:
        print(f"unhealthy: InfluxDB refused the query: {results[0]['error']}")
        return 1
    if not results[0].get("series"):
        print(f"unhealthy: no collector point for site {site!r} in bucket {bucket!r} in the last {max_age} s")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())

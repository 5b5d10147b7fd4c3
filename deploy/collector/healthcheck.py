"""Container healthcheck of the collector: healthy while this site's `collector` points keep arriving.

Asks InfluxDB (InfluxQL over /query, which 1.x, 2.x and 3.x answer) for the last `collector` point
of HASHFLEET_SITE newer than HEALTH_MAX_AGE_S (default 120 s), with the token in
HEALTHCHECK_INFLUX_TOKEN_FILE (else INFLUX_TOKEN or INFLUX_TOKEN_FILE), read by the collector's one rule for
a token (models.base.checked_token). Exit 0: it exists; exit 1: it does not, or InfluxDB cannot be asked (the
reason is printed, never the token nor credentials in INFLUX_URL: Docker keeps it in the health log).
Measurement and field names come from the schema's one home (models/schema.py, installed in the image with
the collector).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from collector.redact import redact, redact_url
from models.base import checked_token, read_secret_file
from models.schema import COLLECTOR

FIELD = "poll_duration_s"  # written every cycle (tests/dashboards/test_schema_names.py checks it exists)


MAX_ANSWER_BYTES = 1 << 20


def token() -> str:
    """The token; ValueError naming the variable (and file), never the token."""
    # The compose stack gives the healthcheck its own read-only token: the collector's is write-only.
    for variable in ("HEALTHCHECK_INFLUX_TOKEN_FILE", "INFLUX_TOKEN", "INFLUX_TOKEN_FILE"):
        value = os.environ.get(variable)
        if value:
            if variable.endswith("_FILE"):
                return read_secret_file(Path(value), variable, token=True)
            return checked_token(value, variable)
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
    where = redact_url(url)
    try:
        secret = token()
    except ValueError as e:
        print(f"unhealthy: {e}")
        return 1
    if secret:
        request.add_header("Authorization", f"Token {secret}")
    try:
        response = urllib.request.urlopen(request, timeout=8)
    except (urllib.error.URLError, OSError) as e:
        print(f"unhealthy: cannot query InfluxDB at {where}: {redact(str(e))}")
        return 1
    except ValueError:  # http.client refused to send a header: its message quotes it, token and all
        print(f"unhealthy: cannot query InfluxDB at {where}: the request could not be sent (a header value the "
              "HTTP client refused)")
        return 1
    with response:
        try:
            body = response.read(MAX_ANSWER_BYTES + 1)  # (the answer to one `last()` is a few hundred bytes)
            reply = json.loads(body) if len(body) <= MAX_ANSWER_BYTES else None
        except (OSError, ValueError):
            reply = None
    results = reply.get("results") or [{}] if isinstance(reply, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        print(f"unhealthy: InfluxDB at {where} answered something other than its JSON")
        return 1
    if "error" in results[0]:
        print(f"unhealthy: InfluxDB refused the query: {str(results[0]['error'])[:300]}")
        return 1
    if not results[0].get("series"):
        print(f"unhealthy: no collector point for site {site!r} in bucket {bucket!r} in the last {max_age} s (the "
              "collector's log says why its writes fail: docker compose logs collector)")
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())

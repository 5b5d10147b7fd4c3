"""Real servers for tests: InfluxDB 1.6.7 (+ v2 write shim) and Mosquitto.

Debian packages, no Docker (see DESIGN.md section 7). One module per job:

- ``servers.influxdb``        -- :class:`InfluxDB`: influxd process + shim, InfluxQL helpers
- ``servers.influx_v2_shim``  -- :class:`InfluxV2Shim`: /api/v2/write -> /write, /health -> /ping;
  the operator token and bucket-scoped read/write tokens, enforced as 2.x does
- ``servers.influx_cli``      -- a stand-in for the two influx 2.x CLI commands the compose stack's
  InfluxDB init hook runs (a script, put on PATH as ``influx`` by the stack rehearsal)
- ``servers.mosquitto``       -- :class:`MosquittoBroker`: anonymous + password/ACL listeners
- ``servers.lying_influx``    -- :class:`LyingInflux`: an HTTP server that answers writes wrongly
  (200 with a body, non-UTF-8, endless, garbage, silence), then forwards to a real InfluxDB
- ``servers.ports``           -- :func:`free_port`: free loopback ports
- ``servers.process``         -- process control; :class:`MissingBinaryError`,
  :class:`ServerStartError`
- ``servers.fixtures``        -- the pytest fixtures ``influxdb``, ``influx_bucket``,
  ``mosquitto`` (re-exported by ``tests/conftest.py``)

Tests normally use the fixtures only. ``tests/`` has no ``__init__.py``, so
pytest puts ``tests/`` on ``sys.path`` and this package imports as ``servers``
(``from servers import InfluxV2Shim``) when a test needs a class directly,
e.g. a second shim with a different ``require_token``.
"""

from .influx_v2_shim import InfluxV2Shim
from .influxdb import InfluxDB, InfluxQueryError
from .lying_influx import LyingInflux
from .mosquitto import MosquittoBroker
from .ports import free_port, free_ports
from .process import MissingBinaryError, ServerStartError

__all__ = [
    "InfluxDB",
    "InfluxQueryError",
    "InfluxV2Shim",
    "LyingInflux",
    "MosquittoBroker",
    "MissingBinaryError",
    "ServerStartError",
    "free_port",
    "free_ports",
]

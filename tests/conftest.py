"""Shared fixtures. The real-server fixtures live in ``tests/servers/``:

- ``influxdb`` (session): real InfluxDB 1.6.7 + v2 write shim (``servers/influxdb.py``)
- ``influx_bucket`` (function): a fresh database/bucket name per test
- ``mosquitto`` (session): real Mosquitto, anonymous + password/ACL listeners
  (``servers/mosquitto.py``)
"""

import pytest

from tests.servers.fixtures import influx_bucket, influxdb, mosquitto, restart_servers_left_stopped

__all__ = ["influxdb", "influx_bucket", "mosquitto", "restart_servers_left_stopped"]


@pytest.fixture(autouse=True)
def _spool_in_test_dir(tmp_path_factory, monkeypatch):
    """Every test (and the hashfleet processes it starts) spools into its own temporary directory,
    never into the user's home, and never into another test's spool."""
    monkeypatch.setenv("HASHFLEET_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))

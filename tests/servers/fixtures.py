"""pytest fixtures for the real test servers (imported by ``tests/conftest.py``).

``influxdb`` (session)
    :class:`servers.influxdb.InfluxDB`, started once per session: real influxd
    1.6.7 plus the v2 write shim. ``.url``/``.token``/``.org`` for
    influxdb-client, ``.raw_url`` for v1, ``.query(influxql, database)`` ->
    list of row dicts, ``.create_database(name)``, ``.stop()``/``.start()``/
    ``.outage()`` on the same ports and data dir. See ``servers/influxdb.py``.
``influx_bucket`` (function)
    name of a fresh, uniquely named database (= v2 bucket, retention policy
    ``autogen``) created for this test and dropped afterwards.
``mosquitto`` (session)
    :class:`servers.mosquitto.MosquittoBroker`, started once per session:
    ``.host``, ``.port`` (anonymous), ``.auth_port`` (password + ACL),
    ``.users``, ``.stop()``/``.start()``/``.restart()``/``.outage()`` on the
    same ports. See ``servers/mosquitto.py``.

A missing binary fails the requesting test with install instructions
(``pytest.fail``; nothing is skipped). Servers are stopped at session end
(SIGTERM, then SIGKILL), also when tests fail, and at interpreter exit as a
last resort. If a test leaves a server stopped (e.g. it failed inside an
outage), an autouse fixture starts it again after that test and warns, so
later tests do not fail in cascade.
"""

from __future__ import annotations

import atexit
import re
import uuid
import warnings
from collections.abc import Iterator

import pytest

from .influxdb import InfluxDB, InfluxQueryError
from .mosquitto import MosquittoBroker
from .process import MissingBinaryError, ServerStartError

__all__ = ["influxdb", "influx_bucket", "mosquitto", "restart_servers_left_stopped"]

# Servers started in this session, checked after every test.
_started: list[InfluxDB | MosquittoBroker] = []


def _start(factory):
    """Create and start a server; turn known start-up problems into pytest.fail."""
    problem = None
    try:
        server = factory()
    except MissingBinaryError as exc:
        problem = str(exc)
    else:
        atexit.register(server.close)
        try:
            server.start()
        except ServerStartError as exc:
            server.close()
            problem = str(exc)
    if problem is not None:  # outside the except block: no chained traceback
        pytest.fail(problem, pytrace=False)
    _started.append(server)
    return server


def _finish(server) -> None:
    _started.remove(server)
    server.close()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A real InfluxDB 1.6.7 with a v2 write shim, for the whole session."""
    server = _start(lambda: InfluxDB(tmp_path_factory.mktemp("influxdb")))
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture
def influx_bucket(influxdb: InfluxDB, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database (v2 bucket) for this test; dropped afterwards."""
    stem = re.sub(r"\W+", "_", request.node.name).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    influxdb.ensure_running()
    influxdb.create_database(name)
    yield name
    if influxdb.is_running:
        try:
            influxdb.drop_database(name)
        except (OSError, InfluxQueryError):
            pass  # best effort: the data dir is temporary anyway


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A real Mosquitto broker (anonymous + authenticated listener), for the whole session."""
    server = _start(MosquittoBroker)
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture(autouse=True)
def restart_servers_left_stopped(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, start again any session server the test left stopped."""
    yield
    for server in list(_started):
        if not server.is_running:
            warnings.warn(
                f"{request.node.nodeid} left {type(server).__name__} stopped; starting it again",
                stacklevel=1,
            )
            server.ensure_running()

"""A real Mosquitto broker (Debian ``mosquitto`` 2.0) for tests.

Used through the session fixture ``mosquitto`` (``tests/servers/fixtures.py``)::

    def test_publish(mosquitto):
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.connect(mosquitto.host, mosquitto.port)               # anonymous
        auth = mqtt.Client(CallbackAPIVersion.VERSION2)
        auth.username_pw_set("hashfleet", mosquitto.users["hashfleet"])
        auth.connect(mosquitto.host, mosquitto.auth_port)           # password + ACL

Two listeners on free loopback ports, ``per_listener_settings true``,
``persistence false`` (retained messages do not survive a restart):

``port``
    anonymous, no ACL: anyone may publish and subscribe to anything.
``auth_port``
    ``allow_anonymous false`` with a ``password_file`` (made with
    ``mosquitto_passwd -c -b``) and an ``acl_file``::

        user hashfleet           read+write  hashfleet/#  homeassistant/#
        user reader              read        hashfleet/#  homeassistant/#

    Bad credentials are refused in CONNACK with reason "Not authorized"
    (code 135 under MQTT v5, return code 5 under 3.1.1; measured on 2.0.11).
    A publish the ACL denies is dropped silently under 3.1.1; under MQTT v5 a
    QoS 1 publish gets a PUBACK with reason "Not authorized" (135).

Attributes
    ``host``, ``port`` (anonymous), ``auth_port``, ``users`` (dict username ->
    password: ``hashfleet``, ``reader``), ``acl`` (dict username -> {topic
    filter: "read" | "readwrite"}), ``workdir``, ``config_path``, ``log_path``
    (broker log, all starts appended; ``log_type all``), ``is_running``
Methods
    ``start(timeout=15.0) -> float``  start on the same ports; seconds to ready
    ``stop(timeout=10.0)``            SIGTERM, SIGKILL after ``timeout``
    ``restart() -> float``, ``ensure_running()``, ``outage()`` (context
    manager: stop, yield, start even if the block fails), ``close()`` (stop and
    delete the work dir if this object created it), ``log_tail(lines=30)``

Readiness: ``mosquitto_sub -p PORT -t '$SYS/broker/version' -C 1 -W 2`` is run
every 50 ms until it returns 0 (the broker answered with its retained version),
then the auth listener must accept a TCP connection; ``timeout`` overall, and
an exit or timeout raises :class:`~servers.process.ServerStartError` with the
log tail.

Run as root, mosquitto drops to user ``mosquitto``, so the work dir is a fresh
``/tmp/hashfleet-mosquitto-*`` (mode 0755; pytest's own temp dirs are 0700) and
its files are world-readable. The log is written by this process (the broker's
stderr), so it needs no permissions.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .ports import free_ports
from .process import ManagedProcess, Server, ServerStartError, require_binary

__all__ = ["MosquittoBroker", "DEFAULT_USERS", "DEFAULT_ACL"]

DEFAULT_USERS = {"hashfleet": "hashfleet-test-password", "reader": "reader-test-password"}
DEFAULT_ACL = {
    "hashfleet": {"hashfleet/#": "readwrite", "homeassistant/#": "readwrite"},
    "reader": {"hashfleet/#": "read", "homeassistant/#": "read"},
}


class MosquittoBroker(Server):
    """Mosquitto with an anonymous and an authenticated listener; see module doc."""

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        users: Mapping[str, str] = DEFAULT_USERS,
        acl: Mapping[str, Mapping[str, str]] = DEFAULT_ACL,
    ) -> None:
        super().__init__()
        self._binary = require_binary("mosquitto", "mosquitto")
        self._passwd = require_binary("mosquitto_passwd", "mosquitto")
        self._sub = require_binary("mosquitto_sub", "mosquitto-clients")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="hashfleet-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.host = host
        self.users = dict(users)
        self.acl = {user: dict(rules) for user, rules in acl.items()}
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.port, self.auth_port = free_ports(2, host)
        self._write_security_files()

    # -- files -----------------------------------------------------------

    def _write_security_files(self) -> None:
        passwords = self.workdir / "passwords"
        passwords.unlink(missing_ok=True)
        for index, (user, password) in enumerate(self.users.items()):
            argv = [self._passwd, *(["-c"] if index == 0 else []), "-b", str(passwords), user, password]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                raise ServerStartError(f"mosquitto_passwd failed for {user!r}: {done.stderr or done.stdout}")
        acl_lines = []
        for user, rules in self.acl.items():
            acl_lines.append(f"user {user}")
            acl_lines += [f"topic {access} {topic}" for topic, access in rules.items()]
            acl_lines.append("")
        (self.workdir / "acl").write_text("\n".join(acl_lines))
        for path in (passwords, self.workdir / "acl"):
            path.chmod(0o644)

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    "per_listener_settings true",
                    "persistence false",
                    "log_dest stderr",
                    "log_type all",
                    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                    "",
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "",
                    f"listener {self.auth_port} {self.host}",
                    "allow_anonymous false",
                    f"password_file {self.workdir / 'passwords'}",
                    f"acl_file {self.workdir / 'acl'}",
                    "",
                ]
            )
        )
        self.config_path.chmod(0o644)

    # -- lifecycle (tests.servers.process.Server) --------------------------

    def _spawn(self) -> ManagedProcess:
        self._write_config()
        process = ManagedProcess("mosquitto", [self._binary, "-c", str(self.config_path)], self.log_path,
                                 cwd=self.workdir)
        process.spawn()
        return process

    def _new_ports(self) -> None:
        self.port, self.auth_port = free_ports(2, self.host)

    def _ready(self) -> bool:
        try:
            done = subprocess.run(
                [self._sub, "-h", self.host, "-p", str(self.port), "-t", "$SYS/broker/version",
                 "-C", "1", "-W", "2"],
                capture_output=True,
                timeout=5,
            )
        except subprocess.TimeoutExpired:
            return False
        if done.returncode != 0:
            return False
        try:
            socket.create_connection((self.host, self.auth_port), timeout=2).close()
        except OSError:
            return False
        return True

    def close(self) -> None:
        super().close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

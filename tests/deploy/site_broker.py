"""The stack's broker run natively: the shipped deploy/mosquitto/mosquitto.conf, site.acl and health.acl, and
the users deploy/secrets/init-secrets.sh creates, with only paths, ports and persistence changed (no tests here).

    secrets = init_secrets(tmp_path / "secrets")            # runs the real script
    with shipped_broker(secrets) as broker:                  # broker.port: the site listener (1883 in the stack)
        ...broker.passwords["devices"]...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.ports import free_port
from tests.support import REPO as ROOT

SECRETS = "/run/hashfleet-secrets"
SITE_ACL = ROOT / "deploy/mosquitto/site.acl"
# user -> the secret init-secrets.sh writes its password to
MQTT_USERS = {"hashfleet": "mqtt_password", "homeassistant": "mqtt_ha_password", "devices": "mqtt_device_password"}


def require(binary: str, package: str) -> str:
    path = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        pytest.fail(f"`{binary}` is missing: sudo apt-get install {package} (or run ./scripts/test.sh)", pytrace=False)
    return path


def run_init_secrets(directory: Path, shell: tuple[str, ...] = ("sh",), **env: str) -> subprocess.CompletedProcess:
    """deploy/secrets/init-secrets.sh as the `secrets` service runs it; the ACL it checks names against is the
    repository's (the image has it at /mosquitto/config/site.acl)."""
    require("mosquitto_passwd", "mosquitto")
    return subprocess.run([*shell, str(ROOT / "deploy/secrets/init-secrets.sh")], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ["PATH"], "SECRETS_DIR": str(directory),
                                           "MOSQUITTO_ACL": str(SITE_ACL), **env})


@dataclass
class SiteBroker:
    host: str
    port: int  # the site listener
    health_port: int
    passwords: dict[str, str]  # user -> password, as init-secrets.sh made them
    secrets: Path
    log: Path


@contextmanager
def shipped_broker(secrets: Path) -> Iterator[SiteBroker]:
    """Mosquitto with the shipped config: its listeners moved to free loopback ports, its files' paths to a
    world-readable copy (run as root, the broker drops to Debian's `mosquitto` user), persistence off."""
    mosquitto = require("mosquitto", "mosquitto")
    sub = require("mosquitto_sub", "mosquitto-clients")
    work = Path(tempfile.mkdtemp(prefix="hashfleet-mosquitto-"))
    work.chmod(0o755)
    try:
        for name, source in [("passwd", secrets / "mosquitto_passwd"), ("site.acl", SITE_ACL),
                             ("health.acl", ROOT / "deploy/mosquitto/health.acl")]:
            (work / name).write_bytes(source.read_bytes())
            (work / name).chmod(0o644)
        port, health_port = free_port(), free_port()
        conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
        for old, new in [(f"{SECRETS}/mosquitto_passwd", str(work / "passwd")),
                         ("/mosquitto/config/site.acl", str(work / "site.acl")),
                         ("/mosquitto/config/health.acl", str(work / "health.acl")),
                         ("listener 1883\n", f"listener {port} 127.0.0.1\n"),
                         ("listener 1880 127.0.0.1\n", f"listener {health_port} 127.0.0.1\n")]:
            assert old in conf, f"mosquitto.conf no longer has {old!r}: adapt tests/deploy/site_broker.py"
            conf = conf.replace(old, new)
        conf = re.sub(r"^persistence.*$", "", conf, flags=re.M) + "\npersistence false\nlog_type all\n"
        (work / "mosquitto.conf").write_text(conf)
        (work / "mosquitto.conf").chmod(0o644)
        log = work / "mosquitto.log"
        with open(log, "w") as out:
            broker = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")], stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            # Ready as the compose healthcheck sees it: the anonymous health listener answers.
            probe = [sub, "-h", "127.0.0.1", "-p", str(health_port), "-t", "$SYS/broker/version", "-C", "1", "-W", "2"]
            deadline = time.monotonic() + 15
            while subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
                assert broker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"mosquitto did not start: {log.read_text()}"
            passwords = {user: (secrets / secret).read_text().strip() for user, secret in MQTT_USERS.items()}
            yield SiteBroker("127.0.0.1", port, health_port, passwords, secrets, log)
        finally:
            broker.terminate()
            broker.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)

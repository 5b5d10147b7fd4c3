"""The docker compose site stack, checked without a Docker engine.

- Debian's docker-compose 1.29 (`config -q`) and check-jsonschema's compose-spec schema accept the file;
- every file a service mounts or builds from exists, and the image build copies only what exists;
- every variable the file uses is documented in .env.example, and has a default;
- only Grafana is published beyond localhost, no admin/admin, anonymous access off, secrets in files;
- healthchecks, restart policies, named volumes, pinned images, start order;
- the secrets init script, the Mosquitto config (with a real mosquitto) and the collector's
  healthcheck (with the real InfluxDB and collector) do what the stack relies on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from support import HASHFLEET

from simulators.fleet import run_fleet

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = "/run/hashfleet-secrets"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, $VAR; $$ is a literal dollar.
_VARIABLE = re.compile(r"(?<!\$)\$(?:\{(?P<braced>\w+)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))")


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        pytest.fail(f"`{binary}` is missing: sudo apt-get install {package} (or run ./scripts/test.sh)", pytrace=False)
    return path


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without any variable the compose file reads, so defaults are what is checked."""
    used = {m.group("braced") or m.group("bare") for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())}
    env = {k: v for k, v in os.environ.items() if k not in used and not k.startswith("COMPOSE_")}
    return {**env, **extra}


def _compose(*args: str, env_file: Path, compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_require("docker-compose", "docker-compose"), "-f", str(compose_file), "--project-directory", str(ROOT),
         "--env-file", str(env_file), *args],
        capture_output=True, text=True, timeout=60, env=_clean_env())


@pytest.fixture(scope="module")
def empty_env(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def resolved(empty_env) -> dict:
    """`docker-compose config` with every default: what a fresh host without .env runs."""
    result = _compose("config", env_file=empty_env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=value"
            pairs[key.strip()] = value
    return pairs


# --- the file is valid for both checkers ---------------------------------------------------------


@pytest.mark.parametrize("env_file", ["empty", ".env.example"])
def test_docker_compose_1_29_accepts_the_file(empty_env, env_file):
    result = _compose("config", "-q", env_file=empty_env if env_file == "empty" else ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


def test_the_docker_compose_check_can_fail(tmp_path, empty_env):
    # Debian's 1.29 rejects a top-level `name:` and healthcheck `start_interval`: the check is real.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("name: hashfleet\n" + COMPOSE_FILE.read_text())
    assert _compose("config", "-q", env_file=empty_env, compose_file=broken).returncode != 0


def test_compose_spec_schema_accepts_the_file():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- files and variables ---------------------------------------------------------------------------


def test_every_mounted_or_built_file_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = ROOT / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: no Dockerfile"


def test_the_image_copies_only_what_exists_and_is_not_ignored():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
                top = source.split("/")[0]
                assert top not in ignored, f"Dockerfile copies {source} but .dockerignore drops it"
    assert ".env" in ignored, "a local .env (secrets) must stay out of the build context"


def test_every_variable_is_documented_in_env_example_and_has_a_default(compose):
    documented = _env_example()
    text = COMPOSE_FILE.read_text()
    used = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("braced") or match.group("bare")
        used.setdefault(name, set()).add(match.group("op"))
    assert used, "no variables found: the pattern is broken"
    undocumented = sorted(set(used) - set(documented))
    assert undocumented == [], f"add to .env.example: {undocumented}"
    no_default = sorted(name for name, ops in used.items() if None in ops or ":?" in ops or "?" in ops)
    assert no_default == [], f"give these a default (${{VAR:-x}}): {no_default}"
    unused = sorted(set(documented) - set(used))
    assert unused == [], f".env.example documents variables the compose file does not use: {unused}"


def test_env_example_holds_no_secret_values():
    values = _env_example()
    for key in ("INFLUX_TOKEN", "INFLUX_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "MQTT_PASSWORD"):
        assert values[key] == "", f"{key} must be empty in .env.example (generated on first start)"


# --- exposure and secrets ----------------------------------------------------------------------------


def test_only_grafana_is_published_beyond_localhost(resolved):
    published = {}
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):  # long syntax (compose v2)
                host_ip = port.get("host_ip", "0.0.0.0")
            else:  # "IP:HOST:CONTAINER/tcp" (docker-compose 1.29); no IP means every address
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            published.setdefault(name, set()).add(host_ip)
    assert published.pop("grafana") == {"0.0.0.0"}
    assert all(ips == {"127.0.0.1"} for ips in published.values()), published


def test_grafana_has_no_default_password_and_no_anonymous_access(resolved, compose):
    env = resolved["services"]["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"{SECRETS}/grafana_admin_password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "admin:admin" not in COMPOSE_FILE.read_text()


def test_services_read_secrets_from_files_never_from_literal_values(resolved):
    influx = resolved["services"]["influxdb"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"] == f"{SECRETS}/influx_token"
    assert influx["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"] == f"{SECRETS}/influx_admin_password"
    assert "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" not in influx and "DOCKER_INFLUXDB_INIT_PASSWORD" not in influx
    collector = resolved["services"]["collector"]["environment"]
    assert collector["INFLUX_TOKEN_FILE"] == f"{SECRETS}/influx_token" and "INFLUX_TOKEN" not in collector
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/hashfleet.yaml").read_text()
    assert f"$__file{{{SECRETS}/influx_token}}" in datasource
    for name, service in resolved["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|PASSWORD", key) and not key.endswith("_FILE"):
                assert name == "secrets" and value == "", f"{name}: {key} carries a secret value"


def test_mosquitto_requires_a_password():
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert re.search(rf"^password_file {SECRETS}/mosquitto_passwd$", conf, re.M)


# --- running the stack -----------------------------------------------------------------------------


def test_long_running_services_have_healthchecks_restart_policies_and_named_volumes(resolved):
    services = resolved["services"]
    assert services["secrets"]["restart"] == "no"
    for name, service in services.items():
        if name == "secrets":
            continue
        assert service["restart"] == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert "start_interval" not in service["healthcheck"]
    for name in ("influxdb", "grafana", "mosquitto"):
        named = [v for v in services[name]["volumes"] if v.get("type") == "volume"] if isinstance(
            services[name]["volumes"][0], dict) else [v for v in services[name]["volumes"] if not v.startswith("/")]
        assert named, f"{name} keeps its data in no named volume"


def test_start_order(resolved):
    services = resolved["services"]
    assert services["collector"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    for name in ("influxdb", "grafana", "mosquitto", "collector"):
        assert services[name]["depends_on"]["secrets"]["condition"] == "service_completed_successfully", name


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else "latest"
        assert tag == "local" or re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: pin {image} to a version"
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:2.7.")


def test_simulators_are_on_by_default_and_one_setting_turns_them_off(tmp_path):
    off = tmp_path / "site.env"
    off.write_text("SIMULATORS=0\nHASHFLEET_MINERS=10.0.1.0/24\n")
    result = _compose("config", env_file=off)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["services"]["simulators"]["deploy"]["replicas"] == 0
    assert config["services"]["collector"]["command"][-2:] == ["--miners", "10.0.1.0/24"]


def test_the_collector_config_polls_the_demo_fleet_and_loads():
    from collector import config as loader

    cfg = loader.load(ROOT / "deploy/collector/hashfleet.yaml", {"site": "demo"}, environ={})
    assert cfg.miners == [f"simulators:{port}" for port in range(4028, 4035)]
    assert cfg.economics is not None and cfg.network is not None


# --- the secrets init script and mosquitto -------------------------------------------------------


def _init_secrets(directory: Path, **env: str) -> subprocess.CompletedProcess:
    _require("mosquitto_passwd", "mosquitto")
    return subprocess.run(["sh", str(ROOT / "deploy/secrets/init-secrets.sh")], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ["PATH"], "SECRETS_DIR": str(directory), **env})


def test_init_secrets_generates_once_keeps_afterwards_and_takes_values_from_env(tmp_path):
    first = _init_secrets(tmp_path, GRAFANA_ADMIN_PASSWORD="chosen-by-the-site")
    assert first.returncode == 0, first.stderr
    names = ["influx_token", "influx_admin_password", "grafana_admin_password", "mqtt_password", "mosquitto_passwd"]
    values = {n: (tmp_path / n).read_text() for n in names}
    assert values["grafana_admin_password"].strip() == "chosen-by-the-site"
    assert len(values["influx_token"].strip()) >= 32 and len(values["influx_admin_password"].strip()) >= 8
    assert values["influx_token"] != values["influx_admin_password"]
    assert "chosen-by-the-site" not in first.stdout + first.stderr
    assert values["mosquitto_passwd"].startswith("hashfleet:$7$")

    again = _init_secrets(tmp_path)
    assert again.returncode == 0, again.stderr
    assert all((tmp_path / n).read_text() == values[n] for n in names if n != "mosquitto_passwd")
    other = _init_secrets(tmp_path / "other")
    assert (tmp_path / "other" / "influx_token").read_text() != values["influx_token"]
    assert other.returncode == 0


def test_init_secrets_refuses_an_influx_password_influxdb_would_refuse(tmp_path):
    result = _init_secrets(tmp_path, INFLUX_ADMIN_PASSWORD="short")
    assert result.returncode != 0 and "8 characters" in result.stderr


def test_mosquitto_with_the_stack_config_refuses_anonymous_clients_and_accepts_the_generated_password(tmp_path):
    from servers.ports import free_port

    mosquitto = _require("mosquitto", "mosquitto")
    pub = _require("mosquitto_pub", "mosquitto-clients")
    sub = _require("mosquitto_sub", "mosquitto-clients")
    secrets = tmp_path / "secrets"
    assert _init_secrets(secrets).returncode == 0
    # Run as root, the broker drops to Debian's `mosquitto` user: its files need a world-readable
    # directory (pytest's tmp_path is private) and the password file a mode it can read (not uid 1883).
    tmp_path = Path(tempfile.mkdtemp(prefix="hashfleet-mosquitto-"))
    tmp_path.chmod(0o755)
    passwd = tmp_path / "passwd"
    passwd.write_bytes((secrets / "mosquitto_passwd").read_bytes())
    passwd.chmod(0o644)
    password = (secrets / "mqtt_password").read_text().strip()
    port = free_port()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = conf.replace(f"{SECRETS}/mosquitto_passwd", str(passwd))
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = re.sub(r"^persistence.*$", "", conf, flags=re.M) + "\npersistence false\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    (tmp_path / "mosquitto.conf").chmod(0o644)
    broker = subprocess.Popen([mosquitto, "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        probe = [sub, "-h", "127.0.0.1", "-p", str(port), "-u", "hashfleet", "-P", password,
                 "-t", "$SYS/broker/version", "-C", "1", "-W", "2"]
        deadline = time.monotonic() + 15
        while subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
            assert broker.poll() is None, broker.communicate()[0]
            assert time.monotonic() < deadline, "mosquitto did not accept the generated credentials"
        anonymous = subprocess.run([pub, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-t", "hashfleet/x",
                                    "-m", "1"], capture_output=True, text=True, timeout=10)
        assert anonymous.returncode != 0
        wrong = subprocess.run([pub, "-h", "127.0.0.1", "-p", str(port), "-u", "hashfleet", "-P", "wrong",
                                "-t", "hashfleet/x", "-m", "1"], capture_output=True, text=True, timeout=10)
        assert wrong.returncode != 0
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


# --- the collector's container healthcheck ---------------------------------------------------------


def _healthcheck(influxdb, bucket: str, site: str, token_file: Path, url: str | None = None):
    env = {"PATH": os.environ["PATH"], "INFLUX_URL": url or influxdb.url, "INFLUX_BUCKET": bucket,
           "INFLUX_TOKEN_FILE": str(token_file), "HASHFLEET_SITE": site}
    return subprocess.run([sys.executable, str(ROOT / "deploy/collector/healthcheck.py")], capture_output=True,
                          text=True, timeout=30, env=env)


def test_collector_healthcheck_follows_the_points_the_collector_writes(influxdb, influx_bucket, tmp_path):
    token_file = tmp_path / "influx_token"
    token_file.write_text(influxdb.token + "\n")
    assert _healthcheck(influxdb, influx_bucket, "hc", token_file).returncode == 1  # nothing written yet
    with run_fleet("a1246:1", base="127.61.0.1:0", seed=3) as fleet:
        env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
               "INFLUX_TOKEN_FILE": str(token_file)}
        env.pop("INFLUX_TOKEN", None)
        run = subprocess.run([HASHFLEET, "collect", "--miners", fleet.addresses[0], "--site", "hc", "--cycles", "1"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0, run.stderr
    healthy = _healthcheck(influxdb, influx_bucket, "hc", token_file)
    assert healthy.returncode == 0, healthy.stdout
    other_site = _healthcheck(influxdb, influx_bucket, "elsewhere", token_file)
    assert other_site.returncode == 1 and "elsewhere" in other_site.stdout
    wrong_token = tmp_path / "wrong"
    wrong_token.write_text("nope")
    refused = _healthcheck(influxdb, influx_bucket, "hc", wrong_token)
    assert refused.returncode == 1 and "nope" not in refused.stdout
    from servers.ports import free_port

    down = _healthcheck(influxdb, influx_bucket, "hc", token_file, url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot query" in down.stdout


def test_the_collector_spool_lives_on_a_named_volume(compose):
    # The image's user has no home: without HASHFLEET_SPOOL_DIR on a volume the collector could not
    # start, and undelivered batches would vanish with the container.
    dockerfile = (ROOT / "Dockerfile").read_text()
    spool_dir = next(line.split("=", 1)[1].strip() for line in dockerfile.splitlines()
                     if line.startswith("ENV HASHFLEET_SPOOL_DIR="))
    mounts = compose["services"]["collector"]["volumes"]
    named = [m for m in mounts if m.split(":")[1] == spool_dir]
    assert named and named[0].split(":")[0] in compose["volumes"]


def test_influxdb_snapshots_its_cache_at_the_size_the_benchmark_measured(resolved):
    """128 MiB, not influxd's 25 MiB: at 10,000 miners the default snapshotted ~3 times a cycle and cost
    2.4x the CPU (docs/benchmarks.md). bench/ runs its influxd with this same value."""
    sys.path.insert(0, str(ROOT))
    from bench.influx_server import compose_cache_snapshot_bytes

    size = int(resolved["services"]["influxdb"]["environment"]["INFLUXD_STORAGE_CACHE_SNAPSHOT_MEMORY_SIZE"])
    assert size == compose_cache_snapshot_bytes() == 128 * 2**20
    assert size < 2**30  # below the cache's maximum (storage-cache-max-memory-size, 1 GiB), or writes are refused

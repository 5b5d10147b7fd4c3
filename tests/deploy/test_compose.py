"""The docker compose site stack, checked without a Docker engine.

- Debian's docker-compose 1.29 (`config -q`) and check-jsonschema's compose-spec schema accept the file;
- every file a service mounts or builds from exists, and the image build copies only what exists;
- every variable the file uses is documented in .env.example, and has a default;
- only Grafana is published beyond localhost, no admin/admin, anonymous access off, secrets in files;
- healthchecks, restart policies, named volumes, pinned images, start order;
- the secrets init script, the Mosquitto config (with a real mosquitto) and the collector's
  healthcheck (with the real InfluxDB and collector) do what the stack relies on;
- each of issue 16's problems stays fixed: an image tag built twice, documented commands that cannot
  work as written, the license table, unpinned or retired image tags, the operator token handed to
  services, plain HTTP with no way to TLS or to the site LAN, secrets on command lines, bind mounts of
  repository files (host umask, SELinux). tests/test_stack_rehearsal.py runs the pieces.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import sys
from pathlib import Path

import pytest
import yaml
from tests.deploy.compose_checks import (
    command_problems,
    dockerfile_of,
    documented_commands,
    passwords_on_command_lines,
    scripts_with_secret_arguments,
    shared_build_tags,
)
from tests.deploy.site_broker import run_init_secrets, shipped_broker
from tests.support import HASHFLEET

from simulators.fleet import run_fleet

from tests.support import REPO as ROOT
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


def _default(text: str) -> str:
    """`${VAR:-default}` -> default: what a fresh host without .env uses."""
    return _VARIABLE.sub(lambda m: m.group("arg") if m.group("op") in (":-", "-") else m.group(0), text)


def test_every_mounted_or_built_file_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = _default(volume).split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = ROOT / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: no Dockerfile"


def _dockerfiles(compose) -> dict[str, Path]:
    return {name: dockerfile_of(service) for name, service in compose["services"].items() if "build" in service}


def _copies(dockerfile: Path) -> list[tuple[list[str], list[str], str]]:
    """(flags, sources, destination) of each COPY from the build context."""
    out = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            words = line.split()[1:]
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            if not any(f.startswith("--from") for f in flags):
                out.append((flags, paths[:-1], paths[-1]))
    return out


def test_the_images_copy_only_what_exists_and_is_not_ignored(compose):
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith(("#", "!"))]
    dockerfiles = _dockerfiles(compose)
    assert set(dockerfiles) == {"secrets", "influxdb", "grafana", "collector"}
    for name, dockerfile in dockerfiles.items():
        for _, sources, _ in _copies(dockerfile):
            for source in sources:
                assert list(ROOT.glob(source)), f"{dockerfile.relative_to(ROOT)} copies missing {source}"
                assert not any(source == i or source.startswith(i.rstrip("/") + "/") for i in ignored), (
                    f"{dockerfile.relative_to(ROOT)} copies {source} but .dockerignore drops it")
    assert ".env" in ignored, "a local .env (secrets) must stay out of the build context"
    assert "deploy/grafana/tls" in ignored, "Grafana's TLS key must stay out of every image"


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


def test_grafana_binds_where_the_site_says_and_can_serve_tls(tmp_path):
    site = tmp_path / "site.env"
    site.write_text("GRAFANA_BIND=10.0.1.2\nGRAFANA_PROTOCOL=https\nGRAFANA_TLS_DIR=/etc/hashfleet/tls\n"
                    "GRAFANA_COOKIE_SECURE=true\n")
    result = _compose("config", env_file=site)
    assert result.returncode == 0, result.stderr
    grafana = yaml.safe_load(result.stdout)["services"]["grafana"]
    assert [str(p).split(":")[0] for p in grafana["ports"]] == ["10.0.1.2"]
    env = grafana["environment"]
    assert (env["GF_SERVER_PROTOCOL"], env["GF_SECURITY_COOKIE_SECURE"]) == ("https", "true")
    tls = next(v for v in grafana["volumes"] if str(v).startswith("/etc/hashfleet/tls:"))
    assert tls == "/etc/hashfleet/tls:/etc/grafana/tls:ro,Z"  # read-only; SELinux: private to Grafana
    assert (env["GF_SERVER_CERT_FILE"], env["GF_SERVER_CERT_KEY"]) == ("/etc/grafana/tls/cert.pem",
                                                                         "/etc/grafana/tls/key.pem")
    assert "GF_SERVER_PROTOCOL" in " ".join(grafana["healthcheck"]["test"]), "the healthcheck must follow the protocol"
    for name in ("GRAFANA_BIND", "GRAFANA_PROTOCOL", "GRAFANA_TLS_DIR"):
        assert name in (ROOT / "docs/deployment.md").read_text()


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
    assert collector["INFLUX_TOKEN_FILE"] == f"{SECRETS}/influx_write_token" and "INFLUX_TOKEN" not in collector
    assert collector["HEALTHCHECK_INFLUX_TOKEN_FILE"] == f"{SECRETS}/influx_health_token"
    assert collector["INFLUX_READ_TOKEN_FILE"] == f"{SECRETS}/influx_health_token"  # hashfleet health --since
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/hashfleet.yaml").read_text()
    assert f"$__file{{{SECRETS}/influx_read_token}}" in datasource
    for name, service in resolved["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|PASSWORD", key) and not key.endswith("_FILE"):
                assert name == "secrets" and value == "", f"{name}: {key} carries a secret value"


def test_only_influxdb_is_given_the_operator_token():
    # The collector and Grafana get bucket-scoped tokens minted by InfluxDB's first-setup hook.
    users = [p.relative_to(ROOT) for p in [COMPOSE_FILE, *(ROOT / "deploy").rglob("*")] if p.is_file()
             and re.search(rf"{SECRETS}/influx_token\b", p.read_text())]
    assert users == [Path("docker-compose.yml")]
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert [n for n, s in compose["services"].items() if f"{SECRETS}/influx_token" in str(s.get("environment"))] == [
        "influxdb"]
    hook = (ROOT / "deploy/influxdb/hashfleet-tokens.sh").read_text()
    assert "--write-bucket" in hook and "--read-bucket" in hook and "--all-access" not in hook
    assert re.search(r"^COPY --chmod=0755 deploy/influxdb/hashfleet-tokens.sh /docker-entrypoint-initdb.d/\S+\.sh$",
                     (ROOT / "deploy/influxdb/Dockerfile").read_text(), re.M), "the image runs *.sh hooks only"


def test_mosquitto_requires_a_password():
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    site = conf.split("listener 1883\n", 1)[1].split("listener ", 1)[0]
    assert re.search(r"^allow_anonymous false$", site, re.M)
    assert re.search(rf"^password_file {SECRETS}/mosquitto_passwd$", site, re.M)
    assert re.search(r"^acl_file /mosquitto/config/site.acl$", site, re.M), "else every user may publish anything"
    assert re.search(r"^COPY --chown=1883:1883 --chmod=0400 deploy/mosquitto/site.acl /mosquitto/config/site.acl$",
                     (ROOT / "deploy/mosquitto/Dockerfile").read_text(), re.M)
    assert re.search(r"^per_listener_settings true$", conf, re.M), "else allow_anonymous is global"
    health = conf.split("listener 1880 127.0.0.1\n", 1)[1]
    assert re.search(r"^acl_file /mosquitto/config/health.acl$", health, re.M)


# --- issue 16: each problem found in the audit stays fixed ---------------------------------------------


def test_each_image_is_built_by_one_service_and_reused_without_pulling(compose):
    assert shared_build_tags(compose["services"]) == []


def test_a_tag_built_by_two_services_is_caught(compose):
    broken = {name: dict(service) for name, service in compose["services"].items()}
    broken["simulators"]["build"] = "."  # as before: collector and simulators both `build: .`, one tag
    assert any("hashfleet:local is built by collector, simulators" in p for p in shared_build_tags(broken))
    pulled = {name: dict(service) for name, service in compose["services"].items()}
    del pulled["simulators"]["pull_policy"]
    assert any("simulators uses hashfleet:local" in p for p in shared_build_tags(pulled))


def test_documented_commands_are_checked_against_the_service_definitions(resolved):
    commands = documented_commands()
    assert any("secrets show grafana_admin_password" in line for _, line in commands)
    problems = [p for _, line in commands for p in command_problems(line, resolved["services"])]
    assert problems == []
    # What the documents said before: arguments to `run` replace the command, not the entrypoint.
    before = "docker compose run --rm secrets cat /run/hashfleet-secrets/grafana_admin_password"
    assert "not its entrypoint" in command_problems(before, resolved["services"])[0]
    rotation = 'docker compose exec influxdb influx auth create -t "$(docker compose run --rm secrets show influx_token)"'
    assert any("command line" in p for p in command_problems(rotation, resolved["services"]))
    assert command_problems(f"docker compose run --rm --entrypoint cat secrets {SECRETS}/x", resolved["services"]) == []
    assert "not put into" in command_problems("docker compose exec influxdb /nowhere.sh", resolved["services"])[0]


def test_no_secret_on_a_command_line(resolved, compose):
    assert passwords_on_command_lines(resolved["services"]) == []
    assert scripts_with_secret_arguments() == []
    broken = {**compose["services"], "mosquitto": {**compose["services"]["mosquitto"], "healthcheck": {"test": [
        "CMD-SHELL", 'mosquitto_sub -u u -P "$$(cat /run/hashfleet-secrets/mqtt_password)" -t x']}}}
    assert passwords_on_command_lines(broken)


def test_the_license_is_an_spdx_expression_built_by_a_setuptools_that_reads_it():
    import tomllib
    from importlib.metadata import metadata

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"  # PEP 639; the {text = …} table is deprecated
    requires = pyproject["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in requires), requires
    assert metadata("hashfleet")["License-Expression"] == "Apache-2.0"  # what `pip install -e .` recorded


def _upstream_images(compose) -> dict[str, str]:
    images = {}
    for name, dockerfile in _dockerfiles(compose).items():
        images[name] = re.search(r"^FROM (\S+)$", dockerfile.read_text(), re.M).group(1)
    return images


def test_upstream_images_are_pinned_to_exact_maintained_versions(compose):
    images = _upstream_images(compose)
    for name, image in images.items():
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.-]+)?", image), f"{name}: pin {image} to an exact version"
    repository = {name: image.rsplit(":", 1)[0] for name, image in images.items()}
    version = {name: tuple(int(v) for v in re.match(r"\d+\.\d+\.\d+", image.rsplit(":", 1)[1]).group(0).split("."))
               for name, image in images.items()}
    assert repository["influxdb"] == "influxdb" and version["influxdb"][:1] == (2,) and version["influxdb"] >= (2, 8, 0), (
        "the 2.7 tags were removed from the official images in 2026: use the maintained 2.x line")
    assert repository["grafana"] == "grafana/grafana", "grafana/grafana-oss is no longer updated"
    assert repository["secrets"] == "eclipse-mosquitto" and (2, 0, 22) <= version["secrets"] < (2, 1, 0)
    assert repository["collector"] == "python" and images["collector"].endswith("-slim-bookworm")
    docs = (ROOT / "docs/deployment.md").read_text()
    for image in images.values():
        assert image in docs, f"docs/deployment.md must name {image} and how to upgrade it"
    for name, service in compose["services"].items():  # the stack's own images: built here, never pulled
        assert service["image"].endswith(":local"), name


def test_no_repository_file_is_bind_mounted_and_baked_files_get_explicit_modes(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = _default(volume).split(":")[0]
            if source.startswith((".", "/")):  # host path: only Grafana's TLS directory, read-only, SELinux-labelled
                assert (name, source, volume.rsplit(":", 1)[1]) == ("grafana", "./deploy/grafana/tls", "ro,Z"), volume
    for name, dockerfile in _dockerfiles(compose).items():
        text = dockerfile.read_text()
        for flags, sources, destination in _copies(dockerfile):
            if destination.startswith("./") and "WORKDIR /app" in text and "chmod -R a+rX /app" in text:
                continue  # into the work directory, which the image makes readable to all after installing
            assert any(f.startswith("--chmod=") for f in flags), (
                f"{dockerfile.relative_to(ROOT)}: COPY {' '.join(sources)} keeps the host's mode (umask 077: 0600)")





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
    assert services["collector"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    for name in ("influxdb", "grafana", "mosquitto", "collector"):
        assert services[name]["depends_on"]["secrets"]["condition"] == "service_completed_successfully", name


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


def test_the_collector_is_given_time_to_stop_cleanly(compose):
    # Its stop: the running cycle ends by its deadline (and its costing), a write in flight waits out its
    # timeout, then the last flush (its budget, and one request started just before the budget ends).
    # Docker's default 10 s grace period ended it with SIGKILL while a slow InfluxDB was being flushed to.
    import inspect

    from collector import config as loader
    from collector.sinks.influx import InfluxSink
    from models import InfluxConfig

    cfg = loader.load(ROOT / "deploy/collector/hashfleet.yaml", {"site": "demo"}, environ={})
    flush_s = inspect.signature(InfluxSink).parameters["flush_timeout_s"].default
    request_s = InfluxConfig(url="http://influxdb:8086").timeout_s
    needed = cfg.interval_s + request_s + flush_s + request_s
    grace = compose["services"]["collector"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= needed, (grace, needed)


# --- the secrets init script and mosquitto -------------------------------------------------------


def _init_secrets(directory: Path, shell: tuple[str, ...] = ("sh",), **env: str) -> subprocess.CompletedProcess:
    return run_init_secrets(directory, shell, **env)


def test_init_secrets_generates_once_keeps_afterwards_and_takes_values_from_env(tmp_path):
    first = _init_secrets(tmp_path, GRAFANA_ADMIN_PASSWORD="chosen-by-the-site")
    assert first.returncode == 0, first.stderr
    names = ["influx_token", "influx_admin_password", "grafana_admin_password", "mqtt_password", "mqtt_ha_password",
             "mqtt_device_password", "mosquitto_passwd"]
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


@pytest.mark.parametrize("password", ["S3cret-pass ", " S3cret-pass", "S3cret-pass\n", "S3cret\npass", "S3cret\tpass"])
def test_init_secrets_refuses_an_mqtt_password_the_collector_would_read_differently(tmp_path, password):
    # Written as it was, spaces and all, into mosquitto's password file, while the collector strips what it
    # reads: mosquitto refused the collector for ever (restart: unless-stopped, a crash loop).
    busybox = (_require("busybox", "busybox"), "sh")  # the secrets image's shell (Alpine)
    result = _init_secrets(tmp_path, busybox, MQTT_PASSWORD=password)
    assert result.returncode == 1 and "MQTT_PASSWORD" in result.stderr, result.stderr
    assert "S3cret" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_the_mqtt_password_mosquitto_hashes_is_the_one_the_collector_reads(tmp_path):
    from models import MqttConfig

    busybox = (_require("busybox", "busybox"), "sh")
    read = MqttConfig(host="mosquitto", username="hashfleet", password_file=tmp_path / "mqtt_password")
    for password in ("a pass phrase", "S3cret-pass"):  # (spaces inside are a password's own)
        assert _init_secrets(tmp_path, busybox, MQTT_PASSWORD=password).returncode == 0
        assert read.resolved_password() == password
    # a file kept from before the check, or edited by hand: refused too, naming the file
    (tmp_path / "mqtt_password").write_text("S3cret-pass \n")
    kept = _init_secrets(tmp_path, busybox)
    assert kept.returncode == 1 and f"{tmp_path}/mqtt_password begins or ends with whitespace" in kept.stderr


def test_mosquitto_with_the_stack_config_refuses_anonymous_clients_and_accepts_the_generated_passwords(tmp_path):
    pub = _require("mosquitto_pub", "mosquitto-clients")
    assert _init_secrets(tmp_path / "secrets").returncode == 0
    with shipped_broker(tmp_path / "secrets") as broker:
        def publish(*credentials: str) -> int:
            return subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", *credentials,
                                   "-t", "hashfleet/x/status", "-m", "1"], capture_output=True, timeout=10).returncode
        for user, password in broker.passwords.items():  # (what each may publish: test_mqtt_acl.py)
            assert publish("-u", user, "-P", password) == 0, user
        assert publish() != 0  # anonymous
        assert publish("-u", "hashfleet", "-P", "wrong") != 0
        assert publish("-u", "devices", "-P", broker.passwords["hashfleet"]) != 0


# --- the collector's container healthcheck ---------------------------------------------------------


def _healthcheck(influxdb, bucket: str, site: str, token_file: Path | None, url: str | None = None, **more: str):
    env = {"PATH": os.environ["PATH"], "INFLUX_URL": url or influxdb.url, "INFLUX_BUCKET": bucket,
           "HASHFLEET_SITE": site, "PYTHONPATH": str(ROOT), **more}  # (this checkout's models and collector)
    if token_file is not None:
        env["INFLUX_TOKEN_FILE"] = str(token_file)
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
    from tests.servers.ports import free_port

    down = _healthcheck(influxdb, influx_bucket, "hc", token_file, url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot query" in down.stdout
    # INFLUX_TOKEN is stripped like a token file (one trailing newline made every query fail)
    assert _healthcheck(influxdb, influx_bucket, "hc", None, INFLUX_TOKEN=influxdb.token + "\n").returncode == 0


@pytest.mark.parametrize("variable", ["HEALTHCHECK_INFLUX_TOKEN_FILE", "INFLUX_TOKEN_FILE", "INFLUX_TOKEN"])
def test_collector_healthcheck_refuses_a_token_of_two_lines_naming_its_variable_never_the_token(
        influxdb, influx_bucket, tmp_path, variable):
    # Docker keeps the healthcheck's output in the container's health log: the header error quoting the
    # token ("Invalid header value b'Token ...'") was kept there.
    two_lines = "first-SECRET\nsecond-SECRET"
    (tmp_path / "token").write_text(two_lines + "\n")
    given = {variable: str(tmp_path / "token") if variable.endswith("_FILE") else two_lines}
    result = _healthcheck(influxdb, influx_bucket, "hc", None, **given)
    assert result.returncode == 1 and variable in result.stdout, result.stdout + result.stderr
    assert "SECRET" not in result.stdout + result.stderr


def test_collector_healthcheck_hides_credentials_in_influx_url(influxdb, influx_bucket, tmp_path):
    from tests.servers.ports import free_port

    token_file = tmp_path / "token"
    token_file.write_text(influxdb.token)
    result = _healthcheck(influxdb, influx_bucket, "hc", token_file, url=f"http://admin:URLSECRET@127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "http://***@127.0.0.1" in result.stdout, result.stdout
    assert "URLSECRET" not in result.stdout + result.stderr


def test_collector_healthcheck_says_a_refused_header_without_quoting_it(monkeypatch, capsys):
    # The token is checked first; should one get past, http.client's refusal quotes the header, token and all.
    import importlib.util

    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy/collector/healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    monkeypatch.setattr(healthcheck, "token", lambda: "first-SECRET\nsecond-SECRET")
    monkeypatch.setenv("INFLUX_URL", "http://127.0.0.1:9")
    assert healthcheck.main() == 1
    out = capsys.readouterr().out
    assert "could not be sent" in out and "SECRET" not in out


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


@pytest.mark.parametrize("answer", [b"[1,2]", b"null", b'{"results": "x"}', b'{"results": [7]}', b"[" * 10 + b"1" * (2 << 20)])
def test_collector_healthcheck_says_unhealthy_for_an_answer_that_is_not_influxdbs(influxdb, influx_bucket, tmp_path, answer):
    # A proxy's JSON in InfluxDB's place crashed it with an AttributeError traceback ('list' object has no
    # attribute 'get'); an answer of any size was read whole.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Liar(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token_file = tmp_path / "token"
    token_file.write_text("a-token")
    try:
        result = _healthcheck(influxdb, influx_bucket, "hc", token_file, url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1 and "answered something other than its JSON" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr

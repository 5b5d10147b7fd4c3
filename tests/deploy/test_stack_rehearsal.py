"""A rehearsal of the compose stack without Docker: its own pieces, run the way its containers run them,
from the same files, adapting only paths, ports and host names.

- `secrets`: deploy/secrets/init-secrets.sh under busybox `sh` (the image is Alpine) with mosquitto_passwd,
  as root, with the compose environment; `show NAME` as the documents tell users to run it.
- `influxdb`: InfluxDB 1.6.7 behind the v2 shim stands in for 2.x, its operator token the generated one; the
  image's init hook deploy/influxdb/hashfleet-tokens.sh runs under dash as root, its `influx` CLI a stand-in
  (tests/servers/influx_cli.py) that asks the shim to mint the tokens the shim then enforces.
- every service's user id reads exactly the secret files it needs, and no other.
- `mosquitto`: the stack's mosquitto.conf and health.acl, run as uid 1883 (compose `user:`), with the
  generated password file; the compose healthcheck runs with no secret; anonymous clients are refused.
- `simulators` and `collector`: the compose commands and environment, run as uid 10001 (the image's user),
  with deploy/collector/hashfleet.yaml and the secret files; then the collector's healthcheck, and the
  documented `docker compose exec collector hashfleet ...` commands with the container's environment.
- `grafana`: the data-source provisioning file expanded as Grafana expands it (its file read as uid 472),
  and every provisioned dashboard and alert query sent through that data source's settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.deploy.compose_checks import SECRETS, command_problems, documented_commands, parse_compose_command
from tests.deploy.grafana_provisioning import influxql_request, interpolate
from tests.servers.influx_v2_shim import InfluxV2Shim, bucket_id
from tests.servers.ports import free_ports
from tests.support import HASHFLEET, wait_for
from tests.dashboards.test_queries import _provisioned_rules, _targets
from tests.dashboards.test_grafana_macros import ALL, Variable, expand

from tests.support import REPO as ROOT
# The containers' users: influxdb (its image, after the entrypoint's setpriv), grafana (its image),
# mosquitto (compose `user:`), collector and simulators (Dockerfile USER).
UIDS = {"influxdb": 1000, "grafana": 472, "mosquitto": 1883, "collector": 10001}
SIMULATOR_HOST = "127.63.0.1"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        pytest.fail(f"`{name}` is missing: sudo apt-get install {package} (or run ./scripts/test.sh)", pytrace=False)
    return path


def _as(uid: int, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run argv as the user and group `uid`, no supplementary groups (as in a container)."""
    return subprocess.run([_binary("setpriv", "util-linux"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "--", *argv], capture_output=True, text=True, timeout=kwargs.pop("timeout", 60), **kwargs)


def _literal(value) -> str:
    """A value of `docker-compose config` output as the container gets it (`$$` is an escaped `$`)."""
    return str(value).replace("$$", "$")


def _adapt(value: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        value = value.replace(old, new)
    return value


@dataclass
class Stack:
    root: Path
    secrets: Path
    services: dict[str, dict]  # `docker-compose config` with the rehearsal's .env
    bucket: str
    shim: InfluxV2Shim
    mosquitto_port: int
    health_port: int
    simulators: list[str]
    collect: subprocess.CompletedProcess
    collector_env: dict[str, str]  # the collector container's environment, adapted
    init: subprocess.CompletedProcess
    hook: subprocess.CompletedProcess

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def paths(self) -> dict[str, str]:
        return {SECRETS: str(self.secrets)}


def _resolved(env_file: Path) -> dict[str, dict]:
    from tests.deploy.test_compose import _compose

    result = _compose("config", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def _secrets_script(stack_env: dict[str, str], secrets: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_binary("busybox", "busybox"), "sh", str(ROOT / "deploy/secrets/init-secrets.sh"), *args],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **stack_env, "SECRETS_DIR": str(secrets),
                               # the site ACL it checks user names against: the image has it at its default path
                               "MOSQUITTO_ACL": str(ROOT / "deploy/mosquitto/site.acl")})


def _run_hook(stack_env: dict[str, str], secrets: Path, shim: InfluxV2Shim, operator: str, bin_dir: Path,
              bucket_id_env: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **{k: str(v) for k, v in stack_env.items()},
           "SECRETS_DIR": str(secrets),
           # What the image's entrypoint provides during setup (INFLUX_HOST; the token is in the CLI's config).
           "INFLUX_HOST": shim.url, "INFLUX_TOKEN": operator}
    if bucket_id_env is not None:
        env["DOCKER_INFLUXDB_INIT_BUCKET_ID"] = bucket_id_env
    return subprocess.run([_binary("dash", "dash"), str(ROOT / "deploy/influxdb/hashfleet-tokens.sh")],
                          capture_output=True, text=True, timeout=60, env=env)


def _start_mosquitto(root: Path, secrets: Path) -> tuple[subprocess.Popen, int, int]:
    """The stack's broker config, only its ports and paths changed, run as the compose `user:`."""
    port, health = free_ports(2)
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    conf = conf.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
    conf = conf.replace("listener 1880 127.0.0.1\n", f"listener {health} 127.0.0.1\n")
    conf = conf.replace(f"{SECRETS}/", f"{secrets}/")
    # The ACL files as the image has them: owner and mode from the Dockerfile's COPY.
    for name in ("health.acl", "site.acl"):
        copy = re.search(rf"^COPY --chown=(\d+):(\d+) --chmod=(0\d+) deploy/mosquitto/{name} /mosquitto/config/{name}$",
                         (ROOT / "deploy/mosquitto/Dockerfile").read_text(), re.M)
        assert copy, f"deploy/mosquitto/Dockerfile copies {name} with an owner and a mode"
        acl = root / name
        shutil.copyfile(ROOT / "deploy/mosquitto" / name, acl)
        os.chown(acl, int(copy.group(1)), int(copy.group(2)))
        acl.chmod(int(copy.group(3), 8))
        assert f"/mosquitto/config/{name}" in conf, name
        conf = conf.replace(f"/mosquitto/config/{name}", str(acl))
    data = root / "mosquitto-data"
    data.mkdir()
    os.chown(data, UIDS["mosquitto"], UIDS["mosquitto"])
    conf = conf.replace("/mosquitto/data/", f"{data}/")
    path = root / "mosquitto.conf"
    path.write_text(conf)
    path.chmod(0o644)
    broker = subprocess.Popen(
        [_binary("setpriv", "util-linux"), f"--reuid={UIDS['mosquitto']}", f"--regid={UIDS['mosquitto']}",
         "--clear-groups", "--", _binary("mosquitto", "mosquitto"), "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return broker, port, health


def _mosquitto_healthcheck(services: dict, health_port: int) -> list[str]:
    """The compose healthcheck of mosquitto, its port adapted."""
    test = [_literal(a) for a in services["mosquitto"]["healthcheck"]["test"]]
    assert test[0] == "CMD", test
    return [_binary(test[1], "mosquitto-clients"), *(str(health_port) if a == "1880" else a for a in test[2:])]


def _simulate(services: dict) -> tuple[subprocess.Popen, list[str]]:
    """The compose simulators command, bound to a loopback address instead of 0.0.0.0, as uid 10001."""
    command = [_literal(a).replace("0.0.0.0:", f"{SIMULATOR_HOST}:") for a in services["simulators"]["command"]]
    process = subprocess.Popen(
        [_binary("setpriv", "util-linux"), f"--reuid={UIDS['collector']}", f"--regid={UIDS['collector']}",
         "--clear-groups", "--", HASHFLEET, *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": "/nonexistent"})
    fleet = command[command.index("--fleet") + 1]
    count = sum(int(part.split(":")[1]) for part in fleet.split(","))
    addresses = []
    for _ in range(count):
        line = process.stdout.readline()
        assert line, f"simulators stopped: {process.stderr.read() if process.poll() is not None else ''}"
        addresses.append(line.split()[0])
    return process, addresses


@pytest.fixture(scope="module")
def stack(influxdb) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="hashfleet-rehearsal-"))
    root.chmod(0o755)  # every service user must reach its files, as in the containers
    secrets = root / "secrets"
    bucket = f"t_rehearsal_{uuid.uuid4().hex[:8]}"
    simulators = [f"{SIMULATOR_HOST}:{port}" for port in range(4028, 4035)]
    env_file = root / "site.env"
    env_file.write_text(f"INFLUX_BUCKET={bucket}\nHASHFLEET_SITE=rehearsal\nHASHFLEET_MINERS={','.join(simulators)}\n")
    services = _resolved(env_file)
    shim = broker = fleet = None
    try:
        init = _secrets_script({k: v or "" for k, v in services["secrets"]["environment"].items()}, secrets,
                               *services["secrets"].get("command", []))
        assert init.returncode == 0, init.stderr

        influxdb.ensure_running()
        influxdb.create_database(bucket)
        operator = (secrets / "influx_token").read_text().strip()
        shim = InfluxV2Shim(influxdb.raw_url, require_token=operator).start()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "influx").write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/servers/influx_cli.py'} \"$@\"\n")
        (bin_dir / "influx").chmod(0o755)
        influx_env = services["influxdb"]["environment"]
        hook = _run_hook(influx_env, secrets, shim, operator, bin_dir, bucket_id(bucket))
        assert hook.returncode == 0, hook.stdout + hook.stderr

        broker, mqtt_port, health_port = _start_mosquitto(root, secrets)
        probe = _mosquitto_healthcheck(services, health_port)
        wait_for(lambda: broker.poll() is not None or _as(UIDS["mosquitto"], probe).returncode == 0, timeout=20,
                 what="the mosquitto healthcheck")
        assert broker.poll() is None, broker.communicate()[0]

        fleet, addresses = _simulate(services)
        assert addresses == simulators, "the collector's miners are the simulators' addresses"

        spool = root / "spool"
        spool.mkdir()
        os.chown(spool, UIDS["collector"], UIDS["collector"])
        collector = services["collector"]
        config = {"/etc/hashfleet/hashfleet.yaml": str(ROOT / "deploy/collector/hashfleet.yaml")}  # (in the image)
        env = {k: _adapt(str(v), {SECRETS: str(secrets), "http://influxdb:8086": shim.url, **config})
               for k, v in collector["environment"].items()}
        env.update({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(mqtt_port)})  # service name -> address
        env.update({"PATH": os.environ["PATH"], "HOME": "/nonexistent", "HASHFLEET_SPOOL_DIR": str(spool),
                    "PYTHONPATH": str(ROOT)})  # (the image has this checkout installed)
        command = [_adapt(_literal(a), config) for a in collector["command"]]
        collect = _as(UIDS["collector"], [HASHFLEET, *command, "--cycles", "2"], env=env, timeout=180)
        yield Stack(root, secrets, services, bucket, shim, mqtt_port, health_port, simulators, collect, env, init,
                    hook)
    finally:
        if fleet is not None:
            fleet.terminate()
            fleet.wait(10)
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        if shim is not None:
            shim.stop()
        if influxdb.is_running:
            influxdb.drop_database(bucket)
        shutil.rmtree(root, ignore_errors=True)


# --- secrets -------------------------------------------------------------------------------------------


def _needed_files(stack: Stack) -> dict[str, set[str]]:
    """The secret files each service reads, from the stack's own files: environment values, mosquitto.conf
    and the Grafana data source."""
    needed = {name: set() for name in UIDS}
    for name in UIDS:
        for value in (stack.services[name].get("environment") or {}).values():
            if str(value).startswith(SECRETS + "/"):
                needed[name].add(str(value).removeprefix(SECRETS + "/"))
    for line in (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines():
        if line.startswith("password_file "):
            needed["mosquitto"].add(line.split()[1].removeprefix(SECRETS + "/"))
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/hashfleet.yaml").read_text()
    needed["grafana"] |= {p.removeprefix(SECRETS + "/") for p in re.findall(r"\$__file\{([^}]+)\}", datasource)}
    return needed


def test_every_service_user_reads_exactly_the_secrets_it_needs(stack: Stack):
    files = sorted(p.name for p in stack.secrets.iterdir())
    assert {"influx_write_token", "influx_read_token", "influx_health_token"} <= set(files), files
    needed = _needed_files(stack)
    for service, uid in UIDS.items():
        assert needed[service] <= set(files), f"{service} needs files nobody made: {needed[service] - set(files)}"
        readable = {f for f in files if _as(uid, ["cat", str(stack.secrets / f)]).returncode == 0}
        assert readable == needed[service], f"{service} (uid {uid}) reads {sorted(readable)}, needs {sorted(needed[service])}"


def test_the_operator_token_is_readable_by_no_service_but_the_database_that_issued_it(stack: Stack):
    readers = [s for s, uid in UIDS.items() if _as(uid, ["cat", str(stack.secrets / "influx_token")]).returncode == 0]
    assert readers == ["influxdb"]
    for name in ("grafana", "collector"):
        assert not any("influx_token" == v.removeprefix(SECRETS + "/")
                       for v in map(str, (stack.services[name].get("environment") or {}).values()))


def test_secrets_are_never_printed_by_init(stack: Stack):
    for name in ("influx_token", "mqtt_password", "mqtt_ha_password", "mqtt_device_password", "grafana_admin_password",
                 "influx_write_token", "influx_read_token"):
        assert stack.secret(name) not in stack.init.stdout + stack.init.stderr + stack.hook.stdout + stack.hook.stderr


def test_the_init_hook_keeps_its_tokens_and_finds_the_bucket_by_itself_when_run_by_hand(stack: Stack, tmp_path):
    before = {n: stack.secret(n) for n in ("influx_write_token", "influx_read_token", "influx_health_token")}
    bin_dir = stack.root / "bin"
    again = _run_hook(stack.services["influxdb"]["environment"], stack.secrets, stack.shim, stack.secret("influx_token"),
                      bin_dir, None)  # `docker compose exec influxdb …`: no DOCKER_INFLUXDB_INIT_BUCKET_ID
    assert again.returncode == 0, again.stderr
    assert {n: stack.secret(n) for n in before} == before and again.stdout.count("kept") == 3


@pytest.mark.parametrize("where,line", [pytest.param(where, line, id=f"{where}-{n}")
                                        for n, (where, line) in enumerate(documented_commands())])
def test_documented_compose_commands_work_as_written(stack: Stack, where: str, line: str):
    assert command_problems(line, stack.services) == [], where
    verb, options, service, args = parse_compose_command(line)
    if verb == "run" and service == "secrets" and "--entrypoint" not in options:
        # Run it: the service's entrypoint with the documented arguments, in the rehearsal's volume.
        argv = ["grafana_admin_password" if a == "NAME" else a for a in args]
        result = _secrets_script({}, stack.secrets, *argv)
        assert result.returncode == 0, f"{where}: {line}: {result.stderr}"
        if argv[:1] == ["show"]:
            assert result.stdout.strip() == stack.secret(argv[1])
    if verb == "exec" and service == "collector" and args[:1] == ["hashfleet"]:
        # Run it: the image's hashfleet as its user, in the container's environment (what `exec` gives it:
        # not the collector's command line, where --site is). It must answer about the stack's site.
        result = _as(UIDS["collector"], [HASHFLEET, *args[1:]], env=stack.collector_env, timeout=120)
        assert result.returncode == 0, f"{where}: {line}: {result.stdout}{result.stderr}"
        site = stack.services["collector"]["environment"]["HASHFLEET_SITE"]
        assert f"site {site} " in result.stdout, f"{where}: {line}: {result.stdout}"


def test_show_refuses_names_outside_the_volume(stack: Stack):
    for bad in ("../etc/passwd", "influx_token/..", "", "Influx"):
        result = _secrets_script({}, stack.secrets, "show", bad)
        assert result.returncode != 0 and "root:" not in result.stdout


# --- mosquitto -----------------------------------------------------------------------------------------


def _with_password(stack: Stack) -> dict[str, str]:
    """An environment in which mosquitto_pub/sub log in with the generated password, read from their
    options file ($XDG_CONFIG_HOME/mosquitto_pub), never from their command line."""
    config = stack.root / "mqtt-client"
    config.mkdir(exist_ok=True)
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        (config / tool).write_text(f"-u {stack.services['collector']['environment']['MQTT_USERNAME']}\n"
                                   f"-P {stack.secret('mqtt_password')}\n")
    return {**os.environ, "XDG_CONFIG_HOME": str(config)}


def test_mosquitto_takes_the_generated_password_and_refuses_anonymous_clients(stack: Stack):
    pub = [_binary("mosquitto_pub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", str(stack.mosquitto_port),
           "-V", "mqttv5", "-t", "hashfleet/rehearsal", "-m", "1"]
    assert subprocess.run(pub, capture_output=True, timeout=10).returncode != 0
    assert subprocess.run(pub, capture_output=True, timeout=10, env=_with_password(stack)).returncode == 0


def test_the_health_listener_needs_no_password_and_shows_nothing_but_the_version(stack: Stack):
    sub = _binary("mosquitto_sub", "mosquitto-clients")
    pub = _binary("mosquitto_pub", "mosquitto-clients")
    assert _as(UIDS["mosquitto"], _mosquitto_healthcheck(stack.services, stack.health_port)).returncode == 0
    published = subprocess.run([pub, "-h", "127.0.0.1", "-p", str(stack.mosquitto_port), "-t", "hashfleet/rehearsal/state",
                                "-m", "site data", "-r"], capture_output=True, timeout=10, env=_with_password(stack))
    assert published.returncode == 0, published.stderr
    peek = subprocess.run([sub, "-h", "127.0.0.1", "-p", str(stack.health_port), "-t", "#", "-C", "1", "-W", "2"],
                          capture_output=True, text=True, timeout=10)
    assert "site data" not in peek.stdout
    write = subprocess.run([pub, "-h", "127.0.0.1", "-p", str(stack.health_port), "-V", "mqttv5", "-q", "1",
                            "-t", "hashfleet/x", "-m", "1"], capture_output=True, text=True, timeout=10)
    # MQTT v5 answers the refused publish (mosquitto_pub still exits 0: the connection itself was fine).
    assert "Not authorized" in write.stderr, f"anonymous clients of the health listener must not publish: {write}"


# --- InfluxDB: the scoped tokens ----------------------------------------------------------------------


def _http(url: str, token: str | None, body: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={**(headers or {}), **({"Authorization": f"Token {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _write(stack: Stack, token: str) -> int:
    return _http(f"{stack.shim.url}/api/v2/write?org=hashfleet&bucket={stack.bucket}&precision=s", token,
                 f"rehearsal value=1 {int(time.time())}".encode())[0]


def _read(stack: Stack, token: str) -> int:
    return _http(f"{stack.shim.url}/query?db={stack.bucket}", token,
                 b"q=SELECT+count(*)+FROM+miner", {"Content-Type": "application/x-www-form-urlencoded"})[0]


def test_scoped_tokens_can_do_what_their_service_needs_and_nothing_more(stack: Stack):
    assert (_write(stack, stack.secret("influx_write_token")), _read(stack, stack.secret("influx_write_token"))) == (204, 403)
    for name in ("influx_read_token", "influx_health_token"):
        assert (_write(stack, stack.secret(name)), _read(stack, stack.secret(name))) == (403, 200), name
    assert (_write(stack, stack.secret("influx_token")), _read(stack, stack.secret("influx_token"))) == (204, 200)
    assert _read(stack, "not-a-token") == 401
    drop = _http(f"{stack.shim.url}/query", stack.secret("influx_read_token"), f"q=DROP+DATABASE+{stack.bucket}".encode(),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    assert drop[0] == 403
    elsewhere = _http(f"{stack.shim.url}/api/v2/write?org=hashfleet&bucket=_internal&precision=s",
                      stack.secret("influx_write_token"), b"x value=1")
    assert elsewhere[0] == 403, "the collector's token writes its bucket only"


# --- the collector -------------------------------------------------------------------------------------


def test_the_collector_writes_with_its_write_only_token_as_its_image_user(stack: Stack, influxdb):
    assert stack.collect.returncode == 0, stack.collect.stderr
    for secret in ("influx_write_token", "mqtt_password"):
        assert stack.secret(secret) not in stack.collect.stdout + stack.collect.stderr
    assert "refused" not in stack.collect.stderr, "the site ACL lets the collector publish all it publishes"
    rows = influxdb.query('SELECT count("up") FROM "miner" WHERE "site" = \'rehearsal\'', stack.bucket)
    assert rows and rows[0]["count"] == 2 * len(stack.simulators)


def test_the_collectors_healthcheck_passes_with_its_own_read_token(stack: Stack):
    collector = stack.services["collector"]
    assert collector["healthcheck"]["test"][0] == "CMD"
    script = [a.replace("/usr/local/lib/hashfleet/healthcheck.py", str(ROOT / "deploy/collector/healthcheck.py"))
              for a in collector["healthcheck"]["test"][1:]]
    env = {k: _adapt(str(v), {SECRETS: str(stack.secrets), "http://influxdb:8086": stack.shim.url})
           for k, v in collector["environment"].items()}
    env.update({"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})  # (the image has this checkout installed)
    healthy = _as(UIDS["collector"], [sys.executable if script[0] == "python" else script[0], *script[1:]], env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    env.pop("HEALTHCHECK_INFLUX_TOKEN_FILE")  # with the collector's own, write-only token it cannot ask
    refused = _as(UIDS["collector"], [sys.executable, *script[1:]], env=env)
    assert refused.returncode == 1 and stack.secret("influx_write_token") not in refused.stdout


# --- Grafana -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasource(stack: Stack) -> dict:
    """The provisioned data source after Grafana's expansion, in the grafana service's environment (the
    InfluxDB address adapted), its files read as Grafana's user."""
    env = {k: _adapt(str(v), {"http://influxdb:8086": stack.shim.url})
           for k, v in stack.services["grafana"]["environment"].items()}

    def read_as_grafana(path: str) -> str:
        result = _as(UIDS["grafana"], ["cat", _adapt(path, stack.paths())])
        assert result.returncode == 0, f"Grafana cannot read {path}: {result.stderr}"
        return result.stdout

    raw = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/hashfleet.yaml").read_text())
    return interpolate(raw, env, read_as_grafana)["datasources"][0]


def test_the_data_source_expands_to_the_bucket_and_the_read_only_token(stack: Stack, datasource: dict):
    assert datasource["url"] == stack.shim.url
    assert datasource["jsonData"]["dbName"] == stack.bucket
    assert datasource["secureJsonData"]["httpHeaderValue1"] == f"Token {stack.secret('influx_read_token')}"


def _through_grafana(datasource: dict, query: str) -> dict:
    url, headers, body = influxql_request(datasource, query)
    status, text = _http(url, None, body, headers)
    assert status == 200, f"{status} {text} for {query}"
    reply = json.loads(text)
    errors = [r["error"] for r in reply.get("results", []) if "error" in r]
    assert not errors, f"{errors} for {query}"
    return reply


def _has_rows(reply: dict) -> bool:
    return any(s.get("values") for r in reply.get("results", []) for s in r.get("series", []))


# Panels two cycles of the healthy demo fleet leave empty: no miner is offline, and without internet
# access the network figures are the config's static stand-ins, which have no fetch age; being stale,
# they hold the curtailment plan (no miner advised off) and control is off (no actions).
# Panels named dashboard:title:ref (their numeric ids move when a panel is added).
EMPTY_IN_A_REHEARSAL = {"fleet-overview:Offline miners:A", "collector-health:Network data age:A",
                        "economics:Miners the plan does not run as usual:A",
                        "economics:Curtailment control actions:A"}
# The demo stack reads no pools: the Economics row "What the pools paid" is empty there (its queries run
# on a pooled site's data in tests/dashboards/test_queries.py).
EMPTY_IN_A_REHEARSAL |= {
    "economics:Realized cost per BTC (last closed day):A", "economics:Credited vs expected BTC (last closed day):A",
    "economics:Pools now:A", "economics:Realized vs expected cost per BTC, by day:A",
    "economics:Where the gap went (last closed day, per pool):A", "economics:Workers (last closed day):A",
    "economics:Workers the pool sees below their reported hashrate:A"}
# The demo fleet is healthy (the repair queue is empty) and no meter publishes in the demo stack (no power
# correction, no measured PUE); tests/dashboards/test_queries.py runs these on a site with faults and meters.
EMPTY_IN_A_REHEARSAL |= {"maintenance:Repair queue:A", "maintenance:Power correction by model:A",
                         "maintenance:Measured PUE:A"}


def test_every_dashboard_query_runs_through_the_provisioned_data_source(stack: Stack, datasource: dict):
    miners = _through_grafana(datasource, 'SHOW TAG VALUES FROM "miner" WITH KEY = "miner"')
    miner = miners["results"][0]["series"][0]["values"][0][1]
    variables = {"site": Variable(ALL, multi=True, include_all=True, options=["rehearsal"]), "miner": Variable(miner)}
    empty = set()
    for param in _targets():
        query = expand(param.values[0], variables, range_="1h", interval="10s")
        if not _has_rows(_through_grafana(datasource, query)):
            empty.add(re.sub(r":\d+:", ":", param.id, count=1))
    assert empty <= EMPTY_IN_A_REHEARSAL, f"no rows: {sorted(empty - EMPTY_IN_A_REHEARSAL)}"


def test_every_alert_query_runs_through_the_provisioned_data_source(stack: Stack, datasource: dict):
    now_ms = int(time.time() * 1000) + 1000
    for uid, rule in _provisioned_rules().items():
        for step in rule["data"]:
            if step["datasourceUid"] != "__expr__":
                assert step["datasourceUid"] == "hashfleet-influxdb", uid
                start = now_ms - step["relativeTimeRange"]["from"] * 1000
                _through_grafana(datasource, expand(step["model"]["query"], range_=(start, now_ms)))


def test_the_data_source_with_another_services_token_is_refused(stack: Stack, datasource: dict):
    wrong = {**datasource, "secureJsonData": {"httpHeaderValue1": f"Token {stack.secret('influx_write_token')}"}}
    url, headers, body = influxql_request(wrong, 'SELECT last("up") FROM "miner"')
    assert _http(url, None, body, headers)[0] == 403

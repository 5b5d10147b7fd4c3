"""Load the collector's configuration: YAML file, then environment, then flags.

A broken config is an error a user can act on: it names the file, the field
and the problem, and nothing starts (the CLI exits with code 2).
Secrets are never echoed back: pydantic's SecretStr hides the token, and
errors quote field names, not values, for secret fields; credentials in URLs
are hidden (collector.redact).

The file is hostile until read: at most MAX_CONFIG_BYTES are read, a YAML
alias bomb is refused before it is expanded (MAX_CONFIG_NODES counts every
node as if each alias were copied out), and errors quote at most a short
piece of a value.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import reprlib
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from collector.redact import redact, redact_url
from models import CollectorConfig
from models.base import FileTooLarge, read_capped

log = logging.getLogger(__name__)

_SECRET_FIELDS = {"token", "password"}
_URL_FIELDS = ("url", "host")  # their values are shown without credentials

MAX_CONFIG_BYTES = 1024 * 1024  # a real config is a few KB; 10,000 miners listed one by one is ~200 KB
# Values (YAML nodes) in the document, each alias counted as a copy of what it names. 10,000 miners
# listed one by one are 10,000; a 1 MiB file of one-letter values is 520,000 and an alias bomb billions.
MAX_CONFIG_NODES = 250_000
MAX_SHOWN_CHARS = 120  # of one value quoted in an error

_short = reprlib.Repr()
_short.maxstring = MAX_SHOWN_CHARS
_short.maxother = MAX_SHOWN_CHARS
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 6
_short.maxlevel = 3

# Environment variables that fill the `influx` section (the names docker compose passes).
INFLUX_ENV = {
    "INFLUX_URL": "url",
    "INFLUX_ORG": "org",
    "INFLUX_BUCKET": "bucket",
    "INFLUX_TOKEN": "token",
    "INFLUX_TOKEN_FILE": "token_file",
}

# ... and the token queries use (`hashfleet health --since`), added only where there is an `influx` section.
INFLUX_READ_ENV = {"INFLUX_READ_TOKEN": "read_token", "INFLUX_READ_TOKEN_FILE": "read_token_file"}

# Environment variables that fill the `mqtt` section; a password from the environment replaces
# one from the file (either form).
MQTT_ENV = {
    "MQTT_HOST": "host",
    "MQTT_PORT": "port",
    "MQTT_USERNAME": "username",
    "MQTT_PASSWORD": "password",
    "MQTT_PASSWORD_FILE": "password_file",
}


def spool_directory(config: CollectorConfig, environ: dict[str, str] | None = None) -> Path:
    """Where the spool lives: the config's directory, else $HASHFLEET_SPOOL_DIR/<site>, else the XDG state dir's (see SpoolConfig)."""
    env = os.environ if environ is None else environ
    # One spool per site and shard: shards of one site may run side by side on one host.
    shard = None if config.shard is None else f"shard-{config.shard.replace('/', '-of-')}"
    if config.spool.directory is not None:
        return config.spool.directory if shard is None else config.spool.directory / shard
    name = config.site if shard is None else f"{config.site}.{shard}"
    if env.get("HASHFLEET_SPOOL_DIR"):
        return Path(env["HASHFLEET_SPOOL_DIR"]) / name
    state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "hashfleet" / "spool" / name


def shard_spools(config: CollectorConfig, environ: dict[str, str] | None = None) -> dict[str, Path]:
    """The spools the site's shards keep (`collect --shard K/N`) that exist, by "K/N" (N, then K, ascending);
    named as spool_directory names them."""
    probe = spool_directory(config.model_copy(update={"shard": "1/1"}), environ)  # where and how they are named
    prefix = probe.name.removesuffix("shard-1-of-1")
    found = {}
    try:
        for entry in probe.parent.iterdir():
            match = re.fullmatch(re.escape(prefix) + r"shard-([1-9][0-9]{0,5})-of-([1-9][0-9]{0,5})", entry.name)
            if match and entry.is_dir():
                found[(int(match[2]), int(match[1]))] = entry
    except OSError:  # no such folder (yet), or not readable: no shards to name
        return {}
    return {f"{k}/{n}": path for (n, k), path in sorted(found.items())}


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def load(path: Path | None = None, overrides: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None, *, pools: bool = True) -> CollectorConfig:
    """The configuration from `path`, the environment and `overrides`; ConfigError naming the problem. A
    command that reads no pool API (`pools` False) gets none, and needs none of their tokens."""
    env = os.environ if environ is None else environ
    source = str(path) if path else "command line"
    raw: dict[str, Any] = _read_yaml(path) if path else {}

    _warn_secrets_in_file(source, raw)
    if path:
        _from_the_files_folder(raw, CollectorConfig, Path(os.path.abspath(path)).parent)
    influx_env = {field: env[var] for var, field in INFLUX_ENV.items() if env.get(var)}
    if influx_env:
        raw["influx"] = {**_section(raw, "influx", source), **influx_env}
        if "token_file" in influx_env:
            raw["influx"].pop("token", None)
    read_env = {field: env[var] for var, field in INFLUX_READ_ENV.items() if env.get(var)}
    if read_env and isinstance(raw.get("influx"), dict):
        raw["influx"] = {**raw["influx"], **read_env}
        if "read_token_file" in read_env:
            raw["influx"].pop("read_token", None)
    mqtt_env = {field: env[var] for var, field in MQTT_ENV.items() if env.get(var)}
    if mqtt_env:
        raw["mqtt"] = {**_section(raw, "mqtt", source), **mqtt_env}
        for given, other in (("password", "password_file"), ("password_file", "password")):
            if given in mqtt_env and other not in mqtt_env:
                raw["mqtt"].pop(other, None)
    # The file's own values a flag replaces: checked all the same (a bad one would be found only by the first
    # run without the flag: a service refused at its start after a test run with the flag had passed).
    replaced = {key: raw[key] for key, value in (overrides or {}).items() if value is not None and key in raw}
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    if not pools:
        raw.pop("pools", None)
    # A secret file an environment variable named: its errors name the variable, not the config file.
    from_env = {f"influx.{field}": var for var, field in (*INFLUX_ENV.items(), *INFLUX_READ_ENV.items())
                if env.get(var)} | {f"mqtt.{field}": var for var, field in MQTT_ENV.items() if env.get(var)}
    try:
        CollectorConfig.model_validate(replaced)
    except ValidationError as e:
        raise ConfigError(_describe(source, e, from_env=from_env) + "\n  (a flag replaces it on this run, "
                          "but the file must hold a valid value for every run without the flag)") from None
    try:
        config = CollectorConfig.model_validate(raw)
        if config.influx is not None:
            config.influx.resolved_token()  # a missing token file is a config error, found now
            config.influx.resolved_read_token()  # likewise the read token's
        if config.mqtt is not None:
            config.mqtt.resolved_password()  # likewise a missing MQTT password file
        for pool in config.pools:
            pool.resolved_token(dict(env))  # and a pool token in neither its variable nor its file
    except ValidationError as e:
        flags = {key for key, value in (overrides or {}).items() if value is not None}
        raise ConfigError(_describe(source, e, flags, from_env)) from None
    except ValueError as e:
        first, _, rest = str(e).partition(" ")
        field = first.rstrip(":")  # ("influx.token: empty", "influx.token_file PATH: empty")
        message = (f"environment: {from_env[field]} ({field}){first[len(field):]} {rest}" if field in from_env
                   else f"{source}: {e}")
        raise ConfigError(_clip(redact(message), 1000)) from None
    _warn_uncatalogued_capex(source, config)
    return config


def _warn_uncatalogued_capex(source: str, config: CollectorConfig) -> None:
    """A capex_by_model key that names no catalogued model may be a typo or a name no miner reports
    (depreciation then silently 0): said once, at load."""
    unknown = config.economics.uncatalogued_capex_models() if config.economics is not None else []
    if unknown:
        log.warning("%s: economics.capex_by_model: %s name(s) no model in the catalogue: each applies only to a "
                    "miner that reports exactly that model (see `hashfleet scan`)", source, _short.repr(unknown))


# Secrets the config file may hold but should not (the docs say so), and where they belong instead.
_SECRETS_IN_FILE = (("influx", "token", "INFLUX_TOKEN, or influx.token_file / INFLUX_TOKEN_FILE"),
                    ("influx", "read_token", "INFLUX_READ_TOKEN, or influx.read_token_file / INFLUX_READ_TOKEN_FILE"),
                    ("mqtt", "password", "MQTT_PASSWORD, or mqtt.password_file / MQTT_PASSWORD_FILE"))


def _warn_secrets_in_file(source: str, raw: dict[str, Any]) -> None:
    """A secret written into the config file works, but whoever may read the file (a backup, a repository, a
    support ticket) has it: said at load, naming the field, never the value (trial ZB: taken silently)."""
    for section, key, instead in _SECRETS_IN_FILE:
        part = raw.get(section)
        if isinstance(part, dict) and part.get(key):
            log.warning("%s: %s.%s is written in the config file: whoever reads the file has it; set %s (a file only "
                        "the collector can read) instead", source, section, key, instead)


def _from_the_files_folder(raw: Any, model: type[BaseModel], folder: Path) -> None:
    """Each path the file gives relative (a `Path` field of `model`, at any depth) made relative to the file's
    folder, as docker compose does, not to wherever the command was started: `collect` run from one folder and
    `report` from another read two histories, without a word (trial ZB). Paths from the environment or flags
    stay relative to the working directory, as a shell's do."""
    if not isinstance(raw, dict):
        return
    for name, field in model.model_fields.items():
        value = raw.get(field.alias or name)
        if value is None:
            continue
        kinds = _kinds(field.annotation)
        if Path in kinds and isinstance(value, str) and value and not Path(value).is_absolute():
            raw[field.alias or name] = str(folder / value)
            continue
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                for item in (value if isinstance(value, list) else [value]):
                    _from_the_files_folder(item, kind, folder)


@functools.cache
def _known_names() -> tuple[str, ...]:
    """Every key a config may hold, at any depth (its fields and their aliases): what a mistyped one is likely."""
    names, seen, todo = set(), set(), [CollectorConfig]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            names.update(n for n in (name, field.alias) if n)
            todo.extend(k for k in _kinds(field.annotation) if isinstance(k, type) and issubclass(k, BaseModel))
    return tuple(sorted(names))


def _kinds(annotation: Any) -> set[Any]:
    """The types an annotation may hold: Path | None -> {Path, NoneType}; list[Pool] -> {Pool, list}."""
    found, todo = set(), [annotation]
    while todo:
        kind = todo.pop()
        args = get_args(kind)
        if args:
            todo.extend(args)
            origin = get_origin(kind)
            if isinstance(origin, type):
                found.add(origin)
        else:
            found.add(kind)
    return found


def _section(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """A section the environment adds to: it must be a mapping (or absent)."""
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: `{name}` must be a mapping of settings, not {type(section).__name__}")
    return section


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = read_capped(path, MAX_CONFIG_BYTES)
    except FileTooLarge:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a hashfleet config "
                          "(a real one is a few KB)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): save the config as UTF-8") from None
    try:
        loaded = _safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(e, "problem", None) or e)
        raise ConfigError(_clip(f"{path}:{where} not valid YAML: {problem}", 300)) from None
    except _TooManyValues as e:
        raise ConfigError(f"{path}: refused: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a hashfleet config") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(loaded).__name__}")
    return loaded


class _TooManyValues(Exception):
    pass


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml.safe_load's loader (libyaml's where installed)."""


def _safe_load(text: str) -> Any:
    """yaml.safe_load that refuses a document of more than MAX_CONFIG_NODES values, aliases counted
    as copies, before anything is expanded (a 1 KB alias bomb stands for billions of values)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _more_nodes_than(node, MAX_CONFIG_NODES):
            raise _TooManyValues(f"more than {MAX_CONFIG_NODES:,} values, each alias (*name) counted as a copy of "
                                 "what it names: not a hashfleet config (a YAML alias bomb?)")
        _no_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _no_duplicate_keys(root: yaml.Node) -> None:
    """A key twice in one mapping is a mistake YAML forgives silently (the last wins: two `miners:` lists,
    one ignored): yaml.MarkedYAMLError naming it. Each node once (an alias is the node it names)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in keys:
                        problem = f"`{key.value[:60]}` appears twice in one mapping (YAML would keep the last silently)"
                        raise yaml.MarkedYAMLError(problem=problem, problem_mark=key.start_mark)
                    keys.add(key.value)
                stack += (key, value)
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _more_nodes_than(root: yaml.Node, limit: int) -> bool:
    """Whether the document, each alias copied out, has more than `limit` nodes. An alias is the same
    node object again, so walking the graph as a tree visits what expansion would build; the walk
    stops at `limit` (an alias inside the node it names is an endless tree: stopped too)."""
    count = 0
    stack = [root]
    while stack:
        count += 1
        if count > limit:
            return True
        stack.extend(_children(stack.pop()))
    return False


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# The command-line flags that set a top-level field (collector/commands): an error in one names the flag.
FLAGS = {"interval_s": "--interval", "site": "--site", "miners": "--miners", "shard": "--shard"}


def _describe(source: str, error: ValidationError, flags: set[str] = frozenset(),  # type: ignore[assignment]
              from_env: dict[str, str] | None = None) -> str:
    """The problems, each named where its value came from: the file (`source`), a flag, or an environment
    variable (`from_env`: field -> variable)."""
    from_env = from_env or {}
    lines = []
    in_file = False  # a problem with a value the file holds (else the header does not name the file)
    for item in error.errors()[:20]:
        loc = [str(p) for p in item["loc"]]
        field = ".".join(loc) or "(top level)"
        if loc and loc[0] in flags and loc[0] in FLAGS:
            field = f"{FLAGS[loc[0]]} ({field})"  # a flag's value, not the file's
        elif field in from_env:
            field = f"environment: {from_env[field]} ({field})"
        elif item["type"] == "missing" and len(loc) == 2 and (given := sorted(
                var for name, var in from_env.items() if name.startswith(f"{loc[0]}."))):
            # the section exists because the environment made it: say which variable is missing
            wanted = {"influx": INFLUX_ENV, "mqtt": MQTT_ENV}.get(loc[0], {})
            var = next((v for v, f in wanted.items() if f == loc[1]), None)
            field = f"{field} ({', '.join(given)} set in the environment{f', {var} is not' if var else ''})"
        else:
            in_file = True
        value = item.get("input")
        if _SECRET_FIELDS & set(loc) or item["type"] == "missing" or isinstance(value, dict):
            shown = ""
        elif isinstance(value, str) and loc and loc[-1].endswith(_URL_FIELDS):
            base = value.partition("?")[0].partition("#")[0]  # (a query may hold a token)
            shown = f" (got {_short.repr(redact_url(base))})"
        else:
            shown = f" (got {_short.repr(value)})"
        hint = ""
        if item["type"] == "extra_forbidden" and loc and (near := difflib.get_close_matches(
                loc[-1], _known_names(), n=1, cutoff=0.75)):
            hint = f"; did you mean {near[0]!r}?"  # (`interval: 10` for interval_s, `tarrif`: trial ZJ)
        lines.append(_clip(redact(f"  {field}: {item['msg']}{hint}{shown}"), 400))
    if error.error_count() > 20:
        lines.append(f"  ... and {error.error_count() - 20} more")
        in_file = True
    header = f"invalid configuration ({error.error_count()} problem(s))"
    return "\n".join([f"{source}: {header}" if in_file else header, *lines])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"

"""Load the collector's configuration: YAML file, then environment, then flags.

A broken config is an error a user can act on: it names the file, the field
and the problem, and nothing starts (the CLI exits with code 2).
Secrets are never echoed back: pydantic's SecretStr hides the token, and
errors quote field names, not values, for secret fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models import CollectorConfig

_SECRET_FIELDS = {"token", "password"}

# Environment variables that fill the `influx` section (the names docker compose passes).
INFLUX_ENV = {
    "INFLUX_URL": "url",
    "INFLUX_ORG": "org",
    "INFLUX_BUCKET": "bucket",
    "INFLUX_TOKEN": "token",
    "INFLUX_TOKEN_FILE": "token_file",
}

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
    """Where the spool lives: the config's directory, else $HASHFLEET_SPOOL_DIR, else the XDG state dir."""
    env = os.environ if environ is None else environ
    if config.spool.directory is not None:
        return config.spool.directory
    # One spool per site and shard: shards of one site may run side by side on one host.
    name = config.site if config.shard is None else f"{config.site}.shard-{config.shard.replace('/', '-of-')}"
    if env.get("HASHFLEET_SPOOL_DIR"):
        return Path(env["HASHFLEET_SPOOL_DIR"]) / name
    state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "hashfleet" / "spool" / name


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def load(path: Path | None = None, overrides: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None) -> CollectorConfig:
    env = os.environ if environ is None else environ
    source = str(path) if path else "command line"
    raw: dict[str, Any] = _read_yaml(path) if path else {}

    influx_env = {field: env[var] for var, field in INFLUX_ENV.items() if env.get(var)}
    if influx_env:
        raw["influx"] = {**(raw.get("influx") or {}), **influx_env}
        if "token_file" in influx_env:
            raw["influx"].pop("token", None)
    mqtt_env = {field: env[var] for var, field in MQTT_ENV.items() if env.get(var)}
    if mqtt_env:
        raw["mqtt"] = {**(raw.get("mqtt") or {}), **mqtt_env}
        for given, other in (("password", "password_file"), ("password_file", "password")):
            if given in mqtt_env and other not in mqtt_env:
                raw["mqtt"].pop(other, None)
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    try:
        config = CollectorConfig.model_validate(raw)
        if config.influx is not None:
            config.influx.resolved_token()  # a missing token file is a config error, found now
        if config.mqtt is not None:
            config.mqtt.resolved_password()  # likewise a missing MQTT password file
    except ValidationError as e:
        raise ConfigError(_describe(source, e)) from None
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, not {type(data).__name__}")
    return data


def _describe(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration ({error.error_count()} problem(s))"]
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        shown = "" if _SECRET_FIELDS & {str(p) for p in item["loc"]} or item["type"] == "missing" else (
            f" (got {item['input']!r})" if not isinstance(item["input"], dict) else "")
        lines.append(f"  {field}: {item['msg']}{shown}")
    return "\n".join(lines)

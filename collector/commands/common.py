"""What the commands share: usage errors (exit 2), loading the configuration, periods like `24h`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NoReturn

import typer

from collector import config as config_loader
from collector.layout import LayoutError, SiteLayout
from collector.stages.curtailment import load_schedule
from collector.sources.targets import TargetError, parse_specs
from models import CollectorConfig
from models.base import parse_decimal


def fail_usage(message: str) -> NoReturn:
    typer.echo(f"hashfleet: {message}", err=True)
    raise typer.Exit(2)


# A collector run with --shard keeps its own local history: report and health read it with the same option.
SHARD_OPTION = typer.Option(None, "--shard", metavar="K/N", help="Split one fleet over N collectors: shard K.")


def load_config(path: Path | None, *, pools: bool = True, **overrides) -> CollectorConfig:
    """The configuration from `path`, the environment and `overrides` (flags); exit 2 naming the problem.
    `pools` False: a command that reads no pool API (their sections, and their tokens, are left out)."""
    try:
        config = config_loader.load(path, overrides, pools=pools)
        parse_specs(config.miners)  # a bad address is a config error, found before anything starts
        SiteLayout.load(config.layout)  # likewise a bad layout CSV
    except (config_loader.ConfigError, TargetError, LayoutError) as e:
        fail_usage(str(e))
    if config.curtailment is not None and config.curtailment.dr_schedule is not None:
        try:
            load_schedule(config.curtailment.dr_schedule)  # and a bad demand-response schedule
        except ValueError as e:
            fail_usage(str(e))
    return config


def local_history(cfg: CollectorConfig) -> Path:
    """The folder of the site's local history (the spool a collector keeps without InfluxDB); if there is
    none, exit 2 saying where it looked (and, on a sharded site, where the shards keep theirs)."""
    directory = config_loader.spool_directory(cfg)
    if not directory.is_dir():
        fail_usage(f"no local history for site {cfg.site!r} in {directory}" + (shards_hint(cfg) or " (run "
                   "`hashfleet collect` without InfluxDB first, or pass --config/--site)"))
    return directory


def shards_hint(cfg: CollectorConfig) -> str:
    """Where the history is when the site is collected in shards: each keeps its own, read one at a time.
    (Their reports are not added up here: shards poll at their own instants, and after a change of N or
    with a shard stopped, old and new shards' averages would be summed over different spans.)"""
    if cfg.influx is not None:  # (it sent a site writing to InfluxDB to --shard, which then found nothing: trial ZI)
        return ("; this config writes to InfluxDB, which holds the history instead: the dashboards, and `hashfleet "
                "health --since` from it")
    shards = config_loader.shard_spools(cfg) if cfg.shard is None else {}
    if not shards:
        return ""
    names = list(shards)
    listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    where = next(iter(shards.values())).parent
    return f"; the site is collected in shards, each keeping its own history in {where}: read one with --shard K/N " \
           f"({listed})"


def decimal_option(value: str | float) -> float:
    """A number option's value (typer's `parser`), read with the one parser for typed numbers: float() would
    take 0_05 (5: a typo read as $5/kWh), nan and inf. A default arrives as a float already."""
    if isinstance(value, float):
        return value
    try:
        return parse_decimal(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


MAX_PERIOD_DAYS = 10_000  # 27 years: further back than any history is kept; keeps the arithmetic in range


def parse_period(option: str, text: str, example: str = "90m, 24h or 7d") -> int:
    """`30s`, `90m`, `24h`, `7d` -> whole seconds (at least one, at most MAX_PERIOD_DAYS); exit 2 naming `option`
    and what is wrong otherwise. `example` is what the option's help shows, so the error and the help agree."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1])
        if text[-1] not in units or not math.isfinite(value):
            raise ValueError
    except (ValueError, IndexError):
        fail_usage(f"{option} {text!r}: write a number and a unit (s, m, h or d), e.g. {example}")
    seconds = value * units[text[-1]]
    if seconds > MAX_PERIOD_DAYS * 86400:
        fail_usage(f"{option} {text!r}: at most {MAX_PERIOD_DAYS:,} days, e.g. {example}")
    if seconds < 1:  # (0.001m is 0 s: a period of nothing)
        fail_usage(f"{option} {text!r}: a period of at least a second, e.g. {example}")
    return int(seconds)


# The site from the environment too: the compose stack sets HASHFLEET_SITE in the collector's container, so
# `docker compose exec collector hashfleet health --since 7d` asks about the stack's site, not `default`.
SITE_OPTION = typer.Option(None, "--site", envvar="HASHFLEET_SITE",
                           help="Site name (default: the config's `site`, else `default`).")
MINERS_OPTION = typer.Option(None, "--miners", help="Comma-separated addresses, CIDR ranges or DNS names.")
# From the environment too: the compose stack sets HASHFLEET_CONFIG in the collector's container, so
# `docker compose exec collector hashfleet health` reads the stack's config (it said "no miners to read": trial ZE).
CONFIG_OPTION = typer.Option(None, "--config", "-c", envvar="HASHFLEET_CONFIG",
                             help="YAML config (see hashfleet.example.yaml).")


def miners_list(miners: str | None) -> list[str] | None:
    return miners.split(",") if miners else None

"""`hashfleet report`: a fleet and cost summary over a period, from the local history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from collector import config as config_loader
from collector import history, terminal
from collector.commands.common import SHARD_OPTION, SITE_OPTION, fail_usage, load_config, parse_period


def report(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (site and spool settings)."),
    site: str | None = SITE_OPTION,
    since: str = typer.Option("24h", "--since", help="Period to summarise: e.g. 90m, 24h, 7d."),
    shard: str | None = SHARD_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of tables."),
) -> None:
    """Fleet and cost summary over a period, from the local history kept without InfluxDB."""
    cfg = load_config(config, pools=False, site=site, shard=shard)
    seconds = parse_period("--since", since)
    directory = config_loader.spool_directory(cfg)
    if not directory.is_dir():
        fail_usage(f"no local history for site {cfg.site!r} in {directory}" + (_shards_hint(cfg) or " (run "
                   "`hashfleet collect` without InfluxDB first, or pass --config/--site)"))
    end = int(time.time())
    summary = history.from_spool(directory, cfg.site, end - seconds, end)
    if not summary.cycles:  # (not a table of dashes)
        fail_usage(f"no local history of site {cfg.site!r} in the last {since} in {directory}{_shards_hint(cfg)}")
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        terminal.print_report(summary)


def _shards_hint(cfg) -> str:
    """Where the history is when the site is collected in shards: each keeps its own, read one at a time.
    (Their reports are not added up here: shards poll at their own instants, and after a change of N or
    with a shard stopped, old and new shards' averages would be summed over different spans.)"""
    shards = config_loader.shard_spools(cfg) if cfg.shard is None else {}
    if not shards:
        return ""
    names = list(shards)
    listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    where = next(iter(shards.values())).parent
    return f"; the site is collected in shards, each keeping its own history in {where}: read one with --shard K/N " \
           f"({listed})"

"""`hashfleet report`: a fleet and cost summary over a period, from the local history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from collector import history, terminal
from collector.clock import history_until
from collector.commands.common import (
    SHARD_OPTION, SITE_OPTION, fail_usage, load_config, local_history, parse_period, shards_hint,
)


def report(
    config: Path | None = typer.Option(None, "--config", "-c", envvar="HASHFLEET_CONFIG",
                                       help="YAML config (site and spool settings)."),
    site: str | None = SITE_OPTION,
    since: str = typer.Option("24h", "--since", help="Period to summarise: e.g. 90m, 24h, 7d."),
    shard: str | None = SHARD_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of tables."),
) -> None:
    """Fleet and cost summary over a period, from the local history kept without InfluxDB."""
    cfg = load_config(config, pools=False, site=site, shard=shard)
    seconds = parse_period("--since", since)
    directory = local_history(cfg)
    end = history_until(time.time())
    summary = history.from_spool(directory, cfg.site, end - seconds, end, interval_s=cfg.interval_s)
    summary.shard = cfg.shard  # (a shard's report read as the site's: trial ZI)
    if not summary.cycles:  # (not a table of dashes)
        fail_usage(f"no local history of site {cfg.site!r} in the last {since} in {directory}{shards_hint(cfg)}")
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        terminal.print_report(summary)

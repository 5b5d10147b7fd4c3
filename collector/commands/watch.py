"""`hashfleet watch`: the live terminal view of the fleet and its cost per BTC; needs no server."""

from __future__ import annotations

from pathlib import Path

import typer

from collector import config as config_loader
from collector import pipeline, service
from collector.commands.collect import run_until_stopped
from collector.commands.common import (
    CONFIG_OPTION, MINERS_OPTION, SITE_OPTION, decimal_option, fail_usage, load_config, miners_list,
)
from collector.sinks.live_view import LiveView


def watch(
    config: Path | None = CONFIG_OPTION,
    miners: str | None = MINERS_OPTION,
    interval: float | None = typer.Option(None, "--interval", parser=decimal_option, help="Seconds between refreshes (default 10)."),
    site: str | None = SITE_OPTION,
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Exit after N refreshes."),
) -> None:
    """Live terminal view of the fleet; needs no server at all."""
    cfg = load_config(config, pools=False, miners=miners_list(miners), interval_s=interval, site=site)
    if not cfg.miners:
        fail_usage("no miners to watch: pass --miners or set `miners:` in the config file")
    history = config_loader.spool_directory(cfg)
    view = LiveView(history_dir=history if history.is_dir() else None, interval_s=cfg.interval_s)
    # Not service mode: a watch never marks the collector offline on MQTT nor races it for the totals file;
    # and without the pools: the view shows none, and a pool's rate limit is shared with the collector.
    built = pipeline.build(cfg, sinks=[view])
    try:
        service.run_event_loop(run_until_stopped(built, cycles))
    finally:
        built.close()

"""`hashfleet collect`: the service — every interval, poll the fleet, cost it, write it."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime, timezone
from pathlib import Path

import typer

from collector import own_folder, pipeline, service, shard_state
from collector.sources.targets import in_shard, listed_targets, parse_specs
from collector.commands.common import (
    CONFIG_OPTION, MINERS_OPTION, SHARD_OPTION, SITE_OPTION, decimal_option, fail_usage, load_config, miners_list,
)
from collector.mqtt.connection import MqttConnectError


def collect(
    config: Path | None = CONFIG_OPTION,
    miners: str | None = MINERS_OPTION,
    interval: float | None = typer.Option(None, "--interval", parser=decimal_option, help="Seconds between cycles (default 10)."),
    site: str | None = SITE_OPTION,
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Exit after N cycles."),
    shard: str | None = SHARD_OPTION,
) -> None:
    """Poll the fleet every interval and write it to InfluxDB (INFLUX_URL, INFLUX_TOKEN, ...)."""
    cfg = load_config(config, miners=miners_list(miners), interval_s=interval, site=site, shard=shard)
    mqtt_miners = cfg.mqtt is not None and any(s.kind == "miner_telemetry" for s in cfg.mqtt.ingest)
    if not cfg.miners and not mqtt_miners:
        fail_usage("no miners configured: pass --miners or set `miners:` in the config file")
    try:  # a shard's state where a version before dea69e4 kept it: taken up before anything reads it
        shard_state.take_up_earlier_layout(cfg)
    except (shard_state.StateInUse, own_folder.UnsafeFolder) as e:
        fail_usage(str(e))
    except OSError as e:
        fail_usage(f"spool.directory {cfg.spool.directory}: the state kept there could not be moved into the "
                   f"shard's directory ({e.strerror or e}{': ' + str(e.filename) if e.filename else ''})")
    try:
        storage = pipeline.storage_sink(cfg)
    except pipeline.SpoolInUseError as e:
        fail_usage(str(e))
    # Start after the newest undelivered batch: a quick restart never overwrites a spooled cycle.
    newest = storage.spool.newest_timestamp()
    after = datetime.fromtimestamp(newest, timezone.utc) if newest is not None else None
    try:
        built = pipeline.build(cfg, sinks=[storage], service_mode=True)
    except pipeline.ControlSetupError as e:
        storage.close()
        fail_usage(str(e))
    pipeline.log.info("%s", built.saved_state(storage.spool.directory))
    if cfg.shard is not None:  # (a shard's log never said which it is nor what it owns: trial ZI L3)
        listed = listed_targets(parse_specs(cfg.miners))
        owned = sum(in_shard(t, cfg.shard_k_n) for t in listed)
        (pipeline.log.info if owned else pipeline.log.warning)(
            "shard %s: %d of the %d address(es) listed (ranges' addresses included) are this shard's%s", cfg.shard,
            owned, len(listed), "" if owned else ": it polls nothing but what it may find by DNS or MQTT (check N)")
    if cfg.shard is not None and cfg.curtailment is not None:
        # Not shard-aware (README, Beyond one machine): trial ZI's 60 kW limit read "met" from each of three
        # shards drawing ~29 kW while the site drew 86 kW.
        pipeline.log.warning(
            "curtailment on shard %s plans this shard's miners alone: a demand-response limit is compared with this "
            "shard's draw, not the site's, and the shards' curtailment site points overwrite each other's; give each "
            "shard a limit of its share (a dr_schedule per shard), or run curtailment where one collector polls the "
            "site (docs/curtailment.md, Shards)", cfg.shard)
    try:
        service.run_event_loop(run_until_stopped(built, cycles, after))
    finally:
        built.close()


async def run_until_stopped(built: pipeline.Pipeline, cycles: int | None, after: datetime | None = None) -> None:
    """Run the pipeline until `cycles` are done or SIGTERM/SIGINT/SIGHUP (the running cycle is finished and
    written); a broker refusing the first MQTT connection ends the command with exit 1."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too (a closed SSH session, `kill -HUP` from habit): it ended the collector like a crash, the
    # running cycle unwritten and the state unsaved.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        done = await built.run(cycles=cycles, stop=stop, after=after)
    except MqttConnectError as e:
        typer.echo(f"hashfleet: {e}", err=True)
        raise typer.Exit(1) from None
    pipeline.log.info("stopped after %d cycle(s)", done)

"""The `hashfleet` command line.

Commands that belong to other folders (the simulators) register themselves
through the `hashfleet.commands` entry-point group in pyproject.toml, so this
module never imports them: collector and simulators meet only on the wire.
Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from datetime import datetime, timezone
from importlib.metadata import entry_points
from pathlib import Path

import typer

from collector import config as config_loader
from collector import service
from collector import terminal as display
from collector.commands.cost import cost as _cost_command
from collector.commands.grafana import grafana_app
from collector.sources.polled_miners import Poller
from collector.redact import RedactingFilter
from collector.sources.targets import TargetError, parse_specs

app = typer.Typer(
    name="hashfleet",
    help="Mining-fleet telemetry and live all-in cost per BTC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("hashfleet")


@app.callback()
def _root(
    log_level: str = typer.Option("INFO", "--log-level", envvar="HASHFLEET_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # whatever a library logs, URL credentials stay hidden
        handler.addFilter(RedactingFilter())


# A cycle's samples (~12 containers each) live until the cycle ends. With Python's default
# generation-0 threshold (700 allocations) the collector scanned them again and again on their way
# to the oldest generation: ~0.5 s of garbage collection per 10,000-miner cycle, a sixth of the poll's
# CPU (measured with gc.callbacks; ~0.05 s at this threshold). What a cycle drops is freed by
# reference counting; the rare reference cycles only wait a little longer.
GC_GEN0_THRESHOLD = 50_000


def _run(coro):
    """Run the service's event loop: uvloop where installed (measured: a fifth less CPU per miner)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _fail_usage(message: str) -> None:
    typer.echo(f"hashfleet: {message}", err=True)
    raise typer.Exit(2)


def _load_config(path: Path | None, **overrides) -> config_loader.CollectorConfig:
    try:
        cfg = config_loader.load(path, overrides)
        parse_specs(cfg.miners)  # a bad address is a config error, found before anything starts
        return cfg
    except (config_loader.ConfigError, TargetError) as e:
        _fail_usage(str(e))
        raise  # unreachable


@app.command()
def poll(
    addresses: list[str] = typer.Argument(..., metavar="ADDR[:PORT]...", help="Miners to poll once."),
    as_json: bool = typer.Option(False, "--json", help="One MinerSample per line (JSON Lines)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds per miner."),
    site: str = typer.Option("default", "--site"),
) -> None:
    """Poll miners once and print what they report."""
    cfg = _load_config(None, miners=addresses, timeout_s=timeout, site=site)
    result = _run(_poll_once(Poller(cfg)))
    if as_json:
        for sample in result.samples:
            sys.stdout.write(sample.model_dump_json() + "\n")
    else:
        display.print_table(result.samples)


async def _poll_once(poller: Poller):
    await poller.refresh()  # resolve DNS names, scan ranges
    return await poller.cycle(service.cycle_timestamp())


@app.command()
def collect(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see hashfleet.example.yaml)."),
    miners: str | None = typer.Option(None, "--miners", help="Comma-separated addresses, CIDR ranges or DNS names."),
    interval: float | None = typer.Option(None, "--interval", help="Seconds between cycles (default 10)."),
    site: str | None = typer.Option(None, "--site"),
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Exit after N cycles."),
    shard: str | None = typer.Option(None, "--shard", metavar="K/N",
                                     help="Split one fleet over N collectors: this one polls shard K."),
) -> None:
    """Poll the fleet every interval and write it to InfluxDB (INFLUX_URL, INFLUX_TOKEN, ...)."""
    cfg = _load_config(config, miners=miners.split(",") if miners else None, interval_s=interval, site=site,
                       shard=shard)
    mqtt_miners = cfg.mqtt is not None and any(s.kind == "miner_telemetry" for s in cfg.mqtt.ingest)
    if not cfg.miners and not mqtt_miners:
        _fail_usage("no miners configured: pass --miners or set `miners:` in the config file")
    storage = _storage_sink(cfg)
    # Start after the newest undelivered batch: a quick restart never overwrites a spooled cycle.
    newest = storage.spool.newest_timestamp()
    after = datetime.fromtimestamp(newest, timezone.utc) if newest is not None else None
    try:
        _run(_collect(cfg, [storage], cycles, service_mode=True, after=after))
    finally:
        storage.close()


def _storage_sink(cfg):
    """InfluxDB through the spool; without InfluxDB, the spool itself keeps the local history."""
    from collector.sinks.spool import Spool, SpoolInUse

    directory = config_loader.spool_directory(cfg)
    max_bytes = int(cfg.spool.max_mb * 1024 * 1024)
    try:
        if cfg.influx is not None:
            from collector.sinks.influx import InfluxSink

            return InfluxSink(cfg.influx, Spool(directory, max_bytes=max_bytes))
        from collector.sinks.local_history import LocalHistorySink

        log.warning("no InfluxDB configured (INFLUX_URL or influx: in the config): "
                    "keeping %.0f h of local history in %s (hashfleet report reads it)", cfg.spool.retention_h, directory)
        return LocalHistorySink(Spool(directory, max_bytes=max_bytes, retention_s=cfg.spool.retention_h * 3600))
    except SpoolInUse as e:
        _fail_usage(str(e))
    except OSError as e:
        _fail_usage(f"spool directory {directory}: {e.strerror or e}")


async def _collect(cfg, sinks, cycles: int | None, *, service_mode: bool = False,
                   after: datetime | None = None) -> None:
    """The poll loop. service_mode (collect, not watch): MQTT in/out and cost totals kept across restarts;
    a watch must never mark the collector offline on MQTT nor race it for the totals file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bridge = await _start_mqtt(cfg) if service_mode and cfg.mqtt is not None else None
    if bridge is not None:
        sinks = [*sinks, bridge.sink]
    cost_stage = None
    if cfg.economics is not None and cfg.network is not None:
        from collector.stages.cost_stage import CostStage

        totals_path = config_loader.spool_directory(cfg) / "cost-totals.json"
        cost_stage = CostStage(cfg.site, cfg.economics, cfg.network, live=bridge.live if bridge else None,
                               totals_path=totals_path if service_mode else None,
                               forget_after_s=cfg.forget_unseen_miners_h * 3600)
    try:
        done = await service.run(Poller(cfg), sinks, cycles=cycles, stop=stop, cost_stage=cost_stage,
                                 extra_samples=bridge.ingest.cycle_samples if bridge else None, after=after)
    finally:
        if bridge is not None:
            bridge.close()  # status offline, then disconnect
    log.info("stopped after %d cycle(s)", done)


async def _start_mqtt(cfg):
    """MQTT publishing and ingest (docs/mqtt.md); a broker refusing the first connection ends the command."""
    from collector.mqtt import MqttBridge, MqttConnectError

    try:
        bridge = MqttBridge(cfg.mqtt, cfg.site)
        await bridge.start()
    except MqttConnectError as e:
        typer.echo(f"hashfleet: {e}", err=True)
        raise typer.Exit(1) from None
    return bridge


@app.command()
def scan(
    ranges: list[str] = typer.Argument(..., metavar="CIDR...", help="Ranges or addresses to probe."),
    concurrency: int = typer.Option(256, "--concurrency", min=1),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds per address."),
) -> None:
    """Discover miners: print each one found with its make and model."""
    from collector.sources import identify as discovery
    from collector.sources.targets import Target, range_targets

    try:
        specs = parse_specs(ranges)
    except TargetError as e:
        _fail_usage(str(e))
    targets = [t for s in specs for t in (range_targets(s) if s.kind == "range" else [Target(s.text, s.port)])]
    with display.progress(f"scanning {len(targets)} address(es)", len(targets)) as advance:
        found = _run(discovery.scan(targets, concurrency=concurrency, timeout_s=timeout,
                                           on_progress=lambda done, total: advance(done)))
    for identity in sorted(found, key=lambda i: i.target):
        typer.echo(f"{identity.target.address}\t{identity.make or '?'}\t{identity.model or '?'}\t{identity.driver}")
    typer.echo(f"{len(found)} miner(s) found in {len(targets)} address(es)", err=True)


@app.command()
def watch(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see hashfleet.example.yaml)."),
    miners: str | None = typer.Option(None, "--miners", help="Comma-separated addresses, CIDR ranges or DNS names."),
    interval: float | None = typer.Option(None, "--interval", help="Seconds between refreshes (default 10)."),
    site: str | None = typer.Option(None, "--site", help="Site name (whose local history to show, if any)."),
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Exit after N refreshes."),
) -> None:
    """Live terminal view of the fleet; needs no server at all."""
    cfg = _load_config(config, miners=miners.split(",") if miners else None, interval_s=interval, site=site)
    if not cfg.miners:
        _fail_usage("no miners to watch: pass --miners or set `miners:` in the config file")
    history = config_loader.spool_directory(cfg)
    view = display.LiveView(history_dir=history if history.is_dir() else None)
    try:
        _run(_collect(cfg, [view], cycles))
    finally:
        view.close()


app.command(name="cost")(_cost_command)
app.add_typer(grafana_app, name="grafana")


@app.command()
def report(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (site and spool settings)."),
    site: str | None = typer.Option(None, "--site"),
    since: str = typer.Option("24h", "--since", help="Period to summarise: e.g. 90m, 24h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of tables."),
) -> None:
    """Fleet and cost summary over a period, from the local history kept without InfluxDB."""
    import json
    import time as _time

    from collector import history as reporting

    cfg = _load_config(config, site=site)
    seconds = _parse_period(since)
    directory = config_loader.spool_directory(cfg)
    if not directory.is_dir():
        _fail_usage(f"no local history for site {cfg.site!r} in {directory} (run `hashfleet collect` without "
                    "InfluxDB first, or pass --config/--site)")
    end = int(_time.time())
    result = reporting.from_spool(directory, cfg.site, end - seconds, end)
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        display.print_report(result)


def _parse_period(text: str) -> int:
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1])
        if text[-1] not in units or value <= 0:
            raise ValueError
    except (ValueError, IndexError):
        _fail_usage(f"--since {text!r}: write a number and a unit, e.g. 90m, 24h or 7d")
    return int(value * units[text[-1]])


def _register_plugins() -> None:
    for ep in entry_points(group="hashfleet.commands"):
        try:
            app.command(name=ep.name)(ep.load())
        except ImportError as e:  # a broken plugin must not take the other commands down
            print(f"hashfleet: command {ep.name!r} unavailable: {e}", file=sys.stderr)


def main() -> None:
    _register_plugins()
    app()

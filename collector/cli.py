"""The `hashfleet` command line.

Commands that belong to other folders (the simulators) register themselves
through the `hashfleet.commands` entry-point group in pyproject.toml, so this
module never imports them: collector and simulators meet only on the wire.
Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer

from collector import config as config_loader
from collector import display, service
from collector.cost_cli import cost as _cost_command
from collector.poller import Poller
from collector.targets import TargetError, parse_specs

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
    result = asyncio.run(_poll_once(Poller(cfg)))
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
) -> None:
    """Poll the fleet every interval and write it to InfluxDB (INFLUX_URL, INFLUX_TOKEN, ...)."""
    cfg = _load_config(config, miners=miners.split(",") if miners else None, interval_s=interval, site=site)
    if not cfg.miners:
        _fail_usage("no miners configured: pass --miners or set `miners:` in the config file")
    sinks = []
    if cfg.influx is not None:
        from collector.sinks.influx import InfluxSink

        sinks.append(InfluxSink(cfg.influx))
    else:
        log.warning("no InfluxDB configured (INFLUX_URL or influx: in the config): samples are not stored")
    try:
        asyncio.run(_collect(cfg, sinks, cycles))
    finally:
        for sink in sinks:
            sink.close()


async def _collect(cfg, sinks, cycles: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cost_stage = None
    if cfg.economics is not None and cfg.network is not None:
        from collector.costing import CostStage

        cost_stage = CostStage(cfg.site, cfg.economics, cfg.network)
    done = await service.run(Poller(cfg), sinks, cycles=cycles, stop=stop, cost_stage=cost_stage)
    log.info("stopped after %d cycle(s)", done)


@app.command()
def scan(
    ranges: list[str] = typer.Argument(..., metavar="CIDR...", help="Ranges or addresses to probe."),
    concurrency: int = typer.Option(256, "--concurrency", min=1),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds per address."),
) -> None:
    """Discover miners: print each one found with its make and model."""
    from collector import discovery
    from collector.targets import Target, range_targets

    try:
        specs = parse_specs(ranges)
    except TargetError as e:
        _fail_usage(str(e))
    targets = [t for s in specs for t in (range_targets(s) if s.kind == "range" else [Target(s.text, s.port)])]
    with display.progress(f"scanning {len(targets)} address(es)", len(targets)) as advance:
        found = asyncio.run(discovery.scan(targets, concurrency=concurrency, timeout_s=timeout,
                                           on_progress=lambda done, total: advance(done)))
    for identity in sorted(found, key=lambda i: i.target):
        typer.echo(f"{identity.target.address}\t{identity.make or '?'}\t{identity.model or '?'}\t{identity.driver}")
    typer.echo(f"{len(found)} miner(s) found in {len(targets)} address(es)", err=True)


@app.command()
def watch(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see hashfleet.example.yaml)."),
    miners: str | None = typer.Option(None, "--miners", help="Comma-separated addresses, CIDR ranges or DNS names."),
    interval: float | None = typer.Option(None, "--interval", help="Seconds between refreshes (default 10)."),
    cycles: int | None = typer.Option(None, "--cycles", min=1, help="Exit after N refreshes."),
) -> None:
    """Live terminal view of the fleet; needs no server at all."""
    cfg = _load_config(config, miners=miners.split(",") if miners else None, interval_s=interval)
    if not cfg.miners:
        _fail_usage("no miners to watch: pass --miners or set `miners:` in the config file")
    view = display.LiveView()
    try:
        asyncio.run(_collect(cfg, [view], cycles))
    finally:
        view.close()


app.command(name="cost")(_cost_command)


def _register_plugins() -> None:
    for ep in entry_points(group="hashfleet.commands"):
        try:
            app.command(name=ep.name)(ep.load())
        except ImportError as e:  # a broken plugin must not take the other commands down
            print(f"hashfleet: command {ep.name!r} unavailable: {e}", file=sys.stderr)


def main() -> None:
    _register_plugins()
    app()

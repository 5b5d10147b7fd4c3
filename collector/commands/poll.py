"""`hashfleet poll ADDR...`: read miners once and print what they report."""

from __future__ import annotations

import sys

import typer

from collector import pipeline, service, terminal
from collector.commands.common import load_config
from collector.cycle import Cycle


def poll(
    addresses: list[str] = typer.Argument(..., metavar="ADDR[:PORT]...", help="Miners to poll once."),
    as_json: bool = typer.Option(False, "--json", help="One MinerSample per line (JSON Lines)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds per miner."),
    site: str = typer.Option("default", "--site"),
) -> None:
    """Poll miners once and print what they report."""
    config = load_config(None, miners=addresses, timeout_s=timeout, site=site)
    samples = terminal.by_address(service.run_event_loop(_poll_once(pipeline.build(config))).samples)
    if as_json:
        for sample in samples:
            sys.stdout.write(sample.model_dump_json() + "\n")
    else:
        terminal.print_table(samples)


async def _poll_once(built: pipeline.Pipeline) -> Cycle:
    # Identify every address first (resolve names, scan ranges), then one cycle of the polled miners.
    await built.polled.refresh()
    cycle = Cycle(built.config.site, service.cycle_timestamp())
    await built.polled.collect(cycle)
    return cycle

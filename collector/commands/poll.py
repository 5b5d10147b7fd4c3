"""`hashfleet poll ADDR...`: read miners once and print what they report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from collector import pipeline, service, terminal
from collector.commands.common import CONFIG_OPTION, SITE_OPTION, load_config
from collector.cycle import Cycle
from collector.identity import DuplicateIds
from models import MinerState


def poll(
    addresses: list[str] = typer.Argument(..., metavar="ADDR[:PORT]...", help="Miners to poll once."),
    as_json: bool = typer.Option(False, "--json", help="One MinerSample per line (JSON Lines)."),
    # None unless given: the config's `timeout_s` (else its default, 5 s) then applies, as its other settings do.
    timeout: float | None = typer.Option(None, "--timeout", min=0.1,
                                         help="Seconds per miner (default: the config's `timeout_s`, else 5)."),
    site: str | None = SITE_OPTION,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Poll miners once and print what they report (the addresses given; from a config file, its other
    settings, e.g. `readers`). Exit 1 when none answered."""
    config = load_config(config_file, pools=False, miners=addresses, timeout_s=timeout, site=site)
    polled = terminal.by_address(service.run_event_loop(_poll_once(pipeline.build(config))).samples)
    ids = DuplicateIds()  # one id per miner, as `collect` has it: of two addresses showing one MAC, the first keeps it
    samples = [ids.check(s) for s in polled]
    if as_json:
        for sample in samples:
            sys.stdout.write(sample.model_dump_json() + "\n")
    else:
        terminal.print_table(samples)
    if not any(s.state is not MinerState.OFFLINE for s in samples):
        # what was read is printed; the exit says none answered (a cron check, as `advise` does: trial ZB)
        typer.echo(f"hashfleet: no miner answered ({len(samples)} polled)", err=True)
        raise typer.Exit(1)


async def _poll_once(built: pipeline.Pipeline) -> Cycle:
    # Identify every address first (resolve names, scan ranges), then one cycle of the polled miners.
    await built.polled.refresh()
    cycle = Cycle(built.config.site, service.cycle_timestamp())
    await built.polled.collect(cycle)
    return cycle

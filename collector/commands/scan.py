"""`hashfleet scan CIDR...`: discovery only — what answers where, with a progress bar."""

from __future__ import annotations

import typer

from collector import service, terminal
from collector.commands.common import fail_usage
from collector.sources import identify
from collector.sources.targets import TargetError, listed_targets, parse_specs


def scan(
    ranges: list[str] = typer.Argument(..., metavar="CIDR...", help="Ranges or addresses to probe."),
    concurrency: int = typer.Option(256, "--concurrency", min=1),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds per address."),
) -> None:
    """Discover miners: print each one found with its make and model."""
    try:
        specs = parse_specs(ranges)
    except TargetError as e:
        fail_usage(str(e))
    targets = listed_targets(specs)
    with terminal.progress(f"scanning {len(targets)} address(es)", len(targets)) as advance:
        found = service.run_event_loop(identify.scan(targets, concurrency=concurrency, timeout_s=timeout,
                                                     on_progress=lambda done, total: advance(done)))
    for identity in sorted(found, key=lambda i: i.target):
        make, model = (terminal.printable(text or "?") for text in (identity.make, identity.model))
        typer.echo(f"{identity.target.address}\t{make}\t{model}\t{identity.driver}")
    typer.echo(f"{len(found)} miner(s) found in {len(targets)} address(es)", err=True)

"""`hashfleet simulate`: serve a fleet of simulated Avalon miners until Ctrl-C or SIGTERM.

Registered through the `hashfleet.commands` entry point, so collector/ never imports it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import typer

from simulators.fleet import Fleet, FleetSpecError, allocate_addresses, parse_fleet
from simulators.server import BindError
from simulators.specs import known_models


def _check_fleet(value: str) -> str:
    try:
        parse_fleet(value)
    except FleetSpecError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _check_base(value: str) -> str:
    try:
        allocate_addresses(value, 1)
    except FleetSpecError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


async def _serve(fleet: Fleet) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        for miner in fleet:
            print(f"{miner.address} {miner.spec.key}")
        sys.stdout.flush()  # the lines are the contract: whoever reads them must see them now
        await stop.wait()


def simulate(
    fleet: str = typer.Option(
        ..., "--fleet", callback=_check_fleet,
        help=f"MODEL:COUNT,... e.g. a1246:2,a1566:2,q:1. Models: {known_models()}.",
    ),
    base: str = typer.Option(
        "127.10.0.1", "--base", callback=_check_base,
        help="First address. HOST: consecutive hosts on port 4028; HOST:PORT: consecutive ports; HOST:0: free ports.",
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same miners (MACs, quirks, noise)."),
    ambient: float = typer.Option(25.0, "--ambient", help="Site ambient temperature, °C."),
) -> None:
    """Serve simulated Avalon miners on the CGMiner API; prints `ADDRESS MODEL` per miner."""
    try:
        sim = Fleet.build(fleet, base=base, seed=seed, ambient_c=ambient)
    except FleetSpecError as exc:  # e.g. the fleet runs past the last port or address
        raise typer.BadParameter(str(exc), param_hint="--base") from None
    try:
        asyncio.run(_serve(sim))
    except BindError as exc:
        typer.echo(f"error: {exc.strerror}", err=True)
        raise typer.Exit(1) from None

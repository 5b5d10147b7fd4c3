"""`hashfleet simulate`: serve a fleet of simulated miners (Avalon, Antminer, Whatsminer, Braiins OS+, Bitaxe),
and optionally simulated pool APIs fed by it (`--pools`), until Ctrl-C or SIGTERM.

Registered through the `hashfleet.commands` entry point, so collector/ never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from pathlib import Path

import typer

from simulators.fleet import Fleet, FleetSpecError, allocate_addresses, new_event_loop, parse_fleet
from simulators.server import BindError
from simulators.mqtt_meter import MqttDeviceError
from simulators.pools.run import Pools, PoolSpecError, parse_pools, pool_addresses
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


def _check_pools(value: str | None) -> str | None:
    try:
        return ",".join(parse_pools(value)) if value else value
    except PoolSpecError as exc:
        raise typer.BadParameter(str(exc)) from None


async def _serve(fleet: Fleet, pools: Pools | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        if pools is not None:  # simulators/pools: fed in-process by the fleet's hashrate
            await pools.start()
        try:
            # Thousands of miners' long-lived objects: keep them out of every later full collection
            # (measured: GC took ~6% of answering a 3,000-miner fleet, a quarter of that frozen).
            gc.freeze()
            for miner in fleet:
                print(f"{miner.address} {miner.spec.key}")
            for pool in pools or ():
                print(pool.describe())
            sys.stdout.flush()  # the lines are the contract: whoever reads them must see them now
            await stop.wait()
        finally:
            if pools is not None:
                await pools.stop()


def simulate(
    fleet: str = typer.Option(
        ..., "--fleet", callback=_check_fleet,
        help=f"MODEL:COUNT,... e.g. a1246:2,nano3:1,avchain:1,s21:1,m50s:2,bos-s19jpro:1,bitaxe:1 (avchain: an AUC "
             f"controller chain of 741 modules, = av741). Models: {known_models()}.",
    ),
    base: str = typer.Option(
        "127.10.0.1", "--base", callback=_check_base,
        help="First address. HOST: consecutive hosts on port 4028 (Antminers also on 80, Braiins OS+ also on "
             "50051 gRPC, Bitaxes on 80 only); "
             "HOST:PORT: consecutive ports; HOST:0: free ports (Avalons only).",
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same miners (MACs, quirks, noise)."),
    ambient: float = typer.Option(25.0, "--ambient", help="Site ambient temperature, °C."),
    mqtt_host: str | None = typer.Option(
        None, "--mqtt-host", help="MQTT broker: also run a power meter over every simulated miner, publishing there."),
    mqtt_port: int = typer.Option(1883, "--mqtt-port", min=1, max=65535),
    mqtt_username: str | None = typer.Option(None, "--mqtt-username"),
    mqtt_password_file: Path | None = typer.Option(None, "--mqtt-password-file", help="File holding the MQTT password."),
    mqtt_prefix: str = typer.Option("sim", "--mqtt-prefix", help="Topic root of the simulated MQTT devices."),
    mqtt_fleet: str | None = typer.Option(
        None, "--mqtt-fleet", callback=lambda v: _check_fleet(v) if v else v,
        help="MODEL:COUNT,... more miners that only publish their own telemetry over MQTT (no CGMiner port)."),
    mqtt_interval: float = typer.Option(5.0, "--mqtt-interval", min=0.1, help="Seconds between MQTT publishes."),
    meter_rack_size: int = typer.Option(10, "--meter-rack-size", min=1, help="Miners per rack (one PDU each)."),
    meter_overhead_w: float = typer.Option(150.0, "--meter-overhead-w", min=0, help="Watts a rack draws besides its miners."),
    meter_wall_factor: float = typer.Option(
        1.0, "--meter-wall-factor", min=0.5, max=2.0, help="Metered / reported watts (1.04: miners under-report by 4%)."),
    pools: str | None = typer.Option(
        None, "--pools", callback=_check_pools,
        help="Also serve simulated pool APIs fed by this fleet's hashrate: braiins,ocean,f2pool,publicpool,ckpool "
             "(miner i mines on pool i mod N). Prints `pool KIND URL account=... [token=...]` per pool."),
    pool_base: str = typer.Option(
        "127.30.0.1:8000", "--pool-base", help="HOST:PORT of the first pool API; the next pools take the next ports."),
) -> None:
    """Serve simulated miners on their real APIs; prints `ADDRESS MODEL` per miner."""
    try:
        sim = Fleet.build(fleet, base=base, seed=seed, ambient_c=ambient)
    except FleetSpecError as exc:  # e.g. the fleet runs past the last port or address
        raise typer.BadParameter(str(exc), param_hint="--base") from None
    pool_sims: Pools | None = None
    if pools:
        try:
            pool_addresses(pool_base, len(pools.split(",")))
            pool_sims = Pools.build(sim.miners, pools, base=pool_base, clock=sim.clock, seed=seed)
        except PoolSpecError as exc:
            raise typer.BadParameter(str(exc), param_hint="--pool-base") from None
    devices: contextlib.AbstractContextManager = contextlib.nullcontext()
    if mqtt_host:  # simulators/mqtt_meter.py, simulators/mqtt_miner.py
        from simulators.mqtt_miner import mqtt_devices

        try:
            password = mqtt_password_file.read_text().strip() if mqtt_password_file else None
        except OSError as exc:
            raise typer.BadParameter(f"{mqtt_password_file}: {exc.strerror}", param_hint="--mqtt-password-file") from None
        devices = mqtt_devices(sim.miners, host=mqtt_host, port=mqtt_port, username=mqtt_username, password=password,
                               prefix=mqtt_prefix, mqtt_fleet=mqtt_fleet, seed=seed, ambient_c=ambient,
                               interval_s=mqtt_interval, rack_size=meter_rack_size, overhead_w=meter_overhead_w,
                               wall_factor=meter_wall_factor, log=lambda line: typer.echo(line, err=True))
    try:
        with devices, asyncio.Runner(loop_factory=new_event_loop) as runner:  # uvloop where installed
            runner.run(_serve(sim, pool_sims))
    except BindError as exc:
        typer.echo(f"error: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # a pool API's address (the miners' own errors are BindError)
        typer.echo(f"error: cannot listen for a simulated pool from {pool_base}: {exc.strerror or exc}. "
                   "Pick another --pool-base, or free the address.", err=True)
        raise typer.Exit(1) from None
    except MqttDeviceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

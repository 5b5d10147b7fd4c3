"""`hashfleet simulate`: serve a fleet of simulated miners (Avalon, Antminer, Whatsminer, Braiins OS+, Bitaxe),
and optionally simulated pool APIs fed by it (`--pools`), until Ctrl-C or SIGTERM.

Drills: fault switches from the start (`--fault`), on a timetable (`--faults FILE`) or on demand over a
loopback control endpoint (`--control`), see simulators.drills; every control command the miners
receive can be written as JSON Lines (`--command-log`), see simulators.commands.

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

from simulators.commands import CommandLog
from simulators.drills import (ControlBindError, ControlServer, DrillError, FaultChange, apply, check, check_loopback,
                               load_schedule, parse_fault_arg, run_schedule)
from simulators.faults import FAULT_NAMES
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


def _check_faults(values: list[str] | None) -> list[str] | None:
    for value in values or ():
        try:
            parse_fault_arg(value)
        except DrillError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def _stderr(line: str) -> None:
    typer.echo(line, err=True)


async def _serve(fleet: Fleet, pools: Pools | None = None, schedule: list[FaultChange] | None = None,
                 control: ControlServer | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    drill: asyncio.Task[None] | None = None
    async with fleet:
        if pools is not None:  # simulators/pools: fed in-process by the fleet's hashrate
            await pools.start()
        if control is not None:
            await control.start()
        try:
            # Thousands of miners' long-lived objects: keep them out of every later full collection
            # (measured: GC took ~6% of answering a 3,000-miner fleet, a quarter of that frozen).
            gc.freeze()
            for miner in fleet:
                print(f"{miner.address} {miner.spec.key}")
            for pool in pools or ():
                print(pool.describe())
            if control is not None:
                print(f"control {control.url}")
            sys.stdout.flush()  # the lines are the contract: whoever reads them must see them now
            if schedule:  # `at` counts from here: every miner is listening
                drill = asyncio.create_task(run_schedule(fleet, schedule, _stderr))
            await stop.wait()
        finally:
            if drill is not None:
                drill.cancel()
            if control is not None:
                await control.stop()
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
    fault: list[str] | None = typer.Option(
        None, "--fault", callback=_check_faults, metavar="ADDRESS:NAME[=VALUE]",
        help="Turn a fault switch on from the start (repeatable). ADDRESS: HOST:PORT, HOST or *; NAME=off clears. "
             "E.g. 127.10.0.1:4028:chips_dying=1:40, '*:ambient_c=40', 127.10.0.2:4028:fan_failing=0:50, "
             "127.10.0.3:4028:psu_drift=5, ...:days_per_hour=3600 (fault days per hour). "
             f"Switches: {', '.join(sorted(FAULT_NAMES))}."),
    faults_file: Path | None = typer.Option(
        None, "--faults", metavar="FILE",
        help="Fault schedule (YAML or JSON): a list of {at: SECONDS, address: ..., set: {NAME: VALUE}, "
             "clear: [NAME] | all}, applied at that many seconds after serving began."),
    command_log: Path | None = typer.Option(
        None, "--command-log", metavar="FILE",
        help="Append every control command the miners receive (soft-off, work mode, power limit, reboot, ...) "
             "as one JSON line, flushed at once. Reads are not logged."),
    control: str | None = typer.Option(
        None, "--control", metavar="127.0.0.1:PORT",
        help="Serve a loopback HTTP control endpoint: GET/POST /faults (schedule entries as JSON), GET /commands. "
             "Prints `control URL` after the miners."),
) -> None:
    """Serve simulated miners on their real APIs; prints `ADDRESS MODEL` per miner."""
    try:
        log = CommandLog(command_log)
    except OSError as exc:
        raise typer.BadParameter(f"{command_log}: {exc.strerror or exc}", param_hint="--command-log") from None
    try:
        sim = Fleet.build(fleet, base=base, seed=seed, ambient_c=ambient, command_log=log)
    except FleetSpecError as exc:  # e.g. the fleet runs past the last port or address
        raise typer.BadParameter(str(exc), param_hint="--base") from None
    try:
        changes = [parse_fault_arg(text) for text in fault or ()]
        schedule = load_schedule(faults_file) if faults_file is not None else []
        check(sim, changes + schedule)
        for change in changes:
            apply(sim, change)  # in force before the first connection
        for change in schedule:
            if change.at == 0:
                apply(sim, change)
                _stderr(f"fault +0s {change.describe()}")  # as run_schedule prints the later ones
    except DrillError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults" if faults_file else "--fault") from None
    control_server: ControlServer | None = None
    if control:
        host, _, port = control.strip().rpartition(":")
        try:
            if not port.isdigit() or int(port) > 65535:
                raise DrillError(f"--control {control!r}: write 127.0.0.1:PORT")
            check_loopback(host)
        except DrillError as exc:
            raise typer.BadParameter(str(exc), param_hint="--control") from None
        control_server = ControlServer(sim, host, int(port), log=_stderr)
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
            runner.run(_serve(sim, pool_sims, [c for c in schedule if c.at > 0], control_server))
    except BindError as exc:
        typer.echo(f"error: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except ControlBindError as exc:
        typer.echo(f"error: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except MqttDeviceError as exc:  # (an OSError: before the pools' below)
        typer.echo(f"error: {exc} (--mqtt-host, --mqtt-port)", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # a pool API's address (the miners' own errors are BindError)
        typer.echo(f"error: cannot listen for a simulated pool from {pool_base}: {exc.strerror or exc}. "
                   "Pick another --pool-base, or free the address.", err=True)
        raise typer.Exit(1) from None
    finally:
        log.close()

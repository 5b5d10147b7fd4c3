"""Braiins OS+ on an Antminer: bosminer's CGMiner-style RPC on 4028 and the public gRPC API on 50051.

Pure request -> reply code for the RPC, and a grpclib service for the gRPC API, both built from the
same `Snapshot` physics as the other makes. Shapes follow published replies
(tests/data/replies/braiins/*/SOURCE.md): the Braiins OS docs' `fans`, `temps`, `tempctrl`,
`tunerstatus`, `devdetails`; a 2023 BOSer `version`; a 2025 BOS+ 25.07 S19 XP's gRPC replies.

Wire facts kept here (BOS+ 23.x-25.x, as pyasic 0.79 reads it):
- RPC: JSON on 4028, NUL-terminated, one request per connection, joined `a+b` allowed. `version`
  -> `VERSION[0]` {"API", "BOSer"}; every STATUS `Description` names "BOSer ..." (how pyasic
  recognises the firmware). `devdetails` `Model` "Bitmain Antminer S19j Pro" picks pyasic's class.
  `summary` (MHS 1m: pyasic's hashrate; Elapsed), `devs` (MHS 5s > 0: pyasic's is_mining),
  `tunerstatus` (PowerLimit, ApproximateMinerPowerConsumption, TunerChainStatus[].Status: anything
  but Stable/tuning is an error to pyasic), `fans`, `temps`, `tempctrl`, `pools`.
- gRPC (`braiins.bos.v1`, HTTP/2 without TLS): `AuthenticationService/Login` (root / root by
  default here) returns the token in the `authorization` response header; every other call
  pyasic makes carries it and is refused UNAUTHENTICATED without it. Read: MinerService
  GetMinerDetails / GetMinerStats / GetHashboards, CoolingService GetCoolingState, ConfigurationService
  GetMinerConfiguration (its cooling configuration only), PoolService
  GetPoolGroups, PerformanceService GetActivePerformanceMode, ActionsService
  GetLocateDeviceStatus. Write: ActionsService PauseMining / ResumeMining / SetLocateDeviceStatus,
  PerformanceService SetPowerTarget; each is logged in `Braiins.actions`.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import betterproto
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from simulators import braiins_proto as pb
from simulators.cgminer import NAN, NUL, POOL_URLS, encode_answer, encode_json, parse_request
from simulators.device import SwitchableDevice
from simulators.miner import SimulatedMiner
from simulators.physics import BoardSnapshot, Snapshot
from simulators.server import Listener
from simulators.specs import ModelSpec

GRPC_PORT = 50051  # fixed by the firmware; pyasic assumes it
USERNAME = "root"
PASSWORD = "root"  # pyasic 0.79's default for BOS+
TOKEN_LIFETIME_S = 3600
API_VERSION = "3.7"
HOSTNAME = "Antminer"
PCB_BELOW_CHIP_C = 14.0  # board sensor vs the hottest chip

CODE_INVALID_COMMAND = 14


@dataclass(frozen=True, slots=True)
class Action:
    """One write the unit received over gRPC (accepted or refused)."""

    method: str
    detail: dict[str, Any]
    at: float
    ok: bool


def mac_text(dev: SwitchableDevice) -> str:
    mac = dev.traits.mac
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2))  # BOS writes it lower-case


def board_temp_c(board: BoardSnapshot) -> float:
    return float(board.temp_chip_max_c) - PCB_BELOW_CHIP_C if board.temp_chip_max_c is not None else 0.0


class Braiins:
    """One unit's BOS+: `rpc(data)` answers port 4028; `grpc_handlers()` serves port 50051."""

    def __init__(self, dev: SwitchableDevice, requests: Counter[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dev = dev
        self.requests = requests
        self.clock = clock
        self.power_target_w: int | None = None  # None: the model's default
        self.locate = False
        self.actions: list[Action] = []
        self._tokens: dict[str, float] = {}
        user = f"hashfleet.{dev.traits.mac[-6:]}"
        self.pools = [{"url": url, "user": user} for url in POOL_URLS]

    @property
    def spec(self) -> ModelSpec:
        return self.dev.spec

    @property
    def description(self) -> str:
        return f"BOSer {self.spec.ver}"

    def power_target(self, s: Snapshot) -> int:
        return self.power_target_w if self.power_target_w is not None else s.power_limit_w

    # -- RPC on 4028 ----------------------------------------------------------------------------

    def rpc(self, data: bytes, bare_nan: bool = False) -> bytes:
        req = parse_request(data)
        ctx = _Rpc(self, bare_nan)
        if req.error is not None:
            return encode_json(ctx.error(*req.error)) + NUL
        parts = []
        for name in req.commands:
            handler = _RPC.get(name)
            parts.append((name, handler(ctx) if handler is not None else ctx.error(CODE_INVALID_COMMAND,
                                                                                    "Invalid command")))
        return encode_answer(parts, len(parts) > 1, bare_nan)

    # -- gRPC on 50051 --------------------------------------------------------------------------

    def login(self, username: str, password: str) -> str | None:
        if (username, password) != (USERNAME, PASSWORD):
            return None
        now = self.clock()
        self._tokens = {t: at for t, at in self._tokens.items() if now - at < TOKEN_LIFETIME_S}
        token = secrets.token_urlsafe(12)[:16]
        self._tokens[token] = now
        return token

    def token_ok(self, token: str | None) -> bool:
        at = self._tokens.get(token or "")
        return at is not None and self.clock() - at < TOKEN_LIFETIME_S

    def _log(self, method: str, detail: dict[str, Any], ok: bool = True, msg: str = "") -> None:
        self.actions.append(Action(method, detail, self.dev.now(), ok))
        self.dev.record_command(method, detail, accepted=ok, msg=msg)

    def miner_details(self, s: Snapshot) -> pb.GetMinerDetailsResponse:
        spec, tr = self.spec, self.dev.traits
        return pb.GetMinerDetailsResponse(
            uid=tr.dna[-16:], miner_identity=pb.MinerIdentity(
                brand=pb.MINER_BRAND_ANTMINER, model=0, name=spec.prod, miner_model=spec.prod),
            platform=pb.PLATFORM_CVITEK_BM1_AM2, bos_mode=pb.BOS_MODE_NAND,
            bos_version=pb.BosVersion(current=spec.firmware, major="2022-09-13-0-11012d53-22.08-plus", bos_plus=True),
            hostname=HOSTNAME, mac_address=mac_text(self.dev), system_uptime=s.uptime_s + 40,
            sticker_hashrate=pb.GigaHashrate(gigahash_per_second=spec.nominal_ths * 1000.0),
            bosminer_uptime_s=s.uptime_s, system_uptime_s=s.uptime_s + 40,
            status=pb.MINER_STATUS_PAUSED if s.soft_off else pb.MINER_STATUS_NORMAL, kernel_version="4.9.113",
            control_board_soc_family=pb.CONTROL_BOARD_SOC_FAMILY_CVITEK, serial_number=None,
        )

    def _real(self, s: Snapshot, share: float) -> pb.RealHashrate:
        def g(ths: float) -> pb.GigaHashrate:
            return pb.GigaHashrate(gigahash_per_second=ths * share * 1000.0)

        return pb.RealHashrate(
            last_5s=g(s.hashrate_ths), last_15s=g(s.hashrate_30s_ths), last_30s=g(s.hashrate_30s_ths),
            last_1m=g(s.hashrate_1m_ths), last_5m=g(s.hashrate_5m_ths), last_15m=g(s.hashrate_15m_ths),
            last_30m=g(s.hashrate_15m_ths), last_1h=g(s.hashrate_15m_ths), last_24h=g(s.hashrate_avg_ths),
            since_restart=g(s.hashrate_avg_ths))

    def _stats(self, s: Snapshot, share: float) -> pb.WorkSolverStats:
        return pb.WorkSolverStats(
            real_hashrate=self._real(s, share),
            nominal_hashrate=pb.GigaHashrate(gigahash_per_second=s.expected_hashrate_ths * share * 1000.0),
            error_hashrate=pb.MegaHashrate(megahash_per_second=0.0), found_blocks=0,
            best_share=int(self.spec.pool_diff * 1000), best_share_str="")

    def miner_stats(self, s: Snapshot) -> pb.GetMinerStatsResponse:
        watts = int(s.power_w)
        return pb.GetMinerStatsResponse(
            pool_stats=pb.PoolStats(accepted_shares=s.accepted, rejected_shares=s.rejected, stale_shares=s.stale,
                                    last_difficulty=self.spec.pool_diff, best_share=int(self.spec.pool_diff * 1000),
                                    generated_work=int(s.total_th_s * 1e12 / 4294967296.0), best_share_str=""),
            miner_stats=self._stats(s, 1.0),
            power_stats=pb.MinerPowerStats(
                approximated_consumption=pb.Power(watt=watts),
                efficiency=pb.PowerEfficiency(joule_per_terahash=watts / s.hashrate_ths if s.hashrate_ths else 0.0)))

    def hashboards(self, s: Snapshot) -> pb.GetHashboardsResponse:
        spec, out = self.spec, []
        for b in s.boards:
            if not b.alive:
                # A chain that did not come up: listed, disabled, no readings at all (a zero reading
                # would read as 0 °C; pyasic also fails on a temperature message without a value).
                out.append(pb.Hashboard(id=str(b.index + 1), enabled=False, chips_count=0, model=spec.hwtype,
                                        board_name=spec.hwtype, chip_type=spec.core))
                continue
            share = b.hashrate_ths / s.hashrate_ths if s.hashrate_ths else 0.0
            chip = float(b.temp_chip_max_c or 0)
            board = board_temp_c(b)
            out.append(pb.Hashboard(
                id=str(b.index + 1), enabled=b.alive, chips_count=b.chips_ok,
                current_voltage=pb.Voltage(volt=12.94 if b.alive else 0.0),
                current_frequency=pb.Frequency(hertz=spec.freq_mhz * 1e6 if b.alive else 0.0),
                highest_chip_temp=pb.TemperatureSensor(id=b.index + 1, location=pb.SENSOR_LOCATION_CHIP,
                                                       temperature=pb.Temperature(degree_c=chip)),
                board_temp=pb.Temperature(degree_c=board), stats=self._stats(s, share), model=spec.hwtype,
                lowest_inlet_temp=pb.Temperature(degree_c=max(0.0, board - 14.5) if b.alive else 0.0),
                highest_outlet_temp=pb.Temperature(degree_c=board),
                serial_number=f"NGSB{self.dev.traits.dna[-9:].upper()}{b.index}", board_name=spec.hwtype,
                chip_type=spec.core))
        return pb.GetHashboardsResponse(hashboards=out)

    def cooling(self, s: Snapshot) -> pb.GetCoolingStateResponse:
        ratio = round(s.fan_pct / 100.0, 2)
        hottest = max((b.temp_chip_max_c or 0 for b in s.boards), default=0)
        return pb.GetCoolingStateResponse(
            fans=[pb.FanState(position=i, rpm=rpm, target_speed_ratio=ratio) for i, rpm in enumerate(s.fans_rpm)],
            highest_temperature=pb.TemperatureSensor(location=pb.SENSOR_LOCATION_CHIP,
                                                     temperature=pb.Temperature(degree_c=float(hottest))))

    def configuration(self, s: Snapshot) -> pb.GetMinerConfigurationResponse:
        """The cooling configuration, automatic, with the model's limits (as BOS+ ships them: specs._braiins)."""
        spec = self.spec
        return pb.GetMinerConfigurationResponse(temperature=pb.CoolingConfiguration(auto=pb.CoolingAutoMode(
            target_temperature=pb.Temperature(float(spec.target_temp_c)),
            hot_temperature=pb.Temperature(float(spec.overheat_c)),
            dangerous_temperature=pb.Temperature(float(spec.dangerous_c)))))

    def pool_groups(self, s: Snapshot) -> pb.GetPoolGroupsResponse:
        pools = []
        for i, pool in enumerate(self.pools):
            first = i == 0
            pools.append(pb.Pool(
                uid=f"{self.dev.traits.dna[-6:]}{i}", url=pool["url"], user=pool["user"], enabled=True, alive=True,
                active=first and not s.soft_off,
                # A backup pool still gets a little work (real units: a few shares while it was tried).
                stats=pb.PoolStats(accepted_shares=s.accepted if first else 4, rejected_shares=s.rejected if first else 0,
                                   stale_shares=s.stale if first else 0, last_difficulty=self.spec.pool_diff,
                                   best_share=int(self.spec.pool_diff * (1000 if first else 15)),
                                   generated_work=int(s.total_th_s * 1e12 / 4294967296.0) if first else 6094848)))
        return pb.GetPoolGroupsResponse(pool_groups=[pb.PoolGroup(name="default", quota=pb.Quota(value=1), pools=pools,
                                                                   uid="default")])

    def performance_mode(self, s: Snapshot) -> pb.PerformanceMode:
        return pb.PerformanceMode(tuner_mode=pb.TunerPerformanceMode(
            power_target=pb.PowerTargetMode(power_target=pb.Power(watt=self.power_target(s)))))

    def grpc_handlers(self, miner: SimulatedMiner) -> dict[str, Handler]:
        """grpclib's `__mapping__`: one handler per served method, faults and auth applied."""
        service = _GrpcService(self, miner)
        return service.__mapping__()


class _GrpcService:
    def __init__(self, fw: Braiins, miner: SimulatedMiner) -> None:
        self.fw = fw
        self.miner = miner

    def __mapping__(self) -> dict[str, Handler]:
        fw = self.fw
        reads: dict[str, tuple[type[betterproto.Message], Callable[[Snapshot], betterproto.Message]]] = {
            "MinerService/GetMinerDetails": (pb.GetMinerDetailsResponse, fw.miner_details),
            "MinerService/GetMinerStats": (pb.GetMinerStatsResponse, fw.miner_stats),
            "MinerService/GetHashboards": (pb.GetHashboardsResponse, fw.hashboards),
            "CoolingService/GetCoolingState": (pb.GetCoolingStateResponse, fw.cooling),
            "ConfigurationService/GetMinerConfiguration": (pb.GetMinerConfigurationResponse, fw.configuration),
            "PoolService/GetPoolGroups": (pb.GetPoolGroupsResponse, fw.pool_groups),
            "PerformanceService/GetActivePerformanceMode": (pb.PerformanceMode, fw.performance_mode),
            "ActionsService/GetLocateDeviceStatus": (
                pb.LocateDeviceStatusResponse, lambda s: pb.LocateDeviceStatusResponse(enabled=fw.locate)),
        }
        out: dict[str, Handler] = {}
        for path, (reply, build) in reads.items():
            out[f"/{pb.PACKAGE}.{path}"] = Handler(self._read(path, build), Cardinality.UNARY_UNARY, pb.Empty, reply)
        out[f"/{pb.PACKAGE}.AuthenticationService/Login"] = Handler(
            self._login, Cardinality.UNARY_UNARY, pb.LoginRequest, pb.LoginResponse)
        writes: dict[str, tuple[type[betterproto.Message], type[betterproto.Message],
                                Callable[[Any], betterproto.Message]]] = {
            "ActionsService/PauseMining": (pb.Empty, pb.PauseMiningResponse, self._pause),
            "ActionsService/ResumeMining": (pb.Empty, pb.ResumeMiningResponse, self._resume),
            "ActionsService/SetLocateDeviceStatus": (pb.SetLocateDeviceStatusRequest, pb.LocateDeviceStatusResponse,
                                                     self._locate),
            "PerformanceService/SetPowerTarget": (pb.SetPowerTargetRequest, pb.SetPowerTargetResponse,
                                                  self._power_target),
        }
        for path, (request, reply, act) in writes.items():
            out[f"/{pb.PACKAGE}.{path}"] = Handler(self._write(path, act), Cardinality.UNARY_UNARY, request, reply)
        return out

    async def _gate(self, stream: Stream, path: str) -> None:
        """Count the call, apply the network faults, check the token."""
        if self.fw.requests is not None:
            self.fw.requests[f"gRPC {path.rsplit('/', 1)[-1]}"] += 1
        faults = self.miner.faults
        if faults.hold_open:
            await asyncio.sleep(3600)
        if faults.drop:
            raise GRPCError(Status.UNAVAILABLE, "connection dropped")
        if faults.slow_s > 0:
            await asyncio.sleep(faults.slow_s)
        if path != "Login" and not self.fw.token_ok(stream.metadata.get("authorization") if stream.metadata else None):
            raise GRPCError(Status.UNAUTHENTICATED, "missing or expired token: call AuthenticationService/Login")

    def _read(self, path: str, build: Callable[[Snapshot], betterproto.Message]) -> Callable[[Stream], Awaitable[None]]:
        async def handle(stream: Stream) -> None:
            await stream.recv_message()
            await self._gate(stream, path)
            await stream.send_message(build(self.miner.observe()))

        return handle

    def _write(self, path: str, act: Callable[[Any], betterproto.Message]) -> Callable[[Stream], Awaitable[None]]:
        async def handle(stream: Stream) -> None:
            request = await stream.recv_message()
            try:
                await self._gate(stream, path)
            except GRPCError as exc:
                if exc.status == Status.UNAUTHENTICATED:  # received, and refused: still a command sent
                    self.miner.record_command(path.rsplit("/", 1)[-1], {}, accepted=False, msg=str(exc.message))
                raise
            await stream.send_message(act(request))

        return handle

    async def _login(self, stream: Stream) -> None:
        request = await stream.recv_message()
        await self._gate(stream, "Login")
        token = self.fw.login(request.username, request.password)
        if token is None:
            raise GRPCError(Status.UNAUTHENTICATED, "wrong username or password")
        await stream.send_initial_metadata(metadata={"authorization": token})
        await stream.send_message(pb.LoginResponse(token=token, timeout_s=TOKEN_LIFETIME_S))

    def _pause(self, request: Any) -> betterproto.Message:
        already = self.miner.faults.soft_off
        self.miner.set_soft_off(True)
        self.fw._log("PauseMining", {})
        return pb.PauseMiningResponse(already_paused=already)

    def _resume(self, request: Any) -> betterproto.Message:
        already = not self.miner.faults.soft_off
        self.miner.set_soft_off(False)
        self.fw._log("ResumeMining", {})
        return pb.ResumeMiningResponse(already_mining=already)

    def _locate(self, request: pb.SetLocateDeviceStatusRequest) -> betterproto.Message:
        self.fw.locate = bool(request.enable)
        self.miner.set_led(self.fw.locate)
        self.fw._log("SetLocateDeviceStatus", {"enable": self.fw.locate})
        return pb.LocateDeviceStatusResponse(enabled=self.fw.locate)

    def _power_target(self, request: pb.SetPowerTargetRequest) -> betterproto.Message:
        watt = int(request.power_target.watt)
        top = int(self.fw.spec.nominal_power_w * 1.2)
        if not 100 <= watt <= top:
            why = f"power target {watt} W outside 100-{top} W"
            self.fw._log("SetPowerTarget", {"watt": watt}, ok=False, msg=why)
            raise GRPCError(Status.INVALID_ARGUMENT, why)
        self.fw.power_target_w = watt
        self.miner.set_power_limit(watt)  # the tuner clocks the chains to the target
        self.fw._log("SetPowerTarget", {"watt": watt, "save_action": int(request.save_action)})
        return pb.SetPowerTargetResponse(power_target=pb.Power(watt=watt))


class GrpcServer(Listener):
    """Serves one unit's gRPC API (port 50051) with grpclib, following the `no_answer` fault."""

    def __init__(self, miner: SimulatedMiner, loop: asyncio.AbstractEventLoop, fw: Braiins,
                 port: int = GRPC_PORT) -> None:
        super().__init__(miner, loop)
        self.fw = fw
        self.port = port

    async def serve(self, sock: socket.socket) -> None:
        server = Server([_Mapping(self.fw.grpc_handlers(self.miner))])
        await server.start(sock=sock)
        if self._stopped or self.miner.faults.no_answer or self.listener is not None:
            server.close()
            return
        self.listener = server  # type: ignore[assignment]  # close() and wait_closed() like asyncio's


class _Mapping:
    """What grpclib's Server takes as a service: anything with `__mapping__()`."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self._handlers = handlers

    def __mapping__(self) -> dict[str, Handler]:
        return self._handlers


# -- RPC replies ------------------------------------------------------------------------------------


class _Rpc:
    __slots__ = ("fw", "bare_nan", "_snap")

    def __init__(self, fw: Braiins, bare_nan: bool) -> None:
        self.fw = fw
        self.bare_nan = bare_nan
        self._snap: Snapshot | None = None

    @property
    def snap(self) -> Snapshot:
        if self._snap is None:
            self._snap = self.fw.dev.observe()
        return self._snap

    def when(self) -> int:
        return int(self._snap.at if self._snap is not None else self.fw.dev.now())

    def status(self, code: int, msg: str, severity: str = "S") -> dict[str, Any]:
        return {"STATUS": severity, "When": self.when(), "Code": code, "Msg": msg, "Description": self.fw.description}

    def reply(self, code: int, msg: str, section: str, items: list[Any]) -> dict[str, Any]:
        return {"STATUS": [self.status(code, msg)], section: items, "id": 1}

    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"STATUS": [self.status(code, msg, "E")], "id": 1}


def _mhs(ths: float) -> float:
    return round(ths * 1e6, 3)


def _version(ctx: _Rpc) -> dict[str, Any]:
    return ctx.reply(22, "BOSer versions", "VERSION", [{"API": API_VERSION, "BOSer": ctx.fw.spec.ver}])


def _summary(ctx: _Rpc) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    minutes = max(s.uptime_s, 1) / 60.0
    diff1 = s.total_th_s * 1e12 / 4294967296.0
    diff = float(spec.pool_diff)
    item = {
        "Elapsed": s.uptime_s, "MHS av": _mhs(s.hashrate_avg_ths), "MHS 5s": _mhs(s.hashrate_ths),
        "MHS 1m": _mhs(s.hashrate_1m_ths), "MHS 5m": _mhs(s.hashrate_5m_ths), "MHS 15m": _mhs(s.hashrate_15m_ths),
        "Found Blocks": 0, "Getworks": s.uptime_s // 30, "Accepted": s.accepted, "Rejected": s.rejected,
        "Hardware Errors": s.hw_errors, "Utility": round(s.accepted / minutes, 3), "Discarded": 0, "Stale": s.stale,
        "Get Failures": 0, "Local Work": int(diff1 / 65536), "Remote Failures": 0, "Network Blocks": s.uptime_s // 600,
        "Total MH": round(s.total_th_s * 1e6, 3), "Work Utility": round(diff1 / minutes, 3),
        "Difficulty Accepted": s.accepted * diff, "Difficulty Rejected": s.rejected * diff,
        "Difficulty Stale": s.stale * diff, "Best Share": int(diff * 1000),
        # Per cent: bosminer's summary writes bad / all backend solutions x 100 (Braiins' open bOSminer,
        # api/cgminer.rs `backend_error_ratio`).
        "Device Hardware%": NAN if ctx.bare_nan else round(s.hw_error_pct, 4),
        "Device Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Stale%": round(100.0 * s.stale / max(1, s.accepted + s.stale), 4), "Last getwork": int(s.at),
    }
    return ctx.reply(11, "Summary", "SUMMARY", [item])


def _devs(ctx: _Rpc) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    items = []
    for b in s.boards:
        share = b.hashrate_ths / s.hashrate_ths if s.hashrate_ths else 0.0
        items.append({
            "ASC": b.index, "Name": "", "ID": b.index + 1, "Enabled": "Y", "Status": "Alive" if b.alive else "Dead",
            "Temperature": float(b.temp_chip_max_c or 0), "MHS av": _mhs(b.hashrate_avg_ths),
            "MHS 5s": _mhs(b.hashrate_ths), "MHS 1m": _mhs(s.hashrate_1m_ths * share),
            "MHS 5m": _mhs(s.hashrate_5m_ths * share), "MHS 15m": _mhs(s.hashrate_15m_ths * share),
            "Accepted": s.accepted // spec.boards, "Rejected": s.rejected // spec.boards,
            "Hardware Errors": s.hw_errors // spec.boards, "Utility": 0.0, "Last Share Pool": 0,
            "Last Share Time": int(s.at) - 1, "Total MH": round(s.total_th_s * 1e6 * share, 3),
            "Diff1 Work": int(s.total_th_s * 1e12 / 4294967296.0 * share), "Difficulty Accepted": 0.0,
            "Difficulty Rejected": 0.0, "Last Share Difficulty": float(spec.pool_diff), "Last Valid Work": int(s.at) - 1,
            "Device Hardware%": round(s.hw_error_pct, 4), "Device Rejected%": 0.0,
            "Device Elapsed": s.uptime_s,
        })
    return ctx.reply(9, f"{len(items)} ASC(s)", "DEVS", items)


def _devdetails(ctx: _Rpc) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    items = [{"Chips": b.chips_ok, "Cores": b.chips_ok * 894, "DEVDETAILS": b.index, "Device Path": "", "Driver": "",
              "Frequency": spec.freq_mhz * 1_000_000 if b.alive else 0, "ID": b.index + 1, "Kernel": "",
              "Model": spec.model, "Name": f"Hash Chain {b.index + 1}", "Voltage": 12.94 if b.alive else 0.0}
             for b in s.boards]
    return ctx.reply(69, "Device Details", "DEVDETAILS", items)


def _tunerstatus(ctx: _Rpc) -> dict[str, Any]:
    s, fw = ctx.snap, ctx.fw
    target = fw.power_target(s)
    per_chain = target // max(1, fw.spec.boards)
    chains = [{"ApproximatePowerConsumptionWatt": int(s.power_w * 0.95) // fw.spec.boards if b.alive else 0,
               "HashchainIndex": b.index + 1, "Iteration": 0, "LoadedProfileCreatedOn": int(s.at) - s.uptime_s,
               "PowerLimitWatt": per_chain, "StageElapsed": s.uptime_s,
               "Status": "Stable" if b.alive else "Failed to initialize hashchain {0}", "TunerRunning": False,
               "TuningElapsed": 0}
              for b in s.boards]
    item = {"ApproximateChainPowerConsumption": int(s.power_w * 0.95), "ApproximateMinerPowerConsumption": int(s.power_w),
            "DynamicPowerScaling": "Disabled", "PowerLimit": target, "TunerChainStatus": chains}
    return ctx.reply(203, "Tuner Status", "TUNERSTATUS", [item])


def _fans(ctx: _Rpc) -> dict[str, Any]:
    s = ctx.snap
    items = [{"FAN": i, "ID": i, "RPM": rpm, "Speed": s.fan_pct} for i, rpm in enumerate(s.fans_rpm)]
    return ctx.reply(202, f"{len(items)} Fan(s)", "FANS", items)


def _temps(ctx: _Rpc) -> dict[str, Any]:
    s = ctx.snap
    items = [{"Board": board_temp_c(b), "Chip": float(b.temp_chip_max_c or 0), "ID": b.index + 1, "TEMP": i}
             for i, b in enumerate(x for x in s.boards if x.alive)]
    return ctx.reply(201, f"{len(items)} Temp(s)", "TEMPS", items)


def _tempctrl(ctx: _Rpc) -> dict[str, Any]:
    spec = ctx.fw.spec
    return ctx.reply(200, "Temperature control", "TEMPCTRL",
                     [{"Dangerous": spec.dangerous_c, "Hot": spec.overheat_c, "Mode": "Automatic",
                       "Target": spec.target_temp_c}])


def _pools(ctx: _Rpc) -> dict[str, Any]:
    s, fw = ctx.snap, ctx.fw
    diff = float(fw.spec.pool_diff)
    items = []
    for i, pool in enumerate(fw.pools):
        first = i == 0
        acc, rej, stale = (s.accepted, s.rejected, s.stale) if first else (0, 0, 0)
        items.append({
            "POOL": i, "URL": pool["url"], "Status": "Alive", "Priority": i, "Quota": 1, "Long Poll": "N",
            "Getworks": s.uptime_s // 30 if first else 0, "Accepted": acc, "Rejected": rej, "Works": 0,
            "Discarded": 0, "Stale": stale, "Get Failures": 0, "Remote Failures": 0, "User": pool["user"],
            "Last Share Time": int(s.at) - 1 if acc else 0, "Diff1 Shares": 0, "Proxy Type": "", "Proxy": "",
            "Difficulty Accepted": acc * diff, "Difficulty Rejected": rej * diff, "Difficulty Stale": stale * diff,
            "Last Share Difficulty": diff if acc else 0.0, "Work Difficulty": diff if first else 0.0,
            "Has Stratum": True, "Stratum Active": first and not s.soft_off,
            "Stratum URL": pool["url"].split("://", 1)[-1].rsplit(":", 1)[0], "Stratum Difficulty": diff,
            "Has Vmask": True, "Has GBT": False, "Best Share": int(diff * 1000) if acc else 0,
            "Pool Rejected%": round(100.0 * rej / max(1, acc + rej), 4),
            "Pool Stale%": round(100.0 * stale / max(1, acc + stale), 4), "Bad Work": 0,
            "Current Block Height": 0, "Current Block Version": 536870912, "AsicBoost": True,
        })
    return ctx.reply(7, f"{len(items)} Pool(s)", "POOLS", items)


_RPC: dict[str, Callable[[_Rpc], dict[str, Any]]] = {
    "version": _version,
    "summary": _summary,
    "devs": _devs,
    "edevs": _devs,
    "devdetails": _devdetails,
    "tunerstatus": _tunerstatus,
    "fans": _fans,
    "temps": _temps,
    "tempctrl": _tempctrl,
    "pools": _pools,
}

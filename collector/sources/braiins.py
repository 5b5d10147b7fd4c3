"""Native reader for Braiins OS+ (BOSer) through bosminer's CGMiner-compatible RPC on TCP 4028.

One TCP connection and one joined request per poll, `summary+devs+tunerstatus+fans+temps+devdetails+pools`,
open (no token): `summary` the live (`MHS 1m`) and average hashrate, uptime and the hardware error rate (`Device Hardware%`,
in per cent: bosminer writes bad / all solutions x 100), `devs` each chain's
rate, `devdetails` its chips, `temps` its chip and board temperatures, `tunerstatus` the power the
unit draws and its limit and each chain's tuner state (pyasic's errors; fault codes too), `fans`,
`pools`. pyasic 0.79 reads the same unit with that RPC request plus six gRPC calls on port 50051,
each on a new HTTP/2 connection, and a login. What only gRPC carries changes rarely: the MAC (the miner's id), the
firmware string and the nominal hashrate come from `GetMinerDetails` through pyasic's own gRPC
client (its login, its password setting) at identification and every ten minutes, and its pause
state (`status`) while the unit does not hash (collector.sources.profile). At the same rare times (after a
good `GetMinerDetails`, never per poll) its own chip limits: `GetMinerConfiguration` (ConfigurationService,
bos-plus-api 1.11.0 proto/bos/v1/configuration.proto) carries the cooling configuration (`temperature`, a
CoolingConfiguration, cooling.proto) whose mode `auto` or `manual` holds the operator's hot_temperature
(fans at full; Dynamic Power Scaling steps the power down) and dangerous_temperature (bosminer stops).
They become the sample's chip_hot_limit_c / chip_stop_limit_c (health's limits for this unit) only when
both are finite, CHIP_LIMIT_MIN_C..CHIP_LIMIT_MAX_C and hot under dangerous; otherwise, or when the read
fails, the unit has no limit of its own and its warning says why. pyasic 0.79's bindings have no
immersion or hydro mode (fields 5, 6): a unit in either has none either.

Where pyasic 0.79 reads BOS+ differently: a paused unit is `soft_off` (pyasic: idle); the firmware
string is kept whole ("2025-08-06-0-3881c51d-25.07-plus"; pyasic keeps "25.07").
Hostile replies: as collector.sources.antminer (collector.sources.reply_values, plausibility); a chain `ID`
written as text ("1") is that chain (reply_values.board_number), one that is no whole number refuses boards. A summary
without `MHS 1m` (an Antminer's) is another make at the address (collector.sources.rpc_reader.OtherUnit).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from collector.sources import cgminer_client as cgminer
from collector.sources import pyasic_http
from collector.sources import plausibility
from collector.sources.profile import IDENTITY_EVERY_S, STATUS_EVERY_S, Profile, next_due
from collector.sources.reply_values import Checked, board_number, first, mac, text
from collector.sources.rpc_reader import OtherUnit, RpcReader
from models import BoardSample, FaultCode, MinerSample, MinerState, SampleSource
from models.sample import CHIP_LIMIT_MAX_C, CHIP_LIMIT_MIN_C, MAX_BOARDS, MAX_CHIPS_PER_BOARD, MAX_ERRORS, MAX_FAN_RPM
from models.sample import MAX_FANS, MAX_UPTIME_S
from models.sample import state_with_refusals

# The one request a poll sends; `_read_rpc` reads exactly these sections.
POLL_COMMAND = "summary+devs+tunerstatus+fans+temps+devdetails+pools"
SOURCE = SampleSource.BRAIINS
_MHS_PER_THS = 1e6
# tunerstatus chain states that are not a fault (pyasic's list): the tuner at work or done.
_TUNER_OK = ("Stable", "Testing performance profile", "Tuning individual chips")
_PAUSED = 3  # braiins.bos.v1 MinerStatus.MINER_STATUS_PAUSED
CODES_KEY = "TunerChainStatus"  # FaultCode.key of a chain's tuner state (a text: its code is 0)


class Braiins(RpcReader):
    """One identified Braiins OS+ unit; `grpc` is pyasic's miner object, used for the rare gRPC reads."""

    __slots__ = ("grpc", "firmware", "expected_ths", "paused", "grpc_problem", "hot_limit_c", "stop_limit_c",
                 "limits_problem")
    poll_command = POLL_COMMAND

    def __init__(self, host: str, port: int, profile: Profile, grpc: Any) -> None:
        super().__init__(host, port, profile)
        self.grpc = grpc
        self.firmware: str | None = None
        self.expected_ths: float | None = None
        self.paused: bool | None = None
        self.grpc_problem: str | None = None
        self.hot_limit_c: float | None = None  # its own chip limits (cooling configuration), both or neither
        self.stop_limit_c: float | None = None
        self.limits_problem: str | None = None  # why it has none, when a read of them failed or was refused

    async def prepare(self, timeout_s: float) -> None:
        """At identification: MAC, firmware, nominal hashrate and its chip limits over gRPC. A failure is
        kept as a warning."""
        await self._details(time.monotonic() + timeout_s, limits=True)
        self.schedule()

    def read(self, reply: dict[str, Any]) -> _Reading:
        return _read_rpc(reply, self.where, self.profile)

    def sample(self, reading: _Reading, site: str, ts: datetime) -> MinerSample:
        return _sample(reading, self, site=site, ts=ts)

    def unread(self, miner_id: str, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
        return _unread(miner_id, self, site, ts, reason, state)

    async def refresh(self, reading: _Reading, deadline: float) -> None:
        now = time.monotonic()
        shape = (reading.hashing, reading.chips)
        changed, self.shape = self.shape is not None and shape != self.shape, shape
        if reading.hashing:
            self.paused = None
        identity = now >= self.identity_due
        if identity or (not reading.hashing and (self.paused is None or changed or now >= self.status_due)):
            self.identity_due = next_due(now, IDENTITY_EVERY_S)
            self.status_due = next_due(now, STATUS_EVERY_S)
            await self._details(deadline, limits=identity)

    async def _details(self, deadline: float, limits: bool = False) -> None:
        """GetMinerDetails; with `limits` (identification, every IDENTITY_EVERY_S) then the chip limits,
        which a failure of either leaves none."""
        left = deadline - time.monotonic()
        if left <= 0.05 or self.grpc is None:
            return
        try:
            details = await self._call("GetMinerDetails", self.grpc.web.get_miner_details, left)
        except _CallFailed as e:
            self.grpc_problem = str(e)
            if limits:
                self._set_limits(None, None, None)  # the warning of the failed call says so
            return
        self.grpc_problem = None
        self.mac, self.firmware, self.expected_ths, self.paused = miner_details(details, self)
        if limits:
            left = deadline - time.monotonic()
            try:
                if left <= 0.05:
                    raise _CallFailed(f"{self.host}:50051: no time left for GetMinerConfiguration")
                config = await self._call("GetMinerConfiguration", self.grpc.web.get_miner_configuration, left)
            except _CallFailed as e:
                self._set_limits(None, None, str(e))
                return
            hot, stop, why = cooling_limits(config)
            self._set_limits(hot, stop, why and f"{self.host}:50051: {why}")

    async def _call(self, name: str, call: Any, left: float) -> Any:
        """One pyasic gRPC call within `left` seconds; _CallFailed says why not."""
        try:
            with pyasic_http.noting_refusals() as refused:  # pyasic_grpc notes why it refused a message
                async with asyncio.timeout(left):
                    return await call()
        except TimeoutError:
            raise _CallFailed(f"{self.host}:50051: no gRPC answer within {left:.3g} s") from None
        except Exception as e:  # pyasic's gRPC client raises many kinds; a rare call must not cost the poll
            raise _CallFailed(f"{self.host}:50051: gRPC {name} failed ({type(e).__name__})"
                              + (f": {refused[0]}" if refused else "")) from None

    def _set_limits(self, hot: float | None, stop: float | None, problem: str | None) -> None:
        self.hot_limit_c, self.stop_limit_c = hot, stop
        self.limits_problem = None if problem is None else f"{problem}: no chip temperature limits of its own"


class _CallFailed(Exception):
    """A gRPC call that gave nothing: its text is the miner's warning."""


def miner_details(details: Any, known: Braiins) -> tuple[str | None, str | None, float | None, bool | None]:
    """(MAC, firmware, nominal TH/s, paused) from `GetMinerDetails` as a dict: pyasic's (camelCase) or
    the proto's own field names; what is missing or unusable keeps the value known before."""
    if not isinstance(details, dict):
        return known.mac, known.firmware, known.expected_ths, known.paused
    get = _get
    found_mac = mac(text(get(details, "macAddress", "mac_address"))) or known.mac
    firmware = text(get(get(details, "bosVersion", "bos_version"), "current", "current")) or known.firmware
    gigahash = get(get(details, "stickerHashrate", "sticker_hashrate"), "gigahashPerSecond", "gigahash_per_second")
    checked = Checked()
    nominal = checked.number(gigahash, "expected_hashrate_ths", "GetMinerDetails sticker_hashrate")
    expected = nominal / 1000 if nominal else known.expected_ths
    status = details.get("status")
    try:
        paused = int(status) == _PAUSED if status is not None and not isinstance(status, (str, bool)) else None
    except (TypeError, ValueError):
        paused = None
    return found_mac, firmware, expected, paused


def cooling_limits(config: Any) -> tuple[float | None, float | None, str | None]:
    """(hot C, dangerous C, None) from `GetMinerConfiguration` as a dict (pyasic's camelCase or the proto's
    names): its cooling configuration's mode `auto` or `manual`, each of which carries hot_temperature and
    dangerous_temperature (bos-plus-api proto/bos/v1/cooling.proto). (None, None, why) when either is
    missing, no finite number, outside CHIP_LIMIT_MIN_C..CHIP_LIMIT_MAX_C, or hot is not under dangerous."""
    cooling = _get(config, "temperature", "temperature")
    mode = next((name for name in ("auto", "manual") if isinstance(_get(cooling, name, name), dict)), None)
    if mode is None:
        return None, None, "GetMinerConfiguration carries no cooling mode with temperatures (auto, manual)"
    found, limits = _get(cooling, mode, mode), []
    for camel, snake in (("hotTemperature", "hot_temperature"), ("dangerousTemperature", "dangerous_temperature")):
        raw = _get(_get(found, camel, snake), "degreeC", "degree_c")
        what = f"GetMinerConfiguration: cooling {mode} {snake}"
        if raw is None:
            return None, None, f"{what} missing"
        if type(raw) not in (float, int):  # a protobuf double: never text or a switch
            return None, None, f"{what} is not a number (a {type(raw).__name__})"
        if not CHIP_LIMIT_MIN_C <= raw <= CHIP_LIMIT_MAX_C:  # NaN fails this too
            return None, None, f"{what} {raw:g} C is outside {CHIP_LIMIT_MIN_C:g}..{CHIP_LIMIT_MAX_C:g} C"
        limits.append(float(raw))
    hot, stop = limits
    if hot >= stop:
        return None, None, f"GetMinerConfiguration: cooling {mode} hot_temperature {hot:g} C is not under dangerous {stop:g} C"
    return hot, stop, None


def _get(parent: Any, camel: str, snake: str) -> Any:
    return parent.get(camel, parent.get(snake)) if isinstance(parent, dict) else None


# -- the RPC reading ------------------------------------------------------------------------------


class _Reading:
    __slots__ = ("checked", "live_ths", "avg_ths", "power_w", "power_limit_w", "fans", "uptime", "boards", "chips",
                 "board_temp_max", "pool", "errors", "codes", "hw_error_pct")

    def __init__(self) -> None:
        self.checked = Checked()

    @property
    def hashing(self) -> bool:
        return bool(self.live_ths)


def _items(reply: dict[str, Any], command: str, key: str, where: str) -> list[Any]:
    try:
        items = cgminer.section(reply, command, where).get(key)
    except cgminer.MinerReplyError:
        return []  # a missing part only refines the sample
    return items if isinstance(items, list) else []


def _read_rpc(reply: dict[str, Any], where: str, profile: Profile) -> _Reading:
    summary = first(cgminer.section(reply, "summary", where).get("SUMMARY"))
    if not summary:
        raise cgminer.MinerReplyError(f"{where}: summary carries no entry (SUMMARY[0])")
    if "MHS 1m" not in summary:
        raise OtherUnit(f"{where}: summary carries no MHS 1m, which bosminer always writes: another make's summary")
    r = _Reading()
    c = r.checked
    live = c.number(summary.get("MHS 1m"), "hashrate_ths", "summary MHS 1m")
    avg = c.number(summary.get("MHS av"), "hashrate_avg_ths", "summary MHS av")
    r.live_ths = None if live is None else live / _MHS_PER_THS
    r.avg_ths = None if avg is None else avg / _MHS_PER_THS
    r.uptime = c.count(summary.get("Elapsed"), "uptime_s", "summary Elapsed", MAX_UPTIME_S)
    r.hw_error_pct = c.percent(summary.get("Device Hardware%"), "hw_error_pct", "summary Device Hardware%")
    tuner = first(_items(reply, "tunerstatus", "TUNERSTATUS", where))
    r.power_w = c.number(tuner.get("ApproximateMinerPowerConsumption"), "power_w",
                         "tunerstatus ApproximateMinerPowerConsumption") or None
    r.power_limit_w = c.number(tuner.get("PowerLimit"), "power_limit_w", "tunerstatus PowerLimit") or None
    r.fans = _fans(_items(reply, "fans", "FANS", where), profile, c)
    r.boards, r.board_temp_max, chains = _boards(_items(reply, "devs", "DEVS", where),
                                                 _items(reply, "devdetails", "DEVDETAILS", where),
                                                 _items(reply, "temps", "TEMPS", where), profile, c)
    r.errors, r.codes = _tuner_faults(tuner.get("TunerChainStatus"), chains)
    r.chips = tuple(b.chips_ok for b in r.boards)
    r.pool = c.pool(_items(reply, "pools", "POOLS", where))
    return r


def _tuner_faults(chains: Any, boards: list[int]) -> tuple[list[str], list[FaultCode]]:
    """Chains whose tuner state is a fault, worded as pyasic words them ("Slot 1 failed to initialize
    hashchain"; chains numbered from 0, S9-era ids 6-8 too), and as codes: the state is the meaning,
    the board the chain's (`boards`: the chain ids in board order), no number (code 0), severity unknown."""
    if not isinstance(chains, list):
        return [], []
    ids = [board_number(chain.get("HashchainIndex")) for chain in chains[:MAX_BOARDS] if isinstance(chain, dict)]
    offset = 6 if ids and ids[0] in (6, 7, 8) else 0
    errors, codes = [], []
    for chain in chains[:MAX_BOARDS]:
        if not isinstance(chain, dict):
            continue
        status = text(chain.get("Status"), 200)
        if status is None or status in _TUNER_OK:
            continue
        index = board_number(chain.get("HashchainIndex"))
        said = status.split(" {")[0]
        slot = index - offset if index is not None else "?"
        errors.append(f"Slot {slot} {said[0].lower()}{said[1:]}")
        codes.append(FaultCode(key=CODES_KEY, code=0, meaning=said,
                               board=boards.index(index) if index in boards else None))
        if len(errors) == MAX_ERRORS:
            break
    return errors, codes


def _fans(fans: list[Any], profile: Profile, c: Checked) -> list[int]:
    if len(fans) > MAX_FANS:
        c.refuse("fans_rpm", "fans", f"{len(fans)} entries", f"is more than the cap of {MAX_FANS} fans")
        return []
    speeds = []
    for i, fan in enumerate(fans[:profile.fans] if profile.fans else fans):
        if isinstance(fan, dict):
            rpm = c.count(fan.get("RPM"), "fans_rpm", f"fans[{i}] RPM", MAX_FAN_RPM)
            if rpm is not None:
                speeds.append(rpm)
    return speeds


def _boards(devs: list[Any], details: list[Any], temps: list[Any], profile: Profile,
            c: Checked) -> tuple[list[BoardSample], float | None, list[int]]:
    """Chains by their ID (6-8 on S9s, 1-3 on S19s), in order: `devs` rate, `devdetails` chips, `temps`;
    and the IDs in board order."""
    if max(len(devs), len(details), len(temps)) > MAX_BOARDS:
        c.refuse("boards", "devs", f"{max(len(devs), len(details), len(temps))} entries",
                 f"is more than the cap of {MAX_BOARDS} boards")
        return [], None, []
    rates, chips = _by_chain(devs, "devs", c), _by_chain(details, "devdetails", c)
    sensors = _by_chain(temps, "temps", c)
    boards, board_max = [], None
    ids = sorted(set(rates) | set(chips))
    for index, chain in enumerate(ids):
        dev, detail, temp = rates.get(chain, {}), chips.get(chain, {}), sensors.get(chain, {})
        rate = c.number(dev.get("MHS 1m"), "boards", f"devs[ID {chain}] MHS 1m")
        board = c.temp(temp.get("Board"), "boards", f"temps[ID {chain}] Board") or None
        if board is not None:
            board_max = board if board_max is None else max(board_max, board)
        boards.append(BoardSample(
            index=index, hashrate_ths=None if rate is None else rate / _MHS_PER_THS,
            temp_chip_max_c=c.temp(temp.get("Chip"), "boards", f"temps[ID {chain}] Chip") or None,
            chips_ok=c.count(detail.get("Chips"), "boards", f"devdetails[ID {chain}] Chips", MAX_CHIPS_PER_BOARD),
            chips_expected=profile.chips_per_board))
    return boards, board_max, ids


def _by_chain(entries: list[Any], what: str, c: Checked) -> dict[int, dict[str, Any]]:
    """A section's entries by chain ID: bosminer writes a JSON integer; one written in digits ("1") is the
    same chain. An entry whose ID is anything else, or repeats one, is refused (boards) and left out."""
    found: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        chain = board_number(entry.get("ID"))
        if chain is None or chain in found:
            c.refuse("boards", f"{what} ID", entry.get("ID"), "is not a chain ID of its own")
            continue
        found[chain] = entry
    return found


def _sample(r: _Reading, miner: Braiins, *, site: str, ts: datetime) -> MinerSample:
    c = r.checked
    if r.hashing:
        state = MinerState.MINING
    elif miner.paused:
        state = MinerState.SOFT_OFF
    else:
        state = MinerState.ERROR if r.errors else MinerState.IDLE
    # A refused field costs that field (named in `unusable` and `errors`), not the state; only a refused
    # hashrate leaves unknown whether it hashes.
    state = state_with_refusals(state, c.refused)
    errors, unusable = r.errors, []
    if c.refused:
        errors = [*r.errors, *c.refused.values()][:MAX_ERRORS]
        unusable = list(c.refused)[:MAX_ERRORS]
    sample = MinerSample(
        miner=miner.mac or miner.where, host=miner.host, port=miner.port, site=site, ts=ts, state=state,
        source=SOURCE, make=miner.profile.make, model=miner.profile.model, firmware=miner.firmware, mac=miner.mac,
        hashrate_ths=r.live_ths if state is MinerState.MINING or "hashrate_ths" in c.refused else 0.0,
        hashrate_avg_ths=r.avg_ths, expected_hashrate_ths=miner.expected_ths, power_w=r.power_w,
        power_limit_w=r.power_limit_w,
        temp_chip_max_c=max((b.temp_chip_max_c for b in r.boards if b.temp_chip_max_c is not None), default=None),
        temp_board_max_c=r.board_temp_max, fans_rpm=r.fans, boards=r.boards, pool=r.pool, uptime_s=r.uptime,
        hw_error_pct=r.hw_error_pct, errors=errors, unusable=unusable, fault_codes=r.codes,
        chip_hot_limit_c=miner.hot_limit_c, chip_stop_limit_c=miner.stop_limit_c, warnings=_warnings(miner),
    )
    return plausibility.check(sample)


def _warnings(miner: Braiins) -> list[str]:
    """What its gRPC reads could not give: one warning."""
    if miner.grpc_problem:
        return [f"{miner.grpc_problem}; MAC, firmware, nominal hashrate and pause state as last read"
                + ("" if miner.hot_limit_c is not None else "; no chip temperature limits of its own")]
    return [miner.limits_problem] if miner.limits_problem else []


def _unread(miner_id: str, miner: Braiins, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
    return MinerSample.offline(miner=miner_id, host=miner.host, port=miner.port, site=site, ts=ts, source=SOURCE,
                               reason=reason, state=state, make=miner.profile.make if state is MinerState.ERROR else None)


def read_reply(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime, profile: Profile = Profile(),
               details: dict[str, Any] | None = None) -> MinerSample:
    """A decoded poll reply as a sample, with pyasic's `GetMinerDetails` dict given (or none)."""
    miner = Braiins(host, port, profile, None)
    if details is not None:
        miner.mac, miner.firmware, miner.expected_ths, miner.paused = miner_details(details, miner)
    return _sample(_read_rpc(reply, f"{host}:{port}", profile), miner, site=site, ts=ts)


def covers(pyasic_miner: Any) -> bool:
    """BOS+ with the public gRPC API (pyasic's BOSer): 23.x and later."""
    from pyasic.miners.backends.braiins_os import BOSer

    return isinstance(pyasic_miner, BOSer)

"""Native reader for MicroBT Whatsminers on stock btminer firmware (API v2 on TCP 4028).

One TCP connection and one joined request per poll, `summary+devs+pools`: `summary` carries the
live (`MHS 1m`, pyasic's figure too; `HS RT` or `MHS 5s` where a reply lacks it), average and factory hashrate, the PSU's input power and its
limit, the intake temperature, both fans, uptime and the power mode; `devs` each slot's rate,
chips and temperatures; `pools` the pool. What the joined request cannot carry (btminer answers
the `get_*` commands and `status` one per connection) is read apart, as pyasic 0.79 reads it but
not every cycle: `get_miner_info` (the MAC, the miner's id) and `get_version` (firmware) at
identification and every ten minutes, `get_error_code` (the sample's errors, worded as pyasic words
them, and its fault codes) when the reading changes shape and at most a minute old otherwise,
`status` (`mineroff`: powered off on purpose) every poll while the unit does not hash and never
while it does (collector.sources.profile). Firmware of the 1.x API puts its error codes, MAC and firmware
in `summary` itself; those are taken from there, and so is its hardware error rate (`Device Hardware%`,
in per cent as CGMiner prints it; 2.x summaries carry none).

Where pyasic 0.79 reads a Whatsminer differently, this reader keeps what the firmware says:
- chip temperature: each slot's `Chip Temp Max` (pyasic reports `Chip Temp Avg` as the chip
  temperature, ~10 C below the hottest chip);
- average and expected hashrate, power mode; a unit powered off (`mineroff`) is `soft_off`
  (pyasic: idle); a slot btminer no longer finds is a board with no chips (pyasic: no readings).

API v3 firmware (after 2024-11, port 4433) is not read here: pyasic reads it.
Hostile replies: as collector.sources.antminer (collector.sources.reply_values, plausibility). A summary
with none of btminer's rates (an Antminer's), or a `get_miner_info` refused as an unknown command by a
unit that answered it before, is another make at the address (collector.sources.rpc_reader.OtherUnit).
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from typing import Any

from collector.sources import cgminer_client as cgminer
from collector.sources import plausibility
from collector.sources.profile import IDENTITY_EVERY_S, STATUS_EVERY_S, Profile, next_due
from collector.sources.reply_values import Checked, board_named, board_number, code, first, mac, text
from collector.sources.rpc_reader import OtherUnit, RpcReader
from models import BoardSample, FaultCode, MinerSample, MinerState, SampleSource
from models.sample import MAX_BOARDS, MAX_CHIPS_PER_BOARD, MAX_ERRORS, MAX_FAN_RPM, MAX_UPTIME_S
from models.sample import state_with_refusals

# The one request a poll sends; `_read_rpc` reads exactly these sections.
POLL_COMMAND = "summary+devs+pools"
SOURCE = SampleSource.WHATSMINER
_MHS_PER_THS = 1e6
CODES_KEY = "error_code"  # FaultCode.key: get_error_code's list (API 1.x: summary's `Error Code N`)
CODES_SOURCE = "MicroBT's error codes as pyasic 0.79 tables them (pyasic.data.error_codes.whatsminer)"
_UNKNOWN = "Unknown error type."  # pyasic's words for a code its table lacks: no published meaning


class Whatsminer(RpcReader):
    """One identified Whatsminer and the fields read apart from its poll (see the module docstring)."""

    __slots__ = ("firmware", "codes", "mineroff", "rpc_problem")
    poll_command = POLL_COMMAND

    def __init__(self, host: str, port: int, profile: Profile) -> None:
        super().__init__(host, port, profile)
        self.firmware: str | None = None
        self.codes: list[int] = []  # the error codes, as last read
        self.mineroff: bool | None = None
        self.rpc_problem: str | None = None  # why the last call apart from the poll failed

    async def prepare(self, timeout_s: float) -> None:
        """At identification: MAC, firmware, error codes. Failures are kept as a warning."""
        deadline = time.monotonic() + timeout_s
        for read in (self._read_identity, self._read_errors):
            await self._call(read, deadline)
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
        if reading.summary_codes is None and (changed or now >= self.status_due):
            self.status_due = next_due(now, STATUS_EVERY_S)
            await self._call(self._read_errors, deadline)
        if reading.hashing:
            self.mineroff = None
        else:  # powered off, starting or broken: `status` says which, every poll while it does not hash
            await self._call(self._read_status, deadline)
        if now >= self.identity_due:
            self.identity_due = next_due(now, IDENTITY_EVERY_S)
            await self._call(self._read_identity, deadline)

    async def _call(self, read, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0.05:
            return
        try:
            await read(left)
            self.rpc_problem = None
        except OtherUnit:
            raise
        except cgminer.CGMinerError as e:
            self.rpc_problem = str(e)

    async def _msg(self, command: str, timeout_s: float) -> dict[str, Any]:
        """A `get_*`/`status` reply's `Msg` object (btminer answers those flat, one per connection)."""
        reply = cgminer.decode(await cgminer.request(self.host, self.port, command, timeout_s=timeout_s), self.where)
        if isinstance(reply.get("STATUS"), list):  # CGMiner's shape, not btminer's: its status says why
            cgminer.section(reply, command, self.where)
        if reply.get("STATUS") != "S" or not isinstance(reply.get("Msg"), dict):
            raise cgminer.MinerReplyError(f"{self.where}: '{command}' failed: {text(str(reply.get('Msg')), 80)}")
        return reply["Msg"]

    async def _read_identity(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        try:
            info = await self._msg("get_miner_info", timeout_s)
        except cgminer.UnknownCommand as e:
            if self.mac is None:  # it never answered it (API 1.x keeps its MAC in summary): nothing learnt
                raise
            raise OtherUnit(f"{e}, which the unit identified here (MAC {self.mac}) answered") from None
        self.mac = info_mac(info) or self.mac
        left = deadline - time.monotonic()
        if left > 0.05:
            self.firmware = version_firmware(await self._msg("get_version", left)) or self.firmware

    async def _read_errors(self, timeout_s: float) -> None:
        self.codes = error_codes(await self._msg("get_error_code", timeout_s))

    async def _read_status(self, timeout_s: float) -> None:
        self.mineroff = status_mineroff(await self._msg("status", timeout_s))


def info_mac(msg: dict[str, Any]) -> str | None:
    """`get_miner_info`'s MAC."""
    return mac(text(msg.get("mac")))


def version_firmware(msg: dict[str, Any]) -> str | None:
    """`get_version`'s firmware ("20230803.11.REL")."""
    return text(msg.get("fw_ver"))


def status_mineroff(msg: dict[str, Any]) -> bool | None:
    """`status`: is the unit powered off on purpose? (API 2.x `mineroff`, 1.x `btmineroff`)."""
    off = msg.get("mineroff", msg.get("btmineroff"))
    return off == "true" if isinstance(off, str) else None


def error_codes(msg: dict[str, Any]) -> list[int]:
    """`get_error_code`'s codes: API 2.0.5 `[{"530": "<time>"}, ...]`, 2.0.4 a flat list of codes and times."""
    items = msg.get("error_code")
    if not isinstance(items, list):
        return []
    codes: list[int] = []
    for item in items[:2 * MAX_ERRORS]:
        for candidate in (item.keys() if isinstance(item, dict) else (item,)):
            number = code(candidate)  # a time of the flat 2.0.4 list is no code
            if number is not None and number not in codes:
                codes.append(number)
    return codes[:MAX_ERRORS]


def error_messages(codes: list[int]) -> list[str]:
    """Each code as pyasic words it (its table of MicroBT's published codes), so the text stays the
    same whichever path read the miner."""
    return [_meaning(code) for code in codes]


def fault_codes(codes: list[int]) -> list[FaultCode]:
    """Each code as a models.FaultCode for the health stage: its meaning from the same table (None where
    the table has none), the slot it names as the board (MicroBT numbers slots from 0, as `devs` does),
    severity unknown (MicroBT publishes none)."""
    return [fault_code(number) for number in codes]


@lru_cache(maxsize=512)
def fault_code(number: int) -> FaultCode:
    meaning = _words(number)
    if meaning == _UNKNOWN:
        return FaultCode(key=CODES_KEY, code=number)
    return FaultCode(key=CODES_KEY, code=number, board=board_named(meaning, "slot"), meaning=meaning,
                     source=CODES_SOURCE)


@lru_cache(maxsize=512)
def _meaning(number: int) -> str:
    words = _words(number)
    return f"{words} (code {number})" if words else f"error code {number}"


def _words(number: int) -> str | None:
    try:
        from pyasic.data.error_codes import WhatsminerError

        return WhatsminerError(error_code=number).error_message
    except Exception:  # pyasic's table missing or changed: the code alone still says something
        return None


# -- the RPC reading ------------------------------------------------------------------------------


class _Reading:
    __slots__ = ("checked", "live_ths", "avg_ths", "expected_ths", "power_w", "power_limit_w", "env_c", "fans",
                 "uptime", "work_mode", "boards", "chips", "board_temp_max", "pool", "summary_codes", "summary_mac",
                 "summary_firmware", "hw_error_pct")

    def __init__(self) -> None:
        self.checked = Checked()

    @property
    def hashing(self) -> bool:
        return bool(self.live_ths)


def _read_rpc(reply: dict[str, Any], where: str, profile: Profile) -> _Reading:
    summary = first(cgminer.section(reply, "summary", where).get("SUMMARY"))
    if not summary:
        raise cgminer.MinerReplyError(f"{where}: summary carries no entry (SUMMARY[0])")
    if "MHS 1m" not in summary and "HS RT" not in summary and "MHS 5s" not in summary:
        raise OtherUnit(f"{where}: summary carries none of btminer's hashrates (MHS 1m, HS RT, MHS 5s): "
                        "another make's summary")
    r = _Reading()
    c = r.checked
    live = _live(summary, "hashrate_ths", "summary", c)
    avg = c.number(summary.get("MHS av"), "hashrate_avg_ths", "summary MHS av")
    factory = c.number(summary.get("Factory GHS"), "expected_hashrate_ths", "summary Factory GHS")
    r.live_ths = None if live is None else live / _MHS_PER_THS
    r.avg_ths = None if avg is None else avg / _MHS_PER_THS
    r.expected_ths = factory / 1000 if factory else None
    power = summary.get("Power")
    r.power_w = None if power == -1 else c.number(power, "power_w", "summary Power") or None  # -1: no PSU reading
    r.power_limit_w = c.number(summary.get("Power Limit"), "power_limit_w", "summary Power Limit") or None
    r.env_c = c.temp(summary.get("Env Temp"), "temp_env_c", "summary Env Temp")
    r.fans = [rpm for key in ("Fan Speed In", "Fan Speed Out") if key in summary
              and (rpm := c.count(summary[key], "fans_rpm", f"summary {key}", MAX_FAN_RPM)) is not None]
    r.uptime = c.count(summary.get("Elapsed"), "uptime_s", "summary Elapsed", MAX_UPTIME_S)
    # API 1.x firmware only (API 2.x summaries carry no `Device Hardware%`): None there.
    r.hw_error_pct = c.percent(summary.get("Device Hardware%"), "hw_error_pct", "summary Device Hardware%")
    r.work_mode = text(summary.get("Power Mode"))
    r.summary_codes = _summary_codes(summary)
    r.summary_mac = mac(text(summary.get("MAC")))
    firmware = text(summary.get("Firmware Version"))
    r.summary_firmware = firmware.strip("'") or None if firmware else None
    try:
        devs = cgminer.section(reply, "devs", where).get("DEVS")
    except cgminer.MinerReplyError:
        devs = None
    r.boards, r.board_temp_max = _boards(devs, profile, c)
    r.chips = tuple(b.chips_ok for b in r.boards)
    try:
        pools = cgminer.section(reply, "pools", where).get("POOLS")
    except cgminer.MinerReplyError:
        pools = None
    r.pool = c.pool(pools)
    return r


def _live(entry: dict[str, Any], field: str, where: str, c: Checked) -> float | None:
    """The live rate in MH/s: `MHS 1m` (pyasic's figure), else `HS RT`, else `MHS 5s` (replies without
    the 1-minute window). A key present with a bad value is refused, never passed over for another."""
    for key in ("MHS 1m", "HS RT", "MHS 5s"):
        if key in entry:
            return c.number(entry[key], field, f"{where} {key}")
    return None


def _summary_codes(summary: dict[str, Any]) -> list[int] | None:
    """API 1.x: `Error Code Count` and `Error Code 0..n` in summary; None when the firmware has none."""
    count = summary.get("Error Code Count")
    if type(count) is not int or count < 0:
        return None
    return [number for i in range(min(count, MAX_ERRORS))
            if (number := code(summary.get(f"Error Code {i}"))) is not None]


def _boards(devs: Any, profile: Profile, c: Checked) -> tuple[list[BoardSample], float | None]:
    if not isinstance(devs, list):
        return [], None
    if len(devs) > MAX_BOARDS:
        c.refuse("boards", "devs", f"{len(devs)} entries", f"is more than the cap of {MAX_BOARDS} boards")
        return [], None
    found: dict[int, BoardSample] = {}
    pcb_max = None
    every_slot_named = True
    for entry in devs:
        named = entry.get("ASC", entry.get("Slot")) if isinstance(entry, dict) else entry
        slot = board_number(named)
        if slot is None or slot in found:
            c.refuse("boards", "devs ASC", named, "is not a slot number of its own")
            every_slot_named = False
            continue
        rate = _live(entry, "boards", f"devs[{slot}]", c)
        pcb = c.temp(entry.get("Temperature"), "boards", f"devs[{slot}] Temperature")
        if pcb:
            pcb_max = pcb if pcb_max is None else max(pcb_max, pcb)
        found[slot] = BoardSample(
            index=slot, hashrate_ths=None if rate is None else rate / _MHS_PER_THS,
            temp_chip_max_c=c.temp(entry.get("Chip Temp Max"), "boards", f"devs[{slot}] Chip Temp Max") or None,
            temp_chip_avg_c=c.temp(entry.get("Chip Temp Avg"), "boards", f"devs[{slot}] Chip Temp Avg") or None,
            chips_ok=c.count(entry.get("Effective Chips"), "boards", f"devs[{slot}] Effective Chips",
                             MAX_CHIPS_PER_BOARD),
            chips_expected=profile.chips_per_board)
    # btminer lists the slots it finds: a slot the model has and the reply lacks is a board with no chips.
    # With an entry whose slot is unreadable, which slots are missing is unknown: no board is called lost.
    for slot in range(profile.boards or 0) if every_slot_named else ():
        found.setdefault(slot, BoardSample(index=slot, hashrate_ths=0.0, chips_ok=0,
                                           chips_expected=profile.chips_per_board))
    return [found[slot] for slot in sorted(found)], pcb_max


def _sample(r: _Reading, miner: Whatsminer, *, site: str, ts: datetime) -> MinerSample:
    c = r.checked
    codes = r.summary_codes if r.summary_codes is not None else miner.codes
    reported = error_messages(codes)
    if r.hashing:
        state = MinerState.MINING
    elif miner.mineroff:
        state = MinerState.SOFT_OFF
    else:
        state = MinerState.ERROR if reported else MinerState.IDLE
    # A refused field costs that field (named in `unusable` and `errors`), not the state; only a refused
    # hashrate leaves unknown whether it hashes.
    state = state_with_refusals(state, c.refused)
    errors, unusable = reported, []
    if c.refused:
        errors = [*reported, *c.refused.values()][:MAX_ERRORS]
        unusable = list(c.refused)[:MAX_ERRORS]
    mac_address = miner.mac or r.summary_mac
    sample = MinerSample(
        miner=mac_address or miner.where, host=miner.host, port=miner.port, site=site, ts=ts, state=state,
        source=SOURCE, make=miner.profile.make, model=miner.profile.model,
        firmware=miner.firmware or r.summary_firmware, mac=mac_address,
        hashrate_ths=r.live_ths if state is MinerState.MINING or "hashrate_ths" in c.refused else 0.0,
        hashrate_avg_ths=r.avg_ths, expected_hashrate_ths=r.expected_ths, power_w=r.power_w,
        power_limit_w=r.power_limit_w, temp_env_c=r.env_c,
        temp_chip_max_c=max((b.temp_chip_max_c for b in r.boards if b.temp_chip_max_c is not None), default=None),
        temp_board_max_c=r.board_temp_max, fans_rpm=r.fans, boards=r.boards, pool=r.pool, uptime_s=r.uptime,
        hw_error_pct=r.hw_error_pct, work_mode=r.work_mode, errors=errors, unusable=unusable, fault_codes=fault_codes(codes),
        warnings=[f"{miner.rpc_problem}; MAC, firmware, error codes and power-off state as last read"]
        if miner.rpc_problem else [],
    )
    return plausibility.check(sample)


def _unread(miner_id: str, miner: Whatsminer, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
    return MinerSample.offline(miner=miner_id, host=miner.host, port=miner.port, site=site, ts=ts, source=SOURCE,
                               reason=reason, state=state, make=miner.profile.make if state is MinerState.ERROR else None)


def read_reply(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime, profile: Profile = Profile(),
               mac_address: str | None = None, firmware: str | None = None, error_codes_: list[int] | None = None,
               mineroff: bool | None = None) -> MinerSample:
    """A decoded `summary+devs+pools` reply as a sample, with the fields read apart given."""
    miner = Whatsminer(host, port, profile)
    miner.mac, miner.firmware, miner.mineroff = mac_address, firmware, mineroff
    miner.codes = list(error_codes_ or [])
    return _sample(_read_rpc(reply, f"{host}:{port}", profile), miner, site=site, ts=ts)


def covers(pyasic_miner: Any) -> bool:
    """btminer API v2 (pyasic's BTMinerV2): firmware before 2024-11."""
    from pyasic.miners.backends.btminer import BTMinerV2

    return isinstance(pyasic_miner, BTMinerV2)

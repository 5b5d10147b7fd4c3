"""Native reader for Bitmain Antminers on stock firmware (BMMiner RPC on 4028, web UI on 80).

One TCP connection and one joined request per poll, `stats+pools+summary`: BMMiner's `stats` carries
everything MinerSample stores that changes by the second (live and average hashrate, the nominal
one, uptime, fans, and per chain the rate, chips and the four chip and PCB sensors); `summary` only
the hardware error rate (`Device Hardware%`, in per cent as CGMiner's API prints it; `stats` has none
on the S19 firmware captured, and the web `hwp_total` is read nowhere: no capture of Bitmain's shows its
unit). The web UI's
digest-auth cgi pages carry what the RPC does not: the MAC (`get_system_info.cgi`, the miner's id),
the health list (`summary.cgi` `status[]`, what pyasic reports as errors; also the sample's fault
codes, for the health stage) and the sleep setting
(`get_miner_conf.cgi` `bitmain-work-mode`). Those are read at identification and then rarely
(collector.sources.profile): the health list when the reading changes shape (starts or stops
hashing, a chain's chips change) and at most a minute old otherwise, the sleep setting every poll
while the unit does not hash (and never while it does), the MAC every ten minutes. They travel over collector.sources.web_client
(HTTP/1.0 over the one-shot transport the RPC uses, Digest auth kept per miner) with the password
pyasic uses for Antminers.

Where pyasic 0.79 reads a stock Antminer differently, this reader keeps what the firmware says:
- chip temperature: the hottest of a chain's chip sensors (pyasic averages the four, inlet and
  outlet together, so a chain at 75 C reads 67.5 C);
- average hashrate since boot (`GHS av`; pyasic keeps none);
- a unit put to sleep is `soft_off` (pyasic: idle).

Everything in a reply is hostile until checked (collector.sources.reply_values): a value that is
not a finite number in range, or a list over its cap, is refused field by field and named; the rest
of its reading is kept, and the state is what the unit does (a unit that hashes is mining), unless the
hashrate itself is refused (error). Plausibility: collector.sources.plausibility. A `stats` carrying
Canaan's device string (an Avalon's) is another make at the address (collector.sources.rpc_reader.OtherUnit).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from collector.sources import cgminer_client as cgminer
from collector.sources import plausibility, web_client
from collector.sources.profile import IDENTITY_EVERY_S, STATUS_EVERY_S, Profile, next_due
from collector.sources.reply_values import Checked, board_named, code, first, mac, text
from collector.sources.rpc_reader import OtherUnit, RpcReader
from models import BoardSample, FaultCode, MinerSample, MinerState, SampleSource
from models.sample import MAX_BOARDS, MAX_CHIPS_PER_BOARD, MAX_ERRORS, MAX_FAN_RPM, MAX_FANS, MAX_UPTIME_S
from models.sample import state_with_refusals

# The one request a poll sends; `_read_rpc` reads exactly these sections.
POLL_COMMAND = "stats+pools+summary"
SOURCE = SampleSource.ANTMINER
MAX_CHAINS = 16  # chain slots looked at (S9s number theirs 6-8, S19s 1-3, hydro units have a 4th, empty)
_SENSORS = 8  # values in one `temp_chipN` / `temp_pcbN` ("63-59-56-61": four on every firmware seen)
_RATE_UNITS = {"GH": 1e-3, "MH": 1e-6, "TH": 1.0, "KH": 1e-9, "H": 1e-12}  # `rate_unit` -> TH/s
# Where Canaan's firmware puts its device string in STATS[0] (A-series, Nano: MM ID0; Q: MM ID0:Summary;
# 7xx-9xx controller chains: MM ID1..n); an Antminer's STATS[0] is BMMiner's version block.
_AVALON_KEYS = ("MM ID0", "MM ID0:Summary", "MM ID1")
_HEALTHY = ("s", "")  # summary.cgi status[].status: "s" fine; "" what hydro units say of their absent fans


class Antminer(RpcReader):
    """One identified Antminer: its address, what identification learnt, and the web-only fields
    with when they are due again. `poll` reads it."""

    __slots__ = ("auth", "errors", "codes", "sleeping", "web_problem")
    poll_command = POLL_COMMAND

    def __init__(self, host: str, port: int, profile: Profile, auth: web_client.DigestAuth | None) -> None:
        super().__init__(host, port, profile)
        self.auth = auth
        self.errors: list[str] = []  # the health list's complaints, as last read
        self.codes: list[FaultCode] = []  # the same complaints as codes, for the health stage
        self.sleeping: bool | None = None  # the sleep setting, read while the unit does not hash
        self.web_problem: str | None = None  # why the last web call failed (a warning on samples)

    async def prepare(self, timeout_s: float) -> None:
        """At identification: the MAC and the health list (the sleep setting waits for a reading
        that does not hash). Failures are kept as a warning; polls go on without them."""
        deadline = time.monotonic() + timeout_s
        await self._web(self._read_identity, deadline)
        await self._web(self._read_health, deadline)
        self.schedule()

    def read(self, reply: dict[str, Any]) -> _Reading:
        return _read_rpc(reply, self.where, self.profile)

    def sample(self, reading: _Reading, site: str, ts: datetime) -> MinerSample:
        return _sample(reading, self, site=site, ts=ts)

    def unread(self, miner_id: str, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
        return _unread(miner_id, self, site, ts, reason, state)

    async def refresh(self, reading: _Reading, deadline: float) -> None:
        """Fetch the web-only fields this reading makes due (see the module's docstring)."""
        now = time.monotonic()
        shape = (reading.hashing, reading.chips)
        changed, self.shape = self.shape is not None and shape != self.shape, shape
        if changed or now >= self.status_due:
            self.status_due = next_due(now, STATUS_EVERY_S)
            await self._web(self._read_health, deadline)
        if reading.hashing:
            self.sleeping = None
        else:  # asleep, waking or broken: the sleep setting says which, every poll while it does not hash
            await self._web(self._read_sleep, deadline)
        if now >= self.identity_due:
            self.identity_due = next_due(now, IDENTITY_EVERY_S)
            await self._web(self._read_identity, deadline)

    async def _web(self, read, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0.05:
            return  # the poll's time is spent: next cycle
        try:
            await read(left)
            self.web_problem = None
        except web_client.WebError as e:
            self.web_problem = str(e)

    async def _cgi(self, name: str, timeout_s: float) -> dict[str, Any]:
        return await web_client.get_json(self.host, f"/cgi-bin/{name}.cgi", self.auth, timeout_s)

    async def _read_identity(self, timeout_s: float) -> None:
        found = mac((await self._cgi("get_system_info", timeout_s)).get("macaddr"))
        if found is not None:
            self.mac = found

    async def _read_health(self, timeout_s: float) -> None:
        self.errors, self.codes = health_list(await self._cgi("summary", timeout_s))

    async def _read_sleep(self, timeout_s: float) -> None:
        self.sleeping = work_mode_sleeping(await self._cgi("get_miner_conf", timeout_s))


def health_list(summary: dict[str, Any]) -> tuple[list[str], list[FaultCode]]:
    """What `summary.cgi`'s health list complains of (every entry whose status is not fine), as the text
    pyasic reports and as codes: the entry's `code` (0 when it has none), its `msg` the meaning, the
    chain the message names ("... on chain 0", numbered as the boards are) the board, the severity
    unknown (Bitmain publishes no table of these codes)."""
    items = first(summary.get("SUMMARY")).get("status")
    if not isinstance(items, list):
        return [], []
    errors, codes = [], []
    for item in items[:MAX_ERRORS]:
        if not isinstance(item, dict) or item.get("status") in _HEALTHY:
            continue
        msg = text(item.get("msg"), 200)
        kind = text(item.get("type"), 40) or "status"
        errors.append(msg or f"{kind}: status {text(str(item.get('status')), 20)}, code {text(str(item.get('code')), 20)}")
        codes.append(FaultCode(key=f"summary.cgi {kind}", code=code(item.get("code")) or 0,
                               board=board_named(msg, "chain"), meaning=msg))
    return errors, codes


def work_mode_sleeping(conf: dict[str, Any]) -> bool | None:
    """`bitmain-work-mode` "1" is sleep; None when the page does not say."""
    mode = conf.get("bitmain-work-mode")
    if isinstance(mode, (str, int)) and not isinstance(mode, bool):
        return str(mode).strip() == "1"
    return None


# -- the RPC reading ------------------------------------------------------------------------------


class _Reading:
    """The values of one `stats+pools+summary` reply, checked, before the web-only fields join them."""

    __slots__ = ("checked", "firmware", "live_ths", "avg_ths", "expected_ths", "uptime", "fans", "boards",
                 "chips", "board_temp_max", "pool", "hw_error_pct")

    def __init__(self) -> None:
        self.checked = Checked()

    @property
    def hashing(self) -> bool:
        return bool(self.live_ths)


def _read_rpc(reply: dict[str, Any], where: str, profile: Profile) -> _Reading:
    stats = cgminer.section(reply, "stats", where).get("STATS")
    if not isinstance(stats, list) or len(stats) < 2 or not isinstance(stats[1], dict):
        raise cgminer.MinerReplyError(f"{where}: stats carries no device entry (STATS[1])")
    version, dev = first(stats), stats[1]
    avalon_key = next((key for key in _AVALON_KEYS if key in version), None)
    if avalon_key is not None:
        raise OtherUnit(f"{where}: stats carries an Avalon's device string ({avalon_key}), which no Antminer "
                        "writes: another make's stats")
    r = _Reading()
    c = r.checked
    r.firmware = text(version.get("CompileTime"))
    to_ths = _RATE_UNITS.get(str(dev.get("rate_unit") or "GH")[:4].upper().removesuffix("/S"), 1e-3)
    live = c.number(dev.get("GHS 5s"), "hashrate_ths", "stats GHS 5s")
    avg = c.number(dev.get("GHS av"), "hashrate_avg_ths", "stats GHS av")
    ideal = c.number(dev.get("total_rateideal"), "expected_hashrate_ths", "stats total_rateideal")
    r.avg_ths = None if avg is None else avg / 1000
    r.expected_ths = None if not ideal else ideal * to_ths
    uptime = c.count(dev.get("Elapsed"), "uptime_s", "stats Elapsed", MAX_UPTIME_S)
    r.uptime = uptime
    r.fans = _fans(dev, profile, c)
    r.boards, r.board_temp_max = _boards(dev, profile, to_ths, c)
    r.chips = tuple(b.chips_ok for b in r.boards)
    if live is None and "hashrate_ths" not in c.refused and r.boards:  # firmware without GHS 5s: the chains' sum
        rates = [b.hashrate_ths for b in r.boards if b.hashrate_ths is not None]
        live = sum(rates) * 1000 if rates else None
    r.live_ths = None if live is None else live / 1000
    try:
        pools = cgminer.section(reply, "pools", where).get("POOLS")
    except cgminer.MinerReplyError:
        pools = None  # the pool only refines the sample
    r.pool = c.pool(pools)
    try:
        summary = first(cgminer.section(reply, "summary", where).get("SUMMARY"))
    except cgminer.MinerReplyError:
        summary = {}  # as the pool: the error rate only refines the sample
    r.hw_error_pct = c.percent(summary.get("Device Hardware%"), "hw_error_pct", "summary Device Hardware%")
    return r


def _chain_slots(dev: dict[str, Any], profile: Profile) -> list[int]:
    """The chain numbers to read. Firmware numbers chains in blocks of five (S19s 1-3, S9s 6-8): from
    the start of the block of the first chain that has chips, as many as the model has boards (a dead
    chain is read as one with no chips), plus any further chain that has chips."""
    present = [n for n in range(1, MAX_CHAINS + 1) if f"chain_acn{n}" in dev]
    if not present:
        return []
    populated = [n for n in present if dev.get(f"chain_acn{n}") or dev.get(f"chain_acs{n}")]
    start = 1 + 5 * ((populated[0] - 1) // 5) if populated else present[0]
    wanted = profile.boards or len(populated) or len(present)
    return sorted({n for n in present if start <= n < start + wanted} | set(populated))


def _boards(dev: dict[str, Any], profile: Profile, to_ths: float,
            c: Checked) -> tuple[list[BoardSample], float | None]:
    slots = _chain_slots(dev, profile)
    if len(slots) > MAX_BOARDS:  # unreachable with MAX_CHAINS <= MAX_BOARDS; kept so the cap is explicit
        c.refuse("boards", "stats chain_acn", len(slots), f"is more than the cap of {MAX_BOARDS} boards")
        return [], None
    boards, pcb_max = [], None
    start = slots[0] if slots else 0
    for n in slots:
        rate = c.number(dev.get(f"chain_rate{n}"), "boards", f"stats chain_rate{n}")
        chips = c.count(dev.get(f"chain_acn{n}"), "boards", f"stats chain_acn{n}", MAX_CHIPS_PER_BOARD)
        chip_temps = _sensors(dev.get(f"temp_chip{n}"), f"temp_chip{n}", c)
        if chip_temps is None:  # firmware of the S9 era: one chip and one PCB reading a chain
            chip_temps = _one(dev.get(f"temp2_{n}"), f"temp2_{n}", c)
            pcb = _one(dev.get(f"temp{n}"), f"temp{n}", c)
        else:
            pcb = _sensors(dev.get(f"temp_pcb{n}"), f"temp_pcb{n}", c) or []
        if pcb:
            pcb_max = max(pcb) if pcb_max is None else max(pcb_max, max(pcb))
        boards.append(BoardSample(
            index=n - start, hashrate_ths=None if rate is None else rate * to_ths,
            temp_chip_max_c=max(chip_temps) if chip_temps else None,
            chips_ok=chips, chips_expected=profile.chips_per_board))
    return boards, pcb_max


def _sensors(value: Any, key: str, c: Checked) -> list[float] | None:
    """`"63-59-56-61"` -> [63, 59, 56, 61]; zeros (no reading) left out; None when the key is absent."""
    if value is None:
        return None
    if type(value) is int or type(value) is float:  # one sensor written as a number
        return _one(value, key, c)
    if not isinstance(value, str) or len(value) > 16 * _SENSORS:
        c.refuse("boards", f"stats {key}", value, "is not a list of temperatures")
        return []
    readings = []
    for token in value.split("-", _SENSORS)[:_SENSORS]:
        t = c.temp(token.strip() or None, "boards", f"stats {key}")
        if t:  # 0: a sensor that does not read
            readings.append(t)
    return readings


def _one(value: Any, key: str, c: Checked) -> list[float]:
    t = c.temp(value, "boards", f"stats {key}")
    return [t] if t else []


def _fans(dev: dict[str, Any], profile: Profile, c: Checked) -> list[int]:
    """fan1..fan4, or fan5..fan8 where those are the ones turning (headers come in fours), as many as
    the model has (else `fan_num`, else the keys of the block)."""
    offset = next((block for block in (1, 5) if any(dev.get(f"fan{block + i}") for i in range(4))), 1)
    count = profile.fans
    if count is None:
        fan_num = dev.get("fan_num")
        count = fan_num if type(fan_num) is int and fan_num > 0 else sum(
            1 for n in range(offset, offset + 4) if f"fan{n}" in dev)
    if count > MAX_FANS:
        c.refuse("fans_rpm", "stats fan_num", count, f"is more than the cap of {MAX_FANS} fans")
        return []
    fans = []
    for n in range(offset, offset + count):
        rpm = c.count(dev.get(f"fan{n}", 0), "fans_rpm", f"stats fan{n}", MAX_FAN_RPM)
        if rpm is not None:
            fans.append(rpm)
    return fans


def _sample(r: _Reading, miner: Antminer, *, site: str, ts: datetime) -> MinerSample:
    c = r.checked
    if r.hashing:
        state = MinerState.MINING
    elif miner.sleeping:
        state = MinerState.SOFT_OFF
    else:
        state = MinerState.ERROR if miner.errors else MinerState.IDLE
    # A refused field costs that field (named in `unusable` and `errors`), not the state; only a refused
    # hashrate leaves unknown whether it hashes.
    state = state_with_refusals(state, c.refused)
    errors, unusable = miner.errors, []
    if c.refused:
        errors = [*miner.errors, *c.refused.values()][:MAX_ERRORS]
        unusable = list(c.refused)[:MAX_ERRORS]
    where = miner.where
    sample = MinerSample(
        miner=miner.mac or where, host=miner.host, port=miner.port, site=site, ts=ts, state=state, source=SOURCE,
        make=miner.profile.make, model=miner.profile.model, firmware=r.firmware, mac=miner.mac,
        hashrate_ths=r.live_ths if state is MinerState.MINING or "hashrate_ths" in c.refused else 0.0,
        hashrate_avg_ths=r.avg_ths, expected_hashrate_ths=r.expected_ths,
        temp_chip_max_c=max((b.temp_chip_max_c for b in r.boards if b.temp_chip_max_c is not None), default=None),
        temp_board_max_c=r.board_temp_max, fans_rpm=r.fans, boards=r.boards, pool=r.pool, uptime_s=r.uptime,
        hw_error_pct=r.hw_error_pct,
        errors=errors, unusable=unusable, fault_codes=miner.codes,
        warnings=[f"{miner.web_problem}; MAC, health list and sleep setting as last read"] if miner.web_problem else [],
    )
    return plausibility.check(sample)


def _unread(miner_id: str, miner: Antminer, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
    return MinerSample.offline(miner=miner_id, host=miner.host, port=miner.port, site=site, ts=ts, source=SOURCE,
                               reason=reason, state=state, make=miner.profile.make if state is MinerState.ERROR else None)


def read_reply(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime,
               profile: Profile = Profile(), mac_address: str | None = None, health: dict[str, Any] | None = None,
               sleeping: bool | None = None) -> MinerSample:
    """A decoded `stats+pools+summary` reply as a sample, with the web-only fields given (`health`: a decoded
    `summary.cgi`): what a poll does without the network (tests and tools)."""
    miner = Antminer(host, port, profile, None)
    miner.mac, miner.sleeping = mac_address, sleeping
    miner.errors, miner.codes = health_list(health or {})
    return _sample(_read_rpc(reply, f"{host}:{port}", profile), miner, site=site, ts=ts)


def web_auth(pyasic_miner: Any) -> web_client.DigestAuth:
    """Digest auth with the credentials pyasic uses for this miner (its settings: root / root by default)."""
    web = getattr(pyasic_miner, "web", None)
    user = getattr(web, "username", None) or "root"
    password = getattr(web, "pwd", None) or "root"
    return web_client.DigestAuth(str(user), str(password))


def covers(pyasic_miner: Any) -> bool:
    """Stock firmware with the modern web UI (S19, S21 and their kin): what this reader knows."""
    from pyasic.miners.backends.antminer import AntminerModern
    from pyasic.miners.device.firmware import StockFirmware

    return isinstance(pyasic_miner, AntminerModern) and isinstance(pyasic_miner, StockFirmware)

"""The commands curtailment control sends, declared in one place: Avalons natively over the CGMiner API
(collector/sources/cgminer_client.py, the transport the reader uses), every other make through pyasic.
Only collector/sinks/curtailment_control.py calls these: the one part of hashfleet that writes to a miner.

Avalon, as Canaan documents it (DESIGN.md section 4, docs/avalon.md):

    sleep   ascset|0,softoff,<unix-ts>     the unit idles (fans and control board stay up)
    wake    ascset|0,softon,<unix-ts>      it ramps back to its work mode
    mode    ascset|0,workmode,set,<n>

The firmware acts on a soft-off or soft-on at <unix-ts> on its own clock (pyasic and every other client
send "now + 5 s"), so a time from a collector whose clock is ahead (a box booted before NTP answered)
schedules the change for later: a sleep a day late, at whatever the price is then. So <unix-ts> is the
miner's own time: the `When` of its answer to `version` (every CGMiner reply's STATUS carries it), asked
just before; not pyasic's 5 s later, which at a short poll interval lands after the next poll (unconfirmed,
sent again, and each resend moves it on). What firmware does with a time already past is not documented:
`When` is at most a second and a round trip old when the command arrives, as our own time always was on a
synced clock. A miner whose time cannot be read is not sent the command (an error the next poll follows,
as a miner that does not answer): our own time could be the wrong one. Work modes carry no time. A miner's
time more than CLOCKS_DISAGREE_S from ours is logged (a WARNING an hour, with how many more): one of the two
clocks is wrong, and only the operator can tell which (the miner's NTP or ours).

Replies real firmware sends, all taken as accepted (the next poll confirms the change either way):
STATUS I 118 "ASC 0 set info: success softoff:<ts>", STATUS S 119 "ASC 0 set OK" (an A1466 answers
soft-off that way), and no reply at all: a connection closed without a byte (an A1466's soft-on).
STATUS E or F is refused, with the firmware's message; anything else is an error.

Other makes: pyasic 0.79's `stop_mining` / `resume_mining` (Antminer stock: the web config's sleep
mode; Whatsminer: power_off/power_on; Braiins OS+: pause/resume). Work modes are changed natively on
Avalons only: pyasic's `set_power_limit` on an Avalon picks a work *level* (0/1/2) from the watts
asked for, not a power limit (docs/curtailment.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from collector.bounded_log import BoundedLog
from collector.sources import cgminer_client as cgminer
from collector.sources import pyasic_makes
from collector.sources.reply_values import first, whole
from models import SampleSource

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 300
CLOCK_COMMAND = "version"  # the smallest reply: only its STATUS's `When` is read
MAX_MINER_TIME = 10**10  # `When` is a unix time: at most 10 digits (to the year 2286)
MINER_TIME = "<the miner's time>"  # in the command control announces before it has read that time
CLOCKS_DISAGREE_S = 300  # beyond a firmware's drift without NTP, and any round trip
_clocks = BoundedLog(log, every_s=3600)


@dataclass(frozen=True)
class CommandResult:
    result: str  # accepted | refused | error
    detail: str
    command: str = ""  # the command as sent, when it holds what only the miner could tell (its time)


def avalon_parameter(action: str, *, ts: int | str, mode: str | None = None) -> str:
    """The `ascset` parameter for `action`: sleep, wake or mode."""
    if action == "sleep":
        return f"0,softoff,{ts}"
    if action == "wake":
        return f"0,softon,{ts}"
    if action == "mode":
        if mode is None or not (mode.isascii() and mode.isdigit()):  # ("²" and "٣" are digits to isdigit)
            raise ValueError(f"work mode {mode!r} is not a WORKMODE number")
        return f"0,workmode,set,{int(mode)}"
    raise ValueError(f"unknown action {action!r}")


# What pyasic 0.79's stop_mining / resume_mining put on the wire for the makes a native reader knows (read in
# its code; the simulators log the same): a stock Antminer's sleep rewrites its whole web config (pools and fan
# settings as read back a moment before), which the audit should show.
_PYASIC_WIRE = {
    (SampleSource.ANTMINER, "sleep"): "set_miner_conf, miner-mode 1 (the whole web config written back as read)",
    (SampleSource.ANTMINER, "wake"): "set_miner_conf, miner-mode 0 (the whole web config written back as read)",
    (SampleSource.WHATSMINER, "sleep"): "btminer power_off", (SampleSource.WHATSMINER, "wake"): "btminer power_on",
    (SampleSource.BRAIINS, "sleep"): "gRPC PauseMining", (SampleSource.BRAIINS, "wake"): "gRPC ResumeMining",
}


def describe(action: str, *, source: SampleSource, mode: str | None = None) -> str:
    """What is sent, as the audit log shows it before sending (an Avalon's time is read then: MINER_TIME)."""
    if source is SampleSource.AVALON:
        return f"ascset|{avalon_parameter(action, ts=MINER_TIME, mode=mode)}"
    call = {"sleep": "pyasic stop_mining", "wake": "pyasic resume_mining"}.get(action, f"pyasic {action}")
    wire = _PYASIC_WIRE.get((source, action))
    return f"{call}: {wire}" if wire else call


def read_avalon_reply(raw: bytes, where: str) -> CommandResult:
    """The firmware's verdict on an `ascset`, from its raw reply."""
    if not raw.rstrip(b"\x00 \r\n\t"):
        return CommandResult("accepted", "closed without a reply (some firmware does): the next poll confirms")
    try:
        reply = cgminer.decode(raw, where)
    except cgminer.MinerReplyError as e:
        return CommandResult("error", str(e)[:MAX_DETAIL_CHARS])
    status = reply.get("STATUS")
    first: Any = status[0] if isinstance(status, list) and status else status
    if not isinstance(first, dict):
        return CommandResult("error", f"{where}: reply without a STATUS")
    code, msg = first.get("STATUS"), str(first.get("Msg", ""))[:MAX_DETAIL_CHARS]
    if code in ("S", "I"):
        return CommandResult("accepted", msg)
    if code in ("E", "F"):
        return CommandResult("refused", msg or f"STATUS {code}")
    return CommandResult("error", f"{where}: STATUS {str(code)[:20]!r}: {msg}")


async def miner_time(host: str, port: int, *, timeout_s: float) -> int:
    """The miner's own clock, in unix seconds: the `When` of its reply to CLOCK_COMMAND (a CGMinerError when
    there is no usable one). Whatever it says is its clock, the one its firmware acts by: only a value no clock
    can hold (not a whole number, negative or zero, over 10 digits) is refused."""
    where = f"{host}:{port}"
    raw = await cgminer.request(host, port, CLOCK_COMMAND, timeout_s=timeout_s)
    when = whole(first(cgminer.decode(raw, where).get("STATUS")).get("When"), 10)
    if when is None or not 0 < when < MAX_MINER_TIME:
        raise cgminer.MinerReplyError(f"{where}: its reply to '{CLOCK_COMMAND}' carries no usable time (When)")
    return when


async def avalon(host: str, port: int, action: str, *, mode: str | None = None, timeout_s: float) -> CommandResult:
    """Send `action` (sleep, wake, mode), each request within `timeout_s`: a sleep or wake stamped with the
    miner's own time, read just before (two requests)."""
    where = f"{host}:{port}"
    ts: int | str = MINER_TIME
    if action in ("sleep", "wake"):
        try:
            ts = await miner_time(host, port, timeout_s=timeout_s)
        except cgminer.CGMinerError as e:
            return CommandResult("error", f"not sent: its clock could not be read, and a time from ours may be "
                                          f"wrong (the change would wait for it): {str(e)[:200]}")
        ahead = ts - time.time()
        if abs(ahead) > CLOCKS_DISAGREE_S:
            _clocks.warning("clocks", "%s: its clock reads %s %s ours: the %s is stamped with its time, which it acts "
                            "by; one of the two clocks is wrong (check NTP on the miner and on this box)", where,
                            timedelta(seconds=round(abs(ahead))), "ahead of" if ahead > 0 else "behind", action)
    try:
        parameter = avalon_parameter(action, ts=ts, mode=mode)
    except ValueError as e:
        return CommandResult("error", str(e))
    command = f"ascset|{parameter}"
    try:
        raw = await cgminer.request(host, port, "ascset", parameter, timeout_s=timeout_s)
    except cgminer.CGMinerError as e:
        return CommandResult("error", str(e)[:MAX_DETAIL_CHARS], command)
    result = read_avalon_reply(raw, where)
    return CommandResult(result.result, result.detail, command)


class PyasicMiners:
    """pyasic's miner objects by host, detected on first use (a detection is seconds: cached)."""

    def __init__(self) -> None:
        self._miners: dict[str, Any] = {}

    async def command(self, host: str, action: str, *, timeout_s: float) -> CommandResult:
        if action not in ("sleep", "wake"):
            return CommandResult("error", f"{action} is not sent through pyasic (Avalon work modes only)")
        try:
            miner = self._miners.get(host)
            if miner is None:
                miner = await pyasic_makes.detect(host, timeout_s=max(timeout_s, 10.0))
                if miner is None:
                    return CommandResult("error", f"{host}: pyasic found no miner there")
                self._miners[host] = miner
            call = miner.stop_mining if action == "sleep" else miner.resume_mining
            ok = await pyasic_makes.within(call(), timeout_s)
        except TimeoutError:
            return CommandResult("error", f"{host}: no answer within {timeout_s:g} s")
        except Exception as e:  # pyasic raises many kinds; one miner's failure is its own
            return CommandResult("error", f"{host}: pyasic failed: {type(e).__name__}: {str(e)[:200]}")
        return CommandResult("accepted" if ok else "refused", "pyasic reported success" if ok else
                             "pyasic reported failure")

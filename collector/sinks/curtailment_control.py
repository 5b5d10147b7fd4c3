"""Curtailment control: the only code in hashfleet that writes to a miner. Opt-in, off by default.

Each cycle it reads the advice (`cycle.curtailment`, collector/stages/curtailment.py) and what every
miner is doing (`cycle.samples`), and in mode

    off      does nothing at all;
    dry_run  decides what `on` would send, and logs and publishes it (audit log, `action` points, MQTT)
             without sending anything: it keeps the books `on` would keep (the miners it would have slept
             or moved, its sends within the hour: `_DryRun`), so it announces what `on` would send, within
             the same limits, once per change;
    on       sends it (collector/sinks/miner_commands.py), and checks the change on the next poll.

Safety, in the order it is checked:
- the kill switch: the config's `kill_switch_file` existing, or the MQTT kill topic ON, stops every send;
- stale data: a power price that is the tariff's fallback or stale network data (the plan says `stale`)
  stops every send, retries included;
- per miner: only miners on the allowlist (ids, MACs, addresses, layout groups; `*` for all); only
  miners polled this cycle with a usable reading (not offline, not in error, not an MQTT device);
  none with a change still unconfirmed, none left alone after a change failed (`failed_backoff_s`);
- it never sleeps a miner the plan only holds asleep while it waits to run (hysteresis, a minimum time, the
  ramp: `MinerAdvice.held`), such as one control had not slept yet when the price fell;
- control lowers load (sleep, a lower work mode) and undoes only what it did itself: it wakes only
  miners it put to sleep and restores only modes it changed (kept across restarts), never a miner an
  operator stopped; and it owns a change only while the miner stays as control left it: a poll showing
  it awake, or in another mode, with no action of control's on it pending, means an operator took it back
  (left alone for `failed_backoff_s`), unless it rebooted since control slept it (a power loss: soft-off is
  not kept through one), or control could not know what it had in flight: then the change is let go without
  that backoff (`released`) and the plan decides the miner anew;
- at most `max_actions_per_cycle` sends a cycle and `max_actions_per_hour` an hour (retries count);
- every change is confirmed on the next poll (state soft_off / not soft_off, or the work mode), sent
  again up to `confirm_retries` times while the plan still wants it, then reported `unconfirmed` and the
  miner left alone.

Every step is an ActionEvent (who, what, when, why, result) in the audit log (collector/sinks/audit_log.py)
and in the cycle's plan, so InfluxDB (`action`) and MQTT carry it too. The operator's commands over MQTT
that changed what control may do (kill switch, mode, demand-response targets) are audit lines too, written
first each cycle (not actions on a miner: not in the plan's events). This sink must come first among
the sinks (collector/pipeline.py puts it there) so the others see this cycle's events. Commands are
sent in the background, bounded by `timeout_s` each: a slow miner never holds the cycle up; a
command's reply becomes an event of the next cycle. On stop every action still open gets its last
word in the audit log (cancelled without an answer, or not confirmed by a poll). What is in flight is kept in
the state file, synced before the commands leave, so after any stop (a kill, a power cut) the next start's
first poll of each miner confirms it or not, in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from collector import clock, durable_file
from collector.bounded_log import BoundedLog
from collector.cycle import Cycle, MinersPart
from collector.identity import disputed
from collector.layout import Allowlist, SiteLayout
from collector.sinks import miner_commands
from collector.sinks.audit_log import AuditLog
from collector.sources.live_inputs import LiveInputs, control_mode, kill_switch
from models.curtailment import ActionEvent, CurtailmentPlan, MinerAdvice
from collector.stages.curtailment_rules import DEFAULT_MODE, SLEEP
from models import MinerSample, MinerState, SampleSource
from models.base import read_capped
from models.sample import MAX_UPTIME_S
from models.curtailment import ControlConfig, ControlMode

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAX_STATE_BYTES = 16 * 1024 * 1024
MAX_TRACKED = 200_000
HOUR_S = 3600.0
_LATEST_S = clock.LATEST.timestamp()  # a time past it in the state file is garbage (collector/clock.py)
SEND_GRACE_S = 5.0  # on stop (drain), in-flight commands get this long to answer before they are cancelled
# A miner's boot time (the clock less its uptime) moves by the time between a poll and the cycle's clock:
# later than that, it booted again.
REBOOT_SLACK_S = 60.0
MAX_PENDING_TEXT = 1000  # a saved action's reason, command, host
ACTIONS = ("sleep", "wake", "mode")
# Why a miner control slept reads awake with nothing of control's under way, when it is not an operator's hand:
REBOOTED = "rebooted since control slept it (power loss?)"
UNWATCHED = ("found awake at its first poll after a restart, what control had in flight at the stop unknown (a "
             "state file saved without it)")


@dataclass(slots=True)
class _Pending:
    action: str
    want: str  # the option the miner should show: SLEEP or a mode
    reason: str
    command: str
    host: str
    kw: float
    attempt: int
    # sending (no reply yet) | sent (the next poll confirms) | resend | restored (in flight at the last stop,
    # read from the state file: the first usable poll after the start says whether it took)
    step: str = "sending"


RUNNING = "running"  # dry_run: a miner it announced woken runs (in the mode it reports)


@dataclass(slots=True)
class _DryRun:
    """dry_run's books: what `on` would have kept had it sent what dry_run announced, each change taken to
    show at the next poll (nothing was sent, so the miner itself still reads as it was). Seeded from control's
    own books when dry_run begins; in memory only: never saved, never read by `on`."""

    slept: dict[str, float]
    moved: dict[str, str]
    moved_to: dict[str, str]
    sent: deque[float]
    left: dict[str, str] = field(default_factory=dict)  # miner -> SLEEP, RUNNING or the mode it was moved to

    def seen(self, sample: MinerSample) -> MinerSample:
        """The miner as `on` would have left it: asleep once a sleep was announced, running once a wake was, in
        the mode announced; a reading that says nothing (offline, in error, MQTT) stays as it is."""
        left = self.left.get(sample.miner)
        if left is None or not _usable(sample):
            return sample
        if left == SLEEP:
            return sample if _asleep(sample) else sample.model_copy(update={"state": MinerState.SOFT_OFF})
        update: dict[str, Any] = {"state": MinerState.MINING} if _asleep(sample) else {}
        if left != RUNNING:
            update["work_mode"] = left
        return sample.model_copy(update=update) if update else sample

    def record(self, sample: MinerSample, action: str, want: str, now: float) -> None:
        """An announced action, booked as `on` books a send, and taken as done."""
        miner = sample.miner
        self.sent.append(now)
        if action == "sleep":
            self.slept[miner], left = now, SLEEP
        elif action == "wake":
            self.slept.pop(miner, None)
            left = RUNNING
        else:
            if self.moved.get(miner) == want:  # back to the mode it was moved from
                del self.moved[miner]
                self.moved_to.pop(miner, None)
            elif miner not in self.moved and sample.work_mode is not None:
                self.moved[miner], self.moved_to[miner] = sample.work_mode, want
            left = want
        self.left.pop(miner, None)
        self.left[miner] = left  # (the latest last: with miner churn, the oldest are forgotten first)
        while len(self.left) > MAX_TRACKED:
            gone = next(iter(self.left))
            del self.left[gone]
            self.slept.pop(gone, None)
            self.moved.pop(gone, None)
            self.moved_to.pop(gone, None)

    def carry_back(self, step: float) -> None:
        self.sent = deque(t - step for t in self.sent)
        self.slept = {miner: t - step for miner, t in self.slept.items()}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), timezone.utc)


class CurtailmentControl:
    """collector.sinks.Sink acting on the curtailment plan (see the module's text)."""

    def __init__(self, config: ControlConfig, site: str, *, live: LiveInputs | None = None,
                 layout: SiteLayout | None = None, state_path: Path | None = None, audit_path: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.site = site
        self.live = live or LiveInputs()
        self.layout = layout or SiteLayout({})
        self.state_path = state_path
        self.audit = AuditLog(audit_path, site) if audit_path is not None else None
        self._clock = clock
        self.allowlist = Allowlist(config.allow, self.layout)
        self._pyasic = miner_commands.PyasicMiners()
        self._pending: dict[str, _Pending] = {}
        self._results: list[ActionEvent] = []  # replies that came back since the last cycle
        self._tasks: set[asyncio.Task] = set()
        self._dry: _DryRun | None = None  # while in dry_run: the books `on` would have kept
        self._blocked: str | None = None  # why nothing may be sent (announced once per episode)
        self._waiting_log = BoundedLog(log, every_s=600)
        # kept across restarts
        self.slept: dict[str, float] = {}  # miners this control put to sleep -> when (sent; confirmed, once shown)
        self.slept_uptime: dict[str, int] = {}  # ... -> the miner's uptime at the poll that confirmed the sleep
        self.moved: dict[str, str] = {}  # miners whose work mode it changed -> the mode before
        self.moved_to: dict[str, str] = {}  # ... -> the mode it set
        self.failed: dict[str, float] = {}  # miners left alone until this time
        self.sent: deque[float] = deque()  # send times within the last hour
        self._last_now: float | None = None
        self._saved: bytes | None = None  # the state file's content as last written
        self._unwatched: set[str] = set()  # miners of its books read back with what was in flight unknown
        if state_path is not None:
            self._load(state_path)

    # -- the sink -------------------------------------------------------------------------------

    async def write_miners(self, part: MinersPart) -> None:
        return None

    async def write(self, cycle: Cycle) -> None:
        self._audit_commands()
        plan = cycle.curtailment
        mode = self.mode()
        if mode is not ControlMode.DRY_RUN:
            self._dry = None
        elif self._dry is None:  # dry_run begins where control's own books are
            self._dry = _DryRun(dict(self.slept), dict(self.moved), dict(self.moved_to), deque(self.sent))
        if plan is None:
            return
        plan.control_mode = mode.value
        plan.killed = self.killed() is not None  # (shown in mode off too: else Home Assistant's switch read OFF, trial ZG)
        if mode is ControlMode.OFF:
            return
        now = self._now()
        events, self._results = self._results, []
        samples = {s.miner: s for s in cycle.samples}
        events += self._confirm(samples, now, mode)
        events += self._taken_back(samples, now, mode)
        blocked = self._why_blocked(plan)
        if blocked != self._blocked:
            if blocked is not None:
                log.warning("curtailment control sends nothing: %s", blocked)
                events.append(ActionEvent(_utc(now), "*", "none", "skipped", blocked, mode=mode.value))
            self._blocked = blocked
        if blocked is None:
            # one a cycle, shared: new actions first, then retries (retries count); dry_run's own in dry_run
            budget = self._budget(now, self.sent if self._dry is None else self._dry.sent)
            started = self._act(plan, samples, now, mode, budget)
            events += started + self._resend(plan, samples, now, mode, budget - len(started))
        plan.events.extend(events)
        # The commands started above leave once this returns to the loop (nothing here awaits): by then the audit
        # has their lines and the state file what is in flight, both synced, so a kill or a power cut after a
        # command left finds it in both.
        if self.audit is not None:
            self.audit.append(events)
        self._save()

    async def drain(self) -> None:
        """Commands still in flight get SEND_GRACE_S to answer, on the running loop: the pipeline awaits
        this before its loop ends (which would cancel them, often before they reach the miner)."""
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=SEND_GRACE_S)

    def close(self) -> None:
        """After `drain`: commands that did not answer in time are cancelled; the audit log gets what the
        others answered and how every action still open ended (no next poll will confirm it), the state
        is saved."""
        for task in [t for t in self._tasks if not t.done()]:
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed already: nothing left to cancel
                pass
        events, self._results = self._results + self._left_open(), []
        self._audit_commands()
        if self.audit is not None:
            self.audit.close(events)  # (what it still cannot write is logged in full)
        self._save()  # (what is in flight stays in it: the next start's first poll says whether it took)
        self._pending.clear()

    def _audit_commands(self) -> None:
        """The operator's commands over MQTT since the last cycle (kill switch, mode, demand-response targets),
        in the audit log before anything they allow is sent (a kill switch OFF, dry_run -> on)."""
        changes, not_kept = self.live.curtailment.take_changes()
        if self.audit is not None and (changes or not_kept):
            self.audit.append_commands(changes, not_kept)
        self.live.curtailment.save_pending()  # (and what they set is on disk before they allow a send)

    def _left_open(self) -> list[ActionEvent]:
        """An action the stop leaves open, as the audit's last word on it: a command that had not answered
        (an error: whether it took shows at the next start's poll), or one answered but not yet seen
        done by a poll (unconfirmed)."""
        now, mode, events = self._clock(), self.mode().value, []
        for miner, pending in self._pending.items():
            if pending.step == "sending":
                result, detail = "error", f"no answer within {SEND_GRACE_S:g} s of the stop: cancelled"
            elif pending.step in ("sent", "restored"):
                result, detail = "unconfirmed", "the collector stopped before a poll could confirm it"
            else:
                result, detail = "unconfirmed", "the last poll did not show it; the collector stopped before resending"
            events.append(ActionEvent(_utc(now), miner, pending.action, result, pending.reason, detail,
                                      pending.command, pending.host, pending.kw, pending.attempt, mode))
        return events

    # -- what may be done -----------------------------------------------------------------------

    def mode(self) -> ControlMode:
        return control_mode(self.config, self.live.curtailment)

    def killed(self) -> str | None:
        return kill_switch(self.config, self.live.curtailment)

    def _why_blocked(self, plan: CurtailmentPlan) -> str | None:
        killed = self.killed()
        if killed is not None:
            return killed
        if plan.stale:
            return f"stale data: {plan.stale_reason}"
        if self.audit is not None:
            self.audit.retry()
            if self.audit.broken is not None:
                return f"the audit log cannot be written ({self.audit.broken}): nothing is done that it would not record"
        return None

    # -- deciding and sending -------------------------------------------------------------------

    def _act(self, plan: CurtailmentPlan, samples: dict[str, MinerSample], now: float, mode: ControlMode,
             budget: int) -> list[ActionEvent]:
        """Start what the plan wants, at most `budget` actions: one event (sent or dry_run) each."""
        advice = {a.miner: a for a in plan.advice}
        dry = self._dry if mode is ControlMode.DRY_RUN else None
        slept, moved = (self.slept, self.moved) if dry is None else (dry.slept, dry.moved)
        wanted: list[tuple[int, float, str, str, str, MinerSample]] = []  # (order, kW, action, want, miner)
        # Ids two addresses claim (a clone, a device answering with a miner's MAC): which is the miner is not
        # known. The first holder carries the error only from the clash's second cycle: its rival names the id.
        contested = {s.mac for s in samples.values() if s.errors and s.mac and disputed(s)}
        disputed_ids = []
        for miner, want in plan.keys.items():
            sample = samples.get(miner)
            if sample is None or miner in self._pending or self.failed.get(miner, 0.0) > now:
                continue
            if sample.mac in contested or (sample.errors and disputed(sample)):
                disputed_ids.append(miner)
                continue
            if dry is not None:
                sample = dry.seen(sample)
            a = advice.get(miner)
            action = self._action(sample, want, a, slept, moved)
            if action is None or not self.allowlist.allows(sample):
                continue
            kw = (a.kw - a.kw_always_on) if a is not None and want == SLEEP else 0.0
            order = {"sleep": 0, "mode": 1, "wake": 2}[action]
            wanted.append((order, kw, action, want, miner, sample))
        if disputed_ids:
            self._waiting_log.warning(
                "disputed", "curtailment control: nothing sent to %d miner(s) whose id another address claims too "
                "(duplicate miner id: which one is the miner is not known), e.g. %s; resolve the clash to act on "
                "them", len(disputed_ids), ", ".join(disputed_ids[:5]))
        wanted.sort(key=lambda w: (w[0], w[1]))
        if len(wanted) > budget:  # the plan moves faster than control may: say so (its rate of savings assumes it kept up)
            self._waiting_log.warning(
                "budget", "curtailment control: %d change(s) the plan wants wait for the action limits "
                "(max_actions_per_cycle %d, max_actions_per_hour %d: %d sent in the last hour)%s",
                len(wanted) - max(budget, 0), self.config.max_actions_per_cycle, self.config.max_actions_per_hour,
                len(self.sent if dry is None else dry.sent), " [dry_run]" if dry is not None else "")
        events = []
        for order, kw, action, want, miner, sample in wanted:
            if budget <= 0:
                break
            budget -= 1
            a = advice.get(miner)
            reason = a.reason if a is not None else f"the plan: {'sleep' if want == SLEEP else 'run in mode ' + want}"
            events.append(self._start(sample, action, want, reason, kw, 1, now, mode))
        return events

    def _action(self, sample: MinerSample, want: str, advice: MinerAdvice | None, slept: dict[str, float],
                moved: dict[str, str]) -> str | None:
        """What would bring `sample` to `want`, if control may do it at all (`slept`, `moved`: its books)."""
        state = sample.state
        if sample.source is SampleSource.MQTT or state in (MinerState.OFFLINE, MinerState.ERROR):
            return None
        asleep = _asleep(sample)
        if want == SLEEP:
            # A plan that holds a miner asleep (hysteresis, a minimum time, the ramp) wants it running: one still
            # running (control never got to sleep it) is not slept for the wait.
            return None if asleep or (advice is not None and advice.held) else "sleep"
        if asleep:
            return "wake" if sample.miner in slept else None
        if sample.source is not SampleSource.AVALON or want == DEFAULT_MODE or not (want.isascii() and want.isdigit()):
            return None
        current = sample.work_mode
        if current is None or current == want:
            return None
        if moved.get(sample.miner) == want:
            return "mode"  # back to the mode control moved it from
        # Otherwise control only lowers a miner from its usual mode (never one an operator set).
        lowering = (advice is not None and advice.action == "lower" and current == advice.usual
                    and sample.miner not in moved)
        return "mode" if lowering else None

    def _now(self) -> float:
        """The clock, once a cycle; stepped back (collector/clock.py), the times kept move back with it: else
        the hour's sends would hold the budget, and a failed miner's backoff, for as long as the step."""
        now = self._clock()
        if self._last_now is not None and now < self._last_now:
            self._carry_back(self._last_now - now)
        self._last_now = now
        return now

    def _carry_back(self, step: float) -> None:
        self.sent = deque(t - step for t in self.sent)
        self.slept = {miner: t - step for miner, t in self.slept.items()}
        self.failed = {miner: t - step for miner, t in self.failed.items()}
        if self._dry is not None:
            self._dry.carry_back(step)

    def _budget(self, now: float, sent: deque[float]) -> int:
        while sent and sent[0] <= now - HOUR_S:
            sent.popleft()
        return min(self.config.max_actions_per_cycle, self.config.max_actions_per_hour - len(sent))

    def _start(self, sample: MinerSample, action: str, want: str, reason: str, kw: float, attempt: int,
               now: float, mode: ControlMode) -> ActionEvent:
        avalon = sample.source is SampleSource.AVALON
        command = miner_commands.describe(action, source=sample.source, mode=want if action == "mode" else None)
        if mode is ControlMode.DRY_RUN:
            assert self._dry is not None
            self._dry.record(sample, action, want, now)
            return ActionEvent(_utc(now), sample.miner, action, "dry_run", reason, "not sent: control is in dry_run",
                               command, sample.host, kw, attempt, mode.value)
        self.sent.append(now)
        if action == "sleep":
            self.slept[sample.miner] = now  # tried: control may wake it, whatever the reply
        pending = _Pending(action, want, reason, command, sample.host, kw, attempt)
        self._pending[sample.miner] = pending
        if action == "mode" and sample.miner not in self.moved and sample.work_mode is not None:
            self.moved[sample.miner], self.moved_to[sample.miner] = sample.work_mode, want
        task = asyncio.get_running_loop().create_task(self._send(sample, pending, mode, avalon))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ActionEvent(_utc(now), sample.miner, action, "sent", reason, "", command, sample.host, kw, attempt,
                           mode.value)

    async def _send(self, sample: MinerSample, pending: _Pending, mode: ControlMode, avalon: bool) -> None:
        timeout = self.config.timeout_s
        try:
            if avalon:
                result = await miner_commands.avalon(sample.host, sample.port, pending.action,
                                                     mode=pending.want if pending.action == "mode" else None,
                                                     timeout_s=timeout)
            else:
                result = await self._pyasic.command(sample.host, pending.action, timeout_s=timeout)
        except Exception as e:  # a bug costs this command, never the service
            result = miner_commands.CommandResult("error", f"{type(e).__name__}: {e}"[:300])
        pending.step = "sent"
        pending.command = result.command or pending.command  # (an Avalon's, with the time read from it)
        event = ActionEvent(_utc(self._clock()), sample.miner, pending.action, result.result, pending.reason,
                            result.detail, pending.command, sample.host, pending.kw, pending.attempt, mode.value)
        self._results.append(event)
        if result.result == "refused":
            self._pending.pop(sample.miner, None)
            self.failed[sample.miner] = self._clock() + self.config.failed_backoff_s
            self._disown(sample.miner, pending)
        # an error (no answer): the next poll decides, and a resend follows if it shows no change

    # -- confirming -----------------------------------------------------------------------------

    def _confirm(self, samples: dict[str, MinerSample], now: float, mode: ControlMode) -> list[ActionEvent]:
        events = []
        for miner, pending in list(self._pending.items()):
            if pending.step == "restored":
                events += self._restored(miner, pending, samples.get(miner), now, mode)
                continue
            if pending.step != "sent":
                continue
            sample = samples.get(miner)
            if sample is not None and sample.state is not MinerState.OFFLINE and _took(pending, sample):
                events.append(self._confirmed(miner, pending, sample, now, mode))
            elif pending.attempt > self.config.confirm_retries:
                del self._pending[miner]
                self.failed[miner] = now + self.config.failed_backoff_s
                if _usable(sample):  # it did not take: not control's to undo (with no reading, it may have)
                    self._disown(miner, pending)
                event = ActionEvent(_utc(now), miner, pending.action, "unconfirmed", pending.reason,
                                    f"after {pending.attempt} attempt(s) the poll shows "
                                    f"{_shows(sample) if sample else 'nothing'}; left alone for "
                                    f"{self.config.failed_backoff_s:g} s", pending.command, pending.host,
                                    pending.kw, pending.attempt, mode.value)
                events.append(event)
                # (the audit has each; a unit that accepts a command and ignores it is tried again after every
                # backoff, for good: the log says so too, at most every 10 minutes)
                self._waiting_log.warning("unconfirmed", "curtailment control: %s (%s) did not %s: %s",
                                          miner, pending.host, pending.action, event.detail)
            else:
                pending.step = "resend"
        return events

    def _confirmed(self, miner: str, pending: _Pending, sample: MinerSample, now: float,
                   mode: ControlMode) -> ActionEvent:
        del self._pending[miner]
        if pending.action == "sleep" and miner in self.slept:
            # From when it is asleep, and at what uptime: a later poll with less uptime than that, or a boot
            # after it, shows a reboot (collector/sinks/curtailment_control._why_not_an_operator).
            self.slept[miner] = now
            if sample.uptime_s is not None:
                self.slept_uptime[miner] = sample.uptime_s
            else:
                self.slept_uptime.pop(miner, None)
        if pending.action == "wake":
            self._forget_sleep(miner)
        if pending.action == "mode" and self.moved.get(miner) == pending.want:
            del self.moved[miner]  # back where it was before control moved it
            self.moved_to.pop(miner, None)
        return ActionEvent(_utc(now), miner, pending.action, "confirmed", pending.reason, _shows(sample),
                           pending.command, pending.host, pending.kw, pending.attempt, mode.value)

    def _restored(self, miner: str, pending: _Pending, sample: MinerSample | None, now: float,
                  mode: ControlMode) -> list[ActionEvent]:
        """An action in flight when the collector last stopped (a kill, a power cut: no poll confirmed it), at the
        miner's first usable poll since: confirmed, or unconfirmed, which costs no backoff (it may never have
        left): a sleep or lowered mode that does not show is not control's; the plan decides the miner anew."""
        if not _usable(sample):
            return []  # (its first reading decides)
        assert sample is not None
        if _took(pending, sample):
            return [self._confirmed(miner, pending, sample, now, mode)]
        del self._pending[miner]
        self._disown(miner, pending)
        return [ActionEvent(_utc(now), miner, pending.action, "unconfirmed", pending.reason,
                            f"in flight when the collector stopped; the first poll since shows {_shows(sample)}: not "
                            "done, and decided anew (no backoff)", pending.command, pending.host, pending.kw,
                            pending.attempt, mode.value)]

    def _taken_back(self, samples: dict[str, MinerSample], now: float, mode: ControlMode) -> list[ActionEvent]:
        """Control owns a change only while the miner stays as control left it. A poll showing a miner it
        slept awake, or one whose mode it set in another mode, with no action of control's on it pending (its
        own sleep not yet confirmed, its wake or restore under way), shows an operator took it back: control
        lets it go, and will neither wake it (should the operator stop it later) nor restore its mode.
        Unless the hand was not an operator's: a miner that rebooted since it was slept (a power loss: soft-off is
        not kept through one), or one read back from a state file that did not say what was in flight, is let go
        without the operator's backoff, and the plan decides it anew (it sleeps it again while it still wants it
        asleep, within the limits)."""
        events, pending, soft_off = [], self._pending, MinerState.SOFT_OFF
        released: dict[str, list[str]] = {}  # why -> miners (one line a cycle: a power cut is hundreds of them)
        # (most of a spike's slept miners read soft-off, cycle after cycle: passed over in one comparison)
        for miner in [m for m in self.slept if (s := samples.get(m)) is not None and s.state is not soft_off]:
            sample = samples[miner]
            if miner not in pending and not _asleep(sample) and _usable(sample):
                why = self._why_not_an_operator(miner, sample, now)
                self._forget_sleep(miner)
                if why is None:
                    events.append(self._let_go(miner, sample, "sleep", "asleep", "wake it", now, mode))
                else:
                    events.append(self._release(miner, sample, "sleep", why, now, mode))
                    released.setdefault(why, []).append(miner)
        for miner, set_mode in [(m, to) for m, to in self.moved_to.items() if m not in pending]:
            sample = samples.get(miner)
            if sample is not None and sample.work_mode not in (None, set_mode) and _usable(sample):
                del self.moved_to[miner]
                before = self.moved.pop(miner, None)
                if miner in self._unwatched:
                    events.append(self._release(miner, sample, "mode", UNWATCHED, now, mode))
                    released.setdefault(UNWATCHED, []).append(miner)
                else:
                    events.append(self._let_go(miner, sample, "mode", f"in work mode {set_mode}",
                                               f"restore mode {before}", now, mode))
        if self._unwatched:  # judged at its first usable poll; watched from then on
            self._unwatched = {m for m in self._unwatched if not _usable(samples.get(m))}
        for why, miners in released.items():
            log.warning("curtailment control: %d miner(s) no longer as it left them, not by an operator: %s. Let go "
                        "without the operator backoff; the plan decides them anew (%s%s)", len(miners), why,
                        ", ".join(miners[:5]), ", ..." if len(miners) > 5 else "")
        return events

    def _why_not_an_operator(self, miner: str, sample: MinerSample, now: float) -> str | None:
        """Why a miner control slept, read awake with nothing of control's under way, was not woken by an
        operator, or None. Rebooted: its uptime is less than at the poll that confirmed the sleep (its own clock),
        or it booted after that poll (the wall clock: now less its uptime); soft-off does not survive a power
        loss, nor a reboot. Avalon's Elapsed counts through soft-off and soft-on (cgminer keeps running)."""
        uptime = sample.uptime_s
        if uptime is not None:
            before = self.slept_uptime.get(miner)
            booted = self.slept[miner] - (before or 0)
            if (before is not None and uptime < before) or now - uptime > booted + REBOOT_SLACK_S:
                return REBOOTED
        return UNWATCHED if miner in self._unwatched else None

    def _release(self, miner: str, sample: MinerSample, action: str, why: str, now: float,
                 mode: ControlMode) -> ActionEvent:
        """A change of control's undone by something other than an operator's hand: let go (logged once a cycle,
        counted), no backoff."""
        uptime = f", uptime {sample.uptime_s} s" if sample.uptime_s is not None else ""
        detail = (f"the poll shows {_shows(sample)}{uptime}: control lets its {'sleep' if action == 'sleep' else 'mode'}"
                  " go, with no operator backoff; the plan decides the miner anew")
        return ActionEvent(_utc(now), miner, action, "released", why, detail, "", sample.host, 0.0, 0, mode.value)

    def _let_go(self, miner: str, sample: MinerSample, action: str, left: str, undo: str, now: float,
                mode: ControlMode) -> ActionEvent:
        # The operator's hand holds: control leaves the miner alone for the backoff, as after a failed change
        # (else, the price still saying sleep, it slept again the miner the operator had just woken).
        self.failed[miner] = now + self.config.failed_backoff_s
        detail = (f"the poll shows {_shows(sample)}, not {left} as control left it: it will not {undo}, and "
                  f"leaves it alone for {self.config.failed_backoff_s:g} s")
        log.warning("curtailment control: an operator took %s (%s) back: %s", miner, sample.host, detail)
        return ActionEvent(_utc(now), miner, action, "taken_back", "an operator took it back", detail, "",
                           sample.host, 0.0, 0, mode.value)

    def _forget_sleep(self, miner: str) -> None:
        self.slept.pop(miner, None)
        self.slept_uptime.pop(miner, None)

    def _disown(self, miner: str, pending: _Pending) -> None:
        """Control's sleep or lowered mode did not take (refused, or the polls never showed it): the miner is
        not control's to wake or restore. Its own wake or restore failing leaves the change control's."""
        if pending.action == "sleep":
            self._forget_sleep(miner)
        elif pending.action == "mode" and self.moved_to.get(miner) == pending.want:
            self.moved.pop(miner, None)
            self.moved_to.pop(miner, None)

    def _resend(self, plan: CurtailmentPlan, samples: dict[str, MinerSample], now: float, mode: ControlMode,
                budget: int) -> list[ActionEvent]:
        events = []
        advice = None
        for miner, pending in list(self._pending.items()):
            if pending.step != "resend":
                continue
            sample = samples.get(miner)
            if sample is None or sample.state in (MinerState.OFFLINE, MinerState.ERROR) or disputed(sample):
                pending.step = "sent"  # wait for a reading of it (one whose id is not in dispute)
                continue
            if advice is None:
                advice = {a.miner: a for a in plan.advice}
            wanted, said = plan.keys.get(miner), advice.get(miner)
            if wanted is not None and (wanted != pending.want or (wanted == SLEEP and said is not None and said.held)):
                # The plan no longer wants it (a target ended, the price fell): a retry would act on a past reason
                # (trial Y: a sleep sent twice after its demand-response window, citing it). A miner the plan left
                # out this cycle (read idle after a soft-off it half took) is retried as before.
                del self._pending[miner]
                self._disown(miner, pending)  # (it did not take)
                events.append(ActionEvent(_utc(now), miner, pending.action, "skipped", pending.reason,
                                          "not sent again: the plan no longer wants it", pending.command, sample.host,
                                          pending.kw, pending.attempt, mode.value))
                continue
            if not self.allowlist.allows(sample):  # it moved (DHCP) to an address the allowlist does not name
                del self._pending[miner]
                self._disown(miner, pending)  # (unconfirmed: it did not take)
                events.append(ActionEvent(_utc(now), miner, pending.action, "skipped", pending.reason,
                                          f"not sent again: it answers at {sample.host}:{sample.port} now, which "
                                          "the allowlist does not name", pending.command, sample.host, pending.kw,
                                          pending.attempt, mode.value))
                continue
            if budget <= 0:
                pending.step = "sent"  # no sends left this cycle: the next poll may confirm it still
                continue
            budget -= 1
            del self._pending[miner]
            events.append(self._start(sample, pending.action, pending.want, pending.reason, pending.kw,
                                      pending.attempt + 1, now, mode))
        return events

    # -- the state file -------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = {"version": STATE_VERSION, "slept": self.slept, "moved": self.moved, "moved_to": self.moved_to,
                "failed": self.failed, "sent": list(self.sent), "slept_uptime": self.slept_uptime,
                "pending": {miner: [p.action, p.want, p.reason[:MAX_PENDING_TEXT], p.command[:MAX_PENDING_TEXT],
                                    p.host[:MAX_PENDING_TEXT], p.kw, p.attempt] for miner, p in self._pending.items()}}
        content = orjson.dumps(data)
        if content == self._saved:
            return  # (most cycles act on nothing: the file is written, and synced, only when it changes)
        try:
            durable_file.replace_synced(self.state_path, content)
            self._saved = content
        except OSError as e:
            log.error("cannot save curtailment control state to %s: %s", self.state_path, e)

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        now = self._clock()
        try:
            data = orjson.loads(read_capped(path, MAX_STATE_BYTES))
            slept, moved, moved_to, failed, sent = _checked_state(data)
            slept_uptime, pending = _checked_uptimes(data, slept), _checked_pending(data)
        except Exception as e:  # whatever is in the file, the service starts: nothing will be woken
            try:
                kept = f"set aside as {durable_file.set_aside(path)}"
            except OSError as moving:
                kept = f"not set aside ({moving.strerror or moving})"
            log.error("curtailment control state %s is unusable (%s): %s; miners it had put to sleep are not woken "
                      "by it (wake them by hand)", path, str(e)[:300], kept)
            return
        self.slept, self.moved, self.failed, self.sent = slept, moved, failed, deque(sorted(sent))
        self.moved_to = {miner: to for miner, to in moved_to.items() if miner in moved}
        self.slept_uptime, self._pending = slept_uptime, pending
        if "pending" not in data:  # (saved before control kept what it had in flight)
            self._unwatched = set(slept) | set(self.moved_to)
        # Dated ahead of the clock, however far: carried on from now, as every state file is. The clock was stepped
        # back since, or is behind now (a box that lost its time in a power cut, until NTP answers): refusing the
        # file would leave the miners control slept asleep for good.
        latest = max((*sent, *slept.values()), default=now)
        if latest > now:
            clock.kept_ahead(f"curtailment control state {path}", _utc(latest), _utc(now))  # (logs how far)
            self._carry_back(latest - now)
        # No backoff runs longer than the config's from now (a file saved with the clock ahead, or hostile).
        longest = now + self.config.failed_backoff_s
        self.failed = {miner: min(until, longest) for miner, until in self.failed.items()}
        self.sent = deque(t for t in self.sent if t > now - HOUR_S)


def _asleep(sample: MinerSample) -> bool:
    """Soft-off; for makes read through pyasic also idle (pyasic reads a sleeping Antminer as not mining)."""
    return sample.state is MinerState.SOFT_OFF or (sample.state is MinerState.IDLE
                                                   and sample.source is not SampleSource.AVALON)


def _took(pending: _Pending, sample: MinerSample) -> bool:
    """Whether a poll (not offline) shows the change `pending` asked for."""
    if pending.want == SLEEP:
        return _asleep(sample)
    if pending.action == "wake":
        # An Avalon ramping after soft-on reads idle (GHSspd 0) for a while: awake all the same.
        return (sample.state is not MinerState.SOFT_OFF if sample.source is SampleSource.AVALON
                else sample.state is MinerState.MINING)
    return sample.work_mode == pending.want


def _usable(sample: MinerSample | None) -> bool:
    """A reading that says what the miner is doing (control never acts on MQTT devices)."""
    return (sample is not None and sample.state not in (MinerState.OFFLINE, MinerState.ERROR)
            and sample.source is not SampleSource.MQTT)


def _shows(sample: MinerSample | None) -> str:
    if sample is None:
        return "no reading"
    mode = f", work mode {sample.work_mode}" if sample.work_mode is not None else ""
    return f"state {sample.state.value}{mode}"


def _checked_state(data: Any) -> tuple[dict[str, float], dict[str, str], dict[str, str], dict[str, float],
                                     list[float]]:
    if newer := durable_file.newer_version(data, STATE_VERSION, "control state"):
        raise ValueError(newer)
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} control state")
    out = []
    for name in ("slept", "moved", "moved_to", "failed"):
        book = data.get(name, {} if name == "moved_to" else None)  # (moved_to: not in files saved before it)
        if not isinstance(book, dict) or len(book) > MAX_TRACKED:
            raise ValueError(f"{name} is not an object of at most {MAX_TRACKED} miners")
        for miner, value in book.items():
            if not miner or len(miner) > 256:
                raise ValueError(f"{name}: miner id {miner[:40]!r} is empty or too long")
            if name in ("moved", "moved_to"):
                if not isinstance(value, str) or not value or len(value) > 64:
                    raise ValueError(f"{name}[{miner[:40]!r}] is not a work mode")
            elif not _time(value):
                raise ValueError(f"{name}[{miner[:40]!r}] = {str(value)[:40]!r} is not a time")
        out.append(book)
    sent = data.get("sent")
    if not isinstance(sent, list) or len(sent) > 1_000_000 or not all(_time(t) for t in sent):
        raise ValueError("sent is not a list of times")
    return out[0], out[1], out[2], out[3], sent


def _checked_uptimes(data: dict, slept: dict[str, float]) -> dict[str, int]:
    """The uptimes at which control's sleeps were confirmed (none in files saved before it kept them)."""
    book = data.get("slept_uptime", {})
    if not isinstance(book, dict) or len(book) > MAX_TRACKED:
        raise ValueError(f"slept_uptime is not an object of at most {MAX_TRACKED} miners")
    for miner, uptime in book.items():
        if (miner not in slept or not isinstance(uptime, int) or isinstance(uptime, bool)
                or not 0 <= uptime <= MAX_UPTIME_S):
            raise ValueError(f"slept_uptime[{miner[:40]!r}] = {str(uptime)[:40]!r} is not the uptime of a miner slept")
    return book


def _checked_pending(data: dict) -> dict[str, _Pending]:
    """What control had sent and no poll had confirmed when the state was saved (none in files saved before it
    kept them): each restored, for its miner's first usable poll to confirm or not."""
    book = data.get("pending", {})
    if not isinstance(book, dict) or len(book) > MAX_TRACKED:
        raise ValueError(f"pending is not an object of at most {MAX_TRACKED} miners")
    out = {}
    for miner, saved in book.items():
        what = f"pending[{miner[:40]!r}]"
        if not miner or len(miner) > 256 or not isinstance(saved, list) or len(saved) != 7:
            raise ValueError(f"{what} is not a miner's action")
        action, want, reason, command, host, kw, attempt = saved
        if action not in ACTIONS or not isinstance(want, str) or len(want) > 64 or (want == SLEEP) != (action == "sleep"):
            raise ValueError(f"{what}: {str(action)[:20]!r} to {str(want)[:40]!r} is not an action control takes")
        if not all(isinstance(text, str) and len(text) <= MAX_PENDING_TEXT for text in (reason, command, host)):
            raise ValueError(f"{what}: its reason, command and host are not texts of at most {MAX_PENDING_TEXT}")
        if (not isinstance(kw, (int, float)) or isinstance(kw, bool) or not math.isfinite(kw)
                or not isinstance(attempt, int) or isinstance(attempt, bool) or not 1 <= attempt <= 1000):
            raise ValueError(f"{what}: kW {str(kw)[:20]!r}, attempt {str(attempt)[:20]!r}")
        out[miner] = _Pending(action, want, reason, command, host, float(kw), attempt, "restored")
    return out


def _time(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value < _LATEST_S)

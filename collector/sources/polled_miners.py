"""One poll cycle over the whole fleet: every known miner, bounded concurrency,
a hard per-miner timeout, a deadline for the cycle, one timestamp for the cycle.

A hung or slow miner costs at most its own timeout and never delays the
others; a miner that stops answering yields offline samples, not silence.

What answers at an address is found out beside the cycle, never inside it
(`discover`, run by the service in the background): an address joins the
polled set once identified, and until then yields a cheap offline sample
("not identified yet") each cycle. Addresses that keep failing identification
are retried with exponential backoff; a known miner that stops answering is
polled a few more times, then handed back to identification (its offline samples keep its id and say
"identifying it again"). Such a miner is the likeliest to come back (a power cut, a switch reboot) and the one
the operator watches: while nothing accepts a connection at its address it is looked for again after each
identify_backoff, at a connect's cost (~0.2 ms of CPU, pyasic's detection ~2 ms; docs/benchmarks.md), and
identified as soon as something does; the backoff doubling up to identify_backoff_max_s counts only
identifications that failed (trial R, finding 2: up to 296 s offline after a 4-minute outage before).
An address whose native reader finds another make answering there (a unit swapped at the same address:
collector.sources.rpc_reader) is handed back at once, with a warning; its samples stop carrying the old unit's id.

A miner that moves (DHCP) is one MAC that stops answering at one target and answers at another: once
the new one shows it (identified or polled), the old target, which does not answer, no longer carries
that id (its offline samples are stored under its host:port), and if a range scan or a DNS name
brought it, it is no longer polled (a re-scan finds it again if a miner answers there). A listed
address is polled whatever answers there. A DNS name that has not resolved to an address yet yields
an offline sample under `name:port` each cycle, saying so.

Names are re-resolved every rescan_interval_s, and so is a range once it settles. After a power cut the
collector is usually back before the miners: a range scanned at the start found none, and its fleet stayed
unpolled, not even offline, until the next scan 300 s later (trial M, M1). So a range whose scan found new
miners (a fleet comes up over a minute or two) or left it without any is scanned again soon: after
identify_backoff, doubling with each scan in a row that finds none new, up to rescan_interval_s (`_scan_wait`);
a range that is really empty costs a handful of scans, then one every rescan_interval_s. Never sooner than its
last scan took: an address that refuses costs ~2.5 ms of CPU in the scan (pyasic's detection; docs/benchmarks.md),
a /16 of them ~150 s on this event loop, so a range is scanned at most half the time. An address a scan finds
answering but cannot identify (identify.AnswersUnidentified) is named in the scan's warning and joins the targets
unidentified: offline ("not identified yet: <why>") each cycle, identified again with backoff, never silently absent.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import random
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

from collector.sources import avalon, pyasic_makes
from collector.sources import identify as discovery
from collector.sources.targets import Spec, Target, in_shard, parse_specs, range_targets, resolve_name
from models import CollectorConfig, MinerSample, MinerState, SampleSource
from models.sample import MAX_TEXT_CHARS

if TYPE_CHECKING:
    from collector.cycle import Cycle

log = logging.getLogger(__name__)

# Offline polls in a row before a known miner leaves the polled set for background identification: a
# blip or a reboot's first minute costs nothing, a miner that stays away stops costing a timeout a cycle.
OFFLINE_POLLS_BEFORE_REIDENTIFY = 3
# A miner swapped at an address shows a new MAC once; one whose MAC changes this often within MAC_CHANGE_WINDOW_S
# is no MAC at all (firmware garbage, a hostile unit): its samples go under its address, else every cycle
# would be a new miner in the books and a new series in InfluxDB.
MAC_CHANGES_TRUSTED = 2
MAC_CHANGE_WINDOW_S = 3600.0

# Identification outcomes are summed up in at most one log line of each kind per this many seconds:
# a thousand failing addresses cost a line a minute, not a line each per attempt.
LOG_SUMMARY_EVERY_S = 60.0
LOG_EXAMPLES = 3

_UNDER_WAY = "identification under way"


# The source of a miner's samples, offline ones included, by the driver that reads it.
_SOURCES = {discovery.AVALON: SampleSource.AVALON, discovery.PYASIC: SampleSource.PYASIC,
            discovery.ANTMINER: SampleSource.ANTMINER, discovery.WHATSMINER: SampleSource.WHATSMINER,
            discovery.BRAIINS: SampleSource.BRAIINS}


@dataclass(slots=True)
class _Known:
    driver: str | None = None  # identify's AVALON | PYASIC | a native reader's name; None: identification's turn
    pyasic_miner: Any = None
    reader: Any = None  # a native reader's per-miner object (identify.NATIVE)
    miner_id: str | None = None  # kept so an offline miner keeps its MAC-based id
    # ... and its make and model as last read: its offline samples carry them (one series per miner in InfluxDB,
    # whose panels group by model; its capex keyed by model goes on depreciating)
    make: str | None = None
    model: str | None = None
    error_logged: bool = False  # an unexpected driver error's traceback was logged for this miner
    source: SampleSource = SampleSource.AVALON  # of its offline samples: the driver that last read it
    offline_polls: int = 0  # in a row, while polled
    failed_identifications: int = 0  # in a row: the backoff's exponent
    retry_at: float = 0.0  # monotonic time its next identification is due (the heap entry that counts)
    identifying: bool = False
    reason: str = ""  # why it is not polled, for its offline samples
    last_mac: str | None = None  # the MAC its last reading showed
    other_units: int = 0  # in a row: readers that found another make answering here (identification's backoff)
    mac_changes: list[float] | None = None  # monotonic times its MAC changed, within MAC_CHANGE_WINDOW_S

    @property
    def live(self) -> bool:
        """Identified, and its last poll had an answer."""
        return self.driver is not None and self.offline_polls == 0


@dataclass(slots=True)
class _Rescan:
    """When a DNS name or CIDR range is resolved or scanned again."""

    at: float = float("-inf")  # monotonic; -inf: at once
    quiet: int = 0  # scans of a range in a row that found no new miner: the doubling's exponent
    told_empty: bool = False  # the range's "no miner answers yet" line was logged (again once it has a miner)


@dataclass
class PollResult:
    """One poll of every target, in target order."""

    samples: list[MinerSample]  # then one for each DNS name that resolves to no address
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)  # per miner, in the order they answered
    past_deadline: int = 0  # miners that had not answered when the cycle's deadline passed

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if s.state in (MinerState.OFFLINE, MinerState.ERROR))


class _Summary:
    """Outcomes of identification, logged as counts with a few examples: the first as they come, then
    at most one line of each kind (found, failed) per LOG_SUMMARY_EVERY_S."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}  # address -> what it is
        self.failed: dict[str, str] = {}  # address -> why not
        self._logged = {"found": float("-inf"), "failed": float("-inf")}

    def flush(self, now: float, backoff_max_s: float, *, final: bool = False) -> float | None:
        """Log what piled up where it is time (all of it if `final`); return when to call again
        (None: nothing waits)."""
        wake: float | None = None
        for kind, items in (("found", self.found), ("failed", self.failed)):
            if not items:
                continue
            due = self._logged[kind] + LOG_SUMMARY_EVERY_S
            if now < due and not final:
                wake = due if wake is None else min(wake, due)
                continue
            self._logged[kind] = now
            if kind == "found":
                log.info("identified %d address(es): %s", len(items),
                         _examples([f"{address} ({what})" for address, what in items.items()]))
            else:
                log.warning("%d address(es) did not identify as a miner; each is tried again with backoff (at most "
                            "every %g s) and reported offline meanwhile: %s", len(items), backoff_max_s,
                            _examples(list(items.values())))
            items.clear()
        return wake


def _examples(items: list[str]) -> str:
    shown = "; ".join(items[:LOG_EXAMPLES])
    return shown if len(items) <= LOG_EXAMPLES else f"{shown}; and {len(items) - LOG_EXAMPLES} more"


@dataclass
class PolledMiners:
    """The source of the miners this collector polls (collector.sources.Source)."""

    config: CollectorConfig
    specs: list[Spec] = field(init=False)
    targets: set[Target] = field(init=False)
    _known: dict[Target, _Known] = field(init=False, default_factory=dict)
    _discovering: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._pyasic_gate = asyncio.Semaphore(self.config.pyasic_concurrency)
        # Identification has its own gates: its pyasic detections must not take the poll's slots.
        self._identify_gates = discovery.Gates.of(self.config.identify_concurrency, self.config.pyasic_concurrency)
        self._due: list[tuple[float, Target]] = []  # (retry_at, target): identification's queue, soonest first
        self._wake: asyncio.Event | None = None  # set while `discover` runs: wakes it for new work
        self._summary = _Summary()
        self._resume_at: Target | None = None  # where a cycle cut short by its deadline stopped
        self._stragglers: set[asyncio.Task[None]] = set()
        self._handed_back: list[str] = []  # addresses handed back to identification this cycle, for one log line
        self._carriers: dict[str, Target] = {}  # miner id -> the target that last took it (identified or read)
        self._moved: set[Target] = set()  # found targets whose miner answers elsewhere: forgotten before the next cycle
        self._resolved_names: set[Spec] = set()  # DNS names that resolved to an address at least once
        self._unresolved: dict[Spec, Target] = {}  # (name, port) of names that never resolved: an offline sample each
        self.specs = parse_specs(self.config.miners)
        self._rescans = {spec: _Rescan() for spec in self.specs if spec.kind != "address"}
        self.shard = self.config.shard_k_n
        self.targets = set()
        self._listed: set[Target] = set()  # polled whatever answers there (never forgotten)
        for spec in self.specs:
            if spec.kind == "address":
                self._listed.add(Target(spec.text, spec.port))
                self._add(Target(spec.text, spec.port))

    def expect_where_answered(self, units: dict[str, tuple[str, str | None]]) -> None:
        """Before the first cycle: each address inside a configured range where the site's history last read a
        unit (address -> its id and model: collector.stages.health) is polled as one whose unit stopped
        answering: reported offline under its id, looked for again, until something answers there (or the
        unit answers elsewhere: `_lost_id`). A range's scan passes over an address that does not answer: a
        unit down at a (re)start was missing from the repair queue, "0 problems" (trial ZC, H1)."""
        ranges = [(ipaddress.ip_network(s.text), s.port) for s in self.specs if s.kind == "range"]
        for address, (miner_id, model) in units.items():
            host, _, port = address.rpartition(":")
            try:
                ip, number = ipaddress.ip_address(host), int(port)
            except ValueError:  # (a name, or no port: not a range's)
                continue
            target = Target(host, number)
            if target in self.targets or not any(ip in net and number == at for net, at in ranges):
                continue
            self._add(target)
            if target in self.targets:  # (in this collector's shard)
                known = self._known[target]
                known.model = model
                self._took_id(target, known, miner_id)

    async def start(self) -> None:
        """Before the first cycle: import pyasic if any address may need its detection (its import
        blocks the event loop ~1 s; inside a cycle that would cost its deadline), start identifying in
        the background (`discover`), and give its first round a cycle's deadline so that a (re)start
        does not report the whole fleet offline for a cycle, and never longer."""
        if any(s.kind != "address" for s in self.specs) or discovery.may_need_pyasic(list(self.targets)):
            discovery.load_pyasic()
        ready = asyncio.Event()
        self._discovering = asyncio.create_task(self.discover(ready))
        self._discovering.add_done_callback(_discovery_ended)
        waiting = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait([waiting, self._discovering], timeout=self.config.cycle_deadline,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    async def close(self) -> None:
        if self._discovering is not None:
            self._discovering.cancel()
            await asyncio.gather(self._discovering, return_exceptions=True)  # a failure was logged already
            self._discovering = None

    async def announce(self, cycle: Cycle) -> None:
        """Every target yields a sample each cycle, each carrying its share of the fixed costs."""
        self._forget_moved()
        for target in self.targets:
            cycle.expect(self._known[target].miner_id or target.address)
        for name in self._unresolved.values():
            cycle.expect(name.address)

    async def collect(self, cycle: Cycle) -> None:
        result = await self.cycle(cycle.ts, on_sample=cycle.add)
        cycle.poll_s, cycle.past_deadline, cycle.latencies_s = result.duration_s, result.past_deadline, result.latencies_s
        if result.past_deadline:
            log.warning("%d miner(s) had not answered by the cycle deadline (%g s) and are offline this cycle",
                        result.past_deadline, self.config.cycle_deadline)

    @property
    def needs_refresh(self) -> bool:
        """A DNS name or range is due to be resolved or scanned again."""
        at = self._next_rescan_at
        return at is not None and at <= time.monotonic()

    @property
    def _next_rescan_at(self) -> float | None:
        return min((r.at for r in self._rescans.values()), default=None)

    @property
    def unidentified(self) -> list[Target]:
        """Targets not in the polled set (never identified, or handed back after failing polls)."""
        return sorted(t for t in self.targets if self._known[t].driver is None)

    def _add(self, target: Target) -> None:
        """A new address to poll: it joins the polled set once identified."""
        if target in self.targets or not in_shard(target, self.shard):
            return
        self.targets.add(target)
        known = self._known.setdefault(target, _Known())
        if known.driver is None:
            known.reason = f"{target.address}: {_UNDER_WAY}"
            self._schedule(target, known, time.monotonic())

    def _schedule(self, target: Target, known: _Known, when: float) -> None:
        known.retry_at = when
        heapq.heappush(self._due, (when, target))
        if self._wake is not None:
            self._wake.set()

    async def refresh(self, on_progress=None) -> None:
        """Resolve DNS names, scan ranges, and identify every address not identified yet, now: what
        a one-shot poll (`hashfleet poll`) does before its cycle. The service does the same work in
        the background instead (`discover`), so that it never holds up a cycle."""
        # After `start` (advise, health): what its first round scanned and tried is not done twice, a range's
        # silent addresses costing their timeouts again and each failure said twice (trial ZB, L8).
        await self._rescan(on_progress, due_only=True)
        now = time.monotonic()
        pending = [(t, k) for t in sorted(self.targets)
                   if (k := self._known[t]).driver is None and not k.identifying and k.retry_at <= now]
        await asyncio.gather(*(self._identify(t, k) for t, k in pending))

    async def _rescan(self, on_progress=None, *, due_only: bool = False) -> None:
        """Re-resolve DNS names and re-scan CIDR ranges (with `due_only`, those whose time has come); new
        miners join as they are found, known ones stay (but for an old address of a miner that moved: `_lost_id`)."""
        now = time.monotonic()
        for spec, rescan in self._rescans.items():
            if due_only and rescan.at > now:
                continue
            wait = self.config.rescan_interval_s
            try:
                if spec.kind == "name":
                    await self._resolve(spec)
                else:
                    wait = await self._scan(spec, rescan, on_progress)
            except Exception as e:  # one entry that fails costs that entry, not the ranges and names after it
                log.error("re-scanning %s failed: %s: %s", spec.text, type(e).__name__, e)
            rescan.at = time.monotonic() + wait

    async def _resolve(self, spec: Spec) -> None:
        found = await resolve_name(spec)
        if found:
            self._resolved_names.add(spec)
            self._unresolved.pop(spec, None)
        else:
            log.warning("%s: DNS name resolves to no address", spec.text)
            # Once resolved, its addresses stay polled (with their last id) should it stop resolving.
            name = Target(spec.text, spec.port)
            # (a name too long for a sample's id is the log line alone)
            if spec not in self._resolved_names and in_shard(name, self.shard) and len(name.address) <= MAX_TEXT_CHARS:
                self._unresolved[spec] = name
        for target in found:
            self._add(target)

    async def _scan(self, spec: Spec, rescan: _Rescan, on_progress) -> float:
        """Scan a range's addresses not polled yet; returns the wait before its next scan (`_scan_wait`)."""
        addresses = [t for t in range_targets(spec) if in_shard(t, self.shard)]
        fresh = [t for t in addresses if t not in self.targets]
        began = time.monotonic()
        unidentified: list[str] = []

        def answers_unidentified(target: Target, why: str) -> None:
            unidentified.append(target.address)
            self._unidentified(target, why)

        # The poll's timeout_s, not less: a miner that answers within it must be found (trial Q, L3).
        identities = await discovery.scan(
            fresh, concurrency=self.config.concurrency, timeout_s=self.config.timeout_s,
            detect_concurrency=self.config.pyasic_concurrency, on_progress=on_progress, on_found=self._found,
            readers=self.config.readers, on_unidentified=answers_unidentified)
        took = time.monotonic() - began
        rescan.quiet = 0 if identities else rescan.quiet + 1
        wait = self._scan_wait(rescan.quiet, took)
        log.debug("%s: scanned %d address(es) in %.1f s, %d new miner(s); next scan in %.1f s", spec.text, len(fresh),
                  took, len(identities), wait)
        if identities or wait >= self.config.rescan_interval_s:  # (the quick scans that find none: the line below)
            log.info("%s: %d new miner(s) found (%d polled in the range)", spec.text, len(identities),
                     sum(t in self.targets and self._known[t].driver is not None for t in addresses))
        if unidentified:
            log.warning("%s: %d address(es) answer but were not identified: %s; reported offline (not identified "
                        "yet) and identified again with backoff", spec.text, len(unidentified), _examples(unidentified))
        if any(t in self.targets for t in addresses):  # (a miner found now is in targets already)
            rescan.told_empty = False
        elif not rescan.told_empty:
            rescan.told_empty = True
            log.info("%s: no miner answers in the range yet (a site coming back from a power cut?): scanned again in "
                     "%.0f s, the wait doubling up to rescan_interval_s (%g s) while none does", spec.text, wait,
                     self.config.rescan_interval_s)
        return wait

    def _scan_wait(self, quiet: int, took: float) -> float:
        """Wait before a range's next scan: after `quiet` scans in a row that found no new miner, identify_backoff
        doubled that many times (after one that found some: the backoff itself), up to rescan_interval_s; and
        never less than the last scan `took`."""
        doubled = self.config.identify_backoff * 2.0 ** min(quiet, 64)
        return min(self.config.rescan_interval_s, max(took, doubled))

    def _found(self, identity: discovery.Identity) -> None:
        """A range scan found a miner: polled from the next cycle on."""
        target = identity.target
        self.targets.add(target)
        known = self._known.setdefault(target, _Known())
        if known.driver is None:
            self._identified(known, identity)

    def _unidentified(self, target: Target, why: str) -> None:
        """A range scan found an address that answers but was not identified: counted from the next cycle on
        (offline, saying why) and identified again in the background, with backoff as after a failure."""
        self.targets.add(target)
        known = self._known.setdefault(target, _Known())
        if known.driver is not None or known.identifying:
            return
        known.failed_identifications += 1
        known.reason = why
        self._summary.failed[target.address] = why
        self._schedule(target, known, time.monotonic() + self._backoff_s(known.failed_identifications))

    def _identified(self, known: _Known, identity: discovery.Identity) -> None:
        known.driver, known.pyasic_miner, known.reader = identity.driver, identity.pyasic_miner, identity.reader
        known.source = _SOURCES.get(identity.driver, SampleSource.PYASIC)
        known.failed_identifications = known.offline_polls = 0
        known.reason = ""
        if not identity.model_told:
            # (trial ZF: a stock Antminer of a model pyasic does not know was read without MAC, temperatures, fans
            # or boards, and nothing said so)
            log.warning("%s: identified as %s without its model (pyasic knows none of that name, or could not read "
                        "it just then): read through pyasic's generic class for the make, which reads less (often no "
                        "MAC, temperatures, fans or boards)", identity.target.address, identity.make or "a miner")
        if identity.miner_id and identity.miner_id != known.miner_id:
            # Offline before its first poll, it still carries its MAC-based id.
            self._took_id(identity.target, known, identity.miner_id)

    async def _identify(self, target: Target, known: _Known) -> None:
        """Identify one address (never raises): it joins the polled set, or its next try is scheduled."""
        known.identifying = True
        try:
            # A miner read here before (handed back) is the likeliest to come back, and watched: while nothing
            # accepts a connection it is looked for again after identify_backoff (x 1-1.5), at a connect's cost,
            # not pyasic's detection's; identified as soon as something does (trial R, finding 2).
            listens = not known.miner_id or await discovery.listening(target, self.config.timeout_s,
                                                                      self._identify_gates)
            outcome = await discovery.attempt(target, self.config.timeout_s, self._identify_gates,
                                              self.config.readers) if listens else None
        finally:
            known.identifying = False
        if known.driver is not None or self._known.get(target) is not known:  # found by a scan, or forgotten, meanwhile
            return
        if outcome is None:  # no failure counted: the backoff is for what answers and is not identified
            known.reason = f"{target.address}: nothing accepts a connection (looked for every " \
                           f"{self.config.identify_backoff:g} s)"
            # Spread (a site's power cut hands back thousands at once), never sooner: each look costs a connect.
            self._schedule(target, known, time.monotonic() + self.config.identify_backoff * random.uniform(1.0, 1.5))
            return
        if isinstance(outcome, discovery.Identity) and not outcome.model_told and known.model is not None:
            # Read as a known model before: a make's bare class now is a reply it could not read just then, not a
            # better answer (trial ZF: a Bitaxe identified again while its replies were broken was read with no
            # temperatures, fans or boards until a restart). Tried again, with backoff, offline meanwhile saying why
            # (a unit of a model pyasic does not know swapped in here is read once the collector restarts).
            outcome = (f"{target.address}: answers as {outcome.make or 'a miner'} but did not tell its model this "
                       f"time (read as {known.model} before): identified again")
        if isinstance(outcome, discovery.Identity):
            self._identified(known, outcome)
            label = " ".join(x for x in (outcome.make, outcome.model) if x) or outcome.driver
            self._summary.found[target.address] = label
            self._summary.failed.pop(target.address, None)
            return
        known.failed_identifications += 1
        known.reason = outcome
        self._summary.failed[target.address] = outcome
        self._schedule(target, known, time.monotonic() + self._backoff_s(known.failed_identifications))

    def _backoff_s(self, failures: int) -> float:
        """Wait before the next try after `failures` in a row: doubling from identify_backoff up to
        identify_backoff_max_s, times a random 0.5-1 so that addresses that failed together spread out."""
        base, cap = self.config.identify_backoff, self.config.identify_backoff_max_s
        return min(cap, base * 2.0 ** min(failures - 1, 64)) * random.uniform(0.5, 1.0)

    async def discover(self, ready: asyncio.Event | None = None) -> None:
        """The service's background work, until cancelled: re-scan ranges and re-resolve names when due
        (every rescan_interval_s, a range sooner while it has no miner or is finding new ones: `_scan`),
        identify each address when its turn comes. `ready` is set once the first
        round is over (every address tried once, ranges scanned once)."""
        self._wake = wake = asyncio.Event()
        running: set[asyncio.Task[None]] = set()
        rescan: asyncio.Task[None] | None = None
        first_round = True

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            wake.set()

        try:
            while True:
                now = time.monotonic()
                if rescan is not None and rescan.done():
                    if not rescan.cancelled() and (error := rescan.exception()) is not None:
                        log.error("re-scanning ranges and names failed: %s: %s", type(error).__name__, error)
                    rescan = None
                if rescan is None and self.needs_refresh:
                    rescan = asyncio.create_task(self._rescan(due_only=True))
                    rescan.add_done_callback(lambda _: wake.set())
                while self._due and self._due[0][0] <= now:
                    when, target = heapq.heappop(self._due)
                    known = self._known.get(target)  # None: forgotten meanwhile
                    if known is not None and known.driver is None and not known.identifying and known.retry_at == when:
                        task = asyncio.create_task(self._identify(target, known))
                        running.add(task)
                        task.add_done_callback(finished)
                if first_round and not running and rescan is None:
                    first_round = False
                    if ready is not None:
                        ready.set()
                wakes = [self._due[0][0] if self._due else None,
                         # the first round in one line, then at most a line a minute
                         None if first_round else self._summary.flush(now, self.config.identify_backoff_max_s),
                         self._next_rescan_at if rescan is None else None]
                wake.clear()
                wake_at = min((w for w in wakes if w is not None), default=None)
                try:
                    async with asyncio.timeout(None if wake_at is None else max(0.0, wake_at - now)):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._wake = None
            self._summary.flush(time.monotonic(), self.config.identify_backoff_max_s, final=True)
            pending = [*running, *([rescan] if rescan is not None else [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def cycle(self, ts: datetime, on_sample: Callable[[MinerSample], object] | None = None) -> PollResult:
        """Poll every target once, within the cycle's deadline. `on_sample` is called with each
        sample as it arrives (the service hands them to the sinks while the rest of the fleet is
        still being polled); when the deadline passes, every miner that has not answered yet gets an
        offline sample saying so, and the cycle ends."""
        started = time.monotonic()
        self._forget_moved()
        names = [self._offline(name, _Known(), ts, f"{name.host}: DNS name resolves to no address")
                 for name in self._unresolved.values()]
        if on_sample is not None:
            for sample in names:
                on_sample(sample)
        targets = sorted(self.targets)
        samples: list[MinerSample] = [None] * len(targets)  # type: ignore[list-item]  # all filled below
        latencies: list[float] = []
        # A cycle that was cut short resumes where it stopped, so an overloaded collector spreads its
        # misses over the fleet instead of missing the same miners every cycle.
        start = bisect_left(targets, self._resume_at) % len(targets) if self._resume_at and targets else 0
        queue = chain(enumerate(targets[start:], start), enumerate(targets[:start]))

        # `concurrency` workers taking the next miner as they finish one: the same bound as a task
        # per miner behind a semaphore, without 10,000 tasks and semaphore round trips a cycle
        # (docs/benchmarks.md).
        async def worker() -> None:
            for i, target in queue:
                begun = time.monotonic()
                sample = await self.poll_one(target, ts)
                if samples[i] is not None:  # the deadline passed meanwhile and gave it its sample
                    return
                samples[i] = sample
                latencies.append(time.monotonic() - begun)
                if on_sample is not None:
                    on_sample(sample)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.config.concurrency, len(targets)))]
        late = 0
        if workers:
            try:
                done, pending = await asyncio.wait(workers, timeout=self.config.cycle_deadline)
            except BaseException:  # cancelled from outside (shutdown): the workers go with it
                for task in workers:
                    task.cancel()
                raise
            for task in done:
                task.result()  # a bug in a worker (on_sample) surfaces here, as it did through gather
            if pending:
                late = self._cut(queue, pending, targets, samples, ts, on_sample)
            else:
                self._resume_at = None
        self._log_handed_back()
        return PollResult(samples + names, time.monotonic() - started, latencies, late)

    def _cut(self, queue, pending: set[asyncio.Task[None]], targets: list[Target], samples: list[MinerSample],
             ts: datetime, on_sample: Callable[[MinerSample], None] | None) -> int:
        """The deadline passed: miners not polled yet are not started, those in flight are cancelled,
        and each gets an offline sample saying so. Returns how many."""
        not_started = next(queue, None)
        self._resume_at = not_started[1] if not_started is not None else None
        for _ in queue:  # a worker that ignores its cancellation must find nothing left to take
            pass
        for task in pending:
            task.cancel()
            # Cancellation normally ends them within a loop iteration; the cycle does not wait for it.
            self._stragglers.add(task)
            task.add_done_callback(self._straggler_done)
        reason = f"no answer before the cycle deadline ({self.config.cycle_deadline:g} s)"
        late = 0
        for i, target in enumerate(targets):
            if samples[i] is None:
                late += 1
                known = self._known[target]
                sample = samples[i] = self._offline(target, known, ts, f"{target.address}: {reason}")
                if on_sample is not None:
                    on_sample(sample)
        return late

    def _straggler_done(self, task: asyncio.Task[None]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a poll cut off by the cycle deadline failed: %r", task.exception())

    async def poll_one(self, target: Target, ts: datetime) -> MinerSample:
        known = self._known.setdefault(target, _Known())
        deadline = self.config.timeout_s
        # pyasic costs milliseconds of CPU per Antminer: 512 of them at once would each take longer than the
        # deadline and none would be read. They go through a narrower gate; the deadline starts once through it.
        try:
            if known.driver == discovery.AVALON:
                # The native driver's request timeout covers connect and the whole read, and parsing cannot
                # block: no second timer (docs/benchmarks.md).
                sample = await avalon.poll(target.host, target.port, site=self.config.site, ts=ts,
                                           timeout_s=deadline, known_id=known.miner_id)
            elif known.driver is None:  # identification's turn (in the background): not polled, no wait
                # A miner read here before (it keeps its id) is no new address: say so.
                waiting = "identifying it again" if known.miner_id else "not identified yet"
                return self._offline(target, known, ts, f"{waiting}: {known.reason or _UNDER_WAY}")
            elif known.reader is not None:
                # A native reader: one joined request a poll, like the Avalon's; its rare extra reads keep
                # within the same deadline (collector.sources.profile).
                reader = known.reader
                sample = await reader.poll(site=self.config.site, ts=ts, timeout_s=deadline, known_id=known.miner_id)
                if reader.other_unit is not None:
                    self._other_unit(target, known, reader.other_unit)
                elif known.other_units:
                    known.other_units = 0
            else:
                async with self._pyasic_gate:
                    try:
                        async with asyncio.timeout(deadline + 1.0):  # a hard stop whatever pyasic does
                            sample = await pyasic_makes.poll(
                                known.pyasic_miner, host=target.host, port=target.port, site=self.config.site,
                                ts=ts, timeout_s=deadline, known_id=known.miner_id)
                    except TimeoutError:
                        sample = self._offline(target, known, ts, f"{target.address}: no answer within {deadline:g} s")
        except Exception as e:  # a driver bug must cost one miner's sample, never the cycle
            if not known.error_logged:  # the traceback once per miner, not every cycle
                known.error_logged = True
                log.exception("%s: unexpected error while polling", target.address)
            sample = self._offline(target, known, ts, f"{target.address}: internal error: {type(e).__name__}: {e}",
                                   MinerState.ERROR)
        if sample.state is MinerState.OFFLINE:
            known.offline_polls += 1
            if known.miner_id and (carrier := self._carriers.get(known.miner_id)) not in (None, target):
                self._lost_id(target, carrier, known.miner_id)  # its miner answers elsewhere now
                if known.miner_id is None:  # this sample too
                    sample = sample.model_copy(update={"miner": target.address})
            if known.offline_polls >= OFFLINE_POLLS_BEFORE_REIDENTIFY:
                self._hand_back(target, known, sample)
        elif known.offline_polls:
            known.offline_polls = 0
        if sample.model is not None:
            known.make, known.model = sample.make, sample.model
        elif known.model is not None and known.miner_id is not None and sample.miner == known.miner_id:
            sample = sample.model_copy(update={"make": sample.make or known.make, "model": known.model})
        mac = sample.mac
        if mac:
            if (mac != known.last_mac or known.mac_changes) and self._mac_flaps(known, mac):
                return sample.model_copy(update={"miner": target.address, "warnings": [*sample.warnings, (
                    f"its MAC changes at nearly every reading ({mac} now): stored under its address")]})
            if known.miner_id != sample.miner:
                self._took_id(target, known, sample.miner)
        return sample

    def _mac_flaps(self, known: _Known, mac: str) -> bool:
        """Counts a MAC other than the last one read; True while more than MAC_CHANGES_TRUSTED changes fall
        within MAC_CHANGE_WINDOW_S. (Off the common path: a MAC as last read, no change remembered.)"""
        now = time.monotonic()
        changes = [t for t in (known.mac_changes or ()) if now - t < MAC_CHANGE_WINDOW_S]
        if known.last_mac is not None and mac != known.last_mac:
            changes.append(now)
        known.last_mac = mac
        known.mac_changes = changes[-(MAC_CHANGES_TRUSTED + 1):] or None
        return len(changes) > MAC_CHANGES_TRUSTED

    def _took_id(self, target: Target, known: _Known, miner_id: str) -> None:
        """`target` carries `miner_id` from now on (identified with it, or read it): a target that
        carried it before and does not answer has lost it (the miner moved)."""
        if known.miner_id is not None and self._carriers.get(known.miner_id) == target:
            del self._carriers[known.miner_id]  # at most one entry per target, whatever its MAC does
        known.miner_id = miner_id
        previous = self._carriers.get(miner_id)
        self._carriers[miner_id] = target
        if previous is not None and previous != target:
            self._lost_id(previous, target, miner_id)

    def _lost_id(self, old: Target, carrier: Target, miner_id: str) -> None:
        """`carrier` answers with `miner_id`: `old`, which remembers that id, loses it unless it answers
        too (cloned firmware, one miner under two addresses: collector.identity flags those)."""
        known, carrier_known = self._known.get(old), self._known.get(carrier)
        if known is None or known.miner_id != miner_id or known.live or not (carrier_known and carrier_known.live):
            return
        known.miner_id = known.make = known.model = None  # its samples are stored under its host:port from now on
        if old in self._listed:
            log.info("miner %s answers at %s now; %s (listed) is polled under its own address from now on",
                     miner_id, carrier.address, old.address)
        else:
            log.info("miner %s answers at %s now; its old address %s is no longer polled (a re-scan finds a "
                     "miner that answers there again)", miner_id, carrier.address, old.address)
            self._moved.add(old)

    def _forget_moved(self) -> None:
        """Between cycles: drop the found targets whose miner answers elsewhere, unless one answers there now."""
        for target in self._moved:
            known = self._known.get(target)
            if known is not None and known.miner_id is None and not known.live:
                self.targets.discard(target)
                del self._known[target]
        self._moved.clear()

    def _hand_back(self, target: Target, known: _Known, last: MinerSample) -> None:
        """A known miner that stopped answering leaves the polled set: identification (with backoff)
        finds it again when it is back, instead of its timeout being spent every cycle."""
        why = last.errors[0] if last.errors else "no answer"
        self._identify_again(target, known, f"no answer to {OFFLINE_POLLS_BEFORE_REIDENTIFY} polls in a row "
                                            f"(last: {why})", time.monotonic())
        self._handed_back.append(target.address)

    def _other_unit(self, target: Target, known: _Known, why: str) -> None:
        """The reader found another make answering at `target` (a unit swapped there): the old unit's id
        leaves the address, and identification finds what answers; at once, then (a unit that answers
        identification as one make and polls as another) with backoff."""
        log.warning("%s; identifying it again", why)
        if known.miner_id is not None and self._carriers.get(known.miner_id) == target:
            del self._carriers[known.miner_id]
        known.miner_id = known.last_mac = known.make = known.model = None
        known.other_units += 1
        wait = self._backoff_s(known.other_units - 1) if known.other_units > 1 else 0.0
        self._identify_again(target, known, why, time.monotonic() + wait)

    def _identify_again(self, target: Target, known: _Known, why: str, when: float) -> None:
        known.driver = known.reader = known.pyasic_miner = None  # identification makes them afresh
        known.offline_polls = known.failed_identifications = 0
        known.reason = f"{why}; {_UNDER_WAY}"
        self._schedule(target, known, when)

    def _log_handed_back(self) -> None:
        # One line per cycle at most, and only in a cycle where miners were handed back.
        if self._handed_back:
            log.warning("%d miner(s) did not answer %d polls in a row; identifying them again in the background "
                        "(offline meanwhile): %s", len(self._handed_back), OFFLINE_POLLS_BEFORE_REIDENTIFY,
                        _examples(self._handed_back))
            self._handed_back = []

    def _offline(self, target: Target, known: _Known, ts: datetime, reason: str,
                 state: MinerState = MinerState.OFFLINE) -> MinerSample:
        last = known.miner_id is not None
        return MinerSample.offline(miner=known.miner_id or target.address, host=target.host, port=target.port,
                                   site=self.config.site, ts=ts, source=known.source, reason=reason, state=state,
                                   make=known.make if last else None, model=known.model if last else None)


def _discovery_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        # Identified miners are still polled; new and failing addresses are not identified any more.
        log.error("background identification stopped: %s: %s", type(error).__name__, error, exc_info=error)

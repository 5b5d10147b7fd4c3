"""MQTT ingest: subscribed topics -> validated payloads -> MinerSamples and live cost inputs.

Four kinds of topic (models.mqtt.IngestKind):

- miner_telemetry: a device's own MinerSample JSON. `miner` defaults to the topic level the
  filter's first `+` matched (else the whole topic), `ts` to the arrival time, `host` to "mqtt",
  `state` to mining when hashrate_ths > 0 else idle; `site` and `source` (mqtt) are always set
  here. The latest sample per miner joins every cycle (the ingest is a source: `announce`,
  `collect`); a miner whose latest telemetry is older than `telemetry_max_age_s` yields an offline
  sample, like a polled miner that does not answer. A reading that fails validation (a fan at -1 rpm,
  a temperature of 1e400, which JSON reads as infinity, a list over its cap, "1.5" where a number
  belongs; a board's: `boards`) costs that field: the sample is made from the rest, the field named in
  `unusable` and `errors` (MinerSample.refused) and counted (`fields_refused`). A payload that is no
  miner reading (not an object, an unknown key, a bad `miner`, `ts`, `state`, `host` or `port`) is
  dropped whole (`invalid`). Its age counts from its `ts`, not from its
  arrival: telemetry already that old when it arrives (a retained one, replayed at every start and
  reconnect) is dropped (`stale`) and takes no slot. A miner that is also polled keeps its polled
  sample.
- meter: watts per outlet or per rack (MeterPayload), mapped to miners by the subscription's
  `outlets` and `racks`. Outlet watts are that miner's metered power; a rack's watts (less the
  outlet-metered miners on it) are shared by its other miners in proportion to the power they
  report (equally until they have reported). Metered power replaces reported power in the cost
  figures (collector.stages.cost_stage) and the gap is recorded there. Readings of `facility`
  keys are the whole site's draw (LiveInputs.facility_w): the measured PUE (docs/health.md).
- power_price / btc_price: live prices for the cost engine (a bare JSON number is accepted too),
  refused outside the configured bounds. Each is used only up to its max age: the live tariff's
  `max_age_s` (collector.stages.cost_engine.power_price_at), and for the BTC price the network
  source's `max_age_s` (`announce`), so an old price never passes for a fresh one. A BTC price that
  jumps further than `btc_price_max_jump` is not used until confirmed (`_use_btc_price`). A price
  already older than its max age when it arrives (a dead feed's retained one) is held but not used:
  it is counted `power_price_stale` / `btc_price_stale`, not with the prices accepted.
- dr_target, curtailment_mode, curtailment_kill: what curtailment is asked (docs/curtailment.md): a
  demand-response target (DrTarget JSON, added to what its topic holds; or a bare kW limit for
  `curtailment.dr_default_duration_s`, replacing it; 0 or null withdraws the topic's targets: each
  topic holds its own, collector/sources/dr_targets.py), the control mode (`off`, `dry_run`, `on`:
  Home Assistant's select sends the bare word) and the kill switch (`ON`/`OFF`, true/false, 1/0).
  The composition root subscribes the curtailment command topics only when the config enables them.
  A retained command this process has handled before (the same payload on the same topic: a broker
  that reconnects or restarts with persistence hands its retained copy again) is a replay: a
  demand-response target or withdrawal is ignored and counted `replayed`, so a reconnect never undoes
  what came after it; a kill switch or mode, which may as well be a new publish of the same payload
  (an ON while the collector was away), is applied where it makes control more careful, else ignored
  and counted `replayed` (`_careful_only`).
  The commands seen are remembered by topic as a digest, the latest MAX_SEEN_COMMANDS. A retained
  command seen first (at a start) may make control more careful, never less (LiveInputs.curtailment,
  which keeps them across restarts): a retained withdrawal is ignored, a retained bare kW limit
  (undated: it would start again at every start and reconnect) refused.

Every publisher is hostile until checked. A timestamp more than `max_clock_skew_s` ahead of this
host's clock is refused (a price dated 2099 would otherwise hold forever, later prices being
"older"); one within the skew is taken as the arrival time, so nothing held is ever in the future.
A miner id with a character that is not printable (a control character, a non-character, a bidi
or zero-width format character) is refused. MQTT miner ids are capped (`telemetry_max_miners`) or
allow-listed (`allowed_miners`), and an id silent for `telemetry_evict_after_s` is forgotten, or sooner
when the cap is reached and a new id comes: the id heard from longest ago gives its slot up if it is
offline; `take_evicted` hands those ids to the sink, which clears their retained Home Assistant
discovery and topics. Only MQTT miners whose id is allow-listed count as verified
(`LiveInputs.verified_mqtt_miners`): anyone can invent an id, so only verified ones share the site's
fixed costs (collector.stages.cost_stage). A listed topic key admits every id published on it, but
verifies only the id equal to the key (the one a payload without `miner` takes): one key must not vouch
for a crowd of invented ids.

Malformed, oversized or unknown payloads are counted by reason (`stats()`), logged at most once
per reason per 10 s with a count of those held back, and dropped; nothing here raises into paho.

Threads: `handle` runs in paho's network thread. It parses and validates there, then hands the
update to the asyncio loop (`bind(loop)`) with call_soon_threadsafe, so LiveInputs and the
samples change only on the loop's thread, between cycles' reads. Unbound (tests, scripts), updates
are applied at once under a lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from collector import durable_file
from models.base import is_fresh, number_fields, printable, read_capped
from collector.sources import dr_targets, plausibility
from collector.sources.live_inputs import LiveInputs, MeterReading
from collector.bounded_log import BoundedLog
from models import LivePowerPrice, MinerSample, MinerState, SampleSource
from models.sample import MAX_TEXT_CHARS, BoardSample
from models.curtailment import ControlMode, DrTarget, KillPayload
from models.hardware import MAX_UNIT_W
from models.economics import NetworkState
from models.mqtt import BtcPricePayload, IngestKind, MeterPayload, MqttConfig, MqttSubscription, PowerPricePayload

if TYPE_CHECKING:
    from collector.cycle import Cycle

log = logging.getLogger(__name__)

MAX_FACILITY_W = 1e9  # a gigawatt: past any mining site
OVERSIZED = "oversized"
NOT_JSON = "not_json"
INVALID = "invalid"
UNKNOWN_TOPIC = "unknown_topic"
UNMAPPED = "unmapped"
FUTURE_TS = "future_ts"
OUT_OF_BOUNDS = "out_of_bounds"
TOO_MANY_MINERS = "too_many_miners"
NOT_ALLOWED = "not_allowed"
ERROR = "error"
OLDER = "older"  # dated before the one held: ignored
STALE = "stale"  # telemetry older than telemetry_max_age_s on arrival: it would only make an offline miner
RETAINED_UNDATED = "retained_undated"  # a retained reading with no ts: its age is unknown
MAX_IDS_FILE_BYTES = 64 * 1024 * 1024  # the kept ids (keep_ids_in): at most telemetry_max_miners of them
REPLAYED = "replayed"  # a retained command handled before: a reconnect must not undo what came after it
STALE_SUFFIX = "_stale"  # accepted (held) but already older than its max age on arrival: not used
MAX_SEEN_COMMANDS = 10_000  # command payloads remembered (topic, digest): ~100 bytes each

# Drop reasons as the `collector` point counts them.
_COUNTED = {
    "mqtt_malformed": (OVERSIZED, NOT_JSON, INVALID, ERROR),
    "mqtt_unknown": (UNKNOWN_TOPIC, UNMAPPED),
    "mqtt_refused": (FUTURE_TS, OUT_OF_BOUNDS, OLDER, RETAINED_UNDATED, STALE, REPLAYED),
    "mqtt_limited": (TOO_MANY_MINERS, NOT_ALLOWED),
}


class _Dropped(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# Applies a parsed payload on the loop's thread; False: older than held, ignored; _Dropped: refused there;
# a str: accepted, counted under that name (a price stale on arrival: `power_price_stale`).
_Update = Callable[[], bool | str | _Dropped | None]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# What says which miner and when: a payload that gets one of them wrong is no miner's reading and is
# dropped whole (`invalid`). Any other field of MinerSample is a reading: a bad value costs that field.
_IDENTITY = frozenset({"miner", "host", "port", "site", "ts", "state", "source"})
_READINGS = frozenset(MinerSample.model_fields) - _IDENTITY


def _shown(value: Any) -> str:
    """A value as a reason may quote it: short, printable (repr escapes what a terminal would act on)."""
    if isinstance(value, str):
        return repr(value[:40])
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)[:40]
    return f"a {type(value).__name__}"  # never the whole of a list or an object


def _not_numbers(data: dict, model: type) -> dict[str, str]:
    """The fields of `data` holding a true or "1.5" where `model` has a number, with why: no reading
    (lax validation made them 1.0 and 1.5)."""
    numbers = number_fields(model)
    reasons = {}
    for name, value in data.items():
        if name in numbers and isinstance(value, (bool, str)):
            reasons[name] = f"{name}: {_shown(value)} is not a number"
    return reasons


def _refused_readings(raw: dict) -> dict[str, str]:
    """Telemetry's readings that are no numbers where numbers belong (a board's: `boards`), with why.
    Raises _Dropped for an identity field (a port of "1883")."""
    reasons = _not_numbers(raw, MinerSample)
    if reasons and not _READINGS.issuperset(reasons):
        name = next(n for n in reasons if n not in _READINGS)
        raise _Dropped(INVALID, reasons[name])
    boards = raw.get("boards")
    if isinstance(boards, list) and "boards" not in reasons:
        for board in boards:
            if isinstance(board, dict) and (bad := _not_numbers(board, BoardSample)):
                reasons["boards"] = f"boards: board {_shown(board.get('index'))}: {next(iter(bad.values()))}"
                break
    return reasons


def _failed_readings(error: ValidationError) -> dict[str, str]:
    """Each top-level reading `error` names (a board's failure: `boards`; a list over its cap: that
    list), with the first reason given for it. Raises _Dropped (`invalid`) when the payload is no miner
    reading at all: an identity field failed, or a key is unknown at any depth (a typo stays loud)."""
    reasons: dict[str, str] = {}
    for item in error.errors(include_url=False, include_context=False):
        loc = item["loc"]
        where = ".".join(str(p) for p in loc)[:80] or "payload"
        why = printable(f"{where}: {item['msg']}, got {_shown(item['input'])}")  # (an unknown key is the publisher's)
        if item["type"] == "extra_forbidden" or not loc or loc[0] not in _READINGS:
            raise _Dropped(INVALID, why)
        reasons.setdefault(loc[0], why)
    return reasons


def _kept_ids(path: Path, cap: int) -> list[str]:
    """The ids `keep_ids_in` saved: ValueError for anything but {"version": 1, "miners": [printable ids]}."""
    if not path.exists():
        return []
    data = orjson.loads(read_capped(path, MAX_IDS_FILE_BYTES))
    if not isinstance(data, dict) or set(data) != {"version", "miners"} or data["version"] != 1:
        raise ValueError("not a version 1 file of MQTT miner ids")
    ids = data["miners"]
    if (not isinstance(ids, list) or len(ids) > cap
            or not all(isinstance(m, str) and 0 < len(m) <= MAX_TEXT_CHARS and m.isprintable() for m in ids)):
        raise ValueError(f"its `miners` is not a list of at most {cap} printable ids")
    return ids


def _careful_only(update: _Update) -> _Update:
    """A kill switch or control mode this collector handled before, handed again by the broker (a reconnect): the
    same payload may be a new publish (Home Assistant's ON while the collector was away: retained, as its switch
    sends it) or the broker's old copy, and MQTT does not say which. Applied where it makes control more careful
    (an ON, a lower mode: an emergency stop is never lost, trial ZG), ignored where it would loosen it (an OFF
    never undoes a later ON). A script's OFF published without retain over a retained ON is undone so at each
    reconnect: publish it retained."""
    def replayed() -> bool | str | _Dropped:
        outcome = update()
        if outcome is False:
            return _Dropped(REPLAYED, "a retained command this collector handled before, handed again by the broker "
                                      "(a reconnect): ignored, as it would make control less careful")
        return outcome
    return replayed


def _bare_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _first_errors(error: ValidationError, limit: int = 2) -> str:
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def match_filter(topic_filter: str, topic: str) -> list[str] | None:
    """The levels `+` matched, in order, or None when `topic` does not match `topic_filter`."""
    wanted, levels = topic_filter.split("/"), topic.split("/")
    captured: list[str] = []
    for i, level in enumerate(wanted):
        if level == "#":
            return captured
        if i >= len(levels):
            return None
        if level == "+":
            captured.append(levels[i])
        elif level != levels[i]:
            return None
    return captured if len(wanted) == len(levels) else None


@dataclass
class _Telemetry:
    sample: MinerSample
    as_of: datetime  # its ts (the arrival time when it had none): its age counts from here


@dataclass
class _Rack:
    reading: MeterReading
    miners: tuple[str, ...]


# Kinds whose payload may be a bare word rather than JSON (what Home Assistant's select and switch send).
_WORD_KINDS = frozenset({IngestKind.CURTAILMENT_MODE, IngestKind.CURTAILMENT_KILL})
# Readings a max age applies to: a retained one must say when it was taken (below).
_DATED_KINDS = frozenset({IngestKind.MINER_TELEMETRY, IngestKind.METER, IngestKind.POWER_PRICE, IngestKind.BTC_PRICE})
_COMMAND_KINDS = frozenset({IngestKind.DR_TARGET, IngestKind.CURTAILMENT_MODE, IngestKind.CURTAILMENT_KILL})
# The kill switch's payloads, as str(payload).lower(): HA's switch sends ON/OFF; true/false and 1/0 arrive
# as JSON (a boolean, a number), as scripts and other tools send them.
_SWITCH_WORDS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


class MqttIngest:
    def __init__(self, config: MqttConfig, site: str, live: LiveInputs, *,
                 clock: Callable[[], datetime] = _utcnow, dr_default_duration_s: float = 3600.0,
                 btc_price_max_age_s: float = 900.0, power_price_max_age_s: float | None = None) -> None:
        self.config = config
        self.btc_price_max_age_s = btc_price_max_age_s  # the network source's max_age_s
        self.power_price_max_age_s = power_price_max_age_s  # the live tariff's max_age_s (None: no live tariff)
        self.dr_default_duration_s = dr_default_duration_s
        self.site = site
        self.live = live
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counts_lock = threading.Lock()
        self._accepted: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._fields_refused: Counter[str] = Counter()  # by MinerSample field name: a bounded set
        self._log = BoundedLog(log)
        self._allowed = frozenset(config.allowed_miners)
        self._ids_lock = threading.Lock()
        # MQTT miner ids holding a slot -> the ts of their latest telemetry, in the order last heard from
        # (taken in paho's thread, freed on eviction or for a newcomer at the cap)
        self._ids: dict[str, datetime] = {}
        self._lock = threading.Lock()  # the state below
        self._telemetry: dict[str, _Telemetry] = {}
        self._pending: list[MinerSample] = []  # this cycle's MQTT samples, announced, not yet collected
        self._evicted: list[str] = []  # for the sink to clear (take_evicted)
        self._evicted_total = 0
        # The MQTT miner ids held, kept on disk (keep_ids_in), and the ids the run before held that this one has not
        # heard from yet (-> when this run started): forgotten after telemetry_evict_after_s as if heard at the start.
        self._ids_path: Path | None = None
        self._ids_saved: frozenset[str] = frozenset()
        self._before: dict[str, datetime] = {}
        self._outlets: dict[str, MeterReading] = {}  # by miner
        self._racks: dict[tuple[int, str], _Rack] = {}  # by (subscription index, rack key)
        self._racks_of: dict[str, set[tuple[int, str]]] = {}  # miner -> racks it is on
        self._reported_w: dict[str, float] = {}  # latest reported power by miner (rack shares)
        self._btc_before: tuple[float, datetime] | None = None  # the live BTC price before the latest, its ts
        self._btc_used: float | None = None  # the last live BTC price a cycle used
        # (topic, digest) of the command payloads handled, oldest first (paho's thread only): replays
        self._seen_commands: dict[tuple[str, bytes], None] = {}
        self._parsers: dict[IngestKind, Callable[..., _Update]] = {
            IngestKind.MINER_TELEMETRY: self._telemetry_update,
            IngestKind.METER: self._meter_update,
            IngestKind.POWER_PRICE: self._power_price_update,
            IngestKind.BTC_PRICE: self._btc_price_update,
            IngestKind.DR_TARGET: self._dr_target_update,
            IngestKind.CURTAILMENT_MODE: self._control_mode_update,
            IngestKind.CURTAILMENT_KILL: self._kill_update,
        }

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(s.topic, s.qos) for s in self.config.ingest]

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Apply updates on `loop`'s thread from now on."""
        self._loop = loop

    def keep_ids_in(self, path: Path) -> None:
        """Take up the MQTT miner ids the run before held, from `path`, and keep this run's there: an id invented
        before a restart (a publisher's one message) had its retained state and Home Assistant device left on the
        broker for good, the sink clearing only the ids one run forgot (trial ZG). Each is forgotten, and
        cleared, once silent for telemetry_evict_after_s from this start. The file is hostile input: anything
        but a list of printable ids within the cap is set aside (logged) and nothing taken up."""
        self._ids_path = path
        try:
            ids = _kept_ids(path, self.config.telemetry_max_miners)
        except (OSError, ValueError) as e:
            aside = durable_file.set_aside(path) if path.exists() else None
            log.error("MQTT miner ids %s are unusable (%s)%s: the ids of the run before are not cleared from the "
                      "broker", path, str(e)[:200], f"; set aside as {aside}" if aside is not None else "")
            return
        now = self._clock()
        self._before = dict.fromkeys(ids, now)
        self._ids_saved = frozenset(ids)

    def _save_ids(self, ids: frozenset[str]) -> None:
        """The ids held now (and those of the run before not yet forgotten), when they changed: written outside
        self._lock (a synced write must not hold up the messages paho's thread applies)."""
        if self._ids_path is None or ids == self._ids_saved:
            return
        try:
            durable_file.replace_synced(self._ids_path, orjson.dumps({"version": 1, "miners": sorted(ids)}))
            self._ids_saved = ids
        except OSError as e:
            self._log.error("ids_file", "cannot save the MQTT miner ids to %s (a restart would leave the ones "
                                        "forgotten meanwhile on the broker): %s", self._ids_path, e)

    def take_evicted(self) -> list[str]:
        """MQTT miner ids forgotten since the last call (the sink clears their retained topics)."""
        with self._lock:
            evicted, self._evicted = self._evicted, []
        return evicted

    def counters(self) -> dict[str, int]:
        """The `collector` point's MQTT counters (models.schema.COLLECTOR), since start."""
        with self._counts_lock:
            dropped = dict(self._dropped)
            accepted = sum(n for name, n in self._accepted.items() if not name.endswith(STALE_SUFFIX))
            accepted_stale = sum(n for name, n in self._accepted.items() if name.endswith(STALE_SUFFIX))
            fields_refused = sum(self._fields_refused.values())
        return {"mqtt_accepted": accepted, "mqtt_accepted_stale": accepted_stale,
                **{name: sum(dropped.get(reason, 0) for reason in reasons) for name, reasons in _COUNTED.items()},
                "mqtt_fields_refused": fields_refused}

    def stats(self) -> dict[str, Any]:
        with self._counts_lock:
            accepted, dropped = dict(self._accepted), dict(self._dropped)
            fields_refused = dict(self._fields_refused)
        return {"accepted": accepted, "dropped": dropped, "accepted_total": sum(accepted.values()),
                "dropped_total": sum(dropped.values()), "fields_refused": fields_refused,
                "miners": len(self._ids), "evicted_total": self._evicted_total}

    # -- paho's thread ------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """One message: validate, count, hand on or drop. Never raises. `retained`: the broker's copy of an
        earlier publish, delivered again on every (re)subscribe."""
        try:
            kind, update = self._parse(topic, payload, retained)
        except _Dropped as e:
            self._drop(e.reason, topic, str(e))
            return
        except Exception as e:  # a bug must cost one message, not the ingest
            self._drop(ERROR, topic, f"{type(e).__name__}: {e}")
            return
        self._apply(kind, topic, update)

    def _parse(self, topic: str, payload: bytes, retained: bool = False) -> tuple[IngestKind, _Update]:
        for index, sub in enumerate(self.config.ingest):
            captured = match_filter(sub.topic, topic)
            if captured is not None:
                break
        else:
            raise _Dropped(UNKNOWN_TOPIC, "no ingest subscription matches this topic")
        if len(payload) > self.config.max_payload_bytes:
            raise _Dropped(OVERSIZED, f"{len(payload)} bytes, more than max_payload_bytes "
                                      f"({self.config.max_payload_bytes})")
        seen = (topic, hashlib.blake2b(payload, digest_size=16).digest()) if sub.kind in _COMMAND_KINDS else None
        replay = retained and seen in self._seen_commands
        if replay and sub.kind not in _WORD_KINDS:
            raise _Dropped(REPLAYED, "a retained command this collector handled before, handed again by the broker "
                                     "(a reconnect): ignored, so it never undoes the commands that came after it")
        try:
            data = json.loads(payload, parse_constant=_no_constants)
        except ValueError as e:  # UnicodeDecodeError is one too
            if sub.kind not in _WORD_KINDS:
                raise _Dropped(NOT_JSON, f"not JSON: {e}") from None
            try:
                data = payload.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise _Dropped(NOT_JSON, "neither JSON nor a word") from None
        except RecursionError:  # within max_payload_bytes: [[[[... a few thousand deep
            raise _Dropped(NOT_JSON, "nested too deeply") from None
        key = captured[0] if captured else topic
        if retained and sub.kind in _DATED_KINDS and not (isinstance(data, dict) and data.get("ts") is not None):
            # Dated at arrival it would be fresh again at every start and reconnect: a dead feed's last
            # price, a long-gone miner mining.
            raise _Dropped(RETAINED_UNDATED, "a retained reading without a ts: its age is unknown (a publisher that "
                                             "retains must say when with ts)")
        # A retained command seen first may only make control more careful (CurtailmentInputs).
        command = {"retained": retained, "topic": topic} if sub.kind in _COMMAND_KINDS else {}
        try:
            update = self._parsers[sub.kind](sub, index, key, data, self._clock(), **command)
        except ValidationError as e:
            raise _Dropped(INVALID, _first_errors(e)) from None
        if seen is not None:
            self._remember_command(seen)
        return sub.kind, (_careful_only(update) if replay else update)

    def _remember_command(self, seen: tuple[str, bytes]) -> None:
        """A valid command (topic, digest), handled: its retained copy, handed again, is a replay. The latest
        MAX_SEEN_COMMANDS are kept (an older one counts as new again: the rules of a first sight apply), and
        only valid ones, so a flood of garbage on a command topic cannot push the real ones out."""
        self._seen_commands.pop(seen, None)
        self._seen_commands[seen] = None  # (the latest last)
        if len(self._seen_commands) > MAX_SEEN_COMMANDS:
            del self._seen_commands[next(iter(self._seen_commands))]

    def _drop(self, reason: str, topic: str, detail: str) -> None:
        with self._counts_lock:
            self._dropped[reason] += 1
        # (the topic and the detail are the publisher's text: a key or topic level may hold an escape sequence)
        self._log.warning(reason, "MQTT payload on %s dropped (%s): %s", printable(topic[:200]), reason,
                          printable(detail[:300]))

    def _apply(self, kind: IngestKind, topic: str, update: _Update) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._locked, kind, topic, update)
                return
            except RuntimeError:  # the loop is closed: the service is stopping
                return
        self._locked(kind, topic, update)

    def _locked(self, kind: IngestKind, topic: str, update: _Update) -> None:
        """Apply one update and count it: accepted, or dropped when it was older than what is held or refused
        by it (known only here, in order with the updates before it)."""
        with self._lock:
            outcome = update()
        if outcome is False:
            self._drop(OLDER, topic, "older than the one held (by its ts; a command: replayed by the broker): ignored")
            return
        if isinstance(outcome, _Dropped):
            self._drop(outcome.reason, topic, str(outcome))
            return
        with self._counts_lock:
            self._accepted[outcome if isinstance(outcome, str) else kind.value] += 1

    def _checked_ts(self, ts: datetime | None, now: datetime) -> datetime:
        """A payload's timestamp, or the arrival time. One ahead of the clock by more than the allowed
        skew is refused; one within it is taken as the arrival time: a reading is never from the future."""
        if ts is None:
            return now
        ahead = (ts - now).total_seconds()
        if ahead > self.config.max_clock_skew_s:
            raise _Dropped(FUTURE_TS, f"ts {ts.isoformat()} is {ahead:.0f} s ahead of this host's clock "
                                      f"(max_clock_skew_s {self.config.max_clock_skew_s:g}); check the publisher's clock")
        return min(ts, now)

    def _in_bounds(self, what: str, value: float, low: float, high: float, why: str) -> None:
        if not low <= value <= high:
            raise _Dropped(OUT_OF_BOUNDS, f"{what} {value:g} outside [{low:g}, {high:g}] ({why})")

    def _take_slot(self, miner: str, key: str, as_of: datetime, now: datetime) -> tuple[bool, str | None]:
        """Whether `miner` may be held (allow-list, then the cap): whether it is verified, and the id whose slot
        it takes over, if any. A listed topic key admits any id published on it, but only a listed id is
        verified (one key must not make a crowd of invented ids share the fixed costs). At the cap, the id
        heard from longest ago gives up its slot when its telemetry is older than telemetry_max_age_s (it
        shows offline): a flood, live or retained, holds slots only while fresh."""
        verified = miner in self._allowed
        if self._allowed and not verified and key not in self._allowed:
            raise _Dropped(NOT_ALLOWED, f"miner {miner[:80]!r} is not in mqtt.allowed_miners")
        cap = self.config.telemetry_max_miners
        freed = None
        with self._ids_lock:
            held = self._ids.pop(miner, None)  # put back last: the ids stay in the order last heard from
            if held is None and len(self._ids) >= cap:
                oldest = next(iter(self._ids))
                if (now - self._ids[oldest]).total_seconds() <= self.config.telemetry_max_age_s:
                    raise _Dropped(TOO_MANY_MINERS, f"already {cap} MQTT miners (mqtt.telemetry_max_miners), none "
                                                    f"offline; {miner[:80]!r} is one too many")
                del self._ids[oldest]
                freed = oldest
            self._ids[miner] = as_of if held is None else max(held, as_of)
        return verified, freed

    # -- payload kinds: parse now, return the update to apply ---------------------------------

    def _telemetry_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                          now: datetime) -> _Update:
        if not isinstance(data, dict):
            raise _Dropped(INVALID, f"miner telemetry must be a JSON object (a MinerSample), not {type(data).__name__}")
        raw = dict(data)
        raw.setdefault("miner", key)
        raw.setdefault("host", "mqtt")
        raw.setdefault("port", self.config.port)
        raw.setdefault("ts", now)
        if "state" not in raw:
            hashrate = raw.get("hashrate_ths")
            hashing = isinstance(hashrate, (int, float)) and not isinstance(hashrate, bool) and hashrate > 0
            raw["state"] = MinerState.MINING if hashing else MinerState.IDLE
        raw["site"] = self.site
        raw["source"] = SampleSource.MQTT
        # A reading that is no number, not finite, out of range or over a cap costs that field: left out,
        # made from the rest and named (MinerSample.refused), as a polled miner's is. One validation pass and,
        # when readings failed, one more without them: never a pass per field.
        reasons = _refused_readings(raw)
        for name in reasons:
            del raw[name]
        try:
            sample = MinerSample.model_validate(raw)
        except ValidationError as e:
            failed = _failed_readings(e)
            for name in failed:
                del raw[name]
            reasons.update(failed)
            sample = MinerSample.model_validate(raw)
        given = sample.unusable  # what the publisher itself named
        # Finite but beyond what the model could do (a hashrate of 1e308): refused and kept out of cost too.
        sample = plausibility.check(sample.refused(reasons) if reasons else sample)
        refused = [name for name in sample.unusable if name not in given] if sample.unusable is not given else []
        if not sample.miner.isprintable():
            # No device names itself so: a control character forges log lines and recolours terminals, a
            # format character (bidi, zero-width) makes a look-alike of another miner's id in Home Assistant.
            raise _Dropped(INVALID, f"miner id {ascii(sample.miner[:80])} holds a control, format or other "
                                    "unprintable character")
        as_of = self._checked_ts(sample.ts, now)
        age = (now - as_of).total_seconds()
        if age > self.config.telemetry_max_age_s:
            # It could only make an offline miner; a retained one would take a slot at every start and reconnect.
            raise _Dropped(STALE, f"telemetry of {sample.miner[:80]!r} dated {as_of.isoformat()} is {age:.0f} s old, "
                                  f"more than telemetry_max_age_s ({self.config.telemetry_max_age_s:g})")
        verified, freed = self._take_slot(sample.miner, key, as_of, now)

        def update() -> bool:
            if freed is not None:  # its slot is gone: so goes what is held for it
                self._forget([freed])
                self._log.log(logging.INFO, "freed", "MQTT miner %r, offline and heard from longest ago, forgotten: "
                              "its slot goes to %r (mqtt.telemetry_max_miners %d reached)", freed[:80],
                              sample.miner[:80], self.config.telemetry_max_miners)
            held = self._telemetry.get(sample.miner)
            if held is not None and as_of < held.as_of <= now:
                return False  # an older sample arriving late
            self._telemetry[sample.miner] = _Telemetry(sample, as_of)
            if verified:
                self.live.verified_mqtt_miners.add(sample.miner)
            if sample.power_w is not None:
                self._reported_w[sample.miner] = sample.power_w
            if refused:
                with self._counts_lock:
                    self._fields_refused.update(refused)
            return True
        return update

    def _meter_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                      now: datetime) -> _Update:
        reading = MeterPayload.model_validate(data)
        key = reading.key or key
        value = MeterReading(reading.watts, self._checked_ts(reading.ts, now))
        if reading.rack is None and key in sub.outlets:
            miner = sub.outlets[key]
            # A reading no meter of it could show (1 GW on one outlet) is refused, not costed.
            self._in_bounds("outlet W", reading.watts, 0, MAX_UNIT_W, "one miner's most")
            return lambda: self._outlet_reading(miner, value)
        if reading.outlet is None and key in sub.racks:
            rack = (index, key)
            miners = tuple(sub.racks[key])
            self._in_bounds("rack W", reading.watts, 0, MAX_UNIT_W * len(miners), f"its {len(miners)} miners' most")
            return lambda: self._rack_reading(rack, miners, value)
        if reading.outlet is None and key in sub.facility:
            self._in_bounds("facility W", reading.watts, 0, MAX_FACILITY_W, "a site's most")
            return lambda: self._facility_reading(key, value)
        where = "outlets" if reading.outlet is not None else "racks" if reading.rack is not None else "outlets or racks"
        raise _Dropped(UNMAPPED, f"meter key {key!r} is not in the {where} of ingest topic {sub.topic!r}")

    def _power_price_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                            now: datetime) -> _Update:
        number = _bare_number(data)
        price = PowerPricePayload.model_validate({"usd_per_kwh": number} if number is not None else data)
        config = self.config
        self._in_bounds("power price $/kWh", price.price_usd_per_kwh, config.power_price_min_usd_kwh,
                        config.power_price_max_usd_kwh, "mqtt.power_price_min_usd_kwh/power_price_max_usd_kwh")
        live = LivePowerPrice(usd_per_kwh=price.price_usd_per_kwh, as_of=self._checked_ts(price.ts, now))
        max_age = self.power_price_max_age_s
        taken = (IngestKind.POWER_PRICE.value + STALE_SUFFIX
                 if max_age is not None and not is_fresh(live.as_of, now, max_age) else True)

        def update() -> bool | str:
            current = self.live.power_price
            # A held price from the future (this host's clock went back) must not block every later one.
            if current is None or live.as_of >= current.as_of or current.as_of > now:
                self.live.power_price = live
                return taken
            return False
        return update

    def _btc_price_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                          now: datetime) -> _Update:
        number = _bare_number(data)
        price = BtcPricePayload.model_validate({"usd": number} if number is not None else data)
        self._in_bounds("BTC price $", price.usd, self.config.btc_price_min_usd, self.config.btc_price_max_usd,
                        "mqtt.btc_price_min_usd/btc_price_max_usd")
        as_of = self._checked_ts(price.ts, now)
        taken = True if is_fresh(as_of, now, self.btc_price_max_age_s) else IngestKind.BTC_PRICE.value + STALE_SUFFIX

        def update() -> bool | str:
            current = self.live.btc_price_as_of
            if current is None or as_of >= current or current > now:
                if current is not None and self.live.btc_price_usd is not None:
                    self._btc_before = (self.live.btc_price_usd, current)
                self.live.btc_price_as_of = as_of
                self.live.btc_price_usd = price.usd
                return taken
            return False
        return update

    def _dr_target_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                          now: datetime, retained: bool = False, topic: str = "") -> _Update:
        source = sub.topic  # each dr_target topic holds its own targets: one never loosens another's
        number = _bare_number(data)
        if data is None or number == 0:
            return lambda: self.live.curtailment.withdraw_dr_targets(source, replayed=retained, topic=topic, now=now)
        if number is not None:
            if not 0 < number <= 10_000_000:
                raise _Dropped(OUT_OF_BOUNDS, f"demand-response limit {number:g} kW outside (0, 10,000,000]")
            if retained:
                raise _Dropped(RETAINED_UNDATED, "a retained bare kW limit: its window would start again at every "
                                                 "start and reconnect (retain a target with an end)")
            target = DrTarget(limit_kw=number, start=now, end=now + timedelta(seconds=self.dr_default_duration_s),
                              reason=f"MQTT {sub.topic[:80]}")
        else:
            target = DrTarget.model_validate(data)
            if (why := dr_targets.refusal(target, now)) is not None:
                raise _Dropped(OUT_OF_BOUNDS, f"demand-response target: {why}")
        replace = number is not None  # a bare limit is the topic's limit from now (Home Assistant's number)

        def update() -> bool | _Dropped:
            if self.live.curtailment.take_dr_target(source, target, now, replace=replace, topic=topic):
                return True
            return _Dropped(OUT_OF_BOUNDS, f"demand-response target refused: {source[:80]} holds "
                                           f"{dr_targets.MAX_PER_SOURCE} targets that start sooner")
        return update

    def _control_mode_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                             now: datetime, retained: bool = False, topic: str = "") -> _Update:
        if not isinstance(data, str) or data.lower() not in {m.value for m in ControlMode}:
            raise _Dropped(INVALID, f"control mode must be one of off, dry_run, on; got {str(data)[:40]!r}")
        mode = ControlMode(data.lower())

        def update() -> bool:
            return self.live.curtailment.ask_mode(mode, replayed=retained, topic=topic, now=now)
        return update

    def _kill_update(self, sub: MqttSubscription, index: int, key: str, data: Any,
                     now: datetime, retained: bool = False, topic: str = "") -> _Update:
        if isinstance(data, (str, int)) and str(data).lower() in _SWITCH_WORDS:  # (bool is an int: True -> "true")
            killed = _SWITCH_WORDS[str(data).lower()]
        elif isinstance(data, dict):
            killed = KillPayload.model_validate(data).killed
        else:
            raise _Dropped(INVALID, f"kill switch must be ON or OFF; got {str(data)[:40]!r}")

        def update() -> bool:
            return self.live.curtailment.switch_kill(killed, now, replayed=retained, topic=topic)
        return update

    # -- meters (applied under self._lock) ----------------------------------------------------

    def _facility_reading(self, key: str, reading: MeterReading) -> bool:
        current = self.live.facility_w.get(key)
        if current is not None and reading.as_of < current.as_of:
            return False  # an older reading arriving late
        self.live.facility_w[key] = reading
        return True

    def _outlet_reading(self, miner: str, reading: MeterReading) -> bool:
        current = self._outlets.get(miner)
        if current is not None and reading.as_of < current.as_of:
            return False  # an older reading arriving late
        self._outlets[miner] = reading
        self.live.metered_w[miner] = reading
        for rack in self._racks_of.get(miner, ()):
            self._share_rack(rack, reading.as_of)
        return True

    def _rack_reading(self, rack: tuple[int, str], miners: tuple[str, ...], reading: MeterReading) -> bool:
        current = self._racks.get(rack)
        if current is not None and reading.as_of < current.reading.as_of:
            return False
        self._racks[rack] = _Rack(reading, miners)
        for miner in miners:
            self._racks_of.setdefault(miner, set()).add(rack)
        self._share_rack(rack, reading.as_of)
        return True

    def _fresh(self, reading: MeterReading, now: datetime) -> bool:
        return is_fresh(reading.as_of, now, self.config.meter_max_age_s)

    def _share_rack(self, key: tuple[int, str], now: datetime) -> None:
        rack = self._racks[key]
        own = {m: self._outlets[m] for m in rack.miners if m in self._outlets and self._fresh(self._outlets[m], now)}
        rest = [m for m in rack.miners if m not in own]
        if not rest:
            return
        remaining = max(0.0, rack.reading.watts - sum(r.watts for r in own.values()))
        weights = [max(self._reported_w.get(m) or 0.0, 0.0) for m in rest]
        total = sum(weights)
        for miner, weight in zip(rest, weights):
            share = remaining * weight / total if total > 0 else remaining / len(rest)
            self.live.metered_w[miner] = MeterReading(share, rack.reading.as_of)

    # -- the poll cycle (the loop's thread) ---------------------------------------------------

    # -- the source (collector.sources.Source), on the loop's thread ----------------------------

    async def start(self) -> None:
        return None  # MqttBridge connects; messages arrive from then on

    async def announce(self, cycle: Cycle) -> None:
        """This cycle's MQTT miners (those no other source announced: a miner that is also polled keeps
        its polled sample), verified ones carrying a share of the fixed costs; and the live BTC price,
        while fresh, in place of the polled one."""
        self._pending = self.cycle_samples(cycle.ts, cycle.expected)
        verified = self.live.verified_mqtt_miners
        for sample in self._pending:
            cycle.expect(sample.miner, carries_fixed_costs=sample.miner in verified)
        live = self.live
        if (cycle.network is not None and live.btc_price_usd is not None and live.btc_price_as_of is not None
                and is_fresh(live.btc_price_as_of, cycle.ts, self.btc_price_max_age_s)):
            # Fresh by its ts, it replaces the polled price and clears that one's stale flag. Older, it is
            # not used: a feed that published once, days ago, must not pass a stale price off as fresh.
            self._use_btc_price(cycle, cycle.network, live.btc_price_usd, live.btc_price_as_of)

    def _use_btc_price(self, cycle: Cycle, network: NetworkState, price: float, as_of: datetime) -> None:
        """The fresh live BTC price in place of the network source's, unless it jumped: one spoofed message
        ($1,000 in the trial, inside the bounds) made the plan sleep every miner. A price further than
        btc_price_max_jump from the network source's own fresh price is not used (the network's stands);
        with none, one that far from the last live price used (at first, the network's stand-in) is used
        only once confirmed by the next live price agreeing with it. Until then btc_price is stale, so the
        plan holds and control sends nothing."""
        jump = self.config.btc_price_max_jump

        def near(reference: float | None) -> bool:
            return reference is not None and abs(price - reference) <= jump * reference
        fetched = network.btc_price_as_of is not None and "btc_price" not in network.stale  # not a stand-in
        if fetched:
            confirmed = near(network.btc_price_usd)
        else:
            before = self._btc_before
            confirmed = near(self._btc_used or network.btc_price_usd) or (
                before is not None and is_fresh(before[1], cycle.ts, self.btc_price_max_age_s) and near(before[0]))
        if confirmed:
            self._btc_used = price
            cycle.network = network.model_copy(update={"btc_price_usd": price, "btc_price_as_of": as_of,
                                                       "stale": [s for s in network.stale if s != "btc_price"]})
            return
        if fetched:
            self._log.warning("btc_jump", "live BTC price $%g over MQTT not used: more than %g%% from the network "
                              "source's own price ($%g, fresh), which stands (mqtt.btc_price_max_jump)", price,
                              jump * 100, network.btc_price_usd)
            return
        self._log.warning("btc_jump", "live BTC price $%g over MQTT not used until the next one confirms it: more than "
                          "%g%% from the last one used ($%g); btc_price is stale meanwhile, so curtailment holds "
                          "(mqtt.btc_price_max_jump)", price, jump * 100, self._btc_used or network.btc_price_usd)
        if "btc_price" not in network.stale:
            cycle.network = network.model_copy(update={"stale": [*network.stale, "btc_price"]})

    async def collect(self, cycle: Cycle) -> None:
        pending, self._pending = self._pending, []
        for sample in pending:
            if not cycle.has(sample.miner):
                cycle.add(sample)
        self.share_racks(cycle.samples, cycle.ts)
        cycle.counters.update(self.counters())

    async def close(self) -> None:
        return None

    def cycle_samples(self, ts: datetime, skip: Container[str] = ()) -> list[MinerSample]:
        """The MQTT miners' samples for the cycle at `ts` (stamped `ts`), but for the ids in `skip`;
        a miner silent longer than telemetry_max_age_s is offline, longer than
        telemetry_evict_after_s forgotten."""
        with self._lock:
            out = []
            evicted = []
            for miner, seen in self._telemetry.items():
                if miner in skip:
                    continue
                age = (ts - seen.as_of).total_seconds()
                if age > self.config.telemetry_evict_after_s:
                    evicted.append(miner)
                elif age <= self.config.telemetry_max_age_s:
                    out.append(seen.sample.model_copy(update={"ts": ts}))
                else:
                    out.append(MinerSample.offline(miner=miner, host=seen.sample.host, port=seen.sample.port,
                                                   site=self.site, ts=ts, source=SampleSource.MQTT,
                                                   reason=f"no telemetry over MQTT for {age:.0f} s (by its ts)",
                                                   make=seen.sample.make, model=seen.sample.model))
            self._evict(evicted, ts)
            if self._before:
                self._forget_before(ts)
            ids = frozenset(self._telemetry).union(self._before) if self._ids_path is not None else frozenset()
        self._save_ids(ids)
        return out

    def _forget_before(self, ts: datetime) -> None:
        """The run before's ids: heard again, held as any; silent since this start for telemetry_evict_after_s,
        handed to the sink to clear (under self._lock)."""
        gone = []
        for miner, since in list(self._before.items()):
            if miner in self._telemetry:
                del self._before[miner]
            elif (ts - since).total_seconds() > self.config.telemetry_evict_after_s:
                del self._before[miner]
                gone.append(miner)
        if gone:
            log.info("forgot %d MQTT miner id(s) of the run before, silent since this start for more than %g s "
                     "(mqtt.telemetry_evict_after_s), e.g. %r: their retained topics cleared", len(gone),
                     self.config.telemetry_evict_after_s, gone[0][:80])
            self._evicted += gone

    def share_racks(self, samples: Iterable[MinerSample], ts: datetime) -> None:
        """Share each rack meter's watts again by the power its miners reported in this cycle (the
        shares the next cycle's costs use)."""
        with self._lock:
            for sample in samples:
                if sample.power_w is not None:
                    self._reported_w[sample.miner] = sample.power_w
            for rack in self._racks:
                self._share_rack(rack, ts)

    def _evict(self, miners: list[str], now: datetime) -> None:
        """Forget MQTT miners silent for telemetry_evict_after_s (under self._lock): their slots are
        free again and the sink clears what it published for them."""
        if not miners:
            return
        self._forget(miners)
        evict_after = self.config.telemetry_evict_after_s
        with self._ids_lock:
            for miner in miners:
                heard = self._ids.get(miner)
                # Not a slot retaken meanwhile in paho's thread (its telemetry is on its way to the loop).
                if heard is not None and (now - heard).total_seconds() > evict_after:
                    del self._ids[miner]
        log.info("forgot %d MQTT miner(s) silent for more than %g s (mqtt.telemetry_evict_after_s), e.g. %r",
                 len(miners), self.config.telemetry_evict_after_s, miners[0][:80])

    def _forget(self, miners: list[str]) -> None:
        """Drop what is held for `miners` (under self._lock; their slots are freed by the caller) and hand
        them to the sink, which clears what it published for them."""
        miners = [m for m in miners if self._telemetry.pop(m, None) is not None]
        for miner in miners:
            self._reported_w.pop(miner, None)
            self.live.verified_mqtt_miners.discard(miner)
        self._evicted_total += len(miners)
        if len(self._evicted) < 10 * self.config.telemetry_max_miners:  # no sink draining them: stop collecting
            self._evicted += miners

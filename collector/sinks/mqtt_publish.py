"""The MQTT sink: each cycle's fleet state and cost as JSON under `<prefix>/<site>/...`.

Per cycle: every miner's MinerSample (`.../miner/<miner>/state`), its cost (`.../miner/<miner>/cost`)
and its hardware health (`.../miner/<miner>/health`: problems, root cause, dollars lost), a site
summary (`.../state`), the site CostSample (`.../cost`), the site's health with the top of the repair
queue (`.../health`) and the collector's health with the ingest counters (`.../collector`). State and cost are published with the configured QoS and retain
flag. Home Assistant discovery configs go out (retained) the first time a miner is seen and when its
make, model, firmware or MAC change; the connection publishes every retained message again after a
reconnect. An MQTT miner the ingest forgets (silent for `telemetry_evict_after_s`) has its discovery
configs and retained state and cost cleared (an empty retained message on each topic), so invented
ids leave nothing behind on the broker or in Home Assistant; so does a polled address published
unidentified (as host:port) once it is published under its MAC. Topic tree: collector/mqtt/topics.py
and docs/mqtt.md.

Home Assistant's sensors expire (`expire_after`, home_assistant.expire_after_s) when their state stops
coming: every state they read is published every cycle, except a miner's plan (on change), which is
published again every PLAN_REFRESH_CYCLES cycles so that it expires only when the collector is gone. At
the first cycle, the discovery configs of curtailment entities the config no longer has (curtailment
removed: its sensors, controls and each miner's plan sensor as the miner is first published;
`mqtt_commands` off, or control `off`: the select, number and switch) are cleared with an empty retained
message, so Home Assistant keeps no control that nothing listens to.

A site not in slug form (`TX1`) had other node ids before the site's hash (home_assistant.old_site_node_id),
and they are today's of a site `tx1` that may share the broker. So the sink looks at what the broker holds
retained under them (MqttConnection.look_retained, once a run: the site's old node at the first cycle, a
miner's when this run first publishes it) and clears, with an empty retained message, only the configs that
read this site's topics (home_assistant.config_reads_under); nothing is looked at for a site in slug form.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from collector.mqtt.connection import MqttConnection
from collector.mqtt.topics import Topics
from collector.sinks import home_assistant
from collector.stages.cost_engine import counted_readings
from collector.cycle import Cycle, MinersPart
from models import CostSample, MinerSample, MinerState
from models.config import Place
from models.health import MinerHealth, Problem, SiteHealth
from models.curtailment import ControlMode, CurtailmentConfig
from models.mqtt import MqttConfig

if TYPE_CHECKING:
    from models.curtailment import CurtailmentPlan

DISCOVERY_QOS = 1
# An unchanged plan is published again every this many cycles: 1,000 miners' plans every cycle would add a
# third to the messages (3 per miner: state, cost, health); this adds 7 % and its sensor expires 2 cycles +
# keepalive_s after the period.
PLAN_REFRESH_CYCLES = 5
ROOM_WAIT_MAX_S = 2.5  # a cycle's messages wait at most this long, in all, for room at the broker (_send)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json(data: dict[str, Any]) -> bytes:
    """Strict JSON: a non-finite number (a division by zero hashrate upstream) becomes null."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False).encode()


def _iso(ts: datetime) -> str:
    """UTC as pydantic writes it in MinerSample and CostSample JSON: 2025-06-01T12:00:00Z."""
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def cost_payload(cost: CostSample, meter_gap_w: float | None = None) -> dict[str, Any]:
    """A CostSample as JSON, plus `power_meter_gap_w` (reported - metered watts) where a meter reads."""
    data = cost.model_dump(mode="json")
    if meter_gap_w is not None:
        data["power_meter_gap_w"] = meter_gap_w
    return data


def site_summary(cycle: Cycle) -> dict[str, Any]:
    """The site at this cycle. `power_w` is metered where a meter reads (the cost figures' power),
    else reported; `power_reported_w` is what the miners themselves said."""
    samples = cycle.samples
    hashrate = sum(s.hashrate_ths or 0.0 for s in samples)
    reported = sum(s.power_w or 0.0 for s in samples)
    power = cycle.cost.site.power_w if cycle.cost is not None else reported
    # J/TH over the miners the cost counts (a miner with no power reading has no 0 W): the cost's, or alike.
    if cycle.cost is not None:
        efficiency = cycle.cost.site.efficiency_j_th
    else:
        counted = [counted_readings(s) for s in samples]
        counted_ths = sum(ths for ths, _, _ in counted)
        efficiency = sum(w for _, w, _ in counted) / counted_ths if counted_ths else None
    summary: dict[str, Any] = {
        "site": cycle.site,
        "ts": _iso(cycle.ts),
        "miners": len(samples),
        "miners_mining": sum(1 for s in samples if s.state is MinerState.MINING),
        "miners_failed": cycle.failed,
        "hashrate_ths": round(hashrate, 4),
        "power_w": round(power, 1),
        "power_reported_w": round(reported, 1),
        "efficiency_j_th": round(efficiency, 3) if efficiency is not None else None,
    }
    if cycle.cost is not None:
        summary["facility_power_w"] = round(cycle.cost.site.facility_power_w, 1)
        if cycle.cost.metered_gap_w:
            summary["power_meter_gap_w"] = round(sum(cycle.cost.metered_gap_w.values()), 1)
    return summary


TOP_PROBLEMS = 5  # per miner
QUEUE_PUBLISHED = 10  # of the site's repair queue


def _problem(p: Problem) -> dict[str, Any]:
    return {"miner": p.miner, "signal": p.signal.value, "cause": p.cause.value, "severity": p.severity.value,
            "part": p.board, "usd_lost_day": p.usd_lost_day, "lost_ths": p.lost_ths, "evidence": p.evidence}


def miner_health_payload(health: MinerHealth, ts: datetime) -> dict[str, Any]:
    """The miner's health: problems (the costliest first), main root cause, dollars lost, place."""
    worst = health.worst
    return {
        "miner": health.miner, "ts": _iso(ts), "problems": len(health.problems),
        "cause": worst.cause.value if worst else None, "severity": health.severity.value if health.severity else None,
        "usd_lost_day": health.usd_lost_day, "lost_ths": health.lost_ths, "profit_usd_day": health.profit_usd_day,
        "unprofitable": health.unprofitable, "chips_dead": health.chips_dead,
        "place": _place(health.place),
        "top": [_problem(p) for p in sorted(health.problems, key=lambda p: -(p.usd_lost_day or 0))[:TOP_PROBLEMS]],
    }


def top_problem(health: SiteHealth) -> str:
    """The top of the repair queue in one line, Home Assistant's "Top of the repair queue" state: a miner id
    too long for its 255 characters is cut (with an ellipsis) so that the line still says what is wrong and
    what it costs (`queue` has the id in full)."""
    if not health.queue:
        return "none"
    top = health.queue[0]
    problem = f": {top.signal.value} ({top.cause.value})" + (
        f" ${top.usd_lost_day:.2f}/day" if top.usd_lost_day is not None else "")
    room = home_assistant.MAX_STATE_CHARS - len(problem)
    miner = top.miner if len(top.miner) <= room else top.miner[:max(room - 1, 0)] + "…"
    return home_assistant.state_text(miner + problem)


def site_health_payload(health: SiteHealth, ts: datetime) -> dict[str, Any]:
    """The site's health: counts and dollars by root cause, the top of the repair queue."""
    return {
        "site": health.site, "ts": _iso(ts), "miners": health.miners, "miners_with_problems": health.miners_with_problems,
        "problems": health.problems, "critical": health.critical,
        "usd_lost_day": None if health.usd_lost_day is None else round(health.usd_lost_day, 4),
        "lost_ths": round(health.lost_ths, 4), "unprofitable": health.unprofitable, "chips_dead": health.chips_dead,
        "measured_pue": health.measured_pue,
        "by_cause": {c.value: n for c, n in health.by_cause.items()},
        "usd_by_cause": {c.value: round(v, 4) for c, v in health.usd_by_cause.items()},
        "top_problem": top_problem(health),
        "queue": [_queued(p, health.where.get(p.miner)) for p in health.queue[:QUEUE_PUBLISHED]],
    }


def _queued(p: Problem, where: tuple[str | None, Place] | None) -> dict[str, Any]:
    """A problem of the repair queue, with where to walk to: the miner's address and place."""
    address, place = where if where is not None else (None, None)
    return {**_problem(p), "address": address, "place": None if place is None else _place(place)}


def _place(place: Place) -> dict[str, str | None]:
    return {"container": place.container, "row": place.row, "rack": place.rack, "position": place.position}


def plan_summary(plan: CurtailmentPlan) -> dict[str, Any]:
    """The curtailment plan's summary as published (and what Home Assistant's entities read)."""
    dr = plan.dr_target
    return {
        "site": plan.site, "ts": _iso(plan.ts), "strategy": plan.strategy, "control_mode": plan.control_mode,
        "killed": plan.killed, "price_usd_kwh": plan.price_usd_kwh, "price_source": plan.price_source,
        "stale": plan.stale, "stale_reason": plan.stale_reason or None, "miners_planned": plan.miners_planned,
        "miners_run": plan.miners_run, "miners_sleep": plan.miners_sleep, "miners_lower": plan.miners_lower,
        "changes": plan.changes, "held": plan.held, "deferred": plan.deferred,
        "miners_off_plan": plan.miners_off_plan, "planned_kw": round(plan.planned_kw, 3), "always_on_kw": round(plan.always_on_kw, 3),
        "drawn_kw": round(plan.drawn_kw, 3),
        "shed_kw": round(plan.shed_kw, 3),
        "dr_limit_kw": dr.limit_kw if dr is not None else None, "dr_shed_kw": dr.shed_kw if dr is not None else None,
        "dr_until": _iso(dr.end) if dr is not None else None, "dr_met": plan.dr_met if dr is not None else None,
        "dr_gap_usd_h": round(plan.dr_gap_usd_h, 4) if dr is not None else None,
        "saved_usd_day": round(plan.saved_usd_day, 4), "energy_saved_kwh_day": round(plan.energy_saved_kwh_day, 3),
        "btc_forgone_day": plan.btc_forgone_day, "saved_usd_total": round(plan.saved_usd_total, 4),
        "energy_saved_kwh_total": round(plan.energy_saved_kwh_total, 3), "btc_forgone_total": plan.btc_forgone_total,
    }


MAX_PLACEHOLDERS = 200_000  # ids and addresses remembered (as many as a fleet has)


class MqttSink:
    def __init__(self, connection: MqttConnection, topics: Topics, config: MqttConfig, *,
                 stats: Callable[[], dict[str, Any]] | None = None,
                 evicted: Callable[[], list[str]] | None = None, curtailment: CurtailmentConfig | None = None,
                 interval_s: float = 10.0) -> None:
        self.connection = connection
        self.curtailment = curtailment
        self._plans: dict[str, tuple[str, datetime]] = {}  # miner -> the plan last published for it, and when
        self._plan_refresh_s = PLAN_REFRESH_CYCLES * interval_s
        self._expire_after = home_assistant.expire_after_s(interval_s, config.keepalive_s)
        self._plan_expire_after = home_assistant.expire_after_s(interval_s, config.keepalive_s, PLAN_REFRESH_CYCLES)
        self._curtailment_discovered = False
        self._gone_cleared = False  # the configs of entities this config does not have: cleared at the first cycle
        self.topics = topics
        self.config = config
        self._stats = stats
        self._evicted = evicted
        self._discovered: dict[str, tuple[str | None, ...]] = {}  # miner -> device signature published
        # A polled address first seen unidentified is published under `host:port`; once identified its id
        # is the MAC and the placeholder's retained topics and Home Assistant device are cleared.
        self._placeholders: set[str] = set()
        self._identified: list[str] = []
        self._ids: set[str] = set()  # ids published so far: only a new one can be a placeholder or replace one
        self._site_discovered: bool | None = None  # None: not yet; else whether cost sensors were included
        # How long a cycle's messages may wait for room at the broker (MAX_UNACKED waiting), all parts together:
        # a quarter of the interval, at most ROOM_WAIT_MAX_S, so a slow broker never holds a cycle up for long.
        self._room_wait_s = min(interval_s / 4, ROOM_WAIT_MAX_S)
        self._room_for: datetime | None = None  # the cycle the budget is for
        self._room_until = 0.0  # monotonic

    async def write_miners(self, part: MinersPart) -> None:
        if part.ts != self._room_for:  # a new cycle: its budget for waiting on the broker
            self._room_for, self._room_until = part.ts, time.monotonic() + self._room_wait_s
        await asyncio.to_thread(self._send, self.miner_messages(part))

    async def write(self, cycle: Cycle) -> None:
        if cycle.ts != self._room_for:
            self._room_for, self._room_until = cycle.ts, time.monotonic() + self._room_wait_s
        await asyncio.to_thread(self._send, self.cycle_messages(cycle))

    def close(self) -> None:
        """Nothing to do: the connection belongs to MqttBridge, which closes it (status `offline`)."""

    def _send(self, messages: list[Message]) -> None:
        # A 10,000-miner cycle is ~30,000 messages, a local Mosquitto acknowledges ~16,000 a second, and past
        # MAX_UNACKED waiting a message is skipped (a retained one held for later): so this thread waits for room,
        # within the cycle's budget, rather than skip part of every cycle.
        connection = self.connection
        for m in messages:
            if connection.full:
                connection.wait_for_room(self._room_until)
            connection.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

    def miner_messages(self, part: MinersPart) -> list[Message]:
        """Discovery (new or changed devices), state and cost of a slice of the cycle's miners."""
        qos, retain = self.config.qos, self.config.retain
        out = self._miner_discovery(part.samples, health=part.health is not None)
        ids = self._ids
        old_nodes = []
        for sample in part.samples:
            if sample.miner not in ids:
                self._new_id(sample)
                if self.config.discovery:
                    old_nodes.append(home_assistant.old_miner_node_id(self.topics.site, sample.miner))
                if self.curtailment is None and self.config.discovery:
                    out += self._clear_plan(sample.miner)
            out.append(Message(self.topics.miner_state(sample.miner), sample.model_dump_json().encode(), qos, retain))
        for cost in part.costs or ():
            assert cost.miner is not None  # miner scope
            out.append(Message(self.topics.miner_cost(cost.miner),
                               _json(cost_payload(cost, part.metered_gap_w.get(cost.miner))), qos, retain))
        for health in part.health or ():
            out.append(Message(self.topics.miner_health(health.miner), _json(miner_health_payload(health, part.ts)),
                               qos, retain))
        self._look_at_old_nodes(old_nodes)
        return out

    def _new_id(self, sample: MinerSample) -> None:
        """An id not published before: an unidentified address's placeholder, or the id that replaces one."""
        if len(self._ids) < MAX_PLACEHOLDERS:
            self._ids.add(sample.miner)
        address = f"{sample.host}:{sample.port}"
        if sample.miner == address:
            if len(self._placeholders) < MAX_PLACEHOLDERS:
                self._placeholders.add(address)
        elif address in self._placeholders:
            self._placeholders.discard(address)
            self._identified.append(address)

    def cycle_messages(self, cycle: Cycle) -> list[Message]:
        """The site's discovery, state and cost, and the collector's health, at the end of a cycle."""
        qos, retain = self.config.qos, self.config.retain
        identified, self._identified = self._identified, []
        out = self._clear_gone() + self._site_discovery(cycle) + self._clear(identified) + self._clear_evicted()
        out.append(Message(self.topics.site_state, _json(site_summary(cycle)), qos, retain))
        if cycle.cost is not None:
            gaps = cycle.cost.metered_gap_w
            site_gap = round(sum(gaps.values()), 1) if gaps else None
            out.append(Message(self.topics.site_cost, _json(cost_payload(cycle.cost.site, site_gap)), qos, retain))
        if cycle.health is not None:
            out.append(Message(self.topics.site_health, _json(site_health_payload(cycle.health, cycle.ts)), qos, retain))
        out.append(Message(self.topics.collector, _json(self._health(cycle)), qos, retain))
        if cycle.curtailment is not None:
            out += self.curtailment_messages(cycle.curtailment)
        return out

    def curtailment_messages(self, plan: CurtailmentPlan) -> list[Message]:
        """The plan's summary, each miner's plan when it changes (and on first sight), control's events,
        and the Home Assistant entities the first time."""
        qos, retain = self.config.qos, self.config.retain
        out = []
        if self.config.discovery and not self._curtailment_discovered:
            self._curtailment_discovered = True
            out += [Message(topic, _json(payload), DISCOVERY_QOS, True) for topic, payload in
                    home_assistant.curtailment_configs(self.topics, self.config.discovery_prefix,
                                                       commands=self._commands(), expire_after=self._expire_after,
                                                       mode_cap=self._mode_cap())]
        out.append(Message(self.topics.curtailment_state, _json(plan_summary(plan)), qos, retain))
        advice = {a.miner: a for a in plan.advice}
        published = self._plans
        ts = _iso(plan.ts)
        refresh_before = plan.ts - timedelta(seconds=self._plan_refresh_s)
        for miner, key in plan.keys.items():
            a = advice.get(miner)
            signature = f"{key}|{a.action if a is not None else 'run'}"
            last = published.get(miner)
            if last is not None and last[0] == signature and last[1] > refresh_before:
                continue  # unchanged, and published recently enough for its sensor not to expire
            if self.config.discovery and last is None:
                topic, payload = home_assistant.miner_plan_config(self.topics, miner, self.config.discovery_prefix,
                                                                  expire_after=self._plan_expire_after)
                out.append(Message(topic, _json(payload), DISCOVERY_QOS, True))
            published[miner] = (signature, plan.ts)
            body = ({"ts": ts, "action": a.action, "mode": a.key or None, "reason": a.reason, "kw": round(a.kw, 3),
                     "held": a.held, "dr": a.dr} if a is not None else
                    {"ts": ts, "action": "run", "mode": key or None, "reason": "running as usual"})
            out.append(Message(self.topics.miner_plan(miner), _json(body), qos, True))
        for e in plan.events:
            out.append(Message(self.topics.curtailment_actions, _json({
                "ts": _iso(e.ts), "miner": e.miner, "action": e.action, "result": e.result, "why": e.reason,
                "detail": e.detail, "command": e.command, "kw": round(e.kw, 3), "attempt": e.attempt,
                "mode": e.mode}), qos, False))
        return out

    def _commands(self) -> bool:
        """Whether Home Assistant gets the controls: only when the collector listens to their topics
        (collector.pipeline.curtailment_subscriptions)."""
        c = self.curtailment
        return c is not None and c.control.mqtt_commands and c.control.mode is not ControlMode.OFF

    def _mode_cap(self) -> str:
        return self.curtailment.control.mode.value if self.curtailment is not None else ControlMode.ON.value

    def _clear_gone(self) -> list[Message]:
        """Once, at the first cycle: empty retained messages on the discovery configs of the site's curtailment
        entities this config does not have (a previous run's), and on the curtailment state without curtailment;
        and a look at the site's node id before the site's hash, where that differs (_look_at_old_nodes)."""
        if self._gone_cleared or not self.config.discovery:
            return []
        self._gone_cleared = True
        prefix = self.config.discovery_prefix
        every = home_assistant.curtailment_config_topics(self.topics, prefix)
        if self.curtailment is None:
            gone = [*every, self.topics.curtailment_state]
        else:
            kept = {topic for topic, _ in home_assistant.curtailment_configs(self.topics, prefix,
                                                                            commands=self._commands())}
            gone = [topic for topic in every if topic not in kept]
        self._look_at_old_nodes([home_assistant.old_site_node_id(self.topics.site)])
        return [Message(topic, b"", DISCOVERY_QOS, True) for topic in gone]

    def _look_at_old_nodes(self, node_ids: list[str | None]) -> None:
        """Have the connection look at the configs retained under these node ids before the site's hash (None:
        unchanged); _clear_if_ours clears this site's. Their configs read the same topics as today's: a second
        live device in Home Assistant, a sum of hashrate counted twice."""
        prefix = self.config.discovery_prefix
        filters = [home_assistant.node_configs_filter(prefix, node_id) for node_id in node_ids if node_id is not None]
        if filters:
            self.connection.look_retained(filters, self._clear_if_ours)

    def _clear_if_ours(self, topic: str, payload: bytes) -> None:
        """A config retained under an old node id (paho's thread): cleared when it reads this site's topics; one
        that reads another's (site `tx1`'s, whose node ids these are today), or is not a config, is left."""
        if home_assistant.config_reads_under(payload, self.topics.root):
            self.connection.publish(topic, b"", qos=DISCOVERY_QOS, retain=True)

    def _clear_plan(self, miner: str) -> list[Message]:
        """Empty retained messages on a miner's plan sensor and plan topic (a previous run's, with curtailment)."""
        topic, _ = home_assistant.miner_plan_config(self.topics, miner, self.config.discovery_prefix)
        return [Message(topic, b"", DISCOVERY_QOS, True), Message(self.topics.miner_plan(miner), b"", DISCOVERY_QOS, True)]

    def _site_discovery(self, cycle: Cycle) -> list[Message]:
        if not self.config.discovery:
            return []
        with_cost = cycle.cost is not None
        if self._site_discovered is not None and (self._site_discovered or not with_cost):
            return []
        self._site_discovered = with_cost
        configs = home_assistant.site_configs(self.topics, self.config.discovery_prefix, cost=with_cost,
                                              health=cycle.health is not None, expire_after=self._expire_after)
        return [Message(topic, _json(payload), DISCOVERY_QOS, True) for topic, payload in configs]

    def _miner_discovery(self, samples: Sequence[MinerSample], *, health: bool) -> list[Message]:
        if not self.config.discovery:
            return []
        configs: list[tuple[str, dict[str, Any]]] = []
        for sample in samples:
            signature = home_assistant.device_signature(sample)
            known = self._discovered.get(sample.miner)
            # An offline sample knows nothing about the device: keep what was published before.
            if known is None or (signature != known and sample.state is not MinerState.OFFLINE):
                configs += home_assistant.miner_configs(sample, self.topics, self.config.discovery_prefix,
                                                        expire_after=self._expire_after)
                # Its health comes every cycle only with a health stage: else it never expires (it stays unknown).
                configs.append(home_assistant.miner_problem_config(sample, self.topics, self.config.discovery_prefix,
                                                                   expire_after=self._expire_after if health else None))
                self._discovered[sample.miner] = signature
        return [Message(topic, _json(payload), DISCOVERY_QOS, True) for topic, payload in configs]

    def _clear_evicted(self) -> list[Message]:
        """Empty retained messages on the discovery, state and cost topics of miners the ingest forgot (this run
        published them, or the run before: `everything`, as this run's books do not know)."""
        return [] if self._evicted is None else self._clear(self._evicted(), everything=True)

    def _clear(self, miners: Iterable[str], *, everything: bool = False) -> list[Message]:
        """Empty retained messages on the discovery, state, cost and plan topics of `miners` (ids gone): those
        this run published, or (`everything`) each a run may have."""
        out = []
        for miner in miners:
            topics = []
            if self._discovered.pop(miner, None) is not None or (everything and self.config.discovery):
                topics += home_assistant.miner_config_topics(self.topics.site, miner, self.config.discovery_prefix)
            if self._plans.pop(miner, None) is not None or (everything and self.curtailment is not None):
                topics.append(self.topics.miner_plan(miner))
                if self.config.discovery:
                    topics.append(home_assistant.miner_plan_config(self.topics, miner, self.config.discovery_prefix)[0])
            if self.config.retain:
                topics += [self.topics.miner_state(miner), self.topics.miner_cost(miner), self.topics.miner_health(miner)]
            out += [Message(topic, b"", DISCOVERY_QOS, True) for topic in topics]
        return out

    def _health(self, cycle: Cycle) -> dict[str, Any]:
        conn = self.connection
        health: dict[str, Any] = {
            "ts": _iso(cycle.ts),
            "poll_duration_s": round(cycle.poll_s, 3),
            "miners_polled": len(cycle.samples),
            "miners_failed": cycle.failed,
            "mqtt": {"connects": conn.connects, "published": conn.published, "skipped": conn.skipped,
                     "refused": conn.refused, "unacked": conn.unacked,
                     "invalid_topics": conn.invalid_topics},
        }
        if self._stats is not None:
            health["ingest"] = self._stats()
        return health

"""The composition root: the one place that builds sources, stages and sinks from the configuration.

    sources ──> cycle ──> stages ──> sinks

`build` is what `hashfleet collect` and `hashfleet watch` run, what the benchmarks measure and what
the tests drive, so what is measured is what runs. A new input, figure or output is one module in
sources/, stages/ or sinks/ and one line here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from collector import config as config_loader
from collector import own_folder, service, state_files
from collector.clock import utc_now
from collector.cycle import Cycle
from collector.mqtt.connection import MqttConnection
from collector.mqtt.topics import Topics, slug
from collector.sinks import Sink
from collector.layout import SiteLayout
from collector.sinks.curtailment_control import CurtailmentControl
from collector.sinks.influx import InfluxSink
from collector.sinks.local_history import LocalHistorySink
from collector.sinks.mqtt_publish import MqttSink
from collector.sinks.spool import Spool
from collector.sources import Source
from collector.sources.live_inputs import LiveInputs
from collector.sources.mqtt_ingest import MqttIngest
from collector.sources.network import NetworkInputs
from collector.sources.polled_miners import PolledMiners
from collector.sources.pools import pool_source
from collector.stages import Stage
from collector.stages.cost_stage import CostStage
from collector.stages.efficiency_book import EfficiencyBook
from collector.stages.pool_reconciliation import PoolReconciliation
from collector.stages.health import HealthStage
from collector.stages.power_truth import PowerTruth
from collector.stages.curtailment import CurtailmentStage
from models import CollectorConfig, LiveTariff
from models.curtailment import ControlMode, CurtailmentConfig
from models.mqtt import IngestKind, MqttConfig, MqttSubscription

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    config: CollectorConfig
    sources: list[Source]
    stages: list[Stage]
    sinks: list[Sink]
    polled: PolledMiners  # the miners this collector polls (its targets and identification)
    mqtt: MqttBridge | None = None
    _started: list[Source] = field(default_factory=list, repr=False)

    async def start(self) -> None:
        """Connect MQTT (MqttConnectError if the broker refuses the first connection), start every source."""
        if self.mqtt is not None:
            await self.mqtt.start()
        for source in self.sources:
            try:
                await source.start()
            except asyncio.CancelledError:  # stopped while starting: stopped with the others
                self._started.append(source)
                raise
            self._started.append(source)

    async def run(self, *, cycles: int | None = None, stop: asyncio.Event | None = None,
                  after: datetime | None = None, on_cycle_start: Callable[[Cycle], None] | None = None,
                  now: Callable[[], datetime] = utc_now) -> int:
        """Start, run cycles until `cycles` are done or `stop` is set, stop the sources; the number of cycles.
        A stop while starting (waiting for the broker's first answer, the first round of identification)
        stops at once: there is no cycle to finish. `now`: the wall clock the cycles are stamped by."""
        try:
            if not await self._started_unless(stop):
                return 0
            return await self.run_cycles(cycles=cycles, stop=stop, after=after, on_cycle_start=on_cycle_start,
                                         now=now)
        finally:
            await self.stop()

    async def _started_unless(self, stop: asyncio.Event | None) -> bool:
        """`start()`, or False when `stop` is set first (the start is cancelled)."""
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            await asyncio.wait([t for t in (starting, stopping) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopping is not None:
                stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return False
        starting.result()  # (MqttConnectError: the broker refused the first connection)
        return True

    async def run_cycles(self, *, cycles: int | None = None, stop: asyncio.Event | None = None,
                         after: datetime | None = None, on_cycle_start: Callable[[Cycle], None] | None = None,
                         now: Callable[[], datetime] = utc_now) -> int:
        """The cycles alone, once started (collector.service.run)."""
        return await service.run(self.sources, self.stages, self.sinks, site=self.config.site,
                                 interval_s=self.config.interval_s, shard=self.config.shard, cycles=cycles,
                                 stop=stop, after=after, on_cycle_start=on_cycle_start, now=now)

    async def stop(self) -> None:
        """Let the sinks' work in flight finish (control's commands), stop the sources that started, last
        first, then MQTT (status offline, then disconnect); the stages save what they keep across restarts."""
        for sink in self.sinks:
            drain = getattr(sink, "drain", None)  # optional: only a sink with work on the loop has one
            if drain is not None:
                try:
                    await drain()
                except Exception:
                    log.exception("%s did not drain cleanly", type(sink).__name__)
        for stage in self.stages:
            try:
                stage.close()
            except Exception:  # one stage's failure to save must not keep the others from saving
                log.exception("%s did not close cleanly", type(stage).__name__)
        while self._started:
            source = self._started.pop()
            try:
                await source.close()
            except Exception:  # stopping one must not leave the others running
                log.exception("%s did not stop cleanly", type(source).__name__)
        if self.mqtt is not None:
            self.mqtt.close()

    def saved_state(self, directory: Path) -> str:
        """One line on what the stages and sinks took up from `directory` as they were built (the start's INFO
        line: an upgrade that carried everything and one that found nothing must not look alike)."""
        told, found = [], False
        for stage in self.stages:
            if isinstance(stage, CostStage) and stage.totals_path is not None:
                totals = stage.totals
                found |= totals is not None
                if totals is None:
                    told.append("no cost totals")
                else:
                    as_of, month = totals.as_of.isoformat(timespec="seconds"), totals.site_month().all_in_usd
                    told.append(f"cost totals as of {as_of} (month ${month:,.2f})")
            elif isinstance(stage, HealthStage) and stage.save_state:
                days = stage.history_days()
                found |= days > 0
                told.append(f"health history {days} day(s)")
        for sink in self.sinks:
            if isinstance(sink, CurtailmentControl):
                owned = len(set(sink.slept) | set(sink.moved))
                commands = sink.live.curtailment
                held = [*(["killed"] if commands.killed else []),
                        *([f"mode {commands.mode.value}"] if commands.mode is not None else []),
                        *([f"{n} DR target(s)"] if (n := len(list(commands.dr_targets))) else [])]
                found |= owned > 0 or bool(held)
                told += [f"control owns {owned} miner(s)", "commands: " + (" / ".join(held) or "none")]
            elif isinstance(sink, (InfluxSink, LocalHistorySink)):
                batches = len(sink.spool.batches())
                found |= batches > 0
                told.append(f"spool: {batches} batch(es) "
                            + ("waiting" if isinstance(sink, InfluxSink) else "of history"))
        if not found:
            return f"no saved state in {directory}: starting fresh"
        return f"state from {directory}: " + "; ".join(told)

    def close(self) -> None:
        """Close the sinks (a spool's last delivery, bounded in time)."""
        for sink in self.sinks:
            sink.close()


def build(config: CollectorConfig, *, sinks: Sequence[Sink] = (), service_mode: bool = False) -> Pipeline:
    """The pipeline `config` describes, writing to `sinks`. `service_mode` (`hashfleet collect`, not
    `watch`): MQTT in and out, and the running cost totals kept on disk — a watch must never mark the
    collector offline on MQTT nor race it for the totals file."""
    tariff = config.shard_economics.tariff if config.shard_economics is not None else None
    mqtt = (MqttBridge(config.mqtt, config.site, curtailment=config.curtailment, interval_s=config.interval_s,
                       btc_price_max_age_s=config.network.max_age_s if config.network is not None else 900.0,
                       power_price_max_age_s=tariff.max_age_s if isinstance(tariff, LiveTariff) else None)
            if service_mode and config.mqtt is not None else None)
    live = mqtt.live if mqtt is not None else LiveInputs()
    if mqtt is not None:
        mqtt.ingest.keep_ids_in(config_loader.spool_directory(config) / state_files.MQTT_MINERS)
    polled = PolledMiners(config)
    # Announced in this order: the network state first (costing needs it from the first sample on),
    # MQTT miners after the polled ones (a miner both polled and publishing keeps its poll).
    sources: list[Source] = [polled]
    stages: list[Stage] = []
    sinks = list(sinks)
    truth = PowerTruth()  # learned by the health stage, applied by the cost stage
    economics = config.shard_economics
    if economics is not None and config.network is not None:
        sources.insert(0, NetworkInputs(config.network))
        totals = config_loader.spool_directory(config) / state_files.COST_TOTALS if service_mode else None
        stages.append(CostStage(config.site, economics, live=live, totals_path=totals,
                                forget_after_s=config.forget_unseen_miners_h * 3600,
                                power_correction=truth.correction, measured_pue=truth.measured_pue))
        if config.curtailment is not None:
            stages.append(curtailment_stage(config, live, service_mode))
            sinks[:0] = curtailment_control(config, live, service_mode)  # first: the other sinks see its actions
    # After the cost stage: it prices each miner's problems with the part's cost figures. Its history
    # file is read by every command and written only by the service.
    health = HealthStage(config.site, economics=economics, layout=SiteLayout.load(config.layout), live=live,
                         truth=truth, save=service_mode,
                         state_path=config_loader.spool_directory(config) / state_files.HEALTH)
    stages.append(health)
    # A unit down at the start is no empty address of a range: reported offline where it last answered.
    polled.expect_where_answered(health.answered_at(time.time() - config.forget_unseen_miners_h * 3600))
    if mqtt is not None:
        sources.append(mqtt.ingest)
        sinks.append(mqtt.sink)
    sources += [pool_source(pool) for pool in config.pools]
    if config.pools:  # after the cost stage: it weighs the day's spend the cost stage counted
        stages.append(PoolReconciliation(config.site, config.pools, economics=economics,
                                         settings=config.reconciliation, save=service_mode,
                                         state_path=config_loader.spool_directory(config) / state_files.POOL_DAYS))
    return Pipeline(config, sources, stages, sinks, polled, mqtt)


def curtailment_stage(config: CollectorConfig, live: LiveInputs, service_mode: bool) -> CurtailmentStage:
    """The advice (collector/stages/curtailment.py); its measured efficiencies kept on disk in service mode,
    and otherwise (`hashfleet advise`) read from there, never written: advice weighs what the collector
    measured, not nameplates."""
    assert config.curtailment is not None and config.shard_economics is not None
    path = config_loader.spool_directory(config) / state_files.CURTAILMENT_EFFICIENCY
    stage = CurtailmentStage(config.site, config.shard_economics, config.curtailment, live=live,
                             layout=SiteLayout.load(config.layout), state_path=path if service_mode else None)
    if not service_mode and path.exists():
        stage.book = EfficiencyBook.load(path, time.time(), set_aside=False)
    return stage


def curtailment_control(config: CollectorConfig, live: LiveInputs, service_mode: bool) -> list[Sink]:
    """The control sink, in `hashfleet collect` only and only when the config turns it on (dry_run or on)."""
    assert config.curtailment is not None
    control = config.curtailment.control
    if not service_mode or control.mode is ControlMode.OFF:
        return []
    directory = config_loader.spool_directory(config)
    sink = CurtailmentControl(control, config.site, live=live, layout=SiteLayout.load(config.layout),
                              state_path=directory / state_files.CURTAILMENT_CONTROL,
                              audit_path=control.audit_log or directory / state_files.CURTAILMENT_ACTIONS)
    live.curtailment.mode_cap = control.mode
    live.curtailment.keep_in(commands_path(config))  # the MQTT kill switch survives a restart
    try:
        sink.audit.check()  # type: ignore[union-attr]  # (control acts on nothing it cannot record)
    except OSError as e:
        raise ControlSetupError(f"curtailment.control.audit_log {e.filename or sink.audit.path}: cannot be "  # type: ignore[union-attr]
                                f"appended to ({e.strerror or e})") from None
    return [sink]


def commands_path(config: CollectorConfig) -> Path:
    """Where the service keeps the curtailment commands set over MQTT (collector/sources/curtailment_commands.py):
    with control dry_run or on, read at start and written on every change."""
    return config_loader.spool_directory(config) / state_files.CURTAILMENT_COMMANDS


def dr_target_topics(config: MqttConfig, site: str, curtailment: CurtailmentConfig | None) -> frozenset[str]:
    """The MQTT topics that are demand-response sources (collector/sources/dr_targets.py): each `dr_target`
    ingest topic, and Home Assistant's number when the config subscribes it."""
    subscriptions = [*config.ingest, *curtailment_subscriptions(Topics(config.topic_prefix, site), curtailment)]
    return frozenset(s.topic for s in subscriptions if s.kind is IngestKind.DR_TARGET)


class ControlSetupError(Exception):
    """Curtailment control cannot start as configured (its audit log cannot be written); the message says why."""


class SpoolInUseError(Exception):
    """The storage sink's spool cannot be used; the message says which and why."""


def storage_sink(config: CollectorConfig) -> InfluxSink | LocalHistorySink:
    """InfluxDB through the spool; without InfluxDB, the spool itself keeps the local history.
    SpoolInUseError when the spool directory is taken or unusable."""
    from collector.sinks.spool import SpoolInUse

    directory = config_loader.spool_directory(config)
    max_bytes = int(config.spool.max_mb * 1024 * 1024)
    try:
        if config.influx is not None:
            return InfluxSink(config.influx, Spool(directory, max_bytes=max_bytes))
        log.warning("no InfluxDB configured (INFLUX_URL or influx: in the config): keeping local history in %s for "
                    "spool.retention_h %g h or up to spool.max_mb %g MB, whichever comes first (hashfleet report "
                    "reads it)", directory, config.spool.retention_h, config.spool.max_mb)
        return LocalHistorySink(Spool(directory, max_bytes=max_bytes, retention_s=config.spool.retention_h * 3600),
                                interval_s=config.interval_s)
    except (SpoolInUse, own_folder.UnsafeFolder) as e:
        raise SpoolInUseError(str(e)) from None
    except OSError as e:
        raise SpoolInUseError(f"spool directory {directory}: {e.strerror or e}") from None


class MqttBridge:
    """One MQTT connection, the ingest (a source) and the publishing sink of one collector."""

    def __init__(self, config: MqttConfig, site: str, *, live: LiveInputs | None = None,
                 curtailment: CurtailmentConfig | None = None, btc_price_max_age_s: float = 900.0,
                 interval_s: float = 10.0, power_price_max_age_s: float | None = None) -> None:
        self.config = config
        self.curtailment = curtailment
        self.topics = Topics(config.topic_prefix, site)
        self.live = live or LiveInputs(meter_max_age_s=config.meter_max_age_s)
        self.live.facility_keys = frozenset(key for sub in config.ingest for key in sub.facility)
        ingest = config.model_copy(update={"ingest": [*config.ingest, *curtailment_subscriptions(self.topics, curtailment)]})
        self.live.curtailment.dr_sources = dr_target_topics(config, site, curtailment)
        self.ingest = MqttIngest(ingest, site, self.live, dr_default_duration_s=(
            curtailment.dr_default_duration_s if curtailment is not None else 3600.0),
            btc_price_max_age_s=btc_price_max_age_s, power_price_max_age_s=power_price_max_age_s)
        client_id = config.client_id or f"hashfleet-{slug(site)}-{secrets.token_hex(3)}"
        self.connection = MqttConnection(config, status_topic=self.topics.status, client_id=client_id,
                                         subscriptions=self.ingest.subscriptions, on_message=self.ingest.handle)
        self.sink = MqttSink(self.connection, self.topics, config, stats=self.ingest.stats,
                             evicted=self.ingest.take_evicted, curtailment=curtailment, interval_s=interval_s)

    async def start(self) -> None:
        """Bind the ingest to the running loop and connect (waits for the first CONNACK, bounded)."""
        if warning := unguarded_commands(self.config, self.curtailment):
            log.warning("%s", warning)
        self.ingest.bind(asyncio.get_running_loop())
        await asyncio.to_thread(self.connection.start)

    def close(self) -> None:
        self.connection.close()


def unguarded_commands(config: MqttConfig, curtailment: CurtailmentConfig | None) -> str | None:
    """A warning when MQTT may steer curtailment control (its kill switch; with mqtt_commands the mode and a
    demand-response limit; demand-response targets) and nothing says who may: no username (an anonymous
    broker lets anyone publish them, trial T). (Not TLS: the stack's collector reaches its broker over the
    compose network, and docs/deployment.md says what a broker published on the LAN needs.)"""
    if curtailment is None or curtailment.control.mode is ControlMode.OFF:
        return None
    steer = ["its kill switch"]
    if curtailment.control.mqtt_commands:
        steer += ["its mode (down to off)", "a demand-response limit"]
    if any(sub.kind is IngestKind.DR_TARGET for sub in config.ingest):
        steer += ["demand-response targets"]
    what = f"curtailment control ({curtailment.control.mode.value}) takes {', '.join(steer)} over MQTT"
    if not config.username:
        return (f"{what} from broker {config.host}:{config.port} with no username: on a broker that lets anyone "
                "in, anyone on the network can set them; give the collector a user and the broker an ACL "
                "(docs/mqtt.md, ACL)")
    return None


def curtailment_subscriptions(topics: Topics, curtailment: CurtailmentConfig | None) -> list[MqttSubscription]:
    """The curtailment command topics the ingest listens to: the kill switch whenever control may act,
    the control mode and demand-response limit (Home Assistant's entities) only when the config allows."""
    if curtailment is None or curtailment.control.mode is ControlMode.OFF:
        return []
    subscriptions = [MqttSubscription(topic=topics.curtailment_set("kill"), kind=IngestKind.CURTAILMENT_KILL)]
    if curtailment.control.mqtt_commands:
        subscriptions += [MqttSubscription(topic=topics.curtailment_set("mode"), kind=IngestKind.CURTAILMENT_MODE),
                          MqttSubscription(topic=topics.curtailment_set("dr_limit_kw"), kind=IngestKind.DR_TARGET)]
    return subscriptions

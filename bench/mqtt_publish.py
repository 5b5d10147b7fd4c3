"""What the MQTT sink costs a cycle: `python -m bench.mqtt_publish --miners 1000,10000 --cycles 12`.

The cycles are made as the service makes them (collector.pipeline.build with curtailment: the network
source announces, each stage sees the fleet in parts of PART_MINERS; a synthetic fleet of ready samples
from bench.curtailment, the price steady so that no miner's plan changes), then the MQTT sink
(collector.sinks.mqtt_publish.MqttSink) builds each part's and the cycle's messages: its CPU seconds (the
thread's) are timed, and its messages counted. The connection is not the broker's: the sink's messages
are what is measured (topics, JSON, discovery), not paho's sending. The first cycle (discovery for every
miner) is reported apart; warm: the median of the others, and the messages per cycle over them. `--site TX1`
(a site not in slug form) adds the look at the node ids it had before the site's hash to the first cycle (the
filters handed to the connection; what the broker answers is the connection's, not measured here).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from datetime import datetime, timedelta, timezone

from bench.curtailment import config, fleet
from collector import pipeline, service
from collector.cycle import PART_MINERS, Cycle, MinersPart
from collector.mqtt.topics import Topics
from collector.sinks.mqtt_publish import MqttSink
from collector.stages.curtailment import CurtailmentStage
from models import LivePowerPrice
from models.mqtt import MqttConfig


class _Counts:
    """What MqttSink._health reads of its connection, and a look at retained messages that looks at nothing."""
    connects = published = skipped = refused = unacked = invalid_topics = 0

    def look_retained(self, filters, handler) -> None:
        pass


def cycles(n_miners: int, n_cycles: int) -> list[tuple[list[MinersPart], Cycle]]:
    """`n_cycles` cycles 10 s apart of `n_miners` miners through the stages, with their parts."""
    cfg = config({"min_on_s": 0, "min_off_s": 0, "warmup_s": 0})
    built = pipeline.build(cfg)
    sources = [s for s in built.sources if s is not built.polled]
    live = next(stage.live for stage in built.stages if isinstance(stage, CurtailmentStage))
    start = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    samples = fleet(n_miners, start)
    out: list[tuple[list[MinersPart], Cycle]] = []

    async def run() -> None:
        for k in range(n_cycles):
            ts = start + timedelta(seconds=10 * k)
            live.power_price = LivePowerPrice(usd_per_kwh=0.045, as_of=ts)
            cycle = Cycle("bench", ts)
            for source in sources:
                await source.announce(cycle)
            for stage in built.stages:
                stage.begin(cycle)
            stamped = [s.model_copy(update={"ts": ts}) for s in samples]
            parts = []
            for i in range(0, len(stamped), PART_MINERS):
                part = MinersPart(cycle.site, ts, stamped[i:i + PART_MINERS])
                cycle.samples.extend(part.samples)
                for stage in built.stages:
                    stage.part(cycle, part)
                parts.append(part)
            for stage in built.stages:
                stage.finish(cycle)
            out.append((parts, cycle))

    service.run_event_loop(run())
    return out


def sink_times(made: list[tuple[list[MinersPart], Cycle]], site: str = "bench") -> list[tuple[float, int, int]]:
    """Per cycle: the sink's CPU seconds, its messages and their payload bytes."""
    cfg = MqttConfig(host="bench")
    extra = {"interval_s": 10.0} if "interval_s" in inspect.signature(MqttSink).parameters else {}
    sink = MqttSink(_Counts(), Topics(cfg.topic_prefix, site), cfg,  # type: ignore[arg-type]
                    curtailment=config({"min_on_s": 0}).curtailment, **extra)
    out = []
    for parts, cycle in made:
        cpu = time.thread_time()
        messages = [m for part in parts for m in sink.miner_messages(part)] + sink.cycle_messages(cycle)
        out.append((time.thread_time() - cpu, len(messages), sum(len(m.payload) for m in messages)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_publish", description=__doc__.splitlines()[0])
    parser.add_argument("--miners", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3, help="each cycle's figure is its fastest run")
    parser.add_argument("--site", default="bench", help="the site the sink publishes for")
    args = parser.parse_args(argv)
    print(f"{'miners':>7} {'first cycle ms':>15} {'first msgs':>11} {'warm median ms':>15} {'warm max ms':>12} "
          f"{'msgs/cycle':>11} {'msgs/s @10s':>11} {'kB/cycle':>9}")
    for n in (int(x) for x in args.miners.split(",")):
        made = cycles(n, args.cycles)
        runs = [sink_times(made, args.site) for _ in range(max(1, args.repeat))]
        cpu = [min(r[k][0] for r in runs) for k in range(len(made))]
        warm = runs[0][1:]
        msgs = statistics.mean(m for _, m, _ in warm)
        kb = statistics.mean(b for _, _, b in warm) / 1000
        print(f"{n:>7,} {1000 * cpu[0]:>15.1f} {runs[0][0][1]:>11,} {1000 * statistics.median(cpu[1:]):>15.1f} "
              f"{1000 * max(cpu[1:]):>12.1f} "
              f"{msgs:>11,.0f} {msgs / 10:>11,.0f} {kb:>9,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

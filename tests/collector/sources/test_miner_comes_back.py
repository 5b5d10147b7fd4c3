"""A known miner that comes back after an outage is polled again within a couple of cycles (trial R, finding 2).

Simulated miners over real TCP (an Avalon, and a stock Antminer found through pyasic's detection) stop listening
long enough to be handed back to identification and for its backoff to have grown past what the test allows;
then they listen again. Before the fix they stayed offline ("identifying it again") until the backoff's next try,
up to identify_backoff_max_s (600 s) later; now a handed-back miner is looked for with a connect every
identify_backoff and identified as soon as something accepts. An address that never identified keeps the backoff.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from collector.sources.polled_miners import PolledMiners
from models import CollectorConfig, MinerState
from simulators.fleet import run_fleet
from tests.support import refused

TS = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
CYCLE_S = 0.5  # the interval between the test's cycles (the service's interval_s, shortened)
BACKOFF_S = 0.25  # identify_backoff_s; identify_backoff_max_s stays at its default, 600 s
# Back when its next identification by the old backoff is further off than this: then only a quicker look
# can find it within the bound below (makes the test fail without the fix, whatever the jitter drew).
BACKOFF_GROWN_S = 6.0
MIN_OUTAGE_CYCLES = 8  # 4 s: the old backoff's 4-5 failed identifications
MAX_OUTAGE_CYCLES = 40
# Cycles after it listens again: a look, an identification (pyasic's detection of the Antminer), a poll; a few
# more than that takes for a loaded machine, still well within BACKOFF_GROWN_S.
CYCLES_TO_COME_BACK = 6


def test_a_known_miner_that_comes_back_after_a_long_outage_is_polled_within_a_few_cycles():
    never = "127.74.0.9:4028"  # nothing listens, never identified
    with run_fleet("a1566:1", base="127.74.0.1", seed=41) as avalon, \
            run_fleet("s19jpro:1", base="127.74.0.2", seed=42) as antminer:
        assert refused("127.74.0.9", 4028)
        miners = [avalon[0], antminer[0]]
        addresses = [avalon.addresses[0], antminer.addresses[0]]
        poller = PolledMiners(CollectorConfig(miners=[*addresses, never], timeout_s=0.5,
                                              identify_backoff_s=BACKOFF_S))

        async def cycle() -> dict[str, object]:
            samples = {f"{s.host}:{s.port}": s for s in (await poller.cycle(TS)).samples}
            await asyncio.sleep(CYCLE_S)  # the interval between cycles (a pace, not a readiness wait)
            return samples

        async def scenario():
            await poller.refresh()
            discovering = asyncio.create_task(poller.discover())
            try:
                first = await cycle()
                for miner in miners:
                    miner.set_faults(no_answer=True)  # the rack's power is cut
                outage = 0
                while True:  # long enough for several identifications to fail; then until the next one is looked for
                    offline = await cycle()
                    outage += 1
                    why = [(offline[a].errors or [""])[0] for a in addresses]
                    looked_for = all("identifying it again" in w and "nothing accepts a connection" in w for w in why)
                    grown = all("identifying it again" in w for w in why) and all(
                        poller._known[t].retry_at - time.monotonic() > BACKOFF_GROWN_S
                        for t in poller.targets if t.address in addresses)
                    if outage >= MIN_OUTAGE_CYCLES and (looked_for or grown) or outage >= MAX_OUTAGE_CYCLES:
                        break
                for miner in miners:
                    miner.set_faults(no_answer=False)  # power is back
                back: dict[str, int] = {}
                for n in range(1, CYCLES_TO_COME_BACK + 1):
                    samples = await cycle()
                    back.update({a: n for a in addresses if a not in back and samples[a].up})
                return first, offline, outage, back, samples
            finally:
                discovering.cancel()
                await asyncio.gather(discovering, return_exceptions=True)

        first, offline, outage, back, last = asyncio.run(scenario())
    assert all(first[a].state is MinerState.MINING for a in addresses)
    assert outage >= MIN_OUTAGE_CYCLES
    for a in addresses:
        assert offline[a].miner == first[a].miner  # offline meanwhile under its id
    assert set(back) == set(addresses), (back, outage)  # polled as mining within CYCLES_TO_COME_BACK
    assert all(last[a].miner == first[a].miner for a in addresses)
    # The address that never identified is not looked for every identify_backoff: its pyasic detection, backed off.
    assert last[never].errors[0].startswith("not identified yet: ")
    assert "nothing accepts a connection" not in last[never].errors[0]

"""A known unit identified again while its replies are broken is not taken as its make's bare class.

Trial ZF (H2): a Bitaxe whose JSON was malformed for ~10 s missed three polls and was handed back to
identification; pyasic's detection, unable to read the model then, fell back to its bare `BitAxe` class, and the
unit was read with no temperatures, fans or boards until the collector restarted, with nothing said. Now an
identification that finds a known unit's make without its model is tried again.
A simulated Bitaxe Gamma over real HTTP, read by the real poller and pyasic unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from collector.sources.polled_miners import OFFLINE_POLLS_BEFORE_REIDENTIFY, PolledMiners
from models import CollectorConfig
from simulators.fleet import run_fleet

TS = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
CYCLE_S = 0.3  # the interval between the test's cycles (a pace, not a readiness wait)
MAX_CYCLES = 80
# Handed back after OFFLINE_POLLS_BEFORE_REIDENTIFY, then identified again (0.25 s backoff, doubling) a few times
BROKEN_CYCLES = OFFLINE_POLLS_BEFORE_REIDENTIFY + 12


def test_a_bitaxe_identified_again_while_its_replies_are_broken_keeps_its_model_and_temperatures():
    with run_fleet("gamma:1", base="127.74.3.1", seed=43) as fleet:
        unit, address = fleet[0], fleet.addresses[0]
        poller = PolledMiners(CollectorConfig(miners=[address], timeout_s=1.0, identify_backoff_s=0.25))

        async def cycle():
            (sample,) = (await poller.cycle(TS)).samples
            await asyncio.sleep(CYCLE_S)
            return sample

        async def scenario():
            await poller.refresh()
            discovering = asyncio.create_task(poller.discover())
            try:
                first = await cycle()
                unit.set_faults(malformed=True)
                broken = [await cycle() for _ in range(BROKEN_CYCLES)]  # handed back; identified again while broken
                unit.set_faults(malformed=False)
                back = []
                while len(back) < MAX_CYCLES:
                    back.append(await cycle())
                    if back[-1].up and back[-1].temp_chip_max_c is not None:
                        break
                return first, broken, back
            finally:
                discovering.cancel()
                await asyncio.gather(discovering, return_exceptions=True)

        first, broken, back = asyncio.run(scenario())
    assert first.up and first.temp_chip_max_c is not None and first.model, first
    answered = [s for s in back if s.up]
    assert answered and all(s.temp_chip_max_c is not None and s.model == first.model for s in answered), answered
    told = [e for s in broken for e in s.errors if "did not tell its model" in e]
    assert told and f"read as {first.model} before" in told[0], [s.errors for s in broken]


def test_a_unit_first_identified_without_its_model_is_read_as_it_is_and_said(caplog):
    # Identified for the first time while its replies are broken (or a model pyasic does not know): taken as the
    # make's generic class, which reads less, with a warning naming the address (nothing said so before).
    with run_fleet("gamma:1", base="127.74.3.9", seed=44) as fleet:
        unit, address = fleet[0], fleet.addresses[0]
        unit.set_faults(malformed=True)
        poller = PolledMiners(CollectorConfig(miners=[address], timeout_s=1.0, identify_backoff_s=0.25))

        async def scenario():
            await poller.refresh()
            return (await poller.cycle(TS)).samples

        with caplog.at_level("WARNING", logger="collector.sources.polled_miners"):
            asyncio.run(scenario())
    assert f"{address}: identified as" in caplog.text and "without its model" in caplog.text, caplog.text

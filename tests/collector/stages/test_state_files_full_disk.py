"""The stages' state files on a full disk (a real 64 KiB tmpfs filled with a ballast file): a save that
fails raises (the stage logs it), keeps the file saved before, and leaves no temp file behind (trial I:
`health-state.tmp` stayed after 12 cycles on a full disk; the other books wrote the same way).

Mounting needs root (CI runs as root here); a fixture that cannot mount fails, it never skips."""

from datetime import datetime, timedelta, timezone

import pytest

from collector.stages import health_history, pool_days, running_totals
from collector.stages.cost_engine import advance
from collector.stages.efficiency_book import EfficiencyBook
from models import FlatTariff, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics
from tests import support

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _totals():
    sample = MinerSample(miner="m1", host="10.0.0.1", site="s1", ts=T0, state=MinerState.MINING,
                         source=SampleSource.AVALON, model="AvalonMiner 15-194", hashrate_ths=194, power_w=3600)
    network = NetworkState(difficulty=1.1e14, height=885_000, fees_btc_per_block=0.03, btc_price_usd=95_000)
    return advance(None, [sample], SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.05)), network, T0,
                   T0 + timedelta(minutes=10))


SAVES = {
    "health history": lambda path: health_history.save(path, {}, T0),
    "running totals": lambda path: running_totals.save(path, _totals()),
    "efficiency book": lambda path: EfficiencyBook().save(path),
    "pool books": lambda path: pool_days.save(path, pool_days.State()),
}


@pytest.mark.parametrize("book", SAVES)
def test_a_state_file_the_full_disk_refuses_keeps_the_old_one_and_leaves_no_temp_file(tmp_path, book):
    save = SAVES[book]
    with support.small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "state.json"
        save(path)
        before = path.read_bytes()
        support.fill(disk / "ballast")
        with pytest.raises(OSError):
            save(path)
        assert sorted(p.name for p in disk.iterdir()) == ["ballast", "state.json"]  # no state.tmp
        assert path.read_bytes() == before

"""The books on disk across a site's power cut (trial M: H4, M4). The collector box dies with the site: the
books written unsynced every few minutes may come back empty, cut short or zero-tailed, and the box may boot
with its clock days behind until NTP answers. A damaged book falls back to the copy its last save kept
(`<name>.prev`), an unusable file is set aside under a name no later one overwrites, and a book dated days
ahead of the clock is kept: control still wakes the miners it slept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.sinks import curtailment_control
from collector.sources import curtailment_commands
from collector.stages import health_history, pool_days
from collector.stages import running_totals as totals_store
from collector.stages.cost_engine import advance
from collector.stages.efficiency_book import EfficiencyBook
from models import FlatTariff, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics
from simulators.fleet import run_fleet
from tests.support import HASHFLEET

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ECONOMICS = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.06))
STATE = NetworkState(difficulty=1.5e14, height=925_000, fees_btc_per_block=0.02, btc_price_usd=95_000)
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95_000}}


def mining(miner: str, ts: datetime) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.1", site="s1", ts=ts, state=MinerState.MINING,
                       source=SampleSource.AVALON, hashrate_ths=194.0, power_w=3600.0, uptime_s=86_400)


# Each book saved with `n` miners, and read back as the miners it holds (None: nothing read).

def _save_totals(path: Path, n: int) -> None:
    miners = [mining(f"m{i}", NOW) for i in range(n)]
    totals_store.save(path, advance(None, miners, ECONOMICS, STATE, NOW - timedelta(minutes=10), NOW))


def _load_totals(path: Path) -> list[str] | None:
    loaded = totals_store.load(path, NOW)
    return None if loaded is None else sorted(loaded.month_to_date)


def _save_efficiency(path: Path, n: int) -> None:
    book = EfficiencyBook()
    for i in range(n):
        book.learn(mining(f"m{i}", NOW), NOW.timestamp(), "0", 0.0)
    book.save(path)


def _load_efficiency(path: Path) -> list[str] | None:
    return sorted(EfficiencyBook.load(path, NOW.timestamp()).miners) or None


def _save_health(path: Path, n: int) -> None:
    day = health_history.utc_day(NOW)
    health_history.save(path, {f"m{i}": health_history.MinerHistory(days=[health_history.Day(day, n=40)],
                                                                    seen_s=NOW.timestamp()) for i in range(n)}, NOW)


def _load_health(path: Path) -> list[str] | None:
    return sorted(health_history.load(path, NOW)) or None


def _save_pools(path: Path, n: int) -> None:
    state = pool_days.State(as_of=NOW)
    for i in range(n):
        state.day(NOW.date()).miner(f"m{i}", "acct.w1")[0] = 300.0
    pool_days.save(path, state)


def _load_pools(path: Path) -> list[str] | None:
    state = pool_days.load(path, NOW)
    return sorted(m for book in state.days.values() for m, _ in book.miners) or None


BOOKS = {"cost-totals.json": (_save_totals, _load_totals, "running cost totals"),
         "curtailment-efficiency.json": (_save_efficiency, _load_efficiency, "measured efficiencies"),
         "health-state.json": (_save_health, _load_health, "health history"),
         "pool-days.json": (_save_pools, _load_pools, "pool reconciliation books")}


def _empty(data: bytes) -> bytes:
    return b""


def _cut(data: bytes) -> bytes:
    return data[:len(data) * 37 // 100]


def _zero_tail(data: bytes) -> bytes:  # (ext4 after a crash: the size written, the blocks not)
    return data[:len(data) // 2] + b"\0" * (len(data) - len(data) // 2)


@pytest.mark.parametrize("damage", [_empty, _cut, _zero_tail], ids=["empty", "cut", "zero-tailed"])
@pytest.mark.parametrize("name", list(BOOKS))
def test_a_book_a_power_cut_damaged_falls_back_to_the_copy_its_last_save_kept(tmp_path, caplog, name, damage):
    save, load, what = BOOKS[name]
    path = tmp_path / name
    save(path, 1)
    save(path, 2)  # the copy it replaced: one miner
    good = path.read_bytes()
    kept = (tmp_path / f"{name}.prev").read_bytes()
    path.write_bytes(damage(good))
    assert load(path) == ["m0"]  # the previous copy, not nothing
    assert f"{what} in {path}: it is unusable (not JSON" in caplog.text
    assert "read the previous copy" in caplog.text and "what changed after it is lost" in caplog.text
    assert (tmp_path / f"{name}.unusable.1").read_bytes() == damage(good) and not path.exists()
    # The next save keeps that good copy as the previous one still (the damaged file never becomes it).
    save(path, 3)
    assert (tmp_path / f"{name}.prev").read_bytes() == kept and load(path) == ["m0", "m1", "m2"]


@pytest.mark.parametrize("name", list(BOOKS))
def test_a_cut_between_keeping_the_previous_copy_and_writing_the_new_one_reads_the_previous(tmp_path, caplog, name):
    save, load, _ = BOOKS[name]
    path = tmp_path / name
    save(path, 1)
    save(path, 2)
    path.unlink()
    assert load(path) == ["m0"] and "there is no such file; read the previous copy" in caplog.text


@pytest.mark.parametrize("name", list(BOOKS))
def test_with_both_copies_unusable_the_book_starts_over_and_the_error_names_both(tmp_path, caplog, name):
    save, load, what = BOOKS[name]
    path = tmp_path / name
    save(path, 1)
    save(path, 2)
    path.write_bytes(b"")
    (tmp_path / f"{name}.prev").write_bytes(b"{")
    assert load(path) is None
    assert f"{what} in {path}: it is unusable (not JSON" in caplog.text
    assert f"and so is the previous copy {tmp_path / name}.prev (not JSON" in caplog.text


@pytest.mark.parametrize("name", list(BOOKS))
def test_a_book_a_newer_hashfleet_wrote_is_set_aside_saying_so_not_as_damage(tmp_path, caplog, name):
    # A rollback (trial Q): an older version called a newer book "unusable" or "not a list of 5 numbers".
    save, load, what = BOOKS[name]
    path = tmp_path / name
    save(path, 1)
    path.write_bytes(json.dumps({**json.loads(path.read_bytes()), "version": 2}).encode())
    assert load(path) is None
    assert (f"{what} in {path}: it is unusable (a version 2 " in caplog.text
            and "written by a newer hashfleet (this one reads version 1): rolled back?" in caplog.text)
    assert (tmp_path / f"{name}.unusable.1").exists()


def test_a_commands_file_a_newer_hashfleet_wrote_is_named_so():
    newer = json.dumps({"version": 3, "killed": False, "killed_as_of": None, "mode": None, "dr_targets": {},
                        "something_new": 1})
    with pytest.raises(ValueError, match=r"a version 3 commands file, written by a newer hashfleet \(this one reads "
                                         r"version 2\)"):
        curtailment_commands._checked(json.loads(newer))
    with pytest.raises(ValueError, match=r"a version 2 control state, written by a newer hashfleet"):
        curtailment_control._checked_state({"version": 2, "slept": {}})


def test_a_carry_back_its_dates_cannot_take_costs_the_file_not_the_start(tmp_path, caplog):
    # Dated an hour ahead, with a demand_from in year 1: moved back with the clock it left the calendar, and the
    # OverflowError, raised outside the loader's guard, stopped the service's start. Now refused as no time.
    path = tmp_path / "cost-totals.json"
    _save_totals(path, 1)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "as_of": (NOW + timedelta(hours=1)).isoformat(),
                                "demand_from": "0001-01-01T00:00:00+00:00"}))
    assert _load_totals(path) is None and "demand_from 0001-01-01T00:00:00+00:00 is not a time" in caplog.text
    assert (tmp_path / "cost-totals.json.unusable.1").exists()


KEEP = 5  # unusable files kept aside per book (durable_file.KEEP_SET_ASIDE)


def test_successive_unusable_files_are_all_kept_aside_the_newest_few(tmp_path):
    # The second set-aside overwrote the first (`.unusable`): months of totals a second bad boot lost.
    path = tmp_path / "cost-totals.json"
    for n in range(1, KEEP + 3):
        path.write_bytes(f"damaged {n}".encode())
        assert totals_store.load(path, NOW) is None
    kept = {p.name: p.read_text() for p in tmp_path.glob("cost-totals.json.unusable.*")}
    newest = range(3, KEEP + 3)
    assert kept == {f"cost-totals.json.unusable.{n}": f"damaged {n}" for n in newest}


def test_the_copy_kept_is_on_disk_before_it_is_the_previous_one_and_the_new_file_is_not_synced(tmp_path, monkeypatch):
    # A power cut may leave the new file empty: the previous copy is what is read then, so it is synced
    # (written minutes ago: usually on disk already, so the sync costs nothing) before the rename.
    path = tmp_path / "cost-totals.json"
    _save_totals(path, 1)
    first = path.stat().st_ino
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.fstat(fd).st_ino)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append(("replace", Path(src).name, Path(dst).name)),
                                                         real_replace(src, dst)))
    _save_totals(path, 2)
    assert calls == [("fsync", first), ("replace", "cost-totals.json", "cost-totals.json.prev"),
                     ("replace", "cost-totals.tmp", "cost-totals.json")]


SHIFTED_HASHFLEET = """\
# `hashfleet` with its wall clock (time.time, datetime.now) SHIFT_S seconds off: a box booted with a wrong clock.
import datetime, os, sys, time
shift = float(os.environ["SHIFT_S"])
real_time, real_time_ns, real_datetime = time.time, time.time_ns, datetime.datetime
time.time = lambda: real_time() + shift
time.time_ns = lambda: real_time_ns() + int(shift * 1e9)


class ShiftedDatetime(real_datetime):
    @classmethod
    def now(cls, tz=None):
        return real_datetime.fromtimestamp(time.time(), tz)


datetime.datetime = ShiftedDatetime
sys.argv[0] = "hashfleet"
from collector.commands import main
sys.exit(main())
"""


def test_a_box_booting_with_its_clock_days_behind_keeps_its_books_and_wakes_the_miners_control_slept(tmp_path):
    # Trial M H4: the real-time clock lost its time in the power cut and NTP has not answered yet, so every book
    # on disk is dated 3 days ahead of the clock. Each was set aside as garbage, control's record of the miners
    # it slept with them: when the price fell they stayed asleep, for good.
    spool = tmp_path / "spool"
    launcher = tmp_path / "shifted_hashfleet.py"
    launcher.write_text(SHIFTED_HASHFLEET)

    def collect(fleet, price: float, *, shift_s: float = 0.0) -> subprocess.CompletedProcess:
        config = tmp_path / "hashfleet.yaml"
        config.write_text(json.dumps({
            "site": "boot", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
            "spool": {"directory": str(spool)}, "network": NETWORK,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": price}, "pue": 1.1},
            "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                            "control": {"mode": "on", "allow": ["*"]}}}))
        command = [sys.executable, str(launcher)] if shift_s else [HASHFLEET]
        run = subprocess.run([*command, "collect", "--config", str(config), "--cycles", "3"], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "SHIFT_S": str(shift_s)})
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        return run

    with run_fleet("a1246:2,a1566:1", base="127.58.4.1:0", seed=7) as fleet:
        old = [fleet[0], fleet[1]]  # the A1246s lose money at 0.06 $/kWh, the A15 does not
        collect(fleet, 0.06)
        assert [[c.command for c in fleet.commands(m)] for m in old] == [["ascset softoff"]] * 2
        books = ["cost-totals.json", "curtailment-efficiency.json", "health-state.json", "curtailment-control.json"]
        assert all((spool / name).exists() for name in books)
        assert len(json.loads((spool / "curtailment-control.json").read_text())["slept"]) == 2

        booted = collect(fleet, 0.02, shift_s=-3 * 86400)  # the price has fallen

        assert [[c.command for c in fleet.commands(m)] for m in old] == [["ascset softoff", "ascset softon"]] * 2
        assert fleet.commands(fleet[2]) == []
    assert not list(spool.glob("*.unusable*")), booted.stderr
    assert booted.stderr.count("the clock is likely behind") == len(books), booted.stderr
    assert json.loads((spool / "curtailment-control.json").read_text())["slept"] == {}


def test_the_commands_leave_the_collectors_unusable_books_where_they_are(tmp_path):
    # `hashfleet health` and `advise` read the collector's health history and measured efficiencies and never
    # write them; finding one unusable, they still moved it aside (`.unusable`) under the running collector.
    spool = tmp_path / "spool"
    spool.mkdir()
    books = {"health-state.json": b'{"version": 1, "as_of": "2026-', "curtailment-efficiency.json": b"\0" * 64}
    for name, data in books.items():
        (spool / name).write_bytes(data)
    with run_fleet("a1246:1", base="127.58.5.1:0", seed=7) as fleet:
        config = tmp_path / "hashfleet.yaml"
        config.write_text(json.dumps({
            "site": "readers", "miners": fleet.addresses, "timeout_s": 2, "spool": {"directory": str(spool)},
            "network": NETWORK, "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1},
            "curtailment": {}}))
        for command in ("health", "advise"):
            run = subprocess.run([HASHFLEET, command, "--config", str(config)], capture_output=True, text=True,
                                 timeout=120)
            assert run.returncode == 0 and "Traceback" not in run.stderr, (command, run.stderr)
    assert sorted(p.name for p in spool.iterdir() if p.name in books or ".unusable" in p.name) == sorted(books)
    assert all((spool / name).read_bytes() == data for name, data in books.items())

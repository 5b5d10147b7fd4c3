"""The local history's retention (collector/sinks/spool.py) against a clock that may be days ahead: a box
that boots before NTP answers found every batch past `spool.retention_h` and deleted the whole history at
the first append, with no line in the log and no count (trial M, H5). Retention now counts, from the newest
batch found at a start, the time the collector runs, never more than the clock says; every batch it deletes
is counted (`expired`, collector.spool_expired) and logged, at most a line an hour.

A clock N days ahead of the history is, to the spool, history whose files were written N days before the
clock: the tests date the batch files back (os.utime) and run the real collector with the real clock. Its
new batches carry the clock's time, as they do on a box whose clock is ahead."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

from collector.line_protocol import parse_line
from collector.sinks.spool import Spool
from collector.spool_files import list_batches
from simulators.fleet import run_fleet
from tests.support import HASHFLEET

HOUR, DAY = 3600, 86400
SITE_YAML = ("site: home\n"
             "economics: {tariff: {kind: flat, usd_per_kwh: 0.06}, opex_usd_month: 300, pue: 1.1}\n"
             "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
             " btc_price_usd: 95000}}\n")


def hashfleet(*args: str, spool: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["HASHFLEET_SPOOL_DIR"] = str(spool)
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_clock_eight_days_ahead_at_start_keeps_the_history_and_what_retention_deletes_is_counted_and_logged(
        tmp_path):
    spool, config = tmp_path / "spool", tmp_path / "c.yaml"
    config.write_text(SITE_YAML)  # spool.retention_h: the default 168 h
    with run_fleet("a1566:1", base="127.211.0.1", seed=1) as fleet:
        miners = ",".join(fleet.addresses)
        first = hashfleet("collect", "--config", str(config), "--miners", miners, "--cycles", "4", "--interval", "1",
                          spool=spool)
        assert first.returncode == 0, first.stderr
        old = list_batches(spool / "home")
        assert len(old) == 4
        # The clock is 8 days ahead of this history when the box boots again; and its oldest batch was written
        # 169 h before its newest: past retention by the history's own time, which retention still deletes.
        newest = time.time() - 8 * DAY
        for k, batch in enumerate(reversed(old)):
            written = newest - k if batch is not old[0] else newest - 169 * HOUR
            os.utime(batch.path, (written, written))

        again = hashfleet("collect", "--config", str(config), "--miners", miners, "--cycles", "3", "--interval", "1",
                          spool=spool)
    assert again.returncode == 0, again.stderr
    kept = list_batches(spool / "home")
    # was: 0 of the 4 (every one past 168 h by the clock) and a log without a line about it
    assert [b.path.name for b in kept[:3]] == [b.path.name for b in old[1:]] and len(kept) == 6
    said = " ".join(again.stderr.split())
    assert said.count("the clock reads") == 1, said  # once a start, saying how far and what it keeps
    assert "192.0 h after the newest batch of local history found at the start" in said
    assert f"the oldest batch (written {utc(newest - 2)}) is kept for now" in said
    assert said.count("past spool.retention_h 168 h deleted") == 1, said
    assert (f"1 batch(es) of local history past spool.retention_h 168 h deleted, written {utc(newest - 169 * HOUR)} "
            f"to {utc(newest - 169 * HOUR)} (1 in all, collector.spool_expired)") in said
    assert int((spool / "home" / "expired").read_text()) == 1
    assert not (spool / "home" / "dropped").exists()  # the budget dropped nothing: retention has its own count
    collector_points = [p for b in kept[3:] for p in map(parse_line, b.read()) if p.measurement == "collector"]
    # each cycle's point counts what was deleted before it: the first new batch's append deleted the oldest
    assert [p.fields["spool_expired"] for p in collector_points] == [0, 1, 1]

    # (report passes over a file written before --since unread: 30d reaches back past the dated-back files)
    report = hashfleet("report", "--config", str(config), "--since", "30d", "--json", spool=spool)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["cycles"] == 6  # the 3 kept cycles of before are still read, with the new


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def lines(n: int) -> list[str]:
    return [f"miner,site=s1,miner=m{n} hashrate_ths=1 {1795000000 + 10 * n}"]


def expired_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "collector.sinks.spool" and "past spool.retention_h" in r.getMessage()]


def test_retention_deletes_are_summed_up_a_line_an_hour_with_an_hour_or_more_at_once_told_at_once(tmp_path, caplog):
    """Past retention the oldest batch goes at nearly every append: one INFO line, then a line an hour at
    most (the rest at close); one pass that deletes an hour of history or more is a WARNING at once."""
    caplog.set_level(logging.INFO)
    spool = Spool(tmp_path, retention_s=HOUR)
    now = time.time()
    for n in range(12):
        spool.append(lines(n))
    batches = list_batches(tmp_path)
    for k in range(10):  # each append finds one more batch past retention: written 2 h ago, a minute apart
        os.utime(batches[k].path, (now - 2 * HOUR + 60 * k, now - 2 * HOUR + 60 * k))
        spool.append(lines(20 + k))
    assert spool.expired_batches == 10 and int((tmp_path / "expired").read_text()) == 10
    assert [r.getMessage().split(": ", 1)[1] for r in expired_records(caplog)] == [
        f"1 batch(es) of local history past spool.retention_h 1 h deleted, written {utc(now - 2 * HOUR)} to "
        f"{utc(now - 2 * HOUR)} (1 in all, collector.spool_expired)"]  # the first at once, the next 9 held

    # Two batches written 3 h apart, both past retention: one pass deletes 3 h of history, told at once.
    for k, written in ((10, now - 5 * HOUR), (11, now - 2 * HOUR)):
        os.utime(batches[k].path, (written, written))
    spool.append(lines(40))
    records = expired_records(caplog)
    assert len(records) == 2 and records[1].levelno == logging.WARNING
    assert records[1].getMessage().endswith(f"11 batch(es) of local history past spool.retention_h 1 h deleted, "
                                            f"written {utc(now - 5 * HOUR)} to {utc(now - 2 * HOUR + 540)} (12 in "
                                            "all, collector.spool_expired)")
    spool.close()
    assert len(expired_records(caplog)) == 2  # nothing held back was left for the close

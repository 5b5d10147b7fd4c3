"""The spool's disk budget, logged at a bounded rate: once at its budget nearly every append drops a batch
(~930 an hour at 2,000 miners, trial L), and each of them was an ERROR line. Without InfluxDB those batches
are the oldest local history, trimmed (a warning); in front of InfluxDB they are undelivered data, lost (an
error). Either is one line a period, the drops all counted."""

import logging
import os

from collector.sinks.spool import Spool

from collector.spool_files import list_batches

BATCH_LINES = 200
BUDGET = 12_000  # ~4 batches of these lines


def batch(n: int) -> list[str]:
    # random digits: gzip cannot shrink them away, so a batch is ~3 KB and the budget is reached in a few
    return [f"miner,site=s1,miner=m{k} hashrate_ths={os.urandom(8).hex()} {1795000000 + 10 * n}"
            for k in range(BATCH_LINES)]


def spool_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "collector.sinks.spool"]


def test_local_history_at_its_budget_trims_the_oldest_with_one_warning_not_one_per_append(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=BUDGET, retention_s=168 * 3600)  # retention: the local history
    written = [batch(n) for n in range(20)]
    with caplog.at_level(logging.INFO):
        for lines in written:
            spool.append(lines)

    kept = list_batches(tmp_path)
    assert spool.dropped_batches == 20 - len(kept) >= 10  # every trim counted (collector.spool_dropped)
    assert sum(b.path.stat().st_size for b in kept) <= BUDGET
    assert [b.read() for b in kept] == written[-len(kept):]  # the newest history, readable
    records = spool_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]  # was an ERROR at every append past the budget
    assert records[0].levelno == logging.WARNING
    assert "local history at its 12000-byte budget (spool.max_mb): the oldest trimmed" in records[0].getMessage()
    assert "less than spool.retention_h 168 h" in records[0].getMessage()


def test_in_front_of_influxdb_dropping_undelivered_batches_is_one_error_a_period(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=BUDGET)  # no retention: the queue in front of InfluxDB
    with caplog.at_level(logging.INFO):
        for n in range(20):
            spool.append(batch(n))

    assert spool.dropped_batches == 20 - spool.depth >= 10
    assert int((tmp_path / "dropped").read_text()) == spool.dropped_batches
    records = spool_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.ERROR  # data lost: still an error
    assert "over its 12000-byte budget: dropped the 1 oldest undelivered batch(es)" in records[0].getMessage()

"""A batch file is read one way, and every kind of damage on disk is one error, DamagedBatch, naming the
file: real files written by the spool, then damaged (trial I #1, #3, #4, #9). Through the commands:
tests/collector/test_damaged_spool.py."""

import gzip
import logging
import os
import stat
import threading

import pytest
from tests.servers import LyingInflux

from collector.sinks.influx import InfluxSink
from collector.sinks.spool import Spool
from collector.spool_files import MAX_BATCH_BYTES, MAX_BATCH_LINES, MAX_LINE_BYTES, Batch, DamagedBatch, list_batches, \
    strays
from models import InfluxConfig

LINES = [f"miner,site=s,miner=m{i % 7} hashrate_ths={190 + i % 5}.5,power_w=3600i,up=1i {1_800_000_000 + i // 7}"
         for i in range(2000)]


def _flip(data: bytes) -> bytes:
    return data[:40] + bytes(b ^ 0x5A for b in data[40:100]) + data[100:]


def _bomb(content: bytes, inflated: int) -> bytes:
    member = gzip.compress(content * (16 * 1024 * 1024 // len(content)), compresslevel=9)
    return member * (inflated // (16 * 1024 * 1024) + 1)


DAMAGE = {  # what is on disk -> the reason given
    "bits flipped": (lambda good: _flip(good), "corrupt (Error -3"),
    "check failed": (lambda good: good[:-8] + bytes(b ^ 1 for b in good[-8:-4]) + good[-4:], "corrupt (Error -3"),
    "not gzip": (lambda good: os.urandom(5000), "corrupt (Error -3"),
    "garbage after": (lambda good: good + b"x" * 50, "corrupt (Error -3"),
    "empty": (lambda good: b"", "empty or cut short"),
    "cut short": (lambda good: good[:len(good) // 2], "cut short"),
    "inflates past the cap": (lambda good: _bomb(b"m v=1 1 " * 125 + b"\n", MAX_BATCH_BYTES), "inflates past the"),
    "too many lines": (lambda good: gzip.compress(b"m v=1 1\n" * (MAX_BATCH_LINES + 1)), "more than the"),
    "a line too long": (lambda good: gzip.compress(b"m s=\"" + b"x" * MAX_LINE_BYTES + b"\" 1\n"), "a line longer"),
}


@pytest.fixture
def written(tmp_path) -> Batch:
    spool = Spool(tmp_path)
    batch = spool.append(LINES)
    spool.close()
    return batch


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_kind_of_damage_is_one_error_that_names_the_file(written, damage):
    make, reason = DAMAGE[damage]
    written.path.write_bytes(make(written.path.read_bytes()))
    # (what report reads, what delivery sends: it counts no lines, InfluxDB takes as many as it will)
    for read in (written.read,) if damage == "too many lines" else (written.read, written.read_body):
        with pytest.raises(DamagedBatch) as raised:
            read()
        assert raised.value.reason.startswith(reason) and str(written.path) in str(raised.value)


def test_a_batch_cut_short_gives_exactly_its_whole_lines_before_the_cut(written):
    good = written.path.read_bytes()
    kept = {}
    for size in (30, len(good) // 3, len(good) - 9):
        written.path.write_bytes(good[:size])
        with pytest.raises(DamagedBatch) as raised:
            written.read()
        kept[size] = raised.value.lines
        assert kept[size] == LINES[:len(kept[size])]  # whole lines as written, none torn
    assert 0 < len(kept[len(good) // 3]) <= len(kept[len(good) - 9])


def test_zero_padding_and_several_gzip_members_are_read_as_gzip_reads_them(written):
    good = written.path.read_bytes()
    written.path.write_bytes(good + good + b"\0" * 512)
    assert written.read() == LINES + LINES


def test_a_fifo_or_device_named_like_a_batch_is_never_listed_opened_or_replaced(tmp_path, caplog):
    spool = Spool(tmp_path)
    spool.append(["m v=1 1"])
    spool.close()
    os.mkfifo(tmp_path / "0000000000000002.lp.gz")  # no writer: an ordinary open would wait for one for ever
    os.symlink("/dev/zero", tmp_path / "0000000000000003.lp.gz")  # never ends
    assert [b.seq for b in list_batches(tmp_path)] == [1]
    assert strays(tmp_path) == ["0000000000000002.lp.gz", "0000000000000003.lp.gz"]
    # Put there after the listing: the read itself refuses it, at once.
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_error(Batch(2, tmp_path / "0000000000000002.lp.gz"))),
                              daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # (let the old code's blocked open go)
        os.close(os.open(tmp_path / "0000000000000002.lp.gz", os.O_WRONLY | os.O_NONBLOCK))
    assert outcome == ["not a regular file"]
    assert _error(Batch(3, tmp_path / "0000000000000003.lp.gz")) == "not a regular file"
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp_path)
    assert "2 entries named like its files but not regular files" in caplog.text
    assert spool.append(["m v=2 2"]).seq == 4  # numbered after them: neither is replaced
    spool.close()
    assert stat.S_ISFIFO((tmp_path / "0000000000000002.lp.gz").lstat().st_mode)


def test_the_start_moves_a_damaged_newest_batch_aside_and_starts_after_the_one_before(tmp_path, caplog):
    spool = Spool(tmp_path)
    spool.append(["m v=1 100", "m v=1 105", "not a line", "m v=1 99"])  # a bad line costs that line's time only
    newest = spool.append(["m v=2 110"])
    newest.path.write_bytes(_flip(gzip.compress(("\n".join(LINES) + "\n").encode())))
    assert spool.newest_timestamp() == 105
    assert f"spool batch {newest.path} unreadable (corrupt (Error -3" in caplog.text
    assert newest.path.with_suffix(".bad").exists() and [b.seq for b in spool.batches()] == [1]
    spool.close()
    spool = Spool(tmp_path)
    assert spool.append(["m v=3 111"]).seq == 3  # after the one moved aside: its number is not used again
    spool.close()


def test_a_refused_batch_with_more_lines_than_a_batch_may_hold_is_moved_aside_not_split(tmp_path, caplog):
    """Delivery counts no lines (InfluxDB takes what it will); when a batch is refused and must be split
    into its lines, too many of them is damage: set aside, the delivery step ends cleanly."""
    with LyingInflux() as liar:
        liar.max_body = 300  # 413 for anything larger
        sink = InfluxSink(InfluxConfig(url=liar.url, bucket="b", token="t"), Spool(tmp_path / "spool"))
        try:
            batch = sink.spool.append(["m v=1i 1"] * (MAX_BATCH_LINES + 1))
            sink._deliver(batch)  # noqa: SLF001 - the delivery task's one step
        finally:
            sink.close()
    assert batch.path.with_suffix(".bad").exists() and sink.spool.depth == 0
    assert f"unreadable (more than the {MAX_BATCH_LINES} lines a batch may hold)" in caplog.text


def _error(batch: Batch) -> str:
    try:
        batch.read()
    except DamagedBatch as e:
        return e.reason
    return "read"


def test_a_batch_numbered_otherwise_than_the_spool_numbers_them_is_named_in_a_warning_never_read(tmp_path, caplog):
    # 17 digits were never listed (neither read, moved aside nor counted) and named nowhere; `\d` took
    # other scripts' digits and `$` a trailing newline, so those were read as batches the spool never wrote.
    from collector import history

    spool = Spool(tmp_path)
    spool.append([LINES[0]])
    spool.close()
    body = gzip.compress((LINES[7] + "\n").encode())
    odd = ["00000000000000002.lp.gz", "3.lp.gz", "０００００００００００００００４.lp.gz", "0000000000000005.lp.gz\n"]
    for name in odd:
        (tmp_path / name).write_bytes(body)
    assert [b.seq for b in list_batches(tmp_path)] == [1]
    with caplog.at_level(logging.WARNING):
        list(history.spool_points(tmp_path, 0))  # (`health --since` reads this way; `report` warns alike)
        history.from_spool(tmp_path, "s", 0, 2_000_000_000, interval_s=10)
    for name in odd:
        assert f"{name!r} in {tmp_path} is named like a spool batch but not numbered as the spool numbers them" \
            in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp_path)
    assert "4 file(s) named like its batches but not numbered as it numbers them" in caplog.text
    assert repr(odd[3]) in caplog.text  # (a newline in a name stays out of the log)
    assert spool.append([LINES[14]]).seq == 6  # numbered after every file numbered like its own: replaces none
    spool.close()
    assert all((tmp_path / name).read_bytes() == body for name in odd)  # left alone


def test_a_restart_takes_only_ascii_digits_for_the_newest_time(tmp_path):
    # int() read '9_999_999_999' and other scripts' digits: a restarted collector took 2286 for the newest
    # time in its spool
    spool = Spool(tmp_path)
    spool.append(["m v=1 100", "m v=1 9_999_999_999", "m v=1 ٩٩٩٩٩٩٩٩٩٩", "m v=1 99", "m v=1 +9999999999"])
    assert spool.newest_timestamp() == 100
    spool.close()


@pytest.mark.parametrize("crafted", ["9999999999999999.lp.bad", "9999999999999999.lp.gz", "1000000000000000.lp.rejected"])
def test_a_file_numbered_near_the_end_of_16_digits_does_not_push_later_batches_past_them(tmp_path, crafted):
    # The next batch was numbered after the highest file: after 9999999999999999 every batch had 17 digits,
    # never listed (so never delivered, trimmed or counted against the budget) while the disk filled.
    (tmp_path / crafted).write_bytes(gzip.compress((LINES[7] + "\n").encode()))
    spool = Spool(tmp_path, max_bytes=1 << 20)
    written = [spool.append([LINES[0]]) for _ in range(3)]
    spool.close()
    assert [b.seq for b in written] == [1, 2, 3]
    assert {b.seq for b in list_batches(tmp_path)} >= {1, 2, 3}

"""The spool stays consistent while delivery acknowledges batches in one thread and cycles append in
others (found at 10,000 miners: the budget's scan met a batch acknowledged under it, and the append
failed, losing the rest of that cycle's lines)."""

from collector.sinks.spool import Spool

from collector.spool_files import list_batches


class DeliveredWhileListed(Spool):
    """The interleaving seen at 10,000 miners, made certain: delivery removes the oldest batch right
    after an append listed the directory, before it looked at the file."""

    def batches(self):
        listed = super().batches()
        if len(listed) > 1:
            listed[0].path.unlink()
        return listed


def test_an_append_whose_listing_meets_a_batch_delivered_meanwhile_succeeds_and_counts_the_rest(tmp_path):
    spool = DeliveredWhileListed(tmp_path, max_bytes=1 << 30, retention_s=3600)  # both limits look
    for n in range(5):
        spool.append([f"m v={n}i {n}"])  # raised FileNotFoundError before the fix
    assert [b.seq for b in list_batches(tmp_path)] == [5]  # every earlier one was "delivered"
    assert spool.dropped_batches == 0


def test_setting_aside_a_batch_the_budget_already_dropped_is_harmless(tmp_path):
    spool = Spool(tmp_path)
    batch = spool.append(["m v=1i 1"])
    assert spool.set_aside(batch, "bad") == tmp_path / "0000000000000001.lp.bad"
    assert spool.depth == 0 and (tmp_path / "0000000000000001.lp.bad").exists()
    assert spool.set_aside(batch, "bad") is None  # gone: nothing to move, no error


def test_a_spool_in_a_shared_folder_removes_only_its_own_temp_files(tmp_path):
    """spool.directory pointed at an existing folder: its own leftovers go, nobody else's files."""
    theirs = ["notes.tmp", "1.tmp", "0000000000000001.tmp", "backup.lp.tmp", "00000000000000012.lp.tmp", "report.gz"]
    ours = ["0000000000000007.lp.tmp", "dropped.tmp", "rejected.tmp", "lost.tmp"]  # a crash mid-write leaves these
    for name in theirs + ours:
        (tmp_path / name).write_text("x")
    Spool(tmp_path).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + ["lock"])


def test_batches_split_on_newlines_only(tmp_path):
    """A string field may hold U+2028 or U+0085; str.splitlines() would cut the line there."""
    spool = Spool(tmp_path)
    lines = ['m s="a\u2028b\u0085c\x1cd" 1', "m v=2 2"]
    assert spool.append(lines).read() == lines

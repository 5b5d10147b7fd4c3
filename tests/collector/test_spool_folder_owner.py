"""The spool folder is the collector's own (trial T, finding 1). A local user who made the folder first (under
/tmp or a shared one) planted links named like the collector's files; a root collector wrote through them:
`lock` replaced by `pid N`, `cost-totals.tmp` truncated to the totals' JSON, `curtailment-actions.jsonl`
appended to (and cut back at start). Now a folder another user owns or can write is refused at start (exit 2),
and the collector's own files are never opened through a link, even in a folder that passes."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from collector import durable_file, own_folder
from collector.sinks.audit_log import AuditLog
from collector.sinks.spool import Spool
from simulators.fleet import run_fleet
from tests.support import HASHFLEET

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95_000}}
PLANTED = {"lock": "lockvictim", "cost-totals.tmp": "totalsvictim", "curtailment-actions.jsonl": "auditvictim"}


def victims(tmp_path: Path) -> dict[Path, bytes]:
    folder = tmp_path / "victim"
    folder.mkdir()
    found = {}
    for name in PLANTED.values():
        (folder / name).write_bytes(f"precious content of {name}\n".encode())
        found[folder / name] = (folder / name).read_bytes()
    return found


def plant(spool: Path, victim: Path) -> None:
    spool.mkdir(parents=True)
    for name, target in PLANTED.items():
        (spool / name).symlink_to(victim / target)


def collect(tmp_path: Path, spool: Path, fleet) -> subprocess.CompletedProcess:
    config = tmp_path / "hashfleet.yaml"
    config.write_text(json.dumps({
        "site": "tx1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2, "spool": {"directory": str(spool)},
        "network": NETWORK, "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.045}, "pue": 1.08},
        "curtailment": {"control": {"mode": "dry_run", "allow": ["*"]}}}))
    return subprocess.run([HASHFLEET, "collect", "--config", str(config), "--cycles", "2"], capture_output=True,
                          text=True, timeout=120)


def as_nobody(where: Path, work) -> None:
    """`work()` in a forked child running as the user nobody in `where` (the tests run as root here; nobody
    could not reach pytest's folder, so the child enters it first)."""
    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(where)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            work()
            os._exit(0)
        except BaseException:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0, "planting as nobody failed"


def test_a_folder_another_user_made_and_planted_links_in_is_refused_and_nothing_is_written_through(tmp_path):
    found = victims(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # (as /tmp)
    spool = shared / "hfspool" / "tx1"
    if os.geteuid() == 0:  # the attack as trial T ran it: nobody makes the folder, the collector runs as root
        as_nobody(shared, lambda: plant(Path("hfspool/tx1"), tmp_path / "victim"))
    else:  # not root: the folder stays ours, but group and others can write it (nobody could have planted)
        plant(spool, tmp_path / "victim")
        spool.chmod(0o777)
    with run_fleet("a1246:1", base="127.58.6.1:0", seed=7) as fleet:
        run = collect(tmp_path, spool, fleet)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and f"{spool}" in run.stderr, run.stderr
    assert f"uid {spool.stat().st_uid} with mode {stat.filemode(spool.stat().st_mode)}" in run.stderr
    assert {path: path.read_bytes() for path in found} == found


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o722])
def test_a_folder_group_or_others_can_write_is_refused(tmp_path, mode):
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(mode)
    with pytest.raises(own_folder.UnsafeFolder, match="owned by uid .* with mode d"):
        Spool(spool)
    assert list(spool.iterdir()) == []  # (not even the lock)


def test_a_parent_others_can_write_is_refused_unless_sticky_and_the_folder_made_is_0700(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(own_folder.UnsafeFolder, match="the parent of the spool folder"):
        Spool(shared / "site")  # (another user could rename the folder away and put theirs in its place)
    shared.chmod(0o1777)
    spool = Spool(shared / "site" / "deeper")
    spool.close()
    assert (shared / "site" / "deeper").stat().st_mode & 0o777 == 0o700
    assert (shared / "site").stat().st_mode & 0o777 == 0o700  # (a parent it made too, whatever the umask)


def test_a_folder_owned_by_another_user_is_refused_even_when_only_its_owner_can_write(tmp_path):
    if os.geteuid() == 0:
        spool = tmp_path / "spool"
        spool.mkdir(mode=0o700)
        os.chown(spool, pwd.getpwnam("nobody").pw_uid, -1)
    else:  # (not root: a folder root owns and only root can write; refused before anything is made in it)
        spool = Path("/usr")
    with pytest.raises(own_folder.UnsafeFolder, match=f"owned by uid {spool.stat().st_uid} "):
        Spool(spool)


def test_the_collectors_own_files_are_never_opened_through_a_link(tmp_path):
    # Even in a folder that passes (links put there some other way): each file is refused or made afresh.
    found = victims(tmp_path)
    victim = tmp_path / "victim"
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)

    (spool / "lock").symlink_to(victim / "lockvictim")
    with pytest.raises(OSError, match="lock"):
        Spool(spool)
    (spool / "lock").unlink()

    (spool / "cost-totals.tmp").symlink_to(victim / "totalsvictim")
    durable_file.replace(spool / "cost-totals.json", b'{"version": 1}')
    assert (spool / "cost-totals.json").read_bytes() == b'{"version": 1}' and not (spool / "cost-totals.tmp").exists()

    (spool / "dropped.tmp").symlink_to(victim / "totalsvictim")
    queue = Spool(spool)
    queue._write_counter("dropped", 4)
    queue.close()
    assert (spool / "dropped").read_text() == "4"

    (spool / "curtailment-actions.jsonl").symlink_to(victim / "auditvictim")
    with pytest.raises(OSError, match="curtailment-actions.jsonl"):
        AuditLog(spool / "curtailment-actions.jsonl", "tx1").check()

    assert {path: path.read_bytes() for path in found} == found

"""The native Avalon driver on every golden case, in the Telegraf style (tests/data/replies/avalon/golden/).

Each case folder's replies are served over real TCP on loopback by a miner that answers the CGMiner
API the way the firmware does (tests/avalon_golden.py: the joined `version+summary+estats+pools` is
answered from the folder's files, with the parts the case has); `collector.sources.avalon.poll`
reads it, and the sample must say what `expected.json` says, field by field, within the tolerances
expected.json gives (`tolerances`; nothing else is tolerated).

With HASHFLEET_REAL_CAPTURES set to a directory holding the published captures (`<case>/<file>`, each
pinned by size and SHA-256 in the case's SOURCE.md), every case with a staged capture also runs on
the real files against `expected_real.json`. Without it those runs are reported as not run in one
line of the summary (tests/collector/sources/conftest.py), never passed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from tests.avalon_golden import Case, cases, golden_miner, real_captures_dir, real_replies, replies

from collector.sources import avalon
from models import MinerSample

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
CASES = cases()
TEXT = ("model", "firmware", "mac", "work_mode")
NUMBERS = ("hashrate_ths", "hashrate_avg_ths", "expected_hashrate_ths", "power_w", "power_limit_w", "temp_env_c",
           "temp_chip_max_c", "temp_board_max_c", "uptime_s", "hw_error_pct")
BOARD_NUMBERS = ("hashrate_avg_ths", "temp_chip_max_c", "chips_ok", "chips_expected")


def _runs() -> list[Any]:
    runs = [pytest.param(case, False, id=case.name) for case in CASES]
    if real_captures_dir() is not None:
        runs += [pytest.param(case, True, id=f"{case.name}-real") for case in CASES if case.real_run]
    return runs


def poll_case(case: Case, real: bool = False) -> MinerSample:
    root = real_captures_dir()
    known = real_replies(case, root) if real and root is not None else replies(case.folder)
    with golden_miner(known) as (host, port):
        return asyncio.run(avalon.poll(host, port, site="golden", ts=TS, timeout_s=5.0))


def mismatches(sample: MinerSample, expected: dict[str, Any]) -> list[str]:
    """Where the sample differs from expected.json (every compared key must be in the file)."""
    tolerance = expected["tolerances"]
    out = []

    def number(name: str, got: Any, want: Any, where: str = "") -> None:
        limit = tolerance.get(name, tolerance["default"])
        if want is None or got is None:
            if got is not want:
                out.append(f"{where}{name}: {got!r}, expected {want!r}")
        elif abs(got - want) > limit:
            out.append(f"{where}{name}: {got!r}, expected {want!r} (within {limit:g})")

    for name in TEXT:
        if getattr(sample, name) != expected[name]:
            out.append(f"{name}: {getattr(sample, name)!r}, expected {expected[name]!r}")
    if sample.state.value != expected["state"]:
        out.append(f"state: {sample.state.value!r}, expected {expected['state']!r}")
    for name in NUMBERS:
        number(name, getattr(sample, name), expected[name])
    if sample.fans_rpm != (expected["fans_rpm"] or []):
        out.append(f"fans_rpm: {sample.fans_rpm}, expected {expected['fans_rpm']}")
    boards = expected["boards"]
    if boards is None:  # a chain: per-board figures are not published, only how many and their chips
        if len(sample.boards) != expected["boards_total"]:
            out.append(f"boards: {len(sample.boards)}, expected {expected['boards_total']}")
        chips = {b.chips_expected for b in sample.boards}
        if chips != {expected["chips_expected_per_board"]}:
            out.append(f"chips_expected per board: {chips}, expected {expected['chips_expected_per_board']}")
        if [b.index for b in sample.boards] != list(range(len(sample.boards))):
            out.append(f"board indexes: {[b.index for b in sample.boards]} are not one sequence across modules")
    else:
        if len(sample.boards) != len(boards):
            out.append(f"boards: {len(sample.boards)}, expected {len(boards)}")
        for got, want in zip(sample.boards, boards):
            if got.index != want["index"]:
                out.append(f"board index {got.index}, expected {want['index']}")
            for name in BOARD_NUMBERS:
                number(name, getattr(got, name), want[name], f"board {want['index']} ")
    warned = sorted(w.split(":", 1)[0] for w in sample.warnings)
    if warned != sorted(expected["warnings"]):
        out.append(f"warnings: {sample.warnings}, expected the names {expected['warnings']}")
    codes = Counter((c.key, c.code, c.board, c.severity.value) for c in sample.fault_codes)
    wanted = Counter((c["key"], c["code"], c["board"], c["severity"]) for c in expected["fault_codes"])
    if codes != wanted:
        out.append(f"fault_codes: extra {sorted(codes - wanted, key=str)}, missing {sorted(wanted - codes, key=str)}")
    if sample.errors != expected.get("error_lines", []):
        out.append(f"errors: {sample.errors}, expected {expected.get('error_lines', [])}")
    if sample.unusable:
        out.append(f"unusable: {sample.unusable} (nothing in a golden case is refused)")
    return out


@pytest.mark.parametrize(("case", "real"), _runs())
def test_the_driver_reads_each_golden_case_as_expected(case: Case, real: bool) -> None:
    expected = case.expected_real if real else case.expected
    assert expected is not None
    sample = poll_case(case, real)
    problems = mismatches(sample, expected)
    assert not problems, f"{case.name}{' (real capture)' if real else ''}:\n  " + "\n  ".join(problems)


def test_the_comparison_can_fail() -> None:
    # The harness must see a wrong reading: the A1246 case read right, then with its power and a board off.
    case = next(c for c in CASES if c.name == "a1246_21072802_mining")
    sample = poll_case(case)
    assert mismatches(sample, case.expected) == []
    wrong = sample.model_copy(update={"power_w": sample.power_w + 1, "boards": sample.boards[:2],
                                      "warnings": ["power_vs_psu: invented"]})
    found = mismatches(wrong, case.expected)
    assert [m.split(":")[0] for m in found] == ["power_w", "boards", "warnings"]


def test_a_real_capture_that_is_not_the_published_one_is_refused(tmp_path) -> None:
    case = next(c for c in CASES if c.real_run)
    (tmp_path / case.name).mkdir()
    for file in case.real_files:
        (tmp_path / case.name / file.name).write_text("{}")
    with pytest.raises(AssertionError, match=f"{case.name}: .* not the published capture"):
        real_replies(case, tmp_path)

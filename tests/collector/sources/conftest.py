"""Reports what the golden Avalon test could not run: the real captures, unless HASHFLEET_REAL_CAPTURES
points at them (tests/collector/sources/test_avalon_golden.py)."""

from __future__ import annotations

from typing import Any

_GOLDEN = "test_avalon_golden.py"


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    config._hashfleet_golden = any(_GOLDEN in item.nodeid for item in items)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not getattr(config, "_hashfleet_golden", False):
        return
    from tests.avalon_golden import REAL_CAPTURES_ENV, cases, real_captures_dir

    found = cases()
    staged = [c.name for c in found if c.real_run]
    unstaged = [c.name for c in found if c.expected_real is not None and not c.real_run]
    if real_captures_dir() is None:
        terminalreporter.write_line(
            f"golden Avalon cases: {len(staged)} real captures NOT RUN ({REAL_CAPTURES_ENV} is not set); "
            f"{len(unstaged)} have no staged capture ({', '.join(unstaged)})", yellow=True)
    else:
        terminalreporter.write_line(
            f"golden Avalon cases: {len(staged)} real captures run from {real_captures_dir()}; "
            f"{len(unstaged)} have no staged capture ({', '.join(unstaged)})")

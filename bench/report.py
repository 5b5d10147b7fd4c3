"""Rich tables for the benchmarks' results (and the plain numbers behind them for --json)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from bench.machine import one_line


def console() -> Console:
    # Captured output (a file, a pipe, the smoke test) still gets the whole table, not 80 columns of it.
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 40)).columns, 200)
    return Console(width=width, highlight=False)


def num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or (digits == 0):
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def machine_header(out: Console, machine: dict[str, object], title: str) -> None:
    out.print(f"[bold]{title}[/bold]")
    out.print(f"machine: {one_line(machine)}")


def cycles_table(cycles: Iterable, sink: str = "InfluxDB") -> Table:
    table = Table(title=f"collector: poll -> cost -> {sink}, per cycle", title_justify="left")
    for name in ("cycle", "failed", "poll s", "cost s", "write s", "total s", "miners/s", "e2e/s", "p50 ms", "p99 ms",
                 "points", "points/s", "CPU s/1k", "RSS MB", "sim CPU", "influxd CPU", "shim CPU", "box busy"):
        table.add_column(name, justify="left" if name == "cycle" else "right", no_wrap=True)
    for c in cycles:
        label = f"{c.index + 1}" + (" (detect)" if c.warmup else "")
        others = c.others_cpu_s
        table.add_row(label, num(c.failed, 0), num(c.poll_s), num(c.cost_s), num(c.write_s)
                      + ("" if c.delivered else " !"), num(c.total_s), num(c.miners_per_s, 0),
                      num(c.miners_per_s_total, 0), num(c.p50_ms, 1), num(c.p99_ms, 1), num(c.points, 0),
                      num(c.points_per_s, 0), num(c.cpu_per_1k, 3), num(c.peak_rss_mb, 0), num(others.get("simulator")),
                      num(others.get("influxd")), num(others.get("shim")), num(c.box_busy_cores),
                      style="dim" if c.warmup else None)
    return table


def key_value_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in rows:
        table.add_row(key, value)
    return table


def comparison_table(rows: list[dict[str, object]]) -> Table:
    table = Table(title="same fleet, same run: miners/s while polling", title_justify="left")
    for name in ("path", "miners", "concurrency", "seconds", "miners/s", "p50 ms", "p99 ms", "CPU s/1k", "sim CPU s",
                 "box busy", "PolledMiners alone ÷ this"):
        table.add_column(name, justify="left" if name == "path" else "right")
    for row in rows:
        table.add_row(str(row["path"]), num(row["miners"], 0), num(row["concurrency"], 0), num(row["seconds"]),
                      num(row["miners_per_s"], 0), num(row["p50_ms"], 1), num(row["p99_ms"], 1),
                      num(row["cpu_per_1k"], 3), num(row["sim_cpu_s"]), num(row.get("box_busy_cores")), row["ratio"])
    return table


def targets_table(targets: list[dict[str, object]]) -> Table:
    table = Table(title="targets (issue: benchmark harness)", title_justify="left")
    for name in ("target", "measured", "result"):
        table.add_column(name)
    marks = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "[yellow]n/a[/yellow]"}
    for t in targets:
        table.add_row(str(t["target"]), str(t["measured"]), marks[t["met"]] + (f" ({t['note']})" if t.get("note") else ""))
    return table


def memory_tables(cycle) -> list[Table]:
    """--tracemalloc: Python memory per stage of one cycle, and the biggest live allocation sites."""
    stages = Table(title=f"Python memory by stage, cycle {cycle.index + 1} (tracemalloc)", title_justify="left")
    for name in ("stage", "live at its end MB", "peak within it MB"):
        stages.add_column(name, justify="left" if name == "stage" else "right")
    for name, mb in cycle.memory.items():
        stages.add_row(name, num(mb["live_mb"], 1), num(mb["peak_mb"], 1))
    tables = [stages]
    for stage, rows in cycle.memory_top.items():
        table = Table(title=f"biggest live allocation sites after {stage}", title_justify="left")
        for name in ("site", "MB", "blocks"):
            table.add_column(name, justify="left" if name == "site" else "right")
        for site, mb, count in rows:
            table.add_row(site, num(mb, 1), num(count, 0))
        tables.append(table)
    return tables

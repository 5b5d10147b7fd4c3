"""py-spy attached to the benchmark process for the timed cycles, and a top-N summary of its samples.

`bench.poll --profile DIR` writes DIR/collector.raw (py-spy's collapsed stacks, one
`frame;frame;... count` per line: feed it to flamegraph.pl or speedscope) and prints the functions
that hold the most samples, by self time (the leaf frame) and in total (anywhere on the stack).
py-spy samples without pausing the process (--nonblocking) and leaves idle time out (a thread
waiting in epoll is not sampled), so the percentages are shares of busy samples.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.report import key_value_table

_LINE = re.compile(r":\d+\)$")


def _py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


class PySpy:
    def __init__(self, output: Path, *, rate: int = 100, pid: int | None = None):
        self.output = Path(output)
        self.rate = rate
        self.pid = pid or os.getpid()
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start(self) -> None:
        binary = _py_spy()
        if binary is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.output.with_suffix(".log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                      "--format", "raw", "--function", "--nonblocking", "--output", str(self.output)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        time.sleep(0.5)  # attach before the cycle starts
        if self.proc.poll() is not None:
            self.error = self.output.with_suffix(".log").read_text(errors="replace").strip()[-500:]
            self.proc = None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _frame(text: str) -> str:
    """`cycle (collector/poller.py:89)` -> `cycle (collector/poller.py)`."""
    return _LINE.sub(")", text)


# Whose functions get a total-time ranking of their own (collector/cli.py only runs the loop: in every stack).
OURS = ("collector/", "models/", "pyasic/")


def top(raw: Path, n: int = 15) -> dict[str, object]:
    """{"samples": N, "self": [(function, pct)], "total": [...], "ours": [...]} from a py-spy raw file.

    self: the leaf frame (where the CPU was); total: anywhere on the stack; ours: total time of the
    functions in collector/, models/ and pyasic/ only (the event loop's frames are in every stack)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100 * c / samples) for name, c in counter.most_common(n)] if samples else []

    ours = Counter({name: c for name, c in inclusive.items()
                    if name.rpartition("(")[2].startswith(OURS) and "collector/cli.py" not in name})
    return {"samples": samples, "self": share(own), "total": share(inclusive), "ours": share(ours)[:n]}


def print_top(out, profiler: PySpy) -> dict[str, object] | None:
    """The top functions of a finished py-spy recording, printed; the numbers returned for --json."""
    if profiler.error or not profiler.output.exists():
        out.print(f"[yellow]py-spy: {profiler.error or 'no output'}[/yellow]")
        return None
    summary = top(profiler.output)
    rows = [(f"{pct:5.1f}% self", name) for name, pct in summary["self"]]
    rows += [(f"{pct:5.1f}% total", name) for name, pct in summary["ours"]]
    out.print(key_value_table(f"py-spy, timed cycles: {summary['samples']:,} busy samples; top functions by self "
                              f"time, then the project's and pyasic's by total time (stacks: {profiler.output})", rows))
    return summary

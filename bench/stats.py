"""Small numeric helpers shared by the benchmarks."""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was really observed."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


class LatencyStats:
    """Mixin for the stats dataclasses: CPU per 1,000 miners and p50/p99 latency in milliseconds.
    Needs `cpu_s`, `miners` and `latencies_s` on the class."""

    cpu_s: float
    miners: int
    latencies_s: list[float]

    @property
    def cpu_per_1k(self) -> float | None:
        return self.cpu_s / self.miners * 1000 if self.miners else None

    @property
    def p50_ms(self) -> float | None:
        p = percentile(self.latencies_s, 50)
        return p * 1000 if p is not None else None

    @property
    def p99_ms(self) -> float | None:
        p = percentile(self.latencies_s, 99)
        return p * 1000 if p is not None else None

"""Keep the cost engine's running totals (today, this month) across restarts.

Without this, every restart or upgrade of the collector would start "spent this
month" from zero. The state is one JSON file next to the spool (owned by the
same process), replaced atomically after each cycle.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path

import orjson

from collector.cost import RunningTotals, Totals
from models.base import read_capped

log = logging.getLogger(__name__)
VERSION = 1
MAX_TOTALS_BYTES = 256 * 1024 * 1024  # ~200 bytes a miner and day: far beyond any real site


def save(path: Path, totals: RunningTotals) -> None:
    data = {
        "version": VERSION,
        "as_of": totals.as_of.isoformat(),
        "day": totals.day.isoformat(),
        "month": totals.month.isoformat(),
        "today": {k: asdict(v) for k, v in totals.today.items()},
        "month_to_date": {k: asdict(v) for k, v in totals.month_to_date.items()},
        "peak_kw": totals.peak_kw,
        "demand_usd": totals.demand_usd,
        "demand_from": totals.demand_from.isoformat() if totals.demand_from else None,
    }
    temp = path.with_suffix(".tmp")
    temp.write_bytes(orjson.dumps(data))
    os.replace(temp, path)


def load(path: Path) -> RunningTotals | None:
    """The saved totals, or None (first start, or a file that cannot be used: said in the log)."""
    if not path.exists():
        return None
    try:
        data = orjson.loads(read_capped(path, MAX_TOTALS_BYTES))
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return RunningTotals(
            as_of=datetime.fromisoformat(data["as_of"]),
            day=date.fromisoformat(data["day"]),
            month=date.fromisoformat(data["month"]),
            today={k: Totals(**v) for k, v in data["today"].items()},
            month_to_date={k: Totals(**v) for k, v in data["month_to_date"].items()},
            peak_kw=float(data["peak_kw"]),
            demand_usd=float(data["demand_usd"]),
            demand_from=datetime.fromisoformat(data["demand_from"]) if data["demand_from"] else None,
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("running cost totals in %s unusable (%s): today's and this month's totals start over", path, e)
        return None

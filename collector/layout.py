"""The site's layout: where each miner stands (container, row, rack, position, free groups).

Read once from the config (`layout.miners`) and/or a CSV file (`layout.csv`), keyed by MAC or address;
looked up per sample by its MAC, then host:port, then host. The CSV is outside input: its size and row
count are capped, every value is checked as the config's are, and an error names the file and line.

    miner,container,row,rack,position,groups
    AA:BB:CC:DD:EE:01,c1,r1,rack-07,3,feeder-a;dr-zone-2
    10.0.1.15,c1,r1,rack-07,4,
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pydantic import ValidationError

from models import MinerSample
from models.base import read_capped
from models.config import LayoutConfig, Place

MAX_CSV_BYTES = 16 * 1024 * 1024  # 100,000 miners at ~100 bytes a row fit with room to spare
MAX_ROWS = 100_000
COLUMNS = ("miner", "container", "row", "rack", "position", "groups")


class LayoutError(ValueError):
    """The layout cannot be used; the message names the file, the line and the problem."""


class SiteLayout:
    def __init__(self, places: dict[str, Place]):
        self._places = {_key(miner): place for miner, place in places.items()}

    @classmethod
    def load(cls, config: LayoutConfig | None) -> SiteLayout:
        if config is None:
            return cls({})
        places = read_csv(config.csv) if config.csv is not None else {}
        places.update(config.miners)  # the config's own entries win over the CSV's
        return cls(places)

    def __len__(self) -> int:
        return len(self._places)

    def place(self, sample: MinerSample) -> Place | None:
        """Where `sample`'s miner stands: by MAC, else host:port, else host; None when not in the layout."""
        places = self._places
        for key in (sample.mac, f"{sample.host}:{sample.port}", sample.host, sample.miner):
            if key and (place := places.get(_key(key))) is not None:
                return place
        return None

    def place_of(self, miner: str) -> Place | None:
        """Where the miner of a stored point stands, by its `miner` tag (a MAC, else host:port), then its host."""
        places = self._places
        return places.get(_key(miner)) or places.get(_key(miner.rpartition(":")[0] or miner))

    def group(self, name: str) -> set[str]:
        """The keys (MACs or addresses) of the miners in group `name`, or standing in the container, row
        or rack of that name."""
        return {key for key, place in self._places.items()
                if name in place.groups or name in (place.container, place.row, place.rack)}


def curtailment_groups(place: Place | None, always_on: list[str], shed_whole: list[str]) -> tuple[bool, str | None]:
    """Whether a miner standing at `place` is always on, and the shed-whole group it belongs to (the first
    named): a group matches the place's free groups, container, row or rack."""
    names: set[str] = set()
    if place is not None:
        names = {*place.groups, *(n for n in (place.container, place.row, place.rack) if n)}
    return any(name in names for name in always_on), next((name for name in shed_whole if name in names), None)


class Allowlist:
    """The miners a control allowlist names (`curtailment.control.allow`): by id, address (host or host:port),
    MAC, or the group, container, row or rack the layout puts them in; `*` names every miner. The control
    sink sends only to these, and the plan's demand response sheds only these while control acts."""

    MAX_CACHED = 200_000

    def __init__(self, allow: list[str], layout: SiteLayout) -> None:
        self.layout = layout
        self.names_all = "*" in allow
        self._names = {a.strip().upper() for a in allow}
        # Cached by everything the verdict depends on: a miner that moves (DHCP) keeps its id, not its verdict.
        self._cache: dict[tuple[str, str, int, str | None], bool] = {}  # (id, host, port, MAC)

    def allows(self, sample: MinerSample) -> bool:
        if self.names_all or not self._names:  # (`*`, or none: control off; the stage asks of every miner)
            return self.names_all
        key = (sample.miner, sample.host, sample.port, sample.mac)
        known = self._cache.get(key)
        if known is not None:
            return known
        names = {sample.miner, sample.host, f"{sample.host}:{sample.port}", sample.mac or ""}
        place = self.layout.place(sample)
        if place is not None:
            names.update(place.groups)
            names.update(n for n in (place.container, place.row, place.rack) if n)
        ok = any(name.strip().upper() in self._names for name in names if name)
        if len(self._cache) < self.MAX_CACHED:
            self._cache[key] = ok
        return ok


def read_csv(path: Path) -> dict[str, Place]:
    try:
        text = read_capped(path, MAX_CSV_BYTES).decode("utf-8-sig")
    except (OSError, ValueError) as e:
        raise LayoutError(f"layout.csv {path}: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"miner"} - set(reader.fieldnames or ())
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if missing or unknown:
        raise LayoutError(f"layout.csv {path}: columns must be {', '.join(COLUMNS)} (miner required); "
                          f"got {', '.join((reader.fieldnames or [])[:10])}")
    places: dict[str, Place] = {}
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            raise LayoutError(f"layout.csv {path}: more than {MAX_ROWS} rows")
        miner = (row.get("miner") or "").strip()
        if not miner:
            raise LayoutError(f"layout.csv {path} line {number}: no miner (a MAC or an address)")
        values = {k: v.strip() for k, v in row.items() if k not in ("miner", "groups") and v and v.strip()}
        groups = [g.strip() for g in (row.get("groups") or "").split(";") if g.strip()]
        try:
            places[miner] = Place.model_validate({**values, "groups": groups})
        except ValidationError as e:
            problem = e.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise LayoutError(f"layout.csv {path} line {number}: {where}: {problem['msg']}") from None
    return places


def _key(miner: str) -> str:
    return miner.strip().upper()

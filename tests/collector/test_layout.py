"""The site layout: places from the config and a CSV, looked up by MAC or address; a bad CSV is a
config error naming its line."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest

from collector.layout import MAX_CSV_BYTES, LayoutError, SiteLayout
from models import MinerSample, MinerState, SampleSource
from models.config import LayoutConfig
from tests.support import HASHFLEET

TS = datetime(2026, 12, 1, tzinfo=timezone.utc)


def sample(miner: str, host: str, mac: str | None = None) -> MinerSample:
    return MinerSample(miner=miner, host=host, port=4028, ts=TS, state=MinerState.MINING, source=SampleSource.AVALON,
                       mac=mac)


def test_places_from_the_csv_and_the_config_by_mac_or_address(tmp_path):
    csv = tmp_path / "layout.csv"
    csv.write_text("miner,container,row,rack,position,groups\n"
                   "aa:bb:cc:dd:ee:01,c1,r1,rack-07,3,feeder-a;dr-2\n"
                   "10.0.1.15,c1,r1,rack-07,4,\n"
                   "10.0.1.16:4029,c2,,,,\n")
    layout = SiteLayout.load(LayoutConfig.model_validate({
        "csv": csv, "miners": {"10.0.1.15": {"container": "c9", "rack": "rack-99"}}}))
    by_mac = layout.place(sample("AA:BB:CC:DD:EE:01", "10.0.1.1", mac="AA:BB:CC:DD:EE:01"))
    assert (by_mac.container, by_mac.rack, by_mac.position, by_mac.groups) == ("c1", "rack-07", "3", ["feeder-a", "dr-2"])
    assert layout.place(sample("x", "10.0.1.15")).container == "c9"  # the config wins over the CSV
    assert layout.place(sample("y", "10.0.1.16")) is None  # listed on another port
    assert layout.place(MinerSample(miner="z", host="10.0.1.16", port=4029, ts=TS, state=MinerState.MINING,
                                    source=SampleSource.AVALON)).container == "c2"
    assert layout.group("feeder-a") == {"AA:BB:CC:DD:EE:01"} and layout.group("rack-07") == {"AA:BB:CC:DD:EE:01"}


@pytest.mark.parametrize(("text", "named"), [
    ("miner,container\n,c1\n", "line 2: no miner"),
    ("miner,container\n10.0.0.1,c 1\n", "line 2: container"),  # a space would end a tag
    ("miner,container\n10.0.0.1,c1\n10.0.0.2,\"c1,\nx\"\n", "line 3: container"),
    ("miner,shelf\n10.0.0.1,3\n", "columns must be"),
    ("miner,groups\n10.0.0.1,ok;not ok\n", "line 2: groups"),
])
def test_a_bad_row_names_its_line(tmp_path, text, named):
    csv = tmp_path / "layout.csv"
    csv.write_text(text)
    with pytest.raises(LayoutError, match=named):
        SiteLayout.load(LayoutConfig(csv=csv))


def test_a_huge_csv_is_refused_unread(tmp_path):
    csv = tmp_path / "layout.csv"
    csv.write_bytes(b"miner\n" + b"10.0.0.1\n" * (MAX_CSV_BYTES // 9 + 1))
    with pytest.raises(LayoutError, match="larger than"):
        SiteLayout.load(LayoutConfig(csv=csv))


def test_the_cli_exits_2_naming_the_csv_line(tmp_path):
    csv = tmp_path / "layout.csv"
    csv.write_text("miner,rack\n10.0.0.1,r1\n10.0.0.2,r/2 x\n")
    config = tmp_path / "site.yaml"
    config.write_text(f"miners: [10.0.0.1]\nlayout: {{csv: {csv}}}\n")
    done = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--cycles", "1"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "line 3: rack" in done.stderr

"""`hashfleet cost`, the what-if calculator, run as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import datetime, timezone

import pytest
from tests.support import HASHFLEET

from collector.stages.cost_engine import miner_cost
from models import Capex, FlatTariff, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics

# An Antminer S21 (200 TH/s, 3,500 W) in early 2025.
S21 = ["--hashrate-ths", "200", "--power-w", "3500", "--difficulty", "1.1e14", "--btc-price", "95000",
       "--fees-btc", "0.03", "--pool-fee", "2", "--power-price", "0.05"]
REQUIRED_KEYS = {"btc_per_day", "btc_per_day_net", "hashprice_usd_ph_day", "efficiency_j_th", "energy_usd_day",
                 "energy_cost_per_btc", "cash_cost_per_btc", "all_in_cost_per_btc", "breakeven_power_price",
                 "margin_pct"}


def hashfleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # keep rich from wrapping option names in error boxes
    return subprocess.run([HASHFLEET, "cost", *args], capture_output=True, text=True, timeout=60, env=env)


def test_json_is_one_object_computed_by_the_engine() -> None:
    args = [*S21, "--uptime", "0.95", "--pue", "1.1", "--opex-usd-month", "20", "--capex-usd", "3650",
            "--life-months", "36", "--height", "890000", "--json"]
    run = hashfleet(*args)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert REQUIRED_KEYS <= out.keys()

    now = datetime.now(timezone.utc)
    sample = MinerSample(miner="what-if", host="what-if", ts=now, state=MinerState.MINING,
                         source=SampleSource.PYASIC, hashrate_ths=200 * 0.95, power_w=3500 * 0.95)
    economics = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.05), pue=1.1, pool_fee_pct=2, opex_usd_month=20,
                              capex_by_miner={"what-if": Capex(price_usd=3650, life_months=36)})
    network = NetworkState(difficulty=1.1e14, height=890_000, fees_btc_per_block=0.03, btc_price_usd=95_000)
    expected = miner_cost(sample, economics, network, now)
    for key in REQUIRED_KEYS:
        assert out[key] == pytest.approx(getattr(expected, key)), key
    assert out["efficiency_j_th"] == pytest.approx(17.5)
    assert out["hashprice_usd_ph_day"] == pytest.approx(54.81, abs=0.01)


def test_subsidy_defaults_to_3_125_and_can_be_given() -> None:
    default = json.loads(hashfleet(*S21, "--json").stdout)
    halved = json.loads(hashfleet(*S21, "--subsidy-btc", "1.5625", "--json").stdout)
    assert default["btc_per_day"] == pytest.approx(200e12 * 86_400 * 3.155 / (1.1e14 * 2**32))
    assert halved["btc_per_day"] == pytest.approx(default["btc_per_day"] * 1.5925 / 3.155)


def test_table_is_readable() -> None:
    run = hashfleet(*S21)
    assert run.returncode == 0, run.stderr
    for label in ("Hashprice", "All-in cost per BTC", "Break-even power price", "J/TH", "$/PH/day"):
        assert label in run.stdout


@pytest.mark.parametrize(
    ("change", "option"),
    [
        (("--hashrate-ths", "0"), "--hashrate-ths"),
        (("--power-w", "-1"), "--power-w"),
        (("--power-price", "-0.01"), "--power-price"),
        (("--pue", "0.9"), "--pue"),
        (("--uptime", "1.5"), "--uptime"),
        (("--capex-usd", "3000"), "--life-months"),
        (("--height", "890000", "--subsidy-btc", "3.125"), "--subsidy-btc"),
    ],
)
def test_bad_input_names_the_option_and_exits_2(change: tuple[str, ...], option: str) -> None:
    args = list(S21)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    run = hashfleet(*args, "--json")
    assert run.returncode == 2
    assert option in run.stderr and run.stdout == ""


def test_missing_required_option_exits_2() -> None:
    run = hashfleet(*S21[2:], "--json")  # no --hashrate-ths
    assert run.returncode == 2 and "--hashrate-ths" in run.stderr


NUMERIC_OPTIONS = ["--hashrate-ths", "--power-w", "--difficulty", "--btc-price", "--fees-btc", "--pool-fee",
                   "--power-price", "--uptime", "--pue", "--opex-usd-month", "--capex-usd", "--salvage-usd",
                   "--subsidy-btc"]


def with_option(option: str, value: str) -> list[str]:
    """S21's inputs with `option` set to `value` (and a capex for the salvage to belong to)."""
    args = [*S21, "--capex-usd", "3650", "--life-months", "36"]
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return args


@pytest.mark.parametrize("value", ["nan", "inf", "1e308"])
@pytest.mark.parametrize("option", NUMERIC_OPTIONS)
def test_non_finite_or_huge_values_are_usage_errors_naming_the_option(option: str, value: str) -> None:
    run = hashfleet(*with_option(option, value), "--json")
    assert run.returncode == 2, run.stderr
    assert f"Invalid value for '{option}'" in run.stderr and run.stdout == ""
    assert "Traceback" not in run.stderr and "ValidationError" not in run.stderr


def test_the_largest_plausible_inputs_give_finite_figures() -> None:
    # Every bound at once: 5,000 TH/s, 30 kW, difficulty 1, $10M per BTC, $20/kWh, PUE 3, $1e12.
    run = hashfleet("--hashrate-ths", "5000", "--power-w", "30000", "--difficulty", "1", "--btc-price", "1e7",
                    "--fees-btc", "2.1e7", "--pool-fee", "0", "--power-price", "20", "--pue", "3",
                    "--opex-usd-month", "1e12", "--capex-usd", "1e12", "--life-months", "1200",
                    "--subsidy-btc", "50", "--json")
    assert run.returncode == 0, run.stderr
    assert all(value is None or math.isfinite(value)
               for value in json.loads(run.stdout).values() if isinstance(value, float))


def test_a_hashrate_too_small_for_any_figure_is_a_usage_error() -> None:
    # 1e-310 TH/s is a positive hashrate, but 30 kW over it is more J/TH than a float holds: below 1 kH/s
    # (models.hardware.MIN_HASHING_THS, the floor every reading is held to) it is refused, named.
    run = hashfleet(*with_option("--hashrate-ths", "1e-310"), "--json")
    assert run.returncode == 2
    assert "--hashrate-ths" in run.stderr and "must be at least 1e-09" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_life_months_past_the_models_bound_is_a_usage_error() -> None:
    run = hashfleet(*with_option("--life-months", "99999"), "--json")
    assert run.returncode == 2 and "Invalid value for '--life-months'" in run.stderr
    assert "Traceback" not in run.stderr


def test_salvage_without_capex_is_a_usage_error() -> None:
    run = hashfleet(*S21, "--salvage-usd", "200", "--json")
    assert run.returncode == 2 and "Invalid value for '--salvage-usd'" in run.stderr
    assert "--capex-usd" in run.stderr

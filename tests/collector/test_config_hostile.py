"""A hostile or broken config file costs an exit code 2 and a short message, never memory, time or a
traceback: `hashfleet collect --config X` run as a subprocess, its address space capped."""

from __future__ import annotations

import os
import resource
import subprocess
import time
import types
import typing
from pathlib import Path

import pydantic
import pytest
from tests.support import HASHFLEET

from collector import config
from models import CollectorConfig

# Enough for the CLI to start and refuse a config (it peaks at ~50 MB resident); far below what
# the attacks below reached unguarded (3.4 GB for the alias bomb, 7.2 GB for a 100 MB file).
ADDRESS_SPACE = 512 * 1024 * 1024


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def collect(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`hashfleet collect ...` with its address space capped; the timeout fails the test if it hangs."""
    return subprocess.run([HASHFLEET, "collect", *args], capture_output=True, text=True, timeout=60,
                          preexec_fn=_capped, env=None if env is None else {**os.environ, **env})


def assert_refused(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert len(result.stderr) < 2000, f"{len(result.stderr)} characters of error"
    for text in expected:
        assert text in result.stderr, result.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hashfleet.yaml"
    path.write_text(text)
    return path


# --- bombs -------------------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """The classic: nine lists of nine aliases of the list before; 9**9 strings once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + f"\nminers: *l{levels - 1}\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    path = write(tmp_path, billion_laughs())
    started = time.monotonic()
    result = collect("--config", str(path), "--cycles", "1")
    assert_refused(result, str(path), "more than 250,000 values", "alias bomb")
    assert time.monotonic() - started < 30


def test_an_alias_inside_what_it_names_is_refused(tmp_path):
    assert_refused(collect("--config", str(write(tmp_path, "miners: &a [*a]\n"))), "alias")


def test_aliases_that_expand_to_little_still_work(tmp_path):
    path = write(tmp_path, "economics:\n  tariff: {kind: flat, usd_per_kwh: 0.05}\n  capex_by_model:\n"
                           "    A: &box {price_usd: 3000, life_months: 36}\n    B: *box\n"
                           "network: {source: static, static: {difficulty: 1.0e14, height: 900000, btc_price_usd: 9.0e4}}\n")
    cfg = config.load(path, environ={})
    assert cfg.economics.capex_by_model["A"] == cfg.economics.capex_by_model["B"]


def test_a_megabyte_of_tiny_values_is_refused(tmp_path):
    path = write(tmp_path, "miners: [" + ",".join(["a"] * 520_000) + "]\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), str(path), "more than 250,000 values")


def test_a_list_longer_than_any_site_needs_is_refused(tmp_path):
    path = write(tmp_path, "miners: [" + ",".join(["a"] * 100_001) + "]\n")
    with pytest.raises(config.ConfigError, match="miners: List should have at most 100000 items"):
        config.load(path, environ={})


def test_a_100_mb_config_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    line = b"  - 10.0.0.1:4028\n"
    with open(path, "wb") as f:
        f.write(b"miners:\n")
        chunk = line * (1024 * 1024 // len(line))
        for _ in range(100):
            f.write(chunk)
    assert path.stat().st_size > 100 * 1000 * 1000
    assert_refused(collect("--config", str(path), "--cycles", "1"), str(path), "larger than 1024 KiB")


def test_an_endless_config_is_refused(tmp_path):
    assert_refused(collect("--config", "/dev/zero", "--cycles", "1"), "/dev/zero", "larger than")


def test_a_long_value_is_quoted_short_in_the_error(tmp_path):
    path = write(tmp_path, f"site: {'x' * 500_000}\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), "site", "xxxx")


def test_ten_thousand_bad_values_give_a_short_error(tmp_path):
    path = write(tmp_path, "miners: [" + ", ".join(["[1]"] * 10_000) + "]\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), "10000 problem(s)", "miners.0", "more")


def test_deep_nesting_is_refused(tmp_path):
    path = write(tmp_path, "miners: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), str(path))


def test_a_config_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("site: caf\xe9\n".encode("latin-1"))
    assert_refused(collect("--config", str(path), "--cycles", "1"), str(path), "UTF-8")


def test_an_endless_token_file_is_refused(tmp_path):
    result = collect("--miners", "127.0.0.1", "--cycles", "1",
                     env={"INFLUX_URL": "http://127.0.0.1:9", "INFLUX_TOKEN_FILE": "/dev/zero"})
    assert_refused(result, "influx.token_file", "/dev/zero", "larger than")


@pytest.mark.parametrize("variable", ["INFLUX_TOKEN_FILE", "INFLUX_READ_TOKEN_FILE"])
def test_a_named_pipe_as_a_secret_file_is_refused_not_waited_on(tmp_path, variable):
    # Opening a pipe no one writes to blocked for ever, deaf to Ctrl-C (the collect's timeout fails the test).
    pipe = tmp_path / "token"
    os.mkfifo(pipe)
    result = collect("--miners", "127.0.0.1", "--cycles", "1", env={"INFLUX_URL": "http://127.0.0.1:9", variable: str(pipe)})
    assert_refused(result, f"environment: {variable} (influx.", str(pipe), "a named pipe or socket, not a file")


@pytest.mark.parametrize(("text", "key", "line"), [
    ("miners: [127.0.0.1]\nsite: a\nminers: [127.0.0.2]\n", "miners", 3),
    ("miners: [127.0.0.1]\nspool: {max_mb: 10, retention_h: 24, max_mb: 1000}\n", "max_mb", 2),
])
def test_a_key_given_twice_is_refused_naming_it(tmp_path, text, key, line):
    # YAML keeps the last silently: two `miners:` lists, one of them ignored.
    assert_refused(collect("--config", str(write(tmp_path, text)), "--cycles", "1"),
                   f"line {line}", f"`{key}` appears twice in one mapping")


@pytest.mark.parametrize(("text", "field"), [
    ("miners: [127.0.0.1]\ninterval_s: true\n", "interval_s: a number, not true"),
    ("miners: [127.0.0.1]\nspool: {max_mb: yes}\n", "max_mb: a number, not true"),
    ("miners: [127.0.0.1]\neconomics: {tariff: {kind: flat, usd_per_kwh: 0.05}, pue: off}\n", "pue: a number, not false"),
])
def test_a_switch_where_a_number_belongs_is_refused(tmp_path, text, field):
    # pydantic reads true as 1: `interval_s: true` polled every second.
    assert_refused(collect("--config", str(write(tmp_path, text)), "--cycles", "1"), field)


@pytest.mark.parametrize("pue", [108, 3.5])
def test_a_pue_no_site_draws_is_refused_as_a_percent_or_a_typo(tmp_path, pue):
    # Trial ZB, L6: `pue: 108` (a percent) was taken: every cost 100 times over, a margin of -7350 %, no word.
    text = (f"miners: [127.0.0.1]\neconomics: {{tariff: {{kind: flat, usd_per_kwh: 0.05}}, pue: {pue}}}\n"
            "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path, text), environ={})
    assert f"economics.pue: Value error, a PUE is facility power / miner power, e.g. 1.08 for 8 % overhead, at most 3 " \
           f"(got {pue:g}: a percent?)" in str(caught.value)
    assert config.load(write(tmp_path, text.replace(f"pue: {pue}", "pue: 3")), environ={}).economics.pue == 3


def test_merge_keys_and_aliases_are_no_duplicates(tmp_path):
    text = ("defaults: &d {max_mb: 10}\nminers: [127.0.0.1]\nspool: {<<: *d, retention_h: 24}\n")
    with pytest.raises(config.ConfigError) as caught:  # (`defaults` is not a setting: the model says so)
        config.load(write(tmp_path, text), environ={})
    assert "defaults" in str(caught.value) and "twice" not in str(caught.value)


def test_a_named_pipe_as_the_config_is_refused(tmp_path):
    pipe = tmp_path / "hashfleet.yaml"
    os.mkfifo(pipe)
    assert_refused(collect("--config", str(pipe), "--cycles", "1"), str(pipe), "a named pipe or socket, not a file")


def test_an_empty_secret_file_is_refused(tmp_path):
    # A secret not yet written (docker secrets created empty): every write would go out unauthenticated.
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = collect("--miners", "127.0.0.1", "--cycles", "1", env={"INFLUX_URL": "http://127.0.0.1:9",
                                                                    "INFLUX_TOKEN_FILE": str(empty)})
    assert_refused(result, f"INFLUX_TOKEN_FILE (influx.token_file) {empty}: empty")


def test_a_missing_secret_file_named_by_the_environment_is_blamed_on_the_variable(tmp_path):
    path = write(tmp_path, "miners: [127.0.0.1]\n")
    result = collect("--config", str(path), "--cycles", "1",
                     env={"INFLUX_URL": "http://127.0.0.1:9", "INFLUX_TOKEN_FILE": str(tmp_path / "nowhere")})
    assert_refused(result, f"environment: INFLUX_TOKEN_FILE (influx.token_file) {tmp_path / 'nowhere'}: "
                           "No such file or directory")
    assert str(path) not in result.stderr  # the config file has no such field


# A secret still holding a line break after stripping went into an HTTP header, and the client's refusal,
# quoting the header, was logged at every retry (collect exited 0, nothing written).
FIRST, SECOND = "first-line-SECRET", "second-line-SECRET"


@pytest.mark.parametrize(("variable", "value"), [
    ("INFLUX_TOKEN_FILE", f"{FIRST}\n{SECOND}\n"),  # a rotated token appended
    ("INFLUX_TOKEN_FILE", f"{FIRST}\n\n# {SECOND}\n"),  # a note after a blank line
    ("INFLUX_TOKEN", f"{FIRST}\n{SECOND}"),
    ("INFLUX_TOKEN", f"{FIRST} {SECOND}"),  # (a valid header; no token InfluxDB issues has a space)
    ("INFLUX_READ_TOKEN_FILE", f"{FIRST}\r\n{SECOND}"),
    ("INFLUX_READ_TOKEN", f"{FIRST}\x7f{SECOND}"),
    ("MQTT_PASSWORD", f"{FIRST}\t{SECOND}"),
    ("MQTT_PASSWORD_FILE", f"{FIRST}\n{SECOND}\n"),
])
def test_a_secret_of_more_than_one_line_is_refused_naming_its_variable_never_its_value(tmp_path, variable, value):
    env = {"INFLUX_URL": "http://127.0.0.1:9", "MQTT_HOST": "127.0.0.1", "MQTT_USERNAME": "hashfleet"}
    if variable.endswith("_FILE"):
        (tmp_path / "secret").write_text(value)
        env[variable] = str(tmp_path / "secret")
    else:
        env[variable] = value
    result = collect("--miners", "127.0.0.1", "--cycles", "1", env=env)
    assert_refused(result, f"environment: {variable} (")
    assert FIRST not in result.stdout + result.stderr and SECOND not in result.stdout + result.stderr


def test_a_section_the_environment_fills_must_be_a_mapping(tmp_path):
    result = collect("--config", str(write(tmp_path, "influx: 5\n")), "--cycles", "1",
                     env={"INFLUX_URL": "http://127.0.0.1:9"})
    assert_refused(result, "`influx` must be a mapping")


# --- edges -------------------------------------------------------------------------------------


def test_an_infinite_spool_budget_is_a_config_error(tmp_path):
    path = write(tmp_path, "miners: [127.0.0.1]\nspool: {max_mb: .inf}\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), "spool.max_mb", "finite")


@pytest.mark.parametrize("site", ["..", ".", "a/b"])
def test_a_site_name_that_is_a_path_is_refused(tmp_path, site):
    path = write(tmp_path, f"miners: [127.0.0.1]\nsite: '{site}'\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), "site")
    assert_refused(collect("--miners", "127.0.0.1", "--site", site, "--cycles", "1"), "site")


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+05:00", "2300-01-01T00:00:00Z"])
def test_a_time_out_of_range_is_a_config_error_naming_it(tmp_path, when):
    # Past datetime's limits it overflowed in the model's conversion (an OverflowError traceback); near
    # them it would overflow later, far from the input (an end plus an hour).
    network = ("network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000, "
               f"difficulty_as_of: '{when}'}}}}\n")
    path = write(tmp_path, "miners: [127.0.0.1]\n" + network)
    assert_refused(collect("--config", str(path), "--cycles", "1"), "difficulty_as_of", "out of range")
    schedule = tmp_path / "dr.yaml"
    schedule.write_text(f"targets: [{{limit_kw: 5, end: '{when}'}}]\n")
    path = write(tmp_path, "miners: [127.0.0.1]\neconomics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                 "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n"
                 f"curtailment: {{dr_schedule: {schedule}}}\n")
    assert_refused(collect("--config", str(path), "--cycles", "1"), str(schedule), "targets.0.end", "out of range")


def test_a_schedule_target_without_a_start_may_not_run_for_more_than_a_week(tmp_path):
    # With no start it is active from now: an end of 2099 would shed the site for ever.
    schedule = tmp_path / "dr.yaml"
    config = write(tmp_path, "miners: [127.0.0.1]\neconomics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                   "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n"
                   f"curtailment: {{dr_schedule: {schedule}}}\n")
    schedule.write_text("targets: [{limit_kw: 5, start: '2099-01-01T00:00:00Z', end: '2099-01-02T00:00:00Z'},\n"
                        "          {shed_kw: 5, end: '2099-01-01T00:00:00Z'}]\n")
    assert_refused(collect("--config", str(config), "--cycles", "1"), str(schedule), "targets.1", "no start",
                   "longer than 7 days")


# Every float in the configuration: a value for each (the walk below checks none is missed).
FULL = {
    "miners": ["127.0.0.1"], "interval_s": 10.0, "timeout_s": 5.0, "rescan_interval_s": 300.0,
    "cycle_deadline_s": 8.0, "identify_backoff_s": 10.0, "identify_backoff_max_s": 600.0, "forget_unseen_miners_h": 24.0,
    "influx": {"url": "http://127.0.0.1:8086", "token": "t", "timeout_s": 10.0},
    "spool": {"max_mb": 100.0, "retention_h": 24.0},
    "economics": {
        "tariff": {"kind": "tou", "bands": [{"start_hour": 0, "end_hour": 24, "usd_per_kwh": 0.05}]},
        "demand_charge_usd_kw_month": 1.0, "overhead_w": 100.0, "pool_fee_pct": 1.0, "opex_usd_month": 10.0,
        "capex_by_model": {"m": {"price_usd": 100.0, "salvage_usd": 1.0, "life_months": 36}},
        "capex_by_miner": {"x": {"price_usd": 100.0, "salvage_usd": 1.0, "life_months": 36}},
        "curtailment_credit_usd_mwh": 1.0,
    },
    "network": {"source": "http", "timeout_s": 5.0, "max_age_s": 900.0,
                "static": {"difficulty": 1e14, "height": 900_000, "subsidy_btc": 3.125, "fees_btc_per_block": 0.02,
                           "btc_price_usd": 9e4}},
    "mqtt": {"host": "broker", "connect_timeout_s": 5.0, "reconnect_max_s": 60.0, "telemetry_max_age_s": 60.0,
             "meter_max_age_s": 120.0, "max_clock_skew_s": 60.0, "power_price_min_usd_kwh": -1.0,
             "power_price_max_usd_kwh": 20.0, "btc_price_min_usd": 1e3, "btc_price_max_usd": 1e7,
             "btc_price_max_jump": 0.5, "telemetry_evict_after_s": 3600.0},
    "pools": [{"kind": "ocean", "account": "bc1qsite", "refresh_s": 300.0, "days_refresh_s": 1800.0,
               "max_age_s": 900.0, "timeout_s": 10.0, "min_interval_s": 1.0, "max_reply_mb": 16.0, "backoff_s": 30.0,
               "backoff_max_s": 1800.0, "retry_after_max_s": 900.0, "fee_pct": 2.0}],
    "reconciliation": {"over_report_pct": 5.0, "max_gap_s": 900.0},
    "curtailment": {"strike_usd_kwh": 0.1, "hysteresis_usd_kwh": 0.003, "min_on_s": 900.0, "min_off_s": 900.0,
                    "warmup_s": 300.0, "ramp_kw_per_min": 100.0, "dr_default_duration_s": 3600.0,
                    "work_modes": {"Avalon Q": [{"mode": "0", "hashrate_ths": 56.0, "power_w": 850.0}]},
                    "control": {"timeout_s": 5.0, "failed_backoff_s": 3600.0}},
}
ALTERNATIVES = {  # float fields of the other variants of a union, each set in a copy of FULL
    ("economics", "tariff"): [{"kind": "flat", "usd_per_kwh": 0.05},
                              {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 900.0}],
    ("economics", "overhead_w"): [None],  # pue instead
}


def _float_paths(model: type[pydantic.BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every float field reachable from `model`, as a path (`*` for a dict key or list index)."""
    out: set[tuple[str, ...]] = set()

    def walk(annotation: typing.Any, path: tuple[str, ...]) -> None:
        origin = typing.get_origin(annotation)
        if annotation is float:
            out.add(path)
        elif isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            out.update(_float_paths(annotation, path))
        elif origin in (typing.Union, types.UnionType, typing.Annotated):
            for arg in typing.get_args(annotation)[: 1 if origin is typing.Annotated else None]:
                walk(arg, path)
        elif origin is list:
            walk(typing.get_args(annotation)[0], (*path, "*"))
        elif origin is dict:
            walk(typing.get_args(annotation)[1], (*path, "*"))

    for name, field in model.model_fields.items():
        walk(field.annotation, (*prefix, name))
    return out


def _configs_with_inf() -> list[tuple[str, dict]]:
    import copy

    bases = [FULL]
    for path, variants in ALTERNATIVES.items():
        for variant in variants:
            base = copy.deepcopy(FULL)
            node = base
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = variant
            if path[-1] == "overhead_w":
                node["pue"] = 1.1
            bases.append(base)
    cases, covered = [], set()
    for base in bases:
        def visit(node: typing.Any, path: tuple[str, ...], concrete: tuple[str, ...]) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    keyed = path and (path[-1].startswith("capex") or path[-1] == "work_modes")  # keys are names
                    visit(value, (*path, "*" if keyed else key), (*concrete, key))
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    visit(value, (*path, "*"), (*concrete, str(i)))
            elif isinstance(node, float) and path not in covered:
                covered.add(path)
                bad = copy.deepcopy(base)
                target = bad
                for key in concrete[:-1]:
                    target = target[int(key)] if isinstance(target, list) else target[key]
                target[concrete[-1]] = float("inf")
                cases.append((".".join(concrete), bad))
        visit(base, (), ())
    missing = _float_paths(CollectorConfig) - covered
    assert not missing, f"float fields without a value in FULL or ALTERNATIVES: {sorted(missing)}"
    return cases


def test_the_full_config_is_valid():
    CollectorConfig.model_validate(FULL)


@pytest.mark.parametrize(("field", "raw"), _configs_with_inf(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_float_in_the_config_must_be_finite(tmp_path, field, raw):
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, environ={})
    message = str(caught.value)
    for tag in ("flat", "tou", "live"):  # pydantic names the tariff's kind in the path
        message = message.replace(f".tariff.{tag}.", ".tariff.")
    assert f"  {field}: Input should be a finite number" in message

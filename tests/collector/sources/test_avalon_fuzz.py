"""Any one value of a golden Avalon reply replaced by anything: the driver gives a sample (or, for a reply it
cannot use at all, a MinerReplyError that poll turns into an error sample) - never another exception,
never a value outside what MinerSample allows. Property-based (hypothesis) over every golden case."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.avalon_golden import GOLDEN, answer, replies

from collector.sources import avalon
from collector.sources import cgminer_client as cgminer

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
_KEY = re.compile(r"(\w+)\[([^\]]*)\]")
REPLIES = {case.name: answer(replies(case), {"command": avalon.POLL_COMMAND})
           for case in sorted(p for p in GOLDEN.iterdir() if p.is_dir())}
DEVICE_CASES = sorted(name for name, reply in REPLIES.items() if "estats" in reply)

NASTY = st.sampled_from(["nan", "inf", "-inf", "-1", "1e308", "-1e308", "0", "", "1e-320", "9" * 30, "0x10",
                         "1,5", "12%", "NaN%", " ", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17", "-0", "1e300 1e300",
                         "Work: In Fault, " + "x" * 600, "Work: In Idle", "4294967296", "513 512 1"])
VALUE = st.one_of(NASTY, st.text(alphabet=st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)),
                                 max_size=40), st.lists(NASTY, max_size=6).map(" ".join))
JSON_VALUE = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.just([1, 2]),
                       st.just({"a": 1}))


def read(reply):
    try:
        return avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS)
    except cgminer.MinerReplyError:
        return None  # poll reports the miner in error; nothing else may escape


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(DEVICE_CASES), which=st.integers(min_value=0, max_value=10**6), value=VALUE)
@example(case="q_25052801_mining-super-doc", which=44162, value=" ")  # PS[ ]: found by this test, fixed
def test_any_device_string_value_replaced_gives_a_sample(case, which, value):
    reply = copy.deepcopy(REPLIES[case])
    entries = [(i, key) for i, entry in enumerate(reply["estats"][0]["STATS"]) for key, text in entry.items()
               if isinstance(text, str) and (key.startswith("MM ID") or key == "HBinfo")]
    i, key = entries[which % len(entries)]
    text = reply["estats"][0]["STATS"][i][key]
    found = list(_KEY.finditer(text))
    match = found[(which // len(entries)) % len(found)]
    reply["estats"][0]["STATS"][i][key] = text[:match.start(2)] + value + text[match.end(2):]
    read(reply)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(sorted(REPLIES)), section=st.sampled_from(["summary", "pools", "version"]),
       which=st.integers(min_value=0, max_value=10**6), value=JSON_VALUE)
def test_any_summary_pools_or_version_value_replaced_gives_a_sample(case, section, which, value):
    reply = copy.deepcopy(REPLIES[case])
    if section not in reply:
        return
    body = reply[section][0]
    name = next(k for k in body if k not in ("STATUS", "id"))
    items = body[name]
    if not isinstance(items, list) or not items:
        return
    item = items[which % len(items)]
    keys = list(item)
    item[keys[(which // len(items)) % len(keys)]] = value
    read(reply)

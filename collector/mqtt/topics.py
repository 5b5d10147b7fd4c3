"""The published topic tree, in one place (docs/mqtt.md shows it):

    <prefix>/<site>/status                 online | offline (retained; offline is also the last will)
    <prefix>/<site>/state                  site summary: miners, hashrate, power (retained)
    <prefix>/<site>/cost                   site CostSample JSON (retained)
    <prefix>/<site>/collector              the collector's own health and ingest counters
    <prefix>/<site>/health                 the site's hardware health: problems, dollars lost, repair queue
    <prefix>/<site>/miner/<miner>/state    MinerSample JSON (retained)
    <prefix>/<site>/miner/<miner>/cost     miner CostSample JSON (retained)
    <prefix>/<site>/miner/<miner>/health   the miner's problems, root cause and dollars lost (retained)
    <prefix>/<site>/miner/<miner>/plan     the curtailment plan for the miner (retained, on change)
    <prefix>/<site>/curtailment/state      the curtailment plan's summary (retained)
    <prefix>/<site>/curtailment/actions    what curtailment control did (each event)
    <prefix>/<site>/curtailment/mode/set   commands in (Home Assistant): control mode,
    <prefix>/<site>/curtailment/dr_limit_kw/set   demand-response limit,
    <prefix>/<site>/curtailment/kill/set   the kill switch

A miner id becomes one topic level (`topic_level`): as it is when a broker takes it; else `/`, `+`
and `#` (which MQTT reserves) and every character a broker may refuse are replaced by `_`, and a hash
of the id is appended, so two ids never share a topic. `topic_problem` says why a broker may refuse a
whole topic name: the connection drops such a message rather than be dropped by the broker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

# What a broker may refuse in a topic name (MQTT 5.0 1.5.4; Mosquitto refuses each one and drops the client
# that sends it): NUL and the other C0 controls, DEL and the C1 controls, surrogates (not UTF-8), and the
# non-characters U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF of every plane.
_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(chr(plane + 0xFFFE) + chr(plane + 0xFFFF)
                                           for plane in range(0, 0x110000, 0x10000))
_REFUSED = f"\x00-\x1f\x7f-\x9f\ud800-\udfff{_NONCHARACTERS}"
_REFUSED_CHAR = re.compile(f"[{_REFUSED}]")
_NOT_IN_LEVEL = re.compile(f"[/+#{_REFUSED}]")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")
MAX_LEVEL_CHARS = 256  # the longest miner id (MinerSample): at most 1 KiB of UTF-8
MAX_TOPIC_BYTES = 65_535  # UTF-8, MQTT's limit
MAX_TOPIC_SLASHES = 200  # Mosquitto refuses a topic with more (TOPIC_HIERARCHY_LIMIT)


def fingerprint(text: str) -> str:
    """16 hex digits of a hash of `text`: what tells apart ids that fold to one topic level or slug."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def hashed_shape(text: str) -> bool:
    """Whether `text` ends like a folded id (`_` and 16 hex digits): such an id is folded too, so that it
    cannot take the topic level or slug of the id it mimics."""
    return len(text) >= 17 and text[-17] == "_" and _HEX16.fullmatch(text, len(text) - 16) is not None


def topic_level(text: str) -> str:
    """`text` as one topic level a broker takes: `text` itself when it can be (a MAC, `host:port`, `bitaxe-7`);
    else `/ + #` and each character a broker may refuse replaced by `_`, cut to MAX_LEVEL_CHARS, with
    `_<fingerprint>` of `text` appended: `rack1/m1` -> `rack1_m1_<16 hex>`, while `rack1_m1` stays itself."""
    if (text and len(text) <= MAX_LEVEL_CHARS and "/" not in text and "+" not in text and "#" not in text
            and not _refused_characters(text) and not hashed_shape(text)):
        return text
    return f"{_NOT_IN_LEVEL.sub('_', text[:MAX_LEVEL_CHARS - 17])}_{fingerprint(text)}"


def _refused_characters(text: str) -> bool:
    """Whether `text` holds a character a broker may refuse in a topic (control, non-character, surrogate)."""
    # Each of them is unprintable: most texts are printable, and isprintable() is much the quicker test.
    return not text.isprintable() and _REFUSED_CHAR.search(text) is not None


def topic_problem(topic: str) -> str | None:
    """Why a broker may refuse `topic` as the topic name of a publish (and drop the connection), or None."""
    if not topic:
        return "it is empty"
    if "+" in topic or "#" in topic:
        return "it holds a wildcard (+ or #)"
    if _refused_characters(topic):
        return "it holds a control character, a non-character or a surrogate"
    if len(topic) > MAX_TOPIC_BYTES // 4 and len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"it is longer than {MAX_TOPIC_BYTES:,} bytes"
    if topic.count("/") > MAX_TOPIC_SLASHES:
        return f"it has more than {MAX_TOPIC_SLASHES + 1} levels"
    return None


def slug(text: str) -> str:
    """`text` as a Home Assistant id ([a-z0-9_-]): `AA:BB:CC:00:11:22` -> `aa_bb_cc_00_11_22`."""
    return _NOT_SLUG.sub("_", text.lower()).strip("_") or "_"


@dataclass(frozen=True)
class Topics:
    prefix: str
    site: str

    @cached_property  # in every miner's topics, every cycle
    def root(self) -> str:
        return f"{self.prefix}/{topic_level(self.site)}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def site_state(self) -> str:
        return f"{self.root}/state"

    @property
    def site_cost(self) -> str:
        return f"{self.root}/cost"

    @property
    def collector(self) -> str:
        return f"{self.root}/collector"

    @property
    def site_health(self) -> str:
        return f"{self.root}/health"

    def miner_health(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/health"

    def miner_state(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/state"

    def miner_cost(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/cost"

    def miner_plan(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/plan"

    @property
    def curtailment(self) -> str:
        return f"{self.root}/curtailment"

    @property
    def curtailment_state(self) -> str:
        return f"{self.curtailment}/state"

    @property
    def curtailment_actions(self) -> str:
        return f"{self.curtailment}/actions"

    def curtailment_set(self, what: str) -> str:
        """The command topic of a curtailment entity: mode, dr_limit_kw or kill."""
        return f"{self.curtailment}/{what}/set"


ONLINE = "online"
OFFLINE = "offline"

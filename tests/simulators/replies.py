"""Compare a simulator's reply with a published reply's layout (tests/data/replies/<make>/<unit>/: the
published structure with our own values): same keys, same JSON types, where the published reply has
them. Shared by the Whatsminer and Braiins simulator tests."""

from __future__ import annotations

import json
from typing import Any

from tests.support import DATA

REPLIES = DATA / "replies"


def load(relative: str) -> Any:
    return json.loads((REPLIES / relative).read_text())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def shape_mismatches(real: Any, ours: Any, path: str = "$", *, types: bool = True,
                     skip_defaults: bool = False, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Where `ours` lacks a key the real reply has, or holds another JSON type there.

    Lists are compared element by element up to the shorter one (a simulator may list other
    pools or boards than a capture). `skip_defaults`: a real value that is 0/false/empty may be
    absent from ours (protobuf JSON leaves defaults out). `ignore`: key names not compared.
    """
    out: list[str] = []
    if isinstance(real, dict):
        if not isinstance(ours, dict):
            return [f"{path}: object expected, got {json_type(ours)}"]
        for key, value in real.items():
            if key in ignore:
                continue
            if key not in ours:
                if not (skip_defaults and value in (0, 0.0, False, None, "", [], {})):
                    out.append(f"{path}.{key}: missing")
                continue
            out += shape_mismatches(value, ours[key], f"{path}.{key}", types=types, skip_defaults=skip_defaults,
                                    ignore=ignore)
        return out
    if isinstance(real, list):
        if not isinstance(ours, list):
            return [f"{path}: list expected, got {json_type(ours)}"]
        for i, (r, o) in enumerate(zip(real, ours)):
            out += shape_mismatches(r, o, f"{path}[{i}]", types=types, skip_defaults=skip_defaults, ignore=ignore)
        return out
    if types and real is not None and json_type(real) != json_type(ours):
        out.append(f"{path}: {json_type(real)} in the real reply, {json_type(ours)} here ({ours!r})")
    return out

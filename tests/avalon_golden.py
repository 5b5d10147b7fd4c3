"""The Avalon golden cases (tests/data/replies/avalon/golden/, README.md there) and a miner that answers from them.

A case folder holds replies named by command (`version.json`, `stats.txt`, a joined `a+b+c.json`, or
`reply.json`: the joined poll reply), `expected.json` (the truth for our files) and, for a published
capture, `expected_real.json` with the real files' SHA-256 in `SOURCE.md`. `GoldenMiner` serves a
case's replies over real TCP the way the firmware does: one request per connection, a joined
request `a+b` answered as `{"a": [...], "b": [...], "id": 1}`, a trailing NUL, then close.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import DATA

GOLDEN = DATA / "replies" / "avalon" / "golden"
REAL_CAPTURES_ENV = "HASHFLEET_REAL_CAPTURES"
# What a reply file may be named after (anything else in a folder is not served, e.g. the A10
# manual's `version_other_unit.txt`, which is another unit's).
COMMANDS = ("version", "summary", "estats", "stats", "pools", "devs", "devdetails", "litestats")
_STAND_INS = {"estats": "stats", "stats": "estats"}  # the firmware answers both with the same entries


# -- reading reply files -----------------------------------------------------------------------------------


def _text_value(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def text_reply(text: str) -> dict[str, Any]:
    """CGMiner's plain-text reply (`STATUS=S,...|SECTION,Key=v,...|`) as the JSON it stands for. Lines
    wrapped by an e-mail client (the Nano 3 paste) are joined; `\\|` is the manual's escaped bar."""
    text = text.replace("\\|", "|").replace("\r", "").replace("\n", " ")
    sections = [part.strip() for part in text.split("|") if part.strip()]
    body: dict[str, Any] = {}
    for i, section in enumerate(sections):
        fields = re.split(r",(?=[A-Za-z][\w %]*=)", section)
        name = None
        if "=" not in fields[0]:
            name = fields.pop(0)
        item = {}
        for field in fields:
            key, _, value = field.partition("=")
            item[key] = _text_value(value)
        if i == 0:
            body["STATUS"] = [item]
            continue
        first = next(iter(item))
        name = name or {"POOL": "POOLS", "STATS": "STATS", "DEVDETAILS": "DEVDETAILS", "ASC": "DEVS"}[first]
        body.setdefault(name, []).append(item)
    body["id"] = 1
    return body


def replies(folder: Path) -> dict[str, dict[str, Any]]:
    """Every command's reply in `folder`, as the single-command JSON the firmware sends (a joined
    file split into its parts); stats and estats stand in for each other."""
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.iterdir()):
        stem, suffix = file.name.rsplit(".", 1) if "." in file.name else (file.name, "")
        if suffix == "txt" and stem in COMMANDS:
            out[stem] = text_reply(file.read_text())
        elif suffix == "json" and stem in COMMANDS:
            out[stem] = json.loads(file.read_text())
        elif suffix == "json" and (stem == "reply" or "+" in stem):
            joined = json.loads(file.read_text())
            for command in COMMANDS:
                if isinstance(joined.get(command), list):
                    out.setdefault(command, joined[command][0])
    for command, other in _STAND_INS.items():
        if command not in out and other in out:
            out[command] = out[other]
    return out


def golden(case: str, command: str) -> dict[str, Any] | None:
    """The golden case's reply to `command` (stats and estats stand in for each other), or None."""
    return replies(GOLDEN / case).get(command)


# -- the cases -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    expected: dict[str, Any]
    expected_real: dict[str, Any] | None
    real_files: tuple[RealFile, ...]  # the published capture's files (not in the repository)

    @property
    def real_run(self) -> bool:
        """Can this case run on the real capture (a capture was staged and pinned by SHA-256)?"""
        return self.expected_real is not None and bool(self.real_files)


def cases() -> list[Case]:
    found = []
    for folder in sorted(p for p in GOLDEN.iterdir() if p.is_dir()):
        real = folder / "expected_real.json"
        found.append(Case(
            name=folder.name, folder=folder, expected=json.loads((folder / "expected.json").read_text()),
            expected_real=json.loads(real.read_text()) if real.exists() else None,
            real_files=_real_files((folder / "SOURCE.md").read_text())))
    return found


_ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$")


def _real_files(source_md: str) -> tuple[RealFile, ...]:
    """The table under "## The real capture" in a case's SOURCE.md."""
    _, _, real = source_md.partition("## The real capture")
    return tuple(RealFile(m[1], int(m[2]), m[3]) for line in real.splitlines() if (m := _ROW.match(line.strip())))


def real_captures_dir() -> Path | None:
    value = os.environ.get(REAL_CAPTURES_ENV)
    return Path(value) if value else None


def real_replies(case: Case, root: Path) -> dict[str, dict[str, Any]]:
    """The real capture's replies from `root/<case>/`, each file checked against SOURCE.md's size and
    SHA-256 (AssertionError naming the case and file otherwise)."""
    folder = root / case.name
    for file in case.real_files:
        path = folder / file.name
        assert path.is_file(), f"{case.name}: real capture file {path} is missing ({REAL_CAPTURES_ENV}={root})"
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (len(data), digest) == (file.size, file.sha256), (
            f"{case.name}: {path} is {len(data)} bytes with SHA-256 {digest}; SOURCE.md pins {file.size} bytes "
            f"and {file.sha256}: not the published capture")
    return replies(folder)


# -- a miner that answers from a case ----------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        data = b""
        while True:
            chunk = self.request.recv(65536)
            data += chunk
            try:
                request = json.loads(data.rstrip(b"\x00"))
                break
            except ValueError:
                if not chunk:
                    return
        known = self.server.replies  # type: ignore[attr-defined]
        self.request.sendall(json.dumps(answer(known, request)).encode() + b"\x00")


def answer(known: dict[str, dict[str, Any]], request: Any) -> dict[str, Any]:
    """What the firmware answers `request` with, from `known` replies: a single command's reply (cgminer's
    "Invalid command" for one the case has not), or a joined reply of the parts the case has."""
    command = str(request.get("command", "")) if isinstance(request, dict) else ""
    commands = command.split("+")
    if len(commands) == 1:
        return known.get(command) or {
            "STATUS": [{"STATUS": "E", "When": 0, "Code": 14, "Msg": "Invalid command", "Description": "cgminer"}],
            "id": 1}
    return {**{c: [known[c]] for c in commands if c in known}, "id": 1}


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


@contextmanager
def golden_miner(known: dict[str, dict[str, Any]], host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, int]]:
    """Serve `known` replies on (host, port) until the block ends; yields the address bound."""
    server = _Server((host, port), _Handler)
    server.replies = known  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()

"""Find out what answers at an address: a native-driver Avalon, another make
that pyasic reads, or nothing.

Avalons are recognised by their CGMiner `version` reply (one cheap request);
everything else goes through pyasic's detection, which probes the web UI and
port 4028 itself. Scans bound their concurrency: pyasic's own limit does not
(DESIGN.md section 5: an unbounded gather over 1,000 addresses found none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.sources import avalon, cgminer, pyasic_source
from collector.targets import CGMINER_PORT, Target

WEB_PORT = 80

AVALON = "avalon"
PYASIC = "pyasic"


class NoMinerFound(Exception):
    """Nothing recognisable answers at an address; the message says what happened."""


@dataclass
class Identity:
    target: Target
    driver: str  # AVALON | PYASIC
    make: str | None = None
    model: str | None = None
    pyasic_miner: Any = None


async def identify(target: Target, timeout_s: float = 5.0) -> Identity:
    """What answers at `target`; raises NoMinerFound when nothing recognisable does."""
    if target.port == WEB_PORT:  # a web-only device (Bitaxe): no CGMiner API to ask
        return await _pyasic_identity(target, timeout_s, f"{target.address}: no make pyasic knows answers")
    try:
        raw = await cgminer.request(target.host, target.port, "version", timeout_s=timeout_s)
        why = f"{target.address}: answers, but neither as an Avalon nor as a make pyasic knows"
    except cgminer.MinerUnreachable as e:
        raw, why = b"", str(e)
    if b"AVALON" in raw.upper():
        try:
            version = cgminer.section(cgminer.decode(raw, target.address), "version", target.address)
            prod = (version.get("VERSION") or [{}])[0].get("PROD")
        except cgminer.MinerReplyError:
            prod = None  # still an Avalon; polls will report what is wrong with it
        return Identity(target, AVALON, make=avalon.MAKE, model=prod)
    if target.port != CGMINER_PORT:
        raise NoMinerFound(why)  # pyasic's detection only knows the standard ports
    return await _pyasic_identity(target, timeout_s, why)


async def _pyasic_identity(target: Target, timeout_s: float, why: str) -> Identity:
    miner = await pyasic_source.detect(target.host, timeout_s=max(timeout_s, 5.0))
    if miner is None:
        raise NoMinerFound(why)
    return Identity(target, PYASIC, make=str(getattr(miner, "make", None) or "") or None,
                    model=str(getattr(miner, "model", None) or "") or None, pyasic_miner=miner)


async def scan(
    targets: list[Target], *, concurrency: int = 256, timeout_s: float = 3.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Identity]:
    """Identify many addresses at once, at most `concurrency` in flight."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def one(target: Target) -> Identity | None:
        nonlocal done
        async with semaphore:
            try:
                return await asyncio.wait_for(identify(target, timeout_s), timeout_s * 3)
            except (TimeoutError, NoMinerFound):
                return None
            finally:
                done += 1
                if on_progress:
                    on_progress(done, len(targets))

    found = await asyncio.gather(*(one(t) for t in targets))
    return [identity for identity in found if identity is not None]

"""Every make other than Avalon, read through pyasic (unchanged).

pyasic detects the make and firmware (Antminer stock, Whatsminer, Bitaxe,
Braiins OS, LuxOS, VNish, ...) and reads it; this module caches the detected
miner objects, bounds the time each call may take, and maps pyasic's MinerData
into MinerSample. pyasic's own `limit` does not bound concurrency (DESIGN.md
section 5); the caller bounds it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from models import BoardSample, MinerSample, MinerState, PoolInfo, SampleSource

log = logging.getLogger(__name__)

_HASH_PER_TH = 1e12

# What MinerSample has no use for. Each is one more RPC or web request per miner per cycle
# (an Antminer's config and LED state are two digest-auth web calls).
_NOT_NEEDED = ["serial_number", "psu_serial_number", "api_ver", "hostname", "fan_psu", "fault_light", "config"]


def _import_pyasic():
    """Import pyasic on first use (~1 s and ~30 MB; Avalon-only sites never need it), undoing what its
    import does to logging: it sets the root logger to WARNING, which silenced the service's own log."""
    root = logging.getLogger()
    level = root.level
    import pyasic

    root.setLevel(level)
    return pyasic


async def detect(host: str, timeout_s: float = 10.0) -> Any | None:
    """pyasic's miner object for `host` (port 4028/80 are pyasic's own), or None."""
    pyasic = _import_pyasic()
    try:
        return await asyncio.wait_for(pyasic.get_miner(host), timeout_s)
    except TimeoutError:
        return None
    except Exception as e:  # pyasic raises many kinds; one odd miner must not stop a scan
        log.debug("%s: pyasic detection failed: %r", host, e)
        return None


async def poll(
    miner: Any, *, host: str, port: int, site: str, ts: datetime, timeout_s: float = 10.0, known_id: str | None = None
) -> MinerSample:
    """Read one detected miner; never raises for a misbehaving miner."""
    miner_id = known_id or f"{host}:{port}"
    try:
        data = await asyncio.wait_for(miner.get_data(exclude=_NOT_NEEDED), timeout_s)
    except TimeoutError:
        return _offline(miner_id, host, port, site, ts, f"{host}: no data within {timeout_s:g} s")
    except Exception as e:
        if _caused_by_network(e):
            return _offline(miner_id, host, port, site, ts, f"{host}: not answering ({type(e).__name__})")
        return MinerSample(miner=miner_id, host=host, port=port, site=site, ts=ts, state=MinerState.ERROR,
                           source=SampleSource.PYASIC, errors=[f"{host}: pyasic failed: {e!r}"])
    # pyasic 0.79 hides connection errors: an unreachable Antminer comes back as empty data with
    # is_mining=True. No hashrate, no uptime and no MAC means nothing answered.
    if data.hashrate is None and data.uptime is None and not data.mac:
        return _offline(miner_id, host, port, site, ts, f"{host}: no answer on pyasic's ports (RPC 4028, web 80)")
    sample = from_miner_data(data, host=host, port=port, site=site, ts=ts)
    if known_id and not sample.mac:
        sample = sample.model_copy(update={"miner": known_id})
    return sample


def _offline(miner_id: str, host: str, port: int, site: str, ts: datetime, reason: str) -> MinerSample:
    return MinerSample.offline(miner=miner_id, host=host, port=port, site=site, ts=ts, source=SampleSource.PYASIC,
                               reason=reason)


def _caused_by_network(error: BaseException) -> bool:
    """True when a transport failure (refused, reset, unreachable) is anywhere in the exception chain."""
    import httpx

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (OSError, httpx.TransportError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def from_miner_data(data: Any, *, host: str, port: int, site: str, ts: datetime) -> MinerSample:
    hashrate = _ths(data.hashrate)
    mac = (data.mac or "").upper() or None
    if not data.is_mining:
        state = MinerState.IDLE
    elif hashrate:
        state = MinerState.MINING
    else:
        state = MinerState.ERROR if data.errors else MinerState.IDLE
    info = data.device_info
    boards = [
        BoardSample(index=b.slot, hashrate_ths=_ths(b.hashrate), temp_in_c=b.inlet_temp, temp_out_c=b.outlet_temp,
                    temp_chip_max_c=b.chip_temp, chips_ok=b.chips, chips_expected=b.expected_chips)
        for b in data.hashboards
    ]
    board_temps = [t for b in data.hashboards for t in (b.temp, b.outlet_temp) if t is not None]
    chip_temps = [b.chip_temp for b in data.hashboards if b.chip_temp is not None]
    return MinerSample(
        miner=mac or f"{host}:{port}", host=host, port=port, site=site, ts=ts, state=state,
        source=SampleSource.PYASIC,
        make=str(info.make) if info and info.make else None, model=str(info.model) if info and info.model else None,
        firmware=data.fw_ver, mac=mac,
        hashrate_ths=hashrate if state is MinerState.MINING else 0.0,
        expected_hashrate_ths=_ths(data.expected_hashrate),
        power_w=data.wattage or None, power_limit_w=data.wattage_limit,
        temp_env_c=data.env_temp, temp_chip_max_c=max(chip_temps, default=None),
        temp_board_max_c=max(board_temps, default=None),
        fans_rpm=[f.speed for f in data.fans if f.speed is not None], boards=boards, pool=_pool(data.pools),
        uptime_s=data.uptime, errors=[str(e.error_message if hasattr(e, "error_message") else e) for e in data.errors],
    )


def _pool(pools: list[Any]) -> PoolInfo | None:
    active = next((p for p in pools if p.active), None) or (pools[0] if pools else None)
    if active is None:
        return None
    return PoolInfo(url=str(active.url) if active.url else None, user=active.user, accepted=active.accepted,
                    rejected=active.rejected, active=active.active)


def _ths(rate: Any) -> float | None:
    if rate is None:
        return None
    return max(float(rate.rate) * rate.unit.value / _HASH_PER_TH, 0.0)

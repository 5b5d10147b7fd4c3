"""The backtest run documented in docs/curtailment.md: `python -m bench.backtest_demo [--out DIR]`.

1. A 30-day hourly power price series with the statistics BitOoda published for ERCOT's North Hub real-time
   price (Medium, "ERCOT Power and Asset Optimization", year to date in mid-2019): a mean of $39/MWh, 2.3 % of
   hours above $105/MWh, and a mean of $22.3/MWh over the other 97.7 %. No published price is copied: the
   series is generated (seeded) and then fitted to those three figures; its shape is ours: a daily cycle
   peaking in the late afternoon, night hours going negative a few times (as West Texas wind pushes the
   load zones; the 2023 West load zone low was -$244.4/MWh, lod.io), and the spike hours in five
   afternoon events of three to four hours, as heat waves bring them.
2. Thirty days of a fleet's history, as the collector writes it, in a local spool: 40 Avalons (10 each of
   A15-194, A1466, A1246 and Avalon Q) mining at their nameplate with a little noise, one reading every
   5 minutes, and the network at difficulty 1.5e14, BTC at $95,000 (hashprice ~$40/PH/day).
3. `hashfleet backtest --since 31d` on it, with a strike at $105/MWh (BitOoda's) and with the margin rules.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from collector.line_protocol import encode
from collector.sinks.spool import Spool

HOURS = 30 * 24
MEAN, SPIKE_SHARE, STRIKE, MEAN_BELOW = 39.0, 0.023, 105.0, 22.3  # $/MWh; BitOoda, ERCOT North Hub RT
FLEET = [("AvalonMiner 15-194", 194.0, 3650.0), ("AvalonMiner 1466-150", 150.0, 3230.0),
         ("AvalonMiner 1246-83", 90.0, 3420.0), ("Avalon Q", 90.0, 1674.0)]
NETWORK = {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02, "btc_price_usd": 95000}
SITE = "texas"


def ercot_like(hours: int = HOURS, seed: int = 2019) -> list[float]:
    """Hourly $/MWh fitted to the published figures above (exactly: mean, spike count, mean below)."""
    rng = random.Random(seed)
    spikes = round(SPIKE_SHARE * hours)
    events, hour_of_event = [], set()
    while sum(len(e) for e in events) < spikes:  # afternoon events of 3-4 hours
        day = rng.randrange(hours // 24)
        length = min(rng.choice((3, 4)), spikes - sum(len(e) for e in events))
        start = day * 24 + rng.randint(14, 20 - length)
        event = range(start, start + length)
        if hour_of_event.isdisjoint(event):
            events.append(event)
            hour_of_event.update(event)
    prices = []
    for h in range(hours):
        local = h % 24
        daily = 10 * math.sin((local - 10) / 24 * 2 * math.pi)  # low before dawn, high late afternoon
        wind = -35 * rng.random() if local < 6 and rng.random() < 0.12 else 0.0  # a windy night: negative
        prices.append(20 + daily + rng.gauss(0, 7) + wind)
    below = [h for h in range(hours) if h not in hour_of_event]
    shift = MEAN_BELOW - sum(prices[h] for h in below) / len(below)
    for h in below:
        prices[h] = min(prices[h] + shift, STRIKE - 1)
    shift = MEAN_BELOW - sum(prices[h] for h in below) / len(below)  # the clip moved it a little
    for h in below:
        prices[h] += shift
    raw = {h: math.exp(rng.gauss(5.6, 1.0)) for h in hour_of_event}  # lognormal: most spikes hundreds, a few thousands
    target = (MEAN * hours - MEAN_BELOW * len(below)) / spikes
    scale = target / (sum(raw.values()) / spikes)
    for h, value in raw.items():
        prices[h] = value * scale
    low = min(prices[h] for h in hour_of_event)
    if low <= STRIKE:  # lift the smallest spikes over the strike, keeping the spikes' mean
        lift = {h: max(0.0, STRIKE + 1 - prices[h]) for h in hour_of_event}
        rest = [h for h in hour_of_event if not lift[h]]
        take = sum(lift.values()) / len(rest)
        for h in hour_of_event:
            prices[h] = prices[h] + lift[h] if lift[h] else prices[h] - take
    return prices


def statistics(prices: list[float]) -> dict[str, float]:
    above = [p for p in prices if p > STRIKE]
    below = [p for p in prices if p <= STRIKE]
    return {"hours": len(prices), "mean": sum(prices) / len(prices), "share_above_strike": len(above) / len(prices),
            "mean_below_strike": sum(below) / len(below), "mean_above_strike": sum(above) / len(above),
            "max": max(prices), "min": min(prices), "negative_hours": sum(p < 0 for p in prices)}


def write_history(directory: Path, start: int, hours: int = HOURS, step: int = 300, seed: int = 7) -> None:
    rng = random.Random(seed)
    units = [(f"{model.split()[-1]}-{i}", model, ths * rng.uniform(0.95, 1.03), w * rng.uniform(0.98, 1.04))
             for model, ths, w in FLEET for i in range(10)]
    spool = Spool(directory, retention_s=40 * 86400)
    from collector.network_revenue import subsidy_btc
    from collector.stages.cost_engine import hashprice_usd_ph_day

    hashprice = hashprice_usd_ph_day(NETWORK["difficulty"], subsidy_btc(NETWORK["height"]),
                                     NETWORK["fees_btc_per_block"], NETWORK["btc_price_usd"])
    lines: list[str] = []
    for k in range(hours * 3600 // step):
        t = start + k * step
        for miner, model, ths, w in units:
            lines.append(encode("miner", {"site": SITE, "miner": miner, "model": model}, {
                "hashrate_ths": ths * rng.uniform(0.98, 1.02), "power_w": w * rng.uniform(0.995, 1.005),
                "state": "mining", "up": 1}, t))
        lines.append(encode("network", {"site": SITE}, {"hashprice_usd_ph_day": hashprice,
                                                       "btc_price_usd": float(NETWORK["btc_price_usd"])}, t))
        if len(lines) >= 5000:
            spool.append(lines)
            lines = []
    if lines:
        spool.append(lines)
    spool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the price CSV, history and config here")
    args = parser.parse_args(argv)
    import time

    out = args.out or Path(tempfile.mkdtemp(prefix="hashfleet-backtest-"))
    out.mkdir(parents=True, exist_ok=True)
    now = int(time.time()) // 3600 * 3600
    start = now - (HOURS + 1) * 3600
    prices = ercot_like()
    stats = statistics(prices)
    print("price series (fitted to BitOoda's ERCOT North Hub figures):",
          ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    csv = out / "ercot-like-30d.csv"
    csv.write_text("time,usd_per_mwh\n" + "".join(f"{start + 3600 * h},{p:.2f}\n" for h, p in enumerate(prices)))
    write_history(out / "spool" / SITE, start)
    config = out / "hashfleet.yaml"
    config.write_text(yaml.safe_dump({
        "site": SITE, "interval_s": 300, "spool": {"retention_h": 1000},
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.039}, "pue": 1.08, "pool_fee_pct": 2},
        "network": {"source": "static", "static": NETWORK},
        "curtailment": {"hysteresis_usd_kwh": 0.0, "min_on_s": 0, "min_off_s": 0}}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")},
           "HASHFLEET_SPOOL_DIR": str(out / "spool")}
    hashfleet = str(Path(sys.executable).with_name("hashfleet"))
    for strategy in ("strike:0.105", "margin"):
        print(f"\n$ hashfleet backtest --config hashfleet.yaml --since 31d --prices ercot-like-30d.csv "
              f"--strategy {strategy}", flush=True)
        subprocess.run([hashfleet, "backtest", "--config", str(config), "--since", "31d", "--prices", str(csv),
                        "--strategy", strategy, "--resolution", "1h"], env=env, check=True)
    print(f"\nfiles in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

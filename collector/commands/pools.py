"""`hashfleet pools`: what each pool's API says now, its workers matched to the miners (the unmatched on
either side listed), and the last closed day's reconciliation (from the collector's books)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from collector import pipeline, service
from collector.commands.common import CONFIG_OPTION, SHARD_OPTION, SITE_OPTION, fail_usage, load_config
from collector.cycle import Cycle
from collector.redact import redact_url
from collector.sources.network import NetworkInputs
from collector.sources.pools import PoolSource
from collector.stages.pool_reconciliation import MIN_COVERAGE, PoolReconciliation
from collector.terminal import plain_console
from models import CollectorConfig
from models.base import printable
from models.pool import FPPS_KINDS, SOLO_KINDS, PoolKind
from models.reconciliation import AccountDay, Breakdown, SiteDay


def pools(
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    site: str | None = SITE_OPTION,
    shard: str | None = SHARD_OPTION,  # a shard keeps its own books: read them with the shard's option
) -> None:
    """Read every configured pool once, match its workers to the miners, show the last closed day's reconciliation."""
    cfg = load_config(config, site=site, shard=shard)
    if not cfg.pools:
        fail_usage("no pools configured: add a `pools:` section to the config (see hashfleet.example.yaml)")
    result = service.run_event_loop(_read(cfg))
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        _print(result)
    if any(p["error"] for p in result["pools"]):
        raise typer.Exit(1)


async def _read(cfg: CollectorConfig) -> dict[str, Any]:
    """One round of every pool, one poll of the miners, one cycle through the stages, no sinks: the
    collector's reconciliation books are read, never written (not service mode)."""
    built = pipeline.build(cfg, sinks=[])
    await built.start()
    try:
        now = service.cycle_timestamp()
        cycle = Cycle(cfg.site, now)
        for network in (s for s in built.sources if isinstance(s, NetworkInputs)):
            await network.announce(cycle)  # the network figures the pools' figures are checked against
        sources = [s for s in built.sources if isinstance(s, PoolSource)]
        await asyncio.gather(*(s.refresh(now, days=True, network=cycle.network) for s in sources))
        await service.run_cycle(cycle, built.sources, built.stages, [])
    finally:
        await built.stop()
    stage = next(s for s in built.stages if isinstance(s, PoolReconciliation))
    return _result(cycle, sources, stage)


def _result(cycle: Cycle, sources: list[PoolSource], stage: PoolReconciliation) -> dict[str, Any]:
    report = cycle.pool_report
    matched = report.matching.matched if report else {}
    out_pools = []
    hashing = {s.miner: s.hashrate_ths for s in cycle.samples if s.hashrate_ths is not None and not (
        s.unusable and "hashrate_ths" in s.unusable)}
    for source in sources:
        snap = cycle.pools[source.name]
        miners = matched.get(source.name, {})
        out_pools.append({
            "pool": source.name, "kind": source.kind.value, "url": redact_url(source.config.base_url),
            "account": source.account, "stale": snap.stale, "error": snap.error,
            "workers_as_of": snap.workers_as_of, "days_as_of": snap.days_as_of,
            # (beside the pool's rate, what the miners reporting the worker hash now: trial ZD)
            "workers": [{**w.model_dump(mode="json"), "miners": miners.get(w.name, []),
                         "miners_ths": _miners_ths(miners.get(w.name, []), hashing)} for w in snap.workers or []],
            "days": [d.model_dump(mode="json") for d in snap.days],
        })
    last = stage.last_closed(with_realized=False)
    reconciliation, note = None, None
    if last is None:
        note = _why_none_closed(stage)
    else:
        accounts = stage.state.results.get(last.day)
        configured = {source.account.lower() for source in sources}
        reconciliation = {"site": last.model_dump(mode="json"), "coverage_note": coverage_note(last),
                          "accounts": [a.model_dump(mode="json") for a in (accounts.accounts.values() if accounts else [])],
                          "miners_no_pool_lists": [
                              {"miner": miner, "user": user, "expected_btc": btc, "account": user.split(".")[0],
                               "account_configured": user.split(".")[0].lower() in configured}
                              for miner, user, btc in stage.miners_no_pool_lists(last.day) or []],
                          "fpps_paid_short_pct": {a.pool: paid_short_pct(a) for a in accounts.accounts.values()
                                                  if a.kind in FPPS_KINDS} if accounts else {}}
    return {
        "site": cycle.site, "ts": cycle.ts.isoformat(), "pools": out_pools,
        "matching": report.matching.model_dump(mode="json") if report else None,
        "reconciliation": reconciliation, "reconciliation_note": note,
    }


def _why_none_closed(stage: PoolReconciliation) -> str:
    """Why no day is shown: no books kept yet, or the days kept and how far each pool has taken them."""
    kept = sorted(stage.state.results)[-2:]
    if not kept and stage.state.days:
        days = sorted(stage.state.days)
        return (f"no pool's day reconciled yet: the collector's books hold {days[0]}" +
                (f" to {days[-1]}" if len(days) > 1 else "") + " (a day is reconciled once a pool lists it)")
    if not kept:
        return "no closed day reconciled yet: the collector keeps the books (hashfleet collect)"
    days = "; ".join(f"{day}: " + (", ".join(f"{a.pool} {a.status.value}" for a in stage.state.results[day].accounts.values())
                                   or "no pool's day yet") for day in kept)
    return f"no day every pool has closed yet ({days})"


def _miners_ths(miners: list[str], hashing: dict[str, float]) -> float | None:
    """What the miners reporting a worker hash now (None: none of them read)."""
    rates = [hashing[m] for m in miners if m in hashing]
    return sum(rates) if rates else None


def coverage_note(site: SiteDay) -> str:
    """How much of the day the collector saw, and what that does to the day's figures."""
    seen = f"the collector saw {site.coverage:.1%} of the day"
    if site.coverage >= 1.0:
        return seen
    if site.coverage >= MIN_COVERAGE:
        return f"{seen}: the rest is taken at the observed hours' rate (spend, unobserved work)"
    return (f"{seen}, under {MIN_COVERAGE:.0%}: no realized cost per BTC, luck or gap (the unobserved hours' "
            "spend and work are not known); the cost headline keeps the last day that has one")


def _btc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.8f}"


def _ths(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _print(result: dict[str, Any]) -> None:
    console = plain_console()
    for pool in result["pools"]:
        state = Text(pool["error"], style="red") if pool["error"] else ("stale" if pool["stale"] else "ok")
        table = Table(title=Text.assemble(f"{pool['pool']} ({pool['kind']}) {pool['url']} account {pool['account']}: ", state))
        for column in ("worker", "pool TH/s", "24 h TH/s", "rejected TH/s", "last share", "miners", "miners TH/s"):
            table.add_column(column)
        for w in pool["workers"]:
            table.add_row(w["name"], _ths(w["hashrate_ths"]), _ths(w["hashrate_24h_ths"]), _ths(w["rejected_ths"]),
                          str(w["last_share"] or "-"), ", ".join(w["miners"]) or Text("unmatched", style="yellow"),
                          _ths(w["miners_ths"]))
        console.print(table)
        if pool["days"]:
            console.print("  days: " + "; ".join(
                f"{d['day']} {d['status']} {_btc(d['credited_btc'])} BTC" for d in pool["days"]))
    matching = result["matching"] or {}
    miners = matching.get("unmatched_miners", [])
    unread = matching.get("pools_unread") or []
    console.print(f"miners whose pool user no pool lists: {matching.get('miners_unmatched', 0)}"
                  + (f" (pools not read: {', '.join(unread)}; their miners are among these)" if unread else "")
                  + "".join(f"\n  {m['miner']} ({m['user'] or 'no pool user'})" for m in miners[:50]))
    workers = matching.get("unmatched_workers", [])
    console.print(f"pool workers no miner reports: {sum(matching.get('workers_unmatched', {}).values())}"
                  + "".join(f"\n  {w['pool']}: {w['worker']}" for w in workers[:50]))
    reconciliation = result["reconciliation"]
    if reconciliation is None:
        console.print(result["reconciliation_note"])
        return
    site = SiteDay.model_validate(reconciliation["site"])
    accounts = [AccountDay.model_validate(a) for a in reconciliation["accounts"]]
    console.print(_waterfall(f"{site.day} (UTC), site {site.site}: {site.status.value}", [("site", site)]
                             + [(a.pool, a) for a in accounts]))
    console.print(reconciliation["coverage_note"])
    _print_unmatched(site, accounts, reconciliation["miners_no_pool_lists"], [p["account"] for p in result["pools"]])
    for account in accounts:
        if account.kind is PoolKind.OCEAN:
            console.print(f"{account.pool} (TIDES) pays per pool block: its luck is which blocks fell in the day (the "
                          "day's last shares are paid in the next day's blocks), not a shortfall on its own")
        elif account.kind in SOLO_KINDS and account.credit_published:
            console.print(f"{account.pool} (solo) is credited only when it finds a block: the site's credited BTC and "
                          "realized cost per BTC swing with that lottery")
        short = paid_short_pct(account)
        if short is not None and short > FPPS_SHORT_PCT:
            console.print(f"{account.pool} paid {short:.1f} % less than its accepted work is worth after its "
                          f"{100 * (account.fee_rate or 0):g} % fee: an FPPS pool pays every accepted share, so its fee "
                          "is higher than that or it paid short (check the pool's fee and the account's earnings; "
                          "`fee_pct` in its config sets the fee assumed)", style="yellow")
    if not site.complete:
        silent = ", ".join(a.pool for a in accounts if not a.credit_published) or "a pool"
        console.print(f"no credited total, luck or realized cost per BTC for the site: {silent} publishes no credit "
                      "(each pool's own steps are above)")
    if site.realized_all_in_cost_per_btc is not None:
        console.print(f"realized all-in cost per BTC {site.realized_all_in_cost_per_btc:,.0f} USD "
                      f"(expected {site.expected_all_in_cost_per_btc or 0:,.0f}); cash "
                      f"{site.realized_cash_cost_per_btc:,.0f}, energy {site.realized_energy_cost_per_btc:,.0f}")
    for account in accounts:
        if account.workers:
            console.print(_waterfall(f"{account.pool}: workers (credit split by accepted work: derived)",
                                     [(Text.assemble(w.worker, (" over-reporting" if w.over_reporting else "", "red")), w)
                                      for w in account.workers]))


FPPS_SHORT_PCT = 0.5  # of the accepted work's worth: an FPPS account paid this much less is said (the steps' noise is ~0.2 %)


def paid_short_pct(account: AccountDay) -> float | None:
    """How much less an FPPS account was paid than its accepted work is worth after the fee, in % of that work
    (its luck step, which an FPPS pool has none of: trial ZD, a pool taking 3 % where 2 % was assumed, or paying
    a worker 5 % short, showed only as "luck"). None: not FPPS, or not known."""
    if account.kind not in FPPS_KINDS or account.luck_btc is None or account.accepted_btc is None:
        return None
    seen = account.accepted_btc - (account.unobserved_btc or 0.0)
    return 100 * account.luck_btc / seen if seen > 0 else None


def _print_unmatched(site: SiteDay, accounts: list[AccountDay], miners: list[dict], configured: list[str]) -> None:
    """The site's `unmatched` step in its two parts, netted in the table: the BTC expected from miners no
    configured pool lists (each named, and whether its account is one configured), and the pool work no miner
    reports."""
    expected_off_pools = site.expected_btc - sum(a.expected_btc for a in accounts)
    pool_work = -sum(a.unmatched_btc for a in accounts)
    if expected_off_pools <= 0 and pool_work <= 0:
        return
    console = plain_console()
    console.print(f"unmatched {_btc(site.unmatched_btc)} BTC = {_btc(expected_off_pools)} expected from miners no "
                  f"configured pool lists, less {_btc(pool_work)} of pool work no miner reports")
    accounts_text = ", ".join(sorted(set(configured)))
    for m in miners[:50]:  # (from the books on disk: shown through printable, as a miner's own text is)
        where = "" if m["account_configured"] else (
            f": account {printable(m['account'])!r} is none of the configured ({accounts_text}), its work credited "
            "elsewhere")
        console.print(f"  {printable(m['miner'])} ({printable(m['user']) or 'no pool user'}): "
                      f"{_btc(m['expected_btc'])} BTC expected{where}", style="yellow")


_STEPS = ("potential_btc", "offline_btc", "curtailed_btc", "expected_btc", "over_report_btc", "unmatched_btc",
          "rejected_stale_btc", "accepted_btc", "unobserved_btc", "luck_btc", "fee_btc", "credited_btc", "gap_btc")


def _waterfall(title: str, rows: list[tuple[str | Text, Breakdown]]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for step in _STEPS:
        table.add_column(step.removesuffix("_btc"), justify="right")
    for name, figures in rows:
        table.add_row(name, *(_btc(getattr(figures, step)) for step in _STEPS))
    return table

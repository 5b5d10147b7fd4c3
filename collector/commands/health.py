"""`hashfleet health`: the repair queue, priced in dollars lost per day, with each problem's root cause.

Without --since: one cycle of the fleet now. Problems are raised from that one reading, peers
(hardware errors, a chip far hotter than its model's others) judged against the same reading, the
usual hashrate and draw and the trends read from the history the collector keeps. What needs readings
over time or MQTT is not found: pool rejects (a window of shares), reboot loops, a reported draw the
meter contradicts; nor are learned power corrections or a measured PUE applied. With --since:
what the collector recorded over the period, from InfluxDB (InfluxQL with influx.read_token or
INFLUX_READ_TOKEN) or, without InfluxDB, from the local history.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from collector import health_report, history, pipeline, service
from collector.clock import history_until
from collector.commands.collect import run_until_stopped
from collector.commands.common import (
    CONFIG_OPTION, MINERS_OPTION, SHARD_OPTION, SITE_OPTION, fail_usage, load_config, local_history, miners_list,
    parse_period, shards_hint,
)
from collector.cycle import Cycle, MinersPart
from collector.influx_query import InfluxQueryError
from collector.redact import redact_url
from collector.stages.health import HealthStage
from collector.terminal import COMPACT_BELOW, plain_console, printable
from models import MinerState, schema


def health(
    config: Path | None = CONFIG_OPTION,
    miners: str | None = MINERS_OPTION,
    site: str | None = SITE_OPTION,
    since: str | None = typer.Option(None, "--since", help="A period of recorded health (e.g. 24h, 7d) instead "
                                                          "of one cycle now."),
    top: int = typer.Option(30, "--top", min=1, help="Problems shown in the table (--json lists every one)."),
    shard: str | None = SHARD_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of tables."),
) -> None:
    """The repair queue: every problem, its root cause and its dollars lost per day.

    Without --since, one reading now: peers are judged within it; pool rejects, reboot loops and
    meter mismatches need the running collector (hashfleet collect), then --since.
    """
    cfg = load_config(config, pools=False, miners=miners_list(miners), site=site, shard=shard)
    if since is None:
        report = _live(cfg)
    else:
        seconds = parse_period("--since", since, "24h or 7d")
        end = history_until(time.time())
        report = _recorded(cfg, end - seconds, end, since)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print(report, top, priced=cfg.economics is not None)


def _live(cfg) -> health_report.HealthReport:
    if not cfg.miners:
        fail_usage("no miners to read: pass --miners or set `miners:` in the config file")
    capture = _Capture()
    built = pipeline.build(cfg, sinks=[capture])  # not service mode: reads the health history, never writes it
    for stage in built.stages:
        if isinstance(stage, HealthStage):
            stage.one_reading()  # nothing to wait for; peers judged by this cycle
    try:
        service.run_event_loop(run_until_stopped(built, 1))
    finally:
        built.close()
    if capture.cycle is None or capture.cycle.health is None:
        typer.echo("hashfleet: the cycle produced no health figures (see the log above)", err=True)
        raise typer.Exit(1)
    report = health_report.from_cycle(capture.cycle.health, [h for part in capture.parts for h in part.health or ()])
    if not report.problems and not any(s.state is not MinerState.OFFLINE for s in capture.cycle.samples):
        # A range nobody answers in (its empty addresses are no miners, so no offline problems) read "no problems",
        # exit 0 (trial ZJ); advise and poll say so and exit 1. A named address that does not answer is a problem.
        typer.echo("hashfleet: no miner answered (see the log above): nothing to judge; check the addresses", err=True)
        raise typer.Exit(1)
    return report


def _recorded(cfg, start: int, end: int, since: str) -> health_report.HealthReport:
    if cfg.influx is not None:
        try:
            cfg.influx.resolved_read_token()
        except ValueError as e:  # a read token file that cannot be read: says which and why
            fail_usage(str(e))
        try:
            report = service.run_event_loop(health_report.from_influx(cfg.influx, cfg.site, start, end))
        except InfluxQueryError as e:
            typer.echo(f"hashfleet: {e}", err=True)
            raise typer.Exit(1) from None
        if not report.cycles and not report.problems:  # (not "no problems": nothing was asked of this site)
            fail_usage(f"no recorded health of site {cfg.site!r} in the last {since} in InfluxDB at "
                       f"{redact_url(cfg.influx.url)} (bucket {cfg.influx.bucket!r}): check --site or HASHFLEET_SITE")
        return report
    directory = local_history(cfg)
    # one pass over the lines as they are read: a long history is never all in memory
    report = health_report.from_lines(cfg.site, history.spool_points(directory, start, (schema.HEALTH.name,)),
                                      start, end)
    if report is None:
        fail_usage(f"no recorded health of site {cfg.site!r} in the last {since} in {directory}{shards_hint(cfg)}")
    return report


class _Capture:
    """A sink keeping the cycle's parts and roll-up (one reading: the parts' health is set at the cycle's end)."""

    def __init__(self) -> None:
        self.parts: list[MinersPart] = []
        self.cycle: Cycle | None = None

    async def write_miners(self, part: MinersPart) -> None:
        self.parts.append(part)

    async def write(self, cycle: Cycle) -> None:
        self.cycle = cycle

    def close(self) -> None: ...


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _print(report: health_report.HealthReport, top: int, *, priced: bool) -> None:
    """`priced`: the config has economics (without, no figure is priced; with, a problem is not when nothing
    is known to price it by: a miner never seen mining, no network state)."""
    from rich.text import Text

    console = plain_console()
    live = report.source == "live"
    closed = sum(not p.open for p in report.problems)
    # Over a period the headline is the mean of the site's totals and each row its problem's latest
    # dollars (closed ones included): the words say so, so nobody expects the rows to add up to it.
    dollars = _money(report.usd_lost_day) if live else f"mean {_money(report.usd_lost_day)}"
    console.print(Text.assemble(
        (f"site {report.site}", "bold"),
        (" now (one cycle)" if live else f" over {_span(report)} ({report.source})")
        + f": {len(report.problems)} problem(s)"
        + (f" ({len(report.problems) - closed} open, {closed} closed during the period)" if closed else "")
        + f", {dollars} lost per day" + ("" if live else " over the period")
        + (f" (not priced: {'the usual hashrate or the cost figures not known yet' if priced else 'no economics'})"
           if report.usd_lost_day is None else "")
        + (f", {report.unprofitable} miner(s) costing more to run than they earn" if report.unprofitable else "")))
    if report.by_cause:
        console.print("by root cause: " + ", ".join(f"{cause} {n}" for cause, n in report.by_cause.items()))
    if report.chips_lost:  # (fewer dead at the end: boards repaired or swapped, not "-176 lost")
        console.print(f"chips {'lost' if report.chips_lost > 0 else 'back'}: {abs(report.chips_lost):.0f} (dead "
                      f"{report.chips_dead_first:.0f} -> {report.chips_dead_last:.0f})")
    if report.measured_pue is not None:
        console.print(f"measured PUE (facility meter): {report.measured_pue:.3f}")
    for model, factor in report.power_corrections.items():
        console.print(f"power correction {model}: metered = {factor:.3f} x reported")
    if report.unprofitable_miners:
        shown = report.unprofitable_miners[:20]
        console.print("costing more to run than they earn: " + ", ".join(shown)
                      + (f", and {len(report.unprofitable_miners) - len(shown)} more" if len(report.unprofitable_miners) > 20 else "")
                      + " (`hashfleet advise` weighs sleeping them)")
    if not report.problems:
        console.print("no problems")
        return
    narrow = console.is_terminal and console.width < COMPACT_BELOW
    console.print(problems_table(report, top, width=console.width if narrow else None))
    if len(report.problems) > top:
        console.print(f"... and {len(report.problems) - top} more (--top N, or --json for all)")


def problems_table(report: health_report.HealthReport, top: int, *, width: int | None = None):
    """The repair queue, one row a problem: where to walk to (address and model, place) and what it costs.
    With `width` (a terminal under COMPACT_BELOW columns, as `watch`): one line a row within it - no MAC,
    cause, severity or evidence (--json has them); the number, dollars and address are never cut, the
    model, place and problem share what is left."""
    from rich import box
    from rich.table import Table

    live = report.source == "live"
    shown = report.problems[:top]
    if width is not None:
        placed = any(p.place != "-" for p in shown)
        rows = [(str(rank), _money(p.usd_lost_day), p.address or "-", printable(p.model or "-"),
                 *([p.place] if placed else []), p.signal + (f" {p.part}" if p.part else ""),
                 *([] if live else [_status(p, report, short=True)])) for rank, p in enumerate(shown, start=1)]
        heads = ["#", "$/day", "address", "model", *(["place"] if placed else []), "problem",
                 *([] if live else ["status"])]
        fixed = {0, 1, 2, len(heads) - 1} if not live else {0, 1, 2}
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        gaps = 2 * (len(heads) - 1)
        left = max(0, width - gaps - sum(widths[i] for i in fixed))
        shared = [i for i in range(len(heads)) if i not in fixed]  # model, place, problem
        wanted = sum(widths[i] for i in shared)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for i, head in enumerate(heads):
            cap = widths[i] if i in fixed or wanted <= left else max(len(head), widths[i] * left // wanted)
            table.add_column(head, no_wrap=True, overflow="ellipsis", justify="right" if i < 2 else "left",
                             min_width=cap if i in fixed else None, max_width=cap)
        for row in rows:
            table.add_row(*row)
        return table
    table = Table(box=box.HEAVY_HEAD)
    table.add_column("#")
    table.add_column("$ lost/day" if live else "latest $/day")
    table.add_column("miner")
    table.add_column("address")
    table.add_column("model")
    table.add_column("place")
    table.add_column("cause")
    table.add_column("problem")
    table.add_column("severity")
    if not live:
        table.add_column("status", no_wrap=True)
    table.add_column("evidence")
    for rank, p in enumerate(shown, start=1):
        problem = p.signal + (f" {p.part}" if p.part else "")
        status = [] if live else [_status(p, report)]
        table.add_row(str(rank), _money(p.usd_lost_day), p.miner, p.address or "-", printable(p.model or "-"),
                      p.place, p.cause, problem, p.severity or "-", *status, printable((p.evidence or "")[:120]))
    return table


def _status(problem: health_report.ProblemSeen, report: health_report.HealthReport, *, short: bool = False) -> str:
    """"open", or "closed" and when it was last seen (UTC; with the date over periods of more than a day)."""
    if problem.open or problem.last_seen is None:
        return "open"
    if short:
        return "closed"
    day = report.start is None or report.end is None or report.end - report.start > 86400
    return "closed " + time.strftime("%d %b %H:%M UTC" if day else "%H:%M UTC", time.gmtime(problem.last_seen))


def _span(report: health_report.HealthReport) -> str:
    """The period in the unit a person would say: 10 min, 2.5 h, 3 days."""
    if report.start is None or report.end is None:
        return "the period"
    seconds = report.end - report.start
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60, 1):g} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{round(seconds / 86400, 1):g} days"

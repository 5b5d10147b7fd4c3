"""`hashfleet advise`: the curtailment plan right now — one cycle of the advice, nothing sent to any miner.

The plan the running service would make: besides the schedule file and `--limit-kw`/`--shed-kw`, the
demand-response targets, kill switch and control mode set over MQTT that the service keeps in
curtailment-commands.json (with control dry_run or on), taken up as the service takes them up at start
(collector/sources/live_inputs.py) but read only: advise never writes nor sets aside that file. What the
service knows and advise cannot (it does not listen to MQTT: a live power or BTC price; targets the
service does not save, with control off) the output says, in `notes`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from collector import pipeline, service
from collector.sources import curtailment_commands
from collector.sources.live_inputs import CurtailmentInputs, control_mode, kill_switch
from collector.commands.common import (
    CONFIG_OPTION, MINERS_OPTION, SITE_OPTION, decimal_option, fail_usage, load_config, miners_list,
)
from collector.cycle import Cycle, MinersPart
from collector.sinks.mqtt_publish import plan_summary
from collector.stages.curtailment import CurtailmentStage, describe_dr_target
from collector.stages.curtailment_rules import SLEEP
from collector.terminal import by_address, plain_console, printable
from models import CollectorConfig, FlatTariff, MinerSample, MinerState
from models.curtailment import ControlMode, CurtailmentConfig, CurtailmentPlan, DrTarget
from models.mqtt import IngestKind


class _LastCycle:
    """A sink that keeps the cycle (collector.sinks.Sink)."""

    cycle: Cycle | None = None

    async def write_miners(self, part: MinersPart) -> None:
        return None

    async def write(self, cycle: Cycle) -> None:
        self.cycle = cycle

    def close(self) -> None:
        return None


def advise(
    config: Path | None = CONFIG_OPTION,
    miners: str | None = MINERS_OPTION,
    site: str | None = SITE_OPTION,
    price: float | None = typer.Option(None, "--price", parser=decimal_option, help="Plan at this power price ($/kWh) instead of the tariff's."),
    limit_kw: float | None = typer.Option(None, "--limit-kw", parser=decimal_option, help="Demand response: the site at most this many kW."),
    shed_kw: float | None = typer.Option(None, "--shed-kw", parser=decimal_option, help="Demand response: this many kW less than the advice alone."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object: the plan's summary and every miner's advice."),
) -> None:
    """The curtailment plan right now: which miners to run, sleep or move to another work mode (sends nothing)."""
    cfg = load_config(config, pools=False, miners=miners_list(miners), site=site)
    if cfg.economics is None or cfg.network is None:
        fail_usage("advice weighs each miner's margin: set `economics` and `network` in the config (see "
                   "hashfleet.example.yaml)")
    if not cfg.miners:
        fail_usage("no miners to advise on: pass --miners or set `miners:` in the config file")
    if limit_kw is not None and shed_kw is not None:
        fail_usage("give --limit-kw or --shed-kw, not both")
    target = None
    if limit_kw is not None or shed_kw is not None:
        option, value = ("--limit-kw", limit_kw) if limit_kw is not None else ("--shed-kw", shed_kw)
        try:
            target = DrTarget(limit_kw=limit_kw, shed_kw=shed_kw, end=datetime.now(timezone.utc) + timedelta(hours=1),
                              reason="hashfleet advise")
        except ValidationError as e:
            fail_usage(f"{option} {value:g}: {e.errors()[0]['msg']}")
    update: dict = {"curtailment": cfg.curtailment or CurtailmentConfig()}
    if price is not None:
        if not -1 <= price <= 20:
            fail_usage(f"--price {price:g}: a power price in $/kWh between -1 and 20")
        # A what-if at a market price, which may be negative (as a live price may); a flat tariff in a config
        # may not, so the bound checked here replaces the model's.
        update["economics"] = cfg.economics.model_copy(update={"tariff": FlatTariff.model_construct(usd_per_kwh=price)})
    cfg = cfg.model_copy(update=update)
    keep = _LastCycle()
    built = pipeline.build(cfg, sinks=[keep])  # not service mode: no control sink, nothing is sent
    stage = next(s for s in built.stages if isinstance(s, CurtailmentStage))
    stage.dr_override = target
    notes = take_up_saved_commands(cfg, stage.live.curtailment)
    try:
        service.run_event_loop(_one_cycle(built))
    finally:
        built.close()
    cycle = keep.cycle
    if cycle is None or cycle.curtailment is None:
        typer.echo("hashfleet: no plan: the network state is unknown (see the log above)", err=True)
        raise typer.Exit(1)
    plan = cycle.curtailment
    if not plan.miners_planned:
        answered = any(s.state is not MinerState.OFFLINE for s in cycle.samples)
        typer.echo("hashfleet: no plan: " + ("no miner that answered could be planned: each needs a hashrate and a "
                   "power, read or from its model's nameplate (see the log above)" if answered else
                   "no miner answered (see the log above)"), err=True)
        raise typer.Exit(1)
    if price is not None:
        plan.price_source = "--price"  # a what-if, not the site's tariff or feed
    control = cfg.curtailment.control  # type: ignore[union-attr]
    plan.control_mode = control_mode(control, stage.live.curtailment).value  # as the service's control sink sets them
    if plan.control_mode != ControlMode.OFF.value:
        plan.killed = kill_switch(control, stage.live.curtailment) is not None
    notes += unknown_here(cfg, plan)
    if offline := sum(s.state is MinerState.OFFLINE for s in cycle.samples):
        notes.append(f"{offline} of {len(cycle.samples)} miner(s) did not answer or were not identified in this one "
                     f"cycle (the log above says why): the plan leaves them out")
    if unplanned := [s for s in cycle.samples if s.state is not MinerState.OFFLINE and s.miner not in plan.keys]:
        # (trial ZB: a 741 chain, no power read and no nameplate, was missing from the table without a word)
        named = ", ".join(_miner_at(s) + f" ({printable(s.model or 'model unknown')}, {s.state.value})"
                          for s in by_address(unplanned)[:5])
        notes.append(f"{len(unplanned)} miner(s) that answered are not in the plan: each needs to be mining or asleep, "
                     f"with a hashrate and a power read or from its model's nameplate: {named}"
                     + (f" and {len(unplanned) - 5} more" if len(unplanned) > 5 else ""))
    targets = active_targets(stage, plan, "--limit-kw" if limit_kw is not None else "--shed-kw", cfg)
    # A miner left running as usual has no advice: its figures as its advice would give them (trial ZB: "-").
    usual = {miner: figures for miner in plan.keys if (figures := stage.usual_figures(miner)) is not None}
    if as_json:
        sys.stdout.write(json.dumps({**plan_json(plan, cycle, usual), "notes": notes, "dr_targets": [
            {**target.model_dump(mode="json"), **where} for target, where in targets]}) + "\n")
    else:
        print_plan(plan, cycle, targets, notes, usual)


def _miner_at(sample: MinerSample) -> str:
    """The miner's id and address (once, where the id is its address: a miner without a MAC)."""
    address = f"{sample.host}:{sample.port}"
    return address if sample.miner == address else f"{printable(sample.miner)} at {address}"


def take_up_saved_commands(cfg: CollectorConfig, inputs: CurtailmentInputs) -> list[str]:
    """Take up into `inputs` what the service keeps in curtailment-commands.json, as its start does
    (CurtailmentInputs.take_up: only with control dry_run or on, targets of the config's topics only, each
    checked as if it arrived now), without writing anything; notes on what is left out and why."""
    control = cfg.curtailment.control  # type: ignore[union-attr]
    inputs.dr_sources = pipeline.dr_target_topics(cfg.mqtt, cfg.site, cfg.curtailment) if cfg.mqtt else frozenset()
    topics = ", ".join(sorted(printable(t[:80]) for t in inputs.dr_sources)[:5])
    if control.mode is ControlMode.OFF:
        if inputs.dr_sources:
            return [f"demand-response targets the service holds from MQTT ({topics}) are not known here: with "
                    "control off it does not save them (curtailment-commands.json)"]
        return []
    path = pipeline.commands_path(cfg)
    try:
        saved = curtailment_commands.load(path)
    except Exception as e:  # hostile until checked, as at the service's start: the file costs only itself
        return [f"{path} is unusable ({printable(str(e)[:200])}): this plan is without what it holds (the "
                "service would set it aside and start killed)"]
    if saved is None:
        return []
    now = datetime.now(timezone.utc)
    gone, refused = inputs.take_up(saved)
    notes = [f"demand-response targets saved in {path} from {printable(source[:80])} are dropped: no longer a "
             "dr_target topic" for source in gone[:5]]
    notes += [f"a demand-response target saved in {path} is dropped: {printable(why)}" for why in refused[:5]]
    ended = sum(t.end <= now for source, kept in saved.dr_targets.items() if source in inputs.dr_sources for t in kept)
    if ended:
        notes.append(f"{ended} demand-response target(s) saved in {path} ended already")
    later = sorted(t.start for t in inputs.dr_targets if t.start is not None and t.start > now)
    if later:
        notes.append(f"{len(later)} demand-response target(s) saved in {path} start later, the first at "
                     f"{later[0].isoformat()}")
    return notes


def unknown_here(cfg: CollectorConfig, plan: CurtailmentPlan) -> list[str]:
    """What the service may know and advise cannot: it does not listen to MQTT."""
    notes = []
    if plan.price_source == "fallback":
        notes.append(f"the power price is live (over MQTT) and advise does not listen: this plan is at the fallback "
                     f"{plan.price_usd_kwh:g} $/kWh and holds, as the service's would without a fresh price; give "
                     "--price to plan at the price the service has")
    kinds = {s.kind for s in cfg.mqtt.ingest} if cfg.mqtt is not None else set()
    if IngestKind.BTC_PRICE in kinds:
        notes.append("a live BTC price over MQTT is not known here: the network source's is used")
    if IngestKind.MINER_TELEMETRY in kinds:  # (trial ZG: 6 miners planned where the service planned 8, unsaid)
        notes.append("miners that publish their telemetry over MQTT are not in this plan (advise polls; the service "
                     "also listens): the service's plan counts them too")
    return notes


def active_targets(stage: CurtailmentStage, plan: CurtailmentPlan, option: str,
                   cfg: CollectorConfig) -> list[tuple[DrTarget, dict]]:
    """Every demand-response target active at the plan's time, where it came from, and whether the plan holds to
    it (the strictest limit and shed do; none while the plan holds on stale inputs)."""
    found: list[tuple[DrTarget, dict]] = []
    if stage.dr_override is not None:
        found.append((stage.dr_override, {"source": "override", "from": option}))
    saved_in = str(pipeline.commands_path(cfg))
    for topic, targets in sorted(stage.live.curtailment.dr_targets.held().items()):
        found += [(t, {"source": "mqtt", "from": topic, "saved_in": saved_in}) for t in targets]
    schedule = str(stage.config.dr_schedule)
    found += [(t, {"source": "schedule", "from": schedule}) for t in stage.schedule]
    in_force = stage.dr_targets_in_force
    return [(target, {**where, "in_force": any(target is t for t in in_force)})
            for target, where in found if target.active(plan.ts)]


async def _one_cycle(built: pipeline.Pipeline) -> None:
    await built.start()
    try:
        await built.polled.refresh()  # identify every address first, then one cycle
        await built.run_cycles(cycles=1)
    finally:
        await built.stop()


def plan_json(plan: CurtailmentPlan, cycle: Cycle, usual: dict[str, tuple]) -> dict:
    """The plan's summary and a row a miner; `usual`: the figures of each miner left running as usual
    (CurtailmentStage.usual_figures)."""
    advice, hosts = {a.miner: a for a in plan.advice}, _addresses(cycle)
    miners = []
    for miner, key in sorted(plan.keys.items()):
        a = advice.get(miner)
        if a is not None:
            kw, kw_always_on, margin, j_th = a.kw, a.kw_always_on, a.margin_usd_kwh, a.efficiency_j_th
        else:
            kw, margin, j_th = usual.get(miner, (None, None, None))
            kw_always_on = kw
        miners.append({"miner": miner, "address": hosts.get(miner), "action": a.action if a else "run",
                       "mode": (a.key if a else key) or None, "reason": a.reason if a else "running as usual",
                       "kw": kw, "kw_always_on": kw_always_on, "margin_usd_kwh": margin, "efficiency_j_th": j_th,
                       "held": a.held if a else False, "dr": a.dr if a else False})
    return {**plan_summary(plan), "miners": miners}


def _addresses(cycle: Cycle) -> dict[str, str]:
    return {s.miner: f"{s.host}:{s.port}" for s in cycle.samples}


def print_plan(plan: CurtailmentPlan, cycle: Cycle, targets: list[tuple[DrTarget, dict]], notes: list[str],
               usual: dict[str, tuple]) -> None:
    console = plain_console()
    console.print(Text.assemble((f"site {plan.site}", "bold"), f" at {plan.price_usd_kwh:.4f} $/kWh ({plan.price_source}); "
                                f"strategy {plan.strategy}; one TH/s earns {plan.revenue_usd_th_day:.4f} $/day"))
    if plan.stale:
        console.print(f"the plan holds: {plan.stale_reason}", style="yellow")
    for note in notes:
        console.print(f"note: {note}", style="yellow")
    if plan.control_mode != ControlMode.OFF.value:
        console.print(f"the service's control: {plan.control_mode}" + (" (killed: it sends nothing)" if plan.killed else ""))
    for target, where in targets:
        source = {"override": "this command's", "schedule": "the schedule file", "mqtt": "MQTT topic"}[where["source"]]
        saved = f", saved in {where['saved_in']}" if "saved_in" in where else ""
        held = "in force" if where["in_force"] else ("not weighed" if plan.stale else "active (a stricter one holds)")
        console.print(f"demand-response target {held}: {printable(describe_dr_target(target))} "
                      f"(from {source} {printable(where['from'])}{saved})")
    if plan.dr_target is not None:
        met = "met" if plan.dr_met else "NOT met (not enough to shed, or the polls still over the limit)"
        if plan.dr_met and plan.dr_gap_usd_h > 0:
            met += f" (the search stopped early: at most {plan.dr_gap_usd_h:.4f} $/h dearer than the cheapest)"
        console.print(f"demand response: {plan.dr_need_kw:.1f} kW to shed, {met}")
    advice = {a.miner: a for a in plan.advice}
    table = Table()
    for column in ("miner", "address", "advice", "J/TH", "margin $/kWh", "kW", "why"):
        table.add_column(column, justify="right" if column in ("J/TH", "margin $/kWh", "kW") else "left")
    hosts = _addresses(cycle)
    for miner, key in sorted(plan.keys.items(), key=lambda kv: (advice.get(kv[0]) is None, kv[0])):
        a = advice.get(miner)
        what = "run" if a is None else ("sleep" if a.key == SLEEP else f"{a.action} (mode {a.key})")
        kw, margin, j_th = (a.kw, a.margin_usd_kwh, a.efficiency_j_th) if a else usual.get(miner, (None, None, None))
        table.add_row(miner, hosts.get(miner, ""), what, "-" if j_th is None else f"{j_th:.1f}",
                      "-" if margin is None else f"{margin:+.4f}", "-" if kw is None else f"{kw:.2f}",
                      "running as usual" if a is None else printable(a.reason))
    console.print(table)
    console.print(f"{plan.miners_run} run ({plan.miners_lower} in another mode), {plan.miners_sleep} sleep; "
                  f"{plan.planned_kw:.1f} kW planned of {plan.always_on_kw:.1f} kW always-on; "
                  f"{plan.saved_usd_day:+.2f} $/day against always-on at this price")

"""What every hashfleet dashboard shares: the data source, the variables, panel helpers, InfluxQL fragments.

Queries follow the InfluxDB schema in the README (measurements `miner`, `miner_board`, `cost`,
`network`, `collector`). Grafana expands `$timeFilter`, `$__interval` and the template variables
before InfluxDB sees the text; tests/test_grafana_macros.py does the same to run every query.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common as common_builders, dashboard as dash, piechart, stat
from grafana_foundation_sdk.builders import statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, dashboard as model
from grafana_foundation_sdk.models.piechart import PieChartLabels

from dashboards.influxql import InfluxQL
from models.economics import CostScope
from models.sample import MinerState
from models import schema

# The provisioned data source (deploy/grafana/provisioning/datasources/hashfleet.yaml); `hashfleet
# grafana push` creates the same uid on a site's own Grafana.
DATASOURCE_UID = "hashfleet-influxdb"
DATASOURCE = model.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
TAG = "hashfleet"
REFRESH = "30s"
MIN_INTERVAL = "10s"  # the collector's default cycle: $__interval never goes below one point per miner

# InfluxQL fragments. Regex matches because the variables are multi-value (Grafana sends `(a|b)`).
SITE = '"site" =~ /^$site$/'
MINER = '"miner" =~ /^$miner$/'
SITE_COST = f"\"scope\" = '{CostScope.SITE.value}' AND {SITE}"
MINER_COST = f"\"scope\" = '{CostScope.MINER.value}' AND {SITE}"
BUCKET = "GROUP BY time($__interval)"

# Colours of MinerSample.state, used by every panel that shows one.
STATE_COLORS = {
    MinerState.MINING: "green",
    MinerState.IDLE: "yellow",
    MinerState.SOFT_OFF: "blue",
    MinerState.ERROR: "orange",
    MinerState.OFFLINE: "red",
}


def per_miner_sum(fields: dict[str, str], *, where: str = SITE, by: str = "") -> str:
    """Fleet totals per time bucket: the mean of each miner in the bucket, summed over miners.

    Summing raw points would count every cycle in a bucket; an offline miner has no value and so adds 0.
    `fields` maps output names to `miner` fields; `by` is an optional tag to split the totals by.
    """
    inner = ", ".join(f'mean("{field}") AS "{name}"' for name, field in fields.items())
    outer = ", ".join(f'sum("{name}") AS "{name}"' for name in fields)
    tags = ', "miner"' + (f', "{by}"' if by else "")
    split = f', "{by}"' if by else ""
    return (f'SELECT {outer} FROM (SELECT {inner} FROM "{schema.MINER}" WHERE {where} AND $timeFilter '
            f'{BUCKET}{tags} fill(none)) WHERE $timeFilter {BUCKET}{split} fill(none)')


def query(text: str, ref: str = "A", *, alias: str | None = None, table_format: bool = False) -> InfluxQL:
    target = InfluxQL(text).ref_id(ref).datasource(DATASOURCE)
    if alias:
        target.alias(alias)
    if table_format:
        target.table()
    return target


# The base colour of a threshold scale. Grafana treats the first step as -Infinity whatever value it
# holds (and writes null); JSON has no -Infinity and the strict dashboard schema wants a number.
BASE = -1e9


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Steps of (value, colour); a value of None is the base colour below every other step."""
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=BASE if value is None else value, color=color) for value, color in steps])


NEUTRAL = thresholds((None, "text"))


def state_mappings() -> list[model.ValueMapping]:
    return [model.ValueMap(options={
        state.value: model.ValueMappingResult(text=state.value.replace("_", " "), color=color, index=i)
        for i, (state, color) in enumerate(STATE_COLORS.items())})]


def _place(panel, width: int, height: int, description: str | None):
    panel.datasource(DATASOURCE).span(width).height(height)
    if description:
        panel.description(description)
    return panel


def stat_panel(title: str, targets: list[InfluxQL], unit: str, *, width: int = 4, height: int = 4,
               steps: dash.ThresholdsConfig = NEUTRAL, description: str | None = None,
               decimals: int | None = None, fields: str = "") -> stat.Panel:
    """A big number: the last non-null value of each target."""
    panel = (stat.Panel().title(title).targets(targets).unit(unit).thresholds(steps)
             .graph_mode(common.BigValueGraphMode.AREA).color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
                             .fields(fields)))
    if decimals is not None:
        panel.decimals(decimals)
    return _place(panel, width, height, description)


def text_stat(title: str, target: InfluxQL, *, width: int = 4, height: int = 4,
              mappings: list[model.ValueMapping] | None = None, description: str | None = None) -> stat.Panel:
    """A stat showing the last value of a string field (state): "All fields", so strings count too
    (Grafana names an InfluxQL series' value field `Value`, whatever the column is called)."""
    panel = (stat.Panel().title(title).with_target(target).thresholds(NEUTRAL)
             .graph_mode(common.BigValueGraphMode.NONE).color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
                             .fields("/.*/")))
    if mappings:
        panel.mappings(mappings)
    return _place(panel, width, height, description)


def timeseries_panel(title: str, targets: list[InfluxQL], unit: str, *, width: int = 12, height: int = 8,
                     description: str | None = None, fill: int = 10, stack: bool = False,
                     minimum: float | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).targets(targets).unit(unit).fill_opacity(fill).line_width(1)
             .interval(MIN_INTERVAL)
             .legend(common_builders.VizLegendOptions().show_legend(True)
                     .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM))
             .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if stack:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if minimum is not None:
        panel.min(minimum)
    return _place(panel, width, height, description)


def table_panel(title: str, targets: list[InfluxQL], *, width: int = 12, height: int = 8,
                transformations: list[model.DataTransformerConfig] | None = None,
                description: str | None = None, unit: str | None = None) -> table.Panel:
    panel = table.Panel().title(title).targets(targets).thresholds(NEUTRAL)
    if unit:
        panel.unit(unit)
    for transformation in transformations or []:
        panel.with_transformation(transformation)
    return _place(panel, width, height, description)


def pie_panel(title: str, targets: list[InfluxQL], *, width: int = 6, height: int = 8,
              transformations: list[model.DataTransformerConfig] | None = None,
              description: str | None = None) -> piechart.Panel:
    panel = (piechart.Panel().title(title).targets(targets)
             .pie_type(piechart.piechart.PieChartType.DONUT)
             .display_labels([PieChartLabels.NAME, PieChartLabels.VALUE])
             .reduce_options(common_builders.ReduceDataOptions().values(True).calcs([]).fields("")))
    for transformation in transformations or []:
        panel.with_transformation(transformation)
    return _place(panel, width, height, description)


def bar_gauge_panel(title: str, targets: list[InfluxQL], unit: str, *, width: int = 12, height: int = 8,
                    steps: dash.ThresholdsConfig = NEUTRAL, description: str | None = None,
                    transformations: list[model.DataTransformerConfig] | None = None) -> bargauge.Panel:
    panel = (bargauge.Panel().title(title).targets(targets).unit(unit).thresholds(steps)
             .orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.BASIC)
             .reduce_options(common_builders.ReduceDataOptions().values(True).calcs([]).fields("")))
    for transformation in transformations or []:
        panel.with_transformation(transformation)
    return _place(panel, width, height, description)


def state_timeline_panel(title: str, targets: list[InfluxQL], *, width: int = 24, height: int = 8,
                         description: str | None = None) -> statetimeline.Panel:
    panel = (statetimeline.Panel().title(title).targets(targets).mappings(state_mappings())
             .thresholds(NEUTRAL).show_value(common.VisibilityMode.NEVER).merge_values(True)
             .interval(MIN_INTERVAL))
    return _place(panel, width, height, description)


def transform(kind: str, options: dict[str, object]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=kind, options=options)


def site_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("site").label("Site").datasource(DATASOURCE)
            .query(f'SHOW TAG VALUES FROM "{schema.MINER}" WITH KEY = "site"')
            .multi(True).include_all(True)
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC))


def miner_variable() -> dash.QueryVariable:
    return (dash.QueryVariable("miner").label("Miner").datasource(DATASOURCE)
            .description("Miner id: the MAC when the miner reports one, else host:port")
            .query(f'SHOW TAG VALUES FROM "{schema.MINER}" WITH KEY = "miner" WHERE {SITE}')
            .multi(False).include_all(False)
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))


def new_dashboard(uid: str, title: str, description: str, *, time_from: str = "now-6h") -> dash.Dashboard:
    return (dash.Dashboard(title).uid(uid).description(description).tags([TAG]).refresh(REFRESH)
            .time(time_from, "now").timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .link(dash.DashboardLink("hashfleet").type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
                  .as_dropdown(True).include_vars(True).keep_time(True)))


def finish(builder: cogbuilder.Builder[model.Dashboard]) -> model.Dashboard:
    """Build, then number the panels 1..n in grid order (Grafana needs ids unique per dashboard)."""
    built = builder.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def miner_detail_link(field: str = "miner") -> dash.DashboardLink:
    """A data link from a row that names a miner to its Miner detail page."""
    return (dash.DashboardLink("Miner detail").type(model.DashboardLinkType.LINK)
            .url(f"/d/hashfleet-miner/miner-detail?${{site:queryparam}}&var-miner=${{__data.fields.{field}}}"
                 "&${__url_time_range}"))

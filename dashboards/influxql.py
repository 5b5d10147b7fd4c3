"""An InfluxQL target for grafana-foundation-sdk, which ships no InfluxDB query builder.

The JSON is what Grafana's InfluxDB data source stores for a raw InfluxQL query:
`{refId, datasource, query, rawQuery: true, resultFormat}` plus an optional `alias`
(`$col`, `$tag_<key>`) for series names. InfluxQL, not Flux: the same text runs on
InfluxDB 1.x, on 2.x through its DBRP mapping (bucket = database, policy `autogen`)
and on 3.x.
"""

from __future__ import annotations

from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    def __init__(self, query: str, ref_id: str = "", datasource: dashboard.DataSourceRef | None = None,
                 result_format: ResultFormat = "time_series", alias: str | None = None) -> None:
        self.query = query
        self.ref_id = ref_id
        self.datasource = datasource
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id}
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        payload["query"] = self.query
        payload["rawQuery"] = True
        payload["resultFormat"] = self.result_format
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """`InfluxQL('SELECT ...').ref_id('A').table()`: a raw InfluxQL target."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

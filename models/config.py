"""The collector's configuration, as read from YAML and overridden by flags/env.

See `hashfleet.example.yaml` at the top of the repo for an annotated example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from models.base import Settings, checked_token, http_url, read_secret_file
from models.curtailment import CurtailmentConfig
from models.economics import NetworkFeedConfig, SiteEconomics
from models.mqtt import MqttConfig
from models.pool import PoolKind


class InfluxConfig(Settings):
    url: str = Field(description="e.g. http://influxdb:8086")
    org: str = "hashfleet"
    bucket: str = "hashfleet"
    token: SecretStr | None = None
    token_file: Path | None = Field(default=None, description="file holding the token (docker secrets)")
    read_token: SecretStr | None = Field(default=None, description="a token that can read the bucket "
                                         "(`hashfleet health --since`); default: the write token")
    read_token_file: Path | None = Field(default=None, description="file holding the read token")
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url, base=True).rstrip("/")

    def resolved_token(self) -> str:
        """The token itself: `token`, else the contents of `token_file`, else empty (no auth); ValueError
        naming the field, never the value, for a token that cannot be one (models.base.checked_token)."""
        if self.token is not None:
            return checked_token(self.token.get_secret_value(), "influx.token")
        if self.token_file is not None:
            return read_secret_file(self.token_file, "influx.token_file", token=True)
        return ""

    def resolved_read_token(self) -> str:
        """The token queries use: `read_token`, else the contents of `read_token_file`, else the write token."""
        if self.read_token is not None:
            return checked_token(self.read_token.get_secret_value(), "influx.read_token")
        if self.read_token_file is not None:
            return read_secret_file(self.read_token_file, "influx.read_token_file", token=True)
        return self.resolved_token()


class SpoolConfig(Settings):
    """The on-disk spool: every batch for InfluxDB passes through it; without InfluxDB it is the local history."""

    directory: Path | None = Field(default=None, description="default: $HASHFLEET_SPOOL_DIR/<site>, else "
                                                   "${XDG_STATE_HOME:-~/.local/state}/hashfleet/spool/<site> (a shard, "
                                                   "--shard K/N: <site>.shard-K-of-N); when set, a shard keeps its own "
                                                   "below it (shard-K-of-N)")
    max_mb: float = Field(default=1024, gt=0, le=10_000_000, description="disk budget; past it the oldest batches are dropped and counted")
    retention_h: float = Field(default=168, gt=0, le=100_000,
                               description="local history kept when no InfluxDB is configured, within max_mb (hours "
                                           "the collector ran: time it was off does not age it)")


_PLACE_TEXT = r"^[A-Za-z0-9_.:/-]{1,64}$"  # written as tag values: short, no spaces or separators


class Place(Settings):
    """Where one miner stands: written as tags on its points, used to group it (health heat maps,
    curtailment groups). Every part is optional."""

    container: str | None = Field(default=None, pattern=_PLACE_TEXT, description="building, container or pod")
    row: str | None = Field(default=None, pattern=_PLACE_TEXT)
    rack: str | None = Field(default=None, pattern=_PLACE_TEXT)
    position: str | None = Field(default=None, pattern=_PLACE_TEXT, description="shelf or slot in the rack")
    groups: list[str] = Field(default_factory=list, max_length=16,
                              description="free groups, e.g. a feeder, a PDU, a demand-response zone")

    @field_validator("groups")
    @classmethod
    def _groups_are_names(cls, groups: list[str]) -> list[str]:
        for group in groups:
            if not re.fullmatch(_PLACE_TEXT, group):
                raise ValueError(f"group {group[:70]!r}: 1-64 of letters, digits, _ . : / -")
        return groups


class LayoutConfig(Settings):
    """The site's layout: each miner's place, keyed by MAC (AA:BB:CC:DD:EE:FF) or address (host or
    host:port), from this file's `miners` and/or a CSV (columns: miner, container, row, rack, position,
    groups — groups separated by `;`). An entry here wins over the CSV's."""

    csv: Path | None = Field(default=None, description="CSV file of places (see above)")
    miners: dict[str, Place] = Field(default_factory=dict, max_length=100_000)


# Where each pool's documented read-only API lives (docs/pools.md); public-pool is mostly self-hosted: give `url`.
POOL_URLS: dict[PoolKind, str] = {
    PoolKind.BRAIINS: "https://pool.braiins.com",
    PoolKind.OCEAN: "https://api.ocean.xyz/v1",
    PoolKind.F2POOL: "https://api.f2pool.com/v2",
    PoolKind.CKPOOL: "https://solo.ckpool.org/users",
}
# The environment variable a token is read from when neither token_env nor token_file is given.
POOL_TOKEN_ENV: dict[PoolKind, str] = {PoolKind.BRAIINS: "BRAIINS_POOL_TOKEN", PoolKind.F2POOL: "F2POOL_API_SECRET"}
# The slowest documented or published request rate of each API: Braiins documents "approximately one
# request per five seconds (safe value)"; the others document none, and public clients space calls by 1 s.
POOL_MIN_INTERVAL_S: dict[PoolKind, float] = {PoolKind.BRAIINS: 5.0, PoolKind.OCEAN: 1.0, PoolKind.F2POOL: 1.0,
                                              PoolKind.PUBLICPOOL: 1.0, PoolKind.CKPOOL: 1.0}
_POOL_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class PoolConfig(Settings):
    """One pool account read over the pool's documented read-only API (docs/pools.md)."""

    kind: PoolKind
    name: str | None = Field(default=None, pattern=_POOL_NAME, description="tags its points (default: kind)")
    url: str | None = Field(default=None, description="the API's base URL (default: the pool's public API)")
    account: str = Field(min_length=1, max_length=256, pattern=r"^[^\s/?#]+$",
                         description="Braiins user name, F2Pool mining user name, or the payout address (OCEAN, solo)")
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                                  description="environment variable holding the read-only token")
    token_file: Path | None = Field(default=None, description="file holding the read-only token (docker secrets)")
    refresh_s: float = Field(default=300, ge=1, le=86_400, description="how often workers are read, in the background")
    days_refresh_s: float = Field(default=1800, ge=1, le=86_400, description="how often earnings per day are read")
    days_back: int = Field(default=3, ge=1, le=31, description="UTC days of earnings read each time, today included")
    max_age_s: float = Field(default=900, gt=0, le=86_400 * 7, description="older worker data is marked stale")
    timeout_s: float = Field(default=10, gt=0, le=120, description="per request, connect and whole reply")
    min_interval_s: float | None = Field(
        default=None, ge=0, le=3600,
        description="least time between two requests (default: the pool's documented limit; lower only for a "
                    "simulated pool)")
    max_reply_mb: float = Field(default=16, gt=0, le=256, description="a longer reply is refused")
    backoff_s: float = Field(default=30, gt=0, le=3600, description="first wait after a failed read; doubles, with jitter")
    backoff_max_s: float = Field(default=1800, gt=0, le=86_400)
    retry_after_max_s: float = Field(default=900, gt=0, le=86_400, description="a longer Retry-After is capped to this")
    fee_pct: float | None = Field(default=None, ge=0, lt=100,
                                  description="the pool's fee where its API does not say it (default: economics.pool_fee_pct)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        # (a token in a ?query would be logged with every path appended after it: refused with it)
        return None if url is None else http_url(url, base=True).rstrip("/")

    @model_validator(mode="after")
    def _url_known(self) -> PoolConfig:
        if self.url is None and self.kind not in POOL_URLS:
            raise ValueError(f"{self.kind.value} has no public API address to default to: give `url` "
                             "(e.g. http://your-public-pool:3334/api)")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s:g}) is shorter than backoff_s ({self.backoff_s:g})")
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind.value

    @property
    def base_url(self) -> str:
        return self.url or POOL_URLS[self.kind]

    @property
    def needs_token(self) -> bool:
        return self.kind in POOL_TOKEN_ENV

    @property
    def min_interval(self) -> float:
        return POOL_MIN_INTERVAL_S[self.kind] if self.min_interval_s is None else self.min_interval_s

    def resolved_token(self, environ: dict[str, str] | None = None) -> str | None:
        """The token itself (None for the public APIs); ValueError naming the field, never the value."""
        import os

        if not self.needs_token:
            return None
        where = f"pools[{self.label}]"
        if self.token_file is not None:
            return read_secret_file(self.token_file, f"{where}.token_file", token=True)
        env = os.environ if environ is None else environ
        name = self.token_env or POOL_TOKEN_ENV[self.kind]
        if not env.get(name, "").strip():
            raise ValueError(f"{where}: no read-only API token: set the environment variable {name} or "
                             "token_file (the token is never put in the config file)")
        return checked_token(env[name], f"{where}: {name}")


class ReconciliationConfig(Settings):
    """Expected against credited BTC per day (collector/stages/pool_reconciliation.py, docs/pools.md)."""

    over_report_pct: float = Field(default=5, gt=0, le=100,
                                   description="a worker whose pool-side work falls this far below what its miner "
                                               "reports, over a day, is named as over-reporting")
    max_gap_s: float = Field(default=900, gt=0, le=86_400,
                             description="a longer gap between cycles is not integrated (nothing is known about it)")
    keep_days: int = Field(default=7, ge=2, le=62, description="UTC days of integrals and results kept on disk")


# The makes with a native reader, and the two ways of reading them.
ReaderMake = Literal["avalon", "antminer", "whatsminer", "braiins"]
ReaderPath = Literal["native", "pyasic"]


class CollectorConfig(Settings):
    site: str = Field(default="default", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="names the spool directory too: letters, digits, _ . -; not . or ..")
    miners: list[str] = Field(default_factory=list, max_length=100_000,
                              description="host, host:port, CIDR range or DNS name")
    interval_s: float = Field(default=10.0, ge=1, le=3600, description="one timestamp per cycle, in whole seconds")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="per miner, per poll")
    concurrency: int = Field(default=512, ge=1, le=20_000, description="miners polled at once")
    pyasic_concurrency: int = Field(default=50, ge=1, le=5_000,
                                    description="of those, at most this many through pyasic (milliseconds of CPU each)")
    readers: dict[ReaderMake, ReaderPath] = Field(
        default_factory=dict,
        description="how each make with a native reader is read: `native` (the default) or `pyasic`, e.g. "
                    "{antminer: pyasic} sends stock Antminers through pyasic as before the native readers")
    rescan_interval_s: float = Field(default=300.0, gt=0, le=86_400,
                                     description="how often CIDR ranges and DNS names are re-resolved (a range found "
                                                 "empty, or finding new miners, sooner: from identify_backoff_s, "
                                                 "doubling up to this)")
    cycle_deadline_s: float | None = Field(
        default=None, gt=0, le=3600,
        description="a cycle's poll ends by then: miners that have not answered get an offline sample and the "
                    "cycle goes to the sinks (default: 0.8 x interval_s, so cycles keep the interval)")
    identify_concurrency: int = Field(default=512, ge=1, le=20_000,
                                      description="addresses identified at once, in the background")
    identify_backoff_s: float | None = Field(default=None, gt=0, le=3600,
                                             description="wait before identifying a failed address again (default: "
                                                         "interval_s); doubles after each failure (with jitter) up "
                                                         "to identify_backoff_max_s. A miner identified before "
                                                         "is looked for (one connect) after each first wait, not "
                                                         "doubled, while nothing listens at its address")
    identify_backoff_max_s: float = Field(default=600.0, gt=0, le=86_400,
                                          description="the longest wait between identifications of an address")
    forget_unseen_miners_h: float = Field(
        default=24, gt=0, le=24 * 31,
        description="a miner id not in any cycle for this long leaves the running cost totals (its amounts stay in "
                    "the site's): bounds the totals file when ids churn, e.g. a MAC that changes every cycle")
    shard: str | None = Field(default=None, max_length=20,
                              description="K/N: poll only the addresses whose stable hash falls in shard K of N")
    influx: InfluxConfig | None = None
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    economics: SiteEconomics | None = Field(default=None, description="power tariff, opex, capex: enables cost figures")
    network: NetworkFeedConfig | None = Field(default=None, description="difficulty, fees, BTC price (static or polled)")
    layout: LayoutConfig | None = Field(default=None, description="where each miner stands (container, row, rack, groups)")
    mqtt: MqttConfig | None = Field(default=None, description="MQTT broker: publish state, cost, HA discovery; ingest devices, meters, prices")
    pools: list[PoolConfig] = Field(default_factory=list, max_length=32,
                                    description="pool accounts read over their APIs: earnings, pool-side hashrate")
    reconciliation: ReconciliationConfig = Field(default_factory=ReconciliationConfig)
    curtailment: CurtailmentConfig | None = Field(
        default=None, description="advice every cycle (run, sleep, lower mode) and opt-in control: docs/curtailment.md")

    @field_validator("site")
    @classmethod
    def _not_a_path(cls, site: str) -> str:
        if site in (".", ".."):
            raise ValueError(f"{site!r} is a path, not a site name (it names the spool directory): use letters or digits")
        return site

    @property
    def shard_k_n(self) -> tuple[int, int] | None:
        if self.shard is None:
            return None
        k, n = (int(x) for x in self.shard.split("/"))
        return k, n

    @property
    def shard_economics(self) -> SiteEconomics | None:
        """The economics this collector costs its miners with. Shard K of N carries 1/N of the site's fixed
        costs (opex, fixed overhead watts), split over its own miners: the N shards' roll-ups add up to the
        site's, where each charging the whole site would count them N times."""
        if self.economics is None or self.shard_k_n is None:
            return self.economics
        n = self.shard_k_n[1]
        overhead = self.economics.overhead_w
        return self.economics.model_copy(update={"opex_usd_month": self.economics.opex_usd_month / n,
                                                 "overhead_w": None if overhead is None else overhead / n})

    @property
    def cycle_deadline(self) -> float:
        """Seconds a cycle's poll may take: `cycle_deadline_s`, else 0.8 x the interval (the rest is
        for costing and handing the cycle over before the next one starts)."""
        return self.cycle_deadline_s if self.cycle_deadline_s is not None else 0.8 * self.interval_s

    @property
    def identify_backoff(self) -> float:
        """Seconds before the first retry of a failed identification: `identify_backoff_s`, else one interval."""
        return self.identify_backoff_s if self.identify_backoff_s is not None else self.interval_s

    @model_validator(mode="after")
    def _backoff_in_order(self) -> CollectorConfig:
        if self.identify_backoff_max_s < self.identify_backoff:
            raise ValueError(f"identify_backoff_max_s ({self.identify_backoff_max_s:g}) is shorter than the first "
                             f"wait ({self.identify_backoff:g} s, identify_backoff_s or else interval_s): raise it")
        return self

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, shard: str | None) -> str | None:
        if shard is not None:
            parts = re.fullmatch(r"([1-9][0-9]{0,5})/([1-9][0-9]{0,5})", shard)
            if parts is None or int(parts[1]) > int(parts[2]):
                raise ValueError("K/N: shard K of N collectors, 1 <= K <= N (e.g. 1/3)")
        return shard

    @model_validator(mode="after")
    def _pool_names_unique(self) -> CollectorConfig:
        labels = [p.label for p in self.pools]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"pools named {twice} more than once: give each a distinct `name`")
        return self

    @model_validator(mode="after")
    def _cost_needs_both(self) -> CollectorConfig:
        if (self.economics is None) != (self.network is None):
            missing = "network" if self.network is None else "economics"
            raise ValueError(f"cost figures need both `economics` and `network`; `{missing}` is missing")
        if self.curtailment is not None and self.economics is None:
            raise ValueError("`curtailment` weighs each miner's margin: it needs `economics` and `network`")
        return self

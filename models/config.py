"""The collector's configuration, as read from YAML and overridden by flags/env.

See `hashfleet.example.yaml` at the top of the repo for an annotated example.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from models.base import Strict
from models.economics import NetworkFeedConfig, SiteEconomics
from models.mqtt import MqttConfig


class InfluxConfig(Strict):
    url: str = Field(description="e.g. http://influxdb:8086")
    org: str = "hashfleet"
    bucket: str = "hashfleet"
    token: SecretStr | None = None
    token_file: Path | None = Field(default=None, description="file holding the token (docker secrets)")
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    def resolved_token(self) -> str:
        """The token itself: `token`, else the contents of `token_file`, else empty (no auth)."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as e:
                raise ValueError(f"influx.token_file {self.token_file}: {e.strerror}") from None
        return ""


class SpoolConfig(Strict):
    """The on-disk spool: every batch for InfluxDB passes through it; without InfluxDB it is the local history."""

    directory: Path | None = Field(default=None, description="default: $HASHFLEET_SPOOL_DIR, else ~/.local/state/hashfleet/spool/<site>")
    max_mb: float = Field(default=1024, gt=0, description="disk budget; past it the oldest batches are dropped and counted")
    retention_h: float = Field(default=168, gt=0, description="local history kept when no InfluxDB is configured")


class CollectorConfig(Strict):
    site: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    miners: list[str] = Field(default_factory=list, description="host, host:port, CIDR range or DNS name")
    interval_s: float = Field(default=10.0, ge=1, le=3600, description="one timestamp per cycle, in whole seconds")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="per miner, per poll")
    concurrency: int = Field(default=512, ge=1, le=20_000, description="miners polled at once")
    pyasic_concurrency: int = Field(default=50, ge=1, le=5_000,
                                    description="of those, at most this many through pyasic (~13 ms CPU each)")
    rescan_interval_s: float = Field(default=300.0, gt=0, description="how often CIDR ranges and DNS names are re-resolved")
    forget_unseen_miners_h: float = Field(
        default=24, gt=0, le=24 * 31,
        description="a miner id not in any cycle for this long leaves the running cost totals (its amounts stay in "
                    "the site's): bounds the totals file when ids churn, e.g. a MAC that changes every cycle")
    shard: str | None = Field(default=None, pattern=r"^[1-9][0-9]*/[1-9][0-9]*$",
                              description="K/N: poll only the addresses whose stable hash falls in shard K of N")
    influx: InfluxConfig | None = None
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    economics: SiteEconomics | None = Field(default=None, description="power tariff, opex, capex: enables cost figures")
    network: NetworkFeedConfig | None = Field(default=None, description="difficulty, fees, BTC price (static or polled)")
    mqtt: MqttConfig | None = Field(default=None, description="MQTT broker: publish state, cost, HA discovery; ingest devices, meters, prices")

    @property
    def shard_k_n(self) -> tuple[int, int] | None:
        if self.shard is None:
            return None
        k, n = (int(x) for x in self.shard.split("/"))
        return k, n

    @model_validator(mode="after")
    def _shard_in_range(self) -> CollectorConfig:
        if self.shard_k_n is not None and not 1 <= self.shard_k_n[0] <= self.shard_k_n[1]:
            raise ValueError(f"shard {self.shard!r}: K must be between 1 and N")
        return self

    @model_validator(mode="after")
    def _cost_needs_both(self) -> CollectorConfig:
        if (self.economics is None) != (self.network is None):
            missing = "network" if self.network is None else "economics"
            raise ValueError(f"cost figures need both `economics` and `network`; `{missing}` is missing")
        return self

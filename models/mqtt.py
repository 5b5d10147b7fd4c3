"""MQTT: the connection settings, the topics hashfleet subscribes to, and the payloads it accepts.

Publishing (fleet state, cost, Home Assistant discovery) needs only the connection settings;
ingest (devices that publish their own telemetry, power meters, live prices) is a list of
subscriptions, each with the kind of payload it carries. Topic tree and payload formats:
docs/mqtt.md.

Payloads are strict (unknown keys are an error), so a typo on a device names the field
instead of being silently ignored. Miner telemetry payloads are MinerSample JSON
(`models.sample`), read by the ingest with a few fields allowed to be left out.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from models.base import Settings
from models.base import Strict as _Strict
from models.base import as_utc as _utc
from models.base import checked_secret, read_secret_file


def _check_filter(topic: str) -> str:
    """An MQTT topic filter: `+` and `#` only as whole levels, `#` only last."""
    if not topic:
        raise ValueError("topic must not be empty")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and i != len(levels) - 1:
                raise ValueError(f"{topic!r}: '#' must be the last level")
            continue
        if "+" in level or "#" in level:
            raise ValueError(f"{topic!r}: wildcards '+' and '#' must take a whole level, e.g. meters/+/power")
    return topic


def _check_prefix(prefix: str) -> str:
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or "+" in prefix or "#" in prefix:
        raise ValueError(f"{prefix!r}: a topic prefix has no wildcards and no leading or trailing '/'")
    return prefix


# --- connection --------------------------------------------------------------------------------


class MqttTls(Settings):
    """TLS to the broker. `tls: {}` means TLS with the system's CA certificates."""

    ca_file: FilePath | None = Field(default=None, description="CA certificate(s), PEM; default: the system's")
    cert_file: FilePath | None = Field(default=None, description="client certificate, PEM (brokers that require one)")
    key_file: FilePath | None = Field(default=None, description="the client certificate's private key, PEM")
    insecure: bool = Field(default=False, description="skip the host name check (lab brokers only); the chain is still verified")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set without cert_file: give the client certificate too")
        return self


class IngestKind(StrEnum):
    MINER_TELEMETRY = "miner_telemetry"  # a miner or agent publishing its own MinerSample JSON
    METER = "meter"  # a smart PDU or power meter: watts per outlet or per rack
    POWER_PRICE = "power_price"  # live power price, $/kWh (or $/MWh)
    BTC_PRICE = "btc_price"  # live BTC price, USD
    DR_TARGET = "dr_target"  # a demand-response target (models.curtailment.DrTarget JSON, or a bare kW limit)
    CURTAILMENT_MODE = "curtailment_mode"  # control mode off | dry_run | on (Home Assistant's select)
    CURTAILMENT_KILL = "curtailment_kill"  # the kill switch: ON | OFF


class MqttSubscription(Settings):
    """One topic filter hashfleet subscribes to, and what its payloads are.

    Meters: a reading is matched to miners by its key: the payload's `outlet` or `rack`, else
    the topic level the filter's first `+` matched, else the whole topic. `outlets` maps a key
    to one miner id; `racks` maps a key to the miners on that rack, who share its watts in
    proportion to the power they report (a miner with its own outlet reading keeps that);
    `facility` lists keys that meter the whole site (their sum over the miners' draw is the
    measured PUE).
    """

    topic: str = Field(description="topic filter, wildcards allowed: e.g. pdu/+/outlet/+")
    kind: IngestKind
    qos: int = Field(default=1, ge=0, le=2)
    outlets: dict[str, str] = Field(default_factory=dict, max_length=100_000,
                                    description="meter: outlet (or topic) key -> miner id")
    racks: dict[str, list[str]] = Field(default_factory=dict, max_length=100_000,
                                        description="meter: rack (or topic) key -> miner ids")
    facility: list[str] = Field(default_factory=list, max_length=100,
                                description="meter: keys whose readings together are the whole site's draw "
                                            "(measured PUE, docs/health.md)")

    @field_validator("topic")
    @classmethod
    def _topic_filter(cls, topic: str) -> str:
        return _check_filter(topic)

    @model_validator(mode="after")
    def _mapping_fits_kind(self) -> MqttSubscription:
        if self.kind is IngestKind.METER:
            if not self.outlets and not self.racks and not self.facility:
                raise ValueError(f"meter topic {self.topic!r} maps to no miner: add `outlets` (key -> miner id), "
                                 "`racks` (key -> [miner ids]) or `facility` ([keys metering the whole site])")
            both = set(self.facility) & (set(self.outlets) | set(self.racks))
            if both:
                raise ValueError(f"meter key {sorted(both)[0]!r} is in `facility` and in `outlets` or `racks`: "
                                 "a reading is the whole site's or some miners', not both")
        elif self.outlets or self.racks or self.facility:
            raise ValueError(f"`outlets`, `racks` and `facility` belong to meter topics, not kind {self.kind.value!r}")
        for rack, miners in self.racks.items():
            if not miners:
                raise ValueError(f"rack {rack!r} lists no miners")
        return self


class MqttConfig(Settings):
    host: str = Field(min_length=1, description="broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="1883 plain, 8883 usually TLS")
    username: str | None = None
    password: SecretStr | None = Field(default=None, description="prefer MQTT_PASSWORD or password_file")
    password_file: Path | None = Field(default=None, description="file holding the password (docker secrets)")
    tls: MqttTls | None = None
    client_id: str | None = Field(default=None, description="default: hashfleet-<site>-<random>")
    protocol: Literal["3.1.1", "5"] = Field(default="5", description="MQTT v5 reports refused publishes; 3.1.1 for old brokers")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300, description="how long start-up waits for the first CONNACK")
    reconnect_max_s: float = Field(default=60.0, ge=1, le=3600, description="reconnect backoff doubles from 1 s up to this")

    qos: int = Field(default=1, ge=0, le=2, description="QoS of published state and cost")
    retain: bool = Field(default=True, description="retain the latest state and cost (discovery and status are always retained)")
    topic_prefix: str = Field(default="hashfleet", description="root of the published tree: <prefix>/<site>/...")
    discovery: bool = Field(default=True, description="publish Home Assistant MQTT discovery configs")
    discovery_prefix: str = Field(default="homeassistant", description="Home Assistant's discovery prefix")

    ingest: list[MqttSubscription] = Field(default_factory=list, max_length=1000, description="topics to subscribe to")
    max_payload_bytes: int = Field(default=65536, ge=64, le=16 * 1024 * 1024, description="larger payloads are dropped unread")
    telemetry_max_age_s: float = Field(default=60.0, gt=0, description="MQTT telemetry older than this (by its ts) makes the miner offline")
    meter_max_age_s: float = Field(default=120.0, gt=0, description="older meter readings are not used for cost")

    # What a publisher may make the collector believe. Anyone who can publish on an ingest topic
    # reaches these; the broker's ACL decides who can, these bound the damage.
    max_clock_skew_s: float = Field(default=60.0, ge=0, le=3600,
                                    description="ingest timestamps further ahead of this host's clock are refused")
    # Real-time markets go negative and spike: ERCOT runs from about -$0.25 to $5/kWh, Australia's
    # NEM from about -$0.65 to $11.5/kWh (in USD): the defaults leave room for both.
    power_price_min_usd_kwh: float = Field(default=-1.0, description="live power prices below are refused")
    power_price_max_usd_kwh: float = Field(default=20.0, description="live power prices above are refused")
    btc_price_min_usd: float = Field(default=1_000.0, gt=0, description="live BTC prices below are refused")
    btc_price_max_usd: float = Field(default=10_000_000.0, gt=0, description="live BTC prices above are refused")
    btc_price_max_jump: float = Field(default=0.5, gt=0, le=1000,
                                      description="a live BTC price further than this fraction (0.5: 50 %) from the "
                                                  "network source's fresh price is not used, or from the last live "
                                                  "price used, not until the next one confirms it")
    telemetry_max_miners: int = Field(default=1000, ge=1, le=50_000,
                                      description="distinct MQTT miner ids held; more are dropped (too_many_miners)")
    allowed_miners: list[str] = Field(default_factory=list, max_length=50_000,
                                      description="when set, only these miner ids, or ids on these topic keys, are "
                                                  "accepted on miner_telemetry topics; only the listed ids share "
                                                  "the site's fixed costs")
    telemetry_evict_after_s: float = Field(default=3600.0, gt=0, le=30 * 86_400,
                                           description="an MQTT miner silent this long is forgotten, its Home "
                                                       "Assistant discovery and retained topics cleared")

    @field_validator("host")
    @classmethod
    def _bare_host(cls, host: str) -> str:
        # The value is not echoed: it may hold credentials.
        if any(c in host for c in "/@ \t\n") or len(host) > 253:
            raise ValueError("a host name or address only, without scheme, credentials or path: the user goes in "
                             "mqtt.username, the password in MQTT_PASSWORD or mqtt.password_file")
        return host

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return _check_prefix(prefix)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> MqttConfig:
        for low, high in (("power_price_min_usd_kwh", "power_price_max_usd_kwh"),
                          ("btc_price_min_usd", "btc_price_max_usd")):
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"mqtt.{low} ({getattr(self, low)}) must be below mqtt.{high} ({getattr(self, high)})")
        if self.telemetry_evict_after_s < self.telemetry_max_age_s:
            raise ValueError(f"mqtt.telemetry_evict_after_s ({self.telemetry_evict_after_s:g}) must be at least "
                             f"mqtt.telemetry_max_age_s ({self.telemetry_max_age_s:g}): a miner goes offline before "
                             "it is forgotten")
        return self

    @model_validator(mode="after")
    def _password_needs_username(self) -> MqttConfig:
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password is set but no username: set mqtt.username")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        return self

    def resolved_password(self) -> str | None:
        """The password itself: `password`, else the contents of `password_file`, else None; ValueError naming
        the field, never the value, for a password that cannot be one (models.base.checked_secret)."""
        if self.password is not None:
            return checked_secret(self.password.get_secret_value(), "mqtt.password")
        if self.password_file is not None:
            return read_secret_file(self.password_file, "mqtt.password_file")
        return None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# --- ingest payloads ---------------------------------------------------------------------------


class MeterPayload(_Strict):
    """One reading of a smart PDU outlet or a rack meter: `{"watts": 3412.5, "outlet": "r1-3"}`."""

    # strict: a JSON true or "2500" is no reading (lax pydantic made them 1.0 and 2500.0)
    watts: float = Field(ge=0, allow_inf_nan=False, strict=True)
    outlet: str | None = Field(default=None, min_length=1)
    rack: str | None = Field(default=None, min_length=1)
    ts: datetime | None = Field(default=None, description="when it was measured; default: when it arrived")

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, ts: datetime | None) -> datetime | None:
        return _utc(ts)

    @model_validator(mode="after")
    def _one_key(self) -> MeterPayload:
        if self.outlet is not None and self.rack is not None:
            raise ValueError("a reading is for one outlet or one rack, not both")
        return self

    @property
    def key(self) -> str | None:
        return self.outlet if self.outlet is not None else self.rack


class PowerPricePayload(_Strict):
    """A live power price: `{"usd_per_kwh": 0.043}` or `{"usd_per_mwh": 43.0}` (market prices may be negative)."""

    usd_per_kwh: float | None = Field(default=None, allow_inf_nan=False, strict=True)  # (not true, not "0.05")
    usd_per_mwh: float | None = Field(default=None, allow_inf_nan=False, strict=True)
    ts: datetime | None = None

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, ts: datetime | None) -> datetime | None:
        return _utc(ts)

    @model_validator(mode="after")
    def _exactly_one_price(self) -> PowerPricePayload:
        if (self.usd_per_kwh is None) == (self.usd_per_mwh is None):
            raise ValueError("give exactly one of usd_per_kwh and usd_per_mwh")
        return self

    @property
    def price_usd_per_kwh(self) -> float:
        return self.usd_per_kwh if self.usd_per_kwh is not None else self.usd_per_mwh / 1000.0  # type: ignore[operator]


class BtcPricePayload(_Strict):
    """A live BTC price: `{"usd": 95123.4}`."""

    usd: float = Field(gt=0, allow_inf_nan=False, strict=True)
    ts: datetime | None = None

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, ts: datetime | None) -> datetime | None:
        return _utc(ts)


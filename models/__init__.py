"""The shared vocabulary of hashfleet: pydantic models every part speaks.

Only pydantic is imported here; sources, sinks, simulators, dashboards and
the cost engine all depend on these names, never on each other.
"""

from models.config import CollectorConfig, InfluxConfig, SpoolConfig
from models.economics import (
    Capex,
    CostSample,
    CostScope,
    FlatTariff,
    LivePowerPrice,
    LiveTariff,
    NetworkFeedConfig,
    NetworkState,
    SiteEconomics,
    TouBand,
    TouTariff,
    Weekday,
)
from models.mqtt import (
    BtcPricePayload,
    IngestKind,
    MeterPayload,
    MqttConfig,
    MqttSubscription,
    MqttTls,
    PowerPricePayload,
)
from models.sample import (
    BoardSample,
    FaultCode,
    FaultSeverity,
    MinerSample,
    MinerState,
    PoolInfo,
    SampleSource,
)

__all__ = [
    "CollectorConfig",
    "InfluxConfig",
    "SpoolConfig",
    "BoardSample",
    "FaultCode",
    "FaultSeverity",
    "MinerSample",
    "MinerState",
    "PoolInfo",
    "SampleSource",
    "Capex",
    "CostSample",
    "CostScope",
    "FlatTariff",
    "LivePowerPrice",
    "LiveTariff",
    "NetworkFeedConfig",
    "NetworkState",
    "SiteEconomics",
    "TouBand",
    "TouTariff",
    "Weekday",
    "BtcPricePayload",
    "IngestKind",
    "MeterPayload",
    "MqttConfig",
    "MqttSubscription",
    "MqttTls",
    "PowerPricePayload",
]

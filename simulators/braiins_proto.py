"""The part of the Braiins OS+ public gRPC API (package `braiins.bos.v1`) the simulator serves.

Written by hand from braiins/bos-plus-api 1.11.0 (`proto/bos/v1/*.proto`): the same package, message
and field numbers, only the fields a monitoring client reads. Not generated from, and not imported
from, any client library: pyasic ships its own generated copy, and a simulator built from the
client's code could not catch the client's mistakes. betterproto (already installed with pyasic)
does the wire encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import betterproto

PACKAGE = "braiins.bos.v1"

# Enum values used (numbers as in the .proto files).
MINER_BRAND_ANTMINER = 1
PLATFORM_CVITEK_BM1_AM2 = 6
BOS_MODE_NAND = 4
MINER_STATUS_NORMAL = 2
MINER_STATUS_PAUSED = 3
SENSOR_LOCATION_CHIP = 1
CONTROL_BOARD_SOC_FAMILY_CVITEK = 1


class SaveAction(betterproto.Enum):
    """common.proto: how a configuration change is kept."""

    UNSPECIFIED = 0
    SAVE = 1
    SAVE_AND_APPLY = 2
    SAVE_AND_FORCE_APPLY = 3


# -- units.proto ------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class MegaHashrate(betterproto.Message):
    megahash_per_second: float = betterproto.double_field(1)


@dataclass(eq=False, repr=False)
class GigaHashrate(betterproto.Message):
    gigahash_per_second: float = betterproto.double_field(1)


@dataclass(eq=False, repr=False)
class Frequency(betterproto.Message):
    hertz: float = betterproto.double_field(1)


@dataclass(eq=False, repr=False)
class Voltage(betterproto.Message):
    volt: float = betterproto.double_field(1)


@dataclass(eq=False, repr=False)
class Power(betterproto.Message):
    watt: int = betterproto.uint64_field(1)


@dataclass(eq=False, repr=False)
class PowerEfficiency(betterproto.Message):
    joule_per_terahash: float = betterproto.double_field(1)


@dataclass(eq=False, repr=False)
class Temperature(betterproto.Message):
    degree_c: float = betterproto.double_field(1)


# -- work.proto -------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class RealHashrate(betterproto.Message):
    last_5s: GigaHashrate = betterproto.message_field(1)
    last_15s: GigaHashrate = betterproto.message_field(2)
    last_30s: GigaHashrate = betterproto.message_field(3)
    last_1m: GigaHashrate = betterproto.message_field(4)
    last_5m: GigaHashrate = betterproto.message_field(5)
    last_15m: GigaHashrate = betterproto.message_field(6)
    last_30m: GigaHashrate = betterproto.message_field(7)
    last_1h: GigaHashrate = betterproto.message_field(8)
    last_24h: GigaHashrate = betterproto.message_field(9)
    since_restart: GigaHashrate = betterproto.message_field(10)


@dataclass(eq=False, repr=False)
class WorkSolverStats(betterproto.Message):
    real_hashrate: RealHashrate = betterproto.message_field(1)
    nominal_hashrate: GigaHashrate = betterproto.message_field(2)
    error_hashrate: MegaHashrate = betterproto.message_field(3)
    found_blocks: int = betterproto.uint32_field(4)
    best_share: int = betterproto.uint64_field(5)
    best_share_str: str = betterproto.string_field(6)


# -- authentication.proto ---------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class LoginRequest(betterproto.Message):
    username: str = betterproto.string_field(1)
    password: str = betterproto.string_field(2)


@dataclass(eq=False, repr=False)
class LoginResponse(betterproto.Message):
    token: str = betterproto.string_field(1)
    timeout_s: int = betterproto.uint32_field(2)


# -- miner.proto ------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Empty(betterproto.Message):
    """Every `Get...Request {}` and the action requests without fields."""


@dataclass(eq=False, repr=False)
class MinerIdentity(betterproto.Message):
    brand: int = betterproto.enum_field(1)
    model: int = betterproto.enum_field(2)
    name: str = betterproto.string_field(3)
    miner_model: str = betterproto.string_field(4)


@dataclass(eq=False, repr=False)
class BosVersion(betterproto.Message):
    current: str = betterproto.string_field(1)
    major: str = betterproto.string_field(2)
    bos_plus: bool = betterproto.bool_field(3)


@dataclass(eq=False, repr=False)
class GetMinerDetailsResponse(betterproto.Message):
    uid: str = betterproto.string_field(1)
    miner_identity: MinerIdentity = betterproto.message_field(2)
    platform: int = betterproto.enum_field(3)
    bos_mode: int = betterproto.enum_field(4)
    bos_version: BosVersion = betterproto.message_field(5)
    hostname: str = betterproto.string_field(6)
    mac_address: str = betterproto.string_field(7)
    system_uptime: int = betterproto.uint64_field(8)
    sticker_hashrate: GigaHashrate = betterproto.message_field(9)
    bosminer_uptime_s: int = betterproto.uint64_field(10)
    system_uptime_s: int = betterproto.uint64_field(11)
    status: int = betterproto.enum_field(12)
    kernel_version: str = betterproto.string_field(13)
    control_board_soc_family: int = betterproto.enum_field(15)
    serial_number: str | None = betterproto.string_field(16, optional=True)


@dataclass(eq=False, repr=False)
class PoolStats(betterproto.Message):
    accepted_shares: int = betterproto.uint64_field(1)
    rejected_shares: int = betterproto.uint64_field(2)
    stale_shares: int = betterproto.uint64_field(3)
    last_difficulty: int = betterproto.uint64_field(4)
    best_share: int = betterproto.uint64_field(5)
    generated_work: int = betterproto.uint64_field(6)
    best_share_str: str = betterproto.string_field(8)


@dataclass(eq=False, repr=False)
class MinerPowerStats(betterproto.Message):
    approximated_consumption: Power = betterproto.message_field(1)
    efficiency: PowerEfficiency = betterproto.message_field(2)


@dataclass(eq=False, repr=False)
class GetMinerStatsResponse(betterproto.Message):
    pool_stats: PoolStats = betterproto.message_field(1)
    miner_stats: WorkSolverStats = betterproto.message_field(2)
    power_stats: MinerPowerStats = betterproto.message_field(3)


@dataclass(eq=False, repr=False)
class TemperatureSensor(betterproto.Message):
    id: int | None = betterproto.uint32_field(1, optional=True)
    location: int = betterproto.enum_field(2)
    temperature: Temperature = betterproto.message_field(3)


@dataclass(eq=False, repr=False)
class Hashboard(betterproto.Message):
    id: str = betterproto.string_field(1)
    enabled: bool = betterproto.bool_field(2)
    chips_count: int | None = betterproto.message_field(3, wraps=betterproto.TYPE_UINT32)
    current_voltage: Voltage = betterproto.message_field(4)
    current_frequency: Frequency = betterproto.message_field(5)
    highest_chip_temp: TemperatureSensor = betterproto.message_field(6)
    board_temp: Temperature = betterproto.message_field(7)
    stats: WorkSolverStats = betterproto.message_field(8)
    model: str | None = betterproto.string_field(9, optional=True)
    lowest_inlet_temp: Temperature = betterproto.message_field(10)
    highest_outlet_temp: Temperature = betterproto.message_field(11)
    serial_number: str | None = betterproto.string_field(12, optional=True)
    board_name: str | None = betterproto.string_field(13, optional=True)
    chip_type: str | None = betterproto.string_field(14, optional=True)


@dataclass(eq=False, repr=False)
class GetHashboardsResponse(betterproto.Message):
    hashboards: list[Hashboard] = betterproto.message_field(1)


# -- cooling.proto ----------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class FanState(betterproto.Message):
    position: int | None = betterproto.uint32_field(1, optional=True)
    rpm: int = betterproto.uint32_field(2)
    target_speed_ratio: float | None = betterproto.double_field(3, optional=True)


@dataclass(eq=False, repr=False)
class GetCoolingStateResponse(betterproto.Message):
    fans: list[FanState] = betterproto.message_field(1)
    highest_temperature: TemperatureSensor = betterproto.message_field(2)


@dataclass(eq=False, repr=False)
class CoolingAutoMode(betterproto.Message):
    target_temperature: Temperature = betterproto.message_field(1)
    hot_temperature: Temperature = betterproto.message_field(2)  # fans at 100 %
    dangerous_temperature: Temperature = betterproto.message_field(3)  # bosminer stops


@dataclass(eq=False, repr=False)
class CoolingManualMode(betterproto.Message):
    fan_speed_ratio: float | None = betterproto.double_field(1, optional=True)
    hot_temperature: Temperature = betterproto.message_field(2)
    dangerous_temperature: Temperature = betterproto.message_field(3)
    target_temperature: Temperature = betterproto.message_field(4)


@dataclass(eq=False, repr=False)
class CoolingConfiguration(betterproto.Message):
    auto: CoolingAutoMode = betterproto.message_field(2, group="mode")
    manual: CoolingManualMode = betterproto.message_field(3, group="mode")


# -- configuration.proto ----------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class GetMinerConfigurationResponse(betterproto.Message):
    """Only the cooling configuration (field 2); pool groups, tuner, DPS and hash boards are not served."""

    temperature: CoolingConfiguration = betterproto.message_field(2)


# -- pool.proto -------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Quota(betterproto.Message):
    value: int = betterproto.uint32_field(1)


@dataclass(eq=False, repr=False)
class Pool(betterproto.Message):
    uid: str = betterproto.string_field(1)
    url: str = betterproto.string_field(2)
    user: str = betterproto.string_field(3)
    enabled: bool = betterproto.bool_field(4)
    alive: bool = betterproto.bool_field(5)
    active: bool = betterproto.bool_field(6)
    stats: PoolStats = betterproto.message_field(7)


@dataclass(eq=False, repr=False)
class PoolGroup(betterproto.Message):
    name: str = betterproto.string_field(1)
    quota: Quota = betterproto.message_field(2, group="strategy")
    pools: list[Pool] = betterproto.message_field(4)
    uid: str = betterproto.string_field(5)


@dataclass(eq=False, repr=False)
class GetPoolGroupsResponse(betterproto.Message):
    pool_groups: list[PoolGroup] = betterproto.message_field(1)


# -- performance.proto ------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class PowerTargetMode(betterproto.Message):
    power_target: Power = betterproto.message_field(1)


@dataclass(eq=False, repr=False)
class TunerPerformanceMode(betterproto.Message):
    power_target: PowerTargetMode = betterproto.message_field(1, group="target")


@dataclass(eq=False, repr=False)
class PerformanceMode(betterproto.Message):
    tuner_mode: TunerPerformanceMode = betterproto.message_field(2, group="mode")


@dataclass(eq=False, repr=False)
class SetPowerTargetRequest(betterproto.Message):
    save_action: SaveAction = betterproto.enum_field(1)
    power_target: Power = betterproto.message_field(2)


@dataclass(eq=False, repr=False)
class SetPowerTargetResponse(betterproto.Message):
    power_target: Power = betterproto.message_field(1)


# -- actions.proto ----------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class PauseMiningResponse(betterproto.Message):
    already_paused: bool = betterproto.bool_field(1)


@dataclass(eq=False, repr=False)
class ResumeMiningResponse(betterproto.Message):
    already_mining: bool = betterproto.bool_field(1)


@dataclass(eq=False, repr=False)
class SetLocateDeviceStatusRequest(betterproto.Message):
    enable: bool = betterproto.bool_field(1)


@dataclass(eq=False, repr=False)
class LocateDeviceStatusResponse(betterproto.Message):
    enabled: bool = betterproto.bool_field(1)


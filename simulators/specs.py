"""What each simulated model is: nameplate, layout and firmware identity, as data.

Adding a model is one more `ModelSpec(...)` entry in `MODELS`. Numbers are nameplate values
(DESIGN.md section 4) plus a few calibration points taken from real captures, e.g. an
A15-194 reading 197 TH/s, 3731 W, 49 % fans at 31 °C ambient with chips between 60 and 78 °C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Layout = Literal["mm", "q"]
# Which firmware family a model speaks, and so which servers a simulated unit gets:
# "avalon": CGMiner API on 4028 (simulators.cgminer); "antminer": Bitmain stock BMMiner RPC on 4028
# plus the digest-auth web UI on 80 (simulators.antminer); "bitaxe": AxeOS HTTP on 80 (simulators.bitaxe);
# "whatsminer": MicroBT btminer API v2 on 4028, token-authenticated writes (simulators.whatsminer);
# "braiins": Braiins OS+ bosminer RPC on 4028 plus the gRPC API on 50051 (simulators.braiins).
Family = Literal["avalon", "antminer", "bitaxe", "whatsminer", "braiins"]


@dataclass(frozen=True, slots=True)
class WorkMode:
    """One firmware work mode (`WORKMODE[n]` is its index in `ModelSpec.modes`)."""

    name: str
    hashrate_ths: float
    power_w: float


@dataclass(frozen=True, slots=True)
class ModelSpec:
    key: str  # fleet key on the CLI, e.g. "a1246"
    # Identity as the firmware reports it (`version`, device string `Ver`, `Core`).
    prod: str
    model: str
    hwtype: str
    swtype: str
    firmware: str
    ver: str
    core: str
    stats_id: str  # STATS[0].ID
    dev_name: str  # devs/devdetails Name
    driver: str  # devdetails Driver
    # Firmware behaviour.
    layout: Layout  # "mm": one `MM ID0` string; "q": `MM ID0:Summary` + `HBinfo`
    has_wallpower: bool
    has_litestats: bool
    env_key: Literal["Temp", "ITemp"]  # ambient sensor key in the device string
    ambient_sensor: bool  # False: the key reads -273 (no intake sensor fitted)
    devs_temp_sentinel: bool  # devs "Temperature" is -273 instead of the intake temperature
    # Hardware.
    boards: int
    chips_per_board: int
    fans: int
    fan_max_rpm: int
    modes: tuple[WorkMode, ...]
    default_mode: int
    idle_power_w: float  # soft-off draw (controller, PSU standby)
    # Thermal calibration at 25 °C ambient and nameplate load.
    typical_chip_avg_c: float
    typical_fan_pct: float
    target_temp_c: int  # TarT
    overheat_c: int  # chip temperature at which the firmware protects itself
    chip_spread_c: float  # standard deviation of chip temperatures around the board average
    # Electrical and pool details that only shape the wire.
    ps_vin: int  # PS[1], centivolts
    ps_vout: int  # PS[2], centivolts
    pool_diff: int
    hw_error_pct: float  # typical DH
    # Makes other than Avalon (defaults keep the Avalon entries as they were).
    family: Family = "avalon"
    freq_mhz: int = 0  # chip clock the firmware reports (Antminer chain freq_avg, Bitaxe frequency)
    small_cores: int = 0  # Bitaxe smallCoreCount: expected MH/s = small_cores x chips x freq_mhz
    core_mv: int = 0  # Bitaxe coreVoltage
    power_step_w: float = 1.0  # resolution of the power reading (a Bitaxe's INA260 reads centiwatts)

    @property
    def nameplate(self) -> WorkMode:
        return self.modes[self.default_mode]

    @property
    def nominal_ths(self) -> float:
        """Nameplate hashrate (the default work mode)."""
        return self.nameplate.hashrate_ths

    @property
    def nominal_power_w(self) -> float:
        return self.nameplate.power_w

    @property
    def chips_total(self) -> int:
        return self.boards * self.chips_per_board


def _a_series(**fields: Any) -> ModelSpec:
    """The A-series share one firmware family: driver IDs, one `MM ID0` string, 12 V PSU, pool."""
    return ModelSpec(
        stats_id="AVA100",
        dev_name="AVA10",
        driver="avalon10",
        layout="mm",
        env_key="Temp",
        ambient_sensor=True,
        devs_temp_sentinel=False,
        ps_vin=1209,
        ps_vout=1187,
        pool_diff=65536,
        **fields,
    )


def _antminer(**fields: Any) -> ModelSpec:
    """Bitmain stock firmware (BMMiner RPC + the digest-auth web UI).

    Field meanings for this family: `prod` is the `Type` the firmware reports ("Antminer S19j Pro"),
    `firmware` its CompileTime (what the web UI shows as the firmware version), `swtype` the
    `Miner` build, `ver` the BMMiner version, `hwtype` the hash board id, `core` the ASIC.
    """
    return ModelSpec(
        family="antminer",
        swtype="uart_trans.1.3",
        ver="1.0.0",
        stats_id="BTM_SOC0",
        dev_name="BTM_SOC",
        driver="bitmain-soc",
        layout="mm",
        has_wallpower=False,  # stock firmware reports no power at all
        has_litestats=False,
        env_key="Temp",
        ambient_sensor=False,  # no intake sensor on the API
        devs_temp_sentinel=False,
        ps_vin=1500,
        ps_vout=1500,
        pool_diff=65536,
        fans=4,
        boards=3,
        default_mode=0,
        target_temp_c=75,
        overheat_c=95,
        chip_spread_c=3.5,
        hw_error_pct=0.02,
        **fields,
    )


def _whatsminer(**fields: Any) -> ModelSpec:
    """MicroBT Whatsminer on stock btminer (API v2.0.x, firmware before 2024-11).

    Field meanings for this family: `model` is devdetails `Model` ("M30S+_VE40": pyasic picks the
    class from it), `prod` the marketing name, `firmware` get_version `fw_ver` (pyasic switches to
    its API v3 client for firmware dated after 2024-11, so these stay before), `ver` the API version,
    `swtype` the control board platform, `hwtype` the PSU model.
    """
    return ModelSpec(
        family="whatsminer",
        ver="2.0.5",
        stats_id="",
        dev_name="SM",
        driver="bitmicro",
        layout="mm",
        has_wallpower=True,  # summary `Power` is the PSU's input power
        has_litestats=False,
        env_key="Temp",
        ambient_sensor=True,  # summary `Env Temp`
        devs_temp_sentinel=False,
        ps_vin=22400,
        ps_vout=1250,
        pool_diff=65536,
        fans=2,  # `Fan Speed In` / `Fan Speed Out`
        boards=3,
        default_mode=0,
        target_temp_c=80,
        overheat_c=105,
        chip_spread_c=4.0,
        hw_error_pct=0.01,
        **fields,
    )


def _braiins(**fields: Any) -> ModelSpec:
    """An Antminer running Braiins OS+ (bosminer RPC on 4028, gRPC on 50051).

    Field meanings for this family: `model` is devdetails `Model` ("Bitmain Antminer S19j Pro":
    pyasic strips "Bitmain " and picks the class), `prod` the gRPC `miner_identity.name`,
    `firmware` the gRPC `bos_version.current` (pyasic reports its sixth dash-field, "25.07"),
    `ver` the BOSer build in `version`, `hwtype` the hash board name, `core` the chip.
    """
    return ModelSpec(
        family="braiins",
        swtype="boser-buildroot",
        stats_id="",
        dev_name="",
        driver="",
        layout="mm",
        has_wallpower=True,  # the tuner's approximated consumption
        has_litestats=False,
        env_key="Temp",
        ambient_sensor=False,
        devs_temp_sentinel=False,
        ps_vin=1500,
        ps_vout=1500,
        pool_diff=65536,
        fans=4,
        boards=3,
        default_mode=0,
        target_temp_c=75,
        overheat_c=95,
        chip_spread_c=3.5,
        hw_error_pct=0.02,
        **fields,
    )


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        _a_series(
            key="a1246",
            prod="AvalonMiner 1246-83",
            model="1246-83",
            hwtype="MM4v2_X3",
            swtype="MM314",
            firmware="21061101_6f2ba4a_9f7e3c2",
            ver="1246-83-21061101_6f2ba4a_9f7e3c2",
            core="A3206",
            has_wallpower=False,  # 2021 firmware: power only in the last PS slot
            has_litestats=False,
            boards=3,
            chips_per_board=120,
            fans=4,
            fan_max_rpm=6800,
            modes=(WorkMode("Normal", 90.0, 3420.0), WorkMode("Performance", 96.0, 3800.0)),
            default_mode=0,
            idle_power_w=62.0,
            typical_chip_avg_c=69.0,
            typical_fan_pct=55.0,
            target_temp_c=80,
            overheat_c=95,
            chip_spread_c=3.5,
            hw_error_pct=1.6,
        ),
        _a_series(
            key="a1566",
            prod="AvalonMiner 15-194",
            model="15-194",  # pyasic maps "AvalonMiner 15" through MODEL
            hwtype="MM4v3_X3",
            swtype="MM319",
            firmware="24092601_8a3b1c2_7d5e9f0",
            ver="15-194-24092601_8a3b1c2_7d5e9f0",
            core="A3208",
            has_wallpower=True,
            has_litestats=True,
            boards=3,
            chips_per_board=160,
            fans=2,
            fan_max_rpm=8700,
            modes=(WorkMode("Normal", 194.0, 3650.0), WorkMode("Eco", 170.0, 2950.0)),
            default_mode=0,
            idle_power_w=70.0,
            typical_chip_avg_c=68.5,
            typical_fan_pct=40.0,
            target_temp_c=80,
            overheat_c=95,
            chip_spread_c=4.0,
            hw_error_pct=1.2,
        ),
        _a_series(
            key="a1466",
            prod="AvalonMiner 1466-150",
            model="1466-150",
            hwtype="MM4v3_X3",
            swtype="MM317",
            firmware="24060501_3c9d2e1_5b8a7f4",
            ver="1466-150-24060501_3c9d2e1_5b8a7f4",
            core="A3207",
            has_wallpower=True,
            has_litestats=True,
            boards=3,
            chips_per_board=176,
            fans=2,
            fan_max_rpm=8200,
            modes=(WorkMode("Normal", 150.0, 3230.0), WorkMode("Eco", 130.0, 2650.0)),
            default_mode=0,
            idle_power_w=68.0,
            typical_chip_avg_c=67.0,
            typical_fan_pct=45.0,
            target_temp_c=80,
            overheat_c=95,
            chip_spread_c=3.8,
            hw_error_pct=1.4,
        ),
        ModelSpec(
            key="q",
            prod="Avalon Q",
            model="Q",
            hwtype="Q_MM1v1_X1",
            swtype="MM319",
            firmware="25052801_14a19a2",
            ver="Q-25052801_14a19a2",
            core="A3197S",
            stats_id="AVA100",
            dev_name="AVA10",
            driver="avalon10",
            layout="q",
            has_wallpower=False,
            has_litestats=True,
            env_key="ITemp",
            ambient_sensor=True,
            devs_temp_sentinel=True,
            boards=1,
            chips_per_board=160,
            fans=4,
            fan_max_rpm=3200,
            modes=(
                WorkMode("Eco", 56.0, 850.0),
                WorkMode("Standard", 75.0, 1300.0),
                WorkMode("Super", 90.0, 1674.0),
            ),
            default_mode=2,
            idle_power_w=146.0,
            typical_chip_avg_c=66.0,
            typical_fan_pct=60.0,
            target_temp_c=65,
            overheat_c=90,
            chip_spread_c=3.0,
            ps_vin=1217,
            ps_vout=2250,
            pool_diff=32768,
            hw_error_pct=2.3,
        ),
        ModelSpec(
            key="nano3s",
            prod="Avalon Nano3s",
            model="Nano3s",
            hwtype="N_MM1v1_X1",
            swtype="MM319",
            firmware="25021401_56abae7",
            ver="Nano3s-25021401_56abae7",
            core="A3197S",
            stats_id="AVANANO0",
            dev_name="AVANANO",
            driver="avalonnano",
            layout="mm",
            has_wallpower=False,
            has_litestats=True,
            env_key="ITemp",
            ambient_sensor=False,  # reads ITemp[-273] on real units
            devs_temp_sentinel=True,
            boards=1,
            chips_per_board=12,
            fans=1,
            fan_max_rpm=4600,
            modes=(WorkMode("Low", 3.8, 75.0), WorkMode("Mid", 5.0, 105.0), WorkMode("High", 6.0, 140.0)),
            default_mode=2,
            idle_power_w=6.0,
            typical_chip_avg_c=88.0,
            typical_fan_pct=33.0,
            target_temp_c=90,
            overheat_c=105,
            chip_spread_c=2.5,
            ps_vin=0,
            ps_vout=2754,
            pool_diff=4096,
            hw_error_pct=2.4,
        ),
        _antminer(
            key="s19jpro",
            prod="Antminer S19j Pro",
            model="S19j Pro",
            hwtype="BHB42601",
            firmware="Fri Sep 15 14:39:20 CST 2023",
            core="BM1362",
            chips_per_board=126,
            fan_max_rpm=6000,
            # "Low": stock firmware's low-power mode (`miner-mode` 3); hashfleet's estimate, not a Bitmain figure.
            modes=(WorkMode("Normal", 104.0, 3068.0), WorkMode("Low", 84.0, 2420.0)),
            idle_power_w=18.0,
            typical_chip_avg_c=66.0,
            typical_fan_pct=80.0,
            freq_mhz=525,
        ),
        _antminer(
            key="s21",
            prod="Antminer S21",
            model="S21",
            hwtype="BHB68601",
            firmware="Wed Jan 10 10:27:46 CST 2024",
            core="BM1368",
            chips_per_board=108,
            fan_max_rpm=6600,
            modes=(WorkMode("Normal", 200.0, 3500.0), WorkMode("Low", 165.0, 2780.0)),  # Low: as for the S19j Pro
            idle_power_w=20.0,
            typical_chip_avg_c=64.0,
            typical_fan_pct=70.0,
            freq_mhz=490,
        ),
        _whatsminer(
            key="m30splus",
            prod="WhatsMiner M30S+",
            model="M30S+_VE40",
            hwtype="P221B",
            swtype="H616",
            firmware="20230803.11.REL",
            core="K88Z347",
            chips_per_board=156,
            fan_max_rpm=6800,
            modes=(WorkMode("Normal", 100.0, 3400.0), WorkMode("Low", 88.0, 2900.0)),
            idle_power_w=25.0,
            typical_chip_avg_c=82.0,
            typical_fan_pct=70.0,
            freq_mhz=590,
        ),
        _whatsminer(
            key="m50s",
            prod="WhatsMiner M50S",
            model="M50S_VH50",
            hwtype="P222B",
            swtype="H616",
            firmware="20230911.12.Rel",
            core="BM1398",
            chips_per_board=135,
            fan_max_rpm=6600,
            modes=(WorkMode("Normal", 126.0, 3276.0), WorkMode("Low", 110.0, 2800.0)),
            idle_power_w=25.0,
            typical_chip_avg_c=74.0,
            typical_fan_pct=65.0,
            freq_mhz=600,
        ),
        _whatsminer(
            key="m60s",
            prod="WhatsMiner M60S",
            model="M60S_VK30",
            hwtype="P521B",
            swtype="H616",
            firmware="20240322.11.REL",
            core="BM1370",
            chips_per_board=245,
            fan_max_rpm=6600,
            modes=(WorkMode("Normal", 186.0, 3441.0), WorkMode("Low", 160.0, 2900.0)),
            idle_power_w=25.0,
            typical_chip_avg_c=70.0,
            typical_fan_pct=55.0,
            freq_mhz=560,
        ),
        _braiins(
            key="bos-s19jpro",
            prod="Antminer S19j Pro",
            model="Bitmain Antminer S19j Pro",
            hwtype="BHB42601",
            firmware="2025-08-06-0-3881c51d-25.07-plus",
            ver="boser-buildroot 0.1.0-3881c51d",
            core="BM1362",
            chips_per_board=126,
            fan_max_rpm=6000,
            modes=(WorkMode("Power target", 104.0, 3068.0),),
            idle_power_w=18.0,
            typical_chip_avg_c=64.0,
            typical_fan_pct=60.0,
            freq_mhz=525,
        ),
        _braiins(
            key="bos-s21",
            prod="Antminer S21",
            model="Bitmain Antminer S21",
            hwtype="BHB68601",
            firmware="2025-08-06-0-3881c51d-25.07-plus",
            ver="boser-buildroot 0.1.0-3881c51d",
            core="BM1368",
            chips_per_board=108,
            fan_max_rpm=6600,
            modes=(WorkMode("Power target", 200.0, 3500.0),),
            idle_power_w=20.0,
            typical_chip_avg_c=62.0,
            typical_fan_pct=55.0,
            freq_mhz=490,
        ),
        ModelSpec(
            key="bitaxe",
            family="bitaxe",
            power_step_w=0.01,
            # AxeOS identity: deviceModel, version (= axeOSVersion), boardVersion, ASICModel.
            prod="Bitaxe Gamma",
            model="Gamma",
            hwtype="601",
            swtype="esp-miner",
            firmware="v2.6.1",
            ver="v2.6.1",
            core="BM1370",
            stats_id="",
            dev_name="",
            driver="",
            layout="mm",
            has_wallpower=True,  # the INA260 on the board measures input power
            has_litestats=False,
            env_key="Temp",
            ambient_sensor=False,
            devs_temp_sentinel=False,
            boards=1,
            chips_per_board=1,
            fans=1,
            fan_max_rpm=7000,
            # 2040 small cores x 600 MHz = 1.224 TH/s expected, as AxeOS and pyasic compute it.
            modes=(WorkMode("Default", 1.224, 18.0),),
            default_mode=0,
            idle_power_w=3.0,
            typical_chip_avg_c=58.0,
            typical_fan_pct=55.0,
            target_temp_c=60,
            overheat_c=75,
            chip_spread_c=0.5,
            ps_vin=500,
            ps_vout=500,
            pool_diff=1000,
            hw_error_pct=0.2,
            freq_mhz=600,
            small_cores=2040,
            core_mv=1150,
        ),
    )
}

# Other spellings operators use for the same hardware.
ALIASES: dict[str, str] = {
    "a15-194": "a1566",
    "a15194": "a1566",
    "s19j-pro": "s19jpro",
    "s19jp": "s19jpro",
    "gamma": "bitaxe",
    "bitaxe-gamma": "bitaxe",
    "m30s+": "m30splus",
    "m30s-plus": "m30splus",
    "bos-s19j-pro": "bos-s19jpro",
}


def known_models() -> str:
    """The fleet keys, for error messages."""
    return ", ".join(MODELS)


def resolve_model(key: str) -> ModelSpec:
    """The spec for a fleet key (case-insensitive, aliases allowed); KeyError names the known ones."""
    k = key.strip().lower()
    k = ALIASES.get(k, k)
    try:
        return MODELS[k]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known models: {known_models()}") from None

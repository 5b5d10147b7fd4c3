"""What each simulated model is: nameplate, layout and firmware identity, as data.

Adding a model is one more `ModelSpec(...)` entry in `MODELS`. Numbers are nameplate values
(DESIGN.md section 4) plus a few calibration points taken from real captures, e.g. an
A15-194 reading 197 TH/s, 3731 W, 49 % fans at 31 °C ambient with chips between 60 and 78 °C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# How the firmware lays out its replies (simulators.cgminer, simulators.avalon_layouts):
# "mm": the compact `MM ID0` string the first simulated A-series and the Nano 3S speak (kept as it was:
#       the benchmark's A1566 answers in it); "q": the Avalon Q's `MM ID0:Summary` + `HBinfo`;
# the others follow the golden cases in tests/data/replies/avalon/golden/ key for key:
# "a10_1910": A1066 firmware 19101244 (6-slot PS, no GHSspd, HS_RCD records; Canaan's A10 API manual);
# "a10_1912": A1047 firmware 19120401 (as a10_1910 in another order, `Elapsed[..]BOOTBY[..]` unspaced);
# "a15_2024": the A15-194 2024 firmware's full string (PVT_T/PVT_V/MW per chip, WALLPOWER), also used
#             for the A13, A14 and A16 units nobody has published a reply of;
# "nano3_2024": Nano 3 firmware 24071801 (watts in PS[5], a profile value in PS[6], WORKLEVEL only);
# "mini3_2025": Mini 3 firmware 25011701 (ITemp/OTemp/HBTemp, HashStatus, no per-chip lists);
# "auc": a cgminer 4.10 controller with AUC chains of 7xx/8xx/9xx modules (`MM ID1..n`, no MM ID0).
Layout = Literal["mm", "q", "a10_1910", "a10_1912", "a15_2024", "nano3_2024", "mini3_2025", "auc"]
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
    power_limit_w: int = 0  # MPO in this mode; 0: derived from power_w (simulators.physics)
    profile: str = ""  # the firmware's ATA<n> profile string for this mode (Nano 3), "" where not shown


@dataclass(frozen=True, slots=True)
class ChainModule:
    """One 7xx/8xx/9xx module behind an AUC: 4 hash boards, one fan, its own firmware (`Ver`)."""

    model: str  # "741": the digits `Ver` starts with
    ver: str  # module firmware, e.g. "7411706-3162860" (model + yymm + build)
    chips_per_board: int
    ghs_mm: float  # nominal GH/s (GHSmm)
    freq_mhz: float  # Freq[] at nominal
    vo_raw: int  # Vo[] per board (raw units of the module's PMU)
    power_w: float  # draw at nominal: not on the wire (7xx-9xx report no power), drives heat only


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
    # Braiins OS+: chip temperature at which bosminer stops (its cooling configuration's dangerous_temperature;
    # `overheat_c` is its hot_temperature, where it throttles). 0: `overheat_c` is the only protection.
    dangerous_c: int = 0
    # Avalon firmware differences (defaults keep the first simulated models as they were).
    mode_key: Literal["WORKMODE", "WORKLEVEL"] = "WORKMODE"  # Nano 3: the level is the mode
    has_ghsspd: bool = True  # False: no live rate in the device string, only summary MHS (A10 2019, 7xx-9xx)
    spd_blank_s: float = 0.0  # after boot or soft-on, GHSspd reads 0.00 this long while the unit hashes
    healthy_echu: int = 0  # ECHU on a healthy board (512 on A10: Canaan's manual); a 7xx chain varies per board
    # What power figure the firmware reports: "wall" (WALLPOWER, the wall slot of PS), "dc" (A10: PS[4], the
    # power to the hash boards only), "none" (7xx-9xx chains).
    power_reading: Literal["wall", "dc", "none"] = "wall"
    sf_mhz: tuple[int, ...] = ()  # the chip frequency table (SF/ATABD) of the default mode
    volt_level: int = 0  # --avalon10-voltage-level of the default mode
    chain: tuple[tuple[ChainModule, ...], ...] = ()  # "auc" layout: modules per AUC (STATS entry)

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

    @property
    def modules(self) -> tuple[ChainModule, ...]:
        """A chain's modules in STATS order (empty for a single unit)."""
        return tuple(m for auc in self.chain for m in auc)


def _a_series(**fields: Any) -> ModelSpec:
    """The A-series share one firmware family: driver IDs, one `MM ID0` string, 12 V PSU, pool."""
    defaults: dict[str, Any] = dict(
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
    )
    return ModelSpec(**{**defaults, **fields})


# GHSspd reads 0.00 this long after a (re)start while the unit already hashes: the golden case
# a15-194_24102401_ramping-spd0-doc shows it 95 s after boot; how long it lasts is not published.
SPD_BLANK_S = 120.0


def _a_2024(**fields: Any) -> ModelSpec:
    """A13-A16 on the A15-194's 2024 firmware layout (no A13, A14 or A16 reply is published: the golden
    `-doc` cases and these use the A15 string re-sized). Work modes follow the A10 manual and the
    captures: WORKMODE 1 is the nameplate ("high performance"), 0 a lower "normal" mode whose figures
    no source gives (assumed: ~85 % of the rate at ~78 % of the power). Nameplates: docs/avalon.md
    section 8."""
    defaults: dict[str, Any] = dict(
        layout="a15_2024", has_wallpower=True, has_litestats=True, default_mode=1, spd_blank_s=SPD_BLANK_S,
        fans=2, target_temp_c=80, overheat_c=95, chip_spread_c=3.8, hw_error_pct=1.4,
    )
    return _a_series(**{**defaults, **fields})


def _two_modes(ths: float, watts: float, mpo: int) -> tuple[WorkMode, WorkMode]:
    """(normal, high performance): the nameplate as mode 1 with its MPO (DC side, below the wall
    figure as on the captures), mode 0 assumed (see `_a_2024`)."""
    return (WorkMode("Normal", round(ths * 0.85, 1), round(watts * 0.78), int(round(mpo * 0.78 / 10) * 10)),
            WorkMode("High Performance", ths, watts, mpo))


def _chain(**fields: Any) -> ModelSpec:
    """A cgminer 4.10 controller (Raspberry Pi) with AUCs of 7xx/8xx/9xx modules: one address, one
    STATS entry per AUC, `MM ID1..n` per module, no power reading, live rate only in summary."""
    modules = [m for auc in fields["chain"] for m in auc]
    first = modules[0]
    defaults: dict[str, Any] = dict(
        prod=f"AvalonMiner {first.model}",  # not on the wire (version has no PROD): MQTT agents, logs
        model=first.model, hwtype="", swtype="", firmware=first.ver, ver=first.ver, core="",
        stats_id=f"AV{first.model[0]}", dev_name=f"AV{first.model[0]}", driver=f"avalon{first.model[0]}",
        layout="auc", has_wallpower=False, has_litestats=False, has_ghsspd=False, power_reading="none", env_key="Temp",
        ambient_sensor=True, devs_temp_sentinel=False, boards=4 * len(modules),
        chips_per_board=first.chips_per_board, fans=len(modules),
        modes=(WorkMode("Default", round(sum(m.ghs_mm for m in modules) / 1000.0, 2),
                        float(sum(m.power_w for m in modules))),),
        default_mode=0, target_temp_c=80, overheat_c=105, chip_spread_c=3.0, ps_vin=0, ps_vout=0,
        pool_diff=65536, hw_error_pct=0.3,
    )
    return ModelSpec(**{**defaults, **fields})


# 7xx-9xx modules as the golden chain cases show them (Ver, chips per board, GHSmm, Freq, Vo). Their
# power is not on the wire; the figures here only drive heat and fans (assumed: Canaan's nameplates
# as commonly quoted, ~1150 W per 741, ~1290 W per 841, ~1200 W per 821, ~1700 W per 921).
A741 = ChainModule("741", "7411706-3162860", 22, 6830.0, 606.0, 4055, 1150.0)
A841 = ChainModule("841", "8411803-14b0f10", 26, 13800.0, 771.4, 3915, 1290.0)
A821 = ChainModule("821", "8211803-14b0f10", 26, 11670.0, 652.6, 3935, 1200.0)
A921 = ChainModule("921", "9211809-b4b3d00", 26, 21770.0, 817.6, 4140, 1700.0)


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
        # Braiins OS+'s default temperature limits: target 89, hot 100 (fans at 100 %), dangerous 110 C (bosminer
        # shuts down): Braiins OS+ documentation, Configuration, "Default temperature limits" and bosminer.toml
        # `[temp_control]` (github.com/tgr-braiins/braiins-os-docs, braiins-os-plus-en/source/Configuration/
        # index_configuration.rst). Served as GetMinerConfiguration's cooling `auto` mode and RPC `tempctrl`.
        target_temp_c=89,
        overheat_c=100,
        dangerous_c=110,
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
        # Braiins OS+'s default temperature limits: target 89, hot 100 (fans at 100 %), dangerous 110 C (bosminer
        # shuts down): Braiins OS+ documentation, Configuration, "Default temperature limits" and bosminer.toml
        # `[temp_control]` (github.com/tgr-braiins/braiins-os-docs, braiins-os-plus-en/source/Configuration/
        # index_configuration.rst). Served as GetMinerConfiguration's cooling `auto` mode and RPC `tempctrl`.
        target_temp_c=89,
        overheat_c=100,
        dangerous_c=110,
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
            layout="a15_2024",  # golden case a1466_24060501_mining-doc
            spd_blank_s=SPD_BLANK_S,
            sf_mhz=(390, 410, 430, 450),
            volt_level=1245,
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
        ModelSpec(
            key="nano3",  # golden case nano3_24071801_mining (2024 firmware)
            prod="AvalonMiner Nano3",  # the PROD pyasic 0.79 matches
            model="Nano3",
            hwtype="N_MM1v1_X1",
            swtype="MM319",
            firmware="24071801_42c628d",
            ver="nano3-24071801_42c628d",
            core="A3198S",
            stats_id="AVANANO0",
            dev_name="AVANANO",
            driver="avalonnano",
            layout="nano3_2024",
            mode_key="WORKLEVEL",  # no WORKMODE key: WORKLEVEL 0/1/2 picks the ATA0/1/2 profile
            has_wallpower=False,
            has_litestats=False,
            env_key="Temp",
            ambient_sensor=True,
            devs_temp_sentinel=True,
            boards=1,
            chips_per_board=10,
            fans=1,
            fan_max_rpm=7400,
            # Limits 60/90/125 W are the profiles' first fields (ATA0..2, kept as published); the rate
            # scales with the profiles' chip clocks (~313/461/588 MHz) from 3.2 TH/s at level 1 (GHSmm
            # in the capture); draw a little under each limit (capture: PS[5] 89 W at MPO[90]).
            modes=(
                WorkMode("Low", 2.15, 58.0, 60, "60-80-310-100:293:313:333"),
                WorkMode("Mid", 3.2, 88.0, 90, "90-85-324-100:441:461:481"),
                WorkMode("High", 4.05, 122.0, 125, "125-90-344-100:568:588:608"),
            ),
            default_mode=1,
            idle_power_w=5.0,
            typical_chip_avg_c=84.0,
            typical_fan_pct=40.0,
            target_temp_c=85,
            overheat_c=100,
            chip_spread_c=1.5,
            ps_vin=0,
            ps_vout=2810,  # PS[4] on this firmware: output volts x100
            pool_diff=4096,
            hw_error_pct=15.0,  # DH ~17 % on the published unit, with no error code set
        ),
        ModelSpec(
            key="mini3",  # golden case mini3_25011701_mining (2025 firmware)
            prod="Avalon Mini3",
            model="Mini3",
            hwtype="M_MM1v1_X1",
            swtype="MM319",
            firmware="25011701_3f53b19",
            ver="Mini3-25011701_3f53b19",
            core="A3197S",
            stats_id="AVALON0",
            dev_name="AVALON",
            driver="avalon",
            layout="mini3_2025",
            has_wallpower=False,  # wall watts in PS[6]
            has_litestats=False,
            env_key="ITemp",
            ambient_sensor=True,
            devs_temp_sentinel=True,
            boards=1,
            chips_per_board=66,  # pyasic's figure
            fans=1,
            fan_max_rpm=3000,
            # No nameplate in the catalogue: Standard is the golden case's point (GHSmm ~38.4 TH/s,
            # MPO[800], wall ~810-824 W, WORKMODE[1]); Eco and Super assumed like the Q's modes.
            modes=(
                WorkMode("Eco", 28.0, 560.0, 560),
                WorkMode("Standard", 37.5, 810.0, 800),
                WorkMode("Super", 42.0, 950.0, 940),
            ),
            default_mode=1,
            idle_power_w=20.0,
            typical_chip_avg_c=79.0,
            typical_fan_pct=90.0,
            target_temp_c=75,
            overheat_c=95,
            chip_spread_c=2.5,
            ps_vin=1212,
            ps_vout=2079,
            pool_diff=32768,
            hw_error_pct=1.7,
        ),
        _a_series(
            key="a1066",  # golden case a1066_19101244_mining (Canaan's A10 API manual)
            prod="AvalonMiner 10xx",  # the A10 family's PROD (pyasic 0.79 does not map it)
            model="10xx",
            hwtype="MM3v2",
            swtype="MM320",
            firmware="19101244_fe411a8_71edeca",
            ver="1066-19101244_fe411a8_71edeca",
            core="A3201",
            layout="a10_1910",
            has_wallpower=False,
            has_litestats=False,
            has_ghsspd=False,
            power_reading="dc",
            healthy_echu=512,  # "0 or 512 = normal" (Canaan's log description); ECHU[512 512 512] in the manual
            boards=3,
            chips_per_board=114,
            fans=4,
            fan_max_rpm=6600,
            # A10 manual: WORKMODE 0 normal, 1 high performance (the capture: 1, GHSmm 51.1 TH/s, 2834 W
            # DC = ~3000 W at the wall); mode 0 assumed.
            modes=_two_modes(51.0, 3000.0, 2900),
            default_mode=1,
            idle_power_w=60.0,
            typical_chip_avg_c=63.0,
            typical_fan_pct=56.0,
            target_temp_c=80,
            overheat_c=95,
            chip_spread_c=3.5,
            ps_vin=1216,
            ps_vout=1283,
            hw_error_pct=0.7,
            sf_mhz=(575, 600, 625, 650),
        ),
        _a_series(
            key="a1047",  # golden case a1047_19120401_mining
            prod="AvalonMiner 10xx",
            model="10xx",
            hwtype="MM3v2",
            swtype="MM320",
            firmware="19120401_d46bc64_0367a8b",
            ver="1047-19120401_d46bc64_0367a8b",
            core="A3201",
            layout="a10_1912",
            has_wallpower=False,
            has_litestats=False,
            has_ghsspd=False,
            power_reading="dc",
            healthy_echu=512,
            boards=2,  # 2 x 120 on the capture (pyasic and asic-rs say 3 x 80)
            chips_per_board=120,
            fans=2,
            fan_max_rpm=6300,
            # A10 manual's example: "31T" normal, "37T" high performance; capture: GHSmm 37.7 in mode 1,
            # 2309 W DC (~2440 W at the wall), MPO 2220 on the next firmware.
            modes=(WorkMode("Normal", 31.0, 1950.0, 1850), WorkMode("High Performance", 37.7, 2440.0, 2220)),
            default_mode=1,
            idle_power_w=55.0,
            typical_chip_avg_c=62.0,
            typical_fan_pct=48.0,
            target_temp_c=80,
            overheat_c=95,
            chip_spread_c=3.5,
            ps_vin=1210,
            ps_vout=1312,
            hw_error_pct=1.1,
            sf_mhz=(612, 637, 662, 687),
        ),
        _a_2024(
            key="a1346",
            prod="AvalonMiner 1346-110",  # as an unverified fixture shows it (docs/avalon.md section 8)
            model="1346-110",
            hwtype="MM4v1_X3",
            swtype="MM316",
            firmware="24041001_08b0955_0196aba",
            ver="1346-110-24041001_08b0955_0196aba",
            core="A3205",
            boards=3,
            chips_per_board=120,  # assumed, as golden case a1366 (not published)
            fan_max_rpm=7400,
            modes=_two_modes(110.0, 3300.0, 3060),  # 110 TH/s at 30 J/TH (Canaan's A13 launch)
            idle_power_w=65.0,
            typical_chip_avg_c=70.0,
            typical_fan_pct=68.0,
            ps_vin=1199,
            ps_vout=1391,
            sf_mhz=(456, 476, 496, 516),
            volt_level=1393,
        ),
        _a_2024(
            key="a1366",  # golden case a1366_24032201_mining-doc
            prod="AvalonMiner 1366-130",
            model="1366-130",
            hwtype="MM4v1_X3",
            swtype="MM316",
            firmware="24032201_7d21e4b_b80c513",
            ver="1366-130-24032201_7d21e4b_b80c513",
            core="A3205",
            boards=3,
            chips_per_board=120,
            fan_max_rpm=7400,
            modes=_two_modes(130.0, 3250.0, 3000),  # 130 TH/s at 25 J/TH (Canaan's A13 launch)
            idle_power_w=65.0,
            typical_chip_avg_c=70.0,
            typical_fan_pct=71.0,
            ps_vin=1208,
            ps_vout=1352,
            sf_mhz=(496, 516, 536, 556),
            volt_level=1355,
        ),
        _a_2024(
            key="a1566hu",
            # Hydro A15 (asic-rs: 1566 HU, 3 x 160 chips, no fans). Name, firmware and nameplate are
            # assumed: no published figure, so the A15-194's; the firmware prints no FanN, FanR[0%].
            prod="AvalonMiner 1566HU",
            model="1566HU",
            hwtype="MM4v2_X3",
            swtype="MM319",
            firmware="24102401_25462b2_9ddf522",
            ver="1566HU-24102401_25462b2_9ddf522",
            core="A3197S",
            boards=3,
            chips_per_board=160,
            fans=0,
            fan_max_rpm=0,
            modes=_two_modes(194.0, 3650.0, 3515),
            idle_power_w=60.0,
            typical_chip_avg_c=62.0,
            typical_fan_pct=45.0,  # the water loop's share of cooling, in the physics' fan terms
            ps_vin=1207,
            ps_vout=1191,
            sf_mhz=(300, 318, 339, 360),
            volt_level=1188,
        ),
        _a_2024(
            key="a16",  # golden case a16-282_25091901_mining-doc
            prod="AvalonMiner 16-282",
            model="16-282",
            hwtype="MM5v1_X3",
            swtype="MM321",
            firmware="25091901_e40b7c2_1f96a05",
            ver="16-282-25091901_e40b7c2_1f96a05",
            core="A3209",
            boards=3,
            chips_per_board=160,  # assumed, as the golden case
            fan_max_rpm=8600,
            modes=_two_modes(282.0, 3900.0, 3700),  # Hashrate Index, A16 series review (Oct 2025)
            idle_power_w=70.0,
            typical_chip_avg_c=69.0,
            typical_fan_pct=58.0,
            ps_vin=1206,
            ps_vout=1218,
            sf_mhz=(450, 470, 490, 510),
            volt_level=1220,
        ),
        _a_2024(
            key="a16xp",
            prod="AvalonMiner 16XP-300",  # assumed, in the pattern of 16-282
            model="16XP-300",
            hwtype="MM5v1_X3",
            swtype="MM321",
            firmware="25091901_e40b7c2_1f96a05",
            ver="16XP-300-25091901_e40b7c2_1f96a05",
            core="A3209",
            boards=3,
            chips_per_board=160,
            fan_max_rpm=8600,
            modes=_two_modes(300.0, 3850.0, 3650),  # Hashrate Index, A16 series review (Oct 2025)
            idle_power_w=70.0,
            typical_chip_avg_c=68.0,
            typical_fan_pct=57.0,
            ps_vin=1206,
            ps_vout=1190,
            sf_mhz=(470, 490, 510, 530),
            volt_level=1192,
        ),
        _chain(
            key="av741",  # golden case a741_7411706_auc-chain-2x5: 2 AUCs x 5 modules
            chain=((A741,) * 5, (A741,) * 5),
            fan_max_rpm=7000,
            idle_power_w=150.0,
            typical_chip_avg_c=76.0,
            typical_fan_pct=40.0,
        ),
        _chain(
            key="av841",  # golden case a841-821_8411803_auc-chain-1x3: one AUC, an 841 and two 821
            chain=((A841, A821, A821),),
            fan_max_rpm=5900,
            idle_power_w=60.0,
            typical_chip_avg_c=78.0,
            typical_fan_pct=98.0,
        ),
        _chain(
            key="av921",  # golden case a921_9211809_auc-chain-10x5 (without its re-detected duplicates)
            chain=((A921,) * 5, (A921,) * 5),
            fan_max_rpm=7700,
            idle_power_w=150.0,
            typical_chip_avg_c=80.0,
            typical_fan_pct=63.0,
            hw_error_pct=4.5,
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
    "nano-3": "nano3",
    "mini-3": "mini3",
    "a13": "a1366",
    "a14": "a1466",
    "a15hu": "a1566hu",
    "a16-282": "a16",
    "a16-xp": "a16xp",
    "avchain": "av741",
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

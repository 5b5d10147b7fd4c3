"""What an Avalon's error codes mean: ECHU (per hash board), ECMM (the controller) and PS[0] (the PSU).

Each is a bit field. Every set bit becomes one models.FaultCode with its raw value kept; a bit is
decoded only where its meaning is published for that generation, with the source named. Meanings
differ by generation (2 is "MM CRC failed" on 7xx-9xx, "too hot" on the older Avalon6), and on the
A13 and later nothing is published, so a code there is kept with meaning None and severity unknown.

No code makes a miner `error` on its own: codes a healthy unit shows are common (ECHU[512 512 512]
in Canaan's own A10 manual, 16 and 512 on hashing 741 boards). The reader uses the severities only
when the unit is not hashing, and `error_lines` gives a short line for fault-severity codes only.
docs/avalon.md section 5 has the tables, the sources and where they disagree.
"""

from __future__ import annotations

from models import FaultCode, FaultSeverity

INFO, WARNING, FAULT, UNKNOWN = FaultSeverity.INFO, FaultSeverity.WARNING, FaultSeverity.FAULT, FaultSeverity.UNKNOWN

# Where each table is published (FaultCode.source).
SRC_LOG_DESC = "Canaan 'log Description' for A10-A12 (quoted on bitcointalk, 2021); docs/avalon.md s5"
SRC_GUIDE_7XX = ("Canaan 7xx/8xx troubleshooting guide s2.2 (names; severities as decoded by third-party "
                 "monitors, the guide's WARN where it survives); docs/avalon.md s5")
SRC_A10_PSU = "Canaan Avalon A10 API manual, appendix 1 (PSU error code); docs/avalon.md s5"

# (meaning, severity) per bit value.
Table = dict[int, tuple[str, FaultSeverity]]

# A10, A11, A12: "ECHU 0 or 512 = normal, 513 = abnormal; ECMM 0 = normal, 1 = MM board problem or poor
# contact with a hash board". Nothing else is described.
ECHU_A10_A12: Table = {
    512: ("normal: Canaan calls ECHU 512 normal on A10-A12", INFO),
    1: ("hash board abnormal (Canaan: ECHU 513)", WARNING),
}
ECMM_A10_A12: Table = {
    1: ("controller (MM) board problem or poor contact with a hash board", WARNING),
}

# AvalonMiner 7xx, 8xx (and, as the 9xx captures suggest, 9xx): one table for ECHU and ECMM.
CODES_7XX: Table = {
    1: ("CODE_IDLE: module idle (check the network and the AUC)", WARNING),
    2: ("CODE_MMCRCFAILED: I2C receive CRC mismatch", WARNING),
    4: ("CODE_NOFAN: no fan found", FAULT),
    8: ("CODE_LOCK: module locked (not permitted to run)", WARNING),
    16: ("CODE_APIFIFOOVERFLOW: API FIFO overflow (a notice)", INFO),
    32: ("CODE_RBOVERFLOW: ring buffer overflow", INFO),
    64: ("CODE_TOOHOT: module too hot", FAULT),
    128: ("CODE_HOTBEFORE: module was too hot before", WARNING),
    256: ("CODE_LOOPFAILED: loopback test failed", INFO),
    512: ("CODE_CORETESTFAILED: core test found a bad chip (ignorable while hashrate holds)", INFO),
    1024: ("CODE_INVALIDPMU: invalid PMU", FAULT),
    2048: ("CODE_PGFAILED: power-good failed (PMU)", FAULT),
    4096: ("CODE_NTC_ERR: temperature sensor error", FAULT),
    8192: ("CODE_VOL_ERR: voltage error", FAULT),
    16384: ("CODE_VCORE_ERR: core voltage error", FAULT),
    32768: ("CODE_PMUCRCFAILED: PMU CRC failed", INFO),
    65536: ("CODE_INVALID_PLL_VALUE: invalid PLL value", WARNING),
    131072: ("CODE_HUFAILED: hash unit failed", WARNING),
}

# PS[0]: the PSU's error code (A10 API manual appendix 1; later firmware keeps the slot).
PSU: Table = {
    1: ("Input_UV: PSU input voltage low", WARNING),
    2: ("OT1: PSU over temperature", WARNING),
    4: ("OT2: PSU over temperature", WARNING),
    8: ("OT3: PSU over temperature", WARNING),
    16: ("OC_Pri: PSU input over current", FAULT),
    32: ("UV_out: PSU output voltage low", FAULT),
    64: ("OC_out: PSU output over current", FAULT),
    128: ("CS_error (named by Canaan, not described)", UNKNOWN),
    256: ("OC_IOSA (named by Canaan, not described)", UNKNOWN),
    512: ("OC_IOSB (named by Canaan, not described)", UNKNOWN),
    1024: ("OC_IOSC (named by Canaan, not described)", UNKNOWN),
    2048: ("FAN_error: PSU fan failed", FAULT),
}

A7_A9 = "7xx-9xx"
A10_A12 = "A10-A12"


def generation(ver: str | None) -> str | None:
    """Which code table a device string's `Ver[...]` falls under: 7xx-9xx modules print seven digits
    (`7411706`: model 741, firmware 2017-06), A10-A12 start with 10, 11 or 12; later models (and
    Nano, Mini, Q) have no published table."""
    if not ver:
        return None
    head = ver.split("-", 1)[0]
    if len(head) == 7 and head.isdigit() and head[0] in "789":
        return A7_A9
    if len(head) == 4 and head[:2] in ("10", "11", "12"):
        return A10_A12
    return None


def _tables(gen: str | None) -> tuple[Table | None, Table | None, str | None]:
    if gen == A7_A9:
        return CODES_7XX, CODES_7XX, SRC_GUIDE_7XX
    if gen == A10_A12:
        return ECHU_A10_A12, ECMM_A10_A12, SRC_LOG_DESC
    return None, None, None


def decode(key: str, value: int, table: Table | None, source: str | None, board: int | None = None) -> list[FaultCode]:
    """One FaultCode per set bit of `value` (the raw value itself when no table applies: whether it is
    a bit field is not known either). Bits the table does not name: meaning None, severity unknown."""
    if value <= 0:
        return []
    if table is None:
        return [FaultCode(key=key, code=value, board=board)]
    codes = []
    bit = 1
    while bit <= value:
        if value & bit:
            known = table.get(bit)
            if known is None:
                codes.append(FaultCode(key=key, code=bit, board=board))
            else:
                codes.append(FaultCode(key=key, code=bit, board=board, meaning=known[0], severity=known[1],
                                       source=source))
        bit <<= 1
    return codes


def unit_codes(echu: list[int], ecmm: list[int], psu: int | None, gen: str | None,
               first_board: int = 0, ecmm_key: str = "ECMM") -> list[FaultCode]:
    """The codes of one device string: ECHU per board (numbered from `first_board`: a chain numbers its
    modules' boards in one sequence), ECMM, PS[0]."""
    echu_table, ecmm_table, source = _tables(gen)
    codes: list[FaultCode] = []
    for i, value in enumerate(echu):
        if value:
            codes += decode("ECHU", value, echu_table, source, board=first_board + i)
    for value in ecmm:
        if value:
            codes += decode(ecmm_key, value, ecmm_table, source)
    if psu:
        codes += decode("PS[0]", psu, PSU, SRC_A10_PSU)
    return codes


def error_lines(codes: list[FaultCode]) -> list[str]:
    """A short line for each fault-severity code (what `MinerSample.errors` shows a person)."""
    return [f"{'board ' + str(c.board) + ': ' if c.board is not None else ''}{c.key} {c.code}: {c.meaning}"
            for c in codes if c.severity is FAULT]

"""What every model of the vocabulary shares: strictness, UTC timestamps, small files read safely, text a
terminal may show."""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import types
import typing
from typing import Any
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    # Unknown keys are an error, so a typo in a config or an MQTT payload names the field
    # instead of being dropped silently.
    model_config = ConfigDict(extra="forbid")


class Settings(Strict):
    """A part of the configuration: strict, and every float finite (`.inf` or `.nan` in YAML is an
    error naming the field, not an overflow deep inside the service); a switch (YAML's true, yes, on)
    is no number (pydantic would read `interval_s: true` as 1 s)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_switch_for_a_number(cls, data: Any) -> Any:
        if isinstance(data, dict):
            numbers = number_fields(cls)
            for name, value in data.items():
                if (value is True or value is False) and name in numbers:
                    raise ValueError(f"{name}: a number, not {str(value).lower()} (YAML reads true/false, yes/no, "
                                     "on/off as switches)")
        return data


@functools.cache
def number_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold an int or a float (or None)."""
    out = set()
    for name, info in model.model_fields.items():
        union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)  # (not a list of numbers)
        kinds = set(typing.get_args(info.annotation)) if union else {info.annotation}
        kinds = {typing.get_args(k)[0] if typing.get_origin(k) is typing.Annotated else k for k in kinds}
        if kinds - {type(None)} and kinds - {type(None)} <= {int, float}:
            out.add(name)
    return frozenset(out)


def printable(text: str) -> str:
    """Text from a miner or a server with each character a terminal would act on a space: the C0 controls (an
    ANSI escape, a newline that would split a row or a tab-separated record), DEL, the C1 controls (0x9b is a
    one-byte CSI) and the other non-printing code points (a bidi override). Same length, so a cut stays a cut."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


SECRET_FILE_MAX_BYTES = 64 * 1024  # a token, a password: a few hundred bytes at most


class FileTooLarge(ValueError):
    pass


def read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes; FileTooLarge past `limit` (read no further: it may be huge, or endless like
    /dev/zero). OSError as open/read raise it, and for a named pipe or socket (strerror says which)."""
    # Not blocking in open: a named pipe with no writer would hang the open, deaf to Ctrl-C.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise OSError(errno.EINVAL, "a named pipe or socket, not a file", str(path))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{path}: larger than {limit:,} bytes")
    return data


def http_url(url: str, *, base: bool) -> str:
    """`url` if a client can use it: http(s), a host, a port in range; a `base` URL (paths are appended to
    it) has no ?query or #fragment either. ValueError otherwise, not quoting the URL (it may hold
    credentials): `http://`, port 99999 or `http://[::1` used to pass and be retried for ever."""
    try:
        parts = urlsplit(url)
        port = parts.port  # (raises for a port out of range or not a number)
    except ValueError as e:  # a broken IPv6 literal too
        raise ValueError(f"not a usable URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http(s) URL")
    if not parts.hostname:
        raise ValueError("an http(s) URL with no host")
    if port == 0:
        raise ValueError("port 0 is no port to connect to")
    if base and ("?" in url or "#" in url):
        raise ValueError("the API's base URL, without a ?query or #fragment (paths are appended to it; tokens "
                         "go in a token setting or file)")
    return url


# One rule for every secret (tokens, passwords), from a file or the environment: surrounding ASCII whitespace
# (a trailing newline, CRLF) is stripped; what is left must not be empty and must hold no ASCII control
# character: a second line (a comment, a rotated token appended) or a tab is a mistake, and in an HTTP header
# the client refuses it with an error quoting the header, secret and all. deploy/secrets/init-secrets.sh
# applies the same rule, byte for byte, to the MQTT password it hashes for mosquitto.
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what `[[:space:]]` matches in the C locale
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an HTTP header carries as it is


def checked_secret(text: str, where: str) -> str:
    """`text` stripped of surrounding whitespace; ValueError naming `where`, never the value, when nothing is
    left or a control character (a line break, a tab) is still inside. Spaces inside are kept (a passphrase)."""
    secret = text.strip(_ASCII_SPACE)
    if not secret:  # (a secret not yet written: every request would go out unauthenticated)
        raise ValueError(f"{where}: empty")
    if _CONTROL.search(secret):
        raise ValueError(f"{where}: more than one line, or a tab or other control character inside (a comment or "
                         "a second value?): a secret is one line")
    return secret


def checked_token(text: str, where: str) -> str:
    """`checked_secret` for a token, which goes into an HTTP header: one word of visible ASCII, no space inside."""
    token = checked_secret(text, where)
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{where}: a space or a character other than visible ASCII inside: a token is one word")
    return token


def read_secret_file(path: Path, field: str, *, token: bool = False) -> str:
    """A password, or with `token` a token, from a file (docker secrets), by the rule above; ValueError names
    `field` and the file, never the contents."""
    try:
        text = read_capped(path, SECRET_FILE_MAX_BYTES).decode("utf-8")
    except FileTooLarge:
        raise ValueError(f"{field} {path}: larger than {SECRET_FILE_MAX_BYTES // 1024} KiB, not a secret file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{field} {path}: not UTF-8 text") from None
    except OSError as e:
        raise ValueError(f"{field} {path}: {e.strerror}") from None
    return (checked_token if token else checked_secret)(text, f"{field} {path}")


class Reading(Strict):
    """A record of what was read at one instant: never changed once made (frozen), every number finite.

    A cycle holds every miner's reading (10,000 at a large site), and pydantic gives each instance
    its own set of the field names it was given: ~2.3 KB for a MinerSample, 0.7 KB for each board
    and pool, two thirds of a sample's memory (measured). Readings are frozen, so instances given
    the same fields can share one set: `model_copy(update=...)` copies the set before adding to it.
    """

    # No inf or NaN: a reading is a number a sink can store and the cost engine can add up.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def model_post_init(self, context: object, /) -> None:
        given = self.__pydantic_fields_set__
        key = frozenset(given)
        shared = _FIELD_SETS.get(key)
        if shared is None:
            if len(_FIELD_SETS) >= _MAX_FIELD_SETS:  # combinations are few; never grow without bound
                return
            shared = _FIELD_SETS[key] = given
        object.__setattr__(self, "__pydantic_fields_set__", shared)


_FIELD_SETS: dict[frozenset[str], set[str]] = {}
_MAX_FIELD_SETS = 4096


# Every time this tool handles is of the mining era; one near datetime's limits (year 9999 in a schedule)
# would overflow later arithmetic (an end plus an hour) far from the input that caused it.
EARLIEST_YEAR, LATEST_YEAR = 1970, 2199


# A number as people and spreadsheets write one. Python's float() also takes "0_05" (5.0: a typo read as
# $5/kWh), "nan", "inf" and other scripts' digits; none of those is a reading or a price anyone meant.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_decimal(text: str) -> float:
    """`text` (surrounding spaces aside) as a plain decimal number, or ValueError: the one parser for numbers
    a user types or a pool sends as text."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text[:30]!r} is not a decimal number")
    return float(text)


def as_utc(ts: datetime | None) -> datetime | None:
    """A timestamp in UTC; one without a time zone is refused rather than guessed, and one outside
    1970-2199 as out of range."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC expected), e.g. 2025-06-01T12:00:00Z")
    try:
        utc = ts.astimezone(timezone.utc)
    except OverflowError:  # (a pydantic validator turns ValueError into a field's error, not this)
        utc = None
    if utc is None or not EARLIEST_YEAR <= utc.year <= LATEST_YEAR:
        raise ValueError(f"timestamp out of range: years {EARLIEST_YEAR} to {LATEST_YEAR} (UTC)")
    return utc


# A live value (price, meter reading) may be dated up to this long after the instant it is used at:
# cycle timestamps are whole seconds, floored, and readings arrive while a cycle runs (ingest never
# dates one after its arrival). Further ahead it is not fresh, so a value dated in the future can
# never stay fresh for good.
AHEAD_TOLERANCE_S = 60.0


def is_fresh(as_of: datetime, at: datetime, max_age_s: float) -> bool:
    """Whether a value dated `as_of` may be used at `at`: not older than max_age_s, not from the future."""
    return -AHEAD_TOLERANCE_S <= (at - as_of).total_seconds() <= max_age_s

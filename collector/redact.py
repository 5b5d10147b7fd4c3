"""Credentials never leave in a message: `http://user:secret@host` is shown as `http://***@host`.

Users put credentials in URLs (a reverse proxy in front of InfluxDB, a paid price API); every
message that names a URL passes it through `redact_url`, and whole messages that may quote one
(a library's exception text, a validation error) through `redact`. `RedactingFilter` applies
`redact` to every log record as the last line of defence. A client quoting a server's answer also
hides the secrets it sent there (`hide_secrets`): a server may echo a token back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

HIDDEN = "***"

# scheme://userinfo@ — userinfo runs to the last '@' before whitespace, a quote, '?' or '#', so a
# password holding an unescaped '@' or '/' is hidden whole (a rare '@' in a path hides the host too:
# better than showing a password).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^\s?#'\"<>]*@")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it (scheme://...) replaced by ***. A bare
    `user:pass@host` is not recognisable in free text: pass a value known to be a URL or host
    through `redact_url`."""
    if "@" not in text:  # the common case costs one scan
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{HIDDEN}@", text)


def redact_url(url: str) -> str:
    """One URL (or host[:port], with or without a scheme) without its userinfo."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "?#":
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    authority = rest[:end]
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{HIDDEN}@{host}{rest[end:]}"


def hide_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each (non-empty) secret replaced by ***. Apply it before cutting
    a quote short, so no secret is left half shown."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):  # a longer one may hold a shorter
        text = text.replace(secret, HIDDEN)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `redact` (installed on the CLI's log handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

"""Credentials never leave in a message: `http://user:secret@host` is shown as `http://***@host`.

Users put credentials in URLs (a reverse proxy in front of InfluxDB, a paid price API); every
message that names a URL passes it through `redact_url`, and whole messages that may quote one
(a library's exception text, a validation error) through `redact`. `RedactingFilter` applies
`redact` to every log record as the last line of defence. A credential sent in a header (a pool's
token, Grafana's) is not recognisable in free text: the code that sent it hides it in whatever it quotes
of the answer (`hide_secrets`, `mask`): a server or proxy may echo it back.
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


SECRET_START = 4  # a secret's first characters that mark an echo of it, cut short or whole


def mask(text: str, secret: str | None) -> str:
    """`text` with `secret` (a credential this process sent: a pool's token) replaced by *** wherever it
    appears, and so is any start of it of SECRET_START characters or more: an excerpt or a quoted value cut
    short must not show most of it either. A server or proxy that echoes what it was sent (an error page)
    so puts none of it in a message. A secret shorter than SECRET_START could not be told from the text
    around it (no real token is that short): it is left as it is."""
    if not secret or len(secret) < SECRET_START:
        return text
    start = secret[:SECRET_START]
    found = text.find(start)
    if found == -1:  # the common case costs one scan
        return text
    parts, i = [], 0
    while found != -1:
        end = found + len(start)
        while end < len(text) and end - found < len(secret) and text[end] == secret[end - found]:
            end += 1
        parts += [text[i:found], HIDDEN]
        i = end
        found = text.find(start, i)
    parts.append(text[i:])
    return "".join(parts)


def hide_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret masked (`mask`), the longest first (a longer one may hold a shorter). Apply it
    before cutting a quote short."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = mask(text, secret)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and traceback with `redact` (installed on the CLI's log handler):
    an exception's text quotes the URL it failed on."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if traceback := traceback_text(record):
            record.exc_text = redact(traceback)
        return True


def traceback_text(record: logging.LogRecord) -> str | None:
    """The record's traceback as its handler will print it, made now (and kept on the record) so that a
    filter can rewrite it; None when it has none."""
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    return record.exc_text or None

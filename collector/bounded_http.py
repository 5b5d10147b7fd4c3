"""One HTTP exchange with an outside server, bounded as DESIGN.md asks of outside input: the whole of it
(connecting, sending, every byte of the answer) within one deadline, and the answer read up to a cap,
never held whole past it.

httpx's own timeouts bound each socket operation: a server dripping a byte a second never trips them.
The deadline here is asyncio's, around everything; the caller gives httpx the same deadline for each
read (connecting may have a shorter bound of its own, reported as httpx's ConnectTimeout). The answer
is asked for uncompressed and counted as it arrives, so the cap is what is held in memory (a compressed
answer would need a second cap on its decoding). Redirects are not followed here (httpx's default,
follow_redirects=False): the caller sees the 3xx and decides.

`grafana push` and the InfluxDB queries use it; the pool client has the same limits in its own exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx


class AnswerTooLarge(Exception):
    """The answer passed the cap; the message says by how much is known (declared or read)."""


class NoWholeAnswer(Exception):
    """The deadline passed before the whole answer arrived (or before connecting)."""


class NotSent(Exception):
    """The HTTP client refused to send the request: a header value it cannot carry. (Its own message quotes
    the header, a token in it: this one does not.)"""


async def exchange(client: httpx.AsyncClient, method: str, url: str, *, deadline_s: float, max_bytes: int,
                   headers: Mapping[str, str] | None = None, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    """Send one request and read its whole answer: (the response, for its status and headers; the body).

    Raises NoWholeAnswer past `deadline_s`, AnswerTooLarge past `max_bytes`, NotSent for a header the
    client refuses, httpx.HTTPError for the rest
    (no connection, a broken answer). `client`'s read timeout should be `deadline_s`. kwargs go to httpx
    (params, json)."""
    headers = {**(headers or {}), "Accept-Encoding": "identity"}  # the cap counts the bytes held
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream(method, url, headers=headers, **kwargs) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise AnswerTooLarge(f"an answer of {int(declared):,} bytes, over the {max_bytes:,}-byte cap")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise AnswerTooLarge(f"an answer over the {max_bytes:,}-byte cap")
                return response, bytes(body)
    except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
        raise NoWholeAnswer(f"no whole answer within {deadline_s:g} s") from None
    except (httpx.LocalProtocolError, ValueError):  # h11's or http.client's message quotes the header
        raise NotSent("the request could not be sent (a header value the HTTP client refused)") from None

"""Read back from InfluxDB with InfluxQL over HTTP `/query` (1.x, and 2.x through its DBRP mapping:
bucket = database), with the read token (`influx.read_token`, INFLUX_READ_TOKEN; else the write token).

The answer is outside input: its body is capped (MAX_BODY_BYTES), the whole request bounded by
`influx.timeout_s` (a server dripping its answer costs that and no more), it must be InfluxDB's JSON shape, and
an error InfluxDB reports is raised with its text; the caller checks each value it uses.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from collector import bounded_http
from collector.redact import hide_secrets, redact
from models import InfluxConfig

MAX_BODY_BYTES = 64 * 1024 * 1024


class InfluxQueryError(Exception):
    """The query could not be answered; the message says where and why."""


async def query(config: InfluxConfig, text: str) -> list[dict[str, Any]]:
    """Every row of every series the query returns, as {column: value} with the series' tags in it."""
    headers = {"Accept": "application/json"}
    token = config.resolved_read_token()
    if token:
        headers["Authorization"] = f"Token {token}"
    where = redact(f"{config.url}/query")
    status, body = await get_answer(where, f"{config.url}/query", {"db": config.bucket, "q": text, "epoch": "s"},
                                    headers, config.timeout_s)
    secrets = tokens(config)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InfluxQueryError(f"{where}: HTTP {status}, not JSON: {quoted(body, secrets, 120)!r}") from None
    if status != 200 or not isinstance(data, dict):
        message = data.get("error") or data.get("message") if isinstance(data, dict) else None
        raise InfluxQueryError(f"{where}: HTTP {status}: {quoted(str(message), secrets, 300)} (check "
                               "influx.read_token and the bucket's database mapping)")
    return rows(data, where, secrets)


def quoted(answer: str | bytes, secrets: list[str], most: int) -> str:
    """A piece of an answer for a message: at most `most` characters, the tokens in it hidden (a server or
    proxy may echo the request's headers), before it is cut."""
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
    return hide_secrets(text, secrets)[:most]


def tokens(config: InfluxConfig) -> list[str]:
    """The tokens this process may send InfluxDB: hidden in whatever is quoted of its answers (a server or
    proxy may echo the request's headers in an error page)."""
    found = []
    for resolve in (config.resolved_read_token, config.resolved_token):
        try:
            token = resolve()
        except (OSError, ValueError):  # one it cannot read is one it does not send
            continue
        if token:
            found.append(token)
    return found


async def get_answer(where: str, url: str, params: dict[str, str], headers: dict[str, str], deadline_s: float,
                     connect_s: float | None = None) -> tuple[int, bytes]:
    """GET one answer of at most MAX_BODY_BYTES, the whole of it within `deadline_s` (connecting within
    `connect_s`, default the same): (status, body)."""
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(deadline_s, connect=connect_s or deadline_s)) as client:
            answer, body = await bounded_http.exchange(client, "GET", url, params=params, headers=headers,
                                                       deadline_s=deadline_s, max_bytes=MAX_BODY_BYTES)
    except bounded_http.AnswerTooLarge:
        raise InfluxQueryError(f"{where}: the answer is over {MAX_BODY_BYTES // 2**20} MiB") from None
    except (bounded_http.NoWholeAnswer, bounded_http.NotSent) as e:
        raise InfluxQueryError(f"{where}: {e}") from None
    except httpx.HTTPError as e:
        raise InfluxQueryError(f"{where} unreachable: {type(e).__name__}: {redact(str(e))[:200]}") from None
    return answer.status_code, body


def rows(data: Any, where: str, secrets: list[str]) -> list[dict[str, Any]]:
    """The rows of InfluxDB's JSON answer `data` (from the server at `where`); any other shape is refused, an
    error it reports quoted with `secrets` hidden."""
    if not isinstance(data, dict) or not isinstance(data.get("results") or [], list):
        raise InfluxQueryError(f"{where}: not InfluxDB's answer")
    out = []
    for result in data.get("results") or []:
        if not isinstance(result, dict):
            raise InfluxQueryError(f"{where}: not InfluxDB's answer")
        if "error" in result:
            raise InfluxQueryError(f"{where}: {quoted(str(result['error']), secrets, 300)}")
        series_list = result.get("series") or []
        if not isinstance(series_list, list):
            raise InfluxQueryError(f"{where}: not InfluxDB's answer")
        for series in series_list:
            if not isinstance(series, dict):
                raise InfluxQueryError(f"{where}: not InfluxDB's answer")
            columns, tags, values_list = series.get("columns"), series.get("tags") or {}, series.get("values") or []
            if not isinstance(columns, list) or not isinstance(tags, dict) or not isinstance(values_list, list):
                raise InfluxQueryError(f"{where}: not InfluxDB's answer")
            for values in values_list:
                if isinstance(values, list) and len(values) == len(columns):
                    out.append({**{str(k): v for k, v in tags.items()}, **dict(zip(map(str, columns), values))})
    return out

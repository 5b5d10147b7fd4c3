"""Grafana's expansion of values in provisioning files, as Grafana 11 does it, and the request its
InfluxQL data source sends: `from grafana_provisioning import interpolate, influxql_request`.

Grafana (pkg/services/provisioning/values/values.go, interpolateValue; pkg/setting/expanders.go):
a string value is split on "$$" (a literal "$"); in each part, first every `${NAME}` / `$__env{NAME}`
becomes the environment variable, then every `$__file{PATH}` becomes that file's content with leading
and trailing white space removed (a file that cannot be read fails the provisioning), then Go's
os.ExpandEnv replaces `$NAME` and `${NAME}` (unset: empty); the parts are joined with "$". Keys are
never expanded; numbers and booleans are left alone.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

# pkg/setting/expanders.go: `regexp.MustCompile(`\$(|__\w+){([^}]+)}`)`
_EXPANDER = re.compile(r"\$(|__\w+)\{([^}]+)\}")
_SHELL_SPECIAL = set("*#$@!?-0123456789")


def _apply(value: str, kind: str, expand: Callable[[str], str]) -> str:
    for match in _EXPANDER.finditer(value):
        prefix, argument = match.group(1), match.group(2)
        if prefix == "__" + kind or (prefix == "" and kind == "env"):
            value = value.replace(match.group(0), expand(argument), 1)
    return value


def go_expand_env(text: str, env: Mapping[str, str]) -> str:
    """Go's os.ExpandEnv (os.Expand with os.Getenv), including its handling of bad syntax."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        rest = text[i + 1:]
        if rest[0] == "{":
            if len(rest) > 2 and rest[1] in _SHELL_SPECIAL and rest[2] == "}":
                name, width = rest[1], 3
            else:
                close = rest.find("}")
                if close == -1:
                    name, width = "", 1  # bad syntax: eat "${"
                elif close == 1:
                    name, width = "", 2  # bad syntax: eat "${}"
                else:
                    name, width = rest[1:close], close + 1
        elif rest[0] in _SHELL_SPECIAL:
            name, width = rest[0], 1
        else:
            width = 0
            while width < len(rest) and (rest[width].isascii() and (rest[width].isalnum() or rest[width] == "_")):
                width += 1
            name = rest[:width]
        if name:
            out.append(env.get(name, ""))
        elif width == 0:
            out.append("$")  # "$" not followed by a name stays
        i += 1 + width
    return "".join(out)


def interpolate(value: Any, env: Mapping[str, str], read_file: Callable[[str], str]) -> Any:
    """A provisioning value after Grafana's expansion; maps and lists are walked, other types kept."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, read_file) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, read_file) for item in value]
    if not isinstance(value, str):
        return value
    parts = []
    for part in value.split("$$"):
        part = _apply(part, "env", lambda name: env.get(name, ""))
        part = _apply(part, "file", lambda path: read_file(path).strip())
        parts.append(go_expand_env(part, env))
    return "$".join(parts)


def influxql_request(datasource: Mapping[str, Any], query: str) -> tuple[str, dict[str, str], bytes]:
    """(url, headers, body) of the request Grafana's InfluxQL data source sends for `query` in POST mode:
    `POST {url}/query?db=…&epoch=ms`, the query form-encoded in the body, custom headers from
    jsonData.httpHeaderNameN / secureJsonData.httpHeaderValueN."""
    json_data = datasource.get("jsonData") or {}
    secure = datasource.get("secureJsonData") or {}
    assert json_data.get("httpMode") == "POST", "the data source is provisioned for POST"
    params = {"db": json_data["dbName"], "epoch": "ms"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for key, name in json_data.items():
        if m := re.fullmatch(r"httpHeaderName(\d+)", key):
            headers[name] = secure.get(f"httpHeaderValue{m.group(1)}", "")
    url = datasource["url"].rstrip("/") + "/query?" + urllib.parse.urlencode(params)
    return url, headers, urllib.parse.urlencode({"q": query}).encode()

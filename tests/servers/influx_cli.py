#!/usr/bin/env python3
"""A test-side stand-in for the two `influx` CLI (2.x) commands deploy/influxdb/hashfleet-tokens.sh runs.

The influxdb image's init hook mints tokens with the influx CLI; Debian has no 2.x CLI, so the stack
rehearsal puts this script first on PATH as `influx`, in front of the v2 shim (influx_v2_shim.py), which
mints and then enforces the tokens. It speaks the same v2 API the real CLI does and prints what the real
one prints (influx-cli v2.8: clients/auth/auth.go printAuth, clients/cli.go PrintJSON/PrintTable):

    influx bucket list --org O --name N --hide-headers     ID<TAB>NAME, one line
    influx auth create --org O (--write-bucket ID | --read-bucket ID)... --description D --json

Like the real CLI it takes the server from INFLUX_HOST and the token from INFLUX_TOKEN (the real one also
reads its config file, where the image's setup stores the operator token). Anything else exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def _call(method: str, path: str, body: dict | None = None) -> dict:
    host = os.environ["INFLUX_HOST"].rstrip("/")
    request = urllib.request.Request(host + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {os.environ.get('INFLUX_TOKEN', '')}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        sys.exit(f"Error: {e.code} {e.read().decode(errors='replace')}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="influx")
    sub = parser.add_subparsers(dest="group", required=True)
    bucket = sub.add_parser("bucket").add_subparsers(dest="verb", required=True).add_parser("list")
    bucket.add_argument("--org", required=True)
    bucket.add_argument("--name", "-n", required=True)
    bucket.add_argument("--hide-headers", action="store_true")
    create = sub.add_parser("auth").add_subparsers(dest="verb", required=True).add_parser("create")
    create.add_argument("--org", required=True)
    create.add_argument("--write-bucket", action="append", default=[])
    create.add_argument("--read-bucket", action="append", default=[])
    create.add_argument("--description", "-d", default="")
    create.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.group == "bucket":
        found = _call("GET", "/api/v2/buckets?" + urllib.parse.urlencode({"name": args.name}))["buckets"]
        if not args.hide_headers:
            print("ID\tName")
        for b in found:
            print(f"{b['id']}\t{b['name']}")
        return 0

    permissions = [{"action": action, "resource": {"type": "buckets", "id": bucket_id}}
                   for action, ids in (("read", args.read_bucket), ("write", args.write_bucket)) for bucket_id in ids]
    made = _call("POST", "/api/v2/authorizations", {"orgID": args.org, "description": args.description,
                                                    "permissions": permissions})
    shown = {"id": made["id"], "description": made["description"], "token": made["token"],
             "status": made["status"], "userName": "admin", "userID": "",
             "permissions": [f"{p['action']}:orgs/{args.org}/buckets/{p['resource']['id']}" for p in permissions]}
    if not args.json:
        print(f"{shown['id']}\t{shown['description']}\t{shown['token']}")
        return 0
    print(json.dumps(shown, indent="\t"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Grafana dashboards and alert rules as code (grafana-foundation-sdk, pinned to the compose Grafana's version).

`python -m dashboards.build` regenerates dashboards/json/*.json and the alert-rule provisioning file;
Grafana provisions both. Imports `models` only, for names.
"""

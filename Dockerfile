# One image for the collector and the simulators: `hashfleet collect` / `hashfleet simulate`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY collector ./collector
COPY simulators ./simulators
COPY dashboards ./dashboards
RUN pip install . \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent hashfleet \
    && mkdir -p /var/lib/hashfleet/spool && chown -R 10001:10001 /var/lib/hashfleet

# The durable spool (and the cost totals kept across restarts); compose mounts a named volume here,
# which takes this directory's owner on first use.
ENV HASHFLEET_SPOOL_DIR=/var/lib/hashfleet/spool

# The compose healthcheck of the collector (standard library only).
COPY deploy/collector/healthcheck.py /usr/local/lib/hashfleet/healthcheck.py
# `hashfleet grafana push` uploads these when run from the image.
ENV HASHFLEET_DASHBOARDS_DIR=/app/dashboards/json

# Numeric, so the secrets volume's file owners (deploy/secrets/init-secrets.sh) match.
USER 10001:10001
ENTRYPOINT ["hashfleet"]
CMD ["--help"]

# One image for the collector and the simulators: `hashfleet collect` / `hashfleet simulate`.
# Built by the compose `collector` service only (the `simulators` service reuses the tag).
FROM python:3.11.16-slim-bookworm

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
# chmod: files checked out under a strict umask (0600) must still be readable by the image's user.
RUN pip install . \
    && chmod -R a+rX /app \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent hashfleet \
    && mkdir -p /var/lib/hashfleet/spool && chown -R 10001:10001 /var/lib/hashfleet

# The durable spool (and the cost totals kept across restarts); compose mounts a named volume here,
# which takes this directory's owner on first use.
ENV HASHFLEET_SPOOL_DIR=/var/lib/hashfleet/spool

# The compose healthcheck of the collector (it reads the schema from the installed models package).
COPY --chmod=0644 deploy/collector/healthcheck.py /usr/local/lib/hashfleet/healthcheck.py
# The compose stack's collector config, baked in (no bind mount: host umask and SELinux labels do not
# matter). After editing it: docker compose up -d --build collector.
COPY --chmod=0644 deploy/collector/hashfleet.yaml /etc/hashfleet/hashfleet.yaml
# `hashfleet grafana push` uploads these when run from the image.
ENV HASHFLEET_DASHBOARDS_DIR=/app/dashboards/json

# Numeric, so the secrets volume's file owners (deploy/secrets/init-secrets.sh) match.
USER 10001:10001
ENTRYPOINT ["hashfleet"]
CMD ["--help"]

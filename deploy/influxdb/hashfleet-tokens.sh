#!/bin/sh
# Mint hashfleet's scoped InfluxDB tokens and hand each one to the only service that reads it, so no
# running service holds the all-access operator token.
#
#   influx_write_token   write to the bucket, nothing else    collector            (uid 10001)
#   influx_health_token  read the bucket, nothing else        collector healthcheck (uid 10001)
#   influx_read_token    read the bucket, nothing else        grafana              (uid 472)
#
# An init hook of the influxdb image: on first setup its entrypoint runs this as root, with INFLUX_HOST
# at the setup instance, the operator token in the influx CLI's config, and DOCKER_INFLUXDB_INIT_ORG_ID
# and _BUCKET_ID set. A stack set up before this hook existed runs it once by hand:
#   docker compose exec influxdb /docker-entrypoint-initdb.d/hashfleet-tokens.sh
# A token file already present is kept. To replace one: `influx auth delete --id ID` (IDs from
# `influx auth list`), delete its file, run this again. Token values are never printed.
set -eu

DIR="${SECRETS_DIR:-/run/hashfleet-secrets}"
ORG="${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is not set}"
BUCKET="${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is not set}"
# The users of the images that read the files (hashfleet: Dockerfile; grafana: its image).
COLLECTOR_UID=10001
GRAFANA_UID=472

BUCKET_ID="${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}"
if [ -z "$BUCKET_ID" ]; then
    BUCKET_ID=$(influx bucket list --org "$ORG" --name "$BUCKET" --hide-headers | cut -f 1)
fi
if [ -z "$BUCKET_ID" ]; then
    echo "hashfleet-tokens: no bucket $BUCKET in org $ORG (DOCKER_INFLUXDB_INIT_BUCKET/_ORG)" >&2
    exit 1
fi
umask 077

# mint NAME UID SCOPE DESCRIPTION: create a token with SCOPE (--write-bucket or --read-bucket) on the
# bucket, unless NAME exists, and give the file to UID alone.
mint() {
    file="$DIR/$1"
    if [ -s "$file" ]; then
        echo "hashfleet-tokens: $1 kept"
        return 0
    fi
    token=$(influx auth create --org "$ORG" "$3" "$BUCKET_ID" --description "$4" --json |
            sed -n 's/^[[:space:]]*"token":[[:space:]]*"\([^"]*\)".*/\1/p')
    if [ -z "$token" ]; then
        echo "hashfleet-tokens: influx auth create returned no token for $1" >&2
        exit 1
    fi
    printf '%s\n' "$token" > "$file.new"
    chown "$2:$2" "$file.new"
    chmod 0400 "$file.new"
    mv "$file.new" "$file"
    echo "hashfleet-tokens: $1 created: $4"
}

mint influx_write_token "$COLLECTOR_UID" --write-bucket "hashfleet collector: write $BUCKET"
mint influx_health_token "$COLLECTOR_UID" --read-bucket "hashfleet collector healthcheck: read $BUCKET"
mint influx_read_token "$GRAFANA_UID" --read-bucket "hashfleet grafana: read $BUCKET"

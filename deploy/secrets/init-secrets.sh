#!/bin/sh
# Create the stack's secrets in the `secrets` volume on first start; keep them on later starts.
#
# For each secret: a value set in the environment (.env) wins; else the file already in the
# volume is kept; else a random one is generated. Values are never printed. Runs as root in the
# eclipse-mosquitto image (for mosquitto_passwd) and gives each file to the user that reads it.
#
#   influx_token            InfluxDB operator token: influxdb (setup), grafana, collector
#   influx_admin_password   InfluxDB admin user's password: influxdb (setup)
#   grafana_admin_password  Grafana admin password: grafana (first start)
#   mqtt_password           MQTT password of MQTT_USERNAME: collector, site devices
#   mosquitto_passwd        Mosquitto's hashed password file, rebuilt from mqtt_password every start
set -eu

DIR="${SECRETS_DIR:-/run/hashfleet-secrets}"
MQTT_USERNAME="${MQTT_USERNAME:-hashfleet}"
umask 077
mkdir -p "$DIR"
chmod 0755 "$DIR"

random_secret() {
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# own FILE UID MODE: hand a file to the (numeric) user of the container that reads it.
own() {
    chown "$2:$2" "$1" 2>/dev/null || echo "init-secrets: cannot chown $1 to $2 (not root?); leaving owner" >&2
    chmod "$3" "$1"
}

# put NAME VALUE: write VALUE (if not empty), else keep the file, else generate one.
put() {
    name="$1" value="$2" file="$DIR/$1"
    if [ -n "$value" ]; then
        printf '%s\n' "$value" > "$file.new" && mv "$file.new" "$file"
        echo "init-secrets: $name set from the environment"
    elif [ -s "$file" ]; then
        echo "init-secrets: $name kept"
    else
        random_secret > "$file.new" && printf '\n' >> "$file.new" && mv "$file.new" "$file"
        echo "init-secrets: $name generated"
    fi
}

if [ -n "${INFLUX_ADMIN_PASSWORD:-}" ] && [ "${#INFLUX_ADMIN_PASSWORD}" -lt 8 ]; then
    echo "init-secrets: INFLUX_ADMIN_PASSWORD in .env is shorter than 8 characters; InfluxDB would refuse it" >&2
    exit 1
fi

put influx_token "${INFLUX_TOKEN:-}"
put influx_admin_password "${INFLUX_ADMIN_PASSWORD:-}"
put grafana_admin_password "${GRAFANA_ADMIN_PASSWORD:-}"
put mqtt_password "${MQTT_PASSWORD:-}"

mosquitto_passwd -c -b "$DIR/mosquitto_passwd.new" "$MQTT_USERNAME" "$(cat "$DIR/mqtt_password")"
mv "$DIR/mosquitto_passwd.new" "$DIR/mosquitto_passwd"

# Users: influxdb 1000 (influxdb image), grafana 472, mosquitto 1883, hashfleet 10001 (Dockerfile).
own "$DIR/influx_token" 0 0444
own "$DIR/influx_admin_password" 1000 0400
own "$DIR/grafana_admin_password" 472 0400
own "$DIR/mqtt_password" 10001 0400
own "$DIR/mosquitto_passwd" 1883 0600
echo "init-secrets: done; read one with: docker compose run --rm secrets cat /run/hashfleet-secrets/NAME"

#!/bin/sh
# The stack's secrets, in the `secrets` volume. Baked into the `secrets` image (deploy/mosquitto/Dockerfile,
# for mosquitto_passwd) as /usr/local/bin/hashfleet-secrets, its entrypoint:
#
#   hashfleet-secrets [init]     create missing secrets, keep the others (what `docker compose up` runs)
#   hashfleet-secrets show NAME  print one, e.g. docker compose run --rm secrets show grafana_admin_password
#
# init: for each secret a value set in the environment (.env) wins; else the file already in the volume is
# kept; else a random one is generated. Values are never printed; a value with whitespace at either end or a
# line break inside is refused (one_line below). Runs as root and gives each file to the one user that reads
# it, mode 0400 (users: influxdb 1000 in its image, grafana 472 in its image, mosquitto 1883 (compose
# `user:`), hashfleet 10001 (Dockerfile)):
#
#   influx_token            InfluxDB operator token (all access)   influxdb: first setup only  1000
#   influx_admin_password   InfluxDB admin user's password         influxdb: first setup only  1000
#   grafana_admin_password  Grafana admin password                 grafana: first start        472
#   mqtt_password           MQTT password of MQTT_USERNAME         collector                   10001
#   mqtt_ha_password        MQTT password of user homeassistant    (the operator, for HA)      root
#   mqtt_device_password    MQTT password of user devices          (the operator, for devices) root
#   mosquitto_passwd        Mosquitto's hashed password file       mosquitto (rebuilt every start) 1883
#
# Three MQTT users, each with its own password, so the broker's ACL (deploy/mosquitto/site.acl) can give
# each only what it needs: the collector (MQTT_USERNAME, default hashfleet), Home Assistant and the
# price/demand-response feeds (homeassistant), the site's publishing devices (devices). A user name the
# ACL does not name would have no rights at all (the collector's kill switch silently dead), so it is
# refused here, before the stack starts.
#
# The collector and Grafana never see the operator token: the influxdb image's init hook
# (deploy/influxdb/hashfleet-tokens.sh) mints their bucket-scoped tokens into the same volume.
set -eu

DIR="${SECRETS_DIR:-/run/hashfleet-secrets}"
MQTT_USERNAME="${MQTT_USERNAME:-hashfleet}"
MQTT_HA_USERNAME=homeassistant
MQTT_DEVICE_USERNAME=devices
ACL="${MOSQUITTO_ACL:-/mosquitto/config/site.acl}"  # the broker's, baked into this same image
umask 077
export LC_ALL=C  # character classes are ASCII bytes, as in the collector's rule below

usage() {
    echo "usage: hashfleet-secrets [init] | show NAME   (NAME: one of the files in $DIR)" >&2
    exit 2
}

# show NAME: print one secret (the operator asked for it, e.g. the Grafana password for the first login).
show() {
    case "$1" in
        ""|*[!a-z_]*) echo "hashfleet-secrets: no secret named '$1'" >&2; usage ;;
    esac
    if [ ! -s "$DIR/$1" ]; then
        echo "hashfleet-secrets: $DIR/$1 does not exist yet: run 'docker compose up -d' first" >&2
        ls "$DIR" >&2 2>/dev/null || true
        exit 1
    fi
    cat "$DIR/$1"
}

# one_line WHAT VALUE: refuse a value with whitespace at either end or a control character (a line break, a tab).
# The collector's rule for every secret (models/base.py checked_secret): it strips the ends and refuses a control
# character inside. Refused here rather than stripped: the value is hashed into mosquitto's password file and
# typed into the site's own devices as written, so a stripped copy would differ from what the operator set
# (and stripping only one side left the collector refused by mosquitto for ever).
one_line() {
    case "$2" in
        [[:space:]]*|*[[:space:]])
            echo "hashfleet-secrets: $1 begins or ends with whitespace (a space, a tab, a line break): remove it" >&2
            exit 1 ;;
        *[[:cntrl:]]*)
            echo "hashfleet-secrets: $1 holds a line break, a tab or another control character: a secret is one line" >&2
            exit 1 ;;
    esac
}

# named_in_acl USER: refuse a user the site listener's ACL has no rules for.
named_in_acl() {
    if ! grep -qxF "user $1" "$ACL"; then
        echo "hashfleet-secrets: MQTT user '$1' has no rules in $ACL: it could neither publish nor read." >&2
        echo "  Use the user the ACL names (MQTT_USERNAME=hashfleet), or edit deploy/mosquitto/site.acl and rebuild" >&2
        echo "  (docs/deployment.md, \"MQTT users\")." >&2
        exit 1
    fi
}

# add_mqtt_user FILE USER SECRET: add USER with the password in SECRET to mosquitto's password FILE.
# The password goes through a pipe from the shell's builtin printf, never on a command line
# (`mosquitto_passwd -b` would show it to every `ps` on the host).
add_mqtt_user() {
    password=$(cat "$3")  # (without the file's final line break)
    one_line "$3" "$password"  # a file kept from before this check, or put there by hand
    create=""
    [ -e "$1" ] || create="-c"
    printf '%s\n%s\n' "$password" "$password" | mosquitto_passwd $create "$1" "$2" >/dev/null
}

random_secret() {
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# own FILE UID: hand a file to the (numeric) user of the container that reads it, readable by it alone.
own() {
    chown "$2:$2" "$1" 2>/dev/null || echo "hashfleet-secrets: cannot chown $1 to $2 (not root?); leaving owner" >&2
    chmod 0400 "$1"
}

# put NAME VALUE: write VALUE (if not empty), else keep the file, else generate one.
put() {
    name="$1" value="$2" file="$DIR/$1"
    if [ -n "$value" ]; then
        printf '%s\n' "$value" > "$file.new" && mv "$file.new" "$file"
        echo "hashfleet-secrets: $name set from the environment"
    elif [ -s "$file" ]; then
        echo "hashfleet-secrets: $name kept"
    else
        random_secret > "$file.new" && printf '\n' >> "$file.new" && mv "$file.new" "$file"
        echo "hashfleet-secrets: $name generated"
    fi
}

init() {
    if [ -n "${INFLUX_ADMIN_PASSWORD:-}" ] && [ "${#INFLUX_ADMIN_PASSWORD}" -lt 8 ]; then
        echo "hashfleet-secrets: INFLUX_ADMIN_PASSWORD in .env is shorter than 8 characters; InfluxDB would refuse it" >&2
        exit 1
    fi
    one_line "INFLUX_TOKEN in .env" "${INFLUX_TOKEN:-}"
    one_line "INFLUX_ADMIN_PASSWORD in .env" "${INFLUX_ADMIN_PASSWORD:-}"
    one_line "GRAFANA_ADMIN_PASSWORD in .env" "${GRAFANA_ADMIN_PASSWORD:-}"
    one_line "MQTT_PASSWORD in .env" "${MQTT_PASSWORD:-}"
    one_line "MQTT_HA_PASSWORD in .env" "${MQTT_HA_PASSWORD:-}"
    one_line "MQTT_DEVICE_PASSWORD in .env" "${MQTT_DEVICE_PASSWORD:-}"
    one_line "MQTT_USERNAME in .env" "$MQTT_USERNAME"
    case "$MQTT_USERNAME" in
        "$MQTT_HA_USERNAME"|"$MQTT_DEVICE_USERNAME")
            echo "hashfleet-secrets: MQTT_USERNAME '$MQTT_USERNAME' is another user's name: the collector needs its own" >&2
            exit 1 ;;
    esac
    named_in_acl "$MQTT_USERNAME"
    named_in_acl "$MQTT_HA_USERNAME"
    named_in_acl "$MQTT_DEVICE_USERNAME"
    mkdir -p "$DIR"
    chmod 0755 "$DIR"  # every service's user must reach its own file

    put influx_token "${INFLUX_TOKEN:-}"
    put influx_admin_password "${INFLUX_ADMIN_PASSWORD:-}"
    put grafana_admin_password "${GRAFANA_ADMIN_PASSWORD:-}"
    put mqtt_password "${MQTT_PASSWORD:-}"
    put mqtt_ha_password "${MQTT_HA_PASSWORD:-}"
    put mqtt_device_password "${MQTT_DEVICE_PASSWORD:-}"

    rm -f "$DIR/mosquitto_passwd.new"
    add_mqtt_user "$DIR/mosquitto_passwd.new" "$MQTT_USERNAME" "$DIR/mqtt_password"
    add_mqtt_user "$DIR/mosquitto_passwd.new" "$MQTT_HA_USERNAME" "$DIR/mqtt_ha_password"
    add_mqtt_user "$DIR/mosquitto_passwd.new" "$MQTT_DEVICE_USERNAME" "$DIR/mqtt_device_password"
    mv "$DIR/mosquitto_passwd.new" "$DIR/mosquitto_passwd"

    own "$DIR/influx_token" 1000
    own "$DIR/influx_admin_password" 1000
    own "$DIR/grafana_admin_password" 472
    own "$DIR/mqtt_password" 10001
    own "$DIR/mqtt_ha_password" 0  # no service reads them: `show` prints them for the operator
    own "$DIR/mqtt_device_password" 0
    own "$DIR/mosquitto_passwd" 1883
    echo "hashfleet-secrets: done; read one with: docker compose run --rm secrets show NAME"
}

case "${1:-init}" in
    init) init ;;
    show) [ $# -eq 2 ] || usage; show "$2" ;;
    *) usage ;;
esac

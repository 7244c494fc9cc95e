#!/bin/sh
# container-entrypoint.sh: the container's start (deploy/Containerfile). The configuration lives
# in the state volume (IOTGW_CONFIG_DIR, default /var/lib/iotgw/config) so it survives the
# container: on the first start of an empty volume it is seeded from the image's installed
# configuration (IOTGW_SEED_DIR, default /etc/iotgw); a file already there is never overwritten.
# IOTGW_CONFIG names another gateway.json (a mounted one: compose.yaml). Then --check-config, exec
# iotgw (PID 1's signals go straight to it: SIGTERM stops it cleanly, SIGHUP reloads).
# Arguments starting with '-' are passed to iotgw; any other command is run instead (a shell).
set -eu

STATE_DIR=${IOTGW_STATE_DIR:-/var/lib/iotgw}
CONFIG_DIR=${IOTGW_CONFIG_DIR:-$STATE_DIR/config}
SEED_DIR=${IOTGW_SEED_DIR:-/etc/iotgw}
IOTGW=${IOTGW_BIN:-/usr/bin/iotgw}
CONFIG=${IOTGW_CONFIG:-$CONFIG_DIR/gateway.json}

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ ! -d "$SEED_DIR" ]; then
    echo "container-entrypoint: no seed configuration in $SEED_DIR" >&2
    exit 2
fi
mkdir -p "$CONFIG_DIR"
for f in "$SEED_DIR"/* ; do
    name=$(basename "$f")
    if [ ! -e "$CONFIG_DIR/$name" ]; then
        echo "container-entrypoint: seeding $CONFIG_DIR/$name from $SEED_DIR" >&2
        cp -R "$f" "$CONFIG_DIR/$name"
    fi
done

if ! "$IOTGW" --check-config -c "$CONFIG"; then
    echo "container-entrypoint: $CONFIG has errors (above); not starting" >&2
    exit 2
fi
exec "$IOTGW" -c "$CONFIG" "$@"

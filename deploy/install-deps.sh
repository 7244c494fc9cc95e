#!/usr/bin/env bash
# install-deps.sh: installs every Debian 12 package iotgw needs to build, run, test, fuzz, bench and
# package (dpkg-dev and file for cpack -G DEB, systemd for systemd-analyze verify of the unit;
# python3-matplotlib for the soak test's RSS plot, tests/bench/soak.py).
# Idempotent: installs only what is missing. Runs apt-get as root (or through sudo).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libjansson-dev libsqlite3-dev sqlite3
  mosquitto mosquitto-clients
  libcoap3-dev libcoap3-bin libssl-dev openssl
  libprotobuf-c-dev protobuf-c-compiler
  libh2o-dev
  clang libclang-rt-14-dev clang-format
  python3 python3-paho-mqtt python3-psutil python3-matplotlib
  procps netcat-openbsd xxd curl haproxy
  dpkg-dev file systemd
  chromium chromium-driver python3-selenium
)

# The shipped config's MQTT-over-TLS listener (8883) needs a certificate: a throwaway one is made
# if missing (after the packages, which bring openssl).
example_certs() { "$(dirname "$0")/make-example-certs.sh"; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  example_certs
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
example_certs

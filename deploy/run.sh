#!/usr/bin/env bash
# run.sh: installs what is missing, builds iotgw and starts it in the foreground on the default
# config (config/gateway.json: MQTT on :1883, MQTT over TLS on :8883 with a throwaway certificate
# from deploy/make-example-certs.sh, admin on 127.0.0.1:9100, SQLite in data/iotgw.db).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_BUILD_TESTS=OFF -DGW_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target iotgw
exec ./build/iotgw -c "${IOTGW_CONFIG:-config/gateway.json}"

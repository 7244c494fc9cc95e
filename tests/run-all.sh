#!/usr/bin/env bash
# run-all.sh: installs what is missing, builds and runs the whole suite: format check, the normal
# build's ctest (unit, fuzz-corpus replay, integration), a Release build with -Werror and its unit
# tests, the same suite under AddressSanitizer + UndefinedBehaviorSanitizer, the unit tests and the
# cross-thread integration tests under ThreadSanitizer, a bounded libFuzzer run of every fuzz
# target, and the benchmarks in smoke mode. Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc)
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

stage() { printf '\n==== %s ====\n' "$*"; }

stage "install dependencies"
bash deploy/install-deps.sh

stage "format check (clang-format 14)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

stage "build (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"

stage "tests"
ctest --test-dir build --output-on-failure -j"$JOBS" -L 'unit|fuzz'
# the integration tests run in parallel: each has its own temp dirs and free ports, waits on
# barriers (a message, a metric, a log line) rather than sleeps, and states its timing and memory
# bounds on the gateway's own process and counters, so the other tests' load does not move them
ctest --test-dir build --output-on-failure -j"$JOBS" -L integration

# Release is -O3: its flow analysis warns where RelWithDebInfo's -O2 does not (the benchmarks too)
stage "build (Release, -Werror) and its unit tests"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DGW_WERROR=ON -DGW_BUILD_BENCH=ON >/dev/null
cmake --build build-release -j"$JOBS"
ctest --test-dir build-release --output-on-failure -j"$JOBS" -L unit

stage "build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE='address;undefined' -DGW_WERROR=ON \
      -DGW_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$JOBS"

stage "tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
IOTGW_SANITIZED=1 ctest --test-dir build-asan --output-on-failure -j"$JOBS" -L 'unit|fuzz'
IOTGW_SANITIZED=1 ctest --test-dir build-asan --output-on-failure -j"$JOBS" -L integration
unset ASAN_OPTIONS UBSAN_OPTIONS

# The integration tests whose gateway runs the cross-thread paths: completions through the loops'
# inboxes (10, 16, 23, 24, 34, 43), state notes and replay (25), persistent sessions and take-over
# (26), store failure and /health (27), the north thread and its outbox (60, 61, 63, 66, 67), commands
# crossing north -> loops -> store (50, 51, 73), CoAP sessions moving between loops (75), a reload
# switching every loop to a new configuration generation (84), the device API closing sessions on
# the loops and generations released by the store writer (86), commands from the API's main loop
# to the loops and back (88), TLS contexts replaced by a reload while loops hold them (90) and the
# handshake budget every loop draws from (92).
TSAN_TESTS='^integ\.(10|16|23|24|25|26|27|34|43|50|51|60|61|63|66|67|73|75|84|86|88|90|92|98|99)-'
stage "build (ThreadSanitizer)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_SANITIZE=thread -DGW_WERROR=ON \
      -DGW_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j"$JOBS"

stage "tests under ThreadSanitizer (unit, cross-thread integration)"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp"
IOTGW_SANITIZED=1 ctest --test-dir build-tsan --output-on-failure -j"$JOBS" -L unit
IOTGW_SANITIZED=1 ctest --test-dir build-tsan --output-on-failure -L integration -R "$TSAN_TESTS"
unset TSAN_OPTIONS

stage "libFuzzer (clang), ${FUZZ_SECONDS}s per target"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DGW_FUZZ=ON \
      -DGW_BUILD_TESTS=ON -DGW_BUILD_BENCH=OFF >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
cmake --build build-fuzz -j"$JOBS" --target $targets
for t in $targets; do
  corpus="tests/fuzz/corpus/${t#fuzz_}"
  work=$(mktemp -d)
  echo "fuzz: $t (${FUZZ_SECONDS}s)"
  ./build-fuzz/"$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=0 "$work" "$corpus" 2>"$work.log" || { tail -50 "$work.log"; exit 1; }
  rm -rf "$work" "$work.log"
done

stage "benchmark smoke"
IOTGW_BIN="$ROOT/build/iotgw" MQTT_LOAD_BIN="$ROOT/build/mqtt_load" /usr/bin/python3 tests/bench/bench_mqtt.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" FRAME_LOAD_BIN="$ROOT/build/frame_load" \
    SINK_SERVER_BIN="$ROOT/build/sink_server" /usr/bin/python3 tests/bench/bench_frames.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" MQTT_LOAD_BIN="$ROOT/build/mqtt_load" \
    NORTH_SUB_BIN="$ROOT/build/north_sub" /usr/bin/python3 tests/bench/bench_north.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" COAP_LOAD_BIN="$ROOT/build/coap_load" /usr/bin/python3 tests/bench/bench_coap.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" HISTORY_FILL_BIN="$ROOT/build/history_fill" \
    /usr/bin/python3 tests/bench/bench_history.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" MQTT_LOAD_BIN="$ROOT/build/mqtt_load" \
    /usr/bin/python3 tests/bench/bench_reload.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" TLS_LOAD_BIN="$ROOT/build/tls_load" \
    /usr/bin/python3 tests/bench/bench_tls.py --smoke
IOTGW_BIN="$ROOT/build/iotgw" /usr/bin/python3 tests/bench/bench_registry.py --smoke
"$ROOT/build/sqlite_floor" --dir "${TMPDIR:-/tmp}" --smoke
IOTGW_BIN="$ROOT/build/iotgw" MQTT_LOAD_BIN="$ROOT/build/mqtt_load" \
    FRAME_LOAD_BIN="$ROOT/build/frame_load" COAP_LOAD_BIN="$ROOT/build/coap_load" \
    /usr/bin/python3 tests/bench/soak.py --smoke

stage "done: every stage passed"

#!/usr/bin/env bash
# The performance figures of docs/performance.md: builds the release binary, starts a test-bed API server of its
# own (apart from the one the tests share, in $TESTBED_DIR) and runs the chosen scenarios of `benches/perf.rs`
# against the in-repo fake gateway.
#
#   scripts/bench.sh                 all scenarios with quick sizes (a few minutes)
#   scripts/bench.sh p2              one scenario (p1..p6), with the sizes of docs/performance.md unless set below
#   BENCH_FULL=1 scripts/bench.sh    all scenarios with the sizes of docs/performance.md (tens of minutes)
#
# Sizes and settings: ROUTERO_BENCH_KEYS, ROUTERO_BENCH_TEAMS, ROUTERO_BENCH_RATE (gateway requests/s),
# ROUTERO_BENCH_SECRETS (P4's unrelated Secrets), ROUTERO_BENCH_RESYNC_SECS (P3), ROUTERO_BENCH_P1_KEYS,
# ROUTERO_BENCH_LATENCY_MS (P1), ROUTERO_BENCH_P5_RUNS, ROUTERO_BENCH_P6_PROBES, ROUTERO_BENCH_TIMEOUT_SECS. KEEP_TESTBED=1 leaves the API
# server running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTBED_DIR=${TESTBED_DIR:-/var/tmp/routero-bench-testbed}
source scripts/testbed.sh

cargo build --release --locked
cargo bench --locked --bench perf --no-run
# `cargo bench` rebuilds the binary with the dev-dependencies' features into the same path: keep the shipped one.
mkdir -p "$CARGO_TARGET_DIR/bench-bin"
cargo build --release --locked
cp "$CARGO_TARGET_DIR/release/routero-operator" "$CARGO_TARGET_DIR/bench-bin/routero-operator"
export ROUTERO_BENCH_BIN=$CARGO_TARGET_DIR/bench-bin/routero-operator

cleanup() { [ -n "${KEEP_TESTBED:-}" ] || "$TESTBED/envtest.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

# One scenario: a fresh, empty API server for each, so one scenario's objects never load the next.
run() {
  "$TESTBED/envtest.sh" stop >/dev/null 2>&1 || true
  envtest_up
  cargo bench --locked --bench perf -- "$@"
}

if [ $# -gt 0 ]; then
  for s in "$@"; do run "$s"; done
elif [ -n "${BENCH_FULL:-}" ]; then
  for s in p1 p2 p3 p4 p5 p6; do run "$s"; done
else
  # Quick sizes: the same code paths, a fraction of the objects.
  run p1
  ROUTERO_BENCH_KEYS=${ROUTERO_BENCH_KEYS:-500} ROUTERO_BENCH_RATE=${ROUTERO_BENCH_RATE:-200} run p2
  ROUTERO_BENCH_KEYS=${ROUTERO_BENCH_KEYS:-200} ROUTERO_BENCH_RESYNC_SECS=${ROUTERO_BENCH_RESYNC_SECS:-10} run p3
  ROUTERO_BENCH_KEYS=${ROUTERO_BENCH_KEYS:-1000} ROUTERO_BENCH_SECRETS=${ROUTERO_BENCH_SECRETS:-5000} run p4
  run p5
  ROUTERO_BENCH_KEYS=${ROUTERO_BENCH_KEYS:-1000} ROUTERO_BENCH_P6_PROBES=${ROUTERO_BENCH_P6_PROBES:-3} run p6
fi

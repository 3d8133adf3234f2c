#!/usr/bin/env bash
# The whole test suite: unit tests, and the integration tests against the real API server (envtest), the real
# LiteLLM gateways (1.108.7 on :4000 and 1.98.0 on :4001, the newest and oldest tested releases) and the in-repo fake
# gateway. Installs and starts the test bed when it is missing; the gateways install while the tests build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed.sh

litellm_start_bg
envtest_up
scripts/tools.sh
cargo build --tests --locked
litellm_wait
# Integration tests mostly wait on the API server and the gateways, so more threads than cores pay off.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --test-threads "${TEST_THREADS:-6}" "$@"
else
  cargo test --locked --no-fail-fast "$@" -- --test-threads "${TEST_THREADS:-6}"
fi

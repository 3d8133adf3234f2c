#!/usr/bin/env bash
# Sourced by the other scripts: locate the shared test bed and start what is missing.
# After `testbed_up`, KUBECONFIG points at the envtest API server and the real LiteLLM gateway answers on :4000.
TESTBED=${TESTBED:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/testbed}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/routero-target}
export ROUTERO_TEST_LITELLM_URL=${ROUTERO_TEST_LITELLM_URL:-http://127.0.0.1:4000}
export ROUTERO_TEST_LITELLM_KEY=${ROUTERO_TEST_LITELLM_KEY:-sk-admin-test}

# Starts LiteLLM in the background (its first install takes minutes) so a build can run meanwhile.
litellm_start_bg() {
  LITELLM_LOG=${LITELLM_LOG:-/tmp/routero-litellm-start.log}
  # Serialised: CI warms the gateway up while it lints, then the test script asks again.
  flock /var/tmp/routero-litellm-start.lock "$TESTBED/litellm/start.sh" >>"$LITELLM_LOG" 2>&1 &
  LITELLM_PID=$!
}

litellm_wait() {
  if ! wait "$LITELLM_PID"; then
    echo "the LiteLLM test gateway did not start:" >&2; tail -30 "$LITELLM_LOG" >&2; return 1
  fi
  curl -sf -o /dev/null "$ROUTERO_TEST_LITELLM_URL/health/liveliness"
}

envtest_up() {
  eval "$("$TESTBED/envtest.sh" start)"
  export KUBECONFIG
}

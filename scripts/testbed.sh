#!/usr/bin/env bash
# Sourced by the other scripts: locate the shared test bed and start what is missing.
# After `envtest_up`, KUBECONFIG points at the envtest API server; after `litellm_start_bg` and `litellm_wait`, the real
# LiteLLM gateways answer: 1.108.7 on :4000 (ROUTERO_TEST_LITELLM_URL) and 1.98.0 on :4001 (ROUTERO_TEST_LITELLM_OLD_URL).
TESTBED=${TESTBED:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/testbed}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/routero-target}
export ROUTERO_TEST_LITELLM_URL=${ROUTERO_TEST_LITELLM_URL:-http://127.0.0.1:4000}
export ROUTERO_TEST_LITELLM_KEY=${ROUTERO_TEST_LITELLM_KEY:-sk-admin-test}

# The real gateways the suite runs against, newest first: LiteLLM release, state directory, Postgres port, port.
# The first is the newest tested release; the second the oldest (a hosted Routero may lag upstream by months).
LITELLM_GATEWAYS=(
  "1.108.7 /var/tmp/routero-litellm 5433 4000"
  "1.98.0 /var/tmp/routero-litellm-98 5434 4001"
)
export ROUTERO_TEST_LITELLM_OLD_URL=${ROUTERO_TEST_LITELLM_OLD_URL:-http://127.0.0.1:4001}

# Starts every gateway of LITELLM_GATEWAYS in the background (a first install takes minutes: 1.108.7 about 2.5, 1.98.0
# about 4) so a build can run meanwhile. They install side by side, except Postgres: start.sh installs that with
# apt, which one process at a time may run, so the later gateways wait until the first has it (or has given up).
litellm_start_bg() {
  LITELLM_PIDS=(); LITELLM_LOGS=(); LITELLM_URLS=(); LITELLM_BASES=()
  local gateway version base pgport lport first_pid=""
  for gateway in "${LITELLM_GATEWAYS[@]}"; do
    read -r version base pgport lport <<<"$gateway"
    LITELLM_LOGS+=("$(mktemp /tmp/routero-litellm-start.XXXXXX.log)")
    LITELLM_URLS+=("http://127.0.0.1:$lport"); LITELLM_BASES+=("$base")
    LITELLM_VERSION=$version BASE=$base PGPORT=$pgport LPORT=$lport \
      litellm_start_one "${first_pid}" >"${LITELLM_LOGS[-1]}" 2>&1 &
    LITELLM_PIDS+=($!)
    first_pid=${first_pid:-$!}
  done
}

# One gateway, as LITELLM_VERSION/BASE/PGPORT/LPORT say; $1 is the pid of the start that installs Postgres, if
# another. Serialised per state directory: CI warms the gateways up while it lints, then the test script asks again.
# -o: the servers start.sh leaves running must not inherit the lock, or the next start waits for ever.
# A failed start is recovered and retried once: on a restored machine without the Postgres package, start.sh
# installs it first and only then fails on the old data directory, which litellm_recover can start by then.
litellm_start_one() {
  export LITELLM_VERSION BASE PGPORT LPORT
  if [ -n "$1" ]; then
    while [ ! -x /usr/lib/postgresql/15/bin/initdb ] && kill -0 "$1" 2>/dev/null; do sleep 2; done
  fi
  flock -o "/var/tmp/$(basename "$BASE")-start.lock" bash -c "$(declare -f litellm_recover drop_stale_pid)
    litellm_recover; \"\$1\" || { echo '[routero] gateway start failed; recovering and retrying once'; litellm_recover; \"\$1\"; }" \
    _ "$TESTBED/litellm/start.sh"
}

# A machine restored from a snapshot keeps the gateway's state in /var/tmp but none of its processes. start.sh
# cannot restart that Postgres on its own: its `install -d` resets the data directory to mode 0755, which Postgres
# refuses (it wants 0700), and a pid file naming a pid now used by another process reads as "running". So, when
# the database exists but does not answer, drop stale pid files and start Postgres here with start.sh's own
# command line; start.sh then finds it running and carries on. A fresh machine (no data directory) is untouched.
litellm_recover() {
  local base=${BASE:-/var/tmp/routero-litellm} pgbin=/usr/lib/postgresql/15/bin port=${PGPORT:-5433} pid
  curl -sf -o /dev/null "http://127.0.0.1:${LPORT:-4000}/health/liveliness" || drop_stale_pid "$base/litellm.pid" litellm
  [ -f "$base/pgdata/PG_VERSION" ] && [ -x "$pgbin/pg_ctl" ] || return 0
  psql -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1 && return 0
  drop_stale_pid "$base/pgdata/postmaster.pid" postgres
  drop_stale_pid "$base/pgsock/.s.PGSQL.$port.lock" postgres
  chmod 0700 "$base/pgdata"
  echo "[routero] restarting the gateway's Postgres on 127.0.0.1:$port"
  su postgres -c "$pgbin/pg_ctl -D $base/pgdata -l $base/pglog/pg.log -o \"-c listen_addresses=127.0.0.1 -p $port -k $base/pgsock\" -w start" >/dev/null
}

# Removes a pid file (pid on its first line) unless that pid runs a command containing $2: after a restore the pid
# may belong to an unrelated process, which a start script would take for its server, or kill when it "stops" it.
drop_stale_pid() {
  [ -f "$1" ] || return 0
  local pid; pid=$(head -1 "$1")
  if ! cat "/proc/$pid/cmdline" 2>/dev/null | tr '\0' ' ' | grep -q -- "$2"; then
    echo "[routero] removing stale $1 ($pid is not $2)" >&2; rm -f "$1"
  fi
}

litellm_wait() {
  local i failed=0
  for i in "${!LITELLM_PIDS[@]}"; do
    if ! wait "${LITELLM_PIDS[$i]}"; then
      echo "the LiteLLM test gateway at ${LITELLM_URLS[$i]} did not start:" >&2; tail -30 "${LITELLM_LOGS[$i]}" >&2
      echo "Postgres log (${LITELLM_BASES[$i]}/pglog/pg.log):" >&2
      tail -5 "${LITELLM_BASES[$i]}/pglog/pg.log" >&2 2>/dev/null; failed=1; continue
    fi
    curl -sf -o /dev/null "${LITELLM_URLS[$i]}/health/liveliness" && rm -f "${LITELLM_LOGS[$i]}"
  done
  return $failed
}

envtest_up() {
  local dir=${TESTBED_DIR:-/var/tmp/routero-testbed}
  drop_stale_pid "$dir/etcd.pid" etcd
  drop_stale_pid "$dir/apiserver.pid" apiserver
  eval "$("$TESTBED/envtest.sh" start)"
  export KUBECONFIG
}

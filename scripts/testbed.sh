#!/usr/bin/env bash
# Sourced by the other scripts: locate the shared test bed and start what is missing.
# After `testbed_up`, KUBECONFIG points at the envtest API server and the real LiteLLM gateway answers on :4000.
TESTBED=${TESTBED:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/testbed}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/routero-target}
export ROUTERO_TEST_LITELLM_URL=${ROUTERO_TEST_LITELLM_URL:-http://127.0.0.1:4000}
export ROUTERO_TEST_LITELLM_KEY=${ROUTERO_TEST_LITELLM_KEY:-sk-admin-test}

# Starts LiteLLM in the background (its first install takes minutes) so a build can run meanwhile.
litellm_start_bg() {
  LITELLM_LOG=$(mktemp /tmp/routero-litellm-start.XXXXXX.log)
  # Serialised: CI warms the gateway up while it lints, then the test script asks again.
  # -o: the servers start.sh leaves running must not inherit the lock, or the next start waits for ever.
  # A failed start is recovered and retried once: on a restored machine without the Postgres package, start.sh
  # installs it first and only then fails on the old data directory, which litellm_recover can start by then.
  flock -o /var/tmp/routero-litellm-start.lock bash -c "$(declare -f litellm_recover drop_stale_pid)
    litellm_recover; \"\$1\" || { echo '[routero] gateway start failed; recovering and retrying once'; litellm_recover; \"\$1\"; }" \
    _ "$TESTBED/litellm/start.sh" >"$LITELLM_LOG" 2>&1 &
  LITELLM_PID=$!
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
  if ! wait "$LITELLM_PID"; then
    echo "the LiteLLM test gateway did not start:" >&2; tail -30 "$LITELLM_LOG" >&2
    echo "Postgres log (${BASE:-/var/tmp/routero-litellm}/pglog/pg.log):" >&2
    tail -5 "${BASE:-/var/tmp/routero-litellm}/pglog/pg.log" >&2 2>/dev/null; return 1
  fi
  curl -sf -o /dev/null "$ROUTERO_TEST_LITELLM_URL/health/liveliness" && rm -f "$LITELLM_LOG"
}

envtest_up() {
  local dir=${TESTBED_DIR:-/var/tmp/routero-testbed}
  drop_stale_pid "$dir/etcd.pid" etcd
  drop_stale_pid "$dir/apiserver.pid" apiserver
  eval "$("$TESTBED/envtest.sh" start)"
  export KUBECONFIG
}

#!/usr/bin/env bash
# scripts/e2e.sh — end-to-end test: official OpenAI Python SDK -> Switchyard ->
# a real llama.cpp llama-server (SmolLM2-135M, model alias `smollm2`).
#
#   scripts/e2e.sh
#
# 1. a Python venv with the `openai` SDK at $E2E_CACHE/venv (reused if present)
# 2. llama-server via ../shared/e2e/llamacpp.sh (first run builds it, ~15 min;
#    cached in $E2E_CACHE) — stopped at the end only if this script started it
# 3. `cargo build --release` (a no-op when up to date), then
#    `switchyard serve --listen 127.0.0.1:$E2E_GATEWAY_PORT --data-dir <tmp>`
# 4. scripts/e2e_client.py: management API + SDK calls + usage/billing checks
# 5. SIGTERM switchyard: it must exit 0 and log that it flushed usage
#
# Prints PASS/FAIL per check and finally exactly "N passed, M failed";
# exits non-zero on any failure.
#
# Environment (all optional):
#   E2E_CACHE           cache dir (venv, llama-server, model)  default /tmp/e2e-cache
#   E2E_SHARED_DIR      dir with llamacpp.sh/stop.sh           default $REPO/../shared/e2e
#   E2E_LLAMA_PORT      llama-server port                      default 18090
#   E2E_GATEWAY_PORT    switchyard port                        default 18091
#   E2E_OPENAI_VERSION  openai SDK version for the venv        default 3.54.0
#   SWITCHYARD_BIN      use this binary; skip cargo build
#   E2E_BUILD_TIMEOUT   seconds for cargo build                default 3600
#   E2E_TEST_TIMEOUT    seconds for the Python client          default 90
#   E2E_KEEP            1: keep the temp dir (data dir + logs) even on success
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
E2E_CACHE="${E2E_CACHE:-/tmp/e2e-cache}"
export E2E_CACHE
SHARED="${E2E_SHARED_DIR:-$REPO/../shared/e2e}"
LLAMA_PORT="${E2E_LLAMA_PORT:-18090}"
GW_PORT="${E2E_GATEWAY_PORT:-18091}"
OPENAI_VERSION="${E2E_OPENAI_VERSION:-3.54.0}"
BUILD_TIMEOUT="${E2E_BUILD_TIMEOUT:-3600}"
TEST_TIMEOUT="${E2E_TEST_TIMEOUT:-90}"
VENV="$E2E_CACHE/venv"

PASSED=0
FAILED=0
LLAMA_PID=""
LLAMA_STARTED=0
SY_PID=""
CHILD_PID=""
TMP=""

log() { printf 'e2e: %s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }
summary() { printf '%d passed, %d failed\n' "$PASSED" "$FAILED"; }
# A setup step failed: nothing else can run. The EXIT trap cleans up.
abort() { fail "$*"; summary; exit 1; }

is_alive() { # pid: running and not a zombie
    kill -0 "$1" 2>/dev/null && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

wait_exit() { # pid seconds -> 0 if it exited in time
    local end=$((SECONDS + $2))
    while is_alive "$1"; do
        (( SECONDS < end )) || return 1
        sleep 0.1
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

# run_bounded SECS CMD...: run CMD under timeout(1) in the background and wait
# for it, so a SIGINT/SIGTERM to this script runs the trap at once (a
# foreground child would delay it); the trap then kills the child's group.
# Sets RUN_RC (124 = timed out).
run_bounded() {
    local secs="$1"; shift
    timeout -k 5 "$secs" "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" && RUN_RC=0 || RUN_RC=$?
    CHILD_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$CHILD_PID" ]] && is_alive "$CHILD_PID"; then
        kill -TERM "$CHILD_PID" 2>/dev/null   # timeout(1) passes it on to its process group
        wait_exit "$CHILD_PID" 10 || kill -KILL "$CHILD_PID" 2>/dev/null
    fi
    if [[ -n "$SY_PID" ]] && is_alive "$SY_PID"; then
        log "stopping switchyard pid $SY_PID"
        kill -TERM "$SY_PID" 2>/dev/null
        wait_exit "$SY_PID" 10 || kill -KILL "$SY_PID" 2>/dev/null
        wait "$SY_PID" 2>/dev/null
    fi
    if (( LLAMA_STARTED )) && [[ -n "$LLAMA_PID" ]]; then
        "$SHARED/stop.sh" "$LLAMA_PID" >&2
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if (( rc != 0 || FAILED > 0 )) || [[ "${E2E_KEEP:-0}" == "1" ]]; then
            log "kept $TMP (switchyard log: $TMP/switchyard.log)"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted by a signal"; summary; exit 130' INT TERM

command -v curl >/dev/null || abort "curl is required"
command -v python3 >/dev/null || abort "python3 is required"
[[ -x "$SHARED/llamacpp.sh" && -x "$SHARED/stop.sh" ]] || abort "no llamacpp.sh/stop.sh in $SHARED (set E2E_SHARED_DIR)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-e2e.XXXXXX")"

# ------------------------------------------------------------------ venv ---
venv_ok() {
    [[ -x "$VENV/bin/python" ]] && timeout 60 "$VENV/bin/python" - "$OPENAI_VERSION" <<'EOF' 2>/dev/null
import sys, openai
sys.exit(0 if openai.__version__ == sys.argv[1] else 1)
EOF
}
if ! venv_ok; then
    log "creating venv $VENV with openai==$OPENAI_VERSION"
    (
        mkdir -p "$E2E_CACHE" && exec 7>"$E2E_CACHE/.venv.lock" || exit 1
        flock -w 600 7 || exit 1
        venv_ok && exit 0
        [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" >&2 || exit 1
        timeout 300 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "openai==$OPENAI_VERSION" >&2
    ) || abort "could not create the venv with openai==$OPENAI_VERSION at $VENV"
    venv_ok || abort "venv $VENV has no openai==$OPENAI_VERSION"
fi
pass "venv with openai==$OPENAI_VERSION ($VENV)"

# ----------------------------------------------------------- llama-server ---
# llamacpp.sh reprints the PID of a server it already runs on this port with the
# same settings; in that case the server is not ours to stop.
PIDFILE="$E2E_CACHE/run/llama-server-$LLAMA_PORT.pid"
PREV_PID="$(cat "$PIDFILE" 2>/dev/null || true)"
[[ -n "$PREV_PID" ]] && ! is_alive "$PREV_PID" && PREV_PID=""
log "starting llama-server on 127.0.0.1:$LLAMA_PORT (the first run builds it: ~15 min)"
LLAMA_PID="$("$SHARED/llamacpp.sh" "$LLAMA_PORT")" || abort "llamacpp.sh $LLAMA_PORT failed"
[[ "$LLAMA_PID" =~ ^[0-9]+$ ]] || abort "llamacpp.sh printed no PID: $LLAMA_PID"
if [[ "$LLAMA_PID" != "$PREV_PID" ]]; then LLAMA_STARTED=1; else log "reusing llama-server pid $LLAMA_PID"; fi
LLAMA_URL="http://127.0.0.1:$LLAMA_PORT/v1"
[[ "$(http_code "http://127.0.0.1:$LLAMA_PORT/health")" == "200" ]] || abort "llama-server /health not 200"
pass "llama-server ready at $LLAMA_URL (pid $LLAMA_PID)"

# ------------------------------------------------------------ switchyard ---
if [[ -n "${SWITCHYARD_BIN:-}" ]]; then
    BIN="$SWITCHYARD_BIN"
else
    command -v cargo >/dev/null || abort "cargo not found (or set SWITCHYARD_BIN)"
    log "cargo build --release (log: $TMP/cargo.log)"
    run_bounded "$BUILD_TIMEOUT" cargo build --release --bin switchyard \
        >"$TMP/cargo.log" 2>&1
    if (( RUN_RC != 0 )); then
        tail -n 40 "$TMP/cargo.log" >&2
        abort "cargo build --release failed (status $RUN_RC; log: $TMP/cargo.log)"
    fi
    BIN="$REPO/target/release/switchyard"
fi
[[ -x "$BIN" ]] || abort "no switchyard binary at $BIN"
timeout 10 "$BIN" serve --help >/dev/null 2>&1 || abort "$BIN serve --help failed"

port_in_use "$GW_PORT" && abort "port $GW_PORT is already in use (set E2E_GATEWAY_PORT)"
ADMIN_TOKEN="e2e-admin-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DATA_DIR="$TMP/data"
mkdir -p "$DATA_DIR"
SY_LOG="$TMP/switchyard.log"
log "starting $BIN serve --listen 127.0.0.1:$GW_PORT --data-dir $DATA_DIR (log: $SY_LOG)"
SWITCHYARD_ADMIN_TOKEN="$ADMIN_TOKEN" RUST_LOG="${RUST_LOG:-info}" \
    "$BIN" serve --listen "127.0.0.1:$GW_PORT" --data-dir "$DATA_DIR" </dev/null >"$SY_LOG" 2>&1 &
SY_PID=$!

end=$((SECONDS + 30))
until [[ "$(http_code "http://127.0.0.1:$GW_PORT/healthz")" == "200" ]]; do
    if ! is_alive "$SY_PID"; then
        wait "$SY_PID" 2>/dev/null && rc=0 || rc=$?
        SY_PID=""
        tail -n 30 "$SY_LOG" >&2
        abort "switchyard exited during startup (status $rc)"
    fi
    (( SECONDS < end )) || { tail -n 30 "$SY_LOG" >&2; abort "switchyard /healthz not 200 after 30s"; }
    sleep 0.2
done
pass "switchyard healthy at http://127.0.0.1:$GW_PORT (pid $SY_PID)"

# ---------------------------------------------------------------- client ---
RESULT="$TMP/client.result"
E2E_GATEWAY_URL="http://127.0.0.1:$GW_PORT" \
SWITCHYARD_ADMIN_TOKEN="$ADMIN_TOKEN" \
E2E_UPSTREAM_URL="$LLAMA_URL" \
E2E_RESULT_FILE="$RESULT" \
    run_bounded "$TEST_TIMEOUT" "$VENV/bin/python" -u "$REPO/scripts/e2e_client.py"
client_rc=$RUN_RC
if [[ -s "$RESULT" ]]; then
    read -r c_pass c_fail <"$RESULT"
    PASSED=$((PASSED + c_pass))
    FAILED=$((FAILED + c_fail))
fi
if (( client_rc == 124 || client_rc == 137 )); then
    fail "e2e_client.py timed out after ${TEST_TIMEOUT}s"
elif (( client_rc != 0 )) && [[ ! -s "$RESULT" || "${c_fail:-0}" == "0" ]]; then
    fail "e2e_client.py exited with status $client_rc"
fi

# -------------------------------------------------------------- shutdown ---
log "stopping switchyard (SIGTERM)"
kill -TERM "$SY_PID" 2>/dev/null || true
if wait_exit "$SY_PID" 15; then
    wait "$SY_PID" 2>/dev/null && rc=0 || rc=$?
    SY_PID=""
    if (( rc == 0 )); then pass "switchyard exited 0 on SIGTERM"; else fail "switchyard exited with status $rc on SIGTERM"; fi
else
    fail "switchyard still running 15s after SIGTERM"
fi
FLUSH_RE='flush.*usage|usage.*flush'
if grep -Eiq "$FLUSH_RE" "$SY_LOG"; then
    pass "switchyard log mentions flushing usage: $(grep -Ei -m1 "$FLUSH_RE" "$SY_LOG" | cut -c1-200)"
else
    fail "switchyard log does not mention flushing usage (log: $SY_LOG)"
fi
if (( FAILED > 0 )); then
    log "last lines of $SY_LOG:"
    tail -n 25 "$SY_LOG" >&2 || true
fi

summary
(( FAILED == 0 ))

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
#    with a fake Hugging Face Hub (`e2e_deploy.py hub`) and the self-hosted
#    provisioner set to start the cached llama-server with the same model
# 4. scripts/e2e_client.py: management API + SDK calls + usage/billing checks
#    against the llama-server of step 2, registered as an external endpoint
# 5. scripts/e2e_deploy.py flow: deploy from a Hugging Face model id and the
#    training-complete webhook, each ending in a llama-server started by
#    Switchyard that the SDK calls through the gateway; DELETE stops them
# 6. crash test: e2e_deploy.py crash-start kills switchyard with SIGKILL while
#    a deploy is provisioning / waiting for readiness; switchyard is started
#    again on the same data dir; e2e_deploy.py crash-finish checks that the job
#    succeeds with exactly one llama-server, calls it, and deletes it
# 7. SIGTERM switchyard: it must exit 0 and log that it flushed usage
#
# Every process started here is stopped on exit, also on failure: switchyard,
# the fake Hub, and the llama-servers of the self-hosted provisioner (they run
# in their own process group and outlive switchyard; found by the pids in
# <data-dir>/self-hosted/*.json and by their log in that directory).
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
#   E2E_ANTHROPIC_VERSION  anthropic SDK version for the venv  default 2.15.0
#   SWITCHYARD_BIN      use this binary; skip cargo build
#   E2E_BUILD_TIMEOUT   seconds for cargo build                default 3600
#   E2E_TEST_TIMEOUT    seconds for the Python client          default 90
#   E2E_DEPLOY_TIMEOUT  seconds for each e2e_deploy.py phase   default 300
#   E2E_SELF_HOSTED_PORTS  ports of deployed llama-servers     default 18200-18299
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
ANTHROPIC_VERSION="${E2E_ANTHROPIC_VERSION:-2.15.0}"
BUILD_TIMEOUT="${E2E_BUILD_TIMEOUT:-3600}"
TEST_TIMEOUT="${E2E_TEST_TIMEOUT:-90}"
DEPLOY_TIMEOUT="${E2E_DEPLOY_TIMEOUT:-300}"
SELF_HOSTED_PORTS="${E2E_SELF_HOSTED_PORTS:-18200-18299}"
HUB_MODEL="HuggingFaceTB/SmolLM2-135M-Instruct"
VENV="$E2E_CACHE/venv"

PASSED=0
FAILED=0
LLAMA_PID=""
LLAMA_STARTED=0
SY_PID=""
HUB_PID=""
CHILD_PID=""
TMP=""
DATA_DIR=""

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

# self_hosted_pids: llama-servers started by this run's switchyard: the pids
# in its state files (if they still run a llama-server) and any process whose
# stdout is a log in <data-dir>/self-hosted/ (a server without a state file).
self_hosted_pids() {
    [[ -n "$DATA_DIR" && -d "$DATA_DIR/self-hosted" ]] || return 0
    local dir="$DATA_DIR/self-hosted" f pid fd
    {
        for f in "$dir"/*.json; do
            [[ -f "$f" ]] || continue
            pid="$(sed -n 's/^[[:space:]]*"pid":[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$f" | head -n1)"
            if [[ -n "$pid" ]] && is_alive "$pid" \
                && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'llama-server'; then
                echo "$pid"
            fi
        done
        for fd in /proc/[0-9]*/fd/1; do
            [[ "$(readlink "$fd" 2>/dev/null)" == "$dir/"* ]] || continue
            pid="${fd#/proc/}"; pid="${pid%%/*}"
            is_alive "$pid" && echo "$pid"
        done
        true
    } | sort -un
}

# stop_self_hosted: SIGTERM each server's process group (the provisioner
# starts each as a group leader), then SIGKILL what is left after 10 s.
stop_self_hosted() {
    local pids pid
    pids="$(self_hosted_pids)"
    [[ -n "$pids" ]] || return 0
    log "stopping self-hosted llama-servers: $(echo $pids)"
    for pid in $pids; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    for pid in $pids; do
        wait_exit "$pid" 10 || { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
    done
    for pid in $pids; do wait_exit "$pid" 5 || log "llama-server pid $pid did not exit"; done
}

stop_switchyard_now() {
    if [[ -n "$SY_PID" ]] && is_alive "$SY_PID"; then
        log "stopping switchyard pid $SY_PID"
        kill -TERM "$SY_PID" 2>/dev/null
        wait_exit "$SY_PID" 10 || kill -KILL "$SY_PID" 2>/dev/null
    fi
    [[ -n "$SY_PID" ]] && wait "$SY_PID" 2>/dev/null
    SY_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$CHILD_PID" ]] && is_alive "$CHILD_PID"; then
        kill -TERM "$CHILD_PID" 2>/dev/null   # timeout(1) passes it on to its process group
        wait_exit "$CHILD_PID" 10 || kill -KILL "$CHILD_PID" 2>/dev/null
    fi
    stop_switchyard_now
    stop_self_hosted
    if [[ -n "$HUB_PID" ]] && is_alive "$HUB_PID"; then
        kill -TERM "$HUB_PID" 2>/dev/null
        wait_exit "$HUB_PID" 5 || kill -KILL "$HUB_PID" 2>/dev/null
        wait "$HUB_PID" 2>/dev/null
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
    [[ -x "$VENV/bin/python" ]] && timeout 60 "$VENV/bin/python" - "$OPENAI_VERSION" "$ANTHROPIC_VERSION" <<'EOF' 2>/dev/null
import sys, openai, anthropic
sys.exit(0 if openai.__version__ == sys.argv[1] and anthropic.__version__ == sys.argv[2] else 1)
EOF
}
if ! venv_ok; then
    log "creating venv $VENV with openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION"
    (
        mkdir -p "$E2E_CACHE" && exec 7>"$E2E_CACHE/.venv.lock" || exit 1
        flock -w 600 7 || exit 1
        venv_ok && exit 0
        [[ -x "$VENV/bin/python" ]] || timeout 120 python3 -m venv "$VENV" >&2 || exit 1
        timeout 300 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "openai==$OPENAI_VERSION" "anthropic==$ANTHROPIC_VERSION" >&2
    ) || abort "could not create the venv with openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION at $VENV"
    venv_ok || abort "venv $VENV has no openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION"
fi
pass "venv with openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION ($VENV)"

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

# The self-hosted provisioner starts the same binary and model: the binary the
# shared server runs (or LLAMA_SERVER_BIN), the model after its -m.
if [[ -n "${LLAMA_SERVER_BIN:-}" ]]; then
    LLAMA_BIN="$LLAMA_SERVER_BIN"
else
    LLAMA_BIN="$(readlink "/proc/$LLAMA_PID/exe" 2>/dev/null || true)"
    LLAMA_BIN="${LLAMA_BIN% (deleted)}"
fi
LLAMA_MODEL="$(tr '\0' '\n' <"/proc/$LLAMA_PID/cmdline" 2>/dev/null | sed -n '/^-m$/{n;p;q}')"
[[ -n "$LLAMA_MODEL" ]] || LLAMA_MODEL="${E2E_MODEL:-$E2E_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
[[ -x "$LLAMA_BIN" ]] || abort "cannot find the llama-server binary of pid $LLAMA_PID (set LLAMA_SERVER_BIN)"
[[ -f "$LLAMA_MODEL" ]] || abort "no model file at $LLAMA_MODEL"
SELF_HOSTED_COMMAND="\"$LLAMA_BIN\" -m \"$LLAMA_MODEL\" --host 127.0.0.1 --port {port} -a {served_model_name} -c 4096 -np 2 -t 1 --no-webui --cache-ram 256"
pass "self-hosted command: $(basename "$LLAMA_BIN") -m $(basename "$LLAMA_MODEL") ... (ports $SELF_HOSTED_PORTS)"

# ------------------------------------------------------------- fake Hub ---
HUB_PORT_FILE="$TMP/hub.port"
HUB_LOG="$TMP/hub.requests"
"$VENV/bin/python" -u "$REPO/scripts/e2e_deploy.py" hub --port-file "$HUB_PORT_FILE" --log "$HUB_LOG" \
    --model "$HUB_MODEL" </dev/null >"$TMP/hub.log" 2>&1 &
HUB_PID=$!
end=$((SECONDS + 15))
until [[ -s "$HUB_PORT_FILE" ]]; do
    is_alive "$HUB_PID" || { cat "$TMP/hub.log" >&2; abort "the fake Hub exited during startup"; }
    (( SECONDS < end )) || abort "the fake Hub wrote no port in 15s"
    sleep 0.1
done
HUB_URL="http://127.0.0.1:$(cat "$HUB_PORT_FILE")"
[[ "$(http_code "$HUB_URL/api/models/$HUB_MODEL")" == "200" ]] || abort "fake Hub: GET /api/models/$HUB_MODEL not 200"
pass "fake Hugging Face Hub at $HUB_URL (pid $HUB_PID)"

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
WEBHOOK_SECRET="e2e-hook-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DATA_DIR="$TMP/data"
mkdir -p "$DATA_DIR"

# start_switchyard LOG: starts switchyard on $DATA_DIR (SY_PID, SY_LOG) and
# waits for /healthz. Provider credentials of the caller's environment are
# dropped: only self-hosted (and external) can deploy here.
start_switchyard() {
    SY_LOG="$1"
    log "starting $BIN serve --listen 127.0.0.1:$GW_PORT --data-dir $DATA_DIR (log: $SY_LOG)"
    env -u HF_TOKEN -u HF_ENDPOINT -u RUNPOD_API_KEY -u REPLICATE_API_TOKEN -u TOGETHER_API_KEY \
        -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET \
        SWITCHYARD_ADMIN_TOKEN="$ADMIN_TOKEN" RUST_LOG="${RUST_LOG:-info}" \
        SWITCHYARD_HF_HUB_URL="$HUB_URL" \
        SWITCHYARD_SELF_HOSTED_COMMAND="$SELF_HOSTED_COMMAND" \
        SWITCHYARD_SELF_HOSTED_PORTS="$SELF_HOSTED_PORTS" \
        SWITCHYARD_TRAINING_WEBHOOK_SECRET="$WEBHOOK_SECRET" \
        SWITCHYARD_DEPLOY_POLL_INTERVAL_MS=250 \
        "$BIN" serve --listen "127.0.0.1:$GW_PORT" --data-dir "$DATA_DIR" </dev/null >"$SY_LOG" 2>&1 &
    SY_PID=$!
    local end=$((SECONDS + 30)) rc
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
}

# run_py NAME SECS SCRIPT ARGS...: runs a Python check script bounded and adds
# its "PASSED FAILED" result file to the totals.
run_py() {
    local name="$1" secs="$2" result="$TMP/$1.result" c_pass=0 c_fail=0
    shift 2
    rm -f "$result"
    E2E_GATEWAY_URL="http://127.0.0.1:$GW_PORT" \
    SWITCHYARD_ADMIN_TOKEN="$ADMIN_TOKEN" \
    SWITCHYARD_TRAINING_WEBHOOK_SECRET="$WEBHOOK_SECRET" \
    E2E_UPSTREAM_URL="$LLAMA_URL" \
    E2E_DATA_DIR="$DATA_DIR" \
    E2E_CONTEXT_FILE="$TMP/deploy-context.json" \
    E2E_HUB_LOG="$HUB_LOG" \
    E2E_MODEL_ID="$HUB_MODEL" \
    E2E_SELF_HOSTED_PORTS="$SELF_HOSTED_PORTS" \
    E2E_SWITCHYARD_PID="$SY_PID" \
    E2E_RESULT_FILE="$result" \
        run_bounded "$secs" "$VENV/bin/python" -u "$@"
    if [[ -s "$result" ]]; then
        read -r c_pass c_fail <"$result"
        PASSED=$((PASSED + c_pass))
        FAILED=$((FAILED + c_fail))
    fi
    if (( RUN_RC == 124 || RUN_RC == 137 )); then
        fail "$name timed out after ${secs}s"
    elif (( RUN_RC != 0 )) && (( c_fail == 0 )); then
        fail "$name exited with status $RUN_RC"
    fi
}

start_switchyard "$TMP/switchyard.log"
pass "switchyard healthy at http://127.0.0.1:$GW_PORT (pid $SY_PID)"

# ---------------------------------------------------------------- client ---
run_py e2e_client.py "$TEST_TIMEOUT" "$REPO/scripts/e2e_client.py"

# ---------------------------------------------------------------- deploy ---
run_py "e2e_deploy.py flow" "$DEPLOY_TIMEOUT" "$REPO/scripts/e2e_deploy.py" flow

# ------------------------------------------------------------ crash test ---
if [[ -s "$TMP/deploy-context.json" ]]; then
    run_py "e2e_deploy.py crash-start" "$DEPLOY_TIMEOUT" "$REPO/scripts/e2e_deploy.py" crash-start
    if [[ -n "$SY_PID" ]] && ! is_alive "$SY_PID"; then
        wait "$SY_PID" 2>/dev/null && rc=0 || rc=$?
        SY_PID=""
        if (( rc == 137 )); then pass "killed switchyard exited with status 137 (SIGKILL)"; else fail "killed switchyard exited with status $rc, not 137"; fi
        log "self-hosted servers after the kill: $(self_hosted_pids | tr '\n' ' ')"
        start_switchyard "$TMP/switchyard-restarted.log"
        pass "switchyard restarted on the same data dir (pid $SY_PID)"
    fi
    run_py "e2e_deploy.py crash-finish" "$DEPLOY_TIMEOUT" "$REPO/scripts/e2e_deploy.py" crash-finish
else
    fail "crash test skipped: e2e_deploy.py flow created no user"
fi

# -------------------------------------------------------------- shutdown ---
if [[ -n "$SY_PID" ]]; then
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
else
    fail "no switchyard running for the shutdown check"
fi
LEFT="$(self_hosted_pids | tr '\n' ' ')"
if [[ -z "$LEFT" ]]; then pass "no self-hosted llama-server left running"; else fail "self-hosted llama-servers left running: $LEFT"; fi
if (( FAILED > 0 )); then
    for f in "$TMP"/switchyard*.log; do
        log "last lines of $f:"
        tail -n 25 "$f" >&2 || true
    done
fi

summary
(( FAILED == 0 ))

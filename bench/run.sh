#!/usr/bin/env bash
# Switchyard load benchmark: (A) direct to a fast local nginx upstream, (B) through a bare
# nginx proxy_pass, (C) through Switchyard with key auth, rate limits, credits and metering on.
# Usage: bash bench/run.sh [--quick]        (from the repo root; see bench/README.md)
# Every load targets 127.0.0.1 only and every oha run is bounded in time or request count.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_ROOT/bench

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,5p' "$0"; echo "Environment overrides: see bench/README.md"; exit 0 ;;
        *) echo "run.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# ---- knobs (env-overridable) -------------------------------------------------------------
if [[ $QUICK == 1 ]]; then
    BENCH_RUNS=${BENCH_RUNS:-1}
    BENCH_DURATION=${BENCH_DURATION:-3}
    BENCH_MAX_DURATION=${BENCH_MAX_DURATION:-$BENCH_DURATION}
    BENCH_STREAMS_N=${BENCH_STREAMS_N:-2000}
    BENCH_WARMUP=${BENCH_WARMUP:-1}
else
    BENCH_RUNS=${BENCH_RUNS:-2}
    BENCH_DURATION=${BENCH_DURATION:-10}          # seconds per fixed-rate run
    BENCH_MAX_DURATION=${BENCH_MAX_DURATION:-8}   # seconds per max-throughput run
    BENCH_STREAMS_N=${BENCH_STREAMS_N:-3000}      # requests in the 1,000-stream check
    BENCH_WARMUP=${BENCH_WARMUP:-1}               # seconds of warm-up per config and mode
fi
BENCH_RATES=${BENCH_RATES:-"500 2000"}         # fixed request rates (req/s)
BENCH_RATE_CONNS=${BENCH_RATE_CONNS:-50}       # connections for the fixed-rate runs
BENCH_MAX_CONNS=${BENCH_MAX_CONNS:-64}         # connections for the max-throughput runs
BENCH_MODES=${BENCH_MODES:-"plain stream"}
BENCH_CONFIGS=${BENCH_CONFIGS:-"direct nginx switchyard"}
BENCH_STREAMS_CONNS=${BENCH_STREAMS_CONNS:-1000}
BENCH_STREAMS_CONFIGS=${BENCH_STREAMS_CONFIGS:-$BENCH_CONFIGS}
BENCH_GATEWAY_CPU=${BENCH_GATEWAY_CPU:-0}      # core for the gateway under test
BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-1}            # core for the upstream nginx and oha
SWITCHYARD_BIN=${SWITCHYARD_BIN:-$REPO_ROOT/target/release/switchyard}
OHA_ROOT=${OHA_ROOT:-$HOME/.cache/switchyard-bench}

UPSTREAM_PORT=18101
PROXY_PORT=18102
SY_PORT=18103
ADMIN_TOKEN=bench-admin-token-0123456789

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

has_config() { [[ " $BENCH_CONFIGS " == *" $1 "* ]]; }

# ---- tools ---------------------------------------------------------------------------------
export PATH="$OHA_ROOT/bin:$PATH:/usr/sbin:/sbin"
ensure_tools() {
    command -v python3 >/dev/null || die "python3 is required"
    command -v taskset >/dev/null || die "taskset (util-linux) is required"
    if ! command -v nginx >/dev/null; then
        log "installing nginx from Debian"
        local sudo=""; [[ $EUID -ne 0 ]] && sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y -q nginx-light >/dev/null 2>&1 || {
            $sudo apt-get update -q >/dev/null
            $sudo apt-get install -y -q nginx-light >/dev/null || $sudo apt-get install -y -q nginx >/dev/null
        } || die "could not install nginx"
        # The package may start the system nginx on :80; it is not used here and left alone.
    fi
    if ! command -v oha >/dev/null; then
        log "installing oha into $OHA_ROOT (cargo install, niced; a few minutes)"
        command -v cargo >/dev/null || die "cargo is needed to install oha"
        CARGO_TARGET_DIR=${OHA_TARGET_DIR:-/tmp/switchyard-bench-oha-target} \
            nice -n 10 cargo install oha --locked --root "$OHA_ROOT" >&2 || die "cargo install oha failed"
    fi
    command -v oha >/dev/null || die "oha not found after install"
}

ensure_switchyard() {
    if [[ ! -x $SWITCHYARD_BIN ]]; then
        log "switchyard binary missing: cargo build --release"
        (cd "$REPO_ROOT" && cargo build --release >&2) || die "cargo build --release failed"
    fi
    [[ -x $SWITCHYARD_BIN ]] || die "no switchyard binary at $SWITCHYARD_BIN"
}

# ---- process bookkeeping ---------------------------------------------------------------------
TMP=""
RESULTS=""
declare -a STARTED_PIDS=()
declare -A PIDS=()        # name -> pid (nginx master or switchyard)

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

STOP_RC=0
stop_pid() {   # stop_pid PID SIGNAL [TIMEOUT_S]: signal, wait, then SIGKILL. Exit status -> STOP_RC.
    local pid=$1 sig=$2 timeout=${3:-10} i
    STOP_RC=0
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop after SIG$sig in $timeout s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
}

stop_all() {
    local pid
    if [[ -n ${PIDS[switchyard]:-} ]]; then
        stop_pid "${PIDS[switchyard]}" TERM 40   # its shutdown grace is 30 s by default
        log "switchyard stopped with SIGTERM (exit status $STOP_RC)"
        if [[ -n $RESULTS ]]; then echo "$STOP_RC" >"$RESULTS/switchyard-exit-status"; fi
        unset 'PIDS[switchyard]'
    fi
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid" TERM
    done
    STARTED_PIDS=()
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ -n $RESULTS && -d $RESULTS ]]; then
            mkdir -p "$RESULTS/logs"
            cp "$TMP"/upstream/error.log "$RESULTS/logs/nginx-upstream-error.log" 2>/dev/null || true
            cp "$TMP"/proxy/error.log "$RESULTS/logs/nginx-proxy-error.log" 2>/dev/null || true
            cp "$TMP"/switchyard.log "$RESULTS/logs/switchyard.log" 2>/dev/null || true
            cp "$TMP"/upstream/nginx.conf "$RESULTS/logs/nginx-upstream.conf" 2>/dev/null || true
            cp "$TMP"/proxy/nginx.conf "$RESULTS/logs/nginx-proxy.conf" 2>/dev/null || true
        fi
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# /proc readers. cpu_ticks PID... -> summed utime+stime (clock ticks) of the processes.
cpu_ticks() {
    local pid s total=0
    for pid in "$@"; do
        s=$(<"/proc/$pid/stat")
        s=${s##*) }                     # drop "pid (comm) ", comm may hold spaces
        read -r -a f <<<"$s"            # f[0] is field 3 (state): utime=f[11], stime=f[12]
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
# mem_kb FIELD PID... -> summed VmRSS / VmHWM in kB.
mem_kb() {
    local field=$1 pid total=0 v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
# nginx_pids NAME -> "master worker..." pids of one of our nginx instances.
nginx_pids() {
    local master=${PIDS[$1]}
    echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
}

# ---- services ---------------------------------------------------------------------------------
start_nginx() {   # start_nginx NAME TEMPLATE CPU PORT [extra NAME=VALUE...]
    local name=$1 template=$2 cpu=$3 port=$4
    shift 4
    local dir=$TMP/$name user_line=""
    mkdir -p "$dir"
    [[ $EUID -eq 0 ]] && user_line="user root;"
    python3 "$BENCH_DIR/render_conf.py" "$template" "$dir/nginx.conf" \
        DIR="$dir" PORT="$port" USER="$user_line" "$@"
    nginx -q -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >&2 || die "nginx config $name invalid"
    taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
        </dev/null >>"$dir/stdout.log" 2>&1 &
    PIDS[$name]=$!
    STARTED_PIDS+=("$!")
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -n $(pgrep -P "${PIDS[$name]}") ]] && port_in_use "$port" && break
        kill -0 "${PIDS[$name]}" 2>/dev/null || die "nginx $name exited: $(cat "$dir/error.log")"
        sleep 0.1
    done
    port_in_use "$port" || die "nginx $name not listening on $port"
    log "nginx $name up on 127.0.0.1:$port (pids $(nginx_pids "$name"), cpu $cpu)"
}

start_switchyard() {
    mkdir -p "$TMP/sy-data"
    SWITCHYARD_ADMIN_TOKEN=$ADMIN_TOKEN SWITCHYARD_LOG=warn \
        taskset -c "$BENCH_GATEWAY_CPU" "$SWITCHYARD_BIN" serve \
        --listen "127.0.0.1:$SY_PORT" --data-dir "$TMP/sy-data" \
        </dev/null >>"$TMP/switchyard.log" 2>&1 &
    PIDS[switchyard]=$!
    STARTED_PIDS+=("$!")
    python3 "$BENCH_DIR/sy_client.py" wait "http://127.0.0.1:$SY_PORT/healthz" 60 ||
        die "switchyard did not become healthy; log: $(tail -20 "$TMP/switchyard.log")"
    python3 "$BENCH_DIR/sy_client.py" setup "http://127.0.0.1:$SY_PORT" "$ADMIN_TOKEN" \
        "http://127.0.0.1:$UPSTREAM_PORT" "$TMP/sy-keys" ||
        die "switchyard management API setup failed; log: $(tail -20 "$TMP/switchyard.log")"
    local name key
    while read -r name key; do SY_KEYS[$name]=$key; done <"$TMP/sy-keys"
    log "switchyard up on 127.0.0.1:$SY_PORT (pid ${PIDS[switchyard]}, cpu $BENCH_GATEWAY_CPU), keys created"
}

# ---- load description ----------------------------------------------------------------------
declare -A SY_KEYS=()
DUMMY_KEY="sy_live_bench_direct_0000000000000000000000000000"   # same header size for A/B

model_for() {   # mode -> model (endpoint name in switchyard)
    case $1 in plain) echo bench-chat ;; stream) echo bench-stream ;; slowstream) echo bench-slowstream ;; esac
}
body_for() {
    local model
    model=$(model_for "$1")
    if [[ $1 == plain ]]; then
        echo "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}],\"max_tokens\":16}"
    else
        echo "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}],\"max_tokens\":16,\"stream\":true}"
    fi
}
url_for() {   # config mode
    local prefix
    case $2 in plain) prefix="" ;; stream) prefix=/stream ;; slowstream) prefix=/slowstream ;; esac
    case $1 in
        direct) echo "http://127.0.0.1:$UPSTREAM_PORT$prefix/v1/chat/completions" ;;
        nginx) echo "http://127.0.0.1:$PROXY_PORT$prefix/v1/chat/completions" ;;
        switchyard) echo "http://127.0.0.1:$SY_PORT/v1/chat/completions" ;;
    esac
}
key_for() {   # config mode
    if [[ $1 == switchyard ]]; then echo "${SY_KEYS[$2]}"; else echo "$DUMMY_KEY"; fi
}
gateway_pids() {   # config -> pids whose CPU/RSS are measured ("" for direct)
    case $1 in
        direct) echo "" ;;
        nginx) nginx_pids proxy ;;
        switchyard) echo "${PIDS[switchyard]}" ;;
    esac
}

# run_oha OUT_BASE CONFIG MODE KIND RUN -- OHA_ARGS...
# Runs oha pinned to the load core, writes OUT_BASE.json (oha) and OUT_BASE.meta.json.
run_oha() {
    local out=$1 config=$2 mode=$3 kind=$4 run=$5
    shift 6
    local url body key gw up
    url=$(url_for "$config" "$mode")
    body=$(body_for "$mode")
    key=$(key_for "$config" "$mode")
    gw=$(gateway_pids "$config")
    up=$(nginx_pids upstream)
    # shellcheck disable=SC2086
    local gw_cpu0=0 up_cpu0 gw_cpu1=0 up_cpu1 t0 t1 rc=0
    [[ -n $gw ]] && gw_cpu0=$(cpu_ticks $gw)
    up_cpu0=$(cpu_ticks $up)
    t0=$(date +%s.%N)
    taskset -c "$BENCH_LOAD_CPU" oha --no-tui --output-format json --worker-threads 1 -m POST \
        -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d "$body" \
        "$@" "$url" >"$out.json" 2>"$out.stderr" || rc=$?
    t1=$(date +%s.%N)
    [[ -n $gw ]] && gw_cpu1=$(cpu_ticks $gw)
    up_cpu1=$(cpu_ticks $up)
    local rss=0 hwm=0
    if [[ -n $gw ]]; then rss=$(mem_kb VmRSS $gw); hwm=$(mem_kb VmHWM $gw); fi
    [[ -s $out.stderr ]] || rm -f "$out.stderr"
    [[ $rc -eq 0 ]] || log "WARNING: oha exited $rc for $config/$mode/$kind (see $out.stderr)"
    cat >"$out.meta.json" <<EOF
{"config": "$config", "mode": "$mode", "kind": "$kind", "run": $run, "url": "$url",
 "oha_args": "$*", "oha_exit": $rc, "wall_start": $t0, "wall_end": $t1,
 "clk_tck": $CLK_TCK, "gateway_pids": "$gw", "gateway_cpu_ticks": [$gw_cpu0, $gw_cpu1],
 "upstream_pids": "$up", "upstream_cpu_ticks": [$up_cpu0, $up_cpu1],
 "gateway_rss_kb_after": $rss, "gateway_hwm_kb_after": $hwm}
EOF
}

# ---- main ------------------------------------------------------------------------------------
main() {
    ensure_tools
    has_config switchyard && ensure_switchyard

    CLK_TCK=$(getconf CLK_TCK)
    local ts
    ts=$(date +%Y%m%d-%H%M%S)
    RESULTS=${BENCH_OUT:-$BENCH_DIR/results/$ts}
    mkdir -p "$RESULTS/runs" "$RESULTS/warmup" "$RESULTS/streams"
    TMP=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    # oha with 1,000 connections and the gateways need file descriptors.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [[ $(ulimit -n) == unlimited || $(ulimit -n) -ge 4096 ]] || log "WARNING: ulimit -n is $(ulimit -n)"

    local p
    for p in $UPSTREAM_PORT $PROXY_PORT $SY_PORT; do
        port_in_use "$p" && die "port 127.0.0.1:$p is already in use"
    done
    [[ $(nproc) -ge 2 ]] || log "WARNING: fewer than 2 cores; pinning to cores $BENCH_GATEWAY_CPU/$BENCH_LOAD_CPU may fail"

    log "results -> $RESULTS"
    log "runs=$BENCH_RUNS duration=${BENCH_DURATION}s max_duration=${BENCH_MAX_DURATION}s rates=[$BENCH_RATES] modes=[$BENCH_MODES] configs=[$BENCH_CONFIGS]"

    start_nginx upstream "$BENCH_DIR/nginx/upstream.conf.in" "$BENCH_LOAD_CPU" "$UPSTREAM_PORT" \
        CHAT_BODY="@file:$BENCH_DIR/fixtures/chat_completion.json" \
        STREAM_BODY="@file:$BENCH_DIR/fixtures/chat_stream.sse"
    has_config nginx && start_nginx proxy "$BENCH_DIR/nginx/proxy.conf.in" "$BENCH_GATEWAY_CPU" "$PROXY_PORT" \
        UPSTREAM_PORT="$UPSTREAM_PORT"
    has_config switchyard && start_switchyard

    # Smoke: every config answers every mode correctly before any load.
    local config mode
    for config in $BENCH_CONFIGS; do
        for mode in $BENCH_MODES slowstream; do
            [[ $mode == slowstream && " $BENCH_STREAMS_CONFIGS " != *" $config "* ]] && continue
            python3 "$BENCH_DIR/sy_client.py" smoke "$(url_for "$config" "$mode")" \
                "$([[ $mode == plain ]] && echo plain || echo stream)" \
                "$(key_for "$config" "$mode")" "$(body_for "$mode")" ||
                die "smoke check failed for $config/$mode"
        done
    done
    log "smoke checks passed"

    # Idle memory of each gateway, and the environment.
    {
        echo "{"
        echo " \"timestamp\": \"$ts\", \"quick\": $QUICK, \"runs\": $BENCH_RUNS,"
        echo " \"duration_s\": $BENCH_DURATION, \"max_duration_s\": $BENCH_MAX_DURATION,"
        echo " \"rates\": \"$BENCH_RATES\", \"rate_conns\": $BENCH_RATE_CONNS, \"max_conns\": $BENCH_MAX_CONNS,"
        echo " \"modes\": \"$BENCH_MODES\", \"configs\": \"$BENCH_CONFIGS\","
        echo " \"streams_conns\": $BENCH_STREAMS_CONNS, \"streams_n\": $BENCH_STREAMS_N,"
        echo " \"gateway_cpu\": $BENCH_GATEWAY_CPU, \"load_cpu\": $BENCH_LOAD_CPU,"
        echo " \"kernel\": \"$(uname -r)\","
        echo " \"cpu_model\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\","
        echo " \"nproc\": $(nproc),"
        echo " \"nginx_version\": \"$(nginx -v 2>&1 | sed 's/.*nginx\///')\","
        echo " \"oha_version\": \"$(oha --version | awk '{print $2}')\","
        echo " \"git_rev\": \"$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)\","
        local c gw
        echo " \"idle\": {"
        local first=1
        for c in $BENCH_CONFIGS; do
            gw=$(gateway_pids "$c")
            [[ -z $gw ]] && continue
            # shellcheck disable=SC2086
            [[ $first == 1 ]] || echo ","
            first=0
            printf '  "%s": {"pids": "%s", "rss_kb": %s, "hwm_kb": %s}' "$c" "$gw" "$(mem_kb VmRSS $gw)" "$(mem_kb VmHWM $gw)"
        done
        echo ""
        echo " }"
        echo "}"
    } >"$RESULTS/env.json"

    # Warm-up (results kept apart, not summarised).
    for config in $BENCH_CONFIGS; do
        for mode in $BENCH_MODES; do
            run_oha "$RESULTS/warmup/$config-$mode" "$config" "$mode" warmup 0 -- \
                -z "${BENCH_WARMUP}s" -c 16 -w -t 10s
        done
    done
    log "warm-up done"

    # Measured runs; configurations interleaved inside each run so drift hits all alike.
    local run rate
    for ((run = 1; run <= BENCH_RUNS; run++)); do
        for config in $BENCH_CONFIGS; do
            for mode in $BENCH_MODES; do
                for rate in $BENCH_RATES; do
                    log "run $run/$BENCH_RUNS: $config $mode @ $rate req/s for ${BENCH_DURATION}s"
                    run_oha "$RESULTS/runs/$config-$mode-rate$rate-r$run" "$config" "$mode" "rate$rate" "$run" -- \
                        -z "${BENCH_DURATION}s" -c "$BENCH_RATE_CONNS" -q "$rate" --latency-correction -w -t 10s
                done
                log "run $run/$BENCH_RUNS: $config $mode max throughput, $BENCH_MAX_CONNS conns, ${BENCH_MAX_DURATION}s"
                run_oha "$RESULTS/runs/$config-$mode-max-r$run" "$config" "$mode" max "$run" -- \
                    -z "${BENCH_MAX_DURATION}s" -c "$BENCH_MAX_CONNS" -w -t 10s
            done
        done
    done

    # 1,000 concurrent streams: the fast stream path, and the slow (~1 s per stream) path that
    # keeps all of them open at once.
    for config in $BENCH_STREAMS_CONFIGS; do
        has_config "$config" || continue
        for mode in stream slowstream; do
            log "$BENCH_STREAMS_CONNS concurrent streams ($mode) through $config: $BENCH_STREAMS_N requests"
            run_oha "$RESULTS/streams/$config-$mode-c$BENCH_STREAMS_CONNS" "$config" "$mode" "conc$BENCH_STREAMS_CONNS" 1 -- \
                -n "$BENCH_STREAMS_N" -c "$BENCH_STREAMS_CONNS" -t 60s
        done
    done

    if has_config switchyard; then
        sleep 1   # let the usage batches flush
        python3 "$BENCH_DIR/sy_client.py" report "http://127.0.0.1:$SY_PORT" "$TMP/sy-keys.state.json" \
            "$RESULTS/switchyard-metering.json" || log "WARNING: could not read switchyard usage/balance"
    fi

    stop_all
    python3 "$BENCH_DIR/summarize.py" "$RESULTS" | tee "$RESULTS/summary.md"
    log "raw oha JSON and summary in $RESULTS"
}

main

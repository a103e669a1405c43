#!/usr/bin/env bash
# scripts/sdk_venv.sh — a Python venv with the official OpenAI and Anthropic
# SDKs for tests/sdk_clients.rs; prints the venv's python path on stdout.
#
#   PY="$(scripts/sdk_venv.sh)"
#
# Reused when its stamp file names the pinned versions (no Python started, no
# network); otherwise (re)built under a lock, so concurrent callers build once.
#
# Environment (all optional):
#   SWITCHYARD_SDK_VENV              venv dir       default $HOME/.cache/switchyard/sdk-venv
#   SWITCHYARD_SDK_OPENAI_VERSION    openai SDK     default 3.54.0 (as scripts/e2e.sh)
#   SWITCHYARD_SDK_ANTHROPIC_VERSION anthropic SDK  default 2.15.0
set -euo pipefail

VENV="${SWITCHYARD_SDK_VENV:-${HOME:-/root}/.cache/switchyard/sdk-venv}"
OPENAI_VERSION="${SWITCHYARD_SDK_OPENAI_VERSION:-3.54.0}"
ANTHROPIC_VERSION="${SWITCHYARD_SDK_ANTHROPIC_VERSION:-2.15.0}"
STAMP="$VENV/.switchyard-sdk-stamp"
WANT="openai==$OPENAI_VERSION anthropic==$ANTHROPIC_VERSION"

log() { printf 'sdk_venv: %s\n' "$*" >&2; }

ready() { [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; }

if ! ready; then
    command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
    mkdir -p "$(dirname "$VENV")"
    exec 7>"$VENV.lock"
    flock -w 900 7 || { log "timed out waiting for the lock $VENV.lock"; exit 1; }
    if ! ready; then
        log "creating $VENV with $WANT"
        rm -f "$STAMP"
        if [[ ! -x "$VENV/bin/python" ]]; then
            rm -rf "$VENV"
            timeout 120 python3 -m venv "$VENV" >&2
        fi
        timeout 600 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "openai==$OPENAI_VERSION" "anthropic==$ANTHROPIC_VERSION" >&2
        timeout 60 "$VENV/bin/python" - "$OPENAI_VERSION" "$ANTHROPIC_VERSION" <<'EOF'
import sys, openai, anthropic
got = (openai.__version__, anthropic.__version__)
if got != (sys.argv[1], sys.argv[2]):
    sys.exit(f"sdk_venv: installed openai {got[0]}, anthropic {got[1]}; wanted {sys.argv[1]}, {sys.argv[2]}")
EOF
        printf '%s' "$WANT" >"$STAMP"
    fi
    exec 7>&-
fi
printf '%s\n' "$VENV/bin/python"

#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests on SQLite, PostgreSQL and Redis
# (and the official Python SDKs against the gateway, from the venv of scripts/sdk_venv.sh).
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# The official OpenAI and Anthropic SDKs for tests/sdk_clients.rs.
SWITCHYARD_SDK_PYTHON="$(bash scripts/sdk_venv.sh)"
export SWITCHYARD_SDK_PYTHON
exec cargo test --workspace --locked "$@"

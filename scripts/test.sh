#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests on SQLite, PostgreSQL and Redis
# (and the official Python SDKs against the gateway, from the venv of scripts/sdk_venv.sh),
# and the browser tests in headless Chromium (tests/browser, from scripts/browser_deps.sh).
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# The official OpenAI and Anthropic SDKs for tests/sdk_clients.rs.
SWITCHYARD_SDK_PYTHON="$(bash scripts/sdk_venv.sh)"
export SWITCHYARD_SDK_PYTHON
# Debian's Chromium and playwright-core for tests/browser.rs.
SWITCHYARD_CHROMIUM="$(bash scripts/browser_deps.sh)"
export SWITCHYARD_CHROMIUM
exec cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests on SQLite, PostgreSQL and Redis.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
exec cargo test --workspace --locked "$@"

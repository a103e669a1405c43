#!/usr/bin/env bash
# Installs what the browser tests need, and nothing when it is already there:
# Debian's chromium and chromium-driver, and tests/browser/node_modules (npm ci
# from the committed package-lock.json, which pins playwright-core).
# Prints the Chromium path on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in chromium chromium-driver; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
chromium_path="$(command -v chromium)"

# npm ci only when the lock file changed since the last install.
lock_sum="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
stamp=tests/browser/node_modules/.package-lock.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    echo "installing tests/browser/node_modules (npm ci)" >&2
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_sum" >"$stamp"
fi
echo "$chromium_path"

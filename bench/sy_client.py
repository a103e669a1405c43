#!/usr/bin/env python3
"""Small HTTP helper for bench/run.sh (stdlib only).

  sy_client.py wait URL TIMEOUT_S
      Poll GET URL until it answers 200 (exit 1 on timeout).
  sy_client.py setup BASE_URL ADMIN_TOKEN UPSTREAM_BASE OUT_FILE
      Create the bench user, credits, endpoints and high-limit API keys on a
      running Switchyard through its management API; write "NAME KEY" lines
      (plain / stream / slowstream) to OUT_FILE, and the user token, endpoint
      ids and starting balance to OUT_FILE.state.json (for `report`).
  sy_client.py report BASE_URL STATE_FILE OUT_JSON
      After the load: read the bench user's balance and each endpoint's usage
      (GET /api/v1/billing/balance, /api/v1/endpoints/{id}/usage) into OUT_JSON.
  sy_client.py smoke URL MODE KEY BODY
      POST BODY to URL with the key; check a 200 and a well-formed chat
      completion (MODE=plain) or an SSE stream ending in [DONE] (MODE=stream).
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

# (name, model name in requests, upstream path prefix on the fake upstream)
ENDPOINTS = [
    ("plain", "bench-chat", "/v1"),
    ("stream", "bench-stream", "/stream/v1"),
    ("slowstream", "bench-slowstream", "/slowstream/v1"),
]


def request(method, url, token=None, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(method, url, token, body, want=(200, 201)):
    status, raw = request(method, url, token, body)
    if status not in want:
        sys.exit(f"sy_client: {method} {url} -> {status}: {raw[:500]!r}")
    try:
        return json.loads(raw)
    except ValueError:
        sys.exit(f"sy_client: {method} {url} -> {status}, not JSON: {raw[:500]!r}")


def dig(obj, *path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            sys.exit(f"sy_client: response lacks {'.'.join(path)}: {json.dumps(obj)[:500]}")
        obj = obj[p]
    return obj


def cmd_wait(url, timeout_s):
    deadline = time.monotonic() + float(timeout_s)
    last = None
    while time.monotonic() < deadline:
        try:
            status, _ = request("GET", url, timeout=2)
            if status == 200:
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.2)
    sys.exit(f"sy_client: {url} not healthy after {timeout_s}s (last: {last})")


def cmd_setup(base, admin, upstream_base, out_file):
    base = base.rstrip("/")
    created = api("POST", f"{base}/api/v1/users", admin, {"name": "bench"})
    user_id = dig(created, "user", "id")
    user_token = dig(created, "token")
    bal = api("POST", f"{base}/api/v1/users/{user_id}/credits", admin,
              {"credits": 100000000, "reason": "bench"})
    print(f"switchyard: user {user_id} created, credit balance {bal.get('balance')}", file=sys.stderr)
    lines = []
    state = {"user_id": user_id, "user_token": user_token, "balance_start": bal.get("balance"), "endpoints": {}}
    for name, model, prefix in ENDPOINTS:
        ep = api("POST", f"{base}/api/v1/endpoints", user_token, {
            "name": model,
            "modality": "llm",
            "provider": "external",
            "upstream": {"base_url": f"{upstream_base}{prefix}", "api": "openai", "model": "bench-model"},
        })
        ep_id = dig(ep, "endpoint", "id")
        state["endpoints"][name] = ep_id
        # BENCH_SY_BACKENDS=2: extra replicas of the same upstream behind the
        # endpoint, balanced with BENCH_SY_STRATEGY (retries and breakers on).
        for _ in range(int(os.environ.get("BENCH_SY_BACKENDS", "1")) - 1):
            api("POST", f"{base}/api/v1/endpoints/{ep_id}/backends", user_token, {
                "version": "1.0",
                "upstream": {"base_url": f"{upstream_base}{prefix}", "api": "openai", "model": "bench-model"},
            })
        strategy = os.environ.get("BENCH_SY_STRATEGY")
        if strategy:
            api("PUT", f"{base}/api/v1/endpoints/{ep_id}/traffic", user_token, {"strategy": strategy})
        dig(ep, "api_key")  # the default key: limits too low for a load test, not used
        key = api("POST", f"{base}/api/v1/endpoints/{ep_id}/keys", user_token, {
            "name": "bench",
            "rate_limit_per_minute": 1000000,
            "rate_limit_per_day": 100000000,
        })
        lines.append(f"{name} {dig(key, 'api_key')}\n")
    with open(out_file, "w") as f:
        f.writelines(lines)
    with open(out_file + ".state.json", "w") as f:
        json.dump(state, f)


def cmd_report(base, state_file, out_json):
    base = base.rstrip("/")
    with open(state_file) as f:
        state = json.load(f)
    token = state["user_token"]
    report = {"balance_start": state.get("balance_start"), "usage": {}}
    status, raw = request("GET", f"{base}/api/v1/billing/balance", token)
    report["balance_status"] = status
    if status == 200:
        report["balance_end"] = json.loads(raw).get("balance")
    for name, ep_id in state["endpoints"].items():
        status, raw = request("GET", f"{base}/api/v1/endpoints/{ep_id}/usage", token)
        try:
            report["usage"][name] = json.loads(raw) if status == 200 else {"status": status}
        except ValueError:
            report["usage"][name] = {"status": status}
    with open(out_json, "w") as f:
        json.dump(report, f, indent=1)


def cmd_smoke(url, mode, key, body):
    status, raw = request("POST", url, key, json.loads(body))
    text = raw.decode("utf-8", "replace")
    if status != 200:
        sys.exit(f"sy_client: smoke {url} -> {status}: {text[:500]}")
    if mode == "plain":
        doc = json.loads(text)
        if not doc.get("choices"):
            sys.exit(f"sy_client: smoke {url}: no choices in {text[:500]}")
    else:
        events = [l[6:] for l in text.splitlines() if l.startswith("data: ")]
        if not events or events[-1].strip() != "[DONE]":
            sys.exit(f"sy_client: smoke {url}: stream does not end in [DONE]: {text[-300:]!r}")
        chunks = [json.loads(e) for e in events[:-1]]
        if not any(c.get("usage") for c in chunks):
            print(f"sy_client: warning: stream from {url} carries no usage chunk", file=sys.stderr)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"wait": cmd_wait, "setup": cmd_setup, "report": cmd_report, "smoke": cmd_smoke}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    fn(*args)


if __name__ == "__main__":
    main()

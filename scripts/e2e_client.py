#!/usr/bin/env python3
"""End-to-end client for scripts/e2e.sh.

Drives a running Switchyard gateway with the official `openai` Python SDK,
against a real upstream (llama.cpp llama-server serving SmolLM2 as `smollm2`),
and compares the usage Switchyard recorded with what the upstream reported.

Steps:
  1. management API (admin token): create a user, grant credits;
     (user token): create an external `llm` endpoint pointing at the upstream.
  2. SDK through the gateway: models.list, chat (non-stream), chat stream with
     include_usage, chat stream without include_usage, embeddings (base64 and
     float), legacy completions; one call with a bad key (must be a 401).
  3. usage: per-request detailed records (matched by x-request-id), the
     endpoint summary, and the billing balance.

Configuration (environment):
  E2E_GATEWAY_URL         http://127.0.0.1:PORT (no /v1)           required
  SWITCHYARD_ADMIN_TOKEN  admin bearer token                         required
  E2E_UPSTREAM_URL        upstream OpenAI base URL incl. /v1         required
  E2E_UPSTREAM_MODEL      model id the upstream serves (smollm2)
  E2E_ENDPOINT_NAME       endpoint name / SDK model (smollm2-e2e)
  E2E_CREDITS             credits granted to the user (1000)
  E2E_HTTP_TIMEOUT        per-request timeout, seconds (30)
  E2E_USAGE_WAIT          max seconds to wait for usage records (15)
  E2E_RESULT_FILE         if set, "PASSED FAILED" is written there

Prints one "PASS name" / "FAIL name: detail" line per check and
"client: N passed, M failed". Exit status 0 only if nothing failed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

try:
    import anthropic
    import openai
    from openai import OpenAI
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"FAIL import openai: {exc}", flush=True)
    sys.exit(2)


def env(name: str, default: str | None = None) -> str:
    val = os.environ.get(name, default)
    if val is None or val == "":
        print(f"FAIL config: environment variable {name} is required", flush=True)
        sys.exit(2)
    return val


GATEWAY = env("E2E_GATEWAY_URL").rstrip("/")
ADMIN_TOKEN = env("SWITCHYARD_ADMIN_TOKEN")
UPSTREAM_URL = env("E2E_UPSTREAM_URL").rstrip("/")
UPSTREAM_MODEL = env("E2E_UPSTREAM_MODEL", "smollm2")
ENDPOINT_NAME = env("E2E_ENDPOINT_NAME", "smollm2-e2e")
CREDITS = int(env("E2E_CREDITS", "1000"))
TIMEOUT = float(env("E2E_HTTP_TIMEOUT", "30"))
USAGE_WAIT = float(env("E2E_USAGE_WAIT", "15"))
RESULT_FILE = os.environ.get("E2E_RESULT_FILE", "")

EMBED_DIM = 576  # SmolLM2-135M hidden size
MAX_TOKENS = 16
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Name three colors of the rainbow."},
]
COMPLETION_PROMPT = "The capital of France is"

passed = 0
failed = 0


def check(name: str, ok: bool, detail: object = "") -> bool:
    """Count and print one check; `detail` is shown only on failure."""
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", flush=True)
    return ok


def info(msg: str) -> None:
    print(f"  .. {msg}", flush=True)


def finish() -> None:
    print(f"client: {passed} passed, {failed} failed", flush=True)
    if RESULT_FILE:
        with open(RESULT_FILE, "w", encoding="utf-8") as fh:
            fh.write(f"{passed} {failed}\n")
    sys.exit(0 if failed == 0 else 1)


class Fatal(Exception):
    """A setup step failed; later checks cannot run."""


# --------------------------------------------------------------- HTTP ------
def api(method: str, path: str, token: str, body: object | None = None) -> tuple[int, object, dict]:
    """JSON request to the management API. Returns (status, parsed body, headers)."""
    data = None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(GATEWAY + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), dict(exc.headers or {})
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")[:500]
    return status, parsed, hdrs


def short(obj: object, limit: int = 400) -> str:
    s = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return s if len(s) <= limit else s[:limit] + "..."


def is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def get_path(obj: object, *keys: str) -> object:
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


# -------------------------------------------------------------- setup ------
def setup() -> dict:
    # User (admin token).
    st, body, _ = api("POST", "/api/v1/users", ADMIN_TOKEN, {"name": "e2e"})
    user_id = get_path(body, "user", "id")
    user_token = get_path(body, "token")
    if not check("create user -> 201 {user:{id,name},token}",
                 st == 201 and user_id not in (None, "") and isinstance(user_token, str)
                 and get_path(body, "user", "name") == "e2e",
                 f"status {st}: {short(body)}"):
        raise Fatal("create user")

    # Unauthenticated / wrong admin token must be rejected.
    st_bad, body_bad, _ = api("POST", "/api/v1/users", "not-the-admin-token", {"name": "nope"})
    check("create user with a bad admin token -> 401/403", st_bad in (401, 403),
          f"status {st_bad}: {short(body_bad)}")

    # Credits (admin token).
    st, body, _ = api("POST", f"/api/v1/users/{user_id}/credits", ADMIN_TOKEN,
                      {"credits": CREDITS, "reason": "e2e"})
    bal = get_path(body, "balance")
    if not check(f"grant {CREDITS:g} credits -> balance {CREDITS:g}",
                 st in (200, 201) and is_num(bal) and abs(bal - CREDITS) < 1e-9,
                 f"status {st}: {short(body)}"):
        raise Fatal("grant credits")

    # Endpoint (user token). No upstream.model: Switchyard asks the upstream.
    st, body, _ = api("POST", "/api/v1/endpoints", user_token, {
        "name": ENDPOINT_NAME,
        "modality": "llm",
        "provider": "external",
        "upstream": {"base_url": UPSTREAM_URL, "api": "openai"},
    })
    ep = get_path(body, "endpoint") or {}
    ep_id = get_path(body, "endpoint", "id")
    key = get_path(body, "api_key")
    if not check("create endpoint -> 201 {endpoint,api_key,key}",
                 st == 201 and ep_id not in (None, "") and isinstance(key, str)
                 and isinstance(get_path(body, "key"), dict),
                 f"status {st}: {short(body)}"):
        raise Fatal("create endpoint")
    check("api_key starts with sy_live_", key.startswith("sy_live_"), f"got prefix {key[:8]!r}")
    check(f"endpoint.upstream_model discovered as {UPSTREAM_MODEL!r}",
          ep.get("upstream_model") == UPSTREAM_MODEL, f"got {ep.get('upstream_model')!r}")
    check("api_key not echoed inside key metadata", key not in json.dumps(get_path(body, "key")),
          "plaintext key found in `key`")

    st, body, _ = api("GET", "/api/v1/billing/balance", user_token)
    bal = get_path(body, "balance")
    if not check(f"balance before calls == {CREDITS:g}", st == 200 and is_num(bal) and abs(bal - CREDITS) < 1e-9,
                 f"status {st}: {short(body)}"):
        raise Fatal("balance")
    return {"user_id": user_id, "user_token": user_token, "endpoint_id": ep_id, "api_key": key,
            "balance_before": bal}


# ---------------------------------------------------------------- SDK ------
def usage_of(obj: object) -> tuple[int, int] | None:
    u = getattr(obj, "usage", None)
    if u is None:
        return None
    return (int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0))


def sdk_calls(ctx: dict) -> list[dict]:
    """Run the SDK calls. Returns one dict per inference call:
    {name, rid, usage: (prompt, completion) | None, expect: 'exact' | 'nonzero', content}."""
    client = OpenAI(base_url=GATEWAY + "/v1", api_key=ctx["api_key"], timeout=TIMEOUT, max_retries=0)
    calls: list[dict] = []

    def rid_check(name: str, raw) -> str | None:
        rid = raw.headers.get("x-request-id")
        check(f"{name}: x-request-id header", bool(rid), "missing")
        return rid

    # models.list
    try:
        models = client.models.list()
        ids = [m.id for m in models.data]
        check(f"models.list contains {ENDPOINT_NAME!r}", ENDPOINT_NAME in ids, f"got {ids}")
    except Exception as exc:
        check("models.list", False, repr(exc))

    # Wrong key -> 401 (AuthenticationError), no retries.
    try:
        bad = OpenAI(base_url=GATEWAY + "/v1", api_key="sy_live_" + uuid.uuid4().hex, timeout=TIMEOUT,
                     max_retries=0)
        bad.chat.completions.create(model=ENDPOINT_NAME, messages=CHAT_MESSAGES, max_tokens=1)
        check("chat with an unknown API key -> 401", False, "call succeeded")
    except openai.AuthenticationError:
        check("chat with an unknown API key -> 401", True)
    except Exception as exc:
        check("chat with an unknown API key -> 401", False, repr(exc))

    # 1. Chat, non-streamed.
    name = "chat"
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=ENDPOINT_NAME, messages=CHAT_MESSAGES, temperature=0, max_tokens=MAX_TOKENS)
        rid = rid_check(name, raw)
        resp = raw.parse()
        content = resp.choices[0].message.content if resp.choices else None
        u = usage_of(resp)
        check(f"{name}: content", bool(content), f"choices={resp.choices!r}")
        check(f"{name}: usage in response", u is not None and u[0] > 0 and u[1] > 0, f"usage={resp.usage!r}")
        info(f"{name}: rid={rid} model={resp.model!r} usage={u} content={content!r}")
        calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": content})
    except Exception as exc:
        check(name, False, repr(exc))

    # 2. Chat, streamed, include_usage.
    name = "chat stream include_usage"
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=ENDPOINT_NAME, messages=CHAT_MESSAGES, temperature=0, max_tokens=MAX_TOKENS,
            stream=True, stream_options={"include_usage": True})
        rid = rid_check(name, raw)
        parts, usage_chunks, n_chunks, last_has_usage = [], [], 0, False
        for chunk in raw.parse():
            n_chunks += 1
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    parts.append(ch.delta.content)
            last_has_usage = chunk.usage is not None
            if chunk.usage is not None:
                usage_chunks.append(chunk)
        content = "".join(parts)
        check(f"{name}: content deltas", bool(content), f"{n_chunks} chunks, no content")
        check(f"{name}: exactly one usage chunk, last, with choices=[]",
              len(usage_chunks) == 1 and last_has_usage and not usage_chunks[0].choices,
              f"{len(usage_chunks)} usage chunks, last_has_usage={last_has_usage}")
        u = usage_of(usage_chunks[-1]) if usage_chunks else None
        check(f"{name}: usage values", u is not None and u[0] > 0 and u[1] > 0, f"usage={u}")
        info(f"{name}: rid={rid} chunks={n_chunks} usage={u} content={content!r}")
        calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": content})
    except Exception as exc:
        check(name, False, repr(exc))

    # 3. Chat, streamed, WITHOUT include_usage: the client must not see usage.
    name = "chat stream no usage"
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=ENDPOINT_NAME, messages=CHAT_MESSAGES, temperature=0, max_tokens=MAX_TOKENS, stream=True)
        rid = rid_check(name, raw)
        parts, n_chunks, with_usage, empty_choices = [], 0, 0, 0
        for chunk in raw.parse():
            n_chunks += 1
            if chunk.usage is not None:
                with_usage += 1
            if not chunk.choices:
                empty_choices += 1
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    parts.append(ch.delta.content)
        content = "".join(parts)
        check(f"{name}: content deltas", bool(content), f"{n_chunks} chunks, no content")
        check(f"{name}: no chunk carries usage", with_usage == 0, f"{with_usage} chunks with usage")
        check(f"{name}: no choices=[] chunk", empty_choices == 0, f"{empty_choices} chunks with no choices")
        info(f"{name}: rid={rid} chunks={n_chunks} content={content!r}")
        calls.append({"name": name, "rid": rid, "usage": None, "expect": "nonzero", "content": content})
    except Exception as exc:
        check(name, False, repr(exc))

    # 4./5. Embeddings: SDK default (base64 on the wire) and float.
    vectors = {}
    for enc in ("base64", "float"):
        name = f"embeddings {enc}"
        try:
            kwargs = {} if enc == "base64" else {"encoding_format": "float"}
            raw = client.embeddings.with_raw_response.create(model=ENDPOINT_NAME, input="hello world", **kwargs)
            rid = rid_check(name, raw)
            resp = raw.parse()
            wire = json.loads(raw.http_response.content)
            wire_emb = get_path(wire, "data")[0].get("embedding") if get_path(wire, "data") else None
            want_type = str if enc == "base64" else list
            check(f"{name}: wire format is {want_type.__name__}", isinstance(wire_emb, want_type),
                  f"got {type(wire_emb).__name__}")
            vec = list(resp.data[0].embedding) if resp.data else []
            check(f"{name}: {EMBED_DIM}-dim finite vector",
                  len(vec) == EMBED_DIM and all(is_num(x) for x in vec), f"len={len(vec)}")
            u = (int(resp.usage.prompt_tokens), 0) if resp.usage is not None else None
            check(f"{name}: usage in response", u is not None and u[0] > 0, f"usage={resp.usage!r}")
            vectors[enc] = vec
            info(f"{name}: rid={rid} usage={u}")
            calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": None})
        except Exception as exc:
            check(name, False, repr(exc))
    if len(vectors) == 2 and len(vectors["base64"]) == len(vectors["float"]) > 0:
        diff = max(abs(a - b) for a, b in zip(vectors["base64"], vectors["float"]))
        check("embeddings: base64 and float vectors agree", diff < 1e-4, f"max abs diff {diff:g}")

    # 6. Legacy completions.
    name = "completions"
    try:
        raw = client.completions.with_raw_response.create(
            model=ENDPOINT_NAME, prompt=COMPLETION_PROMPT, temperature=0, max_tokens=MAX_TOKENS)
        rid = rid_check(name, raw)
        resp = raw.parse()
        text = resp.choices[0].text if resp.choices else None
        u = usage_of(resp)
        check(f"{name}: text", bool(text), f"choices={resp.choices!r}")
        check(f"{name}: usage in response", u is not None and u[0] > 0 and u[1] > 0, f"usage={resp.usage!r}")
        info(f"{name}: rid={rid} usage={u} text={text!r}")
        calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": text})
    except Exception as exc:
        check(name, False, repr(exc))

    anthropic_calls(ctx, calls)
    return calls


def anthropic_calls(ctx: dict, calls: list[dict]) -> None:
    """The official Anthropic SDK through the gateway's /v1/messages to the
    OpenAI-compatible llama-server: the gateway translates both ways."""
    client = anthropic.Anthropic(base_url=GATEWAY, api_key=ctx["api_key"], timeout=TIMEOUT, max_retries=0)
    question = [{"role": "user", "content": "Say hello in one short sentence."}]

    name = "anthropic messages"
    try:
        raw = client.messages.with_raw_response.create(
            model=ENDPOINT_NAME, max_tokens=MAX_TOKENS, system="You are terse.",
            messages=question)
        rid = raw.headers.get("x-request-id")
        check(f"{name}: x-request-id header", bool(rid), "missing")
        msg = raw.parse()
        text = "".join(block.text for block in msg.content if block.type == "text")
        check(f"{name}: a text block", bool(text), f"content={msg.content!r}")
        check(f"{name}: stop_reason", msg.stop_reason in ("end_turn", "max_tokens"), f"{msg.stop_reason!r}")
        u = (int(msg.usage.input_tokens), int(msg.usage.output_tokens))
        check(f"{name}: usage", u[0] > 0 and u[1] > 0, f"usage={msg.usage!r}")
        info(f"{name}: rid={rid} usage={u} text={text!r}")
        calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": text})
    except Exception as exc:
        check(name, False, repr(exc))

    name = "anthropic messages stream"
    try:
        raw = client.messages.with_raw_response.create(
            model=ENDPOINT_NAME, max_tokens=MAX_TOKENS, messages=question, stream=True)
        rid = raw.headers.get("x-request-id")
        check(f"{name}: x-request-id header", bool(rid), "missing")
        kinds, parts, input_tokens, output_tokens = [], [], 0, 0
        for event in raw.parse():
            kinds.append(event.type)
            if event.type == "message_start":
                input_tokens = int(event.message.usage.input_tokens or 0)
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                parts.append(event.delta.text)
            elif event.type == "message_delta" and event.usage is not None:
                output_tokens = int(event.usage.output_tokens or 0)
                input_tokens = int(getattr(event.usage, "input_tokens", None) or input_tokens)
        text = "".join(parts)
        order_ok = (bool(kinds) and kinds[0] == "message_start" and kinds[-1] == "message_stop"
                    and "message_delta" in kinds and "content_block_start" in kinds)
        check(f"{name}: events message_start … message_stop", order_ok, f"{kinds}")
        check(f"{name}: text deltas", bool(text), f"{kinds}")
        u = (input_tokens, output_tokens)
        check(f"{name}: usage", u[0] > 0 and u[1] > 0, f"usage={u}")
        info(f"{name}: rid={rid} events={len(kinds)} usage={u} text={text!r}")
        calls.append({"name": name, "rid": rid, "usage": u, "expect": "exact", "content": text})
    except Exception as exc:
        check(name, False, repr(exc))


# -------------------------------------------------------------- usage ------
N_INFERENCE_CALLS = 8  # chat, 2 streams, 2 embeddings, completions, 2 Anthropic Messages


def fetch_usage(ctx: dict, expected: int) -> tuple[dict | None, dict | None, object]:
    """Poll (usage is flushed in batches) until the detailed total reaches `expected`."""
    ep, tok = ctx["endpoint_id"], ctx["user_token"]
    time.sleep(1.5)
    deadline = time.monotonic() + USAGE_WAIT
    detailed = None
    while True:
        st, body, _ = api("GET", f"/api/v1/endpoints/{ep}/usage/detailed?page=1&limit=100", tok)
        detailed = body if st == 200 and isinstance(body, dict) else {"_status": st, "_body": body}
        total = detailed.get("total")
        if (is_num(total) and total >= expected) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    # The summary and balance may lag the detailed log by a flush; poll briefly too.
    deadline = time.monotonic() + 5
    while True:
        st, body, _ = api("GET", f"/api/v1/endpoints/{ep}/usage?period=day", tok)
        summary = body if st == 200 and isinstance(body, dict) else {"_status": st, "_body": body}
        st_b, bal_body, _ = api("GET", "/api/v1/billing/balance", tok)
        bal = get_path(bal_body, "balance") if st_b == 200 else None
        reqs = get_path(summary, "usage", "requests")
        if ((is_num(reqs) and reqs >= expected and is_num(bal) and bal < ctx["balance_before"])
                or time.monotonic() >= deadline):
            break
        time.sleep(0.5)
    return detailed, summary, bal_body if st_b == 200 else {"_status": st_b, "_body": bal_body}


def check_usage(ctx: dict, calls: list[dict]) -> None:
    expected = N_INFERENCE_CALLS
    detailed, summary, bal_body = fetch_usage(ctx, expected)

    # ---- detailed log
    data = detailed.get("data") if isinstance(detailed, dict) else None
    if not check("usage/detailed -> 200 {data,page,limit,total}",
                 isinstance(data, list) and detailed.get("page") == 1 and detailed.get("limit") == 100
                 and is_num(detailed.get("total")),
                 short(detailed)):
        data = []
    check(f"usage/detailed total == {expected} inference calls",
          detailed.get("total") == expected and len(data) == expected,
          f"total={detailed.get('total')} rows={len(data)} "
          f"methods={[r.get('method') for r in data if isinstance(r, dict)]}")

    by_rid = {r.get("request_id"): r for r in data if isinstance(r, dict)}
    known = [c for c in calls if c["rid"]]
    for c in calls:
        name, rid = c["name"], c["rid"]
        rec = by_rid.get(rid) if rid else None
        if not check(f"usage record for {name} (request_id={rid})", rec is not None,
                     f"not found among {list(by_rid)}"):
            continue
        inp, out = rec.get("input_tokens"), rec.get("output_tokens")
        fields_ok = all(k in rec for k in ("method", "input_tokens", "output_tokens", "usage_source",
                                           "success", "latency_ms", "cost_micro_usd"))
        check(f"{name}: record has method/tokens/usage_source/success/latency_ms/cost_micro_usd",
              fields_ok, short(rec))
        check(f"{name}: success=true", rec.get("success") is True, f"success={rec.get('success')!r}")
        check(f"{name}: usage_source=upstream", rec.get("usage_source") == "upstream",
              f"usage_source={rec.get('usage_source')!r}")
        check(f"{name}: latency_ms >= 0", is_num(rec.get("latency_ms")) and rec["latency_ms"] >= 0,
              f"latency_ms={rec.get('latency_ms')!r}")
        if c["expect"] == "exact" and c["usage"] is not None:
            want_in, want_out = c["usage"]
            check(f"{name}: recorded tokens == upstream usage",
                  inp == want_in and out == want_out,
                  f"recorded in={inp} out={out}, upstream reported in={want_in} out={want_out}")
        elif c["expect"] == "nonzero":
            check(f"{name}: recorded tokens non-zero",
                  is_num(inp) and inp > 0 and is_num(out) and out > 0, f"in={inp} out={out}")
            # Same prompt, temperature 0: if the text equals the include_usage
            # stream's text, the token counts must be the same too.
            ref = next((x for x in calls if x["name"] == "chat stream include_usage"), None)
            if ref and ref["usage"] and ref["content"] == c["content"]:
                check(f"{name}: recorded tokens == include_usage stream's usage (same output)",
                      (inp, out) == tuple(ref["usage"]),
                      f"recorded in={inp} out={out}, include_usage stream in={ref['usage'][0]} "
                      f"out={ref['usage'][1]}")
            elif ref:
                info(f"{name}: output differs from the include_usage stream; exact comparison skipped")
        else:
            check(f"{name}: upstream usage available for comparison", False, "SDK saw no usage")
        info(f"{name}: record method={rec.get('method')!r} in={inp} out={out} "
             f"latency_ms={rec.get('latency_ms')} cost_micro_usd={rec.get('cost_micro_usd')}")

    # Newest first: our calls were sequential, so records appear in reverse call order.
    pos = [i for c in known for i, r in enumerate(data) if isinstance(r, dict) and r.get("request_id") == c["rid"]]
    if len(pos) == len(known) and len(pos) > 1:
        check("usage/detailed ordered newest first", pos == sorted(pos, reverse=True),
              f"positions of calls in call order: {pos}")

    # ---- summary
    u = get_path(summary, "usage")
    if check("usage?period=day -> 200 {usage:{...}}", isinstance(u, dict), short(summary)):
        check(f"usage summary requests == {expected}", u.get("requests") == expected,
              f"requests={u.get('requests')!r}")
        check("usage summary errors == 0", u.get("errors") == 0, f"errors={u.get('errors')!r}")
        rec_in = sum(r.get("input_tokens") or 0 for r in data if isinstance(r, dict))
        rec_out = sum(r.get("output_tokens") or 0 for r in data if isinstance(r, dict))
        check("usage summary tokens == sum of detailed records",
              u.get("input_tokens") == rec_in and u.get("output_tokens") == rec_out,
              f"summary in={u.get('input_tokens')} out={u.get('output_tokens')}, records in={rec_in} "
              f"out={rec_out}")
        check("usage summary credits > 0", is_num(u.get("credits")) and u["credits"] > 0,
              f"credits={u.get('credits')!r}")
        lat = u.get("latency_ms") or {}
        p = [lat.get(k) for k in ("p50", "p95", "p99")] if isinstance(lat, dict) else []
        check("usage summary latency p50 <= p95 <= p99",
              len(p) == 3 and all(is_num(x) for x in p) and p[0] <= p[1] <= p[2], f"latency_ms={lat!r}")
        info(f"summary: {short(u)}")

    # ---- balance
    after = get_path(bal_body, "balance")
    check("balance decreased", is_num(after) and after < ctx["balance_before"],
          f"before={ctx['balance_before']} after={short(bal_body)}")
    if isinstance(u, dict) and is_num(u.get("credits")) and is_num(after):
        info(f"balance: before={ctx['balance_before']} after={after} "
             f"spent={ctx['balance_before'] - after:g} summary.credits={u.get('credits')}")


def main() -> None:
    print(f"client: openai SDK {openai.__version__}, gateway {GATEWAY}, upstream {UPSTREAM_URL}", flush=True)
    try:
        ctx = setup()
        calls = sdk_calls(ctx)
        check(f"all {N_INFERENCE_CALLS} inference calls completed", len(calls) == N_INFERENCE_CALLS,
              f"{len(calls)} completed")
        check_usage(ctx, calls)
    except Fatal as exc:
        print(f"  .. setup step failed ({exc}); skipping the remaining checks", flush=True)
    except Exception:  # a bug or an unexpected response shape: count it, keep the summary line
        traceback.print_exc()
        check("client ran to completion", False, "unexpected exception (traceback above)")
    finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Deploy end-to-end checks for scripts/e2e.sh.

Proves, against a running Switchyard whose self-hosted provisioner starts a
real llama.cpp `llama-server`, that a deploy from a Hugging Face model id and
a training-complete webhook each end with an endpoint the official `openai`
SDK can call through the gateway, and that a deploy whose Switchyard is
killed with SIGKILL mid-way finishes after a restart with exactly one server.

Subcommands (e2e.sh runs them in this order):

  hub           a fake Hugging Face Hub (`GET /api/models/{id}`); binds
                127.0.0.1:0, writes its port to --port-file, serves from a
                thread until SIGTERM, appends each request path to --log.
  flow          user + credits; deploy preview; `POST /api/v1/endpoints/deploy`
                with the event stream (SSE) open: stage order, the
                `DEPLOYMENT_COMPLETE` event with the new key; SDK chat (plain and
                streamed) and usage records == what llama-server reported; the
                signed training webhook (bad signature 401, 202, repeat 200
                duplicate), the key from `GET .../deployment`, SDK chat; DELETE
                both endpoints and their llama-server processes exit.
  crash-start   starts a deploy and, as soon as `GET .../deployment` shows
                stage `provisioning` or `waiting_ready`, kills Switchyard
                (E2E_SWITCHYARD_PID) with SIGKILL.
  crash-finish  after e2e.sh restarted Switchyard on the same data dir: the job
                succeeds, exactly one llama-server serves the endpoint, the SDK
                calls it, DELETE stops it, and no server of this run is left.

Configuration (environment):
  E2E_GATEWAY_URL                     http://127.0.0.1:PORT (no /v1)     required
  SWITCHYARD_ADMIN_TOKEN              admin bearer token                  required
  SWITCHYARD_TRAINING_WEBHOOK_SECRET  webhook HMAC key                    required (flow)
  E2E_DATA_DIR                        Switchyard's --data-dir             required
  E2E_CONTEXT_FILE                    JSON handed from phase to phase     required
  E2E_HUB_LOG                         the fake Hub's request log          (flow)
  E2E_SWITCHYARD_PID                  the process crash-start kills       (crash-start)
  E2E_MODEL_ID                        HuggingFaceTB/SmolLM2-135M-Instruct
  E2E_SELF_HOSTED_PORTS               Switchyard's self-hosted port range (18200-18299)
  E2E_DEPLOY_WAIT                     seconds for one deploy to finish    (120)
  E2E_HTTP_TIMEOUT                    per-request timeout, seconds        (30)
  E2E_RESULT_FILE                     if set, "PASSED FAILED" is written there

Prints one "PASS name" / "FAIL name: detail" line per check and
"deploy <phase>: N passed, M failed". Exit status 0 only if nothing failed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEPLOY_NAME = "smol-deployed"
TRAINED_NAME = "smol-trained"
CRASH_NAME = "smol-crash"
STAGES = ["analyzing", "selecting", "provisioning", "waiting_ready", "issuing_key", "ready"]
MAX_TOKENS = 16
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Name three colors of the rainbow."},
]

passed = 0
failed = 0


# ------------------------------------------------------------- fake Hub ---
def hub_document(model_id: str) -> dict:
    """The Hub's model-info answer for SmolLM2-135M-Instruct (what Switchyard analyses)."""
    return {
        "id": model_id,
        "sha": hashlib.sha1(model_id.encode()).hexdigest(),
        "pipeline_tag": "text-generation",
        "safetensors": {"parameters": {"BF16": 134515008}, "total": 134515008},
        "gated": False,
        "private": False,
        "library_name": "transformers",
    }


def run_hub(port_file: str, log_file: str, models: list[str]) -> None:
    """Serves `GET /api/models/{id}[/revision/{rev}]` for `models` until SIGTERM."""
    log_lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "fake-hf-hub/1"

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            path = urllib.parse.urlsplit(self.path).path
            with log_lock, open(log_file, "a", encoding="utf-8") as log:
                log.write(f"GET {path}\n")
            parts = path.strip("/").split("/")
            status, body = 404, {"error": "Repository not found"}
            if len(parts) >= 4 and parts[:2] == ["api", "models"]:
                model_id = f"{parts[2]}/{parts[3]}"
                rest = parts[4:]
                if model_id in models and (not rest or (len(rest) == 2 and rest[0] == "revision")):
                    status, body = 200, hub_document(model_id)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stderr.write("fake-hub: " + (format % args) + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    tmp = f"{port_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{server.server_address[1]}\n")
    os.replace(tmp, port_file)
    sys.stderr.write(f"fake-hub: serving {models} on 127.0.0.1:{server.server_address[1]}\n")
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------ reporting ---
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


class Fatal(Exception):
    """A step failed that later checks depend on."""


def env(name: str, default: str | None = None) -> str:
    val = os.environ.get(name, default)
    if val is None or val == "":
        print(f"FAIL config: environment variable {name} is required", flush=True)
        sys.exit(2)
    return val


def short(obj: object, limit: int = 400) -> str:
    s = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return s if len(s) <= limit else s[:limit] + "..."


def get_path(obj: object, *keys: str) -> object:
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def is_num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ----------------------------------------------------------------- HTTP ---
class Gateway:
    """The management API and the SDK factory of one Switchyard."""

    def __init__(self) -> None:
        self.url = env("E2E_GATEWAY_URL").rstrip("/")
        self.admin = env("SWITCHYARD_ADMIN_TOKEN")
        self.timeout = float(env("E2E_HTTP_TIMEOUT", "30"))

    def call(self, method: str, path: str, token: str | None, body: object | None = None,
             raw: bytes | None = None, headers: dict | None = None) -> tuple[int, object]:
        """JSON request; returns (status, parsed body)."""
        hdrs = {"Accept": "application/json"}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode("utf-8", "replace")[:500]
        return status, parsed

    def sdk(self, key: str):
        from openai import OpenAI
        return OpenAI(base_url=self.url + "/v1", api_key=key, timeout=self.timeout, max_retries=0)


class EventStream:
    """`GET /api/v1/events` as Server-Sent Events, read by a thread into a queue."""

    def __init__(self, gw: Gateway, token: str) -> None:
        parts = urllib.parse.urlsplit(gw.url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=gw.timeout)
        self.conn.request("GET", "/api/v1/events",
                          headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("content-type", "")
        # Keep-alive comments come every 15 s; 60 s of silence is an error.
        if self.conn.sock is not None:
            self.conn.sock.settimeout(60)
        self.events: queue.Queue = queue.Queue()
        self.error: Exception | None = None
        self.closed = False
        self.thread = threading.Thread(target=self._read, name="sse", daemon=True)
        if self.status == 200:
            self.thread.start()

    def _read(self) -> None:
        fields: dict = {"data": []}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text == "":
                    if fields["data"]:
                        data = "\n".join(fields["data"])
                        try:
                            doc = json.loads(data)
                        except ValueError:
                            doc = {"_unparsed": data}
                        self.events.put({"id": fields.get("id"), "event": fields.get("event"), "data": doc})
                    fields = {"data": []}
                    continue
                if text.startswith(":"):
                    continue
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    fields["data"].append(value)
                else:
                    fields[name] = value
        except Exception as exc:  # the socket was closed by close(), or the server went away
            if not self.closed:
                self.error = exc
        finally:
            self.events.put(None)

    def next(self, deadline: float) -> dict | None:
        """The next event, or None at the deadline or the end of the stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return self.events.get(timeout=remaining)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        if self.thread.is_alive():
            self.thread.join(timeout=5)


# ------------------------------------------------------------ processes ---
def state_dir() -> str:
    return os.path.join(env("E2E_DATA_DIR"), "self-hosted")


def state_files() -> list[dict]:
    """The self-hosted provisioner's state files (one per server it started)."""
    out = []
    try:
        names = sorted(os.listdir(state_dir()))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(state_dir(), name), encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        doc["_file"] = name
        out.append(doc)
    return out


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return False
    return not stat.rpartition(")")[2].strip().startswith("Z")


def server_processes(served_name: str | None = None) -> list[int]:
    """llama-server processes whose stdout is a log in this run's data dir
    (so: started by this run's Switchyard), optionally serving `served_name`."""
    prefix = state_dir() + os.sep
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
            stdout = os.readlink(f"/proc/{pid}/fd/1")
        except OSError:
            continue
        if not args or "llama-server" not in os.path.basename(args[0]):
            continue
        if not stdout.startswith(prefix) or not alive(pid):
            continue
        if served_name is not None:
            served = args[args.index("-a") + 1] if "-a" in args[:-1] else None
            if served != served_name:
                continue
        pids.append(pid)
    return sorted(pids)


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Waits until none of `pids` runs; returns the ones still running."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


# -------------------------------------------------------------- context ---
def load_context() -> dict:
    with open(env("E2E_CONTEXT_FILE"), encoding="utf-8") as fh:
        return json.load(fh)


def save_context(ctx: dict) -> None:
    path = env("E2E_CONTEXT_FILE")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(ctx, fh)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------ API steps ---
def create_user(gw: Gateway) -> dict:
    st, body = gw.call("POST", "/api/v1/users", gw.admin, {"name": "e2e-deploy"})
    user_id, token = get_path(body, "user", "id"), get_path(body, "token")
    if not check("deploy user created", st == 201 and bool(user_id) and isinstance(token, str),
                 f"status {st}: {short(body)}"):
        raise Fatal("create user")
    st, body = gw.call("POST", f"/api/v1/users/{user_id}/credits", gw.admin,
                       {"credits": 1000, "reason": "e2e deploy"})
    if not check("deploy user granted 1000 credits", st in (200, 201) and get_path(body, "balance") == 1000,
                 f"status {st}: {short(body)}"):
        raise Fatal("credits")
    return {"user_id": user_id, "user_token": token}


def deploy(gw: Gateway, token: str, model_id: str, name: str) -> str:
    """`POST /api/v1/endpoints/deploy` with provider self-hosted; returns the endpoint id."""
    st, body = gw.call("POST", "/api/v1/endpoints/deploy", token,
                       {"model_id": model_id, "model_name": name, "provider": "self-hosted"})
    ep = get_path(body, "endpoint_id")
    if not check(f"deploy {name}: 202 {{endpoint_id, job_id, status: provisioning}}",
                 st == 202 and bool(ep) and bool(get_path(body, "job_id"))
                 and get_path(body, "status") == "provisioning",
                 f"status {st}: {short(body)}"):
        raise Fatal(f"deploy {name}")
    return str(ep)


def deployment(gw: Gateway, token: str, ep: str) -> tuple[int, dict]:
    st, body = gw.call("GET", f"/api/v1/endpoints/{ep}/deployment", token)
    return st, body if isinstance(body, dict) else {"_body": body}


def wait_finished(gw: Gateway, token: str, ep: str, seconds: float, label: str) -> tuple[dict, str | None]:
    """Polls the deployment until it finished; returns (job view, api_key of
    the first answer after success)."""
    deadline = time.monotonic() + seconds
    stages: list[str] = []
    last: dict = {}
    while True:
        st, body = deployment(gw, token, ep)
        job = get_path(body, "deployment") or {}
        if st == 200 and isinstance(job, dict):
            last = job
            stage = job.get("stage")
            if stage and (not stages or stages[-1] != stage):
                stages.append(stage)
            if job.get("state") in ("succeeded", "failed"):
                info(f"{label}: stages seen by polling {stages}")
                return job, body.get("api_key")
        if time.monotonic() >= deadline:
            info(f"{label}: stages seen by polling {stages}; last answer {st} {short(body)}")
            return last, None
        time.sleep(0.25)


def check_one_server(name: str) -> dict | None:
    """Exactly one state file and one running llama-server serve `name`; returns the state."""
    states = [s for s in state_files() if s.get("served_model_name") == name]
    procs = server_processes(name)
    ok = check(f"{name}: exactly one self-hosted state file and one llama-server process",
               len(states) == 1 and len(procs) == 1 and states[0].get("pid") == procs[0],
               f"state files {[(s['_file'], s.get('pid')) for s in states]}, processes {procs}")
    if not ok or not states:
        return None
    state = states[0]
    port = state.get("port")
    ports = env("E2E_SELF_HOSTED_PORTS", "18200-18299")
    low, _, high = ports.partition("-")
    check(f"{name}: llama-server port {port} within SWITCHYARD_SELF_HOSTED_PORTS {ports}",
          isinstance(port, int) and int(low) <= port <= int(high), short(state))
    info(f"{name}: llama-server pid={state.get('pid')} port={port} log={state.get('log')}")
    return state


def usage_records(gw: Gateway, token: str, ep: str, expected: int, wait: float = 15) -> list[dict]:
    """The endpoint's detailed usage records once `expected` arrived (bounded wait)."""
    deadline = time.monotonic() + wait
    while True:
        st, body = gw.call("GET", f"/api/v1/endpoints/{ep}/usage/detailed?page=1&limit=100", token)
        data = get_path(body, "data") if st == 200 else None
        if isinstance(data, list) and len(data) >= expected:
            return data
        if time.monotonic() >= deadline:
            return data if isinstance(data, list) else []
        time.sleep(0.5)


def sdk_roundtrip(gw: Gateway, token: str, ep: str, name: str, key: str, stream: bool = True) -> None:
    """SDK chat through the gateway (plain, and streamed with include_usage);
    every usage record must equal the usage llama-server reported."""
    import openai

    client = gw.sdk(key)
    calls = []
    try:
        ids = [m.id for m in client.models.list().data]
        check(f"{name}: SDK models.list contains {name!r}", name in ids, f"got {ids}")
    except openai.OpenAIError as exc:
        check(f"{name}: SDK models.list", False, repr(exc))
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=name, messages=CHAT_MESSAGES, temperature=0, max_tokens=MAX_TOKENS)
        resp = raw.parse()
        content = resp.choices[0].message.content if resp.choices else None
        u = resp.usage
        usage = (u.prompt_tokens, u.completion_tokens) if u else None
        check(f"{name}: SDK chat -> content and usage",
              bool(content) and usage is not None and usage[0] > 0 and usage[1] > 0,
              f"content={content!r} usage={u!r}")
        info(f"{name}: chat model={resp.model!r} usage={usage} content={content!r}")
        calls.append(("chat", raw.headers.get("x-request-id"), usage))
    except openai.OpenAIError as exc:
        check(f"{name}: SDK chat", False, repr(exc))
    if stream:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=name, messages=CHAT_MESSAGES, temperature=0, max_tokens=MAX_TOKENS,
                stream=True, stream_options={"include_usage": True})
            parts, usage_chunks = [], []
            for chunk in raw.parse():
                for ch in chunk.choices:
                    if ch.delta and ch.delta.content:
                        parts.append(ch.delta.content)
                if chunk.usage is not None:
                    usage_chunks.append(chunk.usage)
            u = usage_chunks[-1] if usage_chunks else None
            usage = (u.prompt_tokens, u.completion_tokens) if u else None
            check(f"{name}: SDK chat stream include_usage -> content deltas and one usage chunk",
                  bool("".join(parts)) and len(usage_chunks) == 1 and usage[0] > 0 and usage[1] > 0,
                  f"content={''.join(parts)!r} usage chunks={usage_chunks!r}")
            info(f"{name}: stream usage={usage} content={''.join(parts)!r}")
            calls.append(("chat stream", raw.headers.get("x-request-id"), usage))
        except openai.OpenAIError as exc:
            check(f"{name}: SDK chat stream", False, repr(exc))
    records = {r.get("request_id"): r for r in usage_records(gw, token, ep, len(calls))
               if isinstance(r, dict)}
    for label, rid, usage in calls:
        rec = records.get(rid)
        check(f"{name}: {label} usage record == llama-server's usage {usage} (source upstream)",
              rec is not None and usage is not None
              and (rec.get("input_tokens"), rec.get("output_tokens")) == usage
              and rec.get("usage_source") == "upstream" and rec.get("success") is True,
              f"request_id={rid} record={short(rec)}")


def delete_endpoints(gw: Gateway, token: str, endpoints: dict[str, str], keys: dict[str, str]) -> None:
    """DELETE each endpoint; its llama-server exits, its state file goes, its key stops working."""
    import openai

    pids = {name: [s["pid"] for s in state_files() if s.get("served_model_name") == name]
            for name in endpoints}
    for name, ep in endpoints.items():
        st, body = gw.call("DELETE", f"/api/v1/endpoints/{ep}", token)
        check(f"{name}: DELETE -> 200 terminated, provider cleanup queued",
              st == 200 and get_path(body, "status") == "terminated"
              and get_path(body, "provider_cleanup") == "queued",
              f"status {st}: {short(body)}")
    for name in endpoints:
        left = wait_gone(pids[name], 30)
        check(f"{name}: llama-server {pids[name]} exited after DELETE", bool(pids[name]) and not left,
              f"still running: {left}" if left else "no server was recorded")
        deadline = time.monotonic() + 10
        while any(s.get("served_model_name") == name for s in state_files()) and time.monotonic() < deadline:
            time.sleep(0.2)
        check(f"{name}: state file removed after DELETE",
              not any(s.get("served_model_name") == name for s in state_files()),
              f"state files: {[s['_file'] for s in state_files()]}")
        key = keys.get(name)
        if key:
            try:
                gw.sdk(key).chat.completions.create(model=name, messages=CHAT_MESSAGES, max_tokens=1)
                check(f"{name}: key rejected after DELETE", False, "the call succeeded")
            except openai.AuthenticationError:
                check(f"{name}: key rejected after DELETE (401)", True)
            except openai.OpenAIError as exc:
                check(f"{name}: key rejected after DELETE", False, repr(exc))


# ---------------------------------------------------------------- phases ---
def phase_flow(gw: Gateway) -> None:
    model_id = env("E2E_MODEL_ID", DEFAULT_MODEL_ID)
    wait = float(env("E2E_DEPLOY_WAIT", "120"))
    secret = env("SWITCHYARD_TRAINING_WEBHOOK_SECRET")
    ctx = create_user(gw)
    save_context(ctx)
    token = ctx["user_token"]

    # Preview.
    st, body = gw.call("GET", "/api/v1/endpoints/deploy/preview?"
                       + urllib.parse.urlencode({"model_id": model_id}), token)
    preview = get_path(body, "preview") or {}
    credits = get_path(preview, "monthly_estimate", "credits")
    check("preview: recommendation and monthly estimate in credits",
          st == 200 and isinstance(preview.get("recommendation"), dict)
          and is_num(credits) and credits > 0, f"status {st}: {short(body)}")
    check("preview: the Hub analysis (134515008 parameters, bf16, llm)",
          get_path(preview, "model", "parameters") == 134515008
          and get_path(preview, "model", "precision") == "bf16"
          and get_path(preview, "model", "modality") == "llm",
          short(get_path(preview, "model")))
    self_hosted = [p for p in preview.get("providers") or [] if p.get("provider") == "self-hosted"]
    check("preview: provider self-hosted is available",
          len(self_hosted) == 1 and self_hosted[0].get("available") is True, short(preview.get("providers")))
    info(f"preview: monthly estimate {credits} credits; recommends "
         f"{get_path(preview, 'recommendation', 'gpu_type')} on {get_path(preview, 'recommendation', 'provider')}")

    # Deploy from a model id, with the event stream open.
    events = EventStream(gw, token)
    check("events: GET /api/v1/events -> 200 text/event-stream",
          events.status == 200 and events.content_type.startswith("text/event-stream"),
          f"status {events.status} content-type {events.content_type!r}")
    ep = deploy(gw, token, model_id, DEPLOY_NAME)
    seen: list[dict] = []
    complete = None
    deadline = time.monotonic() + wait
    while complete is None:
        ev = events.next(deadline)
        if ev is None:
            break
        doc = ev["data"]
        if doc.get("endpoint_id") != ep:
            continue
        seen.append(doc)
        if doc.get("type") in ("DEPLOYMENT_COMPLETE", "DEPLOYMENT_FAILED"):
            complete = doc
    events.close()
    types = [d.get("type") for d in seen]
    info(f"{DEPLOY_NAME}: events {[(d.get('type'), d.get('stage'), d.get('percent')) for d in seen]}")
    if not check(f"{DEPLOY_NAME}: DEPLOYMENT_COMPLETE on the event stream",
                 complete is not None and complete.get("type") == "DEPLOYMENT_COMPLETE",
                 f"events {types}; last {short(complete)}; stream error {events.error!r}"):
        job, _ = wait_finished(gw, token, ep, 1, DEPLOY_NAME)
        raise Fatal(f"deploy {DEPLOY_NAME} did not complete: {short(job)}")
    check(f"{DEPLOY_NAME}: DEPLOYMENT_STARTED is the first event", types[:1] == ["DEPLOYMENT_STARTED"], types)
    progress = [d for d in seen if d.get("type") == "DEPLOYMENT_PROGRESS"]
    stages: list[str] = []
    for d in progress:
        if not stages or stages[-1] != d.get("stage"):
            stages.append(d.get("stage"))
    check(f"{DEPLOY_NAME}: progress stages in order {' > '.join(STAGES)}", stages == STAGES, stages)
    percents = [d.get("percent") for d in progress]
    check(f"{DEPLOY_NAME}: progress percent rises to 100",
          all(is_num(p) for p in percents) and percents == sorted(percents) and percents[-1:] == [100],
          percents)
    key = complete.get("api_key")
    check(f"{DEPLOY_NAME}: DEPLOYMENT_COMPLETE carries the sy_live_ key, provider self-hosted",
          isinstance(key, str) and key.startswith("sy_live_") and complete.get("provider") == "self-hosted"
          and complete.get("model_name") == DEPLOY_NAME,
          short({k: (v[:8] + "..." if k == "api_key" and isinstance(v, str) else v) for k, v in complete.items()}))
    st, body = deployment(gw, token, ep)
    check(f"{DEPLOY_NAME}: GET deployment -> succeeded, ready, and no second copy of the key",
          st == 200 and get_path(body, "deployment", "state") == "succeeded"
          and get_path(body, "deployment", "stage") == "ready" and body.get("api_key") is None,
          f"status {st}: {short(get_path(body, 'deployment'))} api_key present={body.get('api_key') is not None}")
    st, body = gw.call("GET", f"/api/v1/endpoints/{ep}", token)
    check(f"{DEPLOY_NAME}: endpoint active on provider self-hosted",
          st == 200 and get_path(body, "endpoint", "status") == "active"
          and get_path(body, "endpoint", "provider") == "self-hosted",
          f"status {st}: {short(body)}")
    check_one_server(DEPLOY_NAME)
    if isinstance(key, str):
        sdk_roundtrip(gw, token, ep, DEPLOY_NAME, key)

    # Training-complete webhook.
    training_job = f"e2e-train-{uuid.uuid4().hex[:12]}"
    payload = json.dumps({
        "training_job_id": training_job,
        "user_id": ctx["user_id"],
        "model_url": f"https://huggingface.co/{model_id}",
        "modality": "llm",
        "base_model_id": model_id,
        "model_name": TRAINED_NAME,
        "provider": "self-hosted",
    }, separators=(",", ":")).encode()

    def signed(body: bytes, key_text: str = secret) -> dict:
        ts = str(int(time.time() * 1000))
        mac = hmac.new(key_text.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {"X-Switchyard-Timestamp": ts, "X-Switchyard-Signature": f"sha256={mac}"}

    hook = "/api/v1/hooks/training-complete"
    st, body = gw.call("POST", hook, None, raw=payload, headers=signed(payload, "not-the-secret"))
    check("webhook: wrong signature -> 401", st == 401, f"status {st}: {short(body)}")
    st, body = gw.call("POST", hook, None, raw=payload, headers=signed(payload))
    trained = get_path(body, "endpoint_id")
    if not check("webhook: signed training-complete -> 202 {endpoint_id}",
                 st == 202 and bool(trained), f"status {st}: {short(body)}"):
        raise Fatal("webhook")
    st, body = gw.call("POST", hook, None, raw=payload, headers=signed(payload))
    check("webhook: repeat delivery -> 200 duplicate, same endpoint",
          st == 200 and get_path(body, "duplicate") is True and get_path(body, "endpoint_id") == trained,
          f"status {st}: {short(body)}")
    job, trained_key = wait_finished(gw, token, str(trained), wait, TRAINED_NAME)
    check(f"{TRAINED_NAME}: deployment succeeded, key in the first GET after success",
          job.get("state") == "succeeded" and isinstance(trained_key, str) and trained_key.startswith("sy_live_"),
          f"job {short(job)}; api_key present={trained_key is not None}")
    st, body = gw.call("GET", f"/api/v1/endpoints/{trained}", token)
    check(f"{TRAINED_NAME}: endpoint active, source training, base model recorded",
          st == 200 and get_path(body, "endpoint", "status") == "active"
          and get_path(body, "endpoint", "source_type") == "training"
          and get_path(body, "endpoint", "base_model") == model_id,
          f"status {st}: {short(body)}")
    check_one_server(TRAINED_NAME)
    if isinstance(trained_key, str):
        sdk_roundtrip(gw, token, str(trained), TRAINED_NAME, trained_key)

    # The Hub was asked (preview, deploy, webhook).
    hub_log = os.environ.get("E2E_HUB_LOG", "")
    if hub_log:
        try:
            with open(hub_log, encoding="utf-8") as fh:
                hits = [line for line in fh if line.strip() == f"GET /api/models/{model_id}"]
        except OSError:
            hits = []
        check(f"fake Hub answered Switchyard's model analysis ({len(hits)} requests, >= 3)", len(hits) >= 3,
              f"{len(hits)} requests in {hub_log}")

    delete_endpoints(gw, token, {DEPLOY_NAME: ep, TRAINED_NAME: str(trained)},
                     {DEPLOY_NAME: key if isinstance(key, str) else "",
                      TRAINED_NAME: trained_key if isinstance(trained_key, str) else ""})


def phase_crash_start(gw: Gateway) -> None:
    model_id = env("E2E_MODEL_ID", DEFAULT_MODEL_ID)
    wait = float(env("E2E_DEPLOY_WAIT", "120"))
    sy_pid = int(env("E2E_SWITCHYARD_PID"))
    ctx = load_context()
    token = ctx["user_token"]
    # The window (stage provisioning or waiting_ready) lasts about as long as
    # llama-server takes to load the model; if a deploy gets through it
    # between two polls, that endpoint is removed and another one is tried.
    for attempt in range(1, 4):
        name = CRASH_NAME if attempt == 1 else f"{CRASH_NAME}-{attempt}"
        ep = deploy(gw, token, model_id, name)
        deadline = time.monotonic() + wait
        stage, state = None, None
        while time.monotonic() < deadline:
            st, body = deployment(gw, token, ep)
            stage = get_path(body, "deployment", "stage")
            state = get_path(body, "deployment", "state")
            if state == "running" and stage in ("provisioning", "waiting_ready"):
                os.kill(sy_pid, signal.SIGKILL)
                break
            if state in ("succeeded", "failed"):
                break
            time.sleep(0.02)
        if state == "running" and stage in ("provisioning", "waiting_ready"):
            check(f"{name}: switchyard (pid {sy_pid}) killed with SIGKILL at stage {stage}", True)
            end = time.monotonic() + 10
            while alive(sy_pid) and time.monotonic() < end:
                time.sleep(0.05)
            check("switchyard is gone after SIGKILL", not alive(sy_pid), f"pid {sy_pid} still running")
            before = [s for s in state_files() if s.get("served_model_name") == name]
            ctx.update({"crash_endpoint": ep, "crash_name": name, "crash_stage": stage,
                        "crash_pids": [s.get("pid") for s in before]})
            save_context(ctx)
            info(f"{name}: at the kill: state files {[(s['_file'], s.get('pid')) for s in before]}, "
                 f"llama-server processes {server_processes(name)}")
            return
        if state not in ("succeeded", "failed"):
            check(f"{name}: deploy reached provisioning/waiting_ready", False,
                  f"stage {stage} state {state} after {wait}s")
            raise Fatal("crash window")
        info(f"{name}: the deploy was {state} before a poll saw provisioning/waiting_ready; trying again")
        pids = [s.get("pid") for s in state_files() if s.get("served_model_name") == name]
        gw.call("DELETE", f"/api/v1/endpoints/{ep}", token)
        wait_gone([p for p in pids if isinstance(p, int)], 30)
    check("switchyard killed mid-deploy", False, "three deploys finished between two polls")
    raise Fatal("crash window")


def phase_crash_finish(gw: Gateway) -> None:
    wait = float(env("E2E_DEPLOY_WAIT", "120"))
    ctx = load_context()
    if "crash_endpoint" not in ctx:
        info("crash-start did not kill Switchyard mid-deploy; only the leftover check runs")
        check_nothing_left()
        return
    token, ep, name = ctx["user_token"], ctx["crash_endpoint"], ctx["crash_name"]
    job, key = wait_finished(gw, token, ep, wait, name)
    check(f"{name}: the deploy killed at {ctx['crash_stage']} succeeded after the restart",
          job.get("state") == "succeeded" and job.get("stage") == "ready",
          f"job {short(job)}")
    check(f"{name}: key in the first GET after success", isinstance(key, str) and key.startswith("sy_live_"),
          f"api_key present={key is not None}")
    state = check_one_server(name)
    before = [p for p in ctx.get("crash_pids") or [] if isinstance(p, int)]
    if before and state is not None:
        check(f"{name}: the resumed job kept the llama-server started before the crash (pid {before[0]})",
              state.get("pid") == before[0], f"now pid {state.get('pid')}")
    if isinstance(key, str):
        sdk_roundtrip(gw, token, ep, name, key, stream=False)
    delete_endpoints(gw, token, {name: ep}, {name: key if isinstance(key, str) else ""})
    check_nothing_left()


def check_nothing_left() -> None:
    left_files = [s["_file"] for s in state_files()]
    left_procs = server_processes()
    check("no self-hosted state file or llama-server of this run is left",
          not left_files and not left_procs, f"state files {left_files}, processes {left_procs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    hub = sub.add_parser("hub")
    hub.add_argument("--port-file", required=True)
    hub.add_argument("--log", required=True)
    hub.add_argument("--model", action="append", default=[])
    for phase in ("flow", "crash-start", "crash-finish"):
        sub.add_parser(phase)
    args = parser.parse_args()
    if args.phase == "hub":
        run_hub(args.port_file, args.log, args.model or [DEFAULT_MODEL_ID])
        return
    try:
        import openai

        print(f"deploy {args.phase}: openai SDK {openai.__version__}", flush=True)
        gw = Gateway()
        {"flow": phase_flow, "crash-start": phase_crash_start, "crash-finish": phase_crash_finish}[args.phase](gw)
    except Fatal as exc:
        print(f"  .. a required step failed ({exc}); skipping the rest of {args.phase}", flush=True)
    except Exception:  # a bug or an unexpected answer: count it, keep the summary line
        traceback.print_exc()
        check(f"deploy {args.phase} ran to completion", False, "unexpected exception (traceback above)")
    print(f"deploy {args.phase}: {passed} passed, {failed} failed", flush=True)
    result = os.environ.get("E2E_RESULT_FILE", "")
    if result:
        with open(result, "w", encoding="utf-8") as fh:
            fh.write(f"{passed} {failed}\n")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()

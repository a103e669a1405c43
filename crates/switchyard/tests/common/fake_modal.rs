//! A fake Modal: an executable `modal` (the Python script
//! `fake_modal_cli.py`) in a temporary directory, plus a local HTTP server
//! standing in for the deployed apps' `*.modal.run` web endpoints.
//!
//! The script validates its arguments like the real CLI (`deploy <file>
//! [--name N] [-e ENV]`, `app list [--json] [-e ENV]`, `app stop <name>`),
//! requires `MODAL_TOKEN_ID`/`MODAL_TOKEN_SECRET`, parses the app file with
//! Python's `ast` and checks the decorators and parameters Switchyard's app
//! contract needs (`@app.function(gpu, scaledown_window, min_containers,
//! max_containers, timeout)`, `@modal.concurrent(max_inputs)`,
//! `@modal.web_server(8000, startup_timeout, requires_proxy_auth=True)`, a
//! `vllm serve` command). It keeps apps in `state.json` beside itself and
//! prints a deploy output whose web URL points at the HTTP server, read from
//! `fake_modal.json` beside it (the provisioner knows nothing of the fake).
//!
//! The HTTP server checks the `Modal-Key`/`Modal-Secret` proxy-auth headers
//! (401 `modal-http: missing credentials for proxy authorization`), serves
//! `/{app}/health` (503 for the first `health_ready_after` probes, then
//! 200), `/{app}/v1/models` and `/{app}/v1/chat/completions` (the body is
//! validated against the OpenAI spec's `CreateChatCompletionRequest`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};
use switchyard::providers::config::{ModalConfig, Secret};

use super::spec::{Journal, OpenApi};

pub const TOKEN_ID: &str = "ak-switchyardtest0001";
pub const TOKEN_SECRET: &str = "as-switchyardtest0001";
pub const PROXY_KEY: &str = "wk-switchyardtest0001";
pub const PROXY_SECRET: &str = "ws-switchyardtest0001";
pub const WORKSPACE: &str = "switchyard-test";
/// A second environment the fake account has (besides `main`).
pub const ENVIRONMENT: &str = "staging";
pub const PROMPT_TOKENS: u64 = 9;
pub const COMPLETION_TOKENS: u64 = 4;

const SCRIPT: &str = include_str!("fake_modal_cli.py");

struct HttpState {
    dir: PathBuf,
    journal: Arc<Journal>,
    health_ready_after: AtomicUsize,
    health_polls: Mutex<BTreeMap<String, usize>>,
}

/// A running fake Modal (CLI script + web endpoints on 127.0.0.1).
pub struct FakeModal {
    /// HTTP requests to the web endpoints and every contract violation
    /// (the CLI's are imported by [`FakeModal::assert_clean`]).
    pub journal: Arc<Journal>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    http: Arc<HttpState>,
}

fn openai() -> &'static OpenApi {
    static SPEC: OnceLock<OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| OpenApi::load_shared("openai/openapi.yaml"))
}

impl FakeModal {
    /// Writes the `modal` script and its config, and starts the web endpoints.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::default());
        let http = Arc::new(HttpState {
            dir: dir.path().to_owned(),
            journal: journal.clone(),
            health_ready_after: AtomicUsize::new(0),
            health_polls: Mutex::new(BTreeMap::new()),
        });
        let app = Router::new()
            .route("/{app}/health", get(health))
            .route("/{app}/v1/models", get(models))
            .route("/{app}/v1/chat/completions", post(chat))
            .with_state(http.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let config = json!({
            "url_base": format!("http://{addr}"), "workspace": WORKSPACE,
            "token_id": TOKEN_ID, "token_secret": TOKEN_SECRET,
            "environments": ["main", ENVIRONMENT],
        });
        std::fs::write(dir.path().join("fake_modal.json"), config.to_string()).unwrap();
        let script = dir.path().join("modal");
        std::fs::write(&script, SCRIPT).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        warm_up(&script).await;
        Self {
            journal,
            dir,
            addr,
            http,
        }
    }

    /// The `modal` executable (`config.cli`).
    pub fn cli_path(&self) -> PathBuf {
        self.dir.path().join("modal")
    }

    /// The base URL of the fake web endpoints; an app is served at `{base}/{app}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where a provisioner under test writes its app files.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A complete provisioner configuration pointing at this fake.
    pub fn config(&self) -> ModalConfig {
        ModalConfig {
            token_id: Some(Secret::new(TOKEN_ID)),
            token_secret: Some(Secret::new(TOKEN_SECRET)),
            cli: self.cli_path().to_string_lossy().into_owned(),
            environment: None,
            proxy_token_id: Some(Secret::new(PROXY_KEY)),
            proxy_token_secret: Some(Secret::new(PROXY_SECRET)),
            work_dir: self.work_dir(),
            vllm_version: "0.23.0".to_owned(),
            cli_timeout: Duration::from_secs(20),
        }
    }

    /// Health probes of an app answered 503 before the first 200 (0 = ready at once).
    pub fn set_health_ready_after(&self, polls: usize) {
        self.http.health_ready_after.store(polls, Ordering::SeqCst);
    }

    /// Makes the next `modal deploy` exit with `code` and `stderr`.
    pub fn fail_next_deploy(&self, code: i32, stderr: &str) {
        self.push_knob("fail_deploy", json!({"exit": code, "stderr": stderr}));
    }

    /// Makes the next `modal deploy` hang for `seconds` (then fail).
    pub fn hang_next_deploy(&self, seconds: u64) {
        self.push_knob(
            "fail_deploy",
            json!({"exit": 1, "stderr": "hung", "sleep": seconds}),
        );
    }

    fn push_knob(&self, name: &str, value: Value) {
        let mut knobs = self.knobs();
        if !knobs[name].is_array() {
            knobs[name] = json!([]);
        }
        knobs[name].as_array_mut().unwrap().push(value);
        self.write_json("knobs.json", &knobs);
    }

    /// Sets how many containers `modal app list` reports for an app (default: its `min_containers`).
    pub fn set_tasks(&self, app: &str, tasks: u32) {
        let mut knobs = self.knobs();
        if !knobs["tasks"].is_object() {
            knobs["tasks"] = json!({});
        }
        knobs["tasks"][app] = json!(tasks);
        self.write_json("knobs.json", &knobs);
    }

    fn knobs(&self) -> Value {
        read_json(&self.dir.path().join("knobs.json")).unwrap_or_else(|| json!({}))
    }

    fn write_json(&self, name: &str, value: &Value) {
        let temporary = self.dir.path().join(format!("{name}.tmp"));
        std::fs::write(&temporary, value.to_string()).unwrap();
        std::fs::rename(temporary, self.dir.path().join(name)).unwrap();
    }

    /// Adds an app of the account that Switchyard did not deploy.
    pub fn add_foreign_app(&self, name: &str) {
        let mut state =
            read_json(&self.dir.path().join("state.json")).unwrap_or_else(|| json!({"apps": []}));
        state["apps"].as_array_mut().unwrap().push(json!({
            "app_id": format!("ap-foreign{name}"), "name": name, "environment": "main", "state": "deployed",
            "created_at": "2026-01-01 00:00:00+00:00", "stopped_at": null, "deploys": 1, "min_containers": 0
        }));
        self.write_json("state.json", &state);
    }

    /// Every app the fake account has (live and stopped).
    pub fn apps(&self) -> Vec<Value> {
        read_json(&self.dir.path().join("state.json"))
            .and_then(|state| state["apps"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The live app of a name, if any.
    pub fn app(&self, name: &str) -> Option<Value> {
        self.apps()
            .into_iter()
            .find(|app| app["name"] == name && app["state"] == "deployed")
    }

    /// Every CLI invocation so far: `{"argv": [...], "token_id": ..., "has_secret": ...}`.
    pub fn cli_calls(&self) -> Vec<Value> {
        read_lines(&self.dir.path().join("calls.jsonl"))
    }

    /// Imports the CLI's violations into the journal and asserts there are none.
    pub fn assert_clean(&self) {
        let imported: Vec<String> = read_lines(&self.dir.path().join("violations.jsonl"))
            .into_iter()
            .map(|line| {
                format!(
                    "modal {}: {}",
                    line["argv"],
                    line["message"].as_str().unwrap_or_default()
                )
            })
            .collect();
        self.journal.violations.lock().unwrap().extend(imported);
        let _ = std::fs::remove_file(self.dir.path().join("violations.jsonl"));
        self.journal.assert_clean();
    }
}

/// Runs the fresh script once, retrying while the kernel still reports it
/// busy (`ETXTBSY`: another test thread forked while it was being written).
async fn warm_up(script: &FsPath) {
    for _ in 0..100 {
        match tokio::process::Command::new(script)
            .arg("--version")
            .output()
            .await
        {
            Ok(output) if output.status.success() => return,
            Ok(output) => panic!(
                "the fake modal CLI does not run: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) if error.raw_os_error() == Some(26) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("cannot run the fake modal CLI (python3 is needed): {error}"),
        }
    }
    panic!("the fake modal CLI stayed busy");
}

fn read_json(path: &FsPath) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn read_lines(path: &FsPath) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// What Modal's proxy answers instead of the app: status and plain text.
type Refusal = (StatusCode, &'static str);

/// The proxy-auth check Modal runs before any container sees the request,
/// then the deployed app serving the URL.
fn admit(state: &HttpState, headers: &HeaderMap, app: &str) -> Result<Value, Refusal> {
    let key = headers
        .get("modal-key")
        .and_then(|value| value.to_str().ok());
    let secret = headers
        .get("modal-secret")
        .and_then(|value| value.to_str().ok());
    match (key, secret) {
        (Some(PROXY_KEY), Some(PROXY_SECRET)) => {}
        (Some(_), Some(_)) => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "modal-http: invalid credentials for proxy authorization",
            ))
        }
        _ => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "modal-http: missing credentials for proxy authorization",
            ))
        }
    }
    read_json(&state.dir.join("state.json"))
        .and_then(|state| state["apps"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .find(|entry| entry["name"] == app && entry["state"] == "deployed")
        .ok_or((
            StatusCode::NOT_FOUND,
            "modal-http: app for invoked web endpoint is stopped",
        ))
}

fn record(state: &HttpState, method: &str, path: String, body: Value) {
    state
        .journal
        .requests
        .lock()
        .unwrap()
        .push((method.to_owned(), path, body));
}

async fn health(
    State(state): State<Arc<HttpState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(&state, "GET", format!("/{app}/health"), Value::Null);
    if let Err(refusal) = admit(&state, &headers, &app) {
        return refusal.into_response();
    }
    let polls = {
        let mut polls = state.health_polls.lock().unwrap();
        let count = polls.entry(app).or_default();
        *count += 1;
        *count
    };
    if polls > state.health_ready_after.load(Ordering::SeqCst) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

async fn models(
    State(state): State<Arc<HttpState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    record(&state, "GET", format!("/{app}/v1/models"), Value::Null);
    let served = match admit(&state, &headers, &app) {
        Ok(entry) => entry["served_model_name"].clone(),
        Err(refusal) => return refusal.into_response(),
    };
    Json(json!({"object": "list", "data": [{"id": served, "object": "model", "created": 1_777_000_000, "owned_by": "vllm"}]}))
        .into_response()
}

async fn chat(
    State(state): State<Arc<HttpState>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(
        &state,
        "POST",
        format!("/{app}/v1/chat/completions"),
        body.clone(),
    );
    let served = match admit(&state, &headers, &app) {
        Ok(entry) => entry["served_model_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(errors) = openai().validate("/components/schemas/CreateChatCompletionRequest", &body)
    {
        let message = format!("POST /{app}/v1/chat/completions: {}", errors.join("; "));
        state
            .journal
            .violations
            .lock()
            .unwrap()
            .push(message.clone());
        return (StatusCode::BAD_REQUEST, Json(json!({"object": "error", "message": message, "type": "BadRequestError", "param": null, "code": 400}))).into_response();
    }
    if body["model"] != served.as_str() {
        let message = format!(
            "The model `{}` does not exist.",
            body["model"].as_str().unwrap_or_default()
        );
        return (StatusCode::NOT_FOUND, Json(json!({"object": "error", "message": message, "type": "NotFoundError", "param": null, "code": 404}))).into_response();
    }
    let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
    if body["stream"] != true {
        return Json(json!({"id": "chatcmpl-modal-1", "object": "chat.completion", "created": 1_777_000_000, "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi from Modal"}, "finish_reason": "stop"}],
            "usage": usage})).into_response();
    }
    // vLLM streams `chat.completion.chunk` events and, when asked with
    // `stream_options.include_usage`, a final chunk with empty choices and usage.
    let mut events = String::new();
    let words = ["Hi", " from", " Modal"];
    for (index, word) in words.iter().enumerate() {
        let finish = if index + 1 == words.len() {
            json!("stop")
        } else {
            Value::Null
        };
        let chunk = json!({"id": "chatcmpl-modal-1", "object": "chat.completion.chunk", "created": 1_777_000_000, "model": served,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": finish}]});
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    if body["stream_options"]["include_usage"] == true {
        let chunk = json!({"id": "chatcmpl-modal-1", "object": "chat.completion.chunk", "created": 1_777_000_000, "model": served,
            "choices": [], "usage": usage});
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    events.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(events))
        .unwrap()
}

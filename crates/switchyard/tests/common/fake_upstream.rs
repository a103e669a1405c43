//! A fake OpenAI-compatible upstream: fixed usage, SSE streams, errors and slowness,
//! chosen by the path prefix of the base URL (`/v1`, `/slow/v1`, `/error500/v1`, ...).
//!
//! Its own modes: `v1` (normal), `slow` (3 s before the head), `error500`, `oom`,
//! `error400` (context too long), `nousage`, `held`, `slowstream`, `lingering`. It also
//! speaks the shared fault modes of [`super::faults`] (`ok`, `reset`, `error503`,
//! `error429`, `dies_midstream`, `flaky`, `error401`) with OpenAI's error shape, and a
//! run-time override ([`FakeUpstream::set_mode_override`]). `GET /{mode}/models` ignores
//! the older modes, as path or override (endpoint registration discovers the model even on
//! `slow`), but honours the shared faults.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::faults::{self, Failure, FaultControl, Plan};

pub const PROMPT_TOKENS: u64 = 11;
pub const COMPLETION_TOKENS: u64 = 7;
pub const STREAM_CHUNKS: u64 = 5;
pub const UPSTREAM_MODEL: &str = "fake-model";

/// What the fake saw and how it behaves.
#[derive(Default)]
pub struct Recorded {
    pub requests: Mutex<Vec<(String, HeaderMap, Value)>>,
    pub count: AtomicUsize,
    pub stream_cancelled: AtomicBool,
    pub stream_completed: AtomicBool,
    /// Streams on `/held/v1` wait for this after their first chunk.
    pub release: Notify,
    /// Per-mode counters, the flaky period and the run-time mode override.
    pub faults: FaultControl,
}

impl Recorded {
    pub fn last_body(&self) -> Value {
        self.requests
            .lock()
            .unwrap()
            .last()
            .map(|(_, _, body)| body.clone())
            .unwrap_or(Value::Null)
    }
    pub fn last_headers(&self) -> HeaderMap {
        self.requests
            .lock()
            .unwrap()
            .last()
            .map(|(_, headers, _)| headers.clone())
            .unwrap_or_default()
    }
}

pub struct FakeUpstream {
    pub base: String,
    pub recorded: Arc<Recorded>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let recorded = Arc::new(Recorded::default());
        let router = Router::new()
            .route("/{mode}/models", get(models))
            .route("/{mode}/chat/completions", post(chat))
            .route("/{mode}/completions", post(completions))
            .route("/{mode}/embeddings", post(embeddings))
            .with_state(recorded.clone());
        let addr = faults::serve(router).await;
        Self {
            base: format!("http://{addr}"),
            recorded,
        }
    }

    /// The OpenAI base URL for a behaviour: `v1`, `slow`, `error500`, `oom`, `error400`, `nousage`, `held`, `lingering`,
    /// or a shared fault (`reset`, `error503`, `error429`, `dies_midstream`, `flaky`, `error401`).
    pub fn url(&self, mode: &str) -> String {
        format!("{}/{mode}", self.base)
    }

    /// Per-mode counters, the flaky period and the run-time mode override.
    pub fn faults(&self) -> &FaultControl {
        &self.recorded.faults
    }

    /// Makes every request behave as `mode`, or restores the path's mode with `None`.
    pub fn set_mode_override(&self, mode: Option<&str>) {
        self.recorded.faults.set_mode_override(mode);
    }
}

/// The modes this fake had before the shared faults; `/models` ignores them.
const OWN_MODES: [&str; 9] = [
    "v1",
    "slow",
    "error500",
    "oom",
    "error400",
    "nousage",
    "held",
    "slowstream",
    "lingering",
];

async fn models(State(state): State<Arc<Recorded>>, Path(mode): Path<String>) -> Response {
    let body = json!({"object":"list","data":[{"id": UPSTREAM_MODEL, "object":"model"}]});
    let plan = state.faults.admit(&mode);
    let effective = state.faults.mode_override().unwrap_or(mode);
    if OWN_MODES.contains(&effective.as_str()) {
        return Json(body).into_response();
    }
    match plan {
        Plan::Reset => faults::reset_response(),
        Plan::Fail(failure) => openai_failure(failure),
        Plan::Serve { mode, cut } => {
            FaultControl::delay(&mode).await;
            answer(body, cut)
        }
    }
}

/// A JSON answer, or its first half and a dead connection when `cut`.
fn answer(body: Value, cut: bool) -> Response {
    if cut {
        return Response::builder()
            .header("content-type", "application/json")
            .body(faults::cut_json_body(&body))
            .unwrap();
    }
    Json(body).into_response()
}

/// A shared fault in OpenAI's error shape (`error400` keeps this fake's context-too-long body).
fn openai_failure(failure: Failure) -> Response {
    let (message, kind, code) = match failure {
        Failure::Unavailable => (
            "The server is overloaded or not ready yet.",
            "server_error",
            json!(null),
        ),
        Failure::RateLimited => (
            "Rate limit reached for requests",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        Failure::BadRequest => (
            "context too long",
            "invalid_request_error",
            json!("exceed_context_size_error"),
        ),
        Failure::Unauthorized => (
            "Incorrect API key provided",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
    };
    let mut response = (
        failure.status(),
        Json(json!({"error":{"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response();
    if let Some(seconds) = failure.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from(seconds));
    }
    if failure == Failure::RateLimited {
        response.headers_mut().insert(
            "x-ratelimit-remaining-requests",
            axum::http::HeaderValue::from_static("0"),
        );
    }
    response
}

fn record(state: &Recorded, path: &str, headers: &HeaderMap, body: &Value) {
    state.count.fetch_add(1, Ordering::SeqCst);
    state
        .requests
        .lock()
        .unwrap()
        .push((path.to_owned(), headers.clone(), body.clone()));
}

/// Counts the request and applies its mode: `Ok((effective mode, cut))` to serve it,
/// `Err` with the answer to give instead.
async fn behave(state: &Recorded, path_mode: &str) -> Result<(String, bool), Response> {
    let (mode, cut) = match state.faults.admit(path_mode) {
        Plan::Reset => return Err(faults::reset_response()),
        Plan::Fail(failure) => return Err(openai_failure(failure)),
        Plan::Serve { mode, cut } => (mode, cut),
    };
    match mode.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok((mode, cut))
        }
        "error500" => Err(
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error":{"message":"upstream exploded","type":"server_error","code":500}})))
                .into_response(),
        ),
        "oom" => Err(
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error":{"message":"CUDA out of memory. Tried to allocate 2.00 GiB","type":"server_error","code":500}})))
                .into_response(),
        ),
        _ => Ok((mode, cut)),
    }
}

async fn chat(
    State(state): State<Arc<Recorded>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, "/chat/completions", &headers, &body);
    if body["model"] != UPSTREAM_MODEL {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error":{"message":"unknown model","type":"invalid_request_error"}})),
        )
            .into_response();
    }
    let (mode, cut) = match behave(&state, &mode).await {
        Ok(served) => served,
        Err(response) => return response,
    };
    if body["stream"] == true {
        if cut {
            return cut_stream();
        }
        return stream(state, mode, body);
    }
    let mut response = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": UPSTREAM_MODEL,
        "choices": [{"index":0, "message": {"role":"assistant","content":"Hello there"}, "finish_reason":"stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
    });
    if mode == "nousage" {
        response.as_object_mut().unwrap().remove("usage");
    }
    answer(response, cut)
}

/// A `dies_midstream` stream: the first chunks, then a dead connection.
fn cut_stream() -> Response {
    let chunks = (0..STREAM_CHUNKS)
        .map(|index| {
            Bytes::from(format!(
                "data: {}\n\n",
                json!({"id":"c","object":"chat.completion.chunk","created":1,"model":UPSTREAM_MODEL,
                       "choices":[{"index":0,"delta":{"content":format!("tok{index} ")},"finish_reason":null}]})
            ))
        })
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(faults::events_body(chunks, true))
        .unwrap()
}

struct CancelGuard {
    state: Arc<Recorded>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.finished {
            self.state.stream_completed.store(true, Ordering::SeqCst);
        } else {
            self.state.stream_cancelled.store(true, Ordering::SeqCst);
        }
    }
}

fn stream(state: Arc<Recorded>, mode: String, body: Value) -> Response {
    let include_usage = body["stream_options"]["include_usage"] == true;
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    let guard_state = state.clone();
    tokio::spawn(async move {
        let mut guard = CancelGuard {
            state: guard_state,
            finished: false,
        };
        let chunk = |text: &str| {
            Bytes::from(format!(
                "data: {}\n\n",
                json!({"id":"c","object":"chat.completion.chunk","created":1,"model":UPSTREAM_MODEL,
                       "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
            ))
        };
        for index in 0..STREAM_CHUNKS {
            if sender.send(chunk(&format!("tok{index} "))).await.is_err() {
                return;
            }
            if index == 0 && mode == "held" {
                tokio::select! {
                    () = state.release.notified() => {}
                    () = sender.closed() => return,
                }
            }
            if mode == "slowstream" {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                    () = sender.closed() => return,
                }
            }
        }
        if include_usage && mode != "nousage" {
            let usage = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":UPSTREAM_MODEL,"choices":[],
                "usage":{"prompt_tokens":PROMPT_TOKENS,"completion_tokens":STREAM_CHUNKS,"total_tokens":PROMPT_TOKENS+STREAM_CHUNKS}});
            // Split one event over two writes to exercise reassembly.
            let text = format!("data: {usage}\n\n");
            let (first, second) = text.split_at(text.len() / 2);
            if sender.send(Bytes::from(first.to_owned())).await.is_err()
                || sender.send(Bytes::from(second.to_owned())).await.is_err()
            {
                return;
            }
        }
        if sender
            .send(Bytes::from_static(b"data: [DONE]\n\n"))
            .await
            .is_err()
        {
            return;
        }
        if mode == "lingering" {
            // Like servers that close the body a moment after `[DONE]`.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = sender.closed() => {}
            }
        }
        guard.finished = true;
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, std::io::Error>(bytes), receiver))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn completions(
    State(state): State<Arc<Recorded>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, "/completions", &headers, &body);
    let cut = match behave(&state, &mode).await {
        Ok((_, cut)) => cut,
        Err(response) => return response,
    };
    answer(
        json!({"id":"cmpl-1","object":"text_completion","model":UPSTREAM_MODEL,
        "choices":[{"index":0,"text":" world","finish_reason":"length"}],
        "usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}),
        cut,
    )
}

async fn embeddings(
    State(state): State<Arc<Recorded>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, "/embeddings", &headers, &body);
    let cut = match behave(&state, &mode).await {
        Ok((_, cut)) => cut,
        Err(response) => return response,
    };
    answer(
        json!({"object":"list","model":UPSTREAM_MODEL,
        "data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],
        "usage":{"prompt_tokens":5,"total_tokens":5}}),
        cut,
    )
}

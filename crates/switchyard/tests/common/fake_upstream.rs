//! A fake OpenAI-compatible upstream: fixed usage, SSE streams, errors and slowness,
//! chosen by the path prefix of the base URL (`/v1`, `/slow/v1`, `/error500/v1`, ...).

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
        let app = Router::new()
            .route("/{mode}/models", get(models))
            .route("/{mode}/chat/completions", post(chat))
            .route("/{mode}/completions", post(completions))
            .route("/{mode}/embeddings", post(embeddings))
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            recorded,
        }
    }

    /// The OpenAI base URL for a behaviour: `v1`, `slow`, `error500`, `oom`, `error400`, `nousage`, `held`, `lingering`.
    pub fn url(&self, mode: &str) -> String {
        format!("{}/{mode}", self.base)
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object":"list","data":[{"id": UPSTREAM_MODEL, "object":"model"}]}))
}

fn record(state: &Recorded, path: &str, headers: &HeaderMap, body: &Value) {
    state.count.fetch_add(1, Ordering::SeqCst);
    state
        .requests
        .lock()
        .unwrap()
        .push((path.to_owned(), headers.clone(), body.clone()));
}

async fn behave(mode: &str) -> Option<Response> {
    match mode {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            None
        }
        "error500" => Some(
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error":{"message":"upstream exploded","type":"server_error","code":500}})))
                .into_response(),
        ),
        "oom" => Some(
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error":{"message":"CUDA out of memory. Tried to allocate 2.00 GiB","type":"server_error","code":500}})))
                .into_response(),
        ),
        "error400" => Some(
            (StatusCode::BAD_REQUEST, Json(json!({"error":{"message":"context too long","type":"invalid_request_error","code":"exceed_context_size_error"}})))
                .into_response(),
        ),
        _ => None,
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
    if let Some(response) = behave(&mode).await {
        return response;
    }
    if body["stream"] == true {
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
    Json(response).into_response()
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
    if let Some(response) = behave(&mode).await {
        return response;
    }
    Json(
        json!({"id":"cmpl-1","object":"text_completion","model":UPSTREAM_MODEL,
        "choices":[{"index":0,"text":" world","finish_reason":"length"}],
        "usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}),
    )
    .into_response()
}

async fn embeddings(
    State(state): State<Arc<Recorded>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&state, "/embeddings", &headers, &body);
    if let Some(response) = behave(&mode).await {
        return response;
    }
    Json(json!({"object":"list","model":UPSTREAM_MODEL,
        "data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],
        "usage":{"prompt_tokens":5,"total_tokens":5}}))
    .into_response()
}

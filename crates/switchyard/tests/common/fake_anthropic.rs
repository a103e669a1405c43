//! A fake Anthropic Messages API (`POST /{mode}/v1/messages`, `GET /{mode}/v1/models`)
//! that checks every request like the real one (PROVIDERS.md 7.2, docs.claude.com Messages):
//!
//! - Headers: `x-api-key` must equal the configured key (else 401 `authentication_error`),
//!   `anthropic-version: 2023-06-01` (else 400), and for POST `content-type: application/json`.
//! - Body: `model` (string, `claude-*` or 404 `not_found_error`), `max_tokens` (integer ≥ 1),
//!   `messages` (non-empty; role `user`|`assistant`, first `user`, consecutive same roles
//!   allowed; content a string or blocks `text`|`image`|`tool_use`|`tool_result`|`document`),
//!   optional `system`, `stop_sequences`, `temperature` (0..=1), `top_p`, `top_k`, `tools`,
//!   `tool_choice`, `metadata`, `stream`, `thinking`, `service_tier`. Any other top-level field
//!   is a 400 `"<field>: Extra inputs are not permitted"`.
//! - Answers: [`REPLY`] (one output token per piece of [`REPLY_PIECES`]), cut by
//!   `stop_sequences` (`stop_reason: "stop_sequence"`) or `max_tokens` (`"max_tokens"`); a
//!   `tool_use` block for the first tool when tools are given and the last user message says
//!   "weather" (or `tool_choice` is `any`/`tool`). `stream: true` gives the documented named
//!   SSE events.
//! - Every response has a `request-id` header; errors use
//!   `{"type":"error","error":{"type","message"},"request_id"}`.
//! - Modes and fault injection: see [`super::faults`].

#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::faults::{self, Failure, FaultControl, Plan, RequestLog, Stop};

/// The API key the fake accepts by default.
pub const API_KEY: &str = "anthropic-test-key";
/// The only `anthropic-version` the fake accepts.
pub const VERSION: &str = "2023-06-01";
/// The model the fake lists.
pub const MODEL: &str = "claude-fake-1";
/// `usage.input_tokens` of every answer.
pub const INPUT_TOKENS: u64 = 14;
/// The text answer, one output token per piece.
pub const REPLY_PIECES: [&str; 6] = ["Hello", " there", " from", " the", " fake", " Claude"];
/// The whole text answer.
pub const REPLY: &str = "Hello there from the fake Claude";
/// `usage.output_tokens` of a full text answer.
pub const OUTPUT_TOKENS: u64 = REPLY_PIECES.len() as u64;
/// `usage.output_tokens` of a tool-use answer.
pub const TOOL_OUTPUT_TOKENS: u64 = 9;
/// The id of the `tool_use` block.
pub const TOOL_USE_ID: &str = "toolu_01";

const TOP_LEVEL: [&str; 14] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "stream",
    "thinking",
    "service_tier",
];

struct Inner {
    api_key: String,
    requests: RequestLog,
    faults: FaultControl,
}

/// A running fake Anthropic API on 127.0.0.1.
pub struct FakeAnthropic {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    inner: Arc<Inner>,
}

impl FakeAnthropic {
    /// Starts a fake that accepts [`API_KEY`].
    pub async fn start() -> Self {
        Self::start_with_key(API_KEY).await
    }

    /// Starts a fake that accepts `api_key`.
    pub async fn start_with_key(api_key: &str) -> Self {
        let inner = Arc::new(Inner {
            api_key: api_key.to_owned(),
            requests: RequestLog::default(),
            faults: FaultControl::default(),
        });
        let router = Router::new()
            .route("/{mode}/v1/messages", post(messages))
            .route("/{mode}/v1/models", get(models))
            .layer(axum::middleware::map_response(add_request_id))
            .with_state(inner.clone());
        let addr = faults::serve(router).await;
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// The API base URL for a mode (`ok`, or a fault such as `error503`); clients append
    /// `/v1/messages`.
    pub fn url(&self, mode: &str) -> String {
        format!("{}/{mode}", self.base)
    }

    /// Every request received.
    pub fn requests(&self) -> &RequestLog {
        &self.inner.requests
    }

    /// Per-mode counters, the flaky period and the run-time mode override.
    pub fn faults(&self) -> &FaultControl {
        &self.inner.faults
    }

    /// Makes every request behave as `mode`, or restores the path's mode with `None`.
    pub fn set_mode_override(&self, mode: Option<&str>) {
        self.inner.faults.set_mode_override(mode);
    }
}

fn request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

async fn add_request_id(mut response: Response) -> Response {
    if !response.headers().contains_key("request-id") {
        response
            .headers_mut()
            .insert("request-id", HeaderValue::from_str(&request_id()).unwrap());
    }
    response
}

/// The Anthropic error body for `kind` (`invalid_request_error`, ...).
pub fn error_body(kind: &str, message: &str, request_id: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let id = request_id();
    let mut response = (status, Json(error_body(kind, message, &id))).into_response();
    response
        .headers_mut()
        .insert("request-id", HeaderValue::from_str(&id).unwrap());
    response
}

fn invalid(message: impl Into<String>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        &message.into(),
    )
}

fn failure(failure: Failure) -> Response {
    let mut response = match failure {
        Failure::Unavailable => error(
            failure.status(),
            "overloaded_error",
            "Overloaded",
        ),
        Failure::RateLimited => error(
            failure.status(),
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
        ),
        Failure::BadRequest => invalid("prompt is too long: 250000 tokens > 200000 maximum"),
        Failure::Unauthorized => error(failure.status(), "authentication_error", "invalid x-api-key"),
    };
    if let Some(seconds) = failure.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    if failure == Failure::RateLimited {
        response.headers_mut().insert(
            "anthropic-ratelimit-requests-remaining",
            HeaderValue::from_static("0"),
        );
    }
    response
}

/// Counts the request and applies its fault; `Err` is the answer to give instead.
async fn admit(inner: &Inner, mode: &str) -> Result<bool, Response> {
    match inner.faults.admit(mode) {
        Plan::Reset => Err(faults::reset_response()),
        Plan::Fail(kind) => Err(failure(kind)),
        Plan::Serve { mode, cut } => {
            FaultControl::delay(&mode).await;
            Ok(cut)
        }
    }
}

/// The answer to a request whose headers are wrong, if they are.
fn header_problem(inner: &Inner, headers: &HeaderMap, json_body: bool) -> Option<Response> {
    match headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
    {
        None => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
            ))
        }
        Some(key) if key != inner.api_key => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            ))
        }
        Some(_) => {}
    }
    match headers
        .get("anthropic-version")
        .and_then(|value| value.to_str().ok())
    {
        None => return Some(invalid("anthropic-version: header is required")),
        Some(version) if version != VERSION => {
            return Some(invalid(format!(
                "anthropic-version: \"{version}\" is not a valid version"
            )))
        }
        Some(_) => {}
    }
    if json_body {
        let content_type = headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            return Some(invalid(format!(
                "content-type: expected application/json, got \"{content_type}\""
            )));
        }
    }
    None
}

async fn models(
    State(inner): State<Arc<Inner>>,
    Path(mode): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    inner
        .requests
        .record("GET", uri.path(), uri.query(), &headers, &[]);
    let cut = match admit(&inner, &mode).await {
        Ok(cut) => cut,
        Err(response) => return response,
    };
    if let Some(response) = header_problem(&inner, &headers, false) {
        return response;
    }
    let body = json!({"data": [{"type": "model", "id": MODEL, "display_name": "Claude Fake 1",
                                 "created_at": "2025-05-14T00:00:00Z"}],
                      "has_more": false, "first_id": MODEL, "last_id": MODEL});
    json_answer(&body, cut)
}

fn json_answer(body: &Value, cut: bool) -> Response {
    if cut {
        return Response::builder()
            .header("content-type", "application/json")
            .body(faults::cut_json_body(body))
            .unwrap();
    }
    Json(body.clone()).into_response()
}

async fn messages(
    State(inner): State<Arc<Inner>>,
    Path(mode): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner
        .requests
        .record(method.as_str(), uri.path(), uri.query(), &headers, &body);
    let cut = match admit(&inner, &mode).await {
        Ok(cut) => cut,
        Err(response) => return response,
    };
    if let Some(response) = header_problem(&inner, &headers, true) {
        return response;
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return invalid("There was an error parsing the body: the body must be a JSON object");
    };
    if let Err(message) = validate(&request) {
        return invalid(message);
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !model.starts_with("claude-") {
        return error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {model}"),
        );
    }
    let answer = answer(&request);
    if request.get("stream") == Some(&Value::Bool(true)) {
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(faults::events_body(stream_events(&model, &answer), cut))
            .unwrap();
    }
    json_answer(&message_body(&model, &answer), cut)
}

/// What the fake model says.
struct Answer {
    /// Text pieces (one token each), or empty for a tool call.
    pieces: Vec<String>,
    /// The name of the tool called.
    tool: Option<String>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    output_tokens: u64,
}

fn answer(request: &Map<String, Value>) -> Answer {
    if let Some(tool) = tool_call(request) {
        return Answer {
            pieces: Vec::new(),
            tool: Some(tool),
            stop_reason: "tool_use",
            stop_sequence: None,
            output_tokens: TOOL_OUTPUT_TOKENS,
        };
    }
    let max_tokens = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let stops: Vec<&str> = request
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|stops| stops.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let (pieces, stop) = faults::generate(&REPLY_PIECES, max_tokens, &stops);
    let output_tokens = pieces.len() as u64;
    let (stop_reason, stop_sequence) = match stop {
        Stop::Sequence(sequence) => ("stop_sequence", Some(sequence)),
        Stop::Length => ("max_tokens", None),
        Stop::End => ("end_turn", None),
    };
    Answer {
        pieces,
        tool: None,
        stop_reason,
        stop_sequence,
        output_tokens,
    }
}

fn tool_call(request: &Map<String, Value>) -> Option<String> {
    let tools = request.get("tools")?.as_array()?;
    let first = tools.first()?["name"].as_str()?.to_owned();
    let choice = request.get("tool_choice");
    match choice.and_then(|choice| choice["type"].as_str()) {
        Some("none") => None,
        Some("tool") => choice
            .and_then(|choice| choice["name"].as_str())
            .map(str::to_owned),
        Some("any") => Some(first),
        _ => last_user_text(request)
            .to_lowercase()
            .contains("weather")
            .then_some(first),
    }
}

fn last_user_text(request: &Map<String, Value>) -> String {
    let Some(message) = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|message| message["role"] == "user")
        })
    else {
        return String::new();
    };
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn message_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

fn tool_block(name: &str) -> Value {
    json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {"city": "Paris"}})
}

fn message_body(model: &str, answer: &Answer) -> Value {
    let content = match &answer.tool {
        Some(name) => vec![tool_block(name)],
        None => vec![json!({"type": "text", "text": answer.pieces.concat()})],
    };
    json!({"id": message_id(), "type": "message", "role": "assistant", "model": model,
           "content": content, "stop_reason": answer.stop_reason,
           "stop_sequence": answer.stop_sequence,
           "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": answer.output_tokens}})
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The SSE events of a streamed answer, in the documented order.
fn stream_events(model: &str, answer: &Answer) -> Vec<Bytes> {
    let mut events = vec![event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
    )];
    let (start_block, deltas) = match &answer.tool {
        Some(name) => (
            json!({"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {}}),
            ["{\"city\":", " \"Paris\"}"]
                .iter()
                .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                .collect::<Vec<_>>(),
        ),
        None => (
            json!({"type": "text", "text": ""}),
            answer
                .pieces
                .iter()
                .map(|piece| json!({"type": "text_delta", "text": piece}))
                .collect(),
        ),
    };
    events.push(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
    ));
    events.push(event("ping", &json!({"type": "ping"})));
    for delta in deltas {
        events.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
                "usage": {"output_tokens": answer.output_tokens}}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// Checks a Messages request body; the error is the API's message.
pub fn validate(request: &Map<String, Value>) -> Result<(), String> {
    if let Some(field) = request
        .keys()
        .find(|key| !TOP_LEVEL.contains(&key.as_str()))
    {
        return Err(format!("{field}: Extra inputs are not permitted"));
    }
    match request.get("model") {
        None => return Err("model: Field required".into()),
        Some(Value::String(_)) => {}
        Some(_) => return Err("model: Input should be a valid string".into()),
    }
    match request.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(value) if value.as_i64().is_none() && value.as_u64().is_none() => {
            return Err("max_tokens: Input should be a valid integer".into())
        }
        Some(value) if value.as_i64().is_some_and(|tokens| tokens < 1) => {
            return Err("max_tokens: Input should be greater than or equal to 1".into())
        }
        Some(_) => {}
    }
    validate_messages(request.get("messages"))?;
    if let Some(system) = request.get("system") {
        match system {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for (index, block) in blocks.iter().enumerate() {
                    if block["type"] != "text" || !block["text"].is_string() {
                        return Err(format!(
                            "system.{index}: Input should be a text block with a string text"
                        ));
                    }
                }
            }
            _ => {
                return Err(
                    "system: Input should be a valid string or a list of text blocks".into(),
                )
            }
        }
    }
    if let Some(stops) = request.get("stop_sequences") {
        let valid = stops
            .as_array()
            .is_some_and(|stops| stops.iter().all(Value::is_string));
        if !valid {
            return Err("stop_sequences: Input should be a valid list of strings".into());
        }
    }
    number_in("temperature", request.get("temperature"), 0.0, 1.0)?;
    number_in("top_p", request.get("top_p"), 0.0, 1.0)?;
    if let Some(top_k) = request.get("top_k") {
        if top_k.as_u64().is_none() {
            return Err("top_k: Input should be a non-negative integer".into());
        }
    }
    if let Some(stream) = request.get("stream") {
        if !stream.is_boolean() {
            return Err("stream: Input should be a valid boolean".into());
        }
    }
    if let Some(metadata) = request.get("metadata") {
        let Some(metadata) = metadata.as_object() else {
            return Err("metadata: Input should be a valid dictionary".into());
        };
        if let Some(field) = metadata.keys().find(|key| *key != "user_id") {
            return Err(format!("metadata.{field}: Extra inputs are not permitted"));
        }
        if metadata
            .get("user_id")
            .is_some_and(|id| !id.is_string() && !id.is_null())
        {
            return Err("metadata.user_id: Input should be a valid string".into());
        }
    }
    validate_tools(request.get("tools"))?;
    validate_tool_choice(request.get("tool_choice"))
}

fn number_in(field: &str, value: Option<&Value>, low: f64, high: f64) -> Result<(), String> {
    match value {
        None => Ok(()),
        Some(value) => match value.as_f64() {
            Some(number) if (low..=high).contains(&number) => Ok(()),
            Some(_) => Err(format!("{field}: Input should be between {low} and {high}")),
            None => Err(format!("{field}: Input should be a valid number")),
        },
    }
}

fn validate_messages(messages: Option<&Value>) -> Result<(), String> {
    let messages = match messages {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (index, message) in messages.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return Err(format!(
                "messages.{index}: Input should be a valid dictionary"
            ));
        };
        if let Some(field) = message
            .keys()
            .find(|key| *key != "role" && *key != "content")
        {
            return Err(format!(
                "messages.{index}.{field}: Extra inputs are not permitted"
            ));
        }
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                return Err(format!(
                    "messages.{index}.role: Input should be 'user' or 'assistant'"
                ))
            }
        }
        match message.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (block_index, block) in blocks.iter().enumerate() {
                    validate_block(block).map_err(|error| {
                        format!("messages.{index}.content.{block_index}{error}")
                    })?;
                }
            }
            None => return Err(format!("messages.{index}.content: Field required")),
            Some(_) => {
                return Err(format!(
                    "messages.{index}.content: Input should be a valid string or list of blocks"
                ))
            }
        }
    }
    if messages[0]["role"] != "user" {
        return Err("messages: first message must use the \"user\" role".into());
    }
    Ok(())
}

/// A required field and the check of its type.
type FieldCheck = (&'static str, fn(&Value) -> bool);

/// Checks one content block; the error starts with the field suffix (`.text: ...`).
fn validate_block(block: &Value) -> Result<(), String> {
    let Some(block) = block.as_object() else {
        return Err(": Input should be a valid dictionary".into());
    };
    let (allowed, required): (&[&str], &[FieldCheck]) =
        match block.get("type").and_then(Value::as_str) {
            Some("text") => (&["text", "citations"], &[("text", Value::is_string)]),
            Some("image") => (&["source"], &[("source", Value::is_object)]),
            Some("document") => (
                &["source", "title", "context", "citations"],
                &[("source", Value::is_object)],
            ),
            Some("tool_use") => (
                &["id", "name", "input"],
                &[
                    ("id", Value::is_string),
                    ("name", Value::is_string),
                    ("input", Value::is_object),
                ],
            ),
            Some("tool_result") => (
                &["tool_use_id", "content", "is_error"],
                &[("tool_use_id", Value::is_string)],
            ),
            Some(other) => {
                return Err(format!(
                    ".type: Input tag '{other}' does not match any of the expected tags: 'text', 'image', 'tool_use', 'tool_result', 'document'"
                ))
            }
            None => return Err(".type: Field required".into()),
        };
    if let Some(field) = block
        .keys()
        .find(|key| *key != "type" && *key != "cache_control" && !allowed.contains(&key.as_str()))
    {
        return Err(format!(".{field}: Extra inputs are not permitted"));
    }
    for (field, check) in required {
        match block.get(*field) {
            None => return Err(format!(".{field}: Field required")),
            Some(value) if !check(value) => {
                return Err(format!(".{field}: Input has the wrong type"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_tools(tools: Option<&Value>) -> Result<(), String> {
    let Some(tools) = tools else {
        return Ok(());
    };
    let Some(tools) = tools.as_array() else {
        return Err("tools: Input should be a valid list".into());
    };
    for (index, tool) in tools.iter().enumerate() {
        let Some(tool) = tool.as_object() else {
            return Err(format!("tools.{index}: Input should be a valid dictionary"));
        };
        if let Some(field) = tool.keys().find(|key| {
            ![
                "name",
                "description",
                "input_schema",
                "cache_control",
                "type",
            ]
            .contains(&key.as_str())
        }) {
            return Err(format!(
                "tools.{index}.{field}: Extra inputs are not permitted"
            ));
        }
        if !tool.get("name").is_some_and(Value::is_string) {
            return Err(format!("tools.{index}.name: Field required"));
        }
        if tool
            .get("description")
            .is_some_and(|description| !description.is_string())
        {
            return Err(format!(
                "tools.{index}.description: Input should be a valid string"
            ));
        }
        match tool.get("input_schema") {
            None => return Err(format!("tools.{index}.input_schema: Field required")),
            Some(schema) if schema.is_object() && schema["type"] == "object" => {}
            Some(_) => {
                return Err(format!(
                    "tools.{index}.input_schema: Input should be a JSON schema of type object"
                ))
            }
        }
    }
    Ok(())
}

fn validate_tool_choice(choice: Option<&Value>) -> Result<(), String> {
    let Some(choice) = choice else {
        return Ok(());
    };
    match choice["type"].as_str() {
        Some("auto" | "any" | "none") => Ok(()),
        Some("tool") if choice["name"].is_string() => Ok(()),
        Some("tool") => Err("tool_choice.tool.name: Field required".into()),
        _ => Err(
            "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
                .into(),
        ),
    }
}

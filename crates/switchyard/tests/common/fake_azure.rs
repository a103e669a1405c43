//! A fake Azure OpenAI classic data plane (PROVIDERS.md 7.4):
//! `POST /{mode}/openai/deployments/{deployment}/chat/completions?api-version=...` and
//! `POST /{mode}/openai/deployments/{deployment}/embeddings?api-version=...`.
//!
//! Checks, in Azure's order and shapes:
//! - `api-version` is required: missing is 404 `{"error":{"code":"404","message":"Resource not
//!   found"}}`, one that is not `YYYY-MM-DD` or `YYYY-MM-DD-preview` is 400 `BadRequest`.
//! - The `api-key` header must equal the configured key (401 `Access denied ...`).
//! - The deployment must be one of the configured ones (404 `DeploymentNotFound`).
//! - Bodies are OpenAI's: chat needs a non-empty `messages` with known roles, rejects unknown
//!   arguments (`Unrecognized request argument supplied: <field>`) and `stream_options`
//!   without `stream`; embeddings need `input`.
//!
//! Answers are OpenAI's shapes plus Azure's `prompt_filter_results` (in the response, or in
//! a first stream chunk with empty `choices`, as Azure sends it) and `content_filter_results`
//! in choices; streams add a usage chunk when `stream_options.include_usage` and end with
//! `data: [DONE]`. Every response carries `apim-request-id`. `max_tokens` (or
//! `max_completion_tokens`) below [`COMPLETION_TOKENS`] cuts the answer with
//! `finish_reason: "length"`; `stop` cuts it with `"stop"`.
//! Modes and fault injection: see [`super::faults`].

#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::faults::{self, Failure, FaultControl, Plan, RequestLog, Stop};

/// The API key the fake accepts by default.
pub const API_KEY: &str = "azure-test-key";
/// The chat deployment configured by default.
pub const CHAT_DEPLOYMENT: &str = "chat-deploy";
/// The embeddings deployment configured by default.
pub const EMBEDDING_DEPLOYMENT: &str = "embed-deploy";
/// A current GA `api-version`.
pub const API_VERSION: &str = "2024-10-21";
/// The model name Azure reports for chat deployments.
pub const CHAT_MODEL: &str = "gpt-4o-mini-2024-07-18";
/// The model name Azure reports for embedding deployments.
pub const EMBEDDING_MODEL: &str = "text-embedding-3-small";
/// `usage.prompt_tokens` of chat answers.
pub const PROMPT_TOKENS: u64 = 10;
/// The text answer, one token per piece.
pub const REPLY_PIECES: [&str; 6] = ["Hello", " there", " from", " the", " fake", " Azure"];
/// The whole text answer.
pub const REPLY: &str = "Hello there from the fake Azure";
/// `usage.completion_tokens` of a full answer.
pub const COMPLETION_TOKENS: u64 = REPLY_PIECES.len() as u64;
/// `usage.prompt_tokens` of embeddings answers, per input.
pub const EMBEDDING_TOKENS: u64 = 5;

const CHAT_ARGUMENTS: [&str; 34] = [
    "model",
    "messages",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "function_call",
    "functions",
    "data_sources",
    "reasoning_effort",
    "prediction",
    "store",
    "metadata",
    "modalities",
    "audio",
    "service_tier",
    "user_security_context",
    "verbosity",
    "prompt_cache_key",
];
const EMBEDDING_ARGUMENTS: [&str; 6] = [
    "input",
    "model",
    "encoding_format",
    "dimensions",
    "user",
    "input_type",
];
const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

struct Inner {
    api_key: String,
    deployments: Vec<String>,
    requests: RequestLog,
    faults: FaultControl,
}

/// A running fake Azure OpenAI resource on 127.0.0.1.
pub struct FakeAzure {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    inner: Arc<Inner>,
}

impl FakeAzure {
    /// Starts a fake with [`API_KEY`] and the deployments [`CHAT_DEPLOYMENT`] and
    /// [`EMBEDDING_DEPLOYMENT`].
    pub async fn start() -> Self {
        Self::start_with(API_KEY, &[CHAT_DEPLOYMENT, EMBEDDING_DEPLOYMENT]).await
    }

    /// Starts a fake that accepts `api_key` and serves `deployments`.
    pub async fn start_with(api_key: &str, deployments: &[&str]) -> Self {
        let inner = Arc::new(Inner {
            api_key: api_key.to_owned(),
            deployments: deployments.iter().map(|name| (*name).to_owned()).collect(),
            requests: RequestLog::default(),
            faults: FaultControl::default(),
        });
        let router = Router::new()
            .route(
                "/{mode}/openai/deployments/{deployment}/chat/completions",
                post(chat),
            )
            .route(
                "/{mode}/openai/deployments/{deployment}/embeddings",
                post(embeddings),
            )
            .layer(axum::middleware::map_response(add_request_id))
            .with_state(inner.clone());
        let addr = faults::serve(router).await;
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// The resource endpoint for a mode; clients append
    /// `/openai/deployments/{deployment}/...?api-version=...`.
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

async fn add_request_id(mut response: Response) -> Response {
    response.headers_mut().insert(
        "apim-request-id",
        HeaderValue::from_str(&uuid::Uuid::now_v7().hyphenated().to_string()).unwrap(),
    );
    response
}

/// Azure's service error body (`code` is a string).
pub fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(error_body(code, message))).into_response()
}

/// OpenAI's invalid-request body, which Azure passes through for body errors.
fn invalid(message: &str, param: Option<&str>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(
            json!({"error": {"message": message, "type": "invalid_request_error",
                              "param": param, "code": null}}),
        ),
    )
        .into_response()
}

fn content_filters() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": content_filters()}])
}

fn failure(failure: Failure) -> Response {
    let mut response = match failure {
        Failure::Unavailable => error(
            failure.status(),
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        ),
        Failure::RateLimited => error(
            failure.status(),
            "429",
            &format!("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {API_VERSION} have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after {} second.", faults::RETRY_AFTER_SECONDS),
        ),
        Failure::BadRequest => {
            let mut filters = content_filters();
            filters["violence"] = json!({"filtered": true, "severity": "high"});
            (
                failure.status(),
                Json(json!({"error": {
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                    "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": filters}}})),
            )
                .into_response()
        }
        Failure::Unauthorized => access_denied(),
    };
    if let Some(seconds) = failure.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
        response
            .headers_mut()
            .insert("retry-after-ms", HeaderValue::from(seconds * 1000));
    }
    response
}

fn access_denied() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
    )
}

/// Whether `version` looks like an Azure OpenAI `api-version` (`2024-10-21`,
/// `2025-04-01-preview`).
pub fn is_api_version(version: &str) -> bool {
    let date = version.strip_suffix("-preview").unwrap_or(version);
    let bytes = date.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

/// Applies the fault, then Azure's checks; `Ok(cut)` means serve the request.
async fn admit(
    inner: &Inner,
    mode: &str,
    deployment: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<bool, Response> {
    let cut = match inner.faults.admit(mode) {
        Plan::Reset => return Err(faults::reset_response()),
        Plan::Fail(kind) => return Err(failure(kind)),
        Plan::Serve { mode, cut } => {
            FaultControl::delay(&mode).await;
            cut
        }
    };
    let version = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "api-version")
        .map(|(_, value)| value.into_owned());
    match version {
        None => return Err(error(StatusCode::NOT_FOUND, "404", "Resource not found")),
        Some(version) if !is_api_version(&version) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "API version not supported",
            ))
        }
        Some(_) => {}
    }
    let key = headers.get("api-key").and_then(|value| value.to_str().ok());
    if key != Some(inner.api_key.as_str()) {
        return Err(access_denied());
    }
    if !inner.deployments.iter().any(|name| name == deployment) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
        ));
    }
    Ok(cut)
}

/// The body as a JSON object, if it is one.
fn parse_body(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(body)) => Some(body),
        _ => None,
    }
}

fn unparsable() -> Response {
    invalid(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.",
        None,
    )
}

fn json_answer(body: &Value, cut: bool) -> Response {
    if cut {
        return axum::http::Response::builder()
            .header("content-type", "application/json")
            .body(faults::cut_json_body(body))
            .unwrap();
    }
    Json(body.clone()).into_response()
}

async fn chat(
    State(inner): State<Arc<Inner>>,
    Path((mode, deployment)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner
        .requests
        .record("POST", uri.path(), uri.query(), &headers, &body);
    let cut = match admit(&inner, &mode, &deployment, &uri, &headers).await {
        Ok(cut) => cut,
        Err(response) => return response,
    };
    let Some(request) = parse_body(&body) else {
        return unparsable();
    };
    if let Err((message, param)) = validate_chat(&request) {
        return invalid(&message, param.as_deref());
    }
    let max_tokens = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let stops: Vec<&str> = match request.get("stop") {
        Some(Value::String(stop)) => vec![stop.as_str()],
        Some(Value::Array(stops)) => stops.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let (pieces, stop) = faults::generate(&REPLY_PIECES, max_tokens, &stops);
    let finish_reason = if stop == Stop::Length {
        "length"
    } else {
        "stop"
    };
    let completion_tokens = pieces.len() as u64;
    let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion_tokens,
                       "total_tokens": PROMPT_TOKENS + completion_tokens});
    if request.get("stream") == Some(&Value::Bool(true)) {
        let include_usage = request
            .get("stream_options")
            .is_some_and(|options| options["include_usage"] == true);
        let events = stream_events(&pieces, finish_reason, include_usage.then_some(usage));
        return axum::http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(faults::events_body(events, cut))
            .unwrap();
    }
    let body = json!({
        "id": completion_id(), "object": "chat.completion", "created": created(), "model": CHAT_MODEL,
        "system_fingerprint": "fp_azure",
        "prompt_filter_results": prompt_filter_results(),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat(), "refusal": null},
                     "finish_reason": finish_reason, "logprobs": null,
                     "content_filter_results": content_filters()}],
        "usage": usage,
    });
    json_answer(&body, cut)
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn stream_events(pieces: &[String], finish_reason: &str, usage: Option<Value>) -> Vec<Bytes> {
    let id = completion_id();
    let created = created();
    let with_usage = usage.is_some();
    let chunk = |delta: Value, finish_reason: Value, filters: Value| {
        let mut chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                               "model": CHAT_MODEL, "system_fingerprint": "fp_azure",
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                            "logprobs": null, "content_filter_results": filters}]});
        if with_usage {
            chunk["usage"] = Value::Null;
        }
        data(&chunk)
    };
    let mut events = vec![
        data(
            &json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                     "prompt_filter_results": prompt_filter_results()}),
        ),
        chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            json!({}),
        ),
    ];
    for piece in pieces {
        events.push(chunk(
            json!({"content": piece}),
            Value::Null,
            content_filters(),
        ));
    }
    events.push(chunk(json!({}), json!(finish_reason), json!({})));
    if let Some(usage) = usage {
        events.push(data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                                 "model": CHAT_MODEL, "system_fingerprint": "fp_azure",
                                 "choices": [], "usage": usage}),
        ));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// Checks a chat completions body; the error is OpenAI's message and `param`.
pub fn validate_chat(request: &Map<String, Value>) -> Result<(), (String, Option<String>)> {
    if let Some(field) = request
        .keys()
        .find(|key| !CHAT_ARGUMENTS.contains(&key.as_str()))
    {
        return Err((
            format!("Unrecognized request argument supplied: {field}"),
            None,
        ));
    }
    let messages = match request.get("messages") {
        None => {
            return Err((
                "'messages' is a required property".into(),
                Some("messages".into()),
            ))
        }
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err((
                "[] is too short - 'messages'".into(),
                Some("messages".into()),
            ))
        }
        Some(Value::Array(messages)) => messages,
        Some(other) => {
            return Err((
                format!("{other} is not of type 'array' - 'messages'"),
                Some("messages".into()),
            ))
        }
    };
    for (index, message) in messages.iter().enumerate() {
        let role = message["role"].as_str();
        if !role.is_some_and(|role| ROLES.contains(&role)) {
            return Err((
                format!("Invalid value for 'messages[{index}].role': expected one of {ROLES:?}."),
                Some(format!("messages[{index}].role")),
            ));
        }
        let content = &message["content"];
        let content_ok = content.is_string()
            || content.is_array()
            || (content.is_null()
                && role == Some("assistant")
                && (message.get("tool_calls").is_some() || message.get("function_call").is_some()));
        if !content_ok {
            return Err((
                format!("Missing required parameter: 'messages[{index}].content'."),
                Some(format!("messages[{index}].content")),
            ));
        }
    }
    if let Some(stream) = request.get("stream") {
        if !stream.is_boolean() {
            return Err((
                format!("{stream} is not of type 'boolean' - 'stream'"),
                Some("stream".into()),
            ));
        }
    }
    if request
        .get("stream_options")
        .is_some_and(|options| !options.is_null())
        && request.get("stream") != Some(&Value::Bool(true))
    {
        return Err((
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            Some("stream_options".into()),
        ));
    }
    for field in ["max_tokens", "max_completion_tokens", "n"] {
        if let Some(value) = request.get(field) {
            if !value.is_null() && value.as_u64().is_none_or(|count| count < 1) {
                return Err((
                    format!("Invalid '{field}': integer below minimum value. Expected a value >= 1, but got {value} instead."),
                    Some(field.into()),
                ));
            }
        }
    }
    Ok(())
}

async fn embeddings(
    State(inner): State<Arc<Inner>>,
    Path((mode, deployment)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner
        .requests
        .record("POST", uri.path(), uri.query(), &headers, &body);
    let cut = match admit(&inner, &mode, &deployment, &uri, &headers).await {
        Ok(cut) => cut,
        Err(response) => return response,
    };
    let Some(request) = parse_body(&body) else {
        return unparsable();
    };
    if let Some(field) = request
        .keys()
        .find(|key| !EMBEDDING_ARGUMENTS.contains(&key.as_str()))
    {
        return invalid(
            &format!("Unrecognized request argument supplied: {field}"),
            None,
        );
    }
    let inputs = match request.get("input") {
        Some(Value::String(_)) => 1,
        Some(Value::Array(items))
            if !items.is_empty()
                && (items.iter().all(Value::is_string) || items.iter().all(Value::is_u64)) =>
        {
            if items.iter().all(Value::is_u64) {
                1
            } else {
                items.len()
            }
        }
        Some(_) => {
            return invalid(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                Some("input"),
            )
        }
        None => return invalid("'input' is a required property", Some("input")),
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| json!({"object": "embedding", "index": index, "embedding": [0.1, 0.2, 0.3]}))
        .collect();
    let tokens = EMBEDDING_TOKENS * inputs as u64;
    json_answer(
        &json!({"object": "list", "model": EMBEDDING_MODEL, "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        cut,
    )
}

//! A fake Google Gemini API (PROVIDERS.md 7.3, ai.google.dev/api/generate-content):
//! `POST /{mode}/v1beta/models/{model}:generateContent`,
//! `POST /{mode}/v1beta/models/{model}:streamGenerateContent?alt=sse`,
//! `GET /{mode}/v1beta/models/{model}` and `GET /{mode}/v1beta/models`.
//!
//! - Auth: `x-goog-api-key` header or `?key=`; missing is 403 `PERMISSION_DENIED`, wrong is
//!   401 `UNAUTHENTICATED`, in Google's `{"error":{"code","message","status"}}` shape.
//! - Body: `contents` (non-empty; role `user`|`model` when given; non-empty `parts`, each with
//!   exactly one of `text`, `inlineData{mimeType,data(base64)}`, `functionCall{name,args}`,
//!   `functionResponse{name,response}`, `fileData`), optional `systemInstruction{parts}`,
//!   `generationConfig` (`maxOutputTokens`, `temperature`, `topP`, `topK`, `stopSequences`,
//!   `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty`, `responseMimeType`,
//!   `responseSchema`, `thinkingConfig`), `tools[{functionDeclarations}]`, `toolConfig`,
//!   `safetySettings`, `cachedContent`. Field names may be camelCase or snake_case (proto
//!   JSON accepts both). Unknown fields are 400 `INVALID_ARGUMENT`
//!   `Invalid JSON payload received. Unknown name "<field>"...`.
//! - Models must be `gemini-*` (else 404 `NOT_FOUND`).
//! - Answers: [`REPLY_PIECES`] (one token each), `MAX_TOKENS` under a small
//!   `maxOutputTokens`, cut at `stopSequences` (`STOP`); a `functionCall` of the first declared
//!   function when the last user turn says "weather" (or the calling mode is `ANY`).
//! - Streaming requires `alt=sse` (the real API would answer a JSON array; the fake refuses so
//!   a client that forgets `alt=sse` is caught). Events are `data: <json>\r\n\r\n` with
//!   Google's CRLF line endings; intermediate events carry only the prompt count in
//!   `usageMetadata`, the last one the `finishReason` and the full usage; no `[DONE]`.
//! - Modes and fault injection: see [`super::faults`].

#![allow(dead_code)]

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::faults::{self, Failure, FaultControl, Plan, RequestLog, Stop};

/// The API key the fake accepts by default.
pub const API_KEY: &str = "gemini-test-key";
/// The model the fake lists.
pub const MODEL: &str = "gemini-fake";
/// `usageMetadata.promptTokenCount` of every answer.
pub const PROMPT_TOKENS: u64 = 8;
/// The text answer, one token per piece.
pub const REPLY_PIECES: [&str; 6] = ["Hello", " there", " from", " the", " fake", " Gemini"];
/// The whole text answer.
pub const REPLY: &str = "Hello there from the fake Gemini";
/// `candidatesTokenCount` of a full text answer.
pub const CANDIDATE_TOKENS: u64 = REPLY_PIECES.len() as u64;
/// `candidatesTokenCount` of a function-call answer.
pub const TOOL_CANDIDATE_TOKENS: u64 = 5;

const TOP_LEVEL: [&str; 7] = [
    "contents",
    "systemInstruction",
    "generationConfig",
    "tools",
    "toolConfig",
    "safetySettings",
    "cachedContent",
];
const GENERATION_CONFIG: [&str; 12] = [
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "candidateCount",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "thinkingConfig",
];

struct Inner {
    api_key: String,
    requests: RequestLog,
    faults: FaultControl,
}

/// A running fake Gemini API on 127.0.0.1.
pub struct FakeGemini {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    inner: Arc<Inner>,
}

impl FakeGemini {
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
            .route("/{mode}/v1beta/models", get(list_models))
            .route(
                "/{mode}/v1beta/models/{name}",
                get(get_model).post(generate),
            )
            .with_state(inner.clone());
        let addr = faults::serve(router).await;
        Self {
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// The API base URL for a mode; clients append `/v1beta/models/...`.
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

/// Google's error body.
pub fn error_body(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

fn error(code: StatusCode, status: &str, message: &str) -> Response {
    (code, Json(error_body(code.as_u16(), status, message))).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message.into())
}

fn failure(failure: Failure) -> Response {
    let mut response = match failure {
        Failure::Unavailable => error(
            failure.status(),
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        Failure::RateLimited => {
            let mut body = error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
            );
            body["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                               "retryDelay": format!("{}s", faults::RETRY_AFTER_SECONDS)}]);
            (failure.status(), Json(body)).into_response()
        }
        Failure::BadRequest => invalid(
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
        ),
        Failure::Unauthorized => error(
            failure.status(),
            "UNAUTHENTICATED",
            "API key not valid. Please pass a valid API key.",
        ),
    };
    if let Some(seconds) = failure.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

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

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The answer to a request without the right API key, if it lacks one.
fn key_problem(inner: &Inner, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(uri, "key"));
    match key {
        None => Some(error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
        Some(key) if key != inner.api_key => Some(failure(Failure::Unauthorized)),
        Some(_) => None,
    }
}

fn not_found(model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."),
    )
}

fn model_info(model: &str) -> Value {
    json!({"name": format!("models/{model}"), "version": "001", "displayName": "Gemini Fake",
           "description": "A fake Gemini model for tests", "inputTokenLimit": 1_048_576,
           "outputTokenLimit": 8192,
           "supportedGenerationMethods": ["generateContent", "countTokens", "streamGenerateContent"],
           "temperature": 1.0, "topP": 0.95, "topK": 40})
}

fn json_answer(body: &Value, cut: bool) -> Response {
    if cut {
        return axum::http::Response::builder()
            .header("content-type", "application/json; charset=UTF-8")
            .body(faults::cut_json_body(body))
            .unwrap();
    }
    Json(body.clone()).into_response()
}

async fn list_models(
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
    if let Some(response) = key_problem(&inner, &uri, &headers) {
        return response;
    }
    json_answer(&json!({"models": [model_info(MODEL)]}), cut)
}

async fn get_model(
    State(inner): State<Arc<Inner>>,
    Path((mode, model)): Path<(String, String)>,
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
    if let Some(response) = key_problem(&inner, &uri, &headers) {
        return response;
    }
    if !model.starts_with("gemini-") {
        return not_found(&model);
    }
    json_answer(&model_info(&model), cut)
}

async fn generate(
    State(inner): State<Arc<Inner>>,
    Path((mode, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner
        .requests
        .record("POST", uri.path(), uri.query(), &headers, &body);
    let cut = match admit(&inner, &mode).await {
        Ok(cut) => cut,
        Err(response) => return response,
    };
    if let Some(response) = key_problem(&inner, &uri, &headers) {
        return response;
    }
    let Some((model, method)) = name.split_once(':') else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        );
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Method not found: {method}"),
            )
        }
    };
    if !model.starts_with("gemini-") {
        return not_found(model);
    }
    if stream && query_param(&uri, "alt").as_deref() != Some("sse") {
        return invalid(
            "this fake streams only server-sent events: add ?alt=sse to streamGenerateContent",
        );
    }
    let request = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(request)) => request,
        _ => return invalid("Invalid JSON payload received. Expected a JSON object."),
    };
    if let Err(message) = validate(&request) {
        return invalid(message);
    }
    let answer = answer(&request);
    if stream {
        return axum::http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(faults::events_body(stream_events(model, &answer), cut))
            .unwrap();
    }
    json_answer(&full_response(model, &answer), cut)
}

/// What the fake model says.
struct Answer {
    pieces: Vec<String>,
    function: Option<String>,
    finish_reason: &'static str,
    candidate_tokens: u64,
}

fn answer(request: &Map<String, Value>) -> Answer {
    if let Some(function) = function_call(request) {
        return Answer {
            pieces: Vec::new(),
            function: Some(function),
            finish_reason: "STOP",
            candidate_tokens: TOOL_CANDIDATE_TOKENS,
        };
    }
    let config = field(request, "generationConfig");
    let max_tokens = config
        .and_then(|config| field_of(config, "maxOutputTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let stops: Vec<&str> = config
        .and_then(|config| field_of(config, "stopSequences"))
        .and_then(Value::as_array)
        .map(|stops| stops.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let (pieces, stop) = faults::generate(&REPLY_PIECES, max_tokens, &stops);
    Answer {
        candidate_tokens: pieces.len() as u64,
        pieces,
        function: None,
        finish_reason: if stop == Stop::Length {
            "MAX_TOKENS"
        } else {
            "STOP"
        },
    }
}

fn function_call(request: &Map<String, Value>) -> Option<String> {
    let first = field(request, "tools")?
        .as_array()?
        .iter()
        .filter_map(|tool| field_of(tool, "functionDeclarations").and_then(Value::as_array))
        .flatten()
        .find_map(|declaration| declaration["name"].as_str())?
        .to_owned();
    let calling =
        field(request, "toolConfig").and_then(|config| field_of(config, "functionCallingConfig"));
    let mode = calling
        .and_then(|calling| calling["mode"].as_str())
        .unwrap_or("AUTO");
    let allowed = calling
        .and_then(|calling| field_of(calling, "allowedFunctionNames"))
        .and_then(Value::as_array)
        .and_then(|names| names.first())
        .and_then(Value::as_str)
        .map(str::to_owned);
    match mode {
        "NONE" => None,
        "ANY" => Some(allowed.unwrap_or(first)),
        _ => last_user_text(request)
            .to_lowercase()
            .contains("weather")
            .then_some(first),
    }
}

fn last_user_text(request: &Map<String, Value>) -> String {
    field(request, "contents")
        .and_then(Value::as_array)
        .and_then(|contents| {
            contents
                .iter()
                .rev()
                .find(|content| content.get("role").is_none() || content["role"] == "user")
        })
        .and_then(|content| content["parts"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn response_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn usage(candidate_tokens: u64) -> Value {
    json!({"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": candidate_tokens,
           "totalTokenCount": PROMPT_TOKENS + candidate_tokens})
}

fn parts(answer: &Answer, text: &str) -> Value {
    match &answer.function {
        Some(name) => json!([{"functionCall": {"name": name, "args": {"city": "Paris"}}}]),
        None => json!([{"text": text}]),
    }
}

fn full_response(model: &str, answer: &Answer) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": parts(answer, &answer.pieces.concat())},
                           "finishReason": answer.finish_reason, "index": 0}],
           "usageMetadata": usage(answer.candidate_tokens),
           "modelVersion": model, "responseId": response_id()})
}

fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\r\n\r\n"))
}

fn stream_events(model: &str, answer: &Answer) -> Vec<Bytes> {
    let id = response_id();
    let pieces = if answer.function.is_some() || answer.pieces.is_empty() {
        vec![String::new()]
    } else {
        answer.pieces.clone()
    };
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut candidate =
                json!({"content": {"role": "model", "parts": parts(answer, piece)}, "index": 0});
            let usage = if index == last {
                candidate["finishReason"] = json!(answer.finish_reason);
                usage(answer.candidate_tokens)
            } else {
                json!({"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS})
            };
            event(&json!({"candidates": [candidate], "usageMetadata": usage,
                          "modelVersion": model, "responseId": id}))
        })
        .collect()
}

/// The camelCase spelling of a proto JSON name (`max_output_tokens` → `maxOutputTokens`).
pub fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

/// The snake_case spelling of a camelCase name.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            out.push('_');
            out.push(character.to_ascii_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

/// A field by its camelCase name, in either spelling.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.get(&snake(name)))
}

fn field_of<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object().and_then(|object| field(object, name))
}

/// Rejects names outside `allowed` (camelCase) in `object`, found at `at` (a snake_case path).
fn known_fields(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match object
        .keys()
        .find(|key| !allowed.contains(&camel(key).as_str()))
    {
        None => Ok(()),
        Some(key) if at.is_empty() => Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
        )),
        Some(key) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
        )),
    }
}

fn object_at<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value.as_object().ok_or_else(|| {
        format!("Invalid JSON payload received. Expected an object at '{at}', got {value}.")
    })
}

fn array_at<'a>(value: &'a Value, at: &str) -> Result<&'a Vec<Value>, String> {
    value.as_array().ok_or_else(|| {
        format!("Invalid JSON payload received. Expected a list at '{at}', got {value}.")
    })
}

fn typed(
    value: Option<&Value>,
    at: &str,
    kind: &str,
    ok: fn(&Value) -> bool,
) -> Result<(), String> {
    match value {
        Some(value) if !ok(value) => Err(format!("Invalid value at '{at}' ({kind}), {value}")),
        _ => Ok(()),
    }
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

/// Checks a `GenerateContentRequest` body; the error is the API's message.
pub fn validate(request: &Map<String, Value>) -> Result<(), String> {
    known_fields(request, &TOP_LEVEL, "")?;
    let contents = match field(request, "contents") {
        None => {
            return Err("* GenerateContentRequest.contents: contents is not specified\n".into())
        }
        Some(contents) => array_at(contents, "contents")?,
    };
    if contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
    }
    for (index, content) in contents.iter().enumerate() {
        validate_content(content, &format!("contents[{index}]"), true)?;
    }
    if let Some(system) = field(request, "systemInstruction") {
        validate_content(system, "system_instruction", false)?;
    }
    if let Some(config) = field(request, "generationConfig") {
        let config = object_at(config, "generation_config")?;
        known_fields(config, &GENERATION_CONFIG, "generation_config")?;
        for name in ["maxOutputTokens", "topK", "candidateCount", "seed"] {
            typed(
                field(config, name),
                &format!("generation_config.{}", snake(name)),
                "TYPE_INT32",
                is_integer,
            )?;
        }
        for name in ["temperature", "topP", "presencePenalty", "frequencyPenalty"] {
            typed(
                field(config, name),
                &format!("generation_config.{}", snake(name)),
                "TYPE_FLOAT",
                Value::is_number,
            )?;
        }
        typed(
            field(config, "responseMimeType"),
            "generation_config.response_mime_type",
            "TYPE_STRING",
            Value::is_string,
        )?;
        for name in ["responseSchema", "thinkingConfig"] {
            typed(
                field(config, name),
                &format!("generation_config.{}", snake(name)),
                "TYPE_MESSAGE",
                Value::is_object,
            )?;
        }
        if let Some(stops) = field(config, "stopSequences") {
            let stops = array_at(stops, "generation_config.stop_sequences")?;
            if let Some(stop) = stops.iter().find(|stop| !stop.is_string()) {
                return Err(format!(
                    "Invalid value at 'generation_config.stop_sequences' (TYPE_STRING), {stop}"
                ));
            }
            if stops.len() > 5 {
                return Err("* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences are allowed\n".into());
            }
        }
    }
    if let Some(tools) = field(request, "tools") {
        for (index, tool) in array_at(tools, "tools")?.iter().enumerate() {
            let at = format!("tools[{index}]");
            let tool = object_at(tool, &at)?;
            known_fields(
                tool,
                &["functionDeclarations", "googleSearch", "codeExecution"],
                &at,
            )?;
            let Some(declarations) = field(tool, "functionDeclarations") else {
                continue;
            };
            let at = format!("{at}.function_declarations");
            for (index, declaration) in array_at(declarations, &at)?.iter().enumerate() {
                let at = format!("{at}[{index}]");
                let declaration = object_at(declaration, &at)?;
                known_fields(declaration, &["name", "description", "parameters"], &at)?;
                if !declaration.get("name").is_some_and(Value::is_string) {
                    return Err(format!("* GenerateContentRequest.{at}.name: [FIELD_INVALID] Invalid function name. Must start with a letter or an underscore.\n"));
                }
                typed(
                    declaration.get("description"),
                    &format!("{at}.description"),
                    "TYPE_STRING",
                    Value::is_string,
                )?;
                typed(
                    declaration.get("parameters"),
                    &format!("{at}.parameters"),
                    "TYPE_MESSAGE",
                    Value::is_object,
                )?;
            }
        }
    }
    if let Some(config) = field(request, "toolConfig") {
        let config = object_at(config, "tool_config")?;
        known_fields(config, &["functionCallingConfig"], "tool_config")?;
        if let Some(calling) = field(config, "functionCallingConfig") {
            let at = "tool_config.function_calling_config";
            let calling = object_at(calling, at)?;
            known_fields(calling, &["mode", "allowedFunctionNames"], at)?;
            if let Some(mode) = calling.get("mode") {
                let valid = mode.as_str().is_some_and(|mode| {
                    ["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"].contains(&mode)
                });
                if !valid {
                    return Err(format!("Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), {mode}"));
                }
            }
        }
    }
    if let Some(settings) = field(request, "safetySettings") {
        for (index, setting) in array_at(settings, "safety_settings")?.iter().enumerate() {
            let at = format!("safety_settings[{index}]");
            let setting = object_at(setting, &at)?;
            known_fields(setting, &["category", "threshold"], &at)?;
            for name in ["category", "threshold"] {
                typed(
                    setting.get(name),
                    &format!("{at}.{name}"),
                    "TYPE_ENUM",
                    Value::is_string,
                )?;
            }
        }
    }
    typed(
        field(request, "cachedContent"),
        "cached_content",
        "TYPE_STRING",
        Value::is_string,
    )
}

fn validate_content(content: &Value, at: &str, with_role: bool) -> Result<(), String> {
    let content = object_at(content, at)?;
    known_fields(content, &["role", "parts"], at)?;
    if let Some(role) = content.get("role") {
        let valid = role.as_str().is_some_and(|role| {
            role == "user" || role == "model" || (!with_role && role == "system")
        });
        if !valid {
            return Err("Please use a valid role: user, model.".into());
        }
    }
    let parts = match content.get("parts") {
        None => None,
        Some(parts) => Some(array_at(parts, &format!("{at}.parts"))?),
    };
    let Some(parts) = parts.filter(|parts| !parts.is_empty()) else {
        return Err(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
        ));
    };
    for (index, part) in parts.iter().enumerate() {
        validate_part(part, &format!("{at}.parts[{index}]"))?;
    }
    Ok(())
}

fn validate_part(part: &Value, at: &str) -> Result<(), String> {
    const DATA: [&str; 5] = [
        "text",
        "inlineData",
        "functionCall",
        "functionResponse",
        "fileData",
    ];
    let part = object_at(part, at)?;
    let mut allowed = DATA.to_vec();
    allowed.extend(["thought", "thoughtSignature"]);
    known_fields(part, &allowed, at)?;
    let present: Vec<&str> = DATA
        .iter()
        .copied()
        .filter(|name| field(part, name).is_some())
        .collect();
    match present.as_slice() {
        [] => {
            return Err(format!("* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field\n"))
        }
        [_] => {}
        [first, ..] => {
            return Err(format!("Invalid JSON payload received. Unknown name \"{}\" at '{at}': Oneof field 'data' is already set. Cannot set '{}'", present[1], first))
        }
    }
    typed(
        field(part, "text"),
        &format!("{at}.text"),
        "TYPE_STRING",
        Value::is_string,
    )?;
    if let Some(inline) = field(part, "inlineData") {
        let at = format!("{at}.inline_data");
        let inline = object_at(inline, &at)?;
        known_fields(inline, &["mimeType", "data"], &at)?;
        typed(
            field(inline, "mimeType"),
            &format!("{at}.mime_type"),
            "TYPE_STRING",
            Value::is_string,
        )?;
        let Some(data) = field(inline, "data").and_then(Value::as_str) else {
            return Err(format!(
                "* GenerateContentRequest.{at}.data: inline data must be base64 bytes\n"
            ));
        };
        if base64::engine::general_purpose::STANDARD
            .decode(data)
            .is_err()
            && base64::engine::general_purpose::URL_SAFE
                .decode(data)
                .is_err()
        {
            return Err(format!(
                "Invalid value at '{at}.data' (TYPE_BYTES), Base64 decoding failed for \"{data}\""
            ));
        }
    }
    if let Some(call) = field(part, "functionCall") {
        let at = format!("{at}.function_call");
        let call = object_at(call, &at)?;
        known_fields(call, &["id", "name", "args"], &at)?;
        typed(
            call.get("name"),
            &format!("{at}.name"),
            "TYPE_STRING",
            Value::is_string,
        )?;
        typed(
            call.get("args"),
            &format!("{at}.args"),
            "TYPE_MESSAGE",
            Value::is_object,
        )?;
    }
    if let Some(response) = field(part, "functionResponse") {
        let at = format!("{at}.function_response");
        let response = object_at(response, &at)?;
        known_fields(response, &["id", "name", "response"], &at)?;
        typed(
            response.get("name"),
            &format!("{at}.name"),
            "TYPE_STRING",
            Value::is_string,
        )?;
        typed(
            response.get("response"),
            &format!("{at}.response"),
            "TYPE_MESSAGE",
            Value::is_object,
        )?;
    }
    Ok(())
}

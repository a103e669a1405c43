//! The data plane: OpenAI-compatible routes that authenticate an API key,
//! admit the request (limits, credits), forward it to the endpoint's upstream
//! and meter the result. No database round trip and no lock on this path.

pub mod backend;
pub mod balance;
mod forward;
pub mod metering;
pub mod native;
mod replicate;
pub mod request_body;
pub mod resilience;
pub mod stream;
pub mod translate;
pub mod translated_stream;
pub mod upstream;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;

use crate::domain::{now_ms, Endpoint, EndpointStatus, Permission, UpstreamApi};
use crate::error::HttpError;
use crate::ratelimit::{Admission, LimitScope};
use crate::registry::Route;
use crate::secrets::hashes_equal;
use crate::state::SharedState;
use crate::tokens::looks_like_api_key;
use forward::{AnthropicRequest, ClientRequest};
use metering::{Meter, Outcome};
use request_body::{Operation, RequestBody};
use translated_stream::ClientProtocol;
use upstream::UpstreamError;

/// Largest upstream (non-streamed) response body the gateway will buffer.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// The gateway routes.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route(
            "/api/v1/inference/{endpoint_id}/chat/completions",
            post(endpoint_chat),
        )
        .route(
            "/api/v1/inference/{endpoint_id}/completions",
            post(endpoint_completions),
        )
        .route(
            "/api/v1/inference/{endpoint_id}/embeddings",
            post(endpoint_embeddings),
        )
        .route(
            "/api/v1/inference/{endpoint_id}/status",
            get(endpoint_status),
        )
}

async fn chat(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    proxy(state, Operation::Chat, None, headers, body).await
}

/// `POST /v1/messages`: the Anthropic Messages API, to any chat endpoint.
async fn messages(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    proxy_as(
        state,
        Operation::Chat,
        None,
        headers,
        body,
        ClientProtocol::Anthropic,
        None,
    )
    .await
}

async fn completions(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    proxy(state, Operation::Completions, None, headers, body).await
}

async fn embeddings(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    proxy(state, Operation::Embeddings, None, headers, body).await
}

async fn endpoint_chat(
    State(state): State<SharedState>,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy(state, Operation::Chat, Some(endpoint_id), headers, body).await
}

async fn endpoint_completions(
    State(state): State<SharedState>,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy(
        state,
        Operation::Completions,
        Some(endpoint_id),
        headers,
        body,
    )
    .await
}

async fn endpoint_embeddings(
    State(state): State<SharedState>,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy(
        state,
        Operation::Embeddings,
        Some(endpoint_id),
        headers,
        body,
    )
    .await
}

/// `GET /v1/models`: the endpoint this key may use.
async fn list_models(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&state, &headers).map(|route| {
        let endpoint = &route.endpoint.endpoint;
        axum::Json(serde_json::json!({
            "object": "list",
            "data": [{
                "id": endpoint.name,
                "object": "model",
                "created": endpoint.created_at / 1000,
                "owned_by": "switchyard",
                "endpoint_id": endpoint.id,
                "modality": endpoint.modality,
                "status": endpoint.status,
            }]
        }))
        .into_response()
    });
    finish_response(
        result.unwrap_or_else(IntoResponse::into_response),
        &request_id,
    )
}

/// `GET /api/v1/inference/{id}/status`: whether the endpoint can take requests.
async fn endpoint_status(
    State(state): State<SharedState>,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&state, &headers).and_then(|route| {
        let endpoint = &route.endpoint.endpoint;
        if endpoint.id != endpoint_id {
            return Err(endpoint_not_found(&endpoint_id));
        }
        Ok(axum::Json(serde_json::json!({
            "endpoint_id": endpoint.id,
            "name": endpoint.name,
            "model": endpoint.name,
            "modality": endpoint.modality,
            "status": endpoint.status,
            "ready": matches!(endpoint.status, EndpointStatus::Active | EndpointStatus::Idle),
            "last_active_at": endpoint.last_active_at.map(crate::domain::format_time),
        }))
        .into_response())
    });
    finish_response(
        result.unwrap_or_else(IntoResponse::into_response),
        &request_id,
    )
}

async fn proxy(
    state: SharedState,
    operation: Operation,
    path_endpoint: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy_as(
        state,
        operation,
        path_endpoint,
        headers,
        body,
        ClientProtocol::OpenAi,
        None,
    )
    .await
}

/// Serves an OpenAI chat completion `body` for the dashboard playground on
/// `route` (the internal key of the caller's endpoint `endpoint_id`) exactly
/// as `POST /api/v1/inference/{endpoint_id}/chat/completions` serves a client
/// with that key: same validation, limits, credit check, attempts and meter.
pub async fn playground_chat(
    state: SharedState,
    route: Route,
    endpoint_id: String,
    body: Bytes,
) -> Response {
    proxy_as(
        state,
        Operation::Chat,
        Some(endpoint_id),
        HeaderMap::new(),
        Body::from(body),
        ClientProtocol::OpenAi,
        Some(route),
    )
    .await
}

/// One gateway request; `route` is given when the caller was authenticated
/// elsewhere (the playground), else the request's API key is checked.
async fn proxy_as(
    state: SharedState,
    operation: Operation,
    path_endpoint: Option<String>,
    headers: HeaderMap,
    body: Body,
    protocol: ClientProtocol,
    route: Option<Route>,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let span = tracing::info_span!(
        "gateway",
        request_id = %request_id.to_str().unwrap_or_default(),
        method = operation.method_name(),
        endpoint_id = tracing::field::Empty,
    );
    async move {
        let response = match forward(
            &state,
            operation,
            path_endpoint,
            &headers,
            body,
            &request_id,
            started,
            protocol,
            route,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => {
                metrics::counter!("switchyard_gateway_rejections_total", "code" => error.code)
                    .increment(1);
                tracing::debug!(code = error.code, message = %error.message, "request refused");
                match protocol {
                    ClientProtocol::OpenAi => error.into_response(),
                    ClientProtocol::Anthropic => anthropic_error_response(&error),
                }
            }
        };
        finish_response(response, &request_id)
    }
    .instrument(span)
    .await
}

/// A gateway error in the Anthropic shape (`{"type":"error","error":{...}}`),
/// which keeps OpenAI's `error.message/type/code/param` inside.
fn anthropic_error_response(error: &HttpError) -> Response {
    let mut body: serde_json::Value =
        serde_json::from_slice(&error.body_bytes()).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = body.as_object_mut() {
        object.insert("type".to_owned(), serde_json::Value::from("error"));
    }
    let mut response = error.clone().into_response();
    *response.body_mut() = Body::from(body.to_string());
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

#[expect(clippy::too_many_arguments, reason = "the parts of one request")]
async fn forward(
    state: &SharedState,
    operation: Operation,
    path_endpoint: Option<String>,
    headers: &HeaderMap,
    body: Body,
    request_id: &HeaderValue,
    started: Instant,
    protocol: ClientProtocol,
    route: Option<Route>,
) -> Result<Response, HttpError> {
    let route = match route {
        Some(route) => route,
        None => authenticate(state, headers)?,
    };
    let endpoint = &route.endpoint.endpoint;
    tracing::Span::current().record("endpoint_id", endpoint.id.as_str());
    let permission = match operation {
        Operation::Chat => Permission::Chat,
        Operation::Completions => Permission::Completions,
        Operation::Embeddings => Permission::Embeddings,
    };
    if !route.key.allows(permission) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "permission_denied",
            format!("this API key may not call {}", operation.method_name()),
        ));
    }
    let bytes = read_body(headers, body, state.settings.max_body_bytes).await?;
    let (request, model) = match protocol {
        ClientProtocol::OpenAi => {
            let body = RequestBody::parse(&bytes, operation)?;
            let model = body.model.clone();
            (ClientRequest::OpenAi(body), model)
        }
        ClientProtocol::Anthropic => {
            let (model, head) = parse_anthropic(&bytes)?;
            (
                ClientRequest::Anthropic(head),
                model.map(std::borrow::Cow::Owned),
            )
        }
    };
    match (&path_endpoint, &model) {
        (Some(id), _) if *id != endpoint.id => return Err(endpoint_not_found(id)),
        (Some(_), _) => {}
        (None, Some(model)) if model.as_ref() == endpoint.name || model.as_ref() == endpoint.id => {
        }
        (None, Some(model)) => return Err(endpoint_not_found(model)),
        (None, None) => return Err(HttpError::invalid_field("model", "is required")),
    }
    check_status(endpoint.status)?;
    if endpoint.upstream_api == UpstreamApi::Replicate {
        let ClientRequest::OpenAi(request) = &request else {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unsupported_operation",
                "the Messages API is not offered for Replicate upstreams; use /v1/chat/completions",
            ));
        };
        return replicate::forward(state, &route, operation, request, request_id, started).await;
    }
    let limits = admit(state, &route).await?;
    check_balance(&route)?;
    let mut response = forward::attempts(
        state, &route, operation, &request, &bytes, request_id, started,
    )
    .await?;
    add_rate_limit_headers(response.headers_mut(), &limits);
    Ok(response)
}

/// Reads `model`, `stream` and the prompt size of an Anthropic Messages body.
fn parse_anthropic(bytes: &[u8]) -> Result<(Option<String>, AnthropicRequest), HttpError> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        model: Option<String>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(borrow)]
        messages: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        system: Option<&'a serde_json::value::RawValue>,
    }
    let head: Head<'_> = serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() {
            HttpError::invalid_json(format!("invalid field: {error}"))
        } else {
            HttpError::invalid_json(format!("the body is not valid JSON: {error}"))
        }
    })?;
    let Some(messages) = head.messages else {
        return Err(HttpError::invalid_field("messages", "is required"));
    };
    let prompt_bytes = messages.get().len() + head.system.map_or(0, |system| system.get().len());
    Ok((
        head.model,
        AnthropicRequest {
            stream: head.stream.unwrap_or(false),
            prompt_bytes,
        },
    ))
}

fn authenticate(state: &SharedState, headers: &HeaderMap) -> Result<Route, HttpError> {
    let invalid = || {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "invalid API key: pass a key as Authorization: Bearer sy_live_…",
        )
    };
    // Anthropic SDKs send the key as `x-api-key`.
    let token = bearer_token(headers)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
        })
        .ok_or_else(invalid)?;
    if !looks_like_api_key(token) {
        return Err(invalid());
    }
    let hash = state.secrets.hash_token(token);
    let route = state.registry.route(&hash).ok_or_else(invalid)?;
    if !hashes_equal(&route.key.key.key_hash, &hash) || !route.key.key.is_active {
        return Err(invalid());
    }
    if route
        .key
        .key
        .expires_at
        .is_some_and(|expires_at| expires_at <= now_ms())
    {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "expired_api_key",
            "this API key has expired",
        ));
    }
    Ok(route)
}

/// Extracts the token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn admit(state: &SharedState, route: &Route) -> Result<Admission, HttpError> {
    let key = &route.key.key;
    let now_seconds = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let per_minute = u64::try_from(key.rate_limit_per_minute).unwrap_or(0);
    let per_day = u64::try_from(key.rate_limit_per_day).unwrap_or(0);
    let shared = match &state.shared_limits {
        Some(limiter) => {
            limiter
                .admit(&key.id, now_seconds, per_minute, per_day)
                .await
        }
        None => None,
    };
    let admission =
        shared.unwrap_or_else(|| route.key.limiter.admit(now_seconds, per_minute, per_day));
    match admission {
        allowed @ Admission::Allowed { .. } => Ok(allowed),
        Admission::Rejected {
            scope,
            limit,
            retry_after_seconds,
        } => {
            metrics::counter!("switchyard_rate_limit_rejections_total", "scope" => match scope {
                LimitScope::Minute => "minute",
                LimitScope::Day => "day",
            })
            .increment(1);
            let (code, window) = match scope {
                LimitScope::Minute => ("rate_limit_minute", "minute"),
                LimitScope::Day => ("rate_limit_day", "day"),
            };
            Err(HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                code,
                format!("rate limit of {limit} requests per {window} reached; retry in {retry_after_seconds} s"),
            )
            .with_retry_after(retry_after_seconds))
        }
    }
}

/// Refuses a request once the user's prepaid balance is used up (402).
fn check_balance(route: &Route) -> Result<(), HttpError> {
    if route.account.balance() <= 0 {
        metrics::counter!("switchyard_credit_rejections_total").increment(1);
        return Err(HttpError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_credits",
            "your credit balance is exhausted; add credits to continue",
        ));
    }
    Ok(())
}

/// How long one request may wait on the endpoint's upstream.
pub(crate) fn upstream_timeout(state: &SharedState, endpoint: &Endpoint) -> Duration {
    endpoint
        .timeout_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(state.settings.upstream_timeout, Duration::from_secs)
}

fn check_status(status: EndpointStatus) -> Result<(), HttpError> {
    match status {
        EndpointStatus::Active | EndpointStatus::Idle => Ok(()),
        EndpointStatus::Provisioning | EndpointStatus::Scaling => Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "endpoint_scaling",
            format!("endpoint is {status}; retry shortly"),
        )
        .with_retry_after(5)),
        EndpointStatus::Error => Err(HttpError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "endpoint_error",
            "endpoint is in an error state",
        )),
        EndpointStatus::Stopped | EndpointStatus::Terminated => Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "endpoint_stopped",
            format!("endpoint is {status}"),
        )),
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(HttpError::too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(HttpError::too_large(limit))
        }
        Err(error) => Err(HttpError::invalid_json(format!(
            "could not read the request body: {error}"
        ))),
    }
}

pub(crate) fn upstream_failure(meter: Meter, error: UpstreamError) -> HttpError {
    let (status, code) = match &error {
        UpstreamError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        UpstreamError::Unreachable(_) | UpstreamError::BadUrl(_) => {
            (StatusCode::BAD_GATEWAY, "endpoint_error")
        }
        UpstreamError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "server_shutting_down"),
    };
    tracing::warn!(%error, code, "upstream call failed");
    meter.finish(Outcome {
        status_code: status.as_u16(),
        usage: None,
        estimated_output_tokens: 0,
        error_code: Some(code.to_owned()),
        first_byte: None,
        upstream_finished: Instant::now(),
        compute: None,
    });
    let message = match &error {
        UpstreamError::Timeout(timeout) => {
            format!("the endpoint did not answer within {} s", timeout.as_secs())
        }
        UpstreamError::ShuttingDown => "the gateway is shutting down; retry".to_owned(),
        _ => "the endpoint's upstream server is unreachable".to_owned(),
    };
    HttpError::new(status, "server_error", code, message)
}

/// The usage record's error code of an upstream error answer. Out-of-memory
/// failures get their own code so the health monitor can suggest a larger GPU.
pub(crate) fn upstream_error_code(status: StatusCode, body: &[u8]) -> String {
    if status.is_server_error() && memchr::memmem::find(body, b"out of memory").is_some() {
        "upstream_out_of_memory".to_owned()
    } else {
        format!("upstream_{}", status.as_u16())
    }
}

/// Bytes of generated text in a non-streamed completion (for estimating output
/// tokens when the upstream reports no usage).
pub(crate) fn generated_text_bytes(body: &[u8]) -> usize {
    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        message: Option<Message>,
        text: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        content: Option<String>,
    }
    serde_json::from_slice::<Response>(body).map_or(0, |response| {
        response
            .choices
            .iter()
            .map(|choice| {
                choice.text.as_ref().map_or(0, String::len)
                    + choice
                        .message
                        .as_ref()
                        .and_then(|message| message.content.as_ref())
                        .map_or(0, String::len)
            })
            .sum()
    })
}

fn endpoint_not_found(name: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "endpoint_not_found",
        format!("endpoint `{name}` does not exist or this key may not use it"),
    )
}

fn add_rate_limit_headers(headers: &mut HeaderMap, admission: &Admission) {
    if let Admission::Allowed {
        minute_limit,
        minute_remaining,
        minute_reset_seconds,
        day_limit,
        day_remaining,
    } = *admission
    {
        headers.insert("x-ratelimit-limit", HeaderValue::from(minute_limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(minute_remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(minute_reset_seconds));
        headers.insert("x-ratelimit-limit-day", HeaderValue::from(day_limit));
        headers.insert(
            "x-ratelimit-remaining-day",
            HeaderValue::from(day_remaining),
        );
    }
}

/// Accepts a client's `x-request-id` (printable, at most 128 bytes) or makes one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().simple().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

fn finish_response(mut response: Response, request_id: &HeaderValue) -> Response {
    response
        .headers_mut()
        .insert("x-request-id", request_id.clone());
    response
}

//! The data plane: OpenAI-compatible routes that authenticate an API key,
//! admit the request (limits, credits), forward it to the endpoint's upstream
//! and meter the result. No database round trip and no lock on this path.

pub mod metering;
mod replicate;
pub mod request_body;
pub mod stream;
pub mod translate;
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
use metering::{estimate_tokens, extract_usage, Meter, Outcome};
use request_body::{Operation, RequestBody};
use stream::MeteredStream;
use upstream::UpstreamError;

/// Largest upstream (non-streamed) response body the gateway will buffer.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// The gateway routes.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
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
        )
        .await
        {
            Ok(response) => response,
            Err(error) => {
                metrics::counter!("switchyard_gateway_rejections_total", "code" => error.code)
                    .increment(1);
                tracing::debug!(code = error.code, message = %error.message, "request refused");
                error.into_response()
            }
        };
        finish_response(response, &request_id)
    }
    .instrument(span)
    .await
}

async fn forward(
    state: &SharedState,
    operation: Operation,
    path_endpoint: Option<String>,
    headers: &HeaderMap,
    body: Body,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Response, HttpError> {
    let route = authenticate(state, headers)?;
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
    let request = RequestBody::parse(&bytes, operation)?;
    match (&path_endpoint, &request.model) {
        (Some(id), _) if *id != endpoint.id => return Err(endpoint_not_found(id)),
        (Some(_), _) => {}
        (None, Some(model)) if model.as_ref() == endpoint.name || model.as_ref() == endpoint.id => {
        }
        (None, Some(model)) => return Err(endpoint_not_found(model)),
        (None, None) => return Err(HttpError::invalid_field("model", "is required")),
    }
    check_status(endpoint.status)?;
    if endpoint.upstream_api == UpstreamApi::Replicate {
        return replicate::forward(state, &route, operation, &request, request_id, started).await;
    }
    let limits = admit(state, &route).await?;
    check_balance(&route)?;

    let upstream_body = request.to_upstream(&endpoint.upstream_model);
    let stream = request.stream && operation != Operation::Embeddings;
    let meter = Meter::start(
        route.clone(),
        state.usage.clone(),
        request_id.to_str().unwrap_or_default().to_owned(),
        operation.method_name(),
        stream,
        started,
        estimate_tokens(request.prompt_bytes),
    );
    let drop_usage_chunk = !request.client_wants_stream_usage;
    drop(request);
    let url = match operation {
        Operation::Chat => route.endpoint.chat_url.clone(),
        Operation::Completions => route.endpoint.completions_url.clone(),
        Operation::Embeddings => route.endpoint.embeddings_url.clone(),
    };
    let timeout = upstream_timeout(state, endpoint);
    let call = state.upstream.post_json(
        url,
        route.endpoint.upstream_authorization.as_ref(),
        &route.endpoint.upstream_headers,
        request_id,
        stream,
        upstream_body,
        timeout,
    );
    let upstream_response = tokio::select! {
        result = call => match result {
            Ok(response) => response,
            Err(error) => return Err(upstream_failure(meter, error)),
        },
        () = state.hard_stop.cancelled() => return Err(upstream_failure(meter, UpstreamError::ShuttingDown)),
    };

    let status = upstream_response.status();
    let is_event_stream = upstream_response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let mut response = if stream && status.is_success() && is_event_stream {
        let body = MeteredStream::new(
            upstream_response.into_body(),
            meter,
            status.as_u16(),
            drop_usage_chunk,
            state.settings.stream_idle_timeout,
            state.hard_stop.clone(),
        );
        let mut response = Response::new(Body::new(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    } else {
        let content_type = upstream_response
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned();
        let remaining = timeout.saturating_sub(meter.upstream_started.elapsed());
        let collect = tokio::time::timeout(
            remaining,
            Limited::new(upstream_response.into_body(), MAX_UPSTREAM_BODY).collect(),
        );
        let collected = tokio::select! {
            collected = collect => collected,
            () = state.hard_stop.cancelled() => {
                return Err(upstream_failure(meter, UpstreamError::ShuttingDown));
            }
        };
        let bytes: Bytes = match collected {
            Err(_) => return Err(upstream_failure(meter, UpstreamError::Timeout(timeout))),
            Ok(Err(error)) => {
                return Err(upstream_failure(
                    meter,
                    UpstreamError::Unreachable(error.to_string()),
                ));
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let usage = if status.is_success() {
            extract_usage(&bytes)
        } else {
            None
        };
        let estimated_output = match (status.is_success(), usage, operation) {
            (true, None, Operation::Chat | Operation::Completions) => {
                estimate_tokens(generated_text_bytes(&bytes))
            }
            _ => 0,
        };
        meter.finish(Outcome {
            status_code: status.as_u16(),
            usage,
            estimated_output_tokens: estimated_output,
            error_code: (!status.is_success()).then(|| upstream_error_code(status, &bytes)),
            first_byte: None,
            upstream_finished: Instant::now(),
            compute: None,
        });
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
        );
        response
    };
    add_rate_limit_headers(response.headers_mut(), &limits);
    Ok(response)
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
    let token = bearer_token(headers).ok_or_else(invalid)?;
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
fn upstream_timeout(state: &SharedState, endpoint: &Endpoint) -> Duration {
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

fn upstream_failure(meter: Meter, error: UpstreamError) -> HttpError {
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
fn upstream_error_code(status: StatusCode, body: &[u8]) -> String {
    if status.is_server_error() && memchr::memmem::find(body, b"out of memory").is_some() {
        "upstream_out_of_memory".to_owned()
    } else {
        format!("upstream_{}", status.as_u16())
    }
}

/// Bytes of generated text in a non-streamed completion (for estimating output
/// tokens when the upstream reports no usage).
fn generated_text_bytes(body: &[u8]) -> usize {
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

//! The native inference passthrough of a deployment:
//! `POST /api/v1/deployments/{id}/inference/{*path}` forwards the provider's own
//! path (`v1/chat/completions`, `v1/messages`,
//! `v1beta/models/{m}:streamGenerateContent?alt=sse`, ...) and query string to
//! the model's API root, unchanged.
//!
//! Rules:
//! - Auth is the owner's management token (metered on the deployment's
//!   internal key) or an API key of the deployment's endpoint. Another user's
//!   deployment is a 404; a stopped one a 400 `deployment_not_running`. The
//!   deployment row is read once by primary key; the route, limits and
//!   balance come from the gateway snapshot.
//! - The client's credentials never travel upstream: only an allowlist of
//!   client headers is copied, then the stored credential is added in the
//!   provider's header (Bearer for OpenAI, `x-api-key` with
//!   `anthropic-version` for Anthropic, `x-goog-api-key` for Google, `api-key`
//!   for Azure) with the model's `header-<Name>` entries.
//! - Limits are the gateway's: body size, upstream timeout, stream idle
//!   timeout, hard stop. Streams (SSE) are relayed frame by frame as they
//!   arrive; complete events are parsed on the side for usage only.
//! - Every admitted request records one usage record through [`Meter`], with
//!   the tokens the provider reported in its native shape
//!   ([`payload_usage`]), or an estimate when it reported none.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use memchr::memmem::Finder;
use serde::Deserialize;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::Instrument;

use super::metering::{estimate_tokens, Meter, Outcome, TokenUsage};
use super::stream::{content_length_hint, event_data, event_length};
use super::upstream::UpstreamError;
use super::{
    admit, authenticate, bearer_token, check_balance, check_status, finish_response,
    generated_text_bytes, read_body, request_id, upstream_error_code, upstream_failure,
    upstream_timeout, MAX_UPSTREAM_BODY,
};
use crate::api::Caller;
use crate::domain::{Permission, UpstreamApi};
use crate::error::HttpError;
use crate::registry::Route;
use crate::state::SharedState;
use crate::store::{DeploymentStatus, StoreError};
use crate::tokens::looks_like_api_key;

/// Client headers copied upstream; everything else (credentials, cookies, hop-by-hop) stays here.
const FORWARDED_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta", "openai-beta"];

/// Largest SSE event held for usage parsing; a larger one is relayed but not parsed.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

static USAGE_MARKER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage"));
static MESSAGE_STOP: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"type\":\"message_stop\""));

/// The base URL an endpoint row stores for a model's `api_endpoint`: for
/// OpenAI-compatible APIs it ends in a version path (`/v1` is added when the
/// URL has none) for the gateway's `/chat/completions`; for Anthropic, Google
/// and Azure it is the host root (a trailing `/v1`, `/v1beta` or `/openai` is removed).
pub fn gateway_base_url(api: UpstreamApi, api_endpoint: &str) -> String {
    let url = api_endpoint.trim_end_matches('/');
    match api {
        UpstreamApi::OpenAi | UpstreamApi::Replicate => {
            if path_segments(url).any(is_version_segment) {
                url.to_owned()
            } else {
                format!("{url}/v1")
            }
        }
        UpstreamApi::Anthropic | UpstreamApi::Google | UpstreamApi::Azure => {
            let mut root = url;
            while let Some(stripped) = ["/v1", "/v1beta", "/openai"]
                .iter()
                .find_map(|suffix| root.strip_suffix(suffix))
            {
                root = stripped;
            }
            root.to_owned()
        }
    }
}

/// The API root native paths are appended to: the endpoint's base URL without
/// the trailing version segment of OpenAI-compatible APIs.
pub fn native_root(api: UpstreamApi, base_url: &str) -> &str {
    let base = base_url.trim_end_matches('/');
    match api {
        UpstreamApi::OpenAi | UpstreamApi::Replicate => match base.rsplit_once('/') {
            Some((root, last)) if is_version_segment(last) && root.contains("://") => root,
            _ => base,
        },
        UpstreamApi::Anthropic | UpstreamApi::Google | UpstreamApi::Azure => base,
    }
}

/// `POST /api/v1/deployments/{id}/inference/{*path}`.
pub async fn inference(
    State(state): State<SharedState>,
    Path((deployment_id, _path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let span = tracing::info_span!(
        "gateway",
        request_id = %request_id.to_str().unwrap_or_default(),
        method = "native",
        endpoint_id = tracing::field::Empty,
    );
    async move {
        let response = match forward(&state, &deployment_id, request, &request_id, started).await {
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
    deployment_id: &str,
    request: Request,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Response, HttpError> {
    let (mut parts, body) = request.into_parts();
    let (route, deployment_status) = authorize(state, deployment_id, &mut parts).await?;
    let endpoint = &route.endpoint.endpoint;
    tracing::Span::current().record("endpoint_id", endpoint.id.as_str());
    if deployment_status != DeploymentStatus::Running {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "deployment_not_running",
            format!("Deployment is not running. Current status: {deployment_status}"),
        ));
    }
    check_status(endpoint.status)?;
    let native_path = native_path(parts.uri.path(), deployment_id)?;
    let permission = if native_path.contains("embed") {
        Permission::Embeddings
    } else {
        Permission::Chat
    };
    if !route.key.allows(permission) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "permission_denied",
            format!("this API key may not call {native_path}"),
        ));
    }
    let root = native_root(endpoint.upstream_api, &endpoint.upstream_base_url);
    // Azure needs `api-version`: the model's `api_version` unless the client gave one.
    let api_version = (endpoint.upstream_api == UpstreamApi::Azure
        && !parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.starts_with("api-version=")))
    .then(|| {
        endpoint
            .routing
            .api_version
            .as_deref()
            .unwrap_or(crate::gateway::backend::DEFAULT_AZURE_API_VERSION)
    });
    let url = match (parts.uri.query(), api_version) {
        (Some(query), Some(version)) => {
            format!("{root}/{native_path}?{query}&api-version={version}")
        }
        (Some(query), None) => format!("{root}/{native_path}?{query}"),
        (None, Some(version)) => format!("{root}/{native_path}?api-version={version}"),
        (None, None) => format!("{root}/{native_path}"),
    };
    let url: http::Uri = url
        .parse()
        .map_err(|_| HttpError::invalid_field("path", "is not a valid URL path"))?;
    let bytes = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
    let streamed = wants_stream(&bytes) || native_path.contains("streamGenerateContent");
    let upstream_request = build_request(
        &route,
        url,
        &parts.headers,
        request_id,
        streamed,
        bytes.clone(),
    )?;

    let limits = admit(state, &route).await?;
    check_balance(&route)?;
    let meter = Meter::start(
        route.clone(),
        state.usage.clone(),
        request_id.to_str().unwrap_or_default().to_owned(),
        method_name(native_path),
        streamed,
        started,
        estimate_tokens(bytes.len()),
    );
    drop(bytes);
    let timeout = upstream_timeout(state, endpoint);
    let upstream_response = tokio::select! {
        result = state.upstream.send(upstream_request, timeout) => match result {
            Ok(response) => response,
            Err(error) => return Err(upstream_failure(meter, error)),
        },
        () = state.hard_stop.cancelled() => return Err(upstream_failure(meter, UpstreamError::ShuttingDown)),
    };

    let status = upstream_response.status();
    let content_type = upstream_response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned();
    let is_event_stream = content_type
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let mut response = if status.is_success() && is_event_stream {
        let body = NativeStream::new(
            upstream_response.into_body(),
            meter,
            status.as_u16(),
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
            payload_usage(&bytes).and_then(UsageTally::total)
        } else {
            None
        };
        let estimated_output = if status.is_success() && usage.is_none() {
            estimate_tokens(generated_text_bytes(&bytes))
        } else {
            0
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
    super::add_rate_limit_headers(response.headers_mut(), &limits);
    Ok(response)
}

/// Finds the route a request is metered on and the deployment's status.
async fn authorize(
    state: &SharedState,
    deployment_id: &str,
    parts: &mut http::request::Parts,
) -> Result<(Route, DeploymentStatus), HttpError> {
    let not_found = || {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "deployment_not_found",
            "deployment not found",
        )
    };
    // As on the gateway routes: Anthropic SDKs send the key as `x-api-key`.
    let is_api_key = bearer_token(&parts.headers)
        .or_else(|| {
            parts
                .headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
        })
        .is_some_and(looks_like_api_key);
    if is_api_key {
        let route = authenticate(state, &parts.headers)?;
        let found = match state
            .store
            .get_deployment(&route.key.key.user_id, deployment_id)
            .await
        {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(not_found()),
            Err(error) => return Err(error.into()),
        };
        if found.deployment.endpoint_id != route.endpoint.endpoint.id {
            return Err(not_found());
        }
        return Ok((route, found.deployment.status));
    }
    let Caller(user) = Caller::from_request_parts(parts, state).await?;
    let found = match state.store.get_deployment(&user.id, deployment_id).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(error) => return Err(error.into()),
    };
    let route = state
        .registry
        .route_by_key_id(&found.deployment.key_id)
        .ok_or_else(|| {
            // Its endpoint was terminated or its internal key revoked through the endpoint routes.
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "endpoint_stopped",
                "the deployment's endpoint was terminated or its internal key revoked; delete the deployment and create a new one",
            )
        })?;
    Ok((route, found.deployment.status))
}

/// The native path after `/inference/`, raw (still percent-encoded); `.`
/// and `..` segments are refused so a path cannot climb above the API root.
fn native_path<'a>(uri_path: &'a str, deployment_id: &str) -> Result<&'a str, HttpError> {
    let marker = format!("/{deployment_id}/inference/");
    let path = uri_path
        .find(&marker)
        .map(|index| &uri_path[index + marker.len()..])
        .unwrap_or_default();
    let invalid = path.is_empty() || path.split('/').any(is_empty_or_dot_segment);
    if invalid {
        return Err(HttpError::invalid_field(
            "path",
            "must be the provider's path, such as v1/chat/completions, without empty, `.` or `..` segments",
        ));
    }
    Ok(path)
}

/// An empty segment, or `.` / `..` in any mix of literal and
/// percent-encoded dots (`.%2e`, `%2E.`), which servers decode and resolve.
fn is_empty_or_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && rest[2] | 0x20 == b'e' {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    dots <= 2
}

fn build_request(
    route: &Route,
    url: http::Uri,
    client_headers: &HeaderMap,
    request_id: &HeaderValue,
    streamed: bool,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, HttpError> {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(
            header::CONTENT_TYPE,
            client_headers
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("application/json")),
        )
        .header(
            header::ACCEPT,
            HeaderValue::from_static(if streamed {
                "text/event-stream"
            } else {
                "application/json"
            }),
        )
        .header("x-request-id", request_id.clone());
    for name in FORWARDED_HEADERS {
        if let Some(value) = client_headers.get(*name) {
            builder = builder.header(*name, value.clone());
        }
    }
    // Credentials and custom headers were decrypted once at snapshot load;
    // a client's own `anthropic-version` wins over the default one.
    for (name, value) in &route.endpoint.primary().headers {
        if name == "anthropic-version" && client_headers.contains_key("anthropic-version") {
            continue;
        }
        builder = builder.header(name, value.clone());
    }
    builder
        .body(Full::new(body))
        .map_err(|_| HttpError::invalid_field("path", "is not a valid URL path"))
}

fn wants_stream(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Flag {
        stream: Option<bool>,
    }
    serde_json::from_slice::<Flag>(body).is_ok_and(|flag| flag.stream == Some(true))
}

/// The usage record's method for a native path.
fn method_name(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    if path.ends_with("chat/completions") {
        "chat.completions"
    } else if path.ends_with("embeddings") || path.contains(":embedContent") {
        "embeddings"
    } else if path.ends_with("completions") {
        "completions"
    } else if path.ends_with("messages") {
        "messages"
    } else if path.contains(":streamGenerateContent") || path.contains(":generateContent") {
        "generate_content"
    } else if path.ends_with("responses") {
        "responses"
    } else {
        "native"
    }
}

/// Token counts read from one response or stream event; `None` fields were not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTally {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl UsageTally {
    /// Later reports replace earlier ones field by field (streams report running totals).
    fn merge(&mut self, newer: UsageTally) {
        self.input = newer.input.or(self.input);
        self.output = newer.output.or(self.output);
    }

    /// The usage to record, if anything was reported.
    fn total(self) -> Option<TokenUsage> {
        (self.input.is_some() || self.output.is_some()).then(|| TokenUsage {
            prompt_tokens: self.input.unwrap_or(0),
            completion_tokens: self.output.unwrap_or(0),
        })
    }
}

/// Reads usage from a native response body or one SSE `data:` payload:
/// OpenAI `usage.prompt_tokens`/`completion_tokens` (or `input_tokens`/
/// `output_tokens` of the Responses API), Anthropic `usage.input_tokens`/
/// `output_tokens` and `message_start`'s `message.usage`, Gemini
/// `usageMetadata.promptTokenCount`/`candidatesTokenCount`.
pub fn payload_usage(data: &[u8]) -> Option<UsageTally> {
    #[derive(Deserialize)]
    struct Counts {
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Message {
        usage: Option<Counts>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct GeminiCounts {
        prompt_token_count: Option<u64>,
        candidates_token_count: Option<u64>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        usage: Option<Counts>,
        message: Option<Message>,
        usage_metadata: Option<GeminiCounts>,
        response: Option<Message>,
    }
    USAGE_MARKER.find(data)?;
    let payload: Payload = serde_json::from_slice(data).ok()?;
    let counts = payload
        .usage
        .or_else(|| payload.message.and_then(|message| message.usage))
        .or_else(|| payload.response.and_then(|response| response.usage));
    let tally = match (counts, payload.usage_metadata) {
        (Some(counts), _) => UsageTally {
            input: counts.prompt_tokens.or(counts.input_tokens),
            output: counts.completion_tokens.or(counts.output_tokens),
        },
        (None, Some(gemini)) => UsageTally {
            input: gemini.prompt_token_count,
            output: gemini.candidates_token_count,
        },
        (None, None) => return None,
    };
    (tally != UsageTally::default()).then_some(tally)
}

/// A relayed SSE body: frames go to the client as they arrive; complete
/// events are parsed on the side for usage. The request is recorded on end,
/// error, idle timeout, hard stop or drop (client gone).
struct NativeStream {
    upstream: Incoming,
    pending: BytesMut,
    meter: Option<Meter>,
    status_code: u16,
    usage: UsageTally,
    content_bytes: usize,
    first_byte: Option<Instant>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
    finished: bool,
    /// The provider's end marker arrived (`[DONE]` or `message_stop`).
    saw_done: bool,
}

impl NativeStream {
    fn new(
        upstream: Incoming,
        meter: Meter,
        status_code: u16,
        idle_timeout: Duration,
        hard_stop: CancellationToken,
    ) -> Self {
        metrics::gauge!("switchyard_streams_in_flight").increment(1.0);
        Self {
            upstream,
            pending: BytesMut::new(),
            meter: Some(meter),
            status_code,
            usage: UsageTally::default(),
            content_bytes: 0,
            first_byte: None,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            hard_stop: Box::pin(hard_stop.cancelled_owned()),
            finished: false,
            saw_done: false,
        }
    }

    /// Adds a frame to the scan buffer and reads every complete event in it.
    fn scan(&mut self, data: &[u8]) {
        let held = self.pending.len();
        self.pending.extend_from_slice(data);
        let mut scan_from = held.saturating_sub(3);
        let mut start = 0;
        while let Some(length) = event_length(&self.pending[start..], scan_from) {
            scan_from = 0;
            let end = start + length;
            if let Some(payload) = event_data(&self.pending[start..end]) {
                if payload == b"[DONE]" || MESSAGE_STOP.find(payload).is_some() {
                    self.saw_done = true;
                } else {
                    self.content_bytes += content_length_hint(payload);
                    if let Some(tally) = payload_usage(payload) {
                        self.usage.merge(tally);
                    }
                }
            }
            start = end;
        }
        bytes::Buf::advance(&mut self.pending, start);
        if self.pending.len() > MAX_EVENT_BYTES {
            tracing::warn!(
                bytes = self.pending.len(),
                "upstream sent an SSE event over the size limit; not parsing it"
            );
            self.pending.clear();
        }
    }

    fn finish(&mut self, error_code: Option<&str>) {
        if let Some(meter) = self.meter.take() {
            metrics::gauge!("switchyard_streams_in_flight").decrement(1.0);
            meter.finish(Outcome {
                status_code: self.status_code,
                usage: self.usage.total(),
                estimated_output_tokens: estimate_tokens(self.content_bytes),
                error_code: error_code.map(str::to_owned),
                first_byte: self.first_byte,
                upstream_finished: Instant::now(),
                compute: None,
            });
        }
    }
}

impl http_body::Body for NativeStream {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    if this.first_byte.is_none() {
                        this.first_byte = Some(Instant::now());
                    }
                    this.scan(&data);
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(%error, "upstream stream failed");
                    this.finished = true;
                    this.finish(Some("upstream_stream_error"));
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    // A last event without its blank line still counts.
                    if !this.pending.is_empty() {
                        this.scan(b"\n\n");
                    }
                    this.finish(None);
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.hard_stop.as_mut().poll(cx).is_ready() {
                        this.finished = true;
                        this.finish(Some("server_shutting_down"));
                        return Poll::Ready(None);
                    }
                    if this.idle.as_mut().poll(cx).is_ready() {
                        tracing::warn!(timeout = ?this.idle_timeout, "upstream stream went idle; closing it");
                        this.finished = true;
                        this.finish(Some("upstream_timeout"));
                        return Poll::Ready(None);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for NativeStream {
    fn drop(&mut self) {
        if self.saw_done {
            self.finish(None);
        } else {
            self.finish(Some("client_disconnected"));
        }
    }
}

fn path_segments(url: &str) -> impl Iterator<Item = &str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.split('/').skip(1)
}

/// `v1`, `v2`, `v1beta`, `v1alpha2`: a `v`, digits, then letters or digits.
fn is_version_segment(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_follow_each_provider_convention() {
        let openai = |url| gateway_base_url(UpstreamApi::OpenAi, url);
        assert_eq!(
            openai("https://api.openai.com"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            openai("https://api.openai.com/v1/"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            openai("https://api.groq.com/openai/v1"),
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(openai("http://10.0.0.5:8000"), "http://10.0.0.5:8000/v1");
        assert_eq!(
            gateway_base_url(UpstreamApi::Anthropic, "https://api.anthropic.com/v1"),
            "https://api.anthropic.com"
        );
        assert_eq!(
            gateway_base_url(
                UpstreamApi::Google,
                "https://generativelanguage.googleapis.com/v1beta"
            ),
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(
            gateway_base_url(UpstreamApi::Azure, "https://team.openai.azure.com/openai/"),
            "https://team.openai.azure.com"
        );
    }

    #[test]
    fn native_roots_drop_the_openai_version() {
        assert_eq!(
            native_root(UpstreamApi::OpenAi, "https://api.openai.com/v1"),
            "https://api.openai.com"
        );
        assert_eq!(
            native_root(UpstreamApi::OpenAi, "https://api.groq.com/openai/v1"),
            "https://api.groq.com/openai"
        );
        assert_eq!(
            native_root(
                UpstreamApi::Google,
                "https://generativelanguage.googleapis.com"
            ),
            "https://generativelanguage.googleapis.com"
        );
        assert!(is_version_segment("v1beta"));
        assert!(!is_version_segment("videos"));
        assert!(!is_version_segment("v"));
    }

    #[test]
    fn native_paths_cannot_climb() {
        let path = |uri| native_path(uri, "d1");
        assert_eq!(
            path("/api/v1/deployments/d1/inference/v1/chat/completions").unwrap(),
            "v1/chat/completions"
        );
        assert_eq!(
            path("/api/v1/deployments/d1/inference/v1beta/models/g:generateContent").unwrap(),
            "v1beta/models/g:generateContent"
        );
        assert!(path("/api/v1/deployments/d1/inference/v1/../admin").is_err());
        assert!(path("/api/v1/deployments/d1/inference/%2E%2E/x").is_err());
        assert!(path("/api/v1/deployments/d1/inference/v1//x").is_err());
        for mixed in [".%2e", "%2E.", "%2e%2E", "%2e"] {
            let uri = format!("/api/v1/deployments/d1/inference/v1/{mixed}/admin");
            assert!(native_path(&uri, "d1").is_err(), "{mixed}");
        }
        assert_eq!(
            path("/api/v1/deployments/d1/inference/v1/files/.../x").unwrap(),
            "v1/files/.../x"
        );
        assert_eq!(
            path("/api/v1/deployments/d1/inference/v1/m.2e").unwrap(),
            "v1/m.2e"
        );
    }

    #[test]
    fn usage_in_every_native_shape() {
        let tally = |json: &str| payload_usage(json.as_bytes());
        assert_eq!(
            tally(r#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#),
            Some(UsageTally {
                input: Some(3),
                output: Some(4)
            })
        );
        assert_eq!(
            tally(r#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5}}"#),
            Some(UsageTally {
                input: Some(10),
                output: Some(5)
            })
        );
        assert_eq!(
            tally(
                r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#
            ),
            Some(UsageTally {
                input: Some(25),
                output: Some(1)
            })
        );
        assert_eq!(
            tally(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#
            ),
            Some(UsageTally {
                input: None,
                output: Some(15)
            })
        );
        assert_eq!(
            tally(
                r#"{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":12,"totalTokenCount":20}}"#
            ),
            Some(UsageTally {
                input: Some(8),
                output: Some(12)
            })
        );
        assert_eq!(tally(r#"{"choices":[],"usage":null}"#), None);
        assert_eq!(tally(r#"{"choices":[{"delta":{"content":"hi"}}]}"#), None);
    }

    #[test]
    fn stream_reports_merge_into_running_totals() {
        let mut total = UsageTally::default();
        total.merge(UsageTally {
            input: Some(25),
            output: Some(1),
        });
        total.merge(UsageTally {
            input: None,
            output: Some(15),
        });
        assert_eq!(
            total.total(),
            Some(TokenUsage {
                prompt_tokens: 25,
                completion_tokens: 15
            })
        );
        assert_eq!(UsageTally::default().total(), None);
    }

    #[test]
    fn method_names_and_stream_flags() {
        assert_eq!(method_name("v1/messages"), "messages");
        assert_eq!(
            method_name("v1beta/models/g:streamGenerateContent"),
            "generate_content"
        );
        assert!(wants_stream(br#"{"stream":true}"#));
        assert!(!wants_stream(br#"{"stream":false}"#));
    }
}

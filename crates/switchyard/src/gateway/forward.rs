//! The attempt loop of one admitted request: pick a backend, shape the body
//! for its protocol, send, and either answer (relaying or translating the
//! response) or retry elsewhere; every attempt is one `attempt` tracing span
//! and counts in the backend's metrics, and the request's one [`Meter`]
//! records only the attempt that answered.
//!
//! Order of attempts: the endpoint's own backends (see `balance`), untried
//! ones first and at once, then the same ones again after a backoff, up to
//! `max_attempts`; once those are out (breaker open, unhealthy) or used up on
//! retryable failures, each fallback endpoint in turn, one attempt per
//! backend. No retry starts after the time budget (see `resilience`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;

use super::backend::{BackendRuntime, Permit};
use super::metering::{estimate_tokens, extract_usage, Meter, Outcome, TokenUsage};
use super::request_body::{Operation, RequestBody};
use super::stream::MeteredStream;
use super::translate::{self, StreamTranslator, TranslateError, Translated};
use super::translated_stream::{AnthropicPassthrough, Chain, ClientProtocol, TranslatedStream};
use super::upstream::UpstreamError;
use super::{generated_text_bytes, upstream_error_code, upstream_failure, MAX_UPSTREAM_BODY};
use crate::domain::{now_ms, UpstreamApi};
use crate::error::HttpError;
use crate::registry::{EndpointRuntime, Route};
use crate::state::SharedState;

/// The client's request, in the protocol it was sent in.
pub enum ClientRequest<'a> {
    OpenAi(RequestBody<'a>),
    Anthropic(AnthropicRequest),
}

/// What the gateway reads of an Anthropic Messages request itself (the rest
/// is checked by the translation or by Anthropic).
#[derive(Debug, Clone, Copy)]
pub struct AnthropicRequest {
    pub stream: bool,
    pub prompt_bytes: usize,
}

impl ClientRequest<'_> {
    fn protocol(&self) -> ClientProtocol {
        match self {
            Self::OpenAi(_) => ClientProtocol::OpenAi,
            Self::Anthropic(_) => ClientProtocol::Anthropic,
        }
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        match self {
            Self::OpenAi(request) => request.stream,
            Self::Anthropic(request) => request.stream,
        }
    }

    fn prompt_bytes(&self) -> usize {
        match self {
            Self::OpenAi(request) => request.prompt_bytes,
            Self::Anthropic(request) => request.prompt_bytes,
        }
    }
}

/// How an upstream answer becomes the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// OpenAI client, OpenAI-compatible or Azure upstream: bytes relayed.
    OpenAiNative,
    /// Anthropic client, Anthropic upstream: bytes relayed, usage read.
    AnthropicNative,
    OpenAiFromAnthropic,
    OpenAiFromGoogle,
    AnthropicFromOpenAi,
    AnthropicFromGoogle,
}

/// A body shaped for one backend.
struct Prepared {
    body: Vec<u8>,
    shape: Shape,
    /// The client asked for the usage chunk itself (OpenAI streams).
    client_wants_stream_usage: bool,
}

fn translate_error(error: TranslateError) -> HttpError {
    match error {
        TranslateError::Unsupported { target, params } => HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_parameter",
            format!(
                "unsupported parameter(s) for {target} upstream: {}",
                params.join(", ")
            ),
        )
        .with_param(params.first().map_or("", String::as_str)),
        TranslateError::Invalid { field, message } => HttpError::invalid_field(&field, message),
        TranslateError::BadUpstream(message) => HttpError::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_error",
            format!("the upstream's answer could not be read: {message}"),
        ),
    }
}

fn unsupported_operation(operation: Operation, api: UpstreamApi) -> HttpError {
    HttpError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "unsupported_operation",
        format!(
            "{} is not offered by this endpoint's {api} upstream",
            operation.method_name()
        ),
    )
}

/// Shapes the client's body for a backend's protocol.
fn prepare(
    request: &ClientRequest<'_>,
    bytes: &[u8],
    operation: Operation,
    backend: &BackendRuntime,
) -> Result<Prepared, HttpError> {
    let api = backend.api;
    let translated = |result: Result<Translated, TranslateError>, shape| {
        result.map_err(translate_error).map(|translated| Prepared {
            body: translated.body,
            shape,
            client_wants_stream_usage: translated.client_wants_stream_usage,
        })
    };
    match (request, api) {
        (
            ClientRequest::OpenAi(body),
            UpstreamApi::OpenAi | UpstreamApi::Azure | UpstreamApi::Replicate,
        ) => Ok(Prepared {
            body: body.to_upstream(&backend.model),
            shape: Shape::OpenAiNative,
            client_wants_stream_usage: body.client_wants_stream_usage,
        }),
        (ClientRequest::OpenAi(_), UpstreamApi::Anthropic) if operation == Operation::Chat => {
            translated(
                translate::openai_chat_to_anthropic(bytes, &backend.model),
                Shape::OpenAiFromAnthropic,
            )
        }
        (ClientRequest::OpenAi(_), UpstreamApi::Google) if operation == Operation::Chat => {
            translated(
                translate::openai_chat_to_gemini(bytes),
                Shape::OpenAiFromGoogle,
            )
        }
        (ClientRequest::OpenAi(_), _) => Err(unsupported_operation(operation, api)),
        (ClientRequest::Anthropic(_), UpstreamApi::Anthropic) => Ok(Prepared {
            body: replace_model(bytes, &backend.model)?,
            shape: Shape::AnthropicNative,
            client_wants_stream_usage: false,
        }),
        (ClientRequest::Anthropic(_), UpstreamApi::OpenAi | UpstreamApi::Azure) => translated(
            translate::anthropic_to_openai_chat(bytes, &backend.model),
            Shape::AnthropicFromOpenAi,
        ),
        (ClientRequest::Anthropic(_), UpstreamApi::Google) => {
            let openai = translate::anthropic_to_openai_chat(bytes, &backend.model)
                .map_err(translate_error)?;
            translated(
                translate::openai_chat_to_gemini(&openai.body),
                Shape::AnthropicFromGoogle,
            )
        }
        (ClientRequest::Anthropic(_), UpstreamApi::Replicate) => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_operation",
            "the Messages API is not offered for Replicate upstreams; use /v1/chat/completions",
        )),
    }
}

/// The client's JSON object with `model` replaced.
fn replace_model(bytes: &[u8], model: &str) -> Result<Vec<u8>, HttpError> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|error| {
            HttpError::invalid_json(format!("the body is not a JSON object: {error}"))
        })?;
    object.insert(
        "model".to_owned(),
        serde_json::Value::String(model.to_owned()),
    );
    serde_json::to_vec(&object).map_err(|error| HttpError::invalid_json(error.to_string()))
}

/// Why an attempt did not produce the answer.
enum Failure {
    /// No response: connection error or timeout.
    Transport(UpstreamError),
    /// A retryable status; the collected answer is kept in case it is the last.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        content_type: Option<HeaderValue>,
        body: Bytes,
        shape: Shape,
    },
}

/// Which endpoint an attempt goes to: the key's own or a fallback.
struct Group<'r> {
    endpoint: &'r Arc<EndpointRuntime>,
    fallback: bool,
    tried: u64,
    /// Backends whose protocol cannot express this request (never retried).
    refused: u64,
}

/// Runs the attempts for an admitted request and builds the answer.
#[expect(
    clippy::too_many_lines,
    reason = "the attempt loop reads best as one sequence"
)]
pub async fn attempts(
    state: &SharedState,
    route: &Route,
    operation: Operation,
    request: &ClientRequest<'_>,
    bytes: &[u8],
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Response, HttpError> {
    let settings = state.settings.resilience;
    let stream = request.stream() && operation != Operation::Embeddings;
    let protocol = request.protocol();
    let client_model = route.endpoint.endpoint.name.as_str();
    let mut groups: Vec<Group<'_>> = std::iter::once(Group {
        endpoint: &route.endpoint,
        fallback: false,
        tried: 0,
        refused: 0,
    })
    .chain(route.fallbacks.iter().map(|endpoint| Group {
        endpoint,
        fallback: true,
        tried: 0,
        refused: 0,
    }))
    .collect();
    let mut meter: Option<Meter> = None;
    let mut last_failure: Option<Failure> = None;
    let mut refusal: Option<HttpError> = None;
    let mut attempt_number: u32 = 0;
    let mut group_index = 0;
    let mut primary_attempts: u32 = 0;
    let mut same_backend_retries: u32 = 0;
    let mut not_before: Option<(usize, usize, Instant)> = None;
    let attempt_cap = settings.max_attempts + fallback_allowance(&groups);

    while group_index < groups.len() {
        if attempt_number > 0 && started.elapsed() >= settings.budget {
            break;
        }
        let group = &mut groups[group_index];
        let endpoint = group.endpoint;
        let now = now_ms_u64();
        // Untried backends first; the own endpoint may then retry a tried one.
        let pick = endpoint
            .balancer
            .pick(&endpoint.backends, group.tried, now, &settings.breaker)
            .or_else(|| {
                let may_retry = !group.fallback && primary_attempts < settings.max_attempts;
                if may_retry && group.tried & !group.refused != 0 {
                    endpoint.balancer.pick(
                        &endpoint.backends,
                        group.refused,
                        now,
                        &settings.breaker,
                    )
                } else {
                    None
                }
            });
        let Some((index, permit)) = pick else {
            group_index += 1;
            continue;
        };
        let reused = group.tried & (1 << index) != 0;
        group.tried |= 1 << index;
        let backend = &endpoint.backends[index];
        // Shape the body first: a backend whose protocol cannot express the
        // request is passed over without costing an attempt or a wait; the
        // client gets the 400 only when no backend at all can take it.
        let prepared = match prepare(request, bytes, operation, backend) {
            Ok(prepared) => prepared,
            Err(error) => {
                // Nothing was sent: a claimed half-open probe is handed back
                // (not counted as a success that would close the breaker).
                if permit == Permit::Probe {
                    backend.state.release_probe(now);
                }
                tracing::debug!(backend_id = %backend.id, message = %error.message, "backend cannot take this request");
                group.refused |= 1 << index;
                refusal.get_or_insert(error);
                continue;
            }
        };
        if attempt_number > 0 {
            let retry_after = match &last_failure {
                Some(Failure::Status { retry_after, .. }) => *retry_after,
                _ => None,
            };
            let wait = if reused {
                same_backend_retries += 1;
                settings.backoff(same_backend_retries, retry_after)
            } else {
                Duration::ZERO
            };
            let wait = match not_before {
                Some((g, i, at)) if g == group_index && i == index => {
                    wait.max(at.saturating_duration_since(Instant::now()))
                }
                _ => wait,
            };
            let out_of_budget = started.elapsed() + wait > settings.budget;
            let stopped = !out_of_budget
                && !wait.is_zero()
                && tokio::select! {
                    () = tokio::time::sleep(wait) => false,
                    () = state.hard_stop.cancelled() => true,
                };
            if out_of_budget || stopped {
                if permit == Permit::Probe {
                    backend.state.release_probe(now);
                }
                break;
            }
            metrics::counter!("switchyard_retries_total", "fallback" => if group.fallback { "true" } else { "false" }).increment(1);
        }
        attempt_number += 1;
        if !group.fallback {
            primary_attempts += 1;
        }
        let meter_ref = meter.get_or_insert_with(|| {
            Meter::start(
                route.clone(),
                state.usage.clone(),
                request_id.to_str().unwrap_or_default().to_owned(),
                operation.method_name(),
                stream,
                started,
                estimate_tokens(request.prompt_bytes()),
            )
        });
        meter_ref.attempt(
            &backend.id,
            &backend.version,
            group.fallback.then_some(endpoint.tariff),
        );
        let span = tracing::info_span!(
            "attempt",
            n = attempt_number,
            backend_id = %backend.id,
            version = %backend.version,
            fallback = group.fallback,
            probe = permit == Permit::Probe,
        );
        let outcome = one_attempt(
            state,
            endpoint,
            backend,
            operation,
            stream,
            prepared,
            request_id,
            protocol,
            client_model,
        )
        .instrument(span)
        .await;
        match outcome {
            AttemptOutcome::Answer(answer) => {
                let meter = meter
                    .take()
                    .expect("the meter starts before the first attempt");
                return Ok(answer.respond(meter, state));
            }
            AttemptOutcome::Failed(failure) => {
                if let Failure::Status {
                    retry_after: Some(after),
                    ..
                } = &failure
                {
                    not_before = Some((group_index, index, Instant::now() + *after));
                }
                let stopping = matches!(failure, Failure::Transport(UpstreamError::ShuttingDown));
                last_failure = Some(failure);
                if stopping || attempt_number >= attempt_cap {
                    break;
                }
                if !groups[group_index].fallback && primary_attempts >= settings.max_attempts {
                    group_index += 1;
                }
            }
        }
    }

    if let (None, Some(error)) = (&meter, refusal) {
        // No backend could express the request: nothing was sent or charged.
        return Err(error);
    }
    match (meter, last_failure) {
        (
            Some(meter),
            Some(Failure::Status {
                status,
                retry_after,
                content_type,
                body,
                shape,
            }),
        ) => {
            let mut response = error_answer(meter, status, content_type, body, shape);
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
            }
            Ok(response)
        }
        (Some(meter), Some(Failure::Transport(error))) => Err(upstream_failure(meter, error)),
        (meter, _) => {
            let retry_after = settings.breaker.open_for.as_secs().max(1);
            let error = HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "no_backend_available",
                "every backend of this endpoint is unavailable (circuit open or failing health checks) and no fallback could answer; retry later",
            )
            .with_retry_after(retry_after);
            // Admitted requests always leave one usage record (not charged: nothing was produced).
            let meter = meter.unwrap_or_else(|| {
                Meter::start(
                    route.clone(),
                    state.usage.clone(),
                    request_id.to_str().unwrap_or_default().to_owned(),
                    operation.method_name(),
                    stream,
                    started,
                    0,
                )
            });
            metrics::counter!("switchyard_no_backend_total").increment(1);
            meter.finish(Outcome {
                status_code: 503,
                usage: None,
                estimated_output_tokens: 0,
                error_code: Some("no_backend_available".to_owned()),
                first_byte: None,
                upstream_finished: Instant::now(),
                compute: None,
            });
            Err(error)
        }
    }
}

/// Fallback endpoints get one attempt per backend on top of `max_attempts`.
fn fallback_allowance(groups: &[Group<'_>]) -> u32 {
    groups
        .iter()
        .filter(|group| group.fallback)
        .map(|group| u32::try_from(group.endpoint.backends.len()).unwrap_or(u32::MAX))
        .sum()
}

fn now_ms_u64() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

enum AttemptOutcome {
    Answer(Answer),
    Failed(Failure),
}

/// A response that will be sent to the client.
enum Answer {
    Stream {
        body: hyper::body::Incoming,
        shape: Shape,
        client_wants_stream_usage: bool,
        in_flight: super::backend::InFlight,
        protocol: ClientProtocol,
        client_model: String,
    },
    Complete {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        shape: Shape,
        client_model: String,
        operation: Operation,
    },
}

impl Answer {
    fn respond(self, meter: Meter, state: &SharedState) -> Response {
        match self {
            Self::Stream {
                body,
                shape,
                client_wants_stream_usage,
                in_flight,
                protocol,
                client_model,
            } => {
                let idle = state.settings.stream_idle_timeout;
                let hard_stop = state.hard_stop.clone();
                let breaker = state.settings.resilience.breaker;
                let body = match shape {
                    Shape::OpenAiNative => Body::new(
                        MeteredStream::new(
                            body,
                            meter,
                            200,
                            !client_wants_stream_usage,
                            idle,
                            hard_stop,
                        )
                        .with_in_flight(in_flight, breaker),
                    ),
                    _ => {
                        let translator =
                            stream_translator(shape, &client_model, client_wants_stream_usage);
                        Body::new(TranslatedStream::new(
                            body,
                            translator,
                            protocol,
                            meter,
                            idle,
                            hard_stop,
                            Some((in_flight, breaker)),
                        ))
                    }
                };
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                response
            }
            Self::Complete {
                status,
                content_type,
                body,
                shape,
                client_model,
                operation,
            } => {
                if !status.is_success() {
                    return error_answer(meter, status, content_type, body, shape);
                }
                let translated = match shape {
                    Shape::OpenAiNative => Ok((body.clone(), extract_usage(&body))),
                    Shape::AnthropicNative => Ok((body.clone(), anthropic_usage(&body))),
                    Shape::OpenAiFromAnthropic => {
                        translate::anthropic_response_to_openai(&body, &client_model)
                            .map(|(out, usage)| (Bytes::from(out), Some(usage)))
                    }
                    Shape::OpenAiFromGoogle => {
                        translate::gemini_response_to_openai(&body, &client_model)
                            .map(|(out, usage)| (Bytes::from(out), Some(usage)))
                    }
                    Shape::AnthropicFromOpenAi => {
                        translate::openai_response_to_anthropic(&body, &client_model)
                            .map(|(out, usage)| (Bytes::from(out), Some(usage)))
                    }
                    Shape::AnthropicFromGoogle => {
                        translate::gemini_response_to_openai(&body, &client_model).and_then(
                            |(openai, usage)| {
                                translate::openai_response_to_anthropic(&openai, &client_model)
                                    .map(|(out, _)| (Bytes::from(out), Some(usage)))
                            },
                        )
                    }
                };
                let (out, usage) = match translated {
                    Ok(pair) => pair,
                    Err(error) => {
                        let error = translate_error(error);
                        meter.finish(Outcome {
                            status_code: 502,
                            usage: None,
                            estimated_output_tokens: 0,
                            error_code: Some("upstream_bad_answer".to_owned()),
                            first_byte: None,
                            upstream_finished: Instant::now(),
                            compute: None,
                        });
                        return axum::response::IntoResponse::into_response(error);
                    }
                };
                let estimated_output = match (usage, operation, shape) {
                    (None, Operation::Chat | Operation::Completions, Shape::OpenAiNative) => {
                        estimate_tokens(generated_text_bytes(&out))
                    }
                    _ => 0,
                };
                meter.finish(Outcome {
                    status_code: status.as_u16(),
                    usage,
                    estimated_output_tokens: estimated_output,
                    error_code: None,
                    first_byte: None,
                    upstream_finished: Instant::now(),
                    compute: None,
                });
                let mut response = Response::new(Body::from(out));
                *response.status_mut() = status;
                let content_type = match shape {
                    Shape::OpenAiNative | Shape::AnthropicNative => content_type,
                    _ => None,
                };
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
                );
                response
            }
        }
    }
}

/// Records an upstream error answer and relays it in the client's protocol.
fn error_answer(
    meter: Meter,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
    shape: Shape,
) -> Response {
    meter.finish(Outcome {
        status_code: status.as_u16(),
        usage: None,
        estimated_output_tokens: 0,
        error_code: Some(upstream_error_code(status, &body)),
        first_byte: None,
        upstream_finished: Instant::now(),
        compute: None,
    });
    let (body, content_type) = match shape {
        Shape::OpenAiNative | Shape::AnthropicNative => (body, content_type),
        Shape::OpenAiFromAnthropic | Shape::OpenAiFromGoogle => (
            Bytes::from(translate::error_to_openai(status.as_u16(), &body)),
            None,
        ),
        Shape::AnthropicFromOpenAi | Shape::AnthropicFromGoogle => (
            Bytes::from(translate::error_to_anthropic(status.as_u16(), &body)),
            None,
        ),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    response
}

fn stream_translator(shape: Shape, model: &str, include_usage: bool) -> Box<dyn StreamTranslator> {
    match shape {
        Shape::OpenAiFromAnthropic => translate::anthropic_stream_to_openai(model, include_usage),
        Shape::OpenAiFromGoogle => translate::gemini_stream_to_openai(model, include_usage),
        Shape::AnthropicFromOpenAi => translate::openai_stream_to_anthropic(model),
        Shape::AnthropicFromGoogle => Box::new(Chain::new(
            translate::gemini_stream_to_openai(model, true),
            translate::openai_stream_to_anthropic(model),
        )),
        Shape::AnthropicNative | Shape::OpenAiNative => Box::new(AnthropicPassthrough::default()),
    }
}

/// Token usage of an Anthropic Messages answer.
fn anthropic_usage(body: &[u8]) -> Option<TokenUsage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Option<Usage>,
    }
    #[derive(serde::Deserialize)]
    struct Usage {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        cache_creation_input_tokens: u64,
        #[serde(default)]
        cache_read_input_tokens: u64,
    }
    let usage = serde_json::from_slice::<Answer>(body).ok()?.usage?;
    Some(TokenUsage {
        prompt_tokens: usage.input_tokens
            + usage.cache_creation_input_tokens
            + usage.cache_read_input_tokens,
        completion_tokens: usage.output_tokens,
    })
}

/// One call to one backend.
#[expect(clippy::too_many_arguments, reason = "the parts of one attempt")]
async fn one_attempt(
    state: &SharedState,
    endpoint: &EndpointRuntime,
    backend: &BackendRuntime,
    operation: Operation,
    stream: bool,
    prepared: Prepared,
    request_id: &HeaderValue,
    protocol: ClientProtocol,
    client_model: &str,
) -> AttemptOutcome {
    let breaker = &state.settings.resilience.breaker;
    let in_flight = backend.state.begin();
    let timeout = super::upstream_timeout(state, &endpoint.endpoint);
    let sent = Instant::now();
    let call = state.upstream.post_json(
        backend.url(operation, stream).cloned(),
        None,
        &backend.headers,
        request_id,
        stream,
        prepared.body,
        timeout,
    );
    let response = tokio::select! {
        result = call => result,
        () = state.hard_stop.cancelled() => Err(UpstreamError::ShuttingDown),
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            if !matches!(
                error,
                UpstreamError::ShuttingDown | UpstreamError::BadUrl(_)
            ) {
                backend.state.failed(now_ms_u64(), breaker);
            }
            tracing::warn!(%error, "attempt failed");
            return AttemptOutcome::Failed(Failure::Transport(error));
        }
    };
    backend.state.observe_latency(sent.elapsed());
    let status = response.status();
    let is_event_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let relayed_stream = stream && status.is_success() && is_event_stream;
    if super::resilience::breaker_failure(status) {
        backend.state.failed(now_ms_u64(), breaker);
    } else if !relayed_stream {
        // A relayed stream is judged by how it ends (see `InFlight`).
        backend.state.succeeded();
    }
    if relayed_stream {
        return AttemptOutcome::Answer(Answer::Stream {
            body: response.into_body(),
            shape: prepared.shape,
            client_wants_stream_usage: prepared.client_wants_stream_usage,
            in_flight,
            protocol,
            client_model: client_model.to_owned(),
        });
    }
    let retry_after = super::resilience::retry_after(response.headers());
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let remaining = timeout.saturating_sub(sent.elapsed());
    let collect = tokio::time::timeout(
        remaining,
        Limited::new(response.into_body(), MAX_UPSTREAM_BODY).collect(),
    );
    let collected = tokio::select! {
        collected = collect => collected,
        () = state.hard_stop.cancelled() => {
            return AttemptOutcome::Failed(Failure::Transport(UpstreamError::ShuttingDown));
        }
    };
    drop(in_flight);
    let body = match collected {
        Err(_) => {
            backend.state.failed(now_ms_u64(), breaker);
            return AttemptOutcome::Failed(Failure::Transport(UpstreamError::Timeout(timeout)));
        }
        Ok(Err(error)) => {
            backend.state.failed(now_ms_u64(), breaker);
            tracing::warn!(%error, "upstream body broke off");
            return AttemptOutcome::Failed(Failure::Transport(UpstreamError::Unreachable(
                error.to_string(),
            )));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if super::resilience::retryable_status(status) {
        tracing::warn!(
            status = status.as_u16(),
            "attempt answered with a retryable status"
        );
        return AttemptOutcome::Failed(Failure::Status {
            status,
            retry_after,
            content_type,
            body,
            shape: prepared.shape,
        });
    }
    AttemptOutcome::Answer(Answer::Complete {
        status,
        content_type,
        body,
        shape: prepared.shape,
        client_model: client_model.to_owned(),
        operation,
    })
}

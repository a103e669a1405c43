//! Replicate deployments behind the OpenAI chat API.
//!
//! A Replicate deployment answers predictions (`POST {base}/predictions` with
//! `{"input": {...}}`, PROVIDERS.md section 4.3), not OpenAI requests, so chat
//! completions to an endpoint whose `upstream_api` is `replicate` are
//! translated here. The OpenAI path in [`super::forward`] pays one enum
//! comparison for this branch.
//!
//! Request. The messages become the text input of the `replicate/vllm` model
//! with this template:
//!
//! - `system` and `developer` messages, joined by a blank line, are the
//!   `system_prompt` (without any, the model's default system prompt applies);
//! - every other message is one turn `"{role}: {content}"`; the turns are
//!   joined by newlines and followed by a line `assistant:` for the model to
//!   complete, e.g. `"user: Hi\nassistant: Hello!\nuser: How are you?\nassistant:"`.
//!   Text content parts are joined by newlines; a message's `name` is not
//!   rendered.
//!
//! `max_tokens` (or `max_completion_tokens`, which wins), `temperature`,
//! `top_p`, `presence_penalty`, `frequency_penalty`, `seed` and vLLM's `top_k`
//! and `min_tokens` keep their names; `stop` becomes the comma-separated
//! `stop_sequences`. Fields that would change the answer but cannot be
//! expressed (`tools`, `tool_choice`, `n` > 1, `logprobs`, a `response_format`
//! other than text, tool messages, images, ...) and any field the gateway does
//! not know are refused with 400 `unsupported_parameter` naming them rather
//! than dropped; `user`, `metadata`, `store`, `service_tier` and
//! `parallel_tool_calls` do not change the answer and are ignored. Only chat is
//! offered: completions and embeddings are 400 `unsupported_operation`.
//!
//! Plain answers. The prediction is created with `Prefer: wait=50` (less when
//! the endpoint's timeout is shorter); one still `starting` or `processing` is
//! polled at its `urls.get` until it ends or the endpoint's timeout passes (504,
//! and the prediction is canceled). `succeeded` becomes a `chat.completion`
//! (`id` is `chatcmpl-` + the prediction id, `model` the endpoint's name, the
//! content the output pieces joined, `finish_reason` `stop`, or `length` when
//! the model produced `max_tokens` tokens); `failed` and `canceled` are 502
//! `upstream_error` with the prediction's error.
//!
//! Streams. The prediction is created without waiting and its `urls.stream` is
//! read as server-sent events: `output` events (plain text) become
//! `chat.completion.chunk`s after a first chunk that carries the role; `done`
//! becomes a last chunk with `finish_reason`, the usage chunk when the client
//! asked for it (`stream_options.include_usage`) and `data: [DONE]`. An
//! `error` event, or a `done` with a `reason`, ends the stream with an error
//! event in the shape of the gateway's other streams. Until the first output
//! the endpoint's timeout applies (a scaled-to-zero deployment boots first),
//! after it the stream idle timeout. A model without `urls.stream` is waited
//! for and its whole output sent as one chunk. A client that goes away, a
//! timeout or a shutdown cancels the prediction.
//!
//! Metering. Token counts come from the prediction's `metrics`
//! (`input_token_count`, `output_token_count`; after a stream the prediction
//! is read once more for them) and are recorded as reported by the upstream;
//! without them they are estimated from the rendered prompt and the output
//! text. Compute time is `metrics.predict_time` when present. Every admitted
//! request finishes exactly one [`Meter`].
//!
//! Trust. The prediction's `get`, `cancel` and `stream` URLs are sent the
//! endpoint's Replicate token, so they are used only with the scheme of the
//! endpoint's base URL and on its host or a host under the same parent domain
//! (`api.replicate.com` allows `*.replicate.com`); an IP address must match.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::metering::{estimate_tokens, Meter, Outcome, TokenUsage};
use super::request_body::{Operation, RequestBody};
use super::stream::event_length;
use super::upstream::UpstreamError;
use super::{
    add_rate_limit_headers, admit, check_balance, upstream_error_code, upstream_failure,
    upstream_timeout, MAX_UPSTREAM_BODY,
};
use crate::domain::now_ms;
use crate::error::HttpError;
use crate::providers::replicate::Prediction;
use crate::registry::Route;
use crate::state::SharedState;

/// `Prefer: wait=n` of plain requests; Replicate holds a request at most 60 s.
const PREFER_WAIT_SECONDS: u64 = 50;
/// First pause between reads of an unfinished prediction; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Longest pause between reads of an unfinished prediction.
const MAX_POLL: Duration = Duration::from_secs(2);
/// Bound on canceling a prediction and on reading its metrics after a stream.
const SIDE_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest single SSE event held while waiting for its end.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Relayed chunks buffered for a slow client.
const CHANNEL_CAPACITY: usize = 32;
/// The end of an OpenAI stream.
const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Serves a chat completion from a Replicate deployment. Validation and the
/// translation come first (a refused request uses no rate limit), then
/// admission as on the OpenAI path.
pub(super) async fn forward(
    state: &SharedState,
    route: &Route,
    operation: Operation,
    request: &RequestBody<'_>,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<Response, HttpError> {
    let chat = translate(operation, request)?;
    let limits = admit(state, route).await?;
    check_balance(route)?;
    let meter = Meter::start(
        route.clone(),
        state.usage.clone(),
        request_id.to_str().unwrap_or_default().to_owned(),
        operation.method_name(),
        chat.stream,
        started,
        estimate_tokens(chat.prompt_bytes),
    );
    let link = match Link::new(state, route, request_id) {
        Ok(link) => link,
        Err(error) => return Err(upstream_failure(meter, error)),
    };
    let mut response = if chat.stream {
        stream(link, meter, chat).await?
    } else {
        complete(link, meter, chat).await?
    };
    add_rate_limit_headers(response.headers_mut(), &limits);
    Ok(response)
}

/// A chat request as prediction input.
#[derive(Debug)]
struct Chat {
    input: Value,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
    /// Bytes of the rendered prompt and system prompt, for estimates.
    prompt_bytes: usize,
}

/// A field the translation cannot honour: its path and why.
type Unsupported = (String, &'static str);

fn translate(operation: Operation, request: &RequestBody<'_>) -> Result<Chat, HttpError> {
    if operation != Operation::Chat {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_operation",
            format!(
                "this endpoint runs on a Replicate deployment, which serves chat completions only; {} is not available",
                operation.method_name()
            ),
        ));
    }
    let mut input = Map::new();
    let mut unsupported: Vec<Unsupported> = Vec::new();
    let mut messages = None;
    let mut max_tokens = None;
    let mut max_completion_tokens = None;
    for (name, raw) in request.fields() {
        if raw.get() == "null" {
            continue;
        }
        match name {
            // Handled by `RequestBody`, or without effect on the answer.
            "model"
            | "stream"
            | "stream_options"
            | "user"
            | "metadata"
            | "store"
            | "service_tier"
            | "parallel_tool_calls" => {}
            "messages" => messages = Some(raw),
            "max_tokens" => max_tokens = Some(decode::<u64>(name, raw, "a positive integer")?),
            "max_completion_tokens" => {
                max_completion_tokens = Some(decode::<u64>(name, raw, "a positive integer")?);
            }
            "temperature" | "top_p" | "presence_penalty" | "frequency_penalty" => {
                let value: f64 = decode(name, raw, "a number")?;
                input.insert(name.to_owned(), json!(value));
            }
            "seed" | "top_k" => {
                let value: i64 = decode(name, raw, "an integer")?;
                input.insert(name.to_owned(), json!(value));
            }
            "min_tokens" => {
                let value: u64 = decode(name, raw, "a non-negative integer")?;
                input.insert(name.to_owned(), json!(value));
            }
            "stop" => {
                if let Some(joined) = stop_sequences(raw)? {
                    input.insert("stop_sequences".to_owned(), json!(joined));
                }
            }
            "n" => {
                if decode::<u64>(name, raw, "a positive integer")? > 1 {
                    unsupported.push((name.to_owned(), "more than one choice"));
                }
            }
            "logprobs" => {
                if decode::<bool>(name, raw, "a boolean")? {
                    unsupported.push((name.to_owned(), "log probabilities"));
                }
            }
            "top_logprobs" => unsupported.push((name.to_owned(), "log probabilities")),
            "tools" | "functions" => {
                if decode::<Vec<IgnoredAny>>(name, raw, "an array")?.is_empty() {
                    continue;
                }
                unsupported.push((name.to_owned(), "tool calling"));
            }
            "tool_choice" | "function_call" => {
                if decode::<Value>(name, raw, "a string or an object")? != json!("none") {
                    unsupported.push((name.to_owned(), "tool calling"));
                }
            }
            "response_format" => {
                if decode::<Value>(name, raw, "an object")? != json!({"type": "text"}) {
                    unsupported.push((name.to_owned(), "structured output"));
                }
            }
            "logit_bias" => {
                if !decode::<Map<String, Value>>(name, raw, "an object")?.is_empty() {
                    unsupported.push((name.to_owned(), "logit biases"));
                }
            }
            "modalities" => {
                if decode::<Value>(name, raw, "an array")? != json!(["text"]) {
                    unsupported.push((name.to_owned(), "output other than text"));
                }
            }
            other => unsupported.push((other.to_owned(), "not a parameter Replicate takes")),
        }
    }
    let messages = messages.ok_or_else(|| HttpError::invalid_field("messages", "is required"))?;
    let rendered = render(messages, &mut unsupported)?;
    if let Some((first, _)) = unsupported.first() {
        let listed: Vec<String> = unsupported
            .iter()
            .map(|(field, why)| format!("{field} ({why})"))
            .collect();
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_parameter",
            format!(
                "this endpoint runs on a Replicate deployment, which cannot honour {}; remove them or deploy the model to an OpenAI-compatible provider",
                listed.join(", ")
            ),
        )
        .with_param(first));
    }
    let max_tokens = max_completion_tokens.or(max_tokens);
    if let Some(max_tokens) = max_tokens {
        input.insert("max_tokens".to_owned(), json!(max_tokens));
    }
    let mut prompt_bytes = rendered.prompt.len();
    if let Some(system) = rendered.system_prompt {
        prompt_bytes += system.len();
        input.insert("system_prompt".to_owned(), Value::String(system));
    }
    input.insert("prompt".to_owned(), Value::String(rendered.prompt));
    Ok(Chat {
        input: Value::Object(input),
        stream: request.stream,
        include_usage: request.client_wants_stream_usage,
        max_tokens,
        prompt_bytes,
    })
}

fn decode<'a, T: Deserialize<'a>>(
    name: &str,
    raw: &'a RawValue,
    expected: &str,
) -> Result<T, HttpError> {
    serde_json::from_str(raw.get())
        .map_err(|_| HttpError::invalid_field(name, format!("must be {expected}")))
}

/// `stop` as Replicate's comma-separated `stop_sequences`; `None` when empty.
fn stop_sequences(raw: &RawValue) -> Result<Option<String>, HttpError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stop {
        One(String),
        Many(Vec<String>),
    }
    let sequences = match decode::<Stop>("stop", raw, "a string or an array of strings")? {
        Stop::One(sequence) => vec![sequence],
        Stop::Many(sequences) => sequences,
    };
    if sequences.iter().any(|sequence| sequence.contains(',')) {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_parameter",
            "stop: Replicate takes stop sequences as one comma-separated string, so a sequence cannot contain a comma",
        )
        .with_param("stop"));
    }
    let sequences: Vec<String> = sequences
        .into_iter()
        .filter(|sequence| !sequence.is_empty())
        .collect();
    Ok((!sequences.is_empty()).then(|| sequences.join(",")))
}

/// The messages rendered with the module's template.
#[derive(Debug, PartialEq, Eq)]
struct Rendered {
    system_prompt: Option<String>,
    prompt: String,
}

fn render(messages: &RawValue, unsupported: &mut Vec<Unsupported>) -> Result<Rendered, HttpError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        role: Cow<'a, str>,
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Option<Vec<IgnoredAny>>,
        #[serde(default)]
        function_call: Option<IgnoredAny>,
        #[serde(default)]
        audio: Option<IgnoredAny>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: Option<String>,
    }
    let messages: Vec<Message<'_>> = serde_json::from_str(messages.get()).map_err(|_| {
        HttpError::invalid_field(
            "messages",
            "must be an array of messages with string content or content parts",
        )
    })?;
    let mut system = Vec::new();
    let mut prompt = String::new();
    for (index, message) in messages.into_iter().enumerate() {
        if message.tool_calls.is_some_and(|calls| !calls.is_empty()) {
            unsupported.push((format!("messages[{index}].tool_calls"), "tool calling"));
        }
        if message.function_call.is_some() {
            unsupported.push((format!("messages[{index}].function_call"), "tool calling"));
        }
        if message.audio.is_some() {
            unsupported.push((format!("messages[{index}].audio"), "audio"));
        }
        let text = match message.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::with_capacity(parts.len());
                for (part_index, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(text)) => texts.push(text),
                        _ => unsupported.push((
                            format!("messages[{index}].content[{part_index}]"),
                            "content other than text",
                        )),
                    }
                }
                texts.join("\n")
            }
        };
        match message.role.as_ref() {
            "system" | "developer" => system.push(text),
            role @ ("user" | "assistant") => {
                prompt.push_str(role);
                prompt.push_str(": ");
                prompt.push_str(&text);
                prompt.push('\n');
            }
            "tool" | "function" => {
                unsupported.push((format!("messages[{index}].role"), "tool results"));
            }
            _ => {
                return Err(HttpError::invalid_field(
                    format!("messages[{index}].role"),
                    "must be system, developer, user or assistant",
                ))
            }
        }
    }
    prompt.push_str("assistant:");
    Ok(Rendered {
        system_prompt: (!system.is_empty()).then(|| system.join("\n\n")),
        prompt,
    })
}

/// What one request needs to reach its deployment.
#[derive(Clone)]
struct Link {
    state: SharedState,
    route: Route,
    request_id: HeaderValue,
    /// The deployment (`…/v1/deployments/{owner}/{name}`).
    base: Uri,
    timeout: Duration,
    /// When the endpoint's timeout runs out.
    deadline: Instant,
}

impl Link {
    fn new(
        state: &SharedState,
        route: &Route,
        request_id: &HeaderValue,
    ) -> Result<Self, UpstreamError> {
        let endpoint = &route.endpoint.endpoint;
        let bad_url = || UpstreamError::BadUrl(endpoint.upstream_base_url.clone());
        let base: Uri = endpoint
            .upstream_base_url
            .trim_end_matches('/')
            .parse()
            .map_err(|_| bad_url())?;
        if base.scheme().is_none() || base.host().is_none() {
            return Err(bad_url());
        }
        let timeout = upstream_timeout(state, endpoint);
        Ok(Self {
            state: state.clone(),
            route: route.clone(),
            request_id: request_id.clone(),
            base,
            timeout,
            deadline: Instant::now() + timeout,
        })
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn predictions_url(&self) -> Result<Uri, UpstreamError> {
        let url = format!("{}/predictions", self.base);
        url.parse().map_err(|_| UpstreamError::BadUrl(url))
    }

    /// A URL from a prediction, if the endpoint's token may be sent to it.
    fn trusted(&self, url: &str) -> Result<Uri, Failure> {
        let untrusted = || Failure::Untrusted(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| untrusted())?;
        let same_scheme = uri.scheme().is_some() && uri.scheme() == self.base.scheme();
        match (uri.host(), self.base.host()) {
            (Some(host), Some(base)) if same_scheme && same_site(base, host) => Ok(uri),
            _ => Err(untrusted()),
        }
    }

    fn request(
        &self,
        method: Method,
        uri: Uri,
        accept: &'static str,
        body: Option<Vec<u8>>,
        prefer: Option<HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, HeaderValue::from_static(accept))
            .header("x-request-id", self.request_id.clone());
        if body.is_some() {
            builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(prefer) = prefer {
            builder = builder.header("prefer", prefer);
        }
        for (name, value) in &self.route.endpoint.primary().headers {
            builder = builder.header(name, value.clone());
        }
        builder
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|_| UpstreamError::BadUrl(self.base.to_string()))
    }

    /// Sends a request; its head must arrive within `within`.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        within: Duration,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        if within.is_zero() {
            return Err(UpstreamError::Timeout(self.timeout));
        }
        tokio::select! {
            result = self.state.upstream.send(request, within) => result.map_err(|error| match error {
                UpstreamError::Timeout(_) => UpstreamError::Timeout(self.timeout),
                other => other,
            }),
            () = self.state.hard_stop.cancelled() => Err(UpstreamError::ShuttingDown),
        }
    }

    /// Reads a (bounded) answer body within `within`.
    async fn collect(
        &self,
        response: http::Response<Incoming>,
        within: Duration,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let status = response.status();
        let collect = tokio::time::timeout(
            within,
            Limited::new(response.into_body(), MAX_UPSTREAM_BODY).collect(),
        );
        let collected = tokio::select! {
            collected = collect => collected,
            () = self.state.hard_stop.cancelled() => return Err(UpstreamError::ShuttingDown),
        };
        match collected {
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            Ok(Err(error)) => Err(UpstreamError::Unreachable(error.to_string())),
            Ok(Ok(body)) => Ok((status, body.to_bytes())),
        }
    }

    /// Sends a request and reads its answer, all within `within`.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        within: Duration,
    ) -> Result<(StatusCode, Bytes), UpstreamError> {
        let started = Instant::now();
        let response = self.send(request, within).await?;
        self.collect(response, within.saturating_sub(started.elapsed()))
            .await
    }

    /// Creates the prediction; `wait` asks Replicate to hold the answer until it ends.
    async fn create(&self, input: &Value, wait: Option<u64>) -> Result<Prediction, Failure> {
        let body = serde_json::to_vec(&json!({ "input": input })).unwrap_or_default();
        let prefer = wait.and_then(|seconds| HeaderValue::try_from(format!("wait={seconds}")).ok());
        let request = self.request(
            Method::POST,
            self.predictions_url()?,
            "application/json",
            Some(body),
            prefer,
        )?;
        let (status, bytes) = self.exchange(request, self.remaining()).await?;
        parse_prediction(status, bytes)
    }

    /// Reads a prediction at its `urls.get`.
    async fn read(&self, url: &Uri, within: Duration) -> Result<Prediction, Failure> {
        let request = self.request(Method::GET, url.clone(), "application/json", None, None)?;
        let (status, bytes) = self.exchange(request, within).await?;
        parse_prediction(status, bytes)
    }

    /// Polls an unfinished prediction until it ends or the timeout passes.
    async fn wait_until_done(&self, mut prediction: Prediction) -> Result<Prediction, Failure> {
        if prediction.is_terminal() {
            return Ok(prediction);
        }
        let url = self.trusted(&prediction.urls.get)?;
        let mut interval = FIRST_POLL;
        while !prediction.is_terminal() {
            let pause = interval.min(self.remaining());
            if pause.is_zero() {
                return Err(Failure::Transport(UpstreamError::Timeout(self.timeout)));
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.state.hard_stop.cancelled() => {
                    return Err(Failure::Transport(UpstreamError::ShuttingDown));
                }
            }
            prediction = self.read(&url, self.remaining()).await?;
            interval = (interval * 2).min(MAX_POLL);
        }
        Ok(prediction)
    }
}

/// Whether `host` may receive the token of an endpoint on `base`: the same
/// host, or (for names) one under the base host's parent domain.
fn same_site(base: &str, host: &str) -> bool {
    let base = base.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if base == host {
        return true;
    }
    let is_address = base.starts_with('[') || base.parse::<std::net::IpAddr>().is_ok();
    match base.split_once('.') {
        Some((_, parent)) if !is_address && parent.contains('.') => {
            host == parent || host.ends_with(&format!(".{parent}"))
        }
        _ => false,
    }
}

fn parse_prediction(status: StatusCode, bytes: Bytes) -> Result<Prediction, Failure> {
    if !status.is_success() {
        return Err(Failure::Refused {
            status,
            body: bytes,
        });
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| Failure::Malformed(format!("the answer is not a prediction: {error}")))
}

/// Why a request got no usable prediction.
#[derive(Debug)]
enum Failure {
    /// The call itself failed: timeout, unreachable, shutting down.
    Transport(UpstreamError),
    /// Replicate answered with an error status.
    Refused { status: StatusCode, body: Bytes },
    /// Replicate's answer is not what the API documents.
    Malformed(String),
    /// A prediction URL points somewhere the token must not go.
    Untrusted(String),
    /// The prediction ended `failed` or `canceled`.
    Ended(Box<Prediction>),
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        Failure::Transport(error)
    }
}

/// Records the failed request and turns the failure into the client's answer.
fn fail(meter: Meter, failure: Failure) -> HttpError {
    let (record_code, usage, compute, message) = match failure {
        Failure::Transport(error) => return upstream_failure(meter, error),
        Failure::Refused { status, body } => {
            let detail = error_detail(&body);
            tracing::warn!(%status, %detail, "replicate refused the request");
            (
                upstream_error_code(status, &body),
                None,
                None,
                format!(
                    "the Replicate deployment answered {}: {detail}",
                    status.as_u16()
                ),
            )
        }
        Failure::Malformed(message) => {
            tracing::warn!(error = %message, "replicate answered something unexpected");
            (
                "upstream_bad_response".to_owned(),
                None,
                None,
                format!("the Replicate deployment's answer was not understood: {message}"),
            )
        }
        Failure::Untrusted(url) => {
            tracing::warn!(%url, "replicate named a prediction URL on another host");
            (
                "upstream_bad_response".to_owned(),
                None,
                None,
                "the Replicate deployment named a prediction URL on another host".to_owned(),
            )
        }
        Failure::Ended(prediction) => {
            let error = prediction_error(&prediction);
            (
                prediction_error_code(&prediction.status, &error),
                metrics_usage(&prediction.metrics),
                predict_time(&prediction.metrics),
                format!(
                    "the Replicate prediction {} {}: {error}",
                    prediction.id, prediction.status
                ),
            )
        }
    };
    meter.finish(Outcome {
        status_code: StatusCode::BAD_GATEWAY.as_u16(),
        usage,
        estimated_output_tokens: 0,
        error_code: Some(record_code),
        first_byte: None,
        upstream_finished: Instant::now(),
        compute,
    });
    HttpError::new(
        StatusCode::BAD_GATEWAY,
        "server_error",
        "upstream_error",
        message,
    )
}

/// The `detail` of a Replicate error body, or the body itself (shortened).
fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Detail {
        detail: Option<String>,
        title: Option<String>,
    }
    match serde_json::from_slice::<Detail>(body) {
        Ok(Detail {
            detail: Some(detail),
            ..
        }) => detail,
        Ok(Detail {
            title: Some(title), ..
        }) => title,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// The error text of an ended prediction.
fn prediction_error(prediction: &Prediction) -> String {
    match &prediction.error {
        Value::String(error) if !error.is_empty() => error.clone(),
        Value::Null => "no error given".to_owned(),
        other => other.to_string(),
    }
}

/// The usage record's error code of a prediction that failed or was canceled.
fn prediction_error_code(status: &str, error: &str) -> String {
    if error.to_ascii_lowercase().contains("out of memory") {
        "upstream_out_of_memory".to_owned()
    } else if status == "canceled" {
        "upstream_canceled".to_owned()
    } else {
        "upstream_error".to_owned()
    }
}

/// Token counts Replicate reported, when it reported both.
fn metrics_usage(metrics: &Value) -> Option<TokenUsage> {
    let count = |key: &str| {
        let value = metrics.get(key)?;
        value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|count| count.is_finite() && *count >= 0.0)
                .map(|count| count.round() as u64)
        })
    };
    Some(TokenUsage {
        prompt_tokens: count("input_token_count")?,
        completion_tokens: count("output_token_count")?,
    })
}

/// Replicate's measured prediction time.
fn predict_time(metrics: &Value) -> Option<Duration> {
    let seconds = metrics.get("predict_time")?.as_f64()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// `length` when the model produced as many tokens as it was allowed, else `stop`.
fn finish_reason(reported: Option<TokenUsage>, max_tokens: Option<u64>) -> &'static str {
    match (reported, max_tokens) {
        (Some(usage), Some(max)) if usage.completion_tokens >= max => "length",
        _ => "stop",
    }
}

fn usage_json(usage: TokenUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// Cancels a prediction that is still running when dropped (the request ended
/// early: timeout, shutdown, client gone), so that it stops costing money.
struct CancelOnDrop {
    link: Link,
    url: Option<Uri>,
}

impl CancelOnDrop {
    fn new(link: &Link, prediction: &Prediction) -> Self {
        let url = if prediction.is_terminal() {
            None
        } else {
            link.trusted(&prediction.urls.cancel).ok()
        };
        Self {
            link: link.clone(),
            url,
        }
    }

    fn disarm(&mut self) {
        self.url = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(url) = self.url.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(request) = self
            .link
            .request(Method::POST, url, "application/json", None, None)
        else {
            return;
        };
        let client = self.link.state.upstream.clone();
        runtime.spawn(async move {
            match client.send(request, SIDE_CALL_TIMEOUT).await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!("canceled the unfinished replicate prediction");
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "replicate refused to cancel a prediction");
                }
                Err(error) => tracing::warn!(%error, "cannot cancel a replicate prediction"),
            }
        });
    }
}

/// A plain chat completion: create, wait, answer.
async fn complete(link: Link, meter: Meter, chat: Chat) -> Result<Response, HttpError> {
    let wait = PREFER_WAIT_SECONDS.min(link.timeout.as_secs()).max(1);
    let result = async {
        let created = link.create(&chat.input, Some(wait)).await?;
        let mut cancel = CancelOnDrop::new(&link, &created);
        let done = link.wait_until_done(created).await?;
        cancel.disarm();
        Ok::<_, Failure>(done)
    }
    .await;
    let prediction = match result {
        Ok(prediction) if prediction.status == "succeeded" => prediction,
        Ok(prediction) => return Err(fail(meter, Failure::Ended(Box::new(prediction)))),
        Err(failure) => return Err(fail(meter, failure)),
    };
    let text = prediction.output_text().unwrap_or_default();
    let reported = metrics_usage(&prediction.metrics);
    let usage = reported.unwrap_or(TokenUsage {
        prompt_tokens: estimate_tokens(chat.prompt_bytes),
        completion_tokens: estimate_tokens(text.len()),
    });
    let estimated_output_tokens = estimate_tokens(text.len());
    let body = json!({
        "id": format!("chatcmpl-{}", prediction.id),
        "object": "chat.completion",
        "created": now_ms() / 1000,
        "model": link.route.endpoint.endpoint.name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish_reason(reported, chat.max_tokens),
        }],
        "usage": usage_json(usage),
    });
    meter.finish(Outcome {
        status_code: StatusCode::OK.as_u16(),
        usage: reported,
        estimated_output_tokens,
        error_code: None,
        first_byte: None,
        upstream_finished: Instant::now(),
        compute: predict_time(&prediction.metrics),
    });
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A prediction's open event stream.
struct Events {
    prediction_id: String,
    get_url: Uri,
    body: Incoming,
    cancel: CancelOnDrop,
}

/// How a streamed prediction was opened.
enum Opened {
    /// Its event stream, to relay.
    Events(Box<Events>),
    /// It had ended (or the model does not stream): its whole output.
    Finished(Box<Prediction>),
}

/// A streamed chat completion: create, open `urls.stream`, relay.
async fn stream(link: Link, meter: Meter, chat: Chat) -> Result<Response, HttpError> {
    let opened = async {
        let created = link.create(&chat.input, None).await?;
        let mut cancel = CancelOnDrop::new(&link, &created);
        match created.urls.stream.clone() {
            Some(url) if !created.is_terminal() => {
                let get_url = link.trusted(&created.urls.get)?;
                let url = link.trusted(&url)?;
                let request = link.request(Method::GET, url, "text/event-stream", None, None)?;
                let response = link.send(request, link.remaining()).await?;
                let is_event_stream = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .is_some_and(|value| value.starts_with("text/event-stream"));
                if !response.status().is_success() {
                    let (status, body) = link.collect(response, SIDE_CALL_TIMEOUT).await?;
                    return Err(Failure::Refused { status, body });
                }
                if !is_event_stream {
                    return Err(Failure::Malformed(
                        "the prediction's stream URL did not answer server-sent events".to_owned(),
                    ));
                }
                Ok(Opened::Events(Box::new(Events {
                    prediction_id: created.id,
                    get_url,
                    body: response.into_body(),
                    cancel,
                })))
            }
            _ => {
                let done = link.wait_until_done(created).await?;
                cancel.disarm();
                Ok(Opened::Finished(Box::new(done)))
            }
        }
    }
    .await;
    let model = link.route.endpoint.endpoint.name.clone();
    match opened {
        Err(failure) => Err(fail(meter, failure)),
        Ok(Opened::Finished(prediction)) if prediction.status != "succeeded" => {
            Err(fail(meter, Failure::Ended(prediction)))
        }
        Ok(Opened::Finished(prediction)) => {
            let chunks = Chunks::new(&prediction.id, model, chat.include_usage);
            let text = prediction.output_text().unwrap_or_default();
            let reported = metrics_usage(&prediction.metrics);
            let usage = reported.unwrap_or(TokenUsage {
                prompt_tokens: estimate_tokens(chat.prompt_bytes),
                completion_tokens: estimate_tokens(text.len()),
            });
            let mut body = BytesMut::new();
            body.extend_from_slice(&chunks.role());
            if !text.is_empty() {
                body.extend_from_slice(&chunks.content(&text));
            }
            body.extend_from_slice(&chunks.finish(finish_reason(reported, chat.max_tokens)));
            if chat.include_usage {
                body.extend_from_slice(&chunks.usage(usage));
            }
            body.extend_from_slice(DONE_EVENT);
            meter.finish(Outcome {
                status_code: StatusCode::OK.as_u16(),
                usage: reported,
                estimated_output_tokens: estimate_tokens(text.len()),
                error_code: None,
                first_byte: None,
                upstream_finished: Instant::now(),
                compute: predict_time(&prediction.metrics),
            });
            Ok(event_stream(Body::from(body.freeze())))
        }
        Ok(Opened::Events(events)) => {
            let Events {
                prediction_id,
                get_url,
                body,
                cancel,
            } = *events;
            let chunks = Chunks::new(&prediction_id, model, chat.include_usage);
            let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
            // The channel is empty, so the role chunk always fits.
            let _ = sender.try_send(chunks.role());
            let relay = Relay {
                link,
                meter: Some(meter),
                cancel,
                chunks,
                get_url,
                max_tokens: chat.max_tokens,
                prompt_bytes: chat.prompt_bytes,
                content_bytes: 0,
                first_byte: None,
            };
            tokio::spawn(relay.run(body, sender));
            Ok(event_stream(Body::new(ChannelBody { receiver })))
        }
    }
}

/// An SSE response around `body`.
fn event_stream(body: Body) -> Response {
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

/// The client's side of the relay: chunks as the relay task sends them.
struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// OpenAI chunks of one streamed completion.
struct Chunks {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
}

impl Chunks {
    fn new(prediction_id: &str, model: String, include_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{prediction_id}"),
            model,
            created: now_ms() / 1000,
            include_usage,
        }
    }

    fn event(&self, choices: Value, usage: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        // With include_usage, OpenAI sends `usage: null` on every other chunk.
        if self.include_usage {
            chunk["usage"] = usage;
        }
        sse_data(&chunk)
    }

    fn choice(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        self.event(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
            Value::Null,
        )
    }

    fn role(&self) -> Bytes {
        self.choice(json!({"role": "assistant", "content": ""}), None)
    }

    fn content(&self, text: &str) -> Bytes {
        self.choice(json!({ "content": text }), None)
    }

    fn finish(&self, reason: &str) -> Bytes {
        self.choice(json!({}), Some(reason))
    }

    fn usage(&self, usage: TokenUsage) -> Bytes {
        self.event(json!([]), usage_json(usage))
    }
}

fn sse_data(value: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A final SSE event in the error shape of the gateway's streams.
fn error_event(code: &str, message: &str) -> Bytes {
    sse_data(&json!({"error": {"message": message, "type": "server_error", "code": code}}))
}

/// How the relay of a prediction's events ended.
enum End {
    /// `done` without a reason: the prediction succeeded.
    Done,
    /// The prediction reported an error (`error`, or `done` with a reason).
    Failed(String),
    /// The relay stopped: timeout, broken stream, shutdown.
    Cut { code: &'static str, message: String },
    /// The client went away.
    ClientGone,
}

/// Relays one prediction's events to the client and meters the request.
struct Relay {
    link: Link,
    meter: Option<Meter>,
    cancel: CancelOnDrop,
    chunks: Chunks,
    get_url: Uri,
    max_tokens: Option<u64>,
    prompt_bytes: usize,
    content_bytes: usize,
    first_byte: Option<Instant>,
}

impl Relay {
    async fn run(mut self, mut upstream: Incoming, sender: mpsc::Sender<Bytes>) {
        metrics::gauge!("switchyard_streams_in_flight").increment(1.0);
        let mut parser = EventParser::default();
        let idle_timeout = self.link.state.settings.stream_idle_timeout;
        let end = 'relay: loop {
            // Until the first output a scaled-to-zero deployment may still be booting.
            let wait = if self.first_byte.is_none() {
                self.link.remaining()
            } else {
                idle_timeout
            };
            let frame = tokio::select! {
                frame = tokio::time::timeout(wait, upstream.frame()) => frame,
                () = sender.closed() => break End::ClientGone,
                () = self.link.state.hard_stop.cancelled() => break End::Cut {
                    code: "server_shutting_down",
                    message: "the gateway is shutting down".to_owned(),
                },
            };
            let data = match frame {
                Err(_) => {
                    tracing::warn!(timeout = ?wait, "replicate stream went idle; closing it");
                    break End::Cut {
                        code: "upstream_timeout",
                        message: "upstream stopped sending".to_owned(),
                    };
                }
                Ok(None) => {
                    break End::Cut {
                        code: "upstream_stream_error",
                        message: "the prediction's event stream ended before `done`".to_owned(),
                    }
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "replicate stream failed");
                    break End::Cut {
                        code: "upstream_stream_error",
                        message: "the prediction's event stream broke".to_owned(),
                    };
                }
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let Some(events) = parser.push(&data) else {
                tracing::warn!("replicate sent an SSE event over the size limit");
                break End::Cut {
                    code: "upstream_event_too_large",
                    message: "upstream sent an event over 4 MiB".to_owned(),
                };
            };
            for event in events {
                match event.kind.as_str() {
                    "output" => {
                        if event.data.is_empty() {
                            continue;
                        }
                        self.first_byte.get_or_insert_with(Instant::now);
                        self.content_bytes += event.data.len();
                        if sender.send(self.chunks.content(&event.data)).await.is_err() {
                            break 'relay End::ClientGone;
                        }
                    }
                    "error" => break 'relay End::Failed(event_error(&event.data)),
                    "done" => {
                        break 'relay match done_reason(&event.data) {
                            None => End::Done,
                            Some(reason) => End::Failed(format!("the prediction ended: {reason}")),
                        }
                    }
                    _ => {}
                }
            }
        };
        self.end(end, &sender).await;
        metrics::gauge!("switchyard_streams_in_flight").decrement(1.0);
    }

    async fn end(&mut self, end: End, sender: &mpsc::Sender<Bytes>) {
        let estimated_output_tokens = estimate_tokens(self.content_bytes);
        let (usage, error_code, compute) = match end {
            End::Done => {
                self.cancel.disarm();
                let finished = self.link.read(&self.get_url, SIDE_CALL_TIMEOUT).await;
                let metrics = match &finished {
                    Ok(prediction) => prediction.metrics.clone(),
                    Err(failure) => {
                        tracing::debug!(?failure, "cannot read the finished prediction's metrics");
                        Value::Null
                    }
                };
                let reported = metrics_usage(&metrics);
                let mut tail = BytesMut::new();
                tail.extend_from_slice(
                    &self.chunks.finish(finish_reason(reported, self.max_tokens)),
                );
                if self.chunks.include_usage {
                    let usage = reported.unwrap_or(TokenUsage {
                        prompt_tokens: estimate_tokens(self.prompt_bytes),
                        completion_tokens: estimated_output_tokens,
                    });
                    tail.extend_from_slice(&self.chunks.usage(usage));
                }
                tail.extend_from_slice(DONE_EVENT);
                // The answer is complete even if the client left just now.
                let _ = sender.send(tail.freeze()).await;
                (reported, None, predict_time(&metrics))
            }
            End::Failed(message) => {
                self.cancel.disarm();
                tracing::warn!(error = %message, "replicate prediction failed while streaming");
                let code = prediction_error_code("failed", &message);
                let _ = sender.send(error_event("upstream_error", &message)).await;
                (None, Some(code), None)
            }
            End::Cut { code, message } => {
                let _ = sender.send(error_event(code, &message)).await;
                (None, Some(code.to_owned()), None)
            }
            End::ClientGone => (None, Some("client_disconnected".to_owned()), None),
        };
        if let Some(meter) = self.meter.take() {
            meter.finish(Outcome {
                status_code: StatusCode::OK.as_u16(),
                usage,
                estimated_output_tokens,
                error_code,
                first_byte: self.first_byte,
                upstream_finished: Instant::now(),
                compute,
            });
        }
    }
}

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    /// The `event:` field (`message` when absent).
    kind: String,
    /// The `data:` lines joined by newlines.
    data: String,
}

/// Splits a byte stream into server-sent events.
#[derive(Default)]
struct EventParser {
    buffer: BytesMut,
}

impl EventParser {
    /// The events `data` completes; `None` when an event outgrows the limit.
    fn push(&mut self, data: &[u8]) -> Option<Vec<SseEvent>> {
        // Only the new bytes (and the 2 before them) can complete the held event.
        let scan_from = self.buffer.len().saturating_sub(2);
        self.buffer.extend_from_slice(data);
        let mut events = Vec::new();
        let mut from = scan_from;
        while let Some(length) = event_length(&self.buffer, from) {
            let raw = self.buffer.split_to(length);
            if let Some(event) = parse_event(&raw) {
                events.push(event);
            }
            from = 0;
        }
        (self.buffer.len() <= MAX_EVENT_BYTES).then_some(events)
    }
}

/// Parses one complete event (fields per the SSE specification); comments
/// and events without `event` or `data` yield nothing.
fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut kind = None;
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = Some(value.to_owned()),
            "data" => match &mut data {
                Some(joined) => {
                    joined.push('\n');
                    joined.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    if kind.is_none() && data.is_none() {
        return None;
    }
    Some(SseEvent {
        kind: kind.unwrap_or_else(|| "message".to_owned()),
        data: data.unwrap_or_default(),
    })
}

/// The `reason` of a `done` event, when the prediction did not succeed.
fn done_reason(data: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Done {
        reason: Option<String>,
    }
    serde_json::from_str::<Done>(data)
        .ok()?
        .reason
        .filter(|reason| !reason.is_empty())
}

/// The message of an `error` event (JSON with `detail`, `error` or `message`).
fn event_error(data: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(data).ok();
    let field = parsed.as_ref().and_then(|value| {
        ["detail", "error", "message"]
            .iter()
            .find_map(|key| value.get(key).and_then(Value::as_str))
            .map(str::to_owned)
    });
    match field {
        Some(message) => message,
        None if parsed.as_ref().is_some_and(Value::is_string) => parsed
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default(),
        None if data.trim().is_empty() => "the prediction failed".to_owned(),
        None => data.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Chat, HttpError> {
        let request = RequestBody::parse(body.as_bytes(), Operation::Chat).unwrap();
        translate(Operation::Chat, &request)
    }

    #[test]
    fn messages_render_with_the_template() {
        let translated = chat(
            r#"{"model":"m","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello!"},
                {"role":"developer","content":"Answer in English."},
                {"role":"user","content":[{"type":"text","text":"How are"},{"type":"text","text":"you?"}]}
            ],"max_tokens":64,"temperature":0.2,"top_p":0.9,"stop":["\n\n","END"],"seed":7,"user":"u-1"}"#,
        )
        .unwrap();
        assert_eq!(
            translated.input,
            json!({
                "system_prompt": "Be brief.\n\nAnswer in English.",
                "prompt": "user: Hi\nassistant: Hello!\nuser: How are\nyou?\nassistant:",
                "max_tokens": 64,
                "temperature": 0.2,
                "top_p": 0.9,
                "stop_sequences": "\n\n,END",
                "seed": 7,
            })
        );
        assert_eq!(translated.max_tokens, Some(64));
        assert!(!translated.stream);
        let only_user = chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"max_completion_tokens":16,"stop":"x"}"#).unwrap();
        assert_eq!(
            only_user.input,
            json!({"prompt": "user: Hi\nassistant:", "max_tokens": 16, "stop_sequences": "x"})
        );
        assert_eq!(only_user.prompt_bytes, "user: Hi\nassistant:".len());
    }

    #[test]
    fn fields_that_change_the_answer_are_refused_by_name() {
        let error = chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"n":2,"logprobs":true,"response_format":{"type":"json_object"},"tool_choice":"auto"}"#)
            .err()
            .unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "unsupported_parameter");
        assert_eq!(error.param.as_deref(), Some("tools"));
        for field in ["tools", "n", "logprobs", "response_format", "tool_choice"] {
            assert!(error.message.contains(field), "{}", error.message);
        }
        let error = chat(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]},{"role":"tool","content":"42","tool_call_id":"c"}]}"#)
            .err()
            .unwrap();
        assert_eq!(error.param.as_deref(), Some("messages[0].content[0]"));
        assert!(
            error.message.contains("messages[1].role"),
            "{}",
            error.message
        );
        let error =
            chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"guided_json":{}}"#)
                .err()
                .unwrap();
        assert_eq!(error.param.as_deref(), Some("guided_json"));
        let error =
            chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"stop":["a,b"]}"#)
                .err()
                .unwrap();
        assert_eq!(error.param.as_deref(), Some("stop"));
        let error = chat(r#"{"model":"m","messages":[{"role":"robot","content":"Hi"}]}"#)
            .err()
            .unwrap();
        assert_eq!(error.param.as_deref(), Some("messages[0].role"));
        // Harmless values pass.
        assert!(chat(r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":1,"logprobs":false,"tools":[],"tool_choice":"none","response_format":{"type":"text"},"logit_bias":{},"tools_extra":null,"parallel_tool_calls":true}"#).is_ok());
    }

    #[test]
    fn only_chat_is_offered() {
        let request =
            RequestBody::parse(br#"{"model":"m","prompt":"Hi"}"#, Operation::Completions).unwrap();
        let error = translate(Operation::Completions, &request).err().unwrap();
        assert_eq!(error.code, "unsupported_operation");
        let request =
            RequestBody::parse(br#"{"model":"m","input":"Hi"}"#, Operation::Embeddings).unwrap();
        let error = translate(Operation::Embeddings, &request).err().unwrap();
        assert_eq!(error.code, "unsupported_operation");
    }

    #[test]
    fn events_are_split_across_frames() {
        let mut parser = EventParser::default();
        assert_eq!(
            parser.push(b"event: output\nid: 1:0\ndata: Hel"),
            Some(vec![])
        );
        let events = parser
            .push(b"lo\n\nevent: output\r\ndata: a\r\ndata: b\r\n\r\n: keepalive\n\nevent: done\ndata: {}\n\n")
            .unwrap();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    kind: "output".to_owned(),
                    data: "Hello".to_owned()
                },
                SseEvent {
                    kind: "output".to_owned(),
                    data: "a\nb".to_owned()
                },
                SseEvent {
                    kind: "done".to_owned(),
                    data: "{}".to_owned()
                },
            ]
        );
        let mut parser = EventParser::default();
        assert!(parser.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_none());
    }

    #[test]
    fn done_and_error_events_are_read() {
        assert_eq!(done_reason("{}"), None);
        assert_eq!(
            done_reason(r#"{"reason":"canceled"}"#),
            Some("canceled".to_owned())
        );
        assert_eq!(
            event_error(r#"{"detail":"CUDA out of memory"}"#),
            "CUDA out of memory"
        );
        assert_eq!(event_error(r#""boom""#), "boom");
        assert_eq!(event_error("plain words"), "plain words");
        assert_eq!(event_error(""), "the prediction failed");
        assert_eq!(
            prediction_error_code("failed", "CUDA out of memory"),
            "upstream_out_of_memory"
        );
        let event = error_event("upstream_error", "it broke");
        let text = std::str::from_utf8(&event).unwrap();
        let payload: Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(payload["error"]["code"], "upstream_error");
        assert_eq!(payload["error"]["message"], "it broke");
        assert_eq!(payload["error"]["type"], "server_error");
    }

    #[test]
    fn metrics_give_usage_and_compute() {
        let metrics =
            json!({"predict_time": 0.25, "input_token_count": 12, "output_token_count": 30.0});
        assert_eq!(
            metrics_usage(&metrics),
            Some(TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 30
            })
        );
        assert_eq!(predict_time(&metrics), Some(Duration::from_millis(250)));
        assert_eq!(metrics_usage(&json!({"input_token_count": 12})), None);
        assert_eq!(predict_time(&json!({"predict_time": -1.0})), None);
        let usage = metrics_usage(&metrics);
        assert_eq!(finish_reason(usage, Some(30)), "length");
        assert_eq!(finish_reason(usage, Some(31)), "stop");
        assert_eq!(finish_reason(None, Some(1)), "stop");
    }

    #[test]
    fn chunks_follow_openai() {
        let chunks = Chunks {
            id: "chatcmpl-p1".to_owned(),
            model: "mine".to_owned(),
            created: 1,
            include_usage: true,
        };
        let parse = |bytes: Bytes| -> Value {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap()
        };
        let role = parse(chunks.role());
        assert_eq!(role["object"], "chat.completion.chunk");
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(role["usage"], Value::Null);
        assert_eq!(
            parse(chunks.content("Hi"))["choices"][0]["delta"]["content"],
            "Hi"
        );
        assert_eq!(
            parse(chunks.finish("stop"))["choices"][0]["finish_reason"],
            "stop"
        );
        let usage = parse(chunks.usage(TokenUsage {
            prompt_tokens: 2,
            completion_tokens: 3,
        }));
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 5);
    }

    #[test]
    fn prediction_urls_stay_on_the_deployment_site() {
        assert!(same_site("api.replicate.com", "api.replicate.com"));
        assert!(same_site(
            "api.replicate.com",
            "streaming.api.replicate.com"
        ));
        assert!(same_site("api.replicate.com", "stream.replicate.com"));
        assert!(!same_site(
            "api.replicate.com",
            "replicate.com.evil.example"
        ));
        assert!(!same_site("api.replicate.com", "evil.example"));
        assert!(same_site("127.0.0.1", "127.0.0.1"));
        assert!(!same_site("127.0.0.1", "0.0.1"));
        assert!(!same_site("localhost", "other"));
    }
}

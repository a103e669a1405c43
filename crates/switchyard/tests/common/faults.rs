//! Fault injection and plumbing shared by the upstream fakes (OpenAI-compatible,
//! Anthropic, Gemini, Azure OpenAI).
//!
//! Rules every fake follows:
//! - The behaviour is the first path segment of the URL (`/{mode}/...`); a run-time
//!   override ([`FaultControl::set_mode_override`]) replaces it for every request, so a
//!   breaker or health test can make a whole backend fail and then recover.
//! - [`FaultControl::admit`] counts each request under its effective mode and turns the
//!   mode into a [`Plan`]: serve (maybe late, maybe cut mid-body), fail with a status the
//!   fake renders in its provider's error shape, or reset the connection.
//! - `reset` closes the TCP connection without writing a response. Handlers cannot do that
//!   through axum, so they return [`reset_response`] (a marker extension) and [`serve`]
//!   (a hyper HTTP/1 accept loop around the router) turns the marker into a service error,
//!   which makes hyper drop the connection before any byte of the head is written.
//! - `dies_midstream` bodies ([`events_body`] with `cut`) send the first
//!   [`MIDSTREAM_EVENTS`] pieces, pause so they reach the client, then fail the body: hyper
//!   aborts the connection without the terminating chunk, so the client sees a body error
//!   after some bytes.
//! - Every request is logged in a [`RequestLog`] before it is validated, so tests can assert
//!   what a client sent even when the fake rejected it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tower::ServiceExt;

/// How long `slow` waits before it sends the response head.
pub const SLOW_DELAY: Duration = Duration::from_secs(2);
/// The `Retry-After` (seconds) of `error503` and `error429` answers.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// By default `flaky` fails the first request of every 2.
pub const DEFAULT_FLAKY_PERIOD: usize = 2;
/// How many body pieces (SSE events) `dies_midstream` sends before the connection dies.
pub const MIDSTREAM_EVENTS: usize = 2;
/// The pause between the pieces of a streamed body.
pub const EVENT_GAP: Duration = Duration::from_millis(5);

/// A behaviour chosen by the mode path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    Ok,
    /// Accept the request, then close the connection without a response.
    Reset,
    /// 503 with `Retry-After`.
    Error503,
    /// 429 with `Retry-After`.
    Error429,
    /// Sleep [`SLOW_DELAY`] before the response head.
    Slow,
    /// Send [`MIDSTREAM_EVENTS`] body pieces, then abort the connection.
    DiesMidstream,
    /// The first request of every N (see [`FaultControl::set_flaky_period`]) gets a 503.
    Flaky,
    /// 400 in the provider's invalid-request shape.
    Error400,
    /// 401 in the provider's authentication-error shape.
    Error401,
}

impl Fault {
    /// Every fault, for tests that walk them all.
    pub const ALL: [Fault; 9] = [
        Fault::Ok,
        Fault::Reset,
        Fault::Error503,
        Fault::Error429,
        Fault::Slow,
        Fault::DiesMidstream,
        Fault::Flaky,
        Fault::Error400,
        Fault::Error401,
    ];

    /// The mode path segment of this fault.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Ok => "ok",
            Fault::Reset => "reset",
            Fault::Error503 => "error503",
            Fault::Error429 => "error429",
            Fault::Slow => "slow",
            Fault::DiesMidstream => "dies_midstream",
            Fault::Flaky => "flaky",
            Fault::Error400 => "error400",
            Fault::Error401 => "error401",
        }
    }

    /// The fault named by a mode path segment, if it is one.
    pub fn parse(mode: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == mode)
    }
}

/// A failure status a fake renders in its provider's error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 503, with `Retry-After: RETRY_AFTER_SECONDS`.
    Unavailable,
    /// 429, with `Retry-After: RETRY_AFTER_SECONDS`.
    RateLimited,
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
}

impl Failure {
    /// The HTTP status of this failure.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Failure::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Failure::BadRequest => StatusCode::BAD_REQUEST,
            Failure::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    /// Whether the answer carries `Retry-After`.
    pub fn retry_after(self) -> Option<u64> {
        matches!(self, Failure::Unavailable | Failure::RateLimited).then_some(RETRY_AFTER_SECONDS)
    }
}

/// What a fake does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Handle the request; `cut` bodies die after [`MIDSTREAM_EVENTS`] pieces.
    Serve {
        /// The mode that was in effect (the override or the path segment).
        mode: String,
        /// Abort the body mid-way.
        cut: bool,
    },
    /// Answer with this failure instead of handling the request.
    Fail(Failure),
    /// Close the connection without a response.
    Reset,
}

/// Counters and the run-time switch of one fake instance.
pub struct FaultControl {
    counts: Mutex<BTreeMap<String, usize>>,
    mode_override: Mutex<Option<String>>,
    flaky_period: AtomicUsize,
    flaky_seen: AtomicUsize,
    flaky_failures: AtomicUsize,
}

impl Default for FaultControl {
    fn default() -> Self {
        Self {
            counts: Mutex::default(),
            mode_override: Mutex::default(),
            flaky_period: AtomicUsize::new(DEFAULT_FLAKY_PERIOD),
            flaky_seen: AtomicUsize::new(0),
            flaky_failures: AtomicUsize::new(0),
        }
    }
}

impl FaultControl {
    /// Makes every request behave as `mode` (e.g. `Some("error503")`), or restores the
    /// path's mode with `None`.
    pub fn set_mode_override(&self, mode: Option<&str>) {
        *self.mode_override.lock().unwrap() = mode.map(str::to_owned);
    }

    /// The current override.
    pub fn mode_override(&self) -> Option<String> {
        self.mode_override.lock().unwrap().clone()
    }

    /// `flaky` fails the first request of every `period` (at least 1: every request fails)
    /// and restarts its cycle.
    pub fn set_flaky_period(&self, period: usize) {
        self.flaky_period.store(period.max(1), Ordering::SeqCst);
        self.flaky_seen.store(0, Ordering::SeqCst);
    }

    /// How many `flaky` requests were failed so far.
    pub fn flaky_failures(&self) -> usize {
        self.flaky_failures.load(Ordering::SeqCst)
    }

    /// Requests seen under an effective mode.
    pub fn count(&self, mode: &str) -> usize {
        self.counts.lock().unwrap().get(mode).copied().unwrap_or(0)
    }

    /// Requests seen per effective mode.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }

    /// Requests seen in total.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap().values().sum()
    }

    /// Counts a request that arrived under `path_mode` and decides what to do with it.
    /// Modes that are not faults (a fake's own modes such as `v1` or `held`) are served.
    pub fn admit(&self, path_mode: &str) -> Plan {
        let mode = self.mode_override().unwrap_or_else(|| path_mode.to_owned());
        *self.counts.lock().unwrap().entry(mode.clone()).or_insert(0) += 1;
        match Fault::parse(&mode) {
            Some(Fault::Reset) => Plan::Reset,
            Some(Fault::Error503) => Plan::Fail(Failure::Unavailable),
            Some(Fault::Error429) => Plan::Fail(Failure::RateLimited),
            Some(Fault::Error400) => Plan::Fail(Failure::BadRequest),
            Some(Fault::Error401) => Plan::Fail(Failure::Unauthorized),
            Some(Fault::Flaky) => {
                let period = self.flaky_period.load(Ordering::SeqCst);
                if self.flaky_seen.fetch_add(1, Ordering::SeqCst) % period == 0 {
                    self.flaky_failures.fetch_add(1, Ordering::SeqCst);
                    Plan::Fail(Failure::Unavailable)
                } else {
                    Plan::Serve { mode, cut: false }
                }
            }
            Some(Fault::DiesMidstream) => Plan::Serve { mode, cut: true },
            Some(Fault::Ok | Fault::Slow) | None => Plan::Serve { mode, cut: false },
        }
    }

    /// Sleeps [`SLOW_DELAY`] when `mode` is `slow`.
    pub async fn delay(mode: &str) {
        if mode == Fault::Slow.name() {
            tokio::time::sleep(SLOW_DELAY).await;
        }
    }
}

/// One request a fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full path, mode segment included.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body as JSON, `Value::Null` when empty, a `Value::String` when not JSON.
    pub body: Value,
}

/// Every request a fake received, in order.
#[derive(Default)]
pub struct RequestLog {
    requests: Mutex<Vec<RecordedRequest>>,
}

impl RequestLog {
    /// Appends a request; the body is parsed as JSON when it is JSON.
    pub fn record(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) {
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        self.requests.lock().unwrap().push(RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: headers.clone(),
            body,
        });
    }

    /// All requests so far.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The last request, if any.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.requests.lock().unwrap().last().cloned()
    }

    /// The body of the last request (`Value::Null` when there is none).
    pub fn last_body(&self) -> Value {
        self.last()
            .map(|request| request.body)
            .unwrap_or(Value::Null)
    }

    /// How many requests arrived.
    pub fn len(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Whether no request arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The marker a handler puts on a response to have [`serve`] reset the connection.
#[derive(Clone, Copy, Debug)]
pub struct ResetConnection;

/// A response that [`serve`] turns into a closed connection without a response.
pub fn reset_response() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(ResetConnection);
    response
}

/// The service error that makes hyper drop a connection.
#[derive(Debug, thiserror::Error)]
#[error("the fake resets this connection on purpose")]
pub struct ConnectionResetOnPurpose;

/// Serves `router` on 127.0.0.1 over HTTP/1 and returns the bound address. Responses
/// marked by [`reset_response`] close their connection without a byte written.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let router = router.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let router = router.clone();
                    async move {
                        let response = router
                            .oneshot(request.map(Body::new))
                            .await
                            .unwrap_or_else(|never: Infallible| match never {});
                        if response.extensions().get::<ResetConnection>().is_some() {
                            return Err(ConnectionResetOnPurpose);
                        }
                        Ok(response)
                    }
                });
                // Resets, cut bodies and clients that hang up end here with an error.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The error that ends a `dies_midstream` body.
#[derive(Debug, thiserror::Error)]
#[error("the fake cuts this body mid-stream on purpose")]
pub struct BodyCutOnPurpose;

/// A chunked body of `pieces` sent [`EVENT_GAP`] apart. With `cut`, only the first
/// [`MIDSTREAM_EVENTS`] pieces go out, then the body fails and the connection dies
/// without the final chunk.
pub fn events_body(pieces: Vec<Bytes>, cut: bool) -> Body {
    let keep = if cut {
        MIDSTREAM_EVENTS.min(pieces.len())
    } else {
        pieces.len()
    };
    let mut pieces: std::collections::VecDeque<Bytes> = pieces.into_iter().take(keep).collect();
    let stream = futures_util::stream::unfold(false, move |first_sent| {
        let next = pieces.pop_front();
        async move {
            if first_sent {
                tokio::time::sleep(EVENT_GAP).await;
            }
            match next {
                Some(piece) => Some((Ok(piece), true)),
                None if cut => {
                    // Let the pieces reach the client before the connection dies.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Err(BodyCutOnPurpose), true))
                }
                None => None,
            }
        }
    });
    // After the cut error the stream is not polled again: hyper aborts the connection.
    Body::from_stream(stream)
}

/// A non-streamed JSON answer cut mid-way: the first half of `body`, then the
/// connection dies.
pub fn cut_json_body(body: &Value) -> Body {
    let text = body.to_string().into_bytes();
    events_body(vec![Bytes::copy_from_slice(&text[..text.len() / 2])], true)
}

/// Why generation stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The whole reply was produced.
    End,
    /// The token budget ran out.
    Length,
    /// The text reached this stop sequence (not included).
    Sequence(String),
}

/// What a fake model says under a budget of `max_tokens` and `stops`: the first
/// `max_tokens` of `reply` (one token per piece), cut before the earliest stop sequence
/// that text contains.
pub fn generate(reply: &[&str], max_tokens: u64, stops: &[&str]) -> (Vec<String>, Stop) {
    let budget = usize::try_from(max_tokens).unwrap_or(usize::MAX);
    let pieces: Vec<String> = reply
        .iter()
        .take(budget)
        .map(|piece| (*piece).to_owned())
        .collect();
    let text: String = pieces.concat();
    let earliest = stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop).map(|index| (index, *stop)))
        .min_by_key(|(index, _)| *index);
    if let Some((cut_at, stop)) = earliest {
        let mut kept = Vec::new();
        let mut offset = 0;
        for piece in pieces {
            if offset >= cut_at {
                break;
            }
            let end = (offset + piece.len()).min(cut_at);
            kept.push(piece[..end - offset].to_owned());
            offset += piece.len();
        }
        return (kept, Stop::Sequence(stop.to_owned()));
    }
    if budget < reply.len() {
        return (pieces, Stop::Length);
    }
    (pieces, Stop::End)
}

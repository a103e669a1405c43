//! One upstream of an endpoint as the gateway calls it: its URLs and
//! credential headers per protocol, and the live figures that survive snapshot
//! reloads (connections in flight, latency EWMA, circuit breaker, health).
//!
//! URLs per protocol (`base` is the stored base URL, trailing `/` removed):
//!
//! | protocol | chat | completions / embeddings | health check |
//! |---|---|---|---|
//! | `openai`, `replicate` | `{base}/chat/completions` | `{base}/completions`, `{base}/embeddings` | `GET {base}/models` |
//! | `azure` | `{root}/openai/deployments/{model}/chat/completions?api-version=V` | same with `/completions`, `/embeddings` | none (passive only) |
//! | `anthropic` | `{root}/v1/messages` | not offered | `GET {root}/v1/models` |
//! | `google` | `{root}/v1beta/models/{model}:generateContent`, streams `:streamGenerateContent?alt=sse` | not offered | `GET {root}/v1beta/models/{model}` |
//!
//! `root` is the base with a trailing `/v1` (Anthropic), `/v1beta` (Google)
//! or `/openai` (Azure) removed, so either form can be registered.
//!
//! Credentials: `Authorization: Bearer` (OpenAI-compatible, Replicate),
//! `api-key` (Azure), `x-api-key` plus `anthropic-version: 2023-06-01`
//! (Anthropic), `x-goog-api-key` (Google); custom headers follow and may
//! override the version header. Every credential header is marked sensitive.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::request_body::Operation;
use crate::domain::UpstreamApi;

/// The Azure OpenAI `api-version` used when none is configured.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// The `anthropic-version` header sent to Anthropic.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Circuit breaker and health check settings (shared by all backends).
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before one half-open probe.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// What an upstream is and how to reach it, before it is turned into a runtime.
#[derive(Debug, Clone)]
pub struct BackendSpec<'a> {
    pub id: &'a str,
    pub endpoint_id: &'a str,
    pub version: &'a str,
    pub weight: u32,
    pub api: UpstreamApi,
    pub base_url: &'a str,
    pub model: &'a str,
    pub api_version: Option<&'a str>,
    pub api_key: Option<&'a str>,
    pub headers: &'a [(String, String)],
}

/// One backend of an endpoint.
#[derive(Debug)]
pub struct BackendRuntime {
    pub id: String,
    /// The base URL as stored (a changed URL starts with fresh live figures).
    pub base_url: String,
    pub version: String,
    pub weight: u32,
    pub api: UpstreamApi,
    pub model: String,
    chat: Option<Uri>,
    chat_stream: Option<Uri>,
    completions: Option<Uri>,
    embeddings: Option<Uri>,
    health: Option<Uri>,
    /// Credential and custom headers, in sending order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub state: Arc<BackendState>,
}

impl BackendRuntime {
    /// Builds a backend, reusing the live figures of its previous runtime.
    pub fn build(spec: &BackendSpec<'_>, state: Option<Arc<BackendState>>) -> Self {
        let base = spec.base_url.trim_end_matches('/');
        let root = root_of(spec.api, base);
        let parse = |text: String| text.parse::<Uri>().ok();
        // Gemini names models `models/{id}` in its own listings; either form works.
        let model = match spec.api {
            UpstreamApi::Google => spec.model.strip_prefix("models/").unwrap_or(spec.model),
            _ => spec.model,
        };
        let (chat, chat_stream, completions, embeddings, health) = match spec.api {
            UpstreamApi::OpenAi | UpstreamApi::Replicate => (
                parse(format!("{base}/chat/completions")),
                None,
                parse(format!("{base}/completions")),
                parse(format!("{base}/embeddings")),
                parse(format!("{base}/models")),
            ),
            UpstreamApi::Azure => {
                let version = spec.api_version.unwrap_or(DEFAULT_AZURE_API_VERSION);
                let url = |operation: &str| {
                    parse(format!(
                        "{root}/openai/deployments/{model}/{operation}?api-version={version}"
                    ))
                };
                (
                    url("chat/completions"),
                    None,
                    url("completions"),
                    url("embeddings"),
                    None,
                )
            }
            UpstreamApi::Anthropic => (
                parse(format!("{root}/v1/messages")),
                None,
                None,
                None,
                parse(format!("{root}/v1/models")),
            ),
            UpstreamApi::Google => (
                parse(format!("{root}/v1beta/models/{model}:generateContent")),
                parse(format!(
                    "{root}/v1beta/models/{model}:streamGenerateContent?alt=sse"
                )),
                None,
                None,
                parse(format!("{root}/v1beta/models/{model}")),
            ),
        };
        let mut headers = Vec::with_capacity(spec.headers.len() + 2);
        if let Some(key) = spec.api_key {
            let (name, value) = match spec.api {
                UpstreamApi::OpenAi | UpstreamApi::Replicate => {
                    (http::header::AUTHORIZATION, format!("Bearer {key}"))
                }
                UpstreamApi::Azure => (HeaderName::from_static("api-key"), key.to_owned()),
                UpstreamApi::Anthropic => (HeaderName::from_static("x-api-key"), key.to_owned()),
                UpstreamApi::Google => (HeaderName::from_static("x-goog-api-key"), key.to_owned()),
            };
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                headers.push((name, value));
            }
        }
        let overrides_version = spec
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("anthropic-version"));
        if spec.api == UpstreamApi::Anthropic && !overrides_version {
            headers.push((
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ));
        }
        for (name, value) in spec.headers {
            let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            value.set_sensitive(true);
            headers.push((name, value));
        }
        Self {
            id: spec.id.to_owned(),
            base_url: spec.base_url.to_owned(),
            version: spec.version.to_owned(),
            weight: spec.weight.max(1),
            api: spec.api,
            model: spec.model.to_owned(),
            chat,
            chat_stream,
            completions,
            embeddings,
            health,
            headers,
            state: state.unwrap_or_else(|| Arc::new(BackendState::new(spec.endpoint_id, spec.id))),
        }
    }

    /// The URL of an operation, if this protocol offers it.
    pub fn url(&self, operation: Operation, stream: bool) -> Option<&Uri> {
        match operation {
            Operation::Chat if stream && self.chat_stream.is_some() => self.chat_stream.as_ref(),
            Operation::Chat => self.chat.as_ref(),
            Operation::Completions => self.completions.as_ref(),
            Operation::Embeddings => self.embeddings.as_ref(),
        }
    }

    /// The URL the active health check reads, if any.
    pub fn health_url(&self) -> Option<&Uri> {
        self.health.as_ref()
    }
}

/// The base URL without the version path a protocol's paths add themselves.
fn root_of(api: UpstreamApi, base: &str) -> &str {
    let suffix = match api {
        UpstreamApi::Anthropic => "/v1",
        UpstreamApi::Google => "/v1beta",
        UpstreamApi::Azure => "/openai",
        UpstreamApi::OpenAi | UpstreamApi::Replicate => return base,
    };
    base.strip_suffix(suffix).unwrap_or(base)
}

/// Live figures of one backend, kept across snapshot reloads.
#[derive(Debug)]
pub struct BackendState {
    in_flight: AtomicU32,
    /// Exponentially weighted moving average of the time to the response
    /// head, in microseconds (0 = no sample yet).
    ewma_micros: AtomicU64,
    pub breaker: Breaker,
    healthy: AtomicBool,
    health_failures: AtomicU32,
    attempts: metrics::Counter,
    failures: metrics::Counter,
    breaker_gauge: metrics::Gauge,
}

impl BackendState {
    fn new(endpoint_id: &str, backend_id: &str) -> Self {
        let labels = [
            ("endpoint", endpoint_id.to_owned()),
            ("backend", backend_id.to_owned()),
        ];
        Self {
            in_flight: AtomicU32::new(0),
            ewma_micros: AtomicU64::new(0),
            breaker: Breaker::default(),
            healthy: AtomicBool::new(true),
            health_failures: AtomicU32::new(0),
            attempts: metrics::counter!("switchyard_backend_attempts_total", &labels),
            failures: metrics::counter!("switchyard_backend_failures_total", &labels),
            breaker_gauge: metrics::gauge!("switchyard_backend_breaker_state", &labels),
        }
    }

    /// Requests currently sent to this backend and not finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Latency EWMA in microseconds (0 before the first sample).
    pub fn ewma_micros(&self) -> u64 {
        self.ewma_micros.load(Ordering::Relaxed)
    }

    /// Counts an attempt and returns a guard that keeps it in flight.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.attempts.increment(1);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Feeds a latency sample into the EWMA (weight 0.3 for the new sample).
    pub fn observe_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .ewma_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    (old * 7 + sample * 3) / 10
                })
            });
    }

    /// Asks the breaker to let a call through (reporting a half-open change).
    pub fn acquire(&self, now_ms: u64, settings: &BreakerSettings) -> Permit {
        let (permit, change) = self.breaker.acquire(now_ms, settings);
        if let Some(change) = change {
            self.report(change);
        }
        permit
    }

    /// Records a successful call for the breaker.
    pub fn succeeded(&self) {
        if let Some(change) = self.breaker.on_success() {
            self.report(change);
        }
    }

    /// Hands back a half-open probe claimed at `claimed_at_ms` that was
    /// never sent, so the next request may probe at once.
    pub fn release_probe(&self, claimed_at_ms: u64) {
        self.breaker.release_probe(claimed_at_ms);
    }

    /// Records a failed call for the breaker.
    pub fn failed(&self, now_ms: u64, settings: &BreakerSettings) {
        self.failures.increment(1);
        if let Some(change) = self.breaker.on_failure(now_ms, settings) {
            self.report(change);
        }
    }

    fn report(&self, change: Transition) {
        self.breaker_gauge.set(f64::from(change.to as u8));
        metrics::counter!("switchyard_breaker_transitions_total", "to" => change.to.as_str())
            .increment(1);
        tracing::warn!(
            from = change.from.as_str(),
            to = change.to.as_str(),
            "circuit breaker changed state"
        );
    }

    /// The active health check's verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one active health check; `threshold` consecutive failures mark
    /// the backend unhealthy, one success marks it healthy again. Returns the
    /// new verdict when it changed.
    pub fn health_checked(&self, ok: bool, threshold: u32) -> Option<bool> {
        if ok {
            self.health_failures.store(0, Ordering::Relaxed);
            (!self.healthy.swap(true, Ordering::Relaxed)).then_some(true)
        } else {
            let failures = self.health_failures.fetch_add(1, Ordering::Relaxed) + 1;
            (failures >= threshold && self.healthy.swap(false, Ordering::Relaxed)).then_some(false)
        }
    }
}

/// Keeps one attempt counted in a backend's in-flight figure until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl InFlight {
    /// The backend broke off a response it had started (a stream cut
    /// mid-way): a failure for its breaker, though the request cannot be retried.
    pub fn broke_off(&self, settings: &BreakerSettings) {
        let now = u64::try_from(crate::domain::now_ms()).unwrap_or(0);
        self.0.failed(now, settings);
    }

    /// The backend finished a stream cleanly: a success for its breaker.
    pub fn completed(&self) {
        self.0.succeeded();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// A state change of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// Whether a breaker lets a call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: call normally.
    Allowed,
    /// The one half-open probe after the open period.
    Probe,
    /// Open (or another probe is running): skip this backend.
    Denied,
}

/// A lock-free circuit breaker: closed → open after `failure_threshold`
/// consecutive failures; open → one half-open probe once `open_for` passed;
/// the probe's success closes it, its failure opens it again. A probe that
/// never reports (its request was dropped) is replaced after another
/// `open_for`.
#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    /// When the breaker opened or the current probe started (ms since epoch).
    since_ms: AtomicU64,
}

impl Breaker {
    /// The state as of `now_ms` (an open breaker past its period reads half-open).
    pub fn state(&self, now_ms: u64, settings: &BreakerSettings) -> BreakerState {
        let state = BreakerState::from_u8(self.state.load(Ordering::Acquire));
        if state == BreakerState::Open && self.period_over(now_ms, settings) {
            BreakerState::HalfOpen
        } else {
            state
        }
    }

    fn period_over(&self, now_ms: u64, settings: &BreakerSettings) -> bool {
        let open_ms = u64::try_from(settings.open_for.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(self.since_ms.load(Ordering::Acquire)) >= open_ms
    }

    /// Whether a call may go through without claiming anything.
    pub fn would_allow(&self, now_ms: u64, settings: &BreakerSettings) -> bool {
        match BreakerState::from_u8(self.state.load(Ordering::Acquire)) {
            BreakerState::Closed => true,
            BreakerState::Open | BreakerState::HalfOpen => self.period_over(now_ms, settings),
        }
    }

    /// Lets a call through, claiming the half-open probe when it is due.
    pub fn acquire(&self, now_ms: u64, settings: &BreakerSettings) -> (Permit, Option<Transition>) {
        let current = self.state.load(Ordering::Acquire);
        match BreakerState::from_u8(current) {
            BreakerState::Closed => (Permit::Allowed, None),
            state if self.period_over(now_ms, settings) => {
                let claimed = self
                    .state
                    .compare_exchange(
                        current,
                        BreakerState::HalfOpen as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
                if claimed {
                    self.since_ms.store(now_ms, Ordering::Release);
                    let change = (state != BreakerState::HalfOpen).then_some(Transition {
                        from: state,
                        to: BreakerState::HalfOpen,
                    });
                    (Permit::Probe, change)
                } else {
                    (Permit::Denied, None)
                }
            }
            _ => (Permit::Denied, None),
        }
    }

    /// Returns an unused probe claimed at `claimed_at_ms`: the breaker stays
    /// half-open and the probe is due again at once. Nothing changes when the
    /// breaker moved on meanwhile (closed, reopened, or probed again).
    pub fn release_probe(&self, claimed_at_ms: u64) {
        if BreakerState::from_u8(self.state.load(Ordering::Acquire)) == BreakerState::HalfOpen {
            let _ = self.since_ms.compare_exchange(
                claimed_at_ms,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// A call succeeded: reset the count; a probe's success closes the breaker.
    pub fn on_success(&self) -> Option<Transition> {
        self.failures.store(0, Ordering::Release);
        let previous = BreakerState::from_u8(
            self.state
                .swap(BreakerState::Closed as u8, Ordering::AcqRel),
        );
        (previous != BreakerState::Closed).then_some(Transition {
            from: previous,
            to: BreakerState::Closed,
        })
    }

    /// A call failed: count it; the threshold, or a failed probe, opens the breaker.
    pub fn on_failure(&self, now_ms: u64, settings: &BreakerSettings) -> Option<Transition> {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let current = BreakerState::from_u8(self.state.load(Ordering::Acquire));
        let opens = match current {
            BreakerState::Closed => failures >= settings.failure_threshold.max(1),
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        };
        if !opens {
            return None;
        }
        self.since_ms.store(now_ms, Ordering::Release);
        let previous =
            BreakerState::from_u8(self.state.swap(BreakerState::Open as u8, Ordering::AcqRel));
        (previous != BreakerState::Open).then_some(Transition {
            from: previous,
            to: BreakerState::Open,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_millis(1_000),
        }
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let breaker = Breaker::default();
        let settings = settings();
        assert_eq!(breaker.on_failure(0, &settings), None);
        breaker.on_success();
        assert_eq!(breaker.on_failure(10, &settings), None);
        assert_eq!(breaker.on_failure(20, &settings), None);
        let opened = breaker.on_failure(30, &settings);
        assert_eq!(opened.map(|change| change.to), Some(BreakerState::Open));
        assert_eq!(breaker.acquire(500, &settings).0, Permit::Denied);
        assert!(!breaker.would_allow(500, &settings));
        assert_eq!(breaker.state(1_100, &settings), BreakerState::HalfOpen);
        let (permit, change) = breaker.acquire(1_100, &settings);
        assert_eq!(permit, Permit::Probe);
        assert_eq!(change.map(|change| change.to), Some(BreakerState::HalfOpen));
        // A second caller while the probe runs is refused.
        assert_eq!(breaker.acquire(1_200, &settings).0, Permit::Denied);
        // The probe fails: open again for a full period.
        assert_eq!(
            breaker.on_failure(1_300, &settings).map(|change| change.to),
            Some(BreakerState::Open)
        );
        assert_eq!(breaker.acquire(2_000, &settings).0, Permit::Denied);
        assert_eq!(breaker.acquire(2_400, &settings).0, Permit::Probe);
        assert_eq!(
            breaker.on_success().map(|change| change.to),
            Some(BreakerState::Closed)
        );
        assert_eq!(breaker.acquire(2_500, &settings).0, Permit::Allowed);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_another_period() {
        let breaker = Breaker::default();
        let settings = settings();
        for at in 0..3 {
            breaker.on_failure(at, &settings);
        }
        assert_eq!(breaker.acquire(1_100, &settings).0, Permit::Probe);
        assert_eq!(breaker.acquire(1_500, &settings).0, Permit::Denied);
        assert_eq!(breaker.acquire(2_100, &settings).0, Permit::Probe);
    }

    #[test]
    fn a_probe_that_was_never_sent_is_handed_back_without_closing_the_breaker() {
        let breaker = Breaker::default();
        let settings = settings();
        for at in 0..3 {
            breaker.on_failure(at, &settings);
        }
        assert_eq!(breaker.acquire(1_100, &settings).0, Permit::Probe);
        assert_eq!(breaker.acquire(1_200, &settings).0, Permit::Denied);
        breaker.release_probe(1_100);
        // Still not closed: the backend has not proven anything.
        assert_eq!(breaker.state(1_200, &settings), BreakerState::HalfOpen);
        // The next request may probe at once instead of a full period later.
        assert_eq!(breaker.acquire(1_200, &settings).0, Permit::Probe);
        // A stale release (another probe was claimed since) changes nothing.
        breaker.release_probe(1_100);
        assert_eq!(breaker.acquire(1_300, &settings).0, Permit::Denied);
        // After a failed probe the breaker is open; a release does not reopen the gate.
        breaker.on_failure(1_400, &settings);
        breaker.release_probe(1_200);
        assert_eq!(breaker.acquire(1_500, &settings).0, Permit::Denied);
    }

    fn spec<'a>(
        api: UpstreamApi,
        base: &'a str,
        headers: &'a [(String, String)],
    ) -> BackendSpec<'a> {
        BackendSpec {
            id: "b1",
            endpoint_id: "e1",
            version: "1.0",
            weight: 0,
            api,
            base_url: base,
            model: "m-1",
            api_version: None,
            api_key: Some("secret"),
            headers,
        }
    }

    #[test]
    fn urls_and_credentials_follow_each_protocol() {
        let none: &[(String, String)] = &[];
        let openai = BackendRuntime::build(&spec(UpstreamApi::OpenAi, "http://h/v1/", none), None);
        assert_eq!(
            openai.url(Operation::Chat, true).unwrap(),
            "http://h/v1/chat/completions"
        );
        assert_eq!(openai.headers[0].1, "Bearer secret");
        assert!(openai.headers[0].1.is_sensitive());
        assert_eq!(openai.weight, 1);

        let azure = BackendRuntime::build(
            &spec(
                UpstreamApi::Azure,
                "https://r.openai.azure.com/openai",
                none,
            ),
            None,
        );
        assert_eq!(
            azure.url(Operation::Embeddings, false).unwrap(),
            "https://r.openai.azure.com/openai/deployments/m-1/embeddings?api-version=2024-10-21"
        );
        assert_eq!(azure.headers[0].0, "api-key");
        assert!(azure.health_url().is_none());

        let custom = [
            ("anthropic-version".to_owned(), "2024-01-01".to_owned()),
            ("X-Team".to_owned(), "t".to_owned()),
        ];
        let anthropic = BackendRuntime::build(
            &spec(
                UpstreamApi::Anthropic,
                "https://api.anthropic.com/v1",
                &custom,
            ),
            None,
        );
        assert_eq!(
            anthropic.url(Operation::Chat, false).unwrap(),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(anthropic.url(Operation::Embeddings, false).is_none());
        let names: Vec<&str> = anthropic
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["x-api-key", "anthropic-version", "x-team"]);
        assert_eq!(anthropic.headers[1].1, "2024-01-01");

        let google =
            BackendRuntime::build(&spec(UpstreamApi::Google, "https://g/v1beta", none), None);
        assert_eq!(
            google.url(Operation::Chat, false).unwrap(),
            "https://g/v1beta/models/m-1:generateContent"
        );
        assert_eq!(
            google.url(Operation::Chat, true).unwrap(),
            "https://g/v1beta/models/m-1:streamGenerateContent?alt=sse"
        );
        assert_eq!(google.headers[0].0, "x-goog-api-key");
    }

    #[test]
    fn gemini_model_names_may_carry_their_models_prefix() {
        let none: &[(String, String)] = &[];
        let mut prefixed = spec(UpstreamApi::Google, "https://g", none);
        prefixed.model = "models/m-1";
        let backend = BackendRuntime::build(&prefixed, None);
        assert_eq!(
            backend.url(Operation::Chat, false).unwrap(),
            "https://g/v1beta/models/m-1:generateContent"
        );
    }

    #[test]
    fn latency_ewma_and_health_verdicts() {
        let state = BackendState::new("e", "b");
        state.observe_latency(Duration::from_millis(10));
        assert_eq!(state.ewma_micros(), 10_000);
        state.observe_latency(Duration::from_millis(20));
        assert_eq!(state.ewma_micros(), 13_000);
        let guard = Arc::new(BackendState::new("e", "b2"));
        let first = guard.begin();
        let second = guard.begin();
        assert_eq!(guard.in_flight(), 2);
        drop((first, second));
        assert_eq!(guard.in_flight(), 0);
        assert_eq!(state.health_checked(false, 2), None);
        assert_eq!(state.health_checked(false, 2), Some(false));
        assert!(!state.is_healthy());
        assert_eq!(state.health_checked(false, 2), None);
        assert_eq!(state.health_checked(true, 2), Some(true));
        assert!(state.is_healthy());
    }
}

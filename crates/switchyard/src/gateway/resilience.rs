//! Retry rules and the active backend health checker.
//!
//! Retries. An attempt that fails with a connection error, a timeout, or
//! status 408, 429, 500, 502, 503 or 504 is retried (never 400, 401, 403 or
//! any other 4xx: the same request would fail the same way). A retry goes to
//! another backend when one is left (at once), otherwise to the same backend
//! after a backoff: `backoff_base × 2^n` with full jitter, at least the
//! upstream's `Retry-After` (in seconds, capped at 60; an HTTP date is
//! ignored). No retry starts once `budget` has passed since the
//! request arrived, or when its backoff would end after it. The endpoint's
//! own backends get at most `max_attempts` attempts; fallback endpoints then
//! get one attempt per backend on top (see `forward`). A stream is retried
//! only before its first byte reached the client: once the head of a
//! successful stream is relayed, a failure ends the stream.
//!
//! Breakers count connection errors, timeouts, 5xx answers and streams cut
//! mid-way (a relayed stream counts as a success only once it ends cleanly);
//! a 429 is the upstream's back-pressure, retried but not held against the
//! backend.
//!
//! Health checks. Every `health_interval`, each backend with a health URL
//! (see `backend`) of a serving endpoint is read with its credentials and a
//! 5-second timeout. Endpoints deployed on a serverless provider with
//! `min_workers` 0 are skipped: a check would wake them and keep a GPU
//! billed; their breakers still guard them. A 2xx answer (or 401/403/404/405: the server is up but the path is guarded
//! or absent) is healthy. `health_failures` consecutive failures take a
//! backend out of the candidates until a check succeeds again.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::backend::BreakerSettings;
use crate::domain::EndpointStatus;
use crate::registry::Registry;

/// Retry and breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct Resilience {
    pub max_attempts: u32,
    pub budget: Duration,
    pub backoff_base: Duration,
    pub breaker: BreakerSettings,
    pub health_interval: Option<Duration>,
    pub health_failures: u32,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            budget: Duration::from_secs(30),
            backoff_base: Duration::from_millis(100),
            breaker: BreakerSettings::default(),
            health_interval: Some(Duration::from_secs(10)),
            health_failures: 2,
        }
    }
}

/// The longest `Retry-After` the gateway waits for before a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether an upstream status is worth another attempt.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether an upstream status counts against the backend's breaker.
pub fn breaker_failure(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
}

/// The `Retry-After` of an upstream answer, in whole seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

impl Resilience {
    /// The wait before retry number `retry` (1-based) of the same backend:
    /// full jitter over `backoff_base × 2^(retry-1)` (capped at 10 s), and at
    /// least the upstream's `Retry-After`.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(Duration::from_secs(10));
        let ceiling_micros = u64::try_from(ceiling.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let jittered = Duration::from_micros(rand::random::<u64>() % ceiling_micros);
        jittered.max(retry_after.unwrap_or_default())
    }
}

/// Runs the active health checks until `stop` is cancelled.
pub async fn run_health_checks(
    registry: Arc<Registry>,
    client: super::upstream::UpstreamClient,
    settings: Resilience,
    stop: tokio_util::sync::CancellationToken,
) {
    let Some(interval) = settings.health_interval else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let endpoints = registry.endpoints();
        let checks = endpoints.iter().filter(|runtime| {
            let endpoint = &runtime.endpoint;
            is_checked(endpoint.status, endpoint.min_workers, &endpoint.provider)
        }).flat_map(|endpoint| {
            endpoint.backends.iter().map(move |backend| (endpoint.endpoint.id.as_str(), backend))
        }).filter_map(|(endpoint_id, backend)| {
            let url = backend.health_url()?.clone();
            let client = client.clone();
            Some(async move {
                let ok = match client.get_with_headers(url, &backend.headers, Duration::from_secs(5)).await {
                    Ok(response) => {
                        let status = response.status();
                        status.is_success()
                            || matches!(status.as_u16(), 401 | 403 | 404 | 405)
                    }
                    Err(_) => false,
                };
                if let Some(healthy) = backend.state.health_checked(ok, settings.health_failures) {
                    metrics::counter!("switchyard_backend_health_changes_total", "healthy" => if healthy { "true" } else { "false" }).increment(1);
                    if healthy {
                        tracing::info!(%endpoint_id, backend_id = %backend.id, "backend is healthy again");
                    } else {
                        tracing::warn!(%endpoint_id, backend_id = %backend.id, "backend failed its health checks; taken out");
                    }
                }
            })
        });
        futures_util::future::join_all(checks).await;
    }
}

/// Whether an endpoint's backends get active health checks: not when a
/// request would wake a scaled-to-zero serverless deployment (a check every
/// few seconds would keep a GPU billed), and not while the endpoint is not
/// serving.
pub fn is_checked(status: EndpointStatus, min_workers: i64, provider: &str) -> bool {
    let serving = matches!(status, EndpointStatus::Active | EndpointStatus::Idle);
    let wakes_on_request = min_workers == 0
        && matches!(
            provider,
            "runpod" | "huggingface" | "replicate" | "together" | "modal"
        );
    serving && !wakes_on_request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checks_leave_scaled_to_zero_serverless_endpoints_asleep() {
        assert!(is_checked(EndpointStatus::Active, 0, "external"));
        assert!(is_checked(EndpointStatus::Idle, 0, "anthropic"));
        assert!(is_checked(EndpointStatus::Active, 0, "self-hosted"));
        assert!(is_checked(EndpointStatus::Active, 1, "runpod"));
        for provider in ["runpod", "huggingface", "replicate", "together", "modal"] {
            assert!(
                !is_checked(EndpointStatus::Active, 0, provider),
                "{provider}"
            );
        }
        assert!(!is_checked(EndpointStatus::Stopped, 1, "external"));
        assert!(!is_checked(EndpointStatus::Provisioning, 1, "external"));
    }

    #[test]
    fn retries_only_what_can_succeed_next_time() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 413, 422, 501] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        assert!(!breaker_failure(StatusCode::TOO_MANY_REQUESTS));
        assert!(breaker_failure(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn backoff_is_jittered_bounded_and_honours_retry_after() {
        let settings = Resilience::default();
        for retry in 1..6 {
            let ceiling = Duration::from_millis(100 * (1 << (retry - 1)));
            for _ in 0..50 {
                assert!(settings.backoff(retry, None) < ceiling);
            }
        }
        assert!(settings.backoff(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(http::header::RETRY_AFTER, "9999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}

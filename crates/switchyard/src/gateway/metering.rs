//! Turns what an upstream reported into a usage record and a charge.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::domain::{new_id, now_ms, UsageRecord, UsageSource};
use crate::recorder::UsageSink;
use crate::registry::Route;

/// Token counts as OpenAI-compatible servers report them.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct TokenUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<TokenUsage>,
}

/// Reads the `usage` object of a JSON response or stream chunk, if there is one.
pub fn extract_usage(json: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<WithUsage>(json)
        .ok()
        .and_then(|parsed| parsed.usage)
}

/// How a metered request ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status_code: u16,
    pub usage: Option<TokenUsage>,
    /// Output tokens counted by the gateway, used only when `usage` is `None`.
    pub estimated_output_tokens: u64,
    pub error_code: Option<String>,
    pub first_byte: Option<Instant>,
    /// When the upstream finished (or the stream was cut).
    pub upstream_finished: Instant,
    /// Compute time the upstream measured itself (Replicate's
    /// `metrics.predict_time`); `None` bills the time from the upstream call's
    /// start to `upstream_finished`.
    pub compute: Option<Duration>,
}

/// Everything needed to record one request once it ends. A meter dropped
/// before [`Meter::finish`] (the handler was cancelled because the client went
/// away, or the server stopped) still records the request as cut short.
#[derive(Debug)]
pub struct Meter {
    route: Route,
    sink: UsageSink,
    request_id: String,
    method: &'static str,
    streamed: bool,
    started: Instant,
    pub upstream_started: Instant,
    estimated_input_tokens: u64,
    recorded: bool,
    /// The backend of the latest attempt: (id, version).
    served_by: Option<(String, String)>,
    /// The tariff of a fallback endpoint that answered instead.
    tariff: Option<crate::money::Tariff>,
    attempts: u32,
}

impl Meter {
    /// Starts metering a request that is about to be sent upstream.
    pub fn start(
        route: Route,
        sink: UsageSink,
        request_id: String,
        method: &'static str,
        streamed: bool,
        started: Instant,
        estimated_input_tokens: u64,
    ) -> Self {
        sink.begin();
        Self {
            route,
            sink,
            request_id,
            method,
            streamed,
            started,
            upstream_started: Instant::now(),
            estimated_input_tokens,
            recorded: false,
            served_by: None,
            tariff: None,
            attempts: 0,
        }
    }

    /// Notes an attempt at a backend: the usage record names the last one,
    /// charges it at its endpoint's tariff, and bills compute from its start.
    pub fn attempt(
        &mut self,
        backend_id: &str,
        version: &str,
        tariff: Option<crate::money::Tariff>,
    ) {
        self.attempts += 1;
        self.upstream_started = Instant::now();
        self.served_by = Some((backend_id.to_owned(), version.to_owned()));
        self.tariff = tariff;
    }

    /// Records the request and debits its cost; returns the cost in micro-dollars.
    pub fn finish(mut self, outcome: Outcome) -> i64 {
        self.record(outcome)
    }

    fn record(&mut self, outcome: Outcome) -> i64 {
        if self.recorded {
            return 0;
        }
        self.recorded = true;
        let (input_tokens, output_tokens, usage_source) = match outcome.usage {
            Some(usage) => (
                usage.prompt_tokens,
                usage.completion_tokens,
                UsageSource::Upstream,
            ),
            None => (
                self.estimated_input_tokens,
                outcome.estimated_output_tokens,
                UsageSource::Estimated,
            ),
        };
        let success = outcome.error_code.is_none() && (200..300).contains(&outcome.status_code);
        let compute_ms = millis(outcome.compute.unwrap_or_else(|| {
            outcome
                .upstream_finished
                .saturating_duration_since(self.upstream_started)
        }));
        // Failed requests that produced nothing are not charged.
        let produced = success || output_tokens > 0;
        let cost = if produced {
            self.tariff
                .as_ref()
                .unwrap_or(&self.route.endpoint.tariff)
                .charge_micros(compute_ms, input_tokens, output_tokens)
        } else {
            0
        };
        if cost > 0 {
            self.route.account.add(-cost);
        }
        let latency_ms = millis(self.started.elapsed());
        let endpoint_metrics = &self.route.endpoint.metrics;
        endpoint_metrics.count(outcome.status_code);
        endpoint_metrics
            .duration
            .record(self.started.elapsed().as_secs_f64());
        endpoint_metrics.upstream_duration.record(
            outcome
                .upstream_finished
                .saturating_duration_since(self.upstream_started)
                .as_secs_f64(),
        );
        let endpoint_id = self.route.endpoint.endpoint.id.clone();
        self.sink.finish(UsageRecord {
            id: new_id(),
            request_id: std::mem::take(&mut self.request_id),
            api_key_id: self.route.key.key.id.clone(),
            endpoint_id,
            user_id: self.route.account.user_id.clone(),
            method: self.method.to_owned(),
            status_code: outcome.status_code,
            input_tokens,
            output_tokens,
            usage_source,
            latency_ms,
            ttft_ms: outcome
                .first_byte
                .map(|at| millis(at.saturating_duration_since(self.started))),
            compute_ms,
            cost_micro_usd: cost,
            success,
            error_code: outcome.error_code,
            streamed: self.streamed,
            backend_id: self.served_by.as_ref().map(|(id, _)| id.clone()),
            backend_version: self.served_by.take().map(|(_, version)| version),
            attempts: self.attempts.max(1),
            created_at: now_ms(),
        });
        cost
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(Outcome {
                status_code: 499,
                usage: None,
                estimated_output_tokens: 0,
                error_code: Some("client_disconnected".to_owned()),
                first_byte: None,
                upstream_finished: Instant::now(),
                compute: None,
            });
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Estimates tokens from bytes (about four bytes per token) when an upstream reports none.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_usage_from_responses_and_chunks() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":33,"completion_tokens":8,"total_tokens":41}}"#;
        assert_eq!(
            extract_usage(body),
            Some(TokenUsage {
                prompt_tokens: 33,
                completion_tokens: 8
            })
        );
        assert_eq!(extract_usage(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(extract_usage(b"not json"), None);
        assert_eq!(estimate_tokens(9), 3);
    }
}

//! The JSON-over-HTTPS client every provider management API shares: bearer
//! auth, bounded time, bounded retries on 429 (honouring `Retry-After`), 5xx
//! and connection errors, and errors mapped to [`ProviderError`].

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::{ProviderError, ProviderKind};

/// Attempts per call (the first plus retries).
const MAX_ATTEMPTS: u32 = 3;
/// Longest wait between two attempts, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// Largest error text kept in a message.
const MAX_MESSAGE: usize = 500;

/// The shared HTTP client for management calls (TLS with webpki roots).
pub fn management_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// One provider's API: a base URL and an `Authorization` value.
#[derive(Clone)]
pub struct ProviderApi {
    pub provider: ProviderKind,
    pub client: reqwest::Client,
    pub base_url: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for ProviderApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderApi")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A successful answer: status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Value,
}

impl ProviderApi {
    /// An API with `Authorization: Bearer <token>`.
    pub fn bearer(
        provider: ProviderKind,
        client: reqwest::Client,
        base_url: &str,
        token: &str,
    ) -> Self {
        Self {
            provider,
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: Some(format!("Bearer {token}")),
        }
    }

    /// Sends a request with an optional JSON body and returns the JSON answer.
    ///
    /// 429 is retried for every method (the provider did not act on it);
    /// 5xx and connection failures only for idempotent methods, so a create
    /// is never sent twice by this layer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ProviderError> {
        self.send_with(method, path, body, &[]).await
    }

    /// Like [`ProviderApi::send`], with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<ApiResponse, ProviderError> {
        let url = format!("{}{path}", self.base_url);
        let idempotent = method != Method::POST && method != Method::PATCH;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.request(method.clone(), &url);
            if let Some(authorization) = &self.authorization {
                request = request.header(http::header::AUTHORIZATION, authorization);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = request.send().await;
            let response = match outcome {
                Ok(response) => response,
                Err(error) => {
                    let retry = (idempotent || error.is_connect()) && attempt < MAX_ATTEMPTS;
                    tracing::warn!(provider = %self.provider, %method, path, attempt, error = %error, retry, "provider call failed");
                    if retry {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(ProviderError::Transport {
                        provider: self.provider,
                        message: format!("{method} {path}: {}", describe(&error)),
                    });
                }
            };
            let status = response.status();
            let response_headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|error| ProviderError::BadResponse {
                        provider: self.provider,
                        message: format!("{method} {path}: body is not JSON: {error}"),
                    })?
                };
                return Ok(ApiResponse { status, body });
            }
            let error = error_from_status(self.provider, status, &response_headers, &text);
            let retry = attempt < MAX_ATTEMPTS
                && match &error {
                    ProviderError::RateLimited { .. } => true,
                    ProviderError::Server { .. } => idempotent,
                    _ => false,
                };
            tracing::warn!(provider = %self.provider, %method, path, attempt, status = status.as_u16(), retry, "provider answered an error");
            if !retry {
                return Err(error);
            }
            let wait = match &error {
                ProviderError::RateLimited {
                    retry_after: Some(wait),
                    ..
                } => (*wait).min(MAX_RETRY_WAIT),
                _ => backoff(attempt),
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff with jitter: ~0.5 s, ~1 s, ...
fn backoff(attempt: u32) -> Duration {
    let base = 250_u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Maps an error status to a [`ProviderError`] with the provider's message.
pub fn error_from_status(
    provider: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> ProviderError {
    let message = error_message(body);
    let code = status.as_u16();
    match code {
        401 | 403 => ProviderError::Unauthorized {
            provider,
            status: code,
            message,
        },
        404 => ProviderError::NotFound {
            provider,
            what: message,
        },
        429 => ProviderError::RateLimited {
            provider,
            retry_after: retry_after(headers),
            message,
        },
        500..=599 => ProviderError::Server {
            provider,
            status: code,
            message,
        },
        _ => ProviderError::Rejected {
            provider,
            status: code,
            message,
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these APIs).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The human message of an error body: RFC 9457 `detail` (+ `errors`),
/// OpenAI-style `error.message`, `message`, or the text itself.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|value| {
            let detail = value.get("detail").and_then(Value::as_str);
            let errors = value.get("errors").and_then(Value::as_array).map(|errors| {
                errors
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            match (detail, errors) {
                (Some(detail), Some(errors)) if !errors.is_empty() => {
                    Some(format!("{detail} ({errors})"))
                }
                (Some(detail), _) => Some(detail.to_owned()),
                _ => None,
            }
            .or_else(|| {
                value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| {
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| {
                value
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| {
                value
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| body.trim().to_owned());
    let mut text = if text.is_empty() || text == "{}" {
        "no details given".to_owned()
    } else {
        text
    };
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_each_error_shape() {
        assert_eq!(
            error_message(
                r#"{"title":"Bad Request","status":400,"detail":"bad gpu","errors":["$: additional properties 'x' not allowed"]}"#
            ),
            "bad gpu ($: additional properties 'x' not allowed)"
        );
        assert_eq!(
            error_message(r#"{"error":{"message":"nope","type":"x"}}"#),
            "nope"
        );
        assert_eq!(
            error_message(r#"{"detail":"Request was throttled."}"#),
            "Request was throttled."
        );
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(""), "no details given");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let error = error_from_status(
            ProviderKind::RunPod,
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            "{}",
        );
        assert_eq!(
            error,
            ProviderError::RateLimited {
                provider: ProviderKind::RunPod,
                retry_after: Some(Duration::from_secs(7)),
                message: "no details given".to_owned()
            }
        );
        assert!(error.is_transient());
        let error = error_from_status(
            ProviderKind::Together,
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            "",
        );
        assert_eq!(error.code(), "provider_unauthorized");
        assert!(!error.is_transient());
    }
}

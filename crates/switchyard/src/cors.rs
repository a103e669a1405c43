//! Cross-origin access to the JSON API (`/api/v1/*`) and the gateway (`/v1/*`)
//! for the pages listed in `--cors-allowed-origins`, such as a page that embeds
//! the Connect widget.
//!
//! The headers are composed by tower-http's `CorsLayer`, behind a gate: only a
//! request whose `Origin` is one of the listed origins goes through it. Every
//! other request (no `Origin`, as from servers and SDKs, or an unknown one)
//! reaches the route untouched and gets no CORS header at all, so the gateway's
//! hot path pays one header lookup and nothing else. Credentials are never
//! allowed: cross-origin callers send a bearer token, never the session cookie.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer, ResponseFuture};

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Why an entry of `cors_allowed_origins` is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    #[error(
        "cors_allowed_origins: \"*\" is not allowed: the API is called with management tokens, \
         so list each page origin that may call it (for example https://app.example.com)"
    )]
    Wildcard,
    #[error("cors_allowed_origins: {0:?} is not an origin: write scheme://host[:port], for example https://app.example.com")]
    Malformed(String),
    #[error("cors_allowed_origins: {0:?} must use http or https")]
    Scheme(String),
    #[error("cors_allowed_origins: {0:?} has a path, query or user info; an origin is only scheme://host[:port]")]
    NotBare(String),
}

/// Checks one configured origin and returns it as browsers send it in `Origin`
/// (lowercase host, no default port).
pub fn parse_origin(text: &str) -> Result<String, OriginError> {
    let text = text.trim();
    if text == "*" {
        return Err(OriginError::Wildcard);
    }
    let url = url::Url::parse(text).map_err(|_| OriginError::Malformed(text.to_owned()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(OriginError::Scheme(text.to_owned()));
    }
    if url.host().is_none() {
        return Err(OriginError::Malformed(text.to_owned()));
    }
    // `Url` turns an empty path into "/", so a trailing "/" in the text is a path too.
    let has_path = url.path() != "/" || text.ends_with('/');
    if has_path
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(OriginError::NotBare(text.to_owned()));
    }
    Ok(url.origin().ascii_serialization())
}

/// The gate and the CORS layer for a list of validated origins; `None` when
/// the list is empty (no layer at all).
pub fn layer(origins: &[String]) -> Option<CorsGate> {
    let values: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(values.clone()))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-ratelimit-remaining"),
            header::RETRY_AFTER,
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    Some(CorsGate {
        origins: values.into(),
        cors,
    })
}

/// A layer that sends requests from a listed origin to `/api/v1/*` or `/v1/*`
/// through tower-http's `Cors`, and every other request straight to the route.
#[derive(Clone)]
pub struct CorsGate {
    origins: Arc<[HeaderValue]>,
    cors: CorsLayer,
}

impl<S: Clone> Layer<S> for CorsGate {
    type Service = GatedCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GatedCors {
            origins: self.origins.clone(),
            cors: self.cors.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// The service of [`CorsGate`].
#[derive(Clone)]
pub struct GatedCors<S> {
    origins: Arc<[HeaderValue]>,
    cors: Cors<S>,
    plain: S,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for GatedCors<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    ResponseBody: Default,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Either<S::Future, ResponseFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either service may take the next request, so both must be ready.
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.cors.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let listed = request
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| self.origins.iter().any(|allowed| allowed == origin));
        if listed && cross_origin_path(request.uri().path()) {
            Either::Right(self.cors.call(request))
        } else {
            Either::Left(self.plain.call(request))
        }
    }
}

/// The routes browsers on a listed origin may call: the JSON API and the gateway.
fn cross_origin_path(path: &str) -> bool {
    path.starts_with("/api/v1/") || path.starts_with("/v1/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_bare_and_normalised() {
        assert_eq!(
            parse_origin("https://App.Example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:5173").unwrap(),
            "http://127.0.0.1:5173"
        );
        assert_eq!(
            parse_origin("https://example.com:443").unwrap(),
            "https://example.com"
        );
        assert_eq!(parse_origin("*"), Err(OriginError::Wildcard));
        for bad in [
            "https://example.com/",
            "https://example.com/app",
            "https://example.com?x=1",
            "https://user@example.com",
        ] {
            assert_eq!(
                parse_origin(bad),
                Err(OriginError::NotBare(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_origin("ftp://example.com"),
            Err(OriginError::Scheme(_))
        ));
        assert!(matches!(
            parse_origin("example.com"),
            Err(OriginError::Malformed(_))
        ));
        assert!(layer(&[]).is_none());
    }
}

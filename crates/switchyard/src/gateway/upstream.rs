//! The pooled HTTP client that talks to upstream inference servers.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// Why an upstream call failed before a response arrived.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("invalid upstream URL `{0}`")]
    BadUrl(String),
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// A pooled HTTP/1.1 and HTTP/2 client with TCP_NODELAY, plain or TLS.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl UpstreamClient {
    /// Builds the client.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(https);
        Self { client }
    }

    /// Sends a JSON POST and waits for the response head within `timeout`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the request's parts"
    )]
    pub async fn post_json(
        &self,
        url: Option<http::Uri>,
        authorization: Option<&HeaderValue>,
        extra_headers: &[(http::HeaderName, HeaderValue)],
        request_id: &HeaderValue,
        accept_stream: bool,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let url = url.ok_or_else(|| UpstreamError::BadUrl("the endpoint's base URL".to_owned()))?;
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(
                header::ACCEPT,
                HeaderValue::from_static(if accept_stream {
                    "text/event-stream"
                } else {
                    "application/json"
                }),
            )
            .header("x-request-id", request_id.clone());
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value.clone());
        }
        for (name, value) in extra_headers {
            builder = builder.header(name, value.clone());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| UpstreamError::BadUrl("the endpoint's base URL".to_owned()))?;
        self.send(request, timeout).await
    }

    /// Sends a GET (used to discover the upstream's models).
    pub async fn get(
        &self,
        url: &str,
        authorization: Option<&HeaderValue>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut builder = Request::builder().method(Method::GET).uri(url);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value.clone());
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|_| UpstreamError::BadUrl(url.to_owned()))?;
        self.send(request, timeout).await
    }

    /// Sends a GET with the given headers (backend health checks).
    pub async fn get_with_headers(
        &self,
        url: http::Uri,
        headers: &[(http::HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut builder = Request::builder().method(Method::GET).uri(url);
        for (name, value) in headers {
            builder = builder.header(name, value.clone());
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|_| UpstreamError::BadUrl("the health check URL".to_owned()))?;
        self.send(request, timeout).await
    }

    /// Sends a prepared request and waits for the response head within `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(error)) => Err(UpstreamError::Unreachable(describe(&error))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! `GET /connect.js`: the `<switchyard-connect>` custom element, a hand-written
//! ES module embedded in the binary. Any page may load it (it holds no secret),
//! so it is served with `Access-Control-Allow-Origin: *`; the data it shows
//! comes from `GET /api/v1/connect/endpoints`, which CORS and tokens guard.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::state::SharedState;

/// The widget's source.
pub const CONNECT_JS: &str = include_str!("../assets/connect.js");

/// The widget's route.
pub fn router() -> Router<SharedState> {
    Router::new().route("/connect.js", get(connect_js))
}

async fn connect_js(request_headers: HeaderMap) -> Response {
    let etag = etag();
    let fresh = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        CONNECT_JS.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // A new binary may change the script; pages revalidate after five minutes.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300, must-revalidate"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A strong ETag of the embedded script: the first 16 bytes of its SHA-256.
fn etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        let digest = Sha256::digest(CONNECT_JS.as_bytes());
        format!("\"{}\"", hex::encode(&digest[..16]))
    })
}

//! The one place where errors become HTTP responses, in OpenAI's error shape
//! `{"error":{"message","type","code","param"}}`.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::secrets::SecretError;
use crate::store::StoreError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    param: Option<&'a str>,
}

impl HttpError {
    /// Builds an error with a status, OpenAI `type`, machine `code` and message.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// 400 for a request that fails validation; names the offending field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            format!("{field}: {}", message.into()),
        );
        error.param = Some(field);
        error
    }

    /// 400 for a malformed body.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            message,
        )
    }

    /// 403 for a cookie-authenticated change without the session's CSRF token.
    pub fn csrf_failed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "csrf_failed",
            "missing or wrong X-CSRF-Token for this session; reload the page",
        )
    }

    /// 404 for anything the caller may not see, whether it exists or not.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401 for a missing or unknown management token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_token",
            "a valid management token is required: Authorization: Bearer <token>",
        )
    }

    /// 403 for an admin-only route called by a non-admin.
    pub fn admin_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "admin_required",
            "this route needs an admin token",
        )
    }

    /// 413 for a body over the size limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 500 without internal details; the cause is logged by the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal server error",
        )
    }

    /// Names the request field the error is about.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: self.param.as_deref(),
            },
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body_bytes()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => HttpError::not_found("resource"),
            StoreError::Conflict(message) => HttpError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "conflict",
                message,
            ),
            other => {
                tracing::error!(error = %other, "store error");
                HttpError::internal()
            }
        }
    }
}

impl From<SecretError> for HttpError {
    fn from(error: SecretError) -> Self {
        tracing::error!(%error, "secret handling failed");
        HttpError::internal()
    }
}

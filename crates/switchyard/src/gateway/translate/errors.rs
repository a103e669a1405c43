//! Upstream error bodies re-shaped for the client protocol.
//!
//! Any upstream error body is read for a message (OpenAI `error.message`,
//! Anthropic `error.message`, Google `error.message` + `error.status`, vLLM or
//! FastAPI `message`/`detail`, or the body text itself); the type comes from the
//! HTTP status so it keeps its meaning for the client's SDK.

use serde_json::{json, Value};

/// Longest plain-text upstream body quoted in an error message.
const MAX_TEXT: usize = 1000;

/// What an upstream error body says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UpstreamError {
    pub message: String,
    /// The upstream's own error code or type (`rate_limit_exceeded`,
    /// `overloaded_error`, `RESOURCE_EXHAUSTED`).
    pub code: Option<String>,
    pub param: Option<String>,
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Reads an upstream error body of any shape.
pub(super) fn read(status: u16, body: &[u8]) -> UpstreamError {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = &value["error"];
        if error.is_object() {
            // OpenAI: code, type; Anthropic: type; Google: status (code is numeric).
            let code = string(&error["code"])
                .filter(|_| !error["code"].is_number())
                .or_else(|| string(&error["status"]))
                .or_else(|| string(&error["type"]));
            return UpstreamError {
                message: string(&error["message"]).unwrap_or_else(|| fallback(status)),
                code,
                param: string(&error["param"]),
            };
        }
        if let Some(message) = string(error)
            .or_else(|| string(&value["message"]))
            .or_else(|| string(&value["detail"]))
        {
            return UpstreamError {
                message,
                code: None,
                param: None,
            };
        }
        if !value["detail"].is_null() {
            return UpstreamError {
                message: value["detail"].to_string(),
                code: None,
                param: None,
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    UpstreamError {
        message: if text.is_empty() {
            fallback(status)
        } else {
            text.chars().take(MAX_TEXT).collect()
        },
        code: None,
        param: None,
    }
}

fn fallback(status: u16) -> String {
    format!("the upstream answered HTTP {status}")
}

/// OpenAI's error type for an HTTP status.
pub(super) fn openai_type_of_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic's error type for an HTTP status.
pub(super) fn anthropic_type_of_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The OpenAI error type matching an Anthropic error type.
pub(super) fn openai_type_of_anthropic(kind: &str) -> &'static str {
    match kind {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_error",
        _ => "server_error",
    }
}

/// The Anthropic error type matching an OpenAI error type or code.
pub(super) fn anthropic_type_of_openai(kind: &str) -> &'static str {
    match kind {
        "invalid_request_error" | "unsupported_parameter" | "context_length_exceeded" => {
            "invalid_request_error"
        }
        "authentication_error" | "invalid_api_key" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => "rate_limit_error",
        "overloaded_error" => "overloaded_error",
        _ => "api_error",
    }
}

/// Re-shapes any upstream error body as an OpenAI error:
/// `{"error":{"message","type","code","param"}}`, the type from `status`.
pub fn error_to_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let error = read(status, body);
    json!({
        "error": {
            "message": error.message,
            "type": openai_type_of_status(status),
            "code": error.code,
            "param": error.param,
        }
    })
    .to_string()
    .into_bytes()
}

/// Re-shapes any upstream error body as an Anthropic error:
/// `{"type":"error","error":{"type","message"}}`, the type from `status`
/// (400 `invalid_request_error`, 401 `authentication_error`, 403
/// `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
/// `rate_limit_error`, 503/529 `overloaded_error`, other 5xx `api_error`).
pub fn error_to_anthropic(status: u16, body: &[u8]) -> Vec<u8> {
    let error = read(status, body);
    json!({
        "type": "error",
        "error": {"type": anthropic_type_of_status(status), "message": error.message},
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).expect("valid JSON")
    }

    #[test]
    fn anthropic_error_becomes_openai_error() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(
            parse(error_to_openai(529, body)),
            json!({"error": {"message": "Overloaded", "type": "server_error", "code": "overloaded_error", "param": null}})
        );
    }

    #[test]
    fn google_error_keeps_status_as_code() {
        let body =
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            parse(error_to_openai(429, body)),
            json!({"error": {"message": "Quota exceeded", "type": "rate_limit_error", "code": "RESOURCE_EXHAUSTED", "param": null}})
        );
    }

    #[test]
    fn openai_error_keeps_code_and_param() {
        let body = br#"{"error":{"message":"bad temperature","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#;
        assert_eq!(
            parse(error_to_openai(400, body)),
            json!({"error": {"message": "bad temperature", "type": "invalid_request_error", "code": "invalid_value", "param": "temperature"}})
        );
    }

    #[test]
    fn plain_text_and_empty_bodies_have_messages() {
        assert_eq!(
            parse(error_to_openai(502, b"  Bad Gateway\n")),
            json!({"error": {"message": "Bad Gateway", "type": "server_error", "code": null, "param": null}})
        );
        assert_eq!(
            parse(error_to_anthropic(500, b"")),
            json!({"type": "error", "error": {"type": "api_error", "message": "the upstream answered HTTP 500"}})
        );
    }

    #[test]
    fn vllm_and_fastapi_shapes_are_read() {
        assert_eq!(read(400, br#"{"detail":"Not Found"}"#).message, "Not Found");
        assert_eq!(
            read(400, br#"{"object":"error","message":"max_tokens too large","type":"BadRequestError","code":400}"#).message,
            "max_tokens too large"
        );
        assert_eq!(
            read(400, br#"{"error":"no such model"}"#).message,
            "no such model"
        );
        assert_eq!(
            read(
                422,
                br#"{"detail":[{"loc":["body","messages"],"msg":"field required"}]}"#
            )
            .message,
            r#"[{"loc":["body","messages"],"msg":"field required"}]"#
        );
    }

    #[test]
    fn anthropic_types_follow_status() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            let body =
                br#"{"error":{"message":"upstream said no","type":"x","code":null,"param":null}}"#;
            assert_eq!(
                parse(error_to_anthropic(status, body)),
                json!({"type": "error", "error": {"type": kind, "message": "upstream said no"}}),
                "status {status}"
            );
        }
    }
}

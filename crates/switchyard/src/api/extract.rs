//! Extractors: the authenticated caller and JSON bodies whose errors name the field.

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::User;
use crate::error::HttpError;
use crate::gateway::bearer_token;
use crate::state::SharedState;

/// Largest management request body.
const MAX_API_BODY: usize = 1024 * 1024;

/// The user a management token (or a dashboard session cookie) belongs to.
#[derive(Debug, Clone)]
pub struct Caller(pub User);

impl FromRequestParts<SharedState> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(&parts.headers) else {
            // The dashboard calls the API with its session cookie (and CSRF token).
            return crate::dashboard::session::api_user_from_cookie(state, parts)
                .await?
                .map(Caller)
                .ok_or_else(HttpError::unauthorized);
        };
        if token.is_empty() || token.len() > 256 {
            return Err(HttpError::unauthorized());
        }
        let hash = state.secrets.hash_token(token);
        let user = state
            .store
            .find_user_by_token_hash(&hash)
            .await?
            .ok_or_else(HttpError::unauthorized)?;
        Ok(Caller(user))
    }
}

/// An admin caller; checked before the body is read, so a non-admin always gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<SharedState> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(user) = Caller::from_request_parts(parts, state).await?;
        if user.is_admin {
            Ok(Admin(user))
        } else {
            Err(HttpError::admin_only())
        }
    }
}

/// Query parameters; a parameter of the wrong type is a 400 in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<SharedState> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let field = error.path().to_string();
                let field = if field == "." {
                    "query".to_owned()
                } else {
                    field
                };
                HttpError::invalid_field(field, error.into_inner().to_string())
            })
    }
}

/// A JSON body; a type error names the path of the offending field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<SharedState> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    HttpError::too_large(MAX_API_BODY)
                } else {
                    HttpError::invalid_json(rejection.body_text())
                }
            })?;
        if bytes.len() > MAX_API_BODY {
            return Err(HttpError::too_large(MAX_API_BODY));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, reporting the failing field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            HttpError::invalid_json(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            HttpError::invalid_json(format!("invalid request body: {inner}"))
        } else {
            HttpError::invalid_field(path, strip_position(&inner.to_string()))
        }
    })?;
    deserializer.end().map_err(|error| {
        HttpError::invalid_json(format!("trailing data after the JSON body: {error}"))
    })?;
    Ok(value)
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are only deserialised")]
    struct Sample {
        name: String,
        limits: Option<Limits>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[expect(dead_code, reason = "fields are only deserialised")]
    struct Limits {
        per_minute: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let error =
            parse_json::<Sample>(br#"{"name":"a","limits":{"per_minute":"x"}}"#).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("limits.per_minute"));
        assert!(error.message.contains("invalid type"), "{}", error.message);
        let error = parse_json::<Sample>(br#"{"name":"a","nme":1}"#).unwrap_err();
        assert!(
            error.message.contains("unknown field `nme`"),
            "{}",
            error.message
        );
        let error = parse_json::<Sample>(b"{").unwrap_err();
        assert_eq!(error.code, "invalid_json");
        let error = parse_json::<Sample>(br#"{}"#).unwrap_err();
        assert!(
            error.message.contains("missing field `name`"),
            "{}",
            error.message
        );
    }
}

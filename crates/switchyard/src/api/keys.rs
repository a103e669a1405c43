//! API keys of an endpoint: created (shown once), listed (prefix only), revoked.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoints::owned_endpoint;
use super::{views, ApiJson, Caller};
use crate::domain::{new_id, now_ms, parse_time, ApiKey, Endpoint, Permission};
use crate::error::HttpError;
use crate::secrets::Secrets;
use crate::state::SharedState;
use crate::tokens::{display_prefix, generate_api_key};

/// Default requests per minute of a new key.
pub const DEFAULT_PER_MINUTE: i64 = 60;
/// Default requests per day of a new key.
pub const DEFAULT_PER_DAY: i64 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    rate_limit_per_minute: Option<i64>,
    #[serde(default)]
    rate_limit_per_day: Option<i64>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<Permission>>,
    #[serde(default)]
    test: bool,
}

impl CreateKey {
    /// A key request with defaults.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            rate_limit_per_minute: None,
            rate_limit_per_day: None,
            expires_at: None,
            permissions: None,
            test: false,
        }
    }

    /// A key request with explicit rate limits (internal keys of deployments).
    pub fn with_limits(name: &str, per_minute: i64, per_day: i64) -> Self {
        Self {
            rate_limit_per_minute: Some(per_minute),
            rate_limit_per_day: Some(per_day),
            ..Self::named(name)
        }
    }
}

/// Validates a key request and builds the stored key and its one-time secret.
pub fn new_key(
    endpoint: &Endpoint,
    request: CreateKey,
    secrets: &Secrets,
) -> Result<(ApiKey, String), HttpError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(HttpError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let per_minute = request.rate_limit_per_minute.unwrap_or(DEFAULT_PER_MINUTE);
    if !(1..=1_000_000).contains(&per_minute) {
        return Err(HttpError::invalid_field(
            "rate_limit_per_minute",
            "must be between 1 and 1000000",
        ));
    }
    let per_day = request
        .rate_limit_per_day
        .unwrap_or(DEFAULT_PER_DAY.max(per_minute));
    if !(1..=1_000_000_000).contains(&per_day) {
        return Err(HttpError::invalid_field(
            "rate_limit_per_day",
            "must be between 1 and 1000000000",
        ));
    }
    let expires_at = match request.expires_at {
        None => None,
        Some(text) => {
            let at = parse_time(&text).ok_or_else(|| {
                HttpError::invalid_field(
                    "expires_at",
                    "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                )
            })?;
            if at <= now_ms() {
                return Err(HttpError::invalid_field(
                    "expires_at",
                    "must be in the future",
                ));
            }
            Some(at)
        }
    };
    let secret = generate_api_key(request.test);
    let key = ApiKey {
        id: new_id(),
        endpoint_id: endpoint.id.clone(),
        user_id: endpoint.user_id.clone(),
        name: name.to_owned(),
        prefix: display_prefix(&secret),
        key_hash: secrets.hash_token(&secret),
        permissions: request.permissions.unwrap_or_default(),
        rate_limit_per_minute: per_minute,
        rate_limit_per_day: per_day,
        is_active: true,
        is_test: request.test,
        last_used_at: None,
        expires_at,
        revoked_at: None,
        created_at: now_ms(),
    };
    Ok((key, secret))
}

/// `POST /api/v1/endpoints/{id}/keys`: the full key is in this response only.
pub async fn create_key(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let (key, secret) = new_key(&endpoint, request, &state.secrets)?;
    state.store.create_key(&key).await?;
    state.registry.reload().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "api_key": secret, "key": views::key(&key) })),
    ))
}

/// `GET /api/v1/endpoints/{id}/keys`.
pub async fn list_keys(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let keys = state.store.list_keys(&user.id, &endpoint_id).await?;
    Ok(Json(
        json!({ "data": keys.iter().map(views::key).collect::<Vec<_>>(), "total": keys.len() }),
    ))
}

/// `DELETE /api/v1/endpoints/{id}/keys/{key_id}`: revokes at once.
pub async fn revoke_key(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path((endpoint_id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let key = state
        .store
        .revoke_key(&user.id, &endpoint_id, &key_id)
        .await
        .map_err(|_| HttpError::not_found("key"))?;
    state.registry.reload().await?;
    Ok(Json(json!({ "key": views::key(&key), "revoked": true })))
}

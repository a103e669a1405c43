//! Outbound webhook subscriptions: `POST/GET /api/v1/webhooks`,
//! `DELETE /api/v1/webhooks/{id}`. The signing secret is shown once.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use rand::distributions::{Alphanumeric, DistString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, Caller};
use crate::domain::{format_time, new_id, now_ms};
use crate::error::HttpError;
use crate::events::EventKind;
use crate::state::SharedState;
use crate::store::Webhook;

/// Most subscriptions one user may have.
const MAX_WEBHOOKS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    #[serde(default)]
    events: Option<Vec<EventKind>>,
}

fn view(hook: &Webhook) -> Value {
    json!({
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "created_at": format_time(hook.created_at),
    })
}

/// Whether a host names this machine or a private network (SSRF guard).
fn is_private_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00
        }
        Err(_) => false,
    }
}

/// `POST /api/v1/webhooks`: `{"url","events"?}` → 201 with the secret, once.
pub async fn create_webhook(
    State(state): State<SharedState>,
    Caller(user): Caller,
    ApiJson(request): ApiJson<CreateWebhook>,
) -> Result<impl IntoResponse, HttpError> {
    let url = super::endpoints::validate_base_url("url", &request.url)?;
    let uri: http::Uri = url
        .parse()
        .map_err(|_| HttpError::invalid_field("url", "is not a URL"))?;
    if !state.settings.allow_private_webhooks && uri.host().is_some_and(is_private_host) {
        return Err(HttpError::invalid_field(
            "url",
            "points at this machine or a private network; set SWITCHYARD_WEBHOOK_ALLOW_PRIVATE=true to allow it",
        ));
    }
    if state.store.list_webhooks(&user.id).await?.len() >= MAX_WEBHOOKS {
        return Err(HttpError::invalid_field(
            "url",
            format!("at most {MAX_WEBHOOKS} webhooks per user"),
        ));
    }
    let secret = format!(
        "whsec_{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32)
    );
    let hook = Webhook {
        id: new_id(),
        user_id: user.id.clone(),
        url,
        secret_encrypted: state.secrets.encrypt(&secret),
        events: request
            .events
            .unwrap_or_default()
            .iter()
            .map(|kind| kind.as_str().to_owned())
            .collect(),
        created_at: now_ms(),
    };
    state.store.create_webhook(&hook).await?;
    state.webhooks.reload().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"webhook": view(&hook), "secret": secret})),
    ))
}

/// `GET /api/v1/webhooks`.
pub async fn list_webhooks(
    State(state): State<SharedState>,
    Caller(user): Caller,
) -> Result<Json<Value>, HttpError> {
    let hooks = state.store.list_webhooks(&user.id).await?;
    Ok(Json(
        json!({"data": hooks.iter().map(view).collect::<Vec<_>>(), "total": hooks.len()}),
    ))
}

/// `DELETE /api/v1/webhooks/{id}`.
pub async fn delete_webhook(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(webhook_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    state
        .store
        .delete_webhook(&user.id, &webhook_id)
        .await
        .map_err(|_| HttpError::not_found("webhook"))?;
    state.webhooks.reload().await?;
    Ok(Json(json!({"id": webhook_id, "deleted": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_hosts_are_recognised() {
        for host in [
            "localhost",
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "[::1]",
            "169.254.1.1",
            "0.0.0.0",
            "[fd00::1]",
        ] {
            assert!(is_private_host(host), "{host}");
        }
        for host in ["example.com", "8.8.8.8", "[2001:db8::1]"] {
            assert!(!is_private_host(host), "{host}");
        }
    }
}

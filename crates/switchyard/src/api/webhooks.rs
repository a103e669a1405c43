//! Outbound webhook subscriptions: `POST/GET /api/v1/webhooks`,
//! `DELETE /api/v1/webhooks/{id}`. The signing secret is shown once.

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

/// Whether a URL's host names this machine or a private network (SSRF
/// guard). The host is normalised as HTTP clients read it, so `2130706433`,
/// `0x7f.1` and `[::ffff:127.0.0.1]` are all seen as 127.0.0.1. Names are not
/// resolved here: a public name that resolves to a private address passes.
fn is_private_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return true;
    };
    match parsed.host() {
        None => true,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
        }
        Some(url::Host::Ipv4(ip)) => is_private_v4(ip),
        Some(url::Host::Ipv6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => {
                let first = ip.segments()[0];
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

fn is_private_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b))
}

/// `POST /api/v1/webhooks`: `{"url","events"?}` → 201 with the secret, once.
pub async fn create_webhook(
    State(state): State<SharedState>,
    Caller(user): Caller,
    ApiJson(request): ApiJson<CreateWebhook>,
) -> Result<impl IntoResponse, HttpError> {
    let url = super::endpoints::validate_base_url("url", &request.url)?;
    if !state.settings.allow_private_webhooks && is_private_url(&url) {
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
        .map_err(|error| match error {
            crate::store::StoreError::NotFound => HttpError::not_found("webhook"),
            other => other.into(),
        })?;
    state.webhooks.reload().await?;
    Ok(Json(json!({"id": webhook_id, "deleted": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_hosts_are_recognised_in_every_spelling() {
        for host in [
            "localhost",
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "[::1]",
            "169.254.169.254",
            "0.0.0.0",
            "[fd00::1]",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:169.254.169.254]",
            "[fe80::1]",
            "100.64.0.1",
            "metadata.internal",
        ] {
            assert!(is_private_url(&format!("http://{host}/hook")), "{host}");
        }
        for host in ["example.com", "8.8.8.8", "[2001:db8::1]"] {
            assert!(!is_private_url(&format!("https://{host}/hook")), "{host}");
        }
    }
}

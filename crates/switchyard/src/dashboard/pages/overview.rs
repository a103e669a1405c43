//! The overview: today's figures across the user's endpoints and recent events.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::render;
use crate::dashboard::session::Viewer;
use crate::domain::{now_ms, EndpointStatus};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::EndpointFilter;

use crate::domain::DAY_MS;

/// One event as listed.
pub struct EventRow {
    pub kind: String,
    pub title: String,
    pub detail: String,
    pub endpoint_id: String,
    pub endpoint_name: String,
    pub at_iso: String,
    pub at_text: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    active_endpoints: usize,
    total_endpoints: usize,
    requests_today: String,
    errors_today: String,
    credits_today: String,
    balance: String,
    average_latency: String,
    events: Vec<EventRow>,
    /// The newest event shown; the live stream resumes after it.
    last_seq: u64,
}

/// `GET /`.
pub async fn page(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
) -> Result<Response, HttpError> {
    let user_id = &session.user.id;
    let endpoints = state
        .store
        .list_endpoints(user_id, &EndpointFilter::default())
        .await?;
    let midnight = now_ms() - now_ms().rem_euclid(DAY_MS);
    let usage = state.store.usage_by_endpoint(user_id, midnight).await?;
    let requests: i64 = usage.iter().map(|row| row.requests).sum();
    let errors: i64 = usage.iter().map(|row| row.errors).sum();
    let cost: i64 = usage.iter().map(|row| row.cost_micro_usd).sum();
    let latency_sum: i64 = usage
        .iter()
        .map(|row| row.average_latency_ms * row.requests)
        .sum();
    let name_of = |id: &str| {
        endpoints
            .iter()
            .find(|endpoint| endpoint.id == id)
            .map(|endpoint| endpoint.name.clone())
    };
    let recent = state.events.recent_for(user_id, 12);
    let last_seq = recent.last().map_or(0, |event| event.seq);
    let events = recent
        .iter()
        .rev()
        .filter_map(|event| serde_json::from_str::<Value>(&event.json).ok())
        .map(|document| event_row(&document, &name_of))
        .collect();
    let page = OverviewPage {
        layout: Layout::new(&session, "Overview", "overview").with_script("overview.js"),
        active_endpoints: endpoints
            .iter()
            .filter(|endpoint| endpoint.status == EndpointStatus::Active)
            .count(),
        total_endpoints: endpoints.len(),
        requests_today: layout::count(requests),
        errors_today: layout::count(errors),
        credits_today: layout::credits(cost),
        balance: layout::credits(session.user.balance_micro_usd),
        average_latency: layout::latency(
            if requests > 0 {
                latency_sum / requests
            } else {
                0
            },
            requests,
        ),
        events,
        last_seq,
    };
    Ok(render(&page))
}

/// An event document as a list row: a readable title and its notable fields.
pub fn event_row(document: &Value, name_of: &dyn Fn(&str) -> Option<String>) -> EventRow {
    let kind = document["type"].as_str().unwrap_or("EVENT").to_owned();
    let endpoint_id = document["endpoint_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let created = document["created_at"].as_str().unwrap_or_default();
    let created_ms =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or_else(|_| now_ms());
    EventRow {
        title: event_title(&kind),
        detail: event_detail(document),
        endpoint_name: name_of(&endpoint_id).unwrap_or_else(|| endpoint_id.clone()),
        endpoint_id,
        kind,
        at_iso: layout::iso(created_ms),
        at_text: layout::ago(created_ms),
    }
}

/// `DEPLOYMENT_PROGRESS` → `Deployment progress`.
pub fn event_title(kind: &str) -> String {
    let lower = kind.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// The fields worth showing, as `name: value` pairs (never a key).
pub fn event_detail(document: &Value) -> String {
    const HIDDEN: [&str; 8] = [
        "id",
        "type",
        "created_at",
        "endpoint_id",
        "api_key",
        "has_api_key",
        "job_id",
        "user_id",
    ];
    let Some(object) = document.as_object() else {
        return String::new();
    };
    object
        .iter()
        .filter(|(key, _)| !HIDDEN.contains(&key.as_str()))
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => return None,
            };
            Some(format!("{}: {text}", key.replace('_', " ")))
        })
        .take(4)
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_and_details_read_well() {
        assert_eq!(event_title("DEPLOYMENT_PROGRESS"), "Deployment progress");
        let detail = event_detail(&json!({
            "type": "DEPLOYMENT_COMPLETE", "api_key": "sy_live_secret", "stage": "ready", "percent": 100
        }));
        assert!(detail.contains("stage: ready"));
        assert!(detail.contains("percent: 100"));
        assert!(!detail.contains("sy_live_secret"));
    }
}

//! The playground: send a test prompt to one of the user's chat endpoints and
//! watch the answer stream in. The page lists the endpoints and the last ten
//! tests (the newest usage records of the endpoints' playground keys, so
//! they survive reloads); `assets/playground.js` posts to
//! `/api/v1/endpoints/{id}/playground` and reads the stream.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::render;
use crate::dashboard::session::Viewer;
use crate::domain::{Endpoint, EndpointStatus, Modality, UsageRecord};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::EndpointFilter;

/// How many past tests the page shows.
pub const HISTORY_ROWS: i64 = 10;

/// An endpoint the playground can call.
pub struct EndpointOption {
    pub id: String,
    pub name: String,
    pub model: String,
    pub status: &'static str,
    pub selected: bool,
}

/// One past test.
pub struct HistoryRow {
    pub at_iso: String,
    pub at_text: String,
    pub endpoint: String,
    pub status_code: u16,
    pub ok: bool,
    pub latency: String,
    pub ttft: String,
    pub tokens: String,
    pub streamed: bool,
}

#[derive(Template)]
#[template(path = "playground.html")]
struct PlaygroundPage {
    layout: Layout,
    endpoints: Vec<EndpointOption>,
    history: Vec<HistoryRow>,
    balance: String,
}

#[derive(Deserialize, Default)]
pub struct PlaygroundQuery {
    /// The endpoint to preselect.
    endpoint: Option<String>,
}

/// `GET /playground`.
pub async fn page(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
    Query(query): Query<PlaygroundQuery>,
) -> Result<Response, HttpError> {
    let user_id = &session.user.id;
    let all = state
        .store
        .list_endpoints(user_id, &EndpointFilter::default())
        .await?;
    let usable: Vec<&Endpoint> = all
        .iter()
        .filter(|endpoint| chat_capable(endpoint))
        .collect();
    let wanted = query
        .endpoint
        .as_deref()
        .filter(|id| usable.iter().any(|endpoint| endpoint.id == *id))
        .or_else(|| {
            usable
                .iter()
                .find(|endpoint| endpoint.status == EndpointStatus::Active)
                .or(usable.first())
                .map(|endpoint| endpoint.id.as_str())
        });
    let endpoints = usable
        .iter()
        .map(|endpoint| EndpointOption {
            id: endpoint.id.clone(),
            name: endpoint.name.clone(),
            model: endpoint
                .base_model
                .clone()
                .unwrap_or_else(|| endpoint.upstream_model.clone()),
            status: endpoint.status.as_str(),
            selected: Some(endpoint.id.as_str()) == wanted,
        })
        .collect();
    let records = state
        .store
        .playground_history(user_id, HISTORY_ROWS)
        .await?;
    let history = records
        .iter()
        .map(|record| history_row(record, &all))
        .collect();
    let balance = state
        .registry
        .account(user_id)
        .map_or(session.user.balance_micro_usd, |account| account.balance());
    let page = PlaygroundPage {
        layout: Layout::new(&session, "Playground", "playground").with_script("playground.js"),
        endpoints,
        history,
        balance: layout::credits(balance),
    };
    Ok(render(&page))
}

/// Chat endpoints that are not terminated.
fn chat_capable(endpoint: &Endpoint) -> bool {
    endpoint.modality == Modality::Llm && endpoint.status != EndpointStatus::Terminated
}

fn history_row(record: &UsageRecord, endpoints: &[Endpoint]) -> HistoryRow {
    let endpoint = endpoints
        .iter()
        .find(|endpoint| endpoint.id == record.endpoint_id)
        .map_or_else(
            || record.endpoint_id.clone(),
            |endpoint| endpoint.name.clone(),
        );
    let latency_ms = i64::try_from(record.latency_ms).unwrap_or(i64::MAX);
    HistoryRow {
        at_iso: layout::iso(record.created_at),
        at_text: layout::ago(record.created_at),
        endpoint,
        status_code: record.status_code,
        ok: record.success,
        latency: layout::latency(latency_ms, 1),
        ttft: record.ttft_ms.map_or_else(
            || "—".to_owned(),
            |ms| layout::latency(i64::try_from(ms).unwrap_or(i64::MAX), 1),
        ),
        tokens: format!(
            "{} / {}",
            layout::count(i64::try_from(record.input_tokens).unwrap_or(i64::MAX)),
            layout::count(i64::try_from(record.output_tokens).unwrap_or(i64::MAX))
        ),
        streamed: record.streamed,
    }
}

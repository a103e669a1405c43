//! The endpoints table: filters, search, row actions, and the rows fragment
//! that the page fetches again whenever a live event arrives.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::samples::CodeSamples;
use crate::dashboard::session::Viewer;
use crate::dashboard::{html_response, render};
use crate::domain::{now_ms, Endpoint, EndpointStatus, Modality};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::EndpointFilter;

use crate::domain::DAY_MS;

/// One table row.
pub struct EndpointRow {
    pub id: String,
    pub name: String,
    pub model: String,
    pub modality: &'static str,
    pub provider: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub requests: String,
    pub latency: String,
    pub created_iso: String,
    pub created_text: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "partials/endpoint_rows.html")]
struct EndpointRows {
    rows: Vec<EndpointRow>,
    filtered: bool,
}

#[derive(Template)]
#[template(path = "endpoints.html")]
struct EndpointsPage {
    layout: Layout,
    q: String,
    modality: String,
    status: String,
    provider: String,
    modalities: Vec<&'static str>,
    statuses: Vec<&'static str>,
    providers: Vec<String>,
    rows_html: String,
}

#[derive(Deserialize, Default)]
pub struct EndpointsQuery {
    q: Option<String>,
    modality: Option<String>,
    status: Option<String>,
    provider: Option<String>,
    /// `rows`: only the table body (for live refresh).
    fragment: Option<String>,
}

/// `GET /endpoints`.
pub async fn page(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Query(query): Query<EndpointsQuery>,
) -> Result<Response, HttpError> {
    let user_id = &session.user.id;
    let everything = state
        .store
        .list_endpoints(user_id, &EndpointFilter::default())
        .await?;
    let mut providers: Vec<String> = everything.iter().map(|e| e.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    let filter = EndpointFilter {
        modality: query.modality.as_deref().and_then(Modality::parse),
        status: query.status.as_deref().and_then(EndpointStatus::parse),
        provider: query.provider.clone().filter(|p| providers.contains(p)),
    };
    let search = query.q.as_deref().unwrap_or_default().trim().to_lowercase();
    let filtered = filter.modality.is_some()
        || filter.status.is_some()
        || filter.provider.is_some()
        || !search.is_empty();
    let usage = state
        .store
        .usage_by_endpoint(user_id, now_ms() - DAY_MS)
        .await?;
    let public = crate::api::public_url(&state, &headers);
    let rows: Vec<EndpointRow> = everything
        .iter()
        .filter(|endpoint| matches(endpoint, &filter, &search))
        .map(|endpoint| {
            let figures = usage.iter().find(|row| row.endpoint_id == endpoint.id);
            let requests = figures.map_or(0, |row| row.requests);
            EndpointRow {
                id: endpoint.id.clone(),
                name: endpoint.name.clone(),
                model: endpoint
                    .base_model
                    .clone()
                    .unwrap_or_else(|| endpoint.upstream_model.clone()),
                modality: endpoint.modality.as_str(),
                provider: endpoint.provider.clone(),
                status: endpoint.status.as_str(),
                status_class: layout::status_class(endpoint.status),
                requests: layout::count(requests),
                latency: layout::latency(figures.map_or(0, |row| row.average_latency_ms), requests),
                created_iso: layout::iso(endpoint.created_at),
                created_text: layout::ago(endpoint.created_at),
                url: format!("{public}/api/v1/inference/{}", endpoint.id),
            }
        })
        .collect();
    let rows_html = EndpointRows { rows, filtered }.render().map_err(|error| {
        tracing::error!(%error, "endpoint rows template failed");
        HttpError::internal()
    })?;
    if query.fragment.as_deref() == Some("rows") {
        return Ok(html_response(StatusCode::OK, rows_html));
    }
    let page = EndpointsPage {
        layout: Layout::new(&session, "Endpoints", "endpoints").with_script("endpoints.js"),
        q: query.q.unwrap_or_default(),
        modality: filter
            .modality
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        status: filter
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        provider: filter.provider.unwrap_or_default(),
        modalities: Modality::ALL.iter().map(|m| m.as_str()).collect(),
        statuses: EndpointStatus::ALL
            .iter()
            .filter(|s| **s != EndpointStatus::Terminated)
            .map(|s| s.as_str())
            .collect(),
        providers,
        rows_html,
    };
    Ok(render(&page))
}

fn matches(endpoint: &Endpoint, filter: &EndpointFilter, search: &str) -> bool {
    filter.modality.is_none_or(|m| endpoint.modality == m)
        && filter.status.is_none_or(|s| endpoint.status == s)
        && filter
            .provider
            .as_ref()
            .is_none_or(|p| &endpoint.provider == p)
        && (search.is_empty()
            || [
                endpoint.name.as_str(),
                endpoint.id.as_str(),
                endpoint.description.as_str(),
                endpoint.upstream_model.as_str(),
                endpoint.base_model.as_deref().unwrap_or_default(),
            ]
            .iter()
            .any(|text| text.to_lowercase().contains(search)))
}

/// `GET /endpoints/{id}/code`: the code-sample tabs of one endpoint (HTML fragment).
pub async fn code_samples(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
) -> Result<Response, HttpError> {
    let endpoint = crate::api::owned_endpoint(&state, &session.user.id, &endpoint_id).await?;
    let public = crate::api::public_url(&state, &headers);
    let samples = CodeSamples::for_endpoint(&endpoint, &public, "dialog");
    Ok(html_response(StatusCode::OK, samples.html()))
}

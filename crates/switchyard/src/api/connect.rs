//! `GET /api/v1/connect/endpoints`: what the Connect widget lists, the
//! caller's live endpoints ordered by modality, each with its connection info.

use axum::extract::State;
use axum::Json;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::connection_info;
use super::{views, ApiQuery, Caller};
use crate::domain::{format_time, Endpoint, EndpointStatus, Modality, SourceType};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::EndpointFilter;

/// Longest accepted `search` text.
const MAX_SEARCH_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    modality: Option<String>,
    source_type: Option<String>,
    search: Option<String>,
}

/// `GET /api/v1/connect/endpoints?modality=&source_type=&search=`.
pub async fn connect_endpoints(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ConnectQuery>,
) -> Result<Json<Value>, HttpError> {
    let modality = parse_filter(
        query.modality,
        "modality",
        Modality::parse,
        Modality::expected,
    )?;
    let source_type = parse_filter(
        query.source_type,
        "source_type",
        SourceType::parse,
        SourceType::expected,
    )?;
    let search = query
        .search
        .map(|text| text.trim().to_lowercase())
        .filter(|text| !text.is_empty());
    if search
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(HttpError::invalid_field(
            "search",
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    let filter = EndpointFilter {
        modality,
        ..EndpointFilter::default()
    };
    let mut endpoints: Vec<Endpoint> = state
        .store
        .list_endpoints(&user.id, &filter)
        .await?
        .into_iter()
        .filter(|endpoint| endpoint.status != EndpointStatus::Terminated)
        .filter(|endpoint| source_type.is_none_or(|wanted| endpoint.source_type == wanted))
        .filter(|endpoint| search.as_deref().is_none_or(|text| matches(endpoint, text)))
        .collect();
    // The store answers newest first; a stable sort keeps that within a modality.
    endpoints.sort_by_key(|endpoint| modality_rank(endpoint.modality));
    let public = views::public_url(&state, &headers);
    let data: Vec<Value> = endpoints
        .iter()
        .map(|endpoint| item(endpoint, &public))
        .collect();
    let groups: Vec<Value> = Modality::ALL
        .iter()
        .filter_map(|modality| {
            let count = endpoints
                .iter()
                .filter(|endpoint| endpoint.modality == *modality)
                .count();
            (count > 0).then(|| {
                json!({"modality": modality, "label": modality_label(*modality), "count": count})
            })
        })
        .collect();
    Ok(Json(json!({
        "data": data,
        "groups": groups,
        "total": endpoints.len(),
        "manage_url": format!("{public}/endpoints"),
        "deploy_url": format!("{public}/deploy"),
    })))
}

/// One entry of the list.
fn item(endpoint: &Endpoint, public_url: &str) -> Value {
    let info = connection_info(endpoint, public_url);
    json!({
        "id": endpoint.id,
        "name": endpoint.name,
        "description": endpoint.description,
        "model": info["model"],
        "base_model": endpoint.base_model,
        "modality": endpoint.modality,
        "provider": endpoint.provider,
        "status": endpoint.status,
        "source_type": endpoint.source_type,
        "created_at": format_time(endpoint.created_at),
        "endpoint_url": info["endpoint_url"],
        "manage_url": format!("{public_url}/endpoints/{}", endpoint.id),
        "openaiConfig": info["openai_config"],
        "samples": info["samples"],
    })
}

fn parse_filter<T>(
    text: Option<String>,
    field: &str,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
) -> Result<Option<T>, HttpError> {
    text.filter(|text| !text.is_empty())
        .map(|text| {
            parse(&text).ok_or_else(|| {
                HttpError::invalid_field(field, format!("must be one of {}", expected()))
            })
        })
        .transpose()
}

/// Whether `needle` (lowercase) occurs in the endpoint's name, description,
/// base model, provider or upstream model.
fn matches(endpoint: &Endpoint, needle: &str) -> bool {
    [
        endpoint.name.as_str(),
        endpoint.description.as_str(),
        endpoint.base_model.as_deref().unwrap_or_default(),
        endpoint.provider.as_str(),
        endpoint.upstream_model.as_str(),
    ]
    .iter()
    .any(|haystack| haystack.to_lowercase().contains(needle))
}

fn modality_rank(modality: Modality) -> usize {
    Modality::ALL
        .iter()
        .position(|candidate| *candidate == modality)
        .unwrap_or(usize::MAX)
}

fn modality_label(modality: Modality) -> &'static str {
    match modality {
        Modality::Llm => "Language models",
        Modality::Embedding => "Embeddings",
        Modality::Image => "Image",
        Modality::Video => "Video",
        Modality::Audio => "Audio",
    }
}

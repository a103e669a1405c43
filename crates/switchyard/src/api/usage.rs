//! Usage figures per endpoint and across a user's endpoints.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::endpoints::owned_endpoint;
use super::{pagination, views, ApiQuery, Caller};
use crate::domain::{format_time, now_ms, EndpointStatus};
use crate::error::HttpError;
use crate::money::micros_to_credits_json;
use crate::state::SharedState;
use crate::store::EndpointFilter;

use crate::domain::DAY_MS;

#[derive(Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
}

fn period_start(period: Option<&str>) -> Result<(&'static str, i64), HttpError> {
    let (name, days) = match period.unwrap_or("day") {
        "day" => ("day", 1),
        "week" => ("week", 7),
        "month" => ("month", 30),
        _ => {
            return Err(HttpError::invalid_field(
                "period",
                "must be day, week or month",
            ))
        }
    };
    Ok((name, now_ms() - days * DAY_MS))
}

/// `GET /api/v1/endpoints/{id}/usage?period=day|week|month`.
pub async fn endpoint_usage(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiQuery(query): ApiQuery<PeriodQuery>,
) -> Result<Json<Value>, HttpError> {
    let (period, since) = period_start(query.period.as_deref())?;
    owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let summary = state
        .store
        .usage_summary(&user.id, &endpoint_id, since)
        .await?;
    Ok(Json(json!({
        "endpoint_id": endpoint_id,
        "period": period,
        "since": format_time(since),
        "usage": {
            "requests": summary.requests,
            "errors": summary.errors,
            "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens,
            "credits": micros_to_credits_json(summary.cost_micro_usd),
            "cost_micro_usd": summary.cost_micro_usd,
            "compute_seconds": summary.compute_ms as f64 / 1000.0,
            "latency_ms": {
                "p50": summary.latency_p50_ms,
                "p95": summary.latency_p95_ms,
                "p99": summary.latency_p99_ms,
            },
        },
    })))
}

#[derive(Deserialize)]
pub struct DetailQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/endpoints/{id}/usage/detailed?page=&limit=`: records, newest first.
pub async fn detailed_usage(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiQuery(query): ApiQuery<DetailQuery>,
) -> Result<Json<Value>, HttpError> {
    let (page, limit, offset) = pagination(query.page, query.limit)?;
    owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let (records, total) = state
        .store
        .list_usage(&user.id, &endpoint_id, limit, offset)
        .await?;
    Ok(Json(json!({
        "data": records.iter().map(views::usage_record).collect::<Vec<_>>(),
        "page": page,
        "limit": limit,
        "total": total,
    })))
}

/// `GET /api/v1/endpoints/summary`: counts by status and modality, and the last 24 hours of usage.
pub async fn summary(
    State(state): State<SharedState>,
    Caller(user): Caller,
) -> Result<Json<Value>, HttpError> {
    let endpoints = state
        .store
        .list_endpoints(&user.id, &EndpointFilter::default())
        .await?;
    let usage = state
        .store
        .usage_by_endpoint(&user.id, now_ms() - DAY_MS)
        .await?;
    let mut by_status = Map::new();
    for status in EndpointStatus::ALL {
        let count = endpoints
            .iter()
            .filter(|endpoint| endpoint.status == *status)
            .count();
        by_status.insert(status.as_str().to_owned(), json!(count));
    }
    let mut by_modality = Map::new();
    for endpoint in &endpoints {
        let entry = by_modality
            .entry(endpoint.modality.as_str())
            .or_insert(json!(0));
        *entry = json!(entry.as_u64().unwrap_or(0) + 1);
    }
    let totals = usage.iter().fold((0, 0, 0, 0, 0), |acc, row| {
        (
            acc.0 + row.requests,
            acc.1 + row.errors,
            acc.2 + row.input_tokens,
            acc.3 + row.output_tokens,
            acc.4 + row.cost_micro_usd,
        )
    });
    let per_endpoint: Vec<Value> = endpoints
        .iter()
        .map(|endpoint| {
            let row = usage.iter().find(|row| row.endpoint_id == endpoint.id);
            json!({
                "id": endpoint.id,
                "name": endpoint.name,
                "modality": endpoint.modality,
                "provider": endpoint.provider,
                "status": endpoint.status,
                "requests_24h": row.map_or(0, |row| row.requests),
                "errors_24h": row.map_or(0, |row| row.errors),
                "average_latency_ms_24h": row.map_or(0, |row| row.average_latency_ms),
                "credits_24h": micros_to_credits_json(row.map_or(0, |row| row.cost_micro_usd)),
            })
        })
        .collect();
    Ok(Json(json!({
        "summary": {
            "total_endpoints": endpoints.len(),
            "active_endpoints": endpoints.iter().filter(|endpoint| endpoint.status == EndpointStatus::Active).count(),
            "by_status": by_status,
            "by_modality": by_modality,
            "requests_24h": totals.0,
            "errors_24h": totals.1,
            "input_tokens_24h": totals.2,
            "output_tokens_24h": totals.3,
            "credits_24h": micros_to_credits_json(totals.4),
            "cost_micro_usd_24h": totals.4,
        },
        "endpoints": per_endpoint,
    })))
}

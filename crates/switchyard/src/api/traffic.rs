//! Backends of an endpoint, its traffic split by version, balancing strategy
//! and fallback chain, and the per-version figures that judge a roll-out.
//!
//! - `GET /api/v1/endpoints/{id}/backends`: the endpoint's own upstream
//!   (`"primary": true`, id = the endpoint id) and its extra backends, each
//!   with its live figures (in flight, latency EWMA, breaker, health).
//! - `POST /api/v1/endpoints/{id}/backends`
//!   `{"version":"1.1","weight":100,"upstream":{"base_url","api","api_key","model","api_version","headers"}}`.
//! - `DELETE /api/v1/endpoints/{id}/backends/{backend_id}`.
//! - `PUT /api/v1/endpoints/{id}/traffic`
//!   `{"versions":{"1.0":0.95,"1.1":0.05},"strategy":"latency","fallback_endpoint_ids":[...],"primary_version":"1.0"}`:
//!   every field optional; shares are 0..1 and sum to 1; every version must
//!   have a backend; `{"versions":{}}` removes the split.
//! - `GET /api/v1/endpoints/{id}/traffic?hours=24`: the routing plus usage
//!   per version (requests, errors, error rate, tokens, credits, latency,
//!   retried requests) over the period.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoints::{owned_endpoint, UpstreamInput};
use super::{ApiJson, ApiQuery, Caller};
use crate::domain::{
    new_id, now_ms, Backend, BalanceStrategy, Endpoint, UpstreamApi, DEFAULT_VERSION,
};
use crate::error::HttpError;
use crate::gateway::balance::MAX_BACKENDS;
use crate::money::micros_to_credits_string;
use crate::state::SharedState;
use crate::store::EndpointPatch;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBackend {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    weight: Option<i64>,
    upstream: UpstreamInput,
}

fn validate_version(field: &str, version: &str) -> Result<(), HttpError> {
    let valid = !version.is_empty()
        && version.len() <= 32
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(HttpError::invalid_field(
            field,
            "must be 1 to 32 letters, digits, '.', '-' or '_' (e.g. 1.1)",
        ))
    }
}

/// `POST /api/v1/endpoints/{id}/backends`.
pub async fn create_backend(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<CreateBackend>,
) -> Result<impl IntoResponse, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let version = request
        .version
        .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
    validate_version("version", &version)?;
    let weight = request.weight.unwrap_or(100);
    if !(1..=10_000).contains(&weight) {
        return Err(HttpError::invalid_field(
            "weight",
            "must be between 1 and 10000",
        ));
    }
    let existing = state.store.list_backends(&user.id, &endpoint_id).await?;
    if existing.len() + 1 >= MAX_BACKENDS {
        return Err(HttpError::invalid_field(
            "upstream",
            format!("an endpoint has at most {MAX_BACKENDS} backends"),
        ));
    }
    let upstream = request.upstream.validate(&state, "upstream").await?;
    if upstream.api == UpstreamApi::Replicate || endpoint.upstream_api == UpstreamApi::Replicate {
        return Err(HttpError::invalid_field(
            "upstream.api",
            "Replicate deployments serve as an endpoint's only upstream; add another endpoint as a fallback instead",
        ));
    }
    let backend = Backend {
        id: new_id(),
        endpoint_id: endpoint.id.clone(),
        version,
        weight,
        upstream_base_url: upstream.base_url,
        upstream_api: upstream.api,
        upstream_model: upstream.model,
        upstream_api_version: upstream.api_version,
        upstream_key_encrypted: upstream.key_encrypted,
        upstream_headers_encrypted: upstream.headers_encrypted,
        created_at: now_ms(),
    };
    state.store.insert_backend(&user.id, &backend).await?;
    state.registry.reload().await?;
    Ok((
        StatusCode::CREATED,
        Json(backend_view(&state, &endpoint, Some(&backend))),
    ))
}

/// `GET /api/v1/endpoints/{id}/backends`.
pub async fn list_backends(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let backends = state.store.list_backends(&user.id, &endpoint_id).await?;
    let data = backend_views(&state, &endpoint, &backends);
    Ok(Json(
        json!({ "data": data, "strategy": endpoint.routing.strategy }),
    ))
}

/// The endpoint's own upstream, then its extra backends, as the API shows
/// them, with the live figures (in flight, latency, breaker, health) of each.
pub fn backend_views(state: &SharedState, endpoint: &Endpoint, backends: &[Backend]) -> Vec<Value> {
    let mut data = vec![backend_view(state, endpoint, None)];
    data.extend(
        backends
            .iter()
            .map(|backend| backend_view(state, endpoint, Some(backend))),
    );
    data
}

/// `DELETE /api/v1/endpoints/{id}/backends/{backend_id}`.
pub async fn delete_backend(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path((endpoint_id, backend_id)): Path<(String, String)>,
) -> Result<StatusCode, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let backends = state.store.list_backends(&user.id, &endpoint_id).await?;
    let Some(backend) = backends.iter().find(|backend| backend.id == backend_id) else {
        return Err(HttpError::not_found("backend"));
    };
    let version_left = endpoint.routing.version() == backend.version
        || backends
            .iter()
            .any(|other| other.id != backend.id && other.version == backend.version);
    if !version_left
        && endpoint
            .routing
            .traffic
            .iter()
            .any(|(version, share)| *version == backend.version && *share > 0)
    {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "version_in_traffic_split",
            format!(
                "version {} still gets traffic and this is its last backend; move its share first (PUT …/traffic)",
                backend.version
            ),
        ));
    }
    state
        .store
        .delete_backend(&user.id, &endpoint_id, &backend_id)
        .await?;
    state.registry.reload().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A backend as the API shows it (the endpoint's own upstream when `backend` is `None`).
fn backend_view(state: &SharedState, endpoint: &Endpoint, backend: Option<&Backend>) -> Value {
    let (id, version, weight, api, base_url, model, has_key) = match backend {
        Some(backend) => (
            backend.id.as_str(),
            backend.version.as_str(),
            backend.weight,
            backend.upstream_api,
            backend.upstream_base_url.as_str(),
            backend.upstream_model.as_str(),
            backend.upstream_key_encrypted.is_some(),
        ),
        None => (
            endpoint.id.as_str(),
            endpoint.routing.version(),
            100,
            endpoint.upstream_api,
            endpoint.upstream_base_url.as_str(),
            endpoint.upstream_model.as_str(),
            endpoint.upstream_key_encrypted.is_some(),
        ),
    };
    let live = state.registry.endpoint(&endpoint.id).and_then(|runtime| {
        runtime
            .backends
            .iter()
            .find(|candidate| candidate.id == id)
            .map(|runtime_backend| {
                let now = u64::try_from(now_ms()).unwrap_or(0);
                let live = &runtime_backend.state;
                json!({
                    "in_flight": live.in_flight(),
                    "latency_ewma_ms": live.ewma_micros() as f64 / 1000.0,
                    "breaker": live.breaker.state(now, &state.settings.resilience.breaker).as_str(),
                    "healthy": live.is_healthy(),
                })
            })
    });
    json!({
        "id": id,
        "primary": backend.is_none(),
        "version": version,
        "weight": weight,
        "upstream": {
            "base_url": base_url,
            "api": api,
            "model": model,
            "has_api_key": has_key,
        },
        "live": live,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutTraffic {
    #[serde(default)]
    versions: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    strategy: Option<BalanceStrategy>,
    #[serde(default)]
    fallback_endpoint_ids: Option<Vec<String>>,
    /// The version label of the endpoint's own upstream.
    #[serde(default)]
    primary_version: Option<String>,
}

/// `PUT /api/v1/endpoints/{id}/traffic`.
pub async fn put_traffic(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<PutTraffic>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let backends = state.store.list_backends(&user.id, &endpoint_id).await?;
    let mut routing = endpoint.routing.clone();
    if let Some(version) = request.primary_version {
        validate_version("primary_version", &version)?;
        routing.version = Some(version);
    }
    let known: Vec<&str> = std::iter::once(routing.version())
        .chain(backends.iter().map(|backend| backend.version.as_str()))
        .collect();
    if let Some(versions) = request.versions {
        routing.traffic = split_from(&versions, &known)?;
    }
    if let Some(strategy) = request.strategy {
        routing.strategy = strategy;
    }
    if let Some(ids) = request.fallback_endpoint_ids {
        if ids.len() > 8 {
            return Err(HttpError::invalid_field(
                "fallback_endpoint_ids",
                "at most 8 fallbacks",
            ));
        }
        for (index, id) in ids.iter().enumerate() {
            if *id == endpoint.id || ids[..index].contains(id) {
                return Err(HttpError::invalid_field(
                    format!("fallback_endpoint_ids[{index}]"),
                    "must be another endpoint, listed once",
                ));
            }
            // Another tenant's endpoint is as unknown as a missing one.
            let fallback = owned_endpoint(&state, &user.id, id).await.map_err(|_| {
                HttpError::invalid_field(
                    format!("fallback_endpoint_ids[{index}]"),
                    format!("endpoint `{id}` not found"),
                )
            })?;
            if fallback.upstream_api == UpstreamApi::Replicate {
                return Err(HttpError::invalid_field(
                    format!("fallback_endpoint_ids[{index}]"),
                    "a Replicate deployment cannot serve as a fallback (it answers through predictions)",
                ));
            }
        }
        routing.fallback_endpoint_ids = ids;
    }
    // A split naming the primary's old label must still be satisfiable.
    let known: Vec<&str> = std::iter::once(routing.version())
        .chain(backends.iter().map(|backend| backend.version.as_str()))
        .collect();
    if let Some((version, _)) = routing
        .traffic
        .iter()
        .find(|(version, share)| *share > 0 && !known.contains(&version.as_str()))
    {
        return Err(HttpError::invalid_field(
            "versions",
            format!("version `{version}` has no backend"),
        ));
    }
    let updated = state
        .store
        .update_endpoint(
            &user.id,
            &endpoint_id,
            EndpointPatch {
                routing: Some(routing),
                ..EndpointPatch::default()
            },
        )
        .await?;
    state.registry.reload().await?;
    Ok(Json(routing_view(&updated)))
}

/// Shares (0..1, summing to 1) to basis points, checking every version has a backend.
fn split_from(
    versions: &BTreeMap<String, f64>,
    known: &[&str],
) -> Result<Vec<(String, u32)>, HttpError> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    if versions.len() > 8 {
        return Err(HttpError::invalid_field("versions", "at most 8 versions"));
    }
    let mut split = Vec::with_capacity(versions.len());
    let mut total = 0.0;
    for (version, share) in versions {
        let field = format!("versions.{version}");
        validate_version(&field, version)?;
        if !share.is_finite() || !(0.0..=1.0).contains(share) {
            return Err(HttpError::invalid_field(
                field,
                "must be a share between 0 and 1",
            ));
        }
        if !known.contains(&version.as_str()) {
            return Err(HttpError::invalid_field(
                field,
                format!(
                    "version `{version}` has no backend; known versions: {}",
                    known.join(", ")
                ),
            ));
        }
        total += share;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked to be within 0..=1"
        )]
        split.push((version.clone(), (share * 10_000.0).round() as u32));
    }
    if (total - 1.0).abs() > 0.001 {
        return Err(HttpError::invalid_field(
            "versions",
            format!("the shares must sum to 1 (they sum to {total})"),
        ));
    }
    Ok(split)
}

fn routing_view(endpoint: &Endpoint) -> Value {
    let versions: serde_json::Map<String, Value> = endpoint
        .routing
        .traffic
        .iter()
        .map(|(version, share)| (version.clone(), json!(f64::from(*share) / 10_000.0)))
        .collect();
    json!({
        "endpoint_id": endpoint.id,
        "versions": versions,
        "primary_version": endpoint.routing.version(),
        "strategy": endpoint.routing.strategy,
        "fallback_endpoint_ids": endpoint.routing.fallback_endpoint_ids,
    })
}

#[derive(Deserialize)]
pub struct TrafficQuery {
    hours: Option<i64>,
}

/// `GET /api/v1/endpoints/{id}/traffic?hours=24`.
pub async fn get_traffic(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiQuery(query): ApiQuery<TrafficQuery>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let hours = query.hours.unwrap_or(24);
    if !(1..=24 * 90).contains(&hours) {
        return Err(HttpError::invalid_field(
            "hours",
            "must be between 1 and 2160",
        ));
    }
    let since = now_ms() - hours * 3_600_000;
    let usage = state
        .store
        .usage_by_version(&user.id, &endpoint_id, since)
        .await?;
    let backends = state.store.list_backends(&user.id, &endpoint_id).await?;
    let mut view = routing_view(&endpoint);
    let figures: serde_json::Map<String, Value> = usage
        .iter()
        .map(|row| {
            let version = if row.version.is_empty() {
                "unversioned".to_owned()
            } else {
                row.version.clone()
            };
            #[expect(clippy::cast_precision_loss, reason = "a ratio for display")]
            let error_rate = if row.requests > 0 {
                row.errors as f64 / row.requests as f64
            } else {
                0.0
            };
            (
                version,
                json!({
                    "requests": row.requests,
                    "errors": row.errors,
                    "error_rate": error_rate,
                    "input_tokens": row.input_tokens,
                    "output_tokens": row.output_tokens,
                    "credits_used": micros_to_credits_string(row.cost_micro_usd),
                    "average_latency_ms": row.average_latency_ms,
                    "retried_requests": row.retried_requests,
                }),
            )
        })
        .collect();
    let mut data = vec![backend_view(&state, &endpoint, None)];
    data.extend(
        backends
            .iter()
            .map(|backend| backend_view(&state, &endpoint, Some(backend))),
    );
    if let Some(object) = view.as_object_mut() {
        object.insert("period_hours".to_owned(), json!(hours));
        object.insert("usage".to_owned(), Value::Object(figures));
        object.insert("backends".to_owned(), Value::Array(data));
    }
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_must_name_known_versions_and_sum_to_one() {
        let known = ["1.0", "1.1"];
        let versions = BTreeMap::from([("1.0".to_owned(), 0.95), ("1.1".to_owned(), 0.05)]);
        assert_eq!(
            split_from(&versions, &known).unwrap(),
            vec![("1.0".to_owned(), 9_500), ("1.1".to_owned(), 500)]
        );
        let short = BTreeMap::from([("1.0".to_owned(), 0.5)]);
        assert!(split_from(&short, &known)
            .unwrap_err()
            .message
            .contains("sum to 1"));
        let unknown = BTreeMap::from([("2.0".to_owned(), 1.0)]);
        assert_eq!(
            split_from(&unknown, &known).unwrap_err().param.as_deref(),
            Some("versions.2.0")
        );
        let negative = BTreeMap::from([("1.0".to_owned(), 1.5), ("1.1".to_owned(), -0.5)]);
        assert!(split_from(&negative, &known).is_err());
        assert!(split_from(&BTreeMap::new(), &known).unwrap().is_empty());
    }
}

//! Endpoint registration, listing, updates and termination.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::{new_key, CreateKey};
use super::{views, ApiJson, ApiQuery, Caller};
use crate::domain::{
    new_id, now_ms, Endpoint, EndpointPricing, EndpointStatus, EndpointType, Modality, SourceType,
    UpstreamApi,
};
use crate::error::HttpError;
use crate::money::parse_usd_to_nanos;
use crate::state::SharedState;
use crate::store::{EndpointFilter, EndpointPatch};

/// Providers this build can route to.
const SUPPORTED_PROVIDERS: &[&str] = &["external"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamInput {
    base_url: String,
    #[serde(default)]
    api: Option<UpstreamApi>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    model: Option<String>,
    /// Azure OpenAI `api-version` (default 2024-10-21).
    #[serde(default)]
    api_version: Option<String>,
    /// Extra headers sent upstream (stored encrypted, never returned).
    #[serde(default)]
    headers: Option<std::collections::BTreeMap<String, String>>,
}

/// An upstream as validated: ready to be stored.
pub struct ValidUpstream {
    pub base_url: String,
    pub api: UpstreamApi,
    pub model: String,
    pub api_version: Option<String>,
    pub key_encrypted: Option<String>,
    pub headers_encrypted: Option<String>,
}

impl UpstreamInput {
    /// Checks every field (`field` is the JSON path prefix for errors) and
    /// discovers the model of an OpenAI-compatible upstream when none is given.
    pub async fn validate(
        self,
        state: &SharedState,
        field: &str,
    ) -> Result<ValidUpstream, HttpError> {
        let base_url = validate_base_url(&format!("{field}.base_url"), &self.base_url)?;
        let api = self.api.unwrap_or(UpstreamApi::OpenAi);
        let api_key = self.api_key.filter(|key| !key.is_empty());
        if api_key.as_ref().is_some_and(|key| {
            key.len() > 4096 || HeaderValue::from_str(&format!("Bearer {key}")).is_err()
        }) {
            return Err(HttpError::invalid_field(
                format!("{field}.api_key"),
                "must be a printable token of at most 4096 characters",
            ));
        }
        if let Some(version) = &self.api_version {
            let valid = !version.is_empty()
                && version.len() <= 40
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(HttpError::invalid_field(
                    format!("{field}.api_version"),
                    "must look like 2024-10-21",
                ));
            }
        }
        let headers = self.headers.unwrap_or_default();
        if headers.len() > 32 {
            return Err(HttpError::invalid_field(
                format!("{field}.headers"),
                "at most 32 headers",
            ));
        }
        for (name, value) in &headers {
            let reserved = [
                "host",
                "content-length",
                "content-type",
                "transfer-encoding",
                "connection",
            ];
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reserved.contains(&name.to_ascii_lowercase().as_str())
            {
                return Err(HttpError::invalid_field(
                    format!("{field}.headers"),
                    format!("`{name}` is not a header name that may be set"),
                ));
            }
            if HeaderValue::from_str(value).is_err() || value.len() > 4096 {
                return Err(HttpError::invalid_field(
                    format!("{field}.headers.{name}"),
                    "must be printable and at most 4096 characters",
                ));
            }
        }
        let model = match (self.model.filter(|model| !model.is_empty()), api) {
            (Some(model), _) => {
                if model.len() > 256
                    || model
                        .bytes()
                        .any(|b| b.is_ascii_control() || b == b'/' && api != UpstreamApi::OpenAi)
                {
                    return Err(HttpError::invalid_field(
                        format!("{field}.model"),
                        "must be a model or deployment name",
                    ));
                }
                model
            }
            (None, UpstreamApi::OpenAi) => {
                discover_model(state, &base_url, api_key.as_deref()).await?
            }
            (None, _) => {
                return Err(HttpError::invalid_field(
                    format!("{field}.model"),
                    format!("is required for a {api} upstream (the model or deployment name)"),
                ))
            }
        };
        let headers_encrypted = (!headers.is_empty()).then(|| {
            let pairs: Vec<(&String, &String)> = headers.iter().collect();
            state
                .secrets
                .encrypt(&serde_json::to_string(&pairs).unwrap_or_default())
        });
        Ok(ValidUpstream {
            base_url,
            api,
            model,
            api_version: self.api_version,
            key_encrypted: api_key.as_deref().map(|key| state.secrets.encrypt(key)),
            headers_encrypted,
        })
    }
}

/// A decimal dollar amount given as a JSON string or number.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingInput {
    #[serde(default)]
    input_per_1k_tokens_usd: Option<Amount>,
    #[serde(default)]
    output_per_1k_tokens_usd: Option<Amount>,
    #[serde(default)]
    compute_per_second_usd: Option<Amount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    name: String,
    #[serde(default)]
    description: Option<String>,
    modality: Modality,
    #[serde(default)]
    source_type: Option<SourceType>,
    #[serde(default)]
    base_model: Option<String>,
    #[serde(default)]
    hf_repo_url: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    provider_endpoint_id: Option<String>,
    #[serde(default)]
    endpoint_type: Option<EndpointType>,
    #[serde(default)]
    gpu_type: Option<String>,
    #[serde(default)]
    min_workers: Option<i64>,
    #[serde(default)]
    max_workers: Option<i64>,
    #[serde(default)]
    idle_timeout_seconds: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
    upstream: UpstreamInput,
    #[serde(default)]
    pricing: Option<PricingInput>,
    /// Options for the first API key.
    #[serde(default)]
    key: Option<CreateKey>,
}

/// `POST /api/v1/endpoints`: registers an endpoint and returns its first key once.
pub async fn create_endpoint(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateEndpoint>,
) -> Result<impl IntoResponse, HttpError> {
    let name = validate_name(&request.name)?;
    let provider = request.provider.as_deref().unwrap_or("external").to_owned();
    if !SUPPORTED_PROVIDERS.contains(&provider.as_str()) {
        return Err(HttpError::invalid_field(
            "provider",
            format!(
                "`{provider}` is not available in this build; supported: {}",
                SUPPORTED_PROVIDERS.join(", ")
            ),
        ));
    }
    let (min_workers, max_workers) = validate_workers(
        request.min_workers.unwrap_or(0),
        request.max_workers.unwrap_or(1),
    )?;
    let idle_timeout_seconds = validate_range(
        "idle_timeout_seconds",
        request.idle_timeout_seconds.unwrap_or(300),
        0,
        86_400,
    )?;
    let timeout_seconds = request
        .timeout_seconds
        .map(|seconds| validate_range("timeout_seconds", seconds, 1, 3_600))
        .transpose()?;
    let gpu_type = validate_gpu(&state, request.gpu_type)?;
    let description = validate_description(request.description.unwrap_or_default())?;
    let pricing = pricing_from(request.pricing, EndpointPricing::default())?;
    let upstream = request.upstream.validate(&state, "upstream").await?;
    let now = now_ms();
    let endpoint = Endpoint {
        id: new_id(),
        user_id: user.id.clone(),
        name,
        description,
        modality: request.modality,
        source_type: request.source_type.unwrap_or(SourceType::External),
        base_model: request.base_model,
        hf_repo_url: request.hf_repo_url,
        provider,
        provider_endpoint_id: request.provider_endpoint_id,
        endpoint_url: Some(upstream.base_url.clone()),
        endpoint_type: request.endpoint_type.unwrap_or(EndpointType::Serverless),
        gpu_type,
        min_workers,
        max_workers,
        idle_timeout_seconds,
        status: EndpointStatus::Active,
        last_active_at: None,
        error_message: None,
        upstream_base_url: upstream.base_url,
        upstream_api: upstream.api,
        upstream_model: upstream.model,
        upstream_key_encrypted: upstream.key_encrypted,
        timeout_seconds,
        pricing,
        provider_resource: None,
        upstream_headers_encrypted: upstream.headers_encrypted,
        training_job_id: None,
        routing: crate::domain::Routing {
            api_version: upstream.api_version,
            ..crate::domain::Routing::default()
        },
        created_at: now,
        updated_at: now,
    };
    let key_request = request.key.unwrap_or_else(|| CreateKey::named("default"));
    let (key, secret) = new_key(&endpoint, key_request, &state.secrets)?;
    state.store.create_endpoint(&endpoint, &key).await?;
    state.registry.reload().await?;
    // Live views (the dashboard's table) learn of the new endpoint at once.
    state.events.publish(
        &user.id,
        crate::events::EventKind::EndpointStatusChanged,
        json!({"endpoint_id": endpoint.id, "status": endpoint.status, "previous_status": null, "name": endpoint.name}),
    );
    let public = views::public_url(&state, &headers);
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "endpoint": views::endpoint(&endpoint, &public), "api_key": secret, "key": views::key(&key) }),
        ),
    ))
}

#[derive(Deserialize)]
pub struct ListQuery {
    modality: Option<String>,
    status: Option<String>,
    provider: Option<String>,
}

/// `GET /api/v1/endpoints?modality=&status=&provider=`.
pub async fn list_endpoints(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, HttpError> {
    let filter = EndpointFilter {
        modality: query
            .modality
            .filter(|text| !text.is_empty())
            .map(|text| {
                Modality::parse(&text).ok_or_else(|| {
                    HttpError::invalid_field(
                        "modality",
                        format!("must be one of {}", Modality::expected()),
                    )
                })
            })
            .transpose()?,
        status: query
            .status
            .filter(|text| !text.is_empty())
            .map(|text| {
                EndpointStatus::parse(&text).ok_or_else(|| {
                    HttpError::invalid_field(
                        "status",
                        format!("must be one of {}", EndpointStatus::expected()),
                    )
                })
            })
            .transpose()?,
        provider: query.provider.filter(|text| !text.is_empty()),
    };
    let endpoints = state.store.list_endpoints(&user.id, &filter).await?;
    let public = views::public_url(&state, &headers);
    Ok(Json(json!({
        "data": endpoints.iter().map(|endpoint| views::endpoint(endpoint, &public)).collect::<Vec<_>>(),
        "total": endpoints.len(),
    })))
}

/// `GET /api/v1/endpoints/{id}`.
pub async fn get_endpoint(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let public = views::public_url(&state, &headers);
    Ok(Json(
        json!({ "endpoint": views::endpoint(&endpoint, &public) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUpstream {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    status: Option<EndpointStatus>,
    #[serde(default)]
    min_workers: Option<i64>,
    #[serde(default)]
    max_workers: Option<i64>,
    #[serde(default)]
    idle_timeout_seconds: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
    #[serde(default)]
    gpu_type: Option<String>,
    #[serde(default)]
    upstream: Option<UpdateUpstream>,
    #[serde(default)]
    pricing: Option<PricingInput>,
}

/// `PATCH /api/v1/endpoints/{id}`.
pub async fn update_endpoint(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<UpdateEndpoint>,
) -> Result<Json<Value>, HttpError> {
    let current = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let mut patch = EndpointPatch::default();
    if let Some(name) = &request.name {
        patch.name = Some(validate_name(name)?);
    }
    if let Some(description) = request.description {
        patch.description = Some(validate_description(description)?);
    }
    if let Some(status) = request.status {
        if !matches!(
            status,
            EndpointStatus::Active | EndpointStatus::Stopped | EndpointStatus::Idle
        ) {
            return Err(HttpError::invalid_field(
                "status",
                "can be set to active, idle or stopped",
            ));
        }
        patch.status = Some(status);
    }
    if request.min_workers.is_some() || request.max_workers.is_some() {
        let (min, max) = validate_workers(
            request.min_workers.unwrap_or(current.min_workers),
            request.max_workers.unwrap_or(current.max_workers),
        )?;
        patch.min_workers = Some(min);
        patch.max_workers = Some(max);
    }
    if let Some(seconds) = request.idle_timeout_seconds {
        patch.idle_timeout_seconds =
            Some(validate_range("idle_timeout_seconds", seconds, 0, 86_400)?);
    }
    if let Some(seconds) = request.timeout_seconds {
        patch.timeout_seconds = Some(Some(validate_range("timeout_seconds", seconds, 1, 3_600)?));
    }
    if request.gpu_type.is_some() {
        patch.gpu_type = Some(validate_gpu(&state, request.gpu_type)?);
    }
    if let Some(upstream) = request.upstream {
        if let Some(base_url) = upstream.base_url {
            patch.upstream_base_url = Some(validate_base_url("upstream.base_url", &base_url)?);
        }
        if let Some(model) = upstream.model {
            if model.is_empty() || model.len() > 256 {
                return Err(HttpError::invalid_field(
                    "upstream.model",
                    "must be 1 to 256 characters",
                ));
            }
            patch.upstream_model = Some(model);
        }
        if let Some(api_key) = upstream.api_key {
            patch.upstream_key_encrypted =
                Some((!api_key.is_empty()).then(|| state.secrets.encrypt(&api_key)));
        }
    }
    if let Some(pricing) = request.pricing {
        let updated = pricing_from(Some(pricing), current.pricing)?;
        patch.input_nanos_per_1k = Some(updated.input_nanos_per_1k);
        patch.output_nanos_per_1k = Some(updated.output_nanos_per_1k);
        patch.compute_nanos_per_second = Some(updated.compute_nanos_per_second);
    }
    let scaling_changed = patch.min_workers.is_some() || patch.idle_timeout_seconds.is_some();
    let propagated = if scaling_changed {
        propagate_scaling(&state, &current, &patch).await?
    } else {
        false
    };
    let endpoint = match state
        .store
        .update_endpoint(&user.id, &endpoint_id, patch)
        .await
    {
        Ok(endpoint) => endpoint,
        Err(error) => {
            if propagated {
                // The store refused the change: put the provider back as it was.
                let restore = EndpointPatch {
                    min_workers: Some(current.min_workers),
                    max_workers: Some(current.max_workers),
                    idle_timeout_seconds: Some(current.idle_timeout_seconds),
                    ..EndpointPatch::default()
                };
                if let Err(restore_error) = propagate_scaling(&state, &current, &restore).await {
                    tracing::error!(error = %restore_error.message, "cannot restore the provider's scaling");
                }
            }
            return Err(error.into());
        }
    };
    state.registry.reload().await?;
    let public = views::public_url(&state, &headers);
    Ok(Json(
        json!({ "endpoint": views::endpoint(&endpoint, &public), "provider_updated": propagated }),
    ))
}

/// Applies new scaling limits to the provider resource before they are
/// stored, so the stored values are what the provider runs. Endpoints with
/// no resource yet (deploying) take them when their resource is created.
async fn propagate_scaling(
    state: &SharedState,
    current: &Endpoint,
    patch: &EndpointPatch,
) -> Result<bool, HttpError> {
    let Some(resource) = current
        .provider_resource
        .as_deref()
        .and_then(|text| serde_json::from_str::<crate::providers::ProviderResource>(text).ok())
        .filter(|resource| !resource.id.is_empty())
    else {
        return Ok(false);
    };
    if matches!(
        resource.provider,
        crate::providers::ProviderKind::External | crate::providers::ProviderKind::SelfHosted
    ) {
        // One server they do not scale: the limits are kept for the record.
        return Ok(false);
    }
    let Some(provisioner) = state.providers.get(resource.provider) else {
        return Ok(false);
    };
    let scaling = crate::providers::Scaling {
        min_workers: u32::try_from(patch.min_workers.unwrap_or(current.min_workers)).unwrap_or(0),
        max_workers: u32::try_from(patch.max_workers.unwrap_or(current.max_workers)).unwrap_or(1),
        idle_timeout_seconds: u32::try_from(
            patch
                .idle_timeout_seconds
                .unwrap_or(current.idle_timeout_seconds),
        )
        .unwrap_or(60),
    };
    provisioner
        .update_scaling(&resource, &scaling)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the provider refused the new scaling");
            HttpError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                error.code(),
                format!("the provider did not apply the new scaling, nothing was changed: {error}"),
            )
        })?;
    Ok(true)
}

/// `DELETE /api/v1/endpoints/{id}`: terminates the endpoint and revokes its keys.
pub async fn delete_endpoint(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    state
        .store
        .delete_endpoint(&user.id, &endpoint_id)
        .await
        .map_err(|error| not_found_as_endpoint(error.into()))?;
    state.registry.reload().await?;
    // The provider resource is deleted by a durable job, retried until it is gone.
    let cleanup =
        endpoint.provider_resource.is_some() || state.store.has_active_job(&endpoint_id).await?;
    let job_id = if cleanup {
        let mut job = crate::deploy::Deployer::new_job(
            &endpoint_id,
            &user.id,
            crate::domain::JobKind::Terminate,
            &crate::deploy::DeployRequest::default(),
        );
        job.resource = endpoint.provider_resource.clone();
        job.stage = crate::domain::JobStage::CleaningUp;
        state.store.create_job(&job).await?;
        state.deployer.notify();
        Some(job.id)
    } else {
        None
    };
    state.events.publish(
        &user.id,
        crate::events::EventKind::EndpointStatusChanged,
        json!({"endpoint_id": endpoint_id, "status": "terminated", "previous_status": endpoint.status}),
    );
    Ok(Json(
        json!({ "id": endpoint_id, "status": "terminated", "deleted": true, "provider_cleanup": job_id.as_ref().map(|_| "queued"), "cleanup_job_id": job_id }),
    ))
}

/// Loads an endpoint of the caller; anything else is a 404.
pub async fn owned_endpoint(
    state: &SharedState,
    user_id: &str,
    endpoint_id: &str,
) -> Result<Endpoint, HttpError> {
    state
        .store
        .get_endpoint(user_id, endpoint_id)
        .await
        .map_err(|error| not_found_as_endpoint(error.into()))
}

fn not_found_as_endpoint(error: HttpError) -> HttpError {
    if error.status == StatusCode::NOT_FOUND {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "endpoint_not_found",
            "endpoint not found",
        )
    } else {
        error
    }
}

pub(crate) fn validate_name(name: &str) -> Result<String, HttpError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(name.to_owned())
    } else {
        Err(HttpError::invalid_field(
            "name",
            "must be 1 to 64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

pub(crate) fn validate_description(description: String) -> Result<String, HttpError> {
    if description.chars().count() > 2000 {
        return Err(HttpError::invalid_field(
            "description",
            "must be at most 2000 characters",
        ));
    }
    Ok(description)
}

pub(crate) fn validate_base_url(field: &str, text: &str) -> Result<String, HttpError> {
    let uri: http::Uri = text.parse().map_err(|_| {
        HttpError::invalid_field(field, "must be an absolute http:// or https:// URL")
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() || uri.query().is_some() {
        return Err(HttpError::invalid_field(
            field,
            "must be an absolute http:// or https:// URL without a query",
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn validate_workers(min: i64, max: i64) -> Result<(i64, i64), HttpError> {
    let min = validate_range("min_workers", min, 0, 100)?;
    let max = validate_range("max_workers", max, 1, 100)?;
    if min > max {
        return Err(HttpError::invalid_field(
            "min_workers",
            "must not exceed max_workers",
        ));
    }
    Ok((min, max))
}

fn validate_range(field: &str, value: i64, low: i64, high: i64) -> Result<i64, HttpError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(HttpError::invalid_field(
            field,
            format!("must be between {low} and {high}"),
        ))
    }
}

fn validate_gpu(state: &SharedState, gpu: Option<String>) -> Result<Option<String>, HttpError> {
    match gpu.filter(|gpu| !gpu.is_empty()) {
        None => Ok(None),
        Some(gpu) => match state.pricing.gpu(&gpu) {
            Some(price) => Ok(Some(price.name.clone())),
            None => Err(HttpError::invalid_field(
                "gpu_type",
                format!(
                    "unknown GPU `{gpu}`; known: {}",
                    state
                        .pricing
                        .gpus
                        .iter()
                        .map(|gpu| gpu.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        },
    }
}

fn pricing_from(
    input: Option<PricingInput>,
    mut pricing: EndpointPricing,
) -> Result<EndpointPricing, HttpError> {
    let Some(input) = input else {
        return Ok(pricing);
    };
    let parse = |field: &str, amount: Amount| -> Result<i64, HttpError> {
        let text = match amount {
            Amount::Text(text) => text,
            Amount::Number(number) => number.to_string(),
        };
        parse_usd_to_nanos(&text).map_err(|_| {
            HttpError::invalid_field(
                format!("pricing.{field}"),
                "must be a non-negative dollar amount with at most 9 decimals",
            )
        })
    };
    if let Some(amount) = input.input_per_1k_tokens_usd {
        pricing.input_nanos_per_1k = parse("input_per_1k_tokens_usd", amount)?;
    }
    if let Some(amount) = input.output_per_1k_tokens_usd {
        pricing.output_nanos_per_1k = parse("output_per_1k_tokens_usd", amount)?;
    }
    if let Some(amount) = input.compute_per_second_usd {
        pricing.compute_nanos_per_second = Some(parse("compute_per_second_usd", amount)?);
    }
    Ok(pricing)
}

/// Reads the upstream's `/models` and returns the first model id.
async fn discover_model(
    state: &SharedState,
    base_url: &str,
    api_key: Option<&str>,
) -> Result<String, HttpError> {
    let failed = |reason: String| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "upstream_model_discovery_failed",
            format!(
                "could not read the upstream's models ({reason}); pass upstream.model explicitly"
            ),
        )
    };
    let authorization =
        api_key.and_then(|key| HeaderValue::from_str(&format!("Bearer {key}")).ok());
    let response = state
        .upstream
        .get(
            &format!("{base_url}/models"),
            authorization.as_ref(),
            Duration::from_secs(10),
        )
        .await
        .map_err(|error| failed(error.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), 4 * 1024 * 1024)
        .collect()
        .await
        .map_err(|error| failed(error.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(failed(format!("GET {base_url}/models answered {status}")));
    }
    #[derive(Deserialize)]
    struct Models {
        data: Vec<ModelEntry>,
    }
    #[derive(Deserialize)]
    struct ModelEntry {
        id: String,
    }
    let models: Models = serde_json::from_slice(&body)
        .map_err(|error| failed(format!("unexpected body: {error}")))?;
    models
        .data
        .into_iter()
        .map(|model| model.id)
        .next()
        .ok_or_else(|| failed("the upstream lists no models".to_owned()))
}

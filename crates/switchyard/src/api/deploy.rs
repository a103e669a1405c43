//! Deploy routes: preview, deploy from a Hugging Face model id, the
//! training-complete webhook, redeploy and the deployment status (which
//! hands out the new key once).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::endpoints::{owned_endpoint, validate_name};
use super::extract::parse_json;
use super::{views, ApiJson, ApiQuery, Caller};
use crate::deploy::flow::{unavailable_reason, Plan};
use crate::deploy::hub::{parse_model_reference, HubError};
use crate::deploy::{DeployError, DeployRequest, Deployer};
use crate::domain::{
    new_id, now_ms, Endpoint, EndpointPricing, EndpointStatus, EndpointType, JobKind, JobState,
    Modality, SourceType, UpstreamApi,
};
use crate::error::HttpError;
use crate::providers::ProviderKind;
use crate::selector::{
    parse_parameters, Budget, Latency, Precision, SelectionInput, SmartProviderSelector,
};
use crate::state::SharedState;

/// Largest gap between the webhook's timestamp and now.
const WEBHOOK_TOLERANCE_MS: i64 = 5 * 60 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    model_id: String,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    gpu_type: Option<String>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    modality: Option<Modality>,
    #[serde(default)]
    params: Option<String>,
    #[serde(default)]
    precision: Option<Precision>,
    #[serde(default)]
    budget: Option<Budget>,
    #[serde(default)]
    latency: Option<Latency>,
    #[serde(default)]
    requests_per_day: Option<u64>,
    #[serde(default)]
    min_workers: Option<i64>,
    #[serde(default)]
    max_workers: Option<i64>,
    #[serde(default)]
    idle_timeout_seconds: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    /// For `provider: "external"`: the base URL of a server that already runs.
    #[serde(default)]
    source_url: Option<String>,
}

/// Checks the provider and GPU a caller chose.
fn validate_choice(
    state: &SharedState,
    provider: Option<&str>,
    gpu: Option<&str>,
    source_url: Option<&str>,
) -> Result<(), HttpError> {
    if let Some(provider) = provider {
        let Some(kind) = ProviderKind::parse(provider) else {
            return Err(HttpError::invalid_field(
                "provider",
                format!("must be one of {}", ProviderKind::expected()),
            ));
        };
        if let Some(reason) = unavailable_reason(&state.deployer, provider) {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "provider_unavailable",
                format!("provider `{provider}` is unavailable: {reason}"),
            )
            .with_param("provider"));
        }
        if kind == ProviderKind::External && source_url.is_none() {
            return Err(HttpError::invalid_field(
                "source_url",
                "is required with provider `external` (the base URL of the running server)",
            ));
        }
    }
    if let Some(gpu) = gpu {
        let unpriced = matches!(provider, Some("self-hosted" | "external"));
        if !unpriced && state.pricing.gpu(gpu).is_none() {
            return Err(HttpError::invalid_field(
                "gpu_type",
                format!(
                    "unknown GPU `{gpu}`; known: {}",
                    state.pricing.gpu_names().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A revision is a branch, tag or commit: `[A-Za-z0-9._-]`, 1 to 128 characters, no `..`.
fn validate_revision(revision: &str) -> Result<(), HttpError> {
    let valid = !revision.is_empty()
        && revision.len() <= 128
        && !revision.contains("..")
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(HttpError::invalid_field(
            "revision",
            "must be a branch, tag or commit: 1 to 128 letters, digits, '.', '_' or '-'",
        ))
    }
}

fn range(field: &str, value: i64, low: i64, high: i64) -> Result<i64, HttpError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(HttpError::invalid_field(
            field,
            format!("must be between {low} and {high}"),
        ))
    }
}

/// A default endpoint name from a model id: its last part, lowercased.
fn name_from_model(model_id: &str) -> String {
    let last = model_id.rsplit('/').next().unwrap_or(model_id);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut name: String = trimmed.chars().take(64).collect();
    if name.is_empty() {
        name = "model".to_owned();
    }
    name
}

struct NewDeploy {
    request: DeployRequest,
    description: String,
    min_workers: i64,
    max_workers: i64,
    idle_timeout_seconds: i64,
    source_type: SourceType,
    base_model: Option<String>,
}

/// Most deploys one user may have running at once.
const MAX_ACTIVE_DEPLOYS: i64 = 10;

/// Creates the endpoint (provisioning) and its job; returns both views.
/// A user without credits cannot deploy (a warm worker costs money), nor
/// have more than [`MAX_ACTIVE_DEPLOYS`] deploys running.
async fn start_deploy(
    state: &SharedState,
    user_id: &str,
    new: NewDeploy,
) -> Result<(Endpoint, crate::domain::DeployJob), HttpError> {
    let balance = match state.registry.account(user_id) {
        Some(account) => account.balance(),
        None => state.store.get_user(user_id).await?.balance_micro_usd,
    };
    if balance <= 0 {
        return Err(HttpError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_credits",
            "your credit balance is exhausted; add credits before deploying",
        ));
    }
    if state.store.count_active_jobs_of_user(user_id).await? >= MAX_ACTIVE_DEPLOYS {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "too_many_deployments",
            format!(
                "at most {MAX_ACTIVE_DEPLOYS} deployments may run at once; wait for one to finish"
            ),
        )
        .with_retry_after(30));
    }
    let now = now_ms();
    let request = new.request;
    let endpoint = Endpoint {
        id: new_id(),
        user_id: user_id.to_owned(),
        name: request.model_name.clone(),
        description: new.description,
        modality: request.modality.unwrap_or(Modality::Llm),
        source_type: new.source_type,
        base_model: new.base_model,
        hf_repo_url: (request.source_url.is_none())
            .then(|| format!("https://huggingface.co/{}", request.model_id)),
        provider: request
            .provider
            .clone()
            .unwrap_or_else(|| "auto".to_owned()),
        provider_endpoint_id: None,
        endpoint_url: None,
        endpoint_type: EndpointType::Serverless,
        gpu_type: request.gpu_type.clone(),
        min_workers: new.min_workers,
        max_workers: new.max_workers,
        idle_timeout_seconds: new.idle_timeout_seconds,
        status: EndpointStatus::Provisioning,
        last_active_at: None,
        error_message: None,
        upstream_base_url: String::new(),
        upstream_api: UpstreamApi::OpenAi,
        upstream_model: String::new(),
        upstream_key_encrypted: None,
        timeout_seconds: None,
        pricing: EndpointPricing::default(),
        provider_resource: None,
        upstream_headers_encrypted: None,
        training_job_id: request.training_job_id.clone(),
        routing: crate::domain::Routing::default(),
        created_at: now,
        updated_at: now,
    };
    let job = Deployer::new_job(&endpoint.id, user_id, JobKind::Deploy, &request);
    state
        .store
        .create_endpoint_with_job(&endpoint, &job)
        .await?;
    state.registry.reload().await?;
    state.deployer.announce(&job, &endpoint.name);
    state.deployer.notify();
    Ok((endpoint, job))
}

fn accepted(
    state: &SharedState,
    headers: &HeaderMap,
    endpoint: &Endpoint,
    job: &crate::domain::DeployJob,
) -> Value {
    let public = views::public_url(state, headers);
    json!({
        "endpoint_id": endpoint.id,
        "job_id": job.id,
        "status": endpoint.status,
        "stage": job.stage,
        "endpoint": views::endpoint(endpoint, &public),
        "status_url": format!("/api/v1/endpoints/{}/deployment", endpoint.id),
        "events_url": "/api/v1/events",
    })
}

/// `POST /api/v1/endpoints/deploy`: answers at once with the endpoint id; the
/// deploy finishes in a background job.
pub async fn deploy(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DeployBody>,
) -> Result<impl IntoResponse, HttpError> {
    let external = body.provider.as_deref() == Some("external");
    let (model_id, url_revision) = if external {
        (body.model_id.trim().to_owned(), None)
    } else {
        parse_model_reference(&body.model_id)
            .map_err(|error| HttpError::invalid_field("model_id", error.to_string()))?
    };
    if model_id.is_empty() || model_id.len() > 200 {
        return Err(HttpError::invalid_field(
            "model_id",
            "must be 1 to 200 characters",
        ));
    }
    let source_url = match body.source_url.as_deref() {
        Some(url) => Some(super::endpoints::validate_base_url("source_url", url)?),
        None => None,
    };
    validate_choice(
        &state,
        body.provider.as_deref(),
        body.gpu_type.as_deref(),
        source_url.as_deref(),
    )?;
    let model_name = validate_name(
        &body
            .model_name
            .clone()
            .unwrap_or_else(|| name_from_model(&model_id)),
    )
    .map_err(|error| HttpError {
        param: Some("model_name".to_owned()),
        message: error.message.replacen("name:", "model_name:", 1),
        ..error
    })?;
    let parameters = body
        .params
        .as_deref()
        .map(|text| {
            parse_parameters(text).ok_or_else(|| {
                HttpError::invalid_field("params", "must be a parameter count such as 7B or 135M")
            })
        })
        .transpose()?;
    let (default_min, default_max, default_idle) =
        crate::selector::default_configuration(body.modality.unwrap_or(Modality::Llm));
    let min_workers = range(
        "min_workers",
        body.min_workers.unwrap_or(i64::from(default_min)),
        0,
        100,
    )?;
    let max_workers = range(
        "max_workers",
        body.max_workers.unwrap_or(i64::from(default_max)),
        1,
        100,
    )?;
    if min_workers > max_workers {
        return Err(HttpError::invalid_field(
            "min_workers",
            "must not exceed max_workers",
        ));
    }
    let idle_timeout_seconds = range(
        "idle_timeout_seconds",
        body.idle_timeout_seconds.unwrap_or(i64::from(default_idle)),
        1,
        86_400,
    )?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 2000 {
        return Err(HttpError::invalid_field(
            "description",
            "must be at most 2000 characters",
        ));
    }
    let revision = body.revision.or(url_revision);
    if let Some(revision) = &revision {
        validate_revision(revision)?;
    }
    let request = DeployRequest {
        model_id,
        revision,
        model_name,
        modality: body.modality,
        parameters,
        precision: body.precision,
        provider: body.provider,
        gpu_type: body.gpu_type,
        budget: body.budget,
        latency: body.latency,
        requests_per_day: body.requests_per_day,
        source_url,
        training_job_id: None,
    };
    let (endpoint, job) = start_deploy(
        &state,
        &user.id,
        NewDeploy {
            request,
            description,
            min_workers,
            max_workers,
            idle_timeout_seconds,
            source_type: if external {
                SourceType::External
            } else {
                SourceType::OpenSourceStudio
            },
            base_model: None,
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(accepted(&state, &headers, &endpoint, &job)),
    ))
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    model_id: Option<String>,
    provider: Option<String>,
    gpu_type: Option<String>,
    params: Option<String>,
    precision: Option<String>,
    modality: Option<String>,
    budget: Option<String>,
    latency: Option<String>,
    requests_per_day: Option<u64>,
}

fn parse_query_enum<T>(
    field: &str,
    value: Option<&str>,
    parse: fn(&str) -> Option<T>,
    expected: String,
) -> Result<Option<T>, HttpError> {
    value
        .filter(|text| !text.is_empty())
        .map(|text| {
            parse(text).ok_or_else(|| {
                HttpError::invalid_field(field, format!("must be one of {expected}"))
            })
        })
        .transpose()
}

/// `GET /api/v1/endpoints/deploy/preview?model_id=...`: recommendation,
/// alternatives and the monthly estimate in credits, before deploying.
pub async fn preview(
    State(state): State<SharedState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Json<Value>, HttpError> {
    let model = query
        .model_id
        .as_deref()
        .filter(|text| !text.is_empty())
        .ok_or_else(|| HttpError::invalid_field("model_id", "is required"))?;
    let (model_id, revision) = parse_model_reference(model)
        .map_err(|error| HttpError::invalid_field("model_id", error.to_string()))?;
    validate_choice(&state, None, query.gpu_type.as_deref(), None)?;
    if let Some(provider) = query.provider.as_deref().filter(|text| !text.is_empty()) {
        if !state.pricing.cold_start_ms.contains_key(provider) {
            return Err(HttpError::invalid_field(
                "provider",
                format!(
                    "no prices for `{provider}`; priced providers: {}",
                    state
                        .pricing
                        .cold_start_ms
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let modality = parse_query_enum(
        "modality",
        query.modality.as_deref(),
        Modality::parse,
        Modality::expected(),
    )?;
    let precision = parse_query_enum(
        "precision",
        query.precision.as_deref(),
        Precision::parse,
        Precision::expected(),
    )?;
    let budget = parse_query_enum(
        "budget",
        query.budget.as_deref(),
        Budget::parse,
        Budget::expected(),
    )?;
    let latency = parse_query_enum(
        "latency",
        query.latency.as_deref(),
        Latency::parse,
        Latency::expected(),
    )?;
    let parameters = query
        .params
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| {
            parse_parameters(text).ok_or_else(|| {
                HttpError::invalid_field("params", "must be a parameter count such as 7B")
            })
        })
        .transpose()?;
    let info = match state.deployer.hub.model_info(&model_id, revision.as_deref()).await {
        Ok(info)
            if info.private
                && !state
                    .store
                    .user_trained_repo(&caller.id, &format!("https://huggingface.co/{model_id}"))
                    .await? =>
        {
            // Read with the operator's token: do not show another tenant's private model.
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("model `{model_id}` does not exist on the Hugging Face Hub or is not visible with the configured HF_TOKEN"),
            ));
        }
        Ok(info) => Some(info),
        Err(error) if parameters.is_some() => {
            tracing::info!(%error, "hub analysis failed; using the given parameter count");
            None
        }
        Err(HubError::NotFound(id)) => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("model `{id}` does not exist on the Hugging Face Hub or is not visible with the configured HF_TOKEN"),
            ))
        }
        Err(error) => {
            return Err(HttpError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "model_analysis_failed",
                format!("{error}; pass params (e.g. params=7B) to preview without the Hub"),
            ))
        }
    };
    let profile = match &info {
        Some(info) => info
            .profile(modality, parameters, precision)
            .map_err(|error| {
                HttpError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request_error",
                    "model_size_unknown",
                    error.to_string(),
                )
            })?,
        None => crate::selector::ModelProfile {
            modality: modality.unwrap_or(Modality::Llm),
            parameters: parameters.unwrap_or(1),
            precision: precision.unwrap_or(Precision::Fp16),
        },
    };
    let requests_per_day = query.requests_per_day.unwrap_or(1000);
    let input = SelectionInput {
        model: profile,
        budget: budget.unwrap_or(Budget::Balanced),
        latency: latency.unwrap_or(Latency::Medium),
        requests_per_day,
        avg_duration_ms: crate::cli::recommend::default_duration_ms(profile.modality),
        providers: query
            .provider
            .clone()
            .filter(|text| !text.is_empty())
            .into_iter()
            .collect(),
        gpu: query.gpu_type.clone().filter(|text| !text.is_empty()),
        markup_basis_points: state.deployer.settings.markup_basis_points,
    };
    let availability = |provider: &str| unavailable_reason(&state.deployer, provider);
    let recommendation = SmartProviderSelector::new(&state.pricing)
        .select(&input, &availability)
        .map_err(|error| {
            HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "no_gpu_fits",
                error.to_string(),
            )
        })?;
    let document = recommendation.to_json();
    let providers: Vec<Value> = state
        .providers
        .availability()
        .into_iter()
        .map(|availability| {
            let reason = unavailable_reason(&state.deployer, availability.provider.as_str());
            json!({"provider": availability.provider, "available": reason.is_none(), "message": reason})
        })
        .collect();
    Ok(Json(json!({
        "preview": {
            "model": {
                "model_id": model_id,
                "revision": revision,
                "pipeline_tag": info.as_ref().and_then(|info| info.pipeline_tag.clone()),
                "modality": profile.modality,
                "parameters": profile.parameters,
                "precision": profile.precision,
                "vram_required_gb": recommendation.vram_required_gb,
                "gated": info.as_ref().is_some_and(|info| info.gated),
                "sha": info.as_ref().and_then(|info| info.sha.clone()),
            },
            "recommendation": document,
            "alternatives": document["alternatives"],
            "monthly_estimate": {
                "credits": document["cost_estimates"]["credits"]["monthly_estimate"],
                "usd": document["cost_estimates"]["monthly_estimate"],
                "requests_per_day": requests_per_day,
            },
            "deployable": recommendation.deployable,
            "providers": providers,
        }
    })))
}

/// `GET /api/v1/endpoints/{id}/deployment`: the latest job; the new key is
/// in the first answer after the deploy finished, never again.
pub async fn deployment_status(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let latest = || async {
        state
            .store
            .latest_deploy_job(&endpoint_id)
            .await?
            .ok_or_else(|| HttpError::not_found("deployment"))
    };
    let mut job = latest().await?;
    // Only the first deploy issues a key; it waits there until taken, even
    // after redeploys. When the key is taken the job is read again, so an
    // answer with the key always shows the deploy finished, and an answer
    // showing it finished without the key means someone already has it.
    let first = state.store.first_deploy_job(&endpoint_id).await?;
    let api_key = match first.filter(|first| first.state == JobState::Succeeded) {
        Some(first) => take_key(&state, &first.id).await,
        None => None,
    };
    if api_key.is_some() {
        job = latest().await?;
    }
    Ok(Json(
        json!({"deployment": job_view(&job), "api_key": api_key}),
    ))
}

/// Takes a job's new key once (decrypted), or `None` if it was handed out.
pub async fn take_key(state: &SharedState, job_id: &str) -> Option<String> {
    match state.store.take_job_key(job_id).await {
        Ok(Some(sealed)) => state.secrets.decrypt(&sealed).ok(),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot read the deploy key");
            None
        }
    }
}

/// The JSON view of a job (no secrets).
pub fn job_view(job: &crate::domain::DeployJob) -> Value {
    let plan: Plan = job
        .plan
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let option = plan.options.get(plan.index);
    json!({
        "job_id": job.id,
        "endpoint_id": job.endpoint_id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "percent": job.progress,
        "provider": option.map(|option| option.provider.clone()),
        "gpu_type": option.map(|option| option.gpu.clone()),
        "error": job.error,
        "attempts": serde_json::from_str::<Value>(&job.attempts).unwrap_or(Value::Null),
        "recommendation": plan.recommendation,
        "created_at": crate::domain::format_time(job.created_at),
        "updated_at": crate::domain::format_time(job.updated_at),
        "finished_at": job.finished_at.map(crate::domain::format_time),
    })
}

/// `POST /api/v1/endpoints/{id}/redeploy`: a new resource with the same
/// plan; the endpoint keeps serving from the old one until the new one is ready.
pub async fn redeploy(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    start_redeploy(&state, &endpoint).await.map(|job| {
        let public = views::public_url(&state, &headers);
        (
            StatusCode::ACCEPTED,
            Json(json!({"endpoint_id": endpoint.id, "job_id": job.id, "endpoint": views::endpoint(&endpoint, &public), "deployment": job_view(&job)})),
        )
    })
}

/// Queues a redeploy of an endpoint that Switchyard deployed.
pub async fn start_redeploy(
    state: &SharedState,
    endpoint: &Endpoint,
) -> Result<crate::domain::DeployJob, HttpError> {
    state
        .deployer
        .queue_redeploy(endpoint)
        .await
        .map_err(|error| match error {
            DeployError::InProgress => HttpError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "deployment_in_progress",
                error.to_string(),
            ),
            DeployError::NotDeployed => HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "not_deployed",
                error.to_string(),
            ),
            DeployError::Store(error) => error.into(),
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingComplete {
    training_job_id: String,
    user_id: String,
    model_url: String,
    modality: Modality,
    #[serde(default)]
    base_model_id: Option<String>,
    model_name: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    gpu_type: Option<String>,
    #[serde(default)]
    params: Option<String>,
    #[serde(default)]
    precision: Option<Precision>,
}

/// Verifies `X-Switchyard-Signature: sha256=<hex HMAC-SHA-256 of "<timestamp>.<body>">`
/// with `X-Switchyard-Timestamp` (ms) within five minutes, in constant time.
pub fn verify_signature(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let timestamp = headers
        .get("x-switchyard-timestamp")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .ok_or("missing or invalid X-Switchyard-Timestamp (epoch milliseconds)")?;
    if (now - timestamp).abs() > WEBHOOK_TOLERANCE_MS {
        return Err("X-Switchyard-Timestamp is more than five minutes away from now");
    }
    let signature = headers
        .get("x-switchyard-signature")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("sha256="))
        .and_then(|value| hex::decode(value).ok())
        .ok_or("missing or invalid X-Switchyard-Signature (sha256=<hex>)")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| "bad secret")?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| "the signature does not match")
}

/// Signs a webhook body the way [`verify_signature`] checks it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /api/v1/hooks/training-complete`: auto-deploys a trained model;
/// idempotent per (user, training job).
pub async fn training_complete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    let Some(secret) = state.deployer.settings.training_webhook_secret.as_deref() else {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "webhook_not_configured",
            "set SWITCHYARD_TRAINING_WEBHOOK_SECRET to accept training-complete webhooks",
        ));
    };
    if body.len() > 64 * 1024 {
        return Err(HttpError::too_large(64 * 1024));
    }
    verify_signature(secret, &headers, &body, now_ms()).map_err(|reason| {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_signature",
            reason,
        )
    })?;
    let payload: TrainingComplete = parse_json(&body)?;
    if payload.training_job_id.is_empty() || payload.training_job_id.len() > 200 {
        return Err(HttpError::invalid_field(
            "training_job_id",
            "must be 1 to 200 characters",
        ));
    }
    let user = match state.store.get_user(&payload.user_id).await {
        Ok(user) => user,
        Err(crate::store::StoreError::NotFound) => {
            return Err(HttpError::invalid_field("user_id", "no such user"))
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(existing) = state
        .store
        .endpoint_for_training_job(&user.id, &payload.training_job_id)
        .await?
    {
        let job = state.store.latest_deploy_job(&existing.id).await?;
        return Ok((
            StatusCode::OK,
            Json(
                json!({"endpoint_id": existing.id, "job_id": job.as_ref().map(|job| job.id.clone()), "status": existing.status, "duplicate": true}),
            ),
        ));
    }
    let (model_id, revision) = parse_model_reference(&payload.model_url)
        .map_err(|error| HttpError::invalid_field("model_url", error.to_string()))?;
    validate_choice(
        &state,
        payload.provider.as_deref(),
        payload.gpu_type.as_deref(),
        None,
    )?;
    let parameters = payload
        .params
        .as_deref()
        .map(|text| {
            parse_parameters(text).ok_or_else(|| {
                HttpError::invalid_field("params", "must be a parameter count such as 7B")
            })
        })
        .transpose()?;
    let base_name = name_from_model(&payload.model_name);
    let mut model_name = validate_name(&base_name).map_err(|error| HttpError {
        param: Some("model_name".to_owned()),
        ..error
    })?;
    if state
        .store
        .list_endpoints(&user.id, &Default::default())
        .await?
        .iter()
        .any(|endpoint| endpoint.name == model_name)
    {
        // A retrained model with the same name gets the training job's tail.
        let tail: String = payload
            .training_job_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .rev()
            .take(8)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        model_name = format!(
            "{}-{}",
            model_name.chars().take(55).collect::<String>(),
            tail.to_ascii_lowercase()
        );
    }
    let (min_workers, max_workers, idle) = crate::selector::default_configuration(payload.modality);
    let request = DeployRequest {
        model_id,
        revision,
        model_name,
        modality: Some(payload.modality),
        parameters,
        precision: payload.precision,
        provider: payload.provider,
        gpu_type: payload.gpu_type,
        budget: None,
        latency: None,
        requests_per_day: None,
        source_url: None,
        training_job_id: Some(payload.training_job_id.clone()),
    };
    let result = start_deploy(
        &state,
        &user.id,
        NewDeploy {
            request,
            description: format!("Trained by job {}", payload.training_job_id),
            min_workers: i64::from(min_workers),
            max_workers: i64::from(max_workers),
            idle_timeout_seconds: i64::from(idle),
            source_type: SourceType::Training,
            base_model: payload.base_model_id,
        },
    )
    .await;
    match result {
        Ok((endpoint, job)) => Ok((
            StatusCode::ACCEPTED,
            Json(accepted(&state, &headers, &endpoint, &job)),
        )),
        Err(error) if error.status == StatusCode::CONFLICT => {
            // Two deliveries raced: the other one created the endpoint.
            let existing = state
                .store
                .endpoint_for_training_job(&user.id, &payload.training_job_id)
                .await?
                .ok_or(error)?;
            Ok((
                StatusCode::OK,
                Json(
                    json!({"endpoint_id": existing.id, "status": existing.status, "duplicate": true}),
                ),
            ))
        }
        Err(error) => Err(error),
    }
}

/// `GET /api/v1/endpoints/{id}/health`: a fresh check (provider and the
/// gateway's last 15 minutes), without recovery.
pub async fn endpoint_health(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let health =
        crate::deploy::monitor::check(&state.deployer, &endpoint, &state.deployer.settings.monitor)
            .await;
    Ok(Json(json!({ "health": health })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_time_and_only_with_the_secret() {
        let body = br#"{"training_job_id":"t1"}"#;
        let now = 1_800_000_000_000;
        let mut headers = HeaderMap::new();
        headers.insert("x-switchyard-timestamp", now.to_string().parse().unwrap());
        headers.insert(
            "x-switchyard-signature",
            sign("s3cret", now, body).parse().unwrap(),
        );
        assert_eq!(
            verify_signature("s3cret", &headers, body, now + 1000),
            Ok(())
        );
        assert!(verify_signature("other", &headers, body, now).is_err());
        assert!(verify_signature("s3cret", &headers, b"{}", now).is_err());
        assert!(
            verify_signature("s3cret", &headers, body, now + WEBHOOK_TOLERANCE_MS + 1).is_err()
        );
        headers.remove("x-switchyard-signature");
        assert!(verify_signature("s3cret", &headers, body, now).is_err());
    }

    #[test]
    fn endpoint_names_come_from_model_ids() {
        assert_eq!(
            name_from_model("Qwen/Qwen2.5-7B-Instruct"),
            "qwen2.5-7b-instruct"
        );
        assert_eq!(name_from_model("org/My Model!"), "my-model-");
        assert_eq!(name_from_model("___"), "model");
    }
}

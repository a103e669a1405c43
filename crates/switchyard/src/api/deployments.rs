//! Deployments of API-based and self-hosted models.
//!
//! Rules: a deployment belongs to the caller and is made from a model the
//! caller can see that is active (400 `Model is not active` otherwise). No
//! node or GPU is chosen for these models: `node_id`, `resource`, `gpu_type`
//! and `resources` are refused by name. Creating one writes, in one
//! transaction, the deployment, an endpoint row routed to the model's API and
//! an internal API key of that endpoint (its secret is thrown away; it meters
//! calls made with the owner's management token). Stopping sets the endpoint
//! to `stopped`, so the OpenAI-compatible gateway refuses it too; deleting
//! terminates it. Every write reloads the gateway snapshot before answering.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoints::validate_name;
use super::keys::{new_key, CreateKey};
use super::models::{endpoint_upstream, visible_model, Page};
use super::{views, ApiJson, ApiQuery, Caller};
use crate::domain::{
    format_time, new_id, now_ms, Endpoint, EndpointPricing, EndpointStatus, EndpointType, Modality,
    SourceType,
};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::{
    Deployment, DeploymentStatus, DeploymentUsage, DeploymentWithModel, ModelType, StoreError,
};

/// Requests per minute of a deployment's internal key.
const INTERNAL_KEY_PER_MINUTE: i64 = 6_000;
/// Requests per day of a deployment's internal key.
const INTERNAL_KEY_PER_DAY: i64 = 1_000_000;

/// `POST /api/v1/deployments`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    name: String,
    #[serde(default)]
    description: Option<String>,
    model_id: String,
    /// Accepted only to be refused by name.
    #[serde(default)]
    node_id: Option<Value>,
    #[serde(default)]
    resource: Option<Value>,
    #[serde(default)]
    gpu_type: Option<Value>,
    #[serde(default)]
    resources: Option<Value>,
}

/// `GET /api/v1/deployments?status=&page=&per_page=` (or `limit`/`offset`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeploymentListQuery {
    status: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `POST /api/v1/deployments`.
pub async fn create_deployment(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateDeployment>,
) -> Result<impl IntoResponse, HttpError> {
    for (field, value) in [
        ("node_id", &request.node_id),
        ("resource", &request.resource),
        ("gpu_type", &request.gpu_type),
        ("resources", &request.resources),
    ] {
        if value.is_some() {
            return Err(HttpError::invalid_field(
                field,
                "node/resource selection is not allowed for api-based models",
            ));
        }
    }
    let name = validate_name(&request.name)?;
    let description =
        super::endpoints::validate_description(request.description.unwrap_or_default())?;
    let model = visible_model(&state, &user.id, &request.model_id).await?;
    if !model.is_active {
        return Err(model_not_active());
    }
    let upstream = endpoint_upstream(&state.secrets, &model)?;
    let now = now_ms();
    let endpoint = Endpoint {
        id: new_id(),
        user_id: user.id.clone(),
        name: name.clone(),
        description: description.clone(),
        modality: match model.model_type {
            ModelType::Llm => Modality::Llm,
            ModelType::Embedding => Modality::Embedding,
        },
        source_type: SourceType::External,
        base_model: Some(model.model_identifier.clone()),
        hf_repo_url: None,
        provider: model.provider.clone(),
        provider_endpoint_id: None,
        endpoint_url: Some(model.api_endpoint.clone()),
        endpoint_type: EndpointType::Serverless,
        gpu_type: None,
        min_workers: 0,
        max_workers: 1,
        idle_timeout_seconds: 300,
        status: EndpointStatus::Active,
        last_active_at: None,
        error_message: None,
        upstream_base_url: upstream.base_url,
        upstream_api: upstream.upstream_api,
        upstream_model: model.model_identifier.clone(),
        upstream_key_encrypted: upstream.key_encrypted,
        timeout_seconds: None,
        pricing: EndpointPricing::default(),
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
    let (key, _secret) = new_key(
        &endpoint,
        CreateKey::with_limits("deployment", INTERNAL_KEY_PER_MINUTE, INTERNAL_KEY_PER_DAY),
        &state.secrets,
    )?;
    let deployment = Deployment {
        id: new_id(),
        user_id: user.id.clone(),
        name,
        description,
        model_id: model.id.clone(),
        endpoint_id: endpoint.id.clone(),
        key_id: key.id.clone(),
        status: DeploymentStatus::Running,
        created_at: now,
        updated_at: now,
    };
    match state
        .store
        .create_deployment(&deployment, &endpoint, &key)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(message)) if message == "Model is not active" => {
            return Err(model_not_active());
        }
        Err(error) => return Err(error.into()),
    }
    state.registry.reload().await?;
    let found = DeploymentWithModel {
        deployment,
        model_name: Some(model.name),
        model_provider: Some(model.provider),
        model_identifier: Some(model.model_identifier),
    };
    let public = views::public_url(&state, &headers);
    Ok((
        StatusCode::CREATED,
        Json(render(&found, DeploymentUsage::default(), &public)),
    ))
}

/// `GET /api/v1/deployments`: a page of the caller's deployments and counts by status.
pub async fn list_deployments(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<DeploymentListQuery>,
) -> Result<Json<Value>, HttpError> {
    let page = Page::from_query(query.page, query.per_page, query.limit, query.offset)?;
    let status = query
        .status
        .filter(|text| !text.is_empty())
        .map(|text| {
            DeploymentStatus::parse(&text).ok_or_else(|| {
                HttpError::invalid_field(
                    "status",
                    format!("must be one of {}", DeploymentStatus::expected()),
                )
            })
        })
        .transpose()?;
    let (deployments, total) = state
        .store
        .list_deployments(&user.id, status, page.per_page, page.offset)
        .await?;
    let endpoint_ids: Vec<&str> = deployments
        .iter()
        .map(|found| found.deployment.endpoint_id.as_str())
        .collect();
    let usage = state.store.usage_of_endpoints(&endpoint_ids).await?;
    let counts = state.store.count_deployments_by_status(&user.id).await?;
    let public = views::public_url(&state, &headers);
    let by_status: serde_json::Map<String, Value> = DeploymentStatus::ALL
        .iter()
        .map(|status| {
            (
                status.as_str().to_owned(),
                json!(counts.get(status).copied().unwrap_or(0)),
            )
        })
        .collect();
    Ok(Json(json!({
        "data": deployments.iter().map(|found| {
            let used = usage.get(&found.deployment.endpoint_id).copied().unwrap_or_default();
            render(found, used, &public)
        }).collect::<Vec<_>>(),
        "pagination": page.render(total),
        "statistics": {
            "total": counts.values().sum::<i64>(),
            "byStatus": by_status,
        },
    })))
}

/// `GET /api/v1/deployments/{id}`.
pub async fn get_deployment(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(deployment_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    rendered(&state, &user.id, &deployment_id, &headers).await
}

/// `POST /api/v1/deployments/{id}/start`: the model must still be visible and active.
pub async fn start_deployment(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(deployment_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let found = owned_deployment(&state, &user.id, &deployment_id).await?;
    let model = state
        .store
        .get_visible_model(&user.id, &found.deployment.model_id)
        .await;
    match model {
        Ok(model) if model.is_active => {}
        Ok(_) => return Err(model_not_active()),
        Err(StoreError::NotFound) => {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_not_found",
                "the deployment's model was deleted or is no longer shared",
            ));
        }
        Err(error) => return Err(error.into()),
    }
    set_status(&state, &user.id, &deployment_id, DeploymentStatus::Running).await?;
    rendered(&state, &user.id, &deployment_id, &headers).await
}

/// `POST /api/v1/deployments/{id}/stop`: the endpoint refuses requests until started.
pub async fn stop_deployment(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(deployment_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    owned_deployment(&state, &user.id, &deployment_id).await?;
    set_status(&state, &user.id, &deployment_id, DeploymentStatus::Stopped).await?;
    rendered(&state, &user.id, &deployment_id, &headers).await
}

/// `DELETE /api/v1/deployments/{id}`: soft delete; the endpoint is terminated.
pub async fn delete_deployment(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(deployment_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    state
        .store
        .delete_deployment(&user.id, &deployment_id)
        .await
        .map_err(|error| deployment_not_found(error.into()))?;
    state.registry.reload().await?;
    Ok(Json(
        json!({ "id": deployment_id, "object": "deployment", "deleted": true, "endpoint_status": "terminated" }),
    ))
}

/// Loads one of the caller's live deployments; anything else is a 404.
pub async fn owned_deployment(
    state: &SharedState,
    user_id: &str,
    deployment_id: &str,
) -> Result<DeploymentWithModel, HttpError> {
    state
        .store
        .get_deployment(user_id, deployment_id)
        .await
        .map_err(|error| deployment_not_found(error.into()))
}

/// The 404 of a deployment the caller may not see.
pub fn deployment_not_found(error: HttpError) -> HttpError {
    if error.status == StatusCode::NOT_FOUND {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "deployment_not_found",
            "deployment not found",
        )
    } else {
        error
    }
}

async fn set_status(
    state: &SharedState,
    user_id: &str,
    deployment_id: &str,
    status: DeploymentStatus,
) -> Result<(), HttpError> {
    state
        .store
        .set_deployment_status(user_id, deployment_id, status)
        .await
        .map_err(|error| deployment_not_found(error.into()))?;
    state.registry.reload().await?;
    Ok(())
}

async fn rendered(
    state: &SharedState,
    user_id: &str,
    deployment_id: &str,
    headers: &HeaderMap,
) -> Result<Json<Value>, HttpError> {
    let found = owned_deployment(state, user_id, deployment_id).await?;
    let usage = state
        .store
        .usage_of_endpoints(&[found.deployment.endpoint_id.as_str()])
        .await?;
    let used = usage
        .get(&found.deployment.endpoint_id)
        .copied()
        .unwrap_or_default();
    let public = views::public_url(state, headers);
    Ok(Json(render(&found, used, &public)))
}

fn model_not_active() -> HttpError {
    HttpError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "model_not_active",
        "Model is not active",
    )
    .with_param("model_id")
}

/// Renders a deployment with its model summary, usage and inference URL.
fn render(found: &DeploymentWithModel, usage: DeploymentUsage, public_url: &str) -> Value {
    let deployment = &found.deployment;
    json!({
        "id": deployment.id,
        "object": "deployment",
        "name": deployment.name,
        "description": deployment.description,
        "status": deployment.status,
        "model_id": deployment.model_id,
        "model": {
            "id": deployment.model_id,
            "name": found.model_name,
            "provider": found.model_provider,
            "model_identifier": found.model_identifier,
        },
        "endpoint_id": deployment.endpoint_id,
        "inference_url": format!("{public_url}/api/v1/deployments/{}/inference", deployment.id),
        "request_count": usage.request_count,
        "total_tokens": usage.total_tokens,
        "created_at": format_time(deployment.created_at),
        "updated_at": format_time(deployment.updated_at),
    })
}

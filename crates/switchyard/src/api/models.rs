//! Models: API-based models (OpenAI, Anthropic, Google, Azure) and self-hosted
//! OpenAI-compatible servers that deployments route to.
//!
//! Rules: a model is visible to its owner and, with `scope: "org"`, to every
//! user; another user's private model is a 404 and only the owner changes,
//! (de)activates or deletes a model (403 for an org model of someone else).
//! `api_config` holds the credential (`apiKey`, `x-api-key` or `api-key`), an
//! optional `api_version` and `header-<Name>` entries; it is stored encrypted
//! as a whole and rendered only as `api_config_keys` and `has_credentials`.
//! A change of the endpoint, identifier or config is copied to the endpoints
//! of the model's live deployments before the answer, and the gateway
//! snapshot is reloaded.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::endpoints::{validate_base_url, validate_description};
use super::{ApiJson, ApiQuery, Caller};
use crate::domain::{format_time, new_id, now_ms, UpstreamApi};
use crate::error::HttpError;
use crate::gateway::native::gateway_base_url;
use crate::secrets::Secrets;
use crate::state::SharedState;
use crate::store::{DeploymentType, EndpointPatch, Model, ModelScope, ModelType, StoreError};

/// Providers an API-based model may name.
const API_PROVIDERS: &[&str] = &["openai", "anthropic", "google", "azure"];

/// `api_config` keys that carry the provider credential.
const CREDENTIAL_KEYS: &[&str] = &["apiKey", "x-api-key", "api-key"];

/// Headers a `header-<Name>` entry may not set: framing and routing belong to the gateway.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// `POST /api/v1/models`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    name: String,
    #[serde(rename = "type")]
    model_type: ModelType,
    #[serde(default)]
    description: Option<String>,
    deployment_type: DeploymentType,
    #[serde(default)]
    provider: Option<String>,
    api_endpoint: String,
    model_identifier: String,
    #[serde(default)]
    api_config: Option<Map<String, Value>>,
    #[serde(default)]
    scope: Option<ModelScope>,
}

/// `PATCH /api/v1/models/{id}`: every field optional; `api_config` replaces the stored one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    api_endpoint: Option<String>,
    #[serde(default)]
    model_identifier: Option<String>,
    #[serde(default)]
    api_config: Option<Map<String, Value>>,
    #[serde(default)]
    scope: Option<ModelScope>,
}

/// Pagination parameters: `page`/`per_page`, or `limit`/`offset`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The validated `api_config` of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    /// The provider credential, sent in the header the provider expects.
    pub credential: Option<String>,
    /// Azure's `api-version`.
    pub api_version: Option<String>,
    /// Extra headers from `header-<Name>` entries, in the order given.
    pub headers: Vec<(String, String)>,
    /// The entry names, for rendering.
    pub keys: Vec<String>,
}

/// A page of a list: its number, size and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
    pub offset: i64,
}

impl Page {
    /// Validates `page`/`per_page` (or `limit`/`offset`); 20 per page by default, at most 100.
    pub fn from_query(
        page: Option<i64>,
        per_page: Option<i64>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<Self, HttpError> {
        let (size_field, size) = match (per_page, limit) {
            (Some(size), _) => ("per_page", size),
            (None, Some(size)) => ("limit", size),
            (None, None) => ("per_page", 20),
        };
        if !(1..=100).contains(&size) {
            return Err(HttpError::invalid_field(
                size_field,
                "must be between 1 and 100",
            ));
        }
        match (page, offset) {
            (Some(_), Some(_)) => Err(HttpError::invalid_field(
                "offset",
                "give either page or offset, not both",
            )),
            (_, Some(offset)) if !(0..=100_000_000).contains(&offset) => Err(
                HttpError::invalid_field("offset", "must be between 0 and 100000000"),
            ),
            (_, Some(offset)) => Ok(Self {
                page: offset / size + 1,
                per_page: size,
                offset,
            }),
            (page, None) => {
                let page = page.unwrap_or(1);
                if !(1..=1_000_000).contains(&page) {
                    return Err(HttpError::invalid_field(
                        "page",
                        "must be between 1 and 1000000",
                    ));
                }
                Ok(Self {
                    page,
                    per_page: size,
                    offset: (page - 1) * size,
                })
            }
        }
    }

    /// The `pagination` object of a list answer.
    pub fn render(self, total: i64) -> Value {
        json!({
            "page": self.page,
            "per_page": self.per_page,
            "total": total,
            "total_pages": (total + self.per_page - 1) / self.per_page,
        })
    }
}

/// `POST /api/v1/models`.
pub async fn create_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    ApiJson(request): ApiJson<CreateModel>,
) -> Result<impl IntoResponse, HttpError> {
    let name = validate_model_name(&request.name)?;
    let description = validate_description(request.description.unwrap_or_default())?;
    let provider = validate_provider(request.deployment_type, request.provider.as_deref())?;
    let api_endpoint = validate_api_endpoint(&request.api_endpoint)?;
    let model_identifier = validate_identifier(&request.model_identifier)?;
    let config_json = request.api_config.unwrap_or_default();
    let config = parse_api_config(&config_json, request.deployment_type)?;
    let now = now_ms();
    let model = Model {
        id: new_id(),
        user_id: user.id,
        name,
        description,
        model_type: request.model_type,
        deployment_type: request.deployment_type,
        provider,
        api_endpoint,
        model_identifier,
        api_config_encrypted: state
            .secrets
            .encrypt(&Value::Object(config_json).to_string()),
        api_config_keys: config.keys,
        scope: request.scope.unwrap_or(ModelScope::User),
        is_active: true,
        created_at: now,
        updated_at: now,
    };
    state.store.create_model(&model).await?;
    Ok((StatusCode::CREATED, Json(render(&model, &model.user_id))))
}

/// `GET /api/v1/models`: the caller's models and every `org` model.
pub async fn list_models(
    State(state): State<SharedState>,
    Caller(user): Caller,
    ApiQuery(query): ApiQuery<ModelListQuery>,
) -> Result<Json<Value>, HttpError> {
    let page = Page::from_query(query.page, query.per_page, query.limit, query.offset)?;
    let (models, total) = state
        .store
        .list_visible_models(&user.id, page.per_page, page.offset)
        .await?;
    Ok(Json(json!({
        "data": models.iter().map(|model| render(model, &user.id)).collect::<Vec<_>>(),
        "pagination": page.render(total),
    })))
}

/// `GET /api/v1/models/{id}`.
pub async fn get_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(model_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let model = visible_model(&state, &user.id, &model_id).await?;
    Ok(Json(render(&model, &user.id)))
}

/// `PATCH /api/v1/models/{id}`.
pub async fn update_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(model_id): Path<String>,
    ApiJson(request): ApiJson<UpdateModel>,
) -> Result<Json<Value>, HttpError> {
    let mut model = owned_model(&state, &user.id, &model_id).await?;
    if let Some(name) = &request.name {
        model.name = validate_model_name(name)?;
    }
    if let Some(description) = request.description {
        model.description = validate_description(description)?;
    }
    let upstream_changed = request.api_endpoint.is_some()
        || request.model_identifier.is_some()
        || request.api_config.is_some();
    if let Some(api_endpoint) = &request.api_endpoint {
        model.api_endpoint = validate_api_endpoint(api_endpoint)?;
    }
    if let Some(identifier) = &request.model_identifier {
        model.model_identifier = validate_identifier(identifier)?;
    }
    if let Some(config_json) = request.api_config {
        let config = parse_api_config(&config_json, model.deployment_type)?;
        model.api_config_encrypted = state
            .secrets
            .encrypt(&Value::Object(config_json).to_string());
        model.api_config_keys = config.keys;
    }
    if let Some(scope) = request.scope {
        model.scope = scope;
    }
    model.updated_at = now_ms().max(model.updated_at + 1);
    state
        .store
        .update_model(&model)
        .await
        .map_err(|error| model_not_found(error.into()))?;
    if upstream_changed {
        propagate_upstream(&state, &model).await?;
    }
    Ok(Json(render(&model, &user.id)))
}

/// `DELETE /api/v1/models/{id}`: soft delete, refused (409) while a running deployment uses it.
pub async fn delete_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(model_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    owned_model(&state, &user.id, &model_id).await?;
    state
        .store
        .delete_model(&user.id, &model_id)
        .await
        .map_err(|error| model_not_found(error.into()))?;
    Ok(Json(
        json!({ "id": model_id, "object": "model", "deleted": true }),
    ))
}

/// `POST /api/v1/models/{id}/activate`.
pub async fn activate_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(model_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    set_active(&state, &user.id, &model_id, true).await
}

/// `POST /api/v1/models/{id}/deactivate`: new deployments are refused; running ones keep running.
pub async fn deactivate_model(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(model_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    set_active(&state, &user.id, &model_id, false).await
}

async fn set_active(
    state: &SharedState,
    user_id: &str,
    model_id: &str,
    active: bool,
) -> Result<Json<Value>, HttpError> {
    let mut model = owned_model(state, user_id, model_id).await?;
    model.is_active = active;
    model.updated_at = now_ms().max(model.updated_at + 1);
    state
        .store
        .update_model(&model)
        .await
        .map_err(|error| model_not_found(error.into()))?;
    Ok(Json(render(&model, user_id)))
}

/// Loads a model the caller may see; anything else is a 404.
pub async fn visible_model(
    state: &SharedState,
    user_id: &str,
    model_id: &str,
) -> Result<Model, HttpError> {
    state
        .store
        .get_visible_model(user_id, model_id)
        .await
        .map_err(|error| model_not_found(error.into()))
}

/// Loads a model the caller owns: invisible → 404, someone else's org model → 403.
async fn owned_model(
    state: &SharedState,
    user_id: &str,
    model_id: &str,
) -> Result<Model, HttpError> {
    let model = visible_model(state, user_id, model_id).await?;
    if model.user_id != user_id {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "not_model_owner",
            "only the owner of an org model can change it",
        ));
    }
    Ok(model)
}

fn model_not_found(error: HttpError) -> HttpError {
    if error.status == StatusCode::NOT_FOUND {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            "model not found",
        )
    } else {
        error
    }
}

/// The upstream of a model as an endpoint row stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUpstream {
    pub upstream_api: UpstreamApi,
    pub base_url: String,
    pub key_encrypted: Option<String>,
    pub headers_encrypted: Option<String>,
    /// Azure OpenAI `api-version` from `api_config`.
    pub api_version: Option<String>,
}

/// Decrypts a model's `api_config` and derives what its endpoints store.
pub fn endpoint_upstream(secrets: &Secrets, model: &Model) -> Result<EndpointUpstream, HttpError> {
    let text = secrets.decrypt(&model.api_config_encrypted)?;
    let config_json: Map<String, Value> = serde_json::from_str(&text).map_err(|error| {
        tracing::error!(model_id = %model.id, %error, "stored api_config is not a JSON object");
        HttpError::internal()
    })?;
    let config = parse_api_config(&config_json, model.deployment_type)?;
    let upstream_api = upstream_api(&model.provider);
    let headers_encrypted = if config.headers.is_empty() {
        None
    } else {
        let pairs = serde_json::to_string(&config.headers).map_err(|_| HttpError::internal())?;
        Some(secrets.encrypt(&pairs))
    };
    Ok(EndpointUpstream {
        upstream_api,
        base_url: gateway_base_url(upstream_api, &model.api_endpoint),
        key_encrypted: config.credential.as_deref().map(|key| secrets.encrypt(key)),
        headers_encrypted,
        api_version: config.api_version,
    })
}

/// The wire protocol of a provider.
pub fn upstream_api(provider: &str) -> UpstreamApi {
    match provider {
        "anthropic" => UpstreamApi::Anthropic,
        "google" => UpstreamApi::Google,
        "azure" => UpstreamApi::Azure,
        _ => UpstreamApi::OpenAi,
    }
}

/// Copies a model's new upstream to the endpoints of its live deployments and reloads.
async fn propagate_upstream(state: &SharedState, model: &Model) -> Result<(), HttpError> {
    let deployments = state.store.list_model_deployments(&model.id).await?;
    if deployments.is_empty() {
        return Ok(());
    }
    for deployment in deployments {
        let upstream = endpoint_upstream(&state.secrets, model)?;
        let patch = EndpointPatch {
            upstream_base_url: Some(upstream.base_url),
            upstream_api: Some(upstream.upstream_api),
            upstream_model: Some(model.model_identifier.clone()),
            upstream_key_encrypted: Some(upstream.key_encrypted),
            upstream_headers_encrypted: Some(upstream.headers_encrypted),
            endpoint_url: Some(Some(model.api_endpoint.clone())),
            api_version: Some(upstream.api_version),
            ..EndpointPatch::default()
        };
        match state
            .store
            .update_endpoint(&deployment.user_id, &deployment.endpoint_id, patch)
            .await
        {
            // Its endpoint was terminated underneath it: nothing to update
            // (the deployment answers 503 until deleted).
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
    }
    state.registry.reload().await?;
    Ok(())
}

/// Renders a model; credentials appear only as entry names and `has_credentials`.
pub fn render(model: &Model, caller_id: &str) -> Value {
    let has_credentials = model
        .api_config_keys
        .iter()
        .any(|key| CREDENTIAL_KEYS.contains(&key.as_str()));
    json!({
        "id": model.id,
        "object": "model",
        "name": model.name,
        "description": model.description,
        "type": model.model_type,
        "deployment_type": model.deployment_type,
        "provider": model.provider,
        "api_endpoint": model.api_endpoint,
        "model_identifier": model.model_identifier,
        "api_config_keys": model.api_config_keys,
        "has_credentials": has_credentials,
        "scope": model.scope,
        "is_active": model.is_active,
        "owner_id": model.user_id,
        "is_owner": model.user_id == caller_id,
        "created_at": format_time(model.created_at),
        "updated_at": format_time(model.updated_at),
    })
}

/// Validates `api_config`: string values, known keys, one credential, valid header names.
pub fn parse_api_config(
    config: &Map<String, Value>,
    deployment_type: DeploymentType,
) -> Result<ApiConfig, HttpError> {
    let mut parsed = ApiConfig::default();
    for (key, value) in config {
        let field = format!("api_config.{key}");
        let Value::String(text) = value else {
            return Err(HttpError::invalid_field(field, "must be a string"));
        };
        if text.len() > 8192 || http::HeaderValue::from_str(text).is_err() {
            return Err(HttpError::invalid_field(
                field,
                "must be printable text of at most 8192 bytes",
            ));
        }
        if CREDENTIAL_KEYS.contains(&key.as_str()) {
            if parsed.credential.is_some() {
                return Err(HttpError::invalid_field(
                    field,
                    "give only one of apiKey, x-api-key or api-key",
                ));
            }
            if text.is_empty() {
                return Err(HttpError::invalid_field(field, "must not be empty"));
            }
            parsed.credential = Some(text.clone());
        } else if key == "api_version" {
            // It goes into the upstream URL's query (`?api-version=`).
            let valid = !text.is_empty()
                && text.len() <= 40
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(HttpError::invalid_field(field, "must look like 2024-10-21"));
            }
            parsed.api_version = Some(text.clone());
        } else if let Some(name) = key.strip_prefix("header-") {
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !valid {
                return Err(HttpError::invalid_field(
                    field,
                    "`header-` must be followed by a valid HTTP header name",
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(HttpError::invalid_field(
                    field,
                    format!("the `{name}` header is set by the gateway"),
                ));
            }
            parsed.headers.push((name.to_owned(), text.clone()));
        } else {
            return Err(HttpError::invalid_field(
                field,
                "unknown key; allowed: apiKey, x-api-key, api-key, api_version and header-<Name>",
            ));
        }
        parsed.keys.push(key.clone());
    }
    if deployment_type == DeploymentType::ApiBased && parsed.credential.is_none() {
        return Err(HttpError::invalid_field(
            "api_config",
            "an API-based model needs its credential as apiKey, x-api-key or api-key",
        ));
    }
    Ok(parsed)
}

fn validate_provider(
    deployment_type: DeploymentType,
    provider: Option<&str>,
) -> Result<String, HttpError> {
    match (deployment_type, provider) {
        (DeploymentType::ApiBased, None) => Err(HttpError::invalid_field(
            "provider",
            "is required for api-based models: one of openai, anthropic, google, azure",
        )),
        (DeploymentType::ApiBased, Some(provider)) if API_PROVIDERS.contains(&provider) => {
            Ok(provider.to_owned())
        }
        (DeploymentType::ApiBased, Some(provider)) => Err(HttpError::invalid_field(
            "provider",
            format!("`{provider}` is not supported for api-based models; one of openai, anthropic, google, azure"),
        )),
        (DeploymentType::SelfHosted, None | Some("openai")) => Ok("openai".to_owned()),
        (DeploymentType::SelfHosted, Some(provider)) => Err(HttpError::invalid_field(
            "provider",
            format!("`{provider}` is not supported for self-hosted models; they speak the OpenAI API (`openai`)"),
        )),
    }
}

/// The model's API URL. It is rendered to every user for an `org` model, so
/// credentials belong in `api_config`, never in the URL's user info.
fn validate_api_endpoint(text: &str) -> Result<String, HttpError> {
    let url = validate_base_url("api_endpoint", text)?;
    let has_user_info = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| {
            uri.authority()
                .map(|authority| authority.as_str().contains('@'))
        })
        .unwrap_or(false);
    if has_user_info {
        return Err(HttpError::invalid_field(
            "api_endpoint",
            "must not carry credentials (user:password@); put them in api_config",
        ));
    }
    Ok(url)
}

fn validate_model_name(name: &str) -> Result<String, HttpError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(HttpError::invalid_field(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn validate_identifier(identifier: &str) -> Result<String, HttpError> {
    let valid = !identifier.is_empty()
        && identifier.len() <= 256
        && identifier
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#'));
    if valid {
        Ok(identifier.to_owned())
    } else {
        Err(HttpError::invalid_field(
            "model_identifier",
            "must be 1 to 256 printable characters without spaces, `?` or `#`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn api_endpoints_carry_no_credentials() {
        assert_eq!(
            validate_api_endpoint("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        let error = validate_api_endpoint("https://user:sk-secret@proxy.example/v1").unwrap_err();
        assert_eq!(error.param.as_deref(), Some("api_endpoint"));
        assert!(!error.message.contains("sk-secret"), "{}", error.message);
    }

    #[test]
    fn api_config_accepts_credentials_versions_and_headers() {
        let parsed = parse_api_config(
            &config(
                json!({"apiKey": "sk-1", "api_version": "2024-06-01", "header-X-Team": "blue"}),
            ),
            DeploymentType::ApiBased,
        )
        .unwrap();
        assert_eq!(parsed.credential.as_deref(), Some("sk-1"));
        assert_eq!(parsed.api_version.as_deref(), Some("2024-06-01"));
        assert_eq!(
            parsed.headers,
            vec![("X-Team".to_owned(), "blue".to_owned())]
        );
        assert_eq!(parsed.keys, vec!["apiKey", "api_version", "header-X-Team"]);
    }

    #[test]
    fn api_config_errors_name_the_entry() {
        let error = |value: Value, kind| parse_api_config(&config(value), kind).unwrap_err();
        let wrong_type = error(json!({"apiKey": 5}), DeploymentType::ApiBased);
        assert_eq!(wrong_type.param.as_deref(), Some("api_config.apiKey"));
        let unknown = error(
            json!({"apiKey": "k", "token": "x"}),
            DeploymentType::ApiBased,
        );
        assert_eq!(unknown.param.as_deref(), Some("api_config.token"));
        let bad_header = error(
            json!({"apiKey": "k", "header-Bad Name": "x"}),
            DeploymentType::ApiBased,
        );
        assert_eq!(
            bad_header.param.as_deref(),
            Some("api_config.header-Bad Name")
        );
        for name in ["Host", "Content-Type"] {
            let reserved = error(
                json!({"apiKey": "k", format!("header-{name}"): "x"}),
                DeploymentType::ApiBased,
            );
            assert!(
                reserved.message.contains("set by the gateway"),
                "{}",
                reserved.message
            );
        }
        let two = error(
            json!({"apiKey": "a", "x-api-key": "b"}),
            DeploymentType::ApiBased,
        );
        assert!(two.message.contains("only one"), "{}", two.message);
        // The api-version ends up in the upstream URL's query.
        for version in ["2024-06-01&x=1", "2024 06", ""] {
            let bad_version = error(
                json!({"apiKey": "k", "api_version": version}),
                DeploymentType::ApiBased,
            );
            assert_eq!(
                bad_version.param.as_deref(),
                Some("api_config.api_version"),
                "{version}"
            );
        }
        let missing = error(json!({}), DeploymentType::ApiBased);
        assert_eq!(missing.param.as_deref(), Some("api_config"));
        assert!(parse_api_config(&Map::new(), DeploymentType::SelfHosted).is_ok());
    }

    #[test]
    fn providers_depend_on_the_deployment_type() {
        assert_eq!(
            validate_provider(DeploymentType::ApiBased, Some("anthropic")).unwrap(),
            "anthropic"
        );
        assert!(validate_provider(DeploymentType::ApiBased, Some("cohere")).is_err());
        assert!(validate_provider(DeploymentType::ApiBased, None).is_err());
        assert_eq!(
            validate_provider(DeploymentType::SelfHosted, None).unwrap(),
            "openai"
        );
        assert!(validate_provider(DeploymentType::SelfHosted, Some("google")).is_err());
        assert_eq!(upstream_api("google"), UpstreamApi::Google);
        assert_eq!(upstream_api("openai"), UpstreamApi::OpenAi);
    }

    #[test]
    fn pages_from_either_style() {
        let page = Page::from_query(Some(3), Some(10), None, None).unwrap();
        assert_eq!(
            page,
            Page {
                page: 3,
                per_page: 10,
                offset: 20
            }
        );
        let page = Page::from_query(None, None, Some(5), Some(10)).unwrap();
        assert_eq!(
            page,
            Page {
                page: 3,
                per_page: 5,
                offset: 10
            }
        );
        assert_eq!(page.render(11)["total_pages"], 3);
        assert_eq!(
            Page::from_query(None, Some(0), None, None)
                .unwrap_err()
                .param
                .as_deref(),
            Some("per_page")
        );
        assert!(Page::from_query(Some(1), None, None, Some(0)).is_err());
        assert_eq!(
            Page::from_query(None, None, None, None).unwrap().per_page,
            20
        );
    }
}

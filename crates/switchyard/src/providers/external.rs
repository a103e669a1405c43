//! `external`: a server that already runs somewhere (any OpenAI-compatible
//! URL). Switchyard does not own it: it checks that it answers, never scales
//! or deletes it.

use async_trait::async_trait;
use serde_json::Value;

use super::http::error_from_status;
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers,
};
use crate::domain::UpstreamApi;

/// The `external` provisioner.
pub struct External {
    client: reqwest::Client,
}

impl External {
    /// Builds it with the shared management client.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// `GET {base}/models`: the served model ids, or why the server does not answer.
    async fn models(&self, base_url: &str) -> Result<Vec<String>, ProviderError> {
        let url = format!("{}/models", base_url.trim_end_matches('/'));
        let response = self
            .client
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|error| ProviderError::Transport {
                provider: ProviderKind::External,
                message: format!("GET {url}: {error}"),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(error_from_status(
                ProviderKind::External,
                status,
                &headers,
                &text,
            ));
        }
        let body: Value =
            serde_json::from_str(&text).map_err(|error| ProviderError::BadResponse {
                provider: ProviderKind::External,
                message: format!("GET {url}: {error}"),
            })?;
        Ok(body
            .get("data")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|model| model.get("id").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl Provisioner for External {
    fn kind(&self) -> ProviderKind {
        ProviderKind::External
    }

    fn availability(&self) -> Availability {
        Availability {
            provider: ProviderKind::External,
            available: true,
            message: None,
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        let base_url = spec
            .source_url
            .as_deref()
            .ok_or_else(|| ProviderError::Unsupported {
                provider: ProviderKind::External,
                message: "deploy without a server URL: give the existing server's base URL"
                    .to_owned(),
            })?;
        let models = self.models(base_url).await?;
        let model = if models.contains(&spec.served_model_name) {
            spec.served_model_name.clone()
        } else {
            models
                .into_iter()
                .next()
                .unwrap_or_else(|| spec.served_model_name.clone())
        };
        Ok(ProviderResource {
            provider: ProviderKind::External,
            id: base_url.trim_end_matches('/').to_owned(),
            name: spec.resource_name.clone(),
            details: [("model".to_owned(), model)].into_iter().collect(),
        })
    }

    async fn find(&self, _resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        // Nothing is created on the server, so a retried step simply creates again.
        Ok(None)
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        match self.models(&resource.id).await {
            Ok(_) => Ok(ResourceStatus {
                state: ResourceState::Ready,
                message: None,
                workers: Workers::default(),
                upstream: Some(UpstreamTarget {
                    base_url: resource.id.clone(),
                    api: UpstreamApi::OpenAi,
                    model: resource.details.get("model").cloned().unwrap_or_default(),
                    headers: Vec::new(),
                }),
            }),
            Err(error) if error.is_transient() => Ok(ResourceStatus {
                state: ResourceState::Initializing,
                message: Some(error.to_string()),
                workers: Workers::default(),
                upstream: None,
            }),
            Err(error) => Err(error),
        }
    }

    async fn update_scaling(
        &self,
        _resource: &ProviderResource,
        _scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported {
            provider: ProviderKind::External,
            message: "scale an external server; its owner scales it".to_owned(),
        })
    }

    async fn delete(&self, _resource: &ProviderResource) -> Result<(), ProviderError> {
        // Not ours: terminating the endpoint only stops routing to it.
        Ok(())
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        Ok(match self.models(&resource.id).await {
            Ok(_) => ProviderHealth {
                reachable: true,
                ..ProviderHealth::default()
            },
            Err(error) => ProviderHealth {
                reachable: false,
                message: Some(error.to_string()),
                ..ProviderHealth::default()
            },
        })
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        Ok(Vec::new())
    }
}

//! Replicate deployments (PROVIDERS.md section 4): a private destination
//! model, a training of the `replicate/vllm` trainer that packages the Hugging
//! Face repository as a version of that model, and a deployment of the
//! version with `min_instances = 0` for scale-to-zero.
//!
//! Life cycle. [`Provisioner::create`] makes the model and starts the training,
//! then returns: the deployment can only exist once the training has pushed a
//! version. [`Provisioner::status`] follows the training and, when it has
//! succeeded, creates the deployment (idempotently: an existing deployment is
//! used as it is). Replicate deployments have no readiness field, so once the
//! deployment exists the resource is `ScaledToZero` when `min_instances` is 0
//! (the first prediction boots an instance) and `Ready` otherwise.
//!
//! Resuming. Nothing is stored on Replicate besides the objects themselves.
//! [`Provisioner::find`] reports a resource only once its deployment exists; a
//! model without a deployment is an unfinished create, so `find` answers
//! `None` and the caller's retried `create` resumes it: "already exists" for
//! the model is success, and a version the model already has is deployed
//! without a second training. A resource rebuilt from a deployment (by `find`
//! or `list_managed`) does not know the served model name; its upstream model
//! is `owner/name`, which the gateway's prediction translation does not send.
//!
//! Scaling and deletion. `min_workers`/`max_workers` map to
//! `min_instances`/`max_instances`; the idle period before scale-down is not
//! configurable on Replicate, so `idle_timeout_seconds` is not sent. Replicate
//! deletes a deployment only after 15 minutes offline and unused: `delete`
//! scales it to zero first and answers [`ProviderError::Rejected`] when
//! Replicate refuses, so the control plane retries later.
//!
//! No capacity. Replicate has no documented error code for it. A SKU missing
//! from `GET /v1/hardware`, or a model or deployment create rejected with a
//! `detail` that mentions capacity or hardware that is not available, is
//! [`ProviderError::NoCapacity`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};

use super::config::ReplicateConfig;
use super::http::ProviderApi;
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers, MANAGED_PREFIX,
};
use crate::domain::{Modality, UpstreamApi};

mod predictions;
mod wire;

pub use predictions::{Prediction, PredictionUrls};
pub use wire::hardware_sku;
use wire::{capacity_error, is_conflict, relative_path, resource_from_deployment, string_at};

const KIND: ProviderKind = ProviderKind::Replicate;
/// The public model whose training turns a Hugging Face repository into a version.
const VLLM_TRAINER: &str = "replicate/vllm";
/// Bound on pages followed when listing.
const MAX_PAGES: usize = 50;
/// `Prefer: wait=n` for [`Replicate::predict`]: below the management client's 60 s timeout.
const PREDICTION_WAIT_SECONDS: u32 = 50;

/// The Replicate provisioner.
pub struct Replicate {
    config: ReplicateConfig,
    client: reqwest::Client,
}

/// The credentials of one call: the API client and the owning account.
struct Account {
    api: ProviderApi,
    owner: String,
}

impl Replicate {
    /// Builds the provisioner with the shared management client.
    pub fn new(config: ReplicateConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    fn account(&self) -> Result<Account, ProviderError> {
        match (&self.config.token, &self.config.owner) {
            (Some(token), Some(owner)) if !owner.is_empty() => Ok(Account {
                api: ProviderApi::bearer(
                    KIND,
                    self.client.clone(),
                    &self.config.api_base_url,
                    token.expose(),
                ),
                owner: owner.clone(),
            }),
            _ => Err(ProviderError::NotConfigured {
                provider: KIND,
                message: not_configured_message().to_owned(),
            }),
        }
    }

    async fn get_deployment(
        &self,
        account: &Account,
        owner: &str,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let path = format!("/v1/deployments/{owner}/{name}");
        match account.api.send(Method::GET, &path, None).await {
            Ok(response) => Ok(Some(response.body)),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The id of a model's latest version, if it has one.
    async fn latest_version(
        &self,
        account: &Account,
        model: &str,
    ) -> Result<Option<String>, ProviderError> {
        let response = account
            .api
            .send(Method::GET, &format!("/v1/models/{model}"), None)
            .await?;
        Ok(response
            .body
            .pointer("/latest_version/id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned))
    }

    /// Fails with `NoCapacity` when the account is not offered the SKU.
    async fn check_hardware(&self, account: &Account, sku: &str) -> Result<(), ProviderError> {
        let response = account.api.send(Method::GET, "/v1/hardware", None).await?;
        let offered = response.body.as_array().is_some_and(|skus| {
            skus.iter()
                .any(|item| item.get("sku").and_then(Value::as_str) == Some(sku))
        });
        if offered {
            Ok(())
        } else {
            Err(ProviderError::NoCapacity {
                provider: KIND,
                message: format!("hardware {sku} is not offered to this account"),
            })
        }
    }

    /// Starts the `replicate/vllm` training that pushes a version to `model`.
    async fn start_training(
        &self,
        account: &Account,
        spec: &DeploySpec,
        model: &str,
    ) -> Result<String, ProviderError> {
        let trainer = self
            .latest_version(account, VLLM_TRAINER)
            .await?
            .ok_or_else(|| ProviderError::BadResponse {
                provider: KIND,
                message: format!("{VLLM_TRAINER} has no version to train with"),
            })?;
        let mut input = json!({ "hf_model_id": spec.model_id });
        if let Some(revision) = &spec.revision {
            input["hf_model_sha"] = json!(revision);
        }
        if let Some(token) = &self.config.hf_token {
            input["hf_token"] = json!(token.expose());
        }
        let response = account
            .api
            .send(
                Method::POST,
                &format!("/v1/models/{VLLM_TRAINER}/versions/{trainer}/trainings"),
                Some(&json!({ "destination": model, "input": input })),
            )
            .await?;
        let id = string_at(&response.body, "/id")?;
        tracing::info!(provider = %KIND, model, training_id = %id, "replicate training started");
        Ok(id)
    }

    /// Creates the deployment of `version`, or uses the one that exists already.
    async fn deploy(
        &self,
        account: &Account,
        resource: &ProviderResource,
        version: &str,
    ) -> Result<Value, ProviderError> {
        let (owner, name) = deployment_ids(resource, account);
        let model = resource
            .details
            .get("model")
            .cloned()
            .unwrap_or_else(|| format!("{owner}/{name}"));
        let number = |key: &str| -> Result<u64, ProviderError> {
            resource
                .details
                .get(key)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| ProviderError::BadResponse {
                    provider: KIND,
                    message: format!("resource {} has no {key} to deploy with", resource.id),
                })
        };
        let hardware =
            resource
                .details
                .get("hardware")
                .ok_or_else(|| ProviderError::BadResponse {
                    provider: KIND,
                    message: format!("resource {} has no hardware to deploy on", resource.id),
                })?;
        let body = json!({
            "name": name,
            "model": model,
            "version": version,
            "hardware": hardware,
            "min_instances": number("min_instances")?,
            "max_instances": number("max_instances")?,
        });
        match account
            .api
            .send(Method::POST, "/v1/deployments", Some(&body))
            .await
        {
            Ok(response) => {
                tracing::info!(provider = %KIND, deployment = %resource.id, "replicate deployment created");
                Ok(response.body)
            }
            Err(error) if is_conflict(&error) => self
                .get_deployment(account, &owner, &name)
                .await?
                .ok_or(error),
            Err(error) => Err(capacity_error(error)),
        }
    }

    fn upstream(&self, resource: &ProviderResource, owner: &str, name: &str) -> UpstreamTarget {
        let token = self
            .config
            .token
            .as_ref()
            .map(|token| token.expose())
            .unwrap_or_default();
        UpstreamTarget {
            base_url: format!(
                "{}/v1/deployments/{owner}/{name}",
                self.config.api_base_url.trim_end_matches('/')
            ),
            api: UpstreamApi::Replicate,
            model: resource
                .details
                .get("served_model_name")
                .cloned()
                .unwrap_or_else(|| format!("{owner}/{name}")),
            headers: vec![("authorization".to_owned(), format!("Bearer {token}"))],
        }
    }

    fn deployed_status(
        &self,
        resource: &ProviderResource,
        deployment: &Value,
        owner: &str,
        name: &str,
    ) -> ResourceStatus {
        let min_instances = deployment
            .pointer("/current_release/configuration/min_instances")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let (state, message) = if min_instances == 0 {
            (
                ResourceState::ScaledToZero,
                Some("the first prediction boots an instance".to_owned()),
            )
        } else {
            (ResourceState::Ready, None)
        };
        ResourceStatus {
            state,
            message,
            workers: Workers::default(),
            upstream: Some(self.upstream(resource, owner, name)),
        }
    }

    /// Cancels the resource's training if it is still running.
    async fn cancel_training(&self, account: &Account, id: &str) -> Result<(), ProviderError> {
        let training = match account
            .api
            .send(Method::GET, &format!("/v1/trainings/{id}"), None)
            .await
        {
            Ok(response) => response.body,
            Err(ProviderError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        let status = training.get("status").and_then(Value::as_str);
        if matches!(status, Some("starting" | "processing")) {
            let path = format!("/v1/trainings/{id}/cancel");
            match account.api.send(Method::POST, &path, None).await {
                Ok(_) | Err(ProviderError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Deletes every version of the model, then the model.
    async fn delete_model(&self, account: &Account, model: &str) -> Result<(), ProviderError> {
        let mut versions = Vec::new();
        let first = format!("/v1/models/{model}/versions");
        let pages = match self.pages(account, &first).await {
            Ok(pages) => pages,
            Err(ProviderError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        for page in pages {
            versions.extend(
                page.get("results")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|version| version.get("id").and_then(Value::as_str))
                    .map(str::to_owned),
            );
        }
        for version in versions {
            let path = format!("/v1/models/{model}/versions/{version}");
            match account.api.send(Method::DELETE, &path, None).await {
                Ok(_) | Err(ProviderError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        match account
            .api
            .send(Method::DELETE, &format!("/v1/models/{model}"), None)
            .await
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(ProviderError::Rejected { status, message, .. }) => Err(ProviderError::Rejected {
                provider: KIND,
                status,
                message: format!(
                    "model {model} cannot be deleted yet (its versions are still being removed); try again later: {message}"
                ),
            }),
            Err(error) => Err(error),
        }
    }

    /// Every page of a paginated listing (`{"next", "results"}`), at most [`MAX_PAGES`].
    async fn pages(&self, account: &Account, first: &str) -> Result<Vec<Value>, ProviderError> {
        let mut pages = Vec::new();
        let mut path = first.to_owned();
        for _ in 0..MAX_PAGES {
            let page = account.api.send(Method::GET, &path, None).await?.body;
            let next = page
                .get("next")
                .and_then(Value::as_str)
                .filter(|next| !next.is_empty())
                .map(|next| relative_path(&account.api.base_url, next));
            pages.push(page);
            match next {
                Some(next) => path = next?,
                None => return Ok(pages),
            }
        }
        tracing::warn!(provider = %KIND, path = first, pages = MAX_PAGES, "listing stopped at the page bound");
        Ok(pages)
    }
}

#[async_trait]
impl Provisioner for Replicate {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn availability(&self) -> Availability {
        let available = self.account().is_ok();
        Availability {
            provider: KIND,
            available,
            message: (!available).then(|| not_configured_message().to_owned()),
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        let account = self.account()?;
        if spec.modality != Modality::Llm {
            return Err(ProviderError::Unsupported {
                provider: KIND,
                message: format!(
                    "deploy {} models: the replicate/vllm trainer packages LLMs only",
                    spec.modality
                ),
            });
        }
        let sku = hardware_sku(&spec.gpu)?;
        self.check_hardware(&account, &sku).await?;
        let owner = account.owner.clone();
        let model = format!("{owner}/{}", spec.resource_name);
        let body = json!({
            "owner": owner,
            "name": spec.resource_name,
            "visibility": "private",
            "hardware": sku,
            "description": format!("Switchyard endpoint {} serving {}", spec.endpoint_id, spec.model_id),
        });
        let existing_version = match account
            .api
            .send(Method::POST, "/v1/models", Some(&body))
            .await
        {
            Ok(_) => None,
            Err(error) if is_conflict(&error) => self.latest_version(&account, &model).await?,
            Err(error) => return Err(capacity_error(error)),
        };
        let max_instances = spec
            .scaling
            .max_workers
            .max(spec.scaling.min_workers)
            .max(1);
        let mut details: BTreeMap<String, String> = [
            ("owner", owner.clone()),
            ("model", model.clone()),
            ("hardware", sku),
            ("min_instances", spec.scaling.min_workers.to_string()),
            ("max_instances", max_instances.to_string()),
            ("served_model_name", spec.served_model_name.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        match existing_version {
            Some(version) => {
                details.insert("version".to_owned(), version);
            }
            None => {
                let training_id = self.start_training(&account, spec, &model).await?;
                details.insert("training_id".to_owned(), training_id);
            }
        }
        Ok(ProviderResource {
            provider: KIND,
            id: model,
            name: spec.resource_name.clone(),
            details,
        })
    }

    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        let account = self.account()?;
        Ok(self
            .get_deployment(&account, &account.owner, resource_name)
            .await?
            .map(|deployment| resource_from_deployment(&deployment, &account.owner)))
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        let account = self.account()?;
        let (owner, name) = deployment_ids(resource, &account);
        if let Some(deployment) = self.get_deployment(&account, &owner, &name).await? {
            return Ok(self.deployed_status(resource, &deployment, &owner, &name));
        }
        let version = if let Some(version) = resource.details.get("version") {
            version.clone()
        } else if let Some(training_id) = resource.details.get("training_id") {
            let training = account
                .api
                .send(Method::GET, &format!("/v1/trainings/{training_id}"), None)
                .await?
                .body;
            let status = training
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match status {
                "starting" | "processing" => {
                    return Ok(waiting(format!(
                        "training {training_id} is {status}: packaging the model as a version of {}",
                        resource.id
                    )));
                }
                "failed" | "canceled" => {
                    let error = training
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("no error given");
                    return Ok(failed(format!("training {training_id} {status}: {error}")));
                }
                "succeeded" => string_at(&training, "/output/version")?,
                other => {
                    return Err(ProviderError::BadResponse {
                        provider: KIND,
                        message: format!("training {training_id} has status {other:?}"),
                    })
                }
            }
        } else {
            return Ok(failed(format!(
                "{} has neither a deployment nor a training; delete it and deploy again",
                resource.id
            )));
        };
        let deployment = self.deploy(&account, resource, &version).await?;
        Ok(self.deployed_status(resource, &deployment, &owner, &name))
    }

    async fn update_scaling(
        &self,
        resource: &ProviderResource,
        scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        let account = self.account()?;
        let (owner, name) = deployment_ids(resource, &account);
        // Replicate's idle period before scale-down is not configurable.
        let body = json!({
            "min_instances": scaling.min_workers,
            "max_instances": scaling.max_workers.max(scaling.min_workers).max(1),
        });
        account
            .api
            .send(
                Method::PATCH,
                &format!("/v1/deployments/{owner}/{name}"),
                Some(&body),
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError> {
        let account = self.account()?;
        let (owner, name) = deployment_ids(resource, &account);
        if let Some(training_id) = resource.details.get("training_id") {
            self.cancel_training(&account, training_id).await?;
        }
        let path = format!("/v1/deployments/{owner}/{name}");
        let deployment_exists = match account
            .api
            .send(Method::PATCH, &path, Some(&json!({ "min_instances": 0 })))
            .await
        {
            Ok(_) => true,
            Err(ProviderError::NotFound { .. }) => false,
            Err(error) => return Err(error),
        };
        if deployment_exists {
            match account.api.send(Method::DELETE, &path, None).await {
                Ok(_) | Err(ProviderError::NotFound { .. }) => {}
                Err(ProviderError::Rejected {
                    status: status @ (400 | 409 | 422),
                    message,
                    ..
                }) => {
                    return Err(ProviderError::Rejected {
                        provider: KIND,
                        status,
                        message: format!(
                            "deployment {owner}/{name} is scaled to zero but Replicate deletes a deployment only after 15 minutes offline and unused; try again later: {message}"
                        ),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        // Only the model this server created for the resource is ever deleted.
        let own_model = format!("{owner}/{}", resource.name);
        let model = resource.details.get("model").unwrap_or(&own_model);
        if *model == own_model && resource.name.starts_with(MANAGED_PREFIX) {
            self.delete_model(&account, model).await?;
        }
        Ok(())
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        let account = self.account()?;
        let (owner, name) = deployment_ids(resource, &account);
        Ok(match self.get_deployment(&account, &owner, &name).await? {
            Some(_) => ProviderHealth {
                reachable: true,
                message: Some("replicate reports no instance or queue counts".to_owned()),
                ..ProviderHealth::default()
            },
            None => ProviderHealth {
                reachable: false,
                message: Some(format!("deployment {owner}/{name} does not exist")),
                ..ProviderHealth::default()
            },
        })
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        let account = self.account()?;
        let pages = self.pages(&account, "/v1/deployments").await?;
        Ok(pages
            .iter()
            .filter_map(|page| page.get("results").and_then(Value::as_array))
            .flatten()
            .filter(|deployment| {
                deployment.get("owner").and_then(Value::as_str) == Some(account.owner.as_str())
                    && deployment
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|name| name.starts_with(MANAGED_PREFIX))
            })
            .map(|deployment| resource_from_deployment(deployment, &account.owner))
            .collect())
    }
}

fn not_configured_message() -> &'static str {
    "set REPLICATE_API_TOKEN and SWITCHYARD_REPLICATE_OWNER to deploy to Replicate"
}

/// `(owner, name)` of the resource's deployment.
fn deployment_ids(resource: &ProviderResource, account: &Account) -> (String, String) {
    let owner = resource
        .details
        .get("owner")
        .cloned()
        .or_else(|| {
            resource
                .id
                .split_once('/')
                .map(|(owner, _)| owner.to_owned())
        })
        .unwrap_or_else(|| account.owner.clone());
    (owner, resource.name.clone())
}

fn waiting(message: String) -> ResourceStatus {
    ResourceStatus {
        state: ResourceState::Initializing,
        message: Some(message),
        workers: Workers::default(),
        upstream: None,
    }
}

fn failed(message: String) -> ResourceStatus {
    ResourceStatus {
        state: ResourceState::Failed,
        message: Some(message),
        workers: Workers::default(),
        upstream: None,
    }
}

//! RunPod Serverless: queue endpoints running the worker-vllm image, managed
//! through REST v2 (`https://api.runpod.io/v2`, spec
//! `shared/specs/runpod/rest-v2-openapi.json`) and served through the job
//! API's OpenAI route (`https://api.runpod.ai/v2/{id}/openai/v1`).
//!
//! A deployment is two resources named after the `sy-…` resource name: a
//! serverless template (image and worker-vllm environment) and an endpoint
//! bound to it (GPU pool, workers, scaling).

mod wire;

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::Method;
use serde_json::json;

use self::wire::{
    endpoint_body, template_body, workers_body, EndpointList, EndpointWire, TemplateList,
    TemplateWire, WorkerList, WorkersWire,
};
use super::config::RunPodConfig;
use super::http::ProviderApi;
use super::runpod_jobs::{decode, not_configured, path_segment, RunPodJobs, NOT_CONFIGURED};
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers, MANAGED_PREFIX,
};
use crate::domain::{Modality, UpstreamApi};

const PROVIDER: ProviderKind = ProviderKind::RunPod;
/// Suffix RunPod may append to the name of a FlashBoot endpoint.
const FLASHBOOT_SUFFIX: &str = " -fb";

/// The RunPod Serverless provisioner.
pub struct RunPod {
    config: RunPodConfig,
    rest: Option<ProviderApi>,
    jobs: Option<RunPodJobs>,
}

impl RunPod {
    /// Builds it; without `RUNPOD_API_KEY` every call is [`ProviderError::NotConfigured`].
    pub fn new(config: RunPodConfig, client: reqwest::Client) -> Self {
        let rest = config.api_key.as_ref().map(|key| {
            ProviderApi::bearer(
                PROVIDER,
                client.clone(),
                &config.rest_base_url,
                key.expose(),
            )
        });
        let jobs = RunPodJobs::from_config(&config, client).ok();
        Self { config, rest, jobs }
    }

    fn rest(&self) -> Result<&ProviderApi, ProviderError> {
        self.rest.as_ref().ok_or_else(not_configured)
    }

    fn jobs(&self) -> Result<&RunPodJobs, ProviderError> {
        self.jobs.as_ref().ok_or_else(not_configured)
    }

    async fn endpoints(&self) -> Result<Vec<EndpointWire>, ProviderError> {
        let response = self
            .rest()?
            .send(Method::GET, "/v2/serverless", None)
            .await?;
        Ok(decode::<EndpointList>("GET /v2/serverless", response.body)?.endpoints)
    }

    async fn templates(&self) -> Result<Vec<TemplateWire>, ProviderError> {
        let response = self
            .rest()?
            .send(Method::GET, "/v2/templates", None)
            .await?;
        Ok(decode::<TemplateList>("GET /v2/templates", response.body)?.templates)
    }

    async fn template_named(&self, name: &str) -> Result<Option<TemplateWire>, ProviderError> {
        Ok(self
            .templates()
            .await?
            .into_iter()
            .find(|template| template.name == name))
    }

    /// `DELETE /v2/templates/{id}`; a template that is already gone is fine.
    async fn delete_template(&self, template_id: &str) -> Result<(), ProviderError> {
        let path = format!("/v2/templates/{}", path_segment(template_id));
        match self.rest()?.send(Method::DELETE, &path, None).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The endpoint as a resource, with the template of the same name.
    fn resource(&self, endpoint: &EndpointWire, templates: &[TemplateWire]) -> ProviderResource {
        let name = managed_name(&endpoint.name).to_owned();
        let mut details = BTreeMap::new();
        if let Some(template) = templates.iter().find(|template| template.name == name) {
            details.insert("template_id".to_owned(), template.id.clone());
        }
        if let Some(model) = endpoint.served_model() {
            details.insert("served_model_name".to_owned(), model);
        }
        ProviderResource {
            provider: PROVIDER,
            id: endpoint.id.clone(),
            name,
            details,
        }
    }

    fn upstream(
        &self,
        resource: &ProviderResource,
        endpoint: &EndpointWire,
    ) -> Option<UpstreamTarget> {
        let key = self.config.api_key.as_ref()?;
        let model = resource
            .details
            .get("served_model_name")
            .cloned()
            .or_else(|| endpoint.served_model())
            .unwrap_or_else(|| resource.name.clone());
        Some(UpstreamTarget {
            base_url: format!(
                "{}/v2/{}/openai/v1",
                self.config.jobs_base_url.trim_end_matches('/'),
                path_segment(&resource.id)
            ),
            api: UpstreamApi::OpenAi,
            model,
            headers: vec![(
                "authorization".to_owned(),
                format!("Bearer {}", key.expose()),
            )],
        })
    }
}

#[async_trait]
impl Provisioner for RunPod {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    fn availability(&self) -> Availability {
        Availability {
            provider: PROVIDER,
            available: self.rest.is_some(),
            message: self.rest.is_none().then(|| NOT_CONFIGURED.to_owned()),
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        let api = self.rest()?;
        if spec.modality != Modality::Llm {
            return Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!(
                    "serve {} models: the worker-vllm image serves LLMs only",
                    spec.modality
                ),
            });
        }
        let pool = gpu_pool(&spec.gpu.name).ok_or_else(|| ProviderError::Unsupported {
            provider: PROVIDER,
            message: format!(
                "deploy on {}: no serverless GPU pool holds it",
                spec.gpu.name
            ),
        })?;
        // Template names are unique; one left by an interrupted create is replaced.
        if let Some(stale) = self.template_named(&spec.resource_name).await? {
            tracing::info!(provider = %PROVIDER, template_id = %stale.id, name = %spec.resource_name, "replacing a template left by an earlier create");
            self.delete_template(&stale.id).await?;
        }
        let template = api
            .send(
                Method::POST,
                "/v2/templates",
                Some(&template_body(&self.config, spec)),
            )
            .await?;
        let template: TemplateWire = decode("POST /v2/templates", template.body)?;
        let body = endpoint_body(spec, &template.id, pool);
        let endpoint = match api.send(Method::POST, "/v2/serverless", Some(&body)).await {
            Ok(response) => response,
            Err(error) => {
                // No orphan: the template exists only for this endpoint.
                if let Err(cleanup) = self.delete_template(&template.id).await {
                    tracing::warn!(provider = %PROVIDER, template_id = %template.id, error = %cleanup, "could not delete the template of a failed create");
                }
                return Err(capacity_error(error));
            }
        };
        let endpoint: EndpointWire = decode("POST /v2/serverless", endpoint.body)?;
        tracing::info!(provider = %PROVIDER, endpoint_id = %endpoint.id, template_id = %template.id, name = %spec.resource_name, pool, "created a RunPod endpoint");
        let mut resource = self.resource(&endpoint, &[template]);
        resource.details.insert(
            "served_model_name".to_owned(),
            spec.served_model_name.clone(),
        );
        Ok(resource)
    }

    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        let endpoints = self.endpoints().await?;
        let Some(endpoint) = endpoints
            .iter()
            .find(|endpoint| managed_name(&endpoint.name) == resource_name)
        else {
            return Ok(None);
        };
        let templates = self.templates().await?;
        Ok(Some(self.resource(endpoint, &templates)))
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        let api = self.rest()?;
        let path = format!("/v2/serverless/{}", path_segment(&resource.id));
        let endpoint: EndpointWire = match api.send(Method::GET, &path, None).await {
            Ok(response) => decode(&path, response.body)?,
            Err(ProviderError::NotFound { .. }) => return Ok(gone()),
            Err(error) => return Err(error),
        };
        let workers_path = format!("{path}/workers");
        let workers: WorkerList = match api.send(Method::GET, &workers_path, None).await {
            Ok(response) => decode(&workers_path, response.body)?,
            Err(ProviderError::NotFound { .. }) => return Ok(gone()),
            Err(error) => return Err(error),
        };
        let counts = workers.counts();
        let (state, message) = life_cycle(&counts, &endpoint.workers);
        let upstream = if state.is_usable() {
            self.upstream(resource, &endpoint)
        } else {
            None
        };
        Ok(ResourceStatus {
            state,
            message,
            workers: counts,
            upstream,
        })
    }

    async fn update_scaling(
        &self,
        resource: &ProviderResource,
        scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        let path = format!("/v2/serverless/{}", path_segment(&resource.id));
        let body = json!({ "workers": workers_body(scaling) });
        self.rest()?.send(Method::PATCH, &path, Some(&body)).await?;
        tracing::info!(provider = %PROVIDER, endpoint_id = %resource.id, min = scaling.min_workers, max = scaling.max_workers, "updated RunPod endpoint scaling");
        Ok(())
    }

    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError> {
        if resource.details.get("kind").map(String::as_str) == Some("template") {
            return self.delete_template(&resource.id).await;
        }
        let api = self.rest()?;
        let path = format!("/v2/serverless/{}", path_segment(&resource.id));
        match api.send(Method::DELETE, &path, None).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        // RunPod deletes the bound template with the endpoint; make sure of it.
        let template_id = match resource.details.get("template_id") {
            Some(template_id) => Some(template_id.clone()),
            None => self
                .template_named(&resource.name)
                .await?
                .map(|template| template.id),
        };
        if let Some(template_id) = template_id {
            let template_path = format!("/v2/templates/{}", path_segment(&template_id));
            match api.send(Method::GET, &template_path, None).await {
                Ok(_) => self.delete_template(&template_id).await?,
                Err(ProviderError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        tracing::info!(provider = %PROVIDER, endpoint_id = %resource.id, "deleted a RunPod endpoint");
        Ok(())
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        match self.jobs()?.health(&resource.id).await {
            Ok(health) => Ok(ProviderHealth {
                reachable: true,
                workers: Workers {
                    ready: health.workers.idle,
                    running: health.workers.running,
                    initializing: health.workers.initializing,
                    throttled: health.workers.throttled,
                    unhealthy: health.workers.unhealthy,
                },
                queue_depth: health.jobs.in_queue,
                message: None,
            }),
            Err(error @ ProviderError::Unauthorized { .. }) => Err(error),
            Err(error) => Ok(ProviderHealth {
                reachable: false,
                message: Some(error.to_string()),
                ..ProviderHealth::default()
            }),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        let endpoints: Vec<EndpointWire> = self
            .endpoints()
            .await?
            .into_iter()
            .filter(|endpoint| managed_name(&endpoint.name).starts_with(MANAGED_PREFIX))
            .collect();
        let templates = self.templates().await?;
        let mut resources: Vec<ProviderResource> = endpoints
            .iter()
            .map(|endpoint| self.resource(endpoint, &templates))
            .collect();
        // A `sy-` template without its endpoint (a create interrupted between
        // the two steps) is a resource of its own, so reconcile removes it.
        for template in templates.iter().filter(|template| {
            template.name.starts_with(MANAGED_PREFIX)
                && !endpoints
                    .iter()
                    .any(|endpoint| managed_name(&endpoint.name) == template.name)
        }) {
            resources.push(ProviderResource {
                provider: PROVIDER,
                id: template.id.clone(),
                name: template.name.clone(),
                details: [
                    ("kind".to_owned(), "template".to_owned()),
                    ("template_id".to_owned(), template.id.clone()),
                ]
                .into_iter()
                .collect(),
            });
        }
        Ok(resources)
    }
}

/// The serverless pool of a GPU from the price table. Pools are RunPod's
/// unit of GPU selection (`gpu.pools`); each holds cards of one VRAM size,
/// so a GPU maps to the pool of its cards, or the smallest pool that has at
/// least its memory where RunPod has no pool of its own for it (T4, A100 40 GB).
pub fn gpu_pool(gpu_name: &str) -> Option<&'static str> {
    let normalized: String = gpu_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Some(match normalized.as_str() {
        "T4" => "AMPERE_16",
        "L4" | "A10G" | "RTX3090" => "AMPERE_24",
        "RTX4090" => "ADA_24",
        "A10040GB" => "AMPERE_48",
        "A10080GB" | "A100" => "AMPERE_80",
        "H100" => "ADA_80_PRO",
        _ => return None,
    })
}

/// Whether a failed create means "no GPUs to be had". RunPod answers such a
/// create with a 400/422 problem whose detail says the requested pools have
/// no capacity; the rule is that a rejection whose message mentions
/// "capacity", "no available", "unavailable" or "no gpus" (any case) is
/// [`ProviderError::NoCapacity`], and any other error is kept as it is.
fn capacity_error(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Rejected {
            provider,
            status: 400 | 422,
            message,
        } if mentions_no_capacity(&message) => ProviderError::NoCapacity { provider, message },
        other => other,
    }
}

fn mentions_no_capacity(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["capacity", "no available", "unavailable", "no gpus"]
        .iter()
        .any(|phrase| message.contains(phrase))
}

/// The `sy-…` name of an endpoint, without a FlashBoot suffix.
fn managed_name(name: &str) -> &str {
    name.strip_suffix(FLASHBOOT_SUFFIX).unwrap_or(name)
}

fn gone() -> ResourceStatus {
    ResourceStatus {
        state: ResourceState::Gone,
        message: Some("RunPod no longer knows the endpoint".to_owned()),
        workers: Workers::default(),
        upstream: None,
    }
}

/// The state of an endpoint from its workers. RunPod endpoints take jobs at
/// once: warm workers mean ready, none at all with `min = 0` means scaled to
/// zero (the next request cold-starts one). Workers that only wait for GPUs
/// are pending; the control plane decides how long that may last.
fn life_cycle(workers: &Workers, limits: &WorkersWire) -> (ResourceState, Option<String>) {
    let total = workers.ready
        + workers.running
        + workers.initializing
        + workers.throttled
        + workers.unhealthy;
    if workers.ready + workers.running > 0 {
        return (ResourceState::Ready, None);
    }
    if limits.max == Some(0) {
        return (
            ResourceState::Stopped,
            Some("workers.max is 0, so no worker can start; raise it to serve".to_owned()),
        );
    }
    if total == 0 {
        return if limits.min == 0 {
            (ResourceState::ScaledToZero, None)
        } else {
            (
                ResourceState::Initializing,
                Some(format!(
                    "waiting for {} workers to be allocated",
                    limits.min
                )),
            )
        };
    }
    if workers.throttled == total {
        return (
            ResourceState::Pending,
            Some(format!("{total} workers are waiting for GPU capacity")),
        );
    }
    let message = if workers.unhealthy > 0 {
        format!("{} workers are failing health checks", workers.unhealthy)
    } else {
        format!("{} workers are starting", workers.initializing)
    };
    (ResourceState::Initializing, Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(
        ready: u32,
        running: u32,
        initializing: u32,
        throttled: u32,
        unhealthy: u32,
    ) -> Workers {
        Workers {
            ready,
            running,
            initializing,
            throttled,
            unhealthy,
        }
    }

    fn limits(min: u32, max: u32) -> WorkersWire {
        WorkersWire {
            min,
            max: Some(max),
        }
    }

    #[test]
    fn gpu_names_map_to_pools() {
        let cases = [
            ("T4", Some("AMPERE_16")),
            ("L4", Some("AMPERE_24")),
            ("A10G", Some("AMPERE_24")),
            ("RTX3090", Some("AMPERE_24")),
            ("RTX4090", Some("ADA_24")),
            ("A100-40GB", Some("AMPERE_48")),
            ("A100-80GB", Some("AMPERE_80")),
            ("h100", Some("ADA_80_PRO")),
            ("TPU-v5", None),
        ];
        for (name, pool) in cases {
            assert_eq!(gpu_pool(name), pool, "{name}");
        }
    }

    #[test]
    fn states_follow_the_workers() {
        let cases = [
            (workers(1, 0, 2, 0, 0), limits(0, 3), ResourceState::Ready),
            (workers(0, 1, 0, 0, 0), limits(1, 3), ResourceState::Ready),
            (
                workers(0, 0, 0, 0, 0),
                limits(0, 3),
                ResourceState::ScaledToZero,
            ),
            (
                workers(0, 0, 0, 0, 0),
                limits(1, 3),
                ResourceState::Initializing,
            ),
            (
                workers(0, 0, 1, 1, 0),
                limits(1, 3),
                ResourceState::Initializing,
            ),
            (workers(0, 0, 0, 2, 0), limits(1, 3), ResourceState::Pending),
            (
                workers(0, 0, 0, 0, 1),
                limits(1, 3),
                ResourceState::Initializing,
            ),
            (workers(0, 0, 0, 0, 0), limits(0, 0), ResourceState::Stopped),
        ];
        for (counts, bounds, state) in cases {
            assert_eq!(life_cycle(&counts, &bounds).0, state, "{counts:?}");
        }
    }

    #[test]
    fn capacity_rejections_become_no_capacity() {
        let rejected = |status, message: &str| ProviderError::Rejected {
            provider: PROVIDER,
            status,
            message: message.to_owned(),
        };
        let error = capacity_error(rejected(
            400,
            "No GPUs are available in the requested pools",
        ));
        assert_eq!(error.code(), "provider_no_capacity");
        let error = capacity_error(rejected(422, "insufficient capacity in ADA_24"));
        assert_eq!(error.code(), "provider_no_capacity");
        let error = capacity_error(rejected(400, "additional properties 'bogus' not allowed"));
        assert_eq!(error.code(), "provider_rejected");
    }

    #[test]
    fn flashboot_names_are_still_ours() {
        assert_eq!(managed_name("sy-abc -fb"), "sy-abc");
        assert_eq!(managed_name("sy-abc"), "sy-abc");
    }
}

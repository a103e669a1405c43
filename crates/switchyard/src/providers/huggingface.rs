//! Hugging Face Inference Endpoints: one private endpoint per deployment,
//! running the vLLM engine image, scaled to zero by Hugging Face.
//!
//! Wire shapes follow `shared/specs/PROVIDERS.md` section 3 (huggingface_hub
//! `hf_api.py` and `_inference_endpoints.py`). The resource id is the
//! endpoint name, which is the deterministic `sy-…` name.
//!
//! No-capacity rule: before a create, the hardware catalog
//! (`GET /v2/provider/{namespace}`) must list the chosen compute for the
//! configured vendor and region with status `available` or
//! `low_availability`, and with accelerator quota left; otherwise the create
//! is not sent and the call fails with [`ProviderError::NoCapacity`]. A
//! create the API still rejects with a 4xx whose message says the hardware
//! is not available, out of capacity or over quota is also `NoCapacity`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};

mod wire;

use super::config::HuggingFaceConfig;
use super::http::ProviderApi;
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers, MANAGED_PREFIX,
};
use crate::domain::UpstreamApi;
use wire::{create_body, instance_type, map_state, scaling_body, Catalog, Endpoint, EndpointList};

/// Tag on every endpoint Switchyard creates.
pub const MANAGED_TAG: &str = "managed-by:switchyard";
/// What to set when the provider is not configured.
pub const NOT_CONFIGURED: &str =
    "set SWITCHYARD_HF_NAMESPACE (your user or organisation) and HF_TOKEN to deploy to Hugging Face";

const PROVIDER: ProviderKind = ProviderKind::HuggingFace;
/// Bound on one probe of the endpoint's health route.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Catalog statuses a create may use.
const USABLE_HARDWARE: [&str; 2] = ["available", "low_availability"];
/// Words in a rejected create that mean the hardware cannot be had now.
const NO_CAPACITY_WORDS: [&str; 5] = [
    "not available",
    "no capacity",
    "insufficient capacity",
    "out of capacity",
    "quota",
];

/// The Hugging Face Inference Endpoints provisioner.
pub struct HuggingFace {
    config: HuggingFaceConfig,
    client: reqwest::Client,
}

impl HuggingFace {
    /// Builds it from its settings and the shared management client.
    pub fn new(config: HuggingFaceConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    /// The API client and the namespace, or why they are missing.
    fn api(&self) -> Result<(ProviderApi, &str), ProviderError> {
        match (&self.config.token, self.config.namespace.as_deref()) {
            (Some(token), Some(namespace)) if !namespace.trim().is_empty() => Ok((
                ProviderApi::bearer(
                    PROVIDER,
                    self.client.clone(),
                    &self.config.api_base_url,
                    token.expose(),
                ),
                namespace.trim(),
            )),
            _ => Err(ProviderError::NotConfigured {
                provider: PROVIDER,
                message: NOT_CONFIGURED.to_owned(),
            }),
        }
    }

    /// The API client and the namespace the resource lives in.
    fn api_for<'a>(
        &'a self,
        resource: &'a ProviderResource,
    ) -> Result<(ProviderApi, &'a str), ProviderError> {
        let (api, namespace) = self.api()?;
        let namespace = resource
            .details
            .get("namespace")
            .map(String::as_str)
            .unwrap_or(namespace);
        Ok((api, namespace))
    }

    /// `GET /v2/endpoint/{namespace}/{name}`; `None` when it does not exist.
    async fn get_endpoint(
        &self,
        api: &ProviderApi,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Endpoint>, ProviderError> {
        match api
            .send(Method::GET, &endpoint_path(namespace, name), None)
            .await
        {
            Ok(response) => parse(response.body, "endpoint").map(Some),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Checks the hardware catalog before a create (see the module docs).
    async fn check_capacity(
        &self,
        api: &ProviderApi,
        namespace: &str,
        instance_type: &str,
        instance_size: &str,
    ) -> Result<(), ProviderError> {
        let path = format!("/v2/provider/{}", segment(namespace));
        let catalog: Catalog = parse(api.send(Method::GET, &path, None).await?.body, "catalog")?;
        let (vendor, region) = (&self.config.vendor, &self.config.region);
        let no_capacity = |message: String| ProviderError::NoCapacity {
            provider: PROVIDER,
            message,
        };
        let compute = catalog
            .vendors
            .iter()
            .filter(|candidate| candidate.name == *vendor)
            .flat_map(|candidate| &candidate.regions)
            .filter(|candidate| candidate.name == *region)
            .flat_map(|candidate| &candidate.computes)
            .find(|compute| {
                compute.accelerator == "gpu"
                    && compute.instance_type == instance_type
                    && compute.instance_size == instance_size
            })
            .ok_or_else(|| {
                no_capacity(format!(
                    "{vendor} {region} offers no {instance_type} {instance_size} \
                     (set SWITCHYARD_HF_VENDOR and SWITCHYARD_HF_REGION to a region that does)"
                ))
            })?;
        if !USABLE_HARDWARE.contains(&compute.status.as_str()) {
            return Err(no_capacity(format!(
                "{} is {} in {vendor} {region}",
                compute.id, compute.status
            )));
        }
        if let Some(quota) = &compute.quota {
            let left = quota
                .max_accelerators
                .saturating_sub(quota.used_accelerators);
            if left < compute.num_accelerators.max(1) {
                return Err(no_capacity(format!(
                    "the accelerator quota of {namespace} for {} is used up ({} of {})",
                    compute.id, quota.used_accelerators, quota.max_accelerators
                )));
            }
        }
        Ok(())
    }

    /// `GET {url}{healthRoute}` with the token, as the official client's ready test does.
    async fn probe(&self, url: &str, health_route: &str) -> Result<(), String> {
        let token = self.config.token.as_ref().map(|token| token.expose());
        let target = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            health_route.trim_start_matches('/')
        );
        let mut request = self.client.get(&target).timeout(HEALTH_TIMEOUT);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status() == http::StatusCode::OK => Ok(()),
            Ok(response) => Err(format!(
                "the health route answered {}",
                response.status().as_u16()
            )),
            Err(error) => Err(format!("the health route is unreachable: {error}")),
        }
    }

    /// How the gateway reaches a deployed endpoint.
    fn upstream(&self, endpoint: &Endpoint, url: &str) -> UpstreamTarget {
        let headers = self
            .config
            .token
            .as_ref()
            .map(|token| {
                vec![(
                    "authorization".to_owned(),
                    format!("Bearer {}", token.expose()),
                )]
            })
            .unwrap_or_default();
        UpstreamTarget {
            base_url: format!("{}/v1", url.trim_end_matches('/')),
            api: UpstreamApi::OpenAi,
            model: endpoint.served_model_name(),
            headers,
        }
    }
}

#[async_trait]
impl Provisioner for HuggingFace {
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    fn availability(&self) -> Availability {
        let configured = self.api().is_ok();
        Availability {
            provider: PROVIDER,
            available: configured,
            message: (!configured).then(|| NOT_CONFIGURED.to_owned()),
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        let (api, namespace) = self.api()?;
        let instance_type =
            instance_type(&spec.gpu.name).ok_or_else(|| ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!(
                    "map the GPU {} to a Hugging Face instance type",
                    spec.gpu.name
                ),
            })?;
        let instance_size = format!("x{}", spec.gpu.count.max(1));
        let body = create_body(spec, &self.config, instance_type, &instance_size)?;
        self.check_capacity(&api, namespace, instance_type, &instance_size)
            .await?;
        let path = format!("/v2/endpoint/{}", segment(namespace));
        match api.send(Method::POST, &path, Some(&body)).await {
            Ok(response) => {
                let endpoint: Endpoint = parse(response.body, "created endpoint")?;
                tracing::info!(provider = %PROVIDER, namespace, name = %endpoint.name, instance_type, instance_size = %instance_size, "created an inference endpoint");
                Ok(resource(namespace, &endpoint))
            }
            Err(ProviderError::Rejected {
                status: 409,
                message,
                ..
            }) => {
                // The name is taken: a create from an earlier attempt went through.
                match self.find(&spec.resource_name).await? {
                    Some(found) => Ok(found),
                    None => Err(ProviderError::Rejected {
                        provider: PROVIDER,
                        status: 409,
                        message,
                    }),
                }
            }
            Err(error) => Err(no_capacity_from(error)),
        }
    }

    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        let (api, namespace) = self.api()?;
        Ok(self
            .get_endpoint(&api, namespace, resource_name)
            .await?
            .map(|endpoint| resource(namespace, &endpoint)))
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        let (api, namespace) = self.api_for(resource)?;
        let Some(endpoint) = self.get_endpoint(&api, namespace, &resource.id).await? else {
            return Ok(ResourceStatus {
                state: ResourceState::Gone,
                message: Some(format!(
                    "endpoint {namespace}/{} no longer exists",
                    resource.id
                )),
                workers: Workers::default(),
                upstream: None,
            });
        };
        let workers = endpoint.workers();
        let mut message = endpoint.status.message.clone();
        let url = endpoint.url();
        let state = match (map_state(&endpoint.status.state)?, url) {
            (ResourceState::Ready, Some(url)) => {
                match self.probe(url, &endpoint.health_route()).await {
                    Ok(()) => ResourceState::Ready,
                    Err(why) => {
                        message = Some(why);
                        ResourceState::Initializing
                    }
                }
            }
            (ResourceState::Ready | ResourceState::ScaledToZero, None) => {
                message = Some("the endpoint has no URL yet".to_owned());
                ResourceState::Initializing
            }
            (state, _) => state,
        };
        let upstream = match (state.is_usable(), url) {
            (true, Some(url)) => Some(self.upstream(&endpoint, url)),
            _ => None,
        };
        Ok(ResourceStatus {
            state,
            message,
            workers,
            upstream,
        })
    }

    async fn update_scaling(
        &self,
        resource: &ProviderResource,
        scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        let (api, namespace) = self.api_for(resource)?;
        let body = json!({ "compute": { "scaling": scaling_body(scaling) } });
        api.send(
            Method::PUT,
            &endpoint_path(namespace, &resource.id),
            Some(&body),
        )
        .await?;
        tracing::info!(provider = %PROVIDER, namespace, name = %resource.id, min = scaling.min_workers, max = scaling.max_workers, "updated endpoint scaling");
        Ok(())
    }

    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError> {
        let (api, namespace) = self.api_for(resource)?;
        match api
            .send(
                Method::DELETE,
                &endpoint_path(namespace, &resource.id),
                None,
            )
            .await
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        let (api, namespace) = self.api_for(resource)?;
        let endpoint = self
            .get_endpoint(&api, namespace, &resource.id)
            .await?
            .ok_or_else(|| ProviderError::NotFound {
                provider: PROVIDER,
                what: format!("endpoint {namespace}/{}", resource.id),
            })?;
        let mut message = endpoint.status.message.clone();
        let reachable = match (endpoint.status.state.as_str(), endpoint.url()) {
            ("scaledToZero", Some(_)) => true,
            ("running", Some(url)) => match self.probe(url, &endpoint.health_route()).await {
                Ok(()) => true,
                Err(why) => {
                    message = Some(why);
                    false
                }
            },
            _ => false,
        };
        Ok(ProviderHealth {
            reachable,
            workers: endpoint.workers(),
            queue_depth: 0,
            message,
        })
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        let (api, namespace) = self.api()?;
        let path = format!("/v2/endpoint/{}", segment(namespace));
        let list: EndpointList = parse(api.send(Method::GET, &path, None).await?.body, "list")?;
        Ok(list
            .items
            .iter()
            .filter(|endpoint| endpoint.name.starts_with(MANAGED_PREFIX))
            .map(|endpoint| resource(namespace, endpoint))
            .collect())
    }
}

/// Turns a rejected create that names missing hardware into `NoCapacity`.
fn no_capacity_from(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Rejected { message, .. }
            if {
                let lower = message.to_ascii_lowercase();
                NO_CAPACITY_WORDS.iter().any(|words| lower.contains(words))
            } =>
        {
            ProviderError::NoCapacity {
                provider: PROVIDER,
                message,
            }
        }
        other => other,
    }
}

fn resource(namespace: &str, endpoint: &Endpoint) -> ProviderResource {
    let mut details = BTreeMap::new();
    details.insert("namespace".to_owned(), namespace.to_owned());
    details.insert("model".to_owned(), endpoint.served_model_name());
    if let Some(url) = endpoint.url() {
        details.insert("url".to_owned(), url.to_owned());
    }
    ProviderResource {
        provider: PROVIDER,
        id: endpoint.name.clone(),
        name: endpoint.name.clone(),
        details,
    }
}

fn endpoint_path(namespace: &str, name: &str) -> String {
    format!("/v2/endpoint/{}/{}", segment(namespace), segment(name))
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters pass).
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn parse<T: serde::de::DeserializeOwned>(body: Value, what: &str) -> Result<T, ProviderError> {
    serde_json::from_value(body).map_err(|error| ProviderError::BadResponse {
        provider: PROVIDER,
        message: format!("{what}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_rejections_become_no_capacity() {
        let rejected = |message: &str| ProviderError::Rejected {
            provider: PROVIDER,
            status: 400,
            message: message.to_owned(),
        };
        let error = no_capacity_from(rejected(
            "Instance type nvidia-l4 x1 is not available in region us-east-1",
        ));
        assert_eq!(error.code(), "provider_no_capacity");
        let error = no_capacity_from(rejected("model.task: invalid value"));
        assert_eq!(error.code(), "provider_rejected");
    }
}

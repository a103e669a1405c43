//! Provisioners: one per provider behind the [`Provisioner`] trait (create,
//! find, status, update scaling, delete, health, list). Provider wire types
//! never leave their module; the control plane sees only the types here.

pub mod config;
pub mod external;
pub mod http;
pub mod huggingface;
pub mod modal;
pub mod replicate;
pub mod runpod;
pub mod runpod_jobs;
pub mod self_hosted;
pub mod together;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{Modality, UpstreamApi};

pub use config::ProvidersConfig;

/// Every provider resource Switchyard creates is named with this prefix, so
/// the reconcile loop can tell its own resources from the account's others.
pub const MANAGED_PREFIX: &str = "sy-";

crate::domain::wire_enum!(
    /// A provider Switchyard can deploy to.
    ProviderKind {
        RunPod => "runpod",
        HuggingFace => "huggingface",
        Replicate => "replicate",
        Together => "together",
        Modal => "modal",
        SelfHosted => "self-hosted",
        External => "external",
    }
);

/// The GPU a deployment runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuChoice {
    /// A name from the price table (`T4`, `L4`, `A10G`, `RTX3090`, `RTX4090`,
    /// `A100-40GB`, `A100-80GB`, `H100`).
    pub name: String,
    /// GPUs per worker (tensor parallel size).
    pub count: u32,
    pub vram_gb: u32,
}

/// Scaling of a deployment; `min_workers = 0` is scale-to-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaling {
    pub min_workers: u32,
    pub max_workers: u32,
    pub idle_timeout_seconds: u32,
}

/// What to deploy, as the control plane decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    /// The Switchyard endpoint this resource serves.
    pub endpoint_id: String,
    /// Deterministic provider resource name (`sy-…`): a resumed job finds a
    /// resource it created before a crash instead of creating a second one.
    pub resource_name: String,
    /// Hugging Face repository id, e.g. `Qwen/Qwen2.5-7B-Instruct`.
    pub model_id: String,
    pub revision: Option<String>,
    /// The model name the upstream serves (what the gateway sends as `model`).
    pub served_model_name: String,
    pub modality: Modality,
    pub gpu: GpuChoice,
    pub scaling: Scaling,
    /// Largest context the engine is started with, when known.
    pub max_model_len: Option<u32>,
    /// For `external`: the base URL of the server that already runs.
    pub source_url: Option<String>,
}

/// A resource a provider created. Stored (as JSON) with the deploy job and
/// the endpoint so every later call reaches the same resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderResource {
    pub provider: ProviderKind,
    /// The provider's id of the resource (RunPod endpoint id, HF endpoint
    /// name, `owner/name` on Replicate, Together endpoint id, Modal app name,
    /// self-hosted process tag).
    pub id: String,
    /// The deterministic `sy-…` name.
    pub name: String,
    /// Provider-specific facts needed later (template id, namespace, URL, port, ...).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// How the gateway reaches a ready resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// OpenAI base URL including `/v1`.
    pub base_url: String,
    pub api: UpstreamApi,
    pub model: String,
    /// Headers the gateway adds to every inference call (credentials; sensitive).
    pub headers: Vec<(String, String)>,
}

/// Where a resource is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Accepted, waiting for capacity or scheduling.
    Pending,
    /// Container starting, model loading.
    Initializing,
    /// Serving requests.
    Ready,
    /// Serving, with no worker running now; the next request wakes it.
    ScaledToZero,
    /// A configuration change is rolling out.
    Updating,
    /// Stopped or paused; needs an explicit start.
    Stopped,
    /// Failed for good; the message says why.
    Failed,
    /// The provider no longer knows the resource.
    Gone,
}

impl ResourceState {
    /// Requests can be sent (possibly waiting for a cold start).
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Ready | Self::ScaledToZero)
    }
}

/// Worker counts as the provider reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Workers {
    pub ready: u32,
    pub running: u32,
    pub initializing: u32,
    pub throttled: u32,
    pub unhealthy: u32,
}

/// The state of a resource and, once known, how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceStatus {
    pub state: ResourceState,
    pub message: Option<String>,
    pub workers: Workers,
    pub upstream: Option<UpstreamTarget>,
}

/// What the provider says about a running resource's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderHealth {
    pub reachable: bool,
    pub workers: Workers,
    /// Requests waiting in the provider's queue.
    pub queue_depth: u32,
    pub message: Option<String>,
}

/// Whether a provider can be used on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub provider: ProviderKind,
    pub available: bool,
    /// Why not, and what to set, when unavailable.
    pub message: Option<String>,
}

/// A provider call that failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("{provider} is not configured: {message}")]
    NotConfigured {
        provider: ProviderKind,
        message: String,
    },
    #[error("{provider} refused the credentials ({status}): {message}")]
    Unauthorized {
        provider: ProviderKind,
        status: u16,
        message: String,
    },
    #[error("{provider}: {what} not found")]
    NotFound {
        provider: ProviderKind,
        what: String,
    },
    #[error("{provider} is rate limiting requests: {message}")]
    RateLimited {
        provider: ProviderKind,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("{provider} has no capacity: {message}")]
    NoCapacity {
        provider: ProviderKind,
        message: String,
    },
    #[error("{provider} rejected the request ({status}): {message}")]
    Rejected {
        provider: ProviderKind,
        status: u16,
        message: String,
    },
    #[error("{provider} failed ({status}): {message}")]
    Server {
        provider: ProviderKind,
        status: u16,
        message: String,
    },
    #[error("{provider} is unreachable: {message}")]
    Transport {
        provider: ProviderKind,
        message: String,
    },
    #[error("{provider} answered something unexpected: {message}")]
    BadResponse {
        provider: ProviderKind,
        message: String,
    },
    #[error("{provider}: {message}")]
    Process {
        provider: ProviderKind,
        message: String,
    },
    #[error("{provider} cannot {message}")]
    Unsupported {
        provider: ProviderKind,
        message: String,
    },
}

impl ProviderError {
    /// The provider the error came from.
    pub fn provider(&self) -> ProviderKind {
        match self {
            Self::NotConfigured { provider, .. }
            | Self::Unauthorized { provider, .. }
            | Self::NotFound { provider, .. }
            | Self::RateLimited { provider, .. }
            | Self::NoCapacity { provider, .. }
            | Self::Rejected { provider, .. }
            | Self::Server { provider, .. }
            | Self::Transport { provider, .. }
            | Self::BadResponse { provider, .. }
            | Self::Process { provider, .. }
            | Self::Unsupported { provider, .. } => *provider,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured { .. } => "provider_not_configured",
            Self::Unauthorized { .. } => "provider_unauthorized",
            Self::NotFound { .. } => "provider_not_found",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::NoCapacity { .. } => "provider_no_capacity",
            Self::Rejected { .. } => "provider_rejected",
            Self::Server { .. } => "provider_server_error",
            Self::Transport { .. } => "provider_unreachable",
            Self::BadResponse { .. } => "provider_bad_response",
            Self::Process { .. } => "provider_process_failed",
            Self::Unsupported { .. } => "provider_unsupported",
        }
    }

    /// A later try of the same call may succeed (rate limit, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. }
        )
    }
}

/// One provider's management API.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// Whether credentials are configured; a clear message when not.
    fn availability(&self) -> Availability;

    /// Creates the resource. Callers first try [`Provisioner::find`] so a
    /// retried step does not create a second resource.
    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError>;

    /// Finds a resource this server created earlier by its `sy-…` name.
    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError>;

    /// Reads the life-cycle state and, when ready, the inference target.
    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError>;

    /// Applies new scaling limits to the provider.
    async fn update_scaling(
        &self,
        resource: &ProviderResource,
        scaling: &Scaling,
    ) -> Result<(), ProviderError>;

    /// Deletes the resource; a resource that is already gone is not an error.
    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError>;

    /// Health as the provider sees it (reachable, workers, queue).
    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError>;

    /// Every resource of the account whose name starts with [`MANAGED_PREFIX`].
    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError>;
}

/// The provisioners of this server, by kind.
#[derive(Clone)]
pub struct Providers {
    by_kind: BTreeMap<&'static str, Arc<dyn Provisioner>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("kinds", &self.by_kind.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Providers {
    /// Builds every provisioner from its configuration.
    pub fn from_config(config: &ProvidersConfig) -> Self {
        let client = http::management_client();
        let provisioners: Vec<Arc<dyn Provisioner>> = vec![
            Arc::new(runpod::RunPod::new(config.runpod.clone(), client.clone())),
            Arc::new(huggingface::HuggingFace::new(
                config.huggingface.clone(),
                client.clone(),
            )),
            Arc::new(replicate::Replicate::new(
                config.replicate.clone(),
                client.clone(),
            )),
            Arc::new(together::Together::new(
                config.together.clone(),
                client.clone(),
            )),
            Arc::new(modal::Modal::new(config.modal.clone(), client.clone())),
            Arc::new(self_hosted::SelfHosted::new(
                config.self_hosted.clone(),
                client.clone(),
            )),
            Arc::new(external::External::new(client)),
        ];
        Self::from_provisioners(provisioners)
    }

    /// Builds the set from given provisioners (tests replace some with fakes).
    pub fn from_provisioners(provisioners: Vec<Arc<dyn Provisioner>>) -> Self {
        let by_kind = provisioners
            .into_iter()
            .map(|provisioner| (provisioner.kind().as_str(), provisioner))
            .collect();
        Self { by_kind }
    }

    /// The provisioner of a kind.
    pub fn get(&self, kind: ProviderKind) -> Option<Arc<dyn Provisioner>> {
        self.by_kind.get(kind.as_str()).cloned()
    }

    /// Availability of every provider, in a stable order.
    pub fn availability(&self) -> Vec<Availability> {
        ProviderKind::ALL
            .iter()
            .map(|kind| match self.get(*kind) {
                Some(provisioner) => provisioner.availability(),
                None => Availability {
                    provider: *kind,
                    available: false,
                    message: Some(format!("{kind} is not built into this server")),
                },
            })
            .collect()
    }

    /// Whether a provider can be deployed to now.
    pub fn is_available(&self, kind: ProviderKind) -> bool {
        self.get(kind)
            .is_some_and(|provisioner| provisioner.availability().available)
    }
}

/// The `sy-…` resource name of an endpoint: lowercase, provider-safe, unique.
pub fn resource_name(endpoint_id: &str) -> String {
    let compact: String = endpoint_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    // UUID v7: the first 12 hex digits are the time, the last 12 are random.
    let tail = &compact[compact.len().saturating_sub(20)..];
    format!("{MANAGED_PREFIX}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_short_and_prefixed() {
        let name = resource_name("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(name, "sy-7e5f8a9b0c1d2e3f4a5b");
        assert!(name.starts_with(MANAGED_PREFIX));
        assert!(name.len() <= 32);
    }

    #[test]
    fn provider_kinds_have_wire_names() {
        assert_eq!(
            ProviderKind::parse("self-hosted"),
            Some(ProviderKind::SelfHosted)
        );
        assert_eq!(ProviderKind::RunPod.as_str(), "runpod");
        assert_eq!(ProviderKind::parse("aws"), None);
    }
}

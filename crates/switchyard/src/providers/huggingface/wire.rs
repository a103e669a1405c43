//! Wire shapes of the Inference Endpoints API (PROVIDERS.md section 3): the
//! create and update bodies Switchyard sends, and the fields it reads from
//! endpoints and from the hardware catalog.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{MANAGED_TAG, PROVIDER};
use crate::domain::Modality;
use crate::providers::config::HuggingFaceConfig;
use crate::providers::{DeploySpec, ProviderError, ResourceState, Scaling, Workers};

/// Port the vLLM OpenAI server listens on inside the container.
const VLLM_PORT: u16 = 8000;
/// The vLLM health route, also the official client's ready probe.
const HEALTH_ROUTE: &str = "/health";
/// Pending requests per replica before Hugging Face adds a replica.
const PENDING_REQUESTS_THRESHOLD: u32 = 2;

/// The create body for a deployment (PROVIDERS.md 3.1).
pub(super) fn create_body(
    spec: &DeploySpec,
    config: &HuggingFaceConfig,
    instance_type: &str,
    instance_size: &str,
) -> Result<Value, ProviderError> {
    let task = match spec.modality {
        Modality::Llm => "text-generation",
        Modality::Embedding => "feature-extraction",
        other => {
            return Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("serve {other} models on Hugging Face with the vLLM engine"),
            })
        }
    };
    let count = spec.gpu.count.max(1);
    let mut args = vec![
        "--served-model-name".to_owned(),
        spec.served_model_name.clone(),
    ];
    if let Some(max_model_len) = spec.max_model_len {
        args.extend(["--max-model-len".to_owned(), max_model_len.to_string()]);
    }
    Ok(json!({
        "name": spec.resource_name,
        "type": "private",
        "provider": { "vendor": config.vendor, "region": config.region },
        "compute": {
            "accelerator": "gpu",
            "instanceType": instance_type,
            "instanceSize": instance_size,
            "scaling": scaling_body(&spec.scaling),
        },
        "model": {
            "repository": spec.model_id,
            "revision": spec.revision,
            "framework": "pytorch",
            "task": task,
            "image": { "vLLM": {
                "url": config.vllm_image,
                "port": VLLM_PORT,
                "healthRoute": HEALTH_ROUTE,
                "tensorParallelSize": count,
            } },
            "args": args,
        },
        "tags": [MANAGED_TAG],
    }))
}

/// The `compute.scaling` object: minutes for the idle timeout, at least 1.
pub(super) fn scaling_body(scaling: &Scaling) -> Value {
    let max_replica = scaling.max_workers.max(scaling.min_workers).max(1);
    json!({
        "minReplica": scaling.min_workers,
        "maxReplica": max_replica,
        "scaleToZeroTimeout": scale_to_zero_minutes(scaling.idle_timeout_seconds),
        "measure": { "pendingRequests": PENDING_REQUESTS_THRESHOLD },
    })
}

/// Seconds to whole minutes, rounding up, at least 1.
pub(super) fn scale_to_zero_minutes(seconds: u32) -> u32 {
    seconds.div_ceil(60).max(1)
}

/// The Hugging Face instance type nearest to a price-table GPU.
pub(super) fn instance_type(gpu: &str) -> Option<&'static str> {
    Some(match gpu.to_ascii_uppercase().as_str() {
        "T4" => "nvidia-t4",
        "L4" => "nvidia-l4",
        "A10G" => "nvidia-a10g",
        // Hugging Face offers only the 80 GB A100.
        "A100-80GB" | "A100-40GB" => "nvidia-a100",
        "H100" => "nvidia-h100",
        // No consumer cards; the L4 is the nearest 24 GB GPU.
        "RTX3090" | "RTX4090" => "nvidia-l4",
        _ => return None,
    })
}

/// Hugging Face state name to [`ResourceState`] (`running` is only a
/// candidate for `Ready`: the caller still needs the URL and the probe).
pub(super) fn map_state(state: &str) -> Result<ResourceState, ProviderError> {
    Ok(match state {
        "pending" => ResourceState::Pending,
        "initializing" => ResourceState::Initializing,
        "updating" => ResourceState::Updating,
        "updateFailed" | "failed" => ResourceState::Failed,
        "running" => ResourceState::Ready,
        "paused" => ResourceState::Stopped,
        "scaledToZero" => ResourceState::ScaledToZero,
        other => {
            return Err(ProviderError::BadResponse {
                provider: PROVIDER,
                message: format!("unknown endpoint state {other:?}"),
            })
        }
    })
}

/// `GET /v2/endpoint/{namespace}`.
#[derive(Debug, Deserialize)]
pub(super) struct EndpointList {
    #[serde(default)]
    pub(super) items: Vec<Endpoint>,
}

/// An endpoint as the API shows it (only the fields Switchyard reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Endpoint {
    pub(super) name: String,
    #[serde(default)]
    pub(super) health_route: Option<String>,
    pub(super) model: EndpointModel,
    pub(super) status: EndpointStatus,
}

#[derive(Debug, Deserialize)]
pub(super) struct EndpointModel {
    pub(super) repository: String,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) image: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EndpointStatus {
    pub(super) state: String,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) ready_replica: Option<u32>,
    #[serde(default)]
    pub(super) target_replica: Option<u32>,
}

impl Endpoint {
    pub(super) fn url(&self) -> Option<&str> {
        self.status.url.as_deref().filter(|url| !url.is_empty())
    }

    /// The top-level `healthRoute`, else the engine's, else `/health`.
    pub(super) fn health_route(&self) -> String {
        self.health_route
            .clone()
            .or_else(|| {
                self.model
                    .image
                    .as_object()
                    .and_then(|image| image.values().next())
                    .and_then(|engine| engine.get("healthRoute"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| HEALTH_ROUTE.to_owned())
    }

    /// `--served-model-name` from the engine args, else the repository id.
    pub(super) fn served_model_name(&self) -> String {
        let mut args = self.model.args.iter();
        while let Some(arg) = args.next() {
            if arg == "--served-model-name" {
                if let Some(name) = args.next() {
                    return name.clone();
                }
            } else if let Some(name) = arg.strip_prefix("--served-model-name=") {
                return name.to_owned();
            }
        }
        self.model.repository.clone()
    }

    pub(super) fn workers(&self) -> Workers {
        let ready = self.status.ready_replica.unwrap_or(0);
        let target = self.status.target_replica.unwrap_or(0);
        Workers {
            ready,
            running: ready,
            initializing: target.saturating_sub(ready),
            throttled: 0,
            unhealthy: 0,
        }
    }
}

/// `GET /v2/provider/{namespace}`: vendors, their regions and computes.
#[derive(Debug, Deserialize)]
pub(super) struct Catalog {
    #[serde(default)]
    pub(super) vendors: Vec<CatalogVendor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CatalogVendor {
    pub(super) name: String,
    #[serde(default)]
    pub(super) regions: Vec<CatalogRegion>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CatalogRegion {
    pub(super) name: String,
    #[serde(default)]
    pub(super) computes: Vec<CatalogCompute>,
}

/// One hardware choice (huggingface_hub `InferenceEndpointHardware.from_raw`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CatalogCompute {
    #[serde(default)]
    pub(super) id: String,
    pub(super) accelerator: String,
    pub(super) instance_type: String,
    pub(super) instance_size: String,
    #[serde(default)]
    pub(super) num_accelerators: u32,
    pub(super) status: String,
    #[serde(default)]
    pub(super) quota: Option<CatalogQuota>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CatalogQuota {
    pub(super) max_accelerators: u32,
    pub(super) used_accelerators: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_map_to_the_nearest_instance_type() {
        assert_eq!(instance_type("T4"), Some("nvidia-t4"));
        assert_eq!(instance_type("A100-40GB"), Some("nvidia-a100"));
        assert_eq!(instance_type("RTX4090"), Some("nvidia-l4"));
        assert_eq!(instance_type("h100"), Some("nvidia-h100"));
        assert_eq!(instance_type("MI300X"), None);
    }

    #[test]
    fn idle_timeouts_round_up_to_whole_minutes() {
        assert_eq!(scale_to_zero_minutes(0), 1);
        assert_eq!(scale_to_zero_minutes(60), 1);
        assert_eq!(scale_to_zero_minutes(61), 2);
        assert_eq!(scale_to_zero_minutes(900), 15);
    }
}

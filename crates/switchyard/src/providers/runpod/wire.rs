//! RunPod REST v2 wire shapes: the bodies Switchyard sends
//! (`CreateTemplateRequest`, `CreateEndpointRequest`, the `workers` of
//! `UpdateEndpointRequest`) and the parts of `Endpoint`,
//! `ListEndpointWorkersResponse` and `Template` it reads, as named in
//! `shared/specs/runpod/rest-v2-openapi.json`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::providers::config::RunPodConfig;
use crate::providers::{DeploySpec, GpuChoice, Scaling, Workers};

/// Queue wait (seconds) at which RunPod adds a worker (the spec's example value).
pub(super) const QUEUE_DELAY_SECONDS: u32 = 4;
/// Per-request execution timeout in milliseconds; long generations need more
/// than RunPod's 300 000 default.
pub(super) const REQUEST_TIMEOUT_MS: u64 = 600_000;
/// The worker-vllm v2 image is built on CUDA 13.0 (its hub manifest allows
/// only `13.0`); a floor keeps workers off hosts whose driver cannot run it.
pub(super) const MIN_CUDA_VERSION: &str = "13.0";
/// `workers.idleTimeout` bounds in seconds (spec `EndpointWorkers`).
pub(super) const IDLE_TIMEOUT_SECONDS: (u32, u32) = (1, 3600);

/// `POST /v2/templates`: the worker-vllm container for this model.
pub(super) fn template_body(config: &RunPodConfig, spec: &DeploySpec) -> Value {
    let mut env = BTreeMap::new();
    env.insert("MODEL_NAME", spec.model_id.clone());
    if let Some(revision) = &spec.revision {
        env.insert("MODEL_REVISION", revision.clone());
    }
    if let Some(token) = &config.hf_token {
        env.insert("HF_TOKEN", token.expose().to_owned());
    }
    if let Some(max_model_len) = spec.max_model_len {
        env.insert("MAX_MODEL_LEN", max_model_len.to_string());
    }
    env.insert(
        "OPENAI_SERVED_MODEL_NAME_OVERRIDE",
        spec.served_model_name.clone(),
    );
    env.insert("TENSOR_PARALLEL_SIZE", spec.gpu.count.max(1).to_string());
    env.insert("RAW_OPENAI_OUTPUT", "1".to_owned());
    json!({
        "name": spec.resource_name,
        "image": config.worker_image,
        "serverless": true,
        "public": false,
        "category": "NVIDIA",
        "disk": container_disk_gb(&spec.gpu),
        "env": env,
        "startSsh": false,
        "startJupyter": false,
    })
}

/// `POST /v2/serverless`: a queue endpoint on the template.
pub(super) fn endpoint_body(spec: &DeploySpec, template_id: &str, pool: &str) -> Value {
    json!({
        "name": spec.resource_name,
        "type": "QUEUE",
        "templateId": template_id,
        "gpu": {
            "pools": [pool],
            "count": spec.gpu.count.max(1),
            "minCudaVersion": MIN_CUDA_VERSION,
        },
        "workers": workers_body(&spec.scaling),
        "scaling": { "type": "QUEUE_DELAY", "queueDelay": QUEUE_DELAY_SECONDS },
        "timeout": REQUEST_TIMEOUT_MS,
        "flashboot": "FLASHBOOT",
    })
}

/// `workers` of a create or PATCH; `max` is never below `min`.
pub(super) fn workers_body(scaling: &Scaling) -> Value {
    json!({
        "min": scaling.min_workers,
        "max": scaling.max_workers.max(scaling.min_workers),
        "idleTimeout": scaling
            .idle_timeout_seconds
            .clamp(IDLE_TIMEOUT_SECONDS.0, IDLE_TIMEOUT_SECONDS.1),
    })
}

/// Container disk in GB: room for weights as large as the workers' VRAM plus
/// the image (about 30 GB), at least 50 GB.
fn container_disk_gb(gpu: &GpuChoice) -> u32 {
    gpu.vram_gb
        .saturating_mul(gpu.count.max(1))
        .saturating_add(30)
        .clamp(50, 2000)
}

#[derive(Deserialize)]
pub(super) struct EndpointList {
    #[serde(default)]
    pub(super) endpoints: Vec<EndpointWire>,
}

#[derive(Deserialize)]
pub(super) struct EndpointWire {
    pub(super) id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) env: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub(super) workers: WorkersWire,
}

impl EndpointWire {
    /// The model name the worker serves, from its environment.
    pub(super) fn served_model(&self) -> Option<String> {
        let env = self.env.as_ref()?;
        ["OPENAI_SERVED_MODEL_NAME_OVERRIDE", "MODEL_NAME"]
            .iter()
            .find_map(|key| env.get(*key).and_then(Value::as_str))
            .filter(|model| !model.is_empty())
            .map(str::to_owned)
    }
}

#[derive(Deserialize, Default)]
pub(super) struct WorkersWire {
    #[serde(default)]
    pub(super) min: u32,
    #[serde(default)]
    pub(super) max: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct WorkerList {
    #[serde(default)]
    pub(super) workers: Vec<WorkerWire>,
    #[serde(default)]
    pub(super) summary: Option<WorkerSummaryWire>,
}

impl WorkerList {
    pub(super) fn counts(&self) -> Workers {
        if let Some(summary) = &self.summary {
            return Workers {
                ready: summary.idle,
                running: summary.running,
                initializing: summary.initializing,
                throttled: summary.throttled,
                unhealthy: summary.unhealthy,
            };
        }
        let mut counts = Workers::default();
        for worker in &self.workers {
            match worker.status.as_str() {
                "IDLE" => counts.ready += 1,
                "RUNNING" => counts.running += 1,
                "INITIALIZING" => counts.initializing += 1,
                "THROTTLED" => counts.throttled += 1,
                _ => counts.unhealthy += 1,
            }
        }
        counts
    }
}

#[derive(Deserialize)]
pub(super) struct WorkerWire {
    pub(super) status: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WorkerSummaryWire {
    pub(super) running: u32,
    pub(super) idle: u32,
    pub(super) initializing: u32,
    pub(super) throttled: u32,
    pub(super) unhealthy: u32,
}

#[derive(Deserialize)]
pub(super) struct TemplateList {
    #[serde(default)]
    pub(super) templates: Vec<TemplateWire>,
}

#[derive(Deserialize)]
pub(super) struct TemplateWire {
    pub(super) id: String,
    pub(super) name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_clamped_to_what_runpod_accepts() {
        let body = workers_body(&Scaling {
            min_workers: 2,
            max_workers: 1,
            idle_timeout_seconds: 7200,
        });
        assert_eq!(body, json!({"min": 2, "max": 2, "idleTimeout": 3600}));
        let body = workers_body(&Scaling {
            min_workers: 0,
            max_workers: 3,
            idle_timeout_seconds: 0,
        });
        assert_eq!(body, json!({"min": 0, "max": 3, "idleTimeout": 1}));
    }
}

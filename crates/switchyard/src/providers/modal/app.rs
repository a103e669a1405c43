//! The Modal app file of one deployment: what it is rendered from (kept in
//! the resource details so a scaling change can render it again) and the
//! Python source rendered from `app.py.tmpl`.
//!
//! Every value from the deploy spec enters the file as a JSON literal, which
//! is also a valid Python literal, so no model id can inject code.

use std::collections::BTreeMap;

use crate::providers::{DeploySpec, GpuChoice, ProviderError, ProviderKind, Scaling};

const TEMPLATE: &str = include_str!("app.py.tmpl");
/// Seconds one request may run in the function.
const FUNCTION_TIMEOUT_SECONDS: u32 = 3600;
/// Seconds a new container gets to load the model and open port 8000.
const STARTUP_TIMEOUT_SECONDS: u32 = 1200;
/// Bounds of `scaledown_window` in seconds (Modal takes 2 s to 20 min).
const SCALEDOWN_WINDOW: (u32, u32) = (2, 1200);

/// The inputs of one rendered app file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppParams {
    /// The Modal app name (the `sy-…` resource name).
    pub app_name: String,
    pub endpoint_id: String,
    pub model_id: String,
    pub revision: Option<String>,
    pub served_model_name: String,
    /// Modal's GPU string, with the `:N` count suffix when N > 1.
    pub gpu: String,
    pub gpu_count: u32,
    pub max_model_len: Option<u32>,
    pub vllm_version: String,
    pub scaling: Scaling,
}

impl AppParams {
    /// The inputs for a new deployment.
    pub fn from_spec(spec: &DeploySpec, vllm_version: &str) -> Result<Self, ProviderError> {
        Ok(Self {
            app_name: spec.resource_name.clone(),
            endpoint_id: spec.endpoint_id.clone(),
            model_id: spec.model_id.clone(),
            revision: spec.revision.clone(),
            served_model_name: spec.served_model_name.clone(),
            gpu: modal_gpu(&spec.gpu)?,
            gpu_count: spec.gpu.count.max(1),
            max_model_len: spec.max_model_len,
            vllm_version: vllm_version.to_owned(),
            scaling: spec.scaling,
        })
    }

    /// The facts kept in [`crate::providers::ProviderResource::details`].
    pub fn details(&self) -> BTreeMap<String, String> {
        let mut details = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            details.insert(key.to_owned(), value);
        };
        put("endpoint_id", self.endpoint_id.clone());
        put("model_id", self.model_id.clone());
        put("served_model_name", self.served_model_name.clone());
        put("gpu", self.gpu.clone());
        put("gpu_count", self.gpu_count.to_string());
        put("vllm_version", self.vllm_version.clone());
        if let Some(revision) = &self.revision {
            put("revision", revision.clone());
        }
        if let Some(length) = self.max_model_len {
            put("max_model_len", length.to_string());
        }
        details
    }

    /// The inputs of a deployed app with new scaling.
    pub fn from_details(
        app_name: &str,
        details: &BTreeMap<String, String>,
        scaling: Scaling,
    ) -> Result<Self, ProviderError> {
        let field = |key: &str| {
            details
                .get(key)
                .cloned()
                .ok_or_else(|| ProviderError::BadResponse {
                    provider: ProviderKind::Modal,
                    message: format!("the stored resource {app_name} has no {key}"),
                })
        };
        let number = |key: &str| details.get(key).and_then(|text| text.parse::<u32>().ok());
        Ok(Self {
            app_name: app_name.to_owned(),
            endpoint_id: field("endpoint_id")?,
            model_id: field("model_id")?,
            revision: details.get("revision").cloned(),
            served_model_name: field("served_model_name")?,
            gpu: field("gpu")?,
            gpu_count: number("gpu_count").unwrap_or(1),
            max_model_len: number("max_model_len"),
            vllm_version: field("vllm_version")?,
            scaling,
        })
    }

    /// The `vllm serve` command the function starts.
    fn command(&self) -> Vec<String> {
        let mut command: Vec<String> = [
            "vllm",
            "serve",
            &self.model_id,
            "--served-model-name",
            &self.served_model_name,
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
        ]
        .iter()
        .map(|part| (*part).to_owned())
        .collect();
        if let Some(revision) = &self.revision {
            command.extend(["--revision".to_owned(), revision.clone()]);
        }
        if self.gpu_count > 1 {
            command.extend([
                "--tensor-parallel-size".to_owned(),
                self.gpu_count.to_string(),
            ]);
        }
        if let Some(length) = self.max_model_len {
            command.extend(["--max-model-len".to_owned(), length.to_string()]);
        }
        command
    }

    /// The Python source of the app file.
    pub fn render(&self) -> String {
        let literal = |text: &str| serde_json::Value::from(text).to_string();
        let min = self.scaling.min_workers;
        let max = self.scaling.max_workers.max(min).max(1);
        let window = self
            .scaling
            .idle_timeout_seconds
            .clamp(SCALEDOWN_WINDOW.0, SCALEDOWN_WINDOW.1);
        let command = format!(
            "[{}]",
            self.command()
                .iter()
                .map(|part| literal(part))
                .collect::<Vec<_>>()
                .join(", ")
        );
        [
            ("{{endpoint_id}}", literal(&self.endpoint_id)),
            (
                "{{vllm_requirement}}",
                literal(&format!("vllm=={}", self.vllm_version)),
            ),
            ("{{app_name}}", literal(&self.app_name)),
            ("{{gpu}}", literal(&self.gpu)),
            ("{{scaledown_window}}", window.to_string()),
            ("{{min_containers}}", min.to_string()),
            ("{{max_containers}}", max.to_string()),
            ("{{timeout}}", FUNCTION_TIMEOUT_SECONDS.to_string()),
            ("{{startup_timeout}}", STARTUP_TIMEOUT_SECONDS.to_string()),
            ("{{command}}", command),
        ]
        .iter()
        .fold(TEMPLATE.to_owned(), |text, (placeholder, value)| {
            text.replace(placeholder, value)
        })
    }
}

/// Modal's GPU string for a GPU of the price table (modal.com/docs/guide/gpu).
///
/// RTX 3090/4090 are consumer cards Modal does not offer at all, which is
/// [`ProviderError::Unsupported`] (waiting would not help, unlike no capacity).
pub fn modal_gpu(gpu: &GpuChoice) -> Result<String, ProviderError> {
    let (name, max_count) = match gpu.name.as_str() {
        "T4" => ("T4", 8),
        "L4" => ("L4", 8),
        "A10G" | "A10" => ("A10", 4),
        "L40S" => ("L40S", 8),
        "A100-40GB" => ("A100-40GB", 8),
        "A100-80GB" => ("A100-80GB", 8),
        "H100" => ("H100", 8),
        "H200" => ("H200", 8),
        "B200" => ("B200", 8),
        other => {
            return Err(ProviderError::Unsupported {
                provider: ProviderKind::Modal,
                message: format!(
                    "run on {other}: Modal offers T4, L4, A10, L40S, A100-40GB, A100-80GB, H100, H200 and B200"
                ),
            })
        }
    };
    let count = gpu.count.max(1);
    if count > max_count {
        return Err(ProviderError::Unsupported {
            provider: ProviderKind::Modal,
            message: format!("attach {count} {name} GPUs to one container (at most {max_count})"),
        });
    }
    Ok(if count > 1 {
        format!("{name}:{count}")
    } else {
        name.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Modality;

    fn spec(gpu: &str, count: u32) -> DeploySpec {
        DeploySpec {
            endpoint_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
            resource_name: "sy-7e5f8a9b0c1d2e3f4a5b".to_owned(),
            model_id: "Qwen/Qwen2.5-7B-Instruct\"; import os".to_owned(),
            revision: Some("abc123".to_owned()),
            served_model_name: "qwen".to_owned(),
            modality: Modality::Llm,
            gpu: GpuChoice {
                name: gpu.to_owned(),
                count,
                vram_gb: 80,
            },
            scaling: Scaling {
                min_workers: 0,
                max_workers: 3,
                idle_timeout_seconds: 5000,
            },
            max_model_len: None,
            source_url: None,
        }
    }

    #[test]
    fn gpu_strings_follow_modal_names() {
        let gpu = |name: &str, count| {
            modal_gpu(&GpuChoice {
                name: name.to_owned(),
                count,
                vram_gb: 24,
            })
        };
        assert_eq!(gpu("A10G", 1).unwrap(), "A10");
        assert_eq!(gpu("H100", 2).unwrap(), "H100:2");
        assert_eq!(gpu("A100-40GB", 1).unwrap(), "A100-40GB");
        assert!(matches!(
            gpu("RTX4090", 1),
            Err(ProviderError::Unsupported { .. })
        ));
        assert!(matches!(
            gpu("A10G", 5),
            Err(ProviderError::Unsupported { .. })
        ));
    }

    #[test]
    fn renders_literals_and_round_trips_through_details() {
        let params = AppParams::from_spec(&spec("H100", 2), "0.23.0").unwrap();
        let file = params.render();
        assert!(file.contains(r#"app = modal.App("sy-7e5f8a9b0c1d2e3f4a5b")"#));
        assert!(file.contains(r#""Qwen/Qwen2.5-7B-Instruct\"; import os""#));
        assert!(file.contains(r#"gpu="H100:2""#));
        assert!(file.contains("scaledown_window=1200,"));
        assert!(file.contains(r#""--tensor-parallel-size", "2""#));
        assert!(file.contains(r#""--revision", "abc123""#));
        assert!(!file.contains("{{"));
        let again =
            AppParams::from_details(&params.app_name, &params.details(), params.scaling).unwrap();
        assert_eq!(again, params);
    }
}

//! Provider settings: master credentials and base URLs from the environment.
//!
//! Credentials use the providers' own variable names (`RUNPOD_API_KEY`,
//! `HF_TOKEN`, `REPLICATE_API_TOKEN`, `TOGETHER_API_KEY`, `MODAL_TOKEN_ID`,
//! `MODAL_TOKEN_SECRET`); every base URL can be overridden so tests point the
//! provisioners at local fakes. The environment is read through a function so
//! tests pass a map and never mutate the process environment.

use std::path::PathBuf;
use std::time::Duration;

/// A credential whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// RunPod Serverless (REST v2 management API and the job API).
#[derive(Debug, Clone)]
pub struct RunPodConfig {
    pub api_key: Option<Secret>,
    /// Management API host (paths start with `/v2`).
    pub rest_base_url: String,
    /// Job API host (`/v2/{endpoint_id}/run`, `/openai/v1`, ...).
    pub jobs_base_url: String,
    /// The vLLM worker image used for LLMs.
    pub worker_image: String,
    /// Hugging Face token passed to workers for gated models.
    pub hf_token: Option<Secret>,
}

/// Hugging Face Inference Endpoints.
#[derive(Debug, Clone)]
pub struct HuggingFaceConfig {
    pub token: Option<Secret>,
    pub api_base_url: String,
    /// User or organisation that owns the endpoints (`SWITCHYARD_HF_NAMESPACE`).
    pub namespace: Option<String>,
    pub vendor: String,
    pub region: String,
    pub vllm_image: String,
}

/// Replicate deployments.
#[derive(Debug, Clone)]
pub struct ReplicateConfig {
    pub token: Option<Secret>,
    pub api_base_url: String,
    /// Account that owns the private models and deployments (`SWITCHYARD_REPLICATE_OWNER`).
    pub owner: Option<String>,
    pub hf_token: Option<Secret>,
}

/// Together AI dedicated endpoints (v1).
#[derive(Debug, Clone)]
pub struct TogetherConfig {
    pub api_key: Option<Secret>,
    pub api_base_url: String,
}

/// Modal, driven through its `modal` CLI.
#[derive(Debug, Clone)]
pub struct ModalConfig {
    pub token_id: Option<Secret>,
    pub token_secret: Option<Secret>,
    /// The `modal` executable (`SWITCHYARD_MODAL_CLI`, default `modal` on PATH).
    pub cli: String,
    pub environment: Option<String>,
    /// Proxy auth token the gateway sends as `Modal-Key` / `Modal-Secret`.
    pub proxy_token_id: Option<Secret>,
    pub proxy_token_secret: Option<Secret>,
    /// Where generated app files are written.
    pub work_dir: PathBuf,
    pub vllm_version: String,
    /// Bound on one `modal` CLI run.
    pub cli_timeout: Duration,
}

/// A self-hosted node: Switchyard starts an inference server process itself.
#[derive(Debug, Clone)]
pub struct SelfHostedConfig {
    /// Command template, e.g. `llama-server -m /models/x.gguf --port {port} -a {served_model_name}`
    /// or `vllm serve {model_id} --port {port} --served-model-name {served_model_name}`.
    pub command: Option<String>,
    pub host: String,
    /// Ports handed out to servers, inclusive.
    pub port_range: (u16, u16),
    pub health_path: String,
    pub startup_timeout: Duration,
    /// Where each server's log is kept.
    pub log_dir: PathBuf,
    /// Extra environment variables the servers get (`SWITCHYARD_SELF_HOSTED_ENV`,
    /// comma-separated, e.g. `HF_TOKEN`); Switchyard's own secrets never pass.
    pub pass_env: Vec<String>,
}

/// The Hugging Face Hub API used for model analysis.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub base_url: String,
    pub token: Option<Secret>,
}

/// Settings of every provider.
#[derive(Debug, Clone)]
pub struct ProvidersConfig {
    pub runpod: RunPodConfig,
    pub huggingface: HuggingFaceConfig,
    pub replicate: ReplicateConfig,
    pub together: TogetherConfig,
    pub modal: ModalConfig,
    pub self_hosted: SelfHostedConfig,
    pub hub: HubConfig,
}

impl ProvidersConfig {
    /// Reads the process environment.
    pub fn from_process_env(data_dir: &std::path::Path) -> Self {
        Self::from_env(
            |name| std::env::var(name).ok().filter(|value| !value.is_empty()),
            data_dir,
        )
    }

    /// Reads settings through `get` (a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>, data_dir: &std::path::Path) -> Self {
        let secret = |name: &str| get(name).map(Secret::new);
        let url = |name: &str, default: &str| {
            get(name)
                .unwrap_or_else(|| default.to_owned())
                .trim_end_matches('/')
                .to_owned()
        };
        let hf_token = secret("HF_TOKEN");
        let port_range = get("SWITCHYARD_SELF_HOSTED_PORTS")
            .and_then(|text| parse_port_range(&text))
            .unwrap_or((20_000, 20_999));
        let seconds = |name: &str, default: u64| {
            Duration::from_secs(
                get(name)
                    .and_then(|text| text.parse::<u64>().ok())
                    .filter(|value| *value > 0)
                    .unwrap_or(default),
            )
        };
        Self {
            runpod: RunPodConfig {
                api_key: secret("RUNPOD_API_KEY"),
                rest_base_url: url("SWITCHYARD_RUNPOD_API_URL", "https://api.runpod.io"),
                jobs_base_url: url("SWITCHYARD_RUNPOD_JOBS_URL", "https://api.runpod.ai"),
                worker_image: get("SWITCHYARD_RUNPOD_WORKER_IMAGE")
                    .unwrap_or_else(|| "runpod/worker-v1-vllm:v2.25.2".to_owned()),
                hf_token: hf_token.clone(),
            },
            huggingface: HuggingFaceConfig {
                token: hf_token.clone(),
                api_base_url: url(
                    "SWITCHYARD_HF_ENDPOINTS_URL",
                    "https://api.endpoints.huggingface.cloud",
                ),
                namespace: get("SWITCHYARD_HF_NAMESPACE"),
                vendor: get("SWITCHYARD_HF_VENDOR").unwrap_or_else(|| "aws".to_owned()),
                region: get("SWITCHYARD_HF_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
                vllm_image: get("SWITCHYARD_HF_VLLM_IMAGE")
                    .unwrap_or_else(|| "vllm/vllm-openai:v0.23.0".to_owned()),
            },
            replicate: ReplicateConfig {
                token: secret("REPLICATE_API_TOKEN"),
                api_base_url: url("SWITCHYARD_REPLICATE_API_URL", "https://api.replicate.com"),
                owner: get("SWITCHYARD_REPLICATE_OWNER"),
                hf_token: hf_token.clone(),
            },
            together: TogetherConfig {
                api_key: secret("TOGETHER_API_KEY"),
                api_base_url: url("SWITCHYARD_TOGETHER_API_URL", "https://api.together.ai"),
            },
            modal: ModalConfig {
                token_id: secret("MODAL_TOKEN_ID"),
                token_secret: secret("MODAL_TOKEN_SECRET"),
                cli: get("SWITCHYARD_MODAL_CLI").unwrap_or_else(|| "modal".to_owned()),
                environment: get("MODAL_ENVIRONMENT"),
                proxy_token_id: secret("SWITCHYARD_MODAL_PROXY_TOKEN_ID"),
                proxy_token_secret: secret("SWITCHYARD_MODAL_PROXY_TOKEN_SECRET"),
                work_dir: data_dir.join("modal"),
                vllm_version: get("SWITCHYARD_MODAL_VLLM_VERSION")
                    .unwrap_or_else(|| "0.23.0".to_owned()),
                cli_timeout: seconds("SWITCHYARD_MODAL_CLI_TIMEOUT_SECONDS", 900),
            },
            self_hosted: SelfHostedConfig {
                command: get("SWITCHYARD_SELF_HOSTED_COMMAND"),
                host: get("SWITCHYARD_SELF_HOSTED_HOST").unwrap_or_else(|| "127.0.0.1".to_owned()),
                port_range,
                health_path: get("SWITCHYARD_SELF_HOSTED_HEALTH_PATH")
                    .unwrap_or_else(|| "/health".to_owned()),
                startup_timeout: seconds("SWITCHYARD_SELF_HOSTED_STARTUP_TIMEOUT_SECONDS", 600),
                log_dir: data_dir.join("self-hosted"),
                pass_env: get("SWITCHYARD_SELF_HOSTED_ENV")
                    .map(|text| {
                        text.split(',')
                            .map(str::trim)
                            .filter(|name| !name.is_empty() && !name.starts_with("SWITCHYARD_"))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            hub: HubConfig {
                base_url: url(
                    "SWITCHYARD_HF_HUB_URL",
                    &get("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".to_owned()),
                ),
                token: hf_token,
            },
        }
    }
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    (low > 0 && low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_credentials_and_overrides_from_a_map() {
        let env: HashMap<&str, &str> = [
            ("RUNPOD_API_KEY", "rp_secret"),
            ("SWITCHYARD_RUNPOD_API_URL", "http://127.0.0.1:9/"),
            ("HF_TOKEN", "hf_x"),
            ("SWITCHYARD_SELF_HOSTED_PORTS", "30000-30010"),
        ]
        .into_iter()
        .collect();
        let config = ProvidersConfig::from_env(
            |name| env.get(name).map(|value| (*value).to_owned()),
            std::path::Path::new("/tmp/data"),
        );
        assert_eq!(
            config.runpod.api_key.as_ref().unwrap().expose(),
            "rp_secret"
        );
        assert_eq!(config.runpod.rest_base_url, "http://127.0.0.1:9");
        assert_eq!(config.runpod.jobs_base_url, "https://api.runpod.ai");
        assert_eq!(config.huggingface.token.as_ref().unwrap().expose(), "hf_x");
        assert!(config.together.api_key.is_none());
        assert_eq!(config.self_hosted.port_range, (30_000, 30_010));
        assert_eq!(config.hub.base_url, "https://huggingface.co");
        assert!(!format!("{:?}", config.runpod).contains("rp_secret"));
    }
}

//! Model analysis from the Hugging Face Hub API: `GET /api/models/{repo}`
//! gives the pipeline tag (→ modality), the safetensors parameter counts by
//! dtype (→ size and precision) and whether the repo is gated or private.

use serde_json::Value;
use thiserror::Error;

use crate::domain::Modality;
use crate::providers::config::HubConfig;
use crate::selector::{ModelProfile, Precision};

/// Why a model could not be analysed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HubError {
    #[error("`{0}` is not a Hugging Face model id such as Qwen/Qwen2.5-7B-Instruct")]
    InvalidId(String),
    #[error("model `{0}` does not exist on the Hugging Face Hub or is not visible with the configured HF_TOKEN")]
    NotFound(String),
    #[error("the Hugging Face Hub refused access to `{0}`; set HF_TOKEN with access to it")]
    Forbidden(String),
    #[error("the Hugging Face Hub is unreachable: {0}")]
    Unreachable(String),
    #[error("the Hugging Face Hub answered {status} for `{model}`")]
    Status { model: String, status: u16 },
    #[error("cannot tell the size of `{0}`: the Hub lists no safetensors parameters or weight files; give the parameter count")]
    UnknownSize(String),
}

/// What the Hub says about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    /// The commit the analysis saw.
    pub sha: Option<String>,
    pub pipeline_tag: Option<String>,
    pub modality: Option<Modality>,
    pub parameters: Option<u64>,
    pub precision: Option<Precision>,
    pub gated: bool,
    pub private: bool,
    pub library: Option<String>,
}

impl ModelInfo {
    /// The selector's view; `modality` and `parameters` from the caller win.
    pub fn profile(
        &self,
        modality: Option<Modality>,
        parameters: Option<u64>,
        precision: Option<Precision>,
    ) -> Result<ModelProfile, HubError> {
        Ok(ModelProfile {
            modality: modality.or(self.modality).unwrap_or(Modality::Llm),
            parameters: parameters
                .or(self.parameters)
                .ok_or_else(|| HubError::UnknownSize(self.id.clone()))?,
            precision: precision.or(self.precision).unwrap_or(Precision::Fp16),
        })
    }
}

/// Checks the `owner/name` shape of a repo id.
pub fn validate_model_id(id: &str) -> Result<(), HubError> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part.len() <= 96
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !part.starts_with('.')
            && !part.contains("..")
    };
    match id.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => Ok(()),
        _ => Err(HubError::InvalidId(id.to_owned())),
    }
}

/// Turns a Hugging Face URL (`https://huggingface.co/org/name[/tree/rev]`) or
/// an id into `(id, revision)`.
pub fn parse_model_reference(text: &str) -> Result<(String, Option<String>), HubError> {
    let trimmed = text.trim().trim_end_matches('/');
    let path = ["https://huggingface.co/", "http://huggingface.co/", "hf://"]
        .iter()
        .find_map(|prefix| trimmed.strip_prefix(prefix))
        .unwrap_or(trimmed);
    let mut parts = path.split('/');
    let (Some(owner), Some(name)) = (parts.next(), parts.next()) else {
        return Err(HubError::InvalidId(text.to_owned()));
    };
    let id = format!("{owner}/{name}");
    validate_model_id(&id).map_err(|_| HubError::InvalidId(text.to_owned()))?;
    let revision = match (parts.next(), parts.next()) {
        (Some("tree" | "commit"), Some(revision)) if !revision.is_empty() => {
            Some(revision.to_owned())
        }
        _ => None,
    };
    Ok((id, revision))
}

/// Maps a pipeline tag to a modality.
pub fn modality_of(pipeline_tag: &str) -> Option<Modality> {
    Some(match pipeline_tag {
        "text-generation"
        | "text2text-generation"
        | "conversational"
        | "image-text-to-text"
        | "summarization"
        | "translation"
        | "question-answering" => Modality::Llm,
        "feature-extraction" | "sentence-similarity" | "text-ranking" => Modality::Embedding,
        "text-to-image" | "image-to-image" | "unconditional-image-generation" => Modality::Image,
        "text-to-video" | "image-to-video" => Modality::Video,
        "automatic-speech-recognition"
        | "text-to-speech"
        | "text-to-audio"
        | "audio-to-audio"
        | "audio-classification" => Modality::Audio,
        _ => return None,
    })
}

/// Reads model facts from the Hub.
#[derive(Clone)]
pub struct HubClient {
    config: HubConfig,
    client: reqwest::Client,
}

impl HubClient {
    /// A client for `config.base_url`.
    pub fn new(config: HubConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    /// `GET /api/models/{id}[/revision/{rev}]?blobs=true`, analysed.
    pub async fn model_info(
        &self,
        id: &str,
        revision: Option<&str>,
    ) -> Result<ModelInfo, HubError> {
        validate_model_id(id)?;
        let path = match revision {
            Some(revision) => format!("/api/models/{id}/revision/{revision}"),
            None => format!("/api/models/{id}"),
        };
        let mut request = self
            .client
            .get(format!("{}{path}", self.config.base_url))
            .query(&[("blobs", "true")])
            .timeout(std::time::Duration::from_secs(20));
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|error| HubError::Unreachable(error.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            401 | 404 => return Err(HubError::NotFound(id.to_owned())),
            403 => return Err(HubError::Forbidden(id.to_owned())),
            status => {
                return Err(HubError::Status {
                    model: id.to_owned(),
                    status,
                })
            }
        }
        let body: Value = response
            .json()
            .await
            .map_err(|error| HubError::Unreachable(format!("unexpected answer: {error}")))?;
        Ok(analyse(id, &body))
    }
}

/// Reads the facts out of a model-info document.
pub fn analyse(id: &str, body: &Value) -> ModelInfo {
    let pipeline_tag = body
        .get("pipeline_tag")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (parameters, precision) = match body.get("safetensors") {
        Some(safetensors) => from_safetensors(safetensors),
        None => (None, None),
    };
    let (parameters, precision) = match parameters {
        Some(parameters) => (Some(parameters), precision),
        None => from_weight_files(body),
    };
    ModelInfo {
        id: body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_owned(),
        sha: body.get("sha").and_then(Value::as_str).map(str::to_owned),
        modality: pipeline_tag.as_deref().and_then(modality_of),
        pipeline_tag,
        parameters,
        precision,
        gated: body
            .get("gated")
            .is_some_and(|gated| gated.as_bool().unwrap_or(gated.is_string())),
        private: body
            .get("private")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        library: body
            .get("library_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

fn from_safetensors(safetensors: &Value) -> (Option<u64>, Option<Precision>) {
    let by_dtype = safetensors
        .get("parameters")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(dtype, count)| Some((dtype.as_str(), count.as_u64()?)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let total = safetensors
        .get("total")
        .and_then(Value::as_u64)
        .or_else(|| {
            let sum: u64 = by_dtype.iter().map(|(_, count)| count).sum();
            (sum > 0).then_some(sum)
        });
    let dominant = by_dtype
        .iter()
        .max_by_key(|(_, count)| *count)
        .and_then(|(dtype, _)| match *dtype {
            "F32" => Some(Precision::Fp32),
            "F16" => Some(Precision::Fp16),
            "BF16" => Some(Precision::Bf16),
            "F8_E4M3" | "F8_E5M2" => Some(Precision::Fp8),
            "I8" | "U8" => Some(Precision::Int8),
            // GPTQ/AWQ checkpoints pack 4-bit weights into I32 tensors.
            "I32" => Some(Precision::Int4),
            _ => None,
        });
    (total, dominant)
}

/// Estimates the size from weight files when the Hub has no safetensors
/// metadata: `.gguf` names carry the quantisation, other weights are assumed 16-bit.
fn from_weight_files(body: &Value) -> (Option<u64>, Option<Precision>) {
    let files = body
        .get("siblings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut gguf: Option<(u64, Precision)> = None;
    let mut other_bytes = 0_u64;
    for file in &files {
        let name = file
            .get("rfilename")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let size = file.get("size").and_then(Value::as_u64).unwrap_or(0);
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".gguf") {
            let precision = if lower.contains("q4") || lower.contains("q3") || lower.contains("q2")
            {
                Precision::Int4
            } else if lower.contains("q8") || lower.contains("q6") || lower.contains("q5") {
                Precision::Int8
            } else if lower.contains("f32") {
                Precision::Fp32
            } else {
                Precision::Fp16
            };
            // One quantisation is enough to size the model: keep the smallest file.
            if gguf.is_none_or(|(bytes, _)| size < bytes) && size > 0 {
                gguf = Some((size, precision));
            }
        } else if lower.ends_with(".safetensors") || lower.ends_with(".bin") {
            other_bytes += size;
        }
    }
    if other_bytes > 0 {
        return (Some(other_bytes / 2), Some(Precision::Fp16));
    }
    match gguf {
        Some((bytes, precision)) => {
            let tenth_bytes = match precision {
                Precision::Int4 => 5,
                Precision::Int8 | Precision::Fp8 => 10,
                Precision::Fp32 => 40,
                Precision::Fp16 | Precision::Bf16 => 20,
            };
            (Some(bytes * 10 / tenth_bytes), Some(precision))
        }
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn analyses_safetensors_metadata() {
        let info = analyse(
            "Qwen/Qwen2.5-7B-Instruct",
            &json!({"id": "Qwen/Qwen2.5-7B-Instruct", "sha": "abc", "pipeline_tag": "text-generation",
                    "safetensors": {"parameters": {"BF16": 7_615_616_512_u64}, "total": 7_615_616_512_u64},
                    "gated": false, "private": false, "library_name": "transformers"}),
        );
        assert_eq!(info.modality, Some(Modality::Llm));
        assert_eq!(info.parameters, Some(7_615_616_512));
        assert_eq!(info.precision, Some(Precision::Bf16));
        assert_eq!(info.sha.as_deref(), Some("abc"));
        let profile = info.profile(None, None, Some(Precision::Int4)).unwrap();
        assert_eq!(profile.precision, Precision::Int4);
    }

    #[test]
    fn falls_back_to_weight_files_and_reports_unknown_sizes() {
        let info = analyse(
            "org/tiny-gguf",
            &json!({"pipeline_tag": "text-generation", "gated": "auto",
                    "siblings": [{"rfilename": "model.Q4_K_M.gguf", "size": 100_000_000},
                                 {"rfilename": "model.Q8_0.gguf", "size": 180_000_000}]}),
        );
        assert_eq!(info.parameters, Some(200_000_000));
        assert_eq!(info.precision, Some(Precision::Int4));
        assert!(info.gated);
        let unknown = analyse("org/empty", &json!({"pipeline_tag": "text-to-image"}));
        assert_eq!(unknown.modality, Some(Modality::Image));
        assert_eq!(
            unknown.profile(None, None, None),
            Err(HubError::UnknownSize("org/empty".to_owned()))
        );
    }

    #[test]
    fn parses_ids_and_urls() {
        assert_eq!(
            parse_model_reference("https://huggingface.co/acme/llama-ft/tree/v2").unwrap(),
            ("acme/llama-ft".to_owned(), Some("v2".to_owned()))
        );
        assert_eq!(
            parse_model_reference("Qwen/Qwen2.5-7B-Instruct").unwrap(),
            ("Qwen/Qwen2.5-7B-Instruct".to_owned(), None)
        );
        assert!(parse_model_reference("just-a-name").is_err());
        assert!(parse_model_reference("../etc/passwd").is_err());
        assert!(validate_model_id("a/b c").is_err());
    }
}

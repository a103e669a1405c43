//! What a deploy job was asked to do (stored with the job as JSON).

use serde::{Deserialize, Serialize};

use crate::domain::Modality;
use crate::selector::{Budget, Latency, Precision};

/// A deploy request after validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// Hugging Face repository id.
    pub model_id: String,
    pub revision: Option<String>,
    /// The endpoint's name (what clients send as `model`).
    pub model_name: String,
    pub modality: Option<Modality>,
    pub parameters: Option<u64>,
    pub precision: Option<Precision>,
    /// A provider the caller chose; the selector picks one otherwise.
    pub provider: Option<String>,
    pub gpu_type: Option<String>,
    pub budget: Option<Budget>,
    pub latency: Option<Latency>,
    pub requests_per_day: Option<u64>,
    /// For `external`: the base URL of a server that already runs.
    pub source_url: Option<String>,
    pub training_job_id: Option<String>,
}

//! Predictions on a Replicate deployment: create (waiting with `Prefer`),
//! read and cancel. The gateway uses these to serve requests; the shapes are
//! `Prediction` in replicate-python-beta.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{deployment_ids, Replicate, KIND, PREDICTION_WAIT_SECONDS};
use crate::providers::{ProviderError, ProviderResource};

/// A prediction as Replicate reports it (`GET /v1/predictions/{id}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Prediction {
    pub id: String,
    /// `starting`, `processing`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// For the vLLM model, an array of text pieces.
    #[serde(default)]
    pub output: Value,
    #[serde(default)]
    pub error: Value,
    #[serde(default)]
    pub metrics: Value,
    pub urls: PredictionUrls,
}

/// Where a prediction is read, canceled and streamed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PredictionUrls {
    pub get: String,
    pub cancel: String,
    /// Server-sent events (`output`, `error`, `done`), when the model streams.
    #[serde(default)]
    pub stream: Option<String>,
}

impl Prediction {
    /// The output pieces joined, when the output is text.
    pub fn output_text(&self) -> Option<String> {
        match &self.output {
            Value::String(text) => Some(text.clone()),
            Value::Array(pieces) => Some(pieces.iter().filter_map(Value::as_str).collect()),
            _ => None,
        }
    }

    /// The prediction has finished (well or badly).
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }
}

impl Replicate {
    /// Runs a prediction on the resource's deployment, waiting for it to
    /// finish (`Prefer: wait`); a prediction that is still running comes back
    /// unfinished and can be followed with [`Replicate::prediction`].
    pub async fn predict(
        &self,
        resource: &ProviderResource,
        input: Value,
    ) -> Result<Prediction, ProviderError> {
        let account = self.account()?;
        let (owner, name) = deployment_ids(resource, &account);
        let prefer = format!("wait={PREDICTION_WAIT_SECONDS}");
        let response = account
            .api
            .send_with(
                Method::POST,
                &format!("/v1/deployments/{owner}/{name}/predictions"),
                Some(&json!({ "input": input })),
                &[("prefer", prefer.as_str())],
            )
            .await?;
        parse_prediction(response.body)
    }

    /// Reads a prediction.
    pub async fn prediction(&self, id: &str) -> Result<Prediction, ProviderError> {
        let account = self.account()?;
        let response = account
            .api
            .send(Method::GET, &format!("/v1/predictions/{id}"), None)
            .await?;
        parse_prediction(response.body)
    }

    /// Cancels a prediction that has not finished.
    pub async fn cancel_prediction(&self, id: &str) -> Result<Prediction, ProviderError> {
        let account = self.account()?;
        let response = account
            .api
            .send(Method::POST, &format!("/v1/predictions/{id}/cancel"), None)
            .await?;
        parse_prediction(response.body)
    }
}

fn parse_prediction(body: Value) -> Result<Prediction, ProviderError> {
    serde_json::from_value(body).map_err(|error| ProviderError::BadResponse {
        provider: KIND,
        message: format!("prediction: {error}"),
    })
}

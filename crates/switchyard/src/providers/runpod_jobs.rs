//! RunPod's serverless job API (`https://api.runpod.ai/v2/{endpoint_id}/...`):
//! submit, wait for, poll, stream, cancel and retry jobs on queue endpoints,
//! purge their queue and read their health. It serves workers that are not
//! OpenAI-shaped; worker-vllm endpoints are called through their
//! `/openai/v1` route instead.
//!
//! There is no OpenAPI document for this API. The shapes follow runpod/docs
//! `serverless/endpoints/operation-reference.mdx` and `send-requests.mdx`,
//! as summarised in `shared/specs/PROVIDERS.md` section 2.3.

use std::time::Duration;

use http::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{RunPodConfig, Secret};
use super::http::{error_from_status, ProviderApi};
use super::{ProviderError, ProviderKind};

const PROVIDER: ProviderKind = ProviderKind::RunPod;
/// The `runsync?wait=` bounds RunPod accepts, in milliseconds.
const RUNSYNC_WAIT_MS: (u64, u64) = (1_000, 300_000);
/// How long `runsync` waits when no `wait` is given (RunPod's default).
const RUNSYNC_DEFAULT_WAIT: Duration = Duration::from_secs(90);
/// Time allowed beyond the wait for the answer itself.
const RUNSYNC_MARGIN: Duration = Duration::from_secs(15);

/// A job submission: `{"input": ..., "webhook": ..., "policy": ..., "s3Config": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobRequest {
    /// What the worker's handler receives as `job["input"]`.
    pub input: Value,
    /// URL RunPod posts the finished job to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<JobPolicy>,
    /// S3 credentials the worker may upload results with, passed through as given.
    #[serde(rename = "s3Config", skip_serializing_if = "Option::is_none")]
    pub s3_config: Option<Value>,
}

impl JobRequest {
    /// A job with only an input.
    pub fn new(input: Value) -> Self {
        Self {
            input,
            ..Self::default()
        }
    }
}

/// Execution policy of a job; every time is in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_priority: Option<bool>,
    /// How long the job may live, queued or running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// Where a job is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InQueue,
    InProgress,
    /// Documented as a synonym of `IN_PROGRESS`.
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    /// A status this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    /// The job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }
}

/// A job as the job API reports it (`run`, `runsync`, `status`, `cancel`, `retry`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    /// The handler's result, once completed.
    #[serde(default)]
    pub output: Option<Value>,
    /// Why the job failed.
    #[serde(default)]
    pub error: Option<Value>,
    /// Milliseconds spent in the queue.
    #[serde(default)]
    pub delay_time: Option<u64>,
    /// Milliseconds spent running.
    #[serde(default)]
    pub execution_time: Option<u64>,
    #[serde(default)]
    pub worker_id: Option<String>,
}

/// New output of a streaming job since the last poll.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobStream {
    pub status: JobStatus,
    #[serde(default)]
    pub stream: Vec<StreamChunk>,
}

/// One value a streaming handler yielded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamChunk {
    pub output: Value,
}

/// What `purge-queue` removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PurgeResult {
    #[serde(default)]
    pub removed: u32,
    #[serde(default)]
    pub status: String,
}

/// `GET /v2/{id}/health`: job and worker counters of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointHealth {
    #[serde(default)]
    pub jobs: JobCounts,
    #[serde(default)]
    pub workers: WorkerCounts,
}

/// Job counters of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobCounts {
    pub completed: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub in_queue: u32,
    pub retried: u32,
}

/// Worker counters of an endpoint; the documented ones are `idle` and
/// `running`, the live service adds the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkerCounts {
    pub idle: u32,
    pub running: u32,
    pub initializing: u32,
    pub ready: u32,
    pub throttled: u32,
    pub unhealthy: u32,
}

/// A client of the job API for one account.
#[derive(Debug, Clone)]
pub struct RunPodJobs {
    api: ProviderApi,
    api_key: Secret,
}

impl RunPodJobs {
    /// A client of the job API at `base_url` (`https://api.runpod.ai`).
    pub fn new(base_url: &str, api_key: Secret, client: reqwest::Client) -> Self {
        Self {
            api: ProviderApi::bearer(PROVIDER, client, base_url, api_key.expose()),
            api_key,
        }
    }

    /// A client from the RunPod settings; [`ProviderError::NotConfigured`]
    /// without an API key.
    pub fn from_config(
        config: &RunPodConfig,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let api_key = config.api_key.clone().ok_or_else(not_configured)?;
        Ok(Self::new(&config.jobs_base_url, api_key, client))
    }

    /// `POST /v2/{id}/run`: queues a job and returns it (`IN_QUEUE`).
    pub async fn run(&self, endpoint_id: &str, request: &JobRequest) -> Result<Job, ProviderError> {
        let body = serde_json::to_value(request).map_err(encode_error)?;
        let path = format!("/v2/{}/run", path_segment(endpoint_id));
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST /v2/{id}/runsync[?wait=ms]`: runs a job and waits for it. RunPod
    /// waits 90 s unless `wait` says otherwise (clamped to 1 s .. 300 s); a job
    /// that is not done by then comes back with a non-terminal status.
    ///
    /// The call is sent once (never retried, it would run the job twice) with
    /// its own timeout of the wait plus a margin, whatever the client's is.
    pub async fn runsync(
        &self,
        endpoint_id: &str,
        request: &JobRequest,
        wait: Option<Duration>,
    ) -> Result<Job, ProviderError> {
        let wait_ms = wait.map(|wait| {
            u64::try_from(wait.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(RUNSYNC_WAIT_MS.0, RUNSYNC_WAIT_MS.1)
        });
        let mut path = format!("/v2/{}/runsync", path_segment(endpoint_id));
        if let Some(wait_ms) = wait_ms {
            path.push_str(&format!("?wait={wait_ms}"));
        }
        let timeout = wait_ms
            .map(Duration::from_millis)
            .unwrap_or(RUNSYNC_DEFAULT_WAIT)
            + RUNSYNC_MARGIN;
        let url = format!("{}{path}", self.api.base_url);
        let response = self
            .api
            .client
            .post(&url)
            .bearer_auth(self.api_key.expose())
            .json(request)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| ProviderError::Transport {
                provider: PROVIDER,
                message: format!("POST {path}: {error}"),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(error_from_status(PROVIDER, status, &headers, &text));
        }
        let body: Value =
            serde_json::from_str(&text).map_err(|error| ProviderError::BadResponse {
                provider: PROVIDER,
                message: format!("POST {path}: body is not JSON: {error}"),
            })?;
        decode(&path, body)
    }

    /// `GET /v2/{id}/status/{job_id}`: the job's state and, when done, its output.
    pub async fn status(&self, endpoint_id: &str, job_id: &str) -> Result<Job, ProviderError> {
        let path = job_path(endpoint_id, "status", job_id);
        self.call(Method::GET, &path, None).await
    }

    /// `GET /v2/{id}/stream/{job_id}`: output yielded since the last poll.
    pub async fn stream(
        &self,
        endpoint_id: &str,
        job_id: &str,
    ) -> Result<JobStream, ProviderError> {
        let path = job_path(endpoint_id, "stream", job_id);
        self.call(Method::GET, &path, None).await
    }

    /// `POST /v2/{id}/cancel/{job_id}`: stops a running job or drops a queued one.
    pub async fn cancel(&self, endpoint_id: &str, job_id: &str) -> Result<Job, ProviderError> {
        let path = job_path(endpoint_id, "cancel", job_id);
        self.call(Method::POST, &path, None).await
    }

    /// `POST /v2/{id}/retry/{job_id}`: queues a `FAILED` or `TIMED_OUT` job again.
    pub async fn retry(&self, endpoint_id: &str, job_id: &str) -> Result<Job, ProviderError> {
        let path = job_path(endpoint_id, "retry", job_id);
        self.call(Method::POST, &path, None).await
    }

    /// `POST /v2/{id}/purge-queue`: drops every queued job (running ones go on).
    pub async fn purge_queue(&self, endpoint_id: &str) -> Result<PurgeResult, ProviderError> {
        let path = format!("/v2/{}/purge-queue", path_segment(endpoint_id));
        self.call(Method::POST, &path, None).await
    }

    /// `GET /v2/{id}/health`: job and worker counters.
    pub async fn health(&self, endpoint_id: &str) -> Result<EndpointHealth, ProviderError> {
        let path = format!("/v2/{}/health", path_segment(endpoint_id));
        self.call(Method::GET, &path, None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ProviderError> {
        let response = self.api.send(method, path, body).await?;
        decode(path, response.body)
    }
}

/// An id as one URL path segment: characters other than unreserved ones are
/// percent-encoded, so an id can never change the path it is put in.
pub(crate) fn path_segment(id: &str) -> String {
    let mut segment = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

/// What to do when the API key is missing.
pub(crate) const NOT_CONFIGURED: &str = "set RUNPOD_API_KEY to deploy to RunPod";

/// The error of a call that needs the API key when none is set.
pub(crate) fn not_configured() -> ProviderError {
    ProviderError::NotConfigured {
        provider: PROVIDER,
        message: NOT_CONFIGURED.to_owned(),
    }
}

/// Reads a JSON answer into its wire type.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, body: Value) -> Result<T, ProviderError> {
    serde_json::from_value(body).map_err(|error| ProviderError::BadResponse {
        provider: PROVIDER,
        message: format!("{what}: {error}"),
    })
}

fn job_path(endpoint_id: &str, operation: &str, job_id: &str) -> String {
    format!(
        "/v2/{}/{operation}/{}",
        path_segment(endpoint_id),
        path_segment(job_id)
    )
}

fn encode_error(error: serde_json::Error) -> ProviderError {
    ProviderError::BadResponse {
        provider: PROVIDER,
        message: format!("job request does not encode as JSON: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(path_segment("4m7x2k9q"), "4m7x2k9q");
        assert_eq!(path_segment("sync-1f2e_3.a~b"), "sync-1f2e_3.a~b");
        assert_eq!(path_segment("../x?y z"), "..%2Fx%3Fy%20z");
    }

    #[test]
    fn requests_use_the_documented_field_names() {
        let request = JobRequest {
            input: json!({"prompt": "hi"}),
            webhook: None,
            policy: Some(JobPolicy {
                execution_timeout: Some(60_000),
                low_priority: Some(true),
                ttl: None,
            }),
            s3_config: None,
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"input": {"prompt": "hi"}, "policy": {"executionTimeout": 60000, "lowPriority": true}})
        );
    }

    #[test]
    fn jobs_and_health_decode_leniently() {
        let job: Job = decode(
            "status",
            json!({"delayTime": 12, "executionTime": 30, "id": "j1", "output": [1], "status": "COMPLETED", "extra": true}),
        )
        .unwrap();
        assert_eq!(job.status, JobStatus::Completed);
        assert!(job.status.is_terminal());
        assert_eq!(job.delay_time, Some(12));
        let job: Job = decode("status", json!({"id": "j2", "status": "PAUSED"})).unwrap();
        assert_eq!(job.status, JobStatus::Unknown);
        assert!(!JobStatus::InQueue.is_terminal());
        let health: EndpointHealth = decode(
            "health",
            json!({"jobs": {"completed": 1, "failed": 5, "inProgress": 0, "inQueue": 2, "retried": 0}, "workers": {"idle": 0, "running": 1}}),
        )
        .unwrap();
        assert_eq!(health.jobs.in_queue, 2);
        assert_eq!(health.workers.running, 1);
        assert_eq!(health.workers.throttled, 0);
    }
}

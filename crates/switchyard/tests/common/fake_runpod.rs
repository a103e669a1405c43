//! A fake RunPod Serverless: the REST v2 management API (every request checked
//! against `shared/specs/runpod/rest-v2-openapi.json`) and the job API with the
//! worker-vllm OpenAI route (checked against the fixture
//! `tests/fixtures/specs/runpod-jobs.yaml`, written from PROVIDERS.md 2.3).
//!
//! It simulates workers (none → `INITIALIZING` → `IDLE` after a number of
//! polls, `RUNNING` while a job runs, removed again after some idle polls) and
//! jobs (`IN_QUEUE` → `IN_PROGRESS` → `COMPLETED`). Polls are
//! `GET /v2/serverless/{id}/workers`, job `status`/`stream` and `runsync`; no
//! timers run, so tests are deterministic. Knobs inject failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};
use switchyard::providers::config::{RunPodConfig, Secret};

use super::spec::{self, Contract, Journal, OpenApi};

/// The API key the fake accepts (`Authorization: Bearer <API_KEY>`).
pub const API_KEY: &str = "rp_fake_key_0123456789";
/// The worker image [`FakeRunPod::config`] deploys.
pub const WORKER_IMAGE: &str = "runpod/worker-v1-vllm:v2.25.2";
/// What every fake worker answers.
pub const REPLY: &str = "Hello from the RunPod fake";
/// Tokens in [`REPLY`] (one per word).
pub const COMPLETION_TOKENS: u64 = 5;
/// Worker-API input that makes the fake handler fail.
pub const FAIL_INPUT: &str = "fail";

/// Serverless pool ids (runpod/docs `references/gpu-types.mdx`, PROVIDERS.md 2.6).
const POOLS: &[(&str, &str)] = &[
    ("AMPERE_16", "NVIDIA RTX A4000"),
    ("AMPERE_24", "NVIDIA L4"),
    ("ADA_24", "NVIDIA GeForce RTX 4090"),
    ("AMPERE_48", "NVIDIA RTX A6000"),
    ("ADA_48_PRO", "NVIDIA L40S"),
    ("AMPERE_80", "NVIDIA A100 80GB PCIe"),
    ("ADA_80_PRO", "NVIDIA H100 80GB HBM3"),
    ("HOPPER_141", "NVIDIA H200"),
];
const RATE_LIMIT: &str = "\"minute\";r=59;t=60, \"hour\";r=2999;t=3600, \"day\";r=49999;t=86400";
const RATE_LIMIT_POLICY: &str =
    "\"minute\";q=60;w=60, \"hour\";q=3000;w=3600, \"day\";q=50000;w=86400";
const CREATED_AT: &str = "2026-08-20T12:00:00Z";
/// Polls `runsync` spends before it answers a job that is not done.
const RUNSYNC_TICKS: usize = 50;

static IDS: AtomicU64 = AtomicU64::new(1);

fn new_id(prefix: &str) -> String {
    format!("{prefix}{:08x}", IDS.fetch_add(1, Ordering::SeqCst))
}

/// A running fake with its two hosts (management and jobs).
pub struct FakeRunPod {
    /// Requests to and violations of the REST v2 API.
    pub journal: Arc<Journal>,
    /// Requests to and violations of the job API.
    pub jobs_journal: Arc<Journal>,
    fake: Arc<Fake>,
    rest_url: String,
    jobs_url: String,
}

struct Fake {
    world: Mutex<World>,
}

struct World {
    jobs_url: String,
    endpoints: BTreeMap<String, Endpoint>,
    templates: BTreeMap<String, Template>,
    sim: Sim,
    fail_next_create: Option<(u16, Value)>,
    fail_next_update: Option<(u16, Value)>,
    no_capacity: bool,
    rate_limited: usize,
    retry_after: u64,
    /// Only requests with this method and path prefix are rate limited.
    rate_limit_filter: Option<(String, String)>,
    failing_gets: usize,
    failing_get_status: u16,
    failing_jobs: usize,
    failing_jobs_status: u16,
    delete_keeps_template: bool,
    last_runsync_wait: Option<u64>,
}

/// Life-cycle settings a tick reads.
#[derive(Clone, Copy)]
struct Sim {
    ready_after_polls: usize,
    scale_down_after_polls: usize,
    throttled: bool,
}

struct Template {
    id: String,
    name: String,
    image: String,
    env: Map<String, Value>,
    disk: u64,
    serverless: bool,
    category: String,
    start_ssh: bool,
    start_jupyter: bool,
    allowed_cuda: Value,
    bound_to: Option<String>,
}

struct Endpoint {
    id: String,
    name: String,
    template_id: Option<String>,
    image: String,
    env: Map<String, Value>,
    disk: u64,
    pools: Vec<String>,
    gpu_count: u64,
    allowed_cuda: Value,
    min_cuda: Value,
    min: usize,
    max: usize,
    idle_timeout: u64,
    scaling: Value,
    flashboot: String,
    timeout: u64,
    workers: Vec<Worker>,
    jobs: Vec<Job>,
    retried: u32,
    openai_requests: usize,
}

struct Worker {
    id: String,
    status: &'static str,
    polls: usize,
    idle_polls: usize,
}

struct Job {
    id: String,
    status: &'static str,
    outcome: Result<Value, String>,
    chunks: Vec<Value>,
    streamed: usize,
    worker: Option<String>,
    polls: u64,
}

impl FakeRunPod {
    /// Starts both hosts on 127.0.0.1.
    pub async fn start() -> Self {
        let journal = Arc::new(Journal::default());
        let jobs_journal = Arc::new(Journal::default());
        let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let jobs_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest_url = format!("http://{}", rest_listener.local_addr().unwrap());
        let jobs_url = format!("http://{}", jobs_listener.local_addr().unwrap());
        let fake = Arc::new(Fake {
            world: Mutex::new(World {
                jobs_url: jobs_url.clone(),
                endpoints: BTreeMap::new(),
                templates: BTreeMap::new(),
                sim: Sim {
                    ready_after_polls: 2,
                    scale_down_after_polls: 3,
                    throttled: false,
                },
                fail_next_create: None,
                fail_next_update: None,
                no_capacity: false,
                rate_limited: 0,
                retry_after: 1,
                rate_limit_filter: None,
                failing_gets: 0,
                failing_get_status: 503,
                failing_jobs: 0,
                failing_jobs_status: 503,
                delete_keeps_template: false,
                last_runsync_wait: None,
            }),
        });
        let rest_contract = Arc::new(Contract {
            spec: OpenApi::load_shared("runpod/rest-v2-openapi.json"),
            auth_header: "authorization",
            auth_value: format!("Bearer {API_KEY}"),
            strip_prefix: "",
            error_body: rest_error_body,
            journal: journal.clone(),
        });
        let jobs_contract = Arc::new(Contract {
            spec: OpenApi::load_fixture("runpod-jobs.yaml"),
            auth_header: "authorization",
            auth_value: format!("Bearer {API_KEY}"),
            strip_prefix: "",
            error_body: jobs_error_body,
            journal: jobs_journal.clone(),
        });
        let rest = Router::new()
            .route("/v2/serverless", get(list_endpoints).post(create_endpoint))
            .route(
                "/v2/serverless/{id}",
                get(get_endpoint)
                    .patch(update_endpoint)
                    .delete(delete_endpoint),
            )
            .route("/v2/serverless/{id}/workers", get(list_workers))
            .route("/v2/templates", get(list_templates).post(create_template))
            .route(
                "/v2/templates/{id}",
                get(get_template).delete(delete_template),
            )
            .with_state(fake.clone())
            .layer(middleware::from_fn_with_state(fake.clone(), rest_knobs))
            .layer(middleware::from_fn_with_state(rest_contract, spec::guard));
        let jobs = Router::new()
            .route("/v2/{id}/run", post(run_job))
            .route("/v2/{id}/runsync", post(runsync_job))
            .route("/v2/{id}/status/{job}", get(job_status))
            .route("/v2/{id}/stream/{job}", get(job_stream))
            .route("/v2/{id}/cancel/{job}", post(cancel_job))
            .route("/v2/{id}/retry/{job}", post(retry_job))
            .route("/v2/{id}/purge-queue", post(purge_queue))
            .route("/v2/{id}/health", get(health))
            .route(
                "/v2/{id}/openai/v1/chat/completions",
                post(chat_completions),
            )
            .route("/v2/{id}/openai/v1/completions", post(completions))
            .route("/v2/{id}/openai/v1/models", get(models))
            .with_state(fake.clone())
            .layer(middleware::from_fn_with_state(fake.clone(), jobs_knobs))
            .layer(middleware::from_fn_with_state(jobs_contract, spec::guard));
        tokio::spawn(async move { axum::serve(rest_listener, rest).await.unwrap() });
        tokio::spawn(async move { axum::serve(jobs_listener, jobs).await.unwrap() });
        Self {
            journal,
            jobs_journal,
            fake,
            rest_url,
            jobs_url,
        }
    }

    /// The management host (`https://api.runpod.io` in production).
    pub fn base_url(&self) -> String {
        self.rest_url.clone()
    }

    /// The job host (`https://api.runpod.ai` in production).
    pub fn jobs_url(&self) -> String {
        self.jobs_url.clone()
    }

    /// Settings that point the provisioner at this fake with the right key.
    pub fn config(&self) -> RunPodConfig {
        self.config_with_key(API_KEY)
    }

    /// Settings with another API key (401 from the fake).
    pub fn config_with_key(&self, key: &str) -> RunPodConfig {
        RunPodConfig {
            api_key: Some(Secret::new(key)),
            rest_base_url: self.rest_url.clone(),
            jobs_base_url: self.jobs_url.clone(),
            worker_image: WORKER_IMAGE.to_owned(),
            hf_token: None,
        }
    }

    /// Panics when either API saw a contract violation.
    pub fn assert_clean(&self) {
        self.journal.assert_clean();
        self.jobs_journal.assert_clean();
    }

    /// The next endpoint create answers `status` with `body` (after validation).
    pub fn fail_next_create(&self, status: u16, body: Value) {
        self.world().fail_next_create = Some((status, body));
    }

    /// The next endpoint update (`PATCH /v2/serverless/{id}`) answers
    /// `status` with `body` (after validation) and changes nothing.
    pub fn fail_next_update(&self, status: u16, body: Value) {
        self.world().fail_next_update = Some((status, body));
    }

    /// Endpoint creates answer 400: no GPUs available in the requested pools.
    pub fn set_no_capacity(&self, on: bool) {
        self.world().no_capacity = on;
    }

    /// New workers wait for capacity (`THROTTLED`) until switched off.
    pub fn set_throttled(&self, on: bool) {
        self.world().sim.throttled = on;
    }

    /// The next `n` REST requests answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        let mut world = self.world();
        world.rate_limited = n;
        world.retry_after = retry_after_secs;
        world.rate_limit_filter = None;
    }

    /// The next `n` REST requests with `method` on a path starting with
    /// `path_prefix` answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next_matching(
        &self,
        method: &str,
        path_prefix: &str,
        n: usize,
        retry_after_secs: u64,
    ) {
        let mut world = self.world();
        world.rate_limited = n;
        world.retry_after = retry_after_secs;
        world.rate_limit_filter = Some((method.to_owned(), path_prefix.to_owned()));
    }

    /// The next `n` REST GETs answer `status` (a 5xx).
    pub fn fail_next_gets(&self, n: usize, status: u16) {
        let mut world = self.world();
        world.failing_gets = n;
        world.failing_get_status = status;
    }

    /// The next `n` job API requests answer `status`.
    pub fn fail_next_job_requests(&self, n: usize, status: u16) {
        let mut world = self.world();
        world.failing_jobs = n;
        world.failing_jobs_status = status;
    }

    /// Polls a starting worker needs before it is `IDLE` (default 2).
    pub fn set_ready_after_polls(&self, polls: usize) {
        self.world().sim.ready_after_polls = polls;
    }

    /// Polls an idle worker above `workers.min` lives (default 3).
    pub fn set_scale_down_after_polls(&self, polls: usize) {
        self.world().sim.scale_down_after_polls = polls;
    }

    /// Deleting an endpoint leaves its template behind (older API behaviour).
    pub fn set_delete_keeps_template(&self, on: bool) {
        self.world().delete_keeps_template = on;
    }

    /// Adds an endpoint Switchyard did not create; returns its id.
    pub fn add_foreign_endpoint(&self, name: &str) -> String {
        let id = new_id("ep");
        let endpoint = Endpoint {
            id: id.clone(),
            name: name.to_owned(),
            template_id: None,
            image: "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404".to_owned(),
            env: Map::new(),
            disk: 20,
            pools: vec!["ADA_24".to_owned()],
            gpu_count: 1,
            allowed_cuda: json!([]),
            min_cuda: Value::Null,
            min: 0,
            max: 3,
            idle_timeout: 5,
            scaling: json!({"type": "QUEUE_DELAY", "queueDelay": 4}),
            flashboot: "OFF".to_owned(),
            timeout: 300_000,
            workers: Vec::new(),
            jobs: Vec::new(),
            retried: 0,
            openai_requests: 0,
        };
        self.world().endpoints.insert(id.clone(), endpoint);
        id
    }

    /// Adds a serverless template bound to no endpoint (as a create that
    /// stopped between its two steps leaves one); returns its id.
    pub fn add_unbound_template(&self, name: &str) -> String {
        let id = new_id("tp");
        let template = Template {
            id: id.clone(),
            name: name.to_owned(),
            image: WORKER_IMAGE.to_owned(),
            env: Map::new(),
            disk: 50,
            serverless: true,
            category: "NVIDIA".to_owned(),
            start_ssh: false,
            start_jupyter: false,
            allowed_cuda: json!([]),
            bound_to: None,
        };
        self.world().templates.insert(id.clone(), template);
        id
    }

    /// Live endpoints as `GET /v2/serverless/{id}` shows them.
    pub fn endpoints(&self) -> Vec<Value> {
        let world = self.world();
        world
            .endpoints
            .values()
            .map(|endpoint| endpoint.to_json(&world.jobs_url))
            .collect()
    }

    /// One endpoint, if it exists.
    pub fn endpoint(&self, id: &str) -> Option<Value> {
        let world = self.world();
        world
            .endpoints
            .get(id)
            .map(|endpoint| endpoint.to_json(&world.jobs_url))
    }

    /// Live templates as `GET /v2/templates/{id}` shows them.
    pub fn templates(&self) -> Vec<Value> {
        self.world()
            .templates
            .values()
            .map(Template::to_json)
            .collect()
    }

    /// Worker statuses of an endpoint, without advancing the life cycle.
    pub fn worker_statuses(&self, id: &str) -> Vec<String> {
        self.world()
            .endpoints
            .get(id)
            .map(|endpoint| {
                endpoint
                    .workers
                    .iter()
                    .map(|worker| worker.status.to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// OpenAI-route requests an endpoint served.
    pub fn openai_requests(&self, id: &str) -> usize {
        self.world()
            .endpoints
            .get(id)
            .map_or(0, |endpoint| endpoint.openai_requests)
    }

    /// The `wait` query of the last `runsync`.
    pub fn last_runsync_wait(&self) -> Option<u64> {
        self.world().last_runsync_wait
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.fake.world.lock().unwrap()
    }
}

// === Life cycle ===

impl Endpoint {
    fn served_model(&self) -> String {
        ["OPENAI_SERVED_MODEL_NAME_OVERRIDE", "MODEL_NAME"]
            .iter()
            .find_map(|key| self.env.get(*key).and_then(Value::as_str))
            .unwrap_or(&self.name)
            .to_owned()
    }

    fn spawn_worker(&mut self, sim: Sim) {
        self.workers.push(Worker {
            id: new_id("wk"),
            status: if sim.throttled {
                "THROTTLED"
            } else {
                "INITIALIZING"
            },
            polls: 0,
            idle_polls: 0,
        });
    }

    fn ensure_min(&mut self, sim: Sim) {
        while self.workers.len() < self.min.min(self.max) {
            self.spawn_worker(sim);
        }
    }

    /// Queued work and no worker on the way: cold-start one.
    fn scale_up(&mut self, sim: Sim) {
        let queued = self.jobs.iter().any(|job| job.status == "IN_QUEUE");
        let coming = self
            .workers
            .iter()
            .any(|worker| matches!(worker.status, "IDLE" | "INITIALIZING" | "THROTTLED"));
        if queued && !coming && self.workers.len() < self.max {
            self.spawn_worker(sim);
        }
    }

    fn free_worker(&mut self, worker_id: Option<&str>) {
        if let Some(worker) = self
            .workers
            .iter_mut()
            .find(|worker| Some(worker.id.as_str()) == worker_id)
        {
            worker.status = "IDLE";
            worker.idle_polls = 0;
        }
    }

    /// One poll's worth of progress.
    fn tick(&mut self, sim: Sim) {
        for worker in &mut self.workers {
            match worker.status {
                "THROTTLED" if !sim.throttled => {
                    worker.status = "INITIALIZING";
                    worker.polls = 0;
                }
                "INITIALIZING" => {
                    worker.polls += 1;
                    if worker.polls >= sim.ready_after_polls {
                        worker.status = "IDLE";
                        worker.idle_polls = 0;
                    }
                }
                _ => {}
            }
        }
        let mut finished = Vec::new();
        for job in &mut self.jobs {
            job.polls += 1;
            if job.status == "IN_PROGRESS" {
                job.status = if job.outcome.is_ok() {
                    "COMPLETED"
                } else {
                    "FAILED"
                };
                finished.push(job.worker.clone());
            }
        }
        for worker_id in finished {
            self.free_worker(worker_id.as_deref());
        }
        for index in 0..self.jobs.len() {
            if self.jobs[index].status != "IN_QUEUE" {
                continue;
            }
            let Some(worker) = self
                .workers
                .iter_mut()
                .find(|worker| worker.status == "IDLE")
            else {
                break;
            };
            worker.status = "RUNNING";
            self.jobs[index].status = "IN_PROGRESS";
            self.jobs[index].worker = Some(worker.id.clone());
        }
        for worker in &mut self.workers {
            if worker.status == "IDLE" {
                worker.idle_polls += 1;
            }
        }
        let min = self.min;
        let mut count = self.workers.len();
        self.workers.retain(|worker| {
            let expired = worker.status == "IDLE" && worker.idle_polls > sim.scale_down_after_polls;
            if expired && count > min {
                count -= 1;
                false
            } else {
                true
            }
        });
        self.scale_up(sim);
        self.ensure_min(sim);
    }

    fn submit(&mut self, input: &Value, sim: Sim) -> usize {
        let (outcome, chunks) = handle(input);
        self.jobs.push(Job {
            id: format!("{}-u1", new_id("job")),
            status: "IN_QUEUE",
            outcome,
            chunks,
            streamed: 0,
            worker: None,
            polls: 0,
        });
        self.scale_up(sim);
        self.jobs.len() - 1
    }

    fn count_jobs(&self, status: &str) -> usize {
        self.jobs.iter().filter(|job| job.status == status).count()
    }

    fn count_workers(&self, status: &str) -> usize {
        self.workers
            .iter()
            .filter(|worker| worker.status == status)
            .count()
    }

    fn to_json(&self, jobs_url: &str) -> Value {
        let base = format!("{jobs_url}/v2/{}", self.id);
        json!({
            "id": self.id,
            "name": self.name,
            "type": "QUEUE",
            "requestUrls": {
                "run": format!("{base}/run"),
                "runSync": format!("{base}/runsync"),
                "status": format!("{base}/status/{{job_id}}"),
                "stream": format!("{base}/stream/{{job_id}}"),
                "cancel": format!("{base}/cancel/{{job_id}}"),
                "retry": format!("{base}/retry/{{job_id}}"),
                "purgeQueue": format!("{base}/purge-queue"),
                "health": format!("{base}/health"),
            },
            "image": self.image,
            "args": "",
            "disk": self.disk,
            "ports": [],
            "env": self.env,
            "registry": null,
            "gpu": {
                "pools": self.pools,
                "count": self.gpu_count,
                "allowedCudaVersions": self.allowed_cuda,
                "minCudaVersion": self.min_cuda,
            },
            "workers": {"min": self.min, "max": self.max, "idleTimeout": self.idle_timeout},
            "scaling": self.scaling,
            "dataCenterIds": [],
            "networkVolumes": [],
            "timeout": self.timeout,
            "flashboot": self.flashboot,
            "createdAt": CREATED_AT,
        })
    }

    fn workers_json(&self) -> Value {
        let gpu_type = POOLS
            .iter()
            .find(|(pool, _)| self.pools.first().is_some_and(|first| first == pool))
            .map_or("NVIDIA GeForce RTX 4090", |(_, gpu_type)| gpu_type);
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|worker| {
                let placed = worker.status != "THROTTLED";
                json!({
                    "id": worker.id,
                    "status": worker.status,
                    "isStale": false,
                    "version": 1,
                    "gpuCount": self.gpu_count,
                    "image": self.image,
                    "uptimeSeconds": if placed { json!(worker.polls * 5) } else { Value::Null },
                    "gpuTypeId": if placed { json!(gpu_type) } else { Value::Null },
                    "dataCenterId": if placed { json!("US-KS-2") } else { Value::Null },
                    "startedAt": if placed { json!(CREATED_AT) } else { Value::Null },
                })
            })
            .collect();
        json!({
            "endpointVersion": 1,
            "summary": {
                "running": self.count_workers("RUNNING"),
                "idle": self.count_workers("IDLE"),
                "initializing": self.count_workers("INITIALIZING"),
                "throttled": self.count_workers("THROTTLED"),
                "unhealthy": self.count_workers("UNHEALTHY"),
                "total": self.workers.len(),
            },
            "workers": workers,
        })
    }
}

impl Template {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "args": "",
            "disk": self.disk,
            "mounts": {},
            "ports": [],
            "env": self.env,
            "registry": null,
            "serverless": self.serverless,
            "public": false,
            "category": self.category,
            "startSsh": self.start_ssh,
            "startJupyter": self.start_jupyter,
            "allowedCudaVersions": self.allowed_cuda,
        })
    }
}

impl Job {
    fn to_json(&self) -> Value {
        let mut job = json!({
            "id": self.id,
            "status": self.status,
            "delayTime": self.polls * 10,
        });
        if self.status == "COMPLETED" {
            if let Ok(output) = &self.outcome {
                job["output"] = output.clone();
                job["executionTime"] = json!(25);
            }
        }
        if self.status == "FAILED" {
            if let Err(error) = &self.outcome {
                job["error"] = json!(error);
            }
        }
        if let Some(worker) = &self.worker {
            job["workerId"] = json!(worker);
        }
        job
    }
}

/// The fake worker handler, shaped like worker-vllm's non-OpenAI output.
fn handle(input: &Value) -> (Result<Value, String>, Vec<Value>) {
    if input.get(FAIL_INPUT) == Some(&Value::Bool(true)) {
        return (
            Err("handler raised: the job asked to fail".to_owned()),
            Vec::new(),
        );
    }
    let prompt = input
        .get("prompt")
        .and_then(Value::as_str)
        .map(words)
        .unwrap_or_else(|| input.get("messages").map_or(1, message_words));
    let output = json!([{
        "choices": [{"tokens": [REPLY]}],
        "usage": {"input": prompt, "output": COMPLETION_TOKENS},
    }]);
    (
        Ok(output),
        reply_pieces().into_iter().map(Value::String).collect(),
    )
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

/// Words in the `content` of chat messages (strings or text parts).
fn message_words(messages: &Value) -> u64 {
    let mut total = 0;
    for message in messages.as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(text) => total += text.split_whitespace().count(),
            Value::Array(parts) => {
                for part in parts {
                    if let Some(text) = part["text"].as_str() {
                        total += text.split_whitespace().count();
                    }
                }
            }
            _ => {}
        }
    }
    total.max(1) as u64
}

/// [`REPLY`] cut into stream pieces that concatenate back to it.
fn reply_pieces() -> Vec<String> {
    let words: Vec<&str> = REPLY.split(' ').collect();
    words
        .iter()
        .enumerate()
        .map(|(index, word)| {
            if index + 1 < words.len() {
                format!("{word} ")
            } else {
                (*word).to_owned()
            }
        })
        .collect()
}

// === Errors and knobs ===

fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn raw_problem(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn rest_error_body(message: &str) -> Value {
    let (title, status) = if message == "invalid or missing API key" {
        ("Unauthorized", 401)
    } else {
        ("Bad Request", 400)
    };
    let mut body = json!({"title": title, "status": status, "detail": message});
    if status == 400 {
        body["errors"] = json!([message]);
    }
    body
}

fn jobs_error_body(message: &str) -> Value {
    json!({ "error": message })
}

fn job_error(status: StatusCode, message: &str) -> Response {
    (status, Json(jobs_error_body(message))).into_response()
}

async fn rest_knobs(State(fake): State<Arc<Fake>>, request: Request, next: Next) -> Response {
    let early = {
        let mut world = fake.world.lock().unwrap();
        let selected = world
            .rate_limit_filter
            .as_ref()
            .is_none_or(|(method, prefix)| {
                request.method().as_str() == method && request.uri().path().starts_with(prefix)
            });
        if world.rate_limited > 0 && selected {
            world.rate_limited -= 1;
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded for the minute window",
            );
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_str(&world.retry_after.to_string()).unwrap(),
            );
            Some(response)
        } else if request.method() == Method::GET && world.failing_gets > 0 {
            world.failing_gets -= 1;
            Some(problem(
                StatusCode::from_u16(world.failing_get_status).unwrap(),
                "the service is temporarily unavailable",
            ))
        } else {
            None
        }
    };
    let mut response = match early {
        Some(response) => response,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert("ratelimit", HeaderValue::from_static(RATE_LIMIT));
    headers.insert(
        "ratelimit-policy",
        HeaderValue::from_static(RATE_LIMIT_POLICY),
    );
    response
}

async fn jobs_knobs(State(fake): State<Arc<Fake>>, request: Request, next: Next) -> Response {
    let failing = {
        let mut world = fake.world.lock().unwrap();
        if world.failing_jobs > 0 {
            world.failing_jobs -= 1;
            Some(world.failing_jobs_status)
        } else {
            None
        }
    };
    match failing {
        Some(status) => job_error(StatusCode::from_u16(status).unwrap(), "worker crashed"),
        None => next.run(request).await,
    }
}

// === REST v2 handlers ===

type Shared = State<Arc<Fake>>;

async fn list_endpoints(State(fake): Shared) -> Response {
    let world = fake.world.lock().unwrap();
    let endpoints: Vec<Value> = world
        .endpoints
        .values()
        .map(|endpoint| endpoint.to_json(&world.jobs_url))
        .collect();
    Json(json!({ "endpoints": endpoints })).into_response()
}

async fn create_endpoint(State(fake): Shared, Json(body): Json<Value>) -> Response {
    let mut world = fake.world.lock().unwrap();
    if let Some((status, failure)) = world.fail_next_create.take() {
        return raw_problem(status, &failure);
    }
    if body.get("cpu").is_some() || body.get("gpu").is_none() {
        return problem(
            StatusCode::BAD_REQUEST,
            "exactly one of gpu or cpu is required (this fake serves GPU endpoints)",
        );
    }
    let gpu = &body["gpu"];
    let pools: Vec<String> = gpu["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(unknown) = pools
        .iter()
        .find(|pool| !POOLS.iter().any(|(known, _)| known == pool))
    {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("unknown serverless GPU pool {unknown}"),
        );
    }
    let allowed_cuda = gpu.get("allowedCudaVersions").cloned();
    let min_cuda = gpu.get("minCudaVersion").cloned().unwrap_or(Value::Null);
    if allowed_cuda
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|versions| !versions.is_empty())
        && !min_cuda.is_null()
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive",
        );
    }
    if body["type"] == "QUEUE"
        && body["scaling"]["type"] == "REQUEST_COUNT"
        && body["workers"].get("idleTimeout").is_some()
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "workers.idleTimeout does not apply to a queue endpoint scaling on REQUEST_COUNT",
        );
    }
    let template = match body.get("templateId").and_then(Value::as_str) {
        Some(template_id) => match world.templates.get(template_id) {
            None => return problem(StatusCode::NOT_FOUND, "template not found"),
            Some(template) if !template.serverless => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "templateId must name a serverless template",
                )
            }
            Some(template) => Some(template),
        },
        None => None,
    };
    if world.no_capacity {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "no GPUs are available in the requested pools ({}); choose other pools or try again later",
                pools.join(", ")
            ),
        );
    }
    let mut env = template
        .map(|template| template.env.clone())
        .unwrap_or_default();
    if let Some(extra) = body.get("env").and_then(Value::as_object) {
        env.extend(extra.clone());
    }
    let workers = &body["workers"];
    let sim = world.sim;
    let id = new_id("ep");
    let mut endpoint = Endpoint {
        id: id.clone(),
        name: body["name"].as_str().unwrap().to_owned(),
        template_id: template.map(|template| template.id.clone()),
        image: body["image"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| template.map(|template| template.image.clone()))
            .unwrap(),
        env,
        disk: body["disk"]
            .as_u64()
            .or_else(|| template.map(|template| template.disk))
            .unwrap_or(20),
        pools,
        gpu_count: gpu["count"].as_u64().unwrap_or(1),
        allowed_cuda: allowed_cuda
            .or_else(|| template.map(|template| template.allowed_cuda.clone()))
            .unwrap_or_else(|| json!([])),
        min_cuda,
        min: workers["min"].as_u64().unwrap_or(0) as usize,
        max: workers["max"].as_u64().unwrap_or(3) as usize,
        idle_timeout: workers["idleTimeout"].as_u64().unwrap_or(10),
        scaling: body["scaling"].clone(),
        flashboot: body["flashboot"].as_str().unwrap_or("OFF").to_owned(),
        timeout: body["timeout"].as_u64().unwrap_or(300_000),
        workers: Vec::new(),
        jobs: Vec::new(),
        retried: 0,
        openai_requests: 0,
    };
    endpoint.ensure_min(sim);
    if let Some(template_id) = &endpoint.template_id {
        if let Some(template) = world.templates.get_mut(template_id) {
            template.bound_to = Some(id.clone());
        }
    }
    let answer = endpoint.to_json(&world.jobs_url);
    world.endpoints.insert(id, endpoint);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn get_endpoint(State(fake): Shared, Path(id): Path<String>) -> Response {
    let world = fake.world.lock().unwrap();
    match world.endpoints.get(&id) {
        Some(endpoint) => Json(endpoint.to_json(&world.jobs_url)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "endpoint not found"),
    }
}

async fn update_endpoint(
    State(fake): Shared,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut world = fake.world.lock().unwrap();
    if let Some((status, failure)) = world.fail_next_update.take() {
        return raw_problem(status, &failure);
    }
    let sim = world.sim;
    let jobs_url = world.jobs_url.clone();
    let Some(endpoint) = world.endpoints.get_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, "endpoint not found");
    };
    if let Some(workers) = body.get("workers") {
        if let Some(min) = workers["min"].as_u64() {
            endpoint.min = min as usize;
        }
        if let Some(max) = workers["max"].as_u64() {
            endpoint.max = max as usize;
        }
        if let Some(idle_timeout) = workers["idleTimeout"].as_u64() {
            endpoint.idle_timeout = idle_timeout;
        }
    }
    if let Some(scaling) = body.get("scaling") {
        endpoint.scaling = scaling.clone();
    }
    if let Some(name) = body["name"].as_str() {
        endpoint.name = name.to_owned();
    }
    if let Some(timeout) = body["timeout"].as_u64() {
        endpoint.timeout = timeout;
    }
    if let Some(flashboot) = body["flashboot"].as_str() {
        endpoint.flashboot = flashboot.to_owned();
    }
    if let Some(image) = body["image"].as_str() {
        endpoint.image = image.to_owned();
    }
    if let Some(env) = body["env"].as_object() {
        endpoint.env = env.clone();
    }
    while endpoint.workers.len() > endpoint.max {
        endpoint.workers.pop();
    }
    endpoint.ensure_min(sim);
    Json(endpoint.to_json(&jobs_url)).into_response()
}

async fn delete_endpoint(State(fake): Shared, Path(id): Path<String>) -> Response {
    let mut world = fake.world.lock().unwrap();
    let Some(endpoint) = world.endpoints.remove(&id) else {
        return problem(StatusCode::NOT_FOUND, "endpoint not found");
    };
    if let Some(template_id) = endpoint.template_id {
        if world.delete_keeps_template {
            if let Some(template) = world.templates.get_mut(&template_id) {
                template.bound_to = None;
            }
        } else {
            world.templates.remove(&template_id);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list_workers(State(fake): Shared, Path(id): Path<String>) -> Response {
    let mut world = fake.world.lock().unwrap();
    let sim = world.sim;
    match world.endpoints.get_mut(&id) {
        Some(endpoint) => {
            endpoint.tick(sim);
            Json(endpoint.workers_json()).into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "endpoint not found"),
    }
}

async fn list_templates(State(fake): Shared) -> Response {
    let world = fake.world.lock().unwrap();
    let templates: Vec<Value> = world.templates.values().map(Template::to_json).collect();
    Json(json!({ "templates": templates })).into_response()
}

async fn create_template(State(fake): Shared, Json(body): Json<Value>) -> Response {
    let mut world = fake.world.lock().unwrap();
    let name = body["name"].as_str().unwrap().to_owned();
    if world
        .templates
        .values()
        .any(|template| template.name == name)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("a template named {name} already exists; template names must be unique"),
        );
    }
    let template = Template {
        id: new_id("tp"),
        name,
        image: body["image"].as_str().unwrap().to_owned(),
        env: body["env"].as_object().cloned().unwrap_or_default(),
        disk: body["disk"].as_u64().unwrap_or(20),
        serverless: body["serverless"].as_bool().unwrap_or(false),
        category: body["category"].as_str().unwrap_or("NVIDIA").to_owned(),
        start_ssh: body["startSsh"].as_bool().unwrap_or(true),
        start_jupyter: body["startJupyter"].as_bool().unwrap_or(true),
        allowed_cuda: body
            .get("allowedCudaVersions")
            .cloned()
            .unwrap_or_else(|| json!([])),
        bound_to: None,
    };
    let answer = template.to_json();
    world.templates.insert(template.id.clone(), template);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn get_template(State(fake): Shared, Path(id): Path<String>) -> Response {
    let world = fake.world.lock().unwrap();
    match world.templates.get(&id) {
        Some(template) => Json(template.to_json()).into_response(),
        None => problem(StatusCode::NOT_FOUND, "template not found"),
    }
}

async fn delete_template(State(fake): Shared, Path(id): Path<String>) -> Response {
    let mut world = fake.world.lock().unwrap();
    match world.templates.get(&id) {
        None => problem(StatusCode::NOT_FOUND, "template not found"),
        Some(template) if template.bound_to.is_some() => problem(
            StatusCode::BAD_REQUEST,
            "template is in use by a serverless endpoint and cannot be deleted",
        ),
        Some(_) => {
            world.templates.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

// === Job API handlers ===

fn with_endpoint(
    fake: &Fake,
    id: &str,
    action: impl FnOnce(&mut Endpoint, Sim) -> Response,
) -> Response {
    let mut world = fake.world.lock().unwrap();
    let sim = world.sim;
    match world.endpoints.get_mut(id) {
        Some(endpoint) => action(endpoint, sim),
        None => job_error(StatusCode::NOT_FOUND, "endpoint not found"),
    }
}

fn with_job(
    fake: &Fake,
    id: &str,
    job_id: &str,
    action: impl FnOnce(&mut Endpoint, usize) -> Response,
) -> Response {
    with_endpoint(fake, id, |endpoint, sim| {
        endpoint.tick(sim);
        match endpoint.jobs.iter().position(|job| job.id == job_id) {
            Some(index) => action(endpoint, index),
            None => job_error(StatusCode::NOT_FOUND, "job not found or expired"),
        }
    })
}

async fn run_job(State(fake): Shared, Path(id): Path<String>, Json(body): Json<Value>) -> Response {
    with_endpoint(&fake, &id, |endpoint, sim| {
        let index = endpoint.submit(&body["input"], sim);
        let job = &endpoint.jobs[index];
        Json(json!({"id": job.id, "status": job.status})).into_response()
    })
}

async fn runsync_job(
    State(fake): Shared,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let wait = query.get("wait").and_then(|wait| wait.parse::<u64>().ok());
    fake.world.lock().unwrap().last_runsync_wait = wait;
    with_endpoint(&fake, &id, |endpoint, sim| {
        let index = endpoint.submit(&body["input"], sim);
        for _ in 0..RUNSYNC_TICKS {
            if matches!(
                endpoint.jobs[index].status,
                "COMPLETED" | "FAILED" | "CANCELLED"
            ) {
                break;
            }
            endpoint.tick(sim);
        }
        Json(endpoint.jobs[index].to_json()).into_response()
    })
}

async fn job_status(State(fake): Shared, Path((id, job_id)): Path<(String, String)>) -> Response {
    with_job(&fake, &id, &job_id, |endpoint, index| {
        Json(endpoint.jobs[index].to_json()).into_response()
    })
}

async fn job_stream(State(fake): Shared, Path((id, job_id)): Path<(String, String)>) -> Response {
    with_job(&fake, &id, &job_id, |endpoint, index| {
        let job = &mut endpoint.jobs[index];
        let until = match job.status {
            "IN_PROGRESS" => (job.streamed + 1).min(job.chunks.len()),
            "COMPLETED" => job.chunks.len(),
            _ => job.streamed,
        };
        let stream: Vec<Value> = job.chunks[job.streamed..until]
            .iter()
            .map(|chunk| json!({ "output": chunk }))
            .collect();
        job.streamed = until;
        Json(json!({"status": job.status, "stream": stream})).into_response()
    })
}

async fn cancel_job(State(fake): Shared, Path((id, job_id)): Path<(String, String)>) -> Response {
    with_job(&fake, &id, &job_id, |endpoint, index| {
        let job = &mut endpoint.jobs[index];
        let worker = job.worker.take();
        if !matches!(
            job.status,
            "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT"
        ) {
            job.status = "CANCELLED";
        }
        let answer = json!({"id": job.id, "status": job.status});
        endpoint.free_worker(worker.as_deref());
        Json(answer).into_response()
    })
}

async fn retry_job(State(fake): Shared, Path((id, job_id)): Path<(String, String)>) -> Response {
    with_job(&fake, &id, &job_id, |endpoint, index| {
        if !matches!(endpoint.jobs[index].status, "FAILED" | "TIMED_OUT") {
            return job_error(
                StatusCode::BAD_REQUEST,
                "only FAILED or TIMED_OUT jobs can be retried",
            );
        }
        endpoint.jobs[index].status = "IN_QUEUE";
        endpoint.jobs[index].worker = None;
        endpoint.retried += 1;
        let answer = json!({"id": endpoint.jobs[index].id, "status": "IN_QUEUE"});
        Json(answer).into_response()
    })
}

async fn purge_queue(State(fake): Shared, Path(id): Path<String>) -> Response {
    with_endpoint(&fake, &id, |endpoint, _| {
        let before = endpoint.jobs.len();
        endpoint.jobs.retain(|job| job.status != "IN_QUEUE");
        let removed = before - endpoint.jobs.len();
        Json(json!({"removed": removed, "status": "completed"})).into_response()
    })
}

async fn health(State(fake): Shared, Path(id): Path<String>) -> Response {
    with_endpoint(&fake, &id, |endpoint, _| {
        Json(json!({
            "jobs": {
                "completed": endpoint.count_jobs("COMPLETED") + endpoint.openai_requests,
                "failed": endpoint.count_jobs("FAILED"),
                "inProgress": endpoint.count_jobs("IN_PROGRESS"),
                "inQueue": endpoint.count_jobs("IN_QUEUE"),
                "retried": endpoint.retried,
            },
            "workers": {
                "idle": endpoint.count_workers("IDLE"),
                "initializing": endpoint.count_workers("INITIALIZING"),
                "running": endpoint.count_workers("RUNNING"),
                "throttled": endpoint.count_workers("THROTTLED"),
                "unhealthy": endpoint.count_workers("UNHEALTHY"),
            },
        }))
        .into_response()
    })
}

// === worker-vllm OpenAI route ===

/// Checks the model and wakes a worker (the cold start completes at once);
/// `None` (answer [`unknown_model`]) when the request names another model.
fn serve_openai(endpoint: &mut Endpoint, body: &Value) -> Option<String> {
    let served = endpoint.served_model();
    if body["model"].as_str() != Some(served.as_str()) {
        return None;
    }
    if endpoint.count_workers("IDLE") + endpoint.count_workers("RUNNING") == 0 {
        endpoint.workers.push(Worker {
            id: new_id("wk"),
            status: "IDLE",
            polls: 0,
            idle_polls: 0,
        });
    }
    endpoint.openai_requests += 1;
    Some(served)
}

/// vLLM's answer to a request for a model it does not serve.
fn unknown_model(body: &Value) -> Response {
    let message = format!(
        "The model `{}` does not exist.",
        body["model"].as_str().unwrap_or("")
    );
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"message": message, "type": "NotFoundError", "param": null, "code": 404}})),
    )
        .into_response()
}

fn usage(prompt_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt_tokens + COMPLETION_TOKENS,
    })
}

fn sse(events: Vec<Value>) -> Response {
    let mut text = String::new();
    for event in events {
        text.push_str(&format!("data: {event}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    ([(CONTENT_TYPE, "text/event-stream")], text).into_response()
}

async fn chat_completions(
    State(fake): Shared,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    with_endpoint(&fake, &id, |endpoint, _| {
        let Some(model) = serve_openai(endpoint, &body) else {
            return unknown_model(&body);
        };
        let prompt_tokens = message_words(&body["messages"]);
        let id = format!("chatcmpl-{}", new_id(""));
        if body["stream"] != true {
            return Json(json!({
                "id": id, "object": "chat.completion", "created": 1_787_000_000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage(prompt_tokens),
            }))
            .into_response();
        }
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": 1_787_000_000, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for piece in reply_pieces() {
            events.push(chunk(json!({ "content": piece }), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if body["stream_options"]["include_usage"] == true {
            events.push(
                json!({"id": id, "object": "chat.completion.chunk", "created": 1_787_000_000,
                               "model": model, "choices": [], "usage": usage(prompt_tokens)}),
            );
        }
        sse(events)
    })
}

async fn completions(
    State(fake): Shared,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    with_endpoint(&fake, &id, |endpoint, _| {
        let Some(model) = serve_openai(endpoint, &body) else {
            return unknown_model(&body);
        };
        let prompt_tokens = body["prompt"].as_str().map_or(1, words);
        let id = format!("cmpl-{}", new_id(""));
        if body["stream"] != true {
            return Json(json!({
                "id": id, "object": "text_completion", "created": 1_787_000_000, "model": model,
                "choices": [{"index": 0, "text": REPLY, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage(prompt_tokens),
            }))
            .into_response();
        }
        let mut events: Vec<Value> = reply_pieces()
            .into_iter()
            .map(|piece| {
                json!({"id": id, "object": "text_completion", "created": 1_787_000_000, "model": model,
                       "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": null}]})
            })
            .collect();
        if body["stream_options"]["include_usage"] == true {
            events.push(
                json!({"id": id, "object": "text_completion", "created": 1_787_000_000,
                               "model": model, "choices": [], "usage": usage(prompt_tokens)}),
            );
        }
        sse(events)
    })
}

async fn models(State(fake): Shared, Path(id): Path<String>) -> Response {
    with_endpoint(&fake, &id, |endpoint, _| {
        Json(json!({"object": "list", "data": [{
            "id": endpoint.served_model(), "object": "model", "created": 1_787_000_000, "owned_by": "vllm",
        }]}))
        .into_response()
    })
}

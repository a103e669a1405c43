//! A fake Hugging Face Inference Endpoints API on 127.0.0.1: the management
//! routes of `PROVIDERS.md` section 3, each request checked by [`spec::guard`]
//! against `tests/fixtures/specs/huggingface-endpoints.yaml`, and the
//! endpoints themselves (`{status.url}/health`, `/v1/models`,
//! `/v1/chat/completions`, `/v1/embeddings`) served by the same listener at
//! `http://127.0.0.1:PORT/ep/<name>` so a gateway can call them.
//!
//! Life cycle: every `GET /v2/endpoint/{namespace}/{name}` counts as one poll;
//! an endpoint shows `pending` for `pending_polls` polls, `initializing` for
//! `initializing_polls` polls, then `running` (or `failed` when deploys are set
//! to fail), and `scaledToZero` after `scale_to_zero_after` running polls.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use switchyard::providers::config::{HuggingFaceConfig, Secret};

use super::spec::{self, Contract, Journal, OpenApi};

/// The token the fake accepts (management API and endpoints).
pub const TOKEN: &str = "hf_fake_token_0123456789abcdef";
/// The only namespace the token may use.
pub const NAMESPACE: &str = "switchyard-test";
pub const VENDOR: &str = "aws";
pub const REGION: &str = "us-east-1";
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.23.0";
const TIMESTAMP: &str = "2026-08-20T12:00:00.000Z";

/// A running fake.
pub struct FakeHuggingFace {
    pub journal: Arc<Journal>,
    shared: Arc<Shared>,
}

struct Shared {
    contract: Arc<Contract>,
    base_url: String,
    inner: Mutex<Inner>,
}

struct Inner {
    endpoints: BTreeMap<String, FakeEndpoint>,
    knobs: Knobs,
    create_failures: VecDeque<(u16, Value)>,
    rate_limits: (usize, u64),
    server_errors: (usize, u16),
    inference: Vec<(String, Value)>,
}

/// Settings that shape the life cycle and the catalog.
struct Knobs {
    pending_polls: usize,
    initializing_polls: usize,
    scale_to_zero_after: Option<usize>,
    fail_deploys: Option<String>,
    fail_updates: bool,
    health_status: u16,
    no_capacity: bool,
    compute_status: HashMap<String, String>,
    quota: (u32, u32),
    reject_creates_for_capacity: bool,
}

struct FakeEndpoint {
    /// The create body with later updates merged in.
    config: Value,
    state: &'static str,
    message: String,
    polls: usize,
    /// Set once the endpoint was scheduled; kept while paused or idle.
    deployed: bool,
    /// The state an update returns to.
    after_update: &'static str,
}

impl FakeHuggingFace {
    /// Binds 127.0.0.1:0 and serves until the test ends.
    pub async fn start() -> Self {
        let journal = Arc::new(Journal::default());
        let contract = Arc::new(Contract {
            spec: OpenApi::load_fixture("huggingface-endpoints.yaml"),
            auth_header: "authorization",
            auth_value: format!("Bearer {TOKEN}"),
            strip_prefix: "",
            error_body,
            journal: journal.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            contract: contract.clone(),
            base_url,
            inner: Mutex::new(Inner {
                endpoints: BTreeMap::new(),
                knobs: Knobs {
                    pending_polls: 1,
                    initializing_polls: 1,
                    scale_to_zero_after: None,
                    fail_deploys: None,
                    fail_updates: false,
                    health_status: 200,
                    no_capacity: false,
                    compute_status: HashMap::new(),
                    quota: (32, 0),
                    reject_creates_for_capacity: false,
                },
                create_failures: VecDeque::new(),
                rate_limits: (0, 0),
                server_errors: (0, 500),
                inference: Vec::new(),
            }),
        });
        let management = Router::new()
            .route("/v2/endpoint/{namespace}", get(list).post(create))
            .route(
                "/v2/endpoint/{namespace}/{name}",
                get(read).put(update).delete(delete),
            )
            .route("/v2/endpoint/{namespace}/{name}/pause", post(pause))
            .route("/v2/endpoint/{namespace}/{name}/resume", post(resume))
            .route(
                "/v2/endpoint/{namespace}/{name}/scale-to-zero",
                post(scale_to_zero),
            )
            .route("/v2/provider/{namespace}", get(catalog))
            .fallback(|| async { hf_error(StatusCode::NOT_FOUND, "Not Found") })
            .layer(from_fn_with_state(shared.clone(), inject))
            .layer(from_fn_with_state(contract, spec::guard))
            .with_state(shared.clone());
        let endpoints = Router::new()
            .route("/ep/{name}/health", get(endpoint_health))
            .route("/ep/{name}/v1/models", get(models))
            .route("/ep/{name}/v1/chat/completions", post(chat))
            .route("/ep/{name}/v1/embeddings", post(embeddings))
            .with_state(shared.clone());
        let app = management.merge(endpoints);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { journal, shared }
    }

    /// The management API base URL (paths start with `/v2`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Provisioner settings pointing at this fake.
    pub fn config(&self) -> HuggingFaceConfig {
        HuggingFaceConfig {
            token: Some(Secret::new(TOKEN)),
            api_base_url: self.base_url(),
            namespace: Some(NAMESPACE.to_owned()),
            vendor: VENDOR.to_owned(),
            region: REGION.to_owned(),
            vllm_image: VLLM_IMAGE.to_owned(),
        }
    }

    /// The `status.url` an endpoint gets.
    pub fn endpoint_url(&self, name: &str) -> String {
        format!("{}/ep/{name}", self.shared.base_url)
    }

    /// Polls shown as `pending`, then as `initializing`, before `running`.
    pub fn set_lifecycle(&self, pending_polls: usize, initializing_polls: usize) {
        let mut inner = self.inner();
        inner.knobs.pending_polls = pending_polls;
        inner.knobs.initializing_polls = initializing_polls;
    }

    /// Running polls after which an endpoint goes `scaledToZero` (`None`: never).
    pub fn set_scale_to_zero_after(&self, polls: Option<usize>) {
        self.inner().knobs.scale_to_zero_after = polls;
    }

    /// Deploys end `failed` with this message instead of `running`.
    pub fn set_fail_deploys(&self, message: Option<&str>) {
        self.inner().knobs.fail_deploys = message.map(str::to_owned);
    }

    /// Updates end `updateFailed`.
    pub fn set_fail_updates(&self, fail: bool) {
        self.inner().knobs.fail_updates = fail;
    }

    /// What `{url}/health` answers while an endpoint runs (default 200).
    pub fn set_health_status(&self, status: u16) {
        self.inner().knobs.health_status = status;
    }

    /// Every GPU compute of the catalog is `not_available`, and creates fail.
    pub fn set_no_capacity(&self, no_capacity: bool) {
        self.inner().knobs.no_capacity = no_capacity;
    }

    /// The catalog status of one instance type (`available`, `low_availability`, ...).
    pub fn set_compute_status(&self, instance_type: &str, status: &str) {
        self.inner()
            .knobs
            .compute_status
            .insert(instance_type.to_owned(), status.to_owned());
    }

    /// The accelerator quota every compute reports.
    pub fn set_quota(&self, max_accelerators: u32, used_accelerators: u32) {
        self.inner().knobs.quota = (max_accelerators, used_accelerators);
    }

    /// The catalog says available, but creates are rejected for capacity (a race).
    pub fn set_reject_creates_for_capacity(&self, reject: bool) {
        self.inner().knobs.reject_creates_for_capacity = reject;
    }

    /// The next create is answered with this status and body.
    pub fn fail_next_create(&self, status: u16, body: Value) {
        self.inner().create_failures.push_back((status, body));
    }

    /// The next `count` management requests get 429 with `Retry-After`.
    pub fn rate_limit_next(&self, count: usize, retry_after_secs: u64) {
        self.inner().rate_limits = (count, retry_after_secs);
    }

    /// The next `count` management requests get this 5xx status.
    pub fn fail_next_requests(&self, count: usize, status: u16) {
        self.inner().server_errors = (count, status);
    }

    /// Forces an endpoint into a state (e.g. `scaledToZero`, `failed`).
    pub fn set_state(&self, name: &str, state: &str) {
        let mut inner = self.inner();
        let endpoint = inner.endpoints.get_mut(name).expect("no such endpoint");
        endpoint.enter(intern(state), "forced by the test");
    }

    /// An endpoint as the API shows it, without counting a poll.
    pub fn endpoint(&self, name: &str) -> Option<Value> {
        let inner = self.inner();
        inner
            .endpoints
            .get(name)
            .map(|endpoint| endpoint.render(&self.shared.base_url))
    }

    /// Names of every endpoint the fake holds, in order.
    pub fn endpoint_names(&self) -> Vec<String> {
        self.inner().endpoints.keys().cloned().collect()
    }

    /// `(path, body)` of every request to an endpoint's inference routes.
    pub fn inference_requests(&self) -> Vec<(String, Value)> {
        self.inner().inference.clone()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }
}

fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

fn hf_error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(message))).into_response()
}

fn intern(state: &str) -> &'static str {
    [
        "pending",
        "initializing",
        "updating",
        "updateFailed",
        "running",
        "paused",
        "failed",
        "scaledToZero",
    ]
    .into_iter()
    .find(|known| *known == state)
    .unwrap_or_else(|| panic!("unknown state {state}"))
}

impl FakeEndpoint {
    fn enter(&mut self, state: &'static str, message: &str) {
        self.state = state;
        self.message = message.to_owned();
        self.polls = 0;
        if state != "pending" {
            self.deployed = true;
        }
    }

    /// One poll: moves along the life cycle when the current phase is over.
    fn poll(&mut self, knobs: &Knobs) {
        self.polls += 1;
        loop {
            let limit = match self.state {
                "pending" => knobs.pending_polls,
                "initializing" => knobs.initializing_polls,
                "updating" => 1,
                "running" => knobs.scale_to_zero_after.unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            if self.polls <= limit {
                return;
            }
            match self.state {
                "pending" => self.enter("initializing", "Endpoint is initializing"),
                "initializing" => match &knobs.fail_deploys {
                    Some(message) => self.enter("failed", message),
                    None => self.enter("running", "Endpoint is ready"),
                },
                "updating" if knobs.fail_updates => self.enter("updateFailed", "Update failed"),
                "updating" => {
                    let back = self.after_update;
                    self.enter(back, "Endpoint updated");
                }
                _ => self.enter("scaledToZero", "Endpoint scaled to zero after inactivity"),
            }
            self.polls = 1;
        }
    }

    fn replicas(&self) -> (u32, u32) {
        let scaling = &self.config["compute"]["scaling"];
        let min = scaling["minReplica"].as_u64().unwrap_or(0) as u32;
        let max = scaling["maxReplica"].as_u64().unwrap_or(1) as u32;
        let warm = min.max(1).min(max);
        match self.state {
            "running" | "updating" => (warm, warm),
            "pending" | "initializing" => (0, warm),
            _ => (0, 0),
        }
    }

    fn health_route(&self) -> String {
        self.config["model"]["image"]
            .as_object()
            .and_then(|image| image.values().next())
            .and_then(|engine| engine.get("healthRoute"))
            .and_then(Value::as_str)
            .unwrap_or("/health")
            .to_owned()
    }

    fn served_model(&self) -> String {
        let args: Vec<&str> = self.config["model"]["args"]
            .as_array()
            .map(|args| args.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        args.iter()
            .position(|arg| *arg == "--served-model-name")
            .and_then(|index| args.get(index + 1))
            .map(|name| (*name).to_owned())
            .unwrap_or_else(|| {
                self.config["model"]["repository"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    }

    fn render(&self, base_url: &str) -> Value {
        let mut endpoint = self.config.clone();
        let name = endpoint["name"].as_str().unwrap_or_default().to_owned();
        let (ready, target) = self.replicas();
        let user = json!({"id": "6273f303f6d63a28483fde12", "name": NAMESPACE});
        let object = endpoint.as_object_mut().unwrap();
        object.entry("accountId").or_insert(Value::Null);
        object.insert("healthRoute".into(), json!(self.health_route()));
        object.insert(
            "status".into(),
            json!({
                "createdAt": TIMESTAMP,
                "createdBy": user,
                "updatedAt": TIMESTAMP,
                "updatedBy": user,
                "private": null,
                "state": self.state,
                "message": self.message,
                "url": self.deployed.then(|| format!("{base_url}/ep/{name}")),
                "readyReplica": ready,
                "targetReplica": target,
            }),
        );
        endpoint
    }
}

impl Shared {
    /// Checks the fake's own answer against the fixture (a fake that drifts from the spec is a bug too).
    fn checked(&self, schema: &str, value: Value) -> Json<Value> {
        if let Err(errors) = self
            .contract
            .spec
            .validate(&format!("/components/schemas/{schema}"), &value)
        {
            self.contract
                .journal
                .violations
                .lock()
                .unwrap()
                .push(format!(
                    "the fake answered a bad {schema}: {}",
                    errors.join("; ")
                ));
        }
        Json(value)
    }

    fn catalog(&self, knobs: &Knobs) -> Value {
        let gpus: [(&str, &str, &[u32], u32, f64); 6] = [
            ("nvidia-t4", "Nvidia T4", &[1, 4], 14, 0.5),
            ("nvidia-l4", "Nvidia L4", &[1, 4], 24, 0.8),
            ("nvidia-a10g", "Nvidia A10G", &[1, 4], 24, 1.0),
            ("nvidia-l40s", "Nvidia L40S", &[1, 4, 8], 48, 1.8),
            ("nvidia-a100", "Nvidia A100", &[1, 2, 4, 8], 80, 2.5),
            ("nvidia-h100", "Nvidia H100", &[1, 2, 4, 8], 80, 4.5),
        ];
        let mut computes = vec![json!({
            "id": format!("{VENDOR}-{REGION}-intel-spr-x1"), "accelerator": "cpu",
            "instanceType": "intel-spr", "instanceSize": "x1", "architecture": "Intel Sapphire Rapids",
            "numAccelerators": 1, "numCpus": 2, "memoryGb": 4, "gpuMemoryGb": null,
            "pricePerHour": 0.033, "status": "available",
            "quota": {"maxAccelerators": 16, "usedAccelerators": 0},
        })];
        for (instance_type, architecture, sizes, memory, price) in gpus {
            let status = if knobs.no_capacity {
                "not_available".to_owned()
            } else {
                knobs
                    .compute_status
                    .get(instance_type)
                    .cloned()
                    .unwrap_or_else(|| "available".to_owned())
            };
            for size in sizes {
                computes.push(json!({
                    "id": format!("{VENDOR}-{REGION}-{instance_type}-x{size}"),
                    "accelerator": "gpu", "instanceType": instance_type,
                    "instanceSize": format!("x{size}"), "architecture": architecture,
                    "numAccelerators": size, "numCpus": 4 * size, "memoryGb": 16 * size,
                    "gpuMemoryGb": memory * size, "pricePerHour": price * f64::from(*size),
                    "status": status,
                    "quota": {"maxAccelerators": knobs.quota.0, "usedAccelerators": knobs.quota.1},
                }));
            }
        }
        json!({"vendors": [
            {"name": VENDOR, "regions": [{"name": REGION, "computes": computes}]},
            {"name": "gcp", "regions": [{"name": "us-east4", "computes": []}]},
        ]})
    }
}

/// Failure injection for management requests (after the contract check).
async fn inject(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let injected = {
        let mut inner = shared.inner.lock().unwrap();
        if inner.rate_limits.0 > 0 {
            inner.rate_limits.0 -= 1;
            Some((StatusCode::TOO_MANY_REQUESTS, Some(inner.rate_limits.1)))
        } else if inner.server_errors.0 > 0 {
            inner.server_errors.0 -= 1;
            Some((StatusCode::from_u16(inner.server_errors.1).unwrap(), None))
        } else {
            None
        }
    };
    match injected {
        Some((status, retry_after)) => {
            let mut response = hf_error(status, status.canonical_reason().unwrap_or("error"));
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
            }
            response
        }
        None => next.run(request).await,
    }
}

/// The 401 Hugging Face answers for a namespace the token cannot use.
fn namespace_error(namespace: &str) -> Option<Response> {
    (namespace != NAMESPACE).then(|| {
        hf_error(
            StatusCode::UNAUTHORIZED,
            &format!("You don't have access to the namespace {namespace}"),
        )
    })
}

fn not_found(name: &str) -> Response {
    hf_error(StatusCode::NOT_FOUND, &format!("Endpoint {name} not found"))
}

async fn list(State(shared): State<Arc<Shared>>, Path(namespace): Path<String>) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    let inner = shared.inner.lock().unwrap();
    let items: Vec<Value> = inner
        .endpoints
        .values()
        .map(|endpoint| endpoint.render(&shared.base_url))
        .collect();
    shared
        .checked("EndpointList", json!({ "items": items }))
        .into_response()
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    let mut inner = shared.inner.lock().unwrap();
    if let Some((status, body)) = inner.create_failures.pop_front() {
        return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    }
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    if inner.endpoints.contains_key(&name) {
        return hf_error(
            StatusCode::CONFLICT,
            &format!("Endpoint {name} already exists in {namespace}"),
        );
    }
    let compute = &body["compute"];
    let (instance_type, instance_size) = (
        compute["instanceType"].as_str().unwrap_or_default(),
        compute["instanceSize"].as_str().unwrap_or_default(),
    );
    let region = body["provider"]["region"].as_str().unwrap_or_default();
    let catalog = shared.catalog(&inner.knobs);
    let offered = catalog["vendors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vendor| vendor["name"] == body["provider"]["vendor"])
        .flat_map(|vendor| vendor["regions"].as_array().into_iter().flatten())
        .filter(|candidate| candidate["name"] == region)
        .flat_map(|candidate| candidate["computes"].as_array().into_iter().flatten())
        .find(|candidate| {
            candidate["accelerator"] == compute["accelerator"]
                && candidate["instanceType"] == instance_type
                && candidate["instanceSize"] == instance_size
        })
        .cloned();
    let available = offered
        .as_ref()
        .is_some_and(|offered| offered["status"] != "not_available");
    if !available || inner.knobs.reject_creates_for_capacity {
        return hf_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Instance type {instance_type} {instance_size} is not available in region {region}"
            ),
        );
    }
    let accelerators = offered.map_or(1, |offered| {
        offered["numAccelerators"].as_u64().unwrap_or(1)
    });
    let image = &body["model"]["image"];
    let parallel_engine = image.get("vLLM").or_else(|| image.get("sGLang"));
    if let Some(engine) = parallel_engine {
        if accelerators > 1
            && engine.get("tensorParallelSize").is_none()
            && engine.get("dataParallelSize").is_none()
        {
            return hf_error(
                StatusCode::BAD_REQUEST,
                "tensorParallelSize or dataParallelSize is required on multi-GPU instances",
            );
        }
    }
    let endpoint = FakeEndpoint {
        config: body,
        state: "pending",
        message: "Endpoint waiting to be scheduled".to_owned(),
        polls: 0,
        deployed: false,
        after_update: "running",
    };
    let rendered = endpoint.render(&shared.base_url);
    inner.endpoints.insert(name, endpoint);
    shared.checked("Endpoint", rendered).into_response()
}

async fn read(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    let mut guard = shared.inner.lock().unwrap();
    let Inner {
        endpoints, knobs, ..
    } = &mut *guard;
    let Some(endpoint) = endpoints.get_mut(&name) else {
        return not_found(&name);
    };
    endpoint.poll(knobs);
    let rendered = endpoint.render(&shared.base_url);
    shared.checked("Endpoint", rendered).into_response()
}

/// Merges a partial update; `model.image` is replaced as a whole (PROVIDERS.md 3.4).
fn merge(target: &mut Value, patch: &Value, key: Option<&str>) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) if key != Some("image") => {
            for (name, value) in patch {
                let slot = target
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                merge(slot, value, Some(name));
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    let mut inner = shared.inner.lock().unwrap();
    let Some(endpoint) = inner.endpoints.get_mut(&name) else {
        return not_found(&name);
    };
    merge(&mut endpoint.config, &body, None);
    if matches!(endpoint.state, "running" | "scaledToZero") {
        endpoint.after_update = endpoint.state;
        endpoint.enter("updating", "Endpoint is updating");
    }
    let rendered = endpoint.render(&shared.base_url);
    shared.checked("Endpoint", rendered).into_response()
}

async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    match shared.inner.lock().unwrap().endpoints.remove(&name) {
        Some(_) => StatusCode::OK.into_response(),
        None => not_found(&name),
    }
}

/// Applies an action to one endpoint and answers it (or the action's error).
fn act(
    shared: &Shared,
    namespace: &str,
    name: &str,
    action: impl FnOnce(&mut FakeEndpoint) -> Result<(), &'static str>,
) -> Response {
    if let Some(response) = namespace_error(namespace) {
        return response;
    }
    let mut inner = shared.inner.lock().unwrap();
    let Some(endpoint) = inner.endpoints.get_mut(name) else {
        return not_found(name);
    };
    match action(endpoint) {
        Ok(()) => {
            let rendered = endpoint.render(&shared.base_url);
            shared.checked("Endpoint", rendered).into_response()
        }
        Err(message) => hf_error(StatusCode::BAD_REQUEST, message),
    }
}

async fn pause(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    act(&shared, &namespace, &name, |endpoint| {
        endpoint.enter("paused", "Endpoint is paused");
        Ok(())
    })
}

async fn resume(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    act(&shared, &namespace, &name, |endpoint| {
        if endpoint.state == "running" {
            return Err("Endpoint is already running");
        }
        endpoint.enter("initializing", "Endpoint is resuming");
        Ok(())
    })
}

async fn scale_to_zero(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    act(&shared, &namespace, &name, |endpoint| {
        match endpoint.state {
            "running" | "scaledToZero" => {
                endpoint.enter("scaledToZero", "Endpoint scaled to zero");
                Ok(())
            }
            _ => Err("Endpoint is not running"),
        }
    })
}

async fn catalog(State(shared): State<Arc<Shared>>, Path(namespace): Path<String>) -> Response {
    if let Some(response) = namespace_error(&namespace) {
        return response;
    }
    let catalog = shared.catalog(&shared.inner.lock().unwrap().knobs);
    shared.checked("Catalog", catalog).into_response()
}

// === The endpoints themselves (what `status.url` points at) ===

/// Checks the bearer token and the state; wakes an endpoint scaled to zero.
/// Like the Hugging Face proxy, a cold endpoint answers 503 unless the caller
/// sent `X-Scale-Up-Timeout`, in which case the request is held until it runs.
fn serve(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
) -> Result<String, (StatusCode, &'static str)> {
    if headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        != Some(format!("Bearer {TOKEN}").as_str())
    {
        return Err((StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let mut inner = shared.inner.lock().unwrap();
    let Some(endpoint) = inner.endpoints.get_mut(name) else {
        return Err((StatusCode::NOT_FOUND, "Not Found"));
    };
    let holds = headers.contains_key("x-scale-up-timeout");
    match endpoint.state {
        "running" | "updating" => Ok(endpoint.served_model()),
        "scaledToZero" if holds => {
            endpoint.enter("running", "Endpoint is ready");
            Ok(endpoint.served_model())
        }
        "scaledToZero" => {
            endpoint.enter("initializing", "Endpoint is scaling up");
            Err((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"))
        }
        _ => Err((StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")),
    }
}

async fn endpoint_health(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        != Some(format!("Bearer {TOKEN}").as_str())
    {
        return hf_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let inner = shared.inner.lock().unwrap();
    match inner.endpoints.get(&name).map(|endpoint| endpoint.state) {
        None => hf_error(StatusCode::NOT_FOUND, "Not Found"),
        Some("running" | "updating") => StatusCode::from_u16(inner.knobs.health_status)
            .unwrap()
            .into_response(),
        Some(_) => hf_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    }
}

async fn models(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match serve(&shared, &name, &headers) {
        Err((status, message)) => hf_error(status, message),
        Ok(model) => Json(json!({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "vllm"}
        ]}))
        .into_response(),
    }
}

fn unknown_model(model: &Value) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"error": {"message": format!("The model `{model}` does not exist."),
            "type": "NotFoundError", "param": "model", "code": 404}}),
        ),
    )
        .into_response()
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    shared
        .inner
        .lock()
        .unwrap()
        .inference
        .push((format!("/ep/{name}/v1/chat/completions"), body.clone()));
    let model = match serve(&shared, &name, &headers) {
        Ok(model) => model,
        Err((status, message)) => return hf_error(status, message),
    };
    if body["model"] != model.as_str() {
        return unknown_model(&body["model"]);
    }
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12});
    if body["stream"] == true {
        let mut events = String::new();
        for (index, piece) in ["Hello", " from", " HF"].iter().enumerate() {
            let delta = if index == 0 {
                json!({"role": "assistant", "content": piece})
            } else {
                json!({"content": piece})
            };
            let chunk = json!({"id": "chatcmpl-hf", "object": "chat.completion.chunk", "created": 0,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
            events.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"id": "chatcmpl-hf", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        events.push_str(&format!("data: {last}\n\n"));
        if body["stream_options"]["include_usage"] == true {
            let usage_chunk = json!({"id": "chatcmpl-hf", "object": "chat.completion.chunk",
                "created": 0, "model": model, "choices": [], "usage": usage});
            events.push_str(&format!("data: {usage_chunk}\n\n"));
        }
        events.push_str("data: [DONE]\n\n");
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(events))
            .unwrap();
    }
    Json(json!({
        "id": "chatcmpl-hf", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from HF"},
            "finish_reason": "stop"}],
        "usage": usage,
    }))
    .into_response()
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    shared
        .inner
        .lock()
        .unwrap()
        .inference
        .push((format!("/ep/{name}/v1/embeddings"), body.clone()));
    let model = match serve(&shared, &name, &headers) {
        Ok(model) => model,
        Err((status, message)) => return hf_error(status, message),
    };
    if body["model"] != model.as_str() {
        return unknown_model(&body["model"]);
    }
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| json!({"object": "embedding", "index": index, "embedding": [0.1, 0.2, 0.3]}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": 4 * inputs, "total_tokens": 4 * inputs}}))
    .into_response()
}

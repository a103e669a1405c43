//! A fake Replicate API (models, trainings, deployments, predictions,
//! hardware) on 127.0.0.1, plus a second listener playing the streaming host
//! of `urls.stream`. Every request passes `spec::guard` with the fixture spec
//! `tests/fixtures/specs/replicate.yaml`, so a body the spec does not allow is
//! answered 400 and recorded as a violation in [`FakeReplicate::journal`].
//!
//! Behaviour: a training goes `starting → processing → succeeded` over
//! `training_polls` reads of `GET /v1/trainings/{id}` and then pushes a new
//! version to its destination model; deployments are plain CRUD with release
//! numbers; a prediction created with `Prefer: wait` finishes at once, one
//! created without it is `starting` until it is read once. Knobs inject
//! failures, throttling, missing capacity and refused deletes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use switchyard::providers::config::{ReplicateConfig, Secret};

use super::spec::{guard, Contract, Journal, OpenApi};

/// The API token the fake accepts.
pub const FAKE_TOKEN: &str = "r8_fake_token_0123456789";
/// The account the token belongs to.
pub const FAKE_OWNER: &str = "acme";
/// The Hugging Face token the provisioner is configured with in tests.
pub const FAKE_HF_TOKEN: &str = "hf_fake_token";
/// The version id of the public `replicate/vllm` trainer.
pub const TRAINER_VERSION: &str =
    "c6a1e9f1d6d5a2f2e0a3d9b0b9d7a8f3e4c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8";
const CREATED_AT: &str = "2026-08-21T10:00:00.000000Z";

/// The text pieces a prediction outputs for a prompt.
pub fn prediction_output(prompt: &str) -> Vec<String> {
    let mut pieces = vec!["You".to_owned(), " said".to_owned(), ":".to_owned()];
    pieces.extend(prompt.split_whitespace().map(|word| format!(" {word}")));
    pieces
}

/// A running fake.
pub struct FakeReplicate {
    pub journal: Arc<Journal>,
    shared: Arc<Shared>,
}

struct Shared {
    base_url: String,
    stream_url: String,
    world: Mutex<World>,
    journal: Arc<Journal>,
}

struct World {
    models: BTreeMap<String, Model>,
    trainings: BTreeMap<String, Training>,
    deployments: BTreeMap<String, Value>,
    predictions: BTreeMap<String, Value>,
    failures: VecDeque<Failure>,
    hardware: Vec<(String, String)>,
    training_polls: usize,
    training_error: Option<String>,
    no_capacity: bool,
    refused_deletes: usize,
    page_size: usize,
    counter: u64,
    prefer_headers: Vec<String>,
}

struct Model {
    owner: String,
    name: String,
    visibility: String,
    description: Option<String>,
    /// Newest first.
    versions: Vec<Value>,
}

struct Training {
    value: Value,
    destination: String,
    polls: usize,
}

struct Failure {
    method: String,
    path_prefix: String,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl FakeReplicate {
    /// Starts the API and streaming listeners on ephemeral ports.
    pub async fn start() -> Self {
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let journal = Arc::new(Journal::default());
        let shared = Arc::new(Shared {
            base_url: format!("http://{}", api_listener.local_addr().unwrap()),
            stream_url: format!("http://{}", stream_listener.local_addr().unwrap()),
            world: Mutex::new(World::new()),
            journal: journal.clone(),
        });
        let contract = Arc::new(Contract {
            spec: OpenApi::load_fixture("replicate.yaml"),
            auth_header: "authorization",
            auth_value: format!("Bearer {FAKE_TOKEN}"),
            strip_prefix: "",
            error_body: |message| json!({ "detail": message }),
            journal: journal.clone(),
        });
        let api = Router::new()
            .route("/v1/hardware", get(hardware_list))
            .route("/v1/models", post(models_create))
            .route(
                "/v1/models/{owner}/{name}",
                get(models_get).delete(models_delete),
            )
            .route("/v1/models/{owner}/{name}/versions", get(versions_list))
            .route(
                "/v1/models/{owner}/{name}/versions/{version_id}",
                axum::routing::delete(versions_delete),
            )
            .route(
                "/v1/models/{owner}/{name}/versions/{version_id}/trainings",
                post(trainings_create),
            )
            .route("/v1/trainings/{id}", get(trainings_get))
            .route("/v1/trainings/{id}/cancel", post(trainings_cancel))
            .route(
                "/v1/deployments",
                get(deployments_list).post(deployments_create),
            )
            .route(
                "/v1/deployments/{owner}/{name}",
                get(deployments_get)
                    .patch(deployments_update)
                    .delete(deployments_delete),
            )
            .route(
                "/v1/deployments/{owner}/{name}/predictions",
                post(predictions_create),
            )
            .route("/v1/predictions/{id}", get(predictions_get))
            .route("/v1/predictions/{id}/cancel", post(predictions_cancel))
            .layer(from_fn_with_state(shared.clone(), inject))
            .layer(from_fn_with_state(contract.clone(), guard))
            .with_state(shared.clone());
        let stream = Router::new()
            .route("/v1/predictions/{id}", get(predictions_stream))
            .layer(from_fn_with_state(shared.clone(), inject))
            .layer(from_fn_with_state(contract, guard))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(api_listener, api).await.unwrap() });
        tokio::spawn(async move { axum::serve(stream_listener, stream).await.unwrap() });
        Self { journal, shared }
    }

    /// The API host (`SWITCHYARD_REPLICATE_API_URL`); paths start with `/v1`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The streaming host named by `urls.stream`.
    pub fn stream_base_url(&self) -> String {
        self.shared.stream_url.clone()
    }

    /// A provisioner configuration pointing at this fake.
    pub fn config(&self) -> ReplicateConfig {
        ReplicateConfig {
            token: Some(Secret::new(FAKE_TOKEN)),
            api_base_url: self.base_url(),
            owner: Some(FAKE_OWNER.to_owned()),
            hf_token: Some(Secret::new(FAKE_HF_TOKEN)),
        }
    }

    /// Environment variables for a Switchyard server using this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REPLICATE_API_TOKEN", FAKE_TOKEN.to_owned()),
            ("SWITCHYARD_REPLICATE_OWNER", FAKE_OWNER.to_owned()),
            ("SWITCHYARD_REPLICATE_API_URL", self.base_url()),
        ]
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.world.lock().unwrap()
    }

    /// Reads of a training before it succeeds (at least 1; default 3).
    pub fn set_training_polls(&self, polls: usize) {
        self.world().training_polls = polls.max(1);
    }

    /// Trainings that finish from now on fail with this error.
    pub fn fail_trainings(&self, error: &str) {
        self.world().training_error = Some(error.to_owned());
    }

    /// Deployment creates are refused for lack of hardware while on.
    pub fn set_no_capacity(&self, on: bool) {
        self.world().no_capacity = on;
    }

    /// Removes a SKU from `GET /v1/hardware`.
    pub fn withdraw_hardware(&self, sku: &str) {
        self.world().hardware.retain(|(_, listed)| listed != sku);
    }

    /// The next `count` deployment deletes are refused (not idle for 15 minutes yet).
    pub fn refuse_next_deletes(&self, count: usize) {
        self.world().refused_deletes = count;
    }

    /// Items per page of `GET /v1/deployments` (default 100).
    pub fn set_page_size(&self, size: usize) {
        self.world().page_size = size.max(1);
    }

    /// The next request with this method and path prefix is answered with `status` and `body`.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, body: Value) {
        self.world().failures.push_back(Failure {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            status,
            body,
            retry_after: None,
        });
    }

    /// The next `count` requests (any) are throttled with `Retry-After`.
    pub fn rate_limit_next(&self, count: usize, retry_after_secs: u64) {
        let mut world = self.world();
        for _ in 0..count {
            world.failures.push_back(Failure {
                method: String::new(),
                path_prefix: String::new(),
                status: 429,
                body: json!({"detail": format!("Request was throttled. Your rate limit resets in ~{retry_after_secs}s.")}),
                retry_after: Some(retry_after_secs),
            });
        }
    }

    /// Adds a deployment made outside Switchyard (with its model and version).
    pub fn add_deployment(&self, owner: &str, name: &str, min_instances: u64) {
        let mut world = self.world();
        let model = format!("{owner}/{name}");
        let version = world.new_version();
        world.models.insert(
            model.clone(),
            Model {
                owner: owner.to_owned(),
                name: name.to_owned(),
                visibility: "private".to_owned(),
                description: None,
                versions: vec![version.clone()],
            },
        );
        let deployment = deployment_json(
            owner,
            name,
            1,
            &model,
            version["id"].as_str().unwrap(),
            "gpu-t4",
            min_instances,
            min_instances.max(1),
        );
        world.deployments.insert(model, deployment);
    }

    /// A deployment by `owner/name`.
    pub fn deployment(&self, id: &str) -> Option<Value> {
        self.world().deployments.get(id).cloned()
    }

    /// A model by `owner/name`.
    pub fn model(&self, id: &str) -> Option<Value> {
        self.world().models.get(id).map(model_json)
    }

    /// A training by id.
    pub fn training(&self, id: &str) -> Option<Value> {
        self.world()
            .trainings
            .get(id)
            .map(|training| training.value.clone())
    }

    /// Every `Prefer` header sent with a prediction create.
    pub fn prefer_headers(&self) -> Vec<String> {
        self.world().prefer_headers.clone()
    }
}

impl World {
    fn new() -> Self {
        let mut models = BTreeMap::new();
        models.insert(
            "replicate/vllm".to_owned(),
            Model {
                owner: "replicate".to_owned(),
                name: "vllm".to_owned(),
                visibility: "public".to_owned(),
                description: Some("Run any Hugging Face LLM with vLLM".to_owned()),
                versions: vec![json!({"id": TRAINER_VERSION, "created_at": CREATED_AT, "cog_version": "0.13.6", "openapi_schema": {}})],
            },
        );
        let hardware = [
            ("CPU", "cpu"),
            ("Nvidia T4 GPU", "gpu-t4"),
            ("Nvidia A40 GPU", "gpu-a40-small"),
            ("Nvidia A40 (Large) GPU", "gpu-a40-large"),
            ("2x Nvidia A40 (Large) GPU", "gpu-a40-large-2x"),
            ("4x Nvidia A40 (Large) GPU", "gpu-a40-large-4x"),
            ("8x Nvidia A40 (Large) GPU", "gpu-a40-large-8x"),
            ("Nvidia L40S GPU", "gpu-l40s"),
            ("2x Nvidia L40S GPU", "gpu-2x-l40s"),
            ("Nvidia A100 (80GB) GPU", "gpu-a100-large"),
            ("2x Nvidia A100 (80GB) GPU", "gpu-a100-large-2x"),
            ("4x Nvidia A100 (80GB) GPU", "gpu-a100-large-4x"),
            ("8x Nvidia A100 (80GB) GPU", "gpu-a100-large-8x"),
            ("Nvidia H100 GPU", "gpu-h100"),
            ("2x Nvidia H100 GPU", "gpu-h100-2x"),
            ("4x Nvidia H100 GPU", "gpu-h100-4x"),
            ("8x Nvidia H100 GPU", "gpu-h100-8x"),
        ]
        .into_iter()
        .map(|(name, sku)| (name.to_owned(), sku.to_owned()))
        .collect();
        Self {
            models,
            trainings: BTreeMap::new(),
            deployments: BTreeMap::new(),
            predictions: BTreeMap::new(),
            failures: VecDeque::new(),
            hardware,
            training_polls: 3,
            training_error: None,
            no_capacity: false,
            refused_deletes: 0,
            page_size: 100,
            counter: 0,
            prefer_headers: Vec::new(),
        }
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        // Replicate ids are short lowercase alphanumerics.
        format!("q{:011}fake{:04}", self.counter * 7919, self.counter)
    }

    fn new_version(&mut self) -> Value {
        self.counter += 1;
        json!({"id": format!("{:064x}", 0xab00_0000_u64 + self.counter), "created_at": CREATED_AT,
               "cog_version": "0.13.6", "openapi_schema": {}})
    }

    fn has_hardware(&self, sku: &str) -> bool {
        self.hardware.iter().any(|(_, listed)| listed == sku)
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "detail": message }))).into_response()
}

fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

fn model_json(model: &Model) -> Value {
    json!({
        "url": format!("https://replicate.com/{}/{}", model.owner, model.name),
        "owner": model.owner,
        "name": model.name,
        "description": model.description,
        "visibility": model.visibility,
        "github_url": null,
        "paper_url": null,
        "license_url": null,
        "cover_image_url": null,
        "default_example": null,
        "is_official": false,
        "run_count": 0,
        "latest_version": model.versions.first().cloned(),
    })
}

#[allow(clippy::too_many_arguments)]
fn deployment_json(
    owner: &str,
    name: &str,
    number: u64,
    model: &str,
    version: &str,
    hardware: &str,
    min_instances: u64,
    max_instances: u64,
) -> Value {
    json!({
        "owner": owner,
        "name": name,
        "current_release": {
            "number": number,
            "model": model,
            "version": version,
            "created_at": CREATED_AT,
            "created_by": {"type": "organization", "username": owner, "name": "Acme Corp, Inc.",
                           "avatar_url": format!("https://cdn.replicate.com/avatars/{owner}.png"),
                           "github_url": format!("https://github.com/{owner}")},
            "configuration": {"hardware": hardware, "min_instances": min_instances, "max_instances": max_instances},
        },
    })
}

/// Answers injected failures before the handler runs (after the guard).
async fn inject(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let failure = {
        let mut world = shared.world.lock().unwrap();
        let position = world.failures.iter().position(|failure| {
            (failure.method.is_empty() || failure.method == method)
                && path.starts_with(&failure.path_prefix)
        });
        position.and_then(|index| world.failures.remove(index))
    };
    match failure {
        Some(failure) => {
            let status = StatusCode::from_u16(failure.status).unwrap();
            let mut response = (status, Json(failure.body)).into_response();
            if let Some(seconds) = failure.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
            }
            response
        }
        None => next.run(request).await,
    }
}

async fn hardware_list(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let world = shared.world.lock().unwrap();
    Json(Value::Array(
        world
            .hardware
            .iter()
            .map(|(name, sku)| json!({"name": name, "sku": sku}))
            .collect(),
    ))
}

async fn models_create(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let mut world = shared.world.lock().unwrap();
    let owner = body["owner"].as_str().unwrap_or_default();
    let name = body["name"].as_str().unwrap_or_default();
    if owner != FAKE_OWNER {
        return detail(
            StatusCode::FORBIDDEN,
            "You can only create models for the account that owns the API token.",
        );
    }
    if !world.has_hardware(body["hardware"].as_str().unwrap_or_default()) {
        return detail(StatusCode::BAD_REQUEST, "Invalid hardware SKU.");
    }
    let key = format!("{owner}/{name}");
    if world.models.contains_key(&key) {
        return detail(
            StatusCode::CONFLICT,
            "A model with that name and owner already exists.",
        );
    }
    let model = Model {
        owner: owner.to_owned(),
        name: name.to_owned(),
        visibility: body["visibility"].as_str().unwrap_or("private").to_owned(),
        description: body["description"].as_str().map(str::to_owned),
        versions: Vec::new(),
    };
    let answer = model_json(&model);
    world.models.insert(key, model);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn models_get(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let world = shared.world.lock().unwrap();
    match world.models.get(&format!("{owner}/{name}")) {
        Some(model) => Json(model_json(model)).into_response(),
        None => not_found(),
    }
}

async fn models_delete(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let key = format!("{owner}/{name}");
    let Some(model) = world.models.get(&key) else {
        return not_found();
    };
    if owner != FAKE_OWNER {
        return detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to delete this model.",
        );
    }
    if !model.versions.is_empty() {
        return detail(
            StatusCode::CONFLICT,
            "Cannot delete a model that has versions. Delete its versions first.",
        );
    }
    let in_use = world
        .deployments
        .values()
        .any(|deployment| deployment["current_release"]["model"] == key.as_str());
    if in_use {
        return detail(
            StatusCode::CONFLICT,
            "Cannot delete a model that a deployment uses.",
        );
    }
    world.models.remove(&key);
    StatusCode::NO_CONTENT.into_response()
}

async fn versions_list(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let world = shared.world.lock().unwrap();
    match world.models.get(&format!("{owner}/{name}")) {
        Some(model) => {
            Json(json!({"next": null, "previous": null, "results": model.versions})).into_response()
        }
        None => not_found(),
    }
}

async fn versions_delete(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, version_id)): Path<(String, String, String)>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let in_use = world
        .deployments
        .values()
        .any(|deployment| deployment["current_release"]["version"] == version_id.as_str());
    let Some(model) = world.models.get_mut(&format!("{owner}/{name}")) else {
        return not_found();
    };
    if !model
        .versions
        .iter()
        .any(|version| version["id"] == version_id.as_str())
    {
        return not_found();
    }
    if in_use {
        return detail(
            StatusCode::CONFLICT,
            "Cannot delete a version that a deployment uses.",
        );
    }
    model
        .versions
        .retain(|version| version["id"] != version_id.as_str());
    StatusCode::ACCEPTED.into_response()
}

async fn trainings_create(
    State(shared): State<Arc<Shared>>,
    Path((owner, name, version_id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let trainer = format!("{owner}/{name}");
    let known_version = world.models.get(&trainer).is_some_and(|model| {
        model
            .versions
            .iter()
            .any(|version| version["id"] == version_id.as_str())
    });
    if !known_version {
        return not_found();
    }
    let destination = body["destination"].as_str().unwrap_or_default().to_owned();
    let destination_owned = world
        .models
        .get(&destination)
        .is_some_and(|model| model.owner == FAKE_OWNER);
    if !destination_owned {
        return detail(
            StatusCode::BAD_REQUEST,
            "The destination model does not exist or is not owned by you.",
        );
    }
    let mut input = body["input"].clone();
    if input.get("hf_token").is_some() {
        // Secrets are not echoed back.
        input["hf_token"] = json!("**********");
    }
    let id = world.next_id();
    let value = json!({
        "id": id,
        "model": trainer,
        "version": version_id,
        "source": "api",
        "status": "starting",
        "input": input,
        "output": null,
        "error": null,
        "logs": "",
        "metrics": {},
        "created_at": CREATED_AT,
        "started_at": null,
        "completed_at": null,
        "urls": {
            "get": format!("{}/v1/trainings/{id}", shared.base_url),
            "cancel": format!("{}/v1/trainings/{id}/cancel", shared.base_url),
        },
    });
    world.trainings.insert(
        id,
        Training {
            value: value.clone(),
            destination,
            polls: 0,
        },
    );
    (StatusCode::CREATED, Json(value)).into_response()
}

async fn trainings_get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut world = shared.world.lock().unwrap();
    let polls_needed = world.training_polls;
    let error = world.training_error.clone();
    let version = world.new_version();
    let Some(training) = world.trainings.get_mut(&id) else {
        return not_found();
    };
    let status = training.value["status"].as_str().unwrap_or_default();
    if matches!(status, "succeeded" | "failed" | "canceled") {
        return Json(training.value.clone()).into_response();
    }
    training.polls += 1;
    training.value["started_at"] = json!(CREATED_AT);
    if training.polls < polls_needed {
        let status = if training.polls == 1 {
            "starting"
        } else {
            "processing"
        };
        training.value["status"] = json!(status);
        training.value["logs"] = json!(format!("Downloading weights ({} polls)", training.polls));
        return Json(training.value.clone()).into_response();
    }
    training.value["completed_at"] = json!(CREATED_AT);
    training.value["metrics"] = json!({"predict_time": 42.5, "total_time": 50.1});
    let destination = training.destination.clone();
    match error {
        Some(error) => {
            training.value["status"] = json!("failed");
            training.value["error"] = json!(error);
            let answer = training.value.clone();
            Json(answer).into_response()
        }
        None => {
            training.value["status"] = json!("succeeded");
            training.value["output"] = json!({
                "version": version["id"],
                "weights": format!("https://replicate.delivery/xezq/{id}/model.tar"),
            });
            let answer = training.value.clone();
            if let Some(model) = world.models.get_mut(&destination) {
                model.versions.insert(0, version);
            }
            Json(answer).into_response()
        }
    }
}

async fn trainings_cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut world = shared.world.lock().unwrap();
    let Some(training) = world.trainings.get_mut(&id) else {
        return not_found();
    };
    if matches!(
        training.value["status"].as_str(),
        Some("starting" | "processing")
    ) {
        training.value["status"] = json!("canceled");
        training.value["completed_at"] = json!(CREATED_AT);
    }
    Json(training.value.clone()).into_response()
}

async fn deployments_list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let world = shared.world.lock().unwrap();
    let start: usize = query
        .get("cursor")
        .and_then(|cursor| cursor.parse().ok())
        .unwrap_or(0);
    let all: Vec<&Value> = world.deployments.values().collect();
    let end = (start + world.page_size).min(all.len());
    let results: Vec<Value> = all[start.min(end)..end]
        .iter()
        .map(|d| (*d).clone())
        .collect();
    let next =
        (end < all.len()).then(|| format!("{}/v1/deployments?cursor={end}", shared.base_url));
    let previous = (start > 0).then(|| {
        format!(
            "{}/v1/deployments?cursor={}",
            shared.base_url,
            start.saturating_sub(world.page_size)
        )
    });
    Json(json!({"next": next, "previous": previous, "results": results})).into_response()
}

async fn deployments_create(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let name = body["name"].as_str().unwrap_or_default();
    let model = body["model"].as_str().unwrap_or_default();
    let version = body["version"].as_str().unwrap_or_default();
    let hardware = body["hardware"].as_str().unwrap_or_default();
    let min_instances = body["min_instances"].as_u64().unwrap_or_default();
    let max_instances = body["max_instances"].as_u64().unwrap_or_default();
    let key = format!("{FAKE_OWNER}/{name}");
    if world.deployments.contains_key(&key) {
        return detail(
            StatusCode::CONFLICT,
            "A deployment with that name already exists.",
        );
    }
    let Some(target) = world.models.get(model) else {
        return detail(StatusCode::NOT_FOUND, "Model not found.");
    };
    if !target.versions.iter().any(|known| known["id"] == version) {
        return detail(
            StatusCode::BAD_REQUEST,
            "The version does not belong to the model.",
        );
    }
    if !world.has_hardware(hardware) {
        return detail(StatusCode::BAD_REQUEST, "Invalid hardware SKU.");
    }
    if max_instances < min_instances || max_instances == 0 {
        return detail(
            StatusCode::BAD_REQUEST,
            "max_instances must be at least 1 and at least min_instances.",
        );
    }
    if world.no_capacity {
        return detail(
            StatusCode::BAD_REQUEST,
            &format!("Hardware {hardware} is not available right now. Choose different hardware or try again later."),
        );
    }
    let deployment = deployment_json(
        FAKE_OWNER,
        name,
        1,
        model,
        version,
        hardware,
        min_instances,
        max_instances,
    );
    world.deployments.insert(key, deployment.clone());
    Json(deployment).into_response()
}

async fn deployments_get(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let world = shared.world.lock().unwrap();
    match world.deployments.get(&format!("{owner}/{name}")) {
        Some(deployment) => Json(deployment.clone()).into_response(),
        None => not_found(),
    }
}

async fn deployments_update(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let Some(deployment) = world.deployments.get_mut(&format!("{owner}/{name}")) else {
        return not_found();
    };
    let release = &deployment["current_release"];
    let configuration = &release["configuration"];
    let min_instances = body
        .get("min_instances")
        .unwrap_or(&configuration["min_instances"])
        .as_u64()
        .unwrap_or_default();
    let max_instances = body
        .get("max_instances")
        .unwrap_or(&configuration["max_instances"])
        .as_u64()
        .unwrap_or_default();
    if max_instances < min_instances {
        return detail(
            StatusCode::BAD_REQUEST,
            "max_instances must be at least min_instances.",
        );
    }
    let updated = deployment_json(
        &owner,
        &name,
        release["number"].as_u64().unwrap_or(1) + 1,
        release["model"].as_str().unwrap_or_default(),
        body.get("version")
            .unwrap_or(&release["version"])
            .as_str()
            .unwrap_or_default(),
        body.get("hardware")
            .unwrap_or(&configuration["hardware"])
            .as_str()
            .unwrap_or_default(),
        min_instances,
        max_instances,
    );
    *deployment = updated.clone();
    Json(updated).into_response()
}

async fn deployments_delete(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    let mut world = shared.world.lock().unwrap();
    let key = format!("{owner}/{name}");
    let Some(deployment) = world.deployments.get(&key) else {
        return not_found();
    };
    let online = deployment["current_release"]["configuration"]["min_instances"]
        .as_u64()
        .unwrap_or_default()
        > 0;
    if online || world.refused_deletes > 0 {
        world.refused_deletes = world.refused_deletes.saturating_sub(1);
        return detail(
            StatusCode::CONFLICT,
            "Deployments can only be deleted after they have been offline and unused for at least 15 minutes.",
        );
    }
    world.deployments.remove(&key);
    StatusCode::NO_CONTENT.into_response()
}

fn prefer_is_valid(value: &str) -> bool {
    match value.strip_prefix("wait") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('=')
            .and_then(|seconds| seconds.parse::<u32>().ok())
            .is_some_and(|seconds| (1..=60).contains(&seconds)),
        None => false,
    }
}

async fn predictions_create(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let prefer = headers
        .get("prefer")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(prefer) = &prefer {
        if !prefer_is_valid(prefer) {
            let message = format!("POST predictions: invalid Prefer header {prefer:?}");
            shared
                .journal
                .violations
                .lock()
                .unwrap()
                .push(message.clone());
            return detail(StatusCode::BAD_REQUEST, &message);
        }
    }
    let mut world = shared.world.lock().unwrap();
    if let Some(prefer) = &prefer {
        world.prefer_headers.push(prefer.clone());
    }
    let key = format!("{owner}/{name}");
    let Some(deployment) = world.deployments.get(&key).cloned() else {
        return not_found();
    };
    let id = world.next_id();
    let base = &shared.base_url;
    let mut prediction = json!({
        "id": id,
        "model": deployment["current_release"]["model"],
        "version": deployment["current_release"]["version"],
        "deployment": key,
        "input": body["input"],
        "status": "starting",
        "output": null,
        "error": null,
        "logs": "",
        "metrics": {},
        "data_removed": false,
        "created_at": CREATED_AT,
        "started_at": null,
        "completed_at": null,
        "deadline": null,
        "urls": {
            "get": format!("{base}/v1/predictions/{id}"),
            "cancel": format!("{base}/v1/predictions/{id}/cancel"),
            "web": format!("https://replicate.com/p/{id}"),
            "stream": format!("{}/v1/predictions/{id}", shared.stream_url),
        },
    });
    if prefer.is_some() {
        finish(&mut prediction);
    }
    world.predictions.insert(id, prediction.clone());
    (StatusCode::CREATED, Json(prediction)).into_response()
}

/// Completes a prediction: output pieces and metrics.
fn finish(prediction: &mut Value) {
    let prompt = prediction["input"]["prompt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let output = prediction_output(&prompt);
    prediction["status"] = json!("succeeded");
    prediction["metrics"] = json!({
        "predict_time": 0.05,
        "total_time": 0.1,
        "input_token_count": prompt.split_whitespace().count(),
        "output_token_count": output.len(),
        "time_to_first_token": 0.01,
        "tokens_per_second": 60.0,
    });
    prediction["output"] = json!(output);
    prediction["started_at"] = json!(CREATED_AT);
    prediction["completed_at"] = json!(CREATED_AT);
}

async fn predictions_get(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut world = shared.world.lock().unwrap();
    let Some(prediction) = world.predictions.get_mut(&id) else {
        return not_found();
    };
    if prediction["status"] == "starting" {
        finish(prediction);
    }
    Json(prediction.clone()).into_response()
}

async fn predictions_cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut world = shared.world.lock().unwrap();
    let Some(prediction) = world.predictions.get_mut(&id) else {
        return not_found();
    };
    if matches!(
        prediction["status"].as_str(),
        Some("starting" | "processing")
    ) {
        prediction["status"] = json!("canceled");
        prediction["completed_at"] = json!(CREATED_AT);
    }
    Json(prediction.clone()).into_response()
}

/// The streaming host: the prediction's output as server-sent events.
async fn predictions_stream(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let accepts_events = headers
        .get("accept")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("text/event-stream"));
    if !accepts_events {
        let message = format!("GET stream {id}: Accept: text/event-stream is required");
        shared
            .journal
            .violations
            .lock()
            .unwrap()
            .push(message.clone());
        return detail(StatusCode::NOT_ACCEPTABLE, &message);
    }
    let mut world = shared.world.lock().unwrap();
    let Some(prediction) = world.predictions.get_mut(&id) else {
        return not_found();
    };
    let mut events = String::new();
    if prediction["status"] == "canceled" {
        events.push_str("event: done\nid: 0:0\ndata: {\"reason\":\"canceled\"}\n\n");
    } else {
        if prediction["status"] == "starting" {
            finish(prediction);
        }
        let pieces = prediction["output"].as_array().cloned().unwrap_or_default();
        for (index, piece) in pieces.iter().enumerate() {
            events.push_str(&format!("event: output\nid: 1:{index}\n"));
            for line in piece.as_str().unwrap_or_default().split('\n') {
                events.push_str(&format!("data: {line}\n"));
            }
            events.push('\n');
        }
        events.push_str(&format!(
            "event: done\nid: 1:{}\ndata: {{}}\n\n",
            pieces.len()
        ));
    }
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-store"),
        ],
        events,
    )
        .into_response()
}

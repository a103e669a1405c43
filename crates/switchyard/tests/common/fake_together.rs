//! A fake Together AI v1 API (dedicated endpoints, hardware, chat completions)
//! behind [`spec::guard`] with the official `together/openapi.yaml`: every
//! request must be an operation of the spec with a body that validates, query
//! parameters must be declared parameters of their operation, and every
//! success answer the fake gives is validated against the documented response
//! schema (so the fake cannot drift from the spec either).
//!
//! Endpoints go `PENDING` → `STARTING` → `STARTED` over `ready_after_polls`
//! reads of `GET /v1/endpoints/{id}`; knobs stop an endpoint (as its
//! inactive timeout would), put it in `ERROR`, mark hardware unavailable and
//! inject error answers (rate limits with `Retry-After`, 5xx, 401, ...).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};

use super::spec::{guard, Contract, Journal, OpenApi};

/// The API key the fake accepts.
pub const API_KEY: &str = "together-test-key";
/// The account that owns the fake's endpoints.
pub const OWNER: &str = "switchyard-test";
pub const PROMPT_TOKENS: u64 = 12;
pub const COMPLETION_TOKENS: u64 = 3;

/// An error answer the fake gives instead of handling a request.
struct Injected {
    method: String,
    path_prefix: String,
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
    remaining: usize,
}

struct Endpoint {
    body: Value,
    polls: usize,
}

struct Inner {
    contract: Arc<Contract>,
    endpoints: Mutex<BTreeMap<String, Endpoint>>,
    hardware: Mutex<Vec<Value>>,
    injected: Mutex<Vec<Injected>>,
    ready_after_polls: AtomicUsize,
    /// Include `display_name` in list items (the `ListEndpoint` schema has none).
    list_display_names: Mutex<bool>,
    /// The query string of every `GET /v1/hardware`.
    hardware_queries: Mutex<Vec<BTreeMap<String, String>>>,
    next_id: AtomicUsize,
}

/// A running fake Together API on 127.0.0.1.
pub struct FakeTogether {
    pub journal: Arc<Journal>,
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// The Together error body (`ErrorData`).
pub fn error_body(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(message))).into_response()
}

/// One `HardwareWithStatus` entry.
pub fn hardware(
    id: &str,
    gpu_type: &str,
    memory: u32,
    count: u32,
    cents: f64,
    status: &str,
) -> Value {
    json!({"object": "hardware", "id": id, "pricing": {"cents_per_minute": cents},
           "specs": {"gpu_type": gpu_type, "gpu_link": "sxm", "gpu_memory": memory, "gpu_count": count},
           "availability": {"status": status}, "updated_at": "2026-04-28T10:00:00Z"})
}

fn default_hardware() -> Vec<Value> {
    vec![
        hardware(
            "1x_nvidia_a100_80gb_sxm",
            "a100-80gb",
            80,
            1,
            4.0,
            "available",
        ),
        hardware(
            "2x_nvidia_a100_80gb_sxm",
            "a100-80gb",
            80,
            2,
            8.0,
            "available",
        ),
        hardware(
            "1x_nvidia_h100_80gb_sxm",
            "h100-80gb",
            80,
            1,
            6.65,
            "available",
        ),
        hardware(
            "2x_nvidia_h100_80gb_sxm",
            "h100-80gb",
            80,
            2,
            13.3,
            "available",
        ),
        hardware(
            "8x_nvidia_h200_140gb_sxm",
            "h200-140gb",
            140,
            8,
            73.2,
            "available",
        ),
    ]
}

impl FakeTogether {
    /// Starts the fake with a default hardware list and `ready_after_polls = 3`.
    pub async fn start() -> Self {
        let journal = Arc::new(Journal::default());
        let contract = Arc::new(Contract {
            spec: OpenApi::load_shared("together/openapi.yaml"),
            auth_header: "authorization",
            auth_value: format!("Bearer {API_KEY}"),
            strip_prefix: "/v1",
            error_body,
            journal: journal.clone(),
        });
        let inner = Arc::new(Inner {
            contract: contract.clone(),
            endpoints: Mutex::new(BTreeMap::new()),
            hardware: Mutex::new(default_hardware()),
            injected: Mutex::new(Vec::new()),
            ready_after_polls: AtomicUsize::new(3),
            list_display_names: Mutex::new(false),
            hardware_queries: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(1),
        });
        let app = Router::new()
            .route("/v1/hardware", get(list_hardware))
            .route("/v1/endpoints", get(list_endpoints).post(create_endpoint))
            .route(
                "/v1/endpoints/{id}",
                get(get_endpoint)
                    .patch(patch_endpoint)
                    .delete(delete_endpoint),
            )
            .route("/v1/chat/completions", post(chat))
            .layer(axum::middleware::from_fn_with_state(inner.clone(), inject))
            .layer(axum::middleware::from_fn_with_state(contract, guard))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            journal,
            addr,
            inner,
        }
    }

    /// The host URL (`config.api_base_url`); the API is under `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reads of an endpoint until it is `STARTED` (1 = at once).
    pub fn set_ready_after_polls(&self, polls: usize) {
        self.inner.ready_after_polls.store(polls, Ordering::SeqCst);
    }

    /// Replaces the hardware list `GET /v1/hardware` answers.
    pub fn set_hardware(&self, hardware: Vec<Value>) {
        *self.inner.hardware.lock().unwrap() = hardware;
    }

    /// Marks every hardware configuration with an availability status.
    pub fn set_no_capacity(&self, status: &str) {
        for item in self.inner.hardware.lock().unwrap().iter_mut() {
            item["availability"]["status"] = json!(status);
        }
    }

    /// Lists endpoints with their `display_name` (beyond the documented schema).
    pub fn set_list_display_names(&self, include: bool) {
        *self.inner.list_display_names.lock().unwrap() = include;
    }

    /// Answers the next `times` requests matching `method` and a path prefix with an error.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        times: usize,
        message: &str,
    ) {
        self.push(
            method,
            path_prefix,
            status,
            times,
            error_body(message),
            None,
        );
    }

    /// Answers the next `times` requests (any route) with 429 and `Retry-After`.
    pub fn rate_limit_next(&self, times: usize, retry_after_secs: u64) {
        self.rate_limit_route("", "/", times, retry_after_secs);
    }

    /// Answers the next `times` requests matching `method` (empty = any) and a
    /// path prefix with 429 and `Retry-After`.
    pub fn rate_limit_route(
        &self,
        method: &str,
        path_prefix: &str,
        times: usize,
        retry_after_secs: u64,
    ) {
        let body = json!({"error": {"message": "rate limit exceeded", "type": "rate_limit_exceeded", "param": null, "code": "rate_limit_exceeded"}});
        self.push(
            method,
            path_prefix,
            429,
            times,
            body,
            Some(retry_after_secs),
        );
    }

    fn push(
        &self,
        method: &str,
        prefix: &str,
        status: u16,
        times: usize,
        body: Value,
        retry_after: Option<u64>,
    ) {
        self.inner.injected.lock().unwrap().push(Injected {
            method: method.to_owned(),
            path_prefix: prefix.to_owned(),
            status: StatusCode::from_u16(status).unwrap(),
            body,
            retry_after,
            remaining: times,
        });
    }

    /// Stops an endpoint as its inactive timeout would.
    pub fn stop_endpoint(&self, id: &str) {
        self.set_state(id, "STOPPED");
    }

    /// Puts an endpoint in `ERROR`.
    pub fn fail_endpoint(&self, id: &str) {
        self.set_state(id, "ERROR");
    }

    fn set_state(&self, id: &str, state: &str) {
        let mut endpoints = self.inner.endpoints.lock().unwrap();
        let endpoint = endpoints.get_mut(id).expect("known endpoint");
        endpoint.body["state"] = json!(state);
    }

    /// The endpoint as the fake holds it.
    pub fn endpoint(&self, id: &str) -> Option<Value> {
        self.inner
            .endpoints
            .lock()
            .unwrap()
            .get(id)
            .map(|endpoint| endpoint.body.clone())
    }

    /// Adds an endpoint of the account that Switchyard did not create.
    pub fn add_foreign_endpoint(&self, display_name: &str, state: &str) -> String {
        let body = new_endpoint(
            &self.inner,
            "meta-llama/Llama-3.1-8B-Instruct",
            "1x_nvidia_a100_80gb_sxm",
            display_name,
            json!({"min_replicas": 1, "max_replicas": 1}),
        );
        let id = body["id"].as_str().unwrap().to_owned();
        let mut body = body;
        body["state"] = json!(state);
        self.inner
            .endpoints
            .lock()
            .unwrap()
            .insert(id.clone(), Endpoint { body, polls: 0 });
        id
    }

    /// The query parameters of every `GET /v1/hardware` so far.
    pub fn hardware_queries(&self) -> Vec<BTreeMap<String, String>> {
        self.inner.hardware_queries.lock().unwrap().clone()
    }
}

/// Validates a success answer against the spec and records drift as a violation.
fn reply(inner: &Inner, pointer: &str, body: Value) -> Response {
    if let Err(errors) = inner.contract.spec.validate(pointer, &body) {
        inner
            .contract
            .journal
            .violations
            .lock()
            .unwrap()
            .push(format!(
                "the fake answered off-spec for {pointer}: {}",
                errors.join("; ")
            ));
    }
    Json(body).into_response()
}

/// Checks query parameters against the operation's declared `in: query` parameters.
fn check_query(inner: &Inner, operation: &str, query: &BTreeMap<String, String>) {
    let parameters = inner
        .contract
        .spec
        .document
        .pointer(&format!("{operation}/parameters"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut violations = Vec::new();
    for (name, value) in query {
        let Some(index) = parameters
            .iter()
            .position(|parameter| parameter["in"] == "query" && parameter["name"] == name.as_str())
        else {
            violations.push(format!("{operation}: undeclared query parameter {name}"));
            continue;
        };
        let schema = format!("{operation}/parameters/{index}/schema");
        let typed = match inner
            .contract
            .spec
            .document
            .pointer(&format!("{schema}/type"))
        {
            Some(Value::String(kind)) if kind == "boolean" => match value.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => json!(value),
            },
            _ => json!(value),
        };
        if let Err(errors) = inner.contract.spec.validate(&schema, &typed) {
            violations.push(format!(
                "{operation}: query {name}={value}: {}",
                errors.join("; ")
            ));
        }
    }
    inner
        .contract
        .journal
        .violations
        .lock()
        .unwrap()
        .extend(violations);
}

async fn inject(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let hit = {
        let mut injected = inner.injected.lock().unwrap();
        let found = injected.iter_mut().find(|item| {
            item.remaining > 0
                && (item.method.is_empty() || item.method == method)
                && path.starts_with(&item.path_prefix)
        });
        found.map(|item| {
            item.remaining -= 1;
            (item.status, item.body.clone(), item.retry_after)
        })
    };
    match hit {
        Some((status, body, retry_after)) => {
            let mut response = (status, Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    seconds.to_string().parse().unwrap(),
                );
            }
            response
        }
        None => next.run(request).await,
    }
}

async fn list_hardware(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    check_query(&inner, "/paths/~1hardware/get", &query);
    inner.hardware_queries.lock().unwrap().push(query.clone());
    let data = inner.hardware.lock().unwrap().clone();
    let data: Vec<Value> = if query.contains_key("model") {
        data
    } else {
        // Availability is only reported for a given model.
        data.into_iter()
            .map(|mut item| {
                item.as_object_mut().unwrap().remove("availability");
                item
            })
            .collect()
    };
    reply(
        &inner,
        "/paths/~1hardware/get/responses/200/content/application~1json/schema",
        json!({"object": "list", "data": data}),
    )
}

fn new_endpoint(
    inner: &Inner,
    model: &str,
    hardware: &str,
    display_name: &str,
    autoscaling: Value,
) -> Value {
    let number = inner.next_id.fetch_add(1, Ordering::SeqCst);
    let id = format!("endpoint-00000000-0000-4000-8000-{number:012x}");
    json!({
        "object": "endpoint", "id": id,
        "name": format!("{OWNER}/{model}-{number:08x}"),
        "display_name": display_name, "model": model, "hardware": hardware,
        "type": "dedicated", "owner": OWNER, "state": "PENDING",
        "autoscaling": autoscaling, "created_at": "2026-05-04T10:43:55.405Z"
    })
}

async fn create_endpoint(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let hardware = body["hardware"].as_str().unwrap_or_default().to_owned();
    let offered = inner.hardware.lock().unwrap().clone();
    let Some(item) = offered.iter().find(|item| item["id"] == hardware.as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("hardware {hardware} is not supported for model {model}"),
        );
    };
    if item["availability"]["status"] != "available" {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no capacity for hardware {hardware}"),
        );
    }
    let display_name = body["display_name"].as_str().unwrap_or(&model).to_owned();
    let mut endpoint = new_endpoint(
        &inner,
        &model,
        &hardware,
        &display_name,
        body["autoscaling"].clone(),
    );
    if body["state"] == "STOPPED" {
        endpoint["state"] = json!("STOPPED");
    }
    if let Some(minutes) = body.get("inactive_timeout") {
        endpoint["inactive_timeout"] = minutes.clone();
    }
    let id = endpoint["id"].as_str().unwrap().to_owned();
    inner.endpoints.lock().unwrap().insert(
        id,
        Endpoint {
            body: endpoint.clone(),
            polls: 0,
        },
    );
    reply(
        &inner,
        "/components/schemas/DedicatedEndpoint",
        public(endpoint),
    )
}

async fn list_endpoints(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    check_query(&inner, "/paths/~1endpoints/get", &query);
    let with_names = *inner.list_display_names.lock().unwrap();
    let wanted_type = query.get("type").cloned();
    let data: Vec<Value> = inner
        .endpoints
        .lock()
        .unwrap()
        .values()
        .filter(|endpoint| {
            wanted_type
                .as_deref()
                .is_none_or(|kind| endpoint.body["type"] == kind)
        })
        .map(|endpoint| {
            let mut item = json!({});
            for field in [
                "object",
                "id",
                "name",
                "model",
                "type",
                "owner",
                "state",
                "created_at",
            ] {
                item[field] = endpoint.body[field].clone();
            }
            if with_names {
                item["display_name"] = endpoint.body["display_name"].clone();
            }
            item
        })
        .collect();
    reply(
        &inner,
        "/paths/~1endpoints/get/responses/200/content/application~1json/schema",
        json!({"object": "list", "data": data}),
    )
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("endpoint {id} not found"))
}

async fn get_endpoint(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let ready_after = inner.ready_after_polls.load(Ordering::SeqCst);
    let body = {
        let mut endpoints = inner.endpoints.lock().unwrap();
        let Some(endpoint) = endpoints.get_mut(&id) else {
            return not_found(&id);
        };
        if matches!(
            endpoint.body["state"].as_str(),
            Some("PENDING" | "STARTING")
        ) {
            endpoint.polls += 1;
            let state = if endpoint.polls >= ready_after {
                "STARTED"
            } else if endpoint.polls > 1 {
                "STARTING"
            } else {
                "PENDING"
            };
            endpoint.body["state"] = json!(state);
        }
        endpoint.body.clone()
    };
    reply(
        &inner,
        "/components/schemas/DedicatedEndpoint",
        public(body),
    )
}

/// The endpoint without fields the fake keeps for itself.
fn public(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("inactive_timeout");
    body
}

async fn patch_endpoint(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    Json(patch): Json<Value>,
) -> Response {
    let body = {
        let mut endpoints = inner.endpoints.lock().unwrap();
        let Some(endpoint) = endpoints.get_mut(&id) else {
            return not_found(&id);
        };
        for field in ["display_name", "autoscaling", "inactive_timeout"] {
            if let Some(value) = patch.get(field) {
                endpoint.body[field] = value.clone();
            }
        }
        match (patch["state"].as_str(), endpoint.body["state"].as_str()) {
            (Some("STARTED"), Some("STOPPED" | "STOPPING" | "ERROR")) => {
                endpoint.body["state"] = json!("PENDING");
                endpoint.polls = 0;
            }
            (Some("STOPPED"), _) => endpoint.body["state"] = json!("STOPPED"),
            _ => {}
        }
        endpoint.body.clone()
    };
    reply(
        &inner,
        "/components/schemas/DedicatedEndpoint",
        public(body),
    )
}

async fn delete_endpoint(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    match inner.endpoints.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(&id),
    }
}

async fn chat(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let state = inner
        .endpoints
        .lock()
        .unwrap()
        .values()
        .find(|endpoint| endpoint.body["name"] == model.as_str())
        .map(|endpoint| {
            endpoint.body["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
    match state.as_deref() {
        None => {
            let message = format!("Unable to access model {model}. Please visit https://api.together.ai/models to view the list of supported models.");
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "model_not_available"}})),
            )
                .into_response();
        }
        Some("STARTED") => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("endpoint for model {model} is {other}; start it first"),
            );
        }
    }
    let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                       "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS});
    if body["stream"] != true {
        return reply(
            &inner,
            "/components/schemas/ChatCompletionResponse",
            json!({"id": "chatcmpl-fake-1", "object": "chat.completion", "created": 1_777_000_000, "model": model,
                   "prompt": [],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
                   "usage": usage}),
        );
    }
    // Chunks are not validated: the spec marks `finish_reason` `nullable`
    // (OpenAPI 3.0 syntax), which JSON Schema 2020-12 ignores, so the
    // documented `null` of every chunk but the last would not validate.
    let mut events = String::new();
    let words = ["Hello", " there", "!"];
    for (index, word) in words.iter().enumerate() {
        let last = index + 1 == words.len();
        let mut chunk = json!({"id": "chatcmpl-fake-1", "object": "chat.completion.chunk", "created": 1_777_000_000,
                               "model": model,
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}}]});
        // Together sends `finish_reason` and `usage` on the last chunk only.
        chunk["choices"][0]["finish_reason"] = if last { json!("stop") } else { Value::Null };
        if last {
            chunk["usage"] = usage.clone();
        }
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    events.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(events))
        .unwrap()
}

//! Control-plane paths through the real server against the provider fakes:
//! fallback from RunPod (no capacity) to Hugging Face, a RunPod deploy served
//! through the gateway, a deploy where every option fails, the reconcile loop
//! deleting orphans, PATCH scaling propagated to the provider (and refused),
//! DELETE removing the provider resource, the WebSocket event stream, and a
//! redeploy that swaps resources while the gateway keeps answering.

mod common;

#[allow(unused_imports)]
use common::deploy::*;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::fake_huggingface::FakeHuggingFace;
use common::fake_runpod::{self, FakeRunPod};
use common::{Backend, Options, TestServer};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use switchyard::config::Config;
use switchyard::providers::config::{HuggingFaceConfig, RunPodConfig};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

/// A `sy-…` RunPod endpoint no Switchyard endpoint or job names.
const ORPHAN: &str = "sy-0123456789abcdef0123";
/// An endpoint of the same account that Switchyard did not create.
const FOREIGN: &str = "team-llm-prod";

/// Which fakes the server deploys to; every other provider is unconfigured.
#[derive(Clone, Default)]
struct Setup {
    runpod: Option<RunPodConfig>,
    huggingface: Option<HuggingFaceConfig>,
    reconcile_interval: Option<Duration>,
}

/// Server options: the fake Hub, only the given providers, fast polls.
fn options(hub: &str, setup: Setup) -> Options {
    let hub = hub.to_owned();
    Options {
        configure: Some(Arc::new(move |config: &mut Config| {
            config.providers.hub.base_url = hub.clone();
            // Credentials from the environment must not add providers to the plan.
            config.providers.runpod.api_key = None;
            config.providers.huggingface.token = None;
            config.providers.replicate.token = None;
            config.providers.together.api_key = None;
            config.providers.modal.token_id = None;
            config.providers.modal.token_secret = None;
            config.providers.self_hosted.command = None;
            if let Some(runpod) = &setup.runpod {
                config.providers.runpod = runpod.clone();
            }
            if let Some(huggingface) = &setup.huggingface {
                config.providers.huggingface = huggingface.clone();
            }
            if let Some(interval) = setup.reconcile_interval {
                config.reconcile_interval = interval;
            }
            config.deploy_poll_interval = Duration::from_millis(50);
            config.job_lease = Duration::from_secs(5);
        })),
        ..Options::default()
    }
}

/// A funded user: (id, management token).
async fn funded_user(server: &TestServer, name: &str) -> (String, String) {
    let (user_id, token) = server.create_user(name).await;
    server.add_credits(&user_id, 100).await;
    (user_id, token)
}

/// Waits until `done` holds, checking every 50 ms; panics with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_endpoint(server: &TestServer, token: &str, endpoint_id: &str) -> Value {
    let (status, body) = server
        .get(&format!("/api/v1/endpoints/{endpoint_id}"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    body["endpoint"].clone()
}

/// Posts a deploy and returns the endpoint id (asserting the 202).
async fn start_deploy(server: &TestServer, token: &str, body: Value) -> String {
    let (status, accepted) = server.post("/api/v1/endpoints/deploy", token, body).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "provisioning", "{accepted}");
    accepted["endpoint_id"].as_str().unwrap().to_owned()
}

/// A finished RunPod deploy.
struct Deployed {
    endpoint_id: String,
    api_key: String,
    /// The RunPod endpoint id.
    resource_id: String,
    model: String,
}

/// Deploys `model` to the RunPod fake and waits until it serves.
async fn deploy_runpod(
    server: &TestServer,
    fake: &FakeRunPod,
    token: &str,
    model: &str,
    min_workers: u32,
) -> Deployed {
    let endpoint_id = start_deploy(
        server,
        token,
        json!({"model_id": MODEL_ID, "model_name": model, "provider": "runpod", "min_workers": min_workers}),
    )
    .await;
    let done = wait_for_job(server, token, &endpoint_id, "succeeded").await;
    assert_eq!(done["deployment"]["provider"], "runpod", "{done}");
    let api_key = done["api_key"]
        .as_str()
        .expect("the first status after success carries the key")
        .to_owned();
    let endpoint = get_endpoint(server, token, &endpoint_id).await;
    assert_eq!(endpoint["provider"], "runpod", "{endpoint}");
    let resource_id = endpoint["provider_endpoint_id"]
        .as_str()
        .expect("the RunPod endpoint id")
        .to_owned();
    let live = fake
        .endpoint(&resource_id)
        .expect("the RunPod endpoint exists");
    assert!(live["name"].as_str().unwrap().starts_with("sy-"), "{live}");
    Deployed {
        endpoint_id,
        api_key,
        resource_id,
        model: model.to_owned(),
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A user's Server-Sent Events, parsed into their JSON documents.
struct SseEvents {
    stream: ByteStream,
    buffer: String,
}

impl SseEvents {
    /// Subscribes; events published after this returns are delivered.
    async fn open(server: &TestServer, token: &str) -> Self {
        let response = server
            .http
            .get(format!("{}/api/v1/events", server.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event; panics if none arrives before `deadline`.
    async fn next(&mut self, deadline: Instant) -> Value {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                if let Some(data) = frame.lines().find_map(|line| line.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("an event in time")
                .expect("the event stream is open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until (and with) the first of type `last`.
    async fn until(&mut self, last: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut events = Vec::new();
        loop {
            let event = self.next(deadline).await;
            let done = event["type"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

/// Positions of the stage order in the progress events; asserts they increase.
fn assert_stage_order(events: &[Value]) {
    let stages: Vec<&str> = of_type(events, "DEPLOYMENT_PROGRESS")
        .iter()
        .filter_map(|event| event["stage"].as_str())
        .collect();
    let order = [
        "analyzing",
        "selecting",
        "provisioning",
        "waiting_ready",
        "issuing_key",
        "ready",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|stage| {
            stages
                .iter()
                .position(|seen| seen == stage)
                .unwrap_or_else(|| panic!("no {stage} in {stages:?}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{stages:?}"
    );
}

on_both_backends!(
    no_capacity_on_runpod_falls_back_to_huggingface,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let runpod = FakeRunPod::start().await;
        let huggingface = FakeHuggingFace::start().await;
        runpod.set_no_capacity(true);
        let server = TestServer::start_with(
            backend,
            options(
                &hub,
                Setup {
                    runpod: Some(runpod.config()),
                    huggingface: Some(huggingface.config()),
                    ..Setup::default()
                },
            ),
        )
        .await;
        let (_, token) = funded_user(&server, "fallback").await;

        // The cheapest option is RunPod; Hugging Face is a ranked alternative.
        let (status, preview) = server
            .get(
                &format!(
                    "/api/v1/endpoints/deploy/preview?model_id={MODEL_ID}&budget=minimum_cost"
                ),
                &token,
            )
            .await;
        assert_eq!(status, 200, "{preview}");
        let recommendation = &preview["preview"]["recommendation"];
        assert_eq!(recommendation["provider"], "runpod", "{preview}");
        assert!(
            recommendation["alternatives"]
                .as_array()
                .unwrap()
                .iter()
                .any(|option| option["provider"] == "huggingface" && option["available"] == true),
            "{preview}"
        );

        let mut events = SseEvents::open(&server, &token).await;
        let endpoint_id = start_deploy(
            &server,
            &token,
            json!({"model_id": MODEL_ID, "model_name": "fallback-smol", "budget": "minimum_cost"}),
        )
        .await;
        let seen = events.until("DEPLOYMENT_COMPLETE").await;
        assert!(
            seen.iter()
                .all(|event| event["endpoint_id"] == endpoint_id.as_str()),
            "{seen:?}"
        );
        assert_stage_order(&seen);
        let complete = seen.last().unwrap();
        assert_eq!(complete["provider"], "huggingface", "{complete}");
        let api_key = complete["api_key"]
            .as_str()
            .expect("the key, once")
            .to_owned();
        let fallback_note = of_type(&seen, "DEPLOYMENT_PROGRESS")
            .into_iter()
            .filter_map(|event| event["message"].as_str())
            .find(|message| message.contains("falling back") && message.contains("huggingface"))
            .unwrap_or_else(|| panic!("no progress event mentions the fallback: {seen:?}"));
        assert!(fallback_note.contains("runpod"), "{fallback_note}");

        let done = wait_for_job(&server, &token, &endpoint_id, "succeeded").await;
        assert_eq!(done["deployment"]["provider"], "huggingface", "{done}");
        assert_eq!(done["api_key"], Value::Null, "the event handed the key out");
        let attempts = done["deployment"]["attempts"].as_array().unwrap();
        assert!(!attempts.is_empty(), "{done}");
        for attempt in attempts {
            assert_eq!(attempt["provider"], "runpod", "{attempt}");
            assert_eq!(attempt["code"], "provider_no_capacity", "{attempt}");
        }
        assert_eq!(
            runpod.journal.count("POST", "/v2/serverless"),
            attempts.len(),
            "one refused create per RunPod attempt"
        );

        // Nothing is left on RunPod; exactly the one endpoint on Hugging Face.
        assert_eq!(runpod.endpoints(), Vec::<Value>::new());
        assert_eq!(runpod.templates(), Vec::<Value>::new());
        let endpoint = get_endpoint(&server, &token, &endpoint_id).await;
        assert_eq!(endpoint["provider"], "huggingface", "{endpoint}");
        assert_eq!(endpoint["status"], "active", "{endpoint}");
        let resource = endpoint["provider_endpoint_id"].as_str().unwrap();
        assert_eq!(huggingface.endpoint_names(), vec![resource.to_owned()]);

        // The gateway reaches the Hugging Face endpoint with the HF token.
        let (status, answer) = chat(&server, &api_key, "fallback-smol").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello from HF");
        let inference = huggingface.inference_requests();
        assert_eq!(inference.len(), 1, "{inference:?}");
        assert_eq!(
            inference[0].0,
            format!("/ep/{resource}/v1/chat/completions")
        );
        assert_eq!(inference[0].1["model"], "fallback-smol");

        runpod.assert_clean();
        huggingface.journal.assert_clean();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runpod_deploy_serves_through_the_gateway() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "runpodder").await;
    let deployed = deploy_runpod(&server, &runpod, &token, "rp-smol", 0).await;

    let endpoint = get_endpoint(&server, &token, &deployed.endpoint_id).await;
    assert_eq!(endpoint["status"], "active", "{endpoint}");
    let live = runpod.endpoint(&deployed.resource_id).unwrap();
    assert_eq!(live["workers"]["min"], 0, "scale to zero: {live}");
    assert_eq!(runpod.templates().len(), 1, "one template per endpoint");

    let (status, answer) = chat(&server, &deployed.api_key, &deployed.model).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        fake_runpod::REPLY
    );
    assert_eq!(
        answer["usage"]["completion_tokens"],
        fake_runpod::COMPLETION_TOKENS
    );
    assert_eq!(answer["model"], deployed.model, "the client's model name");
    assert_eq!(runpod.openai_requests(&deployed.resource_id), 1);
    assert_eq!(
        runpod.jobs_journal.count(
            "POST",
            &format!("/v2/{}/openai/v1/chat/completions", deployed.resource_id)
        ),
        1
    );
    runpod.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_fails_when_every_option_fails() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    runpod.set_no_capacity(true);
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "unlucky").await;
    let mut events = SseEvents::open(&server, &token).await;
    let endpoint_id = start_deploy(
        &server,
        &token,
        json!({"model_id": MODEL_ID, "model_name": "nowhere", "budget": "minimum_cost"}),
    )
    .await;
    let seen = events.until("DEPLOYMENT_FAILED").await;
    assert!(of_type(&seen, "DEPLOYMENT_COMPLETE").is_empty(), "{seen:?}");
    let failed = seen.last().unwrap();
    assert_eq!(failed["endpoint_id"], endpoint_id.as_str());
    let message = failed["error"].as_str().unwrap().to_owned();
    assert!(message.starts_with("every option failed"), "{message}");
    assert!(message.contains("runpod"), "{message}");

    let done = wait_for_job(&server, &token, &endpoint_id, "failed").await;
    assert_eq!(done["deployment"]["error"], message.as_str(), "{done}");
    assert_eq!(done["api_key"], Value::Null, "no key for a failed deploy");
    let attempts = done["deployment"]["attempts"].as_array().unwrap();
    assert!(attempts.len() > 1, "every RunPod option was tried: {done}");
    assert!(
        attempts
            .iter()
            .all(|attempt| attempt["provider"] == "runpod"
                && attempt["code"] == "provider_no_capacity"),
        "{done}"
    );
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(attempts.len())
    );

    let endpoint = get_endpoint(&server, &token, &endpoint_id).await;
    assert_eq!(endpoint["status"], "error", "{endpoint}");
    assert_eq!(endpoint["error_message"], message.as_str(), "{endpoint}");
    let changed = of_type(&seen, "ENDPOINT_STATUS_CHANGED");
    assert_eq!(changed.len(), 1, "{seen:?}");
    assert_eq!(changed[0]["status"], "error");
    assert_eq!(changed[0]["previous_status"], "provisioning");

    assert_eq!(runpod.endpoints(), Vec::<Value>::new());
    assert_eq!(runpod.templates(), Vec::<Value>::new());
    assert_eq!(
        runpod.journal.count("POST", "/v2/serverless"),
        attempts.len()
    );
    assert_eq!(
        runpod.journal.count("POST", "/v2/templates"),
        runpod.journal.count("DELETE", "/v2/templates/"),
        "every template of a refused create was deleted"
    );
    runpod.assert_clean();
}

on_both_backends!(
    the_reconcile_loop_deletes_orphans_only,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let runpod = FakeRunPod::start().await;
        let server = TestServer::start_with(
            backend,
            options(
                &hub,
                Setup {
                    runpod: Some(runpod.config()),
                    reconcile_interval: Some(Duration::from_secs(1)),
                    ..Setup::default()
                },
            ),
        )
        .await;
        let (_, token) = funded_user(&server, "reconciler").await;
        let live = deploy_runpod(&server, &runpod, &token, "kept", 0).await;
        let foreign = runpod.add_foreign_endpoint(FOREIGN);
        let orphan = runpod.add_foreign_endpoint(ORPHAN);

        eventually(
            Duration::from_secs(10),
            "the orphan was not deleted",
            || runpod.endpoint(&orphan).is_none(),
        )
        .await;
        // Two more passes: what belongs to someone stays.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(
            runpod.endpoint(&foreign).is_some(),
            "a foreign endpoint was deleted"
        );
        assert!(
            runpod.endpoint(&live.resource_id).is_some(),
            "a live endpoint's resource was deleted"
        );
        assert_eq!(
            runpod.templates().len(),
            1,
            "the live endpoint's template stays"
        );
        assert_eq!(
            runpod
                .journal
                .count("DELETE", &format!("/v2/serverless/{orphan}")),
            1
        );
        assert_eq!(
            runpod
                .journal
                .count("DELETE", &format!("/v2/serverless/{foreign}")),
            0
        );
        assert_eq!(
            runpod
                .journal
                .count("DELETE", &format!("/v2/serverless/{}", live.resource_id)),
            0
        );
        let (status, answer) = chat(&server, &live.api_key, &live.model).await;
        assert_eq!(status, 200, "{answer}");
        runpod.assert_clean();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_loop_deletes_orphaned_runpod_templates() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                reconcile_interval: Some(Duration::from_secs(1)),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "templates").await;
    let live = deploy_runpod(&server, &runpod, &token, "templated", 0).await;
    let live_template = runpod.templates()[0]["id"].as_str().unwrap().to_owned();
    // A create that stopped after its template (a crash before the endpoint)
    // leaves a `sy-` template that no endpoint is bound to and no job names.
    let orphan = runpod.add_unbound_template(ORPHAN);
    let foreign = runpod.add_unbound_template(FOREIGN);
    eventually(
        Duration::from_secs(10),
        "an orphaned sy- template is never deleted (RunPod's list_managed lists endpoints only)",
        || {
            runpod
                .templates()
                .iter()
                .all(|template| template["id"] != orphan.as_str())
        },
    )
    .await;
    let left: Vec<String> = runpod
        .templates()
        .iter()
        .map(|template| template["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(left.contains(&live_template), "{left:?}");
    assert!(left.contains(&foreign), "{left:?}");
    assert!(runpod.endpoint(&live.resource_id).is_some());
    runpod.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_applies_scaling_to_runpod_first() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "scaler").await;
    let deployed = deploy_runpod(&server, &runpod, &token, "scaled", 0).await;
    let path = format!("/api/v1/endpoints/{}", deployed.endpoint_id);
    let resource_path = format!("/v2/serverless/{}", deployed.resource_id);

    let (status, body) = server
        .call(
            reqwest::Method::PATCH,
            &path,
            &token,
            Some(json!({"min_workers": 1, "max_workers": 5, "idle_timeout_seconds": 120})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_updated"], true, "{body}");
    assert_eq!(body["endpoint"]["min_workers"], 1);
    assert_eq!(body["endpoint"]["max_workers"], 5);
    assert_eq!(body["endpoint"]["idle_timeout_seconds"], 120);
    assert_eq!(
        runpod.journal.bodies("PATCH", &resource_path),
        vec![json!({"workers": {"min": 1, "max": 5, "idleTimeout": 120}})]
    );
    assert_eq!(
        runpod.endpoint(&deployed.resource_id).unwrap()["workers"],
        json!({"min": 1, "max": 5, "idleTimeout": 120})
    );

    // A refusal (5xx or 4xx) is a 502 and changes nothing, here or there.
    let refusals = [
        (
            500,
            json!({"title": "Internal Server Error", "status": 500, "detail": "scheduler unavailable"}),
            "provider_server_error",
        ),
        (
            400,
            json!({"title": "Bad Request", "status": 400, "detail": "workers.max exceeds the account's worker quota", "errors": ["workers.max exceeds the account's worker quota"]}),
            "provider_rejected",
        ),
    ];
    for (attempt, (provider_status, problem, code)) in refusals.into_iter().enumerate() {
        runpod.fail_next_update(provider_status, problem);
        let (status, body) = server
            .call(
                reqwest::Method::PATCH,
                &path,
                &token,
                Some(json!({"min_workers": 2, "max_workers": 8, "idle_timeout_seconds": 300})),
            )
            .await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(
            runpod.journal.count("PATCH", &resource_path),
            2 + attempt,
            "one PATCH per request, not retried"
        );
        let endpoint = get_endpoint(&server, &token, &deployed.endpoint_id).await;
        assert_eq!(
            (
                &endpoint["min_workers"],
                &endpoint["max_workers"],
                &endpoint["idle_timeout_seconds"]
            ),
            (&json!(1), &json!(5), &json!(120)),
            "{endpoint}"
        );
        assert_eq!(
            runpod.endpoint(&deployed.resource_id).unwrap()["workers"],
            json!({"min": 1, "max": 5, "idleTimeout": 120})
        );
    }

    // A change that does not touch scaling does not call the provider.
    let (status, body) = server
        .call(
            reqwest::Method::PATCH,
            &path,
            &token,
            Some(json!({"description": "renamed only"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_updated"], false, "{body}");
    assert_eq!(runpod.journal.count("PATCH", &resource_path), 3);
    runpod.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_runpod_endpoint_and_template() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "deleter").await;
    let deployed = deploy_runpod(&server, &runpod, &token, "doomed", 0).await;
    assert_eq!(runpod.templates().len(), 1);

    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/endpoints/{}", deployed.endpoint_id),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_cleanup"], "queued", "{body}");
    // Keys are revoked at once, before the resource is gone.
    let (status, _) = chat(&server, &deployed.api_key, &deployed.model).await;
    assert_eq!(status, 401);
    eventually(
        Duration::from_secs(5),
        "the RunPod endpoint or template is still there",
        || runpod.endpoints().is_empty() && runpod.templates().is_empty(),
    )
    .await;
    assert_eq!(
        runpod.journal.count(
            "DELETE",
            &format!("/v2/serverless/{}", deployed.resource_id)
        ),
        1
    );
    runpod.assert_clean();
}

/// A WebSocket client of the events route.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn events_ws_url(server: &TestServer, query: &str) -> String {
    format!(
        "{}/api/v1/events{query}",
        server.url.replacen("http://", "ws://", 1)
    )
}

/// Connects with `?token=`; `since=0` replays the (new) user's events
/// published before the server subscribed the socket.
async fn connect_events(server: &TestServer, token: &str) -> Socket {
    let token: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let (socket, response) =
        tokio_tungstenite::connect_async(events_ws_url(server, &format!("?token={token}&since=0")))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// The next JSON text frame; `None` if nothing arrives within `wait`.
async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?;
        match message.expect("the socket is open").unwrap() {
            tungstenite::Message::Text(text) => {
                return Some(serde_json::from_str(text.as_str()).unwrap())
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_reach_only_their_user() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "watcher").await;
    let (_, other_token) = funded_user(&server, "bystander").await;

    // Without a valid token the upgrade is refused with a 401.
    for query in ["", "?token=sym_not-a-real-token"] {
        match tokio_tungstenite::connect_async(events_ws_url(&server, query)).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{query}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], "invalid_token", "{body}");
            }
            Err(error) => panic!("{query}: expected a 401, got {error}"),
            Ok(_) => panic!("{query}: a socket without a valid token was accepted"),
        }
    }

    let mut mine = connect_events(&server, &token).await;
    let mut theirs = connect_events(&server, &other_token).await;
    let endpoint_id = start_deploy(
        &server,
        &token,
        json!({"model_id": MODEL_ID, "model_name": "ws-smol", "provider": "runpod"}),
    )
    .await;
    let mut seen = Vec::new();
    loop {
        let event = next_frame(&mut mine, Duration::from_secs(30))
            .await
            .expect("deploy events in time");
        assert_eq!(event["endpoint_id"], endpoint_id.as_str(), "{event}");
        let done = event["type"] == "DEPLOYMENT_COMPLETE";
        seen.push(event);
        if done {
            break;
        }
    }
    assert_eq!(seen[0]["type"], "DEPLOYMENT_STARTED", "{seen:?}");
    assert_eq!(seen[0]["model_name"], "ws-smol");
    assert_stage_order(&seen);
    let ids: Vec<u64> = seen
        .iter()
        .map(|event| event["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let complete = seen.last().unwrap();
    assert_eq!(complete["provider"], "runpod");
    let api_key = complete["api_key"]
        .as_str()
        .expect("the key in the first delivery")
        .to_owned();
    let done = wait_for_job(&server, &token, &endpoint_id, "succeeded").await;
    assert_eq!(done["api_key"], Value::Null, "the socket took the key");
    let (status, answer) = chat(&server, &api_key, "ws-smol").await;
    assert_eq!(status, 200, "{answer}");

    // The bystander's socket is live but got none of those: its first frame
    // is its own event, published after the deploy finished.
    let (own_endpoint, _) = server
        .create_endpoint_unchecked(&other_token, "bystander-model", "http://127.0.0.1:9/v1")
        .await;
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/endpoints/{own_endpoint}"),
            &other_token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let first = next_frame(&mut theirs, Duration::from_secs(5))
        .await
        .expect("the bystander's own event");
    assert_eq!(first["type"], "ENDPOINT_STATUS_CHANGED", "{first}");
    assert_eq!(first["endpoint_id"], own_endpoint.as_str(), "{first}");
    assert_eq!(first["previous_status"], Value::Null, "created: {first}");
    let second = next_frame(&mut theirs, Duration::from_secs(5))
        .await
        .expect("the bystander's termination event");
    assert_eq!(second["endpoint_id"], own_endpoint.as_str(), "{second}");
    assert_eq!(second["status"], "terminated", "{second}");
    assert_eq!(
        next_frame(&mut theirs, Duration::from_millis(300)).await,
        None
    );
    runpod.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_swaps_the_resource_while_the_gateway_serves() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "redeployer").await;
    // One warm worker: a new endpoint is ready only once its worker is placed.
    let deployed = deploy_runpod(&server, &runpod, &token, "swapped", 1).await;
    let old = deployed.resource_id.clone();
    let redeploy_path = format!("/api/v1/endpoints/{}/redeploy", deployed.endpoint_id);

    // The new endpoint waits for GPUs, so the redeploy stays in progress.
    runpod.set_throttled(true);
    let (status, body) = server.post(&redeploy_path, &token, json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deployment"]["kind"], "redeploy", "{body}");
    let (status, conflict) = server.post(&redeploy_path, &token, json!({})).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "deployment_in_progress");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, during) = server
            .get(
                &format!("/api/v1/endpoints/{}/deployment", deployed.endpoint_id),
                &token,
            )
            .await;
        let state = &during["deployment"]["state"];
        assert!(state == "queued" || state == "running", "{during}");
        if during["deployment"]["stage"] == "waiting_ready" {
            break;
        }
        assert!(Instant::now() < deadline, "{during}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runpod.endpoints().len(), 2, "old and new side by side");
    let new = runpod
        .endpoints()
        .into_iter()
        .map(|endpoint| endpoint["id"].as_str().unwrap().to_owned())
        .find(|id| *id != old)
        .unwrap();
    assert_eq!(runpod.worker_statuses(&new), vec!["THROTTLED"]);
    // The old endpoint serves meanwhile.
    let (status, answer) = chat(&server, &deployed.api_key, &deployed.model).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(runpod.openai_requests(&old), 1);
    runpod.set_throttled(false);
    let done = wait_for_job(&server, &token, &deployed.endpoint_id, "succeeded").await;
    assert_eq!(done["deployment"]["kind"], "redeploy", "{done}");
    assert_eq!(done["api_key"], Value::Null, "a redeploy issues no new key");
    let live: Vec<String> = runpod
        .endpoints()
        .into_iter()
        .map(|endpoint| endpoint["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live, vec![new.clone()], "only the new endpoint is left");
    assert_eq!(runpod.templates().len(), 1, "the old template went with it");
    let endpoint = get_endpoint(&server, &token, &deployed.endpoint_id).await;
    assert_eq!(endpoint["provider_endpoint_id"], new.as_str(), "{endpoint}");
    assert_eq!(endpoint["status"], "active", "{endpoint}");

    // The old endpoint was deleted only after the new one had been polled ready.
    let requests = runpod.journal.requests.lock().unwrap().clone();
    let last_poll_of_new = requests
        .iter()
        .rposition(|(method, path, _)| {
            method == "GET" && *path == format!("/v2/serverless/{new}/workers")
        })
        .expect("the new endpoint was polled");
    let delete_of_old = requests
        .iter()
        .position(|(method, path, _)| {
            method == "DELETE" && *path == format!("/v2/serverless/{old}")
        })
        .expect("the old endpoint was deleted");
    assert!(delete_of_old > last_poll_of_new, "{requests:?}");

    // The same key keeps working, now served by the new endpoint.
    let (status, answer) = chat(&server, &deployed.api_key, &deployed.model).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(runpod.openai_requests(&new), 1);
    runpod.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redeploys_accept_only_one() {
    let hub = fake_hub().await;
    let runpod = FakeRunPod::start().await;
    let server = TestServer::start_with(
        Backend::Sqlite,
        options(
            &hub,
            Setup {
                runpod: Some(runpod.config()),
                ..Setup::default()
            },
        ),
    )
    .await;
    let (_, token) = funded_user(&server, "racer").await;
    let deployed = deploy_runpod(&server, &runpod, &token, "raced", 1).await;
    runpod.set_throttled(true);
    let path = format!("/api/v1/endpoints/{}/redeploy", deployed.endpoint_id);
    let (first, second, third) = tokio::join!(
        server.post(&path, &token, json!({})),
        server.post(&path, &token, json!({})),
        server.post(&path, &token, json!({}))
    );
    let answers = [first, second, third];
    let accepted = answers.iter().filter(|(status, _)| *status == 202).count();
    assert_eq!(
        accepted, 1,
        "two redeploys of one endpoint ran at once (the in-progress check and the insert are not atomic): {answers:?}"
    );
    for (status, body) in answers.iter().filter(|(status, _)| *status != 202) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "deployment_in_progress", "{body}");
    }
    runpod.set_throttled(false);
    wait_for_job(&server, &token, &deployed.endpoint_id, "succeeded").await;
    let endpoint = get_endpoint(&server, &token, &deployed.endpoint_id).await;
    let live: Vec<Value> = runpod
        .endpoints()
        .into_iter()
        .map(|endpoint| endpoint["id"].clone())
        .collect();
    assert_eq!(
        live,
        vec![endpoint["provider_endpoint_id"].clone()],
        "no resource is left behind"
    );
    runpod.assert_clean();
}

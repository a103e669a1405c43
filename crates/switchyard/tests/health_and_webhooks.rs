//! The health monitor and outbound webhooks through the real server: a dead
//! self-hosted server is reported unhealthy and redeployed; out-of-memory
//! errors suggest a larger GPU; a low balance warns once; events reach a
//! subscribed URL signed, and a failed delivery is retried.

mod common;

#[allow(unused_imports)]
use common::deploy::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use common::{Backend, FakeUpstream, Options, TestServer};
use http::HeaderMap;
use serde_json::{json, Value};
use switchyard::config::Config;

fn options(hub: String) -> Options {
    let command = fake_server_command("");
    Options {
        configure: Some(Arc::new(move |config: &mut Config| {
            config.providers.hub.base_url = hub.clone();
            config.providers.self_hosted.command = Some(command.clone());
            config.providers.self_hosted.port_range = (23_000, 24_999);
            config.providers.self_hosted.log_dir = config.data_dir.join("self-hosted");
            config.deploy_poll_interval = Duration::from_millis(100);
            config.monitor.interval = Duration::from_millis(500);
            config.monitor.recovery_cooldown = Duration::from_secs(60);
            config.allow_private_webhooks = true;
            // The monitor reads the gateway's error figures: every failing
            // request here must reach the upstream once (no retries, no breaker).
            config.resilience.max_attempts = 1;
            config.resilience.breaker.failure_threshold = 1_000;
        })),
        ..Options::default()
    }
}

/// The pid of the one self-hosted server of a test server.
fn server_pid(server: &TestServer) -> Option<u32> {
    server_pids(server.data_dir.path()).first().copied()
}

async fn latest(server: &TestServer, token: &str, endpoint_id: &str) -> Value {
    server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
            token,
        )
        .await
        .1
}

async fn wait_until<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Receives webhook deliveries; the first `fail_first` answer 500.
#[derive(Default)]
struct Receiver {
    deliveries: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
    fail_first: Mutex<usize>,
}

async fn receiver() -> (String, Arc<Receiver>) {
    async fn hook(
        State(state): State<Arc<Receiver>>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> http::StatusCode {
        let mut fail = state.fail_first.lock().unwrap();
        state
            .deliveries
            .lock()
            .unwrap()
            .push((headers, body.to_vec()));
        if *fail > 0 {
            *fail -= 1;
            return http::StatusCode::INTERNAL_SERVER_ERROR;
        }
        http::StatusCode::NO_CONTENT
    }
    let state = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), state)
}

on_both_backends!(
    a_dead_server_is_unhealthy_and_redeployed,
    |backend: Backend| async move {
        let server = TestServer::start_with(backend, options(fake_hub().await)).await;
        let (user_id, token) = server.create_user("watched").await;
        server.add_credits(&user_id, 1000).await;
        let (status, accepted) = server
        .post("/api/v1/endpoints/deploy", &token, json!({"model_id": "acme/watched", "model_name": "watched", "provider": "self-hosted"}))
        .await;
        assert_eq!(status, 202, "{accepted}");
        let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
        wait_until("the deploy", 30, || {
        let (server, token, endpoint_id) = (&server, &token, &endpoint_id);
        async move { latest(server, token, endpoint_id).await["deployment"]["state"] == "succeeded" }
    })
    .await;
        let (status, health) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}/health"), &token)
            .await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["health"]["status"], "healthy", "{health}");
        assert_eq!(health["health"]["provider"]["reachable"], true);

        // Another user cannot see it.
        let (_, other) = server.create_user("nosy").await;
        let (status, _) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}/health"), &other)
            .await;
        assert_eq!(status, 404);

        let old_pid = server_pid(&server).unwrap();
        std::process::Command::new("kill")
            .args(["-KILL", &old_pid.to_string()])
            .status()
            .unwrap();
        wait_until("the process to die", 10, || async move {
            !process_alive(old_pid)
        })
        .await;
        let (_, health) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}/health"), &token)
            .await;
        assert_eq!(health["health"]["status"], "unhealthy", "{health}");
        assert!(
            health["health"]["issues"][0]
                .as_str()
                .unwrap()
                .starts_with("endpoint not reachable"),
            "{health}"
        );

        // The monitor redeploys it: a new process serves the same endpoint.
        wait_until("the recovery redeploy", 40, || {
            let (server, token, endpoint_id) = (&server, &token, &endpoint_id);
            async move {
                let job = latest(server, token, endpoint_id).await;
                job["deployment"]["kind"] == "redeploy" && job["deployment"]["state"] == "succeeded"
            }
        })
        .await;
        let new_pid = server_pid(&server).unwrap();
        assert_ne!(new_pid, old_pid);
        assert!(process_alive(new_pid));
        let (status, health) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}/health"), &token)
            .await;
        assert_eq!(
            (status, health["health"]["status"].as_str()),
            (200, Some("healthy")),
            "{health}"
        );
        let events = server.state().events.replay(&user_id, 0);
        let alerts: Vec<Value> = events
            .iter()
            .filter(|event| event.kind == switchyard::events::EventKind::EndpointHealthAlert)
            .map(|event| serde_json::from_str(&event.json).unwrap())
            .collect();
        assert!(
            alerts
                .iter()
                .any(|alert| alert["health"]["status"] == "unhealthy"),
            "{alerts:?}"
        );
        assert!(
            alerts
                .iter()
                .any(|alert| alert["health"]["recovery"][0]["action"] == "redeploy"),
            "{alerts:?}"
        );
        let (status, _) = server
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{endpoint_id}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, 200);
        wait_until("the process to stop", 20, || async move {
            !process_alive(new_pid)
        })
        .await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_errors_suggest_a_larger_gpu_and_low_credits_warn_once() {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start_with(Backend::Sqlite, options(fake_hub().await)).await;
    let (user_id, token) = server.create_user("oom").await;
    server.add_credits(&user_id, 50).await;
    let (status, created) = server
        .post(
            "/api/v1/endpoints",
            &token,
            json!({"name": "big", "modality": "llm", "gpu_type": "L4",
            "upstream": {"base_url": upstream.url("oom"), "model": "fake-model"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let endpoint_id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let response = server.chat(&key, "big", false).await;
        assert_eq!(response.status(), 500);
    }
    server.settle().await;
    let (_, health) = server
        .get(&format!("/api/v1/endpoints/{endpoint_id}/health"), &token)
        .await;
    assert_eq!(health["health"]["status"], "degraded", "{health}");
    assert_eq!(health["health"]["gateway"]["out_of_memory_errors"], 3);
    assert!(
        health["health"]["issues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|issue| issue.as_str().unwrap().starts_with("CUDA out of memory")),
        "{health}"
    );
    // The monitor alerts with the next larger GPU (L4 has 24 GB: A100-40GB).
    wait_until("the alert", 10, || {
        let server = &server;
        let user_id = user_id.clone();
        async move {
            server
                .state()
                .events
                .replay(&user_id, 0)
                .iter()
                .any(|event| {
                    let document: Value = serde_json::from_str(&event.json).unwrap();
                    document["type"] == "ENDPOINT_HEALTH_ALERT"
                        && document["health"]["recovery"]
                            .as_array()
                            .is_some_and(|actions| {
                                actions.iter().any(|action| {
                                    action["action"] == "suggest_larger_gpu"
                                        && action["suggested"] == "A100-40GB"
                                })
                            })
                })
        }
    })
    .await;
    // 50 credits is under the default threshold of 100: one warning, not one per tick.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let warnings = server
        .state()
        .events
        .replay(&user_id, 0)
        .iter()
        .filter(|event| event.kind == switchyard::events::EventKind::CreditsLowWarning)
        .count();
    assert_eq!(warnings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_webhooks_signed_and_failed_deliveries_are_retried() {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start_with(Backend::Sqlite, options(fake_hub().await)).await;
    let tenant = server.tenant("hooked", &upstream.url("v1")).await;
    let (url, received) = receiver().await;
    *received.fail_first.lock().unwrap() = 1;

    let (status, body) = server
        .post("/api/v1/webhooks", &tenant.token, json!({"url": "ftp://x"}))
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("url")),
        "{body}"
    );
    let (status, created) = server
        .post(
            "/api/v1/webhooks",
            &tenant.token,
            json!({"url": url, "events": ["ENDPOINT_STATUS_CHANGED"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, listed) = server.get("/api/v1/webhooks", &tenant.token).await;
    assert_eq!(listed["total"], 1);
    assert!(
        listed.to_string().find(&secret).is_none(),
        "the secret is shown once"
    );

    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/endpoints/{}", tenant.endpoint_id),
            &tenant.token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    wait_until("two deliveries (one failed, one retried)", 15, || {
        let received = received.clone();
        async move { received.deliveries.lock().unwrap().len() >= 2 }
    })
    .await;
    let deliveries = received.deliveries.lock().unwrap().clone();
    for (headers, body) in &deliveries {
        assert_eq!(headers["x-switchyard-event"], "ENDPOINT_STATUS_CHANGED");
        let timestamp: i64 = headers["x-switchyard-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        switchyard::api::deploy::verify_signature(&secret, headers, body, timestamp).unwrap();
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["endpoint_id"], tenant.endpoint_id);
        assert_eq!(event["status"], "terminated");
    }
    assert_eq!(
        deliveries[0].0["x-switchyard-delivery"], deliveries[1].0["x-switchyard-delivery"],
        "the retry is the same delivery"
    );
    // Without the opt-in, webhooks to this machine are refused.
    let locked = TestServer::start(Backend::Sqlite).await;
    let (_, token) = locked.create_user("locked").await;
    let (status, body) = locked
        .post("/api/v1/webhooks", &token, json!({"url": url}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("SWITCHYARD_WEBHOOK_ALLOW_PRIVATE"));
    let id = created["webhook"]["id"].as_str().unwrap();
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            &tenant.token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            &tenant.token,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

//! Deploy flows through the real server: `POST /api/v1/endpoints/deploy` and
//! the training-complete webhook end with a usable endpoint (the self-hosted
//! provisioner starts a real server process), the key is handed out once,
//! events arrive in stage order, a restart mid-deploy resumes the job
//! without a second resource, and termination stops the process.

mod common;

#[allow(unused_imports)]
use common::deploy::*;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Options, TestServer};
use serde_json::{json, Value};
use switchyard::config::Config;

/// Options with the self-hosted provisioner on the fake OpenAI server script.
fn options(
    hub: &str,
    ready_after: f64,
    data_dir: Option<std::path::PathBuf>,
    database_url: Option<String>,
) -> Options {
    let hub = hub.to_owned();
    let command = fake_server_command(&format!("--ready-after {ready_after}"));
    Options {
        data_dir,
        database_url,
        configure: Some(Arc::new(move |config: &mut Config| {
            config.providers.hub.base_url = hub.clone();
            config.providers.self_hosted.command = Some(command.clone());
            config.providers.self_hosted.port_range = (21_000, 22_999);
            config.providers.self_hosted.log_dir = config.data_dir.join("self-hosted");
            config.deploy_poll_interval = Duration::from_millis(100);
            config.job_lease = Duration::from_secs(2);
            config.training_webhook_secret = Some("webhook-secret-for-tests".to_owned());
        })),
        ..Options::default()
    }
}

on_both_backends!(
    deploy_from_a_model_id_ends_with_a_usable_endpoint,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let server = TestServer::start_with(backend, options(&hub, 0.5, None, None)).await;
        let (user_id, token) = server.create_user("deployer").await;
        server.add_credits(&user_id, 100).await;

        // The preview recommends from the price table; self-hosted is opt-in.
        let (status, preview) = server
            .get(
                &format!("/api/v1/endpoints/deploy/preview?model_id={MODEL_ID}"),
                &token,
            )
            .await;
        assert_eq!(status, 200, "{preview}");
        assert_eq!(preview["preview"]["model"]["parameters"], 134_515_008_u64);
        assert!(
            preview["preview"]["monthly_estimate"]["credits"].is_number(),
            "{preview}"
        );
        assert_eq!(
            preview["preview"]["deployable"], false,
            "no cloud provider is configured: {preview}"
        );
        let runpod = preview["preview"]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == "runpod")
            .unwrap()
            .clone();
        assert!(
            runpod["message"]
                .as_str()
                .unwrap()
                .contains("RUNPOD_API_KEY"),
            "{runpod}"
        );

        // Bad input is refused before anything is created.
        let (status, body) = server
            .post(
                "/api/v1/endpoints/deploy",
                &token,
                json!({"model_id": "not a model"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some("model_id")),
            "{body}"
        );
        let (status, body) = server
            .post(
                "/api/v1/endpoints/deploy",
                &token,
                json!({"model_id": MODEL_ID, "provider": "runpod"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("provider_unavailable")),
            "{body}"
        );

        // Events of this user only, from before the deploy.
        let events = server
            .http
            .get(format!("{}/api/v1/events", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);

        let (status, accepted) = server
            .post(
                "/api/v1/endpoints/deploy",
                &token,
                json!({"model_id": MODEL_ID, "model_name": "smol", "provider": "self-hosted"}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
        assert_eq!(accepted["status"], "provisioning");

        // Not usable until ready: the gateway says so.
        let mut stream = events.bytes_stream();
        let mut seen = Vec::new();
        let mut api_key = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let mut buffer = String::new();
        use futures_util::StreamExt;
        while api_key.is_none() {
            let chunk = tokio::time::timeout_at(deadline, stream.next())
                .await
                .expect("events in time")
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame = buffer[..end].to_owned();
                buffer.drain(..end + 2);
                let Some(data) = frame.lines().find_map(|line| line.strip_prefix("data: ")) else {
                    continue;
                };
                let event: Value = serde_json::from_str(data).unwrap();
                assert_eq!(
                    event["endpoint_id"], endpoint_id,
                    "only this user's events: {event}"
                );
                match event["type"].as_str().unwrap() {
                    "DEPLOYMENT_PROGRESS" => seen.push(event["stage"].as_str().unwrap().to_owned()),
                    "DEPLOYMENT_COMPLETE" => {
                        api_key = Some(event["api_key"].as_str().expect("the key, once").to_owned())
                    }
                    "DEPLOYMENT_FAILED" => panic!("deploy failed: {event}"),
                    _ => {}
                }
            }
        }
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
                seen.iter()
                    .position(|s| s == stage)
                    .unwrap_or_else(|| panic!("no {stage} in {seen:?}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "{seen:?}"
        );

        let body = wait_for_job(&server, &token, &endpoint_id, "succeeded").await;
        assert_eq!(
            body["api_key"],
            Value::Null,
            "the key was already handed out by the event"
        );
        assert_eq!(body["deployment"]["provider"], "self-hosted");
        let api_key = api_key.unwrap();
        let (status, answer) = chat(&server, &api_key, "smol").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "Hello from the self-hosted fake."
        );

        // PATCH keeps the limits; a self-hosted server is one process.
        let (status, patched) = server
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/endpoints/{endpoint_id}"),
                &token,
                Some(json!({"max_workers": 4})),
            )
            .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["endpoint"]["max_workers"], 4);

        // Terminating stops the process.
        let pids = server_pids(server.data_dir.path());
        assert_eq!(pids.len(), 1);
        assert!(process_alive(pids[0]));
        let (status, body) = server
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{endpoint_id}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["provider_cleanup"], "queued");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while process_alive(pids[0]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server process is still running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, _) = chat(&server, &api_key, "smol").await;
        assert_eq!(status, 401);
    }
);

on_both_backends!(
    a_training_webhook_deploys_once_per_training_job,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let server = TestServer::start_with(backend, options(&hub, 0.0, None, None)).await;
        let (user_id, token) = server.create_user("trainer").await;
        server.add_credits(&user_id, 100).await;
        let payload = json!({
            "training_job_id": "train-42", "user_id": user_id, "model_url": "https://huggingface.co/acme/smol-ft",
            "modality": "llm", "base_model_id": MODEL_ID, "model_name": "smol-ft", "provider": "self-hosted",
        });
        let body = serde_json::to_vec(&payload).unwrap();
        let send = |body: Vec<u8>, secret: &'static str| {
            let now = switchyard::domain::now_ms();
            let signature = switchyard::api::deploy::sign(secret, now, &body);
            server
                .http
                .post(format!("{}/api/v1/hooks/training-complete", server.url))
                .header("content-type", "application/json")
                .header("x-switchyard-timestamp", now.to_string())
                .header("x-switchyard-signature", signature)
                .body(body)
                .send()
        };
        let forged = send(body.clone(), "wrong-secret").await.unwrap();
        assert_eq!(forged.status(), 401);
        let first = send(body.clone(), "webhook-secret-for-tests")
            .await
            .unwrap();
        assert_eq!(first.status(), 202);
        let first: Value = first.json().await.unwrap();
        let again = send(body.clone(), "webhook-secret-for-tests")
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["endpoint_id"], first["endpoint_id"]);
        assert_eq!(again["duplicate"], true);
        let endpoint_id = first["endpoint_id"].as_str().unwrap();
        let done = wait_for_job(&server, &token, endpoint_id, "succeeded").await;
        let key = done["api_key"].as_str().expect("the key, once").to_owned();
        let (_, second) = server
            .get(
                &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
                &token,
            )
            .await;
        assert_eq!(second["api_key"], Value::Null);
        let (status, answer) = chat(&server, &key, "smol-ft").await;
        assert_eq!(status, 200, "{answer}");
        let (_, endpoint) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}"), &token)
            .await;
        assert_eq!(endpoint["endpoint"]["source_type"], "training");
        assert_eq!(endpoint["endpoint"]["base_model"], MODEL_ID);
        let (status, _) = server
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{endpoint_id}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
);

on_both_backends!(
    a_restart_mid_deploy_resumes_without_a_second_resource,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let data_dir = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(common::fresh_postgres_database().await),
        };
        // The server process takes 3 s to become healthy: the first server stops meanwhile.
        let mut first = TestServer::start_with(
            backend,
            options(
                &hub,
                3.0,
                Some(data_dir.path().to_owned()),
                database_url.clone(),
            ),
        )
        .await;
        let (user_id, token) = first.create_user("resumer").await;
        first.add_credits(&user_id, 100).await;
        let (status, accepted) = first
            .post(
                "/api/v1/endpoints/deploy",
                &token,
                json!({"model_id": MODEL_ID, "model_name": "resumed", "provider": "self-hosted"}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = first
                .get(
                    &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
                    &token,
                )
                .await;
            if body["deployment"]["stage"] == "waiting_ready" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.stop().await;
        assert_eq!(server_pids(data_dir.path()).len(), 1);

        let second = TestServer::start_with(
            backend,
            options(&hub, 3.0, Some(data_dir.path().to_owned()), database_url),
        )
        .await;
        let done = wait_for_job(&second, &token, &endpoint_id, "succeeded").await;
        let key = done["api_key"].as_str().expect("the key").to_owned();
        assert_eq!(
            server_pids(data_dir.path()).len(),
            1,
            "the resumed job found the server it had started"
        );
        let (status, answer) = chat(&second, &key, "resumed").await;
        assert_eq!(status, 200, "{answer}");
        let (status, _) = second
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{endpoint_id}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !server_pids(data_dir.path()).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server was not stopped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_need_credits_respect_private_repos_and_keep_secrets_from_servers() {
    let hub = fake_hub().await;
    let mut options = options(&hub, 0.0, None, None);
    let command = fake_server_command("--print-env");
    let base = options.configure.take().unwrap();
    options.configure = Some(Arc::new(move |config: &mut Config| {
        base(config);
        config.providers.self_hosted.command = Some(command.clone());
    }));
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let _stop = StopServers(server.data_dir.path().to_owned());
    let (user_id, token) = server.create_user("careful").await;

    // No credits: no deploy (a warm worker costs money).
    let body = json!({"model_id": MODEL_ID, "model_name": "careful", "provider": "self-hosted"});
    let (status, refused) = server
        .post("/api/v1/endpoints/deploy", &token, body.clone())
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (402, Some("insufficient_credits")),
        "{refused}"
    );
    server.add_credits(&user_id, 10).await;

    // A private repo read with the operator's token is not shown or deployed for a tenant.
    let (status, preview) = server
        .get(
            "/api/v1/endpoints/deploy/preview?model_id=private-org/secret-model",
            &token,
        )
        .await;
    assert_eq!(
        (status, preview["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{preview}"
    );
    let (status, accepted) = server
        .post(
            "/api/v1/endpoints/deploy",
            &token,
            json!({"model_id": "private-org/secret-model", "provider": "self-hosted"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let private_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
    let failed = wait_for_job(&server, &token, &private_id, "failed").await;
    assert!(
        failed["deployment"]["error"]
            .as_str()
            .unwrap()
            .contains("is private"),
        "{failed}"
    );
    assert!(
        server_pids(server.data_dir.path()).is_empty(),
        "nothing was started"
    );

    // A revision that is not a branch, tag or commit is refused.
    let mut bad = body.clone();
    bad["revision"] = json!("../../api/whoami");
    let (status, refused) = server.post("/api/v1/endpoints/deploy", &token, bad).await;
    assert_eq!(
        (status, refused["error"]["param"].as_str()),
        (400, Some("revision")),
        "{refused}"
    );

    // The server process gets PATH and its resource name, not the test's (or Switchyard's) environment.
    let (status, accepted) = server.post("/api/v1/endpoints/deploy", &token, body).await;
    assert_eq!(status, 202, "{accepted}");
    let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
    wait_for_job(&server, &token, &endpoint_id, "succeeded").await;
    let logs: String = std::fs::read_dir(server.data_dir.path().join("self-hosted"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .collect();
    let names: Vec<&str> = logs
        .lines()
        .find_map(|line| line.strip_prefix("ENV "))
        .expect("the server printed its environment")
        .split(' ')
        .collect();
    assert!(names.contains(&"PATH"), "{names:?}");
    assert!(names.contains(&"SWITCHYARD_RESOURCE"), "{names:?}");
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "cargo runs tests with CARGO_* variables: the check below would prove nothing"
    );
    assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "{names:?}");
    assert!(
        !names.iter().any(|name| name.starts_with("CARGO_")),
        "{names:?}"
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
}

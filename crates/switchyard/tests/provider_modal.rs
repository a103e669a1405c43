//! Contract tests of the Modal provisioner against a fake `modal` CLI (an
//! executable script that validates arguments and the generated app file)
//! and fake proxy-authenticated web endpoints.

mod common;

use std::time::Duration;

use common::fake_modal::{self, FakeModal};
use serde_json::{json, Value};
use switchyard::domain::{Modality, UpstreamApi};
use switchyard::providers::config::{ModalConfig, Secret};
use switchyard::providers::modal::Modal;
use switchyard::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, ProviderResource, Provisioner,
    ResourceState, Scaling,
};

fn modal(config: ModalConfig) -> Modal {
    Modal::new(config, reqwest::Client::new())
}

fn spec(resource_name: &str, gpu: &str, count: u32, min_workers: u32) -> DeploySpec {
    DeploySpec {
        endpoint_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        resource_name: resource_name.to_owned(),
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        revision: Some("a09a35458c702b33eeacc393d103063234e8bc28".to_owned()),
        served_model_name: "qwen-7b".to_owned(),
        modality: Modality::Llm,
        gpu: GpuChoice {
            name: gpu.to_owned(),
            count,
            vram_gb: 80,
        },
        scaling: Scaling {
            min_workers,
            max_workers: 3,
            idle_timeout_seconds: 300,
        },
        max_model_len: Some(8192),
        source_url: None,
    }
}

fn argv(call: &Value) -> Vec<String> {
    call["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_renders_the_app_deploys_it_and_reads_the_url() {
    let fake = FakeModal::start().await;
    let config = ModalConfig {
        environment: Some(fake_modal::ENVIRONMENT.to_owned()),
        ..fake.config()
    };
    let provisioner = modal(config);
    assert!(provisioner.availability().available);
    let name = "sy-00000000000000000001";
    let resource = provisioner.create(&spec(name, "H100", 2, 0)).await.unwrap();
    assert_eq!(resource.provider, ProviderKind::Modal);
    assert_eq!(resource.id, name);
    assert_eq!(
        resource.details["url"],
        format!("{}/{name}", fake.base_url())
    );
    assert!(resource.details["app_id"].starts_with("ap-"));

    let file = fake.work_dir().join(format!("{name}.py"));
    assert_eq!(resource.details["file"], file.to_string_lossy());
    let source = std::fs::read_to_string(&file).unwrap();
    assert!(source.contains("requires_proxy_auth=True"), "{source}");
    assert!(source.contains(r#"pip_install("vllm==0.23.0""#));
    let app = fake.app(name).unwrap();
    assert_eq!(app["environment"], fake_modal::ENVIRONMENT);
    assert_eq!(app["gpu"], "H100:2");
    assert_eq!(app["min_containers"], 0);
    assert_eq!(app["max_containers"], 3);
    assert_eq!(app["scaledown_window"], 300);
    assert_eq!(app["tensor_parallel_size"], 2);
    assert_eq!(app["served_model_name"], "qwen-7b");
    assert_eq!(app["revision"], "a09a35458c702b33eeacc393d103063234e8bc28");

    let calls = fake.cli_calls();
    assert_eq!(
        argv(&calls[0]),
        vec![
            "deploy",
            file.to_str().unwrap(),
            "--name",
            name,
            "-e",
            fake_modal::ENVIRONMENT
        ]
    );
    assert_eq!(
        argv(&calls[1]),
        vec!["app", "list", "--json", "-e", fake_modal::ENVIRONMENT]
    );
    assert!(calls
        .iter()
        .all(|call| call["token_id"] == fake_modal::TOKEN_ID && call["has_secret"] == true));
    fake.assert_clean();
}

#[tokio::test]
async fn status_goes_from_starting_to_ready_and_never_wakes_a_scaled_down_app() {
    let fake = FakeModal::start().await;
    fake.set_health_ready_after(2);
    let provisioner = modal(fake.config());
    let name = "sy-00000000000000000002";
    let resource = provisioner.create(&spec(name, "L4", 1, 1)).await.unwrap();

    let mut states = Vec::new();
    let mut upstream = None;
    for _ in 0..4 {
        let status = provisioner.status(&resource).await.unwrap();
        states.push(status.state.clone());
        if status.state == ResourceState::Ready {
            assert_eq!(status.workers.ready, 1);
            upstream = status.upstream;
            break;
        }
        assert_eq!(status.workers.initializing, 1);
        assert!(status.upstream.is_none());
    }
    assert_eq!(
        states,
        vec![
            ResourceState::Initializing,
            ResourceState::Initializing,
            ResourceState::Ready
        ]
    );
    let upstream = upstream.unwrap();
    assert_eq!(upstream.base_url, format!("{}/{name}/v1", fake.base_url()));
    assert_eq!(upstream.api, UpstreamApi::OpenAi);
    assert_eq!(upstream.model, "qwen-7b");
    assert_eq!(
        upstream.headers,
        vec![
            ("modal-key".to_owned(), fake_modal::PROXY_KEY.to_owned()),
            (
                "modal-secret".to_owned(),
                fake_modal::PROXY_SECRET.to_owned()
            )
        ]
    );
    let health = provisioner.health(&resource).await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.workers.running, 1);

    let client = reqwest::Client::new();
    let call = |stream: bool| {
        let mut request = client.post(format!("{}/chat/completions", upstream.base_url));
        for (header, value) in &upstream.headers {
            request = request.header(header, value);
        }
        request
            .json(&json!({"model": upstream.model, "messages": [{"role": "user", "content": "Hi"}],
                          "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }}))
            .send()
    };
    let answer: Value = call(false).await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["usage"]["total_tokens"],
        fake_modal::PROMPT_TOKENS + fake_modal::COMPLETION_TOKENS
    );
    let events = call(true).await.unwrap().text().await.unwrap();
    assert!(events.contains(r#""usage""#) && events.ends_with("data: [DONE]\n\n"));

    // Containers gone: scaled to zero, reported without a health probe.
    fake.set_tasks(name, 0);
    let probes = fake.journal.count("GET", &format!("/{name}/health"));
    let status = provisioner.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::ScaledToZero);
    assert!(status.upstream.is_some());
    let health = provisioner.health(&resource).await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.workers.running, 0);
    assert_eq!(
        fake.journal.count("GET", &format!("/{name}/health")),
        probes
    );
    fake.assert_clean();
}

#[tokio::test]
async fn the_web_endpoint_needs_the_proxy_token() {
    let fake = FakeModal::start().await;
    let name = "sy-00000000000000000003";
    let resource = modal(fake.config())
        .create(&spec(name, "A10G", 1, 1))
        .await
        .unwrap();
    let answer = reqwest::get(format!("{}/health", resource.details["url"]))
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer.text().await.unwrap(),
        "modal-http: missing credentials for proxy authorization"
    );
    let wrong = modal(ModalConfig {
        proxy_token_secret: Some(Secret::new("ws-wrong")),
        ..fake.config()
    });
    let error = wrong.status(&resource).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn update_scaling_renders_again_and_redeploys() {
    let fake = FakeModal::start().await;
    let provisioner = modal(fake.config());
    let name = "sy-00000000000000000004";
    let resource = provisioner
        .create(&spec(name, "A100-80GB", 1, 0))
        .await
        .unwrap();
    let file = fake.work_dir().join(format!("{name}.py"));
    let before = std::fs::read_to_string(&file).unwrap();
    let app_id = fake.app(name).unwrap()["app_id"].clone();
    provisioner
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 1,
                max_workers: 5,
                idle_timeout_seconds: 120,
            },
        )
        .await
        .unwrap();
    let after = std::fs::read_to_string(&file).unwrap();
    assert_ne!(before, after);
    assert!(after.contains("min_containers=1,") && after.contains("max_containers=5,"));
    let app = fake.app(name).unwrap();
    assert_eq!(app["deploys"], 2);
    assert_eq!(app["app_id"], app_id);
    assert_eq!(app["scaledown_window"], 120);
    assert_eq!(app["gpu"], "A100-80GB");
    let deploys = fake
        .cli_calls()
        .iter()
        .filter(|call| call["argv"][0] == "deploy")
        .count();
    assert_eq!(deploys, 2);
    fake.assert_clean();
}

#[tokio::test]
async fn find_and_list_managed_use_the_app_list() {
    let fake = FakeModal::start().await;
    let provisioner = modal(fake.config());
    let first = provisioner
        .create(&spec("sy-00000000000000000005", "T4", 1, 0))
        .await
        .unwrap();
    provisioner
        .create(&spec("sy-00000000000000000006", "H100", 1, 0))
        .await
        .unwrap();
    fake.add_foreign_app("someone-elses-app");

    let found = provisioner.find(&first.name).await.unwrap().unwrap();
    assert_eq!(found, first);
    assert!(provisioner
        .find("sy-0000000000000000ffff")
        .await
        .unwrap()
        .is_none());
    let names: Vec<String> = provisioner
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .map(|resource| resource.name)
        .collect();
    assert_eq!(
        names,
        vec!["sy-00000000000000000005", "sy-00000000000000000006"]
    );

    // Without the record of the deploy (another machine), find answers None
    // so the retried create redeploys the same app name, and list still sees it.
    std::fs::remove_file(fake.work_dir().join("sy-00000000000000000005.json")).unwrap();
    assert!(provisioner.find(&first.name).await.unwrap().is_none());
    let listed = provisioner.list_managed().await.unwrap();
    assert_eq!(listed[0].details["app_id"], first.details["app_id"]);
    let again = provisioner
        .create(&spec("sy-00000000000000000005", "T4", 1, 0))
        .await
        .unwrap();
    assert_eq!(again.details["app_id"], first.details["app_id"]);
    assert_eq!(fake.apps().len(), 3);
    fake.assert_clean();
}

#[tokio::test]
async fn delete_stops_the_app_and_a_second_delete_is_fine() {
    let fake = FakeModal::start().await;
    let provisioner = modal(fake.config());
    let name = "sy-00000000000000000007";
    let resource = provisioner.create(&spec(name, "L4", 1, 0)).await.unwrap();
    provisioner.delete(&resource).await.unwrap();
    assert!(fake.app(name).is_none());
    assert_eq!(fake.apps()[0]["state"], "stopped");
    assert!(!fake.work_dir().join(format!("{name}.py")).exists());
    let status = provisioner.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Gone);
    assert!(!provisioner.health(&resource).await.unwrap().reachable);
    assert!(provisioner.find(name).await.unwrap().is_none());
    assert!(provisioner.list_managed().await.unwrap().is_empty());
    provisioner.delete(&resource).await.unwrap();
    let stops: Vec<Vec<String>> = fake
        .cli_calls()
        .iter()
        .map(argv)
        .filter(|argv| argv[..2] == ["app", "stop"])
        .collect();
    assert_eq!(
        stops,
        vec![vec!["app", "stop", name], vec!["app", "stop", name]]
    );
    fake.assert_clean();
}

#[tokio::test]
async fn cli_failures_become_process_and_unauthorized_errors() {
    let fake = FakeModal::start().await;
    let provisioner = modal(fake.config());
    fake.fail_next_deploy(
        1,
        "Building image im-x\nError: Image build for im-x failed: pip exited with status 1",
    );
    let error = provisioner
        .create(&spec("sy-00000000000000000008", "L4", 1, 0))
        .await
        .unwrap_err();
    match &error {
        ProviderError::Process { message, .. } => {
            assert!(message.contains("exited with 1"), "{message}");
            assert!(message.contains("pip exited with status 1"), "{message}");
        }
        other => panic!("expected a process error, got {other:?}"),
    }

    let wrong = modal(ModalConfig {
        token_secret: Some(Secret::new("as-wrong")),
        ..fake.config()
    });
    let error = wrong
        .create(&spec("sy-00000000000000000009", "L4", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { .. }),
        "{error:?}"
    );

    let slow = modal(ModalConfig {
        cli_timeout: Duration::from_millis(400),
        ..fake.config()
    });
    fake.hang_next_deploy(5);
    let error = slow
        .create(&spec("sy-00000000000000000010", "L4", 1, 0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("did not finish"), "{error}");

    let missing = modal(ModalConfig {
        cli: fake
            .work_dir()
            .join("no-such-modal")
            .to_string_lossy()
            .into_owned(),
        ..fake.config()
    });
    let error = missing.list_managed().await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Process { message, .. } if message.contains("pip install modal")),
        "{error:?}"
    );
    assert!(fake.apps().is_empty());
    fake.assert_clean();
}

#[tokio::test]
async fn gpus_modal_does_not_offer_are_unsupported() {
    let fake = FakeModal::start().await;
    let provisioner = modal(fake.config());
    for (gpu, count) in [("RTX4090", 1), ("RTX3090", 1), ("A10G", 8)] {
        let error = provisioner
            .create(&spec("sy-00000000000000000011", gpu, count, 0))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Unsupported { .. }),
            "{gpu}: {error:?}"
        );
    }
    assert!(fake.cli_calls().is_empty());
    fake.assert_clean();
}

#[tokio::test]
async fn missing_tokens_make_it_unavailable_and_calls_not_configured() {
    let fake = FakeModal::start().await;
    let provisioner = modal(ModalConfig {
        token_id: None,
        token_secret: None,
        ..fake.config()
    });
    let availability = provisioner.availability();
    assert!(!availability.available);
    let message = availability.message.unwrap();
    assert!(
        message.contains("MODAL_TOKEN_ID") && message.contains("MODAL_TOKEN_SECRET"),
        "{message}"
    );
    assert!(!message.contains("PROXY"), "{message}");
    let error = provisioner
        .create(&spec("sy-00000000000000000012", "L4", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::NotConfigured { .. }),
        "{error:?}"
    );

    let no_proxy = modal(ModalConfig {
        proxy_token_id: None,
        ..fake.config()
    });
    let availability = no_proxy.availability();
    assert!(!availability.available);
    let message = availability.message.unwrap();
    assert!(
        message.contains("SWITCHYARD_MODAL_PROXY_TOKEN_ID")
            && message.contains("SWITCHYARD_MODAL_PROXY_TOKEN_SECRET"),
        "{message}"
    );
    let ghost = ProviderResource {
        provider: ProviderKind::Modal,
        id: "sy-00000000000000000012".to_owned(),
        name: "sy-00000000000000000012".to_owned(),
        details: Default::default(),
    };
    assert!(matches!(
        no_proxy.status(&ghost).await.unwrap_err(),
        ProviderError::NotConfigured { .. }
    ));
    assert!(matches!(
        no_proxy.delete(&ghost).await.unwrap_err(),
        ProviderError::NotConfigured { .. }
    ));
    assert!(fake.cli_calls().is_empty());
    fake.assert_clean();
}

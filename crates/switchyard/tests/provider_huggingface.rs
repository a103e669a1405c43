//! Contract tests of the Hugging Face Inference Endpoints provisioner against a fake that checks every request against the fixture spec.

mod common;

use std::time::{Duration, Instant};

use common::fake_huggingface::{FakeHuggingFace, NAMESPACE, TOKEN, VLLM_IMAGE};
use serde_json::{json, Value};
use switchyard::domain::{Modality, UpstreamApi};
use switchyard::providers::config::Secret;
use switchyard::providers::huggingface::{HuggingFace, MANAGED_TAG};
use switchyard::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, ProviderResource, Provisioner,
    ResourceState, Scaling,
};

const NAME: &str = "sy-0123456789abcdef0123";

fn spec(name: &str) -> DeploySpec {
    DeploySpec {
        endpoint_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        resource_name: name.to_owned(),
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        revision: Some("a09a35458c702b33eeacc393d103063234e8bc28".to_owned()),
        served_model_name: "qwen-7b".to_owned(),
        modality: Modality::Llm,
        gpu: GpuChoice {
            name: "L4".to_owned(),
            count: 1,
            vram_gb: 24,
        },
        scaling: Scaling {
            min_workers: 0,
            max_workers: 2,
            idle_timeout_seconds: 290,
        },
        max_model_len: Some(8192),
        source_url: None,
    }
}

fn provisioner(fake: &FakeHuggingFace) -> HuggingFace {
    HuggingFace::new(fake.config(), reqwest::Client::new())
}

/// Creates the endpoint and polls until it is ready.
async fn ready(fake: &FakeHuggingFace, hf: &HuggingFace, name: &str) -> ProviderResource {
    let resource = hf.create(&spec(name)).await.unwrap();
    for _ in 0..10 {
        if hf.status(&resource).await.unwrap().state == ResourceState::Ready {
            return resource;
        }
    }
    panic!("never ready: {:?}", fake.endpoint(name));
}

#[tokio::test]
async fn create_sends_a_private_scale_to_zero_vllm_endpoint() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    assert_eq!(resource.provider, ProviderKind::HuggingFace);
    assert_eq!(resource.id, NAME);
    assert_eq!(resource.name, NAME);
    assert_eq!(resource.details["namespace"], NAMESPACE);
    assert_eq!(resource.details["model"], "qwen-7b");

    let requests = fake.journal.requests.lock().unwrap().clone();
    let calls: Vec<(String, String)> = requests
        .iter()
        .map(|(method, path, _)| (method.clone(), path.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET".to_owned(), format!("/v2/provider/{NAMESPACE}")),
            ("POST".to_owned(), format!("/v2/endpoint/{NAMESPACE}")),
        ]
    );
    let body = &requests[1].2;
    assert_eq!(
        *body,
        json!({
            "name": NAME,
            "type": "private",
            "provider": {"vendor": "aws", "region": "us-east-1"},
            "compute": {
                "accelerator": "gpu",
                "instanceType": "nvidia-l4",
                "instanceSize": "x1",
                "scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 5,
                            "measure": {"pendingRequests": 2}},
            },
            "model": {
                "repository": "Qwen/Qwen2.5-7B-Instruct",
                "revision": "a09a35458c702b33eeacc393d103063234e8bc28",
                "framework": "pytorch",
                "task": "text-generation",
                "image": {"vLLM": {"url": VLLM_IMAGE, "port": 8000, "healthRoute": "/health",
                                   "tensorParallelSize": 1}},
                "args": ["--served-model-name", "qwen-7b", "--max-model-len", "8192"],
            },
            "tags": [MANAGED_TAG],
        })
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn gpus_map_to_instance_types_and_embeddings_to_feature_extraction() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let mut big = spec("sy-a100a100a100a100a100");
    big.gpu = GpuChoice {
        name: "A100-40GB".to_owned(),
        count: 2,
        vram_gb: 40,
    };
    big.revision = None;
    big.max_model_len = None;
    hf.create(&big).await.unwrap();
    let mut embed = spec("sy-rtx4090rtx4090rtx40");
    embed.gpu.name = "RTX4090".to_owned();
    embed.modality = Modality::Embedding;
    embed.model_id = "BAAI/bge-small-en-v1.5".to_owned();
    embed.served_model_name = "bge-small".to_owned();
    hf.create(&embed).await.unwrap();

    let bodies = fake
        .journal
        .bodies("POST", &format!("/v2/endpoint/{NAMESPACE}"));
    assert_eq!(bodies[0]["compute"]["instanceType"], "nvidia-a100");
    assert_eq!(bodies[0]["compute"]["instanceSize"], "x2");
    assert_eq!(bodies[0]["model"]["image"]["vLLM"]["tensorParallelSize"], 2);
    assert_eq!(bodies[0]["model"]["revision"], Value::Null);
    assert_eq!(
        bodies[0]["model"]["args"],
        json!(["--served-model-name", "qwen-7b"])
    );
    assert_eq!(bodies[1]["compute"]["instanceType"], "nvidia-l4");
    assert_eq!(bodies[1]["model"]["task"], "feature-extraction");

    let mut image = spec("sy-imageimageimageimag");
    image.modality = Modality::Image;
    let error = hf.create(&image).await.unwrap_err();
    assert_eq!(error.code(), "provider_unsupported", "{error}");
    let mut odd = spec("sy-oddoddoddoddoddoddo");
    odd.gpu.name = "MI300X".to_owned();
    let error = hf.create(&odd).await.unwrap_err();
    assert_eq!(error.code(), "provider_unsupported", "{error}");
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn status_walks_pending_initializing_running_and_gives_the_upstream() {
    let fake = FakeHuggingFace::start().await;
    fake.set_lifecycle(1, 2);
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    let mut states = Vec::new();
    for _ in 0..4 {
        let status = hf.status(&resource).await.unwrap();
        assert!(status.upstream.is_none() || status.state == ResourceState::Ready);
        states.push(status.state);
    }
    assert_eq!(
        states,
        vec![
            ResourceState::Pending,
            ResourceState::Initializing,
            ResourceState::Initializing,
            ResourceState::Ready,
        ]
    );
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Ready);
    assert_eq!(status.message.as_deref(), Some("Endpoint is ready"));
    assert_eq!(status.workers.ready, 1);
    let upstream = status.upstream.unwrap();
    assert_eq!(upstream.base_url, format!("{}/v1", fake.endpoint_url(NAME)));
    assert_eq!(upstream.api, UpstreamApi::OpenAi);
    assert_eq!(upstream.model, "qwen-7b");
    assert_eq!(
        upstream.headers,
        vec![("authorization".to_owned(), format!("Bearer {TOKEN}"))]
    );

    // The upstream answers OpenAI requests the way the gateway will send them.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/chat/completions", upstream.base_url))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"model": upstream.model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["usage"]["total_tokens"], 12);
    let models: Value = client
        .get(format!("{}/models", upstream.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "qwen-7b");
    assert_eq!(fake.inference_requests().len(), 1);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn an_idle_endpoint_is_scaled_to_zero_and_wakes_on_a_request() {
    let fake = FakeHuggingFace::start().await;
    fake.set_scale_to_zero_after(Some(1));
    let hf = provisioner(&fake);
    let resource = ready(&fake, &hf, NAME).await;
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::ScaledToZero);
    assert_eq!(status.workers.ready, 0);
    let upstream = status
        .upstream
        .expect("a scaled-to-zero endpoint is usable");

    let client = reqwest::Client::new();
    let chat = json!({"model": "qwen-7b", "messages": [{"role": "user", "content": "Hi"}], "stream": true,
                      "stream_options": {"include_usage": true}});
    let response = client
        .post(format!("{}/chat/completions", upstream.base_url))
        .bearer_auth(TOKEN)
        .header("x-scale-up-timeout", "600")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    assert!(events.contains("\"total_tokens\":12"), "{events}");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
    assert_eq!(fake.endpoint(NAME).unwrap()["status"]["state"], "running");

    // Without the hold header the proxy answers 503 while it scales up.
    fake.set_state(NAME, "scaledToZero");
    let response = client
        .post(format!("{}/chat/completions", upstream.base_url))
        .bearer_auth(TOKEN)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Initializing
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn running_is_ready_only_once_the_health_route_answers() {
    let fake = FakeHuggingFace::start().await;
    fake.set_lifecycle(0, 0);
    fake.set_health_status(503);
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(fake.endpoint(NAME).unwrap()["status"]["state"], "running");
    assert_eq!(status.state, ResourceState::Initializing);
    assert_eq!(
        status.message.as_deref(),
        Some("the health route answered 503")
    );
    assert!(status.upstream.is_none());
    fake.set_health_status(200);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn failed_deploys_and_failed_updates_are_failed() {
    let fake = FakeHuggingFace::start().await;
    fake.set_lifecycle(0, 0);
    fake.set_fail_deploys(Some("Model failed to load: CUDA out of memory"));
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Failed);
    assert_eq!(
        status.message.as_deref(),
        Some("Model failed to load: CUDA out of memory")
    );
    assert!(status.upstream.is_none());

    fake.set_fail_deploys(None);
    fake.set_fail_updates(true);
    let other = ready(&fake, &hf, "sy-updateupdateupdateu").await;
    let scaling = Scaling {
        min_workers: 1,
        max_workers: 1,
        idle_timeout_seconds: 600,
    };
    hf.update_scaling(&other, &scaling).await.unwrap();
    assert_eq!(
        hf.status(&other).await.unwrap().state,
        ResourceState::Updating
    );
    assert_eq!(
        hf.status(&other).await.unwrap().state,
        ResourceState::Failed
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn paused_endpoints_are_stopped_until_resumed() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = ready(&fake, &hf, NAME).await;
    let client = reqwest::Client::new();
    let action = |what: &str| {
        client
            .post(format!(
                "{}/v2/endpoint/{NAMESPACE}/{NAME}/{what}",
                fake.base_url()
            ))
            .bearer_auth(TOKEN)
            .send()
    };
    let resumed = action("resume").await.unwrap();
    assert_eq!(resumed.status(), 400);
    assert!(resumed.text().await.unwrap().contains("already running"));
    assert_eq!(action("pause").await.unwrap().status(), 200);
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Stopped);
    assert!(status.upstream.is_none());
    assert_eq!(action("resume").await.unwrap().status(), 200);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Initializing
    );
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );
    assert_eq!(action("scale-to-zero").await.unwrap().status(), 200);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::ScaledToZero
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn find_looks_the_endpoint_up_by_name() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    assert_eq!(hf.find(NAME).await.unwrap(), None);
    let created = hf.create(&spec(NAME)).await.unwrap();
    let found = hf.find(NAME).await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(found.details["namespace"], NAMESPACE);
    assert_eq!(found.details["model"], "qwen-7b");
    assert_eq!(
        fake.journal
            .count("GET", &format!("/v2/endpoint/{NAMESPACE}/{NAME}")),
        2
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_create_whose_name_is_taken_returns_the_existing_endpoint() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let first = hf.create(&spec(NAME)).await.unwrap();
    let second = hf.create(&spec(NAME)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn update_scaling_sends_a_partial_put() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = ready(&fake, &hf, NAME).await;
    let scaling = Scaling {
        min_workers: 1,
        max_workers: 3,
        idle_timeout_seconds: 1800,
    };
    hf.update_scaling(&resource, &scaling).await.unwrap();
    let bodies = fake
        .journal
        .bodies("PUT", &format!("/v2/endpoint/{NAMESPACE}/{NAME}"));
    assert_eq!(
        bodies,
        vec![
            json!({"compute": {"scaling": {"minReplica": 1, "maxReplica": 3,
            "scaleToZeroTimeout": 30, "measure": {"pendingRequests": 2}}}})
        ]
    );
    let endpoint = fake.endpoint(NAME).unwrap();
    assert_eq!(endpoint["compute"]["scaling"]["maxReplica"], 3);
    assert_eq!(endpoint["compute"]["instanceType"], "nvidia-l4");
    assert_eq!(endpoint["model"]["image"]["vLLM"]["url"], VLLM_IMAGE);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Updating
    );
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );

    let missing = ProviderResource {
        id: "sy-missingmissingmissi".to_owned(),
        ..resource
    };
    let error = hf.update_scaling(&missing, &scaling).await.unwrap_err();
    assert_eq!(error.code(), "provider_not_found", "{error}");
    fake.journal.assert_clean();
}

#[tokio::test]
async fn health_reports_reachability_and_replicas() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    let health = hf.health(&resource).await.unwrap();
    assert!(!health.reachable);
    assert_eq!(
        health.message.as_deref(),
        Some("Endpoint waiting to be scheduled")
    );
    hf.health(&resource).await.unwrap();
    let health = hf.health(&resource).await.unwrap();
    assert!(health.reachable, "{health:?}");
    assert_eq!(health.workers.ready, 1);
    assert_eq!(health.queue_depth, 0);

    fake.set_health_status(500);
    let health = hf.health(&resource).await.unwrap();
    assert!(!health.reachable);
    assert_eq!(
        health.message.as_deref(),
        Some("the health route answered 500")
    );

    fake.set_state(NAME, "scaledToZero");
    let health = hf.health(&resource).await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.workers.ready, 0);

    fake.set_state(NAME, "paused");
    assert!(!hf.health(&resource).await.unwrap().reachable);

    hf.delete(&resource).await.unwrap();
    let error = hf.health(&resource).await.unwrap_err();
    assert_eq!(error.code(), "provider_not_found", "{error}");
    fake.journal.assert_clean();
}

#[tokio::test]
async fn list_managed_returns_only_switchyard_endpoints() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    hf.create(&spec("sy-aaaaaaaaaaaaaaaaaaaa")).await.unwrap();
    hf.create(&spec("sy-bbbbbbbbbbbbbbbbbbbb")).await.unwrap();
    let mut foreign = spec("someone-elses-endpoint");
    foreign.served_model_name = "theirs".to_owned();
    hf.create(&foreign).await.unwrap();
    let mut names: Vec<String> = hf
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .map(|resource| resource.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["sy-aaaaaaaaaaaaaaaaaaaa", "sy-bbbbbbbbbbbbbbbbbbbb"]
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn delete_removes_the_endpoint_and_a_second_delete_is_ok() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    hf.delete(&resource).await.unwrap();
    assert!(fake.endpoint(NAME).is_none());
    hf.delete(&resource).await.unwrap();
    let status = hf.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Gone);
    assert_eq!(fake.journal.count("DELETE", "/v2/endpoint"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_bad_token_is_unauthorized() {
    let fake = FakeHuggingFace::start().await;
    let mut config = fake.config();
    config.token = Some(Secret::new("hf_wrong"));
    let hf = HuggingFace::new(config, reqwest::Client::new());
    let error = hf.find(NAME).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    let error = hf.create(&spec(NAME)).await.unwrap_err();
    assert_eq!(error.code(), "provider_unauthorized");
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 0);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    let resource = hf.create(&spec(NAME)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        fake.journal
            .count("GET", &format!("/v2/provider/{NAMESPACE}")),
        2
    );
    fake.rate_limit_next(1, 1);
    hf.update_scaling(&resource, &spec(NAME).scaling)
        .await
        .unwrap();
    assert_eq!(fake.journal.count("PUT", "/v2/endpoint"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_a_create_is_not_resent() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    let resource = hf.create(&spec(NAME)).await.unwrap();
    fake.fail_next_requests(1, 503);
    assert_eq!(
        hf.status(&resource).await.unwrap().state,
        ResourceState::Pending
    );
    let path = format!("/v2/endpoint/{NAMESPACE}/{NAME}");
    assert_eq!(fake.journal.count("GET", &path), 2);

    fake.fail_next_create(500, json!({"error": "Internal server error"}));
    let error = hf
        .create(&spec("sy-cccccccccccccccccccc"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 2);

    fake.fail_next_create(400, json!({"error": "model.task: unknown task"}));
    let error = hf
        .create(&spec("sy-dddddddddddddddddddd"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Rejected { status: 400, ref message, .. } if message == "model.task: unknown task"),
        "{error:?}"
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn hardware_the_catalog_cannot_give_is_no_capacity_without_a_create() {
    let fake = FakeHuggingFace::start().await;
    let hf = provisioner(&fake);
    fake.set_no_capacity(true);
    let error = hf.create(&spec(NAME)).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::NoCapacity { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("not_available"), "{error}");

    fake.set_no_capacity(false);
    let mut pair = spec(NAME);
    pair.gpu.count = 2;
    let error = hf.create(&pair).await.unwrap_err();
    assert!(
        error.to_string().contains("offers no nvidia-l4 x2"),
        "{error}"
    );

    fake.set_quota(4, 4);
    let error = hf.create(&spec(NAME)).await.unwrap_err();
    assert_eq!(error.code(), "provider_no_capacity");
    assert!(error.to_string().contains("quota"), "{error}");
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 0);

    fake.set_quota(4, 0);
    fake.set_compute_status("nvidia-l4", "low_availability");
    hf.create(&spec(NAME)).await.unwrap();
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_create_rejected_for_capacity_is_no_capacity() {
    let fake = FakeHuggingFace::start().await;
    fake.set_reject_creates_for_capacity(true);
    let hf = provisioner(&fake);
    let error = hf.create(&spec(NAME)).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::NoCapacity { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("Instance type nvidia-l4 x1 is not available in region us-east-1"),
        "{error}"
    );
    assert_eq!(fake.journal.count("POST", "/v2/endpoint"), 1);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn without_a_namespace_or_token_nothing_is_called() {
    let fake = FakeHuggingFace::start().await;
    let mut no_namespace = fake.config();
    no_namespace.namespace = None;
    let mut no_token = fake.config();
    no_token.token = None;
    let resource = ProviderResource {
        provider: ProviderKind::HuggingFace,
        id: NAME.to_owned(),
        name: NAME.to_owned(),
        details: Default::default(),
    };
    for config in [no_namespace, no_token] {
        let hf = HuggingFace::new(config, reqwest::Client::new());
        let availability = hf.availability();
        assert!(!availability.available);
        let message = availability.message.unwrap();
        assert!(
            message.contains("SWITCHYARD_HF_NAMESPACE") && message.contains("HF_TOKEN"),
            "{message}"
        );
        let errors = [
            hf.create(&spec(NAME)).await.unwrap_err(),
            hf.find(NAME).await.unwrap_err(),
            hf.status(&resource).await.unwrap_err(),
            hf.update_scaling(&resource, &spec(NAME).scaling)
                .await
                .unwrap_err(),
            hf.delete(&resource).await.unwrap_err(),
            hf.health(&resource).await.unwrap_err(),
            hf.list_managed().await.unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, ProviderError::NotConfigured { provider: ProviderKind::HuggingFace, ref message } if message.contains("SWITCHYARD_HF_NAMESPACE")),
                "{error:?}"
            );
        }
    }
    assert!(provisioner(&fake).availability().available);
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    fake.journal.assert_clean();
}

/// A way to break a valid create body, and why it must be rejected.
type Breakage = (&'static str, fn(&mut Value));

/// The fixture must be strict enough to catch the mistakes the docs warn about.
#[test]
fn the_fixture_rejects_bodies_the_docs_forbid() {
    let spec = common::spec::OpenApi::load_fixture("huggingface-endpoints.yaml");
    let path = format!("/v2/endpoint/{NAMESPACE}");
    let good = json!({
        "name": NAME, "type": "private",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {"accelerator": "gpu", "instanceType": "nvidia-l4", "instanceSize": "x1",
                    "scaling": {"minReplica": 0, "maxReplica": 1, "scaleToZeroTimeout": 15}},
        "model": {"repository": "gpt2", "revision": null, "framework": "pytorch",
                  "image": {"vLLM": {"url": VLLM_IMAGE, "port": 8000}}},
    });
    spec.validate_request("POST", &path, Some(&good)).unwrap();
    let broken: [Breakage; 9] = [
        ("task is not nullable", |body| {
            body["model"]["task"] = Value::Null
        }),
        ("names are lowercase", |body| {
            body["name"] = json!("SY-Upper")
        }),
        ("unknown access type", |body| body["type"] = json!("secret")),
        ("one engine only", |body| {
            body["model"]["image"]["tgi"] = json!({"url": "ghcr.io/huggingface/tgi"})
        }),
        ("unknown engine field", |body| {
            body["model"]["image"]["vLLM"]["tensorParallel"] = json!(2)
        }),
        ("maxReplica at least 1", |body| {
            body["compute"]["scaling"]["maxReplica"] = json!(0)
        }),
        ("timeout in whole minutes", |body| {
            body["compute"]["scaling"]["scaleToZeroTimeout"] = json!(0.5)
        }),
        ("unknown accelerator", |body| {
            body["compute"]["accelerator"] = json!("tpu")
        }),
        ("closed top level", |body| body["minReplica"] = json!(0)),
    ];
    for (why, breaks) in broken {
        let mut body = good.clone();
        breaks(&mut body);
        assert!(
            spec.validate_request("POST", &path, Some(&body)).is_err(),
            "{why}: {body}"
        );
    }
    let update = format!("{path}/{NAME}");
    spec.validate_request(
        "PUT",
        &update,
        Some(&json!({"compute": {"scaling": {"maxReplica": 2}}})),
    )
    .unwrap();
    assert!(spec
        .validate_request(
            "PUT",
            &update,
            Some(&json!({"compute": {"scaling": {"maxReplicas": 2}}}))
        )
        .is_err());
    assert!(spec
        .validate_request("PUT", &update, Some(&json!({})))
        .is_err());
    assert!(spec
        .validate_request("PATCH", &update, Some(&json!({"type": "private"})))
        .is_err());
    spec.validate_request("POST", &format!("{update}/pause"), None)
        .unwrap();
}

//! Contract tests of the Replicate provisioner against the fake Replicate API,
//! whose every request is validated by the fixture spec `replicate.yaml`.

mod common;

use std::time::{Duration, Instant};

use common::fake_replicate::{
    prediction_output, FakeReplicate, FAKE_HF_TOKEN, FAKE_OWNER, TRAINER_VERSION,
};
use common::spec::Journal;
use serde_json::{json, Value};
use switchyard::domain::{Modality, UpstreamApi};
use switchyard::providers::config::{ReplicateConfig, Secret};
use switchyard::providers::http::management_client;
use switchyard::providers::replicate::Replicate;
use switchyard::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, ProviderResource, Provisioner,
    ResourceState, Scaling,
};

const NAME: &str = "sy-0193a1b2c3d47e5f8a9b";

fn spec(name: &str, gpu: &str, count: u32, min_workers: u32) -> DeploySpec {
    DeploySpec {
        endpoint_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        resource_name: name.to_owned(),
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        revision: None,
        served_model_name: "qwen-7b".to_owned(),
        modality: Modality::Llm,
        gpu: GpuChoice {
            name: gpu.to_owned(),
            count,
            vram_gb: 24,
        },
        scaling: Scaling {
            min_workers,
            max_workers: 2,
            idle_timeout_seconds: 300,
        },
        max_model_len: Some(8192),
        source_url: None,
    }
}

fn provisioner(fake: &FakeReplicate) -> Replicate {
    Replicate::new(fake.config(), management_client())
}

/// Bodies of the requests to exactly `method path`.
fn bodies_at(journal: &Journal, method: &str, path: &str) -> Vec<Value> {
    journal
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == method && p == path)
        .map(|(_, _, body)| body.clone())
        .collect()
}

/// Creates the resource and polls `status` until it can take requests.
async fn deploy(replicate: &Replicate, spec: &DeploySpec) -> ProviderResource {
    let resource = replicate.create(spec).await.unwrap();
    for _ in 0..10 {
        let status = replicate.status(&resource).await.unwrap();
        if status.state.is_usable() {
            return resource;
        }
        assert_eq!(status.state, ResourceState::Initializing, "{status:?}");
    }
    panic!("{} never became usable", resource.id);
}

#[tokio::test]
async fn create_makes_a_private_model_and_starts_a_training() {
    let fake = FakeReplicate::start().await;
    let replicate = provisioner(&fake);
    let resource = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap();

    assert_eq!(resource.provider, ProviderKind::Replicate);
    assert_eq!(resource.id, format!("{FAKE_OWNER}/{NAME}"));
    assert_eq!(resource.name, NAME);
    assert_eq!(resource.details["owner"], FAKE_OWNER);
    assert_eq!(resource.details["model"], resource.id);
    assert_eq!(resource.details["hardware"], "gpu-a40-small");
    assert_eq!(resource.details["min_instances"], "0");
    assert_eq!(resource.details["max_instances"], "2");
    let training_id = &resource.details["training_id"];

    let models = bodies_at(&fake.journal, "POST", "/v1/models");
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["owner"], FAKE_OWNER);
    assert_eq!(models[0]["name"], NAME);
    assert_eq!(models[0]["visibility"], "private");
    assert_eq!(models[0]["hardware"], "gpu-a40-small");
    let model = fake.model(&resource.id).unwrap();
    assert_eq!(model["visibility"], "private");
    assert_eq!(model["latest_version"], Value::Null);

    assert_eq!(fake.journal.count("GET", "/v1/models/replicate/vllm"), 1);
    let trainings = fake.journal.bodies(
        "POST",
        &format!("/v1/models/replicate/vllm/versions/{TRAINER_VERSION}/trainings"),
    );
    assert_eq!(
        trainings,
        vec![json!({"destination": resource.id,
                    "input": {"hf_model_id": "Qwen/Qwen2.5-7B-Instruct", "hf_token": FAKE_HF_TOKEN}})]
    );
    let training = fake.training(training_id).unwrap();
    assert_eq!(training["status"], "starting");
    assert!(bodies_at(&fake.journal, "POST", "/v1/deployments").is_empty());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn status_follows_the_training_then_creates_the_deployment_once() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(3);
    let replicate = provisioner(&fake);
    let resource = replicate
        .create(&spec(NAME, "A100-80GB", 2, 0))
        .await
        .unwrap();

    let first = replicate.status(&resource).await.unwrap();
    assert_eq!(first.state, ResourceState::Initializing);
    assert!(
        first.message.as_deref().unwrap().contains("starting"),
        "{first:?}"
    );
    assert!(first.upstream.is_none());
    let second = replicate.status(&resource).await.unwrap();
    assert_eq!(second.state, ResourceState::Initializing);
    assert!(second.message.as_deref().unwrap().contains("processing"));

    let ready = replicate.status(&resource).await.unwrap();
    assert_eq!(ready.state, ResourceState::ScaledToZero, "{ready:?}");
    let upstream = ready.upstream.unwrap();
    assert_eq!(
        upstream.base_url,
        format!("{}/v1/deployments/{FAKE_OWNER}/{NAME}", fake.base_url())
    );
    assert_eq!(upstream.api, UpstreamApi::Replicate);
    assert_eq!(upstream.model, "qwen-7b");
    assert_eq!(
        upstream.headers,
        vec![(
            "authorization".to_owned(),
            format!("Bearer {}", common::fake_replicate::FAKE_TOKEN)
        )]
    );

    let training = fake.training(&resource.details["training_id"]).unwrap();
    assert_eq!(training["status"], "succeeded");
    let version = training["output"]["version"].as_str().unwrap();
    let created = bodies_at(&fake.journal, "POST", "/v1/deployments");
    assert_eq!(
        created,
        vec![
            json!({"name": NAME, "model": resource.id, "version": version,
                    "hardware": "gpu-a100-large-2x", "min_instances": 0, "max_instances": 2})
        ]
    );

    // Later polls find the deployment and create nothing more.
    let again = replicate.status(&resource).await.unwrap();
    assert_eq!(again.state, ResourceState::ScaledToZero);
    assert_eq!(bodies_at(&fake.journal, "POST", "/v1/deployments").len(), 1);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_deployment_with_warm_instances_is_ready() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "T4", 1, 1)).await;
    let status = replicate.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Ready);
    assert!(status.upstream.is_some());
    let deployment = fake.deployment(&resource.id).unwrap();
    assert_eq!(
        deployment["current_release"]["configuration"],
        json!({"hardware": "gpu-t4", "min_instances": 1, "max_instances": 2})
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_failed_training_fails_the_resource() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(2);
    fake.fail_trainings("No files to download");
    let replicate = provisioner(&fake);
    let resource = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap();
    assert_eq!(
        replicate.status(&resource).await.unwrap().state,
        ResourceState::Initializing
    );
    let failed = replicate.status(&resource).await.unwrap();
    assert_eq!(failed.state, ResourceState::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("No files to download"),
        "{failed:?}"
    );
    assert!(failed.upstream.is_none());
    assert!(bodies_at(&fake.journal, "POST", "/v1/deployments").is_empty());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn find_by_resource_name_and_resume_a_create() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let spec = spec(NAME, "L4", 1, 0);
    assert_eq!(replicate.find(NAME).await.unwrap(), None);

    // A create interrupted after the training: the model has a version, no deployment.
    let first = replicate.create(&spec).await.unwrap();
    fake.fail_next(
        "POST",
        "/v1/deployments",
        500,
        json!({"detail": "Internal server error"}),
    );
    let error = replicate.status(&first).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert!(fake.deployment(&first.id).is_none());
    let version = fake.model(&first.id).unwrap()["latest_version"]["id"].clone();
    assert_eq!(replicate.find(NAME).await.unwrap(), None);

    // The resumed create accepts the existing model and reuses its version.
    let resumed = replicate.create(&spec).await.unwrap();
    assert_eq!(resumed.id, first.id);
    assert_eq!(resumed.details["version"], version.as_str().unwrap());
    assert!(!resumed.details.contains_key("training_id"));
    assert_eq!(
        fake.journal
            .count("POST", "/v1/models/replicate/vllm/versions"),
        1
    );
    let deployed = replicate.status(&resumed).await.unwrap();
    assert_eq!(deployed.state, ResourceState::ScaledToZero);
    assert_eq!(
        fake.deployment(&first.id).unwrap()["current_release"]["version"],
        version
    );

    let found = replicate.find(NAME).await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(found.name, NAME);
    assert_eq!(found.details["model"], first.id);
    assert_eq!(found.details["version"], version.as_str().unwrap());
    assert_eq!(found.details["hardware"], "gpu-a40-small");
    let status = replicate.status(&found).await.unwrap();
    assert_eq!(status.state, ResourceState::ScaledToZero);
    // One refused attempt and one that created the deployment.
    assert_eq!(bodies_at(&fake.journal, "POST", "/v1/deployments").len(), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn update_scaling_patches_the_deployment() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "H100", 1, 0)).await;
    replicate
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 1,
                max_workers: 4,
                idle_timeout_seconds: 60,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fake.journal
            .bodies("PATCH", &format!("/v1/deployments/{}", resource.id)),
        vec![json!({"min_instances": 1, "max_instances": 4})]
    );
    let release = &fake.deployment(&resource.id).unwrap()["current_release"];
    assert_eq!(release["number"], 2);
    assert_eq!(release["configuration"]["min_instances"], 1);
    assert_eq!(release["configuration"]["max_instances"], 4);
    assert_eq!(release["configuration"]["hardware"], "gpu-h100");
    assert_eq!(
        replicate.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn health_reports_whether_the_deployment_exists() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "L4", 1, 0)).await;
    let health = replicate.health(&resource).await.unwrap();
    assert!(health.reachable, "{health:?}");
    assert_eq!(health.queue_depth, 0);

    replicate.delete(&resource).await.unwrap();
    let gone = replicate.health(&resource).await.unwrap();
    assert!(!gone.reachable);
    assert!(gone.message.unwrap().contains("does not exist"));
    fake.journal.assert_clean();
}

#[tokio::test]
async fn list_managed_follows_pages_and_keeps_only_managed_names() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    fake.set_page_size(1);
    fake.add_deployment(FAKE_OWNER, "my-image-app", 1);
    fake.add_deployment(FAKE_OWNER, "sy-00000000000000000001", 0);
    let replicate = provisioner(&fake);
    let ours = deploy(&replicate, &spec(NAME, "L4", 1, 0)).await;

    let mut listed = replicate.list_managed().await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = listed
        .iter()
        .map(|resource| resource.name.as_str())
        .collect();
    assert_eq!(names, vec!["sy-00000000000000000001", NAME]);
    assert_eq!(listed[1].id, ours.id);
    assert_eq!(listed[1].details["model"], ours.id);
    assert_eq!(listed[1].details["min_instances"], "0");
    assert_eq!(bodies_at(&fake.journal, "GET", "/v1/deployments").len(), 3);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn delete_scales_to_zero_then_removes_deployment_versions_and_model() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "L4", 1, 1)).await;
    let version = fake.model(&resource.id).unwrap()["latest_version"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    replicate.delete(&resource).await.unwrap();
    let path = format!("/v1/deployments/{}", resource.id);
    assert_eq!(
        fake.journal.bodies("PATCH", &path),
        vec![json!({"min_instances": 0})]
    );
    assert_eq!(fake.journal.count("DELETE", &path), 1);
    assert_eq!(
        fake.journal.count(
            "DELETE",
            &format!("/v1/models/{}/versions/{version}", resource.id)
        ),
        1
    );
    assert!(fake.deployment(&resource.id).is_none());
    assert!(fake.model(&resource.id).is_none());
    assert_eq!(replicate.find(NAME).await.unwrap(), None);

    // Deleting again is not an error.
    replicate.delete(&resource).await.unwrap();
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_refused_delete_is_rejected_and_succeeds_later() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    fake.refuse_next_deletes(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "L4", 1, 0)).await;

    let error = replicate.delete(&resource).await.unwrap_err();
    match &error {
        ProviderError::Rejected {
            status, message, ..
        } => {
            assert_eq!(*status, 409);
            assert!(message.contains("15 minutes"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(fake.deployment(&resource.id).is_some());
    assert!(fake.model(&resource.id).is_some());

    replicate.delete(&resource).await.unwrap();
    assert!(fake.deployment(&resource.id).is_none());
    assert!(fake.model(&resource.id).is_none());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn delete_during_the_training_cancels_it() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(5);
    let replicate = provisioner(&fake);
    let resource = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap();
    let training_id = resource.details["training_id"].clone();
    replicate.delete(&resource).await.unwrap();
    assert_eq!(fake.training(&training_id).unwrap()["status"], "canceled");
    assert_eq!(
        fake.journal
            .count("POST", &format!("/v1/trainings/{training_id}/cancel")),
        1
    );
    assert!(fake.model(&resource.id).is_none());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn predictions_wait_and_stream_from_the_streaming_host() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = deploy(&replicate, &spec(NAME, "L4", 1, 0)).await;

    let prediction = replicate
        .predict(
            &resource,
            json!({"prompt": "hello there", "max_tokens": 16}),
        )
        .await
        .unwrap();
    assert_eq!(prediction.status, "succeeded");
    assert!(prediction.is_terminal());
    assert_eq!(
        prediction.output_text().unwrap(),
        prediction_output("hello there").concat()
    );
    assert_eq!(prediction.metrics["output_token_count"], 5);
    assert_eq!(fake.prefer_headers(), vec!["wait=50".to_owned()]);
    let stream_url = prediction.urls.stream.clone().unwrap();
    assert!(stream_url.starts_with(&fake.stream_base_url()));

    let response = reqwest::Client::new()
        .get(&stream_url)
        .bearer_auth(common::fake_replicate::FAKE_TOKEN)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let events: Vec<(String, String)> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .filter_map(|line| line.strip_prefix(name))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            (field("event: "), field("data: "))
        })
        .collect();
    let outputs: String = events
        .iter()
        .filter(|(event, _)| event == "output")
        .map(|(_, data)| data.as_str())
        .collect();
    assert_eq!(outputs, prediction_output("hello there").concat());
    assert_eq!(
        events.last().unwrap(),
        &("done".to_owned(), "{}".to_owned())
    );

    // A prediction made without waiting is followed and canceled through the helpers.
    let pending: Value = reqwest::Client::new()
        .post(format!(
            "{}/v1/deployments/{}/predictions",
            fake.base_url(),
            resource.id
        ))
        .bearer_auth(common::fake_replicate::FAKE_TOKEN)
        .json(&json!({"input": {"prompt": "later"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "starting");
    let canceled = replicate
        .cancel_prediction(pending["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(canceled.status, "canceled");
    let read = replicate.prediction(&canceled.id).await.unwrap();
    assert_eq!(read.status, "canceled");
    assert_eq!(read.output_text(), None);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let fake = FakeReplicate::start().await;
    let config = ReplicateConfig {
        token: Some(Secret::new("r8_wrong")),
        ..fake.config()
    };
    let replicate = Replicate::new(config, management_client());
    let error = replicate.find(NAME).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    let error = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap_err();
    assert_eq!(error.code(), "provider_unauthorized");
    fake.journal.assert_clean();
}

#[tokio::test]
async fn a_missing_deployment_is_not_found() {
    let fake = FakeReplicate::start().await;
    let replicate = provisioner(&fake);
    let missing = ProviderResource {
        provider: ProviderKind::Replicate,
        id: format!("{FAKE_OWNER}/{NAME}"),
        name: NAME.to_owned(),
        details: [("training_id".to_owned(), "qmissing".to_owned())]
            .into_iter()
            .collect(),
    };
    let error = replicate
        .update_scaling(
            &missing,
            &Scaling {
                min_workers: 0,
                max_workers: 1,
                idle_timeout_seconds: 60,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error:?}");
    let error = replicate.status(&missing).await.unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error:?}");
    fake.journal.assert_clean();
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);
    let resource = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap();
    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    let status = replicate.status(&resource).await.unwrap();
    assert!(status.state.is_usable(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let path = format!("/v1/deployments/{}", resource.id);
    assert_eq!(fake.journal.count("GET", &path), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_only() {
    let fake = FakeReplicate::start().await;
    let replicate = provisioner(&fake);
    fake.fail_next(
        "GET",
        "/v1/deployments/",
        503,
        json!({"detail": "Service temporarily unavailable"}),
    );
    assert_eq!(replicate.find(NAME).await.unwrap(), None);
    assert_eq!(
        fake.journal
            .count("GET", &format!("/v1/deployments/{FAKE_OWNER}/{NAME}")),
        2
    );

    fake.fail_next(
        "POST",
        "/v1/models",
        500,
        json!({"detail": "Internal server error"}),
    );
    let error = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(bodies_at(&fake.journal, "POST", "/v1/models").len(), 1);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn missing_hardware_is_no_capacity() {
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let replicate = provisioner(&fake);

    fake.withdraw_hardware("gpu-h100");
    let error = replicate
        .create(&spec(NAME, "H100", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::NoCapacity { .. }),
        "{error:?}"
    );
    assert!(bodies_at(&fake.journal, "POST", "/v1/models").is_empty());

    fake.set_no_capacity(true);
    let resource = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap();
    let error = replicate.status(&resource).await.unwrap_err();
    match &error {
        ProviderError::NoCapacity { message, .. } => {
            assert!(message.contains("not available"), "{message}")
        }
        other => panic!("expected no capacity, got {other:?}"),
    }
    fake.set_no_capacity(false);
    let status = replicate.status(&resource).await.unwrap();
    assert!(status.state.is_usable());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn without_credentials_it_is_not_configured() {
    let fake = FakeReplicate::start().await;
    for config in [
        ReplicateConfig {
            token: None,
            ..fake.config()
        },
        ReplicateConfig {
            owner: None,
            ..fake.config()
        },
    ] {
        let replicate = Replicate::new(config, management_client());
        let availability = replicate.availability();
        assert!(!availability.available);
        let message = availability.message.unwrap();
        assert!(message.contains("REPLICATE_API_TOKEN"), "{message}");
        assert!(message.contains("SWITCHYARD_REPLICATE_OWNER"), "{message}");
        let error = replicate.create(&spec(NAME, "L4", 1, 0)).await.unwrap_err();
        assert!(
            matches!(error, ProviderError::NotConfigured { .. }),
            "{error:?}"
        );
        let error = replicate.list_managed().await.unwrap_err();
        assert_eq!(error.code(), "provider_not_configured");
    }
    assert!(provisioner(&fake).availability().available);
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn only_llms_are_deployed() {
    let fake = FakeReplicate::start().await;
    let replicate = provisioner(&fake);
    let mut image = spec(NAME, "L4", 1, 0);
    image.modality = Modality::Image;
    let error = replicate.create(&image).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unsupported { .. }),
        "{error:?}"
    );
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn the_fake_rejects_what_the_spec_does_not_allow() {
    let fake = FakeReplicate::start().await;
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{}{path}", fake.base_url()))
            .bearer_auth(common::fake_replicate::FAKE_TOKEN)
            .json(&body)
            .send()
    };
    let missing = send(
        reqwest::Method::POST,
        "/v1/deployments",
        json!({"name": NAME, "model": "acme/x", "version": "v", "hardware": "gpu-t4", "max_instances": 1}),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 400);
    let extra = send(
        reqwest::Method::POST,
        "/v1/models",
        json!({"owner": FAKE_OWNER, "name": NAME, "visibility": "secret", "hardware": "gpu-t4"}),
    )
    .await
    .unwrap();
    assert_eq!(extra.status(), 400);
    let unknown = send(reqwest::Method::PUT, "/v1/deployments/acme/x", json!({}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let violations = std::mem::take(&mut *fake.journal.violations.lock().unwrap());
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].contains("min_instances"), "{}", violations[0]);
    assert!(violations[1].contains("secret"), "{}", violations[1]);
    assert!(
        violations[2].contains("not an operation"),
        "{}",
        violations[2]
    );
    fake.journal.assert_clean();
}

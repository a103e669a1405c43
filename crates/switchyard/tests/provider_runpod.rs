//! Contract tests of the RunPod provisioner and job client against the fake
//! RunPod (REST v2 checked by the official spec, the job API by the fixture).

mod common;

use std::time::{Duration, Instant};

use common::fake_runpod::{self, FakeRunPod, API_KEY, COMPLETION_TOKENS, REPLY, WORKER_IMAGE};
use common::spec::OpenApi;
use serde_json::{json, Value};
use switchyard::domain::Modality;
use switchyard::providers::config::{RunPodConfig, Secret};
use switchyard::providers::runpod::RunPod;
use switchyard::providers::runpod_jobs::{JobRequest, JobStatus, RunPodJobs};
use switchyard::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, ProviderResource, Provisioner,
    ResourceState, ResourceStatus, Scaling,
};

fn deploy_spec(tail: &str, gpu: &str, min_workers: u32) -> DeploySpec {
    DeploySpec {
        endpoint_id: format!("0193a1b2-c3d4-7e5f-8a9b-{tail:0>12}"),
        resource_name: format!("sy-7e5f8a9b{tail:0>12}"),
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        revision: Some("a09a3545".to_owned()),
        served_model_name: "qwen2-5-7b-instruct".to_owned(),
        modality: Modality::Llm,
        gpu: GpuChoice {
            name: gpu.to_owned(),
            count: 1,
            vram_gb: 24,
        },
        scaling: Scaling {
            min_workers,
            max_workers: 3,
            idle_timeout_seconds: 60,
        },
        max_model_len: Some(8192),
        source_url: None,
    }
}

fn provisioner(fake: &FakeRunPod) -> RunPod {
    RunPod::new(fake.config(), reqwest::Client::new())
}

fn jobs(fake: &FakeRunPod) -> RunPodJobs {
    RunPodJobs::from_config(&fake.config(), reqwest::Client::new()).unwrap()
}

/// Polls `status` until it reports `state`; panics after `polls` tries.
async fn poll_until(
    runpod: &RunPod,
    resource: &ProviderResource,
    state: ResourceState,
    polls: usize,
) -> ResourceStatus {
    let mut seen = Vec::new();
    for _ in 0..polls {
        let status = runpod.status(resource).await.unwrap();
        if status.state == state {
            return status;
        }
        seen.push(status.state);
    }
    panic!("never reached {state:?}; saw {seen:?}");
}

fn template_id(resource: &ProviderResource) -> String {
    resource.details["template_id"].clone()
}

#[tokio::test]
async fn create_sends_a_template_then_an_endpoint_the_spec_accepts() {
    let fake = FakeRunPod::start().await;
    let config = RunPodConfig {
        hf_token: Some(Secret::new("hf_gated_token")),
        ..fake.config()
    };
    let runpod = RunPod::new(config, reqwest::Client::new());
    let spec = deploy_spec("1", "RTX4090", 0);

    let resource = runpod.create(&spec).await.unwrap();

    assert_eq!(resource.provider, ProviderKind::RunPod);
    assert_eq!(resource.name, spec.resource_name);
    assert_eq!(resource.details["served_model_name"], "qwen2-5-7b-instruct");
    let templates = fake.templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(template_id(&resource), templates[0]["id"]);
    let template = &fake.journal.bodies("POST", "/v2/templates")[0];
    assert_eq!(template["name"], spec.resource_name);
    assert_eq!(template["image"], WORKER_IMAGE);
    assert_eq!(template["serverless"], true);
    assert_eq!(
        template["env"],
        json!({
            "MODEL_NAME": "Qwen/Qwen2.5-7B-Instruct",
            "MODEL_REVISION": "a09a3545",
            "HF_TOKEN": "hf_gated_token",
            "MAX_MODEL_LEN": "8192",
            "OPENAI_SERVED_MODEL_NAME_OVERRIDE": "qwen2-5-7b-instruct",
            "TENSOR_PARALLEL_SIZE": "1",
            "RAW_OPENAI_OUTPUT": "1",
        })
    );
    let endpoint = &fake.journal.bodies("POST", "/v2/serverless")[0];
    assert_eq!(endpoint["templateId"], templates[0]["id"]);
    assert_eq!(endpoint["name"], spec.resource_name);
    assert_eq!(endpoint["type"], "QUEUE");
    assert_eq!(endpoint["gpu"]["pools"], json!(["ADA_24"]));
    assert_eq!(endpoint["gpu"]["count"], 1);
    assert_eq!(
        endpoint["workers"],
        json!({"min": 0, "max": 3, "idleTimeout": 60})
    );
    assert_eq!(
        endpoint["scaling"],
        json!({"type": "QUEUE_DELAY", "queueDelay": 4})
    );
    assert_eq!(endpoint["flashboot"], "FLASHBOOT");
    let live = fake.endpoint(&resource.id).unwrap();
    assert_eq!(live["env"]["MODEL_NAME"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(live["image"], WORKER_IMAGE);
    fake.assert_clean();
}

#[tokio::test]
async fn every_price_table_gpu_lands_in_a_real_pool() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let cases = [
        ("T4", "AMPERE_16"),
        ("L4", "AMPERE_24"),
        ("A10G", "AMPERE_24"),
        ("RTX3090", "AMPERE_24"),
        ("RTX4090", "ADA_24"),
        ("A100-40GB", "AMPERE_48"),
        ("A100-80GB", "AMPERE_80"),
        ("H100", "ADA_80_PRO"),
    ];
    for (index, (gpu, pool)) in cases.iter().enumerate() {
        let mut spec = deploy_spec(&format!("{}", 100 + index), gpu, 0);
        spec.gpu.count = 2;
        let resource = runpod.create(&spec).await.unwrap();
        let live = fake.endpoint(&resource.id).unwrap();
        assert_eq!(live["gpu"]["pools"], json!([pool]), "{gpu}");
        assert_eq!(live["gpu"]["count"], 2, "{gpu}");
        assert_eq!(live["env"]["TENSOR_PARALLEL_SIZE"], "2", "{gpu}");
    }
    fake.assert_clean();
}

#[tokio::test]
async fn unsupported_gpus_and_modalities_send_nothing() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let error = runpod
        .create(&deploy_spec("2", "TPU-v5", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unsupported { .. }),
        "{error:?}"
    );
    let mut spec = deploy_spec("3", "L4", 0);
    spec.modality = Modality::Embedding;
    let error = runpod.create(&spec).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unsupported { .. }),
        "{error:?}"
    );
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    fake.assert_clean();
}

#[tokio::test]
async fn status_follows_workers_from_initializing_to_ready_to_zero() {
    let fake = FakeRunPod::start().await;
    fake.set_ready_after_polls(2);
    fake.set_scale_down_after_polls(1);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("4", "L4", 1)).await.unwrap();

    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Initializing);
    assert_eq!(status.workers.initializing, 1);
    assert!(status.upstream.is_none());

    let status = poll_until(&runpod, &resource, ResourceState::Ready, 3).await;
    assert_eq!(status.workers.ready, 1);
    let upstream = status.upstream.unwrap();
    assert_eq!(
        upstream.base_url,
        format!("{}/v2/{}/openai/v1", fake.jobs_url(), resource.id)
    );
    assert_eq!(upstream.model, "qwen2-5-7b-instruct");
    assert_eq!(
        upstream.headers,
        vec![("authorization".to_owned(), format!("Bearer {API_KEY}"))]
    );

    runpod
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 0,
                max_workers: 2,
                idle_timeout_seconds: 5,
            },
        )
        .await
        .unwrap();
    let status = poll_until(&runpod, &resource, ResourceState::ScaledToZero, 5).await;
    assert!(status.upstream.is_some(), "scaled to zero is still usable");
    assert!(fake.worker_statuses(&resource.id).is_empty());
    fake.assert_clean();
}

#[tokio::test]
async fn a_scale_to_zero_endpoint_is_usable_at_once_and_wakes_on_a_job() {
    let fake = FakeRunPod::start().await;
    fake.set_ready_after_polls(2);
    fake.set_scale_down_after_polls(1);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("5", "L4", 0)).await.unwrap();

    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::ScaledToZero);
    assert!(status.upstream.is_some());

    let client = jobs(&fake);
    let job = client
        .run(
            &resource.id,
            &JobRequest::new(json!({"prompt": "The capital of France is"})),
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::InQueue);
    assert_eq!(fake.worker_statuses(&resource.id), vec!["INITIALIZING"]);
    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Initializing);
    let status = poll_until(&runpod, &resource, ResourceState::Ready, 3).await;
    assert_eq!(status.workers.running, 1, "the job runs on the new worker");

    let done = client.status(&resource.id, &job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.output.unwrap()[0]["usage"]["input"], 5);
    poll_until(&runpod, &resource, ResourceState::ScaledToZero, 5).await;
    fake.assert_clean();
}

#[tokio::test]
async fn workers_waiting_for_gpus_are_pending_until_capacity_frees() {
    let fake = FakeRunPod::start().await;
    fake.set_throttled(true);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("6", "H100", 1)).await.unwrap();

    for _ in 0..3 {
        let status = runpod.status(&resource).await.unwrap();
        assert_eq!(status.state, ResourceState::Pending);
        assert_eq!(status.workers.throttled, 1);
        assert!(status.message.unwrap().contains("GPU capacity"));
        assert!(status.upstream.is_none());
    }
    fake.set_throttled(false);
    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Initializing);
    poll_until(&runpod, &resource, ResourceState::Ready, 3).await;
    fake.assert_clean();
}

#[tokio::test]
async fn find_looks_endpoints_up_by_resource_name() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let first = runpod.create(&deploy_spec("7", "L4", 0)).await.unwrap();
    let second = runpod.create(&deploy_spec("8", "L4", 0)).await.unwrap();

    let found = runpod.find(&first.name).await.unwrap().unwrap();
    assert_eq!(found, first);
    let found = runpod.find(&second.name).await.unwrap().unwrap();
    assert_eq!(found.id, second.id);
    assert_eq!(found.details["template_id"], second.details["template_id"]);
    assert_eq!(runpod.find("sy-00000000000000000000").await.unwrap(), None);
    fake.assert_clean();
}

#[tokio::test]
async fn a_template_left_by_an_interrupted_create_is_replaced() {
    let fake = FakeRunPod::start().await;
    let spec = deploy_spec("9", "L4", 0);
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/v2/templates", fake.base_url()))
        .bearer_auth(API_KEY)
        .json(&json!({"name": spec.resource_name, "image": "old/image:1", "serverless": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let runpod = provisioner(&fake);

    let resource = runpod.create(&spec).await.unwrap();

    let templates = fake.templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0]["image"], WORKER_IMAGE);
    assert_eq!(template_id(&resource), templates[0]["id"]);
    fake.assert_clean();
}

#[tokio::test]
async fn update_scaling_patches_workers_within_runpod_bounds() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("10", "L4", 0)).await.unwrap();

    runpod
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 1,
                max_workers: 5,
                idle_timeout_seconds: 7200,
            },
        )
        .await
        .unwrap();

    let patch = fake.journal.bodies("PATCH", "/v2/serverless/");
    assert_eq!(
        patch,
        vec![json!({"workers": {"min": 1, "max": 5, "idleTimeout": 3600}})]
    );
    let live = fake.endpoint(&resource.id).unwrap();
    assert_eq!(
        live["workers"],
        json!({"min": 1, "max": 5, "idleTimeout": 3600})
    );
    assert_eq!(fake.worker_statuses(&resource.id), vec!["INITIALIZING"]);
    let gone = ProviderResource {
        id: "nosuchendpoint".to_owned(),
        ..resource.clone()
    };
    let error = runpod
        .update_scaling(
            &gone,
            &Scaling {
                min_workers: 0,
                max_workers: 1,
                idle_timeout_seconds: 5,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error:?}");
    fake.assert_clean();
}

#[tokio::test]
async fn health_reports_queue_depth_and_workers() {
    let fake = FakeRunPod::start().await;
    fake.set_throttled(true);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("11", "L4", 0)).await.unwrap();
    let client = jobs(&fake);
    for _ in 0..2 {
        client
            .run(&resource.id, &JobRequest::new(json!({"prompt": "hi"})))
            .await
            .unwrap();
    }

    let health = runpod.health(&resource).await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.queue_depth, 2);
    assert_eq!(health.workers.throttled, 1);

    fake.fail_next_job_requests(1, 502);
    let health = runpod.health(&resource).await.unwrap();
    assert!(health.reachable, "a 502 on the idempotent GET is retried");
    assert_eq!(
        fake.jobs_journal
            .count("GET", &format!("/v2/{}/health", resource.id)),
        3
    );

    runpod.delete(&resource).await.unwrap();
    let health = runpod.health(&resource).await.unwrap();
    assert!(!health.reachable);
    assert!(health.message.unwrap().contains("not found"));
    fake.assert_clean();
}

#[tokio::test]
async fn list_managed_returns_only_sy_endpoints() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    assert!(runpod.list_managed().await.unwrap().is_empty());
    let ours = runpod.create(&deploy_spec("12", "L4", 0)).await.unwrap();
    fake.add_foreign_endpoint("image-generator");
    let flashboot = fake.add_foreign_endpoint("sy-00000000000000000042 -fb");

    let mut managed = runpod.list_managed().await.unwrap();
    managed.sort_by(|a, b| a.name.cmp(&b.name));

    assert_eq!(managed.len(), 2);
    assert_eq!(managed[0].id, flashboot);
    assert_eq!(managed[0].name, "sy-00000000000000000042");
    assert_eq!(managed[1], ours);
    fake.assert_clean();
}

#[tokio::test]
async fn delete_removes_endpoint_and_template_and_tolerates_gone() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("13", "L4", 0)).await.unwrap();

    runpod.delete(&resource).await.unwrap();
    assert!(fake.endpoints().is_empty());
    assert!(fake.templates().is_empty());
    assert_eq!(
        fake.journal
            .count("GET", &format!("/v2/templates/{}", template_id(&resource))),
        1,
        "the template is checked after the endpoint went"
    );
    runpod.delete(&resource).await.unwrap();
    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Gone);
    assert!(status.upstream.is_none());
    fake.assert_clean();
}

#[tokio::test]
async fn delete_removes_a_template_the_endpoint_left_behind() {
    let fake = FakeRunPod::start().await;
    fake.set_delete_keeps_template(true);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("14", "L4", 0)).await.unwrap();
    let found = runpod.find(&resource.name).await.unwrap().unwrap();

    runpod.delete(&found).await.unwrap();

    assert!(fake.endpoints().is_empty());
    assert!(fake.templates().is_empty());
    assert_eq!(fake.journal.count("DELETE", "/v2/templates/"), 1);
    fake.assert_clean();
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let fake = FakeRunPod::start().await;
    let good = provisioner(&fake);
    let resource = good.create(&deploy_spec("15", "L4", 0)).await.unwrap();
    let runpod = RunPod::new(fake.config_with_key("rp_wrong"), reqwest::Client::new());

    let error = runpod
        .create(&deploy_spec("16", "L4", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    let error = runpod.status(&resource).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { .. }),
        "{error:?}"
    );
    let error = runpod.health(&resource).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(fake.endpoints().len(), 1);
    fake.assert_clean();
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    assert!(runpod.list_managed().await.unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(fake.journal.count("GET", "/v2/serverless"), 2);

    // A 429 means RunPod did nothing, so even a create is sent again.
    let resource = runpod.create(&deploy_spec("17", "L4", 0)).await.unwrap();
    fake.rate_limit_next_matching("POST", "/v2/serverless", 1, 0);
    runpod.create(&deploy_spec("18", "L4", 0)).await.unwrap();
    assert_eq!(fake.endpoints().len(), 2);
    assert_eq!(fake.journal.count("POST", "/v2/serverless"), 3);

    fake.rate_limit_next(3, 0);
    let error = runpod.status(&resource).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::RateLimited {
                retry_after: Some(wait),
                ..
            } if wait == Duration::ZERO
        ),
        "{error:?}"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn server_errors_retry_gets_but_not_creates() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("19", "L4", 0)).await.unwrap();
    let lists_before = fake.journal.count("GET", "/v2/serverless");
    fake.fail_next_gets(1, 503);
    let found = runpod.find(&resource.name).await.unwrap().unwrap();
    assert_eq!(found.id, resource.id);
    assert_eq!(
        fake.journal.count("GET", "/v2/serverless") - lists_before,
        2
    );

    fake.fail_next_create(
        500,
        json!({"title": "Internal Server Error", "status": 500, "detail": "upstream scheduler error"}),
    );
    let error = runpod
        .create(&deploy_spec("20", "L4", 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(
        fake.journal.count("POST", "/v2/serverless"),
        2,
        "one per create"
    );
    assert_eq!(
        fake.templates().len(),
        1,
        "the failed create left no template"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn a_rejected_endpoint_create_deletes_its_template() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    fake.fail_next_create(
        422,
        json!({"title": "Unprocessable Entity", "status": 422, "detail": "Request validation failed.",
               "errors": ["$.timeout: must be at most 3600000"]}),
    );

    let error = runpod
        .create(&deploy_spec("21", "L4", 0))
        .await
        .unwrap_err();

    match error {
        ProviderError::Rejected {
            status, message, ..
        } => {
            assert_eq!(status, 422);
            assert!(message.contains("must be at most"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(fake.templates().is_empty());
    assert!(fake.endpoints().is_empty());
    assert_eq!(fake.journal.count("DELETE", "/v2/templates/"), 1);
    fake.assert_clean();
}

#[tokio::test]
async fn no_capacity_is_reported_as_such() {
    let fake = FakeRunPod::start().await;
    fake.set_no_capacity(true);
    let runpod = provisioner(&fake);

    let error = runpod
        .create(&deploy_spec("22", "H100", 1))
        .await
        .unwrap_err();

    match &error {
        ProviderError::NoCapacity { message, .. } => {
            assert!(message.contains("ADA_80_PRO"), "{message}")
        }
        other => panic!("expected no capacity, got {other:?}"),
    }
    assert_eq!(error.code(), "provider_no_capacity");
    assert!(fake.templates().is_empty(), "no orphan template");
    fake.assert_clean();
}

#[tokio::test]
async fn without_a_key_runpod_is_unavailable() {
    let fake = FakeRunPod::start().await;
    let config = RunPodConfig {
        api_key: None,
        ..fake.config()
    };
    let runpod = RunPod::new(config.clone(), reqwest::Client::new());
    let availability = runpod.availability();
    assert!(!availability.available);
    assert!(availability.message.unwrap().contains("RUNPOD_API_KEY"));

    let resource = ProviderResource {
        provider: ProviderKind::RunPod,
        id: "abc".to_owned(),
        name: "sy-abc".to_owned(),
        details: Default::default(),
    };
    let scaling = deploy_spec("23", "L4", 0).scaling;
    let errors = vec![
        runpod
            .create(&deploy_spec("23", "L4", 0))
            .await
            .unwrap_err(),
        runpod.find("sy-abc").await.unwrap_err(),
        runpod.status(&resource).await.unwrap_err(),
        runpod
            .update_scaling(&resource, &scaling)
            .await
            .unwrap_err(),
        runpod.delete(&resource).await.unwrap_err(),
        runpod.health(&resource).await.unwrap_err(),
        runpod.list_managed().await.unwrap_err(),
        RunPodJobs::from_config(&config, reqwest::Client::new()).unwrap_err(),
    ];
    for error in errors {
        match error {
            ProviderError::NotConfigured { message, .. } => {
                assert!(message.contains("RUNPOD_API_KEY"))
            }
            other => panic!("expected not configured, got {other:?}"),
        }
    }
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    assert!(provisioner(&fake).availability().available);
    fake.assert_clean();
}

#[tokio::test]
async fn the_job_client_runs_polls_streams_cancels_and_retries() {
    let fake = FakeRunPod::start().await;
    fake.set_ready_after_polls(1);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("24", "L4", 0)).await.unwrap();
    let endpoint = resource.id.as_str();
    let client = jobs(&fake);

    let job = client
        .run(endpoint, &JobRequest::new(json!({"prompt": "Hello there"})))
        .await
        .unwrap();
    let mut statuses = vec![job.status];
    while !statuses.last().unwrap().is_terminal() && statuses.len() < 10 {
        statuses.push(client.status(endpoint, &job.id).await.unwrap().status);
    }
    assert_eq!(
        statuses,
        vec![
            JobStatus::InQueue,
            JobStatus::InProgress,
            JobStatus::Completed
        ]
    );
    let done = client.status(endpoint, &job.id).await.unwrap();
    assert_eq!(done.output.unwrap()[0]["choices"][0]["tokens"][0], REPLY);

    let streaming = client
        .run(endpoint, &JobRequest::new(json!({"prompt": "Tell me"})))
        .await
        .unwrap();
    let mut text = String::new();
    for _ in 0..10 {
        let stream = client.stream(endpoint, &streaming.id).await.unwrap();
        for chunk in &stream.stream {
            text.push_str(chunk.output.as_str().unwrap());
        }
        if stream.status.is_terminal() {
            break;
        }
    }
    assert_eq!(text, REPLY);

    let job = client
        .runsync(
            endpoint,
            &JobRequest::new(json!({"prompt": "sync"})),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(fake.last_runsync_wait(), Some(5000));
    client
        .runsync(
            endpoint,
            &JobRequest::new(json!({"prompt": "x"})),
            Some(Duration::from_millis(10)),
        )
        .await
        .unwrap();
    assert_eq!(
        fake.last_runsync_wait(),
        Some(1000),
        "wait is clamped to 1 s"
    );

    let failed = client
        .runsync(
            endpoint,
            &JobRequest::new(json!({ fake_runpod::FAIL_INPUT: true })),
            None,
        )
        .await
        .unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed
        .error
        .unwrap()
        .as_str()
        .unwrap()
        .contains("asked to fail"));
    assert_eq!(fake.last_runsync_wait(), None);
    let retried = client.retry(endpoint, &failed.id).await.unwrap();
    assert_eq!(retried.status, JobStatus::InQueue);

    // With `workers.max` 0 no worker can take the next job.
    let blocked = Scaling {
        min_workers: 0,
        max_workers: 0,
        idle_timeout_seconds: 5,
    };
    runpod.update_scaling(&resource, &blocked).await.unwrap();
    let queued = client
        .runsync(
            endpoint,
            &JobRequest::new(json!({"prompt": "wait"})),
            Some(Duration::from_secs(2)),
        )
        .await;
    let queued = queued.unwrap();
    assert!(!queued.status.is_terminal(), "{:?}", queued.status);
    let cancelled = client.cancel(endpoint, &queued.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(
        client.status(endpoint, &queued.id).await.unwrap().status,
        JobStatus::Cancelled
    );

    let health = client.health(endpoint).await.unwrap();
    assert_eq!(health.jobs.retried, 1);
    assert!(health.jobs.completed >= 4, "{health:?}");
    let error = client.status(endpoint, "no-such-job").await.unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error:?}");
    fake.assert_clean();
}

#[tokio::test]
async fn purge_queue_drops_waiting_jobs() {
    let fake = FakeRunPod::start().await;
    fake.set_throttled(true);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("25", "L4", 0)).await.unwrap();
    let client = jobs(&fake);
    for _ in 0..3 {
        client
            .run(&resource.id, &JobRequest::new(json!({"prompt": "later"})))
            .await
            .unwrap();
    }

    let purged = client.purge_queue(&resource.id).await.unwrap();

    assert_eq!(purged.removed, 3);
    assert_eq!(runpod.health(&resource).await.unwrap().queue_depth, 0);
    fake.assert_clean();
}

#[tokio::test]
async fn the_upstream_target_serves_openai_chat_and_models() {
    let fake = FakeRunPod::start().await;
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("26", "L4", 0)).await.unwrap();
    let upstream = runpod.status(&resource).await.unwrap().upstream.unwrap();
    let http = reqwest::Client::new();
    let send = |path: &str, body: Option<Value>| {
        let mut request = match &body {
            Some(body) => http.post(format!("{}{path}", upstream.base_url)).json(body),
            None => http.get(format!("{}{path}", upstream.base_url)),
        };
        for (name, value) in &upstream.headers {
            request = request.header(name, value);
        }
        request.send()
    };

    let response = send(
        "/chat/completions",
        Some(json!({"model": upstream.model, "messages": [{"role": "user", "content": "Say hello to me"}], "max_tokens": 8})),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], COMPLETION_TOKENS);

    let response = send(
        "/chat/completions",
        Some(
            json!({"model": upstream.model, "messages": [{"role": "user", "content": "Hi"}],
                    "stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("\"completion_tokens\":5"), "{text}");

    let models: Value = send("/models", None).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "qwen2-5-7b-instruct");
    let response = send(
        "/chat/completions",
        Some(json!({"model": "other", "messages": [{"role": "user", "content": "Hi"}]})),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(fake.openai_requests(&resource.id), 2);
    let status = runpod.status(&resource).await.unwrap();
    assert_eq!(
        status.state,
        ResourceState::Ready,
        "the request woke a worker"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn the_fake_rejects_unknown_fields_and_bad_bodies() {
    let fake = FakeRunPod::start().await;
    let http = reqwest::Client::new();
    let valid = json!({
        "name": "sy-bogus", "type": "QUEUE", "image": WORKER_IMAGE,
        "gpu": {"pools": ["ADA_24"], "count": 1},
        "workers": {"min": 0, "max": 1, "idleTimeout": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4},
    });
    let mut bogus = valid.clone();
    bogus["bogus"] = json!(true);
    let mut nested = valid.clone();
    nested["workers"]["minimum"] = json!(1);
    let mut no_scaling = valid.clone();
    no_scaling.as_object_mut().unwrap().remove("scaling");
    let cases = [
        ("/v2/serverless", bogus, "bogus"),
        ("/v2/serverless", nested, "minimum"),
        ("/v2/serverless", no_scaling, "scaling"),
        (
            "/v2/templates",
            json!({"name": "t", "image": "i", "isServerless": true}),
            "isServerless",
        ),
    ];
    for (path, body, field) in cases {
        let response = http
            .post(format!("{}{path}", fake.base_url()))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 400);
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
    assert!(fake.endpoints().is_empty() && fake.templates().is_empty());
    let response = http
        .post(format!("{}/v2/abc/run", fake.jobs_url()))
        .bearer_auth(API_KEY)
        .json(&json!({"inputs": {"prompt": "typo"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = http
        .post(format!("{}/v2/serverless", fake.base_url()))
        .bearer_auth(API_KEY)
        .json(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        201,
        "the same body without the extras is valid"
    );
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = http
        .patch(format!("{}/v2/serverless/{id}", fake.base_url()))
        .bearer_auth(API_KEY)
        .json(&json!({"workers": {"min": 0, "idle_timeout": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(fake.endpoint(&id).unwrap()["workers"]["idleTimeout"], 5);

    let violations = std::mem::take(&mut *fake.journal.violations.lock().unwrap());
    assert_eq!(violations.len(), 5, "{violations:?}");
    assert!(violations[4].contains("idle_timeout"), "{violations:?}");
    let job_violations = std::mem::take(&mut *fake.jobs_journal.violations.lock().unwrap());
    assert_eq!(job_violations.len(), 1, "{job_violations:?}");
    assert!(job_violations[0].contains("inputs"), "{job_violations:?}");
    fake.assert_clean();
}

#[tokio::test]
async fn the_fake_answers_in_the_documented_shapes() {
    let fake = FakeRunPod::start().await;
    fake.set_ready_after_polls(1);
    let runpod = provisioner(&fake);
    let resource = runpod.create(&deploy_spec("27", "L4", 1)).await.unwrap();
    let rest = OpenApi::load_shared("runpod/rest-v2-openapi.json");
    let job_spec = OpenApi::load_fixture("runpod-jobs.yaml");
    let http = reqwest::Client::new();
    let get = |url: String| http.get(url).bearer_auth(API_KEY).send();
    let base = fake.base_url();
    let checks = [
        (format!("{base}/v2/serverless"), "ListEndpointsResponse"),
        (format!("{base}/v2/serverless/{}", resource.id), "Endpoint"),
        (
            format!("{base}/v2/serverless/{}/workers", resource.id),
            "ListEndpointWorkersResponse",
        ),
        (format!("{base}/v2/templates"), "ListTemplatesResponse"),
        (
            format!("{base}/v2/templates/{}", template_id(&resource)),
            "Template",
        ),
        (format!("{base}/v2/serverless/missing"), "ErrorResponse"),
    ];
    for (url, schema) in checks {
        let response = get(url.clone()).await.unwrap();
        assert!(response.headers().contains_key("ratelimit"), "{url}");
        let body: Value = response.json().await.unwrap();
        rest.validate(&format!("/components/schemas/{schema}"), &body)
            .unwrap_or_else(|errors| panic!("{url} is not a {schema}: {errors:?}"));
    }
    fake.rate_limit_next(1, 12);
    let response = get(format!("{base}/v2/serverless")).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "12");
    assert!(response.headers().contains_key("ratelimit-policy"));
    let body: Value = response.json().await.unwrap();
    rest.validate("/components/schemas/ErrorResponse", &body)
        .unwrap();

    let client = jobs(&fake);
    let job = client
        .run(&resource.id, &JobRequest::new(json!({"prompt": "shape"})))
        .await
        .unwrap();
    let jobs_base = format!("{}/v2/{}", fake.jobs_url(), resource.id);
    let job_checks = [
        (format!("{jobs_base}/status/{}", job.id), "Job"),
        (format!("{jobs_base}/stream/{}", job.id), "JobStream"),
        (format!("{jobs_base}/health"), "Health"),
    ];
    for (url, schema) in job_checks {
        let body: Value = get(url.clone()).await.unwrap().json().await.unwrap();
        job_spec
            .validate(&format!("/components/schemas/{schema}"), &body)
            .unwrap_or_else(|errors| panic!("{url} is not a {schema}: {errors:?}"));
    }
    fake.assert_clean();
}

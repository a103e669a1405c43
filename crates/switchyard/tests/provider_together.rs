//! Contract tests of the Together AI provisioner against a fake v1 API that
//! validates every request with the official `together/openapi.yaml`.

mod common;

use std::time::{Duration, Instant};

use common::fake_together::{self, FakeTogether};
use serde_json::{json, Value};
use switchyard::domain::{Modality, UpstreamApi};
use switchyard::providers::config::{Secret, TogetherConfig};
use switchyard::providers::together::Together;
use switchyard::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, Provisioner, ResourceState, Scaling,
};

fn provisioner(fake: &FakeTogether, key: Option<&str>) -> Together {
    Together::new(
        TogetherConfig {
            api_key: key.map(Secret::new),
            api_base_url: fake.base_url(),
        },
        reqwest::Client::new(),
    )
}

fn spec(resource_name: &str, gpu: &str, vram_gb: u32, scaling: Scaling) -> DeploySpec {
    DeploySpec {
        endpoint_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        resource_name: resource_name.to_owned(),
        model_id: "Qwen/Qwen2.5-7B-Instruct".to_owned(),
        revision: None,
        served_model_name: "qwen-7b".to_owned(),
        modality: Modality::Llm,
        gpu: GpuChoice {
            name: gpu.to_owned(),
            count: 1,
            vram_gb,
        },
        scaling,
        max_model_len: Some(8192),
        source_url: None,
    }
}

const SCALE_TO_ZERO: Scaling = Scaling {
    min_workers: 0,
    max_workers: 2,
    idle_timeout_seconds: 300,
};

#[tokio::test]
async fn create_picks_hardware_and_runs_the_life_cycle_to_inference() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let resource = together
        .create(&spec("sy-00000000000000000001", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap();
    assert_eq!(resource.provider, ProviderKind::Together);
    assert_eq!(resource.name, "sy-00000000000000000001");
    assert!(resource.id.starts_with("endpoint-"));
    assert_eq!(
        fake.hardware_queries()[0].get("model").map(String::as_str),
        Some("Qwen/Qwen2.5-7B-Instruct")
    );
    let bodies = fake.journal.bodies("POST", "/v1/endpoints");
    assert_eq!(
        bodies,
        vec![json!({
            "model": "Qwen/Qwen2.5-7B-Instruct", "hardware": "1x_nvidia_h100_80gb_sxm",
            "display_name": "sy-00000000000000000001",
            "autoscaling": {"min_replicas": 1, "max_replicas": 2},
            "inactive_timeout": 5, "state": "STARTED"
        })]
    );

    let mut states = Vec::new();
    let mut upstream = None;
    for _ in 0..5 {
        let status = together.status(&resource).await.unwrap();
        states.push(status.state.clone());
        if status.state == ResourceState::Ready {
            assert_eq!(status.workers.ready, 1);
            upstream = status.upstream;
            break;
        }
        assert!(status.upstream.is_none());
    }
    assert_eq!(
        states,
        vec![
            ResourceState::Pending,
            ResourceState::Initializing,
            ResourceState::Ready
        ]
    );
    let upstream = upstream.expect("a ready endpoint has an upstream");
    let endpoint_name = fake.endpoint(&resource.id).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(upstream.base_url, format!("{}/v1", fake.base_url()));
    assert_eq!(upstream.api, UpstreamApi::OpenAi);
    assert_eq!(upstream.model, endpoint_name);
    assert_eq!(
        upstream.headers,
        vec![(
            "authorization".to_owned(),
            format!("Bearer {}", fake_together::API_KEY)
        )]
    );

    let client = reqwest::Client::new();
    let call =
        |stream: bool| {
            let mut request = client.post(format!("{}/chat/completions", upstream.base_url));
            for (name, value) in &upstream.headers {
                request = request.header(name, value);
            }
            request
            .json(&json!({"model": upstream.model, "messages": [{"role": "user", "content": "Hi"}],
                          "max_tokens": 8, "stream": stream}))
            .send()
        };
    let answer: Value = call(false).await.unwrap().json().await.unwrap();
    assert_eq!(
        answer["usage"]["total_tokens"],
        fake_together::PROMPT_TOKENS + fake_together::COMPLETION_TOKENS
    );
    let events = call(true).await.unwrap().text().await.unwrap();
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    let last_chunk: Value = serde_json::from_str(
        events
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last_chunk["usage"]["completion_tokens"],
        fake_together::COMPLETION_TOKENS
    );
    fake.journal.assert_clean();
}

#[tokio::test]
async fn find_and_list_managed_go_by_display_name() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let first = together
        .create(&spec(
            "sy-00000000000000000010",
            "A100-80GB",
            80,
            SCALE_TO_ZERO,
        ))
        .await
        .unwrap();
    let second = together
        .create(&spec("sy-00000000000000000011", "L4", 24, SCALE_TO_ZERO))
        .await
        .unwrap();
    assert_eq!(second.details["hardware"], "1x_nvidia_a100_80gb_sxm");
    fake.add_foreign_endpoint("my own endpoint", "STARTED");

    let found = together
        .find("sy-00000000000000000010")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(
        found.details["endpoint_name"],
        first.details["endpoint_name"]
    );
    assert!(together
        .find("sy-0000000000000000ffff")
        .await
        .unwrap()
        .is_none());
    let mut managed: Vec<String> = together
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .map(|resource| resource.name)
        .collect();
    managed.sort();
    assert_eq!(
        managed,
        vec!["sy-00000000000000000010", "sy-00000000000000000011"]
    );

    // The documented list items carry no display name, so each was read;
    // when the list does carry it, no detail reads are needed.
    fake.set_list_display_names(true);
    let reads_before = fake.journal.count("GET", "/v1/endpoints/");
    assert_eq!(together.list_managed().await.unwrap().len(), 2);
    assert_eq!(fake.journal.count("GET", "/v1/endpoints/"), reads_before);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn update_scaling_patches_autoscaling_and_inactive_timeout() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let resource = together
        .create(&spec("sy-00000000000000000020", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap();
    together
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 2,
                max_workers: 4,
                idle_timeout_seconds: 60,
            },
        )
        .await
        .unwrap();
    together
        .update_scaling(
            &resource,
            &Scaling {
                min_workers: 0,
                max_workers: 1,
                idle_timeout_seconds: 90,
            },
        )
        .await
        .unwrap();
    let path = format!("/v1/endpoints/{}", resource.id);
    assert_eq!(
        fake.journal.bodies("PATCH", &path),
        vec![
            json!({"autoscaling": {"min_replicas": 2, "max_replicas": 4}, "inactive_timeout": 0}),
            json!({"autoscaling": {"min_replicas": 1, "max_replicas": 1}, "inactive_timeout": 2}),
        ]
    );
    let endpoint = fake.endpoint(&resource.id).unwrap();
    assert_eq!(endpoint["autoscaling"]["max_replicas"], 1);
    assert_eq!(endpoint["inactive_timeout"], 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn health_stopped_error_and_delete() {
    let fake = FakeTogether::start().await;
    fake.set_ready_after_polls(1);
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let resource = together
        .create(&spec(
            "sy-00000000000000000030",
            "H100",
            80,
            Scaling {
                min_workers: 2,
                max_workers: 3,
                idle_timeout_seconds: 300,
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        fake.journal.bodies("POST", "/v1/endpoints")[0].get("inactive_timeout"),
        None
    );
    assert_eq!(
        together.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );
    let health = together.health(&resource).await.unwrap();
    assert!(health.reachable);
    assert_eq!(health.workers.ready, 2);

    // The inactive timeout stops the endpoint: not usable until restarted.
    fake.stop_endpoint(&resource.id);
    let status = together.status(&resource).await.unwrap();
    assert_eq!(status.state, ResourceState::Stopped);
    assert!(status.upstream.is_none());
    let health = together.health(&resource).await.unwrap();
    assert!(!health.reachable);
    assert_eq!(health.message.as_deref(), Some("endpoint state is STOPPED"));

    fake.fail_endpoint(&resource.id);
    assert_eq!(
        together.status(&resource).await.unwrap().state,
        ResourceState::Failed
    );

    together.delete(&resource).await.unwrap();
    assert!(fake.endpoint(&resource.id).is_none());
    together.delete(&resource).await.unwrap();
    assert_eq!(
        together.status(&resource).await.unwrap().state,
        ResourceState::Gone
    );
    assert_eq!(fake.journal.count("DELETE", "/v1/endpoints/"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_unknown_endpoint_is_not_found() {
    let fake = FakeTogether::start().await;
    let wrong = provisioner(&fake, Some("not-the-key"));
    let error = wrong
        .create(&spec("sy-00000000000000000040", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    fake.fail_next("GET", "/v1/endpoints", 403, 1, "Forbidden");
    let error = provisioner(&fake, Some(fake_together::API_KEY))
        .list_managed()
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { status: 403, .. }),
        "{error:?}"
    );

    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let ghost = switchyard::providers::ProviderResource {
        provider: ProviderKind::Together,
        id: "endpoint-00000000-0000-4000-8000-00000000dead".to_owned(),
        name: "sy-00000000000000000041".to_owned(),
        details: Default::default(),
    };
    let error = together
        .update_scaling(&ghost, &SCALE_TO_ZERO)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error:?}");
    assert!(!together.health(&ghost).await.unwrap().reachable);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_server_delay() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    let resource = together
        .create(&spec("sy-00000000000000000050", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.journal.count("GET", "/v1/hardware"), 2);
    assert_eq!(fake.journal.count("POST", "/v1/endpoints"), 1);
    // A rate-limited POST was not acted on, so it is sent again too.
    fake.rate_limit_route("POST", "/v1/endpoints", 1, 0);
    together
        .create(&spec("sy-00000000000000000051", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap();
    assert_eq!(fake.journal.count("POST", "/v1/endpoints"), 3);
    assert!(together.find(&resource.name).await.unwrap().is_some());
    fake.journal.assert_clean();
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_not_for_creates() {
    let fake = FakeTogether::start().await;
    fake.set_ready_after_polls(1);
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    let resource = together
        .create(&spec("sy-00000000000000000060", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap();
    fake.fail_next("GET", "/v1/endpoints/", 500, 1, "internal error");
    assert_eq!(
        together.status(&resource).await.unwrap().state,
        ResourceState::Ready
    );
    assert_eq!(fake.journal.count("GET", "/v1/endpoints/"), 2);

    fake.fail_next("POST", "/v1/endpoints", 500, 1, "internal error");
    let error = together
        .create(&spec("sy-00000000000000000061", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(fake.journal.count("POST", "/v1/endpoints"), 2);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn unavailable_hardware_is_no_capacity_without_creating() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, Some(fake_together::API_KEY));
    for status in ["unavailable", "insufficient"] {
        fake.set_no_capacity(status);
        let error = together
            .create(&spec("sy-00000000000000000070", "H100", 80, SCALE_TO_ZERO))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::NoCapacity { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(status), "{error}");
    }
    // Only unavailable hardware fits a small GPU either: still no capacity.
    let error = together
        .create(&spec("sy-00000000000000000071", "T4", 16, SCALE_TO_ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::NoCapacity { .. }),
        "{error:?}"
    );
    fake.set_hardware(Vec::new());
    let error = together
        .create(&spec("sy-00000000000000000072", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unsupported { .. }),
        "{error:?}"
    );
    assert_eq!(fake.journal.count("POST", "/v1/endpoints"), 0);
    fake.journal.assert_clean();
}

#[tokio::test]
async fn without_a_key_it_is_unavailable_and_calls_are_not_configured() {
    let fake = FakeTogether::start().await;
    let together = provisioner(&fake, None);
    let availability = together.availability();
    assert!(!availability.available);
    assert!(availability
        .message
        .as_deref()
        .unwrap()
        .contains("TOGETHER_API_KEY"));
    let error = together
        .create(&spec("sy-00000000000000000080", "H100", 80, SCALE_TO_ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::NotConfigured { .. }),
        "{error:?}"
    );
    assert!(matches!(
        together.list_managed().await.unwrap_err(),
        ProviderError::NotConfigured { .. }
    ));
    assert!(
        provisioner(&fake, Some(fake_together::API_KEY))
            .availability()
            .available
    );
    assert!(fake.journal.requests.lock().unwrap().is_empty());
    fake.journal.assert_clean();
}

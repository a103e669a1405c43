//! Chat completions through the gateway to a model deployed on Replicate (the
//! fake): a real deploy with `provider: "replicate"`, then plain and streamed
//! chat translated into predictions, polling of a prediction that is still
//! running, a prediction that outlives the timeout (504, then canceled), failed
//! and canceled predictions (502), fields and operations the translation
//! refuses (400), and one usage record per admitted request. Every request the
//! gateway sends is checked against the Replicate fixture spec.

mod common;

#[allow(unused_imports)]
use common::deploy::*;

use std::sync::Arc;
use std::time::Duration;

use common::fake_replicate::{self, FakeReplicate, FAKE_OWNER, FAKE_TOKEN};
use common::{Backend, Options, TestServer};
use serde_json::{json, Value};
use switchyard::config::Config;
use switchyard::providers::config::ReplicateConfig;

/// The prompt the template renders for one user message "Hi there".
const PROMPT: &str = "user: Hi there\nassistant:";

/// Server options: the fake Hub, Replicate as the only provider, fast polls.
fn options(hub: &str, replicate: ReplicateConfig) -> Options {
    let hub = hub.to_owned();
    Options {
        configure: Some(Arc::new(move |config: &mut Config| {
            config.providers.hub.base_url = hub.clone();
            // Credentials from the environment must not add providers to the plan.
            config.providers.runpod.api_key = None;
            config.providers.huggingface.token = None;
            config.providers.together.api_key = None;
            config.providers.modal.token_id = None;
            config.providers.modal.token_secret = None;
            config.providers.self_hosted.command = None;
            config.providers.replicate = replicate.clone();
            config.deploy_poll_interval = Duration::from_millis(50);
            config.job_lease = Duration::from_secs(5);
        })),
        ..Options::default()
    }
}

/// A finished Replicate deploy.
struct Deployed {
    endpoint_id: String,
    api_key: String,
    /// `owner/name` of the Replicate deployment.
    deployment: String,
}

/// Deploys the test model to the Replicate fake and waits until it serves.
async fn deploy(server: &TestServer, fake: &FakeReplicate, token: &str, name: &str) -> Deployed {
    let (status, accepted) = server
        .post(
            "/api/v1/endpoints/deploy",
            token,
            json!({"model_id": MODEL_ID, "model_name": name, "provider": "replicate"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
    let done = wait_for_job(server, token, &endpoint_id, "succeeded").await;
    assert_eq!(done["deployment"]["provider"], "replicate", "{done}");
    let api_key = done["api_key"]
        .as_str()
        .expect("the first status after success carries the key")
        .to_owned();
    let (status, body) = server
        .get(&format!("/api/v1/endpoints/{endpoint_id}"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    let endpoint = &body["endpoint"];
    assert_eq!(endpoint["provider"], "replicate", "{endpoint}");
    assert_eq!(endpoint["upstream"]["api"], "replicate", "{endpoint}");
    assert_eq!(endpoint["upstream"]["model"], name, "{endpoint}");
    assert_eq!(endpoint["upstream"]["has_api_key"], true, "{endpoint}");
    let deployment = endpoint["provider_endpoint_id"]
        .as_str()
        .expect("the Replicate deployment")
        .to_owned();
    let base_url = endpoint["upstream"]["base_url"].as_str().unwrap();
    assert_eq!(
        base_url,
        format!("{}/v1/deployments/{deployment}", fake.base_url()),
        "{endpoint}"
    );
    let live = fake
        .deployment(&deployment)
        .expect("the Replicate deployment exists");
    assert_eq!(
        live["current_release"]["configuration"]["min_instances"], 0,
        "scale to zero: {live}"
    );
    Deployed {
        endpoint_id,
        api_key,
        deployment,
    }
}

/// A chat completion through the gateway: (status, body).
async fn post_chat(server: &TestServer, path: &str, key: &str, body: Value) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}{path}", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A streamed chat completion: the `data:` payloads in order.
async fn stream_chat(server: &TestServer, key: &str, body: Value) -> Vec<String> {
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}

async fn usage_records(server: &TestServer, token: &str, endpoint_id: &str) -> Vec<Value> {
    let (status, body) = server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/usage/detailed?limit=100"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// A prediction object as Replicate answers it, for injected answers.
fn prediction(fake: &FakeReplicate, id: &str, status: &str, extra: Value) -> Value {
    let base = fake.base_url();
    let mut prediction = json!({
        "id": id,
        "model": "acme/model",
        "version": "v",
        "status": status,
        "input": {},
        "output": null,
        "error": null,
        "logs": "",
        "metrics": {},
        "created_at": "2026-08-21T10:00:00.000000Z",
        "urls": {
            "get": format!("{base}/v1/predictions/{id}"),
            "cancel": format!("{base}/v1/predictions/{id}/cancel"),
        },
    });
    for (key, value) in extra.as_object().unwrap() {
        prediction[key] = value.clone();
    }
    prediction
}

on_both_backends!(
    replicate_deployments_serve_chat_completions,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let fake = FakeReplicate::start().await;
        fake.set_training_polls(1);
        let server = TestServer::start_with(backend, options(&hub, fake.config())).await;
        let (user_id, token) = server.create_user("replicator").await;
        server.add_credits(&user_id, 100).await;
        let deployed = deploy(&server, &fake, &token, "rep-smol").await;
        let key = deployed.api_key.as_str();
        let predictions = format!("/v1/deployments/{}/predictions", deployed.deployment);
        assert!(deployed
            .deployment
            .starts_with(&format!("{FAKE_OWNER}/sy-")));
        let expected_text: String = fake_replicate::prediction_output(PROMPT).concat();
        let words = PROMPT.split_whitespace().count() as u64;
        let pieces = fake_replicate::prediction_output(PROMPT).len() as u64;

        // Plain: the messages and parameters become one prediction input.
        let response = server
            .http
            .post(format!("{}/v1/chat/completions", server.url))
            .bearer_auth(key)
            .header("x-request-id", "rep-plain-1")
            .json(&json!({
                "model": "rep-smol",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi there"},
                ],
                "max_tokens": 64, "temperature": 0.2, "top_p": 0.9,
                "stop": ["\n\n", "END"], "seed": 7, "user": "end-user-1",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
        let answer: Value = response.json().await.unwrap();
        let id = answer["id"].as_str().unwrap();
        assert!(id.starts_with("chatcmpl-"), "{answer}");
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["model"], "rep-smol");
        assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
        assert_eq!(answer["choices"][0]["message"]["content"], expected_text);
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["prompt_tokens"], words);
        assert_eq!(answer["usage"]["completion_tokens"], pieces);
        assert_eq!(answer["usage"]["total_tokens"], words + pieces);
        let sent = fake.journal.bodies("POST", &predictions);
        assert_eq!(
            sent,
            vec![json!({"input": {
                "prompt": PROMPT,
                "system_prompt": "Be brief.",
                "max_tokens": 64,
                "temperature": 0.2,
                "top_p": 0.9,
                "stop_sequences": "\n\n,END",
                "seed": 7,
            }})]
        );
        // The completion's id names the prediction that produced it.
        let prediction_id = id.strip_prefix("chatcmpl-").unwrap();
        let real = server
            .http
            .get(format!(
                "{}/v1/predictions/{prediction_id}",
                fake.base_url()
            ))
            .bearer_auth(FAKE_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(real.status(), 200);
        let real: Value = real.json().await.unwrap();
        assert_eq!(real["status"], "succeeded", "{real}");
        assert_eq!(real["input"]["prompt"], PROMPT, "{real}");
        assert_eq!(fake.prefer_headers(), vec!["wait=50".to_owned()]);

        // The endpoint-scoped route serves the same translation.
        let (status, answer) = post_chat(
            &server,
            &format!(
                "/api/v1/inference/{}/chat/completions",
                deployed.endpoint_id
            ),
            key,
            json!({"messages": [{"role": "user", "content": "Hi there"}]}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["message"]["content"], expected_text);

        // Streamed with include_usage: role, tokens, finish, usage, [DONE].
        let events = stream_chat(
            &server,
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}],
                   "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        assert_eq!(chunks.len(), 1 + pieces as usize + 2, "{chunks:?}");
        let stream_id = chunks[0]["id"].as_str().unwrap();
        assert!(stream_id.starts_with("chatcmpl-"));
        for chunk in &chunks {
            assert_eq!(chunk["id"], stream_id, "{chunk}");
            assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
            assert_eq!(chunk["model"], "rep-smol", "{chunk}");
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let streamed_text: String = chunks[1..=pieces as usize]
            .iter()
            .map(|chunk| {
                assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null, "{chunk}");
                assert_eq!(chunk["usage"], Value::Null, "{chunk}");
                chunk["choices"][0]["delta"]["content"].as_str().unwrap()
            })
            .collect();
        assert_eq!(streamed_text, expected_text);
        let finish = &chunks[pieces as usize + 1];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{finish}");
        let usage = &chunks[pieces as usize + 2];
        assert_eq!(usage["choices"], json!([]), "{usage}");
        assert_eq!(usage["usage"]["prompt_tokens"], words, "{usage}");
        assert_eq!(usage["usage"]["completion_tokens"], pieces, "{usage}");
        // The stream was created without waiting and read on the streaming host.
        assert_eq!(
            fake.prefer_headers().len(),
            2,
            "{:?}",
            fake.prefer_headers()
        );

        // Streamed without include_usage: no usage anywhere.
        let events = stream_chat(
            &server,
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}], "stream": true}),
        )
        .await;
        assert_eq!(events.len(), 1 + pieces as usize + 2, "{events:?}");
        assert!(
            events.iter().all(|data| !data.contains("usage")),
            "{events:?}"
        );

        // A prediction still running is polled at urls.get until it ends.
        fake.fail_next(
            "POST",
            &predictions,
            201,
            prediction(&fake, "ppoll00000001", "processing", json!({})),
        );
        fake.fail_next(
            "GET",
            "/v1/predictions/ppoll00000001",
            200,
            prediction(
                &fake,
                "ppoll00000001",
                "succeeded",
                json!({"output": ["Polled", " answer"],
                       "metrics": {"predict_time": 1.5, "input_token_count": 3, "output_token_count": 2}}),
            ),
        );
        let (status, answer) = post_chat(
            &server,
            "/v1/chat/completions",
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 2}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["id"], "chatcmpl-ppoll00000001");
        assert_eq!(answer["choices"][0]["message"]["content"], "Polled answer");
        assert_eq!(
            answer["choices"][0]["finish_reason"], "length",
            "max_tokens reached"
        );
        assert_eq!(answer["usage"]["completion_tokens"], 2);
        assert_eq!(
            fake.journal.count("GET", "/v1/predictions/ppoll00000001"),
            1
        );

        // A failed prediction is a 502 with its error.
        fake.fail_next(
            "POST",
            &predictions,
            201,
            prediction(
                &fake,
                "pfail00000001",
                "failed",
                json!({"error": "CUDA out of memory", "metrics": {"predict_time": 0.5}}),
            ),
        );
        let (status, failed) = post_chat(
            &server,
            "/v1/chat/completions",
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}]}),
        )
        .await;
        assert_eq!(status, 502, "{failed}");
        assert_eq!(failed["error"]["code"], "upstream_error", "{failed}");
        assert_eq!(failed["error"]["type"], "server_error", "{failed}");
        let message = failed["error"]["message"].as_str().unwrap();
        assert!(message.contains("CUDA out of memory"), "{message}");
        assert!(message.contains("pfail00000001"), "{message}");

        // A prediction canceled while polled is a 502 as well.
        fake.fail_next(
            "POST",
            &predictions,
            201,
            prediction(&fake, "pcanc00000001", "starting", json!({})),
        );
        fake.fail_next(
            "GET",
            "/v1/predictions/pcanc00000001",
            200,
            prediction(&fake, "pcanc00000001", "canceled", json!({})),
        );
        let (status, canceled) = post_chat(
            &server,
            "/v1/chat/completions",
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}]}),
        )
        .await;
        assert_eq!(status, 502, "{canceled}");
        assert_eq!(canceled["error"]["code"], "upstream_error", "{canceled}");
        assert!(
            canceled["error"]["message"]
                .as_str()
                .unwrap()
                .contains("canceled"),
            "{canceled}"
        );

        // Fields the translation cannot honour, and other operations, are refused
        // before anything reaches Replicate.
        let created_before = fake.journal.count("POST", &predictions);
        let (status, refused) = post_chat(
            &server,
            "/v1/chat/completions",
            key,
            json!({"model": "rep-smol", "messages": [{"role": "user", "content": "Hi there"}],
                   "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]}),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused["error"]["code"], "unsupported_parameter",
            "{refused}"
        );
        assert_eq!(refused["error"]["param"], "tools", "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tools"),
            "{refused}"
        );
        let (status, refused) = post_chat(
            &server,
            "/v1/completions",
            key,
            json!({"model": "rep-smol", "prompt": "Hi there"}),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused["error"]["code"], "unsupported_operation",
            "{refused}"
        );
        let (status, refused) = post_chat(
            &server,
            "/v1/embeddings",
            key,
            json!({"model": "rep-smol", "input": "Hi there"}),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused["error"]["code"], "unsupported_operation",
            "{refused}"
        );
        assert_eq!(fake.journal.count("POST", &predictions), created_before);

        // One usage record per admitted request, none for the refused ones.
        server.settle().await;
        let records = usage_records(&server, &token, &deployed.endpoint_id).await;
        assert_eq!(records.len(), 7, "{records:#?}");
        assert!(records
            .iter()
            .all(|record| record["method"] == "chat.completions"));
        let plain = records
            .iter()
            .find(|record| record["request_id"] == "rep-plain-1")
            .expect("the plain request's record");
        assert_eq!(plain["status_code"], 200, "{plain}");
        assert_eq!(plain["success"], true, "{plain}");
        assert_eq!(plain["streamed"], false, "{plain}");
        assert_eq!(plain["usage_source"], "upstream", "{plain}");
        assert_eq!(plain["input_tokens"], words, "{plain}");
        assert_eq!(plain["output_tokens"], pieces, "{plain}");
        assert_eq!(plain["compute_ms"], 50, "metrics.predict_time: {plain}");
        assert!(plain["cost_micro_usd"].as_i64().unwrap() > 0, "{plain}");
        let streamed: Vec<&Value> = records
            .iter()
            .filter(|record| record["streamed"] == true)
            .collect();
        assert_eq!(streamed.len(), 2, "{records:#?}");
        for record in streamed {
            assert_eq!(record["success"], true, "{record}");
            assert_eq!(record["usage_source"], "upstream", "{record}");
            assert_eq!(record["input_tokens"], words, "{record}");
            assert_eq!(record["output_tokens"], pieces, "{record}");
            assert_eq!(record["compute_ms"], 50, "{record}");
            assert!(record["ttft_ms"].is_u64(), "{record}");
        }
        let polled = records
            .iter()
            .find(|record| record["compute_ms"] == 1500)
            .expect("the polled prediction's record");
        assert_eq!(polled["input_tokens"], 3, "{polled}");
        assert_eq!(polled["output_tokens"], 2, "{polled}");
        let failures: Vec<&Value> = records
            .iter()
            .filter(|record| record["status_code"] == 502)
            .collect();
        assert_eq!(failures.len(), 2, "{records:#?}");
        for record in &failures {
            assert_eq!(record["success"], false, "{record}");
            assert_eq!(record["cost_micro_usd"], 0, "nothing produced: {record}");
        }
        let mut codes: Vec<&str> = failures
            .iter()
            .map(|record| record["error_code"].as_str().unwrap())
            .collect();
        codes.sort_unstable();
        assert_eq!(codes, vec!["upstream_canceled", "upstream_out_of_memory"]);

        fake.journal.assert_clean();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_prediction_times_out_and_is_canceled() {
    let hub = fake_hub().await;
    let fake = FakeReplicate::start().await;
    fake.set_training_polls(1);
    let mut options = options(&hub, fake.config());
    options.upstream_timeout_seconds = Some(1);
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let (user_id, token) = server.create_user("patient").await;
    server.add_credits(&user_id, 100).await;
    let deployed = deploy(&server, &fake, &token, "rep-slow").await;
    let predictions = format!("/v1/deployments/{}/predictions", deployed.deployment);

    // Within the 1 s timeout the prediction never ends: 504, then it is canceled.
    let id = "pslow00000001";
    fake.fail_next(
        "POST",
        &predictions,
        201,
        prediction(&fake, id, "starting", json!({})),
    );
    for _ in 0..10 {
        fake.fail_next(
            "GET",
            &format!("/v1/predictions/{id}"),
            200,
            prediction(&fake, id, "processing", json!({})),
        );
    }
    fake.fail_next(
        "POST",
        &format!("/v1/predictions/{id}/cancel"),
        200,
        prediction(&fake, id, "canceled", json!({})),
    );
    let (status, answer) = post_chat(
        &server,
        "/v1/chat/completions",
        &deployed.api_key,
        json!({"model": "rep-slow", "messages": [{"role": "user", "content": "Hi there"}]}),
    )
    .await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"]["code"], "upstream_timeout", "{answer}");
    let polls = fake.journal.count("GET", &format!("/v1/predictions/{id}"));
    assert!((1..=5).contains(&polls), "{polls} polls in one second");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake
        .journal
        .count("POST", &format!("/v1/predictions/{id}/cancel"))
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the prediction was not canceled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A stream whose prediction fails at once is a 502 before any event.
    fake.fail_next(
        "POST",
        &predictions,
        201,
        prediction(
            &fake,
            "pfail00000002",
            "failed",
            json!({"error": "weights missing"}),
        ),
    );
    let (status, failed) = post_chat(
        &server,
        "/v1/chat/completions",
        &deployed.api_key,
        json!({"model": "rep-slow", "messages": [{"role": "user", "content": "Hi"}], "stream": true}),
    )
    .await;
    assert_eq!(status, 502, "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("weights missing"),
        "{failed}"
    );

    // A prediction that ended before its stream was opened (or a model that
    // does not stream) is sent whole: role, content, finish, usage, [DONE].
    fake.fail_next(
        "POST",
        &predictions,
        201,
        prediction(
            &fake,
            "pdone00000001",
            "succeeded",
            json!({"output": ["All", " at once"],
                   "metrics": {"predict_time": 0.2, "input_token_count": 2, "output_token_count": 3}}),
        ),
    );
    let events = stream_chat(
        &server,
        &deployed.api_key,
        json!({"model": "rep-slow", "messages": [{"role": "user", "content": "Hi"}],
               "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "All at once");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["usage"]["completion_tokens"], 3);
    assert!(chunks
        .iter()
        .all(|chunk| chunk["id"] == "chatcmpl-pdone00000001"));

    server.settle().await;
    let records = usage_records(&server, &token, &deployed.endpoint_id).await;
    let mut outcomes: Vec<(u64, String, bool)> = records
        .iter()
        .map(|record| {
            (
                record["status_code"].as_u64().unwrap(),
                record["error_code"].as_str().unwrap_or_default().to_owned(),
                record["streamed"].as_bool().unwrap(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            (200, String::new(), true),
            (502, "upstream_error".to_owned(), true),
            (504, "upstream_timeout".to_owned(), false),
        ]
    );
    fake.journal.assert_clean();
}

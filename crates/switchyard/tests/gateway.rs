//! The gateway's request path against a fake upstream, on SQLite and PostgreSQL.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fake_upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, STREAM_CHUNKS};
use common::{FakeUpstream, Options, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
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

on_both_backends!(rate_limits_per_minute_and_day, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("rl", &upstream.url("v1")).await;
    let keys = format!("/api/v1/endpoints/{}/keys", tenant.endpoint_id);

    let (_, minute) = server
        .post(
            &keys,
            &tenant.token,
            json!({"name": "m", "rate_limit_per_minute": 3, "rate_limit_per_day": 100}),
        )
        .await;
    let minute_key = minute["api_key"].as_str().unwrap();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = server.chat(minute_key, &tenant.model, false).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "3");
        remaining.push(
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        assert!(response.headers().contains_key("x-ratelimit-reset"));
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let response = server.chat(minute_key, &tenant.model, false).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(error_code(response).await, "rate_limit_minute");

    let (_, day) = server
        .post(
            &keys,
            &tenant.token,
            json!({"name": "d", "rate_limit_per_minute": 10, "rate_limit_per_day": 2}),
        )
        .await;
    let day_key = day["api_key"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(
            server.chat(day_key, &tenant.model, false).await.status(),
            200
        );
    }
    let response = server.chat(day_key, &tenant.model, false).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "rate_limit_day");
    // Limits are per key: the first key is unaffected.
    assert_eq!(
        server
            .chat(&tenant.api_key, &tenant.model, false)
            .await
            .status(),
        200
    );
    // Refused requests never reached the upstream: 3 + 2 + 1 + 1 (tenant() made none).
    assert_eq!(upstream.recorded.count.load(Ordering::SeqCst), 6);
});

on_both_backends!(credits_402_and_exact_charges, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let (user_id, token) = server.create_user("payer").await;
    let (endpoint_id, api_key) = server
        .create_endpoint(&token, "paid", &upstream.url("v1"))
        .await;

    // No balance → 402 before the upstream is called.
    let response = server.chat(&api_key, "paid", false).await;
    assert_eq!(response.status(), 402);
    assert_eq!(error_code(response).await, "insufficient_credits");
    assert_eq!(upstream.recorded.count.load(Ordering::SeqCst), 0);

    let balance = server.add_credits(&user_id, 1).await;
    assert_eq!(balance["balance"], json!(1.0));
    assert_eq!(balance["balance_micro_usd"], 10_000);
    for _ in 0..4 {
        assert_eq!(server.chat(&api_key, "paid", false).await.status(), 200);
    }
    server.settle().await;
    // 11 input × $0.001/1K + 7 output × $0.002/1K = 25 µ$, × 1.2 = 30 µ$ per request.
    let per_request = 30;
    let records = usage_records(&server, &token, &endpoint_id).await;
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|record| record["cost_micro_usd"] == per_request));
    let (_, balance) = server.get("/api/v1/billing/balance", &token).await;
    assert_eq!(balance["balance_micro_usd"], 10_000 - 4 * per_request);
    let (_, ledger) = server.get("/api/v1/billing/ledger", &token).await;
    let entries = ledger["data"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{ledger}");
    let charges: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["kind"] == "charge")
        .collect();
    assert_eq!(charges.len(), 4);
    assert!(charges
        .iter()
        .all(|entry| entry["amount_micro_usd"] == -per_request));
    assert_eq!(
        entries[0]["balance_after_micro_usd"],
        10_000 - 4 * per_request
    );
    assert!(entries
        .iter()
        .any(|entry| entry["kind"] == "topup" && entry["amount_micro_usd"] == 10_000));
    // The persisted balance matches after a restart of the in-memory view.
    let stored = server.state().store.get_user(&user_id).await.unwrap();
    assert_eq!(stored.balance_micro_usd, 10_000 - 4 * per_request);

    // Charges are idempotent per usage record id: writing the same batch again charges nothing.
    let (records, _) = server
        .state()
        .store
        .list_usage(&user_id, &endpoint_id, 10, 0)
        .await
        .unwrap();
    let outcome = server
        .state()
        .store
        .write_usage_batch(&records)
        .await
        .unwrap();
    assert_eq!(outcome.charges, 0);
    assert_eq!(outcome.usage_rows, 0);
    assert_eq!(
        server
            .state()
            .store
            .get_user(&user_id)
            .await
            .unwrap()
            .balance_micro_usd,
        10_000 - 4 * per_request
    );

    // Spend down to zero with an adjustment → 402 again.
    let (status, _) = server
        .post(
            &format!("/api/v1/users/{user_id}/credits"),
            common::ADMIN_TOKEN,
            json!({"credits": -0.988, "reason": "correction"}),
        )
        .await;
    assert_eq!(status, 200);
    let response = server.chat(&api_key, "paid", false).await;
    assert_eq!(response.status(), 402);
});

on_both_backends!(
    usage_matches_upstream_plain_and_streamed,
    |backend| async move {
        let upstream = FakeUpstream::start().await;
        let server = TestServer::start(backend).await;
        let tenant = server.tenant("meter", &upstream.url("v1")).await;

        // Plain.
        let response = server.chat(&tenant.api_key, &tenant.model, false).await;
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);
        assert_eq!(
            upstream.recorded.last_body()["model"],
            common::fake_upstream::UPSTREAM_MODEL
        );

        // Streamed, without include_usage: the gateway asks for it and removes the chunk.
        let response = server.chat(&tenant.api_key, &tenant.model, true).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        assert_eq!(
            upstream.recorded.last_body()["stream_options"]["include_usage"],
            true
        );
        assert!(!text.contains("\"usage\""), "{text}");
        let events: Vec<&str> = text
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .collect();
        assert_eq!(events.len() as u64, STREAM_CHUNKS + 1);
        for (index, event) in events.iter().take(STREAM_CHUNKS as usize).enumerate() {
            assert!(
                event.contains(&format!("tok{index} ")),
                "chunk order: {event}"
            );
        }
        assert_eq!(*events.last().unwrap(), "data: [DONE]");

        // Streamed, with include_usage: the client gets the usage chunk.
        let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"model": tenant.model, "messages": [{"role": "user", "content": "Hi"}], "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap();
        let text = response.text().await.unwrap();
        assert!(
            text.contains(&format!("\"completion_tokens\":{STREAM_CHUNKS}")),
            "{text}"
        );

        // Completions and embeddings, and the per-endpoint route.
        let response = server
            .http
            .post(format!("{}/v1/embeddings", server.url))
            .bearer_auth(&tenant.api_key)
            .json(&json!({"model": tenant.model, "input": "hello", "encoding_format": "base64"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(upstream.recorded.last_body()["encoding_format"], "base64");
        let response = server
            .http
            .post(format!(
                "{}/api/v1/inference/{}/completions",
                server.url, tenant.endpoint_id
            ))
            .bearer_auth(&tenant.api_key)
            .json(&json!({"prompt": "Hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);

        // Upstream that reports no usage → estimated and marked so.
        let (nousage_id, nousage_key) = server
            .create_endpoint(&tenant.token, "nousage", &upstream.url("nousage"))
            .await;
        assert_eq!(
            server.chat(&nousage_key, "nousage", false).await.status(),
            200
        );

        server.settle().await;
        let records = usage_records(&server, &tenant.token, &tenant.endpoint_id).await;
        assert_eq!(records.len(), 5);
        let by_method = |method: &str| {
            records
                .iter()
                .filter(|record| record["method"] == method)
                .cloned()
                .collect::<Vec<_>>()
        };
        let chats = by_method("chat.completions");
        assert_eq!(chats.len(), 3);
        let plain = chats
            .iter()
            .find(|record| record["request_id"] == request_id)
            .unwrap();
        assert_eq!(
            (
                plain["input_tokens"].as_u64(),
                plain["output_tokens"].as_u64()
            ),
            (Some(PROMPT_TOKENS), Some(COMPLETION_TOKENS))
        );
        assert_eq!(plain["usage_source"], "upstream");
        let streamed: Vec<&Value> = chats
            .iter()
            .filter(|record| record["streamed"] == true)
            .collect();
        assert_eq!(streamed.len(), 2);
        for record in streamed {
            assert_eq!(record["input_tokens"], PROMPT_TOKENS);
            assert_eq!(record["output_tokens"], STREAM_CHUNKS);
            assert_eq!(record["usage_source"], "upstream");
            assert!(record["ttft_ms"].is_u64());
        }
        assert_eq!(by_method("embeddings")[0]["input_tokens"], 5);
        assert_eq!(by_method("completions")[0]["output_tokens"], 4);
        let estimated = usage_records(&server, &tenant.token, &nousage_id).await;
        assert_eq!(estimated[0]["usage_source"], "estimated");
        assert!(estimated[0]["output_tokens"].as_u64().unwrap() > 0);

        let (_, summary) = server
            .get(
                &format!("/api/v1/endpoints/{}/usage?period=day", tenant.endpoint_id),
                &tenant.token,
            )
            .await;
        let usage = &summary["usage"];
        assert_eq!(usage["requests"], 5);
        assert_eq!(usage["errors"], 0);
        assert_eq!(usage["input_tokens"], PROMPT_TOKENS * 3 + 5 + 9);
        assert_eq!(
            usage["output_tokens"],
            COMPLETION_TOKENS + 2 * STREAM_CHUNKS + 4
        );
        assert!(
            usage["latency_ms"]["p50"].as_u64().unwrap()
                <= usage["latency_ms"]["p99"].as_u64().unwrap()
        );
        assert!(usage["credits"].as_f64().unwrap() > 0.0);
        for period in ["week", "month"] {
            let (status, _) = server
                .get(
                    &format!(
                        "/api/v1/endpoints/{}/usage?period={period}",
                        tenant.endpoint_id
                    ),
                    &tenant.token,
                )
                .await;
            assert_eq!(status, 200);
        }
        let (status, _) = server
            .get(
                &format!("/api/v1/endpoints/{}/usage?period=year", tenant.endpoint_id),
                &tenant.token,
            )
            .await;
        assert_eq!(status, 400);
    }
);

on_both_backends!(
    stream_is_not_buffered_and_disconnect_cancels,
    |backend| async move {
        let upstream = FakeUpstream::start().await;
        let server = TestServer::start(backend).await;
        let tenant = server.tenant("sse", &upstream.url("held")).await;

        // The upstream holds the stream after its first chunk until we release it:
        // receiving that chunk proves the gateway does not wait for the whole response.
        let response = server.chat(&tenant.api_key, &tenant.model, true).await;
        let mut body = response.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("first chunk was buffered")
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&first).contains("tok0"));
        upstream.recorded.release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = body.next().await {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));

        // Client disconnect mid-stream cancels the upstream and still records usage.
        let response = server.chat(&tenant.api_key, &tenant.model, true).await;
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("tok0"));
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !upstream.recorded.stream_cancelled.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the upstream stream was not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.settle().await;
        let records = usage_records(&server, &tenant.token, &tenant.endpoint_id).await;
        assert_eq!(records.len(), 2);
        let cut = records
            .iter()
            .find(|record| record["error_code"] == "client_disconnected")
            .expect("disconnect recorded");
        assert_eq!(cut["success"], false);
        assert!(cut["output_tokens"].as_u64().unwrap() >= 1, "{cut}");
        assert_eq!(cut["usage_source"], "estimated");
        let complete = records
            .iter()
            .find(|record| record["success"] == true)
            .unwrap();
        assert_eq!(complete["output_tokens"], STREAM_CHUNKS);
    }
);

on_both_backends!(upstream_failures_and_bad_requests, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start_with(
        backend,
        Options {
            max_body_bytes: Some(4096),
            upstream_timeout_seconds: Some(1),
            // One attempt: this test is about how a failure is reported;
            // retries have their own tests (tests/resilience.rs).
            configure: Some(std::sync::Arc::new(
                |config: &mut switchyard::config::Config| {
                    config.resilience.max_attempts = 1;
                },
            )),
            ..Options::default()
        },
    )
    .await;
    let tenant = server.tenant("faults", &upstream.url("v1")).await;

    // Upstream down → 502 endpoint_error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let (_, down_key) = server
        .create_endpoint_unchecked(&tenant.token, "down", &closed_url)
        .await;
    let response = server.chat(&down_key, "down", false).await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "endpoint_error");

    // Slow → 504 upstream_timeout.
    let (_, slow_key) = server
        .create_endpoint(&tenant.token, "slow", &upstream.url("slow"))
        .await;
    let started = Instant::now();
    let response = server.chat(&slow_key, "slow", false).await;
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(error_code(response).await, "upstream_timeout");

    // 5xx and 4xx from the upstream pass through with their bodies.
    let (_, error_key) = server
        .create_endpoint(&tenant.token, "boom", &upstream.url("error500"))
        .await;
    let response = server.chat(&error_key, "boom", false).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "upstream exploded");
    let (_, bad_key) = server
        .create_endpoint(&tenant.token, "picky", &upstream.url("error400"))
        .await;
    let response = server.chat(&bad_key, "picky", true).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "exceed_context_size_error");

    // Body over the limit → 413, with and without a Content-Length.
    let big =
        json!({"model": tenant.model, "messages": [{"role": "user", "content": "x".repeat(8000)}]});
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "request_too_large");
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1000])));
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Malformed JSON and invalid fields → 400 in OpenAI's shape.
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].is_string());
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"model": tenant.model, "messages": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages");
    let response = server.chat(&tenant.api_key, "no-such-model", false).await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "endpoint_not_found");

    // A stopped endpoint refuses; scaling answers 503 endpoint_scaling.
    let (status, _) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/endpoints/{}", tenant.endpoint_id),
            &tenant.token,
            Some(json!({"status": "stopped"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .chat(&tenant.api_key, &tenant.model, false)
            .await
            .status(),
        503
    );

    server.settle().await;
    let (_, usage) = server
        .get(
            &format!("/api/v1/endpoints/{}/usage", tenant.endpoint_id),
            &tenant.token,
        )
        .await;
    assert_eq!(
        usage["usage"]["requests"], 0,
        "refused requests are not usage"
    );
});

on_both_backends!(models_status_request_id_and_metrics, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("obs", &upstream.url("v1")).await;

    let response = server
        .http
        .get(format!("{}/v1/models", server.url))
        .bearer_auth(&tenant.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let models: Value = response.json().await.unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], tenant.model);

    let response = server
        .http
        .get(format!(
            "{}/api/v1/inference/{}/status",
            server.url, tenant.endpoint_id
        ))
        .bearer_auth(&tenant.api_key)
        .send()
        .await
        .unwrap();
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["ready"], true);

    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .header("x-request-id", "client-chosen-42")
        .json(&json!({"model": tenant.model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    assert_eq!(
        upstream.recorded.last_headers()["x-request-id"],
        "client-chosen-42"
    );
    let response = server.chat(&tenant.api_key, &tenant.model, false).await;
    assert!(!response.headers()["x-request-id"].is_empty());

    for path in ["/healthz", "/readyz"] {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = server
        .http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchyard_requests_total"), "{metrics}");
    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "/metrics names every tenant's endpoints: admin only"
    );
    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        metrics.contains("switchyard_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let response = server
        .http
        .get(format!("{}/nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");
    let response = server
        .http
        .get(format!("{}/v1/chat/completions", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // Query parameters of the wrong type are 400s naming the parameter.
    let (status, body) = server
        .get("/api/v1/billing/ledger?page=abc", &tenant.token)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "page");
    let (status, body) = server
        .get(
            "/api/v1/billing/ledger?page=9223372036854775807&limit=2",
            &tenant.token,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "page");
});

on_both_backends!(cut_requests_are_still_metered, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let mut server = TestServer::start_with(
        backend,
        Options {
            shutdown_grace_seconds: Some(1),
            ..Options::default()
        },
    )
    .await;
    let tenant = server.tenant("cut", &upstream.url("slow")).await;

    // A client that gives up on a slow, non-streamed call: the record says so.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = impatient
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"model": tenant.model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await;
    assert!(result.is_err(), "the client timed out");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        server.settle().await;
        let records = usage_records(&server, &tenant.token, &tenant.endpoint_id).await;
        if let Some(record) = records.first() {
            assert_eq!(record["error_code"], "client_disconnected");
            assert_eq!(
                record["cost_micro_usd"], 0,
                "nothing was produced, nothing is charged"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut request was never recorded"
        );
    }

    // A stream still running when the grace period ends is closed and recorded.
    let (held_id, held_key) = server
        .create_endpoint(&tenant.token, "held", &upstream.url("held"))
        .await;
    let response = server.chat(&held_key, "held", true).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tok0"));
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            rest.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&rest).into_owned()
    });
    let started = Instant::now();
    let totals = server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(totals.usage_rows >= 1);
    let rest = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(rest.contains("server_shutting_down"), "{rest}");
    let reopened = match &server.database_url {
        Some(url) => switchyard::store::Store::connect(url).await.unwrap(),
        None => switchyard::store::Store::open_sqlite(server.data_dir.path())
            .await
            .unwrap(),
    };
    let (records, _) = reopened
        .list_usage(&tenant.user_id, &held_id, 10, 0)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].error_code.as_deref(),
        Some("server_shutting_down")
    );
    assert!(records[0].output_tokens >= 1);
});

on_both_backends!(
    a_client_that_leaves_after_done_completed_its_stream,
    |backend| async move {
        // The upstream closes its body two seconds after `[DONE]`; the SDKs
        // close the connection at `[DONE]`. That request is complete.
        let upstream = FakeUpstream::start().await;
        let server = TestServer::start(backend).await;
        let tenant = server.tenant("done", &upstream.url("lingering")).await;
        let response = server.chat(&tenant.api_key, &tenant.model, true).await;
        let mut body = response.bytes_stream();
        let mut seen = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            seen.extend_from_slice(&chunk);
            if String::from_utf8_lossy(&seen).contains("data: [DONE]") {
                break;
            }
        }
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(5);
        let records = loop {
            let (records, _) = server
                .state()
                .store
                .list_usage(&tenant.user_id, &tenant.endpoint_id, 10, 0)
                .await
                .unwrap();
            if !records.is_empty() {
                break records;
            }
            assert!(Instant::now() < deadline, "no usage record");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(records.len(), 1);
        assert!(records[0].success, "{:?}", records[0]);
        assert_eq!(records[0].error_code, None);
        assert_eq!(
            records[0].output_tokens,
            common::fake_upstream::STREAM_CHUNKS
        );
    }
);

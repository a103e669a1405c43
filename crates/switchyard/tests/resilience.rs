//! Fault injection across an endpoint's backends: retries, circuit breakers,
//! Retry-After, timeouts and budgets, streams, fallbacks, balancing
//! strategies, traffic splits and active health checks. The measured figures
//! are printed (`cargo test --test resilience -- --nocapture`).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, STREAM_CHUNKS, UPSTREAM_MODEL};
use common::{Backend, FakeUpstream, Options, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard::gateway::backend::BreakerSettings;
use switchyard::gateway::resilience::Resilience;

/// Fast, deterministic defaults: quick backoff, no health checker.
fn settings() -> Resilience {
    Resilience {
        max_attempts: 3,
        budget: Duration::from_secs(10),
        backoff_base: Duration::from_millis(10),
        breaker: BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_millis(500),
        },
        health_interval: None,
        health_failures: 2,
    }
}

async fn server_with(resilience: Resilience) -> TestServer {
    server_configured(move |config| config.resilience = resilience).await
}

async fn server_configured(
    configure: impl Fn(&mut switchyard::config::Config) + Send + Sync + 'static,
) -> TestServer {
    TestServer::start_with(
        Backend::Sqlite,
        Options {
            configure: Some(Arc::new(configure)),
            ..Options::default()
        },
    )
    .await
}

struct Site {
    token: String,
}

async fn site_on(server: &TestServer, name: &str) -> Site {
    let (user_id, token) = server.create_user(name).await;
    server.add_credits(&user_id, 100_000).await;
    Site { token }
}

fn openai(base_url: &str) -> Value {
    json!({"base_url": base_url, "model": UPSTREAM_MODEL, "api_key": "k"})
}

/// An endpoint on `upstream` plus `extra` fields; returns (id, api key).
async fn endpoint(
    server: &TestServer,
    site: &Site,
    name: &str,
    upstream: Value,
    extra: Value,
) -> (String, String) {
    let mut definition = json!({"name": name, "modality": "llm", "provider": "external",
        "upstream": upstream,
        "key": {"name": "k", "rate_limit_per_minute": 100000, "rate_limit_per_day": 1000000}});
    for (field, value) in extra.as_object().unwrap() {
        definition[field] = value.clone();
    }
    let (status, body) = server
        .post("/api/v1/endpoints", &site.token, definition)
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["endpoint"]["id"].as_str().unwrap().to_owned(),
        body["api_key"].as_str().unwrap().to_owned(),
    )
}

async fn add_backend(
    server: &TestServer,
    site: &Site,
    endpoint_id: &str,
    version: &str,
    weight: u32,
    base_url: &str,
) -> String {
    let (status, body) = server
        .post(
            &format!("/api/v1/endpoints/{endpoint_id}/backends"),
            &site.token,
            json!({"version": version, "weight": weight, "upstream": openai(base_url)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn put_traffic(server: &TestServer, site: &Site, endpoint_id: &str, body: Value) -> Value {
    let (status, body) = server
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/endpoints/{endpoint_id}/traffic"),
            &site.token,
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The ids of an endpoint's backends (its own upstream first).
async fn backend_ids(server: &TestServer, site: &Site, endpoint_id: &str) -> Vec<String> {
    let (status, body) = server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/backends"),
            &site.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|backend| backend["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The live figures of one backend (`live` of `GET …/backends`).
async fn live(server: &TestServer, site: &Site, endpoint_id: &str, backend_id: &str) -> Value {
    let (status, body) = server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/backends"),
            &site.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|backend| backend["id"] == backend_id)
        .unwrap_or_else(|| panic!("no backend {backend_id} in {body}"))["live"]
        .clone()
}

async fn usage_records(server: &TestServer, site: &Site, endpoint_id: &str) -> Vec<Value> {
    server.settle().await;
    let (status, body) = server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/usage/detailed?limit=100"),
            &site.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// One non-streamed chat: (status, body, elapsed).
async fn chat(server: &TestServer, key: &str, model: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = server.chat(key, model, false).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let elapsed = started.elapsed();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        elapsed,
    )
}

fn calls(fake: &FakeUpstream) -> usize {
    fake.recorded.count.load(Ordering::SeqCst)
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `runs` requests `concurrency` at a time; returns (statuses, latencies).
async fn load(
    server: &TestServer,
    key: &str,
    model: &str,
    runs: usize,
    concurrency: usize,
) -> (Vec<u16>, Vec<Duration>) {
    let results: Vec<(u16, Value, Duration)> = futures_util::stream::iter(0..runs)
        .map(|_| chat(server, key, model))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    (
        results.iter().map(|(status, _, _)| *status).collect(),
        results.iter().map(|(_, _, elapsed)| *elapsed).collect(),
    )
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resetting_backend_loses_no_request_and_its_breaker_cycles() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "reset").await;

    // Baseline: two healthy backends.
    let (h1, h2) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (healthy_id, healthy_key) =
        endpoint(&server, &site, "healthy", openai(&h1.url("v1")), json!({})).await;
    add_backend(&server, &site, &healthy_id, "1.0", 100, &h2.url("v1")).await;
    let (statuses, baseline) = load(&server, &healthy_key, "healthy", 100, 1).await;
    assert!(statuses.iter().all(|status| *status == 200));
    assert_eq!((calls(&h1), calls(&h2)), (50, 50), "round robin");

    // One backend resets every connection.
    let (good, bad) = (FakeUpstream::start().await, FakeUpstream::start().await);
    bad.set_mode_override(Some("reset"));
    let (id, key) = endpoint(&server, &site, "faulty", openai(&good.url("v1")), json!({})).await;
    let bad_id = add_backend(&server, &site, &id, "1.0", 100, &bad.url("v1")).await;
    assert_eq!(
        live(&server, &site, &id, &bad_id).await["breaker"],
        "closed"
    );
    let mut lost = 0;
    let mut retried = Vec::new();
    while bad.faults().count("reset") < 3 {
        let resets = bad.faults().count("reset");
        let (status, body, elapsed) = chat(&server, &key, "faulty").await;
        assert_eq!(status, 200, "{body}");
        if bad.faults().count("reset") > resets {
            retried.push(elapsed);
        }
        assert!(calls(&good) < 10, "the bad backend is picked in turn");
    }
    let opened_at = Instant::now();
    let state = live(&server, &site, &id, &bad_id).await;
    assert_eq!(state["breaker"], "open", "threshold 3 reached: {state}");
    assert_eq!(bad.faults().count("reset"), 3);

    let resets_before = bad.faults().count("reset");
    let (statuses, sequential) = load(&server, &key, "faulty", 100, 1).await;
    lost += statuses.iter().filter(|status| **status != 200).count();
    let (statuses, concurrent) = load(&server, &key, "faulty", 50, 50).await;
    lost += statuses.iter().filter(|status| **status != 200).count();
    assert_eq!(lost, 0, "every request answered");
    let probes = bad.faults().count("reset") - resets_before;
    let (baseline_concurrent_statuses, baseline_concurrent) =
        load(&server, &healthy_key, "healthy", 50, 50).await;
    assert!(baseline_concurrent_statuses
        .iter()
        .all(|status| *status == 200));

    // The cost of the retry itself: the same faulty pair behind a breaker that never opens.
    let mut never_opens = settings();
    never_opens.breaker.failure_threshold = u32::MAX;
    let unguarded = server_with(never_opens).await;
    let unguarded_site = site_on(&unguarded, "unguarded").await;
    let (good2, bad2) = (FakeUpstream::start().await, FakeUpstream::start().await);
    bad2.set_mode_override(Some("reset"));
    let (id2, key2) = endpoint(
        &unguarded,
        &unguarded_site,
        "faulty",
        openai(&good2.url("v1")),
        json!({}),
    )
    .await;
    add_backend(
        &unguarded,
        &unguarded_site,
        &id2,
        "1.0",
        100,
        &bad2.url("v1"),
    )
    .await;
    let (statuses, unguarded_sequential) = load(&unguarded, &key2, "faulty", 100, 1).await;
    let unguarded_lost = statuses.iter().filter(|status| **status != 200).count();
    let (statuses, unguarded_concurrent) = load(&unguarded, &key2, "faulty", 50, 50).await;
    let unguarded_lost_concurrent = statuses.iter().filter(|status| **status != 200).count();
    assert_eq!(
        unguarded_lost + unguarded_lost_concurrent,
        0,
        "every request answered"
    );
    assert_eq!(
        bad2.faults().count("reset"),
        75,
        "every other request hit the reset backend"
    );
    assert_eq!(calls(&good2), 150);

    println!("\nreset backend, round robin over 2 backends (breaker threshold 3, open_for 500 ms)");
    println!("| run | requests | lost | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, samples, lost) in [
        ("2 healthy, sequential", &baseline, 0),
        ("1 reset, breaker open, sequential", &sequential, 0),
        (
            "1 reset, breaker never opens, sequential",
            &unguarded_sequential,
            unguarded_lost,
        ),
        (
            "requests retried after a reset (before the breaker opened)",
            &retried,
            0,
        ),
        ("2 healthy, 50 concurrent", &baseline_concurrent, 0),
        ("1 reset, breaker open, 50 concurrent", &concurrent, 0),
        (
            "1 reset, breaker never opens, 50 concurrent",
            &unguarded_concurrent,
            unguarded_lost_concurrent,
        ),
    ] {
        println!(
            "| {name} | {} | {lost} | {:.2} | {:.2} |",
            samples.len(),
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.99)),
        );
    }
    println!(
        "half-open probes to the reset backend during the 150 requests ({:.0} ms): {probes}",
        ms(opened_at.elapsed())
    );
    // One probe per open period at most.
    let periods = (opened_at.elapsed().as_millis() / 500) as usize + 1;
    assert!(probes <= periods, "{probes} probes in {periods} periods");

    // After open_for the breaker reads half-open; the probe fails and it opens again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        live(&server, &site, &id, &bad_id).await["breaker"],
        "half_open"
    );
    let before = bad.faults().count("reset");
    while bad.faults().count("reset") == before {
        let (status, _, _) = chat(&server, &key, "faulty").await;
        assert_eq!(status, 200);
    }
    assert_eq!(live(&server, &site, &id, &bad_id).await["breaker"], "open");

    // The backend recovers: the next probe succeeds and closes the breaker.
    bad.set_mode_override(None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        live(&server, &site, &id, &bad_id).await["breaker"],
        "half_open"
    );
    let before = calls(&bad);
    while calls(&bad) == before {
        let (status, _, _) = chat(&server, &key, "faulty").await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        live(&server, &site, &id, &bad_id).await["breaker"],
        "closed"
    );
    let (good_before, bad_before) = (calls(&good), calls(&bad));
    let (statuses, _) = load(&server, &key, "faulty", 20, 1).await;
    assert!(statuses.iter().all(|status| *status == 200));
    assert_eq!(calls(&good) - good_before, 10, "traffic is shared again");
    assert_eq!(calls(&bad) - bad_before, 10);

    // Requests that hit the reset backend were answered by the other one, in 2 attempts.
    let records = usage_records(&server, &site, &id).await;
    assert!(records.iter().all(|record| record["status_code"] == 200));
    assert!(records
        .iter()
        .any(|record| record["attempts"] == 2 && record["backend_id"] == json!(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_client_errors_are_not_retried() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "retry").await;
    let flaky = FakeUpstream::start().await;
    let (id, key) = endpoint(
        &server,
        &site,
        "flaky",
        openai(&flaky.url("flaky")),
        json!({}),
    )
    .await;

    // flaky: the first of every 2 requests is a 503 with Retry-After: 1.
    let (status, body, elapsed) = chat(&server, &key, "flaky").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(flaky.faults().flaky_failures(), 1);
    assert_eq!(flaky.faults().count("flaky"), 2);
    assert!(
        elapsed >= Duration::from_secs(1),
        "waited {elapsed:?}, less than Retry-After"
    );
    assert!(elapsed < Duration::from_millis(1800), "{elapsed:?}");
    let records = usage_records(&server, &site, &id).await;
    assert_eq!(records.len(), 1, "charged once");
    assert_eq!(records[0]["attempts"], 2);
    assert_eq!(records[0]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(records[0]["output_tokens"], COMPLETION_TOKENS);
    println!(
        "\n503 + Retry-After: 1 on the only backend: answered 200 after {:.0} ms (2 attempts)",
        ms(elapsed)
    );

    // 400 and 401 are final, even with another healthy backend available.
    for mode in ["error400", "error401"] {
        let (bad, spare) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let (id, key) = endpoint(&server, &site, mode, openai(&bad.url("v1")), json!({})).await;
        add_backend(&server, &site, &id, "1.0", 100, &spare.url("v1")).await;
        bad.set_mode_override(Some(mode));
        let mut refused = 0;
        for _ in 0..4 {
            let (status, body, _) = chat(&server, &key, mode).await;
            match status {
                200 => {}
                400 | 401 => {
                    refused += 1;
                    assert_eq!(status.to_string(), mode.trim_start_matches("error"));
                    assert!(body["error"]["message"].is_string(), "{body}");
                }
                other => panic!("{mode}: unexpected {other} {body}"),
            }
        }
        assert_eq!(
            refused, 2,
            "{mode}: round robin sent half to the bad backend"
        );
        assert_eq!(
            bad.faults().count(mode),
            2,
            "{mode}: one call each, no retry"
        );
        assert_eq!(calls(&spare), 2, "{mode}: the spare got only its own turns");
        let records = usage_records(&server, &site, &id).await;
        assert!(
            records.iter().all(|record| record["attempts"] == 1),
            "{records:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_and_the_budget_bounds_the_total() {
    let mut resilience = settings();
    resilience.budget = Duration::from_millis(1500);
    resilience.breaker.failure_threshold = 100;
    let server = server_with(resilience).await;
    let site = site_on(&server, "slow").await;

    // One slow (3 s) backend, one fast; attempts time out after 1 s.
    let (slow, fast) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "slowish",
        openai(&slow.url("slow")),
        json!({"timeout_seconds": 1}),
    )
    .await;
    add_backend(&server, &site, &id, "1.0", 100, &fast.url("v1")).await;
    let mut timings = Vec::new();
    for _ in 0..4 {
        let (status, body, elapsed) = chat(&server, &key, "slowish").await;
        assert_eq!(status, 200, "{body}");
        timings.push(elapsed);
    }
    assert_eq!(calls(&slow), 2);
    assert_eq!(calls(&fast), 4, "2 own turns + 2 retries");
    timings.sort();
    assert!(timings[1] < Duration::from_millis(500), "{timings:?}");
    assert!(timings[2] >= Duration::from_secs(1), "{timings:?}");
    assert!(timings[3] < Duration::from_millis(1800), "{timings:?}");

    // Both backends slow: the second attempt starts within the 1.5 s budget, no third.
    let (slow_a, slow_b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "allslow",
        openai(&slow_a.url("slow")),
        json!({"timeout_seconds": 1}),
    )
    .await;
    add_backend(&server, &site, &id, "1.0", 100, &slow_b.url("slow")).await;
    let (status, body, elapsed) = chat(&server, &key, "allslow").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(
        calls(&slow_a) + calls(&slow_b),
        2,
        "max_attempts is 3, the budget stopped it"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_millis(2600),
        "{elapsed:?}"
    );
    let records = usage_records(&server, &site, &id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["attempts"], 2);
    assert_eq!(records[0]["error_code"], "upstream_timeout");
    println!(
        "\nslow backend, timeout 1 s: fast path {:.0} ms, retried {:.0} ms; both slow, budget 1.5 s: 504 after {:.0} ms (2 attempts)",
        ms(timings[0]),
        ms(timings[3]),
        ms(elapsed)
    );
}

/// A streamed chat: (status, body text or the error that ended it, completed).
async fn stream_chat(server: &TestServer, key: &str, model: &str) -> (u16, String, bool) {
    let response = server.chat(key, model, true).await;
    let status = response.status().as_u16();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(piece) = body.next().await {
        match piece {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(error) => return (status, format!("{text}\n<error: {error}>"), false),
        }
    }
    (status, text, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_retried_only_before_their_first_byte() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "streams").await;

    // Both backends die mid-stream: the first one's failure reaches the client.
    let (dying_a, dying_b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "dying",
        openai(&dying_a.url("dies_midstream")),
        json!({}),
    )
    .await;
    add_backend(
        &server,
        &site,
        &id,
        "1.0",
        100,
        &dying_b.url("dies_midstream"),
    )
    .await;
    let (status, text, _) = stream_chat(&server, &key, "dying").await;
    assert_eq!(status, 200, "the head was relayed");
    assert!(text.contains("tok0"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(
        text.contains("<error") || text.contains("\"error\""),
        "the client sees a broken or errored stream: {text}"
    );
    assert_eq!(
        calls(&dying_a) + calls(&dying_b),
        1,
        "not retried after the first byte"
    );
    let records = usage_records(&server, &site, &id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["streamed"], true);
    assert_eq!(records[0]["attempts"], 1);
    assert!(records[0]["error_code"].is_string(), "{}", records[0]);
    assert_eq!(records[0]["success"], false);
    println!(
        "\ndies_midstream: client got 200 + {} bytes, then {:?}; 1 upstream call; record error_code {}",
        text.find("\n<error").unwrap_or(text.len()),
        text.rsplit_once('\n').map_or("", |(_, tail)| tail),
        records[0]["error_code"]
    );

    // Streams cut mid-way are not retried, but each counts against its
    // backend's breaker: after `failure_threshold` (3) cuts each, both open.
    for _ in 0..5 {
        let (status, _, completed) = stream_chat(&server, &key, "dying").await;
        assert_eq!(status, 200);
        assert!(!completed);
    }
    assert_eq!(calls(&dying_a) + calls(&dying_b), 6);
    let backends = backend_ids(&server, &site, &id).await;
    for backend_id in &backends {
        assert_eq!(
            live(&server, &site, &id, backend_id).await["breaker"],
            "open",
            "3 mid-stream breaks open the breaker"
        );
    }
    let (status, text, _) = stream_chat(&server, &key, "dying").await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(
        calls(&dying_a) + calls(&dying_b),
        6,
        "open breakers take no traffic"
    );

    // A 503 before any byte is retried on the other backend.
    let (down, up) = (FakeUpstream::start().await, FakeUpstream::start().await);
    down.set_mode_override(Some("error503"));
    let (id, key) = endpoint(
        &server,
        &site,
        "retried",
        openai(&down.url("v1")),
        json!({}),
    )
    .await;
    add_backend(&server, &site, &id, "1.0", 100, &up.url("v1")).await;
    for _ in 0..2 {
        let started = Instant::now();
        let (status, text, completed) = stream_chat(&server, &key, "retried").await;
        assert_eq!(status, 200, "{text}");
        assert!(completed && text.contains("data: [DONE]"), "{text}");
        let content: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "another backend: no Retry-After wait"
        );
    }
    assert_eq!(calls(&up), 2);
    assert_eq!(
        down.faults().count("error503"),
        1,
        "only the first request picked it"
    );
    let records = usage_records(&server, &site, &id).await;
    assert_eq!(records.len(), 2);
    let retried = records
        .iter()
        .find(|record| record["attempts"] == 2)
        .unwrap();
    assert_eq!(retried["success"], true);
    assert_eq!(retried["input_tokens"], PROMPT_TOKENS);
    assert_eq!(retried["output_tokens"], STREAM_CHUNKS);
    assert_eq!(retried["usage_source"], "upstream");
}

async fn balance_micros(server: &TestServer, site: &Site) -> i64 {
    let (status, body) = server.get("/api/v1/billing/balance", &site.token).await;
    assert_eq!(status, 200, "{body}");
    body["balance_micro_usd"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_falls_back_and_charges_once_at_the_fallbacks_tariff() {
    let mut resilience = settings();
    resilience.breaker = BreakerSettings {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    };
    // No markup, so the charge is the tariff itself.
    let server = server_configured(move |config| {
        config.resilience = resilience;
        config.markup_basis_points = 10_000;
    })
    .await;
    let site = site_on(&server, "fallback").await;
    let (broken, spare) = (FakeUpstream::start().await, FakeUpstream::start().await);
    broken.set_mode_override(Some("reset"));
    let (b_id, _) = endpoint(
        &server,
        &site,
        "spare",
        openai(&spare.url("v1")),
        json!({"pricing": {"input_per_1k_tokens_usd": "1", "output_per_1k_tokens_usd": "2"}}),
    )
    .await;
    let (a_id, a_key) = endpoint(
        &server,
        &site,
        "primary",
        openai(&broken.url("v1")),
        json!({"pricing": {"input_per_1k_tokens_usd": "50", "output_per_1k_tokens_usd": "50"}}),
    )
    .await;
    let routing = put_traffic(
        &server,
        &site,
        &a_id,
        json!({"fallback_endpoint_ids": [b_id]}),
    )
    .await;
    assert_eq!(routing["fallback_endpoint_ids"], json!([b_id]));

    let before = balance_micros(&server, &site).await;
    for _ in 0..5 {
        let (status, body, _) = chat(&server, &a_key, "primary").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    }
    assert_eq!(calls(&spare), 5, "B answered every request");
    assert_eq!(
        broken.faults().count("reset"),
        1,
        "A's breaker opened after one reset"
    );
    // B's tariff: 11 × $1/1k + 7 × $2/1k = $0.025 = 25 000 µ$.
    let expected = i64::try_from(PROMPT_TOKENS * 1_000 + COMPLETION_TOKENS * 2_000).unwrap();
    let records = usage_records(&server, &site, &a_id).await;
    assert_eq!(records.len(), 5, "one record per request: {records:?}");
    for record in &records {
        assert_eq!(record["backend_id"], json!(b_id), "{record}");
        assert_eq!(record["cost_micro_usd"], expected, "{record}");
        assert_eq!(record["input_tokens"], PROMPT_TOKENS);
        assert_eq!(record["success"], true);
    }
    let first = records.last().unwrap();
    assert_eq!(first["attempts"], 2, "A's attempt, then B: {first}");
    assert!(
        records[..4].iter().all(|record| record["attempts"] == 1),
        "A's breaker is open"
    );
    assert!(
        usage_records(&server, &site, &b_id).await.is_empty(),
        "not charged again on B"
    );
    let after = balance_micros(&server, &site).await;
    assert_eq!(before - after, 5 * expected, "debited once per request");
    println!("\nfallback A → B: 5/5 answered by B, first in 2 attempts, each charged {expected} µ$ (B's tariff)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_and_least_connections_strategies() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "strategies").await;

    // Weighted 3:1 (the primary weighs 100, the extra backend 300).
    let (light, heavy) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "weighted",
        openai(&light.url("v1")),
        json!({}),
    )
    .await;
    add_backend(&server, &site, &id, "1.0", 300, &heavy.url("v1")).await;
    put_traffic(&server, &site, &id, json!({"strategy": "weighted"})).await;
    let (statuses, _) = load(&server, &key, "weighted", 400, 8).await;
    assert!(statuses.iter().all(|status| *status == 200));
    let (l, h) = (calls(&light), calls(&heavy));
    println!("\nweighted 3:1 over 400 requests: heavy {h}, light {l} (expected 300 / 100)");
    assert_eq!(l + h, 400);
    assert!((270..=330).contains(&h), "heavy got {h} of 400");

    // Least connections: a stream held open on one backend sends the rest to the other.
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(&server, &site, "least", openai(&a.url("held")), json!({})).await;
    let b_id = add_backend(&server, &site, &id, "1.0", 100, &b.url("held")).await;
    put_traffic(
        &server,
        &site,
        &id,
        json!({"strategy": "least_connections"}),
    )
    .await;
    let held = server.chat(&key, "least", true).await;
    assert_eq!(held.status(), 200);
    let mut held_body = held.bytes_stream();
    let first = held_body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tok0"));
    let (busy, idle, busy_id) = if calls(&a) == 1 {
        (&a, &b, id.clone())
    } else {
        (&b, &a, b_id.clone())
    };
    assert_eq!(calls(busy), 1);
    assert_eq!(live(&server, &site, &id, &busy_id).await["in_flight"], 1);
    for _ in 0..10 {
        let (status, body, _) = chat(&server, &key, "least").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(calls(busy), 1, "the busy backend got nothing more");
    assert_eq!(calls(idle), 10);
    busy.recorded.release.notify_one();
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(piece) = held_body.next().await {
        rest.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
    assert!(rest.contains("[DONE]"));
    wait_for("the held stream to leave in_flight", async || {
        live(&server, &site, &id, &busy_id).await["in_flight"] == 0
    })
    .await;
    let before = (calls(&a), calls(&b));
    load(&server, &key, "least", 10, 1).await;
    assert_eq!(
        (calls(&a) - before.0, calls(&b) - before.1),
        (5, 5),
        "idle backends take turns"
    );
    println!("least_connections with one held stream: busy backend +0, idle backend +10 of 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_strategy_moves_traffic_to_the_faster_backend() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "latency").await;
    let (fast, slow) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(&server, &site, "lat", openai(&fast.url("v1")), json!({})).await;
    let slow_id = add_backend(&server, &site, &id, "1.0", 100, &slow.url("slow")).await;
    put_traffic(&server, &site, &id, json!({"strategy": "latency"})).await;
    let started = Instant::now();
    let (statuses, _) = load(&server, &key, "lat", 30, 1).await;
    assert!(statuses.iter().all(|status| *status == 200));
    let fast_ewma = live(&server, &site, &id, &id).await["latency_ewma_ms"]
        .as_f64()
        .unwrap();
    let slow_ewma = live(&server, &site, &id, &slow_id).await["latency_ewma_ms"]
        .as_f64()
        .unwrap();
    println!(
        "\nlatency strategy, 30 requests in {:.0} ms: fast {} (EWMA {fast_ewma:.1} ms), slow {} (EWMA {slow_ewma:.0} ms)",
        ms(started.elapsed()),
        calls(&fast),
        calls(&slow)
    );
    assert_eq!(calls(&slow), 1, "explored once, then avoided");
    assert_eq!(calls(&fast), 29);
    assert!(
        slow_ewma >= 2900.0 && fast_ewma < 200.0,
        "{fast_ewma} {slow_ewma}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_split_follows_its_shares_and_reports_per_version() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "split").await;
    let (stable, canary) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "split",
        openai(&stable.url("v1")),
        json!({}),
    )
    .await;
    let canary_id = add_backend(&server, &site, &id, "1.1", 100, &canary.url("v1")).await;
    let routing = put_traffic(
        &server,
        &site,
        &id,
        json!({"versions": {"1.0": 0.9, "1.1": 0.1}}),
    )
    .await;
    assert_eq!(routing["versions"], json!({"1.0": 0.9, "1.1": 0.1}));

    let (statuses, _) = load(&server, &key, "split", 500, 8).await;
    assert!(statuses.iter().all(|status| *status == 200));
    let (s, c) = (calls(&stable), calls(&canary));
    println!("\ntraffic split 0.9/0.1 over 500 requests: 1.0 {s}, 1.1 {c} (expected 450 / 50)");
    assert_eq!(s + c, 500);
    assert!((25..=75).contains(&c), "canary got {c} of 500");

    // The canary starts refusing (400, not retried): errors per version show it.
    canary.set_mode_override(Some("error400"));
    let (statuses, _) = load(&server, &key, "split", 100, 8).await;
    let refused = statuses.iter().filter(|status| **status == 400).count();
    assert_eq!(refused, canary.faults().count("error400"));
    assert_eq!(statuses.len() - refused, calls(&stable) - s);
    server.settle().await;
    let (status, traffic) = server
        .get(&format!("/api/v1/endpoints/{id}/traffic"), &site.token)
        .await;
    assert_eq!(status, 200, "{traffic}");
    let usage = &traffic["usage"];
    assert_eq!(usage["1.0"]["requests"], calls(&stable), "{traffic}");
    assert_eq!(usage["1.0"]["errors"], 0);
    assert_eq!(usage["1.1"]["requests"], calls(&canary), "{traffic}");
    assert_eq!(usage["1.1"]["errors"], refused);
    let backend = traffic["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|backend| backend["id"] == json!(canary_id))
        .unwrap();
    assert_eq!(backend["version"], "1.1");
    println!(
        "after the canary turned to 400: usage 1.0 {} requests / {} errors, 1.1 {} / {} (error rate {:.2})",
        usage["1.0"]["requests"], usage["1.0"]["errors"], usage["1.1"]["requests"], usage["1.1"]["errors"],
        usage["1.1"]["error_rate"].as_f64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_backend_gets_no_traffic_until_it_recovers() {
    let mut resilience = settings();
    resilience.health_interval = Some(Duration::from_millis(200));
    let server = server_with(resilience).await;
    let site = site_on(&server, "health").await;
    let (steady, shaky) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let (id, key) = endpoint(
        &server,
        &site,
        "checked",
        openai(&steady.url("v1")),
        json!({}),
    )
    .await;
    let shaky_id = add_backend(&server, &site, &id, "1.0", 100, &shaky.url("v1")).await;
    assert_eq!(live(&server, &site, &id, &shaky_id).await["healthy"], true);

    // GET /models now answers 503: two failed checks take it out.
    shaky.set_mode_override(Some("error503"));
    let went_down = Instant::now();
    wait_for("the backend to be marked unhealthy", async || {
        live(&server, &site, &id, &shaky_id).await["healthy"] == false
    })
    .await;
    let down_after = went_down.elapsed();
    assert!(shaky.faults().count("error503") >= 2);
    let before = (calls(&steady), calls(&shaky));
    let (statuses, _) = load(&server, &key, "checked", 20, 1).await;
    assert!(statuses.iter().all(|status| *status == 200));
    assert_eq!(
        calls(&shaky),
        before.1,
        "no traffic to the unhealthy backend"
    );
    assert_eq!(calls(&steady) - before.0, 20);
    assert_eq!(live(&server, &site, &id, &id).await["healthy"], true);

    shaky.set_mode_override(None);
    let recovering = Instant::now();
    wait_for("the backend to be healthy again", async || {
        live(&server, &site, &id, &shaky_id).await["healthy"] == true
    })
    .await;
    let up_after = recovering.elapsed();
    let before = (calls(&steady), calls(&shaky));
    let (statuses, _) = load(&server, &key, "checked", 20, 1).await;
    assert!(statuses.iter().all(|status| *status == 200));
    assert_eq!(
        (calls(&steady) - before.0, calls(&shaky) - before.1),
        (10, 10)
    );
    println!(
        "\nhealth checks every 200 ms, 2 failures: out after {:.0} ms, back after {:.0} ms",
        ms(down_after),
        ms(up_after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_that_are_stopped_or_cannot_take_the_request_are_skipped() {
    let mut resilience = settings();
    resilience.breaker = BreakerSettings {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    };
    let server = server_with(resilience).await;
    let site = site_on(&server, "fallskip").await;
    let (broken, stopped, spare) = (
        FakeUpstream::start().await,
        FakeUpstream::start().await,
        FakeUpstream::start().await,
    );
    broken.set_mode_override(Some("reset"));
    let claude = common::fake_anthropic::FakeAnthropic::start().await;
    let (stopped_id, _) = endpoint(
        &server,
        &site,
        "stopped",
        openai(&stopped.url("v1")),
        json!({}),
    )
    .await;
    let (status, body) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/endpoints/{stopped_id}"),
            &site.token,
            Some(json!({"status": "stopped"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let anthropic = json!({"base_url": claude.url("ok"), "api": "anthropic",
        "api_key": common::fake_anthropic::API_KEY, "model": common::fake_anthropic::MODEL});
    let (claude_id, _) = endpoint(&server, &site, "claude", anthropic, json!({})).await;
    let (spare_id, _) =
        endpoint(&server, &site, "spare", openai(&spare.url("v1")), json!({})).await;
    let (primary_id, key) = endpoint(
        &server,
        &site,
        "primary",
        openai(&broken.url("v1")),
        json!({}),
    )
    .await;
    put_traffic(
        &server,
        &site,
        &primary_id,
        json!({"fallback_endpoint_ids": [stopped_id, claude_id, spare_id]}),
    )
    .await;

    // `n` cannot be expressed for Anthropic: that fallback is passed over,
    // also once the primary's breaker is open and it is the first candidate.
    for round in 0..3 {
        let response = server
            .http
            .post(format!("{}/v1/chat/completions", server.url))
            .bearer_auth(&key)
            .json(
                &json!({"model": "primary", "messages": [{"role": "user", "content": "Hi"}],
                          "n": 2, "max_tokens": 8}),
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "round {round}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    }
    assert_eq!(calls(&stopped), 0, "a stopped fallback takes no traffic");
    assert!(claude.requests().is_empty(), "nothing reached Anthropic");
    assert_eq!(calls(&spare), 3);
    let records = usage_records(&server, &site, &primary_id).await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(records
        .iter()
        .all(|record| record["backend_id"] == json!(spare_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_endpoint_is_refused_as_a_fallback() {
    let server = server_with(settings()).await;
    let site = site_on(&server, "fallrep").await;
    let upstream = FakeUpstream::start().await;
    let replicate = json!({"base_url": upstream.url("v1"), "api": "replicate",
        "model": "owner-model", "api_key": "k"});
    let (replicate_id, _) = endpoint(&server, &site, "predictions", replicate, json!({})).await;
    let (primary_id, _) = endpoint(
        &server,
        &site,
        "primary",
        openai(&upstream.url("v1")),
        json!({}),
    )
    .await;
    let (status, body) = server
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/endpoints/{primary_id}/traffic"),
            &site.token,
            Some(json!({"fallback_endpoint_ids": [replicate_id]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "fallback_endpoint_ids[0]", "{body}");
}

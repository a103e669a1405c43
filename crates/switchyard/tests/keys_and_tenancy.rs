//! Key life cycle and tenant isolation, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{FakeUpstream, TestServer};
use reqwest::Method;
use serde_json::json;

on_both_backends!(key_lifecycle, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("alice", &upstream.url("v1")).await;
    assert!(tenant.api_key.starts_with("sy_live_") && tenant.api_key.len() == 40);

    // The key works.
    assert_eq!(
        server
            .chat(&tenant.api_key, &tenant.model, false)
            .await
            .status(),
        200
    );

    // A second key: full key shown once, listing shows only the prefix.
    let path = format!("/api/v1/endpoints/{}/keys", tenant.endpoint_id);
    let (status, created) = server
        .post(&path, &tenant.token, json!({"name": "ci"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let second_key = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created["key"]["prefix"], second_key[..12]);
    let (status, listed) = server.get(&path, &tenant.token).await;
    assert_eq!(status, 200);
    assert_eq!(listed["total"], 2);
    let listed_text = listed.to_string();
    assert!(!listed_text.contains(&second_key) && !listed_text.contains(&tenant.api_key));
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|key| key.get("api_key").is_none() && key["prefix"].as_str().unwrap().len() == 12));

    // Revoke → 401 invalid_api_key on the very next request.
    assert_eq!(
        server
            .chat(&second_key, &tenant.model, false)
            .await
            .status(),
        200
    );
    let key_id = created["key"]["id"].as_str().unwrap();
    let (status, revoked) = server
        .call(
            Method::DELETE,
            &format!("{path}/{key_id}"),
            &tenant.token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["key"]["status"], "revoked");
    let response = server.chat(&second_key, &tenant.model, false).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The other key still works.
    assert_eq!(
        server
            .chat(&tenant.api_key, &tenant.model, false)
            .await
            .status(),
        200
    );

    // Expiry → 401 expired_api_key.
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let expires_at = expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, expiring) = server
        .post(
            &path,
            &tenant.token,
            json!({"name": "short", "expires_at": expires_at}),
        )
        .await;
    assert_eq!(status, 201, "{expiring}");
    let expiring_key = expiring["api_key"].as_str().unwrap();
    assert_eq!(
        server
            .chat(expiring_key, &tenant.model, false)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let response = server.chat(expiring_key, &tenant.model, false).await;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "expired_api_key");

    // Unknown and malformed keys.
    for bad in ["sy_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "nonsense", ""] {
        let response = server.chat(bad, &tenant.model, false).await;
        assert_eq!(response.status(), 401, "{bad}");
    }
    // The upstream credential is injected but never returned.
    assert_eq!(
        upstream.recorded.last_headers()["authorization"],
        "Bearer upstream-secret"
    );
    let (_, endpoint) = server
        .get(
            &format!("/api/v1/endpoints/{}", tenant.endpoint_id),
            &tenant.token,
        )
        .await;
    assert!(!endpoint.to_string().contains("upstream-secret"));
    assert_eq!(endpoint["endpoint"]["upstream"]["has_api_key"], true);
});

on_both_backends!(tenant_isolation, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let alice = server.tenant("alice", &upstream.url("v1")).await;
    let bob = server.tenant("bob", &upstream.url("v1")).await;
    let alice_endpoint = format!("/api/v1/endpoints/{}", alice.endpoint_id);

    // Every management route on Alice's endpoint is 404 for Bob.
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, alice_endpoint.clone(), None),
        (
            Method::PATCH,
            alice_endpoint.clone(),
            Some(json!({"description": "mine now"})),
        ),
        (Method::GET, format!("{alice_endpoint}/keys"), None),
        (
            Method::POST,
            format!("{alice_endpoint}/keys"),
            Some(json!({"name": "steal"})),
        ),
        (
            Method::DELETE,
            format!("{alice_endpoint}/keys/{}", "x"),
            None,
        ),
        (
            Method::GET,
            format!("{alice_endpoint}/usage?period=day"),
            None,
        ),
        (
            Method::GET,
            format!("{alice_endpoint}/usage/detailed"),
            None,
        ),
        (Method::GET, format!("{alice_endpoint}/connection"), None),
        (Method::DELETE, alice_endpoint.clone(), None),
    ];
    for (method, path, body) in routes {
        let (status, response) = server.call(method.clone(), &path, &bob.token, body).await;
        assert_eq!(status, 404, "{method} {path}: {response}");
        assert!(!response.to_string().contains("alice"), "{response}");
    }
    // Bob's list does not show Alice's endpoint; the summary counts only his own.
    let (_, list) = server.get("/api/v1/endpoints", &bob.token).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["data"][0]["name"], "bob-model");
    let (_, summary) = server.get("/api/v1/endpoints/summary", &bob.token).await;
    assert_eq!(summary["summary"]["total_endpoints"], 1);

    // Bob's key cannot reach Alice's endpoint by name, by id, or by the per-endpoint route.
    for model in [alice.model.as_str(), alice.endpoint_id.as_str()] {
        let response = server.chat(&bob.api_key, model, false).await;
        assert_eq!(response.status(), 404);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "endpoint_not_found");
    }
    let response = server
        .http
        .post(format!(
            "{}/api/v1/inference/{}/chat/completions",
            server.url, alice.endpoint_id
        ))
        .bearer_auth(&bob.api_key)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = server
        .http
        .get(format!(
            "{}/api/v1/inference/{}/status",
            server.url, alice.endpoint_id
        ))
        .bearer_auth(&bob.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Non-admins cannot create users or grant credits.
    let (status, _) = server
        .post("/api/v1/users", &bob.token, json!({"name": "mallory"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post(
            &format!("/api/v1/users/{}/credits", bob.user_id),
            &bob.token,
            json!({"credits": 5}),
        )
        .await;
    assert_eq!(status, 403);
    // The admin check comes before the body: a non-admin gets 403 even for a bad body.
    let (status, _) = server
        .post(
            &format!("/api/v1/users/{}/credits", bob.user_id),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    // Without a token: 401.
    let (status, body) = server.get("/api/v1/endpoints", "wrong").await;
    assert_eq!(status, 401, "{body}");

    // Alice still sees and uses her endpoint.
    let (status, _) = server.get(&alice_endpoint, &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .chat(&alice.api_key, &alice.model, false)
            .await
            .status(),
        200
    );
});

on_both_backends!(endpoint_crud_and_validation, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let (_, token) = server.create_user("carol").await;

    // Model discovery: no upstream.model → the upstream's first model id.
    let (status, created) = server
        .post(
            "/api/v1/endpoints",
            &token,
            json!({"name": "disc", "modality": "llm", "provider": "external",
            "upstream": {"base_url": upstream.url("v1"), "api": "openai"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["endpoint"]["upstream_model"],
        common::fake_upstream::UPSTREAM_MODEL
    );
    assert_eq!(created["endpoint"]["status"], "active");
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();

    // Duplicate name → 409; bad fields → 400 naming the field.
    let (status, _) = server
        .post("/api/v1/endpoints", &token, json!({"name": "disc", "modality": "llm", "upstream": {"base_url": upstream.url("v1"), "model": "m"}}))
        .await;
    assert_eq!(status, 409);
    let cases = [
        (
            json!({"name": "x", "modality": "llm", "upstream": {"base_url": "ftp://x", "model": "m"}}),
            "upstream.base_url",
        ),
        (
            json!({"name": "x", "modality": "sound", "upstream": {"base_url": "http://x", "model": "m"}}),
            "modality",
        ),
        (
            json!({"name": "x y", "modality": "llm", "upstream": {"base_url": "http://x", "model": "m"}}),
            "name",
        ),
        (
            json!({"name": "x", "modality": "llm", "min_workers": "two", "upstream": {"base_url": "http://x", "model": "m"}}),
            "min_workers",
        ),
        (
            json!({"name": "x", "modality": "llm", "max_workers": 1000, "upstream": {"base_url": "http://x", "model": "m"}}),
            "max_workers",
        ),
        (
            json!({"name": "x", "modality": "llm", "gpu_type": "Z80", "upstream": {"base_url": "http://x", "model": "m"}}),
            "gpu_type",
        ),
        (
            json!({"name": "x", "modality": "llm", "provider": "runpod", "upstream": {"base_url": "http://x", "model": "m"}}),
            "provider",
        ),
        (
            json!({"name": "x", "modality": "llm", "upstream": {"base_url": "http://x", "model": "m"}, "pricing": {"input_per_1k_tokens_usd": "-1"}}),
            "pricing.input_per_1k_tokens_usd",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = server.post("/api/v1/endpoints", &token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], field, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
    }
    // Out-of-range key limits name the field.
    let (status, error) = server
        .post(
            &format!("/api/v1/endpoints/{id}/keys"),
            &token,
            json!({"name": "k", "rate_limit_per_minute": 0}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "rate_limit_per_minute");
    let (status, error) = server
        .post(
            &format!("/api/v1/endpoints/{id}/keys"),
            &token,
            json!({"name": "k", "rate_limit_per_day": "many"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "rate_limit_per_day");
    // Malformed JSON on the management API.
    let response = server
        .http
        .post(format!("{}/api/v1/endpoints", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    // Filters, PATCH, connection samples, DELETE.
    let (_, list) = server
        .get("/api/v1/endpoints?modality=llm&status=active", &token)
        .await;
    assert_eq!(list["total"], 1);
    let (_, list) = server
        .get("/api/v1/endpoints?modality=embedding", &token)
        .await;
    assert_eq!(list["total"], 0);
    let (status, _) = server.get("/api/v1/endpoints?status=bogus", &token).await;
    assert_eq!(status, 400);
    let (status, patched) = server
        .call(Method::PATCH, &format!("/api/v1/endpoints/{id}"), &token, Some(json!({"min_workers": 1, "max_workers": 3, "idle_timeout_seconds": 60, "description": "d"})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["endpoint"]["max_workers"], 3);
    let (status, error) = server
        .call(
            Method::PATCH,
            &format!("/api/v1/endpoints/{id}"),
            &token,
            Some(json!({"min_workers": 5})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let (status, connection) = server
        .get(&format!("/api/v1/endpoints/{id}/connection"), &token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(connection["base_url"], format!("{}/v1", server.url));
    assert_eq!(connection["model"], "disc");
    for sample in ["curl", "python", "typescript", "python_requests"] {
        assert!(
            connection["samples"][sample]
                .as_str()
                .unwrap()
                .contains(&format!("{}/v1", server.url)),
            "{sample}"
        );
    }
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/endpoints/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.get(&format!("/api/v1/endpoints/{id}"), &token).await;
    assert_eq!(status, 404);
    let key = created["api_key"].as_str().unwrap();
    assert_eq!(
        server.chat(key, "disc", false).await.status(),
        401,
        "keys of a deleted endpoint stop working"
    );
    // The name can be reused after deletion.
    let (status, _) = server
        .post("/api/v1/endpoints", &token, json!({"name": "disc", "modality": "llm", "upstream": {"base_url": upstream.url("v1"), "model": "fake-model"}}))
        .await;
    assert_eq!(status, 201);
});

on_both_backends!(concurrent_patches_keep_both_changes, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("racer", &upstream.url("v1")).await;
    let path = format!("/api/v1/endpoints/{}", tenant.endpoint_id);
    for round in 0..5_i64 {
        let description = server.call(
            Method::PATCH,
            &path,
            &tenant.token,
            Some(json!({"description": format!("round {round}")})),
        );
        let timeout = server.call(
            Method::PATCH,
            &path,
            &tenant.token,
            Some(json!({"idle_timeout_seconds": 100 + round})),
        );
        let ((first, _), (second, _)) = tokio::join!(description, timeout);
        assert_eq!((first, second), (200, 200));
        let (_, endpoint) = server.get(&path, &tenant.token).await;
        assert_eq!(
            endpoint["endpoint"]["description"],
            format!("round {round}")
        );
        assert_eq!(endpoint["endpoint"]["idle_timeout_seconds"], 100 + round);
    }
});

//! API-based models, their deployments and the native inference passthrough,
//! on SQLite and PostgreSQL, against the fake OpenAI upstream and a small
//! Anthropic/Gemini fake defined here.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use common::fake_upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, STREAM_CHUNKS, UPSTREAM_MODEL};
use common::{FakeUpstream, TestServer};
use serde_json::{json, Value};

const OPENAI_SECRET: &str = "sk-upstream-secret-1";
const ANTHROPIC_SECRET: &str = "ak-upstream-secret-2";
const GOOGLE_SECRET: &str = "gk-upstream-secret-3";

/// Every response body a test saw, to check that no credential ever leaks.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    async fn call(
        &self,
        server: &TestServer,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, value) = server.call(method, path, token, body).await;
        self.0.lock().unwrap().push(value.to_string());
        (status, value)
    }

    async fn get(&self, server: &TestServer, path: &str, token: &str) -> (u16, Value) {
        self.call(server, reqwest::Method::GET, path, token, None)
            .await
    }

    async fn post(
        &self,
        server: &TestServer,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        self.call(server, reqwest::Method::POST, path, token, Some(body))
            .await
    }

    fn assert_no_secret(&self) {
        for text in self.0.lock().unwrap().iter() {
            for secret in [
                OPENAI_SECRET,
                ANTHROPIC_SECRET,
                GOOGLE_SECRET,
                "blue-team-secret",
            ] {
                assert!(!text.contains(secret), "a credential leaked: {text}");
            }
        }
    }
}

fn openai_model(name: &str, api_endpoint: &str) -> Value {
    json!({
        "name": name, "type": "llm", "description": "GPT via the API",
        "deployment_type": "api-based", "provider": "openai",
        "api_endpoint": api_endpoint, "model_identifier": UPSTREAM_MODEL,
        "api_config": {"apiKey": OPENAI_SECRET, "header-X-Team": "blue-team-secret"},
    })
}

async fn create_model(seen: &Seen, server: &TestServer, token: &str, body: Value) -> String {
    let (status, model) = seen.post(server, "/api/v1/models", token, body).await;
    assert_eq!(status, 201, "{model}");
    model["id"].as_str().unwrap().to_owned()
}

async fn create_deployment(
    seen: &Seen,
    server: &TestServer,
    token: &str,
    name: &str,
    model_id: &str,
) -> Value {
    let (status, deployment) = seen
        .post(
            server,
            "/api/v1/deployments",
            token,
            json!({"name": name, "description": "test", "model_id": model_id}),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    deployment
}

async fn infer(
    server: &TestServer,
    deployment_id: &str,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    server
        .http
        .post(format!(
            "{}/api/v1/deployments/{deployment_id}/inference/{path}",
            server.url
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Polls a deployment until `request_count` reaches `count`; returns its final view.
async fn wait_for_requests(
    server: &TestServer,
    token: &str,
    deployment_id: &str,
    count: i64,
) -> Value {
    let path = format!("/api/v1/deployments/{deployment_id}");
    for _ in 0..100 {
        let (status, deployment) = server.get(&path, token).await;
        assert_eq!(status, 200, "{deployment}");
        if deployment["request_count"].as_i64().unwrap_or(0) >= count {
            return deployment;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("usage of deployment {deployment_id} never reached {count} requests");
}

fn chat_body(stream: bool) -> Value {
    let mut body =
        json!({"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "Hi"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

on_both_backends!(model_crud_scopes_and_validation, |backend| async move {
    let server = TestServer::start(backend).await;
    let seen = Seen::default();
    let (_, alice) = server.create_user("alice").await;
    let (_, bob) = server.create_user("bob").await;

    let (status, model) = seen
        .post(
            &server,
            "/api/v1/models",
            &alice,
            openai_model("gpt-a", "https://api.openai.com/v1"),
        )
        .await;
    assert_eq!(status, 201, "{model}");
    assert_eq!(model["type"], "llm");
    assert_eq!(model["deployment_type"], "api-based");
    assert_eq!(model["scope"], "user");
    assert_eq!(model["is_active"], true);
    assert_eq!(model["has_credentials"], true);
    assert_eq!(model["api_config_keys"], json!(["apiKey", "header-X-Team"]));
    assert!(model.get("api_config").is_none(), "{model}");
    let model_id = model["id"].as_str().unwrap().to_owned();

    // Validation names the field.
    for (body, param) in [
        (json!({"api_endpoint": "ftp://example.com"}), "api_endpoint"),
        (json!({"provider": "cohere"}), "provider"),
        (json!({"api_config": {"apiKey": 5}}), "api_config.apiKey"),
        (
            json!({"api_config": {"apiKey": "k", "token": "x"}}),
            "api_config.token",
        ),
        (
            json!({"api_config": {"apiKey": "k", "header-Bad Name": "x"}}),
            "api_config.header-Bad Name",
        ),
        (json!({"api_config": {}}), "api_config"),
        (json!({"type": "image"}), "type"),
        (json!({"name": ""}), "name"),
    ] {
        let mut request = openai_model("bad", "https://api.openai.com");
        for (key, value) in body.as_object().unwrap() {
            request[key] = value.clone();
        }
        let (status, error) = seen.post(&server, "/api/v1/models", &alice, request).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let (status, error) = seen
        .post(
            &server,
            "/api/v1/models",
            &alice,
            json!({"name": "local", "type": "llm", "deployment_type": "self-hosted", "provider": "google",
                   "api_endpoint": "http://10.0.0.5:8000", "model_identifier": "llama"}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "provider");
    let (status, local) = seen
        .post(
            &server,
            "/api/v1/models",
            &alice,
            json!({"name": "local", "type": "embedding", "deployment_type": "self-hosted",
                   "api_endpoint": "http://10.0.0.5:8000", "model_identifier": "bge"}),
        )
        .await;
    assert_eq!(status, 201, "{local}");
    assert_eq!(local["provider"], "openai");
    assert_eq!(local["has_credentials"], false);
    let (status, error) = seen
        .post(
            &server,
            "/api/v1/models",
            &alice,
            openai_model("gpt-a", "https://api.openai.com"),
        )
        .await;
    assert_eq!(status, 409, "{error}");

    // Pagination in both styles.
    create_model(
        &seen,
        &server,
        &alice,
        openai_model("gpt-c", "https://api.openai.com"),
    )
    .await;
    let (status, page) = seen
        .get(&server, "/api/v1/models?page=1&per_page=2", &alice)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["pagination"],
        json!({"page": 1, "per_page": 2, "total": 3, "total_pages": 2})
    );
    let (_, page) = seen
        .get(&server, "/api/v1/models?page=2&per_page=2", &alice)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let (_, page) = seen
        .get(&server, "/api/v1/models?limit=1&offset=2", &alice)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["pagination"]["page"], 3);
    let (status, _) = seen
        .get(&server, "/api/v1/models?per_page=1000", &alice)
        .await;
    assert_eq!(status, 400);

    // Another tenant sees neither the private model nor its list entry.
    let model_path = format!("/api/v1/models/{model_id}");
    let (status, _) = seen.get(&server, &model_path, &bob).await;
    assert_eq!(status, 404);
    let (status, _) = seen
        .call(&server, reqwest::Method::DELETE, &model_path, &bob, None)
        .await;
    assert_eq!(status, 404);
    let (_, bobs) = seen.get(&server, "/api/v1/models", &bob).await;
    assert_eq!(bobs["pagination"]["total"], 0, "{bobs}");

    // An org model is visible to everyone and changed only by its owner.
    let mut org = openai_model("shared-gpt", "https://api.openai.com");
    org["scope"] = json!("org");
    let org_id = create_model(&seen, &server, &alice, org).await;
    let (_, bobs) = seen.get(&server, "/api/v1/models", &bob).await;
    assert_eq!(bobs["pagination"]["total"], 1, "{bobs}");
    assert_eq!(bobs["data"][0]["id"], org_id.as_str());
    assert_eq!(bobs["data"][0]["is_owner"], false);
    let org_path = format!("/api/v1/models/{org_id}");
    let (status, _) = seen.get(&server, &org_path, &bob).await;
    assert_eq!(status, 200);
    let (status, error) = seen
        .call(
            &server,
            reqwest::Method::PATCH,
            &org_path,
            &bob,
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    let (status, _) = seen
        .post(&server, &format!("{org_path}/deactivate"), &bob, json!({}))
        .await;
    assert_eq!(status, 403);

    // PATCH replaces api_config and keeps secrets out of the answer.
    let (status, patched) = seen
        .call(
            &server,
            reqwest::Method::PATCH,
            &model_path,
            &alice,
            Some(
                json!({"name": "gpt-b", "description": "renamed", "model_identifier": "gpt-4o",
                        "api_config": {"api-key": OPENAI_SECRET, "api_version": "2024-06-01"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "gpt-b");
    assert_eq!(patched["model_identifier"], "gpt-4o");
    assert_eq!(
        patched["api_config_keys"],
        json!(["api-key", "api_version"])
    );
    let (status, error) = seen
        .call(
            &server,
            reqwest::Method::PATCH,
            &model_path,
            &alice,
            Some(json!({"api_config": {"apiKey": ["x"]}})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "api_config.apiKey");

    // Activate and deactivate.
    let (status, model) = seen
        .post(
            &server,
            &format!("{model_path}/deactivate"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["is_active"], false);
    let (_, model) = seen.get(&server, &model_path, &alice).await;
    assert_eq!(model["is_active"], false);
    let (_, model) = seen
        .post(
            &server,
            &format!("{model_path}/activate"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(model["is_active"], true);

    // Soft delete: gone from reads and lists.
    let (status, deleted) = seen
        .call(&server, reqwest::Method::DELETE, &model_path, &alice, None)
        .await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = seen.get(&server, &model_path, &alice).await;
    assert_eq!(status, 404);
    let (_, list) = seen
        .get(&server, "/api/v1/models?per_page=100", &alice)
        .await;
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|model| model["id"] != model_id.as_str()));
    assert_eq!(list["pagination"]["total"], 3);
    seen.assert_no_secret();
});

on_both_backends!(deployments_forward_to_openai, |backend| async move {
    let server = TestServer::start(backend).await;
    let upstream = FakeUpstream::start().await;
    let seen = Seen::default();
    let (alice_id, alice) = server.create_user("alice").await;
    server.add_credits(&alice_id, 1000).await;
    let (_, bob) = server.create_user("bob").await;
    let model_id = create_model(&seen, &server, &alice, openai_model("gpt", &upstream.base)).await;

    // Node or resource selection is refused by name.
    let (status, error) = seen
        .post(
            &server,
            "/api/v1/deployments",
            &alice,
            json!({"name": "d", "description": "", "model_id": model_id, "node_id": "n1"}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "node_id");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node/resource selection is not allowed for api-based models"),
        "{error}"
    );
    // An inactive model cannot be deployed; an invisible one is not found.
    seen.post(
        &server,
        &format!("/api/v1/models/{model_id}/deactivate"),
        &alice,
        json!({}),
    )
    .await;
    let (status, error) = seen
        .post(
            &server,
            "/api/v1/deployments",
            &alice,
            json!({"name": "d", "model_id": model_id}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["message"], "Model is not active");
    seen.post(
        &server,
        &format!("/api/v1/models/{model_id}/activate"),
        &alice,
        json!({}),
    )
    .await;
    let (status, _) = seen
        .post(
            &server,
            "/api/v1/deployments",
            &bob,
            json!({"name": "d", "model_id": model_id}),
        )
        .await;
    assert_eq!(status, 404);

    let deployment = create_deployment(&seen, &server, &alice, "gpt-prod", &model_id).await;
    assert_eq!(deployment["status"], "running");
    assert_eq!(deployment["model"]["provider"], "openai");
    assert_eq!(deployment["model"]["model_identifier"], UPSTREAM_MODEL);
    assert_eq!(deployment["request_count"], 0);
    let deployment_id = deployment["id"].as_str().unwrap().to_owned();
    assert_eq!(
        deployment["inference_url"],
        format!(
            "{}/api/v1/deployments/{deployment_id}/inference",
            server.url
        )
    );

    // Plain passthrough with the owner's management token.
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &alice,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
    let headers = upstream.recorded.last_headers();
    assert_eq!(
        headers["authorization"],
        format!("Bearer {OPENAI_SECRET}").as_str()
    );
    assert_eq!(headers["x-team"], "blue-team-secret");
    assert!(headers
        .get_all("authorization")
        .iter()
        .all(|value| !value.to_str().unwrap().contains(&alice)));
    assert_eq!(
        upstream.recorded.last_body()["messages"][0]["content"],
        "Hi"
    );

    // A streamed passthrough arrives as SSE.
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &alice,
        chat_body(true),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    assert!(text.contains("tok0") && text.contains("[DONE]"), "{text}");
    assert_eq!(
        text.matches("data: ").count() as u64,
        STREAM_CHUNKS + 2,
        "chunks, the usage chunk and [DONE] pass unchanged: {text}"
    );

    // Stopped: the exact error, and the OpenAI-compatible gateway refuses too.
    let (status, stopped) = seen
        .post(
            &server,
            &format!("/api/v1/deployments/{deployment_id}/stop"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "stopped");
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &alice,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "Deployment is not running. Current status: stopped"
    );
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "deployment_not_running");
    let endpoint_id = deployment["endpoint_id"].as_str().unwrap().to_owned();
    let (status, key) = seen
        .post(
            &server,
            &format!("/api/v1/endpoints/{endpoint_id}/keys"),
            &alice,
            json!({"name": "client"}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let response = server.chat(&api_key, "gpt-prod", false).await;
    assert_eq!(response.status(), 503);

    // Started again: works, also with an API key of its endpoint.
    let (status, started) = seen
        .post(
            &server,
            &format!("/api/v1/deployments/{deployment_id}/start"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "running");
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &api_key,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.recorded.last_headers()["authorization"],
        format!("Bearer {OPENAI_SECRET}").as_str()
    );

    // Usage is counted once per request, from the upstream's numbers.
    let counted = wait_for_requests(&server, &alice, &deployment_id, 3).await;
    assert_eq!(counted["request_count"], 3, "{counted}");
    let expected = 2 * (PROMPT_TOKENS + COMPLETION_TOKENS) + PROMPT_TOKENS + STREAM_CHUNKS;
    assert_eq!(counted["total_tokens"], expected, "{counted}");

    // Another tenant cannot see or call it; a key of another endpoint cannot either.
    let (status, _) = seen
        .get(
            &server,
            &format!("/api/v1/deployments/{deployment_id}"),
            &bob,
        )
        .await;
    assert_eq!(status, 404);
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &bob,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 404);
    let other = server.tenant("carol", &upstream.url("v1")).await;
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &other.api_key,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 404);

    // List with statistics and a status filter.
    let second = create_deployment(&seen, &server, &alice, "gpt-staging", &model_id).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    seen.post(
        &server,
        &format!("/api/v1/deployments/{second_id}/stop"),
        &alice,
        json!({}),
    )
    .await;
    let (status, list) = seen
        .get(&server, "/api/v1/deployments?per_page=10", &alice)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["statistics"],
        json!({"total": 2, "byStatus": {"running": 1, "stopped": 1}})
    );
    assert_eq!(list["pagination"]["total"], 2);
    let first = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == deployment_id.as_str())
        .unwrap();
    assert_eq!(first["request_count"], 3);
    let (_, stopped) = seen
        .get(&server, "/api/v1/deployments?status=stopped", &alice)
        .await;
    assert_eq!(stopped["data"].as_array().unwrap().len(), 1);
    assert_eq!(stopped["data"][0]["id"], second_id.as_str());
    let (status, _) = seen
        .get(&server, "/api/v1/deployments?status=paused", &alice)
        .await;
    assert_eq!(status, 400);
    let (_, bobs) = seen.get(&server, "/api/v1/deployments", &bob).await;
    assert_eq!(bobs["statistics"]["total"], 0);

    // A new credential on the model reaches its running deployments at once.
    let model_path = format!("/api/v1/models/{model_id}");
    let (status, patched) = seen
        .call(
            &server,
            reqwest::Method::PATCH,
            &model_path,
            &alice,
            Some(json!({"api_config": {"apiKey": "sk-rotated-key"}})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &alice,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 200);
    let headers = upstream.recorded.last_headers();
    assert_eq!(headers["authorization"], "Bearer sk-rotated-key");
    assert!(
        headers.get("x-team").is_none(),
        "the replaced api_config dropped the header"
    );
    wait_for_requests(&server, &alice, &deployment_id, 4).await;

    // The model cannot be deleted while a deployment runs on it.
    let (status, error) = seen
        .call(&server, reqwest::Method::DELETE, &model_path, &alice, None)
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("running deployment"),
        "{error}"
    );

    // Deleting the deployment terminates its endpoint.
    let deployment_path = format!("/api/v1/deployments/{deployment_id}");
    let (status, deleted) = seen
        .call(
            &server,
            reqwest::Method::DELETE,
            &deployment_path,
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = seen.get(&server, &deployment_path, &alice).await;
    assert_eq!(status, 404);
    let response = infer(
        &server,
        &deployment_id,
        "v1/chat/completions",
        &alice,
        chat_body(false),
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = server.chat(&api_key, "gpt-prod", false).await;
    assert_eq!(response.status(), 401);
    let (status, _) = seen
        .call(&server, reqwest::Method::DELETE, &model_path, &alice, None)
        .await;
    assert_eq!(status, 200);
    seen.assert_no_secret();
});

/// What the Anthropic/Gemini fake saw: (path with query, headers).
type SeenRequests = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A small fake of Anthropic's Messages API and Gemini's generateContent,
/// answering the documented shapes and refusing a wrong credential header.
async fn start_native_fake() -> (String, SeenRequests) {
    let seen: SeenRequests = Arc::default();
    let app = Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1beta/models/{action}", post(gemini))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn sse(events: Vec<String>) -> Response {
    let chunks = events
        .into_iter()
        .map(|event| Ok::<_, std::io::Error>(Bytes::from(event)));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

async fn anthropic(
    State(seen): State<SeenRequests>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    seen.lock()
        .unwrap()
        .push(("/v1/messages".to_owned(), headers.clone()));
    if headers.get("x-api-key").map(|v| v.to_str().unwrap()) != Some(ANTHROPIC_SECRET)
        || headers
            .get("anthropic-version")
            .map(|v| v.to_str().unwrap())
            != Some("2023-06-01")
        || headers.contains_key("authorization")
    {
        return (StatusCode::UNAUTHORIZED, Json(json!({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}))).into_response();
    }
    if body["stream"] == true {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        return sse(vec![
            event(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}),
            ),
            event(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            event("ping", json!({"type":"ping"})),
            event(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
            ),
            event(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            event(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}),
            ),
            event("message_stop", json!({"type":"message_stop"})),
        ]);
    }
    Json(
        json!({"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4",
        "content":[{"type":"text","text":"Hi!"}],"stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":10,"output_tokens":5}}),
    )
    .into_response()
}

async fn gemini(
    State(seen): State<SeenRequests>,
    Path(action): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    seen.lock()
        .unwrap()
        .push((format!("/v1beta/models/{action}?{query}"), headers.clone()));
    if headers.get("x-goog-api-key").map(|v| v.to_str().unwrap()) != Some(GOOGLE_SECRET)
        || headers.contains_key("authorization")
    {
        return (StatusCode::FORBIDDEN, Json(json!({"error":{"code":403,"message":"API key not valid","status":"PERMISSION_DENIED"}}))).into_response();
    }
    let candidate =
        |text: &str| json!([{"content":{"parts":[{"text":text}],"role":"model"},"index":0}]);
    if action.ends_with(":streamGenerateContent") && query == "alt=sse" {
        return sse(vec![
            format!(
                "data: {}\r\n\r\n",
                json!({"candidates":candidate("Hel"),"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"totalTokenCount":10}})
            ),
            format!(
                "data: {}\r\n\r\n",
                json!({"candidates":candidate("lo"),"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":12,"totalTokenCount":20}})
            ),
        ]);
    }
    Json(json!({"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"totalTokenCount":12}}))
    .into_response()
}

on_both_backends!(anthropic_and_gemini_native_paths, |backend| async move {
    let server = TestServer::start(backend).await;
    let (fake, requests) = start_native_fake().await;
    let seen = Seen::default();
    let (alice_id, alice) = server.create_user("alice").await;
    server.add_credits(&alice_id, 1000).await;

    let claude = create_model(
        &seen,
        &server,
        &alice,
        json!({"name": "claude", "type": "llm", "deployment_type": "api-based", "provider": "anthropic",
               "api_endpoint": format!("{fake}/v1"), "model_identifier": "claude-sonnet-4",
               "api_config": {"x-api-key": ANTHROPIC_SECRET}}),
    )
    .await;
    let claude_deployment = create_deployment(&seen, &server, &alice, "claude-prod", &claude).await;
    let claude_id = claude_deployment["id"].as_str().unwrap().to_owned();
    let message = json!({"model": "claude-sonnet-4", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]});
    let response = infer(&server, &claude_id, "v1/messages", &alice, message.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "Hi!");
    let mut streamed = message.clone();
    streamed["stream"] = json!(true);
    let response = infer(&server, &claude_id, "v1/messages", &alice, streamed).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("event: message_stop") && text.contains("text_delta"),
        "{text}"
    );
    let counted = wait_for_requests(&server, &alice, &claude_id, 2).await;
    assert_eq!(counted["total_tokens"], 10 + 5 + 25 + 15, "{counted}");
    // An Anthropic SDK sends the endpoint's API key as `x-api-key`; it stays here.
    let claude_endpoint = claude_deployment["endpoint_id"].as_str().unwrap();
    let (status, key) = seen
        .post(
            &server,
            &format!("/api/v1/endpoints/{claude_endpoint}/keys"),
            &alice,
            json!({"name": "sdk"}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let sdk_key = key["api_key"].as_str().unwrap();
    let response = server
        .http
        .post(format!(
            "{}/api/v1/deployments/{claude_id}/inference/v1/messages",
            server.url
        ))
        .header("x-api-key", sdk_key)
        .header("anthropic-version", "2023-06-01")
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, last_headers) = requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last_headers["x-api-key"], ANTHROPIC_SECRET);
    assert_eq!(last_headers.get_all("x-api-key").iter().count(), 1);

    let gemini_model = create_model(
        &seen,
        &server,
        &alice,
        json!({"name": "gemini", "type": "llm", "deployment_type": "api-based", "provider": "google",
               "api_endpoint": format!("{fake}/v1beta"), "model_identifier": "gemini-2.0-flash",
               "api_config": {"apiKey": GOOGLE_SECRET}}),
    )
    .await;
    let gemini_deployment =
        create_deployment(&seen, &server, &alice, "gemini-prod", &gemini_model).await;
    let gemini_id = gemini_deployment["id"].as_str().unwrap().to_owned();
    let content = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    let response = infer(
        &server,
        &gemini_id,
        "v1beta/models/gemini-2.0-flash:generateContent",
        &alice,
        content.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Hello"
    );
    let response = infer(
        &server,
        &gemini_id,
        "v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        &alice,
        content,
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    let counted = wait_for_requests(&server, &alice, &gemini_id, 2).await;
    assert_eq!(counted["total_tokens"], 8 + 4 + 8 + 12, "{counted}");

    let requests = requests.lock().unwrap().clone();
    assert!(requests
        .iter()
        .any(|(path, _)| path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"));
    for (path, headers) in &requests {
        assert!(
            !headers.contains_key("authorization"),
            "{path} got the client's token"
        );
    }
    seen.assert_no_secret();
});

on_both_backends!(
    a_new_azure_api_version_reaches_running_deployments,
    |backend| async move {
        use common::fake_azure::{self, FakeAzure};
        let fake = FakeAzure::start().await;
        let server = TestServer::start(backend).await;
        let seen = Seen::default();
        let (user_id, alice) = server.create_user("alice").await;
        server.add_credits(&user_id, 1000).await;
        let model_id = create_model(
            &seen,
            &server,
            &alice,
            json!({
                "name": "azure-gpt", "type": "llm", "deployment_type": "api-based",
                "provider": "azure", "api_endpoint": fake.url("ok"),
                "model_identifier": fake_azure::CHAT_DEPLOYMENT,
                "api_config": {"api-key": fake_azure::API_KEY, "api_version": fake_azure::API_VERSION},
            }),
        )
        .await;
        let deployment = create_deployment(&seen, &server, &alice, "azure-prod", &model_id).await;
        let deployment_id = deployment["id"].as_str().unwrap().to_owned();
        let path = format!(
            "openai/deployments/{}/chat/completions",
            fake_azure::CHAT_DEPLOYMENT
        );
        let call = || infer(&server, &deployment_id, &path, &alice, chat_body(false));
        let response = call().await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let query = fake.requests().last().unwrap().query.unwrap_or_default();
        assert_eq!(query, format!("api-version={}", fake_azure::API_VERSION));

        // An api-version the URL cannot carry is refused.
        let model_path = format!("/api/v1/models/{model_id}");
        let (status, error) = seen
            .call(
                &server,
                reqwest::Method::PATCH,
                &model_path,
                &alice,
                Some(json!({"api_config": {"api-key": fake_azure::API_KEY, "api_version": "2024&x=1"}})),
            )
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["param"], "api_config.api_version");

        // A new api-version in api_config is copied to the deployment's endpoint.
        let (status, patched) = seen
            .call(
                &server,
                reqwest::Method::PATCH,
                &model_path,
                &alice,
                Some(json!({"api_config": {"api-key": fake_azure::API_KEY, "api_version": "2025-04-01-preview"}})),
            )
            .await;
        assert_eq!(status, 200, "{patched}");
        let response = call().await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let query = fake.requests().last().unwrap().query.unwrap_or_default();
        assert_eq!(query, "api-version=2025-04-01-preview");

        // A deployment whose endpoint was terminated underneath it does not
        // make the model's update fail.
        let orphan = create_deployment(&seen, &server, &alice, "azure-orphan", &model_id).await;
        let orphan_endpoint = orphan["endpoint_id"].as_str().unwrap();
        let (status, body) = seen
            .call(
                &server,
                reqwest::Method::DELETE,
                &format!("/api/v1/endpoints/{orphan_endpoint}"),
                &alice,
                None,
            )
            .await;
        assert!(status < 300, "{status} {body}");
        let (status, patched) = seen
            .call(
                &server,
                reqwest::Method::PATCH,
                &model_path,
                &alice,
                Some(json!({"api_config": {"api-key": fake_azure::API_KEY, "api_version": fake_azure::API_VERSION}})),
            )
            .await;
        assert_eq!(status, 200, "{patched}");
        let response = call().await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let query = fake.requests().last().unwrap().query.unwrap_or_default();
        assert_eq!(query, format!("api-version={}", fake_azure::API_VERSION));
        seen.assert_no_secret();
    }
);

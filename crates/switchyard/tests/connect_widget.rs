//! The Connect widget's server side: `/connect.js`, CORS on `/api/v1/*` and
//! `/v1/*` for the configured origins only, and `GET /api/v1/connect/endpoints`
//! (shape, filters, tenancy).

mod common;

use std::sync::Arc;

use common::{Backend, FakeUpstream, Options, TestServer};
use serde_json::{json, Value};
use switchyard::config::{Config, ServeArgs};

const PAGE: &str = "http://127.0.0.1:5173";

async fn server_allowing(origins: &[&str]) -> TestServer {
    let origins: Vec<String> = origins.iter().map(|origin| (*origin).to_owned()).collect();
    TestServer::start_with(
        Backend::Sqlite,
        Options {
            configure: Some(Arc::new(move |config| {
                config.cors_allowed_origins = origins.clone();
            })),
            ..Options::default()
        },
    )
    .await
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

fn cors_headers(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

async fn preflight(
    server: &TestServer,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    server
        .http
        .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_gets_preflight_and_cors_headers_without_credentials() {
    let server = server_allowing(&[PAGE, "https://app.example.com"]).await;
    let upstream = FakeUpstream::start().await;
    let tenant = server.tenant("cors", &upstream.url("v1")).await;

    for (path, method) in [
        ("/api/v1/connect/endpoints", "GET"),
        ("/api/v1/endpoints", "POST"),
        ("/v1/chat/completions", "POST"),
    ] {
        let response = preflight(
            &server,
            path,
            PAGE,
            method,
            "authorization,content-type,x-api-key",
        )
        .await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
        let methods = header(&response, "access-control-allow-methods").unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let allowed = header(&response, "access-control-allow-headers").unwrap();
        for name in ["authorization", "content-type", "x-api-key"] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(header(&response, "access-control-max-age"), Some("3600"));
        assert!(header(&response, "vary").unwrap().contains("origin"));
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "cookies are never used cross-origin"
        );
    }

    // The actual request: the origin is echoed, credentials are not allowed.
    let response = server
        .http
        .get(format!("{}/api/v1/connect/endpoints", server.url))
        .header("origin", PAGE)
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
    assert!(header(&response, "vary").unwrap().contains("origin"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);

    // The gateway too, with the endpoint's API key.
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .header("origin", "https://app.example.com")
        .bearer_auth(&tenant.api_key)
        .json(&json!({"model": tenant.model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(header(&response, "access-control-expose-headers")
        .unwrap()
        .contains("x-request-id"));

    // An error answer carries the headers too, so the page can read the message.
    let response = server
        .http
        .get(format!("{}/api/v1/connect/endpoints", server.url))
        .header("origin", PAGE)
        .bearer_auth("sym_wrong-token-00000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(PAGE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_origins_and_plain_requests_get_no_cors_headers() {
    let server = server_allowing(&[PAGE]).await;
    let upstream = FakeUpstream::start().await;
    let tenant = server.tenant("plain", &upstream.url("v1")).await;

    for origin in ["https://evil.example", "http://127.0.0.1:5174", "null"] {
        let response = preflight(
            &server,
            "/api/v1/connect/endpoints",
            origin,
            "GET",
            "authorization",
        )
        .await;
        assert!(
            cors_headers(&response).is_empty(),
            "{origin}: {:?}",
            cors_headers(&response)
        );
        assert!(!response.status().is_success(), "{origin}");
        let response = server
            .http
            .get(format!("{}/api/v1/connect/endpoints", server.url))
            .header("origin", origin)
            .bearer_auth(&tenant.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(cors_headers(&response).is_empty(), "{origin}");
    }

    // Servers and SDKs send no Origin: the gateway answers as before, untouched.
    let response = server.chat(&tenant.api_key, &tenant.model, false).await;
    assert_eq!(response.status(), 200);
    assert!(cors_headers(&response).is_empty());
    assert_eq!(header(&response, "vary"), None);

    // Routes outside /api/v1 and /v1 never answer cross-origin callers.
    let response = server
        .http
        .get(format!("{}/healthz", server.url))
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert!(cors_headers(&response).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_origins_nothing_is_cross_origin() {
    let server = TestServer::start(Backend::Sqlite).await;
    let response = preflight(
        &server,
        "/api/v1/connect/endpoints",
        PAGE,
        "GET",
        "authorization",
    )
    .await;
    assert!(cors_headers(&response).is_empty());
    assert!(!response.status().is_success());
}

#[test]
fn configured_origins_are_validated() {
    let validate = |origins: &[&str]| {
        Config::validate(
            ServeArgs {
                cors_allowed_origins: Some(origins.iter().map(|o| (*o).to_owned()).collect()),
                ..ServeArgs::default()
            },
            None,
            None,
        )
    };
    let config = validate(&["https://App.Example.com:443", PAGE]).unwrap();
    assert_eq!(
        config.cors_allowed_origins,
        ["https://app.example.com", PAGE]
    );
    let wildcard = validate(&["*"]).unwrap_err().to_string();
    assert!(
        wildcard.contains("\"*\" is not allowed") && wildcard.contains("management tokens"),
        "{wildcard}"
    );
    for bad in [
        "https://app.example.com/widget",
        "https://app.example.com/",
        "app.example.com",
        "ftp://app.example.com",
    ] {
        let error = validate(&[bad]).unwrap_err().to_string();
        assert!(error.contains("cors_allowed_origins"), "{bad}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_js_is_a_public_cacheable_module() {
    let server = TestServer::start(Backend::Sqlite).await;
    let response = server
        .http
        .get(format!("{}/connect.js", server.url))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    assert!(header(&response, "cache-control")
        .unwrap()
        .contains("max-age="));
    let etag = header(&response, "etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = response.text().await.unwrap();
    assert!(body.contains("customElements.define('switchyard-connect'"));

    let revalidated = server
        .http
        .get(format!("{}/connect.js", server.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(header(&revalidated, "etag"), Some(etag.as_str()));
    assert!(revalidated.text().await.unwrap().is_empty());
}

async fn create(
    server: &TestServer,
    token: &str,
    name: &str,
    modality: &str,
    base_url: &str,
) -> Value {
    let (status, body) = server
        .post(
            "/api/v1/endpoints",
            token,
            json!({"name": name, "modality": modality, "provider": "external",
                   "source_type": if modality == "embedding" { "imported" } else { "external" },
                   "description": format!("{name} for the connect tests"),
                   "upstream": {"base_url": base_url, "api": "openai", "api_key": "upstream-secret"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["endpoint"].clone()
}

fn names(body: &Value) -> Vec<&str> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_endpoints_lists_the_callers_endpoints_by_modality() {
    let server = TestServer::start(Backend::Sqlite).await;
    let upstream = FakeUpstream::start().await;
    let base = upstream.url("v1");
    let (_, alice) = server.create_user("alice").await;
    let (_, bob) = server.create_user("bob").await;
    let chat = create(&server, &alice, "alice-chat", "llm", &base).await;
    let embedding = create(&server, &alice, "alice-embed", "embedding", &base).await;
    let newer_chat = create(&server, &alice, "alice-writer", "llm", &base).await;
    let terminated = create(&server, &alice, "alice-gone", "llm", &base).await;
    let bob_chat = create(&server, &bob, "bob-chat", "llm", &base).await;
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/endpoints/{}", terminated["id"].as_str().unwrap()),
            &alice,
            None,
        )
        .await;
    assert!(status < 300, "{status} {body}");

    let (status, body) = server.get("/api/v1/connect/endpoints", &alice).await;
    assert_eq!(status, 200, "{body}");
    // Grouped by modality (language models first), newest first within a group;
    // terminated endpoints and other tenants' endpoints never appear.
    assert_eq!(names(&body), ["alice-writer", "alice-chat", "alice-embed"]);
    assert_eq!(body["total"], 3);
    assert_eq!(
        body["groups"],
        json!([
            {"modality": "llm", "label": "Language models", "count": 2},
            {"modality": "embedding", "label": "Embeddings", "count": 1},
        ])
    );
    assert_eq!(body["deploy_url"], format!("{}/deploy", server.url));

    let item = &body["data"][1];
    let id = chat["id"].as_str().unwrap();
    assert_eq!(item["id"], id);
    assert_eq!(item["model"], "alice-chat");
    assert_eq!(item["modality"], "llm");
    assert_eq!(item["provider"], "external");
    assert_eq!(item["status"], chat["status"]);
    assert_eq!(item["source_type"], "external");
    assert_eq!(item["created_at"], chat["created_at"]);
    assert_eq!(
        item["endpoint_url"],
        format!("{}/api/v1/inference/{id}", server.url)
    );
    assert_eq!(item["manage_url"], format!("{}/endpoints/{id}", server.url));
    assert_eq!(
        item["openaiConfig"],
        json!({"baseUrl": format!("{}/v1", server.url), "model": "alice-chat"})
    );
    for sample in ["python", "typescript", "curl"] {
        assert!(
            item["samples"][sample]
                .as_str()
                .unwrap()
                .contains(&format!("{}/v1", server.url)),
            "{sample}"
        );
    }
    let embed_item = &body["data"][2];
    assert!(embed_item["samples"]["python"]
        .as_str()
        .unwrap()
        .contains("embeddings.create"));
    assert!(!body.to_string().contains("upstream-secret"));

    // Filters.
    let (_, body) = server
        .get("/api/v1/connect/endpoints?modality=embedding", &alice)
        .await;
    assert_eq!(names(&body), ["alice-embed"]);
    let (_, body) = server
        .get("/api/v1/connect/endpoints?source_type=imported", &alice)
        .await;
    assert_eq!(names(&body), ["alice-embed"]);
    let (_, body) = server
        .get("/api/v1/connect/endpoints?search=WRITER", &alice)
        .await;
    assert_eq!(names(&body), ["alice-writer"]);
    let (_, body) = server
        .get("/api/v1/connect/endpoints?search=bob", &alice)
        .await;
    assert_eq!(names(&body), Vec::<&str>::new());
    assert_eq!(body["groups"], json!([]));
    let (_, body) = server
        .get("/api/v1/connect/endpoints?modality=llm&search=chat", &alice)
        .await;
    assert_eq!(names(&body), ["alice-chat"]);
    assert_eq!(newer_chat["modality"], "llm");
    assert_eq!(embedding["modality"], "embedding");

    let (status, body) = server
        .get("/api/v1/connect/endpoints?modality=hologram", &alice)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "modality");
    let (status, body) = server
        .get("/api/v1/connect/endpoints?source_type=nope", &alice)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "source_type");

    // Tenancy: bob sees only his own.
    let (_, body) = server.get("/api/v1/connect/endpoints", &bob).await;
    assert_eq!(names(&body), ["bob-chat"]);
    assert_eq!(body["data"][0]["id"], bob_chat["id"]);
    let (_, body) = server
        .get("/api/v1/connect/endpoints?search=alice", &bob)
        .await;
    assert_eq!(body["total"], 0);

    // No token, or a wrong one: 401 in the API's error shape.
    let response = server
        .http
        .get(format!("{}/api/v1/connect/endpoints", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    let (status, _) = server
        .get(
            "/api/v1/connect/endpoints",
            "sym_not-a-token-0000000000000000",
        )
        .await;
    assert_eq!(status, 401);
}

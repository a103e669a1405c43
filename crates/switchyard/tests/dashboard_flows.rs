//! Dashboard flows against a live server: the playground route (through the
//! gateway path, metered and charged once, 402, CSRF, tenancy), the API calls
//! the deploy wizard makes, and the billing page's figures. Signs in through
//! `POST /login` and carries the session cookie by hand.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::deploy::{fake_hub, fake_server_command, MODEL_ID};
use common::fake_upstream::{COMPLETION_TOKENS, PROMPT_TOKENS, STREAM_CHUNKS};
use common::{Backend, FakeUpstream, Options, TestServer};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use switchyard::config::Config;

/// A signed-in browser: the session cookie and its CSRF token.
struct Session {
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn attribute_after<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    let rest = &html[start..];
    &rest[..rest.find('"').unwrap()]
}

impl Session {
    /// Signs in with a management token like the login form does.
    async fn sign_in(server: &TestServer, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let form = http
            .get(format!("{}/login", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), 200);
        let login_csrf = cookie_value(&form, "sy_login_csrf").expect("login CSRF cookie");
        let html = form.text().await.unwrap();
        assert!(
            html.contains(&login_csrf),
            "the form carries the same token"
        );
        let answer = http
            .post(format!("{}/login", server.url))
            .header(COOKIE, format!("sy_login_csrf={login_csrf}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={login_csrf}&token={}&next=%2F",
                form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303, "sign-in redirects");
        assert_eq!(answer.headers()[LOCATION], "/");
        let session = cookie_value(&answer, "sy_session").expect("session cookie");
        let cookie = format!("sy_session={session}");
        let overview = http
            .get(format!("{}/", server.url))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = attribute_after(&overview, "<meta name=\"csrf-token\" content=\"").to_owned();
        Self {
            http,
            url: server.url.clone(),
            cookie,
            csrf,
        }
    }

    async fn page(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A JSON API call with the cookie and (unless `csrf` is false) the CSRF header.
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(COOKIE, &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .api(reqwest::Method::POST, path, Some(body), true)
            .await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// `data:` payloads of an SSE body, `[DONE]` excluded.
fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|block| block.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

fn playground_path(endpoint_id: &str) -> String {
    format!("/api/v1/endpoints/{endpoint_id}/playground")
}

on_both_backends!(
    playground_goes_through_the_gateway_and_is_charged_once,
    |backend: Backend| async move {
        let server = TestServer::start(backend).await;
        let upstream = FakeUpstream::start().await;
        let tenant = server.tenant("ada", &upstream.url("v1")).await;
        let browser = Session::sign_in(&server, &tenant.token).await;
        let path = playground_path(&tenant.endpoint_id);
        let (_, before) = server.get("/api/v1/billing/balance", &tenant.token).await;

        // With the cookie, a POST without the CSRF header is refused before anything runs.
        let refused = browser
            .api(
                reqwest::Method::POST,
                &path,
                Some(json!({"prompt": "Hi"})),
                false,
            )
            .await;
        assert_eq!(refused.status(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf_failed");
        assert_eq!(
            upstream
                .recorded
                .count
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );

        // Streamed: SSE chunks as the gateway relays them, with the usage chunk asked for.
        let streamed = browser
            .api(
                reqwest::Method::POST,
                &path,
                Some(json!({"prompt": "Hi", "max_tokens": 16, "temperature": 0.2, "top_p": 0.9})),
                true,
            )
            .await;
        assert_eq!(streamed.status(), 200);
        assert!(streamed.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        assert!(
            streamed.headers().contains_key("x-ratelimit-remaining"),
            "the gateway's limits apply"
        );
        let text = streamed.text().await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let events = sse_events(&text);
        let content: String = events
            .iter()
            .filter_map(|event| event["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
        let usage = events
            .iter()
            .find(|event| event["usage"].is_object())
            .expect("usage chunk");
        assert_eq!(usage["usage"]["prompt_tokens"], PROMPT_TOKENS);
        // The upstream got the gateway's body: its own model name and the sampling fields.
        let sent = upstream.recorded.last_body();
        assert_eq!(sent["model"], common::fake_upstream::UPSTREAM_MODEL);
        assert_eq!(sent["messages"][0]["content"], "Hi");
        assert_eq!(sent["max_tokens"], 16);
        assert_eq!(sent["top_p"], 0.9);
        assert!(sent.get("prompt").is_none());

        // Whole answer, with the management token instead of the cookie.
        let (status, whole) = server
            .post(
                &path,
                &tenant.token,
                json!({"prompt": "Hi", "stream": false}),
            )
            .await;
        assert_eq!(status, 200, "{whole}");
        assert_eq!(whole["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(whole["usage"]["completion_tokens"], COMPLETION_TOKENS);

        // Bad fields are refused by name; a non-chat body never reaches the upstream.
        let (status, body) = browser
            .post(&path, json!({"prompt": "Hi", "temperature": 3}))
            .await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some("temperature")),
            "{body}"
        );
        let (status, body) = browser
            .post(&path, json!({"prompt": "Hi", "model": "other"}))
            .await;
        assert_eq!(status, 400, "unknown fields are refused: {body}");

        // Two requests: two usage records on one hidden internal key, two charges.
        server.settle().await;
        let (_, usage) = server
            .get(
                &format!("/api/v1/endpoints/{}/usage", tenant.endpoint_id),
                &tenant.token,
            )
            .await;
        assert_eq!(usage["usage"]["requests"], 2, "{usage}");
        let (_, keys) = server
            .get(
                &format!("/api/v1/endpoints/{}/keys", tenant.endpoint_id),
                &tenant.token,
            )
            .await;
        let names: Vec<&str> = keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["first"], "the playground key is not listed");
        let store = &server.state().store;
        let key_id = store
            .playground_key_id(&tenant.endpoint_id)
            .await
            .unwrap()
            .expect("playground key");
        let history = store.playground_history(&tenant.user_id, 10).await.unwrap();
        assert_eq!(history.len(), 2);
        assert!(history
            .iter()
            .all(|record| record.api_key_id == key_id && record.success));
        assert!(history[0].created_at >= history[1].created_at);
        assert_eq!(history.iter().filter(|record| record.streamed).count(), 1);
        let streamed_record = history.iter().find(|record| record.streamed).unwrap();
        assert_eq!(streamed_record.output_tokens, STREAM_CHUNKS);
        assert!(streamed_record.ttft_ms.is_some());
        let (_, ledger) = server.get("/api/v1/billing/ledger", &tenant.token).await;
        let charges: Vec<&Value> = ledger["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["kind"] == "charge")
            .collect();
        assert_eq!(charges.len(), 2, "{ledger}");
        let charged: i64 = charges
            .iter()
            .map(|entry| entry["amount_micro_usd"].as_i64().unwrap())
            .sum();
        let cost: i64 = history.iter().map(|record| record.cost_micro_usd).sum();
        assert!(cost > 0);
        assert_eq!(
            -charged, cost,
            "each request charged once, by its usage record"
        );
        let (_, after) = server.get("/api/v1/billing/balance", &tenant.token).await;
        assert_eq!(
            before["balance_micro_usd"].as_i64().unwrap()
                - after["balance_micro_usd"].as_i64().unwrap(),
            cost
        );

        // The page lists the tests from the server, across reloads.
        let (status, html) = browser.page("/playground").await;
        assert_eq!(status, 200);
        assert!(html.contains("/assets/playground.js"));
        assert_eq!(
            html.matches("<span class=\"badge badge-active\">200</span>")
                .count(),
            2,
            "{html}"
        );
        assert!(html.contains(&format!("value=\"{}\"", tenant.endpoint_id)));

        // Another tenant's endpoint is a 404, by cookie and by token.
        let other = server.tenant("grace", &upstream.url("v1")).await;
        let (status, body) = browser
            .post(
                &playground_path(&other.endpoint_id),
                json!({"prompt": "Hi"}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("endpoint_not_found")),
            "{body}"
        );
        let (status, _) = server
            .post(
                &playground_path(&other.endpoint_id),
                &tenant.token,
                json!({"prompt": "Hi"}),
            )
            .await;
        assert_eq!(status, 404);
        assert!(store
            .playground_key_id(&other.endpoint_id)
            .await
            .unwrap()
            .is_none());

        // A stopped endpoint answers as the gateway does.
        let (status, _) = server
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/endpoints/{}", tenant.endpoint_id),
                &tenant.token,
                Some(json!({"status": "stopped"})),
            )
            .await;
        assert_eq!(status, 200);
        let (status, body) = browser.post(&path, json!({"prompt": "Hi"})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("endpoint_stopped")),
            "{body}"
        );
    }
);

on_both_backends!(
    playground_without_credits_is_402,
    |backend: Backend| async move {
        let server = TestServer::start(backend).await;
        let upstream = FakeUpstream::start().await;
        let (_, token) = server.create_user("broke").await;
        let (endpoint_id, _) = server
            .create_endpoint(&token, "broke-model", &upstream.url("v1"))
            .await;
        let browser = Session::sign_in(&server, &token).await;
        let (status, body) = browser
            .post(&playground_path(&endpoint_id), json!({"prompt": "Hi"}))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (402, Some("insufficient_credits")),
            "{body}"
        );
        assert_eq!(
            upstream
                .recorded
                .count
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        server.settle().await;
        let (_, usage) = server
            .get(&format!("/api/v1/endpoints/{endpoint_id}/usage"), &token)
            .await;
        assert_eq!(usage["usage"]["requests"], 0, "{usage}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_refuses_endpoints_that_do_not_chat() {
    let server = TestServer::start(Backend::Sqlite).await;
    let upstream = FakeUpstream::start().await;
    let (user_id, token) = server.create_user("embedder").await;
    server.add_credits(&user_id, 10).await;
    let (status, created) = server
        .post(
            "/api/v1/endpoints",
            &token,
            json!({"name": "vectors", "modality": "embedding", "upstream": {"base_url": upstream.url("v1")}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["endpoint"]["id"].as_str().unwrap();
    let (status, body) = server
        .post(&playground_path(id), &token, json!({"prompt": "Hi"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unsupported_operation")),
        "{body}"
    );
    let browser = Session::sign_in(&server, &token).await;
    let (_, html) = browser.page("/playground").await;
    assert!(
        html.contains("No chat endpoint yet"),
        "embedding endpoints are not offered"
    );
}

/// A server whose deploys run on the self-hosted provisioner (the fake model server).
fn deploy_options(hub: &str) -> Options {
    let hub = hub.to_owned();
    let command = fake_server_command("--ready-after 0.2");
    Options {
        configure: Some(Arc::new(move |config: &mut Config| {
            config.providers.hub.base_url = hub.clone();
            config.providers.self_hosted.command = Some(command.clone());
            config.providers.self_hosted.port_range = (23_000, 23_999);
            config.providers.self_hosted.log_dir = config.data_dir.join("self-hosted");
            config.deploy_poll_interval = Duration::from_millis(100);
        })),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wizard_calls_register_and_deploy() {
    let hub = fake_hub().await;
    let server = TestServer::start_with(Backend::Sqlite, deploy_options(&hub)).await;
    let upstream = FakeUpstream::start().await;
    let (user_id, token) = server.create_user("wizard").await;
    server.add_credits(&user_id, 100).await;
    let browser = Session::sign_in(&server, &token).await;

    let (status, html) = browser.page("/deploy").await;
    assert_eq!(status, 200);
    for needle in [
        "/assets/deploy.js",
        "aria-current=\"step\"",
        "Review and deploy",
        "data-input-credits=\"0.12\"",
    ] {
        assert!(html.contains(needle), "{needle} in the wizard");
    }

    // Existing server: what the wizard posts, with the cookie and CSRF header.
    let (status, created) = browser
        .post(
            "/api/v1/endpoints",
            json!({"name": "my-server", "modality": "llm", "provider": "external", "source_type": "external",
                   "upstream": {"base_url": upstream.url("v1"), "api": "openai"}, "key": {"name": "default"},
                   "timeout_seconds": 60, "description": "from the wizard"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["api_key"].as_str().unwrap().starts_with("sy_live_"));
    assert_eq!(
        created["endpoint"]["upstream"]["model"],
        common::fake_upstream::UPSTREAM_MODEL,
        "model read from /models"
    );
    assert_eq!(created["endpoint"]["timeout_seconds"], 60);
    let id = created["endpoint"]["id"].as_str().unwrap();
    let (status, samples) = browser.page(&format!("/endpoints/{id}/code")).await;
    assert_eq!(status, 200);
    assert!(
        samples.contains("my-server") && samples.contains("role=\"tab\""),
        "{samples}"
    );
    // The key works at once.
    let response = server
        .chat(created["api_key"].as_str().unwrap(), "my-server", false)
        .await;
    assert_eq!(response.status(), 200);

    // API-based model: the provider's API and model, the key stored encrypted.
    let (status, created) = browser
        .post(
            "/api/v1/endpoints",
            json!({"name": "claude", "modality": "llm", "provider": "external", "source_type": "external",
                   "base_model": "claude-3-5-haiku-latest",
                   "upstream": {"base_url": "https://api.anthropic.com/v1", "api": "anthropic", "model": "claude-3-5-haiku-latest", "api_key": "sk-ant-test"},
                   "key": {"name": "default"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["endpoint"]["upstream"]["api"], "anthropic");
    assert_eq!(created["endpoint"]["upstream"]["has_api_key"], true);
    assert!(!created.to_string().contains("sk-ant-test"));

    // Errors name the field the wizard puts them under.
    let (status, body) = browser
        .post(
            "/api/v1/endpoints",
            json!({"name": "-bad", "modality": "llm", "provider": "external", "upstream": {"base_url": upstream.url("v1")}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("name")),
        "{body}"
    );
    let (status, body) = browser
        .post(
            "/api/v1/endpoints",
            json!({"name": "my-server", "modality": "llm", "provider": "external", "upstream": {"base_url": upstream.url("v1")}}),
        )
        .await;
    assert_eq!(status, 409, "a taken name: {body}");

    // Hugging Face: the recommendation step, then a deploy on the self-hosted provider.
    let preview_path = format!("/api/v1/endpoints/deploy/preview?model_id={MODEL_ID}&requests_per_day=1000&budget=balanced");
    let preview = browser
        .api(reqwest::Method::GET, &preview_path, None, false)
        .await;
    assert_eq!(preview.status(), 200);
    let preview: Value = preview.json().await.unwrap();
    let preview = &preview["preview"];
    assert!(
        preview["recommendation"]["cost_estimates"]["credits"]["per_request"].is_number(),
        "{preview}"
    );
    assert!(preview["monthly_estimate"]["credits"].is_number());
    assert!(preview["recommendation"]["alternatives"].is_array());
    let self_hosted = preview["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "self-hosted")
        .unwrap();
    assert_eq!(self_hosted["available"], true, "{preview}");
    let (status, body) = browser
        .post("/api/v1/endpoints/deploy/preview", json!({}))
        .await;
    assert_eq!(status, 405, "{body}");
    let unknown = browser
        .api(
            reqwest::Method::GET,
            "/api/v1/endpoints/deploy/preview?model_id=nobody/nothing",
            None,
            false,
        )
        .await;
    assert_eq!(unknown.status(), 404);

    let (status, accepted) = browser
        .post(
            "/api/v1/endpoints/deploy",
            json!({"model_id": MODEL_ID, "model_name": "smol", "min_workers": 0, "max_workers": 1,
                   "idle_timeout_seconds": 300, "requests_per_day": 1000, "budget": "balanced", "provider": "self-hosted",
                   "description": "wizard deploy"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let endpoint_id = accepted["endpoint_id"].as_str().unwrap().to_owned();
    let patched = browser
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/endpoints/{endpoint_id}"),
            Some(json!({"timeout_seconds": 90})),
            true,
        )
        .await;
    assert_eq!(
        patched.status(),
        200,
        "the wizard sets the timeout after the 202"
    );

    // The progress view reads the stream; here the job status stands in for it.
    let mut key = None;
    for _ in 0..300 {
        let status = browser
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
                None,
                false,
            )
            .await;
        let status: Value = status.json().await.unwrap();
        match status["deployment"]["state"].as_str() {
            Some("succeeded") => {
                key = status["api_key"].as_str().map(str::to_owned);
                break;
            }
            Some("failed") => panic!("deploy failed: {status}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let key = key.expect("the deploy finished with its key");
    let again = browser
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
            None,
            false,
        )
        .await;
    let again: Value = again.json().await.unwrap();
    assert!(again["api_key"].is_null(), "the key is handed out once");
    let response = server.chat(&key, "smol", false).await;
    assert_eq!(response.status(), 200);
    let (_, endpoint) = server
        .get(&format!("/api/v1/endpoints/{endpoint_id}"), &token)
        .await;
    assert_eq!(endpoint["endpoint"]["timeout_seconds"], 90);
    assert_eq!(endpoint["endpoint"]["status"], "active");
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/endpoints/{endpoint_id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200);
}

on_both_backends!(
    billing_page_shows_the_ledger_and_usage,
    |backend: Backend| async move {
        let server = TestServer::start(backend).await;
        let upstream = FakeUpstream::start().await;
        let tenant = server.tenant("payer", &upstream.url("v1")).await;
        for _ in 0..3 {
            assert_eq!(
                server
                    .chat(&tenant.api_key, &tenant.model, false)
                    .await
                    .status(),
                200
            );
        }
        assert_eq!(
            server
                .chat(&tenant.api_key, "unknown-model", false)
                .await
                .status(),
            404
        );
        server.settle().await;
        let browser = Session::sign_in(&server, &tenant.token).await;

        let (_, balance) = server.get("/api/v1/billing/balance", &tenant.token).await;
        let (status, html) = browser.page("/billing?period=day").await;
        assert_eq!(status, 200);
        let shown = attribute_between(&html, "id=\"billing-balance\">", "<");
        assert_eq!(shown, balance["balance"].to_string(), "balance card");
        assert!(html.contains("href=\"/billing?period=day\" aria-current=\"page\""));
        // One endpoint row and the totals: 3 requests (the 404 never reached an endpoint).
        let row_start = html
            .find(&format!("data-endpoint-id=\"{}\"", tenant.endpoint_id))
            .expect("usage row");
        let row = &html[row_start..row_start + html[row_start..].find("</tr>").unwrap()];
        let cells: Vec<&str> = row
            .split("<td class=\"num\">")
            .skip(1)
            .map(|cell| &cell[..cell.find('<').unwrap()])
            .collect();
        let (_, ledger) = server.get("/api/v1/billing/ledger", &tenant.token).await;
        let spent: i64 = ledger["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["kind"] == "charge")
            .map(|entry| -entry["amount_micro_usd"].as_i64().unwrap())
            .sum();
        assert!(spent > 0);
        let spent_credits = switchyard::dashboard::layout::credits(spent);
        let input = (3 * PROMPT_TOKENS).to_string();
        let output = (3 * COMPLETION_TOKENS).to_string();
        assert_eq!(
            cells[..5],
            [
                "3",
                "0",
                input.as_str(),
                output.as_str(),
                spent_credits.as_str()
            ],
            "{row}"
        );
        let totals_start = html.find("id=\"usage-totals\"").expect("totals row");
        let totals =
            &html[totals_start..totals_start + html[totals_start..].find("</tr>").unwrap()];
        assert!(
            totals.contains(&format!("<td class=\"num\">{spent_credits}</td>")),
            "{totals}"
        );
        assert_eq!(
            attribute_between(&html, "id=\"billing-used\">", "<"),
            spent_credits
        );
        assert_eq!(
            attribute_between(&html, "id=\"billing-requests\">", "<"),
            "3"
        );
        // The ledger: the top-up and three charges, newest first.
        assert!(html.contains("4 entries, newest first"), "{html}");
        let charge = html.find("Usage charge").unwrap();
        let topup = html.find("Top-up").unwrap();
        assert!(charge < topup, "newest first");
        assert!(html.contains("+1000"));
        assert!(html.contains("Page 1 of 1"));

        // Pages of 25: 30 more charges make two pages.
        for _ in 0..30 {
            server.chat(&tenant.api_key, &tenant.model, false).await;
        }
        server.settle().await;
        let (_, html) = browser.page("/billing?page=2").await;
        assert!(html.contains("Page 2 of 2"), "34 entries");
        assert_eq!(html.matches("class=\"ledger-").count(), 9);
        assert!(html.contains("rel=\"prev\""));
        assert!(!html.contains("rel=\"next\""));
        let (_, html) = browser.page("/billing?period=month").await;
        assert!(
            html.contains("<td class=\"num\">33</td>"),
            "33 requests this month"
        );

        // Signed out, the page sends the browser to the sign-in form.
        let anonymous = browser
            .http
            .get(format!("{}/billing", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 303);
        assert!(anonymous.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login?next="));
    }
);

fn attribute_between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("{start}")) + start.len();
    &html[from..from + html[from..].find(end).unwrap()]
}

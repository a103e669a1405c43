//! The endpoint page of the dashboard, driven like a browser would: sign in
//! through `POST /login` with a cookie jar kept by hand, every tab, the
//! fragments its script re-fetches, tenancy (another user's endpoint is a 404),
//! CSRF on cookie-authenticated API calls, sign-out and dead sessions, and the
//! security headers. On SQLite and PostgreSQL (the usage charts run SQL).

mod common;

use std::collections::BTreeMap;

use common::{FakeUpstream, TestServer};
use reqwest::header::{HeaderMap, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A client that keeps cookies and does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Applies `Set-Cookie` headers: a value, or removal with `Max-Age=0`.
    fn absorb(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let attributes: Vec<&str> = parts.collect();
            if attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("Max-Age=0"))
            {
                self.cookies.remove(name);
            } else {
                assert!(attributes.contains(&"HttpOnly"), "{text}");
                assert!(attributes.contains(&"SameSite=Strict"), "{text}");
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            request = request.header(COOKIE, self.cookie_header());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        self.absorb(&headers);
        Page {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .header(ACCEPT, "text/html,application/xhtml+xml");
        self.send(request).await
    }

    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// A JSON API call with the cookie, and the CSRF header when given.
    async fn api(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(ACCEPT, "application/json");
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let page = self.send(request).await;
        (
            page.status.as_u16(),
            serde_json::from_str(&page.body).unwrap_or(Value::String(page.body)),
        )
    }

    /// Signs in with a management token; returns the page CSRF token.
    async fn sign_in(&mut self, token: &str) -> String {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200);
        let form_csrf = between(&form.body, "name=\"csrf\" value=\"", "\"");
        let signed_in = self
            .post_form(
                "/login",
                &[("csrf", &form_csrf), ("next", "/"), ("token", token)],
            )
            .await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.body
        );
        assert_eq!(signed_in.location(), "/");
        assert!(self.cookies.contains_key("sy_session"));
        let overview = self.get("/").await;
        assert_eq!(overview.status, 200);
        between(&overview.body, "<meta name=\"csrf-token\" content=\"", "\"")
    }
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let to = text[from..].find(end).unwrap() + from;
    text[from..to].to_owned()
}

fn assert_security_headers(page: &Page) {
    let csp = page.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
}

on_both_backends!(endpoint_page, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(backend).await;
    let alice = server.tenant("alice", &upstream.url("v1")).await;
    let bob = server.tenant("bob", &upstream.url("v1")).await;
    for _ in 0..3 {
        assert_eq!(
            server
                .chat(&alice.api_key, &alice.model, false)
                .await
                .status(),
            200
        );
    }
    server.settle().await;

    let mut browser = Browser::new(&server.url);
    let csrf = browser.sign_in(&alice.token).await;
    let page_path = format!("/endpoints/{}", alice.endpoint_id);
    let api_path = format!("/api/v1/endpoints/{}", alice.endpoint_id);

    // Overview: connection info with copy buttons, scaling, quick stats, samples.
    let overview = browser.get(&page_path).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert_security_headers(&overview);
    let body = &overview.body;
    let endpoint_url = format!("{}/api/v1/inference/{}", server.url, alice.endpoint_id);
    assert!(
        body.contains(&format!("data-copy=\"{endpoint_url}\"")),
        "{body}"
    );
    assert!(body.contains(&format!("data-copy=\"{}/v1\"", server.url)));
    assert!(body.contains(&format!("data-copy=\"{}\"", alice.model)));
    assert!(body.contains("role=\"tablist\""));
    assert!(body.contains("id=\"tab-overview\" href") && body.contains("aria-current=\"page\""));
    assert!(body.contains("<p class=\"stat-value\" id=\"stat-requests\">3</p>"));
    assert!(body.contains("OpenAI SDK compatible"));
    assert!(body.contains("src=\"/assets/endpoint.js\""));
    assert!(!body.contains("style="), "no inline styles under the CSP");
    assert!(
        !body.contains(&alice.api_key),
        "the key is never shown again"
    );

    // Usage: server-rendered SVG charts per period, totals for the period.
    for period in ["day", "week", "month"] {
        let usage = browser
            .get(&format!("{page_path}?tab=usage&period={period}"))
            .await;
        assert_eq!(usage.status, 200, "{period}: {}", usage.body);
        let body = &usage.body;
        assert!(
            body.contains("id=\"chart-requests\" data-total=\"3\""),
            "{period}: {body}"
        );
        assert_eq!(body.matches("<svg class=\"chart\"").count(), 4, "{period}");
        assert_eq!(body.matches("role=\"img\"").count(), 4);
        assert!(body.contains("<div class=\"sr-only\"><table>"));
        assert!(body.contains(&format!("period={period}\" aria-current=\"page\"")));
        assert!(body.contains("<p class=\"stat-value\" id=\"total-requests\">3</p>"));
        assert!(!body.contains("style="));
    }
    let usage = browser.get(&format!("{page_path}?tab=usage")).await;
    assert!(usage.body.contains("period=day\" aria-current=\"page\""));

    // The store's series: three requests in the current hour, with percentiles.
    let now = switchyard::domain::now_ms();
    let hour = 3_600_000;
    let start = (now / hour + 1) * hour - 24 * hour;
    let series = server
        .state()
        .store
        .usage_series(&alice.user_id, &alice.endpoint_id, start, hour, 24)
        .await
        .unwrap();
    assert_eq!(series.buckets.len(), 24);
    assert_eq!(series.buckets.iter().map(|b| b.requests).sum::<i64>(), 3);
    let last = series.buckets.last().unwrap();
    assert_eq!(last.requests, 3);
    assert!(last.input_tokens > 0 && last.output_tokens > 0 && last.cost_micro_usd > 0);
    let (p50, p99) = (last.latency_p50_ms.unwrap(), last.latency_p99_ms.unwrap());
    assert!(p50 <= last.latency_p95_ms.unwrap() && last.latency_p95_ms.unwrap() <= p99);
    assert!(series.buckets[0].latency_p50_ms.is_none());
    assert!(!series.latency_capped);
    // Another user sees nothing of it.
    let foreign = server
        .state()
        .store
        .usage_series(&bob.user_id, &alice.endpoint_id, start, hour, 24)
        .await
        .unwrap();
    assert!(foreign.buckets.iter().all(|b| b.requests == 0));

    // Keys: the list shows prefixes only; its fragment is the rows alone.
    let keys = browser.get(&format!("{page_path}?tab=keys")).await;
    assert_eq!(keys.status, 200);
    assert!(keys.body.contains(&format!("{}…", &alice.api_key[..12])));
    assert!(keys.body.contains("id=\"key-form\""));
    assert!(!keys.body.contains(&alice.api_key));
    let rows = browser.get(&format!("{page_path}?fragment=keys")).await;
    assert_eq!(rows.status, 200);
    assert!(rows.body.contains("data-revoke=") && !rows.body.contains("<html"));

    // Settings and health render.
    let settings = browser.get(&format!("{page_path}?tab=settings")).await;
    assert_eq!(settings.status, 200);
    assert!(
        settings.body.contains("id=\"settings-form\"")
            && settings.body.contains("id=\"terminate\"")
    );
    let health = browser.get(&format!("{page_path}?tab=health")).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("Primary upstream"));
    assert!(health.body.contains("id=\"health-status\""));
    assert!(health.body.contains("id=\"endpoint-events\""));
    let events = browser.get(&format!("{page_path}?fragment=events")).await;
    assert_eq!(events.status, 200);
    assert!(events.body.contains("<ul class=\"events\""));

    // Another tenant's endpoint, or none: 404 page, or 404 JSON for scripts.
    for other in [
        format!("/endpoints/{}", bob.endpoint_id),
        "/endpoints/nope".to_owned(),
    ] {
        let missing = browser.get(&other).await;
        assert_eq!(missing.status, 404, "{other}");
        assert!(missing.body.contains("Endpoint not found"));
        assert!(!missing.body.contains(&bob.model));
        let (status, error) = browser
            .api(Method::GET, &format!("{other}?tab=keys"), None, None)
            .await;
        assert_eq!(status, 404);
        assert_eq!(error["error"]["code"], "endpoint_not_found");
    }

    // The API with the cookie: reads need no CSRF token, changes do.
    let (status, listed) = browser
        .api(Method::GET, &format!("{api_path}/keys"), None, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let new_key = json!({"name": "dash", "rate_limit_per_minute": 5, "rate_limit_per_day": 50});
    for token in [None, Some("wrong-token")] {
        let (status, error) = browser
            .api(
                Method::POST,
                &format!("{api_path}/keys"),
                Some(new_key.clone()),
                token,
            )
            .await;
        assert_eq!(status, 403, "{error}");
        assert_eq!(error["error"]["code"], "csrf_failed");
    }
    let (status, created) = browser
        .api(
            Method::POST,
            &format!("{api_path}/keys"),
            Some(new_key),
            Some(&csrf),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    let rows = browser.get(&format!("{page_path}?fragment=keys")).await;
    assert!(rows.body.contains("dash") && rows.body.contains("5/min"));
    let (status, _) = browser
        .api(
            Method::DELETE,
            &format!("{api_path}/keys/{key_id}"),
            None,
            Some(&csrf),
        )
        .await;
    assert_eq!(status, 200);
    let rows = browser.get(&format!("{page_path}?fragment=keys")).await;
    assert!(rows.body.contains("badge-muted\">revoked"), "{}", rows.body);

    // Settings: the server's field error, then a change that shows on the page.
    let (status, error) = browser
        .api(
            Method::PATCH,
            &api_path,
            Some(json!({"max_workers": 0})),
            Some(&csrf),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("max_workers: "));
    let (status, changed) = browser
        .api(
            Method::PATCH,
            &api_path,
            Some(json!({"min_workers": 1, "max_workers": 4, "idle_timeout_seconds": 120})),
            Some(&csrf),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let overview = browser.get(&page_path).await;
    assert!(overview.body.contains("<dd id=\"workers\">1 – 4</dd>"));
    assert!(overview.body.contains("<dd id=\"idle-timeout\">2 min</dd>"));

    // Sign-out ends the session: the old cookie no longer opens pages or the API.
    let old_session = browser.cookies["sy_session"].clone();
    let signed_out = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location(), "/login");
    assert!(!browser.cookies.contains_key("sy_session"));
    browser.cookies.insert("sy_session".to_owned(), old_session);
    let page = browser.get(&page_path).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        page.location().starts_with("/login?next=%2Fendpoints%2F"),
        "{}",
        page.location()
    );
    let (status, _) = browser
        .api(Method::GET, &format!("{api_path}/keys"), None, None)
        .await;
    assert_eq!(status, 401);

    // An expired session, and a cookie the server never issued, go to /login.
    let state = server.state();
    let expired = "expired-session-cookie-value-0123456789";
    let user = state
        .store
        .create_session(
            &state.secrets.hash_token(expired),
            &state.secrets.hash_token(&alice.token),
            switchyard::domain::now_ms() - 1000,
        )
        .await
        .unwrap();
    assert!(user.is_some());
    for cookie in [expired, "forged-cookie-value"] {
        browser
            .cookies
            .insert("sy_session".to_owned(), cookie.to_owned());
        let page = browser.get(&format!("{page_path}?tab=keys")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{cookie}");
        assert!(page.location().starts_with("/login?next="));
    }
});

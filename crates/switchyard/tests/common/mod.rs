//! Test harness: a Switchyard server on SQLite or a fresh PostgreSQL database,
//! a fake upstream, and helpers that drive the management API.

#![allow(dead_code)]

pub mod deploy;
pub mod fake_anthropic;
pub mod fake_azure;
pub mod fake_gemini;
pub mod fake_huggingface;
pub mod fake_modal;
pub mod fake_replicate;
pub mod fake_runpod;
pub mod fake_together;
pub mod fake_upstream;
pub mod faults;
pub mod spec;

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::config::{Config, ServeArgs};
use switchyard::server::{self, RunningServer};

#[allow(unused_imports)]
pub use fake_upstream::FakeUpstream;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where PostgreSQL tests connect (a database they may create databases from).
pub fn postgres_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin_url = postgres_admin_url();
    let name = format!("sy_test_{}", uuid::Uuid::now_v7().simple());
    let mut connection = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL must run at {admin_url} for the tests: {error}")
        });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub url: String,
    pub http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

/// A change to the validated config before the server starts.
pub type Configure = std::sync::Arc<dyn Fn(&mut Config) + Send + Sync>;

/// Options that tests tune.
#[derive(Clone, Default)]
pub struct Options {
    pub max_body_bytes: Option<usize>,
    pub upstream_timeout_seconds: Option<u64>,
    pub flush_ms: Option<u64>,
    /// Share an existing database instead of a fresh one.
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub secret_key: Option<String>,
    pub shutdown_grace_seconds: Option<u64>,
    /// Reuse this data directory (a restart of the same server).
    pub data_dir: Option<std::path::PathBuf>,
    /// Changes the validated config (providers, deploy timings) before start.
    pub configure: Option<Configure>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, options: Options) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let data_path = options
            .data_dir
            .clone()
            .unwrap_or_else(|| data_dir.path().to_owned());
        let database_url = match (backend, options.database_url.clone()) {
            (_, Some(url)) => Some(url),
            (Backend::Sqlite, None) => None,
            (Backend::Postgres, None) => Some(fresh_postgres_database().await),
        };
        let args = ServeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data_path),
            database_url: database_url.clone(),
            max_body_bytes: options.max_body_bytes,
            upstream_timeout_seconds: options.upstream_timeout_seconds,
            usage_flush_interval_ms: Some(options.flush_ms.unwrap_or(10)),
            redis_url: options.redis_url.clone(),
            shutdown_grace_seconds: options.shutdown_grace_seconds,
            ..ServeArgs::default()
        };
        let mut config = Config::validate(
            args,
            Some(ADMIN_TOKEN.to_owned()),
            options.secret_key.clone(),
        )
        .unwrap();
        if let Some(configure) = &options.configure {
            configure(&mut config);
        }
        let server = server::start(config).await.unwrap();
        let url = format!("http://{}", server.addr);
        Self {
            server: Some(server),
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            data_dir,
            database_url,
        }
    }

    pub async fn stop(&mut self) -> switchyard::recorder::RecorderTotals {
        self.server.take().unwrap().shutdown().await.unwrap()
    }

    pub fn state(&self) -> &switchyard::state::SharedState {
        &self.server.as_ref().unwrap().state
    }

    /// Waits until queued usage records have been written.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Creates a user and returns (id, management token).
    pub async fn create_user(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .post("/api/v1/users", ADMIN_TOKEN, json!({"name": name}))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["user"]["id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn add_credits(&self, user_id: &str, credits: i64) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/users/{user_id}/credits"),
                ADMIN_TOKEN,
                json!({"credits": credits, "reason": "test"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Creates a funded user with an endpoint on `base_url`; returns (user token, endpoint id, api key).
    pub async fn tenant(&self, name: &str, base_url: &str) -> Tenant {
        let (user_id, token) = self.create_user(name).await;
        self.add_credits(&user_id, 1000).await;
        let (endpoint_id, api_key) = self
            .create_endpoint(&token, &format!("{name}-model"), base_url)
            .await;
        Tenant {
            user_id,
            token,
            endpoint_id,
            api_key,
            model: format!("{name}-model"),
        }
    }

    pub async fn create_endpoint(
        &self,
        token: &str,
        name: &str,
        base_url: &str,
    ) -> (String, String) {
        self.register_endpoint(
            token,
            json!({"name": name, "modality": "llm", "provider": "external",
                   "upstream": {"base_url": base_url, "api": "openai", "api_key": "upstream-secret"},
                   "key": {"name": "first", "rate_limit_per_minute": 1000, "rate_limit_per_day": 100000}}),
        )
        .await
    }

    /// Posts an endpoint definition and returns (endpoint id, first API key).
    async fn register_endpoint(&self, token: &str, definition: Value) -> (String, String) {
        let (status, body) = self.post("/api/v1/endpoints", token, definition).await;
        assert_eq!(status, 201, "{body}");
        (
            body["endpoint"]["id"].as_str().unwrap().to_owned(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// A gateway chat completion.
    pub async fn chat(&self, api_key: &str, model: &str, stream: bool) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(api_key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream, "max_tokens": 8}))
            .send()
            .await
            .unwrap()
    }
}

pub struct Tenant {
    pub user_id: String,
    pub token: String,
    pub endpoint_id: String,
    pub api_key: String,
    pub model: String,
}

/// Runs a test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)(common::Backend::Postgres).await;
            }
        }
    };
}

impl TestServer {
    /// Creates an endpoint with an explicit upstream model (no discovery; the upstream may be down).
    pub async fn create_endpoint_unchecked(
        &self,
        token: &str,
        name: &str,
        base_url: &str,
    ) -> (String, String) {
        self.register_endpoint(
            token,
            json!({"name": name, "modality": "llm", "upstream": {"base_url": base_url, "model": fake_upstream::UPSTREAM_MODEL}}),
        )
        .await
    }
}

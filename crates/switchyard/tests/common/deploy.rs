//! Helpers of the deploy tests: a fake Hugging Face Hub, the fake model
//! server the self-hosted provisioner starts, waits on deploy jobs, and the
//! processes a test started.

use std::path::Path as FsPath;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::TestServer;

/// The model id the deploy tests use (the fake Hub knows it).
pub const MODEL_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// A fake Hugging Face Hub: model info for repos of `HuggingFaceTB` and
/// `acme` (a 135M-parameter BF16 text-generation model), the same model as
/// a private repo under `private-org`, 404 for others.
pub async fn fake_hub() -> String {
    async fn model(Path((owner, name)): Path<(String, String)>) -> (http::StatusCode, Json<Value>) {
        if owner == "private-org" {
            (
                http::StatusCode::OK,
                Json(json!({
                    "id": format!("{owner}/{name}"), "sha": "feed", "pipeline_tag": "text-generation",
                    "safetensors": {"parameters": {"BF16": 134_515_008_u64}, "total": 134_515_008_u64},
                    "gated": false, "private": true,
                })),
            )
        } else if owner == "HuggingFaceTB" || owner == "acme" {
            (
                http::StatusCode::OK,
                Json(json!({
                    "id": format!("{owner}/{name}"), "sha": "0123abcd", "pipeline_tag": "text-generation",
                    "safetensors": {"parameters": {"BF16": 134_515_008_u64}, "total": 134_515_008_u64},
                    "gated": false, "private": false, "library_name": "transformers",
                })),
            )
        } else {
            (
                http::StatusCode::NOT_FOUND,
                Json(json!({"error": "Repository not found"})),
            )
        }
    }
    let app = Router::new().route("/api/models/{owner}/{name}", get(model));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The Python interpreter itself rather than a launcher such as a pyenv
/// shim, which replaces its process image several times while it starts.
pub fn python() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs the fake model server");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The self-hosted command template that starts the fake model server.
pub fn fake_server_command(extra: &str) -> String {
    format!(
        "{} {}/tests/fixtures/fake_openai_server.py --port {{port}} --model {{served_model_name}} {extra}",
        python(),
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Whether a process runs (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The pids of the self-hosted servers recorded in a data directory.
pub fn server_pids(data_dir: &FsPath) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("self-hosted")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|entry| {
            let state: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
            state["pid"].as_u64().map(|pid| pid as u32)
        })
        .collect()
}

/// Stops the self-hosted servers of a data directory when dropped, also
/// when a test fails before terminating its endpoints.
pub struct StopServers(pub std::path::PathBuf);

impl Drop for StopServers {
    fn drop(&mut self) {
        for pid in server_pids(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

/// Polls the deployment until its job reaches `want`; panics on an
/// unexpected failure or after 40 s.
pub async fn wait_for_job(
    server: &TestServer,
    token: &str,
    endpoint_id: &str,
    want: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = server
            .get(
                &format!("/api/v1/endpoints/{endpoint_id}/deployment"),
                token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let state = body["deployment"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == want {
            return body;
        }
        assert!(
            state != "failed" || want == "failed",
            "deploy failed: {body}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A non-streaming chat completion through the gateway: (status, body).
pub async fn chat(server: &TestServer, key: &str, model: &str) -> (u16, Value) {
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi there"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

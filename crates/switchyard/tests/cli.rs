//! The server commands of the `switchyard` binary against a real server:
//! `deploy` follows the event stream to a usable endpoint and prints its key,
//! `endpoints ls|show|rm`, `keys create|ls|revoke` and `usage` read and
//! change what the management API holds, and errors carry the server's
//! message and a failing exit status. The binary runs as a subprocess; the
//! server runs in-process with a fake Hub and the self-hosted provisioner on
//! `tests/fixtures/fake_openai_server.py`.

mod common;

#[allow(unused_imports)]
use common::deploy::*;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Options, TestServer};
use serde_json::Value;
use switchyard::config::Config;

/// Options with the self-hosted provisioner on the fake OpenAI server script.
fn options(hub: &str) -> Options {
    let hub = hub.to_owned();
    let command = format!(
        "'{}' {}/tests/fixtures/fake_openai_server.py --port {{port}} --model {{served_model_name}} --ready-after 0.3",
        python(),
        env!("CARGO_MANIFEST_DIR")
    );
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

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

/// Runs `switchyard <args>` against the server with `--server` and `--token`,
/// without a terminal on stdin or stdout.
async fn cli(server: &TestServer, token: &str, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .args(args)
        .args(["--server", &server.url, "--token", token])
        .env_remove("SWITCHYARD_URL")
        .env_remove("SWITCHYARD_TOKEN");
    run(command).await
}

/// Runs a prepared command with stdin closed.
async fn run(mut command: tokio::process::Command) -> Run {
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command finished in time")
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The value after `label` on the line that starts with it (after spaces).
fn line_value(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{text}"))
        .trim()
        .to_owned()
}

on_both_backends!(
    the_cli_deploys_and_manages_endpoints,
    |backend: Backend| async move {
        let hub = fake_hub().await;
        let server = TestServer::start_with(backend, options(&hub)).await;
        let _stop = StopServers(server.data_dir.path().to_owned());
        let (user_id, token) = server.create_user("cli-user").await;
        server.add_credits(&user_id, 100).await;

        // Errors carry the server's message and code, and fail the command.
        let bad = cli(&server, "sym_not_a_real_token", &["endpoints", "ls"]).await;
        assert_ne!(bad.code, Some(0));
        assert!(
            bad.stderr.contains("a valid management token is required")
                && bad.stderr.contains("HTTP 401, invalid_token"),
            "{}",
            bad.stderr
        );
        let unknown = cli(&server, &token, &["endpoints", "show", "no-such-endpoint"]).await;
        assert_ne!(unknown.code, Some(0));
        assert!(
            unknown
                .stderr
                .contains("endpoint not found (HTTP 404, endpoint_not_found)"),
            "{}",
            unknown.stderr
        );

        // Deploy waits for the endpoint and prints its key once; without a
        // terminal the progress is one line per stage.
        let deployed = cli(
            &server,
            &token,
            &[
                "deploy",
                MODEL_ID,
                "--name",
                "smol",
                "--provider",
                "self-hosted",
            ],
        )
        .await;
        let out = deployed.ok();
        for stage in ["analyzing", "provisioning", "waiting_ready", "ready"] {
            assert!(
                out.contains(&format!("%] {stage}")),
                "no {stage} in:\n{out}"
            );
        }
        let endpoint_id = line_value(out, "Endpoint smol is ready:");
        assert_eq!(
            line_value(out, "OpenAI base URL:"),
            format!("{}/v1", server.url)
        );
        assert_eq!(line_value(out, "Model:"), "smol");
        let deploy_key = line_value(out, "API key:");
        assert!(deploy_key.starts_with("sy_live_"), "{out}");
        let answer = server.chat(&deploy_key, "smol", false).await;
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "Hello from the self-hosted fake."
        );

        // The endpoint is listed and shown with its deployment; the key is not shown again.
        let listed = cli(&server, &token, &["endpoints", "ls"]).await;
        let table = listed.ok();
        assert!(table.starts_with("ID "), "{table}");
        let row = table
            .lines()
            .find(|line| line.starts_with(&endpoint_id))
            .unwrap_or_else(|| panic!("{endpoint_id} not in:\n{table}"));
        for cell in ["smol", "llm", "self-hosted", "active"] {
            assert!(row.contains(cell), "{row}");
        }
        let listed = cli(
            &server,
            &token,
            &["endpoints", "ls", "--status", "active", "--json"],
        )
        .await;
        assert_eq!(listed.json()["data"][0]["id"], endpoint_id.as_str());
        let shown = cli(&server, &token, &["endpoints", "show", &endpoint_id]).await;
        let shown = shown.ok();
        assert!(shown.contains("Deployment "), "{shown}");
        assert!(shown.contains(": succeeded, stage ready, 100%"), "{shown}");
        // The deploy took the key: it is never shown again.
        assert!(!shown.contains("sy_live_"), "{shown}");
        let shown = cli(
            &server,
            &token,
            &["endpoints", "show", &endpoint_id, "--json"],
        )
        .await;
        let shown = shown.json();
        assert_eq!(shown["endpoint"]["name"], "smol");
        assert_eq!(shown["deployment"]["provider"], "self-hosted");
        assert!(shown["api_key"].is_null(), "{shown}");

        // Keys: created (printed once), listed, revoked (then refused at the gateway).
        let created = cli(
            &server,
            &token,
            &[
                "keys",
                "create",
                &endpoint_id,
                "--name",
                "ci",
                "--per-minute",
                "5",
            ],
        )
        .await;
        let out = created.ok();
        assert!(out.contains("will not be shown again"), "{out}");
        assert!(out.contains("5/minute"), "{out}");
        let key = line_value(out, "API key:");
        let key_id = out
            .split_whitespace()
            .nth(2)
            .expect("Created key <id>")
            .to_owned();
        assert_eq!(server.chat(&key, "smol", false).await.status(), 200);
        // The environment works like the flags.
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["keys", "ls", &endpoint_id])
            .env("SWITCHYARD_URL", &server.url)
            .env("SWITCHYARD_TOKEN", &token);
        let listed = run(command).await;
        let listed = listed.ok();
        let row = listed
            .lines()
            .find(|line| line.starts_with(&key_id))
            .unwrap_or_else(|| panic!("{key_id} not in:\n{listed}"));
        assert!(row.contains("ci") && row.contains("active"), "{row}");
        assert!(!listed.contains(&key), "only the prefix is listed");
        let revoked = cli(&server, &token, &["keys", "revoke", &endpoint_id, &key_id]).await;
        assert!(revoked.ok().contains("Revoked key"), "{}", revoked.stdout);
        assert_eq!(server.chat(&key, "smol", false).await.status(), 401);
        let keys = cli(&server, &token, &["keys", "ls", &endpoint_id, "--json"])
            .await
            .json();
        let entry = keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == key_id.as_str())
            .unwrap();
        assert_eq!(entry["status"], "revoked");

        // Usage: the chats above were metered.
        server.settle().await;
        let usage = cli(
            &server,
            &token,
            &["usage", &endpoint_id, "--period", "week", "--json"],
        )
        .await;
        let usage = usage.json();
        assert_eq!(usage["period"], "week");
        assert!(usage["usage"]["requests"].as_i64().unwrap() >= 1, "{usage}");
        let usage = cli(&server, &token, &["usage", &endpoint_id]).await;
        let requests = line_value(usage.ok(), "Requests:");
        assert!(!requests.starts_with('0'), "{}", usage.stdout);
        let summary = cli(&server, &token, &["usage"]).await;
        let out = summary.ok();
        assert!(out.starts_with("Balance: "), "{out}");
        assert!(out.contains(&endpoint_id), "{out}");
        let summary = cli(&server, &token, &["usage", "--json"]).await.json();
        assert!(
            summary["summary"]["requests_24h"].as_i64().unwrap() >= 1,
            "{summary}"
        );
        assert!(summary["balance"]["balance"].is_number(), "{summary}");

        // A deploy that fails ends with the server's reason and exit status 1.
        let failed = cli(&server, &token, &["deploy", MODEL_ID, "--name", "nowhere"]).await;
        assert_eq!(failed.code, Some(1), "{}", failed.stdout);
        assert!(
            failed.stdout.starts_with("Recommendation: "),
            "{}",
            failed.stdout
        );
        assert!(
            failed
                .stderr
                .contains("no configured provider can serve this model"),
            "{}",
            failed.stderr
        );

        // --no-wait returns the accepted deploy; rm asks for --yes without a terminal.
        let accepted = cli(
            &server,
            &token,
            &["deploy", MODEL_ID, "--name", "later", "--no-wait", "--json"],
        )
        .await
        .json();
        assert_eq!(accepted["status"], "provisioning");
        let later = accepted["endpoint_id"].as_str().unwrap().to_owned();
        let refused = cli(&server, &token, &["endpoints", "rm", &later]).await;
        assert_ne!(refused.code, Some(0));
        assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
        cli(&server, &token, &["endpoints", "rm", &later, "--yes"])
            .await
            .ok();

        // Removing the deployed endpoint revokes its key and stops its server.
        let pids = server_pids(server.data_dir.path());
        assert_eq!(pids.len(), 1, "{pids:?}");
        let removed = cli(&server, &token, &["endpoints", "rm", &endpoint_id, "--yes"]).await;
        let out = removed.ok();
        assert!(out.contains("Terminated endpoint smol"), "{out}");
        assert!(out.contains("provider resource is being deleted"), "{out}");
        assert_eq!(server.chat(&deploy_key, "smol", false).await.status(), 401);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while process_alive(pids[0]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server process is still running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listed = cli(&server, &token, &["endpoints", "ls", "--json"])
            .await
            .json();
        assert!(
            listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|endpoint| endpoint["id"] != endpoint_id.as_str()
                    || endpoint["status"] == "terminated"),
            "{listed}"
        );
    }
);

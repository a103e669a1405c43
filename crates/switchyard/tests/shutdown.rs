//! The real binary: SIGTERM with usage still queued loses no usage rows, on SQLite and PostgreSQL.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{FakeUpstream, ADMIN_TOKEN};
use serde_json::{json, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Binary {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Binary {
    fn start(data_dir: &std::path::Path, database_url: Option<&str>, flush_ms: u64) -> Self {
        let port = free_port();
        let log = data_dir.join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--usage-flush-interval-ms", &flush_ms.to_string()])
            .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SWITCHYARD_LOG", "info")
            .env_remove("SWITCHYARD_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let child = command.spawn().unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http.get(format!("{}/readyz", self.url)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

on_both_backends!(sigterm_flushes_every_usage_row, |backend| async move {
    let upstream = FakeUpstream::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        common::Backend::Sqlite => None,
        common::Backend::Postgres => Some(common::fresh_postgres_database().await),
    };
    // A long flush interval keeps the records queued in memory until shutdown.
    let mut binary = Binary::start(data_dir.path(), database_url.as_deref(), 60_000);
    let http = reqwest::Client::new();
    binary.wait_ready(&http).await;

    let user = post(
        &http,
        &format!("{}/api/v1/users", binary.url),
        ADMIN_TOKEN,
        json!({"name": "shutdown"}),
    )
    .await;
    let token = user["token"].as_str().unwrap().to_owned();
    let user_id = user["user"]["id"].as_str().unwrap().to_owned();
    post(
        &http,
        &format!("{}/api/v1/users/{user_id}/credits", binary.url),
        ADMIN_TOKEN,
        json!({"credits": 100}),
    )
    .await;
    let created = post(
        &http,
        &format!("{}/api/v1/endpoints", binary.url),
        &token,
        json!({"name": "flush", "modality": "llm", "upstream": {"base_url": upstream.url("v1")}, "key": {"name": "k", "rate_limit_per_minute": 10000}}),
    )
    .await;
    let key = created["api_key"].as_str().unwrap().to_owned();
    let endpoint_id = created["endpoint"]["id"].as_str().unwrap().to_owned();

    let requests = 120;
    let mut tasks = Vec::new();
    for index in 0..requests {
        let http = http.clone();
        let url = format!("{}/v1/chat/completions", binary.url);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let stream = index % 3 == 0;
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "flush", "messages": [{"role": "user", "content": "hi"}], "stream": stream}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let status = binary.terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(&binary.log).unwrap();
    assert!(log.contains("flushed usage records on shutdown"), "{log}");

    // Count what reached the database.
    let url = database_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            data_dir.path().join("switchyard.db").display()
        )
    });
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE endpoint_id = $1")
        .bind(&endpoint_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, requests);
    let charges: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'charge'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(charges, requests);
    let balance: i64 = sqlx::query_scalar("SELECT balance_micro_usd FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let spent: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_records")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(balance, 1_000_000 - spent);
});

#[tokio::test]
async fn first_start_prints_an_admin_token_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let run = |expect_token: bool| {
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .env_remove("SWITCHYARD_DATABASE_URL")
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(
            stdout.contains("Admin token (shown once"),
            expect_token,
            "{stdout}"
        );
        stdout
            .split_whitespace()
            .find(|word| word.starts_with("sym_"))
            .map(str::to_owned)
    };
    let token = run(true).expect("token printed");
    assert_eq!(token.len(), 44);
    assert!(
        run(false).is_none(),
        "the token is printed only on the first start"
    );
    // The secret key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir.path().join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn rotating_the_admin_token_revokes_the_old_one() {
    let data_dir = tempfile::tempdir().unwrap();
    let start = |token: &str| {
        let args = switchyard::config::ServeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data_dir.path().to_owned()),
            ..Default::default()
        };
        switchyard::config::Config::validate(args, Some(token.to_owned()), None).unwrap()
    };
    let http = reqwest::Client::new();
    let old = "old-admin-token-0123456789";
    let new = "new-admin-token-0123456789";
    let server = switchyard::server::start(start(old)).await.unwrap();
    let url = format!("http://{}/api/v1/me", server.addr);
    assert_eq!(
        http.get(&url)
            .bearer_auth(old)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await.unwrap();

    let server = switchyard::server::start(start(new)).await.unwrap();
    let url = format!("http://{}/api/v1/me", server.addr);
    assert_eq!(
        http.get(&url)
            .bearer_auth(new)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(&url)
            .bearer_auth(old)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    server.shutdown().await.unwrap();
}

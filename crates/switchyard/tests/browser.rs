//! Browser tests: real headless Chromium (Debian's `chromium`) driven by
//! playwright-core through `tests/browser/run.mjs`, one spec per test, each
//! against its own server on SQLite and a fake upstream. Screenshots go to
//! `<workspace>/target/browser-screenshots/`.
//!
//! `scripts/browser_deps.sh` installs Chromium and `tests/browser/node_modules`;
//! `scripts/test.sh` runs it and exports `SWITCHYARD_CHROMIUM`. Without them
//! these tests fail and say so; they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, FakeUpstream, Options, TestServer};

/// Specs run one at a time: two Chromiums on two cores make timings flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The time a spec may take, enforced by run.mjs; the process is killed a little later.
const SPEC_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect() {
    run_spec("connect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard() {
    run_spec("dashboard").await;
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace directory")
}

/// The Chromium binary, or a failure that says how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("SWITCHYARD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {} (SWITCHYARD_CHROMIUM): run scripts/browser_deps.sh, \
         which installs Debian's chromium and chromium-driver (scripts/test.sh runs it)",
        path.display()
    );
    path
}

/// Fails unless `npm ci` has run in tests/browser.
fn check_node_modules(browser_dir: &Path) {
    let playwright = browser_dir.join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: run scripts/browser_deps.sh (npm ci in tests/browser; scripts/test.sh runs it)",
        playwright.display()
    );
}

/// A free port on 127.0.0.1 for the cross-origin test page.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts a server and a fake upstream, runs `tests/browser/specs/<name>.mjs`
/// in Chromium, and fails with the runner's output unless it passes.
async fn run_spec(name: &str) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let workspace = workspace();
    let browser_dir = workspace.join("tests/browser");
    let chromium = chromium();
    check_node_modules(&browser_dir);
    let screenshots = workspace.join("target/browser-screenshots");
    std::fs::create_dir_all(&screenshots).expect("create the screenshots folder");
    println!("browser screenshots: {}", screenshots.display());

    // A page on another origin (run by the spec) may call the API.
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let allowed = page_origin.clone();
    let server = TestServer::start_with(
        Backend::Sqlite,
        Options {
            configure: Some(Arc::new(move |config| {
                config.cors_allowed_origins = vec![allowed.clone()];
            })),
            ..Options::default()
        },
    )
    .await;
    let upstream = FakeUpstream::start().await;
    let user_name = "Ada Lovelace";
    let (user_id, token) = server.create_user(user_name).await;
    server.add_credits(&user_id, 1000).await;
    let (_, second_token) = server.create_user("Second tenant").await;

    let mut command = tokio::process::Command::new("node");
    command
        .arg(browser_dir.join("run.mjs"))
        .arg(name)
        .current_dir(&browser_dir)
        .env("SWITCHYARD_CHROMIUM", &chromium)
        .env("SY_URL", &server.url)
        .env("SY_TOKEN", &token)
        .env("SY_SECOND_TOKEN", &second_token)
        .env("SY_UPSTREAM_URL", upstream.url("v1"))
        .env("SY_USER_NAME", user_name)
        .env("SY_PAGE_PORT", page_port.to_string())
        .env("SY_PAGE_ORIGIN", &page_origin)
        .env("SY_SCREENSHOTS", &screenshots)
        .env("SY_SPEC_TIMEOUT_MS", SPEC_TIMEOUT.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start node (Node.js 20 is needed): {error}"));
    let output = tokio::time::timeout(
        SPEC_TIMEOUT + Duration::from_secs(30),
        child.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("browser spec {name} did not finish in {SPEC_TIMEOUT:?}; it was killed")
    })
    .expect("wait for node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser spec {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("browser screenshots: {}", screenshots.display());
}

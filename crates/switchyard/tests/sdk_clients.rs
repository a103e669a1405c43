//! The official OpenAI and Anthropic Python SDKs against the gateway, in front of the
//! fakes of every upstream protocol (OpenAI-compatible, Anthropic, Gemini, Azure OpenAI).
//!
//! The SDK calls are `tests/fixtures/sdk_clients.py`, run with `$SWITCHYARD_SDK_PYTHON`
//! (or, when unset, the venv that `scripts/sdk_venv.sh` creates or reuses). It prints
//! `PASS <check>` / `FAIL <check>: <reason>`; this test wants exactly the checks below to
//! pass, then one usage record per SDK request with the fakes' exact token counts, and the
//! parameters the SDKs sent in the upstream requests.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::fake_anthropic::{self, FakeAnthropic};
use common::fake_azure::{self, FakeAzure};
use common::fake_gemini::{self, FakeGemini};
use common::fake_upstream::{self, FakeUpstream};
use common::{Backend, TestServer};
use serde_json::{json, Value};

/// The bound on the Python script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// The bound on creating the venv when the test has to (pip install from the registry).
const VENV_TIMEOUT: Duration = Duration::from_secs(900);
/// The system prompt the script sends (`SYSTEM` in sdk_clients.py).
const SYSTEM: &str = "You are a terse assistant.";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$SWITCHYARD_SDK_PYTHON`, or the python of the venv `scripts/sdk_venv.sh` prepares.
async fn sdk_python() -> String {
    if let Some(python) = std::env::var_os("SWITCHYARD_SDK_PYTHON").filter(|path| !path.is_empty())
    {
        return python.to_string_lossy().into_owned();
    }
    let script = repo_root().join("scripts/sdk_venv.sh");
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let output = tokio::time::timeout(VENV_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{} took over {VENV_TIMEOUT:?}", script.display()))
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        output.status
    );
    let python = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(!python.is_empty(), "{} printed no path", script.display());
    python
}

/// An endpoint the script calls and what its fake answers.
struct Target {
    id: &'static str,
    endpoint_id: String,
    config: Value,
}

/// What one usage record should say: (input tokens, output tokens, streamed).
type Usage = (i64, i64, bool);

async fn register(
    server: &TestServer,
    token: &str,
    id: &'static str,
    modality: &str,
    upstream: Value,
    mut config: Value,
) -> Target {
    let name = format!("sdk-{}", id.replace('_', "-"));
    let (status, body) = server
        .post(
            "/api/v1/endpoints",
            token,
            json!({"name": name, "modality": modality, "upstream": upstream,
                   "key": {"name": "sdk", "rate_limit_per_minute": 1000, "rate_limit_per_day": 100000}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    config["name"] = json!(name);
    config["key"] = body["api_key"].clone();
    config["api"] = upstream["api"].clone();
    Target {
        id,
        endpoint_id: body["endpoint"]["id"].as_str().unwrap().to_owned(),
        config,
    }
}

/// A chat fake's answers for the script's config.
fn chat_config(
    prompt: u64,
    completion: u64,
    reply: &str,
    stream: (&str, u64),
    pieces: Option<&[&str]>,
    tool_tokens: Option<u64>,
) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "reply": reply,
           "stream_reply": stream.0, "stream_completion_tokens": stream.1,
           "reply_pieces": pieces, "tool_completion_tokens": tool_tokens})
}

/// The check names the script must print as passed.
fn expected_checks(chat: &[&Target], embeddings: &[&Target]) -> Vec<String> {
    let mut checks = Vec::new();
    for target in chat {
        for check in ["models", "chat", "stream", "stop", "max_tokens"] {
            checks.push(format!("openai_sdk.{}.{check}", target.id));
        }
        if !target.config["tool_completion_tokens"].is_null() {
            checks.push(format!("openai_sdk.{}.tool_call", target.id));
        }
    }
    checks.push("openai_sdk.anthropic.unsupported_logprobs".to_owned());
    for target in embeddings {
        checks.push(format!("openai_sdk.{}.embeddings", target.id));
    }
    for id in ["openai", "anthropic"] {
        for check in ["message", "stream", "system", "bad_model"] {
            checks.push(format!("anthropic_sdk.{id}.{check}"));
        }
    }
    checks.push("anthropic_sdk.anthropic.tool_use".to_owned());
    checks.push("errors.openai_sdk.wrong_key".to_owned());
    checks.push("errors.anthropic_sdk.wrong_key".to_owned());
    checks.sort();
    checks
}

/// The usage records the script's requests leave on a chat endpoint, sorted.
fn expected_chat_usage(target: &Target, anthropic_sdk: bool) -> Vec<Usage> {
    let config = &target.config;
    let number = |field: &str| config[field].as_i64().unwrap();
    let (prompt, completion) = (number("prompt_tokens"), number("completion_tokens"));
    let stream = number("stream_completion_tokens");
    let honours_limits = !config["reply_pieces"].is_null();
    // chat, stream, stop (" from" keeps "Hello there": 2 tokens), max_tokens=3.
    let mut usage = vec![
        (prompt, completion, false),
        (prompt, stream, true),
        (prompt, if honours_limits { 2 } else { completion }, false),
        (prompt, if honours_limits { 3 } else { completion }, false),
    ];
    if let Some(tool) = config["tool_completion_tokens"].as_i64() {
        // The tool call, then the answer to the tool result.
        usage.extend([(prompt, tool, false), (prompt, completion, false)]);
    }
    if anthropic_sdk {
        // message, stream, system.
        usage.extend([
            (prompt, completion, false),
            (prompt, stream, true),
            (prompt, completion, false),
        ]);
    }
    if target.id == "anthropic" {
        // The Anthropic SDK's tool use and the answer to its tool result.
        let tool = number("tool_completion_tokens");
        usage.extend([(prompt, tool, false), (prompt, completion, false)]);
    }
    usage.sort_unstable();
    usage
}

/// The usage records of an endpoint as (input, output, streamed), sorted; asserts each
/// one succeeded.
async fn usage_of(server: &TestServer, token: &str, endpoint_id: &str) -> Vec<Usage> {
    let (status, body) = server
        .get(
            &format!("/api/v1/endpoints/{endpoint_id}/usage/detailed?limit=100"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut usage: Vec<Usage> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            assert_eq!(record["success"], true, "{record}");
            assert_eq!(record["status_code"], 200, "{record}");
            assert_eq!(record["usage_source"], "upstream", "{record}");
            (
                record["input_tokens"].as_i64().unwrap(),
                record["output_tokens"].as_i64().unwrap(),
                record["streamed"].as_bool().unwrap(),
            )
        })
        .collect();
    usage.sort_unstable();
    usage
}

/// Runs the script; returns (exit status, stdout, stderr).
async fn run_script(python: &str, config_path: &std::path::Path) -> (bool, String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdk_clients.py");
    let mut command = tokio::process::Command::new(python);
    command
        .arg("-u")
        .arg(&script)
        .arg(config_path)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("sdk_clients.py ran over {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("cannot run {python}: {error}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The bodies one fake received on `path_suffix`.
fn bodies(log: &common::faults::RequestLog, path_suffix: &str) -> Vec<Value> {
    log.all()
        .into_iter()
        .filter(|request| request.path.ends_with(path_suffix))
        .map(|request| request.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_through_the_gateway() {
    let python = sdk_python().await;
    let upstream = FakeUpstream::start().await;
    let anthropic = FakeAnthropic::start().await;
    let gemini = FakeGemini::start().await;
    let azure = FakeAzure::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let (user_id, token) = server.create_user("sdk").await;
    server.add_credits(&user_id, 1000).await;

    let stream_reply: String = (0..fake_upstream::STREAM_CHUNKS)
        .map(|index| format!("tok{index} "))
        .collect();
    let openai = register(
        &server,
        &token,
        "openai",
        "llm",
        json!({"base_url": upstream.url("v1"), "api": "openai", "api_key": "upstream-secret",
               "model": fake_upstream::UPSTREAM_MODEL}),
        chat_config(
            fake_upstream::PROMPT_TOKENS,
            fake_upstream::COMPLETION_TOKENS,
            "Hello there",
            (&stream_reply, fake_upstream::STREAM_CHUNKS),
            None,
            None,
        ),
    )
    .await;
    let claude = register(
        &server,
        &token,
        "anthropic",
        "llm",
        json!({"base_url": anthropic.url("ok"), "api": "anthropic",
               "api_key": fake_anthropic::API_KEY, "model": fake_anthropic::MODEL}),
        chat_config(
            fake_anthropic::INPUT_TOKENS,
            fake_anthropic::OUTPUT_TOKENS,
            fake_anthropic::REPLY,
            (fake_anthropic::REPLY, fake_anthropic::OUTPUT_TOKENS),
            Some(&fake_anthropic::REPLY_PIECES),
            Some(fake_anthropic::TOOL_OUTPUT_TOKENS),
        ),
    )
    .await;
    let google = register(
        &server,
        &token,
        "google",
        "llm",
        json!({"base_url": gemini.url("ok"), "api": "google",
               "api_key": fake_gemini::API_KEY, "model": fake_gemini::MODEL}),
        chat_config(
            fake_gemini::PROMPT_TOKENS,
            fake_gemini::CANDIDATE_TOKENS,
            fake_gemini::REPLY,
            (fake_gemini::REPLY, fake_gemini::CANDIDATE_TOKENS),
            Some(&fake_gemini::REPLY_PIECES),
            Some(fake_gemini::TOOL_CANDIDATE_TOKENS),
        ),
    )
    .await;
    let azure_chat = register(
        &server,
        &token,
        "azure",
        "llm",
        json!({"base_url": azure.url("ok"), "api": "azure", "api_key": fake_azure::API_KEY,
               "model": fake_azure::CHAT_DEPLOYMENT, "api_version": fake_azure::API_VERSION}),
        chat_config(
            fake_azure::PROMPT_TOKENS,
            fake_azure::COMPLETION_TOKENS,
            fake_azure::REPLY,
            (fake_azure::REPLY, fake_azure::COMPLETION_TOKENS),
            Some(&fake_azure::REPLY_PIECES),
            None,
        ),
    )
    .await;
    // Azure serves embeddings from their own deployment, so from their own endpoint.
    let azure_embed = register(
        &server,
        &token,
        "azure_embed",
        "embedding",
        json!({"base_url": azure.url("ok"), "api": "azure", "api_key": fake_azure::API_KEY,
               "model": fake_azure::EMBEDDING_DEPLOYMENT, "api_version": fake_azure::API_VERSION}),
        json!({"prompt_tokens": fake_azure::EMBEDDING_TOKENS}),
    )
    .await;
    // The OpenAI-compatible fake answers embeddings with 5 prompt tokens.
    let mut openai_embed = Target {
        id: "openai",
        endpoint_id: openai.endpoint_id.clone(),
        config: openai.config.clone(),
    };
    openai_embed.config["prompt_tokens"] = json!(5);

    let chat = [&openai, &claude, &google, &azure_chat];
    let embeddings = [&openai_embed, &azure_embed];
    let config = json!({
        "server": server.url,
        "chat": chat.iter().map(|target| (target.id, target.config.clone())).collect::<BTreeMap<_, _>>(),
        "embeddings": embeddings.iter().map(|target| (target.id, target.config.clone())).collect::<BTreeMap<_, _>>(),
        "anthropic_sdk": ["openai", "anthropic"],
        "tool_round_trip": "anthropic",
        "unsupported_logprobs": "anthropic",
    });
    let config_path = server.data_dir.path().join("sdk_clients.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

    let (success, stdout, stderr) = run_script(&python, &config_path).await;
    let report = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("FAIL "))
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}\n{report}");
    assert!(success, "sdk_clients.py exited non-zero\n{report}");
    let mut passed: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("PASS "))
        .map(str::to_owned)
        .collect();
    passed.sort();
    assert_eq!(passed, expected_checks(&chat, &embeddings), "{report}");

    // One usage record per SDK request that reached an upstream, with the fakes' counts;
    // refused requests (wrong key, unknown model, unsupported parameter) leave none.
    let mut wanted: BTreeMap<&str, Vec<Usage>> = BTreeMap::new();
    for target in chat {
        let anthropic_sdk = target.id == "openai" || target.id == "anthropic";
        wanted.insert(target.id, expected_chat_usage(target, anthropic_sdk));
    }
    let openai_usage = wanted.get_mut("openai").unwrap();
    openai_usage.push((5, 0, false));
    openai_usage.sort_unstable();
    let embedding_tokens = fake_azure::EMBEDDING_TOKENS as i64;
    wanted.insert("azure_embed", vec![(embedding_tokens, 0, false)]);
    let ids: BTreeMap<&str, &str> = chat
        .iter()
        .chain([&&azure_embed])
        .map(|target| (target.id, target.endpoint_id.as_str()))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut got = BTreeMap::new();
        for (id, endpoint_id) in &ids {
            got.insert(*id, usage_of(&server, &token, endpoint_id).await);
        }
        if got == wanted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage records (input, output, streamed) per endpoint:\n got {got:#?}\nwant {wanted:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What the SDKs' parameters became upstream.
    let sent = upstream.recorded.requests.lock().unwrap().clone();
    let chats: Vec<&Value> = sent
        .iter()
        .filter(|(path, _, _)| path == "/chat/completions")
        .map(|(_, _, body)| body)
        .collect();
    assert!(
        chats.iter().any(|body| body["stop"] == json!([" from"])),
        "{chats:#?}"
    );
    assert!(
        chats.iter().any(|body| body["max_tokens"] == 3),
        "{chats:#?}"
    );
    assert!(
        chats.iter().any(|body| body["messages"][0]
            == json!({"role": "system", "content": SYSTEM})),
        "the Anthropic SDK's system prompt did not reach the OpenAI-compatible upstream: {chats:#?}"
    );
    let claude_bodies = bodies(anthropic.requests(), "/v1/messages");
    assert!(
        claude_bodies.iter().any(|body| body["system"] == SYSTEM),
        "{claude_bodies:#?}"
    );
    assert!(
        claude_bodies
            .iter()
            .all(|body| body.get("logprobs").is_none()),
        "logprobs reached Anthropic: {claude_bodies:#?}"
    );
    let tool_results: Vec<&Value> = claude_bodies
        .iter()
        .filter_map(|body| body["messages"].as_array()?.last())
        .filter(|message| message["content"][0]["type"] == "tool_result")
        .collect();
    // One from the OpenAI SDK's `tool` message, one from the Anthropic SDK's block.
    assert_eq!(tool_results.len(), 2, "{claude_bodies:#?}");
    for message in tool_results {
        assert_eq!(
            message["content"][0]["tool_use_id"],
            fake_anthropic::TOOL_USE_ID,
            "{message}"
        );
    }
    let gemini_bodies = bodies(gemini.requests(), "Content");
    assert!(
        gemini_bodies.iter().any(|body| {
            body["contents"].as_array().is_some_and(|contents| {
                contents
                    .iter()
                    .any(|content| content["parts"][0]["functionResponse"]["name"] == "get_weather")
            })
        }),
        "the tool result did not reach Gemini as a functionResponse: {gemini_bodies:#?}"
    );
    let azure_paths: Vec<String> = azure
        .requests()
        .all()
        .into_iter()
        .map(|request| format!("{}?{}", request.path, request.query.unwrap_or_default()))
        .collect();
    assert!(
        azure_paths.iter().any(|path| path.ends_with(&format!(
            "/openai/deployments/{}/embeddings?api-version={}",
            fake_azure::EMBEDDING_DEPLOYMENT,
            fake_azure::API_VERSION
        ))),
        "{azure_paths:#?}"
    );
}

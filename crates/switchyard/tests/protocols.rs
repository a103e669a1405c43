//! Protocol translation through the whole gateway: OpenAI clients in front of
//! Anthropic, Gemini and Azure upstreams, Anthropic clients in front of
//! OpenAI-compatible and Anthropic upstreams, exact usage and re-shaped errors.

mod common;

use common::{fake_anthropic, fake_azure, fake_gemini, fake_upstream, Backend, TestServer};
use common::{FakeUpstream, Tenant};
use serde_json::{json, Value};

/// A funded user with one endpoint on `upstream` (JSON `upstream` object).
async fn tenant_on(server: &TestServer, name: &str, upstream: Value) -> Tenant {
    let (user_id, token) = server.create_user(name).await;
    server.add_credits(&user_id, 1000).await;
    let model = format!("{name}-model");
    let (status, body) = server
        .post(
            "/api/v1/endpoints",
            &token,
            json!({"name": model, "modality": "llm", "provider": "external", "upstream": upstream,
                   "key": {"name": "k", "rate_limit_per_minute": 1000, "rate_limit_per_day": 100000}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    Tenant {
        user_id,
        token,
        endpoint_id: body["endpoint"]["id"].as_str().unwrap().to_owned(),
        api_key: body["api_key"].as_str().unwrap().to_owned(),
        model,
    }
}

fn anthropic_upstream(fake: &fake_anthropic::FakeAnthropic) -> Value {
    json!({"base_url": fake.url("ok"), "api": "anthropic", "api_key": fake_anthropic::API_KEY,
           "model": fake_anthropic::MODEL})
}

fn gemini_upstream(fake: &fake_gemini::FakeGemini) -> Value {
    json!({"base_url": fake.url("ok"), "api": "google", "api_key": fake_gemini::API_KEY,
           "model": fake_gemini::MODEL})
}

fn azure_upstream(fake: &fake_azure::FakeAzure, deployment: &str) -> Value {
    json!({"base_url": fake.url("ok"), "api": "azure", "api_key": fake_azure::API_KEY,
           "model": deployment, "api_version": fake_azure::API_VERSION})
}

async fn openai_chat(server: &TestServer, tenant: &Tenant, body: Value) -> (u16, Value) {
    let mut body = body;
    body["model"] = json!(tenant.model);
    let response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&tenant.api_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A streamed call: status, content type and the whole body text.
async fn stream_text(
    server: &TestServer,
    path: &str,
    tenant: &Tenant,
    body: Value,
) -> (u16, String, String) {
    let mut body = body;
    body["model"] = json!(tenant.model);
    let response = server
        .http
        .post(format!("{}{path}", server.url))
        .header("x-api-key", &tenant.api_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The `data:` payloads of an SSE body (`[DONE]` kept as a string).
fn data_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned())))
        .collect()
}

/// The `(event name, data)` pairs of a named-event SSE body.
fn named_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    value.clone_into(&mut name);
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(value).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

async fn usage_records(server: &TestServer, tenant: &Tenant) -> Vec<Value> {
    server.settle().await;
    let (status, body) = server
        .get(
            &format!(
                "/api/v1/endpoints/{}/usage/detailed?limit=100",
                tenant.endpoint_id
            ),
            &tenant.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// Asserts the newest usage record holds exactly these upstream-reported tokens.
async fn assert_last_usage(server: &TestServer, tenant: &Tenant, count: usize, tokens: (u64, u64)) {
    let records = usage_records(server, tenant).await;
    assert_eq!(records.len(), count, "one record per request: {records:?}");
    let last = &records[0];
    assert_eq!(last["input_tokens"], tokens.0, "{last}");
    assert_eq!(last["output_tokens"], tokens.1, "{last}");
    assert_eq!(last["usage_source"], "upstream", "{last}");
    assert_eq!(last["attempts"], 1, "{last}");
    assert_eq!(last["backend_id"], json!(tenant.endpoint_id), "{last}");
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn header<'a>(request: &'a common::faults::RecordedRequest, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .to_str()
        .unwrap()
}

// On both databases: the usage record's backend fields round-trip through the store.
on_both_backends!(
    openai_client_to_anthropic_plain_with_system_stop_and_max_tokens,
    |backend| async move {
        let fake = fake_anthropic::FakeAnthropic::start().await;
        let server = TestServer::start(backend).await;
        let tenant = tenant_on(&server, "anth", anthropic_upstream(&fake)).await;

        let (status, body) = openai_chat(
            &server,
            &tenant,
            json!({"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi"}],
               "stop": [" fake"], "max_tokens": 50}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let seen = fake.requests().last().unwrap();
        assert!(seen.path.ends_with("/v1/messages"), "{}", seen.path);
        assert_eq!(header(&seen, "x-api-key"), fake_anthropic::API_KEY);
        assert_eq!(header(&seen, "anthropic-version"), fake_anthropic::VERSION);
        assert_eq!(seen.body["system"], "Be brief.");
        assert_eq!(seen.body["stop_sequences"], json!([" fake"]));
        assert_eq!(seen.body["max_tokens"], 50);
        assert_eq!(seen.body["model"], fake_anthropic::MODEL);
        assert!(
            seen.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|message| message["role"] != "system"),
            "{}",
            seen.body
        );

        // The stop sequence cut the reply before " fake": 4 of the 6 pieces.
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], tenant.model);
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Hello there from the"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], fake_anthropic::INPUT_TOKENS);
        assert_eq!(body["usage"]["completion_tokens"], 4);
        assert_eq!(
            body["usage"]["total_tokens"],
            fake_anthropic::INPUT_TOKENS + 4
        );
        assert_last_usage(&server, &tenant, 1, (fake_anthropic::INPUT_TOKENS, 4)).await;

        // A small budget ends with `length`.
        let (status, body) = openai_chat(
            &server,
            &tenant,
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_last_usage(&server, &tenant, 2, (fake_anthropic::INPUT_TOKENS, 2)).await;
        assert_eq!(
            usage_records(&server, &tenant).await[0]["backend_version"],
            "1.0"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_anthropic_stream_with_usage() {
    let fake = fake_anthropic::FakeAnthropic::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "anths", anthropic_upstream(&fake)).await;

    let (status, content_type, text) = stream_text(
        &server,
        "/v1/chat/completions",
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50,
               "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/event-stream"));
    assert_eq!(fake.requests().last_body()["stream"], true);
    assert!(fake.requests().last_body().get("stream_options").is_none());
    let events = data_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]", "{text}");
    let chunks = &events[..events.len() - 1];
    assert!(chunks
        .iter()
        .all(|chunk| chunk["object"] == "chat.completion.chunk"));
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{text}"
    );
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, fake_anthropic::REPLY);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|chunk| &chunk["choices"][0]["finish_reason"])
        .filter(|reason| !reason.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert_eq!(
        usage["usage"]["prompt_tokens"],
        fake_anthropic::INPUT_TOKENS
    );
    assert_eq!(
        usage["usage"]["completion_tokens"],
        fake_anthropic::OUTPUT_TOKENS
    );
    assert_last_usage(
        &server,
        &tenant,
        1,
        (fake_anthropic::INPUT_TOKENS, fake_anthropic::OUTPUT_TOKENS),
    )
    .await;

    // Without include_usage the client gets no usage chunk, but the record is still exact.
    let (status, _, text) = stream_text(
        &server,
        "/v1/chat/completions",
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(data_events(&text)
        .iter()
        .all(|event| event.get("usage").is_none_or(Value::is_null)));
    assert_last_usage(
        &server,
        &tenant,
        2,
        (fake_anthropic::INPUT_TOKENS, fake_anthropic::OUTPUT_TOKENS),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_anthropic_tools_round_trip() {
    let fake = fake_anthropic::FakeAnthropic::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "antht", anthropic_upstream(&fake)).await;

    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [question], "tools": weather_tool(), "max_tokens": 100}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.requests().last_body();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], fake_anthropic::TOOL_USE_ID);
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert_eq!(
        body["usage"]["completion_tokens"],
        fake_anthropic::TOOL_OUTPUT_TOKENS
    );

    // The follow-up carries the assistant's call and the tool's answer.
    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [question, choice["message"].clone(),
                            {"role": "tool", "tool_call_id": fake_anthropic::TOOL_USE_ID, "content": "sunny, 21 C"}],
               "tools": weather_tool(), "tool_choice": "none", "max_tokens": 100}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.requests().last_body();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][0]["type"], "tool_use");
    assert_eq!(messages[1]["content"][0]["id"], fake_anthropic::TOOL_USE_ID);
    assert_eq!(messages[2]["role"], "user");
    let result = &messages[2]["content"][0];
    assert_eq!(result["type"], "tool_result", "{sent}");
    assert_eq!(result["tool_use_id"], fake_anthropic::TOOL_USE_ID);
    assert!(result.to_string().contains("sunny, 21 C"), "{result}");
    assert_eq!(sent["tool_choice"]["type"], "none");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        fake_anthropic::REPLY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_parameters_are_refused_before_any_upstream_call_or_charge() {
    let fake = fake_anthropic::FakeAnthropic::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "antu", anthropic_upstream(&fake)).await;

    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "n": 2, "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("logprobs") && message.contains('n'),
        "{message}"
    );
    assert!(
        message.contains("logprobs, n") || message.contains("n, logprobs"),
        "{message}"
    );
    assert!(fake.requests().is_empty());
    // Neutral values are accepted.
    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "logprobs": false, "n": 1, "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let records = usage_records(&server, &tenant).await;
    assert_eq!(
        records.len(),
        1,
        "the refused request left no record: {records:?}"
    );
    assert_eq!(records[0]["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_only_some_backends_can_express_goes_to_those() {
    // An Anthropic endpoint with an OpenAI-compatible replica: `logprobs` and
    // `n: 2` cannot reach Anthropic, so every such request is served by the
    // replica (never a 400 that depends on the balancer's pick); a request
    // both can take is spread over both.
    let anthropic = fake_anthropic::FakeAnthropic::start().await;
    let openai = FakeUpstream::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "mixed", anthropic_upstream(&anthropic)).await;
    let (status, body) = server
        .post(
            &format!("/api/v1/endpoints/{}/backends", tenant.endpoint_id),
            &tenant.token,
            json!({"upstream": {"base_url": openai.url("v1"), "model": fake_upstream::UPSTREAM_MODEL}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..6 {
        let (status, body) = openai_chat(
            &server,
            &tenant,
            json!({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "n": 2}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        anthropic.requests().is_empty(),
        "nothing unsupported reached Anthropic"
    );
    for _ in 0..6 {
        let (status, body) = openai_chat(
            &server,
            &tenant,
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        anthropic.requests().len(),
        3,
        "round robin over both for the rest"
    );
    let records = usage_records(&server, &tenant).await;
    assert_eq!(records.len(), 12);
    assert!(
        records.iter().all(|record| record["attempts"] == 1),
        "a refusal costs no attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_gemini_plain_stream_and_tools() {
    let fake = fake_gemini::FakeGemini::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "gem", gemini_upstream(&fake)).await;

    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
               "max_tokens": 50, "temperature": 0.5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = fake.requests().last().unwrap();
    assert_eq!(header(&seen, "x-goog-api-key"), fake_gemini::API_KEY);
    assert!(
        seen.path.ends_with(&format!(
            "/v1beta/models/{}:generateContent",
            fake_gemini::MODEL
        )),
        "{}",
        seen.path
    );
    assert_eq!(
        seen.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(seen.body["generationConfig"]["maxOutputTokens"], 50);
    assert_eq!(seen.body["generationConfig"]["temperature"], 0.5);
    assert_eq!(seen.body["contents"][0]["role"], "user");
    assert!(seen.body.get("model").is_none(), "the model is in the URL");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], fake_gemini::REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], fake_gemini::PROMPT_TOKENS);
    assert_eq!(
        body["usage"]["completion_tokens"],
        fake_gemini::CANDIDATE_TOKENS
    );
    assert_last_usage(
        &server,
        &tenant,
        1,
        (fake_gemini::PROMPT_TOKENS, fake_gemini::CANDIDATE_TOKENS),
    )
    .await;

    let (status, _, text) = stream_text(
        &server,
        "/v1/chat/completions",
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50,
               "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = fake.requests().last().unwrap();
    assert!(
        seen.path.ends_with(":streamGenerateContent"),
        "{}",
        seen.path
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    let events = data_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]", "{text}");
    let chunks = &events[..events.len() - 1];
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{text}"
    );
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, fake_gemini::REPLY);
    assert!(chunks
        .iter()
        .any(|chunk| chunk["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], fake_gemini::PROMPT_TOKENS, "{text}");
    assert_eq!(usage["completion_tokens"], fake_gemini::CANDIDATE_TOKENS);
    assert_last_usage(
        &server,
        &tenant,
        2,
        (fake_gemini::PROMPT_TOKENS, fake_gemini::CANDIDATE_TOKENS),
    )
    .await;

    let question = json!({"role": "user", "content": "weather in Paris?"});
    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [question], "tools": weather_tool(), "max_tokens": 50}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.requests().last_body();
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let call_id = call["id"].as_str().unwrap().to_owned();
    assert_eq!(
        body["usage"]["completion_tokens"],
        fake_gemini::TOOL_CANDIDATE_TOKENS
    );
    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [question, choice["message"].clone(),
                            {"role": "tool", "tool_call_id": call_id, "content": "sunny"}],
               "max_tokens": 50}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.requests().last_body();
    let response_part = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|content| content["parts"].as_array().unwrap().clone())
        .find(|part| part.get("functionResponse").is_some())
        .unwrap_or_else(|| panic!("no functionResponse in {sent}"));
    assert_eq!(response_part["functionResponse"]["name"], "get_weather");
    assert!(response_part.to_string().contains("sunny"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_client_to_azure_chat_stream_and_embeddings() {
    let fake = fake_azure::FakeAzure::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let chat = tenant_on(
        &server,
        "az",
        azure_upstream(&fake, fake_azure::CHAT_DEPLOYMENT),
    )
    .await;

    let (status, body) = openai_chat(
        &server,
        &chat,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = fake.requests().last().unwrap();
    assert_eq!(header(&seen, "api-key"), fake_azure::API_KEY);
    assert!(seen.headers.get("authorization").is_none());
    assert!(
        seen.path.ends_with(&format!(
            "/openai/deployments/{}/chat/completions",
            fake_azure::CHAT_DEPLOYMENT
        )),
        "{}",
        seen.path
    );
    assert_eq!(
        seen.query.as_deref(),
        Some(format!("api-version={}", fake_azure::API_VERSION).as_str())
    );
    assert_eq!(body["choices"][0]["message"]["content"], fake_azure::REPLY);
    assert_eq!(body["usage"]["prompt_tokens"], fake_azure::PROMPT_TOKENS);
    assert_last_usage(
        &server,
        &chat,
        1,
        (fake_azure::PROMPT_TOKENS, fake_azure::COMPLETION_TOKENS),
    )
    .await;

    let (status, _, text) = stream_text(
        &server,
        "/v1/chat/completions",
        &chat,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50, "stream": true}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fake.requests().last_body()["stream"], true);
    let events = data_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let content: String = events
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, fake_azure::REPLY);
    // The gateway asked for the usage chunk and kept it from the client, who did not.
    assert_eq!(
        fake.requests().last_body()["stream_options"]["include_usage"],
        true
    );
    assert!(events
        .iter()
        .all(|event| event.get("usage").is_none_or(Value::is_null)));
    assert_last_usage(
        &server,
        &chat,
        2,
        (fake_azure::PROMPT_TOKENS, fake_azure::COMPLETION_TOKENS),
    )
    .await;

    let embed = tenant_on(
        &server,
        "aze",
        azure_upstream(&fake, fake_azure::EMBEDDING_DEPLOYMENT),
    )
    .await;
    let response = server
        .http
        .post(format!("{}/v1/embeddings", server.url))
        .bearer_auth(&embed.api_key)
        .json(&json!({"model": embed.model, "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list", "{body}");
    assert!(body["data"][0]["embedding"].as_array().unwrap().len() > 1);
    let seen = fake.requests().last().unwrap();
    assert!(
        seen.path.ends_with(&format!(
            "/openai/deployments/{}/embeddings",
            fake_azure::EMBEDDING_DEPLOYMENT
        )),
        "{}",
        seen.path
    );
    assert_eq!(header(&seen, "api-key"), fake_azure::API_KEY);
    assert!(seen.query.unwrap().contains("api-version="));
    assert_last_usage(&server, &embed, 1, (fake_azure::EMBEDDING_TOKENS, 0)).await;
}

async fn messages_call(server: &TestServer, tenant: &Tenant, body: Value) -> (u16, Value) {
    let mut body = body;
    body["model"] = json!(tenant.model);
    let response = server
        .http
        .post(format!("{}/v1/messages", server.url))
        .header("x-api-key", &tenant.api_key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_to_openai_upstream_plain_stream_and_required_max_tokens() {
    let upstream = FakeUpstream::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = server.tenant("msg", &upstream.url("v1")).await;

    let (status, body) = messages_call(
        &server,
        &tenant,
        json!({"max_tokens": 64, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = upstream.recorded.last_body();
    assert_eq!(sent["model"], fake_upstream::UPSTREAM_MODEL);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "Be brief.");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], tenant.model);
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], "Hello there");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], fake_upstream::PROMPT_TOKENS);
    assert_eq!(
        body["usage"]["output_tokens"],
        fake_upstream::COMPLETION_TOKENS
    );
    assert_last_usage(
        &server,
        &tenant,
        1,
        (
            fake_upstream::PROMPT_TOKENS,
            fake_upstream::COMPLETION_TOKENS,
        ),
    )
    .await;

    let (status, content_type, text) = stream_text(
        &server,
        "/v1/messages",
        &tenant,
        json!({"max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/event-stream"));
    let events = named_events(&text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|name| **name == "content_block_delta")
        .count();
    assert!(deltas >= 1, "{names:?}");
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    let without_pings: Vec<&str> = names.into_iter().filter(|name| *name != "ping").collect();
    assert_eq!(without_pings, expected, "{text}");
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "event name and type agree");
    }
    let text_out: String = events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    let expected_text: String = (0..fake_upstream::STREAM_CHUNKS)
        .map(|index| format!("tok{index} "))
        .collect();
    assert_eq!(text_out, expected_text);
    let message_delta = &events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap()
        .1;
    assert_eq!(message_delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        message_delta["usage"]["output_tokens"],
        fake_upstream::STREAM_CHUNKS
    );
    assert_last_usage(
        &server,
        &tenant,
        2,
        (fake_upstream::PROMPT_TOKENS, fake_upstream::STREAM_CHUNKS),
    )
    .await;

    let calls = upstream
        .recorded
        .count
        .load(std::sync::atomic::Ordering::SeqCst);
    let (status, body) = messages_call(
        &server,
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["param"], "max_tokens", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    assert_eq!(
        upstream
            .recorded
            .count
            .load(std::sync::atomic::Ordering::SeqCst),
        calls
    );
    assert_eq!(usage_records(&server, &tenant).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_client_to_anthropic_upstream_is_passed_through() {
    let fake = fake_anthropic::FakeAnthropic::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = tenant_on(&server, "pass", anthropic_upstream(&fake)).await;

    let request = json!({"max_tokens": 3, "system": "Be brief.", "top_k": 5,
                         "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = messages_call(&server, &tenant, request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let seen = fake.requests().last().unwrap();
    assert_eq!(header(&seen, "x-api-key"), fake_anthropic::API_KEY);
    let mut expected = request;
    expected["model"] = json!(fake_anthropic::MODEL);
    assert_eq!(seen.body, expected, "only the model is rewritten");
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Hello there from");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["input_tokens"], fake_anthropic::INPUT_TOKENS);
    assert_eq!(body["usage"]["output_tokens"], 3);
    assert_last_usage(&server, &tenant, 1, (fake_anthropic::INPUT_TOKENS, 3)).await;

    let (status, _, text) = stream_text(
        &server,
        "/v1/messages",
        &tenant,
        json!({"max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let names: Vec<String> = named_events(&text)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names.first().unwrap(), "message_start");
    assert_eq!(names.last().unwrap(), "message_stop");
    assert_last_usage(
        &server,
        &tenant,
        2,
        (fake_anthropic::INPUT_TOKENS, fake_anthropic::OUTPUT_TOKENS),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_reshaped_for_the_client() {
    let fake = fake_anthropic::FakeAnthropic::start().await;
    let gemini = fake_gemini::FakeGemini::start().await;
    let server = TestServer::start(Backend::Sqlite).await;
    let mut upstream = anthropic_upstream(&fake);
    upstream["api_key"] = json!("wrong-key");
    let tenant = tenant_on(&server, "bad", upstream).await;

    let (status, body) = openai_chat(
        &server,
        &tenant,
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.get("type").is_none(), "not Anthropic's shape: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid x-api-key"));
    assert!(body["error"]["type"].is_string(), "{body}");
    assert_eq!(fake.requests().len(), 1, "a 401 is not retried");
    let records = usage_records(&server, &tenant).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status_code"], 401);
    assert_eq!(records[0]["success"], false);
    assert_eq!(records[0]["cost_micro_usd"], 0);

    // A Gemini 400 reaches an Anthropic client in Anthropic's shape.
    let mut upstream = gemini_upstream(&gemini);
    upstream["base_url"] = json!(gemini.url("error400"));
    let tenant = tenant_on(&server, "gbad", upstream).await;
    let (status, body) = messages_call(
        &server,
        &tenant,
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("input token count"));
}

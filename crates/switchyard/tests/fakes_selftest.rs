//! Self-test of the upstream fakes (`tests/common/fake_anthropic.rs`, `fake_gemini.rs`,
//! `fake_azure.rs`, `fake_upstream.rs` and the shared `faults.rs`), driven with reqwest:
//! auth checks, validation errors, plain and streamed answer shapes, and every fault mode
//! on every fake. Slow answers are proven with a short client timeout, so the suite stays
//! well under a few seconds.

mod common;

use std::time::Duration;

use common::fake_anthropic::FakeAnthropic;
use common::fake_azure::FakeAzure;
use common::fake_gemini::FakeGemini;
use common::fake_upstream::FakeUpstream;
use common::faults::{generate, Fault, Stop, RETRY_AFTER_SECONDS};
use common::{fake_anthropic, fake_azure, fake_gemini, fake_upstream};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Splits an SSE body into `(event name, data)` pairs; `\r\n` and `\n` line ends both work.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            (name, data)
        })
        .collect()
}

fn anthropic_body(extra: Value) -> Value {
    let mut body = json!({"model": fake_anthropic::MODEL, "max_tokens": 64,
                          "messages": [{"role": "user", "content": "Hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn anthropic_post(fake: &FakeAnthropic, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", fake.url("ok")))
        .header("x-api-key", fake_anthropic::API_KEY)
        .header("anthropic-version", fake_anthropic::VERSION)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_checks_headers_and_bodies_like_the_api() {
    let fake = FakeAnthropic::start().await;
    let url = format!("{}/v1/messages", fake.url("ok"));
    let http = client();

    let response = http
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(json!({})))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("request-id"));
    let (status, body) = json_of(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));

    let (status, body) = json_of(
        http.post(&url)
            .header("x-api-key", "wrong")
            .header("anthropic-version", "2023-06-01")
            .json(&anthropic_body(json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("invalid x-api-key"))
    );

    let (status, body) = json_of(
        http.post(&url)
            .header("x-api-key", fake_anthropic::API_KEY)
            .json(&anthropic_body(json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (status, _) = json_of(
        http.post(&url)
            .header("x-api-key", fake_anthropic::API_KEY)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "text/plain")
            .body(anthropic_body(json!({})).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);

    let cases = [
        (
            anthropic_body(json!({"frequency_penalty": 1})),
            "frequency_penalty: Extra inputs are not permitted",
        ),
        (
            json!({"model": "claude-fake-1", "messages": [{"role": "user", "content": "Hi"}]}),
            "max_tokens: Field required",
        ),
        (
            anthropic_body(json!({"max_tokens": 0})),
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            anthropic_body(json!({"messages": []})),
            "messages: at least one message is required",
        ),
        (
            anthropic_body(json!({"messages": [{"role": "system", "content": "x"}]})),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            anthropic_body(json!({"messages": [{"role": "assistant", "content": "x"}]})),
            "messages: first message must use the \"user\" role",
        ),
        (
            anthropic_body(json!({"messages": [{"role": "user", "content": [{"type": "video"}]}]})),
            "messages.0.content.0.type: Input tag 'video'",
        ),
        (
            anthropic_body(json!({"temperature": 1.5})),
            "temperature: Input should be between 0 and 1",
        ),
        (
            anthropic_body(json!({"system": [{"type": "image"}]})),
            "system.0",
        ),
        (
            anthropic_body(json!({"tools": [{"name": "f", "input_schema": {"type": "string"}}]})),
            "tools.0.input_schema",
        ),
        (
            anthropic_body(json!({"tool_choice": {"type": "tool"}})),
            "tool_choice.tool.name: Field required",
        ),
        (
            anthropic_body(json!({"metadata": {"session": "x"}})),
            "metadata.session: Extra inputs are not permitted",
        ),
    ];
    for (request, expected) in &cases {
        let (status, body) = json_of(anthropic_post(&fake, request).await).await;
        assert_eq!(status, 400, "{request}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message} for {request}");
    }

    // Consecutive same-role messages and every block type are accepted.
    let rich = anthropic_body(json!({
        "system": [{"type": "text", "text": "Be brief"}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "again"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "ok"}]}],
        "stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "top_k": 5,
        "metadata": {"user_id": "u1"}, "stream": false,
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"}}));
    let (status, body) = json_of(anthropic_post(&fake, &rich).await).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) =
        json_of(anthropic_post(&fake, &anthropic_body(json!({"model": "gpt-4"}))).await).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );

    let (status, body) = json_of(
        http.get(format!("{}/v1/models", fake.url("ok")))
            .header("x-api-key", fake_anthropic::API_KEY)
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["id"], fake_anthropic::MODEL);

    let recorded = fake.requests().all();
    assert_eq!(recorded.len(), 2 + 2 + cases.len() + 3);
    assert_eq!(recorded[0].path, "/ok/v1/messages");
    assert_eq!(recorded[0].body["model"], fake_anthropic::MODEL);
    assert_eq!(fake.faults().count("ok"), recorded.len());
}

#[tokio::test]
async fn anthropic_answers_text_tools_stops_and_limits() {
    let fake = FakeAnthropic::start().await;
    let (status, body) = json_of(anthropic_post(&fake, &anthropic_body(json!({}))).await).await;
    assert_eq!(status, 200);
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], fake_anthropic::MODEL);
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": fake_anthropic::REPLY}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": fake_anthropic::INPUT_TOKENS, "output_tokens": fake_anthropic::OUTPUT_TOKENS})
    );

    let (_, body) = json_of(
        anthropic_post(
            &fake,
            &anthropic_body(json!({"stop_sequences": ["fake", "Hello"]})),
        )
        .await,
    )
    .await;
    assert_eq!(body["content"][0]["text"], "");
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], "Hello");
    let (_, body) =
        json_of(anthropic_post(&fake, &anthropic_body(json!({"stop_sequences": ["fake"]}))).await)
            .await;
    assert_eq!(body["content"][0]["text"], "Hello there from the ");
    assert_eq!(body["stop_sequence"], "fake");
    assert_eq!(
        body["usage"]["output_tokens"], 5,
        "a cut piece still costs its token"
    );

    let (_, body) =
        json_of(anthropic_post(&fake, &anthropic_body(json!({"max_tokens": 2}))).await).await;
    assert_eq!(body["content"][0]["text"], "Hello there");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 2);

    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let weather = anthropic_body(
        json!({"tools": tools, "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}),
    );
    let (_, body) = json_of(anthropic_post(&fake, &weather).await).await;
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(body["stop_reason"], "tool_use");
    let mut declined = weather.clone();
    declined["tool_choice"] = json!({"type": "none"});
    let (_, body) = json_of(anthropic_post(&fake, &declined).await).await;
    assert_eq!(body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_streams_the_documented_events() {
    let fake = FakeAnthropic::start().await;
    let response = anthropic_post(&fake, &anthropic_body(json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("request-id"));
    let events = sse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().unwrap())
        .collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n(
        "content_block_delta",
        fake_anthropic::REPLY_PIECES.len(),
    ));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    for ((name, _), value) in events.iter().zip(&data) {
        assert_eq!(value["type"], name.as_deref().unwrap());
    }
    assert_eq!(
        data[0]["message"]["usage"],
        json!({"input_tokens": fake_anthropic::INPUT_TOKENS, "output_tokens": 1})
    );
    let text: String = data
        .iter()
        .filter(|event| event["type"] == "content_block_delta")
        .map(|event| {
            assert_eq!(event["delta"]["type"], "text_delta");
            event["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, fake_anthropic::REPLY);
    let delta = &data[data.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(
        delta["usage"]["output_tokens"],
        fake_anthropic::OUTPUT_TOKENS
    );

    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let response = anthropic_post(
        &fake,
        &anthropic_body(json!({"stream": true, "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}]})),
    )
    .await;
    let data: Vec<Value> = sse_events(&response.text().await.unwrap())
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}})
    );
    let partial: String = data
        .iter()
        .filter(|event| event["delta"]["type"] == "input_json_delta")
        .map(|event| event["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(data[data.len() - 2]["delta"]["stop_reason"], "tool_use");
}

fn gemini_body(extra: Value) -> Value {
    let mut body = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn gemini_post(fake: &FakeGemini, method: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!(
            "{}/v1beta/models/{}:{method}",
            fake.url("ok"),
            fake_gemini::MODEL
        ))
        .header("x-goog-api-key", fake_gemini::API_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn gemini_checks_keys_and_bodies_like_the_api() {
    let fake = FakeGemini::start().await;
    let http = client();
    let url = format!(
        "{}/v1beta/models/{}:generateContent",
        fake.url("ok"),
        fake_gemini::MODEL
    );

    let (status, body) = json_of(
        http.post(&url)
            .json(&gemini_body(json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let (status, body) = json_of(
        http.post(&url)
            .header("x-goog-api-key", "wrong")
            .json(&gemini_body(json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let (status, _) = json_of(
        http.post(format!("{url}?key={}", fake_gemini::API_KEY))
            .json(&gemini_body(json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    let cases = [
        (
            gemini_body(json!({"temperature": 1})),
            "Invalid JSON payload received. Unknown name \"temperature\"",
        ),
        (
            gemini_body(json!({"generationConfig": {"max_tokens": 5}})),
            "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config'",
        ),
        (
            json!({"contents": []}),
            "* GenerateContentRequest.contents: contents is not specified",
        ),
        (
            json!({}),
            "* GenerateContentRequest.contents: contents is not specified",
        ),
        (
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            "Please use a valid role: user, model.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": []}]}),
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{}]}]}),
            "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data'",
        ),
        (
            json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "***"}}]}]}),
            "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES)",
        ),
        (
            gemini_body(json!({"generationConfig": {"maxOutputTokens": "many"}})),
            "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32)",
        ),
        (
            gemini_body(json!({"tools": [{"functionDeclarations": [{"description": "no name"}]}]})),
            "* GenerateContentRequest.tools[0].function_declarations[0].name",
        ),
        (
            gemini_body(json!({"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}})),
            "Invalid value at 'tool_config.function_calling_config.mode'",
        ),
    ];
    for (request, expected) in &cases {
        let (status, body) = json_of(gemini_post(&fake, "generateContent", request).await).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message} for {request}");
    }

    // Every documented part and config field, in snake_case too, is accepted.
    let rich = json!({
        "system_instruction": {"parts": [{"text": "Be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": true}}}]}],
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "topK": 3,
            "stopSequences": ["END"], "candidateCount": 1, "seed": 7, "presencePenalty": 0.1,
            "frequencyPenalty": 0.1, "responseMimeType": "text/plain", "responseSchema": {"type": "STRING"}},
        "tools": [{"functionDeclarations": [{"name": "f", "description": "d", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]});
    let (status, body) = json_of(gemini_post(&fake, "generateContent", &rich).await).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) =
        json_of(gemini_post(&fake, "streamGenerateContent", &gemini_body(json!({}))).await).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("alt=sse"));

    let (status, body) = json_of(
        http.post(format!(
            "{}/v1beta/models/palm-2:generateContent",
            fake.url("ok")
        ))
        .header("x-goog-api-key", fake_gemini::API_KEY)
        .json(&gemini_body(json!({})))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    let (status, body) = json_of(
        http.get(format!(
            "{}/v1beta/models/{}",
            fake.url("ok"),
            fake_gemini::MODEL
        ))
        .header("x-goog-api-key", fake_gemini::API_KEY)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], format!("models/{}", fake_gemini::MODEL));
    assert_eq!(fake.requests().len(), 3 + cases.len() + 4);
    assert!(fake
        .requests()
        .last()
        .unwrap()
        .path
        .ends_with(fake_gemini::MODEL));
}

#[tokio::test]
async fn gemini_answers_text_function_calls_limits_and_crlf_streams() {
    let fake = FakeGemini::start().await;
    let (status, body) =
        json_of(gemini_post(&fake, "generateContent", &gemini_body(json!({}))).await).await;
    assert_eq!(status, 200);
    let candidate = &body["candidates"][0];
    assert_eq!(
        candidate["content"],
        json!({"role": "model", "parts": [{"text": fake_gemini::REPLY}]})
    );
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["index"], 0);
    assert_eq!(
        body["usageMetadata"],
        json!({"promptTokenCount": fake_gemini::PROMPT_TOKENS,
        "candidatesTokenCount": fake_gemini::CANDIDATE_TOKENS,
        "totalTokenCount": fake_gemini::PROMPT_TOKENS + fake_gemini::CANDIDATE_TOKENS})
    );
    assert_eq!(body["modelVersion"], fake_gemini::MODEL);

    let (_, body) = json_of(
        gemini_post(
            &fake,
            "generateContent",
            &gemini_body(json!({"generationConfig": {"maxOutputTokens": 3}})),
        )
        .await,
    )
    .await;
    assert_eq!(body["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Hello there from"
    );
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 3);

    let weather = json!({"contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
                         "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}]});
    let (_, body) = json_of(gemini_post(&fake, "generateContent", &weather).await).await;
    assert_eq!(
        body["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    );

    let response = client()
        .post(format!(
            "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
            fake.url("ok"),
            fake_gemini::MODEL
        ))
        .header("x-goog-api-key", fake_gemini::API_KEY)
        .json(&gemini_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.starts_with("data: {"));
    assert!(text.ends_with("\r\n\r\n"));
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        text.matches("\r\n\r\n").count(),
        fake_gemini::REPLY_PIECES.len()
    );
    let events: Vec<Value> = sse_events(&text)
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    let joined: String = events
        .iter()
        .map(|event| {
            event["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined, fake_gemini::REPLY);
    let (last, earlier) = events.split_last().unwrap();
    assert!(earlier
        .iter()
        .all(|event| event["candidates"][0].get("finishReason").is_none()));
    assert_eq!(
        earlier[0]["usageMetadata"].get("candidatesTokenCount"),
        None
    );
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"]["totalTokenCount"],
        fake_gemini::PROMPT_TOKENS + fake_gemini::CANDIDATE_TOKENS
    );
}

fn azure_url(fake: &FakeAzure, mode: &str, deployment: &str, operation: &str) -> String {
    format!(
        "{}/openai/deployments/{deployment}/{operation}?api-version={}",
        fake.url(mode),
        fake_azure::API_VERSION
    )
}

async fn azure_post(fake: &FakeAzure, operation: &str, body: &Value) -> reqwest::Response {
    let deployment = if operation == "embeddings" {
        fake_azure::EMBEDDING_DEPLOYMENT
    } else {
        fake_azure::CHAT_DEPLOYMENT
    };
    client()
        .post(azure_url(fake, "ok", deployment, operation))
        .header("api-key", fake_azure::API_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn azure_checks_versions_keys_deployments_and_bodies() {
    let fake = FakeAzure::start().await;
    let http = client();
    let chat = json!({"messages": [{"role": "user", "content": "Hi"}]});
    let base = format!(
        "{}/openai/deployments/{}/chat/completions",
        fake.url("ok"),
        fake_azure::CHAT_DEPLOYMENT
    );

    let response = http
        .post(&base)
        .header("api-key", fake_azure::API_KEY)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("apim-request-id"));
    let (status, body) = json_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );
    let (status, body) = json_of(
        http.post(format!("{base}?api-version=latest"))
            .header("api-key", fake_azure::API_KEY)
            .json(&chat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadRequest"))
    );
    let (status, _) = json_of(
        http.post(format!("{base}?api-version=2025-04-01-preview"))
            .header("api-key", fake_azure::API_KEY)
            .json(&chat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        http.post(format!("{base}?api-version=2024-10-21"))
            .json(&chat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("401")));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied due to invalid subscription key"));
    let (status, body) = json_of(
        http.post(azure_url(&fake, "ok", "nope", "chat/completions"))
            .header("api-key", fake_azure::API_KEY)
            .json(&chat)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("DeploymentNotFound"))
    );

    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "Hi"}], "temprature": 1}),
            "Unrecognized request argument supplied: temprature",
        ),
        (json!({}), "'messages' is a required property"),
        (json!({"messages": []}), "[] is too short - 'messages'"),
        (
            json!({"messages": [{"role": "robot", "content": "Hi"}]}),
            "Invalid value for 'messages[0].role'",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "Missing required parameter: 'messages[0].content'.",
        ),
        (
            json!({"messages": [{"role": "user", "content": "Hi"}], "stream_options": {"include_usage": true}}),
            "The 'stream_options' parameter is only allowed",
        ),
        (
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 0}),
            "Invalid 'max_tokens'",
        ),
    ];
    for (request, expected) in &cases {
        let (status, body) = json_of(azure_post(&fake, "chat/completions", request).await).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(expected),
            "{body}"
        );
    }
    let (status, _) = json_of(azure_post(&fake, "embeddings", &json!({})).await).await;
    assert_eq!(status, 400);
    assert_eq!(fake.requests().len(), 5 + cases.len() + 1);
    assert_eq!(
        fake.requests().last().unwrap().query.as_deref(),
        Some("api-version=2024-10-21")
    );
}

#[tokio::test]
async fn azure_answers_openai_shapes_with_content_filters() {
    let fake = FakeAzure::start().await;
    let (status, body) = json_of(
        azure_post(
            &fake,
            "chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], fake_azure::CHAT_MODEL);
    assert_eq!(
        body["prompt_filter_results"][0]["content_filter_results"]["hate"],
        json!({"filtered": false, "severity": "safe"})
    );
    assert_eq!(body["choices"][0]["message"]["content"], fake_azure::REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["content_filter_results"]["violence"]["filtered"],
        false
    );
    assert_eq!(
        body["usage"]["total_tokens"],
        fake_azure::PROMPT_TOKENS + fake_azure::COMPLETION_TOKENS
    );

    let (_, body) = json_of(
        azure_post(
            &fake,
            "chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 1);

    let response = azure_post(
        &fake,
        "chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}],
        "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"], json!([]));
    assert!(chunks[0]["prompt_filter_results"].is_array());
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, fake_azure::REPLY);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["usage"], Value::Null);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        fake_azure::COMPLETION_TOKENS
    );

    let (status, body) =
        json_of(azure_post(&fake, "embeddings", &json!({"input": ["a", "b"]})).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["usage"]["prompt_tokens"],
        2 * fake_azure::EMBEDDING_TOKENS
    );
}

/// One of the four fakes, able to build a valid streamed request for any mode.
enum AnyFake {
    Anthropic(FakeAnthropic),
    Gemini(FakeGemini),
    Azure(FakeAzure),
    OpenAi(FakeUpstream),
}

impl AnyFake {
    async fn all() -> Vec<AnyFake> {
        vec![
            AnyFake::Anthropic(FakeAnthropic::start().await),
            AnyFake::Gemini(FakeGemini::start().await),
            AnyFake::Azure(FakeAzure::start().await),
            AnyFake::OpenAi(FakeUpstream::start().await),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            AnyFake::Anthropic(_) => "anthropic",
            AnyFake::Gemini(_) => "gemini",
            AnyFake::Azure(_) => "azure",
            AnyFake::OpenAi(_) => "openai",
        }
    }

    fn faults(&self) -> &common::faults::FaultControl {
        match self {
            AnyFake::Anthropic(fake) => fake.faults(),
            AnyFake::Gemini(fake) => fake.faults(),
            AnyFake::Azure(fake) => fake.faults(),
            AnyFake::OpenAi(fake) => fake.faults(),
        }
    }

    fn set_mode_override(&self, mode: Option<&str>) {
        match self {
            AnyFake::Anthropic(fake) => fake.set_mode_override(mode),
            AnyFake::Gemini(fake) => fake.set_mode_override(mode),
            AnyFake::Azure(fake) => fake.set_mode_override(mode),
            AnyFake::OpenAi(fake) => fake.set_mode_override(mode),
        }
    }

    fn request(&self, http: &reqwest::Client, mode: &str, stream: bool) -> reqwest::RequestBuilder {
        let messages = json!([{"role": "user", "content": "Hi"}]);
        match self {
            AnyFake::Anthropic(fake) => http
                .post(format!("{}/v1/messages", fake.url(mode)))
                .header("x-api-key", fake_anthropic::API_KEY)
                .header("anthropic-version", fake_anthropic::VERSION)
                .json(&json!({"model": fake_anthropic::MODEL, "max_tokens": 16, "messages": messages, "stream": stream})),
            AnyFake::Gemini(fake) => {
                let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
                http.post(format!("{}/v1beta/models/{}:{method}", fake.url(mode), fake_gemini::MODEL))
                    .header("x-goog-api-key", fake_gemini::API_KEY)
                    .json(&gemini_body(json!({})))
            }
            AnyFake::Azure(fake) => http
                .post(azure_url(fake, mode, fake_azure::CHAT_DEPLOYMENT, "chat/completions"))
                .header("api-key", fake_azure::API_KEY)
                .json(&json!({"messages": messages, "stream": stream})),
            AnyFake::OpenAi(fake) => http
                .post(format!("{}/chat/completions", fake.url(mode)))
                .json(&json!({"model": fake_upstream::UPSTREAM_MODEL, "messages": messages, "stream": stream})),
        }
    }
}

/// Reads a body to its end: `Ok(bytes)`, or `Err(bytes received before the error)`.
async fn drain(mut response: reqwest::Response) -> Result<usize, usize> {
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => return Ok(received),
            Err(_) => return Err(received),
        }
    }
}

async fn check_faults(fake: &AnyFake) {
    let name = fake.name();
    let http = client();
    for stream in [false, true] {
        let response = fake.request(&http, "ok", stream).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert!(drain(response).await.is_ok(), "{name}");

        let error = fake
            .request(&http, "reset", stream)
            .send()
            .await
            .unwrap_err();
        assert!(
            !error.is_timeout() && !error.is_status(),
            "{name}: {error:?}"
        );

        let response = fake
            .request(&http, "dies_midstream", stream)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let received = drain(response).await.expect_err("the body must fail");
        assert!(received > 0, "{name}: some bytes arrive before the cut");
    }
    for (mode, status) in [
        ("error503", 503),
        ("error429", 429),
        ("error400", 400),
        ("error401", 401),
    ] {
        let response = fake.request(&http, mode, false).send().await.unwrap();
        assert_eq!(response.status(), status, "{name} {mode}");
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let expected = (status == 503 || status == 429).then(|| RETRY_AFTER_SECONDS.to_string());
        assert_eq!(retry_after, expected, "{name} {mode}");
        let (_, body) = json_of(response).await;
        assert!(body["error"].is_object(), "{name} {mode}: {body}");
    }

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = fake
        .request(&impatient, "slow", false)
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{name}: {error:?}");

    fake.faults().set_flaky_period(3);
    let statuses: Vec<u16> = statuses_of(fake, &http, "flaky", 6).await;
    assert_eq!(statuses, [503, 200, 200, 503, 200, 200], "{name}");
    assert_eq!(fake.faults().flaky_failures(), 2);

    fake.set_mode_override(Some("error503"));
    assert_eq!(
        fake.request(&http, "ok", false)
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "{name}"
    );
    fake.set_mode_override(None);
    assert_eq!(
        fake.request(&http, "ok", false)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "{name}"
    );

    let counts = fake.faults().counts();
    assert_eq!(counts["ok"], 3, "{name}: {counts:?}");
    assert_eq!(counts["reset"], 2);
    assert_eq!(counts["dies_midstream"], 2);
    assert_eq!(
        counts["error503"], 2,
        "{name}: the override counts as its mode"
    );
    assert_eq!(counts["flaky"], 6);
    assert_eq!(counts["slow"], 1);
    for fault in Fault::ALL {
        assert!(
            counts.contains_key(fault.name()),
            "{name}: {} never ran",
            fault.name()
        );
    }
}

/// Sends `count` requests one after another and collects their statuses.
async fn statuses_of(fake: &AnyFake, http: &reqwest::Client, mode: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        statuses.push(
            fake.request(http, mode, false)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_mode_behaves_on_every_fake() {
    let fakes = AnyFake::all().await;
    let started = std::time::Instant::now();
    futures_util::future::join_all(fakes.iter().map(check_faults)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_pure_helpers_cut_answers_and_parse_names() {
    let reply = ["Hello", " there", " world"];
    assert_eq!(
        generate(&reply, 10, &[]),
        (
            vec!["Hello".into(), " there".into(), " world".into()],
            Stop::End
        )
    );
    assert_eq!(generate(&reply, 3, &[]).1, Stop::End);
    assert_eq!(
        generate(&reply, 1, &[]),
        (vec!["Hello".into()], Stop::Length)
    );
    assert_eq!(
        generate(&reply, 10, &["ere", "o t"]),
        (vec!["Hell".into()], Stop::Sequence("o t".into()))
    );
    assert_eq!(generate(&reply, 10, &["", "zzz"]).1, Stop::End);
    // A stop sequence beyond the budget never triggers.
    assert_eq!(generate(&reply, 2, &["world"]).1, Stop::Length);

    for fault in Fault::ALL {
        assert_eq!(Fault::parse(fault.name()), Some(fault));
    }
    assert_eq!(Fault::parse("v1"), None);

    assert!(fake_azure::is_api_version("2024-10-21"));
    assert!(fake_azure::is_api_version("2025-04-01-preview"));
    assert!(!fake_azure::is_api_version("2024-1-21"));
    assert!(!fake_azure::is_api_version("v1"));

    assert_eq!(fake_gemini::camel("max_output_tokens"), "maxOutputTokens");
    assert_eq!(fake_gemini::snake("maxOutputTokens"), "max_output_tokens");
    assert_eq!(fake_gemini::camel("contents"), "contents");
}

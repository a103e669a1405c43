use serde_json::json;

use super::super::test_support::{json, run};
use super::super::*;
use super::*;

fn to_gemini(body: serde_json::Value) -> Result<Translated, TranslateError> {
    openai_chat_to_gemini(body.to_string().as_bytes())
}

fn converted(body: serde_json::Value) -> serde_json::Value {
    json(&to_gemini(body).expect("translates").body)
}

#[test]
fn system_roles_and_generation_config_map() {
    let translated = to_gemini(json!({
        "model": "my-endpoint",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        ],
        "max_completion_tokens": 256,
        "temperature": 0.7,
        "top_p": 0.5,
        "stop": "END",
        "n": 2,
        "seed": 42,
        "presence_penalty": 0.3,
        "frequency_penalty": -0.5,
        "user": "u",
        "stream": true,
        "stream_options": {"include_usage": false},
    }))
    .expect("translates");
    assert!(translated.stream);
    assert!(!translated.client_wants_stream_usage);
    assert_eq!(
        json(&translated.body),
        json!({
            "systemInstruction": {"parts": [{"text": "Be terse."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}]},
                {"role": "user", "parts": [{"text": "Again"}]},
            ],
            "generationConfig": {
                "maxOutputTokens": 256,
                "temperature": 0.7,
                "topP": 0.5,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "seed": 42,
                "presencePenalty": 0.3,
                "frequencyPenalty": -0.5,
            },
        })
    );
}

#[test]
fn images_tools_and_tool_results_map() {
    let out = converted(json!({
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    }));
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [
                {"text": "Weather where this was taken?"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "time", "args": {}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"content": "18C"}}},
                {"functionResponse": {"name": "time", "response": {"content": "noon"}}},
            ]},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"functionDeclarations": [{"name": "weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
    );
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
    );
}

#[test]
fn tool_choice_and_response_format_map() {
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let out = converted(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
        );
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"],
            json!({"mode": mode})
        );
    }
    let out = converted(json!({
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"},
    }));
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let out = converted(json!({
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }));
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json", "responseSchema": schema})
    );
}

#[test]
fn unsupported_parameters_are_all_listed() {
    let error = openai_chat_to_gemini(
        r#"{
        "messages": [
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "file", "file": {"file_id": "f"}}
            ]}
        ],
        "logprobs": true,
        "top_logprobs": 2,
        "logit_bias": {"1": 1},
        "audio": {"voice": "x"},
        "modalities": ["audio"],
        "prediction": {"type": "content", "content": "x"},
        "parallel_tool_calls": false,
        "web_search_options": {},
        "n": 3,
        "seed": 1
    }"#
        .as_bytes(),
    )
    .expect_err("unsupported");
    assert_eq!(
        error,
        TranslateError::Unsupported {
            target: "gemini",
            params: [
                "messages[0].content[0].image_url.url",
                "messages[0].content[1].type=file",
                "logprobs",
                "top_logprobs",
                "logit_bias",
                "audio",
                "modalities",
                "prediction",
                "parallel_tool_calls",
                "web_search_options",
            ]
            .map(String::from)
            .to_vec(),
        }
    );
}

#[test]
fn tool_result_without_matching_call_is_invalid() {
    let error = to_gemini(json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "call_9", "content": "y"},
    ]}))
    .expect_err("invalid");
    assert!(
        matches!(error, TranslateError::Invalid { field, .. } if field == "messages[1].tool_call_id")
    );
}

#[test]
fn response_candidates_become_choices() {
    let body = json!({
        "candidates": [
            {"content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Hello"}, {"text": " there"},
            ]}, "finishReason": "STOP", "index": 0},
            {"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
            ]}, "finishReason": "STOP", "index": 1},
            {"content": {"parts": [{"text": "cut"}]}, "finishReason": "MAX_TOKENS", "index": 2},
            {"finishReason": "SAFETY", "index": 3},
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 20, "thoughtsTokenCount": 4, "totalTokenCount": 33},
        "responseId": "resp1",
        "modelVersion": "gemini-2.5-flash",
    });
    let (bytes, usage) =
        gemini_response_to_openai(body.to_string().as_bytes(), "my-endpoint").expect("ok");
    assert_eq!(
        usage,
        TokenUsage {
            prompt_tokens: 9,
            completion_tokens: 24
        }
    );
    let mut out = json(&bytes);
    out["created"] = json!(0);
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-resp1",
            "object": "chat.completion",
            "created": 0,
            "model": "my-endpoint",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "logprobs": null, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
                ]}, "logprobs": null, "finish_reason": "tool_calls"},
                {"index": 2, "message": {"role": "assistant", "content": "cut"}, "logprobs": null, "finish_reason": "length"},
                {"index": 3, "message": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": "content_filter"},
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 24, "total_tokens": 33},
        })
    );
}

#[test]
fn blocked_prompt_and_garbage_responses() {
    let body = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}});
    let (bytes, usage) = gemini_response_to_openai(body.to_string().as_bytes(), "e").expect("ok");
    assert_eq!(
        json(&bytes)["choices"][0]["finish_reason"],
        "content_filter"
    );
    assert_eq!(usage.prompt_tokens, 3);
    assert!(matches!(
        gemini_response_to_openai(b"{}", "e"),
        Err(TranslateError::BadUpstream(_))
    ));
    assert!(matches!(
        gemini_response_to_openai(b"not json", "e"),
        Err(TranslateError::BadUpstream(_))
    ));
}

fn chunks(steps: &[Vec<super::super::test_support::Event>]) -> Vec<serde_json::Value> {
    steps
        .iter()
        .flatten()
        .map(|event| {
            let mut value = event.data.clone();
            if let Some(object) = value.as_object_mut() {
                if object.contains_key("choices") {
                    assert_eq!(object.remove("id"), Some(json!("chatcmpl-r1")));
                    assert_eq!(object.remove("model"), Some(json!("my-endpoint")));
                    assert_eq!(
                        object.remove("object"),
                        Some(json!("chat.completion.chunk"))
                    );
                    object.remove("created");
                }
            }
            value
        })
        .collect()
}

#[test]
fn stream_fragments_become_chunks_and_finish_adds_usage_and_done() {
    let mut translator = gemini_stream_to_openai("my-endpoint", true);
    let events = [
        (
            None,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],"usageMetadata":{"promptTokenCount":4},"responseId":"r1"}"#,
        ),
        (
            None,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"index":0}],"responseId":"r1"}"#,
        ),
        (
            None,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":3,"totalTokenCount":7},"responseId":"r1"}"#,
        ),
    ];
    let steps = run(translator.as_mut(), &events);
    let choice = |delta: serde_json::Value, finish: serde_json::Value| json!({"choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    assert_eq!(
        chunks(&steps),
        vec![
            choice(json!({"role": "assistant", "content": "Hel"}), json!(null)),
            choice(json!({"content": "lo"}), json!(null)),
            choice(json!({"content": "!"}), json!("stop")),
            json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}),
            json!("[DONE]"),
        ]
    );
    assert_eq!(steps[3].len(), 2, "finish writes usage and [DONE]");
    assert!(translator.completed());
    assert_eq!(
        translator.usage(),
        Some(TokenUsage {
            prompt_tokens: 4,
            completion_tokens: 3
        })
    );
    assert_eq!(translator.output_bytes(), 6);
}

#[test]
fn stream_function_calls_and_no_usage_chunk_unless_asked() {
    let mut translator = gemini_stream_to_openai("my-endpoint", false);
    let events = [(
        None,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":5},"responseId":"r1"}"#,
    )];
    let all = chunks(&run(translator.as_mut(), &events));
    assert_eq!(
        all,
        vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, "id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            ]}, "logprobs": null, "finish_reason": "tool_calls"}]}),
            json!("[DONE]"),
        ]
    );
    assert_eq!(
        translator.usage().map(|usage| usage.completion_tokens),
        Some(5)
    );
}

#[test]
fn stream_error_and_cut_stream() {
    let mut translator = gemini_stream_to_openai("my-endpoint", true);
    let events = [
        (
            None,
            r#"{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":4},"responseId":"r1"}"#,
        ),
        (
            None,
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        ),
    ];
    let steps = run(translator.as_mut(), &events);
    assert_eq!(
        steps[1][0].data,
        json!({"error": {"message": "The model is overloaded.", "type": "server_error", "code": "UNAVAILABLE", "param": null}})
    );
    assert!(steps[2].is_empty());
    assert_eq!(translator.error(), Some("The model is overloaded."));
    assert!(!translator.completed());
    assert_eq!(translator.usage(), None, "partial counts are not exact");

    let mut cut = gemini_stream_to_openai("my-endpoint", true);
    let steps = run(cut.as_mut(), &events[..1]);
    assert_eq!(
        steps[1].len(),
        1,
        "no usage chunk without final usage, only [DONE]"
    );
    assert!(!cut.completed());
}

#[test]
fn assistant_tool_call_without_text_has_only_function_parts() {
    let out = converted(json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "content": "next"},
    ]}));
    assert_eq!(
        out["contents"],
        json!([
            {"role": "user", "parts": [{"text": "x"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"content": "done"}}}]},
            {"role": "user", "parts": [{"text": "next"}]},
        ])
    );
}

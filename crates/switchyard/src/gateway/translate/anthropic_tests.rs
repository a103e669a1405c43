use serde_json::json;

use super::super::test_support::{json, run};
use super::super::*;
use super::*;

fn to_anthropic(body: serde_json::Value) -> Result<Translated, TranslateError> {
    openai_chat_to_anthropic(body.to_string().as_bytes(), "claude-sonnet-4-5")
}

fn converted(body: serde_json::Value) -> serde_json::Value {
    json(&to_anthropic(body).expect("translates").body)
}

#[test]
fn system_and_developer_messages_become_top_level_system() {
    let out = converted(json!({
        "model": "my-endpoint",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
        ],
    }));
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "Be terse.\n\nAnswer in French.",
            "messages": [{"role": "user", "content": "Hi"}],
        })
    );
}

#[test]
fn sampling_parameters_stop_and_max_tokens_map() {
    let translated = to_anthropic(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
        "max_completion_tokens": 200,
        "stop": "END",
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "user-7",
        "stream": true,
        "stream_options": {"include_usage": true},
        "store": true,
        "metadata": {"k": "v"},
        "service_tier": "auto",
        "n": 1,
        "logprobs": false,
        "presence_penalty": 0,
        "response_format": {"type": "text"},
    }))
    .expect("translates");
    assert!(translated.stream);
    assert!(translated.client_wants_stream_usage);
    assert_eq!(
        json(&translated.body),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "Hi"}],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": true,
            "metadata": {"user_id": "user-7"},
        })
    );
    let array_stop = converted(json!({
        "messages": [{"role": "user", "content": "Hi"}],
        "stop": ["a", "b"],
        "max_tokens": 7,
    }));
    assert_eq!(array_stop["stop_sequences"], json!(["a", "b"]));
    assert_eq!(array_stop["max_tokens"], json!(7));
}

#[test]
fn prompt_bytes_count_the_messages_field() {
    let messages = json!([{"role": "user", "content": "Hello there"}]);
    let translated = to_anthropic(json!({"model": "m", "messages": messages})).expect("ok");
    assert_eq!(translated.prompt_bytes, messages.to_string().len());
    assert!(!translated.stream);
    assert!(!translated.client_wants_stream_usage);
}

#[test]
fn multi_turn_with_images() {
    let out = converted(json!({
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ],
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"},
        ])
    );
}

#[test]
fn tools_tool_calls_and_results_round_trip() {
    let out = converted(json!({
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
            ]},
            {"role": "user", "content": "Thanks"},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"name": "weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true})
    );
}

#[test]
fn tool_choice_strings_map() {
    for (choice, expected) in [
        ("auto", json!({"type": "auto"})),
        ("none", json!({"type": "none"})),
        ("required", json!({"type": "any"})),
    ] {
        let out = converted(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": choice,
        }));
        assert_eq!(out["tool_choice"], expected, "{choice}");
        assert_eq!(
            out["tools"],
            json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
        );
    }
    let out = converted(json!({
        "messages": [{"role": "user", "content": "x"}],
        "parallel_tool_calls": false,
    }));
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[test]
fn unsupported_parameters_are_all_listed_in_body_order() {
    let error = openai_chat_to_anthropic(r#"{
        "model": "m",
        "seed": 4,
        "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]},
            {"role": "function", "name": "f", "content": "x"}
        ],
        "n": 2,
        "logprobs": true,
        "top_logprobs": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.1,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "audio": {"voice": "alloy", "format": "wav"},
        "modalities": ["text", "audio"],
        "prediction": {"type": "content", "content": "x"},
        "tools": [{"type": "custom", "custom": {"name": "grammar"}}],
        "reasoning_effort": "low"
    }"#.as_bytes(), "claude-sonnet-4-5")
    .expect_err("unsupported");
    assert_eq!(
        error,
        TranslateError::Unsupported {
            target: "anthropic",
            params: [
                "seed",
                "messages[0].content[0].type=input_audio",
                "messages[1].role=function",
                "n",
                "logprobs",
                "top_logprobs",
                "presence_penalty",
                "frequency_penalty",
                "logit_bias",
                "response_format",
                "audio",
                "modalities",
                "prediction",
                "tools[0].type=custom",
                "reasoning_effort",
            ]
            .map(String::from)
            .to_vec(),
        }
    );
    assert!(error
        .to_string()
        .starts_with("unsupported parameter(s) for anthropic upstream: seed, messages[0]"));
}

#[test]
fn invalid_bodies_name_the_field() {
    let cases = [
        (json!([1, 2]), "body"),
        (json!({"model": "m"}), "messages"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (json!({"messages": [{"content": "x"}]}), "messages[0]"),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stop": 5}),
            "stop",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "maybe"}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
    ];
    for (body, field) in cases {
        match to_anthropic(body.clone()) {
            Err(TranslateError::Invalid { field: got, .. }) => {
                assert_eq!(got, field, "body {body}")
            }
            other => panic!("body {body}: expected Invalid, got {other:?}"),
        }
    }
    assert!(matches!(
        openai_chat_to_anthropic(b"{not json", "m"),
        Err(TranslateError::Invalid { field, .. }) if field == "body"
    ));
}

#[test]
fn response_text_and_tool_use_become_a_chat_completion() {
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3},
    });
    let (bytes, usage) =
        anthropic_response_to_openai(body.to_string().as_bytes(), "my-endpoint").expect("ok");
    assert_eq!(
        usage,
        TokenUsage {
            prompt_tokens: 15,
            completion_tokens: 5
        }
    );
    let mut out = json(&bytes);
    assert!(out["created"]
        .as_i64()
        .is_some_and(|created| created > 1_700_000_000));
    out["created"] = json!(0);
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-msg_01",
            "object": "chat.completion",
            "created": 0,
            "model": "my-endpoint",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": {"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20},
        })
    );
}

#[test]
fn response_stop_reasons_map() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let body = json!({"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": stop,
            "usage": {"input_tokens": 1, "output_tokens": 1}});
        let (bytes, _) =
            anthropic_response_to_openai(body.to_string().as_bytes(), "e").expect("ok");
        assert_eq!(
            json(&bytes)["choices"][0]["finish_reason"],
            finish,
            "{stop}"
        );
    }
    assert!(matches!(
        anthropic_response_to_openai(b"<html>", "e"),
        Err(TranslateError::BadUpstream(_))
    ));
}

fn data(steps: &[Vec<super::super::test_support::Event>]) -> Vec<serde_json::Value> {
    steps
        .iter()
        .flatten()
        .map(|event| {
            assert_eq!(event.name, None, "OpenAI chunks are unnamed");
            let mut value = event.data.clone();
            if value.is_object() {
                assert_eq!(value["id"], "chatcmpl-msg_01");
                assert_eq!(value["model"], "my-endpoint");
                assert_eq!(value["object"], "chat.completion.chunk");
                if let Some(object) = value.as_object_mut() {
                    object.remove("id");
                    object.remove("model");
                    object.remove("object");
                    object.remove("created");
                }
            }
            value
        })
        .collect()
}

const TEXT_STREAM: &[(Option<&str>, &str)] = &[
    (
        Some("message_start"),
        r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
    ),
    (
        Some("content_block_start"),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ),
    (Some("ping"), r#"{"type":"ping"}"#),
    (
        Some("content_block_delta"),
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
    ),
    (
        Some("content_block_delta"),
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}"#,
    ),
    (
        Some("content_block_stop"),
        r#"{"type":"content_block_stop","index":0}"#,
    ),
    (
        Some("message_delta"),
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#,
    ),
    (Some("message_stop"), r#"{"type":"message_stop"}"#),
];

#[test]
fn text_stream_becomes_chunks_with_usage() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", true);
    let steps = run(translator.as_mut(), TEXT_STREAM);
    let choice = |delta: serde_json::Value, finish: serde_json::Value| json!({"choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    assert_eq!(
        data(&steps),
        vec![
            choice(json!({"role": "assistant", "content": ""}), json!(null)),
            choice(json!({"content": "Hello"}), json!(null)),
            choice(json!({"content": " world"}), json!(null)),
            choice(json!({}), json!("stop")),
            json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}),
            json!("[DONE]"),
        ]
    );
    assert!(
        steps.last().is_some_and(Vec::is_empty),
        "finish adds nothing"
    );
    assert_eq!(
        translator.usage(),
        Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 7
        })
    );
    assert!(translator.completed());
    assert_eq!(translator.output_bytes(), "Hello world".len());
    assert_eq!(translator.error(), None);
}

#[test]
fn stream_without_usage_chunk_when_not_asked() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", false);
    let all = data(&run(translator.as_mut(), TEXT_STREAM));
    assert_eq!(all.len(), 5);
    assert_eq!(all[4], json!("[DONE]"));
    assert!(translator.usage().is_some(), "usage is still metered");
}

#[test]
fn tool_use_stream_becomes_tool_call_deltas() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", false);
    let events = [
        (
            Some("message_start"),
            r#"{"type":"message_start","message":{"id":"msg_01","usage":{"input_tokens":5,"output_tokens":1}}}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Ok."}}"#,
        ),
        (
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
        ),
        (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
        ),
        (
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"time","input":{}}}"#,
        ),
        (
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":2}"#,
        ),
        (
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}"#,
        ),
        (Some("message_stop"), r#"{"type":"message_stop"}"#),
    ];
    let all = data(&run(translator.as_mut(), &events));
    let deltas: Vec<serde_json::Value> = all
        .iter()
        .filter(|chunk| chunk.is_object())
        .map(|chunk| chunk["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!({"role": "assistant", "content": ""}),
            json!({"content": "Ok."}),
            json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            json!({"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": ""}}]}),
            json!({}),
        ]
    );
    assert_eq!(
        all[all.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(all.last(), Some(&json!("[DONE]")));
    assert_eq!(
        translator.usage(),
        Some(TokenUsage {
            prompt_tokens: 5,
            completion_tokens: 30
        })
    );
}

#[test]
fn error_event_becomes_openai_error_and_stops() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", true);
    let events = [
        TEXT_STREAM[0],
        TEXT_STREAM[3],
        (
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        TEXT_STREAM[4],
    ];
    let steps = run(translator.as_mut(), &events);
    assert_eq!(
        steps[2][0].data,
        json!({"error": {"message": "Overloaded", "type": "server_error", "code": "overloaded_error", "param": null}})
    );
    assert!(steps[3].is_empty(), "events after the error are dropped");
    assert!(steps[4].is_empty(), "no [DONE] after an error");
    assert_eq!(translator.error(), Some("Overloaded"));
    assert!(!translator.completed());
    assert_eq!(translator.usage(), None);
}

#[test]
fn cut_stream_still_ends_with_done_but_is_not_completed() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", true);
    let steps = run(translator.as_mut(), &TEXT_STREAM[..4]);
    assert_eq!(
        steps.last().map(|events| events
            .iter()
            .map(|event| event.data.clone())
            .collect::<Vec<_>>()),
        Some(vec![json!("[DONE]")])
    );
    assert!(!translator.completed());
    assert_eq!(translator.usage(), None);
    assert_eq!(translator.output_bytes(), 5);
}

#[test]
fn unreadable_stream_event_is_an_error() {
    let mut translator = anthropic_stream_to_openai("my-endpoint", false);
    let steps = run(
        translator.as_mut(),
        &[(Some("content_block_delta"), "{oops")],
    );
    assert_eq!(steps[0][0].data["error"]["type"], "server_error");
    assert!(translator
        .error()
        .is_some_and(|message| message.starts_with("unreadable")));
    assert!(steps[1].is_empty());
}

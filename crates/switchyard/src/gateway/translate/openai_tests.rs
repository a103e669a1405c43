use serde_json::json;

use super::super::test_support::{json, run, Event};
use super::super::{StreamTranslator, *};
use super::*;

fn to_openai(body: serde_json::Value) -> Result<Translated, TranslateError> {
    anthropic_to_openai_chat(body.to_string().as_bytes(), "meta-llama/Llama-3.1-8B")
}

fn converted(body: serde_json::Value) -> serde_json::Value {
    json(&to_openai(body).expect("translates").body)
}

#[test]
fn system_parameters_and_stream_map() {
    let translated = to_openai(json!({
        "model": "my-endpoint",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        ],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.8,
        "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "stream": true,
        "service_tier": "auto",
        "thinking": {"type": "disabled"},
    }))
    .expect("translates");
    assert!(translated.stream);
    assert!(translated.client_wants_stream_usage);
    assert_eq!(
        json(&translated.body),
        json!({
            "model": "meta-llama/Llama-3.1-8B",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Again"},
            ],
            "max_tokens": 300,
            "stop": ["END"],
            "temperature": 0.2,
            "top_p": 0.8,
            "top_k": 40,
            "user": "u-1",
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    );
}

#[test]
fn images_tools_and_tool_results_map() {
    let out = converted(json!({
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ],
        "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "And tomorrow?"},
        ])
    );
    assert_eq!(
        out["tools"],
        json!([{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}}}])
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
    assert_eq!(out["parallel_tool_calls"], json!(false));
    for (choice, expected) in [("auto", "auto"), ("any", "required"), ("none", "none")] {
        let out = converted(json!({"model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": choice}}));
        assert_eq!(out["tool_choice"], expected);
    }
}

#[test]
fn unsupported_parameters_are_all_listed() {
    let error = anthropic_to_openai_chat(r#"{
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}
            ]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]}
        ],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "container": "c",
        "mcp_servers": [],
        "context_management": {}
    }"#.as_bytes(), "m")
    .expect_err("unsupported");
    assert_eq!(
        error,
        TranslateError::Unsupported {
            target: "openai",
            params: [
                "thinking",
                "messages[0].content[0].type=document",
                "messages[0].content[1].content[0].type=image",
                "messages[1].content[0].type=thinking",
                "tools[0].type=web_search_20250305",
                "container",
                "mcp_servers",
                "context_management",
            ]
            .map(String::from)
            .to_vec(),
        }
    );
}

#[test]
fn invalid_bodies_name_the_field() {
    let user = json!([{"role": "user", "content": "x"}]);
    let cases = [
        (json!("text"), "body"),
        (json!({"max_tokens": 1, "messages": user}), "model"),
        (
            json!({"model": 5, "max_tokens": 1, "messages": user}),
            "model",
        ),
        (json!({"model": "m", "max_tokens": 1}), "messages"),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (json!({"model": "m", "messages": user}), "max_tokens"),
        (
            json!({"model": "m", "max_tokens": -1, "messages": user}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": 3}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "temperature": 1.5}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "tools": [{"description": "d"}]}),
            "tools[0]",
        ),
    ];
    for (body, field) in cases {
        match to_openai(body.clone()) {
            Err(TranslateError::Invalid { field: got, .. }) => {
                assert_eq!(got, field, "body {body}")
            }
            other => panic!("body {body}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn response_becomes_an_anthropic_message() {
    let body = json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "llama",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
    });
    let (bytes, usage) =
        openai_response_to_anthropic(body.to_string().as_bytes(), "my-endpoint").expect("ok");
    assert_eq!(
        usage,
        TokenUsage {
            prompt_tokens: 11,
            completion_tokens: 6
        }
    );
    assert_eq!(
        json(&bytes),
        json!({
            "id": "msg_abc", "type": "message", "role": "assistant", "model": "my-endpoint",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 6},
        })
    );
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "end_turn"),
    ] {
        let body =
            json!({"id": "x", "choices": [{"message": {"content": ""}, "finish_reason": finish}]});
        let (bytes, usage) =
            openai_response_to_anthropic(body.to_string().as_bytes(), "e").expect("ok");
        let out = json(&bytes);
        assert_eq!(out["stop_reason"], stop);
        assert_eq!(out["content"], json!([]), "empty text gives no block");
        assert_eq!(usage, TokenUsage::default());
    }
    assert!(matches!(
        openai_response_to_anthropic(br#"{"choices":[]}"#, "e"),
        Err(TranslateError::BadUpstream(_))
    ));
    let bad_args = json!({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}]}}]});
    assert!(matches!(
        openai_response_to_anthropic(bad_args.to_string().as_bytes(), "e"),
        Err(TranslateError::BadUpstream(_))
    ));
}

/// Checks the official Anthropic event order and that every event's name
/// matches its `type`; returns the event names.
fn check_order(events: &[Event]) -> Vec<String> {
    let names: Vec<String> = events
        .iter()
        .map(|event| {
            let name = event.name.clone().expect("named event");
            assert_eq!(event.data["type"], name.as_str());
            name
        })
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (position, event) in events.iter().enumerate() {
        let index = event.data["index"].as_u64();
        match names[position].as_str() {
            "message_start" => assert_eq!(position, 0),
            "content_block_start" => {
                assert_eq!(open, None, "block started while another is open");
                assert_eq!(index, Some(next), "blocks are numbered in order");
                open = index;
                next += 1;
            }
            "content_block_delta" => assert_eq!(index, open, "delta outside its block"),
            "content_block_stop" => {
                assert_eq!(index, open);
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None);
                assert_eq!(
                    names.get(position + 1).map(String::as_str),
                    Some("message_stop")
                );
            }
            "message_stop" => assert_eq!(position, events.len() - 1),
            other => panic!("unexpected event {other}"),
        }
    }
    names
}

fn stream_events(
    translator: &mut dyn StreamTranslator,
    events: &[(Option<&str>, &str)],
) -> Vec<Event> {
    run(translator, events).into_iter().flatten().collect()
}

#[test]
fn text_stream_becomes_anthropic_events() {
    let mut translator = openai_stream_to_anthropic("my-endpoint");
    let events = [
        (
            None,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        ),
        (
            None,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
        ),
        (
            None,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
        ),
        (
            None,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ),
        (
            None,
            r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
        ),
        (None, "[DONE]"),
    ];
    let steps = run(translator.as_mut(), &events);
    assert!(
        steps[3].is_empty(),
        "message_delta waits for the usage chunk"
    );
    assert!(steps[5].is_empty() && steps[6].is_empty(), "closed once");
    let all: Vec<Event> = steps.into_iter().flatten().collect();
    assert_eq!(
        check_order(&all),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        all[0].data,
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "my-endpoint", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
    assert_eq!(
        all[1].data,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        all[2].data,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
    );
    assert_eq!(
        all[4].data,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        all[5].data,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 9, "output_tokens": 2}})
    );
    assert_eq!(all[6].data, json!({"type": "message_stop"}));
    assert_eq!(
        translator.usage(),
        Some(TokenUsage {
            prompt_tokens: 9,
            completion_tokens: 2
        })
    );
    assert!(translator.completed());
    assert_eq!(translator.output_bytes(), 5);
}

#[test]
fn tool_call_stream_opens_tool_use_blocks() {
    let mut translator = openai_stream_to_anthropic("my-endpoint");
    let events = [
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Let me check."}}]}"#,
        ),
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#,
        ),
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
        ),
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
        ),
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"time","arguments":"{}"}}]}}]}"#,
        ),
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ),
        (None, "[DONE]"),
    ];
    let all = stream_events(translator.as_mut(), &events);
    assert_eq!(
        check_order(&all),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        all[4].data,
        json!({"type": "content_block_start", "index": 1, "content_block":
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}})
    );
    assert_eq!(
        all[5].data,
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})
    );
    assert_eq!(all[8].data["content_block"]["id"], "call_2");
    assert_eq!(
        all[11].data,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": 0}})
    );
    assert!(translator.completed());
    assert_eq!(translator.usage(), None, "the upstream sent no usage");
}

#[test]
fn finish_closes_a_cut_stream_in_order() {
    let mut translator = openai_stream_to_anthropic("my-endpoint");
    let events = [(
        None,
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"partial"}}]}"#,
    )];
    let steps = run(translator.as_mut(), &events);
    let names = check_order(&steps.concat());
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert_eq!(
        steps[1]
            .iter()
            .filter_map(|event| event.name.as_deref())
            .collect::<Vec<_>>(),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(!translator.completed());
    assert_eq!(translator.output_bytes(), 7);

    let mut empty = openai_stream_to_anthropic("my-endpoint");
    let names = check_order(&stream_events(empty.as_mut(), &[]));
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
}

#[test]
fn error_event_becomes_anthropic_error() {
    let mut translator = openai_stream_to_anthropic("my-endpoint");
    let events = [
        (
            None,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}"#,
        ),
        (
            None,
            r#"{"error":{"message":"rate limited","type":"rate_limit_error","code":null,"param":null}}"#,
        ),
        (None, "[DONE]"),
    ];
    let steps = run(translator.as_mut(), &events);
    assert_eq!(
        steps[1],
        vec![Event {
            name: Some("error".to_owned()),
            data: json!({"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}),
        }]
    );
    assert!(steps[2].is_empty() && steps[3].is_empty());
    assert_eq!(translator.error(), Some("rate limited"));
    assert!(!translator.completed());
}

#[test]
fn prompt_bytes_count_system_and_messages() {
    let system = json!("Be terse.");
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let translated =
        to_openai(json!({"model": "m", "max_tokens": 5, "system": system, "messages": messages}))
            .expect("ok");
    assert_eq!(
        translated.prompt_bytes,
        system.to_string().len() + messages.to_string().len()
    );
    assert!(!translated.stream && !translated.client_wants_stream_usage);
    assert_eq!(json(&translated.body).get("stream_options"), None);
}

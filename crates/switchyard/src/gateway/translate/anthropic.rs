//! OpenAI clients in front of an Anthropic Messages upstream: requests,
//! responses and streams.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chat::{ChatRequest, Content, Part, Role, ToolChoice};
use super::wire::{now_seconds, openai_usage, parse_data_url, to_vec};
use super::{TokenUsage, TranslateError, Translated};

/// `max_tokens` sent when the client gave none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

const TARGET: &str = "anthropic";

/// Fields an Anthropic upstream cannot express (when set to a non-neutral value).
const BLOCKED: &[&str] = &[
    "n",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "response_format",
    "audio",
    "modalities",
    "prediction",
];

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: MessageContent,
}

#[derive(Serialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Blocks(Vec<Value>),
}

/// Converts an OpenAI chat request into an Anthropic Messages request for
/// `upstream_model`.
pub fn openai_chat_to_anthropic(
    body: &[u8],
    upstream_model: &str,
) -> Result<Translated, TranslateError> {
    let request = ChatRequest::parse(body)?;
    let mut issues = Vec::new();
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    let mut last_was_tool_results = false;
    for (index, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{index}]");
        let is_tool = message.role == Role::Tool;
        match message.role {
            Role::System => {
                if let Some(content) = &message.content {
                    let (text, others) = content.text("\n\n");
                    note_others(&mut issues, &path, &others);
                    system.push(text);
                }
            }
            Role::Function => issues.push(format!("{path}.role=function")),
            Role::User => {
                let content = match &message.content {
                    None => MessageContent::Text(String::new()),
                    Some(content) => user_content(&mut issues, &path, content),
                };
                messages.push(Message {
                    role: "user",
                    content,
                });
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                let text = match &message.content {
                    None => String::new(),
                    Some(content) => {
                        let (text, others) = content.text("");
                        note_others(&mut issues, &path, &others);
                        text
                    }
                };
                if message.tool_calls.is_empty() {
                    if text.is_empty() {
                        last_was_tool_results = false;
                        continue;
                    }
                    messages.push(Message {
                        role: "assistant",
                        content: MessageContent::Text(text),
                    });
                    last_was_tool_results = false;
                    continue;
                }
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (call_index, call) in message.tool_calls.iter().enumerate() {
                    let input = call.function.parsed_arguments(&format!(
                        "{path}.tool_calls[{call_index}].function.arguments"
                    ))?;
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": input,
                    }));
                }
                messages.push(Message {
                    role: "assistant",
                    content: MessageContent::Blocks(blocks),
                });
            }
            Role::Tool => {
                let (text, others) = message
                    .content
                    .as_ref()
                    .map(|content| content.text(""))
                    .unwrap_or_default();
                note_others(&mut issues, &path, &others);
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": text,
                });
                match messages.last_mut() {
                    Some(Message {
                        content: MessageContent::Blocks(blocks),
                        ..
                    }) if last_was_tool_results => blocks.push(block),
                    _ => messages.push(Message {
                        role: "user",
                        content: MessageContent::Blocks(vec![block]),
                    }),
                }
            }
        }
        last_was_tool_results = is_tool;
    }

    let mut tools = Vec::new();
    let mut tool_issues = Vec::new();
    for (index, tool) in request.tools.iter().enumerate() {
        match (tool.kind.as_str(), &tool.function) {
            ("function", Some(function)) => {
                let mut definition = json!({
                    "name": function.name,
                    "input_schema": function.parameters.clone()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(description) = &function.description {
                    definition["description"] = Value::String(description.clone());
                }
                tools.push(definition);
            }
            _ => tool_issues.push(format!("tools[{index}].type={}", tool.kind)),
        }
    }
    let params = request.unsupported(BLOCKED, vec![("messages", issues), ("tools", tool_issues)]);
    if !params.is_empty() {
        return Err(TranslateError::Unsupported {
            target: TARGET,
            params,
        });
    }

    let disable_parallel = request.parallel_tool_calls == Some(false);
    let tool_choice = match (&request.tool_choice, disable_parallel) {
        (None, false) => None,
        (None, true) => Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        (Some(choice), _) => {
            let mut value = match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
            };
            if disable_parallel && *choice != ToolChoice::None {
                value["disable_parallel_tool_use"] = Value::Bool(true);
            }
            Some(value)
        }
    };
    let upstream = MessagesRequest {
        model: upstream_model,
        max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        stop_sequences: request.stop.clone(),
        temperature: request.temperature,
        top_p: request.top_p,
        tools,
        tool_choice,
        stream: request.stream,
        metadata: request.user.as_ref().map(|user| json!({"user_id": user})),
    };
    Ok(Translated {
        body: to_vec(&upstream)?,
        stream: request.stream,
        client_wants_stream_usage: request.include_usage,
        prompt_bytes: request.prompt_bytes,
    })
}

fn note_others(issues: &mut Vec<String>, path: &str, others: &[(usize, &str)]) {
    for (index, kind) in others {
        issues.push(format!("{path}.content[{index}].type={kind}"));
    }
}

fn user_content(issues: &mut Vec<String>, path: &str, content: &Content) -> MessageContent {
    match content {
        Content::Text(text) => MessageContent::Text(text.clone()),
        Content::Parts(parts) => {
            let mut blocks = Vec::new();
            for (index, part) in parts.iter().enumerate() {
                match part {
                    Part::Text(text) => blocks.push(json!({"type": "text", "text": text})),
                    Part::Image(url) => match parse_data_url(url) {
                        Some((mime, data)) => blocks.push(json!({
                            "type": "image",
                            "source": {"type": "base64", "media_type": mime, "data": data},
                        })),
                        None if url.starts_with("http://") || url.starts_with("https://") => blocks
                            .push(json!({
                                "type": "image",
                                "source": {"type": "url", "url": url},
                            })),
                        None => issues.push(format!("{path}.content[{index}].image_url.url")),
                    },
                    Part::Other(kind) => {
                        issues.push(format!("{path}.content[{index}].type={kind}"))
                    }
                }
            }
            MessageContent::Blocks(blocks)
        }
    }
}

#[derive(Deserialize)]
struct MessagesResponse {
    id: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
pub(super) struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Input tokens including both kinds of cache tokens, if reported.
    pub(super) fn prompt(&self) -> Option<u64> {
        self.input_tokens.map(|input| {
            input
                + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0)
        })
    }
}

/// The OpenAI `finish_reason` of an Anthropic `stop_reason`.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Converts a non-streamed Anthropic Messages response into an OpenAI chat
/// completion named `model`.
pub fn anthropic_response_to_openai(
    body: &[u8],
    model: &str,
) -> Result<(Vec<u8>, TokenUsage), TranslateError> {
    let response: MessagesResponse = serde_json::from_slice(body).map_err(|error| {
        TranslateError::BadUpstream(format!("not an Anthropic message: {error}"))
    })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            Block::Text { text: part } => text.push_str(&part),
            Block::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::Other => {}
        }
    }
    let usage = TokenUsage {
        prompt_tokens: response.usage.prompt().unwrap_or(0),
        completion_tokens: response.usage.output_tokens.unwrap_or(0),
    };
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let completion = json!({
        "id": format!("chatcmpl-{}", response.id),
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(response.stop_reason.as_deref()),
        }],
        "usage": openai_usage(usage),
    });
    Ok((to_vec(&completion)?, usage))
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;

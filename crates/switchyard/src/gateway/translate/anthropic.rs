//! OpenAI clients in front of an Anthropic Messages upstream: requests,
//! responses and streams.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chat::{ChatRequest, Content, Part, Role, ToolChoice};
use super::wire::{now_seconds, parse_data_url, push_data, push_done, to_vec};
use super::{StreamTranslator, TokenUsage, TranslateError, Translated};

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
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Input tokens including both kinds of cache tokens, if reported.
    fn prompt(&self) -> Option<u64> {
        self.input_tokens.map(|input| {
            input
                + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0)
        })
    }
}

/// The OpenAI `finish_reason` of an Anthropic `stop_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn usage_json(usage: TokenUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
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
        "usage": usage_json(usage),
    });
    Ok((to_vec(&completion)?, usage))
}

/// An OpenAI-style error event body for an upstream stream error.
pub(super) fn openai_error_event(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "code": code, "param": null}})
}

/// Anthropic stream → OpenAI chunks.
struct AnthropicToOpenAi {
    model: String,
    include_usage: bool,
    id: String,
    created: i64,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// Anthropic block index → OpenAI tool call index.
    tool_indexes: Vec<(u64, u64)>,
    done: bool,
    completed: bool,
    error: Option<String>,
    output_bytes: usize,
}

/// Translates an Anthropic Messages stream into OpenAI chat completion chunks
/// named `model`; with `include_usage` a usage chunk precedes `[DONE]`.
pub fn anthropic_stream_to_openai(model: &str, include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(AnthropicToOpenAi {
        model: model.to_owned(),
        include_usage,
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        created: now_seconds(),
        prompt_tokens: None,
        completion_tokens: None,
        tool_indexes: Vec::new(),
        done: false,
        completed: false,
        error: None,
        output_bytes: 0,
    })
}

#[derive(Deserialize)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl AnthropicToOpenAi {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.include_usage {
            if let Some(usage) = self.usage() {
                push_data(
                    out,
                    &json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage_json(usage),
                    }),
                );
            }
        }
        push_done(out);
        self.done = true;
    }
}

impl StreamTranslator for AnthropicToOpenAi {
    fn event(&mut self, name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        if self.done || name == Some("ping") {
            return;
        }
        let Ok(event) = serde_json::from_slice::<StreamEvent>(data) else {
            if name == Some("error") {
                let message = String::from_utf8_lossy(data).into_owned();
                push_data(out, &openai_error_event(&message, "server_error", None));
                self.error = Some(message);
                self.done = true;
            }
            return;
        };
        match event.kind.as_str() {
            "message_start" => {
                if let Some(message) = event.message {
                    if let Some(id) = message.id {
                        self.id = format!("chatcmpl-{id}");
                    }
                    if let Some(usage) = message.usage {
                        self.prompt_tokens = usage.prompt();
                    }
                }
                push_data(
                    out,
                    &self.chunk(json!({"role": "assistant", "content": ""}), None),
                );
            }
            "content_block_start" => {
                let block = event.content_block.unwrap_or(Value::Null);
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let tool_index = self.tool_indexes.len() as u64;
                        self.tool_indexes
                            .push((event.index.unwrap_or(0), tool_index));
                        let call = json!({
                            "index": tool_index,
                            "id": block["id"],
                            "type": "function",
                            "function": {"name": block["name"], "arguments": ""},
                        });
                        push_data(out, &self.chunk(json!({"tool_calls": [call]}), None));
                    }
                    Some("text") => {
                        if let Some(text) = block["text"].as_str().filter(|text| !text.is_empty()) {
                            self.output_bytes += text.len();
                            push_data(out, &self.chunk(json!({"content": text}), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = event.delta.unwrap_or(Value::Null);
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = delta["text"].as_str().unwrap_or_default();
                        self.output_bytes += text.len();
                        push_data(out, &self.chunk(json!({"content": text}), None));
                    }
                    Some("input_json_delta") => {
                        let partial = delta["partial_json"].as_str().unwrap_or_default();
                        self.output_bytes += partial.len();
                        let block = event.index.unwrap_or(0);
                        let Some(&(_, tool_index)) =
                            self.tool_indexes.iter().find(|(index, _)| *index == block)
                        else {
                            return;
                        };
                        let call = json!({"index": tool_index, "function": {"arguments": partial}});
                        push_data(out, &self.chunk(json!({"tool_calls": [call]}), None));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    if let Some(output) = usage.output_tokens {
                        self.completion_tokens = Some(output);
                    }
                    if let Some(prompt) = usage.prompt() {
                        self.prompt_tokens = Some(prompt);
                    }
                }
                let stop_reason = event
                    .delta
                    .as_ref()
                    .and_then(|delta| delta["stop_reason"].as_str())
                    .map(str::to_owned);
                if let Some(stop_reason) = stop_reason {
                    let reason = finish_reason(Some(&stop_reason));
                    push_data(out, &self.chunk(json!({}), Some(reason)));
                }
            }
            "message_stop" => {
                self.completed = true;
                self.close(out);
            }
            "error" => {
                let error = event.error.unwrap_or(ErrorBody {
                    kind: None,
                    message: None,
                });
                let message = error
                    .message
                    .unwrap_or_else(|| "the upstream stream failed".to_owned());
                let code = error.kind.unwrap_or_else(|| "api_error".to_owned());
                let kind = super::errors::openai_type_of_anthropic(&code);
                push_data(out, &openai_error_event(&message, kind, Some(&code)));
                self.error = Some(message);
                self.done = true;
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if !self.done {
            self.close(out);
        }
    }

    fn usage(&self) -> Option<TokenUsage> {
        Some(TokenUsage {
            prompt_tokens: self.prompt_tokens?,
            completion_tokens: self.completion_tokens?,
        })
    }

    fn output_bytes(&self) -> usize {
        self.output_bytes
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;

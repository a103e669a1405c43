//! Anthropic clients in front of an OpenAI-compatible upstream: requests,
//! responses and streams.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::wire::{decode, decode_value, fields, invalid, is_null, to_vec};
use super::{TokenUsage, TranslateError, Translated};

const TARGET: &str = "openai";

/// Top-level Anthropic fields this conversion knows.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "stream",
    "service_tier",
];

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: Value,
}

#[derive(Deserialize)]
struct TextBlock {
    text: String,
}

#[derive(Deserialize)]
struct ImageBlock {
    source: ImageSource,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
struct ToolUseBlock {
    id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
struct ToolResultBlock {
    tool_use_id: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Deserialize)]
struct ToolDefinition {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
}

#[derive(Deserialize)]
struct RawToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: String,
}

/// The `type` of a content block.
fn block_type<'a>(path: &str, block: &'a Value) -> Result<&'a str, TranslateError> {
    block["type"]
        .as_str()
        .ok_or_else(|| invalid(format!("{path}.type"), "must be a string"))
}

/// Text of a `system` field or a tool result: a string or text blocks.
fn text_of(path: &str, value: &Value, issues: &mut Vec<String>) -> Result<String, TranslateError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (index, block) in blocks.iter().enumerate() {
                let block_path = format!("{path}[{index}]");
                match block_type(&block_path, block)? {
                    "text" => {
                        let text: TextBlock = decode_value(&block_path, block.clone())?;
                        texts.push(text.text);
                    }
                    other => issues.push(format!("{block_path}.type={other}")),
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(invalid(path, "must be a string or an array of text blocks")),
    }
}

/// Converts an Anthropic Messages request into an OpenAI chat request for
/// `upstream_model`.
pub fn anthropic_to_openai_chat(
    body: &[u8],
    upstream_model: &str,
) -> Result<Translated, TranslateError> {
    let mut params = Vec::new();
    let mut model = None;
    let mut raw_messages = None;
    let mut max_tokens = None;
    let mut system = None;
    let mut upstream = Map::new();
    let mut tools = Vec::new();
    let mut tool_choice = None;
    let mut parallel_tool_calls = None;
    let mut stream = false;
    let mut prompt_bytes = 0;
    for (name, raw) in fields(body)? {
        if is_null(raw) && name != "model" && name != "messages" {
            continue;
        }
        let field = name.as_str();
        match field {
            "model" => model = Some(decode::<String>(field, raw)?),
            "messages" => {
                prompt_bytes += raw.get().len();
                raw_messages = Some((params.len(), decode::<Vec<RawMessage>>(field, raw)?));
            }
            "max_tokens" => match serde_json::from_str::<u64>(raw.get()) {
                Ok(value) if value > 0 => max_tokens = Some(value),
                _ => return Err(invalid(field, "must be a positive integer")),
            },
            "system" => {
                prompt_bytes += raw.get().len();
                let value: Value = decode(field, raw)?;
                system = Some(text_of(field, &value, &mut params)?);
            }
            "stop_sequences" => {
                upstream.insert("stop".into(), json!(decode::<Vec<String>>(field, raw)?));
            }
            "temperature" | "top_p" => {
                let value: f64 = decode(field, raw)?;
                if !(0.0..=1.0).contains(&value) {
                    return Err(invalid(field, "must be a number between 0 and 1"));
                }
                upstream.insert(name.clone(), json!(value));
            }
            "top_k" => {
                upstream.insert("top_k".into(), json!(decode::<u64>(field, raw)?));
            }
            "tools" => {
                let definitions: Vec<ToolDefinition> = decode(field, raw)?;
                for (index, tool) in definitions.into_iter().enumerate() {
                    match tool.kind.as_deref() {
                        None | Some("custom") => {
                            let mut function = Map::new();
                            function.insert("name".into(), json!(tool.name));
                            if let Some(description) = tool.description {
                                function.insert("description".into(), json!(description));
                            }
                            function.insert(
                                "parameters".into(),
                                tool.input_schema
                                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                            );
                            tools.push(json!({"type": "function", "function": function}));
                        }
                        Some(kind) => params.push(format!("tools[{index}].type={kind}")),
                    }
                }
            }
            "tool_choice" => {
                let choice: RawToolChoice = decode(field, raw)?;
                if choice.disable_parallel_tool_use == Some(true) {
                    parallel_tool_calls = Some(false);
                }
                tool_choice = Some(match choice.kind.as_str() {
                    "auto" => json!("auto"),
                    "any" => json!("required"),
                    "none" => json!("none"),
                    "tool" => {
                        let Some(name) = choice.name else {
                            return Err(invalid("tool_choice.name", "is required for type tool"));
                        };
                        json!({"type": "function", "function": {"name": name}})
                    }
                    _ => {
                        return Err(invalid(
                            "tool_choice.type",
                            "must be auto, any, tool or none",
                        ))
                    }
                });
            }
            "metadata" => {
                let metadata: Metadata = decode(field, raw)?;
                if let Some(user) = metadata.user_id {
                    upstream.insert("user".into(), json!(user));
                }
            }
            "stream" => stream = decode(field, raw)?,
            "service_tier" => {}
            "thinking" => {
                let thinking: Thinking = decode(field, raw)?;
                if thinking.kind != "disabled" {
                    params.push(name.clone());
                }
            }
            _ if !KNOWN.contains(&field) => params.push(name.clone()),
            _ => {}
        }
    }
    let Some(model) = model else {
        return Err(invalid("model", "is required"));
    };
    if model.is_empty() {
        return Err(invalid("model", "must be a non-empty string"));
    }
    let Some((messages_at, raw_messages)) = raw_messages else {
        return Err(invalid("messages", "is required"));
    };
    if raw_messages.is_empty() {
        return Err(invalid("messages", "must be a non-empty array"));
    }
    let Some(max_tokens) = max_tokens else {
        return Err(invalid("max_tokens", "is required"));
    };

    let mut message_issues = Vec::new();
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (index, message) in raw_messages.into_iter().enumerate() {
        convert_message(index, message, &mut messages, &mut message_issues)?;
    }
    params.splice(messages_at..messages_at, message_issues);
    if !params.is_empty() {
        return Err(TranslateError::Unsupported {
            target: TARGET,
            params,
        });
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    out.append(&mut upstream);
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = parallel_tool_calls {
        out.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Translated {
        body: to_vec(&out)?,
        stream,
        client_wants_stream_usage: stream,
        prompt_bytes,
    })
}

fn convert_message(
    index: usize,
    message: RawMessage,
    out: &mut Vec<Value>,
    issues: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let path = format!("messages[{index}]");
    let assistant = match message.role.as_str() {
        "user" => false,
        "assistant" => true,
        _ => return Err(invalid(format!("{path}.role"), "must be user or assistant")),
    };
    let blocks = match message.content {
        Value::String(text) => {
            out.push(json!({"role": message.role, "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    let mut tool_messages = Vec::new();
    for (block_index, block) in blocks.into_iter().enumerate() {
        let block_path = format!("{path}.content[{block_index}]");
        match block_type(&block_path, &block)? {
            "text" => {
                let text: TextBlock = decode_value(&block_path, block)?;
                parts.push(json!({"type": "text", "text": text.text}));
            }
            "image" if !assistant => {
                let image: ImageBlock = decode_value(&block_path, block)?;
                let url = match image.source {
                    ImageSource::Base64 { media_type, data } => {
                        format!("data:{media_type};base64,{data}")
                    }
                    ImageSource::Url { url } => url,
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            "tool_use" if assistant => {
                let call: ToolUseBlock = decode_value(&block_path, block)?;
                let arguments = if call.input.is_null() {
                    "{}".to_owned()
                } else {
                    call.input.to_string()
                };
                tool_calls.push(json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }));
            }
            "tool_result" if !assistant => {
                let result: ToolResultBlock = decode_value(&block_path, block)?;
                let content = match &result.content {
                    None => String::new(),
                    Some(content) => text_of(&format!("{block_path}.content"), content, issues)?,
                };
                tool_messages.push(json!({
                    "role": "tool",
                    "tool_call_id": result.tool_use_id,
                    "content": content,
                }));
            }
            kind @ ("tool_use" | "tool_result") => {
                return Err(invalid(
                    format!("{block_path}.type"),
                    format!("{kind} blocks are not allowed in {} messages", message.role),
                ))
            }
            other => issues.push(format!("{block_path}.type={other}")),
        }
    }
    out.extend(tool_messages);
    if assistant {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect();
        let mut assistant_message = json!({
            "role": "assistant",
            "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text.concat()) },
        });
        if !tool_calls.is_empty() {
            assistant_message["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(assistant_message);
    } else if !parts.is_empty() {
        let content = match parts.as_slice() {
            [only] if only["type"] == "text" => only["text"].clone(),
            _ => Value::Array(parts),
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Vec<ChatChoice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct ChatChoice {
    #[serde(default)]
    message: Option<ChatMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ChatToolCall>,
}

#[derive(Deserialize)]
struct ChatToolCall {
    #[serde(default)]
    id: Option<String>,
    function: ChatFunction,
}

#[derive(Deserialize)]
struct ChatFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

/// The Anthropic `stop_reason` of an OpenAI `finish_reason`.
pub(super) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        _ => "end_turn",
    }
}

pub(super) fn message_id(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => format!("msg_{}", uuid::Uuid::now_v7().simple()),
    }
}

pub(super) fn tool_id(id: Option<&str>) -> String {
    match id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("toolu_{}", uuid::Uuid::now_v7().simple()),
    }
}

/// Converts a non-streamed OpenAI chat completion into an Anthropic message
/// named `model`. An upstream answer without `usage` reports zero tokens.
pub fn openai_response_to_anthropic(
    body: &[u8],
    model: &str,
) -> Result<(Vec<u8>, TokenUsage), TranslateError> {
    let response: ChatResponse = serde_json::from_slice(body).map_err(|error| {
        TranslateError::BadUpstream(format!("not an OpenAI chat completion: {error}"))
    })?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(TranslateError::BadUpstream(
            "the chat completion has no choices".to_owned(),
        ));
    };
    let message = choice.message.unwrap_or(ChatMessage {
        content: None,
        tool_calls: Vec::new(),
    });
    let mut content = Vec::new();
    if let Some(text) = message.content.filter(|text| !text.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message.tool_calls {
        let input: Value = if call.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.function.arguments).map_err(|_| {
                TranslateError::BadUpstream(format!(
                    "tool call `{}` has arguments that are not JSON",
                    call.function.name
                ))
            })?
        };
        content.push(json!({
            "type": "tool_use",
            "id": tool_id(call.id.as_deref()),
            "name": call.function.name,
            "input": input,
        }));
    }
    let usage = response.usage.unwrap_or_default();
    let answer = json!({
        "id": message_id(response.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.finish_reason.as_deref()),
        "stop_sequence": null,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    });
    Ok((to_vec(&answer)?, usage))
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;

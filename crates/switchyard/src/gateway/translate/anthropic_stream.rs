//! Anthropic Messages streams translated into OpenAI chat completion chunks.

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};

use super::anthropic::{finish_reason, Usage};
use super::errors::openai_type_of_anthropic;
use super::wire::{now_seconds, openai_error_event, openai_usage, push_data, push_done};
use super::{StreamTranslator, TokenUsage};

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
                        "usage": openai_usage(usage),
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
        let event = match serde_json::from_slice::<StreamEvent>(data) {
            Ok(event) => event,
            Err(error) => {
                let message = if name == Some("error") {
                    String::from_utf8_lossy(data).into_owned()
                } else {
                    format!("unreadable upstream stream event: {error}")
                };
                push_data(out, &openai_error_event(&message, "server_error", None));
                self.error = Some(message);
                self.done = true;
                return;
            }
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
                let kind = openai_type_of_anthropic(&code);
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

//! OpenAI chat completion streams translated into Anthropic Messages events.

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::errors::anthropic_type_of_openai;
use super::openai::{message_id, stop_reason, tool_id};
use super::wire::push_event;
use super::{StreamTranslator, TokenUsage};

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The content block being streamed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u64),
    /// Anthropic block index and OpenAI tool call index.
    Tool(u64, u64),
}

/// OpenAI stream → Anthropic events.
struct OpenAiToAnthropic {
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u64,
    /// OpenAI tool call index → Anthropic block index.
    tools: Vec<(u64, u64)>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    closed: bool,
    completed: bool,
    error: Option<String>,
    output_bytes: usize,
}

/// Translates an OpenAI chat completion stream into Anthropic Messages events
/// named `model`, in the official order.
pub fn openai_stream_to_anthropic(model: &str) -> Box<dyn StreamTranslator> {
    Box::new(OpenAiToAnthropic {
        model: model.to_owned(),
        started: false,
        open: None,
        next_block: 0,
        tools: Vec::new(),
        finish_reason: None,
        usage: None,
        closed: false,
        completed: false,
        error: None,
        output_bytes: 0,
    })
}

impl OpenAiToAnthropic {
    fn start(&mut self, id: Option<&str>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        push_event(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": message_id(id),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        );
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some(Open::Text(index) | Open::Tool(index, _)) = self.open.take() {
            push_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open_block(&mut self, open: Open, block: Value, out: &mut BytesMut) {
        self.close_block(out);
        let (Open::Text(index) | Open::Tool(index, _)) = open;
        push_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some(open);
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                let index = self.next_block;
                self.next_block += 1;
                self.open_block(Open::Text(index), json!({"type": "text", "text": ""}), out);
                index
            }
        };
        self.output_bytes += text.len();
        push_event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn tool_call(&mut self, call: ToolCallDelta, out: &mut BytesMut) {
        let (name, arguments) = match call.function {
            Some(function) => (function.name, function.arguments),
            None => (None, None),
        };
        let known = self
            .tools
            .iter()
            .find(|(tool, _)| *tool == call.index)
            .map(|&(_, block)| block);
        let block = match known {
            Some(block) => block,
            None => {
                let block = self.next_block;
                self.next_block += 1;
                self.tools.push((call.index, block));
                let content_block = json!({
                    "type": "tool_use",
                    "id": tool_id(call.id.as_deref()),
                    "name": name.unwrap_or_default(),
                    "input": {},
                });
                self.open_block(Open::Tool(block, call.index), content_block, out);
                block
            }
        };
        if let Some(arguments) = arguments.filter(|arguments| !arguments.is_empty()) {
            self.output_bytes += arguments.len();
            push_event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            );
        }
    }

    fn close(&mut self, out: &mut BytesMut) {
        self.start(None, out);
        self.close_block(out);
        let mut usage = Map::new();
        if let Some(known) = self.usage {
            usage.insert("input_tokens".into(), json!(known.prompt_tokens));
        }
        usage.insert(
            "output_tokens".into(),
            json!(self.usage.map_or(0, |known| known.completion_tokens)),
        );
        push_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null},
                "usage": usage,
            }),
        );
        push_event(out, "message_stop", &json!({"type": "message_stop"}));
        self.closed = true;
    }

    fn fail(&mut self, message: String, kind: &str, out: &mut BytesMut) {
        push_event(
            out,
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        );
        self.error = Some(message);
        self.closed = true;
    }
}

impl StreamTranslator for OpenAiToAnthropic {
    fn event(&mut self, _name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        if self.closed {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.completed = true;
            self.close(out);
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(error) => {
                let message = format!("unreadable upstream stream event: {error}");
                self.fail(message, "api_error", out);
                return;
            }
        };
        if let Some(error) = chunk.error {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            let code = error["type"]
                .as_str()
                .or_else(|| error["code"].as_str())
                .unwrap_or("api_error");
            self.fail(message, anthropic_type_of_openai(code), out);
            return;
        }
        self.start(chunk.id.as_deref(), out);
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    self.text(&text, out);
                }
                for call in delta.tool_calls {
                    self.tool_call(call, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
                self.completed = true;
            }
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            if self.finish_reason.is_some() {
                self.close(out);
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if !self.closed {
            self.close(out);
        }
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage
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

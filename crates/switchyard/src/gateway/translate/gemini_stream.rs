//! Gemini `streamGenerateContent?alt=sse` streams translated into OpenAI chat
//! completion chunks.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use super::errors::openai_type_of_status;
use super::gemini::{candidate_parts, chat_id, finish_reason, GenerateResponse};
use super::wire::{now_seconds, openai_error_event, openai_usage, push_data, push_done};
use super::{StreamTranslator, TokenUsage};

/// Gemini stream → OpenAI chunks.
struct GeminiToOpenAi {
    model: String,
    include_usage: bool,
    id: Option<String>,
    created: i64,
    usage: Option<TokenUsage>,
    /// Per candidate index: whether the role was sent, tool calls so far.
    candidates: HashMap<u64, (bool, usize)>,
    done: bool,
    completed: bool,
    error: Option<String>,
    output_bytes: usize,
}

/// Translates a Gemini `streamGenerateContent?alt=sse` stream into OpenAI chat
/// completion chunks named `model`; [`StreamTranslator::finish`] writes the
/// usage chunk (with `include_usage`) and `[DONE]`.
pub fn gemini_stream_to_openai(model: &str, include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(GeminiToOpenAi {
        model: model.to_owned(),
        include_usage,
        id: None,
        created: now_seconds(),
        usage: None,
        candidates: HashMap::new(),
        done: false,
        completed: false,
        error: None,
        output_bytes: 0,
    })
}

impl GeminiToOpenAi {
    fn chunk(&self, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn fail(&mut self, message: String, kind: &str, code: Option<&str>, out: &mut BytesMut) {
        push_data(out, &openai_error_event(&message, kind, code));
        self.error = Some(message);
        self.done = true;
    }
}

impl StreamTranslator for GeminiToOpenAi {
    fn event(&mut self, _name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        let response: GenerateResponse = match serde_json::from_slice(data) {
            Ok(response) => response,
            Err(error) => {
                let message = format!("unreadable Gemini stream event: {error}");
                self.fail(message, "server_error", None, out);
                return;
            }
        };
        if let Some(error) = response.error {
            let kind = openai_type_of_status(error.code.unwrap_or(500));
            let message = error
                .message
                .unwrap_or_else(|| "Gemini stream failed".to_owned());
            self.fail(message, kind, error.status.as_deref(), out);
            return;
        }
        if self.id.is_none() {
            self.id = Some(chat_id(response.response_id.as_deref()));
        }
        if let Some(metadata) = response.usage_metadata {
            self.usage = Some(metadata.usage());
        }
        for (position, candidate) in response.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(position as u64);
            let (role_sent, calls_so_far) =
                self.candidates.get(&index).copied().unwrap_or_default();
            let (text, calls) = candidate_parts(candidate, calls_so_far);
            self.output_bytes += text.len();
            for call in &calls {
                self.output_bytes += call["function"]["arguments"].as_str().map_or(0, str::len);
            }
            let mut delta = Map::new();
            if !role_sent {
                delta.insert("role".into(), json!("assistant"));
            }
            if !text.is_empty() || (!role_sent && calls.is_empty()) {
                delta.insert("content".into(), Value::String(text));
            }
            let called = calls_so_far + calls.len() > 0;
            if !calls.is_empty() {
                delta.insert("tool_calls".into(), Value::Array(calls.clone()));
            }
            let reason = candidate.finish_reason.as_deref().map(|reason| {
                self.completed = true;
                finish_reason(reason, called)
            });
            self.candidates
                .insert(index, (true, calls_so_far + calls.len()));
            if delta.is_empty() && reason.is_none() {
                continue;
            }
            let chunk = self.chunk(json!([{
                "index": index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": reason,
            }]));
            push_data(out, &chunk);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if self.id.is_none() {
            self.id = Some(chat_id(None));
        }
        if self.include_usage {
            if let Some(usage) = self.usage() {
                let mut chunk = self.chunk(json!([]));
                chunk["usage"] = openai_usage(usage);
                push_data(out, &chunk);
            }
        }
        push_done(out);
        self.done = true;
    }

    /// Gemini repeats `usageMetadata` on every fragment; the counts are final
    /// once a `finishReason` arrived.
    fn usage(&self) -> Option<TokenUsage> {
        self.usage.filter(|_| self.completed)
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

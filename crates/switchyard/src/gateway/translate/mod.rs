//! Protocol translation between the OpenAI Chat Completions API, the Anthropic
//! Messages API and the Google Gemini `generateContent` API.
//!
//! Pure functions and small state machines: no IO, no hyper. The gateway hands
//! in request bodies, response bodies and upstream SSE events; this module hands
//! back the bytes to send on, plus the facts the gateway meters with
//! ([`Translated`], [`TokenUsage`]).
//!
//! Every request conversion either expresses the client's whole request in the
//! target protocol or fails with [`TranslateError::Unsupported`], listing *all*
//! the parameters the target cannot express, in the order they appear in the
//! body (message-level paths such as `messages[2].content[0].type=input_audio`
//! sit where `messages` sits). Parameters set to their neutral value
//! (`n: 1`, `logprobs: false`, `presence_penalty: 0`, `logit_bias: {}`,
//! `response_format: {"type":"text"}`, `modalities: ["text"]`,
//! `parallel_tool_calls: true`, `null`) change nothing and are accepted.
//!
//! # OpenAI client → Anthropic upstream ([`openai_chat_to_anthropic`])
//!
//! - `system` and `developer` messages become the top-level `system`, joined by
//!   `"\n\n"`.
//! - `user`/`assistant` content stays a string, or becomes blocks: text parts →
//!   `text` blocks; `image_url` with a `data:` URL → `image` block with a
//!   `base64` source, an `http(s)` URL → `image` block with a `url` source.
//! - Assistant `tool_calls` → `tool_use` blocks (`input` = the parsed
//!   `arguments`, `{}` when empty); `tool` messages → a user message of
//!   `tool_result` blocks, consecutive tool results merged into one message.
//! - `max_completion_tokens` (or `max_tokens`) → `max_tokens`; **when absent the
//!   gateway sends `max_tokens: 4096`**, because Anthropic requires the field.
//! - `stop` (string or array) → `stop_sequences`; `temperature`, `top_p` as is.
//! - `tools` (type `function`) → `{name, description, input_schema}`;
//!   `tool_choice` `auto`/`none`/`required`/`{function:{name}}` →
//!   `{type:auto}`/`{type:none}`/`{type:any}`/`{type:tool,name}`;
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use: true`.
//! - `stream` as is; `stream_options` is consumed (`include_usage` is
//!   remembered in [`Translated::client_wants_stream_usage`]); `user` →
//!   `metadata.user_id`.
//! - Ignored: `store`, `metadata`, `service_tier`, message `name`.
//! - Unsupported: `n` > 1, `logprobs`, `top_logprobs`, `presence_penalty`,
//!   `frequency_penalty`, `logit_bias`, `seed`, `response_format` other than
//!   text, `audio`, `modalities`, `prediction`, `function` messages, content
//!   parts other than text and images, any unknown top-level field.
//!
//! Responses ([`anthropic_response_to_openai`]): text blocks joined →
//! `message.content`; `tool_use` → `tool_calls`; `stop_reason` `end_turn` and
//! `stop_sequence` → `stop`, `max_tokens` → `length`, `tool_use` →
//! `tool_calls`, `refusal` → `content_filter`; `prompt_tokens` = input plus
//! cache creation plus cache read tokens. The id is `chatcmpl-` + the message
//! id. Streams ([`anthropic_stream_to_openai`]): `message_start` → a role
//! chunk, `text_delta` → content, `tool_use` starts and `input_json_delta` →
//! `tool_calls` deltas, `message_delta` → the `finish_reason` chunk,
//! `message_stop` → the usage chunk (when asked for) and `data: [DONE]`;
//! `ping` is ignored; an `error` event becomes `data: {"error":{...}}` and
//! ends the stream.
//!
//! # OpenAI client → Gemini upstream ([`openai_chat_to_gemini`])
//!
//! - `system`/`developer` → `systemInstruction.parts[].text`; `user` → role
//!   `user`, `assistant` → role `model`; text parts → `text`, `data:` images →
//!   `inlineData`; `tool_calls` → `functionCall {name, args}`; `tool` messages
//!   → `functionResponse {name, response: {content}}` in a `user` turn, the
//!   name taken from the earlier tool call with the same id.
//! - `generationConfig`: `maxOutputTokens`, `temperature`, `topP`,
//!   `stopSequences`, `candidateCount` (from `n`), `seed`, `presencePenalty`,
//!   `frequencyPenalty`, and for `response_format` `json_object` /
//!   `json_schema` → `responseMimeType: application/json` (+ `responseSchema`).
//! - `tools` → one `functionDeclarations` tool; `tool_choice` →
//!   `toolConfig.functionCallingConfig.mode` `AUTO`/`NONE`/`ANY`
//!   (+ `allowedFunctionNames`). The model goes in the URL, not the body.
//! - Ignored: `store`, `metadata`, `service_tier`, `user`, `stream_options`.
//! - Unsupported: `logprobs`, `top_logprobs`, `logit_bias`, `audio`,
//!   `modalities`, `prediction`, `parallel_tool_calls: false`, `http(s)` image
//!   URLs (Gemini reads only inline data), unknown fields.
//!
//! Responses ([`gemini_response_to_openai`]): `candidates[i]` → `choices[i]`,
//! text parts joined (thought parts dropped), `functionCall` parts →
//! `tool_calls` with ids `call_<n>`; `finishReason` `STOP` → `stop` (or
//! `tool_calls` when the candidate called functions), `MAX_TOKENS` → `length`,
//! `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
//! `IMAGE_SAFETY` → `content_filter`; `completion_tokens` = candidates plus
//! thoughts tokens. Streams ([`gemini_stream_to_openai`]): every fragment
//! becomes chunks; the latest `usageMetadata` wins; Gemini sends no `[DONE]`,
//! so [`StreamTranslator::finish`] writes the usage chunk and `data: [DONE]`.
//!
//! # Anthropic client → OpenAI upstream ([`anthropic_to_openai_chat`])
//!
//! - `model` (string) and `messages` (non-empty, roles `user`/`assistant`) are
//!   required, and so is `max_tokens` → `max_tokens`.
//! - `system` (string or text blocks) → the first `system` message; text blocks
//!   → text parts (a lone text block → a string); base64/url images →
//!   `image_url`; `tool_use` → assistant `tool_calls` (arguments = the input as
//!   a JSON string); `tool_result` → `tool` messages (`tool_call_id` =
//!   `tool_use_id`) placed before the rest of that user turn.
//! - `stop_sequences` → `stop`; `temperature`, `top_p`, `top_k` (vLLM accepts
//!   it) as is; `tools` → function tools; `tool_choice` `auto`/`any`/`tool`/`none`
//!   → `auto`/`required`/`{function}`/`none`, `disable_parallel_tool_use` →
//!   `parallel_tool_calls: false`; `metadata.user_id` → `user`; `stream` →
//!   `stream` + `stream_options.include_usage: true`.
//! - Ignored: `service_tier`, `cache_control` on blocks, `is_error` of tool
//!   results (OpenAI has no such flag).
//! - Unsupported: `thinking`, `container`, `mcp_servers`, server tools,
//!   `document`, `thinking` and other block types, images inside tool results,
//!   unknown fields.
//!
//! Responses ([`openai_response_to_anthropic`]): a `message` with a text block
//! (when the content is non-empty) and `tool_use` blocks; `finish_reason`
//! `stop` and `content_filter` → `end_turn`, `length` → `max_tokens`,
//! `tool_calls` → `tool_use`. An upstream answer without `usage` reports zero
//! tokens. Streams ([`openai_stream_to_anthropic`]) follow the official event
//! order `message_start`, (`content_block_start`, `content_block_delta`*,
//! `content_block_stop`)*, `message_delta`, `message_stop`; `message_delta`
//! waits for the usage chunk that follows the `finish_reason` chunk, or for
//! `[DONE]`, or the end of the body.
//!
//! # Errors
//!
//! [`error_to_openai`] and [`error_to_anthropic`] read any upstream error body
//! (OpenAI, Anthropic, Google, `{"detail"}`/`{"message"}` or plain text) and
//! re-shape it for the client protocol, keeping the upstream message.

mod anthropic;
mod anthropic_stream;
mod chat;
mod errors;
mod gemini;
mod gemini_stream;
mod openai;
mod openai_stream;
#[cfg(test)]
mod test_support;
mod wire;

use bytes::BytesMut;

pub use crate::gateway::metering::TokenUsage;
pub use anthropic::{anthropic_response_to_openai, openai_chat_to_anthropic, DEFAULT_MAX_TOKENS};
pub use anthropic_stream::anthropic_stream_to_openai;
pub use errors::{error_to_anthropic, error_to_openai};
pub use gemini::{gemini_response_to_openai, openai_chat_to_gemini};
pub use gemini_stream::gemini_stream_to_openai;
pub use openai::{anthropic_to_openai_chat, openai_response_to_anthropic};
pub use openai_stream::openai_stream_to_anthropic;

/// Why a request or response could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Parameters the target protocol cannot express: the caller answers 400
    /// `unsupported_parameter`. Names are JSON paths such as `n`, `logprobs`,
    /// `messages[2].content[0].type=input_audio`, in body order.
    #[error("unsupported parameter(s) for {target} upstream: {}", params.join(", "))]
    Unsupported {
        /// The upstream protocol (`anthropic`, `gemini`, `openai`).
        target: &'static str,
        /// Every parameter the target cannot express.
        params: Vec<String>,
    },
    /// Invalid request body: 400 naming the field.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// JSON path of the offending field (`body` for the whole body).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The upstream answer could not be read (502).
    #[error("the upstream answer could not be read: {0}")]
    BadUpstream(String),
}

/// An upstream request body produced from a client request, plus the facts the
/// gateway needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The upstream JSON body.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for usage in the stream (OpenAI clients:
    /// `stream_options.include_usage`; Anthropic streams always carry usage, so
    /// this is `stream` for Anthropic clients).
    pub client_wants_stream_usage: bool,
    /// Bytes of the prompt-bearing fields, for estimating prompt tokens.
    pub prompt_bytes: usize,
}

/// Translates one upstream SSE stream into the client protocol, event by event.
///
/// The gateway splits the upstream body into events and calls
/// [`event`](Self::event) per event (name = the `event:` field if any, data =
/// the `data:` payload, joined if multi-line); whatever is appended to `out` is
/// written to the client immediately.
pub trait StreamTranslator: Send {
    /// Handles one upstream event.
    fn event(&mut self, name: Option<&str>, data: &[u8], out: &mut BytesMut);
    /// The upstream body ended (cleanly): appends any closing events (OpenAI
    /// `data: [DONE]`, Anthropic `message_delta` + `message_stop`) not yet sent.
    fn finish(&mut self, out: &mut BytesMut);
    /// Exact usage from the upstream, once known.
    fn usage(&self) -> Option<TokenUsage>;
    /// Bytes of generated text (and tool arguments) so far, for estimates.
    fn output_bytes(&self) -> usize;
    /// Whether the upstream signalled a normal end (`message_stop`,
    /// a `finishReason`, `finish_reason` or `[DONE]`).
    fn completed(&self) -> bool;
    /// The message of the upstream's error event, if it sent one.
    fn error(&self) -> Option<&str>;
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn error_messages_read_as_the_gateway_answers_them() {
        let unsupported = TranslateError::Unsupported {
            target: "anthropic",
            params: vec!["n".to_owned(), "logprobs".to_owned()],
        };
        assert_eq!(
            unsupported.to_string(),
            "unsupported parameter(s) for anthropic upstream: n, logprobs"
        );
        let invalid = TranslateError::Invalid {
            field: "messages[0].role".to_owned(),
            message: "must be user or assistant".to_owned(),
        };
        assert_eq!(
            invalid.to_string(),
            "invalid `messages[0].role`: must be user or assistant"
        );
    }

    /// An Anthropic tool call shown to an OpenAI client comes back in the
    /// client's next request and reaches Anthropic unchanged.
    #[test]
    fn anthropic_tool_use_round_trips_through_an_openai_client() {
        let upstream = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": "rust", "n": 2}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4},
        });
        let (client_body, _) =
            anthropic_response_to_openai(upstream.to_string().as_bytes(), "e").expect("ok");
        let client: Value = serde_json::from_slice(&client_body).expect("json");
        let assistant = client["choices"][0]["message"].clone();
        let next = json!({"model": "e", "messages": [
            {"role": "user", "content": "search"},
            assistant,
            {"role": "tool", "tool_call_id": "toolu_9", "content": "found"},
        ]});
        let translated =
            openai_chat_to_anthropic(next.to_string().as_bytes(), "claude").expect("ok");
        let body: Value = serde_json::from_slice(&translated.body).expect("json");
        assert_eq!(
            body["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": "rust", "n": 2}}])
        );
        assert_eq!(
            body["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "toolu_9", "content": "found"}])
        );
    }

    /// An OpenAI tool call shown to an Anthropic client comes back as a
    /// `tool_result` and reaches the OpenAI upstream as a `tool` message.
    #[test]
    fn openai_tool_call_round_trips_through_an_anthropic_client() {
        let upstream = json!({"id": "chatcmpl-7", "choices": [{"message": {"content": null, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"rust\"}"}},
        ]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}});
        let (client_body, _) =
            openai_response_to_anthropic(upstream.to_string().as_bytes(), "e").expect("ok");
        let client: Value = serde_json::from_slice(&client_body).expect("json");
        let next = json!({"model": "e", "max_tokens": 50, "messages": [
            {"role": "user", "content": "search"},
            {"role": "assistant", "content": client["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_3", "content": "found"}]},
        ]});
        let translated =
            anthropic_to_openai_chat(next.to_string().as_bytes(), "llama").expect("ok");
        let body: Value = serde_json::from_slice(&translated.body).expect("json");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "search"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_3", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"rust\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_3", "content": "found"},
            ])
        );
    }
}

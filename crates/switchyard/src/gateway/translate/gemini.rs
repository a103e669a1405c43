//! OpenAI clients in front of a Gemini `generateContent` upstream: requests,
//! responses and streams.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::chat::{ChatRequest, Content, Part, Role, ToolChoice};
use super::wire::{invalid, now_seconds, openai_usage, parse_data_url, to_vec};
use super::{TokenUsage, TranslateError, Translated};

const TARGET: &str = "gemini";

/// Fields a Gemini upstream cannot express (when set to a non-neutral value).
const BLOCKED: &[&str] = &[
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "parallel_tool_calls",
];

/// Converts an OpenAI chat request into a Gemini `generateContent` body (the
/// model goes in the URL).
pub fn openai_chat_to_gemini(body: &[u8]) -> Result<Translated, TranslateError> {
    let request = ChatRequest::parse(body)?;
    let mut issues = Vec::new();
    let mut system_parts = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut last_was_tool = false;
    for (index, message) in request.messages.iter().enumerate() {
        let path = format!("messages[{index}]");
        let is_tool = message.role == Role::Tool;
        match message.role {
            Role::System => {
                if let Some(content) = &message.content {
                    let (text, others) = content.text("\n\n");
                    note_others(&mut issues, &path, &others);
                    system_parts.push(json!({"text": text}));
                }
            }
            Role::Function => issues.push(format!("{path}.role=function")),
            Role::User | Role::Assistant => {
                let mut parts = match &message.content {
                    None => Vec::new(),
                    Some(content) => parts(&mut issues, &path, content),
                };
                for (call_index, call) in message.tool_calls.iter().enumerate() {
                    let args = call.function.parsed_arguments(&format!(
                        "{path}.tool_calls[{call_index}].function.arguments"
                    ))?;
                    call_names.insert(&call.id, &call.function.name);
                    parts.push(json!({"functionCall": {"name": call.function.name, "args": args}}));
                }
                if parts.is_empty() {
                    parts.push(json!({"text": ""}));
                }
                let role = if message.role == Role::User {
                    "user"
                } else {
                    "model"
                };
                contents.push(json!({"role": role, "parts": parts}));
            }
            Role::Tool => {
                let id = message.tool_call_id.as_deref().unwrap_or_default();
                let Some(name) = call_names.get(id) else {
                    return Err(invalid(
                        format!("{path}.tool_call_id"),
                        "does not match a tool call of an earlier assistant message",
                    ));
                };
                let (text, others) = message
                    .content
                    .as_ref()
                    .map(|content| content.text(""))
                    .unwrap_or_default();
                note_others(&mut issues, &path, &others);
                let part =
                    json!({"functionResponse": {"name": name, "response": {"content": text}}});
                match contents.last_mut() {
                    Some(last) if last_was_tool => {
                        if let Some(parts) = last["parts"].as_array_mut() {
                            parts.push(part);
                        }
                    }
                    _ => contents.push(json!({"role": "user", "parts": [part]})),
                }
            }
        }
        last_was_tool = is_tool;
    }

    let mut declarations = Vec::new();
    let mut tool_issues = Vec::new();
    for (index, tool) in request.tools.iter().enumerate() {
        match (tool.kind.as_str(), &tool.function) {
            ("function", Some(function)) => {
                let mut declaration = Map::new();
                declaration.insert("name".into(), Value::String(function.name.clone()));
                if let Some(description) = &function.description {
                    declaration.insert("description".into(), Value::String(description.clone()));
                }
                if let Some(parameters) = &function.parameters {
                    declaration.insert("parameters".into(), parameters.clone());
                }
                declarations.push(Value::Object(declaration));
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

    let mut config = Map::new();
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.to_owned(), value);
        }
    };
    set("maxOutputTokens", request.max_tokens.map(Value::from));
    set("temperature", request.temperature.map(Value::from));
    set("topP", request.top_p.map(Value::from));
    set(
        "stopSequences",
        (!request.stop.is_empty()).then(|| json!(request.stop)),
    );
    set("candidateCount", request.n.map(Value::from));
    set("seed", request.seed.map(Value::from));
    set("presencePenalty", request.presence_penalty.map(Value::from));
    set(
        "frequencyPenalty",
        request.frequency_penalty.map(Value::from),
    );
    if let Some(format) = &request.response_format {
        match format.kind.as_str() {
            "json_object" => set("responseMimeType", Some(json!("application/json"))),
            "json_schema" => {
                set("responseMimeType", Some(json!("application/json")));
                set(
                    "responseSchema",
                    format
                        .json_schema
                        .as_ref()
                        .and_then(|schema| schema.schema.clone()),
                );
            }
            "text" => {}
            other => {
                return Err(TranslateError::Unsupported {
                    target: TARGET,
                    params: vec![format!("response_format.type={other}")],
                })
            }
        }
    }

    let mut upstream = Map::new();
    upstream.insert("contents".into(), Value::Array(contents));
    if !system_parts.is_empty() {
        upstream.insert("systemInstruction".into(), json!({"parts": system_parts}));
    }
    if !config.is_empty() {
        upstream.insert("generationConfig".into(), Value::Object(config));
    }
    if !declarations.is_empty() {
        upstream.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    if let Some(choice) = &request.tool_choice {
        let calling = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        upstream.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": calling}),
        );
    }
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

fn parts(issues: &mut Vec<String>, path: &str, content: &Content) -> Vec<Value> {
    match content {
        Content::Text(text) if text.is_empty() => Vec::new(),
        Content::Text(text) => vec![json!({"text": text})],
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .filter_map(|(index, part)| match part {
                Part::Text(text) => Some(json!({"text": text})),
                Part::Image(url) => match parse_data_url(url) {
                    Some((mime, data)) => {
                        Some(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    }
                    None => {
                        issues.push(format!("{path}.content[{index}].image_url.url"));
                        None
                    }
                },
                Part::Other(kind) => {
                    issues.push(format!("{path}.content[{index}].type={kind}"));
                    None
                }
            })
            .collect(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateResponse {
    #[serde(default)]
    pub(super) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(super) response_id: Option<String>,
    #[serde(default)]
    pub(super) error: Option<GoogleError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) index: Option<u64>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

impl UsageMetadata {
    pub(super) fn usage(self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_token_count,
            completion_tokens: self.candidates_token_count + self.thoughts_token_count,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct GoogleError {
    #[serde(default)]
    pub(super) code: Option<u16>,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
}

/// The OpenAI `finish_reason` of a Gemini `finishReason`.
pub(super) fn finish_reason(reason: &str, called_functions: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_functions => "tool_calls",
        _ => "stop",
    }
}

/// Text and tool calls of one candidate; tool call ids are `call_<n>`,
/// numbered from `first_call`.
pub(super) fn candidate_parts(candidate: &Candidate, first_call: usize) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate.content.iter().flat_map(|content| &content.parts) {
        if let Some(part_text) = &part.text {
            if part.thought != Some(true) {
                text.push_str(part_text);
            }
        }
        if let Some(call) = &part.function_call {
            let index = first_call + calls.len();
            let arguments = call
                .args
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Value::to_string);
            calls.push(json!({
                "index": index,
                "id": format!("call_{index}"),
                "type": "function",
                "function": {"name": call.name, "arguments": arguments},
            }));
        }
    }
    (text, calls)
}

pub(super) fn chat_id(response_id: Option<&str>) -> String {
    match response_id {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
    }
}

/// Converts a non-streamed Gemini response into an OpenAI chat completion
/// named `model`.
pub fn gemini_response_to_openai(
    body: &[u8],
    model: &str,
) -> Result<(Vec<u8>, TokenUsage), TranslateError> {
    let response: GenerateResponse = serde_json::from_slice(body).map_err(|error| {
        TranslateError::BadUpstream(format!("not a Gemini GenerateContentResponse: {error}"))
    })?;
    if let Some(error) = response.error {
        return Err(TranslateError::BadUpstream(
            error
                .message
                .unwrap_or_else(|| "Gemini returned an error".to_owned()),
        ));
    }
    let mut choices = Vec::new();
    for (position, candidate) in response.candidates.iter().enumerate() {
        let (text, calls) = candidate_parts(candidate, 0);
        let calls: Vec<Value> = calls
            .into_iter()
            .map(|mut call| {
                if let Some(object) = call.as_object_mut() {
                    object.remove("index");
                }
                call
            })
            .collect();
        let reason = finish_reason(
            candidate.finish_reason.as_deref().unwrap_or("STOP"),
            !calls.is_empty(),
        );
        let mut message = json!({
            "role": "assistant",
            "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        });
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        choices.push(json!({
            "index": candidate.index.unwrap_or(position as u64),
            "message": message,
            "logprobs": null,
            "finish_reason": reason,
        }));
    }
    if choices.is_empty() {
        let blocked = response
            .prompt_feedback
            .as_ref()
            .and_then(|feedback| feedback.block_reason.as_ref())
            .is_some();
        if !blocked {
            return Err(TranslateError::BadUpstream(
                "Gemini answered without candidates".to_owned(),
            ));
        }
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null},
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let usage = response
        .usage_metadata
        .map(UsageMetadata::usage)
        .unwrap_or_default();
    let completion = json!({
        "id": chat_id(response.response_id.as_deref()),
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": choices,
        "usage": openai_usage(usage),
    });
    Ok((to_vec(&completion)?, usage))
}

#[cfg(test)]
#[path = "gemini_tests.rs"]
mod tests;

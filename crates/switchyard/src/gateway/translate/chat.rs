//! The OpenAI Chat Completions request, parsed once into typed parts that the
//! Anthropic and Gemini conversions read.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::wire::{decode, decode_value, fields, invalid, is_null};
use super::TranslateError;

/// Top-level fields whose meaning the conversions know.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "user",
    "audio",
    "modalities",
    "prediction",
    "store",
    "metadata",
    "service_tier",
];

/// A parsed OpenAI chat request.
#[derive(Debug, Default)]
pub(super) struct ChatRequest {
    /// Top-level field names in body order (`null` fields left out).
    pub order: Vec<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub n: Option<u64>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u64>,
    pub logit_bias: Option<Map<String, Value>>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Vec<ChatTool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
    /// `audio` or `prediction` carry a value.
    pub audio: bool,
    pub prediction: bool,
    pub modalities: Vec<String>,
    pub prompt_bytes: usize,
}

/// One message; `content` already split into parts.
#[derive(Debug)]
pub(super) struct ChatMessage {
    pub role: Role,
    pub content: Option<Content>,
    pub tool_calls: Vec<ChatToolCall>,
    pub tool_call_id: Option<String>,
}

/// Message roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    System,
    User,
    Assistant,
    Tool,
    Function,
}

/// Message content.
#[derive(Debug)]
pub(super) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug)]
pub(super) enum Part {
    Text(String),
    Image(String),
    /// A part type neither target knows (`input_audio`, `file`, `refusal`, ...).
    Other(String),
}

impl Content {
    /// The text parts joined by `sep`, and the index and type of every other part.
    pub(super) fn text(&self, sep: &str) -> (String, Vec<(usize, &str)>) {
        match self {
            Content::Text(text) => (text.clone(), Vec::new()),
            Content::Parts(parts) => {
                let mut texts = Vec::new();
                let mut others = Vec::new();
                for (index, part) in parts.iter().enumerate() {
                    match part {
                        Part::Text(text) => texts.push(text.as_str()),
                        Part::Image(_) => others.push((index, "image_url")),
                        Part::Other(kind) => others.push((index, kind.as_str())),
                    }
                }
                (texts.join(sep), others)
            }
        }
    }
}

/// An assistant tool call.
#[derive(Debug, Deserialize)]
pub(super) struct ChatToolCall {
    pub id: String,
    pub function: ChatFunctionCall,
}

/// The function of a tool call.
#[derive(Debug, Deserialize)]
pub(super) struct ChatFunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

impl ChatFunctionCall {
    /// The arguments as JSON (`{}` when empty).
    pub(super) fn parsed_arguments(&self, field: &str) -> Result<Value, TranslateError> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&self.arguments)
            .map_err(|_| invalid(field, "must be a JSON string holding a JSON value"))
    }
}

/// `response_format`.
#[derive(Debug, Deserialize)]
pub(super) struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub json_schema: Option<JsonSchema>,
}

/// `response_format.json_schema`.
#[derive(Debug, Deserialize)]
pub(super) struct JsonSchema {
    #[serde(default)]
    pub schema: Option<Value>,
}

/// A tool definition.
#[derive(Debug, Deserialize)]
pub(super) struct ChatTool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub function: Option<FunctionDefinition>,
}

/// A function tool's definition.
#[derive(Debug, Deserialize)]
pub(super) struct FunctionDefinition {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ChatToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct RawPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<RawImageUrl>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawImageUrl {
    Url(String),
    Object { url: String },
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct NamedFunction {
    function: FunctionName,
}

#[derive(Deserialize)]
struct FunctionName {
    name: String,
}

impl ChatRequest {
    /// Parses and validates an OpenAI chat request body.
    pub(super) fn parse(body: &[u8]) -> Result<Self, TranslateError> {
        let mut request = ChatRequest::default();
        let mut saw_messages = false;
        let mut max_completion_tokens = None;
        for (name, raw) in fields(body)? {
            if is_null(raw) {
                continue;
            }
            let field = name.as_str();
            match field {
                "model" => {
                    decode::<String>(field, raw)?;
                }
                "messages" => {
                    saw_messages = true;
                    request.prompt_bytes += raw.get().len();
                    let raw_messages: Vec<RawMessage> = decode(field, raw)?;
                    request.messages = raw_messages
                        .into_iter()
                        .enumerate()
                        .map(|(index, message)| convert_message(index, message))
                        .collect::<Result<_, _>>()?;
                }
                "max_tokens" => request.max_tokens = Some(positive(field, raw)?),
                "max_completion_tokens" => max_completion_tokens = Some(positive(field, raw)?),
                "stop" => {
                    request.stop = match decode_value::<RawStop>(field, parse_value(raw)?)
                        .map_err(|_| invalid(field, "must be a string or an array of strings"))?
                    {
                        RawStop::One(stop) => vec![stop],
                        RawStop::Many(stops) => stops,
                    }
                }
                "temperature" => request.temperature = Some(range(field, raw, 0.0, 2.0)?),
                "top_p" => request.top_p = Some(range(field, raw, 0.0, 1.0)?),
                "n" => request.n = Some(positive(field, raw)?),
                "seed" => request.seed = Some(decode(field, raw)?),
                "presence_penalty" => {
                    request.presence_penalty = Some(range(field, raw, -2.0, 2.0)?)
                }
                "frequency_penalty" => {
                    request.frequency_penalty = Some(range(field, raw, -2.0, 2.0)?)
                }
                "logprobs" => request.logprobs = Some(decode(field, raw)?),
                "top_logprobs" => request.top_logprobs = Some(decode(field, raw)?),
                "logit_bias" => request.logit_bias = Some(decode(field, raw)?),
                "response_format" => request.response_format = Some(decode(field, raw)?),
                "tools" => request.tools = decode(field, raw)?,
                "tool_choice" => request.tool_choice = Some(tool_choice(raw)?),
                "parallel_tool_calls" => request.parallel_tool_calls = Some(decode(field, raw)?),
                "stream" => request.stream = decode(field, raw)?,
                "stream_options" => {
                    let options: StreamOptions = decode(field, raw)?;
                    request.include_usage = options.include_usage.unwrap_or(false);
                }
                "user" => request.user = Some(decode(field, raw)?),
                "audio" => request.audio = true,
                "prediction" => request.prediction = true,
                "modalities" => request.modalities = decode(field, raw)?,
                _ => {}
            }
            request.order.push(name);
        }
        if !saw_messages {
            return Err(invalid("messages", "is required"));
        }
        if request.messages.is_empty() {
            return Err(invalid("messages", "must be a non-empty array"));
        }
        if max_completion_tokens.is_some() {
            request.max_tokens = max_completion_tokens;
        }
        Ok(request)
    }

    /// Whether top-level field `name` asks for something beyond the neutral
    /// default.
    fn asks_for(&self, name: &str) -> bool {
        match name {
            "n" => self.n.is_some_and(|n| n > 1),
            "logprobs" => self.logprobs == Some(true),
            "top_logprobs" => self.top_logprobs.is_some_and(|n| n > 0),
            "presence_penalty" => self.presence_penalty.is_some_and(|value| value != 0.0),
            "frequency_penalty" => self.frequency_penalty.is_some_and(|value| value != 0.0),
            "logit_bias" => self
                .logit_bias
                .as_ref()
                .is_some_and(|bias| !bias.is_empty()),
            "seed" => self.seed.is_some(),
            "response_format" => self
                .response_format
                .as_ref()
                .is_some_and(|format| format.kind != "text"),
            "audio" => self.audio,
            "prediction" => self.prediction,
            "modalities" => self.modalities.iter().any(|modality| modality != "text"),
            "parallel_tool_calls" => self.parallel_tool_calls == Some(false),
            _ => true,
        }
    }

    /// The unsupported parameters in body order: unknown top-level fields,
    /// fields of `blocked` that ask for something, and the nested issues of
    /// each field (`("messages", [...])`) where that field sits.
    pub(super) fn unsupported(
        &self,
        blocked: &[&str],
        mut nested: Vec<(&str, Vec<String>)>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for name in &self.order {
            if let Some((_, issues)) = nested.iter_mut().find(|(field, _)| field == name) {
                out.append(issues);
            } else if !KNOWN.contains(&name.as_str())
                || (blocked.contains(&name.as_str()) && self.asks_for(name))
            {
                out.push(name.clone());
            }
        }
        out
    }
}

fn parse_value(raw: &serde_json::value::RawValue) -> Result<Value, TranslateError> {
    serde_json::from_str(raw.get()).map_err(|error| invalid("body", error.to_string()))
}

fn positive(field: &str, raw: &serde_json::value::RawValue) -> Result<u64, TranslateError> {
    match serde_json::from_str::<u64>(raw.get()) {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(invalid(field, "must be a positive integer")),
    }
}

fn range(
    field: &str,
    raw: &serde_json::value::RawValue,
    low: f64,
    high: f64,
) -> Result<f64, TranslateError> {
    match serde_json::from_str::<f64>(raw.get()) {
        Ok(value) if (low..=high).contains(&value) => Ok(value),
        _ => Err(invalid(
            field,
            format!("must be a number between {low} and {high}"),
        )),
    }
}

fn tool_choice(raw: &serde_json::value::RawValue) -> Result<ToolChoice, TranslateError> {
    let field = "tool_choice";
    let value = parse_value(raw)?;
    match &value {
        Value::String(choice) => match choice.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(invalid(field, "must be auto, none, required or a function")),
        },
        Value::Object(_) => {
            let named: NamedFunction = decode_value(field, value)?;
            Ok(ToolChoice::Function(named.function.name))
        }
        _ => Err(invalid(field, "must be a string or an object")),
    }
}

fn convert_message(index: usize, raw: RawMessage) -> Result<ChatMessage, TranslateError> {
    let path = format!("messages[{index}]");
    let role = match raw.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => Role::Function,
        _ => {
            return Err(invalid(
                format!("{path}.role"),
                "must be system, developer, user, assistant or tool",
            ))
        }
    };
    let content = match raw.content {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(Content::Text(text)),
        Some(Value::Array(parts)) => Some(Content::Parts(
            parts
                .into_iter()
                .enumerate()
                .map(|(part_index, part)| {
                    convert_part(&format!("{path}.content[{part_index}]"), part)
                })
                .collect::<Result<_, _>>()?,
        )),
        Some(_) => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content parts",
            ))
        }
    };
    if role == Role::Tool && raw.tool_call_id.is_none() {
        return Err(invalid(
            format!("{path}.tool_call_id"),
            "is required for tool messages",
        ));
    }
    Ok(ChatMessage {
        role,
        content,
        tool_calls: raw.tool_calls.unwrap_or_default(),
        tool_call_id: raw.tool_call_id,
    })
}

fn convert_part(path: &str, value: Value) -> Result<Part, TranslateError> {
    let part: RawPart = decode_value(path, value)?;
    match part.kind.as_str() {
        "text" => part
            .text
            .map(Part::Text)
            .ok_or_else(|| invalid(format!("{path}.text"), "is required for text parts")),
        "image_url" => match part.image_url {
            Some(RawImageUrl::Url(url) | RawImageUrl::Object { url }) => Ok(Part::Image(url)),
            None => Err(invalid(
                format!("{path}.image_url"),
                "is required for image_url parts",
            )),
        },
        _ => Ok(Part::Other(part.kind)),
    }
}

//! Validation and rewriting of gateway request bodies without building a DOM.
//!
//! The top level is parsed into borrowed raw values; only the fields the
//! gateway checks are decoded, and the body sent upstream is the client's
//! bytes with `model` replaced and `stream_options.include_usage` forced on.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::HttpError;

/// The gateway operation a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Completions,
    Embeddings,
}

impl Operation {
    /// The name used in usage records and metrics.
    pub fn method_name(self) -> &'static str {
        match self {
            Operation::Chat => "chat.completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
        }
    }

    fn required_field(self) -> &'static str {
        match self {
            Operation::Chat => "messages",
            Operation::Completions => "prompt",
            Operation::Embeddings => "input",
        }
    }
}

/// A parsed request body: borrowed top-level fields in their original order.
pub struct RequestBody<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The `model` the client asked for, if any.
    pub model: Option<Cow<'a, str>>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client itself asked for a usage chunk in the stream.
    pub client_wants_stream_usage: bool,
    /// Size of the prompt-bearing field, for estimating tokens when the upstream reports none.
    pub prompt_bytes: usize,
}

impl<'a> RequestBody<'a> {
    /// Parses and validates a body for `operation`.
    pub fn parse(bytes: &'a [u8], operation: Operation) -> Result<Self, HttpError> {
        let top: TopLevel<'a> = serde_json::from_slice(bytes).map_err(|error| {
            if error.is_data() {
                HttpError::invalid_json(format!("request body must be a JSON object: {error}"))
            } else {
                HttpError::invalid_json(format!("request body is not valid JSON: {error}"))
            }
        })?;
        let mut body = RequestBody {
            fields: top.0,
            model: None,
            stream: false,
            client_wants_stream_usage: false,
            prompt_bytes: 0,
        };
        let mut seen_required = false;
        for (name, raw) in &body.fields {
            let text = raw.get();
            match name.as_ref() {
                "model" => {
                    let model: Cow<'a, str> = decode(name, raw, "a string")?;
                    body.model = Some(model);
                }
                "stream" => {
                    body.stream = decode::<Option<bool>>(name, raw, "a boolean")?.unwrap_or(false)
                }
                "stream_options" => {
                    let options: Option<StreamOptions> = decode(name, raw, "an object")?;
                    body.client_wants_stream_usage = options
                        .and_then(|options| options.include_usage)
                        .unwrap_or(false);
                }
                "max_tokens" | "max_completion_tokens" | "n" | "dimensions" => {
                    if let Some(value) = decode::<Option<u64>>(name, raw, "a positive integer")? {
                        if value == 0 {
                            return Err(HttpError::invalid_field(
                                name.as_ref(),
                                "must be a positive integer",
                            ));
                        }
                    }
                }
                "temperature" => check_range(name, raw, 0.0, 2.0)?,
                "top_p" => check_range(name, raw, 0.0, 1.0)?,
                field if field == operation.required_field() => {
                    seen_required = true;
                    body.prompt_bytes = text.len();
                    check_prompt(operation, field, text)?;
                }
                _ => {}
            }
        }
        if !seen_required {
            return Err(HttpError::invalid_field(
                operation.required_field(),
                "is required",
            ));
        }
        Ok(body)
    }

    /// The top-level fields as the client sent them, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.fields.iter().map(|(name, raw)| (name.as_ref(), *raw))
    }

    /// Writes the upstream body: `model` set to `upstream_model`, and for streams
    /// `stream_options.include_usage` set so the upstream reports exact usage.
    pub fn to_upstream(&self, upstream_model: &str) -> Vec<u8> {
        let capacity = self
            .fields
            .iter()
            .map(|(name, raw)| name.len() + raw.get().len() + 4)
            .sum::<usize>()
            + upstream_model.len()
            + 64;
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(b"{\"model\":");
        write_json_string(&mut out, upstream_model);
        for (name, raw) in &self.fields {
            match name.as_ref() {
                "model" => continue,
                "stream_options" if self.stream => continue,
                _ => {}
            }
            out.push(b',');
            write_json_string(&mut out, name);
            out.push(b':');
            out.extend_from_slice(raw.get().as_bytes());
        }
        if self.stream {
            out.extend_from_slice(b",\"stream_options\":");
            out.extend_from_slice(&self.stream_options_with_usage());
        }
        out.push(b'}');
        out
    }

    fn stream_options_with_usage(&self) -> Vec<u8> {
        let existing = self
            .fields
            .iter()
            .find(|(name, _)| name == "stream_options")
            .and_then(|(_, raw)| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()).ok()
            });
        match existing {
            Some(mut options) => {
                options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
                serde_json::to_vec(&options)
                    .unwrap_or_else(|_| b"{\"include_usage\":true}".to_vec())
            }
            None => b"{\"include_usage\":true}".to_vec(),
        }
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

fn decode<'a, T: Deserialize<'a>>(
    name: &str,
    raw: &'a RawValue,
    expected: &str,
) -> Result<T, HttpError> {
    serde_json::from_str(raw.get())
        .map_err(|_| HttpError::invalid_field(name, format!("must be {expected}")))
}

fn check_range(name: &str, raw: &RawValue, low: f64, high: f64) -> Result<(), HttpError> {
    if let Some(value) = decode::<Option<f64>>(name, raw, "a number")? {
        if !(low..=high).contains(&value) {
            return Err(HttpError::invalid_field(
                name,
                format!("must be between {low} and {high}"),
            ));
        }
    }
    Ok(())
}

/// Checks the prompt-bearing field without building a DOM: chat messages are
/// read as borrowed `role` strings (other fields skipped), prompts and inputs
/// by their first character.
fn check_prompt(operation: Operation, field: &str, text: &str) -> Result<(), HttpError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        #[expect(dead_code, reason = "only its presence and type are checked")]
        role: Cow<'a, str>,
    }
    let valid = match operation {
        Operation::Chat => serde_json::from_str::<Vec<Message<'_>>>(text)
            .is_ok_and(|messages| !messages.is_empty()),
        Operation::Completions | Operation::Embeddings => {
            let trimmed = text.trim_start();
            trimmed.starts_with('"')
                || (trimmed.starts_with('[') && !trimmed[1..].trim_start().starts_with(']'))
        }
    };
    if valid {
        Ok(())
    } else {
        let expected = match operation {
            Operation::Chat => "must be a non-empty array of messages, each with a string `role`",
            _ => "must be a string or a non-empty array",
        };
        Err(HttpError::invalid_field(field, expected))
    }
}

/// Writes `text` as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Most top-level fields a request body may have.
const MAX_FIELDS: usize = 128;

struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(8);
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    // Bounded so the duplicate check below stays cheap.
                    if fields.len() >= MAX_FIELDS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_FIELDS} top-level fields"
                        )));
                    }
                    if fields
                        .iter()
                        .any(|(name, _): &(Cow<'de, str>, _)| *name == key.0)
                    {
                        return Err(de::Error::custom(format!("duplicate field `{}`", key.0)));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key.0, value));
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(TopVisitor)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(body: &str, operation: Operation) -> serde_json::Value {
        let parsed = RequestBody::parse(body.as_bytes(), operation).unwrap();
        serde_json::from_slice(&parsed.to_upstream("upstream-model")).unwrap()
    }

    #[test]
    fn replaces_model_and_keeps_other_fields() {
        let out = rewrite(
            r#"{"model":"mine","messages":[{"role":"user","content":"hi \"x\""}],"temperature":0.5,"x_extra":{"a":[1,2]}}"#,
            Operation::Chat,
        );
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(out["messages"][0]["content"], "hi \"x\"");
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["x_extra"]["a"][1], 2);
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn forces_usage_on_streams() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let parsed = RequestBody::parse(body.as_bytes(), Operation::Chat).unwrap();
        assert!(parsed.stream && !parsed.client_wants_stream_usage);
        let out: serde_json::Value = serde_json::from_slice(&parsed.to_upstream("u")).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);

        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}"#;
        let parsed = RequestBody::parse(body.as_bytes(), Operation::Chat).unwrap();
        assert!(parsed.client_wants_stream_usage);
        let out: serde_json::Value = serde_json::from_slice(&parsed.to_upstream("u")).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["stream_options"]["continuous_usage_stats"], false);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (r#"{"model":1,"messages":[{"role":"user"}]}"#, "model"),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                "stream",
            ),
        ];
        for (body, field) in cases {
            let error = RequestBody::parse(body.as_bytes(), Operation::Chat)
                .err()
                .unwrap();
            assert_eq!(error.param.as_deref(), Some(field), "{body}");
        }
        assert_eq!(
            RequestBody::parse(b"{not json", Operation::Chat)
                .err()
                .unwrap()
                .code,
            "invalid_json"
        );
        assert_eq!(
            RequestBody::parse(b"[1,2]", Operation::Chat)
                .err()
                .unwrap()
                .code,
            "invalid_json"
        );
        assert!(
            RequestBody::parse(br#"{"model":"m","input":"hello"}"#, Operation::Embeddings).is_ok()
        );
        for (body, operation) in [
            (
                &br#"{"model":"m","messages":[{"content":"no role"}]}"#[..],
                Operation::Chat,
            ),
            (br#"{"model":"m","messages":[{"role":1}]}"#, Operation::Chat),
            (br#"{"model":"m","prompt":[ ]}"#, Operation::Completions),
            (br#"{"model":"m","input":42}"#, Operation::Embeddings),
        ] {
            let error = RequestBody::parse(body, operation).err();
            assert!(error.is_some(), "{}", String::from_utf8_lossy(body));
        }
        assert!(
            RequestBody::parse(br#"{"model":"m","prompt":["a"]}"#, Operation::Completions).is_ok()
        );
    }

    #[test]
    fn escaped_keys_are_handled() {
        let out = rewrite(r#"{"mod\u0065l":"m","input":"x"}"#, Operation::Embeddings);
        assert_eq!(out["model"], "upstream-model");
    }
}

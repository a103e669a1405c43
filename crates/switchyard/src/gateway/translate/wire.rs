//! Helpers shared by the translations: ordered top-level fields, decoding with
//! JSON paths in errors, SSE framing, data URLs.

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::TranslateError;

/// The top-level fields of a JSON object, in body order, values unparsed.
pub(super) struct Fields<'a>(pub(super) Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push((name, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Parses a request body into its ordered top-level fields.
pub(super) fn fields(body: &[u8]) -> Result<Vec<(String, &RawValue)>, TranslateError> {
    serde_json::from_slice::<Fields<'_>>(body)
        .map(|fields| fields.0)
        .map_err(|error| TranslateError::Invalid {
            field: "body".to_owned(),
            message: if error.is_data() {
                "must be a JSON object".to_owned()
            } else {
                format!("is not valid JSON: {}", clean(&error))
            },
        })
}

/// serde_json's message without its ` at line 1 column 7` suffix.
fn clean(error: &impl fmt::Display) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Appends a serde_path_to_error path to `field`: `messages` + `[0].role`.
fn join(field: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = field.to_owned();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Decodes one raw field; errors name the JSON path below `field`.
pub(super) fn decode<T: DeserializeOwned>(
    field: &str,
    raw: &RawValue,
) -> Result<T, TranslateError> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| TranslateError::Invalid {
        field: join(field, error.path()),
        message: clean(error.inner()),
    })
}

/// Decodes a parsed value; errors name the JSON path below `field`.
pub(super) fn decode_value<T: DeserializeOwned>(
    field: &str,
    value: serde_json::Value,
) -> Result<T, TranslateError> {
    serde_path_to_error::deserialize(value).map_err(|error| TranslateError::Invalid {
        field: join(field, error.path()),
        message: clean(error.inner()),
    })
}

/// An `Invalid` error for `field`.
pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Serialises an upstream or client body. The types serialised here have
/// string keys only, so serde_json cannot fail; an error would still surface
/// as [`TranslateError::BadUpstream`] rather than an empty body.
pub(super) fn to_vec(value: &impl Serialize) -> Result<Vec<u8>, TranslateError> {
    serde_json::to_vec(value)
        .map_err(|error| TranslateError::BadUpstream(format!("could not serialise: {error}")))
}

/// Appends `data: <json>\n\n`.
pub(super) fn push_data(out: &mut BytesMut, value: &impl Serialize) {
    out.put_slice(b"data: ");
    write_json(out, value);
    out.put_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n`.
pub(super) fn push_event(out: &mut BytesMut, name: &str, value: &impl Serialize) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    write_json(out, value);
    out.put_slice(b"\n\n");
}

/// Appends `data: [DONE]\n\n`.
pub(super) fn push_done(out: &mut BytesMut) {
    out.put_slice(b"data: [DONE]\n\n");
}

fn write_json(out: &mut BytesMut, value: &impl Serialize) {
    // Writing into memory fails only for types with non-string map keys,
    // which this module never serialises; write `null` rather than nothing so
    // the event stays well-formed SSE.
    if serde_json::to_writer(out.writer(), value).is_err() {
        out.put_slice(b"null");
    }
}

/// Seconds since the Unix epoch.
pub(super) fn now_seconds() -> i64 {
    crate::domain::now_ms() / 1000
}

/// A `data:<mime>;base64,<data>` URL split into mime type and data.
pub(super) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((if mime.is_empty() { "text/plain" } else { mime }, data))
}

/// Whether a value is `null` (an absent-equivalent field).
pub(super) fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// An OpenAI `usage` object.
pub(super) fn openai_usage(usage: super::TokenUsage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// An OpenAI-style error event body for an upstream stream error.
pub(super) fn openai_error_event(
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({"error": {"message": message, "type": kind, "code": code, "param": null}})
}

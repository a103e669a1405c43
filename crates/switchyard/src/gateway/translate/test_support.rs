//! Test helpers: parse translator output back into SSE events.

use bytes::BytesMut;
use serde_json::Value;

use super::StreamTranslator;

/// One parsed SSE event: the `event:` name and the `data:` payload as JSON
/// (`[DONE]` becomes the string `"[DONE]"`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Event {
    pub name: Option<String>,
    pub data: Value,
}

/// Parses SSE text strictly: every event ends with a blank line, has exactly
/// one `data:` line, at most one `event:` line before it, nothing else.
pub(super) fn parse_sse(bytes: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(bytes).expect("utf-8 output");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "output must end with a blank line: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.split('\n') {
                if let Some(value) = line.strip_prefix("event: ") {
                    assert!(name.is_none() && data.is_none(), "bad event: {event:?}");
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "two data lines: {event:?}");
                    data = Some(if value == "[DONE]" {
                        Value::String("[DONE]".to_owned())
                    } else {
                        serde_json::from_str(value).expect("data is JSON")
                    });
                } else {
                    panic!("unexpected line {line:?} in {event:?}");
                }
            }
            Event {
                name,
                data: data.expect("event without data"),
            }
        })
        .collect()
}

/// Feeds `(name, data)` events one by one, then `finish`, returning the
/// output of each step (the last entry is the output of `finish`).
pub(super) fn run(
    translator: &mut dyn StreamTranslator,
    events: &[(Option<&str>, &str)],
) -> Vec<Vec<Event>> {
    let mut steps = Vec::new();
    for (name, data) in events {
        let mut out = BytesMut::new();
        translator.event(*name, data.as_bytes(), &mut out);
        steps.push(parse_sse(&out));
    }
    let mut out = BytesMut::new();
    translator.finish(&mut out);
    steps.push(parse_sse(&out));
    steps
}

/// Parses a body produced by a conversion.
pub(super) fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

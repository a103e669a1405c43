//! Server-sent events passed through event by event while metering them.
//!
//! Complete events are forwarded as soon as they arrive (as a zero-copy slice
//! of the upstream frame when nothing is removed); only an incomplete trailing
//! event waits for its end. The usage chunk the gateway asked for on the
//! client's behalf is removed when the client did not ask for it. Dropping the
//! body (client gone) drops the upstream response, which cancels the upstream
//! request, and records what was produced.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use memchr::memmem::Finder;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::metering::{estimate_tokens, Meter, Outcome, TokenUsage};

static USAGE_FIELD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static CONTENT_FIELD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"content\":\""));
static TEXT_FIELD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"text\":\""));

/// Largest single SSE event the relay holds while waiting for its end.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// A metered SSE body.
pub struct MeteredStream {
    upstream: Incoming,
    pending: BytesMut,
    drop_usage_chunk: bool,
    meter: Option<Meter>,
    status_code: u16,
    usage: Option<TokenUsage>,
    content_bytes: usize,
    first_byte: Option<Instant>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
    finished: bool,
    /// The upstream sent `[DONE]`: the stream is complete even if the client
    /// goes away before the upstream closes its body.
    saw_done: bool,
    /// Keeps the request counted in its backend's in-flight figure; a
    /// broken upstream body counts against the backend's breaker.
    in_flight: Option<(super::backend::InFlight, super::backend::BreakerSettings)>,
}

impl MeteredStream {
    /// Wraps an upstream SSE body.
    pub fn new(
        upstream: Incoming,
        meter: Meter,
        status_code: u16,
        drop_usage_chunk: bool,
        idle_timeout: Duration,
        hard_stop: CancellationToken,
    ) -> Self {
        metrics::gauge!("switchyard_streams_in_flight").increment(1.0);
        Self {
            upstream,
            pending: BytesMut::new(),
            drop_usage_chunk,
            meter: Some(meter),
            status_code,
            usage: None,
            content_bytes: 0,
            first_byte: None,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            hard_stop: Box::pin(hard_stop.cancelled_owned()),
            finished: false,
            saw_done: false,
            in_flight: None,
        }
    }

    /// Keeps the backend's in-flight count up until the stream ends.
    pub fn with_in_flight(
        mut self,
        in_flight: super::backend::InFlight,
        breaker: super::backend::BreakerSettings,
    ) -> Self {
        self.in_flight = Some((in_flight, breaker));
        self
    }

    /// Splits `data` into complete events (forwarded, minus a dropped usage
    /// chunk) and an incomplete tail (kept for the next frame).
    fn process(&mut self, data: Bytes) -> Bytes {
        // Only the new bytes (and the 2 before them) can complete the held event.
        let (buffer, mut scan_from) = if self.pending.is_empty() {
            (data, 0)
        } else {
            let held = self.pending.len();
            self.pending.extend_from_slice(&data);
            (self.pending.split().freeze(), held.saturating_sub(2))
        };
        let mut start = 0;
        let mut rebuilt: Option<BytesMut> = None;
        let mut copied_up_to = 0;
        while let Some(length) = event_length(&buffer[start..], scan_from) {
            scan_from = 0;
            let end = start + length;
            if self.inspect_event(&buffer[start..end]) == Verdict::Drop {
                let out = rebuilt.get_or_insert_with(|| BytesMut::with_capacity(buffer.len()));
                out.extend_from_slice(&buffer[copied_up_to..start]);
                copied_up_to = end;
            }
            start = end;
        }
        if start < buffer.len() {
            self.pending.extend_from_slice(&buffer[start..]);
        }
        match rebuilt {
            None => buffer.slice(..start),
            Some(mut out) => {
                out.extend_from_slice(&buffer[copied_up_to..start]);
                out.freeze()
            }
        }
    }

    fn inspect_event(&mut self, event: &[u8]) -> Verdict {
        let Some(data) = event_data(event) else {
            return Verdict::Keep;
        };
        if data == b"[DONE]" {
            self.saw_done = true;
            return Verdict::Keep;
        }
        self.content_bytes += content_length_hint(data);
        if USAGE_FIELD.find(data).is_some() {
            if let Some((usage, empty_choices)) = usage_chunk(data) {
                self.usage = Some(usage);
                if self.drop_usage_chunk && empty_choices {
                    return Verdict::Drop;
                }
            }
        }
        Verdict::Keep
    }

    fn finish(&mut self, error_code: Option<&str>) {
        self.in_flight = None;
        if let Some(meter) = self.meter.take() {
            metrics::gauge!("switchyard_streams_in_flight").decrement(1.0);
            meter.finish(Outcome {
                status_code: self.status_code,
                usage: self.usage,
                estimated_output_tokens: estimate_tokens(self.content_bytes),
                error_code: error_code.map(str::to_owned),
                first_byte: self.first_byte,
                upstream_finished: Instant::now(),
                compute: None,
            });
        }
    }
}

#[derive(PartialEq, Eq)]
enum Verdict {
    Keep,
    Drop,
}

impl Body for MeteredStream {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    if this.first_byte.is_none() {
                        this.first_byte = Some(Instant::now());
                    }
                    let out = this.process(data);
                    if this.pending.len() > MAX_EVENT_BYTES {
                        tracing::warn!(
                            bytes = this.pending.len(),
                            "upstream sent an SSE event over the size limit"
                        );
                        this.finished = true;
                        this.pending.clear();
                        this.finish(Some("upstream_event_too_large"));
                        let mut closing = BytesMut::from(&out[..]);
                        closing.extend_from_slice(error_event("upstream_event_too_large"));
                        return Poll::Ready(Some(Ok(Frame::data(closing.freeze()))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(%error, "upstream stream failed");
                    if let Some((in_flight, breaker)) = &this.in_flight {
                        in_flight.broke_off(breaker);
                    }
                    this.finished = true;
                    this.finish(Some("upstream_stream_error"));
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    if let Some((in_flight, _)) = &this.in_flight {
                        in_flight.completed();
                    }
                    let rest = this.pending.split().freeze();
                    this.finish(None);
                    return if rest.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(rest))))
                    };
                }
                Poll::Pending => {
                    if this.hard_stop.as_mut().poll(cx).is_ready() {
                        this.finished = true;
                        this.finish(Some("server_shutting_down"));
                        let event = Bytes::from_static(error_event("server_shutting_down"));
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                    if this.idle.as_mut().poll(cx).is_ready() {
                        tracing::warn!(timeout = ?this.idle_timeout, "upstream stream went idle; closing it");
                        this.finished = true;
                        this.finish(Some("upstream_timeout"));
                        let event = Bytes::from_static(error_event("upstream_timeout"));
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // Still metering: the client went away before the upstream finished,
        // which only cuts the request if `[DONE]` had not arrived yet.
        if self.saw_done {
            self.finish(None);
        } else {
            self.finish(Some("client_disconnected"));
        }
    }
}

/// A final SSE event in OpenAI's error shape.
fn error_event(code: &'static str) -> &'static [u8] {
    match code {
        "upstream_timeout" => {
            b"data: {\"error\":{\"message\":\"upstream stopped sending\",\"type\":\"server_error\",\"code\":\"upstream_timeout\"}}\n\n"
        }
        "server_shutting_down" => {
            b"data: {\"error\":{\"message\":\"the gateway is shutting down\",\"type\":\"server_error\",\"code\":\"server_shutting_down\"}}\n\n"
        }
        _ => b"data: {\"error\":{\"message\":\"upstream sent an event over 4 MiB\",\"type\":\"server_error\",\"code\":\"upstream_event_too_large\"}}\n\n",
    }
}

/// Length of the first complete event in `buffer` including its blank line,
/// looking for its end from byte `from` on.
pub(super) fn event_length(buffer: &[u8], from: usize) -> Option<usize> {
    let tail = buffer.get(from..)?;
    memchr::memchr_iter(b'\n', tail).find_map(|index| {
        let index = from + index;
        match buffer.get(index + 1) {
            Some(b'\n') => Some(index + 2),
            Some(b'\r') if buffer.get(index + 2) == Some(&b'\n') => Some(index + 3),
            _ => None,
        }
    })
}

/// The payload of the event's `data:` line(s); multi-line data is rare in
/// OpenAI streams, so only the first line is inspected.
pub(super) fn event_data(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.strip_prefix(b"data:")
            .map(|rest| rest.strip_prefix(b" ").unwrap_or(rest))
    })
}

/// The usage of a chunk that reports one, and whether its `choices` is empty
/// (the extra chunk `include_usage` adds), parsed in one pass.
fn usage_chunk(data: &[u8]) -> Option<(TokenUsage, bool)> {
    #[derive(serde::Deserialize)]
    struct Chunk {
        choices: Option<Vec<serde::de::IgnoredAny>>,
        usage: Option<TokenUsage>,
    }
    let chunk: Chunk = serde_json::from_slice(data).ok()?;
    Some((
        chunk.usage?,
        chunk.choices.is_some_and(|choices| choices.is_empty()),
    ))
}

/// Rough size of generated text in a chunk, for estimating tokens.
pub(super) fn content_length_hint(data: &[u8]) -> usize {
    for marker in [&*CONTENT_FIELD, &*TEXT_FIELD] {
        if let Some(position) = marker.find(data) {
            let rest = &data[position + marker.needle().len()..];
            let mut length = 0;
            let mut escaped = false;
            for &byte in rest {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    break;
                }
                length += 1;
            }
            return length.max(1);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_event_boundaries() {
        assert_eq!(event_length(b"data: x\n\ndata: y", 0), Some(9));
        assert_eq!(event_length(b"data: x\r\n\r\n", 0), Some(11));
        assert_eq!(event_length(b"data: x\n", 0), None);
        assert_eq!(event_length(b"data: x\n\n", 6), Some(9));
        assert_eq!(
            event_data(b"event: e\ndata: {\"a\":1}\n\n"),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(event_data(b": comment\n\n"), None);
    }

    #[test]
    fn recognises_usage_only_chunks() {
        let usage = TokenUsage {
            prompt_tokens: 1,
            completion_tokens: 0,
        };
        assert_eq!(
            usage_chunk(br#"{"choices":[],"usage":{"prompt_tokens":1}}"#),
            Some((usage, true))
        );
        assert_eq!(
            usage_chunk(br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}"#),
            Some((usage, false))
        );
        assert_eq!(usage_chunk(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(content_length_hint(br#"{"delta":{"content":"Hello"}}"#), 5);
        assert_eq!(content_length_hint(br#"{"delta":{"role":"assistant"}}"#), 0);
    }
}

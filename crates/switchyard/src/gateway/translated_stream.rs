//! A metered SSE relay that converts every upstream event into the client's
//! protocol with a [`StreamTranslator`] (Anthropic or Gemini streams for an
//! OpenAI client, OpenAI streams for an Anthropic client), or passes an
//! Anthropic stream through while reading its usage.
//!
//! Upstream events are split at their blank line (`\n\n` or `\r\n\r\n`), their
//! `event:` name and `data:` lines (joined by `\n`) handed to the translator,
//! and whatever it writes goes to the client at once. The stream ends with the
//! translator's closing events when the upstream ends; a broken upstream, an
//! idle timeout or a shutdown end it with an error event in the client's
//! shape. Usage is recorded once: the translator's exact figures, or an
//! estimate from the generated text.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::backend::{BreakerSettings, InFlight};
use super::metering::{estimate_tokens, Meter, Outcome, TokenUsage};
use super::stream::event_length;
use super::translate::StreamTranslator;

/// Largest single SSE event held while waiting for its end.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The protocol the client speaks (for the shape of error events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocol {
    OpenAi,
    Anthropic,
}

/// A translated, metered SSE body.
pub struct TranslatedStream {
    upstream: Incoming,
    pending: BytesMut,
    translator: Box<dyn StreamTranslator>,
    client: ClientProtocol,
    meter: Option<Meter>,
    status_code: u16,
    first_byte: Option<Instant>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
    finished: bool,
    /// Keeps the request counted in its backend's in-flight figure; a
    /// broken upstream body counts against the backend's breaker.
    in_flight: Option<(InFlight, BreakerSettings)>,
}

impl TranslatedStream {
    /// Wraps an upstream SSE body.
    pub fn new(
        upstream: Incoming,
        translator: Box<dyn StreamTranslator>,
        client: ClientProtocol,
        meter: Meter,
        idle_timeout: Duration,
        hard_stop: CancellationToken,
        in_flight: Option<(InFlight, BreakerSettings)>,
    ) -> Self {
        metrics::gauge!("switchyard_streams_in_flight").increment(1.0);
        Self {
            upstream,
            pending: BytesMut::new(),
            translator,
            client,
            meter: Some(meter),
            status_code: 200,
            first_byte: None,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            hard_stop: Box::pin(hard_stop.cancelled_owned()),
            finished: false,
            in_flight,
        }
    }

    /// Translates every complete event held so far.
    fn drain_events(&mut self, out: &mut BytesMut) {
        while let Some(length) = event_length(&self.pending, 0) {
            let event = self.pending.split_to(length);
            feed(self.translator.as_mut(), &event, out);
        }
    }

    fn finish(&mut self, error_code: Option<&str>) {
        if let Some(meter) = self.meter.take() {
            metrics::gauge!("switchyard_streams_in_flight").decrement(1.0);
            let upstream_error = self.translator.error().map(|_| "upstream_stream_error");
            let error_code = error_code.or(upstream_error);
            meter.finish(Outcome {
                status_code: self.status_code,
                usage: self.translator.usage(),
                estimated_output_tokens: estimate_tokens(self.translator.output_bytes()),
                error_code: error_code.map(str::to_owned),
                first_byte: self.first_byte,
                upstream_finished: Instant::now(),
                compute: None,
            });
        }
    }

    fn error_frame(&self, out: &mut BytesMut, code: &str, message: &str) {
        out.extend_from_slice(&error_event(self.client, code, message));
    }
}

/// Hands one raw SSE event to a translator.
pub fn feed(translator: &mut dyn StreamTranslator, event: &[u8], out: &mut BytesMut) {
    let mut name: Option<&str> = None;
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            has_data = true;
        } else if let Some(rest) = line.strip_prefix(b"event:") {
            name = std::str::from_utf8(rest.strip_prefix(b" ").unwrap_or(rest)).ok();
        }
    }
    if has_data {
        translator.event(name, &data, out);
    }
}

/// A final SSE error event in the client's protocol.
pub fn error_event(client: ClientProtocol, code: &str, message: &str) -> Vec<u8> {
    match client {
        ClientProtocol::OpenAi => format!(
            "data: {}\n\n",
            serde_json::json!({"error": {"message": message, "type": "server_error", "code": code}})
        ),
        ClientProtocol::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        ),
    }
    .into_bytes()
}

impl Body for TranslatedStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
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
                    this.pending.extend_from_slice(&data);
                    let mut out = BytesMut::new();
                    this.drain_events(&mut out);
                    if this.pending.len() > MAX_EVENT_BYTES {
                        this.finished = true;
                        this.pending.clear();
                        this.finish(Some("upstream_event_too_large"));
                        this.error_frame(
                            &mut out,
                            "upstream_event_too_large",
                            "upstream sent an event over 4 MiB",
                        );
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                    if this.translator.error().is_some() {
                        this.finished = true;
                        this.finish(None);
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(%error, "upstream stream failed");
                    if let Some((in_flight, breaker)) = &this.in_flight {
                        in_flight.broke_off(breaker);
                    }
                    this.finished = true;
                    this.finish(Some("upstream_stream_error"));
                    let mut out = BytesMut::new();
                    this.error_frame(
                        &mut out,
                        "upstream_stream_error",
                        "the upstream stream broke off",
                    );
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let mut out = BytesMut::new();
                    if !this.pending.is_empty() {
                        // A last event without its blank line (Gemini ends that way).
                        let rest = this.pending.split();
                        feed(this.translator.as_mut(), &rest, &mut out);
                    }
                    if this.translator.completed() {
                        if let Some((in_flight, _)) = &this.in_flight {
                            in_flight.completed();
                        }
                        this.translator.finish(&mut out);
                        this.finish(None);
                    } else if this.translator.error().is_some() {
                        this.finish(None);
                    } else {
                        this.finish(Some("upstream_stream_incomplete"));
                        this.error_frame(
                            &mut out,
                            "upstream_stream_incomplete",
                            "the upstream ended the stream before it was complete",
                        );
                    }
                    return if out.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
                    };
                }
                Poll::Pending => {
                    let ended = if this.hard_stop.as_mut().poll(cx).is_ready() {
                        Some(("server_shutting_down", "the gateway is shutting down"))
                    } else if this.idle.as_mut().poll(cx).is_ready() {
                        tracing::warn!(timeout = ?this.idle_timeout, "upstream stream went idle; closing it");
                        Some(("upstream_timeout", "upstream stopped sending"))
                    } else {
                        None
                    };
                    let Some((code, message)) = ended else {
                        return Poll::Pending;
                    };
                    this.finished = true;
                    this.finish(Some(code));
                    let mut out = BytesMut::new();
                    this.error_frame(&mut out, code, message);
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for TranslatedStream {
    fn drop(&mut self) {
        if self.translator.completed() {
            self.finish(None);
        } else {
            self.finish(Some("client_disconnected"));
        }
    }
}

/// Passes an Anthropic stream through unchanged while reading its usage
/// (`message_start.message.usage.input_tokens`, the cumulative
/// `message_delta.usage.output_tokens`) and its end (`message_stop`).
#[derive(Debug, Default)]
pub struct AnthropicPassthrough {
    usage: Option<TokenUsage>,
    text_bytes: usize,
    completed: bool,
    error: Option<String>,
}

impl StreamTranslator for AnthropicPassthrough {
    fn event(&mut self, name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        #[derive(serde::Deserialize)]
        struct Event {
            #[serde(rename = "type")]
            kind: String,
            message: Option<Message>,
            usage: Option<Usage>,
            delta: Option<Delta>,
            error: Option<serde_json::Value>,
        }
        #[derive(serde::Deserialize)]
        struct Message {
            usage: Option<Usage>,
        }
        #[derive(serde::Deserialize)]
        struct Usage {
            input_tokens: Option<u64>,
            output_tokens: Option<u64>,
            cache_creation_input_tokens: Option<u64>,
            cache_read_input_tokens: Option<u64>,
        }
        #[derive(serde::Deserialize)]
        struct Delta {
            text: Option<String>,
            partial_json: Option<String>,
        }
        if let Some(name) = name {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\n\n");
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        let usage = self.usage.get_or_insert_with(TokenUsage::default);
        let apply = |usage: &mut TokenUsage, reported: &Usage| {
            let input = reported.input_tokens.unwrap_or(0)
                + reported.cache_creation_input_tokens.unwrap_or(0)
                + reported.cache_read_input_tokens.unwrap_or(0);
            if input > 0 {
                usage.prompt_tokens = input;
            }
            if let Some(output) = reported.output_tokens {
                usage.completion_tokens = output;
            }
        };
        match event.kind.as_str() {
            "message_start" => {
                if let Some(reported) = event
                    .message
                    .as_ref()
                    .and_then(|message| message.usage.as_ref())
                {
                    apply(usage, reported);
                }
            }
            "message_delta" => {
                if let Some(reported) = &event.usage {
                    apply(usage, reported);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = &event.delta {
                    self.text_bytes += delta.text.as_ref().map_or(0, String::len)
                        + delta.partial_json.as_ref().map_or(0, String::len);
                }
            }
            "message_stop" => self.completed = true,
            "error" => {
                self.error = Some(
                    event
                        .error
                        .as_ref()
                        .and_then(|error| error.get("message"))
                        .and_then(|message| message.as_str())
                        .unwrap_or("upstream error")
                        .to_owned(),
                );
            }
            _ => {}
        }
    }

    fn finish(&mut self, _out: &mut BytesMut) {}

    fn usage(&self) -> Option<TokenUsage> {
        self.usage
            .filter(|usage| usage.prompt_tokens > 0 || usage.completion_tokens > 0)
    }

    fn output_bytes(&self) -> usize {
        self.text_bytes
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// Two translators in a row (Gemini → OpenAI → Anthropic): the first one's
/// output events are fed to the second.
pub struct Chain {
    first: Box<dyn StreamTranslator>,
    second: Box<dyn StreamTranslator>,
    between: BytesMut,
}

impl Chain {
    /// Chains `first` into `second`.
    pub fn new(first: Box<dyn StreamTranslator>, second: Box<dyn StreamTranslator>) -> Self {
        Self {
            first,
            second,
            between: BytesMut::new(),
        }
    }

    fn pass_on(&mut self, out: &mut BytesMut) {
        while let Some(length) = event_length(&self.between, 0) {
            let event = self.between.split_to(length);
            feed(self.second.as_mut(), &event, out);
        }
    }
}

impl StreamTranslator for Chain {
    fn event(&mut self, name: Option<&str>, data: &[u8], out: &mut BytesMut) {
        self.first.event(name, data, &mut self.between);
        self.pass_on(out);
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.first.finish(&mut self.between);
        self.pass_on(out);
        self.second.finish(out);
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.first.usage()
    }

    fn output_bytes(&self) -> usize {
        self.first.output_bytes()
    }

    fn completed(&self) -> bool {
        self.first.completed()
    }

    fn error(&self) -> Option<&str> {
        self.first.error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_passthrough_keeps_events_and_reads_usage() {
        let mut tap = AnthropicPassthrough::default();
        let mut out = BytesMut::new();
        let events: &[&[u8]] = &[
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n",
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n",
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ];
        for event in events {
            feed(&mut tap, event, &mut out);
        }
        assert_eq!(out, events.concat());
        assert_eq!(
            tap.usage(),
            Some(TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 30
            })
        );
        assert!(tap.completed());
        assert_eq!(tap.output_bytes(), 5);
    }

    #[test]
    fn feed_joins_multi_line_data_and_ignores_comments() {
        let mut tap = AnthropicPassthrough::default();
        let mut out = BytesMut::new();
        feed(&mut tap, b": keep-alive\r\n\r\n", &mut out);
        assert!(out.is_empty());
        feed(&mut tap, b"event: error\r\ndata: {\"type\":\"error\",\r\ndata: \"error\":{\"message\":\"overloaded\"}}\r\n\r\n", &mut out);
        assert_eq!(tap.error(), Some("overloaded"));
    }

    #[test]
    fn error_events_follow_the_client_protocol() {
        let openai = String::from_utf8(error_event(
            ClientProtocol::OpenAi,
            "upstream_timeout",
            "late",
        ))
        .unwrap();
        assert!(openai.starts_with("data: {\"error\":"));
        assert!(openai.contains("\"code\":\"upstream_timeout\""));
        let anthropic =
            String::from_utf8(error_event(ClientProtocol::Anthropic, "x", "late")).unwrap();
        assert!(anthropic.starts_with("event: error\ndata: {"));
        assert!(anthropic.contains("\"type\":\"api_error\""));
    }
}

//! The HTTP client of the server commands: the base URL and management token
//! from the flags or the environment, JSON calls whose errors carry the
//! server's `error.message` and `error.code`, and a reader of the
//! Server-Sent Events stream of `GET /api/v1/events`.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::ClientArgs;

/// How long one management call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest SSE line the reader accepts before it gives up on the stream.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why a call to the server failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Neither `--token` nor `SWITCHYARD_TOKEN` was given.
    #[error("no management token: pass --token or set SWITCHYARD_TOKEN (a `sym_…` token)")]
    MissingToken,
    /// The token cannot be sent in an HTTP header.
    #[error("the management token contains characters that cannot be sent in a header")]
    InvalidToken,
    /// `--server` is not an http(s) URL.
    #[error("--server `{0}` is not an http:// or https:// URL")]
    InvalidServer(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    /// The request did not reach the server or the answer was cut off.
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error document.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
        param: Option<String>,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    Unexpected {
        url: String,
        status: u16,
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status of an error answer, if the server sent one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one server, authenticated as one user.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Checks the flags and builds the client.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let base = args.server.trim().trim_end_matches('/').to_owned();
        let valid_scheme = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty());
        if !valid_scheme || reqwest::Url::parse(&base).is_err() {
            return Err(ClientError::InvalidServer(args.server.clone()));
        }
        let token = args
            .token
            .as_deref()
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ClientError::MissingToken)?
            .to_owned();
        if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(ClientError::InvalidToken);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Self { http, base, token })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, path, &[], None).await
    }

    /// `GET path?query`.
    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(reqwest::Method::POST, path, &[], Some(body))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::DELETE, path, &[], None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .timeout(CALL_TIMEOUT);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(error_from_answer(&url, status.as_u16(), &text));
        }
        serde_json::from_str(&text).map_err(|error| ClientError::Unexpected {
            url,
            status: status.as_u16(),
            detail: format!("not JSON ({error})"),
        })
    }

    /// Opens the caller's event stream (`GET /api/v1/events` as SSE). When
    /// this returns, the server has subscribed the connection: every event
    /// published from then on arrives on it. `last_event_id` replays the
    /// events after that id that the server still keeps.
    pub async fn events(
        &self,
        last_event_id: Option<&str>,
        endpoint_id: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let url = match endpoint_id {
            Some(endpoint_id) => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("endpoint_id", endpoint_id)
                    .finish();
                self.url(&format!("/api/v1/events?{query}"))
            }
            None => self.url("/api/v1/events"),
        };
        let mut request = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(CALL_TIMEOUT, request.send())
            .await
            .map_err(|_| ClientError::Unexpected {
                url: url.clone(),
                status: 0,
                detail: "no answer in time".to_owned(),
            })?
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(error_from_answer(&url, status.as_u16(), &text));
        }
        Ok(EventStream {
            url,
            response,
            parser: SseParser::default(),
        })
    }
}

/// Turns an error answer into [`ClientError::Api`] when it has the server's
/// error shape, else into [`ClientError::Unexpected`] with the start of the body.
fn error_from_answer(url: &str, status: u16, text: &str) -> ClientError {
    let document: Option<Value> = serde_json::from_str(text).ok();
    let error = document.as_ref().map(|document| &document["error"]);
    match error.and_then(|error| error["message"].as_str()) {
        Some(message) => ClientError::Api {
            status,
            code: error
                .and_then(|error| error["code"].as_str())
                .unwrap_or("error")
                .to_owned(),
            message: message.to_owned(),
            param: error
                .and_then(|error| error["param"].as_str())
                .map(str::to_owned),
        },
        None => ClientError::Unexpected {
            url: url.to_owned(),
            status,
            detail: text.chars().take(300).collect::<String>().trim().to_owned(),
        },
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id:` field (the server's event sequence number).
    pub id: Option<String>,
    /// The `event:` field (the event type).
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// An incremental SSE parser: feed it bytes, take complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes of an unfinished line.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if std::mem::take(&mut self.has_data) {
                    return Some(event);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            if line.starts_with(':') {
                // A comment: the server's keep-alive.
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "event" => self.current.event = Some(value.to_owned()),
                "id" => self.current.id = Some(value.to_owned()),
                _ => {}
            }
        }
        None
    }
}

/// The open event stream of one connection.
pub struct EventStream {
    url: String,
    response: reqwest::Response,
    parser: SseParser,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            if self.parser.pending() > MAX_EVENT_BYTES {
                return Err(ClientError::Unexpected {
                    url: self.url.clone(),
                    status: 200,
                    detail: "an event stream line is larger than 1 MiB".to_owned(),
                });
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| ClientError::Unreachable {
                    url: self.url.clone(),
                    source,
                })?;
            match chunk {
                Some(bytes) => self.parser.feed(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Prints a JSON document, pretty, to stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}

/// Prints text to stdout as is.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// A JSON field as display text: strings without quotes, `-` for null or missing.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) if text.is_empty() => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` (UTC), `-` for null.
pub fn short_time(value: &Value) -> String {
    match value.as_str() {
        Some(time) if time.len() >= 19 => format!("{} {}", &time[..10], &time[11..19]),
        _ => text(value),
    }
}

/// A plain-text table with left-aligned columns separated by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut rendered = String::new();
        for (index, (cell, width)) in cells.zip(&widths).enumerate() {
            if index > 0 {
                rendered.push_str("  ");
            }
            rendered.push_str(cell);
            let padding = width.saturating_sub(cell.chars().count());
            rendered.extend(std::iter::repeat_n(' ', padding));
        }
        out.push_str(rendered.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Whether stdin and stderr are a terminal (a person can answer a prompt).
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks a yes/no question on stderr and reads the answer from stdin.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Percent-encodes one path segment (ids typed by a person may hold anything).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str, token: Option<&str>) -> ClientArgs {
        ClientArgs {
            server: server.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn flags_are_checked() {
        let client = Client::new(&args("http://127.0.0.1:8080/", Some("sym_abc"))).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:8080");
        assert!(matches!(
            Client::new(&args("127.0.0.1:8080", Some("sym_abc"))),
            Err(ClientError::InvalidServer(_))
        ));
        assert!(matches!(
            Client::new(&args("http://127.0.0.1:8080", None)),
            Err(ClientError::MissingToken)
        ));
        assert!(matches!(
            Client::new(&args("http://127.0.0.1:8080", Some("  "))),
            Err(ClientError::MissingToken)
        ));
        assert!(matches!(
            Client::new(&args("http://127.0.0.1:8080", Some("a\nb"))),
            Err(ClientError::InvalidToken)
        ));
    }

    #[test]
    fn error_answers_show_the_server_message_and_code() {
        let error = error_from_answer(
            "http://x/api/v1/endpoints/e1",
            404,
            r#"{"error":{"message":"endpoint not found","type":"invalid_request_error","code":"endpoint_not_found","param":null}}"#,
        );
        assert_eq!(
            error.to_string(),
            "endpoint not found (HTTP 404, endpoint_not_found)"
        );
        assert_eq!(error.status(), Some(404));
        let error = error_from_answer("http://x/y", 502, "<html>Bad Gateway</html>");
        assert_eq!(
            error.to_string(),
            "unexpected answer from http://x/y (HTTP 502): <html>Bad Gateway</html>"
        );
    }

    #[test]
    fn the_sse_parser_handles_split_frames_comments_and_crlf() {
        let mut parser = SseParser::default();
        parser.feed(b": keep-alive\n\nid: 7\nevent: DEPLOYMENT_PROGRESS\nda");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"ta: {\"stage\":\"analyzing\"}\n\r\n");
        assert_eq!(
            parser.next_event(),
            Some(SseEvent {
                id: Some("7".to_owned()),
                event: Some("DEPLOYMENT_PROGRESS".to_owned()),
                data: "{\"stage\":\"analyzing\"}".to_owned(),
            })
        );
        parser.feed(b"data: a\r\ndata:b\r\n\r\nid: 9\n\n");
        assert_eq!(parser.next_event().unwrap().data, "a\nb");
        // An event without data is not dispatched.
        assert_eq!(parser.next_event(), None);
        assert_eq!(parser.pending(), 0);
    }

    #[test]
    fn tables_align_columns() {
        let rendered = table(
            &["ID", "NAME"],
            &[
                vec!["e1".to_owned(), "smol".to_owned()],
                vec!["endpoint-2".to_owned(), "-".to_owned()],
            ],
        );
        assert_eq!(
            rendered,
            "ID          NAME\ne1          smol\nendpoint-2  -\n"
        );
    }

    #[test]
    fn display_helpers() {
        assert_eq!(
            short_time(&Value::String("2026-01-02T03:04:05.678Z".to_owned())),
            "2026-01-02 03:04:05"
        );
        assert_eq!(short_time(&Value::Null), "-");
        assert_eq!(text(&serde_json::json!(1.5)), "1.5");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}

//! `GET /api/v1/events`: the caller's events as a WebSocket (when the
//! request asks to upgrade) or as Server-Sent Events. Browsers cannot set
//! headers on either, so the management token may also come as `?token=`,
//! or the dashboard's session cookie is used.
//! `Last-Event-ID` (or `?since=`) replays what a reconnecting client missed.
//! `?endpoint_id=` keeps only one endpoint's events. A `DEPLOYMENT_COMPLETE`
//! event carries the new API key to the first connection that receives it,
//! and never again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::domain::User;
use crate::error::HttpError;
use crate::events::{Event, EventKind};
use crate::gateway::bearer_token;
use crate::state::SharedState;

/// The events route.
pub async fn events(State(state): State<SharedState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let token = bearer_token(&parts.headers)
        .map(str::to_owned)
        .or_else(|| param("token"));
    let user = match token {
        Some(token) => authenticate(&state, Some(&token)).await,
        // The dashboard's EventSource sends its session cookie (same site only).
        None => crate::dashboard::session::session_from_headers(&state, &parts.headers)
            .await
            .and_then(|session| {
                session
                    .map(|session| session.user)
                    .ok_or_else(HttpError::unauthorized)
            }),
    };
    let user = match user {
        Ok(user) => user,
        Err(error) => return error.into_response(),
    };
    let since = parts
        .headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| param("since"))
        .and_then(|text| text.parse::<u64>().ok());
    let endpoint_filter = param("endpoint_id").filter(|id| !id.is_empty());
    let wants_upgrade = parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if wants_upgrade {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => {
                // Clients send nothing but pings and closes: small frames only.
                let upgrade = upgrade
                    .max_message_size(64 * 1024)
                    .max_frame_size(64 * 1024);
                // Subscribed before the upgrade: nothing published meanwhile is missed.
                let cursor = Cursor::new(state.clone(), &user, since, endpoint_filter);
                upgrade.on_upgrade(move |socket| serve_socket(state, cursor, socket))
            }
            Err(rejection) => rejection.into_response(),
        };
    }
    Sse::new(sse_stream(state, user, since, endpoint_filter))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn authenticate(state: &SharedState, token: Option<&str>) -> Result<User, HttpError> {
    let token = token
        .filter(|token| !token.is_empty() && token.len() <= 256)
        .ok_or_else(HttpError::unauthorized)?;
    let hash = state.secrets.hash_token(token);
    state
        .store
        .find_user_by_token_hash(&hash)
        .await?
        .ok_or_else(HttpError::unauthorized)
}

/// The JSON text sent for an event: with the new key added to the first
/// delivery of a `DEPLOYMENT_COMPLETE`.
async fn render(state: &SharedState, event: &Event) -> String {
    if event.kind != EventKind::DeploymentComplete {
        return event.json.to_string();
    }
    let Ok(mut document) = serde_json::from_str::<Value>(&event.json) else {
        return event.json.to_string();
    };
    if document["has_api_key"] == Value::Bool(true) {
        if let Some(job_id) = document["job_id"].as_str().map(str::to_owned) {
            if let Some(key) = super::deploy::take_key(state, &job_id).await {
                document["api_key"] = Value::String(key);
            }
        }
    }
    document.to_string()
}

struct Cursor {
    state: SharedState,
    user_id: String,
    backlog: std::collections::VecDeque<Arc<Event>>,
    receiver: tokio::sync::broadcast::Receiver<Arc<Event>>,
    last_seq: u64,
    endpoint_filter: Option<String>,
}

impl Cursor {
    fn new(
        state: SharedState,
        user: &User,
        since: Option<u64>,
        endpoint_filter: Option<String>,
    ) -> Self {
        // Subscribe before reading the backlog so nothing falls in between.
        let receiver = state.events.subscribe();
        let backlog = since
            .map(|since| state.events.replay(&user.id, since).into())
            .unwrap_or_default();
        Self {
            state,
            user_id: user.id.clone(),
            backlog,
            receiver,
            last_seq: since.unwrap_or(0),
            endpoint_filter,
        }
    }

    fn wants(&self, event: &Event) -> bool {
        event.user_id == self.user_id
            && event.seq > self.last_seq
            && self
                .endpoint_filter
                .as_ref()
                .is_none_or(|wanted| event.endpoint_id.as_ref() == Some(wanted))
    }

    /// The next event of this user, or `None` when the bus is gone.
    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                if !self.wants(&event) {
                    continue;
                }
                self.last_seq = self.last_seq.max(event.seq);
                return Some(event);
            }
            match self.receiver.recv().await {
                Ok(event) => {
                    if self.wants(&event) {
                        self.last_seq = event.seq;
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "event subscriber lagged; replaying");
                    self.backlog = self
                        .state
                        .events
                        .replay(&self.user_id, self.last_seq)
                        .into();
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_stream(
    state: SharedState,
    user: User,
    since: Option<u64>,
    endpoint_filter: Option<String>,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    let cursor = Cursor::new(state, &user, since, endpoint_filter);
    stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        let text = render(&cursor.state, &event).await;
        let sse = SseEvent::default()
            .id(event.seq.to_string())
            .event(event.kind.as_str())
            .data(text);
        Some((Ok(sse), cursor))
    })
}

async fn serve_socket(state: SharedState, mut cursor: Cursor, mut socket: WebSocket) {
    loop {
        tokio::select! {
            event = cursor.next() => {
                let Some(event) = event else { break };
                let text = render(&state, &event).await;
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Ping(payload))) => {
                    if socket.send(Message::Pong(payload)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            () = state.hard_stop.cancelled() => break,
        }
    }
}

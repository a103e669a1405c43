//! Real-time events for users: deployment progress, status changes, health
//! alerts, usage and credit warnings. One in-process bus; each subscriber
//! sees only its own user's events. Recent events are kept so a client that
//! reconnects with `Last-Event-ID` misses nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::domain::{format_time, now_ms};

/// How many recent events are kept for replay (all users together).
const RECENT: usize = 2048;

crate::domain::wire_enum!(
    /// The event types of the stream.
    EventKind {
        DeploymentStarted => "DEPLOYMENT_STARTED",
        DeploymentProgress => "DEPLOYMENT_PROGRESS",
        DeploymentComplete => "DEPLOYMENT_COMPLETE",
        DeploymentFailed => "DEPLOYMENT_FAILED",
        EndpointStatusChanged => "ENDPOINT_STATUS_CHANGED",
        EndpointHealthAlert => "ENDPOINT_HEALTH_ALERT",
        EndpointUsageUpdate => "ENDPOINT_USAGE_UPDATE",
        CreditsLowWarning => "CREDITS_LOW_WARNING",
    }
);

/// One event as delivered.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increasing id (the SSE `id:`), unique per server run.
    pub seq: u64,
    pub user_id: String,
    /// The endpoint the event is about, if any (for filtered streams).
    pub endpoint_id: Option<String>,
    pub kind: EventKind,
    /// The JSON document clients receive (`type`, `id`, fields, `created_at`).
    pub json: Arc<str>,
}

/// The bus.
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    next_seq: AtomicU64,
    recent: Mutex<VecDeque<Arc<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self {
            sender,
            // Ids start at the current time so they keep growing across restarts.
            next_seq: AtomicU64::new(u64::try_from(now_ms()).unwrap_or(1) * 1000),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        }
    }

    /// Publishes an event to `user_id`; `fields` is a JSON object.
    pub fn publish(&self, user_id: &str, kind: EventKind, fields: Value) -> Arc<Event> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let endpoint_id = fields
            .get("endpoint_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut document = Map::new();
        document.insert("id".to_owned(), json!(seq.to_string()));
        document.insert("type".to_owned(), json!(kind.as_str()));
        if let Value::Object(fields) = fields {
            document.extend(fields);
        }
        document.insert("created_at".to_owned(), json!(format_time(now_ms())));
        let event = Arc::new(Event {
            seq,
            user_id: user_id.to_owned(),
            endpoint_id,
            kind,
            json: Arc::from(Value::Object(document).to_string()),
        });
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        tracing::debug!(user_id, kind = kind.as_str(), seq, "event");
        // No subscriber is not an error.
        let _ = self.sender.send(event.clone());
        event
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// The user's kept events after `after_seq`, oldest first.
    pub fn replay(&self, user_id: &str, after_seq: u64) -> Vec<Arc<Event>> {
        self.recent
            .lock()
            .map(|recent| {
                recent
                    .iter()
                    .filter(|event| event.user_id == user_id && event.seq > after_seq)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The user's most recent kept events, newest last (at most `limit`).
    pub fn recent_for(&self, user_id: &str, limit: usize) -> Vec<Arc<Event>> {
        let mut events = self.replay(user_id, 0);
        let skip = events.len().saturating_sub(limit);
        events.drain(..skip);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_and_replay_is_per_user() {
        let bus = EventBus::new();
        let mut receiver = bus.subscribe();
        let first = bus.publish(
            "u1",
            EventKind::DeploymentProgress,
            json!({"endpoint_id": "e1", "stage": "provisioning", "percent": 40}),
        );
        bus.publish(
            "u2",
            EventKind::CreditsLowWarning,
            json!({"current_balance": 1}),
        );
        let received = receiver.recv().await.unwrap();
        assert_eq!(received.seq, first.seq);
        let document: Value = serde_json::from_str(&received.json).unwrap();
        assert_eq!(document["type"], "DEPLOYMENT_PROGRESS");
        assert_eq!(document["stage"], "provisioning");
        assert_eq!(document["id"], first.seq.to_string());
        assert_eq!(bus.replay("u1", 0).len(), 1);
        assert_eq!(bus.replay("u1", first.seq).len(), 0);
        assert_eq!(bus.replay("u2", 0).len(), 1);
        assert_eq!(bus.recent_for("u1", 10).len(), 1);
    }
}

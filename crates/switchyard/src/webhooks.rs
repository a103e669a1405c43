//! Outbound webhooks: every event of the bus is also POSTed, signed, to the
//! user's subscribed URLs (host applications that want the same events).
//!
//! Headers: `X-Switchyard-Event` (type), `X-Switchyard-Delivery` (event id),
//! `X-Switchyard-Timestamp` (epoch ms) and `X-Switchyard-Signature:
//! sha256=<hex HMAC-SHA-256 of "<timestamp>.<body>">` with the subscription's
//! secret, the same scheme the training-complete webhook checks. A delivery
//! that fails is retried three times (1 s, 5 s, 25 s). API keys never travel
//! in webhooks: the bus events carry none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::domain::now_ms;
use crate::events::{Event, EventBus};
use crate::secrets::Secrets;
use crate::store::{Store, StoreError, Webhook};

/// Waits before the retries of a failed delivery.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
];

/// Delivers events to subscriptions.
pub struct WebhookDispatcher {
    store: Store,
    secrets: Arc<Secrets>,
    client: reqwest::Client,
    by_user: ArcSwap<HashMap<String, Vec<Webhook>>>,
    in_flight: Arc<Semaphore>,
}

impl WebhookDispatcher {
    /// A dispatcher with an empty cache (call [`WebhookDispatcher::reload`]).
    pub fn new(store: Store, secrets: Arc<Secrets>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            store,
            secrets,
            client,
            by_user: ArcSwap::from_pointee(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(32)),
        }
    }

    /// Reloads the subscriptions from the store (after every change).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut by_user: HashMap<String, Vec<Webhook>> = HashMap::new();
        for hook in self.store.list_all_webhooks().await? {
            by_user.entry(hook.user_id.clone()).or_default().push(hook);
        }
        self.by_user.store(Arc::new(by_user));
        Ok(())
    }

    /// Delivers every event until shutdown.
    pub async fn run(self: Arc<Self>, bus: Arc<EventBus>, shutdown: CancellationToken) {
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "cannot load webhook subscriptions");
        }
        let mut receiver = bus.subscribe();
        // Subscriptions changed through another instance arrive with this reload.
        let mut refresh = tokio::time::interval(Duration::from_secs(30));
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = refresh.tick() => {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(%error, "cannot reload webhook subscriptions");
                    }
                    continue;
                }
                event = receiver.recv() => event,
            };
            match event {
                Ok(event) => self.dispatch(&event),
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "webhook dispatcher lagged behind the event bus");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn dispatch(self: &Arc<Self>, event: &Arc<Event>) {
        let hooks = self.by_user.load();
        let Some(hooks) = hooks.get(&event.user_id) else {
            return;
        };
        for hook in hooks {
            if !hook.events.is_empty()
                && !hook.events.iter().any(|kind| kind == event.kind.as_str())
            {
                continue;
            }
            let secret = match self.secrets.decrypt(&hook.secret_encrypted) {
                Ok(secret) => secret,
                Err(error) => {
                    tracing::error!(webhook_id = %hook.id, %error, "cannot decrypt the webhook secret");
                    continue;
                }
            };
            let dispatcher = self.clone();
            let event = event.clone();
            let hook = hook.clone();
            tokio::spawn(async move {
                let Ok(_permit) = dispatcher.in_flight.clone().acquire_owned().await else {
                    return;
                };
                dispatcher.deliver(&hook, &secret, &event).await;
            });
        }
    }

    async fn deliver(&self, hook: &Webhook, secret: &str, event: &Event) {
        let body = event.json.as_bytes().to_vec();
        for attempt in 0..=RETRY_DELAYS.len() {
            let timestamp = now_ms();
            let signature = crate::api::deploy::sign(secret, timestamp, &body);
            let outcome = self
                .client
                .post(&hook.url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("x-switchyard-event", event.kind.as_str())
                .header("x-switchyard-delivery", event.seq.to_string())
                .header("x-switchyard-timestamp", timestamp.to_string())
                .header("x-switchyard-signature", signature)
                .body(body.clone())
                .send()
                .await;
            match outcome {
                Ok(response) if response.status().is_success() => {
                    metrics::counter!("switchyard_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                    return;
                }
                Ok(response) => {
                    tracing::warn!(webhook_id = %hook.id, status = response.status().as_u16(), attempt, "webhook delivery refused");
                }
                Err(error) => {
                    tracing::warn!(webhook_id = %hook.id, %error, attempt, "webhook delivery failed");
                }
            }
            if let Some(delay) = RETRY_DELAYS.get(attempt) {
                tokio::time::sleep(*delay).await;
            }
        }
        metrics::counter!("switchyard_webhook_deliveries_total", "outcome" => "dropped")
            .increment(1);
        tracing::error!(webhook_id = %hook.id, event = event.kind.as_str(), "webhook delivery given up after retries");
    }
}

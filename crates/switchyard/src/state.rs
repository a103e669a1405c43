//! Shared application state handed to every handler.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::gateway::upstream::UpstreamClient;
use crate::pricing::PriceTable;
use crate::recorder::UsageSink;
use crate::registry::Registry;
use crate::secrets::Secrets;
use crate::shared_limits::SharedLimiter;
use crate::store::Store;

/// Settings the handlers need at run time.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub public_url: Option<String>,
    pub listen_url: String,
    /// Whether webhooks may point at this machine or private networks.
    pub allow_private_webhooks: bool,
    /// Retries, circuit breakers and backend health checks.
    pub resilience: crate::gateway::resilience::Resilience,
    /// Origins allowed to call `/api/v1/*` and `/v1/*` from a browser (see `cors`).
    pub cors_allowed_origins: Vec<String>,
}

/// Everything a handler can reach.
pub struct AppState {
    pub store: Store,
    pub registry: Arc<Registry>,
    /// The control plane (deploy jobs, reconcile loop).
    pub deployer: Arc<crate::deploy::Deployer>,
    pub providers: crate::providers::Providers,
    pub events: Arc<crate::events::EventBus>,
    pub webhooks: Arc<crate::webhooks::WebhookDispatcher>,
    pub secrets: Arc<Secrets>,
    pub pricing: Arc<PriceTable>,
    pub usage: UsageSink,
    pub upstream: UpstreamClient,
    pub settings: RuntimeSettings,
    pub metrics: PrometheusHandle,
    /// Rate limits shared through Redis, when configured.
    pub shared_limits: Option<SharedLimiter>,
    /// Cancelled when the shutdown grace period is over: requests still
    /// running end at once and record what they produced.
    pub hard_stop: tokio_util::sync::CancellationToken,
}

/// The state as axum shares it.
pub type SharedState = Arc<AppState>;

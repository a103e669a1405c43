//! Start-up and shutdown: opens the store, bootstraps the admin, builds the
//! router, serves it with TCP_NODELAY, and on shutdown drains connections and
//! flushes every queued usage record.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deploy::hub::HubClient;
use crate::deploy::{DeploySettings, Deployer};
use crate::error::HttpError;
use crate::events::EventBus;
use crate::gateway::upstream::UpstreamClient;
use crate::pricing::PriceTable;
use crate::providers::http::management_client;
use crate::providers::Providers;
use crate::recorder::{self, RecorderTotals};
use crate::registry::Registry;
use crate::secrets::Secrets;
use crate::shared_limits::SharedLimiter;
use crate::state::{AppState, RuntimeSettings, SharedState};
use crate::store::Store;
use crate::tokens::{display_prefix, generate_management_token};
use crate::{api, connect_widget, cors, gateway};

/// A server that is running.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The admin token when one was generated on this start (shown once).
    pub generated_admin_token: Option<String>,
    pub state: SharedState,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<RecorderTotals>>,
}

impl RunningServer {
    /// Asks the server to stop and waits until usage is flushed.
    pub async fn shutdown(self) -> anyhow::Result<RecorderTotals> {
        self.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }

    /// Waits until the server stops by itself (after `trigger` fires).
    pub async fn wait(self) -> anyhow::Result<RecorderTotals> {
        self.task.await.context("server task panicked")?
    }

    /// The token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Opens everything and starts serving; returns once the socket listens.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let secrets = Arc::new(Secrets::load(
        config.secret_key.as_deref(),
        &config.data_dir,
    )?);
    let store = match &config.database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_sqlite(&config.data_dir).await,
    }
    .context("cannot open the database")?;
    let generated_admin_token =
        bootstrap_admin(&store, &secrets, config.admin_token.as_deref()).await?;
    let pricing = Arc::new(PriceTable::embedded()?);
    let registry = Arc::new(
        Registry::load(
            store.clone(),
            secrets.clone(),
            pricing.clone(),
            config.markup_basis_points,
        )
        .await?,
    );

    let shared_limits = match &config.redis_url {
        Some(url) => Some(
            SharedLimiter::connect(url)
                .await
                .context("cannot connect to Redis")?,
        ),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let recorder_shutdown = CancellationToken::new();
    let (usage, recorder_task) = recorder::start(
        store.clone(),
        100_000,
        config.usage_flush_interval,
        recorder_shutdown.clone(),
    );
    let providers = Providers::from_config(&config.providers);
    let events = Arc::new(EventBus::new());
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let deployer = Arc::new(Deployer::new(
        store.clone(),
        providers.clone(),
        registry.clone(),
        secrets.clone(),
        pricing.clone(),
        HubClient::new(config.providers.hub.clone(), management_client()),
        events.clone(),
        DeploySettings {
            poll_interval: config.deploy_poll_interval,
            ready_timeout: config.deploy_ready_timeout,
            lease: config.job_lease,
            scan_interval: std::time::Duration::from_secs(2).min(config.deploy_poll_interval * 10),
            reconcile_interval: config.reconcile_interval,
            training_webhook_secret: config.training_webhook_secret.clone(),
            markup_basis_points: config.markup_basis_points,
            public_url,
            monitor: config.monitor.clone(),
        },
    ));
    let deployer_shutdown = CancellationToken::new();
    let deployer_task = tokio::spawn(deployer.clone().run(deployer_shutdown.clone()));
    let webhooks = Arc::new(crate::webhooks::WebhookDispatcher::new(
        store.clone(),
        secrets.clone(),
    ));
    tokio::spawn(
        webhooks
            .clone()
            .run(events.clone(), deployer_shutdown.clone()),
    );
    let state: SharedState = Arc::new(AppState {
        store: store.clone(),
        registry,
        deployer,
        providers,
        events,
        webhooks,
        secrets,
        pricing,
        usage,
        upstream: UpstreamClient::new(config.upstream_connect_timeout),
        settings: RuntimeSettings {
            max_body_bytes: config.max_body_bytes,
            upstream_timeout: config.upstream_timeout,
            stream_idle_timeout: config.stream_idle_timeout,
            public_url: config.public_url.clone(),
            listen_url: format!("http://{addr}"),
            allow_private_webhooks: config.allow_private_webhooks,
            resilience: config.resilience,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
        },
        metrics: metrics_handle(),
        shared_limits,
        hard_stop: hard_stop.clone(),
    });
    let app = router(state.clone());
    // Histograms gather raw samples until upkeep folds them into buckets;
    // without it memory grows with every request between scrapes.
    let upkeep_handle = state.metrics.clone();
    tokio::spawn(crate::gateway::resilience::run_health_checks(
        state.registry.clone(),
        state.upstream.clone(),
        state.settings.resilience,
        deployer_shutdown.clone(),
    ));
    let upkeep_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = interval.tick() => upkeep_handle.run_upkeep(),
                () = upkeep_shutdown.cancelled() => break,
            }
        }
    });
    let grace = config.shutdown_grace;
    let usage_sink = state.usage.clone();
    let serve_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY");
            }
        });
        let drain = CancellationToken::new();
        let drain_signal = drain.clone();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { drain_signal.cancelled().await });
        let server = std::pin::pin!(server.into_future());
        run_until_shutdown(server, serve_shutdown, drain, hard_stop, grace).await;
        // Deploy jobs stop at their next step; they resume on the next start.
        deployer_shutdown.cancel();
        if tokio::time::timeout(std::time::Duration::from_secs(5), deployer_task)
            .await
            .is_err()
        {
            tracing::warn!("deploy jobs still running at shutdown; they resume on the next start");
        }
        // Wait for the records of requests that ended as the server stopped.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while usage_sink.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if usage_sink.in_flight() > 0 {
            tracing::error!(
                in_flight = usage_sink.in_flight(),
                "requests still running after shutdown; their usage is lost"
            );
        }
        recorder_shutdown.cancel();
        let totals = recorder_task.await.context("usage recorder panicked")?;
        store.close().await;
        tracing::info!(
            usage_rows = totals.usage_rows,
            charges = totals.charges,
            failed_batches = totals.failed_batches,
            "flushed usage records on shutdown; no usage queued in memory remains"
        );
        Ok(totals)
    });
    Ok(RunningServer {
        addr,
        generated_admin_token,
        state,
        shutdown,
        task,
    })
}

async fn run_until_shutdown<F>(
    mut server: std::pin::Pin<&mut F>,
    shutdown: CancellationToken,
    drain: CancellationToken,
    hard_stop: CancellationToken,
    grace: std::time::Duration,
) where
    F: Future<Output = std::io::Result<()>>,
{
    tokio::select! {
        result = server.as_mut() => {
            if let Err(error) = result {
                tracing::error!(%error, "server stopped with an error");
            }
            return;
        }
        () = shutdown.cancelled() => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections, draining open ones"
    );
    drain.cancel();
    match tokio::time::timeout(grace, server.as_mut()).await {
        Ok(Ok(())) => return,
        Ok(Err(error)) => {
            tracing::error!(%error, "server stopped with an error");
            return;
        }
        Err(_) => tracing::warn!("grace period over; ending the remaining requests"),
    }
    // Streams and upstream calls still running end now and record what they produced.
    hard_stop.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(5), server.as_mut())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after ending every request; closing them");
    }
}

/// Builds the full router.
pub fn router(state: SharedState) -> Router {
    let cors = cors::layer(&state.settings.cors_allowed_origins);
    let router = Router::new()
        .merge(gateway::router())
        .merge(api::router())
        .merge(connect_widget::router())
        .merge(crate::dashboard::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // Last, so that it also wraps the fallbacks: a preflight `OPTIONS` of a
    // GET-only route is answered by the method-not-allowed fallback's layer.
    match cors {
        Some(gate) => router.layer(gate),
        None => router,
    }
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#)
}

async fn readyz(State(state): State<SharedState>) -> Response {
    match state.store.ping().await {
        Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"unavailable","reason":"database"}"#,
            )
        }
    }
}

/// `/metrics` names every tenant's endpoints, so it needs an admin token.
async fn render_metrics(State(state): State<SharedState>, _admin: crate::api::Admin) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "this route does not accept that method",
    )
}

async fn not_found(uri: http::Uri, headers: http::HeaderMap) -> Response {
    let path = uri.path();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !path.starts_with("/api/") && !path.starts_with("/v1/") {
        return crate::dashboard::not_found_page();
    }
    HttpError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "route_not_found",
        "no such route",
    )
    .into_response()
}

fn json_response(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Installs the Prometheus recorder once per process.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".to_owned()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => {
                    describe_metrics();
                    handle
                }
                Err(error) => {
                    tracing::warn!(%error, "a metrics recorder is already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe_metrics() {
    metrics::describe_counter!(
        "switchyard_requests_total",
        "Gateway requests that reached an upstream, by status class"
    );
    metrics::describe_counter!(
        "switchyard_gateway_rejections_total",
        "Gateway requests refused, by error code"
    );
    metrics::describe_counter!(
        "switchyard_rate_limit_rejections_total",
        "Requests refused by a rate limit"
    );
    metrics::describe_counter!(
        "switchyard_credit_rejections_total",
        "Requests refused for lack of credits"
    );
    metrics::describe_histogram!(
        "switchyard_request_duration_seconds",
        "Total gateway request time by endpoint"
    );
    metrics::describe_histogram!(
        "switchyard_upstream_duration_seconds",
        "Upstream time by endpoint"
    );
    metrics::describe_gauge!(
        "switchyard_streams_in_flight",
        "Streams currently being relayed"
    );
    metrics::describe_counter!(
        "switchyard_usage_rows_written_total",
        "Usage records written to the store"
    );
    metrics::describe_counter!(
        "switchyard_usage_dropped_total",
        "Usage records that could not be written"
    );
}

/// Ensures an admin exists. Returns a generated token when one was created.
async fn bootstrap_admin(
    store: &Store,
    secrets: &Secrets,
    configured: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = configured {
        // The configured token replaces every earlier token of the admin, so
        // rotating SWITCHYARD_ADMIN_TOKEN revokes a leaked one.
        let hash = secrets.hash_token(token);
        let admin = match store.find_admin().await? {
            Some(admin) => {
                if store.find_user_by_token_hash(&hash).await?.is_none() {
                    store
                        .add_management_token(&admin.id, &hash, &display_prefix(token))
                        .await?;
                }
                admin
            }
            None => {
                store
                    .create_user("admin", true, &hash, &display_prefix(token))
                    .await?
            }
        };
        let revoked = store.revoke_other_tokens(&admin.id, &hash).await?;
        if revoked > 0 {
            tracing::info!(
                revoked,
                "earlier admin tokens revoked in favour of SWITCHYARD_ADMIN_TOKEN"
            );
        }
        tracing::info!("admin token taken from SWITCHYARD_ADMIN_TOKEN");
        return Ok(None);
    }
    if store.find_admin().await?.is_some() {
        return Ok(None);
    }
    let token = generate_management_token();
    store
        .create_user(
            "admin",
            true,
            &secrets.hash_token(&token),
            &display_prefix(&token),
        )
        .await?;
    Ok(Some(token))
}

//! One endpoint's page, with tabs as links (`?tab=`): overview (connection
//! info, scaling, quick stats, code samples), usage (server-rendered SVG charts
//! per period), API keys, settings, and health with live events. Everything is
//! rendered here; `assets/endpoint.js` only calls the JSON API and fetches the
//! keys and events fragments again after a change.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::dashboard::charts::{self, Chart, Series, TimeAxis, Tone, Unit};
use crate::dashboard::layout::{self, Layout};
use crate::dashboard::pages::overview::{event_row, EventRow};
use crate::dashboard::samples::CodeSamples;
use crate::dashboard::session::{Session, Viewer};
use crate::dashboard::{html_response, render};
use crate::deploy::monitor::{self, EndpointHealth, HealthStatus};
use crate::domain::{now_ms, ApiKey, Endpoint, EndpointStatus};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::{UsageSeries, LATENCY_ROWS_CAP};

const HOUR_MS: i64 = 3_600_000;
use crate::domain::DAY_MS;
/// Events of the endpoint listed on the health tab.
const EVENTS_SHOWN: usize = 20;

/// The tabs, in order: (key, label).
const TABS: [(&str, &str); 5] = [
    ("overview", "Overview"),
    ("usage", "Usage & analytics"),
    ("keys", "API keys"),
    ("settings", "Settings"),
    ("health", "Health & events"),
];

/// The usage periods: (key, label, bucket length, bucket count).
const PERIODS: [(&str, &str, i64, usize); 3] = [
    ("day", "24 hours", HOUR_MS, 24),
    ("week", "7 days", 6 * HOUR_MS, 28),
    ("month", "30 days", DAY_MS, 30),
];

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    tab: Option<String>,
    period: Option<String>,
    /// `keys` or `events`: only that list (for refreshes without a reload).
    fragment: Option<String>,
}

/// One tab link.
pub struct TabLink {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One period link of the usage tab.
pub struct PeriodLink {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The header of the page, on every tab.
pub struct Summary {
    pub id: String,
    pub name: String,
    pub model: String,
    pub description: String,
    pub provider: String,
    pub modality: &'static str,
    pub status: &'static str,
    pub status_class: &'static str,
    pub terminated: bool,
    pub error_message: Option<String>,
    pub created_iso: String,
    pub created_text: String,
}

/// The overview tab.
pub struct OverviewTab {
    pub endpoint_url: String,
    pub openai_base_url: String,
    pub model_name: String,
    pub gpu_type: String,
    pub endpoint_type: &'static str,
    pub min_workers: i64,
    pub max_workers: i64,
    pub idle_timeout: String,
    pub hf_repo_url: Option<String>,
    pub base_model: Option<String>,
    pub upstream_model: String,
    pub requests: String,
    pub errors: String,
    pub average_latency: String,
    pub credits: String,
    pub samples_html: String,
}

/// The usage tab.
pub struct UsageTab {
    pub periods: Vec<PeriodLink>,
    pub period_label: &'static str,
    pub requests: String,
    pub errors: String,
    pub input_tokens: String,
    pub output_tokens: String,
    pub credits: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub latency_note: Option<String>,
    pub charts: Vec<String>,
}

/// One API key as listed.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_iso: String,
    pub created_text: String,
    pub last_used: Option<(String, String)>,
    pub per_minute: String,
    pub per_day: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub active: bool,
    pub is_test: bool,
}

#[derive(Template)]
#[template(path = "partials/key_rows.html")]
struct KeyRows {
    rows: Vec<KeyRow>,
    hidden_internal: usize,
}

/// The keys tab.
pub struct KeysTab {
    pub rows_html: String,
    pub default_per_minute: i64,
    pub default_per_day: i64,
}

/// The settings tab.
pub struct SettingsTab {
    pub name: String,
    pub description: String,
    pub min_workers: i64,
    pub max_workers: i64,
    pub idle_timeout_seconds: i64,
}

/// One backend of the endpoint with its live figures.
pub struct BackendRow {
    pub label: String,
    pub version: String,
    pub weight: String,
    pub api: String,
    pub base_url: String,
    pub model: String,
    pub in_flight: String,
    pub latency: String,
    pub breaker: String,
    pub breaker_class: &'static str,
    pub healthy: String,
}

/// The health tab.
pub struct HealthTab {
    pub status: &'static str,
    pub status_class: &'static str,
    pub issues: Vec<String>,
    pub checked_at: String,
    pub window_minutes: u64,
    pub requests: String,
    pub errors: String,
    pub error_rate: String,
    pub p50: String,
    pub p99: String,
    pub provider: Option<ProviderRow>,
    pub strategy: String,
    pub backends: Vec<BackendRow>,
    pub events_html: String,
    pub last_seq: u64,
}

/// What the provider said about the resource.
pub struct ProviderRow {
    pub reachable: bool,
    pub ready: u32,
    pub running: u32,
    pub initializing: u32,
    pub throttled: u32,
    pub unhealthy: u32,
    pub queue_depth: u32,
    pub message: Option<String>,
}

#[derive(Template)]
#[template(path = "partials/endpoint_events.html")]
struct EventRows {
    events: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct EndpointPage {
    layout: Layout,
    endpoint: Summary,
    tabs: Vec<TabLink>,
    tab: &'static str,
    tab_label: &'static str,
    overview: Option<OverviewTab>,
    usage: Option<UsageTab>,
    keys: Option<KeysTab>,
    settings: Option<SettingsTab>,
    health: Option<HealthTab>,
}

#[derive(Template)]
#[template(path = "endpoint_missing.html")]
struct MissingPage {
    layout: Layout,
}

/// `GET /endpoints/{id}`.
pub async fn page(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, HttpError> {
    let user_id = session.user.id.clone();
    let endpoint = match crate::api::owned_endpoint(&state, &user_id, &endpoint_id).await {
        Ok(endpoint) => endpoint,
        Err(error) if error.status == StatusCode::NOT_FOUND && wants_html(&headers) => {
            return Ok(missing(&session));
        }
        Err(error) => return Err(error),
    };
    match query.fragment.as_deref() {
        Some("keys") => {
            let html = key_rows_html(&state, &endpoint).await?;
            return Ok(html_response(StatusCode::OK, html));
        }
        Some("events") => {
            let (html, _) = events_html(&state, &endpoint)?;
            return Ok(html_response(StatusCode::OK, html));
        }
        _ => {}
    }
    let (tab, tab_label) = TABS
        .iter()
        .copied()
        .find(|(key, _)| Some(*key) == query.tab.as_deref())
        .unwrap_or(TABS[0]);
    let public = crate::api::public_url(&state, &headers);
    let mut page = EndpointPage {
        layout: Layout::new(&session, endpoint.name.clone(), "endpoints")
            .with_script("endpoint.js"),
        endpoint: summary(&endpoint),
        tabs: TABS
            .iter()
            .map(|(key, label)| TabLink {
                key,
                label,
                selected: *key == tab,
            })
            .collect(),
        tab,
        tab_label,
        overview: None,
        usage: None,
        keys: None,
        settings: None,
        health: None,
    };
    match tab {
        "usage" => page.usage = Some(usage_tab(&state, &endpoint, query.period.as_deref()).await?),
        "keys" => {
            page.keys = Some(KeysTab {
                rows_html: key_rows_html(&state, &endpoint).await?,
                default_per_minute: crate::api::keys::DEFAULT_PER_MINUTE,
                default_per_day: crate::api::keys::DEFAULT_PER_DAY,
            });
        }
        "settings" => {
            page.settings = Some(SettingsTab {
                name: endpoint.name.clone(),
                description: endpoint.description.clone(),
                min_workers: endpoint.min_workers,
                max_workers: endpoint.max_workers,
                idle_timeout_seconds: endpoint.idle_timeout_seconds,
            });
        }
        "health" => page.health = Some(health_tab(&state, &endpoint).await?),
        _ => page.overview = Some(overview_tab(&state, &endpoint, &public).await?),
    }
    Ok(render(&page))
}

/// Whether the client wants a page: anything but a request that accepts JSON
/// and not HTML (the dashboard's scripts ask for JSON).
fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    accept.contains("text/html") || !accept.contains("application/json")
}

/// The 404 page: the same for a missing endpoint and another user's.
fn missing(session: &Session) -> Response {
    let mut response = render(&MissingPage {
        layout: Layout::new(session, "Endpoint not found", "endpoints"),
    });
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

fn summary(endpoint: &Endpoint) -> Summary {
    Summary {
        id: endpoint.id.clone(),
        name: endpoint.name.clone(),
        model: endpoint
            .base_model
            .clone()
            .unwrap_or_else(|| endpoint.upstream_model.clone()),
        description: endpoint.description.clone(),
        provider: endpoint.provider.clone(),
        modality: endpoint.modality.as_str(),
        status: endpoint.status.as_str(),
        status_class: layout::status_class(endpoint.status),
        terminated: endpoint.status == EndpointStatus::Terminated,
        error_message: endpoint
            .error_message
            .clone()
            .filter(|_| endpoint.status == EndpointStatus::Error),
        created_iso: layout::iso(endpoint.created_at),
        created_text: layout::ago(endpoint.created_at),
    }
}

async fn overview_tab(
    state: &SharedState,
    endpoint: &Endpoint,
    public: &str,
) -> Result<OverviewTab, HttpError> {
    let info = crate::api::connection_info(endpoint, public);
    let text = |key: &str| info[key].as_str().unwrap_or_default().to_owned();
    let usage = state
        .store
        .usage_by_endpoint(&endpoint.user_id, now_ms() - DAY_MS)
        .await?;
    let figures = usage
        .into_iter()
        .find(|row| row.endpoint_id == endpoint.id)
        .unwrap_or_default();
    Ok(OverviewTab {
        endpoint_url: text("endpoint_url"),
        openai_base_url: text("openai_base_url"),
        model_name: text("model"),
        gpu_type: endpoint.gpu_type.clone().unwrap_or_else(|| "—".to_owned()),
        endpoint_type: endpoint.endpoint_type.as_str(),
        min_workers: endpoint.min_workers,
        max_workers: endpoint.max_workers,
        idle_timeout: duration_text(endpoint.idle_timeout_seconds),
        hf_repo_url: endpoint
            .hf_repo_url
            .clone()
            .filter(|url| url.starts_with("https://") || url.starts_with("http://")),
        base_model: endpoint.base_model.clone(),
        upstream_model: endpoint.upstream_model.clone(),
        requests: layout::count(figures.requests),
        errors: layout::count(figures.errors),
        average_latency: layout::latency(figures.average_latency_ms, figures.requests),
        credits: layout::credits(figures.cost_micro_usd),
        samples_html: CodeSamples::for_endpoint(endpoint, public, "endpoint").html(),
    })
}

/// `300` → `5 min`; `0` → `never`.
fn duration_text(seconds: i64) -> String {
    match seconds {
        0 => "never (always on)".to_owned(),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The buckets of a period, ending with the bucket that holds now.
pub fn period_axis(now: i64, bucket_ms: i64, buckets: usize) -> TimeAxis {
    let end = (now.div_euclid(bucket_ms) + 1) * bucket_ms;
    TimeAxis {
        start_ms: end - bucket_ms * buckets as i64,
        bucket_ms,
        buckets,
    }
}

async fn usage_tab(
    state: &SharedState,
    endpoint: &Endpoint,
    period: Option<&str>,
) -> Result<UsageTab, HttpError> {
    let (key, label, bucket_ms, buckets) = PERIODS
        .iter()
        .copied()
        .find(|(key, ..)| Some(*key) == period)
        .unwrap_or(PERIODS[0]);
    let axis = period_axis(now_ms(), bucket_ms, buckets);
    let series = state
        .store
        .usage_series(
            &endpoint.user_id,
            &endpoint.id,
            axis.start_ms,
            bucket_ms,
            buckets,
        )
        .await?;
    let totals = state
        .store
        .usage_summary(&endpoint.user_id, &endpoint.id, axis.start_ms)
        .await?;
    let latency = |ms: i64| layout::latency(ms, totals.requests);
    Ok(UsageTab {
        periods: PERIODS
            .iter()
            .map(|(period, label, ..)| PeriodLink {
                key: period,
                label,
                selected: *period == key,
            })
            .collect(),
        period_label: label,
        requests: layout::count(totals.requests),
        errors: layout::count(totals.errors),
        input_tokens: layout::count(totals.input_tokens),
        output_tokens: layout::count(totals.output_tokens),
        credits: layout::credits(totals.cost_micro_usd),
        p50: latency(totals.latency_p50_ms),
        p95: latency(totals.latency_p95_ms),
        p99: latency(totals.latency_p99_ms),
        latency_note: series.latency_capped.then(|| {
            format!(
                "More than {} requests in this period: the latency chart ranks the newest {} of them; the totals above count every request.",
                layout::count(LATENCY_ROWS_CAP),
                layout::count(LATENCY_ROWS_CAP)
            )
        }),
        charts: usage_charts(&series, axis),
    })
}

/// The four charts of the usage tab.
pub fn usage_charts(series: &UsageSeries, axis: TimeAxis) -> Vec<String> {
    let column = |pick: fn(&crate::store::UsageBucket) -> i64| {
        series.buckets.iter().map(move |bucket| pick(bucket) as f64)
    };
    let optional = |pick: fn(&crate::store::UsageBucket) -> Option<i64>| {
        series
            .buckets
            .iter()
            .map(|bucket| pick(bucket).map(|value| value as f64))
            .collect::<Vec<_>>()
    };
    let chart = |id: &str, title: &str, unit: Unit, series: Vec<Series>| Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        unit,
        axis,
        series,
        empty_text: "No requests in this period".to_owned(),
    };
    vec![
        charts::bar_chart(&chart(
            "chart-requests",
            "Requests and errors",
            Unit::Count,
            vec![
                Series::dense("Requests", Tone::Primary, column(|b| b.requests)),
                Series::dense("Errors", Tone::Danger, column(|b| b.errors)),
            ],
        )),
        charts::bar_chart(&chart(
            "chart-tokens",
            "Tokens",
            Unit::Count,
            vec![
                Series::dense("Input", Tone::Primary, column(|b| b.input_tokens)),
                Series::dense("Output", Tone::Secondary, column(|b| b.output_tokens)),
            ],
        )),
        charts::bar_chart(&chart(
            "chart-credits",
            "Credits used",
            Unit::Credits,
            vec![Series::dense(
                "Credits",
                Tone::Tertiary,
                column(|b| b.cost_micro_usd),
            )],
        )),
        charts::line_chart(&chart(
            "chart-latency",
            "Latency",
            Unit::Millis,
            vec![
                Series {
                    name: "p50".to_owned(),
                    tone: Tone::Primary,
                    values: optional(|b| b.latency_p50_ms),
                },
                Series {
                    name: "p95".to_owned(),
                    tone: Tone::Secondary,
                    values: optional(|b| b.latency_p95_ms),
                },
                Series {
                    name: "p99".to_owned(),
                    tone: Tone::Tertiary,
                    values: optional(|b| b.latency_p99_ms),
                },
            ],
        )),
    ]
}

/// The keys list; deployments' internal keys are left out (revoking one
/// would break its deployment), and counted.
async fn key_rows_html(state: &SharedState, endpoint: &Endpoint) -> Result<String, HttpError> {
    let keys = state
        .store
        .list_keys(&endpoint.user_id, &endpoint.id)
        .await?;
    let internal = state
        .store
        .deployment_key_ids(&endpoint.user_id, &endpoint.id)
        .await?;
    let (hidden, shown): (Vec<&ApiKey>, Vec<&ApiKey>) =
        keys.iter().partition(|key| internal.contains(&key.id));
    let rows = shown.into_iter().map(key_row).collect();
    KeyRows {
        rows,
        hidden_internal: hidden.len(),
    }
    .render()
    .map_err(|error| {
        tracing::error!(%error, "key rows template failed");
        HttpError::internal()
    })
}

fn key_row(key: &ApiKey) -> KeyRow {
    let now = now_ms();
    let (status, status_class, active) = if key.revoked_at.is_some() || !key.is_active {
        ("revoked", "badge-muted", false)
    } else if key.expires_at.is_some_and(|at| at <= now) {
        ("expired", "badge-failed", false)
    } else {
        ("active", "badge-active", true)
    };
    KeyRow {
        id: key.id.clone(),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        created_iso: layout::iso(key.created_at),
        created_text: layout::ago(key.created_at),
        last_used: key
            .last_used_at
            .map(|at| (layout::iso(at), layout::ago(at))),
        per_minute: layout::count(key.rate_limit_per_minute),
        per_day: layout::count(key.rate_limit_per_day),
        status,
        status_class,
        active,
        is_test: key.is_test,
    }
}

async fn health_tab(state: &SharedState, endpoint: &Endpoint) -> Result<HealthTab, HttpError> {
    let settings = &state.deployer.settings.monitor;
    let health = monitor::check(&state.deployer, endpoint, settings).await;
    let backends = state
        .store
        .list_backends(&endpoint.user_id, &endpoint.id)
        .await?;
    let views = crate::api::backend_views(state, endpoint, &backends);
    let (events_html, last_seq) = events_html(state, endpoint)?;
    Ok(health_view(
        &health,
        settings.window.as_secs() / 60,
        endpoint.routing.strategy.as_str(),
        views.iter().map(backend_row).collect(),
        events_html,
        last_seq,
    ))
}

fn health_view(
    health: &EndpointHealth,
    window_minutes: u64,
    strategy: &str,
    backends: Vec<BackendRow>,
    events_html: String,
    last_seq: u64,
) -> HealthTab {
    let gateway = &health.gateway;
    let latency = |ms: i64| layout::latency(ms, gateway.requests);
    HealthTab {
        status: health.status.as_str(),
        status_class: match health.status {
            HealthStatus::Healthy => "badge-active",
            HealthStatus::Degraded => "badge-deploying",
            HealthStatus::Unhealthy => "badge-failed",
            HealthStatus::Unknown => "badge-muted",
        },
        issues: health.issues.clone(),
        checked_at: health.checked_at.clone(),
        window_minutes,
        requests: layout::count(gateway.requests),
        errors: layout::count(gateway.errors),
        error_rate: if gateway.requests > 0 {
            format!("{:.1}%", gateway.error_rate * 100.0)
        } else {
            "—".to_owned()
        },
        p50: latency(gateway.latency_p50_ms),
        p99: latency(gateway.latency_p99_ms),
        provider: health.provider.as_ref().map(|provider| ProviderRow {
            reachable: provider.reachable,
            ready: provider.workers.ready,
            running: provider.workers.running,
            initializing: provider.workers.initializing,
            throttled: provider.workers.throttled,
            unhealthy: provider.workers.unhealthy,
            queue_depth: provider.queue_depth,
            message: provider.message.clone(),
        }),
        strategy: strategy.replace('_', " "),
        backends,
        events_html,
        last_seq,
    }
}

/// A backend as `api::backend_views` renders it, for the table.
fn backend_row(view: &Value) -> BackendRow {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let live = &view["live"];
    let breaker = live["breaker"].as_str().unwrap_or("unknown").to_owned();
    BackendRow {
        label: if view["primary"].as_bool() == Some(true) {
            "Primary upstream".to_owned()
        } else {
            format!("Backend {}", text(&view["id"]))
        },
        version: text(&view["version"]),
        weight: text(&view["weight"]),
        api: text(&view["upstream"]["api"]),
        base_url: text(&view["upstream"]["base_url"]),
        model: text(&view["upstream"]["model"]),
        in_flight: if live.is_null() {
            "—".to_owned()
        } else {
            text(&live["in_flight"])
        },
        latency: live["latency_ewma_ms"]
            .as_f64()
            .map_or_else(|| "—".to_owned(), |ms| format!("{ms:.0} ms")),
        breaker_class: match breaker.as_str() {
            "closed" => "badge-active",
            "half_open" => "badge-deploying",
            "open" => "badge-failed",
            _ => "badge-muted",
        },
        breaker: breaker.replace('_', " "),
        healthy: match live["healthy"].as_bool() {
            Some(true) => "healthy".to_owned(),
            Some(false) => "unhealthy".to_owned(),
            None => "not loaded".to_owned(),
        },
    }
}

/// The endpoint's recent events (newest first) and the newest sequence number.
fn events_html(state: &SharedState, endpoint: &Endpoint) -> Result<(String, u64), HttpError> {
    let recent = state.events.recent_for(&endpoint.user_id, usize::MAX);
    let last_seq = recent.last().map_or(0, |event| event.seq);
    let name_of = |id: &str| (id == endpoint.id).then(|| endpoint.name.clone());
    let events = recent
        .iter()
        .rev()
        .filter(|event| event.endpoint_id.as_deref() == Some(endpoint.id.as_str()))
        .take(EVENTS_SHOWN)
        .filter_map(|event| serde_json::from_str::<Value>(&event.json).ok())
        .map(|document| event_row(&document, &name_of))
        .collect();
    let html = EventRows { events }.render().map_err(|error| {
        tracing::error!(%error, "event rows template failed");
        HttpError::internal()
    })?;
    Ok((html, last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UsageBucket;

    #[test]
    fn periods_end_with_the_current_bucket() {
        let now = 1_772_496_000_000 + 14 * HOUR_MS + 123_456;
        let axis = period_axis(now, HOUR_MS, 24);
        assert_eq!(
            axis.start_ms + 24 * HOUR_MS,
            1_772_496_000_000 + 15 * HOUR_MS
        );
        assert!(axis.start_ms + 23 * HOUR_MS <= now);
        let days = period_axis(now, DAY_MS, 30);
        assert_eq!(days.start_ms % DAY_MS, 0);
        assert_eq!(days.start_ms + 30 * DAY_MS, 1_772_496_000_000 + DAY_MS);
    }

    #[test]
    fn charts_show_the_series_totals() {
        let axis = period_axis(1_772_496_000_000, HOUR_MS, 2);
        let series = UsageSeries {
            buckets: vec![
                UsageBucket {
                    start_ms: axis.start_ms,
                    ..UsageBucket::default()
                },
                UsageBucket {
                    start_ms: axis.start_ms + HOUR_MS,
                    requests: 3,
                    errors: 1,
                    input_tokens: 30,
                    output_tokens: 12,
                    cost_micro_usd: 500,
                    latency_p50_ms: Some(10),
                    latency_p95_ms: Some(20),
                    latency_p99_ms: Some(25),
                },
            ],
            latency_capped: false,
        };
        let charts = usage_charts(&series, axis);
        assert_eq!(charts.len(), 4);
        assert!(charts[0].contains("id=\"chart-requests\" data-total=\"3\""));
        assert!(charts[1].contains("data-total=\"30\""));
        assert!(charts[3].contains("<td>no data</td>"));
        assert!(charts[3].contains("<td>25 ms</td>"));
    }

    #[test]
    fn idle_timeouts_read_well() {
        assert_eq!(duration_text(0), "never (always on)");
        assert_eq!(duration_text(300), "5 min");
        assert_eq!(duration_text(7200), "2 h");
        assert_eq!(duration_text(45), "45 s");
    }
}

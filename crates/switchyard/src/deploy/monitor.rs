//! The health monitor: every `interval` it combines each deployed endpoint's
//! provider health (reachable, workers, queue depth) with the gateway's own
//! figures of the last 15 minutes (error rate, p99 latency) and the time
//! stuck in `scaling` into `healthy | degraded | unhealthy | unknown` with a
//! list of issues, and recovers: redeploy when unreachable or stuck scaling,
//! two more workers (up to 10) when the queue is deep, an alert suggesting a
//! larger GPU on out-of-memory errors. It also publishes usage updates and
//! low-credit warnings.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Deployer;
use crate::domain::{format_time, now_ms, Endpoint, EndpointStatus};
use crate::events::EventKind;
use crate::money::micros_to_credits_json;
use crate::providers::{ProviderHealth, ProviderKind, ProviderResource, Scaling};
use crate::store::EndpointPatch;

/// Thresholds and switches of the monitor.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub interval: Duration,
    /// Window of the gateway figures.
    pub window: Duration,
    /// Share of failed requests above which an endpoint is degraded.
    pub max_error_rate: f64,
    pub max_p99_ms: i64,
    pub stuck_scaling: Duration,
    pub max_queue_depth: u32,
    /// Workers added when the queue is deep, and the ceiling.
    pub scale_step: u32,
    pub scale_ceiling: u32,
    pub auto_recovery: bool,
    /// Failed checks in a row before a recovery runs (one bad check is not an outage).
    pub unhealthy_threshold: u32,
    /// Least time between two recoveries of one endpoint.
    pub recovery_cooldown: Duration,
    /// Balance (micro-dollars) under which a user is warned, once per crossing.
    pub low_credits_micro_usd: i64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            window: Duration::from_secs(15 * 60),
            max_error_rate: 0.1,
            max_p99_ms: 30_000,
            stuck_scaling: Duration::from_secs(5 * 60),
            max_queue_depth: 100,
            scale_step: 2,
            scale_ceiling: 10,
            auto_recovery: true,
            unhealthy_threshold: 2,
            recovery_cooldown: Duration::from_secs(10 * 60),
            low_credits_micro_usd: 1_000_000,
        }
    }
}

crate::domain::wire_enum!(
    /// The health verdict.
    HealthStatus { Healthy => "healthy", Degraded => "degraded", Unhealthy => "unhealthy", Unknown => "unknown" }
);

/// The gateway's figures over the window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GatewayFigures {
    pub requests: i64,
    pub errors: i64,
    pub error_rate: f64,
    pub latency_p50_ms: i64,
    pub latency_p99_ms: i64,
    pub out_of_memory_errors: i64,
}

/// What a recovery did.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Recovery {
    Redeploy {
        job_id: String,
    },
    ScaleUp {
        max_workers: u32,
    },
    SuggestLargerGpu {
        current: Option<String>,
        suggested: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// One endpoint's health.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndpointHealth {
    pub endpoint_id: String,
    pub status: HealthStatus,
    pub issues: Vec<String>,
    pub provider: Option<ProviderHealth>,
    pub gateway: GatewayFigures,
    pub consecutive_failures: u32,
    pub checked_at: String,
    pub recovery: Vec<Recovery>,
}

/// What the monitor remembers between checks.
#[derive(Default)]
pub struct MonitorMemory {
    failures: Mutex<HashMap<String, u32>>,
    last_status: Mutex<HashMap<String, HealthStatus>>,
    last_recovery: Mutex<HashMap<String, i64>>,
    warned_low: Mutex<HashSet<String>>,
}

fn resource_of(endpoint: &Endpoint) -> Option<ProviderResource> {
    endpoint
        .provider_resource
        .as_deref()
        .and_then(|text| serde_json::from_str::<ProviderResource>(text).ok())
        .filter(|resource| !resource.id.is_empty())
}

/// Checks one endpoint (provider call plus two store queries); no recovery.
pub async fn check(
    deployer: &Deployer,
    endpoint: &Endpoint,
    settings: &MonitorSettings,
) -> EndpointHealth {
    let since = now_ms() - i64::try_from(settings.window.as_millis()).unwrap_or(900_000);
    let mut issues = Vec::new();
    let mut status = HealthStatus::Healthy;
    let provider = match resource_of(endpoint) {
        Some(resource) => match deployer.providers.get(resource.provider) {
            Some(provisioner) => match provisioner.health(&resource).await {
                Ok(health) => Some(health),
                Err(error) => {
                    issues.push(format!("provider health check failed: {error}"));
                    worsen(HealthStatus::Unknown, &mut status);
                    None
                }
            },
            None => None,
        },
        None => None,
    };
    if let Some(health) = &provider {
        if !health.reachable {
            issues.push(format!(
                "endpoint not reachable{}",
                health
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
            worsen(HealthStatus::Unhealthy, &mut status);
        }
        if health.queue_depth > settings.max_queue_depth {
            issues.push(format!("high queue depth: {} requests", health.queue_depth));
            worsen(HealthStatus::Degraded, &mut status);
        }
    } else if endpoint.provider_resource.is_none()
        && endpoint.provider != ProviderKind::External.as_str()
    {
        worsen(HealthStatus::Unknown, &mut status);
        issues.push("no provider resource to check".to_owned());
    }
    let mut gateway = GatewayFigures::default();
    match deployer
        .store
        .usage_summary(&endpoint.user_id, &endpoint.id, since)
        .await
    {
        Ok(summary) => {
            gateway.requests = summary.requests;
            gateway.errors = summary.errors;
            gateway.latency_p50_ms = summary.latency_p50_ms;
            gateway.latency_p99_ms = summary.latency_p99_ms;
            if summary.requests > 0 {
                gateway.error_rate = summary.errors as f64 / summary.requests as f64;
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read recent usage"),
    }
    gateway.out_of_memory_errors = deployer
        .store
        .count_errors_with_code(&endpoint.id, "upstream_out_of_memory", since)
        .await
        .unwrap_or(0);
    if gateway.requests > 0 && gateway.error_rate > settings.max_error_rate {
        issues.push(format!(
            "high error rate: {:.1}%",
            gateway.error_rate * 100.0
        ));
        worsen(HealthStatus::Degraded, &mut status);
    }
    if gateway.latency_p99_ms > settings.max_p99_ms {
        issues.push(format!("high latency: {} ms p99", gateway.latency_p99_ms));
        worsen(HealthStatus::Degraded, &mut status);
    }
    if gateway.out_of_memory_errors > 0 {
        issues.push(format!(
            "CUDA out of memory: {} errors in {} min",
            gateway.out_of_memory_errors,
            settings.window.as_secs() / 60
        ));
        worsen(HealthStatus::Degraded, &mut status);
    }
    let stuck_ms = i64::try_from(settings.stuck_scaling.as_millis()).unwrap_or(300_000);
    if endpoint.status == EndpointStatus::Scaling && now_ms() - endpoint.updated_at > stuck_ms {
        issues.push(format!(
            "stuck in scaling for more than {} min",
            settings.stuck_scaling.as_secs() / 60
        ));
        worsen(HealthStatus::Unhealthy, &mut status);
    }
    EndpointHealth {
        endpoint_id: endpoint.id.clone(),
        status,
        issues,
        provider,
        gateway,
        consecutive_failures: 0,
        checked_at: format_time(now_ms()),
        recovery: Vec::new(),
    }
}

/// Raises `status` to `to` if that is worse.
fn worsen(to: HealthStatus, status: &mut HealthStatus) {
    let rank = |s: HealthStatus| match s {
        HealthStatus::Healthy => 0,
        HealthStatus::Unknown => 1,
        HealthStatus::Degraded => 2,
        HealthStatus::Unhealthy => 3,
    };
    if rank(to) > rank(*status) {
        *status = to;
    }
}

/// The next larger GPU of the price table, for out-of-memory alerts.
fn larger_gpu(deployer: &Deployer, current: Option<&str>) -> Option<String> {
    let current_vram = current
        .and_then(|name| deployer.pricing.gpu(name))
        .map_or(0, |gpu| gpu.vram_gb);
    deployer
        .pricing
        .gpus
        .iter()
        .filter(|gpu| gpu.vram_gb > current_vram)
        .min_by_key(|gpu| {
            (
                gpu.vram_gb,
                gpu.nanos_per_second
                    .values()
                    .min()
                    .copied()
                    .unwrap_or(i64::MAX),
            )
        })
        .map(|gpu| gpu.name.clone())
}

/// What the recovery rules ask for, from a health verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    /// Unreachable or stuck scaling: redeploy.
    pub redeploy: bool,
    /// Queue deeper than the threshold: the new `max_workers`.
    pub scale_to: Option<u32>,
    /// Out-of-memory errors: tell the user to move to a larger GPU.
    pub suggest_larger_gpu: bool,
}

/// The recovery rules, without side effects.
pub fn decide(health: &EndpointHealth, max_workers: u32, settings: &MonitorSettings) -> Decisions {
    let redeploy = health.issues.iter().any(|issue| {
        issue.starts_with("endpoint not reachable") || issue.starts_with("stuck in scaling")
    });
    let deep_queue = health
        .provider
        .as_ref()
        .is_some_and(|provider| provider.queue_depth > settings.max_queue_depth);
    let scale_to = (deep_queue && max_workers < settings.scale_ceiling)
        .then(|| (max_workers + settings.scale_step).min(settings.scale_ceiling));
    Decisions {
        redeploy,
        scale_to,
        suggest_larger_gpu: health.gateway.out_of_memory_errors > 0,
    }
}

/// Applies the recovery rules to an unhealthy or degraded endpoint.
async fn recover(
    deployer: &Deployer,
    endpoint: &Endpoint,
    health: &EndpointHealth,
    settings: &MonitorSettings,
) -> Vec<Recovery> {
    let mut actions = Vec::new();
    let current_max = u32::try_from(endpoint.max_workers).unwrap_or(1);
    let decisions = decide(health, current_max, settings);
    if decisions.redeploy {
        match deployer.queue_redeploy(endpoint).await {
            Ok(job) => {
                tracing::warn!(endpoint_id = %endpoint.id, job_id = %job.id, "recovery: redeploying");
                actions.push(Recovery::Redeploy { job_id: job.id });
            }
            Err(error) => actions.push(Recovery::Failed {
                reason: format!("redeploy: {error}"),
            }),
        }
    }
    if let Some(max_workers) = decisions.scale_to {
        let scaling = Scaling {
            min_workers: u32::try_from(endpoint.min_workers).unwrap_or(0),
            max_workers,
            idle_timeout_seconds: u32::try_from(endpoint.idle_timeout_seconds).unwrap_or(60),
        };
        let outcome = match (
            resource_of(endpoint),
            resource_of(endpoint).and_then(|r| deployer.providers.get(r.provider)),
        ) {
            (Some(resource), Some(provisioner)) => provisioner
                .update_scaling(&resource, &scaling)
                .await
                .map_err(|error| error.to_string()),
            _ => Err("no provider resource".to_owned()),
        };
        match outcome {
            Ok(()) => {
                let patch = EndpointPatch {
                    max_workers: Some(i64::from(max_workers)),
                    ..EndpointPatch::default()
                };
                let _ = deployer
                    .store
                    .update_endpoint(&endpoint.user_id, &endpoint.id, patch)
                    .await;
                tracing::warn!(endpoint_id = %endpoint.id, max_workers, "recovery: more workers for a deep queue");
                actions.push(Recovery::ScaleUp { max_workers });
            }
            Err(reason) => actions.push(Recovery::Failed {
                reason: format!("scale up: {reason}"),
            }),
        }
    }
    if decisions.suggest_larger_gpu {
        actions.push(Recovery::SuggestLargerGpu {
            current: endpoint.gpu_type.clone(),
            suggested: larger_gpu(deployer, endpoint.gpu_type.as_deref()),
        });
    }
    actions
}

/// Checks every deployed endpoint once, recovers, and publishes events.
pub async fn tick(
    deployer: &Deployer,
    memory: &MonitorMemory,
    settings: &MonitorSettings,
) -> Vec<EndpointHealth> {
    let endpoints = match deployer.store.list_live_endpoints().await {
        Ok(endpoints) => endpoints,
        Err(error) => {
            tracing::warn!(%error, "health monitor cannot list endpoints");
            return Vec::new();
        }
    };
    let mut results = Vec::new();
    for endpoint in endpoints {
        if matches!(
            endpoint.status,
            EndpointStatus::Provisioning | EndpointStatus::Stopped | EndpointStatus::Terminated
        ) {
            continue;
        }
        let mut health = check(deployer, &endpoint, settings).await;
        let failures = {
            let mut failures = memory
                .failures
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let count = failures.entry(endpoint.id.clone()).or_insert(0);
            *count = if health.status == HealthStatus::Healthy {
                0
            } else {
                *count + 1
            };
            *count
        };
        health.consecutive_failures = failures;
        let needs_recovery = matches!(
            health.status,
            HealthStatus::Unhealthy | HealthStatus::Degraded
        );
        if settings.auto_recovery && needs_recovery {
            let cooldown = i64::try_from(settings.recovery_cooldown.as_millis()).unwrap_or(600_000);
            let due = {
                let last = memory
                    .last_recovery
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                last.get(&endpoint.id)
                    .is_none_or(|at| now_ms() - at >= cooldown)
            };
            if due {
                health.recovery = recover(deployer, &endpoint, &health, settings).await;
                if !health.recovery.is_empty() {
                    memory
                        .last_recovery
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .insert(endpoint.id.clone(), now_ms());
                }
            }
        }
        let previous = memory
            .last_status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(endpoint.id.clone(), health.status);
        if previous != Some(health.status)
            && (health.status != HealthStatus::Healthy || previous.is_some())
        {
            deployer.events.publish(
                &endpoint.user_id,
                EventKind::EndpointHealthAlert,
                json!({"endpoint_id": endpoint.id, "health": health, "previous_status": previous}),
            );
        }
        if health.gateway.requests > 0 {
            deployer.events.publish(
                &endpoint.user_id,
                EventKind::EndpointUsageUpdate,
                json!({"endpoint_id": endpoint.id, "usage": {
                    "window_minutes": settings.window.as_secs() / 60,
                    "requests": health.gateway.requests,
                    "errors": health.gateway.errors,
                    "latency_p50_ms": health.gateway.latency_p50_ms,
                    "latency_p99_ms": health.gateway.latency_p99_ms,
                }}),
            );
        }
        results.push(health);
    }
    warn_low_credits(deployer, memory, settings).await;
    results
}

async fn warn_low_credits(deployer: &Deployer, memory: &MonitorMemory, settings: &MonitorSettings) {
    let Ok(users) = deployer.store.list_users().await else {
        return;
    };
    for user in users.iter().filter(|user| !user.is_admin) {
        let balance = deployer
            .registry
            .account(&user.id)
            .map_or(user.balance_micro_usd, |account| account.balance());
        let mut warned = memory
            .warned_low
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if balance < settings.low_credits_micro_usd {
            if warned.insert(user.id.clone()) {
                deployer.events.publish(
                    &user.id,
                    EventKind::CreditsLowWarning,
                    json!({"current_balance": micros_to_credits_json(balance), "threshold": micros_to_credits_json(settings.low_credits_micro_usd)}),
                );
            }
        } else {
            warned.remove(&user.id);
        }
    }
}

/// Runs [`tick`] every `interval` until shutdown.
pub async fn run(
    deployer: Arc<Deployer>,
    memory: Arc<MonitorMemory>,
    settings: MonitorSettings,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.interval) => {}
        }
        let results = tick(&deployer, &memory, &settings).await;
        let unhealthy = results
            .iter()
            .filter(|health| health.status == HealthStatus::Unhealthy)
            .count();
        metrics::gauge!("switchyard_endpoints_unhealthy").set(unhealthy as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(issues: &[&str], queue_depth: u32, oom: i64) -> EndpointHealth {
        EndpointHealth {
            endpoint_id: "e".to_owned(),
            status: HealthStatus::Degraded,
            issues: issues.iter().map(|issue| (*issue).to_owned()).collect(),
            provider: Some(ProviderHealth {
                reachable: true,
                queue_depth,
                ..ProviderHealth::default()
            }),
            gateway: GatewayFigures {
                out_of_memory_errors: oom,
                ..GatewayFigures::default()
            },
            consecutive_failures: 1,
            checked_at: String::new(),
            recovery: Vec::new(),
        }
    }

    #[test]
    fn recovery_rules() {
        let settings = MonitorSettings::default();
        let unreachable = decide(
            &health(&["endpoint not reachable: refused"], 0, 0),
            3,
            &settings,
        );
        assert!(unreachable.redeploy);
        assert_eq!(unreachable.scale_to, None);
        let stuck = decide(
            &health(&["stuck in scaling for more than 5 min"], 0, 0),
            3,
            &settings,
        );
        assert!(stuck.redeploy);
        // Deeper than 100: two more workers, at most 10.
        assert_eq!(decide(&health(&[], 101, 0), 3, &settings).scale_to, Some(5));
        assert_eq!(
            decide(&health(&[], 101, 0), 9, &settings).scale_to,
            Some(10)
        );
        assert_eq!(decide(&health(&[], 101, 0), 10, &settings).scale_to, None);
        assert_eq!(decide(&health(&[], 100, 0), 3, &settings).scale_to, None);
        let oom = decide(
            &health(&["CUDA out of memory: 3 errors in 15 min"], 0, 3),
            3,
            &settings,
        );
        assert!(oom.suggest_larger_gpu && !oom.redeploy);
    }

    #[test]
    fn health_statuses_only_get_worse() {
        let mut status = HealthStatus::Healthy;
        worsen(HealthStatus::Degraded, &mut status);
        worsen(HealthStatus::Unknown, &mut status);
        assert_eq!(status, HealthStatus::Degraded);
        worsen(HealthStatus::Unhealthy, &mut status);
        assert_eq!(status, HealthStatus::Unhealthy);
    }
}

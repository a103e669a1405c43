//! One deploy job, stage by stage. Every stage is idempotent: a job resumed
//! after a crash re-enters its saved stage, finds the provider resource it
//! created by name instead of creating another, and never leaves one behind
//! when it falls back or fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{DeployRequest, Deployer};
use crate::api::keys::{new_key, CreateKey};
use crate::domain::{now_ms, DeployJob, Endpoint, EndpointStatus, JobKind, JobStage, JobState};
use crate::events::EventKind;
use crate::providers::{
    DeploySpec, GpuChoice, ProviderError, ProviderKind, ProviderResource, ResourceState, Scaling,
    UpstreamTarget, MANAGED_PREFIX,
};
use crate::selector::{Budget, Latency, SelectionInput, SmartProviderSelector};
use crate::store::{finish_job, EndpointPatch};

/// Transient provider errors retried in place before falling back.
const TRANSIENT_RETRIES: u32 = 3;

/// One option of the plan, in fallback order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOption {
    pub provider: String,
    pub gpu: String,
    pub gpu_count: u32,
    pub vram_gb: u32,
}

/// What the job decided, saved with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub analysis: Value,
    #[serde(default)]
    pub recommendation: Value,
    #[serde(default)]
    pub options: Vec<PlannedOption>,
    #[serde(default)]
    pub index: usize,
    /// When the current stage began (epoch ms), for the ready timeout.
    #[serde(default)]
    pub stage_started_at: i64,
    #[serde(default)]
    pub transient_retries: u32,
    /// The resource a redeploy replaces; deleted once the new one is ready.
    #[serde(default)]
    pub previous_resource: Option<ProviderResource>,
}

/// One option that failed, kept in `attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub gpu: String,
    pub code: String,
    pub message: String,
    pub at: i64,
}

enum Step {
    Continue,
    /// Wait, then run the same stage again.
    Wait(Duration),
    Done,
}

/// Runs a job until it finishes, the server shuts down, or the lease is lost.
pub async fn execute(deployer: &Deployer, mut job: DeployJob, shutdown: CancellationToken) {
    if job.state == JobState::Queued {
        job.state = JobState::Running;
    }
    loop {
        if shutdown.is_cancelled() {
            tracing::info!(
                stage = job.stage.as_str(),
                "shutting down; the job resumes on the next start"
            );
            return;
        }
        let step = match job.kind {
            JobKind::Terminate => terminate_step(deployer, &mut job).await,
            JobKind::Deploy | JobKind::Redeploy => deploy_step(deployer, &mut job).await,
        };
        let finished = matches!(job.state, JobState::Succeeded | JobState::Failed);
        if !deployer.save(&mut job).await && !finished {
            tracing::warn!("the job's lease was lost; another server continues it");
            return;
        }
        match step {
            Step::Continue => {}
            Step::Wait(pause) => {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            Step::Done => return,
        }
    }
}

fn plan_of(job: &DeployJob) -> Plan {
    job.plan
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

fn set_plan(job: &mut DeployJob, plan: &Plan) {
    job.plan = serde_json::to_string(plan).ok();
}

fn request_of(job: &DeployJob) -> DeployRequest {
    serde_json::from_str(&job.request).unwrap_or_default()
}

fn resource_of(job: &DeployJob) -> Option<ProviderResource> {
    job.resource
        .as_deref()
        .and_then(|text| serde_json::from_str::<ProviderResource>(text).ok())
        .filter(|resource| !resource.id.is_empty())
}

/// The provider and name a job claimed before creating its resource.
fn claimed_name(job: &DeployJob) -> Option<(ProviderKind, String)> {
    let value: Value = serde_json::from_str(job.resource.as_deref()?).ok()?;
    let kind = ProviderKind::parse(value.get("provider")?.as_str()?)?;
    let name = value.get("name")?.as_str()?.to_owned();
    Some((kind, name))
}

/// The provider resource name of a job's option: deterministic, so a
/// resumed job finds it, and distinct per option, so a fallback on the same
/// provider never picks up the resource of the option that failed.
pub fn job_resource_name(job_id: &str, option_index: usize) -> String {
    let base = crate::providers::resource_name(job_id);
    if option_index == 0 {
        base
    } else {
        format!("{base}-{option_index}")
    }
}

fn progress(
    deployer: &Deployer,
    job: &mut DeployJob,
    stage: JobStage,
    percent: i64,
    message: Option<String>,
) {
    job.stage = stage;
    job.progress = percent;
    let mut fields = json!({"endpoint_id": job.endpoint_id, "job_id": job.id, "stage": stage, "percent": percent, "progress": percent});
    if let Some(message) = message {
        fields["message"] = json!(message);
    }
    deployer
        .events
        .publish(&job.user_id, EventKind::DeploymentProgress, fields);
}

async fn deploy_step(deployer: &Deployer, job: &mut DeployJob) -> Step {
    // A terminated endpoint stops its deploy; the resource it holds is removed.
    if matches!(
        deployer.store.endpoint_is_deleted(&job.endpoint_id).await,
        Ok(true)
    ) {
        release_resource(deployer, job).await;
        job.error = Some("the endpoint was terminated during the deploy".to_owned());
        job.stage = JobStage::Failed;
        finish_job(job, JobState::Failed);
        return Step::Done;
    }
    match job.stage {
        JobStage::Queued | JobStage::Analyzing => analyze(deployer, job).await,
        JobStage::Selecting => select(deployer, job),
        JobStage::Provisioning => provision(deployer, job).await,
        JobStage::WaitingReady => wait_ready(deployer, job).await,
        JobStage::IssuingKey => issue_key(deployer, job).await,
        JobStage::Ready => complete(deployer, job).await,
        JobStage::Failed => {
            let message = job
                .error
                .clone()
                .unwrap_or_else(|| "the deploy failed".to_owned());
            fail(deployer, job, &message).await
        }
        JobStage::CleaningUp | JobStage::Terminated => {
            finish_job(job, JobState::Failed);
            Step::Done
        }
    }
}

async fn analyze(deployer: &Deployer, job: &mut DeployJob) -> Step {
    let request = request_of(job);
    let mut plan = plan_of(job);
    if job.kind == JobKind::Redeploy && !plan.options.is_empty() {
        // A redeploy reuses the plan of the deploy it repeats.
        progress(
            deployer,
            job,
            JobStage::Provisioning,
            35,
            Some("redeploying with the same plan".to_owned()),
        );
        plan.stage_started_at = now_ms();
        set_plan(job, &plan);
        return Step::Continue;
    }
    progress(deployer, job, JobStage::Analyzing, 10, None);
    if request.source_url.is_some() {
        plan.analysis = json!({"model_id": request.model_id, "source": "external"});
        set_plan(job, &plan);
        progress(deployer, job, JobStage::Selecting, 20, None);
        return Step::Continue;
    }
    let analysis = match deployer
        .hub
        .model_info(&request.model_id, request.revision.as_deref())
        .await
    {
        Ok(info) if info.private && !may_use_private(deployer, job, &request).await => {
            let message = format!(
                "model `{}` is private: only the training jobs that produced it can deploy it",
                request.model_id
            );
            return fail(deployer, job, &message).await;
        }
        Ok(info) => {
            let profile = info.profile(request.modality, request.parameters, request.precision);
            json!({
                "model_id": info.id,
                "sha": info.sha,
                "pipeline_tag": info.pipeline_tag,
                "modality": profile.as_ref().ok().map(|profile| profile.modality),
                "parameters": profile.as_ref().ok().map(|profile| profile.parameters),
                "precision": profile.as_ref().ok().map(|profile| profile.precision),
                "gated": info.gated,
                "error": profile.err().map(|error| error.to_string()),
            })
        }
        Err(error) if request.parameters.is_some() => json!({
            "model_id": request.model_id,
            "modality": request.modality,
            "parameters": request.parameters,
            "precision": request.precision,
            "hub_error": error.to_string(),
        }),
        Err(error) => return fail(deployer, job, &format!("model analysis failed: {error}")).await,
    };
    if let Some(error) = analysis.get("error").and_then(Value::as_str) {
        let message = format!("model analysis failed: {error}");
        return fail(deployer, job, &message).await;
    }
    plan.analysis = analysis;
    set_plan(job, &plan);
    progress(deployer, job, JobStage::Selecting, 20, None);
    Step::Continue
}

/// A private repository is read with the operator's token: only a training
/// job (or an endpoint a training job of the same user made) may deploy it.
async fn may_use_private(deployer: &Deployer, job: &DeployJob, request: &DeployRequest) -> bool {
    if request.training_job_id.is_some() {
        return true;
    }
    let url = format!("https://huggingface.co/{}", request.model_id);
    deployer
        .store
        .user_trained_repo(&job.user_id, &url)
        .await
        .unwrap_or(false)
}

/// Providers outside the price table, chosen only explicitly.
fn is_unpriced(provider: &str) -> bool {
    matches!(provider, "self-hosted" | "external")
}

/// Why a provider cannot take a deploy now, if it cannot.
pub fn unavailable_reason(deployer: &Deployer, provider: &str) -> Option<String> {
    let Some(kind) = ProviderKind::parse(provider) else {
        return Some(format!("`{provider}` is not a provider this server knows"));
    };
    match deployer.providers.get(kind) {
        Some(provisioner) => {
            let availability = provisioner.availability();
            (!availability.available).then(|| {
                availability
                    .message
                    .unwrap_or_else(|| format!("{provider} is not configured"))
            })
        }
        None => Some(format!("{provider} is not built into this server")),
    }
}

fn select(deployer: &Deployer, job: &mut DeployJob) -> Step {
    let request = request_of(job);
    let mut plan = plan_of(job);
    if let Some(provider) = request
        .provider
        .as_deref()
        .filter(|provider| is_unpriced(provider))
    {
        if let Some(reason) = unavailable_reason(deployer, provider) {
            return mark_failed(job, reason);
        }
        plan.options = vec![PlannedOption {
            provider: provider.to_owned(),
            gpu: request
                .gpu_type
                .clone()
                .unwrap_or_else(|| "local".to_owned()),
            gpu_count: 1,
            vram_gb: 0,
        }];
        plan.recommendation = json!({"provider": provider, "reason": "chosen by the caller"});
    } else {
        let input = SelectionInput {
            model: crate::selector::ModelProfile {
                modality: serde_json::from_value(plan.analysis["modality"].clone())
                    .unwrap_or(crate::domain::Modality::Llm),
                parameters: plan.analysis["parameters"]
                    .as_u64()
                    .unwrap_or(1_000_000_000),
                precision: serde_json::from_value(plan.analysis["precision"].clone())
                    .unwrap_or(crate::selector::Precision::Fp16),
            },
            budget: request.budget.unwrap_or(Budget::Balanced),
            latency: request.latency.unwrap_or(Latency::Medium),
            requests_per_day: request.requests_per_day.unwrap_or(1000),
            avg_duration_ms: crate::cli::recommend::default_duration_ms(
                serde_json::from_value(plan.analysis["modality"].clone())
                    .unwrap_or(crate::domain::Modality::Llm),
            ),
            providers: request.provider.clone().into_iter().collect(),
            gpu: request.gpu_type.clone(),
            markup_basis_points: deployer.settings.markup_basis_points,
        };
        let availability = |provider: &str| unavailable_reason(deployer, provider);
        let recommendation =
            match SmartProviderSelector::new(&deployer.pricing).select(&input, &availability) {
                Ok(recommendation) => recommendation,
                Err(error) => return mark_failed(job, error.to_string()),
            };
        if !recommendation.deployable {
            let reasons: Vec<String> = recommendation
                .ranked
                .iter()
                .filter_map(|candidate| candidate.unavailable_reason.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            return mark_failed(
                job,
                format!(
                    "no configured provider can serve this model: {}",
                    reasons.join("; ")
                ),
            );
        }
        plan.options = recommendation
            .ranked
            .iter()
            .filter(|candidate| candidate.available)
            .map(|candidate| PlannedOption {
                provider: candidate.provider.clone(),
                gpu: candidate.gpu.clone(),
                gpu_count: candidate.gpu_count,
                vram_gb: candidate.gpu_vram_gb,
            })
            .collect();
        plan.recommendation = recommendation.to_json();
    }
    plan.index = 0;
    plan.stage_started_at = now_ms();
    set_plan(job, &plan);
    let first = &plan.options[0];
    let message = format!("chose {} on {}", first.gpu, first.provider);
    progress(deployer, job, JobStage::Provisioning, 35, Some(message));
    Step::Continue
}

/// Marks the job as failing; the next step reports the failure.
fn mark_failed(job: &mut DeployJob, reason: String) -> Step {
    job.error = Some(reason);
    job.stage = JobStage::Failed;
    Step::Continue
}

async fn endpoint_of(deployer: &Deployer, job: &DeployJob) -> Option<Endpoint> {
    deployer.store.get_endpoint_any(&job.endpoint_id).await.ok()
}

async fn provision(deployer: &Deployer, job: &mut DeployJob) -> Step {
    let mut plan = plan_of(job);
    let Some(option) = plan.options.get(plan.index).cloned() else {
        return fail(deployer, job, "no option left to try").await;
    };
    let Some(kind) = ProviderKind::parse(&option.provider) else {
        return fallback(
            deployer,
            job,
            &option,
            "provider_unknown",
            &format!("unknown provider {}", option.provider),
        )
        .await;
    };
    let Some(provisioner) = deployer.providers.get(kind) else {
        return fallback(
            deployer,
            job,
            &option,
            "provider_unknown",
            "provider not built in",
        )
        .await;
    };
    let Some(endpoint) = endpoint_of(deployer, job).await else {
        return Step::Wait(deployer.settings.poll_interval);
    };
    let request = request_of(job);
    let name = job_resource_name(&job.id, plan.index);
    // Claim the name before creating, so the reconcile loop never mistakes
    // the new resource for an orphan.
    if job.resource.is_none() {
        job.resource = serde_json::to_string(
            &json!({"provider": kind, "id": "", "name": name, "details": {}}),
        )
        .ok();
        return Step::Continue;
    }
    let spec = DeploySpec {
        endpoint_id: endpoint.id.clone(),
        resource_name: name.clone(),
        model_id: request.model_id.clone(),
        revision: request.revision.clone(),
        served_model_name: endpoint.name.clone(),
        modality: endpoint.modality,
        gpu: GpuChoice {
            name: option.gpu.clone(),
            count: option.gpu_count.max(1),
            vram_gb: option.vram_gb,
        },
        scaling: Scaling {
            min_workers: u32::try_from(endpoint.min_workers).unwrap_or(0),
            max_workers: u32::try_from(endpoint.max_workers).unwrap_or(1).max(1),
            idle_timeout_seconds: u32::try_from(endpoint.idle_timeout_seconds).unwrap_or(60),
        },
        max_model_len: None,
        source_url: request.source_url.clone(),
    };
    let outcome = match provisioner.find(&name).await {
        Ok(Some(existing)) => {
            tracing::info!(resource = %existing.id, "found the resource created before a restart");
            Ok(existing)
        }
        Ok(None) => provisioner.create(&spec).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(resource) => {
            plan.transient_retries = 0;
            plan.stage_started_at = now_ms();
            set_plan(job, &plan);
            job.resource = serde_json::to_string(&resource).ok();
            let patch = EndpointPatch {
                provider: Some(kind.as_str().to_owned()),
                gpu_type: Some(Some(option.gpu.clone())),
                provider_endpoint_id: Some(Some(resource.id.clone())),
                provider_resource: Some(job.resource.clone()),
                ..EndpointPatch::default()
            };
            if job.kind == JobKind::Deploy {
                let _ = deployer
                    .store
                    .update_endpoint(&job.user_id, &job.endpoint_id, patch)
                    .await;
            }
            progress(
                deployer,
                job,
                JobStage::WaitingReady,
                50,
                Some(format!("{} created {}", kind, resource.id)),
            );
            Step::Continue
        }
        Err(error) if error.is_transient() && plan.transient_retries < TRANSIENT_RETRIES => {
            plan.transient_retries += 1;
            set_plan(job, &plan);
            tracing::warn!(%error, retry = plan.transient_retries, "provider call failed; retrying");
            Step::Wait(retry_pause(&error, plan.transient_retries))
        }
        Err(error) => fallback(deployer, job, &option, error.code(), &error.to_string()).await,
    }
}

fn retry_pause(error: &ProviderError, attempt: u32) -> Duration {
    match error {
        ProviderError::RateLimited {
            retry_after: Some(wait),
            ..
        } => (*wait).min(Duration::from_secs(60)),
        _ => Duration::from_millis(500 * u64::from(attempt)),
    }
}

async fn wait_ready(deployer: &Deployer, job: &mut DeployJob) -> Step {
    let mut plan = plan_of(job);
    let Some(option) = plan.options.get(plan.index).cloned() else {
        return fail(deployer, job, "no option left to try").await;
    };
    let (Some(resource), Some(kind)) = (resource_of(job), ProviderKind::parse(&option.provider))
    else {
        job.stage = JobStage::Provisioning;
        return Step::Continue;
    };
    let Some(provisioner) = deployer.providers.get(kind) else {
        return fallback(
            deployer,
            job,
            &option,
            "provider_unknown",
            "provider not built in",
        )
        .await;
    };
    let elapsed = now_ms() - plan.stage_started_at;
    let timeout = i64::try_from(deployer.settings.ready_timeout.as_millis()).unwrap_or(i64::MAX);
    match provisioner.status(&resource).await {
        Ok(status) if status.state.is_usable() => {
            let Some(upstream) = status.upstream else {
                if elapsed > timeout {
                    let message = "ready but without an address to send requests to".to_owned();
                    return fallback(deployer, job, &option, "ready_timeout", &message).await;
                }
                return Step::Wait(deployer.settings.poll_interval);
            };
            let scaled_to_zero = status.state == ResourceState::ScaledToZero;
            if let Err(message) = apply_upstream(deployer, job, &upstream, scaled_to_zero).await {
                return fallback(deployer, job, &option, "upstream_invalid", &message).await;
            }
            progress(deployer, job, JobStage::IssuingKey, 95, None);
            Step::Continue
        }
        Ok(status) if matches!(status.state, ResourceState::Failed | ResourceState::Gone) => {
            let message = status
                .message
                .unwrap_or_else(|| format!("the resource is {:?}", status.state));
            fallback(deployer, job, &option, "provider_failed", &message).await
        }
        Ok(status) => {
            if elapsed > timeout {
                let message = format!(
                    "not ready within {} s (last state {:?})",
                    deployer.settings.ready_timeout.as_secs(),
                    status.state
                );
                return fallback(deployer, job, &option, "ready_timeout", &message).await;
            }
            let percent = 50 + (elapsed.max(0) * 40 / timeout.max(1)).min(39);
            if percent != job.progress {
                progress(
                    deployer,
                    job,
                    JobStage::WaitingReady,
                    percent,
                    status.message.clone(),
                );
            }
            Step::Wait(deployer.settings.poll_interval)
        }
        Err(error) if error.is_transient() && elapsed <= timeout => {
            tracing::warn!(%error, "status check failed; retrying");
            Step::Wait(deployer.settings.poll_interval.max(retry_pause(&error, 1)))
        }
        Err(error) => {
            plan.transient_retries = 0;
            set_plan(job, &plan);
            fallback(deployer, job, &option, error.code(), &error.to_string()).await
        }
    }
}

/// Points the endpoint at the ready resource (credentials encrypted).
async fn apply_upstream(
    deployer: &Deployer,
    job: &DeployJob,
    upstream: &UpstreamTarget,
    scaled_to_zero: bool,
) -> Result<(), String> {
    // Every upstream API is routable: OpenAI as it is, Replicate through the
    // gateway's prediction translation (`gateway::replicate`).
    let mut key = None;
    let mut headers = Vec::new();
    for (name, value) in &upstream.headers {
        if name.eq_ignore_ascii_case("authorization") {
            key = Some(value.strip_prefix("Bearer ").unwrap_or(value).to_owned());
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }
    let headers_sealed = if headers.is_empty() {
        None
    } else {
        Some(
            deployer
                .secrets
                .encrypt(&serde_json::to_string(&headers).unwrap_or_default()),
        )
    };
    let resource = job.resource.clone();
    let mut patch = EndpointPatch {
        upstream_base_url: Some(upstream.base_url.trim_end_matches('/').to_owned()),
        upstream_model: Some(upstream.model.clone()),
        upstream_api: Some(upstream.api),
        upstream_key_encrypted: Some(key.map(|key| deployer.secrets.encrypt(&key))),
        upstream_headers_encrypted: Some(headers_sealed),
        endpoint_url: Some(Some(upstream.base_url.clone())),
        provider_resource: Some(resource),
        status: (job.kind == JobKind::Deploy).then_some(EndpointStatus::Provisioning),
        error_message: Some(None),
        last_active_at: scaled_to_zero.then_some(None),
        ..EndpointPatch::default()
    };
    if job.kind == JobKind::Redeploy {
        // The swap happens at once: the new resource serves from now on.
        patch.status = Some(if scaled_to_zero {
            EndpointStatus::Idle
        } else {
            EndpointStatus::Active
        });
        patch.provider_endpoint_id = resource_of(job).map(|resource| Some(resource.id));
        let plan = plan_of(job);
        if let Some(option) = plan.options.get(plan.index) {
            patch.provider = Some(option.provider.clone());
            patch.gpu_type = Some(Some(option.gpu.clone()));
        }
    }
    deployer
        .store
        .update_endpoint(&job.user_id, &job.endpoint_id, patch)
        .await
        .map_err(|error| error.to_string())?;
    if let Err(error) = deployer.registry.reload().await {
        tracing::error!(%error, "cannot reload the gateway snapshot");
    }
    Ok(())
}

async fn issue_key(deployer: &Deployer, job: &mut DeployJob) -> Step {
    if job.kind == JobKind::Redeploy || job.key_id.is_some() {
        job.stage = JobStage::Ready;
        return Step::Continue;
    }
    let Some(endpoint) = endpoint_of(deployer, job).await else {
        return Step::Wait(deployer.settings.poll_interval);
    };
    let key_name = format!("deploy {}", &job.id[job.id.len().saturating_sub(8)..]);
    // A crash between creating a key and saving the job leaves a key whose
    // secret nobody has: revoke it and issue a fresh one.
    if let Ok(keys) = deployer
        .store
        .list_keys(&job.user_id, &job.endpoint_id)
        .await
    {
        for key in keys
            .iter()
            .filter(|key| key.name == key_name && key.revoked_at.is_none())
        {
            let _ = deployer
                .store
                .revoke_key(&job.user_id, &job.endpoint_id, &key.id)
                .await;
        }
    }
    let (key, secret) = match new_key(&endpoint, CreateKey::named(&key_name), &deployer.secrets) {
        Ok(pair) => pair,
        Err(error) => return fail(deployer, job, &error.message).await,
    };
    if let Err(error) = deployer.store.create_key(&key).await {
        tracing::warn!(%error, "cannot store the endpoint's key; retrying");
        return Step::Wait(deployer.settings.poll_interval);
    }
    let sealed = deployer.secrets.encrypt(&secret);
    match deployer.store_job_key(job, &key.id, &sealed).await {
        Ok(true) => {}
        Ok(false) => return Step::Wait(deployer.settings.poll_interval),
        Err(error) => {
            tracing::warn!(%error, "cannot keep the endpoint's key; retrying");
            return Step::Wait(deployer.settings.poll_interval);
        }
    }
    job.key_id = Some(key.id.clone());
    job.key_secret_encrypted = Some(sealed);
    job.stage = JobStage::Ready;
    Step::Continue
}

async fn complete(deployer: &Deployer, job: &mut DeployJob) -> Step {
    let plan = plan_of(job);
    if let Some(previous) = plan.previous_resource.clone() {
        delete_resource(deployer, &previous).await;
    }
    let Some(endpoint) = endpoint_of(deployer, job).await else {
        return Step::Wait(deployer.settings.poll_interval);
    };
    let previous_status = endpoint.status;
    let status = if endpoint.last_active_at.is_none() && previous_status == EndpointStatus::Idle {
        EndpointStatus::Idle
    } else {
        EndpointStatus::Active
    };
    let patch = EndpointPatch {
        status: Some(status),
        error_message: Some(None),
        ..EndpointPatch::default()
    };
    if deployer
        .store
        .update_endpoint(&job.user_id, &job.endpoint_id, patch)
        .await
        .is_err()
    {
        return Step::Wait(deployer.settings.poll_interval);
    }
    if let Err(error) = deployer.registry.reload().await {
        tracing::error!(%error, "cannot reload the gateway snapshot");
    }
    job.progress = 100;
    job.stage = JobStage::Ready;
    finish_job(job, JobState::Succeeded);
    // Saved before the events go out: a listener that takes the key must find the job finished.
    if !deployer.save(job).await {
        // Another server holds the job now (or the store is down): it finishes it.
        return Step::Done;
    }
    let option = plan.options.get(plan.index);
    deployer.events.publish(
        &job.user_id,
        EventKind::DeploymentProgress,
        json!({"endpoint_id": job.endpoint_id, "job_id": job.id, "stage": JobStage::Ready, "percent": 100, "progress": 100}),
    );
    deployer.events.publish(
        &job.user_id,
        EventKind::DeploymentComplete,
        json!({
            "endpoint_id": job.endpoint_id,
            "job_id": job.id,
            "model_name": endpoint.name,
            "provider": option.map(|option| option.provider.clone()),
            "gpu_type": option.map(|option| option.gpu.clone()),
            "endpoint_url": format!("{}/api/v1/inference/{}", deployer.settings.public_url, endpoint.id),
            "openai_base_url": format!("{}/v1", deployer.settings.public_url),
            "has_api_key": job.key_secret_encrypted.is_some(),
        }),
    );
    if previous_status != status {
        deployer.events.publish(
            &job.user_id,
            EventKind::EndpointStatusChanged,
            json!({"endpoint_id": job.endpoint_id, "status": status, "previous_status": previous_status}),
        );
    }
    tracing::info!(attempts = %job.attempts, "deploy finished");
    Step::Done
}

/// Records the failed option, removes its resource, and moves to the next
/// option (skipping the failed provider's other options when the failure is
/// about the provider, not the GPU); fails the job when none is left.
async fn fallback(
    deployer: &Deployer,
    job: &mut DeployJob,
    option: &PlannedOption,
    code: &str,
    message: &str,
) -> Step {
    tracing::warn!(provider = %option.provider, gpu = %option.gpu, code, message, "deploy option failed");
    let mut attempts: Vec<Attempt> = serde_json::from_str(&job.attempts).unwrap_or_default();
    attempts.push(Attempt {
        provider: option.provider.clone(),
        gpu: option.gpu.clone(),
        code: code.to_owned(),
        message: message.to_owned(),
        at: now_ms(),
    });
    job.attempts = serde_json::to_string(&attempts).unwrap_or_else(|_| "[]".to_owned());
    release_resource(deployer, job).await;
    let mut plan = plan_of(job);
    let provider_wide = matches!(
        code,
        "provider_unauthorized"
            | "provider_not_configured"
            | "provider_unreachable"
            | "provider_server_error"
    );
    let mut next = plan.index + 1;
    while provider_wide
        && plan
            .options
            .get(next)
            .is_some_and(|candidate| candidate.provider == option.provider)
    {
        next += 1;
    }
    plan.index = next;
    plan.transient_retries = 0;
    plan.stage_started_at = now_ms();
    set_plan(job, &plan);
    match plan.options.get(next) {
        Some(candidate) => {
            let note = format!(
                "{} on {} failed ({message}); falling back to {} on {}",
                option.gpu, option.provider, candidate.gpu, candidate.provider
            );
            progress(deployer, job, JobStage::Provisioning, 35, Some(note));
            Step::Continue
        }
        None => {
            let summary = attempts
                .iter()
                .map(|attempt| {
                    format!(
                        "{} on {}: {}",
                        attempt.gpu, attempt.provider, attempt.message
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            fail(deployer, job, &format!("every option failed: {summary}")).await
        }
    }
}

/// Deletes the resource the job holds (best effort: the reconcile loop
/// removes it later if the provider refuses now) and forgets it.
async fn release_resource(deployer: &Deployer, job: &mut DeployJob) {
    if let Some(resource) = resource_of(job) {
        delete_resource(deployer, &resource).await;
    } else if let Some((kind, name)) = claimed_name(job) {
        // Only the name was saved: a create may still have made the resource.
        if let Some(provisioner) = deployer.providers.get(kind) {
            if let Ok(Some(resource)) = provisioner.find(&name).await {
                delete_resource(deployer, &resource).await;
            }
        }
    }
    job.resource = None;
    if job.kind == JobKind::Deploy {
        let patch = EndpointPatch {
            provider_resource: Some(None),
            provider_endpoint_id: Some(None),
            ..EndpointPatch::default()
        };
        let _ = deployer
            .store
            .update_endpoint(&job.user_id, &job.endpoint_id, patch)
            .await;
    }
}

/// Deletes a provider resource, retrying transient failures a few times.
pub async fn delete_resource(deployer: &Deployer, resource: &ProviderResource) -> bool {
    let Some(provisioner) = deployer.providers.get(resource.provider) else {
        return false;
    };
    for attempt in 1..=TRANSIENT_RETRIES {
        match provisioner.delete(resource).await {
            Ok(()) => {
                tracing::info!(provider = %resource.provider, resource = %resource.id, "provider resource deleted");
                return true;
            }
            Err(error) if error.is_transient() && attempt < TRANSIENT_RETRIES => {
                tokio::time::sleep(retry_pause(&error, attempt)).await;
            }
            Err(error) => {
                tracing::warn!(%error, resource = %resource.id, "cannot delete the provider resource now; the reconcile loop retries");
                return false;
            }
        }
    }
    false
}

async fn fail(deployer: &Deployer, job: &mut DeployJob, message: &str) -> Step {
    release_resource(deployer, job).await;
    job.error = Some(message.to_owned());
    job.stage = JobStage::Failed;
    finish_job(job, JobState::Failed);
    if job.kind == JobKind::Deploy {
        let patch = EndpointPatch {
            status: Some(EndpointStatus::Error),
            error_message: Some(Some(message.to_owned())),
            ..EndpointPatch::default()
        };
        let _ = deployer
            .store
            .update_endpoint(&job.user_id, &job.endpoint_id, patch)
            .await;
        let _ = deployer.registry.reload().await;
        deployer.events.publish(
            &job.user_id,
            EventKind::EndpointStatusChanged,
            json!({"endpoint_id": job.endpoint_id, "status": EndpointStatus::Error, "previous_status": EndpointStatus::Provisioning}),
        );
    }
    deployer.events.publish(
        &job.user_id,
        EventKind::DeploymentFailed,
        json!({"endpoint_id": job.endpoint_id, "job_id": job.id, "error": message, "attempts": serde_json::from_str::<Value>(&job.attempts).unwrap_or(Value::Null)}),
    );
    tracing::warn!(error = message, "deploy failed");
    Step::Done
}

async fn terminate_step(deployer: &Deployer, job: &mut DeployJob) -> Step {
    job.stage = JobStage::CleaningUp;
    let resource = match resource_of(job) {
        Some(resource) => Some(resource),
        None => endpoint_of(deployer, job).await.and_then(|endpoint| {
            endpoint
                .provider_resource
                .as_deref()
                .and_then(|text| serde_json::from_str::<ProviderResource>(text).ok())
        }),
    };
    if let Some(resource) = resource
        .filter(|resource| !resource.id.is_empty() && resource.name.starts_with(MANAGED_PREFIX))
    {
        job.resource = serde_json::to_string(&resource).ok();
        if !delete_resource(deployer, &resource).await {
            let mut plan = plan_of(job);
            plan.transient_retries += 1;
            set_plan(job, &plan);
            if plan.transient_retries < 10 {
                return Step::Wait(deployer.settings.poll_interval.max(Duration::from_secs(1)));
            }
            job.error = Some(
                "the provider did not delete the resource; the reconcile loop keeps trying"
                    .to_owned(),
            );
            finish_job(job, JobState::Failed);
            return Step::Done;
        }
    }
    job.resource = None;
    job.stage = JobStage::Terminated;
    job.progress = 100;
    finish_job(job, JobState::Succeeded);
    Step::Done
}

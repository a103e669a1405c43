//! The control plane: deploy requests become durable jobs (`deploy_jobs`)
//! that a background runner executes stage by stage (`analyzing`,
//! `selecting`, `provisioning`, `waiting_ready`, `issuing_key`, `ready`),
//! saving after every step so a restarted server resumes them. A reconcile
//! loop deletes provider resources no endpoint or job accounts for.
//!
//! **Architecture invariant:** the gateway never waits on this module; it
//! sees deploy results only through the registry snapshot.

pub mod flow;
pub mod hub;
pub mod monitor;
pub mod reconcile;
pub mod request;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::domain::{new_id, now_ms, DeployJob, JobKind, JobStage, JobState};
use crate::events::{EventBus, EventKind};
use crate::pricing::PriceTable;
use crate::providers::Providers;
use crate::registry::Registry;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError};
pub use request::DeployRequest;

/// Timings and defaults of the control plane.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// How often a deploying resource's status is read.
    pub poll_interval: Duration,
    /// How long a resource may take to become ready before the next option is tried.
    pub ready_timeout: Duration,
    /// How long a job's lease lasts without renewal (a crashed server's jobs
    /// are taken over after it).
    pub lease: Duration,
    /// How often the runner looks for jobs to resume.
    pub scan_interval: Duration,
    /// How often provider resources are reconciled with endpoints.
    pub reconcile_interval: Duration,
    /// Shared secret of the training-complete webhook (HMAC-SHA-256).
    pub training_webhook_secret: Option<String>,
    pub markup_basis_points: i64,
    /// Base URL clients use to reach this server (connection info in events).
    pub public_url: String,
    pub monitor: monitor::MonitorSettings,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(30),
            scan_interval: Duration::from_secs(2),
            reconcile_interval: Duration::from_secs(300),
            training_webhook_secret: None,
            markup_basis_points: 12_000,
            public_url: "http://127.0.0.1:8080".to_owned(),
            monitor: monitor::MonitorSettings::default(),
        }
    }
}

/// A control-plane failure.
#[derive(Debug, Error)]
pub enum DeployError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a deployment of this endpoint is already running")]
    InProgress,
    #[error(
        "this endpoint was registered, not deployed by Switchyard: there is nothing to redeploy"
    )]
    NotDeployed,
}

/// Runs deploy jobs.
pub struct Deployer {
    pub store: Store,
    pub providers: Providers,
    pub registry: Arc<Registry>,
    pub secrets: Arc<Secrets>,
    pub pricing: Arc<PriceTable>,
    pub hub: hub::HubClient,
    pub events: Arc<EventBus>,
    pub settings: DeploySettings,
    /// This process's lease owner id.
    owner: String,
    running: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    /// What the health monitor remembers between checks.
    pub monitor_memory: Arc<monitor::MonitorMemory>,
}

impl Deployer {
    /// Builds the control plane.
    #[expect(clippy::too_many_arguments, reason = "wiring of the shared services")]
    pub fn new(
        store: Store,
        providers: Providers,
        registry: Arc<Registry>,
        secrets: Arc<Secrets>,
        pricing: Arc<PriceTable>,
        hub: hub::HubClient,
        events: Arc<EventBus>,
        settings: DeploySettings,
    ) -> Self {
        Self {
            store,
            providers,
            registry,
            secrets,
            pricing,
            hub,
            events,
            settings,
            owner: new_id(),
            running: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
            monitor_memory: Arc::new(monitor::MonitorMemory::default()),
        }
    }

    /// A new job record for an endpoint.
    pub fn new_job(
        endpoint_id: &str,
        user_id: &str,
        kind: JobKind,
        request: &DeployRequest,
    ) -> DeployJob {
        let now = now_ms();
        DeployJob {
            id: new_id(),
            endpoint_id: endpoint_id.to_owned(),
            user_id: user_id.to_owned(),
            kind,
            state: JobState::Queued,
            stage: JobStage::Queued,
            progress: 0,
            request: serde_json::to_string(request).unwrap_or_else(|_| "{}".to_owned()),
            plan: None,
            resource: None,
            attempts: "[]".to_owned(),
            key_id: None,
            key_secret_encrypted: None,
            error: None,
            lease_owner: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    /// Queues a redeploy of an endpoint Switchyard deployed: a new resource
    /// with the same plan (from its best option again); the old resource
    /// serves until the new one is ready and is deleted then.
    pub async fn queue_redeploy(
        &self,
        endpoint: &crate::domain::Endpoint,
    ) -> Result<DeployJob, DeployError> {
        if self.store.has_active_job(&endpoint.id).await? {
            return Err(DeployError::InProgress);
        }
        let last = self
            .store
            .latest_deploy_job(&endpoint.id)
            .await?
            .ok_or(DeployError::NotDeployed)?;
        let request: DeployRequest = serde_json::from_str(&last.request).unwrap_or_default();
        let mut job = Self::new_job(&endpoint.id, &endpoint.user_id, JobKind::Redeploy, &request);
        let mut plan: flow::Plan = last
            .plan
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        plan.index = 0;
        plan.transient_retries = 0;
        plan.previous_resource = endpoint
            .provider_resource
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        job.plan = serde_json::to_string(&plan).ok();
        job.stage = JobStage::Analyzing;
        self.store
            .create_job(&job)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => DeployError::InProgress,
                other => DeployError::Store(other),
            })?;
        self.announce(&job, &endpoint.name);
        self.notify();
        Ok(job)
    }

    /// Tells the runner a job is waiting (it also finds it on its next scan).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes `DEPLOYMENT_STARTED` for a new job.
    pub fn announce(&self, job: &DeployJob, model_name: &str) {
        self.events.publish(
            &job.user_id,
            EventKind::DeploymentStarted,
            json!({"endpoint_id": job.endpoint_id, "job_id": job.id, "model_name": model_name, "kind": job.kind}),
        );
    }

    /// The runner: claims unfinished jobs (free or expired leases) and runs
    /// each in its own task until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.store.is_postgres() {
            // One process owns a SQLite file: leases of a previous run are stale.
            match self.store.release_all_leases().await {
                Ok(released) if released > 0 => {
                    tracing::info!(released, "resuming deploy jobs of the previous run");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot release stale job leases"),
            }
        }
        let reconciler = tokio::spawn(reconcile::run(self.clone(), shutdown.clone()));
        let health = tokio::spawn(monitor::run(
            self.clone(),
            self.monitor_memory.clone(),
            self.settings.monitor.clone(),
            shutdown.clone(),
        ));
        loop {
            if let Err(error) = self.claim_and_spawn(&shutdown).await {
                tracing::warn!(%error, "cannot scan deploy jobs");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.scan_interval) => {}
            }
        }
        let _ = reconciler.await;
        let _ = health.await;
    }

    async fn claim_and_spawn(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        for job in self.store.unfinished_jobs().await? {
            let already = self
                .running
                .lock()
                .map(|running| running.contains(&job.id))
                .unwrap_or(true);
            if already {
                continue;
            }
            let lease_until = now_ms() + lease_ms(self.settings.lease);
            if !self
                .store
                .claim_job(&job.id, &self.owner, lease_until)
                .await?
            {
                continue;
            }
            if let Ok(mut running) = self.running.lock() {
                running.insert(job.id.clone());
            }
            let deployer = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let job_id = job.id.clone();
                let mut job = job;
                job.lease_owner = Some(deployer.owner.clone());
                job.lease_until = Some(lease_until);
                let span = tracing::info_span!("deploy_job", job_id = %job.id, endpoint_id = %job.endpoint_id, kind = job.kind.as_str());
                // Provider calls can outlast a lease (a `modal deploy` takes
                // minutes): renew it in the background while the job runs.
                let renewal = tokio::spawn(renew_lease(deployer.clone(), job.id.clone()));
                tracing::Instrument::instrument(flow::execute(&deployer, job, shutdown), span)
                    .await;
                renewal.abort();
                if let Ok(mut running) = deployer.running.lock() {
                    running.remove(&job_id);
                }
            });
        }
        Ok(())
    }

    /// Saves a job, renewing its lease. `false` means another server owns it now.
    pub async fn save(&self, job: &mut DeployJob) -> bool {
        if job.state == JobState::Queued || job.state == JobState::Running {
            job.lease_owner = Some(self.owner.clone());
            job.lease_until = Some(now_ms() + lease_ms(self.settings.lease));
        }
        for attempt in 0..5 {
            match self.store.save_job(job, &self.owner).await {
                Ok(saved) => return saved,
                Err(error) => {
                    tracing::warn!(%error, attempt, "cannot save the deploy job; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        false
    }

    /// Keeps a deploy's new key (encrypted) for one hand-out.
    pub async fn store_job_key(
        &self,
        job: &DeployJob,
        key_id: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        self.store
            .set_job_key(&job.id, &self.owner, key_id, sealed)
            .await
    }
}

/// Extends a running job's lease every third of the lease, until aborted.
async fn renew_lease(deployer: Arc<Deployer>, job_id: String) {
    let period = (deployer.settings.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let until = now_ms() + lease_ms(deployer.settings.lease);
        match deployer
            .store
            .renew_lease(&job_id, &deployer.owner, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => tracing::warn!(%error, "cannot renew the job's lease"),
        }
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(30_000)
}

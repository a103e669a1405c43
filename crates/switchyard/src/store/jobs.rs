//! Durable deploy jobs: created with their endpoint, claimed with a lease,
//! updated after every stage, resumed after a restart.

use super::{rows, Store, StoreError};
use crate::domain::{now_ms, DeployJob, Endpoint, JobState};

impl Store {
    /// Inserts an endpoint (without a key) and its first job, atomically.
    pub async fn create_endpoint_with_job(
        &self,
        endpoint: &Endpoint,
        job: &DeployJob,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        super::endpoints::insert_endpoint(&mut transaction, endpoint).await?;
        insert_job(&mut transaction, job).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Inserts a job for an existing endpoint.
    pub async fn create_job(&self, job: &DeployJob) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_job(&mut transaction, job).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Loads a job.
    pub async fn get_job(&self, job_id: &str) -> Result<DeployJob, StoreError> {
        let query = format!(
            "SELECT {} FROM deploy_jobs WHERE id = $1",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::job(&row)
    }

    /// The newest deploy or redeploy job of an endpoint (not a terminate job).
    pub async fn latest_deploy_job(
        &self,
        endpoint_id: &str,
    ) -> Result<Option<DeployJob>, StoreError> {
        self.endpoint_job(
            endpoint_id,
            "kind IN ('deploy', 'redeploy') ORDER BY created_at DESC, id DESC",
        )
        .await
    }

    /// The first deploy job of an endpoint (it holds the endpoint's first key).
    pub async fn first_deploy_job(
        &self,
        endpoint_id: &str,
    ) -> Result<Option<DeployJob>, StoreError> {
        self.endpoint_job(endpoint_id, "kind = 'deploy' ORDER BY created_at, id")
            .await
    }

    /// The first of an endpoint's jobs matching a fixed condition and order.
    async fn endpoint_job(
        &self,
        endpoint_id: &str,
        condition_and_order: &'static str,
    ) -> Result<Option<DeployJob>, StoreError> {
        let query = format!(
            "SELECT {} FROM deploy_jobs WHERE endpoint_id = $1 AND {condition_and_order} LIMIT 1",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(endpoint_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    /// Jobs not finished, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<DeployJob>, StoreError> {
        let query = format!(
            "SELECT {} FROM deploy_jobs WHERE state IN ('queued', 'running') ORDER BY created_at, id",
            rows::JOB_COLUMNS
        );
        let rows = sqlx::query(&query).fetch_all(&self.pool).await?;
        rows.iter().map(rows::job).collect()
    }

    /// Takes the lease of an unfinished job whose lease is free or expired.
    pub async fn claim_job(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_jobs SET lease_owner = $1, lease_until = $2 WHERE id = $3 \
             AND state IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1)",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(job_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Extends the lease of a job this owner holds (`false` = lost).
    pub async fn renew_lease(
        &self,
        job_id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND state IN ('queued', 'running')",
        )
        .bind(lease_until)
        .bind(job_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Releases every lease (a single-process SQLite server after a restart).
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_jobs SET lease_owner = NULL, lease_until = NULL WHERE state IN ('queued', 'running')",
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Writes a job's progress; only the lease holder may (`false` = lease lost).
    /// The key secret is not written here (see [`Store::set_job_key`]).
    pub async fn save_job(&self, job: &DeployJob, owner: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_jobs SET state = $1, stage = $2, progress = $3, plan = $4, resource = $5, \
             attempts = $6, key_id = $7, error = $8, lease_until = $9, updated_at = $10, finished_at = $11, \
             lease_owner = $12 WHERE id = $13 AND lease_owner = $14",
        )
        .bind(job.state.as_str())
        .bind(job.stage.as_str())
        .bind(job.progress)
        .bind(&job.plan)
        .bind(&job.resource)
        .bind(&job.attempts)
        .bind(&job.key_id)
        .bind(&job.error)
        .bind(job.lease_until)
        .bind(now_ms())
        .bind(job.finished_at)
        .bind(&job.lease_owner)
        .bind(&job.id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores the new key of a deploy (its secret encrypted) for one later
    /// hand-out. `save_job` never writes the secret, so a save that races a
    /// hand-out cannot bring it back.
    pub async fn set_job_key(
        &self,
        job_id: &str,
        owner: &str,
        key_id: &str,
        key_secret_encrypted: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE deploy_jobs SET key_id = $1, key_secret_encrypted = $2 WHERE id = $3 AND lease_owner = $4",
        )
        .bind(key_id)
        .bind(key_secret_encrypted)
        .bind(job_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Hands out the new key of a finished deploy once, then forgets it.
    pub async fn take_job_key(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        let job = self.get_job(job_id).await?;
        let Some(secret) = job
            .key_secret_encrypted
            .filter(|_| job.state == JobState::Succeeded)
        else {
            return Ok(None);
        };
        let result = sqlx::query(
            "UPDATE deploy_jobs SET key_secret_encrypted = NULL WHERE id = $1 AND key_secret_encrypted = $2 \
             AND state = 'succeeded'",
        )
        .bind(job_id)
        .bind(&secret)
        .execute(&self.pool)
        .await?;
        Ok((result.rows_affected() == 1).then_some(secret))
    }

    /// Whether the endpoint has a job that is not finished.
    pub async fn has_active_job(&self, endpoint_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deploy_jobs WHERE endpoint_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await?;
        let count: i64 = sqlx::Row::try_get(&row, "n")?;
        Ok(count > 0)
    }
}

/// Marks a job as finished in memory (the caller saves it).
pub fn finish(job: &mut DeployJob, state: JobState) {
    job.state = state;
    job.finished_at = Some(now_ms());
    job.lease_owner = None;
    job.lease_until = None;
}

async fn insert_job(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &DeployJob,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deploy_jobs (id, endpoint_id, user_id, kind, state, stage, progress, request, plan, \
         resource, attempts, key_id, key_secret_encrypted, error, lease_owner, lease_until, created_at, \
         updated_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19)",
    )
    .bind(&job.id)
    .bind(&job.endpoint_id)
    .bind(&job.user_id)
    .bind(job.kind.as_str())
    .bind(job.state.as_str())
    .bind(job.stage.as_str())
    .bind(job.progress)
    .bind(&job.request)
    .bind(&job.plan)
    .bind(&job.resource)
    .bind(&job.attempts)
    .bind(&job.key_id)
    .bind(&job.key_secret_encrypted)
    .bind(&job.error)
    .bind(&job.lease_owner)
    .bind(job.lease_until)
    .bind(job.created_at)
    .bind(job.updated_at)
    .bind(job.finished_at)
    .execute(&mut **transaction)
    .await
    .map_err(|error| StoreError::from_write(error, "a deployment of this endpoint is already running"))?;
    Ok(())
}

impl Store {
    /// Unfinished deploy jobs of a user (a cap on concurrent deploys).
    pub async fn count_active_jobs_of_user(&self, user_id: &str) -> Result<i64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deploy_jobs WHERE user_id = $1 AND state IN ('queued', 'running') \
             AND kind IN ('deploy', 'redeploy')",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Whether a training job of the user produced the repository (so the
    /// user may deploy it although it is private).
    pub async fn user_trained_repo(
        &self,
        user_id: &str,
        hf_repo_url: &str,
    ) -> Result<bool, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints WHERE user_id = $1 AND hf_repo_url = $2 AND training_job_id IS NOT NULL",
        )
        .bind(user_id)
        .bind(hf_repo_url)
        .fetch_one(&self.pool)
        .await?;
        Ok(count > 0)
    }
}

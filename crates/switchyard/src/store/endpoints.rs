//! Endpoints, scoped to their owner.

use super::{keys::insert_key, rows, Store, StoreError};
use crate::domain::{now_ms, ApiKey, Endpoint, EndpointStatus, Modality, UpstreamApi};

/// Filters for listing endpoints.
#[derive(Debug, Default, Clone)]
pub struct EndpointFilter {
    pub modality: Option<Modality>,
    pub status: Option<EndpointStatus>,
    pub provider: Option<String>,
}

/// The mutable fields of an endpoint; `None` leaves a field unchanged.
#[derive(Debug, Default, Clone)]
pub struct EndpointPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<EndpointStatus>,
    pub min_workers: Option<i64>,
    pub max_workers: Option<i64>,
    pub idle_timeout_seconds: Option<i64>,
    pub gpu_type: Option<Option<String>>,
    pub timeout_seconds: Option<Option<i64>>,
    pub upstream_base_url: Option<String>,
    pub upstream_model: Option<String>,
    /// The wire protocol of the upstream (a deploy to Replicate switches it).
    pub upstream_api: Option<UpstreamApi>,
    pub upstream_key_encrypted: Option<Option<String>>,
    pub input_nanos_per_1k: Option<i64>,
    pub output_nanos_per_1k: Option<i64>,
    pub compute_nanos_per_second: Option<Option<i64>>,
    pub error_message: Option<Option<String>>,
    pub provider: Option<String>,
    pub provider_endpoint_id: Option<Option<String>>,
    pub provider_resource: Option<Option<String>>,
    pub endpoint_url: Option<Option<String>>,
    pub upstream_headers_encrypted: Option<Option<String>>,
    pub hf_repo_url: Option<Option<String>>,
    pub last_active_at: Option<Option<i64>>,
    pub routing: Option<crate::domain::Routing>,
    /// Only the Azure `api-version` of `routing` (applied after `routing`),
    /// so it changes without overwriting the rest of a concurrent edit.
    pub api_version: Option<Option<String>>,
}

impl EndpointPatch {
    fn apply(self, endpoint: &mut Endpoint) {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(value) = self.$field { endpoint.$field = value; })* };
        }
        set!(
            name,
            description,
            status,
            min_workers,
            max_workers,
            idle_timeout_seconds,
            gpu_type,
            timeout_seconds,
            upstream_base_url,
            upstream_model,
            upstream_api,
            upstream_key_encrypted,
            error_message,
            provider,
            provider_endpoint_id,
            provider_resource,
            endpoint_url,
            upstream_headers_encrypted,
            hf_repo_url,
            last_active_at,
            routing
        );
        if let Some(value) = self.api_version {
            endpoint.routing.api_version = value;
        }
        if let Some(value) = self.input_nanos_per_1k {
            endpoint.pricing.input_nanos_per_1k = value;
        }
        if let Some(value) = self.output_nanos_per_1k {
            endpoint.pricing.output_nanos_per_1k = value;
        }
        if let Some(value) = self.compute_nanos_per_second {
            endpoint.pricing.compute_nanos_per_second = value;
        }
    }
}

impl Store {
    /// Inserts an endpoint together with its first API key, atomically.
    pub async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        first_key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_endpoint(&mut transaction, endpoint).await?;
        insert_key(&mut transaction, first_key).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Loads one of the user's endpoints; another user's endpoint is not found.
    pub async fn get_endpoint(
        &self,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<Endpoint, StoreError> {
        let query = format!(
            "SELECT {} FROM endpoints WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
            rows::ENDPOINT_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(endpoint_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::endpoint(&row)
    }

    /// Lists the user's endpoints, newest first.
    pub async fn list_endpoints(
        &self,
        user_id: &str,
        filter: &EndpointFilter,
    ) -> Result<Vec<Endpoint>, StoreError> {
        // QueryBuilder<Any> writes `?` placeholders, which PostgreSQL rejects, so
        // the optional filters are numbered by hand; values are always bound.
        let mut query = format!(
            "SELECT {} FROM endpoints WHERE deleted_at IS NULL AND user_id = $1",
            rows::ENDPOINT_COLUMNS
        );
        let mut values: Vec<String> = Vec::new();
        for (column, value) in [
            ("modality", filter.modality.map(|m| m.as_str().to_owned())),
            ("status", filter.status.map(|s| s.as_str().to_owned())),
            ("provider", filter.provider.clone()),
        ] {
            if let Some(value) = value {
                values.push(value);
                query.push_str(&format!(" AND {column} = ${}", values.len() + 1));
            }
        }
        query.push_str(" ORDER BY created_at DESC, id DESC");
        let mut statement = sqlx::query(&query).bind(user_id);
        for value in values {
            statement = statement.bind(value);
        }
        let rows = statement.fetch_all(&self.pool).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    /// Loads every endpoint that is not deleted (for the gateway snapshot).
    pub async fn list_live_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let query = format!(
            "SELECT {} FROM endpoints WHERE deleted_at IS NULL",
            rows::ENDPOINT_COLUMNS
        );
        let rows = sqlx::query(&query).fetch_all(&self.pool).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    /// Applies a patch to one of the user's endpoints and returns the result.
    pub async fn update_endpoint(
        &self,
        user_id: &str,
        endpoint_id: &str,
        patch: EndpointPatch,
    ) -> Result<Endpoint, StoreError> {
        // Optimistic concurrency: the write applies only if nobody changed the
        // row since it was read (same `updated_at`); otherwise read and retry,
        // so two concurrent PATCHes of different fields both survive.
        for _ in 0..5 {
            let mut endpoint = self.get_endpoint(user_id, endpoint_id).await?;
            let read_at = endpoint.updated_at;
            patch.clone().apply(&mut endpoint);
            endpoint.updated_at = now_ms().max(read_at + 1);
            let result = sqlx::query(
                "UPDATE endpoints SET name = $1, description = $2, status = $3, min_workers = $4, max_workers = $5, \
                 idle_timeout_seconds = $6, gpu_type = $7, timeout_seconds = $8, upstream_base_url = $9, \
                 upstream_model = $10, upstream_key_encrypted = $11, price_input_nanos_per_1k = $12, \
                 price_output_nanos_per_1k = $13, price_compute_nanos_per_second = $14, error_message = $15, \
                 updated_at = $16, provider = $20, provider_endpoint_id = $21, provider_resource = $22, \
                 endpoint_url = $23, upstream_headers_encrypted = $24, hf_repo_url = $25, last_active_at = $26, \
                 upstream_api = $27, routing = $28 \
                 WHERE id = $17 AND user_id = $18 AND deleted_at IS NULL AND updated_at = $19",
            )
            .bind(&endpoint.name)
            .bind(&endpoint.description)
            .bind(endpoint.status.as_str())
            .bind(endpoint.min_workers)
            .bind(endpoint.max_workers)
            .bind(endpoint.idle_timeout_seconds)
            .bind(&endpoint.gpu_type)
            .bind(endpoint.timeout_seconds)
            .bind(&endpoint.upstream_base_url)
            .bind(&endpoint.upstream_model)
            .bind(&endpoint.upstream_key_encrypted)
            .bind(endpoint.pricing.input_nanos_per_1k)
            .bind(endpoint.pricing.output_nanos_per_1k)
            .bind(endpoint.pricing.compute_nanos_per_second)
            .bind(&endpoint.error_message)
            .bind(endpoint.updated_at)
            .bind(endpoint_id)
            .bind(user_id)
            .bind(read_at)
            .bind(&endpoint.provider)
            .bind(&endpoint.provider_endpoint_id)
            .bind(&endpoint.provider_resource)
            .bind(&endpoint.endpoint_url)
            .bind(&endpoint.upstream_headers_encrypted)
            .bind(&endpoint.hf_repo_url)
            .bind(endpoint.last_active_at)
            .bind(endpoint.upstream_api.as_str())
            .bind(rows::routing_json(&endpoint.routing))
            .execute(&self.pool)
            .await
            .map_err(|error| {
                StoreError::from_write(error, &format!("an endpoint named `{}` already exists", endpoint.name))
            })?;
            if result.rows_affected() == 1 {
                return Ok(endpoint);
            }
        }
        Err(StoreError::Conflict(
            "the endpoint is being changed concurrently; retry".to_owned(),
        ))
    }

    /// Terminates one of the user's endpoints: marks it deleted and revokes its keys.
    pub async fn delete_endpoint(
        &self,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut transaction = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE endpoints SET status = 'terminated', deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(endpoint_id)
        .bind(user_id)
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "UPDATE api_keys SET is_active = 0, revoked_at = $1 WHERE endpoint_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(endpoint_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Loads an endpoint by id whoever owns it (control-plane jobs only).
    pub async fn get_endpoint_any(&self, endpoint_id: &str) -> Result<Endpoint, StoreError> {
        let query = format!(
            "SELECT {} FROM endpoints WHERE id = $1",
            rows::ENDPOINT_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(endpoint_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::endpoint(&row)
    }

    /// Whether the endpoint row is deleted (terminated).
    pub async fn endpoint_is_deleted(&self, endpoint_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT deleted_at FROM endpoints WHERE id = $1")
            .bind(endpoint_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let deleted: Option<i64> = sqlx::Row::try_get(&row, "deleted_at")?;
        Ok(deleted.is_some())
    }

    /// The user's endpoint created for a training job, if any.
    pub async fn endpoint_for_training_job(
        &self,
        user_id: &str,
        training_job_id: &str,
    ) -> Result<Option<Endpoint>, StoreError> {
        let query = format!(
            "SELECT {} FROM endpoints WHERE user_id = $1 AND training_job_id = $2",
            rows::ENDPOINT_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(user_id)
            .bind(training_job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::endpoint).transpose()
    }

    /// Every endpoint row, deleted or not (for the reconcile loop).
    pub async fn list_all_endpoints(&self) -> Result<Vec<(Endpoint, bool)>, StoreError> {
        let query = format!(
            "SELECT {}, deleted_at FROM endpoints",
            rows::ENDPOINT_COLUMNS
        );
        let rows = sqlx::query(&query).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let deleted: Option<i64> = sqlx::Row::try_get(row, "deleted_at")?;
                Ok((rows::endpoint(row)?, deleted.is_some()))
            })
            .collect()
    }
}

/// Inserts an endpoint row inside a transaction.
pub(super) async fn insert_endpoint(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    endpoint: &Endpoint,
) -> Result<(), StoreError> {
    sqlx::query(
            "INSERT INTO endpoints (id, user_id, name, description, modality, source_type, base_model, \
             hf_repo_url, provider, provider_endpoint_id, endpoint_url, endpoint_type, gpu_type, min_workers, \
             max_workers, idle_timeout_seconds, status, last_active_at, error_message, upstream_base_url, \
             upstream_api, upstream_model, upstream_key_encrypted, timeout_seconds, price_input_nanos_per_1k, \
             price_output_nanos_per_1k, price_compute_nanos_per_second, provider_resource, \
             upstream_headers_encrypted, training_job_id, created_at, updated_at, routing) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.user_id)
        .bind(&endpoint.name)
        .bind(&endpoint.description)
        .bind(endpoint.modality.as_str())
        .bind(endpoint.source_type.as_str())
        .bind(&endpoint.base_model)
        .bind(&endpoint.hf_repo_url)
        .bind(&endpoint.provider)
        .bind(&endpoint.provider_endpoint_id)
        .bind(&endpoint.endpoint_url)
        .bind(endpoint.endpoint_type.as_str())
        .bind(&endpoint.gpu_type)
        .bind(endpoint.min_workers)
        .bind(endpoint.max_workers)
        .bind(endpoint.idle_timeout_seconds)
        .bind(endpoint.status.as_str())
        .bind(endpoint.last_active_at)
        .bind(&endpoint.error_message)
        .bind(&endpoint.upstream_base_url)
        .bind(endpoint.upstream_api.as_str())
        .bind(&endpoint.upstream_model)
        .bind(&endpoint.upstream_key_encrypted)
        .bind(endpoint.timeout_seconds)
        .bind(endpoint.pricing.input_nanos_per_1k)
        .bind(endpoint.pricing.output_nanos_per_1k)
        .bind(endpoint.pricing.compute_nanos_per_second)
        .bind(&endpoint.provider_resource)
        .bind(&endpoint.upstream_headers_encrypted)
        .bind(&endpoint.training_job_id)
        .bind(endpoint.created_at)
        .bind(endpoint.updated_at)
        .bind(rows::routing_json(&endpoint.routing))
        .execute(&mut **transaction)
        .await
        .map_err(|error| {
            StoreError::from_write(error, &format!("an endpoint named `{}` already exists", endpoint.name))
        })?;
    Ok(())
}

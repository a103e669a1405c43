//! Extra backends of endpoints and the usage figures per version that judge a roll-out.

use sqlx::Row;

use super::{rows, Store, StoreError};
use crate::domain::{now_ms, Backend};

/// Usage of one version of an endpoint over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionUsage {
    pub version: String,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micro_usd: i64,
    pub average_latency_ms: i64,
    pub retried_requests: i64,
}

impl Store {
    /// Adds a backend to one of the user's endpoints.
    pub async fn insert_backend(&self, user_id: &str, backend: &Backend) -> Result<(), StoreError> {
        // The endpoint must be the user's and live (404 otherwise).
        self.get_endpoint(user_id, &backend.endpoint_id).await?;
        sqlx::query(&format!(
            "INSERT INTO endpoint_backends ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            rows::BACKEND_COLUMNS
        ))
        .bind(&backend.id)
        .bind(&backend.endpoint_id)
        .bind(&backend.version)
        .bind(backend.weight)
        .bind(&backend.upstream_base_url)
        .bind(backend.upstream_api.as_str())
        .bind(&backend.upstream_model)
        .bind(&backend.upstream_api_version)
        .bind(&backend.upstream_key_encrypted)
        .bind(&backend.upstream_headers_encrypted)
        .bind(backend.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live backends of one of the user's endpoints, oldest first.
    pub async fn list_backends(
        &self,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<Backend>, StoreError> {
        self.get_endpoint(user_id, endpoint_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM endpoint_backends WHERE endpoint_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id",
            rows::BACKEND_COLUMNS
        ))
        .bind(endpoint_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::backend).collect()
    }

    /// Every live backend of every live endpoint (for the gateway snapshot).
    pub async fn list_live_backends(&self) -> Result<Vec<Backend>, StoreError> {
        let columns = rows::BACKEND_COLUMNS
            .split(", ")
            .map(|column| format!("b.{}", column.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM endpoint_backends b JOIN endpoints e ON e.id = b.endpoint_id \
             WHERE b.deleted_at IS NULL AND e.deleted_at IS NULL ORDER BY b.created_at, b.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::backend).collect()
    }

    /// Removes a backend of one of the user's endpoints.
    pub async fn delete_backend(
        &self,
        user_id: &str,
        endpoint_id: &str,
        backend_id: &str,
    ) -> Result<(), StoreError> {
        self.get_endpoint(user_id, endpoint_id).await?;
        let result = sqlx::query(
            "UPDATE endpoint_backends SET deleted_at = $1 \
             WHERE id = $2 AND endpoint_id = $3 AND deleted_at IS NULL",
        )
        .bind(now_ms())
        .bind(backend_id)
        .bind(endpoint_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Usage of one of the user's endpoints per version since `since_ms`.
    pub async fn usage_by_version(
        &self,
        user_id: &str,
        endpoint_id: &str,
        since_ms: i64,
    ) -> Result<Vec<VersionUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(backend_version, '') AS version, COUNT(*) AS requests, \
             CAST(COALESCE(SUM(CASE WHEN success = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT) AS cost_micro_usd, \
             CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS latency_sum, \
             CAST(COALESCE(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS retried \
             FROM usage_records WHERE endpoint_id = $1 AND user_id = $2 AND created_at >= $3 \
             GROUP BY COALESCE(backend_version, '') ORDER BY version",
        )
        .bind(endpoint_id)
        .bind(user_id)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let requests: i64 = row.try_get("requests")?;
                let latency_sum: i64 = row.try_get("latency_sum")?;
                Ok(VersionUsage {
                    version: row.try_get("version")?,
                    requests,
                    errors: row.try_get("errors")?,
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cost_micro_usd: row.try_get("cost_micro_usd")?,
                    average_latency_ms: if requests > 0 {
                        latency_sum / requests
                    } else {
                        0
                    },
                    retried_requests: row.try_get("retried")?,
                })
            })
            .collect()
    }
}

//! Deployments of models: each one owns an endpoint row (what the gateway
//! routes and meters) and an internal API key of that endpoint.
//!
//! A deployment, its endpoint and its key are written in one transaction, and
//! the insert happens only while the model is live and active, so a model
//! deleted or deactivated meanwhile cannot gain a deployment. Starting or
//! stopping a deployment sets its endpoint's status in the same transaction;
//! deleting it terminates the endpoint and revokes the endpoint's keys.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::endpoints::insert_endpoint;
use super::keys::insert_key;
use super::{Store, StoreError};
use crate::domain::{now_ms, wire_enum, ApiKey, Endpoint, EndpointStatus};

wire_enum!(
    /// Whether a deployment serves requests.
    DeploymentStatus { Running => "running", Stopped => "stopped" }
);

impl DeploymentStatus {
    /// The status its endpoint has in the gateway.
    pub fn endpoint_status(self) -> EndpointStatus {
        match self {
            DeploymentStatus::Running => EndpointStatus::Active,
            DeploymentStatus::Stopped => EndpointStatus::Stopped,
        }
    }
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub model_id: String,
    pub endpoint_id: String,
    /// The internal key of the endpoint that meters the inference route.
    pub key_id: String,
    pub status: DeploymentStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A deployment with the summary of its model (read with one join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentWithModel {
    pub deployment: Deployment,
    pub model_name: Option<String>,
    pub model_provider: Option<String>,
    pub model_identifier: Option<String>,
}

/// Requests and tokens recorded on one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeploymentUsage {
    pub request_count: i64,
    pub total_tokens: i64,
}

const SELECT_WITH_MODEL: &str = "SELECT d.id, d.user_id, d.name, d.description, d.model_id, \
    d.endpoint_id, d.key_id, d.status, d.created_at, d.updated_at, m.name AS model_name, \
    m.provider AS model_provider, m.model_identifier AS model_identifier \
    FROM deployments d LEFT JOIN models m ON m.id = d.model_id";

impl Store {
    /// Inserts a deployment with its endpoint and internal key, atomically, if
    /// the model is still live and active (`Conflict` otherwise).
    pub async fn create_deployment(
        &self,
        deployment: &Deployment,
        endpoint: &Endpoint,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_endpoint(&mut transaction, endpoint).await?;
        insert_key(&mut transaction, key).await?;
        let result = sqlx::query(
            "INSERT INTO deployments (id, user_id, name, description, model_id, endpoint_id, key_id, status, \
             created_at, updated_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS \
             (SELECT 1 FROM models WHERE id = $5 AND deleted_at IS NULL AND is_active = 1)",
        )
        .bind(&deployment.id)
        .bind(&deployment.user_id)
        .bind(&deployment.name)
        .bind(&deployment.description)
        .bind(&deployment.model_id)
        .bind(&deployment.endpoint_id)
        .bind(&deployment.key_id)
        .bind(deployment.status.as_str())
        .bind(deployment.created_at)
        .bind(deployment.updated_at)
        .execute(&mut *transaction)
        .await
        .map_err(|error| {
            StoreError::from_write(
                error,
                &format!("a deployment named `{}` already exists", deployment.name),
            )
        })?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict("Model is not active".to_owned()));
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Loads one of the user's live deployments.
    pub async fn get_deployment(
        &self,
        user_id: &str,
        deployment_id: &str,
    ) -> Result<DeploymentWithModel, StoreError> {
        let query = format!(
            "{SELECT_WITH_MODEL} WHERE d.id = $1 AND d.user_id = $2 AND d.deleted_at IS NULL"
        );
        let row = sqlx::query(&query)
            .bind(deployment_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        with_model(&row)
    }

    /// The internal keys that deployments hold on one of the user's endpoints
    /// (deleted deployments included: their keys were revoked with them).
    pub async fn deployment_key_ids(
        &self,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT key_id FROM deployments WHERE user_id = $1 AND endpoint_id = $2",
        )
        .bind(user_id)
        .bind(endpoint_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Lists the user's live deployments, newest first, optionally of one
    /// status, with the total that matches.
    pub async fn list_deployments(
        &self,
        user_id: &str,
        status: Option<DeploymentStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeploymentWithModel>, i64), StoreError> {
        // `$4 = ''` switches the status filter off while keeping one query text.
        let status_text = status.map_or("", DeploymentStatus::as_str);
        let query = format!(
            "{SELECT_WITH_MODEL} WHERE d.user_id = $1 AND d.deleted_at IS NULL \
             AND ($4 = '' OR d.status = $4) ORDER BY d.created_at DESC, d.id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&query)
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .bind(status_text)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deployments WHERE user_id = $1 AND deleted_at IS NULL \
             AND ($2 = '' OR status = $2)",
        )
        .bind(user_id)
        .bind(status_text)
        .fetch_one(&self.pool)
        .await?;
        let deployments = rows.iter().map(with_model).collect::<Result<Vec<_>, _>>()?;
        Ok((deployments, total))
    }

    /// Counts the user's live deployments per status.
    pub async fn count_deployments_by_status(
        &self,
        user_id: &str,
    ) -> Result<HashMap<DeploymentStatus, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM deployments WHERE user_id = $1 AND deleted_at IS NULL \
             GROUP BY status",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = HashMap::new();
        for row in &rows {
            let status: String = row.try_get("status")?;
            counts.insert(parse_status(&status)?, row.try_get::<i64, _>("n")?);
        }
        Ok(counts)
    }

    /// Lists the live deployments of a model, whoever owns them.
    pub async fn list_model_deployments(
        &self,
        model_id: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        let query = format!("{SELECT_WITH_MODEL} WHERE d.model_id = $1 AND d.deleted_at IS NULL");
        let rows = sqlx::query(&query)
            .bind(model_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| with_model(row).map(|found| found.deployment))
            .collect()
    }

    /// Sets a deployment's status and its endpoint's status together.
    pub async fn set_deployment_status(
        &self,
        user_id: &str,
        deployment_id: &str,
        status: DeploymentStatus,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut transaction = self.pool.begin().await?;
        let endpoint_id: Option<String> = sqlx::query_scalar(
            "SELECT endpoint_id FROM deployments WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
        )
        .bind(deployment_id)
        .bind(user_id)
        .fetch_optional(&mut *transaction)
        .await?;
        let endpoint_id = endpoint_id.ok_or(StoreError::NotFound)?;
        sqlx::query("UPDATE deployments SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(deployment_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "UPDATE endpoints SET status = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(status.endpoint_status().as_str())
        .bind(now)
        .bind(&endpoint_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Soft-deletes a deployment, terminates its endpoint and revokes the endpoint's keys.
    pub async fn delete_deployment(
        &self,
        user_id: &str,
        deployment_id: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut transaction = self.pool.begin().await?;
        let endpoint_id: Option<String> = sqlx::query_scalar(
            "SELECT endpoint_id FROM deployments WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
        )
        .bind(deployment_id)
        .bind(user_id)
        .fetch_optional(&mut *transaction)
        .await?;
        let endpoint_id = endpoint_id.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "UPDATE deployments SET status = 'stopped', deleted_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(deployment_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE endpoints SET status = 'terminated', deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(&endpoint_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE api_keys SET is_active = 0, revoked_at = $1 WHERE endpoint_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&endpoint_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Requests and tokens (input + output) recorded on each of the given endpoints.
    pub async fn usage_of_endpoints(
        &self,
        endpoint_ids: &[&str],
    ) -> Result<HashMap<String, DeploymentUsage>, StoreError> {
        if endpoint_ids.is_empty() {
            return Ok(HashMap::new());
        }
        // The placeholders are numbered here; every value is bound.
        let placeholders = (1..=endpoint_ids.len())
            .map(|index| format!("${index}"))
            .collect::<Vec<_>>()
            .join(", ");
        let query = format!(
            "SELECT endpoint_id, COUNT(*) AS requests, \
             CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens \
             FROM usage_records WHERE endpoint_id IN ({placeholders}) GROUP BY endpoint_id"
        );
        let mut statement = sqlx::query(&query);
        for endpoint_id in endpoint_ids {
            statement = statement.bind(*endpoint_id);
        }
        let rows = statement.fetch_all(&self.pool).await?;
        let mut usage = HashMap::new();
        for row in &rows {
            usage.insert(
                row.try_get::<String, _>("endpoint_id")?,
                DeploymentUsage {
                    request_count: row.try_get("requests")?,
                    total_tokens: row.try_get("tokens")?,
                },
            );
        }
        Ok(usage)
    }
}

fn parse_status(text: &str) -> Result<DeploymentStatus, StoreError> {
    DeploymentStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("column status has unknown value `{text}`")))
}

fn with_model(row: &AnyRow) -> Result<DeploymentWithModel, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(DeploymentWithModel {
        deployment: Deployment {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            model_id: row.try_get("model_id")?,
            endpoint_id: row.try_get("endpoint_id")?,
            key_id: row.try_get("key_id")?,
            status: parse_status(&status)?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        model_name: row.try_get("model_name")?,
        model_provider: row.try_get("model_provider")?,
        model_identifier: row.try_get("model_identifier")?,
    })
}

//! The dashboard playground's internal key per endpoint and its recent usage.

use super::keys::insert_key;
use super::{rows, Store, StoreError};
use crate::domain::{ApiKey, UsageRecord};

impl Store {
    /// The id of the endpoint's usable playground key, if it has one.
    pub async fn playground_key_id(&self, endpoint_id: &str) -> Result<Option<String>, StoreError> {
        let id = sqlx::query_scalar(
            "SELECT p.key_id FROM playground_keys p JOIN api_keys k ON k.id = p.key_id \
             WHERE p.endpoint_id = $1 AND k.revoked_at IS NULL AND k.is_active = 1",
        )
        .bind(endpoint_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    /// Stores `key` as its endpoint's playground key, replacing one that was
    /// revoked. [`StoreError::Conflict`] when a usable one exists already
    /// (two first uses at once): nothing is written then.
    pub async fn create_playground_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM playground_keys WHERE endpoint_id = $1 AND key_id IN \
             (SELECT id FROM api_keys WHERE revoked_at IS NOT NULL OR is_active = 0)",
        )
        .bind(&key.endpoint_id)
        .execute(&mut *transaction)
        .await?;
        insert_key(&mut transaction, key).await?;
        sqlx::query(
            "INSERT INTO playground_keys (endpoint_id, key_id, user_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.endpoint_id)
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(key.created_at)
        .execute(&mut *transaction)
        .await
        .map_err(|error| StoreError::from_write(error, "the endpoint has a playground key"))?;
        transaction.commit().await?;
        Ok(())
    }

    /// The user's newest playground requests, across endpoints, newest first.
    pub async fn playground_history(
        &self,
        user_id: &str,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_records WHERE user_id = $1 AND api_key_id IN \
             (SELECT key_id FROM playground_keys WHERE user_id = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2",
            rows::USAGE_COLUMNS
        ))
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::usage).collect()
    }
}

//! API keys: only their keyed hash and display prefix are stored.

use super::{hex_encode, rows, Store, StoreError};
use crate::domain::{now_ms, ApiKey};

pub(super) async fn insert_key(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &ApiKey,
) -> Result<(), StoreError> {
    let permissions = key
        .permissions
        .iter()
        .map(|permission| permission.as_str())
        .collect::<Vec<_>>()
        .join(",");
    sqlx::query(
        "INSERT INTO api_keys (id, endpoint_id, user_id, name, prefix, key_hash, permissions, \
         rate_limit_per_minute, rate_limit_per_day, is_active, is_test, last_used_at, expires_at, revoked_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&key.id)
    .bind(&key.endpoint_id)
    .bind(&key.user_id)
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(hex_encode(&key.key_hash))
    .bind(permissions)
    .bind(key.rate_limit_per_minute)
    .bind(key.rate_limit_per_day)
    .bind(i64::from(key.is_active))
    .bind(i64::from(key.is_test))
    .bind(key.last_used_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .bind(key.created_at)
    .execute(&mut **transaction)
    .await
    .map_err(|error| StoreError::from_write(error, "key already exists"))?;
    Ok(())
}

impl Store {
    /// Stores a new key for an endpoint the caller owns (checked by the caller).
    pub async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_key(&mut transaction, key).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Lists an endpoint's keys, newest first; the dashboard playground's
    /// internal key is not among them.
    pub async fn list_keys(
        &self,
        user_id: &str,
        endpoint_id: &str,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let query = format!(
            "SELECT {} FROM api_keys WHERE endpoint_id = $1 AND user_id = $2 \
             AND id NOT IN (SELECT key_id FROM playground_keys WHERE endpoint_id = $1) \
             ORDER BY created_at DESC, id DESC",
            rows::KEY_COLUMNS
        );
        let rows = sqlx::query(&query)
            .bind(endpoint_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::api_key).collect()
    }

    /// Revokes a key of one of the user's endpoints.
    pub async fn revoke_key(
        &self,
        user_id: &str,
        endpoint_id: &str,
        key_id: &str,
    ) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "UPDATE api_keys SET is_active = 0, revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND endpoint_id = $3 AND user_id = $4",
        )
        .bind(now_ms())
        .bind(key_id)
        .bind(endpoint_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        let query = format!(
            "SELECT {} FROM api_keys WHERE id = $1 AND endpoint_id = $2 AND user_id = $3",
            rows::KEY_COLUMNS
        );
        let row = sqlx::query(&query)
            .bind(key_id)
            .bind(endpoint_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::api_key(&row)
    }

    /// Loads every key that is not revoked (for the gateway's in-memory key cache).
    pub async fn list_usable_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let query = format!(
            "SELECT {} FROM api_keys WHERE revoked_at IS NULL AND is_active = 1",
            rows::KEY_COLUMNS
        );
        let rows = sqlx::query(&query).fetch_all(&self.pool).await?;
        rows.iter().map(rows::api_key).collect()
    }
}

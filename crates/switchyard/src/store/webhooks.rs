//! Outbound webhook subscriptions (secrets encrypted, soft-deleted).

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::now_ms;

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub user_id: String,
    pub url: String,
    /// The signing secret, encrypted.
    pub secret_encrypted: String,
    /// Event types it wants; empty = all.
    pub events: Vec<String>,
    pub created_at: i64,
}

fn webhook(row: &sqlx::any::AnyRow) -> Result<Webhook, StoreError> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        url: row.try_get("url")?,
        secret_encrypted: row.try_get("secret_encrypted")?,
        events: events
            .split(',')
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a subscription.
    pub async fn create_webhook(&self, hook: &Webhook) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, user_id, url, secret_encrypted, events, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&hook.id)
        .bind(&hook.user_id)
        .bind(&hook.url)
        .bind(&hook.secret_encrypted)
        .bind(hook.events.join(","))
        .bind(hook.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user's live subscriptions, newest first.
    pub async fn list_webhooks(&self, user_id: &str) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, url, secret_encrypted, events, created_at FROM webhooks \
             WHERE user_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook).collect()
    }

    /// Every live subscription (for the dispatcher's cache).
    pub async fn list_all_webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, url, secret_encrypted, events, created_at FROM webhooks WHERE deleted_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook).collect()
    }

    /// Deletes one of the user's subscriptions; another user's is not found.
    pub async fn delete_webhook(&self, user_id: &str, webhook_id: &str) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE webhooks SET deleted_at = $1 WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL",
        )
        .bind(now_ms())
        .bind(webhook_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

//! Users and their management tokens.

use super::{hex_encode, rows, Store, StoreError};
use crate::domain::{new_id, now_ms, User};

impl Store {
    /// Creates a user with a first management token (given as its hash and display prefix).
    pub async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        token_hash: &[u8; 32],
        token_prefix: &str,
    ) -> Result<User, StoreError> {
        let user = User {
            id: new_id(),
            name: name.to_owned(),
            is_admin,
            balance_micro_usd: 0,
            created_at: now_ms(),
        };
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, name, is_admin, balance_micro_usd, created_at) VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(i64::from(is_admin))
        .bind(user.created_at)
        .execute(&mut *transaction)
        .await?;
        insert_token(&mut transaction, &user.id, token_hash, token_prefix).await?;
        transaction.commit().await?;
        Ok(user)
    }

    /// Adds a management token to an existing user.
    pub async fn add_management_token(
        &self,
        user_id: &str,
        token_hash: &[u8; 32],
        token_prefix: &str,
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        insert_token(&mut transaction, user_id, token_hash, token_prefix).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Revokes every live token of a user except the one with `keep_hash`.
    pub async fn revoke_other_tokens(
        &self,
        user_id: &str,
        keep_hash: &[u8; 32],
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE management_tokens SET revoked_at = $1 WHERE user_id = $2 AND token_hash <> $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(user_id)
        .bind(hex_encode(keep_hash))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Finds the user owning a live management token.
    pub async fn find_user_by_token_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<User>, StoreError> {
        let query = format!(
            "SELECT {} FROM users u JOIN management_tokens t ON t.user_id = u.id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            prefixed(rows::USER_COLUMNS, "u")
        );
        let row = sqlx::query(&query)
            .bind(hex_encode(token_hash))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    /// Returns the first admin user, if any exists.
    pub async fn find_admin(&self) -> Result<Option<User>, StoreError> {
        let query = format!(
            "SELECT {} FROM users WHERE is_admin = 1 ORDER BY created_at LIMIT 1",
            rows::USER_COLUMNS
        );
        let row = sqlx::query(&query).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::user).transpose()
    }

    /// Loads one user.
    pub async fn get_user(&self, user_id: &str) -> Result<User, StoreError> {
        let query = format!("SELECT {} FROM users WHERE id = $1", rows::USER_COLUMNS);
        let row = sqlx::query(&query)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::user(&row)
    }

    /// Loads every user (for the in-memory balance snapshot).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let query = format!(
            "SELECT {} FROM users ORDER BY created_at",
            rows::USER_COLUMNS
        );
        let rows = sqlx::query(&query).fetch_all(&self.pool).await?;
        rows.iter().map(rows::user).collect()
    }
}

async fn insert_token(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    token_hash: &[u8; 32],
    token_prefix: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO management_tokens (id, user_id, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(hex_encode(token_hash))
    .bind(token_prefix)
    .bind(now_ms())
    .execute(&mut **transaction)
    .await
    .map_err(|error| StoreError::from_write(error, "token already exists"))?;
    Ok(())
}

/// Qualifies a column list with a table alias.
pub(super) fn prefixed(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

//! The append-only credit ledger and per-user balances.

use super::{rows, Store, StoreError};
use crate::domain::{new_id, now_ms, LedgerEntry, LedgerKind};

impl Store {
    /// Adds (or with a negative amount, removes) credit and appends a ledger entry,
    /// atomically. Returns the new balance in micro-dollars.
    pub async fn adjust_balance(
        &self,
        user_id: &str,
        kind: LedgerKind,
        amount_micro_usd: i64,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let balance: i64 = sqlx::query_scalar(
            "UPDATE users SET balance_micro_usd = balance_micro_usd + $1 WHERE id = $2 RETURNING balance_micro_usd",
        )
        .bind(amount_micro_usd)
        .bind(user_id)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO credit_ledger (id, user_id, kind, amount_micro_usd, balance_after_micro_usd, request_id, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $7)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(kind.as_str())
        .bind(amount_micro_usd)
        .bind(balance)
        .bind(reason)
        .bind(now_ms())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(balance)
    }

    /// Lists a user's ledger, newest first.
    pub async fn list_ledger(
        &self,
        user_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<LedgerEntry>, i64), StoreError> {
        let query = format!(
            "SELECT {} FROM credit_ledger WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            rows::LEDGER_COLUMNS
        );
        let rows = sqlx::query(&query)
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM credit_ledger WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
        let entries = rows
            .iter()
            .map(rows::ledger)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, total))
    }
}

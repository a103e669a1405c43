//! Usage records and the charges they cause, written in batches.

use std::collections::HashMap;

use sqlx::Row;

use super::{rows, Store, StoreError};
use crate::domain::{new_id, UsageRecord};

/// Aggregated usage over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSummary {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micro_usd: i64,
    pub compute_ms: i64,
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_p99_ms: i64,
}

/// Aggregated usage of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointUsageSummary {
    pub endpoint_id: String,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micro_usd: i64,
    pub average_latency_ms: i64,
}

/// What a batch write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub usage_rows: u64,
    pub charges: u64,
}

const SUMS: &str = "COUNT(*) AS requests, \
    CAST(COALESCE(SUM(CASE WHEN success = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
    CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT) AS cost_micro_usd, \
    CAST(COALESCE(SUM(compute_ms), 0) AS BIGINT) AS compute_ms, \
    CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) AS latency_sum";

impl Store {
    /// Writes usage records and charges their cost in one transaction.
    /// Charges are idempotent per usage record id: writing a batch twice charges once.
    pub async fn write_usage_batch(
        &self,
        records: &[UsageRecord],
    ) -> Result<BatchOutcome, StoreError> {
        let mut outcome = BatchOutcome::default();
        let mut transaction = self.pool.begin().await?;
        let mut last_used: HashMap<&str, i64> = HashMap::new();
        let mut last_active: HashMap<&str, i64> = HashMap::new();
        for record in records {
            let inserted = sqlx::query(&format!(
                "INSERT INTO usage_records ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14, $15, $16, $17, $18) ON CONFLICT (id) DO NOTHING",
                rows::USAGE_COLUMNS
            ))
            .bind(&record.id)
            .bind(&record.request_id)
            .bind(&record.api_key_id)
            .bind(&record.endpoint_id)
            .bind(&record.user_id)
            .bind(&record.method)
            .bind(i64::from(record.status_code))
            .bind(to_i64(record.input_tokens))
            .bind(to_i64(record.output_tokens))
            .bind(record.usage_source.as_str())
            .bind(to_i64(record.latency_ms))
            .bind(record.ttft_ms.map(to_i64))
            .bind(to_i64(record.compute_ms))
            .bind(record.cost_micro_usd)
            .bind(i64::from(record.success))
            .bind(&record.error_code)
            .bind(i64::from(record.streamed))
            .bind(record.created_at)
            .execute(&mut *transaction)
            .await?;
            outcome.usage_rows += inserted.rows_affected();
            let used = last_used.entry(record.api_key_id.as_str()).or_default();
            *used = (*used).max(record.created_at);
            let active = last_active.entry(record.endpoint_id.as_str()).or_default();
            *active = (*active).max(record.created_at);
            if record.cost_micro_usd > 0 && charge(&mut transaction, record).await? {
                outcome.charges += 1;
            }
        }
        for (key_id, at) in last_used {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(key_id)
                .execute(&mut *transaction)
                .await?;
        }
        for (endpoint_id, at) in last_active {
            sqlx::query("UPDATE endpoints SET last_active_at = $1 WHERE id = $2")
                .bind(at)
                .bind(endpoint_id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Summarises an endpoint's usage since `since_ms`.
    pub async fn usage_summary(
        &self,
        endpoint_id: &str,
        since_ms: i64,
    ) -> Result<UsageSummary, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUMS} FROM usage_records WHERE endpoint_id = $1 AND created_at >= $2"
        ))
        .bind(endpoint_id)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        let requests: i64 = row.try_get("requests")?;
        let mut summary = UsageSummary {
            requests,
            errors: row.try_get("errors")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
            cost_micro_usd: row.try_get("cost_micro_usd")?,
            compute_ms: row.try_get("compute_ms")?,
            ..UsageSummary::default()
        };
        if requests > 0 {
            summary.latency_p50_ms = self
                .latency_percentile(endpoint_id, since_ms, requests, 50)
                .await?;
            summary.latency_p95_ms = self
                .latency_percentile(endpoint_id, since_ms, requests, 95)
                .await?;
            summary.latency_p99_ms = self
                .latency_percentile(endpoint_id, since_ms, requests, 99)
                .await?;
        }
        Ok(summary)
    }

    /// Nearest-rank percentile of latency.
    async fn latency_percentile(
        &self,
        endpoint_id: &str,
        since_ms: i64,
        count: i64,
        percentile: i64,
    ) -> Result<i64, StoreError> {
        let rank = (count * percentile + 99) / 100;
        let offset = (rank - 1).clamp(0, count - 1);
        let value: Option<i64> = sqlx::query_scalar(
            "SELECT latency_ms FROM usage_records WHERE endpoint_id = $1 AND created_at >= $2 \
             ORDER BY latency_ms LIMIT 1 OFFSET $3",
        )
        .bind(endpoint_id)
        .bind(since_ms)
        .bind(offset)
        .fetch_optional(&self.pool)
        .await?;
        Ok(value.unwrap_or(0))
    }

    /// Lists an endpoint's usage records, newest first.
    pub async fn list_usage(
        &self,
        endpoint_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<UsageRecord>, i64), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_records WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            rows::USAGE_COLUMNS
        ))
        .bind(endpoint_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE endpoint_id = $1")
                .bind(endpoint_id)
                .fetch_one(&self.pool)
                .await?;
        let records = rows
            .iter()
            .map(rows::usage)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, total))
    }

    /// Summarises usage per endpoint of one user since `since_ms`.
    pub async fn usage_by_endpoint(
        &self,
        user_id: &str,
        since_ms: i64,
    ) -> Result<Vec<EndpointUsageSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT endpoint_id, {SUMS} FROM usage_records WHERE user_id = $1 AND created_at >= $2 GROUP BY endpoint_id"
        ))
        .bind(user_id)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let requests: i64 = row.try_get("requests")?;
                let latency_sum: i64 = row.try_get("latency_sum")?;
                Ok(EndpointUsageSummary {
                    endpoint_id: row.try_get("endpoint_id")?,
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
                })
            })
            .collect()
    }
}

/// Charges one record's cost; returns false when it was already charged.
async fn charge(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    record: &UsageRecord,
) -> Result<bool, StoreError> {
    let ledger_id = new_id();
    let inserted = sqlx::query(
        "INSERT INTO credit_ledger (id, user_id, kind, amount_micro_usd, balance_after_micro_usd, request_id, \
         reason, created_at) VALUES ($1, $2, 'charge', $3, 0, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&ledger_id)
    .bind(&record.user_id)
    .bind(-record.cost_micro_usd)
    .bind(&record.id)
    .bind(format!("{} via endpoint {}", record.method, record.endpoint_id))
    .bind(record.created_at)
    .execute(&mut **transaction)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    let balance: i64 = sqlx::query_scalar(
        "UPDATE users SET balance_micro_usd = balance_micro_usd - $1 WHERE id = $2 RETURNING balance_micro_usd",
    )
    .bind(record.cost_micro_usd)
    .bind(&record.user_id)
    .fetch_one(&mut **transaction)
    .await?;
    sqlx::query("UPDATE credit_ledger SET balance_after_micro_usd = $1 WHERE id = $2")
        .bind(balance)
        .bind(&ledger_id)
        .execute(&mut **transaction)
        .await?;
    Ok(true)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

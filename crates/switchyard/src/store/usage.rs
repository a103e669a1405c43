//! Usage records and the charges they cause, written in batches.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{rows, Backend, Store, StoreError};
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

/// Usage of one time bucket (see [`Store::usage_series`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBucket {
    /// Start of the bucket (epoch ms).
    pub start_ms: i64,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micro_usd: i64,
    /// Nearest-rank latency percentiles; `None` for a bucket without requests.
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub latency_p99_ms: Option<i64>,
}

/// Usage of one endpoint over consecutive equal buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSeries {
    /// Every bucket of the period in order, empty ones included.
    pub buckets: Vec<UsageBucket>,
    /// Whether the period had more than [`LATENCY_ROWS_CAP`] requests, so the
    /// percentiles come from its newest requests only (counts and sums stay exact).
    pub latency_capped: bool,
}

/// Most usage rows the latency percentiles of a series are computed from.
pub const LATENCY_ROWS_CAP: i64 = 100_000;

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
    /// Writes usage records and charges their cost in one transaction, with
    /// multi-row statements: one insert per 256 records, one balance update per
    /// user. Charges are idempotent per usage record id: a record whose row
    /// already exists is neither stored nor charged again.
    pub async fn write_usage_batch(
        &self,
        records: &[UsageRecord],
    ) -> Result<BatchOutcome, StoreError> {
        let mut transaction = self.pool.begin().await?;
        // Records already stored (a retried batch) are skipped. Asking first keeps
        // the inserts free of RETURNING rows, which would each cross a channel.
        let mut existing: HashSet<String> = HashSet::new();
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id FROM usage_records WHERE id IN {}",
                placeholders(self.backend, chunk.len(), 1)
            );
            let mut statement = sqlx::query_scalar::<_, String>(&sql);
            for record in chunk {
                statement = statement.bind(record.id.clone());
            }
            existing.extend(statement.fetch_all(&mut *transaction).await?);
        }
        let new_records: Vec<&UsageRecord> = records
            .iter()
            .filter(|record| !existing.contains(&record.id))
            .collect();
        for chunk in new_records.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO usage_records ({}) VALUES {}",
                rows::USAGE_COLUMNS,
                placeholders(self.backend, 21, chunk.len())
            );
            let mut statement = sqlx::query(&sql);
            for record in chunk {
                statement = statement
                    .bind(record.id.clone())
                    .bind(record.request_id.clone())
                    .bind(record.api_key_id.clone())
                    .bind(record.endpoint_id.clone())
                    .bind(record.user_id.clone())
                    .bind(record.method.clone())
                    .bind(i64::from(record.status_code))
                    .bind(to_i64(record.input_tokens))
                    .bind(to_i64(record.output_tokens))
                    .bind(record.usage_source.as_str())
                    .bind(to_i64(record.latency_ms))
                    .bind(record.ttft_ms.map(to_i64))
                    .bind(to_i64(record.compute_ms))
                    .bind(record.cost_micro_usd)
                    .bind(i64::from(record.success))
                    .bind(record.error_code.clone())
                    .bind(i64::from(record.streamed))
                    .bind(record.created_at)
                    .bind(record.backend_id.clone())
                    .bind(record.backend_version.clone())
                    .bind(i64::from(record.attempts));
            }
            statement.execute(&mut *transaction).await?;
        }
        let charges = charge_batch(&mut transaction, self.backend, &new_records).await?;
        touch_last_used(&mut transaction, &new_records).await?;
        transaction.commit().await?;
        Ok(BatchOutcome {
            usage_rows: new_records.len() as u64,
            charges,
        })
    }

    /// Summarises the usage of one of the user's endpoints since `since_ms`.
    pub async fn usage_summary(
        &self,
        user_id: &str,
        endpoint_id: &str,
        since_ms: i64,
    ) -> Result<UsageSummary, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUMS} FROM usage_records WHERE endpoint_id = $1 AND created_at >= $2 AND user_id = $3"
        ))
        .bind(endpoint_id)
        .bind(since_ms)
        .bind(user_id)
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
                .latency_percentile(user_id, endpoint_id, since_ms, requests, 50)
                .await?;
            summary.latency_p95_ms = self
                .latency_percentile(user_id, endpoint_id, since_ms, requests, 95)
                .await?;
            summary.latency_p99_ms = self
                .latency_percentile(user_id, endpoint_id, since_ms, requests, 99)
                .await?;
        }
        Ok(summary)
    }

    /// Nearest-rank percentile of latency.
    async fn latency_percentile(
        &self,
        user_id: &str,
        endpoint_id: &str,
        since_ms: i64,
        count: i64,
        percentile: i64,
    ) -> Result<i64, StoreError> {
        let rank = (count * percentile + 99) / 100;
        let offset = (rank - 1).clamp(0, count - 1);
        let value: Option<i64> = sqlx::query_scalar(
            "SELECT latency_ms FROM usage_records WHERE endpoint_id = $1 AND created_at >= $2 \
             AND user_id = $4 ORDER BY latency_ms LIMIT 1 OFFSET $3",
        )
        .bind(endpoint_id)
        .bind(since_ms)
        .bind(offset)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(value.unwrap_or(0))
    }

    /// Lists the usage records of one of the user's endpoints, newest first.
    pub async fn list_usage(
        &self,
        user_id: &str,
        endpoint_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<UsageRecord>, i64), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM usage_records WHERE endpoint_id = $1 AND user_id = $4 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            rows::USAGE_COLUMNS
        ))
        .bind(endpoint_id)
        .bind(limit)
        .bind(offset)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM usage_records WHERE endpoint_id = $1 AND user_id = $2",
        )
        .bind(endpoint_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        let records = rows
            .iter()
            .map(rows::usage)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, total))
    }

    /// Usage of one of the user's endpoints in `buckets` buckets of
    /// `bucket_ms` from `since_ms`: sums per bucket (exact) and latency
    /// p50/p95/p99 per bucket. Two queries whatever the period; buckets come
    /// from integer division of the record time, so the SQL is the same on
    /// SQLite and PostgreSQL. Percentiles are ranked by the database with
    /// window functions over the newest [`LATENCY_ROWS_CAP`] records of the
    /// period, so the work stays bounded; only one row per bucket is read back.
    pub async fn usage_series(
        &self,
        user_id: &str,
        endpoint_id: &str,
        since_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<UsageSeries, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let until_ms = since_ms.saturating_add(bucket_ms.saturating_mul(buckets as i64));
        let mut series = UsageSeries {
            buckets: (0..buckets)
                .map(|index| UsageBucket {
                    start_ms: since_ms + bucket_ms * index as i64,
                    ..UsageBucket::default()
                })
                .collect(),
            latency_capped: false,
        };
        let sums = sqlx::query(&format!(
            "SELECT CAST((created_at - $1) / $2 AS BIGINT) AS bucket, {SUMS} FROM usage_records \
             WHERE endpoint_id = $3 AND user_id = $4 AND created_at >= $1 AND created_at < $5 \
             GROUP BY bucket"
        ))
        .bind(since_ms)
        .bind(bucket_ms)
        .bind(endpoint_id)
        .bind(user_id)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut total = 0_i64;
        for row in &sums {
            let index: i64 = row.try_get("bucket")?;
            let Some(bucket) = usize::try_from(index)
                .ok()
                .and_then(|index| series.buckets.get_mut(index))
            else {
                continue;
            };
            bucket.requests = row.try_get("requests")?;
            bucket.errors = row.try_get("errors")?;
            bucket.input_tokens = row.try_get("input_tokens")?;
            bucket.output_tokens = row.try_get("output_tokens")?;
            bucket.cost_micro_usd = row.try_get("cost_micro_usd")?;
            total += bucket.requests;
        }
        if total == 0 {
            return Ok(series);
        }
        series.latency_capped = total > LATENCY_ROWS_CAP;
        // Nearest rank, as in `latency_percentile`: rank = ceil(n * p / 100).
        let percentiles = sqlx::query(
            "SELECT bucket, \
             CAST(MAX(CASE WHEN rank_in_bucket = (bucket_size * 50 + 99) / 100 THEN latency_ms END) AS BIGINT) AS p50, \
             CAST(MAX(CASE WHEN rank_in_bucket = (bucket_size * 95 + 99) / 100 THEN latency_ms END) AS BIGINT) AS p95, \
             CAST(MAX(CASE WHEN rank_in_bucket = (bucket_size * 99 + 99) / 100 THEN latency_ms END) AS BIGINT) AS p99 \
             FROM (SELECT bucket, latency_ms, \
                   ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY latency_ms) AS rank_in_bucket, \
                   COUNT(*) OVER (PARTITION BY bucket) AS bucket_size \
                   FROM (SELECT CAST((created_at - $1) / $2 AS BIGINT) AS bucket, latency_ms \
                         FROM usage_records WHERE endpoint_id = $3 AND user_id = $4 \
                         AND created_at >= $1 AND created_at < $5 \
                         ORDER BY created_at DESC LIMIT $6) recent) ranked \
             GROUP BY bucket",
        )
        .bind(since_ms)
        .bind(bucket_ms)
        .bind(endpoint_id)
        .bind(user_id)
        .bind(until_ms)
        .bind(LATENCY_ROWS_CAP)
        .fetch_all(&self.pool)
        .await?;
        for row in &percentiles {
            let index: i64 = row.try_get("bucket")?;
            let Some(bucket) = usize::try_from(index)
                .ok()
                .and_then(|index| series.buckets.get_mut(index))
            else {
                continue;
            };
            bucket.latency_p50_ms = row.try_get("p50")?;
            bucket.latency_p95_ms = row.try_get("p95")?;
            bucket.latency_p99_ms = row.try_get("p99")?;
        }
        Ok(series)
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

/// Most rows in one multi-row statement (18 columns × 256 stays far below
/// the bind-parameter limits of SQLite and PostgreSQL).
const ROWS_PER_STATEMENT: usize = 256;

/// `($1, …, $n), ($n+1, …)` for `rows` rows of `columns` values; plain `?` on
/// SQLite, where numbered parameters make binding quadratic in their count
/// (`sqlite3_bind_parameter_name` is looked up for every one).
fn placeholders(backend: Backend, columns: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// Debits each user once for the batch and appends one ledger entry per
/// charged record, with the running balance after it.
async fn charge_batch(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    records: &[&UsageRecord],
) -> Result<u64, StoreError> {
    let mut by_user: HashMap<&str, Vec<&UsageRecord>> = HashMap::new();
    for record in records.iter().filter(|record| record.cost_micro_usd > 0) {
        by_user
            .entry(record.user_id.as_str())
            .or_default()
            .push(record);
    }
    let mut charged = 0;
    for (user_id, charges) in by_user {
        let total: i64 = charges.iter().map(|record| record.cost_micro_usd).sum();
        let mut balance: i64 = sqlx::query_scalar(
            "UPDATE users SET balance_micro_usd = balance_micro_usd - $1 WHERE id = $2 RETURNING balance_micro_usd",
        )
        .bind(total)
        .bind(user_id)
        .fetch_one(&mut **transaction)
        .await?;
        // Running balances: the last charge leaves the final balance.
        let mut balances_after = vec![0_i64; charges.len()];
        for (index, record) in charges.iter().enumerate().rev() {
            balances_after[index] = balance;
            balance += record.cost_micro_usd;
        }
        for (chunk_index, chunk) in charges.chunks(ROWS_PER_STATEMENT).enumerate() {
            let sql = format!(
                "INSERT INTO credit_ledger ({}) VALUES {} ON CONFLICT DO NOTHING",
                rows::LEDGER_COLUMNS,
                placeholders(backend, 8, chunk.len())
            );
            let mut statement = sqlx::query(&sql);
            for (offset, record) in chunk.iter().enumerate() {
                statement = statement
                    .bind(new_id())
                    .bind(record.user_id.clone())
                    .bind("charge")
                    .bind(-record.cost_micro_usd)
                    .bind(balances_after[chunk_index * ROWS_PER_STATEMENT + offset])
                    .bind(record.id.clone())
                    .bind(format!(
                        "{} via endpoint {}",
                        record.method, record.endpoint_id
                    ))
                    .bind(record.created_at);
            }
            charged += statement.execute(&mut **transaction).await?.rows_affected();
        }
    }
    Ok(charged)
}

/// Sets `last_used_at` of keys and `last_active_at` of endpoints.
async fn touch_last_used(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[&UsageRecord],
) -> Result<(), StoreError> {
    let mut last_used: HashMap<&str, i64> = HashMap::new();
    let mut last_active: HashMap<&str, i64> = HashMap::new();
    for record in records {
        let used = last_used.entry(record.api_key_id.as_str()).or_default();
        *used = (*used).max(record.created_at);
        let active = last_active.entry(record.endpoint_id.as_str()).or_default();
        *active = (*active).max(record.created_at);
    }
    for (key_id, at) in last_used {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(key_id)
            .execute(&mut **transaction)
            .await?;
    }
    for (endpoint_id, at) in last_active {
        sqlx::query("UPDATE endpoints SET last_active_at = $1 WHERE id = $2")
            .bind(at)
            .bind(endpoint_id)
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// Counts an endpoint's failed records with `error_code` since `since_ms`.
    pub async fn count_errors_with_code(
        &self,
        endpoint_id: &str,
        error_code: &str,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM usage_records WHERE endpoint_id = $1 AND created_at >= $2 AND error_code = $3",
        )
        .bind(endpoint_id)
        .bind(since_ms)
        .bind(error_code)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::{placeholders, Backend};

    #[test]
    fn numbers_placeholders_row_by_row() {
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(Backend::Postgres, 3, 1), "($1, $2, $3)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}

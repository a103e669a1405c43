//! Rate limits shared by several gateway instances through Redis.
//!
//! One round trip per request runs a versioned Lua script that checks and
//! counts the minute and day windows atomically. When Redis fails or is slow,
//! the request falls back to the instance's own exact in-memory counters
//! (fail open to local limits, never to no limits) and the failure is counted.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::ratelimit::{Admission, LimitScope};

/// Checks both windows and counts the request in both, or in neither.
/// Returns `{verdict, minute_count, day_count}` with verdict 0 = allowed,
/// 1 = minute limit reached, 2 = day limit reached.
const ADMIT_SCRIPT_V1: &str = r"
local minute = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if minute >= tonumber(ARGV[1]) then return {1, minute, day} end
if day >= tonumber(ARGV[2]) then return {2, minute, day} end
minute = redis.call('INCR', KEYS[1])
if minute == 1 then redis.call('EXPIRE', KEYS[1], 120) end
day = redis.call('INCR', KEYS[2])
if day == 1 then redis.call('EXPIRE', KEYS[2], 172800) end
return {0, minute, day}
";

/// Longest wait for Redis before falling back to local counters.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// A Redis-backed limiter.
#[derive(Clone)]
pub struct SharedLimiter {
    connection: ConnectionManager,
    script: Script,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLimiter(redis)")
    }
}

impl SharedLimiter {
    /// Connects to Redis (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection =
            tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
                .await
                .map_err(|_| {
                    redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "timed out connecting to Redis",
                    ))
                })??;
        Ok(Self {
            connection,
            script: Script::new(ADMIT_SCRIPT_V1),
        })
    }

    /// Admits or refuses one request of `key_id`; `None` when Redis did not answer in time.
    pub async fn admit(
        &self,
        key_id: &str,
        now_seconds: u64,
        per_minute: u64,
        per_day: u64,
    ) -> Option<Admission> {
        let minute_window = now_seconds / 60;
        let day_window = now_seconds / 86_400;
        let mut connection = self.connection.clone();
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("sy:rl:v1:{key_id}:m:{minute_window}"))
            .key(format!("sy:rl:v1:{key_id}:d:{day_window}"))
            .arg(per_minute)
            .arg(per_day);
        let result = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(u8, u64, u64)>(&mut connection),
        )
        .await;
        let (verdict, minute_count, day_count) = match result {
            Ok(Ok(values)) => values,
            Ok(Err(error)) => {
                metrics::counter!("switchyard_redis_errors_total").increment(1);
                tracing::warn!(%error, "Redis rate limit check failed; using local counters");
                return None;
            }
            Err(_) => {
                metrics::counter!("switchyard_redis_errors_total").increment(1);
                tracing::warn!("Redis rate limit check timed out; using local counters");
                return None;
            }
        };
        Some(match verdict {
            0 => Admission::Allowed {
                minute_limit: per_minute,
                minute_remaining: per_minute.saturating_sub(minute_count),
                minute_reset_seconds: 60 - now_seconds % 60,
                day_limit: per_day,
                day_remaining: per_day.saturating_sub(day_count),
            },
            1 => Admission::Rejected {
                scope: LimitScope::Minute,
                limit: per_minute,
                retry_after_seconds: 60 - now_seconds % 60,
            },
            _ => Admission::Rejected {
                scope: LimitScope::Day,
                limit: per_day,
                retry_after_seconds: 86_400 - now_seconds % 86_400,
            },
        })
    }
}

//! Persistent state in SQLite (default) or PostgreSQL through one `sqlx::Any` pool.
//!
//! This is the only module that contains SQL. Every query is written in the
//! common subset of both databases (`$n` placeholders, TEXT and BIGINT columns).

mod backends;
mod deployments;
mod endpoints;
mod jobs;
mod keys;
mod ledger;
mod models;
mod rows;
mod sessions;
mod usage;
mod users;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use thiserror::Error;

pub use backends::VersionUsage;
pub use deployments::{Deployment, DeploymentStatus, DeploymentUsage, DeploymentWithModel};
pub use endpoints::{EndpointFilter, EndpointPatch};
pub use jobs::finish as finish_job;
pub use models::{DeploymentType, Model, ModelScope, ModelType};
pub use usage::{EndpointUsageSummary, UsageSummary};
pub use webhooks::Webhook;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Storage failures, typed for the HTTP mapping.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Maps unique-constraint violations to [`StoreError::Conflict`].
    fn from_write(error: sqlx::Error, conflict_message: &str) -> Self {
        if let sqlx::Error::Database(db_error) = &error {
            if db_error.is_unique_violation() {
                return StoreError::Conflict(conflict_message.to_owned());
            }
        }
        StoreError::Database(error)
    }
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The persistent store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `data_dir` in WAL mode.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("switchyard.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Connects to `sqlite://…` or `postgres://…` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool_options = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|connection, _meta| {
                        Box::pin(async move {
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, backend })
    }

    /// Whether this store is PostgreSQL (several servers may share it).
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Encodes a 32-byte hash as lowercase hex for storage.
fn hex_encode(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Decodes a stored 64-character hex hash.
fn hex_decode(text: &str) -> Result<[u8; 32], StoreError> {
    let corrupt = || StoreError::Corrupt(format!("bad hash `{text}`"));
    if text.len() != 64 {
        return Err(corrupt());
    }
    let mut out = [0_u8; 32];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| corrupt())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0xab_u8; 32];
        assert_eq!(hex_decode(&hex_encode(&bytes)).unwrap(), bytes);
        assert!(hex_decode("zz").is_err());
    }
}

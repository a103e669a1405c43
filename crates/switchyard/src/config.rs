//! Configuration from flags, `SWITCHYARD_*` environment variables and an
//! optional `switchyard.toml`, in that order of precedence, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use thiserror::Error;

use crate::money::parse_usd_to_nanos;
use crate::providers::ProvidersConfig;

/// Command line of the `switchyard` binary.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Private inference endpoints behind one OpenAI-compatible gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway, the management API and the background workers.
    Serve(ServeArgs),
    /// Recommend a provider and GPU for a model, offline, from the price table.
    Recommend(crate::cli::recommend::RecommendArgs),
    /// Deploy a Hugging Face model through a running server and wait until it serves.
    Deploy(crate::cli::deploy::DeployArgs),
    /// List, show or terminate your endpoints on a running server.
    Endpoints(crate::cli::endpoints::EndpointsArgs),
    /// Create, list or revoke the API keys of an endpoint.
    Keys(crate::cli::keys::KeysArgs),
    /// Usage of one endpoint, or the summary of all endpoints and the balance.
    Usage(crate::cli::usage::UsageArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of `switchyard serve`, as given (every field optional).
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite database and the key file [default: ./switchyard-data].
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of SQLite (or an explicit `sqlite://…`).
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// `redis://…` to share rate limits between instances through Redis.
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Public base URL used in connection samples [default: from the Host header].
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted gateway request body in bytes [default: 10485760].
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds to wait for an upstream response [default: 300].
    #[arg(long, env = "SWITCHYARD_UPSTREAM_TIMEOUT_SECONDS")]
    pub upstream_timeout_seconds: Option<u64>,
    /// Seconds to wait for a TCP connection to an upstream [default: 10].
    #[arg(long, env = "SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_SECONDS")]
    pub upstream_connect_timeout_seconds: Option<u64>,
    /// Seconds a stream may stay silent before it is closed [default: 120].
    #[arg(long, env = "SWITCHYARD_STREAM_IDLE_TIMEOUT_SECONDS")]
    pub stream_idle_timeout_seconds: Option<u64>,
    /// Price multiplier applied to every charge, as a decimal [default: 1.2].
    #[arg(long, env = "SWITCHYARD_MARKUP")]
    pub markup: Option<String>,
    /// How long usage records gather before a batch is written, in ms [default: 200].
    #[arg(long, env = "SWITCHYARD_USAGE_FLUSH_INTERVAL_MS")]
    pub usage_flush_interval_ms: Option<u64>,
    /// Seconds open connections get to finish on shutdown [default: 30].
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Log format [default: text].
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// How often a deploying resource's status is read, in ms [default: 5000].
    #[arg(long, env = "SWITCHYARD_DEPLOY_POLL_INTERVAL_MS")]
    pub deploy_poll_interval_ms: Option<u64>,
    /// Seconds a resource may take to become ready before the next option is tried [default: 1800].
    #[arg(long, env = "SWITCHYARD_DEPLOY_READY_TIMEOUT_SECONDS")]
    pub deploy_ready_timeout_seconds: Option<u64>,
    /// Seconds a deploy job's lease lasts; a crashed server's jobs are resumed after it [default: 30].
    #[arg(long, env = "SWITCHYARD_JOB_LEASE_SECONDS")]
    pub job_lease_seconds: Option<u64>,
    /// Seconds between two reconciliations of provider resources [default: 300].
    #[arg(long, env = "SWITCHYARD_RECONCILE_INTERVAL_SECONDS")]
    pub reconcile_interval_seconds: Option<u64>,
    /// Seconds between two health checks of every deployed endpoint [default: 60].
    #[arg(long, env = "SWITCHYARD_HEALTH_INTERVAL_SECONDS")]
    pub health_interval_seconds: Option<u64>,
    /// Redeploy, scale up or alert on unhealthy endpoints [default: true].
    #[arg(long, env = "SWITCHYARD_AUTO_RECOVERY")]
    pub auto_recovery: Option<bool>,
    /// Let webhooks point at this machine or private networks [default: false].
    #[arg(long, env = "SWITCHYARD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: Option<bool>,
    /// Credits under which a user gets CREDITS_LOW_WARNING [default: 100].
    #[arg(long, env = "SWITCHYARD_CREDITS_LOW_THRESHOLD")]
    pub credits_low_threshold: Option<i64>,
    /// Upstream attempts per request on the endpoint's own backends, retries included; fallback endpoints add one per backend [default: 3].
    #[arg(long, env = "SWITCHYARD_RETRY_MAX_ATTEMPTS")]
    pub retry_max_attempts: Option<u32>,
    /// Time from a request's arrival after which no retry starts, in ms [default: 30000].
    #[arg(long, env = "SWITCHYARD_RETRY_BUDGET_MS")]
    pub retry_budget_ms: Option<u64>,
    /// First retry backoff of one backend in ms, doubled per retry with full jitter [default: 100].
    #[arg(long, env = "SWITCHYARD_RETRY_BACKOFF_MS")]
    pub retry_backoff_ms: Option<u64>,
    /// Consecutive failures that open a backend's circuit breaker [default: 5].
    #[arg(long, env = "SWITCHYARD_BREAKER_FAILURE_THRESHOLD")]
    pub breaker_failure_threshold: Option<u32>,
    /// Seconds an open breaker waits before a half-open probe [default: 30].
    #[arg(long, env = "SWITCHYARD_BREAKER_OPEN_SECONDS")]
    pub breaker_open_seconds: Option<u64>,
    /// Seconds between active health checks of every backend; 0 turns them off [default: 10].
    #[arg(long, env = "SWITCHYARD_BACKEND_HEALTH_INTERVAL_SECONDS")]
    pub backend_health_interval_seconds: Option<u64>,
    /// Consecutive failed health checks that take a backend out [default: 2].
    #[arg(long, env = "SWITCHYARD_BACKEND_HEALTH_FAILURES")]
    pub backend_health_failures: Option<u32>,
    /// Page origins (scheme://host[:port], comma-separated) that may call `/api/v1/*` and `/v1/*`
    /// from a browser, such as a page embedding the Connect widget [default: none].
    #[arg(long, env = "SWITCHYARD_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Path of a TOML config file [default: ./switchyard.toml when present].
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Invalid configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    CorsOrigin(#[from] crate::cors::OriginError),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub markup_basis_points: i64,
    pub usage_flush_interval: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    pub secret_key: Option<String>,
    /// Provider credentials and base URLs (from the environment).
    pub providers: ProvidersConfig,
    pub deploy_poll_interval: Duration,
    pub deploy_ready_timeout: Duration,
    pub job_lease: Duration,
    pub reconcile_interval: Duration,
    /// `SWITCHYARD_TRAINING_WEBHOOK_SECRET`: HMAC key of the training-complete webhook.
    pub training_webhook_secret: Option<String>,
    pub monitor: crate::deploy::monitor::MonitorSettings,
    pub allow_private_webhooks: bool,
    /// Retries, circuit breakers and backend health checks.
    pub resilience: crate::gateway::resilience::Resilience,
    /// Origins allowed to call the API from a browser, as browsers send them.
    pub cors_allowed_origins: Vec<String>,
}

impl Config {
    /// Merges flags/env with the TOML file (if any) and validates the result.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None if Path::new("switchyard.toml").exists() => {
                Some(read_file(Path::new("switchyard.toml"))?)
            }
            None => None,
        }
        .unwrap_or_default();
        let merged = ServeArgs {
            listen: args.listen.or(file.listen),
            data_dir: args.data_dir.or(file.data_dir),
            database_url: args.database_url.or(file.database_url),
            redis_url: args.redis_url.or(file.redis_url),
            public_url: args.public_url.or(file.public_url),
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes),
            upstream_timeout_seconds: args
                .upstream_timeout_seconds
                .or(file.upstream_timeout_seconds),
            upstream_connect_timeout_seconds: args
                .upstream_connect_timeout_seconds
                .or(file.upstream_connect_timeout_seconds),
            stream_idle_timeout_seconds: args
                .stream_idle_timeout_seconds
                .or(file.stream_idle_timeout_seconds),
            markup: args.markup.or(file.markup),
            usage_flush_interval_ms: args
                .usage_flush_interval_ms
                .or(file.usage_flush_interval_ms),
            shutdown_grace_seconds: args.shutdown_grace_seconds.or(file.shutdown_grace_seconds),
            log_format: args.log_format.or(file.log_format),
            deploy_poll_interval_ms: args
                .deploy_poll_interval_ms
                .or(file.deploy_poll_interval_ms),
            deploy_ready_timeout_seconds: args
                .deploy_ready_timeout_seconds
                .or(file.deploy_ready_timeout_seconds),
            job_lease_seconds: args.job_lease_seconds.or(file.job_lease_seconds),
            reconcile_interval_seconds: args
                .reconcile_interval_seconds
                .or(file.reconcile_interval_seconds),
            health_interval_seconds: args
                .health_interval_seconds
                .or(file.health_interval_seconds),
            auto_recovery: args.auto_recovery.or(file.auto_recovery),
            webhook_allow_private: args.webhook_allow_private.or(file.webhook_allow_private),
            credits_low_threshold: args.credits_low_threshold.or(file.credits_low_threshold),
            retry_max_attempts: args.retry_max_attempts.or(file.retry_max_attempts),
            retry_budget_ms: args.retry_budget_ms.or(file.retry_budget_ms),
            retry_backoff_ms: args.retry_backoff_ms.or(file.retry_backoff_ms),
            breaker_failure_threshold: args
                .breaker_failure_threshold
                .or(file.breaker_failure_threshold),
            breaker_open_seconds: args.breaker_open_seconds.or(file.breaker_open_seconds),
            backend_health_interval_seconds: args
                .backend_health_interval_seconds
                .or(file.backend_health_interval_seconds),
            backend_health_failures: args
                .backend_health_failures
                .or(file.backend_health_failures),
            cors_allowed_origins: args.cors_allowed_origins.or(file.cors_allowed_origins),
            config: None,
        };
        let mut config = Self::validate(
            merged,
            env_secret("SWITCHYARD_ADMIN_TOKEN"),
            env_secret("SWITCHYARD_SECRET_KEY"),
        )?;
        config.providers = ProvidersConfig::from_process_env(&config.data_dir);
        config.training_webhook_secret = env_secret("SWITCHYARD_TRAINING_WEBHOOK_SECRET");
        Ok(config)
    }

    /// Applies defaults and checks ranges.
    pub fn validate(
        args: ServeArgs,
        admin_token: Option<String>,
        secret_key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid(message.to_owned());
        let markup = args.markup.as_deref().unwrap_or("1.2");
        let markup_nanos = parse_usd_to_nanos(markup)
            .map_err(|_| invalid("markup must be a decimal such as 1.2"))?;
        let markup_basis_points = markup_nanos / 100_000;
        if !(10_000..=100_000).contains(&markup_basis_points) {
            return Err(invalid("markup must be between 1.0 and 10.0"));
        }
        let seconds =
            |value: Option<u64>, default: u64, name: &str| -> Result<Duration, ConfigError> {
                let value = value.unwrap_or(default);
                if value == 0 || value > 86_400 {
                    return Err(ConfigError::Invalid(format!(
                        "{name} must be between 1 and 86400 seconds"
                    )));
                }
                Ok(Duration::from_secs(value))
            };
        let max_body_bytes = args.max_body_bytes.unwrap_or(10 * 1024 * 1024);
        if !(1024..=1024 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(invalid("max_body_bytes must be between 1 KiB and 1 GiB"));
        }
        if let Some(token) = &admin_token {
            if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "SWITCHYARD_ADMIN_TOKEN must be at least 16 printable characters",
                ));
            }
        }
        if let Some(url) = &args.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                return Err(invalid(
                    "database_url must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        }
        if let Some(url) = &args.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid("redis_url must start with redis:// or rediss://"));
            }
        }
        let data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("switchyard-data"));
        let resilience = crate::gateway::resilience::Resilience {
            max_attempts: args.retry_max_attempts.unwrap_or(3).clamp(1, 10),
            budget: Duration::from_millis(args.retry_budget_ms.unwrap_or(30_000).min(3_600_000)),
            backoff_base: Duration::from_millis(
                args.retry_backoff_ms.unwrap_or(100).clamp(1, 60_000),
            ),
            breaker: crate::gateway::backend::BreakerSettings {
                failure_threshold: args.breaker_failure_threshold.unwrap_or(5).clamp(1, 1_000),
                open_for: Duration::from_secs(
                    args.breaker_open_seconds.unwrap_or(30).clamp(1, 86_400),
                ),
            },
            health_interval: match args.backend_health_interval_seconds.unwrap_or(10) {
                0 => None,
                seconds => Some(Duration::from_secs(seconds.min(86_400))),
            },
            health_failures: args.backend_health_failures.unwrap_or(2).clamp(1, 100),
        };
        let cors_allowed_origins = args
            .cors_allowed_origins
            .unwrap_or_default()
            .iter()
            .filter(|origin| !origin.trim().is_empty())
            .map(|origin| crate::cors::parse_origin(origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            resilience,
            cors_allowed_origins,
            providers: ProvidersConfig::from_env(|_| None, &data_dir),
            deploy_poll_interval: Duration::from_millis(
                args.deploy_poll_interval_ms
                    .unwrap_or(5000)
                    .clamp(10, 600_000),
            ),
            deploy_ready_timeout: seconds(
                args.deploy_ready_timeout_seconds,
                1800,
                "deploy_ready_timeout_seconds",
            )?,
            job_lease: seconds(args.job_lease_seconds, 30, "job_lease_seconds")?,
            reconcile_interval: seconds(
                args.reconcile_interval_seconds,
                300,
                "reconcile_interval_seconds",
            )?,
            training_webhook_secret: None,
            allow_private_webhooks: args.webhook_allow_private.unwrap_or(false),
            monitor: crate::deploy::monitor::MonitorSettings {
                interval: seconds(args.health_interval_seconds, 60, "health_interval_seconds")?,
                auto_recovery: args.auto_recovery.unwrap_or(true),
                low_credits_micro_usd: args
                    .credits_low_threshold
                    .unwrap_or(100)
                    .clamp(0, 1_000_000_000)
                    * crate::money::MICROS_PER_CREDIT,
                ..crate::deploy::monitor::MonitorSettings::default()
            },
            listen: args
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            database_url: args.database_url,
            redis_url: args.redis_url,
            public_url: args
                .public_url
                .map(|url| url.trim_end_matches('/').to_owned()),
            max_body_bytes,
            upstream_timeout: seconds(
                args.upstream_timeout_seconds,
                300,
                "upstream_timeout_seconds",
            )?,
            upstream_connect_timeout: seconds(
                args.upstream_connect_timeout_seconds,
                10,
                "upstream_connect_timeout_seconds",
            )?,
            stream_idle_timeout: seconds(
                args.stream_idle_timeout_seconds,
                120,
                "stream_idle_timeout_seconds",
            )?,
            markup_basis_points,
            usage_flush_interval: Duration::from_millis(
                args.usage_flush_interval_ms.unwrap_or(200).clamp(1, 60_000),
            ),
            shutdown_grace: seconds(args.shutdown_grace_seconds, 30, "shutdown_grace_seconds")?,
            log_format: args.log_format.unwrap_or(LogFormat::Text),
            admin_token,
            secret_key,
        })
    }
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zero_configuration() {
        let config = Config::validate(ServeArgs::default(), None, None).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("switchyard-data"));
        assert_eq!(config.markup_basis_points, 12_000);
        assert_eq!(config.max_body_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn rejects_bad_values() {
        let args = ServeArgs {
            markup: Some("0.5".into()),
            ..ServeArgs::default()
        };
        assert!(Config::validate(args, None, None).is_err());
        assert!(Config::validate(ServeArgs::default(), Some("short".into()), None).is_err());
        let args = ServeArgs {
            database_url: Some("mysql://x".into()),
            ..ServeArgs::default()
        };
        assert!(Config::validate(args, None, None).is_err());
    }

    #[test]
    fn toml_file_fills_gaps_and_rejects_unknown_keys() {
        let parsed: ServeArgs =
            toml::from_str("listen = \"127.0.0.1:9000\"\nmarkup = \"1.5\"\n").unwrap();
        assert_eq!(parsed.listen.unwrap().port(), 9000);
        assert!(toml::from_str::<ServeArgs>("lisen = \"x\"").is_err());
    }

    #[test]
    fn cors_origins_are_validated() {
        let parsed: ServeArgs = toml::from_str(
            "cors_allowed_origins = [\"https://App.example.com\", \"http://127.0.0.1:3000\"]\n",
        )
        .unwrap();
        let config = Config::validate(parsed, None, None).unwrap();
        assert_eq!(
            config.cors_allowed_origins,
            ["https://app.example.com", "http://127.0.0.1:3000"]
        );
        assert!(Config::validate(ServeArgs::default(), None, None)
            .unwrap()
            .cors_allowed_origins
            .is_empty());
        for bad in ["*", "https://example.com/app", "example.com"] {
            let args = ServeArgs {
                cors_allowed_origins: Some(vec![bad.to_owned()]),
                ..ServeArgs::default()
            };
            let error = Config::validate(args, None, None).unwrap_err().to_string();
            assert!(error.contains("cors_allowed_origins"), "{error}");
        }
    }
}

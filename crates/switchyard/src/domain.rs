//! Domain types: users, endpoints, API keys, usage records and ledger entries.
//! No IO here; the store maps these to rows and the API maps them to JSON.

/// Declares a string enum with its wire names, parsing and display.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            /// All values, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a wire name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The wire names joined for error messages.
            pub fn expected() -> String {
                [$($text),+].join("|")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum!(
    /// What kind of model an endpoint serves.
    Modality { Llm => "llm", Embedding => "embedding", Image => "image", Video => "video", Audio => "audio" }
);

wire_enum!(
    /// Where the endpoint's model comes from.
    SourceType { Training => "training", OpenSourceStudio => "open_source_studio", Imported => "imported", External => "external" }
);

wire_enum!(
    /// How the endpoint is billed and scaled by its provider.
    EndpointType { Serverless => "serverless", Dedicated => "dedicated" }
);

wire_enum!(
    /// Life-cycle status of an endpoint.
    EndpointStatus {
        Provisioning => "provisioning",
        Active => "active",
        Scaling => "scaling",
        Idle => "idle",
        Error => "error",
        Stopped => "stopped",
        Terminated => "terminated",
    }
);

wire_enum!(
    /// The wire protocol of an endpoint's upstream: OpenAI-compatible, Replicate
    /// predictions, Anthropic Messages, Google Gemini or Azure OpenAI.
    UpstreamApi {
        OpenAi => "openai",
        Replicate => "replicate",
        Anthropic => "anthropic",
        Google => "google",
        Azure => "azure",
    }
);

wire_enum!(
    /// How the gateway picks one of an endpoint's backends.
    #[derive(Default)]
    BalanceStrategy {
        #[default]
        RoundRobin => "round_robin",
        LeastConnections => "least_connections",
        Latency => "latency",
        Weighted => "weighted",
    }
);

/// How requests to an endpoint are spread over its backends and where they go
/// when every backend is out. Stored as JSON in the endpoint's `routing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Routing {
    /// The version label of the endpoint's own upstream (`"1.0"` when unset).
    pub version: Option<String>,
    pub strategy: BalanceStrategy,
    /// Share of traffic per version in basis points (sums to 10,000); empty
    /// means every backend is a candidate.
    pub traffic: Vec<(String, u32)>,
    /// Endpoints (of the same user) tried in order once every backend is out.
    pub fallback_endpoint_ids: Vec<String>,
    /// Azure OpenAI `api-version` of the endpoint's own upstream.
    pub api_version: Option<String>,
}

impl Routing {
    /// The version label of the endpoint's own upstream.
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }
}

/// The version label of an upstream registered without one.
pub const DEFAULT_VERSION: &str = "1.0";

/// An additional upstream of an endpoint (a replica, a new version, another provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub id: String,
    pub endpoint_id: String,
    pub version: String,
    /// Relative weight for the `weighted` strategy (1..=10,000).
    pub weight: i64,
    pub upstream_base_url: String,
    pub upstream_api: UpstreamApi,
    pub upstream_model: String,
    pub upstream_api_version: Option<String>,
    /// The upstream credential, encrypted; never serialised.
    pub upstream_key_encrypted: Option<String>,
    /// Extra upstream headers, encrypted JSON; never serialised.
    pub upstream_headers_encrypted: Option<String>,
    pub created_at: i64,
}

wire_enum!(
    /// The kind of a credit ledger entry.
    LedgerKind { TopUp => "topup", Charge => "charge", Refund => "refund", Adjustment => "adjustment" }
);

wire_enum!(
    /// Where a usage record's token counts come from.
    UsageSource { Upstream => "upstream", Estimated => "estimated" }
);

wire_enum!(
    /// A gateway operation an API key may be allowed to call.
    Permission { Chat => "chat", Completions => "completions", Embeddings => "embeddings", Models => "models" }
);

/// A tenant of Switchyard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub is_admin: bool,
    pub balance_micro_usd: i64,
    pub created_at: i64,
}

/// Token prices of an endpoint in nano-dollars per 1,000 tokens, plus an
/// optional compute price that overrides the GPU table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPricing {
    pub input_nanos_per_1k: i64,
    pub output_nanos_per_1k: i64,
    pub compute_nanos_per_second: Option<i64>,
}

impl Default for EndpointPricing {
    fn default() -> Self {
        Self {
            input_nanos_per_1k: 1_000_000,
            output_nanos_per_1k: 2_000_000,
            compute_nanos_per_second: None,
        }
    }
}

/// A private inference endpoint and how to reach its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub modality: Modality,
    pub source_type: SourceType,
    pub base_model: Option<String>,
    pub hf_repo_url: Option<String>,
    pub provider: String,
    pub provider_endpoint_id: Option<String>,
    pub endpoint_url: Option<String>,
    pub endpoint_type: EndpointType,
    pub gpu_type: Option<String>,
    pub min_workers: i64,
    pub max_workers: i64,
    pub idle_timeout_seconds: i64,
    pub status: EndpointStatus,
    pub last_active_at: Option<i64>,
    pub error_message: Option<String>,
    pub upstream_base_url: String,
    pub upstream_api: UpstreamApi,
    pub upstream_model: String,
    /// The upstream credential, encrypted (`v1:` + base64); never serialised.
    pub upstream_key_encrypted: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub pricing: EndpointPricing,
    /// The provider resource serving the endpoint (`ProviderResource` as JSON).
    pub provider_resource: Option<String>,
    /// Extra upstream headers (credentials), encrypted JSON; never serialised.
    pub upstream_headers_encrypted: Option<String>,
    /// The training job that produced the model, for idempotent auto-deploys.
    pub training_job_id: Option<String>,
    /// Versions, balancing strategy, traffic split and fallbacks.
    pub routing: Routing,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An API key's stored form: hash and display prefix, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub endpoint_id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: [u8; 32],
    pub permissions: Vec<Permission>,
    pub rate_limit_per_minute: i64,
    pub rate_limit_per_day: i64,
    pub is_active: bool,
    pub is_test: bool,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

/// One metered gateway request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Server-generated unique id; charges are idempotent on it.
    pub id: String,
    /// The `x-request-id` returned to the client.
    pub request_id: String,
    pub api_key_id: String,
    pub endpoint_id: String,
    pub user_id: String,
    pub method: String,
    pub status_code: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usage_source: UsageSource,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub compute_ms: u64,
    pub cost_micro_usd: i64,
    pub success: bool,
    pub error_code: Option<String>,
    pub streamed: bool,
    /// The backend that answered (the endpoint id for its own upstream).
    pub backend_id: Option<String>,
    /// The version label of that backend.
    pub backend_version: Option<String>,
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: u32,
    pub created_at: i64,
}

wire_enum!(
    /// What a deploy job does.
    JobKind { Deploy => "deploy", Redeploy => "redeploy", Terminate => "terminate" }
);

wire_enum!(
    /// Where a deploy job is.
    JobState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed" }
);

wire_enum!(
    /// The stage a deploy job reports as progress.
    JobStage {
        Queued => "queued",
        Analyzing => "analyzing",
        Selecting => "selecting",
        Provisioning => "provisioning",
        WaitingReady => "waiting_ready",
        IssuingKey => "issuing_key",
        Ready => "ready",
        CleaningUp => "cleaning_up",
        Terminated => "terminated",
        Failed => "failed",
    }
);

/// A durable control-plane job: it survives restarts and is resumed from its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployJob {
    pub id: String,
    pub endpoint_id: String,
    pub user_id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub stage: JobStage,
    pub progress: i64,
    /// The request as given (JSON).
    pub request: String,
    /// Analysis and the ranked options, once chosen (JSON).
    pub plan: Option<String>,
    /// The provider resource the job holds (JSON).
    pub resource: Option<String>,
    /// Options tried and why they failed (JSON array).
    pub attempts: String,
    pub key_id: Option<String>,
    /// The new key, encrypted, until it has been delivered once.
    pub key_secret_encrypted: Option<String>,
    pub error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// One append-only entry of the credit ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub user_id: String,
    pub kind: LedgerKind,
    /// Signed amount in micro-dollars: positive adds credit, negative spends it.
    pub amount_micro_usd: i64,
    pub balance_after_micro_usd: i64,
    pub request_id: Option<String>,
    pub reason: String,
    pub created_at: i64,
}

/// Milliseconds in a day (usage periods, chart buckets).
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A new time-ordered unique id (UUID v7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Formats epoch milliseconds as RFC 3339 UTC.
pub fn format_time(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Parses RFC 3339 into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_wire_names() {
        for status in EndpointStatus::ALL {
            assert_eq!(EndpointStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(Modality::parse("llm"), Some(Modality::Llm));
        assert_eq!(Modality::parse("LLM"), None);
        assert_eq!(
            SourceType::expected(),
            "training|open_source_studio|imported|external"
        );
    }

    #[test]
    fn times_round_trip() {
        let ms = 1_795_326_498_123;
        assert_eq!(parse_time(&format_time(ms)), Some(ms));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}

//! Decoding of rows into domain types.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{hex_decode, StoreError};
use crate::domain::{
    ApiKey, Backend, DeployJob, Endpoint, EndpointPricing, EndpointStatus, EndpointType, JobKind,
    JobStage, JobState, LedgerEntry, LedgerKind, Modality, Permission, Routing, SourceType,
    UpstreamApi, UsageRecord, UsageSource, User,
};

pub(super) const USER_COLUMNS: &str = "id, name, is_admin, balance_micro_usd, created_at";

pub(super) const ENDPOINT_COLUMNS: &str = "id, user_id, name, description, modality, source_type, \
    base_model, hf_repo_url, provider, provider_endpoint_id, endpoint_url, endpoint_type, gpu_type, \
    min_workers, max_workers, idle_timeout_seconds, status, last_active_at, error_message, \
    upstream_base_url, upstream_api, upstream_model, upstream_key_encrypted, timeout_seconds, \
    price_input_nanos_per_1k, price_output_nanos_per_1k, price_compute_nanos_per_second, \
    provider_resource, upstream_headers_encrypted, training_job_id, created_at, updated_at, routing";

pub(super) const BACKEND_COLUMNS: &str = "id, endpoint_id, version, weight, upstream_base_url, \
    upstream_api, upstream_model, upstream_api_version, upstream_key_encrypted, \
    upstream_headers_encrypted, created_at";

pub(super) const JOB_COLUMNS: &str = "id, endpoint_id, user_id, kind, state, stage, progress, request, \
    plan, resource, attempts, key_id, key_secret_encrypted, error, lease_owner, lease_until, created_at, \
    updated_at, finished_at";

pub(super) const KEY_COLUMNS: &str =
    "id, endpoint_id, user_id, name, prefix, key_hash, permissions, \
    rate_limit_per_minute, rate_limit_per_day, is_active, is_test, last_used_at, expires_at, \
    revoked_at, created_at";

pub(super) const USAGE_COLUMNS: &str = "id, request_id, api_key_id, endpoint_id, user_id, method, \
    status_code, input_tokens, output_tokens, usage_source, latency_ms, ttft_ms, compute_ms, \
    cost_micro_usd, success, error_code, streamed, created_at, backend_id, backend_version, attempts";

pub(super) const LEDGER_COLUMNS: &str =
    "id, user_id, kind, amount_micro_usd, balance_after_micro_usd, request_id, reason, created_at";

fn parsed<T>(value: Option<T>, column: &str, text: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| StoreError::Corrupt(format!("column {column} has unknown value `{text}`")))
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn user(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        balance_micro_usd: row.try_get("balance_micro_usd")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn endpoint(row: &AnyRow) -> Result<Endpoint, StoreError> {
    let modality: String = row.try_get("modality")?;
    let source_type: String = row.try_get("source_type")?;
    let endpoint_type: String = row.try_get("endpoint_type")?;
    let status: String = row.try_get("status")?;
    let upstream_api: String = row.try_get("upstream_api")?;
    Ok(Endpoint {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        modality: parsed(Modality::parse(&modality), "modality", &modality)?,
        source_type: parsed(SourceType::parse(&source_type), "source_type", &source_type)?,
        base_model: row.try_get("base_model")?,
        hf_repo_url: row.try_get("hf_repo_url")?,
        provider: row.try_get("provider")?,
        provider_endpoint_id: row.try_get("provider_endpoint_id")?,
        endpoint_url: row.try_get("endpoint_url")?,
        endpoint_type: parsed(
            EndpointType::parse(&endpoint_type),
            "endpoint_type",
            &endpoint_type,
        )?,
        gpu_type: row.try_get("gpu_type")?,
        min_workers: row.try_get("min_workers")?,
        max_workers: row.try_get("max_workers")?,
        idle_timeout_seconds: row.try_get("idle_timeout_seconds")?,
        status: parsed(EndpointStatus::parse(&status), "status", &status)?,
        last_active_at: row.try_get("last_active_at")?,
        error_message: row.try_get("error_message")?,
        upstream_base_url: row.try_get("upstream_base_url")?,
        upstream_api: parsed(
            UpstreamApi::parse(&upstream_api),
            "upstream_api",
            &upstream_api,
        )?,
        upstream_model: row.try_get("upstream_model")?,
        upstream_key_encrypted: row.try_get("upstream_key_encrypted")?,
        timeout_seconds: row.try_get("timeout_seconds")?,
        pricing: EndpointPricing {
            input_nanos_per_1k: row.try_get("price_input_nanos_per_1k")?,
            output_nanos_per_1k: row.try_get("price_output_nanos_per_1k")?,
            compute_nanos_per_second: row.try_get("price_compute_nanos_per_second")?,
        },
        provider_resource: row.try_get("provider_resource")?,
        upstream_headers_encrypted: row.try_get("upstream_headers_encrypted")?,
        training_job_id: row.try_get("training_job_id")?,
        routing: routing(&row.try_get::<String, _>("routing")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The JSON text of an endpoint's routing.
pub(super) fn routing_json(routing: &Routing) -> String {
    serde_json::to_string(routing).unwrap_or_else(|_| "{}".to_owned())
}

fn routing(text: &str) -> Result<Routing, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("column routing is not valid: {error}")))
}

pub(super) fn backend(row: &AnyRow) -> Result<Backend, StoreError> {
    let api: String = row.try_get("upstream_api")?;
    Ok(Backend {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        version: row.try_get("version")?,
        weight: row.try_get("weight")?,
        upstream_base_url: row.try_get("upstream_base_url")?,
        upstream_api: parsed(UpstreamApi::parse(&api), "upstream_api", &api)?,
        upstream_model: row.try_get("upstream_model")?,
        upstream_api_version: row.try_get("upstream_api_version")?,
        upstream_key_encrypted: row.try_get("upstream_key_encrypted")?,
        upstream_headers_encrypted: row.try_get("upstream_headers_encrypted")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn api_key(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let hash: String = row.try_get("key_hash")?;
    let permissions_text: String = row.try_get("permissions")?;
    let permissions = permissions_text
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| parsed(Permission::parse(part), "permissions", part))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_hash: hex_decode(&hash)?,
        permissions,
        rate_limit_per_minute: row.try_get("rate_limit_per_minute")?,
        rate_limit_per_day: row.try_get("rate_limit_per_day")?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        is_test: row.try_get::<i64, _>("is_test")? != 0,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn usage(row: &AnyRow) -> Result<UsageRecord, StoreError> {
    let source: String = row.try_get("usage_source")?;
    let ttft: Option<i64> = row.try_get("ttft_ms")?;
    Ok(UsageRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        api_key_id: row.try_get("api_key_id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        user_id: row.try_get("user_id")?,
        method: row.try_get("method")?,
        status_code: u16::try_from(row.try_get::<i64, _>("status_code")?).unwrap_or(0),
        input_tokens: unsigned(row.try_get("input_tokens")?),
        output_tokens: unsigned(row.try_get("output_tokens")?),
        usage_source: parsed(UsageSource::parse(&source), "usage_source", &source)?,
        latency_ms: unsigned(row.try_get("latency_ms")?),
        ttft_ms: ttft.map(unsigned),
        compute_ms: unsigned(row.try_get("compute_ms")?),
        cost_micro_usd: row.try_get("cost_micro_usd")?,
        success: row.try_get::<i64, _>("success")? != 0,
        error_code: row.try_get("error_code")?,
        streamed: row.try_get::<i64, _>("streamed")? != 0,
        backend_id: row.try_get("backend_id")?,
        backend_version: row.try_get("backend_version")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(1),
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn ledger(row: &AnyRow) -> Result<LedgerEntry, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(LedgerEntry {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: parsed(LedgerKind::parse(&kind), "kind", &kind)?,
        amount_micro_usd: row.try_get("amount_micro_usd")?,
        balance_after_micro_usd: row.try_get("balance_after_micro_usd")?,
        request_id: row.try_get("request_id")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn job(row: &AnyRow) -> Result<DeployJob, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let stage: String = row.try_get("stage")?;
    Ok(DeployJob {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        user_id: row.try_get("user_id")?,
        kind: parsed(JobKind::parse(&kind), "kind", &kind)?,
        state: parsed(JobState::parse(&state), "state", &state)?,
        stage: parsed(JobStage::parse(&stage), "stage", &stage)?,
        progress: row.try_get("progress")?,
        request: row.try_get("request")?,
        plan: row.try_get("plan")?,
        resource: row.try_get("resource")?,
        attempts: row.try_get("attempts")?,
        key_id: row.try_get("key_id")?,
        key_secret_encrypted: row.try_get("key_secret_encrypted")?,
        error: row.try_get("error")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

//! JSON renderings of domain objects. Secrets never appear here: keys show
//! their display prefix only, upstream credentials only whether one is set.

use serde_json::{json, Value};

use crate::domain::{format_time, now_ms, ApiKey, Endpoint, LedgerEntry, UsageRecord, User};
use crate::money::{micros_to_credits_json, nanos_to_usd_string};
use crate::state::AppState;

/// The URL clients use to reach this server.
pub fn public_url(state: &AppState, headers: &http::HeaderMap) -> String {
    if let Some(url) = &state.settings.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok());
    match host {
        Some(host) if host.bytes().all(|b| b.is_ascii_graphic()) => {
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .filter(|proto| *proto == "https" || *proto == "http")
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
        _ => state.settings.listen_url.clone(),
    }
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(format_time(ms)))
}

pub fn user(user: &User) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "is_admin": user.is_admin,
        "created_at": format_time(user.created_at),
    })
}

pub fn endpoint(endpoint: &Endpoint, public_url: &str) -> Value {
    json!({
        "id": endpoint.id,
        "name": endpoint.name,
        "description": endpoint.description,
        "modality": endpoint.modality,
        "source_type": endpoint.source_type,
        "base_model": endpoint.base_model,
        "hf_repo_url": endpoint.hf_repo_url,
        "provider": endpoint.provider,
        "provider_endpoint_id": endpoint.provider_endpoint_id,
        "endpoint_url": format!("{public_url}/api/v1/inference/{}", endpoint.id),
        "openai_base_url": format!("{public_url}/v1"),
        "endpoint_type": endpoint.endpoint_type,
        "gpu_type": endpoint.gpu_type,
        "min_workers": endpoint.min_workers,
        "max_workers": endpoint.max_workers,
        "idle_timeout_seconds": endpoint.idle_timeout_seconds,
        "timeout_seconds": endpoint.timeout_seconds,
        "status": endpoint.status,
        "last_active_at": time(endpoint.last_active_at),
        "error_message": endpoint.error_message,
        "upstream": {
            "base_url": endpoint.upstream_base_url,
            "api": endpoint.upstream_api,
            "model": endpoint.upstream_model,
            "has_api_key": endpoint.upstream_key_encrypted.is_some(),
        },
        "upstream_model": endpoint.upstream_model,
        "pricing": {
            "input_per_1k_tokens_usd": nanos_to_usd_string(endpoint.pricing.input_nanos_per_1k),
            "output_per_1k_tokens_usd": nanos_to_usd_string(endpoint.pricing.output_nanos_per_1k),
            "compute_per_second_usd": endpoint.pricing.compute_nanos_per_second.map(nanos_to_usd_string),
        },
        "created_at": format_time(endpoint.created_at),
        "updated_at": format_time(endpoint.updated_at),
    })
}

pub fn key(key: &ApiKey) -> Value {
    let status = if key.revoked_at.is_some() || !key.is_active {
        "revoked"
    } else if key.expires_at.is_some_and(|at| at <= now_ms()) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": key.id,
        "endpoint_id": key.endpoint_id,
        "name": key.name,
        "prefix": key.prefix,
        "permissions": key.permissions,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "rate_limit_per_day": key.rate_limit_per_day,
        "is_active": key.is_active && key.revoked_at.is_none(),
        "is_test": key.is_test,
        "status": status,
        "last_used_at": time(key.last_used_at),
        "expires_at": time(key.expires_at),
        "revoked_at": time(key.revoked_at),
        "created_at": format_time(key.created_at),
    })
}

pub fn usage_record(record: &UsageRecord) -> Value {
    json!({
        "id": record.id,
        "request_id": record.request_id,
        "api_key_id": record.api_key_id,
        "endpoint_id": record.endpoint_id,
        "method": record.method,
        "status_code": record.status_code,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "usage_source": record.usage_source,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "compute_seconds": record.compute_ms as f64 / 1000.0,
        "compute_ms": record.compute_ms,
        "cost_micro_usd": record.cost_micro_usd,
        "credits": micros_to_credits_json(record.cost_micro_usd),
        "success": record.success,
        "error_code": record.error_code,
        "streamed": record.streamed,
        "backend_id": record.backend_id,
        "backend_version": record.backend_version,
        "attempts": record.attempts,
        "created_at": format_time(record.created_at),
    })
}

pub fn ledger_entry(entry: &LedgerEntry) -> Value {
    json!({
        "id": entry.id,
        "kind": entry.kind,
        "amount_micro_usd": entry.amount_micro_usd,
        "credits": micros_to_credits_json(entry.amount_micro_usd),
        "balance_after_micro_usd": entry.balance_after_micro_usd,
        "balance_after": micros_to_credits_json(entry.balance_after_micro_usd),
        "request_id": entry.request_id,
        "reason": entry.reason,
        "created_at": format_time(entry.created_at),
    })
}

/// A balance in both units.
pub fn balance(micros: i64) -> Value {
    json!({
        "balance": micros_to_credits_json(micros),
        "balance_micro_usd": micros,
        "unit": "credits",
        "usd": format!("{}{}", if micros < 0 { "-" } else { "" }, nanos_to_usd_string(micros.saturating_abs().saturating_mul(1000))),
    })
}

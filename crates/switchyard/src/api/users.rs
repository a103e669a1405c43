//! Users, credits and the ledger.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{pagination, views, Admin, ApiJson, ApiQuery, Caller};
use crate::domain::LedgerKind;
use crate::error::HttpError;
use crate::money::{parse_usd_to_nanos, MICROS_PER_CREDIT};
use crate::state::SharedState;
use crate::tokens::{display_prefix, generate_management_token};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    #[serde(default)]
    is_admin: bool,
}

/// `POST /api/v1/users` (admin): creates a user and returns its token once.
pub async fn create_user(
    State(state): State<SharedState>,
    _admin: Admin,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, HttpError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(HttpError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let token = generate_management_token();
    let user = state
        .store
        .create_user(
            name,
            request.is_admin,
            &state.secrets.hash_token(&token),
            &display_prefix(&token),
        )
        .await?;
    state.registry.reload().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user": views::user(&user), "token": token })),
    ))
}

/// `GET /api/v1/me`.
pub async fn me(State(state): State<SharedState>, Caller(user): Caller) -> Json<Value> {
    let balance = current_balance(&state, &user.id, user.balance_micro_usd);
    let mut body = views::balance(balance);
    body["user"] = views::user(&user);
    Json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCredits {
    credits: serde_json::Number,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/users/{id}/credits` (admin): a top-up (positive) or adjustment (negative).
pub async fn add_credits(
    State(state): State<SharedState>,
    _admin: Admin,
    Path(user_id): Path<String>,
    ApiJson(request): ApiJson<AddCredits>,
) -> Result<Json<Value>, HttpError> {
    let micros = credits_to_micros(&request.credits)?;
    let kind = if micros > 0 {
        LedgerKind::TopUp
    } else {
        LedgerKind::Adjustment
    };
    let reason = request.reason.unwrap_or_else(|| kind.as_str().to_owned());
    if reason.chars().count() > 500 {
        return Err(HttpError::invalid_field(
            "reason",
            "must be at most 500 characters",
        ));
    }
    state
        .store
        .get_user(&user_id)
        .await
        .map_err(|_| HttpError::not_found("user"))?;
    let stored_balance = state
        .store
        .adjust_balance(&user_id, kind, micros, &reason)
        .await?;
    let balance = match state.registry.account(&user_id) {
        Some(account) => {
            account.add(micros);
            account.balance()
        }
        None => {
            state.registry.reload().await?;
            stored_balance
        }
    };
    Ok(Json(views::balance(balance)))
}

/// `GET /api/v1/billing/balance`.
pub async fn balance(State(state): State<SharedState>, Caller(user): Caller) -> Json<Value> {
    Json(views::balance(current_balance(
        &state,
        &user.id,
        user.balance_micro_usd,
    )))
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/billing/ledger?page=&limit=`.
pub async fn ledger(
    State(state): State<SharedState>,
    Caller(user): Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Value>, HttpError> {
    let (page, limit, offset) = pagination(query.page, query.limit)?;
    let (entries, total) = state.store.list_ledger(&user.id, limit, offset).await?;
    Ok(Json(json!({
        "data": entries.iter().map(views::ledger_entry).collect::<Vec<_>>(),
        "page": page,
        "limit": limit,
        "total": total,
    })))
}

/// The in-memory balance (which includes charges not yet flushed), else the stored one.
fn current_balance(state: &SharedState, user_id: &str, stored: i64) -> i64 {
    state
        .registry
        .account(user_id)
        .map_or(stored, |account| account.balance())
}

/// Converts a credit amount (at most 4 decimals, non-zero, at most 10^9) to micro-dollars.
fn credits_to_micros(credits: &serde_json::Number) -> Result<i64, HttpError> {
    let invalid = || {
        HttpError::invalid_field(
            "credits",
            "must be a non-zero number of credits with at most 4 decimals",
        )
    };
    let text = credits.to_string();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    if digits.contains(['e', 'E']) {
        return Err(invalid());
    }
    let nanos = parse_usd_to_nanos(digits).map_err(|_| invalid())?;
    // nanos here are credits × 10^9; micro-dollars are credits × 10^4.
    if nanos % 100_000 != 0 {
        return Err(invalid());
    }
    let micros = nanos / 100_000;
    if micros == 0 || micros > 1_000_000_000 * MICROS_PER_CREDIT {
        return Err(invalid());
    }
    Ok(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_credits() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(credits_to_micros(&number("1000")).unwrap(), 10_000_000);
        assert_eq!(credits_to_micros(&number("0.5")).unwrap(), 5_000);
        assert_eq!(credits_to_micros(&number("-2")).unwrap(), -20_000);
        assert!(credits_to_micros(&number("0")).is_err());
        assert!(credits_to_micros(&number("0.00001")).is_err());
        assert_eq!(credits_to_micros(&number("1e3")).unwrap(), 10_000_000);
    }
}

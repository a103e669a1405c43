//! Billing: the balance, usage by endpoint for a period (day, week, month)
//! with totals, and the credit ledger, newest first, a page at a time.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::render;
use crate::dashboard::session::Viewer;
use crate::domain::{now_ms, Endpoint, LedgerEntry, LedgerKind};
use crate::error::HttpError;
use crate::state::SharedState;
use crate::store::{EndpointFilter, EndpointUsageSummary};

/// Ledger rows per page.
pub const LEDGER_PAGE_SIZE: i64 = 25;
use crate::domain::DAY_MS;

/// The periods of the usage summary: (key, label, length).
const PERIODS: [(&str, &str, i64); 3] = [
    ("day", "Last 24 hours", DAY_MS),
    ("week", "Last 7 days", 7 * DAY_MS),
    ("month", "Last 30 days", 30 * DAY_MS),
];

/// One period link.
pub struct PeriodLink {
    pub key: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// One endpoint's usage (or the totals).
pub struct UsageRow {
    pub endpoint_id: String,
    pub name: String,
    pub known: bool,
    pub requests: String,
    pub errors: String,
    pub input_tokens: String,
    pub output_tokens: String,
    pub credits: String,
    pub latency: String,
}

/// One ledger entry.
pub struct LedgerRow {
    pub at_iso: String,
    pub at_text: String,
    pub kind: &'static str,
    pub kind_label: &'static str,
    pub amount: String,
    pub positive: bool,
    pub balance_after: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    layout: Layout,
    balance: String,
    period: &'static str,
    period_label: &'static str,
    periods: Vec<PeriodLink>,
    usage: Vec<UsageRow>,
    totals: UsageRow,
    ledger: Vec<LedgerRow>,
    page: i64,
    pages: i64,
    ledger_total: String,
    previous_page: Option<i64>,
    next_page: Option<i64>,
}

#[derive(Deserialize, Default)]
pub struct BillingQuery {
    period: Option<String>,
    page: Option<i64>,
}

/// `GET /billing?period=day|week|month&page=N`.
pub async fn page(
    State(state): State<SharedState>,
    Viewer(session): Viewer,
    Query(query): Query<BillingQuery>,
) -> Result<Response, HttpError> {
    let user_id = &session.user.id;
    let (period, period_label, length) = PERIODS
        .iter()
        .copied()
        .find(|(key, _, _)| Some(*key) == query.period.as_deref())
        .unwrap_or(PERIODS[2]);
    let endpoints = state
        .store
        .list_endpoints(user_id, &EndpointFilter::default())
        .await?;
    let mut summaries = state
        .store
        .usage_by_endpoint(user_id, now_ms() - length)
        .await?;
    summaries.sort_by(|a, b| {
        b.cost_micro_usd
            .cmp(&a.cost_micro_usd)
            .then(b.requests.cmp(&a.requests))
    });
    let usage = summaries
        .iter()
        .map(|summary| usage_row(summary, &endpoints))
        .collect();
    let totals = usage_row(&total(&summaries), &[]);

    let requested_page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let (entries, ledger_total) = state
        .store
        .list_ledger(
            user_id,
            LEDGER_PAGE_SIZE,
            (requested_page - 1) * LEDGER_PAGE_SIZE,
        )
        .await?;
    let pages = ((ledger_total + LEDGER_PAGE_SIZE - 1) / LEDGER_PAGE_SIZE).max(1);
    let balance = state
        .registry
        .account(user_id)
        .map_or(session.user.balance_micro_usd, |account| account.balance());
    let page = BillingPage {
        layout: Layout::new(&session, "Billing", "billing"),
        balance: layout::credits(balance),
        period,
        period_label,
        periods: PERIODS
            .iter()
            .map(|(key, label, _)| PeriodLink {
                key,
                label,
                current: *key == period,
            })
            .collect(),
        usage,
        totals,
        ledger: entries.iter().map(ledger_row).collect(),
        page: requested_page,
        pages,
        ledger_total: layout::count(ledger_total),
        previous_page: (requested_page > 1).then(|| (requested_page - 1).min(pages)),
        next_page: (requested_page < pages).then_some(requested_page + 1),
    };
    Ok(render(&page))
}

/// The sum of every endpoint's figures (latency weighted by requests).
pub fn total(summaries: &[EndpointUsageSummary]) -> EndpointUsageSummary {
    let requests: i64 = summaries.iter().map(|row| row.requests).sum();
    let latency_sum: i64 = summaries
        .iter()
        .map(|row| row.average_latency_ms * row.requests)
        .sum();
    EndpointUsageSummary {
        endpoint_id: String::new(),
        requests,
        errors: summaries.iter().map(|row| row.errors).sum(),
        input_tokens: summaries.iter().map(|row| row.input_tokens).sum(),
        output_tokens: summaries.iter().map(|row| row.output_tokens).sum(),
        cost_micro_usd: summaries.iter().map(|row| row.cost_micro_usd).sum(),
        average_latency_ms: if requests > 0 {
            latency_sum / requests
        } else {
            0
        },
    }
}

fn usage_row(summary: &EndpointUsageSummary, endpoints: &[Endpoint]) -> UsageRow {
    let endpoint = endpoints
        .iter()
        .find(|endpoint| endpoint.id == summary.endpoint_id);
    UsageRow {
        endpoint_id: summary.endpoint_id.clone(),
        name: endpoint.map_or_else(
            || summary.endpoint_id.clone(),
            |endpoint| endpoint.name.clone(),
        ),
        known: endpoint.is_some(),
        requests: layout::count(summary.requests),
        errors: layout::count(summary.errors),
        input_tokens: layout::count(summary.input_tokens),
        output_tokens: layout::count(summary.output_tokens),
        credits: layout::credits(summary.cost_micro_usd),
        latency: layout::latency(summary.average_latency_ms, summary.requests),
    }
}

fn ledger_row(entry: &LedgerEntry) -> LedgerRow {
    let positive = entry.amount_micro_usd >= 0;
    let amount = layout::credits(entry.amount_micro_usd);
    LedgerRow {
        at_iso: layout::iso(entry.created_at),
        at_text: layout::ago(entry.created_at),
        kind: entry.kind.as_str(),
        kind_label: match entry.kind {
            LedgerKind::TopUp => "Top-up",
            LedgerKind::Charge => "Usage charge",
            LedgerKind::Refund => "Refund",
            LedgerKind::Adjustment => "Adjustment",
        },
        amount: if positive {
            format!("+{amount}")
        } else {
            amount
        },
        positive,
        balance_after: layout::credits(entry.balance_after_micro_usd),
        detail: match (&entry.request_id, entry.reason.is_empty()) {
            (Some(request_id), true) => format!("request {request_id}"),
            (Some(request_id), false) => format!("{} · request {request_id}", entry.reason),
            (None, _) => entry.reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: i64, latency: i64, cost: i64) -> EndpointUsageSummary {
        EndpointUsageSummary {
            endpoint_id: "e".to_owned(),
            requests,
            errors: 1,
            input_tokens: 10,
            output_tokens: 5,
            cost_micro_usd: cost,
            average_latency_ms: latency,
        }
    }

    #[test]
    fn totals_weight_latency_by_requests() {
        let sum = total(&[summary(1, 100, 10_000), summary(3, 200, 20_000)]);
        assert_eq!(sum.requests, 4);
        assert_eq!(sum.errors, 2);
        assert_eq!(sum.input_tokens, 20);
        assert_eq!(sum.cost_micro_usd, 30_000);
        assert_eq!(sum.average_latency_ms, 175);
        assert_eq!(total(&[]).average_latency_ms, 0);
    }
}

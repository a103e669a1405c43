//! `switchyard usage [<endpoint-id>]`: the usage of one endpoint over a
//! period, or the summary of all endpoints (last 24 hours) and the balance.

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::client::{print_json, print_text, segment, table, text, Client};
use super::ClientArgs;

/// The periods the server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// Flags of `switchyard usage`.
#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// One endpoint's usage; without it, the summary of all endpoints and the balance.
    pub endpoint_id: Option<String>,
    /// The period of one endpoint's usage [default: day].
    #[arg(long, value_enum)]
    pub period: Option<Period>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the command.
pub async fn run(args: UsageArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    match &args.endpoint_id {
        Some(endpoint_id) => {
            let period = args.period.unwrap_or(Period::Day);
            let usage = client
                .get_query(
                    &format!("/api/v1/endpoints/{}/usage", segment(endpoint_id)),
                    &[("period", period.as_str().to_owned())],
                )
                .await?;
            if args.json {
                return print_json(&usage);
            }
            print_text(&render_endpoint(&usage))
        }
        None => {
            if args.period.is_some() {
                anyhow::bail!(
                    "--period needs an endpoint id; the summary of all endpoints covers the last 24 hours"
                );
            }
            let summary = client.get("/api/v1/endpoints/summary").await?;
            let balance = client.get("/api/v1/billing/balance").await?;
            let document = json!({
                "balance": balance,
                "summary": summary["summary"],
                "endpoints": summary["endpoints"],
            });
            if args.json {
                return print_json(&document);
            }
            print_text(&render_summary(&document))
        }
    }
}

/// The text of one endpoint's usage.
pub fn render_endpoint(usage: &Value) -> String {
    let figures = &usage["usage"];
    let latency = &figures["latency_ms"];
    format!(
        "Usage of endpoint {} over the last {} (since {}):\n  Requests:  {} ({} errors)\n  Tokens:    {} in, {} out\n  Cost:      {} credits\n  Compute:   {} s\n  Latency:   p50 {} ms, p95 {} ms, p99 {} ms\n",
        text(&usage["endpoint_id"]),
        text(&usage["period"]),
        super::client::short_time(&usage["since"]),
        text(&figures["requests"]),
        text(&figures["errors"]),
        text(&figures["input_tokens"]),
        text(&figures["output_tokens"]),
        text(&figures["credits"]),
        text(&figures["compute_seconds"]),
        text(&latency["p50"]),
        text(&latency["p95"]),
        text(&latency["p99"]),
    )
}

/// The text of the summary and the balance.
pub fn render_summary(document: &Value) -> String {
    let balance = &document["balance"];
    let summary = &document["summary"];
    let mut out = format!(
        "Balance: {} credits (${})\nEndpoints: {} total, {} active\nLast 24 hours: {} requests ({} errors), {} input and {} output tokens, {} credits\n",
        text(&balance["balance"]),
        text(&balance["usd"]),
        text(&summary["total_endpoints"]),
        text(&summary["active_endpoints"]),
        text(&summary["requests_24h"]),
        text(&summary["errors_24h"]),
        text(&summary["input_tokens_24h"]),
        text(&summary["output_tokens_24h"]),
        text(&summary["credits_24h"]),
    );
    let endpoints = document["endpoints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !endpoints.is_empty() {
        let rows: Vec<Vec<String>> = endpoints
            .iter()
            .map(|endpoint| {
                vec![
                    text(&endpoint["id"]),
                    text(&endpoint["name"]),
                    text(&endpoint["status"]),
                    text(&endpoint["requests_24h"]),
                    text(&endpoint["errors_24h"]),
                    text(&endpoint["average_latency_ms_24h"]),
                    text(&endpoint["credits_24h"]),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "ID", "NAME", "STATUS", "REQUESTS", "ERRORS", "AVG MS", "CREDITS",
            ],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint() {
        let usage = json!({"endpoint_id": "e1", "period": "week", "since": "2026-01-01T00:00:00Z",
            "usage": {"requests": 3, "errors": 1, "input_tokens": 27, "output_tokens": 18, "credits": 0.0012,
                      "compute_seconds": 0.5, "latency_ms": {"p50": 10, "p95": 20, "p99": 30}}});
        let rendered = render_endpoint(&usage);
        assert!(
            rendered.starts_with("Usage of endpoint e1 over the last week (since 2026-01-01 00:00:00):\n  Requests:  3 (1 errors)\n"),
            "{rendered}"
        );
        assert!(rendered.contains("Cost:      0.0012 credits"), "{rendered}");
        assert!(
            rendered.contains("p50 10 ms, p95 20 ms, p99 30 ms"),
            "{rendered}"
        );
    }

    #[test]
    fn summary_and_balance() {
        let document = json!({
            "balance": {"balance": 99.5, "usd": "0.995", "balance_micro_usd": 995_000},
            "summary": {"total_endpoints": 1, "active_endpoints": 1, "requests_24h": 2, "errors_24h": 0,
                        "input_tokens_24h": 18, "output_tokens_24h": 12, "credits_24h": 0.5},
            "endpoints": [{"id": "e1", "name": "smol", "status": "active", "requests_24h": 2, "errors_24h": 0,
                           "average_latency_ms_24h": 12, "credits_24h": 0.5}],
        });
        let rendered = render_summary(&document);
        assert!(
            rendered.starts_with("Balance: 99.5 credits ($0.995)\nEndpoints: 1 total, 1 active\nLast 24 hours: 2 requests (0 errors)"),
            "{rendered}"
        );
        assert!(rendered.contains("e1  smol  active  2"), "{rendered}");
    }
}

//! The deploy wizard: source, recommendation, configuration, review; then the
//! live progress of the deploy and the new key, shown once. The page itself
//! is a frame; every step calls the JSON API (`deploy/preview`, `deploy`,
//! `endpoints`) from `assets/deploy.js`.

use askama::Template;
use axum::response::Response;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::render;
use crate::dashboard::session::Viewer;
use crate::domain::EndpointPricing;

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    layout: Layout,
    /// The tariff of endpoints registered here (API models, existing servers), per 1k tokens.
    input_credits_per_1k: String,
    output_credits_per_1k: String,
    balance: String,
}

/// `GET /deploy`.
pub async fn page(Viewer(session): Viewer) -> Response {
    let tariff = EndpointPricing::default();
    let page = DeployPage {
        balance: layout::credits(session.user.balance_micro_usd),
        layout: Layout::new(&session, "Deploy", "deploy").with_script("deploy.js"),
        input_credits_per_1k: layout::credits(tariff.input_nanos_per_1k / 1000),
        output_credits_per_1k: layout::credits(tariff.output_nanos_per_1k / 1000),
    };
    render(&page)
}

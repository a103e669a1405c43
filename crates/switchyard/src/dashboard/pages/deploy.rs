//! The deploy wizard: source, recommendation, configuration, review; then the
//! live progress of the deploy and the new key, shown once. The page itself
//! is a frame; every step calls the JSON API (`deploy/preview`, `deploy`,
//! `endpoints`) from `assets/deploy.js`.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::dashboard::layout::{self, Layout};
use crate::dashboard::render;
use crate::dashboard::session::Viewer;
use crate::domain::EndpointPricing;
use crate::state::SharedState;

#[derive(Template)]
#[template(path = "deploy.html")]
struct DeployPage {
    layout: Layout,
    /// The tariff of endpoints registered here (API models, existing servers),
    /// per 1k tokens, with the server's markup.
    input_credits_per_1k: String,
    output_credits_per_1k: String,
    balance: String,
}

/// `GET /deploy`.
pub async fn page(State(state): State<SharedState>, Viewer(session): Viewer) -> Response {
    let tariff = EndpointPricing::default();
    let markup = state.deployer.settings.markup_basis_points;
    // Nano-dollars per 1k tokens → micro-dollars, marked up.
    let per_1k = |nanos: i64| layout::credits(nanos.saturating_mul(markup) / 10_000 / 1000);
    let page = DeployPage {
        balance: layout::credits(
            state
                .registry
                .account(&session.user.id)
                .map_or(session.user.balance_micro_usd, |account| account.balance()),
        ),
        layout: Layout::new(&session, "Deploy", "deploy").with_script("deploy.js"),
        input_credits_per_1k: per_1k(tariff.input_nanos_per_1k),
        output_credits_per_1k: per_1k(tariff.output_nanos_per_1k),
    };
    render(&page)
}

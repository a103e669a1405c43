//! The management API (`/api/v1/...`): thin handlers that validate input, call
//! the store, reload the gateway snapshot after writes, and render JSON.

mod connect;
mod connection;
pub mod deploy;
mod deployments;
mod endpoints;
mod events;
mod extract;
pub mod keys;
mod models;
mod traffic;
mod usage;
mod users;
mod views;
mod webhooks;

use axum::routing::{get, post};
use axum::Router;

use crate::state::SharedState;

pub use connection::connection_info;
pub(crate) use endpoints::owned_endpoint;
pub use extract::{Admin, ApiJson, ApiQuery, Caller};
pub use views::public_url;

/// The management routes.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/users", post(users::create_user))
        .route("/api/v1/users/{user_id}/credits", post(users::add_credits))
        .route("/api/v1/me", get(users::me))
        .route("/api/v1/billing/balance", get(users::balance))
        .route("/api/v1/billing/ledger", get(users::ledger))
        .route(
            "/api/v1/endpoints",
            post(endpoints::create_endpoint).get(endpoints::list_endpoints),
        )
        .route("/api/v1/endpoints/summary", get(usage::summary))
        .route("/api/v1/endpoints/deploy", post(deploy::deploy))
        .route("/api/v1/endpoints/deploy/preview", get(deploy::preview))
        .route(
            "/api/v1/endpoints/{endpoint_id}/redeploy",
            post(deploy::redeploy),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/deployment",
            get(deploy::deployment_status),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/health",
            get(deploy::endpoint_health),
        )
        .route(
            "/api/v1/hooks/training-complete",
            post(deploy::training_complete),
        )
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/connect/endpoints", get(connect::connect_endpoints))
        .route(
            "/api/v1/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route(
            "/api/v1/webhooks/{webhook_id}",
            axum::routing::delete(webhooks::delete_webhook),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}",
            get(endpoints::get_endpoint)
                .patch(endpoints::update_endpoint)
                .delete(endpoints::delete_endpoint),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/backends",
            post(traffic::create_backend).get(traffic::list_backends),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/backends/{backend_id}",
            axum::routing::delete(traffic::delete_backend),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/traffic",
            axum::routing::put(traffic::put_traffic).get(traffic::get_traffic),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/keys",
            post(keys::create_key).get(keys::list_keys),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/keys/{key_id}",
            axum::routing::delete(keys::revoke_key),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/usage",
            get(usage::endpoint_usage),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/usage/detailed",
            get(usage::detailed_usage),
        )
        .route(
            "/api/v1/endpoints/{endpoint_id}/connection",
            get(connection::connection),
        )
        .merge(model_routes())
}

/// Models, deployments and the native inference passthrough of a deployment.
fn model_routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/models",
            post(models::create_model).get(models::list_models),
        )
        .route(
            "/api/v1/models/{model_id}",
            get(models::get_model)
                .patch(models::update_model)
                .delete(models::delete_model),
        )
        .route(
            "/api/v1/models/{model_id}/activate",
            post(models::activate_model),
        )
        .route(
            "/api/v1/models/{model_id}/deactivate",
            post(models::deactivate_model),
        )
        .route(
            "/api/v1/deployments",
            post(deployments::create_deployment).get(deployments::list_deployments),
        )
        .route(
            "/api/v1/deployments/{deployment_id}",
            get(deployments::get_deployment).delete(deployments::delete_deployment),
        )
        .route(
            "/api/v1/deployments/{deployment_id}/start",
            post(deployments::start_deployment),
        )
        .route(
            "/api/v1/deployments/{deployment_id}/stop",
            post(deployments::stop_deployment),
        )
        .route(
            "/api/v1/deployments/{deployment_id}/inference/{*path}",
            post(crate::gateway::native::inference),
        )
}

/// Validates `page` (from 1) and `limit` (1..=500) query parameters into limit and offset.
pub(crate) fn pagination(
    page: Option<i64>,
    limit: Option<i64>,
) -> Result<(i64, i64, i64), crate::error::HttpError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(50);
    if !(1..=1_000_000).contains(&page) {
        return Err(crate::error::HttpError::invalid_field(
            "page",
            "must be between 1 and 1000000",
        ));
    }
    if !(1..=500).contains(&limit) {
        return Err(crate::error::HttpError::invalid_field(
            "limit",
            "must be between 1 and 500",
        ));
    }
    Ok((page, limit, (page - 1) * limit))
}

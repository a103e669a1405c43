//! The web dashboard at `/`: server-rendered askama pages, small hand-written
//! ES modules, and assets embedded in the binary. Pages read the store
//! directly; actions call the JSON management API with the session cookie and
//! the CSRF token (see [`session`]).

pub mod assets;
pub mod layout;
pub mod pages;
pub mod samples;
pub mod session;

use askama::Template;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderValue, StatusCode};

use crate::state::SharedState;

/// The dashboard's routes.
pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/", get(pages::overview::page))
        .route(
            "/login",
            get(pages::login::form).post(pages::login::sign_in),
        )
        .route("/logout", post(pages::login::sign_out))
        .route("/endpoints", get(pages::endpoints::page))
        .route(
            "/endpoints/{endpoint_id}/code",
            get(pages::endpoints::code_samples),
        )
        .route("/assets/{name}", get(assets::asset))
        .route("/favicon.ico", get(assets::favicon))
}

/// The Content-Security-Policy of every page: no inline script or style, no
/// framing, nothing loaded from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Renders a page with the dashboard's security headers; a template error is a 500.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(error) => {
            tracing::error!(%error, "dashboard template failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be rendered.</p>"
                    .to_owned(),
            )
        }
    }
}

/// The page a browser gets for an unknown dashboard path.
pub fn not_found_page() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Not found · Switchyard</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body class=\"login-page\"><main class=\"card login-card\"><h1>Page not found</h1>\
         <p class=\"muted\">There is nothing at this address, or it belongs to someone else.</p>\
         <p><a class=\"btn btn-primary\" href=\"/\">Go to the overview</a></p></main></body></html>"
            .to_owned(),
    )
}

/// An HTML response that is never cached and never framed.
pub fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

//! Sign-in with a management token, and sign-out. The sign-in form is guarded
//! by a double-submit cookie; sign-out by the session's CSRF token.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;

use super::{field, form_fields};
use crate::dashboard::session::{
    self, random_token, safe_next, set_cookie, tokens_equal, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
    SESSION_TTL_MS,
};
use crate::dashboard::{html_response, render};
use crate::domain::now_ms;
use crate::state::SharedState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// A sign-in form with a fresh double-submit token. A refused sign-in is
/// shown as the form again with its message, answered 200 like any page
/// (browsers log every non-2xx document as a console error).
fn login_form(
    state: &SharedState,
    headers: &HeaderMap,
    next: String,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let csrf = random_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        error,
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    let secure = session::secure_cookies(state, headers);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, secure),
    );
    response
}

/// `GET /login`.
pub async fn form(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Ok(Some(_)) = session::session_from_headers(&state, &headers).await {
        return Redirect::to(&next).into_response();
    }
    login_form(&state, &headers, next, StatusCode::OK, None)
}

/// `POST /login`: checks the token, opens a session and goes to `next`.
pub async fn sign_in(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fields) = form_fields(&body) else {
        return html_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "<!doctype html><title>Too large</title><p>The form is too large.</p>".to_owned(),
        );
    };
    let next = safe_next(field(&fields, "next"));
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let given = field(&fields, "csrf").unwrap_or_default();
    if expected.is_empty() || !tokens_equal(expected, given) {
        return login_form(
            &state,
            &headers,
            next,
            StatusCode::OK,
            Some("The sign-in form expired. Please try again.".to_owned()),
        );
    }
    let token = field(&fields, "token").unwrap_or_default().trim();
    if token.is_empty() || token.len() > 256 {
        return login_form(
            &state,
            &headers,
            next,
            StatusCode::OK,
            Some("Enter a management token.".to_owned()),
        );
    }
    let session_cookie = random_token();
    let created = state
        .store
        .create_session(
            &state.secrets.hash_token(&session_cookie),
            &state.secrets.hash_token(token),
            now_ms() + SESSION_TTL_MS,
        )
        .await;
    match created {
        Ok(Some(user)) => {
            tracing::info!(user_id = %user.id, "dashboard sign-in");
            let secure = session::secure_cookies(&state, &headers);
            let mut response = Redirect::to(&next).into_response();
            let out = response.headers_mut();
            out.append(
                header::SET_COOKIE,
                set_cookie(
                    SESSION_COOKIE,
                    &session_cookie,
                    SESSION_TTL_MS / 1000,
                    secure,
                ),
            );
            out.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
            );
            response
        }
        Ok(None) => login_form(
            &state,
            &headers,
            next,
            StatusCode::OK,
            Some("That token is not valid, or it was revoked.".to_owned()),
        ),
        Err(error) => {
            tracing::error!(%error, "dashboard sign-in failed");
            login_form(
                &state,
                &headers,
                next,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The server could not open a session. Please try again.".to_owned()),
            )
        }
    }
}

/// `POST /logout`: ends the session when the form carries its CSRF token.
pub async fn sign_out(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body).unwrap_or_default();
    let secure = session::secure_cookies(&state, &headers);
    if let Ok(Some(current)) = session::session_from_headers(&state, &headers).await {
        if !tokens_equal(&current.csrf, field(&fields, "csrf").unwrap_or_default()) {
            return crate::error::HttpError::csrf_failed().into_response();
        }
        if let Some(value) = session::cookie(&headers, SESSION_COOKIE) {
            if let Err(error) = state
                .store
                .delete_session(&state.secrets.hash_token(value))
                .await
            {
                tracing::error!(%error, "dashboard sign-out failed");
                return crate::error::HttpError::internal().into_response();
            }
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure),
    );
    response
}

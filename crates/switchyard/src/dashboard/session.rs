//! Dashboard sign-in: the `sy_session` cookie (HttpOnly, SameSite=Strict), the
//! per-session CSRF token, and the page extractor that sends strangers to `/login`.
//!
//! The cookie value is 32 random bytes; only its keyed hash is stored. The CSRF
//! token is derived from the cookie with the server's hash key, so it needs no
//! storage, and is compared in constant time.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::domain::User;
use crate::error::HttpError;
use crate::state::{AppState, SharedState};

/// The session cookie.
pub const SESSION_COOKIE: &str = "sy_session";
/// The double-submit cookie that protects the sign-in form itself.
pub const LOGIN_CSRF_COOKIE: &str = "sy_login_csrf";
/// The header that carries the CSRF token on API calls made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// A signed-in dashboard user and the CSRF token of their session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// A fresh random cookie or form token (URL-safe base64 of 32 bytes).
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The CSRF token of the session whose cookie is `session_cookie`.
pub fn csrf_for(state: &AppState, session_cookie: &str) -> String {
    hex::encode(state.secrets.hash_token(&format!("csrf:{session_cookie}")))
}

/// Constant-time comparison of two tokens.
pub fn tokens_equal(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The session the request's cookie belongs to, if it is live.
pub async fn session_from_headers(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, HttpError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > 128 {
        return Ok(None);
    }
    let hash = state.secrets.hash_token(value);
    let user = state.store.find_session_user(&hash).await?;
    Ok(user.map(|user| Session {
        user,
        csrf: csrf_for(state, value),
    }))
}

/// Whether a method changes state (and so needs the CSRF token).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The user of a cookie-authenticated API request; unsafe methods must carry
/// the session's CSRF token in `X-CSRF-Token`.
pub async fn api_user_from_cookie(
    state: &AppState,
    parts: &Parts,
) -> Result<Option<User>, HttpError> {
    let Some(session) = session_from_headers(state, &parts.headers).await? else {
        return Ok(None);
    };
    if is_unsafe(&parts.method) {
        let given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !tokens_equal(&session.csrf, given) {
            return Err(HttpError::csrf_failed());
        }
    }
    Ok(Some(session.user))
}

/// `Set-Cookie` for a cookie that scripts cannot read and other sites never send.
pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Whether cookies must be marked `Secure` (the server is reached over HTTPS).
pub fn secure_cookies(state: &AppState, headers: &HeaderMap) -> bool {
    crate::api::public_url(state, headers).starts_with("https://")
}

/// A page's signed-in user; anyone else is redirected to `/login?next=<path>`.
pub struct Viewer(pub Session);

impl FromRequestParts<SharedState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        match session_from_headers(state, &parts.headers).await {
            Ok(Some(session)) => Ok(Viewer(session)),
            Ok(None) => {
                let next = parts.uri.path_and_query().map_or("/", |path| path.as_str());
                let target = format!(
                    "/login?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(Redirect::to(&target).into_response())
            }
            Err(error) => Err(error.into_response()),
        }
    }
}

/// A local path to return to after sign-in; anything else becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.starts_with("/login")
                && path.len() <= 512
                && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; sy_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(
            safe_next(Some("/endpoints?status=active")),
            "/endpoints?status=active"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/login?next=/")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let value = set_cookie(SESSION_COOKIE, "v", 60, true);
        let text = value.to_str().unwrap();
        assert!(text.contains("HttpOnly"));
        assert!(text.contains("SameSite=Strict"));
        assert!(text.ends_with("; Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}

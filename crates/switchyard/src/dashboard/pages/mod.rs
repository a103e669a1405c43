//! One module per dashboard page.

pub mod endpoints;
pub mod login;
pub mod overview;

use bytes::Bytes;

/// Largest form body the dashboard accepts (sign-in and sign-out only).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The fields of a URL-encoded form body; `None` when it is too large.
pub fn form_fields(body: &Bytes) -> Option<Vec<(String, String)>> {
    if body.len() > MAX_FORM_BYTES {
        return None;
    }
    Some(form_urlencoded::parse(body).into_owned().collect())
}

/// The first value of `name` in a parsed form.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

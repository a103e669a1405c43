//! Generation and shape checks of secret tokens: gateway API keys
//! (`sy_live_…`, `sy_test_…`) and management tokens (`sym_…`).

use rand::distributions::{Alphanumeric, DistString};

/// Prefix of live gateway API keys.
pub const LIVE_PREFIX: &str = "sy_live_";
/// Prefix of test gateway API keys.
pub const TEST_PREFIX: &str = "sy_test_";
/// Prefix of management tokens.
pub const MANAGEMENT_PREFIX: &str = "sym_";
/// Random base62 characters in an API key (32 × log2(62) ≈ 190 bits).
pub const KEY_RANDOM_LEN: usize = 32;
/// Random base62 characters in a management token.
pub const MANAGEMENT_RANDOM_LEN: usize = 40;
/// Characters of the key kept as its display prefix (`sy_live_` + 4).
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// Generates a new API key from the OS CSPRNG.
pub fn generate_api_key(test: bool) -> String {
    let prefix = if test { TEST_PREFIX } else { LIVE_PREFIX };
    format!("{prefix}{}", random_base62(KEY_RANDOM_LEN))
}

/// Generates a new management token from the OS CSPRNG.
pub fn generate_management_token() -> String {
    format!(
        "{MANAGEMENT_PREFIX}{}",
        random_base62(MANAGEMENT_RANDOM_LEN)
    )
}

/// Returns the display prefix stored next to the hash, e.g. `sy_live_AbCd`.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// Tells whether a presented string has the shape of an API key; the check
/// avoids hashing garbage and is not a secret-dependent comparison.
pub fn looks_like_api_key(candidate: &str) -> bool {
    let random = candidate
        .strip_prefix(LIVE_PREFIX)
        .or_else(|| candidate.strip_prefix(TEST_PREFIX));
    matches!(random, Some(rest) if rest.len() == KEY_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn random_base62(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_the_documented_format() {
        let key = generate_api_key(false);
        assert!(key.starts_with("sy_live_"));
        assert_eq!(key.len(), 8 + 32);
        assert!(looks_like_api_key(&key));
        assert!(generate_api_key(true).starts_with("sy_test_"));
        assert_eq!(display_prefix(&key).len(), 12);
        assert_ne!(generate_api_key(false), key);
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(!looks_like_api_key("sy_live_short"));
        assert!(!looks_like_api_key("sk-abcdefabcdefabcdefabcdefabcdefab"));
        assert!(!looks_like_api_key(&format!("sy_live_{}", "!".repeat(32))));
    }
}

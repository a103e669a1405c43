//! The server's master secret and what is derived from it: the AES-256-GCM key
//! that encrypts upstream credentials at rest and the HMAC key that hashes API keys.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Failures around the master secret and encrypted values.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("SWITCHYARD_SECRET_KEY must be 32 bytes as 64 hex characters or base64")]
    BadKeyFormat,
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("encrypted value is malformed or was encrypted under another key")]
    Decrypt,
}

/// The master secret and the keys derived from it.
pub struct Secrets {
    encryption: Aes256Gcm,
    hash_key: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Builds the secrets from 32 bytes of master key material.
    pub fn from_master(master: &[u8; 32]) -> Self {
        let encryption_key = derive(master, b"switchyard/credential-encryption/v1");
        let hash_key = derive(master, b"switchyard/api-key-hash/v1");
        Self {
            encryption: Aes256Gcm::new(&encryption_key.into()),
            hash_key,
        }
    }

    /// Loads the master key from `SWITCHYARD_SECRET_KEY` when given, else from
    /// `<data_dir>/secret.key`, creating that file with mode 0600 on first start.
    pub fn load(env_value: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(value) = env_value {
            return Ok(Self::from_master(&decode_master(value)?));
        }
        let path = data_dir.join("secret.key");
        let key_file_error = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::from_master(&decode_master(text.trim())?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut master = [0_u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut master);
                write_private_file(&path, BASE64.encode(master).as_bytes())
                    .map_err(key_file_error)?;
                Ok(Self::from_master(&master))
            }
            Err(error) => Err(key_file_error(error)),
        }
    }

    /// Computes the keyed hash (HMAC-SHA-256) that is stored for a token.
    pub fn hash_token(&self, token: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.hash_key).expect("HMAC accepts any key size");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts a credential; the output is `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0_u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .encryption
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(12 + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("v1:{}", BASE64.encode(blob))
    }

    /// Decrypts a value produced by [`Secrets::encrypt`].
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let encoded = stored.strip_prefix("v1:").ok_or(SecretError::Decrypt)?;
        let blob = BASE64.decode(encoded).map_err(|_| SecretError::Decrypt)?;
        if blob.len() < 12 + 16 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(12);
        let plaintext = self
            .encryption
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Decrypt)
    }
}

/// Compares two hashes in constant time.
pub fn hashes_equal(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.ct_eq(right).into()
}

fn derive(master: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC accepts any key size");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn decode_master(text: &str) -> Result<[u8; 32], SecretError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|index| u8::from_str_radix(&text[index * 2..index * 2 + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| SecretError::BadKeyFormat)?
    } else {
        BASE64.decode(text).map_err(|_| SecretError::BadKeyFormat)?
    };
    bytes.try_into().map_err(|_| SecretError::BadKeyFormat)
}

/// Writes a file readable only by its owner (mode 0600 on Unix).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_and_decrypts_round_trip() {
        let secrets = Secrets::from_master(&[7; 32]);
        let sealed = secrets.encrypt("sk-upstream-secret");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("sk-upstream-secret"));
        assert_eq!(secrets.decrypt(&sealed).unwrap(), "sk-upstream-secret");
        let other = Secrets::from_master(&[8; 32]);
        assert!(other.decrypt(&sealed).is_err());
        assert!(secrets.decrypt("v1:AAAA").is_err());
    }

    #[test]
    fn hash_is_keyed() {
        let first = Secrets::from_master(&[1; 32]);
        let second = Secrets::from_master(&[2; 32]);
        assert_ne!(
            first.hash_token("sy_live_x"),
            second.hash_token("sy_live_x")
        );
        assert!(hashes_equal(&first.hash_token("a"), &first.hash_token("a")));
        assert!(!hashes_equal(
            &first.hash_token("a"),
            &first.hash_token("b")
        ));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Secrets::load(None, dir.path()).unwrap();
        let second = Secrets::load(None, dir.path()).unwrap();
        assert_eq!(first.hash_token("k"), second.hash_token("k"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn env_key_accepts_hex_and_base64_only() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "00".repeat(32);
        assert!(Secrets::load(Some(&hex), dir.path()).is_ok());
        assert!(Secrets::load(Some(&BASE64.encode([3_u8; 32])), dir.path()).is_ok());
        assert!(matches!(
            Secrets::load(Some("short"), dir.path()),
            Err(SecretError::BadKeyFormat)
        ));
    }
}

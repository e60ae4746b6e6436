//! Secrets seen on the wire (passwords, API keys, session ids, tokens).
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show a
//! placeholder, so a secret cannot reach a log by accident. Only its SHA-256
//! fingerprint may be recorded.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A secret value copied from a request or response.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the lowercase hex SHA-256 of the secret's UTF-8 bytes.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Tells whether the value has the shape of an Odoo API key: 40 lowercase
    /// hex characters (20 random bytes).
    pub fn looks_like_odoo_api_key(&self) -> bool {
        self.0.len() == 40 && self.0.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
    }

    #[test]
    fn sha256_matches_known_vector() {
        let secret = Secret::new("abc");
        assert_eq!(
            secret.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn api_key_shape_detection() {
        assert!(Secret::new("0123456789abcdef0123456789abcdef01234567").looks_like_odoo_api_key());
        assert!(!Secret::new("PASSWORD_PLACEHOLDER").looks_like_odoo_api_key());
        assert!(!Secret::new("0123456789ABCDEF0123456789abcdef01234567").looks_like_odoo_api_key());
    }
}

//! Standard Webhooks signing (<https://www.standardwebhooks.com/>): `whsec_` secrets and the
//! `webhook-signature: v1,<base64 HMAC-SHA256>` header over `"{id}.{timestamp}.{body}"`.
//!
//! Owns the secret's text form and the HMAC; it must not send anything or log the secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

/// The text prefix of a signing secret; the rest is base64 of the raw key bytes.
pub const SECRET_PREFIX: &str = "whsec_";
/// The specification asks for 24 to 64 random bytes.
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
const GENERATED_SECRET_BYTES: usize = 32;

/// Why a signing secret was refused. Never contains the secret text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningSecretError {
    #[error("a webhook signing secret must start with {SECRET_PREFIX}")]
    MissingPrefix,
    #[error("the part after {SECRET_PREFIX} must be standard base64")]
    NotBase64,
    #[error(
        "a webhook signing secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
    )]
    WrongLength,
}

/// The decoded key of a `whsec_…` secret. `Debug` never shows it.
pub struct SigningSecret {
    key: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(**REDACTED**)")
    }
}

impl SigningSecret {
    /// Parses the `whsec_<base64>` text form.
    pub fn parse(text: &str) -> Result<Self, SigningSecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SigningSecretError::MissingPrefix)?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| SigningSecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SigningSecretError::WrongLength);
        }
        Ok(Self {
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// A fresh random secret in its text form (to store sealed and show the tenant once).
    pub fn generate() -> SecretString {
        let bytes: [u8; GENERATED_SECRET_BYTES] = rand::random();
        SecretString::from(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
    }

    /// The `webhook-signature` header value for one delivery attempt.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it panic-free.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key.expose_secret()) else {
            return String::new();
        };
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // Example from the Standard Webhooks specification's reference libraries.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_malformed_secrets() {
        assert_eq!(
            SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(SigningSecretError::MissingPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_not base64!").err(),
            Some(SigningSecretError::NotBase64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_c2hvcnQ=").err(),
            Some(SigningSecretError::WrongLength)
        );
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(SigningSecret::parse(a.expose_secret()).is_ok());
        assert!(
            !format!("{:?}", SigningSecret::parse(a.expose_secret()).unwrap()).contains("whsec")
        );
    }
}

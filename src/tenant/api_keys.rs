//! Tenant API keys: issuing them (the full key is shown once), storing only a hash, and checking a
//! presented key in constant time. It must not store or log the full key.
//!
//! A key looks like `cbk_<12 hex>_<43 base64url>`. The `cbk_<12 hex>` part is a public lookup
//! prefix (unique, indexed); the rest is 256 bits from the OS CSPRNG. The store keeps SHA-256 of
//! the whole key. A slow password hash (argon2) exists to make guessing low-entropy passwords
//! expensive; a 256-bit random key cannot be guessed either way, and a fast hash keeps every
//! authenticated request cheap instead of handing callers a CPU- and memory-burning lever.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{ApiKey, Store, StoreError, TenantId};

const KEY_PREFIX: &str = "cbk_";
const LOOKUP_HEX_LEN: usize = 12;
/// Prefix collisions (48 bits) are retried this many times before giving up.
const ISSUE_ATTEMPTS: usize = 3;

/// A freshly issued key: `secret` is the only copy of the full key, to be shown once.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

/// Creates a key for `tenant` and stores its hash.
pub async fn issue_api_key<S: Store>(
    store: &S,
    tenant: &TenantId,
) -> Result<IssuedApiKey, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let lookup: [u8; LOOKUP_HEX_LEN / 2] = rand::random();
        let mut prefix = String::from(KEY_PREFIX);
        for b in lookup {
            prefix.push_str(&format!("{b:02x}"));
        }
        let random: [u8; 32] = rand::random();
        let full = SecretString::from(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random)));
        match store
            .create_api_key(tenant, &prefix, &hash(full.expose_secret()))
            .await
        {
            Ok(key) => return Ok(IssuedApiKey { key, secret: full }),
            Err(StoreError::Conflict { .. }) if attempt < ISSUE_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The key's record if `presented` is a valid, unrevoked key; `None` for anything else (malformed,
/// unknown, revoked, wrong secret), so callers cannot tell which check failed.
pub async fn authenticate<S: Store>(
    store: &S,
    presented: &str,
) -> Result<Option<ApiKey>, StoreError> {
    let Some(prefix) = lookup_prefix(presented) else {
        return Ok(None);
    };
    let Some(credential) = store.api_key_by_prefix(prefix).await? else {
        return Ok(None);
    };
    let matches: bool = hash(presented)
        .as_slice()
        .ct_eq(&credential.key_hash)
        .into();
    if !matches || credential.key.revoked_at.is_some() {
        return Ok(None);
    }
    Ok(Some(credential.key))
}

fn hash(full_key: &str) -> [u8; 32] {
    Sha256::digest(full_key.as_bytes()).into()
}

/// `cbk_<12 hex>` of a well-formed key.
pub(crate) fn lookup_prefix(presented: &str) -> Option<&str> {
    let prefix_len = KEY_PREFIX.len() + LOOKUP_HEX_LEN;
    let prefix = presented.get(..prefix_len)?;
    let hex_ok = prefix[KEY_PREFIX.len()..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let separator_ok = presented.as_bytes().get(prefix_len) == Some(&b'_');
    (prefix.starts_with(KEY_PREFIX) && hex_ok && separator_ok && presented.len() < 256)
        .then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_prefix_accepts_only_well_formed_keys() {
        assert_eq!(
            lookup_prefix("cbk_0123456789ab_secret"),
            Some("cbk_0123456789ab")
        );
        for bad in [
            "",
            "cbk_",
            "cbk_0123456789ab",
            "cbk_0123456789AB_secret",
            "xyz_0123456789ab_secret",
            "cbk_0123456789a_secret",
            "cbk_é123456789ab_secret",
        ] {
            assert_eq!(lookup_prefix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_whole_key() {
        assert_eq!(hash("a"), hash("a"));
        assert_ne!(hash("cbk_0123456789ab_x"), hash("cbk_0123456789ab_y"));
    }
}

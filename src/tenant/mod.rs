//! Tenancy services on top of the store: the secret vault (encryption of vendor credentials at
//! rest) and API keys (issuing, hashing, verifying). It must not run SQL itself — rows go through
//! [`crate::store::Store`] — and must never log or return secret plaintext outside
//! `secrecy` wrappers.

pub mod api_keys;
pub mod vault;

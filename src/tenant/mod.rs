//! Tenancy services on top of the store: the secret vault (encryption of vendor credentials at
//! rest), API keys (issuing, hashing, verifying) and tenant files (provisioning from TOML). It must
//! not run SQL itself — rows go through [`crate::store::Store`] — and must never log or return
//! secret plaintext outside `secrecy` wrappers.

pub mod api_keys;
pub mod file;
pub mod vault;

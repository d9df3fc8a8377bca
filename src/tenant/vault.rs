//! The secret vault: encrypts tenants' vendor credentials before they reach the store, decrypts
//! them only when a connector needs them, and rotates the master key without downtime. It must
//! never log, `Debug`-print or return plaintext outside `secrecy` wrappers, and its list method
//! returns only name, vendor, last4 and timestamps.
//!
//! # Cipher
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`). Its 192-bit nonce can be drawn at random for
//! every encryption with no practical risk of reuse, so no nonce counter has to be coordinated
//! between bridge nodes sharing one database; AES-GCM's 96-bit random nonces would cap the number
//! of encryptions per key far lower. It is constant-time in software, with no dependence on
//! AES-NI.
//!
//! # What a sealed secret is bound to
//!
//! Stored bytes are `version (1) ‖ nonce (24) ‖ ciphertext+tag`. The associated data binds the
//! tenant id, the secret's name and the key id, so a ciphertext copied into another tenant's row
//! (or renamed) fails authentication instead of decrypting.
//!
//! # Master keys and rotation
//!
//! A master key is 32 random bytes, given base64-encoded in `CALLBRIDGE_MASTER_KEY`, or in the
//! file named by `CALLBRIDGE_MASTER_KEY_FILE` (first key line is current, later lines are older
//! keys; `#` starts a comment). Older keys that must stay readable can also be listed, comma
//! separated, in `CALLBRIDGE_MASTER_KEY_PREVIOUS`. A key's id is derived from the key itself
//! (a truncated SHA-256 under a domain label), so every node computes the same id.
//!
//! [`Vault::rotate_master`] makes a new key current and re-encrypts every secret in batches, one
//! transaction per batch, while both keys stay readable. With several nodes: first give every node
//! the new key as a previous key (so they can read what rotation writes), run the rotation on one
//! node, then make the new key current everywhere and keep the old one as previous until no node
//! runs with the old configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{
    NewSealedSecret, ResealedSecret, SealedSecret, SecretInfo, Store, StoreError, TenantId,
};

/// Environment variable holding the current master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "CALLBRIDGE_MASTER_KEY";
/// Environment variable holding older, still readable master keys (comma-separated base64).
pub const PREVIOUS_KEYS_ENV: &str = "CALLBRIDGE_MASTER_KEY_PREVIOUS";
/// Environment variable naming a key file (used when `CALLBRIDGE_MASTER_KEY` is unset).
pub const MASTER_KEY_FILE_ENV: &str = "CALLBRIDGE_MASTER_KEY_FILE";

/// Secrets re-encrypted per transaction during rotation.
pub const DEFAULT_ROTATION_BATCH: u32 = 100;

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const AAD_LABEL: &[u8] = b"callbridge/secret/v1\0";
const KEY_ID_LABEL: &[u8] = b"callbridge/master-key-id/v1\0";
/// Below this length a secret shows no last4: four characters of a short secret give too much away.
const MIN_LEN_FOR_LAST4: usize = 12;
const MAX_SECRET_LEN: usize = 64 * 1024;

/// Every failure of the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error(
        "no master key: set {MASTER_KEY_ENV} to the base64 of 32 random bytes \
         (e.g. `openssl rand -base64 32`) or {MASTER_KEY_FILE_ENV} to a file holding it"
    )]
    MissingMasterKey,
    /// A master key that is not base64 of exactly 32 bytes. The key text is never included.
    #[error("invalid master key from {origin}: {reason}")]
    InvalidMasterKey { origin: String, reason: String },
    #[error("cannot read master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "secret {name:?} of tenant {tenant} is sealed under master key {key_id}, which is not in \
         the keyring (add it to {PREVIOUS_KEYS_ENV})"
    )]
    UnknownKey {
        tenant: TenantId,
        name: String,
        key_id: String,
    },
    /// Authentication failed: wrong key, altered ciphertext, or a ciphertext moved to another
    /// tenant or name.
    #[error("secret {name:?} of tenant {tenant} failed to decrypt (tampered, moved or wrong key)")]
    Decrypt { tenant: TenantId, name: String },
    #[error("invalid secret: {0}")]
    InvalidSecret(String),
    #[error("key rotation made no progress: {0}")]
    RotationStalled(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One 256-bit master key and its derived id. `Debug` shows the id only.
pub struct MasterKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(bytes.as_slice())
            .finalize();
        let mut id = String::with_capacity(17);
        id.push('k');
        for b in &digest[..8] {
            id.push_str(&format!("{b:02x}"));
        }
        Self {
            id,
            key: SecretBox::new(Box::new(*bytes)),
        }
    }

    /// Parses standard base64 (surrounding whitespace ignored). `origin` names where the text came
    /// from, for the error message.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, VaultError> {
        let invalid = |reason: String| VaultError::InvalidMasterKey {
            origin: origin.to_owned(),
            reason,
        };
        let decoded = Zeroizing::new(
            BASE64
                .decode(text.trim())
                .map_err(|e| invalid(format!("not base64: {e}")))?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| invalid(format!("decodes to {} bytes, need 32", decoded.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key (from the operating system's CSPRNG via `rand`).
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// The key as base64, for printing once when an operator generates one.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(BASE64.encode(self.key.expose_secret()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }
}

impl Clone for MasterKey {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            key: SecretBox::new(Box::new(*self.key.expose_secret())),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The current master key and the older ones that must stay readable.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds an older key that stays readable (ignored if it is already in the ring).
    pub fn with_previous(mut self, key: MasterKey) -> Self {
        if self.get(key.id()).is_none() {
            self.previous.push(key);
        }
        self
    }

    /// Reads the keyring from the process environment (see the module docs).
    pub fn from_env() -> Result<Self, VaultError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Keyring::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, VaultError> {
        let present = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut ring = if let Some(text) = present(MASTER_KEY_ENV) {
            Self::new(MasterKey::from_base64(&text, MASTER_KEY_ENV)?)
        } else if let Some(path) = present(MASTER_KEY_FILE_ENV) {
            Self::from_key_file(Path::new(path.trim()))?
        } else {
            return Err(VaultError::MissingMasterKey);
        };
        if let Some(list) = present(PREVIOUS_KEYS_ENV) {
            for text in list.split(',').filter(|t| !t.trim().is_empty()) {
                ring = ring.with_previous(MasterKey::from_base64(text, PREVIOUS_KEYS_ENV)?);
            }
        }
        Ok(ring)
    }

    /// Reads a key file: one base64 key per line, the first is current; blank lines and lines
    /// starting with `#` are ignored.
    pub fn from_key_file(path: &Path) -> Result<Self, VaultError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            VaultError::KeyFile {
                path: path.to_owned(),
                source,
            }
        })?);
        let origin = format!("key file {}", path.display());
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| MasterKey::from_base64(line, &origin));
        let Some(current) = keys.next() else {
            return Err(VaultError::InvalidMasterKey {
                origin,
                reason: "the file holds no key".into(),
            });
        };
        let mut ring = Self::new(current?);
        for key in keys {
            ring = ring.with_previous(key?);
        }
        Ok(ring)
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// Ids of every readable key, current first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id.clone())
            .collect()
    }

    fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// `new_key` becomes current; every key of this ring stays readable.
    fn rotated_to(&self, new_key: MasterKey) -> Self {
        let mut previous = Vec::with_capacity(self.previous.len() + 1);
        for key in std::iter::once(&self.current).chain(&self.previous) {
            if key.id != new_key.id && !previous.iter().any(|k: &MasterKey| k.id == key.id) {
                previous.push(key.clone());
            }
        }
        Self {
            current: new_key,
            previous,
        }
    }
}

/// What a rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub new_key_id: String,
    pub resealed: u64,
    pub batches: u64,
}

/// Encrypts, stores, decrypts and rotates tenants' secrets over a [`Store`]. Cheap to clone; clones
/// share the keyring, so a rotation is seen by all of them.
#[derive(Clone)]
pub struct Vault<S> {
    store: S,
    keyring: Arc<RwLock<Arc<Keyring>>>,
}

impl<S> Vault<S> {
    /// A snapshot of the keyring; never held across an await, so rotation is not blocked.
    fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(
            &self
                .keyring
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl<S> fmt::Debug for Vault<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("current_key_id", &self.keyring().current_id())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Vault<S> {
    pub fn new(store: S, keyring: Keyring) -> Self {
        Self {
            store,
            keyring: Arc::new(RwLock::new(Arc::new(keyring))),
        }
    }

    /// Id of the key new secrets are sealed under.
    pub fn current_key_id(&self) -> String {
        self.keyring().current_id().to_owned()
    }

    /// Encrypts and stores (or replaces) the tenant's secret `name` for `vendor`.
    pub async fn put(
        &self,
        tenant: &TenantId,
        name: &str,
        vendor: &str,
        plaintext: &SecretString,
    ) -> Result<SecretInfo, VaultError> {
        let text = plaintext.expose_secret();
        if text.is_empty() {
            return Err(VaultError::InvalidSecret("the secret is empty".into()));
        }
        if text.len() > MAX_SECRET_LEN {
            return Err(VaultError::InvalidSecret(format!(
                "the secret is longer than {MAX_SECRET_LEN} bytes"
            )));
        }
        let keyring = self.keyring();
        let ciphertext = seal(&keyring.current, tenant, name, text.as_bytes())?;
        let sealed = NewSealedSecret {
            name: name.to_owned(),
            vendor: vendor.to_owned(),
            ciphertext,
            key_id: keyring.current_id().to_owned(),
            last4: last4(text),
        };
        Ok(self.store.put_sealed_secret(tenant, &sealed).await?)
    }

    /// Decrypts the tenant's secret `name`. Call it where the credential is used, and drop the
    /// result as soon as the request is built.
    pub async fn reveal(&self, tenant: &TenantId, name: &str) -> Result<SecretString, VaultError> {
        let sealed = self.store.sealed_secret(tenant, name).await?;
        let keyring = self.keyring();
        let plaintext = open(&keyring, &sealed)?;
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| VaultError::Decrypt {
            tenant: tenant.clone(),
            name: name.to_owned(),
        })?;
        Ok(SecretString::from(text))
    }

    /// Seals a value that is not a stored secret (an OAuth PKCE verifier kept in another table),
    /// bound to the tenant and `name` like a secret. Returns the key id and the sealed bytes.
    pub fn seal_value(
        &self,
        tenant: &TenantId,
        name: &str,
        plaintext: &SecretString,
    ) -> Result<(String, Vec<u8>), VaultError> {
        let keyring = self.keyring();
        let sealed = seal(
            &keyring.current,
            tenant,
            name,
            plaintext.expose_secret().as_bytes(),
        )?;
        Ok((keyring.current_id().to_owned(), sealed))
    }

    /// Opens what [`Vault::seal_value`] sealed for the same tenant and `name`.
    pub fn open_value(
        &self,
        tenant: &TenantId,
        name: &str,
        key_id: &str,
        ciphertext: Vec<u8>,
    ) -> Result<SecretString, VaultError> {
        let sealed = SealedSecret {
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            vendor: String::new(),
            ciphertext,
            key_id: key_id.to_owned(),
            last4: String::new(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let plaintext = open(&self.keyring(), &sealed)?;
        let text = String::from_utf8(plaintext.to_vec()).map_err(|_| VaultError::Decrypt {
            tenant: tenant.clone(),
            name: name.to_owned(),
        })?;
        Ok(SecretString::from(text))
    }

    /// Name, vendor, last4 and timestamps of the tenant's secrets.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(self.store.list_secrets(tenant).await?)
    }

    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), VaultError> {
        Ok(self.store.delete_secret(tenant, name).await?)
    }

    /// Makes `new_key` current and re-encrypts every secret under it, in batches of
    /// [`DEFAULT_ROTATION_BATCH`], each batch in one transaction.
    pub async fn rotate_master(&self, new_key: MasterKey) -> Result<RotationReport, VaultError> {
        self.rotate_master_in_batches(new_key, DEFAULT_ROTATION_BATCH)
            .await
    }

    /// [`Vault::rotate_master`] with an explicit batch size. Safe to re-run after an interruption:
    /// it picks up whatever is not yet under the new key.
    pub async fn rotate_master_in_batches(
        &self,
        new_key: MasterKey,
        batch_size: u32,
    ) -> Result<RotationReport, VaultError> {
        let batch_size = batch_size.max(1);
        let new_key_id = new_key.id().to_owned();
        // From here on, new writes use the new key and reads accept both.
        let keyring = {
            let mut guard = self
                .keyring
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let rotated = Arc::new(guard.rotated_to(new_key));
            *guard = Arc::clone(&rotated);
            rotated
        };
        let mut report = RotationReport {
            new_key_id: new_key_id.clone(),
            ..RotationReport::default()
        };
        loop {
            let batch = self
                .store
                .sealed_secrets_not_under_key(&new_key_id, batch_size)
                .await?;
            if batch.is_empty() {
                return Ok(report);
            }
            let mut resealed = Vec::with_capacity(batch.len());
            for sealed in &batch {
                let plaintext = open(&keyring, sealed)?;
                resealed.push(ResealedSecret {
                    tenant_id: sealed.tenant_id.clone(),
                    name: sealed.name.clone(),
                    old_key_id: sealed.key_id.clone(),
                    ciphertext: seal(
                        &keyring.current,
                        &sealed.tenant_id,
                        &sealed.name,
                        &plaintext,
                    )?,
                    key_id: new_key_id.clone(),
                });
            }
            let updated = self.store.reseal_secrets(&resealed).await?;
            report.batches += 1;
            report.resealed += updated;
            // Rows skipped because a concurrent write replaced them are under the new key now and
            // will not come back; a batch that changes nothing at all would loop forever.
            if updated == 0 {
                return Err(VaultError::RotationStalled(format!(
                    "a batch of {} secrets kept changing under the rotation; is another node \
                     still writing with an old key as current?",
                    batch.len()
                )));
            }
        }
    }
}

/// Associated data: the row a ciphertext belongs to, length-prefixed so no two (tenant, name, key)
/// triples encode alike.
fn associated_data(tenant: &TenantId, name: &str, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 12 + tenant.as_str().len() + name.len());
    aad.extend_from_slice(AAD_LABEL);
    for part in [tenant.as_str(), name, key_id] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn seal(
    key: &MasterKey,
    tenant: &TenantId,
    name: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let aad = associated_data(tenant, name, key.id());
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::InvalidSecret("encryption failed".into()))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn open(keyring: &Keyring, sealed: &SealedSecret) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let decrypt_error = || VaultError::Decrypt {
        tenant: sealed.tenant_id.clone(),
        name: sealed.name.clone(),
    };
    let key = keyring
        .get(&sealed.key_id)
        .ok_or_else(|| VaultError::UnknownKey {
            tenant: sealed.tenant_id.clone(),
            name: sealed.name.clone(),
            key_id: sealed.key_id.clone(),
        })?;
    let (&version, rest) = sealed.ciphertext.split_first().ok_or_else(decrypt_error)?;
    if version != FORMAT_VERSION || rest.len() < NONCE_LEN {
        return Err(decrypt_error());
    }
    let (nonce_bytes, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce_bytes).map_err(|_| decrypt_error())?;
    let aad = associated_data(&sealed.tenant_id, &sealed.name, &sealed.key_id);
    key.cipher()
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| decrypt_error())
}

fn last4(text: &str) -> String {
    let count = text.chars().count();
    if count < MIN_LEN_FOR_LAST4 {
        return String::new();
    }
    text.chars().skip(count - 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    fn sealed_row(tenant: &str, name: &str, key: &MasterKey, plaintext: &str) -> SealedSecret {
        let tenant = TenantId::parse(tenant).expect("tenant");
        SealedSecret {
            ciphertext: seal(key, &tenant, name, plaintext.as_bytes()).expect("seal"),
            tenant_id: tenant,
            name: name.into(),
            vendor: "hubspot".into(),
            key_id: key.id().into(),
            last4: String::new(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let ring = Keyring::new(key(1));
        let row = sealed_row("acme", "token", &ring.current, "pat-na1-secret");
        let plain = open(&ring, &row).expect("open");
        assert_eq!(plain.as_slice(), b"pat-na1-secret");
    }

    #[test]
    fn nonces_differ_between_encryptions() {
        let k = key(1);
        let a = sealed_row("acme", "token", &k, "same");
        let b = sealed_row("acme", "token", &k, "same");
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn moving_a_ciphertext_to_another_tenant_or_name_fails() {
        let ring = Keyring::new(key(1));
        let row = sealed_row("acme", "token", &ring.current, "pat-na1-secret");
        let mut moved = row.clone();
        moved.tenant_id = TenantId::parse("beta").expect("tenant");
        assert!(matches!(
            open(&ring, &moved),
            Err(VaultError::Decrypt { .. })
        ));
        let mut renamed = row.clone();
        renamed.name = "other".into();
        assert!(matches!(
            open(&ring, &renamed),
            Err(VaultError::Decrypt { .. })
        ));
    }

    #[test]
    fn tampered_truncated_or_unknown_key_ciphertexts_fail_without_panic() {
        let ring = Keyring::new(key(1));
        let row = sealed_row("acme", "token", &ring.current, "pat-na1-secret");
        let mut flipped = row.clone();
        let last = flipped.ciphertext.len() - 1;
        flipped.ciphertext[last] ^= 1;
        assert!(matches!(
            open(&ring, &flipped),
            Err(VaultError::Decrypt { .. })
        ));
        for len in [0, 1, 10, 25, 40] {
            let mut short = row.clone();
            short.ciphertext.truncate(len);
            assert!(matches!(
                open(&ring, &short),
                Err(VaultError::Decrypt { .. })
            ));
        }
        let other = Keyring::new(key(2));
        assert!(matches!(
            open(&other, &row),
            Err(VaultError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 17);
    }

    #[test]
    fn master_key_parsing_reports_without_echoing_the_key() {
        let good = BASE64.encode([7u8; 32]);
        assert_eq!(
            MasterKey::from_base64(&format!(" {good}\n"), "test")
                .expect("key")
                .id(),
            key(7).id()
        );
        let short = BASE64.encode([7u8; 16]);
        let err = MasterKey::from_base64(&short, "test").expect_err("short");
        assert!(err.to_string().contains("16 bytes"), "{err}");
        assert!(!err.to_string().contains(&short));
        assert!(MasterKey::from_base64("not base64!!", "test").is_err());
    }

    #[test]
    fn keyring_from_variables_and_files() {
        let k1 = BASE64.encode([1u8; 32]);
        let k2 = BASE64.encode([2u8; 32]);
        let vars = |name: &str| match name {
            MASTER_KEY_ENV => Some(k2.clone()),
            PREVIOUS_KEYS_ENV => Some(format!("{k1}, ")),
            _ => None,
        };
        let ring = Keyring::from_lookup(vars).expect("ring");
        assert_eq!(ring.key_ids(), [key(2).id(), key(1).id()]);
        assert!(matches!(
            Keyring::from_lookup(|_| None),
            Err(VaultError::MissingMasterKey)
        ));

        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# current\n{k2}\n\n{k1}\n")).expect("write");
        let file_var = path.display().to_string();
        let ring =
            Keyring::from_lookup(|name| (name == MASTER_KEY_FILE_ENV).then(|| file_var.clone()))
                .expect("ring from file");
        assert_eq!(ring.key_ids(), [key(2).id(), key(1).id()]);
        assert!(matches!(
            Keyring::from_key_file(&dir.path().join("missing")),
            Err(VaultError::KeyFile { .. })
        ));
    }

    #[test]
    fn rotation_keeps_every_old_key_readable() {
        let ring = Keyring::new(key(1)).with_previous(key(0));
        let rotated = ring.rotated_to(key(2));
        assert_eq!(rotated.key_ids(), [key(2).id(), key(1).id(), key(0).id()]);
        let again = rotated.rotated_to(key(1));
        assert_eq!(again.key_ids(), [key(1).id(), key(2).id(), key(0).id()]);
    }

    #[test]
    fn debug_output_is_redacted() {
        let k = key(9);
        let text = format!("{k:?} {:?}", Keyring::new(k.clone()));
        assert!(text.contains("REDACTED"));
        assert!(!text.contains("9, 9"));
        let secret = SecretString::from("pat-na1-very-secret".to_owned());
        assert!(!format!("{secret:?}").contains("very-secret"));
    }

    #[test]
    fn last4_only_for_long_secrets() {
        assert_eq!(last4("pat-na1-abcdefgh1234"), "1234");
        assert_eq!(last4("short"), "");
        assert_eq!(last4("ééééééééééé€uro"), "€uro");
    }
}

//! The vault and API keys over a real store, on SQLite and PostgreSQL (cases generic over
//! [`Store`], instantiated by `backend_suite!`), plus a scan of the SQLite file's bytes.

#[macro_use]
mod store_harness;

use callbridge::store::{ConnectorSpec, NewTenant, ResealedSecret, Store, StoreError, TenantId};
use callbridge::tenant::api_keys::{authenticate, issue_api_key};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault, VaultError};
use secrecy::{ExposeSecret, SecretString};

backend_suite!(
    put_reveal_list_delete,
    a_ciphertext_moved_to_another_tenant_does_not_decrypt,
    rotation_keeps_every_secret_readable_and_moves_all_rows_to_the_new_key,
    an_unknown_key_id_stops_rotation_with_a_clear_error,
    api_keys_authenticate_until_revoked,
);

const HUBSPOT_TOKEN: &str = "pat-na1-4b7f0c8e-plaintext-canary-91d2";

fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("tenant id")
}

async fn tenant<S: Store>(store: &S, id: &str) -> TenantId {
    let id = tid(id);
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: id.to_string(),
            time_zone: "UTC".into(),
        })
        .await
        .expect("tenant");
    id
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

async fn put_reveal_list_delete<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let info = vault
        .put(&acme, "hubspot-token", "hubspot", &secret(HUBSPOT_TOKEN))
        .await
        .expect("put");
    assert_eq!(info.last4, "91d2");
    assert_eq!(
        vault
            .reveal(&acme, "hubspot-token")
            .await
            .expect("reveal")
            .expose_secret(),
        HUBSPOT_TOKEN
    );

    let listed = vault.list(&acme).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].vendor.as_str()),
        ("hubspot-token", "hubspot")
    );
    let listed_text = format!("{listed:?}");
    assert!(!listed_text.contains(HUBSPOT_TOKEN), "{listed_text}");

    // The stored bytes are not the plaintext.
    let row = store
        .sealed_secret(&acme, "hubspot-token")
        .await
        .expect("row");
    assert!(
        !row.ciphertext
            .windows(HUBSPOT_TOKEN.len())
            .any(|w| w == HUBSPOT_TOKEN.as_bytes())
    );
    assert_eq!(row.key_id, vault.current_key_id());

    // Replace, then use the secret from a connector configuration.
    vault
        .put(
            &acme,
            "hubspot-token",
            "hubspot",
            &secret("pat-na1-rotated-by-user-0000"),
        )
        .await
        .expect("replace");
    assert_eq!(
        vault
            .reveal(&acme, "hubspot-token")
            .await
            .expect("reveal")
            .expose_secret(),
        "pat-na1-rotated-by-user-0000"
    );
    assert!(matches!(
        vault.put(&acme, "empty", "hubspot", &secret("")).await,
        Err(VaultError::InvalidSecret(_))
    ));
    assert!(matches!(
        vault.reveal(&acme, "missing").await,
        Err(VaultError::Store(StoreError::NotFound { .. }))
    ));

    vault.delete(&acme, "hubspot-token").await.expect("delete");
    assert!(vault.list(&acme).await.expect("list").is_empty());

    let debug = format!("{vault:?} {:?}", secret(HUBSPOT_TOKEN));
    assert!(!debug.contains(HUBSPOT_TOKEN), "{debug}");
}

async fn a_ciphertext_moved_to_another_tenant_does_not_decrypt<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    vault
        .put(&acme, "token", "hubspot", &secret(HUBSPOT_TOKEN))
        .await
        .expect("acme secret");
    vault
        .put(
            &beta,
            "token",
            "hubspot",
            &secret("beta-own-token-value-123"),
        )
        .await
        .expect("beta secret");

    // Copy acme's ciphertext into beta's row, as an attacker with database access might.
    let acme_row = store.sealed_secret(&acme, "token").await.expect("acme row");
    let beta_row = store.sealed_secret(&beta, "token").await.expect("beta row");
    let moved = store
        .reseal_secrets(&[ResealedSecret {
            tenant_id: beta.clone(),
            name: "token".into(),
            old_key_id: beta_row.key_id.clone(),
            ciphertext: acme_row.ciphertext.clone(),
            key_id: acme_row.key_id.clone(),
        }])
        .await
        .expect("overwrite");
    assert_eq!(moved, 1);
    match vault.reveal(&beta, "token").await {
        Err(VaultError::Decrypt { tenant, name }) => {
            assert_eq!((tenant, name.as_str()), (beta.clone(), "token"));
        }
        other => panic!("expected Decrypt, got {:?}", other.map(|_| "plaintext")),
    }
    // Acme's own row still decrypts.
    assert_eq!(
        vault
            .reveal(&acme, "token")
            .await
            .expect("acme")
            .expose_secret(),
        HUBSPOT_TOKEN
    );
}

async fn rotation_keeps_every_secret_readable_and_moves_all_rows_to_the_new_key<S: Store>(
    store: &S,
) {
    let acme = tenant(store, "acme").await;
    let beta = tenant(store, "beta").await;
    let old_key = MasterKey::generate();
    let vault = Vault::new(store.clone(), Keyring::new(old_key.clone()));
    let mut expected = Vec::new();
    for (tenant, count) in [(&acme, 7), (&beta, 6)] {
        for i in 0..count {
            let name = format!("secret-{i:02}");
            let value = format!("{tenant}-value-{i:02}-abcdefgh");
            vault
                .put(tenant, &name, "hubspot", &secret(&value))
                .await
                .expect("put");
            expected.push((tenant.clone(), name, value));
        }
    }
    store
        .put_connector(
            &acme,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: None,
                secret_name: Some("secret-00".into()),
            },
        )
        .await
        .expect("connector referencing a secret");

    // A second vault instance (another node) that only knows the old key as current but has the
    // new one as readable, as the rotation procedure requires.
    let new_key = MasterKey::generate();
    let other_node = Vault::new(
        store.clone(),
        Keyring::new(old_key.clone()).with_previous(new_key.clone()),
    );

    let report = vault
        .rotate_master_in_batches(new_key.clone(), 4)
        .await
        .expect("rotate");
    assert_eq!(report.new_key_id, new_key.id());
    assert_eq!(report.resealed, 13);
    assert_eq!(report.batches, 4);
    assert_eq!(vault.current_key_id(), new_key.id());
    assert!(
        store
            .sealed_secrets_not_under_key(new_key.id(), 1000)
            .await
            .expect("scan")
            .is_empty(),
        "every row carries the new key id"
    );

    for (tenant, name, value) in &expected {
        let row = store.sealed_secret(tenant, name).await.expect("row");
        assert_eq!(row.key_id, new_key.id());
        for reader in [&vault, &other_node] {
            assert_eq!(
                reader
                    .reveal(tenant, name)
                    .await
                    .expect("reveal")
                    .expose_secret(),
                value.as_str()
            );
        }
    }

    // A vault with only the old key cannot read rotated rows and says why.
    let stale = Vault::new(store.clone(), Keyring::new(old_key));
    assert!(matches!(
        stale.reveal(&acme, "secret-01").await,
        Err(VaultError::UnknownKey { .. })
    ));

    // Rotating again is a no-op when everything is already under the key.
    let again = vault.rotate_master(new_key).await.expect("rerun");
    assert_eq!((again.resealed, again.batches), (0, 0));
}

async fn an_unknown_key_id_stops_rotation_with_a_clear_error<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let lost_key = MasterKey::generate();
    Vault::new(store.clone(), Keyring::new(lost_key))
        .put(
            &acme,
            "orphan",
            "hubspot",
            &secret("sealed-under-a-lost-key"),
        )
        .await
        .expect("put");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    match vault.rotate_master(MasterKey::generate()).await {
        Err(VaultError::UnknownKey { name, .. }) => assert_eq!(name, "orphan"),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
}

async fn api_keys_authenticate_until_revoked<S: Store>(store: &S) {
    let acme = tenant(store, "acme").await;
    let issued = issue_api_key(store, &acme).await.expect("issue");
    let full = issued.secret.expose_secret().to_owned();
    assert!(full.starts_with(&issued.key.prefix));
    assert!(!format!("{issued:?}").contains(&full));

    let authed = authenticate(store, &full)
        .await
        .expect("auth")
        .expect("valid");
    assert_eq!(authed.tenant_id, acme);

    let mut wrong = full.clone();
    let last = wrong.pop().expect("non-empty");
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(authenticate(store, &wrong).await.expect("auth"), None);
    assert_eq!(authenticate(store, "garbage").await.expect("auth"), None);
    assert_eq!(authenticate(store, "").await.expect("auth"), None);

    // Only the hash is stored.
    let credential = store
        .api_key_by_prefix(&issued.key.prefix)
        .await
        .expect("lookup")
        .expect("present");
    assert!(
        !credential
            .key_hash
            .windows(8)
            .any(|w| full.as_bytes().windows(8).any(|f| f == w))
    );

    store
        .revoke_api_key(&acme, &issued.key.id)
        .await
        .expect("revoke");
    assert_eq!(authenticate(store, &full).await.expect("auth"), None);
}

#[tokio::test]
async fn the_sqlite_file_contains_no_plaintext_secret() {
    let db = store_harness::sqlite().await;
    let store = &db.store;
    let acme = tenant(store, "acme").await;
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    for i in 0..20 {
        vault
            .put(
                &acme,
                &format!("token-{i}"),
                "hubspot",
                &secret(HUBSPOT_TOKEN),
            )
            .await
            .expect("put");
    }
    vault
        .rotate_master(MasterKey::generate())
        .await
        .expect("rotate");
    store.close().await;

    let path = db.sqlite_path.as_ref().expect("sqlite path");
    let (mut scanned, mut found_name) = (0, false);
    // The WAL and shared-memory files may hold pages not yet checkpointed into the main file.
    for suffix in ["", "-wal", "-shm"] {
        let file = path.with_file_name(format!(
            "{}{suffix}",
            path.file_name()
                .and_then(|n| n.to_str())
                .expect("file name")
        ));
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        scanned += bytes.len();
        for needle in [HUBSPOT_TOKEN, "plaintext-canary", "4b7f0c8e"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} contains {needle:?}",
                file.display()
            );
        }
        // Sanity check that the scan reads real content: names are stored in clear.
        found_name |= bytes.windows(8).any(|w| w == b"token-19");
    }
    assert!(
        scanned > 0 && found_name,
        "the scan saw no database content"
    );
}

//! The connector health check against local vendor mocks: one row per configured connector of
//! every tenant, failures reported without secrets, one broken connector not hiding the others.

use std::time::Duration;

use callbridge::store::{ConnectorSpec, NewTenant, SqlStore, Store, TenantId};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge::tools::doctor::{check_all, format_table};
use callbridge::tools::policy::{HttpPolicy, PolicyConfig};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CALCOM_ME: &str = include_str!("../fixtures/vendors/calcom/me.json");

async fn tenant(store: &SqlStore, id: &str) -> TenantId {
    let id = TenantId::parse(id).expect("id");
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: id.to_string(),
            time_zone: "Europe/Berlin".into(),
        })
        .await
        .expect("tenant");
    id
}

async fn configure(
    store: &SqlStore,
    vault: &Vault<SqlStore>,
    tenant: &TenantId,
    vendor: &str,
    base_url: &str,
    secret: Option<&str>,
) {
    let secret_name = match secret {
        Some(secret) => {
            let name = format!("{vendor}-key");
            vault
                .put(
                    tenant,
                    &name,
                    vendor,
                    &SecretString::from(secret.to_owned()),
                )
                .await
                .expect("secret");
            Some(name)
        }
        None => None,
    };
    store
        .put_connector(
            tenant,
            &ConnectorSpec {
                vendor: vendor.into(),
                base_url: Some(base_url.into()),
                secret_name,
            },
        )
        .await
        .expect("connector");
}

#[tokio::test]
async fn every_connector_of_every_tenant_gets_a_row() {
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let calcom = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/me"))
        .and(header("authorization", "Bearer cal_live_good_key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::from_str::<serde_json::Value>(CALCOM_ME).expect("json")),
        )
        .mount(&calcom)
        .await;
    let hubspot = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "status": "error", "message": "Authentication credentials not found."
        })))
        .mount(&hubspot)
        .await;

    let dental = tenant(&store, "acme-dental").await;
    let shop = tenant(&store, "bobs-shop").await;
    configure(
        &store,
        &vault,
        &dental,
        "calcom",
        &calcom.uri(),
        Some(r#"{"api_key": "cal_live_good_key", "event_type_id": 7}"#),
    )
    .await;
    configure(
        &store,
        &vault,
        &dental,
        "hubspot",
        &hubspot.uri(),
        Some("pat-na1-revoked-token-value"),
    )
    .await;
    configure(
        &store,
        &vault,
        &shop,
        "shopify",
        "https://bobs.example.test/",
        None,
    )
    .await;

    let policy = HttpPolicy::new(PolicyConfig::default()).expect("policy");
    let rows = check_all(&store, Some(&vault), &policy, Duration::from_secs(5))
        .await
        .expect("rows");
    let summary: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|row| (row.tenant.as_str(), row.vendor.as_str(), row.is_ok()))
        .collect();
    assert_eq!(
        summary,
        [
            ("acme-dental", "calcom", true),
            ("acme-dental", "hubspot", false),
            ("bobs-shop", "shopify", false),
        ]
    );
    assert_eq!(
        rows[1].outcome,
        Err("vendor authorisation failed: account: vendor refused the credentials".into())
    );
    assert_eq!(
        rows[2].outcome,
        Err("the shopify connector has no credentials (no secret configured)".into())
    );
    let table = format_table(&rows);
    assert_eq!(table.lines().count(), 4, "{table}");
    for secret in ["cal_live_good_key", "pat-na1-revoked-token-value"] {
        assert!(!table.contains(secret), "{table}");
    }
}

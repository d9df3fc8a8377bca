//! The connector health check against local vendor mocks: one row per configured connector of
//! every tenant, failures reported without secrets, one broken connector not hiding the others.

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig};
use callbridge::egress::EgressPolicy;
use callbridge::store::{ConnectorSpec, NewTenant, SqlStore, Store, TenantId};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge::tools::doctor::{check_all, format_table};
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

    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
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

#[tokio::test]
async fn a_service_account_that_cannot_mint_a_token_is_reported() {
    const KEY_FILE: &str = include_str!("../fixtures/connectors/test_only_service_account.json");
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Invalid JWT Signature."
        })))
        .mount(&google)
        .await;
    let key_file = KEY_FILE.replace("TOKEN_URI_PLACEHOLDER", &format!("{}/token", google.uri()));
    // The operator stores the downloaded key file, adding the calendar to use.
    let mut refused: serde_json::Value = serde_json::from_str(&key_file).expect("json");
    refused["calendar_id"] = json!("team@group.calendar.google.com");
    let refused_tenant = tenant(&store, "refused-key").await;
    configure(
        &store,
        &vault,
        &refused_tenant,
        "google_calendar",
        &format!("{}/calendar/v3/", google.uri()),
        Some(&refused.to_string()),
    )
    .await;
    // A key file whose private key was damaged in copying.
    let mut damaged = refused.clone();
    damaged["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nMIIEdamaged\n-----END PRIVATE KEY-----\n");
    let damaged_tenant = tenant(&store, "damaged-key").await;
    configure(
        &store,
        &vault,
        &damaged_tenant,
        "google_calendar",
        &format!("{}/calendar/v3/", google.uri()),
        Some(&damaged.to_string()),
    )
    .await;

    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let rows = check_all(&store, Some(&vault), &policy, Duration::from_secs(5))
        .await
        .expect("rows");
    let outcome = |tenant: &str| {
        rows.iter()
            .find(|row| row.tenant.as_str() == tenant)
            .map(|row| row.outcome.clone())
            .expect("a row")
    };
    assert_eq!(
        outcome("damaged-key"),
        Err(
            "the google_calendar credentials are invalid: service account private_key is not a \
             usable RSA key: InvalidEncoding"
                .into()
        )
    );
    let refused_message = outcome("refused-key").expect_err("refused");
    assert!(
        refused_message.starts_with(
            "vendor authorisation failed: the token request of service \
             account booking-bot@callbridge-test.iam.gserviceaccount.com was refused \
             (invalid_grant: Invalid JWT Signature.)"
        ),
        "{refused_message}"
    );
    let table = format_table(&rows);
    for secret in ["MII", "BEGIN PRIVATE KEY"] {
        assert!(!table.contains(secret), "{table}");
    }
    let requests = google.received_requests().await.unwrap_or_default();
    assert_eq!(
        requests.len(),
        1,
        "only the refused tenant reached the token endpoint"
    );
}

/// `doctor` also checks agents: an agent written before the rules (or whose provider key, prompt
/// or connector went away since) is reported with every reason, a sound one is `ok`.
#[tokio::test]
async fn agents_that_cannot_answer_a_call_are_reported() {
    use callbridge::store::{AgentSpec, E164};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cb.db").display());
    let core = callbridge::app::AppCore::open(&url, None, EgressPolicy::strict())
        .await
        .unwrap();
    let store = core.store.clone();
    let acme = tenant(&store, "acme").await;
    let spec =
        |name: &str, provider: &str, model: &str, voice: &str, prompt: &str, tools: &[&str]| {
            AgentSpec {
                name: name.into(),
                provider: provider.into(),
                model: model.into(),
                voice: voice.into(),
                prompt_template: prompt.into(),
                enabled_tools: tools.iter().map(|t| t.to_string()).collect(),
                max_duration_s: 600,
                silence_timeout_s: 30,
                recording: false,
                voicemail: None,
            }
        };
    store
        .put_prompt(&acme, "front", "Hello {{caller}}")
        .await
        .unwrap();
    store
        .create_agent(
            &acme,
            &spec(
                "good",
                "openai",
                "gpt-realtime",
                "marin",
                "front",
                &["get_current_time"],
            ),
            &[E164::parse("+14155550100").unwrap()],
        )
        .await
        .unwrap();
    store
        .create_agent(
            &acme,
            &spec(
                "grok",
                "xai",
                "grok-voice-think-fast-1.0",
                "ara",
                "gone",
                &["book_appointment"],
            ),
            &[],
        )
        .await
        .unwrap();
    store
        .create_agent(
            &acme,
            &spec(
                "vader",
                "openai",
                "gpt-realtime",
                "darth-vader",
                "default",
                &[],
            ),
            &[],
        )
        .await
        .unwrap();
    // `transfer_call` enabled: a problem until the agent has a destination.
    let desk = store
        .create_agent(
            &acme,
            &spec(
                "desk",
                "openai",
                "gpt-realtime",
                "marin",
                "default",
                &["transfer_call"],
            ),
            &[],
        )
        .await
        .unwrap();
    let runtime = core.tool_runtime(Duration::from_secs(2));
    let rows = callbridge::tools::doctor::check_agents(&runtime, &["openai"])
        .await
        .unwrap();
    let desk_row = rows.iter().find(|r| r.agent == "desk").unwrap();
    assert!(
        desk_row
            .problems
            .join("\n")
            .contains("transfer_call: the agent has no transfer destinations"),
        "{rows:?}"
    );
    store
        .put_transfer_destinations(
            &acme,
            &desk.id,
            &[callbridge::store::TransferDestination {
                name: "front-desk".into(),
                target: "+15551230000".into(),
                description: "Reception".into(),
                caller_id: callbridge::store::CallerIdPolicy::Agent,
                hours: Vec::new(),
            }],
        )
        .await
        .unwrap();
    let rows = callbridge::tools::doctor::check_agents(&runtime, &["openai"])
        .await
        .unwrap();
    let row = |name: &str| rows.iter().find(|r| r.agent == name).unwrap();
    assert!(row("good").problems.is_empty(), "{rows:?}");
    assert!(
        row("desk").problems.is_empty(),
        "with a destination: {rows:?}"
    );
    let grok = row("grok").problems.join("\n");
    assert!(
        grok.contains("provider \"xai\" is not configured"),
        "{grok}"
    );
    assert!(grok.contains("prompt \"gone\" does not exist"), "{grok}");
    assert!(grok.contains("tool book_appointment"), "{grok}");
    assert!(
        row("vader").problems.join("\n").contains("voice"),
        "{rows:?}"
    );
    let text = callbridge::tools::doctor::format_agents(&rows);
    assert!(text.contains("acme/good  ok"), "{text}");
    assert!(text.contains("acme/vader  error"), "{text}");
}

/// Support desks: a desk whose secret lacks a field is reported with the field's name (its tools
/// are not offered), a working one is healthy; no secret value reaches the report.
#[tokio::test]
async fn support_desks_with_missing_credentials_are_reported() {
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let freshdesk = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", "Basic ZmQtdGVzdC1rZXk6WA=="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&freshdesk)
        .await;
    let desk = tenant(&store, "acme-support").await;
    configure(
        &store,
        &vault,
        &desk,
        "freshdesk",
        &freshdesk.uri(),
        Some(r#"{"domain": "acme", "api_key": "fd-test-key"}"#),
    )
    .await;
    configure(
        &store,
        &vault,
        &desk,
        "zendesk",
        "https://acme.zendesk.com/",
        Some(r#"{"subdomain": "acme", "api_token": "zd-secret-token-value"}"#),
    )
    .await;
    configure(
        &store,
        &vault,
        &desk,
        "intercom",
        "https://api.intercom.io/",
        Some(r#"{"access_token": "ic-secret-token-value"}"#),
    )
    .await;
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let rows = check_all(&store, Some(&vault), &policy, Duration::from_secs(5))
        .await
        .expect("rows");
    let outcome = |vendor: &str| {
        rows.iter()
            .find(|row| row.vendor == vendor)
            .map(|row| row.outcome.clone())
            .expect("a row per connector")
    };
    assert_eq!(outcome("freshdesk"), Ok(()));
    assert_eq!(
        outcome("zendesk"),
        Err("the zendesk credentials are incomplete: missing email".into())
    );
    assert_eq!(
        outcome("intercom"),
        Err("the intercom credentials are incomplete: missing ticket_type_id".into())
    );
    let table = format_table(&rows);
    for secret in [
        "fd-test-key",
        "zd-secret-token-value",
        "ic-secret-token-value",
    ] {
        assert!(!table.contains(secret), "{table}");
    }
}

/// Drive and Docs exports: `doctor` reads the folder's and the template's metadata (a harmless
/// read, per the Drive v3 discovery document) and says precisely what is wrong: a template that
/// is missing, a template that is not a document, a folder id that is a file.
#[tokio::test]
async fn drive_and_docs_exports_read_their_folder_and_template() {
    use wiremock::matchers::path_regex;
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.doctor", "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(&google)
        .await;
    for (id, mime) in [
        ("folder-1", "application/vnd.google-apps.folder"),
        ("a-sheet", "application/vnd.google-apps.spreadsheet"),
        ("tmpl-1", "application/vnd.google-apps.document"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/drive/v3/files/{id}")))
            .and(header("authorization", "Bearer ya29.doctor"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "kind": "drive#file", "id": id, "name": id, "mimeType": mime
            })))
            .mount(&google)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex("^/drive/v3/files/.+$"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": {"code": 404, "message": "File not found.", "status": "NOT_FOUND"}
        })))
        .with_priority(10)
        .mount(&google)
        .await;
    let grant = |settings: serde_json::Value| {
        let mut secret = settings;
        secret["client_id"] = json!("c");
        secret["client_secret"] = json!("s");
        secret["refresh_token"] = json!("r");
        secret["token_uri"] = json!(format!("{}/token", google.uri()));
        secret.to_string()
    };
    let base = format!("{}/", google.uri());
    let good = tenant(&store, "good").await;
    let broken = tenant(&store, "broken").await;
    let drive_ok = grant(json!({"folder_id": "folder-1"}));
    let docs_ok = grant(json!({"template_id": "tmpl-1", "folder_id": "folder-1"}));
    let drive_file = grant(json!({"folder_id": "a-sheet"}));
    let docs_missing = grant(json!({"template_id": "gone-1"}));
    for (tenant, vendor, secret) in [
        (&good, "google_drive", &drive_ok),
        (&good, "google_docs", &docs_ok),
        (&broken, "google_drive", &drive_file),
        (&broken, "google_docs", &docs_missing),
    ] {
        configure(&store, &vault, tenant, vendor, &base, Some(secret)).await;
    }
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let rows = check_all(&store, Some(&vault), &policy, Duration::from_secs(5))
        .await
        .expect("rows");
    let outcome = |tenant: &str, vendor: &str| {
        rows.iter()
            .find(|r| r.tenant.as_str() == tenant && r.vendor == vendor)
            .map(|r| r.outcome.clone())
            .expect("a row")
    };
    assert_eq!(outcome("good", "google_drive"), Ok(()));
    assert_eq!(outcome("good", "google_docs"), Ok(()));
    assert_eq!(
        outcome("broken", "google_drive"),
        Err("connector configuration: Drive file a-sheet is a application/vnd.google-apps.spreadsheet, not a folder".into())
    );
    assert_eq!(
        outcome("broken", "google_docs"),
        Err(
            "not found: Docs template gone-1 (missing, or not shared with the connected account)"
                .into()
        )
    );
    let requests = google.received_requests().await.unwrap_or_default();
    assert!(
        requests
            .iter()
            .all(|r| r.url.path() == "/token" || r.method.as_str() == "GET"),
        "the doctor only reads"
    );
    callbridge_testkit::contract::Contract::load("google-drive", &["drive.v3.swagger2.json"])
        .ignoring("/token")
        .assert_valid(&google)
        .await;
}

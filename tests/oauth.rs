//! The OAuth gateway end to end against the testkit's authorization server on 127.0.0.1 (PKCE
//! S256 enforced, exact redirect URI, single-use codes, expiring tokens, refresh-token rotation,
//! revocation): start → consent → callback → sealed tokens → the real HubSpot connector sends the
//! access token → expiry → refresh with rotation → revoke; and every way the flow must refuse.
//! Time moves by a manual clock on both sides; nothing sleeps to wait for time.

#[allow(unused_macros)]
mod store_harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callbridge::campaign::clock::{Clock, ManualClock};
use callbridge::connectors::http::RequestContext;
use callbridge::connectors::kit::{Capability, OAuthSpec};
use callbridge::egress::EgressPolicy;
use callbridge::oauth::{AppInput, OAuthError, OAuthService, OAuthSettings};
use callbridge::store::{
    AppScope, ConnectionStatus, ConnectorConfig, ConnectorSpec, NewTenant, SqlStore, StateRefusal,
    Store, StoredOAuthApp, TenantId, WebhookSettingsSpec,
};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge::tools::resolver::build_connector_with;
use callbridge_testkit::fake_oauth::{FakeOAuth, FakeOAuthConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const PUBLIC_URL: &str = "https://bridge.example";
const REDIRECT: &str = "https://bridge.example/oauth/callback";

struct World {
    db: store_harness::TestDb,
    store: SqlStore,
    vault: Vault<SqlStore>,
    fake: FakeOAuth,
    clock: Arc<ManualClock>,
    acme: TenantId,
    other: TenantId,
}

fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("tenant id")
}

async fn world(config: FakeOAuthConfig) -> World {
    let db = store_harness::sqlite().await;
    let store = db.store.clone();
    for (id, name) in [("acme", "Acme Dental"), ("other", "Other Co")] {
        store
            .create_tenant(&NewTenant {
                id: tid(id),
                name: name.into(),
                time_zone: "Europe/Paris".into(),
            })
            .await
            .expect("tenant");
    }
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let fake = FakeOAuth::start(config).await;
    World {
        db,
        store,
        vault,
        fake,
        clock: Arc::new(ManualClock::new(
            chrono::DateTime::parse_from_rfc3339("2026-12-03T09:00:00Z")
                .expect("time")
                .with_timezone(&chrono::Utc),
        )),
        acme: tid("acme"),
        other: tid("other"),
    }
}

impl World {
    fn settings(&self, vendors: &[(&str, bool)]) -> OAuthSettings {
        let mut env = HashMap::new();
        for (vendor, override_token_url) in vendors {
            let prefix = format!("CALLBRIDGE_OAUTH_{}_", vendor.to_ascii_uppercase());
            env.insert(format!("{prefix}CLIENT_ID"), "client-abc".to_owned());
            env.insert(
                format!("{prefix}CLIENT_SECRET"),
                "client-secret-xyz-0123456789".to_owned(),
            );
            env.insert(
                format!("{prefix}AUTHORIZE_URL"),
                self.fake.url("/authorize"),
            );
            if *override_token_url {
                env.insert(format!("{prefix}TOKEN_URL"), self.fake.url("/token"));
            }
            env.insert(format!("{prefix}REVOKE_URL"), self.fake.url("/revoke"));
        }
        let names: Vec<&str> = vendors.iter().map(|(v, _)| *v).collect();
        OAuthSettings::from_lookup(Some(PUBLIC_URL.into()), &names, |k| env.get(k).cloned())
            .expect("settings")
    }

    /// One bridge node.
    fn node(&self) -> OAuthService {
        OAuthService::with_clock(
            self.store.clone(),
            self.vault.clone(),
            self.settings(&[("hubspot", true), ("google_calendar", true)]),
            EgressPolicy::allow_loopback(),
            self.clock.clone() as Arc<dyn Clock>,
        )
        .expect("service")
    }

    /// Moves both clocks.
    fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
        self.fake.advance(seconds);
    }

    fn hubspot_config(&self, tenant: &TenantId) -> ConnectorConfig {
        ConnectorConfig {
            tenant_id: tenant.clone(),
            spec: ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: Some(self.fake.url("")),
                secret_name: None,
            },
            updated_at: jiff::Timestamp::now(),
        }
    }

    /// Builds the real HubSpot connector for `tenant` and makes its read (the access token goes
    /// to the fake's protected resource).
    async fn hubspot_read(&self, svc: &OAuthService, tenant: &TenantId) -> Result<(), String> {
        let policy = callbridge_testkit::loopback_policy();
        let built = build_connector_with(
            &self.hubspot_config(tenant),
            Some(&self.vault),
            &policy,
            Some(svc),
        )
        .await
        .map_err(|e| e.to_string())?;
        assert!(built.crm.is_some());
        let ctx = RequestContext::new(
            tenant.as_str(),
            "call-1",
            tokio::time::Instant::now() + Duration::from_secs(10),
        );
        built.health_check(&ctx).await.map_err(|e| e.to_string())
    }

    /// start → consent at the fake → the callback's page.
    async fn connect(&self, svc: &OAuthService, vendor: &str) -> callbridge::oauth::CallbackPage {
        let started = svc.start(&self.acme, vendor, None).await.expect("start");
        let query = self.fake.consent(&started.authorization_url).await;
        svc.callback(&query).await
    }
}

#[tokio::test]
async fn connect_use_refresh_rotate_and_disconnect() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();

    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    let url = reqwest::Url::parse(&started.authorization_url).expect("url");
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["redirect_uri"], REDIRECT);
    assert_eq!(params["response_type"], "code");
    assert!(params["scope"].contains("crm.objects.contacts.read"));
    assert!(params["state"].len() >= 43, "state has 256 bits");
    assert!(!started.authorization_url.contains("client-secret"));

    let query = w.fake.consent(&started.authorization_url).await;
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("HubSpot is connected to Acme Dental"),
        "{}",
        page.html
    );

    // The connection as the API shows it, and no token anywhere in it or in the store's bytes.
    let connection = svc
        .connection(&w.acme, "hubspot")
        .await
        .expect("connection");
    assert_eq!(connection.status, ConnectionStatus::Active);
    assert!(connection.scopes.contains("crm.objects.contacts.write"));
    assert!(connection.expires_at_ms.is_some());
    let shown = format!("{connection:?} {:?}", svc.connections(&w.acme).await);
    let db_bytes =
        std::fs::read(w.db.sqlite_path.as_ref().expect("sqlite file")).unwrap_or_default();
    let db_text = String::from_utf8_lossy(&db_bytes);
    for token in w
        .fake
        .issued_access_tokens()
        .into_iter()
        .chain(w.fake.issued_refresh_tokens())
    {
        assert!(!shown.contains(&token), "token shown");
        assert!(!page.html.contains(&token), "token on the page");
        assert!(!db_text.contains(&token), "token stored in clear");
    }

    // A tool call through the real HubSpot connector sends the access token.
    w.hubspot_read(&svc, &w.acme).await.expect("read");
    let first_access = w.fake.issued_access_tokens();
    assert_eq!(w.fake.accepted_tokens(), first_access);
    assert_eq!(w.fake.refresh_requests(), 0);

    // The token expires: the next call refreshes first, once, and the refresh token rotates.
    let first_refresh = w.fake.issued_refresh_tokens();
    w.advance(3_600);
    w.hubspot_read(&svc, &w.acme)
        .await
        .expect("read after expiry");
    assert_eq!(w.fake.refresh_requests(), 1);
    assert!(
        !w.fake.refresh_token_live(&first_refresh[0]),
        "old refresh token retired"
    );
    let accepted = w.fake.accepted_tokens();
    assert_eq!(accepted.len(), 2);
    assert_ne!(accepted[0], accepted[1]);
    let after = svc
        .connection(&w.acme, "hubspot")
        .await
        .expect("connection");
    assert!(after.last_refresh_at_ms.is_some());

    // The next expiry refreshes with the rotated refresh token (the stored one was replaced).
    w.advance(3_600);
    w.hubspot_read(&svc, &w.acme)
        .await
        .expect("read after second expiry");
    assert_eq!(w.fake.refresh_requests(), 2);

    // Another tenant sees nothing of it.
    assert!(matches!(
        svc.connection(&w.other, "hubspot").await,
        Err(OAuthError::NotConnected { .. })
    ));
    assert!(matches!(
        svc.disconnect(&w.other, "hubspot").await,
        Err(OAuthError::NotConnected { .. })
    ));
    assert!(svc.connections(&w.other).await.expect("list").is_empty());

    // Disconnect revokes at the vendor, then deletes.
    let live: Vec<String> = w
        .fake
        .issued_refresh_tokens()
        .into_iter()
        .filter(|t| w.fake.refresh_token_live(t))
        .collect();
    assert_eq!(live.len(), 1);
    let done = svc
        .disconnect(&w.acme, "hubspot")
        .await
        .expect("disconnect");
    assert!(done.revoked);
    assert_eq!(w.fake.revocations(), 1);
    assert!(!w.fake.refresh_token_live(&live[0]));
    assert!(matches!(
        svc.connection(&w.acme, "hubspot").await,
        Err(OAuthError::NotConnected { .. })
    ));
    assert!(
        w.vault
            .list(&w.acme)
            .await
            .expect("secrets")
            .iter()
            .all(|s| s.name != "oauth-hubspot"),
        "sealed tokens deleted"
    );
    // Without a connection and without a secret, HubSpot is not built (its tools are withdrawn).
    assert!(w.hubspot_read(&svc, &w.acme).await.is_err());
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();
    assert_eq!(w.connect(&svc, "hubspot").await.status, 200);
    // The vendor's clock runs ahead: it considers the token expired while we do not.
    w.fake.advance(3_600);
    w.hubspot_read(&svc, &w.acme).await.expect("retried read");
    assert_eq!(w.fake.refresh_requests(), 1);
    assert_eq!(w.fake.accepted_tokens().len(), 1);
}

#[tokio::test]
async fn state_is_single_use_bound_and_expiring() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();

    // Forged state.
    let mut forged = HashMap::new();
    forged.insert("state".to_owned(), "x".repeat(43));
    forged.insert("code".to_owned(), "whatever".to_owned());
    let page = svc.callback(&forged).await;
    assert_eq!(page.status, 400);
    assert!(
        page.html.contains("not issued by this service"),
        "{}",
        page.html
    );

    // Missing state.
    let page = svc.callback(&HashMap::new()).await;
    assert_eq!(page.status, 400);

    // Replayed state: the second use is refused and changes nothing.
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    let query = w.fake.consent(&started.authorization_url).await;
    assert_eq!(svc.callback(&query).await.status, 200);
    let tokens_before = w.fake.token_requests();
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("already used"), "{}", page.html);
    assert_eq!(
        w.fake.token_requests(),
        tokens_before,
        "no exchange for a used state"
    );

    // Expired state (11 minutes later).
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    let query = w.fake.consent(&started.authorization_url).await;
    w.clock.advance(chrono::Duration::minutes(11));
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("expired"), "{}", page.html);

    // The store's claim is the single-use point: two claims of one state, one winner.
    let raw = w
        .store
        .claim_oauth_state("0".repeat(64).as_str(), 0)
        .await
        .expect("claim");
    assert!(matches!(raw, Err(StateRefusal::Unknown)));
}

#[tokio::test]
async fn wrong_verifier_replayed_code_and_access_denied_store_nothing() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();

    // Wrong verifier: flow A's state (and so A's verifier) with flow B's code.
    let a = svc.start(&w.acme, "hubspot", None).await.expect("start a");
    let b = svc.start(&w.acme, "hubspot", None).await.expect("start b");
    let qa = w.fake.consent(&a.authorization_url).await;
    let qb = w.fake.consent(&b.authorization_url).await;
    let mut mixed = qa.clone();
    mixed.insert("code".into(), qb["code"].clone());
    let page = svc.callback(&mixed).await;
    assert_eq!(page.status, 502);
    assert!(page.html.contains("invalid_grant"), "{}", page.html);
    assert!(svc.connections(&w.acme).await.expect("list").is_empty());

    // Replayed code: B's code was spent above (codes are single-use even when refused).
    let page = svc.callback(&qb).await;
    assert_eq!(page.status, 502);
    assert!(page.html.contains("invalid_grant"), "{}", page.html);
    assert!(svc.connections(&w.acme).await.expect("list").is_empty());

    // The business declines at the vendor.
    w.fake.deny_consent(true);
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    let query = w.fake.consent(&started.authorization_url).await;
    assert_eq!(query["error"], "access_denied");
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("declined"), "{}", page.html);
    assert!(svc.connections(&w.acme).await.expect("list").is_empty());
    assert!(w.vault.list(&w.acme).await.expect("secrets").is_empty());
}

#[tokio::test]
async fn two_nodes_refresh_once() {
    let mut config = FakeOAuthConfig::new(REDIRECT);
    config.refresh_delay = Duration::from_millis(300);
    let w = world(config).await;
    let node_a = w.node();
    let node_b = w.node();
    assert_eq!(w.connect(&node_a, "hubspot").await.status, 200);
    w.advance(3_600);
    let (a, b) = tokio::join!(
        node_a.access_token(&w.acme, "hubspot", None),
        node_b.access_token(&w.acme, "hubspot", None)
    );
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    assert_eq!(
        w.fake.refresh_requests(),
        1,
        "one refresh reached the server"
    );
    assert_eq!(a.expose_secret(), b.expose_secret());
    // And the one stored refresh token is the live, rotated one.
    w.advance(3_600);
    node_b
        .access_token(&w.acme, "hubspot", None)
        .await
        .expect("next refresh with the rotated token");
    assert_eq!(w.fake.refresh_requests(), 2);
}

#[tokio::test]
async fn invalid_grant_needs_reconnect_withdraws_and_notifies() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();
    w.vault
        .put(
            &w.acme,
            "hook",
            "webhook",
            &SecretString::from("whsec_0123456789abcdef0123456789".to_owned()),
        )
        .await
        .expect("webhook secret");
    w.store
        .put_webhook_settings(
            &w.acme,
            &WebhookSettingsSpec {
                url: "https://hooks.acme.example/cb".into(),
                secret_name: "hook".into(),
                enabled: true,
            },
        )
        .await
        .expect("webhook settings");
    assert_eq!(w.connect(&svc, "hubspot").await.status, 200);
    w.fake.revoke_all();
    w.advance(3_600);
    let err = w
        .hubspot_read(&svc, &w.acme)
        .await
        .expect_err("refused grant");
    assert!(err.contains("connected again"), "{err}");
    let connection = svc
        .connection(&w.acme, "hubspot")
        .await
        .expect("connection");
    assert_eq!(connection.status, ConnectionStatus::NeedsReconnect);
    // The next build withdraws the tools, with the reason doctor shows.
    let policy = callbridge_testkit::loopback_policy();
    let err = build_connector_with(
        &w.hubspot_config(&w.acme),
        Some(&w.vault),
        &policy,
        Some(&svc),
    )
    .await
    .err()
    .expect("not built");
    assert!(err.to_string().contains("must be connected again"), "{err}");
    // One webhook event, queued once.
    let _ = w.hubspot_read(&svc, &w.acme).await;
    let events = w.store.list_outbox(&w.acme, 10).await.expect("outbox");
    let reconnects: Vec<_> = events
        .iter()
        .filter(|m| m.event_type == "connection.needs_reconnect")
        .collect();
    assert_eq!(reconnects.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&reconnects[0].payload).expect("json");
    assert_eq!(payload["vendor"], "hubspot");
    // Connecting again makes it active.
    assert_eq!(w.connect(&svc, "hubspot").await.status, 200);
    w.hubspot_read(&svc, &w.acme)
        .await
        .expect("read after reconnect");
}

static ZOHO: OAuthSpec = OAuthSpec {
    authorize_url: "https://accounts.zoho.com/oauth/v2/auth",
    // Replaced by the data centre's accounts server named in the callback.
    token_url: "https://accounts.zoho.com/oauth/v2/token",
    revoke_url: None,
    scopes: &[(Capability::Crm, &["ZohoCRM.modules.ALL"])],
    pkce: true,
    extra_authorize_params: &[("access_type", "offline")],
    api_base_fields: &["api_domain"],
    client_secret_in_body: true,
    account_fields: &[],
    accounts_server_param: Some("accounts-server"),
    ok_envelope: false,
    accounts_server_hosts: &["127.0.0.1"],
};

static SALESFORCE: OAuthSpec = OAuthSpec {
    authorize_url: "https://login.salesforce.com/services/oauth2/authorize",
    token_url: "https://login.salesforce.com/services/oauth2/token",
    revoke_url: None,
    scopes: &[(Capability::Crm, &["api", "refresh_token"])],
    pkce: true,
    extra_authorize_params: &[],
    api_base_fields: &["instance_url"],
    client_secret_in_body: true,
    account_fields: &["id"],
    accounts_server_param: None,
    ok_envelope: false,
    accounts_server_hosts: &[],
};

#[tokio::test]
async fn zoho_data_centre_switch() {
    // A test-only vendor (`zoho_lab`): the registry's `zoho_crm` allows only Zoho's accounts
    // domains, and this fake accounts server is on 127.0.0.1.
    let mut config = FakeOAuthConfig::new(REDIRECT);
    let w0 = world(config.clone()).await;
    // The fake is the EU accounts server: its origin comes back in the callback.
    config
        .extra_redirect_params
        .push(("accounts-server".into(), w0.fake.url("")));
    config
        .extra_token_fields
        .insert("api_domain".into(), json!(w0.fake.url("")));
    w0.fake.configure(|c| *c = config.clone());
    let w = w0;
    let svc = OAuthService::with_clock(
        w.store.clone(),
        w.vault.clone(),
        // No token URL override: only the accounts server can lead the exchange to the fake.
        w.settings(&[("zoho_lab", false)]),
        EgressPolicy::allow_loopback(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service")
    .with_vendor("zoho_lab", "Zoho CRM", &[Capability::Crm], ZOHO);
    let page = w.connect(&svc, "zoho_lab").await;
    assert_eq!(page.status, 200, "{}", page.html);
    let connection = svc
        .connection(&w.acme, "zoho_lab")
        .await
        .expect("connection");
    let base = OAuthService::api_base(&connection, &["api_domain"]).expect("api domain");
    assert!(base.starts_with(&w.fake.url("")), "{base}");
    assert!(connection.extra.contains("accounts_server"));
    // Refresh goes to the same data centre.
    w.advance(3_600);
    svc.access_token(&w.acme, "zoho_lab", None)
        .await
        .expect("refresh at the accounts server");
    assert_eq!(w.fake.refresh_requests(), 1);

    // A callback naming a host that is not a Zoho accounts server is refused.
    let started = svc.start(&w.acme, "zoho_lab", None).await.expect("start");
    let mut query = w.fake.consent(&started.authorization_url).await;
    query.insert("accounts-server".into(), "https://evil.example".into());
    let before = w.fake.token_requests();
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 502, "{}", page.html);
    assert!(page.html.contains("accounts server"), "{}", page.html);
    assert_eq!(w.fake.token_requests(), before);
}

#[tokio::test]
async fn salesforce_instance_url_becomes_the_api_base() {
    let mut config = FakeOAuthConfig::new(REDIRECT);
    config.extra_token_fields.insert(
        "instance_url".into(),
        json!("https://acme.my.salesforce.com"),
    );
    config.extra_token_fields.insert(
        "id".into(),
        json!("https://login.salesforce.com/id/00Dxx0000001gEREAY/005xx000001SwiUAAS"),
    );
    let w = world(config).await;
    let svc = OAuthService::with_clock(
        w.store.clone(),
        w.vault.clone(),
        w.settings(&[("salesforce", true)]),
        EgressPolicy::allow_loopback(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service")
    .with_vendor("salesforce", "Salesforce", &[Capability::Crm], SALESFORCE);
    let page = w.connect(&svc, "salesforce").await;
    assert_eq!(page.status, 200, "{}", page.html);
    let connection = svc
        .connection(&w.acme, "salesforce")
        .await
        .expect("connection");
    assert_eq!(
        OAuthService::api_base(&connection, &["instance_url"]).as_deref(),
        Some("https://acme.my.salesforce.com/")
    );
    assert_eq!(
        connection.account.as_deref(),
        Some("https://login.salesforce.com/id/00Dxx0000001gEREAY/005xx000001SwiUAAS")
    );
}

#[tokio::test]
async fn unconfigured_or_non_oauth_vendors_are_refused_precisely() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();
    let err = svc
        .start(&w.acme, "calendly", None)
        .await
        .expect_err("no app");
    assert!(
        err.to_string()
            .contains("CALLBRIDGE_OAUTH_<VENDOR>_CLIENT_ID"),
        "{err}"
    );
    let err = svc
        .start(&w.acme, "shopify", None)
        .await
        .expect_err("no OAuth");
    assert!(matches!(err, OAuthError::NotOAuth(_)), "{err}");
    let err = svc.start(&w.acme, "nope", None).await.expect_err("unknown");
    assert!(matches!(err, OAuthError::UnknownVendor(_)), "{err}");
    let err = svc
        .start(&tid("ghost"), "hubspot", None)
        .await
        .expect_err("no tenant");
    assert!(err.to_string().contains("ghost"), "{err}");
}

#[tokio::test]
async fn store_claims_and_leases_on_both_backends() {
    for db in [
        Some(store_harness::sqlite().await),
        store_harness::postgres().await,
    ]
    .into_iter()
    .flatten()
    {
        let store = db.store.clone();
        let t = tid("acme");
        store
            .create_tenant(&NewTenant {
                id: t.clone(),
                name: "Acme".into(),
                time_zone: "UTC".into(),
            })
            .await
            .expect("tenant");
        let hash = "a".repeat(64);
        store
            .put_oauth_state(&callbridge::store::NewOAuthState {
                state_hash: &hash,
                tenant_id: &t,
                vendor: "hubspot",
                verifier: &[1, 2, 3],
                verifier_key: "k1",
                redirect_uri: REDIRECT,
                scopes: "a b",
                now_ms: 1_000,
                expires_at_ms: 601_000,
            })
            .await
            .expect("put state");
        let (one, two) = tokio::join!(
            store.claim_oauth_state(&hash, 2_000),
            store.claim_oauth_state(&hash, 2_000)
        );
        let wins = [one.expect("claim"), two.expect("claim")]
            .into_iter()
            .filter(Result::is_ok)
            .count();
        assert_eq!(wins, 1, "a state is claimed once");
        assert!(matches!(
            store.claim_oauth_state(&hash, 3_000).await.expect("claim"),
            Err(StateRefusal::Used)
        ));

        store
            .put_oauth_connection(
                &t,
                "hubspot",
                &callbridge::store::ConnectionUpdate {
                    account: Some("123"),
                    scopes: "a b",
                    secret_name: "oauth-hubspot",
                    extra: "{}",
                    expires_at_ms: Some(10_000),
                },
                1_000,
            )
            .await
            .expect("connection");
        assert!(
            store
                .acquire_oauth_refresh_lease(&t, "hubspot", "n1", 1_000, 31_000)
                .await
                .expect("lease")
        );
        assert!(
            !store
                .acquire_oauth_refresh_lease(&t, "hubspot", "n2", 2_000, 32_000)
                .await
                .expect("lease")
        );
        // An abandoned lease is taken over after it runs out.
        assert!(
            store
                .acquire_oauth_refresh_lease(&t, "hubspot", "n2", 31_000, 61_000)
                .await
                .expect("lease")
        );
        store
            .finish_oauth_refresh(&t, "hubspot", "n2", Some("a"), Some(99_000), 40_000)
            .await
            .expect("finish");
        let c = store.oauth_connection(&t, "hubspot").await.expect("read");
        assert_eq!(c.last_refresh_at_ms, Some(40_000));
        assert_eq!(c.scopes, "a");
        assert!(
            store
                .oauth_connection(&tid("other"), "hubspot")
                .await
                .is_err()
        );

        // OAuth apps: the deployment's and a tenant's side by side, replaced in place, binary
        // secret kept as sealed, deleted with the tenant.
        for scope in [AppScope::Deployment, AppScope::Tenant(t.clone())] {
            let mut app = StoredOAuthApp {
                scope: scope.clone(),
                vendor: "hubspot".into(),
                client_id: "id-1".into(),
                secret: vec![0, 159, 255, 7],
                secret_key: "k1".into(),
                authorize_url: None,
                token_url: Some("https://t.example/token".into()),
                revoke_url: None,
                directory: Some("organizations".into()),
                updated_at_ms: 1_000,
            };
            store.put_oauth_app(&app).await.expect("put app");
            app.client_id = "id-2".into();
            app.updated_at_ms = 2_000;
            let back = store.put_oauth_app(&app).await.expect("replace app");
            assert_eq!(back, app);
            assert_eq!(
                store.oauth_app(&scope, "hubspot").await.expect("read"),
                Some(app)
            );
            assert_eq!(store.list_oauth_apps(&scope).await.expect("list").len(), 1);
        }
        assert!(
            store
                .oauth_app(&AppScope::Tenant(tid("other")), "hubspot")
                .await
                .expect("read")
                .is_none()
        );
        store.delete_tenant(&t).await.expect("delete tenant");
        assert!(
            store
                .oauth_app(&AppScope::Tenant(t.clone()), "hubspot")
                .await
                .expect("read")
                .is_none()
        );
        store
            .delete_oauth_app(&AppScope::Deployment, "hubspot")
            .await
            .expect("delete deployment app");
        assert!(
            store
                .delete_oauth_app(&AppScope::Deployment, "hubspot")
                .await
                .is_err()
        );
    }
}

/// The HTTP surface of the real bridge: start with the admin key, the browser's trip through
/// consent and `GET /oauth/callback`, then list/show/disconnect, with no token in any answer and
/// another tenant's connection answering 404.
#[tokio::test]
async fn http_api_start_callback_list_and_disconnect() {
    const ADMIN: &str = "admin-key-0123456789abcdef0123456789";
    let fake = FakeOAuth::start(FakeOAuthConfig::new(REDIRECT)).await;
    // Only this test reads these variables (the other tests pass settings explicitly).
    unsafe {
        std::env::set_var("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_ID", "client-abc");
        std::env::set_var(
            "CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_SECRET",
            "client-secret-xyz-0123456789",
        );
        std::env::set_var(
            "CALLBRIDGE_OAUTH_HUBSPOT_AUTHORIZE_URL",
            fake.url("/authorize"),
        );
        std::env::set_var("CALLBRIDGE_OAUTH_HUBSPOT_TOKEN_URL", fake.url("/token"));
        std::env::set_var("CALLBRIDGE_OAUTH_HUBSPOT_REVOKE_URL", fake.url("/revoke"));
    }
    let bridge = callbridge_testkit::TestBridge::start("ws://127.0.0.1:9/", |args| {
        args.admin_key = Some(ADMIN.into());
    })
    .await;
    let redirect = format!("{}/oauth/callback", bridge.public_url);
    fake.configure(|c| c.redirect_uri = redirect.clone());
    for id in ["acme", "other"] {
        bridge
            .store
            .create_tenant(&NewTenant {
                id: tid(id),
                name: format!("{id} Inc."),
                time_zone: "UTC".into(),
            })
            .await
            .expect("tenant");
    }
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", bridge.public_url);

    let started: serde_json::Value = http
        .post(api("/tenants/acme/connections/hubspot/start"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let url = started["authorization_url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(
        url.contains(&format!("redirect_uri={}", urlencode(&redirect))),
        "{url}"
    );

    let query = fake.consent(&url).await;
    let back = reqwest::Url::parse_with_params(&redirect, query.iter()).expect("callback URL");
    let page = http.get(back.clone()).send().await.expect("callback");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("HubSpot is connected to acme Inc."), "{html}");
    // The same link again: refused, nothing changes.
    let again = http.get(back).send().await.expect("callback again");
    assert_eq!(again.status(), 400);

    let list = http
        .get(api("/tenants/acme/connections"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    let text = list.text().await.expect("body");
    let listed: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(listed[0]["vendor"], "hubspot");
    assert_eq!(listed[0]["status"], "active");
    for token in fake
        .issued_access_tokens()
        .into_iter()
        .chain(fake.issued_refresh_tokens())
    {
        assert!(!text.contains(&token), "token in the API output");
        assert!(!html.contains(&token), "token on the page");
    }
    assert!(!text.contains("client-secret"));

    for path in [
        "/tenants/other/connections/hubspot",
        "/tenants/nobody/connections/hubspot",
    ] {
        let response = http
            .get(api(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = http
        .delete(api("/tenants/other/connections/hubspot"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete other");
    assert_eq!(response.status(), 404);
    let unauthenticated = http
        .get(api("/tenants/acme/connections"))
        .send()
        .await
        .expect("no key");
    assert_eq!(unauthenticated.status(), 401);

    let gone: serde_json::Value = http
        .delete(api("/tenants/acme/connections/hubspot"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(gone["revoked"], true);
    assert_eq!(fake.revocations(), 1);
    let response = http
        .get(api("/tenants/acme/connections/hubspot"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
    let spec = http
        .get(api("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .text()
        .await
        .expect("text");
    assert!(spec.contains("/tenants/{tenant}/connections/{vendor}/start"));
    assert!(spec.contains("/tenants/{tenant}/oauth-apps/{vendor}"));

    // OAuth apps through the API: a tenant's own app, sealed, never shown; 404 across tenants.
    let own = json!({
        "client_id": "acme-own-app",
        "client_secret": "acme-own-secret-9876543210",
        "authorize_url": fake.url("/authorize"),
        "token_url": fake.url("/token"),
    });
    let put = http
        .put(api("/tenants/acme/oauth-apps/hubspot"))
        .bearer_auth(ADMIN)
        .json(&own)
        .send()
        .await
        .expect("put app");
    assert_eq!(put.status(), 200);
    let text = put.text().await.expect("body");
    assert!(text.contains("acme-own-app"), "{text}");
    assert!(
        !text.contains("acme-own-secret"),
        "secret in the API output"
    );
    let shown = http
        .get(api("/tenants/acme/oauth-apps"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("list apps")
        .text()
        .await
        .expect("text");
    assert!(shown.contains("\"scope\":\"acme\""), "{shown}");
    assert!(!shown.contains("acme-own-secret"));
    let started: serde_json::Value = http
        .post(api("/tenants/acme/connections/hubspot/start"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    assert!(
        started["authorization_url"]
            .as_str()
            .is_some_and(|u| u.contains("client_id=acme-own-app")),
        "{started}"
    );
    for (method, path) in [
        (reqwest::Method::GET, "/tenants/other/oauth-apps/hubspot"),
        (reqwest::Method::DELETE, "/tenants/other/oauth-apps/hubspot"),
        (reqwest::Method::GET, "/tenants/nobody/oauth-apps/hubspot"),
    ] {
        let response = http
            .request(method, api(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("other");
        assert_eq!(response.status(), 404, "{path}");
    }
    let bad = http
        .put(api("/oauth-apps/hubspot"))
        .bearer_auth(ADMIN)
        .json(&json!({"client_id": "x", "client_secret": "y", "directory": "organizations"}))
        .send()
        .await
        .expect("put bad");
    assert_eq!(bad.status(), 400, "HubSpot has no directory");
    let deployment = http
        .get(api("/oauth-apps/hubspot"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("deployment app")
        .text()
        .await
        .expect("text");
    assert!(
        deployment.contains("\"source\":\"environment\""),
        "{deployment}"
    );
    assert!(!deployment.contains("client-secret"));
    let deleted = http
        .delete(api("/tenants/acme/oauth-apps/hubspot"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete app");
    assert_eq!(deleted.status(), 204);
}

fn urlencode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", text)])
        .expect("url")
        .query()
        .unwrap_or_default()
        .trim_start_matches("v=")
        .to_owned()
}

/// A call's tool resolution uses the tenant's connection: the HubSpot CRM tool is offered with
/// no secret at all, and withdrawn (with the reason) once the grant is refused.
#[tokio::test]
async fn resolver_offers_and_withdraws_tools_by_connection() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();
    w.store
        .put_connector(
            &w.acme,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: Some(w.fake.url("")),
                secret_name: None,
            },
        )
        .await
        .expect("connector");
    let runtime = callbridge::tools::invoke::ToolRuntime {
        store: w.store.clone(),
        keyring: None,
        policy: callbridge_testkit::loopback_policy(),
        ledger: Arc::new(callbridge::tools::store_ledger::StoreLedger::new(
            w.store.clone(),
        )),
        deadline: Duration::from_secs(5),
        oauth: Some(svc.clone()),
    };
    let enabled = vec![callbridge::tools::capabilities::FIND_CONTACT.to_owned()];
    let before = runtime.resolve(&w.acme, &enabled).await.expect("resolve");
    assert!(
        !before.unavailable.is_empty(),
        "not connected yet: withdrawn"
    );

    assert_eq!(w.connect(&svc, "hubspot").await.status, 200);
    let connected = runtime.resolve(&w.acme, &enabled).await.expect("resolve");
    assert!(
        connected.unavailable.is_empty(),
        "{:?}",
        connected.unavailable
    );

    w.fake.revoke_all();
    w.advance(3_600);
    let _ = svc.access_token(&w.acme, "hubspot", None).await;
    let refused = runtime.resolve(&w.acme, &enabled).await.expect("resolve");
    assert_eq!(refused.unavailable.len(), 1);
    assert!(
        refused.unavailable[0].reason.contains("connected again"),
        "{:?}",
        refused.unavailable
    );
}

/// `callbridge connect VENDOR --tenant T` prints the authorization URL; `connections list`
/// shows the tenant's connections; the client secret is never a flag and never printed.
#[tokio::test]
async fn cli_connect_prints_the_url_and_lists_connections() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let key = MasterKey::generate();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
            .args(args)
            .env("DATABASE_URL", &w.db.url)
            .env("CALLBRIDGE_MASTER_KEY", key.to_base64().expose_secret())
            .env("PUBLIC_URL", PUBLIC_URL)
            .env(
                "CALLBRIDGE_EGRESS_ALLOW",
                callbridge_testkit::LOOPBACK_EGRESS,
            )
            .env("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_ID", "client-abc")
            .env(
                "CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_SECRET",
                "client-secret-xyz-0123456789",
            )
            .env(
                "CALLBRIDGE_OAUTH_HUBSPOT_AUTHORIZE_URL",
                w.fake.url("/authorize"),
            )
            .env("CALLBRIDGE_OAUTH_HUBSPOT_TOKEN_URL", w.fake.url("/token"))
            .output()
            .expect("run callbridge")
    };
    let out = run(&["connect", "hubspot", "--tenant", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with(&w.fake.url("/authorize")), "{stdout}");
    assert!(stdout.contains("code_challenge_method=S256"), "{stdout}");
    assert!(!stdout.contains("client-secret") && !stderr.contains("client-secret"));
    // The URL works: consent, and the callback (through a node with the same vault key)
    // connects the tenant.
    let node = OAuthService::with_clock(
        w.store.clone(),
        Vault::new(w.store.clone(), Keyring::new(key.clone())),
        w.settings(&[("hubspot", true)]),
        EgressPolicy::allow_loopback(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service");
    let query = w.fake.consent(stdout.trim()).await;
    assert_eq!(node.callback(&query).await.status, 200);

    let out = run(&["connections", "list", "--tenant", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"vendor\": \"hubspot\"") || stdout.contains("\"vendor\":\"hubspot\""),
        "{stdout}"
    );
    for token in w
        .fake
        .issued_access_tokens()
        .into_iter()
        .chain(w.fake.issued_refresh_tokens())
    {
        assert!(!stdout.contains(&token));
    }
    let out = run(&["connections", "show", "hubspot", "--tenant", "other"]);
    assert!(
        !out.status.success(),
        "another tenant has no such connection"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of a whole lifecycle (connect, use, refresh, refused grant, disconnect), at
/// TRACE, holds no token, code, state, verifier or client secret.
#[tokio::test]
async fn nothing_secret_in_any_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This test's runtime is single-threaded: every event of the test lands here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let svc = w.node();
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    let query = w.fake.consent(&started.authorization_url).await;
    assert_eq!(svc.callback(&query).await.status, 200);
    assert_eq!(svc.callback(&query).await.status, 400);
    w.hubspot_read(&svc, &w.acme).await.expect("read");
    w.advance(3_600);
    w.hubspot_read(&svc, &w.acme).await.expect("refreshed read");
    svc.disconnect(&w.acme, "hubspot")
        .await
        .expect("disconnect");
    assert_eq!(w.connect(&svc, "hubspot").await.status, 200);
    w.fake.revoke_all();
    w.advance(3_600);
    let _ = w.hubspot_read(&svc, &w.acme).await;

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).into_owned();
    assert!(logs.contains("OAuth"), "the lifecycle was logged: {logs}");
    let mut secrets: Vec<String> = w
        .fake
        .issued_access_tokens()
        .into_iter()
        .chain(w.fake.issued_refresh_tokens())
        .collect();
    secrets.push(query["code"].clone());
    secrets.push(query["state"].clone());
    secrets.push("client-secret-xyz-0123456789".into());
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}

/// A tenant's own app (sealed in the store) is used for its flow, its refreshes and its
/// revocation; other tenants keep the deployment's; the deployment's app set through the API wins
/// over the environment's; deleting an app falls back.
#[tokio::test]
async fn tenant_own_app_wins_for_that_tenant_only() {
    let mut config = FakeOAuthConfig::new(REDIRECT);
    // The authorization server knows only the tenant's own client.
    config.client_id = "acme-own-app".into();
    config.client_secret = "acme-own-secret-9876543210".into();
    let w = world(config).await;
    let svc = w.node();
    let own = |id: &str, secret: &str| AppInput {
        client_id: id.into(),
        client_secret: SecretString::from(secret.to_owned()),
        authorize_url: Some(w.fake.url("/authorize")),
        token_url: Some(w.fake.url("/token")),
        revoke_url: Some(w.fake.url("/revoke")),
        directory: None,
    };
    let view = svc
        .set_app(
            &AppScope::Tenant(w.acme.clone()),
            "hubspot",
            own("acme-own-app", "acme-own-secret-9876543210"),
        )
        .await
        .expect("set the tenant's app");
    assert_eq!(view.scope, "acme");
    assert!(!format!("{view:?}").contains("acme-own-secret"));

    let page = w.connect(&svc, "hubspot").await;
    assert_eq!(page.status, 200, "{}", page.html);
    w.advance(3_600);
    svc.access_token(&w.acme, "hubspot", None)
        .await
        .expect("refresh with the tenant's own client");
    assert_eq!(w.fake.refresh_requests(), 1);
    let db_bytes =
        std::fs::read(w.db.sqlite_path.as_ref().expect("sqlite file")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db_bytes).contains("acme-own-secret"),
        "the client secret is sealed"
    );

    // The other tenant still uses the deployment's client (the environment's `client-abc`).
    let started = svc.start(&w.other, "hubspot", None).await.expect("start");
    assert!(started.authorization_url.contains("client_id=client-abc"));
    // The deployment's app set through the API wins over the environment's, for tenants
    // without their own.
    svc.set_app(
        &AppScope::Deployment,
        "hubspot",
        own("deployment-app", "deployment-secret-0000"),
    )
    .await
    .expect("set the deployment's app");
    let started = svc.start(&w.other, "hubspot", None).await.expect("start");
    assert!(
        started
            .authorization_url
            .contains("client_id=deployment-app")
    );
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    assert!(started.authorization_url.contains("client_id=acme-own-app"));
    let listed = svc.list_apps(&AppScope::Deployment).await.expect("list");
    assert!(
        listed
            .iter()
            .any(|a| a.vendor == "hubspot" && a.source == "api")
    );
    assert!(
        listed
            .iter()
            .any(|a| a.vendor == "google_calendar" && a.source == "environment")
    );

    // Disconnect revokes with the tenant's own client (the fake refuses any other).
    let done = svc
        .disconnect(&w.acme, "hubspot")
        .await
        .expect("disconnect");
    assert!(done.revoked);
    assert_eq!(w.fake.revocations(), 1);

    svc.delete_app(&AppScope::Tenant(w.acme.clone()), "hubspot")
        .await
        .expect("delete");
    let started = svc.start(&w.acme, "hubspot", None).await.expect("start");
    assert!(
        started
            .authorization_url
            .contains("client_id=deployment-app")
    );
    assert!(
        svc.delete_app(&AppScope::Tenant(w.acme.clone()), "hubspot")
            .await
            .is_err()
    );
    // Deleting the tenant deletes its apps.
    svc.set_app(
        &AppScope::Tenant(w.other.clone()),
        "hubspot",
        own("other-app", "other-secret-1111"),
    )
    .await
    .expect("set");
    w.store
        .delete_tenant(&w.other)
        .await
        .expect("delete tenant");
    assert!(
        w.store
            .oauth_app(&AppScope::Tenant(w.other.clone()), "hubspot")
            .await
            .expect("read")
            .is_none()
    );
}

/// Microsoft's identity platform: the app's directory fills the authorize and token URLs
/// (`common` by default); a directory is refused where the vendor has none, or when it is not a
/// path segment.
#[tokio::test]
async fn microsoft_directory_is_the_apps_choice() {
    let w = world(FakeOAuthConfig::new(REDIRECT)).await;
    let env: HashMap<String, String> = [
        ("CALLBRIDGE_OAUTH_MICROSOFT_CALENDAR_CLIENT_ID", "ms-app"),
        (
            "CALLBRIDGE_OAUTH_MICROSOFT_CALENDAR_CLIENT_SECRET",
            "ms-secret",
        ),
        ("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_ID", "hs-app"),
        ("CALLBRIDGE_OAUTH_HUBSPOT_CLIENT_SECRET", "hs-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = OAuthSettings::from_lookup(
        Some(PUBLIC_URL.into()),
        &["microsoft_calendar", "hubspot"],
        |k| env.get(k).cloned(),
    )
    .expect("settings");
    let svc = OAuthService::with_clock(
        w.store.clone(),
        w.vault.clone(),
        settings,
        EgressPolicy::allow_loopback(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service");
    let started = svc
        .start(&w.acme, "microsoft_calendar", None)
        .await
        .expect("start");
    assert!(
        started
            .authorization_url
            .starts_with("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"),
        "{}",
        started.authorization_url
    );
    let mut app = AppInput {
        client_id: "contoso-app".into(),
        client_secret: SecretString::from("contoso-secret".to_owned()),
        authorize_url: None,
        token_url: None,
        revoke_url: None,
        directory: Some("contoso.onmicrosoft.com".into()),
    };
    let tenant_scope = AppScope::Tenant(w.acme.clone());
    svc.set_app(&tenant_scope, "microsoft_calendar", app)
        .await
        .expect("set");
    let started = svc
        .start(&w.acme, "microsoft_calendar", None)
        .await
        .expect("start");
    assert!(
        started.authorization_url.starts_with(
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?"
        ),
        "{}",
        started.authorization_url
    );
    let started = svc
        .start(&w.other, "microsoft_calendar", None)
        .await
        .expect("start");
    assert!(started.authorization_url.contains("/common/"));

    app = AppInput {
        client_id: "x".into(),
        client_secret: SecretString::from("y".to_owned()),
        authorize_url: None,
        token_url: None,
        revoke_url: None,
        directory: Some("organizations".into()),
    };
    let err = svc
        .set_app(&tenant_scope, "hubspot", app)
        .await
        .expect_err("HubSpot has no directory");
    assert!(
        matches!(
            err,
            OAuthError::Invalid {
                field: "directory",
                ..
            }
        ),
        "{err}"
    );
    for bad in ["evil.example/x", "a?b", ""] {
        let app = AppInput {
            client_id: "x".into(),
            client_secret: SecretString::from("y".to_owned()),
            authorize_url: None,
            token_url: None,
            revoke_url: None,
            directory: Some(bad.into()),
        };
        let err = svc
            .set_app(&tenant_scope, "microsoft_calendar", app)
            .await
            .expect_err("bad directory");
        assert!(matches!(err, OAuthError::Invalid { .. }), "{bad}: {err}");
    }
    let no_secret = AppInput {
        client_id: "x".into(),
        client_secret: SecretString::from(" ".to_owned()),
        authorize_url: None,
        token_url: None,
        revoke_url: None,
        directory: None,
    };
    assert!(
        svc.set_app(&tenant_scope, "hubspot", no_secret)
            .await
            .is_err()
    );
    let refused_url = AppInput {
        client_id: "x".into(),
        client_secret: SecretString::from("y".to_owned()),
        authorize_url: None,
        token_url: Some("http://169.254.169.254/token".into()),
        revoke_url: None,
        directory: None,
    };
    let strict = OAuthService::with_clock(
        w.store.clone(),
        w.vault.clone(),
        OAuthSettings::default(),
        EgressPolicy::strict(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service");
    let err = strict
        .set_app(&tenant_scope, "hubspot", refused_url)
        .await
        .expect_err("metadata address refused");
    assert!(matches!(err, OAuthError::Url { .. }), "{err}");
}

/// Slack (the registry's descriptor): the token endpoint answers errors as HTTP 200
/// `{"ok": false, "error": …}`; the flow must read that as a refusal with Slack's code, on the
/// code exchange and on refresh, and the Slack connector must post with the connection's token.
#[tokio::test]
async fn slack_ok_false_is_a_refusal_and_the_bot_token_is_used() {
    let mut config = FakeOAuthConfig::new(REDIRECT);
    config.ok_envelope = true;
    config
        .extra_token_fields
        .insert("bot_user_id".into(), json!("U0KRQLJ9H"));
    let w = world(config).await;
    let svc = OAuthService::with_clock(
        w.store.clone(),
        w.vault.clone(),
        w.settings(&[("slack", true)]),
        EgressPolicy::allow_loopback(),
        w.clock.clone() as Arc<dyn Clock>,
    )
    .expect("service");

    // A code the server does not know: HTTP 200 with ok:false, and nothing is stored.
    let started = svc.start(&w.acme, "slack", None).await.expect("start");
    assert!(
        started.authorization_url.contains("scope=chat%3Awrite"),
        "{}",
        started.authorization_url
    );
    let mut query = w.fake.consent(&started.authorization_url).await;
    query.insert("code".into(), "not-a-code".into());
    let page = svc.callback(&query).await;
    assert_eq!(page.status, 502, "{}", page.html);
    assert!(page.html.contains("invalid_grant"), "{}", page.html);
    assert!(svc.connections(&w.acme).await.expect("list").is_empty());
    assert!(w.vault.list(&w.acme).await.expect("secrets").is_empty());

    // The real exchange (`"ok": true` beside the token) connects the bot.
    let page = w.connect(&svc, "slack").await;
    assert_eq!(page.status, 200, "{}", page.html);
    let connection = svc.connection(&w.acme, "slack").await.expect("connection");
    assert_eq!(connection.account.as_deref(), Some("U0KRQLJ9H"));

    // The connector posts with the connection's token; the channel comes from its secret.
    w.vault
        .put(
            &w.acme,
            "slack-settings",
            "slack",
            &SecretString::from(r#"{"channel": "C0123456789"}"#.to_owned()),
        )
        .await
        .expect("settings secret");
    let slack_config = ConnectorConfig {
        tenant_id: w.acme.clone(),
        spec: ConnectorSpec {
            vendor: "slack".into(),
            base_url: Some(w.fake.url("/api/")),
            secret_name: Some("slack-settings".into()),
        },
        updated_at: jiff::Timestamp::now(),
    };
    let policy = callbridge_testkit::loopback_policy();
    let built = build_connector_with(&slack_config, Some(&w.vault), &policy, Some(&svc))
        .await
        .expect("slack connector");
    let ctx = RequestContext::new(
        w.acme.as_str(),
        "call-1",
        tokio::time::Instant::now() + Duration::from_secs(10),
    );
    // The fake resource is not Slack's API (its answer has no `ok`): what counts is the token.
    let _ = built.health_check(&ctx).await;
    assert_eq!(
        w.fake.accepted_tokens(),
        w.fake.issued_access_tokens(),
        "the connector sent the connection's access token"
    );

    // Refresh: `"ok": true` answers refresh; a refused grant (HTTP 200, ok:false) needs a
    // reconnect like any invalid_grant.
    w.advance(3_600);
    let tokens = svc.token_source(&w.acme, "slack");
    callbridge::connectors::client::TokenSource::token(&tokens, &ctx)
        .await
        .expect("refreshed");
    assert_eq!(w.fake.refresh_requests(), 1);
    w.fake.revoke_all();
    w.advance(3_600);
    callbridge::connectors::client::TokenSource::token(&tokens, &ctx)
        .await
        .expect_err("refused refresh");
    let connection = svc.connection(&w.acme, "slack").await.expect("connection");
    assert_eq!(connection.status, ConnectionStatus::NeedsReconnect);
}

/// A Slack-dialect app asking for two bot scopes (the registry's Slack asks for one).
static SLACK_LAB: OAuthSpec = OAuthSpec {
    authorize_url: "https://slack.com/oauth/v2/authorize",
    token_url: "https://slack.com/api/oauth.v2.access",
    revoke_url: None,
    scopes: &[(Capability::Messaging, &["chat:write", "channels:read"])],
    pkce: false,
    extra_authorize_params: &[],
    api_base_fields: &[],
    client_secret_in_body: true,
    account_fields: &["bot_user_id"],
    accounts_server_param: None,
    ok_envelope: true,
    accounts_server_hosts: &[],
};

/// Slack answers a refresh with a dead refresh token as `invalid_refresh_token` or
/// `token_revoked` (HTTP 200, `ok: false`), not `invalid_grant`: each must leave the connection
/// `needs_reconnect` (doctor and the connections API show it) like any vendor's `invalid_grant`.
/// Slack's scopes are comma-separated, in the authorize URL and in its token answer.
#[tokio::test]
async fn slack_refresh_refusals_need_a_reconnect_and_scopes_are_comma_separated() {
    for code in ["invalid_refresh_token", "token_revoked", "invalid_grant"] {
        let mut config = FakeOAuthConfig::new(REDIRECT);
        config.ok_envelope = true;
        config.refresh_refusal = code;
        config
            .extra_token_fields
            .insert("bot_user_id".into(), json!("U0KRQLJ9H"));
        let w = world(config).await;
        let svc = OAuthService::with_clock(
            w.store.clone(),
            w.vault.clone(),
            w.settings(&[("slack", true), ("slack_lab", true)]),
            EgressPolicy::allow_loopback(),
            w.clock.clone() as Arc<dyn Clock>,
        )
        .expect("service")
        .with_vendor("slack_lab", "Slack", &[Capability::Messaging], SLACK_LAB);

        let started = svc.start(&w.acme, "slack_lab", None).await.expect("start");
        let url = url::Url::parse(&started.authorization_url).expect("url");
        let scopes: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(scopes, ["channels:read,chat:write"], "{url}");
        let query = w.fake.consent(&started.authorization_url).await;
        assert_eq!(svc.callback(&query).await.status, 200);
        let connection = svc
            .connection(&w.acme, "slack_lab")
            .await
            .expect("connection");
        assert_eq!(connection.scopes, "channels:read chat:write");

        assert_eq!(w.connect(&svc, "slack").await.status, 200);
        w.fake.revoke_all();
        w.advance(3_600);
        let err = svc
            .access_token(&w.acme, "slack", None)
            .await
            .expect_err("refused refresh");
        assert!(
            matches!(err, OAuthError::NeedsReconnect { .. }),
            "{code}: {err}"
        );
        let connection = svc.connection(&w.acme, "slack").await.expect("connection");
        assert_eq!(
            connection.status,
            ConnectionStatus::NeedsReconnect,
            "{code}"
        );
    }
}

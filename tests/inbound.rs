//! Inbound webhooks end to end.
//!
//! Over HTTP (the real bridge on 127.0.0.1): signed deliveries per vendor are stored once (vendor
//! retries count as deliveries), unsigned, wrongly signed, stale, oversized and unknown-source
//! deliveries are refused with 401/413/404, counted, and leave nothing in the store; WhatsApp's
//! `hub.challenge` handshake.
//!
//! Against the store (SQLite and PostgreSQL) with a manual clock: a restart between store and
//! process, a node that dies holding a lease, two nodes sharing the inbox, retries with backoff
//! then failure and replay, a call rule that dials within the window (prompt variables mapped
//! from the event) and one deferred to the window's opening, SMS "STOP" putting the number on
//! the do-not-call list, a booking cancellation cancelling pending calls, a message rule sending
//! once per event through the notification outbox (never to an opted-out number) to 127.0.0.1
//! mocks of Twilio Messages and Slack, a WhatsApp message opening the contact's 24-hour window.

#[macro_use]
#[allow(unused_macros)]
mod store_harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callbridge::campaign::window::local;
use callbridge::campaign::{CampaignRunner, Clock, Dialer, ManualClock, RunnerOptions};
use callbridge::connectors::twilio_rest::TwilioRest;
use callbridge::inbound::{
    Action, Condition, ContactMapping, Delivery, InboundService, WorkerOptions,
};
use callbridge::metrics::Metrics;
use callbridge::store::{
    CampaignSpec, ContactState, E164, InboundStatus, NewContact, NewInboundEvent, SqlStore, Store,
    StoreOptions, TenantId,
};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, TestBridge, provision_dialling_tenant};
use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use store_harness::TestDb;

/// Each case once per backend, with the database (its URL opens a second node).
macro_rules! inbox_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let db = crate::store_harness::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    if let Some(db) = crate::store_harness::postgres().await {
                        super::$case(&db).await;
                    }
                }
            )*
        }
    };
}

inbox_suite!(
    a_restart_between_store_and_process_loses_nothing,
    a_dead_nodes_lease_is_taken_over,
    two_nodes_process_each_event_once,
    failures_retry_with_backoff_then_fail_and_replay,
    a_call_rule_dials_within_the_window_with_mapped_variables,
    a_lead_at_night_is_called_when_the_window_opens,
    sms_stop_puts_the_number_on_the_do_not_call_list,
    a_cancelled_booking_cancels_pending_calls,
    a_message_rule_sends_once_per_event_and_never_to_opted_out_numbers,
    an_sms_rule_sends_from_the_tenants_number_and_needs_a_sender,
);

const LEAD: &str = "+14155552671";

fn fixture(kind: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/inbound")
        .join(format!("{kind}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Wednesday 2026-06-10 11:00 in New York.
fn midweek_morning() -> DateTime<Utc> {
    local(New_York, 2026, 6, 10, 11, 0).expect("valid time")
}

/// A Standard Webhooks signature of `body` under `secret` (`whsec_<base64>`).
fn standard_headers(secret: &str, id: &str, at_s: i64, body: &str) -> Vec<(String, String)> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{at_s}.{body}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), at_s.to_string()),
        ("webhook-signature".into(), format!("v1,{signature}")),
        ("content-type".into(), "application/json".into()),
    ]
}

// --- over HTTP ----------------------------------------------------------------------------------

struct Http {
    bridge: TestBridge,
    service: InboundService,
    tenant: TenantId,
    client: reqwest::Client,
}

async fn http() -> Http {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bridge = TestBridge::start("ws://127.0.0.1:9", |_| {}).await;
    let (tenant, _) = provision_dialling_tenant(&bridge.store, "acme", 10).await;
    let service = InboundService::new(
        bridge.store.clone(),
        Some(bridge.vault()),
        Some(SecretString::from(AUTH_TOKEN)),
        &bridge.public_url,
        Arc::new(Metrics::default()),
        Arc::new(callbridge::campaign::SystemClock),
    );
    Http {
        bridge,
        service,
        tenant,
        client: reqwest::Client::new(),
    }
}

impl Http {
    async fn post(&self, source: &str, headers: &[(String, String)], body: &str) -> (u16, String) {
        let mut request = self
            .client
            .post(format!("{}/hooks/acme/{source}", self.bridge.public_url))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn stored(&self) -> usize {
        self.bridge
            .store
            .list_inbound_events(&self.tenant, None, 500)
            .await
            .expect("events")
            .len()
    }
}

fn vector_headers(vector: &serde_json::Value) -> Vec<(String, String)> {
    serde_json::from_value(vector["headers"].clone()).expect("headers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_stored_once_and_refusals_store_nothing() {
    let h = http().await;
    // Vendors without a signed timestamp: their documented vectors, replayed to the bridge.
    for kind in ["shopify", "calcom", "whatsapp"] {
        let vector = fixture(kind);
        let secret = vector["secret"].as_str().expect("secret");
        h.service
            .create_source(&h.tenant, kind, kind, Some(SecretString::from(secret)))
            .await
            .expect("source");
        let body = vector["body"].as_str().expect("body");
        let headers = vector_headers(&vector);
        let before = h.stored().await;
        let (status, text) = h.post(kind, &headers, body).await;
        assert_eq!(status, 200, "{kind}: {text}");
        assert_eq!(h.stored().await, before + 1, "{kind}");
        // The vendor retries: same event, one row, two deliveries.
        let (status, text) = h.post(kind, &headers, body).await;
        assert_eq!(status, 200, "{kind}: {text}");
        assert!(text.contains("\"duplicates\":1"), "{kind}: {text}");
        assert_eq!(h.stored().await, before + 1, "{kind}");
        let events = h
            .bridge
            .store
            .list_inbound_events(&h.tenant, Some(kind), 10)
            .await
            .expect("events");
        assert_eq!(events[0].deliveries, 2);
        assert_eq!(events[0].status, InboundStatus::Pending);
        // Tampered, then unsigned: refused, nothing more stored.
        let (status, _) = h.post(kind, &headers, &format!("{body} ")).await;
        assert_eq!(status, 401, "{kind} tampered");
        let unsigned: Vec<_> = headers
            .iter()
            .filter(|(k, _)| {
                !k.to_lowercase().contains("signature") && !k.to_lowercase().contains("hmac")
            })
            .cloned()
            .collect();
        let (status, _) = h.post(kind, &unsigned, body).await;
        assert_eq!(status, 401, "{kind} unsigned");
        assert_eq!(h.stored().await, before + 1, "{kind}");
    }
    let metrics = &h.bridge.metrics;
    assert_eq!(metrics.inbound_of("shopify", "accepted"), 1);
    assert_eq!(metrics.inbound_of("shopify", "duplicate"), 1);
    assert_eq!(metrics.inbound_of("shopify", "bad_signature"), 1);
    assert_eq!(metrics.inbound_of("shopify", "unsigned"), 1);

    // Standard Webhooks, signed now; then stale (10 minutes old) and oversized.
    let created = h
        .service
        .create_source(&h.tenant, "crm", "standard", None)
        .await
        .expect("source");
    let secret = created
        .secret
        .expect("generated once")
        .expose_secret()
        .to_owned();
    assert!(created.url.ends_with("/hooks/acme/crm"));
    let body = r#"{"type":"lead.created","data":{"phone":"+14155552671"}}"#;
    let now = Utc::now().timestamp();
    let before = h.stored().await;
    let (status, text) = h
        .post("crm", &standard_headers(&secret, "msg_1", now, body), body)
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, _) = h
        .post(
            "crm",
            &standard_headers(&secret, "msg_2", now - 600, body),
            body,
        )
        .await;
    assert_eq!(status, 401, "stale");
    assert_eq!(metrics.inbound_of("standard", "stale"), 1);
    let big = format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(300 * 1024));
    let (status, _) = h
        .post("crm", &standard_headers(&secret, "msg_3", now, &big), &big)
        .await;
    assert_eq!(status, 413, "oversized");
    assert_eq!(metrics.inbound_of("unknown", "too_large"), 1);
    let (status, _) = h
        .post("nope", &standard_headers(&secret, "msg_4", now, body), body)
        .await;
    assert_eq!(status, 404, "unknown source");
    assert_eq!(h.stored().await, before + 1);

    // Twilio SMS reply, signed with the account's auth token over the public URL.
    h.service
        .create_source(&h.tenant, "sms", "twilio", None)
        .await
        .expect("twilio source");
    let form = vec![
        ("MessageSid".to_owned(), "SM0001".to_owned()),
        ("From".to_owned(), LEAD.to_owned()),
        ("To".to_owned(), "+15005550006".to_owned()),
        ("Body".to_owned(), "Stop".to_owned()),
    ];
    let url = format!("{}/hooks/acme/sms", h.bridge.public_url);
    let signature = callbridge::twilio::signature::compute(AUTH_TOKEN, &url, &form);
    let body = serde_urlencoded::to_string(&form).expect("form");
    let headers = vec![
        ("X-Twilio-Signature".to_owned(), signature),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    let (status, text) = h.post("sms", &headers, &body).await;
    assert_eq!(status, 200);
    assert!(text.contains("<Response/>"), "{text}");
    let forged = vec![("X-Twilio-Signature".to_owned(), "AAAA".to_owned())];
    assert_eq!(h.post("sms", &forged, &body).await.0, 401);
}

/// A Stripe delivery's `Stripe-Signature` (`t=…,v1=` HMAC-SHA256 hex of `t.body`, keyed by the
/// endpoint's `whsec_…` as text).
fn stripe_headers(secret: &str, at_s: i64, body: &str) -> Vec<(String, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{at_s}.{body}").as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        ("Stripe-Signature".into(), format!("t={at_s},v1={tag}")),
        ("content-type".into(), "application/json".into()),
    ]
}

/// Puts a connector of `vendor` with `secret` (sealed) for the tenant.
async fn connect(
    store: &SqlStore,
    vault: &Vault<SqlStore>,
    tenant: &TenantId,
    vendor: &str,
    base_url: Option<String>,
    secret: serde_json::Value,
) {
    let name = format!("{vendor}-credentials");
    vault
        .put(
            tenant,
            &name,
            vendor,
            &SecretString::from(secret.to_string()),
        )
        .await
        .expect("secret");
    store
        .put_connector(
            tenant,
            &callbridge::store::ConnectorSpec {
                vendor: vendor.into(),
                base_url,
                secret_name: Some(name),
            },
        )
        .await
        .expect("connector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_stripe_webhook_notifies_staff_once() {
    use callbridge::notify::worker::{NotificationWorker, NotifyWorkerOptions};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let h = http().await;
    let store = &h.bridge.store;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    connect(
        store,
        &h.bridge.vault(),
        &h.tenant,
        "slack",
        None,
        serde_json::json!({"webhook_url": format!("{}/services/T1/B1/secret", slack.uri())}),
    )
    .await;
    store
        .add_notification_rule(&h.tenant, "payment.received", "slack", "default")
        .await
        .expect("rule");
    let secret = "whsec_test_payments_0123456789";
    h.service
        .create_source(
            &h.tenant,
            "stripe",
            "stripe",
            Some(SecretString::from(secret)),
        )
        .await
        .expect("stripe source");
    let post = |body: serde_json::Value| {
        let body = body.to_string();
        let headers = stripe_headers(secret, Utc::now().timestamp(), &body);
        let h = &h;
        async move { h.post("stripe", &headers, &body).await }
    };
    let paid = serde_json::json!({
        "id": "evt_paid_1", "object": "event", "type": "checkout.session.completed",
        "data": {"object": {
            "id": "cs_test_1", "object": "checkout.session", "payment_status": "paid",
            "payment_intent": "pi_test_1", "amount_total": 1999, "currency": "eur",
            "customer_details": {"email": "ana@example.com", "phone": "+14155552671", "name": "Ana"}
        }}
    });
    // Stripe redelivers the event; the same payment's payment_intent.succeeded follows.
    for _ in 0..2 {
        let (status, text) = post(paid.clone()).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, _) = post(serde_json::json!({
        "id": "evt_paid_2", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_test_1", "object": "payment_intent", "amount": 1999,
            "amount_received": 1999, "currency": "eur", "receipt_email": "ana@example.com"}}
    }))
    .await;
    assert_eq!(status, 200);
    // A checkout not paid yet (a bank debit pending) notifies nobody.
    let mut unpaid = paid.clone();
    unpaid["id"] = serde_json::json!("evt_unpaid");
    unpaid["data"]["object"]["payment_status"] = serde_json::json!("unpaid");
    unpaid["data"]["object"]["payment_intent"] = serde_json::json!("pi_test_2");
    assert_eq!(post(unpaid).await.0, 200);
    // Another payment, in a zero-decimal currency.
    let (status, _) = post(serde_json::json!({
        "id": "evt_paid_3", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_test_3", "object": "payment_intent", "amount": 5000,
            "amount_received": 5000, "currency": "jpy", "description": "Deposit"}}
    }))
    .await;
    assert_eq!(status, 200);

    let pass = |node: &str| {
        let options = WorkerOptions {
            node_id: node.into(),
            ..WorkerOptions::default()
        };
        let service = h.service.clone();
        async move { service.process_due(&options).await.expect("pass") }
    };
    assert_eq!(pass("n1").await.done, 4);
    // An operator replays the first event: nothing more is sent.
    let first = store
        .list_inbound_events(&h.tenant, Some("stripe"), 10)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.vendor_event_id == "evt_paid_1")
        .expect("stored");
    h.service
        .replay(&h.tenant, &first.id)
        .await
        .expect("replay");
    pass("n2").await;

    let worker = NotificationWorker::new(
        store.clone(),
        Some(h.bridge.keyring.clone()),
        callbridge_testkit::loopback_policy(),
        None,
        NotifyWorkerOptions::default(),
    );
    while !worker.run_once().await.expect("poll").is_empty() {}
    let texts: Vec<String> = slack
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(texts.len(), 2, "one post per payment: {texts:?}");
    let euro = texts
        .iter()
        .find(|t| t.contains("19.99 EUR"))
        .expect("the checkout's notification");
    for part in [
        "Payment received",
        "ana@example.com",
        "+14155552671",
        "cs_test_1",
    ] {
        assert!(euro.contains(part), "{part}: {euro}");
    }
    let yen = texts
        .iter()
        .find(|t| t.contains("5000 JPY"))
        .expect("the yen payment's notification");
    assert!(yen.contains("Deposit (Stripe payment pi_test_3)"), "{yen}");
    let actions = store
        .inbound_actions(&h.tenant, &first.id)
        .await
        .expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a.rule_id == "builtin:payment-received" && a.outcome == "enqueued"),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_subscription_handshake_echoes_the_challenge() {
    let h = http().await;
    let created = h
        .service
        .create_source(
            &h.tenant,
            "wa",
            "whatsapp",
            Some(SecretString::from("app-secret")),
        )
        .await
        .expect("source");
    let token = created
        .verify_token
        .expect("verify token")
        .expose_secret()
        .to_owned();
    let url = |token: &str| {
        format!(
            "{}/hooks/acme/wa?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1158201444",
            h.bridge.public_url,
            urlencode(token)
        )
    };
    let response = h.client.get(url(&token)).send().await.expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("text"), "1158201444");
    let response = h.client.get(url("wrong")).send().await.expect("get");
    assert_eq!(response.status().as_u16(), 403);
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).expect("encode")[2..].to_owned()
}

// --- against the store --------------------------------------------------------------------------

struct Env {
    store: SqlStore,
    url: String,
    tenant: TenantId,
    keyring: Keyring,
    clock: Arc<ManualClock>,
    service: InboundService,
    secret: String,
    agent: String,
}

fn service(store: &SqlStore, keyring: &Keyring, clock: &Arc<ManualClock>) -> InboundService {
    InboundService::new(
        store.clone(),
        Some(Vault::new(store.clone(), keyring.clone())),
        Some(SecretString::from(AUTH_TOKEN)),
        "https://bridge.example.com",
        Arc::new(Metrics::default()),
        clock.clone(),
    )
}

async fn env(db: &TestDb) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tenant, _) = provision_dialling_tenant(&db.store, "acme", 100).await;
    let keyring = Keyring::new(MasterKey::generate());
    let clock = Arc::new(ManualClock::new(midweek_morning()));
    let service = service(&db.store, &keyring, &clock);
    let created = service
        .create_source(&tenant, "crm", "standard", None)
        .await
        .expect("source");
    let agent = db.store.list_agents(&tenant).await.expect("agents")[0]
        .id
        .clone();
    Env {
        store: db.store.clone(),
        url: db.url.clone(),
        tenant,
        keyring,
        clock,
        service,
        secret: created.secret.expect("secret").expose_secret().to_owned(),
        agent,
    }
}

fn options(node: &str) -> WorkerOptions {
    WorkerOptions {
        node_id: node.into(),
        lease: Duration::from_secs(60),
        max_attempts: 3,
        backoff: Duration::from_secs(2),
        ..WorkerOptions::default()
    }
}

impl Env {
    /// A signed lead from the business's own CRM, delivered to `service`.
    async fn deliver(&self, service: &InboundService, id: &str, phone: &str, name: &str) {
        let body = serde_json::json!({
            "type": "lead.created",
            "properties": {"phone": phone, "firstname": name, "tz": "America/New_York"}
        })
        .to_string();
        let headers = standard_headers(&self.secret, id, self.clock.now().timestamp(), &body);
        let receipt = service
            .receive(
                "acme",
                "crm",
                &Delivery {
                    method: "POST",
                    url: "https://bridge.example.com/hooks/acme/crm",
                    headers: &headers,
                    body: body.as_bytes(),
                },
            )
            .await
            .expect("verified and stored");
        assert_eq!(receipt.stored + receipt.duplicates, 1);
    }

    async fn rule(&self, name: &str, action: Action) -> callbridge::store::InboundRule {
        self.service
            .create_rule(
                &self.tenant,
                name,
                "crm",
                "lead.created",
                Vec::new(),
                action,
            )
            .await
            .expect("rule")
    }

    fn enrol_in(&self, campaign_id: &str) -> Action {
        Action::Enrol {
            campaign_id: campaign_id.into(),
            contact: ContactMapping {
                phone: "properties.phone".into(),
                variables: BTreeMap::from([("name".to_owned(), "properties.firstname".to_owned())]),
                time_zone: None,
            },
        }
    }

    fn call_action(&self) -> Action {
        Action::Call {
            agent_id: self.agent.clone(),
            contact: ContactMapping {
                phone: "properties.phone".into(),
                variables: BTreeMap::from([("name".to_owned(), "properties.firstname".to_owned())]),
                // The lead's own zone (else every zone of its country must be inside the window).
                time_zone: Some("properties.tz".into()),
            },
            hours: Some("09:00-20:00".into()),
            days: Some("all".into()),
            max_attempts: None,
            campaign_id: None,
        }
    }

    async fn campaign(&self, numbers: &[&str]) -> callbridge::store::Campaign {
        let contacts: Vec<NewContact> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| NewContact {
                line: i as u64 + 2,
                e164: E164::parse(n).expect("number"),
                zones: vec!["America/New_York".into()],
                variables: BTreeMap::new(),
            })
            .collect();
        self.store
            .create_campaign(
                &self.tenant,
                &CampaignSpec {
                    name: "renewals".into(),
                    agent_id: self.agent.clone(),
                    window: callbridge::campaign::window::CallingWindow::default().to_spec(),
                    dial_interval_ms: 0,
                    max_concurrent: 50,
                    max_attempts: 1,
                    retry_delay_s: 600,
                    voicemail: None,
                },
                &contacts,
                &[],
            )
            .await
            .expect("campaign")
    }

    async fn events(&self) -> Vec<callbridge::store::InboundEvent> {
        self.store
            .list_inbound_events(&self.tenant, None, 1000)
            .await
            .expect("events")
    }

    async fn second_node(&self) -> (SqlStore, InboundService) {
        let store = SqlStore::open_with(
            &self.url,
            StoreOptions {
                max_connections: 4,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("second connection pool");
        let service = service(&store, &self.keyring, &self.clock);
        (store, service)
    }

    async fn runner(&self, fake: &FakeTwilioRest) -> CampaignRunner {
        let rest = TwilioRest::new(
            &callbridge_testkit::loopback_policy(),
            &fake.base_url,
            ACCOUNT_SID,
            AUTH_TOKEN,
        )
        .expect("client");
        CampaignRunner::new(
            self.store.clone(),
            Dialer::new(rest, "http://127.0.0.1:9", AUTH_TOKEN),
            self.clock.clone(),
            Arc::new(Metrics::default()),
            RunnerOptions {
                node_id: "dialler".into(),
                lease: Duration::from_secs(60),
                ..RunnerOptions::default()
            },
        )
        .expect("runner")
    }
}

async fn a_restart_between_store_and_process_loses_nothing(db: &TestDb) {
    let env = env(db).await;
    let campaign = env.campaign(&[]).await;
    env.rule("enrol", env.enrol_in(&campaign.id)).await;
    env.deliver(&env.service, "lead-1", LEAD, "Ana").await;
    // The process stops here: stored, acknowledged, not processed. A new process (new pool,
    // new service) picks it up.
    let (_store, restarted) = env.second_node().await;
    let report = restarted
        .process_due(&options("restarted"))
        .await
        .expect("pass");
    assert_eq!(report.done, 1);
    let contacts = env
        .store
        .campaign_contacts(&env.tenant, &campaign.id, -1, 10)
        .await
        .expect("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].e164.as_str(), LEAD);
    assert_eq!(
        contacts[0].variables.get("name").map(String::as_str),
        Some("Ana")
    );
    let events = env.events().await;
    assert_eq!(events[0].status, InboundStatus::Done);
    let actions = env
        .store
        .inbound_actions(&env.tenant, &events[0].id)
        .await
        .expect("actions");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].outcome, "enrolled");
    // A vendor retry after processing is a duplicate: nothing runs twice.
    env.deliver(&restarted, "lead-1", LEAD, "Ana").await;
    assert_eq!(
        restarted
            .process_due(&options("restarted"))
            .await
            .expect("pass")
            .leased,
        0
    );
}

async fn a_dead_nodes_lease_is_taken_over(db: &TestDb) {
    let env = env(db).await;
    let campaign = env.campaign(&[]).await;
    env.rule("enrol", env.enrol_in(&campaign.id)).await;
    env.deliver(&env.service, "lead-1", LEAD, "Ana").await;
    // Node "dead" leases the event and never finishes it.
    let now = env.clock.now_ms();
    let leased = env
        .store
        .claim_inbound_events("dead", now, 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(leased.len(), 1);
    let (_store, live) = env.second_node().await;
    assert_eq!(
        live.process_due(&options("live"))
            .await
            .expect("pass")
            .leased,
        0,
        "lease held"
    );
    env.clock.advance(chrono::Duration::seconds(61));
    let report = live.process_due(&options("live")).await.expect("pass");
    assert_eq!(report.done, 1);
    // The dead node's late finish is refused: it no longer holds the lease.
    assert!(
        !env.store
            .finish_inbound_event(&leased[0].id, "dead", None, None, now)
            .await
            .expect("finish")
    );
    assert_eq!(env.events().await[0].status, InboundStatus::Done);
}

async fn two_nodes_process_each_event_once(db: &TestDb) {
    let env = env(db).await;
    let campaign = env.campaign(&[]).await;
    env.rule("enrol", env.enrol_in(&campaign.id)).await;
    let numbers: Vec<String> = (0..24)
        .map(|i| format!("+1415555{:04}", 2600 + i))
        .collect();
    for (i, number) in numbers.iter().enumerate() {
        env.deliver(&env.service, &format!("lead-{i}"), number, "Ana")
            .await;
    }
    let (_store, other) = env.second_node().await;
    let run = |service: InboundService, node: &'static str| async move {
        let mut done = 0;
        loop {
            let mut o = options(node);
            o.batch = 3;
            let report = service.process_due(&o).await.expect("pass");
            if report.leased == 0 {
                break done;
            }
            done += report.done;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(run(env.service.clone(), "node-a")),
        tokio::spawn(run(other, "node-b"))
    );
    let (a, b) = (a.expect("node a"), b.expect("node b"));
    assert_eq!(
        a + b,
        numbers.len(),
        "each event processed exactly once ({a} + {b})"
    );
    for event in env.events().await {
        assert_eq!(event.status, InboundStatus::Done);
        assert_eq!(event.attempts, 1, "never processed twice");
        let actions = env
            .store
            .inbound_actions(&env.tenant, &event.id)
            .await
            .expect("actions");
        assert_eq!(actions.len(), 1);
    }
    let contacts = env
        .store
        .campaign_contacts(&env.tenant, &campaign.id, -1, 100)
        .await
        .expect("contacts");
    assert_eq!(contacts.len(), numbers.len());
}

async fn failures_retry_with_backoff_then_fail_and_replay(db: &TestDb) {
    let env = env(db).await;
    // A row whose payload cannot be read fails every attempt.
    let (event, _) = env
        .store
        .store_inbound_event(
            &NewInboundEvent {
                tenant: &env.tenant,
                source_id: "crm",
                vendor_event_id: "broken",
                event_type: "lead.created",
                verified_by: "standard-webhooks-v1",
                payload: "{not json",
            },
            env.clock.now_ms(),
        )
        .await
        .expect("stored");
    let o = options("n1");
    let first = env.service.process_due(&o).await.expect("pass");
    assert_eq!(first.retried, 1);
    assert_eq!(
        env.service.process_due(&o).await.expect("pass").leased,
        0,
        "backing off"
    );
    env.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(env.service.process_due(&o).await.expect("pass").retried, 1);
    env.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(
        env.service.process_due(&o).await.expect("pass").leased,
        0,
        "4 s after the 2nd"
    );
    env.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(env.service.process_due(&o).await.expect("pass").failed, 1);
    let failed = env
        .store
        .inbound_event(&env.tenant, &event.id)
        .await
        .expect("event");
    assert_eq!(failed.status, InboundStatus::Failed);
    assert!(failed.last_error.is_some());
    let replayed = env
        .service
        .replay(&env.tenant, &event.id)
        .await
        .expect("replay");
    assert_eq!(replayed.status, InboundStatus::Pending);
    assert_eq!(replayed.attempts, 0);
    assert!(
        env.service.replay(&env.tenant, &event.id).await.is_err(),
        "pending: no replay"
    );
    assert_eq!(env.service.process_due(&o).await.expect("pass").retried, 1);
}

async fn a_call_rule_dials_within_the_window_with_mapped_variables(db: &TestDb) {
    let env = env(db).await;
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio REST");
    let rule = env.rule("speed to lead", env.call_action()).await;
    env.deliver(&env.service, "lead-1", LEAD, "Ana").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let runner = env.runner(&fake).await;
    let report = runner.tick().await.expect("tick");
    assert_eq!(report.placed, 1, "{report:?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].param("To"), Some(LEAD));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let action: Action = serde_json::from_str(&rule.action).expect("action");
    let Action::Call {
        campaign_id: Some(campaign_id),
        ..
    } = action
    else {
        panic!("the call rule has its campaign");
    };
    let contact = &env
        .store
        .campaign_contacts(&env.tenant, &campaign_id, -1, 10)
        .await
        .expect("contacts")[0];
    let call = env
        .store
        .outbound_call(contact.call_id.as_deref().expect("call"))
        .await
        .expect("outbound call");
    assert_eq!(call.variables.get("name").map(String::as_str), Some("Ana"));
    let event = &env.events().await[0];
    let actions = env
        .store
        .inbound_actions(&env.tenant, &event.id)
        .await
        .expect("actions");
    assert_eq!(actions[0].action, "call");
    assert!(
        actions[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("due now")),
        "{actions:?}"
    );
    // On the do-not-call list: the rule records the refusal and nothing is dialled.
    env.store
        .add_do_not_call(
            &env.tenant,
            &E164::parse("+14155552672").expect("n"),
            "asked",
        )
        .await
        .expect("dnc");
    env.deliver(&env.service, "lead-2", "+14155552672", "Bo")
        .await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let event = env
        .events()
        .await
        .into_iter()
        .find(|e| e.vendor_event_id == "lead-2")
        .expect("e");
    let actions = env
        .store
        .inbound_actions(&env.tenant, &event.id)
        .await
        .expect("actions");
    assert_eq!(actions[0].outcome, "do_not_call");
    runner.tick().await.expect("tick");
    assert_eq!(fake.calls().len(), 1);
}

async fn a_lead_at_night_is_called_when_the_window_opens(db: &TestDb) {
    let env = env(db).await;
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio REST");
    env.clock
        .set(local(New_York, 2026, 6, 10, 23, 0).expect("23:00"));
    env.rule("speed to lead", env.call_action()).await;
    env.deliver(&env.service, "lead-night", LEAD, "Ana").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let event = &env.events().await[0];
    let actions = env
        .store
        .inbound_actions(&env.tenant, &event.id)
        .await
        .expect("actions");
    assert_eq!(actions[0].outcome, "enrolled");
    assert!(
        actions[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("deferred")),
        "{actions:?}"
    );
    let runner = env.runner(&fake).await;
    runner.tick().await.expect("tick");
    assert!(fake.calls().is_empty(), "no call at 23:00 local");
    env.clock
        .set(local(New_York, 2026, 6, 11, 8, 59).expect("08:59"));
    runner.tick().await.expect("tick");
    assert!(fake.calls().is_empty(), "no call before 09:00 local");
    env.clock
        .set(local(New_York, 2026, 6, 11, 9, 0).expect("09:00"));
    let report = runner.tick().await.expect("tick");
    assert_eq!(report.placed, 1, "deferred, not dropped: {report:?}");
    assert_eq!(fake.calls()[0].param("To"), Some(LEAD));
}

async fn sms_stop_puts_the_number_on_the_do_not_call_list(db: &TestDb) {
    let env = env(db).await;
    let campaign = env.campaign(&[LEAD, "+14155552672"]).await;
    env.service
        .create_source(&env.tenant, "sms", "twilio", None)
        .await
        .expect("twilio source");
    let form = vec![
        ("MessageSid".to_owned(), "SM0001".to_owned()),
        ("From".to_owned(), LEAD.to_owned()),
        ("To".to_owned(), "+15005550006".to_owned()),
        ("Body".to_owned(), " stop ".to_owned()),
    ];
    let url = "https://bridge.example.com/hooks/acme/sms";
    let headers = vec![(
        "X-Twilio-Signature".to_owned(),
        callbridge::twilio::signature::compute(AUTH_TOKEN, url, &form),
    )];
    let body = serde_urlencoded::to_string(&form).expect("form");
    env.service
        .receive(
            "acme",
            "sms",
            &Delivery {
                method: "POST",
                url,
                headers: &headers,
                body: body.as_bytes(),
            },
        )
        .await
        .expect("stored");
    env.service.process_due(&options("n1")).await.expect("pass");
    let lead = E164::parse(LEAD).expect("number");
    assert!(
        env.store
            .is_do_not_call(&env.tenant, &lead)
            .await
            .expect("dnc")
    );
    let contacts = env
        .store
        .campaign_contacts(&env.tenant, &campaign.id, -1, 10)
        .await
        .expect("contacts");
    let stopped = contacts.iter().find(|c| c.e164 == lead).expect("lead");
    assert_eq!(stopped.state, ContactState::Done);
    assert_eq!(stopped.outcome.as_deref(), Some("opted_out"));
    let other = contacts.iter().find(|c| c.e164 != lead).expect("other");
    assert_eq!(
        other.state,
        ContactState::Pending,
        "other numbers untouched"
    );
    let event = &env.events().await[0];
    let actions = env
        .store
        .inbound_actions(&env.tenant, &event.id)
        .await
        .expect("actions");
    assert_eq!(actions[0].rule_id, "builtin:sms-opt-out");
    assert_eq!(actions[0].outcome, "added_to_do_not_call");
}

async fn a_cancelled_booking_cancels_pending_calls(db: &TestDb) {
    let env = env(db).await;
    let campaign = env.campaign(&[LEAD]).await;
    env.service
        .create_rule(
            &env.tenant,
            "booking cancelled",
            "crm",
            "lead.created",
            vec![Condition {
                path: "properties.firstname".into(),
                equals: Some("Cancelled".into()),
                ..Condition::default()
            }],
            Action::CancelCalls {
                phone: "properties.phone".into(),
            },
        )
        .await
        .expect("rule");
    // The filter does not match: nothing happens, nothing recorded.
    env.deliver(&env.service, "b-1", LEAD, "Ana").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let contact = &env
        .store
        .campaign_contacts(&env.tenant, &campaign.id, -1, 10)
        .await
        .expect("contacts")[0];
    assert_eq!(contact.state, ContactState::Pending);
    env.deliver(&env.service, "b-2", LEAD, "Cancelled").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let contact = &env
        .store
        .campaign_contacts(&env.tenant, &campaign.id, -1, 10)
        .await
        .expect("contacts")[0];
    assert_eq!(contact.state, ContactState::Done);
    assert_eq!(contact.outcome.as_deref(), Some("cancelled_by_event"));
}

async fn a_message_rule_sends_once_per_event_and_never_to_opted_out_numbers(db: &TestDb) {
    use callbridge::notify::worker::{NotificationWorker, NotifyWorkerOptions};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let env = env(db).await;
    let twilio = MockServer::start().await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"
        })))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let vault = Vault::new(env.store.clone(), env.keyring.clone());
    for (vendor, base_url, secret) in [
        (
            "twilio_sms",
            Some(twilio.uri()),
            serde_json::json!({"account_sid": ACCOUNT_SID, "auth_token": "tok", "from": "+14155550100"}),
        ),
        (
            "slack",
            None,
            serde_json::json!({"webhook_url": format!("{}/services/T1/B1/secret", slack.uri())}),
        ),
    ] {
        let name = format!("{vendor}-credentials");
        vault
            .put(
                &env.tenant,
                &name,
                vendor,
                &SecretString::from(secret.to_string()),
            )
            .await
            .expect("secret");
        env.store
            .put_connector(
                &env.tenant,
                &callbridge::store::ConnectorSpec {
                    vendor: vendor.into(),
                    base_url,
                    secret_name: Some(name),
                },
            )
            .await
            .expect("connector");
    }
    let to_lead: Action = serde_json::from_value(serde_json::json!({
        "type": "message", "channel": "sms", "to": "properties.phone",
        "text": "Hi {{var.name}}, thanks for your enquiry. We will call you shortly.",
        "variables": {"name": "properties.firstname"}
    }))
    .expect("action");
    let to_staff: Action = serde_json::from_value(serde_json::json!({
        "type": "message", "channel": "slack",
        "text": "New lead: {{var.name}}", "variables": {"name": "properties.firstname"}
    }))
    .expect("action");
    let sms_rule = env.rule("text the lead", to_lead).await;
    env.rule("tell the team", to_staff).await;

    // The vendor delivers the lead twice; a second lead has opted out.
    let opted_out = "+14155552672";
    env.store
        .add_do_not_call(&env.tenant, &E164::parse(opted_out).expect("e164"), "asked")
        .await
        .expect("dnc");
    env.deliver(&env.service, "msg_lead", LEAD, "Ana").await;
    env.deliver(&env.service, "msg_lead", LEAD, "Ana").await;
    env.deliver(&env.service, "msg_out", opted_out, "Bo").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    // A replay of the processed event (an operator's retry) sends nothing more.
    let events = env.events().await;
    assert_eq!(events.len(), 2);
    for event in &events {
        env.service
            .replay(&env.tenant, &event.id)
            .await
            .expect("replay");
    }
    env.service.process_due(&options("n2")).await.expect("pass");

    let worker = NotificationWorker::new(
        env.store.clone(),
        Some(env.keyring.clone()),
        callbridge_testkit::loopback_policy(),
        None,
        NotifyWorkerOptions::default(),
    );
    while !worker.run_once().await.expect("poll").is_empty() {}

    let sms: Vec<Vec<(String, String)>> = twilio
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).expect("form"))
        .collect();
    assert_eq!(sms.len(), 1, "one SMS: the lead's, once");
    let field = |name: &str| {
        sms[0]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("To").as_deref(), Some(LEAD));
    assert_eq!(
        field("Body").as_deref(),
        Some("Hi Ana, thanks for your enquiry. We will call you shortly.")
    );
    let posts = slack.received_requests().await.expect("recorded");
    assert_eq!(posts.len(), 2, "one Slack post per event");
    let texts: Vec<String> = posts
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("New lead: Ana")),
        "{texts:?}"
    );

    let outcome_of = |event: &callbridge::store::InboundEvent| {
        let store = env.store.clone();
        let tenant = env.tenant.clone();
        let id = event.id.clone();
        let rule = sms_rule.id.clone();
        async move {
            store
                .inbound_actions(&tenant, &id)
                .await
                .expect("actions")
                .into_iter()
                .find(|a| a.rule_id == rule)
                .map(|a| a.outcome)
        }
    };
    for event in &events {
        let outcome = outcome_of(event).await;
        if event.vendor_event_id == "msg_out" {
            assert_eq!(outcome.as_deref(), Some("do_not_call"));
        } else {
            assert_eq!(outcome.as_deref(), Some("enqueued"));
        }
    }

    // A verified WhatsApp message opens the sender's 24-hour window.
    let vector = fixture("whatsapp");
    env.service
        .create_source(
            &env.tenant,
            "whatsapp",
            "whatsapp",
            Some(SecretString::from(
                vector["secret"].as_str().expect("secret"),
            )),
        )
        .await
        .expect("source");
    let headers = vector_headers(&vector);
    let body = vector["body"].as_str().expect("body");
    env.service
        .receive(
            "acme",
            "whatsapp",
            &Delivery {
                method: "POST",
                url: "https://bridge.example.com/hooks/acme/whatsapp",
                headers: &headers,
                body: body.as_bytes(),
            },
        )
        .await
        .expect("stored");
    env.service.process_due(&options("n1")).await.expect("pass");
    let last = env
        .store
        .last_inbound_message(&env.tenant, "whatsapp", "+16505551234")
        .await
        .expect("window");
    assert_eq!(last.map(|t| t.as_millisecond()), Some(1_749_416_383_000));
}

/// A `twilio_sms` connector that names no sender (no `from`, no Messaging Service): a `message`
/// rule's SMS goes from the tenant's own number, as `send_message` sends from the dialled one;
/// without a number the rule is refused when written.
async fn an_sms_rule_sends_from_the_tenants_number_and_needs_a_sender(db: &TestDb) {
    use callbridge::notify::worker::{NotificationWorker, NotifyWorkerOptions};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let env = env(db).await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"
        })))
        .mount(&twilio)
        .await;
    let vault = Vault::new(env.store.clone(), env.keyring.clone());
    connect(
        &env.store,
        &vault,
        &env.tenant,
        "twilio_sms",
        Some(twilio.uri()),
        serde_json::json!({"account_sid": ACCOUNT_SID, "auth_token": "tok"}),
    )
    .await;
    let to_lead = || -> Action {
        serde_json::from_value(serde_json::json!({
            "type": "message", "channel": "sms", "to": "properties.phone",
            "text": "Thanks {{var.name}}, we will call you shortly.",
            "variables": {"name": "properties.firstname"}
        }))
        .expect("action")
    };
    env.store
        .remove_number(
            &env.tenant,
            &E164::parse(callbridge_testkit::CALLED_NUMBER).expect("number"),
        )
        .await
        .expect("number removed");
    let refused = env
        .service
        .create_rule(
            &env.tenant,
            "text the lead",
            "crm",
            "lead.created",
            Vec::new(),
            to_lead(),
        )
        .await
        .expect_err("no sender");
    assert!(
        refused.to_string().contains("an SMS needs a sender"),
        "{refused}"
    );
    assert!(
        env.store
            .list_inbound_rules(&env.tenant, None)
            .await
            .expect("rules")
            .is_empty()
    );

    let own = E164::parse("+14155550100").expect("number");
    env.store
        .add_number(&env.tenant, &own, &env.agent)
        .await
        .expect("number added");
    env.rule("text the lead", to_lead()).await;
    env.deliver(&env.service, "msg_lead", LEAD, "Ana").await;
    env.service.process_due(&options("n1")).await.expect("pass");
    let worker = NotificationWorker::new(
        env.store.clone(),
        Some(env.keyring.clone()),
        callbridge_testkit::loopback_policy(),
        None,
        NotifyWorkerOptions::default(),
    );
    let outcomes = worker.run_once().await.expect("poll");
    assert_eq!(outcomes.len(), 1);
    let sms: Vec<Vec<(String, String)>> = twilio
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).expect("form"))
        .collect();
    assert_eq!(sms.len(), 1, "{outcomes:?}");
    let field = |name: &str| {
        sms[0]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("From").as_deref(), Some(own.as_str()));
    assert_eq!(field("To").as_deref(), Some(LEAD));
}

//! Messaging end to end, in one test binary: the `send_message` tool through the real resolver,
//! vault and store against 127.0.0.1 mocks of Twilio Messages and the WhatsApp Cloud API
//! (recipient rules, opt-outs, limits, the WhatsApp window, one send per tool call), and staff
//! notifications through the durable outbox with deduplication in the store — across a restart
//! and across two store handles (two nodes), on SQLite and PostgreSQL — delivered by the worker.

#[allow(unused_macros)]
mod store_harness;

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig};
use callbridge::egress::EgressPolicy;
use callbridge::notify::worker::{NotificationWorker, NotifyOutcome, NotifyWorkerOptions};
use callbridge::notify::{Notice, Notifier, NotifyEvent};
use callbridge::store::{
    ConnectorSpec, E164, MessagingSettings, NewTenant, OutboxStatus, SqlStore, StaffRecipient,
    Store, StoreOptions, TemplateSetting, TenantId,
};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge::tools::ToolContext;
use callbridge::tools::invoke::ToolRuntime;
use callbridge::tools::store_ledger::StoreLedger;
use callbridge_testkit::fake_twilio_rest::OperationSchema;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const CALLER: &str = "+14155552671";
const CALLED: &str = "+14155550100";
const STAFF: &str = "+442079460958";

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy")
}

async fn tenant(store: &SqlStore, id: &str) -> TenantId {
    let id = TenantId::parse(id).expect("id");
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: "Acme Dental".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .expect("tenant");
    id
}

async fn configure(
    store: &SqlStore,
    keyring: &Keyring,
    tenant: &TenantId,
    vendor: &str,
    base_url: Option<String>,
    secret: Value,
) {
    let name = format!("{vendor}-credentials");
    Vault::new(store.clone(), keyring.clone())
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
            &ConnectorSpec {
                vendor: vendor.into(),
                base_url,
                secret_name: Some(name),
            },
        )
        .await
        .expect("connector");
}

fn twilio_answer() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"
    }))
}

fn whatsapp_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "14155552671", "wa_id": "14155552671"}],
        "messages": [{"id": "wamid.HBgLMTQxNTU1NTI2NzEVAgARGBI"}]
    }))
}

/// The SMS forms the Twilio mock received, each checked against `CreateMessage`'s form schema.
async fn sms_forms(server: &MockServer) -> Vec<Vec<(String, String)>> {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            callbridge_testkit::contract::specs_dir().join("twilio_sms/api_v2010_messages.json"),
        )
        .expect("spec"),
    )
    .expect("json");
    let schema =
        OperationSchema::from_spec(&spec, "/2010-04-01/Accounts/{AccountSid}/Messages.json")
            .expect("schema");
    server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("form");
            assert!(schema.check(&form).is_empty(), "{:?}", schema.check(&form));
            form
        })
        .collect()
}

struct Bench {
    store: SqlStore,
    tenant: TenantId,
    runtime: ToolRuntime,
    twilio: MockServer,
    whatsapp: MockServer,
}

/// A tenant with Twilio SMS, WhatsApp and an SMTP relay connected, and messaging settings.
async fn bench() -> Bench {
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant(&store, "acme-dental").await;
    let twilio = MockServer::start().await;
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        )))
        .respond_with(twilio_answer())
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .respond_with(whatsapp_answer())
        .mount(&whatsapp)
        .await;
    configure(
        &store,
        &keyring,
        &tenant,
        "twilio_sms",
        Some(twilio.uri()),
        json!({"account_sid": ACCOUNT, "auth_token": "tok"}),
    )
    .await;
    configure(
        &store,
        &keyring,
        &tenant,
        "whatsapp",
        Some(format!("{}/", whatsapp.uri())),
        json!({"access_token": "EAAtest", "phone_number_id": "106540352242922"}),
    )
    .await;
    configure(
        &store,
        &keyring,
        &tenant,
        "smtp",
        None,
        json!({"host": "127.0.0.1", "port": 2525, "security": "none", "from": "desk@clinic.example"}),
    )
    .await;
    store
        .put_messaging_settings(
            &tenant,
            &MessagingSettings {
                staff: vec![StaffRecipient {
                    name: "Front desk".into(),
                    channel: "sms".into(),
                    address: STAFF.into(),
                }],
                per_call_limit: 2,
                email_domains: vec!["clinic.example".into()],
                whatsapp_template: Some(TemplateSetting {
                    name: "caller_message".into(),
                    language: "en_US".into(),
                }),
                ..MessagingSettings::default()
            },
        )
        .await
        .expect("settings");
    let runtime = ToolRuntime {
        store: store.clone(),
        keyring: Some(keyring),
        policy: policy(),
        ledger: std::sync::Arc::new(StoreLedger::new(store.clone())),
        deadline: Duration::from_secs(5),
        oauth: None,
    };
    Bench {
        store,
        tenant,
        runtime,
        twilio,
        whatsapp,
    }
}

fn context(call: &str, tool_call: &str) -> ToolContext {
    ToolContext {
        call_sid: call.into(),
        caller: CALLER.into(),
        called: CALLED.into(),
        tool_call_id: tool_call.into(),
        call_started: None,
        inbound: None,
    }
}

impl Bench {
    async fn send(&self, call: &str, tool_call: &str, args: Value) -> (Value, &'static str) {
        let resolved = self
            .runtime
            .resolve(&self.tenant, &["send_message".to_owned()])
            .await
            .expect("resolves");
        assert!(
            resolved.unavailable.is_empty(),
            "{:?}",
            resolved.unavailable
        );
        let (output, outcome) = resolved
            .registry
            .run(context(call, tool_call), "send_message", &args.to_string())
            .await;
        let output: Value = serde_json::from_str(&output).unwrap_or(Value::String(output));
        // `{"ok": true, "result": …}` on success: the tool's own answer.
        match output.get("result") {
            Some(result) => (result.clone(), outcome),
            None => (output, outcome),
        }
    }
}

#[tokio::test]
async fn an_sms_to_the_caller_goes_out_once_per_tool_call_with_its_text() {
    let bench = bench().await;
    let args = json!({"recipient": "caller", "channel": "sms", "text": "Booked: Tuesday 10:00."});
    let (output, outcome) = bench.send("CA1", "call_1", args.clone()).await;
    assert_eq!(outcome, "ok", "{output}");
    assert_eq!(output["text"], "Booked: Tuesday 10:00.");
    assert_eq!(output["channel"], "sms");
    assert!(
        !output.to_string().contains("5552671"),
        "the number is masked: {output}"
    );
    // The model repeats the call (a reconnect replay): the ledger answers, nothing is sent.
    let (again, outcome) = bench.send("CA1", "call_1", args).await;
    assert_eq!(outcome, "ok");
    assert_eq!(again, output);
    let forms = sms_forms(&bench.twilio).await;
    assert_eq!(forms.len(), 1, "one SMS");
    assert!(forms[0].contains(&("To".into(), CALLER.into())));
    assert!(forms[0].contains(&("From".into(), CALLED.into())));
    assert!(forms[0].contains(&("Body".into(), "Booked: Tuesday 10:00.".into())));
}

#[tokio::test]
async fn only_the_caller_or_configured_staff_can_be_messaged() {
    let bench = bench().await;
    let resolved = bench
        .runtime
        .resolve(&bench.tenant, &["send_message".to_owned()])
        .await
        .expect("resolves");
    let declaration = resolved
        .registry
        .declarations()
        .into_iter()
        .find(|d| d.name == "send_message")
        .expect("declared");
    assert_eq!(
        declaration.parameters["properties"]["recipient"]["enum"],
        json!(["caller", "Front desk"])
    );
    for invented in [
        json!({"recipient": "+14155559999", "text": "hi"}),
        json!({"recipient": "boss@evil.example", "channel": "email", "text": "hi"}),
        json!({"recipient": "caller", "channel": "email", "caller_email": "ann@evil.example", "text": "hi"}),
        json!({"recipient": "caller", "channel": "email", "caller_email": "not an address", "text": "hi"}),
        json!({"recipient": "caller", "channel": "fax", "text": "hi"}),
        json!({"recipient": "caller", "text": ""}),
    ] {
        let (output, outcome) = bench.send("CA1", "call_x", invented.clone()).await;
        assert_ne!(outcome, "ok", "{invented} → {output}");
    }
    let (output, outcome) = bench
        .send(
            "CA1",
            "call_2",
            json!({"recipient": "front desk", "text": "Ann called about a refund."}),
        )
        .await;
    assert_eq!(outcome, "ok", "{output}");
    let forms = sms_forms(&bench.twilio).await;
    assert_eq!(forms.len(), 1, "only the staff message went out");
    assert!(forms[0].contains(&("To".into(), STAFF.into())));
}

#[tokio::test]
async fn opted_out_numbers_and_the_per_call_limit_are_respected() {
    let bench = bench().await;
    let sms = |text: &str| json!({"recipient": "caller", "channel": "sms", "text": text});
    assert_eq!(bench.send("CA1", "c1", sms("one")).await.1, "ok");
    assert_eq!(bench.send("CA1", "c2", sms("two")).await.1, "ok");
    let (output, outcome) = bench.send("CA1", "c3", sms("three")).await;
    assert_ne!(outcome, "ok");
    assert!(output.to_string().contains("limit"), "{output}");
    // Another call has its own allowance.
    assert_eq!(bench.send("CA2", "c4", sms("four")).await.1, "ok");
    bench
        .store
        .add_do_not_call(
            &bench.tenant,
            &E164::parse(CALLER).expect("e164"),
            "opt_out",
        )
        .await
        .expect("dnc");
    let (output, outcome) = bench.send("CA3", "c5", sms("five")).await;
    assert_ne!(outcome, "ok");
    assert!(output.to_string().contains("opted out"), "{output}");
    assert_eq!(sms_forms(&bench.twilio).await.len(), 3);
}

#[tokio::test]
async fn whatsapp_sends_a_template_outside_the_window_and_text_inside_it() {
    let bench = bench().await;
    let args = |text: &str| json!({"recipient": "caller", "channel": "whatsapp", "text": text});
    let (output, outcome) = bench
        .send("CA1", "w1", args("Your booking is confirmed."))
        .await;
    assert_eq!(outcome, "ok", "{output}");
    assert_eq!(output["form"], "template");
    // The caller wrote an hour ago: the customer-service window is open.
    let an_hour_ago = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    bench
        .store
        .record_inbound_message(&bench.tenant, "whatsapp", CALLER, an_hour_ago)
        .await
        .expect("inbound");
    let (output, outcome) = bench.send("CA1", "w2", args("See you soon.")).await;
    assert_eq!(outcome, "ok", "{output}");
    assert_eq!(output["form"], "text");
    // 25 hours ago is outside it again (an older write never moves the time back).
    bench
        .store
        .record_inbound_message(
            &bench.tenant,
            "whatsapp",
            CALLER,
            an_hour_ago - 24 * 3_600_000,
        )
        .await
        .expect("older inbound ignored");
    let requests = bench.whatsapp.received_requests().await.expect("recorded");
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["type"], "template");
    assert_eq!(bodies[0]["template"]["name"], "caller_message");
    assert_eq!(
        bodies[0]["template"]["components"][0]["parameters"][0]["text"],
        "Your booking is confirmed."
    );
    assert_eq!(bodies[1]["type"], "text");
    assert_eq!(bodies[1]["text"]["body"], "See you soon.");
    callbridge_testkit::contract::Contract::load("whatsapp", &["messages_v23.json"])
        .variant("sendMessage", "#/components/schemas/TemplateMessage")
        .assert_requests(&requests[..1]);
}

// --- staff notifications -------------------------------------------------------------------------

fn booking_notice(subject: &str) -> Notice {
    Notice {
        event: NotifyEvent::BookingCreated,
        subject: subject.into(),
        body: "Ann Lee booked Tuesday 10:00.".into(),
        caller: Some(CALLER.into()),
        called: Some(CALLED.into()),
    }
}

/// A repeated event notifies once: on one handle, after a restart (a new handle on the same
/// database), from a second node (another handle) racing the first, and again only once the TTL
/// has passed.
async fn dedup_holds_across_restarts_and_nodes(db: store_harness::TestDb) {
    let store = db.store.clone();
    let acme = tenant(&store, "acme").await;
    store
        .add_notification_rule(&acme, "booking.created", "sms", STAFF)
        .await
        .expect("rule");
    store
        .add_notification_rule(&acme, "booking.created", "slack", "default")
        .await
        .expect("rule");
    let notice = booking_notice("Booking bk_1: Tuesday 10:00");
    assert_eq!(
        Notifier::new(store.clone())
            .emit(&acme, &notice)
            .await
            .expect("emit"),
        2
    );
    assert_eq!(
        Notifier::new(store.clone())
            .emit(&acme, &notice)
            .await
            .expect("emit"),
        0
    );
    // A restart: a new process opens the same database.
    let restarted = SqlStore::open_with(
        &db.url,
        StoreOptions {
            max_connections: 4,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("reopen");
    assert_eq!(
        Notifier::new(restarted.clone())
            .emit(&acme, &notice)
            .await
            .expect("emit"),
        0
    );
    // Two nodes race on a new event: exactly one enqueues each rule's notification.
    let fresh = booking_notice("Booking bk_2: Wednesday 11:00");
    let mut racers = Vec::new();
    for i in 0..8 {
        let handle = if i % 2 == 0 {
            store.clone()
        } else {
            restarted.clone()
        };
        let (acme, fresh) = (acme.clone(), fresh.clone());
        racers.push(tokio::spawn(async move {
            Notifier::new(handle)
                .emit(&acme, &fresh)
                .await
                .expect("emit")
        }));
    }
    let mut total = 0;
    for racer in racers {
        total += racer.await.expect("joined");
    }
    assert_eq!(total, 2, "one notification per rule across both nodes");
    assert_eq!(
        store
            .list_notifications(&acme, 50)
            .await
            .expect("list")
            .len(),
        4
    );
    // The TTL is the tenant's: once it has passed, the same event notifies again.
    store
        .put_messaging_settings(
            &acme,
            &MessagingSettings {
                dedup_ttl_secs: 0,
                ..MessagingSettings::default()
            },
        )
        .await
        .expect("settings");
    let again = booking_notice("Booking bk_3: Friday 09:00");
    assert_eq!(
        Notifier::new(store.clone())
            .emit(&acme, &again)
            .await
            .expect("emit"),
        2
    );
    assert_eq!(
        Notifier::new(restarted.clone())
            .emit(&acme, &again)
            .await
            .expect("emit"),
        2
    );
    // Rows stay in their tenant.
    let other = tenant(&store, "other").await;
    assert!(
        store
            .list_notifications(&other, 50)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_dedup_holds_across_restarts_and_nodes() {
    dedup_holds_across_restarts_and_nodes(store_harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_dedup_holds_across_restarts_and_nodes() {
    if let Some(db) = store_harness::postgres().await {
        dedup_holds_across_restarts_and_nodes(db).await;
    }
}

/// Notifications wait in the outbox through a restart and are delivered once by whichever node's
/// worker claims them; a failure is retried later, an opted-out number is given up.
async fn the_outbox_delivers_after_a_restart(db: store_harness::TestDb) {
    let store = db.store.clone();
    let keyring = Keyring::new(MasterKey::generate());
    let acme = tenant(&store, "acme").await;
    let twilio = MockServer::start().await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(twilio_answer())
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/secret"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/secret"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    configure(
        &store,
        &keyring,
        &acme,
        "twilio_sms",
        Some(twilio.uri()),
        json!({"account_sid": ACCOUNT, "auth_token": "tok", "from": CALLED}),
    )
    .await;
    configure(
        &store,
        &keyring,
        &acme,
        "slack",
        None,
        json!({"webhook_url": format!("{}/services/T1/B1/secret", slack.uri())}),
    )
    .await;
    for (channel, to) in [("sms", "caller"), ("slack", "default"), ("sms", STAFF)] {
        store
            .add_notification_rule(&acme, "booking.created", channel, to)
            .await
            .expect("rule");
    }
    store
        .add_do_not_call(&acme, &E164::parse(STAFF).expect("e164"), "asked")
        .await
        .expect("dnc");
    let notice = booking_notice("Booking bk_9: Tuesday 10:00");
    assert_eq!(
        Notifier::new(store.clone())
            .emit(&acme, &notice)
            .await
            .expect("emit"),
        3
    );
    // The process that enqueued is gone; another node's worker delivers.
    let other_node = SqlStore::open_with(
        &db.url,
        StoreOptions {
            max_connections: 4,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("open");
    let worker = NotificationWorker::new(
        other_node,
        Some(keyring),
        policy(),
        None,
        NotifyWorkerOptions::default(),
    );
    let mut outcomes: Vec<NotifyOutcome> = worker
        .run_once()
        .await
        .expect("poll")
        .into_iter()
        .map(|(_, outcome)| outcome)
        .collect();
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [
            NotifyOutcome::Delivered,
            NotifyOutcome::GaveUp,
            NotifyOutcome::RetryLater
        ]
    );
    let rows = store.list_notifications(&acme, 10).await.expect("rows");
    let by_channel = |channel: &str, status: OutboxStatus| {
        rows.iter()
            .filter(|r| r.channel == channel && r.status == status)
            .count()
    };
    assert_eq!(by_channel("sms", OutboxStatus::Delivered), 1);
    assert_eq!(
        by_channel("sms", OutboxStatus::Failed),
        1,
        "the opted-out staff number"
    );
    assert_eq!(
        by_channel("slack", OutboxStatus::Pending),
        1,
        "retried later"
    );
    // Nothing is due again yet: the retry waits for its backoff, nothing is sent twice.
    assert!(worker.run_once().await.expect("poll").is_empty());
    let forms = sms_forms(&twilio).await;
    assert_eq!(forms.len(), 1);
    assert!(
        forms[0].contains(&("To".into(), CALLER.into())),
        "the caller rule"
    );
    assert!(
        forms[0]
            .iter()
            .any(|(k, v)| k == "Body" && v.contains("Booking bk_9"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_outbox_delivers_after_a_restart() {
    the_outbox_delivers_after_a_restart(store_harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_outbox_delivers_after_a_restart() {
    if let Some(db) = store_harness::postgres().await {
        the_outbox_delivers_after_a_restart(db).await;
    }
}

/// Messages that are not about a call go from the tenant's own number when the `twilio_sms`
/// connector names no sender (the bench's names none): `callbridge notify test` and a
/// notification without a call (an opt-out by an operator).
#[tokio::test]
async fn a_test_sms_and_an_opt_out_notification_go_from_the_tenants_number() {
    use callbridge::connectors::messages::Channel;
    let b = bench().await;
    b.store
        .create_agent(
            &b.tenant,
            &callbridge_testkit::agent_spec("openai", "gpt-realtime", "alloy"),
            &[E164::parse(CALLED).expect("number")],
        )
        .await
        .expect("agent with the tenant's number");
    let id = callbridge::notify::send_test(
        &b.store,
        b.runtime.keyring.clone(),
        &b.runtime.policy,
        None,
        &b.tenant,
        Channel::Sms,
        Some(STAFF),
        "Test from the bridge",
    )
    .await
    .expect("test SMS sent");
    assert!(id.starts_with("SM"), "{id}");
    b.store
        .add_notification_rule(&b.tenant, "opt_out", "sms", STAFF)
        .await
        .expect("rule");
    callbridge::notify::emit_opt_out(&b.store, &b.tenant, CALLER, "by an operator").await;
    let worker = NotificationWorker::new(
        b.store.clone(),
        b.runtime.keyring.clone(),
        b.runtime.policy.clone(),
        None,
        NotifyWorkerOptions::default(),
    );
    let outcomes = worker.run_once().await.expect("poll");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1, NotifyOutcome::Delivered);
    let forms = sms_forms(&b.twilio).await;
    assert_eq!(forms.len(), 2);
    for form in &forms {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("From"), Some(CALLED), "{form:?}");
        assert_eq!(field("To"), Some(STAFF), "{form:?}");
    }
}

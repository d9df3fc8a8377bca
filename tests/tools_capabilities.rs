//! Capability tools end to end: a real SQLite store and vault hold the tenant's connector
//! configurations and sealed credentials, the resolver builds the registry, and every call goes
//! through `ToolRegistry::run` to local vendor mocks (base URLs overridden in the configuration).

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig};
use callbridge::egress::EgressPolicy;
use callbridge::store::{ConnectorSpec, NewTenant, SqlStore, Store, TenantId};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge::tools::ToolContext;
use callbridge::tools::ledger::{InMemoryLedger, SharedLedger};
use callbridge::tools::resolver::{Resolved, registry_for_agent, registry_for_agent_with};
use callbridge::tools::store_ledger::StoreLedger;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{
    body_partial_json, body_string_contains, header, method, path, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CALCOM_SLOTS: &str = include_str!("../fixtures/vendors/calcom/slots_range.json");
const CALCOM_BOOKING: &str = include_str!("../fixtures/vendors/calcom/booking.json");
const HUBSPOT_SEARCH_ONE: &str = include_str!("../fixtures/vendors/hubspot/search_one.json");
const HUBSPOT_UPSERT: &str = include_str!("../fixtures/vendors/hubspot/batch_upsert.json");
const HUBSPOT_CALL: &str = include_str!("../fixtures/vendors/hubspot/call.json");
const SHOPIFY_ORDER: &str = include_str!("../fixtures/vendors/shopify/order_by_name.json");
const SHOPIFY_PRODUCTS: &str = include_str!("../fixtures/vendors/shopify/products.json");
const CALENDLY_TIMES: &str = include_str!("../fixtures/vendors/calendly/available_times.json");

const ALL_TOOLS: [&str; 9] = [
    "check_availability",
    "book_appointment",
    "reschedule_appointment",
    "cancel_appointment",
    "find_contact",
    "upsert_contact",
    "log_call_note",
    "order_status",
    "search_products",
];

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

struct Bench {
    store: SqlStore,
    vault: Vault<SqlStore>,
    tenant: TenantId,
    calcom: MockServer,
    hubspot: MockServer,
    shopify: MockServer,
}

/// A tenant in New York with Cal.com, HubSpot and Shopify configured against local mocks.
async fn bench() -> Bench {
    let store = SqlStore::open("sqlite::memory:").await.expect("store");
    let vault = Vault::new(store.clone(), Keyring::new(MasterKey::generate()));
    let tenant = TenantId::parse("acme-dental").expect("id");
    store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: "Acme Dental".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .expect("tenant");
    let bench = Bench {
        store,
        vault,
        tenant,
        calcom: MockServer::start().await,
        hubspot: MockServer::start().await,
        shopify: MockServer::start().await,
    };
    // Several lengths: bookings name theirs (see `a_duplicated_booking_…`).
    callbridge_testkit::vendor_mocks::calcom_event_type(&bench.calcom, 100, 30, &[30, 60]).await;
    let calcom_uri = bench.calcom.uri();
    let hubspot_uri = bench.hubspot.uri();
    let shopify_uri = bench.shopify.uri();
    bench
        .configure(
            "calcom",
            &calcom_uri,
            r#"{"api_key": "cal_live_test_key", "event_type_id": 100}"#,
        )
        .await;
    bench
        .configure("hubspot", &hubspot_uri, "pat-na1-test-token")
        .await;
    bench
        .configure("shopify", &shopify_uri, "shpat_test_token")
        .await;
    bench
}

impl Bench {
    async fn configure(&self, vendor: &str, base_url: &str, secret: &str) {
        let secret_name = format!("{vendor}-credentials");
        self.vault
            .put(
                &self.tenant,
                &secret_name,
                vendor,
                &SecretString::from(secret.to_owned()),
            )
            .await
            .expect("secret");
        self.store
            .put_connector(
                &self.tenant,
                &ConnectorSpec {
                    vendor: vendor.into(),
                    base_url: Some(base_url.into()),
                    secret_name: Some(secret_name),
                },
            )
            .await
            .expect("connector");
    }

    async fn resolve_with(
        &self,
        policy: &HttpPolicy,
        ledger: SharedLedger,
        enabled: &[&str],
        deadline: Duration,
    ) -> Resolved {
        let enabled: Vec<String> = enabled.iter().map(|name| (*name).to_owned()).collect();
        registry_for_agent(
            &self.store,
            Some(&self.vault),
            policy,
            None,
            ledger,
            Arc::new(self.store.clone()),
            &self.tenant,
            &enabled,
            deadline,
        )
        .await
        .expect("resolved")
    }

    /// [`Bench::resolve`] with the SQL store the store-backed tools need (`create_coupon`'s
    /// daily slots).
    async fn resolve_with_store(&self, enabled: &[&str]) -> Resolved {
        let policy = HttpPolicy::new(PolicyConfig {
            egress: EgressPolicy::allow_loopback(),
            ..PolicyConfig::default()
        })
        .expect("policy");
        let enabled: Vec<String> = enabled.iter().map(|name| (*name).to_owned()).collect();
        registry_for_agent_with(
            &self.store,
            Some(&self.vault),
            &policy,
            None,
            Arc::new(InMemoryLedger::default()),
            Arc::new(self.store.clone()),
            Some(&self.store),
            &self.tenant,
            &enabled,
            Duration::from_secs(5),
        )
        .await
        .expect("resolved")
    }

    async fn resolve(&self, enabled: &[&str]) -> Resolved {
        let policy = HttpPolicy::new(PolicyConfig {
            egress: EgressPolicy::allow_loopback(),
            ..PolicyConfig::default()
        })
        .expect("policy");
        self.resolve_with(
            &policy,
            Arc::new(InMemoryLedger::default()),
            enabled,
            Duration::from_secs(5),
        )
        .await
    }
}

fn context(call_sid: &str, tool_call_id: &str) -> ToolContext {
    ToolContext {
        call_sid: call_sid.into(),
        caller: "+18779290687".into(),
        called: "+12025550101".into(),
        tool_call_id: tool_call_id.into(),
        // The call began 95 seconds before its tools run (log_call_note's duration).
        call_started: Some(chrono::Utc::now() - chrono::Duration::seconds(95)),
        inbound: Some(true),
    }
}

async fn run(
    resolved: &Resolved,
    context: ToolContext,
    tool: &str,
    args: Value,
) -> (Value, String) {
    let (output, label) = resolved
        .registry
        .run(context, tool, &args.to_string())
        .await;
    (
        serde_json::from_str(&output).expect("output is JSON"),
        label.to_owned(),
    )
}

async fn requests_to(server: &MockServer, http_method: &str, to: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.method.as_str() == http_method && request.url.path() == to)
        .map(|request| serde_json::from_slice(&request.body).unwrap_or(Value::Null))
        .collect()
}

/// Runs `tool` and expects "ok", then replays it under a new tool-call id (as after a provider
/// reconnect) and expects the stored result; returns that result.
async fn run_then_replay(resolved: &Resolved, call_sid: &str, tool: &str, args: Value) -> Value {
    let (first, label) = run(
        resolved,
        context(call_sid, "call_first"),
        tool,
        args.clone(),
    )
    .await;
    assert_eq!(label, "ok", "{first}");
    let (replay, _) = run(resolved, context(call_sid, "call_replay"), tool, args).await;
    assert_eq!(replay, first);
    first
}

fn booking_answer(uid: &str, status: &str, start: &str, end: &str) -> Value {
    let mut body = fixture(CALCOM_BOOKING);
    body["data"]["uid"] = json!(uid);
    body["data"]["status"] = json!(status);
    body["data"]["start"] = json!(start);
    body["data"]["end"] = json!(end);
    body
}

#[tokio::test]
async fn every_configured_tool_is_offered() {
    let bench = bench().await;
    let resolved = bench.resolve(&ALL_TOOLS).await;
    let names: Vec<&str> = resolved.registry.names().collect();
    let mut expected = ALL_TOOLS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(
        resolved.unavailable.is_empty(),
        "{:?}",
        resolved.unavailable
    );
    let declarations = resolved.registry.declarations();
    for declaration in &declarations {
        assert!(
            declaration.parameters["type"] == "object",
            "{}",
            declaration.name
        );
        assert!(declaration.description.len() > 40, "{}", declaration.name);
    }
}

#[tokio::test]
async fn check_availability_offers_slots_spoken_in_the_business_zone() {
    let bench = bench().await;
    Mock::given(method("GET"))
        .and(path("/v2/slots"))
        .and(header("authorization", "Bearer cal_live_test_key"))
        .and(query_param("eventTypeId", "100"))
        .and(query_param("timeZone", "America/New_York"))
        .and(query_param("duration", "60"))
        // Local midnight in New York (EDT, UTC-4) to two days later.
        .and(query_param("start", "2050-09-05T04:00:00Z"))
        .and(query_param("end", "2050-09-07T04:00:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CALCOM_SLOTS)))
        .expect(1)
        .mount(&bench.calcom)
        .await;
    let resolved = bench.resolve(&["check_availability"]).await;
    let (output, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "check_availability",
        json!({"date": "2050-09-05", "days": 2, "duration_minutes": 60, "caller_time_zone": "Europe/London"}),
    )
    .await;
    assert_eq!(label, "ok", "{output}");
    let result = &output["result"];
    assert_eq!(result["business_time_zone"], "America/New_York");
    let slots = result["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 4);
    assert_eq!(slots[0]["start"], "2050-09-05T07:00:00Z");
    assert_eq!(
        slots[0]["spoken"],
        "Monday 5 September at 3:00 AM EDT (America/New_York)"
    );
    assert_eq!(
        slots[0]["spoken_for_caller"],
        "Monday 5 September at 8:00 AM BST (Europe/London)"
    );
}

#[tokio::test]
async fn a_duplicated_booking_reaches_the_vendor_once_per_phone_call() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(body_partial_json(json!({
            "start": "2050-09-05T14:00:00Z",
            "eventTypeId": 100,
            "lengthInMinutes": 30,
            "attendee": {"name": "Ann Lee", "email": "ann@example.com", "timeZone": "America/New_York", "phoneNumber": "+18779290687"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_answer(
            "bk-1",
            "accepted",
            "2050-09-05T14:00:00.000Z",
            "2050-09-05T14:30:00.000Z",
        )))
        .mount(&bench.calcom)
        .await;
    let resolved = bench.resolve(&["book_appointment"]).await;
    let args =
        json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"});
    let (first, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "book_appointment",
        args.clone(),
    )
    .await;
    assert_eq!(label, "ok", "{first}");
    assert_eq!(first["result"]["booking_id"], "bk-1");
    assert_eq!(first["result"]["status"], "confirmed");
    assert_eq!(
        first["result"]["when"],
        "Monday 5 September at 10:00 AM EDT (America/New_York)"
    );
    // The same tool call again, then a replay with a new id after a provider reconnect.
    let (repeat, _) = run(
        &resolved,
        context("CA1", "call_1"),
        "book_appointment",
        args.clone(),
    )
    .await;
    let (replay, _) = run(
        &resolved,
        context("CA1", "call_2"),
        "book_appointment",
        args.clone(),
    )
    .await;
    assert_eq!(repeat, first);
    assert_eq!(replay, first);
    let bookings = requests_to(&bench.calcom, "POST", "/v2/bookings").await;
    assert_eq!(bookings.len(), 1, "booked exactly once");
    let key = bookings[0]["metadata"]["callbridgeKey"]
        .as_str()
        .expect("the ledger's key goes to the vendor")
        .to_owned();
    assert_eq!(key.len(), 32);

    // Another phone call asking for the same thing is a new booking with another key.
    let (other, _) = run(
        &resolved,
        context("CA2", "call_5"),
        "book_appointment",
        args,
    )
    .await;
    assert_eq!(other["ok"], true);
    let bookings = requests_to(&bench.calcom, "POST", "/v2/bookings").await;
    assert_eq!(bookings.len(), 2);
    assert_ne!(bookings[1]["metadata"]["callbridgeKey"], json!(key));
}

#[tokio::test]
async fn two_nodes_sharing_the_store_ledger_book_once() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(booking_answer(
                    "bk-7",
                    "accepted",
                    "2050-09-05T14:00:00.000Z",
                    "2050-09-05T14:30:00.000Z",
                ))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&bench.calcom)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let node = |_: u8| {
        Arc::new(
            StoreLedger::new(bench.store.clone())
                .with_wait_limit(Duration::from_secs(5), Duration::from_millis(10)),
        ) as SharedLedger
    };
    let a = bench
        .resolve_with(
            &policy,
            node(1),
            &["book_appointment"],
            Duration::from_secs(5),
        )
        .await;
    let b = bench
        .resolve_with(
            &policy,
            node(2),
            &["book_appointment"],
            Duration::from_secs(5),
        )
        .await;
    let args =
        json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"});
    let (first, second) = tokio::join!(
        run(
            &a,
            context("CA1", "call_1"),
            "book_appointment",
            args.clone()
        ),
        run(&b, context("CA1", "call_9"), "book_appointment", args),
    );
    assert_eq!(first.1, "ok", "{}", first.0);
    assert_eq!(first.0, second.0);
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn reschedule_and_cancel_go_to_the_configured_calendar() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings/bk-1/reschedule"))
        .and(body_partial_json(json!({"start": "2050-09-06T15:00:00Z"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_answer(
            "bk-2",
            "accepted",
            "2050-09-06T15:00:00.000Z",
            "2050-09-06T15:30:00.000Z",
        )))
        .expect(1)
        .mount(&bench.calcom)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings/bk-2/cancel"))
        .and(body_partial_json(
            json!({"cancellationReason": "feeling better"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(booking_answer(
            "bk-2",
            "cancelled",
            "2050-09-06T15:00:00.000Z",
            "2050-09-06T15:30:00.000Z",
        )))
        .expect(1)
        .mount(&bench.calcom)
        .await;
    let resolved = bench
        .resolve(&["reschedule_appointment", "cancel_appointment"])
        .await;
    let (moved, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "reschedule_appointment",
        json!({"booking_id": "bk-1", "new_start": "2050-09-06T15:00:00Z"}),
    )
    .await;
    assert_eq!(label, "ok", "{moved}");
    assert_eq!(moved["result"]["booking_id"], "bk-2");
    assert_eq!(
        moved["result"]["when"],
        "Tuesday 6 September at 11:00 AM EDT (America/New_York)"
    );
    for tool_call_id in ["call_2", "call_2", "call_3"] {
        let (cancelled, label) = run(
            &resolved,
            context("CA1", tool_call_id),
            "cancel_appointment",
            json!({"booking_id": "bk-2", "reason": "feeling better"}),
        )
        .await;
        assert_eq!(label, "ok", "{cancelled}");
        assert_eq!(
            cancelled["result"],
            json!({"cancelled": true, "booking_id": "bk-2"})
        );
    }
}

#[tokio::test]
async fn crm_tools_find_save_and_note_the_caller() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(header("authorization", "Bearer pat-na1-test-token"))
        .and(body_partial_json(json!({"filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+18779290687"}]},
            {"filters": [{"propertyName": "mobilephone", "operator": "EQ", "value": "+18779290687"}]},
        ]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_SEARCH_ONE)))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(body_partial_json(json!({"inputs": [{
            "id": "bcooper@biglytics.net",
            "idProperty": "email",
            "properties": {"firstname": "Bryan", "email": "bcooper@biglytics.net", "phone": "+18779290687"},
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_UPSERT)))
        .expect(1)
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/calls"))
        .and(body_partial_json(json!({
            "properties": {
                "hs_call_body": "Wants a cleaning next week.",
                "hs_call_status": "COMPLETED",
                "hs_call_direction": "INBOUND",
            },
            "associations": [{"to": {"id": "512"}}],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(HUBSPOT_CALL)))
        .expect(1)
        .mount(&bench.hubspot)
        .await;
    let resolved = bench
        .resolve(&["find_contact", "upsert_contact", "log_call_note"])
        .await;
    let (found, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "find_contact",
        json!({}),
    )
    .await;
    assert_eq!(label, "ok", "{found}");
    assert_eq!(
        found["result"],
        json!({"found": true, "contact": {
            "contact_id": "512", "first_name": "Bryan", "last_name": "Cooper",
            "has_email": true, "has_phone": true, "company": "Biglytics",
        }})
    );
    // What a caller may hear about a record is its name and company, never the stored email
    // or phone.
    assert!(!found.to_string().contains("biglytics"));

    let upsert = json!({"first_name": "Bryan", "email": "BCooper@biglytics.net"});
    for tool_call_id in ["call_2", "call_2"] {
        let (saved, label) = run(
            &resolved,
            context("CA1", tool_call_id),
            "upsert_contact",
            upsert.clone(),
        )
        .await;
        assert_eq!(label, "ok", "{saved}");
        assert_eq!(saved["result"]["saved"], true);
    }
    let note = json!({"note": "Wants a cleaning next week."});
    for tool_call_id in ["call_3", "call_4"] {
        let (noted, label) = run(
            &resolved,
            context("CA1", tool_call_id),
            "log_call_note",
            note.clone(),
        )
        .await;
        assert_eq!(label, "ok", "{noted}");
        assert_eq!(noted["result"]["note_id"], "9001");
        assert_eq!(noted["result"]["contact_id"], "512");
    }
    // The call started 95 seconds before the note: its duration so far, in milliseconds, and
    // its start as the call's time.
    let requests = bench.hubspot.received_requests().await.unwrap_or_default();
    let logged = requests
        .iter()
        .find(|r| r.url.path() == "/crm/v3/objects/calls")
        .expect("the call was logged");
    let sent: Value = serde_json::from_slice(&logged.body).expect("json body");
    let millis: u64 = sent["properties"]["hs_call_duration"]
        .as_str()
        .and_then(|ms| ms.parse().ok())
        .expect("a duration");
    assert!((95_000..=100_000).contains(&millis), "{sent}");
    let started = sent["properties"]["hs_timestamp"].as_str().expect("a time");
    let started = chrono::DateTime::parse_from_rfc3339(started).expect("rfc3339");
    let ago = chrono::Utc::now() - started.with_timezone(&chrono::Utc);
    assert!(ago.num_seconds() >= 95, "{sent}");
}

#[tokio::test]
async fn commerce_tools_answer_with_a_few_trimmed_items() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/admin/api/2025-01/graphql.json"))
        .and(header("x-shopify-access-token", "shpat_test_token"))
        .and(body_string_contains("OrderByName"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SHOPIFY_ORDER)))
        .mount(&bench.shopify)
        .await;
    Mock::given(method("POST"))
        .and(path("/admin/api/2025-01/graphql.json"))
        .and(body_string_contains("SearchProducts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SHOPIFY_PRODUCTS)))
        .mount(&bench.shopify)
        .await;
    let resolved = bench.resolve(&["order_status", "search_products"]).await;
    let (order, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "order_status",
        json!({"order_number": "1001", "email": "bob.norman@mail.example.com"}),
    )
    .await;
    assert_eq!(label, "ok", "{order}");
    let result = &order["result"];
    assert_eq!(result["order_number"], "#1001");
    assert_eq!(result["fulfillment_status"], "FULFILLED");
    assert_eq!(
        result["placed"],
        "Thursday 27 February at 10:04 AM EST (America/New_York)"
    );
    assert_eq!(result["shipments"][0]["carrier"], "UPS");
    assert_eq!(
        result["shipments"][0]["estimated_delivery"],
        "Monday 3 March at 1:00 PM EST (America/New_York)"
    );

    // The caller's own number is not the one on the order: it looks like an unknown order.
    let (refused, label) = run(
        &resolved,
        context("CA1", "call_2"),
        "order_status",
        json!({"order_number": "1001"}),
    )
    .await;
    assert_eq!(label, "failed", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("I couldn't find an order")
    );

    let (products, label) = run(
        &resolved,
        context("CA1", "call_3"),
        "search_products",
        json!({"query": "mug"}),
    )
    .await;
    assert_eq!(label, "ok", "{products}");
    assert_eq!(
        products["result"]["products"][0],
        json!({
            "title": "Ceramic Mug", "price_from": "12.5 USD", "in_stock": true, "units_in_stock": 14,
            "variants": [
                {"title": "Blue", "price": "12.50", "available": true},
                {"title": "Red", "price": "12.50", "available": false},
            ],
        })
    );
}

#[tokio::test]
async fn tools_without_a_usable_connector_are_not_offered_and_are_reported() {
    let bench = bench().await;
    // HubSpot configured without credentials; no commerce connector at all.
    bench
        .store
        .put_connector(
            &bench.tenant,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: Some(bench.hubspot.uri()),
                secret_name: None,
            },
        )
        .await
        .expect("connector");
    bench
        .store
        .delete_connector(&bench.tenant, "shopify")
        .await
        .expect("deleted");
    let resolved = bench
        .resolve(&[
            "check_availability",
            "find_contact",
            "order_status",
            "send_fax",
            "get_current_time",
            "end_call",
        ])
        .await;
    let names: Vec<&str> = resolved.registry.names().collect();
    assert_eq!(names, ["check_availability", "get_current_time"]);
    let reasons: Vec<(&str, &str)> = resolved
        .unavailable
        .iter()
        .map(|missing| (missing.tool.as_str(), missing.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "find_contact",
                "the hubspot connector has no credentials (no secret configured)"
            ),
            ("order_status", "no connector is configured for commerce"),
            ("send_fax", "not a tool this bridge provides"),
        ]
    );
    // The model cannot call a tool it was not given.
    let (output, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "find_contact",
        json!({}),
    )
    .await;
    assert_eq!(label, "unknown_tool", "{output}");

    // Without a vault nothing can be decrypted: no capability tool at all.
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let enabled = vec!["book_appointment".to_owned()];
    let no_vault = registry_for_agent(
        &bench.store,
        None,
        &policy,
        None,
        Arc::new(InMemoryLedger::default()),
        Arc::new(bench.store.clone()),
        &bench.tenant,
        &enabled,
        Duration::from_secs(5),
    )
    .await
    .expect("resolved");
    assert_eq!(no_vault.registry.names().count(), 0);
    assert_eq!(
        no_vault.unavailable[0].reason,
        "the calcom credentials cannot be decrypted: no master key is configured"
    );
}

#[tokio::test]
async fn switching_calendar_vendor_changes_no_tool_name() {
    let bench = bench().await;
    let calendly = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/event_type_available_times"))
        .and(header("authorization", "Bearer calendly-pat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CALENDLY_TIMES)))
        .expect(1)
        .mount(&calendly)
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    bench
        .configure(
            "calendly",
            &calendly.uri(),
            r#"{"token": "calendly-pat", "event_type": "https://api.calendly.com/event_types/ETYPE00000000001"}"#,
        )
        .await;
    let resolved = bench.resolve(&["check_availability"]).await;
    let (output, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "check_availability",
        json!({"date": "2050-09-05"}),
    )
    .await;
    assert_eq!(label, "ok", "{output}");
    assert_eq!(
        output["result"]["slots"][0]["start"],
        "2050-09-05T13:30:00Z"
    );
    assert!(
        requests_to(&bench.calcom, "GET", "/v2/slots")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn vendor_failures_become_speakable_errors() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "status": "error", "error": {"code": "CONFLICT", "message": "slot taken by jane@example.com"}
        })))
        .mount(&bench.calcom)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/slots"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&bench.calcom)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"status": "error"})))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/admin/api/2025-01/graphql.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture(SHOPIFY_PRODUCTS))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&bench.shopify)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        attempt_timeout: Duration::from_millis(300),
        max_attempts: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(10),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let resolved = bench
        .resolve_with(
            &policy,
            Arc::new(InMemoryLedger::default()),
            &ALL_TOOLS,
            Duration::from_secs(2),
        )
        .await;
    let cases = [
        (
            "book_appointment",
            json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee"}),
            "failed",
            "That time is no longer available. Offer to check other times.",
        ),
        (
            "check_availability",
            json!({"date": "2050-09-05"}),
            "failed",
            "The system we use had an error. Apologise and offer to try again in a moment.",
        ),
        (
            "find_contact",
            json!({}),
            "failed",
            "We aren't able to access that system right now. Offer to take a message instead.",
        ),
        (
            "search_products",
            json!({"query": "mug"}),
            "failed",
            "The system we use didn't answer in time. Apologise and offer to try again in a moment.",
        ),
        (
            "book_appointment",
            json!({"start": "next tuesday", "name": "Ann Lee"}),
            "invalid_arguments",
            "",
        ),
        (
            "upsert_contact",
            json!({"email": "not an email"}),
            "invalid_arguments",
            "",
        ),
    ];
    for (index, (tool, args, expected_label, expected_message)) in cases.into_iter().enumerate() {
        let (output, label) = run(
            &resolved,
            context("CA1", &format!("call_{index}")),
            tool,
            args,
        )
        .await;
        assert_eq!(label, expected_label, "{tool}: {output}");
        assert_eq!(output["ok"], false);
        let message = output["error"]["message"].as_str().expect("message");
        if !expected_message.is_empty() {
            assert_eq!(message, expected_message, "{tool}");
        }
        assert!(
            !message.contains("jane@"),
            "vendor detail leaked: {message}"
        );
    }
    // 503 is retried within the attempt budget; 409 is not.
    assert_eq!(
        requests_to(&bench.calcom, "GET", "/v2/slots").await.len(),
        2
    );
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_vendor_slower_than_the_deadline_ends_in_a_structured_error() {
    let bench = bench().await;
    Mock::given(method("GET"))
        .and(path("/v2/slots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture(CALCOM_SLOTS))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&bench.calcom)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    let resolved = bench
        .resolve_with(
            &policy,
            Arc::new(InMemoryLedger::default()),
            &["check_availability"],
            Duration::from_millis(300),
        )
        .await;
    let (output, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "check_availability",
        json!({"date": "2050-09-05"}),
    )
    .await;
    // The vendor call shares the registry's deadline: the policy gives up with a speakable
    // timeout, or the registry's own deadline fires first; both are structured for the model.
    match label.as_str() {
        "failed" => assert_eq!(
            output["error"]["message"],
            "The system we use didn't answer in time. Apologise and offer to try again in a moment."
        ),
        "timeout" => assert_eq!(output["error"]["code"], "timeout"),
        other => panic!("unexpected outcome {other}: {output}"),
    }
}

#[tokio::test]
async fn google_calendar_is_built_from_its_oauth_credentials() {
    let bench = bench().await;
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=1%2F%2Frefresh-test"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../fixtures/vendors/google-calendar/token.json"
            ))),
        )
        .expect(1)
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .and(header("authorization", "Bearer ya29.a0-test-access-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "kind": "calendar#freeBusy",
            "calendars": {"primary": {"busy": [
                {"start": "2050-09-05T13:00:00Z", "end": "2050-09-05T15:00:00Z"}
            ]}}
        })))
        .expect(1)
        .mount(&google)
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let credentials = json!({
        "client_id": "client-1.apps.googleusercontent.com",
        "client_secret": "client-secret-test",
        "refresh_token": "1//refresh-test",
        "token_url": format!("{}/token", google.uri()),
    });
    bench
        .configure(
            "google_calendar",
            &format!("{}/calendar/v3/", google.uri()),
            &credentials.to_string(),
        )
        .await;
    let resolved = bench.resolve(&["check_availability"]).await;
    let (output, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "check_availability",
        json!({"date": "2050-09-05"}),
    )
    .await;
    assert_eq!(label, "ok", "{output}");
    // Monday: opening hours 9:00-17:00 New York (13:00Z-21:00Z), busy until 15:00Z.
    assert_eq!(
        output["result"]["slots"][0]["start"],
        "2050-09-05T15:00:00Z"
    );
    assert_eq!(
        output["result"]["slots"][0]["spoken"],
        "Monday 5 September at 11:00 AM EDT (America/New_York)"
    );
}

#[tokio::test]
async fn the_current_time_is_told_in_the_tenants_zone() {
    let bench = bench().await;
    let resolved = bench.resolve(&["get_current_time"]).await;
    let before = chrono::Utc::now().with_timezone(&chrono_tz::America::New_York);
    let (output, label) = run(
        &resolved,
        context("CA-time", "call_time"),
        "get_current_time",
        json!({"caller_time_zone": "Asia/Tokyo"}),
    )
    .await;
    let after = chrono::Utc::now().with_timezone(&chrono_tz::America::New_York);
    assert_eq!(label, "ok", "{output}");
    let business = &output["result"]["business"];
    assert_eq!(business["time_zone"], "America/New_York");
    let dates = [
        before.format("%Y-%m-%d").to_string(),
        after.format("%Y-%m-%d").to_string(),
    ];
    assert!(
        dates.contains(&business["date"].as_str().unwrap_or_default().to_owned()),
        "{business} vs {dates:?}"
    );
    assert_eq!(output["result"]["caller"]["time_zone"], "Asia/Tokyo");
}

const HUBSPOT_MEETING: &str = include_str!("../fixtures/connectors/hubspot_meeting.json");

async fn mount_calcom_booking(bench: &Bench, uid: &str) {
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_answer(
            uid,
            "accepted",
            "2050-09-05T14:00:00.000Z",
            "2050-09-05T14:30:00.000Z",
        )))
        .mount(&bench.calcom)
        .await;
}

#[tokio::test]
async fn a_booking_is_recorded_once_as_a_meeting_on_the_callers_contact() {
    let bench = bench().await;
    mount_calcom_booking(&bench, "bk-1").await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_string_contains("+18779290687"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_SEARCH_ONE)))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .and(header("authorization", "Bearer pat-na1-test-token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(HUBSPOT_MEETING)))
        .mount(&bench.hubspot)
        .await;
    // Only book_appointment is enabled: no CRM tool is offered, the CRM still gets the meeting.
    let resolved = bench.resolve(&["book_appointment"]).await;
    let args = json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee"});
    // Replayed after a provider reconnect: the stored result, no second booking or meeting.
    let first = run_then_replay(&resolved, "CA1", "book_appointment", args).await;
    assert_eq!(first["result"]["booking_id"], "bk-1");
    assert_eq!(first["result"]["crm_meeting_id"], "7700");
    assert!(first["result"].get("crm_note").is_none(), "{first}");
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings")
            .await
            .len(),
        1
    );
    let meetings = requests_to(&bench.hubspot, "POST", "/crm/v3/objects/meetings").await;
    assert_eq!(meetings.len(), 1, "one booking, one meeting");
    let meeting = &meetings[0];
    assert_eq!(meeting["associations"][0]["to"]["id"], "512");
    assert_eq!(
        meeting["associations"][0]["types"][0],
        json!({"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200})
    );
    let properties = &meeting["properties"];
    assert_eq!(properties["hs_meeting_outcome"], "SCHEDULED");
    assert_eq!(properties["hs_meeting_title"], "Appointment: Ann Lee");
    assert_eq!(
        properties["hs_meeting_start_time"],
        "2050-09-05T14:00:00.000Z"
    );
    assert_eq!(
        properties["hs_meeting_end_time"],
        "2050-09-05T14:30:00.000Z"
    );
    assert_eq!(properties["hs_timestamp"], "2050-09-05T14:00:00.000Z");
    assert_eq!(
        properties["hs_meeting_body"],
        "Booked by phone for Ann Lee on Monday 5 September at 10:00 AM EDT (America/New_York). \
         Booking reference: bk-1."
    );
}

#[tokio::test]
async fn an_unknown_caller_gets_a_contact_before_the_meeting() {
    let bench = bench().await;
    mount_calcom_booking(&bench, "bk-2").await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(body_partial_json(json!({"inputs": [{
            "id": "ann@example.com", "idProperty": "email",
            "properties": {"firstname": "Ann", "lastname": "Lee", "email": "ann@example.com", "phone": "+18779290687"}
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_UPSERT)))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(HUBSPOT_MEETING)))
        .mount(&bench.hubspot)
        .await;
    let resolved = bench.resolve(&["book_appointment"]).await;
    let (out, label) = run(
        &resolved,
        context("CA3", "call_1"),
        "book_appointment",
        json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"}),
    )
    .await;
    assert_eq!(label, "ok", "{out}");
    assert_eq!(out["result"]["crm_meeting_id"], "7700");
    let upserted = fixture(HUBSPOT_UPSERT);
    let meetings = requests_to(&bench.hubspot, "POST", "/crm/v3/objects/meetings").await;
    assert_eq!(meetings.len(), 1);
    assert_eq!(
        meetings[0]["associations"][0]["to"]["id"],
        upserted["results"][0]["id"]
    );
    // Searched by the calling number first, then by the email given.
    assert_eq!(
        requests_to(&bench.hubspot, "POST", "/crm/v3/objects/contacts/search")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn a_crm_failure_leaves_the_booking_standing_with_a_note() {
    let bench = bench().await;
    mount_calcom_booking(&bench, "bk-3").await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_SEARCH_ONE)))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "status": "error", "category": "MISSING_SCOPES",
            "message": "This app hasn't been granted all required scopes."
        })))
        .mount(&bench.hubspot)
        .await;
    let resolved = bench.resolve(&["book_appointment"]).await;
    let args = json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee"});
    // The booking's result is final: a replay neither books nor retries the CRM.
    let out = run_then_replay(&resolved, "CA4", "book_appointment", args).await;
    assert_eq!(out["result"]["booking_id"], "bk-3");
    assert_eq!(out["result"]["status"], "confirmed");
    assert!(out["result"].get("crm_meeting_id").is_none(), "{out}");
    let note = out["result"]["crm_note"]
        .as_str()
        .expect("a note for the model");
    assert!(note.starts_with("The appointment is booked."), "{note}");
    assert!(!note.contains("scope") && !note.contains("403"), "{note}");
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings")
            .await
            .len(),
        1
    );
    assert_eq!(
        requests_to(&bench.hubspot, "POST", "/crm/v3/objects/meetings")
            .await
            .len(),
        1
    );
}

async fn mount_calcom_reschedule(bench: &Bench, from: &str, to: &str) {
    Mock::given(method("POST"))
        .and(path(format!("/v2/bookings/{from}/reschedule")))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_answer(
            to,
            "accepted",
            "2050-09-06T15:00:00.000Z",
            "2050-09-06T15:30:00.000Z",
        )))
        .mount(&bench.calcom)
        .await;
}

async fn mount_calcom_cancel(bench: &Bench, uid: &str) {
    Mock::given(method("POST"))
        .and(path(format!("/v2/bookings/{uid}/cancel")))
        .respond_with(ResponseTemplate::new(200).set_body_json(booking_answer(
            uid,
            "cancelled",
            "2050-09-06T15:00:00.000Z",
            "2050-09-06T15:30:00.000Z",
        )))
        .mount(&bench.calcom)
        .await;
}

/// Books `uid` for the caller (contact 512) with HubSpot recording meeting 7700.
async fn book_with_meeting(bench: &Bench, resolved: &Resolved, uid: &str) {
    mount_calcom_booking(bench, uid).await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_SEARCH_ONE)))
        .mount(&bench.hubspot)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(HUBSPOT_MEETING)))
        .mount(&bench.hubspot)
        .await;
    let (booked, label) = run(
        resolved,
        context("CA5", "call_book"),
        "book_appointment",
        json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee"}),
    )
    .await;
    assert_eq!(label, "ok", "{booked}");
    assert_eq!(booked["result"]["crm_meeting_id"], "7700");
}

const CALENDAR_TOOLS: [&str; 3] = [
    "book_appointment",
    "reschedule_appointment",
    "cancel_appointment",
];

#[tokio::test]
async fn one_meeting_follows_its_booking_through_reschedule_and_cancel() {
    let bench = bench().await;
    let resolved = bench.resolve(&CALENDAR_TOOLS).await;
    book_with_meeting(&bench, &resolved, "bk-1").await;
    // Cal.com gives a rescheduled booking a new uid: the meeting must follow it to bk-2.
    mount_calcom_reschedule(&bench, "bk-1", "bk-2").await;
    mount_calcom_cancel(&bench, "bk-2").await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/meetings/7700"))
        .and(header("authorization", "Bearer pat-na1-test-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(HUBSPOT_MEETING)))
        .mount(&bench.hubspot)
        .await;

    let (moved, label) = run(
        &resolved,
        context("CA5", "call_move"),
        "reschedule_appointment",
        json!({"booking_id": "bk-1", "new_start": "2050-09-06T15:00:00Z"}),
    )
    .await;
    assert_eq!(label, "ok", "{moved}");
    assert_eq!(moved["result"]["booking_id"], "bk-2");
    assert_eq!(moved["result"]["crm_meeting_id"], "7700");
    assert!(moved["result"].get("crm_note").is_none(), "{moved}");

    // A replay of the cancellation gets the stored result and reaches neither vendor again.
    let cancelled = run_then_replay(
        &resolved,
        "CA5",
        "cancel_appointment",
        json!({"booking_id": "bk-2"}),
    )
    .await;
    assert_eq!(
        cancelled["result"],
        json!({"cancelled": true, "booking_id": "bk-2", "crm_meeting_id": "7700"})
    );

    assert_eq!(
        requests_to(&bench.hubspot, "POST", "/crm/v3/objects/meetings")
            .await
            .len(),
        1,
        "one meeting, never a second one"
    );
    let patches = requests_to(&bench.hubspot, "PATCH", "/crm/v3/objects/meetings/7700").await;
    assert_eq!(
        patches,
        [
            json!({"properties": {
                "hs_timestamp": "2050-09-06T15:00:00.000Z",
                "hs_meeting_start_time": "2050-09-06T15:00:00.000Z",
                "hs_meeting_end_time": "2050-09-06T15:30:00.000Z"
            }}),
            json!({"properties": {"hs_meeting_outcome": "CANCELED"}}),
        ]
    );
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings/bk-2/cancel")
            .await
            .len(),
        1
    );
    // The link now files the meeting under the booking's current reference only.
    assert!(
        bench
            .store
            .crm_meeting(&bench.tenant, "bk-1")
            .await
            .expect("read")
            .is_none()
    );
    let link = bench
        .store
        .crm_meeting(&bench.tenant, "bk-2")
        .await
        .expect("read")
        .expect("linked");
    assert_eq!(
        (link.crm.as_str(), link.meeting_id.as_str()),
        ("hubspot", "7700")
    );
}

#[tokio::test]
async fn a_crm_failure_on_cancel_leaves_the_cancellation_standing_with_a_note() {
    let bench = bench().await;
    let resolved = bench.resolve(&CALENDAR_TOOLS).await;
    book_with_meeting(&bench, &resolved, "bk-6").await;
    mount_calcom_cancel(&bench, "bk-6").await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/meetings/7700"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&bench.hubspot)
        .await;
    let args = json!({"booking_id": "bk-6", "reason": "feeling better"});
    let (out, label) = run(
        &resolved,
        context("CA6", "call_cancel"),
        "cancel_appointment",
        args.clone(),
    )
    .await;
    assert_eq!(label, "ok", "{out}");
    assert_eq!(out["result"]["cancelled"], true);
    assert_eq!(out["result"]["booking_id"], "bk-6");
    assert!(out["result"].get("crm_meeting_id").is_none(), "{out}");
    let note = out["result"]["crm_note"]
        .as_str()
        .expect("a note for the model");
    assert!(note.starts_with("The appointment is cancelled."), "{note}");
    assert!(!note.contains("503"), "{note}");
    // The idempotent PATCH was retried by the shared policy (3 attempts by default), then given
    // up; a replay of the tool call returns the stored result and does not try again.
    let attempts = requests_to(&bench.hubspot, "PATCH", "/crm/v3/objects/meetings/7700")
        .await
        .len();
    assert_eq!(attempts, PolicyConfig::default().max_attempts as usize);
    let (replay, _) = run(
        &resolved,
        context("CA6", "call_cancel_again"),
        "cancel_appointment",
        args,
    )
    .await;
    assert_eq!(replay, out);
    assert_eq!(
        requests_to(&bench.hubspot, "PATCH", "/crm/v3/objects/meetings/7700")
            .await
            .len(),
        attempts
    );
    assert_eq!(
        requests_to(&bench.calcom, "POST", "/v2/bookings/bk-6/cancel")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_booking_without_a_meeting_in_this_crm_reaches_no_crm() {
    let bench = bench().await;
    let resolved = bench.resolve(&CALENDAR_TOOLS).await;
    // bk-7 was booked before meetings were linked; bk-8's meeting is in a CRM no longer used.
    bench
        .store
        .put_crm_meeting(&bench.tenant, "bk-8", "salesforce", "00U5e000001")
        .await
        .expect("link");
    mount_calcom_reschedule(&bench, "bk-7", "bk-7b").await;
    mount_calcom_cancel(&bench, "bk-8").await;
    let (moved, label) = run(
        &resolved,
        context("CA7", "call_move"),
        "reschedule_appointment",
        json!({"booking_id": "bk-7", "new_start": "2050-09-06T15:00:00Z"}),
    )
    .await;
    assert_eq!(label, "ok", "{moved}");
    assert_eq!(moved["result"]["booking_id"], "bk-7b");
    let (cancelled, label) = run(
        &resolved,
        context("CA7", "call_cancel"),
        "cancel_appointment",
        json!({"booking_id": "bk-8"}),
    )
    .await;
    assert_eq!(label, "ok", "{cancelled}");
    assert_eq!(
        cancelled["result"],
        json!({"cancelled": true, "booking_id": "bk-8"})
    );
    for out in [&moved, &cancelled] {
        assert!(out["result"].get("crm_note").is_none(), "{out}");
        assert!(out["result"].get("crm_meeting_id").is_none(), "{out}");
    }
    assert!(
        bench
            .hubspot
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "no CRM request without a meeting of this CRM"
    );
}

/// A tenant switching its CRM from HubSpot to Salesforce, then to Pipedrive, sees the same tools,
/// described the same way: the model's prompt and tool names do not depend on the CRM vendor.
#[tokio::test]
async fn switching_the_crm_vendor_changes_no_tool_name_or_description() {
    let bench = bench().await;
    let before = bench.resolve(&ALL_TOOLS).await;
    let names = |r: &Resolved| r.registry.names().map(str::to_owned).collect::<Vec<_>>();
    let mock = MockServer::start().await;
    for (from, to, secret) in [
        (
            "hubspot",
            "salesforce",
            r#"{"access_token": "00Dxx!sf-token"}"#,
        ),
        ("salesforce", "pipedrive", "pd-oauth-token"),
    ] {
        bench
            .store
            .delete_connector(&bench.tenant, from)
            .await
            .expect("previous CRM removed");
        bench.configure(to, &mock.uri(), secret).await;
        let after = bench.resolve(&ALL_TOOLS).await;
        assert!(
            after.unavailable.is_empty(),
            "{to}: {:?}",
            after.unavailable
        );
        assert_eq!(names(&before), names(&after), "{to}");
        assert_eq!(
            format!("{:?}", before.registry.declarations()),
            format!("{:?}", after.registry.declarations()),
            "{to}"
        );
    }
}

/// The support tools over Freshdesk at a local mock: one ticket per issue per call however often
/// (and however worded) the model asks, the caller's open tickets read back, and comments only on
/// the caller's own ticket.
#[tokio::test]
async fn support_tools_open_one_ticket_per_issue_and_comment_only_on_the_callers_own() {
    let bench = bench().await;
    let desk = MockServer::start().await;
    bench
        .configure(
            "freshdesk",
            &desk.uri(),
            r#"{"domain": "acme", "api_key": "fd-test-key"}"#,
        )
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts"))
        .and(query_param("phone", "+18779290687"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 432000100, "name": "Ann Lee", "phone": "+18779290687"}
        ])))
        .mount(&desk)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture(include_str!(
                "../fixtures/vendors/freshdesk/ticket.json"
            ))),
        )
        .mount(&desk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .and(query_param("requester_id", "432000100"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../fixtures/vendors/freshdesk/tickets.json"
            ))),
        )
        .mount(&desk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/1024"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../fixtures/vendors/freshdesk/ticket.json"
            ))),
        )
        .mount(&desk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/777"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 777, "subject": "Someone else's refund", "status": 2, "requester_id": 1234567
        })))
        .mount(&desk)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/1024/notes"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture(include_str!(
                "../fixtures/vendors/freshdesk/note.json"
            ))),
        )
        .mount(&desk)
        .await;
    let resolved = bench
        .resolve(&["create_ticket", "ticket_status", "add_ticket_comment"])
        .await;
    let issue = json!({"subject": "Heating not working", "description": "It stopped last night.", "priority": "high"});
    let (first, label) = run(
        &resolved,
        context("CA1", "call_1"),
        "create_ticket",
        issue.clone(),
    )
    .await;
    assert_eq!(label, "ok", "{first}");
    assert_eq!(first["result"]["ticket_id"], "1024");
    assert_eq!(first["result"]["priority"], "high");
    // Repeated, then reworded under a new tool-call id: the same ticket, no second create.
    let (repeat, _) = run(
        &resolved,
        context("CA1", "call_1"),
        "create_ticket",
        issue.clone(),
    )
    .await;
    let reworded = json!({"subject": "heating NOT working!", "description": "No heat since yesterday.", "priority": "high"});
    let (again, _) = run(
        &resolved,
        context("CA1", "call_2"),
        "create_ticket",
        reworded,
    )
    .await;
    assert_eq!(repeat, first);
    assert_eq!(again, first);
    let creates = requests_to(&desk, "POST", "/api/v2/tickets").await;
    assert_eq!(creates.len(), 1, "one issue, one ticket");
    assert_eq!(creates[0]["requester_id"], 432000100);
    assert_eq!(creates[0]["priority"], 3);
    assert!(
        creates[0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("(call CA1)")),
        "{}",
        creates[0]
    );
    // Another issue in the same call, and the same issue in another call, are new tickets.
    let (other_issue, _) = run(
        &resolved,
        context("CA1", "call_3"),
        "create_ticket",
        json!({"subject": "Invoice wrong", "description": "Charged twice."}),
    )
    .await;
    assert_eq!(other_issue["ok"], true, "{other_issue}");
    let (next_call, _) = run(&resolved, context("CA2", "call_1"), "create_ticket", issue).await;
    assert_eq!(next_call["ok"], true, "{next_call}");
    assert_eq!(requests_to(&desk, "POST", "/api/v2/tickets").await.len(), 3);

    let (status, label) = run(
        &resolved,
        context("CA1", "call_4"),
        "ticket_status",
        json!({}),
    )
    .await;
    assert_eq!(label, "ok", "{status}");
    let tickets = status["result"]["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2, "{status}");
    assert_eq!(tickets[0]["ticket_id"], "1024");
    assert_eq!(tickets[1]["status"], "waiting_on_customer");

    let (own, label) = run(
        &resolved,
        context("CA1", "call_5"),
        "add_ticket_comment",
        json!({"ticket_id": "#1024", "comment": "It is making a noise now too."}),
    )
    .await;
    assert_eq!(label, "ok", "{own}");
    let (theirs, _) = run(
        &resolved,
        context("CA1", "call_6"),
        "add_ticket_comment",
        json!({"ticket_id": "777", "comment": "Refund me too."}),
    )
    .await;
    assert_eq!(theirs["ok"], false, "{theirs}");
    assert!(
        theirs.to_string().contains("couldn't find that ticket"),
        "{theirs}"
    );
    assert_eq!(
        requests_to(&desk, "POST", "/api/v2/tickets/1024/notes")
            .await
            .len(),
        1
    );
    assert!(
        requests_to(&desk, "POST", "/api/v2/tickets/777/notes")
            .await
            .is_empty()
    );

    // A hidden number and no email: the model is asked for one, the desk is not called.
    let hidden = ToolContext {
        caller: "anonymous".into(),
        ..context("CA3", "call_1")
    };
    let (asked, label) = run(&resolved, hidden.clone(), "ticket_status", json!({})).await;
    assert_ne!(label, "ok", "{asked}");
    assert!(asked.to_string().contains("email"), "{asked}");
    // Found by an email alone (anyone can name one): numbers and statuses, no subjects.
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts"))
        .and(query_param("email", "ann@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 432000100, "name": "Ann Lee", "email": "ann@example.com"}
        ])))
        .mount(&desk)
        .await;
    let (by_email, label) = run(
        &resolved,
        hidden,
        "ticket_status",
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(label, "ok", "{by_email}");
    let listed = by_email["result"]["tickets"].as_array().expect("tickets");
    assert_eq!(listed.len(), 2, "{by_email}");
    assert!(
        listed.iter().all(|t| t.get("subject").is_none()),
        "{by_email}"
    );
    assert!(!by_email.to_string().contains("Heating"), "{by_email}");
    callbridge_testkit::contract::Contract::load(
        "freshdesk",
        &["reference-additions.json", "openapi.json"],
    )
    .assert_valid(&desk)
    .await;
}

/// A Salesforce tenant's `update_deal`: the caller (found by their number) has one open
/// opportunity; a repeated call moves it once (the ledger); a stage the pipeline lacks is a clear
/// tool error naming the stages, and nothing is written. Switching the CRM from HubSpot to
/// Salesforce changes no tool name or description, `update_deal` included.
#[tokio::test]
async fn update_deal_moves_the_callers_salesforce_opportunity_once() {
    const SF_CONTACT: &str = include_str!("../fixtures/vendors/salesforce/query_contact.json");
    const SF_DEALS: &str = include_str!("../fixtures/vendors/salesforce/query_opportunities.json");
    const SF_STAGES: &str = include_str!("../fixtures/vendors/salesforce/query_stages.json");
    let bench = bench().await;
    let with_deals: Vec<&str> = ALL_TOOLS.iter().copied().chain(["update_deal"]).collect();
    let before = bench.resolve(&with_deals).await;
    assert!(before.unavailable.is_empty(), "{:?}", before.unavailable);
    bench
        .store
        .delete_connector(&bench.tenant, "hubspot")
        .await
        .expect("hubspot removed");
    let salesforce = MockServer::start().await;
    bench
        .configure(
            "salesforce",
            &salesforce.uri(),
            r#"{"access_token": "00Dxx!sf-token"}"#,
        )
        .await;
    let after = bench.resolve(&with_deals).await;
    assert!(after.unavailable.is_empty(), "{:?}", after.unavailable);
    let names = |r: &Resolved| r.registry.names().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(names(&before), names(&after));
    assert_eq!(
        format!("{:?}", before.registry.declarations()),
        format!("{:?}", after.registry.declarations())
    );

    let query = "/services/data/v59.0/query";
    let answer = |q: &'static str, body: &'static str| {
        Mock::given(method("GET"))
            .and(path(query))
            .and(header("authorization", "Bearer 00Dxx!sf-token"))
            .and(query_param_contains_text(q))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(body)))
    };
    answer("FROM Contact", SF_CONTACT).mount(&salesforce).await;
    answer("FROM Opportunity WHERE", SF_DEALS)
        .mount(&salesforce)
        .await;
    answer("FROM OpportunityStage", SF_STAGES)
        .mount(&salesforce)
        .await;
    Mock::given(method("PATCH"))
        .and(path(
            "/services/data/v59.0/sobjects/Opportunity/006R000000OppOneAA",
        ))
        .and(body_partial_json(
            json!({"StageName": "Closed Won", "Amount": 36000}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&salesforce)
        .await;
    let resolved = bench.resolve(&with_deals).await;
    assert!(
        resolved.unavailable.is_empty(),
        "{:?}",
        resolved.unavailable
    );
    assert!(resolved.registry.names().any(|n| n == "update_deal"));
    let args = json!({"stage": "closed won", "amount": 36000});
    for _ in 0..2 {
        let (moved, label) = run(
            &resolved,
            context("CA7", "call_deal_1"),
            "update_deal",
            args.clone(),
        )
        .await;
        assert_eq!(label, "ok", "{moved}");
        assert_eq!(moved["result"]["deal"]["deal_id"], "006R000000OppOneAA");
        assert_eq!(moved["result"]["deal"]["stage"], "Closed Won");
    }
    let (refused, label) = run(
        &resolved,
        context("CA7", "call_deal_2"),
        "update_deal",
        json!({"stage": "Signed"}),
    )
    .await;
    assert_eq!(label, "failed", "{refused}");
    assert!(
        refused.to_string().contains("no stage \\\"Signed\\\""),
        "{refused}"
    );
    let (empty, label) = run(
        &resolved,
        context("CA7", "call_deal_3"),
        "update_deal",
        json!({}),
    )
    .await;
    assert_ne!(label, "ok", "{empty}");
    callbridge_testkit::contract::Contract::load("salesforce", &["sobjects-v59.0.json"])
        .with_read(query, &["authorization"], &["q"])
        .assert_valid(&salesforce)
        .await;
}

/// Matches a request whose SOQL (`q`) contains `text`.
fn query_param_contains_text(text: &'static str) -> impl wiremock::Match {
    move |request: &wiremock::Request| {
        request
            .url
            .query_pairs()
            .any(|(key, value)| key == "q" && value.contains(text))
    }
}

/// Stripe's catalogue on `server`: "Large Pizza" at 18.50 USD, and the session it creates.
async fn mount_stripe(server: &MockServer) {
    let read = |name: &str| -> Value {
        let path = format!(
            "{}/fixtures/vendors/stripe/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
    };
    Mock::given(method("GET"))
        .and(path("/v1/products/search"))
        .and(query_param("query", "active:'true' AND name~'Large Pizza'"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("products_search")))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/prices/price_LargePizza"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("price_large_pizza")))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("session_created")))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_a1B2c3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(read("session_paid")))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_payment_link_uses_catalogue_prices_once_and_its_status_can_be_asked() {
    let bench = bench().await;
    let stripe = MockServer::start().await;
    mount_stripe(&stripe).await;
    bench
        .configure(
            "stripe",
            &stripe.uri(),
            r#"{"secret_key": "sk_test_key", "success_url": "https://pizza.example.com/thanks"}"#,
        )
        .await;
    let resolved = bench
        .resolve(&["send_payment_link", "payment_link_status"])
        .await;
    assert!(
        resolved.unavailable.is_empty(),
        "{:?}",
        resolved.unavailable
    );

    // Tampering: a price, an amount or any field besides name and quantity is refused before
    // anything reaches Stripe.
    for tampered in [
        json!({"items": [{"name": "Large Pizza", "quantity": 2, "price": "0.01"}]}),
        json!({"items": [{"name": "Large Pizza", "unit_amount": 1}]}),
        json!({"items": [{"name": "Large Pizza"}], "amount": 1}),
    ] {
        let (refused, label) = run(
            &resolved,
            context("CA9", "call_t"),
            "send_payment_link",
            tampered,
        )
        .await;
        assert_eq!(label, "invalid_arguments", "{refused}");
    }
    assert!(
        stripe
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );

    // The model repeats itself (and a reconnect replays it): one session, the stored answer.
    let args = json!({"items": [{"name": "Large Pizza", "quantity": 2}]});
    let link = run_then_replay(&resolved, "CA9", "send_payment_link", args).await;
    assert_eq!(
        link["result"]["url"],
        "https://checkout.stripe.com/c/pay/cs_test_a1B2c3"
    );
    assert_eq!(link["result"]["items"][0]["unit_price"], "18.50 USD");
    assert_eq!(link["result"]["sent"], false);
    let creates = requests_to(&stripe, "POST", "/v1/checkout/sessions").await;
    assert_eq!(creates.len(), 1);
    let keys: Vec<String> = stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .filter_map(|r| {
            r.headers
                .get("idempotency-key")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(keys.len(), 1, "the create carries the ledger's key");

    let (status, label) = run(
        &resolved,
        context("CA10", "call_s"),
        "payment_link_status",
        json!({"link_id": "cs_test_a1B2c3"}),
    )
    .await;
    assert_eq!(label, "ok", "{status}");
    assert_eq!(status["result"]["status"], "paid");
}

#[tokio::test]
async fn a_wrong_phone_gets_no_order_data() {
    let bench = bench().await;
    Mock::given(method("POST"))
        .and(path("/admin/api/2025-01/graphql.json"))
        .and(body_string_contains("OrderByName"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SHOPIFY_ORDER)))
        .mount(&bench.shopify)
        .await;
    let resolved = bench.resolve(&["order_status"]).await;
    let (refused, label) = run(
        &resolved,
        context("CA11", "call_1"),
        "order_status",
        json!({"order_number": "1001", "phone": "+1 312 555 0000"}),
    )
    .await;
    assert_eq!(label, "failed", "{refused}");
    assert_eq!(
        refused["error"]["message"],
        "I couldn't find an order with those details. Ask the caller to check the order number \
         and the email or phone used for the order."
    );
    // Nothing of the order is in the answer: not its status, carrier, tracking or dates.
    let text = refused.to_string();
    for leaked in [
        "FULFILLED",
        "PAID",
        "UPS",
        "IN_TRANSIT",
        "2025",
        "#1001",
        "result",
    ] {
        assert!(!text.contains(leaked), "{leaked} leaked: {text}");
    }
}

#[tokio::test]
async fn a_caller_is_subscribed_only_with_explicit_consent() {
    let bench = bench().await;
    let klaviyo = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/profile-subscription-bulk-create-jobs"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&klaviyo)
        .await;
    bench
        .configure(
            "klaviyo",
            &klaviyo.uri(),
            r#"{"private_key": "pk_test_key", "list_id": "Y6nRLr"}"#,
        )
        .await;
    let resolved = bench
        .resolve(&["customer_profile", "subscribe_to_list"])
        .await;
    assert!(
        resolved.unavailable.is_empty(),
        "{:?}",
        resolved.unavailable
    );
    for without in [
        json!({"email": "sarah@example.com"}),
        json!({"consent": false, "email": "sarah@example.com"}),
    ] {
        let (refused, label) = run(
            &resolved,
            context("CA12", "call_c"),
            "subscribe_to_list",
            without,
        )
        .await;
        assert_eq!(label, "invalid_arguments", "{refused}");
    }
    assert!(
        klaviyo
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let done = run_then_replay(
        &resolved,
        "CA12",
        "subscribe_to_list",
        json!({"consent": true, "email": "sarah@example.com", "sms": true}),
    )
    .await;
    assert_eq!(done["result"]["channels"], json!(["email", "sms"]));
    let jobs = requests_to(
        &klaviyo,
        "POST",
        "/api/profile-subscription-bulk-create-jobs",
    )
    .await;
    assert_eq!(jobs.len(), 1, "subscribed once");
    assert_eq!(
        jobs[0]["data"]["attributes"]["profiles"]["data"][0]["attributes"]["phone_number"],
        "+18779290687"
    );
}

#[tokio::test]
async fn coupons_stay_within_the_tenants_caps_and_are_made_once() {
    let bench = bench().await;
    let wix = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons/query"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"coupons": [], "totalResults": 0})),
        )
        .mount(&wix)
        .await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "cpn-1"})))
        .mount(&wix)
        .await;
    bench
        .configure(
            "wix",
            &wix.uri(),
            r#"{"api_key": "wix_api_key", "site_id": "site-1", "max_percent": 10, "max_per_day": 5}"#,
        )
        .await;
    // Without the SQL store the daily cap cannot be counted: not offered.
    let without = bench.resolve(&["create_coupon"]).await;
    assert_eq!(without.unavailable.len(), 1, "{:?}", without.unavailable);
    let resolved = bench.resolve_with_store(&["create_coupon"]).await;
    assert!(
        resolved.unavailable.is_empty(),
        "{:?}",
        resolved.unavailable
    );
    // The model asks for more than the shop allows: refused, nothing created.
    let (refused, label) = run(
        &resolved,
        context("CA13", "call_big"),
        "create_coupon",
        json!({"kind": "percentage", "value": 50}),
    )
    .await;
    assert_eq!(label, "failed", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 10 percent"),
        "{refused}"
    );
    assert!(
        requests_to(&wix, "POST", "/stores/v2/coupons")
            .await
            .is_empty()
    );
    // Within the caps, repeated: one coupon, the same code.
    let coupon = run_then_replay(
        &resolved,
        "CA13",
        "create_coupon",
        json!({"kind": "percentage", "value": 10}),
    )
    .await;
    assert!(
        coupon["result"]["code"]
            .as_str()
            .unwrap_or_default()
            .starts_with("CALL")
    );
    assert_eq!(
        requests_to(&wix, "POST", "/stores/v2/coupons").await.len(),
        1
    );
    // The daily cap (5) is counted in the store, not read from Wix (whose list stays empty here):
    // four more coupons (one per phone call), then a refusal without a request.
    for n in 2..=5 {
        let (made, label) = run(
            &resolved,
            context(&format!("CA2{n}"), "call_more"),
            "create_coupon",
            json!({"kind": "free_shipping"}),
        )
        .await;
        assert_eq!(label, "ok", "coupon {n}: {made}");
    }
    let (full, label) = run(
        &resolved,
        context("CA20", "call_one_too_many"),
        "create_coupon",
        json!({"kind": "free_shipping"}),
    )
    .await;
    assert_eq!(label, "failed", "{full}");
    assert!(
        full["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of coupons by phone for today"),
        "{full}"
    );
    assert_eq!(
        requests_to(&wix, "POST", "/stores/v2/coupons").await.len(),
        5
    );
    assert!(
        requests_to(&wix, "POST", "/stores/v2/coupons/query")
            .await
            .is_empty(),
        "the count does not depend on Wix's list"
    );
}

/// Pipedrive serves `update_deal`; a CRM without deals (Wix here) does not get it: the tool is
/// not offered and the reason says the connector does not serve it.
#[tokio::test]
async fn update_deal_is_not_offered_by_a_crm_without_deals() {
    let bench = bench().await;
    bench
        .store
        .delete_connector(&bench.tenant, "hubspot")
        .await
        .expect("hubspot removed");
    let pipedrive = MockServer::start().await;
    bench
        .configure("pipedrive", &pipedrive.uri(), "pd-oauth-token")
        .await;
    let resolved = bench.resolve(&["find_contact", "update_deal"]).await;
    let names: Vec<&str> = resolved.registry.names().collect();
    assert_eq!(names, ["find_contact", "update_deal"]);
    // Connected beside Pipedrive, Wix (a store that also has contacts) does not take the CRM
    // over: the more specific vendor serves it.
    let wix = MockServer::start().await;
    bench
        .configure(
            "wix",
            &wix.uri(),
            r#"{"api_key": "wix_api_key", "site_id": "site-1"}"#,
        )
        .await;
    let resolved = bench.resolve(&["find_contact", "update_deal"]).await;
    let names: Vec<&str> = resolved.registry.names().collect();
    assert_eq!(names, ["find_contact", "update_deal"]);
    // The tenant moves its CRM to Wix: it removes Pipedrive.
    bench
        .store
        .delete_connector(&bench.tenant, "pipedrive")
        .await
        .expect("pipedrive removed");
    bench
        .configure(
            "wix",
            &wix.uri(),
            r#"{"api_key": "wix_api_key", "site_id": "site-1"}"#,
        )
        .await;
    let resolved = bench.resolve(&["find_contact", "update_deal"]).await;
    let names: Vec<&str> = resolved.registry.names().collect();
    assert_eq!(names, ["find_contact"]);
    assert_eq!(resolved.unavailable.len(), 1, "{:?}", resolved.unavailable);
    assert_eq!(resolved.unavailable[0].tool, "update_deal");
    assert!(
        resolved.unavailable[0]
            .reason
            .contains("does not serve this tool"),
        "{:?}",
        resolved.unavailable[0]
    );
}

//! Wix coupons connector against a local mock: the tenant's caps refuse what exceeds them before
//! anything is sent, the day's count is read back from Wix, coupons are single-use and expiring,
//! and every request matches the shapes of the Wix reference pages (`fixtures/vendor-specs/wix/`).

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::wix::{Wix, WixConfig, coupon_code};
use callbridge::connectors::{ConnectorError, CouponCaps, CouponDiscount, Coupons};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREATED: &str = include_str!("../../fixtures/vendors/wix/coupon_created.json");
const NONE: &str = include_str!("../../fixtures/vendors/wix/coupons_none.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/wix/unauthorized.json");

fn contract() -> Contract {
    Contract::load(
        "wix",
        &["coupons-reference.json", "contacts-reference.json"],
    )
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn caps() -> CouponCaps {
    CouponCaps {
        max_percent: 15.0,
        max_amount: 5.0,
        max_per_day: 2,
        valid_days: 3,
    }
}

fn connector(server: &MockServer) -> Wix {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Wix::new(
        policy,
        WixConfig {
            base_url: server.uri().parse().expect("url"),
            api_key: SecretString::from("wix_api_key"),
            site_id: "site-1".into(),
            caps: caps(),
            country_code: "1".into(),
            contact_label: Some("custom.phone-callers".into()),
        },
    )
    .expect("connector builds")
}

async fn mount(server: &MockServer, existing: &str) {
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons/query"))
        .and(header("authorization", "wix_api_key"))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(existing)))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons"))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CREATED)))
        .mount(server)
        .await;
}

async fn created_specs(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/stores/v2/coupons")
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("JSON")["specification"].clone())
        .collect()
}

#[tokio::test]
async fn coupons_within_the_caps_are_single_use_and_expire() {
    let server = MockServer::start().await;
    mount(&server, NONE).await;
    let wix = connector(&server);
    let coupon = wix
        .create_coupon(&context(), &CouponDiscount::Percent(15.0), "key-1")
        .await
        .expect("created");
    assert_eq!(coupon.code, coupon_code("key-1"));
    wix.create_coupon(&context(), &CouponDiscount::FreeShipping, "key-2")
        .await
        .expect("created");
    let specs = created_specs(&server).await;
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0]["percentOffRate"], 15.0);
    assert_eq!(specs[0]["usageLimit"], 1);
    assert_eq!(specs[0]["scope"]["namespace"], "stores");
    let lifetime = specs[0]["expirationTime"].as_i64().unwrap_or_default()
        - specs[0]["startTime"].as_i64().unwrap_or_default();
    assert_eq!(
        lifetime,
        3 * 24 * 3600 * 1000,
        "valid for the tenant's 3 days"
    );
    assert_eq!(specs[1]["freeShipping"], true);
    assert!(
        specs[1].get("scope").is_none(),
        "free shipping takes no scope"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_caps_cannot_be_exceeded() {
    let server = MockServer::start().await;
    mount(&server, NONE).await;
    let wix = connector(&server);
    for discount in [
        CouponDiscount::Percent(50.0),
        CouponDiscount::Percent(100.0),
        CouponDiscount::Amount(5.01),
        CouponDiscount::Amount(-1.0),
        CouponDiscount::Percent(f64::INFINITY),
    ] {
        let err = wix
            .create_coupon(&context(), &discount, "key-x")
            .await
            .expect_err("beyond the caps");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{discount:?}: {err:?}"
        );
    }
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing was sent for a refused coupon"
    );

    // The day's count is kept by the tool (a slot reserved in its store): the connector reports
    // the cap and does not read Wix's list before creating.
    assert_eq!(wix.caps().max_per_day, 2);
    wix.create_coupon(&context(), &CouponDiscount::Amount(5.0), "key-y")
        .await
        .expect("created");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/stores/v2/coupons"], "one create, no count query");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_key_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons/query"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let err = connector(&server)
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn wix_orders_are_told_only_to_their_buyer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ecom/v1/orders/search"))
        .and(header("wix-site-id", "site-1"))
        .and(wiremock::matchers::body_json(serde_json::json!({
            "search": {"filter": {"number": {"$eq": "10001"}}, "cursorPaging": {"limit": 1}}
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../../fixtures/vendors/wix/orders_found.json"
            ))),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stores/v1/products/query"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../../fixtures/vendors/wix/products_found.json"
            ))),
        )
        .mount(&server)
        .await;
    use callbridge::connectors::{Commerce, ContactLookup};
    let wix = connector(&server);
    let order = wix
        .order_status(
            &context(),
            "#10001",
            &ContactLookup::Email("Ann.Lee@example.com".into()),
        )
        .await
        .expect("the buyer");
    assert_eq!(order.number, "#10001");
    assert_eq!(order.payment_status.as_deref(), Some("PAID"));
    for phone in ["+15125550142", "+15125550177"] {
        wix.order_status(&context(), "10001", &ContactLookup::Phone(phone.into()))
            .await
            .expect("billing or shipping phone");
    }
    let err = wix
        .order_status(
            &context(),
            "10001",
            &ContactLookup::Phone("+15125550000".into()),
        )
        .await
        .expect_err("a wrong phone gets no order data");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let products = wix
        .search_products(&context(), "linen apron")
        .await
        .expect("found");
    assert_eq!(products.len(), 1, "hidden products are not offered");
    assert_eq!(products[0].total_inventory, Some(3));
    assert_eq!(
        products[0].min_price.as_ref().map(|m| m.amount.as_str()),
        Some("24.50")
    );
    contract().assert_valid(&server).await;
}

const CONTACTS_ONE: &str = include_str!("../../fixtures/vendors/wix/contacts_one.json");
const CONTACTS_NONE: &str = include_str!("../../fixtures/vendors/wix/contacts_none.json");
const CONTACT_CREATED: &str = include_str!("../../fixtures/vendors/wix/contact_created.json");
const CONTACT_UPDATED: &str = include_str!("../../fixtures/vendors/wix/contact_updated.json");
const NOTE_CREATED: &str = include_str!("../../fixtures/vendors/wix/note_created.json");
const DANA: &str = "8046df3c-7575-4098-a5ab-c91ad8f33c47";

/// A Query Contacts body: one contact matching `filter`.
fn contacts_query(filter: Value) -> Value {
    json!({"query": {"filter": filter, "paging": {"limit": 1}}})
}

fn sent(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

/// Wix CRM: a caller is found by every stored form of their number (E.164 and national forms
/// from the shared phone helpers) or by email, with the key and the site on every request.
#[tokio::test]
async fn wix_contacts_are_found_by_phone_forms_and_by_email() {
    use callbridge::connectors::{ContactLookup, Crm};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts/query"))
        .and(header("authorization", "wix_api_key"))
        .and(header("wix-site-id", "site-1"))
        .and(body_json(contacts_query(json!({"$or": [
            {"info.phones.e164Phone": {"$eq": "+14155551234"}},
            {"info.phones.phone": {"$in": ["+14155551234", "4155551234", "(415) 555-1234"]}}
        ]}))))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_ONE)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts/query"))
        .and(body_json(contacts_query(
            json!({"info.emails.email": {"$eq": "nobody@example.com"}}),
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_NONE)))
        .expect(1)
        .mount(&server)
        .await;
    let wix = connector(&server);
    let found = wix
        .find_contact(&context(), &ContactLookup::Phone("+14155551234".into()))
        .await
        .expect("looked up")
        .expect("found");
    assert_eq!(found.id, DANA);
    assert_eq!(found.first_name.as_deref(), Some("Dana"));
    assert_eq!(found.email.as_deref(), Some("dana@example.com"));
    assert_eq!(found.company.as_deref(), Some("Reyes Plumbing"));
    let none = wix
        .find_contact(
            &context(),
            &ContactLookup::Email("nobody@example.com".into()),
        )
        .await
        .expect("looked up");
    assert!(none.is_none());
    contract().assert_valid(&server).await;
}

/// A new caller is created with the tenant's label and no duplicates allowed; an existing one is
/// patched at its revision, and a 409 from a stale revision is re-read and retried once.
#[tokio::test]
async fn wix_upsert_creates_with_the_label_and_patches_at_the_current_revision() {
    use callbridge::connectors::{ContactInput, Crm};
    let server = MockServer::start().await;
    // Sam is new: no match by email, then a create.
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts/query"))
        .and(body_json(contacts_query(
            json!({"info.emails.email": {"$eq": "sam@example.com"}}),
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_NONE)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts"))
        .and(header("authorization", "wix_api_key"))
        .and(header("wix-site-id", "site-1"))
        .and(body_json(json!({
            "info": {
                "name": {"first": "Sam", "last": "Lee"},
                "emails": {"items": [{"tag": "MAIN", "email": "sam@example.com"}]},
                "phones": {"items": [{"tag": "MOBILE", "phone": "+14155550100"}]},
                "labelKeys": {"items": ["custom.phone-callers"]}
            },
            "allowDuplicates": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACT_CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    // Dana exists at revision 5; someone else saved revision 6 meanwhile.
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts/query"))
        .and(body_json(contacts_query(
            json!({"info.emails.email": {"$eq": "dana@example.com"}}),
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_ONE)))
        .mount(&server)
        .await;
    let patch = |revision: u64| {
        json!({
            "revision": revision,
            "info": {"name": {"first": "Dana", "last": "Reyes-Ortiz"}},
            "allowDuplicates": false
        })
    };
    Mock::given(method("PATCH"))
        .and(path(format!("/contacts/v4/contacts/{DANA}")))
        .and(body_json(patch(5)))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "message": "revision mismatch",
            "details": {"applicationError": {"code": "CONTACT_ALREADY_CHANGED", "description": "revision mismatch"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut reread = fixture(CONTACTS_ONE)["contacts"][0].clone();
    reread["revision"] = json!(6);
    Mock::given(method("GET"))
        .and(path(format!("/contacts/v4/contacts/{DANA}")))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contact": reread})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/contacts/v4/contacts/{DANA}")))
        .and(body_json(patch(6)))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACT_UPDATED)))
        .expect(1)
        .mount(&server)
        .await;
    let wix = connector(&server);
    let sam = wix
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("Sam".into()),
                last_name: Some("Lee".into()),
                email: Some("sam@example.com".into()),
                phone: Some("+14155550100".into()),
            },
            "k1",
        )
        .await
        .expect("created");
    assert_eq!(sam.id, "2712ae1d-3f64-46c2-ac0a-6ff7b9a5c5e1");
    let dana = wix
        .upsert_contact(
            &context(),
            &ContactInput {
                last_name: Some("Reyes-Ortiz".into()),
                email: Some("DANA@example.com".into()),
                // Already stored, in its national display form: not added again.
                phone: Some("+14155551234".into()),
                ..ContactInput::default()
            },
            "k2",
        )
        .await
        .expect("updated after one retry");
    assert_eq!(dana.last_name.as_deref(), Some("Reyes-Ortiz"));
    contract().assert_valid(&server).await;
}

/// A 409 that is not a stale revision (the re-read shows the same one) is a duplicate email or
/// phone, said as a rejection; other statuses map as for every vendor (not found, permission,
/// rate limited with Retry-After).
#[tokio::test]
async fn wix_contact_errors_map_to_clear_tool_errors() {
    use callbridge::connectors::http::PolicyError;
    use callbridge::connectors::{CallNote, ContactInput, Crm};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/v4/contacts/query"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_ONE)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/contacts/v4/contacts/{DANA}")))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "message": "duplicate", "details": {"applicationError": {"code": "DUPLICATE_CONTACT_EXISTS"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/contacts/v4/contacts/{DANA}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"contact": fixture(CONTACTS_ONE)["contacts"][0].clone()})),
        )
        .mount(&server)
        .await;
    let wix = connector(&server);
    let duplicate = wix
        .upsert_contact(
            &context(),
            &ContactInput {
                email: Some("dana@example.com".into()),
                phone: Some("+14155559999".into()),
                ..ContactInput::default()
            },
            "k3",
        )
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&duplicate, ConnectorError::Rejected(m) if m.contains("already has")),
        "{duplicate:?}"
    );
    let note = CallNote {
        body: "x".into(),
        at: chrono::Utc::now(),
        duration_secs: None,
        outcome: None,
        inbound: None,
    };
    for (status, retry_after) in [(404, None), (403, None), (429, Some("9"))] {
        let failing = MockServer::start().await;
        let mut answer = ResponseTemplate::new(status).set_body_json(json!({"message": "no"}));
        if let Some(seconds) = retry_after {
            answer = answer.insert_header("retry-after", seconds);
        }
        Mock::given(method("POST"))
            .and(path("/crm/notes/v2/notes"))
            .respond_with(answer)
            .mount(&failing)
            .await;
        let err = connector(&failing)
            .log_call_note(&context(), DANA, &note, "k4")
            .await
            .expect_err("refused");
        match status {
            404 => assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}"),
            403 => assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}"),
            _ => assert!(
                matches!(
                    &err,
                    ConnectorError::Policy(PolicyError::Status { code: 429, retry_after: Some(after), .. })
                        if after.as_secs() == 9
                ),
                "{err:?}"
            ),
        }
    }
    // An id that is not a Wix GUID never reaches the vendor.
    let bad = wix
        .log_call_note(&context(), "../contacts", &note, "k5")
        .await
        .expect_err("refused");
    assert!(matches!(bad, ConnectorError::InvalidInput(_)), "{bad:?}");
    contract().assert_valid(&server).await;
}

/// The call is a CALL_SUMMARY note led by its direction, duration and outcome; a booking is a
/// MEETING_SUMMARY note whose first line follows the booking once (a repeat changes nothing).
#[tokio::test]
async fn wix_call_notes_carry_duration_and_outcome_and_bookings_follow() {
    use callbridge::connectors::{CallNote, CallOutcome, Crm, CrmMeeting, MeetingChange};
    use chrono::TimeZone;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/notes/v2/notes"))
        .and(header("authorization", "wix_api_key"))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(NOTE_CREATED)))
        .expect(2)
        .mount(&server)
        .await;
    let note_id = "b7e2c1d4-5a6f-4e3b-9c8d-1f2e3a4b5c6d";
    let mut stored = fixture(NOTE_CREATED);
    stored["note"]["text"] = json!("Appointment: Cleaning");
    Mock::given(method("GET"))
        .and(path(format!("/crm/notes/v2/notes/{note_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored.clone()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let mut cancelled = stored.clone();
    cancelled["note"]["text"] = json!("Cancelled by the caller.\nAppointment: Cleaning");
    cancelled["note"]["revision"] = json!("2");
    Mock::given(method("GET"))
        .and(path(format!("/crm/notes/v2/notes/{note_id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(cancelled))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/crm/notes/v2/notes/{note_id}")))
        .and(body_json(json!({"note": {
            "id": note_id,
            "revision": "1",
            "text": "Cancelled by the caller.\nAppointment: Cleaning"
        }})))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored))
        .expect(1)
        .mount(&server)
        .await;
    let wix = connector(&server);
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 12, 3, 10, 0, 0)
        .single()
        .expect("valid");
    let id = wix
        .log_call_note(
            &context(),
            DANA,
            &CallNote {
                body: "Wants a cleaning next week.".into(),
                at,
                duration_secs: Some(95),
                outcome: Some(CallOutcome::Connected),
                inbound: Some(true),
            },
            "k1",
        )
        .await
        .expect("noted");
    assert_eq!(id, note_id);
    wix.record_meeting(
        &context(),
        DANA,
        &CrmMeeting {
            title: "Cleaning".into(),
            start: at,
            end: at + chrono::Duration::minutes(30),
            body: "Thu 10:00, booking b-1".into(),
        },
        "k2",
    )
    .await
    .expect("recorded");
    for _ in 0..2 {
        wix.update_meeting(&context(), note_id, &MeetingChange::Cancelled)
            .await
            .expect("kept in step");
    }
    let requests = server.received_requests().await.unwrap_or_default();
    let notes: Vec<Value> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/crm/notes/v2/notes")
        .map(sent)
        .collect();
    assert_eq!(
        notes[0],
        json!({"note": {
            "contactId": DANA,
            "text": "Inbound phone call at 2026-12-03T10:00:00Z, 01:35 long, Connected\nWants a cleaning next week.",
            "type": "CALL_SUMMARY"
        }})
    );
    assert_eq!(notes[1]["note"]["type"], "MEETING_SUMMARY");
    assert_eq!(
        notes[1]["note"]["text"],
        "Appointment: Cleaning (2026-12-03T10:00:00Z to 2026-12-03T10:30:00Z)\nThu 10:00, booking b-1"
    );
    // A summary longer than Wix keeps is cut to its 2,048 characters.
    let long = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/notes/v2/notes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(NOTE_CREATED)))
        .mount(&long)
        .await;
    connector(&long)
        .log_call_note(
            &context(),
            DANA,
            &CallNote {
                body: "é".repeat(3_000),
                at,
                duration_secs: None,
                outcome: None,
                inbound: None,
            },
            "k3",
        )
        .await
        .expect("noted");
    let cut = sent(&long.received_requests().await.unwrap_or_default()[0]);
    assert_eq!(
        cut["note"]["text"].as_str().map(|t| t.chars().count()),
        Some(2_048)
    );
    contract().assert_valid(&server).await;
    contract().assert_valid(&long).await;
}

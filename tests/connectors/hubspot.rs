//! HubSpot connector end to end against a local mock of the CRM v3 API. The mock checks method,
//! path, bearer token and body shape per `hubspot/crm-contacts-v3.json`, `crm-calls-v3.json` and
//! `crm-meetings-v3.json`;
//! answers are shaped like the spec's `SimplePublicObject` and friends
//! (`fixtures/vendors/hubspot/`).

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::hubspot::{Hubspot, HubspotConfig};
use callbridge::connectors::{
    CallNote, CallOutcome, ConnectorError, ContactInput, ContactLookup, Crm, CrmMeeting,
    MeetingChange,
};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses, under `fixtures/vendor-specs/`).
fn contract() -> Contract {
    Contract::load(
        "hubspot",
        &[
            "crm-contacts-v3.json",
            "crm-calls-v3.json",
            "crm-meetings-v3.json",
        ],
    )
}

const CONTACT: &str = include_str!("../../fixtures/vendors/hubspot/contact.json");
const SEARCH_ONE: &str = include_str!("../../fixtures/vendors/hubspot/search_one.json");
const SEARCH_NONE: &str = include_str!("../../fixtures/vendors/hubspot/search_none.json");
const BATCH_UPSERT: &str = include_str!("../../fixtures/vendors/hubspot/batch_upsert.json");
const CALL: &str = include_str!("../../fixtures/vendors/hubspot/call.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/hubspot/error_401.json");
const PAGE: &str = include_str!("../../fixtures/vendors/hubspot/contacts_page.json");
const MEETING: &str = include_str!("../../fixtures/connectors/hubspot_meeting.json");

const AUTH: &str = "Bearer pat-na1-test-token";

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

fn connector(server: &MockServer) -> Hubspot {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Hubspot::new(
        policy,
        HubspotConfig::new(
            server.uri().parse().expect("url"),
            SecretString::from("pat-na1-test-token"),
        ),
    )
}

const PROPERTIES: [&str; 6] = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "company",
];

#[tokio::test]
async fn find_by_phone_searches_phone_or_mobile() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "filterGroups": [
                {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+18779290687"}]},
                {"filters": [{"propertyName": "mobilephone", "operator": "EQ", "value": "+18779290687"}]}
            ],
            "properties": PROPERTIES,
            "sorts": [],
            "limit": 1,
            "after": "0"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_ONE)))
        .mount(&server)
        .await;
    let contact = connector(&server)
        .find_contact(&context(), &ContactLookup::Phone("+18779290687".into()))
        .await
        .expect("search works")
        .expect("found");
    assert_eq!(contact.id, "512");
    assert_eq!(contact.first_name.as_deref(), Some("Bryan"));
    assert_eq!(contact.email.as_deref(), Some("bcooper@biglytics.net"));
    assert_eq!(contact.company.as_deref(), Some("Biglytics"));
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_by_email_with_no_match_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_partial_json(json!({
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "nobody@example.com"}]}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_NONE)))
        .mount(&server)
        .await;
    let found = connector(&server)
        .find_contact(
            &context(),
            &ContactLookup::Email("nobody@example.com".into()),
        )
        .await
        .expect("search works");
    assert!(found.is_none());
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_with_email_uses_batch_upsert_keyed_by_email() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "inputs": [{
                "id": "bcooper@biglytics.net",
                "idProperty": "email",
                "properties": {"firstname": "Bryan", "email": "bcooper@biglytics.net", "phone": "+18779290687"}
            }]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(BATCH_UPSERT)))
        .mount(&server)
        .await;
    let input = ContactInput {
        first_name: Some("Bryan".into()),
        last_name: None,
        email: Some("bcooper@biglytics.net".into()),
        phone: Some("+18779290687".into()),
    };
    let contact = connector(&server)
        .upsert_contact(&context(), &input, "k1")
        .await
        .expect("upserted");
    assert_eq!(contact.id, "512");
    assert_eq!(contact.last_name.as_deref(), Some("Cooper"));
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_by_phone_patches_an_existing_contact_or_creates_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_partial_json(json!({
            "filterGroups": [{"filters": [{"propertyName": "phone", "value": "+18779290687"}]}, {}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_ONE)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_NONE)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/contacts/512"))
        .and(header("authorization", AUTH))
        .and(body_json(
            json!({"properties": {"lastname": "Cooper", "phone": "+18779290687"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACT)))
        .mount(&server)
        .await;
    let mut created = fixture(CONTACT);
    created["id"] = json!("777");
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts"))
        .and(body_json(json!({"properties": {"firstname": "Dana", "phone": "+15550001111"}, "associations": []})))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
        .mount(&server)
        .await;
    let hubspot = connector(&server);
    let patched = hubspot
        .upsert_contact(
            &context(),
            &ContactInput {
                last_name: Some("Cooper".into()),
                phone: Some("+18779290687".into()),
                ..ContactInput::default()
            },
            "k2",
        )
        .await
        .expect("patched");
    assert_eq!(patched.id, "512");
    let new = hubspot
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("Dana".into()),
                phone: Some("+15550001111".into()),
                ..ContactInput::default()
            },
            "k3",
        )
        .await
        .expect("created");
    assert_eq!(new.id, "777");
    let err = hubspot
        .upsert_contact(&context(), &ContactInput::default(), "k4")
        .await
        .expect_err("no key");
    assert!(matches!(err, ConnectorError::InvalidInput(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_call_is_logged_as_a_call_engagement_with_duration_and_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/calls"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "properties": {
                "hs_timestamp": "2025-03-04T10:00:00.000Z",
                "hs_call_title": "Phone call",
                "hs_call_body": "Caller booked a consultation for Tuesday.",
                "hs_call_duration": "95000",
                "hs_call_status": "COMPLETED",
                "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
                "hs_call_direction": "INBOUND"
            },
            "associations": [{
                "to": {"id": "512"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]
            }]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(CALL)))
        .mount(&server)
        .await;
    let note = CallNote {
        body: "Caller booked a consultation for Tuesday.".into(),
        at: Utc
            .with_ymd_and_hms(2025, 3, 4, 10, 0, 0)
            .single()
            .expect("valid"),
        duration_secs: Some(95),
        outcome: Some(CallOutcome::Connected),
        inbound: Some(true),
    };
    let id = connector(&server)
        .log_call_note(&context(), "512", &note, "k5")
        .await
        .expect("logged");
    assert_eq!(id, "9001");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_call_create_failing_with_5xx_is_not_replayed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/calls"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    // An unanswered outbound call: status and disposition say so.
    let note = CallNote {
        body: "x".into(),
        at: Utc::now(),
        duration_secs: None,
        outcome: Some(CallOutcome::NoAnswer),
        inbound: Some(false),
    };
    let err = connector(&server)
        .log_call_note(&context(), "512", &note, "k6")
        .await
        .expect_err("502");
    assert!(matches!(err, ConnectorError::Policy(_)), "{err:?}");
    let received = server.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    let sent: Value = serde_json::from_slice(&received[0].body).expect("json body");
    assert_eq!(sent["properties"]["hs_call_status"], "NO_ANSWER");
    assert_eq!(
        sent["properties"]["hs_call_disposition"],
        "73a0d17f-1163-4015-bdd5-ec830791da20"
    );
    assert_eq!(sent["properties"]["hs_call_direction"], "OUTBOUND");
    assert!(
        sent["properties"].get("hs_call_duration").is_none(),
        "{sent}"
    );
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn health_check_lists_one_contact_and_maps_401() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .and(query_param("limit", "1"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PAGE)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let hubspot = connector(&server);
    hubspot.health_check(&context()).await.expect("healthy");
    let err = hubspot
        .health_check(&context())
        .await
        .expect_err("token revoked");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_booked_meeting_is_created_scheduled_and_associated_with_the_contact() {
    let server = MockServer::start().await;
    let expected = json!({
        "properties": {
            "hs_timestamp": "2050-09-05T14:00:00.000Z",
            "hs_meeting_title": "Appointment: Ann Lee",
            "hs_meeting_start_time": "2050-09-05T14:00:00.000Z",
            "hs_meeting_end_time": "2050-09-05T14:30:00.000Z",
            "hs_meeting_outcome": "SCHEDULED",
            "hs_meeting_body": "Booked by phone for Ann Lee. Booking reference: bk-1."
        },
        "associations": [{
            "to": {"id": "512"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]
        }]
    });
    // SimplePublicObjectInputForCreate: every property value is a string.
    assert!(
        expected["properties"]
            .as_object()
            .is_some_and(|properties| properties.values().all(Value::is_string))
    );
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .and(header("authorization", AUTH))
        .and(body_json(expected))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(MEETING)))
        .mount(&server)
        .await;
    let start = Utc
        .with_ymd_and_hms(2050, 9, 5, 14, 0, 0)
        .single()
        .expect("valid");
    let meeting = CrmMeeting {
        title: "Appointment: Ann Lee".into(),
        start,
        end: start + chrono::Duration::minutes(30),
        body: "Booked by phone for Ann Lee. Booking reference: bk-1.".into(),
    };
    let id = connector(&server)
        .record_meeting(&context(), "512", &meeting, "k7")
        .await
        .expect("recorded");
    assert_eq!(id, "7700");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_meeting_create_failing_with_5xx_is_not_replayed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let start = Utc::now();
    let meeting = CrmMeeting {
        title: "t".into(),
        start,
        end: start,
        body: "b".into(),
    };
    let err = connector(&server)
        .record_meeting(&context(), "512", &meeting, "k8")
        .await
        .expect_err("503");
    assert!(matches!(err, ConnectorError::Policy(_)), "{err:?}");
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1
    );
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

/// Expects exactly one `PATCH /crm/v3/objects/meetings/{meeting_id}` with `body`, answered with
/// the meeting. The body must be a `SimplePublicObjectInput`: only `properties`, every value a
/// string.
async fn expect_one_meeting_patch(server: &MockServer, meeting_id: &str, body: Value) {
    let object = body.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["properties"], "{body}");
    assert!(
        body["properties"]
            .as_object()
            .is_some_and(|properties| properties.values().all(Value::is_string)),
        "{body}"
    );
    // operationId: patch-/crm/v3/objects/meetings/{meetingId}_update
    Mock::given(method("PATCH"))
        .and(path(format!("/crm/v3/objects/meetings/{meeting_id}")))
        .and(header("authorization", AUTH))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(MEETING)))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_moved_meeting_is_patched_with_its_new_times() {
    let server = MockServer::start().await;
    let expected = json!({
        "properties": {
            "hs_timestamp": "2050-09-06T15:00:00.000Z",
            "hs_meeting_start_time": "2050-09-06T15:00:00.000Z",
            "hs_meeting_end_time": "2050-09-06T15:45:00.000Z"
        }
    });
    expect_one_meeting_patch(&server, "7700", expected).await;
    let start = Utc
        .with_ymd_and_hms(2050, 9, 6, 15, 0, 0)
        .single()
        .expect("valid");
    connector(&server)
        .update_meeting(
            &context(),
            "7700",
            &MeetingChange::Moved {
                start,
                end: start + chrono::Duration::minutes(45),
            },
        )
        .await
        .expect("patched");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_cancelled_meeting_gets_outcome_canceled() {
    let server = MockServer::start().await;
    let expected = json!({ "properties": { "hs_meeting_outcome": "CANCELED" } });
    expect_one_meeting_patch(&server, "7700", expected).await;
    connector(&server)
        .update_meeting(&context(), "7700", &MeetingChange::Cancelled)
        .await
        .expect("patched");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_meeting_update_is_replayed_after_a_5xx_and_maps_404() {
    let server = MockServer::start().await;
    // The same PATCH twice leaves the meeting as once: the shared policy may retry it.
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/meetings/7700"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/meetings/7700"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(MEETING)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/meetings/404404"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "status": "error", "category": "OBJECT_NOT_FOUND", "message": "resource not found"
        })))
        .mount(&server)
        .await;
    let hubspot = connector(&server);
    hubspot
        .update_meeting(&context(), "7700", &MeetingChange::Cancelled)
        .await
        .expect("second attempt succeeds");
    let err = hubspot
        .update_meeting(&context(), "404404", &MeetingChange::Cancelled)
        .await
        .expect_err("deleted meeting");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let patches = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == "/crm/v3/objects/meetings/7700")
        .count();
    assert_eq!(patches, 2);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

const DEALS_SEARCH: &str = include_str!("../../fixtures/vendors/hubspot/deals_search.json");
const PIPELINE_STAGES: &str = include_str!("../../fixtures/vendors/hubspot/pipeline_stages.json");
const DEAL_UPDATED: &str = include_str!("../../fixtures/vendors/hubspot/deal_updated.json");

/// `update_deal` on HubSpot: the contact's deal named by id moves to a stage of its pipeline
/// (matched by label), with amount and next step; several open deals without an id are listed
/// for the model; a stage the pipeline lacks is refused before any write.
#[tokio::test]
async fn update_deal_moves_the_contacts_deal_to_a_pipeline_stage() {
    use callbridge::connectors::DealUpdate;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/0-3/search"))
        .and(header("authorization", AUTH))
        .and(body_partial_json(json!({"filterGroups": [{"filters": [
            {"propertyName": "associations.contact", "operator": "EQ", "value": "512"}
        ]}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DEALS_SEARCH)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/pipelines/deals/default/stages"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PIPELINE_STAGES)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/crm/v3/objects/0-3/31170937"))
        .and(body_json(json!({"properties": {
            "dealstage": "contractsent",
            "amount": "1800",
            "hs_next_step": "Countersign by Friday"
        }})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DEAL_UPDATED)))
        .expect(1)
        .mount(&server)
        .await;
    let hubspot = connector(&server);
    assert!(hubspot.serves_deals());
    let update = DealUpdate {
        stage: Some("Contract sent".into()),
        amount: Some("1800".into()),
        next_step: Some("Countersign by Friday".into()),
        close_date: None,
    };
    let deal = hubspot
        .update_deal(&context(), "512", Some("31170937"), &update)
        .await
        .expect("moved");
    assert_eq!(deal.name, "Biglytics renewal");
    assert_eq!(deal.stage.as_deref(), Some("Contract Sent"));
    assert_eq!(
        deal.close_date,
        chrono::NaiveDate::from_ymd_opt(2025, 6, 30)
    );
    let ambiguous = hubspot
        .update_deal(&context(), "512", None, &update)
        .await
        .expect_err("two open deals");
    assert!(
        matches!(&ambiguous, ConnectorError::InvalidInput(m)
            if m.contains("\"Biglytics add-on seats\" (deal_id 31170938)")),
        "{ambiguous:?}"
    );
    let unknown = hubspot
        .update_deal(
            &context(),
            "512",
            Some("31170937"),
            &DealUpdate {
                stage: Some("Signed".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("no such stage");
    assert!(
        matches!(&unknown, ConnectorError::InvalidInput(m) if m.contains("\"Closed Won\"")),
        "{unknown:?}"
    );
    Contract::load("hubspot", &["crm-deals-v3.json", "crm-pipelines-v3.json"])
        .assert_valid(&server)
        .await;
}

//! Pipedrive (CRM) against a 127.0.0.1 mock: find by phone (E.164, then national form) and
//! email, upsert, call notes, bookings as meeting activities, error mapping, the health check;
//! every request checked against Pipedrive's published v1/v2 specs.

use std::time::Duration;

use callbridge::connectors::client::Auth;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, PolicyError, RequestContext};
use callbridge::connectors::pipedrive::{Pipedrive, PipedriveConfig};
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
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The vendor's published specs (the operations this connector uses, under
/// `fixtures/vendor-specs/pipedrive/`): v2 for persons, activities, deals and stages, v1 for the user.
fn contract() -> Contract {
    Contract::load("pipedrive", &["openapi-v2.json", "openapi-v1.json"])
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds")
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

const SEARCH_ONE: &str = include_str!("../../fixtures/vendors/pipedrive/search_one.json");
const SEARCH_NONE: &str = include_str!("../../fixtures/vendors/pipedrive/search_none.json");
const PERSON: &str = include_str!("../../fixtures/vendors/pipedrive/person.json");
const ACTIVITY: &str = include_str!("../../fixtures/vendors/pipedrive/activity.json");
const USER_ME: &str = include_str!("../../fixtures/vendors/pipedrive/user_me.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/pipedrive/error_401.json");
const AUTH: &str = "Bearer pd-oauth-token";

fn connector(server: &MockServer) -> Pipedrive {
    connector_with(server, "1")
}

fn connector_with(server: &MockServer, country_code: &str) -> Pipedrive {
    Pipedrive::new(
        policy(),
        PipedriveConfig {
            base_url: server.uri().parse().expect("url"),
            auth: Auth::Bearer(SecretString::from("pd-oauth-token")),
            country_code: country_code.into(),
        },
    )
}

async fn mount_search(server: &MockServer, field: &str, term: &str, answer: &str) {
    Mock::given(method("GET"))
        .and(path("/api/v2/persons/search"))
        .and(header("authorization", AUTH))
        .and(query_param("term", term))
        .and(query_param("fields", field))
        .and(query_param("exact_match", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(answer)))
        .mount(server)
        .await;
}

async fn mount_person(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/v2/persons/1"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PERSON)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn find_by_phone_in_e164_form() {
    let server = MockServer::start().await;
    mount_search(&server, "phone", "+14155550100", SEARCH_ONE).await;
    mount_person(&server).await;
    let contact = connector(&server)
        .find_contact(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("search works")
        .expect("found");
    assert_eq!(contact.id, "1");
    assert_eq!(contact.first_name.as_deref(), Some("Jane"));
    assert_eq!(contact.email.as_deref(), Some("jane@pipedrive.com"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_by_phone_falls_back_to_the_national_form() {
    let server = MockServer::start().await;
    mount_search(&server, "phone", "+442071838750", SEARCH_NONE).await;
    mount_search(&server, "phone", "02071838750", SEARCH_ONE).await;
    mount_person(&server).await;
    let contact = connector_with(&server, "44")
        .find_contact(&context(), &ContactLookup::Phone("+442071838750".into()))
        .await
        .expect("search works")
        .expect("found in national form");
    assert_eq!(contact.id, "1");
    let searches = server.received_requests().await.unwrap_or_default();
    assert_eq!(searches.len(), 3, "E.164, national, then the person");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_by_email_with_no_match_is_none() {
    let server = MockServer::start().await;
    mount_search(&server, "email", "nobody@example.com", SEARCH_NONE).await;
    let found = connector(&server)
        .find_contact(
            &context(),
            &ContactLookup::Email("nobody@example.com".into()),
        )
        .await
        .expect("search works");
    assert!(found.is_none());
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_updates_the_person_found_by_email() {
    let server = MockServer::start().await;
    mount_search(&server, "email", "jane@pipedrive.com", SEARCH_ONE).await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/persons/1"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "name": "Jane Doe",
            "emails": [{"value": "jane@pipedrive.com", "primary": true, "label": "work"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PERSON)))
        .expect(1)
        .mount(&server)
        .await;
    let contact = connector(&server)
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("Jane".into()),
                last_name: Some("Doe".into()),
                email: Some("jane@pipedrive.com".into()),
                phone: None,
            },
            "k1",
        )
        .await
        .expect("updated");
    assert_eq!(contact.id, "1");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_creates_a_person_once_even_when_the_create_fails() {
    let server = MockServer::start().await;
    mount_search(&server, "phone", "+15550001111", SEARCH_NONE).await;
    mount_search(&server, "phone", "5550001111", SEARCH_NONE).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/persons"))
        .and(body_json(json!({
            "name": "+15550001111",
            "phones": [{"value": "+15550001111", "primary": true, "label": "mobile"}]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(PERSON)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/persons"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let pipedrive = connector(&server);
    let input = ContactInput {
        phone: Some("+15550001111".into()),
        ..ContactInput::default()
    };
    let created = pipedrive
        .upsert_contact(&context(), &input, "k2")
        .await
        .expect("created");
    assert_eq!(created.id, "1");
    let err = pipedrive
        .upsert_contact(&context(), &input, "k3")
        .await
        .expect_err("vendor down");
    assert!(
        matches!(
            err,
            ConnectorError::Policy(PolicyError::Status { code: 503, .. })
        ),
        "{err:?}"
    );
    let creates = server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(
        creates, 2,
        "one create per upsert: a failed create is not replayed"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_call_note_is_a_done_call_activity_with_its_duration() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/activities"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "subject": "Phone call",
            "type": "call",
            "done": true,
            "due_date": "2026-12-03",
            "due_time": "09:00",
            "duration": "00:02",
            "note": "Caller asked for a quote.",
            "participants": [{"person_id": 1, "primary": true}]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(ACTIVITY)))
        .expect(1)
        .mount(&server)
        .await;
    let id = connector(&server)
        .log_call_note(
            &context(),
            "1",
            &CallNote {
                body: "Caller asked for a quote.".into(),
                at: Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap(),
                // 95 seconds: two started minutes.
                duration_secs: Some(95),
                outcome: Some(CallOutcome::Connected),
                inbound: Some(true),
            },
            "k4",
        )
        .await
        .expect("note");
    assert_eq!(id, "314");
    let err = connector(&server)
        .log_call_note(
            &context(),
            "not-a-number",
            &CallNote {
                body: "x".into(),
                at: Utc::now(),
                duration_secs: None,
                outcome: None,
                inbound: None,
            },
            "k5",
        )
        .await
        .expect_err("bad id");
    assert!(matches!(err, ConnectorError::InvalidInput(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_booking_is_a_meeting_activity_that_follows_the_booking() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/activities"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "subject": "Cleaning",
            "type": "meeting",
            "due_date": "2026-12-10",
            "due_time": "15:00",
            "duration": "00:30",
            "done": false,
            "note": "Booked by phone",
            "participants": [{"person_id": 1, "primary": true}]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(ACTIVITY)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/activities/314"))
        .and(body_json(json!({
            "due_date": "2026-12-11",
            "due_time": "16:30",
            "duration": "01:15"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ACTIVITY)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/activities/314"))
        .and(body_json(json!({
            "done": true,
            "busy": false,
            "public_description": "Cancelled by the caller"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ACTIVITY)))
        .expect(1)
        .mount(&server)
        .await;
    let pipedrive = connector(&server);
    let start = Utc.with_ymd_and_hms(2026, 12, 10, 15, 0, 0).unwrap();
    let id = pipedrive
        .record_meeting(
            &context(),
            "1",
            &CrmMeeting {
                title: "Cleaning".into(),
                start,
                end: start + chrono::Duration::minutes(30),
                body: "Booked by phone".into(),
            },
            "k6",
        )
        .await
        .expect("activity");
    assert_eq!(id, "314");
    let moved = Utc.with_ymd_and_hms(2026, 12, 11, 16, 30, 0).unwrap();
    pipedrive
        .update_meeting(
            &context(),
            &id,
            &MeetingChange::Moved {
                start: moved,
                end: moved + chrono::Duration::minutes(75),
            },
        )
        .await
        .expect("moved");
    pipedrive
        .update_meeting(&context(), &id, &MeetingChange::Cancelled)
        .await
        .expect("cancelled");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn errors_are_mapped_to_clear_tool_errors() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/activities/404"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"success": false})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/activities/403"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"success": false})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/activities/429"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let pipedrive = connector(&server);
    let change = MeetingChange::Cancelled;
    let missing = pipedrive
        .update_meeting(&context(), "404", &change)
        .await
        .expect_err("404");
    assert!(
        matches!(missing, ConnectorError::NotFound(_)),
        "{missing:?}"
    );
    let denied = pipedrive
        .update_meeting(&context(), "403", &change)
        .await
        .expect_err("403");
    assert!(matches!(denied, ConnectorError::Auth(_)), "{denied:?}");
    let limited = pipedrive
        .update_meeting(&context(), "429", &change)
        .await
        .expect_err("429");
    assert!(
        matches!(
            limited,
            ConnectorError::Policy(PolicyError::Status {
                code: 429,
                retry_after: Some(after),
                ..
            }) if after == std::time::Duration::from_secs(30)
        ),
        "rate limited with Retry-After: {limited:?}"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn doctor_reads_the_current_user_and_maps_401() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/me"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(USER_ME)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/me"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let pipedrive = connector(&server);
    pipedrive.health_check(&context()).await.expect("healthy");
    let err = pipedrive.health_check(&context()).await.expect_err("401");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_personal_api_token_goes_in_x_api_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/users/me"))
        .and(header("x-api-token", "pd-personal"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(USER_ME)))
        .expect(1)
        .mount(&server)
        .await;
    let pipedrive = Pipedrive::new(
        policy(),
        PipedriveConfig {
            base_url: server.uri().parse().expect("url"),
            auth: Auth::Header {
                name: reqwest::header::HeaderName::from_static("x-api-token"),
                value: SecretString::from("pd-personal"),
            },
            country_code: "1".into(),
        },
    );
    pipedrive.health_check(&context()).await.expect("healthy");
    let received = server.received_requests().await.unwrap_or_default();
    assert!(
        received
            .iter()
            .all(|r| !r.headers.contains_key("authorization"))
    );
}

const DEALS_OPEN: &str = include_str!("../../fixtures/vendors/pipedrive/deals_open.json");
const STAGES: &str = include_str!("../../fixtures/vendors/pipedrive/stages.json");
const DEAL_UPDATED: &str = include_str!("../../fixtures/vendors/pipedrive/deal_updated.json");

/// `update_deal` on Pipedrive: the person's only open deal moves to a stage of its pipeline
/// (matched by name), with its value in the deal's currency and a close date; a named deal that
/// is not the person's is not found; a stage the pipeline lacks, and a next step (a v2 deal has
/// no such field), are refused before any write.
#[tokio::test]
async fn update_deal_moves_the_persons_open_deal_to_a_pipeline_stage() {
    use callbridge::connectors::DealUpdate;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/deals"))
        .and(header("authorization", AUTH))
        .and(query_param("person_id", "1"))
        .and(query_param("status", "open"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DEALS_OPEN)))
        .mount(&server)
        .await;
    // A named deal is looked for among all the person's deals: none by that id.
    Mock::given(method("GET"))
        .and(path("/api/v2/deals"))
        .and(query_param("person_id", "2"))
        .and(query_param("ids", "7"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"success": true, "data": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/stages"))
        .and(query_param("pipeline_id", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(STAGES)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/deals/7"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "stage_id": 6,
            "value": 5200.5,
            "currency": "EUR",
            "expected_close_date": "2027-01-15"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DEAL_UPDATED)))
        .expect(1)
        .mount(&server)
        .await;
    let pipedrive = connector(&server);
    assert!(pipedrive.serves_deals());
    let deal = pipedrive
        .update_deal(
            &context(),
            "1",
            None,
            &DealUpdate {
                stage: Some("proposal  made".into()),
                amount: Some("5200.5".into()),
                close_date: chrono::NaiveDate::from_ymd_opt(2027, 1, 15),
                next_step: None,
            },
        )
        .await
        .expect("moved");
    assert_eq!(deal.id, "7");
    assert_eq!(deal.name, "Acme 20 seats");
    assert_eq!(deal.stage.as_deref(), Some("Proposal Made"));
    assert_eq!(deal.amount.as_deref(), Some("5200.5"));

    let unknown = pipedrive
        .update_deal(
            &context(),
            "1",
            None,
            &DealUpdate {
                stage: Some("Won".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("no such stage");
    assert!(
        matches!(&unknown, ConnectorError::InvalidInput(m) if m.contains("\"Negotiations Started\"")),
        "{unknown:?}"
    );
    let other = pipedrive
        .update_deal(
            &context(),
            "2",
            Some("7"),
            &DealUpdate {
                amount: Some("1".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("not the person's deal");
    assert!(matches!(other, ConnectorError::NotFound(_)), "{other:?}");
    let before = server.received_requests().await.unwrap_or_default().len();
    let next_step = pipedrive
        .update_deal(
            &context(),
            "1",
            None,
            &DealUpdate {
                next_step: Some("Send the contract".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("no next-step field");
    assert!(
        matches!(next_step, ConnectorError::InvalidInput(_)),
        "{next_step:?}"
    );
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        before,
        "refused before any request"
    );
    contract().assert_valid(&server).await;
}

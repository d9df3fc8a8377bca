//! Microsoft Outlook / Microsoft 365 calendar (Microsoft Graph) end to end against a local mock of
//! Graph. The mock checks method, path, auth header and body shape; every request is then checked
//! against the held Graph spec (`fixtures/vendor-specs/microsoft_calendar/`). Canned answers live
//! in `fixtures/vendors/microsoft_calendar/`.

use std::time::Duration;

use callbridge::connectors::client::Auth;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, PolicyError, RequestContext};
use callbridge::connectors::microsoft_calendar::{
    MicrosoftCalendar, MicrosoftCalendarConfig, transaction_id_for_key,
};
use callbridge::connectors::{Attendee, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses).
fn contract() -> Contract {
    Contract::load("microsoft_calendar", &["graph-v1.0-calendar.json"])
}

const SCHEDULE: &str = include_str!("../../fixtures/vendors/microsoft_calendar/schedule.json");
const SCHEDULE_NOT_FOUND: &str =
    include_str!("../../fixtures/vendors/microsoft_calendar/schedule_not_found.json");
const EVENT: &str = include_str!("../../fixtures/vendors/microsoft_calendar/event.json");
const NOT_FOUND: &str = include_str!("../../fixtures/vendors/microsoft_calendar/error_404.json");
const DENIED: &str = include_str!("../../fixtures/vendors/microsoft_calendar/error_403.json");
const THROTTLED: &str = include_str!("../../fixtures/vendors/microsoft_calendar/error_429.json");
const EVENTS_TOP1: &str =
    include_str!("../../fixtures/vendors/microsoft_calendar/events_top1.json");

const MAILBOX: &str = "bookings@contoso.example";
const EVENTS_PATH: &str = "/v1.0/users/bookings@contoso.example/events";
const EVENT_ID: &str = "AAMkAGI2TG93AAA=";
const BEARER: &str = "Bearer eyJ0eXAi.graph-test-token";

fn json_fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn event_fixture(transaction: &str, start: &str, end: &str) -> Value {
    json_fixture(
        &EVENT
            .replace("TRANSACTION_PLACEHOLDER", transaction)
            .replace("START_PLACEHOLDER", start)
            .replace("END_PLACEHOLDER", end),
    )
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid time")
        .with_timezone(&Utc)
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn connector(server: &MockServer) -> MicrosoftCalendar {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let config = MicrosoftCalendarConfig::new(
        format!("{}/v1.0/", server.uri()).parse().expect("url"),
        MAILBOX,
    );
    MicrosoftCalendar::new(
        policy,
        config,
        Auth::Bearer(SecretString::from("eyJ0eXAi.graph-test-token")),
    )
}

fn attendee() -> Attendee {
    Attendee {
        name: "Ann Lee".into(),
        email: Some("ann.lee@example.com".into()),
        phone: Some("+4915112345678".into()),
        zone: None,
    }
}

fn slot() -> Slot {
    Slot {
        start: at("2025-03-03T11:00:00Z"),
        end: at("2025-03-03T11:30:00Z"),
        zone: chrono_tz::Europe::Berlin,
    }
}

#[tokio::test]
async fn availability_reads_the_mailbox_schedule_and_returns_free_slots_in_local_time() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1.0/users/bookings@contoso.example/calendar/getSchedule",
        ))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "Schedules": [MAILBOX],
            "StartTime": {"dateTime": "2025-03-03T09:00:00", "timeZone": "Europe/Berlin"},
            "EndTime": {"dateTime": "2025-03-03T17:00:00", "timeZone": "Europe/Berlin"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(SCHEDULE)))
        .mount(&server)
        .await;
    let window =
        TimeWindow::new(at("2025-03-03T08:00:00Z"), at("2025-03-03T16:00:00Z")).expect("window");
    let slots = connector(&server)
        .availability(
            &context(),
            window,
            chrono::Duration::minutes(60),
            chrono_tz::Europe::Berlin,
        )
        .await
        .expect("slots");
    let spoken: Vec<String> = slots.iter().map(Slot::spoken).collect();
    // Busy 09:30–11:00 and out of office 14:00–15:00 Berlin; the `free` item 11:00–12:00 does
    // not block; hours 09–17 local.
    assert_eq!(
        spoken,
        [
            "Monday 3 March at 11:00 AM CET (Europe/Berlin)",
            "Monday 3 March at 11:30 AM CET (Europe/Berlin)",
            "Monday 3 March at 12:00 PM CET (Europe/Berlin)",
            "Monday 3 March at 12:30 PM CET (Europe/Berlin)",
            "Monday 3 March at 1:00 PM CET (Europe/Berlin)",
            "Monday 3 March at 3:00 PM CET (Europe/Berlin)",
            "Monday 3 March at 3:30 PM CET (Europe/Berlin)",
            "Monday 3 March at 4:00 PM CET (Europe/Berlin)",
        ]
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_unknown_mailbox_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1.0/users/bookings@contoso.example/calendar/getSchedule",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(SCHEDULE_NOT_FOUND)))
        .mount(&server)
        .await;
    let window =
        TimeWindow::new(at("2025-03-03T08:00:00Z"), at("2025-03-03T16:00:00Z")).expect("window");
    let err = connector(&server)
        .availability(
            &context(),
            window,
            chrono::Duration::minutes(30),
            chrono_tz::Europe::Berlin,
        )
        .await
        .expect_err("not found");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn book_creates_an_event_in_local_time_with_a_transaction_id_from_the_key() {
    let server = MockServer::start().await;
    let key = "5f1c0a2e9d8b47a6b3c1d2e3f4a5b6c7";
    let transaction = transaction_id_for_key(key);
    Mock::given(method("POST"))
        .and(path(EVENTS_PATH))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "transactionId": transaction,
            "subject": "Appointment: Ann Lee",
            "start": {"dateTime": "2025-03-03T12:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-03T12:30:00", "timeZone": "Europe/Berlin"},
            "attendees": [{
                "emailAddress": {"address": "ann.lee@example.com", "name": "Ann Lee"},
                "type": "required",
            }],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(event_fixture(
            &transaction,
            "2025-03-03T12:00:00.0000000",
            "2025-03-03T12:30:00.0000000",
        )))
        .mount(&server)
        .await;
    let booking = connector(&server)
        .book(&context(), &slot(), &attendee(), key)
        .await
        .expect("booked");
    assert_eq!(booking.id, EVENT_ID);
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.slot.start, slot().start);
    assert_eq!(booking.slot.end, slot().end);
    assert!(booking.link.is_some());
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_throttled_booking_is_retried_with_the_same_transaction_id() {
    let server = MockServer::start().await;
    let key = "retried-key";
    let transaction = transaction_id_for_key(key);
    Mock::given(method("POST"))
        .and(path(EVENTS_PATH))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "0")
                .set_body_json(json_fixture(THROTTLED)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS_PATH))
        .and(body_partial_json(json!({"transactionId": transaction})))
        .respond_with(ResponseTemplate::new(201).set_body_json(event_fixture(
            &transaction,
            "2025-03-03T12:00:00.0000000",
            "2025-03-03T12:30:00.0000000",
        )))
        .mount(&server)
        .await;
    let booking = connector(&server)
        .book(&context(), &slot(), &attendee(), key)
        .await
        .expect("booked on the second attempt");
    assert_eq!(booking.id, EVENT_ID);
    let requests = server.received_requests().await.expect("recorded");
    let sent: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("json")["transactionId"].clone())
        .collect();
    assert_eq!(sent, [json!(transaction), json!(transaction)]);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn reschedule_patches_start_and_end() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(format!("{EVENTS_PATH}/{EVENT_ID}")))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "start": {"dateTime": "2025-03-04T15:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-04T15:30:00", "timeZone": "Europe/Berlin"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(event_fixture(
            "x",
            "2025-03-04T15:00:00.0000000",
            "2025-03-04T15:30:00.0000000",
        )))
        .mount(&server)
        .await;
    let new_slot = Slot {
        start: at("2025-03-04T14:00:00Z"),
        end: at("2025-03-04T14:30:00Z"),
        zone: chrono_tz::Europe::Berlin,
    };
    let booking = connector(&server)
        .reschedule(&context(), EVENT_ID, &new_slot, "key")
        .await
        .expect("moved");
    assert_eq!(booking.slot.start, new_slot.start);
    assert_eq!(booking.slot.end, new_slot.end);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn cancel_deletes_the_event_and_reports_an_unknown_one() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(format!("{EVENTS_PATH}/{EVENT_ID}")))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("{EVENTS_PATH}/gone")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json_fixture(NOT_FOUND)))
        .mount(&server)
        .await;
    let calendar = connector(&server);
    calendar
        .cancel(&context(), EVENT_ID, Some("caller asked"))
        .await
        .expect("cancelled");
    let err = calendar
        .cancel(&context(), "gone", None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn refusals_and_throttling_become_clear_errors() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(format!("{EVENTS_PATH}/denied")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json_fixture(DENIED)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{EVENTS_PATH}/conflict")))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "error": {"code": "ErrorIrresolvableConflict", "message": "The change key is stale."}
        })))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{EVENTS_PATH}/throttled")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json_fixture(THROTTLED)),
        )
        .mount(&server)
        .await;
    let calendar = connector(&server);
    let denied = calendar
        .reschedule(&context(), "denied", &slot(), "k")
        .await
        .expect_err("403");
    assert!(matches!(denied, ConnectorError::Auth(_)), "{denied:?}");
    let conflict = calendar
        .reschedule(&context(), "conflict", &slot(), "k")
        .await
        .expect_err("409");
    assert!(
        matches!(conflict, ConnectorError::Conflict(_)),
        "{conflict:?}"
    );
    let limited = calendar
        .reschedule(&context(), "throttled", &slot(), "k")
        .await
        .expect_err("429");
    assert!(
        matches!(
            limited,
            ConnectorError::Policy(PolicyError::Status {
                code: 429,
                retry_after: Some(after),
                ..
            }) if after == Duration::from_secs(30)
        ),
        "rate limited with Retry-After: {limited:?}"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn health_check_reads_one_event_of_the_mailbox() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .and(query_param("$top", "1"))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(EVENTS_TOP1)))
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_oauth_connection_supplies_the_token_and_a_refused_one_is_refreshed_once() {
    use callbridge::connectors::oauth::{OAuthCredentials, OAuthTokenSource};
    use std::sync::Arc;
    use wiremock::matchers::body_string_contains;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/common/oauth2/v2.0/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json_fixture(include_str!(
                "../../fixtures/vendors/microsoft_calendar/token.json"
            ))),
        )
        .mount(&server)
        .await;
    // The first answer refuses the token (revoked in the meantime); the retry succeeds.
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .and(header("authorization", "Bearer eyJ0eXAi.graph-oauth-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(EVENTS_TOP1)))
        .mount(&server)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let tokens = OAuthTokenSource::new(
        policy.clone(),
        OAuthCredentials {
            token_url: format!("{}/common/oauth2/v2.0/token", server.uri())
                .parse()
                .expect("url"),
            client_id: "app-123".into(),
            client_secret: SecretString::from("app-secret"),
            refresh_token: SecretString::from("M.refresh-secret"),
        },
        "microsoft_calendar",
    );
    let config = MicrosoftCalendarConfig::new(
        format!("{}/v1.0/", server.uri()).parse().expect("url"),
        MAILBOX,
    );
    MicrosoftCalendar::new(policy, config, Auth::OAuth(Arc::new(tokens)))
        .health_check(&context())
        .await
        .expect("healthy after one refresh");
    let requests = server.received_requests().await.expect("recorded");
    let token_requests = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/token"))
        .count();
    assert_eq!(
        token_requests, 2,
        "one token, then one refresh after the 401"
    );
    contract()
        .ignoring("/common/oauth2/v2.0/token")
        .assert_valid(&server)
        .await;
}

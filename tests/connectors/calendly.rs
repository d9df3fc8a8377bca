//! Calendly connector end to end against a local mock of API v2. The mock checks method, path,
//! query, the bearer token and the body of each operation; answers come from
//! `fixtures/vendors/calendly/` (shapes from the spec and Calendly's Scheduling API reference).

use std::time::Duration;

use callbridge::connectors::calendly::{Calendly, CalendlyConfig};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::{Attendee, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses, under `fixtures/vendor-specs/`).
fn contract() -> Contract {
    Contract::load("calendly", &["openapi.json"]).with_operation(
        "POST",
        "/invitees",
        &["authorization"],
        serde_json::from_str(include_str!(
            "../../fixtures/vendor-specs/calendly/create_event_invitee.schema.json"
        ))
        .expect("schema is JSON"),
    )
}

const AVAILABLE_TIMES: &str = include_str!("../../fixtures/vendors/calendly/available_times.json");
const INVITEE_CREATED: &str = include_str!("../../fixtures/vendors/calendly/invitee_created.json");
const INVITEES: &str = include_str!("../../fixtures/vendors/calendly/invitees.json");
const SCHEDULING_LINK: &str = include_str!("../../fixtures/vendors/calendly/scheduling_link.json");
const CANCELLATION: &str = include_str!("../../fixtures/vendors/calendly/cancellation.json");
const ALREADY_CANCELED: &str =
    include_str!("../../fixtures/vendors/calendly/error_403_already_canceled.json");
const INVALID_ARGUMENT: &str =
    include_str!("../../fixtures/vendors/calendly/error_400_invalid_argument.json");
const ME: &str = include_str!("../../fixtures/vendors/calendly/me.json");

const AUTH: &str = "Bearer calendly-pat-test";
const EVENT_TYPE: &str = "https://api.calendly.com/event_types/ETYPE00000000001";

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
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

fn connector(server: &MockServer, direct_booking: bool) -> Calendly {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let mut config = CalendlyConfig::new(
        server.uri().parse().expect("url"),
        SecretString::from("calendly-pat-test"),
        EVENT_TYPE,
    );
    config.direct_booking = direct_booking;
    Calendly::new(policy, config)
}

fn slot(start: &str) -> Slot {
    let start = at(start);
    Slot {
        start,
        end: start + chrono::Duration::minutes(30),
        zone: chrono_tz::America::New_York,
    }
}

fn ann() -> Attendee {
    Attendee {
        name: "Ann Lee".into(),
        email: Some("ann@example.com".into()),
        phone: Some("+14155550100".into()),
        zone: Some(chrono_tz::Europe::London),
    }
}

#[tokio::test]
async fn availability_keeps_available_times_in_order_and_caps_the_range_at_a_week() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/event_type_available_times"))
        .and(header("authorization", AUTH))
        .and(query_param("event_type", EVENT_TYPE))
        .and(query_param("start_time", "2050-09-05T00:00:00Z"))
        // Asked for 10 days; Calendly refuses more than 7.
        .and(query_param("end_time", "2050-09-12T00:00:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(AVAILABLE_TIMES)))
        .expect(1)
        .mount(&server)
        .await;
    let window =
        TimeWindow::new(at("2050-09-05T00:00:00Z"), at("2050-09-15T00:00:00Z")).expect("window");
    let slots = connector(&server, true)
        .availability(
            &context(),
            window,
            chrono::Duration::minutes(30),
            chrono_tz::America::New_York,
        )
        .await
        .expect("slots");
    let starts: Vec<_> = slots.iter().map(|slot| slot.start).collect();
    assert_eq!(
        starts,
        [at("2050-09-05T13:30:00Z"), at("2050-09-05T14:00:00Z")]
    );
    assert_eq!(slots[0].end, at("2050-09-05T14:00:00Z"));
    assert_eq!(slots[0].zone, chrono_tz::America::New_York);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn booking_creates_an_invitee_with_the_callers_zone() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/invitees"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "event_type": EVENT_TYPE,
            "start_time": "2050-09-05T14:00:00Z",
            "invitee": {
                "name": "Ann Lee",
                "email": "ann@example.com",
                "timezone": "Europe/London",
                "text_reminder_number": "+14155550100",
            },
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(INVITEE_CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    let booking = connector(&server, true)
        .book(&context(), &slot("2050-09-05T14:00:00Z"), &ann(), "key-1")
        .await
        .expect("booked");
    assert_eq!(booking.id, "EVT0000000000001");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.slot.start, at("2050-09-05T14:00:00Z"));
    assert_eq!(
        booking.link.as_deref(),
        Some("https://calendly.com/cancellations/INV0000000000001")
    );
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn booking_without_an_email_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let mut attendee = ann();
    attendee.email = None;
    let err = connector(&server, true)
        .book(
            &context(),
            &slot("2050-09-05T14:00:00Z"),
            &attendee,
            "key-1",
        )
        .await
        .expect_err("needs an email");
    assert!(matches!(err, ConnectorError::InvalidInput(_)), "{err:?}");
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn without_direct_booking_a_single_use_link_is_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/scheduling_links"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "max_event_count": 1,
            "owner": EVENT_TYPE,
            "owner_type": "EventType",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(SCHEDULING_LINK)))
        .expect(1)
        .mount(&server)
        .await;
    let booking = connector(&server, false)
        .book(&context(), &slot("2050-09-05T14:00:00Z"), &ann(), "key-1")
        .await
        .expect("link");
    assert_eq!(booking.status, BookingStatus::AwaitingCaller);
    assert_eq!(
        booking.link.as_deref(),
        Some("https://calendly.com/d/abcd-brv8/checkup")
    );
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_time_is_a_rejection_not_a_retry() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/invitees"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture(INVALID_ARGUMENT)))
        .expect(1)
        .mount(&server)
        .await;
    let err = connector(&server, true)
        .book(&context(), &slot("2050-09-05T14:00:00Z"), &ann(), "key-1")
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Rejected(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn cancelling_posts_the_reason_and_a_second_cancel_is_fine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/scheduled_events/EVT0000000000001/cancellation"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({ "reason": "feeling better" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(CANCELLATION)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/scheduled_events/EVT0000000000002/cancellation"))
        .respond_with(ResponseTemplate::new(403).set_body_json(fixture(ALREADY_CANCELED)))
        .expect(1)
        .mount(&server)
        .await;
    let calendly = connector(&server, true);
    calendly
        .cancel(&context(), "EVT0000000000001", Some("feeling better"))
        .await
        .expect("cancelled");
    calendly
        .cancel(&context(), "EVT0000000000002", None)
        .await
        .expect("already cancelled counts as done");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn rescheduling_books_the_same_invitee_then_cancels_the_old_event() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/scheduled_events/EVT0000000000009/invitees"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(INVITEES)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/invitees"))
        .and(body_json(json!({
            "event_type": EVENT_TYPE,
            "start_time": "2050-09-06T15:00:00Z",
            "invitee": {"name": "Ann Lee", "email": "ann@example.com", "timezone": "Europe/London"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(INVITEE_CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/scheduled_events/EVT0000000000009/cancellation"))
        .and(body_json(json!({ "reason": "Rescheduled by phone" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(CANCELLATION)))
        .expect(1)
        .mount(&server)
        .await;
    let booking = connector(&server, true)
        .reschedule(
            &context(),
            "EVT0000000000009",
            &slot("2050-09-06T15:00:00Z"),
            "key-2",
        )
        .await
        .expect("rescheduled");
    assert_eq!(booking.id, "EVT0000000000001");
    assert_eq!(booking.slot.start, at("2050-09-06T15:00:00Z"));
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn health_check_reads_the_current_user_and_reports_bad_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users/me"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ME)))
        .mount(&server)
        .await;
    connector(&server, true)
        .health_check(&context())
        .await
        .expect("healthy");

    let refusing = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/users/me"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "title": "Unauthenticated", "message": "The access token is invalid"
        })))
        .mount(&refusing)
        .await;
    let err = connector(&refusing, true)
        .health_check(&context())
        .await
        .expect_err("401");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

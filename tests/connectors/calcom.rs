//! Cal.com connector end to end against a local mock of API v2. The mock checks method, path,
//! query, the `cal-api-version` header each operation names in `calcom/openapi.json`, the
//! bearer API key and the body shape; answers come from the spec's examples
//! (`fixtures/vendors/calcom/`).

use std::time::Duration;

use callbridge::connectors::calcom::{Calcom, CalcomConfig};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::{Attendee, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses, under `fixtures/vendor-specs/`).
fn contract() -> Contract {
    Contract::load("calcom", &["openapi.json"]).variant(
        "BookingsController_2024_08_13_createBooking",
        "#/components/schemas/CreateBookingInput_2024_08_13",
    )
}

const SLOTS: &str = include_str!("../../fixtures/vendors/calcom/slots_range.json");
const BOOKING: &str = include_str!("../../fixtures/vendors/calcom/booking.json");
const ME: &str = include_str!("../../fixtures/vendors/calcom/me.json");
/// The spec defines no error bodies; this follows Cal.com's API error envelope (UNVERIFIED).
const SLOT_TAKEN: &str =
    include_str!("../../fixtures/vendors/calcom/error_400_slot_unavailable.json");

const AUTH: &str = "Bearer cal_live_test_key";

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn booking_fixture(uid: &str, status: &str, start: &str, end: &str) -> Value {
    let mut body = fixture(BOOKING);
    body["data"]["uid"] = json!(uid);
    body["data"]["status"] = json!(status);
    body["data"]["start"] = json!(start);
    body["data"]["end"] = json!(end);
    body
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

fn connector(server: &MockServer) -> Calcom {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Calcom::new(
        policy,
        CalcomConfig {
            base_url: server.uri().parse().expect("url"),
            api_key: SecretString::from("cal_live_test_key"),
            event_type_id: 100,
            max_slots: 3,
        },
    )
}

#[tokio::test]
async fn availability_reads_range_slots_in_the_business_zone() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/slots"))
        .and(header("cal-api-version", "2024-09-04"))
        .and(header("authorization", AUTH))
        .and(query_param("eventTypeId", "100"))
        .and(query_param("start", "2050-09-05T00:00:00Z"))
        .and(query_param("end", "2050-09-07T00:00:00Z"))
        .and(query_param("timeZone", "Europe/Rome"))
        .and(query_param("duration", "60"))
        .and(query_param("slotFormat", "range"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SLOTS)))
        .mount(&server)
        .await;
    let window =
        TimeWindow::new(at("2050-09-05T00:00:00Z"), at("2050-09-07T00:00:00Z")).expect("window");
    let slots = connector(&server)
        .availability(
            &context(),
            window,
            chrono::Duration::minutes(60),
            chrono_tz::Europe::Rome,
        )
        .await
        .expect("slots");
    let spoken: Vec<String> = slots.iter().map(Slot::spoken).collect();
    assert_eq!(
        spoken,
        [
            "Monday 5 September at 9:00 AM CEST (Europe/Rome)",
            "Monday 5 September at 10:00 AM CEST (Europe/Rome)",
            "Tuesday 6 September at 9:00 AM CEST (Europe/Rome)",
        ],
        "capped at max_slots, earliest first"
    );
    assert_eq!(slots[0].end - slots[0].start, chrono::Duration::minutes(60));
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn book_posts_the_attendee_and_event_type() {
    let server = MockServer::start().await;
    // An event type with several lengths: the booking names the one wanted.
    callbridge_testkit::vendor_mocks::calcom_event_type(&server, 100, 30, &[30, 60]).await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(header("authorization", AUTH))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "start": "2050-09-05T07:00:00Z",
            "eventTypeId": 100,
            "lengthInMinutes": 60,
            "attendee": {
                "name": "John Doe",
                "email": "john.doe@example.com",
                "timeZone": "America/New_York",
                "phoneNumber": "+919876543210"
            },
            "metadata": {"callbridgeKey": "key-1"}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_fixture(
            "bk_abc",
            "accepted",
            "2050-09-05T07:00:00Z",
            "2050-09-05T08:00:00Z",
        )))
        .mount(&server)
        .await;
    let slot = Slot {
        start: at("2050-09-05T07:00:00Z"),
        end: at("2050-09-05T08:00:00Z"),
        zone: chrono_tz::Europe::Rome,
    };
    let attendee = Attendee {
        name: "John Doe".into(),
        email: Some("john.doe@example.com".into()),
        phone: Some("+919876543210".into()),
        zone: Some(chrono_tz::America::New_York),
    };
    let booking = connector(&server)
        .book(&context(), &slot, &attendee, "key-1")
        .await
        .expect("booked");
    assert_eq!(booking.id, "bk_abc");
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.slot, slot);
    assert_eq!(booking.link.as_deref(), Some("https://example.com/meeting"));
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_single_length_event_type_is_booked_without_a_length() {
    // Cal.com answers 400 to `lengthInMinutes` for an event type with one length.
    let server = MockServer::start().await;
    callbridge_testkit::vendor_mocks::calcom_event_type(&server, 100, 60, &[]).await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(body_json(json!({
            "start": "2050-09-05T07:00:00Z",
            "eventTypeId": 100,
            "attendee": {"name": "John Doe", "timeZone": "Europe/Rome"},
            "metadata": {"callbridgeKey": "key-9"}
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_fixture(
            "bk_one",
            "accepted",
            "2050-09-05T07:00:00Z",
            "2050-09-05T08:00:00Z",
        )))
        .mount(&server)
        .await;
    let slot = Slot {
        start: at("2050-09-05T07:00:00Z"),
        end: at("2050-09-05T08:00:00Z"),
        zone: chrono_tz::Europe::Rome,
    };
    let attendee = Attendee {
        name: "John Doe".into(),
        email: None,
        phone: None,
        zone: None,
    };
    let calcom = connector(&server);
    let booking = calcom
        .book(&context(), &slot, &attendee, "key-9")
        .await
        .expect("booked without lengthInMinutes");
    assert_eq!(booking.id, "bk_one");
    // The event type is read once per connector, not once per booking.
    calcom
        .book(&context(), &slot, &attendee, "key-9")
        .await
        .expect("booked again");
    let lookups = server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/event-types/100")
        .count();
    assert_eq!(lookups, 1);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_taken_slot_is_rejected_and_a_5xx_booking_is_not_replayed() {
    let server = MockServer::start().await;
    callbridge_testkit::vendor_mocks::calcom_event_type(&server, 100, 60, &[]).await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture(SLOT_TAKEN)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let calcom = connector(&server);
    let slot = Slot {
        start: at("2050-09-05T07:00:00Z"),
        end: at("2050-09-05T08:00:00Z"),
        zone: chrono_tz::Europe::Rome,
    };
    let attendee = Attendee {
        name: "John Doe".into(),
        email: None,
        phone: None,
        zone: None,
    };
    let err = calcom
        .book(&context(), &slot, &attendee, "key-2")
        .await
        .expect_err("taken");
    assert!(matches!(err, ConnectorError::Rejected(_)), "{err:?}");
    let err = calcom
        .book(&context(), &slot, &attendee, "key-3")
        .await
        .expect_err("vendor down");
    assert!(matches!(err, ConnectorError::Policy(_)), "{err:?}");
    let posts = server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 2, "no write was replayed");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn reschedule_and_cancel_use_the_booking_uid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings/bk_abc/reschedule"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(header("authorization", AUTH))
        .and(body_partial_json(json!({"start": "2050-09-06T08:00:00Z"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(booking_fixture(
            "bk_new",
            "accepted",
            "2050-09-06T08:00:00Z",
            "2050-09-06T09:00:00Z",
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings/bk_new/cancel"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(body_json(json!({"cancellationReason": "caller asked"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(booking_fixture(
            "bk_new",
            "cancelled",
            "2050-09-06T08:00:00Z",
            "2050-09-06T09:00:00Z",
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings/nope/cancel"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let calcom = connector(&server);
    let new_slot = Slot {
        start: at("2050-09-06T08:00:00Z"),
        end: at("2050-09-06T09:00:00Z"),
        zone: chrono_tz::Europe::Rome,
    };
    let booking = calcom
        .reschedule(&context(), "bk_abc", &new_slot, "key-4")
        .await
        .expect("rescheduled");
    assert_eq!(booking.id, "bk_new");
    assert_eq!(
        booking.slot.spoken(),
        "Tuesday 6 September at 10:00 AM CEST (Europe/Rome)"
    );
    calcom
        .cancel(&context(), "bk_new", Some("caller asked"))
        .await
        .expect("cancelled");
    let err = calcom
        .cancel(&context(), "nope", None)
        .await
        .expect_err("unknown");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn health_check_reads_me_and_reports_a_bad_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/me"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ME)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/me"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy");

    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let wrong_key = Calcom::new(
        policy,
        CalcomConfig {
            base_url: server.uri().parse().expect("url"),
            api_key: SecretString::from("cal_wrong"),
            event_type_id: 100,
            max_slots: 3,
        },
    );
    let err = wrong_key
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

/// The contract check itself fails on what the spec does not allow: an unknown path, a missing
/// required query parameter or header, an undeclared query parameter, a body of the wrong shape,
/// missing credentials.
#[tokio::test]
async fn the_contract_refuses_requests_the_spec_does_not_allow() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    // The policy's client: it installs the TLS provider and allows the loopback mock.
    let policy = callbridge_testkit::loopback_policy();
    let client = policy.client();
    let base = server.uri();
    let sends = [
        client
            .get(format!("{base}/v2/slots?eventTypeId=1&end=2050-09-06T00:00:00Z"))
            .header("cal-api-version", "2024-09-04")
            .bearer_auth("k"),
        client
            .get(format!("{base}/v2/slots?eventTypeId=1&start=2050-09-05T00:00:00Z&end=2050-09-06T00:00:00Z&colour=red"))
            .header("cal-api-version", "2024-09-04")
            .bearer_auth("k"),
        client
            .post(format!("{base}/v2/bookings"))
            .header("cal-api-version", "2024-08-13")
            .bearer_auth("k")
            .json(&json!({"start": 5, "eventTypeId": 1, "attendee": {"name": "A", "timeZone": "UTC"}})),
        client
            .post(format!("{base}/v2/bookings"))
            .bearer_auth("k")
            .json(&json!({"start": "2050-09-05T14:00:00Z", "eventTypeId": 1, "attendee": {"name": "A", "timeZone": "UTC"}})),
        client.get(format!("{base}/v2/me")),
        client.get(format!("{base}/v2/nowhere")).bearer_auth("k"),
        client
            .post(format!("{base}/v2/bookings"))
            .header("cal-api-version", "2024-08-13")
            .bearer_auth("k")
            .json(&json!({"start": "2050-09-05T14:00:00Z", "eventTypeId": 1, "attendee": {"name": "A", "timeZone": "UTC"}})),
    ];
    for send in sends {
        send.send().await.expect("the mock answers");
    }
    let requests = server.received_requests().await.expect("recorded");
    let verdicts: Vec<Result<(), String>> = requests.iter().map(|r| contract().check(r)).collect();
    let expected = [
        "required query parameter start missing",
        "query parameter colour is not in the spec",
        "body /start",
        "required header cal-api-version missing",
        "Authorization missing",
        "no operation",
    ];
    for (verdict, wanted) in verdicts.iter().zip(expected) {
        let problem = verdict.as_ref().expect_err(wanted);
        assert!(problem.contains(wanted), "{problem}");
    }
    assert_eq!(verdicts[6], Ok(()), "a valid booking passes");
}

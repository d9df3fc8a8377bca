//! Google Calendar connector end to end against a local mock of the Calendar API and Google's
//! token endpoint. The mock checks method, path, query, auth header and body shape as the
//! discovery document (`calendar.v3.json`) defines them; canned answers live in
//! `fixtures/vendors/google-calendar/`.

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::google_calendar::{
    GoogleCalendar, GoogleCalendarConfig, event_id_for_key,
};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::oauth::{OAuthCredentials, OAuthTokenSource};
use callbridge::connectors::{Attendee, BookingStatus, Calendar, ConnectorError, Slot, TimeWindow};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{
    body_partial_json, body_string_contains, header, method, path, query_param,
};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses, under `fixtures/vendor-specs/`).
fn contract() -> Contract {
    Contract::load("google-calendar", &["calendar.v3.swagger2.json"]).ignoring("/token")
}

const TOKEN: &str = include_str!("../../fixtures/vendors/google-calendar/token.json");
const FREEBUSY: &str = include_str!("../../fixtures/vendors/google-calendar/freebusy.json");
const FREEBUSY_NOT_FOUND: &str =
    include_str!("../../fixtures/vendors/google-calendar/freebusy_not_found.json");
const EVENT: &str = include_str!("../../fixtures/vendors/google-calendar/event.json");
const DUPLICATE: &str =
    include_str!("../../fixtures/vendors/google-calendar/error_409_duplicate.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/google-calendar/error_401.json");
const CALENDAR: &str = include_str!("../../fixtures/vendors/google-calendar/calendar.json");

const BEARER: &str = "Bearer ya29.a0-test-access-token";

fn json_fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn event_fixture(event_id: &str) -> Value {
    json_fixture(&EVENT.replace("EVENT_ID_PLACEHOLDER", event_id))
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

async fn mount_token(server: &MockServer, body: Value) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=1%2F%2Frefresh-secret"))
        .and(body_string_contains("client_id=client-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

fn connector(server: &MockServer) -> GoogleCalendar {
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
            token_url: format!("{}/token", server.uri()).parse().expect("url"),
            client_id: "client-123".into(),
            client_secret: SecretString::from("client-secret"),
            refresh_token: SecretString::from("1//refresh-secret"),
        },
        "google_calendar",
    );
    let config = GoogleCalendarConfig::new(
        format!("{}/calendar/v3/", server.uri())
            .parse()
            .expect("url"),
        "primary",
    );
    GoogleCalendar::new(policy, config, Arc::new(tokens))
}

fn token_requests(requests: &[Request]) -> usize {
    requests.iter().filter(|r| r.url.path() == "/token").count()
}

fn attendee() -> Attendee {
    Attendee {
        name: "Ann Lee".into(),
        email: Some("ann.lee@example.com".into()),
        phone: Some("+4915112345678".into()),
        zone: None,
    }
}

#[tokio::test]
async fn availability_queries_free_busy_and_returns_free_slots_in_local_time() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "timeMin": "2025-03-03T08:00:00Z",
            "timeMax": "2025-03-03T16:00:00Z",
            "timeZone": "Europe/Berlin",
            "items": [{"id": "primary"}],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(FREEBUSY)))
        .mount(&server)
        .await;
    let calendar = connector(&server);
    let window =
        TimeWindow::new(at("2025-03-03T08:00:00Z"), at("2025-03-03T16:00:00Z")).expect("window");
    let slots = calendar
        .availability(
            &context(),
            window,
            chrono::Duration::minutes(60),
            chrono_tz::Europe::Berlin,
        )
        .await
        .expect("slots");
    let spoken: Vec<String> = slots.iter().map(Slot::spoken).collect();
    // Busy 09:30–11:00 and 14:00–15:00 Berlin; hours 09–17 local; window ends 17:00 local.
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
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_unknown_calendar_is_not_found() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(FREEBUSY_NOT_FOUND)))
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
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn book_inserts_an_event_with_an_id_derived_from_the_idempotency_key() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    let key = "5f1c0a2e9d8b47a6b3c1d2e3f4a5b6c7";
    let event_id = event_id_for_key(key);
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .and(query_param("sendUpdates", "all"))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "id": event_id,
            "start": {"dateTime": "2025-03-03T11:00:00Z", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-03T11:30:00Z", "timeZone": "Europe/Berlin"},
            "attendees": [{"email": "ann.lee@example.com", "displayName": "Ann Lee"}],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(event_fixture(&event_id)))
        .mount(&server)
        .await;
    let slot = Slot {
        start: at("2025-03-03T11:00:00Z"),
        end: at("2025-03-03T11:30:00Z"),
        zone: chrono_tz::Europe::Berlin,
    };
    let booking = connector(&server)
        .book(&context(), &slot, &attendee(), key)
        .await
        .expect("booked");
    assert_eq!(booking.id, event_id);
    assert_eq!(booking.status, BookingStatus::Confirmed);
    assert_eq!(booking.slot.start, slot.start);
    assert!(booking.link.is_some());
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_repeated_booking_finds_the_event_created_the_first_time() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    let key = "replayed-key";
    let event_id = event_id_for_key(key);
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json_fixture(DUPLICATE)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/calendar/v3/calendars/primary/events/{event_id}"
        )))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(event_fixture(&event_id)))
        .mount(&server)
        .await;
    let slot = Slot {
        start: at("2025-03-03T11:00:00Z"),
        end: at("2025-03-03T11:30:00Z"),
        zone: chrono_tz::Europe::Berlin,
    };
    let booking = connector(&server)
        .book(&context(), &slot, &attendee(), key)
        .await
        .expect("existing event");
    assert_eq!(booking.id, event_id);

    // The same id at another time is a real conflict, not our earlier booking.
    let other_slot = Slot {
        start: at("2025-03-03T14:00:00Z"),
        end: at("2025-03-03T14:30:00Z"),
        ..slot
    };
    let err = connector(&server)
        .book(&context(), &other_slot, &attendee(), key)
        .await
        .expect_err("conflict");
    assert!(matches!(err, ConnectorError::Conflict(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn reschedule_patches_start_and_end_and_cancel_deletes() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    let mut moved = event_fixture("evt123");
    moved["start"] = json!({"dateTime": "2025-03-04T10:00:00+01:00", "timeZone": "Europe/Berlin"});
    moved["end"] = json!({"dateTime": "2025-03-04T10:30:00+01:00", "timeZone": "Europe/Berlin"});
    Mock::given(method("PATCH"))
        .and(path("/calendar/v3/calendars/primary/events/evt123"))
        .and(query_param("sendUpdates", "all"))
        .and(header("authorization", BEARER))
        .and(body_partial_json(json!({
            "start": {"dateTime": "2025-03-04T09:00:00Z", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-04T09:30:00Z", "timeZone": "Europe/Berlin"},
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(moved))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/calendar/v3/calendars/primary/events/evt123"))
        .and(query_param("sendUpdates", "all"))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/calendar/v3/calendars/primary/events/gone"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/calendar/v3/calendars/primary/events/missing"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let calendar = connector(&server);
    let new_slot = Slot {
        start: at("2025-03-04T09:00:00Z"),
        end: at("2025-03-04T09:30:00Z"),
        zone: chrono_tz::Europe::Berlin,
    };
    let booking = calendar
        .reschedule(&context(), "evt123", &new_slot, "k")
        .await
        .expect("moved");
    assert_eq!(booking.slot.start, new_slot.start);
    assert_eq!(
        booking.slot.spoken(),
        "Tuesday 4 March at 10:00 AM CET (Europe/Berlin)"
    );
    calendar
        .cancel(&context(), "evt123", Some("caller asked"))
        .await
        .expect("cancelled");
    calendar
        .cancel(&context(), "gone", None)
        .await
        .expect("already gone counts as cancelled");
    let err = calendar
        .cancel(&context(), "missing", None)
        .await
        .expect_err("unknown event");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_token_is_cached_until_shortly_before_expiry() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(CALENDAR)))
        .mount(&server)
        .await;
    let calendar = connector(&server);
    for _ in 0..3 {
        calendar.health_check(&context()).await.expect("healthy");
    }
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests), 1, "one refresh for three calls");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_token_inside_the_refresh_margin_is_refreshed_before_use() {
    let server = MockServer::start().await;
    // Expires in 60 s, inside the default two-minute margin: every use refreshes first.
    let mut short_lived = json_fixture(TOKEN);
    short_lived["expires_in"] = json!(60);
    mount_token(&server, short_lived).await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(CALENDAR)))
        .mount(&server)
        .await;
    let calendar = connector(&server);
    calendar.health_check(&context()).await.expect("healthy");
    calendar.health_check(&context()).await.expect("healthy");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests), 2);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_401_forces_one_refresh_and_one_more_try() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json_fixture(UNAUTHORIZED)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(CALENDAR)))
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy after refresh");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests), 2);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_revoked_refresh_token_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked."
        })))
        .mount(&server)
        .await;
    let err = connector(&server)
        .health_check(&context())
        .await
        .expect_err("auth");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    assert_eq!(
        err.speakable(),
        "We aren't able to access that system right now."
    );
}

/// The Swagger 2 side of the contract check refuses what the discovery document does not allow:
/// a body of the wrong shape (`$ref` to `FreeBusyRequest` followed), an undeclared query parameter,
/// a request without credentials.
#[tokio::test]
async fn the_contract_refuses_requests_the_discovery_document_does_not_allow() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    // The policy's client: it installs the TLS provider and allows the loopback mock.
    let policy = callbridge_testkit::loopback_policy();
    let client = policy.client();
    let base = format!("{}/calendar/v3", server.uri());
    let sends = [
        client
            .post(format!("{base}/freeBusy"))
            .bearer_auth("t")
            .json(&json!({"timeMin": "2050-01-01T00:00:00Z", "items": "primary"})),
        client
            .get(format!("{base}/calendars/primary?colour=red"))
            .bearer_auth("t"),
        client.get(format!("{base}/calendars/primary")),
        client
            .post(format!("{base}/freeBusy"))
            .bearer_auth("t")
            .json(&json!({"timeMin": "2050-01-01T00:00:00Z", "items": [{"id": "primary"}]})),
    ];
    for send in sends {
        send.send().await.expect("the mock answers");
    }
    let requests = server.received_requests().await.expect("recorded");
    let verdicts: Vec<Result<(), String>> = requests.iter().map(|r| contract().check(r)).collect();
    for (verdict, wanted) in verdicts.iter().zip([
        "body /items",
        "query parameter colour is not in the spec",
        "credentials",
    ]) {
        let problem = verdict.as_ref().expect_err(wanted);
        assert!(problem.contains(wanted), "{problem}");
    }
    assert_eq!(verdicts[3], Ok(()), "a valid query passes");
}

//! A booking made mid-call, end to end: the fake model calls `book_appointment` (twice, with the same
//! arguments, as a model repeating itself would); the tenant's calendar connector (Cal.com, at a
//! local mock through the real connector code) receives exactly one booking, and its CRM (HubSpot,
//! also a local mock) exactly one meeting on the caller's contact; the model gets the
//! confirmation; the tool calls are in the call's events.

use std::time::Duration;

use callbridge_testkit::contract::Contract;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use callbridge::store::{
    AgentSpec, CallEventKind, ConnectorSpec, E164, NewTenant, Store, TenantId,
};
use callbridge_testkit::TestBridge;
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use secrecy::SecretString;

struct Setup {
    calendar: MockServer,
    crm: MockServer,
    realtime: FakeRealtime,
    bridge: TestBridge,
    tenant: TenantId,
}

/// A tenant whose calendar is Cal.com at a local mock answering after `delay`, and a fake model
/// that asks to book the same slot `repeats` times in one response.
async fn setup(delay: Duration, repeats: usize) -> Setup {
    let calendar = MockServer::start().await;
    callbridge_testkit::vendor_mocks::calcom_event_type(&calendar, 100, 30, &[]).await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(header("authorization", "Bearer cal_live_test_key"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"status": "success", "data": {
                    "id": 7, "uid": "bk-77", "status": "accepted",
                    "start": "2050-09-05T14:00:00.000Z", "end": "2050-09-05T14:30:00.000Z",
                    "eventTypeId": 100, "attendees": [{"name": "Ann Lee", "email": "ann@example.com", "timeZone": "America/New_York"}]
                }}))
                .set_delay(delay),
        )
        .mount(&calendar)
        .await;

    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(header("authorization", "Bearer pat-na1-test-token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"total": 1, "results": [
                {"id": "512", "properties": {"firstname": "Ann", "lastname": "Lee"}}
            ]})),
        )
        .mount(&crm)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/meetings"))
        .and(header("authorization", "Bearer pat-na1-test-token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "7700", "properties": {"hs_meeting_outcome": "SCHEDULED"}
        })))
        .mount(&crm)
        .await;

    let booking =
        json!({"start": "2050-09-05T14:00:00Z", "name": "Ann Lee", "email": "ann@example.com"});
    let calls = vec![("book_appointment".to_string(), booking); repeats];
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(calls),
            Turn::Say {
                ms: 200,
                byte: 0x31,
                text: "You're booked for Monday at ten.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;

    let tenant = TenantId::parse("acme-dental").unwrap();
    bridge
        .store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: "Acme Dental".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    bridge
        .vault()
        .put(
            &tenant,
            "calcom-key",
            "calcom",
            &SecretString::from(r#"{"api_key": "cal_live_test_key", "event_type_id": 100}"#),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "calcom".into(),
                base_url: Some(calendar.uri()),
                secret_name: Some("calcom-key".into()),
            },
        )
        .await
        .unwrap();
    bridge
        .vault()
        .put(
            &tenant,
            "hubspot-token",
            "hubspot",
            &SecretString::from("pat-na1-test-token"),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "hubspot".into(),
                base_url: Some(crm.uri()),
                secret_name: Some("hubspot-token".into()),
            },
        )
        .await
        .unwrap();
    bridge
        .store
        .create_agent(
            &tenant,
            &AgentSpec {
                name: "front-desk".into(),
                provider: "openai".into(),
                model: "gpt-realtime".into(),
                voice: "marin".into(),
                prompt_template: "default".into(),
                // order_status has no connector: it must not be offered.
                enabled_tools: vec!["book_appointment".into(), "order_status".into()],
                max_duration_s: 600,
                silence_timeout_s: 60,
                recording: false,
                voicemail: None,
            },
            &[E164::parse("+15005550006").unwrap()],
        )
        .await
        .unwrap();

    Setup {
        calendar,
        crm,
        realtime,
        bridge,
        tenant,
    }
}

#[tokio::test]
async fn a_repeated_booking_mid_call_books_once_and_is_confirmed_to_the_model() {
    let Setup {
        calendar,
        crm,
        realtime,
        bridge,
        tenant,
    } = setup(Duration::from_millis(150), 2).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000001",
            CallScript {
                hang_up_after_ms: Some(2_000),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x31),
        "the confirmation was spoken"
    );

    // Exactly one booking reached the calendar.
    let bookings: Vec<_> = calendar
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/bookings")
        .collect();
    assert_eq!(bookings.len(), 1, "booked once");
    let body: Value = serde_json::from_slice(&bookings[0].body).unwrap();
    assert_eq!(body["start"], "2050-09-05T14:00:00Z");
    assert_eq!(body["attendee"]["name"], "Ann Lee");

    // Exactly one meeting reached the CRM, on the caller's contact.
    let meetings: Vec<Value> = crm
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/crm/v3/objects/meetings")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(meetings.len(), 1, "one booking, one meeting");
    assert_eq!(meetings[0]["associations"][0]["to"]["id"], "512");
    assert_eq!(
        meetings[0]["properties"]["hs_meeting_start_time"],
        "2050-09-05T14:00:00.000Z"
    );

    // The model saw only the tools it can use, and got the confirmation for both calls.
    let log = &realtime.recorder.sessions()[0];
    let update = log
        .received
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap();
    let offered: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"book_appointment"), "{offered:?}");
    assert!(!offered.contains(&"order_status"), "{offered:?}");
    let outputs: Vec<Value> = log
        .received
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 2);
    for output in &outputs {
        assert_eq!(output["ok"], true, "{output}");
        assert_eq!(output["result"]["booking_id"], "bk-77");
        assert_eq!(output["result"]["crm_meeting_id"], "7700");
    }

    // Both tool calls are in the call's events.
    let mut events = Vec::new();
    for _ in 0..100 {
        let calls = bridge.store.list_calls(&tenant, 5).await.unwrap();
        if let Some(call) = calls.first().filter(|c| c.ended_at.is_some()) {
            events = bridge.store.call_events(&tenant, &call.id).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tool_results: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == CallEventKind::ToolResult)
        .map(|e| &e.payload)
        .collect();
    assert_eq!(tool_results.len(), 2);
    assert!(
        tool_results
            .iter()
            .all(|r| r["tool"] == "book_appointment" && r["outcome"] == "ok")
    );
    // Every request each vendor's mock received is valid per its spec.
    Contract::load("calcom", &["openapi.json"])
        .variant(
            "BookingsController_2024_08_13_createBooking",
            "#/components/schemas/CreateBookingInput_2024_08_13",
        )
        .assert_valid(&calendar)
        .await;
    Contract::load(
        "hubspot",
        &[
            "crm-contacts-v3.json",
            "crm-notes-v3.json",
            "crm-meetings-v3.json",
        ],
    )
    .assert_valid(&crm)
    .await;
}

#[tokio::test]
async fn a_slow_booking_gets_a_holding_phrase_then_the_confirmation() {
    let Setup {
        calendar,
        realtime,
        bridge,
        ..
    } = setup(Duration::from_millis(1_500), 1).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000002",
            CallScript {
                hang_up_after_ms: Some(3_500),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let first_filler = report
        .played
        .iter()
        .find(|(_, b)| *b == callbridge_testkit::fake_realtime::FILLER_BYTE)
        .map(|(at, _)| *at)
        .expect("the caller heard a holding phrase");
    let first_confirmation = report
        .played
        .iter()
        .find(|(_, b)| *b == 0x31)
        .map(|(at, _)| *at)
        .expect("the confirmation was spoken");
    assert!(first_filler < first_confirmation);
    let bookings = calendar
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/bookings")
        .count();
    assert_eq!(bookings, 1);
    // The holding phrase stayed out of the conversation and offered no tools.
    let log = &realtime.recorder.sessions()[0];
    let filler = log
        .received
        .iter()
        .find(|e| e["type"] == "response.create" && e["response"]["conversation"] == "none")
        .expect("out-of-band response");
    assert_eq!(filler["response"]["tool_choice"], "none");
    assert!(
        bridge
            .metrics
            .render()
            .contains("callbridge_fillers_total 1\n")
    );
    Contract::load("calcom", &["openapi.json"])
        .variant(
            "BookingsController_2024_08_13_createBooking",
            "#/components/schemas/CreateBookingInput_2024_08_13",
        )
        .assert_valid(&calendar)
        .await;
}

/// A booking made mid-call sends the caller one confirmation SMS: the tenant's rule "on
/// booking.created, SMS the caller" turns the booking (asked for twice by the model) into one
/// deduplicated outbox row, which the notification worker delivers through the tenant's Twilio
/// account (a local Messages mock, each form checked against Twilio's spec) — once, however
/// often the worker polls.
#[tokio::test]
async fn a_booking_mid_call_sends_the_caller_one_confirmation_sms() {
    // Every mock stays alive for the whole test (a dropped wiremock server goes back to a pool
    // and may be handed out again).
    let Setup {
        calendar,
        crm: _crm,
        realtime: _realtime,
        bridge,
        tenant,
    } = setup(Duration::from_millis(20), 2).await;
    let account = "AC0123456789abcdef0123456789abcdef";
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{account}/Messages.json"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"
        })))
        .mount(&twilio)
        .await;
    bridge
        .vault()
        .put(
            &tenant,
            "twilio-sms",
            "twilio_sms",
            &SecretString::from(json!({"account_sid": account, "auth_token": "tok"}).to_string()),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "twilio_sms".into(),
                base_url: Some(twilio.uri()),
                secret_name: Some("twilio-sms".into()),
            },
        )
        .await
        .unwrap();
    bridge
        .store
        .add_notification_rule(&tenant, "booking.created", "sms", "caller")
        .await
        .unwrap();
    // And the front desk hears when the call ended, with its outcome.
    bridge
        .store
        .add_notification_rule(&tenant, "call.ended", "sms", "+14155552671")
        .await
        .unwrap();

    bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000003",
            CallScript {
                hang_up_after_ms: Some(1_500),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let bookings = calendar
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v2/bookings")
        .count();
    assert_eq!(bookings, 1, "booked once");

    // Two successful tool answers, one booking notification (the second is the same event),
    // and the call's end (written when the call's record is finished).
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = bridge.store.list_notifications(&tenant, 10).await.unwrap();
        if rows.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    let booked = rows.iter().find(|r| r.event == "booking.created").unwrap();
    assert_eq!(booked.recipient, "+14155551234", "the caller");
    let ended = rows.iter().find(|r| r.event == "call.ended").unwrap();
    assert_eq!(ended.recipient, "+14155552671");

    let policy =
        callbridge::connectors::http::HttpPolicy::new(callbridge::connectors::http::PolicyConfig {
            egress: callbridge::egress::EgressPolicy::allow_loopback(),
            ..Default::default()
        })
        .unwrap();
    let worker = callbridge::notify::worker::NotificationWorker::new(
        bridge.store.clone(),
        Some(bridge.keyring.clone()),
        policy,
        None,
        callbridge::notify::worker::NotifyWorkerOptions::default(),
    );
    let first = worker.run_once().await.unwrap();
    assert_eq!(
        first.iter().map(|(_, o)| *o).collect::<Vec<_>>(),
        [callbridge::notify::worker::NotifyOutcome::Delivered; 2]
    );
    assert!(worker.run_once().await.unwrap().is_empty(), "nothing left");

    let requests = twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one confirmation, one call-ended note");
    let forms: Vec<Vec<(String, String)>> = requests
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap())
        .collect();
    let to_staff = forms
        .iter()
        .find(|f| f.contains(&("To".into(), "+14155552671".into())))
        .expect("the call-ended note");
    assert!(
        to_staff
            .iter()
            .any(|(k, v)| k == "Body" && v.contains("ended (caller_hung_up)")),
        "{to_staff:?}"
    );
    let form = forms
        .iter()
        .find(|f| f.contains(&("To".into(), "+14155551234".into())))
        .expect("the confirmation")
        .clone();
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            callbridge_testkit::contract::specs_dir().join("twilio_sms/api_v2010_messages.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let schema = callbridge_testkit::fake_twilio_rest::OperationSchema::from_spec(
        &spec,
        "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    )
    .unwrap();
    assert!(schema.check(&form).is_empty(), "{:?}", schema.check(&form));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("To"), "+14155551234");
    // No sender in the account's secret: the number the caller dialled sends the confirmation.
    assert_eq!(field("From"), "+15005550006");
    let body = field("Body");
    assert!(
        body.contains("Booking made") && body.contains("bk-77"),
        "{body}"
    );
}

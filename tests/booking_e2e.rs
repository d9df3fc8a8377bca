//! A booking made mid-call, end to end: the fake model calls `book_appointment` (twice, with the same
//! arguments, as a model repeating itself would); the tenant's calendar connector (Cal.com, at a
//! local mock through the real connector code) receives exactly one booking, and its CRM (HubSpot,
//! also a local mock) exactly one meeting on the caller's contact; the model gets the
//! confirmation; the tool calls are in the call's events. And a support call: the fake model opens
//! a ticket three times for one issue (a repeat and a reworded description), asks for the caller's
//! tickets and tries to comment on someone else's; the help desk (Zendesk, a local mock) gets one
//! ticket, carrying the call's id, and no comment. A CRM write through a whole call for
//! Salesforce (find the caller, log the call) is here too. An order call (WooCommerce) checks that
//! only the caller on the order hears about it.

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

/// A mock server of this test's own. `MockServer::start` lends servers from a pool shared by the
/// binary's tests: a request still in flight when one test ended (a post-call CRM lookup) reached
/// the next test to borrow that server and failed its spec check.
async fn own_mock() -> MockServer {
    MockServer::builder().start().await
}

/// A tenant whose calendar is Cal.com at a local mock answering after `delay`, and a fake model
/// that asks to book the same slot `repeats` times in one response.
async fn setup(delay: Duration, repeats: usize) -> Setup {
    let calendar = own_mock().await;
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

    let crm = own_mock().await;
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
    // The call journal queued the post-call exports: one job per configured connector.
    let call_id = bridge.store.list_calls(&tenant, 5).await.unwrap()[0]
        .id
        .clone();
    let mut queued = 0;
    for _ in 0..100 {
        queued = 0;
        for vendor in ["calcom", "hubspot"] {
            if bridge
                .store
                .call_export(&tenant, &call_id, vendor)
                .await
                .unwrap()
                .is_some()
            {
                queued += 1;
            }
        }
        if queued == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queued, 2, "post-call exports queued at the end of the call");
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
            "crm-calls-v3.json",
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

/// A tenant whose help desk is Zendesk at a local mock, and a fake model that handles a support
/// call: the same issue filed three times, the caller's tickets read back, and a comment attempted
/// on a ticket that is not the caller's.
#[tokio::test]
async fn a_support_call_opens_one_ticket_and_never_touches_another_callers() {
    const CALL: &str = "CA20000000000000000000000000000009";
    let desk = own_mock().await;
    let auth = "Basic YWdlbnRAYWNtZS5jb20vdG9rZW46emQtdGVzdC10b2tlbg==";
    Mock::given(method("GET"))
        .and(path("/api/v2/users/search"))
        .and(header("authorization", auth))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"users": [
            {"id": 35436, "name": "Ann Lee", "phone": "+14155551234", "role": "end-user"}
        ], "count": 1})))
        .mount(&desk)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", auth))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"ticket": {
                    "id": 35436, "subject": "Heating not working", "status": "new",
                    "priority": "high", "requester_id": 35436, "external_id": CALL,
                    "updated_at": "2050-09-05T14:00:00Z"
                }}))
                .set_delay(Duration::from_millis(150)),
        )
        .mount(&desk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"id": 35436, "result_type": "ticket", "subject": "Heating not working",
             "status": "open", "requester_id": 35436, "updated_at": "2050-09-05T14:00:00Z"}
        ], "count": 1})))
        .mount(&desk)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/777"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {
            "id": 777, "subject": "Someone else's refund", "status": "open", "requester_id": 1234567
        }})))
        .mount(&desk)
        .await;

    let issue = json!({"subject": "Heating not working", "description": "The heating stopped last night.", "priority": "high"});
    let reworded = json!({"subject": "heating not working.", "description": "No heat since yesterday evening.", "priority": "high"});
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![
                ("create_ticket".to_string(), issue.clone()),
                ("create_ticket".to_string(), issue),
                ("create_ticket".to_string(), reworded),
            ]),
            Turn::CallTools(vec![("ticket_status".to_string(), json!({}))]),
            Turn::CallTools(vec![(
                "add_ticket_comment".to_string(),
                json!({"ticket_id": "777", "comment": "Please refund me too."}),
            )]),
            Turn::Say {
                ms: 200,
                byte: 0x32,
                text: "Your ticket number is 35436.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let tenant = TenantId::parse("acme-heating").unwrap();
    bridge
        .store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: "Acme Heating".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    bridge
        .vault()
        .put(
            &tenant,
            "zendesk-token",
            "zendesk",
            &SecretString::from(
                r#"{"subdomain": "acme", "email": "agent@acme.com", "api_token": "zd-test-token"}"#,
            ),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "zendesk".into(),
                base_url: Some(desk.uri()),
                secret_name: Some("zendesk-token".into()),
            },
        )
        .await
        .unwrap();
    bridge
        .store
        .create_agent(
            &tenant,
            &AgentSpec {
                name: "support-line".into(),
                provider: "openai".into(),
                model: "gpt-realtime".into(),
                voice: "marin".into(),
                prompt_template: "default".into(),
                enabled_tools: vec![
                    "create_ticket".into(),
                    "ticket_status".into(),
                    "add_ticket_comment".into(),
                ],
                max_duration_s: 600,
                silence_timeout_s: 60,
                recording: false,
                voicemail: None,
            },
            &[E164::parse("+15005550006").unwrap()],
        )
        .await
        .unwrap();

    let report = bridge
        .twilio()
        .call(
            CALL,
            CallScript {
                hang_up_after_ms: Some(2_500),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x32),
        "the ticket number was spoken"
    );

    // One ticket reached the desk, for the caller, with the call's id as its external reference.
    let requests = desk.received_requests().await.unwrap();
    let tickets: Vec<Value> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/api/v2/tickets")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(tickets.len(), 1, "one issue, one ticket");
    assert_eq!(tickets[0]["ticket"]["external_id"], CALL);
    assert_eq!(tickets[0]["ticket"]["requester_id"], 35436);
    assert_eq!(tickets[0]["ticket"]["priority"], "high");
    // Nothing was written to the other person's ticket.
    assert!(
        !requests.iter().any(|r| r.method.as_str() == "PUT"),
        "no comment on another caller's ticket"
    );

    let log = &realtime.recorder.sessions()[0];
    let outputs: Vec<Value> = log
        .received
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 5, "{outputs:?}");
    for created in &outputs[..3] {
        assert_eq!(created["ok"], true, "{created}");
        assert_eq!(created["result"]["ticket_id"], "35436");
    }
    assert_eq!(outputs[3]["result"]["tickets"][0]["ticket_id"], "35436");
    assert_eq!(outputs[3]["result"]["tickets"][0]["status"], "open");
    assert_eq!(outputs[4]["ok"], false, "{}", outputs[4]);
    assert!(
        outputs[4].to_string().contains("couldn't find that ticket"),
        "{}",
        outputs[4]
    );
    Contract::load("zendesk", &["openapi.json"])
        .assert_valid(&desk)
        .await;
}

/// A CRM write through a whole call for a vendor added over the kit: the fake model looks the
/// caller up (`find_contact`, no arguments: the number they call from) and logs the call
/// (`log_call_note` on the contact it found); the tenant's CRM is Salesforce at a local mock,
/// reached by the real connector. The mock receives one SOQL lookup by the caller's number in its
/// stored forms and one completed call Task on that contact, both valid per Salesforce's spec; the
/// model was offered the same vendor-neutral tool names a HubSpot tenant gets.
#[tokio::test]
async fn a_call_looks_the_caller_up_and_logs_the_call_in_salesforce() {
    const CONTACT: &str = "003R000000aBcDeFGH";
    let crm = own_mock().await;
    Mock::given(method("GET"))
        .and(path("/services/data/v59.0/query"))
        .and(header("authorization", "Bearer 00Dxx!sf-e2e-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": 1, "done": true, "records": [{
                "attributes": {"type": "Contact", "url": format!("/services/data/v59.0/sobjects/Contact/{CONTACT}")},
                "Id": CONTACT, "FirstName": "Ann", "LastName": "Lee",
                "Email": "ann@example.com", "Phone": "(415) 555-1234", "MobilePhone": null
            }]
        })))
        .mount(&crm)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Task"))
        .and(header("authorization", "Bearer 00Dxx!sf-e2e-token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "00TR00000TaskOneAA", "errors": [], "success": true
        })))
        .mount(&crm)
        .await;

    let note = "Asked to move her cleaning; will call back after checking her diary.";
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![("find_contact".into(), json!({}))]),
            Turn::CallTools(vec![(
                "log_call_note".into(),
                json!({"note": note, "contact_id": CONTACT}),
            )]),
            Turn::Say {
                ms: 200,
                byte: 0x32,
                text: "I've noted that, Ann.".into(),
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
            "salesforce-token",
            "salesforce",
            &SecretString::from(r#"{"access_token": "00Dxx!sf-e2e-token"}"#),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "salesforce".into(),
                // The org's instance URL (a loopback mock here).
                base_url: Some(crm.uri()),
                secret_name: Some("salesforce-token".into()),
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
                enabled_tools: vec!["find_contact".into(), "log_call_note".into()],
                max_duration_s: 600,
                silence_timeout_s: 60,
                recording: false,
                voicemail: None,
            },
            &[E164::parse("+15005550006").unwrap()],
        )
        .await
        .unwrap();

    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000009",
            CallScript {
                hang_up_after_ms: Some(2_000),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x32),
        "the model spoke after the note was saved"
    );

    let requests = crm.received_requests().await.unwrap();
    let lookups: Vec<String> = requests
        .iter()
        .filter(|r| r.url.path() == "/services/data/v59.0/query")
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "q")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(lookups.len(), 1, "found as a Contact: no Lead query");
    assert!(
        lookups[0].contains("FROM Contact")
            && lookups[0].contains("'+14155551234'")
            && lookups[0].contains("'(415) 555-1234'"),
        "{}",
        lookups[0]
    );
    let tasks: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path() == "/services/data/v59.0/sobjects/Task")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(tasks.len(), 1, "one call, one task");
    assert_eq!(tasks[0]["WhoId"], CONTACT);
    assert_eq!(tasks[0]["Description"], note);
    assert_eq!(tasks[0]["TaskSubtype"], "Call");
    assert_eq!(tasks[0]["Status"], "Completed");
    // The call so far (seconds since its stream started), how it went, and which way it came.
    assert!(
        tasks[0]["CallDurationInSeconds"].as_u64().is_some(),
        "{}",
        tasks[0]
    );
    assert_eq!(tasks[0]["CallDisposition"], "Connected");
    assert_eq!(tasks[0]["CallType"], "Inbound");

    let log = &realtime.recorder.sessions()[0];
    let update = log
        .received
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap();
    let mut offered: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    offered.retain(|name| *name != "end_call");
    assert_eq!(offered, ["find_contact", "log_call_note"]);
    let outputs: Vec<Value> = log
        .received
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0]["ok"], true, "{}", outputs[0]);
    assert_eq!(outputs[0]["result"]["found"], true);
    assert_eq!(outputs[0]["result"]["contact"]["contact_id"], CONTACT);
    assert_eq!(outputs[0]["result"]["contact"]["first_name"], "Ann");
    assert_eq!(outputs[1]["ok"], true, "{}", outputs[1]);
    assert_eq!(outputs[1]["result"]["note_id"], "00TR00000TaskOneAA");

    Contract::load("salesforce", &["sobjects-v59.0.json"])
        .with_read("/services/data/v59.0/query", &["authorization"], &["q"])
        .assert_valid(&crm)
        .await;
}

/// An order call end to end: the fake model asks `order_status` for order 727 twice — once on the
/// caller's own number (the number on the order: answered) and once with another phone (refused
/// with the neutral answer, no order data) — against WooCommerce at a local mock.
#[tokio::test]
async fn an_order_call_tells_only_the_caller_on_the_order() {
    let shop = own_mock().await;
    let mut order: Value =
        serde_json::from_str(include_str!("../fixtures/vendors/woocommerce/order.json")).unwrap();
    // The order was placed from the number this call comes from.
    order["billing"]["phone"] = json!("+1 415-555-1234");
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/727"))
        .and(header("authorization", "Basic Y2tfdGVzdDpjc190ZXN0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(order))
        .mount(&shop)
        .await;

    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![
                ("order_status".to_string(), json!({"order_number": "727"})),
                (
                    "order_status".to_string(),
                    json!({"order_number": "727", "phone": "+1 212 555 0199"}),
                ),
            ]),
            Turn::Say {
                ms: 200,
                byte: 0x32,
                text: "Your order is being processed.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let tenant = TenantId::parse("corner-shop").unwrap();
    bridge
        .store
        .create_tenant(&NewTenant {
            id: tenant.clone(),
            name: "Corner Shop".into(),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    bridge
        .vault()
        .put(
            &tenant,
            "woo-keys",
            "woocommerce",
            &SecretString::from(r#"{"consumer_key": "ck_test", "consumer_secret": "cs_test"}"#),
        )
        .await
        .unwrap();
    bridge
        .store
        .put_connector(
            &tenant,
            &ConnectorSpec {
                vendor: "woocommerce".into(),
                base_url: Some(shop.uri()),
                secret_name: Some("woo-keys".into()),
            },
        )
        .await
        .unwrap();
    bridge
        .store
        .create_agent(
            &tenant,
            &AgentSpec {
                name: "orders".into(),
                provider: "openai".into(),
                model: "gpt-realtime".into(),
                voice: "marin".into(),
                prompt_template: "default".into(),
                enabled_tools: vec!["order_status".into()],
                max_duration_s: 600,
                silence_timeout_s: 60,
                recording: false,
                voicemail: None,
            },
            &[E164::parse("+15005550006").unwrap()],
        )
        .await
        .unwrap();

    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000077",
            CallScript {
                hang_up_after_ms: Some(2_000),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x32),
        "the answer was spoken"
    );

    let log = &realtime.recorder.sessions()[0];
    let outputs: Vec<Value> = log
        .received
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    let answered = outputs
        .iter()
        .find(|o| o["ok"] == true)
        .expect("one answer");
    assert_eq!(answered["result"]["order_number"], "#727");
    assert_eq!(answered["result"]["fulfillment_status"], "PROCESSING");
    let refused = outputs
        .iter()
        .find(|o| o["ok"] == false)
        .expect("one refusal");
    let text = refused.to_string();
    assert!(
        text.contains("I couldn't find an order with those details"),
        "{text}"
    );
    for leaked in ["PROCESSING", "PAID", "#727", "2025"] {
        assert!(!text.contains(leaked), "{leaked} leaked: {text}");
    }

    // Both lookups are in the call's events, one answered and one refused.
    let mut events = Vec::new();
    for _ in 0..100 {
        let calls = bridge.store.list_calls(&tenant, 5).await.unwrap();
        if let Some(call) = calls.first().filter(|c| c.ended_at.is_some()) {
            events = bridge.store.call_events(&tenant, &call.id).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes: Vec<String> = events
        .iter()
        .filter(|e| e.kind == CallEventKind::ToolResult)
        .filter(|e| e.payload["tool"] == "order_status")
        .map(|e| e.payload["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["failed", "ok"]);
    Contract::load("woocommerce", &["rest-v3-reference.json"])
        .assert_valid(&shop)
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
    let twilio = own_mock().await;
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

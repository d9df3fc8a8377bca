//! Call control end to end, over real sockets on 127.0.0.1: keypad tones out (decoded back with a
//! Goertzel filter bank), the cold transfer against the fake Twilio REST API (requests checked
//! against the held Twilio spec), and the transfer-destination API.

#[path = "api_harness/mod.rs"]
mod api_harness;
#[path = "store_harness/mod.rs"]
#[allow(unused_macros)] // `backend_suite!` is for the store suites
mod store_harness;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use callbridge::store::{CallEventKind, CallerIdPolicy, OpenHours, Store, TransferDestination};
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, SessionLog, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{
    ACCOUNT_SID, AUTH_TOKEN, CALLED_NUMBER, TestBridge, agent_spec, ended_call, provision_agent,
};

fn received_of<'a>(log: &'a SessionLog, kind: &str) -> Vec<&'a Value> {
    log.received.iter().filter(|e| e["type"] == kind).collect()
}

fn tool_outputs(log: &SessionLog) -> Vec<Value> {
    received_of(log, "conversation.item.create")
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect()
}

fn declared_tools(log: &SessionLog) -> Vec<String> {
    received_of(log, "session.update")[0]["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

// ---- DTMF -------------------------------------------------------------------------------------

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// G.711 μ-law decoding, written out here so the check does not trust the bridge's codec.
fn ulaw_decode(code: u8) -> f64 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = (code >> 4) & 0x07;
    let mantissa = code & 0x0F;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let value = magnitude - 0x84;
    f64::from(if sign != 0 { -value } else { value })
}

fn goertzel(samples: &[f64], freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / 8_000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The key one 20 ms frame carries, if any: one clearly dominant row and column frequency.
fn detect(frame: &[u8]) -> Option<char> {
    let samples: Vec<f64> = frame.iter().map(|b| ulaw_decode(*b)).collect();
    let energy: f64 = samples.iter().map(|s| s * s).sum();
    if energy < 1e6 {
        return None;
    }
    let strongest = |freqs: &[f64; 4]| {
        let p: Vec<f64> = freqs.iter().map(|f| goertzel(&samples, *f)).collect();
        let (i, best) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let second = p
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max);
        (*best > 4.0 * second).then_some(i)
    };
    Some(KEYS[strongest(&ROWS)?][strongest(&COLUMNS)?])
}

#[tokio::test]
async fn send_digits_plays_tones_that_decode_back_to_the_same_keys() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![("send_digits".into(), json!({"digits": "159#0*"}))]),
            Turn::Say {
                ms: 200,
                byte: 0x22,
                text: "Pressed.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let mut spec = agent_spec("openai", "gpt-realtime", "alloy");
    spec.enabled_tools = vec!["send_digits".into()];
    let tenant = provision_agent(&bridge.store, "acme", spec).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000c01",
            CallScript {
                hang_up_after_ms: Some(3_500),
                max_ms: 8_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let log = &realtime.recorder.sessions()[0];
    assert!(log.errors_sent.is_empty(), "{:?}", log.errors_sent);
    assert_eq!(declared_tools(log), vec!["send_digits", "end_call"]);

    // Decode every frame sent to Twilio; tones are whole frames, 5 per key, gaps of 5 silent frames.
    let frames: Vec<Vec<u8>> = report.media().map(|(_, bytes)| bytes).collect();
    let detected: Vec<Option<char>> = frames.iter().map(|f| detect(f)).collect();
    let mut runs: Vec<(Option<char>, usize)> = Vec::new();
    for key in &detected {
        match runs.last_mut() {
            Some((k, n)) if k == key => *n += 1,
            _ => runs.push((*key, 1)),
        }
    }
    let tones: Vec<(char, usize)> = runs
        .iter()
        .filter_map(|(k, n)| k.map(|k| (k, *n)))
        .collect();
    let keys: String = tones.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, "159#0*", "runs: {runs:?}");
    assert!(
        tones.iter().all(|(_, n)| *n == 5),
        "every tone lasts 100 ms: {tones:?}"
    );
    let first = runs.iter().position(|(k, _)| k.is_some()).unwrap();
    let last = runs.iter().rposition(|(k, _)| k.is_some()).unwrap();
    for (key, n) in &runs[first..last] {
        if key.is_none() {
            assert_eq!(*n, 5, "gaps last 100 ms: {runs:?}");
        }
    }
    // The tones played on the line, and the tool answered once they had.
    let played_tone_frames = report
        .played
        .iter()
        .filter(|(_, b)| *b != 0xFF && *b != 0x22)
        .count();
    assert!(played_tone_frames >= 6 * 5 - 6, "{played_tone_frames}");
    let outputs = tool_outputs(log);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["ok"], true);
    assert_eq!(outputs[0]["result"]["pressed"], "159#0*");
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x22).count(), 10);
    assert!(report.clears_at_ms.is_empty(), "nothing was cleared");

    // The call's record keeps the keys sent.
    let call = ended_call(&bridge.store, &tenant).await;
    let events = bridge.store.call_events(&tenant, &call.id).await.unwrap();
    let sent: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == CallEventKind::Dtmf)
        .map(|e| &e.payload)
        .collect();
    assert_eq!(sent, vec![&json!({"direction": "out", "digits": "159#0*"})]);
}

// ---- cold transfer ----------------------------------------------------------------------------

fn front_desk() -> TransferDestination {
    TransferDestination {
        name: "front-desk".into(),
        target: "+15551234567".into(),
        description: "Reception, for anything the agent cannot do.".into(),
        caller_id: CallerIdPolicy::Agent,
        hours: Vec::new(),
    }
}

/// The Twilio REST fake is reached through `TWILIO_API_BASE`, a process-wide setting: tests that
/// use it run one at a time.
static TWILIO_REST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn cold_transfer_redirects_only_after_the_handover_line_was_heard() {
    let _serial = TWILIO_REST.lock().await;
    let rest = FakeTwilioRest::start(&calls_spec().unwrap(), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap();
    // SAFETY: tests that read TWILIO_API_BASE hold TWILIO_REST.
    unsafe { std::env::set_var("TWILIO_API_BASE", &rest.base_url) };
    let call_sid = "CA00000000000000000000000000000c02";
    rest.add_call(call_sid, "in-progress");
    let stream_ended = Arc::new(tokio::sync::Notify::new());
    rest.notify_on_redirect(stream_ended.clone());

    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::SayThenCall {
            ms: 800,
            byte: 0x44,
            text: "I'll put you through to reception now.".into(),
            tool: "transfer_call".into(),
            arguments: json!({"destination": "front-desk", "reason": "billing question"}),
        }],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let mut spec = agent_spec("openai", "gpt-realtime", "alloy");
    spec.enabled_tools = vec!["transfer_call".into()];
    let tenant = provision_agent(&bridge.store, "acme", spec).await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    bridge
        .store
        .put_transfer_destinations(&tenant, &agent, &[front_desk()])
        .await
        .unwrap();

    let report = bridge
        .twilio()
        .call(
            call_sid,
            CallScript {
                max_ms: 8_000,
                stop_when: Some(stream_ended),
                ..CallScript::default()
            },
        )
        .await
        .unwrap();

    let log = &realtime.recorder.sessions()[0];
    assert!(log.errors_sent.is_empty(), "{:?}", log.errors_sent);
    let tools = received_of(log, "session.update")[0]["session"]["tools"].clone();
    let transfer = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "transfer_call")
        .expect("transfer_call declared");
    assert!(
        transfer["description"]
            .as_str()
            .unwrap()
            .contains("front-desk: Reception, for anything the agent cannot do. (always open)")
    );

    // One UpdateCall with the <Dial>, valid per the spec.
    assert!(rest.violations().is_empty(), "{:?}", rest.violations());
    let call = rest
        .calls()
        .into_iter()
        .find(|c| c.sid == call_sid)
        .unwrap();
    assert_eq!(call.updates.len(), 1, "{:?}", call.updates);
    let twiml = &call.updates[0]
        .iter()
        .find(|(k, _)| k == "Twiml")
        .expect("Twiml")
        .1;
    assert!(
        twiml.contains(&format!(
            r#"<Dial callerId="{CALLED_NUMBER}" timeout="30"><Number>+15551234567</Number></Dial>"#
        )),
        "{twiml}"
    );
    // The whole handover line played before the redirect ended the stream.
    let stopped_at = report.stopped_at_ms.expect("the redirect ended the stream");
    let line: Vec<u64> = report
        .played
        .iter()
        .filter(|(_, b)| *b == 0x44)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(line.len(), 40, "800 ms handover line = 40 frames");
    assert!(line.iter().all(|at| *at <= stopped_at));
    assert!(
        !report.closed_by_bridge,
        "Twilio ended the stream, not the bridge"
    );

    // Recorded: the call ended as transferred, and call.ended says where to.
    let ended = ended_call(&bridge.store, &tenant).await;
    assert_eq!(ended.end_reason.as_deref(), Some("transferred"));
    assert_eq!(ended.status.as_str(), "completed");
    let events = bridge.store.call_events(&tenant, &ended.id).await.unwrap();
    let payload = callbridge::webhooks::payload::call_ended_payload(&ended, &events);
    assert_eq!(payload["data"]["end_reason"], "transferred");
    assert_eq!(payload["data"]["transfer"]["destination"], "front-desk");
    assert_eq!(payload["data"]["transfer"]["outcome"], "redirected");
    for _ in 0..100 {
        if bridge
            .metrics
            .render()
            .contains("callbridge_calls_ended_total{reason=\"transferred\"} 1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{}", bridge.metrics.render());
}

#[tokio::test]
async fn a_closed_destination_is_refused_and_the_call_goes_on() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![(
                "transfer_call".into(),
                json!({"destination": "night-desk"}),
            )]),
            Turn::Say {
                ms: 200,
                byte: 0x55,
                text: "They are closed.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let mut spec = agent_spec("openai", "gpt-realtime", "alloy");
    spec.enabled_tools = vec!["transfer_call".into()];
    let tenant = provision_agent(&bridge.store, "acme", spec).await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    // Open one minute a week, never now (the test would have to run at 03:00 on a Sunday).
    let mut closed = front_desk();
    closed.name = "night-desk".into();
    closed.hours = vec![OpenHours {
        days: vec!["sun".into()],
        open: "03:00".into(),
        close: "03:01".into(),
    }];
    bridge
        .store
        .put_transfer_destinations(&tenant, &agent, &[closed])
        .await
        .unwrap();
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000c03",
            CallScript {
                hang_up_after_ms: Some(1_500),
                max_ms: 6_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let log = &realtime.recorder.sessions()[0];
    let outputs = tool_outputs(log);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["ok"], false);
    let message = outputs[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("closed now"), "{message}");
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x55).count(), 10);
    let ended = ended_call(&bridge.store, &tenant).await;
    assert_eq!(ended.end_reason.as_deref(), Some("caller_hung_up"));
}

#[tokio::test]
async fn destinations_are_stored_in_order_validated_and_tenant_scoped_sqlite() {
    let db = store_harness::sqlite().await;
    destinations_round_trip(&db.store).await;
}

#[tokio::test]
async fn destinations_are_stored_in_order_validated_and_tenant_scoped_postgres() {
    if let Some(db) = store_harness::postgres().await {
        destinations_round_trip(&db.store).await;
    }
}

async fn destinations_round_trip(store: &callbridge::store::SqlStore) {
    let tenant =
        provision_agent(store, "acme", agent_spec("openai", "gpt-realtime", "alloy")).await;
    let agent = store.list_agents(&tenant).await.unwrap()[0].id.clone();
    let mut sip = front_desk();
    sip.name = "pbx".into();
    sip.target = "sip:desk@pbx.example.com".into();
    sip.caller_id = CallerIdPolicy::Caller;
    sip.hours = vec![OpenHours {
        days: vec!["sat".into()],
        open: "10:00".into(),
        close: "24:00".into(),
    }];
    let stored = store
        .put_transfer_destinations(&tenant, &agent, &[sip.clone(), front_desk()])
        .await
        .unwrap();
    assert_eq!(stored, vec![sip.clone(), front_desk()]);
    let mut bad = front_desk();
    bad.target = "555-1234".into();
    let err = store
        .put_transfer_destinations(&tenant, &agent, &[front_desk(), bad])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("target"), "{err}");
    assert_eq!(
        store.transfer_destinations(&tenant, &agent).await.unwrap(),
        vec![sip, front_desk()],
        "a refused write changes nothing"
    );
    // Another tenant cannot read or write this agent's destinations.
    let other = provision_other_tenant(store).await;
    let err = store
        .transfer_destinations(&other, &agent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    let err = store
        .put_transfer_destinations(&other, &agent, &[front_desk()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // Replacing with nothing empties the list; deleting the agent drops its rows.
    store
        .put_transfer_destinations(&tenant, &agent, &[])
        .await
        .unwrap();
    assert!(
        store
            .transfer_destinations(&tenant, &agent)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn provision_other_tenant(
    store: &callbridge::store::SqlStore,
) -> callbridge::store::TenantId {
    use callbridge::store::{NewTenant, TenantId};
    let id = TenantId::parse("globex").unwrap();
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: "Globex".into(),
            time_zone: "UTC".into(),
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn the_api_reads_and_replaces_destinations_with_precise_errors() {
    use api_harness::{ADMIN_KEY, TestApi, expect_error, seed_tenant};
    let store = callbridge::store::SqlStore::open("sqlite::memory:")
        .await
        .unwrap();
    let api = TestApi::start(&store).await;
    let acme = seed_tenant(&api, &store, "acme", "+15005550101").await;
    let globex = seed_tenant(&api, &store, "globex", "+15005550102").await;
    let path = format!(
        "/tenants/acme/agents/{}/transfer-destinations",
        acme.agent_id
    );
    let r = api.get(&path, &acme.key).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, json!({"destinations": []}));

    let body = json!({"destinations": [
        {"name": "front-desk", "target": "+15551234567", "description": "Reception",
         "hours": [{"days": ["mon", "tue"], "open": "09:00", "close": "17:00"}]},
        {"name": "pbx", "target": "sip:desk@pbx.example.com", "description": "Desk phone",
         "caller_id": "caller"}
    ]});
    let r = api.put(&path, &acme.key, body).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["destinations"][0]["caller_id"], "agent",
        "the default"
    );
    assert_eq!(r.body["destinations"][1]["caller_id"], "caller");
    let r = api.get(&path, ADMIN_KEY).await;
    assert_eq!(r.body["destinations"][0]["hours"][0]["close"], "17:00");
    assert_eq!(r.body["destinations"].as_array().unwrap().len(), 2);

    // Precise errors, nothing changed.
    for (bad, needle) in [
        (
            json!({"name": "x", "target": "555", "description": "d"}),
            "target",
        ),
        (
            json!({"name": "x", "target": "+15551234567", "description": "d", "caller_id": "boss"}),
            "caller_id",
        ),
        (
            json!({"name": "x", "target": "+15551234567", "description": "d",
                "hours": [{"days": ["someday"], "open": "09:00", "close": "10:00"}]}),
            "someday",
        ),
    ] {
        let r = api
            .put(&path, &acme.key, json!({"destinations": [bad]}))
            .await;
        let body = expect_error(&r, 400, "invalid_field");
        assert!(body.to_string().contains(needle), "{needle}: {body}");
    }
    let r = api
        .put(&path, &acme.key, json!({"destinations": [], "extra": 1}))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        api.get(&path, &acme.key).await.body["destinations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Another tenant's key sees neither the tenant nor the agent.
    let r = api.get(&path, &globex.key).await;
    assert_eq!(r.status, 404, "{r:?}");
    let other = format!(
        "/tenants/globex/agents/{}/transfer-destinations",
        acme.agent_id
    );
    let r = api.get(&other, &globex.key).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = api
        .put(&other, &globex.key, json!({"destinations": []}))
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}

// ---- live calls -------------------------------------------------------------------------------

const LIVE_ADMIN_KEY: &str = "live-admin-key-0123456789abcdef";

async fn api(
    bridge: &TestBridge,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", bridge.public_url))
        .bearer_auth(LIVE_ADMIN_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_supervisor_watches_injects_and_hangs_up_a_live_call() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: 400,
            byte: 0x11,
            text: "Hello, how can I help?".into(),
        }],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |args| {
        args.admin_key = Some(LIVE_ADMIN_KEY.into());
    })
    .await;
    let tenant = provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let twilio = bridge.twilio();
    let call = tokio::spawn(async move {
        twilio
            .call(
                "CA00000000000000000000000000000c10",
                CallScript {
                    max_ms: 10_000,
                    ..CallScript::default()
                },
            )
            .await
            .unwrap()
    });

    // Listed once live, as this node's.
    let mut listed = Value::Null;
    for _ in 0..250 {
        let (status, body) = api(
            &bridge,
            reqwest::Method::GET,
            "/tenants/acme/calls/live",
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["calls"].as_array().is_some_and(|c| !c.is_empty()) {
            listed = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = &listed["calls"][0];
    assert_eq!(live["local"], true, "{listed}");
    assert_eq!(live["node"], listed["node"]);
    assert_eq!(
        live["twilio_call_sid"],
        "CA00000000000000000000000000000c10"
    );
    let call_id = live["call_id"].as_str().unwrap().to_owned();

    // Watch it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut events = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/tenants/acme/calls/{call_id}/events",
            bridge.public_url
        ))
        .bearer_auth(LIVE_ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    // Inject an instruction: it reaches the model as a system message.
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/inject"),
        Some(json!({"instruction": "Offer the 10 % discount."})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut injected = false;
    for _ in 0..250 {
        injected = received_of(&realtime.recorder.sessions()[0], "conversation.item.create")
            .iter()
            .any(|e| {
                e["item"]["role"] == "system"
                    && e["item"]["content"][0]["text"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("Offer the 10 % discount."))
            });
        if injected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(injected, "the instruction reached the model");
    // Bad input is precise.
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/hangup"),
        Some(json!({"mode": "later"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("later"), "{body}");

    // Hang up at once.
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/hangup"),
        Some(json!({"mode": "now"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let report = call.await.unwrap();
    assert!(report.closed_by_bridge, "the bridge ended the call");
    let ended = ended_call(&bridge.store, &tenant).await;
    assert_eq!(ended.end_reason.as_deref(), Some("operator_ended"));

    // The stream carried the supervisor's commands and ended with the call.
    let mut text = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("\"kind\":\"ended\"") {
            break;
        }
    }
    assert!(text.contains(r#""operator":"inject""#), "{text}");
    assert!(text.contains(r#""operator":"hang_up""#), "{text}");
    assert!(text.contains(r#""end_reason":"operator_ended""#), "{text}");

    // A command for the ended call is refused as such, never lost.
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/inject"),
        Some(json!({"instruction": "Too late."})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("has ended"), "{body}");
}

#[tokio::test]
async fn a_command_for_a_call_on_another_node_is_refused_naming_that_node() {
    use callbridge::store::{CallDirection, CallStatus, NewCall};
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |args| {
        args.admin_key = Some(LIVE_ADMIN_KEY.into());
    })
    .await;
    let tenant = provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    let elsewhere = bridge
        .store
        .create_call(&NewCall {
            tenant_id: tenant.clone(),
            agent_id: agent,
            direction: CallDirection::Inbound,
            from: "+14155551234".into(),
            to: CALLED_NUMBER.into(),
            twilio_call_sid: Some("CA00000000000000000000000000000c11".into()),
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    bridge
        .store
        .set_call_node(&tenant, &elsewhere.id, "bridge-b")
        .await
        .unwrap();
    let (status, body) = api(
        &bridge,
        reqwest::Method::GET,
        "/tenants/acme/calls/live",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["calls"][0]["call_id"], elsewhere.id.as_str());
    assert_eq!(body["calls"][0]["node"], "bridge-b");
    assert_eq!(body["calls"][0]["local"], false);
    for (path, command) in [
        ("hangup", json!({"mode": "now"})),
        ("inject", json!({"instruction": "Offer the discount."})),
        ("transfer", json!({"destination": "front-desk"})),
    ] {
        let (status, body) = api(
            &bridge,
            reqwest::Method::POST,
            &format!("/tenants/acme/calls/{}/{path}", elsewhere.id),
            Some(command),
        )
        .await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(body.to_string().contains("node bridge-b"), "{path}: {body}");
    }
    let (status, _) = api(
        &bridge,
        reqwest::Method::GET,
        &format!("/tenants/acme/calls/{}/events", elsewhere.id),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = api(
        &bridge,
        reqwest::Method::POST,
        "/tenants/acme/calls/call_nope/inject",
        Some(json!({"instruction": "x"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_supervisor_transfers_a_live_call_after_a_handover_line() {
    let _serial = TWILIO_REST.lock().await;
    let rest = FakeTwilioRest::start(&calls_spec().unwrap(), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap();
    // SAFETY: tests that read TWILIO_API_BASE hold TWILIO_REST.
    unsafe { std::env::set_var("TWILIO_API_BASE", &rest.base_url) };
    let call_sid = "CA00000000000000000000000000000c12";
    rest.add_call(call_sid, "in-progress");
    let stream_ended = Arc::new(tokio::sync::Notify::new());
    rest.notify_on_redirect(stream_ended.clone());
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::Say {
                ms: 200,
                byte: 0x11,
                text: "Hello.".into(),
            },
            Turn::Say {
                ms: 600,
                byte: 0x66,
                text: "I'm transferring you to reception now.".into(),
            },
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |args| {
        args.admin_key = Some(LIVE_ADMIN_KEY.into());
    })
    .await;
    let tenant = provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    bridge
        .store
        .put_transfer_destinations(&tenant, &agent, &[front_desk()])
        .await
        .unwrap();
    let twilio = bridge.twilio();
    let call = tokio::spawn(async move {
        twilio
            .call(
                call_sid,
                CallScript {
                    max_ms: 10_000,
                    stop_when: Some(stream_ended),
                    ..CallScript::default()
                },
            )
            .await
            .unwrap()
    });
    // Once the greeting is over, transfer.
    let mut call_id = String::new();
    for _ in 0..250 {
        let (_, body) = api(
            &bridge,
            reqwest::Method::GET,
            "/tenants/acme/calls/live",
            None,
        )
        .await;
        let sessions = realtime.recorder.sessions();
        let greeted = sessions.first().is_some_and(|log| {
            received_of(log, "response.create").len() == 1
                && log.item_audio_ms.values().any(|ms| *ms >= 200)
        });
        if let Some(id) = body["calls"][0]["call_id"].as_str()
            && greeted
        {
            call_id = id.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!call_id.is_empty(), "the call went live");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/transfer"),
        Some(json!({"destination": "nowhere"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("front-desk"), "{body}");
    let (status, body) = api(
        &bridge,
        reqwest::Method::POST,
        &format!("/tenants/acme/calls/{call_id}/transfer"),
        Some(json!({"destination": "front-desk"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let report = call.await.unwrap();

    let stopped_at = report.stopped_at_ms.expect("the redirect ended the stream");
    let line: Vec<u64> = report
        .played
        .iter()
        .filter(|(_, b)| *b == 0x66)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(line.len(), 30, "600 ms handover line = 30 frames");
    assert!(line.iter().all(|at| *at <= stopped_at));
    assert!(rest.violations().is_empty(), "{:?}", rest.violations());
    let updates = &rest
        .calls()
        .into_iter()
        .find(|c| c.sid == call_sid)
        .unwrap()
        .updates;
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0]
            .iter()
            .any(|(k, v)| k == "Twiml" && v.contains("<Number>+15551234567</Number>"))
    );
    let ended = ended_call(&bridge.store, &tenant).await;
    assert_eq!(ended.end_reason.as_deref(), Some("transferred"));
}

// ---- warm transfer ----------------------------------------------------------------------------

const WARM_SUMMARY: &str = "Ann Lee asks why invoice 42 was charged twice.";

/// A call whose agent starts a warm transfer to the front desk; returns once the caller is on
/// hold (the stream ended by the hold redirect), with the destination leg Twilio was asked to ring.
struct WarmCall {
    rest: FakeTwilioRest,
    realtime: FakeRealtime,
    bridge: TestBridge,
    tenant: callbridge::store::TenantId,
    call_sid: &'static str,
    human: callbridge_testkit::fake_twilio_rest::FakeCall,
}

async fn warm_call(call_sid: &'static str, later: Vec<Turn>) -> WarmCall {
    let rest = FakeTwilioRest::start(&calls_spec().unwrap(), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap();
    // SAFETY: tests that read TWILIO_API_BASE hold TWILIO_REST.
    unsafe { std::env::set_var("TWILIO_API_BASE", &rest.base_url) };
    rest.add_call(call_sid, "in-progress");
    let stream_ended = Arc::new(tokio::sync::Notify::new());
    rest.notify_on_redirect(stream_ended.clone());
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::SayThenCall {
            ms: 600,
            byte: 0x44,
            text: "Let me bring in a colleague; you'll hear hold music.".into(),
            tool: "transfer_call".into(),
            arguments: json!({"destination": "front-desk", "mode": "warm", "summary": WARM_SUMMARY}),
        }],
        later_scripts: vec![later],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let mut spec = agent_spec("openai", "gpt-realtime", "alloy");
    spec.enabled_tools = vec!["transfer_call".into()];
    let tenant = provision_agent(&bridge.store, "acme", spec).await;
    let agent = bridge.store.list_agents(&tenant).await.unwrap()[0]
        .id
        .clone();
    bridge
        .store
        .put_transfer_destinations(&tenant, &agent, &[front_desk()])
        .await
        .unwrap();
    let report = bridge
        .twilio()
        .call(
            call_sid,
            CallScript {
                max_ms: 8_000,
                stop_when: Some(stream_ended),
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    // The hold line played whole before the caller was moved.
    let stopped_at = report
        .stopped_at_ms
        .expect("the hold redirect ended the stream");
    let line: Vec<u64> = report
        .played
        .iter()
        .filter(|(_, b)| *b == 0x44)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(line.len(), 30, "600 ms line = 30 frames");
    assert!(line.iter().all(|at| *at <= stopped_at));

    assert!(rest.violations().is_empty(), "{:?}", rest.violations());
    let calls = rest.calls();
    let human = calls
        .iter()
        .find(|c| c.param("To") == Some("+15551234567"))
        .expect("the destination was rung")
        .clone();
    assert_eq!(human.param("From"), Some(CALLED_NUMBER));
    assert_eq!(human.param("Timeout"), Some("30"));
    assert_eq!(human.param("MachineDetection"), Some("Enable"));
    assert!(human.param("Url").unwrap().contains("/twilio/warm/"));
    assert!(human.param("StatusCallback").unwrap().ends_with("/status"));
    let caller = calls.iter().find(|c| c.sid == call_sid).unwrap();
    assert_eq!(caller.updates.len(), 1, "{:?}", caller.updates);
    let hold = &caller.updates[0]
        .iter()
        .find(|(k, _)| k == "Twiml")
        .unwrap()
        .1;
    assert!(
        hold.contains(r#"<Dial><Conference beep="false" startConferenceOnEnter="false" endConferenceOnExit="true">callbridge-"#),
        "{hold}"
    );
    // The call record stays open while the caller is on hold.
    let mut on_hold = false;
    for _ in 0..250 {
        let call = bridge.store.list_calls(&tenant, 10).await.unwrap();
        let events = bridge
            .store
            .call_events(&tenant, &call[0].id)
            .await
            .unwrap();
        if events
            .iter()
            .any(|e| e.kind == CallEventKind::Transfer && e.payload["outcome"] == "on_hold")
        {
            assert!(call[0].ended_at.is_none(), "not ended while on hold");
            on_hold = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(on_hold, "the hold was recorded");
    WarmCall {
        rest,
        realtime,
        bridge,
        tenant,
        call_sid,
        human,
    }
}

fn room_of(twiml: &str) -> &str {
    let start = twiml.find("callbridge-").unwrap();
    let end = start + twiml[start..].find('<').unwrap();
    &twiml[start..end]
}

#[tokio::test]
async fn warm_transfer_whispers_the_summary_and_connects_only_on_accept() {
    let _serial = TWILIO_REST.lock().await;
    let w = warm_call("CA00000000000000000000000000000c21", Vec::new()).await;
    let answer_url = w.human.param("Url").unwrap().to_owned();
    let (status, whisper) = w
        .rest
        .post_callback(&answer_url, &w.human.sid, &[("AnsweredBy", "human")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{whisper}");
    assert!(
        whisper.contains(&format!("<Say>{WARM_SUMMARY}</Say>")),
        "{whisper}"
    );
    assert!(
        whisper.contains(r#"<Gather input="dtmf" numDigits="1""#),
        "{whisper}"
    );
    let accept_url = answer_url.replace("/answer", "/accept");
    assert!(
        whisper.contains(&format!(r#"action="{accept_url}""#)),
        "{whisper}"
    );
    // A forged callback (wrong signature) is refused.
    let (status, _) = callbridge_testkit::fake_twilio::http_post(
        w.bridge.addr,
        accept_url.trim_start_matches(&w.bridge.public_url),
        Some("forged"),
        "AccountSid=AC&Digits=1",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);

    // A connector that exports calls, so the end of the call has an export to queue.
    w.bridge
        .store
        .put_connector(
            &w.tenant,
            &callbridge::store::ConnectorSpec {
                vendor: "google_sheets".into(),
                base_url: None,
                secret_name: None,
            },
        )
        .await
        .unwrap();
    let (status, join) = w
        .rest
        .post_callback(&accept_url, &w.human.sid, &[("Digits", "1")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{join}");
    let hold = w
        .rest
        .calls()
        .into_iter()
        .find(|c| c.sid == w.call_sid)
        .unwrap()
        .updates[0]
        .iter()
        .find(|(k, _)| k == "Twiml")
        .unwrap()
        .1
        .clone();
    assert!(join.contains(r#"startConferenceOnEnter="true""#), "{join}");
    assert_eq!(room_of(&join), room_of(&hold), "the same conference");
    // A second accept finds the transfer decided.
    let (_, again) = w
        .rest
        .post_callback(&accept_url, &w.human.sid, &[("Digits", "1")])
        .await
        .unwrap();
    assert!(again.contains("no longer waiting"), "{again}");

    let ended = ended_call(&w.bridge.store, &w.tenant).await;
    assert_eq!(ended.end_reason.as_deref(), Some("transferred"));
    assert_eq!(ended.status.as_str(), "completed");
    // A call that left through the transfer is exported like any other.
    assert!(
        w.bridge
            .store
            .call_export(&w.tenant, &ended.id, "google_sheets")
            .await
            .unwrap()
            .is_some(),
        "the post-call exports are queued"
    );
    let events = w
        .bridge
        .store
        .call_events(&w.tenant, &ended.id)
        .await
        .unwrap();
    let payload = callbridge::webhooks::payload::call_ended_payload(&ended, &events);
    assert_eq!(payload["data"]["transfer"]["outcome"], "connected");
    assert_eq!(payload["data"]["transfer"]["destination"], "front-desk");
    // The destination's leg ending later changes nothing; the caller was never sent back.
    w.rest
        .send_status(&w.human.sid, "completed", 2, &[])
        .await
        .unwrap();
    let caller = w
        .rest
        .calls()
        .into_iter()
        .find(|c| c.sid == w.call_sid)
        .unwrap();
    assert_eq!(caller.updates.len(), 1, "no redirect back to the agent");
    assert_eq!(w.realtime.recorder.sessions().len(), 1);
    assert!(w.rest.violations().is_empty(), "{:?}", w.rest.violations());
}

/// The destination does not take the call (`how`): the caller is redirected to a new stream, the
/// model is told why and speaks, and the call's record continues and ends normally.
async fn warm_transfer_not_taken(call_sid: &'static str, how: &str, why: &str) {
    let w = warm_call(
        call_sid,
        vec![Turn::Say {
            ms: 400,
            byte: 0x77,
            text: "Sorry, my colleague is not available. Can I take a message?".into(),
        }],
    )
    .await;
    match how {
        "machine" => {
            let url = w.human.param("Url").unwrap().to_owned();
            let (status, body) = w
                .rest
                .post_callback(&url, &w.human.sid, &[("AnsweredBy", "machine_start")])
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert!(
                body.contains("<Hangup/>") && !body.contains("<Say>Ann"),
                "{body}"
            );
        }
        "decline" => {
            let url = w.human.param("Url").unwrap().replace("/answer", "/accept");
            let (status, body) = w
                .rest
                .post_callback(&url, &w.human.sid, &[("Digits", "2")])
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert!(body.contains("<Hangup/>"), "{body}");
        }
        status => {
            w.rest
                .send_status(&w.human.sid, status, 1, &[])
                .await
                .unwrap();
        }
    }
    let caller = w
        .rest
        .calls()
        .into_iter()
        .find(|c| c.sid == w.call_sid)
        .unwrap();
    assert_eq!(caller.updates.len(), 2, "{:?}", caller.updates);
    let back = &caller.updates[1]
        .iter()
        .find(|(k, _)| k == "Twiml")
        .unwrap()
        .1;
    let twiml = callbridge_testkit::fake_twilio::parse_stream_twiml(back).unwrap();
    let twilio = w.bridge.twilio();
    let socket = twilio.connect_media(&twiml.url, None).await.unwrap();
    let report = callbridge_testkit::fake_twilio::run_stream(
        socket,
        w.call_sid,
        ACCOUNT_SID,
        &twiml,
        CallScript {
            max_ms: 6_000,
            hang_up_after_ms: Some(1_500),
            ..CallScript::default()
        },
    )
    .await
    .unwrap();
    assert!(
        report.played.iter().filter(|(_, b)| *b == 0x77).count() >= 15,
        "the agent spoke to the caller again"
    );
    let sessions = w.realtime.recorder.sessions();
    assert_eq!(sessions.len(), 2, "a new model session for the caller");
    let note = received_of(&sessions[1], "conversation.item.create")
        .into_iter()
        .any(|e| e.to_string().contains(why) && e.to_string().contains("front-desk"));
    assert!(note, "{:?}", sessions[1].received);

    // One call record, continued and ended normally, with the outcome.
    let ended = ended_call(&w.bridge.store, &w.tenant).await;
    assert_eq!(
        w.bridge
            .store
            .list_calls(&w.tenant, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ended.end_reason.as_deref(), Some("caller_hung_up"));
    let events = w
        .bridge
        .store
        .call_events(&w.tenant, &ended.id)
        .await
        .unwrap();
    let payload = callbridge::webhooks::payload::call_ended_payload(&ended, &events);
    let expected = match how {
        "machine" => "voicemail",
        "decline" => "declined",
        "no-answer" => "no_answer",
        other => other,
    };
    assert_eq!(payload["data"]["transfer"]["outcome"], expected);

    // The resumed stream's token is single-use.
    let socket = twilio.connect_media(&twiml.url, None).await.unwrap();
    let replay = callbridge_testkit::fake_twilio::run_stream(
        socket,
        w.call_sid,
        ACCOUNT_SID,
        &twiml,
        CallScript {
            max_ms: 2_000,
            ..CallScript::default()
        },
    )
    .await
    .unwrap();
    assert!(
        replay.closed_by_bridge,
        "a replayed resume token is refused"
    );
    assert!(w.rest.violations().is_empty(), "{:?}", w.rest.violations());
}

#[tokio::test]
async fn warm_transfer_busy_takes_the_caller_back_to_the_agent() {
    let _serial = TWILIO_REST.lock().await;
    warm_transfer_not_taken(
        "CA00000000000000000000000000000c22",
        "busy",
        "the line was busy",
    )
    .await;
}

#[tokio::test]
async fn warm_transfer_not_answered_takes_the_caller_back_to_the_agent() {
    let _serial = TWILIO_REST.lock().await;
    warm_transfer_not_taken(
        "CA00000000000000000000000000000c23",
        "no-answer",
        "nobody answered",
    )
    .await;
}

#[tokio::test]
async fn warm_transfer_to_voicemail_or_declined_takes_the_caller_back() {
    let _serial = TWILIO_REST.lock().await;
    warm_transfer_not_taken("CA00000000000000000000000000000c24", "machine", "voicemail").await;
    warm_transfer_not_taken(
        "CA00000000000000000000000000000c25",
        "decline",
        "could not take the call",
    )
    .await;
}

// ---- post-call analysis -----------------------------------------------------------------------

mod analysis {
    use super::*;
    use callbridge::call::analysis::{AnalysisOptions, AnalysisWorker};
    use callbridge::store::{TenantId, WebhookSettingsSpec};
    use callbridge::tenant::vault::Vault;
    use callbridge_testkit::fake_responses::{FakeResponses, Reply};
    use secrecy::SecretString;

    const GOAL: &str = "The caller books a cleaning appointment.";
    const KEY: &str = "sk-analysis-test-key";

    fn fields_schema() -> Value {
        json!({"type": "object", "additionalProperties": false,
            "required": ["reason", "appointment_booked", "callback_requested"],
            "properties": {
                "reason": {"type": "string"},
                "appointment_booked": {"type": "boolean"},
                "callback_requested": {"type": "boolean"}}})
    }

    fn good_reply() -> String {
        json!({"summary": "The caller asked about a cleaning and booked one for Tuesday.",
            "fields": {"reason": "cleaning", "appointment_booked": true, "callback_requested": false},
            "success": {"achieved": true, "reason": "An appointment was booked."}})
        .to_string()
    }

    fn bad_reply() -> String {
        // `appointment_booked` is not a boolean, and a field outside the schema.
        json!({"summary": "Booked.",
            "fields": {"reason": "cleaning", "appointment_booked": "yes", "callback_requested": false, "mood": "happy"},
            "success": {"achieved": true, "reason": "booked"}})
        .to_string()
    }

    struct Setup {
        bridge: TestBridge,
        _realtime: FakeRealtime,
        tenant: TenantId,
        llm: FakeResponses,
    }

    async fn setup() -> Setup {
        let realtime = FakeRealtime::start(Behaviour {
            script: vec![Turn::Say {
                ms: 300,
                byte: 0x21,
                text: "Hello, this is the dental office. Your cleaning is booked for Tuesday."
                    .into(),
            }],
            ..Behaviour::default()
        })
        .await;
        let bridge = TestBridge::start(&realtime.url(), |args| {
            args.admin_key = Some(LIVE_ADMIN_KEY.into());
        })
        .await;
        let tenant = provision_agent(
            &bridge.store,
            "acme",
            agent_spec("openai", "gpt-realtime", "alloy"),
        )
        .await;
        // A post-call webhook, to see what call.ended carries.
        Vault::new(bridge.store.clone(), bridge.keyring.clone())
            .put(
                &tenant,
                "hook",
                "webhook",
                &SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            )
            .await
            .unwrap();
        bridge
            .store
            .put_webhook_settings(
                &tenant,
                &WebhookSettingsSpec {
                    url: "http://127.0.0.1:9/hook".into(),
                    secret_name: "hook".into(),
                    enabled: true,
                },
            )
            .await
            .unwrap();
        let llm = FakeResponses::start(KEY).await.unwrap();
        Setup {
            bridge,
            _realtime: realtime,
            tenant,
            llm,
        }
    }

    fn worker(s: &Setup) -> AnalysisWorker {
        AnalysisWorker::new(
            s.bridge.store.clone(),
            callbridge_testkit::loopback_policy(),
            s.bridge.metrics.clone(),
            AnalysisOptions {
                base_url: s.llm.base_url.clone(),
                model: "gpt-4.1-mini".into(),
                api_key: SecretString::from(KEY),
                lease: Duration::from_secs(60),
                poll: Duration::from_millis(50),
                backoff: Duration::ZERO,
            },
        )
        .unwrap()
    }

    /// Places one call that the caller ends; returns its id once ended and its analysis queued.
    async fn one_call(s: &Setup, sid: &str) -> String {
        s.bridge
            .twilio()
            .call(
                sid,
                CallScript {
                    max_ms: 5_000,
                    hang_up_after_ms: Some(1_000),
                    ..CallScript::default()
                },
            )
            .await
            .unwrap();
        for _ in 0..250 {
            let calls = s.bridge.store.list_calls(&s.tenant, 10).await.unwrap();
            if let Some(call) = calls
                .iter()
                .find(|c| c.twilio_call_sid.as_deref() == Some(sid) && c.ended_at.is_some())
                && s.bridge
                    .store
                    .call_analysis(&s.tenant, &call.id)
                    .await
                    .unwrap()
                    .is_some()
            {
                return call.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the call never ended");
    }

    async fn call_ended(s: &Setup, call_id: &str) -> Option<Value> {
        s.bridge
            .store
            .list_outbox(&s.tenant, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap())
            .find(|p| p["data"]["call_id"] == call_id)
    }

    #[tokio::test]
    async fn settings_are_validated_and_tenant_scoped() {
        let s = setup().await;
        let agent = s.bridge.store.list_agents(&s.tenant).await.unwrap()[0]
            .id
            .clone();
        let path = format!("/tenants/acme/agents/{agent}/analysis");
        let (status, _) = api(&s.bridge, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 404, "no analysis by default");
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &path,
            Some(json!({"goal": GOAL, "fields_schema": {"type": "string"}})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("fields_schema"), "{body}");
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &path,
            Some(json!({"goal": GOAL, "fields_schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}})),
        )
        .await;
        assert_eq!(status, 400, "a schema that does not compile: {body}");
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &path,
            Some(json!({"goal": "", "fields_schema": fields_schema()})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &path,
            Some(json!({"goal": GOAL, "fields_schema": fields_schema()})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fields_schema"], fields_schema());
        let (status, _) = api(
            &s.bridge,
            reqwest::Method::PUT,
            "/tenants/acme/agents/no-such-agent/analysis",
            Some(json!({"goal": GOAL, "fields_schema": fields_schema()})),
        )
        .await;
        assert_eq!(status, 404);
        let other = provision_other_tenant(&s.bridge.store).await;
        let (status, _) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/{other}/agents/{agent}/analysis"),
            None,
        )
        .await;
        assert_eq!(status, 404, "another tenant's agent");
        let (status, _) = api(&s.bridge, reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 204);
        let (status, _) = api(&s.bridge, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn a_call_is_analysed_by_the_text_model_and_call_ended_waits_for_it() {
        let s = setup().await;
        let agent = s.bridge.store.list_agents(&s.tenant).await.unwrap()[0]
            .id
            .clone();
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &format!("/tenants/acme/agents/{agent}/analysis"),
            Some(json!({"goal": GOAL, "fields_schema": fields_schema()})),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // 1. A valid reply.
        let first = one_call(&s, "CA00000000000000000000000000000a01").await;
        assert!(
            call_ended(&s, &first).await.is_none(),
            "call.ended waits for the analysis"
        );
        let (status, pending) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/acme/calls/{first}/analysis"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(pending["status"], "pending");
        s.llm.script([Reply::Text(good_reply())]);
        let worker = worker(&s);
        assert!(worker.run_once().await.unwrap());
        assert!(!worker.run_once().await.unwrap(), "nothing else queued");
        let requests = s.llm.requests();
        assert_eq!(requests.len(), 1);
        let input = requests[0]["input"].as_str().unwrap();
        assert!(input.contains(GOAL), "{input}");
        assert!(
            input.contains("Your cleaning is booked for Tuesday"),
            "{input}"
        );
        assert_eq!(requests[0]["model"], "gpt-4.1-mini");
        assert_eq!(
            requests[0]["text"]["format"]["schema"]["properties"]["fields"],
            fields_schema()
        );
        let (_, done) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/acme/calls/{first}/analysis"),
            None,
        )
        .await;
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["attempts"], 1);
        assert_eq!(done["fields"]["appointment_booked"], true);
        assert_eq!(done["success"]["achieved"], true);
        let ended = call_ended(&s, &first).await.expect("call.ended queued");
        assert_eq!(ended["data"]["analysis"]["status"], "done");
        assert_eq!(ended["data"]["analysis"]["fields"]["reason"], "cleaning");
        assert!(
            ended["data"]["analysis"]["summary"]
                .as_str()
                .unwrap()
                .contains("booked")
        );

        // 2. An invalid reply is asked for once more; the valid second one is kept.
        let second = one_call(&s, "CA00000000000000000000000000000a02").await;
        s.llm
            .script([Reply::Text(bad_reply()), Reply::Text(good_reply())]);
        assert!(worker.run_once().await.unwrap());
        let analysis = s
            .bridge
            .store
            .call_analysis(&s.tenant, &second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(analysis.status.as_str(), "done");
        assert_eq!(analysis.attempts, 2);

        // 3. Two invalid replies: failed, nothing invented, and call.ended says so.
        let third = one_call(&s, "CA00000000000000000000000000000a03").await;
        s.llm.script([
            Reply::Text(bad_reply()),
            Reply::Text("Sure! The caller booked an appointment.".into()),
        ]);
        assert!(worker.run_once().await.unwrap());
        let (_, failed) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/acme/calls/{third}/analysis"),
            None,
        )
        .await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["attempts"], 2);
        assert!(failed["fields"].is_null() && failed["summary"].is_null());
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains("did not validate"),
            "{failed}"
        );
        let ended = call_ended(&s, &third).await.expect("call.ended queued");
        assert_eq!(ended["data"]["analysis"]["status"], "failed");
        assert!(ended["data"]["analysis"]["fields"].is_null());

        // 4. The model down (5xx): the analysis stays queued across a restart (a new worker)
        //    and is done once the model answers.
        let fourth = one_call(&s, "CA00000000000000000000000000000a04").await;
        s.llm
            .script([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
        assert!(worker.run_once().await.unwrap());
        let analysis = s
            .bridge
            .store
            .call_analysis(&s.tenant, &fourth)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(analysis.status.as_str(), "pending");
        assert!(analysis.error.is_some());
        assert!(call_ended(&s, &fourth).await.is_none());
        drop(worker);
        s.llm.script([Reply::Text(good_reply())]);
        let restarted = self::worker(&s);
        assert!(restarted.run_once().await.unwrap());
        let analysis = s
            .bridge
            .store
            .call_analysis(&s.tenant, &fourth)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(analysis.status.as_str(), "done");
        assert!(call_ended(&s, &fourth).await.is_some());

        // Another tenant cannot read the analysis.
        let other = provision_other_tenant(&s.bridge.store).await;
        let (status, _) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/{other}/calls/{first}/analysis"),
            None,
        )
        .await;
        assert_eq!(status, 404);
        assert!(s.llm.violations().is_empty(), "{:?}", s.llm.violations());
    }

    /// A done analysis goes to the tenant's CRM (HubSpot over its real connector, pointed at a
    /// loopback mock checked against the vendor's spec) as a call note on the caller's contact,
    /// once per call even when the analysis runs again; without a CRM nothing is written.
    #[tokio::test]
    async fn a_done_analysis_is_written_to_the_crm_once_as_a_call_note() {
        use callbridge::store::{AnalysisStatus, ConnectorSpec, SettledAnalysis};
        use callbridge::tools::store_ledger::StoreLedger;
        use callbridge_testkit::contract::Contract;
        use wiremock::matchers::{body_partial_json, header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let s = setup().await;
        let agent = s.bridge.store.list_agents(&s.tenant).await.unwrap()[0]
            .id
            .clone();
        let (status, body) = api(
            &s.bridge,
            reqwest::Method::PUT,
            &format!("/tenants/acme/agents/{agent}/analysis"),
            Some(json!({"goal": GOAL, "fields_schema": fields_schema()})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // A server of this test's own, not one lent from wiremock's pool: a request still in
        // flight when another test ended would reach it and fail its spec check.
        let crm = MockServer::builder().start().await;
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/contacts/search"))
            .and(header("authorization", "Bearer pat-na1-test-token"))
            .and(body_partial_json(json!({"filterGroups": [
                {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+14155551234"}]},
                {"filters": [{"propertyName": "mobilephone", "operator": "EQ", "value": "+14155551234"}]}
            ]})))
            .respond_with(ResponseTemplate::new(200).set_body_string(include_str!(
                "../fixtures/vendors/hubspot/search_one.json"
            )))
            .mount(&crm)
            .await;
        Mock::given(method("POST"))
            .and(path("/crm/v3/objects/calls"))
            .and(header("authorization", "Bearer pat-na1-test-token"))
            .and(body_partial_json(
                json!({"associations": [{"to": {"id": "512"}}]}),
            ))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_string(include_str!("../fixtures/vendors/hubspot/call.json")),
            )
            .expect(1)
            .mount(&crm)
            .await;
        let ledger = Arc::new(StoreLedger::new(s.bridge.store.clone()));
        let worker = || {
            worker(&s).with_crm_notes(
                Some(Vault::new(s.bridge.store.clone(), s.bridge.keyring.clone())),
                None,
                ledger.clone(),
            )
        };

        // 1. No CRM configured: the analysis is done as before, nothing is written.
        let plain = one_call(&s, "CA00000000000000000000000000000b01").await;
        s.llm.script([Reply::Text(good_reply())]);
        assert!(worker().run_once().await.unwrap());
        let (_, done) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/acme/calls/{plain}/analysis"),
            None,
        )
        .await;
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["crm_note"], "no_crm", "{done}");
        assert_eq!(done["fields"]["reason"], "cleaning");
        assert!(crm.received_requests().await.unwrap().is_empty());

        // 2. HubSpot configured: the summary, the outcome and the fields reach the contact.
        Vault::new(s.bridge.store.clone(), s.bridge.keyring.clone())
            .put(
                &s.tenant,
                "hubspot-token",
                "hubspot",
                &SecretString::from("pat-na1-test-token"),
            )
            .await
            .unwrap();
        s.bridge
            .store
            .put_connector(
                &s.tenant,
                &ConnectorSpec {
                    vendor: "hubspot".into(),
                    base_url: Some(crm.uri()),
                    secret_name: Some("hubspot-token".into()),
                },
            )
            .await
            .unwrap();
        let call = one_call(&s, "CA00000000000000000000000000000b02").await;
        s.llm.script([Reply::Text(good_reply())]);
        assert!(worker().run_once().await.unwrap());
        let (_, done) = api(
            &s.bridge,
            reqwest::Method::GET,
            &format!("/tenants/acme/calls/{call}/analysis"),
            None,
        )
        .await;
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["crm_note"], "written", "{done}");
        let ended = call_ended(&s, &call).await.expect("call.ended queued");
        assert_eq!(ended["data"]["analysis"]["crm_note"], "written");
        let notes: Vec<Value> = crm
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/crm/v3/objects/calls")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(notes.len(), 1);
        // The call as a call engagement: how it went, which way, how long (it hung up after
        // about a second).
        let properties = &notes[0]["properties"];
        assert_eq!(properties["hs_call_status"], "COMPLETED", "{properties}");
        assert_eq!(properties["hs_call_direction"], "INBOUND", "{properties}");
        let millis: u64 = properties["hs_call_duration"]
            .as_str()
            .and_then(|ms| ms.parse().ok())
            .expect("a duration");
        assert!(millis <= 10_000, "{properties}");
        let text = properties["hs_call_body"].as_str().unwrap();
        assert!(text.contains("booked one for Tuesday"), "{text}");
        assert!(
            text.contains("Goal met: An appointment was booked."),
            "{text}"
        );
        assert!(text.contains("reason: cleaning"), "{text}");

        // 3. The analysis runs again (a lost lease, a restart): the note is not written twice.
        s.bridge
            .store
            .settle_analysis(
                &s.tenant,
                &call,
                &SettledAnalysis {
                    status: AnalysisStatus::Pending,
                    attempts: 1,
                    outcome: Err("the worker died"),
                    model: "gpt-4.1-mini",
                    retry_at_ms: 0,
                },
            )
            .await
            .unwrap();
        s.llm.script([Reply::Text(good_reply())]);
        assert!(worker().run_once().await.unwrap());
        let again = s
            .bridge
            .store
            .call_analysis(&s.tenant, &call)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.status.as_str(), "done");
        assert_eq!(again.result.unwrap()["crm_note"], "written");
        // `expect(1)` on the note endpoint is checked here, and every request against the spec.
        crm.verify().await;
        Contract::load("hubspot", &["crm-contacts-v3.json", "crm-calls-v3.json"])
            .assert_valid(&crm)
            .await;
    }
}

#[tokio::test]
async fn analysis_rows_queue_lease_and_settle_sqlite() {
    let db = store_harness::sqlite().await;
    analysis_round_trip(&db.store).await;
}

#[tokio::test]
async fn analysis_rows_queue_lease_and_settle_postgres() {
    if let Some(db) = store_harness::postgres().await {
        analysis_round_trip(&db.store).await;
    }
}

async fn analysis_round_trip(store: &callbridge::store::SqlStore) {
    use callbridge::store::{
        AnalysisSettings, AnalysisStatus, CallDirection, CallStatus, NewCall, SettledAnalysis,
    };
    let tenant =
        provision_agent(store, "acme", agent_spec("openai", "gpt-realtime", "alloy")).await;
    let agent = store.list_agents(&tenant).await.unwrap()[0].id.clone();
    let mut settings = AnalysisSettings {
        goal: "Book a visit.".into(),
        fields_schema: json!({"type": "object", "properties": {"reason": {"type": "string"}}}),
        model: None,
    };
    store
        .put_analysis_settings(&tenant, &agent, &settings)
        .await
        .unwrap();
    settings.model = Some("gpt-4.1".into());
    store
        .put_analysis_settings(&tenant, &agent, &settings)
        .await
        .unwrap();
    assert_eq!(
        store.analysis_settings(&tenant, &agent).await.unwrap(),
        Some(settings.clone())
    );
    let other = provision_other_tenant(store).await;
    assert_eq!(store.analysis_settings(&other, &agent).await.unwrap(), None);
    assert!(
        store
            .put_analysis_settings(&other, &agent, &settings)
            .await
            .is_err(),
        "another tenant's agent"
    );
    let call = store
        .create_call(&NewCall {
            tenant_id: tenant.clone(),
            agent_id: agent.clone(),
            direction: CallDirection::Inbound,
            from: "+14155551234".into(),
            to: "+15005550006".into(),
            twilio_call_sid: Some("CA00000000000000000000000000000a99".into()),
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    assert!(store.queue_analysis(&tenant, &call.id).await.unwrap());
    assert!(
        !store.queue_analysis(&tenant, &call.id).await.unwrap(),
        "once"
    );
    let claimed = store.claim_analysis(60_000).await.unwrap().unwrap();
    assert_eq!(
        (claimed.tenant.clone(), claimed.call_id.clone()),
        (tenant.clone(), call.id.clone())
    );
    assert_eq!(store.claim_analysis(60_000).await.unwrap(), None, "leased");
    let result = json!({"summary": "s", "fields": {"reason": "r"}, "success": {"achieved": true, "reason": "r"}});
    store
        .settle_analysis(
            &tenant,
            &call.id,
            &SettledAnalysis {
                status: AnalysisStatus::Done,
                attempts: 1,
                outcome: Ok(&result),
                model: "gpt-4.1",
                retry_at_ms: 0,
            },
        )
        .await
        .unwrap();
    let stored = store
        .call_analysis(&tenant, &call.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, AnalysisStatus::Done);
    assert_eq!(stored.result, Some(result));
    assert_eq!(stored.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(
        store.claim_analysis(60_000).await.unwrap(),
        None,
        "done is not queued"
    );
    assert_eq!(store.call_analysis(&other, &call.id).await.unwrap(), None);
    assert!(
        store
            .delete_analysis_settings(&tenant, &agent)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_analysis_settings(&tenant, &agent)
            .await
            .unwrap()
    );
}

// ---- quick start (issue 12, item 6) -----------------------------------------------------------

#[tokio::test]
async fn quick_start_calls_are_recorded_and_auto_keeps_answering_until_a_real_tenant_exists() {
    use callbridge::store::TenantId;
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: 200,
            byte: 0x11,
            text: "Hi.".into(),
        }],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let quickstart = TenantId::parse("quickstart").unwrap();
    for sid in [
        "CA00000000000000000000000000000b01",
        "CA00000000000000000000000000000b02",
    ] {
        bridge
            .twilio()
            .call(
                sid,
                CallScript {
                    hang_up_after_ms: Some(600),
                    max_ms: 4_000,
                    ..CallScript::default()
                },
            )
            .await
            .unwrap();
    }
    let mut ended = Vec::new();
    for _ in 0..250 {
        ended = bridge
            .store
            .list_calls(&quickstart, 10)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.ended_at.is_some())
            .collect();
        if ended.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ended.len(),
        2,
        "both quick-start calls recorded (auto kept answering); tenants {:?}, calls {:?}",
        bridge.store.list_tenants().await,
        bridge.store.list_calls(&quickstart, 10).await
    );
    let agent = &bridge.store.list_agents(&quickstart).await.unwrap()[0];
    assert_eq!(agent.spec.name, "default");
    assert!(
        ended
            .iter()
            .all(|c| c.agent_id == agent.id && c.end_reason.as_deref() == Some("caller_hung_up"))
    );
    let events = bridge
        .store
        .call_events(&quickstart, &ended[0].id)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == CallEventKind::Transcript));
    // A real tenant: unrouted numbers are no longer answered.
    provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let twilio = bridge.twilio();
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", "CA00000000000000000000000000000b03"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+14155551234"),
        ("To", "+15005550999"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = twilio.voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        !body.contains("<Stream") && body.contains("<Say>"),
        "{body}"
    );
}

// ---- retention (issue 12, item 7) -------------------------------------------------------------

#[tokio::test]
async fn retention_purges_old_transcripts_and_recordings_sqlite() {
    let db = store_harness::sqlite().await;
    retention_round_trip(&db.store).await;
}

#[tokio::test]
async fn retention_purges_old_transcripts_and_recordings_postgres() {
    if let Some(db) = store_harness::postgres().await {
        retention_round_trip(&db.store).await;
    }
}

async fn retention_round_trip(store: &callbridge::store::SqlStore) {
    use callbridge::store::{CallDirection, CallEnd, CallStatus, NewCall};
    let dir = tempfile::tempdir().unwrap();
    let tenant =
        provision_agent(store, "acme", agent_spec("openai", "gpt-realtime", "alloy")).await;
    let other = provision_other_tenant(store).await;
    let mut ended = Vec::new();
    for (n, owner) in [(1, &tenant), (2, &other)] {
        let agent = match store.list_agents(owner).await.unwrap().first() {
            Some(a) => a.id.clone(),
            None => {
                store
                    .create_agent(owner, &agent_spec("openai", "gpt-realtime", "alloy"), &[])
                    .await
                    .unwrap()
                    .id
            }
        };
        let call = store
            .create_call(&NewCall {
                tenant_id: owner.clone(),
                agent_id: agent,
                direction: CallDirection::Inbound,
                from: "+14155551234".into(),
                to: "+15005550006".into(),
                twilio_call_sid: Some(format!("CA0000000000000000000000000000r{n:03}")),
                status: CallStatus::InProgress,
            })
            .await
            .unwrap();
        store
            .append_call_event(
                owner,
                &call.id,
                CallEventKind::Transcript,
                &json!({"speaker": "caller", "text": "my card is 4111"}),
            )
            .await
            .unwrap();
        let path = dir.path().join(format!("{}.wav", call.id));
        std::fs::write(&path, b"RIFF").unwrap();
        store
            .finish_call(
                owner,
                &call.id,
                &CallEnd {
                    status: CallStatus::Completed,
                    end_reason: "caller_hung_up".into(),
                    recording_path: Some(path.to_string_lossy().into_owned()),
                },
            )
            .await
            .unwrap();
        ended.push((owner.clone(), call.id, path));
    }
    store.set_retention_days(&tenant, Some(30)).await.unwrap();
    assert_eq!(store.retention_days(&tenant).await.unwrap(), Some(30));
    assert!(store.set_retention_days(&tenant, Some(0)).await.is_err());
    let now = jiff::Timestamp::now().as_millisecond();
    // 29 days later: nothing is old enough.
    let report = callbridge::admin::retention::sweep(store, now + 29 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(report.calls, 0);
    // 31 days later: acme's call loses its transcript and recording; globex (no retention) keeps all.
    let report = callbridge::admin::retention::sweep(store, now + 31 * 86_400_000)
        .await
        .unwrap();
    assert_eq!((report.calls, report.recordings), (1, 1));
    let (acme, acme_call, acme_file) = &ended[0];
    assert!(store.call_events(acme, acme_call).await.unwrap().is_empty());
    assert_eq!(
        store.call(acme, acme_call).await.unwrap().recording_path,
        None
    );
    assert!(!acme_file.exists());
    let (globex, globex_call, globex_file) = &ended[1];
    assert_eq!(
        store.call_events(globex, globex_call).await.unwrap().len(),
        1
    );
    assert!(globex_file.exists());
    // A second sweep finds nothing more; removing the setting keeps everything from then on.
    let report = callbridge::admin::retention::sweep(store, now + 40 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(report.calls, 0);
    store.set_retention_days(&tenant, None).await.unwrap();
    assert_eq!(store.retention_days(&tenant).await.unwrap(), None);
}

#[tokio::test]
async fn retention_is_set_through_the_api() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |args| {
        args.admin_key = Some(LIVE_ADMIN_KEY.into());
    })
    .await;
    provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "alloy"),
    )
    .await;
    let (status, body) = api(
        &bridge,
        reqwest::Method::GET,
        "/tenants/acme/retention",
        None,
    )
    .await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"days": null})),
        "{body}"
    );
    let (status, body) = api(
        &bridge,
        reqwest::Method::PUT,
        "/tenants/acme/retention",
        Some(json!({"days": 0})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &bridge,
        reqwest::Method::PUT,
        "/tenants/acme/retention",
        Some(json!({"days": 90})),
    )
    .await;
    assert_eq!((status, body.clone()), (200, json!({"days": 90})), "{body}");
    let (status, _) = api(
        &bridge,
        reqwest::Method::PUT,
        "/tenants/nobody/retention",
        Some(json!({"days": 90})),
    )
    .await;
    assert_eq!(status, 404);
}

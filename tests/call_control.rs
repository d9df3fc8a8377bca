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

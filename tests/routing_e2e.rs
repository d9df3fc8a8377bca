//! Multi-tenant routing end to end: the called number picks the tenant's agent, whose whole
//! configuration (model, voice, prompt, tools, limits) drives the call, and the call is recorded
//! with its events. Unknown numbers hear a polite message; broken agents a technical-difficulties one.

use std::time::Duration;

use serde_json::{Value, json};

use callbridge::store::{
    AgentSpec, CallEventKind, CallStatus, E164, NewTenant, SqlStore, Store, TenantId,
    WebhookSettingsSpec,
};
use callbridge::tenant::vault::{Keyring, MasterKey, Vault};
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use callbridge_testkit::{ACCOUNT_SID, TestBridge};
use secrecy::SecretString;

const ACME_NUMBER: &str = "+15005550006";

fn spec(provider: &str, prompt: &str) -> AgentSpec {
    AgentSpec {
        name: "front-desk".into(),
        provider: provider.into(),
        model: "gpt-realtime-mini".into(),
        voice: "cedar".into(),
        prompt_template: prompt.into(),
        enabled_tools: vec!["get_current_time".into()],
        max_duration_s: 600,
        silence_timeout_s: 45,
        recording: false,
        voicemail: None,
    }
}

async fn provision(store: &SqlStore, tenant: &str, number: &str, agent: AgentSpec) -> TenantId {
    let id = TenantId::parse(tenant).unwrap();
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: format!("{tenant} Inc."),
            time_zone: "America/New_York".into(),
        })
        .await
        .unwrap();
    store
        .create_agent(&id, &agent, &[E164::parse(number).unwrap()])
        .await
        .unwrap();
    id
}

const DENTAL_PROMPT: &str = "You answer for Acme Dental. The caller is {{caller}}.";

#[tokio::test]
async fn the_called_number_selects_the_tenants_agent_and_the_call_is_recorded() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![("get_current_time".into(), json!({}))]),
            Turn::Say {
                ms: 300,
                byte: 0x21,
                text: "Welcome to Acme Dental.".into(),
            },
        ],
        caller_transcript: "I need a cleaning".into(),
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let tenant = provision(&bridge.store, "acme", ACME_NUMBER, spec("openai", "dental")).await;
    bridge
        .store
        .put_prompt(&tenant, "dental", DENTAL_PROMPT)
        .await
        .unwrap();
    // The tenant wants a post-call webhook (signing secret sealed in the vault).
    let vault = Vault::new(bridge.store.clone(), Keyring::new(MasterKey::generate()));
    vault
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

    let report = bridge
        .twilio()
        .call(
            "CA10000000000000000000000000000001",
            CallScript {
                hang_up_after_ms: Some(2_200),
                max_ms: 6_000,
                speech: vec![(900, 400)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(report.played.iter().any(|(_, b)| *b == 0x21));

    let log = &realtime.recorder.sessions()[0];
    let update = log
        .received
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap();
    assert_eq!(update["session"]["model"], "gpt-realtime-mini");
    assert_eq!(update["session"]["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        update["session"]["instructions"],
        "You answer for Acme Dental. The caller is +14155551234."
    );

    // The call and its events are in the tenant's records.
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = bridge.store.list_calls(&tenant, 10).await.unwrap();
        if calls.first().is_some_and(|c| c.ended_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("caller_hung_up"));
    assert_eq!(
        call.twilio_call_sid.as_deref(),
        Some("CA10000000000000000000000000000001")
    );
    let events = bridge.store.call_events(&tenant, &call.id).await.unwrap();
    let of = |kind: CallEventKind| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| &e.payload)
            .collect()
    };
    let tool_calls = of(CallEventKind::ToolCall);
    assert_eq!(tool_calls.len(), 1);
    assert_eq!(tool_calls[0]["tool"], "get_current_time");
    let results = of(CallEventKind::ToolResult);
    assert_eq!(results[0]["outcome"], "ok");
    let transcripts = of(CallEventKind::Transcript);
    assert!(
        transcripts
            .iter()
            .any(|t| t["speaker"] == "caller" && t["text"] == "I need a cleaning"),
        "{transcripts:?}"
    );
    assert!(
        transcripts
            .iter()
            .any(|t| t["speaker"] == "agent" && t["text"] == "Welcome to Acme Dental.")
    );

    // …and the call.ended webhook is waiting in the durable outbox.
    // (queued right after the call row is finished, by the same writer task: wait for it)
    let mut outbox = Vec::new();
    for _ in 0..100 {
        outbox = bridge.store.list_outbox(&tenant, 10).await.unwrap();
        if !outbox.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].event_type, "call.ended");
    let payload: Value = serde_json::from_str(&outbox[0].payload).unwrap();
    assert!(outbox[0].payload.contains("I need a cleaning"), "{payload}");
    assert!(outbox[0].payload.contains(&call.id));

    // The documented `call.ended` example (docs/api.md) has the real payload's fields, at every
    // level, and its end reason is one the bridge really writes.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let start = docs
        .find("```json\n{\"type\": \"call.ended\"")
        .expect("the example")
        + 8;
    let end = start + docs[start..].find("```").unwrap();
    let example: Value = serde_json::from_str(&docs[start..end]).expect("the example is JSON");
    let mut problems = Vec::new();
    same_shape(&example, &payload, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "docs/api.md call.ended example: {problems:#?}"
    );
    assert_eq!(example["data"]["end_reason"], payload["data"]["end_reason"]);
}

/// Whether `doc` has exactly the object keys of `real`, recursively; array entries are compared
/// with the real entry of the same `kind` (or the first one).
fn same_shape(doc: &Value, real: &Value, path: &str, problems: &mut Vec<String>) {
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            let mut dk: Vec<&String> = d.keys().collect();
            let mut rk: Vec<&String> = r.keys().collect();
            dk.sort();
            rk.sort();
            if dk != rk {
                problems.push(format!("{path}: documented {dk:?}, real {rk:?}"));
            }
            for (k, v) in d {
                if let Some(rv) = r.get(k) {
                    same_shape(v, rv, &format!("{path}.{k}"), problems);
                }
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            for (i, entry) in d.iter().enumerate() {
                let real_entry = r
                    .iter()
                    .find(|e| e.get("kind").is_some() && e.get("kind") == entry.get("kind"))
                    .or_else(|| r.first());
                match real_entry {
                    Some(re) => same_shape(entry, re, &format!("{path}[{i}]"), problems),
                    None => problems.push(format!("{path}: the real array is empty")),
                }
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn numbers_no_tenant_owns_hear_not_in_service_once_tenants_exist() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    provision(
        &bridge.store,
        "acme",
        ACME_NUMBER,
        spec("openai", "default"),
    )
    .await;
    let twilio = bridge.twilio();
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", "CA10000000000000000000000000000002"),
        ("From", "+14155551234"),
        ("To", "+15005559999"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = twilio.voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("<Say>Sorry, the number you have called is not in service."),
        "{body}"
    );
    assert!(body.contains("<Hangup/>"));
    assert!(!body.contains("<Stream"));
    assert_eq!(bridge.metrics.errors_of("call_to_unknown_number"), 1);
}

#[tokio::test]
async fn an_agent_that_cannot_run_gets_a_polite_message_not_silence() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    provision(
        &bridge.store,
        "acme",
        ACME_NUMBER,
        spec("openai", "missing-template"),
    )
    .await;
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", "CA10000000000000000000000000000003"),
        ("From", "+14155551234"),
        ("To", ACME_NUMBER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = bridge.twilio().voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("technical difficulties"), "{body}");
    assert_eq!(bridge.metrics.errors_of("call_setup_failed"), 1);
    // The tenant's history has the call, failed, with the reason.
    let tenant = TenantId::parse("acme").unwrap();
    let calls = bridge.store.list_calls(&tenant, 10).await.unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].status, CallStatus::Failed);
    assert_eq!(
        calls[0].twilio_call_sid.as_deref(),
        Some("CA10000000000000000000000000000003")
    );
    assert_eq!(calls[0].end_reason.as_deref(), Some("setup_failed_prompt"));
    let events = bridge
        .store
        .call_events(&tenant, &calls[0].id)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, CallEventKind::Error);
    let reason = events[0].payload["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("missing-template"), "{reason}");
}

#[tokio::test]
async fn the_stream_token_binds_the_tenant_so_a_route_cannot_be_swapped() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    provision(
        &bridge.store,
        "acme",
        ACME_NUMBER,
        spec("openai", "default"),
    )
    .await;
    provision(
        &bridge.store,
        "globex",
        "+15005550007",
        spec("openai", "default"),
    )
    .await;
    let twilio = bridge.twilio();
    let sid = "CA10000000000000000000000000000004";
    let mut twiml = twilio.ring(sid, "+14155551234", ACME_NUMBER).await.unwrap();
    // Tamper: claim the call belongs to globex.
    for (name, value) in &mut twiml.parameters {
        if name == "tenant" {
            *value = "globex".into();
        }
    }
    let socket = twilio.connect_media(&twiml.url, None).await.unwrap();
    let report = callbridge_testkit::fake_twilio::run_stream(
        socket,
        sid,
        ACCOUNT_SID,
        &twiml,
        CallScript {
            max_ms: 3_000,
            ..CallScript::default()
        },
    )
    .await
    .unwrap();
    assert!(report.closed_by_bridge);
    assert!(realtime.recorder.sessions().is_empty());
    assert_eq!(bridge.metrics.errors_of("twilio_stream_token_rejected"), 1);
}

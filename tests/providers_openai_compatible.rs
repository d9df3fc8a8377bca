//! xAI Grok and Azure OpenAI end to end over real sockets on 127.0.0.1: fake Twilio ⇄ the real
//! bridge ⇄ the fake realtime server in the provider's flavor. μ-law passes straight through both;
//! what differs is connection, session shape and barge-in (xAI: the bridge cancels, no truncate).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use callbridge::store::CallStatus;
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Flavor, SessionLog, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use callbridge_testkit::{TestBridge, agent_spec, ended_call, provision_agent};

fn say(ms: u64, byte: u8, text: &str) -> Turn {
    Turn::Say {
        ms,
        byte,
        text: text.into(),
    }
}

fn received_of<'a>(log: &'a SessionLog, kind: &str) -> Vec<&'a Value> {
    log.received.iter().filter(|e| e["type"] == kind).collect()
}

/// The bridge with the default agent on an untouched OpenAI fake and a tenant agent on `provider`.
async fn bridge_with(
    provider: &str,
    fake: &FakeRealtime,
) -> (TestBridge, FakeRealtime, callbridge::store::TenantId) {
    let openai = FakeRealtime::start(Behaviour::default()).await;
    let (url, endpoint) = (fake.url(), fake.azure_endpoint());
    let bridge = TestBridge::start(&openai.url(), |a| {
        a.xai_api_key = Some("xai-test-key".into());
        a.xai_realtime_url = Some(url);
        a.azure_openai_api_key = Some("azure-test-key".into());
        a.azure_openai_endpoint = Some(endpoint);
    })
    .await;
    let (model, voice) = match provider {
        "xai" => ("grok-voice-think-fast-1.0", "eve"),
        _ => ("rt-deployment", "alloy"),
    };
    let tenant = provision_agent(&bridge.store, "acme", agent_spec(provider, model, voice)).await;
    (bridge, openai, tenant)
}

fn conversation() -> Behaviour {
    Behaviour {
        script: vec![say(600, 0x11, "Hello."), say(400, 0x22, "Sure.")],
        ..Behaviour::default()
    }
}

fn conversation_script() -> CallScript {
    CallScript {
        hang_up_after_ms: Some(3_200),
        max_ms: 8_000,
        speech: vec![(1_200, 600)],
        ..CallScript::default()
    }
}

fn barge_in_script() -> CallScript {
    CallScript {
        hang_up_after_ms: Some(3_600),
        max_ms: 8_000,
        speech: vec![(1_000, 500)],
        ..CallScript::default()
    }
}

/// The long answer is still being generated when the caller barges in (at 1 s), by seconds rather
/// than milliseconds: 12 s of audio at the fake's 4× speed takes 3 s to generate. (With 4 s of audio
/// the fake finished generating about 50 ms after the caller started speaking, so under load the
/// bridge's `response.cancel` could arrive after `response.done` and be refused.)
fn long_answer_then_short() -> Vec<Turn> {
    vec![
        say(12_000, 0x33, "A long explanation"),
        say(300, 0x44, "Go ahead."),
    ]
}

#[tokio::test]
async fn xai_conversation_uses_the_hybrid_session_and_passes_mulaw_through() {
    let xai = FakeRealtime::start(Behaviour {
        flavor: Flavor::Xai,
        ..conversation()
    })
    .await;
    let (bridge, openai, tenant) = bridge_with("xai", &xai).await;
    let report = bridge
        .twilio()
        .call("CA30000000000000000000000000000001", conversation_script())
        .await
        .unwrap();
    assert!(openai.recorder.sessions().is_empty());
    let log = &xai.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake xAI refused: {:?}",
        log.errors_sent
    );
    assert_eq!(log.authorization.as_deref(), Some("Bearer xai-test-key"));
    assert_eq!(
        log.request_uri,
        "/v1/realtime?model=grok-voice-think-fast-1.0"
    );
    let update = received_of(log, "session.update")[0];
    assert_eq!(update["session"]["voice"], "eve");
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert!(update["session"].get("model").is_none());
    assert!(log.pings_sent > 0, "pings were sent (and ignored)");
    // Caller audio untouched: the first append is the μ-law silence Twilio sent.
    assert_eq!(STANDARD.decode(&log.appended[0]).unwrap(), vec![0xFF; 160]);
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x11).count(), 30);
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x22).count(), 20);
    assert!(report.clears_at_ms.is_empty());
    let call = ended_call(&bridge.store, &tenant).await;
    assert_eq!(call.status, CallStatus::Completed);
}

#[tokio::test]
async fn xai_barge_in_cancels_from_the_bridge_and_does_not_truncate() {
    let xai = FakeRealtime::start(Behaviour {
        flavor: Flavor::Xai,
        script: long_answer_then_short(),
        late_deltas: 3,
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, _tenant) = bridge_with("xai", &xai).await;
    let report = bridge
        .twilio()
        .call("CA30000000000000000000000000000002", barge_in_script())
        .await
        .unwrap();
    let log = &xai.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake xAI refused: {:?}",
        log.errors_sent
    );
    assert_eq!(received_of(log, "response.cancel").len(), 1);
    assert!(received_of(log, "conversation.item.truncate").is_empty());
    assert_eq!(report.clears_at_ms.len(), 1);
    let clear_at = report.clears_at_ms[0];
    let late = report
        .media()
        .filter(|(at, bytes)| *at > clear_at && bytes[0] == 0x33)
        .count();
    assert_eq!(late, 0, "late deltas of the cancelled answer were played");
    assert!(report.played.iter().any(|(_, b)| *b == 0x44));
}

/// A call whose provider (`flavor`, agent `provider`) asks for `get_current_time`, then speaks
/// 300 ms; returns what the fake provider received and what the caller heard.
async fn tool_call_round_trip(
    flavor: Flavor,
    provider: &str,
    call_sid: &str,
) -> (SessionLog, callbridge_testkit::fake_twilio::CallReport) {
    let fake = FakeRealtime::start(Behaviour {
        flavor,
        script: vec![
            Turn::CallTools(vec![("get_current_time".into(), json!({}))]),
            say(300, 0x55, "It is noon."),
        ],
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, _tenant) = bridge_with(provider, &fake).await;
    let report = bridge
        .twilio()
        .call(
            call_sid,
            CallScript {
                hang_up_after_ms: Some(1_800),
                max_ms: 6_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let log = fake.recorder.sessions().remove(0);
    assert!(
        log.errors_sent.is_empty(),
        "fake {provider} refused: {:?}",
        log.errors_sent
    );
    (log, report)
}

#[tokio::test]
async fn xai_tool_call_result_goes_back_as_a_function_call_output() {
    let (log, report) =
        tool_call_round_trip(Flavor::Xai, "xai", "CA30000000000000000000000000000003").await;
    let items = received_of(&log, "conversation.item.create");
    assert_eq!(items[0]["item"]["type"], "function_call_output");
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x55).count(), 15);
}

#[tokio::test]
async fn xai_ignoring_the_requested_codec_ends_the_call() {
    let xai = FakeRealtime::start(Behaviour {
        flavor: Flavor::Xai,
        echo_output_format: Some("audio/pcm".into()),
        ..conversation()
    })
    .await;
    let (bridge, _openai, tenant) = bridge_with("xai", &xai).await;
    let report = bridge
        .twilio()
        .call(
            "CA30000000000000000000000000000004",
            CallScript {
                max_ms: 4_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(report.closed_by_bridge);
    assert!(
        report.played.is_empty(),
        "nothing played in the wrong format"
    );
    let call = ended_call(&bridge.store, &tenant).await;
    assert_eq!(call.end_reason.as_deref(), Some("format_rejected"));
}

#[tokio::test]
async fn azure_conversation_uses_the_ga_path_api_key_and_deployment() {
    let azure = FakeRealtime::start(Behaviour {
        flavor: Flavor::Azure,
        ..conversation()
    })
    .await;
    let (bridge, openai, _tenant) = bridge_with("azure", &azure).await;
    let report = bridge
        .twilio()
        .call("CA30000000000000000000000000000005", conversation_script())
        .await
        .unwrap();
    assert!(openai.recorder.sessions().is_empty());
    let log = &azure.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake Azure refused: {:?}",
        log.errors_sent
    );
    assert_eq!(log.api_key.as_deref(), Some("azure-test-key"));
    assert!(log.authorization.is_none());
    assert_eq!(log.request_uri, "/openai/v1/realtime?model=rt-deployment");
    let update = received_of(log, "session.update")[0];
    assert_eq!(update["session"]["type"], "realtime");
    assert_eq!(update["session"]["model"], "rt-deployment");
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x11).count(), 30);
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x22).count(), 20);
}

#[tokio::test]
async fn azure_barge_in_truncates_at_what_was_heard() {
    let azure = FakeRealtime::start(Behaviour {
        flavor: Flavor::Azure,
        script: long_answer_then_short(),
        late_deltas: 3,
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, _tenant) = bridge_with("azure", &azure).await;
    let report = bridge
        .twilio()
        .call("CA30000000000000000000000000000006", barge_in_script())
        .await
        .unwrap();
    let log = &azure.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake Azure refused: {:?}",
        log.errors_sent
    );
    assert_eq!(report.clears_at_ms.len(), 1);
    let truncates = received_of(log, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1);
    let audio_end_ms = truncates[0]["audio_end_ms"].as_u64().unwrap();
    let played_ms = 20 * report.played.iter().filter(|(_, b)| *b == 0x33).count() as u64;
    assert!(
        audio_end_ms + 120 >= played_ms && audio_end_ms <= played_ms + 120,
        "truncated at {audio_end_ms} ms, caller heard {played_ms} ms"
    );
    assert!(
        received_of(log, "response.cancel").is_empty(),
        "Azure cancels on VAD itself"
    );
}

#[tokio::test]
async fn azure_tool_call_round_trips() {
    let (log, report) =
        tool_call_round_trip(Flavor::Azure, "azure", "CA30000000000000000000000000000007").await;
    let items = received_of(&log, "conversation.item.create");
    assert_eq!(items[0]["item"]["type"], "function_call_output");
    assert_eq!(
        received_of(&log, "response.create").len(),
        2,
        "greeting, then after the tool"
    );
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x55).count(), 15);
}

#[tokio::test]
async fn agents_of_unconfigured_providers_are_refused_at_call_setup() {
    let openai = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&openai.url(), |_| {}).await;
    provision_agent(
        &bridge.store,
        "acme",
        agent_spec("xai", "grok-voice-think-fast-1.0", "eve"),
    )
    .await;
    let params: Vec<(String, String)> = [
        ("AccountSid", callbridge_testkit::ACCOUNT_SID),
        ("CallSid", "CA30000000000000000000000000000008"),
        ("From", "+14155551234"),
        ("To", callbridge_testkit::CALLED_NUMBER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = bridge.twilio().voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("technical difficulties"), "{body}");
    assert_eq!(bridge.metrics.errors_of("call_setup_failed"), 1);
}

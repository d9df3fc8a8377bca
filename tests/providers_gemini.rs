//! Gemini Live end to end over real sockets on 127.0.0.1: fake Twilio ⇄ the real bridge (transcoding
//! μ-law 8 kHz ⇄ PCM16 16/24 kHz) ⇄ fake Gemini Live. Conversation, barge-in by
//! `serverContent.interrupted`, a tool call answered by `toolResponse`, and a `goAway` after which
//! the call goes on, unnoticed by the caller, on a resumed session.

use std::time::Duration;

use serde_json::{Value, json};

use callbridge::store::CallStatus;
use callbridge_testkit::fake_gemini::{Behaviour, ConnectionLog, FakeGemini, Turn};
use callbridge_testkit::fake_realtime::{Behaviour as OpenAiBehaviour, FakeRealtime};
use callbridge_testkit::fake_twilio::{CallReport, CallScript};
use callbridge_testkit::{TestBridge, agent_spec, ended_call, provision_agent, ulaw};

const GREETING_LEVEL: i16 = 6_000;
const ANSWER_LEVEL: i16 = 14_000;

fn say(ms: u64, level: i16, text: &str) -> Turn {
    Turn::Say {
        ms,
        level,
        text: text.into(),
    }
}

/// A bridge whose tenant agent speaks through the fake Gemini (the OpenAI fake only satisfies the
/// required default-agent configuration and must see no traffic).
async fn bridge_for(
    gemini: &FakeGemini,
) -> (TestBridge, FakeRealtime, callbridge::store::TenantId) {
    let openai = FakeRealtime::start(OpenAiBehaviour::default()).await;
    let url = gemini.url();
    let bridge = TestBridge::start(&openai.url(), |a| {
        a.gemini_api_key = Some("gm-test-key".into());
        a.gemini_live_url = Some(url);
    })
    .await;
    let tenant = provision_agent(
        &bridge.store,
        "acme",
        agent_spec("gemini", "gemini-live-test", "Puck"),
    )
    .await;
    (bridge, openai, tenant)
}

/// Frames the caller heard at about `level` (the first sample decoded, within 15 %).
fn heard_at_level(report: &CallReport, level: i16) -> Vec<u64> {
    let tolerance = i32::from(level) * 15 / 100;
    report
        .played
        .iter()
        .filter(|(_, code)| (i32::from(ulaw::decode(*code)) - i32::from(level)).abs() <= tolerance)
        .map(|(at, _)| *at)
        .collect()
}

fn assert_clean(connection: &ConnectionLog) {
    assert!(
        connection.errors.is_empty(),
        "fake Gemini saw errors: {:?}",
        connection.errors
    );
}

#[tokio::test]
async fn a_conversation_is_transcoded_both_ways() {
    let gemini = FakeGemini::start(Behaviour {
        script: vec![
            say(600, GREETING_LEVEL, "Hello, how can I help?"),
            say(400, ANSWER_LEVEL, "Sure."),
        ],
        ..Behaviour::default()
    })
    .await;
    let (bridge, openai, tenant) = bridge_for(&gemini).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000001",
            CallScript {
                hang_up_after_ms: Some(3_200),
                max_ms: 8_000,
                speech: vec![(1_200, 600)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();

    assert!(openai.recorder.sessions().is_empty());
    let connections = gemini.connections();
    assert_eq!(connections.len(), 1);
    let connection = &connections[0];
    assert_clean(connection);
    assert_eq!(connection.api_key.as_deref(), Some("gm-test-key"));
    assert!(
        !connection.request_uri.contains("key="),
        "key kept out of the URL"
    );
    // setup came first, in Gemini's shape, with the agent's model and voice.
    let setup = connection.setup.as_ref().unwrap();
    assert!(connection.received[0].get("setup").is_some());
    assert_eq!(setup["model"], "models/gemini-live-test");
    assert_eq!(
        setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
        "Puck"
    );
    let declared: Vec<&str> = setup["tools"][0]["functionDeclarations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(declared, vec!["get_current_time", "end_call"]);

    // Caller → provider: every frame as 20 ms of 16 kHz PCM16; the 600 ms of speech arrived loud.
    assert!(
        connection.audio_chunks >= 140,
        "{} chunks",
        connection.audio_chunks
    );
    assert_eq!(connection.audio_bytes, 640 * connection.audio_chunks);
    assert!(
        (28..=31).contains(&connection.loud_chunks),
        "{} loud chunks for 600 ms of speech",
        connection.loud_chunks
    );

    // Provider → caller: both answers heard in full at their level, the answer after the caller.
    let greeting = heard_at_level(&report, GREETING_LEVEL);
    let answer = heard_at_level(&report, ANSWER_LEVEL);
    assert!(
        (29..=31).contains(&greeting.len()),
        "greeting: {} frames",
        greeting.len()
    );
    assert!(
        (19..=21).contains(&answer.len()),
        "answer: {} frames",
        answer.len()
    );
    assert!(answer[0] > 1_800, "answer played at {} ms", answer[0]);
    assert!(report.clears_at_ms.is_empty());

    let call = ended_call(&bridge.store, &tenant).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason.as_deref(), Some("caller_hung_up"));
}

#[tokio::test]
async fn an_interruption_clears_twilio_and_the_rest_is_never_heard() {
    let gemini = FakeGemini::start(Behaviour {
        script: vec![
            say(4_000, GREETING_LEVEL, "A very long explanation"),
            say(300, ANSWER_LEVEL, "Go ahead."),
        ],
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, _tenant) = bridge_for(&gemini).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000002",
            CallScript {
                hang_up_after_ms: Some(3_600),
                max_ms: 8_000,
                speech: vec![(1_000, 500)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let connection = &gemini.connections()[0];
    assert_clean(connection);
    assert_eq!(connection.interruptions, 1);

    assert_eq!(report.clears_at_ms.len(), 1, "one clear");
    let clear_at = report.clears_at_ms[0];
    assert!(report.flushed_frames > 0, "clear flushed queued audio");
    let after_clear = heard_at_level(&report, GREETING_LEVEL)
        .into_iter()
        .filter(|at| *at > clear_at)
        .count();
    assert_eq!(after_clear, 0, "the interrupted answer went on after clear");
    assert!(
        !heard_at_level(&report, ANSWER_LEVEL).is_empty(),
        "the next answer played"
    );
    // Gemini has no truncate and no cancel: only the greeting request went out as content.
    let contents = connection
        .received
        .iter()
        .filter(|m| m.get("clientContent").is_some())
        .count();
    assert_eq!(contents, 1);
}

#[tokio::test]
async fn a_tool_call_is_answered_with_a_tool_response_and_no_extra_trigger() {
    let gemini = FakeGemini::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![("get_current_time".into(), json!({}))]),
            say(300, ANSWER_LEVEL, "It is noon."),
        ],
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, _tenant) = bridge_for(&gemini).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000003",
            CallScript {
                hang_up_after_ms: Some(1_800),
                max_ms: 6_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let connection = &gemini.connections()[0];
    assert_clean(connection);
    assert_eq!(connection.tool_responses.len(), 1);
    let response: &Value = &connection.tool_responses[0];
    assert_eq!(response["id"], "fc_1");
    assert_eq!(response["name"], "get_current_time");
    assert!(response["response"].is_object());
    assert!(
        (14..=16).contains(&heard_at_level(&report, ANSWER_LEVEL).len()),
        "the answer after the tool played"
    );
}

#[tokio::test]
async fn after_go_away_the_call_continues_on_a_resumed_session() {
    let gemini = FakeGemini::start(Behaviour {
        script: vec![
            say(400, GREETING_LEVEL, "Hello."),
            say(400, ANSWER_LEVEL, "Still here."),
        ],
        go_away_after_ms: Some(900),
        ..Behaviour::default()
    })
    .await;
    let (bridge, _openai, tenant) = bridge_for(&gemini).await;
    let report = bridge
        .twilio()
        .call(
            "CA20000000000000000000000000000004",
            CallScript {
                hang_up_after_ms: Some(4_000),
                max_ms: 8_000,
                speech: vec![(2_000, 500)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();

    let connections = gemini.connections();
    assert_eq!(connections.len(), 2, "one resumed connection");
    assert!(connections[0].went_away);
    for connection in &connections {
        assert_clean(connection);
    }
    // The resumed setup carries the latest handle the first connection handed out.
    let handles = gemini.handles();
    let resumed_with = connections[1].setup.as_ref().unwrap()["sessionResumption"]["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(resumed_with, "handle-2", "handles issued: {handles:?}");
    // The caller noticed nothing: no clear, no hang-up, and no second greeting request.
    assert!(report.clears_at_ms.is_empty());
    assert!(!report.closed_by_bridge);
    let greeting_requests = connections[1]
        .received
        .iter()
        .filter(|m| m.get("clientContent").is_some())
        .count();
    assert_eq!(greeting_requests, 0);
    // The caller's speech reached the resumed session, which answered.
    assert!(connections[1].loud_chunks >= 20);
    let answer = heard_at_level(&report, ANSWER_LEVEL);
    assert!(
        (19..=21).contains(&answer.len()),
        "answer: {} frames",
        answer.len()
    );
    assert!(answer[0] > 2_000);

    let call = ended_call(&bridge.store, &tenant).await;
    assert_eq!(call.end_reason.as_deref(), Some("caller_hung_up"));
    // Both provider connections are gone with the call.
    for _ in 0..100 {
        if gemini.connections().iter().all(|c| c.closed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a provider connection outlived the call");
}

#[tokio::test]
async fn a_gemini_agent_without_a_key_gets_the_technical_difficulties_message() {
    let openai = FakeRealtime::start(OpenAiBehaviour::default()).await;
    let bridge = TestBridge::start(&openai.url(), |_| {}).await;
    provision_agent(
        &bridge.store,
        "acme",
        agent_spec("gemini", "gemini-live-test", "Puck"),
    )
    .await;
    let params: Vec<(String, String)> = [
        ("AccountSid", callbridge_testkit::ACCOUNT_SID),
        ("CallSid", "CA20000000000000000000000000000005"),
        ("From", "+14155551234"),
        ("To", callbridge_testkit::CALLED_NUMBER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = bridge.twilio().voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("technical difficulties"), "{body}");
    assert!(!body.contains("<Stream"));
}

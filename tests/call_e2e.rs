//! End-to-end calls over real sockets on 127.0.0.1: fake Twilio ⇄ the real bridge ⇄ fake realtime.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, SessionLog, Turn};
use callbridge_testkit::fake_twilio::{CallScript, http_get};
use callbridge_testkit::{ACCOUNT_SID, TestBridge};

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

/// Waits until the bridge reports no call and no call task alive (or fails after 5 s).
async fn assert_all_tasks_end(bridge: &TestBridge) {
    for _ in 0..250 {
        let text = bridge.metrics.render();
        if text.contains("callbridge_call_tasks 0\n")
            && text.contains("callbridge_active_calls 0\n")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "call tasks outlived their call:\n{}",
        bridge.metrics.render()
    );
}

#[tokio::test]
async fn a_plain_conversation_passes_audio_through_both_ways() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            say(600, 0x11, "Hello, how can I help?"),
            say(400, 0x22, "Sure."),
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000001",
            CallScript {
                hang_up_after_ms: Some(3_200),
                max_ms: 8_000,
                speech: vec![(1_200, 600)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();

    let sessions = realtime.recorder.sessions();
    assert_eq!(sessions.len(), 1);
    let log = &sessions[0];
    assert_eq!(log.authorization.as_deref(), Some("Bearer sk-test-key"));
    assert!(
        log.errors_sent.is_empty(),
        "fake realtime refused: {:?}",
        log.errors_sent
    );
    // GA session shape with μ-law both ways (the fake refuses unknown fields).
    let update = received_of(log, "session.update")[0];
    assert_eq!(
        update["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    let tools: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, vec!["get_current_time", "end_call"]);

    // Caller → provider: every frame the fake Twilio sent arrived, payload untouched, in order.
    let sent_frames = report.frames_sent as usize;
    assert!(sent_frames >= 150, "only {sent_frames} frames sent");
    assert!(
        log.appended.len() + 2 >= sent_frames,
        "{} of {} frames reached the provider",
        log.appended.len(),
        sent_frames
    );
    let first = STANDARD.decode(&log.appended[0]).unwrap();
    assert_eq!(first, vec![0xFF; 160]);
    let tone_frames = log
        .appended
        .iter()
        .filter(|p| STANDARD.decode(p).unwrap() != vec![0xFF; 160])
        .count();
    assert_eq!(tone_frames, 30, "600 ms of caller speech = 30 frames");

    // Provider → caller: both answers played in full, as whole 160-byte frames, greeting first.
    let played_11 = report.played.iter().filter(|(_, b)| *b == 0x11).count();
    let played_22 = report.played.iter().filter(|(_, b)| *b == 0x22).count();
    assert_eq!(played_11, 30, "600 ms greeting = 30 frames");
    assert_eq!(played_22, 20, "400 ms answer = 20 frames");
    assert!(report.clears_at_ms.is_empty());
    assert!(!report.marks_echoed.is_empty());
    // The second answer came after the caller spoke (VAD-created response).
    let first_22 = report.played.iter().find(|(_, b)| *b == 0x22).unwrap().0;
    assert!(first_22 > 1_800, "answer played at {first_22} ms");

    assert_all_tasks_end(&bridge).await;
    let metrics = bridge.metrics.render();
    assert!(
        metrics.contains("callbridge_frames_out_total 50\n"),
        "{metrics}"
    );
    assert!(metrics.contains("callbridge_calls_ended_total{reason=\"caller_hung_up\"} 1"));
    let mut closed = false;
    for _ in 0..100 {
        closed = realtime.recorder.sessions()[0].closed;
        if closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "provider socket closed with the call");
}

#[tokio::test]
async fn barge_in_clears_truncates_and_never_plays_the_rest() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            say(4_000, 0x33, "A very long explanation…"),
            say(300, 0x44, "Go ahead."),
        ],
        late_deltas: 3,
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000002",
            CallScript {
                hang_up_after_ms: Some(3_600),
                max_ms: 8_000,
                speech: vec![(1_000, 500)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let log = &realtime.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake realtime refused: {:?}",
        log.errors_sent
    );

    assert_eq!(report.clears_at_ms.len(), 1, "one clear");
    let clear_at = report.clears_at_ms[0];
    assert!(report.flushed_frames > 0, "clear flushed queued audio");
    // Nothing of the interrupted answer reaches Twilio after the clear (late deltas dropped).
    let late = report
        .media()
        .filter(|(at, bytes)| *at > clear_at && bytes[0] == 0x33)
        .count();
    assert_eq!(
        late, 0,
        "{late} frames of the interrupted answer after clear"
    );
    // The truncate matches what the playout model played, and never exceeds what was generated.
    let truncates = received_of(log, "conversation.item.truncate");
    assert_eq!(truncates.len(), 1);
    let audio_end_ms = truncates[0]["audio_end_ms"].as_u64().unwrap();
    let played_ms = 20 * report.played.iter().filter(|(_, b)| *b == 0x33).count() as u64;
    assert!(
        audio_end_ms + 120 >= played_ms && audio_end_ms <= played_ms + 120,
        "truncated at {audio_end_ms} ms, caller heard {played_ms} ms"
    );
    let item = truncates[0]["item_id"].as_str().unwrap();
    assert!(audio_end_ms <= log.item_audio_ms[item]);
    // After the caller's turn the next answer plays.
    assert!(report.played.iter().any(|(_, b)| *b == 0x44));
    assert_all_tasks_end(&bridge).await;
    let metrics = bridge.metrics.render();
    assert!(
        metrics.contains("callbridge_barge_ins_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callbridge_truncations_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_tool_call_is_answered_then_spoken_about() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            Turn::CallTools(vec![
                ("get_current_time".into(), json!({})),
                ("no_such_tool".into(), json!({})),
            ]),
            say(200, 0x55, "It is noon."),
        ],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000003",
            CallScript {
                hang_up_after_ms: Some(1_500),
                max_ms: 6_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let log = &realtime.recorder.sessions()[0];
    assert!(
        log.errors_sent.is_empty(),
        "fake realtime refused: {:?}",
        log.errors_sent
    );
    let outputs: Vec<Value> = received_of(log, "conversation.item.create")
        .iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| serde_json::from_str(e["item"]["output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(outputs.len(), 2, "both calls answered");
    assert_eq!(outputs[0]["ok"], true);
    assert!(outputs[0]["result"]["utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(outputs[1]["error"]["code"], "unknown_tool");
    // Exactly one response.create after the outputs (plus the greeting's).
    let kinds: Vec<&str> = log
        .received
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let last_output = kinds
        .iter()
        .rposition(|k| *k == "conversation.item.create")
        .unwrap();
    let creates_after = kinds[last_output..]
        .iter()
        .filter(|k| **k == "response.create")
        .count();
    assert_eq!(creates_after, 1, "{kinds:?}");
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x55).count(), 10);
    assert_all_tasks_end(&bridge).await;
    assert!(
        bridge
            .metrics
            .render()
            .contains("callbridge_tool_calls_total{outcome=\"ok\"} 1")
    );
}

#[tokio::test]
async fn end_call_hangs_up_after_the_goodbye_has_played() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::SayThenCall {
            ms: 800,
            byte: 0x66,
            text: "Goodbye!".into(),
            tool: "end_call".into(),
            arguments: json!({"reason": "done"}),
        }],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000004",
            CallScript {
                hang_up_after_ms: None,
                max_ms: 6_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(report.closed_by_bridge, "the bridge hung up");
    let played = report.played.iter().filter(|(_, b)| *b == 0x66).count();
    assert_eq!(played, 40, "the whole 800 ms goodbye played before hang-up");
    let last_played = report.played.last().unwrap().0;
    assert!(report.closed_at_ms.unwrap() >= last_played);
    assert_all_tasks_end(&bridge).await;
    assert!(
        bridge
            .metrics
            .render()
            .contains("callbridge_calls_ended_total{reason=\"agent_ended\"} 1")
    );
}

#[tokio::test]
async fn bad_signatures_are_refused_with_403() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let twilio = bridge.twilio();
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", "CA9"),
        ("From", "+14155551234"),
        ("To", "+15005550006"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, _) = twilio
        .voice_webhook(&params, Some(Some("bm90IGEgc2lnbmF0dXJl")))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = twilio.voice_webhook(&params, Some(None)).await.unwrap();
    assert_eq!(status, 403);
    // A correctly signed request from another account is refused too.
    let mut other = params.clone();
    other[0].1 = "AC99999999999999999999999999999999".into();
    assert_eq!(twilio.voice_webhook(&other, None).await.unwrap().0, 403);
    // And a good one is answered with TwiML that opens a bidirectional stream.
    let (status, body) = twilio.voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("<Connect><Stream url=\"ws://127.0.0.1:"),
        "{body}"
    );

    // The WebSocket upgrade: wrong or missing signature → 403, nothing started.
    let url = format!("ws://{}/twilio/media", bridge.addr);
    let err = twilio
        .connect_media(&url, Some(Some("bm9wZQ==")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let err = twilio.connect_media(&url, Some(None)).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // Signed over the https:// form instead of the wss:// one: refused (protocols.md §2.3).
    let https_sig = callbridge::twilio::signature::compute(
        callbridge_testkit::AUTH_TOKEN,
        &url.replace("ws://", "http://"),
        &[],
    );
    assert!(
        twilio
            .connect_media(&url, Some(Some(&https_sig)))
            .await
            .is_err()
    );
    assert!(
        realtime.recorder.sessions().is_empty(),
        "no provider session opened"
    );
    assert_eq!(bridge.metrics.errors_of("twilio_bad_signature"), 3);
    assert_eq!(bridge.metrics.errors_of("twilio_missing_signature"), 2);
}

#[tokio::test]
async fn a_replayed_upgrade_with_a_forged_token_is_refused() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let twilio = bridge.twilio();
    let twiml = twilio
        .ring(
            "CA00000000000000000000000000000005",
            "+14155551234",
            "+15005550006",
        )
        .await
        .unwrap();
    let socket = twilio.connect_media(&twiml.url, None).await.unwrap();
    let report = callbridge_testkit::fake_twilio::run_stream(
        socket,
        "CA00000000000000000000000000000005",
        ACCOUNT_SID,
        &twiml,
        CallScript {
            max_ms: 3_000,
            token_override: Some("forged".into()),
            ..CallScript::default()
        },
    )
    .await
    .unwrap();
    assert!(report.closed_by_bridge);
    assert!(realtime.recorder.sessions().is_empty());
    assert_eq!(bridge.metrics.errors_of("twilio_stream_token_rejected"), 1);
    assert_all_tasks_end(&bridge).await;
}

/// Stream tokens are single-use: a second socket with the same token while the call runs, the
/// same token after the call ended, and a replayed signed voice webhook are all refused.
#[tokio::test]
async fn a_stream_token_replayed_on_a_second_socket_or_after_the_call_is_refused() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![say(400, 0x31, "Hello!")],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let twilio = bridge.twilio();
    let sid = "CA00000000000000000000000000000031";
    let twiml = twilio
        .ring(sid, "+14155551234", "+15005550006")
        .await
        .unwrap();
    let first = twilio.connect_media(&twiml.url, None).await.unwrap();
    let live = tokio::spawn({
        let twiml = twiml.clone();
        async move {
            callbridge_testkit::fake_twilio::run_stream(
                first,
                sid,
                ACCOUNT_SID,
                &twiml,
                CallScript {
                    hang_up_after_ms: Some(1_500),
                    max_ms: 5_000,
                    ..CallScript::default()
                },
            )
            .await
        }
    });
    // Wait until the first socket owns the call (its provider session is open).
    for _ in 0..250 {
        if !realtime.recorder.sessions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(realtime.recorder.sessions().len(), 1);

    // Same token, second socket, while the call is live.
    let replay = |twilio: callbridge_testkit::fake_twilio::FakeTwilio,
                  twiml: callbridge_testkit::fake_twilio::StreamTwiml| async move {
        let socket = twilio.connect_media(&twiml.url, None).await.unwrap();
        callbridge_testkit::fake_twilio::run_stream(
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
        .unwrap()
    };
    let second = replay(bridge.twilio(), twiml.clone()).await;
    assert!(second.closed_by_bridge, "the second socket is closed");
    assert_eq!(bridge.metrics.errors_of("twilio_stream_replayed"), 1);

    let report = live.await.unwrap().unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x31),
        "the live call was not disturbed"
    );
    assert_all_tasks_end(&bridge).await;

    // Same token once the call has ended.
    let after = replay(bridge.twilio(), twiml.clone()).await;
    assert!(after.closed_by_bridge);
    assert_eq!(bridge.metrics.errors_of("twilio_stream_replayed"), 2);
    assert_eq!(
        realtime.recorder.sessions().len(),
        1,
        "no provider session for a replay"
    );

    // A replayed signed voice webhook gets no fresh token for the call.
    let params: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", sid),
        ("From", "+14155551234"),
        ("To", "+15005550006"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, body) = twilio.voice_webhook(&params, None).await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("token"), "{body}");
    assert_eq!(bridge.metrics.errors_of("twilio_webhook_replayed"), 1);
    assert_all_tasks_end(&bridge).await;
}

#[tokio::test]
async fn malformed_frames_are_counted_and_the_call_goes_on() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![say(400, 0x77, "Hello!")],
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let bad_media = |payload: &str| {
        json!({"event": "media", "media": {"timestamp": "1", "payload": payload}}).to_string()
    };
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000006",
            CallScript {
                hang_up_after_ms: Some(1_500),
                max_ms: 6_000,
                before_start: vec![bad_media("/w==")],
                after_start: vec![
                    "{not json".into(),
                    r#"{"event":"dance"}"#.into(),
                    bad_media("***"),
                    bad_media(&STANDARD.encode(vec![0u8; 8_000])),
                    format!(r#"{{"event":"media","pad":"{}"}}"#, "x".repeat(70_000)),
                    r#"{"event":"mark","mark":{"name":"never-sent"}}"#.into(),
                    r#"{"event":"media","media":{"timestamp":"x","payload":"/w=="}}"#.into(),
                ],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    // The conversation still happened.
    assert_eq!(report.played.iter().filter(|(_, b)| *b == 0x77).count(), 20);
    assert!(!report.closed_by_bridge);
    let m = &bridge.metrics;
    for kind in [
        "twilio_event_before_start",
        "twilio_malformed_frame",
        "twilio_unknown_event",
        "twilio_bad_base64",
        "twilio_oversized_payload",
        "twilio_oversized_frame",
        "twilio_unknown_mark",
    ] {
        assert!(
            m.errors_of(kind) >= 1,
            "{kind} not counted:\n{}",
            m.render()
        );
    }
    assert_all_tasks_end(&bridge).await;
}

#[tokio::test]
async fn a_provider_that_ignores_the_codec_ends_the_call_instead_of_playing_static() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![say(400, 0x12, "static")],
        echo_output_format: Some("audio/pcm".into()),
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000007",
            CallScript {
                max_ms: 5_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(report.closed_by_bridge);
    assert!(report.played.is_empty(), "no audio played");
    assert_all_tasks_end(&bridge).await;
    assert!(
        bridge
            .metrics
            .render()
            .contains("callbridge_calls_ended_total{reason=\"format_rejected\"} 1")
    );
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_ends_the_call_cleanly() {
    // Nothing listens on this port once the listener is dropped.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", unused.local_addr().unwrap());
    drop(unused);
    let bridge = TestBridge::start(&url, |_| {}).await;
    let report = bridge
        .twilio()
        .call(
            "CA00000000000000000000000000000008",
            CallScript {
                max_ms: 5_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(report.closed_by_bridge);
    assert_all_tasks_end(&bridge).await;
    assert_eq!(bridge.metrics.errors_of("provider_connect_failed"), 1);
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let realtime = FakeRealtime::start(Behaviour::default()).await;
    let bridge = TestBridge::start(&realtime.url(), |_| {}).await;
    let (status, body) = http_get(bridge.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    let (status, body) = http_get(bridge.addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE callbridge_active_calls gauge"));
}

/// A media client that stops reading cannot hold the call (or its provider session) open: sends
/// to it are bounded, so the bridge hangs up within a bounded time — as `twilio_stalled` once the
/// agent's audio has filled the socket and the writer's queue, or at the short maximum duration —
/// and every call task ends.
#[tokio::test]
async fn a_twilio_client_that_stops_reading_is_hung_up_in_bounded_time() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;

    // A long answer generated far faster than real time: 1 s of audio every millisecond.
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![say(600_000, 0x11, "A very long answer.")],
        delta_ms: 1_000,
        speedup: 1_000,
        late_deltas: 0,
        vad: false,
        record_audio: false,
        ..Behaviour::default()
    })
    .await;
    let bridge = TestBridge::start(&realtime.url(), |args| {
        args.max_call_secs = Some(10); // the shortest maximum the configuration accepts
    })
    .await;
    let twilio = bridge.twilio();
    let call_sid = "CA00000000000000000000000000000009";
    let twiml = twilio
        .ring(call_sid, "+14155551234", callbridge_testkit::CALLED_NUMBER)
        .await
        .unwrap();
    let mut socket = twilio.connect_media(&twiml.url, None).await.unwrap();
    let params: serde_json::Map<String, Value> = twiml
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let stream_sid = "MZ00000000000000000000000000000009";
    for event in [
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
            "accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call_sid,
            "tracks": ["inbound"], "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
    ] {
        socket
            .send(Message::Text(event.to_string().into()))
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    // From here on nothing reads the socket (it stays open until the end of the test).

    // Bound: the maximum duration, one stall period and the writers' close grace, plus slack.
    let bound = Duration::from_secs(10 + 5 + 2 + 5);
    loop {
        let text = bridge.metrics.render();
        if text.contains("callbridge_calls_ended_total{") {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "a call whose media client stopped reading was still up after {:?}:\n{text}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_tasks_end(&bridge).await;
    let text = bridge.metrics.render();
    let stalled = text.contains("callbridge_calls_ended_total{reason=\"twilio_stalled\"} 1\n");
    let max_duration = text.contains("callbridge_calls_ended_total{reason=\"max_duration\"} 1\n");
    assert!(stalled || max_duration, "unexpected end:\n{text}");
    if stalled {
        assert_eq!(bridge.metrics.errors_of("twilio_stalled"), 1);
    }
    // The agent's audio did fill everything up to the writer (so this was a stall, not a quiet call).
    assert!(
        text.lines().any(|l| l
            .strip_prefix("callbridge_frames_out_total ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 1_000)),
        "{text}"
    );
    // The provider session was closed with the call.
    for _ in 0..100 {
        if realtime.recorder.sessions().iter().all(|s| s.closed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sessions = realtime.recorder.sessions();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].closed, "provider session left open");
    drop(socket);
}

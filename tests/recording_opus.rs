//! Ogg/Opus call recording end to end: with `recording_format = opus` an agent with recording on
//! gets `<call id>.opus` on its call record, which decodes to two channels of the call's length
//! with the caller's speech on the left at its place; a bad format stops the server with exit 2.

use callbridge::audio::ogg_opus;
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use callbridge_testkit::{TestBridge, agent_spec, ended_call, provision_agent};

const SAMPLES_PER_MS: usize = 8;

/// Mean power of `channel` over `[from_ms, to_ms)`.
fn power(channel: &[i16], from_ms: usize, to_ms: usize) -> f64 {
    let window = &channel[from_ms * SAMPLES_PER_MS..to_ms * SAMPLES_PER_MS];
    window.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / window.len() as f64
}

#[tokio::test]
async fn an_opus_recording_is_named_by_call_id_and_decodes_to_the_call() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![Turn::Say {
            ms: 300,
            byte: 0x33,
            text: "Hello.".into(),
        }],
        ..Behaviour::default()
    })
    .await;
    let recordings = tempfile::tempdir().unwrap();
    let dir = recordings.path().to_owned();
    let bridge = TestBridge::start(&realtime.url(), |a| {
        a.recordings_dir = Some(dir);
        a.recording_format = Some("opus".into());
    })
    .await;
    let mut spec = agent_spec("openai", "gpt-realtime", "marin");
    spec.recording = true;
    let tenant = provision_agent(&bridge.store, "acme", spec).await;

    let report = bridge
        .twilio()
        .call(
            "CA40000000000000000000000000000011",
            CallScript {
                hang_up_after_ms: Some(3_000),
                max_ms: 8_000,
                speech: vec![(1_500, 600)],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    assert!(
        report.played.iter().any(|(_, b)| *b == 0x33),
        "the greeting played"
    );

    let call = ended_call(&bridge.store, &tenant).await;
    let path = call
        .recording_path
        .clone()
        .expect("recording path recorded");
    assert_eq!(
        std::path::Path::new(&path),
        recordings.path().join(format!("{}.opus", call.id))
    );
    let files: Vec<_> = std::fs::read_dir(recordings.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "one file, no WAV beside it: {files:?}");

    let recording = ogg_opus::read_file(std::path::Path::new(&path)).unwrap();
    assert_eq!(recording.channels, 2);
    assert_eq!(recording.input_sample_rate, 8_000);
    assert!(recording.complete, "the call's end wrote the end-of-stream page");
    let length_ms = recording.left.len() / SAMPLES_PER_MS;
    assert!(
        (2_800..=3_300).contains(&length_ms),
        "recording is {length_ms} ms for a 3 s call"
    );
    // The caller's tone is on the left where it was spoken, not on the right.
    let speech = power(&recording.left, 1_600, 2_000);
    assert!(speech > 1e6, "caller speech on the left: {speech}");
    assert!(power(&recording.left, 200, 1_300) * 100.0 < speech);
    assert!(power(&recording.right, 1_600, 2_000) * 100.0 < speech);
    // The fake's agent audio is a constant level, which the VOIP encoder's high-pass removes, so
    // the agent channel's content is checked with a tone in the recorder's unit tests.
}

#[test]
fn an_unknown_recording_format_stops_the_server_with_exit_code_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .env("PUBLIC_URL", "https://bridge.example.com")
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", "secret-token")
        .env("OPENAI_API_KEY", "sk-secret")
        .env("CALLBRIDGE_RECORDING_FORMAT", "mp3")
        .output()
        .expect("run callbridge");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CALLBRIDGE_RECORDING_FORMAT") && stderr.contains("mp3"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

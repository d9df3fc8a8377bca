//! Call recording end to end: an agent with recording on gets `<call id>.wav` (caller left, agent
//! right) whose channels line up with what the fake Twilio's playout model actually played, with
//! the agent audio a `clear` flushed left out, and the path on the call record. With
//! `recording_format = opus` it gets `<call id>.opus`, which decodes to the call; a bad format stops
//! the server with exit 2.

use callbridge::audio::{g711, ogg_opus};
use callbridge::store::{Store, TenantId};
use callbridge_testkit::fake_realtime::{Behaviour, FakeRealtime, Turn};
use callbridge_testkit::fake_twilio::CallScript;
use callbridge_testkit::{TestBridge, agent_spec, ended_call, provision_agent};

const SAMPLES_PER_MS: usize = 8;

fn say(ms: u64, byte: u8, text: &str) -> Turn {
    Turn::Say {
        ms,
        byte,
        text: text.into(),
    }
}

/// Sample indexes (8 kHz) where `channel` holds exactly the linear value of μ-law `code`.
fn positions_of(channel: &[i16], code: u8) -> Vec<usize> {
    let value = g711::ulaw_to_linear(code);
    channel
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == value)
        .map(|(i, _)| i)
        .collect()
}

/// A bridge writing recordings (in `format`, the default when `None`) to a fresh directory.
async fn bridge_recording_to(
    realtime: &FakeRealtime,
    format: Option<&str>,
) -> (tempfile::TempDir, TestBridge) {
    let recordings = tempfile::tempdir().unwrap();
    let dir = recordings.path().to_owned();
    let format = format.map(str::to_owned);
    let bridge = TestBridge::start(&realtime.url(), |a| {
        a.recordings_dir = Some(dir);
        a.recording_format = format;
    })
    .await;
    (recordings, bridge)
}

/// One finished call to an agent that records, and where its recording went.
struct RecordedCall {
    report: callbridge_testkit::fake_twilio::CallReport,
    recordings: tempfile::TempDir,
    bridge: TestBridge,
    tenant: TenantId,
    call: callbridge::store::Call,
    /// The recording, checked to be `<recordings dir>/<call id>.<extension>` on the call record.
    path: std::path::PathBuf,
}

/// Calls tenant "acme"'s recording OpenAI agent, the caller speaking at `speech` (start ms,
/// length ms) and hanging up after `hang_up_ms`, with recordings in `format` (`None`: default).
async fn recorded_call(
    realtime: &FakeRealtime,
    format: Option<&str>,
    call_sid: &str,
    hang_up_ms: u64,
    speech: (u64, u64),
) -> RecordedCall {
    let (recordings, bridge) = bridge_recording_to(realtime, format).await;
    let mut spec = agent_spec("openai", "gpt-realtime", "marin");
    spec.recording = true;
    let tenant = provision_agent(&bridge.store, "acme", spec).await;
    let report = bridge
        .twilio()
        .call(
            call_sid,
            CallScript {
                hang_up_after_ms: Some(hang_up_ms),
                max_ms: 8_000,
                speech: vec![speech],
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let call = ended_call(&bridge.store, &tenant).await;
    let path = std::path::PathBuf::from(call.recording_path.clone().expect("recording path"));
    let extension = format.unwrap_or("wav");
    assert_eq!(
        path,
        recordings.path().join(format!("{}.{extension}", call.id))
    );
    RecordedCall {
        report,
        recordings,
        bridge,
        tenant,
        call,
        path,
    }
}

#[tokio::test]
async fn a_recorded_call_has_aligned_channels_and_only_what_the_caller_heard() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![
            say(4_000, 0x33, "A very long explanation"),
            say(300, 0x44, "Go ahead."),
        ],
        late_deltas: 3,
        ..Behaviour::default()
    })
    .await;
    // The path is on the call record: <recordings dir>/<call id>.wav.
    let RecordedCall {
        report,
        bridge,
        tenant,
        call,
        path,
        recordings: _keep_until_the_end,
    } = recorded_call(
        &realtime,
        None,
        "CA40000000000000000000000000000001",
        3_600,
        (1_000, 500),
    )
    .await;
    assert_eq!(report.clears_at_ms.len(), 1);
    assert!(report.flushed_frames > 10, "clear flushed queued audio");
    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8_000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let caller: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let agent: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let length_ms = caller.len() / SAMPLES_PER_MS;
    assert!(
        (3_400..=3_900).contains(&length_ms),
        "recording is {length_ms} ms for a 3.6 s call"
    );

    // Left: the caller's 500 ms of speech, at its place on the stream clock.
    let loud: Vec<usize> = caller
        .iter()
        .enumerate()
        .filter(|(_, s)| s.unsigned_abs() > 2_000)
        .map(|(i, _)| i / SAMPLES_PER_MS)
        .collect();
    assert!(!loud.is_empty());
    let (first, last) = (loud[0], loud[loud.len() - 1]);
    assert!(
        (980..=1_040).contains(&first),
        "caller speech starts at {first} ms"
    );
    assert!(
        (1_460..=1_520).contains(&last),
        "caller speech ends at {last} ms"
    );

    // Right: exactly what the playout model played of the interrupted answer, nothing after the
    // clear, and the next answer in full — each where the caller heard it.
    let played_33: Vec<u64> = report
        .played
        .iter()
        .filter(|(_, b)| *b == 0x33)
        .map(|(at, _)| *at)
        .collect();
    let recorded_33 = positions_of(&agent, 0x33);
    let heard_ms = played_33.len() * 20;
    let recorded_ms = recorded_33.len() / SAMPLES_PER_MS;
    assert!(
        recorded_ms + 60 >= heard_ms && recorded_ms <= heard_ms + 60,
        "recorded {recorded_ms} ms of the interrupted answer, the caller heard {heard_ms} ms"
    );
    let clear_at = report.clears_at_ms[0] as usize;
    let last_33_ms = recorded_33[recorded_33.len() - 1] / SAMPLES_PER_MS;
    assert!(
        last_33_ms <= clear_at + 60,
        "interrupted answer recorded until {last_33_ms} ms, clear at {clear_at} ms"
    );
    let first_33_ms = recorded_33[0] / SAMPLES_PER_MS;
    assert!(
        first_33_ms.abs_diff(played_33[0] as usize) <= 60,
        "answer recorded from {first_33_ms} ms, played from {} ms",
        played_33[0]
    );

    let played_44: Vec<u64> = report
        .played
        .iter()
        .filter(|(_, b)| *b == 0x44)
        .map(|(at, _)| *at)
        .collect();
    let recorded_44 = positions_of(&agent, 0x44);
    assert_eq!(played_44.len(), 15, "300 ms answer played in full");
    assert_eq!(recorded_44.len(), 300 * SAMPLES_PER_MS);
    let first_44_ms = recorded_44[0] / SAMPLES_PER_MS;
    assert!(
        first_44_ms.abs_diff(played_44[0] as usize) <= 60,
        "second answer recorded at {first_44_ms} ms, played at {} ms",
        played_44[0]
    );
    // Nothing else is in the agent channel but silence.
    let other = agent
        .iter()
        .filter(|s| {
            **s != 0 && **s != g711::ulaw_to_linear(0x33) && **s != g711::ulaw_to_linear(0x44)
        })
        .count();
    assert_eq!(other, 0);
    // The same call, recorded, has its events too.
    assert!(
        !bridge
            .store
            .call_events(&tenant, &call.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn agents_without_recording_and_the_default_agent_write_no_file() {
    let realtime = FakeRealtime::start(Behaviour {
        script: vec![say(300, 0x11, "Hi.")],
        ..Behaviour::default()
    })
    .await;
    let (recordings, bridge) = bridge_recording_to(&realtime, None).await;
    // No tenant: the default agent answers.
    bridge
        .twilio()
        .call(
            "CA40000000000000000000000000000002",
            CallScript {
                hang_up_after_ms: Some(800),
                max_ms: 4_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let tenant = provision_agent(
        &bridge.store,
        "acme",
        agent_spec("openai", "gpt-realtime", "marin"),
    )
    .await;
    bridge
        .twilio()
        .call(
            "CA40000000000000000000000000000003",
            CallScript {
                hang_up_after_ms: Some(800),
                max_ms: 4_000,
                ..CallScript::default()
            },
        )
        .await
        .unwrap();
    let call = ended_call(&bridge.store, &tenant).await;
    assert_eq!(call.recording_path, None);
    assert_eq!(std::fs::read_dir(recordings.path()).unwrap().count(), 0);
}

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
    // The path is on the call record: <recordings dir>/<call id>.opus.
    let recorded = recorded_call(
        &realtime,
        Some("opus"),
        "CA40000000000000000000000000000011",
        3_000,
        (1_500, 600),
    )
    .await;
    let (recordings, path) = (&recorded.recordings, &recorded.path);
    assert!(
        recorded.report.played.iter().any(|(_, b)| *b == 0x33),
        "the greeting played"
    );
    let files: Vec<_> = std::fs::read_dir(recordings.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "one file, no WAV beside it: {files:?}");

    let recording = ogg_opus::read_file(path).unwrap();
    assert_eq!(recording.channels, 2);
    assert_eq!(recording.input_sample_rate, 8_000);
    assert!(
        recording.complete,
        "the call's end wrote the end-of-stream page"
    );
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
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .env_clear()
        .env("PUBLIC_URL", "https://bridge.example.com")
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", "secret-token")
        .env("OPENAI_API_KEY", "sk-secret")
        .env("CALLBRIDGE_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", "sqlite::memory:")
        .env("CALLBRIDGE_RECORDING_FORMAT", "mp3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run callbridge");
    // Bounded: a server that accepted the value would run until killed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait for callbridge").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("callbridge started with CALLBRIDGE_RECORDING_FORMAT=mp3");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("callbridge output");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CALLBRIDGE_RECORDING_FORMAT") && stderr.contains("mp3"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

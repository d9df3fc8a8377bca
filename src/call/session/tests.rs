//! State-machine tests: every barge-in, mark, tool and ending rule, driven by inputs alone.

use super::*;
use crate::realtime::LlmEvent as E;

struct Harness {
    session: CallSession,
    t0: Instant,
    now: Instant,
    media_ts: u64,
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

impl Harness {
    fn new() -> Self {
        Self::with(SessionParams::default())
    }

    fn with(params: SessionParams) -> Self {
        let t0 = Instant::now();
        Self {
            session: CallSession::new(params, t0),
            t0,
            now: t0,
            media_ts: 0,
        }
    }

    /// A session already confirmed by the provider, outputs drained.
    fn ready() -> Self {
        let mut h = Self::new();
        h.llm(E::SessionUpdated {
            input_format: Some("audio/pcmu".into()),
            output_format: Some("audio/pcmu".into()),
        });
        h.drain();
        h
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.session.handle(self.now, input);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.session.poll_output()).collect()
    }

    fn llm(&mut self, event: LlmEvent) -> Vec<Output> {
        self.input(Input::Llm(event))
    }

    /// Advances the Twilio stream clock by `ms` with one inbound frame.
    fn media_after(&mut self, ms: u64) -> Vec<Output> {
        self.media_ts += ms;
        self.now += Duration::from_millis(ms);
        self.input(Input::Twilio(TwilioEvent::Media {
            timestamp_ms: self.media_ts,
            payload: b64(&[0xFF; 160]),
            len: 160,
        }))
    }

    fn mark(&mut self, name: &str) -> Vec<Output> {
        self.input(Input::Twilio(TwilioEvent::Mark { name: name.into() }))
    }

    fn created(&mut self, response: &str) -> Vec<Output> {
        self.llm(E::ResponseCreated {
            response_id: response.into(),
        })
    }

    fn delta(&mut self, response: &str, item: &str, bytes: usize) -> Vec<Output> {
        self.llm(E::AudioDelta {
            response_id: response.into(),
            item_id: item.into(),
            audio: b64(&vec![0x55; bytes]),
        })
    }

    fn done(&mut self, response: &str, status: ResponseStatus) -> Vec<Output> {
        self.llm(E::ResponseDone {
            response_id: response.into(),
            status,
        })
    }

    fn tick_at(&mut self, after_start: Duration) -> Vec<Output> {
        self.now = self.t0 + after_start;
        self.input(Input::Tick)
    }
}

fn frames(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Twilio(TwilioCommand::Media(_))))
        .count()
}

fn marks(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Twilio(TwilioCommand::Mark(name)) => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

fn truncates(outputs: &[Output]) -> Vec<(String, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Llm(LlmCommand::Truncate {
                item_id,
                audio_end_ms,
            }) => Some((item_id.clone(), *audio_end_ms)),
            _ => None,
        })
        .collect()
}

fn hangup(outputs: &[Output]) -> Option<EndReason> {
    outputs.iter().find_map(|o| match o {
        Output::Hangup(reason) => Some(reason.clone()),
        _ => None,
    })
}

fn creates(outputs: &[Output]) -> Vec<Option<String>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Llm(LlmCommand::CreateResponse { instructions }) => Some(instructions.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn session_confirmation_flushes_early_audio_and_greets() {
    let mut h = Harness::new();
    assert!(h.media_after(20).is_empty(), "audio waits for the session");
    h.media_after(20);
    let out = h.llm(E::SessionUpdated {
        input_format: Some("audio/pcmu".into()),
        output_format: Some("audio/pcmu".into()),
    });
    assert_eq!(out[0], Output::Event(CallEvent::SessionReady));
    let appends = out
        .iter()
        .filter(|o| matches!(o, Output::Llm(LlmCommand::AppendAudio(_))))
        .count();
    assert_eq!(appends, 2);
    assert_eq!(creates(&out), vec![None]);
    // Afterwards caller audio is forwarded untouched, one append per frame.
    let payload = b64(&[1, 2, 3, 4]);
    let out = h.input(Input::Twilio(TwilioEvent::Media {
        timestamp_ms: 60,
        payload: payload.clone(),
        len: 4,
    }));
    assert_eq!(out, vec![Output::Llm(LlmCommand::AppendAudio(payload))]);
}

#[test]
fn a_format_the_provider_did_not_accept_ends_the_call() {
    let mut h = Harness::new();
    let out = h.llm(E::SessionUpdated {
        input_format: Some("audio/pcm".into()),
        output_format: Some("audio/pcmu".into()),
    });
    assert_eq!(
        hangup(&out),
        Some(EndReason::FormatRejected {
            input: "audio/pcm".into(),
            output: "audio/pcmu".into()
        })
    );
    assert!(h.session.is_ended());
    assert!(h.delta("r1", "i1", 800).is_empty(), "nothing after the end");
}

#[test]
fn a_provider_error_before_the_session_is_ready_ends_the_call() {
    let mut h = Harness::new();
    let out = h.llm(E::Error {
        code: "unknown_parameter".into(),
        message: "session.foo".into(),
    });
    assert!(matches!(
        hangup(&out),
        Some(EndReason::ProviderRejectedSession(_))
    ));
}

#[test]
fn session_that_never_confirms_times_out() {
    let mut h = Harness::new();
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.t0 + Duration::from_secs(10))
    );
    assert_eq!(
        hangup(&h.tick_at(Duration::from_secs(10))),
        Some(EndReason::SessionTimeout)
    );
}

#[test]
fn deltas_are_rechunked_into_whole_frames_with_marks() {
    let mut h = Harness::ready();
    h.created("r1");
    // 400 bytes: two whole frames out, 80 bytes carried, one mark at 40 ms.
    let out = h.delta("r1", "i1", 400);
    assert_eq!(frames(&out), 2);
    assert_eq!(marks(&out), vec!["0:40:i1".to_string()]);
    // 100 more: 180 carried → one frame (real 160 bytes), mark at 60 ms.
    let out = h.delta("r1", "i1", 100);
    assert_eq!(frames(&out), 1);
    assert_eq!(marks(&out), vec!["0:60:i1".to_string()]);
    // Done: the last 20 real bytes go out padded with silence, mark at 62 ms (real audio only).
    let out = h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    });
    assert_eq!(frames(&out), 1);
    let Output::Twilio(TwilioCommand::Media(last)) = &out[0] else {
        panic!("expected a frame first: {out:?}")
    };
    assert_eq!(&last[..20], &[0x55; 20]);
    assert!(last[20..].iter().all(|&b| b == ULAW_SILENCE));
    assert_eq!(marks(&out), vec!["0:62:i1".to_string()]);
}

#[test]
fn long_deltas_get_a_mark_every_100_ms() {
    let mut h = Harness::ready();
    h.created("r1");
    let out = h.delta("r1", "i1", 160 * 12);
    assert_eq!(frames(&out), 12);
    assert_eq!(marks(&out), vec!["0:100:i1", "0:200:i1", "0:240:i1"]);
}

#[test]
fn early_barge_in_clears_without_truncate_and_drops_late_deltas() {
    let mut h = Harness::ready();
    h.created("r1");
    h.delta("r1", "i1", 1600);
    // The caller talks before any audio played (no mark back, stream clock unchanged).
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: Some(0),
    });
    assert_eq!(
        out[0],
        Output::Twilio(TwilioCommand::Clear),
        "clear comes first"
    );
    assert!(
        truncates(&out).is_empty(),
        "nothing heard, nothing truncated"
    );
    assert!(out.contains(&Output::Event(CallEvent::BargeIn {
        item_id: "i1".into(),
        truncated_at_ms: None
    })));
    // Late deltas of the interrupted response never reach Twilio.
    let out = h.delta("r1", "i1", 1600);
    assert_eq!(frames(&out), 0);
    assert_eq!(out, vec![Output::Event(CallEvent::LateDeltaDropped)]);
    // The flushed echoes of the old generation are ignored silently.
    assert!(h.mark("0:100:i1").is_empty());
    h.done("r1", ResponseStatus::Cancelled);
    // The next response plays normally, marks in the new generation.
    h.created("r2");
    let out = h.delta("r2", "i2", 320);
    assert_eq!(frames(&out), 2);
    assert_eq!(marks(&out), vec!["1:40:i2".to_string()]);
}

#[test]
fn late_barge_in_truncates_at_what_was_heard() {
    let mut h = Harness::ready();
    h.created("r1");
    // 2 s of audio: marks every 100 ms.
    let out = h.delta("r1", "i1", 16_000);
    let sent = marks(&out);
    assert_eq!(sent.len(), 20);
    // Playback: 1030 ms pass on the stream clock, marks acknowledged up to 1000 ms.
    for _ in 0..51 {
        h.media_after(20);
    }
    h.media_after(10);
    for name in &sent[..10] {
        assert!(h.mark(name).is_empty());
    }
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert_eq!(out[0], Output::Twilio(TwilioCommand::Clear));
    // Heard: 1030 ms by the clock, within [1000 acked, 1100 next mark].
    assert_eq!(truncates(&out), vec![("i1".to_string(), 1030)]);
    assert!(out.contains(&Output::Event(CallEvent::BargeIn {
        item_id: "i1".into(),
        truncated_at_ms: Some(1030)
    })));
    // Marks flushed by the clear come back: stale, not "heard".
    for name in &sent[10..] {
        assert!(h.mark(name).is_empty());
    }
}

#[test]
fn truncate_never_exceeds_what_was_sent_or_the_next_unacknowledged_mark() {
    let mut h = Harness::ready();
    h.created("r1");
    h.delta("r1", "i1", 800); // 100 ms sent, one mark at 100.
    // The stream clock runs 5 s (e.g. the provider stalled), nothing acknowledged.
    h.media_after(5_000);
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert_eq!(truncates(&out), vec![("i1".to_string(), 100)]);

    // And with everything acknowledged the clock cannot push past what was sent.
    let mut h = Harness::ready();
    h.created("r1");
    let sent = marks(&h.delta("r1", "i1", 800));
    h.media_after(20);
    h.mark(&sent[0]);
    h.media_after(3_000);
    h.delta("r1", "i1", 80); // still generating: 10 ms carried, no frame yet
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert_eq!(truncates(&out), vec![("i1".to_string(), 100)]);
}

#[test]
fn a_finished_response_does_not_leave_a_stale_start_behind() {
    let mut h = Harness::ready();
    h.created("r1");
    let sent = marks(&h.delta("r1", "i1", 800));
    h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    });
    h.done("r1", ResponseStatus::Completed);
    h.media_after(100);
    h.mark(&sent[0]);
    // A long pause in which the caller talks, then a new answer.
    h.media_after(10_000);
    h.created("r2");
    let sent2 = marks(&h.delta("r2", "i2", 1600));
    h.media_after(60);
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    // 60 ms into i2 — not 10 s measured from i1's start (the Node sample's bug).
    assert_eq!(truncates(&out), vec![("i2".to_string(), 60)]);
    assert_eq!(sent2.len(), 2);
}

#[test]
fn the_clock_of_a_queued_item_starts_when_the_previous_one_finished_playing() {
    let mut h = Harness::ready();
    h.created("r1");
    let first = marks(&h.delta("r1", "i1", 800)); // 100 ms
    h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    });
    h.done("r1", ResponseStatus::Completed);
    h.created("r2");
    h.delta("r2", "i2", 1600); // queued behind i1
    h.media_after(100);
    h.mark(&first[0]); // i1 finished; i2 starts now
    h.media_after(40);
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert_eq!(truncates(&out), vec![("i2".to_string(), 40)]);
}

#[test]
fn unknown_marks_are_reported_and_the_call_goes_on() {
    let mut h = Harness::ready();
    let out = h.mark("not-ours");
    assert!(matches!(
        out.as_slice(),
        [Output::Event(CallEvent::ProtocolError {
            kind: "twilio_unknown_mark",
            ..
        })]
    ));
    assert!(!h.session.is_ended());
}

#[test]
fn a_delta_that_is_not_base64_is_reported_not_played() {
    let mut h = Harness::ready();
    let out = h.llm(E::AudioDelta {
        response_id: "r1".into(),
        item_id: "i1".into(),
        audio: "!!".into(),
    });
    assert!(matches!(
        out.as_slice(),
        [Output::Event(CallEvent::ProtocolError {
            kind: "provider_bad_base64",
            ..
        })]
    ));
}

#[test]
fn several_tool_calls_in_one_response_are_answered_together() {
    let mut h = Harness::ready();
    h.created("r1");
    let call = |h: &mut Harness, id: &str, name: &str| {
        h.llm(E::ToolCall {
            response_id: "r1".into(),
            call_id: id.into(),
            name: name.into(),
            arguments: "{}".into(),
        })
    };
    let out = call(&mut h, "c1", "lookup");
    assert!(out.contains(&Output::RunTool {
        call_id: "c1".into(),
        name: "lookup".into(),
        arguments: "{}".into()
    }));
    call(&mut h, "c2", "lookup");
    let out = h.input(Input::ToolFinished {
        call_id: "c1".into(),
        output: "1".into(),
    });
    assert!(out.is_empty(), "c2 still running");
    assert!(h.done("r1", ResponseStatus::Completed).is_empty());
    let out = h.input(Input::ToolFinished {
        call_id: "c2".into(),
        output: "2".into(),
    });
    assert_eq!(
        out,
        vec![
            Output::Llm(LlmCommand::ToolResult {
                call_id: "c1".into(),
                name: "lookup".into(),
                output: "1".into()
            }),
            Output::Llm(LlmCommand::ToolResult {
                call_id: "c2".into(),
                name: "lookup".into(),
                output: "2".into()
            }),
            Output::Llm(LlmCommand::CreateResponse { instructions: None }),
        ]
    );
}

#[test]
fn tool_results_wait_for_the_active_response_to_finish() {
    let mut h = Harness::ready();
    h.created("r1");
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
    });
    let out = h.input(Input::ToolFinished {
        call_id: "c1".into(),
        output: "{}".into(),
    });
    assert!(out.is_empty(), "response r1 still active");
    let out = h.done("r1", ResponseStatus::Completed);
    assert_eq!(creates(&out), vec![None]);
    // A result for a call we never started is ignored.
    assert!(
        h.input(Input::ToolFinished {
            call_id: "zz".into(),
            output: "{}".into()
        })
        .is_empty()
    );
}

#[test]
fn end_call_after_a_spoken_goodbye_waits_for_its_last_mark() {
    let mut h = Harness::ready();
    h.created("r1");
    let mut sent = marks(&h.delta("r1", "i1", 1200)); // "Goodbye!" 150 ms
    sent.extend(marks(&h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    })));
    assert_eq!(sent, vec!["0:100:i1", "0:140:i1", "0:150:i1"]);
    let out = h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c9".into(),
        name: END_CALL_TOOL.into(),
        arguments: "{}".into(),
    });
    assert!(
        !out.iter().any(|o| matches!(o, Output::RunTool { .. })),
        "end_call is built in"
    );
    let out = h.done("r1", ResponseStatus::Completed);
    assert_eq!(hangup(&out), None, "the goodbye has not played yet");
    assert!(creates(&out).is_empty(), "no second farewell");
    let all = [sent, marks(&out)].concat();
    let (last, rest) = all.split_last().unwrap();
    for name in rest {
        assert_eq!(hangup(&h.mark(name)), None);
    }
    assert_eq!(hangup(&h.mark(last)), Some(EndReason::AgentEnded));
}

#[test]
fn end_call_without_speech_asks_for_a_farewell_first() {
    let mut h = Harness::ready();
    h.created("r1");
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c9".into(),
        name: END_CALL_TOOL.into(),
        arguments: "{}".into(),
    });
    let out = h.done("r1", ResponseStatus::Completed);
    assert!(out.contains(&Output::Llm(LlmCommand::ToolResult {
        call_id: "c9".into(),
        name: END_CALL_TOOL.into(),
        output: r#"{"ok":true,"status":"ending the call"}"#.into()
    })));
    assert_eq!(creates(&out).len(), 1);
    assert!(creates(&out)[0].is_some(), "farewell instructions");
    h.created("r2");
    let sent = marks(&h.delta("r2", "i2", 800));
    h.llm(E::AudioDone {
        response_id: "r2".into(),
        item_id: "i2".into(),
    });
    assert_eq!(hangup(&h.done("r2", ResponseStatus::Completed)), None);
    assert_eq!(hangup(&h.mark(&sent[0])), Some(EndReason::AgentEnded));
}

#[test]
fn end_call_wait_is_bounded() {
    let mut h = Harness::ready();
    h.created("r1");
    h.delta("r1", "i1", 1600);
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c9".into(),
        name: END_CALL_TOOL.into(),
        arguments: "{}".into(),
    });
    h.done("r1", ResponseStatus::Completed);
    // Twilio never acknowledges the marks.
    let deadline = h.session.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(10));
    assert_eq!(
        hangup(&h.tick_at(deadline - h.t0)),
        Some(EndReason::AgentEnded)
    );
}

#[test]
fn max_duration_asks_for_a_goodbye_then_hangs_up() {
    let mut h = Harness::ready();
    let limit = Duration::from_secs(15 * 60);
    // Keep the call busy so silence does not end it first.
    h.now = h.t0 + limit - Duration::from_secs(1);
    h.llm(E::SpeechStopped);
    let out = h.tick_at(limit);
    assert!(out.contains(&Output::Event(CallEvent::Ending {
        reason: EndReason::MaxDuration
    })));
    assert_eq!(creates(&out).len(), 1);
    assert_eq!(
        hangup(&h.tick_at(limit + Duration::from_secs(10))),
        Some(EndReason::MaxDuration)
    );
}

#[test]
fn silence_timeout_ends_an_idle_call_but_not_a_busy_one() {
    let mut h = Harness::ready();
    h.created("r1");
    // A response is being generated: not silence.
    assert!(h.tick_at(Duration::from_secs(31)).is_empty());
    h.done("r1", ResponseStatus::Completed);
    let idle_until = h.session.poll_timeout().unwrap();
    let out = h.tick_at(idle_until - h.t0);
    assert!(out.contains(&Output::Event(CallEvent::Ending {
        reason: EndReason::Silence
    })));
}

#[test]
fn twilio_stop_ends_the_call_once() {
    let mut h = Harness::ready();
    assert_eq!(
        hangup(&h.input(Input::Twilio(TwilioEvent::Stop))),
        Some(EndReason::CallerHungUp)
    );
    assert!(h.input(Input::TwilioClosed).is_empty());
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn provider_close_ends_the_call() {
    let mut h = Harness::ready();
    let out = h.input(Input::LlmClosed {
        reason: "reset".into(),
    });
    assert_eq!(
        hangup(&out),
        Some(EndReason::ProviderClosed("reset".into()))
    );
}

#[test]
fn dtmf_becomes_a_note_for_the_model() {
    let mut h = Harness::ready();
    let out = h.input(Input::Twilio(TwilioEvent::Dtmf { digit: "7".into() }));
    assert!(matches!(
        out.as_slice(),
        [Output::Llm(LlmCommand::SystemNote(note))] if note.contains('7')
    ));
}

#[test]
fn speech_with_a_response_in_flight_but_no_audio_drops_that_response() {
    let mut h = Harness::ready();
    h.created("r1");
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert!(out.is_empty(), "nothing playing: no clear, no truncate");
    let out = h.delta("r1", "i1", 800);
    assert_eq!(out, vec![Output::Event(CallEvent::LateDeltaDropped)]);
}

#[test]
fn without_provider_side_cancel_the_bridge_cancels() {
    let mut h = Harness::with(SessionParams {
        provider_cancels_on_speech: false,
        ..SessionParams::default()
    });
    h.llm(E::SessionUpdated {
        input_format: Some("audio/pcmu".into()),
        output_format: Some("audio/pcmu".into()),
    });
    h.created("r1");
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert!(out.contains(&Output::Llm(LlmCommand::CancelResponse)));
}

// ---- PCM providers (Gemini Live shapes), interruption without truncate, resumption ---------------

fn gemini_params() -> SessionParams {
    SessionParams {
        provider_truncates: false,
        provider_continues_after_tools: true,
        expected_input_format: "audio/pcm;rate=16000".into(),
        expected_output_format: "audio/pcm;rate=24000".into(),
        ..SessionParams::default()
    }
}

impl Harness {
    /// A confirmed session with a 16 kHz in / 24 kHz out transcoder, outputs drained.
    fn gemini_ready() -> Self {
        let t0 = Instant::now();
        let transcoder = crate::audio::Transcoder::new(16_000, 24_000).unwrap();
        let mut h = Self {
            session: CallSession::with_audio(
                gemini_params(),
                t0,
                AudioStage::Transcode(Box::new(transcoder)),
            ),
            t0,
            now: t0,
            media_ts: 0,
        };
        h.llm(E::SessionUpdated {
            input_format: Some("audio/pcm;rate=16000".into()),
            output_format: Some("audio/pcm;rate=24000".into()),
        });
        h.drain();
        h
    }

    /// `ms` of constant PCM16 at 24 kHz.
    fn pcm_delta(&mut self, response: &str, ms: usize, level: i16) -> Vec<Output> {
        let bytes: Vec<u8> = std::iter::repeat_n(level.to_le_bytes(), ms * 24)
            .flatten()
            .collect();
        self.llm(E::AudioDelta {
            response_id: response.into(),
            item_id: response.into(),
            audio: b64(&bytes),
        })
    }
}

fn media_frames(outputs: &[Output]) -> Vec<[u8; FRAME_BYTES]> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Twilio(TwilioCommand::Media(frame)) => Some(*frame),
            _ => None,
        })
        .collect()
}

fn appends(outputs: &[Output]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Llm(LlmCommand::AppendAudio(a)) => Some(STANDARD.decode(a).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pcm_provider_gets_16k_pcm_and_its_24k_answer_plays_as_ulaw_frames() {
    let mut h = Harness::gemini_ready();
    // One 20 ms μ-law frame becomes 20 ms of 16 kHz PCM16 (640 bytes).
    let sent = appends(&h.media_after(20));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 640);
    assert!(sent[0].iter().all(|&b| b == 0), "μ-law silence is PCM zero");

    h.created("t1");
    let mut out = h.pcm_delta("t1", 100, 8_000);
    out.extend(h.llm(E::AudioDone {
        response_id: "t1".into(),
        item_id: "t1".into(),
    }));
    let frames = media_frames(&out);
    // 100 ms of audio plus the resampler's 10 ms tail, padded to whole frames.
    assert_eq!(frames.len(), 6, "{} frames", frames.len());
    let level = |frame: &[u8; FRAME_BYTES], i: usize| crate::audio::g711::ulaw_to_linear(frame[i]);
    assert!(
        (7_000..9_000).contains(&level(&frames[2], 80)),
        "the answer's level survives"
    );
    assert!(!marks(&out).is_empty());
}

#[test]
fn an_interruption_clears_without_truncating_and_the_next_answer_starts_clean() {
    let mut h = Harness::gemini_ready();
    h.created("t1");
    let out = h.pcm_delta("t1", 200, 12_000);
    assert!(frames(&out) > 0);
    h.media_after(60);
    let out = h.llm(E::Interrupted);
    assert_eq!(out[0], Output::Twilio(TwilioCommand::Clear), "clear first");
    assert!(truncates(&out).is_empty(), "Gemini has no truncate");
    assert!(
        !out.contains(&Output::Llm(LlmCommand::CancelResponse)),
        "the provider stopped by itself"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::BargeIn { .. })))
    );
    h.done("t1", ResponseStatus::Cancelled);
    // Silence in gives silence out: nothing of the loud answer was left in the resampler.
    h.created("t2");
    let mut out = h.pcm_delta("t2", 40, 0);
    out.extend(h.llm(E::AudioDone {
        response_id: "t2".into(),
        item_id: "t2".into(),
    }));
    let frames = media_frames(&out);
    assert!(!frames.is_empty());
    assert!(
        frames
            .iter()
            .flatten()
            .all(|&c| crate::audio::g711::ulaw_to_linear(c).abs() < 64),
        "audio of the interrupted answer leaked"
    );
}

#[test]
fn without_truncate_support_a_late_barge_in_still_clears_and_reports_what_was_heard() {
    let mut h = Harness::with(SessionParams {
        provider_truncates: false,
        ..SessionParams::default()
    });
    h.llm(E::SessionUpdated {
        input_format: Some("audio/pcmu".into()),
        output_format: Some("audio/pcmu".into()),
    });
    h.created("r1");
    let sent = marks(&h.delta("r1", "i1", 1_600));
    h.media_after(20);
    h.mark(&sent[0]);
    h.media_after(200);
    let out = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert_eq!(out[0], Output::Twilio(TwilioCommand::Clear));
    assert!(truncates(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::BargeIn {
            truncated_at_ms: Some(_),
            ..
        })
    )));
}

#[test]
fn a_provider_that_continues_after_tools_gets_results_without_a_response_request() {
    let mut h = Harness::gemini_ready();
    h.created("t1");
    h.llm(E::ToolCall {
        response_id: "t1".into(),
        call_id: "fc_1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
    });
    h.done("t1", ResponseStatus::Completed);
    let out = h.input(Input::ToolFinished {
        call_id: "fc_1".into(),
        output: "{}".into(),
    });
    assert_eq!(
        out,
        vec![Output::Llm(LlmCommand::ToolResult {
            call_id: "fc_1".into(),
            name: "lookup".into(),
            output: "{}".into()
        })]
    );
}

#[test]
fn a_closed_provider_with_a_resumption_handle_is_resumed_without_the_caller_noticing() {
    let mut h = Harness::gemini_ready();
    h.llm(E::ResumptionHandle("h-1".into()));
    h.llm(E::ResumptionHandle("h-2".into()));
    h.created("g0-turn1");
    let out = h.pcm_delta("g0-turn1", 100, 8_000);
    let queued_marks = marks(&out);
    assert!(
        h.llm(E::GoingAway).is_empty(),
        "a resumable session going away is routine"
    );
    let out = h.input(Input::LlmClosed {
        reason: "provider closed the socket".into(),
    });
    assert!(hangup(&out).is_none());
    assert!(!out.contains(&Output::Twilio(TwilioCommand::Clear)));
    assert!(out.contains(&Output::ReconnectProvider {
        handle: "h-2".into()
    }));
    // The answer received so far still plays out: its tail and end mark went out.
    assert!(frames(&out) > 0);
    // Caller audio waits for the resumed session instead of going to the closed socket.
    assert!(appends(&h.media_after(20)).is_empty());
    assert!(appends(&h.media_after(20)).is_empty());
    // Marks of the old answer still count.
    for name in queued_marks.iter().chain(marks(&out).iter()) {
        assert!(h.mark(name).is_empty(), "mark {name} known");
    }
    let out = h.llm(E::SessionUpdated {
        input_format: Some("audio/pcm;rate=16000".into()),
        output_format: Some("audio/pcm;rate=24000".into()),
    });
    assert_eq!(out[0], Output::Event(CallEvent::ProviderResumed));
    assert_eq!(appends(&out).len(), 2, "held caller audio is sent");
    assert!(creates(&out).is_empty(), "no second greeting");
    assert_eq!(appends(&h.media_after(20)).len(), 1);
    // The resumed session's turns play like any other.
    h.created("g1-turn1");
    assert!(frames(&h.pcm_delta("g1-turn1", 100, 8_000)) > 0);
}

#[test]
fn resumption_gives_up_after_repeated_failures_or_a_silent_provider() {
    let mut h = Harness::gemini_ready();
    h.llm(E::ResumptionHandle("h-1".into()));
    for attempt in 1..=3 {
        let out = h.input(Input::LlmClosed {
            reason: "connect failed".into(),
        });
        assert!(
            out.contains(&Output::Event(CallEvent::ProviderResuming { attempt })),
            "attempt {attempt}: {out:?}"
        );
    }
    let out = h.input(Input::LlmClosed {
        reason: "connect failed".into(),
    });
    assert!(matches!(hangup(&out), Some(EndReason::ProviderClosed(_))));

    let mut h = Harness::gemini_ready();
    h.llm(E::ResumptionHandle("h-1".into()));
    h.now = h.t0 + Duration::from_secs(5);
    h.input(Input::LlmClosed {
        reason: "gone".into(),
    });
    let out = h.tick_at(Duration::from_secs(16));
    assert_eq!(hangup(&out), Some(EndReason::SessionTimeout));
}

#[test]
fn without_a_handle_a_closed_provider_still_ends_the_call() {
    let mut h = Harness::ready();
    let out = h.input(Input::LlmClosed {
        reason: "bye".into(),
    });
    assert!(matches!(hangup(&out), Some(EndReason::ProviderClosed(_))));
}

#[test]
fn a_slow_tool_gets_one_filler_and_its_result_waits_for_it() {
    let mut h = Harness::ready();
    h.created("r1");
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c1".into(),
        name: "book".into(),
        arguments: "{}".into(),
    });
    h.done("r1", ResponseStatus::Completed);
    let due = h.session.poll_timeout().unwrap();
    assert_eq!(
        due,
        h.now + Duration::from_millis(700),
        "filler timer armed"
    );
    let out = h.tick_at(due - h.t0);
    assert!(
        matches!(
            out.as_slice(),
            [
                Output::Llm(LlmCommand::Filler { .. }),
                Output::Event(CallEvent::FillerRequested)
            ]
        ),
        "{out:?}"
    );
    // One filler per batch.
    assert!(h.tick_at(due - h.t0 + Duration::from_secs(1)).is_empty());
    // The filler plays; the tool finishes meanwhile: its result waits for the filler to end.
    h.created("r_filler");
    h.delta("r_filler", "i_f", 800);
    let out = h.input(Input::ToolFinished {
        call_id: "c1".into(),
        output: "{\"ok\":true}".into(),
    });
    assert!(out.is_empty(), "{out:?}");
    let out = h.done("r_filler", ResponseStatus::Completed);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Llm(LlmCommand::ToolResult { .. })))
    );
    assert_eq!(creates(&out), vec![None]);
}

#[test]
fn a_fast_tool_gets_no_filler() {
    let mut h = Harness::ready();
    h.created("r1");
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
    });
    h.done("r1", ResponseStatus::Completed);
    h.now += Duration::from_millis(200);
    h.input(Input::ToolFinished {
        call_id: "c1".into(),
        output: "{}".into(),
    });
    let out = h.tick_at(Duration::from_millis(800));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Llm(LlmCommand::Filler { .. })))
    );
}

#[test]
fn a_tool_interrupted_by_the_caller_still_delivers_its_result() {
    let mut h = Harness::ready();
    h.created("r1");
    h.delta("r1", "i1", 800);
    h.llm(E::ToolCall {
        response_id: "r1".into(),
        call_id: "c1".into(),
        name: "book".into(),
        arguments: "{}".into(),
    });
    // The caller talks over the agent while the booking runs.
    h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    h.done("r1", ResponseStatus::Cancelled);
    h.llm(E::SpeechStopped);
    let out = h.input(Input::ToolFinished {
        call_id: "c1".into(),
        output: "{\"booked\":true}".into(),
    });
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Llm(LlmCommand::ToolResult { call_id, output, .. })
                if call_id == "c1" && output.contains("booked")
        )),
        "{out:?}"
    );
}

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
            Output::Twilio(TwilioCommand::Mark(name)) => Some(name.clone()),
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
                output: "1".into()
            }),
            Output::Llm(LlmCommand::ToolResult {
                call_id: "c2".into(),
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

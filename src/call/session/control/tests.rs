//! Call-control rules of the session, driven by inputs alone: tones queued as their own item and
//! answered once played, a menu's voice not clearing them, the transfer waiting for its handover
//! line to be heard.

use std::time::{Duration, Instant};

use super::super::{CallSession, Input, SessionParams, TwilioCommand};
use super::*;
use crate::realtime::{LlmEvent as E, ResponseStatus};
use crate::twilio::stream::TwilioEvent;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

struct H {
    s: CallSession,
    now: Instant,
}

impl H {
    fn ready() -> Self {
        let now = Instant::now();
        let mut h = H {
            s: CallSession::new(SessionParams::default(), now),
            now,
        };
        h.llm(E::SessionUpdated {
            input_format: Some("audio/pcmu".into()),
            output_format: Some("audio/pcmu".into()),
        });
        h
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.s.handle(self.now, input);
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    fn llm(&mut self, e: E) -> Vec<Output> {
        self.input(Input::Llm(e))
    }

    fn tool(&mut self, response: &str, call_id: &str, name: &str, arguments: &str) -> Vec<Output> {
        self.llm(E::ToolCall {
            response_id: response.into(),
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    }

    fn done(&mut self, response: &str) -> Vec<Output> {
        self.llm(E::ResponseDone {
            response_id: response.into(),
            status: ResponseStatus::Completed,
        })
    }

    /// Echoes every mark in `outputs`, as Twilio does once the audio before it played.
    fn play(&mut self, outputs: &[Output]) -> Vec<Output> {
        let mut out = Vec::new();
        for o in outputs {
            if let Output::Twilio(TwilioCommand::Mark(name)) = o {
                self.now += Duration::from_millis(100);
                out.extend(self.input(Input::Twilio(TwilioEvent::Mark {
                    name: name.to_string(),
                })));
            }
        }
        out
    }
}

fn media(outputs: &[Output]) -> Vec<[u8; 160]> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Twilio(TwilioCommand::Media(f)) => Some(*f),
            _ => None,
        })
        .collect()
}

fn tool_results(outputs: &[Output]) -> Vec<(String, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Llm(LlmCommand::ToolResult {
                call_id, output, ..
            }) => Some((call_id.clone(), output.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn digits_become_tones_and_are_answered_once_played() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    let out = h.tool("r1", "c1", SEND_DIGITS_TOOL, r#"{"digits":"12"}"#);
    // 2 keys × (100 ms tone + 100 ms gap) = 20 frames, no RunTool.
    assert_eq!(media(&out).len(), 20);
    assert!(!out.iter().any(|o| matches!(o, Output::RunTool { .. })));
    assert!(out.contains(&Output::Event(CallEvent::DigitsSent {
        digits: "12".into()
    })));
    let mut expected = Vec::new();
    dtmf::tones_ulaw("12", &mut expected).unwrap();
    assert_eq!(media(&out).concat(), expected);
    let done = h.done("r1");
    assert!(
        tool_results(&done).is_empty(),
        "not answered before the tones played"
    );
    // The menu talks over the tones: nothing is cleared.
    let speech = h.llm(E::SpeechStarted {
        audio_start_ms: None,
    });
    assert!(!speech.contains(&Output::Twilio(TwilioCommand::Clear)));
    let played = h.play(&out);
    let results = tool_results(&played);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "c1");
    assert!(
        results[0].1.contains(r#""pressed":"12""#),
        "{}",
        results[0].1
    );
}

#[test]
fn bad_digits_get_a_precise_error_and_no_audio() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    let out = h.tool("r1", "c1", SEND_DIGITS_TOOL, r#"{"digits":"12x"}"#);
    assert!(media(&out).is_empty());
    let done = h.done("r1");
    let results = tool_results(&done);
    assert_eq!(results.len(), 1);
    assert!(
        results[0].1.contains("not a keypad key"),
        "{}",
        results[0].1
    );
    let out = h.tool("r2", "c2", SEND_DIGITS_TOOL, "not json");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::ProtocolError {
            kind: "send_digits_bad_arguments",
            ..
        })
    )));
}

fn agent_speaks(h: &mut H, response: &str, item: &str, ms: usize) -> Vec<Output> {
    h.llm(E::AudioDelta {
        response_id: response.into(),
        item_id: item.into(),
        audio: STANDARD.encode(vec![0x55; ms * 8]),
    })
}

#[test]
fn cold_transfer_waits_until_the_handover_line_was_heard() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    let spoken = agent_speaks(&mut h, "r1", "i1", 600);
    let out = h.tool("r1", "t1", TRANSFER_CALL_TOOL, r#"{"destination":"sales"}"#);
    assert!(
        out.iter().any(|o| matches!(o, Output::RunTool { .. })),
        "validated by its tool"
    );
    let out = h.input(Input::ToolFinished {
        call_id: "t1".into(),
        output: r#"{"ok":true,"result":{"destination":"sales","status":"transferring"}}"#.into(),
    });
    assert!(tool_results(&out).is_empty());
    let mut out = h.done("r1");
    out.extend(h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    }));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Transfer { .. })),
        "not before the line is heard"
    );
    let mut all = spoken.clone();
    all.extend(out);
    let played = h.play(&all);
    assert!(
        played.contains(&Output::Transfer {
            destination: "sales".into()
        }),
        "{played:?}"
    );
    assert!(creates_none(&played), "no response after acceptance");
    let out = h.input(Input::TransferFinished { result: Ok(()) });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Transfer {
            outcome: "redirected",
            ..
        })
    )));
    let out = h.input(Input::Twilio(TwilioEvent::Stop));
    assert_eq!(
        out.last(),
        Some(&Output::Hangup(EndReason::Transferred {
            destination: "sales".into()
        }))
    );
}

fn creates_none(outputs: &[Output]) -> bool {
    !outputs
        .iter()
        .any(|o| matches!(o, Output::Llm(LlmCommand::CreateResponse { .. })))
}

#[test]
fn a_silent_transfer_asks_for_a_handover_line_and_a_refused_redirect_goes_back_to_the_agent() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    h.tool("r1", "t1", TRANSFER_CALL_TOOL, r#"{"destination":"sales"}"#);
    h.done("r1");
    let out = h.input(Input::ToolFinished {
        call_id: "t1".into(),
        output: r#"{"ok":true,"result":{"destination":"sales"}}"#.into(),
    });
    assert_eq!(tool_results(&out).len(), 1);
    assert!(out.contains(&Output::Llm(LlmCommand::CreateResponse {
        instructions: Some(HANDOVER.into())
    })));
    h.llm(E::ResponseCreated {
        response_id: "r2".into(),
    });
    let spoken = agent_speaks(&mut h, "r2", "i2", 400);
    let mut out = spoken;
    out.extend(h.done("r2"));
    let played = h.play(&out);
    assert!(played.contains(&Output::Transfer {
        destination: "sales".into()
    }));
    let out = h.input(Input::TransferFinished {
        result: Err("HTTP 400".into()),
    });
    assert!(out.contains(&Output::Llm(LlmCommand::CreateResponse {
        instructions: Some(TRANSFER_FAILED.into())
    })));
    assert!(!h.s.is_ended(), "the caller stays with the agent");
}

#[test]
fn a_refused_destination_is_spoken_about_like_any_tool_error() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    h.tool("r1", "t1", TRANSFER_CALL_TOOL, r#"{"destination":"sales"}"#);
    h.done("r1");
    let out = h.input(Input::ToolFinished {
        call_id: "t1".into(),
        output: r#"{"ok":false,"error":{"code":"failed","message":"sales is closed now"}}"#.into(),
    });
    let results = tool_results(&out);
    assert_eq!(results.len(), 1);
    assert!(results[0].1.contains("closed"));
    assert!(!creates_none(&out), "the model answers");
}

#[test]
fn a_stream_that_ends_before_the_redirect_is_answered_waits_for_the_answer() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    h.tool("r1", "t1", TRANSFER_CALL_TOOL, r#"{"destination":"sales"}"#);
    h.input(Input::ToolFinished {
        call_id: "t1".into(),
        output: r#"{"ok":true,"result":{"destination":"sales"}}"#.into(),
    });
    h.done("r1");
    h.llm(E::ResponseCreated {
        response_id: "r2".into(),
    });
    let mut out = agent_speaks(&mut h, "r2", "i2", 200);
    out.extend(h.done("r2"));
    let played = h.play(&out);
    assert!(played.contains(&Output::Transfer {
        destination: "sales".into()
    }));
    // Twilio runs the new TwiML and stops the stream before its REST answer arrives.
    let out = h.input(Input::Twilio(TwilioEvent::Stop));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Hangup(_))),
        "{out:?}"
    );
    let out = h.input(Input::TransferFinished { result: Ok(()) });
    assert_eq!(
        out.last(),
        Some(&Output::Hangup(EndReason::Transferred {
            destination: "sales".into()
        }))
    );
}

#[test]
fn warm_transfer_puts_the_caller_on_hold_after_the_line_and_the_stream_ends_on_hold() {
    let mut h = H::ready();
    h.llm(E::ResponseCreated {
        response_id: "r1".into(),
    });
    let spoken = agent_speaks(&mut h, "r1", "i1", 400);
    h.tool(
        "r1",
        "t1",
        TRANSFER_CALL_TOOL,
        r#"{"destination":"sales","mode":"warm","summary":"Ann, billing"}"#,
    );
    let out = h.input(Input::ToolFinished {
        call_id: "t1".into(),
        output: r#"{"ok":true,"result":{"destination":"sales","status":"transferring","mode":"warm","summary":"Ann, billing"}}"#.into(),
    });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Transfer { outcome: "started", detail: Some(d), .. }) if d == "warm"
    )));
    let mut out = h.done("r1");
    out.extend(h.llm(E::AudioDone {
        response_id: "r1".into(),
        item_id: "i1".into(),
    }));
    let mut all = spoken.clone();
    all.extend(out);
    let played = h.play(&all);
    assert!(
        played.contains(&Output::WarmTransfer {
            destination: "sales".into(),
            summary: "Ann, billing".into(),
        }),
        "{played:?}"
    );
    assert!(!played.iter().any(|o| matches!(o, Output::Transfer { .. })));
    let out = h.input(Input::TransferFinished { result: Ok(()) });
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Transfer {
            outcome: "on_hold",
            ..
        })
    )));
    let out = h.input(Input::Twilio(TwilioEvent::Stop));
    assert_eq!(
        out.last(),
        Some(&Output::Hangup(EndReason::OnHold {
            destination: "sales".into()
        }))
    );
}

#[test]
fn a_supervisor_warm_transfer_asks_for_the_hold_line() {
    let mut h = H::ready();
    let out = h.input(Input::Operator(OperatorCommand::WarmTransfer {
        destination: "sales".into(),
        summary: "Bob wants a refund".into(),
    }));
    let asked = out.iter().any(|o| {
        matches!(o, Output::Llm(LlmCommand::CreateResponse { instructions: Some(i) }) if i.contains("hold music"))
    });
    assert!(asked, "{out:?}");
}

#[test]
fn a_resumed_stream_tells_the_model_and_speaks_first() {
    let now = Instant::now();
    let mut s = CallSession::new(
        SessionParams {
            speak_first: false,
            resume_note: Some("back: busy".into()),
            ..SessionParams::default()
        },
        now,
    );
    s.handle(
        now,
        Input::Llm(E::SessionUpdated {
            input_format: Some("audio/pcmu".into()),
            output_format: Some("audio/pcmu".into()),
        }),
    );
    let out: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    let note = out
        .iter()
        .position(|o| matches!(o, Output::Llm(LlmCommand::SystemNote(n)) if n == "back: busy"));
    let create = out
        .iter()
        .position(|o| matches!(o, Output::Llm(LlmCommand::CreateResponse { .. })));
    assert!(
        note.is_some() && create.is_some() && note < create,
        "{out:?}"
    );
}

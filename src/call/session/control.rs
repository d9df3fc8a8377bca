//! Call control inside the session: keypad tones out (`send_digits`) and the cold and warm
//! transfers (`transfer_call`).
//!
//! Digits become μ-law tones queued like agent audio (an item of their own, marked like speech), so
//! the tool answers only once Twilio acknowledged the last tone as played; a menu talking over them
//! does not clear them. A transfer is validated by its tool (destination, business hours); once
//! accepted the session makes sure the caller heard a handover line — the one the model spoke before
//! calling the tool, or one it asks for — waits until every queued frame is acknowledged, then asks
//! the driver for the redirect ([`Output::Transfer`], or [`Output::WarmTransfer`] with the summary
//! the destination hears; the caller then waits on hold and this stream ends with
//! [`EndReason::OnHold`]). It owns no socket and no clock, like the rest
//! of the session; it must not know destinations' numbers (the driver maps the name).

use std::time::Instant;

use serde_json::{Value, json};

use super::{CallEvent, CallSession, EndReason, Ending, ItemAudio, OperatorCommand, Output};
use crate::audio::dtmf;
use crate::realtime::{LlmCommand, SEND_DIGITS_TOOL, TRANSFER_CALL_TOOL};

/// How a supervisor's instruction reaches the model (the driver keeps it out of the DTMF log).
pub const OPERATOR_NOTE_PREFIX: &str =
    "Instruction from a supervisor (follow it, do not mention it): ";
const FAREWELL_OPERATOR: &str = "The call has to end now. Say a brief, polite goodbye to the caller \
     in one short sentence.";
/// Instructions after a redirect Twilio refused, when the tool was already answered.
const TRANSFER_FAILED: &str = "The transfer could not be placed. Apologise to the caller, and \
     offer to help further or take a message.";
/// Instructions for the handover line when the model called `transfer_call` without speaking.
const HANDOVER: &str = "Tell the caller in one short sentence that you are transferring them to a \
     colleague now and that they should stay on the line. Do not call tools.";
/// The same for a warm transfer: the caller waits on hold while the colleague is briefed.
const HANDOVER_WARM: &str = "Tell the caller in one short sentence that you are bringing in a \
     colleague, that they will hear hold music for a moment, and that you will be back with them \
     if the colleague is not available. Do not call tools.";

#[derive(Debug, Default)]
pub(super) struct Control {
    /// Digits queued as tones, waiting to be played.
    dtmf: Vec<PendingDigits>,
    transfer: Option<Transfer>,
    /// The media stream ended while the redirect's answer was awaited.
    stream_ended: bool,
}

#[derive(Debug)]
struct PendingDigits {
    call_id: String,
    item_id: std::sync::Arc<str>,
    keys: String,
}

#[derive(Debug)]
struct Transfer {
    call_id: String,
    /// The response that called the tool.
    response_id: String,
    /// `Some(spoke)` once that response is done.
    response_done: Option<bool>,
    /// A warm transfer's summary for the destination (`None`: cold).
    summary: Option<String>,
    stage: Stage,
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// The tool is checking the destination.
    Resolving,
    /// Accepted; waiting for the calling response to finish.
    Accepted { destination: String },
    /// A handover line was asked for; waiting for that response.
    AwaitingHandover { destination: String },
    /// Waiting for every queued frame to be acknowledged as played.
    Draining { destination: String },
    /// The redirect is being requested.
    Redirecting { destination: String },
    /// Twilio runs the transfer; the stream is about to end.
    Redirected { destination: String },
}

impl Control {
    pub(super) fn is_transfer_call(&self, call_id: &str) -> bool {
        self.transfer
            .as_ref()
            .is_some_and(|t| t.call_id == call_id && t.stage == Stage::Resolving)
    }

    /// After acceptance the session speaks only the handover line: no response for other results.
    pub(super) fn transfer_holds_responses(&self) -> bool {
        self.transfer
            .as_ref()
            .is_some_and(|t| t.stage != Stage::Resolving)
    }

    /// True (and remembered) when the stream ends while the redirect is being requested: the
    /// redirect's answer decides whether that was the transfer or the caller hanging up.
    pub(super) fn hold_stream_end(&mut self) -> bool {
        let redirecting = self
            .transfer
            .as_ref()
            .is_some_and(|t| matches!(t.stage, Stage::Redirecting { .. }));
        self.stream_ended |= redirecting;
        redirecting
    }

    /// Why the stream ends once Twilio runs the transfer: handed over (cold) or on hold (warm).
    pub(super) fn redirected_reason(&self) -> Option<EndReason> {
        let transfer = self.transfer.as_ref()?;
        let Stage::Redirected { destination } = &transfer.stage else {
            return None;
        };
        let destination = destination.clone();
        Some(match transfer.summary {
            Some(_) => EndReason::OnHold { destination },
            None => EndReason::Transferred { destination },
        })
    }
}

fn error_output(code: &str, message: &str) -> String {
    json!({ "ok": false, "error": { "code": code, "message": message } }).to_string()
}

impl CallSession {
    /// Takes over the control tools. Returns true when the call was fully handled here; false
    /// when it should also run as a normal tool (`transfer_call`'s validation).
    pub(super) fn on_control_tool(
        &mut self,
        now: Instant,
        response_id: &str,
        call_id: &str,
        name: &str,
        arguments: &str,
    ) -> bool {
        match name {
            SEND_DIGITS_TOOL => {
                self.send_digits(now, call_id, arguments);
                true
            }
            TRANSFER_CALL_TOOL => {
                if self.control.transfer.is_some() || self.ending.is_some() {
                    self.answer_session_tool(
                        call_id,
                        name,
                        error_output(
                            "busy",
                            "A transfer or the end of the call is already under way.",
                        ),
                    );
                    return true;
                }
                self.control.transfer = Some(Transfer {
                    call_id: call_id.to_owned(),
                    response_id: response_id.to_owned(),
                    response_done: None,
                    summary: None,
                    stage: Stage::Resolving,
                });
                false
            }
            _ => false,
        }
    }

    /// Queues an answer for a tool the session carries out itself.
    fn answer_session_tool(&mut self, call_id: &str, name: &str, output: String) {
        self.tools_running.remove(call_id);
        self.tool_results
            .push((call_id.to_owned(), name.to_owned(), output));
        if self.tools_running.is_empty() {
            self.filler_due = None;
        }
        self.answer_tools_if_ready();
    }

    fn send_digits(&mut self, now: Instant, call_id: &str, arguments: &str) {
        let digits = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| v["digits"].as_str().map(str::to_owned));
        let Some(digits) = digits else {
            self.protocol_error(
                "send_digits_bad_arguments",
                arguments.chars().take(80).collect::<String>(),
            );
            self.answer_session_tool(
                call_id,
                SEND_DIGITS_TOOL,
                error_output(
                    "invalid_arguments",
                    "Pass the keys to press as {\"digits\": \"...\"}.",
                ),
            );
            return;
        };
        let keys = match dtmf::parse(&digits) {
            Ok(keys) => keys,
            Err(e) => {
                self.answer_session_tool(
                    call_id,
                    SEND_DIGITS_TOOL,
                    error_output("invalid_arguments", &e.to_string()),
                );
                return;
            }
        };
        let mut tones = Vec::with_capacity(dtmf::duration_ms(&keys) * 8);
        if let Err(e) = dtmf::tones_ulaw(&keys, &mut tones) {
            self.answer_session_tool(
                call_id,
                SEND_DIGITS_TOOL,
                error_output("invalid_arguments", &e.to_string()),
            );
            return;
        }
        self.last_activity = now;
        self.tools_running
            .insert(call_id.to_owned(), SEND_DIGITS_TOOL.to_owned());
        // Whatever the agent said before is complete; the tones are an item of their own.
        self.finish_newest_item();
        let item_id: std::sync::Arc<str> = format!("dtmf-{call_id}").into();
        self.items.push_back(ItemAudio {
            item_id: item_id.clone(),
            started_at_ts: None,
            sent_bytes: 0,
            played_ms: 0,
            complete: false,
            frames_since_mark: 0,
            dtmf: true,
        });
        self.queue_agent_ulaw(&tones);
        self.finish_newest_item();
        self.start_head_item_clock();
        self.event(CallEvent::DigitsSent {
            digits: keys.clone(),
        });
        self.control.dtmf.push(PendingDigits {
            call_id: call_id.to_owned(),
            item_id,
            keys,
        });
    }

    /// Answers `send_digits` calls whose tones have all been played.
    pub(super) fn settle_dtmf(&mut self) {
        if self.control.dtmf.is_empty() {
            return;
        }
        let played: Vec<PendingDigits> = {
            let items = &self.items;
            let (played, waiting) = std::mem::take(&mut self.control.dtmf)
                .into_iter()
                .partition(|p| !items.iter().any(|i| i.item_id == p.item_id));
            self.control.dtmf = waiting;
            played
        };
        for pending in played {
            let output = json!({ "ok": true, "result": { "pressed": pending.keys } }).to_string();
            self.answer_session_tool(&pending.call_id, SEND_DIGITS_TOOL, output);
        }
    }

    /// A barge-in is about to clear the queue: tones not yet played will not be.
    pub(super) fn interrupt_dtmf(&mut self) {
        for pending in std::mem::take(&mut self.control.dtmf) {
            self.answer_session_tool(
                &pending.call_id,
                SEND_DIGITS_TOOL,
                error_output(
                    "interrupted",
                    "The caller spoke while the keys were being pressed; they may not all have been sent.",
                ),
            );
        }
    }

    pub(super) fn on_transfer_resolved(&mut self, now: Instant, call_id: String, output: String) {
        self.tools_running.remove(&call_id);
        if self.tools_running.is_empty() {
            self.filler_due = None;
        }
        self.last_activity = now;
        let result = serde_json::from_str::<Value>(&output)
            .ok()
            .filter(|v| v["ok"] == true)
            .map(|v| v["result"].clone());
        let accepted = result
            .as_ref()
            .and_then(|r| r["destination"].as_str().map(str::to_owned));
        let summary = result
            .as_ref()
            .filter(|r| r["mode"] == "warm")
            .and_then(|r| r["summary"].as_str().map(str::to_owned));
        let Some(destination) = accepted else {
            // Refused (unknown destination, closed now): the model speaks about it.
            self.control.transfer = None;
            self.tool_results
                .push((call_id, TRANSFER_CALL_TOOL.to_owned(), output));
            self.answer_tools_if_ready();
            return;
        };
        self.event(CallEvent::Transfer {
            destination: destination.clone(),
            outcome: "started",
            detail: summary.is_some().then(|| "warm".to_owned()),
        });
        if let Some(transfer) = self.control.transfer.as_mut() {
            transfer.stage = Stage::Accepted { destination };
            transfer.summary = summary;
        }
    }

    pub(super) fn transfer_response_done(&mut self, response_id: &str, spoke: bool) {
        let Some(transfer) = self.control.transfer.as_mut() else {
            return;
        };
        if transfer.response_id == response_id {
            transfer.response_done = Some(spoke);
        }
        if let Stage::AwaitingHandover { destination } = &transfer.stage {
            transfer.stage = Stage::Draining {
                destination: destination.clone(),
            };
        }
    }

    /// Moves the transfer on once its conditions hold; called after every input.
    pub(super) fn advance_transfer(&mut self) {
        if self.phase == super::Phase::Ended {
            return;
        }
        let Some(transfer) = self.control.transfer.as_mut() else {
            return;
        };
        match (&transfer.stage, transfer.response_done) {
            (Stage::Accepted { destination }, Some(spoke)) => {
                let destination = destination.clone();
                if spoke {
                    // The model said its handover line before calling the tool.
                    transfer.stage = Stage::Draining { destination };
                } else {
                    let call_id = transfer.call_id.clone();
                    let warm = transfer.summary.is_some();
                    transfer.stage = Stage::AwaitingHandover { destination };
                    // A supervisor's transfer has no tool call to answer.
                    if !call_id.is_empty() {
                        self.emit(Output::Llm(LlmCommand::ToolResult {
                            call_id,
                            name: TRANSFER_CALL_TOOL.into(),
                            output: r#"{"ok":true,"status":"transferring"}"#.into(),
                        }));
                    }
                    let handover = if warm { HANDOVER_WARM } else { HANDOVER };
                    self.emit(Output::Llm(LlmCommand::CreateResponse {
                        instructions: Some(handover.to_owned()),
                    }));
                }
                self.advance_transfer();
            }
            (Stage::Draining { destination }, _)
                if self.items.is_empty() && self.carry.is_empty() =>
            {
                let destination = destination.clone();
                transfer.stage = Stage::Redirecting {
                    destination: destination.clone(),
                };
                let output = match transfer.summary.clone() {
                    Some(summary) => Output::WarmTransfer {
                        destination,
                        summary,
                    },
                    None => Output::Transfer { destination },
                };
                self.emit(output);
            }
            _ => {}
        }
    }

    pub(super) fn on_operator(&mut self, now: Instant, command: OperatorCommand) {
        match command {
            OperatorCommand::HangUp { goodbye: false } => {
                self.event(CallEvent::Operator {
                    action: "hang_up",
                    detail: "at once".into(),
                });
                self.hang_up(EndReason::OperatorEnded);
            }
            OperatorCommand::HangUp { goodbye: true } => {
                if self.ending.is_some() {
                    return;
                }
                self.event(CallEvent::Operator {
                    action: "hang_up",
                    detail: "after a goodbye".into(),
                });
                self.begin_ending(now, EndReason::OperatorEnded);
                self.ending = Some(Ending::NeedFarewell {
                    instructions: FAREWELL_OPERATOR,
                });
            }
            OperatorCommand::Inject { instruction } => {
                self.event(CallEvent::Operator {
                    action: "inject",
                    detail: instruction.clone(),
                });
                self.emit(Output::Llm(LlmCommand::SystemNote(format!(
                    "{OPERATOR_NOTE_PREFIX}{instruction}"
                ))));
            }
            OperatorCommand::Transfer { destination } => {
                self.operator_transfer(destination, None);
            }
            OperatorCommand::WarmTransfer {
                destination,
                summary,
            } => {
                self.operator_transfer(destination, Some(summary));
            }
        }
    }

    fn operator_transfer(&mut self, destination: String, summary: Option<String>) {
        if self.control.transfer.is_some() || self.ending.is_some() {
            self.event(CallEvent::Operator {
                action: "transfer",
                detail: "ignored: a transfer or the end of the call is under way".into(),
            });
            return;
        }
        self.event(CallEvent::Operator {
            action: "transfer",
            detail: destination.clone(),
        });
        self.event(CallEvent::Transfer {
            destination: destination.clone(),
            outcome: "started",
            detail: Some(match summary {
                Some(_) => "warm, by a supervisor".into(),
                None => "by a supervisor".into(),
            }),
        });
        // Wait for the response in progress (if any); then a handover line unless it spoke.
        let (response_id, response_done) = match self.active_response.clone() {
            Some(id) => (id, None),
            None => (String::new(), Some(false)),
        };
        self.control.transfer = Some(Transfer {
            call_id: String::new(),
            response_id,
            response_done,
            summary,
            stage: Stage::Accepted { destination },
        });
    }

    pub(super) fn on_transfer_finished(&mut self, now: Instant, result: Result<(), String>) {
        let Some(transfer) = self.control.transfer.as_mut() else {
            return;
        };
        let Stage::Redirecting { destination } = &transfer.stage else {
            return;
        };
        let destination = destination.clone();
        let stream_ended = std::mem::take(&mut self.control.stream_ended);
        match result {
            Ok(()) => {
                transfer.stage = Stage::Redirected {
                    destination: destination.clone(),
                };
                let warm = transfer.summary.is_some();
                self.event(CallEvent::Transfer {
                    destination: destination.clone(),
                    outcome: if warm { "on_hold" } else { "redirected" },
                    detail: None,
                });
                let reason = if warm {
                    EndReason::OnHold { destination }
                } else {
                    EndReason::Transferred { destination }
                };
                if stream_ended {
                    self.hang_up(reason);
                } else {
                    // Twilio ends the stream itself; if its `stop` never comes, end anyway.
                    self.end_reason = Some(reason.clone());
                    self.ending_deadline = Some(now + self.params.farewell_timeout);
                    self.event(CallEvent::Ending { reason });
                }
            }
            Err(detail) if stream_ended => {
                self.control.transfer = None;
                self.event(CallEvent::Transfer {
                    destination,
                    outcome: "failed",
                    detail: Some(detail),
                });
                self.hang_up(EndReason::CallerHungUp);
            }
            Err(detail) => {
                let call_id = transfer.call_id.clone();
                let answered = transfer.response_done == Some(false);
                self.control.transfer = None;
                self.event(CallEvent::Transfer {
                    destination,
                    outcome: "failed",
                    detail: Some(detail),
                });
                let failure = error_output(
                    "transfer_failed",
                    "The transfer could not be placed. Apologise, and offer to help further or take a message.",
                );
                if answered || call_id.is_empty() {
                    // The tool was answered already ("transferring"): say so in the request.
                    self.emit(Output::Llm(LlmCommand::CreateResponse {
                        instructions: Some(TRANSFER_FAILED.to_owned()),
                    }));
                } else {
                    self.emit(Output::Llm(LlmCommand::ToolResult {
                        call_id,
                        name: TRANSFER_CALL_TOOL.into(),
                        output: failure,
                    }));
                    self.emit(Output::Llm(LlmCommand::CreateResponse {
                        instructions: None,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The call session: every piece of one call's state, as a sans-IO state machine.
//!
//! [`CallSession::handle`] takes one [`Input`] (a Twilio event, a provider event, a finished tool, a
//! timer tick) with the current time; [`CallSession::poll_output`] then yields the [`Output`]s it
//! produced (frames for Twilio, commands for the provider, tools to run, events to log, hang-up), and
//! [`CallSession::poll_timeout`] says when it next wants a [`Input::Tick`]. It owns no socket, no
//! clock, no task and no lock, so every behaviour is tested by feeding inputs. It must not do IO.
//!
//! Barge-in follows protocols.md §6: `clear` first, a new mark generation, a truncate at what the
//! caller heard — between the last acknowledged mark and the next unacknowledged one, refined by the
//! Twilio stream clock — and every late delta of the interrupted response dropped. Providers without
//! speech events or truncate (Gemini Live) report [`LlmEvent::Interrupted`] instead: the same clear,
//! no truncate.
//!
//! Audio: for μ-law providers the Twilio payload passes through untouched. For PCM providers the
//! session owns the call's [`Transcoder`] ([`AudioStage::Transcode`]), because every decision that
//! touches its state is made here: the output side is reset exactly when `clear` goes out, flushed
//! exactly when an item's audio ends, and marks and truncation stay counted in the μ-law
//! milliseconds Twilio plays — so all of it is tested by feeding inputs, like the rest.
//!
//! A provider that hands out resumption handles (Gemini Live) may close the socket (after `goAway`)
//! without ending the call: the session asks for [`Output::ReconnectProvider`] with the latest
//! handle, holds caller audio meanwhile, and carries on when the new session is confirmed — no
//! `clear`, no greeting, nothing the caller would notice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use super::marks::MarkName;
use super::marks::{MarkEcho, MarkLedger};
use crate::audio::Transcoder;
use crate::realtime::{LlmCommand, LlmEvent, ResponseStatus, Speaker};
use crate::twilio::stream::{FRAME_BYTES, TwilioEvent, ULAW_BYTES_PER_MS};

pub use crate::realtime::END_CALL_TOOL;
pub use control::OPERATOR_NOTE_PREFIX;
/// μ-law silence, used to pad the last partial frame of an item.
const ULAW_SILENCE: u8 = 0xFF;
/// A mark goes out at least every this many frames (100 ms), so a barge-in knows the heard position
/// to within 100 ms from acknowledgements alone.
const MARK_EVERY_FRAMES: u32 = 5;
/// Caller audio held while the provider session is being confirmed (1 s of 20 ms frames).
const MAX_AUDIO_BEFORE_READY: usize = 50;
/// Reconnections tried in a row without the provider confirming a resumed session.
const MAX_RESUME_ATTEMPTS: u32 = 3;

/// Per-call behaviour knobs.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub max_duration: Duration,
    pub silence_timeout: Duration,
    /// How long the provider has to confirm the session after the call starts.
    pub session_ready_timeout: Duration,
    /// Upper bound on the wait for a farewell to be spoken and played before hanging up.
    pub farewell_timeout: Duration,
    /// Ask the model to speak as soon as the session is ready (greeting).
    pub speak_first: bool,
    /// The provider cancels its response by itself when the caller starts speaking.
    pub provider_cancels_on_speech: bool,
    /// The provider supports truncating an answer at what the caller heard.
    pub provider_truncates: bool,
    /// The provider answers tool results by itself (no response request after them).
    pub provider_continues_after_tools: bool,
    /// The audio format names the provider must echo back for input and output.
    pub expected_input_format: String,
    pub expected_output_format: String,
    /// A tool batch still running after this long gets a short spoken filler ("one moment…") so
    /// the caller does not sit in silence; `None` turns fillers off.
    pub filler_after: Option<Duration>,
    /// This stream takes the caller back after a warm transfer did not go through: the note tells
    /// the model what happened, and it speaks first (whatever `speak_first` says).
    pub resume_note: Option<String>,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(15 * 60),
            silence_timeout: Duration::from_secs(30),
            session_ready_timeout: Duration::from_secs(10),
            farewell_timeout: Duration::from_secs(10),
            speak_first: true,
            provider_cancels_on_speech: true,
            provider_truncates: true,
            provider_continues_after_tools: false,
            expected_input_format: "audio/pcmu".into(),
            expected_output_format: "audio/pcmu".into(),
            filler_after: Some(Duration::from_millis(700)),
            resume_note: None,
        }
    }
}

/// How caller and agent audio get between Twilio (μ-law 8 kHz) and the provider.
#[derive(Debug)]
pub enum AudioStage {
    /// The provider speaks μ-law: payloads pass through undecoded.
    Passthrough,
    /// The provider speaks PCM16: the call's one transcoder, for its whole life.
    Transcode(Box<Transcoder>),
}

/// Something that happened to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Twilio(TwilioEvent),
    /// The Twilio socket closed (with or without `stop`).
    TwilioClosed,
    Llm(LlmEvent),
    /// The provider socket closed or failed.
    LlmClosed {
        reason: String,
    },
    /// A tool call finished; `output` is the JSON document for the model.
    ToolFinished {
        call_id: String,
        output: String,
    },
    /// A timer the session asked for (see [`CallSession::poll_timeout`]) is due.
    Tick,
    /// The redirect asked for by [`Output::Transfer`] was carried out (`Ok`) or refused.
    TransferFinished {
        result: Result<(), String>,
    },
    /// A supervisor's command from the live-calls API.
    Operator(OperatorCommand),
}

/// What a supervisor can do to a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCommand {
    /// End the call: after a short goodbye, or at once.
    HangUp { goodbye: bool },
    /// Add an instruction the model follows from its next turn on.
    Inject { instruction: String },
    /// Cold-transfer the caller to the agent's destination of that name.
    Transfer { destination: String },
    /// Warm-transfer the caller: the destination hears `summary` and accepts before the caller
    /// is connected.
    WarmTransfer {
        destination: String,
        summary: String,
    },
}

/// A frame or control message for Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioCommand {
    /// One 20 ms frame of μ-law audio.
    Media([u8; FRAME_BYTES]),
    /// Written to the wire as `{generation}:{cum_ms}:{item_id}` (see [`MarkName`]).
    Mark(MarkName),
    Clear,
}

/// Why the call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    AgentEnded,
    MaxDuration,
    Silence,
    ProviderClosed(String),
    ProviderRejectedSession(String),
    FormatRejected {
        input: String,
        output: String,
    },
    SessionTimeout,
    /// The caller was handed to `destination` (the call goes on without the bridge).
    Transferred {
        destination: String,
    },
    /// The caller is on hold in a warm transfer's conference while `destination` is rung: this
    /// stream is over, the call is not (it is connected, or comes back on a new stream).
    OnHold {
        destination: String,
    },
    /// A supervisor ended the call.
    OperatorEnded,
    /// Twilio stopped taking the call's messages (a media client that does not read).
    TwilioStalled,
    /// The provider stopped taking the call's messages.
    ProviderStalled,
}

impl EndReason {
    /// Stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::AgentEnded => "agent_ended",
            EndReason::MaxDuration => "max_duration",
            EndReason::Silence => "silence",
            EndReason::ProviderClosed(_) => "provider_closed",
            EndReason::ProviderRejectedSession(_) => "provider_rejected_session",
            EndReason::FormatRejected { .. } => "format_rejected",
            EndReason::SessionTimeout => "session_timeout",
            EndReason::Transferred { .. } => "transferred",
            EndReason::OnHold { .. } => "warm_transfer_hold",
            EndReason::OperatorEnded => "operator_ended",
            EndReason::TwilioStalled => "twilio_stalled",
            EndReason::ProviderStalled => "provider_stalled",
        }
    }
}

/// Things worth logging or counting; they change nothing by themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    SessionReady,
    Transcript {
        speaker: Speaker,
        text: String,
    },
    /// The caller spoke over the agent. `truncated_at_ms` is `None` when nothing was heard.
    BargeIn {
        item_id: String,
        truncated_at_ms: Option<u64>,
    },
    ToolRequested {
        call_id: String,
        name: String,
    },
    /// A late audio delta of an interrupted response was dropped.
    LateDeltaDropped,
    /// A slow tool earned a spoken holding phrase.
    FillerRequested,
    /// Bad input from a peer; `kind` is a metrics label.
    ProtocolError {
        kind: &'static str,
        detail: String,
    },
    ProviderError {
        code: String,
        message: String,
    },
    /// The provider connection closed and a resumed session is being opened.
    ProviderResuming {
        attempt: u32,
    },
    /// The resumed provider session is confirmed.
    ProviderResumed,
    /// A supervisor's command was carried out (`action`: `hang_up`, `inject`, `transfer`).
    Operator {
        action: &'static str,
        detail: String,
    },
    /// Keypad tones for `digits` were queued into the media stream (`send_digits`).
    DigitsSent {
        digits: String,
    },
    /// A transfer to `destination` reached `outcome` (`started`, `redirected`, `failed`).
    Transfer {
        destination: String,
        outcome: &'static str,
        detail: Option<String>,
    },
    Ending {
        reason: EndReason,
    },
}

/// What the session wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Twilio(TwilioCommand),
    Llm(LlmCommand),
    RunTool {
        call_id: String,
        name: String,
        arguments: String,
    },
    Event(CallEvent),
    /// The provider socket is gone but the session can be resumed: open a new one and set it up
    /// with this handle. Commands emitted afterwards are for the new socket.
    ReconnectProvider {
        handle: String,
    },
    /// Redirect the live call to the transfer destination named `destination` (the handover line
    /// has played); answer with [`Input::TransferFinished`].
    Transfer {
        destination: String,
    },
    /// Warm transfer: ring `destination` with `summary` as its whisper and put the caller on hold
    /// in a conference (the handover line has played); answer with [`Input::TransferFinished`].
    WarmTransfer {
        destination: String,
        summary: String,
    },
    /// End the call: close both sockets. Always the last output.
    Hangup(EndReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingSession,
    Active,
    /// Reconnecting to the provider with a resumption handle.
    Resuming,
    Ended,
}

/// One assistant audio item queued at or playing on Twilio.
#[derive(Debug)]
struct ItemAudio {
    /// Shared with the provider's delta events and the mark ledger: no copy per delta or mark.
    item_id: Arc<str>,
    /// Stream time (Twilio media clock, ms) when this item started playing; `None` while an earlier
    /// item is still ahead of it.
    started_at_ts: Option<u64>,
    /// Real audio bytes of this item sent to Twilio (padding excluded).
    sent_bytes: u64,
    /// Milliseconds acknowledged as played by marks.
    played_ms: u64,
    /// No more audio will come for this item.
    complete: bool,
    frames_since_mark: u32,
    /// Keypad tones made by the session (`send_digits`), not the model's speech.
    dtmf: bool,
}

impl ItemAudio {
    fn sent_ms(&self) -> u64 {
        self.sent_bytes / ULAW_BYTES_PER_MS as u64
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// `end_call` was called in this response: wait for it to finish.
    AfterResponse {
        response_id: String,
        call_id: String,
    },
    /// Ask for a farewell as soon as no response is active.
    NeedFarewell { instructions: &'static str },
    /// A farewell was requested: wait for the next response to finish.
    AwaitingFarewell,
    /// Wait for everything queued to play, then hang up.
    Draining,
}

const FILLER: &str = "Say only a very short holding phrase, such as \"One moment while I check \
     that.\", in the conversation's language. Do not answer the question and do not call tools.";
const FAREWELL_AFTER_END_CALL: &str =
    "The call is ending now. Say a brief, warm goodbye to the caller in one short sentence.";
const FAREWELL_MAX_DURATION: &str = "The call has reached its time limit. Tell the caller politely \
     that you have to end the call now, and say goodbye in one or two short sentences.";
const FAREWELL_SILENCE: &str = "The caller has been silent for a while. Say that you will end the \
     call now since you cannot hear them, and say goodbye in one short sentence.";

/// The state of one call.
#[derive(Debug)]
pub struct CallSession {
    params: SessionParams,
    phase: Phase,
    started_at: Instant,
    /// Latest Twilio media timestamp (ms since stream start): the call's playback clock.
    latest_media_ts: u64,
    audio_before_ready: VecDeque<String>,
    marks: MarkLedger,
    /// Items queued or playing, oldest (the one the caller hears) first.
    items: VecDeque<ItemAudio>,
    /// Bytes of the newest item not yet filling a whole frame.
    carry: Vec<u8>,
    /// Scratch buffer for decoding one delta; kept to avoid an allocation per delta.
    decode_buf: Vec<u8>,
    audio: AudioStage,
    /// Scratch buffer for μ-law produced by the transcoder.
    ulaw_buf: Vec<u8>,
    /// The latest handle that resumes the provider session, if the provider offers one.
    resumption_handle: Option<String>,
    resume_attempts: u32,
    resume_started_at: Option<Instant>,
    active_response: Option<String>,
    /// Responses interrupted by the caller whose late deltas are dropped until their `response.done`.
    cancelled: HashSet<String>,
    /// The response whose audio was last received, to know whether `end_call` came after speech.
    last_audio_response: Option<Arc<str>>,
    caller_speaking: bool,
    /// Tool calls running: call id → tool name.
    tools_running: HashMap<String, String>,
    /// When the running tool batch earns a filler (one per batch).
    filler_due: Option<Instant>,
    /// Finished tool calls waiting to be sent: (call id, tool name, output).
    tool_results: Vec<(String, String, String)>,
    ending: Option<Ending>,
    end_reason: Option<EndReason>,
    ending_deadline: Option<Instant>,
    last_activity: Instant,
    outputs: VecDeque<Output>,
    /// Call control (`send_digits`, `transfer_call`): see `session/control.rs`.
    control: control::Control,
}

impl CallSession {
    /// A session for a call whose Twilio stream has just started at `now`, with a μ-law provider.
    pub fn new(params: SessionParams, now: Instant) -> Self {
        Self::with_audio(params, now, AudioStage::Passthrough)
    }

    /// A session with the given audio stage (a transcoder for PCM providers).
    pub fn with_audio(params: SessionParams, now: Instant, audio: AudioStage) -> Self {
        Self {
            params,
            phase: Phase::AwaitingSession,
            started_at: now,
            latest_media_ts: 0,
            audio_before_ready: VecDeque::with_capacity(MAX_AUDIO_BEFORE_READY),
            marks: MarkLedger::default(),
            items: VecDeque::with_capacity(4),
            carry: Vec::with_capacity(FRAME_BYTES),
            decode_buf: Vec::with_capacity(16 * 1024),
            ulaw_buf: Vec::with_capacity(match audio {
                AudioStage::Passthrough => 0,
                AudioStage::Transcode(_) => 8 * 1024,
            }),
            audio,
            resumption_handle: None,
            resume_attempts: 0,
            resume_started_at: None,
            active_response: None,
            cancelled: HashSet::new(),
            last_audio_response: None,
            caller_speaking: false,
            tools_running: HashMap::new(),
            filler_due: None,
            tool_results: Vec::new(),
            ending: None,
            end_reason: None,
            ending_deadline: None,
            last_activity: now,
            outputs: VecDeque::with_capacity(64),
            control: control::Control::default(),
        }
    }

    /// True once the session has produced its [`Output::Hangup`].
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The next output to act on, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the session next needs an [`Input::Tick`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Ended {
            return None;
        }
        let mut next = self.started_at + self.params.max_duration;
        if self.phase == Phase::AwaitingSession {
            next = next.min(self.started_at + self.params.session_ready_timeout);
        }
        if let (Phase::Resuming, Some(since)) = (self.phase, self.resume_started_at) {
            next = next.min(since + self.params.session_ready_timeout);
        }
        if let Some(due) = self.filler_due {
            next = next.min(due);
        }
        if let Some(deadline) = self.ending_deadline {
            next = next.min(deadline);
        } else if self.phase == Phase::Active {
            next = next.min(self.last_activity + self.params.silence_timeout);
        }
        Some(next)
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.phase == Phase::Ended {
            return;
        }
        match input {
            Input::Twilio(event) => self.on_twilio(now, event),
            Input::TwilioClosed => self.hang_up(EndReason::CallerHungUp),
            Input::Llm(event) => self.on_llm(now, event),
            Input::LlmClosed { reason } => self.on_llm_closed(now, reason),
            Input::ToolFinished { call_id, output } if self.control.is_transfer_call(&call_id) => {
                self.on_transfer_resolved(now, call_id, output)
            }
            Input::TransferFinished { result } => self.on_transfer_finished(now, result),
            Input::Operator(command) => self.on_operator(now, command),
            Input::ToolFinished { call_id, output } => {
                if let Some(name) = self.tools_running.remove(&call_id) {
                    self.tool_results.push((call_id, name, output));
                    self.last_activity = now;
                }
                if self.tools_running.is_empty() {
                    self.filler_due = None;
                }
                self.answer_tools_if_ready();
            }
            Input::Tick => self.on_tick(now),
        }
        self.settle_dtmf();
        self.advance_transfer();
        self.advance_ending();
    }

    /// The same as `handle(now, Input::Twilio(TwilioEvent::Mark { name }))`, with the name
    /// borrowed: the driver keeps the string to parse the next frame into.
    pub fn handle_mark(&mut self, now: Instant, name: &str) {
        if self.phase == Phase::Ended {
            return;
        }
        self.on_mark(now, name);
        self.settle_dtmf();
        self.advance_transfer();
        self.advance_ending();
    }

    fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn event(&mut self, event: CallEvent) {
        self.emit(Output::Event(event));
    }

    fn protocol_error(&mut self, kind: &'static str, detail: impl Into<String>) {
        self.event(CallEvent::ProtocolError {
            kind,
            detail: detail.into(),
        });
    }

    fn hang_up(&mut self, reason: EndReason) {
        if self.phase == Phase::Ended {
            return;
        }
        // Twilio may end the stream before it answers the redirect: wait for that answer.
        if reason == EndReason::CallerHungUp && self.control.hold_stream_end() {
            return;
        }
        // Once Twilio runs the transfer, the stream ending is the transfer completing.
        let reason = match (reason, self.control.redirected_reason()) {
            (EndReason::CallerHungUp | EndReason::AgentEnded, Some(redirected)) => redirected,
            (reason, _) => reason,
        };
        self.phase = Phase::Ended;
        self.emit(Output::Hangup(reason));
    }

    // ---- Twilio side -------------------------------------------------------------------------

    fn on_twilio(&mut self, now: Instant, event: TwilioEvent) {
        match event {
            TwilioEvent::Media {
                timestamp_ms,
                payload,
                ..
            } => {
                self.latest_media_ts = self.latest_media_ts.max(timestamp_ms);
                self.start_head_item_clock();
                match self.phase {
                    Phase::Active => self.send_caller_audio(payload),
                    _ => {
                        if self.audio_before_ready.len() == MAX_AUDIO_BEFORE_READY {
                            self.audio_before_ready.pop_front();
                        }
                        self.audio_before_ready.push_back(payload);
                    }
                }
            }
            TwilioEvent::Mark { name } => self.on_mark(now, &name),
            TwilioEvent::Dtmf { digit } => {
                let note = format!("The caller pressed {digit} on the phone keypad.");
                self.emit(Output::Llm(LlmCommand::SystemNote(note)));
            }
            TwilioEvent::Stop => self.hang_up(EndReason::CallerHungUp),
            TwilioEvent::Connected => {}
            TwilioEvent::Start(_) => self.protocol_error("twilio_duplicate_start", "second start"),
        }
    }

    fn on_mark(&mut self, now: Instant, name: &str) {
        match self.marks.echo(name) {
            MarkEcho::Played { item_id, cum_ms } => {
                self.last_activity = now;
                // Items ahead of the acknowledged one have finished playing.
                while self.items.front().is_some_and(|i| *i.item_id != *item_id) {
                    self.items.pop_front();
                }
                if let Some(item) = self.items.front_mut() {
                    item.played_ms = item.played_ms.max(cum_ms);
                }
                self.retire_played_items();
            }
            MarkEcho::Stale => {}
            MarkEcho::Unknown => self.protocol_error("twilio_unknown_mark", name.to_owned()),
        }
    }

    /// Drops items that are complete and fully acknowledged, starting the next one's clock.
    fn retire_played_items(&mut self) {
        while let Some(front) = self.items.front() {
            let all_acked = self.marks.next_for_item(&front.item_id).is_none();
            let carry_pending = self.items.len() == 1 && !self.carry.is_empty();
            if front.complete && all_acked && !carry_pending {
                self.items.pop_front();
            } else {
                break;
            }
        }
        self.start_head_item_clock();
    }

    fn start_head_item_clock(&mut self) {
        let now_ts = self.latest_media_ts;
        if let Some(head) = self.items.front_mut()
            && head.started_at_ts.is_none()
            && head.sent_bytes > 0
        {
            head.started_at_ts = Some(now_ts);
        }
    }

    // ---- provider side -----------------------------------------------------------------------

    fn on_llm(&mut self, now: Instant, event: LlmEvent) {
        match event {
            LlmEvent::AudioDelta {
                response_id,
                item_id,
                audio,
            } => self.on_audio_delta(now, response_id, item_id, &audio),
            LlmEvent::AudioDone { item_id, .. } => {
                if self.items.back().is_some_and(|i| *i.item_id == *item_id) {
                    self.finish_newest_item();
                }
            }
            LlmEvent::SpeechStarted { .. } => {
                self.last_activity = now;
                self.caller_speaking = true;
                self.barge_in();
            }
            LlmEvent::SpeechStopped => {
                self.last_activity = now;
                self.caller_speaking = false;
            }
            LlmEvent::ResponseCreated { response_id } => {
                self.active_response = Some(response_id);
            }
            LlmEvent::ResponseDone {
                response_id,
                status,
            } => self.on_response_done(now, response_id, status),
            LlmEvent::ToolCall {
                response_id,
                call_id,
                name,
                arguments,
            } => self.on_tool_call(now, response_id, call_id, name, arguments),
            LlmEvent::Transcript { speaker, text } => {
                if speaker == Speaker::Caller {
                    self.last_activity = now;
                }
                self.event(CallEvent::Transcript { speaker, text })
            }
            LlmEvent::SessionUpdated {
                input_format,
                output_format,
            } => self.on_session_updated(input_format, output_format),
            LlmEvent::Error { code, message } => {
                if self.phase == Phase::AwaitingSession {
                    self.hang_up(EndReason::ProviderRejectedSession(format!(
                        "{code}: {message}"
                    )));
                } else {
                    self.event(CallEvent::ProviderError { code, message });
                }
            }
            LlmEvent::GoingAway => {
                if self.resumption_handle.is_none() {
                    self.event(CallEvent::ProviderError {
                        code: "going_away".into(),
                        message: "provider announced it will close the session".into(),
                    });
                }
            }
            LlmEvent::Interrupted => {
                self.last_activity = now;
                self.barge_in();
            }
            LlmEvent::ResumptionHandle(handle) => self.resumption_handle = Some(handle),
        }
    }

    fn on_llm_closed(&mut self, now: Instant, reason: String) {
        let resumable = self.phase == Phase::Active
            || (self.phase == Phase::Resuming && self.resume_attempts < MAX_RESUME_ATTEMPTS);
        let Some(handle) = self.resumption_handle.clone().filter(|_| resumable) else {
            self.hang_up(EndReason::ProviderClosed(reason));
            return;
        };
        if self.phase == Phase::Active {
            // What the old session already sent still plays; nothing more comes for it.
            self.finish_newest_item();
            if let Some(response_id) = self.active_response.take() {
                self.cancelled.remove(&response_id);
            }
            self.resume_started_at = Some(now);
        }
        self.phase = Phase::Resuming;
        self.resume_attempts += 1;
        self.event(CallEvent::ProviderResuming {
            attempt: self.resume_attempts,
        });
        self.emit(Output::ReconnectProvider { handle });
    }

    /// Caller audio for the provider, passed through or transcoded.
    fn send_caller_audio(&mut self, payload: String) {
        let AudioStage::Transcode(transcoder) = &mut self.audio else {
            self.emit(Output::Llm(LlmCommand::AppendAudio(payload)));
            return;
        };
        self.decode_buf.clear();
        if STANDARD.decode_vec(&payload, &mut self.decode_buf).is_err() {
            self.protocol_error("twilio_bad_base64", "caller media payload");
            return;
        }
        match transcoder.caller_to_provider(&self.decode_buf) {
            Ok([]) => {}
            Ok(pcm) => {
                // The caller's string carries the provider's audio: a driver that hands it back
                // for the next frame converts without allocating.
                let mut encoded = payload;
                encoded.clear();
                STANDARD.encode_string(pcm, &mut encoded);
                self.emit(Output::Llm(LlmCommand::AppendAudio(encoded)));
            }
            Err(e) => self.protocol_error("transcode_failed", e.to_string()),
        }
    }

    fn on_session_updated(&mut self, input: Option<String>, output: Option<String>) {
        if self.phase == Phase::Resuming {
            self.phase = Phase::Active;
            self.resume_attempts = 0;
            self.resume_started_at = None;
            self.event(CallEvent::ProviderResumed);
            while let Some(payload) = self.audio_before_ready.pop_front() {
                self.send_caller_audio(payload);
            }
            // Results that finished while the provider was away go to the resumed session.
            self.answer_tools_if_ready();
            return;
        }
        if self.phase != Phase::AwaitingSession {
            return;
        }
        if input.as_deref() != Some(self.params.expected_input_format.as_str())
            || output.as_deref() != Some(self.params.expected_output_format.as_str())
        {
            // Playing audio in a format Twilio does not expect would be static: end instead.
            self.hang_up(EndReason::FormatRejected {
                input: input.unwrap_or_else(|| "(none)".into()),
                output: output.unwrap_or_else(|| "(none)".into()),
            });
            return;
        }
        self.phase = Phase::Active;
        self.event(CallEvent::SessionReady);
        while let Some(payload) = self.audio_before_ready.pop_front() {
            self.send_caller_audio(payload);
        }
        if let Some(note) = self.params.resume_note.take() {
            self.emit(Output::Llm(LlmCommand::SystemNote(note)));
            self.emit(Output::Llm(LlmCommand::CreateResponse {
                instructions: None,
            }));
        } else if self.params.speak_first {
            self.emit(Output::Llm(LlmCommand::CreateResponse {
                instructions: None,
            }));
        }
    }

    fn on_audio_delta(
        &mut self,
        now: Instant,
        response_id: Arc<str>,
        item_id: Arc<str>,
        audio: &str,
    ) {
        if self.cancelled.contains(&*response_id) {
            self.event(CallEvent::LateDeltaDropped);
            return;
        }
        self.decode_buf.clear();
        if STANDARD.decode_vec(audio, &mut self.decode_buf).is_err() {
            self.protocol_error("provider_bad_base64", format!("audio delta of {item_id}"));
            return;
        }
        self.last_activity = now;
        self.last_audio_response = Some(response_id);
        if self.items.back().is_none_or(|i| *i.item_id != *item_id) {
            self.finish_newest_item();
            self.items.push_back(ItemAudio {
                item_id,
                started_at_ts: None,
                sent_bytes: 0,
                played_ms: 0,
                complete: false,
                frames_since_mark: 0,
                dtmf: false,
            });
        }
        let decoded = std::mem::take(&mut self.decode_buf);
        match &mut self.audio {
            AudioStage::Passthrough => self.queue_agent_ulaw(&decoded),
            AudioStage::Transcode(transcoder) => {
                let mut ulaw = std::mem::take(&mut self.ulaw_buf);
                ulaw.clear();
                match transcoder.provider_to_caller(&decoded) {
                    Ok(converted) => ulaw.extend_from_slice(converted),
                    Err(e) => self.protocol_error("transcode_failed", e.to_string()),
                }
                self.queue_agent_ulaw(&ulaw);
                self.ulaw_buf = ulaw;
            }
        }
        self.decode_buf = decoded;
        self.mark_newest_item();
        self.start_head_item_clock();
    }

    /// Cuts agent μ-law into whole frames for the newest item, carrying the remainder.
    fn queue_agent_ulaw(&mut self, ulaw: &[u8]) {
        let mut offset = 0;
        while offset < ulaw.len() {
            let take = (FRAME_BYTES - self.carry.len()).min(ulaw.len() - offset);
            self.carry.extend_from_slice(&ulaw[offset..offset + take]);
            offset += take;
            if self.carry.len() == FRAME_BYTES {
                self.send_carry_frame(false);
            }
        }
    }

    /// Releases the transcoder's buffered tail (end of an item's audio) into the newest item.
    fn flush_transcoder(&mut self) {
        let AudioStage::Transcode(transcoder) = &mut self.audio else {
            return;
        };
        let mut ulaw = std::mem::take(&mut self.ulaw_buf);
        ulaw.clear();
        match transcoder.flush_output() {
            Ok(tail) => ulaw.extend_from_slice(tail),
            Err(e) => self.protocol_error("transcode_failed", e.to_string()),
        }
        self.queue_agent_ulaw(&ulaw);
        self.ulaw_buf = ulaw;
    }

    /// Sends the carried bytes as one frame (padding with silence when `pad`).
    fn send_carry_frame(&mut self, pad: bool) {
        let real = self.carry.len();
        if real == 0 || (!pad && real < FRAME_BYTES) {
            return;
        }
        let mut frame = [ULAW_SILENCE; FRAME_BYTES];
        frame[..real].copy_from_slice(&self.carry);
        self.carry.clear();
        self.emit(Output::Twilio(TwilioCommand::Media(frame)));
        let item = self
            .items
            .back_mut()
            .expect("carry belongs to the newest item");
        item.sent_bytes += real as u64;
        item.frames_since_mark += 1;
        if item.frames_since_mark >= MARK_EVERY_FRAMES {
            self.mark_newest_item();
        }
    }

    /// Sends a mark at the newest item's position if frames went out since its last mark.
    fn mark_newest_item(&mut self) {
        let Some(item) = self.items.back_mut() else {
            return;
        };
        if item.frames_since_mark == 0 {
            return;
        }
        item.frames_since_mark = 0;
        let cum_ms = item.sent_ms();
        let name = self.marks.push(&item.item_id, cum_ms);
        self.emit(Output::Twilio(TwilioCommand::Mark(name)));
    }

    /// No more audio will come for the newest item: flush its partial frame and mark the end.
    fn finish_newest_item(&mut self) {
        if self.items.back().is_none_or(|i| i.complete) {
            return;
        }
        self.flush_transcoder();
        self.send_carry_frame(true);
        self.mark_newest_item();
        if let Some(item) = self.items.back_mut() {
            item.complete = true;
        }
        self.retire_played_items();
    }

    fn barge_in(&mut self) {
        if let Some(response_id) = self.active_response.clone() {
            // The provider cancels it (or we do below); whatever it still sends is stale.
            self.cancelled.insert(response_id);
            if !self.params.provider_cancels_on_speech {
                self.emit(Output::Llm(LlmCommand::CancelResponse));
            }
        }
        if let AudioStage::Transcode(transcoder) = &mut self.audio {
            // Nothing buffered from the interrupted answer may leak into the next one.
            transcoder.reset_output();
        }
        if self.items.is_empty() || self.items.iter().all(|i| i.dtmf) {
            // Keys being pressed are not the agent talking: a menu's own voice must not stop them.
            return;
        }
        self.interrupt_dtmf();
        // Twilio `clear` first: it is what stops the caller hearing more.
        if !self.marks.is_empty() || !self.carry.is_empty() {
            self.emit(Output::Twilio(TwilioCommand::Clear));
        }
        let heard = self.items.front().filter(|head| !head.dtmf).map(|head| {
            // The caller heard at least what marks acknowledged and at most up to the next
            // unacknowledged mark; the stream clock since the item started playing picks a point
            // in between.
            let upper = self
                .marks
                .next_for_item(&head.item_id)
                .map_or(head.sent_ms(), |m| m.cum_ms)
                .min(head.sent_ms());
            let lower = head.played_ms.min(upper);
            let by_clock = head
                .started_at_ts
                .map_or(0, |start| self.latest_media_ts.saturating_sub(start));
            (head.item_id.to_string(), by_clock.clamp(lower, upper))
        });
        self.marks.clear();
        self.carry.clear();
        self.items.clear();
        if let Some((item_id, heard_ms)) = heard {
            let truncated_at_ms = (heard_ms > 0).then_some(heard_ms);
            if let Some(audio_end_ms) = truncated_at_ms.filter(|_| self.params.provider_truncates) {
                self.emit(Output::Llm(LlmCommand::Truncate {
                    item_id: item_id.clone(),
                    audio_end_ms,
                }));
            }
            self.event(CallEvent::BargeIn {
                item_id,
                truncated_at_ms,
            });
        }
    }

    fn on_response_done(&mut self, now: Instant, response_id: String, status: ResponseStatus) {
        self.last_activity = now;
        if self.active_response.as_deref() == Some(response_id.as_str()) {
            self.active_response = None;
        }
        let was_cancelled = self.cancelled.remove(&response_id);
        let spoke = !was_cancelled
            && status != ResponseStatus::Cancelled
            && self.last_audio_response.as_deref() == Some(response_id.as_str());
        self.transfer_response_done(&response_id, spoke);
        if !was_cancelled && status != ResponseStatus::Cancelled {
            // Whatever this response said is complete: flush its last partial frame.
            self.finish_newest_item();
        }
        match &self.ending {
            Some(Ending::AfterResponse {
                response_id: ending_response,
                call_id,
            }) if *ending_response == response_id => {
                let spoke = self.last_audio_response.as_deref() == Some(response_id.as_str());
                if spoke && !was_cancelled {
                    self.ending = Some(Ending::Draining);
                } else {
                    let call_id = call_id.clone();
                    self.emit(Output::Llm(LlmCommand::ToolResult {
                        call_id,
                        name: END_CALL_TOOL.into(),
                        output: r#"{"ok":true,"status":"ending the call"}"#.into(),
                    }));
                    self.request_farewell(FAREWELL_AFTER_END_CALL);
                }
            }
            Some(Ending::AwaitingFarewell) => self.ending = Some(Ending::Draining),
            _ => {}
        }
        self.answer_tools_if_ready();
    }

    fn on_tool_call(
        &mut self,
        now: Instant,
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
    ) {
        self.last_activity = now;
        self.event(CallEvent::ToolRequested {
            call_id: call_id.clone(),
            name: name.clone(),
        });
        if self.on_control_tool(now, &response_id, &call_id, &name, &arguments) {
            return;
        }
        if name == END_CALL_TOOL {
            if self.ending.is_none() {
                self.begin_ending(now, EndReason::AgentEnded);
                self.ending = Some(Ending::AfterResponse {
                    response_id,
                    call_id,
                });
            }
            return;
        }
        if self.tools_running.is_empty() {
            self.filler_due = self.params.filler_after.map(|after| now + after);
        }
        self.tools_running.insert(call_id.clone(), name.clone());
        self.emit(Output::RunTool {
            call_id,
            name,
            arguments,
        });
    }

    /// Sends finished tool results once every call of the batch is done and no response is active,
    /// then asks for one response about them.
    fn answer_tools_if_ready(&mut self) {
        if !self.tools_running.is_empty()
            || self.tool_results.is_empty()
            || self.active_response.is_some()
            || self.phase != Phase::Active
        {
            return;
        }
        for (call_id, name, output) in std::mem::take(&mut self.tool_results) {
            self.emit(Output::Llm(LlmCommand::ToolResult {
                call_id,
                name,
                output,
            }));
        }
        // While the caller is talking, the provider's turn detection will start the response
        // itself when they stop, with these results in context; asking now would collide.
        if !self.caller_speaking
            && self.ending.is_none()
            && !self.control.transfer_holds_responses()
            && !self.params.provider_continues_after_tools
        {
            self.emit(Output::Llm(LlmCommand::CreateResponse {
                instructions: None,
            }));
        }
    }

    // ---- timers and ending -------------------------------------------------------------------

    fn on_tick(&mut self, now: Instant) {
        if self.filler_due.is_some_and(|due| now >= due) {
            self.filler_due = None;
            // Only into silence: not over the agent's own audio, a response, or the caller.
            let quiet = self.items.is_empty()
                && self.active_response.is_none()
                && !self.caller_speaking
                && self.ending.is_none();
            if quiet && !self.tools_running.is_empty() {
                self.emit(Output::Llm(LlmCommand::Filler {
                    instructions: FILLER.to_owned(),
                }));
                self.event(CallEvent::FillerRequested);
            }
        }
        if self.phase == Phase::AwaitingSession
            && now >= self.started_at + self.params.session_ready_timeout
        {
            self.hang_up(EndReason::SessionTimeout);
            return;
        }
        if let (Phase::Resuming, Some(since)) = (self.phase, self.resume_started_at)
            && now >= since + self.params.session_ready_timeout
        {
            self.hang_up(EndReason::SessionTimeout);
            return;
        }
        if let Some(deadline) = self.ending_deadline {
            if now >= deadline {
                let reason = self.end_reason.clone().unwrap_or(EndReason::AgentEnded);
                self.hang_up(reason);
            }
            return;
        }
        if now >= self.started_at + self.params.max_duration {
            self.begin_ending(now, EndReason::MaxDuration);
            self.ending = Some(Ending::NeedFarewell {
                instructions: FAREWELL_MAX_DURATION,
            });
            return;
        }
        if self.phase == Phase::Active && now >= self.last_activity + self.params.silence_timeout {
            let busy = !self.items.is_empty()
                || !self.tools_running.is_empty()
                || self.active_response.is_some()
                || self.caller_speaking;
            if busy {
                self.last_activity = now;
            } else {
                self.begin_ending(now, EndReason::Silence);
                self.ending = Some(Ending::NeedFarewell {
                    instructions: FAREWELL_SILENCE,
                });
            }
        }
    }

    fn begin_ending(&mut self, now: Instant, reason: EndReason) {
        self.ending_deadline = Some(now + self.params.farewell_timeout);
        self.end_reason = Some(reason.clone());
        self.event(CallEvent::Ending { reason });
    }

    fn request_farewell(&mut self, instructions: &str) {
        self.emit(Output::Llm(LlmCommand::CreateResponse {
            instructions: Some(instructions.to_owned()),
        }));
        self.ending = Some(Ending::AwaitingFarewell);
    }

    fn advance_ending(&mut self) {
        if self.phase == Phase::Ended {
            return;
        }
        match self.ending {
            Some(Ending::NeedFarewell { instructions })
                if self.active_response.is_none() && self.phase == Phase::Active =>
            {
                self.request_farewell(instructions);
            }
            Some(Ending::Draining) if self.items.is_empty() && self.carry.is_empty() => {
                let reason = self.end_reason.clone().unwrap_or(EndReason::AgentEnded);
                self.hang_up(reason);
            }
            _ => {}
        }
    }
}

mod control;

#[cfg(test)]
mod tests;

//! A fake OpenAI Realtime (GA) server on 127.0.0.1 for tests and load generation.
//!
//! It speaks the GA event shapes, refuses the beta header and unknown `session.update` fields like
//! the real service, detects speech in the appended μ-law audio with a simple energy VAD (emitting
//! `speech_started` / `speech_stopped`, cancelling the response in progress the way
//! `interrupt_response` does, and sending a few late deltas first, as the real one may), and plays a
//! script of turns: audio of a given length, tool calls, or audio followed by a tool call. It checks
//! every `conversation.item.truncate` against the audio it actually produced for that item and
//! answers an over-long one with the real service's error. Everything it receives is recorded.
//!
//! [`Flavor`] selects an OpenAI-compatible variant: xAI Grok (hybrid `session.update`, model only in
//! the query, `conversation.created` first, `ping` events, no cancel on speech — the client must
//! send `response.cancel` — and no truncate) or Azure OpenAI GA (`api-key` header, the
//! `/openai/v1/realtime?model=<deployment>` path, no `api-version`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http};

use crate::ulaw;

/// Every byte of the fake's out-of-band holding phrases.
pub const FILLER_BYTE: u8 = 0x0F;

/// One response the fake model gives.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Speak for `ms` milliseconds; every byte of the audio is `byte` (so tests can tell responses
    /// apart), and the transcript is `text`.
    Say { ms: u64, byte: u8, text: String },
    /// Call tools (one function call item each) without speaking.
    CallTools(Vec<(String, Value)>),
    /// Speak, then call a tool in the same response (e.g. a goodbye, then `end_call`).
    SayThenCall {
        ms: u64,
        byte: u8,
        text: String,
        tool: String,
        arguments: Value,
    },
}

/// Which OpenAI-compatible service the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    OpenAi,
    Xai,
    Azure,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Responses in order; each `response.create` or end of caller speech takes the next one.
    pub script: Vec<Turn>,
    /// Scripts for the second, third … connections, in order (a caller back after a warm
    /// transfer); connections past these use `script`.
    pub later_scripts: Vec<Vec<Turn>>,
    /// Audio per delta, in ms (deltas are sent this much apart divided by `speedup`).
    pub delta_ms: u64,
    /// How much faster than real time audio is generated.
    pub speedup: u64,
    /// Late deltas still sent for a response after the caller interrupted it.
    pub late_deltas: usize,
    /// Echo this output format instead of the requested one (to test format checking).
    pub echo_output_format: Option<String>,
    /// Transcript reported for each caller utterance.
    pub caller_transcript: String,
    /// Run the energy VAD on appended audio.
    pub vad: bool,
    /// When set, `Say` audio embeds a send timestamp in each 160-byte frame (load measurements).
    pub stamp_audio: Option<Instant>,
    /// Keep every appended payload in the log (tests); off for load runs.
    pub record_audio: bool,
    pub flavor: Flavor,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            script: Vec::new(),
            later_scripts: Vec::new(),
            delta_ms: 100,
            speedup: 4,
            late_deltas: 2,
            echo_output_format: None,
            caller_transcript: "hello".into(),
            vad: true,
            stamp_audio: None,
            record_audio: true,
            flavor: Flavor::OpenAi,
        }
    }
}

/// What one session received and did.
#[derive(Debug, Default, Clone)]
pub struct SessionLog {
    /// Every client event, parsed.
    pub received: Vec<Value>,
    /// Base64 payloads of `input_audio_buffer.append`, in order (when `record_audio`).
    pub appended: Vec<String>,
    /// Appends received when payloads are not recorded.
    pub appended_count: usize,
    /// Audio ms produced per item id.
    pub item_audio_ms: HashMap<String, u64>,
    /// Error codes sent to the client.
    pub errors_sent: Vec<String>,
    pub authorization: Option<String>,
    /// The `api-key` header (Azure).
    pub api_key: Option<String>,
    /// Path and query the client connected to.
    pub request_uri: String,
    /// `ping` events sent (xAI).
    pub pings_sent: usize,
    pub closed: bool,
    /// One-way latencies (bridge in → here) of stamped appends, in µs.
    pub inbound_latency_us: Vec<u64>,
    /// Tool round trips, in µs: from sending `response.function_call_arguments.done` to receiving
    /// the `function_call_output` item for the same call id.
    pub tool_latency_us: Vec<u64>,
}

#[derive(Clone, Default)]
pub struct Recorder {
    sessions: Arc<Mutex<Vec<Arc<Mutex<SessionLog>>>>>,
}

impl Recorder {
    pub fn sessions(&self) -> Vec<SessionLog> {
        lock(&self.sessions)
            .iter()
            .map(|s| lock(s).clone())
            .collect()
    }

    fn new_session(&self) -> Arc<Mutex<SessionLog>> {
        let log = Arc::new(Mutex::new(SessionLog::default()));
        lock(&self.sessions).push(log.clone());
        log
    }
}

/// An `input_audio_buffer.append` read in place (any other event, or one with escapes, is read
/// as a JSON tree).
#[derive(serde::Deserialize)]
struct Append<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    audio: Option<&'a str>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake server.
pub struct FakeRealtime {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRealtime {
    /// Starts a server on 127.0.0.1 with an ephemeral port.
    pub async fn start(behaviour: Behaviour) -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake realtime");
        let addr = listener.local_addr().expect("local addr");
        let recorder = Recorder::default();
        let rec = recorder.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (behaviour, rec) = (behaviour.clone(), rec.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(stream, behaviour, rec).await;
                });
            }
        });
        FakeRealtime {
            addr,
            recorder,
            task,
        }
    }

    /// The URL to set as `OPENAI_REALTIME_URL`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The resource endpoint to set as `AZURE_OPENAI_ENDPOINT`.
    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

enum Pending {
    Audio {
        response_id: String,
        item_id: String,
        remaining_ms: u64,
        sent_ms: u64,
        byte: u8,
        text: String,
        then_call: Option<(String, Value)>,
    },
}

struct Session {
    behaviour: Behaviour,
    log: Arc<Mutex<SessionLog>>,
    out: mpsc::UnboundedSender<Message>,
    script: VecDeque<Turn>,
    next_id: u64,
    /// Response being generated.
    active: Option<(String, Pending)>,
    late_left: usize,
    late_response: Option<(String, String, u8)>,
    // energy VAD
    buffer_ms: u64,
    speaking: bool,
    speech_frames: u32,
    silence_frames: u32,
    session_configured: bool,
    /// When each tool call's arguments were sent, by call id.
    tool_calls_sent: HashMap<String, Instant>,
}

impl Session {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    fn send(&self, v: Value) {
        let _ = self.out.send(Message::Text(v.to_string().into()));
    }

    fn error(&self, code: &str, message: &str, param: Option<&str>) {
        lock(&self.log).errors_sent.push(code.to_owned());
        self.send(json!({
            "type": "error",
            "event_id": "evt_err",
            "error": {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        }));
    }

    fn start_response(&mut self) {
        if self.active.is_some() {
            self.error(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
                None,
            );
            return;
        }
        let Some(turn) = self.script.pop_front() else {
            return;
        };
        let response_id = self.id("resp");
        self.send(json!({"type": "response.created", "response": {"id": response_id, "object": "realtime.response", "status": "in_progress"}}));
        match turn {
            Turn::Say { ms, byte, text } => self.begin_audio(response_id, ms, byte, text, None),
            Turn::SayThenCall {
                ms,
                byte,
                text,
                tool,
                arguments,
            } => self.begin_audio(response_id, ms, byte, text, Some((tool, arguments))),
            Turn::CallTools(calls) => {
                for (index, (name, arguments)) in calls.into_iter().enumerate() {
                    self.send_tool_call(&response_id, index, &name, &arguments);
                }
                self.send(json!({"type": "response.done", "response": {"id": response_id, "status": "completed", "output": []}}));
            }
        }
    }

    fn send_tool_call(&mut self, response_id: &str, index: usize, name: &str, arguments: &Value) {
        let item_id = self.id("item_fc");
        let call_id = self.id("call");
        self.send(json!({"type": "response.output_item.added", "response_id": response_id, "output_index": index,
            "item": {"id": item_id, "type": "function_call", "name": name, "call_id": call_id}}));
        self.send(json!({"type": "response.function_call_arguments.done", "event_id": "evt", "response_id": response_id,
            "item_id": item_id, "output_index": index, "call_id": call_id, "name": name, "arguments": arguments.to_string()}));
        self.tool_calls_sent.insert(call_id, Instant::now());
    }

    fn begin_audio(
        &mut self,
        response_id: String,
        ms: u64,
        byte: u8,
        text: String,
        then_call: Option<(String, Value)>,
    ) {
        let item_id = self.id("item");
        self.send(json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
            "item": {"id": item_id, "type": "message", "role": "assistant"}}));
        self.active = Some((
            response_id.clone(),
            Pending::Audio {
                response_id,
                item_id,
                remaining_ms: ms,
                sent_ms: 0,
                byte,
                text,
                then_call,
            },
        ));
    }

    fn audio_bytes(&self, ms: u64, byte: u8) -> Vec<u8> {
        let mut bytes = vec![byte; (ms * 8) as usize];
        if let Some(epoch) = self.behaviour.stamp_audio {
            let stamp = epoch.elapsed().as_micros() as u64;
            for frame in bytes.chunks_mut(160) {
                if frame.len() >= 9 {
                    frame[0] = 0xA5;
                    frame[1..9].copy_from_slice(&stamp.to_le_bytes());
                }
            }
        }
        bytes
    }

    /// Produces the next delta of the active response (called on a timer).
    fn generate(&mut self) {
        if let Some((response_id, item_id, byte)) = self.late_response.clone() {
            if self.late_left > 0 {
                self.late_left -= 1;
                let audio = STANDARD.encode(self.audio_bytes(self.behaviour.delta_ms, byte));
                self.send(json!({"type": "response.output_audio.delta", "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": audio}));
                return;
            }
            self.late_response = None;
            self.send(json!({"type": "response.done", "response": {"id": response_id, "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"}}}));
            return;
        }
        let Some((_, Pending::Audio { .. })) = &self.active else {
            return;
        };
        let delta_ms = self.behaviour.delta_ms;
        let Some((
            _,
            Pending::Audio {
                response_id,
                item_id,
                remaining_ms,
                sent_ms,
                byte,
                ..
            },
        )) = &mut self.active
        else {
            return;
        };
        if *remaining_ms > 0 {
            let ms = delta_ms.min(*remaining_ms);
            *remaining_ms -= ms;
            *sent_ms += ms;
            let (response_id, item_id, byte, sent) =
                (response_id.clone(), item_id.clone(), *byte, *sent_ms);
            lock(&self.log).item_audio_ms.insert(item_id.clone(), sent);
            // Written by hand (the ids are this fake's own, nothing to escape): the load
            // generator sends one of these per call every 100 ms.
            let mut delta = String::with_capacity(180 + (ms as usize * 8).div_ceil(3) * 4);
            delta.push_str(
                r#"{"type":"response.output_audio.delta","event_id":"evt","response_id":""#,
            );
            delta.push_str(&response_id);
            delta.push_str(r#"","item_id":""#);
            delta.push_str(&item_id);
            delta.push_str(r#"","output_index":0,"content_index":0,"delta":""#);
            STANDARD.encode_string(self.audio_bytes(ms, byte), &mut delta);
            delta.push_str(r#""}"#);
            let _ = self.out.send(Message::Text(delta.into()));
            return;
        }
        let Some((
            _,
            Pending::Audio {
                response_id,
                item_id,
                text,
                then_call,
                ..
            },
        )) = self.active.take()
        else {
            return;
        };
        self.send(json!({"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}));
        self.send(json!({"type": "response.output_audio_transcript.done", "response_id": response_id, "item_id": item_id,
            "output_index": 0, "content_index": 0, "transcript": text}));
        if let Some((tool, arguments)) = then_call {
            self.send_tool_call(&response_id, 1, &tool, &arguments);
        }
        self.send(json!({"type": "response.done", "response": {"id": response_id, "status": "completed", "output": []}}));
    }

    fn on_append(&mut self, audio: &str) {
        let Ok(bytes) = STANDARD.decode(audio) else {
            self.error("invalid_value", "audio is not base64", Some("audio"));
            return;
        };
        if bytes.len() >= 9
            && bytes[0] == 0xA5
            && let Some(epoch) = self.behaviour.stamp_audio
        {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[1..9]);
            let sent = u64::from_le_bytes(raw);
            let now = epoch.elapsed().as_micros() as u64;
            lock(&self.log)
                .inbound_latency_us
                .push(now.saturating_sub(sent));
        }
        self.buffer_ms += bytes.len() as u64 / 8;
        if !self.behaviour.vad {
            return;
        }
        let loud = ulaw::mean_abs(&bytes) > 2000;
        if loud {
            self.speech_frames += 1;
            self.silence_frames = 0;
        } else {
            self.silence_frames += 1;
            if !self.speaking {
                self.speech_frames = 0;
            }
        }
        if !self.speaking && self.speech_frames >= 3 {
            self.speaking = true;
            let item_id = self.id("item_user");
            self.send(
                json!({"type": "input_audio_buffer.speech_started", "event_id": "evt",
                "audio_start_ms": self.buffer_ms.saturating_sub(60 + 300), "item_id": item_id}),
            );
            // interrupt_response: cancel what is being generated, after a few late deltas. The
            // xAI fake waits for the client's response.cancel instead.
            if self.behaviour.flavor != Flavor::Xai {
                self.cancel_active();
            }
        }
        if self.speaking && self.silence_frames >= 25 {
            self.speaking = false;
            self.speech_frames = 0;
            let item_id = self.id("item_user");
            self.send(json!({"type": "input_audio_buffer.speech_stopped", "event_id": "evt", "audio_end_ms": self.buffer_ms, "item_id": item_id}));
            self.send(json!({"type": "input_audio_buffer.committed", "event_id": "evt", "item_id": item_id}));
            self.send(json!({"type": "conversation.item.input_audio_transcription.completed", "event_id": "evt",
                "item_id": item_id, "content_index": 0, "transcript": self.behaviour.caller_transcript}));
            if self.late_response.is_none() {
                self.start_response();
            }
        }
    }

    /// Stops the active response; a few late deltas still go out before its `response.done`.
    fn cancel_active(&mut self) -> bool {
        match self.active.take() {
            Some((response_id, Pending::Audio { item_id, byte, .. })) => {
                self.late_left = self.behaviour.late_deltas;
                self.late_response = Some((response_id, item_id, byte));
                true
            }
            None => false,
        }
    }

    fn on_append_event(&mut self, audio: &str) {
        if self.behaviour.record_audio {
            lock(&self.log).appended.push(audio.to_owned());
        } else {
            lock(&self.log).appended_count += 1;
        }
        self.on_append(audio);
    }

    fn on_client_event(&mut self, event: Value) {
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        if kind != "input_audio_buffer.append" {
            lock(&self.log).received.push(event.clone());
        }
        match kind.as_str() {
            "session.update" => self.on_session_update(&event),
            "input_audio_buffer.append" => {
                self.on_append_event(event["audio"].as_str().unwrap_or_default())
            }
            "response.create" => {
                if event["response"]["conversation"] == "none" {
                    // An out-of-band response (a holding phrase): not part of the script.
                    self.script.push_front(Turn::Say {
                        ms: 300,
                        byte: FILLER_BYTE,
                        text: "One moment.".into(),
                    });
                }
                self.start_response();
            }
            "response.cancel" => {
                if !self.cancel_active() {
                    self.error(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                        None,
                    );
                }
            }
            "conversation.item.truncate" if self.behaviour.flavor == Flavor::Xai => self.error(
                "invalid_request_error",
                "conversation.item.truncate is not supported",
                Some("type"),
            ),
            "conversation.item.truncate" => {
                let item_id = event["item_id"].as_str().unwrap_or_default();
                let end = event["audio_end_ms"].as_u64().unwrap_or(u64::MAX);
                let have = lock(&self.log).item_audio_ms.get(item_id).copied();
                match have {
                    None => self.error("item_not_found", &format!("Item {item_id} not found"), Some("item_id")),
                    Some(have) if end > have => self.error(
                        "invalid_value",
                        &format!("Audio content of {have}ms is already shorter than {end}ms"),
                        Some("audio_end_ms"),
                    ),
                    Some(_) => self.send(json!({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": end})),
                }
            }
            "conversation.item.create" => {
                let item = &event["item"];
                match item["type"].as_str() {
                    Some("function_call_output")
                        if item["call_id"].is_string() && item["output"].is_string() =>
                    {
                        let call_id = item["call_id"].as_str().unwrap_or_default();
                        if let Some(sent) = self.tool_calls_sent.remove(call_id) {
                            let us = sent.elapsed().as_micros() as u64;
                            lock(&self.log).tool_latency_us.push(us);
                        }
                    }
                    Some("message") => {}
                    _ => self.error("invalid_value", "unsupported item", Some("item")),
                }
            }
            _ => self.error(
                "invalid_request_error",
                &format!("Invalid event type {kind:?}"),
                Some("type"),
            ),
        }
    }

    fn on_session_update(&mut self, event: &Value) {
        if self.behaviour.flavor == Flavor::Xai {
            self.on_xai_session_update(event);
            return;
        }
        let session = &event["session"];
        if session["type"] != "realtime" {
            self.error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                Some("session.type"),
            );
            return;
        }
        if let Some(unknown) = unknown_field(session) {
            self.error(
                "unknown_parameter",
                &format!("Unknown parameter: 'session.{unknown}'."),
                Some(&format!("session.{unknown}")),
            );
            return;
        }
        let input = session["audio"]["input"]["format"].clone();
        let mut output = session["audio"]["output"]["format"].clone();
        if let Some(forced) = &self.behaviour.echo_output_format {
            output = json!({"type": forced});
        }
        self.session_configured = true;
        self.send(json!({"type": "session.updated", "event_id": "evt", "session": {
            "type": "realtime", "object": "realtime.session", "id": "sess_1", "model": session["model"],
            "audio": {"input": {"format": input}, "output": {"format": output, "voice": session["audio"]["output"]["voice"]}}
        }}));
    }
}

impl Session {
    /// xAI's hybrid shape: voice, instructions and turn detection flat; formats nested.
    fn on_xai_session_update(&mut self, event: &Value) {
        let session = &event["session"];
        if let Some(unknown) = unknown_xai_field(session) {
            self.error(
                "unknown_parameter",
                &format!("Unknown parameter: 'session.{unknown}'."),
                Some(&format!("session.{unknown}")),
            );
            return;
        }
        let input = session["audio"]["input"]["format"].clone();
        let mut output = session["audio"]["output"]["format"].clone();
        if !input["type"].is_string() || !output["type"].is_string() {
            self.error(
                "missing_required_parameter",
                "audio formats are required",
                Some("session.audio"),
            );
            return;
        }
        if let Some(forced) = &self.behaviour.echo_output_format {
            output = json!({"type": forced, "rate": 24000});
        }
        self.session_configured = true;
        self.send(
            json!({"type": "session.updated", "event_id": "evt", "session": {
                "id": "sess_x1", "voice": session["voice"], "instructions": session["instructions"],
                "turn_detection": session["turn_detection"],
                "audio": {"input": {"format": input}, "output": {"format": output}}
            }}),
        );
    }
}

/// The first field of an xAI session that is not in its hybrid shape.
fn unknown_xai_field(session: &Value) -> Option<String> {
    const SESSION: &[&str] = &[
        "instructions",
        "voice",
        "turn_detection",
        "audio",
        "tools",
        "reasoning",
        "tool_choice",
    ];
    const INPUT: &[&str] = &["format", "transcription"];
    const OUTPUT: &[&str] = &["format", "speed"];
    let object = session.as_object()?;
    if let Some(k) = object.keys().find(|k| !SESSION.contains(&k.as_str())) {
        return Some(k.clone());
    }
    for (side, allowed) in [("input", INPUT), ("output", OUTPUT)] {
        if let Some(o) = session["audio"][side].as_object()
            && let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str()))
        {
            return Some(format!("audio.{side}.{k}"));
        }
    }
    None
}

/// The first field of a GA session that the real service would refuse.
fn unknown_field(session: &Value) -> Option<String> {
    const SESSION: &[&str] = &[
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "include",
        "prompt",
        "tracing",
        "parallel_tool_calls",
    ];
    const INPUT: &[&str] = &[
        "format",
        "noise_reduction",
        "transcription",
        "turn_detection",
    ];
    const OUTPUT: &[&str] = &["format", "voice", "speed"];
    let object = session.as_object()?;
    if let Some(k) = object.keys().find(|k| !SESSION.contains(&k.as_str())) {
        return Some(k.clone());
    }
    let audio = &session["audio"];
    for (side, allowed) in [("input", INPUT), ("output", OUTPUT)] {
        if let Some(o) = audio[side].as_object()
            && let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str()))
        {
            return Some(format!("audio.{side}.{k}"));
        }
    }
    None
}

#[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
async fn serve_connection(
    stream: TcpStream,
    behaviour: Behaviour,
    recorder: Recorder,
) -> anyhow::Result<()> {
    let log = recorder.new_session();
    let connection = lock(&recorder.sessions).len() - 1;
    let script = match connection.checked_sub(1) {
        Some(later) => behaviour
            .later_scripts
            .get(later)
            .unwrap_or(&behaviour.script),
        None => &behaviour.script,
    }
    .clone();
    let mut beta = false;
    let mut missing_model = false;
    let log_for_handshake = log.clone();
    let flavor = behaviour.flavor;
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let headers = request.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        {
            let mut log = lock(&log_for_handshake);
            log.authorization = header("authorization");
            log.api_key = header("api-key");
            log.request_uri = request.uri().to_string();
        }
        beta = headers.get("openai-beta").is_some();
        let query = request.uri().query().unwrap_or_default();
        missing_model = !query.contains("model=");
        let refuse = |status: http::StatusCode, why: &str| {
            let mut refuse = ErrorResponse::new(Some(why.to_owned()));
            *refuse.status_mut() = status;
            Err(refuse)
        };
        match flavor {
            Flavor::Azure => {
                if headers.get("api-key").is_none() {
                    return refuse(http::StatusCode::UNAUTHORIZED, "missing api-key");
                }
                if request.uri().path() != "/openai/v1/realtime" || query.contains("api-version") {
                    return refuse(http::StatusCode::NOT_FOUND, "not the GA realtime path");
                }
            }
            Flavor::OpenAi | Flavor::Xai => {
                if headers.get("authorization").is_none() {
                    return refuse(http::StatusCode::UNAUTHORIZED, "missing Authorization");
                }
            }
        }
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(crate::fake_socket_config()),
    )
    .await?;
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    if beta || missing_model {
        let (code, message) = if beta {
            (
                "beta_api_shape_disabled",
                "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
            )
        } else {
            ("missing_model", "model query parameter is required")
        };
        let _ = out_tx.send(Message::Text(json!({"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message}}).to_string().into()));
        let _ = out_tx.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Library(4000),
            reason: "".into(),
        })));
        let _ = writer.await;
        return Ok(());
    }
    let mut session = Session {
        script: script.into_iter().collect(),
        behaviour: behaviour.clone(),
        log: log.clone(),
        out: out_tx.clone(),
        next_id: 0,
        active: None,
        late_left: 0,
        late_response: None,
        buffer_ms: 0,
        speaking: false,
        speech_frames: 0,
        silence_frames: 0,
        session_configured: false,
        tool_calls_sent: HashMap::new(),
    };
    if behaviour.flavor == Flavor::Xai {
        session.send(json!({"type": "conversation.created", "event_id": "evt", "conversation": {"id": "conv_1"}}));
    } else {
        session.send(json!({"type": "session.created", "event_id": "evt", "session": {"type": "realtime", "id": "sess_1",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}, "output": {"format": {"type": "audio/pcm", "rate": 24000}}}}}));
    }
    let mut ticks: u64 = 0;
    let period = Duration::from_millis((behaviour.delta_ms / behaviour.speedup.max(1)).max(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    // Caller audio, 50 times a second per call, is read without a JSON tree (the
                    // load generator runs hundreds of these sessions); everything else as a tree.
                    if let Ok(Append { kind: "input_audio_buffer.append", audio: Some(audio) }) =
                        serde_json::from_str::<Append<'_>>(&text)
                    {
                        session.on_append_event(audio);
                        continue;
                    }
                    match serde_json::from_str::<Value>(&text) {
                        Ok(event) => session.on_client_event(event),
                        Err(_) => session.error("invalid_json", "could not parse JSON", None),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ticker.tick() => {
                ticks += 1;
                if behaviour.flavor == Flavor::Xai && ticks.is_multiple_of(10) {
                    lock(&log).pings_sent += 1;
                    session.send(json!({"type": "ping", "timestamp": ticks}));
                }
                if session.session_configured {
                    session.generate();
                }
            }
        }
    }
    lock(&log).closed = true;
    drop(session);
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

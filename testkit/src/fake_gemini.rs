//! A fake Gemini Live (BidiGenerateContent) server on 127.0.0.1 for tests.
//!
//! It insists on `setup` first (checking its shape and any resumption handle against those it
//! issued), answers `setupComplete`, takes only `realtimeInput.audio` PCM16 at 16 kHz, runs an energy
//! VAD on it (interrupting its own answer with `serverContent.interrupted` when the caller speaks
//! over it, as `START_OF_ACTIVITY_INTERRUPTS` does), and plays a script of turns: 24 kHz PCM16 audio
//! at a constant level (so tests can tell answers apart after transcoding) with output
//! transcription, or `toolCall`s that wait for a matching `toolResponse` and then continue without
//! any further trigger (a `clientContent` sent while tool results are awaited is recorded as an
//! error). It hands out `sessionResumptionUpdate` handles and can say `goAway` once and close the
//! connection, continuing the same script on the connection that resumes. For the load generator
//! it can log when each audio chunk arrived. Nothing here is part of the product.

use std::collections::{HashSet, VecDeque};
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

/// One model turn.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Speak for `ms` at a constant PCM `level` (24 kHz); `text` is the output transcription.
    Say { ms: u64, level: i16, text: String },
    /// Call tools (`toolCall`), then wait for every `toolResponse`.
    CallTools(Vec<(String, Value)>),
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Turns in order, shared by every connection (a resumed session continues the script).
    pub script: Vec<Turn>,
    /// Audio per `modelTurn` chunk, in ms.
    pub chunk_ms: u64,
    /// How much faster than real time audio is generated.
    pub speedup: u64,
    /// Input transcription sent when the caller stops speaking.
    pub caller_transcript: String,
    /// On the first connection, this long after setup and between turns, send `goAway` and close.
    pub go_away_after_ms: Option<u64>,
    /// When set, each connection logs when every audio chunk arrived, in µs since this instant
    /// (load measurements: transcoded audio cannot carry a send stamp through the bridge).
    pub log_arrivals_since: Option<Instant>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            script: Vec::new(),
            chunk_ms: 100,
            speedup: 4,
            caller_transcript: "hello".into(),
            go_away_after_ms: None,
            log_arrivals_since: None,
        }
    }
}

/// What one connection received and did.
#[derive(Debug, Default, Clone)]
pub struct ConnectionLog {
    pub api_key: Option<String>,
    pub request_uri: String,
    pub setup: Option<Value>,
    /// Client messages other than audio, parsed.
    pub received: Vec<Value>,
    /// Audio chunks received and their total bytes (PCM16 16 kHz).
    pub audio_chunks: usize,
    pub audio_bytes: usize,
    /// Audio chunks of the caller's speech (loud).
    pub loud_chunks: usize,
    /// Arrival of each audio chunk in µs since [`Behaviour::log_arrivals_since`] (when set).
    pub audio_arrivals_us: Vec<u64>,
    pub errors: Vec<String>,
    pub interruptions: usize,
    pub tool_responses: Vec<Value>,
    pub went_away: bool,
    pub closed: bool,
}

#[derive(Default)]
struct Shared {
    connections: Vec<Arc<Mutex<ConnectionLog>>>,
    script: VecDeque<Turn>,
    handles: Vec<String>,
    went_away: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake server.
pub struct FakeGemini {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGemini {
    pub async fn start(behaviour: Behaviour) -> FakeGemini {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake gemini");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared {
            script: behaviour.script.iter().cloned().collect(),
            ..Shared::default()
        }));
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (behaviour, shared) = (behaviour.clone(), for_task.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(stream, behaviour, shared).await;
                });
            }
        });
        FakeGemini { addr, shared, task }
    }

    /// The URL to set as `GEMINI_LIVE_URL`.
    pub fn url(&self) -> String {
        format!(
            "ws://{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
            self.addr
        )
    }

    pub fn connections(&self) -> Vec<ConnectionLog> {
        lock(&self.shared)
            .connections
            .iter()
            .map(|c| lock(c).clone())
            .collect()
    }

    /// Resumption handles handed out, oldest first.
    pub fn handles(&self) -> Vec<String> {
        lock(&self.shared).handles.clone()
    }
}

struct Speaking {
    remaining_ms: u64,
    level: i16,
    text: String,
    transcribed: bool,
}

struct Connection {
    behaviour: Behaviour,
    shared: Arc<Mutex<Shared>>,
    log: Arc<Mutex<ConnectionLog>>,
    out: mpsc::UnboundedSender<Message>,
    set_up_at: Option<Instant>,
    speaking: Option<Speaking>,
    awaiting_tools: HashSet<String>,
    next_call: u64,
    // energy VAD
    caller_speaking: bool,
    loud_run: u32,
    quiet_run: u32,
}

impl Connection {
    fn send(&self, v: Value) {
        let _ = self.out.send(Message::Text(v.to_string().into()));
    }

    fn error(&self, what: impl Into<String>) {
        lock(&self.log).errors.push(what.into());
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self.out.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        })));
    }

    fn issue_handle(&self) {
        let handle = {
            let mut shared = lock(&self.shared);
            let handle = format!("handle-{}", shared.handles.len() + 1);
            shared.handles.push(handle.clone());
            handle
        };
        self.send(json!({"sessionResumptionUpdate": {"newHandle": handle, "resumable": true}}));
    }

    fn start_turn(&mut self) {
        if self.speaking.is_some() || !self.awaiting_tools.is_empty() {
            return;
        }
        let Some(turn) = lock(&self.shared).script.pop_front() else {
            return;
        };
        match turn {
            Turn::Say { ms, level, text } => {
                self.speaking = Some(Speaking {
                    remaining_ms: ms,
                    level,
                    text,
                    transcribed: false,
                })
            }
            Turn::CallTools(calls) => {
                let mut function_calls = Vec::new();
                for (name, args) in calls {
                    self.next_call += 1;
                    let id = format!("fc_{}", self.next_call);
                    self.awaiting_tools.insert(id.clone());
                    function_calls.push(json!({"id": id, "name": name, "args": args}));
                }
                self.send(json!({"toolCall": {"functionCalls": function_calls}}));
            }
        }
    }

    /// Produces the next audio chunk of the turn in progress (called on a timer).
    fn generate(&mut self) {
        let chunk_ms = self.behaviour.chunk_ms;
        let Some(speaking) = &mut self.speaking else {
            self.maybe_go_away();
            return;
        };
        if speaking.remaining_ms == 0 {
            self.speaking = None;
            self.send(json!({"serverContent": {"generationComplete": true}}));
            self.send(json!({"serverContent": {"turnComplete": true}}));
            self.issue_handle();
            return;
        }
        let ms = chunk_ms.min(speaking.remaining_ms);
        speaking.remaining_ms -= ms;
        let samples = (ms * 24) as usize;
        let pcm: Vec<u8> = std::iter::repeat_n(speaking.level.to_le_bytes(), samples)
            .flatten()
            .collect();
        let transcript = (!speaking.transcribed).then(|| speaking.text.clone());
        speaking.transcribed = true;
        self.send(json!({"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": STANDARD.encode(pcm)}}
        ]}}}));
        if let Some(text) = transcript {
            self.send(json!({"serverContent": {"outputTranscription": {"text": text}}}));
        }
    }

    fn maybe_go_away(&mut self) {
        let (Some(after), Some(set_up_at)) = (self.behaviour.go_away_after_ms, self.set_up_at)
        else {
            return;
        };
        if set_up_at.elapsed() < Duration::from_millis(after) || !self.awaiting_tools.is_empty() {
            return;
        }
        {
            let mut shared = lock(&self.shared);
            if shared.went_away {
                return;
            }
            shared.went_away = true;
        }
        lock(&self.log).went_away = true;
        self.send(json!({"goAway": {"timeLeft": "1s"}}));
        self.close(1000, "connection lifetime reached");
    }

    fn on_setup(&mut self, setup: &Value) {
        let model_ok = setup["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("models/"));
        let audio_only = setup["generationConfig"]["responseModalities"] == json!(["AUDIO"]);
        let types_ok = setup["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
            .all(|d| schema_types_upper(&d["parameters"]));
        if !model_ok || !audio_only || !types_ok {
            self.error("bad setup");
            self.close(1007, "invalid setup");
            return;
        }
        if let Some(handle) = setup["sessionResumption"]["handle"].as_str()
            && !lock(&self.shared).handles.iter().any(|h| h == handle)
        {
            self.error(format!("unknown resumption handle {handle}"));
            self.close(1008, "invalid session resumption handle");
            return;
        }
        lock(&self.log).setup = Some(setup.clone());
        self.set_up_at = Some(Instant::now());
        self.send(json!({"setupComplete": {}}));
        self.issue_handle();
    }

    fn on_audio(&mut self, audio: &Value) {
        if let Some(epoch) = self.behaviour.log_arrivals_since {
            let arrived = epoch.elapsed().as_micros() as u64;
            lock(&self.log).audio_arrivals_us.push(arrived);
        }
        if audio["mimeType"] != "audio/pcm;rate=16000" {
            self.error(format!("audio mimeType {}", audio["mimeType"]));
            return;
        }
        let Some(bytes) = audio["data"].as_str().and_then(|d| STANDARD.decode(d).ok()) else {
            self.error("audio data is not base64");
            return;
        };
        if bytes.len() % 2 != 0 {
            self.error("odd PCM16 length");
            return;
        }
        let samples = bytes.len() / 2;
        let energy: i64 = bytes
            .chunks_exact(2)
            .map(|p| i64::from(i16::from_le_bytes([p[0], p[1]])).abs())
            .sum();
        let loud = samples > 0 && energy / samples as i64 > 2000;
        {
            let mut log = lock(&self.log);
            log.audio_chunks += 1;
            log.audio_bytes += bytes.len();
            if loud {
                log.loud_chunks += 1;
            }
        }
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            if !self.caller_speaking {
                self.loud_run = 0;
            }
        }
        if !self.caller_speaking && self.loud_run >= 3 {
            self.caller_speaking = true;
            if self.speaking.take().is_some() {
                lock(&self.log).interruptions += 1;
                self.send(json!({"serverContent": {"interrupted": true}}));
            }
        }
        if self.caller_speaking && self.quiet_run >= 25 {
            self.caller_speaking = false;
            self.loud_run = 0;
            self.send(json!({"serverContent": {"inputTranscription": {"text": self.behaviour.caller_transcript}}}));
            self.start_turn();
        }
    }

    fn on_message(&mut self, message: Value) {
        let Some(object) = message.as_object() else {
            self.error("not an object");
            return;
        };
        if object.len() != 1 {
            self.error("a client message has exactly one field");
            return;
        }
        if self.set_up_at.is_none() && message.get("setup").is_none() {
            self.error("setup must be the first message");
            self.close(1007, "setup must be the first message");
            return;
        }
        if let Some(audio) = message["realtimeInput"].get("audio") {
            let audio = audio.clone();
            self.on_audio(&audio);
            return;
        }
        lock(&self.log).received.push(message.clone());
        if let Some(setup) = message.get("setup") {
            let setup = setup.clone();
            self.on_setup(&setup);
        } else if let Some(response) = message.get("toolResponse") {
            for answer in response["functionResponses"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = answer["id"].as_str().unwrap_or_default();
                if !self.awaiting_tools.remove(id) || !answer["response"].is_object() {
                    self.error(format!("unexpected tool response {answer}"));
                }
                lock(&self.log).tool_responses.push(answer.clone());
            }
            if self.awaiting_tools.is_empty() {
                self.start_turn();
            }
        } else if let Some(content) = message.get("clientContent") {
            if !self.awaiting_tools.is_empty() {
                self.error("clientContent while tool results are awaited");
            }
            if content["turnComplete"] == true {
                self.start_turn();
            }
        } else {
            self.error(format!("unknown message {message}"));
        }
    }
}

/// Whether every `type` in a Gemini schema is upper case (Gemini's `Type` enum names).
fn schema_types_upper(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.iter().all(|(k, v)| {
            if k == "type" {
                v.as_str()
                    .is_some_and(|t| t.chars().all(|c| c.is_ascii_uppercase()))
            } else {
                schema_types_upper(v)
            }
        }),
        Value::Array(items) => items.iter().all(schema_types_upper),
        _ => true,
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
async fn serve_connection(
    stream: TcpStream,
    behaviour: Behaviour,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<()> {
    let log = Arc::new(Mutex::new(ConnectionLog::default()));
    lock(&shared).connections.push(log.clone());
    let log_for_handshake = log.clone();
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let key = request
            .headers()
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        {
            let mut log = lock(&log_for_handshake);
            log.api_key = key.clone();
            log.request_uri = request.uri().to_string();
        }
        if key.is_none() {
            let mut refuse = ErrorResponse::new(Some("missing x-goog-api-key".into()));
            *refuse.status_mut() = http::StatusCode::UNAUTHORIZED;
            return Err(refuse);
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
    let mut connection = Connection {
        behaviour: behaviour.clone(),
        shared,
        log: log.clone(),
        out: out_tx.clone(),
        set_up_at: None,
        speaking: None,
        awaiting_tools: HashSet::new(),
        next_call: 0,
        caller_speaking: false,
        loud_run: 0,
        quiet_run: 0,
    };
    let period = Duration::from_millis((behaviour.chunk_ms / behaviour.speedup.max(1)).max(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                    Ok(message) => connection.on_message(message),
                    Err(_) => connection.error("invalid JSON"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ticker.tick() => {
                if connection.set_up_at.is_some() {
                    connection.generate();
                }
            }
        }
        if writer.is_finished() {
            break;
        }
    }
    lock(&log).closed = true;
    drop(connection);
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

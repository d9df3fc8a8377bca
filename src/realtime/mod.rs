//! Realtime speech providers behind one vocabulary.
//!
//! The call actor speaks only [`LlmCommand`] and [`LlmEvent`]; each provider is a [`Dialect`] that maps
//! them to and from its wire JSON and knows how to open its socket. Nothing outside this module sees
//! provider JSON. A dialect holds no call state (beyond its fixed configuration) and does no IO itself.

pub mod openai;

use serde_json::Value;

/// Audio encodings a provider may be asked for. Twilio speaks μ-law 8 kHz, so `Pcmu` is passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// G.711 μ-law, 8 kHz (`audio/pcmu`).
    Pcmu,
    /// PCM16 little-endian at the given rate.
    Pcm16 { rate: u32 },
}

/// A tool the model may call: name, speech-friendly description, JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDeclaration {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// Everything a provider needs to set a session up for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub instructions: String,
    pub voice: String,
    pub audio_format: AudioFormat,
    pub tools: Vec<ToolDeclaration>,
    /// Model used to transcribe the caller (input transcription); `None` leaves it off.
    pub transcription_model: Option<String>,
}

/// What the call actor asks of the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmCommand {
    /// Configure the session (sent once, right after the socket opens).
    UpdateSession(SessionConfig),
    /// Caller audio in the session's input format, base64, exactly as received.
    AppendAudio(String),
    /// Cut an assistant item's audio at what the caller heard.
    Truncate { item_id: String, audio_end_ms: u64 },
    /// The result of a tool call, as a JSON document string.
    ToolResult { call_id: String, output: String },
    /// Ask for a response, optionally with instructions for this response only.
    CreateResponse { instructions: Option<String> },
    /// Cancel the response in progress.
    CancelResponse,
    /// A note for the model that is not caller speech (e.g. a DTMF digit).
    SystemNote(String),
}

/// Who said a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Agent,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    Completed,
    Cancelled,
    Failed,
    Incomplete,
}

/// What the provider tells the call actor.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// The provider confirmed the session; the formats it will actually use (None: not echoed).
    SessionUpdated {
        input_format: Option<String>,
        output_format: Option<String>,
    },
    ResponseCreated {
        response_id: String,
    },
    /// Base64 audio in the session's output format.
    AudioDelta {
        response_id: String,
        item_id: String,
        audio: String,
    },
    AudioDone {
        response_id: String,
        item_id: String,
    },
    SpeechStarted {
        audio_start_ms: Option<u64>,
    },
    SpeechStopped,
    ToolCall {
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    Transcript {
        speaker: Speaker,
        text: String,
    },
    ResponseDone {
        response_id: String,
        status: ResponseStatus,
    },
    Error {
        code: String,
        message: String,
    },
    /// The provider will close the session soon.
    GoingAway,
}

/// A provider event that could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed provider event: {0}")]
    Malformed(String),
}

/// Failure to open a provider session.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid provider URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("provider connection failed: {0}")]
    Socket(String),
    #[error("provider connection timed out")]
    Timeout,
}

/// One provider's wire dialect.
pub trait Dialect: Send + Sync + 'static {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// The WebSocket request (URL and headers) that opens a session.
    fn connect_request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::http::Request<()>, ConnectError>;
    /// The wire text for a command.
    fn encode(&self, command: &LlmCommand) -> String;
    /// The internal event for one wire text frame; `Ok(None)` for events the bridge does not use.
    fn decode(&self, text: &str) -> Result<Option<LlmEvent>, DecodeError>;
    /// Whether the provider cancels its own response when it detects the caller speaking, so the
    /// bridge need not send a cancel on barge-in.
    fn cancels_on_speech(&self) -> bool;
    /// The wire name of a format, as the provider echoes it back in its session confirmation.
    fn format_name(&self, format: AudioFormat) -> String;
}

//! Realtime speech providers behind one vocabulary.
//!
//! The call actor speaks only [`LlmCommand`] and [`LlmEvent`]; each provider is a [`Dialect`] that maps
//! them to and from its wire JSON and knows how to open its socket. Nothing outside this module sees
//! provider JSON. A dialect holds no call state (beyond its fixed configuration) and does no IO itself;
//! the little bookkeeping a wire protocol without response ids needs (Gemini Live) lives in a
//! [`StreamState`] that the connection's reader owns and passes in.

pub mod azure;
pub mod catalog;
pub mod gemini;
pub mod openai;
pub mod xai;

use serde_json::Value;

/// Name of the built-in tool that ends the call: part of the vocabulary shared by the session
/// (which carries it out) and the tool registry (which declares it).
pub const END_CALL_TOOL: &str = "end_call";
/// Built-in tool that presses keypad keys (DTMF tones in the media stream); carried out by the
/// session.
pub const SEND_DIGITS_TOOL: &str = "send_digits";
/// Built-in tool that hands the caller to a person; validated by its tool, carried out by the
/// session (handover line, then the redirect).
pub const TRANSFER_CALL_TOOL: &str = "transfer_call";

/// Audio encodings a provider may be asked for. Twilio speaks μ-law 8 kHz, so `Pcmu` is passthrough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// G.711 μ-law, 8 kHz (`audio/pcmu`).
    Pcmu,
    /// PCM16 little-endian at the given rate.
    Pcm16 { rate: u32 },
}

/// The audio a provider's socket carries, as fixed by its wire protocol and our session setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAudio {
    /// μ-law 8 kHz both ways: Twilio payloads pass straight through.
    Pcmu,
    /// PCM16 LE in at `input_rate` and out at `output_rate`: the call transcodes.
    Pcm16 { input_rate: u32, output_rate: u32 },
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
    /// Resume an earlier provider session (Gemini Live session resumption) instead of starting
    /// a new one; `None` for a fresh session.
    pub resumption_handle: Option<String>,
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
    /// The result of a tool call (`name` is the tool's), as a JSON document string.
    ToolResult {
        call_id: String,
        name: String,
        output: String,
    },
    /// Ask for a response, optionally with instructions for this response only.
    CreateResponse { instructions: Option<String> },
    /// A short spoken holding phrase while tools run: outside the conversation (it must not
    /// become part of what the model answers from) and without tools. Providers with no such
    /// out-of-band response encode it as nothing.
    Filler { instructions: String },
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
    /// The ids are shared with the connection's earlier deltas of the same response and item
    /// ([`StreamState`]): a delta allocates only its audio.
    AudioDelta {
        response_id: std::sync::Arc<str>,
        item_id: std::sync::Arc<str>,
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
    /// The provider stopped its response because the caller spoke (Gemini Live
    /// `serverContent.interrupted`): what is queued for the caller must go; there is no truncate.
    Interrupted,
    /// A handle that resumes this provider session on a new connection (Gemini Live
    /// `sessionResumptionUpdate`); the latest one wins.
    ResumptionHandle(String),
}

/// A provider event that could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed provider event: {0}")]
    Malformed(String),
    #[error("provider sent audio as {got:?}, not the session's {expected:?}")]
    UnexpectedAudioFormat { expected: String, got: String },
}

/// Per-connection decoding state, owned by the connection's reader and handed to
/// [`Dialect::decode_stream`]. Dialects whose events carry their own ids (OpenAI, xAI, Azure)
/// keep the latest audio delta's ids here, so the next delta of the same item shares them instead
/// of copying; Gemini Live has no response or item ids, so turns are numbered here.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// Distinguishes ids minted on this connection from those of earlier ones in the same call.
    pub(crate) connection: u32,
    pub(crate) turns: u64,
    /// The turn in progress (its id), if the model has started one.
    pub(crate) open_turn: Option<std::sync::Arc<str>>,
    /// The latest audio delta's response and item ids (dialects with their own ids).
    pub(crate) delta_ids: Option<(std::sync::Arc<str>, std::sync::Arc<str>)>,
    /// Transcription text received in pieces, emitted whole at the end of a turn.
    pub(crate) caller_text: String,
    pub(crate) agent_text: String,
}

impl StreamState {
    /// State for the `connection`-th provider connection of a call (0 for the first).
    pub fn for_connection(connection: u32) -> Self {
        Self {
            connection,
            ..Self::default()
        }
    }
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

/// Appends `parts` to `out` after reserving their total size once (so a reused buffer is reclaimed
/// or grown at most once per message).
pub(crate) fn append_parts(out: &mut bytes::BytesMut, parts: &[&str]) {
    out.reserve(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
}

/// One provider's wire dialect.
pub trait Dialect: Send + Sync + 'static {
    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
    /// The WebSocket request (URL and headers) that opens a session.
    fn connect_request(&self) -> Result<tungstenite::http::Request<()>, ConnectError>;
    /// The wire text for a command; an empty string when the command has no wire form in this
    /// dialect (the driver then sends nothing), e.g. a cancel on a provider that cancels itself.
    fn encode(&self, command: &LlmCommand) -> String;
    /// Appends the wire text for `command` to `out` (nothing when it has no wire form): the bytes
    /// [`encode`](Self::encode) returns. Dialects write their caller-audio message straight into
    /// `out`, so a call's reused buffer carries a steady-state frame without an allocation.
    fn encode_into(&self, command: &LlmCommand, out: &mut bytes::BytesMut) {
        out.extend_from_slice(self.encode(command).as_bytes());
    }
    /// The first internal event of one wire text frame, decoded without connection history;
    /// `Ok(None)` for events the bridge does not use. Exact for dialects whose events carry their
    /// own ids; a call's reader uses [`decode_stream`](Self::decode_stream).
    fn decode(&self, text: &str) -> Result<Option<LlmEvent>, DecodeError>;
    /// Every internal event of one wire text frame, in order, appended to `out`.
    fn decode_stream(
        &self,
        text: &str,
        state: &mut StreamState,
        out: &mut Vec<LlmEvent>,
    ) -> Result<(), DecodeError> {
        let _ = state;
        out.extend(self.decode(text)?);
        Ok(())
    }
    /// Whether the provider cancels its own response when it detects the caller speaking, so the
    /// bridge need not send a cancel on barge-in.
    fn cancels_on_speech(&self) -> bool;
    /// The wire name of a format, as the provider echoes it back in its session confirmation.
    fn format_name(&self, format: AudioFormat) -> String;
    /// The audio this provider's socket carries.
    fn provider_audio(&self) -> ProviderAudio {
        ProviderAudio::Pcmu
    }
    /// Whether `conversation.item.truncate` (cutting the model's memory of an answer at what the
    /// caller heard) exists and is reliable for this provider.
    fn supports_truncate(&self) -> bool {
        true
    }
    /// Whether the model goes on by itself once it has tool results (Gemini Live); otherwise the
    /// bridge asks for a response after sending them.
    fn continues_after_tool_results(&self) -> bool {
        false
    }
}

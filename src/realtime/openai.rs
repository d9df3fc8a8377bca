//! OpenAI Realtime (GA) dialect: `session.update` with nested `audio.{input,output}`, no
//! `OpenAI-Beta` header, `response.output_audio.delta` events (protocols.md §4).
//!
//! Owns the mapping between GA wire JSON and [`LlmCommand`]/[`LlmEvent`], shared by the
//! OpenAI-compatible dialects: Azure OpenAI is this dialect with `api-key` auth (see
//! [`super::azure`]), and xAI reuses its encoder pieces and [`decode_ga`]. It must not hold call
//! state or touch sockets.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::{HeaderValue, Request};

use super::{
    AudioFormat, ConnectError, DecodeError, Dialect, LlmCommand, LlmEvent, ResponseStatus,
    SessionConfig, Speaker, StreamState,
};

/// How a realtime endpoint wants the API key presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>` (OpenAI, xAI).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

/// How to reach one OpenAI-compatible realtime endpoint.
#[derive(Clone)]
pub struct OpenAiDialect {
    /// `wss://api.openai.com/v1/realtime` or an override (tests point it at a local fake).
    pub url: String,
    /// The model (for Azure: the deployment name), sent as `?model=` and in `session.update`.
    pub model: String,
    api_key: String,
    key_header: KeyHeader,
    name: &'static str,
}

impl std::fmt::Debug for OpenAiDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiDialect")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &"**redacted**")
            .finish()
    }
}

/// The WebSocket request for `<url>?model=<model>` with the key in `key_header`.
pub(crate) fn keyed_request(
    url: &str,
    model: &str,
    api_key: &str,
    key_header: KeyHeader,
) -> Result<Request<()>, ConnectError> {
    let url = format!("{url}?model={model}");
    let bad_url = |reason: String| ConnectError::BadUrl {
        url: url.clone(),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad_url(e.to_string()))?;
    let (name, value) = match key_header {
        KeyHeader::Bearer => ("Authorization", format!("Bearer {api_key}")),
        KeyHeader::ApiKey => ("api-key", api_key.to_owned()),
    };
    let value = HeaderValue::from_str(&value)
        .map_err(|_| bad_url("API key is not a valid header value".into()))?;
    request.headers_mut().insert(name, value);
    Ok(request)
}

/// Tools in the GA (and xAI) shape: flat `{type: function, name, description, parameters}`.
pub(crate) fn function_tools(config: &SessionConfig) -> Vec<Value> {
    config
        .tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            })
        })
        .collect()
}

/// The GA caller-audio message around its base64 payload.
const GA_APPEND_HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
const GA_APPEND_TAIL: &str = r#""}"#;

/// Writes a GA caller-audio message into `out`; `false` (nothing written) for any other command.
pub(crate) fn append_ga_audio(command: &LlmCommand, out: &mut bytes::BytesMut) -> bool {
    let LlmCommand::AppendAudio(audio) = command else {
        return false;
    };
    super::append_parts(out, &[GA_APPEND_HEAD, audio.as_str(), GA_APPEND_TAIL]);
    true
}

/// The GA encoding of every command but `session.update`, shared by the compatible dialects.
pub(crate) fn encode_ga_command(command: &LlmCommand) -> String {
    match command {
        LlmCommand::AppendAudio(audio) => {
            // Hot path: the payload is base64 (validated on arrival), which needs no JSON escaping.
            // Sized exactly: the socket takes the string over without copying or reallocating.
            let mut out =
                String::with_capacity(GA_APPEND_HEAD.len() + audio.len() + GA_APPEND_TAIL.len());
            out.push_str(GA_APPEND_HEAD);
            out.push_str(audio);
            out.push_str(GA_APPEND_TAIL);
            out
        }
        LlmCommand::UpdateSession(_) => String::new(),
        LlmCommand::Truncate {
            item_id,
            audio_end_ms,
        } => json!({
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
        })
        .to_string(),
        LlmCommand::ToolResult {
            call_id, output, ..
        } => json!({
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": output},
        })
        .to_string(),
        LlmCommand::CreateResponse { instructions: None } => {
            r#"{"type":"response.create"}"#.to_owned()
        }
        LlmCommand::CreateResponse {
            instructions: Some(text),
        } => json!({"type": "response.create", "response": {"instructions": text}}).to_string(),
        LlmCommand::Filler { instructions } => json!({
            "type": "response.create",
            "response": {
                "conversation": "none",
                "instructions": instructions,
                "tool_choice": "none",
                "output_modalities": ["audio"],
                "metadata": {"purpose": "filler"},
            },
        })
        .to_string(),
        LlmCommand::CancelResponse => r#"{"type":"response.cancel"}"#.to_owned(),
        LlmCommand::SystemNote(text) => json!({
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": text}],
            },
        })
        .to_string(),
    }
}

impl OpenAiDialect {
    pub fn new(
        url: impl Into<String>,
        model: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            api_key: api_key.into(),
            key_header: KeyHeader::Bearer,
            name: "openai",
        }
    }

    /// The same GA dialect for another OpenAI-compatible service (Azure OpenAI).
    pub fn compatible(
        name: &'static str,
        url: impl Into<String>,
        model: impl Into<String>,
        api_key: impl Into<String>,
        key_header: KeyHeader,
    ) -> Self {
        Self {
            key_header,
            name,
            ..Self::new(url, model, api_key)
        }
    }

    fn session_update(&self, config: &SessionConfig) -> Value {
        let format = format_json(config.audio_format);
        let mut input = json!({
            "format": format,
            "noise_reduction": {"type": "near_field"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": true,
                "interrupt_response": true
            }
        });
        if let Some(model) = &config.transcription_model {
            input["transcription"] = json!({ "model": model });
        }
        let tools = function_tools(config);
        json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "model": self.model,
                "instructions": config.instructions,
                "output_modalities": ["audio"],
                "audio": {
                    "input": input,
                    "output": {"format": format, "voice": config.voice},
                },
                "tools": tools,
                "tool_choice": "auto",
            }
        })
    }
}

pub(crate) fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
        AudioFormat::Pcm16 { rate } => json!({"type": "audio/pcm", "rate": rate}),
    }
}

impl Dialect for OpenAiDialect {
    fn name(&self) -> &'static str {
        self.name
    }

    fn connect_request(&self) -> Result<Request<()>, ConnectError> {
        keyed_request(&self.url, &self.model, &self.api_key, self.key_header)
    }

    fn encode(&self, command: &LlmCommand) -> String {
        match command {
            LlmCommand::UpdateSession(config) => self.session_update(config).to_string(),
            other => encode_ga_command(other),
        }
    }

    fn encode_into(&self, command: &LlmCommand, out: &mut bytes::BytesMut) {
        if !append_ga_audio(command, out) {
            out.extend_from_slice(self.encode(command).as_bytes());
        }
    }

    fn decode(&self, text: &str) -> Result<Option<LlmEvent>, DecodeError> {
        decode_ga(text)
    }

    fn decode_stream(
        &self,
        text: &str,
        state: &mut StreamState,
        out: &mut Vec<LlmEvent>,
    ) -> Result<(), DecodeError> {
        out.extend(decode_ga_in(text, state)?);
        Ok(())
    }

    fn cancels_on_speech(&self) -> bool {
        // session.update sets turn_detection.interrupt_response = true.
        true
    }

    fn format_name(&self, format: AudioFormat) -> String {
        match format {
            AudioFormat::Pcmu => "audio/pcmu".into(),
            AudioFormat::Pcm16 { .. } => "audio/pcm".into(),
        }
    }
}

// One flat shape for every server event: parsed in a single pass, borrowing the large strings.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    // `deserialize_with`: serde copies an `Option<Cow>` it derives for itself (these three come in
    // every audio delta), so a visitor borrows them.
    #[serde(default, borrow, deserialize_with = "crate::wire::optional_borrowed")]
    response_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::wire::optional_borrowed")]
    item_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::wire::optional_borrowed")]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    audio_start_ms: Option<u64>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
    #[serde(default)]
    transcript: Option<String>,
    #[serde(default)]
    response: Option<WireResponse>,
    #[serde(default)]
    session: Option<WireSession>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireResponse {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireSession {
    #[serde(default)]
    audio: Option<WireSessionAudio>,
}

#[derive(Deserialize)]
struct WireSessionAudio {
    #[serde(default)]
    input: Option<WireAudioSide>,
    #[serde(default)]
    output: Option<WireAudioSide>,
}

#[derive(Deserialize)]
struct WireAudioSide {
    #[serde(default)]
    format: Option<WireFormat>,
}

#[derive(Deserialize)]
struct WireFormat {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Decodes a GA server event (shared with the OpenAI-compatible dialects).
pub fn decode_ga(text: &str) -> Result<Option<LlmEvent>, DecodeError> {
    decode_ga_in(text, &mut StreamState::default())
}

/// The id to put in an audio delta: the one `kept` already holds when it is the same text (a
/// reference count, no allocation), otherwise a new shared copy.
fn shared_id(kept: Option<&Arc<str>>, id: &str) -> Arc<str> {
    match kept {
        Some(kept) if **kept == *id => Arc::clone(kept),
        _ => Arc::from(id),
    }
}

/// [`decode_ga`] on a connection's stream: consecutive audio deltas of one item share its ids.
pub fn decode_ga_in(text: &str, state: &mut StreamState) -> Result<Option<LlmEvent>, DecodeError> {
    let wire: Wire<'_> =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let kind = wire.kind.as_ref();
    let missing = |field: &str| DecodeError::Malformed(format!("{kind} without {field}"));
    let owned =
        |v: Option<Cow<'_, str>>, field: &str| v.map(Cow::into_owned).ok_or_else(|| missing(field));
    let event = match kind {
        "response.output_audio.delta" => {
            let response = wire.response_id.ok_or_else(|| missing("response_id"))?;
            let item = wire.item_id.ok_or_else(|| missing("item_id"))?;
            let audio = owned(wire.delta, "delta")?;
            let kept = state.delta_ids.as_ref();
            let response_id = shared_id(kept.map(|k| &k.0), &response);
            let item_id = shared_id(kept.map(|k| &k.1), &item);
            state.delta_ids = Some((Arc::clone(&response_id), Arc::clone(&item_id)));
            LlmEvent::AudioDelta {
                response_id,
                item_id,
                audio,
            }
        }
        "response.output_audio.done" => LlmEvent::AudioDone {
            response_id: owned(wire.response_id, "response_id")?,
            item_id: owned(wire.item_id, "item_id")?,
        },
        "input_audio_buffer.speech_started" => LlmEvent::SpeechStarted {
            audio_start_ms: wire.audio_start_ms,
        },
        "input_audio_buffer.speech_stopped" => LlmEvent::SpeechStopped,
        "response.created" => LlmEvent::ResponseCreated {
            response_id: wire.response.ok_or_else(|| missing("response"))?.id,
        },
        "response.done" => {
            let response = wire.response.ok_or_else(|| missing("response"))?;
            let status = match response.status.as_deref() {
                Some("completed") => ResponseStatus::Completed,
                Some("cancelled") => ResponseStatus::Cancelled,
                Some("incomplete") => ResponseStatus::Incomplete,
                _ => ResponseStatus::Failed,
            };
            LlmEvent::ResponseDone {
                response_id: response.id,
                status,
            }
        }
        "response.function_call_arguments.done" => LlmEvent::ToolCall {
            response_id: owned(wire.response_id, "response_id")?,
            call_id: wire.call_id.ok_or_else(|| missing("call_id"))?,
            name: wire.name.ok_or_else(|| missing("name"))?,
            arguments: wire.arguments.unwrap_or_default(),
        },
        "conversation.item.input_audio_transcription.completed" => LlmEvent::Transcript {
            speaker: Speaker::Caller,
            text: wire.transcript.ok_or_else(|| missing("transcript"))?,
        },
        "response.output_audio_transcript.done" => LlmEvent::Transcript {
            speaker: Speaker::Agent,
            text: wire.transcript.ok_or_else(|| missing("transcript"))?,
        },
        "session.updated" => {
            let audio = wire.session.and_then(|s| s.audio);
            let (input, output) = match audio {
                Some(a) => (a.input, a.output),
                None => (None, None),
            };
            let format_of =
                |side: Option<WireAudioSide>| side.and_then(|s| s.format).map(|f| f.kind);
            LlmEvent::SessionUpdated {
                input_format: format_of(input),
                output_format: format_of(output),
            }
        }
        "error" => {
            let error = wire.error.ok_or_else(|| missing("error"))?;
            LlmEvent::Error {
                code: error.code.unwrap_or_else(|| "unknown".into()),
                message: error.message.unwrap_or_default(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::ToolDeclaration;

    fn dialect() -> OpenAiDialect {
        OpenAiDialect::new(
            "wss://api.openai.com/v1/realtime",
            "gpt-realtime",
            "sk-test",
        )
    }

    #[test]
    fn session_update_is_ga_shaped() {
        let config = SessionConfig {
            instructions: "Be brief.".into(),
            voice: "marin".into(),
            audio_format: AudioFormat::Pcmu,
            tools: vec![ToolDeclaration {
                name: "end_call".into(),
                description: "Hang up.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            transcription_model: Some("gpt-4o-mini-transcribe".into()),
            resumption_handle: None,
        };
        let v: Value =
            serde_json::from_str(&dialect().encode(&LlmCommand::UpdateSession(config))).unwrap();
        assert_eq!(v["type"], "session.update");
        assert_eq!(v["session"]["type"], "realtime");
        assert_eq!(
            v["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(
            v["session"]["audio"]["output"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(v["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(
            v["session"]["audio"]["input"]["transcription"]["model"],
            "gpt-4o-mini-transcribe"
        );
        assert_eq!(v["session"]["tools"][0]["type"], "function");
        // Beta-only fields must not appear.
        assert!(v["session"].get("modalities").is_none());
        assert!(v["session"].get("voice").is_none());
        assert!(v["session"].get("input_audio_format").is_none());
    }

    #[test]
    fn connect_request_has_bearer_and_no_beta_header() {
        let request = dialect().connect_request().unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(request.headers()["Authorization"], "Bearer sk-test");
        assert!(request.headers().get("OpenAI-Beta").is_none());
    }

    #[test]
    fn encode_into_appends_what_encode_returns() {
        let d = dialect();
        let mut out = bytes::BytesMut::from(&b"x"[..]);
        for command in [
            LlmCommand::AppendAudio("//79/A==".into()),
            LlmCommand::Truncate {
                item_id: "item_1".into(),
                audio_end_ms: 120,
            },
            LlmCommand::CancelResponse,
        ] {
            out.truncate(1);
            d.encode_into(&command, &mut out);
            assert_eq!(&out[1..], d.encode(&command).as_bytes(), "{command:?}");
        }
    }

    #[test]
    fn append_is_passthrough() {
        let text = dialect().encode(&LlmCommand::AppendAudio("//79/A==".into()));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(v["audio"], "//79/A==");
    }

    #[test]
    fn decodes_the_events_a_bridge_uses() {
        let d = dialect();
        assert_eq!(
            d.decode(r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"resp_1","item_id":"item_a1","output_index":0,"content_index":0,"delta":"AAA="}"#).unwrap(),
            Some(LlmEvent::AudioDelta { response_id: "resp_1".into(), item_id: "item_a1".into(), audio: "AAA=".into() })
        );
        assert_eq!(
            d.decode(r#"{"type":"response.function_call_arguments.done","response_id":"resp_2","item_id":"item_f1","output_index":1,"call_id":"call_1","name":"transfer_call","arguments":"{\"department\":\"sales\"}"}"#).unwrap(),
            Some(LlmEvent::ToolCall { response_id: "resp_2".into(), call_id: "call_1".into(), name: "transfer_call".into(), arguments: "{\"department\":\"sales\"}".into() })
        );
        assert_eq!(
            d.decode(r#"{"type":"response.done","response":{"id":"resp_1","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[]}}"#).unwrap(),
            Some(LlmEvent::ResponseDone { response_id: "resp_1".into(), status: ResponseStatus::Cancelled })
        );
        assert_eq!(
            d.decode(r#"{"type":"session.updated","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":24000}},"output":{"format":{"type":"audio/pcmu"}}}}}"#).unwrap(),
            Some(LlmEvent::SessionUpdated { input_format: Some("audio/pcm".into()), output_format: Some("audio/pcmu".into()) })
        );
        assert_eq!(
            d.decode(r#"{"type":"rate_limits.updated","rate_limits":[]}"#)
                .unwrap(),
            None
        );
        assert!(
            d.decode(r#"{"type":"response.output_audio.delta"}"#)
                .is_err()
        );
        assert!(d.decode("[1,2]").is_err());
    }
}

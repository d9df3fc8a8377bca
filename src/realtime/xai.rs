//! xAI Grok Voice Agent dialect (protocols.md §5.1): OpenAI GA event names, a hybrid
//! `session.update` (voice, instructions and turn detection flat as in the beta, audio formats
//! nested as in GA), `audio/pcmu` passthrough, `ping` keep-alive events, and the model chosen
//! only in the query string.
//!
//! Barge-in differs from OpenAI: whether the server cancels on speech is not documented, so the
//! bridge sends `response.cancel` itself and treats "no active response" answers as harmless; and
//! truncate is not relied on (Pipecat does not send it to Grok). Owns the wire mapping only; it
//! must not hold call state or touch sockets.

use serde_json::{Value, json};
use tungstenite::http::Request;

use super::openai::{
    KeyHeader, decode_ga, decode_ga_in, encode_ga_command, format_json, function_tools,
    keyed_request,
};
use super::{
    AudioFormat, ConnectError, DecodeError, Dialect, LlmCommand, LlmEvent, SessionConfig,
    StreamState,
};

/// The public endpoint (`XAI_REALTIME_URL` overrides it).
pub const DEFAULT_URL: &str = "wss://api.x.ai/v1/realtime";

/// How to reach the xAI realtime endpoint.
#[derive(Clone)]
pub struct XaiDialect {
    pub url: String,
    pub model: String,
    api_key: String,
}

impl std::fmt::Debug for XaiDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XaiDialect")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &"**redacted**")
            .finish()
    }
}

impl XaiDialect {
    pub fn new(
        url: impl Into<String>,
        model: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            api_key: api_key.into(),
        }
    }

    fn session_update(&self, config: &SessionConfig) -> Value {
        let format = format_json(config.audio_format);
        json!({
            "type": "session.update",
            "session": {
                "instructions": config.instructions,
                "voice": config.voice,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.85,
                    "prefix_padding_ms": 333,
                    "silence_duration_ms": 500
                },
                "audio": {
                    "input": {"format": format},
                    "output": {"format": format},
                },
                "tools": function_tools(config),
            }
        })
    }
}

/// Error codes xAI (like OpenAI) sends when a cancel raced the server's own end of the response.
const HARMLESS_CANCEL_CODES: &[&str] = &[
    "response_cancel_not_active",
    "conversation_already_has_active_response",
];

fn is_harmless_cancel_error(event: &LlmEvent) -> bool {
    match event {
        LlmEvent::Error { code, message } => {
            HARMLESS_CANCEL_CODES.contains(&code.as_str())
                || message.to_ascii_lowercase().contains("no active response")
        }
        _ => false,
    }
}

impl Dialect for XaiDialect {
    fn name(&self) -> &'static str {
        "xai"
    }

    fn connect_request(&self) -> Result<Request<()>, ConnectError> {
        keyed_request(&self.url, &self.model, &self.api_key, KeyHeader::Bearer)
    }

    fn encode(&self, command: &LlmCommand) -> String {
        match command {
            LlmCommand::UpdateSession(config) => self.session_update(config).to_string(),
            // Not relied on for Grok (see the module comment); the session does not ask for it.
            LlmCommand::Truncate { .. } => String::new(),
            other => encode_ga_command(other),
        }
    }

    fn encode_into(&self, command: &LlmCommand, out: &mut bytes::BytesMut) {
        if !super::openai::append_ga_audio(command, out) {
            out.extend_from_slice(self.encode(command).as_bytes());
        }
    }

    fn decode(&self, text: &str) -> Result<Option<LlmEvent>, DecodeError> {
        // `ping`, `conversation.created` and other extras are not GA events the bridge uses, so
        // `decode_ga` already passes them over as `None`.
        let event = decode_ga(text)?;
        Ok(event.filter(|e| !is_harmless_cancel_error(e)))
    }

    fn decode_stream(
        &self,
        text: &str,
        state: &mut StreamState,
        out: &mut Vec<LlmEvent>,
    ) -> Result<(), DecodeError> {
        let event = decode_ga_in(text, state)?;
        out.extend(event.filter(|e| !is_harmless_cancel_error(e)));
        Ok(())
    }

    fn cancels_on_speech(&self) -> bool {
        false
    }

    fn format_name(&self, format: AudioFormat) -> String {
        match format {
            AudioFormat::Pcmu => "audio/pcmu".into(),
            AudioFormat::Pcm16 { .. } => "audio/pcm".into(),
        }
    }

    fn supports_truncate(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::{ResponseStatus, ToolDeclaration};

    fn dialect() -> XaiDialect {
        XaiDialect::new(DEFAULT_URL, "grok-voice-think-fast-1.0", "xai-test")
    }

    fn config() -> SessionConfig {
        SessionConfig {
            instructions: "Be brief.".into(),
            voice: "eve".into(),
            audio_format: AudioFormat::Pcmu,
            tools: vec![ToolDeclaration {
                name: "end_call".into(),
                description: "Hang up.".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            transcription_model: None,
            resumption_handle: None,
        }
    }

    #[test]
    fn session_update_is_the_hybrid_shape() {
        let text = dialect().encode(&LlmCommand::UpdateSession(config()));
        let v: Value = serde_json::from_str(&text).unwrap();
        let session = &v["session"];
        assert_eq!(v["type"], "session.update");
        assert_eq!(session["voice"], "eve");
        assert_eq!(session["instructions"], "Be brief.");
        assert_eq!(session["turn_detection"]["type"], "server_vad");
        assert_eq!(session["audio"]["input"]["format"]["type"], "audio/pcmu");
        assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcmu");
        assert_eq!(session["tools"][0]["name"], "end_call");
        // GA-only fields: the model is in the query string, and there is no session type.
        assert!(session.get("type").is_none());
        assert!(session.get("model").is_none());
        assert!(session["audio"]["output"].get("voice").is_none());
    }

    #[test]
    fn connect_puts_the_model_in_the_query_and_a_bearer_key() {
        let request = dialect().connect_request().unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://api.x.ai/v1/realtime?model=grok-voice-think-fast-1.0"
        );
        assert_eq!(request.headers()["Authorization"], "Bearer xai-test");
    }

    #[test]
    fn audio_is_passed_through_and_truncate_is_not_sent() {
        let d = dialect();
        let v: Value =
            serde_json::from_str(&d.encode(&LlmCommand::AppendAudio("//79/A==".into()))).unwrap();
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(v["audio"], "//79/A==");
        assert_eq!(
            d.encode(&LlmCommand::Truncate {
                item_id: "i".into(),
                audio_end_ms: 10
            }),
            ""
        );
        assert_eq!(
            d.encode(&LlmCommand::CancelResponse),
            r#"{"type":"response.cancel"}"#
        );
        assert!(!d.supports_truncate());
        assert!(!d.cancels_on_speech());
    }

    #[test]
    fn decodes_pings_echoes_and_cancel_races() {
        let d = dialect();
        assert_eq!(
            d.decode(r#"{"type":"ping","timestamp":1732000000}"#)
                .unwrap(),
            None
        );
        assert_eq!(
            d.decode(r#"{"type":"conversation.created","conversation":{"id":"conv_1"}}"#)
                .unwrap(),
            None
        );
        // The echo keeps the hybrid shape: formats nested under audio.
        assert_eq!(
            d.decode(r#"{"type":"session.updated","session":{"voice":"eve","audio":{"input":{"format":{"type":"audio/pcmu"}},"output":{"format":{"type":"audio/pcm","rate":24000}}}}}"#)
                .unwrap(),
            Some(LlmEvent::SessionUpdated {
                input_format: Some("audio/pcmu".into()),
                output_format: Some("audio/pcm".into())
            })
        );
        assert_eq!(
            d.decode(r#"{"type":"error","error":{"code":"response_cancel_not_active","message":"Cancellation failed: no active response found"}}"#)
                .unwrap(),
            None
        );
        assert_eq!(
            d.decode(r#"{"type":"error","error":{"type":"invalid_request_error","message":"There is no active response to cancel"}}"#)
                .unwrap(),
            None
        );
        assert_eq!(
            d.decode(r#"{"type":"error","error":{"code":"invalid_value","message":"bad voice"}}"#)
                .unwrap(),
            Some(LlmEvent::Error {
                code: "invalid_value".into(),
                message: "bad voice".into()
            })
        );
        assert_eq!(
            d.decode(r#"{"type":"response.done","usage":{"total_tokens":5},"response":{"id":"r1","status":"completed"}}"#)
                .unwrap(),
            Some(LlmEvent::ResponseDone {
                response_id: "r1".into(),
                status: ResponseStatus::Completed
            })
        );
        assert!(d.decode(r#"{"type":"ping""#).is_err());
    }
}

//! Gemini Live (BidiGenerateContent) dialect (protocols.md §5.3): `setup` first, camel-case
//! messages with one top-level field each, PCM16 16 kHz in and 24 kHz out, `toolCall` with object
//! arguments answered by `toolResponse` (the model goes on by itself), `serverContent.interrupted`
//! instead of speech events (there is no truncate), `goAway` and `sessionResumptionUpdate`.
//!
//! Gemini has no response or item ids: one model turn is one response and one audio item, numbered
//! in the connection's [`StreamState`] (so ids never repeat across a resumed call's connections).
//! Transcription arrives in pieces and is emitted whole per turn. Owns the wire mapping only; it
//! must not hold call state, touch sockets, or convert audio (the call's transcoder does).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::{HeaderValue, Request};

use super::{
    AudioFormat, ConnectError, DecodeError, Dialect, LlmCommand, LlmEvent, ProviderAudio,
    ResponseStatus, SessionConfig, Speaker, StreamState,
};

/// The Developer API endpoint (`GEMINI_LIVE_URL` overrides it).
pub const DEFAULT_URL: &str = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
/// Gemini Live takes 16 kHz input and speaks at 24 kHz.
pub const INPUT_RATE: u32 = 16_000;
pub const OUTPUT_RATE: u32 = 24_000;
const INPUT_MIME: &str = "audio/pcm;rate=16000";
/// What a bare "respond now" becomes: Gemini has no response trigger, only conversation turns.
const RESPOND_NOW_CUE: &str = "(The call is connected. Speak to the caller now.)";

/// How to reach a Gemini Live endpoint.
#[derive(Clone)]
pub struct GeminiDialect {
    pub url: String,
    pub model: String,
    api_key: String,
}

impl std::fmt::Debug for GeminiDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiDialect")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &"**redacted**")
            .finish()
    }
}

impl GeminiDialect {
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

    fn setup(&self, config: &SessionConfig) -> Value {
        let model = if self.model.starts_with("models/") {
            self.model.clone()
        } else {
            format!("models/{}", self.model)
        };
        let mut setup = json!({
            "model": model,
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": config.voice}}},
            },
            "systemInstruction": {"parts": [{"text": config.instructions}]},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "realtimeInputConfig": {
                "automaticActivityDetection": {
                    "disabled": false,
                    "prefixPaddingMs": 300,
                    "silenceDurationMs": 500,
                },
                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
            },
            "sessionResumption": match &config.resumption_handle {
                Some(handle) => json!({"handle": handle}),
                None => json!({}),
            },
            "contextWindowCompression": {"slidingWindow": {}},
        });
        if !config.tools.is_empty() {
            let declarations: Vec<Value> = config
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "parameters": to_gemini_schema(&t.parameters),
                    })
                })
                .collect();
            setup["tools"] = json!([{ "functionDeclarations": declarations }]);
        }
        json!({ "setup": setup })
    }
}

/// Gemini's `Schema` is an OpenAPI subset with upper-case type names; keep only what it knows.
fn to_gemini_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        let converted = match key.as_str() {
            "type" => match value.as_str() {
                Some(name) => Value::String(name.to_ascii_uppercase()),
                None => continue,
            },
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, prop)| (name.clone(), to_gemini_schema(prop)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" => to_gemini_schema(value),
            "description" | "enum" | "required" | "nullable" | "format" => value.clone(),
            _ => continue,
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

fn user_turn(text: &str) -> String {
    json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": true}})
        .to_string()
}

/// A tool's JSON output as the `response` object Gemini wants.
fn tool_response_object(output: &str) -> Value {
    match serde_json::from_str::<Value>(output) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => json!({ "result": other }),
        Err(_) => json!({ "result": output }),
    }
}

// Server messages: one top-level field each, parsed in one pass, audio borrowed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage<'a> {
    #[serde(default)]
    setup_complete: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow)]
    server_content: Option<ServerContent<'a>>,
    #[serde(default)]
    tool_call: Option<ToolCall>,
    #[serde(default)]
    go_away: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    session_resumption_update: Option<ResumptionUpdate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerContent<'a> {
    #[serde(default, borrow)]
    model_turn: Option<ModelTurn<'a>>,
    #[serde(default)]
    turn_complete: bool,
    #[serde(default)]
    interrupted: bool,
    #[serde(default)]
    input_transcription: Option<Transcription>,
    #[serde(default)]
    output_transcription: Option<Transcription>,
}

#[derive(Deserialize)]
struct ModelTurn<'a> {
    #[serde(default, borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(default, borrow)]
    inline_data: Option<Blob<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    #[serde(default, borrow)]
    mime_type: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Transcription {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolCall {
    #[serde(default)]
    function_calls: Vec<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResumptionUpdate {
    #[serde(default)]
    new_handle: Option<String>,
    #[serde(default)]
    resumable: Option<bool>,
}

/// The rate in a mime type such as `audio/pcm;rate=24000` (`None` if absent).
fn mime_rate(mime: &str) -> Option<u32> {
    mime.split(';')
        .filter_map(|p| p.trim().strip_prefix("rate="))
        .find_map(|r| r.trim().parse().ok())
}

/// The open turn's id, shared (no copy per audio chunk); opens a turn if none is.
fn open_turn(state: &mut StreamState, out: &mut Vec<LlmEvent>) -> std::sync::Arc<str> {
    if let Some(turn) = &state.open_turn {
        return turn.clone();
    }
    flush_caller_text(state, out);
    state.turns += 1;
    let turn = format!("g{}-turn{}", state.connection, state.turns);
    out.push(LlmEvent::ResponseCreated {
        response_id: turn.clone(),
    });
    let turn: std::sync::Arc<str> = turn.into();
    state.open_turn = Some(turn.clone());
    turn
}

fn close_turn(state: &mut StreamState, status: ResponseStatus, out: &mut Vec<LlmEvent>) {
    let Some(turn) = state.open_turn.take() else {
        return;
    };
    out.push(LlmEvent::AudioDone {
        response_id: turn.to_string(),
        item_id: turn.to_string(),
    });
    let text = std::mem::take(&mut state.agent_text);
    if !text.trim().is_empty() {
        out.push(LlmEvent::Transcript {
            speaker: Speaker::Agent,
            text: text.trim().to_owned(),
        });
    }
    out.push(LlmEvent::ResponseDone {
        response_id: turn.to_string(),
        status,
    });
}

fn flush_caller_text(state: &mut StreamState, out: &mut Vec<LlmEvent>) {
    let text = std::mem::take(&mut state.caller_text);
    if !text.trim().is_empty() {
        out.push(LlmEvent::Transcript {
            speaker: Speaker::Caller,
            text: text.trim().to_owned(),
        });
    }
}

/// The caller-audio message around its base64 payload and its MIME type.
const AUDIO_HEAD: &str = r#"{"realtimeInput":{"audio":{"data":""#;
const AUDIO_MIME: &str = r#"","mimeType":""#;
const AUDIO_TAIL: &str = r#""}}}"#;

impl Dialect for GeminiDialect {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn connect_request(&self) -> Result<Request<()>, ConnectError> {
        let bad_url = |reason: String| ConnectError::BadUrl {
            url: self.url.clone(),
            reason,
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| bad_url(e.to_string()))?;
        // The key goes in a header (as the SDK sends it), never in a URL that may be logged.
        let key = HeaderValue::from_str(&self.api_key)
            .map_err(|_| bad_url("API key is not a valid header value".into()))?;
        request.headers_mut().insert("x-goog-api-key", key);
        Ok(request)
    }

    fn encode_into(&self, command: &LlmCommand, out: &mut bytes::BytesMut) {
        match command {
            LlmCommand::AppendAudio(audio) => super::append_parts(
                out,
                &[
                    AUDIO_HEAD,
                    audio.as_str(),
                    AUDIO_MIME,
                    INPUT_MIME,
                    AUDIO_TAIL,
                ],
            ),
            other => out.extend_from_slice(self.encode(other).as_bytes()),
        }
    }

    fn encode(&self, command: &LlmCommand) -> String {
        match command {
            LlmCommand::AppendAudio(audio) => {
                // Hot path: base64 needs no JSON escaping. Sized exactly: the socket takes the
                // string over without copying or reallocating.
                let parts = [
                    AUDIO_HEAD,
                    audio.as_str(),
                    AUDIO_MIME,
                    INPUT_MIME,
                    AUDIO_TAIL,
                ];
                let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
                parts.iter().for_each(|p| out.push_str(p));
                out
            }
            LlmCommand::UpdateSession(config) => self.setup(config).to_string(),
            // No truncate and no cancel exist: the server interrupts itself on caller speech.
            // No out-of-band response either: a filler turn would become part of the conversation.
            LlmCommand::Truncate { .. }
            | LlmCommand::CancelResponse
            | LlmCommand::Filler { .. } => String::new(),
            LlmCommand::ToolResult {
                call_id,
                name,
                output,
            } => json!({"toolResponse": {"functionResponses": [
                {"id": call_id, "name": name, "response": tool_response_object(output)}
            ]}})
            .to_string(),
            LlmCommand::CreateResponse { instructions } => {
                user_turn(instructions.as_deref().unwrap_or(RESPOND_NOW_CUE))
            }
            LlmCommand::SystemNote(text) => user_turn(text),
        }
    }

    fn decode(&self, text: &str) -> Result<Option<LlmEvent>, DecodeError> {
        let mut events = Vec::new();
        self.decode_stream(text, &mut StreamState::default(), &mut events)?;
        Ok(events.into_iter().next())
    }

    fn decode_stream(
        &self,
        text: &str,
        state: &mut StreamState,
        out: &mut Vec<LlmEvent>,
    ) -> Result<(), DecodeError> {
        // serde would also take a JSON array as a struct; every server message is an object.
        if !text.trim_start().starts_with('{') {
            return Err(DecodeError::Malformed("not a JSON object".into()));
        }
        let message: ServerMessage<'_> =
            serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if message.setup_complete.is_some() {
            let (input, output) = self.formats();
            out.push(LlmEvent::SessionUpdated {
                input_format: Some(input),
                output_format: Some(output),
            });
        }
        if let Some(content) = message.server_content {
            if let Some(t) = content.input_transcription {
                state.caller_text.push_str(&t.text);
            }
            if content.interrupted {
                out.push(LlmEvent::Interrupted);
                close_turn(state, ResponseStatus::Cancelled, out);
            }
            if let Some(turn) = content.model_turn {
                for blob in turn.parts.into_iter().filter_map(|p| p.inline_data) {
                    if !blob.mime_type.starts_with("audio/pcm")
                        || mime_rate(&blob.mime_type).is_some_and(|r| r != OUTPUT_RATE)
                    {
                        return Err(DecodeError::UnexpectedAudioFormat {
                            expected: format!("audio/pcm;rate={OUTPUT_RATE}"),
                            got: blob.mime_type.into_owned(),
                        });
                    }
                    let turn = open_turn(state, out);
                    out.push(LlmEvent::AudioDelta {
                        response_id: turn.clone(),
                        item_id: turn,
                        audio: blob.data.into_owned(),
                    });
                }
            }
            if let Some(t) = content.output_transcription {
                state.agent_text.push_str(&t.text);
            }
            if content.turn_complete {
                close_turn(state, ResponseStatus::Completed, out);
                flush_caller_text(state, out);
            }
        }
        if let Some(call) = message.tool_call {
            let turn = open_turn(state, out);
            for (index, function) in call.function_calls.into_iter().enumerate() {
                out.push(LlmEvent::ToolCall {
                    response_id: turn.to_string(),
                    call_id: function.id.unwrap_or_else(|| format!("{turn}-call{index}")),
                    name: function.name,
                    arguments: function
                        .args
                        .map_or_else(|| "{}".to_owned(), |a| a.to_string()),
                });
            }
            // The model now waits for the results: as far as the call is concerned this response
            // is over, and the answer after the results is a new turn.
            close_turn(state, ResponseStatus::Completed, out);
        }
        if message.go_away.is_some() {
            out.push(LlmEvent::GoingAway);
        }
        if let Some(update) = message.session_resumption_update
            && update.resumable != Some(false)
            && let Some(handle) = update.new_handle.filter(|h| !h.is_empty())
        {
            out.push(LlmEvent::ResumptionHandle(handle));
        }
        Ok(())
    }

    fn cancels_on_speech(&self) -> bool {
        true
    }

    fn format_name(&self, format: AudioFormat) -> String {
        match format {
            AudioFormat::Pcmu => "audio/pcmu".into(),
            AudioFormat::Pcm16 { rate } => format!("audio/pcm;rate={rate}"),
        }
    }

    fn provider_audio(&self) -> ProviderAudio {
        ProviderAudio::Pcm16 {
            input_rate: INPUT_RATE,
            output_rate: OUTPUT_RATE,
        }
    }

    fn supports_truncate(&self) -> bool {
        false
    }

    fn continues_after_tool_results(&self) -> bool {
        true
    }
}

impl GeminiDialect {
    /// The formats Gemini's protocol fixes; `setupComplete` confirms a session that uses them.
    fn formats(&self) -> (String, String) {
        (
            self.format_name(AudioFormat::Pcm16 { rate: INPUT_RATE }),
            self.format_name(AudioFormat::Pcm16 { rate: OUTPUT_RATE }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::ToolDeclaration;

    fn dialect() -> GeminiDialect {
        GeminiDialect::new(DEFAULT_URL, "gemini-live-2.5-flash-preview", "AIza-test")
    }

    fn config(handle: Option<&str>) -> SessionConfig {
        SessionConfig {
            instructions: "You are a phone agent.".into(),
            voice: "Puck".into(),
            audio_format: AudioFormat::Pcm16 { rate: INPUT_RATE },
            tools: vec![ToolDeclaration {
                name: "transfer_call".into(),
                description: "Transfer.".into(),
                parameters: json!({"type": "object", "additionalProperties": false,
                    "properties": {"department": {"type": "string", "enum": ["sales"]},
                                   "tags": {"type": "array", "items": {"type": "string"}}},
                    "required": ["department"]}),
            }],
            transcription_model: None,
            resumption_handle: handle.map(str::to_owned),
        }
    }

    fn decode_all(d: &GeminiDialect, state: &mut StreamState, text: &str) -> Vec<LlmEvent> {
        let mut out = Vec::new();
        d.decode_stream(text, state, &mut out).unwrap();
        out
    }

    #[test]
    fn setup_is_first_and_camel_case() {
        let v: Value =
            serde_json::from_str(&dialect().encode(&LlmCommand::UpdateSession(config(None))))
                .unwrap();
        let setup = &v["setup"];
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert_eq!(setup["model"], "models/gemini-live-2.5-flash-preview");
        assert_eq!(
            setup["generationConfig"]["responseModalities"],
            json!(["AUDIO"])
        );
        assert_eq!(
            setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Puck"
        );
        assert_eq!(
            setup["systemInstruction"]["parts"][0]["text"],
            "You are a phone agent."
        );
        assert_eq!(setup["sessionResumption"], json!({}));
        let declaration = &setup["tools"][0]["functionDeclarations"][0];
        assert_eq!(declaration["name"], "transfer_call");
        assert_eq!(
            declaration["parameters"],
            json!({"type": "OBJECT", "required": ["department"], "properties": {
                "department": {"type": "STRING", "enum": ["sales"]},
                "tags": {"type": "ARRAY", "items": {"type": "STRING"}}}})
        );
        let resumed: Value = serde_json::from_str(
            &dialect().encode(&LlmCommand::UpdateSession(config(Some("h-42")))),
        )
        .unwrap();
        assert_eq!(
            resumed["setup"]["sessionResumption"],
            json!({"handle": "h-42"})
        );
    }

    #[test]
    fn connect_sends_the_key_as_a_header() {
        let request = dialect().connect_request().unwrap();
        assert_eq!(request.uri().to_string(), DEFAULT_URL);
        assert_eq!(request.headers()["x-goog-api-key"], "AIza-test");
    }

    #[test]
    fn commands_map_to_realtime_input_tool_response_and_turns() {
        let d = dialect();
        let v: Value =
            serde_json::from_str(&d.encode(&LlmCommand::AppendAudio("AAEC".into()))).unwrap();
        assert_eq!(
            v,
            json!({"realtimeInput": {"audio": {"data": "AAEC", "mimeType": "audio/pcm;rate=16000"}}})
        );
        let v: Value = serde_json::from_str(&d.encode(&LlmCommand::ToolResult {
            call_id: "fc_1".into(),
            name: "transfer_call".into(),
            output: r#"{"ok":true}"#.into(),
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"toolResponse": {"functionResponses": [{"id": "fc_1", "name": "transfer_call", "response": {"ok": true}}]}})
        );
        let v: Value = serde_json::from_str(&d.encode(&LlmCommand::ToolResult {
            call_id: "fc_2".into(),
            name: "n".into(),
            output: "plain words".into(),
        }))
        .unwrap();
        assert_eq!(
            v["toolResponse"]["functionResponses"][0]["response"],
            json!({"result": "plain words"})
        );
        let v: Value = serde_json::from_str(&d.encode(&LlmCommand::CreateResponse {
            instructions: Some("Say goodbye.".into()),
        }))
        .unwrap();
        assert_eq!(
            v["clientContent"]["turns"][0]["parts"][0]["text"],
            "Say goodbye."
        );
        assert_eq!(v["clientContent"]["turnComplete"], true);
        assert_eq!(d.encode(&LlmCommand::CancelResponse), "");
        assert_eq!(
            d.encode(&LlmCommand::Truncate {
                item_id: "x".into(),
                audio_end_ms: 1
            }),
            ""
        );
    }

    #[test]
    fn a_model_turn_becomes_one_response_with_one_audio_item() {
        let d = dialect();
        let mut state = StreamState::for_connection(2);
        assert_eq!(
            decode_all(&d, &mut state, r#"{"setupComplete":{}}"#),
            vec![LlmEvent::SessionUpdated {
                input_format: Some("audio/pcm;rate=16000".into()),
                output_format: Some("audio/pcm;rate=24000".into())
            }]
        );
        assert!(
            decode_all(
                &d,
                &mut state,
                r#"{"serverContent":{"inputTranscription":{"text":"I need "}}}"#
            )
            .is_empty()
        );
        assert!(
            decode_all(
                &d,
                &mut state,
                r#"{"serverContent":{"inputTranscription":{"text":"a cleaning"}}}"#
            )
            .is_empty()
        );
        let events = decode_all(
            &d,
            &mut state,
            r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAAA"}}]}}}"#,
        );
        assert_eq!(
            events,
            vec![
                LlmEvent::Transcript {
                    speaker: Speaker::Caller,
                    text: "I need a cleaning".into()
                },
                LlmEvent::ResponseCreated {
                    response_id: "g2-turn1".into()
                },
                LlmEvent::AudioDelta {
                    response_id: "g2-turn1".into(),
                    item_id: "g2-turn1".into(),
                    audio: "AAAA".into()
                },
            ]
        );
        decode_all(
            &d,
            &mut state,
            r#"{"serverContent":{"outputTranscription":{"text":"Sure, "}}}"#,
        );
        decode_all(
            &d,
            &mut state,
            r#"{"serverContent":{"outputTranscription":{"text":"when?"}}}"#,
        );
        assert_eq!(
            decode_all(
                &d,
                &mut state,
                r#"{"serverContent":{"generationComplete":true}}"#
            ),
            vec![]
        );
        assert_eq!(
            decode_all(&d, &mut state, r#"{"serverContent":{"turnComplete":true}}"#),
            vec![
                LlmEvent::AudioDone {
                    response_id: "g2-turn1".into(),
                    item_id: "g2-turn1".into()
                },
                LlmEvent::Transcript {
                    speaker: Speaker::Agent,
                    text: "Sure, when?".into()
                },
                LlmEvent::ResponseDone {
                    response_id: "g2-turn1".into(),
                    status: ResponseStatus::Completed
                },
            ]
        );
        // The next turn gets a new id.
        let events = decode_all(
            &d,
            &mut state,
            r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQID"}}]}}}"#,
        );
        assert_eq!(
            events[0],
            LlmEvent::ResponseCreated {
                response_id: "g2-turn2".into()
            }
        );
    }

    #[test]
    fn interruption_ends_the_turn_as_cancelled() {
        let d = dialect();
        let mut state = StreamState::default();
        decode_all(
            &d,
            &mut state,
            r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AAAA"}}]}}}"#,
        );
        assert_eq!(
            decode_all(&d, &mut state, r#"{"serverContent":{"interrupted":true}}"#),
            vec![
                LlmEvent::Interrupted,
                LlmEvent::AudioDone {
                    response_id: "g0-turn1".into(),
                    item_id: "g0-turn1".into()
                },
                LlmEvent::ResponseDone {
                    response_id: "g0-turn1".into(),
                    status: ResponseStatus::Cancelled
                },
            ]
        );
        // A turnComplete after the interruption closes nothing more.
        assert!(
            decode_all(&d, &mut state, r#"{"serverContent":{"turnComplete":true}}"#).is_empty()
        );
    }

    #[test]
    fn tool_calls_have_object_arguments_and_close_the_turn() {
        let d = dialect();
        let mut state = StreamState::default();
        let events = decode_all(
            &d,
            &mut state,
            r#"{"toolCall":{"functionCalls":[{"id":"fc_1","name":"transfer_call","args":{"department":"sales"}},{"name":"get_current_time"}]}}"#,
        );
        assert_eq!(
            events,
            vec![
                LlmEvent::ResponseCreated {
                    response_id: "g0-turn1".into()
                },
                LlmEvent::ToolCall {
                    response_id: "g0-turn1".into(),
                    call_id: "fc_1".into(),
                    name: "transfer_call".into(),
                    arguments: r#"{"department":"sales"}"#.into()
                },
                LlmEvent::ToolCall {
                    response_id: "g0-turn1".into(),
                    call_id: "g0-turn1-call1".into(),
                    name: "get_current_time".into(),
                    arguments: "{}".into()
                },
                LlmEvent::AudioDone {
                    response_id: "g0-turn1".into(),
                    item_id: "g0-turn1".into()
                },
                LlmEvent::ResponseDone {
                    response_id: "g0-turn1".into(),
                    status: ResponseStatus::Completed
                },
            ]
        );
    }

    #[test]
    fn go_away_and_resumption_handles() {
        let d = dialect();
        let mut state = StreamState::default();
        assert_eq!(
            decode_all(&d, &mut state, r#"{"goAway":{"timeLeft":"50s"}}"#),
            vec![LlmEvent::GoingAway]
        );
        assert_eq!(
            decode_all(
                &d,
                &mut state,
                r#"{"sessionResumptionUpdate":{"newHandle":"h-1","resumable":true}}"#
            ),
            vec![LlmEvent::ResumptionHandle("h-1".into())]
        );
        assert!(
            decode_all(
                &d,
                &mut state,
                r#"{"sessionResumptionUpdate":{"resumable":false}}"#
            )
            .is_empty()
        );
        assert!(
            decode_all(
                &d,
                &mut state,
                r#"{"sessionResumptionUpdate":{"newHandle":"h-2","resumable":false}}"#
            )
            .is_empty()
        );
        assert!(
            decode_all(&d, &mut state, r#"{"usageMetadata":{"totalTokenCount":5}}"#).is_empty()
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let d = dialect();
        let mut state = StreamState::default();
        let mut out = Vec::new();
        assert!(d.decode_stream("[1]", &mut state, &mut out).is_err());
        assert!(d.decode_stream(r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=16000","data":"AA"}}]}}}"#, &mut state, &mut out).is_err_and(|e| matches!(e, DecodeError::UnexpectedAudioFormat { .. })));
        assert!(
            d.decode_stream(
                r#"{"toolCall":{"functionCalls":[{"id":"x"}]}}"#,
                &mut state,
                &mut out
            )
            .is_err()
        );
        assert!(out.is_empty());
    }
}

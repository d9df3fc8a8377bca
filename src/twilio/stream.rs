//! Twilio Media Streams wire protocol (bidirectional `<Connect><Stream>`): parsing the JSON text frames
//! Twilio sends and writing the ones we send back (protocols.md §1.2–1.5).
//!
//! Owns frame shapes and their validation (size, base64). It must not hold call state or decide what
//! a frame means for the call: that is the call actor's job.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};

/// μ-law bytes in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// Milliseconds of μ-law audio per byte is 1/8: 8 bytes per millisecond.
pub const ULAW_BYTES_PER_MS: usize = 8;
/// Largest media payload accepted from Twilio, in decoded bytes (Twilio sends 160; allow slack).
pub const MAX_INBOUND_PAYLOAD: usize = 4096;
/// Largest text frame accepted on the media socket, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Why a frame from Twilio was not usable. The kind names are the `errors_total{kind}` labels.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {0} bytes, over the {MAX_FRAME_LEN}-byte limit")]
    Oversized(usize),
    #[error("malformed JSON frame: {0}")]
    Malformed(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("media payload is not valid base64")]
    BadBase64,
    #[error("media payload decodes to {0} bytes, over the {MAX_INBOUND_PAYLOAD}-byte limit")]
    OversizedPayload(usize),
    #[error("binary frame on the media socket")]
    Binary,
}

impl FrameError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Oversized(_) => "twilio_oversized_frame",
            FrameError::Malformed(_) => "twilio_malformed_frame",
            FrameError::UnknownEvent(_) => "twilio_unknown_event",
            FrameError::BadBase64 => "twilio_bad_base64",
            FrameError::OversizedPayload(_) => "twilio_oversized_payload",
            FrameError::Binary => "twilio_binary_frame",
        }
    }
}

/// The `start` message's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub custom_parameters: HashMap<String, String>,
}

/// One message from Twilio, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioEvent {
    Connected,
    Start(StreamStart),
    /// Inbound caller audio: base64 μ-law exactly as Twilio sent it (already checked to decode), its
    /// decoded length, and the stream timestamp in ms.
    Media {
        timestamp_ms: u64,
        payload: String,
        len: usize,
    },
    Mark {
        name: String,
    },
    Dtmf {
        digit: String,
    },
    Stop,
}

// One flat shape for every event: serde parses it in a single pass without buffering, which an
// internally tagged enum would not (this runs for every 20 ms frame of every call).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    // serde borrows a `Cow` field only when it is not wrapped: an `Option<Cow>` would be copied
    // on every frame (Twilio puts `streamSid` in each one).
    #[serde(
        rename = "streamSid",
        default,
        borrow,
        deserialize_with = "crate::wire::optional_borrowed"
    )]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(default)]
    start: Option<WireStart>,
    #[serde(default, borrow)]
    media: Option<WireMedia<'a>>,
    #[serde(default, borrow)]
    mark: Option<WireMark<'a>>,
    #[serde(default)]
    dtmf: Option<WireDtmf>,
}

#[derive(Deserialize)]
struct WireStart {
    #[serde(rename = "streamSid", default)]
    stream_sid: Option<String>,
    #[serde(rename = "callSid")]
    call_sid: String,
    #[serde(rename = "accountSid", default)]
    account_sid: String,
    #[serde(rename = "customParameters", default)]
    custom_parameters: HashMap<String, String>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(default, deserialize_with = "timestamp")]
    timestamp: Option<u64>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

/// Twilio writes numbers as strings; accept either without buffering (an untagged enum would
/// allocate on every frame).
fn timestamp<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a timestamp in ms, as a string or a number")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("media timestamp {v:?}")))
        }
    }
    deserializer.deserialize_any(Visitor)
}

#[derive(Deserialize)]
struct WireMark<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireDtmf {
    digit: String,
}

/// Parses one text frame from Twilio.
pub fn parse_frame(text: &str) -> Result<TwilioEvent, FrameError> {
    parse_frame_with(text, &mut String::new())
}

/// Parses one text frame from Twilio; a `media` payload or a `mark` echo's name is copied into
/// `spare` (taken, cleared, its capacity reused), so a caller that hands the string back for the
/// next frame parses media and marks without allocating. `spare` is untouched unless a media or
/// mark event is returned.
pub fn parse_frame_with(text: &str, spare: &mut String) -> Result<TwilioEvent, FrameError> {
    if text.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversized(text.len()));
    }
    let wire: Wire<'_> =
        serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let missing = |what: &str| FrameError::Malformed(format!("{} without {what}", wire.event));
    Ok(match wire.event.as_ref() {
        "media" => {
            let media = wire.media.as_ref().ok_or_else(|| missing("media"))?;
            let len = validate_payload(&media.payload)?;
            let timestamp_ms = media.timestamp.ok_or_else(|| missing("timestamp"))?;
            let mut payload = std::mem::take(spare);
            payload.clear();
            payload.push_str(&media.payload);
            TwilioEvent::Media {
                timestamp_ms,
                payload,
                len,
            }
        }
        "mark" => {
            let mark = wire.mark.as_ref().ok_or_else(|| missing("mark"))?;
            let mut name = std::mem::take(spare);
            name.clear();
            name.push_str(&mark.name);
            TwilioEvent::Mark { name }
        }
        "start" => {
            let start = wire.start.ok_or_else(|| missing("start"))?;
            let stream_sid = start
                .stream_sid
                .or(wire.stream_sid.map(Cow::into_owned))
                .ok_or_else(|| FrameError::Malformed("start without streamSid".into()))?;
            TwilioEvent::Start(StreamStart {
                stream_sid,
                call_sid: start.call_sid,
                account_sid: start.account_sid,
                custom_parameters: start.custom_parameters,
            })
        }
        "dtmf" => TwilioEvent::Dtmf {
            digit: wire.dtmf.ok_or_else(|| missing("dtmf"))?.digit,
        },
        "connected" => TwilioEvent::Connected,
        "stop" => TwilioEvent::Stop,
        other => return Err(FrameError::UnknownEvent(other.to_owned())),
    })
}

/// Checks that `payload` is base64 of at most [`MAX_INBOUND_PAYLOAD`] bytes, without allocating
/// or decoding, and returns its decoded length.
fn validate_payload(payload: &str) -> Result<usize, FrameError> {
    let estimated = base64::decoded_len_estimate(payload.len());
    if estimated > MAX_INBOUND_PAYLOAD + 3 {
        return Err(FrameError::OversizedPayload(estimated));
    }
    let len = canonical_base64_len(payload.as_bytes()).ok_or(FrameError::BadBase64)?;
    if len > MAX_INBOUND_PAYLOAD {
        return Err(FrameError::OversizedPayload(len));
    }
    Ok(len)
}

/// Each byte's 6-bit value in the standard base64 alphabet, or [`NOT_BASE64`].
const NOT_BASE64: u8 = 0xFF;
const BASE64_VALUES: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The decoded length of `text` if it is what [`STANDARD`] decodes (standard alphabet, canonical
/// `=` padding to a multiple of four, no stray bits in the last symbol), `None` otherwise. The
/// same verdict as decoding it, for a table lookup per byte instead of a decode into a buffer
/// (this runs for every caller frame; `tests::payload_check_agrees_with_the_decoder` holds it to
/// the decoder's answer).
fn canonical_base64_len(text: &[u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pad = match text {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    let symbols = &text[..text.len() - pad];
    // OR of every symbol's value: any byte outside the alphabet sets the top bits.
    let all = symbols
        .iter()
        .fold(0u8, |acc, &b| acc | BASE64_VALUES[b as usize]);
    if all & 0xC0 != 0 {
        return None;
    }
    // The last symbol before the padding carries bits past the last byte: they must be zero.
    let unused_bits = match pad {
        2 => 0b1111,
        1 => 0b11,
        _ => 0,
    };
    if let Some(&last) = symbols.last()
        && BASE64_VALUES[last as usize] & unused_bits != 0
    {
        return None;
    }
    Some(text.len() / 4 * 3 - pad)
}

/// The fixed parts of one stream's outbound messages, written once per call: per message only the
/// payload (or the mark's name) is added, into one string of exactly the right size. The output is
/// byte for byte what [`media_message`], [`mark_message`] and [`clear_message`] write.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// `{"event":"media","streamSid":"…","media":{"payload":"`
    media_head: String,
    /// `{"event":"mark","streamSid":"…","mark":{"name":`
    mark_head: String,
    clear: String,
}

const MEDIA_TAIL: &str = r#""}}"#;
const MARK_TAIL: &str = "}}";

impl Outbound {
    pub fn new(stream_sid: &str) -> Self {
        let mut media_head = String::from(r#"{"event":"media","streamSid":"#);
        push_json_string(&mut media_head, stream_sid);
        media_head.push_str(r#","media":{"payload":""#);
        let mut mark_head = String::from(r#"{"event":"mark","streamSid":"#);
        push_json_string(&mut mark_head, stream_sid);
        mark_head.push_str(r#","mark":{"name":"#);
        Self {
            media_head,
            mark_head,
            clear: clear_message(stream_sid),
        }
    }

    /// A `media` message carrying `audio` (raw μ-law).
    pub fn media(&self, audio: &[u8]) -> String {
        let len = self.media_head.len() + audio.len().div_ceil(3) * 4 + MEDIA_TAIL.len();
        let mut out = String::with_capacity(len);
        out.push_str(&self.media_head);
        STANDARD.encode_string(audio, &mut out);
        out.push_str(MEDIA_TAIL);
        out
    }

    /// A `mark` message named `name`.
    pub fn mark(&self, name: &str) -> String {
        let plain = plain_name(name);
        let mut out =
            String::with_capacity(self.mark_head.len() + name.len() + 2 + MARK_TAIL.len());
        out.push_str(&self.mark_head);
        if plain {
            out.push('"');
            out.push_str(name);
            out.push('"');
        } else {
            push_json_string(&mut out, name);
        }
        out.push_str(MARK_TAIL);
        out
    }

    /// A `clear` message.
    pub fn clear(&self) -> String {
        self.clear.clone()
    }

    /// Appends a `media` message carrying `audio` (raw μ-law) to `out`, reserving its exact size
    /// first: the bytes [`media`](Self::media) returns, without a per-message allocation once `out`
    /// is a reused buffer whose earlier messages have been written.
    pub fn media_into(&self, audio: &[u8], out: &mut BytesMut) {
        let b64 = audio.len().div_ceil(3) * 4;
        let at = out.len();
        out.reserve(self.media_head.len() + b64 + MEDIA_TAIL.len());
        out.extend_from_slice(self.media_head.as_bytes());
        out.resize(at + self.media_head.len() + b64, 0);
        // The slice is exactly the encoded length, so this cannot fail; if it ever did, the
        // message is cut back rather than sent half written.
        if STANDARD
            .encode_slice(audio, &mut out[at + self.media_head.len()..])
            .is_err()
        {
            out.truncate(at);
            return;
        }
        out.extend_from_slice(MEDIA_TAIL.as_bytes());
    }

    /// Appends a `mark` message named `name` to `out` (the bytes [`mark`](Self::mark) returns).
    pub fn mark_into(&self, name: &str, out: &mut BytesMut) {
        if !plain_name(name) {
            out.extend_from_slice(self.mark(name).as_bytes());
            return;
        }
        out.reserve(self.mark_head.len() + name.len() + 2 + MARK_TAIL.len());
        out.extend_from_slice(self.mark_head.as_bytes());
        out.extend_from_slice(b"\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\"");
        out.extend_from_slice(MARK_TAIL.as_bytes());
    }

    /// Appends a `clear` message to `out`.
    pub fn clear_into(&self, out: &mut BytesMut) {
        out.extend_from_slice(self.clear.as_bytes());
    }
}

/// The session's mark names are plain ASCII, written as they are; anything else is escaped by serde.
fn plain_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b == b' ' || (b.is_ascii_graphic() && b != b'"' && b != b'\\'))
}

/// Writes an outbound `media` message carrying `audio` (raw μ-law) into one JSON string.
pub fn media_message(stream_sid: &str, audio: &[u8]) -> String {
    let mut out = String::with_capacity(64 + stream_sid.len() + audio.len().div_ceil(3) * 4);
    out.push_str(r#"{"event":"media","streamSid":"#);
    push_json_string(&mut out, stream_sid);
    out.push_str(r#","media":{"payload":""#);
    STANDARD.encode_string(audio, &mut out);
    out.push_str(r#""}}"#);
    out
}

/// Writes an outbound `mark` message.
pub fn mark_message(stream_sid: &str, name: &str) -> String {
    serde_json::to_string(&OutMark {
        event: "mark",
        stream_sid,
        mark: OutMarkName { name },
    })
    .expect("serialising plain strings cannot fail")
}

/// Writes an outbound `clear` message.
pub fn clear_message(stream_sid: &str) -> String {
    let mut out = String::with_capacity(40 + stream_sid.len());
    out.push_str(r#"{"event":"clear","streamSid":"#);
    push_json_string(&mut out, stream_sid);
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    // Stream SIDs are plain ASCII, but they come from the peer: escape rather than trust.
    out.push_str(&serde_json::to_string(s).expect("serialising a string cannot fail"));
}

#[derive(Serialize)]
struct OutMark<'a> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    mark: OutMarkName<'a>,
}

#[derive(Serialize)]
struct OutMarkName<'a> {
    name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_check_agrees_with_the_decoder() {
        let decoder = |text: &[u8]| {
            let mut scratch = [0u8; 64];
            STANDARD.decode_slice(text, &mut scratch).ok()
        };
        // Every text of up to 4 symbols over an alphabet with the edge cases, and longer ones.
        let symbols: &[u8] = b"AQgw/+9z=-_ \n\x80";
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = texts
                .iter()
                .filter(|t| t.len() == texts.last().map_or(0, Vec::len))
                .flat_map(|t| {
                    symbols.iter().map(move |&c| {
                        let mut t = t.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            texts.extend(longer);
        }
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97).wrapping_add(n)).collect();
            let text = STANDARD.encode(&bytes).into_bytes();
            for cut in 0..text.len().min(6) {
                texts.push(text[..text.len() - cut].to_vec());
            }
            texts.push([b"AAAA".as_slice(), &text].concat());
        }
        for text in &texts {
            assert_eq!(
                canonical_base64_len(text),
                decoder(text),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn parses_start_with_numeric_strings_and_parameters() {
        let text = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"from":"+14155551234"}},"streamSid":"MZ1"}"#;
        let TwilioEvent::Start(start) = parse_frame(text).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(start.stream_sid, "MZ1");
        assert_eq!(start.call_sid, "CA1");
        assert_eq!(start.custom_parameters["from"], "+14155551234");
    }

    #[test]
    fn parses_media_and_checks_payload() {
        let payload = STANDARD.encode([0xFFu8; 160]);
        let text = format!(
            r#"{{"event":"media","sequenceNumber":"4","media":{{"track":"inbound","chunk":"2","timestamp":"40","payload":"{payload}"}},"streamSid":"MZ1"}}"#
        );
        assert_eq!(
            parse_frame(&text).unwrap(),
            TwilioEvent::Media {
                timestamp_ms: 40,
                payload,
                len: 160
            }
        );
    }

    #[test]
    fn rejects_bad_input_with_a_kind() {
        let bad_b64 = r#"{"event":"media","media":{"timestamp":"1","payload":"@@@@"}}"#;
        assert_eq!(parse_frame(bad_b64).unwrap_err(), FrameError::BadBase64);
        assert_eq!(
            parse_frame("{not json").unwrap_err().kind(),
            "twilio_malformed_frame"
        );
        assert_eq!(
            parse_frame(r#"{"event":"dance"}"#).unwrap_err(),
            FrameError::UnknownEvent("dance".into())
        );
        let huge = STANDARD.encode(vec![0u8; MAX_INBOUND_PAYLOAD + 1]);
        let text = format!(r#"{{"event":"media","media":{{"timestamp":"1","payload":"{huge}"}}}}"#);
        assert!(matches!(
            parse_frame(&text).unwrap_err(),
            FrameError::OversizedPayload(_)
        ));
        let bad_ts = r#"{"event":"media","media":{"timestamp":"soon","payload":"/w=="}}"#;
        assert!(matches!(parse_frame(bad_ts), Err(FrameError::Malformed(_))));
        assert!(matches!(
            parse_frame(&" ".repeat(MAX_FRAME_LEN + 1)),
            Err(FrameError::Oversized(_))
        ));
    }

    #[test]
    fn outbound_messages_are_valid_json() {
        let media: serde_json::Value =
            serde_json::from_str(&media_message("MZ\"1", &[0xFF; 160])).unwrap();
        assert_eq!(media["streamSid"], "MZ\"1");
        assert_eq!(
            STANDARD
                .decode(media["media"]["payload"].as_str().unwrap())
                .unwrap(),
            vec![0xFF; 160]
        );
        let mark: serde_json::Value =
            serde_json::from_str(&mark_message("MZ1", "1:100:item")).unwrap();
        assert_eq!(mark["mark"]["name"], "1:100:item");
        let clear: serde_json::Value = serde_json::from_str(&clear_message("MZ1")).unwrap();
        assert_eq!(clear["event"], "clear");
    }

    #[test]
    fn the_per_call_envelope_writes_exactly_what_the_one_off_writers_do() {
        for sid in ["MZ18ad3ab5a668481ce02b83e7395059f0", "MZ\"1\\\u{1}é"] {
            let out = Outbound::new(sid);
            for audio in [&[][..], &[0xFF; 160][..], &[1, 2, 3, 4][..]] {
                let media = out.media(audio);
                assert_eq!(media, media_message(sid, audio));
                assert_eq!(media.len(), media.capacity(), "sized exactly");
            }
            for name in [
                "m1",
                "item_1:120",
                "a b",
                "q\"uote",
                "back\\slash",
                "tab\t",
                "é",
            ] {
                assert_eq!(out.mark(name), mark_message(sid, name), "{name:?}");
            }
            assert_eq!(out.clear(), clear_message(sid));
        }
    }

    #[test]
    fn the_buffer_writers_append_exactly_what_the_string_writers_return() {
        for sid in ["MZ18ad3ab5a668481ce02b83e7395059f0", "MZ\"1\\\u{1}é"] {
            let out = Outbound::new(sid);
            let mut buf = BytesMut::with_capacity(16);
            for audio in [&[][..], &[0xFF; 160][..], &[1, 2, 3, 4][..], &[9; 161][..]] {
                buf.extend_from_slice(b"x");
                out.media_into(audio, &mut buf);
                assert_eq!(&buf[1..], out.media(audio).as_bytes());
                buf.clear();
            }
            for name in ["m1", "item_1:120", "q\"uote", "é"] {
                out.mark_into(name, &mut buf);
                assert_eq!(&buf[..], out.mark(name).as_bytes(), "{name:?}");
                buf.clear();
            }
            out.clear_into(&mut buf);
            assert_eq!(&buf[..], out.clear().as_bytes());
        }
    }

    #[test]
    fn media_and_marks_are_parsed_into_the_spare_string_and_nothing_else_touches_it() {
        let mut spare = String::with_capacity(512);
        let ptr = spare.as_ptr();
        let text = r#"{"event":"media","media":{"timestamp":"20","payload":"/w=="}}"#;
        let Ok(TwilioEvent::Media { payload, len, .. }) = parse_frame_with(text, &mut spare) else {
            panic!("not media")
        };
        assert_eq!((payload.as_str(), len), ("/w==", 1));
        assert_eq!(payload.as_ptr(), ptr, "the spare's buffer is reused");
        let mut spare = payload;
        let mark = r#"{"event":"mark","mark":{"name":"0:100:item_\u0031"}}"#;
        let Ok(TwilioEvent::Mark { name }) = parse_frame_with(mark, &mut spare) else {
            panic!("not a mark")
        };
        assert_eq!(name, "0:100:item_1", "escapes decoded");
        assert_eq!(
            name.as_ptr(),
            ptr,
            "the spare's buffer is reused for the name"
        );
        let mut spare = name;
        assert!(parse_frame_with(r#"{"event":"stop"}"#, &mut spare).is_ok());
        assert!(parse_frame_with("{bad", &mut spare).is_err());
        assert!(parse_frame_with(r#"{"event":"mark"}"#, &mut spare).is_err());
        assert_eq!(
            spare, "0:100:item_1",
            "left alone by other events and errors"
        );
    }

    #[test]
    fn the_top_level_stream_sid_is_read_borrowed_escaped_or_null() {
        let start = |sid: &str| {
            format!(
                r#"{{"event":"start","streamSid":{sid},"start":{{"callSid":"CA1","customParameters":{{}}}}}}"#
            )
        };
        let TwilioEvent::Start(plain) = parse_frame(&start(r#""MZ1""#)).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(plain.stream_sid, "MZ1");
        let TwilioEvent::Start(escaped) = parse_frame(&start(r#""MZ\u0031\"""#)).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(escaped.stream_sid, "MZ1\"");
        assert!(matches!(
            parse_frame(&start("null")),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            parse_frame(&start("7")),
            Err(FrameError::Malformed(_))
        ));
        let media =
            r#"{"event":"media","streamSid":null,"media":{"timestamp":"0","payload":"AA=="}}"#;
        assert!(matches!(
            parse_frame(media),
            Ok(TwilioEvent::Media { len: 1, .. })
        ));
    }
}

//! A fake Twilio for tests and load generation: it posts a signed voice webhook, reads the TwiML,
//! opens the media WebSocket with a signed upgrade, sends `connected`, `start` and 20 ms paced caller
//! frames, and plays the bridge's audio through a playout model — one 160-byte frame per 20 ms,
//! marks echoed once the audio before them has played (at once when nothing is buffered), and
//! `clear` flushing the buffer and echoing every pending mark immediately, as Twilio documents.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use callbridge::twilio::signature;

use crate::ulaw;

/// Twilio as seen by the bridge under test.
#[derive(Debug, Clone)]
pub struct FakeTwilio {
    pub bridge: SocketAddr,
    /// The bridge's `PUBLIC_URL` (signatures are computed over it).
    pub public_url: String,
    pub auth_token: String,
    pub account_sid: String,
}

/// What the caller does during a call.
#[derive(Debug, Clone, Default)]
pub struct CallScript {
    /// Hang up (send `stop` and close) after this long; `None` waits for the bridge to close.
    pub hang_up_after_ms: Option<u64>,
    /// Give up waiting for the bridge after this long.
    pub max_ms: u64,
    /// Caller speech as (start ms, length ms): a loud tone; silence otherwise.
    pub speech: Vec<(u64, u64)>,
    /// Raw text frames sent before `start` (bad input tests).
    pub before_start: Vec<String>,
    /// Raw text frames sent right after `start`.
    pub after_start: Vec<String>,
    /// Override the stream token in `start` (security tests).
    pub token_override: Option<String>,
    /// Stamp each caller frame with the send time since this instant (load measurements).
    pub stamp: Option<Instant>,
    /// End the stream (`stop`, then close) when notified: what Twilio does once a redirect
    /// replaces the call's TwiML (see `FakeTwilioRest::notify_on_redirect`).
    pub stop_when: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// A message the bridge sent, with when it arrived (ms since the stream started).
#[derive(Debug, Clone)]
pub struct Received {
    pub at_ms: u64,
    pub message: Value,
}

/// The outcome of one call.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub received: Vec<Received>,
    /// Frames actually played to the caller: (ms since start, first byte of the frame).
    pub played: Vec<(u64, u8)>,
    /// Frames received but flushed by `clear` before playing.
    pub flushed_frames: usize,
    pub marks_echoed: Vec<String>,
    pub clears_at_ms: Vec<u64>,
    /// The bridge closed the socket (rather than us hanging up).
    pub closed_by_bridge: bool,
    pub closed_at_ms: Option<u64>,
    /// Outbound one-way latency of stamped frames (provider → here), µs.
    pub outbound_latency_us: Vec<u64>,
    pub frames_sent: u64,
    /// When the stream was ended by `stop_when` (a redirect).
    pub stopped_at_ms: Option<u64>,
}

impl CallReport {
    /// Media frames received, in order, with their first byte.
    pub fn media(&self) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
        self.received.iter().filter_map(|r| {
            if r.message["event"] != "media" {
                return None;
            }
            let payload = r.message["media"]["payload"].as_str()?;
            Some((r.at_ms, STANDARD.decode(payload).ok()?))
        })
    }

    pub fn events(&self, name: &str) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.message["event"] == name)
            .collect()
    }
}

/// The TwiML `<Stream>` the webhook answered with.
#[derive(Debug, Clone)]
pub struct StreamTwiml {
    pub url: String,
    pub parameters: Vec<(String, String)>,
}

impl FakeTwilio {
    fn webhook_params(&self, call_sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", self.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call_sid),
            ("CallStatus", "ringing"),
            ("Called", to),
            ("Caller", from),
            ("Direction", "inbound"),
            ("From", from),
            ("To", to),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Posts the voice webhook; `signature` overrides the correct one (None: sign correctly).
    pub async fn voice_webhook(
        &self,
        params: &[(String, String)],
        signature_override: Option<Option<&str>>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}/twilio/voice", self.public_url);
        let good = signature::compute(&self.auth_token, &url, params);
        let sig = match signature_override {
            None => Some(good.as_str()),
            Some(s) => s,
        };
        let body = serde_urlencoded::to_string(params)?;
        http_post(self.bridge, "/twilio/voice", sig, &body).await
    }

    /// Answers an inbound call: webhook, TwiML, returns the stream to connect to.
    pub async fn ring(&self, call_sid: &str, from: &str, to: &str) -> anyhow::Result<StreamTwiml> {
        let params = self.webhook_params(call_sid, from, to);
        let (status, body) = self.voice_webhook(&params, None).await?;
        anyhow::ensure!(status == 200, "webhook answered {status}: {body}");
        parse_stream_twiml(&body)
    }

    /// Opens the media socket with the given signature (None: a correct one).
    pub async fn connect_media(
        &self,
        url: &str,
        signature_override: Option<Option<&str>>,
    ) -> anyhow::Result<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    > {
        let good = signature::compute(&self.auth_token, url, &[]);
        let sig = match signature_override {
            None => Some(good.as_str()),
            Some(s) => s,
        };
        let mut request = url.into_client_request()?;
        if let Some(sig) = sig {
            request
                .headers_mut()
                .insert("x-twilio-signature", sig.parse()?);
        }
        let (socket, _) = tokio_tungstenite::connect_async_with_config(
            request,
            Some(crate::fake_socket_config()),
            true,
        )
        .await?;
        Ok(socket)
    }

    /// Places one whole call and plays it out per `script`.
    pub async fn call(&self, call_sid: &str, script: CallScript) -> anyhow::Result<CallReport> {
        let twiml = self.ring(call_sid, "+14155551234", "+15005550006").await?;
        let socket = self.connect_media(&twiml.url, None).await?;
        run_stream(socket, call_sid, &self.account_sid, &twiml, script).await
    }
}

/// Extracts the stream URL and parameters from `<Connect><Stream>` TwiML.
pub fn parse_stream_twiml(xml: &str) -> anyhow::Result<StreamTwiml> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = start + tag[start..].find('"')?;
        Some(unescape(&tag[start..end]))
    };
    let stream_start = xml
        .find("<Stream ")
        .ok_or_else(|| anyhow::anyhow!("no <Stream> in {xml}"))?;
    anyhow::ensure!(xml.contains("<Connect>"), "stream is not under <Connect>");
    let stream_tag = &xml[stream_start..stream_start + xml[stream_start..].find('>').unwrap_or(0)];
    let url = attr(stream_tag, "url").ok_or_else(|| anyhow::anyhow!("no url"))?;
    let mut parameters = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Parameter ") {
        let tag_end = rest[i..].find("/>").unwrap_or(rest.len() - i);
        let tag = &rest[i..i + tag_end];
        if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
            parameters.push((n, v));
        }
        rest = &rest[i + tag_end..];
    }
    Ok(StreamTwiml { url, parameters })
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

enum Queued {
    Audio([u8; 160]),
    Mark(String),
}

/// Runs the media stream side of a call.
pub async fn run_stream(
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    call_sid: &str,
    account_sid: &str,
    twiml: &StreamTwiml,
    script: CallScript,
) -> anyhow::Result<CallReport> {
    let (mut sink, mut source) = socket.split();
    let stream_sid = format!("MZ{}", &call_sid[2.min(call_sid.len())..]);
    let started = Instant::now();
    let since = |t: Instant| t.duration_since(started).as_millis() as u64;
    let mut report = CallReport::default();

    for raw in &script.before_start {
        sink.send(Message::Text(raw.clone().into())).await?;
    }
    sink.send(Message::Text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            .to_string()
            .into(),
    ))
    .await?;
    let mut params: serde_json::Map<String, Value> = twiml
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if let Some(token) = &script.token_override {
        params.insert("token".into(), Value::String(token.clone()));
    }
    let start = json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
        "accountSid": account_sid, "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": params}});
    sink.send(Message::Text(start.to_string().into())).await?;
    for raw in &script.after_start {
        sink.send(Message::Text(raw.clone().into())).await?;
    }

    let mut queue: VecDeque<Queued> = VecDeque::new();
    // A silent frame's bytes after its first 12 (the stamp's room), encoded once: 12 bytes are a
    // whole number of base64 groups, so a frame's payload is its first 12 bytes' base64 and this.
    let silent_tail = STANDARD.encode([0xFFu8; 160 - STAMPED_HEAD]);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut chunk: u64 = 0;
    let mut seq: u64 = 2;
    let deadline = started + Duration::from_millis(script.max_ms.max(1));
    let mut hung_up = false;
    let stop_when = script.stop_when.clone();
    let redirected = async move {
        match stop_when {
            Some(notify) => notify.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(redirected);
    loop {
        tokio::select! {
            _ = &mut redirected => {
                let stop = json!({"event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                    "stop": {"accountSid": account_sid, "callSid": call_sid}});
                let _ = sink.send(Message::Text(stop.to_string().into())).await;
                let _ = sink.send(Message::Close(None)).await;
                report.stopped_at_ms = Some(since(Instant::now()));
                hung_up = true;
                break;
            }
            _ = ticker.tick() => {
                let now_ms = since(Instant::now());
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(limit) = script.hang_up_after_ms
                    && now_ms >= limit
                {
                    let stop = json!({"event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                        "stop": {"accountSid": account_sid, "callSid": call_sid}});
                    let _ = sink.send(Message::Text(stop.to_string().into())).await;
                    let _ = sink.send(Message::Close(None)).await;
                    hung_up = true;
                    break;
                }
                // Playout: marks whose audio finished, then the next frame.
                while let Some(Queued::Mark(_)) = queue.front() {
                    if let Some(Queued::Mark(name)) = queue.pop_front() {
                        echo_mark(&mut sink, &stream_sid, &name, &mut seq).await;
                        report.marks_echoed.push(name);
                    }
                }
                if let Some(Queued::Audio(frame)) = queue.front() {
                    report.played.push((now_ms, frame[0]));
                    queue.pop_front();
                }
                // Caller audio for this 20 ms.
                chunk += 1;
                let t = chunk * 20;
                let speaking = script.speech.iter().any(|&(s, l)| t >= s && t < s + l);
                let mut frame = if speaking { ulaw::tone_frame(chunk * 160) } else { [0xFF; 160] };
                if let Some(epoch) = script.stamp {
                    frame[0] = 0xA5;
                    frame[1..9].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_le_bytes());
                }
                // Written by hand: at load-test scale a JSON tree per frame costs more than the bridge.
                let payload = if speaking {
                    STANDARD.encode(frame)
                } else {
                    let mut payload = String::with_capacity(216);
                    STANDARD.encode_string(&frame[..STAMPED_HEAD], &mut payload);
                    payload.push_str(&silent_tail);
                    payload
                };
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{t}","payload":"{payload}"}}}}"#
                );
                seq += 1;
                if sink.send(Message::Text(media.into())).await.is_err() {
                    // Only the bridge can have closed the socket here (this side had not hung
                    // up); its Close frame may still sit unread behind the failed write.
                    report.closed_by_bridge = true;
                    report.closed_at_ms = Some(now_ms);
                    break;
                }
                report.frames_sent += 1;
            }
            message = source.next() => {
                let now_ms = since(Instant::now());
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        report.closed_by_bridge = true;
                        report.closed_at_ms = Some(now_ms);
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                if let Some(epoch) = script.stamp
                    && let Some(first) = stamped_media(&text, epoch, &mut report.outbound_latency_us)?
                {
                    // Load runs: a stamped frame is read without a JSON tree or a full decode.
                    let mut frame = [0u8; 160];
                    frame[0] = first;
                    queue.push_back(Queued::Audio(frame));
                    continue;
                }
                let value: Value = serde_json::from_str(&text)?;
                match value["event"].as_str() {
                    Some("media") => {
                        let bytes = STANDARD.decode(value["media"]["payload"].as_str().unwrap_or_default())?;
                        anyhow::ensure!(bytes.len() == 160, "outbound frame of {} bytes", bytes.len());
                        if let Some(epoch) = script.stamp
                            && bytes[0] == 0xA5
                        {
                            let mut raw = [0u8; 8];
                            raw.copy_from_slice(&bytes[1..9]);
                            let sent = u64::from_le_bytes(raw);
                            report.outbound_latency_us.push((epoch.elapsed().as_micros() as u64).saturating_sub(sent));
                        }
                        let mut frame = [0u8; 160];
                        frame.copy_from_slice(&bytes);
                        queue.push_back(Queued::Audio(frame));
                    }
                    Some("mark") => {
                        let name = value["mark"]["name"].as_str().unwrap_or_default().to_owned();
                        if queue.is_empty() {
                            echo_mark(&mut sink, &stream_sid, &name, &mut seq).await;
                            report.marks_echoed.push(name);
                        } else {
                            queue.push_back(Queued::Mark(name));
                        }
                    }
                    Some("clear") => {
                        report.clears_at_ms.push(now_ms);
                        for queued in queue.drain(..) {
                            match queued {
                                Queued::Mark(name) => {
                                    echo_mark(&mut sink, &stream_sid, &name, &mut seq).await;
                                    report.marks_echoed.push(name);
                                }
                                Queued::Audio(_) => report.flushed_frames += 1,
                            }
                        }
                    }
                    _ => {}
                }
                if value["event"] != "media" || script.stamp.is_none() {
                    report.received.push(Received { at_ms: now_ms, message: value });
                }
            }
        }
    }
    if hung_up {
        // Wait for the bridge to close its side.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = source.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    Ok(report)
}

/// Bytes at the start of a caller frame that carry its stamp (`0xA5` and 8 bytes of µs), rounded
/// up to a whole base64 group.
const STAMPED_HEAD: usize = 12;

/// A bridge `media` message in a load run, read cheaply: the payload's length is checked (one
/// 160-byte frame) and only its first group decoded; a stamped frame's latency is recorded.
/// Returns the frame's first byte, or `None` for anything that is not a `media` message in the
/// bridge's own layout (read the slow way).
fn stamped_media(
    text: &str,
    epoch: Instant,
    latencies_us: &mut Vec<u64>,
) -> anyhow::Result<Option<u8>> {
    const PAYLOAD: &str = r#""payload":""#;
    if !text.starts_with(r#"{"event":"media""#) {
        return Ok(None);
    }
    let Some(at) = text.find(PAYLOAD) else {
        return Ok(None);
    };
    let rest = &text[at + PAYLOAD.len()..];
    let Some(end) = rest.find('"') else {
        return Ok(None);
    };
    let payload = &rest[..end];
    anyhow::ensure!(
        payload.len() == 216,
        "outbound frame payload of {} chars",
        payload.len()
    );
    let mut head = [0u8; STAMPED_HEAD];
    STANDARD.decode_slice(&payload.as_bytes()[..16], &mut head)?;
    if head[0] == 0xA5 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&head[1..9]);
        let sent = u64::from_le_bytes(raw);
        latencies_us.push((epoch.elapsed().as_micros() as u64).saturating_sub(sent));
    }
    Ok(Some(head[0]))
}

async fn echo_mark<S>(sink: &mut S, stream_sid: &str, name: &str, seq: &mut u64)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let echo = json!({"event": "mark", "sequenceNumber": seq.to_string(), "streamSid": stream_sid, "mark": {"name": name}});
    *seq += 1;
    let _ = sink.send(Message::Text(echo.to_string().into())).await;
}

/// A bare HTTP/1.1 POST on loopback (form body), returning status and body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    signature: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(sig) = signature {
        request.push_str(&format!("X-Twilio-Signature: {sig}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    read_response(stream).await
}

/// A bare HTTP/1.1 GET on loopback, returning status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    read_response(stream).await
}

async fn read_response(mut stream: TcpStream) -> anyhow::Result<(u16, String)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad HTTP response: {text}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

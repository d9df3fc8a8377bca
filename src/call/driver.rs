//! The call's IO driver: one task per call that owns the [`CallSession`] and connects it to the
//! world.
//!
//! It waits for Twilio's `start`, checks the stream token, opens the provider socket, then runs the
//! actor loop, which reads both sockets itself and writes to them through an [`Outbox`] each:
//! next caller frame, provider message, input or timer → `session.handle` → carry out every
//! output → one flush per socket. Nothing waits on a socket's write: a peer that reads slowly
//! leaves messages in its outbox while the timers and the other socket go on, and a peer that
//! takes nothing for [`PEER_STALL`] hangs the call up. The journal's writer, tool runs that have
//! to wait, transfers and the recorder are the call's only other tasks; when the session hangs up
//! the actor closes both sockets and waits for (or stops) every task it spawned, so nothing
//! outlives the call. When the session asks to resume the provider (Gemini `goAway`), it opens a
//! new provider socket in the background while the call goes on, and sets it up with the
//! resumption handle. With recording on for the agent, a recorder task streams both sides to
//! `<call id>.wav` (or `.opus`), fed exactly what Twilio is sent and cut at every `clear`. It must
//! not make decisions about the call: those belong to the session.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as TwilioMessage, Utf8Bytes as TwilioText, WebSocket};
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, StreamExt};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{Message as ProviderMessage, Utf8Bytes};
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::outbox::{Outbox, PEER_STALL, SocketEvent, next_event};
use super::plan::{CallPlan, PlanError, Route, plan_call};
use super::session::{
    AudioStage, CallEvent, CallSession, EndReason, Input, Output, SessionParams, TwilioCommand,
};
use crate::audio::{Recorder, Transcoder};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::realtime::{AudioFormat, Dialect, LlmCommand, ProviderAudio, Speaker, StreamState};
use crate::store::{
    CallDirection, CallEnd, CallEventKind, CallStatus, NewCall, SqlStore, Store, TenantId,
};
use crate::tools::{ToolContext, ToolRegistry};
use crate::twilio::stream::{self, StreamStart, TwilioEvent, parse_frame};
use crate::twilio::token::{self, StreamClaims};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// How long Twilio has to send `start` after the socket opens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the provider has to accept the WebSocket.
const PROVIDER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the sockets get to flush and close after the call ends.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Inputs waiting for the actor (Twilio frames, provider events, tool results).
const ACTOR_QUEUE: usize = 256;
/// Messages waiting in a socket's outbox past which caller audio is dropped (provider) or the
/// provider is not read (Twilio). Agent audio arrives faster than real time, in bursts.
const OUTBOX_LIMIT: usize = 512;
/// Audio waiting for the recorder task (about 10 s of both sides in 20 ms frames).
const RECORDING_QUEUE: usize = 1024;
/// WebSocket buffers, sized for 20 ms μ-law frames: a Twilio `media` message is about 350 bytes
/// of JSON each way, a 100 ms provider delta about 1.3 KB. The library default (128 KiB each way)
/// costs a quarter of a megabyte per call. The read size matters for CPU too: the library
/// zero-fills that many bytes before every read, including the read that finds the socket empty,
/// which at 4 KiB was a fifth of a passthrough call's instructions (callgrind, see
/// docs/benchmarks.md). One read of 1 KiB takes a caller frame or a few queued ones; a larger
/// message still arrives whole: the read buffer grows for it.
pub const TWILIO_READ_BUFFER: usize = 1024;
/// Written out at this size while a batch is queued, and always at the end of a batch.
pub const TWILIO_WRITE_BUFFER: usize = 4 * 1024;
/// A 100 ms delta (about 1.5 KB with its frame header) in one read.
const PROVIDER_READ_BUFFER: usize = 2 * 1024;
const PROVIDER_WRITE_BUFFER: usize = 4 * 1024;
/// Each socket's reused message buffer (see [`MessageBuf`]): the largest turn it carries without a
/// new buffer. A 100 ms agent delta is five Twilio `media` messages and a mark (about 1.5 KB)
/// queued in one turn, so deltas up to about 260 ms fit; caller frames go one per turn (about 250
/// bytes, 900 transcoded).
pub const TWILIO_MESSAGE_BUFFER: usize = 4 * 1024;
pub const PROVIDER_MESSAGE_BUFFER: usize = 2 * 1024;
/// What every call shares.
#[derive(Clone)]
pub struct CallDeps {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub tools: Arc<ToolRegistry>,
    pub dialect: Arc<dyn Dialect>,
    pub store: crate::store::SqlStore,
    /// The vault's master keys; `None` when no master key is configured.
    pub keyring: Option<crate::tenant::vault::Keyring>,
    /// The one HTTP policy every connector goes through.
    pub policy: crate::connectors::http::HttpPolicy,
    /// Makes tool side effects happen once, across reconnects and nodes.
    pub ledger: crate::tools::ledger::SharedLedger,
    /// The calls this node runs, for the live-calls API.
    pub live: Arc<super::live::LiveCalls>,
    /// This node's name, recorded with each stream claim (crash recovery, `call::recovery`).
    pub node_id: Arc<str>,
    /// The OAuth gateway (tenants' connected vendor accounts).
    pub oauth: Option<crate::oauth::OAuthService>,
}

impl CallDeps {
    /// The tool runtime calls (and the CLI and API) resolve and run tenants' tools with.
    pub fn tool_runtime(&self) -> crate::tools::invoke::ToolRuntime {
        crate::tools::invoke::ToolRuntime {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            policy: self.policy.clone(),
            ledger: self.ledger.clone(),
            deadline: self.config.tool_timeout,
            oauth: self.oauth.clone(),
        }
    }

    /// The secret vault, when a master key is configured.
    pub fn vault(&self) -> Option<crate::tenant::vault::Vault<crate::store::SqlStore>> {
        self.keyring
            .clone()
            .map(|keyring| crate::tenant::vault::Vault::new(self.store.clone(), keyring))
    }
}

/// The parameters callbridge put into the TwiML `<Stream>`, vouched for by the stream token.
#[derive(Debug, Clone)]
struct CallIdentity {
    call_sid: String,
    stream_sid: String,
    caller: String,
    called: String,
    route: Route,
    /// Non-empty on a stream that takes the caller back after a warm transfer (`call::warm`).
    resume: String,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("socket closed before start")]
    Closed,
    #[error("no start within {0:?}")]
    Timeout(Duration),
    #[error("stream token rejected: {0}")]
    Token(#[from] token::TokenError),
    #[error("start is for account {0}, not ours")]
    WrongAccount(String),
    #[error("stream parameters name no valid route: {0}")]
    Route(#[from] PlanError),
    #[error("call {0} already opened its media stream")]
    AlreadyStreamed(String),
    #[error("cannot claim the media stream: {0}")]
    Claim(crate::store::StoreError),
}

impl StartError {
    fn kind(&self) -> &'static str {
        match self {
            StartError::Closed => "twilio_closed_before_start",
            StartError::Timeout(_) => "twilio_start_timeout",
            StartError::Token(_) => "twilio_stream_token_rejected",
            StartError::WrongAccount(_) => "twilio_wrong_account",
            StartError::Route(_) => "twilio_bad_route",
            StartError::AlreadyStreamed(_) => "twilio_stream_replayed",
            StartError::Claim(_) => "store_unavailable",
        }
    }
}

/// Where the actor writes one socket's messages: each message is split off as a slice of one
/// reused buffer (a reference count, no allocation) and queued in the socket's outbox. At the start
/// of each turn the buffer is reclaimed whole if the socket has taken every earlier slice, so a
/// steady-state frame costs no allocation; a buffer is replaced only while its peer lags behind or
/// one turn's messages outgrow it.
pub struct MessageBuf {
    buf: BytesMut,
    capacity: usize,
}

impl MessageBuf {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            capacity,
        }
    }

    /// Called between turns: takes the whole buffer back when no slice of it is still queued or
    /// being written (never allocates; an atomic load when a slice is still out).
    pub fn reclaim(&mut self) {
        if self.buf.capacity() < self.capacity {
            let _ = self.buf.try_reclaim(self.capacity);
        }
    }

    /// The buffer to append one message to (it is empty).
    pub fn writer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The message written since the last call; `None` if nothing was written.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// Runs one call on an upgraded Twilio media socket, start to finish.
pub async fn run_call(deps: CallDeps, socket: WebSocket) {
    let _actor_guard = deps.metrics.task_guard();
    let mut socket = socket;
    let identity = match await_start(&deps, &mut socket).await {
        Ok(identity) => identity,
        Err(e) => {
            warn!(error = %e, "media stream refused");
            deps.metrics.error(e.kind());
            let _ = socket.send(TwilioMessage::Close(None)).await;
            return;
        }
    };
    let span = info_span!("call", call_sid = %identity.call_sid);
    run_started_call(deps, identity, socket)
        .instrument(span)
        .await;
}

async fn await_start(deps: &CallDeps, twilio: &mut WebSocket) -> Result<CallIdentity, StartError> {
    let started = Instant::now();
    let mut reported = HashSet::new();
    let start = loop {
        let remaining = START_TIMEOUT.saturating_sub(started.elapsed());
        let message = match timeout(remaining, twilio.next()).await {
            Err(_) => return Err(StartError::Timeout(START_TIMEOUT)),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(TwilioMessage::Close(_)))) => {
                return Err(StartError::Closed);
            }
            Ok(Some(Ok(message))) => message,
        };
        let TwilioMessage::Text(text) = message else {
            continue;
        };
        match parse_frame(&text) {
            Ok(TwilioEvent::Start(start)) => break start,
            Ok(TwilioEvent::Connected) => {}
            Ok(other) => report_once(
                &deps.metrics,
                &mut reported,
                "twilio_event_before_start",
                &format!("{other:?}").chars().take(80).collect::<String>(),
            ),
            Err(e) => report_once(&deps.metrics, &mut reported, e.kind(), &e.to_string()),
        }
    };
    let identity = verify_start(&deps.config, start)?;
    // Single use, across nodes: the first socket with a good token claims the call; a replayed
    // token, a second socket or a socket after the call ended finds it taken. Fails closed.
    let (tenant, _) = identity.route.ids();
    let claim = super::warm::claim_key(&identity.call_sid, &identity.resume);
    match deps.store.claim_stream(&claim, tenant, &deps.node_id).await {
        Ok(true) => Ok(identity),
        Ok(false) => Err(StartError::AlreadyStreamed(identity.call_sid)),
        Err(e) => Err(StartError::Claim(e)),
    }
}

fn verify_start(config: &Config, start: StreamStart) -> Result<CallIdentity, StartError> {
    if !start.account_sid.is_empty() && start.account_sid != config.twilio_account_sid {
        return Err(StartError::WrongAccount(start.account_sid));
    }
    let param = |name: &str| {
        start
            .custom_parameters
            .get(name)
            .cloned()
            .unwrap_or_default()
    };
    let claims = StreamClaims {
        call_sid: start.call_sid.clone(),
        from: param("from"),
        to: param("to"),
        tenant: param("tenant"),
        agent: param("agent"),
        expires_at: param("exp").parse().unwrap_or(0),
        resume: param("resume"),
    };
    token::verify(
        config.twilio_auth_token.expose_secret(),
        &claims,
        start.custom_parameters.get("token").map(String::as_str),
        unix_now(),
    )?;
    let route = Route::from_ids(&claims.tenant, &claims.agent)?;
    Ok(CallIdentity {
        call_sid: start.call_sid,
        stream_sid: start.stream_sid,
        caller: claims.from,
        called: claims.to,
        route,
        resume: claims.resume,
    })
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn report_once(
    metrics: &Metrics,
    reported: &mut HashSet<&'static str>,
    kind: &'static str,
    detail: &str,
) {
    metrics.error(kind);
    if reported.insert(kind) {
        warn!(kind, detail, "bad input (logged once per kind per call)");
    }
}

async fn run_started_call(deps: CallDeps, identity: CallIdentity, twilio: WebSocket) {
    deps.metrics
        .active_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::incr(&deps.metrics.calls_started);
    info!(
        caller = %crate::logging::number_for_log(&identity.caller),
        called = %crate::logging::number_for_log(&identity.called),
        "call started"
    );

    let reason = match plan_call(&deps, identity.route.clone()).await {
        Err(e) => {
            error!(error = %e, "cannot set up the call; ending it");
            deps.metrics.error("call_setup_failed");
            close_quietly(twilio, TwilioMessage::Close(None)).await;
            EndReason::ProviderClosed(e.to_string())
        }
        Ok(plan) => {
            // Outbound calls carry per-call prompt variables on their pre-created record.
            let plan = plan.with_call_variables(&deps, &identity.call_sid).await;
            // The agent's MCP servers are listed while the provider connects (both bounded).
            let dialect = plan.dialect.clone();
            let (plan, provider) =
                tokio::join!(plan.with_remote_tools(&deps), connect_provider(dialect));
            let journal = Journal::open(&deps, &identity).await;
            for (server, reason) in &plan.skipped_mcp_servers {
                journal.record(
                    CallEventKind::Error,
                    serde_json::json!({"stage": "setup", "mcp_server": server, "reason": reason}),
                );
            }
            let mut recording = None;
            let reason = match provider {
                Ok(provider) => {
                    let (reason, path) =
                        run_actor(&deps, &identity, &plan, &journal, twilio, provider).await;
                    recording = path;
                    reason
                }
                Err(message) => {
                    error!(error = %message, provider = plan.dialect.name(), "provider connection failed; ending the call");
                    deps.metrics.error("provider_connect_failed");
                    close_quietly(twilio, TwilioMessage::Close(None)).await;
                    EndReason::ProviderClosed(message)
                }
            };
            journal.finish(&reason, recording).await;
            reason
        }
    };
    deps.metrics.call_ended(reason.label());
    deps.metrics
        .active_calls
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    info!(reason = reason.label(), detail = ?reason, "call ended");
}

type ProviderSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_provider(dialect: Arc<dyn Dialect>) -> Result<ProviderSocket, String> {
    let request = dialect.connect_request().map_err(|e| e.to_string())?;
    match timeout(
        PROVIDER_CONNECT_TIMEOUT,
        // Nagle off: audio frames are small writes that must not wait for an ACK.
        tokio_tungstenite::connect_async_with_config(request, Some(provider_socket_config()), true),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {PROVIDER_CONNECT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

fn provider_socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(PROVIDER_READ_BUFFER)
        .write_buffer_size(PROVIDER_WRITE_BUFFER)
}

async fn close_quietly<S, M>(mut sink: S, close: M)
where
    S: Sink<M> + Unpin,
{
    let _ = timeout(CLOSE_GRACE, sink.send(close)).await;
}

/// Session behaviour that follows from the provider's dialect.
fn session_params(deps: &CallDeps, plan: &CallPlan, resume: &str) -> SessionParams {
    let dialect = plan.dialect.as_ref();
    let (input, output) = match dialect.provider_audio() {
        ProviderAudio::Pcmu => (AudioFormat::Pcmu, AudioFormat::Pcmu),
        ProviderAudio::Pcm16 {
            input_rate,
            output_rate,
        } => (
            AudioFormat::Pcm16 { rate: input_rate },
            AudioFormat::Pcm16 { rate: output_rate },
        ),
    };
    SessionParams {
        max_duration: plan.max_duration,
        silence_timeout: plan.silence_timeout,
        speak_first: deps.config.speak_first,
        provider_cancels_on_speech: dialect.cancels_on_speech(),
        provider_truncates: dialect.supports_truncate(),
        provider_continues_after_tools: dialect.continues_after_tool_results(),
        expected_input_format: dialect.format_name(input),
        expected_output_format: dialect.format_name(output),
        resume_note: super::warm::resume_note(resume),
        ..SessionParams::default()
    }
}

/// The call's audio stage: passthrough for μ-law providers, one transcoder for PCM ones.
fn audio_stage(dialect: &dyn Dialect) -> Result<AudioStage, crate::audio::AudioError> {
    Ok(match dialect.provider_audio() {
        ProviderAudio::Pcmu => AudioStage::Passthrough,
        ProviderAudio::Pcm16 {
            input_rate,
            output_rate,
        } => AudioStage::Transcode(Box::new(Transcoder::new(input_rate, output_rate)?)),
    })
}

/// Runs the call until the session hangs up; returns why, and the finished recording if any.
async fn run_actor(
    deps: &CallDeps,
    identity: &CallIdentity,
    plan: &CallPlan,
    journal: &Journal,
    mut twilio: WebSocket,
    provider: ProviderSocket,
) -> (EndReason, Option<String>) {
    let (actor_tx, mut actor_rx) = mpsc::channel::<Input>(ACTOR_QUEUE);
    let _live = super::live::register_call(
        deps,
        super::live::CallFacts {
            route: &identity.route,
            call_id: journal.call_id.as_deref(),
            call_sid: &identity.call_sid,
            from: &identity.caller,
            to: &identity.called,
        },
        journal.events.clone(),
        &actor_tx,
    )
    .await;
    // The actor reads both sockets itself and writes to them through an outbox each
    // (`call/outbox.rs`): no reader or writer task, no channel, one flush per turn. A socket is
    // read until it ends; the provider's is `None` while a new connection is being opened.
    let mut twilio_reading = true;
    let mut provider = Some(provider);
    let mut provider_reading = true;
    let mut twilio_out =
        Outbox::new(|t: Bytes| TwilioText::try_from(t).ok().map(TwilioMessage::Text));
    let mut provider_out =
        Outbox::new(|t: Bytes| Utf8Bytes::try_from(t).ok().map(ProviderMessage::Text));
    let mut connection: u32 = 0;
    let mut provider_state = StreamState::for_connection(connection);
    // A provider message's events, handed on to `inputs` (always left empty).
    let mut provider_events = Vec::with_capacity(8);
    // Sockets being closed in the background (a provider connection replaced on resumption).
    let mut closing = JoinSet::new();
    let mut tools = JoinSet::new();
    let metrics = &deps.metrics;
    let dialect_arc = plan.dialect.clone();
    let dialect = plan.dialect.as_ref();

    let audio = match audio_stage(dialect) {
        Ok(audio) => audio,
        Err(e) => {
            error!(error = %e, provider = dialect.name(), "cannot set up transcoding; ending the call");
            deps.metrics.error("call_setup_failed");
            close_quietly(twilio, TwilioMessage::Close(None)).await;
            return (EndReason::ProviderClosed(e.to_string()), None);
        }
    };

    // A provider connection being opened for resumption (its messages queue in `provider_out`).
    let mut reconnecting: Option<tokio::task::JoinHandle<Result<ProviderSocket, String>>> = None;

    let mut recording = Recording::start(deps, plan, journal).await;
    // The call's start as its tools see it (`log_call_note` writes the duration so far).
    let call_started = chrono::Utc::now();
    let mut session = CallSession::with_audio(
        session_params(deps, plan, &identity.resume),
        Instant::now().into_std(),
        audio,
    );
    let update = LlmCommand::UpdateSession(plan.session_config(
        &identity.caller,
        &identity.called,
        &identity.call_sid,
    ));
    provider_out.push(Bytes::from(dialect.encode(&update)));

    let mut reported = HashSet::new();
    let mut end_reason = None;
    // The fixed parts of every message to Twilio, written once.
    let envelope = stream::Outbound::new(&identity.stream_sid);
    // Each socket's messages are written into one reused buffer, and a caller payload's string
    // comes back from its provider command to carry the next frame's: no per-frame allocation.
    let mut twilio_buf = MessageBuf::new(TWILIO_MESSAGE_BUFFER);
    let mut provider_buf = MessageBuf::new(PROVIDER_MESSAGE_BUFFER);
    let mut spare_payload = String::new();
    // A mark's wire name is written here, then into the message: no string per mark.
    let mut mark_name = String::with_capacity(64);
    // End of the caller audio so far on the Twilio stream clock: where a `clear` cuts the recording.
    let mut caller_end_ms = 0u64;
    // What one wake-up brings for the session: a caller frame, a provider message's events, a
    // timer, a tool result or a supervisor's command.
    let mut inputs: VecDeque<Input> = VecDeque::with_capacity(8);
    // One timer for the call, moved when the next deadline moves (a later deadline costs no lock).
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut timer_at = None;
    while end_reason.is_none() {
        let session_wake = session.poll_timeout().map(Instant::from_std);
        let wake = [
            session_wake,
            twilio_out.stall_deadline(),
            provider_out.stall_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = wake
            && timer_at != Some(at)
        {
            timer.as_mut().reset(at);
            timer_at = Some(at);
        }
        // Agent audio is never dropped: while the Twilio socket holds back more than a queue's
        // worth, the provider is not read (its socket buffers the audio); a Twilio that stopped
        // reading hangs the call up after `PEER_STALL`.
        let read_provider = twilio_out.queued() < OUTBOX_LIMIT;
        tokio::select! {
            event = next_event(Some(&mut twilio), &mut twilio_out, twilio_reading) => {
                let SocketEvent::Read(message) = event else {
                    continue;
                };
                match twilio_input(message, metrics, &mut reported, &mut spare_payload) {
                    TwilioRead::Input(input) => inputs.push_back(input),
                    TwilioRead::Nothing => {}
                    TwilioRead::Closed => {
                        twilio_reading = false;
                        inputs.push_back(Input::TwilioClosed);
                    }
                }
            }
            event = next_event(provider.as_mut(), &mut provider_out, provider_reading && read_provider) => {
                let SocketEvent::Read(message) = event else {
                    continue;
                };
                match provider_text(message) {
                    ProviderRead::Text(text) => {
                        let decoded =
                            dialect.decode_stream(&text, &mut provider_state, &mut provider_events);
                        inputs.extend(provider_events.drain(..).map(Input::Llm));
                        if let Err(e) = decoded {
                            report_once(
                                metrics,
                                &mut reported,
                                "provider_malformed_event",
                                &e.to_string(),
                            );
                        }
                    }
                    ProviderRead::Nothing => {}
                    ProviderRead::Closed(reason) => {
                        provider_reading = false;
                        inputs.push_back(Input::LlmClosed { reason });
                    }
                }
            }
            input = actor_rx.recv() => inputs.push_back(input.unwrap_or(Input::TwilioClosed)),
            () = &mut timer, if wake.is_some() => {
                timer_at = None;
                let now = Instant::now();
                if twilio_out.stalled(now) {
                    end_reason = Some(stalled(metrics, EndReason::TwilioStalled));
                } else if provider_out.stalled(now) {
                    end_reason = Some(stalled(metrics, EndReason::ProviderStalled));
                } else if session_wake.is_some_and(|at| at <= now) {
                    inputs.push_back(Input::Tick);
                }
            }
            connected = wait_for(&mut reconnecting) => {
                reconnecting = None;
                match connected {
                    Ok(socket) => {
                        info!(connection, "provider reconnected; resuming the session");
                        provider = Some(socket);
                        provider_reading = true;
                        provider_state = StreamState::for_connection(connection);
                    }
                    Err(reason) => {
                        warn!(error = %reason, "provider reconnection failed");
                        deps.metrics.error("provider_connect_failed");
                        inputs.push_back(Input::LlmClosed { reason });
                    }
                }
            }
        };
        // Whatever the last turn queued has been written: each buffer is taken back whole.
        twilio_buf.reclaim();
        provider_buf.reclaim();
        while end_reason.is_none()
            && let Some(input) = inputs.pop_front()
        {
            if let (
                Some(rec),
                Input::Twilio(crate::twilio::stream::TwilioEvent::Media {
                    timestamp_ms,
                    payload,
                    len,
                }),
            ) = (recording.as_mut(), &input)
            {
                caller_end_ms =
                    timestamp_ms + (*len as u64) / crate::twilio::stream::ULAW_BYTES_PER_MS as u64;
                rec.caller(*timestamp_ms, payload, metrics);
            }
            match input {
                // The echo's name string goes back to parse the next frame into.
                Input::Twilio(crate::twilio::stream::TwilioEvent::Mark { name }) => {
                    session.handle_mark(Instant::now().into_std(), &name);
                    spare_payload = name;
                }
                input => session.handle(Instant::now().into_std(), input),
            }
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Twilio(command) => {
                        let out = twilio_buf.writer();
                        match &command {
                            TwilioCommand::Media(frame) => {
                                Metrics::incr(&metrics.frames_out);
                                if let Some(rec) = recording.as_mut() {
                                    rec.send(RecordingEntry::Agent(*frame), metrics);
                                }
                                envelope.media_into(frame, out)
                            }
                            TwilioCommand::Mark(name) => {
                                envelope.mark_into(name.write_into(&mut mark_name), out)
                            }
                            TwilioCommand::Clear => {
                                if let Some(rec) = recording.as_mut() {
                                    rec.send(
                                        RecordingEntry::Cleared {
                                            at_ms: caller_end_ms,
                                        },
                                        metrics,
                                    );
                                }
                                envelope.clear_into(out)
                            }
                        }
                        if let Some(text) = twilio_buf.take() {
                            twilio_out.push(text);
                        }
                    }
                    Output::Llm(command) => {
                        dialect.encode_into(&command, provider_buf.writer());
                        let text = provider_buf.take();
                        if let LlmCommand::AppendAudio(payload) = command {
                            spare_payload = payload;
                            // Stale caller audio is worth less than a stalled call: past a queue's
                            // worth waiting, drop and count.
                            if let Some(text) = text {
                                if provider_out.queued() < OUTBOX_LIMIT {
                                    provider_out.push(text);
                                } else {
                                    Metrics::incr(&metrics.frames_dropped);
                                    report_once(
                                        metrics,
                                        &mut reported,
                                        "provider_backpressure",
                                        "caller frame dropped",
                                    );
                                }
                            }
                            continue;
                        }
                        let Some(text) = text else {
                            // No wire form in this dialect (e.g. a cancel Gemini does by itself).
                            continue;
                        };
                        if let LlmCommand::Truncate {
                            item_id,
                            audio_end_ms,
                        } = &command
                        {
                            Metrics::incr(&metrics.truncations);
                            debug!(item_id, audio_end_ms, "truncate");
                        }
                        if let LlmCommand::SystemNote(note) = &command
                            && !note.starts_with(super::session::OPERATOR_NOTE_PREFIX)
                        {
                            journal.record(CallEventKind::Dtmf, json!({ "note": note }));
                        }
                        provider_out.push(text);
                    }
                    Output::ReconnectProvider { handle } => {
                        // The old socket is closed in the background; commands from now on queue for
                        // the new one, behind the setup that resumes the session.
                        provider_reading = false;
                        provider_out.reset();
                        if let Some(old) = provider.take() {
                            closing.spawn(
                                close_quietly(old, ProviderMessage::Close(None)).in_current_span(),
                            );
                        }
                        let mut config = plan.session_config(
                            &identity.caller,
                            &identity.called,
                            &identity.call_sid,
                        );
                        config.resumption_handle = Some(handle);
                        let setup = dialect.encode(&LlmCommand::UpdateSession(config));
                        provider_out.push(Bytes::from(setup));
                        connection += 1;
                        if let Some(old) = reconnecting.take() {
                            old.abort();
                        }
                        let dialect = dialect_arc.clone();
                        reconnecting =
                            Some(tokio::spawn(connect_provider(dialect).in_current_span()));
                    }
                    Output::RunTool {
                        call_id,
                        name,
                        arguments,
                    } => {
                        let context = ToolContext {
                            call_sid: identity.call_sid.clone(),
                            caller: identity.caller.clone(),
                            called: identity.called.clone(),
                            tool_call_id: call_id.clone(),
                            call_started: Some(call_started),
                            inbound: journal.inbound,
                        };
                        journal.record(
                            CallEventKind::ToolCall,
                            json!({ "call_id": call_id, "tool": name, "arguments": arguments }),
                        );
                        let mut run = Box::pin(run_tool(
                            plan.tools.clone(),
                            context,
                            name,
                            arguments,
                            metrics.clone(),
                            journal.clone(),
                        ));
                        // A tool that answers at once (a built-in, a lookup with nothing to wait for)
                        // answers within this turn: no task, no queue. Anything that waits (a vendor
                        // request, a ledger write of a side-effecting tool) goes on in a task, the very
                        // same future, so its exactly-once ledger is untouched.
                        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                        match run.as_mut().poll(&mut cx) {
                            std::task::Poll::Ready(output) => session.handle(
                                Instant::now().into_std(),
                                Input::ToolFinished { call_id, output },
                            ),
                            std::task::Poll::Pending => {
                                let (tx, guard) = (actor_tx.clone(), metrics.task_guard());
                                tools.spawn(
                                    async move {
                                        let _guard = guard;
                                        let output = run.await;
                                        let _ =
                                            tx.send(Input::ToolFinished { call_id, output }).await;
                                    }
                                    .in_current_span(),
                                );
                            }
                        }
                    }
                    Output::Transfer { destination } => super::transfer::start_redirect(
                        deps,
                        &plan.transfer_destinations,
                        super::transfer::RedirectRequest {
                            call_sid: &identity.call_sid,
                            caller: &identity.caller,
                            called: &identity.called,
                            destination: &destination,
                        },
                        &actor_tx,
                        &mut tools,
                    ),
                    Output::WarmTransfer {
                        destination,
                        summary,
                    } => {
                        let (tenant, agent) = identity.route.ids();
                        super::warm::start(
                            deps,
                            &plan.transfer_destinations,
                            super::warm::WarmRequest {
                                call_sid: &identity.call_sid,
                                caller: &identity.caller,
                                called: &identity.called,
                                tenant,
                                agent,
                                destination: &destination,
                                summary: &summary,
                            },
                            &actor_tx,
                            &mut tools,
                        )
                    }
                    Output::Event(event) => log_event(metrics, journal, &mut reported, event),
                    Output::Hangup(reason) => end_reason = Some(reason),
                }
            }
        }
        // The turn's messages go out: one flush per socket.
        twilio_out.drive_now(&mut twilio).await;
        if let Some(provider) = provider.as_mut() {
            provider_out.drive_now(provider).await;
        }
        // Reap finished tasks so the sets do not grow over a long call.
        while tools.try_join_next().is_some() {}
        while closing.try_join_next().is_some() {}
    }

    // Close both sockets after what is queued (the Twilio close hangs the call up: no TwiML
    // follows <Connect>), then let running tools finish their side effects within their deadline.
    if let Some(connecting) = reconnecting.take() {
        connecting.abort();
    }
    drop(actor_tx);
    let _ = timeout(
        CLOSE_GRACE,
        futures_util::future::join(
            twilio_out.close(&mut twilio, TwilioMessage::Close(None)),
            async {
                if let Some(provider) = provider.as_mut() {
                    provider_out
                        .close(provider, ProviderMessage::Close(None))
                        .await;
                }
            },
        ),
    )
    .await;
    drain_within(&mut closing, CLOSE_GRACE).await;
    drain_within(&mut tools, plan.tools.deadline()).await;
    let recording_path = match recording {
        Some(rec) => rec.finish(metrics).await,
        None => None,
    };
    (
        end_reason.unwrap_or(EndReason::CallerHungUp),
        recording_path,
    )
}

/// Counts a stalled peer and returns the end reason it gives the call.
fn stalled(metrics: &Metrics, reason: EndReason) -> EndReason {
    metrics.error(reason.label());
    warn!(
        reason = reason.label(),
        waited = ?PEER_STALL,
        "peer stopped reading; hanging up"
    );
    reason
}

/// Runs one tool call and records its result; returns the output for the model.
async fn run_tool(
    registry: Arc<ToolRegistry>,
    context: ToolContext,
    name: String,
    arguments: String,
    metrics: Arc<Metrics>,
    journal: Journal,
) -> String {
    let call_id = context.tool_call_id.clone();
    let started = Instant::now();
    let (output, outcome) = registry.run(context, &name, &arguments).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    metrics.tool_call(outcome);
    info!(tool = %name, call_id = %call_id, outcome, duration_ms, "tool call finished");
    journal.record(
        CallEventKind::ToolResult,
        json!({
            "call_id": call_id,
            "tool": name,
            "outcome": outcome,
            "duration_ms": duration_ms,
            "output": summarize(&output),
        }),
    );
    output
}

/// Resolves when the background connection attempt (if any) finishes; pending forever otherwise.
async fn wait_for(
    task: &mut Option<tokio::task::JoinHandle<Result<ProviderSocket, String>>>,
) -> Result<ProviderSocket, String> {
    match task {
        Some(handle) => match handle.await {
            Ok(result) => result,
            Err(e) => Err(format!("reconnect task failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

enum RecordingEntry {
    Caller { at_ms: u64, ulaw: Vec<u8> },
    Agent([u8; stream::FRAME_BYTES]),
    Cleared { at_ms: u64 },
}

/// The call's recorder, run by its own task so disk writes never stall the call. It is fed the
/// caller's frames and exactly the agent frames sent to Twilio, cut at every `clear`; the file is
/// finalised when the call ends, however it ends (the task finishes when its queue closes).
struct Recording {
    tx: mpsc::Sender<RecordingEntry>,
    task: tokio::task::JoinHandle<Option<std::path::PathBuf>>,
    /// Reused for decoding caller payloads.
    scratch: Vec<u8>,
    reported: HashSet<&'static str>,
}

impl Recording {
    /// Starts recording if the agent records calls and the call has a record to attach it to.
    async fn start(deps: &CallDeps, plan: &CallPlan, journal: &Journal) -> Option<Recording> {
        if !plan.recording {
            return None;
        }
        let call_id = journal.call_id.clone()?;
        let dir = deps.config.recordings_dir.clone();
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            deps.metrics.error("recording_failed");
            warn!(error = %e, dir = %dir.display(), "cannot create the recordings directory; call not recorded");
            return None;
        }
        let recorder = match Recorder::create(&dir, &call_id, deps.config.recording_format) {
            Ok(recorder) => recorder,
            Err(e) => {
                deps.metrics.error("recording_failed");
                warn!(error = %e, "cannot start recording; call not recorded");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(RECORDING_QUEUE);
        let guard = deps.metrics.task_guard();
        let metrics = deps.metrics.clone();
        let task = tokio::spawn(
            async move {
                let _guard = guard;
                record_loop(recorder, rx, metrics).await
            }
            .in_current_span(),
        );
        Some(Recording {
            tx,
            task,
            scratch: Vec::with_capacity(stream::FRAME_BYTES),
            reported: HashSet::new(),
        })
    }

    fn caller(&mut self, at_ms: u64, payload: &str, metrics: &Metrics) {
        self.scratch.clear();
        if STANDARD.decode_vec(payload, &mut self.scratch).is_err() {
            return;
        }
        let ulaw = self.scratch.clone();
        self.send(RecordingEntry::Caller { at_ms, ulaw }, metrics);
    }

    fn send(&mut self, entry: RecordingEntry, metrics: &Metrics) {
        if self.tx.try_send(entry).is_err() {
            report_once(
                metrics,
                &mut self.reported,
                "recording_backpressure",
                "recorder queue full: audio not recorded",
            );
        }
    }

    async fn finish(self, metrics: &Metrics) -> Option<String> {
        drop(self.tx);
        let mut task = self.task;
        match timeout(JOURNAL_GRACE, &mut task).await {
            Ok(Ok(path)) => path.map(|p| p.display().to_string()),
            Ok(Err(_)) => None,
            Err(_) => {
                task.abort();
                metrics.error("recording_failed");
                None
            }
        }
    }
}

async fn record_loop(
    mut recorder: Recorder,
    mut rx: mpsc::Receiver<RecordingEntry>,
    metrics: Arc<Metrics>,
) -> Option<std::path::PathBuf> {
    let mut reported = HashSet::new();
    while let Some(entry) = rx.recv().await {
        let result = match entry {
            RecordingEntry::Caller { at_ms, ulaw } => recorder.caller_audio(at_ms, &ulaw),
            RecordingEntry::Agent(frame) => recorder.agent_audio_queued(&frame),
            RecordingEntry::Cleared { at_ms } => {
                recorder.agent_cleared(at_ms);
                Ok(())
            }
        };
        if let Err(e) = result {
            report_once(
                &metrics,
                &mut reported,
                "recording_incomplete",
                &e.to_string(),
            );
        }
    }
    match recorder.finish() {
        Ok(path) => Some(path),
        Err(e) => {
            metrics.error("recording_failed");
            warn!(error = %e, "cannot finish the recording");
            None
        }
    }
}

/// Waits up to `limit` for every task in `set`, then aborts what is left.
async fn drain_within(set: &mut JoinSet<()>, limit: Duration) {
    let all_done = async { while set.join_next().await.is_some() {} };
    if timeout(limit, all_done).await.is_err() {
        set.shutdown().await;
    }
}

fn log_event(
    metrics: &Metrics,
    journal: &Journal,
    reported: &mut HashSet<&'static str>,
    event: CallEvent,
) {
    match event {
        CallEvent::SessionReady => info!("provider session ready"),
        CallEvent::Transcript { speaker, text } => {
            info!(target: "callbridge::transcript", speaker = ?speaker, text = %crate::connectors::http::redact::text_for_log(&text), "transcript");
            let speaker = match speaker {
                Speaker::Caller => "caller",
                Speaker::Agent => "agent",
            };
            journal.record(
                CallEventKind::Transcript,
                json!({ "speaker": speaker, "text": text }),
            );
        }
        CallEvent::BargeIn {
            item_id,
            truncated_at_ms,
        } => {
            Metrics::incr(&metrics.barge_ins);
            info!(item_id, truncated_at_ms, "caller barged in");
            journal.record(
                CallEventKind::BargeIn,
                json!({ "item_id": item_id, "truncated_at_ms": truncated_at_ms }),
            );
        }
        CallEvent::ToolRequested { call_id, name } => {
            info!(tool = %name, call_id = %call_id, "tool call requested")
        }
        CallEvent::LateDeltaDropped => Metrics::incr(&metrics.late_deltas_dropped),
        CallEvent::FillerRequested => {
            Metrics::incr(&metrics.fillers);
            debug!("tool is slow: asking for a holding phrase");
        }
        CallEvent::ProtocolError { kind, detail } => report_once(metrics, reported, kind, &detail),
        CallEvent::ProviderError { code, message } => {
            metrics.error("provider_error");
            warn!(code = %code, message = %message, "provider reported an error");
        }
        CallEvent::Ending { reason } => info!(reason = reason.label(), "ending the call"),
        CallEvent::ProviderResuming { attempt } => {
            info!(attempt, "provider connection closed; resuming the session")
        }
        CallEvent::ProviderResumed => info!("provider session resumed"),
        CallEvent::Operator { action, detail } => {
            info!(action, "supervisor command");
            journal.record(
                CallEventKind::Status,
                json!({ "operator": action, "detail": detail }),
            );
        }
        CallEvent::DigitsSent { digits } => {
            // The keys may be an account number or a PIN: counted in the log, kept in the record.
            info!(keys = digits.chars().count(), "pressing keys");
            journal.record(
                CallEventKind::Dtmf,
                json!({ "direction": "out", "digits": digits }),
            );
        }
        CallEvent::Transfer {
            destination,
            outcome,
            detail,
        } => {
            info!(destination = %destination, outcome, "transfer");
            journal.record(
                CallEventKind::Transfer,
                json!({ "destination": destination, "outcome": outcome, "detail": detail }),
            );
        }
    }
}

/// What one read from the Twilio socket means for the session.
enum TwilioRead {
    Input(Input),
    /// Nothing for the session: a ping, or bad input (counted and logged once per kind).
    Nothing,
    /// The socket ended (closed, failed or gone).
    Closed,
}

fn twilio_input(
    message: Option<Result<TwilioMessage, axum::Error>>,
    metrics: &Metrics,
    reported: &mut HashSet<&'static str>,
    spare_payload: &mut String,
) -> TwilioRead {
    let text = match message {
        Some(Ok(TwilioMessage::Text(text))) => text,
        Some(Ok(TwilioMessage::Binary(_))) => {
            let e = stream::FrameError::Binary;
            report_once(metrics, reported, e.kind(), &e.to_string());
            return TwilioRead::Nothing;
        }
        Some(Ok(TwilioMessage::Close(_))) | None => return TwilioRead::Closed,
        Some(Ok(_)) => return TwilioRead::Nothing,
        Some(Err(e)) => {
            debug!(error = %e, "twilio socket error");
            return TwilioRead::Closed;
        }
    };
    match stream::parse_frame_with(&text, spare_payload) {
        Ok(event) => {
            if matches!(event, TwilioEvent::Media { .. }) {
                Metrics::incr(&metrics.frames_in);
            }
            TwilioRead::Input(Input::Twilio(event))
        }
        Err(e) => {
            report_once(metrics, reported, e.kind(), &e.to_string());
            TwilioRead::Nothing
        }
    }
}

/// What one read from the provider socket means for the actor.
enum ProviderRead {
    Text(Utf8Bytes),
    /// A ping, a pong or a binary frame: nothing for the session.
    Nothing,
    /// The socket ended; why, for the session and the log.
    Closed(String),
}

fn provider_text(
    message: Option<Result<ProviderMessage, tokio_tungstenite::tungstenite::Error>>,
) -> ProviderRead {
    match message {
        None => ProviderRead::Closed("provider closed the socket".to_owned()),
        Some(Ok(ProviderMessage::Text(text))) => ProviderRead::Text(text),
        Some(Ok(ProviderMessage::Close(frame))) => ProviderRead::Closed(match frame {
            Some(f) => format!("provider closed the socket: {} {}", f.code, f.reason),
            None => "provider closed the socket".to_owned(),
        }),
        Some(Ok(_)) => ProviderRead::Nothing,
        Some(Err(e)) => ProviderRead::Closed(format!("provider socket error: {e}")),
    }
}

/// Keeps a tool output short in the call's event log (the model got all of it).
fn summarize(output: &str) -> Value {
    const MAX: usize = 512;
    if output.len() <= MAX {
        return serde_json::from_str(output).unwrap_or_else(|_| Value::String(output.to_owned()));
    }
    let mut end = MAX;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!("{}…", &output[..end]))
}

/// The call's record in the store: the call row and its events, written by one task in order so the
/// actor never waits on the database. Calls answered by the default agent (no tenant) keep no record.
#[derive(Clone)]
struct Journal {
    tx: Option<mpsc::Sender<JournalEntry>>,
    /// The call's id in the store (names its recording); `None` when the call keeps no record.
    call_id: Option<String>,
    metrics: Arc<Metrics>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Every recorded event, for live consoles (see `call/live.rs`).
    events: super::live::LiveFeed,
    /// Whether the recorded call is inbound; `None` when the call keeps no record.
    inbound: Option<bool>,
}

enum JournalEntry {
    Event(CallEventKind, Value),
    Finish(CallEnd),
}

/// Events waiting to be written; past this, events are dropped and counted rather than slowing the call.
const JOURNAL_QUEUE: usize = 1024;
/// How long the end of a call waits for its record to be written.
const JOURNAL_GRACE: Duration = Duration::from_secs(5);

impl Journal {
    async fn open(deps: &CallDeps, identity: &CallIdentity) -> Journal {
        let disabled = Journal {
            tx: None,
            call_id: None,
            metrics: deps.metrics.clone(),
            done: Arc::new(tokio::sync::Mutex::new(None)),
            events: super::live::LiveFeed::default(),
            inbound: None,
        };
        // Quick-start calls (the default agent) are recorded under their own tenant.
        let quickstart;
        let (tenant, agent_id) = match &identity.route {
            Route::Agent { tenant, agent_id } => (tenant, agent_id),
            Route::Default => {
                match super::plan::quickstart_agent(&deps.store, &deps.config).await {
                    Ok(found) => {
                        quickstart = found;
                        (&quickstart.0, &quickstart.1)
                    }
                    Err(e) => {
                        deps.metrics.error("store_write_failed");
                        warn!(error = %e, "cannot record the quick-start call; it goes on unrecorded");
                        return disabled;
                    }
                }
            }
            Route::NotInService => return disabled,
        };
        let new_call = NewCall {
            tenant_id: tenant.clone(),
            agent_id: agent_id.clone(),
            direction: CallDirection::Inbound,
            from: identity.caller.clone(),
            to: identity.called.clone(),
            twilio_call_sid: Some(identity.call_sid.clone()),
            status: CallStatus::InProgress,
        };
        // An outbound call's record was created before dialling: continue it, never duplicate it.
        let existing = deps
            .store
            .call_by_twilio_sid(tenant, &identity.call_sid)
            .await
            .ok();
        let created = match existing {
            Some(call) => Ok(call),
            None => deps.store.create_call(&new_call).await,
        };
        let call = match created {
            Ok(call) => call,
            Err(e) => {
                deps.metrics.error("store_write_failed");
                warn!(error = %e, "cannot record the call; it goes on unrecorded");
                return disabled;
            }
        };
        let (tx, rx) = mpsc::channel(JOURNAL_QUEUE);
        let call_id = call.id.clone();
        let inbound = Some(call.direction == CallDirection::Inbound);
        let guard = deps.metrics.task_guard();
        let writer = tokio::spawn(
            write_journal(
                deps.store.clone(),
                deps.metrics.clone(),
                deps.node_id.clone(),
                tenant.clone(),
                call.id,
                rx,
                guard,
            )
            .in_current_span(),
        );
        Journal {
            tx: Some(tx),
            call_id: Some(call_id),
            metrics: deps.metrics.clone(),
            done: Arc::new(tokio::sync::Mutex::new(Some(writer))),
            events: super::live::LiveFeed::default(),
            inbound,
        }
    }

    fn record(&self, kind: CallEventKind, payload: Value) {
        if self.events.has_listeners() {
            self.events
                .send(json!({ "kind": kind.as_str(), "payload": payload.clone() }));
        }
        if let Some(tx) = &self.tx
            && tx.try_send(JournalEntry::Event(kind, payload)).is_err()
        {
            self.metrics.error("call_event_dropped");
        }
    }

    async fn finish(self, reason: &EndReason, recording_path: Option<String>) {
        self.events.send(json!({
            "kind": "ended",
            "payload": { "end_reason": reason.label() },
        }));
        let Some(tx) = self.tx else {
            return;
        };
        // On hold in a warm transfer: the call goes on (connected, or back on a new stream that
        // continues this record), so the record stays open; `call::warm` finishes it.
        let on_hold = matches!(reason, EndReason::OnHold { .. });
        let status = match reason {
            EndReason::CallerHungUp
            | EndReason::AgentEnded
            | EndReason::MaxDuration
            | EndReason::Silence
            | EndReason::Transferred { .. }
            | EndReason::OperatorEnded => CallStatus::Completed,
            _ => CallStatus::Failed,
        };
        let end = CallEnd {
            status,
            end_reason: reason.label().to_owned(),
            recording_path,
        };
        if !on_hold {
            let _ = timeout(JOURNAL_GRACE, tx.send(JournalEntry::Finish(end))).await;
        }
        drop(tx);
        if let Some(mut writer) = self.done.lock().await.take()
            && timeout(JOURNAL_GRACE, &mut writer).await.is_err()
        {
            writer.abort();
            self.metrics.error("store_write_failed");
        }
    }
}

/// What a call's end sets off, wherever its record was finished (the stream's journal, or
/// `call::warm` for a call that left through a warm transfer): the analysis (then the tenant's
/// `call.ended` webhook), the staff notification, and the post-call exports (a call-log row in a
/// sheet, files in Drive, …) on their own queue, run on `recorded_on` when that node holds the
/// call's recording.
pub(super) async fn after_call_finished(
    store: &crate::store::SqlStore,
    metrics: &Metrics,
    call: &crate::store::Call,
    end_reason: &str,
    recorded_on: Option<&str>,
) {
    super::analysis::call_finished(store, metrics, &call.tenant_id, &call.id).await;
    crate::notify::emit_for_call(
        store,
        call,
        crate::notify::NotifyEvent::CallEnded,
        end_reason,
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(e) =
        crate::exports::enqueue_call_exports(store, &call.tenant_id, &call.id, recorded_on, now)
            .await
    {
        metrics.error("export_enqueue_failed");
        warn!(error = %e, "cannot queue the post-call exports");
    }
}

async fn write_journal(
    store: SqlStore,
    metrics: Arc<Metrics>,
    node: Arc<str>,
    tenant: TenantId,
    call_id: String,
    mut rx: mpsc::Receiver<JournalEntry>,
    _guard: crate::metrics::TaskGuard,
) {
    while let Some(entry) = rx.recv().await {
        let result = match entry {
            JournalEntry::Event(kind, payload) => {
                let appended = store
                    .append_call_event(&tenant, &call_id, kind, &payload)
                    .await
                    .map(drop);
                // Staff notification rules on transfers (deduplicated per call).
                if kind == CallEventKind::Transfer
                    && appended.is_ok()
                    && let Ok(call) = store.call(&tenant, &call_id).await
                {
                    let to = payload["destination"].as_str().unwrap_or("a person");
                    crate::notify::emit_for_call(
                        &store,
                        &call,
                        crate::notify::NotifyEvent::TransferRequested,
                        to,
                    )
                    .await;
                }
                appended
            }
            JournalEntry::Finish(end) => match store.finish_call(&tenant, &call_id, &end).await {
                Ok(call) => {
                    let recorded_on = end.recording_path.as_ref().map(|_| &*node);
                    after_call_finished(&store, &metrics, &call, &end.end_reason, recorded_on)
                        .await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            metrics.error("store_write_failed");
            warn!(error = %e, "cannot record a call event");
        }
    }
}

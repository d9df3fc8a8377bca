//! The call's IO driver: one task per call that owns the [`CallSession`] and connects it to the
//! world.
//!
//! It waits for Twilio's `start`, checks the stream token, opens the provider socket, then spawns a
//! reader and a writer task per socket (talking to it through bounded channels) and runs the actor
//! loop: next input or timer → `session.handle` → carry out every output. When the session hangs up
//! it closes both sockets and waits for (or stops) every task it spawned, so nothing outlives the
//! call. It must not make decisions about the call: those belong to the session.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as TwilioMessage, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, StreamExt};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as ProviderMessage;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::plan::{CallPlan, PlanError, Route, plan_call};
use super::session::{
    CallEvent, CallSession, EndReason, Input, Output, SessionParams, TwilioCommand,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::realtime::{AudioFormat, Dialect, LlmCommand, Speaker};
use crate::store::{
    CallDirection, CallEnd, CallEventKind, CallStatus, NewCall, SqlStore, Store, TenantId,
};
use crate::tools::{ToolContext, ToolRegistry};
use crate::twilio::stream::{self, StreamStart, TwilioEvent, parse_frame};
use crate::twilio::token::{self, StreamClaims};
use serde_json::{Value, json};

/// How long Twilio has to send `start` after the socket opens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the provider has to accept the WebSocket.
const PROVIDER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writers get to flush and close after the call ends.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Inputs waiting for the actor (Twilio frames, provider events, tool results).
const ACTOR_QUEUE: usize = 256;
/// Messages waiting for a socket writer. Agent audio arrives faster than real time, in bursts.
const WRITER_QUEUE: usize = 512;

/// What every call shares.
#[derive(Clone)]
pub struct CallDeps {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub tools: Arc<ToolRegistry>,
    pub dialect: Arc<dyn Dialect>,
    pub store: crate::store::SqlStore,
}

/// The parameters callbridge put into the TwiML `<Stream>`, vouched for by the stream token.
#[derive(Debug, Clone)]
struct CallIdentity {
    call_sid: String,
    stream_sid: String,
    caller: String,
    called: String,
    route: Route,
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
}

impl StartError {
    fn kind(&self) -> &'static str {
        match self {
            StartError::Closed => "twilio_closed_before_start",
            StartError::Timeout(_) => "twilio_start_timeout",
            StartError::Token(_) => "twilio_stream_token_rejected",
            StartError::WrongAccount(_) => "twilio_wrong_account",
            StartError::Route(_) => "twilio_bad_route",
        }
    }
}

enum Outgoing {
    Text(String),
    Close,
}

/// Runs one call on an upgraded Twilio media socket, start to finish.
pub async fn run_call(deps: CallDeps, socket: WebSocket) {
    let _actor_guard = deps.metrics.task_guard();
    let (mut twilio_sink, mut twilio_stream) = socket.split();
    let identity = match await_start(&deps, &mut twilio_stream).await {
        Ok(identity) => identity,
        Err(e) => {
            warn!(error = %e, "media stream refused");
            deps.metrics.error(e.kind());
            let _ = twilio_sink.send(TwilioMessage::Close(None)).await;
            return;
        }
    };
    let span = info_span!("call", call_sid = %identity.call_sid);
    run_started_call(deps, identity, twilio_sink, twilio_stream)
        .instrument(span)
        .await;
}

async fn await_start(
    deps: &CallDeps,
    twilio_stream: &mut SplitStream<WebSocket>,
) -> Result<CallIdentity, StartError> {
    let started = Instant::now();
    let mut reported = HashSet::new();
    let start = loop {
        let remaining = START_TIMEOUT.saturating_sub(started.elapsed());
        let message = match timeout(remaining, twilio_stream.next()).await {
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
    verify_start(&deps.config, start)
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

async fn run_started_call(
    deps: CallDeps,
    identity: CallIdentity,
    twilio_sink: SplitSink<WebSocket, TwilioMessage>,
    twilio_stream: SplitStream<WebSocket>,
) {
    deps.metrics
        .active_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Metrics::incr(&deps.metrics.calls_started);
    info!(caller = %identity.caller, called = %identity.called, "call started");

    let reason = match plan_call(&deps, identity.route.clone()).await {
        Err(e) => {
            error!(error = %e, "cannot set up the call; ending it");
            deps.metrics.error("call_setup_failed");
            close_quietly(twilio_sink, TwilioMessage::Close(None)).await;
            EndReason::ProviderClosed(e.to_string())
        }
        Ok(plan) => {
            let journal = Journal::open(&deps, &identity).await;
            let reason = match connect_provider(plan.dialect.as_ref()).await {
                Ok(provider) => {
                    run_actor(
                        &deps,
                        &identity,
                        &plan,
                        &journal,
                        twilio_sink,
                        twilio_stream,
                        provider,
                    )
                    .await
                }
                Err(message) => {
                    error!(error = %message, provider = plan.dialect.name(), "provider connection failed; ending the call");
                    deps.metrics.error("provider_connect_failed");
                    close_quietly(twilio_sink, TwilioMessage::Close(None)).await;
                    EndReason::ProviderClosed(message)
                }
            };
            journal.finish(&reason).await;
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

async fn connect_provider(dialect: &dyn Dialect) -> Result<ProviderSocket, String> {
    let request = dialect.connect_request().map_err(|e| e.to_string())?;
    match timeout(
        PROVIDER_CONNECT_TIMEOUT,
        // Nagle off: audio frames are small writes that must not wait for an ACK.
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {PROVIDER_CONNECT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

async fn close_quietly<S, M>(mut sink: S, close: M)
where
    S: Sink<M> + Unpin,
{
    let _ = timeout(CLOSE_GRACE, sink.send(close)).await;
}

async fn run_actor(
    deps: &CallDeps,
    identity: &CallIdentity,
    plan: &CallPlan,
    journal: &Journal,
    twilio_sink: SplitSink<WebSocket, TwilioMessage>,
    twilio_stream: SplitStream<WebSocket>,
    provider: ProviderSocket,
) -> EndReason {
    let (provider_sink, provider_stream) = provider.split();
    let (actor_tx, mut actor_rx) = mpsc::channel::<Input>(ACTOR_QUEUE);
    let (twilio_tx, twilio_rx) = mpsc::channel::<Outgoing>(WRITER_QUEUE);
    let (provider_tx, provider_rx) = mpsc::channel::<Outgoing>(WRITER_QUEUE);

    let mut writers = JoinSet::new();
    let mut readers = JoinSet::new();
    let mut tools = JoinSet::new();
    let metrics = &deps.metrics;

    let guard = metrics.task_guard();
    writers.spawn(
        async move {
            let _guard = guard;
            write_loop(
                twilio_sink,
                twilio_rx,
                |t| TwilioMessage::Text(t.into()),
                TwilioMessage::Close(None),
            )
            .await
        }
        .in_current_span(),
    );
    let guard = metrics.task_guard();
    writers.spawn(
        async move {
            let _guard = guard;
            write_loop(
                provider_sink,
                provider_rx,
                |t| ProviderMessage::Text(t.into()),
                ProviderMessage::Close(None),
            )
            .await
        }
        .in_current_span(),
    );
    let guard = metrics.task_guard();
    let (tx, m) = (actor_tx.clone(), metrics.clone());
    readers.spawn(
        async move {
            let _guard = guard;
            read_twilio(twilio_stream, tx, m).await
        }
        .in_current_span(),
    );
    let guard = metrics.task_guard();
    let (tx, m, dialect) = (actor_tx.clone(), metrics.clone(), plan.dialect.clone());
    readers.spawn(
        async move {
            let _guard = guard;
            read_provider(provider_stream, tx, m, dialect).await
        }
        .in_current_span(),
    );

    let dialect = plan.dialect.as_ref();
    let params = SessionParams {
        max_duration: plan.max_duration,
        silence_timeout: plan.silence_timeout,
        speak_first: deps.config.speak_first,
        provider_cancels_on_speech: dialect.cancels_on_speech(),
        expected_format: dialect.format_name(AudioFormat::Pcmu),
        ..SessionParams::default()
    };
    let mut session = CallSession::new(params, Instant::now().into_std());
    let update = LlmCommand::UpdateSession(plan.session_config(
        &identity.caller,
        &identity.called,
        &identity.call_sid,
    ));
    let _ = provider_tx
        .send(Outgoing::Text(dialect.encode(&update)))
        .await;

    let mut reported = HashSet::new();
    let mut end_reason = None;
    while end_reason.is_none() {
        let wake = session.poll_timeout().map(Instant::from_std);
        let input = tokio::select! {
            input = actor_rx.recv() => input.unwrap_or(Input::TwilioClosed),
            _ = sleep_until(wake) => Input::Tick,
        };
        session.handle(Instant::now().into_std(), input);
        while let Some(output) = session.poll_output() {
            match output {
                Output::Twilio(command) => {
                    let text = match &command {
                        TwilioCommand::Media(frame) => {
                            Metrics::incr(&metrics.frames_out);
                            stream::media_message(&identity.stream_sid, frame)
                        }
                        TwilioCommand::Mark(name) => {
                            stream::mark_message(&identity.stream_sid, name)
                        }
                        TwilioCommand::Clear => stream::clear_message(&identity.stream_sid),
                    };
                    // Agent audio is never dropped: a slow Twilio socket slows the actor down.
                    let _ = twilio_tx.send(Outgoing::Text(text)).await;
                }
                Output::Llm(command) => {
                    let text = dialect.encode(&command);
                    match command {
                        LlmCommand::AppendAudio(_) => {
                            // Stale caller audio is worth less than a stalled call: drop and count.
                            if provider_tx.try_send(Outgoing::Text(text)).is_err() {
                                Metrics::incr(&metrics.frames_dropped);
                                report_once(
                                    metrics,
                                    &mut reported,
                                    "provider_backpressure",
                                    "caller frame dropped",
                                );
                            }
                        }
                        other => {
                            if let LlmCommand::Truncate {
                                item_id,
                                audio_end_ms,
                            } = &other
                            {
                                Metrics::incr(&metrics.truncations);
                                debug!(item_id, audio_end_ms, "truncate");
                            }
                            if let LlmCommand::SystemNote(note) = &other {
                                journal.record(CallEventKind::Dtmf, json!({ "note": note }));
                            }
                            let _ = provider_tx.send(Outgoing::Text(text)).await;
                        }
                    }
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
                    };
                    journal.record(
                        CallEventKind::ToolCall,
                        json!({ "call_id": call_id, "tool": name, "arguments": arguments }),
                    );
                    let (registry, tx, m, guard) = (
                        plan.tools.clone(),
                        actor_tx.clone(),
                        metrics.clone(),
                        metrics.task_guard(),
                    );
                    let journal = journal.clone();
                    tools.spawn(
                        async move {
                            let _guard = guard;
                            let started = Instant::now();
                            let (output, outcome) = registry.run(context, &name, &arguments).await;
                            let duration_ms = started.elapsed().as_millis() as u64;
                            m.tool_call(outcome);
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
                            let _ = tx.send(Input::ToolFinished { call_id, output }).await;
                        }
                        .in_current_span(),
                    );
                }
                Output::Event(event) => log_event(metrics, journal, &mut reported, event),
                Output::Hangup(reason) => end_reason = Some(reason),
            }
        }
        // Reap finished tool tasks so the set does not grow over a long call.
        while tools.try_join_next().is_some() {}
    }

    // Close both sockets (the Twilio close hangs the call up: no TwiML follows <Connect>), let
    // running tools finish their side effects within their deadline, then stop the readers.
    let _ = twilio_tx.try_send(Outgoing::Close);
    let _ = provider_tx.try_send(Outgoing::Close);
    drop((twilio_tx, provider_tx, actor_tx));
    drain_within(&mut writers, CLOSE_GRACE).await;
    drain_within(&mut tools, plan.tools.deadline()).await;
    readers.shutdown().await;
    end_reason.unwrap_or(EndReason::CallerHungUp)
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
            info!(target: "callbridge::transcript", speaker = ?speaker, text = %text, "transcript");
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
        CallEvent::ProtocolError { kind, detail } => report_once(metrics, reported, kind, &detail),
        CallEvent::ProviderError { code, message } => {
            metrics.error("provider_error");
            warn!(code = %code, message = %message, "provider reported an error");
        }
        CallEvent::Ending { reason } => info!(reason = reason.label(), "ending the call"),
    }
}

async fn write_loop<S, M>(
    mut sink: S,
    mut rx: mpsc::Receiver<Outgoing>,
    text: fn(String) -> M,
    close: M,
) where
    S: Sink<M> + Unpin,
{
    while let Some(outgoing) = rx.recv().await {
        match outgoing {
            Outgoing::Text(t) => {
                if sink.send(text(t)).await.is_err() {
                    return;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = sink.send(close).await;
    let _ = sink.close().await;
}

async fn read_twilio(
    mut stream: SplitStream<WebSocket>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
) {
    let mut reported = HashSet::new();
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(TwilioMessage::Text(text)) => text,
            Ok(TwilioMessage::Binary(_)) => {
                let e = stream::FrameError::Binary;
                report_once(&metrics, &mut reported, e.kind(), &e.to_string());
                continue;
            }
            Ok(TwilioMessage::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                debug!(error = %e, "twilio socket error");
                break;
            }
        };
        match parse_frame(&text) {
            Ok(event) => {
                if matches!(event, TwilioEvent::Media { .. }) {
                    Metrics::incr(&metrics.frames_in);
                }
                if tx.send(Input::Twilio(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => report_once(&metrics, &mut reported, e.kind(), &e.to_string()),
        }
    }
    let _ = tx.send(Input::TwilioClosed).await;
}

async fn read_provider(
    mut stream: SplitStream<ProviderSocket>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    dialect: Arc<dyn Dialect>,
) {
    let mut reported = HashSet::new();
    let reason = loop {
        let text = match stream.next().await {
            None => break "provider closed the socket".to_owned(),
            Some(Ok(ProviderMessage::Text(text))) => text,
            Some(Ok(ProviderMessage::Close(frame))) => {
                break match frame {
                    Some(f) => format!("provider closed the socket: {} {}", f.code, f.reason),
                    None => "provider closed the socket".to_owned(),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => break format!("provider socket error: {e}"),
        };
        match dialect.decode(&text) {
            Ok(Some(event)) => {
                if tx.send(Input::Llm(event)).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => report_once(
                &metrics,
                &mut reported,
                "provider_malformed_event",
                &e.to_string(),
            ),
        }
    };
    let _ = tx.send(Input::LlmClosed { reason }).await;
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
    metrics: Arc<Metrics>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
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
            metrics: deps.metrics.clone(),
            done: Arc::new(tokio::sync::Mutex::new(None)),
        };
        let Route::Agent { tenant, agent_id } = &identity.route else {
            return disabled;
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
        let call = match deps.store.create_call(&new_call).await {
            Ok(call) => call,
            Err(e) => {
                deps.metrics.error("store_write_failed");
                warn!(error = %e, "cannot record the call; it goes on unrecorded");
                return disabled;
            }
        };
        let (tx, rx) = mpsc::channel(JOURNAL_QUEUE);
        let guard = deps.metrics.task_guard();
        let writer = tokio::spawn(
            write_journal(
                deps.store.clone(),
                deps.metrics.clone(),
                tenant.clone(),
                call.id,
                rx,
                guard,
            )
            .in_current_span(),
        );
        Journal {
            tx: Some(tx),
            metrics: deps.metrics.clone(),
            done: Arc::new(tokio::sync::Mutex::new(Some(writer))),
        }
    }

    fn record(&self, kind: CallEventKind, payload: Value) {
        if let Some(tx) = &self.tx
            && tx.try_send(JournalEntry::Event(kind, payload)).is_err()
        {
            self.metrics.error("call_event_dropped");
        }
    }

    async fn finish(self, reason: &EndReason) {
        let Some(tx) = self.tx else {
            return;
        };
        let status = match reason {
            EndReason::CallerHungUp
            | EndReason::AgentEnded
            | EndReason::MaxDuration
            | EndReason::Silence => CallStatus::Completed,
            _ => CallStatus::Failed,
        };
        let end = CallEnd {
            status,
            end_reason: reason.label().to_owned(),
            recording_path: None,
        };
        let _ = timeout(JOURNAL_GRACE, tx.send(JournalEntry::Finish(end))).await;
        drop(tx);
        if let Some(mut writer) = self.done.lock().await.take()
            && timeout(JOURNAL_GRACE, &mut writer).await.is_err()
        {
            writer.abort();
            self.metrics.error("store_write_failed");
        }
    }
}

async fn write_journal(
    store: SqlStore,
    metrics: Arc<Metrics>,
    tenant: TenantId,
    call_id: String,
    mut rx: mpsc::Receiver<JournalEntry>,
    _guard: crate::metrics::TaskGuard,
) {
    while let Some(entry) = rx.recv().await {
        let result = match entry {
            JournalEntry::Event(kind, payload) => store
                .append_call_event(&tenant, &call_id, kind, &payload)
                .await
                .map(drop),
            JournalEntry::Finish(end) => {
                match store.finish_call(&tenant, &call_id, &end).await {
                    // The tenant's post-call webhook goes through the durable outbox.
                    Ok(_) => {
                        if let Err(e) =
                            crate::webhooks::enqueue_call_ended(&store, &tenant, &call_id).await
                        {
                            metrics.error("webhook_enqueue_failed");
                            warn!(error = %e, "cannot queue the call.ended webhook");
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            metrics.error("store_write_failed");
            warn!(error = %e, "cannot record a call event");
        }
    }
}

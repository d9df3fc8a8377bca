//! Warm transfer: the caller waits on hold in a Twilio conference while the destination is rung;
//! the person who answers hears the agent's summary (the whisper) and presses 1 to be joined. No
//! answer, busy, a machine, a declined whisper or no decision by the deadline → the caller is
//! redirected to a new media stream and is back with the agent, whose model is told what happened.
//!
//! Built on Twilio's documented primitives only: `CreateCall` for the destination's leg (`Url` =
//! the whisper, `StatusCallback` = how it ended, `MachineDetection=Enable`), `UpdateCall` to move
//! the caller into `<Dial><Conference>` and back to `<Connect><Stream>`, `<Gather>` for the key.
//!
//! Owns the table of transfers in progress on this node (a map behind a lock held only for map
//! reads and writes) and each transfer's one-way state: ringing → connected, or ringing → returned;
//! whichever Twilio callback or the deadline gets there first decides, the others find nothing to
//! do. It must not touch the media stream (Twilio ends it on the redirect) nor decide when the
//! handover line was heard (the session does). The table is per node: Twilio's callbacks for a
//! transfer must reach the node that started it; if they do not, the deadline still returns the
//! caller to the agent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use super::driver::{CallDeps, unix_now};
use super::session::Input;
use crate::connectors::twilio_rest::{
    Amd, CreateCall, Hangup, Instructions, MachineDetection, TwilioRest, UpdateCall,
};
use crate::store::{CallEnd, CallEventKind, CallStatus, Store, TenantId, TransferDestination};
use crate::twilio::token::{self, StreamClaims};
use crate::twilio::twiml;

/// How long the destination rings (`CreateCall` `Timeout`).
pub const RING_TIMEOUT_S: u32 = 30;
/// How long the destination has to press a key after the summary (`<Gather timeout>`).
pub const ACCEPT_TIMEOUT_S: u32 = 10;
/// After this long without an accepted whisper the caller goes back to the agent, whatever Twilio
/// reported (ringing, a slow machine detection, a summary being read, callbacks that never came).
pub const DEADLINE: Duration = Duration::from_secs(120);
/// How long the resumed stream's token stays valid.
const RESUME_TOKEN_TTL_SECS: u64 = 120;
/// The path prefix of the destination leg's callbacks: `{prefix}{id}/answer|accept|status`.
pub const CALLBACK_PREFIX: &str = "/twilio/warm/";

/// Why the caller came back (the stored outcome and what the model is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NoAnswer,
    Busy,
    Failed,
    Voicemail,
    Declined,
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
            Outcome::Voicemail => "voicemail",
            Outcome::Declined => "declined",
            Outcome::TimedOut => "timed_out",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Outcome::NoAnswer,
            Outcome::Busy,
            Outcome::Failed,
            Outcome::Voicemail,
            Outcome::Declined,
            Outcome::TimedOut,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }

    fn spoken(self) -> &'static str {
        match self {
            Outcome::NoAnswer => "nobody answered",
            Outcome::Busy => "the line was busy",
            Outcome::Failed => "the call to them could not be placed",
            Outcome::Voicemail => "it went to voicemail",
            Outcome::Declined => "they could not take the call right now",
            Outcome::TimedOut => "they did not pick up in time",
        }
    }

    /// The outcome of the destination leg's final `CallStatus`; `None` while it is still going
    /// or when it completed (decided by whether the whisper was accepted).
    pub fn of_status(status: &str) -> Option<Self> {
        match status {
            "busy" => Some(Outcome::Busy),
            "no-answer" => Some(Outcome::NoAnswer),
            "failed" | "canceled" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// The `resume` stream parameter (signed into the stream token): `id|destination|outcome`.
pub fn resume_parameter(id: &str, destination: &str, outcome: Outcome) -> String {
    format!("{id}|{destination}|{}", outcome.as_str())
}

/// The parts of a `resume` parameter: `(id, destination, outcome)`.
pub fn parse_resume(resume: &str) -> Option<(&str, &str, Outcome)> {
    let mut parts = resume.split('|');
    let (id, destination, outcome) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some((id, destination, Outcome::parse(outcome)?))
}

/// What the model is told when the caller comes back.
pub fn resume_note(resume: &str) -> Option<String> {
    let (_, destination, outcome) = parse_resume(resume)?;
    Some(format!(
        "You are back on the line with the caller after trying a warm transfer to {destination}: \
         {}. Tell the caller briefly, then offer to help further or to take a message.",
        outcome.spoken()
    ))
}

/// The stream claim a resumed stream takes (each resume streams once, like the first stream).
pub fn claim_key(call_sid: &str, resume: &str) -> String {
    match parse_resume(resume) {
        Some((id, _, _)) => format!("{call_sid}:{id}"),
        None => call_sid.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// The destination is being rung or hears the whisper.
    Ringing,
    /// The destination accepted and joined the conference.
    Connected,
}

#[derive(Debug, Clone)]
struct Leg {
    tenant: String,
    agent: String,
    call_sid: String,
    caller: String,
    called: String,
    destination: String,
    summary: String,
    room: String,
    /// The destination leg's call SID, once `CreateCall` answered.
    human_sid: Option<String>,
    state: LegState,
}

/// The warm transfers in progress on this node.
#[derive(Debug, Default)]
pub struct WarmTransfers {
    legs: Mutex<HashMap<String, Leg>>,
}

impl WarmTransfers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Leg>> {
        self.legs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<Leg> {
        self.lock().get(id).cloned()
    }

    /// Ringing → connected; `None` when the transfer is gone or already decided.
    fn connect(&self, id: &str) -> Option<Leg> {
        let mut legs = self.lock();
        let leg = legs.get_mut(id).filter(|l| l.state == LegState::Ringing)?;
        leg.state = LegState::Connected;
        Some(leg.clone())
    }

    /// Ringing → returned (removed); `None` when the transfer is gone or already connected.
    fn take_ringing(&self, id: &str) -> Option<Leg> {
        let mut legs = self.lock();
        if legs.get(id).is_some_and(|l| l.state == LegState::Ringing) {
            legs.remove(id)
        } else {
            None
        }
    }

    /// Transfers in progress (tests, metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a warm transfer needs from the call.
pub struct WarmRequest<'a> {
    pub call_sid: &'a str,
    pub caller: &'a str,
    pub called: &'a str,
    pub tenant: &'a str,
    pub agent: &'a str,
    pub destination: &'a str,
    pub summary: &'a str,
}

fn callback_url(deps: &CallDeps, id: &str, what: &str) -> String {
    format!("{}{CALLBACK_PREFIX}{id}/{what}", deps.config.public_url)
}

fn twilio(deps: &CallDeps) -> Result<TwilioRest, String> {
    TwilioRest::from_env(
        &deps.policy,
        &deps.config.twilio_account_sid,
        deps.config.twilio_auth_token.expose_secret(),
    )
    .map_err(|e| e.to_string())
}

/// Starts a warm transfer in the background: rings the destination, then moves the caller into
/// the hold conference. The actor hears back with [`Input::TransferFinished`] (`Ok` once the caller
/// is on hold; an error leaves the caller with the agent). The rest happens in Twilio's callbacks
/// ([`answered`], [`accepted`], [`leg_status`]) and the deadline.
pub fn start(
    deps: &CallDeps,
    destinations: &[TransferDestination],
    request: WarmRequest<'_>,
    actor_tx: &mpsc::Sender<Input>,
    tasks: &mut JoinSet<()>,
) {
    let tx = actor_tx.clone();
    let Some(destination) = destinations.iter().find(|d| d.name == request.destination) else {
        let detail = format!("no destination {:?} on this call", request.destination);
        let _ = tx.try_send(Input::TransferFinished {
            result: Err(detail),
        });
        return;
    };
    let id = format!("{:016x}", rand::random::<u64>());
    let leg = Leg {
        tenant: request.tenant.to_owned(),
        agent: request.agent.to_owned(),
        call_sid: request.call_sid.to_owned(),
        caller: request.caller.to_owned(),
        called: request.called.to_owned(),
        destination: destination.name.clone(),
        summary: request.summary.to_owned(),
        room: format!("callbridge-{id}"),
        human_sid: None,
        state: LegState::Ringing,
    };
    // The destination leg's caller ID is the agent's number: `CreateCall` may only present a
    // number of this account (the summary says who is calling).
    let ring = CreateCall {
        to: destination.target.clone(),
        from: request.called.to_owned(),
        instructions: Instructions::Url(callback_url(deps, &id, "answer")),
        status_callback: Some(callback_url(deps, &id, "status")),
        status_events: Vec::new(),
        timeout_secs: Some(RING_TIMEOUT_S),
        amd: Some(Amd {
            mode: MachineDetection::Enable,
            async_callback: None,
        }),
    };
    let deps = deps.clone();
    let guard = deps.metrics.task_guard();
    tasks.spawn(
        async move {
            let _guard = guard;
            let result = place(&deps, &id, leg, &ring).await;
            match &result {
                Ok(()) => {
                    info!(transfer = %id, "caller on hold; destination ringing");
                    let deadline_deps = deps.clone();
                    let deadline_id = id.clone();
                    let guard = deps.metrics.task_guard();
                    tokio::spawn(
                        async move {
                            let _guard = guard;
                            tokio::time::sleep(DEADLINE).await;
                            return_caller(&deadline_deps, &deadline_id, Outcome::TimedOut).await;
                        }
                        .in_current_span(),
                    );
                }
                Err(e) => {
                    deps.metrics.error("transfer_failed");
                    warn!(transfer = %id, error = %e, "warm transfer could not start");
                }
            }
            let _ = tx.send(Input::TransferFinished { result }).await;
        }
        .in_current_span(),
    );
}

/// Rings the destination, then puts the caller on hold. On an error nothing is left running.
async fn place(deps: &CallDeps, id: &str, leg: Leg, ring: &CreateCall) -> Result<(), String> {
    let client = twilio(deps)?;
    let call_sid = leg.call_sid.clone();
    let room = leg.room.clone();
    deps.live.warm.lock().insert(id.to_owned(), leg);
    let human = match client.create_call(ring).await {
        Ok(human) => human,
        Err(e) => {
            deps.live.warm.lock().remove(id);
            return Err(format!("cannot ring the destination: {e}"));
        }
    };
    if let Some(leg) = deps.live.warm.lock().get_mut(id) {
        leg.human_sid = Some(human.sid.clone());
    }
    let hold = UpdateCall::Redirect(Instructions::Twiml(twiml::conference(&room, false)));
    if let Err(e) = client.update_call(&call_sid, &hold).await {
        deps.live.warm.lock().remove(id);
        // Nobody is waiting for the destination now: stop ringing it.
        if let Err(e) = client
            .update_call(&human.sid, &UpdateCall::Hangup(Hangup::Canceled))
            .await
        {
            warn!(transfer = %id, error = %e, "cannot cancel the destination leg");
        }
        return Err(format!("cannot put the caller on hold: {e}"));
    }
    Ok(())
}

/// The destination answered (Twilio fetches the leg's `Url`): the whisper, or a hang-up for a
/// machine (the caller goes back to the agent).
pub async fn answered(deps: &CallDeps, id: &str, answered_by: Option<&str>) -> String {
    let Some(leg) = deps
        .live
        .warm
        .get(id)
        .filter(|l| l.state == LegState::Ringing)
    else {
        return twiml::say_and_hang_up("This transfer is no longer waiting. Goodbye.");
    };
    if answered_by.is_some_and(|a| a.starts_with("machine") || a == "fax") {
        return_caller(deps, id, Outcome::Voicemail).await;
        return twiml::hang_up();
    }
    twiml::whisper(
        &leg.summary,
        &callback_url(deps, id, "accept"),
        ACCEPT_TIMEOUT_S,
    )
}

/// The destination pressed a key after the whisper: `1` joins the caller, anything else declines.
pub async fn accepted(deps: &CallDeps, id: &str, digits: &str) -> String {
    if digits != "1" {
        return_caller(deps, id, Outcome::Declined).await;
        return twiml::say_and_hang_up("Understood. The caller stays with the assistant. Goodbye.");
    }
    let Some(leg) = deps.live.warm.connect(id) else {
        return twiml::say_and_hang_up("This transfer is no longer waiting. Goodbye.");
    };
    info!(transfer = %id, destination = %leg.destination, "warm transfer accepted");
    let record = async {
        let tenant = TenantId::parse(&leg.tenant).ok()?;
        let call = deps
            .store
            .call_by_twilio_sid(&tenant, &leg.call_sid)
            .await
            .ok()?;
        Some((tenant, call.id))
    };
    if let Some((tenant, call_id)) = record.await {
        let event =
            json!({"destination": leg.destination, "outcome": "connected", "detail": "warm"});
        let end = CallEnd {
            status: CallStatus::Completed,
            end_reason: "transferred".into(),
            recording_path: None,
        };
        let written = async {
            deps.store
                .append_call_event(&tenant, &call_id, CallEventKind::Transfer, &event)
                .await?;
            deps.store.finish_call(&tenant, &call_id, &end).await
        };
        match written.await {
            Ok(call) => {
                super::driver::after_call_finished(
                    &deps.store,
                    &deps.metrics,
                    &call,
                    &end.end_reason,
                    None,
                )
                .await;
            }
            Err(e) => {
                deps.metrics.error("store_write_failed");
                warn!(error = %e, "cannot record the warm transfer");
            }
        }
    }
    deps.metrics.call_ended("transferred");
    twiml::conference(&leg.room, true)
}

/// The destination leg's status callback: a final status without an accepted whisper returns
/// the caller; the end of a connected leg ends the transfer.
pub async fn leg_status(deps: &CallDeps, id: &str, status: &str) {
    match Outcome::of_status(status) {
        Some(outcome) => return_caller(deps, id, outcome).await,
        None if status == "completed" => {
            // Hung up without accepting (or the whisper timed out), or the connected call ended.
            if deps
                .live
                .warm
                .get(id)
                .is_some_and(|l| l.state == LegState::Connected)
            {
                deps.live.warm.lock().remove(id);
            } else {
                return_caller(deps, id, Outcome::Declined).await;
            }
        }
        None => {}
    }
}

/// Takes the caller back to the agent on a new stream, once: the first of the callbacks and the
/// deadline to get here does it, the rest find the transfer gone.
pub async fn return_caller(deps: &CallDeps, id: &str, outcome: Outcome) {
    let Some(leg) = deps.live.warm.take_ringing(id) else {
        return;
    };
    info!(transfer = %id, destination = %leg.destination, outcome = outcome.as_str(), "warm transfer not taken; caller back to the agent");
    let client = match twilio(deps) {
        Ok(client) => client,
        Err(e) => {
            deps.metrics.error("transfer_failed");
            warn!(transfer = %id, error = %e, "cannot reach Twilio to return the caller");
            return;
        }
    };
    // At the deadline the destination may still be ringing or listening: stop it.
    if let Some(human) = &leg.human_sid
        && outcome == Outcome::TimedOut
    {
        let canceled = client
            .update_call(human, &UpdateCall::Hangup(Hangup::Canceled))
            .await;
        if canceled.is_err() {
            let _ = client
                .update_call(human, &UpdateCall::Hangup(Hangup::Completed))
                .await;
        }
    }
    let record = record_of(deps, &leg).await;
    if let Some((tenant, call_id)) = &record {
        let event =
            json!({"destination": leg.destination, "outcome": outcome.as_str(), "detail": "warm"});
        if let Err(e) = deps
            .store
            .append_call_event(tenant, call_id, CallEventKind::Transfer, &event)
            .await
        {
            deps.metrics.error("store_write_failed");
            warn!(error = %e, "cannot record the warm transfer's outcome");
        }
    }
    let claims = StreamClaims {
        call_sid: leg.call_sid.clone(),
        from: leg.caller.clone(),
        to: leg.called.clone(),
        tenant: leg.tenant.clone(),
        agent: leg.agent.clone(),
        expires_at: unix_now() + RESUME_TOKEN_TTL_SECS,
        resume: resume_parameter(id, &leg.destination, outcome),
    };
    let stream_token = token::mint(deps.config.twilio_auth_token.expose_secret(), &claims);
    let expires = claims.expires_at.to_string();
    let xml = twiml::connect_stream(
        &deps.config.media_url(),
        &[
            ("from", &claims.from),
            ("to", &claims.to),
            ("tenant", &claims.tenant),
            ("agent", &claims.agent),
            ("exp", &expires),
            ("resume", &claims.resume),
            ("token", &stream_token),
        ],
    );
    let back = UpdateCall::Redirect(Instructions::Twiml(xml));
    if let Err(e) = client.update_call(&leg.call_sid, &back).await {
        // The caller left the hold (hung up), or Twilio refused: the call is over.
        deps.metrics.error("transfer_failed");
        warn!(transfer = %id, error = %e, "cannot return the caller to the agent");
        if let Some((tenant, call_id)) = record {
            let end = CallEnd {
                status: CallStatus::Completed,
                end_reason: "transfer_failed".into(),
                recording_path: None,
            };
            if let Ok(call) = deps.store.finish_call(&tenant, &call_id, &end).await {
                super::driver::after_call_finished(
                    &deps.store,
                    &deps.metrics,
                    &call,
                    &end.end_reason,
                    None,
                )
                .await;
            }
        }
        deps.metrics.call_ended("transfer_failed");
    }
}

async fn record_of(deps: &CallDeps, leg: &Leg) -> Option<(TenantId, String)> {
    let tenant = TenantId::parse(&leg.tenant).ok()?;
    let call = deps
        .store
        .call_by_twilio_sid(&tenant, &leg.call_sid)
        .await
        .ok()?;
    Some((tenant, call.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_parameters_round_trip_and_name_the_claim() {
        let resume = resume_parameter("00ff", "front-desk", Outcome::Busy);
        assert_eq!(resume, "00ff|front-desk|busy");
        assert_eq!(
            parse_resume(&resume),
            Some(("00ff", "front-desk", Outcome::Busy))
        );
        assert_eq!(claim_key("CA1", &resume), "CA1:00ff");
        assert_eq!(claim_key("CA1", ""), "CA1");
        assert!(resume_note(&resume).unwrap().contains("the line was busy"));
        for bad in ["", "zz|a|busy", "00|a|hot", "00|a|busy|x", "00|a"] {
            assert_eq!(parse_resume(bad), None, "{bad}");
        }
    }

    #[test]
    fn final_statuses_map_to_outcomes() {
        assert_eq!(Outcome::of_status("busy"), Some(Outcome::Busy));
        assert_eq!(Outcome::of_status("no-answer"), Some(Outcome::NoAnswer));
        assert_eq!(Outcome::of_status("failed"), Some(Outcome::Failed));
        assert_eq!(Outcome::of_status("completed"), None);
        assert_eq!(Outcome::of_status("ringing"), None);
    }

    fn leg() -> Leg {
        Leg {
            tenant: "acme".into(),
            agent: "a".into(),
            call_sid: "CA1".into(),
            caller: "+14155551234".into(),
            called: "+15005550006".into(),
            destination: "front-desk".into(),
            summary: "Ann, billing".into(),
            room: "callbridge-1".into(),
            human_sid: None,
            state: LegState::Ringing,
        }
    }

    #[test]
    fn a_transfer_is_decided_once() {
        let table = WarmTransfers::default();
        table.lock().insert("1".into(), leg());
        assert!(table.connect("1").is_some());
        assert!(table.connect("1").is_none(), "accepted twice");
        assert!(
            table.take_ringing("1").is_none(),
            "returned after accepting"
        );
        table.lock().insert("2".into(), leg());
        assert!(table.take_ringing("2").is_some());
        assert!(table.connect("2").is_none(), "accepted after returning");
        assert!(table.take_ringing("2").is_none());
        assert_eq!(table.len(), 1);
    }
}

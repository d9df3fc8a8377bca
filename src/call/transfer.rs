//! Cold transfer: the `transfer_call` tool (which destinations the model may pick, open or closed
//! now) and the redirect that hands the live call to a person with TwiML `<Dial>`.
//!
//! The tool only validates; the session decides when the handover line has been heard and asks
//! for the redirect ([`super::session::Output::Transfer`]); [`start_redirect`] then sends
//! `UpdateCall` through the Twilio REST client (one outbound policy, no retry loop of its own) and
//! reports back with [`Input::TransferFinished`]. It must not touch the media stream: Twilio ends it
//! when the call runs the new TwiML.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use super::driver::CallDeps;
use super::session::Input;
use crate::connectors::twilio_rest::{Instructions, TwilioRest, UpdateCall};
use crate::realtime::{TRANSFER_CALL_TOOL, ToolDeclaration};
use crate::store::{CallerIdPolicy, TransferDestination, day_index};
use crate::tools::{Tool, ToolContext, ToolError, ToolFuture};
use crate::twilio::twiml::{self, DialTarget};

/// How long the person being transferred to has to answer (`<Dial timeout>`).
pub const DIAL_TIMEOUT_S: u32 = 30;

/// True when `destination` is open at `now` in `zone` (no hours: always open).
pub fn is_open(destination: &TransferDestination, zone: Tz, now: DateTime<Utc>) -> bool {
    if destination.hours.is_empty() {
        return true;
    }
    let local = now.with_timezone(&zone);
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = local.hour() * 60 + local.minute();
    destination.hours.iter().any(|window| {
        window.days.iter().any(|d| day_index(d) == Some(day))
            && window
                .minutes()
                .is_some_and(|(open, close)| open <= minute && minute < close)
    })
}

fn hours_text(destination: &TransferDestination) -> String {
    if destination.hours.is_empty() {
        return "always open".into();
    }
    let windows: Vec<String> = destination
        .hours
        .iter()
        .map(|w| format!("{} {}-{}", w.days.join(","), w.open, w.close))
        .collect();
    format!("open {}", windows.join("; "))
}

/// The built-in `transfer_call` for one agent's destinations.
#[derive(Debug)]
pub struct TransferTool {
    destinations: Arc<[TransferDestination]>,
    zone: Tz,
    clock: fn() -> DateTime<Utc>,
}

impl TransferTool {
    pub fn new(destinations: Vec<TransferDestination>, zone: Tz) -> Self {
        Self::with_clock(destinations, zone, Utc::now)
    }

    /// With an explicit clock (tests).
    pub fn with_clock(
        destinations: Vec<TransferDestination>,
        zone: Tz,
        clock: fn() -> DateTime<Utc>,
    ) -> Self {
        Self {
            destinations: destinations.into(),
            zone,
            clock,
        }
    }

    fn check(&self, arguments: &Value) -> Result<Value, ToolError> {
        let name = arguments["destination"].as_str().ok_or_else(|| {
            ToolError::InvalidArguments("name the destination: {\"destination\": \"...\"}".into())
        })?;
        let destination = self
            .destinations
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
                ToolError::InvalidArguments(format!(
                    "there is no destination {name:?}; choose one of: {}",
                    names.join(", ")
                ))
            })?;
        if !is_open(destination, self.zone, (self.clock)()) {
            return Err(ToolError::Failed(format!(
                "{} is closed now ({}, {}). Do not transfer; offer to take a message or help otherwise.",
                destination.name,
                hours_text(destination),
                self.zone.name()
            )));
        }
        match arguments["mode"].as_str() {
            None | Some("cold") => {
                Ok(json!({ "destination": destination.name, "status": "transferring" }))
            }
            Some("warm") => {
                let summary = arguments["summary"]
                    .as_str()
                    .map(str::trim)
                    .unwrap_or_default();
                let summary = check_summary(summary).map_err(ToolError::InvalidArguments)?;
                Ok(json!({
                    "destination": destination.name,
                    "status": "transferring",
                    "mode": "warm",
                    "summary": summary,
                }))
            }
            Some(other) => Err(ToolError::InvalidArguments(format!(
                "mode {other:?} is neither \"cold\" nor \"warm\""
            ))),
        }
    }
}

/// The longest warm-transfer summary read to the destination (about a minute of speech).
pub const MAX_SUMMARY_CHARS: usize = 1000;

/// Checks a warm transfer's summary: present, at most [`MAX_SUMMARY_CHARS`] characters.
pub fn check_summary(summary: &str) -> Result<String, String> {
    let summary = summary.trim();
    if summary.is_empty() {
        return Err(
            "a warm transfer needs a summary for the colleague: {\"summary\": \"...\"}".into(),
        );
    }
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(format!(
            "the summary is longer than {MAX_SUMMARY_CHARS} characters; shorten it"
        ));
    }
    Ok(summary.to_owned())
}

impl Tool for TransferTool {
    fn declaration(&self) -> ToolDeclaration {
        let listed: Vec<String> = self
            .destinations
            .iter()
            .map(|d| format!("- {}: {} ({})", d.name, d.description, hours_text(d)))
            .collect();
        let names: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
        ToolDeclaration {
            name: TRANSFER_CALL_TOOL.into(),
            description: format!(
                "Transfer the caller to a person. First tell the caller in one short sentence \
                 that you are transferring them, then call this tool. mode \"cold\" (default) \
                 connects the caller straight away. mode \"warm\" first rings the colleague, who \
                 hears your summary and accepts before the caller is connected; the caller waits \
                 on hold, and if nobody accepts you are back with the caller. Destinations \
                 (hours in {}):\n{}",
                self.zone.name(),
                listed.join("\n")
            ),
            parameters: json!({
                "type": "object",
                "properties": {
                    "destination": {"type": "string", "enum": names},
                    "reason": {"type": "string", "description": "Why, in a few words."},
                    "mode": {"type": "string", "enum": ["cold", "warm"]},
                    "summary": {
                        "type": "string",
                        "description": "Warm transfers: what the colleague hears before accepting \
                                        (who is calling, what they need, what was done so far)."
                    }
                },
                "required": ["destination"]
            }),
        }
    }

    fn invoke(&self, _context: ToolContext, arguments: Value) -> ToolFuture {
        let result = self.check(&arguments);
        Box::pin(async move { result })
    }
}

/// The TwiML that hands the call to `destination`. `caller` and `called` are the call's numbers
/// as the stream token vouched for them.
pub fn transfer_twiml(destination: &TransferDestination, caller: &str, called: &str) -> String {
    let target = if destination.is_sip() {
        DialTarget::Sip(&destination.target)
    } else {
        DialTarget::Number(&destination.target)
    };
    let caller_id = match destination.caller_id {
        CallerIdPolicy::Agent => called,
        CallerIdPolicy::Caller => caller,
    };
    let caller_id = (!caller_id.is_empty()).then_some(caller_id);
    twiml::dial(target, caller_id, DIAL_TIMEOUT_S)
}

/// What a redirect needs from the call.
pub struct RedirectRequest<'a> {
    pub call_sid: &'a str,
    pub caller: &'a str,
    pub called: &'a str,
    pub destination: &'a str,
}

/// Redirects the live call to the named destination in the background; the outcome comes back to
/// the actor as [`Input::TransferFinished`].
pub fn start_redirect(
    deps: &CallDeps,
    destinations: &[TransferDestination],
    request: RedirectRequest<'_>,
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
    let twiml = transfer_twiml(destination, request.caller, request.called);
    let client = TwilioRest::from_env(
        &deps.policy,
        &deps.config.twilio_account_sid,
        deps.config.twilio_auth_token.expose_secret(),
    );
    let call_sid = request.call_sid.to_owned();
    let metrics = deps.metrics.clone();
    let guard = deps.metrics.task_guard();
    let name = destination.name.clone();
    tasks.spawn(
        async move {
            let _guard = guard;
            let result = match client {
                Err(e) => Err(e.to_string()),
                Ok(client) => client
                    .update_call(&call_sid, &UpdateCall::Redirect(Instructions::Twiml(twiml)))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
            };
            match &result {
                Ok(()) => info!(destination = %name, "call redirected to the transfer destination"),
                Err(e) => {
                    metrics.error("transfer_failed");
                    warn!(destination = %name, error = %e, "transfer redirect failed");
                }
            }
            let _ = tx.send(Input::TransferFinished { result }).await;
        }
        .in_current_span(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpenHours;

    fn desk(hours: Vec<OpenHours>) -> TransferDestination {
        TransferDestination {
            name: "front-desk".into(),
            target: "+15551234567".into(),
            description: "Reception".into(),
            caller_id: CallerIdPolicy::Agent,
            hours,
        }
    }

    fn weekdays_9_to_5() -> Vec<OpenHours> {
        vec![OpenHours {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            open: "09:00".into(),
            close: "17:00".into(),
        }]
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn opening_hours_are_read_in_the_tenant_zone() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let d = desk(weekdays_9_to_5());
        // Thursday 2026-12-03 08:59 and 09:00 in New York (UTC-5).
        assert!(!is_open(&d, zone, at("2026-12-03T13:59:00Z")));
        assert!(is_open(&d, zone, at("2026-12-03T14:00:00Z")));
        assert!(
            !is_open(&d, zone, at("2026-12-03T22:00:00Z")),
            "17:00 is closed"
        );
        // Saturday.
        assert!(!is_open(&d, zone, at("2026-12-05T15:00:00Z")));
        assert!(is_open(&desk(vec![]), zone, at("2026-12-05T15:00:00Z")));
    }

    #[test]
    fn the_tool_refuses_unknown_and_closed_destinations() {
        fn saturday() -> DateTime<Utc> {
            DateTime::parse_from_rfc3339("2026-12-05T15:00:00Z")
                .unwrap()
                .to_utc()
        }
        let tool = TransferTool::with_clock(vec![desk(weekdays_9_to_5())], Tz::UTC, saturday);
        let err = tool.check(&json!({"destination": "sales"})).unwrap_err();
        assert!(err.to_string().contains("front-desk"), "{err}");
        let err = tool
            .check(&json!({"destination": "front-desk"}))
            .unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        let open = TransferTool::with_clock(vec![desk(vec![])], Tz::UTC, saturday);
        let warm = open
            .check(
                &json!({"destination": "front-desk", "mode": "warm", "summary": " Ann, billing. "}),
            )
            .unwrap();
        assert_eq!(warm["mode"], "warm");
        assert_eq!(warm["summary"], "Ann, billing.");
        let err = open
            .check(&json!({"destination": "front-desk", "mode": "warm"}))
            .unwrap_err();
        assert!(err.to_string().contains("summary"), "{err}");
        let long = "x".repeat(MAX_SUMMARY_CHARS + 1);
        assert!(
            open.check(&json!({"destination": "front-desk", "mode": "warm", "summary": long}))
                .is_err()
        );
        assert!(
            open.check(&json!({"destination": "front-desk", "mode": "lukewarm"}))
                .is_err()
        );
        assert_eq!(
            open.check(&json!({"destination": "front-desk"})).unwrap()["destination"],
            "front-desk"
        );
        let declaration = open.declaration();
        assert!(declaration.description.contains("front-desk: Reception"));
        assert_eq!(
            declaration.parameters["properties"]["destination"]["enum"][0],
            "front-desk"
        );
    }

    #[test]
    fn twiml_follows_the_caller_id_policy() {
        let mut d = desk(vec![]);
        let xml = transfer_twiml(&d, "+15550001111", "+15005550006");
        assert!(xml.contains(r#"callerId="+15005550006""#), "{xml}");
        assert!(xml.contains("<Number>+15551234567</Number>"));
        d.caller_id = CallerIdPolicy::Caller;
        d.target = "sip:desk@pbx.example.com".into();
        let xml = transfer_twiml(&d, "+15550001111", "+15005550006");
        assert!(xml.contains(r#"callerId="+15550001111""#), "{xml}");
        assert!(xml.contains("<Sip>sip:desk@pbx.example.com</Sip>"));
    }
}

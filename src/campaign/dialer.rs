//! Places one outbound call: validate, check the do-not-call list, pick the caller ID, write the
//! call record (outbound, queued) and its variables, then ask Twilio, then record the SID.
//!
//! Twilio is given URLs back to our webhooks carrying a *call reference*: the call record id and
//! an HMAC of it under the Twilio auth token. The voice webhook routes an outbound call by that
//! reference (never by the dialled number), and the status callback updates exactly that record.
//! This module must not serve HTTP or retry a `CreateCall` (see [`crate::connectors::twilio_rest`]).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tracing::{info, warn};

use crate::connectors::twilio_rest::{
    Amd, CreateCall, Instructions, MachineDetection, StatusEvent, TwilioError, TwilioRest,
};
use crate::store::{
    CallDirection, CallEnd, CallStatus, E164, MachineAction, NewCall, SqlStore, Store, StoreError,
    TenantId,
};

type HmacSha256 = Hmac<Sha256>;

/// Clock difference allowed between us and Twilio when matching a lost call by creation time.
pub const LOST_ANSWER_SKEW_MS: i64 = 120_000;
/// Seconds Twilio lets an outbound call ring.
pub const RING_TIMEOUT_SECS: u32 = 30;
/// Largest number of per-call variables, and their name and value lengths.
pub const MAX_VARIABLES: usize = 32;
const MAX_VARIABLE_NAME: usize = 64;
const MAX_VARIABLE_VALUE: usize = 500;

/// Why a call was not placed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("invalid phone number {number:?}: {reason}")]
    InvalidNumber { number: String, reason: String },
    #[error("{0} is on the tenant's do-not-call list")]
    DoNotCall(E164),
    #[error("tenant {0} has no phone number to call from")]
    NoCallerId(TenantId),
    #[error("invalid variable {name:?}: {reason}")]
    InvalidVariable { name: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("Twilio: {0}")]
    Twilio(#[from] TwilioError),
}

/// Parses and validates a number with the international numbering plan: `+` and a country code
/// are required, and the number must be a valid (assignable) number of that country.
pub fn normalize_number(raw: &str) -> Result<E164, DialError> {
    let invalid = |reason: &str| DialError::InvalidNumber {
        number: raw.chars().take(40).collect(),
        reason: reason.to_owned(),
    };
    let trimmed = raw.trim();
    if !trimmed.starts_with('+') {
        return Err(invalid("must start with + and the country code (E.164)"));
    }
    let parsed = phonenumber::parse(None, trimmed).map_err(|e| invalid(&e.to_string()))?;
    if !phonenumber::is_valid(&parsed) {
        return Err(invalid("not a valid number for its country"));
    }
    let formatted = parsed.format().mode(phonenumber::Mode::E164).to_string();
    E164::parse(&formatted).map_err(|e| invalid(&e.to_string()))
}

pub use crate::store::Voicemail;

/// One call to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    pub tenant: TenantId,
    pub agent_id: String,
    /// As given by the user; normalized to E.164 before anything else.
    pub to: String,
    /// Prompt variables (`{{var.NAME}}` in the agent's template).
    pub variables: BTreeMap<String, String>,
    /// `None`: no answering machine detection.
    pub voicemail: Option<Voicemail>,
}

/// A call Twilio accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedCall {
    pub call_id: String,
    pub call_sid: String,
    pub from: E164,
    pub to: E164,
}

/// Verifies a call reference (`<call id>.<hex HMAC>`) and returns the call id.
pub fn verify_call_reference<'a>(signing_key: &str, reference: &'a str) -> Option<&'a str> {
    let (call_id, tag) = reference.rsplit_once('.')?;
    let tag = decode_hex(tag)?;
    let mut mac = HmacSha256::new_from_slice(signing_key.as_bytes()).ok()?;
    mac.update(b"callbridge-call-ref:");
    mac.update(call_id.as_bytes());
    mac.verify_slice(&tag).ok()?;
    Some(call_id)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Places calls through Twilio. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dialer {
    rest: TwilioRest,
    public_url: String,
    signing_key: std::sync::Arc<SecretString>,
}

impl Dialer {
    /// `public_url` is where Twilio reaches this bridge; `signing_key` is the Twilio auth token.
    pub fn new(rest: TwilioRest, public_url: &str, signing_key: &str) -> Self {
        Self {
            rest,
            public_url: public_url.trim_end_matches('/').to_owned(),
            signing_key: std::sync::Arc::new(SecretString::from(signing_key.to_owned())),
        }
    }

    /// A dialer for the server's configuration, on `TWILIO_API_BASE` (default Twilio's), sending
    /// through `policy`.
    pub fn from_config(
        config: &crate::config::Config,
        policy: &crate::connectors::http::HttpPolicy,
    ) -> Result<Self, DialError> {
        let token = config.twilio_auth_token.expose_secret();
        let rest = TwilioRest::from_env(policy, &config.twilio_account_sid, token)?;
        Ok(Self::new(rest, &config.public_url, token))
    }

    pub fn rest(&self) -> &TwilioRest {
        &self.rest
    }

    /// The signed reference to a call record that Twilio echoes back in our webhook URLs.
    pub fn call_reference(&self, call_id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(self.signing_key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"callbridge-call-ref:");
        mac.update(call_id.as_bytes());
        let tag = mac.finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{call_id}.{hex}")
    }

    fn webhook_url(&self, path: &str, call_id: &str) -> String {
        format!(
            "{}{path}?ref={}",
            self.public_url,
            self.call_reference(call_id)
        )
    }

    /// Validates and records the call, then asks Twilio to place it. Refusals (invalid number,
    /// do-not-call, no caller ID) happen before anything is written. When Twilio refuses, the
    /// record is finished as `failed` with the reason ([`not_placed_reason`]: `twilio_unreachable`, `twilio_auth_failed`, …) and the error returned.
    pub async fn place(
        &self,
        store: &SqlStore,
        request: &OutboundRequest,
    ) -> Result<PlacedCall, DialError> {
        let to = normalize_number(&request.to)?;
        check_variables(&request.variables)?;
        if store.is_do_not_call(&request.tenant, &to).await? {
            return Err(DialError::DoNotCall(to));
        }
        let agent = store.agent(&request.tenant, &request.agent_id).await?;
        let from = caller_id(store, &request.tenant, &agent.id).await?;
        let call = store
            .create_call(&NewCall {
                tenant_id: request.tenant.clone(),
                agent_id: agent.id.clone(),
                direction: CallDirection::Outbound,
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                twilio_call_sid: None,
                status: CallStatus::Queued,
            })
            .await?;
        let machine_action = request.voicemail.as_ref().map(Voicemail::action);
        let voicemail_text = request.voicemail.as_ref().and_then(Voicemail::message);
        store
            .put_outbound_call(
                &request.tenant,
                &call.id,
                &request.variables,
                machine_action,
                voicemail_text,
            )
            .await?;
        self.dial_recorded(store, &request.tenant, &call.id, &from, &to, machine_action)
            .await
    }

    /// The Twilio half of [`Dialer::place`] for a call record that already exists: sends
    /// `CreateCall`, then records the SID, or finishes the record as `failed` when Twilio refuses.
    pub async fn dial_recorded(
        &self,
        store: &SqlStore,
        tenant: &TenantId,
        call_id: &str,
        from: &E164,
        to: &E164,
        machine_action: Option<MachineAction>,
    ) -> Result<PlacedCall, DialError> {
        match self.send_create(call_id, from, to, machine_action).await {
            Ok(call_sid) => {
                store.attach_call_sid(call_id, &call_sid).await?;
                info!(call_id, call_sid = %call_sid, tenant = %tenant, "outbound call placed");
                Ok(PlacedCall {
                    call_id: call_id.to_owned(),
                    call_sid,
                    from: from.clone(),
                    to: to.clone(),
                })
            }
            Err(error) => {
                // A lost answer (network error, unreadable 2xx) may hide a placed call: ask
                // Twilio before calling it failed, so the record keeps following the real call.
                let answer_lost =
                    matches!(error, TwilioError::Transport(_) | TwilioError::Decode(_));
                if answer_lost {
                    let since = chrono::Utc::now().timestamp_millis() - LOST_ANSWER_SKEW_MS;
                    match self.find_unrecorded_call(store, from, to, since).await {
                        Ok(Some(call_sid)) => {
                            store.attach_call_sid(call_id, &call_sid).await?;
                            warn!(call_id, call_sid = %call_sid, error = %error,
                                "Twilio's answer was lost but the call was placed; recorded");
                            return Ok(PlacedCall {
                                call_id: call_id.to_owned(),
                                call_sid,
                                from: from.clone(),
                                to: to.clone(),
                            });
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(call_id, error = %e, "cannot ask Twilio about a lost answer");
                        }
                    }
                }
                warn!(call_id, tenant = %tenant, error = %error, "the outbound call was not placed");
                fail_call_record(store, tenant, call_id, not_placed_reason(&error)).await;
                Err(error.into())
            }
        }
    }

    /// A call Twilio placed from `from` to `to`, created at or after `since_ms`, that no call
    /// record owns yet: the call behind a `CreateCall` whose answer was lost.
    pub async fn find_unrecorded_call(
        &self,
        store: &SqlStore,
        from: &E164,
        to: &E164,
        since_ms: i64,
    ) -> Result<Option<String>, DialError> {
        let calls = self.rest.list_calls(to.as_str(), from.as_str()).await?;
        for call in calls {
            let recent = call
                .created_at()
                .is_none_or(|t| t.timestamp_millis() >= since_ms);
            if recent && !store.call_sid_known(&call.sid).await? {
                return Ok(Some(call.sid));
            }
        }
        Ok(None)
    }

    /// Sends `CreateCall` for an existing call record, with our webhooks signed to it; returns the
    /// SID. Records nothing: campaigns decide themselves what an error means (a lost answer is
    /// not a refusal).
    pub async fn send_create(
        &self,
        call_id: &str,
        from: &E164,
        to: &E164,
        machine_action: Option<MachineAction>,
    ) -> Result<String, TwilioError> {
        let amd = machine_action.map(|action| Amd {
            // Leaving a message needs the end of the greeting; hanging up only needs "machine".
            mode: match action {
                MachineAction::Message => MachineDetection::DetectMessageEnd,
                MachineAction::Hangup => MachineDetection::Enable,
            },
            async_callback: Some(self.webhook_url("/twilio/amd", call_id)),
        });
        let create = CreateCall {
            to: to.as_str().to_owned(),
            from: from.as_str().to_owned(),
            instructions: Instructions::Url(self.webhook_url("/twilio/voice", call_id)),
            status_callback: Some(self.webhook_url("/twilio/status", call_id)),
            status_events: StatusEvent::ALL.to_vec(),
            timeout_secs: Some(RING_TIMEOUT_SECS),
            amd,
        };
        Ok(self.rest.create_call(&create).await?.sid)
    }
}

/// Finishes a call record that never became a call as `failed` with `reason` (logged, not
/// returned: the caller is already handling the reason the call was not placed).
/// The end reason of a call record whose `CreateCall` failed: what happened, not just "rejected".
pub fn not_placed_reason(error: &TwilioError) -> &'static str {
    match error {
        TwilioError::Transport(_) => "twilio_unreachable",
        TwilioError::Auth { .. } => "twilio_auth_failed",
        TwilioError::RateLimited { .. } => "twilio_rate_limited",
        TwilioError::InvalidNumber { .. } => "twilio_invalid_number",
        TwilioError::UnverifiedCallerId { .. } => "twilio_unverified_caller_id",
        TwilioError::Api { status, .. } if *status >= 500 => "twilio_unavailable",
        TwilioError::Decode(_) => "twilio_bad_response",
        TwilioError::NotSent(_) => "twilio_not_sent",
        TwilioError::Egress(_) => "twilio_egress_refused",
        TwilioError::NotFound { .. } | TwilioError::Api { .. } | TwilioError::InvalidRequest(_) => {
            "twilio_rejected"
        }
    }
}

pub async fn fail_call_record(store: &SqlStore, tenant: &TenantId, call_id: &str, reason: &str) {
    let end = CallEnd {
        status: CallStatus::Failed,
        end_reason: reason.into(),
        recording_path: None,
    };
    if let Err(e) = store.finish_call(tenant, call_id, &end).await {
        warn!(call_id, error = %e, "cannot mark the unplaced call failed");
    }
}

fn check_variables(variables: &BTreeMap<String, String>) -> Result<(), DialError> {
    if variables.len() > MAX_VARIABLES {
        return Err(DialError::InvalidVariable {
            name: String::new(),
            reason: format!("at most {MAX_VARIABLES} variables"),
        });
    }
    for (name, value) in variables {
        let bad = |reason: &str| DialError::InvalidVariable {
            name: name.chars().take(MAX_VARIABLE_NAME).collect(),
            reason: reason.to_owned(),
        };
        if name.is_empty()
            || name.len() > MAX_VARIABLE_NAME
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad("names are 1 to 64 letters, digits and _"));
        }
        if value.chars().count() > MAX_VARIABLE_VALUE || value.chars().any(char::is_control) {
            return Err(bad(
                "values are at most 500 characters without control characters",
            ));
        }
    }
    Ok(())
}

/// The caller ID: a number routed to the agent, else any of the tenant's numbers.
async fn caller_id(store: &SqlStore, tenant: &TenantId, agent_id: &str) -> Result<E164, DialError> {
    let numbers = store.list_numbers(tenant).await?;
    numbers
        .iter()
        .find(|n| n.agent_id == agent_id)
        .or_else(|| numbers.first())
        .map(|n| n.e164.clone())
        .ok_or_else(|| DialError::NoCallerId(tenant.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_validated_by_their_country_plan() {
        assert_eq!(
            normalize_number(" +1 415 555 2671 ")
                .map(|n| n.as_str().to_owned())
                .ok(),
            Some("+14155552671".to_owned())
        );
        assert_eq!(
            normalize_number("+44 20 7946 0958")
                .map(|n| n.as_str().to_owned())
                .ok(),
            Some("+442079460958".to_owned())
        );
        for bad in [
            "4155552671",
            "+1555",
            "+999 123",
            "",
            "+1 415 555 26719999",
            "call me",
        ] {
            assert!(
                matches!(normalize_number(bad), Err(DialError::InvalidNumber { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn call_references_verify_only_with_the_key() {
        let policy = crate::connectors::http::HttpPolicy::new(
            crate::connectors::http::PolicyConfig::default(),
        )
        .expect("policy");
        let rest =
            TwilioRest::new(&policy, "https://api.twilio.com", "AC1", "token").expect("client");
        let dialer = Dialer::new(rest, "https://bridge.example/", "token");
        let reference = dialer.call_reference("call_abc");
        assert_eq!(verify_call_reference("token", &reference), Some("call_abc"));
        assert_eq!(verify_call_reference("other", &reference), None);
        let forged = reference.replace("call_abc", "call_abd");
        assert_eq!(verify_call_reference("token", &forged), None);
        assert_eq!(verify_call_reference("token", "call_abc"), None);
        assert_eq!(verify_call_reference("token", "call_abc.zz"), None);
    }

    #[test]
    fn variables_are_bounded() {
        let mut vars = BTreeMap::new();
        vars.insert("name".to_owned(), "Ana".to_owned());
        assert!(check_variables(&vars).is_ok());
        vars.insert("bad name".to_owned(), "x".to_owned());
        assert!(check_variables(&vars).is_err());
    }
}

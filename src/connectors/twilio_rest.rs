//! A typed client for the Twilio REST operations outbound calling needs: `CreateCall`,
//! `UpdateCall` (redirect or hang up), `FetchCall` and `ListCall` (to find a call whose
//! `CreateCall` answer was lost), on `/2010-04-01/Accounts/{AccountSid}/…`.
//!
//! It owns request building (form fields named as in Twilio's OpenAPI spec), Basic auth and the
//! mapping of Twilio's two error shapes to [`TwilioError`]. It must not decide *whether* to call
//! (compliance, pacing, retries by outcome belong to [`crate::campaign`] and the API service) and
//! never logs the auth token.
//!
//! Sending goes through the one outbound policy ([`crate::connectors::http::HttpPolicy`]) with the
//! Twilio profile ([`profile`]): the egress guard, bounded bodies, redacted logs, and retries on
//! 429/5xx/transport errors honouring `Retry-After` — with the circuit breaker off (callers
//! reconcile outcomes themselves) and a whole-request budget of [`REQUEST_DEADLINE`].
//! `CreateCall` is never replayed, because it is not idempotent — a timeout after Twilio accepted
//! the request would dial the person twice; callers reconcile with [`TwilioRest::list_calls`] and
//! [`TwilioRest::fetch_call`] instead. `FetchCall`, `ListCall` and `UpdateCall` (a fixed call and
//! a fixed target state) may be replayed.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::http::{
    AttemptOutcome, ConnectorProfile, HttpPolicy, PolicyError, PolicyOverrides, Replay,
    RequestContext, RetryAction, RetryClassifier, default_classification,
};

/// The longest one Twilio request may take, retries included (the campaign runner sizes its
/// claim lease from it).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// The production API origin; `TWILIO_API_BASE` overrides it (tests point it at 127.0.0.1).
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// Twilio's `Twiml` parameter limit (characters).
pub const MAX_TWIML_LEN: usize = 4000;

/// Why a Twilio REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    #[error("Twilio refused the phone number (error 21211): {message}")]
    InvalidNumber { message: String },
    #[error("the caller ID is not verified for this account (error 21219): {message}")]
    UnverifiedCallerId { message: String },
    #[error("Twilio rejected the account credentials (error 20003): {message}")]
    Auth { message: String },
    #[error("Twilio has no such resource (error 20404): {message}")]
    NotFound { message: String },
    #[error("Twilio rate limited the request (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Twilio answered HTTP {status} (error {code:?}): {message}")]
    Api {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("request to Twilio failed: {0}")]
    Transport(String),
    #[error("unexpected Twilio response: {0}")]
    Decode(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Nothing was sent: the client's own limits (requests in flight) said not now.
    #[error("Twilio request not sent: {0}")]
    NotSent(String),
    /// The API base is not an allowed destination (see [`crate::egress`]); nothing was sent.
    #[error("{0}")]
    Egress(String),
}

impl TwilioError {
    /// Whether the same request may succeed later (rate limit, Twilio-side or network trouble).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport(_) | Self::NotSent(_) => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// What Twilio does when the call connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instructions {
    /// Fetch TwiML from this absolute URL with POST.
    Url(String),
    /// Inline TwiML (at most [`MAX_TWIML_LEN`] characters).
    Twiml(String),
}

/// Call progress events for `StatusCallbackEvent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl StatusEvent {
    pub const ALL: [StatusEvent; 4] = [
        Self::Initiated,
        Self::Ringing,
        Self::Answered,
        Self::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Completed => "completed",
        }
    }
}

/// Answering machine detection mode (`MachineDetection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineDetection {
    /// `AnsweredBy` as soon as known.
    Enable,
    /// Waits for the greeting to end (needed to leave a message after the beep).
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// AMD settings; with `async_callback` the call proceeds while detection runs (`AsyncAmd=true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amd {
    pub mode: MachineDetection,
    pub async_callback: Option<String>,
}

/// A `CreateCall` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateCall {
    pub to: String,
    pub from: String,
    pub instructions: Instructions,
    pub status_callback: Option<String>,
    pub status_events: Vec<StatusEvent>,
    /// Seconds to ring (1–600).
    pub timeout_secs: Option<u32>,
    pub amd: Option<Amd>,
}

impl CreateCall {
    /// The form fields, named as in the spec's `CreateCallRequest`; repeated keys for events.
    pub fn form(&self) -> Result<Vec<(&'static str, String)>, TwilioError> {
        let mut form = vec![("To", self.to.clone()), ("From", self.from.clone())];
        push_instructions(&mut form, &self.instructions)?;
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url.clone()));
            form.push(("StatusCallbackMethod", "POST".into()));
            for event in &self.status_events {
                form.push(("StatusCallbackEvent", event.as_str().into()));
            }
        }
        if let Some(timeout) = self.timeout_secs {
            if !(1..=600).contains(&timeout) {
                return Err(TwilioError::InvalidRequest(format!(
                    "Timeout must be 1 to 600 seconds, got {timeout}"
                )));
            }
            form.push(("Timeout", timeout.to_string()));
        }
        if let Some(amd) = &self.amd {
            form.push(("MachineDetection", amd.mode.as_str().into()));
            if let Some(url) = &amd.async_callback {
                form.push(("AsyncAmd", "true".into()));
                form.push(("AsyncAmdStatusCallback", url.clone()));
                form.push(("AsyncAmdStatusCallbackMethod", "POST".into()));
            }
        }
        Ok(form)
    }
}

fn push_instructions(
    form: &mut Vec<(&'static str, String)>,
    instructions: &Instructions,
) -> Result<(), TwilioError> {
    match instructions {
        Instructions::Url(url) => {
            form.push(("Url", url.clone()));
            form.push(("Method", "POST".into()));
        }
        Instructions::Twiml(xml) => {
            if xml.chars().count() > MAX_TWIML_LEN {
                return Err(TwilioError::InvalidRequest(format!(
                    "Twiml is longer than {MAX_TWIML_LEN} characters"
                )));
            }
            form.push(("Twiml", xml.clone()));
        }
    }
    Ok(())
}

/// How to end a live call (`UpdateStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hangup {
    /// For an in-progress call.
    Completed,
    /// For a queued or ringing call.
    Canceled,
}

/// An `UpdateCall` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateCall {
    /// Replace what the call runs (ends a running media stream).
    Redirect(Instructions),
    Hangup(Hangup),
}

impl UpdateCall {
    /// The form fields of `UpdateCallRequest`.
    pub fn form(&self) -> Result<Vec<(&'static str, String)>, TwilioError> {
        let mut form = Vec::new();
        match self {
            Self::Redirect(instructions) => push_instructions(&mut form, instructions)?,
            Self::Hangup(Hangup::Completed) => form.push(("Status", "completed".into())),
            Self::Hangup(Hangup::Canceled) => form.push(("Status", "canceled".into())),
        }
        Ok(form)
    }
}

/// The fields of Twilio's Call resource that callbridge reads.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct CallResource {
    pub sid: String,
    pub status: String,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub answered_by: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    /// RFC 2822, as Twilio writes it (`Tue, 10 Aug 2010 08:02:17 +0000`).
    #[serde(default)]
    pub date_created: Option<String>,
}

impl CallResource {
    /// When Twilio created the call, if it said so in a readable form.
    pub fn created_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.date_created.as_deref()?;
        chrono::DateTime::parse_from_rfc2822(text)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// One page of `ListCall`.
#[derive(Debug, Deserialize)]
struct CallPage {
    #[serde(default)]
    calls: Vec<CallResource>,
}

/// Both of Twilio's error bodies: legacy `{code,message,more_info,status}` and RFC 9457
/// `{type,title,status,code,detail,…}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

/// Maps an error response to a [`TwilioError`].
pub fn map_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> TwilioError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code);
    let message = parsed
        .as_ref()
        .and_then(|b| {
            b.message.clone().or_else(|| match (&b.title, &b.detail) {
                (Some(t), Some(d)) => Some(format!("{t}: {d}")),
                (Some(t), None) => Some(t.clone()),
                (None, d) => d.clone(),
            })
        })
        .unwrap_or_else(|| format!("HTTP {status} without a Twilio error body"));
    match (status, code) {
        (429, _) | (_, Some(20429)) => TwilioError::RateLimited { retry_after },
        (_, Some(21211)) => TwilioError::InvalidNumber { message },
        (_, Some(21219)) => TwilioError::UnverifiedCallerId { message },
        (_, Some(20003)) | (401, None) => TwilioError::Auth { message },
        (_, Some(20404)) | (404, None) => TwilioError::NotFound { message },
        _ => TwilioError::Api {
            status,
            code,
            message,
        },
    }
}

/// Twilio's retry rule for the policy: 408, 429 and 5xx (but 501) and transport failures are
/// retried when the request may be replayed; every other answer goes back to the client, which
/// maps Twilio's error body itself (the policy would keep only a redacted snippet of it).
#[derive(Debug, Default, Clone, Copy)]
pub struct TwilioClassifier;

impl RetryClassifier for TwilioClassifier {
    fn classify(&self, outcome: &AttemptOutcome<'_>) -> RetryAction {
        match default_classification(outcome) {
            RetryAction::DontRetry(_) => RetryAction::Successful,
            other => other,
        }
    }
}

/// The policy profile of Twilio's REST API.
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new("twilio")
        .with_classifier(Arc::new(TwilioClassifier))
        .with_overrides(PolicyOverrides {
            max_attempts: Some(3),
            attempt_timeout: Some(Duration::from_secs(10)),
            // Callers reconcile lost answers; failing fast would only hide Twilio's own answer.
            breaker: false,
            // The campaign runner dials many contacts at once.
            max_concurrency: Some(64),
        })
}

/// Maps a failure of the policy to a [`TwilioError`].
fn from_policy(error: PolicyError) -> TwilioError {
    match error {
        PolicyError::Status {
            code,
            body_snippet,
            retry_after,
            ..
        } => map_error(code, retry_after, body_snippet.as_bytes()),
        PolicyError::Timeout { .. } | PolicyError::Transport { .. } => {
            TwilioError::Transport(error.to_string())
        }
        PolicyError::CircuitOpen { .. } | PolicyError::Overloaded { .. } => {
            TwilioError::NotSent(error.to_string())
        }
        PolicyError::Egress { source, .. } => TwilioError::Egress(source.to_string()),
        PolicyError::Decode(detail) => TwilioError::Decode(detail),
        PolicyError::BodyTooLarge { .. } => TwilioError::Decode(error.to_string()),
        other => TwilioError::InvalidRequest(other.to_string()),
    }
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct TwilioRest {
    policy: HttpPolicy,
    profile: ConnectorProfile,
    base: String,
    account_sid: String,
    auth_token: Arc<SecretString>,
}

impl std::fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl TwilioRest {
    /// A client for `base` (an origin such as `https://api.twilio.com`, no path), sending through
    /// `policy` (whose egress guard must allow `base`).
    pub fn new(
        policy: &HttpPolicy,
        base: &str,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<Self, TwilioError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(TwilioError::InvalidRequest(format!(
                "Twilio API base {base:?} is not an http(s) URL"
            )));
        }
        // The auth token travels in every request: TLS, unless the operator allow-listed the
        // host (a local mock) in CALLBRIDGE_EGRESS_ALLOW.
        if base.starts_with("http://") && policy.config().egress.check_url_str(&base).is_err() {
            return Err(TwilioError::InvalidRequest(format!(
                "Twilio API base {base:?} must be https (http only for a host in CALLBRIDGE_EGRESS_ALLOW)"
            )));
        }
        if account_sid.is_empty() || !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TwilioError::InvalidRequest(
                "account SID must be letters and digits".into(),
            ));
        }
        Ok(Self {
            policy: policy.clone(),
            profile: profile(),
            base,
            account_sid: account_sid.to_owned(),
            auth_token: Arc::new(SecretString::from(auth_token.to_owned())),
        })
    }

    /// A client on `TWILIO_API_BASE` (default [`DEFAULT_API_BASE`]).
    pub fn from_env(
        policy: &HttpPolicy,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<Self, TwilioError> {
        let base = std::env::var("TWILIO_API_BASE").unwrap_or_else(|_| DEFAULT_API_BASE.into());
        Self::new(policy, &base, account_sid, auth_token)
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            self.base, self.account_sid
        )
    }

    fn call_url(&self, call_sid: &str) -> Result<String, TwilioError> {
        if call_sid.is_empty() || !call_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TwilioError::InvalidRequest(format!(
                "call SID {call_sid:?} is not letters and digits"
            )));
        }
        Ok(format!(
            "{}/2010-04-01/Accounts/{}/Calls/{call_sid}.json",
            self.base, self.account_sid
        ))
    }

    /// Places a call (`CreateCall`, 201). Never replayed: see the module docs.
    pub async fn create_call(&self, request: &CreateCall) -> Result<CallResource, TwilioError> {
        let form = request.form()?;
        let builder = self.policy.client().post(self.calls_url()).form(&form);
        self.send(builder, Replay::Never).await
    }

    /// Redirects or hangs up a live call (`UpdateCall`).
    pub async fn update_call(
        &self,
        call_sid: &str,
        update: &UpdateCall,
    ) -> Result<CallResource, TwilioError> {
        let url = self.call_url(call_sid)?;
        let form = update.form()?;
        let builder = self.policy.client().post(&url).form(&form);
        self.send(builder, Replay::Idempotent).await
    }

    /// Reads a call's current state (`FetchCall`).
    pub async fn fetch_call(&self, call_sid: &str) -> Result<CallResource, TwilioError> {
        let url = self.call_url(call_sid)?;
        self.send(self.policy.client().get(&url), Replay::ByMethod)
            .await
    }

    /// The most recent calls (first page, newest first) from `from` to `to` (`ListCall`).
    pub async fn list_calls(&self, to: &str, from: &str) -> Result<Vec<CallResource>, TwilioError> {
        let url = self.calls_url();
        let query = [("To", to), ("From", from), ("PageSize", "50")];
        let page: CallPage = self
            .send(
                self.policy.client().get(&url).query(&query),
                Replay::ByMethod,
            )
            .await?;
        Ok(page.calls)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        replay: Replay,
    ) -> Result<T, TwilioError> {
        let request = builder
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .build()
            .map_err(|e| TwilioError::InvalidRequest(e.without_url().to_string()))?;
        let ctx = RequestContext::new(
            self.account_sid.as_str(),
            "twilio-rest",
            Instant::now() + REQUEST_DEADLINE,
        );
        let response = self
            .policy
            .send(&ctx, &self.profile, request, replay)
            .await
            .map_err(from_policy)?;
        if !response.status.is_success() {
            return Err(map_error(
                response.status.as_u16(),
                super::http::retry_after(&response.headers),
                &response.body,
            ));
        }
        serde_json::from_slice(&response.body).map_err(|e| TwilioError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_form_repeats_events_and_sets_amd() {
        let request = CreateCall {
            to: "+14155551234".into(),
            from: "+15005550006".into(),
            instructions: Instructions::Url("https://bridge.example/twilio/voice".into()),
            status_callback: Some("https://bridge.example/twilio/status".into()),
            status_events: StatusEvent::ALL.to_vec(),
            timeout_secs: Some(30),
            amd: Some(Amd {
                mode: MachineDetection::DetectMessageEnd,
                async_callback: Some("https://bridge.example/twilio/amd".into()),
            }),
        };
        let form = request.form().expect("valid request");
        let events: Vec<_> = form
            .iter()
            .filter(|(k, _)| *k == "StatusCallbackEvent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
        assert!(form.contains(&("AsyncAmd", "true".into())));
        assert!(form.contains(&("MachineDetection", "DetectMessageEnd".into())));
        assert!(!form.iter().any(|(k, _)| *k == "Twiml"));
    }

    #[test]
    fn bad_timeout_and_long_twiml_are_refused() {
        let mut request = CreateCall {
            to: "+14155551234".into(),
            from: "+15005550006".into(),
            instructions: Instructions::Twiml("x".repeat(MAX_TWIML_LEN + 1)),
            status_callback: None,
            status_events: vec![],
            timeout_secs: None,
            amd: None,
        };
        assert!(matches!(
            request.form(),
            Err(TwilioError::InvalidRequest(_))
        ));
        request.instructions = Instructions::Twiml("<Response/>".into());
        request.timeout_secs = Some(601);
        assert!(matches!(
            request.form(),
            Err(TwilioError::InvalidRequest(_))
        ));
    }

    #[test]
    fn both_error_shapes_map_to_variants() {
        let legacy = br#"{"code": 21211, "message": "Invalid 'To' Phone Number: +1555", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        match map_error(400, None, legacy) {
            TwilioError::InvalidNumber { message } => assert!(message.contains("+1555")),
            other => panic!("unexpected {other:?}"),
        }
        let rfc = br#"{"type":"https://www.twilio.com/docs/errors/20003","title":"Authenticate","status":401,"code":20003,"detail":"bad credentials","instance":"/x"}"#;
        match map_error(401, None, rfc) {
            TwilioError::Auth { message } => assert_eq!(message, "Authenticate: bad credentials"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            map_error(
                400,
                None,
                br#"{"code":21219,"message":"unverified","status":400}"#
            ),
            TwilioError::UnverifiedCallerId { .. }
        ));
        assert!(matches!(
            map_error(
                404,
                None,
                br#"{"code":20404,"message":"nope","status":404}"#
            ),
            TwilioError::NotFound { .. }
        ));
        assert!(matches!(
            map_error(429, Some(Duration::from_secs(3)), b"not json"),
            TwilioError::RateLimited {
                retry_after: Some(d)
            } if d == Duration::from_secs(3)
        ));
        match map_error(500, None, b"<html>") {
            e @ TwilioError::Api { status: 500, .. } => assert!(e.is_transient()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

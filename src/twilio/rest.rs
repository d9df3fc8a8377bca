//! A typed client for the Twilio REST operations outbound calling needs: `CreateCall`,
//! `UpdateCall` (redirect or hang up), `FetchCall` and `ListCall` (to find a call whose
//! `CreateCall` answer was lost), on `/2010-04-01/Accounts/{AccountSid}/…`.
//!
//! It owns request building (form fields named as in Twilio's OpenAPI spec), Basic auth and the
//! mapping of Twilio's two error shapes to [`TwilioError`]. It must not decide *whether* to call
//! (compliance, pacing, retries by outcome belong to [`crate::campaign`] and the API service) and
//! never logs the auth token.
//!
//! Retries: `CreateCall` is never retried here, because it is not idempotent — a timeout after
//! Twilio accepted the request would dial the person twice; callers reconcile with
//! [`TwilioRest::list_calls`] and [`TwilioRest::fetch_call`] instead. `FetchCall`, `ListCall` and
//! `UpdateCall` (which are idempotent) are
//! retried a few times on 429/5xx/transport errors, honouring `Retry-After`. Plain reqwest with
//! this small loop rather than [`crate::tools::policy`], whose circuit breaker and per-vendor
//! budgets are tuned for mid-call tools.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
}

impl TwilioError {
    /// Whether the same request may succeed later (rate limit, Twilio-side or network trouble).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport(_) => true,
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

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: std::sync::Arc<SecretString>,
    /// Attempts for idempotent requests (fetch, update).
    attempts: u32,
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
    /// A client for `base` (an origin such as `https://api.twilio.com`, no path).
    pub fn new(base: &str, account_sid: &str, auth_token: &str) -> Result<Self, TwilioError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing this race to another thread installing a provider is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(TwilioError::InvalidRequest(format!(
                "Twilio API base {base:?} is not an http(s) URL"
            )));
        }
        if account_sid.is_empty() || !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TwilioError::InvalidRequest(
                "account SID must be letters and digits".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("callbridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TwilioError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            http,
            base,
            account_sid: account_sid.to_owned(),
            auth_token: std::sync::Arc::new(SecretString::from(auth_token.to_owned())),
            attempts: 3,
        })
    }

    /// A client on `TWILIO_API_BASE` (default [`DEFAULT_API_BASE`]).
    pub fn from_env(account_sid: &str, auth_token: &str) -> Result<Self, TwilioError> {
        let base = std::env::var("TWILIO_API_BASE").unwrap_or_else(|_| DEFAULT_API_BASE.into());
        Self::new(&base, account_sid, auth_token)
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

    /// Places a call (`CreateCall`, 201). Not retried: see the module docs.
    pub async fn create_call(&self, request: &CreateCall) -> Result<CallResource, TwilioError> {
        let form = request.form()?;
        let builder = self.http.post(self.calls_url()).form(&form);
        self.send(builder).await
    }

    /// Redirects or hangs up a live call (`UpdateCall`).
    pub async fn update_call(
        &self,
        call_sid: &str,
        update: &UpdateCall,
    ) -> Result<CallResource, TwilioError> {
        let url = self.call_url(call_sid)?;
        let form = update.form()?;
        self.with_retries(|| self.http.post(&url).form(&form)).await
    }

    /// Reads a call's current state (`FetchCall`).
    pub async fn fetch_call(&self, call_sid: &str) -> Result<CallResource, TwilioError> {
        let url = self.call_url(call_sid)?;
        self.with_retries(|| self.http.get(&url)).await
    }

    /// The most recent calls (first page, newest first) from `from` to `to` (`ListCall`).
    pub async fn list_calls(&self, to: &str, from: &str) -> Result<Vec<CallResource>, TwilioError> {
        let url = self.calls_url();
        let query = [("To", to), ("From", from), ("PageSize", "50")];
        let page: CallPage = self
            .with_retries(|| self.http.get(&url).query(&query))
            .await?;
        Ok(page.calls)
    }

    async fn with_retries<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, TwilioError> {
        let mut attempt = 1;
        loop {
            match self.send(build()).await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    let wait = match &e {
                        TwilioError::RateLimited {
                            retry_after: Some(d),
                        } => (*d).min(Duration::from_secs(10)),
                        _ => Duration::from_millis(200 * u64::from(attempt)),
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, TwilioError> {
        let response = builder
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|e| TwilioError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| TwilioError::Transport(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            return Err(map_error(status, wait, &body));
        }
        serde_json::from_slice(&body).map_err(|e| TwilioError::Decode(e.to_string()))
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

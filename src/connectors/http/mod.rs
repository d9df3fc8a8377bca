//! The one outbound HTTP policy every vendor request goes through (connectors and the Twilio REST
//! client alike).
//!
//! Owns: per-attempt timeouts and the overall deadline, retries with exponential backoff and full
//! jitter (honouring `Retry-After`), a circuit breaker and a concurrency cap per (tenant,
//! connector), the idempotency-key header, the egress guard (every URL is checked before it is
//! sent, and the client's resolver checks every address at connect time), bounded response bodies
//! and redacted request/response logging. It must not know any vendor: a connector supplies a
//! [`ConnectorProfile`] (name, idempotency header, retry classifier, overrides) and prepared
//! `reqwest::Request`s; the policy never builds URLs, bodies or auth itself.
//!
//! Split: [`send`] (the loop), [`classify`] (retry classification), [`breaker`], [`redact`].
//! Order of the layers for one logical call: deadline → egress check → (breaker → concurrency
//! permit → attempt with timeout → classify) repeated with backoff while the classifier says
//! retry, the request is safe to replay and the deadline allows.

pub mod breaker;
pub mod classify;
pub mod redact;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName};
use tokio::time::Instant;

use crate::egress::{EgressError, EgressPolicy};

pub use breaker::{Breaker, BreakerState};
pub use classify::{
    AttemptOutcome, DefaultClassifier, RetryAction, RetryClassifier, default_classification,
    retry_after,
};
pub use send::{Clock, HttpPolicy, TokioClock, full_jitter};

/// Characters of a vendor's error body kept in [`PolicyError::Status`] (already redacted).
const BODY_SNIPPET_CHARS: usize = 300;
/// Characters of a body written to the debug log.
const LOG_BODY_CHARS: usize = 2_000;

/// Tunables of the policy. Defaults suit a mid-call tool: a few seconds in total, not minutes.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Upper bound for one attempt (connect, send, and read the whole body).
    pub attempt_timeout: Duration,
    /// Attempts per logical call, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per retry (full jitter picks in `[0, ceiling]`).
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Consecutive failed attempts that open the breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker fails fast before letting one probe through.
    pub breaker_cool_down: Duration,
    /// In-flight requests per (tenant, connector).
    pub max_concurrency: usize,
    /// Largest response body read, in bytes; a larger one is an error, never buffered.
    pub max_body_bytes: usize,
    /// User-Agent sent to vendors.
    pub user_agent: String,
    /// Where requests may go: every URL is checked before it is sent and every resolved address
    /// at connect time. The default is strict (public `https` hosts only); tests that reach a
    /// loopback mock say so with [`EgressPolicy::allow_loopback`].
    pub egress: EgressPolicy,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(4),
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            breaker_failure_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
            max_concurrency: 8,
            max_body_bytes: 2 * 1024 * 1024,
            user_agent: concat!("callbridge/", env!("CARGO_PKG_VERSION")).to_owned(),
            egress: EgressPolicy::strict(),
        }
    }
}

/// Who is calling and until when. Built by the tool dispatcher for each tool call.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub tenant: Arc<str>,
    /// The model's tool-call id, for log correlation.
    pub tool_call_id: String,
    /// Stable key for this side effect (from the ledger); sent as the vendor's idempotency
    /// header when the connector names one.
    pub idempotency_key: Option<String>,
    /// No attempt starts, and no backoff sleeps, past this instant.
    pub deadline: Instant,
}

impl RequestContext {
    pub fn new(
        tenant: impl Into<Arc<str>>,
        tool_call_id: impl Into<String>,
        deadline: Instant,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            tool_call_id: tool_call_id.into(),
            idempotency_key: None,
            deadline,
        }
    }

    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The vendor-specific part of the policy, one per connector type.
#[derive(Debug, Clone)]
pub struct ConnectorProfile {
    /// Short stable name (`google_calendar`, `calcom`, …); half of the breaker/permit key.
    pub name: &'static str,
    /// Header in which the vendor accepts an idempotency key (e.g. `Idempotency-Key`), if any.
    pub idempotency_header: Option<HeaderName>,
    pub classifier: Arc<dyn RetryClassifier>,
    /// Where this vendor departs from the policy's defaults.
    pub overrides: PolicyOverrides,
}

/// Per-vendor departures from [`PolicyConfig`]: `None` keeps the policy's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyOverrides {
    /// Attempts per logical call (the first included).
    pub max_attempts: Option<u32>,
    /// Upper bound for one attempt.
    pub attempt_timeout: Option<Duration>,
    /// Whether the circuit breaker guards this vendor (off for a client whose caller already
    /// reconciles outcomes, such as Twilio's REST API).
    pub breaker: bool,
    /// Requests in flight per (tenant, vendor).
    pub max_concurrency: Option<usize>,
}

impl Default for PolicyOverrides {
    fn default() -> Self {
        Self {
            max_attempts: None,
            attempt_timeout: None,
            breaker: true,
            max_concurrency: None,
        }
    }
}

impl ConnectorProfile {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            idempotency_header: None,
            classifier: Arc::new(DefaultClassifier),
            overrides: PolicyOverrides::default(),
        }
    }

    pub fn with_overrides(mut self, overrides: PolicyOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    pub fn with_idempotency_header(mut self, header: HeaderName) -> Self {
        self.idempotency_header = Some(header);
        self
    }

    pub fn with_classifier(mut self, classifier: Arc<dyn RetryClassifier>) -> Self {
        self.classifier = classifier;
        self
    }
}

/// Whether a request may be sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// GET/HEAD/OPTIONS are safe; any other method only when an idempotency key goes out in a
    /// header the vendor honours.
    ByMethod,
    /// The connector made the write idempotent another way the vendor enforces (a client-chosen
    /// resource id, a PUT/DELETE on a fixed id).
    Idempotent,
    /// Never replay (a write with no dedup on the vendor side).
    Never,
}

/// A vendor response that the classifier accepted, body fully read and bounded.
#[derive(Debug, Clone)]
pub struct PolicyResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
}

impl PolicyResponse {
    /// The body as JSON of type `T`; a shape mismatch is a [`PolicyError::Decode`].
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, PolicyError> {
        serde_json::from_slice(&self.body).map_err(|err| PolicyError::Decode(err.to_string()))
    }
}

/// Failures of an outbound vendor call. None of the messages carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{connector}: no answer within the time limit after {attempts} attempt(s)")]
    Timeout {
        connector: &'static str,
        attempts: u32,
    },
    #[error("{connector}: circuit open after repeated failures; retry in {retry_in:?}")]
    CircuitOpen {
        connector: &'static str,
        retry_in: Duration,
    },
    #[error("{connector}: too many requests in flight; no slot before the deadline")]
    Overloaded { connector: &'static str },
    #[error("{connector}: vendor answered {code}: {body_snippet}")]
    Status {
        connector: &'static str,
        code: u16,
        body_snippet: String,
        retry_after: Option<Duration>,
    },
    #[error("{connector}: transport failure: {reason}")]
    Transport {
        connector: &'static str,
        reason: String,
    },
    #[error("{connector}: response body larger than {limit} bytes")]
    BodyTooLarge {
        connector: &'static str,
        limit: usize,
    },
    #[error("vendor response did not have the expected shape: {0}")]
    Decode(String),
    #[error("request could not be prepared: {0}")]
    InvalidRequest(String),
    #[error("HTTP client could not be built: {0}")]
    ClientBuild(String),
    /// The destination is not allowed (checked on the URL, or at connect time); nothing was sent.
    #[error("{connector}: {source}")]
    Egress {
        connector: &'static str,
        source: EgressError,
    },
}

impl PolicyError {
    /// A short sentence the model may say to the caller. No vendor detail, no secret.
    pub fn speakable(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "The system we use didn't answer in time.",
            Self::CircuitOpen { .. } | Self::Transport { .. } => {
                "The system we use is unavailable right now."
            }
            Self::Overloaded { .. } => "The system we use is busy right now.",
            Self::Status { code: 429, .. } => "The system we use is busy right now.",
            Self::Status {
                code: 401 | 403, ..
            } => "We aren't able to access that system right now.",
            Self::Status { code: 404, .. } => "I couldn't find that record.",
            Self::Status { code: 409, .. } => {
                "That conflicts with something already scheduled or saved."
            }
            Self::Status { code, .. } if *code >= 500 => "The system we use had an error.",
            Self::Status { .. } => "The system we use didn't accept that request.",
            Self::BodyTooLarge { .. } | Self::Decode(_) => {
                "The system we use sent an answer I couldn't read."
            }
            Self::InvalidRequest(_) | Self::ClientBuild(_) | Self::Egress { .. } => {
                "I couldn't send that request because of a setup problem."
            }
        }
    }

    /// True for failures that may go away by themselves (worth a later retry).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::CircuitOpen { .. }
            | Self::Overloaded { .. }
            | Self::Transport { .. } => true,
            Self::Status { code, .. } => {
                *code == 408 || *code == 429 || (*code >= 500 && *code != 501)
            }
            _ => false,
        }
    }

    /// The HTTP status the vendor answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakable_messages_hold_no_detail() {
        let err = PolicyError::Status {
            connector: "x",
            code: 500,
            body_snippet: "secret stack trace".into(),
            retry_after: None,
        };
        assert!(!err.speakable().contains("secret"));
        assert!(err.is_transient());
        assert!(
            !PolicyError::Status {
                connector: "x",
                code: 501,
                body_snippet: String::new(),
                retry_after: None
            }
            .is_transient()
        );
    }
}

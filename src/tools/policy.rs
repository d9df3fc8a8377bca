//! The one outbound HTTP policy every connector goes through.
//!
//! Owns: per-attempt timeouts and the overall deadline, retries with exponential backoff and full
//! jitter (honouring `Retry-After`), a circuit breaker and a concurrency cap per (tenant,
//! connector), the idempotency-key header, bounded response bodies and redacted request/response
//! logging. It must not know any vendor: a connector supplies a [`ConnectorProfile`] (name,
//! idempotency header, retry classifier) and prepared `reqwest::Request`s; the policy never builds
//! URLs, bodies or auth itself.
//!
//! Order of the layers for one logical call: deadline → (breaker → concurrency permit → attempt
//! with timeout → classify) repeated with backoff while the classifier says retry, the request is
//! safe to replay and the deadline allows.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::redact;

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

/// What to do with the outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// The attempt succeeded; hand the response to the connector.
    Successful,
    /// A transient failure: try again if the request is safe to replay and time allows.
    Retry(String),
    /// A definite failure: stop and report it.
    DontRetry(String),
}

/// What one attempt produced, as seen by a classifier.
#[derive(Debug)]
pub enum AttemptOutcome<'a> {
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    TimedOut,
    /// Connect refused, connection reset, TLS or protocol failure before a full response.
    Transport(&'a str),
}

/// Per-connector retry classification. The default retries 408, 429 and 5xx except 501, and
/// every timeout or transport failure.
pub trait RetryClassifier: Send + Sync + fmt::Debug {
    fn classify(&self, outcome: &AttemptOutcome<'_>) -> RetryAction {
        default_classification(outcome)
    }
}

/// The classification used when a connector has no vendor-specific rule.
pub fn default_classification(outcome: &AttemptOutcome<'_>) -> RetryAction {
    match outcome {
        AttemptOutcome::Response { status, .. } => {
            if status.is_success() {
                RetryAction::Successful
            } else if *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS
                || (status.is_server_error() && *status != StatusCode::NOT_IMPLEMENTED)
            {
                RetryAction::Retry(format!("status {}", status.as_u16()))
            } else {
                RetryAction::DontRetry(format!("status {}", status.as_u16()))
            }
        }
        AttemptOutcome::TimedOut => RetryAction::Retry("attempt timed out".to_owned()),
        AttemptOutcome::Transport(reason) => RetryAction::Retry(format!("transport: {reason}")),
    }
}

/// The classifier for connectors without vendor-specific rules.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultClassifier;
impl RetryClassifier for DefaultClassifier {}

/// The vendor-specific part of the policy, one per connector type.
#[derive(Debug, Clone)]
pub struct ConnectorProfile {
    /// Short stable name (`google_calendar`, `calcom`, …); half of the breaker/permit key.
    pub name: &'static str,
    /// Header in which the vendor accepts an idempotency key (e.g. `Idempotency-Key`), if any.
    pub idempotency_header: Option<HeaderName>,
    pub classifier: Arc<dyn RetryClassifier>,
}

impl ConnectorProfile {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            idempotency_header: None,
            classifier: Arc::new(DefaultClassifier),
        }
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
            Self::InvalidRequest(_) | Self::ClientBuild(_) => {
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

/// Source of time and sleeping, so tests can run backoff and breaker logic without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration) -> futures_util::future::BoxFuture<'static, ()>;
}

/// Real time through tokio (so `tokio::time::pause` also works).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Shared, cheap-to-clone policy. One per process; connectors hold clones.
#[derive(Clone)]
pub struct HttpPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    client: reqwest::Client,
    config: PolicyConfig,
    clock: Arc<dyn Clock>,
    endpoints: Mutex<HashMap<EndpointKey, Arc<Endpoint>>>,
}

/// (tenant, connector name): the unit of breaker and concurrency state.
type EndpointKey = (Arc<str>, &'static str);

impl fmt::Debug for HttpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPolicy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// State kept per (tenant, connector).
struct Endpoint {
    breaker: Mutex<Breaker>,
    permits: Semaphore,
}

impl HttpPolicy {
    /// A policy on real time.
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        Self::with_clock(config, Arc::new(TokioClock))
    }

    /// A policy on the given clock (tests use a manual one).
    pub fn with_clock(config: PolicyConfig, clock: Arc<dyn Clock>) -> Result<Self, PolicyError> {
        // reqwest is built without a bundled crypto provider so that ring (already used by the
        // rest of the crate) serves TLS; install it unless the application already chose one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing this race to another thread installing a provider is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            // Our own per-attempt timeout covers the whole attempt; this only bounds connects.
            .connect_timeout(config.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| PolicyError::ClientBuild(err.without_url().to_string()))?;
        Ok(Self {
            inner: Arc::new(PolicyInner {
                client,
                config,
                clock,
                endpoints: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The client connectors use to build requests (`client().post(url)…build()`).
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.inner.config
    }

    /// Current breaker state for (tenant, connector); for health pages and tests.
    pub fn breaker_state(&self, tenant: &str, connector: &'static str) -> BreakerState {
        let endpoint = self.endpoint(&Arc::from(tenant), connector);
        let breaker = lock(&endpoint.breaker);
        breaker.state()
    }

    fn endpoint(&self, tenant: &Arc<str>, connector: &'static str) -> Arc<Endpoint> {
        let mut endpoints = lock(&self.inner.endpoints);
        endpoints
            .entry((tenant.clone(), connector))
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    breaker: Mutex::new(Breaker::new(
                        self.inner.config.breaker_failure_threshold,
                        self.inner.config.breaker_cool_down,
                    )),
                    permits: Semaphore::new(self.inner.config.max_concurrency.max(1)),
                })
            })
            .clone()
    }

    /// Send `request` under the policy. Returns the response the classifier accepted, or the
    /// error that ended the call.
    pub async fn send(
        &self,
        ctx: &RequestContext,
        profile: &ConnectorProfile,
        mut request: reqwest::Request,
        replay: Replay,
    ) -> Result<PolicyResponse, PolicyError> {
        let connector = profile.name;
        let idempotency_sent = match (&profile.idempotency_header, &ctx.idempotency_key) {
            (Some(header), Some(key)) => {
                let value = HeaderValue::from_str(key).map_err(|_| {
                    PolicyError::InvalidRequest(
                        "idempotency key is not a valid header value".into(),
                    )
                })?;
                request.headers_mut().insert(header.clone(), value);
                true
            }
            _ => false,
        };
        let replayable = match replay {
            Replay::Never => false,
            Replay::Idempotent => true,
            Replay::ByMethod => {
                matches!(
                    *request.method(),
                    Method::GET | Method::HEAD | Method::OPTIONS
                ) || idempotency_sent
            }
        };
        let endpoint = self.endpoint(&ctx.tenant, connector);
        let config = &self.inner.config;
        let clock = &self.inner.clock;
        log_request(ctx, connector, &request);

        let mut attempt: u32 = 0;
        let mut spare = Some(request);
        loop {
            attempt += 1;
            let Some(current) = spare.take() else {
                return Err(PolicyError::InvalidRequest(
                    "request body cannot be replayed".into(),
                ));
            };
            // Keep a copy for the next attempt before this one consumes the request.
            spare = if replayable && attempt < config.max_attempts {
                current.try_clone()
            } else {
                None
            };

            let now = clock.now();
            if now >= ctx.deadline {
                return Err(PolicyError::Timeout {
                    connector,
                    attempts: attempt - 1,
                });
            }
            let ticket = {
                let mut breaker = lock(&endpoint.breaker);
                breaker
                    .admit(now)
                    .map_err(|retry_in| PolicyError::CircuitOpen {
                        connector,
                        retry_in,
                    })?
            };
            let mut ticket = BreakerTicket {
                endpoint: &endpoint,
                probe: ticket,
                reported: false,
            };

            let permit =
                match tokio::time::timeout_at(ctx.deadline, endpoint.permits.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; treat it like a full one anyway.
                    Ok(Err(_)) | Err(_) => {
                        // Not the vendor's fault: leave the breaker as it was.
                        ticket.release_unjudged();
                        return Err(PolicyError::Overloaded { connector });
                    }
                };
            let attempt_deadline = (clock.now() + config.attempt_timeout).min(ctx.deadline);
            let started = clock.now();
            let raw = tokio::time::timeout_at(
                attempt_deadline,
                self.attempt(current, config.max_body_bytes),
            )
            .await;
            drop(permit);
            let elapsed = clock.now().saturating_duration_since(started);

            let (action, result) = match &raw {
                Ok(Ok(done)) => {
                    let outcome = AttemptOutcome::Response {
                        status: done.status,
                        headers: &done.headers,
                        body: &done.body,
                    };
                    (profile.classifier.classify(&outcome), None)
                }
                Ok(Err(AttemptError::Transport(reason))) => {
                    let outcome = AttemptOutcome::Transport(reason);
                    (
                        profile.classifier.classify(&outcome),
                        Some(PolicyError::Transport {
                            connector,
                            reason: reason.clone(),
                        }),
                    )
                }
                Ok(Err(AttemptError::BodyTooLarge)) => (
                    RetryAction::DontRetry("body too large".into()),
                    Some(PolicyError::BodyTooLarge {
                        connector,
                        limit: config.max_body_bytes,
                    }),
                ),
                Err(_) => (
                    profile.classifier.classify(&AttemptOutcome::TimedOut),
                    Some(PolicyError::Timeout {
                        connector,
                        attempts: attempt,
                    }),
                ),
            };

            match &raw {
                Ok(Ok(done)) => log_response(
                    ctx,
                    connector,
                    attempt,
                    elapsed,
                    done.status,
                    &done.body,
                    &action,
                ),
                _ => tracing::warn!(
                    tenant = %ctx.tenant, connector, tool_call_id = %ctx.tool_call_id, attempt,
                    elapsed_ms = elapsed.as_millis() as u64,
                    error = %result.as_ref().map(ToString::to_string).unwrap_or_default(),
                    action = ?action, "vendor attempt failed"
                ),
            }

            // The breaker judges vendor health: retryable failures count against it; a 4xx the
            // vendor answered deliberately proves it is up.
            match &action {
                RetryAction::Retry(_) => ticket.report(false, clock.now()),
                RetryAction::Successful | RetryAction::DontRetry(_) => {
                    ticket.report(true, clock.now())
                }
            }

            let (server_delay, error) = match raw {
                Ok(Ok(done)) => {
                    let status = done.status;
                    let retry_after = retry_after(&done.headers);
                    if action == RetryAction::Successful {
                        return Ok(PolicyResponse {
                            status,
                            headers: done.headers,
                            body: done.body,
                            attempts: attempt,
                        });
                    }
                    let body_snippet =
                        redact::snippet(&String::from_utf8_lossy(&done.body), BODY_SNIPPET_CHARS);
                    (
                        retry_after,
                        PolicyError::Status {
                            connector,
                            code: status.as_u16(),
                            body_snippet,
                            retry_after,
                        },
                    )
                }
                _ => (
                    None,
                    result.unwrap_or(PolicyError::Timeout {
                        connector,
                        attempts: attempt,
                    }),
                ),
            };

            let RetryAction::Retry(reason) = action else {
                return Err(error);
            };
            if spare.is_none() {
                // Not replayable, out of attempts, or the body could not be cloned.
                return Err(error);
            }
            let delay = server_delay
                .unwrap_or_else(|| full_jitter(config.backoff_base, config.backoff_max, attempt));
            // `Retry-After` is vendor input: a huge value must not overflow the clock.
            let past_deadline = clock
                .now()
                .checked_add(delay)
                .is_none_or(|wake| wake >= ctx.deadline);
            if past_deadline {
                tracing::debug!(
                    connector,
                    attempt,
                    ?delay,
                    "no retry: backoff would pass the deadline"
                );
                return Err(error);
            }
            tracing::debug!(connector, attempt, ?delay, %reason, "retrying vendor call");
            clock.sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        request: reqwest::Request,
        max_body: usize,
    ) -> Result<RawResponse, AttemptError> {
        let mut response = self
            .inner
            .client
            .execute(request)
            .await
            .map_err(|err| AttemptError::Transport(describe_transport(&err)))?;
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > max_body as u64)
        {
            return Err(AttemptError::BodyTooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| AttemptError::Transport(describe_transport(&err)))?
        {
            if body.len() + chunk.len() > max_body {
                return Err(AttemptError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

enum AttemptError {
    Transport(String),
    BodyTooLarge,
}

fn describe_transport(err: &reqwest::Error) -> String {
    // Drop the URL: a query string may carry a key or personal data.
    let kind = if err.is_connect() {
        "connect failed"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "response body interrupted"
    } else if err.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", redact::snippet(&detail, 200))
    }
}

/// Full jitter: a uniform delay in `[0, min(max, base·2^(attempt-1))]`.
pub fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if ceiling_nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=ceiling_nanos))
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date; `None` if absent or
/// unreadable. A date in the past means "now".
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn log_request(ctx: &RequestContext, connector: &'static str, request: &reqwest::Request) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .map(|bytes| redact::snippet(&String::from_utf8_lossy(bytes), LOG_BODY_CHARS))
        .unwrap_or_default();
    tracing::debug!(
        tenant = %ctx.tenant, connector, tool_call_id = %ctx.tool_call_id,
        method = %request.method(), url = %redact::redact_url(request.url()),
        headers = ?redact::redact_headers(request.headers()), body = %body,
        "vendor request"
    );
}

fn log_response(
    ctx: &RequestContext,
    connector: &'static str,
    attempt: u32,
    elapsed: Duration,
    status: StatusCode,
    body: &[u8],
    action: &RetryAction,
) {
    let elapsed_ms = elapsed.as_millis() as u64;
    if *action == RetryAction::Successful {
        tracing::info!(tenant = %ctx.tenant, connector, tool_call_id = %ctx.tool_call_id, attempt, elapsed_ms, status = status.as_u16(), "vendor response");
    } else {
        tracing::warn!(tenant = %ctx.tenant, connector, tool_call_id = %ctx.tool_call_id, attempt, elapsed_ms, status = status.as_u16(), action = ?action, "vendor error response");
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let shown = redact::snippet(&String::from_utf8_lossy(body), LOG_BODY_CHARS);
        tracing::debug!(connector, attempt, body = %shown, "vendor response body");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short, non-awaiting locks leaves plain data that is
    // still consistent, so recover the guard rather than propagate the poison.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Observable state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// Closed → Open after `threshold` consecutive failures → HalfOpen after `cool_down` (one probe)
/// → Closed on the probe's success, Open again on its failure.
#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
            threshold: threshold.max(1),
            cool_down,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Let an attempt through: `Ok(true)` if it is the half-open probe, `Ok(false)` for a
    /// normal attempt, `Err(retry_in)` when failing fast.
    pub fn admit(&mut self, now: Instant) -> Result<bool, Duration> {
        match self.state {
            BreakerState::Closed { .. } => Ok(false),
            BreakerState::Open { until } if now < until => Err(until - now),
            BreakerState::Open { .. }
            | BreakerState::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                Ok(true)
            }
            BreakerState::HalfOpen {
                probe_in_flight: true,
            } => Err(Duration::ZERO),
        }
    }

    /// Record the outcome of an admitted attempt.
    pub fn record(&mut self, probe: bool, success: bool, now: Instant) {
        self.state = match (self.state, success) {
            (_, true) if probe => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (_, false) if probe => BreakerState::Open {
                until: now + self.cool_down,
            },
            (BreakerState::Closed { .. }, true) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    BreakerState::Open {
                        until: now + self.cool_down,
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            // A non-probe attempt admitted before the breaker opened finishes late: the
            // current state already reflects newer information.
            (state, _) => state,
        };
    }

    /// An admitted attempt ended without a verdict (cancelled, or no permit).
    pub fn abandon(&mut self, probe: bool) {
        if probe
            && self.state
                == (BreakerState::HalfOpen {
                    probe_in_flight: true,
                })
        {
            self.state = BreakerState::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

/// Reports an admitted attempt to the breaker exactly once, also when the future is dropped.
struct BreakerTicket<'a> {
    endpoint: &'a Endpoint,
    probe: bool,
    reported: bool,
}

impl BreakerTicket<'_> {
    fn report(&mut self, success: bool, now: Instant) {
        lock(&self.endpoint.breaker).record(self.probe, success, now);
        self.reported = true;
    }

    fn release_unjudged(&mut self) {
        lock(&self.endpoint.breaker).abandon(self.probe);
        self.reported = true;
    }
}

impl Drop for BreakerTicket<'_> {
    fn drop(&mut self) {
        if !self.reported {
            lock(&self.endpoint.breaker).abandon(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classification_follows_the_table() {
        let headers = HeaderMap::new();
        let classify = |code: u16| {
            default_classification(&AttemptOutcome::Response {
                status: StatusCode::from_u16(code).expect("valid code"),
                headers: &headers,
                body: b"",
            })
        };
        assert_eq!(classify(200), RetryAction::Successful);
        assert_eq!(classify(201), RetryAction::Successful);
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(code), RetryAction::Retry(_)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501] {
            assert!(
                matches!(classify(code), RetryAction::DontRetry(_)),
                "{code}"
            );
        }
        assert!(matches!(
            default_classification(&AttemptOutcome::TimedOut),
            RetryAction::Retry(_)
        ));
        assert!(matches!(
            default_classification(&AttemptOutcome::Transport("reset")),
            RetryAction::Retry(_)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));

        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        let date = httpdate::fmt_http_date(in_a_minute);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&date).expect("ascii date"),
        );
        let delay = retry_after(&headers).expect("date form parsed");
        assert!(
            delay > Duration::from_secs(55) && delay <= Duration::from_secs(60),
            "{delay:?}"
        );

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));

        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(500);
        for attempt in 1..=10 {
            let ceiling = (base * (1 << (attempt - 1).min(16))).min(max);
            for _ in 0..50 {
                assert!(full_jitter(base, max, attempt) <= ceiling);
            }
        }
        assert_eq!(full_jitter(Duration::ZERO, max, 3), Duration::ZERO);
    }

    #[test]
    fn breaker_cycles_closed_open_half_open_closed() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut breaker = Breaker::new(3, cool);
        for _ in 0..2 {
            assert_eq!(breaker.admit(t0), Ok(false));
            breaker.record(false, false, t0);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 2
            }
        );
        assert_eq!(breaker.admit(t0), Ok(false));
        breaker.record(false, false, t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool });
        assert_eq!(
            breaker.admit(t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );

        // After the cool-down exactly one probe goes through.
        let later = t0 + cool;
        assert_eq!(breaker.admit(later), Ok(true));
        assert_eq!(breaker.admit(later), Err(Duration::ZERO));
        breaker.record(true, false, later);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: later + cool
            }
        );

        let later = later + cool;
        assert_eq!(breaker.admit(later), Ok(true));
        breaker.record(true, true, later);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(1));
        breaker.record(false, false, t0);
        breaker.record(false, true, t0);
        breaker.record(false, false, t0);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed {
                consecutive_failures: 1
            }
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_one_through() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(1, Duration::from_secs(1));
        breaker.record(false, false, t0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(breaker.admit(later), Ok(true));
        breaker.abandon(true);
        assert_eq!(breaker.admit(later), Ok(true));
    }

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

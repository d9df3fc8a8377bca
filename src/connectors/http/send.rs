//! The send loop: one logical vendor call under the policy — deadline, breaker, concurrency permit,
//! the egress guard, one attempt with its timeout, classification, and backoff with full jitter
//! (honouring `Retry-After`). It must not build URLs, bodies or auth: connectors hand it prepared
//! `reqwest::Request`s.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::egress::{EgressError, refusal_in};

use super::breaker::{Breaker, BreakerState, BreakerTicket, lock};
use super::classify::{AttemptOutcome, RetryAction, retry_after};
use super::{
    BODY_SNIPPET_CHARS, ConnectorProfile, LOG_BODY_CHARS, PolicyConfig, PolicyError,
    PolicyResponse, Replay, RequestContext, redact,
};

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
        // The guard's builder installs the TLS provider, checks every resolved address at
        // connect time, and turns redirects and system proxies off.
        let client = config
            .egress
            .client_builder()
            .user_agent(config.user_agent.clone())
            // Our own per-attempt timeout covers the whole attempt; this only bounds connects.
            .connect_timeout(config.attempt_timeout)
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
        let endpoint = self.endpoint(&Arc::from(tenant), &ConnectorProfile::new(connector));
        let breaker = lock(&endpoint.breaker);
        breaker.state()
    }

    /// The state of (tenant, vendor), created on first use (the profile's concurrency override
    /// sizes its permits).
    fn endpoint(&self, tenant: &Arc<str>, profile: &ConnectorProfile) -> Arc<Endpoint> {
        let permits = profile
            .overrides
            .max_concurrency
            .unwrap_or(self.inner.config.max_concurrency);
        let mut endpoints = lock(&self.inner.endpoints);
        endpoints
            .entry((tenant.clone(), profile.name))
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    breaker: Mutex::new(Breaker::new(
                        self.inner.config.breaker_failure_threshold,
                        self.inner.config.breaker_cool_down,
                    )),
                    permits: Semaphore::new(permits.max(1)),
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
        // Nothing leaves for a destination the egress guard refuses (the resolver checks the
        // addresses again at connect time).
        self.inner
            .config
            .egress
            .check_url(request.url())
            .map_err(|source| {
                tracing::warn!(tenant = %ctx.tenant, connector, tool_call_id = %ctx.tool_call_id,
                    error = %source, "vendor request refused by the egress guard");
                PolicyError::Egress { connector, source }
            })?;
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
        let endpoint = self.endpoint(&ctx.tenant, profile);
        let config = &self.inner.config;
        let clock = &self.inner.clock;
        let max_attempts = profile
            .overrides
            .max_attempts
            .unwrap_or(config.max_attempts)
            .max(1);
        let attempt_timeout = profile
            .overrides
            .attempt_timeout
            .unwrap_or(config.attempt_timeout);
        let breaker_on = profile.overrides.breaker;
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
            spare = if replayable && attempt < max_attempts {
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
            let probe = if breaker_on {
                let mut breaker = lock(&endpoint.breaker);
                breaker
                    .admit(now)
                    .map_err(|retry_in| PolicyError::CircuitOpen {
                        connector,
                        retry_in,
                    })?
            } else {
                false
            };
            let mut ticket = BreakerTicket {
                breaker: &endpoint.breaker,
                probe,
                // With the breaker off there is nothing to report.
                reported: !breaker_on,
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
            let attempt_deadline = (clock.now() + attempt_timeout).min(ctx.deadline);
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
                Ok(Err(AttemptError::Egress(source))) => (
                    RetryAction::DontRetry("refused by egress policy".into()),
                    Some(PolicyError::Egress {
                        connector,
                        source: source.clone(),
                    }),
                ),
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
        let mut response =
            self.inner
                .client
                .execute(request)
                .await
                .map_err(|err| match refusal_in(&err) {
                    Some(refusal) => AttemptError::Egress(refusal),
                    None => AttemptError::Transport(describe_transport(&err)),
                })?;
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
    /// The guard's resolver refused every address the host resolved to.
    Egress(EgressError),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

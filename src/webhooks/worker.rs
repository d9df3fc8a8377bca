//! The delivery worker: claims due outbox rows with a lease, signs and POSTs each one, and
//! records the outcome (delivered, retry later with exponential backoff, or given up after the
//! maximum number of attempts). It must not build payloads or change webhook settings; it logs
//! message ids and outcomes, never payloads or secrets.

use std::time::Duration;

use futures_util::future::join_all;
use jiff::Timestamp;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::egress::EgressPolicy;
use crate::store::{OutboxMessage, SqlStore, StoreError};
use crate::tenant::vault::{Keyring, Vault};

use super::signature::SigningSecret;
use super::{WebhookError, validate_url};

/// How often a running worker deletes messages past their retention.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Tuning of a [`DeliveryWorker`].
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Pause between polls when nothing was due.
    pub poll_interval: Duration,
    /// Rows claimed (and sent concurrently) per poll.
    pub batch_size: u32,
    /// How long a claim is exclusive. Must exceed `request_timeout` comfortably, or a slow send
    /// could be re-claimed by another worker while still in flight.
    pub lease: Duration,
    /// Whole-request deadline of one delivery attempt.
    pub request_timeout: Duration,
    /// Delay before the second attempt; doubles on every further failure.
    pub base_backoff: Duration,
    /// Upper bound of the backoff delay.
    pub max_backoff: Duration,
    /// Attempts before a message is marked `failed`.
    pub max_attempts: u32,
    /// Finished messages (delivered, failed, cancelled) older than this are deleted.
    pub retention: Duration,
    /// Where deliveries may go: tenant URLs are checked before each send and the client's
    /// resolver refuses internal addresses at connect time. Default strict (public https only);
    /// `serve` passes the operator's `CALLBRIDGE_EGRESS_ALLOW`.
    pub egress: EgressPolicy,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        // 12 attempts from 10 s doubling to a 1 h cap span about 8 hours of receiver outage.
        Self {
            poll_interval: Duration::from_secs(1),
            batch_size: 16,
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 12,
            retention: Duration::from_secs(30 * 24 * 3600),
            egress: EgressPolicy::strict(),
        }
    }
}

impl WorkerOptions {
    fn validate(&self) -> Result<(), WebhookError> {
        let bad = |m: &str| Err(WebhookError::InvalidOptions(m.to_owned()));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.lease < self.request_timeout * 2 {
            return bad("lease must be at least twice the request timeout");
        }
        if self.base_backoff.is_zero() || self.max_backoff < self.base_backoff {
            return bad("base_backoff must be positive and at most max_backoff");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval must be positive");
        }
        Ok(())
    }

    /// Delay after the `attempts`-th failed attempt: `base · 2^(attempts-1)`, capped, with the
    /// upper half jittered so that retries of a batch spread out instead of arriving together.
    fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let delay = self
            .base_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = delay / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        half + jitter
    }
}

/// Claims and delivers outbox rows. Several may run against one database (see
/// [`SqlStore::claim_outbox`]).
#[derive(Debug)]
pub struct DeliveryWorker {
    store: SqlStore,
    vault: Vault<SqlStore>,
    client: reqwest::Client,
    options: WorkerOptions,
    worker_id: String,
}

/// The outcome of one delivery attempt, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    RetryLater,
    GaveUp,
    Cancelled,
    /// The lease was lost (another worker owns the row now); nothing was recorded.
    LeaseLost,
}

impl DeliveryWorker {
    /// A worker with a random id, reading signing secrets through `keyring`.
    pub fn new(
        store: SqlStore,
        keyring: Keyring,
        options: WorkerOptions,
    ) -> Result<Self, WebhookError> {
        options.validate()?;
        // reqwest is built without a bundled TLS provider; ring serves the whole crate.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = options
            .egress
            .client_builder()
            .user_agent(concat!("callbridge-webhooks/", env!("CARGO_PKG_VERSION")))
            .timeout(options.request_timeout)
            // A redirect would send the signed event somewhere the tenant did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(e.without_url().to_string()))?;
        let id_bytes: [u8; 8] = rand::random();
        let worker_id = id_bytes.iter().fold(String::from("wkr_"), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        });
        Ok(Self {
            vault: Vault::new(store.clone(), keyring),
            store,
            client,
            options,
            worker_id,
        })
    }

    pub fn id(&self) -> &str {
        &self.worker_id
    }

    /// Claims one batch of due rows and attempts each once, concurrently. Returns how many rows
    /// were claimed (0: nothing was due).
    pub async fn run_once(&self) -> Result<usize, WebhookError> {
        let lease_ms = i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let lease_until = Timestamp::now().as_millisecond().saturating_add(lease_ms);
        let batch = self
            .store
            .claim_outbox(&self.worker_id, lease_until, self.options.batch_size)
            .await?;
        let claimed = batch.len();
        let results = join_all(batch.iter().map(|message| self.attempt(message))).await;
        for (message, result) in batch.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    debug!(id = %message.id, attempt = message.attempts, ?outcome, "webhook attempt")
                }
                Err(e) => {
                    warn!(id = %message.id, error = %e, "webhook attempt could not be recorded")
                }
            }
        }
        Ok(claimed)
    }

    /// Deletes finished messages older than the retention period; returns how many went.
    pub async fn purge_finished(&self) -> Result<u64, WebhookError> {
        let retention_ms = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp::now()
            .as_millisecond()
            .saturating_sub(retention_ms);
        Ok(self.store.purge_outbox(before).await?)
    }

    /// Runs until `shutdown` is signalled through the returned handle.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let join = tokio::spawn(async move {
            info!(worker = %self.worker_id, "webhook delivery worker started");
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_INTERVAL) {
                    last_purge = Some(tokio::time::Instant::now());
                    match self.purge_finished().await {
                        Ok(0) => {}
                        Ok(purged) => info!(purged, "old webhook messages deleted"),
                        Err(e) => warn!(error = %e, "webhook outbox purge failed"),
                    }
                }
                let claimed = match self.run_once().await {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        warn!(worker = %self.worker_id, error = %e, "webhook poll failed");
                        0
                    }
                };
                if *stopped.borrow() {
                    break;
                }
                if claimed == 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.poll_interval) => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
            info!(worker = %self.worker_id, "webhook delivery worker stopped");
        });
        WorkerHandle { stop, join }
    }

    async fn attempt(&self, message: &OutboxMessage) -> Result<Outcome, WebhookError> {
        if message.attempts > self.options.max_attempts {
            let reason = format!("gave up after {} attempts", self.options.max_attempts);
            return self.record_failure(message, &reason, true).await;
        }
        let settings = match self.store.webhook_settings(&message.tenant_id).await {
            Ok(settings) => settings,
            Err(StoreError::NotFound { .. }) => {
                return self.cancel(message, "webhook is not configured").await;
            }
            Err(e) => return self.record_failure(message, &e.to_string(), false).await,
        };
        if !settings.spec.enabled {
            return self.cancel(message, "webhook is disabled").await;
        }
        let url = match validate_url(&settings.spec.url, &self.options.egress) {
            Ok(url) => url,
            Err(e) => {
                warn!(id = %message.id, tenant = %message.tenant_id, error = %e, "webhook URL refused");
                let reason = match e {
                    WebhookError::Egress(_) => "refused by egress policy",
                    _ => "invalid webhook url",
                };
                return self.cancel(message, reason).await;
            }
        };
        let secret = match self
            .vault
            .reveal(&message.tenant_id, &settings.spec.secret_name)
            .await
        {
            Ok(text) => match SigningSecret::parse(text.expose_secret()) {
                Ok(secret) => secret,
                Err(e) => return self.record_failure(message, &e.to_string(), false).await,
            },
            Err(e) => return self.record_failure(message, &e.to_string(), false).await,
        };
        let timestamp = Timestamp::now().as_second();
        let signature = secret.sign(&message.id, timestamp, message.payload.as_bytes());
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                if self
                    .store
                    .mark_outbox_delivered(&message.id, &self.worker_id)
                    .await?
                {
                    Ok(Outcome::Delivered)
                } else {
                    Ok(Outcome::LeaseLost)
                }
            }
            Ok(response) => {
                let reason = format!("receiver answered HTTP {}", response.status().as_u16());
                self.record_failure(message, &reason, false).await
            }
            // The tenant reads the stored reason: neutral words only. The operator's log gets the
            // detail, without the URL (its query may carry a token).
            Err(e) => {
                let reason = super::neutral_delivery_error(&e);
                warn!(id = %message.id, tenant = %message.tenant_id, reason, error = %e.without_url(), "webhook delivery failed");
                self.record_failure(message, reason, false).await
            }
        }
    }

    async fn record_failure(
        &self,
        message: &OutboxMessage,
        reason: &str,
        give_up: bool,
    ) -> Result<Outcome, WebhookError> {
        let give_up = give_up || message.attempts >= self.options.max_attempts;
        let retry_at = (!give_up).then(|| {
            let delay_ms =
                i64::try_from(self.options.backoff(message.attempts).as_millis()).unwrap_or(0);
            Timestamp::now().as_millisecond().saturating_add(delay_ms)
        });
        let recorded = self
            .store
            .mark_outbox_failed(&message.id, &self.worker_id, reason, retry_at)
            .await?;
        Ok(match (recorded, give_up) {
            (false, _) => Outcome::LeaseLost,
            (true, true) => {
                warn!(id = %message.id, tenant = %message.tenant_id, reason, "webhook given up");
                Outcome::GaveUp
            }
            (true, false) => Outcome::RetryLater,
        })
    }

    async fn cancel(&self, message: &OutboxMessage, reason: &str) -> Result<Outcome, WebhookError> {
        if self
            .store
            .cancel_outbox(&message.id, &self.worker_id, reason)
            .await?
        {
            Ok(Outcome::Cancelled)
        } else {
            Ok(Outcome::LeaseLost)
        }
    }
}

/// A running worker task.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl WorkerHandle {
    /// Lets the current batch finish, then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }

    /// Stops at once, even mid-delivery (as a crash would). Claimed rows are picked up again when
    /// their lease expires.
    pub fn abort(self) {
        self.join.abort();
    }
}

/// Starts a worker for `serve` when a master key is configured (signing secrets are sealed in the
/// vault, so without one nothing could be signed). Returns `None`, after logging why, otherwise;
/// the outbox keeps every event until a worker runs.
pub fn spawn_from_env(store: SqlStore, options: WorkerOptions) -> Option<WorkerHandle> {
    let keyring = match Keyring::from_env() {
        Ok(keyring) => keyring,
        Err(e) => {
            warn!(error = %e, "post-call webhooks are not delivered");
            return None;
        }
    };
    match DeliveryWorker::new(store, keyring, options) {
        Ok(worker) => Some(worker.spawn()),
        Err(e) => {
            warn!(error = %e, "post-call webhooks are not delivered");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let options = WorkerOptions {
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..WorkerOptions::default()
        };
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (30, 60), (u32::MAX, 60)] {
            let delay = options.backoff(attempts);
            let full = Duration::from_secs(full);
            assert!(delay >= full / 2 && delay <= full, "{attempts}: {delay:?}");
        }
    }

    #[test]
    fn options_refuse_a_lease_shorter_than_two_request_timeouts() {
        let options = WorkerOptions {
            lease: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ..WorkerOptions::default()
        };
        assert!(options.validate().is_err());
        assert!(WorkerOptions::default().validate().is_ok());
    }
}

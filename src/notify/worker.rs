//! The notification delivery worker: claims due notification rows with a lease (several workers
//! on several nodes share the table, as with webhooks), builds the tenant's messenger for the
//! row's channel, sends, and records the outcome — delivered, retried later with exponential
//! backoff, or given up after the maximum number of attempts. A row survives restarts: a worker
//! that dies mid-send loses its lease and another takes the row.
//!
//! It must not decide who is notified (that is [`super::Notifier`] and the rules) and logs ids
//! and outcomes only, never recipients or texts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::connectors::ConnectorError;
use crate::connectors::http::{HttpPolicy, RequestContext};
use crate::connectors::messages::{Channel, Message, Messenger};
use crate::oauth::OAuthService;
use crate::store::{NotificationMessage, SqlStore, Store, StoreError, TenantId};
use crate::tenant::vault::{Keyring, Vault};
use crate::tools::send_message::{messengers, whatsapp_template};

/// Tuning of a [`NotificationWorker`].
#[derive(Clone, Debug)]
pub struct NotifyWorkerOptions {
    pub poll_interval: Duration,
    pub batch_size: u32,
    /// How long a claim is exclusive; must exceed `send_timeout` comfortably.
    pub lease: Duration,
    /// Deadline of one delivery attempt.
    pub send_timeout: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
    /// Finished rows older than this (and expired dedup keys) are deleted.
    pub retention: Duration,
}

impl Default for NotifyWorkerOptions {
    fn default() -> Self {
        // 10 attempts from 10 s doubling to a 30 min cap span about 2.5 hours of vendor outage.
        Self {
            poll_interval: Duration::from_secs(1),
            batch_size: 16,
            lease: Duration::from_secs(60),
            send_timeout: Duration::from_secs(20),
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(1800),
            max_attempts: 10,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl NotifyWorkerOptions {
    fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let delay = self
            .base_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let half = delay / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// What happened to one claimed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    Delivered,
    RetryLater,
    GaveUp,
    LeaseLost,
}

/// Claims and delivers notifications.
pub struct NotificationWorker {
    store: SqlStore,
    keyring: Option<Keyring>,
    policy: HttpPolicy,
    oauth: Option<OAuthService>,
    options: NotifyWorkerOptions,
    worker_id: String,
}

impl std::fmt::Debug for NotificationWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationWorker")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

/// A failure that should not be retried: the configuration or the message is wrong.
fn permanent(err: &ConnectorError) -> bool {
    matches!(
        err,
        ConnectorError::InvalidInput(_) | ConnectorError::Rejected(_) | ConnectorError::NotFound(_)
    )
}

impl NotificationWorker {
    pub fn new(
        store: SqlStore,
        keyring: Option<Keyring>,
        policy: HttpPolicy,
        oauth: Option<OAuthService>,
        options: NotifyWorkerOptions,
    ) -> Self {
        Self {
            store,
            keyring,
            policy,
            oauth,
            options,
            worker_id: format!("notify-{:016x}", rand::random::<u64>()),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The tenant's messengers, built once per batch.
    async fn channels_of(&self, tenant: &TenantId) -> BTreeMap<Channel, Arc<dyn Messenger>> {
        let configs = match self.store.list_connectors(tenant).await {
            Ok(configs) => configs,
            Err(err) => {
                tracing::warn!(tenant = %tenant, error = %err, "notification connectors unreadable");
                return BTreeMap::new();
            }
        };
        let vault = self
            .keyring
            .clone()
            .map(|keyring| Vault::new(self.store.clone(), keyring));
        let (channels, problems) =
            messengers(&configs, vault.as_ref(), &self.policy, self.oauth.as_ref()).await;
        for problem in problems {
            tracing::warn!(tenant = %tenant, problem = %problem, "messaging connector unavailable");
        }
        channels
    }

    /// One poll: claims a batch and delivers it; returns each row's outcome.
    pub async fn run_once(&self) -> Result<Vec<(String, NotifyOutcome)>, StoreError> {
        let lease_until = jiff::Timestamp::now().as_millisecond()
            + i64::try_from(self.options.lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = self
            .store
            .claim_notifications(&self.worker_id, lease_until, self.options.batch_size)
            .await?;
        let mut cache: BTreeMap<TenantId, BTreeMap<Channel, Arc<dyn Messenger>>> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(claimed.len());
        for row in claimed {
            if !cache.contains_key(&row.tenant_id) {
                let channels = self.channels_of(&row.tenant_id).await;
                cache.insert(row.tenant_id.clone(), channels);
            }
            let channels = cache.get(&row.tenant_id).cloned().unwrap_or_default();
            let outcome = self.deliver(&row, &channels).await?;
            tracing::info!(notification = %row.id, tenant = %row.tenant_id, event = %row.event,
                channel = %row.channel, attempt = row.attempts, outcome = ?outcome,
                "notification attempt");
            outcomes.push((row.id.clone(), outcome));
        }
        Ok(outcomes)
    }

    async fn deliver(
        &self,
        row: &NotificationMessage,
        channels: &BTreeMap<Channel, Arc<dyn Messenger>>,
    ) -> Result<NotifyOutcome, StoreError> {
        let result = self.attempt(row, channels).await;
        let recorded = match &result {
            Ok(()) => {
                return Ok(
                    if self
                        .store
                        .mark_notification_delivered(&row.id, &self.worker_id)
                        .await?
                    {
                        NotifyOutcome::Delivered
                    } else {
                        NotifyOutcome::LeaseLost
                    },
                );
            }
            Err((error, retry)) => {
                let give_up = !retry || row.attempts >= self.options.max_attempts;
                let retry_at = (!give_up).then(|| {
                    jiff::Timestamp::now().as_millisecond()
                        + i64::try_from(self.options.backoff(row.attempts).as_millis())
                            .unwrap_or(i64::MAX)
                });
                let marked = self
                    .store
                    .mark_notification_failed(&row.id, &self.worker_id, error, retry_at)
                    .await?;
                match (marked, give_up) {
                    (false, _) => NotifyOutcome::LeaseLost,
                    (true, true) => NotifyOutcome::GaveUp,
                    (true, false) => NotifyOutcome::RetryLater,
                }
            }
        };
        Ok(recorded)
    }

    /// Sends the row; the error says why and whether another attempt may succeed.
    async fn attempt(
        &self,
        row: &NotificationMessage,
        channels: &BTreeMap<Channel, Arc<dyn Messenger>>,
    ) -> Result<(), (String, bool)> {
        let Some(channel) = Channel::parse(&row.channel) else {
            return Err((format!("unknown channel {}", row.channel), false));
        };
        let Some(messenger) = channels.get(&channel) else {
            // The tenant may connect it later: retried until the attempts run out.
            return Err((format!("no {channel} connector is configured"), true));
        };
        if channel.is_phone() {
            let number = crate::store::E164::parse(&row.recipient)
                .map_err(|_| ("the recipient is not an E.164 number".to_owned(), false))?;
            match self.store.is_do_not_call(&row.tenant_id, &number).await {
                Ok(true) => {
                    return Err(("the recipient is on the do-not-call list".into(), false));
                }
                Ok(false) => {}
                Err(err) => return Err((err.to_string(), true)),
            }
        }
        let mut message = Message {
            to: row.recipient.clone(),
            from: row.sender.clone(),
            subject: Some(row.subject.clone()),
            // An empty subject (an inbound rule's text message) adds no first line.
            text: if channel == Channel::Email || channel.is_team_chat() || row.subject.is_empty() {
                row.body.clone()
            } else {
                format!("{}\n{}", row.subject, row.body)
            },
            template: None,
        };
        if channel == Channel::Whatsapp {
            let settings = self
                .store
                .messaging_settings(&row.tenant_id)
                .await
                .map_err(|err| (err.to_string(), true))?;
            message.template = whatsapp_template(
                &self.store,
                &row.tenant_id,
                &settings,
                &row.recipient,
                &message.text,
            )
            .await
            .map_err(|err| (err, false))?;
        }
        let ctx = RequestContext::new(
            row.tenant_id.as_str(),
            row.id.clone(),
            Instant::now() + self.options.send_timeout,
        )
        .with_idempotency_key(row.id.clone());
        messenger
            .send(&ctx, &message)
            .await
            .map(|_| ())
            .map_err(|err| (err.to_string(), !permanent(&err)))
    }

    /// Runs the worker on the runtime until its handle is shut down.
    pub fn spawn(self) -> NotifyHandle {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(self.run(stopped));
        NotifyHandle { stop, join }
    }

    /// Polls until `shutdown` turns true; purges old rows hourly.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_purge = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let busy = match self.run_once().await {
                Ok(outcomes) => !outcomes.is_empty(),
                Err(err) => {
                    tracing::warn!(error = %err, "notification poll failed");
                    false
                }
            };
            if last_purge.elapsed() > Duration::from_secs(3600) {
                last_purge = Instant::now();
                let before = jiff::Timestamp::now().as_millisecond()
                    - i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX);
                if let Err(err) = self.store.purge_notifications(before).await {
                    tracing::warn!(error = %err, "notification purge failed");
                }
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.options.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// A running [`NotificationWorker`].
#[derive(Debug)]
pub struct NotifyHandle {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl NotifyHandle {
    /// Stops after the row in hand (unfinished rows are claimed again when their lease ends).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }

    /// Stops at once, as a crash would.
    pub fn abort(self) {
        self.join.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let options = NotifyWorkerOptions {
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            ..NotifyWorkerOptions::default()
        };
        for (attempts, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (u32::MAX, 60)] {
            let delay = options.backoff(attempts);
            let full = Duration::from_secs(full);
            assert!(delay >= full / 2 && delay <= full, "{attempts}: {delay:?}");
        }
    }
}

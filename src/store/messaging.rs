//! Rows of messaging and staff notifications (migration 0016): a tenant's messaging settings
//! (one JSON document), the last inbound message per contact and channel (the WhatsApp service
//! window), the messages `send_message` reserved (per-call and per-tenant limits), notification
//! rules, the notification dedup keys and the durable notification outbox (leased claims, as
//! [`super::outbox`] does for webhooks).
//!
//! It must not send anything or validate addresses and channels (the admin and notification
//! services do); every method takes the tenant id except the outbox worker's claim and marks,
//! which work across tenants by design (one worker pool serves them all). Methods are inherent
//! on [`SqlStore`]: only the messaging tool, the notification service and the admin API use them.
//!
//! # Deduplication
//!
//! [`SqlStore::enqueue_notification`] claims the dedup key and writes the outbox row in one
//! transaction. The claim is an insert that, on a key already present, only takes it over when
//! the old claim has expired (`ON CONFLICT … DO UPDATE … WHERE expires_at <= now`): exactly one of
//! any number of concurrent enqueuers (on one node or many, before or after a restart) changes a
//! row, and only that one writes to the outbox.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{
    ReservationLock, collect, lock_reservations, new_id, now_ms, optional_timestamp, tenant_id,
    timestamp,
};
use super::{Backend, OutboxStatus, SqlStore, StoreError, StoreResult, TenantId};

/// Default cap of messages one phone call may send.
pub const DEFAULT_PER_CALL_LIMIT: u32 = 3;
/// Default cap of messages a tenant may send per rolling 24 hours.
pub const DEFAULT_PER_TENANT_DAILY_LIMIT: u32 = 500;
/// Default time a notification key stays deduplicated (6 hours).
pub const DEFAULT_DEDUP_TTL_SECS: u64 = 6 * 3600;

fn default_per_call() -> u32 {
    DEFAULT_PER_CALL_LIMIT
}
fn default_per_day() -> u32 {
    DEFAULT_PER_TENANT_DAILY_LIMIT
}
fn default_ttl() -> u64 {
    DEFAULT_DEDUP_TTL_SECS
}

/// A person of the business the agent may message (`send_message` with `recipient: <name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffRecipient {
    /// What the model says (`front desk`, `manager`).
    pub name: String,
    /// `sms`, `whatsapp` or `email`.
    pub channel: String,
    /// E.164 number or email address.
    pub address: String,
}

/// The approved WhatsApp template sent outside the 24-hour window, the message text as its one
/// body parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSetting {
    pub name: String,
    /// e.g. `en_US`.
    pub language: String,
}

/// A tenant's messaging settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    #[serde(default)]
    pub staff: Vec<StaffRecipient>,
    /// Messages one call may send.
    #[serde(default = "default_per_call")]
    pub per_call_limit: u32,
    /// Messages the tenant may send per rolling 24 hours.
    #[serde(default = "default_per_day")]
    pub per_tenant_daily_limit: u32,
    /// Domains an email to the caller may go to (empty: the caller cannot be emailed). Staff
    /// addresses must match them too when the list is not empty.
    #[serde(default)]
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub whatsapp_template: Option<TemplateSetting>,
    /// How long a notification key stays deduplicated, in seconds.
    #[serde(default = "default_ttl")]
    pub dedup_ttl_secs: u64,
    /// The channel used when the model names none (`sms`, `whatsapp`, `email`).
    #[serde(default)]
    pub default_channel: Option<String>,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self {
            staff: Vec::new(),
            per_call_limit: DEFAULT_PER_CALL_LIMIT,
            per_tenant_daily_limit: DEFAULT_PER_TENANT_DAILY_LIMIT,
            email_domains: Vec::new(),
            whatsapp_template: None,
            dedup_ttl_secs: DEFAULT_DEDUP_TTL_SECS,
            default_channel: None,
        }
    }
}

/// Whether a message slot could be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotReservation {
    /// Reserved now, or already reserved under the same key (a replay).
    Reserved,
    /// The call already sent its allowance.
    CallLimit,
    /// The tenant already sent its allowance for the last 24 hours.
    TenantLimit,
}

/// One staff notification rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRule {
    pub id: String,
    pub tenant_id: TenantId,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub created_at: Timestamp,
}

/// A notification to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification<'a> {
    pub tenant_id: &'a TenantId,
    pub event: &'a str,
    pub channel: &'a str,
    pub recipient: &'a str,
    /// SMS: the number to send from when the account names none (the number the caller dialled).
    pub sender: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
    /// The dedup key (event type + recipient + subject, built by the service).
    pub dedupe_key: &'a str,
    pub dedup_ttl_ms: i64,
}

/// One notification outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationMessage {
    pub id: String,
    pub tenant_id: TenantId,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub sender: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

macro_rules! notification_cols {
    () => {
        "id, tenant_id, event, channel, recipient, sender, subject, body, status, attempts, \
         next_attempt_at, last_error, created_at, delivered_at"
    };
}

fn status_of(raw: &str) -> StoreResult<OutboxStatus> {
    Ok(match raw {
        "pending" => OutboxStatus::Pending,
        "delivered" => OutboxStatus::Delivered,
        "failed" => OutboxStatus::Failed,
        "cancelled" => OutboxStatus::Cancelled,
        other => {
            return Err(StoreError::Corrupt {
                what: "notification_outbox.status",
                reason: format!("unknown value {other:?}"),
            });
        }
    })
}

fn notification_from_row(row: &AnyRow) -> StoreResult<NotificationMessage> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(NotificationMessage {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        event: row.try_get("event")?,
        channel: row.try_get("channel")?,
        recipient: row.try_get("recipient")?,
        sender: row.try_get("sender")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: status_of(&status)?,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt {
            what: "notification_outbox.attempts",
            reason: format!("{attempts} is out of range"),
        })?,
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: timestamp(row, "created_at")?,
        delivered_at: optional_timestamp(row, "delivered_at")?,
    })
}

fn rule_from_row(row: &AnyRow) -> StoreResult<NotificationRule> {
    Ok(NotificationRule {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        event: row.try_get("event")?,
        channel: row.try_get("channel")?,
        recipient: row.try_get("recipient")?,
        created_at: timestamp(row, "created_at")?,
    })
}

impl SqlStore {
    // --- settings --------------------------------------------------------------------------------

    /// Creates or replaces the tenant's messaging settings (validated by the caller).
    pub async fn put_messaging_settings(
        &self,
        tenant: &TenantId,
        settings: &MessagingSettings,
    ) -> StoreResult<MessagingSettings> {
        let text = serde_json::to_string(settings)
            .map_err(|e| StoreError::invalid("messaging settings", e.to_string()))?;
        let done = sqlx::query(
            "INSERT INTO messaging_settings (tenant_id, settings, updated_at) \
             SELECT id, $2, $3 FROM tenants WHERE id = $1 \
             ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(text)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("tenant {tenant}")));
        }
        Ok(settings.clone())
    }

    /// The tenant's messaging settings; the defaults when it has set none.
    pub async fn messaging_settings(&self, tenant: &TenantId) -> StoreResult<MessagingSettings> {
        let row = sqlx::query("SELECT settings FROM messaging_settings WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(MessagingSettings::default()),
            Some(row) => {
                let text: String = row.try_get("settings")?;
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    what: "messaging_settings.settings",
                    reason: e.to_string(),
                })
            }
        }
    }

    // --- the service window -------------------------------------------------------------------

    /// Records that `contact` wrote to the business on `channel` at `at_ms` (keeps the latest).
    pub async fn record_inbound_message(
        &self,
        tenant: &TenantId,
        channel: &str,
        contact: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO messaging_contacts (tenant_id, channel, contact, last_inbound_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, channel, contact) DO UPDATE \
             SET last_inbound_at = excluded.last_inbound_at \
             WHERE messaging_contacts.last_inbound_at < excluded.last_inbound_at",
        )
        .bind(tenant.as_str())
        .bind(channel)
        .bind(contact)
        .bind(at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// When `contact` last wrote to the business on `channel`, if ever.
    pub async fn last_inbound_message(
        &self,
        tenant: &TenantId,
        channel: &str,
        contact: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let row = sqlx::query(
            "SELECT last_inbound_at FROM messaging_contacts \
             WHERE tenant_id = $1 AND channel = $2 AND contact = $3",
        )
        .bind(tenant.as_str())
        .bind(channel)
        .bind(contact)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| timestamp(&r, "last_inbound_at")).transpose()
    }

    // --- send limits -----------------------------------------------------------------------------

    /// Reserves one message of `call_sid` under `key`, unless the call or the tenant (rolling
    /// 24 hours) reached its limit. The same key twice is one reservation. Concurrent
    /// reservations of one tenant (any node) are serialised by writing its lock row first, so
    /// they never admit more than either limit (SQLite and PostgreSQL).
    #[allow(clippy::too_many_arguments)] // the columns of one row and its two limits
    pub async fn reserve_message(
        &self,
        tenant: &TenantId,
        call_sid: &str,
        channel: &str,
        recipient: &str,
        key: &str,
        per_call: u32,
        per_tenant_day: u32,
    ) -> StoreResult<SlotReservation> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        lock_reservations(&mut tx, ReservationLock::Messages, tenant, now).await?;
        let existing = sqlx::query(
            "SELECT 1 AS hit FROM messages_sent WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(tenant.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if existing.is_some() {
            return Ok(SlotReservation::Reserved);
        }
        let counts = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM messages_sent WHERE tenant_id = $1 AND call_sid = $2) AS per_call, \
             (SELECT COUNT(*) FROM messages_sent WHERE tenant_id = $1 AND sent_at > $3) AS per_day",
        )
        .bind(tenant.as_str())
        .bind(call_sid)
        .bind(now - 24 * 3600 * 1000)
        .fetch_one(&mut *tx)
        .await?;
        let call_count: i64 = counts.try_get("per_call")?;
        let day_count: i64 = counts.try_get("per_day")?;
        if call_count >= i64::from(per_call) {
            return Ok(SlotReservation::CallLimit);
        }
        if day_count >= i64::from(per_tenant_day) {
            return Ok(SlotReservation::TenantLimit);
        }
        sqlx::query(
            "INSERT INTO messages_sent (id, tenant_id, call_sid, channel, recipient, \
             idempotency_key, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
        )
        .bind(new_id("sms"))
        .bind(tenant.as_str())
        .bind(call_sid)
        .bind(channel)
        .bind(recipient)
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SlotReservation::Reserved)
    }

    /// Gives back a reservation whose message was not sent.
    pub async fn release_message(&self, tenant: &TenantId, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM messages_sent WHERE tenant_id = $1 AND idempotency_key = $2")
            .bind(tenant.as_str())
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Messages reserved by one call.
    pub async fn messages_of_call(&self, tenant: &TenantId, call_sid: &str) -> StoreResult<u32> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages_sent WHERE tenant_id = $1 AND call_sid = $2",
        )
        .bind(tenant.as_str())
        .bind(call_sid)
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    // --- notification rules ----------------------------------------------------------------------

    /// Adds a rule (validated by the caller). The same event, channel and recipient → Conflict.
    pub async fn add_notification_rule(
        &self,
        tenant: &TenantId,
        event: &str,
        channel: &str,
        recipient: &str,
    ) -> StoreResult<NotificationRule> {
        let row = sqlx::query(
            "INSERT INTO notification_rules (tenant_id, id, event, channel, recipient, created_at) \
             SELECT id, $2, $3, $4, $5, $6 FROM tenants WHERE id = $1 \
             ON CONFLICT (tenant_id, event, channel, recipient) DO NOTHING \
             RETURNING tenant_id, id, event, channel, recipient, created_at",
        )
        .bind(tenant.as_str())
        .bind(new_id("nr"))
        .bind(event)
        .bind(channel)
        .bind(recipient)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => rule_from_row(&row),
            None => {
                self.tenant_exists(tenant).await?;
                Err(StoreError::conflict(format!(
                    "a {event} rule to {channel} {recipient} already exists"
                )))
            }
        }
    }

    async fn tenant_exists(&self, tenant: &TenantId) -> StoreResult<()> {
        let row = sqlx::query("SELECT 1 AS hit FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|_| ())
            .ok_or_else(|| StoreError::not_found(format!("tenant {tenant}")))
    }

    pub async fn list_notification_rules(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<NotificationRule>> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, event, channel, recipient, created_at FROM notification_rules \
             WHERE tenant_id = $1 ORDER BY event, channel, recipient",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        collect(rows, rule_from_row)
    }

    pub async fn delete_notification_rule(&self, tenant: &TenantId, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM notification_rules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("notification rule {id}")));
        }
        Ok(())
    }

    // --- the notification outbox -----------------------------------------------------------------

    /// Claims the dedup key and enqueues the notification in one transaction; returns false (and
    /// writes nothing) when the key is already claimed and not expired. See the module docs.
    pub async fn enqueue_notification(&self, n: &NewNotification<'_>) -> StoreResult<bool> {
        if n.dedupe_key.is_empty() || n.dedupe_key.len() > 512 {
            return Err(StoreError::invalid(
                "notification dedupe key",
                "must be 1 to 512 bytes",
            ));
        }
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO notification_dedup (tenant_id, dedupe_key, expires_at) \
             VALUES ($1, $2, $3) ON CONFLICT (tenant_id, dedupe_key) DO UPDATE \
             SET expires_at = excluded.expires_at \
             WHERE notification_dedup.expires_at <= $4",
        )
        .bind(n.tenant_id.as_str())
        .bind(n.dedupe_key)
        .bind(now.saturating_add(n.dedup_ttl_ms.max(0)))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO notification_outbox (id, tenant_id, event, channel, recipient, sender, \
             subject, body, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9)",
        )
        .bind(new_id("ntf"))
        .bind(n.tenant_id.as_str())
        .bind(n.event)
        .bind(n.channel)
        .bind(n.recipient)
        .bind(n.sender)
        .bind(n.subject)
        .bind(n.body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The tenant's most recent notifications, newest first.
    pub async fn list_notifications(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> StoreResult<Vec<NotificationMessage>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_cols!(),
            " FROM notification_outbox WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        collect(rows, notification_from_row)
    }

    /// Claims up to `limit` due notifications for `worker` until `lease_until_ms`, counting an
    /// attempt on each (across tenants: one worker pool serves them all).
    pub async fn claim_notifications(
        &self,
        worker: &str,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<NotificationMessage>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let sql = format!(
            "UPDATE notification_outbox SET lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 WHERE id IN (SELECT id FROM notification_outbox \
             WHERE status = 'pending' AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until <= $3) \
             ORDER BY next_attempt_at, id LIMIT {limit}{lock}) RETURNING {cols}",
            cols = notification_cols!()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease_until_ms)
            .bind(now_ms())
            .fetch_all(self.pool())
            .await?;
        let mut claimed = collect(rows, notification_from_row)?;
        claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(claimed)
    }

    /// Records a delivery; false when `worker` lost the lease.
    pub async fn mark_notification_delivered(&self, id: &str, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE notification_outbox SET status = 'delivered', delivered_at = $3, \
             lease_owner = NULL, lease_until = NULL, last_error = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(worker)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up (`failed`) when `None`.
    pub async fn mark_notification_failed(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> StoreResult<bool> {
        let status = if retry_at_ms.is_some() {
            "pending"
        } else {
            "failed"
        };
        let error: String = error.chars().take(500).collect();
        let done = sqlx::query(
            "UPDATE notification_outbox SET status = $3, \
             next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(worker)
        .bind(status)
        .bind(retry_at_ms)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes expired dedup keys and finished notifications created before `before_ms`.
    pub async fn purge_notifications(&self, before_ms: i64) -> StoreResult<u64> {
        let keys = sqlx::query("DELETE FROM notification_dedup WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        let rows = sqlx::query(
            "DELETE FROM notification_outbox WHERE status <> 'pending' AND created_at < $1",
        )
        .bind(before_ms)
        .execute(self.pool())
        .await?;
        Ok(keys.rows_affected() + rows.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_refuse_unknown_fields() {
        let settings: MessagingSettings = serde_json::from_str("{}").expect("defaults");
        assert_eq!(settings, MessagingSettings::default());
        assert_eq!(settings.dedup_ttl_secs, 6 * 3600);
        assert!(serde_json::from_str::<MessagingSettings>(r#"{"staf": []}"#).is_err());
    }
}

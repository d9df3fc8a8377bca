//! Rows of the post-call webhook feature: a tenant's webhook settings and the durable outbox of
//! messages to deliver, with the lease-based claim that lets several delivery workers (on several
//! nodes) share one table without sending a message twice at the same time.
//!
//! It must not sign, send or build payloads (that is [`crate::webhooks`]); it stores opaque JSON
//! text and moves rows between states. Methods are inherent on [`SqlStore`] rather than on the
//! [`crate::store::Store`] trait: only the webhook module and the admin API use them.
//!
//! # Claiming
//!
//! A row is due when it is `pending`, its `next_attempt_at` has passed and it holds no live lease.
//! Claiming stamps a lease (owner + expiry) and counts the attempt in the same statement, so a
//! worker that dies mid-send loses nothing: the lease runs out and another worker takes the row.
//! On PostgreSQL the candidate rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent
//! claimers pick disjoint rows instead of queueing behind each other; SQLite serialises writers,
//! so the same single `UPDATE … WHERE id IN (SELECT …)` statement is already atomic there.

use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::error::{WriteFailure, classify};
use super::model::validate_secret_name;
use super::sql::{collect, new_id, now_ms, optional_timestamp, tenant_id, timestamp};
use super::{Backend, SqlStore, StoreError, StoreResult, TenantId};

/// What a tenant configures for post-call webhooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettingsSpec {
    /// Validated by the caller (https, or http to loopback only).
    pub url: String,
    /// The tenant secret (vendor `webhook`) holding the `whsec_…` signing secret.
    pub secret_name: String,
    pub enabled: bool,
}

/// A tenant's stored webhook settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    pub tenant_id: TenantId,
    pub spec: WebhookSettingsSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where an outbox row is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every allowed attempt failed.
    Failed,
    /// Not deliverable any more (webhook removed or disabled).
    Cancelled,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(raw: &str) -> StoreResult<Self> {
        Ok(match raw {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(StoreError::Corrupt {
                    what: "webhook_outbox.status",
                    reason: format!("unknown value {other:?}"),
                });
            }
        })
    }
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Also the `webhook-id` header: stable across retries so receivers can deduplicate.
    pub id: String,
    pub tenant_id: TenantId,
    pub event_type: String,
    pub dedupe_key: String,
    /// The exact JSON text that is sent (and signed).
    pub payload: String,
    pub status: OutboxStatus,
    /// Attempts started so far, including the one a fresh claim just began.
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// A message to put in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutboxMessage<'a> {
    pub tenant_id: &'a TenantId,
    pub event_type: &'a str,
    pub dedupe_key: &'a str,
    pub payload: &'a str,
}

macro_rules! settings_cols {
    () => {
        "tenant_id, url, secret_name, enabled, created_at, updated_at"
    };
}

macro_rules! outbox_cols {
    () => {
        "id, tenant_id, event_type, dedupe_key, payload, status, attempts, next_attempt_at, \
         last_error, created_at, delivered_at"
    };
}

fn settings_from_row(row: &AnyRow) -> StoreResult<WebhookSettings> {
    let enabled: i64 = row.try_get("enabled")?;
    Ok(WebhookSettings {
        tenant_id: tenant_id(row, "tenant_id")?,
        spec: WebhookSettingsSpec {
            url: row.try_get("url")?,
            secret_name: row.try_get("secret_name")?,
            enabled: enabled != 0,
        },
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn outbox_from_row(row: &AnyRow) -> StoreResult<OutboxMessage> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        event_type: row.try_get("event_type")?,
        dedupe_key: row.try_get("dedupe_key")?,
        payload: row.try_get("payload")?,
        status: OutboxStatus::parse(&status)?,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt {
            what: "webhook_outbox.attempts",
            reason: format!("{attempts} is out of range"),
        })?,
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: timestamp(row, "created_at")?,
        delivered_at: optional_timestamp(row, "delivered_at")?,
    })
}

fn settings_not_found(tenant: &TenantId) -> StoreError {
    StoreError::not_found(format!("webhook settings of tenant {tenant}"))
}

/// Puts a message in the outbox on `conn`, which may be a transaction that also writes the
/// event's source data (pass `&mut *tx`). Enqueues only when the tenant has an enabled webhook;
/// a second message with the same dedupe key is ignored. Returns whether a row was written.
pub async fn enqueue_outbox(
    conn: &mut AnyConnection,
    message: &NewOutboxMessage<'_>,
) -> StoreResult<bool> {
    let type_ok = !message.event_type.is_empty()
        && message.event_type.len() <= 64
        && message
            .event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
    if !type_ok {
        return Err(StoreError::invalid(
            "webhook event type",
            "must be 1 to 64 characters of a-z, '.' and '_'",
        ));
    }
    if message.dedupe_key.is_empty() || message.dedupe_key.len() > 256 {
        return Err(StoreError::invalid(
            "webhook dedupe key",
            "must be 1 to 256 bytes",
        ));
    }
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO webhook_outbox (id, tenant_id, event_type, dedupe_key, payload, status, \
         attempts, next_attempt_at, created_at) \
         SELECT $1, s.tenant_id, $3, $4, $5, 'pending', 0, $6, $6 FROM webhook_settings s \
         WHERE s.tenant_id = $2 AND s.enabled = 1 \
         ON CONFLICT (tenant_id, dedupe_key) DO NOTHING",
    )
    .bind(new_id("msg"))
    .bind(message.tenant_id.as_str())
    .bind(message.event_type)
    .bind(message.dedupe_key)
    .bind(message.payload)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

impl SqlStore {
    // --- settings --------------------------------------------------------------------------------

    /// Creates or replaces the tenant's webhook settings. The secret must be one of the tenant's
    /// secrets (else Conflict); a missing tenant is NotFound.
    pub async fn put_webhook_settings(
        &self,
        tenant: &TenantId,
        spec: &WebhookSettingsSpec,
    ) -> StoreResult<WebhookSettings> {
        validate_secret_name(&spec.secret_name)?;
        if spec.url.is_empty() || spec.url.len() > 2048 {
            return Err(StoreError::invalid(
                "webhook url",
                "must be 1 to 2048 characters",
            ));
        }
        let row = sqlx::query(concat!(
            "INSERT INTO webhook_settings (tenant_id, url, secret_name, enabled, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, \
             secret_name = excluded.secret_name, enabled = excluded.enabled, \
             updated_at = excluded.updated_at RETURNING ",
            settings_cols!()
        ))
        .bind(tenant.as_str())
        .bind(&spec.url)
        .bind(&spec.secret_name)
        .bind(i64::from(spec.enabled))
        .bind(now_ms())
        .fetch_one(self.pool())
        .await
        .map_err(|e| match classify(e) {
            WriteFailure::ForeignKey => StoreError::conflict(format!(
                "webhook: tenant {tenant} has no secret named {:?}",
                spec.secret_name
            )),
            WriteFailure::Unique => StoreError::conflict("webhook settings"),
            WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        settings_from_row(&row)
    }

    pub async fn webhook_settings(&self, tenant: &TenantId) -> StoreResult<WebhookSettings> {
        let row = sqlx::query(concat!(
            "SELECT ",
            settings_cols!(),
            " FROM webhook_settings WHERE tenant_id = $1"
        ))
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| settings_from_row(&r))
            .transpose()?
            .ok_or_else(|| settings_not_found(tenant))
    }

    pub async fn delete_webhook_settings(&self, tenant: &TenantId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM webhook_settings WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(settings_not_found(tenant));
        }
        Ok(())
    }

    // --- outbox ----------------------------------------------------------------------------------

    /// [`enqueue_outbox`] on a pooled connection of its own.
    pub async fn enqueue_webhook(&self, message: &NewOutboxMessage<'_>) -> StoreResult<bool> {
        let mut conn = self.pool().acquire().await?;
        enqueue_outbox(&mut conn, message).await
    }

    /// The tenant's most recent outbox rows, newest first.
    pub async fn list_outbox(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            outbox_cols!(),
            " FROM webhook_outbox WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        collect(rows, outbox_from_row)
    }

    /// Claims up to `limit` due rows for `worker` until `lease_until_ms`, counting an attempt on
    /// each. See the module docs for why this is safe with many workers.
    pub async fn claim_outbox(
        &self,
        worker: &str,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let now = now_ms();
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let sql = format!(
            "UPDATE webhook_outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending' \
             AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
             ORDER BY next_attempt_at, id LIMIT {limit}{lock}) RETURNING {cols}",
            cols = outbox_cols!()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease_until_ms)
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        let mut claimed = collect(rows, outbox_from_row)?;
        claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(claimed)
    }

    /// Records a 2xx. Returns false if `worker` no longer holds the lease (it expired and another
    /// worker took the row), in which case nothing changes.
    pub async fn mark_outbox_delivered(&self, id: &str, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhook_outbox SET status = 'delivered', delivered_at = $3, \
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
    pub async fn mark_outbox_failed(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> StoreResult<bool> {
        let (status, next) = match retry_at_ms {
            Some(at) => (OutboxStatus::Pending, Some(at)),
            None => (OutboxStatus::Failed, None),
        };
        let error: String = error.chars().take(500).collect();
        let done = sqlx::query(
            "UPDATE webhook_outbox SET status = $3, \
             next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(worker)
        .bind(status.as_str())
        .bind(next)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives up on a row that can no longer be delivered (its webhook was removed or disabled).
    pub async fn cancel_outbox(&self, id: &str, worker: &str, reason: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhook_outbox SET status = 'cancelled', last_error = $3, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(id)
        .bind(worker)
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes finished rows (delivered, failed, cancelled) created before `before_ms`, across
    /// tenants (retention is a deployment policy, not a tenant's). Pending rows are never
    /// deleted. Returns how many rows went.
    pub async fn purge_outbox(&self, before_ms: i64) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM webhook_outbox WHERE status <> 'pending' AND created_at < $1")
                .bind(before_ms)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }

    // --- cross-tenant lookups for the operator CLI -------------------------------------------------

    /// Which tenant owns a call. Takes no tenant id by design: the operator CLI (`calls show ID`)
    /// has full access and knows only the call id; callers then read through the tenant-scoped
    /// [`crate::store::Store::call`].
    pub async fn call_tenant(&self, call_id: &str) -> StoreResult<TenantId> {
        let row = sqlx::query("SELECT tenant_id FROM calls WHERE id = $1")
            .bind(call_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => tenant_id(&row, "tenant_id"),
            None => Err(StoreError::not_found(format!("call {call_id}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_status_round_trips() {
        for s in [
            OutboxStatus::Pending,
            OutboxStatus::Delivered,
            OutboxStatus::Failed,
            OutboxStatus::Cancelled,
        ] {
            assert_eq!(OutboxStatus::parse(s.as_str()).ok(), Some(s));
        }
        assert!(OutboxStatus::parse("sent").is_err());
    }
}

//! Rows of inbound webhooks: a tenant's sources, the durable inbox of verified events (stored
//! before the vendor is answered, deduplicated by the vendor's event id, processed under a lease),
//! the rules that turn events into actions, and the record of each action with its event; plus the
//! two campaign writes rules need (enrol one contact, cancel a number's pending calls).
//!
//! It must not verify signatures, read the clock for decisions or decide what a rule does (that is
//! [`crate::inbound`]); it stores and moves rows. Every method that takes a [`TenantId`] filters by
//! it; the worker's claim takes none because it serves every tenant.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::{validate_slug, validate_text};
use super::sql::{collect, new_id, now_ms, tenant_id, timestamp};
use super::{Backend, E164, SqlStore, StoreError, StoreResult, TenantId};

/// Largest stored event payload, in bytes (the HTTP route refuses bigger bodies first).
pub const MAX_INBOUND_PAYLOAD: usize = 256 * 1024;

/// Checks a source id (a slug: it is a URL segment and part of its secrets' names).
pub fn validate_source_id(id: &str) -> StoreResult<()> {
    validate_slug("source id", id, 64)
}

/// A place a tenant's vendor posts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundSource {
    pub tenant_id: TenantId,
    pub id: String,
    pub kind: String,
    /// The vault secret holding the signing secret (`None`: Twilio, verified with the auth token).
    pub secret_name: Option<String>,
    /// The vault secret holding WhatsApp's verify token.
    pub verify_name: Option<String>,
    pub created_at: Timestamp,
}

/// Where an inbox row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundStatus {
    Pending,
    Processing,
    Done,
    Failed,
}

impl InboundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A verified event to store.
#[derive(Clone, Debug)]
pub struct NewInboundEvent<'a> {
    pub tenant: &'a TenantId,
    pub source_id: &'a str,
    pub vendor_event_id: &'a str,
    pub event_type: &'a str,
    pub verified_by: &'a str,
    /// JSON text.
    pub payload: &'a str,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundEvent {
    pub id: String,
    pub tenant_id: TenantId,
    pub source_id: String,
    pub vendor_event_id: String,
    pub event_type: String,
    pub verified_by: String,
    pub payload: String,
    pub received_at: Timestamp,
    /// How many times the vendor delivered it (retries land here).
    pub deliveries: u32,
    pub status: InboundStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub processed_at: Option<Timestamp>,
}

/// A stored rule (filter and action as the JSON the inbound service reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundRule {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub source_id: String,
    pub event_type: String,
    pub filter: String,
    pub action: String,
    pub created_at: Timestamp,
}

/// What a rule did for an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundAction {
    pub event_id: String,
    pub rule_id: String,
    pub action: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub created_at: Timestamp,
}

/// The result of enrolling one contact in a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enrolment {
    /// A new contact, due now.
    Enrolled { seq: i64 },
    /// The number had finished in this campaign: pending again, due now.
    Requeued { seq: i64 },
    /// The number is already waiting or being called in this campaign.
    AlreadyQueued { seq: i64 },
    /// The campaign was cancelled: nobody is added.
    Cancelled,
}

macro_rules! event_cols {
    () => {
        "id, tenant_id, source_id, vendor_event_id, event_type, verified_by, payload, \
         received_at, deliveries, status, attempts, next_attempt_at, last_error, processed_at"
    };
}

fn corrupt(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.into(),
    }
}

fn count(row: &AnyRow, column: &'static str) -> StoreResult<u32> {
    let raw: i64 = row.try_get(column)?;
    u32::try_from(raw).map_err(|_| corrupt(column, format!("{raw} is out of range")))
}

fn source_from_row(row: &AnyRow) -> StoreResult<InboundSource> {
    Ok(InboundSource {
        tenant_id: tenant_id(row, "tenant_id")?,
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        secret_name: row.try_get("secret_name")?,
        verify_name: row.try_get("verify_name")?,
        created_at: timestamp(row, "created_at")?,
    })
}

fn event_from_row(row: &AnyRow) -> StoreResult<InboundEvent> {
    let status: String = row.try_get("status")?;
    let processed: Option<i64> = row.try_get("processed_at")?;
    Ok(InboundEvent {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        source_id: row.try_get("source_id")?,
        vendor_event_id: row.try_get("vendor_event_id")?,
        event_type: row.try_get("event_type")?,
        verified_by: row.try_get("verified_by")?,
        payload: row.try_get("payload")?,
        received_at: timestamp(row, "received_at")?,
        deliveries: count(row, "deliveries")?,
        status: InboundStatus::parse(&status)
            .ok_or_else(|| corrupt("inbound_events.status", format!("unknown {status:?}")))?,
        attempts: count(row, "attempts")?,
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        processed_at: processed
            .map(Timestamp::from_millisecond)
            .transpose()
            .map_err(|e| corrupt("inbound_events.processed_at", e.to_string()))?,
    })
}

fn rule_from_row(row: &AnyRow) -> StoreResult<InboundRule> {
    Ok(InboundRule {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        name: row.try_get("name")?,
        source_id: row.try_get("source_id")?,
        event_type: row.try_get("event_type")?,
        filter: row.try_get("filter")?,
        action: row.try_get("action")?,
        created_at: timestamp(row, "created_at")?,
    })
}

fn action_from_row(row: &AnyRow) -> StoreResult<InboundAction> {
    Ok(InboundAction {
        event_id: row.try_get("event_id")?,
        rule_id: row.try_get("rule_id")?,
        action: row.try_get("action")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        created_at: timestamp(row, "created_at")?,
    })
}

fn write_error(tenant: &TenantId, what: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    let (tenant, what) = (tenant.clone(), what.to_owned());
    move |e| match classify(e) {
        WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
        WriteFailure::Unique => StoreError::conflict(what),
        WriteFailure::Other(e) => StoreError::Database(e),
    }
}

impl SqlStore {
    // --- sources ---------------------------------------------------------------------------------

    pub async fn create_inbound_source(
        &self,
        tenant: &TenantId,
        id: &str,
        kind: &str,
        secret_name: Option<&str>,
        verify_name: Option<&str>,
    ) -> StoreResult<InboundSource> {
        validate_slug("source id", id, 64)?;
        validate_slug("source kind", kind, 32)?;
        let row = sqlx::query(
            "INSERT INTO inbound_sources (tenant_id, id, kind, secret_name, verify_name, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING tenant_id, id, kind, secret_name, verify_name, created_at",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(kind)
        .bind(secret_name)
        .bind(verify_name)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await
        .map_err(write_error(tenant, &format!("source {id:?} exists")))?;
        source_from_row(&row)
    }

    pub async fn inbound_source(&self, tenant: &TenantId, id: &str) -> StoreResult<InboundSource> {
        let row = sqlx::query(
            "SELECT tenant_id, id, kind, secret_name, verify_name, created_at \
             FROM inbound_sources WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found(format!("source {id:?}")))?;
        source_from_row(&row)
    }

    pub async fn list_inbound_sources(&self, tenant: &TenantId) -> StoreResult<Vec<InboundSource>> {
        let rows = sqlx::query(
            "SELECT tenant_id, id, kind, secret_name, verify_name, created_at \
             FROM inbound_sources WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        collect(rows, source_from_row)
    }

    /// Deletes a source (its events and rules stay for the record). False when absent.
    pub async fn delete_inbound_source(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM inbound_sources WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- the inbox -------------------------------------------------------------------------------

    /// Stores a verified event, due now; a second delivery of the same vendor event id only
    /// counts the delivery. Returns the row and whether it is new.
    pub async fn store_inbound_event(
        &self,
        event: &NewInboundEvent<'_>,
        now_ms: i64,
    ) -> StoreResult<(InboundEvent, bool)> {
        validate_text("vendor event id", event.vendor_event_id, 300)?;
        validate_text("event type", event.event_type, 200)?;
        if event.payload.len() > MAX_INBOUND_PAYLOAD {
            return Err(StoreError::invalid(
                "event payload",
                format!("at most {MAX_INBOUND_PAYLOAD} bytes"),
            ));
        }
        let now = now_ms;
        let inserted = sqlx::query(concat!(
            "INSERT INTO inbound_events (id, tenant_id, source_id, vendor_event_id, event_type, \
             verified_by, payload, received_at, deliveries, status, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 'pending', 0, $8) \
             ON CONFLICT (tenant_id, source_id, vendor_event_id) DO NOTHING RETURNING ",
            event_cols!()
        ))
        .bind(new_id("evt"))
        .bind(event.tenant.as_str())
        .bind(event.source_id)
        .bind(event.vendor_event_id)
        .bind(event.event_type)
        .bind(event.verified_by)
        .bind(event.payload)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .map_err(write_error(event.tenant, "inbound event"))?;
        if let Some(row) = inserted {
            return Ok((event_from_row(&row)?, true));
        }
        let row = sqlx::query(concat!(
            "UPDATE inbound_events SET deliveries = deliveries + 1 WHERE tenant_id = $1 \
             AND source_id = $2 AND vendor_event_id = $3 RETURNING ",
            event_cols!()
        ))
        .bind(event.tenant.as_str())
        .bind(event.source_id)
        .bind(event.vendor_event_id)
        .fetch_one(self.pool())
        .await?;
        Ok((event_from_row(&row)?, false))
    }

    /// Leases up to `limit` events that are due (pending at or before `now_ms`, or processing
    /// under a lease that ran out: its node died) to `node` until `now_ms + lease_ms`, counting an
    /// attempt on each. Safe with many nodes: on PostgreSQL the rows are skipped when locked, on
    /// SQLite the statement is one write transaction.
    pub async fn claim_inbound_events(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboundEvent>> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let sql = format!(
            "UPDATE inbound_events SET status = 'processing', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 WHERE id IN (SELECT id FROM inbound_events WHERE \
             (status = 'pending' AND next_attempt_at <= $3) OR \
             (status = 'processing' AND lease_until <= $3) \
             ORDER BY next_attempt_at, id LIMIT {limit}{lock}) RETURNING {cols}",
            cols = event_cols!()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .fetch_all(self.pool())
            .await?;
        let mut events = collect(rows, event_from_row)?;
        events.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(events)
    }

    /// Ends a processing attempt held by `node`: done (`retry_at_ms` `None`, no error), retried at
    /// `retry_at_ms`, or failed (error, no retry). False when `node` lost the lease.
    pub async fn finish_inbound_event(
        &self,
        id: &str,
        node: &str,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let status = match (error, retry_at_ms) {
            (None, _) => InboundStatus::Done,
            (Some(_), Some(_)) => InboundStatus::Pending,
            (Some(_), None) => InboundStatus::Failed,
        };
        let error: Option<String> = error.map(|e| e.chars().take(500).collect());
        let done = sqlx::query(
            "UPDATE inbound_events SET status = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
             last_error = $5, processed_at = $6, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
        )
        .bind(id)
        .bind(node)
        .bind(status.as_str())
        .bind(retry_at_ms)
        .bind(error)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tenant's most recent events, newest first.
    pub async fn list_inbound_events(
        &self,
        tenant: &TenantId,
        source_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<InboundEvent>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            " FROM inbound_events WHERE tenant_id = $1 AND ($2 IS NULL OR source_id = $2) \
             ORDER BY received_at DESC, id LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(source_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        collect(rows, event_from_row)
    }

    pub async fn inbound_event(&self, tenant: &TenantId, id: &str) -> StoreResult<InboundEvent> {
        let row = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            " FROM inbound_events WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::not_found(format!("event {id:?}")))?;
        event_from_row(&row)
    }

    /// Puts a failed (or done) event back in the inbox, due now, with a fresh attempt budget.
    /// Pending or processing events → Conflict.
    pub async fn replay_inbound_event(
        &self,
        tenant: &TenantId,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<InboundEvent> {
        let row = sqlx::query(concat!(
            "UPDATE inbound_events SET status = 'pending', attempts = 0, next_attempt_at = $3, \
             last_error = NULL, processed_at = NULL WHERE tenant_id = $1 AND id = $2 \
             AND status IN ('failed', 'done') RETURNING ",
            event_cols!()
        ))
        .bind(tenant.as_str())
        .bind(id)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => event_from_row(&row),
            None => {
                let current = self.inbound_event(tenant, id).await?;
                Err(StoreError::conflict(format!(
                    "event {id:?} is {}; only failed or done events are replayed",
                    current.status.as_str()
                )))
            }
        }
    }

    // --- rules -----------------------------------------------------------------------------------

    pub async fn create_inbound_rule(
        &self,
        tenant: &TenantId,
        name: &str,
        source_id: &str,
        event_type: &str,
        filter: &str,
        action: &str,
    ) -> StoreResult<InboundRule> {
        validate_text("rule name", name, 100)?;
        validate_slug("source id", source_id, 64)?;
        validate_text("event type", event_type, 200)?;
        validate_text("rule filter", filter, 8 * 1024)?;
        validate_text("rule action", action, 8 * 1024)?;
        let row = sqlx::query(
            "INSERT INTO inbound_rules (id, tenant_id, name, source_id, event_type, filter, \
             action, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING id, tenant_id, name, source_id, event_type, filter, action, created_at",
        )
        .bind(new_id("rul"))
        .bind(tenant.as_str())
        .bind(name)
        .bind(source_id)
        .bind(event_type)
        .bind(filter)
        .bind(action)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await
        .map_err(write_error(tenant, &format!("rule {name:?} exists")))?;
        rule_from_row(&row)
    }

    /// The tenant's rules, or those of one source and event type (the match at processing time).
    pub async fn list_inbound_rules(
        &self,
        tenant: &TenantId,
        matching: Option<(&str, &str)>,
    ) -> StoreResult<Vec<InboundRule>> {
        let (source, event_type) = matching.unzip();
        let rows = sqlx::query(
            "SELECT id, tenant_id, name, source_id, event_type, filter, action, created_at \
             FROM inbound_rules WHERE tenant_id = $1 AND ($2 IS NULL OR source_id = $2) \
             AND ($3 IS NULL OR event_type = $3 OR event_type = '*') ORDER BY created_at, id",
        )
        .bind(tenant.as_str())
        .bind(source)
        .bind(event_type)
        .fetch_all(self.pool())
        .await?;
        collect(rows, rule_from_row)
    }

    pub async fn delete_inbound_rule(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM inbound_rules WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- actions ---------------------------------------------------------------------------------

    /// Records what `rule_id` did for `event_id` (the first record stays). False when it was
    /// already recorded.
    pub async fn record_inbound_action(
        &self,
        tenant: &TenantId,
        event_id: &str,
        rule_id: &str,
        action: &str,
        outcome: &str,
        detail: Option<&str>,
    ) -> StoreResult<bool> {
        let detail: Option<String> = detail.map(|d| d.chars().take(500).collect());
        let done = sqlx::query(
            "INSERT INTO inbound_actions (event_id, rule_id, tenant_id, action, outcome, detail, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (event_id, rule_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(rule_id)
        .bind(tenant.as_str())
        .bind(action)
        .bind(outcome)
        .bind(detail)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(write_error(tenant, "inbound action"))?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn inbound_actions(
        &self,
        tenant: &TenantId,
        event_id: &str,
    ) -> StoreResult<Vec<InboundAction>> {
        let rows = sqlx::query(
            "SELECT event_id, rule_id, action, outcome, detail, created_at FROM inbound_actions \
             WHERE tenant_id = $1 AND event_id = $2 ORDER BY created_at, rule_id",
        )
        .bind(tenant.as_str())
        .bind(event_id)
        .fetch_all(self.pool())
        .await?;
        collect(rows, action_from_row)
    }

    // --- campaign writes for rules ---------------------------------------------------------------

    /// Adds `number` to the tenant's campaign, due at `now_ms` (the dispatcher then applies the
    /// calling window, do-not-call and the dial limits). A completed campaign becomes active
    /// again; a number that finished in it is queued again; a cancelled campaign takes nobody.
    pub async fn enrol_campaign_contact(
        &self,
        tenant: &TenantId,
        campaign_id: &str,
        number: &E164,
        zones: &[String],
        variables: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> StoreResult<Enrolment> {
        let variables = serde_json::to_string(variables)
            .map_err(|e| StoreError::invalid("contact variables", e.to_string()))?;
        validate_text("contact variables", &variables, 16 * 1024)?;
        let mut tx = self.pool().begin().await?;
        // The campaign row first: concurrent enrolments (and claims) queue on it.
        let status = sqlx::query(
            "UPDATE campaigns SET next_dial_at = next_dial_at WHERE tenant_id = $1 AND id = $2 \
             RETURNING status",
        )
        .bind(tenant.as_str())
        .bind(campaign_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("campaign {campaign_id}")))?;
        let status: String = status.try_get("status")?;
        if status == "cancelled" {
            return Ok(Enrolment::Cancelled);
        }
        if status == "completed" {
            sqlx::query("UPDATE campaigns SET status = 'active', updated_at = $2 WHERE id = $1")
                .bind(campaign_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        let existing = sqlx::query(
            "SELECT seq, state FROM campaign_contacts WHERE campaign_id = $1 AND e164 = $2",
        )
        .bind(campaign_id)
        .bind(number.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match existing {
            Some(row) => {
                let seq: i64 = row.try_get("seq")?;
                let state: String = row.try_get("state")?;
                if state != "done" {
                    Enrolment::AlreadyQueued { seq }
                } else {
                    sqlx::query(
                        "UPDATE campaign_contacts SET state = 'pending', outcome = NULL, \
                         attempts = 0, next_attempt_at = $3, zones = $4, variables = $5, \
                         call_id = NULL, last_status = NULL, last_error = NULL, updated_at = $3 \
                         WHERE campaign_id = $1 AND seq = $2",
                    )
                    .bind(campaign_id)
                    .bind(seq)
                    .bind(now_ms)
                    .bind(zones.join(" "))
                    .bind(&variables)
                    .execute(&mut *tx)
                    .await?;
                    Enrolment::Requeued { seq }
                }
            }
            None => {
                let row = sqlx::query(
                    "SELECT COALESCE(MAX(seq), -1) + 1 AS next FROM campaign_contacts \
                     WHERE campaign_id = $1",
                )
                .bind(campaign_id)
                .fetch_one(&mut *tx)
                .await?;
                let seq: i64 = row.try_get("next")?;
                sqlx::query(
                    "INSERT INTO campaign_contacts (campaign_id, seq, tenant_id, line, e164, \
                     zones, variables, state, attempts, next_attempt_at, updated_at) \
                     VALUES ($1, $2, $3, 0, $4, $5, $6, 'pending', 0, $7, $7)",
                )
                .bind(campaign_id)
                .bind(seq)
                .bind(tenant.as_str())
                .bind(number.as_str())
                .bind(zones.join(" "))
                .bind(&variables)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                Enrolment::Enrolled { seq }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Finishes every pending contact of the tenant with `number` (in any campaign) with
    /// `outcome`; returns how many. Calls already dialling are left to end.
    pub async fn cancel_pending_contacts(
        &self,
        tenant: &TenantId,
        number: &E164,
        outcome: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        validate_text("contact outcome", outcome, 64)?;
        let done = sqlx::query(
            "UPDATE campaign_contacts SET state = 'done', outcome = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND e164 = $2 AND state = 'pending'",
        )
        .bind(tenant.as_str())
        .bind(number.as_str())
        .bind(outcome)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

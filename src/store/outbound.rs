//! Rows of outbound calling: the per-call record of what an outbound call was placed with
//! (prompt variables, AMD handling and outcome), the tenant's do-not-call list, and the status
//! transitions Twilio's callbacks drive.
//!
//! It must not talk to Twilio or decide policy (that is [`crate::campaign`]); it stores and moves
//! rows. Methods are inherent on [`SqlStore`] like the outbox: only outbound code uses them.

use std::collections::BTreeMap;

use sqlx::Row;

use super::model::{MachineAction, validate_text};
use super::sql::{call_from_row, now_ms};
use super::{Call, CallStatus, E164, SqlStore, StoreError, StoreResult, TenantId};

const CALL_COLUMNS: &str = "id, tenant_id, agent_id, direction, from_number, to_number, \
     twilio_call_sid, started_at, ended_at, status, end_reason, recording_path";

/// The outbound details of a call record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundCall {
    pub call: Call,
    pub variables: BTreeMap<String, String>,
    /// `None` when AMD is off for this call.
    pub machine_action: Option<MachineAction>,
    pub voicemail_text: Option<String>,
    pub answered_by: Option<String>,
    pub amd_outcome: Option<String>,
}

/// An entry of a tenant's do-not-call list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoNotCallEntry {
    pub e164: E164,
    pub reason: String,
    pub created_at: jiff::Timestamp,
}

/// Whether a status may replace another: final statuses never move, and a callback that arrives
/// late (ringing after in-progress) never moves a call backwards.
pub fn status_rank(status: CallStatus) -> u8 {
    match status {
        CallStatus::Queued => 0,
        CallStatus::Ringing => 1,
        CallStatus::InProgress => 2,
        CallStatus::Completed
        | CallStatus::Busy
        | CallStatus::NoAnswer
        | CallStatus::Failed
        | CallStatus::Canceled => 3,
    }
}

/// Whether a call in `status` is over.
pub fn is_final(status: CallStatus) -> bool {
    status_rank(status) == 3
}

/// [`SqlStore::put_outbound_call`] on `conn`, which may be a transaction (campaign claims).
pub(super) async fn insert_outbound_call(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    call_id: &str,
    variables: &BTreeMap<String, String>,
    machine_action: Option<MachineAction>,
    voicemail_text: Option<&str>,
) -> StoreResult<()> {
    if let Some(text) = voicemail_text {
        validate_text("voicemail text", text, 2000)?;
    }
    let json = serde_json::to_string(variables).map_err(|e| StoreError::Invalid {
        field: "call variables",
        reason: e.to_string(),
    })?;
    validate_text("call variables", &json, 16 * 1024)?;
    sqlx::query(
        "INSERT INTO outbound_calls (call_id, tenant_id, variables, machine_action, \
         voicemail_text, created_at) SELECT c.id, c.tenant_id, $3, $4, $5, $6 FROM calls c \
         WHERE c.tenant_id = $1 AND c.id = $2",
    )
    .bind(tenant.as_str())
    .bind(call_id)
    .bind(json)
    .bind(machine_action.map(MachineAction::as_str))
    .bind(voicemail_text)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqlStore {
    /// Records the outbound details of a freshly created call record.
    pub async fn put_outbound_call(
        &self,
        tenant: &TenantId,
        call_id: &str,
        variables: &BTreeMap<String, String>,
        machine_action: Option<MachineAction>,
        voicemail_text: Option<&str>,
    ) -> StoreResult<()> {
        let mut conn = self.pool().acquire().await?;
        insert_outbound_call(
            &mut conn,
            tenant,
            call_id,
            variables,
            machine_action,
            voicemail_text,
        )
        .await
    }

    /// The outbound call behind a call record id. Takes no tenant id because the id comes from a
    /// reference we signed into Twilio's webhook URL: the signature, not the caller, vouches for it.
    pub async fn outbound_call(&self, call_id: &str) -> StoreResult<OutboundCall> {
        let query = format!(
            "SELECT c.{}, o.variables, o.machine_action, o.voicemail_text, o.answered_by, o.amd_outcome \
             FROM calls c JOIN outbound_calls o ON o.call_id = c.id WHERE c.id = $1",
            CALL_COLUMNS.replace(", ", ", c.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(call_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found(format!("outbound call {call_id}")))?;
        let variables: String = row.try_get("variables")?;
        let variables = serde_json::from_str(&variables).map_err(|e| StoreError::Corrupt {
            what: "outbound_calls.variables",
            reason: e.to_string(),
        })?;
        let machine_action: Option<String> = row.try_get("machine_action")?;
        Ok(OutboundCall {
            call: call_from_row(&row)?,
            variables,
            machine_action: machine_action.as_deref().and_then(MachineAction::parse),
            voicemail_text: row.try_get("voicemail_text")?,
            answered_by: row.try_get("answered_by")?,
            amd_outcome: row.try_get("amd_outcome")?,
        })
    }

    /// Attaches Twilio's call SID to a call record that has none yet (idempotent).
    pub async fn attach_call_sid(&self, call_id: &str, call_sid: &str) -> StoreResult<()> {
        validate_text("Twilio call SID", call_sid, 64)?;
        sqlx::query(
            "UPDATE calls SET twilio_call_sid = $2 WHERE id = $1 AND twilio_call_sid IS NULL",
        )
        .bind(call_id)
        .bind(call_sid)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Applies a status from a Twilio callback: moves the call forward only (see [`status_rank`]);
    /// a final status also stamps the end time. Returns the call as stored afterwards and whether
    /// this callback changed it.
    pub async fn advance_call_status(
        &self,
        call_id: &str,
        status: CallStatus,
    ) -> StoreResult<(Call, bool)> {
        let current = self.outbound_call(call_id).await?.call;
        let rank = status_rank(status);
        if rank <= status_rank(current.status) {
            return Ok((current, false));
        }
        // The WHERE re-checks the rank so two concurrent callbacks cannot move it backwards.
        let ranks_below: &[&str] = match rank {
            1 => &["queued"],
            2 => &["queued", "ringing"],
            _ => &["queued", "ringing", "in-progress"],
        };
        let placeholders: Vec<String> = (0..ranks_below.len())
            .map(|i| format!("${}", i + 4))
            .collect();
        let sql = format!(
            "UPDATE calls SET status = $2, ended_at = COALESCE(ended_at, $3) \
             WHERE id = $1 AND status IN ({}) RETURNING {CALL_COLUMNS}",
            placeholders.join(", ")
        );
        let ended_at = is_final(status).then(now_ms);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(call_id)
            .bind(status.as_str())
            .bind(ended_at);
        for s in ranks_below {
            query = query.bind(*s);
        }
        let row = query.fetch_optional(self.pool()).await?;
        match row {
            Some(row) => Ok((call_from_row(&row)?, true)),
            None => Ok((self.outbound_call(call_id).await?.call, false)),
        }
    }

    /// Records how AMD classified the answer and what was done.
    pub async fn record_amd(
        &self,
        call_id: &str,
        answered_by: &str,
        outcome: &str,
    ) -> StoreResult<()> {
        validate_text("AnsweredBy", answered_by, 64)?;
        validate_text("AMD outcome", outcome, 64)?;
        sqlx::query(
            "UPDATE outbound_calls SET answered_by = $2, amd_outcome = $3 WHERE call_id = $1",
        )
        .bind(call_id)
        .bind(answered_by)
        .bind(outcome)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    // --- do-not-call ------------------------------------------------------------------------------

    /// Puts a number on the tenant's do-not-call list (idempotent: the first reason stays).
    pub async fn add_do_not_call(
        &self,
        tenant: &TenantId,
        number: &E164,
        reason: &str,
    ) -> StoreResult<()> {
        validate_text("do-not-call reason", reason, 200)?;
        sqlx::query(
            "INSERT INTO do_not_call (tenant_id, e164, reason, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, e164) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(number.as_str())
        .bind(reason)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| match super::error::classify(e) {
            super::error::WriteFailure::ForeignKey => {
                StoreError::not_found(format!("tenant {tenant}"))
            }
            super::error::WriteFailure::Unique => StoreError::conflict("do-not-call entry"),
            super::error::WriteFailure::Other(e) => StoreError::Database(e),
        })?;
        Ok(())
    }

    pub async fn is_do_not_call(&self, tenant: &TenantId, number: &E164) -> StoreResult<bool> {
        let row =
            sqlx::query("SELECT 1 AS hit FROM do_not_call WHERE tenant_id = $1 AND e164 = $2")
                .bind(tenant.as_str())
                .bind(number.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    pub async fn remove_do_not_call(&self, tenant: &TenantId, number: &E164) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM do_not_call WHERE tenant_id = $1 AND e164 = $2")
            .bind(tenant.as_str())
            .bind(number.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_do_not_call(&self, tenant: &TenantId) -> StoreResult<Vec<DoNotCallEntry>> {
        let rows = sqlx::query(
            "SELECT e164, reason, created_at FROM do_not_call WHERE tenant_id = $1 ORDER BY e164",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let e164: String = row.try_get("e164")?;
                Ok(DoNotCallEntry {
                    e164: E164::parse(&e164)?,
                    reason: row.try_get("reason")?,
                    created_at: super::sql::timestamp(row, "created_at")?,
                })
            })
            .collect()
    }
}

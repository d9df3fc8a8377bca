//! Rows of the post-call export queue (migration 0023): one job per finished call and tenant
//! connector, claimed under a lease so one node runs it at a time, retried until done.
//!
//! A call with a recording pins its jobs to the node that recorded it (migration 0025): only that
//! node claims them while its heartbeat is fresh, so the recording file is on the disk of the node
//! that uploads it.
//!
//! It must not build connectors or decide backoff: the export worker (`exports.rs`) does, and
//! passes times as Unix milliseconds from its clock. Every write but the claim names the tenant.

use sqlx::Row;

use super::{SqlStore, StoreResult, TenantId};

/// A claimed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallExportJob {
    pub tenant_id: TenantId,
    pub call_id: String,
    pub vendor: String,
    /// Attempts before this one.
    pub attempts: i64,
}

/// How a job's attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportOutcome {
    Done,
    /// The connector exports nothing for calls.
    Skipped,
    /// Try again at `next_at` (Unix ms), after `error`.
    Retry {
        next_at: i64,
        error: String,
    },
    /// Give up, after `error`.
    Failed {
        error: String,
    },
}

/// A job's state, for tests and the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallExportState {
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
}

impl SqlStore {
    /// Queues the export of `call_id` to `vendor`, run on `node` when set (the node holding the
    /// call's recording); false when it was already queued.
    pub async fn enqueue_call_export(
        &self,
        tenant: &TenantId,
        call_id: &str,
        vendor: &str,
        node: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO call_exports (tenant_id, call_id, vendor, status, attempts, next_at, \
             lease_owner, lease_until, last_error, created_at, updated_at, node_id) \
             VALUES ($1, $2, $3, 'pending', 0, $4, NULL, NULL, NULL, $4, $4, $5) \
             ON CONFLICT (tenant_id, call_id, vendor) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(vendor)
        .bind(now_ms)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` due jobs for `owner`, running on `node`, until `lease_until`: pending,
    /// due, not under another live lease, and not pinned to another node whose heartbeat is newer
    /// than `alive_after_ms`. Each claim is one conditional UPDATE, so two nodes never share a job.
    pub async fn claim_call_exports(
        &self,
        owner: &str,
        node: &str,
        alive_after_ms: i64,
        now_ms: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<CallExportJob>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let due = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT tenant_id, call_id, vendor FROM call_exports e \
             WHERE status = 'pending' AND next_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) \
             AND (e.node_id IS NULL OR e.node_id = $2 OR NOT EXISTS ( \
                 SELECT 1 FROM bridge_nodes n WHERE n.node_id = e.node_id AND n.heartbeat_at > $3)) \
             ORDER BY next_at LIMIT {}",
            limit.max(0)
        )))
        .bind(now_ms)
        .bind(node)
        .bind(alive_after_ms)
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::new();
        for row in due {
            let tenant: String = row.try_get("tenant_id")?;
            let call_id: String = row.try_get("call_id")?;
            let vendor: String = row.try_get("vendor")?;
            let won = sqlx::query(
                "UPDATE call_exports SET lease_owner = $4, lease_until = $5, updated_at = $6 \
                 WHERE tenant_id = $1 AND call_id = $2 AND vendor = $3 AND status = 'pending' \
                 AND (lease_until IS NULL OR lease_until <= $6) \
                 RETURNING attempts",
            )
            .bind(&tenant)
            .bind(&call_id)
            .bind(&vendor)
            .bind(owner)
            .bind(lease_until)
            .bind(now_ms)
            .fetch_optional(self.pool())
            .await?;
            if let Some(won) = won {
                claimed.push(CallExportJob {
                    tenant_id: TenantId::parse(&tenant)?,
                    call_id,
                    vendor,
                    attempts: won.try_get("attempts")?,
                });
            }
        }
        Ok(claimed)
    }

    /// Records the attempt's outcome, if `owner` still holds the job; false when it did not.
    pub async fn finish_call_export(
        &self,
        job: &CallExportJob,
        owner: &str,
        outcome: &ExportOutcome,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (status, next_at, error) = match outcome {
            ExportOutcome::Done => ("done", None, None),
            ExportOutcome::Skipped => ("skipped", None, None),
            ExportOutcome::Retry { next_at, error } => {
                ("pending", Some(*next_at), Some(error.as_str()))
            }
            ExportOutcome::Failed { error } => ("failed", None, Some(error.as_str())),
        };
        let done = sqlx::query(
            "UPDATE call_exports SET status = $5, attempts = attempts + 1, \
             next_at = COALESCE($6, next_at), last_error = $7, lease_owner = NULL, \
             lease_until = NULL, updated_at = $8 \
             WHERE tenant_id = $1 AND call_id = $2 AND vendor = $3 AND lease_owner = $4",
        )
        .bind(job.tenant_id.as_str())
        .bind(&job.call_id)
        .bind(&job.vendor)
        .bind(owner)
        .bind(status)
        .bind(next_at)
        .bind(error)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The job of `call_id` to `vendor`, if queued.
    pub async fn call_export(
        &self,
        tenant: &TenantId,
        call_id: &str,
        vendor: &str,
    ) -> StoreResult<Option<CallExportState>> {
        let row = sqlx::query(
            "SELECT status, attempts, next_at, last_error FROM call_exports \
             WHERE tenant_id = $1 AND call_id = $2 AND vendor = $3",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(vendor)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(CallExportState {
                status: row.try_get("status")?,
                attempts: row.try_get("attempts")?,
                next_at: row.try_get("next_at")?,
                last_error: row.try_get("last_error")?,
            })
        })
        .transpose()
    }
}

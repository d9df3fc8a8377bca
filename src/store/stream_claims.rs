//! Stream claims: which Twilio calls already opened their media stream, so a stream token is used
//! once, on one node, for one socket; and the bridge nodes' heartbeats, so the calls a crashed
//! node was carrying can be found and settled (crash recovery, [`crate::call::recovery`]).
//!
//! It must not check tokens or signatures (that is [`crate::twilio::token`]), know about sockets
//! or ask Twilio anything. Claim methods take no [`super::TenantId`]: a call SID is global at
//! Twilio, and the claim must hold whichever tenant a forged or replayed start names. Recovery
//! reads across tenants by design (it is the operator's housekeeping); it writes each call with
//! its own tenant id.

use super::model::validate_text;
use super::sql::{call_from_row, now_ms};
use super::{Call, CallStatus, SqlStore, StoreResult, TenantId};

const CALL_COLUMNS: &str = "c.id, c.tenant_id, c.agent_id, c.direction, c.from_number, \
     c.to_number, c.twilio_call_sid, c.started_at, c.ended_at, c.status, c.end_reason, \
     c.recording_path";

/// The end reason of a call settled by crash recovery.
pub const BRIDGE_RESTART: &str = "bridge_restart";

impl SqlStore {
    /// Claims the media stream of `call_sid` for the socket asking. `true` for the first caller,
    /// `false` when the call already streamed (a replayed token, a second socket, an ended call).
    /// Atomic in the database, so it holds across nodes.
    /// `node` is the claiming bridge node (crash recovery finds its calls by it).
    pub async fn claim_stream(
        &self,
        call_sid: &str,
        tenant: &str,
        node: &str,
    ) -> StoreResult<bool> {
        validate_text("Twilio call SID", call_sid, 64)?;
        let done = sqlx::query(
            "INSERT INTO stream_claims (call_sid, tenant_id, node_id, claimed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (call_sid) DO NOTHING",
        )
        .bind(call_sid)
        .bind(tenant)
        .bind(node)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether `call_sid` already opened its media stream.
    pub async fn stream_claimed(&self, call_sid: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM stream_claims WHERE call_sid = $1")
            .bind(call_sid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Records that `node` (started at `started_at_ms`) is alive now.
    pub async fn node_heartbeat(&self, node: &str, started_at_ms: i64) -> StoreResult<()> {
        validate_text("node id", node, 128)?;
        sqlx::query(
            "INSERT INTO bridge_nodes (node_id, started_at, heartbeat_at) VALUES ($1, $2, $3) \
             ON CONFLICT (node_id) DO UPDATE SET started_at = $2, heartbeat_at = $3",
        )
        .bind(node)
        .bind(started_at_ms)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Calls still `in-progress` whose stream was carried by a node that is gone: `me` itself
    /// before it (re)started at `me_started_ms` (a restart under the same node id), or another
    /// node with no heartbeat since `stale_before_ms`. Across tenants (see the module docs).
    pub async fn orphaned_calls(
        &self,
        me: &str,
        me_started_ms: i64,
        stale_before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Call>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls c \
             JOIN stream_claims s ON s.call_sid = c.twilio_call_sid \
             LEFT JOIN bridge_nodes n ON n.node_id = s.node_id \
             WHERE c.status = 'in-progress' AND c.ended_at IS NULL AND ( \
               (s.node_id = $1 AND s.claimed_at < $2) OR \
               (s.node_id <> $1 AND (n.node_id IS NULL OR n.heartbeat_at < $3))) \
             ORDER BY c.started_at LIMIT {limit}"
        )))
        .bind(me)
        .bind(me_started_ms)
        .bind(stale_before_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Ends an orphaned call with `status` and [`BRIDGE_RESTART`], unless it ended meanwhile.
    /// `true` only for the one writer that settled it (so its webhook is queued once).
    pub async fn settle_orphaned_call(
        &self,
        tenant: &TenantId,
        call_id: &str,
        status: CallStatus,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE calls SET ended_at = $3, status = $4, end_reason = $5 \
             WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL AND status = 'in-progress'",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .bind(now_ms())
        .bind(status.as_str())
        .bind(BRIDGE_RESTART)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

//! Stream claims: which Twilio calls already opened their media stream, so a stream token is used
//! once, on one node, for one socket.
//!
//! It must not check tokens or signatures (that is [`crate::twilio::token`]) nor know about
//! sockets. Methods are inherent on [`SqlStore`] and take no [`super::TenantId`]: a call SID is
//! global at Twilio, and the claim must hold whichever tenant a forged or replayed start names.

use super::model::validate_text;
use super::sql::now_ms;
use super::{SqlStore, StoreResult};

impl SqlStore {
    /// Claims the media stream of `call_sid` for the socket asking. `true` for the first caller,
    /// `false` when the call already streamed (a replayed token, a second socket, an ended call).
    /// Atomic in the database, so it holds across nodes.
    pub async fn claim_stream(&self, call_sid: &str, tenant: &str) -> StoreResult<bool> {
        validate_text("Twilio call SID", call_sid, 64)?;
        let done = sqlx::query(
            "INSERT INTO stream_claims (call_sid, tenant_id, claimed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (call_sid) DO NOTHING",
        )
        .bind(call_sid)
        .bind(tenant)
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
}

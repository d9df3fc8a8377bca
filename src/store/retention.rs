//! Per-tenant retention rows (migration 0020) and the queries of the retention sweep: which ended
//! calls are past their tenant's retention and still hold content, and purging that content
//! (events, the recording path). It must not touch files (the sweep in `admin::retention` removes
//! recording files) and takes the [`TenantId`] in every tenant query.

use sqlx::Row;

use super::error::{WriteFailure, classify};
use super::sql::now_ms;
use super::{SqlStore, StoreError, StoreResult, TenantId};

/// Longest retention accepted (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3_650;

/// A call past retention that still holds content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredCall {
    pub call_id: String,
    pub recording_path: Option<String>,
}

impl SqlStore {
    /// The tenant's retention in days; `None` keeps everything.
    pub async fn retention_days(&self, tenant: &TenantId) -> StoreResult<Option<u32>> {
        let row = sqlx::query("SELECT days FROM tenant_retention WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get::<i64, _>("days"))
            .transpose()
            .map(|d| d.map(|d| u32::try_from(d).unwrap_or(MAX_RETENTION_DAYS)))
            .map_err(Into::into)
    }

    /// Sets (`Some`) or removes (`None`) the tenant's retention.
    pub async fn set_retention_days(
        &self,
        tenant: &TenantId,
        days: Option<u32>,
    ) -> StoreResult<()> {
        let Some(days) = days else {
            sqlx::query("DELETE FROM tenant_retention WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(self.pool())
                .await?;
            return Ok(());
        };
        if days == 0 || days > MAX_RETENTION_DAYS {
            return Err(StoreError::invalid(
                "retention days",
                format!("must be 1 to {MAX_RETENTION_DAYS}"),
            ));
        }
        sqlx::query(
            "INSERT INTO tenant_retention (tenant_id, days, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET days = $2, updated_at = $3",
        )
        .bind(tenant.as_str())
        .bind(i64::from(days))
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|err| match classify(err) {
            WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
            WriteFailure::Unique => StoreError::conflict("retention"),
            WriteFailure::Other(err) => StoreError::Database(err),
        })?;
        Ok(())
    }

    /// Every tenant with a retention, and its days.
    pub async fn retentions(&self) -> StoreResult<Vec<(TenantId, u32)>> {
        let rows = sqlx::query("SELECT tenant_id, days FROM tenant_retention ORDER BY tenant_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let tenant: String = r.try_get("tenant_id")?;
                let days: i64 = r.try_get("days")?;
                Ok((
                    TenantId::parse(&tenant)?,
                    u32::try_from(days).unwrap_or(MAX_RETENTION_DAYS),
                ))
            })
            .collect()
    }

    /// Up to `limit` of the tenant's calls that ended before `before_ms` and still have events or
    /// a recording.
    pub async fn expired_calls(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ExpiredCall>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, c.recording_path FROM calls c WHERE c.tenant_id = $1 \
             AND c.ended_at IS NOT NULL AND c.ended_at < $2 AND (c.recording_path IS NOT NULL \
             OR EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = c.id)) \
             ORDER BY c.ended_at LIMIT {limit}",
        )))
        .bind(tenant.as_str())
        .bind(before_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiredCall {
                    call_id: r.try_get("id")?,
                    recording_path: r.try_get("recording_path")?,
                })
            })
            .collect()
    }

    /// Deletes the call's events (transcript, tool log) and forgets its recording path.
    pub async fn purge_call_content(&self, tenant: &TenantId, call_id: &str) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM call_events WHERE call_id IN \
             (SELECT id FROM calls WHERE tenant_id = $1 AND id = $2)",
        )
        .bind(tenant.as_str())
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE calls SET recording_path = NULL WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(call_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

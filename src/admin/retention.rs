//! Per-tenant retention: the setting (API) and the sweep that enforces it — calls that ended more
//! than the tenant's days ago lose their transcript and events and their recording file; the call
//! row stays. It must not delete anything of a tenant without a retention setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::store::{SqlStore, StoreError};

/// How often a `serve` node runs the sweep.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);
const SWEEP_PAGE: u32 = 500;
const DAY_MS: i64 = 86_400_000;

/// A tenant's retention.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// Days after a call ends that its transcript, events and recording are kept (1 to 3650);
    /// `null` keeps them forever.
    pub days: Option<u32>,
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub calls: u64,
    pub recordings: u64,
}

/// Purges every tenant's calls past its retention at `now_ms`.
pub async fn sweep(store: &SqlStore, now_ms: i64) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for (tenant, days) in store.retentions().await? {
        let cutoff = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
        loop {
            let expired = store.expired_calls(&tenant, cutoff, SWEEP_PAGE).await?;
            for call in &expired {
                if let Some(path) = &call.recording_path {
                    match std::fs::remove_file(path) {
                        Ok(()) => report.recordings += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            // Kept on the record so the next sweep tries again.
                            warn!(tenant = %tenant, call = %call.call_id, error = %e, "cannot remove an expired recording");
                            continue;
                        }
                    }
                }
                store.purge_call_content(&tenant, &call.call_id).await?;
                report.calls += 1;
            }
            if expired.len() < SWEEP_PAGE as usize {
                break;
            }
        }
    }
    if report.calls > 0 {
        info!(
            calls = report.calls,
            recordings = report.recordings,
            "retention sweep"
        );
    }
    Ok(report)
}

/// Runs [`sweep`] every [`SWEEP_EVERY`] until aborted.
pub fn spawn_sweeper(store: SqlStore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = sweep(&store, jiff::Timestamp::now().as_millisecond()).await {
                warn!(error = %e, "retention sweep failed");
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    })
}

impl AdminService {
    pub async fn retention(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<RetentionDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(RetentionDoc {
            days: self.store.retention_days(&id).await?,
        })
    }

    pub async fn set_retention(
        &self,
        who: &Principal,
        tenant: &str,
        req: RetentionDoc,
    ) -> Result<RetentionDoc, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store.set_retention_days(&id, req.days).await?;
        info!(tenant = %id, days = ?req.days, "retention set");
        self.retention(who, tenant).await
    }
}

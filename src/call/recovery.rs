//! Crash recovery: settles calls that a bridge node was carrying when it died (`kill -9`, a lost
//! machine), so no call stays `in-progress` forever and each still gets its `call.ended` webhook.
//!
//! Every `serve` process keeps a heartbeat row (`bridge_nodes`) and sweeps at start and then
//! periodically. An orphan is a call still `in-progress` whose stream claim names this node from
//! before it (re)started, or another node whose heartbeat is stale. Each is settled once (the
//! store's conditional update decides the one writer): its final status from Twilio (`FetchCall`)
//! when Twilio says it ended, otherwise the call is hung up at Twilio and recorded `completed`
//! (`failed` when Twilio cannot be asked); end reason `bridge_restart`; the webhook is queued.
//!
//! It must not touch live calls (a node with a fresh heartbeat is alive) nor decide webhook
//! content (that is [`crate::webhooks`]).

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::connectors::twilio_rest::{Hangup, TwilioRest, UpdateCall};
use crate::metrics::Metrics;
use crate::store::{Call, CallStatus, SqlStore, StoreError, is_final};

/// How often a node writes its heartbeat and sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A node whose heartbeat is older than this is considered dead.
pub const NODE_DEAD_AFTER: Duration = Duration::from_secs(45);
/// Orphans settled per sweep at most.
const BATCH: u32 = 50;

/// The recovery duty of one node.
#[derive(Clone)]
pub struct Recovery {
    pub store: SqlStore,
    pub metrics: Arc<Metrics>,
    /// `None` when Twilio cannot be asked (statuses then default to `failed`).
    pub twilio: Option<TwilioRest>,
    pub node_id: Arc<str>,
    /// Unix milliseconds this process started.
    pub started_at_ms: i64,
}

fn unix_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Recovery {
    /// The recovery of the node `node_id`, with the Twilio client of `deps`.
    pub fn for_node(deps: &super::driver::CallDeps, node_id: Arc<str>) -> Self {
        let twilio = TwilioRest::from_env(
            &deps.policy,
            &deps.config.twilio_account_sid,
            deps.config.twilio_auth_token.expose_secret(),
        )
        .map_err(|e| warn!(error = %e, "crash recovery cannot ask Twilio"))
        .ok();
        Self {
            store: deps.store.clone(),
            metrics: deps.metrics.clone(),
            twilio,
            node_id,
            started_at_ms: unix_ms(),
        }
    }

    /// Writes the heartbeat, then settles the orphans found; returns how many were settled.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.store
            .node_heartbeat(&self.node_id, self.started_at_ms)
            .await?;
        let stale_before = unix_ms() - NODE_DEAD_AFTER.as_millis() as i64;
        let orphans = self
            .store
            .orphaned_calls(&self.node_id, self.started_at_ms, stale_before, BATCH)
            .await?;
        let mut settled = 0;
        for call in orphans {
            let status = self.final_status(&call).await;
            if self
                .store
                .settle_orphaned_call(&call.tenant_id, &call.id, status)
                .await?
            {
                settled += 1;
                self.metrics.call_ended(crate::store::BRIDGE_RESTART);
                info!(call_id = %call.id, tenant = %call.tenant_id, status = status.as_str(), "orphaned call settled after a bridge restart");
                if let Err(e) =
                    crate::webhooks::enqueue_call_ended(&self.store, &call.tenant_id, &call.id)
                        .await
                {
                    self.metrics.error("webhook_enqueue_failed");
                    warn!(call_id = %call.id, error = %e, "cannot queue the call.ended webhook");
                }
            }
        }
        Ok(settled)
    }

    /// What the call ended as, according to Twilio; hangs it up there if it is still up.
    async fn final_status(&self, call: &Call) -> CallStatus {
        let (Some(twilio), Some(sid)) = (&self.twilio, &call.twilio_call_sid) else {
            return CallStatus::Failed;
        };
        match twilio.fetch_call(sid).await {
            Ok(resource) => match CallStatus::parse(&resource.status) {
                Some(status) if is_final(status) => status,
                _ => {
                    // Twilio still has it up, with no bridge behind it: end it.
                    let hangup = UpdateCall::Hangup(Hangup::Completed);
                    match twilio.update_call(sid, &hangup).await {
                        Ok(_) => CallStatus::Completed,
                        Err(e) => {
                            self.metrics.error("twilio_update_failed");
                            warn!(call_id = %call.id, error = %e, "cannot hang up an orphaned call");
                            CallStatus::Failed
                        }
                    }
                }
            },
            Err(e) => {
                self.metrics.error("twilio_fetch_failed");
                warn!(call_id = %call.id, error = %e, "cannot ask Twilio about an orphaned call");
                CallStatus::Failed
            }
        }
    }

    /// Sweeps now and every [`SWEEP_INTERVAL`] until aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.sweep().await {
                    Ok(0) => {}
                    Ok(n) => info!(settled = n, "crash recovery sweep"),
                    Err(e) => {
                        self.metrics.error("recovery_sweep_failed");
                        warn!(error = %e, "crash recovery sweep failed");
                    }
                }
                tokio::time::sleep(SWEEP_INTERVAL).await;
            }
        })
    }
}

//! Post-call exports: after a call is recorded as finished, each of the tenant's connectors that
//! exports calls (a Google Sheet's call-log tab, …) gets the call once, through a durable queue
//! (`store/call_exports.rs`, migration 0023) so a vendor outage or a restart does not lose it.
//!
//! Owns: queueing one job per call and configured connector ([`enqueue_call_exports`], called
//! from the call journal next to the `call.ended` webhook), and the [`ExportWorker`] that claims
//! due jobs under a lease, builds the connector (secret or OAuth connection), writes the call and
//! records done / skipped / retry with backoff / failed: a vendor's 404 or 400 (a folder or
//! template gone, a refused request) fails the job at once with the vendor's reason, a 429 waits
//! at least its `Retry-After`, anything else passing is retried. It must not run inside a call's
//! lifetime (the queue decouples it), hold a decrypted secret beyond one job, or log a transcript.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::campaign::clock::{Clock, SystemClock};
use crate::connectors::http::{HttpPolicy, PolicyError, RequestContext};
use crate::connectors::{CallRecord, CallSummary, ConnectorError, RecordingFile};
use crate::metrics::Metrics;
use crate::oauth::OAuthService;
use crate::store::{
    AnalysisStatus, CallEventKind, CallExportJob, ExportOutcome, SqlStore, Store, StoreError,
    TenantId,
};
use crate::tenant::vault::Vault;
use crate::tools::resolver::build_connector_with;

/// Attempts before a job is failed for good.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long one node holds a claimed job.
const LEASE_MS: i64 = 120_000;
/// Jobs claimed per pass.
const BATCH: i64 = 16;
/// A pinned job's node counts as gone when its heartbeat is older than this (as crash recovery).
const NODE_DEAD_AFTER_MS: i64 = crate::call::recovery::NODE_DEAD_AFTER.as_millis() as i64;
/// Time allowed to one export's vendor requests.
const EXPORT_DEADLINE: Duration = Duration::from_secs(60);

/// Queues the export of a finished call to each connector the tenant has configured (a connector
/// that exports nothing is marked skipped by the worker). Queueing twice is a no-op.
/// `recorded_on`: the node whose disk holds the call's recording, when it has one: the jobs run
/// there while that node is alive (a recording is a node-local file).
pub async fn enqueue_call_exports(
    store: &SqlStore,
    tenant: &TenantId,
    call_id: &str,
    recorded_on: Option<&str>,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for connector in store.list_connectors(tenant).await? {
        if store
            .enqueue_call_export(tenant, call_id, &connector.spec.vendor, recorded_on, now_ms)
            .await?
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// The delay before attempt `attempts + 1`: 30 s doubling, at most an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let shift = attempts.clamp(0, 7) as u32;
    (30_000_i64 << shift).min(3_600_000)
}

/// Why an attempt did not export the call, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFailure {
    pub message: String,
    /// Retrying cannot help (the folder or template is gone, the vendor refused the request).
    pub give_up: bool,
    /// The vendor asked to wait this long (`Retry-After`).
    pub wait: Option<Duration>,
}

impl ExportFailure {
    fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            give_up: false,
            wait: None,
        }
    }
}

impl From<ConnectorError> for ExportFailure {
    /// 404/410 (missing), 400/422 (refused) and unusable settings give up; 401/403 (a reconnect
    /// or a restored share fixes them), 429 (after its `Retry-After`), 5xx and transport failures
    /// are retried.
    fn from(err: ConnectorError) -> Self {
        let give_up = matches!(
            err,
            ConnectorError::NotFound(_)
                | ConnectorError::Rejected(_)
                | ConnectorError::InvalidInput(_)
                | ConnectorError::Config(_)
        );
        let wait = match &err {
            ConnectorError::Policy(PolicyError::Status { retry_after, .. }) => *retry_after,
            ConnectorError::Policy(PolicyError::CircuitOpen { retry_in, .. }) => Some(*retry_in),
            _ => None,
        };
        Self {
            message: err.to_string(),
            give_up,
            wait,
        }
    }
}

/// The media type of a recording file, by its extension (as the recorder names them).
fn recording_file(path: &str) -> Option<RecordingFile> {
    let path = std::path::PathBuf::from(path);
    let media_type = match path.extension().and_then(|e| e.to_str()) {
        Some("wav") => "audio/wav",
        Some("opus") | Some("ogg") => "audio/ogg",
        _ => return None,
    };
    Some(RecordingFile { path, media_type })
}

fn chrono_time(at: jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.as_millisecond()).unwrap_or_default()
}

/// Claims and runs due export jobs.
pub struct ExportWorker {
    store: SqlStore,
    vault: Option<Vault<SqlStore>>,
    policy: HttpPolicy,
    oauth: Option<OAuthService>,
    clock: Arc<dyn Clock>,
    owner: String,
    /// This node's id: jobs pinned to it (its recordings) are its own.
    node: String,
    metrics: Option<Arc<Metrics>>,
}

impl ExportWorker {
    pub fn new(
        store: SqlStore,
        vault: Option<Vault<SqlStore>>,
        policy: HttpPolicy,
        oauth: Option<OAuthService>,
    ) -> Self {
        let id: [u8; 6] = rand::random();
        let owner = format!(
            "exports-{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self {
            store,
            vault,
            policy,
            oauth,
            clock: Arc::new(SystemClock),
            metrics: None,
            node: owner.clone(),
            owner,
        }
    }

    /// The node this worker runs on (`CALLBRIDGE_NODE_ID`): it claims the jobs of the calls it
    /// recorded. Without it the worker takes only unpinned jobs and those of dead nodes.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counts retries and failures (`errors{kind="export_retry"|"export_failed"}`; a job given
    /// up at once on a vendor's 404/400 counts as `export_failed` too).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, kind: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.error(kind);
        }
    }

    /// One pass: claims due jobs and runs each; returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let jobs = self
            .store
            .claim_call_exports(
                &self.owner,
                &self.node,
                now - NODE_DEAD_AFTER_MS,
                now,
                now + LEASE_MS,
                BATCH,
            )
            .await?;
        for job in &jobs {
            let outcome = match self.export(job).await {
                Ok(true) => ExportOutcome::Done,
                Ok(false) => ExportOutcome::Skipped,
                Err(failure) if failure.give_up || job.attempts + 1 >= MAX_ATTEMPTS => {
                    self.count("export_failed");
                    let error = failure.message;
                    tracing::warn!(tenant = %job.tenant_id, call_id = %job.call_id, vendor = %job.vendor, %error, "post-call export failed for good");
                    ExportOutcome::Failed { error }
                }
                Err(failure) => {
                    self.count("export_retry");
                    let error = failure.message;
                    tracing::info!(tenant = %job.tenant_id, call_id = %job.call_id, vendor = %job.vendor, %error, "post-call export will be retried");
                    let wait = failure.wait.map_or(0, |wait| {
                        i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
                    });
                    ExportOutcome::Retry {
                        next_at: self.clock.now_ms() + backoff_ms(job.attempts).max(wait),
                        error,
                    }
                }
            };
            self.store
                .finish_call_export(job, &self.owner, &outcome, self.clock.now_ms())
                .await?;
        }
        Ok(jobs.len())
    }

    /// Writes the call to the job's connector: Ok(false) when it exports nothing.
    async fn export(&self, job: &CallExportJob) -> Result<bool, ExportFailure> {
        let config = match self.store.connector(&job.tenant_id, &job.vendor).await {
            Ok(config) => config,
            // The connector was removed since the call: nothing to write to.
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(ExportFailure::retry(err.to_string())),
        };
        let built = build_connector_with(
            &config,
            self.vault.as_ref(),
            &self.policy,
            self.oauth.as_ref(),
        )
        .await
        .map_err(|err| ExportFailure::retry(err.to_string()))?;
        let Some(log) = built.call_log else {
            return Ok(false);
        };
        let record = self
            .record(&job.tenant_id, &job.call_id)
            .await
            .map_err(|err| ExportFailure::retry(err.to_string()))?;
        if log.wants_analysis() {
            let analysis = self
                .store
                .call_analysis(&job.tenant_id, &job.call_id)
                .await
                .map_err(|err| ExportFailure::retry(err.to_string()))?;
            if analysis.is_some_and(|a| a.status == AnalysisStatus::Pending) {
                return Err(ExportFailure::retry("waiting for the call's analysis"));
            }
        }
        let ctx = RequestContext::new(
            job.tenant_id.as_str(),
            &job.call_id,
            Instant::now() + EXPORT_DEADLINE,
        );
        let key = format!("call-export:{}:{}", job.call_id, job.vendor);
        log.log_call(&ctx, &record, &key)
            .await
            .map(|()| true)
            .map_err(ExportFailure::from)
    }

    async fn record(&self, tenant: &TenantId, call_id: &str) -> Result<CallRecord, StoreError> {
        let call = self.store.call(tenant, call_id).await?;
        let events = self.store.call_events(tenant, call_id).await?;
        let transcript = events
            .iter()
            .filter(|e| e.kind == CallEventKind::Transcript)
            .filter_map(|e| {
                let speaker = e
                    .payload
                    .get("speaker")
                    .or_else(|| e.payload.get("role"))?
                    .as_str()?;
                let text = e.payload.get("text")?.as_str()?;
                Some(format!("{speaker}: {text}"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let analysis = self
            .store
            .call_analysis(tenant, call_id)
            .await?
            .and_then(|a| a.result)
            .map(|result| CallSummary {
                summary: result["summary"].as_str().unwrap_or_default().to_owned(),
                fields: result["fields"].as_object().cloned().unwrap_or_default(),
                achieved: result["success"]["achieved"].as_bool(),
                reason: result["success"]["reason"].as_str().map(str::to_owned),
            });
        Ok(CallRecord {
            call_id: call.id,
            agent_id: call.agent_id,
            direction: call.direction.as_str().to_owned(),
            from: call.from,
            to: call.to,
            started_at: chrono_time(call.started_at),
            ended_at: call.ended_at.map(chrono_time),
            status: call.status.as_str().to_owned(),
            end_reason: call.end_reason,
            transcript,
            analysis,
            recording: call.recording_path.as_deref().and_then(recording_file),
        })
    }

    /// Runs passes every `every` until the handle is aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = self.run_once().await {
                    tracing::warn!(error = %err, "post-call export pass failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<Duration>) -> ConnectorError {
        ConnectorError::from_policy(
            PolicyError::Status {
                connector: "google_drive",
                code,
                body_snippet: String::new(),
                retry_after,
            },
            "Drive folder f",
        )
    }

    #[test]
    fn vendor_answers_decide_retry_or_give_up() {
        for code in [404, 410, 400, 422] {
            let failure = ExportFailure::from(status(code, None));
            assert!(failure.give_up, "{code}: {failure:?}");
        }
        assert_eq!(
            ExportFailure::from(status(404, None)).message,
            "not found: Drive folder f"
        );
        for code in [401, 403, 429, 500, 503] {
            assert!(!ExportFailure::from(status(code, None)).give_up, "{code}");
        }
        let limited = ExportFailure::from(status(429, Some(Duration::from_secs(600))));
        assert_eq!(limited.wait, Some(Duration::from_secs(600)));
        assert!(ExportFailure::from(ConnectorError::Config("x".into())).give_up);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 30_000);
        assert_eq!(backoff_ms(1), 60_000);
        assert_eq!(backoff_ms(6), 1_920_000);
        assert_eq!(backoff_ms(7), 3_600_000);
        assert_eq!(backoff_ms(50), 3_600_000);
    }
}

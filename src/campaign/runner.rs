//! The campaign dispatcher: one per node, all sharing the database. Each tick it
//! 1. takes over `dialing` contacts whose lease ran out and asks Twilio whether their call exists
//!    (adopt it, or put the contact back: never dial twice, never lose one),
//! 2. looks up calls whose status callbacks are overdue (`FetchCall`),
//! 3. settles contacts whose call ended (retry policy in [`super::outcome`]),
//! 4. claims due contacts of each active campaign within pacing, caps and calling windows, and
//!    dials them (several `CreateCall`s in flight at once),
//! 5. marks campaigns with nothing left as completed.
//!
//! It owns no state of its own between ticks: everything is in the store, so a node can die at
//! any instruction and another (or the restarted one) carries on. It must not serve HTTP or run
//! the media path; the status callbacks that end calls arrive through [`crate::http`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::clock::Clock;
use super::dialer::{Dialer, fail_call_record};
use super::outcome::{DialFailure, classify_dial_error, settle};
use super::window::{CallingWindow, parse_zone};
use crate::metrics::Metrics;
use crate::store::{
    CallStatus, Campaign, CampaignStatus, ClaimResult, ClaimedContact, Eligibility, ExpiredDial,
    Settlement, SqlStore, StoreError,
};

/// Why a tick stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("invalid dispatcher options: {0}")]
    Options(String),
}

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// This node's name in leases and in `dialed_by` (unique per process).
    pub node_id: String,
    /// Pause between ticks.
    pub tick: Duration,
    /// How long a claimed contact is ours before another node may reconcile it. Must exceed
    /// twice the Twilio request timeout, so a slow answer is never taken for a lost one.
    pub lease: Duration,
    /// How long an `in_call` contact waits for its status callbacks before we ask Twilio.
    pub call_check: Duration,
    /// Most claims per campaign per tick.
    pub claims_per_campaign: usize,
    /// `CreateCall` requests in flight at once.
    pub parallel_dials: usize,
    /// Clock skew allowed between us and Twilio when matching a lost call by its creation time.
    pub reconcile_skew: Duration,
}

/// The Twilio client's budget for one request, retries included.
const TWILIO_REQUEST_TIMEOUT: Duration = crate::connectors::twilio_rest::REQUEST_DEADLINE;

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            node_id: format!("node-{:016x}", rand::random::<u64>()),
            tick: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            call_check: Duration::from_secs(600),
            claims_per_campaign: 50,
            parallel_dials: 16,
            reconcile_skew: Duration::from_secs(120),
        }
    }
}

impl RunnerOptions {
    pub fn validate(&self) -> Result<(), RunnerError> {
        if self.lease < TWILIO_REQUEST_TIMEOUT * 2 {
            return Err(RunnerError::Options(format!(
                "the lease ({:?}) must be at least twice the Twilio request timeout ({:?})",
                self.lease, TWILIO_REQUEST_TIMEOUT
            )));
        }
        if self.node_id.is_empty() || self.node_id.len() > 128 {
            return Err(RunnerError::Options(
                "node id must be 1 to 128 bytes".into(),
            ));
        }
        if self.parallel_dials == 0 || self.claims_per_campaign == 0 {
            return Err(RunnerError::Options(
                "parallel dials and claims per campaign must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What one tick did (for tests, logs and the benchmark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub claimed: usize,
    pub placed: usize,
    pub not_placed: usize,
    /// Dials whose answer was lost: left to reconciliation.
    pub unknown: usize,
    pub reconciled_adopted: usize,
    pub reconciled_requeued: usize,
    pub settled: usize,
    pub checked: usize,
    pub completed_campaigns: usize,
}

/// The dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct CampaignRunner {
    store: SqlStore,
    dialer: Dialer,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    options: Arc<RunnerOptions>,
}

/// A running dispatcher; [`RunnerHandle::shutdown`] stops it between ticks.
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl CampaignRunner {
    pub fn new(
        store: SqlStore,
        dialer: Dialer,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        options: RunnerOptions,
    ) -> Result<Self, RunnerError> {
        options.validate()?;
        Ok(Self {
            store,
            dialer,
            clock,
            metrics,
            options: Arc::new(options),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.options.node_id
    }

    /// Runs ticks until shut down. A failed tick (database unreachable) is logged and counted;
    /// the next tick tries again.
    pub fn spawn(self) -> RunnerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            info!(node = %self.options.node_id, "campaign dispatcher started");
            loop {
                if let Err(e) = self.tick().await {
                    self.metrics.error("campaign_tick_failed");
                    error!(error = %e, "campaign dispatcher tick failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.options.tick) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        RunnerHandle { stop, task }
    }

    /// One pass over every step (see the module docs).
    pub async fn tick(&self) -> Result<TickReport, RunnerError> {
        let mut report = TickReport::default();
        self.reconcile_expired(&mut report).await?;
        self.check_overdue_calls(&mut report).await?;
        self.settle_finished(&mut report).await?;
        let claimed = self.claim_due().await?;
        report.claimed = claimed.len();
        let results: Vec<DialResult> = futures_util::stream::iter(claimed)
            .map(|contact| self.dial(contact))
            .buffer_unordered(self.options.parallel_dials)
            .collect()
            .await;
        for result in results {
            match result {
                DialResult::Placed => report.placed += 1,
                DialResult::NotPlaced => report.not_placed += 1,
                DialResult::Unknown => report.unknown += 1,
            }
        }
        let completed = self
            .store
            .complete_finished_campaigns(self.clock.now_ms())
            .await?;
        for id in &completed {
            info!(campaign = %id, "campaign completed");
        }
        report.completed_campaigns = completed.len();
        Ok(report)
    }

    async fn claim_due(&self) -> Result<Vec<ClaimedContact>, RunnerError> {
        let mut claimed = Vec::new();
        // One reading of the clock per pass, so window verdicts can be shared by every contact
        // with the same zones (finding the next opening scans up to 8 days minute by minute).
        let now = self.clock.now();
        for campaign in self.store.active_campaigns().await? {
            let window = match CallingWindow::from_spec(campaign.spec.window) {
                Ok(window) => window,
                Err(e) => {
                    // Validated on creation; a row that fails now was edited by hand.
                    error!(campaign = %campaign.id, error = %e, "campaign has an invalid window");
                    continue;
                }
            };
            let mut verdicts: HashMap<Vec<String>, Eligibility> = HashMap::new();
            for _ in 0..self.options.claims_per_campaign {
                let result = self
                    .store
                    .claim_campaign_contact(
                        &campaign.tenant_id,
                        &campaign.id,
                        &self.options.node_id,
                        now.timestamp_millis(),
                        ms(self.options.lease),
                        |candidate| {
                            if candidate.on_do_not_call {
                                return Eligibility::Finish {
                                    outcome: "do_not_call",
                                };
                            }
                            verdicts
                                .entry(candidate.zones.clone())
                                .or_insert_with(|| {
                                    window_eligibility(&window, &candidate.zones, now)
                                })
                                .clone()
                        },
                    )
                    .await?;
                match result {
                    ClaimResult::Claimed(contact) => claimed.push(contact),
                    ClaimResult::NoCallerId => {
                        self.metrics.error("campaign_no_caller_id");
                        warn!(campaign = %campaign.id, "tenant has no number to call from; pausing the campaign");
                        self.pause(&campaign).await;
                        break;
                    }
                    ClaimResult::Paced
                    | ClaimResult::AtCapacity
                    | ClaimResult::NothingDue
                    | ClaimResult::NotActive => break,
                }
            }
        }
        Ok(claimed)
    }

    async fn pause(&self, campaign: &Campaign) {
        if let Err(e) = self
            .store
            .set_campaign_status(
                &campaign.tenant_id,
                &campaign.id,
                CampaignStatus::Paused,
                self.clock.now_ms(),
            )
            .await
        {
            warn!(campaign = %campaign.id, error = %e, "cannot pause the campaign");
        }
    }

    async fn dial(&self, contact: ClaimedContact) -> DialResult {
        let node = &self.options.node_id;
        let sent = self
            .dialer
            .send_create(
                &contact.call_id,
                &contact.from,
                &contact.to,
                contact.machine_action,
            )
            .await;
        let now = self.clock.now_ms();
        match sent {
            Ok(call_sid) => {
                self.metrics.campaign_dial("placed");
                let recorded = async {
                    self.store
                        .attach_call_sid(&contact.call_id, &call_sid)
                        .await?;
                    self.store
                        .contact_dialed(
                            contact.leased(node),
                            now,
                            now + ms(self.options.call_check),
                        )
                        .await
                }
                .await;
                match recorded {
                    Ok(true) => {}
                    Ok(false) => warn!(
                        call_id = %contact.call_id,
                        "campaign call placed after its lease ran out; reconciliation adopts it"
                    ),
                    // The SID is in the call record or will be found again by reconciliation.
                    Err(e) => {
                        error!(call_id = %contact.call_id, error = %e, "cannot record the placed call")
                    }
                }
                DialResult::Placed
            }
            Err(twilio_error) => match classify_dial_error(&twilio_error, now) {
                DialFailure::Unknown => {
                    self.metrics.campaign_dial("unknown");
                    warn!(call_id = %contact.call_id, error = %twilio_error,
                        "CreateCall answer lost; the call is reconciled when the lease runs out");
                    DialResult::Unknown
                }
                DialFailure::NotPlaced(next) => {
                    self.metrics.campaign_dial("not_placed");
                    warn!(call_id = %contact.call_id, error = %twilio_error, "Twilio did not place the campaign call");
                    self.unplaced(&contact, next, &twilio_error).await;
                    DialResult::NotPlaced
                }
                DialFailure::PauseCampaign { retry_at_ms } => {
                    self.metrics.campaign_dial("not_placed");
                    self.metrics.error("campaign_paused_by_twilio");
                    error!(campaign = %contact.campaign_id, error = %twilio_error,
                        "Twilio refuses calls for this account; pausing the campaign");
                    self.unplaced(
                        &contact,
                        Settlement::Retry { at_ms: retry_at_ms },
                        &twilio_error,
                    )
                    .await;
                    if let Ok(campaign) = self
                        .store
                        .campaign(&contact.tenant_id, &contact.campaign_id)
                        .await
                    {
                        self.pause(&campaign).await;
                    }
                    DialResult::NotPlaced
                }
            },
        }
    }

    async fn unplaced(
        &self,
        contact: &ClaimedContact,
        next: Settlement,
        twilio_error: &crate::connectors::twilio_rest::TwilioError,
    ) {
        fail_call_record(
            &self.store,
            &contact.tenant_id,
            &contact.call_id,
            crate::campaign::dialer::not_placed_reason(twilio_error),
        )
        .await;
        let error = twilio_error.to_string();
        let error = error.as_str();
        if let Err(e) = self
            .store
            .contact_not_placed(
                contact.leased(&self.options.node_id),
                self.clock.now_ms(),
                next,
                error,
            )
            .await
        {
            error!(call_id = %contact.call_id, error = %e, "cannot put the contact back");
        }
    }

    async fn reconcile_expired(&self, report: &mut TickReport) -> Result<(), RunnerError> {
        let now = self.clock.now_ms();
        let expired = self
            .store
            .take_expired_dialing(&self.options.node_id, now, ms(self.options.lease), 50)
            .await?;
        for dial in expired {
            match self.find_placed_call(&dial).await {
                Ok(Some(call_sid)) => {
                    self.store.attach_call_sid(&dial.call_id, &call_sid).await?;
                    let adopted = self
                        .store
                        .contact_dialed(dial.leased(&self.options.node_id), now, now)
                        .await?;
                    if adopted {
                        self.metrics.campaign_dial("reconciled_placed");
                        info!(call_id = %dial.call_id, call_sid, "reconciled: the call had been placed");
                        report.reconciled_adopted += 1;
                    }
                }
                Ok(None) => {
                    fail_call_record(&self.store, &dial.tenant_id, &dial.call_id, "not_placed")
                        .await;
                    let requeued = self
                        .store
                        .contact_not_placed(
                            dial.leased(&self.options.node_id),
                            now,
                            Settlement::Retry { at_ms: now },
                            "call not placed (reconciled after a lost dial)",
                        )
                        .await?;
                    if requeued {
                        self.metrics.campaign_dial("reconciled_not_placed");
                        info!(call_id = %dial.call_id, "reconciled: the call was never placed; contact requeued");
                        report.reconciled_requeued += 1;
                    }
                }
                Err(e) => {
                    // Keep the lease; the next expiry tries again.
                    self.metrics.error("campaign_reconcile_failed");
                    warn!(call_id = %dial.call_id, error = %e, "cannot ask Twilio about a lost dial");
                }
            }
        }
        Ok(())
    }

    /// The SID of the call this dial placed, if any: known already (the answer or a status
    /// callback reached the store), or found at Twilio (see [`Dialer::find_unrecorded_call`]).
    async fn find_placed_call(
        &self,
        dial: &ExpiredDial,
    ) -> Result<Option<String>, super::dialer::DialError> {
        if let Some(sid) = &dial.call_sid {
            return Ok(Some(sid.clone()));
        }
        let since = dial.claimed_at_ms - ms(self.options.reconcile_skew);
        self.dialer
            .find_unrecorded_call(&self.store, &dial.from, &dial.to, since)
            .await
    }

    async fn check_overdue_calls(&self, report: &mut TickReport) -> Result<(), RunnerError> {
        let now = self.clock.now_ms();
        let due = self
            .store
            .calls_to_check(now, now + ms(self.options.call_check), 50)
            .await?;
        for check in due {
            let Some(sid) = check.call_sid else { continue };
            match self.dialer.rest().fetch_call(&sid).await {
                Ok(call) => {
                    report.checked += 1;
                    if let Some(status) = CallStatus::parse(&call.status) {
                        self.store
                            .advance_call_status(&check.call_id, status)
                            .await?;
                    }
                }
                Err(e) => {
                    self.metrics.error("campaign_fetch_call_failed");
                    warn!(call_id = %check.call_id, error = %e, "cannot fetch an overdue campaign call");
                }
            }
        }
        Ok(())
    }

    async fn settle_finished(&self, report: &mut TickReport) -> Result<(), RunnerError> {
        let now = self.clock.now_ms();
        for attempt in self.store.finished_attempts(500).await? {
            let settlement = settle(&attempt, now);
            if self
                .store
                .settle_attempt(&attempt, &settlement, now)
                .await?
            {
                report.settled += 1;
            }
        }
        Ok(())
    }
}

enum DialResult {
    Placed,
    NotPlaced,
    Unknown,
}

/// Whether contacts in `zones` may be dialled at `now`: yes when the window is open in all of
/// them, else later when it next opens, else never.
fn window_eligibility(
    window: &CallingWindow,
    zones: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Eligibility {
    let zones: Result<Vec<_>, _> = zones.iter().map(|z| parse_zone(z)).collect();
    let Ok(zones) = zones else {
        return Eligibility::Finish {
            outcome: "invalid_time_zone",
        };
    };
    if window.is_open(&zones, now) {
        return Eligibility::Dial;
    }
    match window.next_open(&zones, now) {
        Some(at) => Eligibility::Defer {
            until_ms: at.timestamp_millis(),
        },
        None => Eligibility::Finish {
            outcome: "no_calling_window",
        },
    }
}

//! Rows of campaigns: the campaign and its settings, its contacts and where each one is, the
//! tenant's dialling limits, and the transactions that make dispatch exactly-once across restarts
//! and nodes.
//!
//! It must not talk to Twilio, read the clock or decide policy: every method takes `now_ms` from
//! the caller (the dispatcher's injectable clock), and what to do with a candidate (calling window,
//! retry or not) is decided by the caller through a closure or a [`Settlement`]. Methods are
//! inherent on [`SqlStore`] like the outbox: only the campaign module and the admin API use them.
//!
//! # Claiming a contact (see [`SqlStore::claim_campaign_contact`])
//!
//! One transaction per dial: lock the tenant's limits row, then the campaign row (a no-op `UPDATE`
//! that also checks pacing, so on SQLite the write lock is taken by the first statement and on
//! PostgreSQL concurrent claimers for one tenant queue on that row lock), count the live calls
//! against both concurrency caps, pick the first due contact (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), write its call record and move it to `dialing` under a lease, advance the pacing
//! clocks, commit. Only then is the Twilio request sent. A node that dies after the commit leaves a
//! `dialing` row whose lease runs out; [`SqlStore::take_expired_dialing`] hands it to a live node,
//! which asks Twilio whether the call exists before dialling again.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::error::{WriteFailure, classify};
use super::model::validate_text;
use super::sql::{collect, new_id, now_ms, tenant_id, timestamp};
use super::{
    Backend, CallStatus, E164, MachineAction, SqlStore, StoreError, StoreResult, TenantId,
    Voicemail,
};

/// Most contacts in one campaign.
pub const MAX_CAMPAIGN_CONTACTS: usize = 100_000;
/// Default limits of a tenant that never set its own.
pub const DEFAULT_TENANT_MAX_CONCURRENT: u32 = 10;
pub const DEFAULT_TENANT_DIAL_INTERVAL_MS: i64 = 500;
/// Candidates looked at per claim (those outside their window are deferred, not dialled).
const CLAIM_CANDIDATES: i64 = 25;
/// Contacts inserted per statement on import.
const INSERT_CHUNK: usize = 200;

/// Where a campaign is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CampaignStatus {
    Active,
    Paused,
    Cancelled,
    /// Every contact is done.
    Completed,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "active" => Self::Active,
            "paused" => Self::Paused,
            "cancelled" => Self::Cancelled,
            "completed" => Self::Completed,
            _ => return None,
        })
    }
}

/// Where the dispatcher is with one contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactState {
    Pending,
    Dialing,
    InCall,
    Done,
}

impl ContactState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dialing => "dialing",
            Self::InCall => "in_call",
            Self::Done => "done",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "dialing" => Self::Dialing,
            "in_call" => Self::InCall,
            "done" => Self::Done,
            _ => return None,
        })
    }
}

/// A recipient-local daily window as stored: minutes after midnight `[start, end)` on the weekdays
/// whose bit is set (Monday = bit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub start_min: u16,
    pub end_min: u16,
    pub days_mask: u8,
}

/// What a campaign is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignSpec {
    pub name: String,
    pub agent_id: String,
    pub window: WindowSpec,
    /// Pacing: at least this long between two dials of this campaign.
    pub dial_interval_ms: i64,
    pub max_concurrent: u32,
    /// Attempts per contact, the first included.
    pub max_attempts: u32,
    pub retry_delay_s: i64,
    /// What a machine answer gets; `None`: no answering machine detection.
    pub voicemail: Option<Voicemail>,
}

/// A refused row of the imported file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectedRow {
    pub line: u64,
    pub message: String,
}

/// A contact to import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewContact {
    pub line: u64,
    pub e164: E164,
    /// IANA names.
    pub zones: Vec<String>,
    pub variables: BTreeMap<String, String>,
}

/// A stored campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub id: String,
    pub tenant_id: TenantId,
    pub spec: CampaignSpec,
    pub status: CampaignStatus,
    pub rejected_rows: Vec<RejectedRow>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored contact (one row of the results export).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignContact {
    pub campaign_id: String,
    pub seq: i64,
    pub line: u64,
    pub e164: E164,
    pub zones: Vec<String>,
    pub variables: BTreeMap<String, String>,
    pub state: ContactState,
    pub outcome: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub call_id: Option<String>,
    pub dialed_by: Option<String>,
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    /// How AMD classified the last answered attempt.
    pub answered_by: Option<String>,
    /// Why a pending contact waits until `next_attempt_at`: `outside_calling_window`,
    /// `retry_after_<status>` or `not_placed`; `None` when it is due or done.
    pub waiting_reason: Option<String>,
}

/// Contacts counted by state and by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub total: u64,
    pub by_state: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
}

impl CampaignCounts {
    pub fn state(&self, state: ContactState) -> u64 {
        self.by_state.get(state.as_str()).copied().unwrap_or(0)
    }
}

/// A tenant's dialling limits (across all its campaigns and nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantDialLimits {
    pub max_concurrent: u32,
    pub dial_interval_ms: i64,
}

impl Default for TenantDialLimits {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_TENANT_MAX_CONCURRENT,
            dial_interval_ms: DEFAULT_TENANT_DIAL_INTERVAL_MS,
        }
    }
}

/// A due contact shown to the claim's decision closure.
#[derive(Clone, Debug)]
pub struct ClaimCandidate {
    pub e164: E164,
    pub zones: Vec<String>,
    pub attempts: u32,
    pub on_do_not_call: bool,
}

/// What the claim's caller decides about a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eligibility {
    Dial,
    /// Not now (outside its window): look again at this time.
    Defer {
        until_ms: i64,
    },
    /// Never (do-not-call, no window ever open): done with this outcome.
    Finish {
        outcome: &'static str,
    },
}

/// A contact claimed for dialling: its call record exists and it is `dialing` under our lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedContact {
    pub campaign_id: String,
    pub tenant_id: TenantId,
    pub seq: i64,
    pub to: E164,
    pub from: E164,
    pub call_id: String,
    pub machine_action: Option<MachineAction>,
    /// Attempts including this one.
    pub attempts: u32,
}

/// The result of one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimResult {
    Claimed(ClaimedContact),
    /// Pacing: the tenant or the campaign dialled too recently.
    Paced,
    /// A concurrency cap (campaign or tenant) is reached.
    AtCapacity,
    /// No contact is due now (the candidates looked at may have been deferred or finished).
    NothingDue,
    /// The campaign is not active (paused, cancelled, completed) or does not exist.
    NotActive,
    /// The tenant has no phone number to call from.
    NoCallerId,
}

/// A contact whose call has ended, with what the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub campaign_id: String,
    pub seq: i64,
    pub call_id: String,
    pub status: CallStatus,
    pub end_reason: Option<String>,
    pub answered_by: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub retry_delay_s: i64,
    pub on_do_not_call: bool,
}

/// What to do with a contact after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    Done { outcome: String },
    Retry { at_ms: i64 },
}

impl Settlement {
    /// The contact's new `state`, `outcome` and `next_attempt_at`.
    fn columns(&self, now_ms: i64) -> (&'static str, Option<&str>, i64) {
        match self {
            Self::Retry { at_ms } => ("pending", None, *at_ms),
            Self::Done { outcome } => ("done", Some(outcome.as_str()), now_ms),
        }
    }
}

/// One attempt of a contact as held under a node's lease: which contact, which call record, which
/// node. Updates through it apply only while that node still holds the lease on that attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasedAttempt<'a> {
    pub campaign_id: &'a str,
    pub seq: i64,
    pub call_id: &'a str,
    pub node: &'a str,
}

/// A `dialing` contact whose lease ran out, now leased to the node that took it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredDial {
    pub campaign_id: String,
    pub tenant_id: TenantId,
    pub seq: i64,
    pub call_id: String,
    pub to: E164,
    pub from: E164,
    /// Set when Twilio's answer (or a status callback) reached the store before the crash.
    pub call_sid: Option<String>,
    pub claimed_at_ms: i64,
}

/// An `in_call` contact due for a look at Twilio (its status callbacks may have been lost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallToCheck {
    pub campaign_id: String,
    pub seq: i64,
    pub call_id: String,
    pub call_sid: Option<String>,
}

macro_rules! campaign_cols {
    () => {
        "id, tenant_id, name, agent_id, status, window_start_min, window_end_min, window_days, \
         dial_interval_ms, max_concurrent, max_attempts, retry_delay_s, machine_action, \
         voicemail_text, rejected_rows, created_at, updated_at"
    };
}

impl ClaimedContact {
    /// This attempt under `node`'s lease.
    pub fn leased<'a>(&'a self, node: &'a str) -> LeasedAttempt<'a> {
        LeasedAttempt {
            campaign_id: &self.campaign_id,
            seq: self.seq,
            call_id: &self.call_id,
            node,
        }
    }
}

impl ExpiredDial {
    /// This attempt under `node`'s lease (the node that took it over).
    pub fn leased<'a>(&'a self, node: &'a str) -> LeasedAttempt<'a> {
        LeasedAttempt {
            campaign_id: &self.campaign_id,
            seq: self.seq,
            call_id: &self.call_id,
            node,
        }
    }
}

fn corrupt(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.into(),
    }
}

fn int<T: TryFrom<i64>>(row: &AnyRow, column: &'static str) -> StoreResult<T> {
    let raw: i64 = row.try_get(column)?;
    T::try_from(raw).map_err(|_| corrupt(column, format!("{raw} is out of range")))
}

fn campaign_from_row(row: &AnyRow) -> StoreResult<Campaign> {
    let status: String = row.try_get("status")?;
    let machine_action: Option<String> = row.try_get("machine_action")?;
    let voicemail =
        Voicemail::from_columns(machine_action.as_deref(), row.try_get("voicemail_text")?)?;
    let rejected: String = row.try_get("rejected_rows")?;
    Ok(Campaign {
        id: row.try_get("id")?,
        tenant_id: tenant_id(row, "tenant_id")?,
        spec: CampaignSpec {
            name: row.try_get("name")?,
            agent_id: row.try_get("agent_id")?,
            window: WindowSpec {
                start_min: int(row, "window_start_min")?,
                end_min: int(row, "window_end_min")?,
                days_mask: int(row, "window_days")?,
            },
            dial_interval_ms: row.try_get("dial_interval_ms")?,
            max_concurrent: int(row, "max_concurrent")?,
            max_attempts: int(row, "max_attempts")?,
            retry_delay_s: row.try_get("retry_delay_s")?,
            voicemail,
        },
        status: CampaignStatus::parse(&status)
            .ok_or_else(|| corrupt("campaigns.status", format!("unknown value {status:?}")))?,
        rejected_rows: serde_json::from_str(&rejected)
            .map_err(|e| corrupt("campaigns.rejected_rows", e.to_string()))?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn zones_from_text(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn variables_from_text(text: &str) -> StoreResult<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| corrupt("campaign_contacts.variables", e.to_string()))
}

fn contact_from_row(row: &AnyRow) -> StoreResult<CampaignContact> {
    let e164: String = row.try_get("e164")?;
    let state: String = row.try_get("state")?;
    let zones: String = row.try_get("zones")?;
    let variables: String = row.try_get("variables")?;
    Ok(CampaignContact {
        campaign_id: row.try_get("campaign_id")?,
        seq: row.try_get("seq")?,
        line: int(row, "line")?,
        e164: E164::parse(&e164)?,
        zones: zones_from_text(&zones),
        variables: variables_from_text(&variables)?,
        state: ContactState::parse(&state)
            .ok_or_else(|| corrupt("campaign_contacts.state", format!("unknown {state:?}")))?,
        outcome: row.try_get("outcome")?,
        attempts: int(row, "attempts")?,
        next_attempt_at: timestamp(row, "next_attempt_at")?,
        call_id: row.try_get("call_id")?,
        dialed_by: row.try_get("dialed_by")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        answered_by: row.try_get("answered_by")?,
        waiting_reason: row.try_get("waiting_reason")?,
    })
}

fn validate_spec(spec: &CampaignSpec) -> StoreResult<()> {
    validate_text("campaign name", &spec.name, 200)?;
    let w = spec.window;
    if w.start_min >= w.end_min || w.end_min > 24 * 60 || w.days_mask & 0x7f == 0 {
        return Err(StoreError::invalid(
            "campaign window",
            "start must be before end within one day, on at least one weekday",
        ));
    }
    if !(0..=86_400_000).contains(&spec.dial_interval_ms) {
        return Err(StoreError::invalid(
            "campaign pacing",
            "the interval between dials must be 0 to 86400000 ms",
        ));
    }
    if spec.max_concurrent == 0 || spec.max_concurrent > 10_000 {
        return Err(StoreError::invalid(
            "campaign max_concurrent",
            "must be 1 to 10000",
        ));
    }
    if spec.max_attempts == 0 || spec.max_attempts > 20 {
        return Err(StoreError::invalid(
            "campaign max_attempts",
            "must be 1 to 20",
        ));
    }
    if !(0..=30 * 86_400).contains(&spec.retry_delay_s) {
        return Err(StoreError::invalid(
            "campaign retry delay",
            "must be 0 to 30 days",
        ));
    }
    match &spec.voicemail {
        Some(Voicemail::LeaveMessage(text)) => validate_text("voicemail text", text, 2000),
        _ => Ok(()),
    }
}

fn not_found(campaign_id: &str) -> StoreError {
    StoreError::not_found(format!("campaign {campaign_id}"))
}

async fn ensure_tenant_limits(conn: &mut AnyConnection, tenant: &TenantId) -> StoreResult<()> {
    let limits = TenantDialLimits::default();
    sqlx::query(
        "INSERT INTO campaign_tenant_limits (tenant_id, max_concurrent, dial_interval_ms, \
         next_dial_at, updated_at) VALUES ($1, $2, $3, 0, $4) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(i64::from(limits.max_concurrent))
    .bind(limits.dial_interval_ms)
    .bind(now_ms())
    .execute(&mut *conn)
    .await
    .map_err(|e| match classify(e) {
        WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
        WriteFailure::Unique => StoreError::conflict("tenant dial limits"),
        WriteFailure::Other(e) => StoreError::Database(e),
    })?;
    Ok(())
}

async fn count_live(conn: &mut AnyConnection, column: &str, value: &str) -> StoreResult<i64> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM campaign_contacts WHERE {column} = $1 \
         AND state IN ('dialing', 'in_call')"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("n")?)
}

impl SqlStore {
    // --- campaigns -------------------------------------------------------------------------------

    /// Creates a campaign with its contacts in one transaction (all or nothing). The agent must be
    /// the tenant's; numbers must be unique within the campaign.
    pub async fn create_campaign(
        &self,
        tenant: &TenantId,
        spec: &CampaignSpec,
        contacts: &[NewContact],
        rejected: &[RejectedRow],
    ) -> StoreResult<Campaign> {
        validate_spec(spec)?;
        if contacts.len() > MAX_CAMPAIGN_CONTACTS {
            return Err(StoreError::invalid(
                "campaign contacts",
                format!("at most {MAX_CAMPAIGN_CONTACTS}"),
            ));
        }
        let rejected_json = serde_json::to_string(rejected)
            .map_err(|e| StoreError::invalid("campaign rejected rows", e.to_string()))?;
        let id = new_id("cmp");
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        ensure_tenant_limits(&mut tx, tenant).await?;
        let row = sqlx::query(concat!(
            "INSERT INTO campaigns (id, tenant_id, name, agent_id, status, window_start_min, \
             window_end_min, window_days, dial_interval_ms, max_concurrent, max_attempts, \
             retry_delay_s, machine_action, voicemail_text, rejected_rows, next_dial_at, \
             created_at, updated_at) \
             SELECT $1, a.tenant_id, $3, a.id, 'active', $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, 0, $15, $15 FROM agents a WHERE a.tenant_id = $2 AND a.id = $4 RETURNING ",
            campaign_cols!()
        ))
        .bind(&id)
        .bind(tenant.as_str())
        .bind(&spec.name)
        .bind(&spec.agent_id)
        .bind(i64::from(spec.window.start_min))
        .bind(i64::from(spec.window.end_min))
        .bind(i64::from(spec.window.days_mask))
        .bind(spec.dial_interval_ms)
        .bind(i64::from(spec.max_concurrent))
        .bind(i64::from(spec.max_attempts))
        .bind(spec.retry_delay_s)
        .bind(spec.voicemail.as_ref().map(|v| v.action().as_str()))
        .bind(spec.voicemail.as_ref().and_then(Voicemail::message))
        .bind(rejected_json)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::not_found(format!("agent {} of tenant {tenant}", spec.agent_id))
        })?;
        let campaign = campaign_from_row(&row)?;
        for (chunk_index, chunk) in contacts.chunks(INSERT_CHUNK).enumerate() {
            // $1 campaign, $2 tenant, $3 now; then five parameters per contact.
            let mut sql = String::from(
                "INSERT INTO campaign_contacts (campaign_id, seq, tenant_id, line, e164, zones, \
                 variables, state, attempts, next_attempt_at, updated_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = 4 + i * 5;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "($1, ${p}, $2, ${}, ${}, ${}, ${}, 'pending', 0, 0, $3)",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                ));
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.clone())
                .bind(tenant.as_str().to_owned())
                .bind(now);
            for (i, contact) in chunk.iter().enumerate() {
                let variables = serde_json::to_string(&contact.variables)
                    .map_err(|e| StoreError::invalid("contact variables", e.to_string()))?;
                query = query
                    .bind(i64::try_from(chunk_index * INSERT_CHUNK + i).unwrap_or(i64::MAX))
                    .bind(i64::try_from(contact.line).unwrap_or(i64::MAX))
                    .bind(contact.e164.as_str().to_owned())
                    .bind(contact.zones.join(" "))
                    .bind(variables);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| match classify(e) {
                    WriteFailure::Unique => {
                        StoreError::conflict("a number appears twice in the campaign")
                    }
                    WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
                    WriteFailure::Other(e) => StoreError::Database(e),
                })?;
        }
        tx.commit().await?;
        Ok(campaign)
    }

    pub async fn campaign(&self, tenant: &TenantId, campaign_id: &str) -> StoreResult<Campaign> {
        let row = sqlx::query(concat!(
            "SELECT ",
            campaign_cols!(),
            " FROM campaigns WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(campaign_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| campaign_from_row(&r))
            .transpose()?
            .ok_or_else(|| not_found(campaign_id))
    }

    /// The tenant owning a campaign, by id alone (the operator's CLI and the admin key name a
    /// campaign without its tenant).
    pub async fn campaign_tenant(&self, campaign_id: &str) -> StoreResult<TenantId> {
        let row = sqlx::query("SELECT tenant_id FROM campaigns WHERE id = $1")
            .bind(campaign_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => tenant_id(&row, "tenant_id"),
            None => Err(not_found(campaign_id)),
        }
    }

    /// The tenant's campaigns, newest first.
    pub async fn list_campaigns(&self, tenant: &TenantId) -> StoreResult<Vec<Campaign>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            campaign_cols!(),
            " FROM campaigns WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await?;
        collect(rows, campaign_from_row)
    }

    /// Active campaigns of every tenant, oldest first. No tenant id by design: the dispatcher
    /// serves all tenants, and each claim is scoped to the campaign's own tenant.
    pub async fn active_campaigns(&self) -> StoreResult<Vec<Campaign>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            campaign_cols!(),
            " FROM campaigns WHERE status = 'active' ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        collect(rows, campaign_from_row)
    }

    /// Moves a campaign between statuses: pause (active → paused), resume (paused → active),
    /// cancel (active or paused → cancelled; its pending contacts are done with outcome
    /// `cancelled` in the same transaction, so nothing more is dialled). A move that does not apply
    /// to the current status is a Conflict.
    pub async fn set_campaign_status(
        &self,
        tenant: &TenantId,
        campaign_id: &str,
        to: CampaignStatus,
        now_ms: i64,
    ) -> StoreResult<Campaign> {
        let from: &[&str] = match to {
            CampaignStatus::Paused => &["active"],
            CampaignStatus::Active => &["paused"],
            CampaignStatus::Cancelled => &["active", "paused"],
            CampaignStatus::Completed => {
                return Err(StoreError::invalid(
                    "campaign status",
                    "a campaign completes by itself when every contact is done",
                ));
            }
        };
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "UPDATE campaigns SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 \
             AND status IN ({}) RETURNING {}",
            from.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", "),
            campaign_cols!()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(campaign_id)
            .bind(to.as_str())
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            drop(tx);
            let current = self.campaign(tenant, campaign_id).await?;
            return Err(StoreError::conflict(format!(
                "campaign {campaign_id} is {}; it cannot become {}",
                current.status.as_str(),
                to.as_str()
            )));
        };
        if to == CampaignStatus::Cancelled {
            sqlx::query(
                "UPDATE campaign_contacts SET state = 'done', outcome = 'cancelled', \
                 updated_at = $2 WHERE campaign_id = $1 AND state = 'pending'",
            )
            .bind(campaign_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        campaign_from_row(&row)
    }

    /// Marks active campaigns with no contact left to work on as completed; returns their ids.
    pub async fn complete_finished_campaigns(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE campaigns SET status = 'completed', updated_at = $1 WHERE status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM campaign_contacts cc WHERE cc.campaign_id = campaigns.id \
             AND cc.state <> 'done') RETURNING id",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    pub async fn campaign_counts(
        &self,
        tenant: &TenantId,
        campaign_id: &str,
    ) -> StoreResult<CampaignCounts> {
        let rows = sqlx::query(
            "SELECT state, outcome, COUNT(*) AS n FROM campaign_contacts \
             WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY state, outcome",
        )
        .bind(tenant.as_str())
        .bind(campaign_id)
        .fetch_all(self.pool())
        .await?;
        let mut counts = CampaignCounts::default();
        for row in rows {
            let state: String = row.try_get("state")?;
            let outcome: Option<String> = row.try_get("outcome")?;
            let n: u64 = int(&row, "n")?;
            counts.total += n;
            *counts.by_state.entry(state).or_default() += n;
            if let Some(outcome) = outcome {
                *counts.by_outcome.entry(outcome).or_default() += n;
            }
        }
        Ok(counts)
    }

    /// The campaign's contacts in file order, from `after_seq` (exclusive), at most `limit`.
    pub async fn campaign_contacts(
        &self,
        tenant: &TenantId,
        campaign_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<CampaignContact>> {
        let rows = sqlx::query(
            "SELECT cc.campaign_id, cc.seq, cc.line, cc.e164, cc.zones, cc.variables, cc.state, \
             cc.outcome, cc.attempts, cc.next_attempt_at, cc.call_id, cc.dialed_by, \
             cc.last_status, cc.last_error, o.answered_by, cc.waiting_reason \
             FROM campaign_contacts cc LEFT JOIN outbound_calls o ON o.call_id = cc.call_id \
             WHERE cc.tenant_id = $1 AND cc.campaign_id = $2 AND cc.seq > $3 \
             ORDER BY cc.seq LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(campaign_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        collect(rows, contact_from_row)
    }

    // --- tenant limits ---------------------------------------------------------------------------

    pub async fn tenant_dial_limits(&self, tenant: &TenantId) -> StoreResult<TenantDialLimits> {
        let row = sqlx::query(
            "SELECT max_concurrent, dial_interval_ms FROM campaign_tenant_limits \
             WHERE tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(TenantDialLimits {
                max_concurrent: int(&row, "max_concurrent")?,
                dial_interval_ms: row.try_get("dial_interval_ms")?,
            }),
            None => Ok(TenantDialLimits::default()),
        }
    }

    /// Sets the tenant's limits (an operator decision: not exposed to tenant keys).
    pub async fn set_tenant_dial_limits(
        &self,
        tenant: &TenantId,
        limits: TenantDialLimits,
    ) -> StoreResult<()> {
        if limits.max_concurrent == 0 || limits.max_concurrent > 10_000 {
            return Err(StoreError::invalid(
                "tenant max_concurrent",
                "must be 1 to 10000",
            ));
        }
        if !(0..=86_400_000).contains(&limits.dial_interval_ms) {
            return Err(StoreError::invalid(
                "tenant pacing",
                "the interval between dials must be 0 to 86400000 ms",
            ));
        }
        let mut conn = self.pool().acquire().await?;
        ensure_tenant_limits(&mut conn, tenant).await?;
        sqlx::query(
            "UPDATE campaign_tenant_limits SET max_concurrent = $2, dial_interval_ms = $3, \
             updated_at = $4 WHERE tenant_id = $1",
        )
        .bind(tenant.as_str())
        .bind(i64::from(limits.max_concurrent))
        .bind(limits.dial_interval_ms)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    // --- dispatch --------------------------------------------------------------------------------

    /// Claims the next due contact of a campaign for `node` (see the module docs), asking `decide`
    /// about each candidate in order. On `Claimed` the call record exists (outbound, queued, with
    /// the contact's variables) and the contact is `dialing` under a lease until
    /// `now_ms + lease_ms`.
    pub async fn claim_campaign_contact(
        &self,
        tenant: &TenantId,
        campaign_id: &str,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        mut decide: impl FnMut(&ClaimCandidate) -> Eligibility,
    ) -> StoreResult<ClaimResult> {
        let mut tx = self.pool().begin().await?;
        // Lock order: tenant row, then campaign row (every claimer takes them in this order).
        let limits = sqlx::query(
            "UPDATE campaign_tenant_limits SET next_dial_at = next_dial_at WHERE tenant_id = $1 \
             RETURNING max_concurrent, dial_interval_ms, next_dial_at",
        )
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(limits) = limits else {
            return Ok(ClaimResult::NotActive);
        };
        let campaign = sqlx::query(
            "UPDATE campaigns SET next_dial_at = next_dial_at WHERE tenant_id = $1 AND id = $2 \
             RETURNING status, agent_id, dial_interval_ms, max_concurrent, machine_action, \
             voicemail_text, next_dial_at",
        )
        .bind(tenant.as_str())
        .bind(campaign_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(campaign) = campaign else {
            return Ok(ClaimResult::NotActive);
        };
        let status: String = campaign.try_get("status")?;
        if status != CampaignStatus::Active.as_str() {
            return Ok(ClaimResult::NotActive);
        }
        let tenant_next: i64 = limits.try_get("next_dial_at")?;
        let campaign_next: i64 = campaign.try_get("next_dial_at")?;
        if tenant_next > now_ms || campaign_next > now_ms {
            return Ok(ClaimResult::Paced);
        }
        let tenant_cap: i64 = limits.try_get("max_concurrent")?;
        let campaign_cap: i64 = campaign.try_get("max_concurrent")?;
        if count_live(&mut tx, "tenant_id", tenant.as_str()).await? >= tenant_cap
            || count_live(&mut tx, "campaign_id", campaign_id).await? >= campaign_cap
        {
            return Ok(ClaimResult::AtCapacity);
        }
        let agent_id: String = campaign.try_get("agent_id")?;
        let from = sqlx::query(
            "SELECT e164 FROM phone_numbers WHERE tenant_id = $1 \
             ORDER BY CASE WHEN agent_id = $2 THEN 0 ELSE 1 END, e164 LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(&agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(from) = from else {
            return Ok(ClaimResult::NoCallerId);
        };
        let from = E164::parse(&from.try_get::<String, _>("e164")?)?;
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let sql = format!(
            "SELECT seq, e164, zones, variables, attempts FROM campaign_contacts \
             WHERE campaign_id = $1 AND state = 'pending' AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at, seq LIMIT {CLAIM_CANDIDATES}{lock}"
        );
        let candidates = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await?;
        let mut chosen = None;
        for row in &candidates {
            let seq: i64 = row.try_get("seq")?;
            let e164 = E164::parse(&row.try_get::<String, _>("e164")?)?;
            let on_do_not_call =
                sqlx::query("SELECT e164 FROM do_not_call WHERE tenant_id = $1 AND e164 = $2")
                    .bind(tenant.as_str())
                    .bind(e164.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            let candidate = ClaimCandidate {
                e164,
                zones: zones_from_text(&row.try_get::<String, _>("zones")?),
                attempts: int(row, "attempts")?,
                on_do_not_call,
            };
            match decide(&candidate) {
                Eligibility::Dial => {
                    let variables = variables_from_text(&row.try_get::<String, _>("variables")?)?;
                    chosen = Some((seq, candidate, variables));
                    break;
                }
                Eligibility::Defer { until_ms } => {
                    sqlx::query(
                        "UPDATE campaign_contacts SET next_attempt_at = $3, updated_at = $4, \
                         waiting_reason = 'outside_calling_window' \
                         WHERE campaign_id = $1 AND seq = $2",
                    )
                    .bind(campaign_id)
                    .bind(seq)
                    .bind(until_ms.max(now_ms + 1))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                Eligibility::Finish { outcome } => {
                    sqlx::query(
                        "UPDATE campaign_contacts SET state = 'done', outcome = $3, \
                         updated_at = $4 WHERE campaign_id = $1 AND seq = $2",
                    )
                    .bind(campaign_id)
                    .bind(seq)
                    .bind(outcome)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let Some((seq, candidate, variables)) = chosen else {
            tx.commit().await?;
            return Ok(ClaimResult::NothingDue);
        };
        let call = super::sql::insert_call(
            &mut tx,
            &super::NewCall {
                tenant_id: tenant.clone(),
                agent_id,
                direction: super::CallDirection::Outbound,
                from: from.as_str().to_owned(),
                to: candidate.e164.as_str().to_owned(),
                twilio_call_sid: None,
                status: CallStatus::Queued,
            },
        )
        .await?;
        let machine_action = campaign
            .try_get::<Option<String>, _>("machine_action")?
            .as_deref()
            .and_then(MachineAction::parse);
        let voicemail_text: Option<String> = campaign.try_get("voicemail_text")?;
        super::outbound::insert_outbound_call(
            &mut tx,
            tenant,
            &call.id,
            &variables,
            machine_action,
            voicemail_text.as_deref(),
        )
        .await?;
        sqlx::query(
            "UPDATE campaign_contacts SET state = 'dialing', attempts = attempts + 1, \
             lease_owner = $3, lease_until = $4, claimed_at = $5, call_id = $6, dialed_by = $3, \
             last_error = NULL, waiting_reason = NULL, updated_at = $5 \
             WHERE campaign_id = $1 AND seq = $2",
        )
        .bind(campaign_id)
        .bind(seq)
        .bind(node)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(&call.id)
        .execute(&mut *tx)
        .await?;
        let tenant_interval: i64 = limits.try_get("dial_interval_ms")?;
        let campaign_interval: i64 = campaign.try_get("dial_interval_ms")?;
        sqlx::query("UPDATE campaign_tenant_limits SET next_dial_at = $2 WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .bind(now_ms + tenant_interval)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE campaigns SET next_dial_at = $2 WHERE id = $1")
            .bind(campaign_id)
            .bind(now_ms + campaign_interval)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ClaimResult::Claimed(ClaimedContact {
            campaign_id: campaign_id.to_owned(),
            tenant_id: tenant.clone(),
            seq,
            to: candidate.e164,
            from,
            call_id: call.id,
            machine_action,
            attempts: candidate.attempts + 1,
        }))
    }

    /// Twilio accepted the call: `dialing` → `in_call`, first checked for its status at
    /// `check_at_ms`. False when `node` no longer holds the lease (nothing changes).
    pub async fn contact_dialed(
        &self,
        attempt: LeasedAttempt<'_>,
        now_ms: i64,
        check_at_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE campaign_contacts SET state = 'in_call', lease_owner = NULL, \
             lease_until = $5, updated_at = $6 WHERE campaign_id = $1 AND seq = $2 \
             AND call_id = $3 AND lease_owner = $4 AND state = 'dialing'",
        )
        .bind(attempt.campaign_id)
        .bind(attempt.seq)
        .bind(attempt.call_id)
        .bind(attempt.node)
        .bind(check_at_ms)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The call was certainly not placed: back to `pending` for `retry_at_ms` (the attempt is not
    /// counted), or done with `outcome`. False when `node` no longer holds the lease.
    pub async fn contact_not_placed(
        &self,
        attempt: LeasedAttempt<'_>,
        now_ms: i64,
        next: Settlement,
        error: &str,
    ) -> StoreResult<bool> {
        let error: String = error.chars().take(500).collect();
        let (state, outcome, at) = next.columns(now_ms);
        let done = sqlx::query(
            "UPDATE campaign_contacts SET state = $5, outcome = $6, next_attempt_at = $7, \
             attempts = CASE WHEN $5 = 'pending' THEN attempts - 1 ELSE attempts END, \
             lease_owner = NULL, lease_until = NULL, last_error = $8, updated_at = $9, \
             waiting_reason = CASE WHEN $5 = 'pending' THEN 'not_placed' ELSE NULL END \
             WHERE campaign_id = $1 AND seq = $2 AND call_id = $3 AND lease_owner = $4 \
             AND state = 'dialing'",
        )
        .bind(attempt.campaign_id)
        .bind(attempt.seq)
        .bind(attempt.call_id)
        .bind(attempt.node)
        .bind(state)
        .bind(outcome)
        .bind(at)
        .bind(error)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes over up to `limit` `dialing` contacts whose lease ran out (their node died or lost its
    /// answer), leasing them to `node` until `now_ms + lease_ms`.
    pub async fn take_expired_dialing(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ExpiredDial>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT cc.campaign_id, cc.seq, cc.tenant_id, cc.call_id, cc.claimed_at, \
             c.to_number, c.from_number, c.twilio_call_sid FROM campaign_contacts cc \
             JOIN calls c ON c.id = cc.call_id \
             WHERE cc.state = 'dialing' AND cc.lease_until <= $1 \
             ORDER BY cc.lease_until LIMIT {limit}",
        )))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        let mut taken = Vec::new();
        for row in rows {
            let campaign_id: String = row.try_get("campaign_id")?;
            let seq: i64 = row.try_get("seq")?;
            let call_id: String = row.try_get("call_id")?;
            let done = sqlx::query(
                "UPDATE campaign_contacts SET lease_owner = $4, lease_until = $5 \
                 WHERE campaign_id = $1 AND seq = $2 AND call_id = $3 AND state = 'dialing' \
                 AND lease_until <= $6",
            )
            .bind(&campaign_id)
            .bind(seq)
            .bind(&call_id)
            .bind(node)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .execute(self.pool())
            .await?;
            if done.rows_affected() == 0 {
                continue; // another node took it first
            }
            taken.push(ExpiredDial {
                campaign_id,
                tenant_id: tenant_id(&row, "tenant_id")?,
                seq,
                call_id,
                to: E164::parse(&row.try_get::<String, _>("to_number")?)?,
                from: E164::parse(&row.try_get::<String, _>("from_number")?)?,
                call_sid: row.try_get("twilio_call_sid")?,
                claimed_at_ms: row.try_get::<Option<i64>, _>("claimed_at")?.unwrap_or(0),
            });
        }
        Ok(taken)
    }

    /// Contacts whose current call has reached a final status, with what deciding needs.
    pub async fn finished_attempts(&self, limit: u32) -> StoreResult<Vec<FinishedAttempt>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT cc.campaign_id, cc.seq, cc.call_id, cc.attempts, c.status, c.end_reason, \
             o.answered_by, ca.max_attempts, ca.retry_delay_s, \
             (SELECT COUNT(*) FROM do_not_call d WHERE d.tenant_id = cc.tenant_id \
              AND d.e164 = cc.e164) AS dnc \
             FROM campaign_contacts cc JOIN calls c ON c.id = cc.call_id \
             JOIN campaigns ca ON ca.id = cc.campaign_id \
             LEFT JOIN outbound_calls o ON o.call_id = cc.call_id \
             WHERE cc.state = 'in_call' \
             AND c.status IN ('completed', 'busy', 'no-answer', 'failed', 'canceled') \
             ORDER BY cc.campaign_id, cc.seq LIMIT {limit}",
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let dnc: i64 = row.try_get("dnc")?;
                Ok(FinishedAttempt {
                    campaign_id: row.try_get("campaign_id")?,
                    seq: row.try_get("seq")?,
                    call_id: row.try_get("call_id")?,
                    status: CallStatus::parse(&status).ok_or_else(|| {
                        corrupt("calls.status", format!("unknown value {status:?}"))
                    })?,
                    end_reason: row.try_get("end_reason")?,
                    answered_by: row.try_get("answered_by")?,
                    attempts: int(row, "attempts")?,
                    max_attempts: int(row, "max_attempts")?,
                    retry_delay_s: row.try_get("retry_delay_s")?,
                    on_do_not_call: dnc > 0,
                })
            })
            .collect()
    }

    /// Applies the decision about a finished attempt. False when the contact moved on already
    /// (another node settled it).
    pub async fn settle_attempt(
        &self,
        attempt: &FinishedAttempt,
        settlement: &Settlement,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (state, outcome, at) = settlement.columns(now_ms);
        let done = sqlx::query(
            "UPDATE campaign_contacts SET state = $4, outcome = $5, next_attempt_at = $6, \
             last_status = $7, lease_owner = NULL, lease_until = NULL, updated_at = $8, \
             waiting_reason = $9 \
             WHERE campaign_id = $1 AND seq = $2 AND call_id = $3 AND state = 'in_call'",
        )
        .bind(&attempt.campaign_id)
        .bind(attempt.seq)
        .bind(&attempt.call_id)
        .bind(state)
        .bind(outcome)
        .bind(at)
        .bind(attempt.status.as_str())
        .bind(now_ms)
        .bind((state == "pending").then(|| format!("retry_after_{}", attempt.status.as_str())))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `in_call` contacts whose call is not final and whose next check is due; each is pushed to
    /// `next_check_ms` as it is handed out, so every call is looked at by one node per period.
    pub async fn calls_to_check(
        &self,
        now_ms: i64,
        next_check_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<CallToCheck>> {
        // LIMIT as a literal: see "Polled queries" in the `store` module docs.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT cc.campaign_id, cc.seq, cc.call_id, c.twilio_call_sid \
             FROM campaign_contacts cc JOIN calls c ON c.id = cc.call_id \
             WHERE cc.state = 'in_call' AND cc.lease_until <= $1 \
             AND c.status NOT IN ('completed', 'busy', 'no-answer', 'failed', 'canceled') \
             ORDER BY cc.lease_until LIMIT {limit}",
        )))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        let mut due = Vec::new();
        for row in rows {
            let check = CallToCheck {
                campaign_id: row.try_get("campaign_id")?,
                seq: row.try_get("seq")?,
                call_id: row.try_get("call_id")?,
                call_sid: row.try_get("twilio_call_sid")?,
            };
            let done = sqlx::query(
                "UPDATE campaign_contacts SET lease_until = $4 WHERE campaign_id = $1 \
                 AND seq = $2 AND call_id = $3 AND state = 'in_call' AND lease_until <= $5",
            )
            .bind(&check.campaign_id)
            .bind(check.seq)
            .bind(&check.call_id)
            .bind(next_check_ms)
            .bind(now_ms)
            .execute(self.pool())
            .await?;
            if done.rows_affected() > 0 {
                due.push(check);
            }
        }
        Ok(due)
    }

    /// Whether any call record carries this Twilio SID (reconciliation must not adopt a call that
    /// belongs to another record). No tenant id: SIDs are unique across the account.
    pub async fn call_sid_known(&self, call_sid: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT id FROM calls WHERE twilio_call_sid = $1")
            .bind(call_sid)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}

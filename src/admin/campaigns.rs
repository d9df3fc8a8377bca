//! Campaign administration for the API and the CLI: create a campaign from a CSV file, read its
//! settings and progress, pause, resume or cancel it, export its results as CSV, and the tenant's
//! dialling limits. It turns requests into store calls (`store::campaigns`) and store rows into
//! views; it must not dial, decide retries or read contacts into memory all at once (the export
//! pages through them).
//!
//! Scoping: a tenant key only ever sees its own tenant's campaigns (another tenant's campaign id
//! answers NotFound, like a missing one); the admin key names the tenant in the request, or, for
//! a campaign id, gets the campaign's own tenant.

use jiff::Timestamp;
use tracing::info;

use crate::campaign::Voicemail;
use crate::campaign::csv_cell::neutralise;
use crate::campaign::import::{ImportError, parse_contacts};
use crate::campaign::window::CallingWindow;
use crate::store::Store as _;
use crate::store::{
    CampaignContact, CampaignSpec, CampaignStatus, NewContact, RejectedRow, SqlStore,
    TenantDialLimits, TenantId,
};

use super::{AdminService, Principal, ServiceError};
use crate::admin::dto::*;

/// Largest CSV file a campaign is created from.
pub const MAX_CAMPAIGN_CSV_BYTES: usize = 10 * 1024 * 1024;
/// Highest pacing a campaign or tenant may ask for.
pub const MAX_CALLS_PER_SECOND: f64 = 100.0;
/// Contacts read from the store per page of the results export.
pub const EXPORT_PAGE: u32 = 1000;
/// The export's columns before the contact's variables (each as `var.NAME`).
pub const EXPORT_COLUMNS: &[&str] = &[
    "line",
    "phone",
    "state",
    "outcome",
    "attempts",
    "last_status",
    "answered_by",
    "call_id",
    "dialed_by",
    "last_error",
    "waiting_reason",
    "next_attempt_at",
];

/// A status change asked for by an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignMove {
    Pause,
    Resume,
    Cancel,
}

impl CampaignMove {
    fn target(self) -> CampaignStatus {
        match self {
            Self::Pause => CampaignStatus::Paused,
            Self::Resume => CampaignStatus::Active,
            Self::Cancel => CampaignStatus::Cancelled,
        }
    }
}

/// The interval between dials for a pacing of `cps` calls per second.
fn dial_interval_ms(field: &str, cps: f64) -> Result<i64, ServiceError> {
    if !(cps.is_finite() && cps > 0.0 && cps <= MAX_CALLS_PER_SECOND) {
        return Err(ServiceError::invalid(
            field,
            format!("must be more than 0 and at most {MAX_CALLS_PER_SECOND}"),
        ));
    }
    // At most 100 cps, so at least 10 ms: the rounding never reaches 0 (unpaced).
    Ok((1000.0 / cps).round() as i64)
}

fn limits_view(tenant: &TenantId, limits: TenantDialLimits) -> DialLimitsView {
    DialLimitsView {
        tenant_id: tenant.to_string(),
        max_concurrent: limits.max_concurrent,
        calls_per_second: calls_per_second(limits.dial_interval_ms),
        dial_interval_ms: limits.dial_interval_ms,
    }
}

fn invalid_csv(message: impl Into<String>, rejected: Vec<RejectedRow>) -> ServiceError {
    ServiceError::InvalidCsv {
        message: message.into(),
        rejected,
    }
}

/// The accepted and rejected rows of a contacts file, per the request's strictness.
fn import_contacts(
    csv: &str,
    strict: bool,
) -> Result<(Vec<NewContact>, Vec<RejectedRow>), ServiceError> {
    if csv.len() > MAX_CAMPAIGN_CSV_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "the CSV file is {} bytes; the limit is {MAX_CAMPAIGN_CSV_BYTES} (10 MiB): split it \
             into several campaigns",
            csv.len()
        )));
    }
    let report = parse_contacts(csv.as_bytes()).map_err(|e| match e {
        ImportError::Header(_) | ImportError::TooManyRows => invalid_csv(e.to_string(), vec![]),
    })?;
    let rejected: Vec<RejectedRow> = report
        .errors
        .into_iter()
        .map(|e| RejectedRow {
            line: e.line,
            message: e.message,
        })
        .collect();
    if strict && !rejected.is_empty() {
        return Err(invalid_csv(
            format!(
                "{} row(s) are invalid and strict is set: nothing was imported",
                rejected.len()
            ),
            rejected,
        ));
    }
    if report.contacts.is_empty() {
        return Err(invalid_csv("the file has no valid contact", rejected));
    }
    let contacts = report
        .contacts
        .into_iter()
        .map(|c| NewContact {
            line: c.line,
            e164: c.number,
            zones: c.zones.iter().map(|z| z.name().to_owned()).collect(),
            variables: c.variables,
        })
        .collect();
    Ok((contacts, rejected))
}

impl AdminService {
    /// The tenant whose campaign `campaign_id` is, if `who` may see it; NotFound otherwise.
    async fn campaign_tenant(
        &self,
        who: &Principal,
        campaign_id: &str,
    ) -> Result<TenantId, ServiceError> {
        match who {
            // The tenant-scoped read answers NotFound for another tenant's campaign.
            Principal::Tenant(own) => Ok(self.store.campaign(own, campaign_id).await?.tenant_id),
            Principal::Admin => Ok(self.store.campaign_tenant(campaign_id).await?),
        }
    }

    async fn campaign_view(
        &self,
        tenant: &TenantId,
        campaign: crate::store::Campaign,
        with_rejected: bool,
    ) -> Result<CampaignView, ServiceError> {
        let counts = self.store.campaign_counts(tenant, &campaign.id).await?;
        Ok(CampaignView::new(campaign, counts, with_rejected))
    }

    /// Creates a campaign from a CSV file: bad rows are reported (and stored with the campaign),
    /// or refuse the whole file when `strict`.
    pub async fn create_campaign(
        &self,
        who: &Principal,
        req: CreateCampaignRequest,
    ) -> Result<CampaignView, ServiceError> {
        let tenant = self.requested_tenant(who, req.tenant.as_deref()).await?;
        let agent_id = self.find_agent(&tenant, &req.agent).await?;
        let window = CallingWindow::parse(&req.window.hours, &req.window.days)
            .map_err(|e| ServiceError::invalid("window", e.to_string()))?;
        let dial_interval_ms = dial_interval_ms("calls_per_second", req.calls_per_second)?;
        let agent_voicemail = self.store.agent(&tenant, &agent_id).await?.spec.voicemail;
        let voicemail = voicemail_choice(req.voicemail.as_ref())?.resolve(agent_voicemail);
        let spec = CampaignSpec {
            name: req.name,
            agent_id,
            window: window.to_spec(),
            dial_interval_ms,
            max_concurrent: req.max_concurrent,
            max_attempts: req.max_attempts,
            retry_delay_s: req.retry_delay_secs,
            voicemail,
        };
        let (contacts, rejected) = import_contacts(&req.csv, req.strict)?;
        let campaign = self
            .store
            .create_campaign(&tenant, &spec, &contacts, &rejected)
            .await?;
        info!(tenant = %tenant, campaign = %campaign.id, contacts = contacts.len(),
            rejected = rejected.len(), "campaign created");
        self.campaign_view(&tenant, campaign, true).await
    }

    /// The tenant's campaigns, newest first (rejected rows omitted; see `rejected_count`).
    pub async fn list_campaigns(
        &self,
        who: &Principal,
        tenant: Option<&str>,
    ) -> Result<Vec<CampaignView>, ServiceError> {
        let tenant = self.requested_tenant(who, tenant).await?;
        let mut views = Vec::new();
        for campaign in self.store.list_campaigns(&tenant).await? {
            views.push(self.campaign_view(&tenant, campaign, false).await?);
        }
        Ok(views)
    }

    pub async fn get_campaign(
        &self,
        who: &Principal,
        campaign_id: &str,
    ) -> Result<CampaignView, ServiceError> {
        let tenant = self.campaign_tenant(who, campaign_id).await?;
        let campaign = self.store.campaign(&tenant, campaign_id).await?;
        self.campaign_view(&tenant, campaign, true).await
    }

    /// Pause, resume or cancel. Cancelling finishes every pending contact as `cancelled`; calls
    /// already in progress finish normally. A move the current status does not allow is a
    /// Conflict naming the status.
    pub async fn move_campaign(
        &self,
        who: &Principal,
        campaign_id: &str,
        to: CampaignMove,
    ) -> Result<CampaignView, ServiceError> {
        let tenant = self.campaign_tenant(who, campaign_id).await?;
        let campaign = self
            .store
            .set_campaign_status(
                &tenant,
                campaign_id,
                to.target(),
                Timestamp::now().as_millisecond(),
            )
            .await?;
        info!(tenant = %tenant, campaign = campaign_id, status = campaign.status.as_str(),
            "campaign status changed");
        self.campaign_view(&tenant, campaign, true).await
    }

    /// The results export of a campaign, read page by page as it is written.
    pub async fn export_campaign_results(
        &self,
        who: &Principal,
        campaign_id: &str,
    ) -> Result<ResultsExport, ServiceError> {
        let tenant = self.campaign_tenant(who, campaign_id).await?;
        let first = self
            .store
            .campaign_contacts(&tenant, campaign_id, -1, EXPORT_PAGE)
            .await?;
        // Every contact of a campaign comes from one file, so they all carry the same variables.
        let variables = first
            .first()
            .map(|c| c.variables.keys().cloned().collect())
            .unwrap_or_default();
        Ok(ResultsExport {
            store: self.store.clone(),
            tenant,
            campaign_id: campaign_id.to_owned(),
            variables,
            next_page: Some(first),
            after_seq: -1,
            header_written: false,
            rows: 0,
        })
    }

    pub async fn get_dial_limits(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<DialLimitsView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(limits_view(&id, self.store.tenant_dial_limits(&id).await?))
    }

    /// Sets the tenant's limits across all its campaigns (operator only).
    pub async fn put_dial_limits(
        &self,
        who: &Principal,
        tenant: &str,
        req: DialLimitsRequest,
    ) -> Result<DialLimitsView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Self::admin_only(who, "setting a tenant's dial limits")?;
        let limits = TenantDialLimits {
            max_concurrent: req.max_concurrent,
            dial_interval_ms: dial_interval_ms("calls_per_second", req.calls_per_second)?,
        };
        self.store.set_tenant_dial_limits(&id, limits).await?;
        info!(tenant = %id, max_concurrent = limits.max_concurrent,
            dial_interval_ms = limits.dial_interval_ms, "tenant dial limits set");
        Ok(limits_view(&id, self.store.tenant_dial_limits(&id).await?))
    }
}

/// A campaign's results as CSV, produced one page of contacts at a time: a header, then one row
/// per contact in file order.
pub struct ResultsExport {
    store: SqlStore,
    tenant: TenantId,
    campaign_id: String,
    variables: Vec<String>,
    /// Read but not written yet (the first page is read up front for the variable names).
    next_page: Option<Vec<CampaignContact>>,
    after_seq: i64,
    header_written: bool,
    rows: u64,
}

impl std::fmt::Debug for ResultsExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsExport")
            .field("campaign_id", &self.campaign_id)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl ResultsExport {
    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    /// Contact rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The export's header: [`EXPORT_COLUMNS`], then `var.NAME` per variable.
    pub fn header(&self) -> Vec<String> {
        EXPORT_COLUMNS
            .iter()
            .map(|c| (*c).to_owned())
            .chain(self.variables.iter().map(|v| format!("var.{v}")))
            .collect()
    }

    /// The next part of the file (the header comes with the first); `None` once all is written.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ServiceError> {
        let page = match self.next_page.take() {
            Some(page) => page,
            None if self.after_seq == i64::MAX => return Ok(None),
            None => {
                self.store
                    .campaign_contacts(&self.tenant, &self.campaign_id, self.after_seq, EXPORT_PAGE)
                    .await?
            }
        };
        if page.is_empty() && self.header_written {
            return Ok(None);
        }
        let mut out = csv::Writer::from_writer(Vec::new());
        let csv_error = |e: csv::Error| ServiceError::Internal(format!("writing CSV: {e}"));
        // Every cell is spreadsheet-safe: contact files and callers put text here.
        let safe = |cells: Vec<String>| {
            cells
                .into_iter()
                .map(|c| neutralise(&c).into_owned())
                .collect::<Vec<_>>()
        };
        if !self.header_written {
            out.write_record(safe(self.header())).map_err(csv_error)?;
            self.header_written = true;
        }
        for contact in &page {
            out.write_record(safe(self.row(contact)))
                .map_err(csv_error)?;
            self.rows += 1;
        }
        // A short page is the last: no need to ask for an empty one.
        self.after_seq = match page.last() {
            Some(last) if page.len() >= EXPORT_PAGE as usize => last.seq,
            _ => i64::MAX,
        };
        out.into_inner()
            .map(Some)
            .map_err(|e| ServiceError::Internal(format!("writing CSV: {e}")))
    }

    fn row(&self, c: &CampaignContact) -> Vec<String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut row = vec![
            c.line.to_string(),
            c.e164.as_str().to_owned(),
            c.state.as_str().to_owned(),
            text(&c.outcome),
            c.attempts.to_string(),
            text(&c.last_status),
            text(&c.answered_by),
            text(&c.call_id),
            text(&c.dialed_by),
            text(&c.last_error),
            text(&c.waiting_reason),
            // Only a contact that waits (a reason) has a next attempt time.
            if c.waiting_reason.is_some() && c.state.as_str() == "pending" {
                c.next_attempt_at.to_string()
            } else {
                String::new()
            },
        ];
        row.extend(
            self.variables
                .iter()
                .map(|name| c.variables.get(name).cloned().unwrap_or_default()),
        );
        row
    }
}

/// What to do on an answering machine, from the request's option.
/// What a request says about answering machine detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum VoicemailChoice {
    /// Not given: the agent's setting applies.
    AgentDefault,
    /// `{"action": "none"}`: no detection, whatever the agent says.
    Off,
    Use(Voicemail),
}

impl VoicemailChoice {
    /// The treatment to apply, given the agent's own.
    pub(super) fn resolve(self, agent_default: Option<Voicemail>) -> Option<Voicemail> {
        match self {
            Self::AgentDefault => agent_default,
            Self::Off => None,
            Self::Use(voicemail) => Some(voicemail),
        }
    }
}

/// Parses the `voicemail` option of calls, campaigns and agents.
pub(super) fn voicemail_choice(
    option: Option<&VoicemailOption>,
) -> Result<VoicemailChoice, ServiceError> {
    let Some(option) = option else {
        return Ok(VoicemailChoice::AgentDefault);
    };
    match (option.action.as_str(), &option.message) {
        ("none", _) => Ok(VoicemailChoice::Off),
        ("hangup", _) => Ok(VoicemailChoice::Use(Voicemail::HangUp)),
        ("message", Some(text)) if !text.trim().is_empty() => {
            Ok(VoicemailChoice::Use(Voicemail::LeaveMessage(text.clone())))
        }
        ("message", _) => Err(ServiceError::invalid(
            "voicemail.message",
            "required when action is message",
        )),
        _ => Err(ServiceError::invalid(
            "voicemail.action",
            "must be none, hangup or message",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_is_bounded_and_becomes_an_interval() {
        assert_eq!(dial_interval_ms("cps", 1.0).ok(), Some(1000));
        assert_eq!(dial_interval_ms("cps", 3.0).ok(), Some(333));
        assert_eq!(dial_interval_ms("cps", 100.0).ok(), Some(10));
        assert_eq!(dial_interval_ms("cps", 0.25).ok(), Some(4000));
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    dial_interval_ms("cps", bad),
                    Err(ServiceError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn strict_imports_refuse_any_bad_row_and_empty_files_are_refused() {
        let csv = "phone,name\n+14155552671,Ana\n+1555,Bob\n";
        let (contacts, rejected) = import_contacts(csv, false).expect("lenient import");
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].zones.len(), 7, "US numbers get every US zone");
        assert_eq!(rejected[0].line, 3);
        match import_contacts(csv, true) {
            Err(ServiceError::InvalidCsv { rejected, .. }) => assert_eq!(rejected[0].line, 3),
            other => panic!("{other:?}"),
        }
        match import_contacts("phone\n+1555\n", false) {
            Err(ServiceError::InvalidCsv { rejected, message }) => {
                assert_eq!(rejected.len(), 1);
                assert!(message.contains("no valid contact"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            import_contacts("name\nAna\n", false),
            Err(ServiceError::InvalidCsv { .. })
        ));
        let huge = "x".repeat(MAX_CAMPAIGN_CSV_BYTES + 1);
        assert!(matches!(
            import_contacts(&huge, false),
            Err(ServiceError::TooLarge(_))
        ));
    }
}

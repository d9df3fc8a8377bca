//! Rows mapping a calendar booking to the CRM meeting that records it, so that rescheduling or
//! cancelling the booking can update that meeting.
//!
//! It must not talk to a CRM or a calendar (that is [`crate::tools::capabilities`]); it stores and
//! moves rows. Methods are inherent on [`SqlStore`] like the outbox: only the capability tools use
//! them, through the seam in `crate::tools::meeting_links`. Every method takes the [`TenantId`]
//! and filters by it.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::validate_text;
use super::sql::{now_ms, timestamp};
use super::{SqlStore, StoreError, StoreResult, TenantId};

const COLUMNS: &str = "booking_ref, crm, meeting_id, created_at, updated_at";
/// Longest booking reference or meeting id kept: vendor ids are far shorter; anything longer is
/// not an id.
const MAX_REF_CHARS: usize = 256;

/// One booking's CRM meeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrmMeetingLink {
    /// The calendar's booking reference, as its connector returned it.
    pub booking_ref: String,
    /// The CRM connector holding the meeting (`hubspot`).
    pub crm: String,
    /// The CRM's id of the meeting.
    pub meeting_id: String,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

fn link_from_row(row: &AnyRow) -> StoreResult<CrmMeetingLink> {
    Ok(CrmMeetingLink {
        booking_ref: row.try_get("booking_ref")?,
        crm: row.try_get("crm")?,
        meeting_id: row.try_get("meeting_id")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

fn write_error(tenant: &TenantId, what: &str, err: sqlx::Error) -> StoreError {
    match classify(err) {
        WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
        WriteFailure::Unique => StoreError::conflict(what.to_owned()),
        WriteFailure::Other(err) => StoreError::Database(err),
    }
}

impl SqlStore {
    /// Records that `meeting_id` in `crm` is the meeting of `booking_ref`. Recording the same
    /// booking again replaces its meeting (the latest write is the one the CRM holds).
    pub async fn put_crm_meeting(
        &self,
        tenant: &TenantId,
        booking_ref: &str,
        crm: &str,
        meeting_id: &str,
    ) -> StoreResult<CrmMeetingLink> {
        validate_text("booking reference", booking_ref, MAX_REF_CHARS)?;
        validate_text("CRM", crm, 64)?;
        validate_text("meeting id", meeting_id, MAX_REF_CHARS)?;
        let now = now_ms();
        let sql = format!(
            "INSERT INTO crm_meetings (tenant_id, booking_ref, crm, meeting_id, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant_id, booking_ref) \
             DO UPDATE SET crm = $3, meeting_id = $4, updated_at = $5 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(booking_ref)
            .bind(crm)
            .bind(meeting_id)
            .bind(now)
            .fetch_one(self.pool())
            .await
            .map_err(|err| write_error(tenant, "CRM meeting of that booking", err))?;
        link_from_row(&row)
    }

    /// The meeting recorded for `booking_ref`, if any.
    pub async fn crm_meeting(
        &self,
        tenant: &TenantId,
        booking_ref: &str,
    ) -> StoreResult<Option<CrmMeetingLink>> {
        let sql =
            format!("SELECT {COLUMNS} FROM crm_meetings WHERE tenant_id = $1 AND booking_ref = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(booking_ref)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// Files the meeting of `from_ref` under `to_ref`, for a calendar that gives a rescheduled
    /// booking a new reference. Returns the moved row, or `None` when `from_ref` has no meeting.
    /// `to_ref` already holding a meeting → [`StoreError::Conflict`], and nothing moves.
    pub async fn move_crm_meeting(
        &self,
        tenant: &TenantId,
        from_ref: &str,
        to_ref: &str,
    ) -> StoreResult<Option<CrmMeetingLink>> {
        validate_text("booking reference", to_ref, MAX_REF_CHARS)?;
        let sql = format!(
            "UPDATE crm_meetings SET booking_ref = $3, updated_at = $4 \
             WHERE tenant_id = $1 AND booking_ref = $2 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(from_ref)
            .bind(to_ref)
            .bind(now_ms())
            .fetch_optional(self.pool())
            .await
            .map_err(|err| write_error(tenant, "CRM meeting of the new booking reference", err))?;
        row.as_ref().map(link_from_row).transpose()
    }
}

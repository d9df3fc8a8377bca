//! Which CRM meeting records which booking: the seam between the calendar tools and the store's
//! `crm_meetings` table, so `reschedule_appointment` and `cancel_appointment` can find the meeting
//! `book_appointment` recorded.
//!
//! Owns: the small [`MeetingLinks`] trait the capability tools see (so they never depend on the
//! database) and its implementation over [`SqlStore`]. It must not talk to a CRM or a calendar,
//! and must not decide what a missing link means (the tools skip the CRM step).

use std::sync::Arc;

use crate::store::{SqlStore, StoreError, TenantId};

/// A booking's meeting in a CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingLink {
    /// The CRM connector holding the meeting (`hubspot`): an id means nothing to another CRM.
    pub crm: String,
    pub meeting_id: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeetingLinkError {
    #[error("meeting link storage failed: {0}")]
    Store(#[from] StoreError),
}

/// Where the capability tools keep booking → CRM meeting links, per tenant.
#[async_trait::async_trait]
pub trait MeetingLinks: Send + Sync {
    /// Records `link` as the meeting of `booking_ref` (replacing an earlier one).
    async fn remember(
        &self,
        tenant: &str,
        booking_ref: &str,
        link: &MeetingLink,
    ) -> Result<(), MeetingLinkError>;

    /// The meeting of `booking_ref`, if one was recorded.
    async fn find(
        &self,
        tenant: &str,
        booking_ref: &str,
    ) -> Result<Option<MeetingLink>, MeetingLinkError>;

    /// Files the meeting of `from_ref` under `to_ref` (a calendar that gives a rescheduled booking
    /// a new reference).
    async fn refile(
        &self,
        tenant: &str,
        from_ref: &str,
        to_ref: &str,
    ) -> Result<(), MeetingLinkError>;
}

pub type SharedMeetingLinks = Arc<dyn MeetingLinks>;

#[async_trait::async_trait]
impl MeetingLinks for SqlStore {
    async fn remember(
        &self,
        tenant: &str,
        booking_ref: &str,
        link: &MeetingLink,
    ) -> Result<(), MeetingLinkError> {
        let tenant = TenantId::parse(tenant)?;
        self.put_crm_meeting(&tenant, booking_ref, &link.crm, &link.meeting_id)
            .await?;
        Ok(())
    }

    async fn find(
        &self,
        tenant: &str,
        booking_ref: &str,
    ) -> Result<Option<MeetingLink>, MeetingLinkError> {
        let tenant = TenantId::parse(tenant)?;
        Ok(self
            .crm_meeting(&tenant, booking_ref)
            .await?
            .map(|row| MeetingLink {
                crm: row.crm,
                meeting_id: row.meeting_id,
            }))
    }

    async fn refile(
        &self,
        tenant: &str,
        from_ref: &str,
        to_ref: &str,
    ) -> Result<(), MeetingLinkError> {
        let tenant = TenantId::parse(tenant)?;
        self.move_crm_meeting(&tenant, from_ref, to_ref).await?;
        Ok(())
    }
}

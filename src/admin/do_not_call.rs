//! A tenant's do-not-call list: list, add, remove. Numbers on it are never dialled by an outbound
//! call or a campaign (the dialer checks the same rows); callers who ask to opt out during a call
//! land on it through the `opt_out` tool.
//!
//! It must not dial or decide campaign policy; it validates and maps rows to views.

use tracing::info;

use crate::store::E164;

use super::dto::{DoNotCallRequest, DoNotCallView};
use super::{AdminService, Principal, ServiceError};

impl AdminService {
    pub async fn list_do_not_call(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<DoNotCallView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(super::views(self.store().list_do_not_call(&id).await?))
    }

    /// Adds a number (idempotent: adding it again keeps the first entry and its reason).
    pub async fn add_do_not_call(
        &self,
        who: &Principal,
        tenant: &str,
        req: DoNotCallRequest,
    ) -> Result<DoNotCallView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let number = E164::parse(&req.number)?;
        let reason = req.reason.unwrap_or_else(|| "added by operator".into());
        self.store().add_do_not_call(&id, &number, &reason).await?;
        info!(tenant = %id, "number added to the do-not-call list");
        crate::notify::emit_opt_out(self.store(), &id, number.as_str(), "by an operator").await;
        self.store()
            .list_do_not_call(&id)
            .await?
            .into_iter()
            .find(|e| e.e164 == number)
            .map(Into::into)
            .ok_or_else(|| ServiceError::Internal("entry not found after insert".into()))
    }

    pub async fn remove_do_not_call(
        &self,
        who: &Principal,
        tenant: &str,
        number: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let not_found = || ServiceError::NotFound(format!("do-not-call entry {number:?}"));
        let parsed = E164::parse(number).map_err(|_| not_found())?;
        if !self.store().remove_do_not_call(&id, &parsed).await? {
            return Err(not_found());
        }
        info!(tenant = %id, "number removed from the do-not-call list");
        Ok(())
    }
}

//! The seam between `create_coupon` and the store's `coupon_reservations` table: the tenant's
//! daily coupon cap is counted here, exactly, before the coupon vendor is asked.
//!
//! Owns: the small [`CouponSlots`] trait the capability tools see (so they never depend on the
//! database) and its implementation over [`SqlStore`]. It must not talk to a vendor or choose the
//! cap (the connector's [`crate::connectors::CouponCaps`] does).

use std::sync::Arc;

use crate::store::{SqlStore, StoreError, TenantId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CouponSlotError {
    #[error("coupon slot storage failed: {0}")]
    Store(#[from] StoreError),
}

/// Where `create_coupon` reserves its per-tenant daily slots.
#[async_trait::async_trait]
pub trait CouponSlots: Send + Sync {
    /// Reserves a slot under `key` unless `per_day` are taken in the last 24 hours; `true` when
    /// reserved (a replay of the same key included).
    async fn reserve(&self, tenant: &str, key: &str, per_day: u32)
    -> Result<bool, CouponSlotError>;

    /// Gives back the slot under `key` (the vendor refused the coupon).
    async fn release(&self, tenant: &str, key: &str) -> Result<(), CouponSlotError>;
}

pub type SharedCouponSlots = Arc<dyn CouponSlots>;

#[async_trait::async_trait]
impl CouponSlots for SqlStore {
    async fn reserve(
        &self,
        tenant: &str,
        key: &str,
        per_day: u32,
    ) -> Result<bool, CouponSlotError> {
        let tenant = TenantId::parse(tenant)?;
        Ok(self.reserve_coupon(&tenant, key, per_day).await?)
    }

    async fn release(&self, tenant: &str, key: &str) -> Result<(), CouponSlotError> {
        let tenant = TenantId::parse(tenant)?;
        Ok(self.release_coupon(&tenant, key).await?)
    }
}

//! Coupon slots (migration 0019): the exact per-tenant count of coupons `create_coupon` made in a
//! rolling 24 hours. A slot is reserved before the vendor is asked and released when it refused.
//!
//! It must not talk to a coupon vendor or decide a tenant's cap (the tool passes it); it stores
//! and counts rows. Every method takes the [`TenantId`] and filters by it.

use sqlx::Row;

use super::sql::{ReservationLock, lock_reservations, now_ms};
use super::{SqlStore, StoreResult, TenantId};

/// The window the daily cap counts over.
const DAY_MS: i64 = 24 * 3600 * 1000;

impl SqlStore {
    /// Reserves one coupon slot of `tenant` under `key`, unless the tenant already holds
    /// `per_day` slots reserved in the last 24 hours. `true`: reserved now, or already under the
    /// same key (a replay). Concurrent reservations of one tenant are serialised by writing its
    /// lock row first, so they can never admit more than `per_day` (SQLite and PostgreSQL).
    pub async fn reserve_coupon(
        &self,
        tenant: &TenantId,
        key: &str,
        per_day: u32,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        lock_reservations(&mut tx, ReservationLock::Coupons, tenant, now).await?;
        let existing = sqlx::query(
            "SELECT 1 AS hit FROM coupon_reservations WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(tenant.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if existing.is_some() {
            return Ok(true);
        }
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM coupon_reservations WHERE tenant_id = $1 AND reserved_at > $2",
        )
        .bind(tenant.as_str())
        .bind(now - DAY_MS)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if count >= i64::from(per_day) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO coupon_reservations (tenant_id, idempotency_key, reserved_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(tenant.as_str())
        .bind(key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives back the slot reserved under `key` (the vendor refused the coupon).
    pub async fn release_coupon(&self, tenant: &TenantId, key: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM coupon_reservations WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(tenant.as_str())
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

//! Rows of the OAuth gateway: pending authorization states (single-use, expiring) and connected
//! vendor accounts with their refresh lease.
//!
//! It must not run the flow, talk to a vendor or encrypt anything: the PKCE verifier arrives
//! already sealed by the vault and the tokens live in a vault secret named by the connection.
//! Methods are inherent on [`SqlStore`] (only the OAuth service uses them) and take the time as
//! Unix milliseconds from the caller's clock, so tests move time instead of sleeping. Every read
//! that can take the [`TenantId`] filters by it; [`SqlStore::claim_oauth_state`] cannot (the
//! callback knows only the state) and returns the tenant the state was issued for.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::validate_text;
use super::{SqlStore, StoreError, StoreResult, TenantId};

/// A state to remember until its callback.
#[derive(Clone, Debug)]
pub struct NewOAuthState<'a> {
    /// Hex SHA-256 of the state parameter.
    pub state_hash: &'a str,
    pub tenant_id: &'a TenantId,
    pub vendor: &'a str,
    /// The PKCE verifier, sealed by the vault.
    pub verifier: &'a [u8],
    pub verifier_key: &'a str,
    pub redirect_uri: &'a str,
    /// Space-separated scopes requested.
    pub scopes: &'a str,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

/// A claimed state: what the callback needs to finish the flow.
#[derive(Clone, Debug)]
pub struct ClaimedOAuthState {
    pub tenant_id: TenantId,
    pub vendor: String,
    pub verifier: Vec<u8>,
    pub verifier_key: String,
    pub redirect_uri: String,
    pub scopes: String,
}

/// Why a state could not be claimed (the callback's page says which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateRefusal {
    /// No such state was ever issued (forged, or garbage).
    Unknown,
    /// It was issued and already used.
    Used,
    /// It was issued and has expired.
    Expired,
}

/// Status of a connected account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStatus {
    Active,
    /// The vendor refused the refresh token (`invalid_grant`): the business must connect again.
    NeedsReconnect,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReconnect => "needs_reconnect",
        }
    }

    fn parse(text: &str) -> StoreResult<Self> {
        match text {
            "active" => Ok(Self::Active),
            "needs_reconnect" => Ok(Self::NeedsReconnect),
            other => Err(StoreError::Corrupt {
                what: "oauth_connections.status",
                reason: format!("unknown status {other:?}"),
            }),
        }
    }
}

/// A connected account, without its tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConnection {
    pub tenant_id: TenantId,
    pub vendor: String,
    pub status: ConnectionStatus,
    pub account: Option<String>,
    /// Space-separated granted scopes.
    pub scopes: String,
    /// The vault secret holding the tokens.
    pub secret_name: String,
    /// JSON object of non-secret vendor fields (`instance_url`, `api_domain`, accounts server).
    pub extra: String,
    pub expires_at_ms: Option<i64>,
    pub last_refresh_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a completed flow or a refresh writes about a connection.
#[derive(Clone, Debug)]
pub struct ConnectionUpdate<'a> {
    pub account: Option<&'a str>,
    pub scopes: &'a str,
    pub secret_name: &'a str,
    pub extra: &'a str,
    pub expires_at_ms: Option<i64>,
}

const CONNECTION_COLUMNS: &str = "tenant_id, vendor, status, account, scopes, secret_name, extra, \
     expires_at, last_refresh_at, created_at, updated_at";

fn connection_from_row(row: &AnyRow) -> StoreResult<OAuthConnection> {
    let status: String = row.try_get("status")?;
    Ok(OAuthConnection {
        tenant_id: TenantId::parse(&row.try_get::<String, _>("tenant_id")?)?,
        vendor: row.try_get("vendor")?,
        status: ConnectionStatus::parse(&status)?,
        account: row.try_get("account")?,
        scopes: row.try_get("scopes")?,
        secret_name: row.try_get("secret_name")?,
        extra: row.try_get("extra")?,
        expires_at_ms: row.try_get("expires_at")?,
        last_refresh_at_ms: row.try_get("last_refresh_at")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn write_error(tenant: &TenantId, what: &str, err: sqlx::Error) -> StoreError {
    match classify(err) {
        WriteFailure::ForeignKey => StoreError::not_found(format!("tenant {tenant}")),
        WriteFailure::Unique => StoreError::conflict(what.to_owned()),
        WriteFailure::Other(err) => StoreError::Database(err),
    }
}

fn connection_not_found(tenant: &TenantId, vendor: &str) -> StoreError {
    StoreError::not_found(format!("{vendor} connection of tenant {tenant}"))
}

impl SqlStore {
    /// Remembers a state until its callback (or its expiry). Also forgets states that expired
    /// more than a day ago, so the table does not grow.
    pub async fn put_oauth_state(&self, state: &NewOAuthState<'_>) -> StoreResult<()> {
        validate_text("vendor", state.vendor, 64)?;
        validate_text("redirect URI", state.redirect_uri, 2048)?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(state.now_ms - 86_400_000)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, tenant_id, vendor, verifier, verifier_key, \
             redirect_uri, scopes, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(state.state_hash)
        .bind(state.tenant_id.as_str())
        .bind(state.vendor)
        .bind(state.verifier)
        .bind(state.verifier_key)
        .bind(state.redirect_uri)
        .bind(state.scopes)
        .bind(state.now_ms)
        .bind(state.expires_at_ms)
        .execute(self.pool())
        .await
        .map_err(|err| write_error(state.tenant_id, "OAuth state", err))?;
        Ok(())
    }

    /// Claims the state with hash `state_hash`: at most one caller ever gets it, and only before
    /// it expires. The one statement is the single-use guarantee across nodes.
    pub async fn claim_oauth_state(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Result<ClaimedOAuthState, StateRefusal>> {
        let row = sqlx::query(
            "UPDATE oauth_states SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING tenant_id, vendor, verifier, verifier_key, redirect_uri, scopes",
        )
        .bind(state_hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = row {
            return Ok(Ok(ClaimedOAuthState {
                tenant_id: TenantId::parse(&row.try_get::<String, _>("tenant_id")?)?,
                vendor: row.try_get("vendor")?,
                verifier: row.try_get("verifier")?,
                verifier_key: row.try_get("verifier_key")?,
                redirect_uri: row.try_get("redirect_uri")?,
                scopes: row.try_get("scopes")?,
            }));
        }
        let row = sqlx::query("SELECT used_at FROM oauth_states WHERE state_hash = $1")
            .bind(state_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(Err(match row {
            None => StateRefusal::Unknown,
            Some(row) => match row.try_get::<Option<i64>, _>("used_at")? {
                Some(_) => StateRefusal::Used,
                None => StateRefusal::Expired,
            },
        }))
    }

    /// Creates or replaces the tenant's connection to `vendor` as active (a new consent replaces
    /// an old grant, and clears any lease).
    pub async fn put_oauth_connection(
        &self,
        tenant: &TenantId,
        vendor: &str,
        update: &ConnectionUpdate<'_>,
        now_ms: i64,
    ) -> StoreResult<OAuthConnection> {
        validate_text("vendor", vendor, 64)?;
        let sql = format!(
            "INSERT INTO oauth_connections (tenant_id, vendor, status, account, scopes, \
             secret_name, extra, expires_at, last_refresh_at, refresh_lease_owner, \
             refresh_lease_until, created_at, updated_at) \
             VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, NULL, NULL, NULL, $8, $8) \
             ON CONFLICT (tenant_id, vendor) DO UPDATE SET status = 'active', account = $3, \
             scopes = $4, secret_name = $5, extra = $6, expires_at = $7, \
             refresh_lease_owner = NULL, refresh_lease_until = NULL, updated_at = $8 \
             RETURNING {CONNECTION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(vendor)
            .bind(update.account)
            .bind(update.scopes)
            .bind(update.secret_name)
            .bind(update.extra)
            .bind(update.expires_at_ms)
            .bind(now_ms)
            .fetch_one(self.pool())
            .await
            .map_err(|err| write_error(tenant, "OAuth connection", err))?;
        connection_from_row(&row)
    }

    pub async fn oauth_connection(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> StoreResult<OAuthConnection> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM oauth_connections WHERE tenant_id = $1 AND vendor = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(vendor)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => connection_from_row(&row),
            None => Err(connection_not_found(tenant, vendor)),
        }
    }

    pub async fn list_oauth_connections(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<OAuthConnection>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM oauth_connections WHERE tenant_id = $1 ORDER BY vendor"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Takes the refresh lease of a connection until `until_ms` when nobody else holds it (or
    /// the holder's lease ran out). Returns whether `owner` now holds it.
    pub async fn acquire_oauth_refresh_lease(
        &self,
        tenant: &TenantId,
        vendor: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE oauth_connections SET refresh_lease_owner = $3, refresh_lease_until = $5 \
             WHERE tenant_id = $1 AND vendor = $2 AND status = 'active' \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $4 \
                  OR refresh_lease_owner = $3)",
        )
        .bind(tenant.as_str())
        .bind(vendor)
        .bind(owner)
        .bind(now_ms)
        .bind(until_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a successful refresh by the lease holder and releases the lease. The tokens were
    /// already written to the vault secret (one upsert: a rotated refresh token replaces the old
    /// one in the same write as the new access token).
    pub async fn finish_oauth_refresh(
        &self,
        tenant: &TenantId,
        vendor: &str,
        owner: &str,
        scopes: Option<&str>,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE oauth_connections SET expires_at = $4, last_refresh_at = $5, updated_at = $5, \
             scopes = COALESCE($6, scopes), refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE tenant_id = $1 AND vendor = $2 AND refresh_lease_owner = $3",
        )
        .bind(tenant.as_str())
        .bind(vendor)
        .bind(owner)
        .bind(expires_at_ms)
        .bind(now_ms)
        .bind(scopes)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Releases a lease without recording a refresh (the refresh failed for a passing reason).
    pub async fn release_oauth_refresh_lease(
        &self,
        tenant: &TenantId,
        vendor: &str,
        owner: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE oauth_connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE tenant_id = $1 AND vendor = $2 AND refresh_lease_owner = $3",
        )
        .bind(tenant.as_str())
        .bind(vendor)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks the connection `needs_reconnect` (and releases any lease). Returns whether it was
    /// active before, so the caller announces the change once.
    pub async fn mark_oauth_needs_reconnect(
        &self,
        tenant: &TenantId,
        vendor: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE oauth_connections SET status = 'needs_reconnect', updated_at = $3, \
             refresh_lease_owner = NULL, refresh_lease_until = NULL \
             WHERE tenant_id = $1 AND vendor = $2 AND status = 'active'",
        )
        .bind(tenant.as_str())
        .bind(vendor)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the connection row (the caller deletes the vault secret).
    pub async fn delete_oauth_connection(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> StoreResult<()> {
        let done =
            sqlx::query("DELETE FROM oauth_connections WHERE tenant_id = $1 AND vendor = $2")
                .bind(tenant.as_str())
                .bind(vendor)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(connection_not_found(tenant, vendor));
        }
        Ok(())
    }
}

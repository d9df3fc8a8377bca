//! Rows of the OAuth apps set through the admin API (migration 0015): the deployment's app per
//! vendor (scope `''`) and a tenant's own app (scope = the tenant id), which wins for that tenant.
//!
//! It must not decrypt anything or decide which app applies: the client secret arrives sealed by
//! the vault, and the OAuth service picks tenant → deployment → environment. Methods are inherent
//! on [`SqlStore`] (only the OAuth service uses them); a tenant's rows are read only by its id.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::{WriteFailure, classify};
use super::model::validate_text;
use super::{SqlStore, StoreError, StoreResult, TenantId};

/// Whose app a row is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppScope {
    /// The deployment's app for every tenant without its own.
    Deployment,
    /// One tenant's own app.
    Tenant(TenantId),
}

impl AppScope {
    fn key(&self) -> &str {
        match self {
            Self::Deployment => "",
            Self::Tenant(tenant) => tenant.as_str(),
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            Self::Deployment => None,
            Self::Tenant(tenant) => Some(tenant.as_str()),
        }
    }
}

/// A stored OAuth app; the secret is vault ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOAuthApp {
    pub scope: AppScope,
    pub vendor: String,
    pub client_id: String,
    pub secret: Vec<u8>,
    pub secret_key: String,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub directory: Option<String>,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "scope, vendor, client_id, secret, secret_key, authorize_url, token_url, \
     revoke_url, directory, updated_at";

fn from_row(row: &AnyRow) -> StoreResult<StoredOAuthApp> {
    let scope: String = row.try_get("scope")?;
    Ok(StoredOAuthApp {
        scope: if scope.is_empty() {
            AppScope::Deployment
        } else {
            AppScope::Tenant(TenantId::parse(&scope)?)
        },
        vendor: row.try_get("vendor")?,
        client_id: row.try_get("client_id")?,
        secret: row.try_get("secret")?,
        secret_key: row.try_get("secret_key")?,
        authorize_url: row.try_get("authorize_url")?,
        token_url: row.try_get("token_url")?,
        revoke_url: row.try_get("revoke_url")?,
        directory: row.try_get("directory")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

impl SqlStore {
    /// Creates or replaces the app of `app.scope` for `app.vendor`.
    pub async fn put_oauth_app(&self, app: &StoredOAuthApp) -> StoreResult<StoredOAuthApp> {
        validate_text("vendor", &app.vendor, 64)?;
        validate_text("client id", &app.client_id, 512)?;
        for (what, url) in [
            ("authorize URL", &app.authorize_url),
            ("token URL", &app.token_url),
            ("revocation URL", &app.revoke_url),
        ] {
            if let Some(url) = url {
                validate_text(what, url, 2048)?;
            }
        }
        if let Some(directory) = &app.directory {
            validate_text("directory", directory, 256)?;
        }
        let sql = format!(
            "INSERT INTO oauth_apps (scope, tenant_id, vendor, client_id, secret, secret_key, \
             authorize_url, token_url, revoke_url, directory, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (scope, vendor) DO UPDATE SET client_id = $4, secret = $5, \
             secret_key = $6, authorize_url = $7, token_url = $8, revoke_url = $9, \
             directory = $10, updated_at = $11 \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.scope.key())
            .bind(app.scope.tenant())
            .bind(app.vendor.as_str())
            .bind(app.client_id.as_str())
            .bind(app.secret.as_slice())
            .bind(app.secret_key.as_str())
            .bind(app.authorize_url.as_deref())
            .bind(app.token_url.as_deref())
            .bind(app.revoke_url.as_deref())
            .bind(app.directory.as_deref())
            .bind(app.updated_at_ms)
            .fetch_one(self.pool())
            .await
            .map_err(|err| match classify(err) {
                WriteFailure::ForeignKey => StoreError::not_found(format!(
                    "tenant {}",
                    app.scope.tenant().unwrap_or_default()
                )),
                WriteFailure::Unique => StoreError::conflict("OAuth app".to_owned()),
                WriteFailure::Other(err) => StoreError::Database(err),
            })?;
        from_row(&row)
    }

    /// The app of `scope` for `vendor`, if one is set.
    pub async fn oauth_app(
        &self,
        scope: &AppScope,
        vendor: &str,
    ) -> StoreResult<Option<StoredOAuthApp>> {
        let sql = format!("SELECT {COLUMNS} FROM oauth_apps WHERE scope = $1 AND vendor = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.key())
            .bind(vendor)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every app of `scope`, by vendor.
    pub async fn list_oauth_apps(&self, scope: &AppScope) -> StoreResult<Vec<StoredOAuthApp>> {
        let sql = format!("SELECT {COLUMNS} FROM oauth_apps WHERE scope = $1 ORDER BY vendor");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.key())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes the app of `scope` for `vendor`; NotFound when there is none.
    pub async fn delete_oauth_app(&self, scope: &AppScope, vendor: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM oauth_apps WHERE scope = $1 AND vendor = $2")
            .bind(scope.key())
            .bind(vendor)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("{vendor} OAuth app")));
        }
        Ok(())
    }
}

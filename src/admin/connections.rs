//! Tenants' OAuth connections through the admin service: start a flow, list and show
//! connections, disconnect. Same access rule as everything else here: a tenant key sees only its
//! own tenant, and another tenant's connection answers like a missing one.
//!
//! It must not return a token: a [`ConnectionView`] holds vendor, account, scopes, status,
//! expiry and last refresh only.

use serde::Serialize;
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::oauth::{OAuthError, OAuthService};
use crate::store::OAuthConnection;

/// A connected vendor account, as the API and the CLI show it (never a token).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionView {
    pub vendor: String,
    /// `active` or `needs_reconnect`.
    pub status: String,
    /// The vendor's account id, when its token response names one.
    pub account: Option<String>,
    pub scopes: Vec<String>,
    /// When the current access token expires (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
    pub last_refresh_at_ms: Option<i64>,
    pub connected_at_ms: i64,
}

impl From<&OAuthConnection> for ConnectionView {
    fn from(c: &OAuthConnection) -> Self {
        Self {
            vendor: c.vendor.clone(),
            status: c.status.as_str().to_owned(),
            account: c.account.clone(),
            scopes: c.scopes.split_whitespace().map(str::to_owned).collect(),
            expires_at_ms: c.expires_at_ms,
            last_refresh_at_ms: c.last_refresh_at_ms,
            connected_at_ms: c.created_at_ms,
        }
    }
}

/// A started flow: the one-time URL the business owner opens.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionStartView {
    pub authorization_url: String,
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
}

/// What disconnect did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisconnectView {
    /// Whether the vendor confirmed the revocation (false: it has no revocation endpoint).
    pub revoked: bool,
}

fn service_error(err: OAuthError) -> ServiceError {
    match err {
        OAuthError::UnknownVendor(_) | OAuthError::NotConnected { .. } => {
            ServiceError::NotFound(err.to_string())
        }
        OAuthError::NotOAuth(_) => ServiceError::Invalid {
            field: "vendor".into(),
            message: err.to_string(),
        },
        OAuthError::NotConfigured(_) | OAuthError::NoPublicUrl => {
            ServiceError::Unavailable(err.to_string())
        }
        OAuthError::Store(e) => e.into(),
        other => ServiceError::Internal(other.to_string()),
    }
}

impl AdminService {
    /// Enables the OAuth gateway.
    pub fn with_oauth(mut self, oauth: OAuthService) -> Self {
        self.oauth = Some(oauth);
        self
    }

    fn gateway(&self) -> Result<&OAuthService, ServiceError> {
        self.oauth.as_ref().ok_or_else(|| {
            ServiceError::VaultUnavailable(
                "OAuth connections need the vault: set CALLBRIDGE_MASTER_KEY".into(),
            )
        })
    }

    pub async fn start_connection(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
    ) -> Result<ConnectionStartView, ServiceError> {
        let tenant = self.tenant_scope(who, tenant).await?;
        let started = self
            .gateway()?
            .start(&tenant, vendor, None)
            .await
            .map_err(service_error)?;
        Ok(ConnectionStartView {
            authorization_url: started.authorization_url,
            expires_at_ms: started.expires_at_ms,
            scopes: started.scopes,
        })
    }

    pub async fn list_connections(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<ConnectionView>, ServiceError> {
        let tenant = self.tenant_scope(who, tenant).await?;
        let list = self
            .gateway()?
            .connections(&tenant)
            .await
            .map_err(service_error)?;
        Ok(list.iter().map(ConnectionView::from).collect())
    }

    pub async fn get_connection(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
    ) -> Result<ConnectionView, ServiceError> {
        let tenant = self.tenant_scope(who, tenant).await?;
        let c = self
            .gateway()?
            .connection(&tenant, vendor)
            .await
            .map_err(service_error)?;
        Ok(ConnectionView::from(&c))
    }

    pub async fn disconnect(
        &self,
        who: &Principal,
        tenant: &str,
        vendor: &str,
    ) -> Result<DisconnectView, ServiceError> {
        let tenant = self.tenant_scope(who, tenant).await?;
        let done = self
            .gateway()?
            .disconnect(&tenant, vendor)
            .await
            .map_err(service_error)?;
        Ok(DisconnectView {
            revoked: done.revoked,
        })
    }
}

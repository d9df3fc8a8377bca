//! Tenants' OAuth connections through the admin service: start a flow, list and show
//! connections, disconnect. Same access rule as everything else here: a tenant key sees only its
//! own tenant, and another tenant's connection answers like a missing one.
//!
//! It must not return a token: a [`ConnectionView`] holds vendor, account, scopes, status,
//! expiry and last refresh only.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AdminService, Principal, ServiceError};
use crate::oauth::{AppInput, AppView, OAuthError, OAuthService};
use crate::store::{AppScope, OAuthConnection};

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

/// An OAuth app to set: the client registered at the vendor. The secret is sealed at once and
/// never shown again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthAppRequest {
    pub client_id: String,
    pub client_secret: String,
    /// Endpoint overrides (a vendor's sandbox); checked by the egress guard.
    #[serde(default)]
    pub authorize_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub revoke_url: Option<String>,
    /// Microsoft identity platform: `common` (default), `organizations`, `consumers`, or a
    /// directory's id or domain.
    #[serde(default)]
    pub directory: Option<String>,
}

impl From<OAuthAppRequest> for AppInput {
    fn from(req: OAuthAppRequest) -> Self {
        Self {
            client_id: req.client_id,
            client_secret: SecretString::from(req.client_secret),
            authorize_url: req.authorize_url,
            token_url: req.token_url,
            revoke_url: req.revoke_url,
            directory: req.directory,
        }
    }
}

fn service_error(err: OAuthError) -> ServiceError {
    match err {
        OAuthError::Invalid { field, .. } => ServiceError::Invalid {
            field: field.into(),
            message: err.to_string(),
        },
        OAuthError::Url { what, .. } => ServiceError::Invalid {
            field: format!("{what}_url"),
            message: err.to_string(),
        },
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

impl AdminService {
    /// The scope an OAuth-app request names: the deployment's (admin key only) or a tenant's own
    /// (its key or the admin key; another tenant's answers 404).
    async fn app_scope(
        &self,
        who: &Principal,
        tenant: Option<&str>,
    ) -> Result<AppScope, ServiceError> {
        match tenant {
            None => {
                Self::admin_only(who, "the deployment's OAuth apps")?;
                Ok(AppScope::Deployment)
            }
            Some(raw) => Ok(AppScope::Tenant(self.tenant_scope(who, raw).await?)),
        }
    }

    pub async fn put_oauth_app(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        vendor: &str,
        req: OAuthAppRequest,
    ) -> Result<AppView, ServiceError> {
        let scope = self.app_scope(who, tenant).await?;
        self.gateway()?
            .set_app(&scope, vendor, req.into())
            .await
            .map_err(service_error)
    }

    pub async fn get_oauth_app(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        vendor: &str,
    ) -> Result<AppView, ServiceError> {
        let scope = self.app_scope(who, tenant).await?;
        self.gateway()?
            .app_view(&scope, vendor)
            .await
            .map_err(service_error)
    }

    pub async fn list_oauth_apps(
        &self,
        who: &Principal,
        tenant: Option<&str>,
    ) -> Result<Vec<AppView>, ServiceError> {
        let scope = self.app_scope(who, tenant).await?;
        self.gateway()?
            .list_apps(&scope)
            .await
            .map_err(service_error)
    }

    pub async fn delete_oauth_app(
        &self,
        who: &Principal,
        tenant: Option<&str>,
        vendor: &str,
    ) -> Result<(), ServiceError> {
        let scope = self.app_scope(who, tenant).await?;
        self.gateway()?
            .delete_app(&scope, vendor)
            .await
            .map_err(service_error)
    }
}

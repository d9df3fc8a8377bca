//! Access tokens of a stored connection: refreshed a minute before they expire, or when the vendor
//! refused one, by one node at a time (the lease in `oauth_connections`), with a rotated refresh
//! token replacing the old one in the same vault write as the new access token.
//!
//! It must not hold a token in memory beyond the call that uses it (the vault is the cache, so a
//! refresh on another node is seen at once), and must not log a token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{RefreshToken, TokenResponse};
use secrecy::{ExposeSecret, SecretString};

use super::{OAuthError, OAuthService, TokenBlob, extra_text, is_invalid_grant, token_error};
use crate::connectors::ConnectorError;
use crate::connectors::client::TokenSource;
use crate::connectors::http::RequestContext;
use crate::store::{ConnectionStatus, OAuthConnection, TenantId};

/// A token this close to its expiry is refreshed before use.
pub const REFRESH_EARLY_MS: i64 = 60_000;
/// How long one node may hold the refresh lease (a refresh takes well under this).
pub const LEASE_MS: i64 = 30_000;
/// How often a node waiting for another node's refresh looks again, and how many times.
const WAIT_STEP: Duration = Duration::from_millis(50);
const WAIT_STEPS: u32 = 200;

impl OAuthService {
    /// A valid access token of the tenant's connection to `vendor`: the stored one while it has
    /// more than a minute left and is not `rejected`, else a refreshed one.
    pub fn access_token<'a>(
        &'a self,
        tenant: &'a TenantId,
        vendor: &'a str,
        rejected: Option<&'a SecretString>,
    ) -> Pin<Box<dyn Future<Output = Result<SecretString, OAuthError>> + Send + 'a>> {
        Box::pin(self.access_token_inner(tenant, vendor, rejected))
    }

    async fn access_token_inner(
        &self,
        tenant: &TenantId,
        vendor: &str,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, OAuthError> {
        let nonce: [u8; 6] = rand::random();
        let owner = format!(
            "{}-{}",
            self.inner.node,
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        for _ in 0..WAIT_STEPS {
            let (connection, blob) = self.usable(tenant, vendor).await?;
            if let Some(token) = self.still_good(&blob, rejected) {
                return Ok(token);
            }
            let now = self.now_ms();
            if self
                .inner
                .store
                .acquire_oauth_refresh_lease(tenant, vendor, &owner, now, now + LEASE_MS)
                .await?
            {
                // Another node may have refreshed between the read and the lease.
                let (connection, blob) = match self.usable(tenant, vendor).await {
                    Ok(found) => found,
                    Err(err) => {
                        self.release(tenant, vendor, &owner).await;
                        return Err(err);
                    }
                };
                if let Some(token) = self.still_good(&blob, rejected) {
                    self.release(tenant, vendor, &owner).await;
                    return Ok(token);
                }
                return self.refresh_leased(&connection, blob, &owner).await;
            }
            drop(connection);
            // Another node holds the lease: its refresh lands in the vault; look again.
            tokio::time::sleep(WAIT_STEP).await;
        }
        Err(OAuthError::LeaseBusy {
            vendor: vendor.to_owned(),
        })
    }

    pub(super) async fn usable(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> Result<(OAuthConnection, TokenBlob), OAuthError> {
        let connection = self.connection(tenant, vendor).await?;
        if connection.status == ConnectionStatus::NeedsReconnect {
            return Err(OAuthError::NeedsReconnect {
                tenant: tenant.clone(),
                vendor: vendor.to_owned(),
            });
        }
        let blob = self.blob(&connection).await?;
        Ok((connection, blob))
    }

    fn still_good(
        &self,
        blob: &TokenBlob,
        rejected: Option<&SecretString>,
    ) -> Option<SecretString> {
        let now = self.now_ms();
        let fresh = blob
            .expires_at_ms
            .is_none_or(|expires| expires - REFRESH_EARLY_MS > now);
        let refused = rejected.is_some_and(|r| r.expose_secret() == blob.access_token);
        (fresh && !refused).then(|| SecretString::from(blob.access_token.clone()))
    }

    pub(super) async fn release(&self, tenant: &TenantId, vendor: &str, owner: &str) {
        if let Err(err) = self
            .inner
            .store
            .release_oauth_refresh_lease(tenant, vendor, owner)
            .await
        {
            tracing::warn!(tenant = %tenant, vendor, error = %err, "could not release the OAuth refresh lease; it expires by itself");
        }
    }

    /// The refresh itself, by the lease holder.
    pub(super) async fn refresh_leased(
        &self,
        connection: &OAuthConnection,
        blob: TokenBlob,
        owner: &str,
    ) -> Result<SecretString, OAuthError> {
        let tenant = &connection.tenant_id;
        let vendor_id = connection.vendor.as_str();
        let Some(refresh) = blob.refresh_token.clone() else {
            // Nothing to refresh with: only a new consent helps.
            self.needs_reconnect(tenant, vendor_id).await?;
            return Err(OAuthError::NeedsReconnect {
                tenant: tenant.clone(),
                vendor: vendor_id.to_owned(),
            });
        };
        let prepared = match self.vendor(vendor_id) {
            Ok(vendor) => self.app_for(tenant, vendor.id).await.and_then(|app| {
                let accounts = extra_text(connection, "accounts_server");
                let url = self.token_url(&vendor, &app, accounts.as_deref())?;
                Ok(self.client(&vendor, &app, &url))
            }),
            Err(err) => Err(err),
        };
        let client = match prepared {
            Ok(client) => client,
            Err(err) => {
                self.release(tenant, vendor_id, owner).await;
                return Err(err);
            }
        };
        let ok_envelope = self
            .vendor(vendor_id)
            .is_ok_and(|vendor| vendor.spec.ok_envelope);
        let http = super::GuardedHttp::of(self, ok_envelope);
        let refresh = RefreshToken::new(refresh);
        let answer = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await;
        let body = match answer {
            Ok(body) => body,
            Err(err) if is_invalid_grant(&err) => {
                self.needs_reconnect(tenant, vendor_id).await?;
                return Err(OAuthError::NeedsReconnect {
                    tenant: tenant.clone(),
                    vendor: vendor_id.to_owned(),
                });
            }
            Err(err) => {
                self.release(tenant, vendor_id, owner).await;
                return Err(token_error(vendor_id, err));
            }
        };
        let now = self.now_ms();
        let fresh = TokenBlob {
            access_token: body.access_token().secret().clone(),
            // Rotation: a new refresh token replaces the old one; none means the old one stays.
            refresh_token: body
                .refresh_token()
                .map(|t| t.secret().clone())
                .or(blob.refresh_token),
            expires_at_ms: body
                .expires_in()
                .map(|d| now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)),
        };
        self.put_blob(tenant, vendor_id, &connection.secret_name, &fresh)
            .await?;
        let scopes = match self.vendor(vendor_id) {
            Ok(vendor) => body
                .scopes()
                .map(|scopes| super::granted_scopes(&vendor.spec, scopes)),
            Err(_) => None,
        };
        self.inner
            .store
            .finish_oauth_refresh(
                tenant,
                vendor_id,
                owner,
                scopes.as_deref(),
                fresh.expires_at_ms,
                now,
            )
            .await?;
        tracing::info!(tenant = %tenant, vendor = vendor_id, "OAuth access token refreshed");
        Ok(SecretString::from(fresh.access_token))
    }
}

/// The [`TokenSource`] of one tenant's connection to one vendor: what a connector built for that
/// tenant sends its requests with.
#[derive(Clone, Debug)]
pub struct ConnectionTokens {
    service: OAuthService,
    tenant: TenantId,
    vendor: String,
}

impl ConnectionTokens {
    pub(super) fn new(service: OAuthService, tenant: TenantId, vendor: String) -> Self {
        Self {
            service,
            tenant,
            vendor,
        }
    }
}

fn connector_error(err: OAuthError) -> ConnectorError {
    match err {
        err @ (OAuthError::NeedsReconnect { .. }
        | OAuthError::NotConnected { .. }
        | OAuthError::Token { .. }) => ConnectorError::Auth(err.to_string()),
        other => ConnectorError::Config(other.to_string()),
    }
}

#[async_trait::async_trait]
impl TokenSource for ConnectionTokens {
    async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        self.service
            .access_token(&self.tenant, &self.vendor, None)
            .await
            .map_err(connector_error)
    }

    async fn refresh(
        &self,
        _ctx: &RequestContext,
        rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError> {
        self.service
            .access_token(&self.tenant, &self.vendor, Some(rejected))
            .await
            .map_err(connector_error)
    }
}

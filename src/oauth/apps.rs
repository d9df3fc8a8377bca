//! Which OAuth app a tenant's flow uses, and the apps set through the admin API: the tenant's own
//! app (a business bringing its own client id and secret) wins, then the deployment's app set
//! through the API, then the environment's (`settings.rs`). A `{directory}` in a vendor's URLs
//! (Microsoft's identity platform) is filled from the app's directory, `common` by default.
//!
//! It must not return or log a client secret: it is sealed by the vault before it reaches the
//! store (bound to the scope and vendor, so a row copied to another tenant does not open), and an
//! [`AppView`] carries everything but the secret.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::{OAuthApp, OAuthError, OAuthService};
use crate::store::{AppScope, Store, StoreError, StoredOAuthApp, TenantId};

/// The placeholder a vendor's OAuth URLs may hold for the identity directory.
pub const DIRECTORY_PLACEHOLDER: &str = "{directory}";
/// The directory of an app that names none (Microsoft: any work, school or personal account).
pub const DEFAULT_DIRECTORY: &str = "common";
const MAX_SECRET_LEN: usize = 1024;

/// A directory as it may appear in a URL path: `common`, `organizations`, `consumers`, a
/// directory id (GUID) or a domain; anything else would let the setting reshape the URL.
pub fn valid_directory(text: &str) -> Result<String, String> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.len() <= 253
        && !text.starts_with(['.', '-'])
        && !text.contains("..")
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(
            "a directory is `common`, `organizations`, `consumers`, a directory id or a domain \
             (letters, digits, `-` and `.`)"
                .to_owned(),
        )
    }
}

/// An app to set: the client registered at the vendor, optional endpoint overrides (checked by
/// the egress guard) and directory.
pub struct AppInput {
    pub client_id: String,
    pub client_secret: SecretString,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub directory: Option<String>,
}

/// An app as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppView {
    pub vendor: String,
    /// `deployment`, or the tenant id of a tenant's own app.
    pub scope: String,
    /// `api` (set through the admin API) or `environment` (`CALLBRIDGE_OAUTH_<VENDOR>_…`).
    pub source: String,
    pub client_id: String,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub directory: Option<String>,
    pub updated_at_ms: Option<i64>,
}

fn scope_label(scope: &AppScope) -> String {
    match scope {
        AppScope::Deployment => "deployment".into(),
        AppScope::Tenant(tenant) => tenant.as_str().to_owned(),
    }
}

impl AppView {
    fn stored(app: &StoredOAuthApp) -> Self {
        Self {
            vendor: app.vendor.clone(),
            scope: scope_label(&app.scope),
            source: "api".into(),
            client_id: app.client_id.clone(),
            authorize_url: app.authorize_url.clone(),
            token_url: app.token_url.clone(),
            revoke_url: app.revoke_url.clone(),
            directory: app.directory.clone(),
            updated_at_ms: Some(app.updated_at_ms),
        }
    }

    fn environment(vendor: &str, app: &OAuthApp) -> Self {
        Self {
            vendor: vendor.to_owned(),
            scope: "deployment".into(),
            source: "environment".into(),
            client_id: app.client_id.clone(),
            authorize_url: app.authorize_url.clone(),
            token_url: app.token_url.clone(),
            revoke_url: app.revoke_url.clone(),
            directory: app.directory.clone(),
            updated_at_ms: None,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> OAuthError {
    OAuthError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The tenant and name a stored app's secret is sealed under: the deployment's apps under a
/// name no tenant secret uses, so neither kind of row opens as the other.
fn binding(scope: &AppScope, vendor: &str) -> Result<(TenantId, String), OAuthError> {
    Ok(match scope {
        AppScope::Deployment => (
            TenantId::parse("deployment")?,
            format!("oauth-app/deployment/{vendor}"),
        ),
        AppScope::Tenant(tenant) => (tenant.clone(), format!("oauth-app/tenant/{vendor}")),
    })
}

impl OAuthService {
    /// The app `tenant`'s flows with `vendor` use: its own, else the deployment's set through the
    /// API, else the environment's.
    pub(super) async fn app_for(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> Result<OAuthApp, OAuthError> {
        for scope in [AppScope::Tenant(tenant.clone()), AppScope::Deployment] {
            if let Some(row) = self.inner.store.oauth_app(&scope, vendor).await? {
                return self.open_app(&row);
            }
        }
        self.app(vendor).cloned()
    }

    fn open_app(&self, row: &StoredOAuthApp) -> Result<OAuthApp, OAuthError> {
        let (tenant, name) = binding(&row.scope, &row.vendor)?;
        let secret =
            self.inner
                .vault
                .open_value(&tenant, &name, &row.secret_key, row.secret.clone())?;
        Ok(OAuthApp {
            client_id: row.client_id.clone(),
            client_secret: secret,
            authorize_url: row.authorize_url.clone(),
            token_url: row.token_url.clone(),
            revoke_url: row.revoke_url.clone(),
            directory: row.directory.clone(),
        })
    }

    /// Sets (or replaces) the app of `scope` for `vendor`: the vendor must take OAuth, the URLs
    /// pass the egress guard, the directory is a path segment and only where the vendor's URLs
    /// have one; the secret is sealed before it is stored.
    pub async fn set_app(
        &self,
        scope: &AppScope,
        vendor_id: &str,
        input: AppInput,
    ) -> Result<AppView, OAuthError> {
        let vendor = self.vendor(vendor_id)?;
        let client_id = input.client_id.trim().to_owned();
        if client_id.is_empty() || client_id.len() > 512 {
            return Err(invalid("client_id", "required, at most 512 characters"));
        }
        let secret = input.client_secret.expose_secret();
        if secret.trim().is_empty() || secret.len() > MAX_SECRET_LEN {
            return Err(invalid(
                "client_secret",
                format!("required, at most {MAX_SECRET_LEN} bytes"),
            ));
        }
        let directory = match input.directory.as_deref() {
            Some(text) => {
                let directory = valid_directory(text).map_err(|r| invalid("directory", r))?;
                let templated = [vendor.spec.authorize_url, vendor.spec.token_url]
                    .iter()
                    .any(|url| url.contains(DIRECTORY_PLACEHOLDER));
                if !templated {
                    return Err(invalid(
                        "directory",
                        format!("{} has no identity directory to choose", vendor.name),
                    ));
                }
                Some(directory)
            }
            None => None,
        };
        let mut urls = [input.authorize_url, input.token_url, input.revoke_url];
        for (url, what) in urls.iter_mut().zip(["authorize", "token", "revocation"]) {
            if let Some(text) = url.as_deref() {
                let checked = self.checked(what, text.trim())?;
                *url = Some(checked.to_string());
            }
        }
        let [authorize_url, token_url, revoke_url] = urls;
        if let AppScope::Tenant(tenant) = scope {
            self.inner.store.tenant(tenant).await?;
        }
        let (tenant, name) = binding(scope, vendor.id)?;
        let (secret_key, sealed) =
            self.inner
                .vault
                .seal_value(&tenant, &name, &input.client_secret)?;
        let row = self
            .inner
            .store
            .put_oauth_app(&StoredOAuthApp {
                scope: scope.clone(),
                vendor: vendor.id.to_owned(),
                client_id,
                secret: sealed,
                secret_key,
                authorize_url,
                token_url,
                revoke_url,
                directory,
                updated_at_ms: self.now_ms(),
            })
            .await?;
        tracing::info!(scope = %scope_label(scope), vendor = vendor.id, "OAuth app set");
        Ok(AppView::stored(&row))
    }

    /// The app of `scope` for `vendor`: the stored one, or (deployment) the environment's.
    pub async fn app_view(&self, scope: &AppScope, vendor: &str) -> Result<AppView, OAuthError> {
        if let Some(row) = self.inner.store.oauth_app(scope, vendor).await? {
            return Ok(AppView::stored(&row));
        }
        match (scope, self.inner.settings.apps.get(vendor)) {
            (AppScope::Deployment, Some(app)) => Ok(AppView::environment(vendor, app)),
            _ => Err(StoreError::not_found(format!("{vendor} OAuth app")).into()),
        }
    }

    /// Every app of `scope`; for the deployment, the environment's too where the API set none.
    pub async fn list_apps(&self, scope: &AppScope) -> Result<Vec<AppView>, OAuthError> {
        let mut views: Vec<AppView> = self
            .inner
            .store
            .list_oauth_apps(scope)
            .await?
            .iter()
            .map(AppView::stored)
            .collect();
        if *scope == AppScope::Deployment {
            for (vendor, app) in &self.inner.settings.apps {
                if !views.iter().any(|v| &v.vendor == vendor) {
                    views.push(AppView::environment(vendor, app));
                }
            }
            views.sort_by(|a, b| a.vendor.cmp(&b.vendor));
        }
        Ok(views)
    }

    /// Deletes the app of `scope` set through the API (the environment's stays in force).
    pub async fn delete_app(&self, scope: &AppScope, vendor: &str) -> Result<(), OAuthError> {
        self.inner.store.delete_oauth_app(scope, vendor).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_path_segments() {
        for good in [
            "common",
            "organizations",
            "contoso.onmicrosoft.com",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ] {
            assert_eq!(valid_directory(good).as_deref(), Ok(good));
        }
        for bad in ["", "a/b", "..", "x?y", "evil.example/#", ".hidden", "a b"] {
            assert!(valid_directory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_placeholder_is_filled_with_the_directory_or_common() {
        let mut app = OAuthApp {
            client_id: "id".into(),
            client_secret: SecretString::from("s".to_owned()),
            authorize_url: None,
            token_url: None,
            revoke_url: None,
            directory: None,
        };
        let url = "https://login.microsoftonline.com/{directory}/oauth2/v2.0/token";
        assert_eq!(
            app.fill_directory(url),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        app.directory = Some("organizations".into());
        assert_eq!(
            app.fill_directory(url),
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
        );
        assert_eq!(
            app.fill_directory("https://t.example/token"),
            "https://t.example/token"
        );
    }
}

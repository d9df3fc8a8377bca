//! The OAuth gateway: a business connects its own vendor account with the authorization-code flow
//! (PKCE S256 where the vendor supports it), and its connectors then use that account's tokens.
//!
//! Owns: starting a flow (a single-use, expiring, server-side state bound to tenant, vendor and
//! PKCE verifier), the callback (state claim, code exchange, sealing the tokens in the vault),
//! refreshing before expiry with a lease in the store so that only one node spends a refresh
//! token, refresh-token rotation, `invalid_grant` → `needs_reconnect`, disconnect (revoke, then
//! delete), and [`ConnectionTokens`], the [`TokenSource`](crate::connectors::client::TokenSource)
//! over a stored connection. Vendor differences are data in each vendor's
//! [`OAuthSpec`](crate::connectors::kit::OAuthSpec); nothing here names a vendor.
//!
//! It must not log or return a token, a code, a verifier, a state or a client secret: they stay in
//! `SecretString`s or oauth2's secret types and go out only to the token endpoint, whose URL passes
//! the egress guard before each request (and again at connect time through the guarded client).

mod apps;
mod settings;
mod tokens;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::campaign::clock::{Clock, SystemClock};
use crate::connectors::kit::{Capability, OAuthSpec};
use crate::connectors::registry;
use crate::egress::EgressPolicy;
use crate::metrics::Metrics;
use crate::store::{
    ConnectionUpdate, NewOAuthState, NewOutboxMessage, OAuthConnection, SqlStore, StateRefusal,
    Store, StoreError, TenantId,
};
use crate::tenant::vault::{Vault, VaultError};

pub use apps::{AppInput, AppView, DEFAULT_DIRECTORY};
pub use settings::{OAuthApp, OAuthSettings, SettingsError};
pub use tokens::ConnectionTokens;

/// How long a started flow may take before its state expires.
pub const STATE_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// The callback path under `PUBLIC_URL`.
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// The outbox event queued when a connection needs the business to connect again.
pub const NEEDS_RECONNECT_EVENT: &str = "connection.needs_reconnect";

/// Every failure of the gateway; messages name no secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error("{0} is not a vendor this bridge has a connector for")]
    UnknownVendor(String),
    #[error("{0} does not support connecting with OAuth")]
    NotOAuth(String),
    #[error(
        "no OAuth app is configured for {0} (set CALLBRIDGE_OAUTH_<VENDOR>_CLIENT_ID and _CLIENT_SECRET)"
    )]
    NotConfigured(String),
    #[error("PUBLIC_URL is not set: the OAuth redirect URI is PUBLIC_URL/oauth/callback")]
    NoPublicUrl,
    #[error("no OAuth connection to {vendor} for tenant {tenant}")]
    NotConnected { tenant: TenantId, vendor: String },
    #[error("the {vendor} connection of tenant {tenant} must be connected again")]
    NeedsReconnect { tenant: TenantId, vendor: String },
    #[error("the {vendor} token endpoint refused the grant: {reason}")]
    Token { vendor: String, reason: String },
    #[error("the {vendor} token endpoint could not be reached: {reason}")]
    Transport { vendor: String, reason: String },
    #[error("the {what} URL is not allowed: {reason}")]
    Url { what: &'static str, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("another node is refreshing the {vendor} token and did not finish in time")]
    LeaseBusy { vendor: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// The vendor fields of a token response besides the standard ones (`instance_url`,
/// `api_domain`, `id`, …), kept as they came.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VendorFields {
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl ExtraTokenFields for VendorFields {}

type TokenBody = StandardTokenResponse<VendorFields, BasicTokenType>;
type TokenClient<HasAuth> = oauth2::Client<
    BasicErrorResponse,
    TokenBody,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuth,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What the vault holds for a connection: the secret part only.
#[derive(Serialize, Deserialize)]
struct TokenBlob {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
}

impl fmt::Debug for TokenBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenBlob")
    }
}

/// A started flow: the URL the business owner opens.
#[derive(Clone, Debug)]
pub struct Started {
    pub authorization_url: String,
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
}

/// The callback's answer: an HTTP status and a short plain HTML page.
#[derive(Clone, Debug)]
pub struct CallbackPage {
    pub status: u16,
    pub html: String,
    /// The connection written, when the flow succeeded.
    pub connected: Option<OAuthConnection>,
}

/// What disconnect did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnected {
    /// Whether the vendor confirmed the revocation (false: no endpoint, or it failed).
    pub revoked: bool,
}

/// One vendor as the gateway sees it.
#[derive(Clone, Copy, Debug)]
struct VendorOAuth {
    id: &'static str,
    name: &'static str,
    capabilities: &'static [Capability],
    spec: OAuthSpec,
}

struct Inner {
    store: SqlStore,
    vault: Vault<SqlStore>,
    settings: OAuthSettings,
    egress: EgressPolicy,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    node: String,
    extra_vendors: HashMap<String, VendorOAuth>,
    metrics: Option<Arc<Metrics>>,
}

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct OAuthService {
    inner: Arc<Inner>,
}

impl fmt::Debug for OAuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthService")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a state parameter: what the store keeps instead of the state.
fn state_hash(state: &str) -> String {
    let digest = Sha256::digest(state.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn verifier_name(hash: &str) -> String {
    format!("oauth-state/{hash}")
}

/// The vault secret holding a connection's tokens.
pub fn secret_name(vendor: &str) -> String {
    format!("oauth-{vendor}")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: u16, title: &str, message: &str) -> CallbackPage {
    CallbackPage {
        status,
        html: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body><h1>{t}</h1><p>{m}</p></body></html>",
            t = html_escape(title),
            m = html_escape(message)
        ),
        connected: None,
    }
}

/// The error of the HTTP adapter handed to oauth2: names no URL query and no body.
#[derive(Debug, thiserror::Error)]
enum HttpFailure {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Transport(String),
}

/// oauth2's view of [`OAuthService::send`], with a `Send` future (a closure's future would not
/// be `Send` for every lifetime, which the connectors' `TokenSource` needs).
struct GuardedHttp {
    client: reqwest::Client,
    egress: EgressPolicy,
    /// The vendor's answers carry `ok` ([`OAuthSpec::ok_envelope`](crate::connectors::kit::OAuthSpec)).
    ok_envelope: bool,
}

impl GuardedHttp {
    fn of(service: &OAuthService, ok_envelope: bool) -> Self {
        Self {
            client: service.inner.http.clone(),
            egress: service.inner.egress.clone(),
            ok_envelope,
        }
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for GuardedHttp {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpFailure>> + Send + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.client, &self.egress, self.ok_envelope, request))
    }
}

/// The egress-guarded transport oauth2 sends its token requests through.
async fn send(
    client: &reqwest::Client,
    egress: &EgressPolicy,
    ok_envelope: bool,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpFailure> {
    let url = Url::parse(&request.uri().to_string())
        .map_err(|err| HttpFailure::Refused(format!("token URL: {err}")))?;
    egress
        .check_url(&url)
        .map_err(|err| HttpFailure::Refused(err.to_string()))?;
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|err| HttpFailure::Transport(err.without_url().to_string()))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|err| HttpFailure::Transport(err.without_url().to_string()))?
        .to_vec();
    let (status, body) = if ok_envelope {
        unwrap_ok_envelope(status, body)
    } else {
        (status, body)
    };
    let mut builder = oauth2::http::Response::builder().status(status);
    if let Some(target) = builder.headers_mut() {
        target.extend(headers);
    }
    builder
        .body(body)
        .map_err(|err| HttpFailure::Transport(err.to_string()))
}

impl OAuthService {
    /// A gateway over the store and vault, with the deployment's OAuth apps; token requests go
    /// through a client built from `egress` (the guard checks each URL and, at connect time,
    /// each address).
    pub fn new(
        store: SqlStore,
        vault: Vault<SqlStore>,
        settings: OAuthSettings,
        egress: EgressPolicy,
    ) -> Result<Self, OAuthError> {
        Self::with_clock(store, vault, settings, egress, Arc::new(SystemClock))
    }

    pub fn with_clock(
        store: SqlStore,
        vault: Vault<SqlStore>,
        settings: OAuthSettings,
        egress: EgressPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OAuthError> {
        let http = egress
            .client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|err| OAuthError::Transport {
                vendor: "any".into(),
                reason: format!("HTTP client: {err}"),
            })?;
        let node_bytes: [u8; 8] = rand::random();
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                vault,
                settings,
                egress,
                http,
                clock,
                node: format!("node-{}", URL_SAFE_NO_PAD.encode(node_bytes)),
                extra_vendors: HashMap::new(),
                metrics: None,
            }),
        })
    }

    /// Declares a vendor that has no connector file yet (an OAuth-only account the operator
    /// connects ahead of its connector). Registry vendors win over these.
    pub fn with_vendor(
        mut self,
        id: &'static str,
        name: &'static str,
        capabilities: &'static [Capability],
        spec: OAuthSpec,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.extra_vendors.insert(
                id.to_owned(),
                VendorOAuth {
                    id,
                    name,
                    capabilities,
                    spec,
                },
            );
        }
        self
    }

    /// Counts failures in the process metrics (`errors{kind="oauth_…"}`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = Some(metrics);
        }
        self
    }

    fn count(&self, kind: &'static str) {
        if let Some(metrics) = &self.inner.metrics {
            metrics.error(kind);
        }
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn vendor(&self, id: &str) -> Result<VendorOAuth, OAuthError> {
        if let Some(vendor) = registry::vendor(id) {
            let spec = vendor
                .oauth
                .ok_or_else(|| OAuthError::NotOAuth(id.to_owned()))?;
            return Ok(VendorOAuth {
                id: vendor.id,
                name: vendor.name,
                capabilities: vendor.capabilities,
                spec,
            });
        }
        self.inner
            .extra_vendors
            .get(id)
            .copied()
            .ok_or_else(|| OAuthError::UnknownVendor(id.to_owned()))
    }

    fn app(&self, vendor: &str) -> Result<&OAuthApp, OAuthError> {
        self.inner
            .settings
            .apps
            .get(vendor)
            .ok_or_else(|| OAuthError::NotConfigured(vendor.to_owned()))
    }

    fn redirect_uri(&self) -> Result<String, OAuthError> {
        let base = self
            .inner
            .settings
            .public_url
            .as_deref()
            .ok_or(OAuthError::NoPublicUrl)?;
        Ok(format!("{}{CALLBACK_PATH}", base.trim_end_matches('/')))
    }

    fn checked(&self, what: &'static str, url: &str) -> Result<Url, OAuthError> {
        self.inner
            .egress
            .check_url_str(url)
            .map_err(|err| OAuthError::Url {
                what,
                reason: err.to_string(),
            })
    }

    /// The token URL: the app's override, else the vendor's; on the accounts server's origin
    /// when the connection recorded one.
    fn token_url(
        &self,
        vendor: &VendorOAuth,
        app: &OAuthApp,
        accounts_server: Option<&str>,
    ) -> Result<Url, OAuthError> {
        let base = app.token_url.as_deref().unwrap_or(vendor.spec.token_url);
        let mut url = self.checked("token", &app.fill_directory(base))?;
        if let Some(server) = accounts_server {
            let server = self.checked("accounts server", server)?;
            url.set_scheme(server.scheme())
                .map_err(|()| OAuthError::Url {
                    what: "accounts server",
                    reason: "bad scheme".into(),
                })?;
            url.set_host(server.host_str())
                .map_err(|err| OAuthError::Url {
                    what: "accounts server",
                    reason: err.to_string(),
                })?;
            url.set_port(server.port()).map_err(|()| OAuthError::Url {
                what: "accounts server",
                reason: "bad port".into(),
            })?;
        }
        Ok(url)
    }

    fn client(
        &self,
        vendor: &VendorOAuth,
        app: &OAuthApp,
        token_url: &Url,
    ) -> TokenClient<EndpointNotSet> {
        let client = oauth2::Client::new(ClientId::new(app.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                app.client_secret.expose_secret().to_owned(),
            ))
            .set_token_uri(TokenUrl::from_url(token_url.clone()));
        if vendor.spec.client_secret_in_body {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        }
    }

    // --- start -----------------------------------------------------------------------------------

    /// Starts a flow for `tenant` and `vendor`, asking for the scopes of `capabilities` (all the
    /// vendor serves when `None`). Returns the one-time authorization URL.
    pub async fn start(
        &self,
        tenant: &TenantId,
        vendor_id: &str,
        capabilities: Option<&[Capability]>,
    ) -> Result<Started, OAuthError> {
        let vendor = self.vendor(vendor_id)?;
        self.inner.store.tenant(tenant).await?;
        let app = &self.app_for(tenant, vendor.id).await?;
        let redirect_uri = self.redirect_uri()?;
        let wanted: Vec<Capability> = capabilities
            .map(<[Capability]>::to_vec)
            .unwrap_or_else(|| vendor.capabilities.to_vec());
        let scopes: Vec<String> = vendor
            .spec
            .scopes
            .iter()
            .filter(|(capability, _)| wanted.contains(capability))
            .flat_map(|(_, scopes)| scopes.iter().map(|s| (*s).to_owned()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let state_bytes: [u8; 32] = rand::random();
        let state = URL_SAFE_NO_PAD.encode(state_bytes);
        let hash = state_hash(&state);
        let authorize = app
            .authorize_url
            .as_deref()
            .unwrap_or(vendor.spec.authorize_url);
        let authorize = self.checked("authorize", &app.fill_directory(authorize))?;
        let token_url = self.token_url(&vendor, app, None)?;
        let client = self
            .client(&vendor, app, &token_url)
            .set_auth_uri(AuthUrl::from_url(authorize))
            .set_redirect_uri(RedirectUrl::new(redirect_uri.clone()).map_err(|err| {
                OAuthError::Url {
                    what: "redirect",
                    reason: err.to_string(),
                }
            })?);
        let state_for_url = state.clone();
        let mut request = client.authorize_url(move || CsrfToken::new(state_for_url));
        request = match vendor.spec.scope_delimiter() {
            ' ' => request.add_scopes(scopes.iter().cloned().map(Scope::new)),
            // oauth2 joins scopes with spaces; a comma-separated list goes as the whole
            // parameter (oauth2 then writes no `scope` of its own).
            delimiter => {
                if scopes.is_empty() {
                    request
                } else {
                    request.add_extra_param("scope", scopes.join(&delimiter.to_string()))
                }
            }
        };
        let verifier = if vendor.spec.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            SecretString::from(verifier.secret().clone())
        } else {
            // No PKCE at this vendor: the sealed column still holds a value, never sent.
            SecretString::from(String::new())
        };
        for (name, value) in vendor.spec.extra_authorize_params {
            request = request.add_extra_param(*name, *value);
        }
        let (url, _) = request.url();
        let (key_id, sealed) =
            self.inner
                .vault
                .seal_value(tenant, &verifier_name(&hash), &verifier)?;
        let now = self.now_ms();
        let expires_at_ms = now + STATE_LIFETIME_MS;
        self.inner
            .store
            .put_oauth_state(&NewOAuthState {
                state_hash: &hash,
                tenant_id: tenant,
                vendor: vendor.id,
                verifier: &sealed,
                verifier_key: &key_id,
                redirect_uri: &redirect_uri,
                scopes: &scopes.join(" "),
                now_ms: now,
                expires_at_ms,
            })
            .await?;
        Ok(Started {
            authorization_url: url.to_string(),
            expires_at_ms,
            scopes,
        })
    }

    // --- callback --------------------------------------------------------------------------------

    /// Finishes a flow from the callback's query parameters. Always answers a page: success, or
    /// the precise failure; nothing is stored unless the flow succeeded.
    pub async fn callback(&self, query: &HashMap<String, String>) -> CallbackPage {
        match self.callback_inner(query).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, "OAuth callback failed");
                page(
                    502,
                    "Connection failed",
                    &format!(
                        "The account could not be connected: {err}. Start again from the beginning."
                    ),
                )
            }
        }
    }

    async fn callback_inner(
        &self,
        query: &HashMap<String, String>,
    ) -> Result<CallbackPage, OAuthError> {
        let Some(state) = query.get("state").filter(|s| !s.is_empty()) else {
            self.count("oauth_state_missing");
            return Ok(page(
                400,
                "Connection failed",
                "The link has no state parameter. Start the connection again.",
            ));
        };
        let hash = state_hash(state);
        let claimed = match self
            .inner
            .store
            .claim_oauth_state(&hash, self.now_ms())
            .await?
        {
            Ok(claimed) => claimed,
            Err(refusal) => {
                let (what, message) = match refusal {
                    StateRefusal::Unknown => (
                        "oauth_state_unknown",
                        "This link was not issued by this service. Start the connection again.",
                    ),
                    StateRefusal::Used => (
                        "oauth_state_used",
                        "This link was already used. Start the connection again.",
                    ),
                    StateRefusal::Expired => (
                        "oauth_state_expired",
                        "This link expired (links are valid for 10 minutes). Start the connection again.",
                    ),
                };
                self.count(what);
                return Ok(page(400, "Connection failed", message));
            }
        };
        let vendor = self.vendor(&claimed.vendor)?;
        let tenant = self.inner.store.tenant(&claimed.tenant_id).await?;
        if let Some(error) = query.get("error") {
            self.count("oauth_access_denied");
            let message = if error == "access_denied" {
                format!(
                    "Access to {} was declined, so nothing was connected to {}. Start again to connect.",
                    vendor.name, tenant.name
                )
            } else {
                // The vendor's error code is a short token from RFC 6749 §4.1.2.1; show only
                // that, never its free-text description.
                let code: String = error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect();
                format!(
                    "{} refused the connection ({code}). Nothing was connected.",
                    vendor.name
                )
            };
            return Ok(page(400, "Not connected", &message));
        }
        let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
            return Ok(page(
                400,
                "Connection failed",
                "The vendor sent no authorization code. Start the connection again.",
            ));
        };
        let app = &self.app_for(&claimed.tenant_id, vendor.id).await?;
        let accounts_server = match vendor.spec.accounts_server_param {
            Some(param) => match query.get(param) {
                Some(server) => Some(self.accounts_server(&vendor, server)?),
                None => None,
            },
            None => None,
        };
        let token_url = self.token_url(&vendor, app, accounts_server.as_deref())?;
        let verifier = self.inner.vault.open_value(
            &claimed.tenant_id,
            &verifier_name(&hash),
            &claimed.verifier_key,
            claimed.verifier,
        )?;
        let redirect = RedirectUrl::new(claimed.redirect_uri).map_err(|err| OAuthError::Url {
            what: "redirect",
            reason: err.to_string(),
        })?;
        let client = self
            .client(&vendor, app, &token_url)
            .set_redirect_uri(redirect);
        let mut exchange = client.exchange_code(AuthorizationCode::new(code.clone()));
        if vendor.spec.pkce {
            exchange = exchange
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
        }
        let http = GuardedHttp::of(self, vendor.spec.ok_envelope);
        let body = exchange
            .request_async(&http)
            .await
            .map_err(|err| token_error(vendor.id, err))?;
        let now = self.now_ms();
        let granted = body
            .scopes()
            .map(|scopes| granted_scopes(&vendor.spec, scopes))
            .unwrap_or(claimed.scopes);
        let mut extra = Map::new();
        for field in vendor.spec.api_base_fields {
            if let Some(value) = body
                .extra_fields()
                .fields
                .get(*field)
                .and_then(Value::as_str)
            {
                let url = self.checked("API base", value)?;
                extra.insert((*field).to_owned(), Value::String(url.to_string()));
            }
        }
        if let Some(server) = &accounts_server {
            extra.insert("accounts_server".into(), Value::String(server.clone()));
        }
        let account = vendor.spec.account_fields.iter().find_map(|field| {
            match body.extra_fields().fields.get(*field) {
                Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        });
        let blob = TokenBlob {
            access_token: body.access_token().secret().clone(),
            refresh_token: body.refresh_token().map(|t| t.secret().clone()),
            expires_at_ms: body
                .expires_in()
                .map(|d| now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)),
        };
        let name = secret_name(vendor.id);
        self.put_blob(&claimed.tenant_id, vendor.id, &name, &blob)
            .await?;
        let extra = Value::Object(extra).to_string();
        let connection = self
            .inner
            .store
            .put_oauth_connection(
                &claimed.tenant_id,
                vendor.id,
                &ConnectionUpdate {
                    account: account.as_deref(),
                    scopes: &granted,
                    secret_name: &name,
                    extra: &extra,
                    expires_at_ms: blob.expires_at_ms,
                },
                now,
            )
            .await?;
        tracing::info!(tenant = %claimed.tenant_id, vendor = vendor.id, "OAuth account connected");
        let mut done = page(
            200,
            "Connected",
            &format!(
                "{} is connected to {} — you can close this tab.",
                vendor.name, tenant.name
            ),
        );
        done.connected = Some(connection);
        Ok(done)
    }

    /// The origin of an accounts server named by the callback, if its host is one the vendor
    /// declares (anything else would let a forged callback steer the token request).
    fn accounts_server(&self, vendor: &VendorOAuth, server: &str) -> Result<String, OAuthError> {
        let url = self.checked("accounts server", server)?;
        let host = url.host_str().unwrap_or_default();
        let allowed = vendor
            .spec
            .accounts_server_hosts
            .iter()
            .any(|suffix| host == suffix.trim_start_matches('.') || host.ends_with(suffix));
        if !allowed {
            return Err(OAuthError::Url {
                what: "accounts server",
                reason: format!("{host} is not an accounts server of {}", vendor.name),
            });
        }
        Ok(url.origin().ascii_serialization())
    }

    async fn put_blob(
        &self,
        tenant: &TenantId,
        vendor: &str,
        name: &str,
        blob: &TokenBlob,
    ) -> Result<(), OAuthError> {
        let text = serde_json::to_string(blob).map_err(|err| OAuthError::Token {
            vendor: vendor.to_owned(),
            reason: format!("token record: {err}"),
        })?;
        self.inner
            .vault
            .put(tenant, name, vendor, &SecretString::from(text))
            .await?;
        Ok(())
    }

    async fn blob(&self, connection: &OAuthConnection) -> Result<TokenBlob, OAuthError> {
        let text = self
            .inner
            .vault
            .reveal(&connection.tenant_id, &connection.secret_name)
            .await?;
        serde_json::from_str(text.expose_secret()).map_err(|_| OAuthError::Token {
            vendor: connection.vendor.clone(),
            reason: "the stored token record is unreadable; connect again".into(),
        })
    }

    // --- reading and disconnecting ----------------------------------------------------------------

    pub async fn connections(&self, tenant: &TenantId) -> Result<Vec<OAuthConnection>, OAuthError> {
        Ok(self.inner.store.list_oauth_connections(tenant).await?)
    }

    pub async fn connection(
        &self,
        tenant: &TenantId,
        vendor: &str,
    ) -> Result<OAuthConnection, OAuthError> {
        match self.inner.store.oauth_connection(tenant, vendor).await {
            Ok(connection) => Ok(connection),
            Err(StoreError::NotFound { .. }) => Err(OAuthError::NotConnected {
                tenant: tenant.clone(),
                vendor: vendor.to_owned(),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// Revokes the grant at the vendor where it has a revocation endpoint (the refresh token,
    /// which ends the whole grant, else the access token), then deletes the tokens and the row.
    pub async fn disconnect(
        &self,
        tenant: &TenantId,
        vendor_id: &str,
    ) -> Result<Disconnected, OAuthError> {
        let connection = self.connection(tenant, vendor_id).await?;
        let mut revoked = false;
        if let (Ok(vendor), Ok(blob)) = (self.vendor(vendor_id), self.blob(&connection).await)
            && let Ok(app) = self.app_for(tenant, vendor.id).await
        {
            match self.revoke(&vendor, &app, &connection, &blob).await {
                Ok(done) => revoked = done,
                Err(err) => {
                    tracing::warn!(tenant = %tenant, vendor = vendor.id, error = %err, "OAuth revocation failed; deleting the tokens anyway");
                }
            }
        }
        match self
            .inner
            .vault
            .delete(tenant, &connection.secret_name)
            .await
        {
            Ok(()) | Err(VaultError::Store(StoreError::NotFound { .. })) => {}
            Err(err) => return Err(err.into()),
        }
        self.inner
            .store
            .delete_oauth_connection(tenant, vendor_id)
            .await?;
        Ok(Disconnected { revoked })
    }

    async fn revoke(
        &self,
        vendor: &VendorOAuth,
        app: &OAuthApp,
        connection: &OAuthConnection,
        blob: &TokenBlob,
    ) -> Result<bool, OAuthError> {
        let Some(base) = app.revoke_url.as_deref().or(vendor.spec.revoke_url) else {
            return Ok(false);
        };
        let mut url = self.checked("revocation", &app.fill_directory(base))?;
        if let Some(server) = extra_text(connection, "accounts_server") {
            let server = self.checked("accounts server", &server)?;
            let _ = url.set_host(server.host_str());
            let _ = url.set_port(server.port());
        }
        // RFC 7009 by hand: oauth2's revocation refuses plain-http endpoints, which only the
        // egress policy should decide (a loopback test server).
        let (token, hint) = match &blob.refresh_token {
            Some(refresh) => (refresh.as_str(), "refresh_token"),
            None => (blob.access_token.as_str(), "access_token"),
        };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let secret = app.client_secret.expose_secret();
        let mut request = self.inner.http.post(url);
        if vendor.spec.client_secret_in_body {
            form.push(("client_id", app.client_id.as_str()));
            form.push(("client_secret", secret));
        } else {
            request = request.basic_auth(form_encode(&app.client_id), Some(form_encode(secret)));
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|err| OAuthError::Transport {
                vendor: vendor.id.to_owned(),
                reason: err.without_url().to_string(),
            })?;
        if !response.status().is_success() {
            return Err(OAuthError::Token {
                vendor: vendor.id.to_owned(),
                reason: format!("revocation answered HTTP {}", response.status().as_u16()),
            });
        }
        if vendor.spec.ok_envelope {
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|err| OAuthError::Transport {
                    vendor: vendor.id.to_owned(),
                    reason: err.without_url().to_string(),
                })?;
            let (status, body) = unwrap_ok_envelope(status, body.to_vec());
            if status != 200 {
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|answer| answer.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(OAuthError::Token {
                    vendor: vendor.id.to_owned(),
                    reason: format!("revocation refused: {code}"),
                });
            }
        }
        Ok(true)
    }

    /// Marks a connection `needs_reconnect` and queues `connection.needs_reconnect` for the
    /// tenant's webhook (once per change).
    async fn needs_reconnect(&self, tenant: &TenantId, vendor: &str) -> Result<(), OAuthError> {
        let now = self.now_ms();
        if self
            .inner
            .store
            .mark_oauth_needs_reconnect(tenant, vendor, now)
            .await?
        {
            self.count("oauth_needs_reconnect");
            tracing::warn!(tenant = %tenant, vendor, "OAuth grant refused: the connection needs to be connected again");
            let payload = json!({
                "type": NEEDS_RECONNECT_EVENT,
                "tenant_id": tenant.as_str(),
                "vendor": vendor,
                "at_ms": now,
            })
            .to_string();
            let dedupe = format!("{NEEDS_RECONNECT_EVENT}:{vendor}:{now}");
            let tenant_id = tenant.clone();
            let message = NewOutboxMessage {
                tenant_id: &tenant_id,
                event_type: NEEDS_RECONNECT_EVENT,
                dedupe_key: &dedupe,
                payload: &payload,
            };
            self.inner.store.enqueue_webhook(&message).await?;
        }
        Ok(())
    }

    /// A token source over the tenant's connection to `vendor`, for its connector.
    pub fn token_source(&self, tenant: &TenantId, vendor: &str) -> ConnectionTokens {
        ConnectionTokens::new(self.clone(), tenant.clone(), vendor.to_owned())
    }

    /// The non-secret fields recorded with a connection (`instance_url`, `api_domain`, …).
    pub fn api_base(connection: &OAuthConnection, fields: &[&str]) -> Option<String> {
        fields.iter().find_map(|f| extra_text(connection, f))
    }
}

/// An answer of a vendor that wraps every answer in `{"ok": …}` (Slack): `ok: false` is a
/// failure even on HTTP 200, so it becomes the RFC 6749 §5.2 shape (HTTP 400, `{"error": code}`)
/// the standard handling reads; the vendor's code is kept, its other fields dropped. Anything
/// else passes unchanged.
fn unwrap_ok_envelope(status: u16, body: Vec<u8>) -> (u16, Vec<u8>) {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&body) else {
        return (status, body);
    };
    if answer.get("ok") != Some(&Value::Bool(false)) {
        return (status, body);
    }
    let code = answer
        .get("error")
        .and_then(Value::as_str)
        .filter(|code| !code.is_empty())
        .unwrap_or("unknown_error");
    (400, json!({ "error": code }).to_string().into_bytes())
}

/// `application/x-www-form-urlencoded` of one value, as RFC 6749 §2.3.1 asks for basic auth.
fn form_encode(text: &str) -> String {
    oauth2::url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn extra_text(connection: &OAuthConnection, field: &str) -> Option<String> {
    serde_json::from_str::<Map<String, Value>>(&connection.extra)
        .ok()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

/// A token endpoint failure, without the endpoint's free text (which may echo what was sent).
fn token_error(
    vendor: &str,
    err: RequestTokenError<HttpFailure, BasicErrorResponse>,
) -> OAuthError {
    match err {
        RequestTokenError::ServerResponse(body) => OAuthError::Token {
            vendor: vendor.to_owned(),
            reason: body.error().to_string(),
        },
        RequestTokenError::Request(err) => OAuthError::Transport {
            vendor: vendor.to_owned(),
            reason: err.to_string(),
        },
        RequestTokenError::Parse(..) => OAuthError::Token {
            vendor: vendor.to_owned(),
            reason: "the token response is not valid JSON of the expected shape".into(),
        },
        RequestTokenError::Other(text) => OAuthError::Token {
            vendor: vendor.to_owned(),
            reason: text,
        },
    }
}

/// The scopes of a token answer, space-separated as stored; a vendor whose answer lists them
/// comma-separated (Slack: `"scope": "chat:write,channels:read"`) is split on its delimiter.
fn granted_scopes(spec: &crate::connectors::kit::OAuthSpec, scopes: &[Scope]) -> String {
    let delimiter = spec.scope_delimiter();
    scopes
        .iter()
        .flat_map(|s| s.as_str().split(delimiter))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Error codes that say the grant itself is gone: RFC 6749's `invalid_grant`, and the codes
/// vendors answer a refresh with instead (Slack: `invalid_refresh_token`, `token_revoked`).
const GRANT_GONE: [&str; 3] = ["invalid_grant", "invalid_refresh_token", "token_revoked"];

/// Whether a token failure says the grant itself is gone (only a new consent helps).
fn is_invalid_grant(err: &RequestTokenError<HttpFailure, BasicErrorResponse>) -> bool {
    match err {
        RequestTokenError::ServerResponse(body) => match body.error() {
            BasicErrorResponseType::InvalidGrant => true,
            BasicErrorResponseType::Extension(code) => GRANT_GONE.contains(&code.as_str()),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_hash_is_hex_sha256() {
        assert_eq!(
            state_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ok_false_envelope_reads_as_a_token_error() {
        let (status, body) =
            unwrap_ok_envelope(200, br#"{"ok": false, "error": "invalid_code"}"#.to_vec());
        assert_eq!(status, 400);
        let answer: BasicErrorResponse = serde_json::from_slice(&body).expect("RFC 6749 error");
        assert_eq!(answer.error().to_string(), "invalid_code");
        // No code still fails, with a generic one.
        let (status, body) = unwrap_ok_envelope(200, br#"{"ok": false}"#.to_vec());
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("unknown_error"));
        // Success and non-JSON pass through untouched.
        let ok = br#"{"ok": true, "access_token": "xoxb-1", "token_type": "bot"}"#.to_vec();
        assert_eq!(unwrap_ok_envelope(200, ok.clone()), (200, ok));
        assert_eq!(
            unwrap_ok_envelope(502, b"bad gateway".to_vec()),
            (502, b"bad gateway".to_vec())
        );
    }

    #[test]
    fn page_escapes_html() {
        let p = page(400, "x", "<script>&");
        assert!(p.html.contains("&lt;script&gt;&amp;"));
        assert!(!p.html.contains("<script>"));
    }
}

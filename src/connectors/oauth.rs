//! OAuth 2.0 access tokens from a refresh token (RFC 6749 §6), refreshed before they expire.
//!
//! Owns: the cached access token of one connected account and its refresh through the shared
//! policy, one refresh at a time. It must not run the authorization-code flow (that lives with
//! the tenant/vault code) and must never log or display a token: every token is a
//! `SecretString`, and token bodies are redacted by the policy's logger.

use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ConnectorError;
use crate::tools::policy::{ConnectorProfile, HttpPolicy, PolicyError, Replay, RequestContext};

/// Google's token endpoint; other vendors pass their own.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The credentials of one connected account.
pub struct OAuthCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// Hands out a valid access token, refreshing it `refresh_margin` before expiry.
pub struct OAuthTokenSource {
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    state: Mutex<TokenState>,
    refresh_margin: Duration,
    profile: ConnectorProfile,
}

struct TokenState {
    refresh_token: SecretString,
    access: Option<(SecretString, Instant)>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    /// Vendors that rotate refresh tokens send a new one.
    #[serde(default)]
    refresh_token: Option<String>,
}

impl OAuthTokenSource {
    /// `connector` names the breaker/permit bucket the token requests share with the API calls
    /// of the same vendor.
    pub fn new(credentials: OAuthCredentials, connector: &'static str) -> Self {
        Self {
            token_url: credentials.token_url,
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            state: Mutex::new(TokenState {
                refresh_token: credentials.refresh_token,
                access: None,
            }),
            refresh_margin: Duration::from_secs(120),
            profile: ConnectorProfile::new(connector),
        }
    }

    /// Refresh this long before the vendor's stated expiry (default two minutes), so a token
    /// never expires mid-request.
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// A token valid for at least the refresh margin.
    pub async fn access_token(
        &self,
        policy: &HttpPolicy,
        ctx: &RequestContext,
    ) -> Result<SecretString, ConnectorError> {
        // Holding the lock across the refresh makes concurrent callers share one refresh.
        let mut state = self.state.lock().await;
        if let Some((token, refresh_at)) = &state.access
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", state.refresh_token.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let request = policy
            .client()
            .post(self.token_url.clone())
            .form(&form)
            .build()
            .map_err(|err| {
                ConnectorError::Config(format!("token request: {}", err.without_url()))
            })?;
        // A refresh grant can be repeated safely: at worst the vendor issues two tokens.
        let response = policy
            .send(ctx, &self.profile, request, Replay::Idempotent)
            .await
            .map_err(|err| match err {
                PolicyError::Status {
                    code: 400 | 401, ..
                } => ConnectorError::Auth(
                    "the refresh token was refused; the account must be reconnected".into(),
                ),
                other => ConnectorError::Policy(other),
            })?;
        let token: TokenResponse = response
            .json()
            .map_err(|err| ConnectorError::UnexpectedResponse(err.to_string()))?;
        // Without an expiry, assume the common hour and let a 401 force the next refresh.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3_600));
        let refresh_at = Instant::now() + lifetime.saturating_sub(self.refresh_margin);
        let access = SecretString::from(token.access_token);
        if let Some(rotated) = token.refresh_token {
            state.refresh_token = SecretString::from(rotated);
        }
        state.access = Some((access.clone(), refresh_at));
        Ok(access)
    }

    /// Forget the cached token (after the vendor answered 401), so the next call refreshes.
    pub async fn invalidate(&self) {
        self.state.lock().await.access = None;
    }
}

impl std::fmt::Debug for OAuthTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokenSource")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

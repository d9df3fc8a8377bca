//! OAuth 2.0 access tokens for connectors, from either grant a tenant may hold: a stored refresh
//! token (RFC 6749 §6) or a Google service-account key (a signed JWT assertion, RFC 7523),
//! cached and refreshed before they expire.
//!
//! Owns: the cached access token of one connected account, its refresh through the shared policy
//! one refresh at a time, and, for service accounts, minting the RS256 assertion with `ring`.
//! Both grants share one cache and one lock ([`OAuthTokenSource`], a
//! [`TokenSource`]); only the token request differs. The 401 rule (refresh once, resend once)
//! lives in the vendor client, not here. It must not run the authorization-code flow (that lives with the
//! tenant/vault code) and must never log or display a token or a private key: tokens are
//! `SecretString`s, the key stays inside `ring`, and token bodies are redacted by the policy's
//! logger.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ConnectorError;
use super::client::TokenSource;
use crate::connectors::http::{ConnectorProfile, HttpPolicy, PolicyError, Replay, RequestContext};

/// Google's token endpoint; other vendors pass their own.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The scope a calendar connector asks a service account for (read and write events).
pub const GOOGLE_CALENDAR_SCOPE: &str = "https://www.googleapis.com/auth/calendar";
/// The scope a Sheets connector asks for (read and write the tenant's spreadsheets).
pub const GOOGLE_SHEETS_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";
/// The scope a Drive export asks for: only the files and folders the bridge itself creates.
pub const GOOGLE_DRIVE_FILE_SCOPE: &str = "https://www.googleapis.com/auth/drive.file";
/// The scope a Docs export asks for: copying the tenant's own template is a read of a file the
/// bridge did not create, which among `files.copy`'s scopes only `drive` allows.
pub const GOOGLE_DRIVE_SCOPE: &str = "https://www.googleapis.com/auth/drive";

/// The secret fields of a Google OAuth client with its refresh token, the grant a tenant may hold
/// instead of a connection or a service-account key (`[0]`, `[1]`, `[2]` in a vendor's list).
pub const GOOGLE_CLIENT_FIELDS: [super::kit::SecretField; 3] = [
    super::kit::SecretField {
        name: "client_id",
        aliases: &[],
        required: false,
        doc: "OAuth client id (with `client_secret` and `refresh_token`), unless connected",
    },
    super::kit::SecretField {
        name: "client_secret",
        aliases: &[],
        required: false,
        doc: "OAuth client secret",
    },
    super::kit::SecretField {
        name: "refresh_token",
        aliases: &[],
        required: false,
        doc: "OAuth refresh token",
    },
];

/// Google's authorization-code flow as a vendor descriptor states it, asking for `scopes`: PKCE,
/// offline access with consent (a refresh token is issued only then) and incremental consent (a
/// new grant keeps the earlier scopes).
pub const fn google_oauth(
    scopes: &'static [(super::kit::Capability, &'static [&'static str])],
) -> super::kit::OAuthSpec {
    super::kit::OAuthSpec {
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: GOOGLE_TOKEN_URL,
        revoke_url: Some("https://oauth2.googleapis.com/revoke"),
        scopes,
        pkce: true,
        extra_authorize_params: &[
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
        api_base_fields: &[],
        client_secret_in_body: true,
        account_fields: &[],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }
}

/// RFC 7523 grant type of a JWT bearer assertion.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime written into an assertion; Google accepts at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3_600);

/// The credentials of one account connected through the authorization-code flow.
pub struct OAuthCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// A Google service-account key: who signs (`client_email`), with which RSA key, for which
/// token endpoint, and optionally on behalf of which user (domain-wide delegation).
pub struct ServiceAccountKey {
    pub client_email: String,
    pub token_url: Url,
    /// `private_key_id` of the key file, sent as the assertion's `kid` so Google picks the key.
    pub key_id: Option<String>,
    /// The user to impersonate (`sub`); needs domain-wide delegation in the Workspace admin.
    pub subject: Option<String>,
    pub scope: String,
    signing_key: Arc<RsaKeyPair>,
}

/// The fields of a key file we read; every other field is ignored.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccountKey {
    /// A key from its parts; `private_key_pem` is the key file's `private_key` (PKCS#8 PEM).
    /// Errors say what is wrong without quoting the key.
    pub fn new(
        client_email: impl Into<String>,
        private_key_pem: &SecretString,
        token_url: Url,
    ) -> Result<Self, ConnectorError> {
        let client_email = client_email.into();
        if !client_email.contains('@') {
            return Err(ConnectorError::Config(
                "service account client_email is not an email address".into(),
            ));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.expose_secret().as_bytes())
            .map_err(|_| {
                ConnectorError::Config(
                    "service account private_key is not a PEM PKCS#8 private key \
                     (-----BEGIN PRIVATE KEY-----)"
                        .into(),
                )
            })?;
        let signing_key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|rejected| {
            ConnectorError::Config(format!(
                "service account private_key is not a usable RSA key: {rejected}"
            ))
        })?;
        Ok(Self {
            client_email,
            token_url,
            key_id: None,
            subject: None,
            scope: GOOGLE_CALENDAR_SCOPE.to_owned(),
            signing_key: Arc::new(signing_key),
        })
    }

    /// A key from the JSON key file Google's console downloads (`"type": "service_account"`).
    pub fn from_key_file(text: &str) -> Result<Self, ConnectorError> {
        // serde's messages may quote the input, which holds the private key: say only what.
        let file: KeyFile = serde_json::from_str(text).map_err(|_| {
            ConnectorError::Config("the service account key file is not a JSON object".into())
        })?;
        if file.kind.as_deref() != Some("service_account") {
            return Err(ConnectorError::Config(
                "the key file's type is not \"service_account\"".into(),
            ));
        }
        let missing = |field: &str| ConnectorError::Config(format!("the key file lacks {field}"));
        let token_url = file.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URL);
        let token_url = Url::parse(token_url)
            .map_err(|_| ConnectorError::Config("the key file's token_uri is not a URL".into()))?;
        let private_key =
            SecretString::from(file.private_key.ok_or_else(|| missing("private_key"))?);
        let mut key = Self::new(
            file.client_email.ok_or_else(|| missing("client_email"))?,
            &private_key,
            token_url,
        )?;
        key.key_id = file.private_key_id.filter(|id| !id.is_empty());
        Ok(key)
    }

    pub fn with_subject(mut self, subject: Option<String>) -> Self {
        self.subject = subject.filter(|s| !s.trim().is_empty());
        self
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The RS256-signed assertion (`header.claims.signature`, base64url) issued at `issued_at`.
    pub fn assertion(&self, issued_at: SystemTime) -> Result<SecretString, ConnectorError> {
        let iat = issued_at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ConnectorError::Config("the system clock is before 1970".into()))?
            .as_secs();
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        if let Some(key_id) = &self.key_id {
            header["kid"] = json!(key_id);
        }
        let mut claims = json!({
            "iss": self.client_email,
            "scope": self.scope,
            "aud": self.token_url.as_str(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        if let Some(subject) = &self.subject {
            claims["sub"] = json!(subject);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.signing_key.public().modulus_len()];
        self.signing_key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                ConnectorError::Config("signing the service account assertion failed".into())
            })?;
        Ok(SecretString::from(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_url", &self.token_url.as_str())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// How an access token is obtained.
enum Grant {
    RefreshToken {
        client_id: String,
        client_secret: SecretString,
        /// Replaced when the vendor rotates it.
        refresh_token: SecretString,
    },
    ServiceAccount(ServiceAccountKey),
}

impl Grant {
    fn token_form(&self) -> Result<Vec<(&'static str, SecretString)>, ConnectorError> {
        Ok(match self {
            Self::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => vec![
                ("grant_type", SecretString::from("refresh_token")),
                ("refresh_token", refresh_token.clone()),
                ("client_id", SecretString::from(client_id.clone())),
                ("client_secret", client_secret.clone()),
            ],
            Self::ServiceAccount(key) => vec![
                ("grant_type", SecretString::from(JWT_BEARER_GRANT)),
                ("assertion", key.assertion(SystemTime::now())?),
            ],
        })
    }

    /// What a refused token request means for this grant, with the vendor's OAuth error code
    /// (`invalid_grant`, …) when it sent one; OAuth error bodies carry no secret.
    fn refused(&self, body_snippet: &str) -> ConnectorError {
        let detail = serde_json::from_str::<Value>(body_snippet)
            .ok()
            .and_then(|body| {
                let code = body.get("error")?.as_str()?.to_owned();
                Some(
                    match body.get("error_description").and_then(Value::as_str) {
                        Some(description) => format!(" ({code}: {description})"),
                        None => format!(" ({code})"),
                    },
                )
            })
            .unwrap_or_default();
        ConnectorError::Auth(match self {
            Self::RefreshToken { .. } => {
                format!("the refresh token was refused{detail}; the account must be reconnected")
            }
            Self::ServiceAccount(key) => format!(
                "the token request of service account {} was refused{detail}; check that the \
                 key is active, the Calendar API is enabled, and any subject is delegated the \
                 calendar scope",
                key.client_email
            ),
        })
    }
}

/// Hands out a valid access token, refreshing it `refresh_margin` before expiry; the
/// [`TokenSource`] of both grants (the vendor client calls it and handles the 401 rule).
pub struct OAuthTokenSource {
    policy: HttpPolicy,
    token_url: Url,
    state: Mutex<TokenState>,
    refresh_margin: Duration,
    profile: ConnectorProfile,
}

struct TokenState {
    grant: Grant,
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
    /// Tokens from a refresh token, fetched through `policy`. `connector` names the
    /// breaker/permit bucket the token requests share with the API calls of the same vendor.
    pub fn new(policy: HttpPolicy, credentials: OAuthCredentials, connector: &'static str) -> Self {
        Self::with_grant(
            policy,
            credentials.token_url,
            Grant::RefreshToken {
                client_id: credentials.client_id,
                client_secret: credentials.client_secret,
                refresh_token: credentials.refresh_token,
            },
            connector,
        )
    }

    /// Tokens from a service-account key (RFC 7523 JWT bearer grant at the key's token URL).
    pub fn service_account(
        policy: HttpPolicy,
        key: ServiceAccountKey,
        connector: &'static str,
    ) -> Self {
        Self::with_grant(
            policy,
            key.token_url.clone(),
            Grant::ServiceAccount(key),
            connector,
        )
    }

    fn with_grant(
        policy: HttpPolicy,
        token_url: Url,
        grant: Grant,
        connector: &'static str,
    ) -> Self {
        Self {
            policy,
            token_url,
            state: Mutex::new(TokenState {
                grant,
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

    /// A new token from the grant, cached; the caller holds the state lock, so concurrent
    /// callers share one refresh.
    async fn fetch(
        &self,
        state: &mut TokenState,
        ctx: &RequestContext,
    ) -> Result<SecretString, ConnectorError> {
        let form = state.grant.token_form()?;
        let exposed: Vec<(&str, &str)> = form
            .iter()
            .map(|(name, value)| (*name, value.expose_secret()))
            .collect();
        let request = self
            .policy
            .client()
            .post(self.token_url.clone())
            .form(&exposed)
            .build()
            .map_err(|err| {
                ConnectorError::Config(format!("token request: {}", err.without_url()))
            })?;
        // Either grant can be repeated safely: at worst the vendor issues two tokens.
        let response = self
            .policy
            .send(ctx, &self.profile, request, Replay::Idempotent)
            .await
            .map_err(|err| match err {
                PolicyError::Status {
                    code: 400 | 401,
                    body_snippet,
                    ..
                } => state.grant.refused(&body_snippet),
                other => ConnectorError::Policy(other),
            })?;
        let token: TokenResponse = response
            .json()
            .map_err(|err| ConnectorError::UnexpectedResponse(err.to_string()))?;
        // Without an expiry, assume the common hour and let a 401 force the next refresh.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3_600));
        let refresh_at = Instant::now() + lifetime.saturating_sub(self.refresh_margin);
        let access = SecretString::from(token.access_token);
        if let (Some(rotated), Grant::RefreshToken { refresh_token, .. }) =
            (token.refresh_token, &mut state.grant)
        {
            *refresh_token = SecretString::from(rotated);
        }
        state.access = Some((access.clone(), refresh_at));
        Ok(access)
    }
}

#[async_trait::async_trait]
impl TokenSource for OAuthTokenSource {
    /// A token valid for at least the refresh margin.
    async fn token(&self, ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        // Holding the lock across the refresh makes concurrent callers share one refresh.
        let mut state = self.state.lock().await;
        if let Some((token, refresh_at)) = &state.access
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        self.fetch(&mut state, ctx).await
    }

    /// A token other than `rejected`: the one a concurrent caller already fetched, else a new one.
    async fn refresh(
        &self,
        ctx: &RequestContext,
        rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError> {
        let mut state = self.state.lock().await;
        if let Some((token, _)) = &state.access
            && token.expose_secret() != rejected.expose_secret()
        {
            return Ok(token.clone());
        }
        state.access = None;
        self.fetch(&mut state, ctx).await
    }
}

impl std::fmt::Debug for OAuthTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokenSource")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The Google token source of a vendor secret: a service-account key file (`"type":
/// "service_account"`, optional `subject` to impersonate, asking for `scope`) or an OAuth client
/// with a refresh token. The token endpoint comes from the tenant's own secret, so it passes the
/// egress guard here (and again, like every request, when the token is fetched). Shared by the
/// Google vendors, which must not import each other.
pub fn google_token_source(
    credentials: &super::kit::Credentials,
    policy: &HttpPolicy,
    connector: &'static str,
    scope: &str,
) -> Result<OAuthTokenSource, super::kit::BuildFailure> {
    use super::kit::BuildFailure;
    let egress = &policy.config().egress;
    let invalid = |err: ConnectorError| {
        BuildFailure::InvalidCredentials(match err {
            ConnectorError::Config(reason) => reason,
            other => other.to_string(),
        })
    };
    let token_url = credentials
        .text("token_uri")
        .or_else(|| credentials.text("token_url"))
        .unwrap_or(GOOGLE_TOKEN_URL);
    let token_url = super::parse_base_url(token_url)
        .map_err(|err| BuildFailure::InvalidCredentials(format!("token_uri: {err}")))?;
    egress
        .check_url(&token_url)
        .map_err(|err| BuildFailure::InvalidCredentials(format!("token_uri: {err}")))?;
    if credentials.text("type") == Some("service_account") {
        let mut key = ServiceAccountKey::new(
            credentials.required_text("client_email")?,
            &credentials.secret(&["private_key"])?,
            token_url,
        )
        .map_err(invalid)?
        .with_subject(credentials.text("subject").map(str::to_owned))
        .with_scope(scope);
        key.key_id = credentials.text("private_key_id").map(str::to_owned);
        return Ok(OAuthTokenSource::service_account(
            policy.clone(),
            key,
            connector,
        ));
    }
    Ok(OAuthTokenSource::new(
        policy.clone(),
        OAuthCredentials {
            token_url,
            client_id: credentials.required_text("client_id")?,
            client_secret: credentials.secret(&["client_secret"])?,
            refresh_token: SecretString::from(credentials.required_text("refresh_token")?),
        },
        connector,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_PEM: &str =
        include_str!("../../fixtures/connectors/test_only_service_account_key.pem");

    fn token_url() -> Url {
        Url::parse(GOOGLE_TOKEN_URL).expect("valid")
    }

    #[test]
    fn a_bad_key_is_a_configuration_error_that_does_not_quote_it() {
        let garbage = SecretString::from(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n",
        );
        let err =
            ServiceAccountKey::new("bot@example.iam.gserviceaccount.com", &garbage, token_url())
                .expect_err("refused");
        assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        let not_pem = SecretString::from("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC");
        let err =
            ServiceAccountKey::new("bot@example.iam.gserviceaccount.com", &not_pem, token_url())
                .expect_err("refused");
        assert!(err.to_string().contains("PEM PKCS#8"), "{err}");
        assert!(!err.to_string().contains("MIIE"), "{err}");
    }

    #[test]
    fn key_file_errors_name_the_field_and_hide_the_key() {
        let wrong_type = json!({"type": "authorized_user", "private_key": KEY_PEM}).to_string();
        let err = ServiceAccountKey::from_key_file(&wrong_type).expect_err("refused");
        assert!(err.to_string().contains("service_account"), "{err}");
        let no_email = json!({"type": "service_account", "private_key": KEY_PEM}).to_string();
        let err = ServiceAccountKey::from_key_file(&no_email).expect_err("refused");
        assert!(err.to_string().contains("client_email"), "{err}");
        let broken = format!(
            "{{\"type\": \"service_account\", \"private_key\": \"{}",
            &KEY_PEM[..60]
        );
        let err = ServiceAccountKey::from_key_file(&broken).expect_err("refused");
        assert!(!err.to_string().contains("BEGIN"), "{err}");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = ServiceAccountKey::new(
            "bot@example.iam.gserviceaccount.com",
            &SecretString::from(KEY_PEM),
            token_url(),
        )
        .expect("valid key");
        let shown = format!("{key:?}");
        assert!(shown.contains("bot@example"), "{shown}");
        assert!(
            !shown.contains("MII") && !shown.contains("modulus"),
            "{shown}"
        );
    }

    #[test]
    fn refusals_carry_the_oauth_error_code() {
        let key = ServiceAccountKey::new(
            "bot@example.iam.gserviceaccount.com",
            &SecretString::from(KEY_PEM),
            token_url(),
        )
        .expect("valid key");
        let err = Grant::ServiceAccount(key)
            .refused(r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#);
        assert_eq!(
            err.to_string(),
            "vendor authorisation failed: the token request of service account \
             bot@example.iam.gserviceaccount.com was refused (invalid_grant: Invalid JWT \
             Signature.); check that the key is active, the Calendar API is enabled, and any \
             subject is delegated the calendar scope"
        );
        let refresh = Grant::RefreshToken {
            client_id: "id".into(),
            client_secret: SecretString::from("s"),
            refresh_token: SecretString::from("r"),
        };
        assert_eq!(
            refresh.refused("<html>").to_string(),
            "vendor authorisation failed: the refresh token was refused; the account must be \
             reconnected"
        );
    }
}

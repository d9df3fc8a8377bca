//! Email through the tenant's Gmail (Google Workspace) account, as a [`Messenger`].
//!
//! Built from `vendor-specs/google-gmail/gmail__v1.json`, method `gmail.users.messages.send`
//! (`POST gmail/v1/users/{userId}/messages/send` with `{"raw": base64url(RFC 5322)}`), for
//! `userId` `me`, with an OAuth access token: the tenant's OAuth connection (`callbridge connect
//! --vendor gmail`), or a client id, secret and refresh token in the secret. The message is the
//! same RFC 5322 email the SMTP channel sends ([`super::messages::email`]). Gmail has no
//! idempotency key, so a send is never replayed. It never logs tokens or the message.

use std::sync::Arc;

use base64::Engine;
use lettre::message::Mailbox;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::ConnectorError;
use super::client::{Auth, TokenSource, VendorClient};
use super::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::messages::{Channel, Message, Messenger, Sent, email, email_address};
use super::oauth::{OAuthCredentials, OAuthTokenSource};
use super::parse_base_url;

pub const CONNECTOR: &str = "gmail";
pub const DEFAULT_BASE_URL: &str = "https://gmail.googleapis.com/";
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Send-only access: the narrowest scope `users.messages.send` accepts.
pub const GMAIL_SEND_SCOPE: &str = "https://www.googleapis.com/auth/gmail.send";

pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

pub struct Gmail {
    client: VendorClient,
    from: Mailbox,
}

impl std::fmt::Debug for Gmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gmail").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

impl Gmail {
    pub fn new(
        policy: HttpPolicy,
        base: reqwest::Url,
        tokens: Arc<dyn TokenSource>,
        from: Mailbox,
    ) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), base, Auth::OAuth(tokens)),
            from,
        }
    }
}

#[async_trait::async_trait]
impl Messenger for Gmail {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        let key = ctx
            .idempotency_key
            .clone()
            .unwrap_or_else(|| ctx.tool_call_id.clone());
        let mail = email(&self.from, message, &key)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mail.formatted());
        // operationId: gmail.users.messages.send
        let sent: SentMessage = self
            .client
            .post(&["gmail", "v1", "users", "me", "messages", "send"])
            .json(json!({ "raw": raw }))
            .replay(Replay::Never)
            .send_json(ctx, "message")
            .await?;
        Ok(Sent {
            id: sent.id,
            form: "text",
        })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: gmail.users.getProfile
        self.client
            .get(&["gmail", "v1", "users", "me", "profile"])
            .send(ctx, "mailbox")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Gmail",
    spec: "google-gmail/gmail__v1.json",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "from",
                aliases: &[],
                required: true,
                doc: "the connected mailbox's address (or one of its send-as aliases)",
            },
            SecretField {
                name: "from_name",
                aliases: &[],
                required: false,
                doc: "sender display name",
            },
            SecretField {
                name: "client_id",
                aliases: &[],
                required: false,
                doc: "OAuth client id, without an OAuth connection (with client_secret, refresh_token)",
            },
            SecretField {
                name: "client_secret",
                aliases: &[],
                required: false,
                doc: "OAuth client secret",
            },
            SecretField {
                name: "refresh_token",
                aliases: &[],
                required: false,
                doc: "OAuth refresh token with the gmail.send scope",
            },
        ],
        note: "or connect the mailbox with `callbridge connect` (OAuth); the secret then holds only `from`",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: GOOGLE_TOKEN_URL,
        revoke_url: Some("https://oauth2.googleapis.com/revoke"),
        scopes: &[(Capability::Messaging, &[GMAIL_SEND_SCOPE])],
        pkce: true,
        extra_authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        api_base_fields: &[],
        client_secret_in_body: true,
        account_fields: &[],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }),
    webhooks: None,
    profile,
    build,
};

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let address = email_address(&ctx.credentials.required_text("from")?)
        .map_err(|_| BuildFailure::Config("from is not an email address".into()))?;
    let from = Mailbox::new(
        ctx.credentials.text("from_name").map(str::to_owned),
        address
            .parse()
            .map_err(|_| BuildFailure::Config("from is not an email address".into()))?,
    );
    let tokens: Arc<dyn TokenSource> = match &ctx.oauth {
        Some(grant) => grant.tokens.clone(),
        None => {
            let token_url = parse_base_url(GOOGLE_TOKEN_URL)
                .map_err(|err| BuildFailure::Config(err.to_string()))?;
            Arc::new(OAuthTokenSource::new(
                ctx.policy.clone(),
                OAuthCredentials {
                    token_url,
                    client_id: ctx.credentials.required_text("client_id")?,
                    client_secret: ctx.credentials.secret(&["client_secret"])?,
                    refresh_token: SecretString::from(
                        ctx.credentials.required_text("refresh_token")?,
                    ),
                },
                CONNECTOR,
            ))
        }
    };
    Ok(Built {
        messenger: Some(Arc::new(Gmail::new(
            ctx.policy.clone(),
            ctx.base_url()?,
            tokens,
            from,
        ))),
        ..Built::default()
    })
}

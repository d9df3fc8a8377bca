//! Slack as a [`Messenger`] for staff notifications: an incoming webhook (`webhook_url`), or a bot
//! token posting with `chat.postMessage` to a `channel`. A tenant's OAuth connection to Slack
//! (`oauth.v2.access`, bot scope `chat:write`) supplies the bot token; the `channel` setting
//! still comes from the connector secret.
//!
//! Built from `vendor-specs/slack/slack_web_openapi_v2.json` (`POST /api/chat.postMessage`,
//! `Authorization: Bearer xoxb-…`, JSON `{channel, text}`; Slack answers 200 with `ok: false` and
//! an `error` code on failure) and Slack's incoming-webhook reference
//! (<https://api.slack.com/messaging/webhooks>: `POST` the webhook URL with `{"text": …}`,
//! answer `ok`). The webhook URL is the tenant's and a credential: it passes the egress guard like
//! every request and is logged by origin only. A post is never replayed. The recipient of a
//! message is the configured channel; it must not post anywhere else.

use std::sync::Arc;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::ConnectorError;
use super::client::{Auth, VendorClient};
use super::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::messages::{Channel, Message, Messenger, Sent};

pub const CONNECTOR: &str = "slack";
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api/";
/// Slack truncates longer texts; the limit keeps a notification whole.
pub const MAX_TEXT_CHARS: usize = 3000;

pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

enum Mode {
    Webhook(VendorClient),
    Bot { client: VendorClient, channel: String },
}

pub struct Slack {
    mode: Mode,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.mode {
            Mode::Webhook(_) => "Slack(webhook)",
            Mode::Bot { .. } => "Slack(bot)",
        })
    }
}

#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

impl Slack {
    /// Posts to an incoming webhook.
    pub fn webhook(policy: HttpPolicy, url: &SecretString) -> Result<Self, BuildFailure> {
        let url = Url::parse(url.expose_secret())
            .map_err(|_| BuildFailure::Config("webhook_url is not a URL".into()))?;
        policy
            .config()
            .egress
            .check_url(&url)
            .map_err(|err| BuildFailure::Config(format!("webhook_url: {err}")))?;
        Ok(Self {
            mode: Mode::Webhook(VendorClient::new(policy, profile(), url, Auth::None)),
        })
    }

    /// Posts with a bot token to `channel` (an id such as `C0123456789`, or `#name`).
    pub fn bot(
        policy: HttpPolicy,
        base: Url,
        token: SecretString,
        channel: &str,
    ) -> Result<Self, BuildFailure> {
        Self::bot_with(policy, base, Auth::Bearer(token), channel)
    }

    /// Posts to `channel` with the bot token `auth` yields (a stored token, or an OAuth
    /// connection's).
    pub fn bot_with(
        policy: HttpPolicy,
        base: Url,
        auth: Auth,
        channel: &str,
    ) -> Result<Self, BuildFailure> {
        let channel = channel.trim();
        if channel.is_empty() || channel.len() > 80 || channel.chars().any(char::is_whitespace) {
            return Err(BuildFailure::Config(
                "channel must be a Slack channel id or #name".into(),
            ));
        }
        Ok(Self {
            mode: Mode::Bot {
                client: VendorClient::new(policy, profile(), base, auth),
                channel: channel.to_owned(),
            },
        })
    }
}

fn checked(answer: ApiAnswer) -> Result<ApiAnswer, ConnectorError> {
    if answer.ok {
        return Ok(answer);
    }
    let code = answer.error.unwrap_or_else(|| "unknown_error".into());
    Err(match code.as_str() {
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" | "missing_scope" => {
            ConnectorError::Auth(format!("Slack: {code}"))
        }
        "channel_not_found" | "not_in_channel" | "is_archived" => {
            ConnectorError::Config(format!("Slack channel: {code}"))
        }
        _ => ConnectorError::Rejected(format!("Slack: {code}")),
    })
}

#[async_trait::async_trait]
impl Messenger for Slack {
    fn channel(&self) -> Channel {
        Channel::Slack
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        let text = match &message.subject {
            Some(subject) if !subject.trim().is_empty() => {
                format!("*{}*\n{}", subject.trim(), message.text)
            }
            _ => message.text.clone(),
        };
        if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return Err(ConnectorError::InvalidInput(format!(
                "a Slack message must have 1 to {MAX_TEXT_CHARS} characters"
            )));
        }
        match &self.mode {
            Mode::Webhook(client) => {
                client
                    .post(&[])
                    .json(json!({ "text": text }))
                    .replay(Replay::Never)
                    .send(ctx, "webhook")
                    .await?;
                Ok(Sent {
                    id: "webhook".into(),
                    form: "text",
                })
            }
            Mode::Bot { client, channel } => {
                // operationId: chat_postMessage
                let answer: ApiAnswer = client
                    .post(&["chat.postMessage"])
                    .json(json!({ "channel": channel, "text": text }))
                    .replay(Replay::Never)
                    .send_json(ctx, "channel")
                    .await?;
                let answer = checked(answer)?;
                Ok(Sent {
                    id: answer.ts.unwrap_or_default(),
                    form: "text",
                })
            }
        }
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        match &self.mode {
            // A webhook has no read; posting would notify the channel. The URL was checked at
            // build; the first notification proves the rest.
            Mode::Webhook(_) => Ok(()),
            Mode::Bot { client, .. } => {
                // operationId: auth_test
                let answer: ApiAnswer = client
                    .post(&["auth.test"])
                    .send_json(ctx, "token")
                    .await?;
                checked(answer).map(|_| ())
            }
        }
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Slack",
    spec: "slack/slack_web_openapi_v2.json",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "webhook_url",
                aliases: &[],
                required: false,
                doc: "an incoming-webhook URL (or bot_token and channel)",
            },
            SecretField {
                name: "bot_token",
                aliases: &["token"],
                required: false,
                doc: "a bot token (xoxb-…) with chat:write",
            },
            SecretField {
                name: "channel",
                aliases: &[],
                required: false,
                doc: "channel id or #name the bot posts to",
            },
        ],
        note: "either webhook_url, or bot_token with channel (or an OAuth connection with channel)",
    },
    // Slack's OAuth v2 (https://api.slack.com/authentication/oauth-v2): bot scopes in `scope`,
    // the bot token (`xoxb-…`) in the `oauth.v2.access` answer, which carries `ok` and answers
    // errors as HTTP 200 `{"ok": false, "error": "invalid_code"}`. `auth.revoke` takes the token
    // as a form field. No PKCE for a web app with a client secret.
    oauth: Some(OAuthSpec {
        authorize_url: "https://slack.com/oauth/v2/authorize",
        token_url: "https://slack.com/api/oauth.v2.access",
        revoke_url: Some("https://slack.com/api/auth.revoke"),
        scopes: &[(Capability::Messaging, &["chat:write"])],
        pkce: false,
        extra_authorize_params: &[],
        api_base_fields: &[],
        client_secret_in_body: true,
        account_fields: &["bot_user_id"],
        accounts_server_param: None,
        ok_envelope: true,
        accounts_server_hosts: &[],
    }),
    webhooks: None,
    profile,
    build,
};

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    if let Some(grant) = &ctx.oauth {
        // The connection wins over a stored webhook or bot token.
        let slack = Slack::bot_with(
            ctx.policy.clone(),
            ctx.base_url()?,
            Auth::OAuth(grant.tokens.clone()),
            &ctx.credentials.required_text("channel")?,
        )?;
        return Ok(Built {
            messenger: Some(Arc::new(slack)),
            ..Built::default()
        });
    }
    let slack = match ctx.credentials.secret(&["webhook_url"]) {
        Ok(url) if ctx.credentials.text("webhook_url").is_some() => {
            Slack::webhook(ctx.policy.clone(), &url)?
        }
        _ => Slack::bot(
            ctx.policy.clone(),
            ctx.base_url()?,
            ctx.credentials.secret(&["bot_token", "token"])?,
            &ctx.credentials.required_text("channel")?,
        )?,
    };
    Ok(Built {
        messenger: Some(Arc::new(slack)),
        ..Built::default()
    })
}

//! Microsoft Teams as a [`Messenger`] for staff notifications: a channel message through
//! Microsoft Graph, or an incoming webhook.
//!
//! Graph: built from `vendor-specs/msgraph/graph-v1.0-calendar-teams.derived.prism.json`,
//! operation `teams.channels.CreateMessages` (`POST /teams/{team-id}/channels/{channel-id}/messages`
//! with `{"body": {"contentType": "text", "content": …}}`), with the tenant's Microsoft OAuth
//! connection or a refresh token in the secret. Webhook: the incoming-webhook or Workflows URL
//! the channel gives (`{"text": …}`), a credential in itself — it passes the egress guard and is
//! logged by origin only. A post is never replayed. It posts only to the configured channel.

use std::sync::Arc;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::ConnectorError;
use super::client::{Auth, TokenSource, VendorClient};
use super::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::messages::{Channel, Message, Messenger, Sent};
use super::oauth::{OAuthCredentials, OAuthTokenSource};
use super::parse_base_url;

pub const CONNECTOR: &str = "teams";
pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0/";
const TOKEN_URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/token";
pub const MAX_TEXT_CHARS: usize = 4000;

pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

enum Mode {
    Webhook(VendorClient),
    Graph {
        client: VendorClient,
        team_id: String,
        channel_id: String,
    },
}

pub struct Teams {
    mode: Mode,
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.mode {
            Mode::Webhook(_) => "Teams(webhook)",
            Mode::Graph { .. } => "Teams(graph)",
        })
    }
}

#[derive(Deserialize)]
struct ChatMessage {
    id: String,
}

fn id_ok(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '@' | '.' | '_'))
}

impl Teams {
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

    pub fn graph(
        policy: HttpPolicy,
        base: Url,
        tokens: Arc<dyn TokenSource>,
        team_id: &str,
        channel_id: &str,
    ) -> Result<Self, BuildFailure> {
        if !id_ok(team_id) || !id_ok(channel_id) {
            return Err(BuildFailure::Config(
                "team_id and channel_id must be Graph ids".into(),
            ));
        }
        Ok(Self {
            mode: Mode::Graph {
                client: VendorClient::new(policy, profile(), base, Auth::OAuth(tokens)),
                team_id: team_id.to_owned(),
                channel_id: channel_id.to_owned(),
            },
        })
    }
}

#[async_trait::async_trait]
impl Messenger for Teams {
    fn channel(&self) -> Channel {
        Channel::Teams
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        let text = match &message.subject {
            Some(subject) if !subject.trim().is_empty() => {
                format!("{}\n{}", subject.trim(), message.text)
            }
            _ => message.text.clone(),
        };
        if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return Err(ConnectorError::InvalidInput(format!(
                "a Teams message must have 1 to {MAX_TEXT_CHARS} characters"
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
            Mode::Graph {
                client,
                team_id,
                channel_id,
            } => {
                // operationId: teams.channels.CreateMessages
                let sent: ChatMessage = client
                    .post(&["teams", team_id, "channels", channel_id, "messages"])
                    .json(json!({ "body": { "contentType": "text", "content": text } }))
                    .replay(Replay::Never)
                    .send_json(ctx, "channel")
                    .await?;
                Ok(Sent {
                    id: sent.id,
                    form: "text",
                })
            }
        }
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        match &self.mode {
            Mode::Webhook(_) => Ok(()),
            Mode::Graph {
                client,
                team_id,
                channel_id,
            } => {
                // operationId: teams.GetChannels
                client
                    .get(&["teams", team_id, "channels", channel_id])
                    .send(ctx, "channel")
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Microsoft Teams",
    spec: "msgraph/graph-v1.0-calendar-teams.derived.prism.json",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "webhook_url",
                aliases: &[],
                required: false,
                doc: "the channel's incoming-webhook (or Workflows) URL",
            },
            SecretField {
                name: "team_id",
                aliases: &[],
                required: false,
                doc: "Graph: the team's id (with channel_id)",
            },
            SecretField {
                name: "channel_id",
                aliases: &[],
                required: false,
                doc: "Graph: the channel's id",
            },
            SecretField {
                name: "client_id",
                aliases: &[],
                required: false,
                doc: "Graph without an OAuth connection: client id (with client_secret, refresh_token)",
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
                doc: "OAuth refresh token with ChannelMessage.Send",
            },
        ],
        note: "either webhook_url, or team_id and channel_id with an OAuth connection (`callbridge connect`) or a refresh token",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_url: TOKEN_URL,
        revoke_url: None,
        scopes: &[(
            Capability::Messaging,
            &["ChannelMessage.Send", "offline_access"],
        )],
        pkce: true,
        extra_authorize_params: &[],
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
    if ctx.oauth.is_none() && ctx.credentials.text("webhook_url").is_some() {
        let url = ctx.credentials.secret(&["webhook_url"])?;
        return Ok(Built {
            messenger: Some(Arc::new(Teams::webhook(ctx.policy.clone(), &url)?)),
            ..Built::default()
        });
    }
    let tokens: Arc<dyn TokenSource> = match &ctx.oauth {
        Some(grant) => grant.tokens.clone(),
        None => {
            let token_url =
                parse_base_url(TOKEN_URL).map_err(|err| BuildFailure::Config(err.to_string()))?;
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
    let teams = Teams::graph(
        ctx.policy.clone(),
        ctx.base_url()?,
        tokens,
        &ctx.credentials.required_text("team_id")?,
        &ctx.credentials.required_text("channel_id")?,
    )?;
    Ok(Built {
        messenger: Some(Arc::new(teams)),
        ..Built::default()
    })
}

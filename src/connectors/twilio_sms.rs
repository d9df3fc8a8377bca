//! SMS through the tenant's own Twilio account, as a [`Messenger`].
//!
//! Built from `vendor-specs/twilio/twilio_api_v2010.json`, operation `CreateMessage`
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `Body` and `From`
//! or `MessagingServiceSid`), with HTTP basic auth (account SID and auth token). The sender is the
//! secret's `from` number or `messaging_service_sid`; without either, the number the caller dialled
//! (which the tool passes as [`Message::from`]). Twilio documents no idempotency key for
//! `CreateMessage`, so it is never replayed after a lost answer; the tool-call ledger keeps a
//! repeated tool call from sending twice. Twilio's error bodies are mapped with
//! [`super::twilio_rest::map_error`]. It must not decide who may be texted (opt-outs and limits
//! are the tool's) and never logs the auth token or the message.

use std::sync::Arc;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConnectorError;
use super::http::{ConnectorProfile, HttpPolicy, PolicyError, Replay, RequestContext};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::messages::{Channel, Message, Messenger, Sent, e164};
use super::twilio_rest::{TwilioClassifier, TwilioError, map_error};

pub const CONNECTOR: &str = "twilio_sms";
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com/";
/// Twilio's `Body` limit (characters).
pub const MAX_BODY_CHARS: usize = 1600;

/// The policy profile: Twilio's retry rule; a send is never replayed (see the module docs).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR).with_classifier(Arc::new(TwilioClassifier))
}

/// Who the messages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A Twilio number of the account (E.164).
    Number(String),
    /// A Messaging Service (`MG…`), which picks the sender itself.
    Service(String),
    /// The number the caller dialled, given per message.
    CalledNumber,
}

pub struct TwilioSms {
    policy: HttpPolicy,
    profile: ConnectorProfile,
    base: Url,
    account_sid: String,
    auth_token: SecretString,
    sender: Sender,
}

impl std::fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSms")
            .field("base", &self.base.as_str())
            .field("account_sid", &self.account_sid)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
}

fn sid_ok(text: &str, prefix: &str) -> bool {
    text.len() == 34
        && text.starts_with(prefix)
        && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl TwilioSms {
    pub fn new(
        policy: HttpPolicy,
        base: Url,
        account_sid: &str,
        auth_token: SecretString,
        sender: Sender,
    ) -> Result<Self, BuildFailure> {
        if !sid_ok(account_sid, "AC") {
            return Err(BuildFailure::InvalidCredentials(
                "account_sid must be AC followed by 32 hex digits".into(),
            ));
        }
        match &sender {
            Sender::Service(sid) if !sid_ok(sid, "MG") => {
                return Err(BuildFailure::Config(
                    "messaging_service_sid must be MG followed by 32 hex digits".into(),
                ));
            }
            Sender::Number(number) if e164(number).is_err() => {
                return Err(BuildFailure::Config("from must be an E.164 number".into()));
            }
            _ => {}
        }
        Ok(Self {
            policy,
            profile: profile(),
            base,
            account_sid: account_sid.to_owned(),
            auth_token,
            sender,
        })
    }

    fn form(&self, message: &Message) -> Result<Vec<(&'static str, String)>, ConnectorError> {
        if message.text.trim().is_empty() || message.text.chars().count() > MAX_BODY_CHARS {
            return Err(ConnectorError::InvalidInput(format!(
                "an SMS must have 1 to {MAX_BODY_CHARS} characters"
            )));
        }
        let mut form = vec![("To", e164(&message.to)?), ("Body", message.text.clone())];
        match &self.sender {
            Sender::Number(number) => form.push(("From", number.clone())),
            Sender::Service(sid) => form.push(("MessagingServiceSid", sid.clone())),
            Sender::CalledNumber => {
                let from = message.from.as_deref().ok_or_else(|| {
                    ConnectorError::Config(
                        "no sender: set from or messaging_service_sid in the twilio_sms secret"
                            .into(),
                    )
                })?;
                form.push(("From", e164(from)?));
            }
        }
        Ok(form)
    }

    fn url(&self, tail: &[&str]) -> Result<Url, ConnectorError> {
        let mut segments = vec!["2010-04-01", "Accounts", self.account_sid.as_str()];
        segments.extend_from_slice(tail);
        super::endpoint(&self.base, &segments)
    }

    async fn send_request(
        &self,
        ctx: &RequestContext,
        builder: reqwest::RequestBuilder,
        replay: Replay,
    ) -> Result<Vec<u8>, ConnectorError> {
        let request = builder
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .build()
            .map_err(|e| ConnectorError::Config(e.without_url().to_string()))?;
        let response = self
            .policy
            .send(ctx, &self.profile, request, replay)
            .await
            .map_err(|err| match err {
                PolicyError::Status { .. } => ConnectorError::from_policy(err, "message"),
                other => ConnectorError::Policy(other),
            })?;
        if !response.status.is_success() {
            return Err(twilio_failure(map_error(
                response.status.as_u16(),
                super::http::retry_after(&response.headers),
                &response.body,
            )));
        }
        Ok(response.body.to_vec())
    }
}

/// A Twilio answer as the connector error it means.
fn twilio_failure(err: TwilioError) -> ConnectorError {
    match err {
        TwilioError::InvalidNumber { message } => ConnectorError::InvalidInput(message),
        TwilioError::Auth { message } => ConnectorError::Auth(message),
        TwilioError::NotFound { message } => ConnectorError::NotFound(message),
        // 21610: the recipient replied STOP to this sender.
        TwilioError::Api {
            code: Some(21610),
            message,
            ..
        } => ConnectorError::Rejected(format!("the recipient has opted out: {message}")),
        TwilioError::Api {
            status: 400..=499,
            message,
            ..
        } => ConnectorError::Rejected(message),
        other => ConnectorError::UnexpectedResponse(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Messenger for TwilioSms {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        // operationId: CreateMessage
        let form = self.form(message)?;
        let builder = self
            .policy
            .client()
            .post(self.url(&["Messages.json"])?)
            .form(&form);
        let body = self.send_request(ctx, builder, Replay::Never).await?;
        let resource: MessageResource = serde_json::from_slice(&body)
            .map_err(|e| ConnectorError::UnexpectedResponse(e.to_string()))?;
        Ok(Sent {
            id: resource.sid,
            form: "text",
        })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: FetchAccount
        let url = super::endpoint(
            &self.base,
            &[
                "2010-04-01",
                "Accounts",
                &format!("{}.json", self.account_sid),
            ],
        )?;
        let builder = self.policy.client().get(url);
        self.send_request(ctx, builder, Replay::ByMethod)
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Twilio SMS",
    spec: "twilio/twilio_api_v2010.json",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "account_sid",
                aliases: &[],
                required: true,
                doc: "the Twilio account SID (AC…)",
            },
            SecretField {
                name: "auth_token",
                aliases: &["token"],
                required: true,
                doc: "the account's auth token",
            },
            SecretField {
                name: "from",
                aliases: &[],
                required: false,
                doc: "sender number (E.164); default: the number the caller dialled",
            },
            SecretField {
                name: "messaging_service_sid",
                aliases: &[],
                required: false,
                doc: "a Messaging Service (MG…) to send through instead of one number",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let sender = match (
        ctx.credentials.text("messaging_service_sid"),
        ctx.credentials.text("from"),
    ) {
        (Some(service), _) => Sender::Service(service.to_owned()),
        (None, Some(from)) => Sender::Number(
            e164(from).map_err(|_| BuildFailure::Config("from must be an E.164 number".into()))?,
        ),
        (None, None) => Sender::CalledNumber,
    };
    let messenger = TwilioSms::new(
        ctx.policy.clone(),
        ctx.base_url()?,
        &ctx.credentials.required_text("account_sid")?,
        ctx.credentials.secret(&["auth_token", "token"])?,
        sender,
    )?;
    Ok(Built {
        messenger: Some(Arc::new(messenger)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::PolicyConfig;

    fn sms(sender: Sender) -> TwilioSms {
        TwilioSms::new(
            HttpPolicy::new(PolicyConfig::default()).expect("policy"),
            Url::parse(DEFAULT_BASE_URL).expect("url"),
            &format!("AC{}", "a".repeat(32)),
            SecretString::from("tok"),
            sender,
        )
        .expect("built")
    }

    fn message(from: Option<&str>) -> Message {
        Message {
            to: "+14155552671".into(),
            from: from.map(str::to_owned),
            subject: None,
            text: "See you Tuesday".into(),
            template: None,
        }
    }

    #[test]
    fn the_sender_is_the_service_the_number_or_the_called_number() {
        let service = format!("MG{}", "b".repeat(32));
        let form = sms(Sender::Service(service.clone()))
            .form(&message(None))
            .expect("form");
        assert!(form.contains(&("MessagingServiceSid", service)));
        let form = sms(Sender::CalledNumber)
            .form(&message(Some("+442079460958")))
            .expect("form");
        assert!(form.contains(&("From", "+442079460958".into())));
        assert!(matches!(
            sms(Sender::CalledNumber).form(&message(None)),
            Err(ConnectorError::Config(_))
        ));
        let mut long = message(Some("+442079460958"));
        long.text = "x".repeat(MAX_BODY_CHARS + 1);
        assert!(sms(Sender::CalledNumber).form(&long).is_err());
    }

    #[test]
    fn opt_out_and_bad_numbers_map_to_their_meaning() {
        let stop = map_error(
            400,
            None,
            br#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","status":400}"#,
        );
        assert!(matches!(twilio_failure(stop), ConnectorError::Rejected(m) if m.contains("opted out")));
        let bad = map_error(400, None, br#"{"code":21211,"message":"bad To","status":400}"#);
        assert!(matches!(twilio_failure(bad), ConnectorError::InvalidInput(_)));
    }
}

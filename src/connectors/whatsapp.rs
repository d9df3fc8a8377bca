//! WhatsApp Business (Cloud API) as a [`Messenger`].
//!
//! Built from `vendor-specs/whatsapp/business-messaging-api_v23.0.yaml`, operation `sendMessage`
//! (`POST /{Version}/{Phone-Number-ID}/messages`, bearer token): a `text` message, or a
//! `template` message (an approved template with body parameters) when the tool says the contact
//! is outside the 24-hour customer-service window. Whether it is, is the caller's decision from
//! the stored last inbound message time; this module only sends the form it is given. The API
//! documents no idempotency key, so a send is never replayed. It never logs the token or the
//! message.

use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ConnectorError;
use super::client::{Auth, VendorClient};
use super::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::messages::{Channel, Message, Messenger, Sent, e164};

pub const CONNECTOR: &str = "whatsapp";
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com/";
pub const DEFAULT_VERSION: &str = "v23.0";
/// The Cloud API's text body limit (characters).
pub const MAX_TEXT_CHARS: usize = 4096;

pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

pub struct Whatsapp {
    client: VendorClient,
    version: String,
    phone_number_id: String,
}

impl std::fmt::Debug for Whatsapp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whatsapp")
            .field("version", &self.version)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    messages: Vec<SentId>,
}

#[derive(Deserialize)]
struct SentId {
    id: String,
}

impl Whatsapp {
    pub fn new(
        policy: HttpPolicy,
        base: reqwest::Url,
        token: SecretString,
        phone_number_id: &str,
        version: &str,
    ) -> Result<Self, BuildFailure> {
        if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BuildFailure::Config(
                "phone_number_id must be the digits of the WhatsApp business number's id".into(),
            ));
        }
        let version_ok = version.starts_with('v')
            && version.len() <= 8
            && version[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !version_ok {
            return Err(BuildFailure::Config(
                "api_version must look like v23.0".into(),
            ));
        }
        Ok(Self {
            client: VendorClient::new(policy, profile(), base, Auth::Bearer(token)),
            version: version.to_owned(),
            phone_number_id: phone_number_id.to_owned(),
        })
    }

    /// The `sendMessage` body for `message`: a template when one is given, else free text.
    pub fn body(message: &Message) -> Result<Value, ConnectorError> {
        // The Cloud API takes the number without the leading '+'.
        let to = e164(&message.to)?.trim_start_matches('+').to_owned();
        match &message.template {
            Some(template) => {
                let parameters: Vec<Value> = template
                    .parameters
                    .iter()
                    .map(|text| json!({ "type": "text", "text": text }))
                    .collect();
                let mut body = json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": "template",
                    "template": {
                        "name": template.name,
                        // `deterministic`: the translation named, not a fallback (the spec
                        // requires the field).
                        "language": { "code": template.language, "policy": "deterministic" },
                    },
                });
                if !parameters.is_empty() {
                    body["template"]["components"] =
                        json!([{ "type": "body", "parameters": parameters }]);
                }
                Ok(body)
            }
            None => {
                if message.text.trim().is_empty() || message.text.chars().count() > MAX_TEXT_CHARS
                {
                    return Err(ConnectorError::InvalidInput(format!(
                        "a WhatsApp text must have 1 to {MAX_TEXT_CHARS} characters"
                    )));
                }
                Ok(json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": to,
                    "type": "text",
                    "text": { "preview_url": false, "body": message.text },
                }))
            }
        }
    }
}

#[async_trait::async_trait]
impl Messenger for Whatsapp {
    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    async fn send(&self, ctx: &RequestContext, message: &Message) -> Result<Sent, ConnectorError> {
        // operationId: sendMessage
        let body = Self::body(message)?;
        let answer: SendAnswer = self
            .client
            .post(&[&self.version, &self.phone_number_id, "messages"])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "message")
            .await?;
        let id = answer
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| {
                ConnectorError::UnexpectedResponse("sendMessage answered without a message".into())
            })?;
        Ok(Sent {
            id,
            form: if message.template.is_some() {
                "template"
            } else {
                "text"
            },
        })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: getWhatsAppBusinessPhoneNumber (GET /{Version}/{Phone-Number-ID})
        self.client
            .get(&[&self.version, &self.phone_number_id])
            .send(ctx, "phone number")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "WhatsApp Business (Cloud API)",
    spec: "whatsapp/business-messaging-api_v23.0.yaml",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Messaging],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: true,
                doc: "a system-user access token with whatsapp_business_messaging",
            },
            SecretField {
                name: "phone_number_id",
                aliases: &[],
                required: true,
                doc: "the business phone number's id (digits)",
            },
            SecretField {
                name: "api_version",
                aliases: &[],
                required: false,
                doc: "Graph API version (default v23.0)",
            },
        ],
        note: "",
    },
    oauth: None,
    // WhatsApp (Meta): `X-Hub-Signature-256: sha256=<hex>` over the body, keyed by the app secret;
    // the subscription is confirmed by a GET echoing `hub.challenge` when `hub.verify_token`
    // matches.
    webhooks: Some(super::kit::WebhookSpec {
        header: "X-Hub-Signature-256",
        scheme: super::kit::WebhookScheme::PrefixedHmacSha256Hex("sha256="),
        tolerance_secs: 0,
        event_id: &[
            super::kit::WebhookField::Json("entry.0.changes.0.field"),
            super::kit::WebhookField::Json("entry.0.changes.0.value.messages.0.id"),
        ],
        event_type: super::kit::WebhookField::Json("entry.0.changes.0.field"),
        batched: false,
        setup: "App dashboard > WhatsApp > Configuration: this URL as callback URL and the verify \
                token; give the app secret when creating the source",
    }),
    profile,
    build,
};

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let messenger = Whatsapp::new(
        ctx.policy.clone(),
        ctx.base_url()?,
        ctx.credentials.secret(&["access_token", "token"])?,
        &ctx.credentials.required_text("phone_number_id")?,
        ctx.credentials
            .text("api_version")
            .unwrap_or(DEFAULT_VERSION),
    )?;
    Ok(Built {
        messenger: Some(Arc::new(messenger)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::messages::Template;

    #[test]
    fn text_or_template_by_what_the_tool_chose() {
        let mut message = Message {
            to: "+14155552671".into(),
            from: None,
            subject: None,
            text: "Your table is booked".into(),
            template: None,
        };
        let text = Whatsapp::body(&message).expect("text");
        assert_eq!(text["type"], "text");
        assert_eq!(text["to"], "14155552671");
        assert_eq!(text["text"]["body"], "Your table is booked");
        message.template = Some(Template {
            name: "booking_confirmation".into(),
            language: "en_US".into(),
            parameters: vec!["Your table is booked".into()],
        });
        let template = Whatsapp::body(&message).expect("template");
        assert_eq!(template["type"], "template");
        assert_eq!(template["template"]["language"]["code"], "en_US");
        assert_eq!(
            template["template"]["components"][0]["parameters"][0]["text"],
            "Your table is booked"
        );
        assert!(template.get("text").is_none());
    }
}

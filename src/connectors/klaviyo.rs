//! Klaviyo as a [`Marketing`] connector: the caller's profile for context, and list subscriptions
//! for callers who consented on the call.
//!
//! Follows the held spec `vendor-specs/klaviyo/stable-profiles.json` (revision `2026-07-15`, sent
//! in the required `revision` header; private key as `Authorization: Klaviyo-API-Key …`; JSON:API
//! bodies as `application/vnd.api+json`). Reads: `GET /api/profiles` with
//! `filter=equals(email,"…")` or `equals(phone_number,"+…")`. Writes:
//! `POST /api/profile-subscription-bulk-create-jobs` (`SUBSCRIBED` on email and/or SMS marketing,
//! `custom_source` naming the phone call) to the one list the tenant configured — the model never
//! picks a list. Consent is the tool's business (an explicit flag in its arguments, recorded in the
//! call's events); this module must not subscribe anyone on its own, nor cache profiles.

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    ConnectorError, ContactLookup, Marketing, MarketingProfile, Subscription,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

pub const CONNECTOR: &str = "klaviyo";
/// The API revision of the held spec, sent on every request.
pub const REVISION: &str = "2026-07-15";
const JSON_API: &str = "application/vnd.api+json";
/// Where a subscription came from, as Klaviyo shows it.
const SOURCE: &str = "Phone call (callbridge)";

pub struct KlaviyoConfig {
    pub base_url: reqwest::Url,
    pub private_key: SecretString,
    /// The list consenting callers join.
    pub list_id: Option<String>,
}

impl std::fmt::Debug for KlaviyoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KlaviyoConfig")
            .field("base_url", &self.base_url.as_str())
            .field("list_id", &self.list_id)
            .finish_non_exhaustive()
    }
}

pub struct Klaviyo {
    client: VendorClient,
    list_id: Option<String>,
}

#[derive(Deserialize)]
struct Profiles {
    #[serde(default)]
    data: Vec<ProfileNode>,
}

#[derive(Deserialize)]
struct ProfileNode {
    id: String,
    #[serde(default)]
    attributes: ProfileAttributes,
}

#[derive(Deserialize, Default)]
struct ProfileAttributes {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize, Default)]
struct Location {
    #[serde(default)]
    city: Option<String>,
}

/// A value safe inside a Klaviyo filter string literal: no quote, backslash or control character.
fn filter_value(text: &str) -> Result<&str, ConnectorError> {
    let text = text.trim();
    if text.is_empty()
        || text.len() > 254
        || text
            .chars()
            .any(|c| matches!(c, '"' | '\'' | '\\' | ',' | '(' | ')') || c.is_control())
    {
        return Err(ConnectorError::InvalidInput(
            "that email or phone number cannot be looked up".into(),
        ));
    }
    Ok(text)
}

fn e164(phone: &str) -> Result<String, ConnectorError> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if !phone.trim().starts_with('+') || !(8..=15).contains(&digits.len()) {
        return Err(ConnectorError::InvalidInput(
            "a phone number with its country code (+…) is needed".into(),
        ));
    }
    Ok(format!("+{digits}"))
}

impl Klaviyo {
    pub fn new(policy: HttpPolicy, config: KlaviyoConfig) -> Result<Self, ConnectorError> {
        super::endpoint(&config.base_url, &["api", "profiles"])?;
        let value = SecretString::from(format!(
            "Klaviyo-API-Key {}",
            config.private_key.expose_secret()
        ));
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url,
                Auth::Header {
                    name: reqwest::header::AUTHORIZATION,
                    value,
                },
            ),
            list_id: config.list_id.filter(|id| !id.trim().is_empty()),
        })
    }

    fn revision() -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static("revision"),
            HeaderValue::from_static(REVISION),
        )
    }

    fn accept() -> (HeaderName, HeaderValue) {
        (reqwest::header::ACCEPT, HeaderValue::from_static(JSON_API))
    }
}

#[async_trait::async_trait]
impl Marketing for Klaviyo {
    async fn find_profile(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<MarketingProfile>, ConnectorError> {
        let filter = match lookup {
            ContactLookup::Email(email) => {
                format!("equals(email,\"{}\")", filter_value(email)?)
            }
            ContactLookup::Phone(phone) => {
                format!("equals(phone_number,\"{}\")", filter_value(&e164(phone)?)?)
            }
        };
        let (revision, value) = Self::revision();
        let (accept, json_api) = Self::accept();
        let found: Profiles = self
            .client
            .get(&["api", "profiles"])
            .query("filter", &filter)
            .query("page[size]", "1")
            .header(revision, value)
            .header(accept, json_api)
            .send_json(ctx, "profile")
            .await?;
        Ok(found.data.into_iter().next().map(|node| MarketingProfile {
            id: node.id,
            first_name: node.attributes.first_name,
            last_name: node.attributes.last_name,
            email: node.attributes.email,
            phone: node.attributes.phone_number,
            city: node.attributes.location.and_then(|l| l.city),
        }))
    }

    async fn subscribe(
        &self,
        ctx: &RequestContext,
        subscription: &Subscription,
    ) -> Result<(), ConnectorError> {
        let Some(list_id) = &self.list_id else {
            return Err(ConnectorError::Config(
                "no list_id is configured for Klaviyo subscriptions".into(),
            ));
        };
        let mut attributes = serde_json::Map::new();
        let mut channels = serde_json::Map::new();
        if let Some(email) = &subscription.email {
            attributes.insert("email".into(), json!(filter_value(email)?));
            channels.insert(
                "email".into(),
                json!({"marketing": {"consent": "SUBSCRIBED"}}),
            );
        }
        if let Some(phone) = &subscription.sms_phone {
            attributes.insert("phone_number".into(), json!(e164(phone)?));
            channels.insert("sms".into(), json!({"marketing": {"consent": "SUBSCRIBED"}}));
        }
        if channels.is_empty() {
            return Err(ConnectorError::InvalidInput(
                "an email or a phone number to subscribe is needed".into(),
            ));
        }
        attributes.insert("subscriptions".into(), channels.into());
        let body = json!({
            "data": {
                "type": "profile-subscription-bulk-create-job",
                "attributes": {
                    "custom_source": SOURCE,
                    "profiles": {"data": [{"type": "profile", "attributes": attributes}]},
                },
                "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
            }
        });
        let (revision, value) = Self::revision();
        let (accept, json_api) = Self::accept();
        // Subscribing twice leaves the caller subscribed once: the job may be replayed.
        self.client
            .post(&["api", "profile-subscription-bulk-create-jobs"])
            .header(reqwest::header::CONTENT_TYPE, HeaderValue::from_static(JSON_API))
            .header(revision, value)
            .header(accept, json_api)
            .json(body)
            .replay(crate::connectors::http::Replay::Idempotent)
            .send(ctx, "subscription")
            .await?;
        Ok(())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        let (revision, value) = Self::revision();
        let (accept, json_api) = Self::accept();
        let _: Profiles = self
            .client
            .get(&["api", "profiles"])
            .query("page[size]", "1")
            .header(revision, value)
            .header(accept, json_api)
            .send_json(ctx, "profiles")
            .await?;
        Ok(())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Klaviyo",
    spec: "klaviyo/stable-profiles.json",
    default_base_url: Some("https://a.klaviyo.com/"),
    capabilities: &[Capability::Marketing],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "private_key",
                aliases: &["api_key"],
                required: true,
                doc: "private API key (`pk_…`; profiles read, subscriptions write)",
            },
            SecretField {
                name: "list_id",
                aliases: &[],
                required: false,
                doc: "the list consenting callers join (without it, subscribe_to_list is refused)",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

/// The policy profile: the defaults (Klaviyo answers 429 with `Retry-After`, which they honour).
pub fn profile() -> ConnectorProfile {
    Vendor::plain_profile(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let base_url = ctx.base_url()?;
    let connector = Klaviyo::new(
        ctx.policy,
        KlaviyoConfig {
            base_url,
            private_key: ctx.credentials.secret(&["private_key", "api_key"])?,
            list_id: ctx.credentials.text("list_id").map(str::to_owned),
        },
    )
    .map_err(|e| BuildFailure::Config(e.to_string()))?;
    Ok(Built {
        marketing: Some(std::sync::Arc::new(connector)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_cannot_break_out_of_the_literal() {
        assert_eq!(filter_value(" ann@example.com ").expect("ok"), "ann@example.com");
        for bad in ["a\"),equals(id,\"x", "a'b", "a\\b", "", "a,b"] {
            assert!(filter_value(bad).is_err(), "{bad}");
        }
        assert_eq!(e164("+1 (415) 555-0100").expect("ok"), "+14155550100");
        assert!(e164("4155550100").is_err());
    }
}

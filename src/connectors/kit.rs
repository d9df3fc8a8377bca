//! The vendor recipe: what a vendor is ([`Vendor`], a static descriptor per vendor file) and what
//! building one gets and gives ([`BuildContext`] → [`Built`]).
//!
//! Owns the descriptor types (capabilities served, the secret's documented and validated shape,
//! OAuth and inbound-webhook descriptions as data, the policy profile, the build function) and the
//! decrypted-credentials reader vendors build from. It must not know the store, the vault or the
//! tools: the resolver decrypts the secret and hands it over in the [`BuildContext`].

use std::sync::Arc;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::http::{ConnectorProfile, HttpPolicy};
use super::{Calendar, Commerce, Coupons, Crm, Marketing, Payments, Support, parse_base_url};

/// A family of tools a vendor can serve through one trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Calendar,
    Crm,
    Commerce,
    Support,
    /// Payment links for catalogue items (`send_payment_link`, `payment_link_status`).
    Payments,
    /// Marketing profiles and list subscriptions (`customer_profile`, `subscribe_to_list`).
    Marketing,
    /// Sending a message (SMS, WhatsApp, email, a team chat): [`super::messages::Messenger`].
    Messaging,
    /// Discount coupons within the tenant's caps (`create_coupon`).
    Coupons,
    /// Post-call exports only (files in a Drive folder, a document from a template): no tool,
    /// the export worker calls [`super::CallLog`].
    Exports,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Self::Calendar,
        Self::Crm,
        Self::Commerce,
        Self::Support,
        Self::Payments,
        Self::Marketing,
        Self::Messaging,
        Self::Coupons,
        Self::Exports,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calendar => "calendar",
            Self::Crm => "crm",
            Self::Commerce => "commerce",
            Self::Support => "support",
            Self::Payments => "payments",
            Self::Marketing => "marketing",
            Self::Messaging => "messaging",
            Self::Coupons => "coupons",
            Self::Exports => "exports",
        }
    }
}

/// One field of a vendor's secret (a JSON object stored in the vault).
#[derive(Debug, Clone, Copy)]
pub struct SecretField {
    pub name: &'static str,
    /// Other names accepted for it (`token` for `api_key`, …).
    pub aliases: &'static [&'static str],
    pub required: bool,
    pub doc: &'static str,
}

/// What a vendor's secret holds: documented for operators (`callbridge connector vendors`,
/// docs/connectors.md) and validated before the connector is built.
#[derive(Debug, Clone, Copy)]
pub struct SecretShape {
    /// The secret may be the bare token instead of an object.
    pub bare_token: bool,
    pub fields: &'static [SecretField],
    /// Other accepted forms (a downloaded key file, …), in a sentence.
    pub note: &'static str,
}

/// A vendor's OAuth 2.0 authorization-code flow, as data (the flow itself belongs to the OAuth
/// service, which reads this).
#[derive(Debug, Clone, Copy)]
pub struct OAuthSpec {
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    pub revoke_url: Option<&'static str>,
    /// Scopes to request per capability the tenant enables.
    pub scopes: &'static [(Capability, &'static [&'static str])],
    pub pkce: bool,
    /// Extra query parameters of the authorize URL (`access_type=offline`, …).
    pub extra_authorize_params: &'static [(&'static str, &'static str)],
    /// Token-response fields that carry the tenant's API base (`instance_url`, `api_domain`).
    pub api_base_fields: &'static [&'static str],
    /// Send the client id and secret in the token request body instead of HTTP basic auth.
    pub client_secret_in_body: bool,
    /// Token-response fields naming the connected account, first present wins (`id`, `hub_id`).
    pub account_fields: &'static [&'static str],
    /// The callback query parameter naming the account's data-centre accounts server (Zoho's
    /// `accounts-server`): its origin replaces the token and revocation URLs' origin.
    pub accounts_server_param: Option<&'static str>,
    /// Host suffixes an accounts server may have (`.zoho.eu`); any other host is refused.
    pub accounts_server_hosts: &'static [&'static str],
    /// Slack's OAuth dialect: the token and revocation endpoints wrap every answer in
    /// `{"ok": …}` (`ok: false` with an `error` code is a failure even on HTTP 200, read as an
    /// RFC 6749 §5.2 error), and scopes are comma-separated (see [`OAuthSpec::scope_delimiter`]).
    pub ok_envelope: bool,
}

impl OAuthSpec {
    /// What separates scopes in the authorize URL's `scope` and in a token answer's `scope`: a
    /// space per RFC 6749 §3.3, a comma in Slack's dialect (`scope=chat:write,channels:read`).
    pub fn scope_delimiter(&self) -> char {
        if self.ok_envelope { ',' } else { ' ' }
    }
}

/// How a vendor signs the webhooks it sends us, as data (read by the inbound service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookScheme {
    /// HMAC-SHA256 of the raw body, base64, in the header (Shopify).
    HmacSha256Base64,
    /// HMAC-SHA256 of the raw body, lowercase hex, in the header (Cal.com).
    HmacSha256Hex,
    /// HMAC-SHA256 of the raw body, hex after a fixed prefix (`sha256=`, Meta).
    PrefixedHmacSha256Hex(&'static str),
    /// `t=<unix seconds>,v1=<hex>[,v1=…]`: HMAC-SHA256 of `<t>.<body>`, hex, within the
    /// tolerance (Stripe, Calendly).
    TimestampedHmacSha256Hex,
    /// HubSpot v3: HMAC-SHA256 of method, URI, body and the millisecond timestamp header, base64.
    HubSpotV3,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// over `<id>.<timestamp>.<body>`, keyed by the base64 after `whsec_`.
    StandardWebhooks,
    /// Twilio: HMAC-SHA1 of the URL and the sorted form parameters, keyed by the auth token.
    TwilioSha1,
}

/// Where a value of a delivery is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookField {
    /// A request header (case-insensitive).
    Header(&'static str),
    /// A dotted path into the JSON body (`payload.uri`, `entry.0.id`); form bodies are read as
    /// an object of their fields.
    Json(&'static str),
    /// A fixed value.
    Const(&'static str),
}

/// A vendor's inbound webhooks, as data.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSpec {
    /// The header carrying the signature.
    pub header: &'static str,
    pub scheme: WebhookScheme,
    /// How old (or early) a signed timestamp may be, for schemes that sign one.
    pub tolerance_secs: u32,
    /// The parts of the vendor's event id (joined with `:`); vendor retries repeat it. When a
    /// part is missing the SHA-256 of the body stands in.
    pub event_id: &'static [WebhookField],
    /// The event type rules match on (`invitee.created`, `orders/create`).
    pub event_type: WebhookField,
    /// The body is a JSON array of events (HubSpot sends up to 100 per request).
    pub batched: bool,
    /// Where the tenant pastes the URL and the secret at the vendor, in a sentence.
    pub setup: &'static str,
}

/// Why a vendor could not be built from its configuration; never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildFailure {
    /// A field the vendor needs is missing.
    #[error("missing {0}")]
    Missing(String),
    /// The credentials are there but unusable.
    #[error("{0}")]
    InvalidCredentials(String),
    /// The connector configuration (base URL, …) is unusable.
    #[error("{0}")]
    Config(String),
}

/// The decrypted secret of one connector: a bare token, or an object of fields. Dropped as soon as
/// the connector is built.
pub struct Credentials {
    token: Option<SecretString>,
    fields: Map<String, Value>,
}

impl Credentials {
    /// Reads a secret's plaintext. The error says what is wrong without quoting the text.
    pub fn parse(plaintext: &SecretString) -> Result<Self, BuildFailure> {
        let text = plaintext.expose_secret().trim();
        if text.starts_with('{') {
            let fields: Map<String, Value> = serde_json::from_str(text).map_err(|_| {
                // serde's message may quote the secret's text: say only what is wrong.
                BuildFailure::InvalidCredentials(
                    "the secret starts with '{' but is not a JSON object".into(),
                )
            })?;
            Ok(Self {
                token: None,
                fields,
            })
        } else {
            Ok(Self {
                token: Some(SecretString::from(text.to_owned())),
                fields: Map::new(),
            })
        }
    }

    /// Checks the secret against the vendor's documented shape: a bare token only where allowed,
    /// every required field present (under its name or an alias).
    pub fn validate(&self, shape: &SecretShape) -> Result<(), BuildFailure> {
        if self.token.is_some() {
            return if shape.bare_token {
                Ok(())
            } else {
                Err(BuildFailure::InvalidCredentials(
                    "the secret must be a JSON object (see `callbridge connector vendors`)".into(),
                ))
            };
        }
        for field in shape.fields.iter().filter(|f| f.required) {
            let present = std::iter::once(field.name)
                .chain(field.aliases.iter().copied())
                .any(|name| self.fields.get(name).is_some_and(|v| !v.is_null()));
            if !present {
                return Err(BuildFailure::Missing(field.name.to_owned()));
            }
        }
        Ok(())
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    }

    /// The credential under one of `names`, or the bare token.
    pub fn secret(&self, names: &[&str]) -> Result<SecretString, BuildFailure> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        names
            .iter()
            .find_map(|name| self.text(name))
            .map(|text| SecretString::from(text.to_owned()))
            .ok_or_else(|| {
                BuildFailure::Missing(names.first().copied().unwrap_or("token").to_owned())
            })
    }

    pub fn required_text(&self, name: &str) -> Result<String, BuildFailure> {
        self.text(name)
            .map(str::to_owned)
            .ok_or_else(|| BuildFailure::Missing(name.to_owned()))
    }

    pub fn unsigned(&self, name: &str) -> Option<u64> {
        self.fields.get(name).and_then(|value| {
            value
                .as_u64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        })
    }

    /// A list setting (`["a", "b"]`).
    pub fn list(&self, name: &str) -> Option<&Vec<Value>> {
        self.fields.get(name).and_then(Value::as_array)
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        self.fields.get(name).and_then(Value::as_bool)
    }
}

/// What a vendor's build function gets: the tenant's base URL (if set), its decrypted
/// credentials, and the one outbound policy.
pub struct BuildContext<'a> {
    pub vendor: &'static Vendor,
    /// The tenant's `base_url`, when set (self-hosted instance, the shop's URL, a test server).
    pub base_url: Option<&'a str>,
    pub credentials: Credentials,
    pub policy: HttpPolicy,
    /// The tenant's OAuth connection to this vendor, when it has one (then `credentials` holds
    /// only settings, and the vendor sends its requests with this grant's tokens).
    pub oauth: Option<OAuthGrant>,
}

/// A connected OAuth account handed to a vendor's build: where its tokens come from and the API
/// base its token response named (`instance_url`, `api_domain`), already through the egress guard.
#[derive(Clone)]
pub struct OAuthGrant {
    pub tokens: Arc<dyn super::client::TokenSource>,
    pub api_base: Option<String>,
}

impl BuildContext<'_> {
    /// The tenant's base URL, else the API base of its OAuth connection, else the vendor's
    /// default; an error when none exists.
    pub fn base_url(&self) -> Result<Url, BuildFailure> {
        let text = self
            .base_url
            .or(self
                .oauth
                .as_ref()
                .and_then(|grant| grant.api_base.as_deref()))
            .or(self.vendor.default_base_url)
            .ok_or_else(|| BuildFailure::Config("set base_url for this vendor".into()))?;
        parse_base_url(text).map_err(|e| BuildFailure::Config(e.to_string()))
    }

    /// The vendor's policy profile.
    pub fn profile(&self) -> ConnectorProfile {
        (self.vendor.profile)()
    }
}

/// A built vendor: one connector per capability it serves.
#[derive(Clone, Default)]
pub struct Built {
    pub calendar: Option<Arc<dyn Calendar>>,
    pub crm: Option<Arc<dyn Crm>>,
    pub commerce: Option<Arc<dyn Commerce>>,
    pub support: Option<Arc<dyn Support>>,
    /// Post-call export (not a tool capability): set when the tenant's settings ask for it.
    pub call_log: Option<Arc<dyn super::CallLog>>,
    pub payments: Option<Arc<dyn Payments>>,
    pub marketing: Option<Arc<dyn Marketing>>,
    pub messenger: Option<Arc<dyn super::messages::Messenger>>,
    pub coupons: Option<Arc<dyn Coupons>>,
}

impl Built {
    /// Each connector's harmless read; the first failure is the answer.
    pub async fn health_check(
        &self,
        ctx: &super::http::RequestContext,
    ) -> Result<(), super::ConnectorError> {
        if let Some(calendar) = &self.calendar {
            calendar.health_check(ctx).await?;
        }
        if let Some(crm) = &self.crm {
            crm.health_check(ctx).await?;
        }
        if let Some(commerce) = &self.commerce {
            commerce.health_check(ctx).await?;
        }
        if let Some(support) = &self.support {
            support.health_check(ctx).await?;
        }
        if let Some(payments) = &self.payments {
            payments.health_check(ctx).await?;
        }
        if let Some(marketing) = &self.marketing {
            marketing.health_check(ctx).await?;
        }
        if let Some(messenger) = &self.messenger {
            messenger.health_check(ctx).await?;
        }
        if let Some(coupons) = &self.coupons {
            coupons.health_check(ctx).await?;
        }
        if let Some(call_log) = &self.call_log {
            call_log.health_check(ctx).await?;
        }
        Ok(())
    }

    /// Whether this build serves `capability`.
    pub fn serves(&self, capability: Capability) -> bool {
        match capability {
            Capability::Calendar => self.calendar.is_some(),
            Capability::Crm => self.crm.is_some(),
            Capability::Commerce => self.commerce.is_some(),
            Capability::Support => self.support.is_some(),
            Capability::Payments => self.payments.is_some(),
            Capability::Marketing => self.marketing.is_some(),
            Capability::Messaging => self.messenger.is_some(),
            Capability::Coupons => self.coupons.is_some(),
            Capability::Exports => self.call_log.is_some(),
        }
    }
}

/// A vendor: a static descriptor in its own file, registered by one word in
/// [`super::registry`]'s `vendors!{}` list.
#[derive(Debug)]
pub struct Vendor {
    /// Stable id tenants configure (`calcom`); also the policy's connector name.
    pub id: &'static str,
    pub name: &'static str,
    /// The published spec the connector follows, relative to the shared `vendor-specs/`.
    pub spec: &'static str,
    /// `None`: the tenant must set `base_url` (a shop's own URL).
    pub default_base_url: Option<&'static str>,
    /// Every capability it serves (at least one).
    pub capabilities: &'static [Capability],
    pub secret: SecretShape,
    pub oauth: Option<OAuthSpec>,
    pub webhooks: Option<WebhookSpec>,
    /// Idempotency header, retry classification and policy overrides.
    pub profile: fn() -> ConnectorProfile,
    pub build: fn(BuildContext<'_>) -> Result<Built, BuildFailure>,
}

impl Vendor {
    pub fn serves(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// The profile with only the vendor's name: for vendors without special rules.
    pub fn plain_profile(id: &'static str) -> ConnectorProfile {
        ConnectorProfile::new(id)
    }
}

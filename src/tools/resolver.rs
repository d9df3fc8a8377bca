//! Per-tenant tool resolution: which tools an agent's call offers, over which vendor.
//!
//! Owns: reading the tenant's connector configurations, picking the vendor that serves each
//! capability (tenant configuration, so a tenant switches vendor without touching its prompt),
//! decrypting the referenced secret through the vault only while building the connector, and
//! building a [`ToolRegistry`] with exactly the enabled tools whose connector is configured and
//! has its credentials. Every enabled tool left out is reported with the reason. It must not run
//! tools, log secrets, or fall back to a tool that does nothing.
//!
//! # Credentials
//!
//! A connector configuration (`ConnectorSpec`) names one secret. Its plaintext is either the bare
//! token (HubSpot, Shopify) or a JSON object holding the credential and the vendor's settings:
//!
//! | vendor            | secret                                                                          |
//! |-------------------|---------------------------------------------------------------------------------|
//! | `calcom`          | `{"api_key": "cal_…", "event_type_id": 123, "max_slots"?: 8}`                   |
//! | `google_calendar` | `{"client_id", "client_secret", "refresh_token", "calendar_id"?: "primary", "token_url"?}` |
//! | `google_calendar` | a service-account key file as downloaded (`"type": "service_account"`, `client_email`, `private_key`, `token_uri`), plus `"calendar_id"?` and `"subject"?` (user to impersonate through domain-wide delegation) |
//! | `calendly`        | `{"token", "event_type": "https://api.calendly.com/event_types/…", "direct_booking"?: true}` |
//! | `hubspot`         | the access token, or `{"access_token"}`                                         |
//! | `shopify`         | the Admin API access token, or `{"access_token"}`; `base_url` = the shop's URL  |
//!
//! `base_url` in the configuration overrides the vendor's default API base (self-hosted Cal.com,
//! a test server). Operator-facing version of this table: `docs/connectors.md`.
//!
//! `book_appointment`, `reschedule_appointment` and `cancel_appointment` also get the tenant's CRM
//! connector when one is configured and builds, with the booking → meeting links, so bookings are
//! recorded there and their meetings follow them; a broken CRM is logged and the tools are offered
//! without it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::capabilities::{
    CRM_FOLLOW_UP_TOOLS, Capability, CapabilityEnv, CrmFollowUp, capability_of, capability_tool,
};
use super::ledger::SharedLedger;
use super::meeting_links::SharedMeetingLinks;
use super::{ToolRegistry, builtin_in_zone};
use crate::connectors::calcom::{self, Calcom, CalcomConfig};
use crate::connectors::calendly::{self, Calendly, CalendlyConfig};
use crate::connectors::google_calendar::{self, GoogleCalendar, GoogleCalendarConfig};
use crate::connectors::http::{HttpPolicy, RequestContext};
use crate::connectors::hubspot::{self, Hubspot, HubspotConfig};
use crate::connectors::oauth::{
    GOOGLE_TOKEN_URL, OAuthCredentials, OAuthTokenSource, ServiceAccountKey,
};
use crate::connectors::shopify::{self, Shopify, ShopifyConfig};
use crate::connectors::{Calendar, Commerce, ConnectorError, Crm, parse_base_url};
use crate::realtime::END_CALL_TOOL;
use crate::store::{ConnectorConfig, Store, StoreError, TenantId};
use crate::tenant::vault::{Vault, VaultError};

/// The vendors this bridge has connectors for, with the capability each serves.
pub const VENDORS: [(&str, Capability); 5] = [
    (calcom::CONNECTOR, Capability::Calendar),
    (google_calendar::CONNECTOR, Capability::Calendar),
    (calendly::CONNECTOR, Capability::Calendar),
    (hubspot::CONNECTOR, Capability::Crm),
    (shopify::CONNECTOR, Capability::Commerce),
];

/// The capability `vendor` serves, if this bridge knows the vendor.
pub fn capability_of_vendor(vendor: &str) -> Option<Capability> {
    VENDORS
        .iter()
        .find(|(name, _)| *name == vendor)
        .map(|(_, capability)| *capability)
}

/// Why the tools of a tenant could not be resolved at all (a single tool's problem is reported
/// in [`Resolved::unavailable`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant {tenant} has an invalid time zone {zone:?}")]
    TimeZone { tenant: TenantId, zone: String },
}

/// An enabled tool that is not offered, and why (for logs and the health check; no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub tool: String,
    pub reason: String,
}

/// The tools of one agent's call.
#[derive(Debug)]
pub struct Resolved {
    pub registry: ToolRegistry,
    pub unavailable: Vec<Unavailable>,
}

/// A built connector, behind the trait of its capability.
#[derive(Clone)]
pub enum BuiltConnector {
    Calendar(Arc<dyn Calendar>),
    Crm(Arc<dyn Crm>),
    Commerce(Arc<dyn Commerce>),
}

impl BuiltConnector {
    /// The connector's harmless read.
    pub async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        match self {
            Self::Calendar(connector) => connector.health_check(ctx).await,
            Self::Crm(connector) => connector.health_check(ctx).await,
            Self::Commerce(connector) => connector.health_check(ctx).await,
        }
    }
}

/// Why a connector could not be built; the message names no secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("no connector is configured for {0}")]
    NotConfigured(&'static str),
    #[error("the {vendor} connector has no credentials (no secret configured)")]
    NoSecret { vendor: String },
    #[error("the {vendor} credentials cannot be decrypted: no master key is configured")]
    NoVault { vendor: String },
    #[error("the {vendor} credentials are unavailable: {reason}")]
    Secret { vendor: String, reason: String },
    #[error("the {vendor} credentials are incomplete: {reason}")]
    Credentials { vendor: String, reason: String },
    #[error("the {vendor} credentials are invalid: {reason}")]
    InvalidCredentials { vendor: String, reason: String },
    #[error("{vendor} is not a vendor this bridge has a connector for")]
    UnknownVendor { vendor: String },
    #[error("the {vendor} connector configuration is invalid: {reason}")]
    Config { vendor: String, reason: String },
}

/// The decrypted secret of one connector: a bare token, or an object of fields.
struct Credentials {
    vendor: String,
    token: Option<SecretString>,
    fields: Map<String, Value>,
}

impl Credentials {
    fn parse(vendor: &str, plaintext: &SecretString) -> Result<Self, BuildError> {
        let text = plaintext.expose_secret().trim();
        if text.starts_with('{') {
            let fields: Map<String, Value> =
                serde_json::from_str(text).map_err(|_| BuildError::Credentials {
                    vendor: vendor.to_owned(),
                    // serde's message may quote the secret's text: say only what is wrong.
                    reason: "the secret starts with '{' but is not a JSON object".into(),
                })?;
            Ok(Self {
                vendor: vendor.to_owned(),
                token: None,
                fields,
            })
        } else {
            Ok(Self {
                vendor: vendor.to_owned(),
                token: Some(SecretString::from(text.to_owned())),
                fields: Map::new(),
            })
        }
    }

    fn missing(&self, what: &str) -> BuildError {
        BuildError::Credentials {
            vendor: self.vendor.clone(),
            reason: format!("missing {what}"),
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    }

    /// The credential under one of `names`, or the bare token.
    fn secret(&self, names: &[&str]) -> Result<SecretString, BuildError> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        names
            .iter()
            .find_map(|name| self.text(name))
            .map(|text| SecretString::from(text.to_owned()))
            .ok_or_else(|| self.missing(names.first().copied().unwrap_or("token")))
    }

    fn required_text(&self, name: &str) -> Result<String, BuildError> {
        self.text(name)
            .map(str::to_owned)
            .ok_or_else(|| self.missing(name))
    }

    fn unsigned(&self, name: &str) -> Option<u64> {
        self.fields.get(name).and_then(|value| {
            value
                .as_u64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        })
    }
}

fn base_url(config: &ConnectorConfig, default: &str) -> Result<Url, BuildError> {
    let text = config.spec.base_url.as_deref().unwrap_or(default);
    parse_base_url(text).map_err(|err| BuildError::Config {
        vendor: config.spec.vendor.clone(),
        reason: err.to_string(),
    })
}

/// Builds the connector for one configuration, decrypting its secret through `vault`.
pub async fn build_connector<S: Store>(
    config: &ConnectorConfig,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
) -> Result<BuiltConnector, BuildError> {
    let vendor = config.spec.vendor.as_str();
    if capability_of_vendor(vendor).is_none() {
        return Err(BuildError::UnknownVendor {
            vendor: vendor.to_owned(),
        });
    }
    let Some(secret_name) = config.spec.secret_name.as_deref() else {
        return Err(BuildError::NoSecret {
            vendor: vendor.to_owned(),
        });
    };
    let Some(vault) = vault else {
        return Err(BuildError::NoVault {
            vendor: vendor.to_owned(),
        });
    };
    let plaintext = vault
        .reveal(&config.tenant_id, secret_name)
        .await
        .map_err(|err| BuildError::Secret {
            vendor: vendor.to_owned(),
            reason: match err {
                VaultError::Store(StoreError::NotFound { .. }) => {
                    format!("secret {secret_name:?} does not exist")
                }
                other => other.to_string(),
            },
        })?;
    let credentials = Credentials::parse(vendor, &plaintext)?;
    drop(plaintext);
    let policy = policy.clone();
    let config_error = |err: ConnectorError| BuildError::Config {
        vendor: vendor.to_owned(),
        reason: err.to_string(),
    };
    Ok(match vendor {
        calcom::CONNECTOR => {
            let event_type_id = credentials
                .unsigned("event_type_id")
                .ok_or_else(|| credentials.missing("event_type_id"))?;
            BuiltConnector::Calendar(Arc::new(Calcom::new(
                policy,
                CalcomConfig {
                    base_url: base_url(config, calcom::DEFAULT_BASE_URL)?,
                    api_key: credentials.secret(&["api_key", "token"])?,
                    event_type_id,
                    max_slots: credentials
                        .unsigned("max_slots")
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(8),
                },
            )))
        }
        google_calendar::CONNECTOR => {
            let tokens = google_token_source(&credentials)?;
            let calendar_id = credentials.text("calendar_id").unwrap_or("primary");
            BuiltConnector::Calendar(Arc::new(GoogleCalendar::new(
                policy,
                GoogleCalendarConfig::new(
                    base_url(config, google_calendar::DEFAULT_BASE_URL)?,
                    calendar_id,
                ),
                Arc::new(tokens),
            )))
        }
        calendly::CONNECTOR => {
            let mut calendly_config = CalendlyConfig::new(
                base_url(config, calendly::DEFAULT_BASE_URL)?,
                credentials.secret(&["token", "access_token"])?,
                credentials.required_text("event_type")?,
            );
            if let Some(direct) = credentials
                .fields
                .get("direct_booking")
                .and_then(Value::as_bool)
            {
                calendly_config.direct_booking = direct;
            }
            BuiltConnector::Calendar(Arc::new(Calendly::new(policy, calendly_config)))
        }
        hubspot::CONNECTOR => BuiltConnector::Crm(Arc::new(Hubspot::new(
            policy,
            HubspotConfig::new(
                base_url(config, hubspot::DEFAULT_BASE_URL)?,
                credentials.secret(&["access_token", "token"])?,
            ),
        ))),
        shopify::CONNECTOR => {
            let Some(shop) = config.spec.base_url.as_deref() else {
                return Err(BuildError::Config {
                    vendor: vendor.to_owned(),
                    reason: "set base_url to the shop's URL (https://{shop}.myshopify.com/)".into(),
                });
            };
            let shop_url = parse_base_url(shop).map_err(config_error)?;
            BuiltConnector::Commerce(Arc::new(
                Shopify::new(
                    policy,
                    ShopifyConfig {
                        shop_url,
                        access_token: credentials.secret(&["access_token", "token"])?,
                    },
                )
                .map_err(config_error)?,
            ))
        }
        other => {
            return Err(BuildError::UnknownVendor {
                vendor: other.to_owned(),
            });
        }
    })
}

/// The Google token source of a calendar secret: a service-account key file (`"type":
/// "service_account"`, optional `subject`) or an OAuth client with a refresh token.
fn google_token_source(credentials: &Credentials) -> Result<OAuthTokenSource, BuildError> {
    let vendor = google_calendar::CONNECTOR;
    let invalid = |err: ConnectorError| BuildError::InvalidCredentials {
        vendor: vendor.to_owned(),
        reason: match err {
            ConnectorError::Config(reason) => reason,
            other => other.to_string(),
        },
    };
    let token_url = credentials
        .text("token_uri")
        .or_else(|| credentials.text("token_url"))
        .unwrap_or(GOOGLE_TOKEN_URL);
    let token_url = parse_base_url(token_url).map_err(|err| BuildError::InvalidCredentials {
        vendor: vendor.to_owned(),
        reason: format!("token_uri: {err}"),
    })?;
    if credentials.text("type") == Some("service_account") {
        let mut key = ServiceAccountKey::new(
            credentials.required_text("client_email")?,
            &credentials.secret(&["private_key"])?,
            token_url,
        )
        .map_err(invalid)?
        .with_subject(credentials.text("subject").map(str::to_owned));
        key.key_id = credentials.text("private_key_id").map(str::to_owned);
        return Ok(OAuthTokenSource::service_account(key, vendor));
    }
    Ok(OAuthTokenSource::new(
        OAuthCredentials {
            token_url,
            client_id: credentials.required_text("client_id")?,
            client_secret: credentials.secret(&["client_secret"])?,
            refresh_token: SecretString::from(credentials.required_text("refresh_token")?),
        },
        vendor,
    ))
}

/// The configuration serving `capability`: the most recently updated one if several are.
fn configuration_for(
    configs: &[ConnectorConfig],
    capability: Capability,
) -> Option<&ConnectorConfig> {
    configs
        .iter()
        .filter(|config| capability_of_vendor(&config.spec.vendor) == Some(capability))
        .max_by_key(|config| config.updated_at)
}

/// The connector serving `capability`, built (and its secret decrypted) at most once per
/// resolution; the error is why it cannot serve.
async fn connector_for<S: Store>(
    built: &mut HashMap<Capability, Result<BuiltConnector, String>>,
    configs: &[ConnectorConfig],
    capability: Capability,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
) -> Result<BuiltConnector, String> {
    if let Entry::Vacant(slot) = built.entry(capability) {
        let connector = match configuration_for(configs, capability) {
            None => Err(BuildError::NotConfigured(capability.as_str()).to_string()),
            Some(config) => build_connector(config, vault, policy)
                .await
                .map_err(|err| err.to_string()),
        };
        slot.insert(connector);
    }
    built
        .get(&capability)
        .cloned()
        .unwrap_or_else(|| Err(BuildError::NotConfigured(capability.as_str()).to_string()))
}

/// The registry for one agent's call: built-ins and capability tools from `enabled`, each
/// capability tool only if the tenant's connector for it is configured and has credentials.
/// `end_call` is always declared by the registry and needs no entry. `meeting_links` keeps which
/// CRM meeting records which booking.
#[allow(clippy::too_many_arguments)] // what one resolution needs, named at its two call sites
pub async fn registry_for_agent<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    ledger: SharedLedger,
    meeting_links: SharedMeetingLinks,
    tenant: &TenantId,
    enabled: &[String],
    deadline: Duration,
) -> Result<Resolved, ResolveError> {
    let tenant_row = store.tenant(tenant).await?;
    let business_zone: Tz = tenant_row
        .time_zone
        .parse()
        .map_err(|_| ResolveError::TimeZone {
            tenant: tenant.clone(),
            zone: tenant_row.time_zone.clone(),
        })?;
    let env = Arc::new(CapabilityEnv {
        tenant: Arc::from(tenant.as_str()),
        business_zone,
        ledger,
        deadline,
    });
    let mut registry = ToolRegistry::new(deadline);
    let mut unavailable = Vec::new();
    let needs_connectors = enabled.iter().any(|name| capability_of(name).is_some());
    let configs = if needs_connectors {
        store.list_connectors(tenant).await?
    } else {
        Vec::new()
    };
    // One connector per capability, built (and its secret decrypted) at most once.
    let mut built: HashMap<Capability, Result<BuiltConnector, String>> = HashMap::new();
    let crm_configuration = configuration_for(&configs, Capability::Crm);
    let follow_up = |crm: Arc<dyn Crm>| {
        crm_configuration.map(|config| CrmFollowUp {
            crm,
            vendor: Arc::from(config.spec.vendor.as_str()),
            links: Arc::clone(&meeting_links),
        })
    };

    for name in enabled {
        if name == END_CALL_TOOL || registry.names().any(|known| known == name) {
            continue;
        }
        if let Some(tool) = builtin_in_zone(name, business_zone) {
            registry.register(tool);
            continue;
        }
        let Some(capability) = capability_of(name) else {
            unavailable.push(Unavailable {
                tool: name.clone(),
                reason: "not a tool this bridge provides".into(),
            });
            continue;
        };
        let connector = match connector_for(&mut built, &configs, capability, vault, policy).await {
            Ok(connector) => connector,
            Err(reason) => {
                unavailable.push(Unavailable {
                    tool: name.clone(),
                    reason,
                });
                continue;
            }
        };
        let tool = match connector {
            BuiltConnector::Calendar(calendar) => {
                // Bookings are also kept in the tenant's CRM, when it has a working one.
                let crm = if CRM_FOLLOW_UP_TOOLS.contains(&name.as_str())
                    && crm_configuration.is_some()
                {
                    match connector_for(&mut built, &configs, Capability::Crm, vault, policy).await
                    {
                        Ok(BuiltConnector::Crm(crm)) => follow_up(crm),
                        Ok(_) => None,
                        Err(reason) => {
                            tracing::warn!(tenant = %tenant, tool = %name, reason = %reason,
                                "bookings will not be kept in the CRM");
                            None
                        }
                    }
                } else {
                    None
                };
                capability_tool(name, &env, Some(&calendar), crm.as_ref(), None)
            }
            BuiltConnector::Crm(crm) => {
                capability_tool(name, &env, None, follow_up(crm).as_ref(), None)
            }
            BuiltConnector::Commerce(commerce) => {
                capability_tool(name, &env, None, None, Some(&commerce))
            }
        };
        match tool {
            Some(tool) => registry.register(tool),
            None => unavailable.push(Unavailable {
                tool: name.clone(),
                reason: format!("no {} connector for this tool", capability.as_str()),
            }),
        }
    }
    for missing in &unavailable {
        tracing::info!(tenant = %tenant, tool = %missing.tool, reason = %missing.reason, "tool not offered");
    }
    Ok(Resolved {
        registry,
        unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_serves_a_capability_the_tools_use() {
        for (vendor, capability) in VENDORS {
            assert_eq!(capability_of_vendor(vendor), Some(capability));
        }
        assert_eq!(capability_of_vendor("pipedrive"), None);
    }

    #[test]
    fn credentials_are_a_token_or_an_object_and_errors_hide_the_text() {
        let bare =
            Credentials::parse("hubspot", &SecretString::from("pat-na1-secret")).expect("token");
        assert_eq!(
            bare.secret(&["access_token"])
                .expect("token")
                .expose_secret(),
            "pat-na1-secret"
        );
        let object = Credentials::parse(
            "calcom",
            &SecretString::from(r#"{"api_key":"cal_live_x","event_type_id":"42"}"#),
        )
        .expect("object");
        assert_eq!(object.unsigned("event_type_id"), Some(42));
        assert!(matches!(
            object.required_text("client_id"),
            Err(BuildError::Credentials { .. })
        ));
        let broken = Credentials::parse(
            "calcom",
            &SecretString::from("{\"api_key\": \"cal_live_sec"),
        )
        .err()
        .expect("refused");
        assert!(!broken.to_string().contains("cal_live_sec"), "{broken}");
    }
}

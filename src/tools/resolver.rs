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
//! A connector configuration (`ConnectorSpec`) names one secret (or the tenant has an OAuth
//! connection to the vendor). Its plaintext is the bare token or a JSON object holding the
//! credential and the vendor's settings; each vendor declares and validates its shape in its
//! descriptor (`Vendor::secret`), which `callbridge connector vendors` prints and
//! `docs/connectors.md` documents for operators.
//!
//! `base_url` in the configuration overrides the vendor's default API base (self-hosted Cal.com,
//! a test server).
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

use super::capabilities::{
    CREATE_COUPON, Capability, CapabilityEnv, CrmFollowUp, ToolInputs, tool_spec,
};
use super::ledger::SharedLedger;
use super::meeting_links::SharedMeetingLinks;
use super::send_message::{SEND_MESSAGE, SendMessage, messengers};
use super::{ToolRegistry, builtin_in_zone};
use crate::connectors::Crm;
use crate::connectors::http::HttpPolicy;
use crate::connectors::kit::{BuildContext, BuildFailure, Built, Credentials, OAuthGrant};
use crate::connectors::registry;
use crate::oauth::{OAuthError, OAuthService};
use crate::realtime::END_CALL_TOOL;
use crate::store::{ConnectionStatus, ConnectorConfig, Store, StoreError, TenantId};
use crate::tenant::vault::{Vault, VaultError};

/// The capability `vendor` serves first, if this bridge knows the vendor (see
/// [`crate::connectors::registry`], the one vendor list).
pub fn capability_of_vendor(vendor: &str) -> Option<Capability> {
    registry::vendor(vendor).and_then(|v| v.capabilities.first().copied())
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

/// A built vendor: one connector per capability it serves.
pub type BuiltConnector = Built;

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

/// Builds the connector for one configuration, decrypting its secret through `vault`.
pub async fn build_connector<S: Store>(
    config: &ConnectorConfig,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
) -> Result<BuiltConnector, BuildError> {
    build_connector_with(config, vault, policy, None).await
}

/// [`build_connector`], using the tenant's OAuth connection to the vendor when `oauth` is given
/// and the tenant has one: its token source replaces the secret's credential (the secret, when
/// named, still gives the settings, `calendar_id`, …). A connection that needs to be connected
/// again leaves the connector unbuilt, so its tools are withdrawn and `doctor` says why.
pub async fn build_connector_with<S: Store>(
    config: &ConnectorConfig,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
) -> Result<BuiltConnector, BuildError> {
    let vendor = config.spec.vendor.as_str();
    let Some(descriptor) = registry::vendor(vendor) else {
        return Err(BuildError::UnknownVendor {
            vendor: vendor.to_owned(),
        });
    };
    if let Some(oauth) = oauth
        && descriptor.oauth.is_some()
    {
        match oauth.connection(&config.tenant_id, vendor).await {
            Ok(connection) if connection.status == ConnectionStatus::NeedsReconnect => {
                return Err(BuildError::Credentials {
                    vendor: vendor.to_owned(),
                    reason: "the OAuth connection was refused by the vendor and must be connected again (callbridge connect)".into(),
                });
            }
            Ok(connection) => {
                let settings = match (config.spec.secret_name.as_deref(), vault) {
                    (Some(name), Some(vault)) => vault.reveal(&config.tenant_id, name).await.ok(),
                    _ => None,
                };
                let credentials = settings
                    .as_ref()
                    .and_then(|text| Credentials::parse(text).ok())
                    .filter(|c| c.text("type").is_none() && c.text("refresh_token").is_none())
                    .map_or_else(
                        || Credentials::parse(&secrecy::SecretString::from("{}".to_owned())),
                        Ok,
                    )
                    .map_err(|err| BuildError::Credentials {
                        vendor: vendor.to_owned(),
                        reason: err.to_string(),
                    })?;
                let fields = descriptor
                    .oauth
                    .map_or(&[][..], |spec| spec.api_base_fields);
                let grant = OAuthGrant {
                    tokens: Arc::new(oauth.token_source(&config.tenant_id, vendor)),
                    api_base: OAuthService::api_base(&connection, fields),
                };
                return (descriptor.build)(BuildContext {
                    vendor: descriptor,
                    base_url: config.spec.base_url.as_deref(),
                    credentials,
                    policy: policy.clone(),
                    oauth: Some(grant),
                })
                .map_err(|err| BuildError::Config {
                    vendor: vendor.to_owned(),
                    reason: err.to_string(),
                });
            }
            Err(OAuthError::NotConnected { .. }) => {}
            Err(err) => {
                return Err(BuildError::Secret {
                    vendor: vendor.to_owned(),
                    reason: err.to_string(),
                });
            }
        }
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
    let failure = |err: BuildFailure| match err {
        BuildFailure::Missing(what) => BuildError::Credentials {
            vendor: vendor.to_owned(),
            reason: format!("missing {what}"),
        },
        BuildFailure::InvalidCredentials(reason) => BuildError::InvalidCredentials {
            vendor: vendor.to_owned(),
            reason,
        },
        BuildFailure::Config(reason) => BuildError::Config {
            vendor: vendor.to_owned(),
            reason,
        },
    };
    let credentials = Credentials::parse(&plaintext).map_err(|err| match err {
        // An unreadable secret is incomplete credentials, as before the recipe.
        BuildFailure::InvalidCredentials(reason) => BuildError::Credentials {
            vendor: vendor.to_owned(),
            reason,
        },
        other => failure(other),
    })?;
    drop(plaintext);
    credentials.validate(&descriptor.secret).map_err(failure)?;
    (descriptor.build)(BuildContext {
        vendor: descriptor,
        base_url: config.spec.base_url.as_deref(),
        credentials,
        policy: policy.clone(),
        oauth: None,
    })
    .map_err(failure)
}

/// The configuration serving `capability` when several could: a vendor serving fewer
/// capabilities is the more specific choice (a tenant's HubSpot stays its CRM when Wix is
/// connected for coupons, whichever was saved last); among equals, the most recently updated.
pub fn configuration_for(
    configs: &[ConnectorConfig],
    capability: Capability,
) -> Option<&ConnectorConfig> {
    configs
        .iter()
        .filter_map(|config| {
            let vendor = registry::vendor(&config.spec.vendor)?;
            vendor
                .serves(capability)
                .then_some((vendor.capabilities.len(), config))
        })
        .max_by_key(|(breadth, config)| (std::cmp::Reverse(*breadth), config.updated_at))
        .map(|(_, config)| config)
}

/// The connector serving `capability`, built (and its secret decrypted) at most once per
/// resolution; the error is why it cannot serve.
async fn connector_for<S: Store>(
    built: &mut HashMap<Capability, Result<BuiltConnector, String>>,
    configs: &[ConnectorConfig],
    capability: Capability,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
) -> Result<BuiltConnector, String> {
    if let Entry::Vacant(slot) = built.entry(capability) {
        let connector = match configuration_for(configs, capability) {
            None => Err(BuildError::NotConfigured(capability.as_str()).to_string()),
            Some(config) => build_connector_with(config, vault, policy, oauth)
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
#[allow(clippy::too_many_arguments)] // what one resolution needs, named at its call sites
pub async fn registry_for_agent<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
    ledger: SharedLedger,
    meeting_links: SharedMeetingLinks,
    tenant: &TenantId,
    enabled: &[String],
    deadline: Duration,
) -> Result<Resolved, ResolveError> {
    registry_for_agent_with(
        store,
        vault,
        policy,
        oauth,
        ledger,
        meeting_links,
        None,
        tenant,
        enabled,
        deadline,
    )
    .await
}

/// [`registry_for_agent`], with the SQL store `send_message` keeps its settings, limits, opt-outs
/// and WhatsApp windows in (without it, `send_message` is not offered).
#[allow(clippy::too_many_arguments)] // what one resolution needs, named at its call sites
pub async fn registry_for_agent_with<S: Store>(
    store: &S,
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
    ledger: SharedLedger,
    meeting_links: SharedMeetingLinks,
    messaging: Option<&crate::store::SqlStore>,
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
        coupon_slots: messaging
            .map(|store| Arc::new(store.clone()) as super::coupon_slots::SharedCouponSlots),
        deadline,
    });
    let mut registry = ToolRegistry::new(deadline);
    let mut unavailable = Vec::new();
    let needs_connectors = enabled
        .iter()
        .any(|name| tool_spec(name).is_some() || name == SEND_MESSAGE);
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
        if name == crate::realtime::SEND_DIGITS_TOOL {
            registry.declare_session_tool(crate::tools::send_digits_declaration());
            continue;
        }
        if name == crate::realtime::TRANSFER_CALL_TOOL {
            // Needs the agent's destinations: the call plan registers it (`call/transfer.rs`).
            continue;
        }
        if let Some(tool) = builtin_in_zone(name, business_zone) {
            registry.register(tool);
            continue;
        }
        if name == SEND_MESSAGE {
            match send_message_tool(&env, messaging, &configs, vault, policy, oauth, tenant).await {
                Ok(tool) => registry.register(Arc::new(tool)),
                Err(reason) => unavailable.push(Unavailable {
                    tool: name.clone(),
                    reason,
                }),
            }
            continue;
        }
        let Some(spec) = tool_spec(name) else {
            unavailable.push(Unavailable {
                tool: name.clone(),
                reason: "not a tool this bridge provides".into(),
            });
            continue;
        };
        let capability = spec.capability;
        let connector =
            match connector_for(&mut built, &configs, capability, vault, policy, oauth).await {
                Ok(connector) => connector,
                Err(reason) => {
                    unavailable.push(Unavailable {
                        tool: name.clone(),
                        reason,
                    });
                    continue;
                }
            };
        // Tools that change bookings also keep the tenant's CRM in step, when it has a working
        // one.
        let crm = if spec.crm_follow_up && crm_configuration.is_some() {
            match connector_for(&mut built, &configs, Capability::Crm, vault, policy, oauth).await {
                Ok(Built { crm: Some(crm), .. }) => follow_up(crm),
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
        // create_coupon counts its daily cap in the SQL store: without it, not offered.
        if spec.name == CREATE_COUPON && messaging.is_none() {
            unavailable.push(Unavailable {
                tool: name.clone(),
                reason: "create_coupon needs the SQL store (its daily cap is counted there)".into(),
            });
            continue;
        }
        let tool = (spec.build)(ToolInputs {
            env: &env,
            connector: &connector,
            crm: crm.as_ref(),
        });
        match tool {
            // Booking tools also emit their event for the tenant's staff notification rules.
            Some(tool) => registry.register(match messaging {
                Some(store) => crate::notify::NotifyOnSuccess::wrap(
                    tool,
                    &crate::notify::Notifier::new(store.clone()),
                    tenant,
                ),
                None => tool,
            }),
            None => unavailable.push(Unavailable {
                tool: name.clone(),
                reason: if connector.serves(capability) {
                    // The vendor serves the capability but not this tool (deals, …).
                    format!(
                        "the tenant's {} connector does not serve this tool",
                        capability.as_str()
                    )
                } else {
                    format!("no {} connector for this tool", capability.as_str())
                },
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

/// `send_message` over the tenant's connected messaging channels, or why it is not offered.
async fn send_message_tool<S: Store>(
    env: &Arc<CapabilityEnv>,
    messaging: Option<&crate::store::SqlStore>,
    configs: &[ConnectorConfig],
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
    tenant: &TenantId,
) -> Result<SendMessage, String> {
    let Some(store) = messaging else {
        return Err("messaging needs the SQL store".into());
    };
    let (channels, problems) = messengers(configs, vault, policy, oauth).await;
    let settings = store
        .messaging_settings(tenant)
        .await
        .map_err(|err| err.to_string())?;
    SendMessage::new(
        Arc::clone(env),
        tenant.clone(),
        store.clone(),
        settings,
        channels,
    )
    .ok_or_else(|| match problems.first() {
        Some(problem) => problem.clone(),
        None => BuildError::NotConfigured("messaging (sms, whatsapp or email)").to_string(),
    })
}

#[cfg(test)]
mod configuration_tests {
    use super::*;
    use crate::store::ConnectorSpec;

    fn config(vendor: &str, updated_at: i64) -> ConnectorConfig {
        ConnectorConfig {
            tenant_id: TenantId::parse("acme").expect("tenant id"),
            spec: ConnectorSpec {
                vendor: vendor.to_owned(),
                base_url: None,
                secret_name: None,
            },
            updated_at: jiff::Timestamp::from_millisecond(updated_at).expect("timestamp"),
        }
    }

    #[test]
    fn a_specialist_vendor_wins_over_a_suite_saved_later() {
        let configs = [config("hubspot", 1_000), config("wix", 2_000)];
        let crm = configuration_for(&configs, Capability::Crm).expect("a CRM");
        assert_eq!(crm.spec.vendor, "hubspot");
        let coupons = configuration_for(&configs, Capability::Coupons).expect("coupons");
        assert_eq!(coupons.spec.vendor, "wix");
    }

    #[test]
    fn among_equals_the_most_recently_updated_serves() {
        let configs = [config("salesforce", 2_000), config("hubspot", 1_000)];
        let crm = configuration_for(&configs, Capability::Crm).expect("a CRM");
        assert_eq!(crm.spec.vendor, "salesforce");
        assert!(configuration_for(&configs, Capability::Support).is_none());
    }
}

//! Inbound webhooks: vendors' events start calls (speed to lead), change bookings and stop
//! campaigns.
//!
//! A delivery to `POST /hooks/{tenant}/{source}` is verified per its source's scheme
//! ([`verify`], schemes as data in [`specs`] and the vendor descriptors) before anything is
//! parsed, then split into events ([`event`]) and stored in the durable inbox (deduplicated by
//! the vendor's event id) before the vendor is answered. The worker ([`worker`]) processes the
//! inbox under leases, on any node, with retries: each of the tenant's [`rules`] that matches
//! carries out its action (enrol the contact in the rule's own campaign — so calling windows,
//! do-not-call and dial limits are the campaign dispatcher's —, cancel a number's pending calls,
//! put it on the do-not-call list) and the action is recorded with the event.
//!
//! This module owns the inbound service and the management of sources and rules. It must not
//! serve HTTP (the routes in `http/hooks.rs` adapt it), place calls itself (campaigns do) or log
//! a secret or a payload.

pub mod event;
pub mod payments;
pub mod rules;
pub mod specs;
pub mod verify;
pub mod worker;

use std::sync::Arc;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::campaign::Clock;
use crate::campaign::window::CallingWindow;
use crate::connectors::kit::WebhookSpec;
use crate::metrics::Metrics;
use crate::store::{
    CampaignSpec, InboundEvent, InboundRule, InboundSource, NewInboundEvent, SqlStore, Store,
    StoreError, TenantId,
};
use crate::tenant::vault::{Vault, VaultError};

pub use rules::{Action, Condition, ContactMapping};
pub use verify::{Delivery, Rejection};
pub use worker::{WorkerHandle, WorkerOptions};

/// The secret vendor name of inbound signing secrets in the vault.
pub const SECRET_VENDOR: &str = "inbound";

/// What sends to a source: decides the signature scheme and where the secret comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Calendly,
    Calcom,
    Shopify,
    Hubspot,
    Stripe,
    Whatsapp,
    /// Twilio messaging webhooks (SMS replies), signed with the server's auth token.
    Twilio,
    /// The business's own systems, signing per Standard Webhooks.
    Standard,
}

impl SourceKind {
    pub const ALL: [SourceKind; 8] = [
        Self::Calendly,
        Self::Calcom,
        Self::Shopify,
        Self::Hubspot,
        Self::Stripe,
        Self::Whatsapp,
        Self::Twilio,
        Self::Standard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calendly => "calendly",
            Self::Calcom => "calcom",
            Self::Shopify => "shopify",
            Self::Hubspot => "hubspot",
            Self::Stripe => "stripe",
            Self::Whatsapp => "whatsapp",
            Self::Twilio => "twilio",
            Self::Standard => "standard",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// The vendor issues the secret (the tenant copies it here); otherwise we generate it and the
    /// tenant pastes it at the vendor.
    fn vendor_issues_secret(self) -> bool {
        matches!(
            self,
            Self::Shopify | Self::Hubspot | Self::Stripe | Self::Whatsapp
        )
    }

    pub fn spec(self) -> WebhookSpec {
        specs::spec_for(self)
    }
}

/// Why an inbound operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Unknown tenant, source, rule or event (another tenant's answers the same).
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    /// The delivery failed verification or cannot be read.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// The subscription handshake's token does not match.
    #[error("the verify token does not match")]
    Forbidden,
    /// Secrets (or Twilio's auth token) are not configured on this server.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("vault: {0}")]
    Vault(VaultError),
}

impl From<StoreError> for InboundError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => Self::NotFound(what),
            StoreError::Conflict { what } => Self::Conflict(what),
            StoreError::Invalid { field, reason } => Self::Invalid {
                field,
                message: reason,
            },
            other => Self::Store(other),
        }
    }
}

impl From<VaultError> for InboundError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Store(e) => e.into(),
            VaultError::MissingMasterKey | VaultError::InvalidMasterKey { .. } => {
                Self::Unavailable(err.to_string())
            }
            other => Self::Vault(other),
        }
    }
}

/// What a delivery became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub kind: SourceKind,
    /// Events stored now.
    pub stored: usize,
    /// Events the inbox already had (vendor retries).
    pub duplicates: usize,
}

/// A source just created: where the vendor posts, and the secret to paste there (shown once).
pub struct CreatedSource {
    pub source: InboundSource,
    pub url: String,
    /// A generated signing secret (`None` when the vendor issued it or Twilio signs).
    pub secret: Option<SecretString>,
    /// WhatsApp's generated verify token.
    pub verify_token: Option<SecretString>,
    pub setup: &'static str,
}

/// The inbound service. Cheap to clone.
#[derive(Clone)]
pub struct InboundService {
    store: SqlStore,
    vault: Option<Vault<SqlStore>>,
    twilio_auth_token: Option<Arc<SecretString>>,
    public_url: Arc<str>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for InboundService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundService")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl InboundService {
    /// `public_url` is where vendors reach this bridge; `twilio_auth_token` verifies Twilio
    /// sources (`None`: they are refused).
    pub fn new(
        store: SqlStore,
        vault: Option<Vault<SqlStore>>,
        twilio_auth_token: Option<SecretString>,
        public_url: &str,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            vault,
            twilio_auth_token: twilio_auth_token.map(Arc::new),
            public_url: Arc::from(public_url.trim_end_matches('/')),
            metrics,
            clock,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The URL a tenant's source is reached at.
    pub fn source_url(&self, tenant: &TenantId, source_id: &str) -> String {
        format!(
            "{}{}",
            self.public_url,
            hook_path(tenant.as_str(), source_id)
        )
    }

    /// The full public URL of a request to `path_and_query` (what Twilio and HubSpot sign).
    pub fn public_url_of(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.public_url)
    }

    fn vault(&self) -> Result<&Vault<SqlStore>, InboundError> {
        self.vault.as_ref().ok_or_else(|| {
            InboundError::Unavailable("no master key: source secrets cannot be read".into())
        })
    }

    async fn source(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<(TenantId, InboundSource, SourceKind), InboundError> {
        let not_found = || InboundError::NotFound(format!("source {source:?}"));
        let tenant = TenantId::parse(tenant).map_err(|_| not_found())?;
        let row = match self.store.inbound_source(&tenant, source).await {
            Ok(row) => row,
            Err(StoreError::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let kind = SourceKind::parse(&row.kind).ok_or_else(not_found)?;
        Ok((tenant, row, kind))
    }

    /// Counts a delivery refused before it reached a source (too large, unknown source).
    pub fn count_refusal(&self, result: &'static str) {
        self.metrics.inbound("unknown", result);
    }

    /// Verifies a delivery to the tenant's source and stores its events. Nothing is stored when
    /// the signature does not hold; the refusal is logged and counted.
    pub async fn receive(
        &self,
        tenant: &str,
        source_id: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Receipt, InboundError> {
        let (tenant, source, kind) = match self.source(tenant, source_id).await {
            Ok(found) => found,
            Err(e) => {
                if matches!(e, InboundError::NotFound(_)) {
                    self.metrics.inbound("unknown", "unknown_source");
                }
                return Err(e);
            }
        };
        let spec = kind.spec();
        let secret = self.signing_secret(&tenant, &source, kind).await?;
        let now = self.clock.now_ms();
        let checked = verify::verify(&spec, &secret, delivery, now)
            .and_then(|()| event::extract(&spec, delivery));
        drop(secret);
        let events = match checked {
            Ok(events) => events,
            Err(rejection) => {
                self.metrics.inbound(kind.as_str(), rejection.label());
                warn!(tenant = %tenant, source = source_id, kind = kind.as_str(),
                    reason = rejection.label(), error = %rejection, "inbound delivery refused");
                return Err(rejection.into());
            }
        };
        let verified_by = verify::scheme_name(spec.scheme);
        let mut receipt = Receipt {
            kind,
            stored: 0,
            duplicates: 0,
        };
        for extracted in &events {
            let (stored, new) = self
                .store
                .store_inbound_event(
                    &NewInboundEvent {
                        tenant: &tenant,
                        source_id,
                        vendor_event_id: &extracted.vendor_event_id,
                        event_type: &extracted.event_type,
                        verified_by,
                        payload: &extracted.payload,
                    },
                    now,
                )
                .await?;
            if new {
                receipt.stored += 1;
                self.metrics.inbound(kind.as_str(), "accepted");
                info!(tenant = %tenant, source = source_id, event = %stored.id,
                    event_type = %stored.event_type, "inbound event stored");
            } else {
                receipt.duplicates += 1;
                self.metrics.inbound(kind.as_str(), "duplicate");
            }
        }
        if receipt.stored > 0 {
            self.wake.notify_one();
        }
        Ok(receipt)
    }

    async fn signing_secret(
        &self,
        tenant: &TenantId,
        source: &InboundSource,
        kind: SourceKind,
    ) -> Result<SecretString, InboundError> {
        if kind == SourceKind::Twilio {
            return self
                .twilio_auth_token
                .as_deref()
                .cloned()
                .ok_or_else(|| InboundError::Unavailable("no Twilio auth token".into()));
        }
        let name = source.secret_name.as_deref().ok_or_else(|| {
            InboundError::Unavailable(format!("source {:?} has no secret", source.id))
        })?;
        Ok(self.vault()?.reveal(tenant, name).await?)
    }

    /// The subscription handshake (WhatsApp/Meta): `hub.mode=subscribe` with the source's verify
    /// token answers `hub.challenge`.
    pub async fn verify_subscription(
        &self,
        tenant: &str,
        source_id: &str,
        query: &[(String, String)],
    ) -> Result<String, InboundError> {
        let (tenant, source, kind) = self.source(tenant, source_id).await?;
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some("subscribe"), Some(token), Some(challenge)) = (
            source.verify_name.as_deref(),
            param("hub.mode"),
            param("hub.verify_token"),
            param("hub.challenge"),
        ) else {
            self.metrics.inbound(kind.as_str(), "bad_handshake");
            return Err(InboundError::Forbidden);
        };
        let expected = self.vault()?.reveal(&tenant, name).await?;
        if !bool::from(expected.expose_secret().as_bytes().ct_eq(token.as_bytes())) {
            self.metrics.inbound(kind.as_str(), "bad_handshake");
            warn!(tenant = %tenant, source = source_id, "subscription handshake refused");
            return Err(InboundError::Forbidden);
        }
        info!(tenant = %tenant, source = source_id, "subscription handshake answered");
        Ok(challenge.chars().take(200).collect())
    }

    // --- management ------------------------------------------------------------------------------

    /// Creates a source of `kind`. Vendors that issue the secret (Shopify, HubSpot, Stripe,
    /// WhatsApp) need it given; otherwise one is generated and returned here, once. Twilio
    /// sources take none (the server's auth token signs).
    pub async fn create_source(
        &self,
        tenant: &TenantId,
        id: &str,
        kind: &str,
        secret: Option<SecretString>,
    ) -> Result<CreatedSource, InboundError> {
        let kind = SourceKind::parse(kind).ok_or_else(|| InboundError::Invalid {
            field: "kind",
            message: format!(
                "unknown source kind {:?}; one of {}",
                kind.chars().take(32).collect::<String>(),
                SourceKind::ALL.map(SourceKind::as_str).join(", ")
            ),
        })?;
        let invalid = |message: &str| InboundError::Invalid {
            field: "secret",
            message: message.into(),
        };
        let given = secret.filter(|s| !s.expose_secret().trim().is_empty());
        let (secret_value, generated) = match (kind, given) {
            (SourceKind::Twilio, Some(_)) => {
                return Err(invalid(
                    "Twilio sources are verified with the server's auth token; give no secret",
                ));
            }
            (SourceKind::Twilio, None) => (None, None),
            (k, None) if k.vendor_issues_secret() => {
                return Err(invalid("this vendor issues the signing secret: give it"));
            }
            (SourceKind::Standard, None) => {
                let s = SecretString::from(format!("whsec_{}", random_base64(32)));
                (Some(s.clone()), Some(s))
            }
            (_, None) => {
                let s = SecretString::from(random_base64(32));
                (Some(s.clone()), Some(s))
            }
            (_, Some(s)) => (Some(s), None),
        };
        let secret_name = secret_value.as_ref().map(|_| format!("inbound-{id}"));
        let verify_token =
            (kind == SourceKind::Whatsapp).then(|| SecretString::from(random_base64(24)));
        let verify_name = verify_token
            .as_ref()
            .map(|_| format!("inbound-{id}-verify"));
        // Validate the id before sealing anything under a name built from it.
        crate::store::validate_source_id(id)?;
        if let (Some(name), Some(value)) = (&secret_name, &secret_value) {
            self.vault()?
                .put(tenant, name, SECRET_VENDOR, value)
                .await?;
        }
        if let (Some(name), Some(value)) = (&verify_name, &verify_token) {
            self.vault()?
                .put(tenant, name, SECRET_VENDOR, value)
                .await?;
        }
        let source = self
            .store
            .create_inbound_source(
                tenant,
                id,
                kind.as_str(),
                secret_name.as_deref(),
                verify_name.as_deref(),
            )
            .await?;
        info!(tenant = %tenant, source = id, kind = kind.as_str(), "inbound source created");
        Ok(CreatedSource {
            url: self.source_url(tenant, id),
            source,
            secret: generated,
            verify_token,
            setup: kind.spec().setup,
        })
    }

    /// Deletes a source and its sealed secrets.
    pub async fn delete_source(&self, tenant: &TenantId, id: &str) -> Result<(), InboundError> {
        let source = self.store.inbound_source(tenant, id).await?;
        self.store.delete_inbound_source(tenant, id).await?;
        if let Ok(vault) = self.vault() {
            for name in [&source.secret_name, &source.verify_name]
                .into_iter()
                .flatten()
            {
                if let Err(e) = vault.delete(tenant, name).await {
                    warn!(tenant = %tenant, source = id, error = %e, "cannot delete a source secret");
                }
            }
        }
        Ok(())
    }

    /// Creates a rule. A `call` rule gets its own campaign (the rule's agent and calling window,
    /// one attempt by default), which carries its calls.
    pub async fn create_rule(
        &self,
        tenant: &TenantId,
        name: &str,
        source_id: &str,
        event_type: &str,
        filter: Vec<Condition>,
        mut action: Action,
    ) -> Result<InboundRule, InboundError> {
        rules::check_rule(&filter, &action).map_err(|message| InboundError::Invalid {
            field: "rule",
            message,
        })?;
        self.store.inbound_source(tenant, source_id).await?;
        if let Action::Message { channel, staff, .. } = &action {
            self.check_sms_sender(tenant, channel, staff.as_deref())
                .await?;
        }
        match &mut action {
            Action::Call {
                agent_id,
                hours,
                days,
                max_attempts,
                campaign_id,
                ..
            } => {
                let window = CallingWindow::parse(
                    hours.as_deref().unwrap_or("09:00-20:00"),
                    days.as_deref().unwrap_or("mon-sat"),
                )
                .map_err(|e| InboundError::Invalid {
                    field: "window",
                    message: e.to_string(),
                })?;
                self.store.agent(tenant, agent_id).await?;
                let campaign = self
                    .store
                    .create_campaign(
                        tenant,
                        &CampaignSpec {
                            name: format!("rule: {}", name.chars().take(150).collect::<String>()),
                            agent_id: agent_id.clone(),
                            window: window.to_spec(),
                            dial_interval_ms: 0,
                            max_concurrent: 50,
                            max_attempts: max_attempts.unwrap_or(1),
                            retry_delay_s: 900,
                            voicemail: None,
                        },
                        &[],
                        &[],
                    )
                    .await?;
                *campaign_id = Some(campaign.id);
            }
            Action::Enrol { campaign_id, .. } => {
                self.store.campaign(tenant, campaign_id).await?;
            }
            Action::CancelCalls { .. } | Action::DoNotCall { .. } | Action::Message { .. } => {}
        }
        let filter = serde_json::to_string(&filter).map_err(|e| InboundError::Invalid {
            field: "filter",
            message: e.to_string(),
        })?;
        let action_json = serde_json::to_string(&action).map_err(|e| InboundError::Invalid {
            field: "action",
            message: e.to_string(),
        })?;
        let rule = self
            .store
            .create_inbound_rule(tenant, name, source_id, event_type, &filter, &action_json)
            .await?;
        info!(tenant = %tenant, rule = %rule.id, action = action.kind(), "inbound rule created");
        Ok(rule)
    }

    /// Refuses a `message` rule that would send an SMS (its channel, or the channel of the staff
    /// member it names) for a tenant with no sender: no number of its own and a `twilio_sms`
    /// connector whose secret names neither `from` nor `messaging_service_sid`. The connector
    /// itself may be set up later; a sender is what nothing would supply.
    async fn check_sms_sender(
        &self,
        tenant: &TenantId,
        channel: &str,
        staff: Option<&str>,
    ) -> Result<(), InboundError> {
        use crate::connectors::messages::Channel;
        let mut sms = Channel::parse(channel) == Some(Channel::Sms);
        if let Some(name) = staff {
            let settings = self.store.messaging_settings(tenant).await?;
            if let Some(member) = settings
                .staff
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
            {
                sms = Channel::parse(&member.channel) == Some(Channel::Sms);
            }
        }
        if !sms
            || crate::notify::tenant_sms_sender(&self.store, tenant)
                .await?
                .is_some()
        {
            return Ok(());
        }
        let configured = self
            .store
            .list_connectors(tenant)
            .await?
            .into_iter()
            .find(|c| c.spec.vendor == "twilio_sms")
            .and_then(|c| c.spec.secret_name);
        if let (Some(name), Ok(vault)) = (configured, self.vault()) {
            let secret = vault.reveal(tenant, &name).await?;
            let names_sender = crate::connectors::kit::Credentials::parse(&secret)
                .map(|c| c.text("from").is_some() || c.text("messaging_service_sid").is_some())
                .unwrap_or(false);
            if names_sender {
                return Ok(());
            }
        }
        Err(InboundError::Invalid {
            field: "action",
            message: "an SMS needs a sender: the tenant has no phone number, and no twilio_sms \
                      connector names from or messaging_service_sid; add a number to the tenant \
                      or set one of those in the connector's secret"
                .into(),
        })
    }

    /// Deletes a rule; a `call` rule's campaign is cancelled with it (pending calls dropped).
    pub async fn delete_rule(&self, tenant: &TenantId, id: &str) -> Result<(), InboundError> {
        let rule = self
            .store
            .list_inbound_rules(tenant, None)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| InboundError::NotFound(format!("rule {id:?}")))?;
        self.store.delete_inbound_rule(tenant, id).await?;
        if let Ok(Action::Call {
            campaign_id: Some(campaign),
            ..
        }) = serde_json::from_str::<Action>(&rule.action)
        {
            let now = self.clock.now_ms();
            if let Err(e) = self
                .store
                .set_campaign_status(
                    tenant,
                    &campaign,
                    crate::store::CampaignStatus::Cancelled,
                    now,
                )
                .await
            {
                info!(tenant = %tenant, campaign = %campaign, error = %e, "rule's campaign left as it is");
            }
        }
        Ok(())
    }

    /// Puts a failed (or done) event back in the inbox and wakes the worker.
    pub async fn replay(
        &self,
        tenant: &TenantId,
        event_id: &str,
    ) -> Result<InboundEvent, InboundError> {
        let event = self
            .store
            .replay_inbound_event(tenant, event_id, self.clock.now_ms())
            .await?;
        info!(tenant = %tenant, event = event_id, "inbound event replayed");
        self.wake.notify_one();
        Ok(event)
    }
}

/// The path of a tenant's source.
pub fn hook_path(tenant: &str, source_id: &str) -> String {
    format!("/hooks/{tenant}/{source_id}")
}

fn random_base64(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

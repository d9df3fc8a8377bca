//! Inbound webhooks in the admin service: a tenant's sources (the URL to paste at the vendor,
//! and the generated secret shown once, at creation), rules, recent events with their
//! verification and processing state and what each rule did, and replay of an event. The wire
//! types live here too (they are this area's only).
//!
//! It must not verify deliveries or run rules ([`crate::inbound`] does); it authorizes, validates
//! request fields and maps rows to views. No view carries a secret except [`CreatedSourceView`].

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::inbound::{Action, Condition, InboundError, InboundService, SourceKind};
use crate::store::{InboundAction, InboundEvent, InboundRule, InboundSource};

use super::{AdminService, Principal, ServiceError};

const DEFAULT_EVENTS_LIMIT: u32 = 50;
const MAX_EVENTS_LIMIT: u32 = 500;

/// A new source.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSourceRequest {
    /// The source's id in its URL (`/hooks/{tenant}/{id}`): lowercase letters, digits, `-`, `_`.
    pub id: String,
    /// `calendly`, `calcom`, `shopify`, `hubspot`, `stripe`, `whatsapp`, `twilio` or `standard`.
    pub kind: String,
    /// The signing secret when the vendor issues it (Shopify, HubSpot: the app's client secret;
    /// Stripe: the endpoint's `whsec_…`; WhatsApp: the app secret). Omit it for Calendly, Cal.com
    /// and Standard Webhooks (one is generated) and for Twilio (the auth token signs).
    #[serde(default)]
    pub secret: Option<String>,
}

/// A source.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    pub kind: String,
    /// Where the vendor posts.
    pub url: String,
    /// Where to paste the URL and the secret at the vendor.
    pub setup: String,
    pub created_at: String,
}

/// A source just created: the only answer that carries its generated secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedSourceView {
    #[serde(flatten)]
    pub source: SourceView,
    /// The generated signing secret to paste at the vendor (shown once; absent when the vendor
    /// issued it or Twilio signs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// WhatsApp: the verify token to paste with the callback URL (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<String>,
}

/// A new rule: on (source, event type, filter) do action.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRuleRequest {
    pub name: String,
    /// The source id.
    pub source: String,
    /// The vendor's event type (`invitee.created`, `orders/create`, `contact.creation`,
    /// `message.received` for SMS), or `*` for any.
    pub event_type: String,
    /// Conditions that must all hold: `[{"path": "payload.status", "equals": "active"}]`
    /// (operators: `equals`, `not_equals`, `contains`, `one_of`, `exists`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub filter: Vec<serde_json::Value>,
    /// `{"type": "call", "agent_id", "phone", "variables", "hours", "days", "max_attempts"}`,
    /// `{"type": "enrol", "campaign_id", "phone", "variables"}`, `{"type": "cancel_calls",
    /// "phone"}`, `{"type": "do_not_call", "phone", "reason"}` or `{"type": "message",
    /// "channel", "to" | "staff", "text", "subject", "variables"}`; `phone`, `to`, `variables`
    /// values and `time_zone` are dotted paths into the event.
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
}

/// A rule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub source: String,
    pub event_type: String,
    #[schema(value_type = Vec<Object>)]
    pub filter: serde_json::Value,
    /// As given, with `campaign_id` filled for `call` rules (the campaign that carries them).
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
    pub created_at: String,
}

/// A stored (verified) event and where its processing is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboundEventView {
    pub id: String,
    pub source: String,
    pub vendor_event_id: String,
    pub event_type: String,
    /// The signature scheme that verified it (only verified deliveries are stored; refusals are
    /// logged and counted in `callbridge_inbound_deliveries_total`).
    pub verified_by: String,
    pub received_at: String,
    /// Deliveries of this event by the vendor (retries included).
    pub deliveries: u32,
    /// `pending`, `processing`, `done` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
}

/// What one rule did for an event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActionView {
    pub rule_id: String,
    pub action: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub created_at: String,
}

/// An event with its payload and actions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboundEventDetail {
    #[serde(flatten)]
    pub event: InboundEventView,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub actions: Vec<ActionView>,
}

/// Filters of the recent events.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this source's events.
    pub source: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

impl From<InboundEvent> for InboundEventView {
    fn from(e: InboundEvent) -> Self {
        Self {
            id: e.id,
            source: e.source_id,
            vendor_event_id: e.vendor_event_id,
            event_type: e.event_type,
            verified_by: e.verified_by,
            received_at: e.received_at.to_string(),
            deliveries: e.deliveries,
            status: e.status.as_str().to_owned(),
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_at.to_string(),
            last_error: e.last_error,
            processed_at: e.processed_at.map(|t| t.to_string()),
        }
    }
}

impl From<InboundAction> for ActionView {
    fn from(a: InboundAction) -> Self {
        Self {
            rule_id: a.rule_id,
            action: a.action,
            outcome: a.outcome,
            detail: a.detail,
            created_at: a.created_at.to_string(),
        }
    }
}

fn rule_view(rule: InboundRule) -> RuleView {
    RuleView {
        id: rule.id,
        name: rule.name,
        source: rule.source_id,
        event_type: rule.event_type,
        filter: serde_json::from_str(&rule.filter).unwrap_or(serde_json::Value::Null),
        action: serde_json::from_str(&rule.action).unwrap_or(serde_json::Value::Null),
        created_at: rule.created_at.to_string(),
    }
}

impl From<InboundError> for ServiceError {
    fn from(err: InboundError) -> Self {
        match err {
            InboundError::NotFound(what) => Self::NotFound(what),
            InboundError::Invalid { field, message } => Self::invalid(field, message),
            InboundError::Conflict(what) => Self::Conflict(what),
            InboundError::Unavailable(why) => Self::VaultUnavailable(why),
            InboundError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl AdminService {
    fn inbound(&self) -> Result<&InboundService, ServiceError> {
        self.inbound.as_ref().ok_or_else(|| {
            ServiceError::Unavailable("inbound webhooks need the server's public URL".into())
        })
    }

    fn source_view(&self, source: InboundSource) -> Result<SourceView, ServiceError> {
        let inbound = self.inbound()?;
        Ok(SourceView {
            url: inbound.source_url(&source.tenant_id, &source.id),
            setup: SourceKind::parse(&source.kind)
                .map(|k| k.spec().setup.to_owned())
                .unwrap_or_default(),
            id: source.id,
            kind: source.kind,
            created_at: source.created_at.to_string(),
        })
    }

    pub async fn create_source(
        &self,
        who: &Principal,
        tenant: &str,
        req: CreateSourceRequest,
    ) -> Result<CreatedSourceView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let created = self
            .inbound()?
            .create_source(&id, &req.id, &req.kind, req.secret.map(SecretString::from))
            .await?;
        Ok(CreatedSourceView {
            source: self.source_view(created.source)?,
            secret: created.secret.map(|s| s.expose_secret().to_owned()),
            verify_token: created.verify_token.map(|s| s.expose_secret().to_owned()),
        })
    }

    pub async fn list_sources(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<SourceView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        self.store()
            .list_inbound_sources(&id)
            .await?
            .into_iter()
            .map(|s| self.source_view(s))
            .collect()
    }

    pub async fn delete_source(
        &self,
        who: &Principal,
        tenant: &str,
        source: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.inbound()?.delete_source(&id, source).await?)
    }

    pub async fn create_rule(
        &self,
        who: &Principal,
        tenant: &str,
        req: CreateRuleRequest,
    ) -> Result<RuleView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let filter: Vec<Condition> = req
            .filter
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| ServiceError::invalid("filter", e.to_string()))?;
        let action: Action = serde_json::from_value(req.action)
            .map_err(|e| ServiceError::invalid("action", e.to_string()))?;
        let rule = self
            .inbound()?
            .create_rule(&id, &req.name, &req.source, &req.event_type, filter, action)
            .await?;
        Ok(rule_view(rule))
    }

    pub async fn list_rules(
        &self,
        who: &Principal,
        tenant: &str,
    ) -> Result<Vec<RuleView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self
            .store()
            .list_inbound_rules(&id, None)
            .await?
            .into_iter()
            .map(rule_view)
            .collect())
    }

    pub async fn delete_rule(
        &self,
        who: &Principal,
        tenant: &str,
        rule: &str,
    ) -> Result<(), ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.inbound()?.delete_rule(&id, rule).await?)
    }

    pub async fn list_inbound_events(
        &self,
        who: &Principal,
        tenant: &str,
        query: EventsQuery,
    ) -> Result<Vec<InboundEventView>, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let limit = query
            .limit
            .unwrap_or(DEFAULT_EVENTS_LIMIT)
            .clamp(1, MAX_EVENTS_LIMIT);
        Ok(self
            .store()
            .list_inbound_events(&id, query.source.as_deref(), limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn inbound_event(
        &self,
        who: &Principal,
        tenant: &str,
        event: &str,
    ) -> Result<InboundEventDetail, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        let row = self.store().inbound_event(&id, event).await?;
        let actions = self.store().inbound_actions(&id, event).await?;
        Ok(InboundEventDetail {
            payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            event: row.into(),
            actions: actions.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn replay_inbound_event(
        &self,
        who: &Principal,
        tenant: &str,
        event: &str,
    ) -> Result<InboundEventView, ServiceError> {
        let id = self.tenant_scope(who, tenant).await?;
        Ok(self.inbound()?.replay(&id, event).await?.into())
    }
}

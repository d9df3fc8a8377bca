//! HubSpot CRM as a [`Crm`]: contact search, create/update, and the call logged as a call
//! engagement associated with the contact.
//!
//! Built from `vendor-specs/hubspot/crm-contacts-v3.json`, `crm-calls-v3.json` and
//! `crm-meetings-v3.json` (server `https://api.hubapi.com`). A call's properties (`hs_call_duration`
//! in milliseconds, `hs_call_status`, `hs_call_direction`, `hs_call_disposition` as the GUID of one
//! of HubSpot's default call outcomes) follow HubSpot's calls guide
//! (developers.hubspot.com/docs/guides/api/crm/engagements/calls); the spec file leaves properties
//! open. Auth: a private-app or OAuth access token as
//! `Authorization: Bearer …`. HubSpot documents no idempotency header for these operations, so:
//! an upsert with an email goes through `batch/upsert` keyed by email (idempotent, replayable);
//! one without an email searches by phone and patches or creates; creates are never replayed.
//! The call→contact (194) and meeting→contact (200) association type ids (HubSpot-defined) come
//! from HubSpot's associations documentation, not from these spec files (UNVERIFIED there), so
//! they are configurable. Meetings, like calls, are created without replay: the tool-call ledger
//! is what keeps a repeated booking from creating a second one. A meeting is kept in step with
//! its booking by a `PATCH` of fixed property values (new times, or outcome `CANCELED`), which
//! may be replayed. Deals (`update_deal`, `crm-deals-v3.json` under object type `0-3`, stages from
//! `crm-pipelines-v3.json`) are the contact's deals found by a search on the `associations.contact`
//! pseudo-property, moved with a `PATCH` of fixed values. This module must not keep contacts in
//! memory.

use chrono::SecondsFormat;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::deals::{DealChoice, match_stage, pick_deal};
use super::{
    CallNote, CallOutcome, ConnectorError, Contact, ContactInput, ContactLookup, Crm, CrmMeeting, Deal,
    DealUpdate, MeetingChange,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "hubspot";
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com/";
/// HubSpot-defined association type "call to contact".
pub const CALL_TO_CONTACT_ASSOCIATION: u32 = 194;
/// HubSpot-defined association type "meeting to contact".
pub const MEETING_TO_CONTACT_ASSOCIATION: u32 = 200;
const CONTACT_PROPERTIES: [&str; 6] = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "company",
];
/// HubSpot's object type id for deals, as the held spec names its paths.
const DEALS: &str = "0-3";
const DEAL_PROPERTIES: [&str; 5] = ["dealname", "dealstage", "amount", "closedate", "pipeline"];

#[derive(Deserialize)]
struct Stage {
    id: String,
    label: String,
}

#[derive(Deserialize)]
struct Stages {
    #[serde(default)]
    results: Vec<Stage>,
}

pub struct HubspotConfig {
    pub base_url: Url,
    /// Private-app token or OAuth access token.
    pub access_token: SecretString,
    pub call_to_contact_association: u32,
    pub meeting_to_contact_association: u32,
}

impl HubspotConfig {
    pub fn new(base_url: Url, access_token: SecretString) -> Self {
        Self {
            base_url,
            access_token,
            call_to_contact_association: CALL_TO_CONTACT_ASSOCIATION,
            meeting_to_contact_association: MEETING_TO_CONTACT_ASSOCIATION,
        }
    }
}

impl std::fmt::Debug for HubspotConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubspotConfig")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

pub struct Hubspot {
    client: VendorClient,
    config: HubspotConfig,
}

/// `SimplePublicObject` / `SimplePublicUpsertObject`, the fields we use.
#[derive(Deserialize)]
struct PublicObject {
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

impl PublicObject {
    fn property(&self, name: &str) -> Option<String> {
        self.properties
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    }

    fn into_contact(self) -> Contact {
        Contact {
            first_name: self.property("firstname"),
            last_name: self.property("lastname"),
            email: self.property("email"),
            phone: self
                .property("phone")
                .or_else(|| self.property("mobilephone")),
            company: self.property("company"),
            id: self.id,
        }
    }
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<PublicObject>,
}

#[derive(Deserialize)]
struct BatchResponse {
    status: String,
    #[serde(default)]
    results: Vec<PublicObject>,
}

fn properties_of(contact: &ContactInput) -> Map<String, Value> {
    let mut properties = Map::new();
    for (name, value) in [
        ("firstname", &contact.first_name),
        ("lastname", &contact.last_name),
        ("email", &contact.email),
        ("phone", &contact.phone),
    ] {
        if let Some(value) = value {
            properties.insert(name.to_owned(), json!(value));
        }
    }
    properties
}

impl Hubspot {
    pub fn new(policy: HttpPolicy, config: HubspotConfig) -> Self {
        let auth = Auth::Bearer(config.access_token.clone());
        Self::with_auth(policy, config, auth)
    }

    /// A client sending `auth` (an OAuth connection's token source) instead of the configured
    /// private-app token.
    pub fn with_auth(policy: HttpPolicy, config: HubspotConfig, auth: Auth) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url.clone(), auth),
            config,
        }
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        filter_groups: Value,
    ) -> Result<Option<Contact>, ConnectorError> {
        // operationId: post-/crm/v3/objects/contacts/search_doSearch
        let body = json!({
            "filterGroups": filter_groups,
            "properties": CONTACT_PROPERTIES,
            "sorts": [],
            "limit": 1,
            "after": "0",
        });
        // A search changes nothing: safe to replay although it is a POST.
        let found: SearchResponse = self
            .client
            .post(&["crm", "v3", "objects", "contacts", "search"])
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "contact")
            .await?;
        Ok(found
            .results
            .into_iter()
            .next()
            .map(PublicObject::into_contact))
    }
}

/// HubSpot's datetime property form: RFC 3339 UTC with milliseconds.
/// A call outcome as HubSpot's `hs_call_status` and, where one of HubSpot's default call outcomes
/// fits, its `hs_call_disposition` GUID (the defaults every account has).
fn call_status(outcome: CallOutcome) -> (&'static str, Option<&'static str>) {
    match outcome {
        CallOutcome::Connected => ("COMPLETED", Some("f240bbac-87c9-4f6e-bf70-924b57d47db7")),
        CallOutcome::NoAnswer => ("NO_ANSWER", Some("73a0d17f-1163-4015-bdd5-ec830791da20")),
        CallOutcome::Busy => ("BUSY", Some("9d9162e7-6cf3-4944-bf63-4dff82258764")),
        CallOutcome::Failed => ("FAILED", None),
    }
}

fn hubspot_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Hubspot {
    /// Creates an engagement (`calls`, `meetings`, …) associated with one contact in the same
    /// request (`SimplePublicObjectInputForCreate.associations`); returns its id. Never replayed:
    /// HubSpot has no idempotency key for creates, the ledger keeps them single.
    async fn create_for_contact(
        &self,
        ctx: &RequestContext,
        object_type: &str,
        properties: Value,
        contact_id: &str,
        association_type_id: u32,
    ) -> Result<String, ConnectorError> {
        let body = json!({
            "properties": properties,
            "associations": [{
                "to": { "id": contact_id },
                "types": [{
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": association_type_id,
                }],
            }],
        });
        let created: PublicObject = self
            .client
            .post(&["crm", "v3", "objects", object_type])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "contact")
            .await?;
        Ok(created.id)
    }
}

#[async_trait::async_trait]
impl Crm for Hubspot {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        let filter_groups = match lookup {
            ContactLookup::Email(email) => {
                json!([{ "filters": [{ "propertyName": "email", "operator": "EQ", "value": email }] }])
            }
            // Filter groups are ORed: the number may be stored as phone or as mobile phone.
            ContactLookup::Phone(phone) => json!([
                { "filters": [{ "propertyName": "phone", "operator": "EQ", "value": phone }] },
                { "filters": [{ "propertyName": "mobilephone", "operator": "EQ", "value": phone }] },
            ]),
        };
        self.search(ctx, filter_groups).await
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let properties = properties_of(contact);
        if let Some(email) = &contact.email {
            // operationId: post-/crm/v3/objects/contacts/batch/upsert_upsert
            let body = json!({ "inputs": [{ "id": email, "idProperty": "email", "properties": properties }] });
            // Keyed by email on HubSpot's side: a replay updates the same contact.
            let response = self
                .client
                .post(&["crm", "v3", "objects", "contacts", "batch", "upsert"])
                .json(body)
                .replay(Replay::Idempotent)
                .send(ctx, "contact")
                .await?;
            if response.status.as_u16() == 207 {
                return Err(ConnectorError::Rejected(
                    "HubSpot reported errors for the contact".into(),
                ));
            }
            let batch: BatchResponse = response.json()?;
            if batch.status != "COMPLETE" {
                return Err(ConnectorError::UnexpectedResponse(format!(
                    "batch status {:?}",
                    batch.status
                )));
            }
            return batch
                .results
                .into_iter()
                .next()
                .map(PublicObject::into_contact)
                .ok_or_else(|| {
                    ConnectorError::UnexpectedResponse("upsert returned no contact".into())
                });
        }
        let Some(phone) = &contact.phone else {
            return Err(ConnectorError::InvalidInput(
                "a contact needs an email or a phone number".into(),
            ));
        };
        if let Some(existing) = self
            .find_contact(ctx, &ContactLookup::Phone(phone.clone()))
            .await?
        {
            // operationId: patch-/crm/v3/objects/contacts/{contactId}_update
            let updated: PublicObject = self
                .client
                .patch(&["crm", "v3", "objects", "contacts", &existing.id])
                .json(json!({ "properties": properties }))
                .replay(Replay::Idempotent)
                .send_json(ctx, "contact")
                .await?;
            return Ok(updated.into_contact());
        }
        // operationId: post-/crm/v3/objects/contacts_create
        let created: PublicObject = self
            .client
            .post(&["crm", "v3", "objects", "contacts"])
            .json(json!({ "properties": properties, "associations": [] }))
            .replay(Replay::Never)
            .send_json(ctx, "contact")
            .await?;
        Ok(created.into_contact())
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        // operationId: post-/crm/v3/objects/calls_create
        let mut properties = json!({
            "hs_timestamp": hubspot_time(&note.at),
            "hs_call_title": "Phone call",
            "hs_call_body": note.body,
        });
        if let Value::Object(fields) = &mut properties {
            if let Some(secs) = note.duration_secs {
                // Milliseconds, as HubSpot's number properties take them: a string.
                fields.insert(
                    "hs_call_duration".into(),
                    json!((u64::from(secs) * 1000).to_string()),
                );
            }
            if let Some(outcome) = note.outcome {
                let (status, disposition) = call_status(outcome);
                fields.insert("hs_call_status".into(), json!(status));
                if let Some(disposition) = disposition {
                    fields.insert("hs_call_disposition".into(), json!(disposition));
                }
            }
            if let Some(inbound) = note.inbound {
                let direction = if inbound { "INBOUND" } else { "OUTBOUND" };
                fields.insert("hs_call_direction".into(), json!(direction));
            }
        }
        self.create_for_contact(
            ctx,
            "calls",
            properties,
            contact_id,
            self.config.call_to_contact_association,
        )
        .await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        // operationId: post-/crm/v3/objects/meetings_create
        let properties = json!({
            // HubSpot places a meeting on the timeline at hs_timestamp: its start.
            "hs_timestamp": hubspot_time(&meeting.start),
            "hs_meeting_title": meeting.title,
            "hs_meeting_start_time": hubspot_time(&meeting.start),
            "hs_meeting_end_time": hubspot_time(&meeting.end),
            "hs_meeting_outcome": "SCHEDULED",
            "hs_meeting_body": meeting.body,
        });
        self.create_for_contact(
            ctx,
            "meetings",
            properties,
            contact_id,
            self.config.meeting_to_contact_association,
        )
        .await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        // operationId: patch-/crm/v3/objects/meetings/{meetingId}_update
        let properties = match change {
            MeetingChange::Moved { start, end } => json!({
                "hs_timestamp": hubspot_time(start),
                "hs_meeting_start_time": hubspot_time(start),
                "hs_meeting_end_time": hubspot_time(end),
            }),
            // HubSpot's default outcome values (scheduler-meetings-v3.json, hs_meeting_outcome):
            // SCHEDULED, COMPLETED, RESCHEDULED, NO_SHOW, CANCELED (one L).
            MeetingChange::Cancelled => json!({ "hs_meeting_outcome": "CANCELED" }),
        };
        let body = json!({ "properties": properties });
        // A partial update that sets fixed values: replaying it changes nothing more.
        self.client
            .patch(&["crm", "v3", "objects", "meetings", meeting_id])
            .json(body)
            .replay(Replay::Idempotent)
            .send(ctx, "meeting")
            .await
            .map(|_| ())
    }

    fn serves_deals(&self) -> bool {
        true
    }

    async fn update_deal(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        deal_id: Option<&str>,
        update: &DealUpdate,
    ) -> Result<Deal, ConnectorError> {
        // operationId: post-/crm/v3/objects/0-3/search_doSearch — the contact's deals: the one
        // named, else the open ones. A read: replayable.
        let mut filters = vec![json!({
            "propertyName": "associations.contact", "operator": "EQ", "value": contact_id,
        })];
        filters.push(match deal_id {
            Some(id) => json!({ "propertyName": "hs_object_id", "operator": "EQ", "value": id }),
            None => json!({ "propertyName": "hs_is_closed", "operator": "EQ", "value": "false" }),
        });
        let body = json!({
            "filterGroups": [{ "filters": filters }],
            "properties": DEAL_PROPERTIES,
            "sorts": [],
            "limit": 10,
            "after": "0",
        });
        let found: SearchResponse = self
            .client
            .post(&["crm", "v3", "objects", DEALS, "search"])
            .json(body)
            .replay(Replay::Idempotent)
            .send_json(ctx, "deal")
            .await?;
        let deal = pick_deal(&found.results, deal_id, |d| DealChoice {
            id: d.id.clone(),
            name: d.property("dealname").unwrap_or_default(),
        })?;
        let mut properties = Map::new();
        let mut stage_label = deal.property("dealstage");
        if let Some(wanted) = &update.stage {
            let pipeline = deal.property("pipeline").unwrap_or_else(|| "default".into());
            // operationId: get-/crm/v3/pipelines/{objectType}/{pipelineId}/stages_getAll
            let stages: Stages = self
                .client
                .get(&["crm", "v3", "pipelines", "deals", &pipeline, "stages"])
                .send_json(ctx, "deal stage")
                .await?;
            let stages: Vec<(String, String)> = stages
                .results
                .into_iter()
                .map(|s| (s.id, s.label))
                .collect();
            let (id, label) = match_stage(&stages, wanted)?;
            properties.insert("dealstage".into(), json!(id));
            stage_label = Some(label.clone());
        }
        if let Some(amount) = &update.amount {
            properties.insert("amount".into(), json!(amount));
        }
        if let Some(date) = update.close_date {
            properties.insert(
                "closedate".into(),
                json!(format!("{}T00:00:00.000Z", date.format("%Y-%m-%d"))),
            );
        }
        if let Some(next_step) = &update.next_step {
            properties.insert("hs_next_step".into(), json!(next_step));
        }
        // operationId: patch-/crm/v3/objects/0-3/{dealId}_update — fixed values, replayable.
        self.client
            .patch(&["crm", "v3", "objects", DEALS, &deal.id])
            .json(json!({ "properties": properties }))
            .replay(Replay::Idempotent)
            .send(ctx, "deal")
            .await?;
        Ok(Deal::after(
            update,
            &deal.id,
            deal.property("dealname").unwrap_or_default(),
            stage_label,
            deal.property("amount"),
            deal.property("closedate").as_deref(),
        ))
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: get-/crm/v3/objects/contacts_getPage
        self.client
            .get(&["crm", "v3", "objects", "contacts"])
            .query("limit", "1")
            .query("archived", "false")
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "HubSpot",
    spec: "hubspot/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Crm],
    secret: SecretShape {
        bare_token: true,
        fields: &[SecretField {
            name: "access_token",
            aliases: &["token"],
            required: true,
            doc: "private app access token (or the bare token as the secret)",
        }],
        note: "",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://app.hubspot.com/oauth/authorize",
        token_url: "https://api.hubapi.com/oauth/v1/token",
        // HubSpot revokes a refresh token with DELETE /oauth/v1/refresh-tokens/{token}, not
        // RFC 7009: disconnect deletes the tokens; the business removes the app in HubSpot.
        revoke_url: None,
        scopes: &[(
            Capability::Crm,
            &[
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.objects.deals.read",
                "crm.objects.deals.write",
                "oauth",
            ],
        )],
        pkce: true,
        extra_authorize_params: &[],
        api_base_fields: &[],
        client_secret_in_body: true,
        account_fields: &["hub_id", "user"],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }),
    // X-HubSpot-Signature-v3: base64 HMAC-SHA256 of method, URI, body and
    // X-HubSpot-Request-Timestamp (ms, at most 5 minutes old), keyed by the app's client secret.
    // Bodies are arrays of events, each with its eventId.
    webhooks: Some(super::kit::WebhookSpec {
        header: "X-HubSpot-Signature-v3",
        scheme: super::kit::WebhookScheme::HubSpotV3,
        tolerance_secs: 300,
        event_id: &[super::kit::WebhookField::Json("eventId")],
        event_type: super::kit::WebhookField::Json("subscriptionType"),
        batched: true,
        setup: "the app's Webhooks settings: this URL as target URL; the secret is the app's \
                client secret (give it when creating the source)",
    }),
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    if let Some(grant) = &ctx.oauth {
        // A connected HubSpot account: the OAuth access token, refreshed by the gateway.
        let config = HubspotConfig::new(ctx.base_url()?, SecretString::from(String::new()));
        return Ok(Built {
            crm: Some(std::sync::Arc::new(Hubspot::with_auth(
                ctx.policy,
                config,
                Auth::OAuth(grant.tokens.clone()),
            ))),
            ..Built::default()
        });
    }
    let config = HubspotConfig::new(
        ctx.base_url()?,
        ctx.credentials.secret(&["access_token", "token"])?,
    );
    Ok(Built {
        crm: Some(std::sync::Arc::new(Hubspot::new(ctx.policy, config))),
        ..Built::default()
    })
}

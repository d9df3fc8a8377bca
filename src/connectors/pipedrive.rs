//! Pipedrive as a [`Crm`]: persons (search, create, update), the call as a done `call` activity,
//! bookings recorded as meeting activities, and the person's open deal moved (`update_deal`).
//!
//! Built from `vendor-specs/pipedrive/openapi-v2.yaml` (persons, activities, deals, stages; server
//! `/api/v2`) and `openapi.yaml` (users/me; server `/v1`, reached as `/api/v1` on the company
//! domain). The
//! base URL is the company's `api_domain` (from the OAuth token response, or set by the tenant).
//! Auth: an OAuth access token as `Authorization: Bearer …`, or a personal API token in Pipedrive's
//! `x-api-token` header. Pipedrive has no idempotency header: creates are never replayed and the
//! tool-call ledger keeps them single; updates set fixed values and may be replayed. A phone lookup
//! tries the E.164 form, then the national form (Pipedrive stores numbers as typed). This module
//! must not keep persons in memory.

use reqwest::Url;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::deals::{DealChoice, amount_number, match_stage, pick_deal};
use super::{
    CallNote, ConnectorError, Contact, ContactInput, ContactLookup, Crm, CrmMeeting, Deal,
    DealUpdate, MeetingChange,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "pipedrive";
/// The `api_domain` shape; tenants on OAuth get their own company domain.
pub const DEFAULT_BASE_URL: &str = "https://api.pipedrive.com/";

pub struct PipedriveConfig {
    /// The company's `api_domain` (`https://acme.pipedrive.com/`).
    pub base_url: Url,
    pub auth: Auth,
    /// Country calling code used to derive a number's national form (`1`, `44`).
    pub country_code: String,
}

impl std::fmt::Debug for PipedriveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedriveConfig")
            .field("base_url", &self.base_url.as_str())
            .field("country_code", &self.country_code)
            .finish_non_exhaustive()
    }
}

pub struct Pipedrive {
    client: VendorClient,
    country_code: String,
}

/// `{"success": true, "data": …}`, Pipedrive's envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct SearchData {
    #[serde(default)]
    items: Vec<SearchItem>,
}

#[derive(Deserialize)]
struct SearchItem {
    item: SearchPerson,
}

#[derive(Deserialize)]
struct SearchPerson {
    id: u64,
}

#[derive(Deserialize)]
struct Labelled {
    value: String,
    #[serde(default)]
    primary: bool,
}

#[derive(Deserialize)]
struct Person {
    id: u64,
    first_name: Option<String>,
    last_name: Option<String>,
    #[serde(default)]
    emails: Vec<Labelled>,
    #[serde(default)]
    phones: Vec<Labelled>,
}

fn primary(values: Vec<Labelled>) -> Option<String> {
    let index = values.iter().position(|v| v.primary).unwrap_or(0);
    values
        .into_iter()
        .nth(index)
        .map(|v| v.value)
        .filter(|v| !v.is_empty())
}

impl Person {
    fn into_contact(self) -> Contact {
        Contact {
            company: None,
            id: self.id.to_string(),
            first_name: self.first_name.filter(|v| !v.is_empty()),
            last_name: self.last_name.filter(|v| !v.is_empty()),
            email: primary(self.emails),
            phone: primary(self.phones),
        }
    }
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

/// A v2 deal, the fields `update_deal` uses.
#[derive(Deserialize)]
struct PipedriveDeal {
    id: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    stage_id: Option<u64>,
    #[serde(default)]
    pipeline_id: Option<u64>,
    #[serde(default)]
    value: Option<serde_json::Number>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    expected_close_date: Option<String>,
}

/// A v2 pipeline stage.
#[derive(Deserialize)]
struct PipedriveStage {
    id: u64,
    name: String,
}

/// The forms a caller's number may be stored in: E.164 first, then the national number (with the
/// trunk `0` outside the North American plan): the first two of [`super::phone::stored_forms`]
/// (Pipedrive is searched for these two only).
pub fn phone_forms(e164: &str, country_code: &str) -> Vec<String> {
    super::phone::stored_forms(e164, country_code)
        .into_iter()
        .take(2)
        .collect()
}

fn person_body(contact: &ContactInput, for_create: bool) -> Value {
    let mut body = Map::new();
    let name = [&contact.first_name, &contact.last_name]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        body.insert("name".into(), json!(name));
    } else if for_create {
        // `name` is required on create: fall back to what identifies the caller.
        let fallback = contact.email.clone().or_else(|| contact.phone.clone());
        body.insert("name".into(), json!(fallback));
    }
    if let Some(email) = &contact.email {
        body.insert(
            "emails".into(),
            json!([{ "value": email, "primary": true, "label": "work" }]),
        );
    }
    if let Some(phone) = &contact.phone {
        body.insert(
            "phones".into(),
            json!([{ "value": phone, "primary": true, "label": "mobile" }]),
        );
    }
    Value::Object(body)
}

impl Pipedrive {
    pub fn new(policy: HttpPolicy, config: PipedriveConfig) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url, config.auth),
            country_code: config.country_code,
        }
    }

    /// `GET /api/v2/persons/search` (operationId searchPersons), exact match on one field.
    async fn search(
        &self,
        ctx: &RequestContext,
        field: &str,
        term: &str,
    ) -> Result<Option<u64>, ConnectorError> {
        let found: Envelope<SearchData> = self
            .client
            .get(&["api", "v2", "persons", "search"])
            .query("term", term)
            .query("fields", field)
            .query("exact_match", "true")
            .query("limit", "1")
            .send_json(ctx, "contact")
            .await?;
        Ok(found
            .data
            .and_then(|d| d.items.into_iter().next())
            .map(|i| i.item.id))
    }

    /// `GET /api/v2/persons/{id}` (getPerson).
    async fn person(&self, ctx: &RequestContext, id: u64) -> Result<Contact, ConnectorError> {
        let person: Envelope<Person> = self
            .client
            .get(&["api", "v2", "persons", &id.to_string()])
            .send_json(ctx, "contact")
            .await?;
        person
            .data
            .map(Person::into_contact)
            .ok_or_else(|| ConnectorError::UnexpectedResponse("person without data".into()))
    }

    async fn find_id(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<u64>, ConnectorError> {
        match lookup {
            ContactLookup::Email(email) => self.search(ctx, "email", email).await,
            ContactLookup::Phone(phone) => {
                for form in phone_forms(phone, &self.country_code) {
                    if let Some(id) = self.search(ctx, "phone", &form).await? {
                        return Ok(Some(id));
                    }
                }
                Ok(None)
            }
        }
    }

    /// `PATCH /api/v2/activities/{id}` (updateActivity) with fixed values: replayable.
    async fn patch_activity(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: Value,
    ) -> Result<(), ConnectorError> {
        self.client
            .patch(&["api", "v2", "activities", id])
            .json(body)
            .replay(Replay::Idempotent)
            .send(ctx, "meeting")
            .await
            .map(|_| ())
    }
}

fn parse_id(id: &str) -> Result<u64, ConnectorError> {
    id.parse()
        .map_err(|_| ConnectorError::InvalidInput("a Pipedrive id is a number".into()))
}

/// Activity timing: `due_date` (YYYY-MM-DD), `due_time` (HH:MM, UTC) and `duration` (HH:MM).
fn activity_timing(
    start: &chrono::DateTime<chrono::Utc>,
    end: &chrono::DateTime<chrono::Utc>,
) -> Value {
    let minutes = (*end - *start).num_minutes().max(0);
    json!({
        "due_date": start.format("%Y-%m-%d").to_string(),
        "due_time": start.format("%H:%M").to_string(),
        "duration": format!("{:02}:{:02}", minutes / 60, minutes % 60),
    })
}

impl Pipedrive {
    /// Creates an activity (operationId: addActivity); returns its id. Never replayed: Pipedrive
    /// has no idempotency key, the tool-call ledger keeps creates single.
    async fn create_activity(
        &self,
        ctx: &RequestContext,
        body: Value,
        what: &'static str,
    ) -> Result<String, ConnectorError> {
        let created: Envelope<Created> = self
            .client
            .post(&["api", "v2", "activities"])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, what)
            .await?;
        created
            .data
            .map(|c| c.id.to_string())
            .ok_or_else(|| ConnectorError::UnexpectedResponse("activity without id".into()))
    }
}

#[async_trait::async_trait]
impl Crm for Pipedrive {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        match self.find_id(ctx, lookup).await? {
            Some(id) => self.person(ctx, id).await.map(Some),
            None => Ok(None),
        }
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let lookup = contact.lookup()?;
        if let Some(id) = self.find_id(ctx, &lookup).await? {
            // operationId: updatePerson — fixed values, replayable.
            let updated: Envelope<Person> = self
                .client
                .patch(&["api", "v2", "persons", &id.to_string()])
                .json(person_body(contact, false))
                .replay(Replay::Idempotent)
                .send_json(ctx, "contact")
                .await?;
            return updated
                .data
                .map(Person::into_contact)
                .ok_or_else(|| ConnectorError::UnexpectedResponse("person without data".into()));
        }
        // operationId: addPerson — never replayed.
        let created: Envelope<Person> = self
            .client
            .post(&["api", "v2", "persons"])
            .json(person_body(contact, true))
            .replay(Replay::Never)
            .send_json(ctx, "contact")
            .await?;
        created
            .data
            .map(Person::into_contact)
            .ok_or_else(|| ConnectorError::UnexpectedResponse("person without data".into()))
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        // operationId: addActivity — a done `call` activity on the person, never replayed.
        let mut body = json!({
            "subject": "Phone call",
            "type": "call",
            "done": true,
            "due_date": note.at.format("%Y-%m-%d").to_string(),
            "due_time": note.at.format("%H:%M").to_string(),
            "note": note.body,
            "participants": [{ "person_id": parse_id(contact_id)?, "primary": true }],
        });
        if let (Value::Object(fields), Some(duration)) = (&mut body, note.duration_hh_mm()) {
            fields.insert("duration".into(), json!(duration));
        }
        self.create_activity(ctx, body, "call note").await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        // operationId: addActivity — never replayed.
        let mut body = activity_timing(&meeting.start, &meeting.end);
        if let Value::Object(fields) = &mut body {
            fields.insert("subject".into(), json!(meeting.title));
            fields.insert("type".into(), json!("meeting"));
            fields.insert("note".into(), json!(meeting.body));
            fields.insert("done".into(), json!(false));
            fields.insert(
                "participants".into(),
                json!([{ "person_id": parse_id(contact_id)?, "primary": true }]),
            );
        }
        self.create_activity(ctx, body, "meeting").await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        parse_id(meeting_id)?;
        let body = match change {
            MeetingChange::Moved { start, end } => activity_timing(start, end),
            // Pipedrive has no cancelled state: the activity is marked done and free, with a
            // description saying so, keeping the history (deleting would lose it).
            MeetingChange::Cancelled => json!({
                "done": true,
                "busy": false,
                "public_description": "Cancelled by the caller",
            }),
        };
        self.patch_activity(ctx, meeting_id, body).await
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
        if update.next_step.is_some() {
            // A v2 deal has no next-step field: said before anything is read or written.
            return Err(ConnectorError::InvalidInput(
                "Pipedrive deals keep no next step; put it in the call note instead".into(),
            ));
        }
        let person = parse_id(contact_id)?.to_string();
        // operationId: getDeals — the person's deals: the named one in any status (another
        // person's deal is not found), else the open ones. A read.
        let mut list = self
            .client
            .get(&["api", "v2", "deals"])
            .query("person_id", &person)
            .query("limit", "10");
        list = match deal_id {
            // The named deal only (a person may have more deals than one page holds).
            Some(id) => list.query("ids", &parse_id(id)?.to_string()),
            None => list.query("status", "open"),
        };
        let deals: Envelope<Vec<PipedriveDeal>> = list.send_json(ctx, "deal").await?;
        let deals = deals.data.unwrap_or_default();
        let deal = pick_deal(&deals, deal_id, |d| DealChoice {
            id: d.id.to_string(),
            name: d.title.clone().unwrap_or_default(),
        })?;
        let mut fields = Map::new();
        let mut stage = deal.stage_id.map(|id| id.to_string());
        if let Some(wanted) = &update.stage {
            // operationId: getStages — the stages of the deal's pipeline.
            let mut request = self.client.get(&["api", "v2", "stages"]);
            if let Some(pipeline) = deal.pipeline_id {
                request = request.query("pipeline_id", &pipeline.to_string());
            }
            let stages: Envelope<Vec<PipedriveStage>> = request.send_json(ctx, "deal stage").await?;
            let stages: Vec<(String, String)> = stages
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.id.to_string(), s.name))
                .collect();
            let (id, name) = match_stage(&stages, wanted)?;
            fields.insert("stage_id".into(), json!(parse_id(id)?));
            stage = Some(name.clone());
        }
        if let Some(amount) = &update.amount {
            // The value in the deal's own currency, named so it cannot be read as another.
            fields.insert("value".into(), Value::Number(amount_number(amount)?));
            if let Some(currency) = &deal.currency {
                fields.insert("currency".into(), json!(currency));
            }
        }
        if let Some(date) = update.close_date {
            fields.insert(
                "expected_close_date".into(),
                json!(date.format("%Y-%m-%d").to_string()),
            );
        }
        // operationId: updateDeal — fixed values, replayable.
        self.client
            .patch(&["api", "v2", "deals", &deal.id.to_string()])
            .json(Value::Object(fields))
            .replay(Replay::Idempotent)
            .send(ctx, "deal")
            .await?;
        Ok(Deal::after(
            update,
            &deal.id.to_string(),
            deal.title.clone().unwrap_or_default(),
            stage,
            deal.value.as_ref().map(ToString::to_string),
            deal.expected_close_date.as_deref(),
        ))
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // v1 operationId: getCurrentUser — a read.
        self.client
            .get(&["api", "v1", "users", "me"])
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Pipedrive",
    spec: "pipedrive/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Crm],
    secret: SecretShape {
        bare_token: true,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: false,
                doc: "OAuth access token (sent as Bearer)",
            },
            SecretField {
                name: "api_token",
                aliases: &[],
                required: false,
                doc: "personal API token (sent as x-api-token); one of the two is needed",
            },
            SecretField {
                name: "country_code",
                aliases: &[],
                required: false,
                doc: "calling code for national phone forms, default \"1\"",
            },
        ],
        note: "base_url = the company's api_domain",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://oauth.pipedrive.com/oauth/authorize",
        token_url: "https://oauth.pipedrive.com/oauth/token",
        // The held spec names no revoke endpoint.
        revoke_url: None,
        scopes: &[(
            Capability::Crm,
            &["base", "contacts:full", "activities:full", "deals:full"],
        )],
        pkce: false,
        extra_authorize_params: &[],
        api_base_fields: &["api_domain"],
        // Pipedrive takes the app's credentials as HTTP basic auth on the token endpoint.
        client_secret_in_body: false,
        account_fields: &[],
        accounts_server_param: None,
        ok_envelope: false,
        accounts_server_hosts: &[],
    }),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let auth = match (&ctx.oauth, ctx.credentials.text("api_token")) {
        // A connected Pipedrive account: the gateway's token source (refreshed once on a 401);
        // the base URL is the company's api_domain from the connection.
        (Some(grant), _) => Auth::OAuth(grant.tokens.clone()),
        (None, Some(token)) => Auth::Header {
            name: HeaderName::from_static("x-api-token"),
            value: SecretString::from(token.to_owned()),
        },
        (None, None) => Auth::Bearer(ctx.credentials.secret(&["access_token", "token"])?),
    };
    let config = PipedriveConfig {
        base_url: ctx.base_url()?,
        auth,
        country_code: ctx
            .credentials
            .text("country_code")
            .unwrap_or("1")
            .trim_start_matches('+')
            .to_owned(),
    };
    Ok(Built {
        crm: Some(std::sync::Arc::new(Pipedrive::new(ctx.policy, config))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_forms() {
        assert_eq!(
            phone_forms("+14155550100", "1"),
            vec!["+14155550100".to_owned(), "4155550100".to_owned()]
        );
        assert_eq!(
            phone_forms("+442071838750", "44"),
            vec!["+442071838750".to_owned(), "02071838750".to_owned()]
        );
        assert_eq!(
            phone_forms("+33123456789", "44"),
            vec!["+33123456789".to_owned()]
        );
    }
}

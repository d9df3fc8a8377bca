//! Zoho CRM (API v8) as a [`Crm`]: Contacts and Leads searched by phone (every stored form) or
//! email, created or updated, the call logged as a Calls record on the person, and bookings as
//! Events.
//!
//! Built from `vendor-specs/zoho/v8.0-local/record.json` (search, create, update, upsert of
//! module records, the Calls module among them) and `users.json` (the current user, the health
//! check). A Calls record's fields (`Subject`, `Call_Type`, `Call_Start_Time`, `Call_Duration` as
//! `mm:ss`, `Call_Result`, `Who_Id`, or `What_Id` with `$se_module` for a lead) follow Zoho's
//! Calls module documentation (the held spec leaves module fields open); `Call_Result` is written
//! only where one of Zoho's default values fits (`No response`, `Busy`). Zoho has one API domain per data centre (`www.zohoapis.com`, `.eu`, `.in`, `.com.au`,
//! `.jp`, `.ca`, `.sa`, `.com.cn`, `.uk`): it is the `api_domain` of the tenant's OAuth token
//! response (the OAuth service sends the token requests to the accounts server the callback
//! names), else the secret's `api_domain` (a Zoho API host), else the connector's `base_url`.
//! Auth: `Authorization: Bearer` (Zoho accepts it beside `Zoho-oauthtoken`: Zoho Accounts,
//! "Using the Access token to make API requests"). A Lead's id is handed out as `lead:<id>` so a
//! call or event reaches the right module; a Contact's id is Zoho's. Creates of calls and events
//! are never replayed (the tool-call ledger keeps them single); a new contact is created through
//! `upsert` keyed by email (else phone), which Zoho itself keeps single, and updates set fixed
//! values. A cancelled booking's Event is kept and retitled "Cancelled by the caller". Deals
//! (`update_deal`) are the contact's related `Deals` (`related_records.json`), their stages the
//! `Stage` pick list of the Deals module (`fields.json`, whose `forecast_type` tells open from
//! closed). This module must not keep records in memory.

use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::phone::stored_forms;
use super::deals::{DealChoice, amount_number, match_stage, pick_deal};
use super::{
    CallNote, CallOutcome, ConnectorError, Contact, ContactInput, ContactLookup, Crm, CrmMeeting, Deal,
    DealUpdate, MeetingChange,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "zoho_crm";
/// The US data centre; other data centres come from the connection's `api_domain`.
pub const DEFAULT_BASE_URL: &str = "https://www.zohoapis.com/";
/// Hosts an `api_domain` given in a secret may have (one per data centre).
pub const API_HOSTS: &[&str] = &[
    "www.zohoapis.com",
    "www.zohoapis.eu",
    "www.zohoapis.in",
    "www.zohoapis.com.au",
    "www.zohoapis.jp",
    "www.zohoapis.ca",
    "www.zohoapis.sa",
    "www.zohoapis.com.cn",
    "www.zohoapis.uk",
];
const LEAD_PREFIX: &str = "lead:";

/// A Zoho module holding people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    Contacts,
    Leads,
}

impl Module {
    fn api_name(self) -> &'static str {
        match self {
            Self::Contacts => "Contacts",
            Self::Leads => "Leads",
        }
    }
}

/// The module and Zoho id behind a contact id this connector handed out.
fn person_ref(contact_id: &str) -> Result<(Module, &str), ConnectorError> {
    let (module, id) = match contact_id.strip_prefix(LEAD_PREFIX) {
        Some(id) => (Module::Leads, id),
        None => (Module::Contacts, contact_id),
    };
    Ok((module, record_id(id)?))
}

/// A Zoho record id: digits.
fn record_id(id: &str) -> Result<&str, ConnectorError> {
    if !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ConnectorError::InvalidInput(
            "a Zoho CRM record id is digits".into(),
        ))
    }
}

/// A value inside a search `criteria` (`(Phone:equals:…)`): the backslash, parentheses and comma
/// that delimit criteria are escaped with a backslash, so a value stays one comparison.
pub fn criteria_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '(' | ')' | ',') {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// The criteria matching any stored form of `e164` in `Phone` or `Mobile`.
fn phone_criteria(e164: &str, country_code: &str) -> String {
    let mut parts = Vec::new();
    for field in ["Phone", "Mobile"] {
        for form in stored_forms(e164, country_code) {
            parts.push(format!("({field}:equals:{})", criteria_value(&form)));
        }
    }
    parts.join("or")
}

pub struct ZohoCrmConfig {
    /// The data centre's API domain (`https://www.zohoapis.eu/`).
    pub api_domain: Url,
    pub auth: Auth,
    /// Country calling code used to derive a number's national forms (`1`, `44`).
    pub country_code: String,
}

impl std::fmt::Debug for ZohoCrmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZohoCrmConfig")
            .field("api_domain", &self.api_domain.as_str())
            .field("country_code", &self.country_code)
            .finish_non_exhaustive()
    }
}

pub struct ZohoCrm {
    client: VendorClient,
    country_code: String,
}

#[derive(Deserialize)]
struct Records<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct Person {
    id: String,
    #[serde(rename = "First_Name")]
    first_name: Option<String>,
    #[serde(rename = "Last_Name")]
    last_name: Option<String>,
    #[serde(rename = "Email")]
    email: Option<String>,
    #[serde(rename = "Phone")]
    phone: Option<String>,
    #[serde(rename = "Mobile")]
    mobile: Option<String>,
}

fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl Person {
    fn into_contact(self, module: Module) -> Contact {
        Contact {
            company: None,
            id: match module {
                Module::Contacts => self.id,
                Module::Leads => format!("{LEAD_PREFIX}{}", self.id),
            },
            first_name: present(self.first_name),
            last_name: present(self.last_name),
            email: present(self.email),
            phone: present(self.phone).or(present(self.mobile)),
        }
    }
}

#[derive(Deserialize)]
struct ZohoDeal {
    id: String,
    #[serde(rename = "Deal_Name")]
    name: Option<String>,
    #[serde(rename = "Stage")]
    stage: Option<String>,
    #[serde(rename = "Amount")]
    amount: Option<serde_json::Number>,
    #[serde(rename = "Closing_Date")]
    closing_date: Option<String>,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    fields: Vec<Field>,
}

#[derive(Deserialize)]
struct Field {
    api_name: String,
    #[serde(default)]
    pick_list_values: Vec<PickListValue>,
}

#[derive(Deserialize)]
struct PickListValue {
    display_value: String,
    actual_value: String,
    #[serde(default)]
    forecast_type: Option<String>,
}

/// One entry of a write's `data` answer.
#[derive(Deserialize)]
struct WriteResult {
    #[serde(default)]
    code: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Map<String, Value>,
}

/// The id of the first written record; a record-level error (`DUPLICATE_DATA`,
/// `MANDATORY_NOT_FOUND`, …) arrives in a 2xx answer and is a rejection.
fn written_id(results: Records<WriteResult>, what: &str) -> Result<String, ConnectorError> {
    let first = results
        .data
        .into_iter()
        .next()
        .ok_or_else(|| ConnectorError::UnexpectedResponse(format!("{what}: no result")))?;
    if first.status != "success" {
        return Err(ConnectorError::Rejected(format!(
            "Zoho CRM refused the {what}: {}",
            first.code
        )));
    }
    first
        .details
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::UnexpectedResponse(format!("{what} without id")))
}

/// The caller's details as Zoho fields (only those given).
fn person_fields(contact: &ContactInput) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, value) in [
        ("First_Name", &contact.first_name),
        ("Last_Name", &contact.last_name),
        ("Email", &contact.email),
        ("Phone", &contact.phone),
    ] {
        if let Some(value) = value {
            fields.insert(name.to_owned(), json!(value));
        }
    }
    fields
}

/// Zoho's datetime form: ISO 8601 with a numeric offset.
/// Links an activity (call, event) to its person: `Who_Id` takes a contact; a lead is the
/// activity's "related to" record (`What_Id` with `$se_module`).
fn link_person(fields: &mut Map<String, Value>, module: Module, id: &str) {
    match module {
        Module::Contacts => {
            fields.insert("Who_Id".into(), json!({ "id": id }));
        }
        Module::Leads => {
            fields.insert("What_Id".into(), json!({ "id": id }));
            fields.insert("$se_module".into(), json!("Leads"));
        }
    }
}

fn zoho_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

impl ZohoCrm {
    pub fn new(policy: HttpPolicy, config: ZohoCrmConfig) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.api_domain, config.auth),
            country_code: config.country_code,
        }
    }

    /// `GET /crm/v8/{module}/search` (Search Records); Zoho answers 204 when nothing matches.
    async fn search(
        &self,
        ctx: &RequestContext,
        module: Module,
        lookup: &ContactLookup,
    ) -> Result<Option<Person>, ConnectorError> {
        let mut request = self
            .client
            .get(&["crm", "v8", module.api_name(), "search"])
            .query("per_page", "1");
        request = match lookup {
            ContactLookup::Email(email) => request.query("email", email),
            ContactLookup::Phone(phone) => {
                request.query("criteria", &phone_criteria(phone, &self.country_code))
            }
        };
        if module == Module::Leads {
            request = request.query("converted", "false");
        }
        let response = request.send(ctx, "contact").await?;
        if response.status.as_u16() == 204 || response.body.is_empty() {
            return Ok(None);
        }
        let found: Records<Person> = response.json()?;
        Ok(found.data.into_iter().next())
    }

    async fn find(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<(Module, Person)>, ConnectorError> {
        for module in [Module::Contacts, Module::Leads] {
            if let Some(person) = self.search(ctx, module, lookup).await? {
                return Ok(Some((module, person)));
            }
        }
        Ok(None)
    }

    /// `POST /crm/v8/{module}` (Create Records, one record), never replayed.
    async fn create(
        &self,
        ctx: &RequestContext,
        module: &str,
        record: Value,
        what: &str,
    ) -> Result<String, ConnectorError> {
        let results: Records<WriteResult> = self
            .client
            .post(&["crm", "v8", module])
            .json(json!({ "data": [record] }))
            .replay(Replay::Never)
            .send_json(ctx, what)
            .await?;
        written_id(results, what)
    }

    /// `PUT /crm/v8/{module}/{id}` (Update Record) with fixed values: replayable.
    async fn update(
        &self,
        ctx: &RequestContext,
        module: &str,
        id: &str,
        record: Value,
        what: &str,
    ) -> Result<(), ConnectorError> {
        let results: Records<WriteResult> = self
            .client
            .request(reqwest::Method::PUT, &["crm", "v8", module, record_id(id)?])
            .json(json!({ "data": [record] }))
            .replay(Replay::Idempotent)
            .send_json(ctx, what)
            .await?;
        written_id(results, what).map(|_| ())
    }
}

#[async_trait::async_trait]
impl Crm for ZohoCrm {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        Ok(self
            .find(ctx, lookup)
            .await?
            .map(|(module, person)| person.into_contact(module)))
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let lookup = contact.lookup()?;
        let key_field = match lookup {
            ContactLookup::Email(_) => "Email",
            ContactLookup::Phone(_) => "Phone",
        };
        let fields = person_fields(contact);
        if let Some((module, existing)) = self.find(ctx, &lookup).await? {
            self.update(
                ctx,
                module.api_name(),
                &existing.id,
                Value::Object(fields),
                "contact",
            )
            .await?;
            return Ok(contact.written_over(existing.into_contact(module)));
        }
        let mut record = fields;
        if !record.contains_key("Last_Name") {
            // Last_Name is mandatory: what identifies the caller stands in.
            record.insert("Last_Name".into(), json!(contact.last_name_stand_in()));
            record.remove("First_Name");
        }
        // Upsert Records keyed by the email (else phone): Zoho keeps a replay single.
        let results: Records<WriteResult> = self
            .client
            .post(&["crm", "v8", "Contacts", "upsert"])
            .json(json!({ "data": [record], "duplicate_check_fields": [key_field] }))
            .replay(Replay::Idempotent)
            .send_json(ctx, "contact")
            .await?;
        Ok(contact.created_as(written_id(results, "contact")?))
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        let (module, id) = person_ref(contact_id)?;
        // Zoho requires a call type; a note whose direction is unknown (a tool run outside a
        // recorded call) is an inbound call, the common case.
        let call_type = if note.inbound == Some(false) { "Outbound" } else { "Inbound" };
        let mut record = json!({
            "Subject": "Phone call",
            "Call_Type": call_type,
            "Call_Start_Time": zoho_time(&note.at),
            "Description": note.body,
        });
        if let Value::Object(fields) = &mut record {
            if let Some(duration) = note.duration_mm_ss() {
                fields.insert("Call_Duration".into(), json!(duration));
            }
            let result = match note.outcome {
                Some(CallOutcome::NoAnswer) => Some("No response"),
                Some(CallOutcome::Busy) => Some("Busy"),
                _ => None,
            };
            if let Some(result) = result {
                fields.insert("Call_Result".into(), json!(result));
            }
            link_person(fields, module, id);
        }
        self.create(ctx, "Calls", record, "call note").await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        let (module, id) = person_ref(contact_id)?;
        let mut record = json!({
            "Event_Title": meeting.title,
            "Start_DateTime": zoho_time(&meeting.start),
            "End_DateTime": zoho_time(&meeting.end),
            "Description": meeting.body,
        });
        if let Value::Object(fields) = &mut record {
            link_person(fields, module, id);
        }
        self.create(ctx, "Events", record, "meeting").await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        let record = match change {
            MeetingChange::Moved { start, end } => json!({
                "Start_DateTime": zoho_time(start),
                "End_DateTime": zoho_time(end),
            }),
            MeetingChange::Cancelled => json!({ "Event_Title": "Cancelled by the caller" }),
        };
        self.update(ctx, "Events", meeting_id, record, "meeting")
            .await
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
        let (module, contact) = person_ref(contact_id)?;
        if module == Module::Leads {
            // A lead has no deals until it is converted.
            return Err(ConnectorError::NotFound("deal".into()));
        }
        // The Deals module's Stage pick list: the stages, and which of them are closed.
        let fields: Fields = self
            .client
            .get(&["crm", "v8", "settings", "fields"])
            .query("module", "Deals")
            .send_json(ctx, "deal stage")
            .await?;
        let stage_values = fields
            .fields
            .into_iter()
            .find(|f| f.api_name == "Stage")
            .map(|f| f.pick_list_values)
            .unwrap_or_default();
        let closed: Vec<&str> = stage_values
            .iter()
            .filter(|v| v.forecast_type.as_deref() == Some("Closed"))
            .map(|v| v.actual_value.as_str())
            .collect();
        // The contact's deals (related list); 204 when it has none.
        let response = self
            .client
            .get(&["crm", "v8", "Contacts", contact, "Deals"])
            .query("fields", "Deal_Name,Stage,Amount,Closing_Date")
            .query("per_page", "10")
            .send(ctx, "deal")
            .await?;
        let deals: Vec<ZohoDeal> = if response.status.as_u16() == 204 || response.body.is_empty()
        {
            Vec::new()
        } else {
            response.json::<Records<ZohoDeal>>()?.data
        };
        let candidates: Vec<ZohoDeal> = match deal_id {
            Some(_) => deals,
            None => deals
                .into_iter()
                .filter(|d| !d.stage.as_deref().is_some_and(|s| closed.contains(&s)))
                .collect(),
        };
        let deal = pick_deal(&candidates, deal_id, |d| DealChoice {
            id: d.id.clone(),
            name: d.name.clone().unwrap_or_default(),
        })?;
        let mut record = Map::new();
        let mut stage_label = deal.stage.clone();
        if let Some(wanted) = &update.stage {
            let stages: Vec<(String, String)> = stage_values
                .iter()
                .map(|v| (v.actual_value.clone(), v.display_value.clone()))
                .collect();
            let (actual, label) = match_stage(&stages, wanted)?;
            record.insert("Stage".into(), json!(actual));
            stage_label = Some(label.clone());
        }
        if let Some(amount) = &update.amount {
            let number = amount_number(amount)?;
            record.insert("Amount".into(), Value::Number(number));
        }
        if let Some(date) = update.close_date {
            record.insert("Closing_Date".into(), json!(date.format("%Y-%m-%d").to_string()));
        }
        if let Some(next_step) = &update.next_step {
            record.insert("Next_Step".into(), json!(next_step));
        }
        self.update(ctx, "Deals", &deal.id, Value::Object(record), "deal")
            .await?;
        Ok(Deal::after(
            update,
            &deal.id,
            deal.name.clone().unwrap_or_default(),
            stage_label,
            deal.amount.as_ref().map(ToString::to_string),
            deal.closing_date.as_deref(),
        ))
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // GET /crm/v8/users?type=CurrentUser: a read.
        self.client
            .get(&["crm", "v8", "users"])
            .query("type", "CurrentUser")
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Zoho CRM",
    spec: "zoho/v8.0-local/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Crm],
    secret: SecretShape {
        bare_token: true,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: false,
                doc: "access token, when the account is not connected by OAuth",
            },
            SecretField {
                name: "api_domain",
                aliases: &[],
                required: false,
                doc: "the data centre's API domain (https://www.zohoapis.eu), default .com",
            },
            SecretField {
                name: "country_code",
                aliases: &[],
                required: false,
                doc: "calling code for national phone forms, default \"1\"",
            },
        ],
        note: "connect by OAuth (api_domain from the token response), or give access_token and \
               api_domain",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://accounts.zoho.com/oauth/v2/auth",
        // Replaced by the data centre's accounts server the callback names.
        token_url: "https://accounts.zoho.com/oauth/v2/token",
        revoke_url: Some("https://accounts.zoho.com/oauth/v2/token/revoke"),
        scopes: &[(
            Capability::Crm,
            &[
                "ZohoCRM.modules.ALL",
                "ZohoCRM.users.READ",
                "ZohoCRM.settings.fields.READ",
            ],
        )],
        pkce: true,
        // A refresh token is issued only for offline access.
        extra_authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        api_base_fields: &["api_domain"],
        client_secret_in_body: true,
        account_fields: &[],
        accounts_server_param: Some("accounts-server"),
        ok_envelope: false,
        accounts_server_hosts: &[
            ".zoho.com",
            ".zoho.eu",
            ".zoho.in",
            ".zoho.com.au",
            ".zoho.jp",
            ".zohocloud.ca",
            ".zoho.sa",
            ".zoho.com.cn",
            ".zoho.uk",
        ],
    }),
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

/// The API domain: the connector's `base_url`, else the secret's `api_domain` (a Zoho API host,
/// https), else the OAuth connection's, else the US data centre.
fn api_domain(ctx: &BuildContext<'_>) -> Result<Url, BuildFailure> {
    if ctx.base_url.is_none()
        && let Some(text) = ctx.credentials.text("api_domain")
    {
        let url = super::parse_base_url(text).map_err(|e| BuildFailure::Config(e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        if url.scheme() != "https" || !API_HOSTS.contains(&host) {
            return Err(BuildFailure::Config(format!(
                "api_domain must be a Zoho API domain ({})",
                API_HOSTS.join(", ")
            )));
        }
        return Ok(url);
    }
    ctx.base_url()
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let auth = match &ctx.oauth {
        Some(grant) => Auth::OAuth(grant.tokens.clone()),
        None => Auth::Bearer(ctx.credentials.secret(&["access_token", "token"])?),
    };
    let config = ZohoCrmConfig {
        api_domain: api_domain(&ctx)?,
        auth,
        country_code: ctx
            .credentials
            .text("country_code")
            .unwrap_or("1")
            .trim_start_matches('+')
            .to_owned(),
    };
    Ok(Built {
        crm: Some(std::sync::Arc::new(ZohoCrm::new(ctx.policy, config))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_values_cannot_open_another_comparison() {
        assert_eq!(criteria_value("(415) 555-0100"), "\\(415\\) 555-0100");
        assert_eq!(criteria_value("a,b\\c"), "a\\,b\\\\c");
        assert_eq!(criteria_value("x)or(Email:starts_with:a"), "x\\)or\\(Email:starts_with:a");
        assert_eq!(
            phone_criteria("+442071838750", "44"),
            "(Phone:equals:+442071838750)or(Phone:equals:02071838750)or\
             (Mobile:equals:+442071838750)or(Mobile:equals:02071838750)"
        );
    }

    #[test]
    fn contact_ids_name_their_module() {
        assert_eq!(
            person_ref("3477061000000419001").ok(),
            Some((Module::Contacts, "3477061000000419001"))
        );
        assert_eq!(
            person_ref("lead:3477061000000419002").ok(),
            Some((Module::Leads, "3477061000000419002"))
        );
        assert!(person_ref("lead:../users").is_err());
        assert!(person_ref("").is_err());
    }
}

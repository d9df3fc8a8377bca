//! Salesforce as a [`Crm`]: Contacts and Leads found by SOQL (phone in its stored forms, email),
//! created or updated, calls logged as completed `Task`s and bookings recorded as `Event`s.
//!
//! Built from `vendor-specs/salesforce/sobjects-v59.0-subset.json` (sObject create, read and update
//! for Contact, Lead, Task, Event, Opportunity). The SOQL query resource (`GET …/query?q=`) is not
//! in that file: it follows the REST API Developer Guide page "Query" and its contract test says
//! so. Every path is under `/services/data/{API_VERSION}` on the org's instance URL, which comes
//! from the tenant's OAuth connection (`instance_url` of the token response), else from the
//! secret's `instance_url`, else from the connector's `base_url`. Auth: `Authorization: Bearer`
//! with the connection's token (refreshed once on a 401) or a token from the secret.
//!
//! SOQL is built by text, so every value goes through [`soql_literal`] (quotes, backslashes and
//! control characters escaped; only `=` and `IN` are used, where `%` and `_` are plain
//! characters). A lookup tries Contacts first, then unconverted Leads. Salesforce has no
//! idempotency header: creates are never replayed (the tool-call ledger keeps them single),
//! updates set fixed values and may be replayed. A cancelled booking's Event is kept (history)
//! and marked: subject "Cancelled by the caller", shown as free. This module must not keep
//! records in memory.

use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Auth, VendorClient, map_error};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::phone::stored_forms;
use super::deals::{DealChoice, amount_number, match_stage, pick_deal};
use super::{
    CallNote, ConnectorError, Contact, ContactInput, ContactLookup, Crm, CrmMeeting, Deal,
    DealUpdate, MeetingChange,
};
use crate::connectors::http::{
    ConnectorProfile, HttpPolicy, PolicyError, PolicyResponse, Replay, RequestContext,
};

pub const CONNECTOR: &str = "salesforce";
/// The REST API version every request names: the one place it is pinned.
pub const API_VERSION: &str = "v59.0";
/// The fields read for a contact or lead.
const PERSON_FIELDS: &str = "Id, FirstName, LastName, Email, Phone, MobilePhone";

/// Which sObject a person record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonKind {
    Contact,
    Lead,
}

impl PersonKind {
    fn sobject(self) -> &'static str {
        match self {
            Self::Contact => "Contact",
            Self::Lead => "Lead",
        }
    }
}

pub struct SalesforceConfig {
    /// The org's instance URL (`https://acme.my.salesforce.com/`).
    pub instance_url: Url,
    pub auth: Auth,
    /// Country calling code used to derive a number's national forms (`1`, `44`).
    pub country_code: String,
    /// What a new caller becomes: a Contact (default) or a Lead.
    pub create_as: PersonKind,
    /// A Lead's required `Company` when the caller gave none.
    pub lead_company: String,
}

impl std::fmt::Debug for SalesforceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceConfig")
            .field("instance_url", &self.instance_url.as_str())
            .field("country_code", &self.country_code)
            .field("create_as", &self.create_as)
            .finish_non_exhaustive()
    }
}

pub struct Salesforce {
    client: VendorClient,
    country_code: String,
    create_as: PersonKind,
    lead_company: String,
}

/// A SOQL string literal holding `value`, quotes included: backslash, both quotes and control
/// characters are escaped as SOQL's reserved-character rules require, so no value can end the
/// literal. `%` and `_` stay as they are: they are wildcards only after `LIKE`, which this module
/// never uses with a caller's value.
pub fn soql_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Other control characters have no SOQL escape and no place in a phone or email.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The `WHERE` condition matching `lookup` (values escaped).
fn lookup_condition(lookup: &ContactLookup, country_code: &str) -> String {
    match lookup {
        ContactLookup::Email(email) => format!("Email = {}", soql_literal(email)),
        ContactLookup::Phone(phone) => {
            let list = stored_forms(phone, country_code)
                .iter()
                .map(|form| soql_literal(form))
                .collect::<Vec<_>>()
                .join(", ");
            format!("(Phone IN ({list}) OR MobilePhone IN ({list}))")
        }
    }
}

/// The SOQL finding the most recently changed `kind` record matching `condition`.
fn person_query(kind: PersonKind, condition: &str) -> String {
    let filter = match kind {
        PersonKind::Contact => condition.to_owned(),
        // A converted lead lives on as a contact: only open leads are the caller.
        PersonKind::Lead => format!("IsConverted = false AND {condition}"),
    };
    format!(
        "SELECT {PERSON_FIELDS} FROM {} WHERE {filter} ORDER BY LastModifiedDate DESC LIMIT 1",
        kind.sobject()
    )
}

/// A Salesforce record id: 15 or 18 letters and digits.
fn checked_id(id: &str) -> Result<&str, ConnectorError> {
    if matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(ConnectorError::InvalidInput(
            "a Salesforce record id is 15 or 18 letters and digits".into(),
        ))
    }
}

#[derive(Deserialize)]
struct QueryResult<T> {
    #[serde(default = "Vec::new")]
    records: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Person {
    id: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    mobile_phone: Option<String>,
}

fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl Person {
    fn into_contact(self) -> Contact {
        Contact {
            company: None,
            id: self.id,
            first_name: present(self.first_name),
            last_name: present(self.last_name),
            email: present(self.email),
            phone: present(self.phone).or(present(self.mobile_phone)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Opportunity {
    id: String,
    name: Option<String>,
    stage_name: Option<String>,
    amount: Option<serde_json::Number>,
    close_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OpportunityStage {
    api_name: String,
    master_label: String,
}

/// The SOQL listing the contact's opportunities (as the opportunity's contact or through a
/// contact role): the one named `deal_id`, else the open ones.
fn opportunity_query(contact_id: &str, deal_id: Option<&str>) -> String {
    let contact = soql_literal(contact_id);
    let which = match deal_id {
        Some(id) => format!("Id = {}", soql_literal(id)),
        None => "IsClosed = false".to_owned(),
    };
    format!(
        "SELECT Id, Name, StageName, Amount, CloseDate FROM Opportunity WHERE {which} AND \
         (ContactId = {contact} OR Id IN (SELECT OpportunityId FROM OpportunityContactRole WHERE \
         ContactId = {contact})) ORDER BY LastModifiedDate DESC LIMIT 10"
    )
}

/// `SaveResult`: what a create answers.
#[derive(Deserialize)]
struct SaveResult {
    id: Option<String>,
    #[serde(default)]
    success: bool,
}

/// The caller's details as sObject fields (only those given).
fn person_fields(contact: &ContactInput) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, value) in [
        ("FirstName", &contact.first_name),
        ("LastName", &contact.last_name),
        ("Email", &contact.email),
        ("Phone", &contact.phone),
    ] {
        if let Some(value) = value {
            fields.insert(name.to_owned(), json!(value));
        }
    }
    fields
}

/// Salesforce's datetime form: UTC with milliseconds.
fn sf_time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A vendor status given its meaning for `what`; Salesforce answers an exhausted API allowance
/// with 403 `REQUEST_LIMIT_EXCEEDED`, which is a rate limit, not a refusal of the credentials.
fn sf_error(err: ConnectorError, what: &str) -> ConnectorError {
    match err {
        ConnectorError::Policy(PolicyError::Status {
            connector,
            code: 403,
            body_snippet,
            retry_after,
        }) if body_snippet.contains("REQUEST_LIMIT_EXCEEDED") => {
            ConnectorError::Policy(PolicyError::Status {
                connector,
                code: 429,
                body_snippet,
                retry_after,
            })
        }
        other => map_error(other, what),
    }
}

impl Salesforce {
    pub fn new(policy: HttpPolicy, config: SalesforceConfig) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.instance_url, config.auth),
            country_code: config.country_code,
            create_as: config.create_as,
            lead_company: config.lead_company,
        }
    }

    /// `services/data/{API_VERSION}/…` segments.
    fn path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
        let mut segments = vec!["services", "data", API_VERSION];
        segments.extend_from_slice(rest);
        segments
    }

    async fn send(
        request: super::client::VendorRequest<'_>,
        ctx: &RequestContext,
        what: &str,
    ) -> Result<PolicyResponse, ConnectorError> {
        request.send_raw(ctx).await.map_err(|err| sf_error(err, what))
    }

    /// `GET …/query?q=` (REST API Developer Guide, "Query"): the first page of records.
    async fn query<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        soql: &str,
        what: &str,
    ) -> Result<Vec<T>, ConnectorError> {
        let request = self.client.get(&Self::path(&["query"])).query("q", soql);
        let result: QueryResult<T> = Self::send(request, ctx, what).await?.json()?;
        Ok(result.records)
    }

    /// The caller's Contact, else their open Lead.
    async fn find(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<(PersonKind, Person)>, ConnectorError> {
        let condition = lookup_condition(lookup, &self.country_code);
        for kind in [PersonKind::Contact, PersonKind::Lead] {
            let found: Vec<Person> = self
                .query(ctx, &person_query(kind, &condition), "contact")
                .await?;
            if let Some(person) = found.into_iter().next() {
                return Ok(Some((kind, person)));
            }
        }
        Ok(None)
    }

    /// `POST …/sobjects/{sobject}` (never replayed): the new record's id.
    async fn create(
        &self,
        ctx: &RequestContext,
        sobject: &str,
        body: Value,
        what: &str,
    ) -> Result<String, ConnectorError> {
        let request = self
            .client
            .post(&Self::path(&["sobjects", sobject]))
            .json(body)
            .replay(Replay::Never);
        let saved: SaveResult = Self::send(request, ctx, what).await?.json()?;
        match saved.id {
            Some(id) if saved.success => Ok(id),
            _ => Err(ConnectorError::Rejected(format!(
                "Salesforce did not save the {what}"
            ))),
        }
    }

    /// `PATCH …/sobjects/{sobject}/{id}` with fixed values (replayable); Salesforce answers 204.
    async fn update(
        &self,
        ctx: &RequestContext,
        sobject: &str,
        id: &str,
        body: Value,
        what: &str,
    ) -> Result<(), ConnectorError> {
        let request = self
            .client
            .patch(&Self::path(&["sobjects", sobject, checked_id(id)?]))
            .json(body)
            .replay(Replay::Idempotent);
        Self::send(request, ctx, what).await.map(|_| ())
    }
}

#[async_trait::async_trait]
impl Crm for Salesforce {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        Ok(self
            .find(ctx, lookup)
            .await?
            .map(|(_, person)| person.into_contact()))
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let lookup = contact.lookup()?;
        let fields = person_fields(contact);
        if let Some((kind, existing)) = self.find(ctx, &lookup).await? {
            if !fields.is_empty() {
                self.update(
                    ctx,
                    kind.sobject(),
                    &existing.id,
                    Value::Object(fields),
                    "contact",
                )
                .await?;
            }
            return Ok(contact.written_over(existing.into_contact()));
        }
        let mut body = fields;
        if !body.contains_key("LastName") {
            // LastName is required on both objects: what identifies the caller stands in.
            body.insert("LastName".into(), json!(contact.last_name_stand_in()));
            body.remove("FirstName");
        }
        if self.create_as == PersonKind::Lead {
            body.insert("Company".into(), json!(self.lead_company));
            body.insert("LeadSource".into(), json!("Phone Inquiry"));
        }
        let id = self
            .create(ctx, self.create_as.sobject(), Value::Object(body), "contact")
            .await?;
        Ok(contact.created_as(id))
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        // A completed call task on the person (Contact or Lead: WhoId takes either), with the
        // Task's call fields: CallDurationInSeconds, CallDisposition (free text), CallType.
        let mut body = json!({
            "WhoId": checked_id(contact_id)?,
            "Subject": "Phone call",
            "Description": note.body,
            "Status": "Completed",
            "TaskSubtype": "Call",
            "ActivityDate": note.at.format("%Y-%m-%d").to_string(),
        });
        if let Value::Object(fields) = &mut body {
            if let Some(secs) = note.duration_secs {
                fields.insert("CallDurationInSeconds".into(), json!(secs));
            }
            if let Some(outcome) = note.outcome {
                fields.insert("CallDisposition".into(), json!(outcome.label()));
            }
            if let Some(inbound) = note.inbound {
                let kind = if inbound { "Inbound" } else { "Outbound" };
                fields.insert("CallType".into(), json!(kind));
            }
        }
        self.create(ctx, "Task", body, "call note").await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        let body = json!({
            "WhoId": checked_id(contact_id)?,
            "Subject": meeting.title,
            "StartDateTime": sf_time(&meeting.start),
            "EndDateTime": sf_time(&meeting.end),
            "Description": meeting.body,
        });
        self.create(ctx, "Event", body, "meeting").await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        let body = match change {
            MeetingChange::Moved { start, end } => json!({
                "StartDateTime": sf_time(start),
                "EndDateTime": sf_time(end),
            }),
            MeetingChange::Cancelled => json!({
                "Subject": "Cancelled by the caller",
                "ShowAs": "Free",
            }),
        };
        self.update(ctx, "Event", meeting_id, body, "meeting").await
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
        let contact = checked_id(contact_id)?;
        if contact.starts_with("00Q") {
            // A lead has no opportunities until it is converted.
            return Err(ConnectorError::NotFound("deal".into()));
        }
        let deal_id = deal_id.map(checked_id).transpose()?;
        let deals: Vec<Opportunity> = self
            .query(ctx, &opportunity_query(contact, deal_id), "deal")
            .await?;
        if deal_id.is_some() && deals.is_empty() {
            return Err(ConnectorError::NotFound("deal".into()));
        }
        // The query already kept only the named deal when there is one.
        let deal = pick_deal(&deals, None, |o| DealChoice {
            id: o.id.clone(),
            name: o.name.clone().unwrap_or_default(),
        })?;
        let mut fields = Map::new();
        let mut stage_label = deal.stage_name.clone();
        if let Some(wanted) = &update.stage {
            let stages: Vec<OpportunityStage> = self
                .query(
                    ctx,
                    "SELECT ApiName, MasterLabel FROM OpportunityStage WHERE IsActive = true \
                     ORDER BY SortOrder",
                    "deal stage",
                )
                .await?;
            let stages: Vec<(String, String)> = stages
                .into_iter()
                .map(|s| (s.api_name, s.master_label))
                .collect();
            let (api_name, label) = match_stage(&stages, wanted)?;
            fields.insert("StageName".into(), json!(api_name));
            stage_label = Some(label.clone());
        }
        if let Some(amount) = &update.amount {
            let number = amount_number(amount)?;
            fields.insert("Amount".into(), Value::Number(number));
        }
        if let Some(date) = update.close_date {
            fields.insert("CloseDate".into(), json!(date.format("%Y-%m-%d").to_string()));
        }
        if let Some(next_step) = &update.next_step {
            fields.insert("NextStep".into(), json!(next_step));
        }
        if !fields.is_empty() {
            self.update(ctx, "Opportunity", &deal.id, Value::Object(fields), "deal")
                .await?;
        }
        Ok(Deal::after(
            update,
            &deal.id,
            deal.name.clone().unwrap_or_default(),
            stage_label,
            deal.amount.as_ref().map(ToString::to_string),
            deal.close_date.as_deref(),
        ))
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // Describe basic information of Contact: a read.
        let request = self.client.get(&Self::path(&["sobjects", "Contact"]));
        Self::send(request, ctx, "account").await.map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Salesforce",
    spec: "salesforce/",
    // Every org has its own instance URL: from the connection, the secret or base_url.
    default_base_url: None,
    capabilities: &[Capability::Crm],
    secret: SecretShape {
        bare_token: true,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: false,
                doc: "access token, when the org is not connected by OAuth",
            },
            SecretField {
                name: "instance_url",
                aliases: &[],
                required: false,
                doc: "the org's https instance URL, when not connected by OAuth and no base_url",
            },
            SecretField {
                name: "country_code",
                aliases: &[],
                required: false,
                doc: "calling code for national phone forms, default \"1\"",
            },
            SecretField {
                name: "create_as",
                aliases: &[],
                required: false,
                doc: "\"contact\" (default) or \"lead\": what a new caller becomes",
            },
            SecretField {
                name: "lead_company",
                aliases: &[],
                required: false,
                doc: "a new Lead's Company, default \"Not provided\"",
            },
        ],
        note: "connect by OAuth (instance_url from the token response), or give access_token and \
               instance_url",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://login.salesforce.com/services/oauth2/authorize",
        token_url: "https://login.salesforce.com/services/oauth2/token",
        revoke_url: Some("https://login.salesforce.com/services/oauth2/revoke"),
        scopes: &[(Capability::Crm, &["api", "refresh_token"])],
        pkce: true,
        extra_authorize_params: &[],
        api_base_fields: &["instance_url"],
        client_secret_in_body: true,
        account_fields: &["id"],
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

/// The instance URL: the connector's `base_url`, else the secret's `instance_url` (https only),
/// else the OAuth connection's.
fn instance_url(ctx: &BuildContext<'_>) -> Result<Url, BuildFailure> {
    if ctx.base_url.is_none()
        && let Some(text) = ctx.credentials.text("instance_url")
    {
        let url = super::parse_base_url(text).map_err(|e| BuildFailure::Config(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(BuildFailure::Config("instance_url must be https".into()));
        }
        return Ok(url);
    }
    ctx.base_url().map_err(|_| {
        BuildFailure::Config(
            "connect Salesforce by OAuth, or set instance_url in the secret or base_url".into(),
        )
    })
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let auth = match &ctx.oauth {
        Some(grant) => Auth::OAuth(grant.tokens.clone()),
        None => Auth::Bearer(ctx.credentials.secret(&["access_token", "token"])?),
    };
    let create_as = match ctx.credentials.text("create_as") {
        None | Some("contact") => PersonKind::Contact,
        Some("lead") => PersonKind::Lead,
        Some(_) => {
            return Err(BuildFailure::Config(
                "create_as is \"contact\" or \"lead\"".into(),
            ));
        }
    };
    let config = SalesforceConfig {
        instance_url: instance_url(&ctx)?,
        auth,
        country_code: ctx
            .credentials
            .text("country_code")
            .unwrap_or("1")
            .trim_start_matches('+')
            .to_owned(),
        create_as,
        lead_company: ctx
            .credentials
            .text("lead_company")
            .unwrap_or("Not provided")
            .to_owned(),
    };
    Ok(Built {
        crm: Some(std::sync::Arc::new(Salesforce::new(ctx.policy, config))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_cannot_be_ended_by_its_value() {
        assert_eq!(soql_literal("ann@example.com"), "'ann@example.com'");
        // A quote is escaped, so the condition stays one comparison.
        assert_eq!(
            soql_literal("x' OR Name != 'y"),
            "'x\\' OR Name != \\'y'"
        );
        assert_eq!(soql_literal("a\"b"), "'a\\\"b'");
        // A backslash is doubled first: `\'` in the value cannot become an unescaped quote.
        assert_eq!(soql_literal("a\\'b"), "'a\\\\\\'b'");
        assert_eq!(soql_literal("end\\"), "'end\\\\'");
        assert_eq!(soql_literal("a\nb\tc\rd"), "'a\\nb\\tc\\rd'");
        assert_eq!(soql_literal("a\u{0}b"), "'ab'");
    }

    #[test]
    fn wildcards_are_plain_in_equality_comparisons() {
        // `=` and `IN` compare literally: `%` and `_` match themselves, so they are not escaped
        // (an escaped `\%` outside LIKE would change the value compared).
        assert_eq!(soql_literal("100%_off@x.com"), "'100%_off@x.com'");
        let condition = lookup_condition(&ContactLookup::Email("a_b%@x.com".into()), "1");
        assert_eq!(condition, "Email = 'a_b%@x.com'");
        assert!(!person_query(PersonKind::Contact, &condition).contains("LIKE"));
    }

    #[test]
    fn a_phone_is_looked_up_in_every_stored_form() {
        let condition = lookup_condition(&ContactLookup::Phone("+14155550100".into()), "1");
        assert_eq!(
            condition,
            "(Phone IN ('+14155550100', '4155550100', '(415) 555-0100') OR MobilePhone IN \
             ('+14155550100', '4155550100', '(415) 555-0100'))"
        );
        assert_eq!(
            person_query(PersonKind::Lead, "Email = 'a@b.c'"),
            "SELECT Id, FirstName, LastName, Email, Phone, MobilePhone FROM Lead WHERE \
             IsConverted = false AND Email = 'a@b.c' ORDER BY LastModifiedDate DESC LIMIT 1"
        );
    }

    #[test]
    fn record_ids_are_checked() {
        assert!(checked_id("003R000000aBcDeFGH").is_ok());
        assert!(checked_id("003R000000aBcDe").is_ok());
        assert!(checked_id("003R000000aBcDe/../x").is_err());
        assert!(checked_id("").is_err());
    }

    #[test]
    fn the_request_limit_is_a_rate_limit() {
        let err = sf_error(
            ConnectorError::Policy(PolicyError::Status {
                connector: CONNECTOR,
                code: 403,
                body_snippet: "[{\"errorCode\":\"REQUEST_LIMIT_EXCEEDED\"}]".into(),
                retry_after: None,
            }),
            "contact",
        );
        assert!(
            matches!(&err, ConnectorError::Policy(p) if p.status() == Some(429) && p.is_transient()),
            "{err:?}"
        );
        let refused = sf_error(
            ConnectorError::Policy(PolicyError::Status {
                connector: CONNECTOR,
                code: 403,
                body_snippet: "[{\"errorCode\":\"INSUFFICIENT_ACCESS\"}]".into(),
                retry_after: None,
            }),
            "contact",
        );
        assert!(matches!(refused, ConnectorError::Auth(_)), "{refused:?}");
    }
}

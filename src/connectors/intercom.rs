//! Intercom as a [`Support`] desk: requesters are Intercom contacts (users), tickets are Intercom
//! tickets of the tenant's chosen ticket type, a caller's comment is a reply on the ticket on
//! behalf of the contact.
//!
//! Built from `vendor-specs/intercom/api.intercom.io.2.14.yaml` (server `https://api.intercom.io`,
//! `Intercom-Version: 2.14` on every request): `SearchContacts`, `CreateContact`, `createTicket`
//! (`ticket_type_id`, the contact, `_default_title_` and `_default_description_`), `searchTickets`
//! (the contact's open tickets), `getTicket`, `replyTicket` and `identifyAdmin` (`GET /me`, health).
//! Auth: an access token as bearer, or a connected OAuth account. Intercom tickets carry neither a
//! priority nor an external reference, and Intercom documents no idempotency key: the priority
//! and the call's id are written at the end of the description, creates are never replayed (the
//! ledger keeps them single), searches may be. Contacts found by search are matched exactly on
//! email or phone here. It must not keep contacts or tickets in memory.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, Ticket,
    TicketStatus, same_phone,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "intercom";
pub const DEFAULT_BASE_URL: &str = "https://api.intercom.io/";
/// The API version the requests are written for (the held spec's).
pub const API_VERSION: &str = "2.14";

/// Where an Intercom workspace is, how requests prove who sends them, and the ticket type used.
pub struct IntercomConfig {
    pub base_url: Url,
    pub auth: Auth,
    /// The id of the workspace's ticket type phone tickets are created with.
    pub ticket_type_id: String,
}

impl std::fmt::Debug for IntercomConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntercomConfig")
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .field("ticket_type_id", &self.ticket_type_id)
            .finish()
    }
}

pub struct Intercom {
    client: VendorClient,
    ticket_type_id: String,
}

/// The regional API host: `us` (default), `eu` or `au`.
pub fn regional_base(region: Option<&str>) -> Result<&'static str, BuildFailure> {
    match region.map(str::to_ascii_lowercase).as_deref() {
        None | Some("us") => Ok(DEFAULT_BASE_URL),
        Some("eu") => Ok("https://api.eu.intercom.io/"),
        Some("au") => Ok("https://api.au.intercom.io/"),
        Some(_) => Err(BuildFailure::Config("region must be us, eu or au".into())),
    }
}

#[derive(Deserialize)]
struct IntercomContact {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

impl IntercomContact {
    fn into_requester(self) -> Requester {
        Requester {
            id: self.id,
            name: self.name.filter(|name| !name.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct ContactList {
    #[serde(default)]
    data: Vec<IntercomContact>,
}

#[derive(Deserialize)]
struct IntercomTicket {
    id: String,
    #[serde(default)]
    ticket_attributes: Option<Value>,
    #[serde(default)]
    ticket_state: Option<Value>,
    #[serde(default)]
    open: Option<bool>,
    #[serde(default)]
    contacts: Option<TicketContacts>,
    #[serde(default)]
    updated_at: Option<i64>,
}

#[derive(Deserialize)]
struct TicketContacts {
    #[serde(default)]
    contacts: Vec<ContactReference>,
}

#[derive(Deserialize)]
struct ContactReference {
    id: String,
}

#[derive(Deserialize)]
struct TicketList {
    #[serde(default)]
    tickets: Vec<IntercomTicket>,
}

/// The state category (2.14: an object with `category`; older versions: a string).
fn status_of(state: Option<&Value>, open: Option<bool>) -> TicketStatus {
    let category = state.and_then(|state| {
        state
            .get("category")
            .and_then(Value::as_str)
            .or_else(|| state.as_str())
    });
    match category {
        Some("submitted") => TicketStatus::New,
        Some("waiting_on_customer") => TicketStatus::WaitingOnCustomer,
        Some("resolved") => TicketStatus::Solved,
        Some(_) => TicketStatus::Open,
        None if open == Some(false) => TicketStatus::Closed,
        None => TicketStatus::Open,
    }
}

impl IntercomTicket {
    fn into_ticket(self) -> Ticket {
        let mut status = status_of(self.ticket_state.as_ref(), self.open);
        if self.open == Some(false) && status.is_open() {
            status = TicketStatus::Closed;
        }
        Ticket {
            subject: self
                .ticket_attributes
                .as_ref()
                .and_then(|attributes| attributes.get("_default_title_"))
                .and_then(Value::as_str)
                .filter(|title| !title.is_empty())
                .map(str::to_owned),
            status,
            requester_id: self
                .contacts
                .and_then(|list| list.contacts.into_iter().next())
                .map(|contact| contact.id),
            updated_at: self
                .updated_at
                .and_then(|at| DateTime::<Utc>::from_timestamp(at, 0)),
            id: self.id,
        }
    }
}

impl Intercom {
    pub fn new(policy: HttpPolicy, config: IntercomConfig) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url, config.auth),
            ticket_type_id: config.ticket_type_id,
        }
    }

    fn version() -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static("intercom-version"),
            HeaderValue::from_static(API_VERSION),
        )
    }
}

#[async_trait::async_trait]
impl Support for Intercom {
    async fn find_requester(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Requester>, ConnectorError> {
        // operationId: SearchContacts. A search changes nothing: replayable.
        let (field, value) = match lookup {
            ContactLookup::Email(email) => ("email", email),
            ContactLookup::Phone(phone) => ("phone", phone),
        };
        let (name, version) = Self::version();
        let found: ContactList = self
            .client
            .post(&["contacts", "search"])
            .header(name, version)
            .json(json!({
                "query": { "field": field, "operator": "=", "value": value },
                "pagination": { "per_page": 5 },
            }))
            .replay(Replay::Idempotent)
            .send_json(ctx, "contact")
            .await?;
        Ok(found
            .data
            .into_iter()
            .find(|contact| match lookup {
                ContactLookup::Email(email) => contact
                    .email
                    .as_deref()
                    .is_some_and(|found| found.eq_ignore_ascii_case(email)),
                ContactLookup::Phone(phone) => contact
                    .phone
                    .as_deref()
                    .is_some_and(|found| same_phone(found, phone)),
            })
            .map(IntercomContact::into_requester))
    }

    async fn create_requester(
        &self,
        ctx: &RequestContext,
        input: &RequesterInput,
        _idempotency_key: &str,
    ) -> Result<Requester, ConnectorError> {
        // operationId: CreateContact, as a user. Never replayed.
        if input.email.is_none() && input.phone.is_none() {
            return Err(ConnectorError::InvalidInput(
                "a requester needs an email or a phone".into(),
            ));
        }
        let mut body = json!({ "role": "user" });
        for (field, value) in [
            ("name", &input.name),
            ("email", &input.email),
            ("phone", &input.phone),
        ] {
            if let Some(value) = value {
                body[field] = json!(value);
            }
        }
        let (name, version) = Self::version();
        let created: IntercomContact = self
            .client
            .post(&["contacts"])
            .header(name, version)
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "contact")
            .await?;
        Ok(created.into_requester())
    }

    async fn create_ticket(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket: &NewTicket,
        _idempotency_key: &str,
    ) -> Result<Ticket, ConnectorError> {
        // operationId: createTicket. Never replayed.
        let description = format!(
            "{}\n\nPriority: {}. Opened by phone (call {}).",
            ticket.description,
            ticket.priority.as_str(),
            ticket.external_ref
        );
        let (name, version) = Self::version();
        let created: IntercomTicket = self
            .client
            .post(&["tickets"])
            .header(name, version)
            .json(json!({
                "ticket_type_id": self.ticket_type_id,
                "contacts": [{ "id": requester.id }],
                "ticket_attributes": {
                    "_default_title_": ticket.subject,
                    "_default_description_": description,
                },
            }))
            .replay(Replay::Never)
            .send_json(ctx, "ticket")
            .await?;
        Ok(created.into_ticket())
    }

    async fn open_tickets(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
    ) -> Result<Vec<Ticket>, ConnectorError> {
        // operationId: searchTickets, the contact's open tickets. Replayable.
        let (name, version) = Self::version();
        let found: TicketList = self
            .client
            .post(&["tickets", "search"])
            .header(name, version)
            .json(json!({
                "query": { "operator": "AND", "value": [
                    { "field": "contact_ids", "operator": "=", "value": requester.id },
                    { "field": "open", "operator": "=", "value": true },
                ]},
                "pagination": { "per_page": 10 },
            }))
            .replay(Replay::Idempotent)
            .send_json(ctx, "ticket")
            .await?;
        let mut tickets: Vec<Ticket> = found
            .tickets
            .into_iter()
            .map(IntercomTicket::into_ticket)
            .filter(|t| t.status.is_open() && t.requester_id.as_deref() == Some(&requester.id))
            .collect();
        tickets.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
        Ok(tickets)
    }

    async fn ticket(
        &self,
        ctx: &RequestContext,
        ticket_id: &str,
    ) -> Result<Ticket, ConnectorError> {
        // operationId: getTicket.
        let (name, version) = Self::version();
        let found: IntercomTicket = self
            .client
            .get(&["tickets", ticket_id])
            .header(name, version)
            .send_json(ctx, "ticket")
            .await?;
        Ok(found.into_ticket())
    }

    async fn add_comment(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket_id: &str,
        body: &str,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        // operationId: replyTicket, a comment on behalf of the contact. Never replayed.
        let (name, version) = Self::version();
        self.client
            .post(&["tickets", ticket_id, "reply"])
            .header(name, version)
            .json(json!({
                "message_type": "comment",
                "type": "user",
                "body": body,
                "intercom_user_id": requester.id,
            }))
            .replay(Replay::Never)
            .send(ctx, "ticket")
            .await
            .map(|_| ())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: identifyAdmin.
        let (name, version) = Self::version();
        self.client
            .get(&["me"])
            .header(name, version)
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Intercom",
    spec: "intercom/",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Support],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: false,
                doc: "the app's access token (not needed with an OAuth connection)",
            },
            SecretField {
                name: "ticket_type_id",
                aliases: &[],
                required: true,
                doc: "the ticket type phone tickets are created with (Settings > Tickets)",
            },
            SecretField {
                name: "region",
                aliases: &[],
                required: false,
                doc: "us (default), eu or au: the workspace's data region",
            },
        ],
        note: "",
    },
    oauth: Some(OAuthSpec {
        authorize_url: "https://app.intercom.com/oauth",
        token_url: "https://api.intercom.io/auth/eagle/token",
        revoke_url: None,
        // Intercom grants the permissions chosen in the app's settings, not per request.
        scopes: &[(Capability::Support, &[])],
        pkce: false,
        extra_authorize_params: &[],
        api_base_fields: &[],
        client_secret_in_body: true,
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
    let base_url = match ctx.base_url {
        Some(_) => ctx.base_url()?,
        None => Url::parse(regional_base(ctx.credentials.text("region"))?)
            .map_err(|err| BuildFailure::Config(err.to_string()))?,
    };
    let ticket_type_id = match ctx.credentials.unsigned("ticket_type_id") {
        Some(id) => id.to_string(),
        None => ctx.credentials.required_text("ticket_type_id")?,
    };
    let auth = match &ctx.oauth {
        Some(grant) => Auth::OAuth(grant.tokens.clone()),
        None => Auth::Bearer(ctx.credentials.secret(&["access_token", "token"])?),
    };
    Ok(Built {
        support: Some(Arc::new(Intercom::new(
            ctx.policy,
            IntercomConfig {
                base_url,
                auth,
                ticket_type_id,
            },
        ))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::PolicyConfig;
    use crate::connectors::kit::Credentials;
    use secrecy::SecretString;

    fn built(secret: &str) -> Result<Built, BuildFailure> {
        let credentials = Credentials::parse(&SecretString::from(secret.to_owned()))?;
        credentials.validate(&VENDOR.secret)?;
        build(BuildContext {
            vendor: &VENDOR,
            base_url: None,
            credentials,
            policy: HttpPolicy::new(PolicyConfig::default()).expect("policy"),
            oauth: None,
        })
    }

    #[test]
    fn builds_from_a_token_and_a_ticket_type_and_says_what_is_missing() {
        assert!(
            built(r#"{"access_token": "t", "ticket_type_id": 88, "region": "eu"}"#)
                .expect("built")
                .serves(Capability::Support)
        );
        assert_eq!(
            built(r#"{"access_token": "t-secret"}"#).err(),
            Some(BuildFailure::Missing("ticket_type_id".into()))
        );
        assert_eq!(
            built(r#"{"ticket_type_id": "88"}"#).err(),
            Some(BuildFailure::Missing("access_token".into()))
        );
        assert!(built(r#"{"access_token": "t", "ticket_type_id": 1, "region": "mars"}"#).is_err());
    }

    #[test]
    fn states_map_to_the_neutral_words() {
        let state = |category: &str| json!({ "category": category });
        assert_eq!(
            status_of(Some(&state("submitted")), Some(true)),
            TicketStatus::New
        );
        assert_eq!(
            status_of(Some(&state("waiting_on_customer")), None),
            TicketStatus::WaitingOnCustomer
        );
        assert_eq!(
            status_of(Some(&state("resolved")), Some(false)),
            TicketStatus::Solved
        );
        assert_eq!(status_of(None, Some(false)), TicketStatus::Closed);
    }
}

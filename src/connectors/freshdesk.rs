//! Freshdesk as a [`Support`] desk: requesters are Freshdesk contacts, tickets are tickets, a
//! caller's comment is a note on the ticket attributed to the contact.
//!
//! Built from `vendor-specs/freshdesk/openapi.yaml` (create, list and show tickets) and, for what
//! that spec lacks, Freshdesk's API reference (https://developers.freshdesk.com/api/: "List All
//! Contacts" with the `email` / `phone` / `mobile` filters, "Create a Contact", "List All
//! Tickets" with `requester_id`, `updated_since`, `order_by`, `order_type`, and "Add Note"),
//! recorded for the contract tests in `fixtures/vendor-specs/freshdesk/reference-additions.json`.
//! Base: `https://{domain}.freshdesk.com/`. Auth: the API key as basic-auth user with the password
//! `X`. Freshdesk has no idempotency key and no external-reference field on tickets: creates are
//! never replayed (the ledger keeps them single) and the call's id is written at the end of the
//! description. The description is HTML, so the caller's words are escaped. It must not keep
//! contacts or tickets in memory.

use std::sync::Arc;

use chrono::Utc;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, Ticket,
    TicketPriority, TicketStatus, parse_time, rfc3339, same_phone,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "freshdesk";
/// How far back `ticket_status` looks (Freshdesk lists only 30 days without `updated_since`).
const OPEN_TICKET_LOOKBACK_DAYS: i64 = 365;

pub struct Freshdesk {
    client: VendorClient,
}

/// The API base of a helpdesk: `acme` or `acme.freshdesk.com` → `https://acme.freshdesk.com/`.
pub fn helpdesk_url(domain: &str) -> Result<Url, BuildFailure> {
    let name = domain
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .trim_end_matches(".freshdesk.com");
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(BuildFailure::Config(
            "domain must be the helpdesk's name (acme for acme.freshdesk.com)".into(),
        ));
    }
    Url::parse(&format!("https://{}.freshdesk.com/", name.to_ascii_lowercase()))
        .map_err(|err| BuildFailure::Config(format!("invalid domain: {err}")))
}

/// Freshdesk's API-key basic auth: the key as user name, `X` as password.
pub fn api_key_auth(api_key: &SecretString) -> Auth {
    use secrecy::ExposeSecret;
    Auth::Basic {
        username: api_key.expose_secret().to_owned(),
        password: SecretString::from("X".to_owned()),
    }
}

#[derive(Deserialize)]
struct FreshdeskContact {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    mobile: Option<String>,
}

impl FreshdeskContact {
    fn into_requester(self) -> Requester {
        Requester {
            id: self.id.to_string(),
            name: self.name.filter(|name| !name.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct FreshdeskTicket {
    id: u64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<u8>,
    #[serde(default)]
    requester_id: Option<u64>,
    #[serde(default)]
    updated_at: Option<String>,
}

impl FreshdeskTicket {
    fn into_ticket(self) -> Result<Ticket, ConnectorError> {
        Ok(Ticket {
            id: self.id.to_string(),
            subject: self.subject.filter(|s| !s.is_empty()),
            status: status_of(self.status.unwrap_or(2)),
            requester_id: self.requester_id.map(|id| id.to_string()),
            updated_at: self.updated_at.as_deref().map(parse_time).transpose()?,
        })
    }
}

/// Freshdesk's status numbers: 2 open, 3 pending, 4 resolved, 5 closed; custom statuses
/// (6 and up, "Waiting on customer", "Waiting on third party") are still open.
fn status_of(status: u8) -> TicketStatus {
    match status {
        3 => TicketStatus::WaitingOnCustomer,
        4 => TicketStatus::Solved,
        5 => TicketStatus::Closed,
        6 => TicketStatus::WaitingOnCustomer,
        7 => TicketStatus::OnHold,
        _ => TicketStatus::Open,
    }
}

/// Freshdesk's priority numbers: 1 low, 2 medium, 3 high, 4 urgent.
fn priority_of(priority: TicketPriority) -> u8 {
    match priority {
        TicketPriority::Low => 1,
        TicketPriority::Normal => 2,
        TicketPriority::High => 3,
        TicketPriority::Urgent => 4,
    }
}

/// Text made safe for Freshdesk's HTML fields, line breaks kept.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

fn numeric_id(what: &str, id: &str) -> Result<u64, ConnectorError> {
    id.parse()
        .map_err(|_| ConnectorError::NotFound(format!("{what} {id:?} is not a Freshdesk id")))
}

impl Freshdesk {
    pub fn new(policy: HttpPolicy, base_url: Url, auth: Auth) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), base_url, auth),
        }
    }

    async fn contacts(
        &self,
        ctx: &RequestContext,
        filter: &str,
        value: &str,
    ) -> Result<Vec<FreshdeskContact>, ConnectorError> {
        // operationId: listContactsFiltered (reference page).
        self.client
            .get(&["api", "v2", "contacts"])
            .query(filter, value)
            .send_json(ctx, "contact")
            .await
    }
}

#[async_trait::async_trait]
impl Support for Freshdesk {
    async fn find_requester(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Requester>, ConnectorError> {
        match lookup {
            ContactLookup::Email(email) => Ok(self
                .contacts(ctx, "email", email)
                .await?
                .into_iter()
                .find(|c| {
                    c.email
                        .as_deref()
                        .is_some_and(|found| found.eq_ignore_ascii_case(email))
                })
                .map(FreshdeskContact::into_requester)),
            ContactLookup::Phone(phone) => {
                // The number may be stored as the work phone or as the mobile.
                for filter in ["phone", "mobile"] {
                    let found = self.contacts(ctx, filter, phone).await?.into_iter().find(|c| {
                        [&c.phone, &c.mobile]
                            .into_iter()
                            .flatten()
                            .any(|stored| same_phone(stored, phone))
                    });
                    if let Some(contact) = found {
                        return Ok(Some(contact.into_requester()));
                    }
                }
                Ok(None)
            }
        }
    }

    async fn create_requester(
        &self,
        ctx: &RequestContext,
        input: &RequesterInput,
        _idempotency_key: &str,
    ) -> Result<Requester, ConnectorError> {
        // operationId: createContact (reference page). Never replayed: it would make a second
        // contact (or a 409 for the duplicate email).
        let name = input
            .name
            .clone()
            .or_else(|| input.phone.as_ref().map(|phone| format!("Caller {phone}")))
            .or_else(|| input.email.clone())
            .ok_or_else(|| {
                ConnectorError::InvalidInput("a requester needs an email or a phone".into())
            })?;
        let mut body = json!({ "name": name });
        if let Some(email) = &input.email {
            body["email"] = json!(email);
        }
        if let Some(phone) = &input.phone {
            body["phone"] = json!(phone);
        }
        let created: FreshdeskContact = self
            .client
            .post(&["api", "v2", "contacts"])
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
        // operationId: addTicket. Source 3 is "Phone", status 2 "Open".
        let description = format!(
            "{}<br><br>Opened by phone (call {}).",
            html(&ticket.description),
            html(&ticket.external_ref)
        );
        let body = json!({
            "subject": ticket.subject,
            "description": description,
            "priority": priority_of(ticket.priority),
            "status": 2,
            "source": 3,
            "requester_id": numeric_id("requester", &requester.id)?,
            "tags": ["phone_call"],
        });
        let created: FreshdeskTicket = self
            .client
            .post(&["api", "v2", "tickets"])
            .json(body)
            .replay(Replay::Never)
            .send_json(ctx, "ticket")
            .await?;
        created.into_ticket()
    }

    async fn open_tickets(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
    ) -> Result<Vec<Ticket>, ConnectorError> {
        // operationId: listTicketsFiltered (reference page).
        let id = numeric_id("requester", &requester.id)?;
        let since = Utc::now() - chrono::Duration::days(OPEN_TICKET_LOOKBACK_DAYS);
        let found: Vec<FreshdeskTicket> = self
            .client
            .get(&["api", "v2", "tickets"])
            .query("requester_id", &id.to_string())
            .query("updated_since", &rfc3339(&since))
            .query("order_by", "updated_at")
            .query("order_type", "desc")
            .send_json(ctx, "ticket")
            .await?;
        let mut tickets = Vec::new();
        for ticket in found {
            let ticket = ticket.into_ticket()?;
            if ticket.status.is_open() && ticket.requester_id.as_deref() == Some(&requester.id) {
                tickets.push(ticket);
            }
        }
        Ok(tickets)
    }

    async fn ticket(
        &self,
        ctx: &RequestContext,
        ticket_id: &str,
    ) -> Result<Ticket, ConnectorError> {
        // operationId: getTicket.
        let id = numeric_id("ticket", ticket_id)?.to_string();
        let found: FreshdeskTicket = self
            .client
            .get(&["api", "v2", "tickets", &id])
            .send_json(ctx, "ticket")
            .await?;
        found.into_ticket()
    }

    async fn add_comment(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket_id: &str,
        body: &str,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        // operationId: addNote (reference page): a public note from the contact, marked incoming
        // (it came from the customer). Never replayed.
        let id = numeric_id("ticket", ticket_id)?.to_string();
        let note = json!({
            "body": html(body),
            "private": false,
            "incoming": true,
            "user_id": numeric_id("requester", &requester.id)?,
        });
        self.client
            .post(&["api", "v2", "tickets", &id, "notes"])
            .json(note)
            .replay(Replay::Never)
            .send(ctx, "ticket")
            .await
            .map(|_| ())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: listTickets, without filters.
        self.client
            .get(&["api", "v2", "tickets"])
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Freshdesk",
    spec: "freshdesk/",
    default_base_url: None,
    capabilities: &[Capability::Support],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "domain",
                aliases: &["subdomain"],
                required: false,
                doc: "the helpdesk's name (acme for acme.freshdesk.com); required unless base_url is set",
            },
            SecretField {
                name: "api_key",
                aliases: &["token"],
                required: true,
                doc: "an agent's API key (Profile settings > View API key)",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

/// The policy profile (no vendor-specific rules).
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let domain = ctx
        .credentials
        .text("domain")
        .or_else(|| ctx.credentials.text("subdomain"));
    let base_url = match (ctx.base_url, domain) {
        (Some(_), _) => ctx.base_url()?,
        (None, Some(domain)) => helpdesk_url(domain)?,
        (None, None) => return Err(BuildFailure::Missing("domain".into())),
    };
    let api_key = ctx.credentials.secret(&["api_key", "token"])?;
    Ok(Built {
        support: Some(Arc::new(Freshdesk::new(
            ctx.policy,
            base_url,
            api_key_auth(&api_key),
        ))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::PolicyConfig;
    use crate::connectors::kit::Credentials;

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
    fn builds_from_a_domain_and_an_api_key_and_says_what_is_missing() {
        assert!(
            built(r#"{"domain": "acme", "api_key": "k"}"#)
                .expect("built")
                .serves(Capability::Support)
        );
        assert_eq!(
            built(r#"{"api_key": "k-secret"}"#).err(),
            Some(BuildFailure::Missing("domain".into()))
        );
        assert_eq!(
            built(r#"{"domain": "acme"}"#).err(),
            Some(BuildFailure::Missing("api_key".into()))
        );
    }

    #[test]
    fn a_domain_names_a_freshdesk_host_only() {
        for good in ["acme", "acme.freshdesk.com", "https://acme.freshdesk.com/"] {
            assert_eq!(
                helpdesk_url(good).expect(good).as_str(),
                "https://acme.freshdesk.com/"
            );
        }
        for bad in ["evil.com", "a/b", "", "-x", "acme.freshdesk.com.evil.net"] {
            assert!(helpdesk_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_callers_words_cannot_become_markup() {
        assert_eq!(
            html("<b>hot</b> & \"cold\"\nnext"),
            "&lt;b&gt;hot&lt;/b&gt; &amp; &quot;cold&quot;<br>next"
        );
    }
}

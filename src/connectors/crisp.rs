//! Crisp as a [`Support`] desk: a ticket is a Crisp conversation (its metas carry the caller, the
//! subject and the call's id; the description is the caller's first message), a comment is a
//! further message from the caller, requesters are Crisp people profiles.
//!
//! Crisp publishes no OpenAPI document: this follows Crisp's REST API Reference (V1),
//! https://docs.crisp.chat/references/rest-api/v1/ ("Get A Website", "List Conversations",
//! "Create A New Conversation", "Get A Conversation", "Send A Message In Conversation", "Update
//! Conversation Metas", "List People Profiles", "Add New People Profile"), recorded for the contract
//! tests in `fixtures/vendor-specs/crisp/reference.json`. Base `https://api.crisp.chat/v1/`. Auth:
//! a plugin token keypair (identifier, key) as basic auth with `X-Crisp-Tier: plugin`. Crisp keys
//! people profiles by email, so a caller known only by phone has no profile: their conversations
//! are found by the conversation metas. A requester id is `email:<address>` or `phone:<E.164>`,
//! stored in the conversation's `data.requester` so ownership is checked on what was written.
//! Crisp has no priority and no idempotency key: the priority is a segment, creates and messages
//! are never replayed (the ledger keeps them single); meta updates set fixed values and may be.
//! It must not keep conversations or profiles in memory.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::client::{Auth, VendorClient, VendorRequest};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, Ticket,
    TicketStatus, same_phone,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "crisp";
pub const DEFAULT_BASE_URL: &str = "https://api.crisp.chat/v1/";

/// A Crisp website and the plugin token reaching it.
pub struct CrispConfig {
    pub base_url: Url,
    pub website_id: String,
    pub identifier: String,
    pub key: SecretString,
}

impl std::fmt::Debug for CrispConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrispConfig")
            .field("base_url", &self.base_url.as_str())
            .field("website_id", &self.website_id)
            .finish_non_exhaustive()
    }
}

pub struct Crisp {
    client: VendorClient,
    website_id: String,
}

/// Every Crisp answer: `{error, reason, data}`.
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    person: Option<Person>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    session_id: String,
}

#[derive(Deserialize)]
struct Conversation {
    session_id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    updated_at: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

/// `email:<address>` or `phone:<E.164>`: how a Crisp requester is named.
fn requester_id(lookup: &ContactLookup) -> String {
    match lookup {
        ContactLookup::Email(email) => format!("email:{}", email.to_lowercase()),
        ContactLookup::Phone(phone) => format!("phone:{phone}"),
    }
}

fn lookup_of(requester: &Requester) -> Result<ContactLookup, ConnectorError> {
    match requester.id.split_once(':') {
        Some(("email", email)) => Ok(ContactLookup::Email(email.to_owned())),
        Some(("phone", phone)) => Ok(ContactLookup::Phone(phone.to_owned())),
        _ => Err(ConnectorError::InvalidInput(
            "not a Crisp requester (email:… or phone:…)".into(),
        )),
    }
}

/// Crisp conversation states: `pending`, `unresolved`, `resolved`.
fn status_of(state: Option<&str>) -> TicketStatus {
    match state {
        Some("pending") => TicketStatus::New,
        Some("resolved") => TicketStatus::Solved,
        _ => TicketStatus::Open,
    }
}

impl Conversation {
    /// The requester the conversation was written for: `data.requester` when we opened it, else
    /// its email, else its phone.
    fn requester(meta: &Meta) -> Option<String> {
        if let Some(id) = meta
            .data
            .as_ref()
            .and_then(|data| data.get("requester"))
            .and_then(Value::as_str)
        {
            return Some(id.to_owned());
        }
        match (&meta.email, &meta.phone) {
            (Some(email), _) if !email.is_empty() => {
                Some(requester_id(&ContactLookup::Email(email.clone())))
            }
            (_, Some(phone)) if !phone.is_empty() => {
                Some(requester_id(&ContactLookup::Phone(phone.clone())))
            }
            _ => None,
        }
    }

    fn into_ticket(self) -> Ticket {
        let meta = self.meta.unwrap_or_default();
        Ticket {
            requester_id: Self::requester(&meta),
            subject: meta.subject.filter(|s| !s.is_empty()),
            status: status_of(self.state.as_deref()),
            updated_at: self.updated_at.and_then(DateTime::<Utc>::from_timestamp_millis),
            id: self.session_id,
        }
    }
}

impl Crisp {
    pub fn new(policy: HttpPolicy, config: CrispConfig) -> Self {
        let auth = Auth::Basic {
            username: config.identifier,
            password: config.key,
        };
        Self {
            client: VendorClient::new(policy, profile(), config.base_url, auth),
            website_id: config.website_id,
        }
    }

    /// A request under `website/{website_id}/…` with the plugin tier header.
    fn at(&self, method: reqwest::Method, rest: &[&str]) -> VendorRequest<'_> {
        let mut segments = vec!["website", self.website_id.as_str()];
        segments.extend_from_slice(rest);
        self.client.request(method, &segments).header(
            HeaderName::from_static("x-crisp-tier"),
            HeaderValue::from_static("plugin"),
        )
    }

    async fn data<T: DeserializeOwned>(
        request: VendorRequest<'_>,
        ctx: &RequestContext,
        what: &str,
    ) -> Result<T, ConnectorError> {
        let envelope: Envelope<T> = request.send_json(ctx, what).await?;
        Ok(envelope.data)
    }

    async fn send_message(
        &self,
        ctx: &RequestContext,
        session_id: &str,
        content: &str,
    ) -> Result<(), ConnectorError> {
        // Send A Message In Conversation, from the caller. Never replayed.
        self.at(
            reqwest::Method::POST,
            &["conversation", session_id, "message"],
        )
        .json(json!({ "type": "text", "from": "user", "origin": "chat", "content": content }))
        .replay(Replay::Never)
        .send(ctx, "conversation")
        .await
        .map(|_| ())
    }
}

#[async_trait::async_trait]
impl Support for Crisp {
    async fn find_requester(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Requester>, ConnectorError> {
        // List People Profiles with a quick text search; the exact match is made here.
        let text = match lookup {
            ContactLookup::Email(email) | ContactLookup::Phone(email) => email.as_str(),
        };
        let profiles: Vec<Profile> = Self::data(
            self.at(reqwest::Method::GET, &["people", "profiles", "1"])
                .query("search_text", text),
            ctx,
            "profile",
        )
        .await?;
        Ok(profiles
            .into_iter()
            .find(|profile| match lookup {
                ContactLookup::Email(email) => profile
                    .email
                    .as_deref()
                    .is_some_and(|found| found.eq_ignore_ascii_case(email)),
                ContactLookup::Phone(phone) => profile
                    .person
                    .as_ref()
                    .and_then(|person| person.phone.as_deref())
                    .is_some_and(|found| same_phone(found, phone)),
            })
            .map(|profile| Requester {
                id: requester_id(lookup),
                name: profile
                    .person
                    .and_then(|person| person.nickname)
                    .filter(|name| !name.is_empty()),
            }))
    }

    async fn create_requester(
        &self,
        ctx: &RequestContext,
        input: &RequesterInput,
        _idempotency_key: &str,
    ) -> Result<Requester, ConnectorError> {
        let Some(email) = &input.email else {
            // Crisp keys profiles by email: a caller known by phone only is named by the phone,
            // and their conversations carry it in their metas.
            let phone = input.phone.clone().ok_or_else(|| {
                ConnectorError::InvalidInput("a requester needs an email or a phone".into())
            })?;
            return Ok(Requester {
                id: requester_id(&ContactLookup::Phone(phone)),
                name: input.name.clone(),
            });
        };
        // Add New People Profile. Never replayed; an existing profile (409) is the same person.
        let nickname = input.name.clone().unwrap_or_else(|| email.clone());
        let mut person = json!({ "nickname": nickname });
        if let Some(phone) = &input.phone {
            person["phone"] = json!(phone);
        }
        let created = self
            .at(reqwest::Method::POST, &["people", "profile"])
            .json(json!({ "email": email, "person": person }))
            .replay(Replay::Never)
            .send(ctx, "profile")
            .await;
        match created {
            Ok(_) | Err(ConnectorError::Conflict(_)) => Ok(Requester {
                id: requester_id(&ContactLookup::Email(email.clone())),
                name: input.name.clone(),
            }),
            Err(err) => Err(err),
        }
    }

    async fn create_ticket(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket: &NewTicket,
        _idempotency_key: &str,
    ) -> Result<Ticket, ConnectorError> {
        let lookup = lookup_of(requester)?;
        // Create A New Conversation. Never replayed.
        let created: Created = Self::data(
            self.at(reqwest::Method::POST, &["conversation"])
                .replay(Replay::Never),
            ctx,
            "conversation",
        )
        .await?;
        // Update Conversation Metas: fixed values, so a replay changes nothing more.
        let mut meta = json!({
            "subject": ticket.subject,
            "segments": ["phone_call", format!("priority_{}", ticket.priority.as_str())],
            "data": { "requester": requester.id, "call_id": ticket.external_ref },
        });
        match &lookup {
            ContactLookup::Email(email) => meta["email"] = json!(email),
            ContactLookup::Phone(phone) => meta["phone"] = json!(phone),
        }
        if let Some(name) = &requester.name {
            meta["nickname"] = json!(name);
        }
        self.at(
            reqwest::Method::PATCH,
            &["conversation", &created.session_id, "meta"],
        )
        .json(meta)
        .replay(Replay::Idempotent)
        .send(ctx, "conversation")
        .await?;
        self.send_message(ctx, &created.session_id, &ticket.description)
            .await?;
        Ok(Ticket {
            id: created.session_id,
            subject: Some(ticket.subject.clone()),
            status: TicketStatus::New,
            requester_id: Some(requester.id.clone()),
            updated_at: None,
        })
    }

    async fn open_tickets(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
    ) -> Result<Vec<Ticket>, ConnectorError> {
        // List Conversations: a text search on the caller's email or phone, unresolved only,
        // newest update first; ownership is checked on each conversation's metas here.
        let text = match lookup_of(requester)? {
            ContactLookup::Email(value) | ContactLookup::Phone(value) => value,
        };
        let conversations: Vec<Conversation> = Self::data(
            self.at(reqwest::Method::GET, &["conversations", "1"])
                .query("search_query", &text)
                .query("search_type", "text")
                .query("filter_not_resolved", "1")
                .query("order_date_updated", "1"),
            ctx,
            "conversation",
        )
        .await?;
        Ok(conversations
            .into_iter()
            .map(Conversation::into_ticket)
            .filter(|t| t.status.is_open() && t.requester_id.as_deref() == Some(&requester.id))
            .collect())
    }

    async fn ticket(
        &self,
        ctx: &RequestContext,
        ticket_id: &str,
    ) -> Result<Ticket, ConnectorError> {
        // Get A Conversation.
        let conversation: Conversation = Self::data(
            self.at(reqwest::Method::GET, &["conversation", ticket_id]),
            ctx,
            "conversation",
        )
        .await?;
        Ok(conversation.into_ticket())
    }

    async fn add_comment(
        &self,
        ctx: &RequestContext,
        _requester: &Requester,
        ticket_id: &str,
        body: &str,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        self.send_message(ctx, ticket_id, body).await
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // Get A Website.
        self.at(reqwest::Method::GET, &[])
            .send(ctx, "website")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Crisp",
    spec: "crisp/ (none published: docs.crisp.chat/references/rest-api/v1/)",
    default_base_url: Some(DEFAULT_BASE_URL),
    capabilities: &[Capability::Support],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "website_id",
                aliases: &[],
                required: true,
                doc: "the website's id (Settings > Website Settings > Setup instructions)",
            },
            SecretField {
                name: "identifier",
                aliases: &[],
                required: true,
                doc: "the plugin token's identifier (Marketplace > your plugin > Tokens)",
            },
            SecretField {
                name: "key",
                aliases: &[],
                required: true,
                doc: "the plugin token's key",
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
    let website_id = ctx.credentials.required_text("website_id")?;
    if !website_id
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == '-')
    {
        return Err(BuildFailure::Config(
            "website_id must be the website's UUID".into(),
        ));
    }
    let config = CrispConfig {
        base_url: ctx.base_url()?,
        website_id,
        identifier: ctx.credentials.required_text("identifier")?,
        key: ctx.credentials.secret(&["key"])?,
    };
    Ok(Built {
        support: Some(Arc::new(Crisp::new(ctx.policy, config))),
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
    fn builds_from_a_website_and_a_plugin_token_and_says_what_is_missing() {
        let website = "8c842203-7ed8-4e29-a608-7cf78a7d2fcc";
        assert!(
            built(&format!(
                r#"{{"website_id": "{website}", "identifier": "i", "key": "k"}}"#
            ))
            .expect("built")
            .serves(Capability::Support)
        );
        assert_eq!(
            built(&format!(r#"{{"website_id": "{website}", "identifier": "i"}}"#)).err(),
            Some(BuildFailure::Missing("key".into()))
        );
        assert!(built(r#"{"website_id": "../x", "identifier": "i", "key": "k"}"#).is_err());
    }

    #[test]
    fn a_conversation_belongs_to_whom_it_was_written_for() {
        let ours: Conversation = serde_json::from_value(json!({
            "session_id": "session_1", "state": "unresolved",
            "meta": {"email": "ann@example.com", "data": {"requester": "phone:+14155550100"}}
        }))
        .expect("parses");
        assert_eq!(
            ours.into_ticket().requester_id.as_deref(),
            Some("phone:+14155550100")
        );
        let theirs: Conversation = serde_json::from_value(json!({
            "session_id": "session_2", "state": "resolved", "meta": {"email": "Bo@Example.com"}
        }))
        .expect("parses");
        let ticket = theirs.into_ticket();
        assert_eq!(ticket.requester_id.as_deref(), Some("email:bo@example.com"));
        assert_eq!(ticket.status, TicketStatus::Solved);
    }
}

//! Zendesk Support as a [`Support`] desk: requesters are Zendesk users (end users), tickets are
//! tickets, a caller's comment is a ticket comment authored by the requester.
//!
//! Built from `vendor-specs/zendesk/openapi.yaml` (Zendesk's Support API reference; no `servers`:
//! the base is the account's `https://{subdomain}.zendesk.com`). Operations: `SearchUsers`
//! (`GET /api/v2/users/search`), `CreateOrUpdateUser`, `CreateTicket` (with `external_id` = the
//! phone call's id), `ShowTicket`, `UpdateTicket` (a comment), `ListSearchResults` (the
//! requester's unsolved tickets) and `ShowCurrentUser` (health). Auth: an API token as basic auth
//! `{email}/token:{api_token}`, a static OAuth access token as bearer, or a connected OAuth account
//! (authorize and token URLs live on the account's subdomain, so the operator sets the app's
//! `AUTHORIZE_URL` and `TOKEN_URL` for the subdomain). Ticket creation carries the ledger key in
//! Zendesk's `Idempotency-Key` header (Tickets reference, "Idempotency"; not in the held spec), so
//! the policy may replay it; a comment is never replayed. Users found by search are matched
//! exactly on email or phone here, since Zendesk's `query` matches partially. It must not keep
//! users or tickets in memory.

use std::sync::Arc;

use reqwest::Url;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{
    BuildContext, BuildFailure, Built, Capability, OAuthSpec, SecretField, SecretShape, Vendor,
};
use super::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, Ticket,
    TicketPriority, TicketStatus, parse_time, same_phone,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "zendesk";

/// Where a Zendesk account is and how requests prove who sends them.
pub struct ZendeskConfig {
    /// `https://{subdomain}.zendesk.com/` (or a test server).
    pub base_url: Url,
    pub auth: Auth,
}

impl std::fmt::Debug for ZendeskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskConfig")
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

/// The API base of an account: `https://{subdomain}.zendesk.com/`. A subdomain is letters,
/// digits and hyphens only, so no tenant can point it at another host.
pub fn account_url(subdomain: &str) -> Result<Url, BuildFailure> {
    let valid = !subdomain.is_empty()
        && subdomain.len() <= 63
        && subdomain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !subdomain.starts_with('-');
    if !valid {
        return Err(BuildFailure::Config(
            "subdomain must be the account's name only (acme for acme.zendesk.com)".into(),
        ));
    }
    Url::parse(&format!("https://{}.zendesk.com/", subdomain.to_ascii_lowercase()))
        .map_err(|err| BuildFailure::Config(format!("invalid subdomain: {err}")))
}

/// API-token basic auth: the agent's email with `/token` appended, and the token.
pub fn api_token_auth(email: &str, token: SecretString) -> Auth {
    Auth::Basic {
        username: format!("{email}/token"),
        password: token,
    }
}

pub struct Zendesk {
    client: VendorClient,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

impl User {
    fn into_requester(self) -> Requester {
        Requester {
            id: self.id.to_string(),
            name: self.name.filter(|name| !name.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct UsersResponse {
    #[serde(default)]
    users: Vec<User>,
}

#[derive(Deserialize)]
struct UserResponse {
    user: User,
}

#[derive(Deserialize)]
struct ZendeskTicket {
    id: u64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    requester_id: Option<u64>,
    #[serde(default)]
    updated_at: Option<String>,
}

impl ZendeskTicket {
    fn into_ticket(self) -> Result<Ticket, ConnectorError> {
        Ok(Ticket {
            id: self.id.to_string(),
            subject: self.subject.filter(|s| !s.is_empty()),
            status: status_of(self.status.as_deref().unwrap_or("open")),
            requester_id: self.requester_id.map(|id| id.to_string()),
            updated_at: self.updated_at.as_deref().map(parse_time).transpose()?,
        })
    }
}

#[derive(Deserialize)]
struct TicketResponse {
    ticket: ZendeskTicket,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<Value>,
}

/// Zendesk's ticket statuses (`new`, `open`, `pending`, `hold`, `solved`, `closed`).
fn status_of(status: &str) -> TicketStatus {
    match status {
        "new" => TicketStatus::New,
        "pending" => TicketStatus::WaitingOnCustomer,
        "hold" => TicketStatus::OnHold,
        "solved" => TicketStatus::Solved,
        "closed" => TicketStatus::Closed,
        _ => TicketStatus::Open,
    }
}

fn priority_of(priority: TicketPriority) -> &'static str {
    // Zendesk's own four values.
    priority.as_str()
}

fn numeric_id(what: &str, id: &str) -> Result<u64, ConnectorError> {
    id.parse()
        .map_err(|_| ConnectorError::NotFound(format!("{what} {id:?} is not a Zendesk id")))
}

impl Zendesk {
    pub fn new(policy: HttpPolicy, config: ZendeskConfig) -> Self {
        Self {
            client: VendorClient::new(policy, profile(), config.base_url, config.auth),
        }
    }
}

#[async_trait::async_trait]
impl Support for Zendesk {
    async fn find_requester(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Requester>, ConnectorError> {
        // operationId: SearchUsers. `query` matches partially: the exact match is made here.
        let query = match lookup {
            ContactLookup::Email(email) => format!("email:{email}"),
            ContactLookup::Phone(phone) => format!("phone:{phone}"),
        };
        let found: UsersResponse = self
            .client
            .get(&["api", "v2", "users", "search"])
            .query("query", &query)
            .send_json(ctx, "user")
            .await?;
        Ok(found
            .users
            .into_iter()
            .find(|user| match lookup {
                ContactLookup::Email(email) => user
                    .email
                    .as_deref()
                    .is_some_and(|found| found.eq_ignore_ascii_case(email)),
                ContactLookup::Phone(phone) => user
                    .phone
                    .as_deref()
                    .is_some_and(|found| same_phone(found, phone)),
            })
            .map(User::into_requester))
    }

    async fn create_requester(
        &self,
        ctx: &RequestContext,
        input: &RequesterInput,
        _idempotency_key: &str,
    ) -> Result<Requester, ConnectorError> {
        // operationId: CreateOrUpdateUser. Keyed by email on Zendesk's side, so a replay with an
        // email updates the same user; without one it may create a second, so it is not replayed.
        let name = input
            .name
            .clone()
            .or_else(|| input.phone.as_ref().map(|phone| format!("Caller {phone}")))
            .or_else(|| input.email.clone())
            .ok_or_else(|| {
                ConnectorError::InvalidInput("a requester needs an email or a phone".into())
            })?;
        let mut user = json!({ "name": name, "role": "end-user", "skip_verify_email": true });
        if let Some(email) = &input.email {
            user["email"] = json!(email);
        }
        if let Some(phone) = &input.phone {
            user["phone"] = json!(phone);
        }
        let replay = if input.email.is_some() {
            Replay::Idempotent
        } else {
            Replay::Never
        };
        let created: UserResponse = self
            .client
            .post(&["api", "v2", "users", "create_or_update"])
            .json(json!({ "user": user }))
            .replay(replay)
            .send_json(ctx, "user")
            .await?;
        Ok(created.user.into_requester())
    }

    async fn create_ticket(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket: &NewTicket,
        idempotency_key: &str,
    ) -> Result<Ticket, ConnectorError> {
        // operationId: CreateTicket.
        let body = json!({ "ticket": {
            "subject": ticket.subject,
            "comment": { "body": ticket.description },
            "priority": priority_of(ticket.priority),
            "requester_id": numeric_id("requester", &requester.id)?,
            "external_id": ticket.external_ref,
            "tags": ["phone_call"],
        }});
        let created: TicketResponse = self
            .client
            .post(&["api", "v2", "tickets"])
            .json(body)
            .idempotency_key(idempotency_key)
            .send_json(ctx, "ticket")
            .await?;
        created.ticket.into_ticket()
    }

    async fn open_tickets(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
    ) -> Result<Vec<Ticket>, ConnectorError> {
        // operationId: ListSearchResults, tickets of this requester not yet solved.
        let id = numeric_id("requester", &requester.id)?;
        let found: SearchResponse = self
            .client
            .get(&["api", "v2", "search"])
            .query("query", &format!("type:ticket requester_id:{id} status<solved"))
            .query("sort_by", "updated_at")
            .query("sort_order", "desc")
            .send_json(ctx, "ticket")
            .await?;
        let mut tickets = Vec::new();
        for result in found.results {
            if result.get("result_type").and_then(Value::as_str) != Some("ticket") {
                continue;
            }
            let ticket: ZendeskTicket = serde_json::from_value(result)
                .map_err(|err| ConnectorError::UnexpectedResponse(err.to_string()))?;
            let ticket = ticket.into_ticket()?;
            // The search index lags: keep only what the query asked for.
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
        // operationId: ShowTicket.
        let id = numeric_id("ticket", ticket_id)?.to_string();
        let found: TicketResponse = self
            .client
            .get(&["api", "v2", "tickets", &id])
            .send_json(ctx, "ticket")
            .await?;
        found.ticket.into_ticket()
    }

    async fn add_comment(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket_id: &str,
        body: &str,
        _idempotency_key: &str,
    ) -> Result<(), ConnectorError> {
        // operationId: UpdateTicket with a comment authored by the requester. Each send adds a
        // comment: never replayed (the ledger keeps it single).
        let id = numeric_id("ticket", ticket_id)?.to_string();
        let comment = json!({ "ticket": { "comment": {
            "body": body,
            "public": true,
            "author_id": numeric_id("requester", &requester.id)?,
        }}});
        self.client
            .request(reqwest::Method::PUT, &["api", "v2", "tickets", &id])
            .json(comment)
            .replay(Replay::Never)
            .send(ctx, "ticket")
            .await
            .map(|_| ())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // operationId: ShowCurrentUser.
        self.client
            .get(&["api", "v2", "users", "me"])
            .send(ctx, "account")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Zendesk",
    spec: "zendesk/",
    default_base_url: None,
    capabilities: &[Capability::Support],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "subdomain",
                aliases: &[],
                required: false,
                doc: "the account's subdomain (acme for acme.zendesk.com); required unless base_url is set",
            },
            SecretField {
                name: "email",
                aliases: &[],
                required: false,
                doc: "the agent's email the API token belongs to (with api_token)",
            },
            SecretField {
                name: "api_token",
                aliases: &["token"],
                required: false,
                doc: "an API token (Admin Center > Apps and integrations > Zendesk API)",
            },
            SecretField {
                name: "access_token",
                aliases: &[],
                required: false,
                doc: "an OAuth access token instead of email + api_token",
            },
        ],
        note: "either email + api_token or access_token; neither with an OAuth connection",
    },
    oauth: Some(OAuthSpec {
        // Zendesk's OAuth endpoints live on each account's subdomain: the operator's app sets
        // CALLBRIDGE_OAUTH_ZENDESK_AUTHORIZE_URL and _TOKEN_URL to the account's. These defaults
        // are deliberately unreachable (`.invalid`, RFC 6761), so an app without them fails
        // instead of sending a code or the client secret to some other Zendesk account.
        authorize_url: "https://set-the-account-url.zendesk.invalid/oauth/authorizations/new",
        token_url: "https://set-the-account-url.zendesk.invalid/oauth/tokens",
        revoke_url: None,
        scopes: &[(Capability::Support, &["tickets:write", "users:write", "read"])],
        pkce: true,
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

/// The policy profile: Zendesk honours `Idempotency-Key` on ticket creation.
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
        .with_idempotency_header(HeaderName::from_static("idempotency-key"))
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let base_url = match (ctx.base_url, ctx.credentials.text("subdomain")) {
        (Some(_), _) => ctx.base_url()?,
        (None, Some(subdomain)) => account_url(subdomain)?,
        (None, None) => return Err(BuildFailure::Missing("subdomain".into())),
    };
    let auth = if let Some(grant) = &ctx.oauth {
        Auth::OAuth(grant.tokens.clone())
    } else if let Some(email) = ctx.credentials.text("email") {
        api_token_auth(email, ctx.credentials.secret(&["api_token", "token"])?)
    } else if ctx.credentials.text("access_token").is_some() {
        Auth::Bearer(ctx.credentials.secret(&["access_token"])?)
    } else if ctx.credentials.text("api_token").is_some() {
        return Err(BuildFailure::Missing("email".into()));
    } else {
        return Err(BuildFailure::Missing("api_token".into()));
    };
    Ok(Built {
        support: Some(Arc::new(Zendesk::new(
            ctx.policy,
            ZendeskConfig { base_url, auth },
        ))),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::PolicyConfig;
    use crate::connectors::kit::Credentials;

    fn built(secret: &str, base_url: Option<&str>) -> Result<Built, BuildFailure> {
        let credentials = Credentials::parse(&SecretString::from(secret.to_owned()))?;
        credentials.validate(&VENDOR.secret)?;
        build(BuildContext {
            vendor: &VENDOR,
            base_url,
            credentials,
            policy: HttpPolicy::new(PolicyConfig::default()).expect("policy"),
            oauth: None,
        })
    }

    #[test]
    fn builds_from_a_subdomain_and_an_api_token_or_a_bearer_token() {
        let api = built(
            r#"{"subdomain": "acme", "email": "agent@acme.com", "api_token": "t0k"}"#,
            None,
        )
        .expect("api token");
        assert!(api.serves(Capability::Support));
        built(r#"{"subdomain": "acme", "access_token": "oauth"}"#, None).expect("bearer");
        built(r#"{"access_token": "oauth"}"#, Some("https://acme.zendesk.com/"))
            .expect("base_url instead of subdomain");
    }

    #[test]
    fn says_what_is_missing_without_quoting_secrets() {
        let no_subdomain = built(r#"{"email": "a@b.c", "api_token": "secret-1"}"#, None)
            .err()
            .expect("refused");
        assert_eq!(no_subdomain, BuildFailure::Missing("subdomain".into()));
        let no_email = built(r#"{"subdomain": "acme", "api_token": "secret-1"}"#, None)
            .err()
            .expect("refused");
        assert_eq!(no_email, BuildFailure::Missing("email".into()));
        let nothing = built(r#"{"subdomain": "acme"}"#, None)
            .err()
            .expect("refused");
        assert_eq!(nothing, BuildFailure::Missing("api_token".into()));
        assert!(built("bare-token", None).is_err(), "a bare token is refused");
    }

    #[test]
    fn a_subdomain_cannot_name_another_host() {
        assert_eq!(
            account_url("acme").expect("valid").as_str(),
            "https://acme.zendesk.com/"
        );
        for bad in ["evil.com/", "a@b", "-x", "", "acme.zendesk.com.evil"] {
            assert!(account_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_oauth_defaults_reach_no_real_account() {
        let spec = VENDOR.oauth.expect("oauth");
        for url in [spec.authorize_url, spec.token_url] {
            let host = Url::parse(url).expect("parses").host_str().map(str::to_owned);
            assert!(host.is_some_and(|h| h.ends_with(".invalid")), "{url}");
        }
    }

    #[test]
    fn statuses_map_to_the_neutral_words() {
        assert_eq!(status_of("pending"), TicketStatus::WaitingOnCustomer);
        assert_eq!(status_of("hold"), TicketStatus::OnHold);
        assert!(!status_of("solved").is_open());
        assert!(status_of("new").is_open());
    }
}

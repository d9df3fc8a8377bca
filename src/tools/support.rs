//! Support tools: `create_ticket`, `ticket_status` and `add_ticket_comment`, served by whichever
//! help desk the tenant configured behind the [`Support`] trait (Zendesk, Freshdesk, Intercom,
//! Crisp).
//!
//! Owns: the schemas and descriptions written for a speech model, finding (or creating) the
//! caller on the desk by phone or email, opening a ticket at most once per issue per call (the
//! ledger entry is keyed by the caller and the subject, so a model repeating itself, even with a
//! reworded description, reaches the desk once; the call's id goes to the desk as the ticket's
//! external reference), reading open tickets back in a few words, and commenting only on a ticket
//! whose requester is the caller (another person's ticket answers exactly like a missing one).
//! Reading and commenting identify the caller by the number they call from first; an email (which
//! anyone could name) is used only when that finds no one, and then `ticket_status` withholds the
//! subjects. It must not know which desk it talks to or build HTTP requests.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::capabilities::{
    CapabilityEnv, ToolInputs, caller_number, declaration, optional_email, optional_phone,
    optional_text, parse_args, required_text, speak_failure, spoken_in,
};
use super::{Tool, ToolContext, ToolError, ToolFuture};
use crate::connectors::http::RequestContext;
use crate::connectors::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, Ticket,
    TicketPriority,
};
use crate::realtime::ToolDeclaration;

pub const CREATE_TICKET: &str = "create_ticket";
pub const TICKET_STATUS: &str = "ticket_status";
pub const ADD_TICKET_COMMENT: &str = "add_ticket_comment";

/// Tickets read out at once.
pub const MAX_SPOKEN_TICKETS: usize = 3;
const MAX_SUBJECT_CHARS: usize = 150;
const MAX_BODY_CHARS: usize = 4000;

/// Which support tool a [`super::capabilities::ToolSpec`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupportTool {
    CreateTicket,
    TicketStatus,
    AddTicketComment,
}

/// The tool over the tenant's support connector; `None` when the connector serves no support.
pub fn build(inputs: ToolInputs<'_>, which: SupportTool) -> Option<Arc<dyn Tool>> {
    let support = Arc::clone(inputs.connector.support.as_ref()?);
    let env = Arc::clone(inputs.env);
    Some(match which {
        SupportTool::CreateTicket => Arc::new(CreateTicket { support, env }),
        SupportTool::TicketStatus => Arc::new(TicketStatusTool { support, env }),
        SupportTool::AddTicketComment => Arc::new(AddTicketComment { support, env }),
    })
}

const IDENTITY_SCHEMA_EMAIL: &str = "The caller's email, spelled back to them, if they gave one.";
const IDENTITY_SCHEMA_PHONE: &str = "Phone number with country code (e.g. +14155550100). Leave \
    out to use the number they are calling from.";

/// How the caller is known: the email they gave, and the phone they gave or call from.
fn identity(
    context: &ToolContext,
    email: Option<String>,
    phone: Option<String>,
) -> Result<RequesterInput, ToolError> {
    let input = RequesterInput {
        name: None,
        email: optional_email(email)?,
        phone: optional_phone(phone)?.or_else(|| caller_number(context)),
    };
    if input.email.is_none() && input.phone.is_none() {
        return Err(ToolError::InvalidArguments(
            "the caller's number is hidden; ask for their email address and pass it as email"
                .into(),
        ));
    }
    Ok(input)
}

/// Which of the caller's details found them on the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FoundBy {
    Phone,
    Email,
}

/// The caller on the desk: for a new ticket by email first (what they told us), then by phone;
/// for reading or commenting (`phone_first`) by the number first, the stronger identity.
async fn find_requester(
    support: &dyn Support,
    ctx: &RequestContext,
    input: &RequesterInput,
    phone_first: bool,
) -> Result<Option<(Requester, FoundBy)>, ConnectorError> {
    let email = input
        .email
        .clone()
        .map(|email| (ContactLookup::Email(email), FoundBy::Email));
    let phone = input
        .phone
        .clone()
        .map(|phone| (ContactLookup::Phone(phone), FoundBy::Phone));
    let lookups = if phone_first {
        [phone, email]
    } else {
        [email, phone]
    };
    for (lookup, by) in lookups.into_iter().flatten() {
        if let Some(found) = support.find_requester(ctx, &lookup).await? {
            return Ok(Some((found, by)));
        }
    }
    Ok(None)
}

/// The caller as reading and commenting know them: the number they call from (never a number the
/// model passes), and the email they gave.
fn reader_identity(
    context: &ToolContext,
    email: Option<String>,
) -> Result<RequesterInput, ToolError> {
    identity(context, email, None)
}

/// The subject as the ledger compares it: lower case words, punctuation and spacing ignored, so
/// "Heater broken." and "heater  broken" are one issue.
fn issue_key(subject: &str) -> String {
    subject
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ticket_json(ticket: &Ticket, env: &CapabilityEnv) -> Value {
    let mut out = json!({
        "ticket_id": ticket.id,
        "status": ticket.status.as_str(),
    });
    if let Some(subject) = &ticket.subject {
        out["subject"] = json!(subject);
    }
    if let Some(at) = ticket.updated_at {
        out["last_updated"] = json!(spoken_in(at, env.business_zone));
    }
    out
}

/// The same answer for a ticket that does not exist and one that is someone else's.
const NOT_THE_CALLERS_TICKET: &str = "I couldn't find that ticket under the caller's details. \
    Ask them to check the ticket number, or use ticket_status to list their open tickets.";

// --- create_ticket ---------------------------------------------------------------------------

/// `create_ticket`: opens a ticket for the caller, once per issue per call.
pub struct CreateTicket {
    pub support: Arc<dyn Support>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct CreateTicketArgs {
    subject: String,
    description: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

impl Tool for CreateTicket {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            CREATE_TICKET,
            "Open a support ticket for the caller's problem so the support team follows it up. \
             Summarise the problem in a short subject and a description in the caller's own \
             words. Call it once per problem: repeating it does not open a second ticket. \
             Afterwards tell the caller the ticket number.",
            json!({
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "description": "The problem in a few words, e.g. 'Heating not working'."},
                    "description": {"type": "string", "description": "What the caller said: what happened, since when, what they tried."},
                    "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"], "description": "urgent only for safety issues or a total outage. Default normal."},
                    "name": {"type": "string", "description": "The caller's full name, if they gave it."},
                    "email": {"type": "string", "description": IDENTITY_SCHEMA_EMAIL},
                    "phone": {"type": "string", "description": IDENTITY_SCHEMA_PHONE}
                },
                "required": ["subject", "description"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let support = Arc::clone(&self.support);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: CreateTicketArgs = parse_args(arguments)?;
            let subject = required_text("subject", &args.subject, MAX_SUBJECT_CHARS)?;
            let description = required_text("description", &args.description, MAX_BODY_CHARS)?;
            let priority = match args.priority.as_deref().filter(|p| !p.trim().is_empty()) {
                None => TicketPriority::Normal,
                Some(text) => TicketPriority::parse(text).ok_or_else(|| {
                    ToolError::InvalidArguments(format!(
                        "priority must be low, normal, high or urgent, not {text:?}"
                    ))
                })?,
            };
            let mut requester_input = identity(&context, args.email, args.phone)?;
            requester_input.name = optional_text("name", args.name, 200)?;
            // One ledger entry per caller and issue within this call: a repeat (same id, or a
            // new id after a reconnect, or a reworded description) gets the first ticket.
            let issue = json!({
                "subject": issue_key(&subject),
                "email": requester_input.email,
                "phone": requester_input.phone,
            });
            let ticket = NewTicket {
                subject,
                description,
                priority,
                external_ref: context.call_sid.clone(),
            };
            let tenant = Arc::clone(&env.tenant);
            let env_for_result = Arc::clone(&env);
            env.once(&context, CREATE_TICKET, &issue, |ctx| async move {
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                let fail = |err: ConnectorError| speak_failure(&tenant, CREATE_TICKET, &err);
                let requester =
                    match find_requester(support.as_ref(), &ctx, &requester_input, false)
                        .await
                        .map_err(fail)?
                    {
                        Some((found, _)) => found,
                        None => support
                            .create_requester(&ctx, &requester_input, &key)
                            .await
                            .map_err(fail)?,
                    };
                let created = support
                    .create_ticket(&ctx, &requester, &ticket, &key)
                    .await
                    .map_err(fail)?;
                let mut out = ticket_json(&created, &env_for_result);
                out["created"] = json!(true);
                out["priority"] = json!(ticket.priority.as_str());
                Ok(out)
            })
            .await
        })
    }
}

// --- ticket_status ---------------------------------------------------------------------------

/// `ticket_status`: the caller's open tickets, a few at a time.
pub struct TicketStatusTool {
    pub support: Arc<dyn Support>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct TicketStatusArgs {
    #[serde(default)]
    email: Option<String>,
}

impl Tool for TicketStatusTool {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            TICKET_STATUS,
            "List the caller's open support tickets with their status. Read each briefly: the \
             ticket number, the subject and where it stands. The caller is found by the number \
             they call from; pass their email only if they ask about tickets opened under it.",
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string", "description": IDENTITY_SCHEMA_EMAIL}
                }
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let support = Arc::clone(&self.support);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: TicketStatusArgs = parse_args(arguments)?;
            let input = reader_identity(&context, args.email)?;
            let ctx = env.request_context(&context);
            let fail = |err: ConnectorError| {
                ToolError::Failed(speak_failure(&env.tenant, TICKET_STATUS, &err))
            };
            let Some((requester, found_by)) = find_requester(support.as_ref(), &ctx, &input, true)
                .await
                .map_err(fail)?
            else {
                return Ok(json!({
                    "tickets": [],
                    "note": "There are no tickets for this caller. Offer to open one with create_ticket.",
                }));
            };
            let tickets = support.open_tickets(&ctx, &requester).await.map_err(fail)?;
            let open: Vec<&Ticket> = tickets.iter().filter(|t| t.status.is_open()).collect();
            let by_email_only = found_by == FoundBy::Email;
            let shown: Vec<Value> = open
                .iter()
                .take(MAX_SPOKEN_TICKETS)
                .map(|ticket| {
                    let mut entry = ticket_json(ticket, &env);
                    if by_email_only && let Some(fields) = entry.as_object_mut() {
                        // Anyone can name an email: what the tickets are about stays unsaid.
                        fields.remove("subject");
                    }
                    entry
                })
                .collect();
            let mut out = json!({
                "tickets": shown,
                "more_open": open.len().saturating_sub(MAX_SPOKEN_TICKETS),
            });
            if by_email_only {
                out["note"] = json!(
                    "Found by the email only, so the subjects are not given. Read the ticket \
                     numbers and statuses; the caller can ask about one by its number."
                );
            }
            if open.is_empty() {
                out["note"] = json!("The caller has no open tickets.");
            }
            Ok(out)
        })
    }
}

// --- add_ticket_comment ----------------------------------------------------------------------

/// `add_ticket_comment`: adds what the caller says to one of their own tickets, once.
pub struct AddTicketComment {
    pub support: Arc<dyn Support>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct AddCommentArgs {
    ticket_id: String,
    comment: String,
    #[serde(default)]
    email: Option<String>,
}

impl Tool for AddTicketComment {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            ADD_TICKET_COMMENT,
            "Add new information from the caller to one of their existing tickets (the ticket \
             number from create_ticket or ticket_status). Only the caller's own tickets can be \
             updated.",
            json!({
                "type": "object",
                "properties": {
                    "ticket_id": {"type": "string", "description": "The ticket number."},
                    "comment": {"type": "string", "description": "What to add, in the caller's words."},
                    "email": {"type": "string", "description": IDENTITY_SCHEMA_EMAIL}
                },
                "required": ["ticket_id", "comment"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let support = Arc::clone(&self.support);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: AddCommentArgs = parse_args(arguments.clone())?;
            let ticket_id = required_text("ticket_id", &args.ticket_id, 64)?
                .trim_start_matches('#')
                .to_owned();
            if !ticket_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            {
                return Err(ToolError::InvalidArguments(format!(
                    "ticket_id {ticket_id:?} should be the ticket number only, e.g. 1234"
                )));
            }
            let comment = required_text("comment", &args.comment, MAX_BODY_CHARS)?;
            let input = reader_identity(&context, args.email)?;
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, ADD_TICKET_COMMENT, &arguments, |ctx| async move {
                let fail = |err: ConnectorError| speak_failure(&tenant, ADD_TICKET_COMMENT, &err);
                let Some((requester, _)) = find_requester(support.as_ref(), &ctx, &input, true)
                    .await
                    .map_err(fail)?
                else {
                    return Err(NOT_THE_CALLERS_TICKET.to_owned());
                };
                let ticket = match support.ticket(&ctx, &ticket_id).await {
                    Ok(ticket) => ticket,
                    Err(ConnectorError::NotFound(_)) => {
                        return Err(NOT_THE_CALLERS_TICKET.to_owned());
                    }
                    Err(err) => return Err(fail(err)),
                };
                if ticket.requester_id.as_deref() != Some(requester.id.as_str()) {
                    tracing::info!(tenant = %tenant, tool = ADD_TICKET_COMMENT,
                        "comment refused: the ticket is not the caller's");
                    return Err(NOT_THE_CALLERS_TICKET.to_owned());
                }
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                support
                    .add_comment(&ctx, &requester, &ticket.id, &comment, &key)
                    .await
                    .map_err(fail)?;
                Ok(json!({ "added": true, "ticket_id": ticket.id }))
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_issue_however_it_is_spelled() {
        assert_eq!(issue_key("Heater broken."), "heater broken");
        assert_eq!(issue_key("  heater   BROKEN "), "heater broken");
        assert_ne!(issue_key("Heater broken"), issue_key("Boiler broken"));
    }

    #[test]
    fn priorities_are_the_four_words() {
        assert_eq!(
            TicketPriority::parse("URGENT"),
            Some(TicketPriority::Urgent)
        );
        assert_eq!(
            TicketPriority::parse("medium"),
            Some(TicketPriority::Normal)
        );
        assert_eq!(TicketPriority::parse("asap"), None);
    }
}

//! `send_message`: the model sends a text to the caller or to a named member of staff, by SMS,
//! WhatsApp or email, over whichever of those channels the tenant connected.
//!
//! Owns the rules of a send: the recipient is the caller (their caller id, or for email an
//! address they spelled out whose domain is on the tenant's allow-list) or a staff recipient from
//! the tenant's settings — never an address the model makes up; the do-not-call list applies to
//! phone channels; per-call and per-tenant limits (reserved in the store, given back when the
//! send fails); WhatsApp free text inside the 24-hour customer-service window and the tenant's
//! approved template outside it; and one send per tool call through the ledger. The text goes
//! back in the tool result, which the call records in its events. It must not build vendor
//! requests (that is each [`Messenger`]) or choose a vendor beyond the tenant's configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::capabilities::{CapabilityEnv, declaration, parse_args, speak_failure};
use super::resolver::build_connector_with;
use super::{Tool, ToolContext, ToolError, ToolFuture};
use crate::connectors::ConnectorError;
use crate::connectors::http::HttpPolicy;
use crate::connectors::kit::Capability;
use crate::connectors::messages::{
    Channel, Message, Messenger, Template, domain_matches, e164, email_address, masked,
};
use crate::connectors::registry;
use crate::oauth::OAuthService;
use crate::realtime::ToolDeclaration;
use crate::store::{
    ConnectorConfig, E164, MessagingSettings, SlotReservation, SqlStore, Store, TenantId,
};
use crate::tenant::vault::Vault;

pub const SEND_MESSAGE: &str = "send_message";
/// Longest text the model may send (a few SMS segments; a voice agent's message is short).
pub const MAX_TEXT_CHARS: usize = 1000;
/// The WhatsApp customer-service window.
pub const SERVICE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Channels the tool sends on (team chats are for staff notifications only).
const TOOL_CHANNELS: [Channel; 3] = [Channel::Sms, Channel::Whatsapp, Channel::Email];

/// The tenant's connected messaging channels, one messenger per channel (the most recently
/// updated configuration wins when two vendors serve one channel, e.g. SMTP and Gmail), and why
/// each configured one that failed to build is missing.
pub async fn messengers<S: Store>(
    configs: &[ConnectorConfig],
    vault: Option<&Vault<S>>,
    policy: &HttpPolicy,
    oauth: Option<&OAuthService>,
) -> (BTreeMap<Channel, Arc<dyn Messenger>>, Vec<String>) {
    let mut ordered: Vec<&ConnectorConfig> = configs
        .iter()
        .filter(|c| {
            registry::vendor(&c.spec.vendor).is_some_and(|v| v.serves(Capability::Messaging))
        })
        .collect();
    ordered.sort_by_key(|c| c.updated_at);
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for config in ordered {
        match build_connector_with(config, vault, policy, oauth).await {
            Ok(built) => {
                if let Some(messenger) = built.messenger {
                    out.insert(messenger.channel(), messenger);
                }
            }
            Err(err) => problems.push(err.to_string()),
        }
    }
    (out, problems)
}

/// The tool.
pub struct SendMessage {
    pub env: Arc<CapabilityEnv>,
    pub tenant: TenantId,
    pub store: SqlStore,
    pub settings: MessagingSettings,
    pub channels: BTreeMap<Channel, Arc<dyn Messenger>>,
}

impl SendMessage {
    /// The tool when the tenant has at least one of SMS, WhatsApp or email connected.
    pub fn new(
        env: Arc<CapabilityEnv>,
        tenant: TenantId,
        store: SqlStore,
        settings: MessagingSettings,
        mut channels: BTreeMap<Channel, Arc<dyn Messenger>>,
    ) -> Option<Self> {
        channels.retain(|channel, _| TOOL_CHANNELS.contains(channel));
        (!channels.is_empty()).then_some(Self {
            env,
            tenant,
            store,
            settings,
            channels,
        })
    }

    fn staff_names(&self) -> Vec<String> {
        self.settings
            .staff
            .iter()
            .filter(|s| Channel::parse(&s.channel).is_some_and(|c| self.channels.contains_key(&c)))
            .map(|s| s.name.clone())
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    recipient: String,
    #[serde(default)]
    channel: Option<String>,
    text: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    caller_email: Option<String>,
}

/// Where one send goes, decided before anything is sent.
struct Plan {
    channel: Channel,
    to: String,
    subject: Option<String>,
    text: String,
}

fn invalid(message: impl Into<String>) -> ToolError {
    ToolError::InvalidArguments(message.into())
}

impl SendMessage {
    fn plan(&self, context: &ToolContext, args: SendArgs) -> Result<Plan, ToolError> {
        let text = args.text.trim().to_owned();
        if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return Err(invalid(format!(
                "text must have 1 to {MAX_TEXT_CHARS} characters"
            )));
        }
        let asked = match args.channel.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                Channel::parse(name)
                    .filter(|c| self.channels.contains_key(c))
                    .ok_or_else(|| {
                        invalid(format!(
                            "channel must be one of {}",
                            self.channel_list().join(", ")
                        ))
                    })?,
            ),
        };
        let recipient = args.recipient.trim();
        let (channel, to) = if recipient.eq_ignore_ascii_case("caller") {
            let channel = asked
                .or_else(|| {
                    self.settings
                        .default_channel
                        .as_deref()
                        .and_then(Channel::parse)
                        .filter(|c| self.channels.contains_key(c))
                })
                .or_else(|| {
                    TOOL_CHANNELS
                        .into_iter()
                        .find(|c| c.is_phone() && self.channels.contains_key(c))
                })
                .ok_or_else(|| {
                    invalid("only email is connected: pass channel email and caller_email")
                })?;
            let to = if channel.is_phone() {
                e164(&context.caller).map_err(|_| {
                    invalid(
                        "the caller's number is hidden or not a mobile number; offer email \
                         instead or take a note for staff",
                    )
                })?
            } else {
                let Some(address) = args
                    .caller_email
                    .as_deref()
                    .filter(|a| !a.trim().is_empty())
                else {
                    return Err(invalid(
                        "caller_email is required to email the caller: ask them to spell it",
                    ));
                };
                let address = email_address(address).map_err(|_| {
                    invalid("caller_email is not an email address; spell it back and try again")
                })?;
                if !self
                    .settings
                    .email_domains
                    .iter()
                    .any(|d| domain_matches(&address, d))
                {
                    return Err(invalid(
                        "this business cannot email that address; offer a text message instead",
                    ));
                }
                address
            };
            (channel, to)
        } else {
            let Some(staff) = self
                .settings
                .staff
                .iter()
                .find(|s| s.name.eq_ignore_ascii_case(recipient))
            else {
                let mut allowed = vec!["caller".to_owned()];
                allowed.extend(self.staff_names());
                return Err(invalid(format!(
                    "recipient must be one of: {}",
                    allowed.join(", ")
                )));
            };
            let channel = Channel::parse(&staff.channel)
                .filter(|c| self.channels.contains_key(c))
                .ok_or_else(|| invalid(format!("{} cannot be messaged right now", staff.name)))?;
            if asked.is_some_and(|a| a != channel) {
                return Err(invalid(format!(
                    "{} is reached by {channel}; leave channel out",
                    staff.name
                )));
            }
            let to = channel
                .normalize_recipient(&staff.address)
                .map_err(|_| invalid(format!("{} cannot be messaged right now", staff.name)))?;
            (channel, to)
        };
        Ok(Plan {
            channel,
            to,
            subject: args
                .subject
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            text,
        })
    }

    fn channel_list(&self) -> Vec<&'static str> {
        self.channels.keys().map(|c| c.as_str()).collect()
    }
}

/// Whether `contact` wrote on WhatsApp within the service window.
async fn inside_window(store: &SqlStore, tenant: &TenantId, contact: &str) -> Result<bool, String> {
    let last = store
        .last_inbound_message(tenant, Channel::Whatsapp.as_str(), contact)
        .await
        .map_err(|err| err.to_string())?;
    let Some(last) = last else {
        return Ok(false);
    };
    let age_ms = jiff::Timestamp::now().as_millisecond() - last.as_millisecond();
    Ok(age_ms >= 0 && (age_ms as u128) < SERVICE_WINDOW.as_millis())
}

const NOT_SENT: &str = "The message could not be sent.";

/// How a WhatsApp message to `to` must go: `None` (free text) inside the 24-hour window, the
/// tenant's approved template with `text` as its parameter outside it; an error (a sentence the
/// model can say) when it is outside and the tenant has no template.
pub async fn whatsapp_template(
    store: &SqlStore,
    tenant: &TenantId,
    settings: &MessagingSettings,
    to: &str,
    text: &str,
) -> Result<Option<Template>, String> {
    let inside = inside_window(store, tenant, to).await.map_err(|err| {
        tracing::warn!(tenant = %tenant, error = %err, "service window lookup failed");
        NOT_SENT.to_owned()
    })?;
    if inside {
        return Ok(None);
    }
    let Some(template) = &settings.whatsapp_template else {
        return Err(
            "WhatsApp can't reach this person right now (they have not written in the \
                    last 24 hours); nothing was sent. Offer a text message instead."
                .into(),
        );
    };
    Ok(Some(Template {
        name: template.name.clone(),
        language: template.language.clone(),
        parameters: vec![text.to_owned()],
    }))
}

impl Tool for SendMessage {
    fn declaration(&self) -> ToolDeclaration {
        let mut recipients = vec!["caller".to_owned()];
        recipients.extend(self.staff_names());
        let channels = self.channel_list();
        declaration(
            SEND_MESSAGE,
            "Send a short written message: to the caller (a confirmation, an address, a link they \
             asked for) or to a member of staff by name (a message the caller left). Only send \
             to the caller when they asked for it or agreed. Say what you sent; never read out \
             phone numbers or addresses.",
            json!({
                "type": "object",
                "properties": {
                    "recipient": {
                        "type": "string",
                        "enum": recipients,
                        "description": "\"caller\", or the staff member to message."
                    },
                    "channel": {
                        "type": "string",
                        "enum": channels,
                        "description": "How to send it; leave out to use the usual channel."
                    },
                    "text": {
                        "type": "string",
                        "description": format!("The message, at most {MAX_TEXT_CHARS} characters, complete on its own.")
                    },
                    "subject": {"type": "string", "description": "Email subject line."},
                    "caller_email": {
                        "type": "string",
                        "description": "Only to email the caller: the address they spelled out, confirmed back to them."
                    }
                },
                "required": ["recipient", "text"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let planned =
            parse_args::<SendArgs>(arguments.clone()).and_then(|a| self.plan(&context, a));
        let env = Arc::clone(&self.env);
        let store = self.store.clone();
        let tenant = self.tenant.clone();
        let settings = self.settings.clone();
        let messenger = planned
            .as_ref()
            .ok()
            .and_then(|p| self.channels.get(&p.channel).cloned());
        Box::pin(async move {
            let plan = planned?;
            let messenger = messenger.ok_or_else(|| ToolError::Failed(NOT_SENT.into()))?;
            if plan.channel.is_phone() {
                let number =
                    E164::parse(&plan.to).map_err(|_| ToolError::Failed(NOT_SENT.into()))?;
                let opted_out = store
                    .is_do_not_call(&tenant, &number)
                    .await
                    .map_err(|err| {
                        tracing::warn!(tenant = %tenant, error = %err, "do-not-call lookup failed");
                        ToolError::Failed(NOT_SENT.into())
                    })?;
                if opted_out {
                    return Err(ToolError::Failed(
                        "That number has opted out of messages from this business; nothing was \
                         sent. Offer another way, such as email."
                            .into(),
                    ));
                }
            }
            let call_sid = context.call_sid.clone();
            let called = context.called.clone();
            let label = Arc::clone(&env.tenant);
            env.once(&context, SEND_MESSAGE, &arguments, |ctx| async move {
                let key = ctx
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| ctx.tool_call_id.clone());
                let reserved = store
                    .reserve_message(
                        &tenant,
                        &call_sid,
                        plan.channel.as_str(),
                        &plan.to,
                        &key,
                        settings.per_call_limit,
                        settings.per_tenant_daily_limit,
                    )
                    .await
                    .map_err(|err| {
                        tracing::warn!(tenant = %tenant, error = %err, "message reservation failed");
                        NOT_SENT.to_owned()
                    })?;
                match reserved {
                    SlotReservation::Reserved => {}
                    SlotReservation::CallLimit => {
                        return Err("The message limit for this call is reached; nothing was \
                                    sent. Offer to have staff follow up."
                            .into());
                    }
                    SlotReservation::TenantLimit => {
                        return Err("Messages cannot be sent right now; nothing was sent. Offer \
                                    to have staff follow up."
                            .into());
                    }
                }
                let mut message = Message {
                    to: plan.to.clone(),
                    from: Some(called).filter(|c| !c.is_empty()),
                    subject: plan.subject.clone(),
                    text: plan.text.clone(),
                    template: None,
                };
                if plan.channel == Channel::Whatsapp {
                    match whatsapp_template(&store, &tenant, &settings, &plan.to, &plan.text).await
                    {
                        Ok(template) => message.template = template,
                        Err(refusal) => {
                            let _ = store.release_message(&tenant, &key).await;
                            return Err(refusal);
                        }
                    }
                }
                match messenger.send(&ctx, &message).await {
                    Ok(sent) => {
                        tracing::info!(tenant = %tenant, channel = %plan.channel, form = sent.form,
                            "message sent");
                        let mut out = json!({
                            "sent": true,
                            "channel": plan.channel.as_str(),
                            "to": masked(plan.channel, &plan.to),
                            "text": plan.text,
                            "form": sent.form,
                        });
                        if let Some(subject) = &plan.subject {
                            out["subject"] = json!(subject);
                        }
                        Ok(out)
                    }
                    Err(err) => {
                        // Nothing went out for certain only when the vendor refused it; a lost
                        // answer keeps the reservation (it may have been sent).
                        if !matches!(&err, ConnectorError::Policy(p) if p.is_transient()) {
                            let _ = store.release_message(&tenant, &key).await;
                        }
                        Err(speak_failure(&label, SEND_MESSAGE, &err))
                    }
                }
            })
            .await
        })
    }
}

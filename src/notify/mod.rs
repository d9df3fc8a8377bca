//! Staff notifications: per-tenant rules "on this event, send on that channel to that
//! recipient", turned into durable, deduplicated outbox rows ([`Notifier::emit`]) and delivered by
//! [`worker::NotificationWorker`] over the tenant's messaging connectors (SMS, WhatsApp, email,
//! Slack, Teams) with retries and backoff.
//!
//! Owns the event vocabulary ([`NotifyEvent`]), rule validation, the dedup key (event type +
//! recipient + subject; a repeated event never notifies twice within the tenant's TTL, default
//! 6 h, across nodes and restarts, because the key is claimed in the store in the same
//! transaction as the outbox row) and the recipient `caller` (a confirmation to the person on the
//! call). It must not send from the caller's path (emit only writes rows) or build vendor requests.

pub mod worker;

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::connectors::messages::Channel;
use crate::store::{NewNotification, SqlStore, StoreError, TenantId};
use crate::tools::{Tool, ToolContext, ToolFuture};

/// What can notify staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    BookingCreated,
    BookingRescheduled,
    BookingCancelled,
    /// A call ended, with its outcome.
    CallEnded,
    /// A contact asked not to be called or messaged again.
    OptOut,
    TransferRequested,
    PaymentReceived,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 7] = [
        Self::BookingCreated,
        Self::BookingRescheduled,
        Self::BookingCancelled,
        Self::CallEnded,
        Self::OptOut,
        Self::TransferRequested,
        Self::PaymentReceived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingCreated => "booking.created",
            Self::BookingRescheduled => "booking.rescheduled",
            Self::BookingCancelled => "booking.cancelled",
            Self::CallEnded => "call.ended",
            Self::OptOut => "opt_out",
            Self::TransferRequested => "transfer.requested",
            Self::PaymentReceived => "payment.received",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text.trim())
    }
}

/// The recipient of a rule that means "the person on the call" (phone channels only).
pub const CALLER: &str = "caller";

/// Why a notification could not be configured or enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant has no working connector for the channel.
    #[error("no working {channel} connector: {reason}")]
    NotConfigured { channel: String, reason: String },
    /// The vendor did not take the message.
    #[error("the {channel} connector failed: {error}")]
    Send {
        channel: String,
        error: crate::connectors::ConnectorError,
    },
}

/// Sends one test message on `channel` now (not through the outbox): to `to` for SMS, WhatsApp
/// and email (checked like a rule's recipient, the do-not-call list applied), to the connector's
/// own channel for Slack and Teams. Returns the vendor's message id.
#[allow(clippy::too_many_arguments)] // the parts a send is built from, named at the call site
pub async fn send_test(
    store: &SqlStore,
    keyring: Option<crate::tenant::vault::Keyring>,
    policy: &crate::connectors::http::HttpPolicy,
    oauth: Option<&crate::oauth::OAuthService>,
    tenant: &TenantId,
    channel: Channel,
    to: Option<&str>,
    text: &str,
) -> Result<String, NotifyError> {
    use crate::store::Store;
    let recipient = match (channel.is_team_chat(), to) {
        (true, _) => "default".to_owned(),
        (false, Some(to)) => channel
            .normalize_recipient(to)
            .map_err(|err| NotifyError::Invalid(format!("--to: {err}")))?,
        (false, None) => {
            return Err(NotifyError::Invalid(format!(
                "a {channel} test needs a recipient (--to)"
            )));
        }
    };
    if channel.is_phone() {
        let number = crate::store::E164::parse(&recipient)?;
        if store.is_do_not_call(tenant, &number).await? {
            return Err(NotifyError::Invalid(
                "the recipient is on the tenant's do-not-call list".into(),
            ));
        }
    }
    let configs = store.list_connectors(tenant).await?;
    let vault = keyring.map(|keyring| crate::tenant::vault::Vault::new(store.clone(), keyring));
    let (channels, problems) =
        crate::tools::send_message::messengers(&configs, vault.as_ref(), policy, oauth).await;
    let Some(messenger) = channels.get(&channel) else {
        return Err(NotifyError::NotConfigured {
            channel: channel.to_string(),
            reason: problems
                .first()
                .cloned()
                .unwrap_or_else(|| "none is configured".into()),
        });
    };
    // Not about a call: an SMS goes from the tenant's number (unless the connector names one).
    let from = if channel == Channel::Sms {
        tenant_sms_sender(store, tenant).await?
    } else {
        None
    };
    let message = crate::connectors::messages::Message {
        to: recipient,
        from,
        subject: Some("callbridge test notification".into()),
        text: text.to_owned(),
        template: None,
    };
    let ctx = crate::connectors::http::RequestContext::new(
        tenant.as_str(),
        "notify-test",
        tokio::time::Instant::now() + std::time::Duration::from_secs(20),
    );
    messenger
        .send(&ctx, &message)
        .await
        .map(|sent| sent.id)
        .map_err(|error| NotifyError::Send {
            channel: channel.to_string(),
            error,
        })
}

/// A rule's event, channel and recipient, checked and in canonical form.
pub fn validate_rule(
    event: &str,
    channel: &str,
    recipient: &str,
) -> Result<(NotifyEvent, Channel, String), NotifyError> {
    let event = NotifyEvent::parse(event).ok_or_else(|| {
        NotifyError::Invalid(format!(
            "event must be one of {}",
            NotifyEvent::ALL.map(NotifyEvent::as_str).join(", ")
        ))
    })?;
    let channel = Channel::parse(channel).ok_or_else(|| {
        NotifyError::Invalid(format!(
            "channel must be one of {}",
            Channel::ALL.map(Channel::as_str).join(", ")
        ))
    })?;
    let recipient = recipient.trim();
    let recipient = if recipient.eq_ignore_ascii_case(CALLER) {
        if !channel.is_phone() {
            return Err(NotifyError::Invalid(
                "recipient caller is only for sms and whatsapp".into(),
            ));
        }
        CALLER.to_owned()
    } else {
        channel
            .normalize_recipient(recipient)
            .map_err(|err| NotifyError::Invalid(format!("recipient: {err}")))?
    };
    Ok((event, channel, recipient))
}

/// One occurrence of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub event: NotifyEvent,
    /// The short line (email subject, first line in a chat); part of the dedup key, so it should
    /// name the occurrence (`Booking bk_123 on Tuesday 4 March at 10:00`).
    pub subject: String,
    pub body: String,
    /// The caller's number when the event happened on a call (for rules to `caller`).
    pub caller: Option<String>,
    /// The number the caller dialled: the SMS sender when the tenant's account names none.
    pub called: Option<String>,
}

/// The SMS sender of a message that is not about a call (an inbound rule's message, a payment or
/// opt-out notification), as `send_message` sends from the number the caller dialled: the
/// tenant's own number (the first routed one). `None` when the tenant has none; the `twilio_sms`
/// connector's own `from` or Messaging Service, when its secret names one, wins over it anyway.
pub async fn tenant_sms_sender(
    store: &SqlStore,
    tenant: &TenantId,
) -> Result<Option<String>, StoreError> {
    use crate::store::Store;
    Ok(store
        .list_numbers(tenant)
        .await?
        .into_iter()
        .next()
        .map(|n| n.e164.as_str().to_owned()))
}

/// The dedup key of one notification: event type + channel and recipient + subject, hashed to a
/// fixed length.
pub fn dedupe_key(event: NotifyEvent, channel: &str, recipient: &str, subject: &str) -> String {
    let mut hash = Sha256::new();
    for part in [event.as_str(), channel, recipient, subject] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{hex}", event.as_str())
}

/// Turns events into outbox rows by the tenant's rules. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    store: SqlStore,
}

impl Notifier {
    pub fn new(store: SqlStore) -> Self {
        Self { store }
    }

    /// Enqueues one notification per matching rule, each at most once per dedup key and TTL;
    /// returns how many were enqueued (0 when all were duplicates or no rule matches).
    pub async fn emit(&self, tenant: &TenantId, notice: &Notice) -> Result<u32, NotifyError> {
        self.emit_keyed(tenant, notice, None, 0).await
    }

    /// [`Self::emit`] with the occurrence named by `reference` in the dedup key instead of the
    /// subject (a vendor's payment id: its events may word the subject differently), the key
    /// claimed for at least `min_ttl_ms` (a vendor that redelivers for days).
    pub async fn emit_keyed(
        &self,
        tenant: &TenantId,
        notice: &Notice,
        reference: Option<&str>,
        min_ttl_ms: i64,
    ) -> Result<u32, NotifyError> {
        let rules = self.store.list_notification_rules(tenant).await?;
        let matching: Vec<_> = rules
            .into_iter()
            .filter(|r| r.event == notice.event.as_str())
            .collect();
        if matching.is_empty() {
            return Ok(0);
        }
        let settings = self.store.messaging_settings(tenant).await?;
        let ttl_ms = i64::try_from(settings.dedup_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX)
            .max(min_ttl_ms);
        let subject: String = notice.subject.chars().take(200).collect();
        let occurrence = reference.unwrap_or(&subject);
        let mut sender = notice.called.clone().filter(|c| !c.is_empty());
        if sender.is_none() && matching.iter().any(|r| r.channel == Channel::Sms.as_str()) {
            sender = tenant_sms_sender(&self.store, tenant).await?;
        }
        let body: String = notice.body.chars().take(3000).collect();
        let mut enqueued = 0;
        for rule in matching {
            let recipient = if rule.recipient == CALLER {
                match notice
                    .caller
                    .as_deref()
                    .and_then(|c| crate::connectors::messages::e164(c).ok())
                {
                    Some(number) => number,
                    None => continue,
                }
            } else {
                rule.recipient.clone()
            };
            let key = dedupe_key(notice.event, &rule.channel, &recipient, occurrence);
            let written = self
                .store
                .enqueue_notification(&NewNotification {
                    tenant_id: tenant,
                    event: notice.event.as_str(),
                    channel: &rule.channel,
                    recipient: &recipient,
                    sender: sender.as_deref(),
                    subject: &subject,
                    body: &body,
                    dedupe_key: &key,
                    dedup_ttl_ms: ttl_ms,
                })
                .await?;
            if written {
                enqueued += 1;
            }
        }
        if enqueued > 0 {
            tracing::info!(tenant = %tenant, event = notice.event.as_str(), enqueued, "notifications enqueued");
        }
        Ok(enqueued)
    }
}

/// Emits [`NotifyEvent::OptOut`] for `number` (its notification failing is logged, never the
/// opt-out's failure). `how` says where it came from (`during a call`, `by an operator`).
pub async fn emit_opt_out(store: &SqlStore, tenant: &TenantId, number: &str, how: &str) {
    let notice = Notice {
        event: NotifyEvent::OptOut,
        subject: format!("Opt-out: {number}"),
        body: format!("{number} asked not to be called or messaged again ({how})."),
        caller: None,
        called: None,
    };
    if let Err(err) = Notifier::new(store.clone()).emit(tenant, &notice).await {
        tracing::warn!(tenant = %tenant, error = %err, "opt-out notification not enqueued");
    }
}

/// Emits `event` about `call` (`call.ended` with its outcome, `transfer.requested`); one
/// notification per call and rule, whatever repeats (the subject names the call).
pub async fn emit_for_call(
    store: &SqlStore,
    call: &crate::store::Call,
    event: NotifyEvent,
    detail: &str,
) {
    let (subject, body) = match event {
        NotifyEvent::CallEnded => (
            format!("Call {} ended: {detail}", call.id),
            format!("A call from {} to {} ended ({detail}).", call.from, call.to),
        ),
        _ => (
            format!("Transfer requested on call {}", call.id),
            format!(
                "The caller {} asked to speak to a person ({detail}).",
                call.from
            ),
        ),
    };
    let notice = Notice {
        event,
        subject,
        body,
        caller: Some(call.from.clone()),
        called: Some(call.to.clone()),
    };
    if let Err(err) = Notifier::new(store.clone())
        .emit(&call.tenant_id, &notice)
        .await
    {
        tracing::warn!(tenant = %call.tenant_id, event = event.as_str(), error = %err,
            "call notification not enqueued");
    }
}

/// A calendar tool that, when it succeeds, emits its booking event (booking made, moved,
/// cancelled) for the tenant's notification rules. The tool's answer is returned unchanged and
/// never waits on a failed notification.
pub struct NotifyOnSuccess {
    pub inner: Arc<dyn Tool>,
    pub event: NotifyEvent,
    pub notifier: Notifier,
    pub tenant: TenantId,
}

impl NotifyOnSuccess {
    /// The wrapper for a tool name whose success is a booking event, or the tool itself.
    pub fn wrap(tool: Arc<dyn Tool>, notifier: &Notifier, tenant: &TenantId) -> Arc<dyn Tool> {
        let name = tool.declaration().name;
        let event = match name.as_str() {
            "book_appointment" => NotifyEvent::BookingCreated,
            "reschedule_appointment" => NotifyEvent::BookingRescheduled,
            "cancel_appointment" => NotifyEvent::BookingCancelled,
            _ => return tool,
        };
        Arc::new(Self {
            inner: tool,
            event,
            notifier: notifier.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// The subject and body of a booking event from the tool's answer.
fn booking_notice(event: NotifyEvent, arguments: &Value, answer: &Value) -> (String, String) {
    let id = answer
        .get("booking_id")
        .and_then(Value::as_str)
        .or_else(|| arguments.get("booking_id").and_then(Value::as_str))
        .unwrap_or("");
    let when = answer.get("when").and_then(Value::as_str).unwrap_or("");
    let name = arguments.get("name").and_then(Value::as_str).unwrap_or("");
    let what = match event {
        NotifyEvent::BookingCreated => "Booking made",
        NotifyEvent::BookingRescheduled => "Booking moved",
        _ => "Booking cancelled",
    };
    let subject = if when.is_empty() {
        format!("{what}: {id}")
    } else {
        format!("{what}: {when}")
    };
    let mut body = format!("{what} by phone.");
    if !name.is_empty() {
        body.push_str(&format!(" Name: {name}."));
    }
    if !when.is_empty() {
        body.push_str(&format!(" When: {when}."));
    }
    if !id.is_empty() {
        body.push_str(&format!(" Reference: {id}."));
    }
    (format!("{subject} ({id})"), body)
}

impl Tool for NotifyOnSuccess {
    fn declaration(&self) -> crate::realtime::ToolDeclaration {
        self.inner.declaration()
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let inner = self.inner.invoke(context.clone(), arguments.clone());
        let notifier = self.notifier.clone();
        let tenant = self.tenant.clone();
        let event = self.event;
        Box::pin(async move {
            let answer = inner.await?;
            let (subject, body) = booking_notice(event, &arguments, &answer);
            let notice = Notice {
                event,
                subject,
                body,
                caller: Some(context.caller.clone()),
                called: Some(context.called.clone()),
            };
            if let Err(err) = notifier.emit(&tenant, &notice).await {
                tracing::warn!(tenant = %tenant, event = event.as_str(), error = %err,
                    "notification not enqueued");
            }
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_validated_and_canonical() {
        let (event, channel, to) =
            validate_rule("booking.created", "SMS", "+1 415 555 2671").expect("valid");
        assert_eq!(
            (event, channel, to.as_str()),
            (NotifyEvent::BookingCreated, Channel::Sms, "+14155552671")
        );
        assert!(validate_rule("booking.made", "sms", "+14155552671").is_err());
        assert!(validate_rule("opt_out", "email", "caller").is_err());
        assert!(validate_rule("opt_out", "email", "not an address").is_err());
        let (_, _, to) = validate_rule("call.ended", "whatsapp", "Caller").expect("caller");
        assert_eq!(to, CALLER);
        let (_, _, to) = validate_rule("call.ended", "slack", "").expect("slack");
        assert_eq!(to, "default");
    }

    #[test]
    fn the_dedup_key_is_per_event_recipient_and_subject() {
        let a = dedupe_key(NotifyEvent::BookingCreated, "sms", "+1", "Booking bk_1");
        assert_eq!(
            a,
            dedupe_key(NotifyEvent::BookingCreated, "sms", "+1", "Booking bk_1")
        );
        assert_ne!(
            a,
            dedupe_key(NotifyEvent::BookingCancelled, "sms", "+1", "Booking bk_1")
        );
        assert_ne!(
            a,
            dedupe_key(NotifyEvent::BookingCreated, "sms", "+2", "Booking bk_1")
        );
        assert_ne!(
            a,
            dedupe_key(NotifyEvent::BookingCreated, "sms", "+1", "Booking bk_2")
        );
        assert!(a.starts_with("booking.created:") && a.len() < 100);
    }
}

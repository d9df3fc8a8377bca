//! Processing the inbox: lease due events (any node, the store arbitrates), run each matching
//! rule's action once (an action already recorded for the event is skipped on a retry), then
//! mark the event done; a failure is retried with exponential backoff and, after the last
//! attempt, marked failed (replayable). A node that dies mid-event leaves a lease that runs out;
//! another node (or the restarted one) takes the event over.
//!
//! Built in: an SMS reply to a Twilio source whose body is an opt-out keyword (`STOP`, …) puts
//! the sender on the do-not-call list and cancels its pending calls, whatever the rules say; a
//! WhatsApp message records the sender's inbound time (the 24-hour service window); a payment
//! (a paid Stripe checkout, a succeeded Stripe payment intent, a paid Shopify order: see
//! [`super::payments`]) emits the staff notification `payment.received`, once per payment.
//!
//! It must not dial (rules enrol contacts; the campaign dispatcher dials), send a message (a
//! `message` action writes a notification outbox row; the notification worker sends), serve
//! HTTP or log a payload.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::event::text_at;
use super::payments::{self, Payment};
use super::rules::{self, Action, Condition};
use super::{InboundService, SourceKind};
use crate::campaign::normalize_number;
use crate::campaign::window::{CallingWindow, parse_zone, zones_for_number};
use crate::connectors::messages::{Channel, domain_matches};
use crate::notify::{Notice, Notifier, NotifyError, NotifyEvent};
use crate::store::{
    E164, Enrolment, InboundEvent, InboundRule, NewNotification, SlotReservation, StoreError,
    TenantId,
};

/// A message action's key stays claimed at least this long (a week: longer than any vendor
/// retries a delivery).
const INBOUND_DEDUP_MS: i64 = 7 * 24 * 3600 * 1000;

/// Keywords that opt a number out by SMS (Twilio's standard list).
pub const OPT_OUT_KEYWORDS: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];
/// The rule id of the built-in SMS opt-out in the action record.
pub const SMS_OPT_OUT_RULE: &str = "builtin:sms-opt-out";
/// The rule id of the built-in `payment.received` notification in the action record.
pub const PAYMENT_RECEIVED_RULE: &str = "builtin:payment-received";

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// This node's name in leases.
    pub node_id: String,
    /// Longest pause between two looks at the inbox (a stored event wakes this node at once).
    pub poll: Duration,
    /// How long a leased event is ours before another node may take it over.
    pub lease: Duration,
    /// Events leased per pass.
    pub batch: u32,
    /// Processing attempts before an event is marked failed.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt, capped at 5 minutes.
    pub backoff: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            node_id: format!("node-{:016x}", rand::random::<u64>()),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 20,
            max_attempts: 8,
            backoff: Duration::from_secs(2),
        }
    }
}

/// A running worker; [`WorkerHandle::shutdown`] stops it between passes.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Why processing one event failed (retried).
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Corrupt(String),
    #[error("notification: {0}")]
    Notify(#[from] NotifyError),
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub leased: usize,
    pub done: usize,
    pub retried: usize,
    pub failed: usize,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl InboundService {
    /// Starts this node's worker.
    pub fn spawn_worker(self, options: WorkerOptions) -> WorkerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                match self.process_due(&options).await {
                    // A full batch: more may be waiting.
                    Ok(report) if report.leased >= options.batch as usize => continue,
                    Ok(_) => {}
                    Err(e) => error!(error = %e, "inbound worker: cannot lease events"),
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(options.poll) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        WorkerHandle { stop, task }
    }

    /// One pass: lease due events and process each.
    pub async fn process_due(&self, options: &WorkerOptions) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        let events = self
            .store
            .claim_inbound_events(&options.node_id, now, ms(options.lease), options.batch)
            .await?;
        let mut report = PassReport {
            leased: events.len(),
            ..PassReport::default()
        };
        for event in events {
            let result = self.process(&event).await;
            let now = self.clock.now_ms();
            let finished = match &result {
                Ok(()) => {
                    report.done += 1;
                    self.metrics.inbound(kind_label(&event), "processed");
                    self.store
                        .finish_inbound_event(&event.id, &options.node_id, None, None, now)
                        .await
                }
                Err(e) => {
                    let retry = (event.attempts < options.max_attempts).then(|| {
                        let doublings = event.attempts.saturating_sub(1).min(16);
                        let delay = options
                            .backoff
                            .saturating_mul(1 << doublings)
                            .min(Duration::from_secs(300));
                        now + ms(delay)
                    });
                    if retry.is_some() {
                        report.retried += 1;
                        warn!(event = %event.id, attempt = event.attempts, error = %e,
                            "inbound event failed; retrying");
                    } else {
                        report.failed += 1;
                        self.metrics.inbound(kind_label(&event), "failed");
                        error!(event = %event.id, attempts = event.attempts, error = %e,
                            "inbound event failed; giving up (replay it once fixed)");
                    }
                    self.store
                        .finish_inbound_event(
                            &event.id,
                            &options.node_id,
                            Some(&e.to_string()),
                            retry,
                            now,
                        )
                        .await
                }
            };
            match finished {
                Ok(true) => {}
                Ok(false) => warn!(event = %event.id, "lease lost before the event was finished"),
                Err(e) => warn!(event = %event.id, error = %e, "cannot finish the inbound event"),
            }
        }
        Ok(report)
    }

    /// Runs every matching rule for `event` (once each).
    async fn process(&self, event: &InboundEvent) -> Result<(), ProcessError> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| ProcessError::Corrupt(format!("stored payload: {e}")))?;
        let tenant = &event.tenant_id;
        let done: Vec<String> = self
            .store
            .inbound_actions(tenant, &event.id)
            .await?
            .into_iter()
            .map(|a| a.rule_id)
            .collect();
        let kind = self
            .store
            .inbound_source(tenant, &event.source_id)
            .await
            .ok()
            .and_then(|s| SourceKind::parse(&s.kind));
        if kind == Some(SourceKind::Twilio)
            && !done.iter().any(|r| r == SMS_OPT_OUT_RULE)
            && let Some(body) = text_at(&payload, "Body")
            && OPT_OUT_KEYWORDS.contains(&body.trim().to_ascii_uppercase().as_str())
        {
            let (outcome, detail) = match text_at(&payload, "From").map(|f| E164::parse(&f)) {
                Some(Ok(number)) => self.opt_out(tenant, &number, "opted out by SMS").await?,
                _ => ("no_phone", None),
            };
            self.store
                .record_inbound_action(
                    tenant,
                    &event.id,
                    SMS_OPT_OUT_RULE,
                    "do_not_call",
                    outcome,
                    detail.as_deref(),
                )
                .await?;
        }
        if kind == Some(SourceKind::Whatsapp) {
            self.record_whatsapp_senders(tenant, &payload).await?;
        }
        if let Some(kind) = kind
            && !done.iter().any(|r| r == PAYMENT_RECEIVED_RULE)
            && let Some(payment) = payments::payment_of(kind, &event.event_type, &payload)
        {
            let (outcome, detail) = self.notify_payment(tenant, &payment).await?;
            self.store
                .record_inbound_action(
                    tenant,
                    &event.id,
                    PAYMENT_RECEIVED_RULE,
                    "notify",
                    outcome,
                    Some(&detail),
                )
                .await?;
        }
        let rules = self
            .store
            .list_inbound_rules(tenant, Some((&event.source_id, &event.event_type)))
            .await?;
        for rule in rules {
            if done.contains(&rule.id) {
                continue;
            }
            self.apply(event, &rule, &payload).await?;
        }
        Ok(())
    }

    async fn apply(
        &self,
        event: &InboundEvent,
        rule: &InboundRule,
        payload: &Value,
    ) -> Result<(), ProcessError> {
        let tenant = &event.tenant_id;
        let (filter, action) = match (
            serde_json::from_str::<Vec<Condition>>(&rule.filter),
            serde_json::from_str::<Action>(&rule.action),
        ) {
            (Ok(filter), Ok(action)) => (filter, action),
            _ => {
                self.store
                    .record_inbound_action(
                        tenant,
                        &event.id,
                        &rule.id,
                        "unknown",
                        "invalid_rule",
                        Some("the rule's stored filter or action cannot be read"),
                    )
                    .await?;
                return Ok(());
            }
        };
        if !rules::matches(&filter, payload) {
            return Ok(());
        }
        let (outcome, detail) = match &action {
            Action::Message { .. } => self.message(event, &rule.id, &action, payload).await?,
            _ => self.run(tenant, &action, payload).await?,
        };
        self.store
            .record_inbound_action(
                tenant,
                &event.id,
                &rule.id,
                action.kind(),
                outcome,
                detail.as_deref(),
            )
            .await?;
        info!(tenant = %tenant, event = %event.id, rule = %rule.id, action = action.kind(),
            outcome, "inbound rule applied");
        Ok(())
    }

    /// Carries out one action; returns its outcome and a detail for the record.
    async fn run(
        &self,
        tenant: &TenantId,
        action: &Action,
        payload: &Value,
    ) -> Result<(&'static str, Option<String>), ProcessError> {
        let path = action.phone_path().unwrap_or_default();
        let Some(raw) = text_at(payload, path) else {
            return Ok(("no_phone", Some(format!("nothing at {path}"))));
        };
        let number = match normalize_number(&raw) {
            Ok(number) => number,
            Err(e) => return Ok(("invalid_phone", Some(e.to_string()))),
        };
        let now = self.clock.now_ms();
        match action {
            Action::CancelCalls { .. } => {
                let n = self
                    .store
                    .cancel_pending_contacts(tenant, &number, "cancelled_by_event", now)
                    .await?;
                Ok(("cancelled", Some(format!("{n} pending call(s) cancelled"))))
            }
            Action::DoNotCall { reason, .. } => {
                let reason = reason.as_deref().unwrap_or("opted out (inbound event)");
                Ok(self.opt_out(tenant, &number, reason).await?)
            }
            Action::Call {
                contact,
                campaign_id: Some(campaign_id),
                ..
            }
            | Action::Enrol {
                contact,
                campaign_id,
            } => {
                if self.store.is_do_not_call(tenant, &number).await? {
                    return Ok((
                        "do_not_call",
                        Some("the number is on the do-not-call list".into()),
                    ));
                }
                let zones = match contact
                    .time_zone
                    .as_deref()
                    .and_then(|path| text_at(payload, path))
                {
                    Some(zone) => match parse_zone(&zone) {
                        Ok(zone) => vec![zone],
                        Err(e) => return Ok(("invalid_time_zone", Some(e.to_string()))),
                    },
                    None => match zones_for_number(&number) {
                        Ok(zones) => zones,
                        Err(e) => return Ok(("no_time_zone", Some(e.to_string()))),
                    },
                };
                let zone_names: Vec<String> = zones.iter().map(|z| z.name().to_owned()).collect();
                let variables = rules::variables(contact, payload);
                let enrolment = self
                    .store
                    .enrol_campaign_contact(
                        tenant,
                        campaign_id,
                        &number,
                        &zone_names,
                        &variables,
                        now,
                    )
                    .await?;
                let outcome = match enrolment {
                    Enrolment::Enrolled { .. } => "enrolled",
                    Enrolment::Requeued { .. } => "requeued",
                    Enrolment::AlreadyQueued { .. } => "already_queued",
                    Enrolment::Cancelled => {
                        return Ok((
                            "campaign_cancelled",
                            Some(format!("campaign {campaign_id}")),
                        ));
                    }
                };
                let campaign = self.store.campaign(tenant, campaign_id).await?;
                let when = match CallingWindow::from_spec(campaign.spec.window) {
                    Ok(window) if window.is_open(&zones, self.clock.now()) => "due now".to_owned(),
                    Ok(window) => match window.next_open(&zones, self.clock.now()) {
                        Some(at) => format!("deferred to {} (calling window)", at.to_rfc3339()),
                        None => "the calling window never opens".to_owned(),
                    },
                    Err(e) => e.to_string(),
                };
                Ok((outcome, Some(format!("campaign {campaign_id}: {when}"))))
            }
            Action::Call {
                campaign_id: None, ..
            } => Ok(("invalid_rule", Some("the call rule has no campaign".into()))),
            Action::Message { .. } => Ok(("invalid_rule", Some("not a call action".into()))),
        }
    }

    /// Enqueues a `message` action's notification: the recipient resolved and checked (the
    /// do-not-call list, the email allow-list), a slot of the tenant's message limits reserved
    /// and the outbox row written under a key of the event and rule, so a retry or a vendor's
    /// repeated delivery never sends twice.
    async fn message(
        &self,
        event: &InboundEvent,
        rule_id: &str,
        action: &Action,
        payload: &Value,
    ) -> Result<(&'static str, Option<String>), ProcessError> {
        let Action::Message {
            channel,
            to,
            staff,
            text,
            subject,
            variables,
        } = action
        else {
            return Ok(("invalid_rule", Some("not a message action".into())));
        };
        let tenant = &event.tenant_id;
        let Some(mut channel) = Channel::parse(channel) else {
            return Ok(("invalid_rule", Some(format!("unknown channel {channel}"))));
        };
        let settings = self.store.messaging_settings(tenant).await?;
        let recipient = match (to.as_deref(), staff.as_deref()) {
            (Some(path), _) => {
                let Some(raw) = text_at(payload, path) else {
                    return Ok(("no_recipient", Some(format!("nothing at {path}"))));
                };
                let Ok(address) = channel.normalize_recipient(&raw) else {
                    return Ok((
                        "invalid_recipient",
                        Some(format!("the value at {path} is not a {channel} recipient")),
                    ));
                };
                if channel == Channel::Email
                    && !settings
                        .email_domains
                        .iter()
                        .any(|d| domain_matches(&address, d))
                {
                    return Ok((
                        "email_domain_not_allowed",
                        Some("the address's domain is not on the tenant's email allow-list".into()),
                    ));
                }
                address
            }
            (None, Some(name)) => {
                if let Some(member) = settings
                    .staff
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
                {
                    match Channel::parse(&member.channel) {
                        Some(staff_channel) => channel = staff_channel,
                        None => {
                            return Ok((
                                "invalid_recipient",
                                Some(format!("staff {} has no usable channel", member.name)),
                            ));
                        }
                    }
                    match channel.normalize_recipient(&member.address) {
                        Ok(address) => address,
                        Err(_) => {
                            return Ok((
                                "invalid_recipient",
                                Some(format!("staff {} has no usable address", member.name)),
                            ));
                        }
                    }
                } else if channel.is_team_chat() {
                    "default".to_owned()
                } else {
                    match channel.normalize_recipient(name) {
                        Ok(address) => address,
                        Err(_) => {
                            return Ok((
                                "invalid_recipient",
                                Some(format!(
                                    "{name:?} is no staff member or {channel} recipient"
                                )),
                            ));
                        }
                    }
                }
            }
            (None, None) => "default".to_owned(),
        };
        if channel.is_phone() {
            let number = E164::parse(&recipient)?;
            if self.store.is_do_not_call(tenant, &number).await? {
                return Ok((
                    "do_not_call",
                    Some("the number is on the do-not-call list".into()),
                ));
            }
        }
        let values = rules::mapped(variables, payload);
        let body: String = rules::render(text, &values)
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(rules::MAX_MESSAGE_TEXT)
            .collect();
        let subject: String = match (channel, subject) {
            (_, Some(subject)) => rules::render(subject, &values),
            (Channel::Email, None) => "New message".to_owned(),
            _ => String::new(),
        }
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
        let key = format!("inbound:{}:{rule_id}", event.id);
        let reserved = self
            .store
            .reserve_message(
                tenant,
                &format!("inbound:{}", event.id),
                channel.as_str(),
                &recipient,
                &key,
                settings.per_call_limit,
                settings.per_tenant_daily_limit,
            )
            .await?;
        match reserved {
            SlotReservation::Reserved => {}
            SlotReservation::CallLimit => {
                return Ok((
                    "limit_reached",
                    Some("the event reached the per-call message limit".into()),
                ));
            }
            SlotReservation::TenantLimit => {
                return Ok((
                    "limit_reached",
                    Some("the tenant reached its daily message limit".into()),
                ));
            }
        }
        // An SMS goes from the tenant's number unless the connector names its own sender (without
        // either, the rule was refused when written; a number removed since fails the send).
        let sender = if channel == Channel::Sms {
            crate::notify::tenant_sms_sender(&self.store, tenant).await?
        } else {
            None
        };
        let ttl_ms =
            i64::try_from(settings.dedup_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let written = self
            .store
            .enqueue_notification(&NewNotification {
                tenant_id: tenant,
                event: "inbound.message",
                channel: channel.as_str(),
                recipient: &recipient,
                sender: sender.as_deref(),
                subject: &subject,
                body: &body,
                dedupe_key: &key,
                dedup_ttl_ms: ttl_ms.max(INBOUND_DEDUP_MS),
            })
            .await?;
        Ok(if written {
            ("enqueued", Some(format!("{channel} message queued")))
        } else {
            ("duplicate", Some("already queued for this event".into()))
        })
    }

    /// Emits `payment.received` for the tenant's rules, keyed by the payment's reference (not the
    /// event id: Stripe sends a checkout's `checkout.session.completed` and its
    /// `payment_intent.succeeded` for one payment) and claimed for at least a week.
    async fn notify_payment(
        &self,
        tenant: &TenantId,
        payment: &Payment,
    ) -> Result<(&'static str, String), ProcessError> {
        let (subject, body) = payment.subject_and_body();
        let notice = Notice {
            event: NotifyEvent::PaymentReceived,
            subject,
            body,
            caller: None,
            called: None,
        };
        let enqueued = Notifier::new(self.store.clone())
            .emit_keyed(tenant, &notice, Some(&payment.reference), INBOUND_DEDUP_MS)
            .await?;
        Ok(if enqueued > 0 {
            (
                "enqueued",
                format!("{enqueued} payment notification(s) queued"),
            )
        } else {
            (
                "not_enqueued",
                "no payment.received rule, or this payment was already notified".to_owned(),
            )
        })
    }

    /// Records the inbound time of each sender of a WhatsApp (Meta) delivery.
    async fn record_whatsapp_senders(
        &self,
        tenant: &TenantId,
        payload: &Value,
    ) -> Result<(), ProcessError> {
        let empty = Vec::new();
        let list = |v: Option<&Value>| v.and_then(Value::as_array).unwrap_or(&empty).clone();
        for entry in list(payload.get("entry")) {
            for change in list(entry.get("changes")) {
                for message in list(change.get("value").and_then(|v| v.get("messages"))) {
                    let Some(from) = text_at(&message, "from") else {
                        continue;
                    };
                    let Ok(contact) = crate::connectors::messages::e164(&format!(
                        "+{}",
                        from.trim_start_matches('+')
                    )) else {
                        continue;
                    };
                    let now = self.clock.now_ms();
                    // Meta's timestamp is in seconds; never later than now.
                    let at_ms = text_at(&message, "timestamp")
                        .and_then(|t| t.parse::<i64>().ok())
                        .map_or(now, |s| s.saturating_mul(1000).min(now));
                    self.store
                        .record_inbound_message(tenant, Channel::Whatsapp.as_str(), &contact, at_ms)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Puts `number` on the do-not-call list and cancels its pending calls.
    async fn opt_out(
        &self,
        tenant: &TenantId,
        number: &E164,
        reason: &str,
    ) -> Result<(&'static str, Option<String>), ProcessError> {
        self.store.add_do_not_call(tenant, number, reason).await?;
        let n = self
            .store
            .cancel_pending_contacts(tenant, number, "opted_out", self.clock.now_ms())
            .await?;
        info!(tenant = %tenant, cancelled = n, "number opted out by an inbound event");
        Ok((
            "added_to_do_not_call",
            Some(format!("{n} pending call(s) cancelled")),
        ))
    }
}

fn kind_label(event: &InboundEvent) -> &'static str {
    // The source id is the tenant's word; the metric label stays bounded.
    SourceKind::ALL
        .into_iter()
        .find(|k| event.source_id == k.as_str())
        .map_or("other", SourceKind::as_str)
}

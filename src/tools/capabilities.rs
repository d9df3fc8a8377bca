//! Capability tools: the vendor-neutral tools the speech model sees (`check_availability`,
//! `book_appointment`, `find_contact`, `order_status`, …), each served by whichever connector the
//! tenant configured behind the [`Calendar`], [`Crm`] or [`Commerce`] trait.
//!
//! Owns: the JSON schemas and descriptions written for a speech model, argument validation with
//! messages the model can act on, explicit time zones (the business's, and the caller's when
//! known), results trimmed to what can be read aloud, and running every side effect (book,
//! reschedule, cancel, upsert, note) through the tool-call ledger so a repeat or a replay after a
//! reconnect reaches the vendor once. A booking is also recorded as a meeting in the tenant's
//! CRM when it has one, inside the booking's ledger entry, and that meeting follows the booking
//! when it is rescheduled or cancelled (through the booking → meeting links of
//! [`super::meeting_links`]); the calendar change never depends on those writes. [`TOOLS`] is the
//! one list of capability tools ([`ToolSpec`]: name, capability, build), which the resolver reads.
//! It must not know which vendor it talks to, build HTTP requests, or choose a connector (that is
//! [`super::resolver`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::coupon_slots::SharedCouponSlots;
use super::ledger::{SharedLedger, ToolInvocation, ToolOutcome, args_hash, run_once};
use super::meeting_links::{MeetingLink, MeetingLinkError, SharedMeetingLinks};
use super::{Tool, ToolContext, ToolError, ToolFuture};
use crate::connectors::http::RequestContext;
use crate::connectors::kit::Built;
use crate::connectors::{
    Attendee, Booking, BookingStatus, Calendar, CallNote, CallOutcome, Commerce, ConnectorError,
    Contact, ContactInput, ContactLookup, CouponDiscount, Coupons, Crm, CrmMeeting, Deal,
    DealUpdate, Marketing, MeetingChange, OrderStatus, PaymentItem, Payments, Product, Slot,
    Subscription, TimeWindow,
};
use crate::realtime::ToolDeclaration;

pub const CHECK_AVAILABILITY: &str = "check_availability";
pub const BOOK_APPOINTMENT: &str = "book_appointment";
pub const RESCHEDULE_APPOINTMENT: &str = "reschedule_appointment";
pub const CANCEL_APPOINTMENT: &str = "cancel_appointment";
pub const FIND_CONTACT: &str = "find_contact";
pub const UPSERT_CONTACT: &str = "upsert_contact";
pub const LOG_CALL_NOTE: &str = "log_call_note";
pub const UPDATE_DEAL: &str = "update_deal";
pub const ORDER_STATUS: &str = "order_status";
pub const SEARCH_PRODUCTS: &str = "search_products";
pub const SEND_PAYMENT_LINK: &str = "send_payment_link";
pub const PAYMENT_LINK_STATUS: &str = "payment_link_status";
pub const CUSTOMER_PROFILE: &str = "customer_profile";
pub const SUBSCRIBE_TO_LIST: &str = "subscribe_to_list";
pub const CREATE_COUPON: &str = "create_coupon";

/// Which connector trait serves a capability tool (defined with the vendor recipe).
pub use crate::connectors::kit::Capability;

/// What a capability tool is built from.
pub struct ToolInputs<'a> {
    pub env: &'a Arc<CapabilityEnv>,
    /// The tenant's vendor serving the tool's capability (one field per capability).
    pub connector: &'a Built,
    /// The tenant's CRM, given only to tools whose spec asks for it ([`ToolSpec::crm_follow_up`])
    /// and only when the tenant has a working one.
    pub crm: Option<&'a CrmFollowUp>,
}

/// One capability tool: its name, the capability whose connector it needs, and how it is built.
/// The resolver reads [`TOOLS`] only; a new capability is its trait (in `connectors/`), its
/// field in [`Built`], and its tools' specs here.
pub struct ToolSpec {
    pub name: &'static str,
    pub capability: Capability,
    /// The tool keeps the tenant's CRM in step with what it changes (calendar writes).
    pub crm_follow_up: bool,
    /// `None` when the connector does not serve the capability after all.
    pub build: fn(ToolInputs<'_>) -> Option<Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec")
            .field("name", &self.name)
            .field("capability", &self.capability)
            .finish_non_exhaustive()
    }
}

/// Every capability tool, in declaration order.
pub static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: CHECK_AVAILABILITY,
        capability: Capability::Calendar,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(CheckAvailability {
                calendar: Arc::clone(i.connector.calendar.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: BOOK_APPOINTMENT,
        capability: Capability::Calendar,
        crm_follow_up: true,
        build: |i| {
            Some(Arc::new(BookAppointment {
                calendar: Arc::clone(i.connector.calendar.as_ref()?),
                crm: i.crm.cloned(),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: RESCHEDULE_APPOINTMENT,
        capability: Capability::Calendar,
        crm_follow_up: true,
        build: |i| {
            Some(Arc::new(RescheduleAppointment {
                calendar: Arc::clone(i.connector.calendar.as_ref()?),
                crm: i.crm.cloned(),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: CANCEL_APPOINTMENT,
        capability: Capability::Calendar,
        crm_follow_up: true,
        build: |i| {
            Some(Arc::new(CancelAppointment {
                calendar: Arc::clone(i.connector.calendar.as_ref()?),
                crm: i.crm.cloned(),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: FIND_CONTACT,
        capability: Capability::Crm,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(FindContact {
                crm: Arc::clone(i.connector.crm.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: UPSERT_CONTACT,
        capability: Capability::Crm,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(UpsertContact {
                crm: Arc::clone(i.connector.crm.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: LOG_CALL_NOTE,
        capability: Capability::Crm,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(LogCallNote {
                crm: Arc::clone(i.connector.crm.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: UPDATE_DEAL,
        capability: Capability::Crm,
        crm_follow_up: false,
        build: |i| {
            let crm = i.connector.crm.as_ref()?;
            // Offered only by CRMs with deals (HubSpot, Salesforce, …).
            crm.serves_deals().then(|| {
                Arc::new(UpdateDeal {
                    crm: Arc::clone(crm),
                    env: Arc::clone(i.env),
                }) as Arc<dyn Tool>
            })
        },
    },
    ToolSpec {
        name: ORDER_STATUS,
        capability: Capability::Commerce,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(OrderStatusTool {
                commerce: Arc::clone(i.connector.commerce.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: SEARCH_PRODUCTS,
        capability: Capability::Commerce,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(SearchProducts {
                commerce: Arc::clone(i.connector.commerce.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: super::support::CREATE_TICKET,
        capability: Capability::Support,
        crm_follow_up: false,
        build: |i| super::support::build(i, super::support::SupportTool::CreateTicket),
    },
    ToolSpec {
        name: super::support::TICKET_STATUS,
        capability: Capability::Support,
        crm_follow_up: false,
        build: |i| super::support::build(i, super::support::SupportTool::TicketStatus),
    },
    ToolSpec {
        name: super::support::ADD_TICKET_COMMENT,
        capability: Capability::Support,
        crm_follow_up: false,
        build: |i| super::support::build(i, super::support::SupportTool::AddTicketComment),
    },
    ToolSpec {
        name: SEND_PAYMENT_LINK,
        capability: Capability::Payments,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(SendPaymentLink {
                payments: Arc::clone(i.connector.payments.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: PAYMENT_LINK_STATUS,
        capability: Capability::Payments,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(PaymentLinkStatusTool {
                payments: Arc::clone(i.connector.payments.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: CUSTOMER_PROFILE,
        capability: Capability::Marketing,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(CustomerProfile {
                marketing: Arc::clone(i.connector.marketing.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: SUBSCRIBE_TO_LIST,
        capability: Capability::Marketing,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(SubscribeToList {
                marketing: Arc::clone(i.connector.marketing.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
    ToolSpec {
        name: CREATE_COUPON,
        capability: Capability::Coupons,
        crm_follow_up: false,
        build: |i| {
            Some(Arc::new(CreateCoupon {
                coupons: Arc::clone(i.connector.coupons.as_ref()?),
                slots: Arc::clone(i.env.coupon_slots.as_ref()?),
                env: Arc::clone(i.env),
            }))
        },
    },
];

/// The spec of a capability tool.
pub fn tool_spec(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|spec| spec.name == name)
}

/// The capability a tool name needs, if it is a capability tool.
pub fn capability_of(tool: &str) -> Option<Capability> {
    tool_spec(tool).map(|spec| spec.capability)
}

/// Slots read out at once: a caller can hold a handful of times in mind, not a page.
pub const MAX_SPOKEN_SLOTS: usize = 5;
/// Products read out at once.
pub const MAX_SPOKEN_PRODUCTS: usize = 3;
/// Variants per product read out.
const MAX_SPOKEN_VARIANTS: usize = 3;
/// Shipments per order read out.
const MAX_SPOKEN_SHIPMENTS: usize = 3;
/// Longest availability window: Calendly refuses more than 7 days, and a caller rarely needs more.
pub const MAX_AVAILABILITY_DAYS: u32 = 7;
const DEFAULT_DURATION_MINUTES: u32 = 30;
const MAX_NOTE_CHARS: usize = 4000;

/// What every capability tool of one tenant shares.
#[derive(Clone)]
pub struct CapabilityEnv {
    pub tenant: Arc<str>,
    /// The business's zone: slots are offered and spoken in it.
    pub business_zone: Tz,
    pub ledger: SharedLedger,
    /// Where `create_coupon` reserves its daily slots (the SQL store); without it the tool is
    /// not offered.
    pub coupon_slots: Option<SharedCouponSlots>,
    /// Time a vendor call may take (the registry's per-call deadline); ledger waits use it too.
    pub deadline: Duration,
}

impl std::fmt::Debug for CapabilityEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapabilityEnv")
            .field("tenant", &self.tenant)
            .field("business_zone", &self.business_zone)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl CapabilityEnv {
    pub(super) fn request_context(&self, context: &ToolContext) -> RequestContext {
        RequestContext::new(
            Arc::clone(&self.tenant),
            context.tool_call_id.clone(),
            Instant::now() + self.deadline,
        )
    }

    /// Runs a side effect at most once per (tool call id) and per (phone call, tool, arguments);
    /// `work` gets a request context carrying the ledger's idempotency key.
    pub(super) async fn once<F, Fut>(
        &self,
        context: &ToolContext,
        tool: &str,
        arguments: &Value,
        work: F,
    ) -> Result<Value, ToolError>
    where
        F: FnOnce(RequestContext) -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        let invocation = ToolInvocation {
            tenant: self.tenant.to_string(),
            call_id: context.call_sid.clone(),
            tool_call_id: context.tool_call_id.clone(),
            tool: tool.to_owned(),
            args_hash: args_hash(arguments),
        };
        let base = self.request_context(context);
        let deadline = base.deadline;
        let outcome = run_once(self.ledger.as_ref(), &invocation, deadline, |key| {
            work(base.with_idempotency_key(key))
        })
        .await;
        match outcome {
            Ok(ToolOutcome::Succeeded(value)) => Ok(value),
            Ok(ToolOutcome::Failed(message)) => Err(ToolError::Failed(message)),
            Err(err) => {
                tracing::warn!(tenant = %self.tenant, tool, error = %err, "tool-call ledger failed");
                Err(ToolError::Failed(
                    "I couldn't confirm whether that went through. Please don't repeat it yet; \
                     offer to check again in a moment."
                        .into(),
                ))
            }
        }
    }
}

/// A connector failure as a sentence the model can say, with a hint on what to do next. The
/// vendor detail goes to the log, never to the model.
pub(super) fn speak_failure(tenant: &str, tool: &str, err: &ConnectorError) -> String {
    tracing::warn!(tenant, tool, error = %err, "capability tool failed");
    super::record_diagnostic(&err.to_string());
    let hint = match err {
        ConnectorError::Conflict(_) => " Offer to check other times.",
        ConnectorError::NotFound(_) => " Ask the caller to check the details.",
        ConnectorError::Policy(policy) if policy.is_transient() => {
            " Apologise and offer to try again in a moment."
        }
        ConnectorError::Auth(_) | ConnectorError::Config(_) => " Offer to take a message instead.",
        _ => "",
    };
    match err {
        // Our own validation messages, written to be read: they say what is missing.
        ConnectorError::InvalidInput(detail) => format!("{} {detail}.", err.speakable()),
        _ => format!("{}{hint}", err.speakable()),
    }
}

/// Whether `err` says the vendor did not make the thing (so a reserved slot can be given back).
/// A transport failure, a timeout or an unreadable answer may hide a success: those keep it.
fn vendor_refused(err: &ConnectorError) -> bool {
    match err {
        ConnectorError::NotFound(_)
        | ConnectorError::Conflict(_)
        | ConnectorError::Rejected(_)
        | ConnectorError::InvalidInput(_)
        | ConnectorError::Auth(_)
        | ConnectorError::Config(_) => true,
        ConnectorError::Policy(_) | ConnectorError::UnexpectedResponse(_) => false,
    }
}

pub(super) fn parse_args<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|err| ToolError::InvalidArguments(err.to_string()))
}

fn parse_zone(field: &str, text: &str) -> Result<Tz, ToolError> {
    text.trim().parse::<Tz>().map_err(|_| {
        ToolError::InvalidArguments(format!(
            "{field} must be an IANA time zone such as Europe/London or America/New_York, not {text:?}"
        ))
    })
}

pub(super) fn optional_zone(field: &str, text: Option<&str>) -> Result<Option<Tz>, ToolError> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| parse_zone(field, t))
        .transpose()
}

fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, ToolError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            ToolError::InvalidArguments(format!(
                "{field} must be a start time exactly as check_availability returned it \
                 (RFC 3339 with an offset, e.g. 2025-03-04T15:00:00Z), not {text:?}"
            ))
        })
}

fn duration_of(minutes: Option<u32>) -> Result<chrono::Duration, ToolError> {
    let minutes = minutes.unwrap_or(DEFAULT_DURATION_MINUTES);
    if !(5..=480).contains(&minutes) {
        return Err(ToolError::InvalidArguments(format!(
            "duration_minutes must be between 5 and 480, not {minutes}"
        )));
    }
    Ok(chrono::Duration::minutes(i64::from(minutes)))
}

pub(super) fn required_text(
    field: &str,
    text: &str,
    max_chars: usize,
) -> Result<String, ToolError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ToolError::InvalidArguments(format!(
            "{field} must not be empty"
        )));
    }
    if trimmed.chars().count() > max_chars {
        return Err(ToolError::InvalidArguments(format!(
            "{field} is longer than {max_chars} characters; shorten it"
        )));
    }
    Ok(trimmed.to_owned())
}

pub(super) fn optional_text(
    field: &str,
    text: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, ToolError> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| required_text(field, &t, max_chars))
        .transpose()
}

pub(super) fn optional_email(text: Option<String>) -> Result<Option<String>, ToolError> {
    let Some(email) = optional_text("email", text, 254)? else {
        return Ok(None);
    };
    let valid = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(ToolError::InvalidArguments(format!(
            "email {email:?} is not an email address; spell it back to the caller and try again"
        )));
    }
    Ok(Some(email.to_lowercase()))
}

/// E.164 from what the model heard (`+1 415 555 0100`, `(415) 555-0100` with a `+` prefix).
pub(super) fn optional_phone(text: Option<String>) -> Result<Option<String>, ToolError> {
    let Some(raw) = optional_text("phone", text, 40)? else {
        return Ok(None);
    };
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let allowed = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if !raw.starts_with('+') || !allowed || !(8..=15).contains(&digits.len()) {
        return Err(ToolError::InvalidArguments(format!(
            "phone {raw:?} must be in international form with the country code, e.g. +14155550100"
        )));
    }
    Ok(Some(format!("+{digits}")))
}

/// The caller id when it is a real number (not `anonymous` or a client identity).
pub(super) fn caller_number(context: &ToolContext) -> Option<String> {
    optional_phone(Some(context.caller.clone())).ok().flatten()
}

pub(super) fn spoken_in(at: DateTime<Utc>, zone: Tz) -> String {
    Slot {
        start: at,
        end: at,
        zone,
    }
    .spoken()
}

fn slot_json(slot: &Slot, caller_zone: Option<Tz>) -> Value {
    let mut entry = json!({
        "start": crate::connectors::rfc3339(&slot.start),
        "spoken": slot.spoken(),
    });
    if let Some(zone) = caller_zone.filter(|zone| *zone != slot.zone) {
        entry["spoken_for_caller"] = json!(spoken_in(slot.start, zone));
    }
    entry
}

fn booking_json(booking: &Booking, caller_zone: Option<Tz>) -> Value {
    let status = match booking.status {
        BookingStatus::Confirmed => "confirmed",
        BookingStatus::Pending => "pending_confirmation_by_business",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::AwaitingCaller => "link_sent_caller_must_finish_booking",
    };
    let mut out = json!({
        "booking_id": booking.id,
        "status": status,
        "when": booking.slot.spoken(),
    });
    if let Some(zone) = caller_zone.filter(|zone| *zone != booking.slot.zone) {
        out["when_for_caller"] = json!(spoken_in(booking.slot.start, zone));
    }
    if let Some(link) = &booking.link {
        out["link"] = json!(link);
    }
    out
}

pub(super) fn declaration(name: &str, description: &str, parameters: Value) -> ToolDeclaration {
    ToolDeclaration {
        name: name.into(),
        description: description.into(),
        parameters,
    }
}

pub(super) const CALLER_ZONE_SCHEMA: &str = "The caller's own IANA time zone (e.g. Europe/London) if they said \
    they are in another zone than the business; leave out otherwise.";

// --- calendar ------------------------------------------------------------------------------------

/// `check_availability`: free slots over the next days, spoken in the business's zone.
pub struct CheckAvailability {
    pub calendar: Arc<dyn Calendar>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct AvailabilityArgs {
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    duration_minutes: Option<u32>,
    #[serde(default)]
    caller_time_zone: Option<String>,
}

/// The window to search: from local midnight of `date` (or now, if later) for `days` days.
fn availability_window(
    date: Option<&str>,
    days: Option<u32>,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<TimeWindow, ToolError> {
    let days = days.unwrap_or(1);
    if !(1..=MAX_AVAILABILITY_DAYS).contains(&days) {
        return Err(ToolError::InvalidArguments(format!(
            "days must be between 1 and {MAX_AVAILABILITY_DAYS}, not {days}"
        )));
    }
    let first_day = match date.filter(|d| !d.trim().is_empty()) {
        Some(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
            ToolError::InvalidArguments(format!(
                "date must be a calendar date like 2025-03-04, not {text:?}; call get_current_time \
                 first if you need today's date"
            ))
        })?,
        None => now.with_timezone(&zone).date_naive(),
    };
    let local_midnight = |day: NaiveDate| {
        zone.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|at| at.with_timezone(&Utc))
    };
    let last_day = first_day + chrono::Days::new(u64::from(days));
    let (Some(start), Some(end)) = (local_midnight(first_day), local_midnight(last_day)) else {
        return Err(ToolError::InvalidArguments(
            "that date has no midnight in the business's time zone; pick the next day".into(),
        ));
    };
    let start = start.max(now);
    TimeWindow::new(start, end).map_err(|_| {
        ToolError::InvalidArguments("that date is in the past; ask for a date from today on".into())
    })
}

impl Tool for CheckAvailability {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            CHECK_AVAILABILITY,
            "Find free appointment times. Use it before booking or rescheduling. Read the caller \
             two or three of the returned times using the 'spoken' text, and keep each 'start' \
             value exactly as returned to pass to book_appointment or reschedule_appointment.",
            json!({
                "type": "object",
                "properties": {
                    "date": {"type": "string", "description": "First day to search, YYYY-MM-DD in the business's time zone. Leave out for today."},
                    "days": {"type": "integer", "minimum": 1, "maximum": MAX_AVAILABILITY_DAYS, "description": "How many days to search from date. Default 1."},
                    "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "Length of the appointment. Default 30."},
                    "caller_time_zone": {"type": "string", "description": CALLER_ZONE_SCHEMA}
                }
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let calendar = Arc::clone(&self.calendar);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: AvailabilityArgs = parse_args(arguments)?;
            let caller_zone = optional_zone("caller_time_zone", args.caller_time_zone.as_deref())?;
            let duration = duration_of(args.duration_minutes)?;
            let window = availability_window(
                args.date.as_deref(),
                args.days,
                env.business_zone,
                Utc::now(),
            )?;
            let ctx = env.request_context(&context);
            let slots = calendar
                .availability(&ctx, window, duration, env.business_zone)
                .await
                .map_err(|err| {
                    ToolError::Failed(speak_failure(&env.tenant, CHECK_AVAILABILITY, &err))
                })?;
            let more_available = slots.len() > MAX_SPOKEN_SLOTS;
            let offered: Vec<Value> = slots
                .iter()
                .take(MAX_SPOKEN_SLOTS)
                .map(|slot| slot_json(slot, caller_zone))
                .collect();
            let mut out = json!({
                "business_time_zone": env.business_zone.name(),
                "searched_from": spoken_in(window.start, env.business_zone),
                "slots": offered,
                "more_available": more_available,
            });
            if slots.is_empty() {
                out["note"] = json!("No free times in that range. Offer to look at other days.");
            }
            Ok(out)
        })
    }
}

/// The tenant's CRM as the calendar tools use it.
#[derive(Clone)]
pub struct CrmFollowUp {
    pub crm: Arc<dyn Crm>,
    /// The CRM connector's vendor (`hubspot`), stored with each meeting id.
    pub vendor: Arc<str>,
    /// Where each booking's meeting id is kept.
    pub links: SharedMeetingLinks,
}

impl std::fmt::Debug for CrmFollowUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmFollowUp")
            .field("vendor", &self.vendor)
            .finish_non_exhaustive()
    }
}

/// `book_appointment`: books a slot from `check_availability` for the caller, once, and records
/// it as a meeting on the caller's contact when the tenant has a CRM.
pub struct BookAppointment {
    pub calendar: Arc<dyn Calendar>,
    /// The tenant's CRM, if it has one. A booking stands whatever happens there.
    pub crm: Option<CrmFollowUp>,
    pub env: Arc<CapabilityEnv>,
}

/// Time kept back from the tool deadline when a CRM write starts, so a slow CRM can never turn a
/// made calendar change into a timeout.
const CRM_FOLLOW_UP_RESERVE: Duration = Duration::from_millis(750);

/// What the model hears when the booking stands but the CRM has no record of it.
const CRM_NOT_RECORDED: &str = "The appointment is booked. It could not be added to the customer \
    records; there is no need to mention this to the caller.";
/// What the model hears when the booking moved but the CRM still shows the old time.
const CRM_NOT_MOVED: &str = "The appointment is moved. The customer records could not be updated \
    with the new time; there is no need to mention this to the caller.";
/// What the model hears when the booking is cancelled but the CRM still shows it scheduled.
const CRM_NOT_CANCELLED: &str = "The appointment is cancelled. The customer records could not be \
    updated; there is no need to mention this to the caller.";

/// Why a CRM write following a calendar change failed (logged, never spoken).
#[derive(Debug, thiserror::Error)]
enum FollowUpError {
    #[error(transparent)]
    Crm(#[from] ConnectorError),
    #[error(transparent)]
    Links(#[from] MeetingLinkError),
}

/// Runs a CRM write that follows a made calendar change, within the tool deadline less
/// [`CRM_FOLLOW_UP_RESERVE`]. `None` means it failed or ran out of time (logged as `failure`);
/// the calendar change stands either way.
async fn crm_follow_up<T, F, Fut>(
    ctx: &RequestContext,
    booking_ref: &str,
    failure: &'static str,
    work: F,
) -> Option<T>
where
    F: FnOnce(RequestContext) -> Fut,
    Fut: Future<Output = Result<T, FollowUpError>>,
{
    let crm_ctx = RequestContext {
        deadline: ctx
            .deadline
            .checked_sub(CRM_FOLLOW_UP_RESERVE)
            .unwrap_or(ctx.deadline),
        ..ctx.clone()
    };
    match tokio::time::timeout_at(crm_ctx.deadline, work(crm_ctx)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::warn!(tenant = %ctx.tenant, booking = %booking_ref, error = %err,
                crm_follow_up = "failed", "{failure}");
            None
        }
        Err(_) => {
            tracing::warn!(tenant = %ctx.tenant, booking = %booking_ref,
                crm_follow_up = "timeout", "{failure} (not confirmed in time)");
            None
        }
    }
}

/// The caller's contact, found by phone (else email) or created from the booking's details.
async fn contact_for_booking(
    crm: &dyn Crm,
    ctx: &RequestContext,
    attendee: &Attendee,
    idempotency_key: &str,
) -> Result<Contact, ConnectorError> {
    let lookups = [
        attendee.phone.clone().map(ContactLookup::Phone),
        attendee.email.clone().map(ContactLookup::Email),
    ];
    for lookup in lookups.into_iter().flatten() {
        if let Some(contact) = crm.find_contact(ctx, &lookup).await? {
            return Ok(contact);
        }
    }
    if attendee.phone.is_none() && attendee.email.is_none() {
        return Err(ConnectorError::InvalidInput(
            "no phone number or email to find the caller's record".into(),
        ));
    }
    let (first_name, last_name) = match attendee.name.split_once(' ') {
        Some((first, last)) => (first.to_owned(), Some(last.trim().to_owned())),
        None => (attendee.name.clone(), None),
    };
    let input = ContactInput {
        first_name: Some(first_name),
        last_name,
        email: attendee.email.clone(),
        phone: attendee.phone.clone(),
    };
    crm.upsert_contact(ctx, &input, idempotency_key).await
}

/// Records `booking` as a meeting on the caller's contact; returns the meeting's id.
async fn record_booking_in_crm(
    crm: &dyn Crm,
    ctx: &RequestContext,
    attendee: &Attendee,
    booking: &Booking,
    idempotency_key: &str,
) -> Result<String, ConnectorError> {
    let contact = contact_for_booking(crm, ctx, attendee, idempotency_key).await?;
    let meeting = CrmMeeting {
        title: format!("Appointment: {}", attendee.name),
        start: booking.slot.start,
        end: booking.slot.end,
        body: format!(
            "Booked by phone for {} on {}. Booking reference: {}.",
            attendee.name,
            booking.slot.spoken(),
            booking.id
        ),
    };
    crm.record_meeting(ctx, &contact.id, &meeting, idempotency_key)
        .await
}

/// Adds the CRM record of a made booking to the tool result: its meeting id, or a note for the
/// model when it failed (logged; the booking stands either way). The meeting id is kept under the
/// booking's reference so a later reschedule or cancellation reaches the same meeting.
async fn follow_up_in_crm(
    follow_up: &CrmFollowUp,
    ctx: &RequestContext,
    attendee: &Attendee,
    booking: &Booking,
    out: &mut Value,
) {
    // A booking the caller still has to finish through a link is not an appointment yet.
    if booking.status == BookingStatus::AwaitingCaller {
        return;
    }
    let key = ctx.idempotency_key.clone().unwrap_or_default();
    let crm = follow_up.crm.as_ref();
    let recorded = crm_follow_up(
        ctx,
        &booking.id,
        "booking made, CRM meeting not recorded",
        |crm_ctx| async move {
            Ok(record_booking_in_crm(crm, &crm_ctx, attendee, booking, &key).await?)
        },
    )
    .await;
    let Some(meeting_id) = recorded else {
        out["crm_note"] = json!(CRM_NOT_RECORDED);
        return;
    };
    out["crm_meeting_id"] = json!(meeting_id);
    let link = MeetingLink {
        crm: follow_up.vendor.to_string(),
        meeting_id,
    };
    if let Err(err) = follow_up
        .links
        .remember(&ctx.tenant, &booking.id, &link)
        .await
    {
        // The meeting exists; only a later reschedule or cancellation will not reach it.
        tracing::warn!(tenant = %ctx.tenant, booking = %booking.id, error = %err,
            crm_follow_up = "unlinked", "CRM meeting recorded but not linked to the booking");
    }
}

/// Brings the meeting recorded for `booking_ref` in step with `change`, filing it under
/// `new_ref` first when the calendar gave the booking a new reference. A booking with no recorded
/// meeting in this CRM (booked before meetings were linked, or under another CRM) is left alone;
/// a failure becomes `note` in the tool result (logged; the calendar change stands).
async fn update_recorded_meeting(
    follow_up: &CrmFollowUp,
    ctx: &RequestContext,
    booking_ref: &str,
    new_ref: Option<&str>,
    change: MeetingChange,
    note: &'static str,
    out: &mut Value,
) {
    let tenant = &ctx.tenant;
    let updated = crm_follow_up(
        ctx,
        booking_ref,
        "calendar changed, CRM meeting not updated",
        |crm_ctx| async move {
            let Some(link) = follow_up.links.find(tenant, booking_ref).await? else {
                return Ok(None);
            };
            if link.crm != *follow_up.vendor {
                tracing::info!(tenant = %tenant, booking = %booking_ref, crm = %link.crm,
                    "the booking's meeting is in another CRM; not updated");
                return Ok(None);
            }
            if let Some(new_ref) = new_ref.filter(|new_ref| *new_ref != booking_ref)
                && let Err(err) = follow_up.links.refile(tenant, booking_ref, new_ref).await
            {
                // This change still reaches the meeting; a later one under new_ref will not.
                tracing::warn!(tenant = %tenant, booking = %new_ref, error = %err,
                    crm_follow_up = "unlinked", "CRM meeting not linked to the new booking reference");
            }
            follow_up
                .crm
                .update_meeting(&crm_ctx, &link.meeting_id, &change)
                .await?;
            Ok(Some(link.meeting_id))
        },
    )
    .await;
    match updated {
        Some(Some(meeting_id)) => out["crm_meeting_id"] = json!(meeting_id),
        Some(None) => {}
        None => out["crm_note"] = json!(note),
    }
}

#[derive(Deserialize)]
struct BookArgs {
    start: String,
    #[serde(default)]
    duration_minutes: Option<u32>,
    name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    caller_time_zone: Option<String>,
}

impl Tool for BookAppointment {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            BOOK_APPOINTMENT,
            "Book an appointment at a time the caller chose from check_availability. Confirm the \
             time and the caller's name first. Call it once per booking: repeating it does not \
             book twice. Afterwards read back the 'when' text; if a 'link' is returned, tell the \
             caller it will be sent to them to finish the booking.",
            json!({
                "type": "object",
                "properties": {
                    "start": {"type": "string", "description": "The slot's 'start' value exactly as check_availability returned it."},
                    "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "Same length as used in check_availability. Default 30."},
                    "name": {"type": "string", "description": "The caller's full name."},
                    "email": {"type": "string", "description": "The caller's email, spelled back to them, if they gave one."},
                    "phone": {"type": "string", "description": "Phone number with country code (e.g. +14155550100). Leave out to use the number they are calling from."},
                    "caller_time_zone": {"type": "string", "description": CALLER_ZONE_SCHEMA}
                },
                "required": ["start", "name"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let calendar = Arc::clone(&self.calendar);
        let crm = self.crm.clone();
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: BookArgs = parse_args(arguments.clone())?;
            let start = parse_instant("start", &args.start)?;
            let duration = duration_of(args.duration_minutes)?;
            let caller_zone = optional_zone("caller_time_zone", args.caller_time_zone.as_deref())?;
            let attendee = Attendee {
                name: required_text("name", &args.name, 200)?,
                email: optional_email(args.email)?,
                phone: optional_phone(args.phone)?.or_else(|| caller_number(&context)),
                zone: caller_zone,
            };
            if start <= Utc::now() {
                return Err(ToolError::InvalidArguments(
                    "that start time is in the past; check availability again".into(),
                ));
            }
            let slot = Slot {
                start,
                end: start + duration,
                zone: env.business_zone,
            };
            let tenant = Arc::clone(&env.tenant);
            // The CRM write runs inside the same ledger entry as the booking: a replayed
            // book_appointment gets the stored result and records no second meeting.
            env.once(&context, BOOK_APPOINTMENT, &arguments, |ctx| async move {
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                let booking = calendar
                    .book(&ctx, &slot, &attendee, &key)
                    .await
                    .map_err(|err| speak_failure(&tenant, BOOK_APPOINTMENT, &err))?;
                let mut out = booking_json(&booking, caller_zone);
                if let Some(follow_up) = &crm {
                    follow_up_in_crm(follow_up, &ctx, &attendee, &booking, &mut out).await;
                }
                Ok(out)
            })
            .await
        })
    }
}

/// `reschedule_appointment`: moves a booking to a new slot, once, and its CRM meeting with it.
pub struct RescheduleAppointment {
    pub calendar: Arc<dyn Calendar>,
    /// The tenant's CRM, if it has one. The move stands whatever happens there.
    pub crm: Option<CrmFollowUp>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct RescheduleArgs {
    booking_id: String,
    new_start: String,
    #[serde(default)]
    duration_minutes: Option<u32>,
    #[serde(default)]
    caller_time_zone: Option<String>,
}

impl Tool for RescheduleAppointment {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            RESCHEDULE_APPOINTMENT,
            "Move an existing appointment to a new time the caller chose from check_availability. \
             Needs the booking id from book_appointment. Confirm the new time first.",
            json!({
                "type": "object",
                "properties": {
                    "booking_id": {"type": "string", "description": "The booking_id returned when the appointment was booked."},
                    "new_start": {"type": "string", "description": "The new slot's 'start' value exactly as check_availability returned it."},
                    "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "Length of the appointment. Default 30."},
                    "caller_time_zone": {"type": "string", "description": CALLER_ZONE_SCHEMA}
                },
                "required": ["booking_id", "new_start"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let calendar = Arc::clone(&self.calendar);
        let crm = self.crm.clone();
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: RescheduleArgs = parse_args(arguments.clone())?;
            let booking_id = required_text("booking_id", &args.booking_id, 256)?;
            let start = parse_instant("new_start", &args.new_start)?;
            let duration = duration_of(args.duration_minutes)?;
            let caller_zone = optional_zone("caller_time_zone", args.caller_time_zone.as_deref())?;
            if start <= Utc::now() {
                return Err(ToolError::InvalidArguments(
                    "that start time is in the past; check availability again".into(),
                ));
            }
            let slot = Slot {
                start,
                end: start + duration,
                zone: env.business_zone,
            };
            let tenant = Arc::clone(&env.tenant);
            env.once(
                &context,
                RESCHEDULE_APPOINTMENT,
                &arguments,
                |ctx| async move {
                    let key = ctx.idempotency_key.clone().unwrap_or_default();
                    let booking = calendar
                        .reschedule(&ctx, &booking_id, &slot, &key)
                        .await
                        .map_err(|err| speak_failure(&tenant, RESCHEDULE_APPOINTMENT, &err))?;
                    let mut out = booking_json(&booking, caller_zone);
                    if let Some(follow_up) = &crm {
                        let change = MeetingChange::Moved {
                            start: booking.slot.start,
                            end: booking.slot.end,
                        };
                        update_recorded_meeting(
                            follow_up,
                            &ctx,
                            &booking_id,
                            Some(&booking.id),
                            change,
                            CRM_NOT_MOVED,
                            &mut out,
                        )
                        .await;
                    }
                    Ok(out)
                },
            )
            .await
        })
    }
}

/// `cancel_appointment`: cancels a booking, once, and marks its CRM meeting cancelled.
pub struct CancelAppointment {
    pub calendar: Arc<dyn Calendar>,
    /// The tenant's CRM, if it has one. The cancellation stands whatever happens there.
    pub crm: Option<CrmFollowUp>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct CancelArgs {
    booking_id: String,
    #[serde(default)]
    reason: Option<String>,
}

impl Tool for CancelAppointment {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            CANCEL_APPOINTMENT,
            "Cancel an existing appointment. Needs the booking id from book_appointment. Confirm \
             with the caller before cancelling.",
            json!({
                "type": "object",
                "properties": {
                    "booking_id": {"type": "string", "description": "The booking_id returned when the appointment was booked."},
                    "reason": {"type": "string", "description": "Why the caller cancels, in a few words."}
                },
                "required": ["booking_id"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let calendar = Arc::clone(&self.calendar);
        let crm = self.crm.clone();
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: CancelArgs = parse_args(arguments.clone())?;
            let booking_id = required_text("booking_id", &args.booking_id, 256)?;
            let reason = optional_text("reason", args.reason, 500)?;
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, CANCEL_APPOINTMENT, &arguments, |ctx| async move {
                calendar
                    .cancel(&ctx, &booking_id, reason.as_deref())
                    .await
                    .map_err(|err| speak_failure(&tenant, CANCEL_APPOINTMENT, &err))?;
                let mut out = json!({ "cancelled": true, "booking_id": booking_id });
                if let Some(follow_up) = &crm {
                    update_recorded_meeting(
                        follow_up,
                        &ctx,
                        &booking_id,
                        None,
                        MeetingChange::Cancelled,
                        CRM_NOT_CANCELLED,
                        &mut out,
                    )
                    .await;
                }
                Ok(out)
            })
            .await
        })
    }
}

// --- CRM -----------------------------------------------------------------------------------------

/// What the model may learn about a contact: enough to greet and confirm, not the whole record
/// (a caller could name someone else's email).
fn contact_json(contact: &Contact) -> Value {
    json!({
        "contact_id": contact.id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "has_email": contact.email.is_some(),
        "has_phone": contact.phone.is_some(),
        "company": contact.company,
    })
}

/// `find_contact`: the caller's CRM record, by the number they call from or what they said.
pub struct FindContact {
    pub crm: Arc<dyn Crm>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct FindContactArgs {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl Tool for FindContact {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            FIND_CONTACT,
            "Look the caller up in the customer records. With no arguments it uses the number \
             they are calling from. Returns their name if known, so you can greet them.",
            json!({
                "type": "object",
                "properties": {
                    "phone": {"type": "string", "description": "Phone number with country code, if the caller gave another number."},
                    "email": {"type": "string", "description": "Email the caller gave, spelled back to them."}
                }
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let crm = Arc::clone(&self.crm);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: FindContactArgs = parse_args(arguments)?;
            let lookup = match (optional_email(args.email)?, optional_phone(args.phone)?) {
                (Some(email), _) => ContactLookup::Email(email),
                (None, Some(phone)) => ContactLookup::Phone(phone),
                (None, None) => match caller_number(&context) {
                    Some(phone) => ContactLookup::Phone(phone),
                    None => {
                        return Err(ToolError::InvalidArguments(
                            "the caller's number is hidden; ask for their email or phone number"
                                .into(),
                        ));
                    }
                },
            };
            let ctx = env.request_context(&context);
            let found = crm
                .find_contact(&ctx, &lookup)
                .await
                .map_err(|err| ToolError::Failed(speak_failure(&env.tenant, FIND_CONTACT, &err)))?;
            Ok(match found {
                Some(contact) => json!({ "found": true, "contact": contact_json(&contact) }),
                None => json!({ "found": false }),
            })
        })
    }
}

/// `upsert_contact`: creates or updates the caller's record, once.
pub struct UpsertContact {
    pub crm: Arc<dyn Crm>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct UpsertContactArgs {
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

impl Tool for UpsertContact {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            UPSERT_CONTACT,
            "Save the caller's details in the customer records (creates them, or updates the \
             record with the same email or phone). Spell names and emails back before saving.",
            json!({
                "type": "object",
                "properties": {
                    "first_name": {"type": "string"},
                    "last_name": {"type": "string"},
                    "email": {"type": "string"},
                    "phone": {"type": "string", "description": "With country code. Leave out to use the number they are calling from."}
                }
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let crm = Arc::clone(&self.crm);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: UpsertContactArgs = parse_args(arguments.clone())?;
            let input = ContactInput {
                first_name: optional_text("first_name", args.first_name, 100)?,
                last_name: optional_text("last_name", args.last_name, 100)?,
                email: optional_email(args.email)?,
                phone: optional_phone(args.phone)?.or_else(|| caller_number(&context)),
            };
            if input.email.is_none() && input.phone.is_none() {
                return Err(ToolError::InvalidArguments(
                    "a contact needs an email or a phone number; ask the caller for one".into(),
                ));
            }
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, UPSERT_CONTACT, &arguments, |ctx| async move {
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                crm.upsert_contact(&ctx, &input, &key)
                    .await
                    .map(|contact| json!({ "saved": true, "contact": contact_json(&contact) }))
                    .map_err(|err| speak_failure(&tenant, UPSERT_CONTACT, &err))
            })
            .await
        })
    }
}

/// `log_call_note`: attaches a summary of the call to the caller's record, once.
pub struct LogCallNote {
    pub crm: Arc<dyn Crm>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct LogCallNoteArgs {
    note: String,
    #[serde(default)]
    contact_id: Option<String>,
}

impl Tool for LogCallNote {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            LOG_CALL_NOTE,
            "Write a short note about this call into the caller's customer record (what they \
             wanted, what was agreed). Uses the contact found by find_contact or saved by \
             upsert_contact; with no contact_id it looks the caller up by their number.",
            json!({
                "type": "object",
                "properties": {
                    "note": {"type": "string", "description": "The note, a few plain sentences."},
                    "contact_id": {"type": "string", "description": "contact_id from find_contact or upsert_contact."}
                },
                "required": ["note"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let crm = Arc::clone(&self.crm);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: LogCallNoteArgs = parse_args(arguments.clone())?;
            let now = Utc::now();
            let started = context.call_started.filter(|start| *start <= now);
            let note = CallNote {
                body: required_text("note", &args.note, MAX_NOTE_CHARS)?,
                at: started.unwrap_or(now),
                // The call so far: the note is written while it is still going on.
                duration_secs: started
                    .map(|start| u32::try_from((now - start).num_seconds()).unwrap_or(u32::MAX)),
                // Only a live conversation calls tools: someone answered.
                outcome: context.call_started.map(|_| CallOutcome::Connected),
                inbound: context.inbound,
            };
            let contact_id = optional_text("contact_id", args.contact_id, 256)?;
            let caller = caller_number(&context);
            if contact_id.is_none() && caller.is_none() {
                return Err(ToolError::InvalidArguments(
                    "the caller's number is hidden; find or save the contact first and pass its \
                     contact_id"
                        .into(),
                ));
            }
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, LOG_CALL_NOTE, &arguments, |ctx| async move {
                let contact_id = match (contact_id, caller) {
                    (Some(id), _) => id,
                    (None, Some(phone)) => {
                        match crm.find_contact(&ctx, &ContactLookup::Phone(phone)).await {
                            Ok(Some(contact)) => contact.id,
                            Ok(None) => {
                                return Err("There is no customer record for this caller yet. \
                                            Save their details with upsert_contact first."
                                    .to_owned());
                            }
                            Err(err) => return Err(speak_failure(&tenant, LOG_CALL_NOTE, &err)),
                        }
                    }
                    (None, None) => return Err("No contact to attach the note to.".to_owned()),
                };
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                crm.log_call_note(&ctx, &contact_id, &note, &key)
                    .await
                    .map(|note_id| json!({ "saved": true, "note_id": note_id, "contact_id": contact_id }))
                    .map_err(|err| speak_failure(&tenant, LOG_CALL_NOTE, &err))
            })
            .await
        })
    }
}

/// `update_deal`: moves one of the caller's deals to a stage of its pipeline and/or sets its
/// amount, close date or next step, once.
pub struct UpdateDeal {
    pub crm: Arc<dyn Crm>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct UpdateDealArgs {
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    amount: Option<Value>,
    #[serde(default)]
    close_date: Option<String>,
    #[serde(default)]
    next_step: Option<String>,
    #[serde(default)]
    deal_id: Option<String>,
    #[serde(default)]
    contact_id: Option<String>,
}

fn deal_json(deal: &Deal) -> Value {
    json!({
        "deal_id": deal.id,
        "name": deal.name,
        "stage": deal.stage,
        "amount": deal.amount,
        "close_date": deal.close_date.map(|d| d.format("%Y-%m-%d").to_string()),
    })
}

impl UpdateDealArgs {
    fn update(self) -> Result<(DealUpdate, Option<String>, Option<String>), ToolError> {
        let amount = match self.amount {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                return Err(ToolError::InvalidArguments(
                    "amount is a number such as 1200.50".into(),
                ));
            }
        };
        let amount = amount
            .map(|text| crate::connectors::deals::checked_amount(&text))
            .transpose()
            .map_err(|err| ToolError::InvalidArguments(err.to_string()))?;
        let close_date = self
            .close_date
            .map(|text| {
                NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                    ToolError::InvalidArguments("close_date is a date as YYYY-MM-DD".into())
                })
            })
            .transpose()?;
        let update = DealUpdate {
            stage: optional_text("stage", self.stage, 100)?,
            amount,
            close_date,
            next_step: optional_text("next_step", self.next_step, 255)?,
        };
        if update.is_empty() {
            return Err(ToolError::InvalidArguments(
                "say what to change: stage, amount, close_date or next_step".into(),
            ));
        }
        Ok((
            update,
            optional_text("deal_id", self.deal_id, 64)?,
            optional_text("contact_id", self.contact_id, 256)?,
        ))
    }
}

impl Tool for UpdateDeal {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            UPDATE_DEAL,
            "Update one of the caller's deals in the customer records: move it to a stage of its \
             pipeline, or set its amount, expected close date or next step. Confirm the change \
             with the caller first. Uses the caller's only open deal unless deal_id is given; if \
             they have several, the answer lists them so you can ask which.",
            json!({
                "type": "object",
                "properties": {
                    "stage": {"type": "string", "description": "The stage's name as the business uses it (e.g. \"Negotiation\")."},
                    "amount": {"type": "number", "description": "The deal's value, in its currency."},
                    "close_date": {"type": "string", "description": "Expected close date, YYYY-MM-DD."},
                    "next_step": {"type": "string", "description": "The agreed next step, a few words."},
                    "deal_id": {"type": "string", "description": "deal_id from an earlier update_deal answer, when the caller has several deals."},
                    "contact_id": {"type": "string", "description": "contact_id from find_contact or upsert_contact."}
                }
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let crm = Arc::clone(&self.crm);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: UpdateDealArgs = parse_args(arguments.clone())?;
            let (update, deal_id, contact_id) = args.update()?;
            let caller = caller_number(&context);
            if contact_id.is_none() && caller.is_none() {
                return Err(ToolError::InvalidArguments(
                    "the caller's number is hidden; find the contact first and pass its \
                     contact_id"
                        .into(),
                ));
            }
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, UPDATE_DEAL, &arguments, |ctx| async move {
                let contact_id = match (contact_id, caller) {
                    (Some(id), _) => id,
                    (None, Some(phone)) => {
                        match crm.find_contact(&ctx, &ContactLookup::Phone(phone)).await {
                            Ok(Some(contact)) => contact.id,
                            Ok(None) => {
                                return Err("There is no customer record for this caller, so \
                                            no deal to update."
                                    .to_owned());
                            }
                            Err(err) => return Err(speak_failure(&tenant, UPDATE_DEAL, &err)),
                        }
                    }
                    (None, None) => return Err("No contact whose deal to update.".to_owned()),
                };
                crm.update_deal(&ctx, &contact_id, deal_id.as_deref(), &update)
                    .await
                    .map(|deal| json!({ "updated": true, "deal": deal_json(&deal) }))
                    .map_err(|err| speak_failure(&tenant, UPDATE_DEAL, &err))
            })
            .await
        })
    }
}

// --- commerce ------------------------------------------------------------------------------------

/// `order_status`: where an order stands, after checking the caller's email or phone.
pub struct OrderStatusTool {
    pub commerce: Arc<dyn Commerce>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct OrderStatusArgs {
    order_number: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

fn order_json(order: &OrderStatus, zone: Tz) -> Value {
    let shipments: Vec<Value> = order
        .shipments
        .iter()
        .take(MAX_SPOKEN_SHIPMENTS)
        .map(|shipment| {
            json!({
                "status": shipment.status,
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "estimated_delivery": shipment.estimated_delivery.map(|at| spoken_in(at, zone)),
            })
        })
        .collect();
    json!({
        "order_number": order.number,
        "placed": order.placed_at.map(|at| spoken_in(at, zone)),
        "payment_status": order.payment_status,
        "fulfillment_status": order.fulfillment_status,
        "cancelled": order.cancelled,
        "shipments": shipments,
        "status_page_url": order.status_page_url,
    })
}

impl Tool for OrderStatusTool {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            ORDER_STATUS,
            "Tell the caller where their order is: payment, shipping and tracking. Needs the order \
             number and, to protect the customer, the email or phone number on the order (leave \
             both out to use the number they are calling from).",
            json!({
                "type": "object",
                "properties": {
                    "order_number": {"type": "string", "description": "The order number, e.g. 1001 or #1001."},
                    "email": {"type": "string", "description": "Email used for the order."},
                    "phone": {"type": "string", "description": "Phone number on the order, with country code."}
                },
                "required": ["order_number"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let commerce = Arc::clone(&self.commerce);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: OrderStatusArgs = parse_args(arguments)?;
            let number = required_text("order_number", &args.order_number, 40)?;
            if !number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '#' | '-'))
            {
                return Err(ToolError::InvalidArguments(format!(
                    "order_number {number:?} should be letters and digits only, e.g. 1001"
                )));
            }
            let verify = match (optional_email(args.email)?, optional_phone(args.phone)?) {
                (Some(email), _) => ContactLookup::Email(email),
                (None, Some(phone)) => ContactLookup::Phone(phone),
                (None, None) => match caller_number(&context) {
                    Some(phone) => ContactLookup::Phone(phone),
                    None => {
                        return Err(ToolError::InvalidArguments(
                            "ask for the email or phone number used for the order".into(),
                        ));
                    }
                },
            };
            let ctx = env.request_context(&context);
            match commerce.order_status(&ctx, &number, &verify).await {
                Ok(order) => Ok(order_json(&order, env.business_zone)),
                Err(ConnectorError::NotFound(_)) => Err(ToolError::Failed(
                    "I couldn't find an order with those details. Ask the caller to check the \
                     order number and the email or phone used for the order."
                        .into(),
                )),
                Err(err) => Err(ToolError::Failed(speak_failure(
                    &env.tenant,
                    ORDER_STATUS,
                    &err,
                ))),
            }
        })
    }
}

/// `search_products`: a few matching products with price and stock.
pub struct SearchProducts {
    pub commerce: Arc<dyn Commerce>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
struct SearchProductsArgs {
    query: String,
}

fn product_json(product: &Product) -> Value {
    let variants: Vec<Value> = product
        .variants
        .iter()
        .take(MAX_SPOKEN_VARIANTS)
        .map(|variant| {
            json!({
                "title": variant.title,
                "price": variant.price,
                "available": variant.available,
            })
        })
        .collect();
    json!({
        "title": product.title,
        "price_from": product.min_price.as_ref().map(|money| format!("{} {}", money.amount, money.currency)),
        "in_stock": product.total_inventory.map(|units| units > 0)
            .unwrap_or_else(|| product.variants.iter().any(|variant| variant.available)),
        "units_in_stock": product.total_inventory,
        "variants": variants,
    })
}

impl Tool for SearchProducts {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            SEARCH_PRODUCTS,
            "Search the shop's products by name or keyword. Returns a few matches with price and \
             whether they are in stock.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What the caller is looking for, a few words."}
                },
                "required": ["query"]
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let commerce = Arc::clone(&self.commerce);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: SearchProductsArgs = parse_args(arguments)?;
            let query = required_text("query", &args.query, 100)?;
            let ctx = env.request_context(&context);
            let products = commerce
                .search_products(&ctx, &query)
                .await
                .map_err(|err| {
                    ToolError::Failed(speak_failure(&env.tenant, SEARCH_PRODUCTS, &err))
                })?;
            let more_available = products.len() > MAX_SPOKEN_PRODUCTS;
            let shown: Vec<Value> = products
                .iter()
                .take(MAX_SPOKEN_PRODUCTS)
                .map(product_json)
                .collect();
            Ok(json!({ "products": shown, "more_available": more_available }))
        })
    }
}

// --- payments ------------------------------------------------------------------------------------

/// Items per payment link: a phone order, not a cart import.
const MAX_PAYMENT_ITEMS: usize = 10;
const MAX_ITEM_QUANTITY: u64 = 99;

/// `send_payment_link`: a payment link for catalogue items, priced by the payments vendor.
pub struct SendPaymentLink {
    pub payments: Arc<dyn Payments>,
    pub env: Arc<CapabilityEnv>,
}

/// The items the model named. Only a name and a quantity per item: any other field (a price, an
/// amount, a currency) is refused, so no amount from the model can reach the vendor.
fn payment_items(arguments: &Value) -> Result<Vec<PaymentItem>, ToolError> {
    let object = arguments
        .as_object()
        .ok_or_else(|| ToolError::InvalidArguments("arguments must be an object".into()))?;
    if let Some(other) = object.keys().find(|key| key.as_str() != "items") {
        return Err(ToolError::InvalidArguments(format!(
            "unknown argument {other:?}: pass only items (name and quantity); prices come from the shop's catalogue"
        )));
    }
    let items = object
        .get("items")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| {
            ToolError::InvalidArguments("items must list what the caller wants to pay for".into())
        })?;
    if items.len() > MAX_PAYMENT_ITEMS {
        return Err(ToolError::InvalidArguments(format!(
            "at most {MAX_PAYMENT_ITEMS} items per payment link"
        )));
    }
    items
        .iter()
        .map(|item| {
            let fields = item.as_object().ok_or_else(|| {
                ToolError::InvalidArguments("each item is an object with name and quantity".into())
            })?;
            if let Some(other) = fields
                .keys()
                .find(|key| !matches!(key.as_str(), "name" | "quantity"))
            {
                return Err(ToolError::InvalidArguments(format!(
                    "item field {other:?} is not accepted: give only name and quantity; prices come from the shop's catalogue"
                )));
            }
            let name = required_text(
                "item name",
                fields.get("name").and_then(Value::as_str).unwrap_or(""),
                100,
            )?;
            let quantity = match fields.get("quantity") {
                None => 1,
                Some(value) => value
                    .as_u64()
                    .filter(|q| (1..=MAX_ITEM_QUANTITY).contains(q))
                    .ok_or_else(|| {
                        ToolError::InvalidArguments(format!(
                            "quantity must be a whole number from 1 to {MAX_ITEM_QUANTITY}"
                        ))
                    })?,
            };
            Ok(PaymentItem {
                name,
                quantity: u32::try_from(quantity).unwrap_or(1),
            })
        })
        .collect()
}

impl Tool for SendPaymentLink {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            SEND_PAYMENT_LINK,
            "Create a secure payment link for items from the shop's catalogue. Name each item and \
             its quantity; never state a price: the shop's own prices are used and returned. \
             The link is returned for sending by text or email; tell the caller the total.",
            json!({
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_PAYMENT_ITEMS,
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "description": "The item as the shop names it."},
                                "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_ITEM_QUANTITY}
                            },
                            "required": ["name"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["items"],
                "additionalProperties": false
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let payments = Arc::clone(&self.payments);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let items = payment_items(&arguments)?;
            let caller = caller_number(&context).ok_or_else(|| {
                ToolError::Failed(
                    "I can only make a payment link for a caller whose number I can see.".into(),
                )
            })?;
            let tenant = Arc::clone(&env.tenant);
            let zone = env.business_zone;
            env.once(&context, SEND_PAYMENT_LINK, &arguments, |ctx| async move {
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                payments
                    .create_payment_link(&ctx, &items, &caller, &key)
                    .await
                    .map(|link| {
                        let items: Vec<Value> = link
                            .items
                            .iter()
                            .map(|item| {
                                json!({
                                    "name": item.name,
                                    "quantity": item.quantity,
                                    "unit_price": format!("{} {}", item.unit_price.amount, item.unit_price.currency),
                                })
                            })
                            .collect();
                        json!({
                            "link_id": link.id,
                            "url": link.url,
                            "items": items,
                            "total": link.total.map(|t| format!("{} {}", t.amount, t.currency)),
                            "expires": link.expires_at.map(|at| spoken_in(at, zone)),
                            "sent": false,
                        })
                    })
                    .map_err(|err| speak_failure(&tenant, SEND_PAYMENT_LINK, &err))
            })
            .await
        })
    }
}

/// `payment_link_status`: whether the caller's payment link was paid, expired or is still open.
pub struct PaymentLinkStatusTool {
    pub payments: Arc<dyn Payments>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentLinkStatusArgs {
    #[serde(default)]
    link_id: Option<String>,
}

impl Tool for PaymentLinkStatusTool {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            PAYMENT_LINK_STATUS,
            "Check whether the caller's payment link has been paid, has expired, or is still \
             open. Give the link_id from send_payment_link when you have it; leave it out to check \
             the caller's latest link.",
            json!({
                "type": "object",
                "properties": {
                    "link_id": {"type": "string", "description": "The link_id send_payment_link returned."}
                },
                "additionalProperties": false
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let payments = Arc::clone(&self.payments);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: PaymentLinkStatusArgs = parse_args(arguments)?;
            let link_id = args
                .link_id
                .map(|id| required_text("link_id", &id, 200))
                .transpose()?;
            let caller = caller_number(&context).ok_or_else(|| {
                ToolError::Failed(
                    "I can only check payment links for a caller whose number I can see.".into(),
                )
            })?;
            let ctx = env.request_context(&context);
            match payments
                .payment_link_status(&ctx, link_id.as_deref(), &caller)
                .await
            {
                Ok(status) => Ok(json!({
                    "link_id": status.id,
                    "status": status.state.as_str(),
                    "expires": status.expires_at.map(|at| spoken_in(at, env.business_zone)),
                })),
                Err(ConnectorError::NotFound(_)) => Err(ToolError::Failed(
                    "I couldn't find a payment link for this caller.".into(),
                )),
                Err(err) => Err(ToolError::Failed(speak_failure(
                    &env.tenant,
                    PAYMENT_LINK_STATUS,
                    &err,
                ))),
            }
        })
    }
}

// --- marketing -----------------------------------------------------------------------------------

/// `customer_profile`: what the marketing platform knows about the caller, for context.
pub struct CustomerProfile {
    pub marketing: Arc<dyn Marketing>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerProfileArgs {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

impl Tool for CustomerProfile {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            CUSTOMER_PROFILE,
            "Look up the caller's customer profile (name, city) in the shop's marketing system, \
             by email or phone; leave both out to use the number they are calling from. For \
             context only: do not read the details back unprompted.",
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string"},
                    "phone": {"type": "string", "description": "With country code."}
                },
                "additionalProperties": false
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let marketing = Arc::clone(&self.marketing);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: CustomerProfileArgs = parse_args(arguments)?;
            let lookup = match (optional_email(args.email)?, optional_phone(args.phone)?) {
                (Some(email), _) => ContactLookup::Email(email),
                (None, Some(phone)) => ContactLookup::Phone(phone),
                (None, None) => ContactLookup::Phone(caller_number(&context).ok_or_else(|| {
                    ToolError::InvalidArguments("ask for the caller's email or phone".into())
                })?),
            };
            let ctx = env.request_context(&context);
            match marketing.find_profile(&ctx, &lookup).await {
                Ok(Some(profile)) => Ok(json!({
                    "found": true,
                    "first_name": profile.first_name,
                    "last_name": profile.last_name,
                    "city": profile.city,
                    "has_email": profile.email.is_some(),
                    "has_phone": profile.phone.is_some(),
                })),
                Ok(None) => Ok(json!({ "found": false })),
                Err(err) => Err(ToolError::Failed(speak_failure(
                    &env.tenant,
                    CUSTOMER_PROFILE,
                    &err,
                ))),
            }
        })
    }
}

/// `subscribe_to_list`: the caller joins the shop's marketing list, only with explicit consent.
pub struct SubscribeToList {
    pub marketing: Arc<dyn Marketing>,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeArgs {
    /// Must be `true`: the caller said yes to this question on the call.
    consent: Option<bool>,
    #[serde(default)]
    email: Option<String>,
    /// Also subscribe the caller's number to SMS marketing.
    #[serde(default)]
    sms: Option<bool>,
}

impl Tool for SubscribeToList {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            SUBSCRIBE_TO_LIST,
            "Subscribe the caller to the shop's marketing list. Only after asking them plainly \
             and hearing yes: set consent to true only then. Email marketing needs their email; \
             set sms to true only if they also agreed to marketing text messages to the number \
             they are calling from.",
            json!({
                "type": "object",
                "properties": {
                    "consent": {"type": "boolean", "description": "True only if the caller explicitly agreed on this call."},
                    "email": {"type": "string"},
                    "sms": {"type": "boolean", "description": "The caller agreed to marketing texts too."}
                },
                "required": ["consent"],
                "additionalProperties": false
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let marketing = Arc::clone(&self.marketing);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: SubscribeArgs = parse_args(arguments.clone())?;
            if args.consent != Some(true) {
                return Err(ToolError::InvalidArguments(
                    "the caller has not consented: ask them plainly first, and call again with \
                     consent true only if they say yes"
                        .into(),
                ));
            }
            let email = optional_email(args.email)?;
            let sms_phone = if args.sms == Some(true) {
                Some(caller_number(&context).ok_or_else(|| {
                    ToolError::InvalidArguments(
                        "the caller's number is not known, so no texts can be subscribed".into(),
                    )
                })?)
            } else {
                None
            };
            if email.is_none() && sms_phone.is_none() {
                return Err(ToolError::InvalidArguments(
                    "give the caller's email, or sms true for texts to their number".into(),
                ));
            }
            let subscription = Subscription { email, sms_phone };
            let channels: Vec<&str> = [
                subscription.email.as_ref().map(|_| "email"),
                subscription.sms_phone.as_ref().map(|_| "sms"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let tenant = Arc::clone(&env.tenant);
            env.once(&context, SUBSCRIBE_TO_LIST, &arguments, |ctx| async move {
                marketing
                    .subscribe(&ctx, &subscription)
                    .await
                    .map(|()| {
                        json!({
                            "subscribed": true,
                            "channels": channels,
                            "consent": "given by the caller on this call",
                        })
                    })
                    .map_err(|err| speak_failure(&tenant, SUBSCRIBE_TO_LIST, &err))
            })
            .await
        })
    }
}

// --- coupons -------------------------------------------------------------------------------------

/// `create_coupon`: a single-use, expiring coupon within the shop's caps. The daily count is
/// exact: a slot is reserved in the store before the vendor is asked, kept once the coupon
/// exists (or might: a transport failure keeps it), and released when the vendor refused.
pub struct CreateCoupon {
    pub coupons: Arc<dyn Coupons>,
    pub slots: SharedCouponSlots,
    pub env: Arc<CapabilityEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCouponArgs {
    kind: String,
    #[serde(default)]
    value: Option<f64>,
}

impl Tool for CreateCoupon {
    fn declaration(&self) -> ToolDeclaration {
        declaration(
            CREATE_COUPON,
            "Create a single-use discount coupon for the caller: a percentage off, a fixed amount \
             off, or free shipping. The shop sets the largest discount and how many coupons may be \
             given; if the tool refuses, tell the caller what is possible. Read the code out \
             slowly.",
            json!({
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["percentage", "fixed", "free_shipping"]},
                    "value": {"type": "number", "description": "Percent for percentage, amount for fixed; leave out for free_shipping."}
                },
                "required": ["kind"],
                "additionalProperties": false
            }),
        )
    }

    fn invoke(&self, context: ToolContext, arguments: Value) -> ToolFuture {
        let coupons = Arc::clone(&self.coupons);
        let slots = Arc::clone(&self.slots);
        let env = Arc::clone(&self.env);
        Box::pin(async move {
            let args: CreateCouponArgs = parse_args(arguments.clone())?;
            let value = || {
                args.value
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| {
                        ToolError::InvalidArguments("value must be a positive number".into())
                    })
            };
            let discount = match args.kind.as_str() {
                "percentage" => CouponDiscount::Percent(value()?),
                "fixed" => CouponDiscount::Amount(value()?),
                "free_shipping" => CouponDiscount::FreeShipping,
                other => {
                    return Err(ToolError::InvalidArguments(format!(
                        "kind {other:?} must be percentage, fixed or free_shipping"
                    )));
                }
            };
            let tenant = Arc::clone(&env.tenant);
            let zone = env.business_zone;
            env.once(&context, CREATE_COUPON, &arguments, |ctx| async move {
                let key = ctx.idempotency_key.clone().unwrap_or_default();
                let caps = coupons.caps();
                // Beyond an amount cap: refused before a slot is taken.
                caps.check(&discount)
                    .map_err(|err| speak_failure(&tenant, CREATE_COUPON, &err))?;
                match slots.reserve(&tenant, &key, caps.max_per_day).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let full = ConnectorError::InvalidInput(
                            "the shop's limit of coupons by phone for today is reached".into(),
                        );
                        return Err(speak_failure(&tenant, CREATE_COUPON, &full));
                    }
                    Err(err) => {
                        tracing::warn!(tenant = %tenant, error = %err, "coupon slot reservation failed");
                        return Err(
                            "I can't make a coupon right now. Offer to take a message instead."
                                .into(),
                        );
                    }
                }
                match coupons.create_coupon(&ctx, &discount, &key).await {
                    Ok(coupon) => Ok(json!({
                        "code": coupon.code,
                        "single_use": true,
                        "expires": spoken_in(coupon.expires_at, zone),
                    })),
                    Err(err) => {
                        if vendor_refused(&err)
                            && let Err(release) = slots.release(&tenant, &key).await
                        {
                            tracing::warn!(tenant = %tenant, error = %release,
                                "coupon slot not released; it counts until it is 24 hours old");
                        }
                        Err(speak_failure(&tenant, CREATE_COUPON, &err))
                    }
                }
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn every_capability_tool_has_a_capability() {
        let mut seen = std::collections::HashSet::new();
        for spec in TOOLS {
            assert!(seen.insert(spec.name), "{} listed twice", spec.name);
            assert_eq!(capability_of(spec.name), Some(spec.capability));
        }
        // The calendar writes keep the CRM in step: a booking is recorded as a meeting, and the
        // meeting follows the booking when it moves or is cancelled.
        let follow_up: Vec<&str> = TOOLS
            .iter()
            .filter(|spec| spec.crm_follow_up)
            .map(|spec| spec.name)
            .collect();
        assert_eq!(
            follow_up,
            [BOOK_APPOINTMENT, RESCHEDULE_APPOINTMENT, CANCEL_APPOINTMENT]
        );
        assert_eq!(capability_of("end_call"), None);
    }

    #[test]
    fn payment_items_take_names_and_quantities_only() {
        let items = payment_items(
            &json!({"items": [{"name": "Large Pizza", "quantity": 2}, {"name": "Soda"}]}),
        )
        .expect("valid");
        assert_eq!(
            items[0],
            PaymentItem {
                name: "Large Pizza".into(),
                quantity: 2
            }
        );
        assert_eq!(items[1].quantity, 1);
        for tampered in [
            json!({"items": [{"name": "Large Pizza", "quantity": 2, "price": 0.01}]}),
            json!({"items": [{"name": "Large Pizza", "unit_amount": 1}]}),
            json!({"items": [{"name": "Large Pizza"}], "amount": 1}),
            json!({"items": [{"name": "Large Pizza", "quantity": 0}]}),
            json!({"items": []}),
        ] {
            let err = payment_items(&tampered).expect_err("refused");
            assert!(matches!(err, ToolError::InvalidArguments(_)), "{err:?}");
        }
    }

    #[test]
    fn the_window_starts_at_local_midnight_or_now() {
        let zone = chrono_tz::America::New_York;
        let now = at("2025-03-04T12:00:00Z");
        let window = availability_window(Some("2025-03-05"), Some(2), zone, now).expect("window");
        assert_eq!(window.start, at("2025-03-05T05:00:00Z"));
        assert_eq!(window.end, at("2025-03-07T05:00:00Z"));
        let today = availability_window(None, None, zone, now).expect("window");
        assert_eq!(today.start, now);
        assert_eq!(today.end, at("2025-03-05T05:00:00Z"));
    }

    #[test]
    fn bad_windows_are_explained() {
        let zone = chrono_tz::UTC;
        let now = at("2025-03-04T12:00:00Z");
        for (date, days) in [
            (Some("2025-03-01"), Some(1)),
            (Some("March 5th"), None),
            (None, Some(0)),
            (None, Some(30)),
        ] {
            let err = availability_window(date, days, zone, now).expect_err("refused");
            assert!(matches!(err, ToolError::InvalidArguments(_)), "{err:?}");
        }
    }

    #[test]
    fn phones_and_emails_are_normalised_or_refused() {
        assert_eq!(
            optional_phone(Some("+1 (415) 555-0100".into())).expect("valid"),
            Some("+14155550100".into())
        );
        assert!(optional_phone(Some("415 555 0100".into())).is_err());
        assert!(optional_phone(Some("+1 415 CALL ME".into())).is_err());
        assert_eq!(optional_phone(Some("  ".into())).expect("empty"), None);
        assert_eq!(
            optional_email(Some("Ann@Example.com".into())).expect("valid"),
            Some("ann@example.com".into())
        );
        assert!(optional_email(Some("ann at example dot com".into())).is_err());
    }

    #[test]
    fn durations_and_zones_are_checked() {
        assert_eq!(
            duration_of(None).expect("default"),
            chrono::Duration::minutes(30)
        );
        assert!(duration_of(Some(2)).is_err());
        assert!(duration_of(Some(1000)).is_err());
        assert_eq!(
            optional_zone("z", Some("Europe/London")).expect("valid"),
            Some(chrono_tz::Europe::London)
        );
        assert!(optional_zone("z", Some("London time")).is_err());
    }

    #[test]
    fn slots_are_spoken_for_the_caller_when_their_zone_differs() {
        let slot = Slot {
            start: at("2025-03-04T15:00:00Z"),
            end: at("2025-03-04T15:30:00Z"),
            zone: chrono_tz::America::New_York,
        };
        let same = slot_json(&slot, Some(chrono_tz::America::New_York));
        assert!(same.get("spoken_for_caller").is_none());
        let other = slot_json(&slot, Some(chrono_tz::Europe::London));
        assert_eq!(other["start"], "2025-03-04T15:00:00Z");
        assert_eq!(
            other["spoken_for_caller"],
            "Tuesday 4 March at 3:00 PM GMT (Europe/London)"
        );
    }
}

//! Capability traits the tools call, the vendor-neutral types they speak, and the connectors
//! that implement them.
//!
//! Owns: the contract between capability tools (`check_availability`, `book_appointment`, …) and
//! vendors. A connector supplies only what is vendor-specific — auth, request building from the
//! vendor's spec, response mapping, retry classification, a health check — and sends everything
//! through [`crate::connectors::http::HttpPolicy`]. Nothing here may bypass the policy, log a
//! credential, or choose a vendor (that is tenant configuration).

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use reqwest::Url;

use crate::connectors::http::{PolicyError, RequestContext};
pub use deals::{Deal, DealUpdate};

pub mod client;
pub mod deals;
pub mod drive_files;
pub mod http;
pub mod kit;
pub mod messages;
pub mod oauth;
pub mod phone;
pub mod registry;
pub mod slots;
pub mod text_llm;
pub mod twilio_rest;

/// The one list of vendors: declares each vendor's module (`connectors/<id>.rs`, exporting
/// `pub static VENDOR`) and registers it in [`registry::VENDORS`], in this order. Adding a vendor
/// is its file and one word here.
macro_rules! vendors {
    ($($module:ident),+ $(,)?) => {
        $(pub mod $module;)+
        /// Every vendor this bridge has a connector for, in registration order.
        static VENDOR_LIST: &[&kit::Vendor] = &[$(&$module::VENDOR),+];
    };
}

vendors! {
    calcom, calendly, google_calendar, google_sheets, hubspot, klaviyo, magento, microsoft_calendar,
    pipedrive, salesforce, shopify, stripe, wix, woocommerce, zendesk, freshdesk, intercom, crisp,
    zoho_crm, twilio_sms, whatsapp, smtp, gmail, slack, teams, google_drive, google_docs,
}

/// A half-open time range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    /// A window, or an error if it is empty or reversed.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ConnectorError> {
        if end <= start {
            return Err(ConnectorError::InvalidInput(
                "the time window ends before it starts".into(),
            ));
        }
        Ok(Self { start, end })
    }

    pub fn overlaps(&self, other: &TimeWindow) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A bookable time, with the business's time zone so it can be said aloud correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The business's zone: what the caller hears.
    pub zone: Tz,
}

impl Slot {
    pub fn local_start(&self) -> DateTime<Tz> {
        self.start.with_timezone(&self.zone)
    }

    /// How to say the slot: local day, date and time with the zone, e.g.
    /// `Tuesday 4 March at 10:00 AM GMT (Europe/London)`.
    pub fn spoken(&self) -> String {
        let local = self.local_start();
        format!(
            "{} ({})",
            local.format("%A %-d %B at %-I:%M %p %Z"),
            self.zone.name()
        )
    }
}

/// The person an appointment is for.
#[derive(Clone, PartialEq, Eq)]
pub struct Attendee {
    pub name: String,
    pub email: Option<String>,
    /// E.164 where known (`+14155550100`).
    pub phone: Option<String>,
    /// The caller's own zone if they gave one; otherwise the business's zone is used.
    pub zone: Option<Tz>,
}

impl Attendee {
    /// The line a calendar event carries about who booked it: the name, and the phone when known.
    pub fn booking_note(&self) -> String {
        match &self.phone {
            Some(phone) => format!("Booked by phone for {}. Phone: {phone}.", self.name),
            None => format!("Booked by phone for {}.", self.name),
        }
    }
}

impl fmt::Debug for Attendee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data stays out of debug output (and so out of logs).
        f.debug_struct("Attendee")
            .field("name", &"[redacted]")
            .field("email", &self.email.as_ref().map(|_| "[email]"))
            .field("phone", &self.phone.as_ref().map(|_| "[phone]"))
            .field("zone", &self.zone)
            .finish()
    }
}

/// A confirmed appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    /// The vendor's id, used to reschedule or cancel.
    pub id: String,
    pub slot: Slot,
    pub status: BookingStatus,
    /// A link the caller may be sent (meeting or booking page), if the vendor gave one.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingStatus {
    Confirmed,
    /// Booked but waiting for the business to accept.
    Pending,
    Cancelled,
    /// Not booked yet: the vendor only allows the caller to finish booking through `link`
    /// (e.g. a Calendly single-use scheduling link).
    AwaitingCaller,
}

/// Scheduling: Google Calendar, Cal.com, Calendly, Microsoft Graph, …
#[async_trait::async_trait]
pub trait Calendar: Send + Sync {
    /// Free slots of `duration` inside `window`, each stated in `zone`.
    async fn availability(
        &self,
        ctx: &RequestContext,
        window: TimeWindow,
        duration: chrono::Duration,
        zone: Tz,
    ) -> Result<Vec<Slot>, ConnectorError>;

    /// Book `slot`. `idempotency_key` comes from the ledger: a retry with the same key must not
    /// create a second booking.
    async fn book(
        &self,
        ctx: &RequestContext,
        slot: &Slot,
        attendee: &Attendee,
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError>;

    async fn reschedule(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        new_slot: &Slot,
        idempotency_key: &str,
    ) -> Result<Booking, ConnectorError>;

    async fn cancel(
        &self,
        ctx: &RequestContext,
        booking_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// How a caller is looked up in a CRM.
#[derive(Clone, PartialEq, Eq)]
pub enum ContactLookup {
    /// E.164 (`+14155550100`), usually the caller id.
    Phone(String),
    Email(String),
}

impl fmt::Debug for ContactLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(_) => f.write_str("Phone([phone])"),
            Self::Email(_) => f.write_str("Email([email])"),
        }
    }
}

/// A CRM contact as the tools see it.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    /// The vendor's id, used to attach notes.
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The organisation the contact belongs to, where the CRM keeps one on the contact
    /// (HubSpot's `company` property); `None` where the vendor's record has none here.
    pub company: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the caller told us about themselves; `None` leaves a field unchanged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContactInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl ContactInput {
    /// How an upsert finds the record to update: by email, else by phone; neither given is
    /// invalid input.
    pub fn lookup(&self) -> Result<ContactLookup, ConnectorError> {
        match (&self.email, &self.phone) {
            (Some(email), _) => Ok(ContactLookup::Email(email.clone())),
            (None, Some(phone)) => Ok(ContactLookup::Phone(phone.clone())),
            (None, None) => Err(ConnectorError::InvalidInput(
                "a contact needs an email or a phone number".into(),
            )),
        }
    }

    /// The record after this input updated `before`: what was given wins, the rest stays.
    pub fn written_over(&self, before: Contact) -> Contact {
        Contact {
            id: before.id,
            first_name: self.first_name.clone().or(before.first_name),
            last_name: self.last_name.clone().or(before.last_name),
            email: self.email.clone().or(before.email),
            phone: self.phone.clone().or(before.phone),
            company: before.company,
        }
    }

    /// The record this input created as `id`.
    pub fn created_as(&self, id: String) -> Contact {
        Contact {
            id,
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            company: None,
        }
    }

    /// What stands in for a last name a CRM requires when the caller gave none: the first name,
    /// else the email, else the phone.
    pub fn last_name_stand_in(&self) -> Option<String> {
        self.first_name
            .clone()
            .or_else(|| self.email.clone())
            .or_else(|| self.phone.clone())
    }
}

impl fmt::Debug for ContactInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactInput").finish_non_exhaustive()
    }
}

/// A note about the call, attached to a contact (a CRM's call activity, task or engagement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallNote {
    pub body: String,
    /// When the call started (when the note is written, if that is unknown).
    pub at: DateTime<Utc>,
    /// How long the call has lasted so far (written during the call) or lasted (after it), in
    /// whole seconds; `None` when unknown.
    pub duration_secs: Option<u32>,
    /// How the call went, when known.
    pub outcome: Option<CallOutcome>,
    /// `Some(true)` for a call the customer made, `Some(false)` for one made to them.
    pub inbound: Option<bool>,
}

/// How a call went, as CRMs record a call's disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Someone answered and the conversation happened.
    Connected,
    NoAnswer,
    Busy,
    /// The call could not be placed or dropped before it connected.
    Failed,
}

impl CallOutcome {
    /// The outcome in words, as free-text disposition fields take it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::NoAnswer => "No answer",
            Self::Busy => "Busy",
            Self::Failed => "Failed",
        }
    }
}

impl CallNote {
    /// The duration as `HH:MM`, partial minutes rounded up (Pipedrive's activity `duration`).
    pub fn duration_hh_mm(&self) -> Option<String> {
        self.duration_secs.map(|secs| {
            let minutes = secs.div_ceil(60);
            format!("{:02}:{:02}", minutes / 60, minutes % 60)
        })
    }

    /// The duration as `mm:ss` (Zoho's `Call_Duration`; minutes past 59 keep counting).
    pub fn duration_mm_ss(&self) -> Option<String> {
        self.duration_secs
            .map(|secs| format!("{:02}:{:02}", secs / 60, secs % 60))
    }
}

/// A booked appointment as a CRM records it (a HubSpot meeting, a Pipedrive activity, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmMeeting {
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// What was booked, for whoever opens the record: when (in the business's zone) and the
    /// calendar's booking reference.
    pub body: String,
}

/// What happened to a booked appointment after its meeting was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingChange {
    /// The booking moved to a new time.
    Moved {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// The booking was cancelled.
    Cancelled,
}

/// CRMs: HubSpot, Pipedrive, Salesforce, Zoho, …
#[async_trait::async_trait]
pub trait Crm: Send + Sync {
    /// The contact matching `lookup`, if any.
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError>;

    /// Create the contact, or update the one with the same email (else phone).
    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        idempotency_key: &str,
    ) -> Result<Contact, ConnectorError>;

    /// Attach `note` to the contact; returns the note's vendor id.
    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        idempotency_key: &str,
    ) -> Result<String, ConnectorError>;

    /// Record a booked appointment on the contact as a scheduled meeting; returns the meeting's
    /// vendor id. `idempotency_key` is the booking's ledger key.
    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        idempotency_key: &str,
    ) -> Result<String, ConnectorError>;

    /// Bring a meeting from [`Crm::record_meeting`] in step with its booking. Applying the same
    /// change twice leaves the meeting as one application does.
    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;

    /// Whether [`Crm::update_deal`] is served (the `update_deal` tool is offered only then).
    fn serves_deals(&self) -> bool {
        false
    }

    /// Applies `update` to the contact's deal `deal_id`, or to its only open deal. A deal that is
    /// not the contact's is not found; a stage not in the deal's pipeline is
    /// [`ConnectorError::InvalidInput`] naming the stages (see [`deals`]). Applying the same
    /// update twice leaves the deal as once.
    async fn update_deal(
        &self,
        _ctx: &RequestContext,
        _contact_id: &str,
        _deal_id: Option<&str>,
        _update: &DealUpdate,
    ) -> Result<Deal, ConnectorError> {
        Err(ConnectorError::Config(
            "this CRM has no deals connector".into(),
        ))
    }
}

/// A finished call as a post-call export writes it (a row in a sheet, …).
#[derive(Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub agent_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub from: String,
    pub to: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: String,
    pub end_reason: Option<String>,
    /// The conversation, one `caller: …` / `agent: …` line per turn.
    pub transcript: String,
    /// The post-call analysis, when one was done.
    pub analysis: Option<CallSummary>,
    /// The call's recording, when it has one (a file on the node that recorded it).
    pub recording: Option<RecordingFile>,
}

impl CallRecord {
    /// Whole seconds from start to end (`None` while the call has no end).
    pub fn duration_seconds(&self) -> Option<i64> {
        self.ended_at
            .map(|end| (end - self.started_at).num_seconds().max(0))
    }
}

/// What the post-call analysis found (`call/analysis.rs`), as exports write it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSummary {
    pub summary: String,
    /// The agent's structured fields (its schema's properties), as the model filled them.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Whether the call met the agent's goal, and why.
    pub achieved: Option<bool>,
    pub reason: Option<String>,
}

/// A call's recording file: where it is on this node and its media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingFile {
    pub path: std::path::PathBuf,
    /// `audio/wav` or `audio/ogg`.
    pub media_type: &'static str,
}

impl fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallRecord")
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

/// Vendors a finished call is written to after it ends (not a tool: the export worker calls it).
#[async_trait::async_trait]
pub trait CallLog: Send + Sync {
    /// Write `call` once; `idempotency_key` is stable per call and vendor.
    async fn log_call(
        &self,
        ctx: &RequestContext,
        call: &CallRecord,
        idempotency_key: &str,
    ) -> Result<(), ConnectorError>;

    /// Whether the export writes the post-call analysis (a document's summary): then it waits
    /// for an analysis still running.
    fn wants_analysis(&self) -> bool {
        false
    }

    /// A harmless read proving the export can run (`callbridge doctor`); nothing by default
    /// (a vendor whose other capability already checks the same account).
    async fn health_check(&self, _ctx: &RequestContext) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Where an order stands, as the caller may hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatus {
    /// The shop's order name (`#1001`).
    pub number: String,
    pub placed_at: Option<DateTime<Utc>>,
    /// Vendor status words (`PAID`, `PARTIALLY_FULFILLED`, …), for the model to phrase.
    pub payment_status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub cancelled: bool,
    pub shipments: Vec<Shipment>,
    /// A page the caller can be sent to follow the order.
    pub status_page_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub status: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub estimated_delivery: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Decimal string as the vendor sent it (`"19.99"`): never rounded through a float.
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub min_price: Option<Money>,
    /// Units in stock over all variants, when the shop tracks inventory.
    pub total_inventory: Option<i64>,
    pub variants: Vec<ProductVariant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductVariant {
    pub title: String,
    pub sku: Option<String>,
    pub price: Option<String>,
    pub available: bool,
    pub inventory: Option<i64>,
}

/// Shops: Shopify, WooCommerce, Magento, …
#[async_trait::async_trait]
pub trait Commerce: Send + Sync {
    /// The order named `order_number`, only if `verify` matches the order's email or phone;
    /// a mismatch looks exactly like an unknown order, so callers cannot probe for orders.
    async fn order_status(
        &self,
        ctx: &RequestContext,
        order_number: &str,
        verify: &ContactLookup,
    ) -> Result<OrderStatus, ConnectorError>;

    /// Active products matching `query`, with price and stock.
    async fn search_products(
        &self,
        ctx: &RequestContext,
        query: &str,
    ) -> Result<Vec<Product>, ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// The person a support ticket is for, as the desk knows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Requester {
    /// The desk's id (a Zendesk user, a Freshdesk contact, an Intercom contact, a Crisp profile).
    pub id: String,
    pub name: Option<String>,
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the caller told us about themselves, to find or create them on the desk.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RequesterInput {
    pub name: Option<String>,
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
}

impl fmt::Debug for RequesterInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequesterInput").finish_non_exhaustive()
    }
}

/// How urgent a ticket is, in the words every desk maps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

impl TicketPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Self::Low),
            "normal" | "medium" => Some(Self::Normal),
            "high" => Some(Self::High),
            "urgent" => Some(Self::Urgent),
            _ => None,
        }
    }
}

/// A ticket to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub subject: String,
    pub description: String,
    pub priority: TicketPriority,
    /// The phone call's id, kept on the ticket where the desk has a field for it.
    pub external_ref: String,
}

/// Where a ticket stands, in the words a caller understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    /// Not looked at yet.
    New,
    /// Being worked on.
    Open,
    /// Waiting for an answer from the customer.
    WaitingOnCustomer,
    /// Waiting on a third party.
    OnHold,
    Solved,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Open => "open",
            Self::WaitingOnCustomer => "waiting_on_customer",
            Self::OnHold => "on_hold",
            Self::Solved => "solved",
            Self::Closed => "closed",
        }
    }

    /// Still being dealt with (not solved or closed).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Solved | Self::Closed)
    }
}

/// A support ticket (or conversation) as the tools see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The desk's id, which the caller may quote back.
    pub id: String,
    pub subject: Option<String>,
    pub status: TicketStatus,
    /// Who asked: the [`Requester::id`] (the tools check it before touching a ticket).
    pub requester_id: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Support desks: Zendesk, Freshdesk, Intercom, Crisp, …
#[async_trait::async_trait]
pub trait Support: Send + Sync {
    /// The requester matching `lookup` (an exact match of the email or phone), if any.
    async fn find_requester(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Requester>, ConnectorError>;

    /// Creates the requester (or updates the one with the same email, where the desk can).
    async fn create_requester(
        &self,
        ctx: &RequestContext,
        input: &RequesterInput,
        idempotency_key: &str,
    ) -> Result<Requester, ConnectorError>;

    /// Opens `ticket` for `requester`. `idempotency_key` comes from the ledger.
    async fn create_ticket(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket: &NewTicket,
        idempotency_key: &str,
    ) -> Result<Ticket, ConnectorError>;

    /// The requester's tickets that are not solved or closed, most recently updated first.
    async fn open_tickets(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
    ) -> Result<Vec<Ticket>, ConnectorError>;

    /// One ticket by id (with its requester, so the tools can check whose it is).
    async fn ticket(&self, ctx: &RequestContext, ticket_id: &str)
    -> Result<Ticket, ConnectorError>;

    /// Adds `body` to the ticket as written by `requester`.
    async fn add_comment(
        &self,
        ctx: &RequestContext,
        requester: &Requester,
        ticket_id: &str,
        body: &str,
        idempotency_key: &str,
    ) -> Result<(), ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// The digits of a phone number, for comparing numbers stored in different spellings.
pub(crate) fn phone_digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// One item the caller wants to pay for, as they named it. Its price is never given here: the
/// payments connector reads it from the tenant's catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentItem {
    pub name: String,
    pub quantity: u32,
}

/// An item as the catalogue priced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedItem {
    /// The catalogue's name for it.
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
}

/// A payment link made for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLink {
    /// The vendor's id, to ask for its status later.
    pub id: String,
    pub url: String,
    pub items: Vec<PricedItem>,
    pub total: Option<Money>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a payment link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    Open,
    Paid,
    Expired,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Paid => "paid",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentLinkStatus {
    pub id: String,
    pub state: PaymentState,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Payments: Stripe, …
#[async_trait::async_trait]
pub trait Payments: Send + Sync {
    /// A payment link for `items`, priced from the catalogue, tagged with the caller's number
    /// (E.164) so its status can be asked later. `idempotency_key` comes from the ledger: a retry
    /// with the same key must not create a second link.
    async fn create_payment_link(
        &self,
        ctx: &RequestContext,
        items: &[PaymentItem],
        caller: &str,
        idempotency_key: &str,
    ) -> Result<PaymentLink, ConnectorError>;

    /// The status of the link `link_id`, or of the caller's latest link; a link made for another
    /// caller looks like an unknown one.
    async fn payment_link_status(
        &self,
        ctx: &RequestContext,
        link_id: Option<&str>,
        caller: &str,
    ) -> Result<PaymentLinkStatus, ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// A marketing profile, for the agent's context.
#[derive(Clone, PartialEq, Eq)]
pub struct MarketingProfile {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub city: Option<String>,
}

impl fmt::Debug for MarketingProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketingProfile")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A caller who consented, during the call, to marketing on the channels given.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Subscribe this email to email marketing.
    pub email: Option<String>,
    /// Subscribe this E.164 number to SMS marketing.
    pub sms_phone: Option<String>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("email", &self.email.is_some())
            .field("sms", &self.sms_phone.is_some())
            .finish()
    }
}

/// Marketing platforms: Klaviyo, …
#[async_trait::async_trait]
pub trait Marketing: Send + Sync {
    /// The profile matching `lookup`, if any.
    async fn find_profile(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<MarketingProfile>, ConnectorError>;

    /// Subscribe a consenting caller to the tenant's list. Callers must only pass a subscription
    /// the caller explicitly agreed to.
    async fn subscribe(
        &self,
        ctx: &RequestContext,
        subscription: &Subscription,
    ) -> Result<(), ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CouponDiscount {
    /// Percent off (`15` = 15 %).
    Percent(f64),
    /// A fixed amount off, in the shop's currency.
    Amount(f64),
    FreeShipping,
}

/// The tenant's limits on coupons made during calls; the model cannot exceed them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CouponCaps {
    pub max_percent: f64,
    pub max_amount: f64,
    /// Coupons per rolling 24 hours.
    pub max_per_day: u32,
    /// Days a coupon stays valid.
    pub valid_days: u32,
}

impl Default for CouponCaps {
    fn default() -> Self {
        Self {
            max_percent: 10.0,
            max_amount: 10.0,
            max_per_day: 20,
            valid_days: 7,
        }
    }
}

impl CouponCaps {
    /// Refuses a discount beyond the caps (or a nonsensical one) with a sentence the model can use.
    pub fn check(&self, discount: &CouponDiscount) -> Result<(), ConnectorError> {
        let within = |value: f64, max: f64| value > 0.0 && value <= max;
        match *discount {
            CouponDiscount::Percent(rate) if !within(rate, self.max_percent) => {
                Err(ConnectorError::InvalidInput(format!(
                    "a percentage coupon can be at most {} percent",
                    self.max_percent
                )))
            }
            CouponDiscount::Amount(amount) if !within(amount, self.max_amount) => {
                Err(ConnectorError::InvalidInput(format!(
                    "a fixed-amount coupon can be at most {}",
                    self.max_amount
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A coupon made for the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Coupon {
    pub id: String,
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Coupon platforms: Wix, …
#[async_trait::async_trait]
pub trait Coupons: Send + Sync {
    /// The tenant's caps. The amount caps are checked by [`Coupons::create_coupon`] too; the
    /// per-day count ([`CouponCaps::max_per_day`]) is kept by the caller, which reserves a slot
    /// in its store before asking (connectors hold no state).
    fn caps(&self) -> CouponCaps;

    /// A single-use coupon, within the tenant's amount caps (checked here, before anything is
    /// sent). `idempotency_key` comes from the ledger and determines the code, so a retry cannot
    /// make a second coupon.
    async fn create_coupon(
        &self,
        ctx: &RequestContext,
        discount: &CouponDiscount,
        idempotency_key: &str,
    ) -> Result<Coupon, ConnectorError>;

    /// A harmless read proving the credentials and base URL work.
    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError>;
}

/// The caller-verification rule every [`Commerce`] connector applies before describing an order:
/// the order's own email or phone (any of those the vendor records: the order's, its customer's,
/// billing and shipping) must match what the caller gave. Emails compare case-insensitively;
/// phones on their last ten digits ([`same_phone`]). An order without any contact never matches.
pub fn caller_owns_order<'a>(
    verify: &ContactLookup,
    emails: impl IntoIterator<Item = Option<&'a str>>,
    phones: impl IntoIterator<Item = Option<&'a str>>,
) -> bool {
    match verify {
        ContactLookup::Email(email) => {
            let email = email.trim();
            !email.is_empty()
                && emails
                    .into_iter()
                    .flatten()
                    .any(|known| known.trim().eq_ignore_ascii_case(email))
        }
        ContactLookup::Phone(phone) => phones
            .into_iter()
            .flatten()
            .any(|known| same_phone(known, phone)),
    }
}

/// Phones match when their last ten digits do (ignores `+1`, spaces, dashes); fewer than seven
/// digits never match.
pub fn same_phone(a: &str, b: &str) -> bool {
    let (a, b) = (phone_digits(a), phone_digits(b));
    let tail = |d: &str| d[d.len().saturating_sub(10)..].to_owned();
    a.len() >= 7 && b.len() >= 7 && tail(&a) == tail(&b)
}

/// Errors a connector reports to the tool layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the vendor rejected the request: {0}")]
    Rejected(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("vendor authorisation failed: {0}")]
    Auth(String),
    #[error("unexpected vendor response: {0}")]
    UnexpectedResponse(String),
    #[error("connector configuration: {0}")]
    Config(String),
}

impl ConnectorError {
    /// A short sentence the model may say to the caller. No vendor detail, no secret.
    pub fn speakable(&self) -> &'static str {
        match self {
            Self::Policy(err) => err.speakable(),
            Self::NotFound(_) => "I couldn't find that booking or record.",
            Self::Conflict(_) => "That time is no longer available.",
            Self::Rejected(_) => "The system didn't accept that request.",
            Self::InvalidInput(_) => "Some of the details weren't valid.",
            Self::Auth(_) | Self::Config(_) => "We aren't able to access that system right now.",
            Self::UnexpectedResponse(_) => "The system we use sent an answer I couldn't read.",
        }
    }

    /// Maps a vendor status to the connector error it means, keeping transport-level failures
    /// as they are. `what` names the object for the message (`booking`, `event`, …).
    pub fn from_policy(err: PolicyError, what: &str) -> Self {
        match &err {
            PolicyError::Status {
                code: 404 | 410, ..
            } => Self::NotFound(what.to_owned()),
            PolicyError::Status {
                code: 409,
                body_snippet,
                ..
            } => Self::Conflict(body_snippet.clone()),
            PolicyError::Status {
                code: 401 | 403, ..
            } => Self::Auth(format!("{what}: vendor refused the credentials")),
            PolicyError::Status {
                code: 400 | 422,
                body_snippet,
                ..
            } => Self::Rejected(body_snippet.clone()),
            PolicyError::Decode(detail) => Self::UnexpectedResponse(detail.clone()),
            _ => Self::Policy(err),
        }
    }
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, ConnectorError> {
    client::join(base, segments)
}

/// Parse a base URL from configuration.
pub fn parse_base_url(text: &str) -> Result<Url, ConnectorError> {
    Url::parse(text).map_err(|err| ConnectorError::Config(format!("invalid base URL: {err}")))
}

/// RFC 3339 with a `Z` suffix and whole seconds, the form every vendor accepts.
pub(crate) fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parse a vendor timestamp (any RFC 3339 offset) into UTC.
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, ConnectorError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|err| ConnectorError::UnexpectedResponse(format!("bad timestamp {text:?}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_duration_in_each_vendor_form() {
        let note = |secs| CallNote {
            body: String::new(),
            at: Utc::now(),
            duration_secs: secs,
            outcome: None,
            inbound: None,
        };
        assert_eq!(note(Some(95)).duration_hh_mm().as_deref(), Some("00:02"));
        assert_eq!(note(Some(0)).duration_hh_mm().as_deref(), Some("00:00"));
        assert_eq!(note(Some(3_600)).duration_hh_mm().as_deref(), Some("01:00"));
        assert_eq!(note(Some(125)).duration_mm_ss().as_deref(), Some("02:05"));
        assert_eq!(note(Some(3_725)).duration_mm_ss().as_deref(), Some("62:05"));
        assert_eq!(note(None).duration_mm_ss(), None);
    }
    use chrono::TimeZone;

    #[test]
    fn a_slot_is_spoken_in_the_business_zone() {
        let start = Utc
            .with_ymd_and_hms(2025, 3, 4, 15, 0, 0)
            .single()
            .expect("valid");
        let slot = Slot {
            start,
            end: start + chrono::Duration::minutes(30),
            zone: chrono_tz::America::New_York,
        };
        assert_eq!(
            slot.spoken(),
            "Tuesday 4 March at 10:00 AM EST (America/New_York)"
        );
        let summer = Utc
            .with_ymd_and_hms(2025, 7, 1, 9, 30, 0)
            .single()
            .expect("valid");
        let slot = Slot {
            start: summer,
            end: summer,
            zone: chrono_tz::Europe::London,
        };
        assert_eq!(
            slot.spoken(),
            "Tuesday 1 July at 10:30 AM BST (Europe/London)"
        );
    }

    #[test]
    fn endpoint_encodes_each_segment() {
        let base = parse_base_url("https://www.googleapis.com/calendar/v3/").expect("valid");
        let url = endpoint(
            &base,
            &[
                "calendars",
                "team cal#1@group.calendar.google.com",
                "events",
            ],
        )
        .expect("joins");
        assert_eq!(
            url.as_str(),
            "https://www.googleapis.com/calendar/v3/calendars/team%20cal%231@group.calendar.google.com/events"
        );
        let no_slash = parse_base_url("http://127.0.0.1:9/v2").expect("valid");
        assert_eq!(
            endpoint(&no_slash, &["slots"]).expect("joins").as_str(),
            "http://127.0.0.1:9/v2/slots"
        );
    }

    #[test]
    fn phones_compare_on_their_last_ten_digits() {
        assert!(same_phone("+1 (415) 555-0100", "4155550100"));
        assert!(!same_phone("+1 415 555 0100", "+1 415 555 0199"));
        assert!(!same_phone("", "123"));
    }

    #[test]
    fn an_order_is_the_callers_only_when_a_contact_matches() {
        let email = ContactLookup::Email(" Bob@Example.com ".into());
        let phone = ContactLookup::Phone("+14155550100".into());
        let emails = || [None, Some("bob@example.com")];
        let phones = || [Some("(415) 555-0100"), None];
        assert!(caller_owns_order(&email, emails(), phones()));
        assert!(caller_owns_order(&phone, emails(), phones()));
        // A wrong phone or email, an empty one, or an order without contacts: no match.
        let wrong = ContactLookup::Phone("+14155550199".into());
        assert!(!caller_owns_order(&wrong, emails(), phones()));
        let other = ContactLookup::Email("eve@example.com".into());
        assert!(!caller_owns_order(&other, emails(), phones()));
        assert!(!caller_owns_order(
            &ContactLookup::Email(" ".into()),
            [Some(" ")],
            [None]
        ));
        assert!(!caller_owns_order(&phone, [None], [None, Some("")]));
        // An email never matches a phone field, nor the other way round.
        assert!(!caller_owns_order(&phone, [Some("4155550100")], [None]));
    }

    #[test]
    fn an_empty_window_is_refused() {
        let at = Utc::now();
        assert!(TimeWindow::new(at, at).is_err());
    }

    #[test]
    fn attendee_debug_hides_personal_data() {
        let attendee = Attendee {
            name: "Ann Lee".into(),
            email: Some("ann@example.com".into()),
            phone: Some("+14155550100".into()),
            zone: None,
        };
        let shown = format!("{attendee:?}");
        assert!(
            !shown.contains("Ann") && !shown.contains("ann@") && !shown.contains("555"),
            "{shown}"
        );
    }
}

//! Wix as a [`Coupons`] connector: single-use, expiring coupons within the tenant's caps.
//!
//! No machine-readable spec is held. This follows the Wix REST reference, Coupons API:
//! "Create a Coupon" (<https://dev.wix.com/docs/rest/business-management/marketing/coupons/coupons/create-a-coupon>,
//! `POST https://www.wixapis.com/stores/v2/coupons` with a `specification`) and "Query Coupons"
//! (`POST /stores/v2/coupons/query`, filter as a JSON string on `name` and `dateCreated`, per
//! "About the Coupons API": <https://dev.wix.com/docs/rest/api-reference/coupons/coupons/introduction>).
//! The request shapes the tests check are written from those pages into
//! `fixtures/vendor-specs/wix/coupons-reference.json`. Credentials: an API key in `Authorization`
//! and the site in `wix-site-id`.
//!
//! The caps ([`CouponCaps`]: largest percentage and amount, coupons per rolling 24 hours, days of
//! validity) are the tenant's settings; a request beyond them is refused here before anything is
//! sent. The count per rolling 24 hours is not kept here: `create_coupon` (tools layer) reserves
//! a slot in its store before asking and releases it when Wix refuses. Every
//! coupon is single-use (`usageLimit: 1`) and expires. The code derives from the ledger key, so
//! the same tool call can never make two coupons. This module must not widen a cap or let the
//! model choose a code.
//!
//! Wix Stores as a [`Commerce`] connector too: orders by number through eCommerce "Search Orders"
//! (<https://dev.wix.com/docs/rest/business-solutions/e-commerce/orders/search-orders>,
//! `POST /ecom/v1/orders/search`), described only when the caller's email or phone matches the
//! order's buyer, billing or shipping contact ([`caller_owns_order`]); products through Stores
//! "Query Products" (<https://dev.wix.com/docs/rest/business-solutions/stores/catalog/query-products>,
//! `POST /stores/v1/products/query`).
//!
//! Wix CRM as a [`Crm`] too (Contacts v4 and Notes v2 of the REST reference):
//! contacts found by "Query Contacts"
//! (<https://dev.wix.com/docs/rest/crm/members-contacts/contacts/contacts/contact-v4/query-contacts>,
//! `POST /contacts/v4/contacts/query`, a `filter` on `info.emails.email`, or on
//! `info.phones.e164Phone` and `info.phones.phone` with every stored form of the number from
//! [`stored_forms`]), created by "Create Contact" (`POST /contacts/v4/contacts`,
//! `allowDuplicates: false`, the tenant's `contact_label` in `info.labelKeys`) and updated by
//! "Update Contact"
//! (<https://dev.wix.com/docs/rest/crm/members-contacts/contacts/contacts/contact-v4/update-contact>,
//! `PATCH /contacts/v4/contacts/{contactId}` with the contact's current `revision`; a 409 whose
//! re-read shows a newer revision is retried once with it, else it is a duplicate email or
//! phone). The call is a `CALL_SUMMARY` note from "Create Note"
//! (<https://dev.wix.com/docs/api-reference/crm/members-contacts/contacts/notes/notes-v2/create-note>,
//! `POST /crm/notes/v2/notes`, text at most 2,048 characters, so the duration and outcome lead and
//! the summary is cut to fit). Wix has no call-activity object nor meetings on a contact:
//! bookings are recorded as `MEETING_SUMMARY` notes, and a moved or cancelled booking adds no
//! second note (the first stays as written). Creates are never replayed (the tool-call ledger
//! keeps them single); the shapes the tests check are in
//! `fixtures/vendor-specs/wix/contacts-reference.json`. This module must not keep contacts in
//! memory.

use chrono::{DateTime, Duration, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::client::{Auth, VendorClient, VendorRequest};
use super::phone::stored_forms;
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    CallNote, Commerce, ConnectorError, Contact, ContactInput, ContactLookup, Coupon, Crm,
    CrmMeeting, MeetingChange, CouponCaps, CouponDiscount, Coupons, Money,
    OrderStatus, Product, ProductVariant, caller_owns_order, parse_time, rfc3339, same_phone,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, Replay, RequestContext};

pub const CONNECTOR: &str = "wix";
/// Every coupon this bridge makes is named with this prefix (the health check reads them back).
pub const NAME_PREFIX: &str = "Phone call coupon";
/// Coupons read back by the health check.
const COUNT_PAGE: u32 = 100;

pub struct WixConfig {
    pub base_url: reqwest::Url,
    pub api_key: SecretString,
    pub site_id: String,
    pub caps: CouponCaps,
    /// Country calling code used to derive a number's national forms (`1`, `44`).
    pub country_code: String,
    /// Label key added to a contact this bridge creates (`custom.phone-callers`); none if empty.
    pub contact_label: Option<String>,
}

impl std::fmt::Debug for WixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WixConfig")
            .field("base_url", &self.base_url.as_str())
            .field("site_id", &self.site_id)
            .field("caps", &self.caps)
            .field("country_code", &self.country_code)
            .field("contact_label", &self.contact_label)
            .finish_non_exhaustive()
    }
}

pub struct Wix {
    client: VendorClient,
    site_id: HeaderValue,
    caps: CouponCaps,
    country_code: String,
    contact_label: Option<String>,
}

/// Largest note text Wix keeps ("About the Notes API").
const NOTE_TEXT_MAX: usize = 2048;

/// A v4 contact, the fields the CRM tools use.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WixContact {
    id: String,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    info: ContactInfo,
    #[serde(default)]
    primary_info: PrimaryInfo,
}

#[derive(Default, Deserialize)]
struct ContactInfo {
    #[serde(default)]
    name: Option<ContactName>,
    #[serde(default)]
    emails: Option<Items<EmailItem>>,
    #[serde(default)]
    phones: Option<Items<PhoneItem>>,
    #[serde(default)]
    company: Option<String>,
}

#[derive(Deserialize)]
struct ContactName {
    #[serde(default)]
    first: Option<String>,
    #[serde(default)]
    last: Option<String>,
}

#[derive(Deserialize)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct EmailItem {
    #[serde(default)]
    tag: Option<String>,
    email: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneItem {
    #[serde(default)]
    tag: Option<String>,
    phone: String,
    #[serde(default)]
    e164_phone: Option<String>,
}

#[derive(Default, Deserialize)]
struct PrimaryInfo {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Deserialize)]
struct ContactsFound {
    #[serde(default)]
    contacts: Vec<WixContact>,
}

#[derive(Deserialize)]
struct OneContact {
    contact: WixContact,
}

#[derive(Deserialize)]
struct OneNote {
    note: Created,
}

impl WixContact {
    fn emails(&self) -> impl Iterator<Item = &EmailItem> {
        self.info.emails.iter().flat_map(|e| e.items.iter())
    }

    fn phones(&self) -> impl Iterator<Item = &PhoneItem> {
        self.info.phones.iter().flat_map(|p| p.items.iter())
    }

    fn into_contact(self) -> Contact {
        let email = self
            .primary_info
            .email
            .clone()
            .or_else(|| self.emails().next().map(|e| e.email.clone()));
        let phone = self
            .primary_info
            .phone
            .clone()
            .or_else(|| self.phones().next().map(|p| p.phone.clone()));
        let company = self.info.company.filter(|c| !c.is_empty());
        let (first_name, last_name) = self
            .info
            .name
            .map_or((None, None), |n| (n.first, n.last));
        Contact {
            company,
            id: self.id,
            first_name: first_name.filter(|n| !n.is_empty()),
            last_name: last_name.filter(|n| !n.is_empty()),
            email,
            phone,
        }
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct Queried {
    #[serde(default)]
    coupons: Vec<Value>,
}

#[derive(Deserialize)]
struct OrdersFound {
    #[serde(default)]
    orders: Vec<OrderNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderNode {
    number: String,
    #[serde(default)]
    created_date: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    fulfillment_status: Option<String>,
    #[serde(default)]
    buyer_info: Option<BuyerInfo>,
    #[serde(default)]
    billing_info: Option<AddressInfo>,
    #[serde(default)]
    shipping_info: Option<ShippingInfo>,
}

#[derive(Deserialize)]
struct BuyerInfo {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressInfo {
    #[serde(default)]
    contact_details: Option<ContactDetails>,
}

#[derive(Deserialize)]
struct ContactDetails {
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShippingInfo {
    #[serde(default)]
    logistics: Option<Logistics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Logistics {
    #[serde(default)]
    shipping_destination: Option<AddressInfo>,
}

#[derive(Deserialize)]
struct ProductsFound {
    #[serde(default)]
    products: Vec<ProductNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductNode {
    id: String,
    name: String,
    #[serde(default)]
    visible: Option<bool>,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price_data: Option<PriceData>,
    #[serde(default)]
    stock: Option<Stock>,
}

#[derive(Deserialize)]
struct PriceData {
    currency: String,
    price: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stock {
    #[serde(default)]
    track_inventory: bool,
    #[serde(default)]
    quantity: Option<i64>,
    #[serde(default)]
    in_stock: bool,
}

/// Search words only (they go into a `$startsWith` filter value).
fn search_term(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | '\''))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The coupon code for a ledger key: `CALL` and ten hex digits (Wix allows twenty characters).
pub fn coupon_code(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02X}")).collect();
    format!("CALL{hex}")
}

/// A Wix id (a GUID) as it may go into a path: hex digits and dashes only.
fn checked_id(id: &str) -> Result<&str, ConnectorError> {
    let ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then_some(id)
        .ok_or_else(|| ConnectorError::InvalidInput("a Wix contact id is a GUID".into()))
}

/// A 409 on a contact write: its email or phone is another contact's (Wix's duplicate check).
fn duplicate(err: ConnectorError) -> ConnectorError {
    match err {
        ConnectorError::Conflict(_) => ConnectorError::Rejected(
            "another contact already has this email or phone number".into(),
        ),
        other => other,
    }
}

/// What `input` changes on `contact`, as an Update Contact `info`: the name's given parts, and
/// an email or phone the contact lacks added to its list (the lists are sent whole). `None` when
/// nothing changes.
fn info_changes(contact: &WixContact, input: &ContactInput) -> Option<Map<String, Value>> {
    let mut info = Map::new();
    let current = contact.info.name.as_ref();
    let first = input
        .first_name
        .clone()
        .or_else(|| current.and_then(|n| n.first.clone()));
    let last = input
        .last_name
        .clone()
        .or_else(|| current.and_then(|n| n.last.clone()));
    let name_changes = (input.first_name.is_some()
        && input.first_name.as_deref() != current.and_then(|n| n.first.as_deref()))
        || (input.last_name.is_some()
            && input.last_name.as_deref() != current.and_then(|n| n.last.as_deref()));
    if name_changes {
        info.insert("name".into(), json!({"first": first, "last": last}));
    }
    if let Some(email) = input
        .email
        .as_deref()
        .filter(|new| !contact.emails().any(|e| e.email.eq_ignore_ascii_case(new)))
    {
        let mut items: Vec<Value> = contact
            .emails()
            .map(|e| json!({"tag": e.tag.as_deref().unwrap_or("MAIN"), "email": e.email}))
            .collect();
        items.push(json!({"tag": "MAIN", "email": email}));
        info.insert("emails".into(), json!({ "items": items }));
    }
    if let Some(phone) = input.phone.as_deref().filter(|new| {
        !contact.phones().any(|p| {
            same_phone(&p.phone, new) || p.e164_phone.as_deref().is_some_and(|e| same_phone(e, new))
        })
    }) {
        let mut items: Vec<Value> = contact
            .phones()
            .map(|p| json!({"tag": p.tag.as_deref().unwrap_or("MOBILE"), "phone": p.phone}))
            .collect();
        items.push(json!({"tag": "MOBILE", "phone": phone}));
        info.insert("phones".into(), json!({ "items": items }));
    }
    (!info.is_empty()).then_some(info)
}

/// A note's text within Wix's limit, cut on a character boundary.
fn fit_note(text: &str) -> String {
    text.chars().take(NOTE_TEXT_MAX).collect()
}

/// The first line of a call note: which way, how long, how it went, as far as known.
fn call_heading(note: &CallNote) -> String {
    let mut heading = match note.inbound {
        Some(true) => "Inbound phone call".to_owned(),
        Some(false) => "Outbound phone call".to_owned(),
        None => "Phone call".to_owned(),
    };
    heading.push_str(&format!(" at {}", rfc3339(&note.at)));
    if let Some(duration) = note.duration_mm_ss() {
        heading.push_str(&format!(", {duration} long"));
    }
    if let Some(outcome) = note.outcome {
        heading.push_str(&format!(", {}", outcome.label()));
    }
    heading
}

/// The text of the note recording a booking.
fn meeting_text(meeting: &CrmMeeting) -> String {
    format!(
        "Appointment: {} ({} to {})\n{}",
        meeting.title,
        rfc3339(&meeting.start),
        rfc3339(&meeting.end),
        meeting.body
    )
}

/// The line a booking's note starts with once the booking changed.
fn change_line(change: &MeetingChange) -> String {
    match change {
        MeetingChange::Moved { start, end } => {
            format!("Moved to {} to {}.", rfc3339(start), rfc3339(end))
        }
        MeetingChange::Cancelled => "Cancelled by the caller.".to_owned(),
    }
}

impl Wix {
    pub fn new(policy: HttpPolicy, config: WixConfig) -> Result<Self, ConnectorError> {
        super::endpoint(&config.base_url, &["stores", "v2", "coupons"])?;
        let site_id = HeaderValue::from_str(config.site_id.trim())
            .ok()
            .filter(|_| !config.site_id.trim().is_empty())
            .ok_or_else(|| ConnectorError::Config("site_id is not a valid site id".into()))?;
        let caps = config.caps;
        let percent_ok = caps.max_percent > 0.0 && caps.max_percent <= 100.0;
        let amount_ok = caps.max_amount.is_finite() && caps.max_amount >= 0.0;
        if !percent_ok
            || !amount_ok
            || caps.valid_days == 0
            || caps.valid_days > 365
        {
            return Err(ConnectorError::Config(
                "coupon caps: max_percent 1–100, max_amount ≥ 0, valid_days 1–365".into(),
            ));
        }
        if config.country_code.is_empty() || !config.country_code.chars().all(|c| c.is_ascii_digit())
        {
            return Err(ConnectorError::Config(
                "country_code is a calling code such as 1 or 44".into(),
            ));
        }
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url,
                Auth::Header {
                    name: reqwest::header::AUTHORIZATION,
                    value: config.api_key,
                },
            ),
            site_id,
            caps,
            country_code: config.country_code,
            contact_label: config
                .contact_label
                .map(|label| label.trim().to_owned())
                .filter(|label| !label.is_empty()),
        })
    }

    /// `request` for this site (every Wix call names it in `wix-site-id`).
    fn for_site<'a>(&self, request: VendorRequest<'a>) -> VendorRequest<'a> {
        let (name, value) = self.site();
        request.header(name, value)
    }

    /// Contacts matching `lookup` (operation: Query Contacts; a read, replayable).
    async fn query_contacts(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<WixContact>, ConnectorError> {
        let filter = match lookup {
            ContactLookup::Email(email) => {
                json!({"info.emails.email": {"$eq": email.trim().to_lowercase()}})
            }
            ContactLookup::Phone(e164) => json!({"$or": [
                {"info.phones.e164Phone": {"$eq": e164}},
                {"info.phones.phone": {"$in": stored_forms(e164, &self.country_code)}},
            ]}),
        };
        let found: ContactsFound = self
            .for_site(self.client.post(&["contacts", "v4", "contacts", "query"]))
            .json(json!({"query": {"filter": filter, "paging": {"limit": 1}}}))
            .replay(Replay::Idempotent)
            .send_json(ctx, "contact")
            .await?;
        Ok(found.contacts.into_iter().next())
    }

    /// The contact as it is now (operation: Get Contact), for its current revision.
    async fn contact(&self, ctx: &RequestContext, id: &str) -> Result<WixContact, ConnectorError> {
        let found: OneContact = self
            .for_site(self.client.get(&["contacts", "v4", "contacts", checked_id(id)?]))
            .send_json(ctx, "contact")
            .await?;
        Ok(found.contact)
    }

    /// Operation: Create Contact — never replayed; a duplicate email or phone is refused.
    async fn create_contact(
        &self,
        ctx: &RequestContext,
        input: &ContactInput,
    ) -> Result<Contact, ConnectorError> {
        let mut info = Map::new();
        if input.first_name.is_some() || input.last_name.is_some() {
            info.insert(
                "name".into(),
                json!({"first": input.first_name, "last": input.last_name}),
            );
        }
        if let Some(email) = &input.email {
            info.insert("emails".into(), json!({"items": [{"tag": "MAIN", "email": email}]}));
        }
        if let Some(phone) = &input.phone {
            info.insert("phones".into(), json!({"items": [{"tag": "MOBILE", "phone": phone}]}));
        }
        if let Some(label) = &self.contact_label {
            info.insert("labelKeys".into(), json!({"items": [label]}));
        }
        let created = self
            .for_site(self.client.post(&["contacts", "v4", "contacts"]))
            .json(json!({"info": info, "allowDuplicates": false}))
            .replay(Replay::Never)
            .send(ctx, "contact")
            .await
            .map_err(duplicate)?;
        Ok(created.json::<OneContact>()?.contact.into_contact())
    }

    /// Operation: Update Contact at the contact's revision; a conflict whose re-read shows a
    /// newer revision (someone else edited the contact) is applied once more on that one.
    async fn update_contact(
        &self,
        ctx: &RequestContext,
        contact: WixContact,
        input: &ContactInput,
    ) -> Result<Contact, ConnectorError> {
        let mut current = contact;
        for attempt in 0..2 {
            let Some(info) = info_changes(&current, input) else {
                return Ok(current.into_contact());
            };
            let revision = current.revision.ok_or_else(|| {
                ConnectorError::UnexpectedResponse("contact without revision".into())
            })?;
            let sent = self
                .for_site(self.client.patch(&["contacts", "v4", "contacts", checked_id(&current.id)?]))
                .json(json!({"revision": revision, "info": info, "allowDuplicates": false}))
                .replay(Replay::Idempotent)
                .send(ctx, "contact")
                .await;
            match sent {
                Ok(updated) => return Ok(updated.json::<OneContact>()?.contact.into_contact()),
                Err(ConnectorError::Conflict(detail)) if attempt == 0 => {
                    let fresh = self.contact(ctx, &current.id).await?;
                    if fresh.revision == current.revision {
                        // Not a stale revision: the email or phone belongs to another contact.
                        return Err(duplicate(ConnectorError::Conflict(detail)));
                    }
                    current = fresh;
                }
                Err(err) => return Err(duplicate(err)),
            }
        }
        Err(ConnectorError::Rejected(
            "the contact kept changing while it was being updated".into(),
        ))
    }

    /// Operation: Create Note — a note of `kind` on the contact; never replayed.
    async fn create_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        text: &str,
        kind: &str,
    ) -> Result<String, ConnectorError> {
        let created: OneNote = self
            .for_site(self.client.post(&["crm", "notes", "v2", "notes"]))
            .json(json!({"note": {
                "contactId": checked_id(contact_id)?,
                "text": fit_note(text),
                "type": kind,
            }}))
            .replay(Replay::Never)
            .send_json(ctx, "note")
            .await?;
        Ok(created.note.id)
    }

    fn site(&self) -> (HeaderName, HeaderValue) {
        (HeaderName::from_static("wix-site-id"), self.site_id.clone())
    }

    /// Coupons this bridge made since `since` (up to one page).
    async fn made_since(
        &self,
        ctx: &RequestContext,
        since: DateTime<Utc>,
    ) -> Result<u32, ConnectorError> {
        let filter = json!({
            "name": {"$startsWith": NAME_PREFIX},
            "dateCreated": {"$gte": rfc3339(&since)},
        });
        let (name, value) = self.site();
        let found: Queried = self
            .client
            .post(&["stores", "v2", "coupons", "query"])
            .header(name, value)
            .json(json!({"query": {"filter": filter.to_string(), "paging": {"limit": COUNT_PAGE}}}))
            .replay(crate::connectors::http::Replay::Idempotent)
            .send_json(ctx, "coupons")
            .await?;
        Ok(u32::try_from(found.coupons.len()).unwrap_or(u32::MAX))
    }
}

#[async_trait::async_trait]
impl Coupons for Wix {
    fn caps(&self) -> CouponCaps {
        self.caps
    }

    async fn create_coupon(
        &self,
        ctx: &RequestContext,
        discount: &CouponDiscount,
        idempotency_key: &str,
    ) -> Result<Coupon, ConnectorError> {
        self.caps.check(discount)?;
        let now = Utc::now();
        let code = coupon_code(idempotency_key);
        let expires_at = now + Duration::days(i64::from(self.caps.valid_days));
        let mut specification = json!({
            "name": format!("{NAME_PREFIX} {code}"),
            "code": code,
            "active": true,
            "startTime": now.timestamp_millis(),
            "expirationTime": expires_at.timestamp_millis(),
            "usageLimit": 1,
            "limitedToOneItem": false,
        });
        match *discount {
            CouponDiscount::Percent(rate) => {
                specification["percentOffRate"] = json!(rate);
                specification["scope"] = json!({"namespace": "stores"});
            }
            CouponDiscount::Amount(amount) => {
                specification["moneyOffAmount"] = json!(amount);
                specification["scope"] = json!({"namespace": "stores"});
            }
            // Wix refuses a scope on a free-shipping coupon.
            CouponDiscount::FreeShipping => specification["freeShipping"] = json!(true),
        }
        let (name, value) = self.site();
        let created: Created = self
            .client
            .post(&["stores", "v2", "coupons"])
            .header(name, value)
            .json(json!({ "specification": specification }))
            .send_json(ctx, "coupon")
            .await?;
        Ok(Coupon {
            id: created.id,
            code,
            expires_at,
        })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        self.made_since(ctx, Utc::now() - Duration::hours(24))
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl Commerce for Wix {
    async fn order_status(
        &self,
        ctx: &RequestContext,
        order_number: &str,
        verify: &ContactLookup,
    ) -> Result<OrderStatus, ConnectorError> {
        let number = order_number.trim().trim_start_matches('#');
        if number.is_empty() || number.len() > 20 || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConnectorError::InvalidInput(
                "a Wix order number is digits only".into(),
            ));
        }
        let (name, value) = self.site();
        let found: OrdersFound = self
            .client
            .post(&["ecom", "v1", "orders", "search"])
            .header(name, value)
            .json(json!({"search": {"filter": {"number": {"$eq": number}}, "cursorPaging": {"limit": 1}}}))
            .replay(crate::connectors::http::Replay::Idempotent)
            .send_json(ctx, "order")
            .await?;
        let order = found
            .orders
            .into_iter()
            .find(|order| order.number == number)
            .filter(|order| {
                let billing = order
                    .billing_info
                    .as_ref()
                    .and_then(|b| b.contact_details.as_ref())
                    .and_then(|c| c.phone.as_deref());
                let shipping = order
                    .shipping_info
                    .as_ref()
                    .and_then(|s| s.logistics.as_ref())
                    .and_then(|l| l.shipping_destination.as_ref())
                    .and_then(|d| d.contact_details.as_ref())
                    .and_then(|c| c.phone.as_deref());
                caller_owns_order(
                    verify,
                    [order.buyer_info.as_ref().and_then(|b| b.email.as_deref())],
                    [billing, shipping],
                )
            })
            .ok_or_else(|| ConnectorError::NotFound("order".into()))?;
        Ok(OrderStatus {
            placed_at: order.created_date.as_deref().map(parse_time).transpose()?,
            cancelled: order.status.as_deref() == Some("CANCELED"),
            payment_status: order.payment_status,
            fulfillment_status: order.fulfillment_status,
            status_page_url: None,
            number: format!("#{}", order.number),
            shipments: Vec::new(),
        })
    }

    async fn search_products(
        &self,
        ctx: &RequestContext,
        query: &str,
    ) -> Result<Vec<Product>, ConnectorError> {
        let term = search_term(query);
        if term.is_empty() {
            return Err(ConnectorError::InvalidInput(
                "a product to look for is needed".into(),
            ));
        }
        let filter = json!({"name": {"$startsWith": term}});
        let (name, value) = self.site();
        let found: ProductsFound = self
            .client
            .post(&["stores", "v1", "products", "query"])
            .header(name, value)
            .json(json!({"query": {"filter": filter.to_string(), "paging": {"limit": 5}}}))
            .replay(crate::connectors::http::Replay::Idempotent)
            .send_json(ctx, "product")
            .await?;
        Ok(found
            .products
            .into_iter()
            .filter(|p| p.visible != Some(false))
            .map(|p| {
                let stock = p.stock.unwrap_or(Stock {
                    track_inventory: false,
                    quantity: None,
                    in_stock: false,
                });
                let units = stock.quantity.filter(|_| stock.track_inventory);
                let price = p.price_data.as_ref().map(|d| format!("{:.2}", d.price));
                Product {
                    id: p.id,
                    min_price: p.price_data.map(|d| Money {
                        amount: format!("{:.2}", d.price),
                        currency: d.currency,
                    }),
                    total_inventory: units,
                    variants: vec![ProductVariant {
                        title: p.name.clone(),
                        sku: p.sku.filter(|s| !s.is_empty()),
                        price,
                        available: stock.in_stock,
                        inventory: units,
                    }],
                    title: p.name,
                }
            })
            .collect())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        Coupons::health_check(self, ctx).await
    }
}

#[async_trait::async_trait]
impl Crm for Wix {
    async fn find_contact(
        &self,
        ctx: &RequestContext,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ConnectorError> {
        Ok(self
            .query_contacts(ctx, lookup)
            .await?
            .map(WixContact::into_contact))
    }

    async fn upsert_contact(
        &self,
        ctx: &RequestContext,
        contact: &ContactInput,
        _idempotency_key: &str,
    ) -> Result<Contact, ConnectorError> {
        let lookup = contact.lookup()?;
        match self.query_contacts(ctx, &lookup).await? {
            Some(found) => self.update_contact(ctx, found, contact).await,
            None => self.create_contact(ctx, contact).await,
        }
    }

    async fn log_call_note(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        note: &CallNote,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        let text = format!("{}\n{}", call_heading(note), note.body);
        self.create_note(ctx, contact_id, &text, "CALL_SUMMARY").await
    }

    async fn record_meeting(
        &self,
        ctx: &RequestContext,
        contact_id: &str,
        meeting: &CrmMeeting,
        _idempotency_key: &str,
    ) -> Result<String, ConnectorError> {
        self.create_note(ctx, contact_id, &meeting_text(meeting), "MEETING_SUMMARY")
            .await
    }

    async fn update_meeting(
        &self,
        ctx: &RequestContext,
        meeting_id: &str,
        change: &MeetingChange,
    ) -> Result<(), ConnectorError> {
        // Operations: Get Note, then Update Note at its revision. The change is written as the
        // note's first line; a note already starting with it is left as it is.
        let id = checked_id(meeting_id)?;
        let found: Value = self
            .for_site(self.client.get(&["crm", "notes", "v2", "notes", id]))
            .send_json(ctx, "meeting")
            .await?;
        let text = found["note"]["text"].as_str().unwrap_or_default();
        let line = change_line(change);
        if text.starts_with(&line) {
            return Ok(());
        }
        let revision = found["note"]["revision"].clone();
        if revision.is_null() {
            return Err(ConnectorError::UnexpectedResponse(
                "note without revision".into(),
            ));
        }
        self.for_site(self.client.patch(&["crm", "notes", "v2", "notes", id]))
            .json(json!({"note": {
                "id": id,
                "revision": revision,
                "text": fit_note(&format!("{line}\n{text}")),
            }}))
            .replay(Replay::Never)
            .send(ctx, "meeting")
            .await
            .map(|_| ())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        // A read of one contact: proves the key may read contacts on this site.
        self.for_site(self.client.post(&["contacts", "v4", "contacts", "query"]))
            .json(json!({"query": {"paging": {"limit": 1}}}))
            .replay(Replay::Idempotent)
            .send(ctx, "contact")
            .await
            .map(|_| ())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Wix",
    spec: "none held: https://dev.wix.com/docs/rest/business-management/marketing/coupons/coupons/create-a-coupon",
    default_base_url: Some("https://www.wixapis.com/"),
    capabilities: &[Capability::Coupons, Capability::Commerce, Capability::Crm],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "api_key",
                aliases: &[],
                required: true,
                doc: "Wix API key (Manage Coupons; Read Orders and Read Products for the shop tools; Manage Contacts and Manage Notes for the CRM tools)",
            },
            SecretField {
                name: "site_id",
                aliases: &[],
                required: true,
                doc: "the site the coupons are for",
            },
            SecretField {
                name: "max_percent",
                aliases: &[],
                required: false,
                doc: "largest percentage off, a whole number (default 10)",
            },
            SecretField {
                name: "max_amount",
                aliases: &[],
                required: false,
                doc: "largest fixed amount off, whole units of the shop's currency (default 10)",
            },
            SecretField {
                name: "max_per_day",
                aliases: &[],
                required: false,
                doc: "coupons by phone per rolling 24 hours (default 20)",
            },
            SecretField {
                name: "valid_days",
                aliases: &[],
                required: false,
                doc: "days a coupon stays valid (default 7)",
            },
            SecretField {
                name: "country_code",
                aliases: &[],
                required: false,
                doc: "calling code for national phone forms, default \"1\"",
            },
            SecretField {
                name: "contact_label",
                aliases: &[],
                required: false,
                doc: "label key added to contacts created by phone (e.g. `custom.phone-callers`)",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

/// The policy profile: the defaults (a create is never replayed: no idempotency header).
pub fn profile() -> ConnectorProfile {
    Vendor::plain_profile(CONNECTOR)
}

fn number(ctx: &BuildContext<'_>, name: &str) -> Option<f64> {
    ctx.credentials.unsigned(name).map(|n| n as f64)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let defaults = CouponCaps::default();
    let caps = CouponCaps {
        max_percent: number(&ctx, "max_percent").unwrap_or(defaults.max_percent),
        max_amount: number(&ctx, "max_amount").unwrap_or(defaults.max_amount),
        max_per_day: ctx
            .credentials
            .unsigned("max_per_day")
            .map_or(defaults.max_per_day, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        valid_days: ctx
            .credentials
            .unsigned("valid_days")
            .map_or(defaults.valid_days, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    };
    let base_url = ctx.base_url()?;
    let connector = Wix::new(
        ctx.policy,
        WixConfig {
            base_url,
            api_key: ctx.credentials.secret(&["api_key"])?,
            site_id: ctx.credentials.required_text("site_id")?,
            caps,
            country_code: ctx
                .credentials
                .text("country_code")
                .unwrap_or("1")
                .trim_start_matches('+')
                .to_owned(),
            contact_label: ctx.credentials.text("contact_label").map(str::to_owned),
        },
    )
    .map_err(|e| BuildFailure::Config(e.to_string()))?;
    let connector = std::sync::Arc::new(connector);
    Ok(Built {
        coupons: Some(connector.clone()),
        commerce: Some(connector.clone()),
        crm: Some(connector),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_ledger_key() {
        let code = coupon_code("tenant/CA1/create_coupon/abc");
        assert_eq!(code, coupon_code("tenant/CA1/create_coupon/abc"));
        assert_ne!(code, coupon_code("tenant/CA2/create_coupon/abc"));
        assert_eq!(code.len(), 14);
        assert!(code.starts_with("CALL"));
    }

    #[test]
    fn caps_refuse_what_exceeds_them() {
        let caps = CouponCaps::default();
        assert!(caps.check(&CouponDiscount::Percent(10.0)).is_ok());
        assert!(caps.check(&CouponDiscount::Percent(10.5)).is_err());
        assert!(caps.check(&CouponDiscount::Percent(0.0)).is_err());
        assert!(caps.check(&CouponDiscount::Percent(f64::NAN)).is_err());
        assert!(caps.check(&CouponDiscount::Amount(10.0)).is_ok());
        assert!(caps.check(&CouponDiscount::Amount(-5.0)).is_err());
        assert!(caps.check(&CouponDiscount::Amount(1e9)).is_err());
        assert!(caps.check(&CouponDiscount::FreeShipping).is_ok());
    }
}

//! Stripe as a [`Payments`] connector: a Checkout Session for catalogue items, and its status.
//!
//! Follows the held spec `vendor-specs/stripe/spec3.2024-04-10.opensdks.json` (API version pinned
//! with `Stripe-Version: 2024-04-10`; form-encoded bodies). Prices come only from the tenant's
//! Stripe catalogue: each item the caller names is found with `GET /v1/products/search`
//! (`active:'true' AND name~'…'`), its `default_price` read with `GET /v1/prices/{price}`, and the
//! session references that price id (`line_items[i][price]`) — no amount from the model ever
//! reaches Stripe. `POST /v1/checkout/sessions` carries the ledger key as `Idempotency-Key`, and
//! the caller's number as `client_reference_id`, so `GET /v1/checkout/sessions/{id}` (or the
//! caller's newest session in `GET /v1/checkout/sessions`) answers paid / expired / open, and only
//! to the caller it was made for. Webhook signatures are not verified here (the inbound-webhooks
//! service owns that). This module must not send the link anywhere (messaging does) nor cache
//! prices.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    ConnectorError, Money, PaymentItem, PaymentLink, PaymentLinkStatus, PaymentState, Payments,
    PricedItem,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

pub const CONNECTOR: &str = "stripe";
pub const API_VERSION: &str = "2024-04-10";
/// Products considered per item name.
const SEARCH_LIMIT: &str = "5";
/// Sessions scanned for the caller's newest one.
const LIST_LIMIT: &str = "20";
/// Stripe's zero-decimal currencies: amounts are whole units.
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

pub struct StripeConfig {
    pub base_url: reqwest::Url,
    pub secret_key: SecretString,
    /// Where Stripe sends the payer after paying (the business's page).
    pub success_url: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

pub struct Stripe {
    client: VendorClient,
    success_url: String,
}

#[derive(Deserialize)]
struct ListOf<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct ProductNode {
    name: String,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    default_price: Option<Value>,
}

#[derive(Deserialize)]
struct PriceNode {
    id: String,
    #[serde(default)]
    active: bool,
    currency: String,
    #[serde(default)]
    unit_amount: Option<i64>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct SessionNode {
    id: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    client_reference_id: Option<String>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// The minor-unit amount as a decimal string in `currency` (`1250` USD → `12.50`).
pub fn decimal_amount(minor: i64, currency: &str) -> String {
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) {
        return minor.to_string();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

fn money(minor: i64, currency: &str) -> Money {
    Money {
        amount: decimal_amount(minor, currency),
        currency: currency.to_ascii_uppercase(),
    }
}

/// The session tag naming the caller: digits only, so nothing of the number's spelling matters.
fn caller_tag(caller: &str) -> Result<String, ConnectorError> {
    let digits: String = caller.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return Err(ConnectorError::InvalidInput(
            "the caller's phone number is needed".into(),
        ));
    }
    Ok(format!("callbridge-caller-{digits}"))
}

/// An item name safe inside a Stripe search string literal.
fn search_name(name: &str) -> Result<String, ConnectorError> {
    let clean: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | '&'))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // Stripe's `~` substring match needs three characters at least.
    if clean.chars().count() < 3 {
        return Err(ConnectorError::InvalidInput(format!(
            "the item name {name:?} is too short to look up"
        )));
    }
    Ok(clean)
}

/// A catalogue item with the price Stripe holds for it.
struct CataloguePrice {
    name: String,
    price_id: String,
    currency: String,
    unit_amount: i64,
}

fn state_of(session: &SessionNode) -> PaymentState {
    match (session.payment_status.as_deref(), session.status.as_deref()) {
        (Some("paid"), _) | (Some("no_payment_required"), Some("complete")) => PaymentState::Paid,
        (_, Some("expired")) => PaymentState::Expired,
        _ => PaymentState::Open,
    }
}

fn expiry(session: &SessionNode) -> Option<DateTime<Utc>> {
    session
        .expires_at
        .and_then(|at| Utc.timestamp_opt(at, 0).single())
}

impl Stripe {
    pub fn new(policy: HttpPolicy, config: StripeConfig) -> Result<Self, ConnectorError> {
        super::endpoint(&config.base_url, &["v1"])?;
        let success = super::parse_base_url(&config.success_url)?;
        if success.scheme() != "https" {
            return Err(ConnectorError::Config(
                "success_url must be an https page of the business".into(),
            ));
        }
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.base_url,
                Auth::Bearer(config.secret_key),
            ),
            success_url: config.success_url,
        })
    }

    fn version() -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static("stripe-version"),
            HeaderValue::from_static(API_VERSION),
        )
    }

    /// The catalogue's price for `item`: the one active product whose name matches (exactly,
    /// ignoring case, else the only result), and its active one-time default price.
    async fn price_of(
        &self,
        ctx: &RequestContext,
        item: &PaymentItem,
    ) -> Result<CataloguePrice, ConnectorError> {
        let name = search_name(&item.name)?;
        let (version, value) = Self::version();
        let found: ListOf<ProductNode> = self
            .client
            .get(&["v1", "products", "search"])
            .query("query", &format!("active:'true' AND name~'{name}'"))
            .query("limit", SEARCH_LIMIT)
            .header(version, value)
            .send_json(ctx, "product")
            .await?;
        let active: Vec<ProductNode> = found.data.into_iter().filter(|p| p.active).collect();
        let product = match active
            .iter()
            .position(|p| p.name.trim().eq_ignore_ascii_case(&name))
        {
            Some(exact) => active.into_iter().nth(exact),
            None if active.len() == 1 => active.into_iter().next(),
            None if active.is_empty() => None,
            None => {
                let names: Vec<&str> = active.iter().map(|p| p.name.as_str()).collect();
                return Err(ConnectorError::InvalidInput(format!(
                    "{:?} matches several items ({}); ask which one",
                    item.name,
                    names.join(", ")
                )));
            }
        }
        .ok_or_else(|| {
            ConnectorError::InvalidInput(format!("{:?} is not in the catalogue", item.name))
        })?;
        let price_id = match &product.default_price {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Object(price)) => price
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        if price_id.is_empty() {
            return Err(ConnectorError::InvalidInput(format!(
                "{:?} has no price in the catalogue",
                product.name
            )));
        }
        let (version, value) = Self::version();
        let price: PriceNode = self
            .client
            .get(&["v1", "prices", &price_id])
            .header(version, value)
            .send_json(ctx, "price")
            .await?;
        let unit = price.unit_amount.filter(|_| {
            price.active && price.kind.as_deref().is_none_or(|kind| kind == "one_time")
        });
        let Some(unit) = unit else {
            return Err(ConnectorError::InvalidInput(format!(
                "{:?} has no one-time price in the catalogue",
                product.name
            )));
        };
        Ok(CataloguePrice {
            name: product.name,
            price_id: price.id,
            currency: price.currency,
            unit_amount: unit,
        })
    }

    async fn session(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<SessionNode, ConnectorError> {
        let (version, value) = Self::version();
        self.client
            .get(&["v1", "checkout", "sessions", id])
            .header(version, value)
            .send_json(ctx, "payment link")
            .await
    }
}

#[async_trait::async_trait]
impl Payments for Stripe {
    async fn create_payment_link(
        &self,
        ctx: &RequestContext,
        items: &[PaymentItem],
        caller: &str,
        idempotency_key: &str,
    ) -> Result<PaymentLink, ConnectorError> {
        if items.is_empty() {
            return Err(ConnectorError::InvalidInput("no item to pay for".into()));
        }
        let tag = caller_tag(caller)?;
        let mut form = vec![
            ("mode".to_owned(), "payment".to_owned()),
            ("success_url".to_owned(), self.success_url.clone()),
            ("client_reference_id".to_owned(), tag),
            ("metadata[source]".to_owned(), "callbridge".to_owned()),
        ];
        let mut priced = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let found = self.price_of(ctx, item).await?;
            form.push((format!("line_items[{index}][price]"), found.price_id.clone()));
            form.push((
                format!("line_items[{index}][quantity]"),
                item.quantity.to_string(),
            ));
            priced.push((found, item.quantity));
        }
        let currencies: std::collections::BTreeSet<&str> =
            priced.iter().map(|(p, _)| p.currency.as_str()).collect();
        if currencies.len() > 1 {
            return Err(ConnectorError::InvalidInput(
                "these items are priced in different currencies; send separate links".into(),
            ));
        }
        let (version, value) = Self::version();
        let session: SessionNode = self
            .client
            .post(&["v1", "checkout", "sessions"])
            .form(form)
            .header(version, value)
            .idempotency_key(idempotency_key)
            .send_json(ctx, "payment link")
            .await?;
        let url = session.url.clone().ok_or_else(|| {
            ConnectorError::UnexpectedResponse("checkout session without a url".into())
        })?;
        let items = priced
            .into_iter()
            .map(|(price, quantity)| PricedItem {
                unit_price: money(price.unit_amount, &price.currency),
                name: price.name,
                quantity,
            })
            .collect();
        Ok(PaymentLink {
            total: session
                .amount_total
                .zip(session.currency.as_deref())
                .map(|(total, currency)| money(total, currency)),
            expires_at: expiry(&session),
            id: session.id,
            url,
            items,
        })
    }

    async fn payment_link_status(
        &self,
        ctx: &RequestContext,
        link_id: Option<&str>,
        caller: &str,
    ) -> Result<PaymentLinkStatus, ConnectorError> {
        let tag = caller_tag(caller)?;
        let session = match link_id {
            Some(id) => {
                let id = id.trim();
                if !id.starts_with("cs_")
                    || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(ConnectorError::InvalidInput(
                        "a payment link id looks like cs_…".into(),
                    ));
                }
                self.session(ctx, id).await?
            }
            None => {
                let (version, value) = Self::version();
                let recent: ListOf<SessionNode> = self
                    .client
                    .get(&["v1", "checkout", "sessions"])
                    .query("limit", LIST_LIMIT)
                    .header(version, value)
                    .send_json(ctx, "payment link")
                    .await?;
                // Stripe lists the newest first.
                recent
                    .data
                    .into_iter()
                    .find(|s| s.client_reference_id.as_deref() == Some(tag.as_str()))
                    .ok_or_else(|| ConnectorError::NotFound("payment link".into()))?
            }
        };
        // Another caller's link answers like an unknown one.
        if session.client_reference_id.as_deref() != Some(tag.as_str()) {
            return Err(ConnectorError::NotFound("payment link".into()));
        }
        Ok(PaymentLinkStatus {
            state: state_of(&session),
            expires_at: expiry(&session),
            id: session.id,
        })
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        let (version, value) = Self::version();
        let _: ListOf<Value> = self
            .client
            .get(&["v1", "products"])
            .query("limit", "1")
            .header(version, value)
            .send_json(ctx, "catalogue")
            .await?;
        Ok(())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Stripe",
    spec: "stripe/spec3.2024-04-10.opensdks.json",
    default_base_url: Some("https://api.stripe.com/"),
    capabilities: &[Capability::Payments],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "secret_key",
                aliases: &["api_key"],
                required: true,
                doc: "secret or restricted key (`sk_…`/`rk_…`: Products and Prices read, Checkout Sessions write)",
            },
            SecretField {
                name: "success_url",
                aliases: &[],
                required: true,
                doc: "the https page a payer lands on after paying",
            },
        ],
        note: "",
    },
    oauth: None,
    // Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>` over `<t>.<body>`, keyed by the endpoint's
    // `whsec_…` secret (the whole string), 5 minutes' tolerance; the event object's `id` is stable
    // across retries.
    webhooks: Some(super::kit::WebhookSpec {
        header: "Stripe-Signature",
        scheme: super::kit::WebhookScheme::TimestampedHmacSha256Hex,
        tolerance_secs: 300,
        event_id: &[super::kit::WebhookField::Json("id")],
        event_type: super::kit::WebhookField::Json("type"),
        batched: false,
        setup: "Developers > Webhooks > Add endpoint: this URL; give the endpoint's signing secret \
                (whsec_…) when creating the source",
    }),
    profile,
    build,
};

/// The policy profile: Stripe's `Idempotency-Key` header, so a create may be replayed safely.
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR)
        .with_idempotency_header(HeaderName::from_static("idempotency-key"))
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let base_url = ctx.base_url()?;
    let connector = Stripe::new(
        ctx.policy,
        StripeConfig {
            base_url,
            secret_key: ctx.credentials.secret(&["secret_key", "api_key"])?,
            success_url: ctx.credentials.required_text("success_url")?,
        },
    )
    .map_err(|e| BuildFailure::Config(e.to_string()))?;
    Ok(Built {
        payments: Some(std::sync::Arc::new(connector)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_become_decimal_strings() {
        assert_eq!(decimal_amount(1250, "usd"), "12.50");
        assert_eq!(decimal_amount(5, "eur"), "0.05");
        assert_eq!(decimal_amount(1250, "JPY"), "1250");
        assert_eq!(decimal_amount(-300, "gbp"), "-3.00");
    }

    #[test]
    fn search_names_cannot_break_out_of_the_literal() {
        assert_eq!(
            search_name("pizza' OR active:'false").expect("ok"),
            "pizza OR activefalse"
        );
        assert!(search_name("a'").is_err());
        assert_eq!(
            caller_tag("+1 (415) 555-0100").expect("ok"),
            "callbridge-caller-14155550100"
        );
        assert!(caller_tag("anonymous").is_err());
    }
}

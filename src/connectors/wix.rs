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
//! `POST /stores/v1/products/query`). Wix CRM contacts are not served yet.

use chrono::{DateTime, Duration, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    Commerce, ConnectorError, ContactLookup, Coupon, CouponCaps, CouponDiscount, Coupons, Money,
    OrderStatus, Product, ProductVariant, caller_owns_order, parse_time, rfc3339,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

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
}

impl std::fmt::Debug for WixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WixConfig")
            .field("base_url", &self.base_url.as_str())
            .field("site_id", &self.site_id)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

pub struct Wix {
    client: VendorClient,
    site_id: HeaderValue,
    caps: CouponCaps,
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
        })
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

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Wix",
    spec: "none held: https://dev.wix.com/docs/rest/business-management/marketing/coupons/coupons/create-a-coupon",
    default_base_url: Some("https://www.wixapis.com/"),
    capabilities: &[Capability::Coupons, Capability::Commerce],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "api_key",
                aliases: &[],
                required: true,
                doc: "Wix API key (Manage Coupons; Read Orders and Read Products for the shop tools)",
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
        },
    )
    .map_err(|e| BuildFailure::Config(e.to_string()))?;
    let connector = std::sync::Arc::new(connector);
    Ok(Built {
        coupons: Some(connector.clone()),
        commerce: Some(connector),
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

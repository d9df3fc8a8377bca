//! WooCommerce as a [`Commerce`] connector, over the WooCommerce REST API v3 (`/wp-json/wc/v3/`).
//!
//! No machine-readable spec is published; this follows the WooCommerce REST API documentation,
//! <https://woocommerce.github.io/woocommerce-rest-api-docs/> — "Authentication" (consumer key and
//! secret as HTTP basic auth, over HTTPS only), "Orders › Retrieve an order"
//! (`GET /orders/{id}`), "Products › List all products" (`GET /products` with `search`, `status`,
//! `per_page`) and "Data › Retrieve current currency" (`GET /data/currencies/current`). The
//! request shapes the tests check are written from those sections into
//! `fixtures/vendor-specs/woocommerce/rest-v3-reference.json`.
//!
//! The shop's URL is the tenant's `base_url` (it passes the egress guard on every send). Basic auth
//! puts the key in every request, so a shop URL that is not `https` is refused when the connector
//! is built (a loopback test server excepted: the egress guard refuses loopback outside tests).
//! Only reads are sent. An order is described only when the caller's email or phone matches the
//! order's billing or shipping contact ([`caller_owns_order`]). This module must not cache orders or
//! products (the store currency, which changes with a shop's settings only, is read once per build).

use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    Commerce, ConnectorError, ContactLookup, Money, OrderStatus, Product, ProductVariant,
    caller_owns_order, parse_base_url,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

pub const CONNECTOR: &str = "woocommerce";
/// The REST API root under the shop's URL.
const API: [&str; 3] = ["wp-json", "wc", "v3"];
/// Products returned per search: enough to choose from when read aloud.
const PRODUCT_PAGE: &str = "5";

pub struct WooCommerceConfig {
    /// The shop's site URL (`https://shop.example.com/`), or a test server.
    pub shop_url: Url,
    pub consumer_key: String,
    pub consumer_secret: SecretString,
}

impl std::fmt::Debug for WooCommerceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WooCommerceConfig")
            .field("shop_url", &self.shop_url.as_str())
            .finish_non_exhaustive()
    }
}

pub struct WooCommerce {
    client: VendorClient,
    currency: OnceCell<String>,
}

/// Whether basic-auth credentials may be sent to `url`: `https`, or plain `http` to a loopback
/// address only (a local test server; the egress guard refuses loopback in production).
fn credentials_may_travel_to(url: &Url) -> bool {
    if url.scheme() == "https" {
        return true;
    }
    url.scheme() == "http"
        && url
            .host_str()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback())
}

impl WooCommerce {
    pub fn new(policy: HttpPolicy, config: WooCommerceConfig) -> Result<Self, ConnectorError> {
        if !credentials_may_travel_to(&config.shop_url) {
            return Err(ConnectorError::Config(
                "the WooCommerce shop URL must be https (the keys travel as basic auth)".into(),
            ));
        }
        super::endpoint(&config.shop_url, &API)?;
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.shop_url,
                Auth::Basic {
                    username: config.consumer_key,
                    password: config.consumer_secret,
                },
            ),
            currency: OnceCell::new(),
        })
    }

    fn path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
        API.iter().copied().chain(rest.iter().copied()).collect()
    }

    /// The store's currency code (`USD`), read once.
    async fn currency(&self, ctx: &RequestContext) -> Result<String, ConnectorError> {
        self.currency
            .get_or_try_init(|| async {
                let current: CurrencyNode = self
                    .client
                    .get(&Self::path(&["data", "currencies", "current"]))
                    .send_json(ctx, "currency")
                    .await?;
                Ok(current.code)
            })
            .await
            .cloned()
    }
}

#[derive(Deserialize)]
struct CurrencyNode {
    code: String,
}

#[derive(Deserialize)]
struct OrderNode {
    id: u64,
    #[serde(default)]
    number: Option<String>,
    status: String,
    #[serde(default)]
    date_created_gmt: Option<String>,
    #[serde(default)]
    date_paid_gmt: Option<String>,
    #[serde(default)]
    billing: Option<ContactNode>,
    #[serde(default)]
    shipping: Option<ContactNode>,
}

#[derive(Deserialize)]
struct ContactNode {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Deserialize)]
struct ProductNode {
    id: u64,
    name: String,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    price: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    stock_status: Option<String>,
    #[serde(default)]
    stock_quantity: Option<i64>,
    /// `true`/`false` on products (`"parent"` on variations).
    #[serde(default)]
    manage_stock: Option<serde_json::Value>,
}

/// WooCommerce's GMT timestamps carry no offset (`2017-03-22T16:28:08`).
fn gmt_time(text: Option<&str>) -> Result<Option<DateTime<Utc>>, ConnectorError> {
    text.filter(|text| !text.is_empty())
        .map(|text| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .map(|at| at.and_utc())
                .map_err(|err| {
                    ConnectorError::UnexpectedResponse(format!("bad timestamp {text:?}: {err}"))
                })
        })
        .transpose()
}

/// The order id the caller said (`#1001`, `1001`): digits only.
fn order_id(text: &str) -> Result<String, ConnectorError> {
    let id = text.trim().trim_start_matches('#');
    if id.is_empty() || id.len() > 19 || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ConnectorError::InvalidInput(
            "a WooCommerce order number is digits only".into(),
        ));
    }
    let id = id.trim_start_matches('0');
    if id.is_empty() {
        return Err(ConnectorError::InvalidInput(
            "a WooCommerce order number is not zero".into(),
        ));
    }
    Ok(id.to_owned())
}

/// Search words only: WooCommerce's `search` is a plain text match, kept short.
fn search_term(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | '\''))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The spoken payment word for an order status (WooCommerce has no separate payment status).
fn payment_status(order: &OrderNode) -> &'static str {
    match order.status.as_str() {
        "refunded" => "REFUNDED",
        "failed" => "FAILED",
        _ if order.date_paid_gmt.as_deref().is_some_and(|d| !d.is_empty()) => "PAID",
        _ => "PENDING",
    }
}

#[async_trait::async_trait]
impl Commerce for WooCommerce {
    async fn order_status(
        &self,
        ctx: &RequestContext,
        order_number: &str,
        verify: &ContactLookup,
    ) -> Result<OrderStatus, ConnectorError> {
        let id = order_id(order_number)?;
        let order: OrderNode = self
            .client
            .get(&Self::path(&["orders", &id]))
            .send_json(ctx, "order")
            .await?;
        let number = order.number.clone().unwrap_or_else(|| order.id.to_string());
        let contacts = [order.billing.as_ref(), order.shipping.as_ref()];
        let owned = caller_owns_order(
            verify,
            contacts.iter().map(|c| c.and_then(|c| c.email.as_deref())),
            contacts.iter().map(|c| c.and_then(|c| c.phone.as_deref())),
        );
        // A trashed order, or one the caller cannot prove is theirs, looks like an unknown one.
        if !owned || order.status == "trash" {
            return Err(ConnectorError::NotFound("order".into()));
        }
        Ok(OrderStatus {
            placed_at: gmt_time(order.date_created_gmt.as_deref())?,
            cancelled: order.status == "cancelled",
            payment_status: Some(payment_status(&order).to_owned()),
            fulfillment_status: Some(order.status.to_ascii_uppercase().replace('-', "_")),
            status_page_url: None,
            number: format!("#{number}"),
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
        let currency = self.currency(ctx).await?;
        let products: Vec<ProductNode> = self
            .client
            .get(&Self::path(&["products"]))
            .query("search", &term)
            .query("status", "publish")
            .query("per_page", PRODUCT_PAGE)
            .send_json(ctx, "product")
            .await?;
        Ok(products
            .into_iter()
            .filter(|node| node.status.as_deref().is_none_or(|s| s == "publish"))
            .map(|node| {
                let tracked = node.manage_stock == Some(serde_json::Value::Bool(true));
                let available = matches!(
                    node.stock_status.as_deref(),
                    Some("instock" | "onbackorder")
                );
                let price = node.price.filter(|price| !price.is_empty());
                Product {
                    id: node.id.to_string(),
                    min_price: price.clone().map(|amount| Money {
                        amount,
                        currency: currency.clone(),
                    }),
                    total_inventory: node.stock_quantity.filter(|_| tracked),
                    variants: vec![ProductVariant {
                        title: node.name.clone(),
                        sku: node.sku.filter(|sku| !sku.is_empty()),
                        price,
                        available,
                        inventory: node.stock_quantity.filter(|_| tracked),
                    }],
                    title: node.name,
                }
            })
            .collect())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        let currency: CurrencyNode = self
            .client
            .get(&Self::path(&["data", "currencies", "current"]))
            .send_json(ctx, "currency")
            .await?;
        if currency.code.is_empty() {
            return Err(ConnectorError::UnexpectedResponse(
                "the shop named no currency".into(),
            ));
        }
        Ok(())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "WooCommerce",
    spec: "none held: https://woocommerce.github.io/woocommerce-rest-api-docs/",
    default_base_url: None,
    capabilities: &[Capability::Commerce],
    secret: SecretShape {
        bare_token: false,
        fields: &[
            SecretField {
                name: "consumer_key",
                aliases: &["key"],
                required: true,
                doc: "REST API consumer key (`ck_…`, Read permission); `base_url` = the shop's https URL",
            },
            SecretField {
                name: "consumer_secret",
                aliases: &["secret"],
                required: true,
                doc: "REST API consumer secret (`cs_…`)",
            },
        ],
        note: "",
    },
    oauth: None,
    webhooks: None,
    profile,
    build,
};

/// The policy profile: the defaults (only reads are sent).
pub fn profile() -> ConnectorProfile {
    Vendor::plain_profile(CONNECTOR)
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let Some(shop) = ctx.base_url else {
        return Err(BuildFailure::Config(
            "set base_url to the shop's URL (https://shop.example.com/)".into(),
        ));
    };
    let shop_url = parse_base_url(shop).map_err(|e| BuildFailure::Config(e.to_string()))?;
    let consumer_key = ctx
        .credentials
        .text("consumer_key")
        .or_else(|| ctx.credentials.text("key"))
        .map(str::to_owned)
        .ok_or_else(|| BuildFailure::Missing("consumer_key".into()))?;
    let connector = WooCommerce::new(
        ctx.policy,
        WooCommerceConfig {
            shop_url,
            consumer_key,
            consumer_secret: ctx.credentials.secret(&["consumer_secret", "secret"])?,
        },
    )
    .map_err(|e| BuildFailure::Config(e.to_string()))?;
    Ok(Built {
        commerce: Some(std::sync::Arc::new(connector)),
        ..Built::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_over_https_or_to_loopback_only() {
        let url = |text: &str| Url::parse(text).expect("url");
        assert!(credentials_may_travel_to(&url("https://shop.example.com/")));
        assert!(credentials_may_travel_to(&url("http://127.0.0.1:8080/")));
        assert!(credentials_may_travel_to(&url("http://[::1]:8080/")));
        assert!(!credentials_may_travel_to(&url("http://shop.example.com/")));
        assert!(!credentials_may_travel_to(&url("http://10.0.0.5/")));
        assert!(!credentials_may_travel_to(&url("ftp://127.0.0.1/")));
    }

    #[test]
    fn order_numbers_are_digits() {
        assert_eq!(order_id("#1001").expect("ok"), "1001");
        assert_eq!(order_id(" 0042 ").expect("ok"), "42");
        for bad in ["", "#", "000", "10a1", "1001/../../users", "99999999999999999999"] {
            assert!(order_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gmt_timestamps_have_no_offset() {
        assert_eq!(
            gmt_time(Some("2017-03-22T16:28:08"))
                .expect("parses")
                .map(|at| at.to_rfc3339()),
            Some("2017-03-22T16:28:08+00:00".into())
        );
        assert_eq!(gmt_time(None).expect("none"), None);
        assert!(gmt_time(Some("yesterday")).is_err());
    }
}

//! Magento Open Source / Adobe Commerce as a [`Commerce`] connector, over the REST API per the held
//! spec `vendor-specs/magento/admin-schema-2.4.9.yaml` (Swagger 2, base path `/rest/default`).
//!
//! Endpoints: `GET /rest/{store}/V1/orders` and `/V1/shipments` and `/V1/products` with
//! `searchCriteria[…]` query parameters (one filter group, one filter: all the spec declares), and
//! `GET /V1/store/storeConfigs` (the store currency, and the health check). Credentials: an
//! integration access token as `Authorization: Bearer`. The store's URL is the tenant's
//! `base_url` and passes the egress guard on every send. Only reads are sent. An order is described
//! only when the caller's email or phone matches the order's own (customer email, billing and
//! shipping addresses; [`caller_owns_order`]). This module must not cache orders or products.

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    Commerce, ConnectorError, ContactLookup, Money, OrderStatus, Product, ProductVariant,
    Shipment, caller_owns_order, parse_base_url,
};
use crate::connectors::http::{ConnectorProfile, HttpPolicy, RequestContext};

pub const CONNECTOR: &str = "magento";
/// Products asked for per search (disabled or invisible ones are dropped after).
const PRODUCT_PAGE: &str = "10";
/// Products returned per search.
const PRODUCTS_SPOKEN: usize = 5;
/// Magento's default order numbers: nine digits, zero-padded (`000000123`).
const INCREMENT_ID_WIDTH: usize = 9;

pub struct MagentoConfig {
    /// The store's URL (`https://shop.example.com/`), or a test server.
    pub store_url: Url,
    /// The store view code in `/rest/{code}/V1/…` (`default`).
    pub store_code: String,
    pub access_token: SecretString,
}

impl std::fmt::Debug for MagentoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MagentoConfig")
            .field("store_url", &self.store_url.as_str())
            .field("store_code", &self.store_code)
            .finish_non_exhaustive()
    }
}

pub struct Magento {
    client: VendorClient,
    store_code: String,
    currency: OnceCell<String>,
}

/// One `searchCriteria` filter (the spec declares filter group 0, filter 0).
struct Criteria<'a> {
    field: &'a str,
    value: &'a str,
    condition: &'a str,
    page_size: &'a str,
}

impl Magento {
    pub fn new(policy: HttpPolicy, config: MagentoConfig) -> Result<Self, ConnectorError> {
        let code_ok = !config.store_code.is_empty()
            && config
                .store_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !code_ok {
            return Err(ConnectorError::Config(
                "store_code is letters, digits and underscores (`default`)".into(),
            ));
        }
        super::endpoint(&config.store_url, &["rest", &config.store_code, "V1"])?;
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.store_url,
                Auth::Bearer(config.access_token),
            ),
            store_code: config.store_code,
            currency: OnceCell::new(),
        })
    }

    async fn search<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        resource: &str,
        criteria: Criteria<'_>,
        what: &str,
    ) -> Result<SearchResult<T>, ConnectorError> {
        const FILTER: &str = "searchCriteria[filterGroups][0][filters][0]";
        self.client
            .get(&["rest", &self.store_code, "V1", resource])
            .query(&format!("{FILTER}[field]"), criteria.field)
            .query(&format!("{FILTER}[value]"), criteria.value)
            .query(&format!("{FILTER}[conditionType]"), criteria.condition)
            .query("searchCriteria[pageSize]", criteria.page_size)
            .send_json(ctx, what)
            .await
    }

    async fn store_configs(&self, ctx: &RequestContext) -> Result<Vec<StoreConfig>, ConnectorError> {
        self.client
            .get(&["rest", &self.store_code, "V1", "store", "storeConfigs"])
            .send_json(ctx, "store configuration")
            .await
    }

    /// The store's base currency (`USD`), read once.
    async fn currency(&self, ctx: &RequestContext) -> Result<String, ConnectorError> {
        self.currency
            .get_or_try_init(|| async {
                let configs = self.store_configs(ctx).await?;
                configs
                    .iter()
                    .find(|config| config.code.as_deref() == Some(self.store_code.as_str()))
                    .or(configs.first())
                    .and_then(|config| config.base_currency_code.clone())
                    .ok_or_else(|| {
                        ConnectorError::UnexpectedResponse("the store named no currency".into())
                    })
            })
            .await
            .cloned()
    }
}

#[derive(Deserialize)]
struct SearchResult<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct StoreConfig {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    base_currency_code: Option<String>,
}

#[derive(Deserialize)]
struct OrderNode {
    entity_id: Option<u64>,
    increment_id: Option<String>,
    #[serde(default)]
    customer_email: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    grand_total: Option<f64>,
    #[serde(default)]
    total_paid: Option<f64>,
    #[serde(default)]
    total_refunded: Option<f64>,
    #[serde(default)]
    billing_address: Option<AddressNode>,
    #[serde(default)]
    extension_attributes: Option<OrderExtension>,
}

#[derive(Deserialize)]
struct AddressNode {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    telephone: Option<String>,
}

#[derive(Deserialize)]
struct OrderExtension {
    #[serde(default)]
    shipping_assignments: Vec<ShippingAssignment>,
}

#[derive(Deserialize)]
struct ShippingAssignment {
    #[serde(default)]
    shipping: Option<ShippingNode>,
}

#[derive(Deserialize)]
struct ShippingNode {
    #[serde(default)]
    address: Option<AddressNode>,
}

#[derive(Deserialize)]
struct ShipmentNode {
    #[serde(default)]
    tracks: Vec<TrackNode>,
}

#[derive(Deserialize)]
struct TrackNode {
    #[serde(default)]
    track_number: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    carrier_code: Option<String>,
}

#[derive(Deserialize)]
struct ProductNode {
    id: Option<u64>,
    sku: Option<String>,
    name: Option<String>,
    #[serde(default)]
    price: Option<f64>,
    /// 1 enabled, 2 disabled.
    #[serde(default)]
    status: Option<u8>,
    /// 1 "not visible individually" (a configurable's child).
    #[serde(default)]
    visibility: Option<u8>,
    #[serde(default)]
    extension_attributes: Option<ProductExtension>,
}

#[derive(Deserialize)]
struct ProductExtension {
    #[serde(default)]
    stock_item: Option<StockItem>,
}

#[derive(Deserialize)]
struct StockItem {
    #[serde(default)]
    qty: Option<f64>,
    #[serde(default)]
    is_in_stock: Option<bool>,
    #[serde(default)]
    manage_stock: Option<bool>,
}

/// The order number the caller said: letters and digits (a store may prefix them).
fn increment_ids(text: &str) -> Result<Vec<String>, ConnectorError> {
    let id = text.trim().trim_start_matches('#');
    if id.is_empty()
        || id.len() > 32
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ConnectorError::InvalidInput(
            "an order number is letters and digits".into(),
        ));
    }
    let mut ids = vec![id.to_owned()];
    // A caller often drops the leading zeros of `000000123`.
    if id.len() < INCREMENT_ID_WIDTH && id.chars().all(|c| c.is_ascii_digit()) {
        ids.push(format!("{id:0>INCREMENT_ID_WIDTH$}"));
    }
    Ok(ids)
}

/// Search words only: they go inside a `like` pattern, so `%` and `_` never pass.
fn search_term(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '.' | '\''))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Magento's timestamps: UTC, `2024-05-01 10:00:00`.
fn magento_time(text: Option<&str>) -> Result<Option<DateTime<Utc>>, ConnectorError> {
    text.filter(|text| !text.is_empty())
        .map(|text| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .map(|at| at.and_utc())
                .map_err(|err| {
                    ConnectorError::UnexpectedResponse(format!("bad timestamp {text:?}: {err}"))
                })
        })
        .transpose()
}

/// Prices are JSON numbers: printed with two decimals, as a shop shows them.
fn price_text(price: f64) -> String {
    format!("{price:.2}")
}

fn verified(order: &OrderNode, verify: &ContactLookup) -> bool {
    let shipping: Vec<&AddressNode> = order
        .extension_attributes
        .iter()
        .flat_map(|ext| &ext.shipping_assignments)
        .filter_map(|assignment| assignment.shipping.as_ref()?.address.as_ref())
        .collect();
    let addresses: Vec<&AddressNode> = order.billing_address.iter().chain(shipping).collect();
    caller_owns_order(
        verify,
        std::iter::once(order.customer_email.as_deref())
            .chain(addresses.iter().map(|a| a.email.as_deref())),
        addresses.iter().map(|a| a.telephone.as_deref()),
    )
}

fn payment_status(order: &OrderNode) -> &'static str {
    let paid = order.total_paid.unwrap_or(0.0);
    let total = order.grand_total.unwrap_or(0.0);
    if order.total_refunded.unwrap_or(0.0) > 0.0 {
        "REFUNDED"
    } else if total > 0.0 && paid + 0.005 >= total {
        "PAID"
    } else if paid > 0.0 {
        "PARTIALLY_PAID"
    } else {
        "PENDING"
    }
}

#[async_trait::async_trait]
impl Commerce for Magento {
    async fn order_status(
        &self,
        ctx: &RequestContext,
        order_number: &str,
        verify: &ContactLookup,
    ) -> Result<OrderStatus, ConnectorError> {
        let ids = increment_ids(order_number)?;
        let wanted = ids.join(",");
        let found: SearchResult<OrderNode> = self
            .search(
                ctx,
                "orders",
                Criteria {
                    field: "increment_id",
                    value: &wanted,
                    condition: "in",
                    page_size: "2",
                },
                "order",
            )
            .await?;
        let order = found
            .items
            .into_iter()
            .find(|order| {
                order
                    .increment_id
                    .as_deref()
                    .is_some_and(|id| ids.iter().any(|want| want.eq_ignore_ascii_case(id)))
            })
            .filter(|order| verified(order, verify))
            .ok_or_else(|| ConnectorError::NotFound("order".into()))?;
        let mut shipments = Vec::new();
        if let Some(entity_id) = order.entity_id {
            let entity = entity_id.to_string();
            let found: SearchResult<ShipmentNode> = self
                .search(
                    ctx,
                    "shipments",
                    Criteria {
                        field: "order_id",
                        value: &entity,
                        condition: "eq",
                        page_size: "5",
                    },
                    "shipment",
                )
                .await?;
            for shipment in found.items {
                let track = shipment.tracks.into_iter().next();
                shipments.push(Shipment {
                    status: Some("SHIPPED".into()),
                    carrier: track
                        .as_ref()
                        .and_then(|t| t.title.clone().or_else(|| t.carrier_code.clone())),
                    tracking_number: track.and_then(|t| t.track_number),
                    tracking_url: None,
                    estimated_delivery: None,
                });
            }
        }
        Ok(OrderStatus {
            placed_at: magento_time(order.created_at.as_deref())?,
            cancelled: order.state.as_deref() == Some("canceled"),
            payment_status: Some(payment_status(&order).to_owned()),
            fulfillment_status: order.status.as_deref().map(str::to_ascii_uppercase),
            status_page_url: None,
            number: format!("#{}", order.increment_id.unwrap_or_default()),
            shipments,
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
        let pattern = format!("%{term}%");
        let found: SearchResult<ProductNode> = self
            .search(
                ctx,
                "products",
                Criteria {
                    field: "name",
                    value: &pattern,
                    condition: "like",
                    page_size: PRODUCT_PAGE,
                },
                "product",
            )
            .await?;
        Ok(found
            .items
            .into_iter()
            .filter(|node| node.status == Some(1) && node.visibility != Some(1))
            .take(PRODUCTS_SPOKEN)
            .map(|node| {
                let stock = node.extension_attributes.and_then(|ext| ext.stock_item);
                let tracked = stock.as_ref().is_none_or(|s| s.manage_stock != Some(false));
                let units = stock
                    .as_ref()
                    .and_then(|s| s.qty)
                    .filter(|_| tracked)
                    .map(|qty| qty.max(0.0).floor() as i64);
                let available = stock.as_ref().and_then(|s| s.is_in_stock).unwrap_or(false);
                let price = node.price.map(price_text);
                let title = node.name.unwrap_or_default();
                Product {
                    id: node
                        .id
                        .map(|id| id.to_string())
                        .or_else(|| node.sku.clone())
                        .unwrap_or_default(),
                    min_price: price.clone().map(|amount| Money {
                        amount,
                        currency: currency.clone(),
                    }),
                    total_inventory: units,
                    variants: vec![ProductVariant {
                        title: title.clone(),
                        sku: node.sku.filter(|sku| !sku.is_empty()),
                        price,
                        available,
                        inventory: units,
                    }],
                    title,
                }
            })
            .collect())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        if self.store_configs(ctx).await?.is_empty() {
            return Err(ConnectorError::UnexpectedResponse(
                "no store configuration".into(),
            ));
        }
        Ok(())
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Magento / Adobe Commerce",
    spec: "magento/admin-schema-2.4.9.yaml",
    default_base_url: None,
    capabilities: &[Capability::Commerce],
    secret: SecretShape {
        bare_token: true,
        fields: &[
            SecretField {
                name: "access_token",
                aliases: &["token"],
                required: true,
                doc: "integration access token (Bearer); `base_url` = the store's URL",
            },
            SecretField {
                name: "store_code",
                aliases: &[],
                required: false,
                doc: "store view code in /rest/{code}/V1 (default `default`)",
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
    let Some(store) = ctx.base_url else {
        return Err(BuildFailure::Config(
            "set base_url to the store's URL (https://shop.example.com/)".into(),
        ));
    };
    let store_url = parse_base_url(store).map_err(|e| BuildFailure::Config(e.to_string()))?;
    let store_code = ctx
        .credentials
        .text("store_code")
        .unwrap_or("default")
        .to_owned();
    let connector = Magento::new(
        ctx.policy,
        MagentoConfig {
            store_url,
            store_code,
            access_token: ctx.credentials.secret(&["access_token", "token"])?,
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
    fn order_numbers_also_try_the_zero_padded_form() {
        assert_eq!(
            increment_ids("#123").expect("ok"),
            ["123", "000000123"].map(String::from)
        );
        assert_eq!(
            increment_ids("000000123").expect("ok"),
            ["000000123"].map(String::from)
        );
        assert_eq!(
            increment_ids("EU-1001").expect("ok"),
            ["EU-1001"].map(String::from)
        );
        for bad in ["", "#", "12,13", "1%", "a b"] {
            assert!(increment_ids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn like_patterns_cannot_take_wildcards_from_the_caller() {
        assert_eq!(search_term("50% off_mug  "), "50 offmug");
    }

    #[test]
    fn payment_follows_the_totals() {
        let order = |paid: f64, refunded: f64| OrderNode {
            entity_id: None,
            increment_id: None,
            customer_email: None,
            created_at: None,
            status: None,
            state: None,
            grand_total: Some(20.0),
            total_paid: Some(paid),
            total_refunded: Some(refunded),
            billing_address: None,
            extension_attributes: None,
        };
        assert_eq!(payment_status(&order(20.0, 0.0)), "PAID");
        assert_eq!(payment_status(&order(5.0, 0.0)), "PARTIALLY_PAID");
        assert_eq!(payment_status(&order(0.0, 0.0)), "PENDING");
        assert_eq!(payment_status(&order(20.0, 20.0)), "REFUNDED");
        assert!(magento_time(Some("2024-05-01 10:00:00")).expect("ok").is_some());
    }
}

//! Shopify as a [`Commerce`] connector, over the GraphQL Admin API (REST Admin is legacy).
//!
//! Every query sent is a constant in this file and is validated against Shopify's introspection
//! schema `vendor-specs/shopify/admin_schema_2025-01.json.gz` by `tests/connectors/shopify.rs`.
//! Endpoint: `POST {shop}/admin/api/2025-01/graphql.json` with `X-Shopify-Access-Token`.
//! Shopify reports rate limiting as HTTP 200 with a `THROTTLED` error, so this connector brings
//! its own retry classifier. Only reads are sent, so every request may be replayed.
//! This module must not cache orders or products.

use std::sync::Arc;

use reqwest::Url;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{Auth, VendorClient};
use super::kit::{BuildContext, BuildFailure, Built, Capability, SecretField, SecretShape, Vendor};
use super::{
    Commerce, ConnectorError, ContactLookup, Money, caller_owns_order, OrderStatus, Product, ProductVariant, Shipment,
    parse_base_url, parse_time,
};
use crate::connectors::http::{
    AttemptOutcome, ConnectorProfile, HttpPolicy, Replay, RequestContext, RetryAction,
    RetryClassifier, default_classification,
};

pub const CONNECTOR: &str = "shopify";
pub const API_VERSION: &str = "2025-01";
/// The Admin GraphQL endpoint under the shop's URL.
const GRAPHQL_PATH: &[&str] = &["admin", "api", API_VERSION, "graphql.json"];
/// Products returned per search: enough to choose from when read aloud.
const PRODUCT_PAGE: i64 = 5;

/// operationId (GraphQL): QueryRoot.orders — one order by its name, with what a caller asks.
pub const ORDER_BY_NAME_QUERY: &str = r#"query OrderByName($query: String!) {
  orders(first: 1, query: $query) {
    nodes {
      name
      email
      phone
      processedAt
      cancelledAt
      displayFinancialStatus
      displayFulfillmentStatus
      statusPageUrl
      customer { email phone }
      fulfillments(first: 5) {
        displayStatus
        estimatedDeliveryAt
        trackingInfo(first: 1) { company number url }
      }
    }
  }
}"#;

/// operationId (GraphQL): QueryRoot.products — search with price and stock.
pub const PRODUCT_SEARCH_QUERY: &str = r#"query SearchProducts($query: String!, $first: Int!) {
  products(first: $first, query: $query) {
    nodes {
      id
      title
      totalInventory
      tracksInventory
      priceRangeV2 { minVariantPrice { amount currencyCode } }
      variants(first: 10) {
        nodes { title sku price availableForSale inventoryQuantity }
      }
    }
  }
}"#;

/// operationId (GraphQL): QueryRoot.shop — the health check.
pub const SHOP_QUERY: &str = "query Shop { shop { name } }";

/// Every query this connector sends, for schema validation.
pub const ALL_QUERIES: [&str; 3] = [ORDER_BY_NAME_QUERY, PRODUCT_SEARCH_QUERY, SHOP_QUERY];

pub struct ShopifyConfig {
    /// `https://{shop}.myshopify.com/` (or a test server).
    pub shop_url: Url,
    pub access_token: SecretString,
}

impl std::fmt::Debug for ShopifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyConfig")
            .field("shop_url", &self.shop_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Retries GraphQL `THROTTLED` answers (HTTP 200) as well as the default cases.
#[derive(Debug, Default)]
pub struct ShopifyClassifier;

impl RetryClassifier for ShopifyClassifier {
    fn classify(&self, outcome: &AttemptOutcome<'_>) -> RetryAction {
        if let AttemptOutcome::Response { status, body, .. } = outcome
            && status.is_success()
            && is_throttled(body)
        {
            return RetryAction::Retry("GraphQL THROTTLED".into());
        }
        default_classification(outcome)
    }
}

fn is_throttled(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<GraphqlError>,
    }
    serde_json::from_slice::<Errors>(body).is_ok_and(|parsed| {
        parsed.errors.iter().any(|error| {
            error
                .extensions
                .as_ref()
                .and_then(|ext| ext.code.as_deref())
                == Some("THROTTLED")
        })
    })
}

#[derive(Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<ErrorExtensions>,
}

#[derive(Deserialize)]
struct ErrorExtensions {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
struct GraphqlResponse<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

pub struct Shopify {
    client: VendorClient,
}

impl Shopify {
    pub fn new(policy: HttpPolicy, config: ShopifyConfig) -> Result<Self, ConnectorError> {
        // Checked once here, so a bad URL is a configuration error when the connector is built.
        super::endpoint(&config.shop_url, GRAPHQL_PATH)?;
        Ok(Self {
            client: VendorClient::new(
                policy,
                profile(),
                config.shop_url,
                Auth::Header {
                    name: HeaderName::from_static("x-shopify-access-token"),
                    value: config.access_token,
                },
            ),
        })
    }

    async fn query<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        query: &str,
        variables: Value,
        what: &str,
    ) -> Result<T, ConnectorError> {
        // Queries only read: replaying one is harmless.
        let parsed: GraphqlResponse<T> = self
            .client
            .post(GRAPHQL_PATH)
            .json(json!({ "query": query, "variables": variables }))
            .replay(Replay::Idempotent)
            .send_json(ctx, what)
            .await?;
        if let Some(error) = parsed.errors.first() {
            let code = error
                .extensions
                .as_ref()
                .and_then(|ext| ext.code.as_deref())
                .unwrap_or("");
            return Err(match code {
                "ACCESS_DENIED" => ConnectorError::Auth(format!("{what}: access denied")),
                _ => ConnectorError::Rejected(format!(
                    "{what}: {}",
                    crate::connectors::http::redact::snippet(&error.message, 200)
                )),
            });
        }
        parsed
            .data
            .ok_or_else(|| ConnectorError::UnexpectedResponse("GraphQL answer without data".into()))
    }
}

#[derive(Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

#[derive(Deserialize)]
struct OrdersData {
    orders: Nodes<OrderNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderNode {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    processed_at: Option<String>,
    cancelled_at: Option<String>,
    display_financial_status: Option<String>,
    display_fulfillment_status: Option<String>,
    status_page_url: Option<String>,
    customer: Option<CustomerNode>,
    #[serde(default)]
    fulfillments: Vec<FulfillmentNode>,
}

#[derive(Deserialize)]
struct CustomerNode {
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FulfillmentNode {
    display_status: Option<String>,
    estimated_delivery_at: Option<String>,
    #[serde(default)]
    tracking_info: Vec<TrackingNode>,
}

#[derive(Deserialize)]
struct TrackingNode {
    company: Option<String>,
    number: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct ProductsData {
    products: Nodes<ProductNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductNode {
    id: String,
    title: String,
    total_inventory: Option<i64>,
    #[serde(default)]
    tracks_inventory: bool,
    price_range_v2: Option<PriceRange>,
    variants: Nodes<VariantNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceRange {
    min_variant_price: MoneyNode,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoneyNode {
    amount: String,
    currency_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantNode {
    title: String,
    sku: Option<String>,
    price: Option<String>,
    available_for_sale: bool,
    inventory_quantity: Option<i64>,
}

#[derive(Deserialize)]
struct ShopData {
    shop: Value,
}

/// Keep only characters that cannot change the meaning of a Shopify search query.
fn search_term(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '#' | '.' | '\''))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn verified(order: &OrderNode, verify: &ContactLookup) -> bool {
    let customer = order.customer.as_ref();
    caller_owns_order(
        verify,
        [
            order.email.as_deref(),
            customer.and_then(|c| c.email.as_deref()),
        ],
        [
            order.phone.as_deref(),
            customer.and_then(|c| c.phone.as_deref()),
        ],
    )
}

fn optional_time(
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ConnectorError> {
    text.map(parse_time).transpose()
}

#[async_trait::async_trait]
impl Commerce for Shopify {
    async fn order_status(
        &self,
        ctx: &RequestContext,
        order_number: &str,
        verify: &ContactLookup,
    ) -> Result<OrderStatus, ConnectorError> {
        let number = search_term(order_number).replace([' ', '\''], "");
        // Order names are a number with an optional prefix or suffix (`#1001`, `#EU1001`).
        if !number.chars().any(|c| c.is_ascii_digit()) {
            return Err(ConnectorError::InvalidInput(
                "an order number is needed".into(),
            ));
        }
        let name = if number.starts_with('#') {
            number
        } else {
            format!("#{number}")
        };
        let data: OrdersData = self
            .query(
                ctx,
                ORDER_BY_NAME_QUERY,
                json!({ "query": format!("name:{name}") }),
                "order",
            )
            .await?;
        let order = data
            .orders
            .nodes
            .into_iter()
            .find(|order| order.name.eq_ignore_ascii_case(&name))
            .filter(|order| verified(order, verify))
            .ok_or_else(|| ConnectorError::NotFound("order".into()))?;
        let shipments = order
            .fulfillments
            .iter()
            .map(|fulfillment| {
                let tracking = fulfillment.tracking_info.first();
                Ok(Shipment {
                    status: fulfillment.display_status.clone(),
                    carrier: tracking.and_then(|t| t.company.clone()),
                    tracking_number: tracking.and_then(|t| t.number.clone()),
                    tracking_url: tracking.and_then(|t| t.url.clone()),
                    estimated_delivery: optional_time(
                        fulfillment.estimated_delivery_at.as_deref(),
                    )?,
                })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        Ok(OrderStatus {
            placed_at: optional_time(order.processed_at.as_deref())?,
            cancelled: order.cancelled_at.is_some(),
            payment_status: order.display_financial_status,
            fulfillment_status: order.display_fulfillment_status,
            status_page_url: order.status_page_url,
            number: order.name,
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
        let data: ProductsData = self
            .query(
                ctx,
                PRODUCT_SEARCH_QUERY,
                json!({ "query": format!("{term} status:active"), "first": PRODUCT_PAGE }),
                "product",
            )
            .await?;
        Ok(data
            .products
            .nodes
            .into_iter()
            .map(|node| Product {
                id: node.id,
                title: node.title,
                min_price: node.price_range_v2.map(|range| Money {
                    amount: range.min_variant_price.amount,
                    currency: range.min_variant_price.currency_code,
                }),
                total_inventory: node.total_inventory.filter(|_| node.tracks_inventory),
                variants: node
                    .variants
                    .nodes
                    .into_iter()
                    .map(|variant| ProductVariant {
                        title: variant.title,
                        sku: variant.sku.filter(|sku| !sku.is_empty()),
                        price: variant.price,
                        available: variant.available_for_sale,
                        inventory: variant.inventory_quantity.filter(|_| node.tracks_inventory),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn health_check(&self, ctx: &RequestContext) -> Result<(), ConnectorError> {
        let data: ShopData = self.query(ctx, SHOP_QUERY, json!({}), "shop").await?;
        if data.shop.is_object() {
            Ok(())
        } else {
            Err(ConnectorError::UnexpectedResponse("shop missing".into()))
        }
    }
}

/// The vendor descriptor, registered in [`super::registry`].
pub static VENDOR: Vendor = Vendor {
    id: CONNECTOR,
    name: "Shopify",
    spec: "shopify/",
    default_base_url: None,
    capabilities: &[Capability::Commerce],
    secret: SecretShape {
        bare_token: true,
        fields: &[SecretField {
            name: "access_token",
            aliases: &["token"],
            required: true,
            doc: "Admin API access token (or the bare token as the secret); `base_url` = the shop's URL",
        }],
        note: "",
    },
    oauth: None,
    // X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the body, keyed by the app's client secret;
    // X-Shopify-Event-Id is the same on every retry of one event.
    webhooks: Some(super::kit::WebhookSpec {
        header: "X-Shopify-Hmac-Sha256",
        scheme: super::kit::WebhookScheme::HmacSha256Base64,
        tolerance_secs: 0,
        event_id: &[super::kit::WebhookField::Header("X-Shopify-Event-Id")],
        event_type: super::kit::WebhookField::Header("X-Shopify-Topic"),
        batched: false,
        setup: "subscribe the topic with this URL; the secret is the app's client secret \
                (give it when creating the source)",
    }),
    profile,
    build,
};

/// The policy profile: Shopify's throttling answers are classified by [`ShopifyClassifier`].
pub fn profile() -> ConnectorProfile {
    ConnectorProfile::new(CONNECTOR).with_classifier(Arc::new(ShopifyClassifier))
}

fn build(ctx: BuildContext<'_>) -> Result<Built, BuildFailure> {
    let Some(shop) = ctx.base_url else {
        return Err(BuildFailure::Config(
            "set base_url to the shop's URL (https://{shop}.myshopify.com/)".into(),
        ));
    };
    let shop_url = parse_base_url(shop).map_err(|e| BuildFailure::Config(e.to_string()))?;
    let connector = Shopify::new(
        ctx.policy,
        ShopifyConfig {
            shop_url,
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
    fn search_terms_cannot_inject_search_syntax() {
        assert_eq!(
            search_term("blue  mug\" OR status:draft"),
            "blue mug OR statusdraft"
        );
        assert_eq!(search_term("#1001"), "#1001");
    }

    #[test]
    fn throttled_bodies_are_recognised() {
        assert!(is_throttled(
            br#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}"#
        ));
        assert!(!is_throttled(br#"{"data":{"shop":{"name":"x"}}}"#));
        assert!(!is_throttled(b"not json"));
    }
}

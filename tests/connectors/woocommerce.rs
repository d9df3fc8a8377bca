//! WooCommerce REST v3 connector against a local mock: basic auth with the consumer key and
//! secret, the documented paths and query parameters (checked against the reference-derived spec
//! in `fixtures/vendor-specs/woocommerce/`), the caller-verification rule, and error mapping.

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::woocommerce::{WooCommerce, WooCommerceConfig};
use callbridge::connectors::{Commerce, ConnectorError, ContactLookup};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ORDER: &str = include_str!("../../fixtures/vendors/woocommerce/order.json");
const ORDER_NOT_FOUND: &str =
    include_str!("../../fixtures/vendors/woocommerce/order_not_found.json");
const PRODUCTS: &str = include_str!("../../fixtures/vendors/woocommerce/products.json");
const CURRENCY: &str = include_str!("../../fixtures/vendors/woocommerce/currency.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/woocommerce/unauthorized.json");
/// `base64("ck_test:cs_test")`.
const BASIC: &str = "Basic Y2tfdGVzdDpjc190ZXN0";

fn contract() -> Contract {
    Contract::load("woocommerce", &["rest-v3-reference.json"])
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds")
}

fn config(url: &str) -> WooCommerceConfig {
    WooCommerceConfig {
        shop_url: url.parse().expect("url"),
        consumer_key: "ck_test".into(),
        consumer_secret: SecretString::from("cs_test"),
    }
}

fn connector(server: &MockServer) -> WooCommerce {
    WooCommerce::new(policy(), config(&server.uri())).expect("connector builds")
}

async fn mount_order(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/727"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ORDER)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn an_order_is_told_only_to_its_billing_email_or_phone() {
    let server = MockServer::start().await;
    mount_order(&server).await;
    let shop = connector(&server);
    let order = shop
        .order_status(
            &context(),
            "#727",
            &ContactLookup::Email("John.Doe@example.com".into()),
        )
        .await
        .expect("verified by email");
    assert_eq!(order.number, "#727");
    assert_eq!(order.payment_status.as_deref(), Some("PAID"));
    assert_eq!(order.fulfillment_status.as_deref(), Some("PROCESSING"));
    assert!(!order.cancelled);
    assert_eq!(
        order.placed_at.map(|at| at.to_rfc3339()),
        Some("2025-02-27T15:04:00+00:00".into())
    );
    shop.order_status(
        &context(),
        "727",
        &ContactLookup::Phone("+1 555 555 5555".into()),
    )
    .await
    .expect("verified by the billing phone");

    // A wrong phone (or email) gets nothing about the order: it looks like an unknown one.
    for wrong in [
        ContactLookup::Phone("+15555550000".into()),
        ContactLookup::Email("someone@example.com".into()),
    ] {
        let err = shop
            .order_status(&context(), "727", &wrong)
            .await
            .expect_err("not the caller's order");
        assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn unknown_orders_and_junk_numbers_are_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/999"))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture(ORDER_NOT_FOUND)))
        .mount(&server)
        .await;
    let shop = connector(&server);
    let email = ContactLookup::Email("john.doe@example.com".into());
    let err = shop
        .order_status(&context(), "999", &email)
        .await
        .expect_err("none");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    for junk in ["../customers", "7 OR 1=1", "0"] {
        let err = shop
            .order_status(&context(), junk, &email)
            .await
            .expect_err("junk");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{junk}: {err:?}"
        );
    }
    // Only the one valid lookup reached the shop.
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn product_search_reads_price_stock_and_the_store_currency() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/data/currencies/current"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CURRENCY)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/products"))
        .and(query_param("search", "quality mug"))
        .and(query_param("status", "publish"))
        .and(query_param("per_page", "5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PRODUCTS)))
        .mount(&server)
        .await;
    let shop = connector(&server);
    for _ in 0..2 {
        let products = shop
            .search_products(&context(), "quality  mug%")
            .await
            .expect("found");
        assert_eq!(products.len(), 2);
        let mug = &products[0];
        assert_eq!(mug.title, "Premium Quality Mug");
        assert_eq!(
            mug.min_price
                .as_ref()
                .map(|m| (m.amount.as_str(), m.currency.as_str())),
            Some(("21.99", "USD"))
        );
        assert_eq!(mug.total_inventory, Some(7));
        assert!(mug.variants[0].available);
        // Stock not managed: no unit count, availability from the stock status.
        assert_eq!(products[1].total_inventory, None);
        assert!(!products[1].variants[0].available);
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn refused_keys_are_an_auth_error_and_plain_http_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/data/currencies/current"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let err = connector(&server)
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    contract().assert_valid(&server).await;

    // The keys travel as basic auth: a shop URL that is not https is refused at build time.
    let err = WooCommerce::new(policy(), config("http://shop.example.com/"))
        .err()
        .expect("refused");
    assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
    assert!(WooCommerce::new(policy(), config("https://shop.example.com/")).is_ok());
}

//! Magento / Adobe Commerce REST connector against a local mock: bearer token, `searchCriteria`
//! query encoding (every request checked against the held 2.4.9 admin schema), the
//! caller-verification rule, shipments with tracking, and error mapping.

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::magento::{Magento, MagentoConfig};
use callbridge::connectors::{Commerce, ConnectorError, ContactLookup};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ORDERS: &str = include_str!("../../fixtures/vendors/magento/orders.json");
const ORDERS_EMPTY: &str = include_str!("../../fixtures/vendors/magento/orders_empty.json");
const SHIPMENTS: &str = include_str!("../../fixtures/vendors/magento/shipments.json");
const PRODUCTS: &str = include_str!("../../fixtures/vendors/magento/products.json");
const STORE_CONFIGS: &str = include_str!("../../fixtures/vendors/magento/store_configs.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/magento/unauthorized.json");
const FILTER: &str = "searchCriteria[filterGroups][0][filters][0]";

fn contract() -> Contract {
    Contract::load("magento", &["admin-2.4.9.json"])
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

fn connector(server: &MockServer) -> Magento {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Magento::new(
        policy,
        MagentoConfig {
            store_url: server.uri().parse().expect("url"),
            store_code: "default".into(),
            access_token: SecretString::from("mag_token"),
        },
    )
    .expect("connector builds")
}

fn filter(part: &str) -> String {
    format!("{FILTER}[{part}]")
}

async fn mount_orders(server: &MockServer, body: &str) {
    Mock::given(method("GET"))
        .and(path("/rest/default/V1/orders"))
        .and(header("authorization", "Bearer mag_token"))
        .and(query_param(filter("field"), "increment_id"))
        .and(query_param(filter("value"), "123,000000123"))
        .and(query_param(filter("conditionType"), "in"))
        .and(query_param("searchCriteria[pageSize]", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(body)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn an_order_is_told_only_to_its_email_or_phone_with_its_tracking() {
    let server = MockServer::start().await;
    mount_orders(&server, ORDERS).await;
    Mock::given(method("GET"))
        .and(path("/rest/default/V1/shipments"))
        .and(query_param(filter("field"), "order_id"))
        .and(query_param(filter("value"), "41"))
        .and(query_param(filter("conditionType"), "eq"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SHIPMENTS)))
        .mount(&server)
        .await;
    let shop = connector(&server);
    let order = shop
        .order_status(
            &context(),
            "#123",
            &ContactLookup::Email("Ann.Lee@example.com".into()),
        )
        .await
        .expect("verified by email");
    assert_eq!(order.number, "#000000123");
    assert_eq!(order.payment_status.as_deref(), Some("PAID"));
    assert_eq!(order.fulfillment_status.as_deref(), Some("PROCESSING"));
    assert_eq!(order.shipments.len(), 1);
    assert_eq!(
        order.shipments[0].carrier.as_deref(),
        Some("United Parcel Service")
    );
    assert_eq!(
        order.shipments[0].tracking_number.as_deref(),
        Some("1Z999AA10123456784")
    );
    // The billing phone and the shipping phone both prove the caller.
    for phone in ["+15125550142", "(512) 555-0177"] {
        shop.order_status(&context(), "123", &ContactLookup::Phone(phone.into()))
            .await
            .expect("verified by phone");
    }
    let shipment_lookups = |requests: &[wiremock::Request]| {
        requests
            .iter()
            .filter(|r| r.url.path().ends_with("/shipments"))
            .count()
    };
    let before = shipment_lookups(&server.received_requests().await.unwrap_or_default());

    // A wrong phone gets no order data, and no shipment is even looked up.
    let err = shop
        .order_status(
            &context(),
            "123",
            &ContactLookup::Phone("+15125550000".into()),
        )
        .await
        .expect_err("not the caller's order");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let after = shipment_lookups(&server.received_requests().await.unwrap_or_default());
    assert_eq!(before, after);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn unknown_orders_are_not_found_and_junk_is_refused() {
    let server = MockServer::start().await;
    mount_orders(&server, ORDERS_EMPTY).await;
    let shop = connector(&server);
    let email = ContactLookup::Email("ann.lee@example.com".into());
    let err = shop
        .order_status(&context(), "123", &email)
        .await
        .expect_err("none");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    for junk in ["1,2,3", "%", "12 OR 1"] {
        let err = shop
            .order_status(&context(), junk, &email)
            .await
            .expect_err("junk");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{junk}: {err:?}"
        );
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn product_search_keeps_enabled_visible_products_with_stock() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/default/V1/store/storeConfigs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(STORE_CONFIGS)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/default/V1/products"))
        .and(query_param(filter("field"), "name"))
        .and(query_param(filter("value"), "%duffle bag%"))
        .and(query_param(filter("conditionType"), "like"))
        .and(query_param("searchCriteria[pageSize]", "10"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PRODUCTS)))
        .mount(&server)
        .await;
    let shop = connector(&server);
    // The caller's `%` and `_` never reach the `like` pattern; the currency is read once.
    let mut products = Vec::new();
    for _ in 0..2 {
        products = shop
            .search_products(&context(), "duffle  bag%_")
            .await
            .expect("found");
    }
    let titles: Vec<&str> = products.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(titles, ["Joust Duffle Bag", "Fusion Duffle Bag"]);
    assert_eq!(
        products[0]
            .min_price
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("34.00", "USD"))
    );
    assert_eq!(products[0].total_inventory, Some(100));
    assert!(products[0].variants[0].available);
    assert_eq!(products[1].total_inventory, Some(0));
    assert!(!products[1].variants[0].available);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_token_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/default/V1/store/storeConfigs"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let err = connector(&server)
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

//! Wix coupons connector against a local mock: the tenant's caps refuse what exceeds them before
//! anything is sent, the day's count is read back from Wix, coupons are single-use and expiring,
//! and every request matches the shapes of the Wix reference pages (`fixtures/vendor-specs/wix/`).

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::wix::{Wix, WixConfig, coupon_code};
use callbridge::connectors::{ConnectorError, CouponCaps, CouponDiscount, Coupons};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREATED: &str = include_str!("../../fixtures/vendors/wix/coupon_created.json");
const NONE: &str = include_str!("../../fixtures/vendors/wix/coupons_none.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/wix/unauthorized.json");

fn contract() -> Contract {
    Contract::load("wix", &["coupons-reference.json"])
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

fn caps() -> CouponCaps {
    CouponCaps {
        max_percent: 15.0,
        max_amount: 5.0,
        max_per_day: 2,
        valid_days: 3,
    }
}

fn connector(server: &MockServer) -> Wix {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Wix::new(
        policy,
        WixConfig {
            base_url: server.uri().parse().expect("url"),
            api_key: SecretString::from("wix_api_key"),
            site_id: "site-1".into(),
            caps: caps(),
        },
    )
    .expect("connector builds")
}

async fn mount(server: &MockServer, existing: &str) {
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons/query"))
        .and(header("authorization", "wix_api_key"))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(existing)))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons"))
        .and(header("wix-site-id", "site-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CREATED)))
        .mount(server)
        .await;
}

async fn created_specs(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/stores/v2/coupons")
        .map(|r| serde_json::from_slice::<Value>(&r.body).expect("JSON")["specification"].clone())
        .collect()
}

#[tokio::test]
async fn coupons_within_the_caps_are_single_use_and_expire() {
    let server = MockServer::start().await;
    mount(&server, NONE).await;
    let wix = connector(&server);
    let coupon = wix
        .create_coupon(&context(), &CouponDiscount::Percent(15.0), "key-1")
        .await
        .expect("created");
    assert_eq!(coupon.code, coupon_code("key-1"));
    wix.create_coupon(&context(), &CouponDiscount::FreeShipping, "key-2")
        .await
        .expect("created");
    let specs = created_specs(&server).await;
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0]["percentOffRate"], 15.0);
    assert_eq!(specs[0]["usageLimit"], 1);
    assert_eq!(specs[0]["scope"]["namespace"], "stores");
    let lifetime = specs[0]["expirationTime"].as_i64().unwrap_or_default()
        - specs[0]["startTime"].as_i64().unwrap_or_default();
    assert_eq!(
        lifetime,
        3 * 24 * 3600 * 1000,
        "valid for the tenant's 3 days"
    );
    assert_eq!(specs[1]["freeShipping"], true);
    assert!(
        specs[1].get("scope").is_none(),
        "free shipping takes no scope"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_caps_cannot_be_exceeded() {
    let server = MockServer::start().await;
    mount(&server, NONE).await;
    let wix = connector(&server);
    for discount in [
        CouponDiscount::Percent(50.0),
        CouponDiscount::Percent(100.0),
        CouponDiscount::Amount(5.01),
        CouponDiscount::Amount(-1.0),
        CouponDiscount::Percent(f64::INFINITY),
    ] {
        let err = wix
            .create_coupon(&context(), &discount, "key-x")
            .await
            .expect_err("beyond the caps");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{discount:?}: {err:?}"
        );
    }
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing was sent for a refused coupon"
    );

    // The day's count is kept by the tool (a slot reserved in its store): the connector reports
    // the cap and does not read Wix's list before creating.
    assert_eq!(wix.caps().max_per_day, 2);
    wix.create_coupon(&context(), &CouponDiscount::Amount(5.0), "key-y")
        .await
        .expect("created");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/stores/v2/coupons"], "one create, no count query");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_key_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/stores/v2/coupons/query"))
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

#[tokio::test]
async fn wix_orders_are_told_only_to_their_buyer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ecom/v1/orders/search"))
        .and(header("wix-site-id", "site-1"))
        .and(wiremock::matchers::body_json(serde_json::json!({
            "search": {"filter": {"number": {"$eq": "10001"}}, "cursorPaging": {"limit": 1}}
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../../fixtures/vendors/wix/orders_found.json"
            ))),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stores/v1/products/query"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture(include_str!(
                "../../fixtures/vendors/wix/products_found.json"
            ))),
        )
        .mount(&server)
        .await;
    use callbridge::connectors::{Commerce, ContactLookup};
    let wix = connector(&server);
    let order = wix
        .order_status(
            &context(),
            "#10001",
            &ContactLookup::Email("Ann.Lee@example.com".into()),
        )
        .await
        .expect("the buyer");
    assert_eq!(order.number, "#10001");
    assert_eq!(order.payment_status.as_deref(), Some("PAID"));
    for phone in ["+15125550142", "+15125550177"] {
        wix.order_status(&context(), "10001", &ContactLookup::Phone(phone.into()))
            .await
            .expect("billing or shipping phone");
    }
    let err = wix
        .order_status(
            &context(),
            "10001",
            &ContactLookup::Phone("+15125550000".into()),
        )
        .await
        .expect_err("a wrong phone gets no order data");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let products = wix
        .search_products(&context(), "linen apron")
        .await
        .expect("found");
    assert_eq!(products.len(), 1, "hidden products are not offered");
    assert_eq!(products[0].total_inventory, Some(3));
    assert_eq!(
        products[0].min_price.as_ref().map(|m| m.amount.as_str()),
        Some("24.50")
    );
    contract().assert_valid(&server).await;
}

//! Stripe payments connector against a local mock: catalogue prices looked up server-side
//! (products search, then the default price), a Checkout Session created with form-encoded line
//! items referencing those prices and the ledger's `Idempotency-Key`, status read back only for
//! the caller it was made for; every request checked against the held 2024-04-10 spec.

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::stripe::{Stripe, StripeConfig};
use callbridge::connectors::{ConnectorError, PaymentItem, PaymentState, Payments};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CALLER: &str = "+18779290687";

fn contract() -> Contract {
    Contract::load("stripe", &["spec3.2024-04-10.json"])
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/fixtures/vendors/stripe/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn connector(server: &MockServer) -> Stripe {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Stripe::new(
        policy,
        StripeConfig {
            base_url: server.uri().parse().expect("url"),
            secret_key: SecretString::from("sk_test_key"),
            success_url: "https://pizza.example.com/thanks".into(),
        },
    )
    .expect("connector builds")
}

/// The catalogue: "Large Pizza" (two products match, one exactly) and "Lemon Soda 330ml".
pub async fn mount_catalogue(server: &MockServer) {
    for (name, products) in [
        ("Large Pizza", "products_search"),
        ("Lemon Soda", "products_search_soda"),
        ("Pizza", "products_search"),
        ("Unicorn", "products_search_empty"),
    ] {
        Mock::given(method("GET"))
            .and(path("/v1/products/search"))
            .and(header("authorization", "Bearer sk_test_key"))
            .and(header("stripe-version", "2024-04-10"))
            .and(query_param(
                "query",
                format!("active:'true' AND name~'{name}'"),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(products)))
            .mount(server)
            .await;
    }
    for (id, price) in [
        ("price_LargePizza", "price_large_pizza"),
        ("price_Soda", "price_soda"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/prices/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(price)))
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("session_created")))
        .mount(server)
        .await;
}

fn items() -> Vec<PaymentItem> {
    vec![
        PaymentItem {
            name: "Large Pizza".into(),
            quantity: 2,
        },
        PaymentItem {
            name: "Lemon Soda".into(),
            quantity: 2,
        },
    ]
}

#[tokio::test]
async fn a_link_is_priced_from_the_catalogue_and_created_once_per_key() {
    let server = MockServer::start().await;
    mount_catalogue(&server).await;
    let stripe = connector(&server);
    let link = stripe
        .create_payment_link(&context(), &items(), CALLER, "ledger-key-1")
        .await
        .expect("created");
    assert_eq!(link.id, "cs_test_a1B2c3");
    assert_eq!(link.url, "https://checkout.stripe.com/c/pay/cs_test_a1B2c3");
    assert_eq!(
        link.total
            .as_ref()
            .map(|t| (t.amount.as_str(), t.currency.as_str())),
        Some(("42.00", "USD"))
    );
    // The exact catalogue name wins over the longer match; prices are the catalogue's.
    assert_eq!(link.items[0].name, "Large Pizza");
    assert_eq!(link.items[0].unit_price.amount, "18.50");
    assert_eq!(link.items[1].name, "Lemon Soda 330ml");
    assert_eq!(link.items[1].unit_price.amount, "2.50");

    let requests = server.received_requests().await.unwrap_or_default();
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(creates.len(), 1);
    let create = creates[0];
    assert_eq!(
        create
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some("ledger-key-1")
    );
    let body = String::from_utf8_lossy(&create.body);
    for expected in [
        "mode=payment",
        "line_items%5B0%5D%5Bprice%5D=price_LargePizza",
        "line_items%5B0%5D%5Bquantity%5D=2",
        "line_items%5B1%5D%5Bprice%5D=price_Soda",
        "client_reference_id=callbridge-caller-18779290687",
    ] {
        assert!(body.contains(expected), "{expected} missing from {body}");
    }
    // No amount of any kind is sent: the session only references catalogue prices.
    for forbidden in ["unit_amount", "price_data", "amount"] {
        assert!(!body.contains(forbidden), "{forbidden} sent: {body}");
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn ambiguous_or_unknown_items_create_nothing() {
    let server = MockServer::start().await;
    mount_catalogue(&server).await;
    let stripe = connector(&server);
    for name in ["Pizza", "Unicorn"] {
        let err = stripe
            .create_payment_link(
                &context(),
                &[PaymentItem {
                    name: name.into(),
                    quantity: 1,
                }],
                CALLER,
                "ledger-key-2",
            )
            .await
            .expect_err("no single catalogue item");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{name}: {err:?}"
        );
    }
    let posts = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 0);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn status_is_told_only_to_the_caller_the_link_was_made_for() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_a1B2c3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("session_paid")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions/cs_test_nope"))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("session_missing")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/checkout/sessions"))
        .and(query_param("limit", "20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("sessions_list")))
        .mount(&server)
        .await;
    let stripe = connector(&server);
    let paid = stripe
        .payment_link_status(&context(), Some("cs_test_a1B2c3"), CALLER)
        .await
        .expect("found");
    assert_eq!(paid.state, PaymentState::Paid);
    // Another caller asking about this link hears nothing about it.
    let err = stripe
        .payment_link_status(&context(), Some("cs_test_a1B2c3"), "+14155550199")
        .await
        .expect_err("not theirs");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let err = stripe
        .payment_link_status(&context(), Some("cs_test_nope"), CALLER)
        .await
        .expect_err("unknown");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    // Without an id (a later call): the caller's newest session, skipping other callers'.
    let latest = stripe
        .payment_link_status(&context(), None, CALLER)
        .await
        .expect("latest");
    assert_eq!(latest.id, "cs_test_old7");
    assert_eq!(latest.state, PaymentState::Expired);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_key_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/products"))
        .and(body_string_contains(""))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture("unauthorized")))
        .mount(&server)
        .await;
    let err = connector(&server)
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    contract().assert_valid(&server).await;
}

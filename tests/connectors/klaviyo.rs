//! Klaviyo marketing connector against a local mock: the `revision` header and private-key
//! authorisation, profile lookups by `filter=equals(…)`, and list subscriptions as JSON:API
//! bulk-create jobs to the tenant's list; every request checked against the held spec.

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::klaviyo::{Klaviyo, KlaviyoConfig};
use callbridge::connectors::{ConnectorError, ContactLookup, Marketing, Subscription};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ONE: &str = include_str!("../../fixtures/vendors/klaviyo/profiles_one.json");
const NONE: &str = include_str!("../../fixtures/vendors/klaviyo/profiles_none.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/klaviyo/unauthorized.json");

fn contract() -> Contract {
    Contract::load("klaviyo", &["profiles.json"])
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

fn connector(server: &MockServer, list_id: Option<&str>) -> Klaviyo {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Klaviyo::new(
        policy,
        KlaviyoConfig {
            base_url: server.uri().parse().expect("url"),
            private_key: SecretString::from("pk_test_key"),
            list_id: list_id.map(str::to_owned),
        },
    )
    .expect("connector builds")
}

#[tokio::test]
async fn profiles_are_found_by_phone_or_email() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/profiles"))
        .and(header("authorization", "Klaviyo-API-Key pk_test_key"))
        .and(header("revision", "2026-07-15"))
        .and(query_param(
            "filter",
            "equals(phone_number,\"+18779290687\")",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ONE)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/profiles"))
        .and(query_param(
            "filter",
            "equals(email,\"nobody@example.com\")",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(NONE)))
        .mount(&server)
        .await;
    let klaviyo = connector(&server, None);
    let profile = klaviyo
        .find_profile(&context(), &ContactLookup::Phone("+1 877 929 0687".into()))
        .await
        .expect("looked up")
        .expect("found");
    assert_eq!(profile.first_name.as_deref(), Some("Sarah"));
    assert_eq!(profile.city.as_deref(), Some("New York"));
    let none = klaviyo
        .find_profile(
            &context(),
            &ContactLookup::Email("nobody@example.com".into()),
        )
        .await
        .expect("looked up");
    assert!(none.is_none());
    // A value that would break out of the filter literal is refused before sending.
    let err = klaviyo
        .find_profile(&context(), &ContactLookup::Email("a\"),any(id,[\"x".into()))
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::InvalidInput(_)), "{err:?}");
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_consenting_caller_joins_the_configured_list() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/profile-subscription-bulk-create-jobs"))
        .and(header("content-type", "application/vnd.api+json"))
        .and(header("revision", "2026-07-15"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    connector(&server, Some("Y6nRLr"))
        .subscribe(
            &context(),
            &Subscription {
                email: Some("sarah.mason@example.com".into()),
                sms_phone: Some("+18779290687".into()),
            },
        )
        .await
        .expect("subscribed");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).expect("JSON");
    assert_eq!(
        body["data"]["relationships"]["list"]["data"]["id"],
        "Y6nRLr"
    );
    assert_eq!(
        body["data"]["attributes"]["profiles"]["data"][0]["attributes"],
        json!({
            "email": "sarah.mason@example.com",
            "phone_number": "+18779290687",
            "subscriptions": {
                "email": {"marketing": {"consent": "SUBSCRIBED"}},
                "sms": {"marketing": {"consent": "SUBSCRIBED"}},
            },
        })
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn no_list_no_subscription_and_a_refused_key_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/profiles"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(UNAUTHORIZED)))
        .mount(&server)
        .await;
    let klaviyo = connector(&server, None);
    let err = klaviyo
        .subscribe(
            &context(),
            &Subscription {
                email: Some("sarah.mason@example.com".into()),
                sms_phone: None,
            },
        )
        .await
        .expect_err("no list configured");
    assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
    let err = klaviyo.health_check(&context()).await.expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    // Only the health check reached Klaviyo.
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1
    );
    contract().assert_valid(&server).await;
}

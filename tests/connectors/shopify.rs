//! Shopify GraphQL Admin connector: every query it sends validates against Shopify's own
//! introspection schema (2025-01), and the connector works end to end against a local GraphQL
//! mock that checks the endpoint, access-token header, query text and variables.

use std::io::Read;
use std::time::Duration;

use apollo_compiler::{ExecutableDocument, Schema};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::shopify::{
    ALL_QUERIES, ORDER_BY_NAME_QUERY, PRODUCT_SEARCH_QUERY, SHOP_QUERY, Shopify, ShopifyConfig,
};
use callbridge::connectors::{Commerce, ConnectorError, ContactLookup};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SCHEMA_GZ: &[u8] =
    include_bytes!("../../fixtures/vendors/shopify/admin_schema_2025-01.json.gz");
const ORDER: &str = include_str!("../../fixtures/vendors/shopify/order_by_name.json");
const ORDERS_EMPTY: &str = include_str!("../../fixtures/vendors/shopify/orders_empty.json");
const PRODUCTS: &str = include_str!("../../fixtures/vendors/shopify/products.json");
const SHOP: &str = include_str!("../../fixtures/vendors/shopify/shop.json");
const THROTTLED: &str = include_str!("../../fixtures/vendors/shopify/throttled.json");
const ACCESS_DENIED: &str = include_str!("../../fixtures/vendors/shopify/access_denied.json");
const GRAPHQL_PATH: &str = "/admin/api/2025-01/graphql.json";

/// Shopify's GraphQL endpoint as a contract: the access-token header, and a body whose `query` is
/// one of the connector's constants (each validated against the introspection schema above).
fn contract() -> Contract {
    Contract::load("shopify", &[]).with_operation(
        "POST",
        GRAPHQL_PATH,
        &["x-shopify-access-token"],
        json!({
            "type": "object",
            "required": ["query", "variables"],
            "additionalProperties": false,
            "properties": {
                "query": { "enum": ALL_QUERIES },
                "variables": { "type": "object" },
            },
        }),
    )
}

// ---- introspection JSON → SDL, so apollo-compiler can validate against Shopify's schema ----

fn type_ref(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_owned(),
    }
}

fn input_values(values: &Value) -> Vec<String> {
    values
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|value| {
                    let mut text = format!(
                        "{}: {}",
                        value["name"].as_str().unwrap_or_default(),
                        type_ref(&value["type"])
                    );
                    if let Some(default) = value["defaultValue"].as_str() {
                        text.push_str(&format!(" = {default}"));
                    }
                    text
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn introspection_to_sdl(introspection: &Value) -> String {
    let schema = &introspection["data"]["__schema"];
    let mut sdl = format!(
        "schema {{ query: {} mutation: {} }}\n",
        schema["queryType"]["name"].as_str().unwrap_or("QueryRoot"),
        schema["mutationType"]["name"]
            .as_str()
            .unwrap_or("Mutation")
    );
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    for t in schema["types"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default();
        if name.starts_with("__") || builtin.contains(&name) {
            continue;
        }
        let implements = |t: &Value| {
            let interfaces = names(&t["interfaces"]);
            if interfaces.is_empty() {
                String::new()
            } else {
                format!(" implements {}", interfaces.join(" & "))
            }
        };
        let fields = |t: &Value| {
            t["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|field| {
                    let args = input_values(&field["args"]);
                    let args = if args.is_empty() {
                        String::new()
                    } else {
                        format!("({})", args.join(", "))
                    };
                    format!(
                        "  {}{}: {}\n",
                        field["name"].as_str().unwrap_or_default(),
                        args,
                        type_ref(&field["type"])
                    )
                })
                .collect::<String>()
        };
        match t["kind"].as_str() {
            Some("SCALAR") => sdl.push_str(&format!("scalar {name}\n")),
            Some("OBJECT") => sdl.push_str(&format!(
                "type {name}{} {{\n{}}}\n",
                implements(t),
                fields(t)
            )),
            Some("INTERFACE") => sdl.push_str(&format!(
                "interface {name}{} {{\n{}}}\n",
                implements(t),
                fields(t)
            )),
            Some("UNION") => sdl.push_str(&format!(
                "union {name} = {}\n",
                names(&t["possibleTypes"]).join(" | ")
            )),
            Some("ENUM") => sdl.push_str(&format!(
                "enum {name} {{ {} }}\n",
                names(&t["enumValues"]).join(" ")
            )),
            Some("INPUT_OBJECT") => {
                let fields: String = input_values(&t["inputFields"])
                    .iter()
                    .map(|f| format!("  {f}\n"))
                    .collect();
                sdl.push_str(&format!("input {name} {{\n{fields}}}\n"));
            }
            other => panic!("unknown type kind {other:?} for {name}"),
        }
    }
    sdl
}

fn shopify_schema() -> apollo_compiler::validation::Valid<Schema> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(SCHEMA_GZ)
        .read_to_string(&mut json)
        .expect("schema unpacks");
    let introspection: Value = serde_json::from_str(&json).expect("schema is JSON");
    let sdl = introspection_to_sdl(&introspection);
    match Schema::parse_and_validate(sdl, "shopify_admin_2025-01.graphql") {
        Ok(schema) => schema,
        Err(with_errors) => panic!("schema conversion is invalid: {}", with_errors.errors),
    }
}

#[test]
fn every_query_validates_against_the_admin_schema() {
    let schema = shopify_schema();
    for query in ALL_QUERIES {
        if let Err(with_errors) =
            ExecutableDocument::parse_and_validate(&schema, query, "query.graphql")
        {
            panic!("query does not validate:\n{query}\n{}", with_errors.errors);
        }
    }
    // The validator must be able to fail: a field Shopify does not have is refused.
    let wrong = "query { orders(first: 1) { nodes { name shoeSize } } }";
    assert!(ExecutableDocument::parse_and_validate(&schema, wrong, "wrong.graphql").is_err());
}

// ---- end to end against a GraphQL mock ----

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

fn connector(server: &MockServer) -> Shopify {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Shopify::new(
        policy,
        ShopifyConfig {
            shop_url: server.uri().parse().expect("url"),
            access_token: SecretString::from("shpat_test"),
        },
    )
    .expect("connector builds")
}

async fn mount_order(server: &MockServer, body: Value) {
    Mock::given(method("POST"))
        .and(path(GRAPHQL_PATH))
        .and(header("x-shopify-access-token", "shpat_test"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"query": ORDER_BY_NAME_QUERY, "variables": {"query": "name:#1001"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn order_status_requires_a_matching_email_or_phone() {
    let server = MockServer::start().await;
    mount_order(&server, fixture(ORDER)).await;
    let shopify = connector(&server);
    let status = shopify
        .order_status(
            &context(),
            "1001",
            &ContactLookup::Email("Bob.Norman@mail.example.com".into()),
        )
        .await
        .expect("verified by email");
    assert_eq!(status.number, "#1001");
    assert_eq!(status.payment_status.as_deref(), Some("PAID"));
    assert_eq!(status.fulfillment_status.as_deref(), Some("FULFILLED"));
    assert!(!status.cancelled);
    assert_eq!(status.shipments.len(), 1);
    assert_eq!(status.shipments[0].carrier.as_deref(), Some("UPS"));
    assert_eq!(status.shipments[0].status.as_deref(), Some("IN_TRANSIT"));

    shopify
        .order_status(
            &context(),
            "#1001",
            &ContactLookup::Phone("(312) 555-1212".into()),
        )
        .await
        .expect("verified by phone");

    let err = shopify
        .order_status(
            &context(),
            "1001",
            &ContactLookup::Email("someone.else@example.com".into()),
        )
        .await
        .expect_err("not verified");
    assert!(
        matches!(err, ConnectorError::NotFound(_)),
        "a mismatch looks like an unknown order: {err:?}"
    );
    // Every request the mock received is one of the validated queries, sent as the API expects.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_unknown_order_is_not_found_and_junk_input_is_refused() {
    let server = MockServer::start().await;
    mount_order(&server, fixture(ORDERS_EMPTY)).await;
    let shopify = connector(&server);
    let err = shopify
        .order_status(
            &context(),
            "1001",
            &ContactLookup::Email("bob@example.com".into()),
        )
        .await
        .expect_err("none");
    assert!(matches!(err, ConnectorError::NotFound(_)), "{err:?}");
    let err = shopify
        .order_status(
            &context(),
            "\"\" OR *",
            &ContactLookup::Email("bob@example.com".into()),
        )
        .await
        .expect_err("no number");
    assert!(matches!(err, ConnectorError::InvalidInput(_)), "{err:?}");
    // Every request the mock received is one of the validated queries, sent as the API expects.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn throttled_answers_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GRAPHQL_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(THROTTLED)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GRAPHQL_PATH))
        .and(body_json(json!({"query": SHOP_QUERY, "variables": {}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SHOP)))
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy after the throttle");
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
    // Every request the mock received is one of the validated queries, sent as the API expects.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn missing_scopes_are_an_auth_error() {
    let server = MockServer::start().await;
    mount_order(&server, fixture(ACCESS_DENIED)).await;
    let err = connector(&server)
        .order_status(
            &context(),
            "1001",
            &ContactLookup::Email("bob.norman@mail.example.com".into()),
        )
        .await
        .expect_err("denied");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    // Every request the mock received is one of the validated queries, sent as the API expects.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn product_search_returns_prices_and_stock() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GRAPHQL_PATH))
        .and(header("x-shopify-access-token", "shpat_test"))
        .and(body_json(json!({
            "query": PRODUCT_SEARCH_QUERY,
            "variables": {"query": "ceramic mug status:active", "first": 5}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PRODUCTS)))
        .mount(&server)
        .await;
    let products = connector(&server)
        .search_products(&context(), "ceramic  mug")
        .await
        .expect("found");
    assert_eq!(products.len(), 1);
    let mug = &products[0];
    assert_eq!(mug.title, "Ceramic Mug");
    assert_eq!(mug.total_inventory, Some(14));
    assert_eq!(
        mug.min_price
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("12.5", "USD"))
    );
    assert_eq!(mug.variants.iter().filter(|v| v.available).count(), 1);
    assert_eq!(mug.variants[1].inventory, Some(0));
    // Every request the mock received is one of the validated queries, sent as the API expects.
    contract().assert_valid(&server).await;
}

//! Google Calendar with a service-account key: the token source mints an RS256 JWT assertion and
//! exchanges it at the key file's `token_uri` (a local mock here) per RFC 7523 and Google's
//! server-to-server OAuth rules. The assertion is decoded and its signature verified with the
//! test key's public half (`fixtures/connectors/`, test-only).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use callbridge::connectors::google_calendar::{GoogleCalendar, GoogleCalendarConfig};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::oauth::{OAuthTokenSource, ServiceAccountKey};
use callbridge::connectors::{Calendar, ConnectorError};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The vendor's published spec (the parts this connector uses, under `fixtures/vendor-specs/`).
fn contract() -> Contract {
    Contract::load("google-calendar", &["calendar.v3.swagger2.json"]).ignoring("/token")
}

const KEY_FILE: &str = include_str!("../../fixtures/connectors/test_only_service_account.json");
const PUBLIC_KEY: &[u8] =
    include_bytes!("../../fixtures/connectors/test_only_service_account_public.der");
const TOKEN: &str = include_str!("../../fixtures/vendors/google-calendar/token.json");
const CALENDAR: &str = include_str!("../../fixtures/vendors/google-calendar/calendar.json");
const UNAUTHORIZED: &str = include_str!("../../fixtures/vendors/google-calendar/error_401.json");
const CLIENT_EMAIL: &str = "booking-bot@callbridge-test.iam.gserviceaccount.com";
const BEARER: &str = "Bearer ya29.a0-test-access-token";

fn json_fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn token_url(server: &MockServer) -> String {
    format!("{}/token", server.uri())
}

fn key(server: &MockServer) -> ServiceAccountKey {
    ServiceAccountKey::from_key_file(&KEY_FILE.replace("TOKEN_URI_PLACEHOLDER", &token_url(server)))
        .expect("the test key file parses")
}

fn connector(server: &MockServer, key: ServiceAccountKey) -> GoogleCalendar {
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let config = GoogleCalendarConfig::new(
        format!("{}/calendar/v3/", server.uri())
            .parse()
            .expect("url"),
        "team@group.calendar.google.com",
    );
    let tokens = Arc::new(OAuthTokenSource::service_account(
        policy.clone(),
        key,
        "google_calendar",
    ));
    GoogleCalendar::new(policy, config, tokens)
}

async fn mount_token(server: &MockServer, body: Value) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

async fn mount_calendar(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(
            "/calendar/v3/calendars/team@group.calendar.google.com",
        ))
        .and(header("authorization", BEARER))
        .respond_with(ResponseTemplate::new(200).set_body_json(json_fixture(CALENDAR)))
        .mount(server)
        .await;
}

fn token_requests(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.url.path() == "/token")
        .collect()
}

fn decode_part(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url without padding");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// The form of a token request, each field once.
fn form_of(request: &Request) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&request.body).expect("form-encoded");
    let form: HashMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(form.len(), pairs.len(), "no repeated field: {pairs:?}");
    form
}

/// Checks the assertion's header, claims and signature; returns the claims.
fn verified_claims(assertion: &str) -> Value {
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "header.claims.signature");
    let header = decode_part(parts[0]);
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef0123456789abcdef01234567"})
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, PUBLIC_KEY)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("signed by the key's private half");
    decode_part(parts[1])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn the_token_request_is_a_signed_jwt_bearer_assertion() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    mount_calendar(&server).await;
    let before = unix_now();
    connector(&server, key(&server))
        .health_check(&context())
        .await
        .expect("healthy");
    let after = unix_now();
    let requests = server.received_requests().await.unwrap_or_default();
    let tokens = token_requests(&requests);
    assert_eq!(tokens.len(), 1);
    let form = form_of(tokens[0]);
    let mut fields: Vec<&str> = form.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["assertion", "grant_type"]);
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let claims = verified_claims(&form["assertion"]);
    assert_eq!(claims["iss"], CLIENT_EMAIL);
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/calendar");
    assert_eq!(claims["aud"], token_url(&server));
    assert!(
        claims.get("sub").is_none(),
        "no subject configured: {claims}"
    );
    let iat = claims["iat"].as_u64().expect("iat is a number");
    let exp = claims["exp"].as_u64().expect("exp is a number");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} not in {before}..={after}"
    );
    assert_eq!(exp - iat, 3_600, "an hour, Google's maximum");
    assert_eq!(claims.as_object().map(|c| c.len()), Some(5), "{claims}");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_subject_is_sent_as_sub_for_domain_wide_delegation() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    mount_calendar(&server).await;
    let key = key(&server).with_subject(Some("frontdesk@acme-dental.example".into()));
    connector(&server, key)
        .health_check(&context())
        .await
        .expect("healthy");
    let requests = server.received_requests().await.unwrap_or_default();
    let form = form_of(token_requests(&requests)[0]);
    let claims = verified_claims(&form["assertion"]);
    assert_eq!(claims["sub"], "frontdesk@acme-dental.example");
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_token_is_cached_and_refreshed_inside_the_margin() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    mount_calendar(&server).await;
    let calendar = connector(&server, key(&server));
    for _ in 0..3 {
        calendar.health_check(&context()).await.expect("healthy");
    }
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(
        token_requests(&requests).len(),
        1,
        "one mint for three calls"
    );

    // A token expiring in 60 s is inside the two-minute margin: every use mints a new one.
    let short = MockServer::start().await;
    let mut short_lived = json_fixture(TOKEN);
    short_lived["expires_in"] = json!(60);
    mount_token(&short, short_lived).await;
    mount_calendar(&short).await;
    let calendar = connector(&short, key(&short));
    calendar.health_check(&context()).await.expect("healthy");
    calendar.health_check(&context()).await.expect("healthy");
    let requests = short.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests).len(), 2);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn concurrent_callers_share_one_mint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json_fixture(TOKEN))
                .set_delay(Duration::from_millis(100)),
        )
        .mount(&server)
        .await;
    mount_calendar(&server).await;
    let calendar = connector(&server, key(&server));
    let ctx = context();
    let checks = (0..4).map(|_| calendar.health_check(&ctx));
    for outcome in futures_util::future::join_all(checks).await {
        outcome.expect("healthy");
    }
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests).len(), 1);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_401_forces_one_new_token_and_one_more_try() {
    let server = MockServer::start().await;
    mount_token(&server, json_fixture(TOKEN)).await;
    Mock::given(method("GET"))
        .and(path(
            "/calendar/v3/calendars/team@group.calendar.google.com",
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(json_fixture(UNAUTHORIZED)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_calendar(&server).await;
    connector(&server, key(&server))
        .health_check(&context())
        .await
        .expect("healthy after a new token");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(token_requests(&requests).len(), 2);
    // Every request the mock received is valid per the vendor's spec.
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_refused_assertion_is_an_auth_error_naming_the_oauth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Invalid JWT Signature."
        })))
        .mount(&server)
        .await;
    let err = connector(&server, key(&server))
        .health_check(&context())
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("invalid_grant: Invalid JWT Signature.") && message.contains(CLIENT_EMAIL),
        "{message}"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(
        token_requests(&requests).len(),
        1,
        "a refusal is not retried"
    );
}

#[test]
fn a_key_file_with_a_broken_key_is_a_credential_error() {
    let broken = KEY_FILE
        .replace(
            "TOKEN_URI_PLACEHOLDER",
            "https://oauth2.googleapis.com/token",
        )
        .replace("MII", "XYZ");
    let err = ServiceAccountKey::from_key_file(&broken).expect_err("refused");
    assert!(matches!(err, ConnectorError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("private_key"), "{err}");
    assert!(!err.to_string().contains("XYZ"), "{err}");
}

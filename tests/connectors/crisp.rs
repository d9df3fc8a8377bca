//! Crisp connector end to end against a local mock of the REST API v1. Crisp publishes no OpenAPI
//! document: every request is checked against `crisp/reference.json`, written from Crisp's REST API
//! Reference (V1), https://docs.crisp.chat/references/rest-api/v1/ (plugin-tier header, basic
//! auth, bodies). Answers follow the reference's `{error, reason, data}` envelope
//! (`fixtures/vendors/crisp/`).

use std::time::Duration;

use callbridge::connectors::crisp::{Crisp, CrispConfig};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, TicketPriority,
    TicketStatus,
};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn contract() -> Contract {
    Contract::load("crisp", &["reference.json"])
}

const PROFILES: &str = include_str!("../../fixtures/vendors/crisp/profiles.json");
const PROFILE_ADDED: &str = include_str!("../../fixtures/vendors/crisp/profile_added.json");
const PROFILE_EXISTS: &str = include_str!("../../fixtures/vendors/crisp/profile_exists.json");
const CREATED: &str = include_str!("../../fixtures/vendors/crisp/conversation_created.json");
const UPDATED: &str = include_str!("../../fixtures/vendors/crisp/updated.json");
const DISPATCHED: &str = include_str!("../../fixtures/vendors/crisp/dispatched.json");
const CONVERSATIONS: &str = include_str!("../../fixtures/vendors/crisp/conversations.json");
const CONVERSATION: &str = include_str!("../../fixtures/vendors/crisp/conversation.json");
const WEBSITE: &str = include_str!("../../fixtures/vendors/crisp/website.json");
const ERROR_401: &str = include_str!("../../fixtures/vendors/crisp/error_401.json");

const WEBSITE_ID: &str = "8c842203-7ed8-4e29-a608-7cf78a7d2fcc";
const SESSION: &str = "session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881";
/// `crisp-plugin-id:crisp-plugin-key`, base64.
const AUTH: &str = "Basic Y3Jpc3AtcGx1Z2luLWlkOmNyaXNwLXBsdWdpbi1rZXk=";

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn at(rest: &str) -> String {
    format!("/v1/website/{WEBSITE_ID}{rest}")
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn connector(server: &MockServer) -> Crisp {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Crisp::new(
        policy,
        CrispConfig {
            base_url: format!("{}/v1/", server.uri()).parse().expect("url"),
            website_id: WEBSITE_ID.into(),
            identifier: "crisp-plugin-id".into(),
            key: SecretString::from("crisp-plugin-key"),
        },
    )
}

fn ann() -> Requester {
    Requester {
        id: "email:ann@example.com".into(),
        name: Some("Ann Lee".into()),
    }
}

#[tokio::test]
async fn a_requester_is_a_profile_matched_exactly_or_added() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(at("/people/profiles/1")))
        .and(query_param("search_text", "+14155550100"))
        .and(header("authorization", AUTH))
        .and(header("x-crisp-tier", "plugin"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(PROFILES)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(at("/people/profile")))
        .and(body_json(json!({"email": "new@example.com", "person": {"nickname": "Bo Chen", "phone": "+14155550123"}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(PROFILE_ADDED)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(at("/people/profile")))
        .and(body_json(
            json!({"email": "ann@example.com", "person": {"nickname": "ann@example.com"}}),
        ))
        .respond_with(ResponseTemplate::new(409).set_body_json(fixture(PROFILE_EXISTS)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let found = desk
        .find_requester(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("listed")
        .expect("stored as '+1 415 555 0100'");
    assert_eq!(found.id, "phone:+14155550100");
    assert_eq!(found.name.as_deref(), Some("Ann Lee"));
    let added = desk
        .create_requester(
            &context(),
            &RequesterInput {
                name: Some("Bo Chen".into()),
                email: Some("new@example.com".into()),
                phone: Some("+14155550123".into()),
            },
            "k",
        )
        .await
        .expect("added");
    assert_eq!(added.id, "email:new@example.com");
    let existing = desk
        .create_requester(
            &context(),
            &RequesterInput {
                email: Some("ann@example.com".into()),
                ..RequesterInput::default()
            },
            "k",
        )
        .await
        .expect("an existing profile is the same person");
    assert_eq!(existing.id, "email:ann@example.com");
    // A caller known by phone only needs no profile.
    let by_phone = desk
        .create_requester(
            &context(),
            &RequesterInput {
                phone: Some("+14155550124".into()),
                ..RequesterInput::default()
            },
            "k",
        )
        .await
        .expect("named by phone");
    assert_eq!(by_phone.id, "phone:+14155550124");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_ticket_is_a_conversation_with_metas_and_the_callers_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(at("/conversation")))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(at(&format!("/conversation/{SESSION}/meta"))))
        .and(body_json(json!({
            "subject": "Heating not working",
            "segments": ["phone_call", "priority_high"],
            "data": {"requester": "email:ann@example.com", "call_id": "CA9"},
            "email": "ann@example.com",
            "nickname": "Ann Lee"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(UPDATED)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(at(&format!("/conversation/{SESSION}/message"))))
        .and(body_json(json!({
            "type": "text", "from": "user", "origin": "chat",
            "content": "The heating stopped last night."
        })))
        .respond_with(ResponseTemplate::new(202).set_body_json(fixture(DISPATCHED)))
        .expect(1)
        .mount(&server)
        .await;
    let ticket = connector(&server)
        .create_ticket(
            &context(),
            &ann(),
            &NewTicket {
                subject: "Heating not working".into(),
                description: "The heating stopped last night.".into(),
                priority: TicketPriority::High,
                external_ref: "CA9".into(),
            },
            "k",
        )
        .await
        .expect("created");
    assert_eq!(ticket.id, SESSION);
    assert_eq!(ticket.status, TicketStatus::New);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn open_tickets_are_the_callers_unresolved_conversations_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(at("/conversations/1")))
        .and(query_param("search_query", "ann@example.com"))
        .and(query_param("search_type", "text"))
        .and(query_param("filter_not_resolved", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONVERSATIONS)))
        .mount(&server)
        .await;
    let tickets = connector(&server)
        .open_tickets(&context(), &ann())
        .await
        .expect("listed");
    let subjects: Vec<&str> = tickets
        .iter()
        .filter_map(|t| t.subject.as_deref())
        .collect();
    // The third conversation only mentions the address: it is someone else's.
    assert_eq!(subjects, ["Heating not working", "Invoice question"]);
    assert_eq!(tickets[1].status, TicketStatus::New);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_conversation_names_its_requester_and_a_comment_is_a_message() {
    let server = MockServer::start().await;
    let other = "session_a1b2c3d4-0000-4000-8000-000000000003";
    Mock::given(method("GET"))
        .and(path(at(&format!("/conversation/{other}"))))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONVERSATION)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(at(&format!("/conversation/{SESSION}/message"))))
        .and(body_json(json!({
            "type": "text", "from": "user", "origin": "chat",
            "content": "It is making a noise now too."
        })))
        .respond_with(ResponseTemplate::new(202).set_body_json(fixture(DISPATCHED)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let theirs = desk.ticket(&context(), other).await.expect("shown");
    assert_eq!(
        theirs.requester_id.as_deref(),
        Some("email:someone@example.net")
    );
    desk.add_comment(
        &context(),
        &ann(),
        SESSION,
        "It is making a noise now too.",
        "k",
    )
    .await
    .expect("sent");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_connector_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(at("")))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(ERROR_401)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(at("/conversation/session_missing")))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": true, "reason": "session_not_found", "data": {}})),
        )
        .mount(&server)
        .await;
    let desk = connector(&server);
    let auth = desk.health_check(&context()).await.expect_err("refused");
    assert!(matches!(auth, ConnectorError::Auth(_)), "{auth:?}");
    let missing = desk
        .ticket(&context(), "session_missing")
        .await
        .expect_err("missing");
    assert!(
        matches!(missing, ConnectorError::NotFound(_)),
        "{missing:?}"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_health_check_reads_the_website() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(at("")))
        .and(header("authorization", AUTH))
        .and(header("x-crisp-tier", "plugin"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(WEBSITE)))
        .expect(1)
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy");
    contract().assert_valid(&server).await;
}

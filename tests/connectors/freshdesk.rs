//! Freshdesk connector end to end against a local mock of the API v2. The mock checks method,
//! path, API-key basic auth and bodies; every request is checked against `freshdesk/openapi.json`
//! (the held spec) and `freshdesk/reference-additions.json` (the operations it lacks, written from
//! Freshdesk's API reference, https://developers.freshdesk.com/api/). Answers are shaped like the
//! reference's examples (`fixtures/vendors/freshdesk/`).

use std::time::Duration;

use callbridge::connectors::freshdesk::{Freshdesk, api_key_auth};
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

/// The reference additions first: their filtered list operations win over the held spec's.
fn contract() -> Contract {
    Contract::load("freshdesk", &["reference-additions.json", "openapi.json"])
}

const CONTACTS_BY_PHONE: &str =
    include_str!("../../fixtures/vendors/freshdesk/contacts_by_phone.json");
const CONTACTS_NONE: &str = include_str!("../../fixtures/vendors/freshdesk/contacts_none.json");
const CONTACT_CREATED: &str = include_str!("../../fixtures/vendors/freshdesk/contact_created.json");
const TICKET: &str = include_str!("../../fixtures/vendors/freshdesk/ticket.json");
const TICKETS: &str = include_str!("../../fixtures/vendors/freshdesk/tickets.json");
const NOTE: &str = include_str!("../../fixtures/vendors/freshdesk/note.json");
const ERROR_400: &str = include_str!("../../fixtures/vendors/freshdesk/error_400.json");
const ERROR_401: &str = include_str!("../../fixtures/vendors/freshdesk/error_401.json");

/// `fd-test-key:X`, base64.
const AUTH: &str = "Basic ZmQtdGVzdC1rZXk6WA==";

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

fn connector(server: &MockServer) -> Freshdesk {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Freshdesk::new(
        policy,
        server.uri().parse().expect("url"),
        api_key_auth(&SecretString::from("fd-test-key")),
    )
}

fn ann() -> Requester {
    Requester {
        id: "432000100".into(),
        name: Some("Ann Lee".into()),
    }
}

#[tokio::test]
async fn a_requester_is_found_by_phone_or_mobile_and_created_when_missing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts"))
        .and(query_param("phone", "+14155550100"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_BY_PHONE)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts"))
        .and(query_param("phone", "+14155550123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_NONE)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts"))
        .and(query_param("mobile", "+14155550123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_NONE)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/contacts"))
        .and(body_json(
            json!({"name": "Caller +14155550123", "phone": "+14155550123"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(CONTACT_CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let found = desk
        .find_requester(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("listed")
        .expect("stored as '+1 415 555 0100'");
    assert_eq!(found.id, "432000100");
    let missing = desk
        .find_requester(&context(), &ContactLookup::Phone("+14155550123".into()))
        .await
        .expect("listed");
    assert!(missing.is_none(), "neither phone nor mobile matched");
    let created = desk
        .create_requester(
            &context(),
            &RequesterInput {
                phone: Some("+14155550123".into()),
                ..RequesterInput::default()
            },
            "k",
        )
        .await
        .expect("created");
    assert_eq!(created.id, "432000200");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_ticket_is_a_phone_ticket_with_escaped_words_and_the_call_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "subject": "Heating not working",
            "description": "Radiator &lt;cold&gt; &amp; noisy<br><br>Opened by phone (call CA9).",
            "priority": 3,
            "status": 2,
            "source": 3,
            "requester_id": 432000100,
            "tags": ["phone_call"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(TICKET)))
        .expect(1)
        .mount(&server)
        .await;
    let ticket = connector(&server)
        .create_ticket(
            &context(),
            &ann(),
            &NewTicket {
                subject: "Heating not working".into(),
                description: "Radiator <cold> & noisy".into(),
                priority: TicketPriority::High,
                external_ref: "CA9".into(),
            },
            "k",
        )
        .await
        .expect("created");
    assert_eq!(ticket.id, "1024");
    assert_eq!(ticket.status, TicketStatus::Open);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn open_tickets_are_listed_by_requester_and_the_closed_left_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .and(query_param("requester_id", "432000100"))
        .and(query_param("order_by", "updated_at"))
        .and(query_param("order_type", "desc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKETS)))
        .mount(&server)
        .await;
    let tickets = connector(&server)
        .open_tickets(&context(), &ann())
        .await
        .expect("listed");
    let ids: Vec<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["1024", "1019"]);
    assert_eq!(tickets[1].status, TicketStatus::WaitingOnCustomer);
    let requests = server.received_requests().await.expect("recorded");
    assert!(
        requests[0]
            .url
            .query_pairs()
            .any(|(name, _)| name == "updated_since"),
        "older tickets are included"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_comment_is_an_incoming_note_from_the_contact() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/1024"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKET)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/1024/notes"))
        .and(body_json(json!({
            "body": "It is making a noise now too.",
            "private": false,
            "incoming": true,
            "user_id": 432000100
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(NOTE)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let ticket = desk.ticket(&context(), "1024").await.expect("shown");
    assert_eq!(ticket.requester_id.as_deref(), Some("432000100"));
    desk.add_comment(
        &context(),
        &ann(),
        "1024",
        "It is making a noise now too.",
        "k",
    )
    .await
    .expect("noted");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_connector_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(ERROR_401)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture(ERROR_400)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/99"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let desk = connector(&server);
    let auth = desk.health_check(&context()).await.expect_err("refused");
    assert!(matches!(auth, ConnectorError::Auth(_)), "{auth:?}");
    let missing = desk.ticket(&context(), "99").await.expect_err("missing");
    assert!(
        matches!(missing, ConnectorError::NotFound(_)),
        "{missing:?}"
    );
    let rejected = desk
        .create_ticket(
            &context(),
            &ann(),
            &NewTicket {
                subject: "s".into(),
                description: "d".into(),
                priority: TicketPriority::Low,
                external_ref: "CA1".into(),
            },
            "k",
        )
        .await
        .expect_err("rejected");
    match rejected {
        ConnectorError::Rejected(detail) => assert!(detail.contains("invalid_value"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let posts = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "a create is never replayed");
    contract().assert_valid(&server).await;
}

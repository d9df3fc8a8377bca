//! Zendesk connector end to end against a local mock of the Support API. The mock checks method,
//! path, API-token basic auth and bodies per `zendesk/openapi.json` (the used part of Zendesk's
//! reference); answers are shaped like the spec's `UsersResponse`, `TicketResponse` and
//! `SearchResponse` (`fixtures/vendors/zendesk/`).

use std::time::Duration;

use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::zendesk::{Zendesk, ZendeskConfig, api_token_auth};
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
    Contract::load("zendesk", &["openapi.json"])
}

const USERS_SEARCH: &str = include_str!("../../fixtures/vendors/zendesk/users_search.json");
const USERS_NONE: &str = include_str!("../../fixtures/vendors/zendesk/users_none.json");
const USER: &str = include_str!("../../fixtures/vendors/zendesk/user.json");
const TICKET: &str = include_str!("../../fixtures/vendors/zendesk/ticket.json");
const SEARCH_TICKETS: &str = include_str!("../../fixtures/vendors/zendesk/search_tickets.json");
const ERROR_401: &str = include_str!("../../fixtures/vendors/zendesk/error_401.json");
const ERROR_422: &str = include_str!("../../fixtures/vendors/zendesk/error_422.json");
const ME: &str = include_str!("../../fixtures/vendors/zendesk/me.json");

/// `agent@acme.com/token:zd-test-token`, base64.
const AUTH: &str = "Basic YWdlbnRAYWNtZS5jb20vdG9rZW46emQtdGVzdC10b2tlbg==";

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

fn connector(server: &MockServer) -> Zendesk {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Zendesk::new(
        policy,
        ZendeskConfig {
            base_url: server.uri().parse().expect("url"),
            auth: api_token_auth("agent@acme.com", SecretString::from("zd-test-token")),
        },
    )
}

fn ann() -> Requester {
    Requester {
        id: "35436".into(),
        name: Some("Ann Lee".into()),
    }
}

#[tokio::test]
async fn a_requester_is_found_by_exact_phone_among_partial_matches() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/search"))
        .and(query_param("query", "phone:+14155550100"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(USERS_SEARCH)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/search"))
        .and(query_param("query", "email:nobody@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(USERS_NONE)))
        .mount(&server)
        .await;
    let zendesk = connector(&server);
    let found = zendesk
        .find_requester(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("search works")
        .expect("found");
    // The stored "+1 (415) 555-0100" is the caller; the partial match +14155550199 is not.
    assert_eq!(found.id, "35436");
    assert_eq!(found.name.as_deref(), Some("Ann Lee"));
    let none = zendesk
        .find_requester(
            &context(),
            &ContactLookup::Email("nobody@example.com".into()),
        )
        .await
        .expect("search works");
    assert!(none.is_none());
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_new_requester_is_an_end_user_without_a_verification_email() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/users/create_or_update"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({"user": {
            "name": "Caller +14155550123",
            "role": "end-user",
            "skip_verify_email": true,
            "phone": "+14155550123"
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(USER)))
        .expect(1)
        .mount(&server)
        .await;
    let created = connector(&server)
        .create_requester(
            &context(),
            &RequesterInput {
                name: None,
                email: None,
                phone: Some("+14155550123".into()),
            },
            "key-1",
        )
        .await
        .expect("created");
    assert_eq!(created.id, "9873843");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_ticket_carries_the_call_id_and_the_ledger_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", AUTH))
        .and(header("idempotency-key", "ledger-key-7"))
        .and(body_json(json!({"ticket": {
            "subject": "Heating not working",
            "comment": {"body": "The heating stopped last night."},
            "priority": "high",
            "requester_id": 35436,
            "external_id": "CA20000000000000000000000000000009",
            "tags": ["phone_call"]
        }})))
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
                description: "The heating stopped last night.".into(),
                priority: TicketPriority::High,
                external_ref: "CA20000000000000000000000000000009".into(),
            },
            "ledger-key-7",
        )
        .await
        .expect("created");
    assert_eq!(ticket.id, "35436");
    assert_eq!(ticket.status, TicketStatus::New);
    assert_eq!(ticket.requester_id.as_deref(), Some("35436"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn open_tickets_are_the_requesters_unsolved_ones() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/search"))
        .and(query_param(
            "query",
            "type:ticket requester_id:35436 status<solved",
        ))
        .and(query_param("sort_by", "updated_at"))
        .and(query_param("sort_order", "desc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_TICKETS)))
        .mount(&server)
        .await;
    let tickets = connector(&server)
        .open_tickets(&context(), &ann())
        .await
        .expect("listed");
    let ids: Vec<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["35436", "35440"], "the solved one is left out");
    assert_eq!(tickets[1].status, TicketStatus::WaitingOnCustomer);
    assert_eq!(tickets[0].subject.as_deref(), Some("Heating not working"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_comment_is_authored_by_the_requester_and_sent_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/35436"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKET)))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/35436"))
        .and(body_json(json!({"ticket": {"comment": {
            "body": "It is making a noise now too.",
            "public": true,
            "author_id": 35436
        }}})))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let zendesk = connector(&server);
    let ticket = zendesk.ticket(&context(), "35436").await.expect("shown");
    assert_eq!(ticket.requester_id.as_deref(), Some("35436"));
    let err = zendesk
        .add_comment(
            &context(),
            &ann(),
            "35436",
            "It is making a noise now too.",
            "k",
        )
        .await
        .expect_err("the vendor is down");
    assert!(matches!(err, ConnectorError::Policy(_)), "{err:?}");
    let puts = server
        .received_requests()
        .await
        .expect("recorded")
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .count();
    assert_eq!(puts, 1, "a comment is never replayed");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_connector_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/me"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(ERROR_401)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/999"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "RecordNotFound"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(422).set_body_json(fixture(ERROR_422)))
        .mount(&server)
        .await;
    let zendesk = connector(&server);
    let auth = zendesk.health_check(&context()).await.expect_err("refused");
    assert!(matches!(auth, ConnectorError::Auth(_)), "{auth:?}");
    let missing = zendesk
        .ticket(&context(), "999")
        .await
        .expect_err("missing");
    assert!(
        matches!(missing, ConnectorError::NotFound(_)),
        "{missing:?}"
    );
    let not_an_id = zendesk
        .ticket(&context(), "abc")
        .await
        .expect_err("no request");
    assert!(matches!(not_an_id, ConnectorError::NotFound(_)));
    let rejected = zendesk
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
        ConnectorError::Rejected(detail) => assert!(detail.contains("RecordInvalid"), "{detail}"),
        other => panic!("{other:?}"),
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_health_check_reads_the_current_user() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/me"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(ME)))
        .expect(1)
        .mount(&server)
        .await;
    connector(&server)
        .health_check(&context())
        .await
        .expect("healthy");
    contract().assert_valid(&server).await;
}

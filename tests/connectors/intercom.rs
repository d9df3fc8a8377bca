//! Intercom connector end to end against a local mock of the REST API 2.14. The mock checks
//! method, path, bearer token, the `Intercom-Version` header and bodies; every request is checked
//! against `intercom/api.intercom.io.2.14.json` (the used part of the held spec). Answers are
//! shaped like the spec's `contact_list`, `ticket` and `ticket_list` (`fixtures/vendors/intercom/`).

use std::time::Duration;

use callbridge::connectors::client::Auth;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::intercom::{Intercom, IntercomConfig};
use callbridge::connectors::{
    ConnectorError, ContactLookup, NewTicket, Requester, RequesterInput, Support, TicketPriority,
    TicketStatus,
};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn contract() -> Contract {
    Contract::load("intercom", &["api.intercom.io.2.14.json"])
}

const CONTACTS_SEARCH: &str = include_str!("../../fixtures/vendors/intercom/contacts_search.json");
const CONTACT_CREATED: &str = include_str!("../../fixtures/vendors/intercom/contact_created.json");
const TICKET: &str = include_str!("../../fixtures/vendors/intercom/ticket.json");
const TICKETS_SEARCH: &str = include_str!("../../fixtures/vendors/intercom/tickets_search.json");
const REPLY: &str = include_str!("../../fixtures/vendors/intercom/reply.json");
const ERROR_400: &str = include_str!("../../fixtures/vendors/intercom/error_400.json");
const ERROR_401: &str = include_str!("../../fixtures/vendors/intercom/error_401.json");
const ME: &str = include_str!("../../fixtures/vendors/intercom/me.json");

const AUTH: &str = "Bearer ic-test-token";
const ANN: &str = "6762f0dd1bb69f9f2193bb84";

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

fn connector(server: &MockServer) -> Intercom {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    Intercom::new(
        policy,
        IntercomConfig {
            base_url: server.uri().parse().expect("url"),
            auth: Auth::Bearer(SecretString::from("ic-test-token")),
            ticket_type_id: "88".into(),
        },
    )
}

fn ann() -> Requester {
    Requester {
        id: ANN.into(),
        name: Some("Ann Lee".into()),
    }
}

#[tokio::test]
async fn a_contact_is_found_by_exact_phone_and_created_as_a_user_when_missing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .and(header("authorization", AUTH))
        .and(header("intercom-version", "2.14"))
        .and(body_json(json!({
            "query": {"field": "phone", "operator": "=", "value": "+14155550100"},
            "pagination": {"per_page": 5}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS_SEARCH)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/contacts"))
        .and(body_json(json!({"role": "user", "phone": "+14155550123"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACT_CREATED)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let found = desk
        .find_requester(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("searched")
        .expect("found");
    assert_eq!(found.id, ANN);
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
    assert_eq!(created.id, "6762f0ea1bb69f9f2193bb90");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_ticket_has_the_type_the_contact_and_the_call_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tickets"))
        .and(header("authorization", AUTH))
        .and(header("intercom-version", "2.14"))
        .and(body_json(json!({
            "ticket_type_id": "88",
            "contacts": [{"id": ANN}],
            "ticket_attributes": {
                "_default_title_": "Heating not working",
                "_default_description_": "The heating stopped last night.\n\nPriority: urgent. Opened by phone (call CA9)."
            }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKET)))
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
                priority: TicketPriority::Urgent,
                external_ref: "CA9".into(),
            },
            "k",
        )
        .await
        .expect("created");
    assert_eq!(ticket.id, "494");
    assert_eq!(ticket.status, TicketStatus::New);
    assert_eq!(ticket.requester_id.as_deref(), Some(ANN));
    assert_eq!(ticket.subject.as_deref(), Some("Heating not working"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn open_tickets_are_searched_by_contact_newest_first() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tickets/search"))
        .and(body_json(json!({
            "query": {"operator": "AND", "value": [
                {"field": "contact_ids", "operator": "=", "value": ANN},
                {"field": "open", "operator": "=", "value": true}
            ]},
            "pagination": {"per_page": 10}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKETS_SEARCH)))
        .mount(&server)
        .await;
    let tickets = connector(&server)
        .open_tickets(&context(), &ann())
        .await
        .expect("searched");
    let ids: Vec<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["494", "480"]);
    assert_eq!(tickets[1].status, TicketStatus::WaitingOnCustomer);
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_comment_is_a_reply_on_behalf_of_the_contact() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tickets/494"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TICKET)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tickets/494/reply"))
        .and(body_json(json!({
            "message_type": "comment",
            "type": "user",
            "body": "It is making a noise now too.",
            "intercom_user_id": ANN
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(REPLY)))
        .expect(1)
        .mount(&server)
        .await;
    let desk = connector(&server);
    let ticket = desk.ticket(&context(), "494").await.expect("shown");
    assert_eq!(ticket.requester_id.as_deref(), Some(ANN));
    desk.add_comment(
        &context(),
        &ann(),
        "494",
        "It is making a noise now too.",
        "k",
    )
    .await
    .expect("replied");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_connector_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(ERROR_401)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/tickets"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture(ERROR_400)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tickets/999"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"type": "error.list", "errors": [{"code": "ticket_not_found", "message": "Ticket not found"}]})))
        .mount(&server)
        .await;
    let desk = connector(&server);
    let auth = desk.health_check(&context()).await.expect_err("refused");
    assert!(matches!(auth, ConnectorError::Auth(_)), "{auth:?}");
    let missing = desk.ticket(&context(), "999").await.expect_err("missing");
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
        ConnectorError::Rejected(detail) => {
            assert!(detail.contains("parameter_invalid"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn the_health_check_identifies_the_admin() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("authorization", AUTH))
        .and(header("intercom-version", "2.14"))
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

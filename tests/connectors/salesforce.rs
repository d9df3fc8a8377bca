//! Salesforce (CRM) against a 127.0.0.1 mock: SOQL lookups by phone (every stored form) and
//! email, Contact then Lead, escaped values, upsert, call tasks, booking events (moved,
//! cancelled), error mapping, the health check, and a build from an OAuth connection whose
//! instance URL is the API base; every request checked against Salesforce's published sObject spec
//! (the query resource from its reference page).

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::client::{Auth, TokenSource};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::kit::{BuildContext, Credentials, OAuthGrant};
use callbridge::connectors::salesforce::{
    API_VERSION, PersonKind, Salesforce, SalesforceConfig, VENDOR,
};
use callbridge::connectors::{
    CallNote, CallOutcome, ConnectorError, ContactInput, ContactLookup, Crm, CrmMeeting,
    MeetingChange,
};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The sObject spec (subset under `fixtures/vendor-specs/salesforce/`), plus the SOQL query
/// resource it lacks: REST API Developer Guide, "Query" (`GET /services/data/vXX.X/query/?q=`).
fn contract() -> Contract {
    Contract::load("salesforce", &["sobjects-v59.0.json"]).with_read(
        "/services/data/v59.0/query",
        &["authorization"],
        &["q"],
    )
}

fn context() -> RequestContext {
    RequestContext::new(
        "tenant-a",
        "call_1",
        Instant::now() + Duration::from_secs(5),
    )
}

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds")
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

const QUERY_CONTACT: &str = include_str!("../../fixtures/vendors/salesforce/query_contact.json");
const QUERY_LEAD: &str = include_str!("../../fixtures/vendors/salesforce/query_lead.json");
const QUERY_NONE: &str = include_str!("../../fixtures/vendors/salesforce/query_none.json");
const SAVE_CONTACT: &str = include_str!("../../fixtures/vendors/salesforce/save_contact.json");
const SAVE_TASK: &str = include_str!("../../fixtures/vendors/salesforce/save_task.json");
const SAVE_EVENT: &str = include_str!("../../fixtures/vendors/salesforce/save_event.json");
const ERROR_SESSION: &str = include_str!("../../fixtures/vendors/salesforce/error_session.json");
const ERROR_LIMIT: &str = include_str!("../../fixtures/vendors/salesforce/error_limit.json");
const ERROR_NOT_FOUND: &str =
    include_str!("../../fixtures/vendors/salesforce/error_not_found.json");
const DESCRIBE: &str = include_str!("../../fixtures/vendors/salesforce/describe_contact.json");
const AUTH: &str = "Bearer 00Dxx!sf-access-token";
const QUERY: &str = "/services/data/v59.0/query";
const CONTACT_ID: &str = "003R000000aBcDeFGH";

fn connector(server: &MockServer) -> Salesforce {
    connector_with(server, "1", PersonKind::Contact)
}

fn connector_with(server: &MockServer, country_code: &str, create_as: PersonKind) -> Salesforce {
    Salesforce::new(
        policy(),
        SalesforceConfig {
            instance_url: server.uri().parse().expect("url"),
            auth: Auth::Bearer(SecretString::from("00Dxx!sf-access-token")),
            country_code: country_code.into(),
            create_as,
            lead_company: "Not provided".into(),
        },
    )
}

fn soql(object: &str, condition: &str) -> String {
    let filter = if object == "Lead" {
        format!("IsConverted = false AND {condition}")
    } else {
        condition.to_owned()
    };
    format!(
        "SELECT Id, FirstName, LastName, Email, Phone, MobilePhone FROM {object} WHERE {filter} \
         ORDER BY LastModifiedDate DESC LIMIT 1"
    )
}

const US_PHONE: &str = "(Phone IN ('+14155550100', '4155550100', '(415) 555-0100') OR MobilePhone \
                        IN ('+14155550100', '4155550100', '(415) 555-0100'))";

async fn mount_query(server: &MockServer, q: &str, answer: &str) {
    Mock::given(method("GET"))
        .and(path(QUERY))
        .and(header("authorization", AUTH))
        .and(query_param("q", q))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(answer)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_api_version_is_pinned_once() {
    assert_eq!(API_VERSION, "v59.0");
    assert!(QUERY.contains(API_VERSION));
}

#[tokio::test]
async fn find_by_phone_matches_every_stored_form_of_a_contact() {
    let server = MockServer::start().await;
    mount_query(&server, &soql("Contact", US_PHONE), QUERY_CONTACT).await;
    let contact = connector(&server)
        .find_contact(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("query works")
        .expect("found");
    assert_eq!(contact.id, CONTACT_ID);
    assert_eq!(contact.first_name.as_deref(), Some("Rose"));
    assert_eq!(contact.phone.as_deref(), Some("(415) 555-0100"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_falls_back_to_an_open_lead() {
    let server = MockServer::start().await;
    let uk = "(Phone IN ('+442071838750', '02071838750') OR MobilePhone IN ('+442071838750', \
              '02071838750'))";
    mount_query(&server, &soql("Contact", uk), QUERY_NONE).await;
    mount_query(&server, &soql("Lead", uk), QUERY_LEAD).await;
    let lead = connector_with(&server, "44", PersonKind::Contact)
        .find_contact(&context(), &ContactLookup::Phone("+442071838750".into()))
        .await
        .expect("query works")
        .expect("found as a lead");
    assert_eq!(lead.id, "00QR000000xYzAbCDE");
    assert_eq!(lead.phone.as_deref(), Some("+442071838750"));
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_email_with_quotes_reaches_salesforce_escaped() {
    let server = MockServer::start().await;
    // The quote and backslash arrive escaped: the value cannot widen the query.
    let condition = r"Email = 'o\'brien\\x@example.com'";
    mount_query(&server, &soql("Contact", condition), QUERY_NONE).await;
    mount_query(&server, &soql("Lead", condition), QUERY_NONE).await;
    let found = connector(&server)
        .find_contact(
            &context(),
            &ContactLookup::Email(r"o'brien\x@example.com".into()),
        )
        .await
        .expect("query works");
    assert!(found.is_none());
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_updates_the_contact_found_by_email() {
    let server = MockServer::start().await;
    mount_query(
        &server,
        &soql("Contact", "Email = 'rose@edge.example'"),
        QUERY_CONTACT,
    )
    .await;
    Mock::given(method("PATCH"))
        .and(path(format!(
            "/services/data/v59.0/sobjects/Contact/{CONTACT_ID}"
        )))
        .and(header("authorization", AUTH))
        .and(body_json(
            json!({"LastName": "Gonzalez-Ruiz", "Email": "rose@edge.example"}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let contact = connector(&server)
        .upsert_contact(
            &context(),
            &ContactInput {
                last_name: Some("Gonzalez-Ruiz".into()),
                email: Some("rose@edge.example".into()),
                ..ContactInput::default()
            },
            "k1",
        )
        .await
        .expect("updated");
    assert_eq!(contact.id, CONTACT_ID);
    assert_eq!(contact.first_name.as_deref(), Some("Rose"));
    assert_eq!(contact.last_name.as_deref(), Some("Gonzalez-Ruiz"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_creates_a_contact_once_even_when_the_create_fails() {
    let server = MockServer::start().await;
    mount_query(&server, &soql("Contact", US_PHONE), QUERY_NONE).await;
    mount_query(&server, &soql("Lead", US_PHONE), QUERY_NONE).await;
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Contact"))
        .and(body_json(
            json!({"FirstName": "Ann", "LastName": "Lee", "Phone": "+14155550100"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(SAVE_CONTACT)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Contact"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let salesforce = connector(&server);
    let input = ContactInput {
        first_name: Some("Ann".into()),
        last_name: Some("Lee".into()),
        phone: Some("+14155550100".into()),
        email: None,
    };
    let created = salesforce
        .upsert_contact(&context(), &input, "k2")
        .await
        .expect("created");
    assert_eq!(created.id, "003R00000NewOneAAA");
    // A second create that fails is not replayed (no idempotency key at Salesforce).
    salesforce
        .upsert_contact(&context(), &input, "k3")
        .await
        .expect_err("503");
    let posts = server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 2, "one create each, never replayed");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_new_caller_can_become_a_lead_with_a_stand_in_last_name() {
    let server = MockServer::start().await;
    mount_query(
        &server,
        &soql("Contact", "Email = 'new@caller.example'"),
        QUERY_NONE,
    )
    .await;
    mount_query(
        &server,
        &soql("Lead", "Email = 'new@caller.example'"),
        QUERY_NONE,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Lead"))
        .and(body_json(json!({
            "LastName": "new@caller.example",
            "Email": "new@caller.example",
            "Company": "Not provided",
            "LeadSource": "Phone Inquiry"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(SAVE_CONTACT)))
        .expect(1)
        .mount(&server)
        .await;
    connector_with(&server, "1", PersonKind::Lead)
        .upsert_contact(
            &context(),
            &ContactInput {
                email: Some("new@caller.example".into()),
                ..ContactInput::default()
            },
            "k4",
        )
        .await
        .expect("lead created");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_call_is_logged_as_a_completed_call_task_with_duration_and_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Task"))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "WhoId": CONTACT_ID,
            "Subject": "Phone call",
            "Description": "Asked about opening hours; will visit Tuesday.",
            "Status": "Completed",
            "TaskSubtype": "Call",
            "ActivityDate": "2025-03-04",
            "CallDurationInSeconds": 95,
            "CallDisposition": "Connected",
            "CallType": "Outbound"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(SAVE_TASK)))
        .expect(1)
        .mount(&server)
        .await;
    let note = CallNote {
        body: "Asked about opening hours; will visit Tuesday.".into(),
        at: Utc
            .with_ymd_and_hms(2025, 3, 4, 15, 0, 0)
            .single()
            .expect("valid"),
        duration_secs: Some(95),
        outcome: Some(CallOutcome::Connected),
        inbound: Some(false),
    };
    let id = connector(&server)
        .log_call_note(&context(), CONTACT_ID, &note, "k5")
        .await
        .expect("logged");
    assert_eq!(id, "00TR00000TaskOneAA");
    // A contact id that is not a Salesforce id never reaches the vendor.
    let bad = connector(&server)
        .log_call_note(&context(), "003' OR Id != '", &note, "k6")
        .await
        .expect_err("refused");
    assert!(matches!(bad, ConnectorError::InvalidInput(_)), "{bad:?}");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_booking_is_an_event_that_follows_the_booking() {
    let server = MockServer::start().await;
    let start = Utc
        .with_ymd_and_hms(2025, 3, 4, 15, 0, 0)
        .single()
        .expect("valid");
    Mock::given(method("POST"))
        .and(path("/services/data/v59.0/sobjects/Event"))
        .and(body_json(json!({
            "WhoId": CONTACT_ID,
            "Subject": "Appointment: Rose Gonzalez",
            "StartDateTime": "2025-03-04T15:00:00.000Z",
            "EndDateTime": "2025-03-04T15:30:00.000Z",
            "Description": "Booked by phone. Booking reference: bk_1."
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(SAVE_EVENT)))
        .expect(1)
        .mount(&server)
        .await;
    let event_path = "/services/data/v59.0/sobjects/Event/00UR00000EventOneA";
    Mock::given(method("PATCH"))
        .and(path(event_path))
        .and(body_json(json!({
            "StartDateTime": "2025-03-05T09:00:00.000Z",
            "EndDateTime": "2025-03-05T09:30:00.000Z"
        })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(event_path))
        .and(body_json(
            json!({"Subject": "Cancelled by the caller", "ShowAs": "Free"}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(2)
        .mount(&server)
        .await;
    let salesforce = connector(&server);
    let id = salesforce
        .record_meeting(
            &context(),
            CONTACT_ID,
            &CrmMeeting {
                title: "Appointment: Rose Gonzalez".into(),
                start,
                end: start + chrono::Duration::minutes(30),
                body: "Booked by phone. Booking reference: bk_1.".into(),
            },
            "k7",
        )
        .await
        .expect("event created");
    assert_eq!(id, "00UR00000EventOneA");
    let moved = Utc
        .with_ymd_and_hms(2025, 3, 5, 9, 0, 0)
        .single()
        .expect("valid");
    salesforce
        .update_meeting(
            &context(),
            &id,
            &MeetingChange::Moved {
                start: moved,
                end: moved + chrono::Duration::minutes(30),
            },
        )
        .await
        .expect("moved");
    // Cancelling twice leaves the event as once.
    for _ in 0..2 {
        salesforce
            .update_meeting(&context(), &id, &MeetingChange::Cancelled)
            .await
            .expect("cancelled");
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_tool_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(QUERY))
        .and(query_param(
            "q",
            soql("Contact", "Email = 'expired@x.example'"),
        ))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(ERROR_SESSION)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(QUERY))
        .and(query_param(
            "q",
            soql("Contact", "Email = 'busy@x.example'"),
        ))
        .respond_with(ResponseTemplate::new(403).set_body_json(fixture(ERROR_LIMIT)))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(
            "/services/data/v59.0/sobjects/Event/00UR000000Missing1",
        ))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture(ERROR_NOT_FOUND)))
        .mount(&server)
        .await;
    let salesforce = connector(&server);
    let expired = salesforce
        .find_contact(
            &context(),
            &ContactLookup::Email("expired@x.example".into()),
        )
        .await
        .expect_err("401");
    assert!(matches!(expired, ConnectorError::Auth(_)), "{expired:?}");
    let busy = salesforce
        .find_contact(&context(), &ContactLookup::Email("busy@x.example".into()))
        .await
        .expect_err("limit");
    assert_eq!(busy.speakable(), "The system we use is busy right now.");
    let missing = salesforce
        .update_meeting(&context(), "00UR000000Missing1", &MeetingChange::Cancelled)
        .await
        .expect_err("404");
    assert!(
        matches!(missing, ConnectorError::NotFound(_)),
        "{missing:?}"
    );
    contract().assert_valid(&server).await;
}

/// A connection's token, as the OAuth service's token source hands it over.
struct ConnectionToken;

#[async_trait::async_trait]
impl TokenSource for ConnectionToken {
    async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        Ok(SecretString::from("00Dxx!sf-access-token"))
    }

    async fn refresh(
        &self,
        _ctx: &RequestContext,
        _rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError> {
        Err(ConnectorError::Auth("no refresh in this test".into()))
    }
}

fn build(
    secret: &str,
    base_url: Option<&str>,
    oauth: Option<OAuthGrant>,
) -> Result<callbridge::connectors::kit::Built, callbridge::connectors::kit::BuildFailure> {
    let credentials = Credentials::parse(&SecretString::from(secret.to_owned()))?;
    credentials.validate(&VENDOR.secret)?;
    (VENDOR.build)(BuildContext {
        vendor: &VENDOR,
        base_url,
        credentials,
        policy: policy(),
        oauth,
    })
}

#[tokio::test]
async fn the_connection_instance_url_is_the_api_base() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/services/data/v59.0/sobjects/Contact"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DESCRIBE)))
        .expect(1)
        .mount(&server)
        .await;
    let grant = OAuthGrant {
        tokens: Arc::new(ConnectionToken),
        api_base: Some(format!("{}/", server.uri())),
    };
    let built = build("{}", None, Some(grant)).expect("builds from the connection");
    built
        .crm
        .expect("serves crm")
        .health_check(&context())
        .await
        .expect("healthy");
    contract().assert_valid(&server).await;
}

#[test]
fn a_secret_needs_a_token_and_an_https_instance() {
    let ok = build(
        r#"{"access_token": "t", "instance_url": "https://acme.my.salesforce.com"}"#,
        None,
        None,
    );
    assert!(ok.is_ok_and(|b| b.crm.is_some()));
    let plain = build(
        r#"{"access_token": "t", "instance_url": "http://acme.my.salesforce.com"}"#,
        None,
        None,
    );
    assert!(plain.is_err(), "http instance refused");
    let nowhere = build(r#"{"access_token": "t"}"#, None, None);
    assert!(
        matches!(&nowhere, Err(f) if f.to_string().contains("instance_url")),
        "no instance: says where to set it"
    );
    let no_token = build(
        r#"{"instance_url": "https://acme.my.salesforce.com"}"#,
        None,
        None,
    );
    assert!(no_token.is_err(), "no token, no connection");
    let bad_kind = build(
        r#"{"access_token": "t", "instance_url": "https://acme.my.salesforce.com", "create_as": "account"}"#,
        None,
        None,
    );
    assert!(bad_kind.is_err());
}

const QUERY_OPPORTUNITIES: &str =
    include_str!("../../fixtures/vendors/salesforce/query_opportunities.json");
const QUERY_STAGES: &str = include_str!("../../fixtures/vendors/salesforce/query_stages.json");
const STAGES_SOQL: &str =
    "SELECT ApiName, MasterLabel FROM OpportunityStage WHERE IsActive = true ORDER BY SortOrder";

fn open_opportunities_soql() -> String {
    format!(
        "SELECT Id, Name, StageName, Amount, CloseDate FROM Opportunity WHERE IsClosed = false AND \
         (ContactId = '{CONTACT_ID}' OR Id IN (SELECT OpportunityId FROM OpportunityContactRole \
         WHERE ContactId = '{CONTACT_ID}')) ORDER BY LastModifiedDate DESC LIMIT 10"
    )
}

#[tokio::test]
async fn update_deal_moves_the_callers_opportunity_to_a_pipeline_stage() {
    use callbridge::connectors::DealUpdate;
    let server = MockServer::start().await;
    mount_query(&server, &open_opportunities_soql(), QUERY_OPPORTUNITIES).await;
    mount_query(&server, STAGES_SOQL, QUERY_STAGES).await;
    Mock::given(method("PATCH"))
        .and(path(
            "/services/data/v59.0/sobjects/Opportunity/006R000000OppOneAA",
        ))
        .and(body_json(json!({
            "StageName": "Negotiation/Review",
            "Amount": 42000.5,
            "CloseDate": "2025-05-15",
            "NextStep": "Send the revised quote"
        })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let salesforce = connector(&server);
    assert!(salesforce.serves_deals());
    let deal = salesforce
        .update_deal(
            &context(),
            CONTACT_ID,
            None,
            &DealUpdate {
                stage: Some("negotiation/review".into()),
                amount: Some("42000.50".into()),
                close_date: chrono::NaiveDate::from_ymd_opt(2025, 5, 15),
                next_step: Some("Send the revised quote".into()),
            },
        )
        .await
        .expect("moved");
    assert_eq!(deal.id, "006R000000OppOneAA");
    assert_eq!(deal.name, "Edge Emergency Generator");
    assert_eq!(deal.stage.as_deref(), Some("Negotiation/Review"));

    // A stage the pipeline does not have is refused, naming the stages; nothing is written.
    let unknown = salesforce
        .update_deal(
            &context(),
            CONTACT_ID,
            None,
            &DealUpdate {
                stage: Some("Won".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("no such stage");
    assert!(
        matches!(&unknown, ConnectorError::InvalidInput(m) if m.contains("\"Closed Won\"")),
        "{unknown:?}"
    );
    // A lead has no deals.
    let lead = salesforce
        .update_deal(
            &context(),
            "00QR000000xYzAbCDE",
            None,
            &DealUpdate {
                next_step: Some("x".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("lead");
    assert!(matches!(lead, ConnectorError::NotFound(_)), "{lead:?}");
    contract().assert_valid(&server).await;
}

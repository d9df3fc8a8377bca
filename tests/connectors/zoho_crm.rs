//! Zoho CRM (v8) against a 127.0.0.1 mock: search by phone (criteria over every stored form,
//! escaped) and email, Contacts then Leads, upsert, notes on contacts and leads, booking events
//! (moved, cancelled), record-level and HTTP error mapping, the health check, and the data
//! centre's API domain taken from the OAuth connection; every request checked against Zoho's
//! published v8 spec.

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::client::{Auth, TokenSource};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::kit::{BuildContext, Credentials, OAuthGrant};
use callbridge::connectors::zoho_crm::{VENDOR, ZohoCrm, ZohoCrmConfig};
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

/// Zoho's v8 record and user specs (subset under `fixtures/vendor-specs/zoho_crm/`). Create Notes
/// is written from its reference page (Zoho CRM API v8, "Create Notes": `data[]` with
/// `Note_Content` and `Parent_Id {module {api_name}, id}`): the held `notes.json` marks every
/// response field (`Created_Time`, `Owner`, `$size`, …) required in the request too, which no
/// create could send. `users.json` and `fields.json` come first: their literal paths
/// (`/crm/v8/users`, `/crm/v8/settings/fields`) must win over `record.json`'s templates.
fn contract() -> Contract {
    Contract::load(
        "zoho_crm",
        &[
            "users.json",
            "fields.json",
            "related_records.json",
            "record.json",
        ],
    )
    .with_operation(
        "POST",
        "/crm/v8/Notes",
        &["authorization"],
        json!({
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "required": ["Note_Content", "Parent_Id"],
                        "properties": {
                            "Note_Title": {"type": "string"},
                            "Note_Content": {"type": "string"},
                            "Parent_Id": {
                                "type": "object",
                                "required": ["module", "id"],
                                "properties": {
                                    "module": {
                                        "type": "object",
                                        "required": ["api_name"],
                                        "properties": {"api_name": {"type": "string"}}
                                    },
                                    "id": {"type": "string"}
                                }
                            }
                        }
                    }
                }
            }
        }),
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

const SEARCH_CONTACT: &str = include_str!("../../fixtures/vendors/zoho_crm/search_contact.json");
const SEARCH_LEAD: &str = include_str!("../../fixtures/vendors/zoho_crm/search_lead.json");
const WRITE_SUCCESS: &str = include_str!("../../fixtures/vendors/zoho_crm/write_success.json");
const WRITE_DUPLICATE: &str = include_str!("../../fixtures/vendors/zoho_crm/write_duplicate.json");
const INVALID_TOKEN: &str =
    include_str!("../../fixtures/vendors/zoho_crm/error_invalid_token.json");
const TOO_MANY: &str = include_str!("../../fixtures/vendors/zoho_crm/error_too_many.json");
const CURRENT_USER: &str = include_str!("../../fixtures/vendors/zoho_crm/current_user.json");
const AUTH: &str = "Bearer 1000.zoho-access-token";
const CONTACT_ID: &str = "3477061000000419001";
const LEAD_ID: &str = "3477061000000419002";
const WRITTEN_ID: &str = "3477061000000500001";
const US_CRITERIA: &str = "(Phone:equals:+14155550100)or(Phone:equals:4155550100)or\
                           (Phone:equals:\\(415\\) 555-0100)or(Mobile:equals:+14155550100)or\
                           (Mobile:equals:4155550100)or(Mobile:equals:\\(415\\) 555-0100)";

fn connector(server: &MockServer) -> ZohoCrm {
    connector_with(server, "1")
}

fn connector_with(server: &MockServer, country_code: &str) -> ZohoCrm {
    ZohoCrm::new(
        policy(),
        ZohoCrmConfig {
            api_domain: server.uri().parse().expect("url"),
            auth: Auth::Bearer(SecretString::from("1000.zoho-access-token")),
            country_code: country_code.into(),
        },
    )
}

async fn mount_search(server: &MockServer, module: &str, name: &str, value: &str, answer: &str) {
    let template = if answer.is_empty() {
        ResponseTemplate::new(204)
    } else {
        ResponseTemplate::new(200).set_body_json(fixture(answer))
    };
    Mock::given(method("GET"))
        .and(path(format!("/crm/v8/{module}/search")))
        .and(header("authorization", AUTH))
        .and(query_param(name, value))
        .respond_with(template)
        .mount(server)
        .await;
}

#[tokio::test]
async fn find_by_phone_searches_every_stored_form() {
    let server = MockServer::start().await;
    mount_search(&server, "Contacts", "criteria", US_CRITERIA, SEARCH_CONTACT).await;
    let contact = connector(&server)
        .find_contact(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("search works")
        .expect("found");
    assert_eq!(contact.id, CONTACT_ID);
    assert_eq!(contact.first_name.as_deref(), Some("Theodore"));
    assert_eq!(contact.phone.as_deref(), Some("(415) 555-0100"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_falls_back_to_an_unconverted_lead() {
    let server = MockServer::start().await;
    let uk = "(Phone:equals:+442071838750)or(Phone:equals:02071838750)or\
              (Mobile:equals:+442071838750)or(Mobile:equals:02071838750)";
    mount_search(&server, "Contacts", "criteria", uk, "").await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/Leads/search"))
        .and(query_param("criteria", uk))
        .and(query_param("converted", "false"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(SEARCH_LEAD)))
        .mount(&server)
        .await;
    let lead = connector_with(&server, "44")
        .find_contact(&context(), &ContactLookup::Phone("+442071838750".into()))
        .await
        .expect("search works")
        .expect("found as a lead");
    assert_eq!(lead.id, format!("lead:{LEAD_ID}"));
    assert_eq!(lead.phone.as_deref(), Some("+442071838750"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn find_by_email_with_no_match_is_none() {
    let server = MockServer::start().await;
    mount_search(&server, "Contacts", "email", "nobody@zylker.example", "").await;
    mount_search(&server, "Leads", "email", "nobody@zylker.example", "").await;
    let found = connector(&server)
        .find_contact(
            &context(),
            &ContactLookup::Email("nobody@zylker.example".into()),
        )
        .await
        .expect("search works");
    assert!(found.is_none());
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_updates_the_record_found_by_email() {
    let server = MockServer::start().await;
    mount_search(
        &server,
        "Contacts",
        "email",
        "theodore@zylker.example",
        SEARCH_CONTACT,
    )
    .await;
    Mock::given(method("PUT"))
        .and(path(format!("/crm/v8/Contacts/{CONTACT_ID}")))
        .and(header("authorization", AUTH))
        .and(body_json(json!({
            "data": [{"First_Name": "Ted", "Email": "theodore@zylker.example"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(WRITE_SUCCESS)))
        .expect(1)
        .mount(&server)
        .await;
    let contact = connector(&server)
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("Ted".into()),
                email: Some("theodore@zylker.example".into()),
                ..ContactInput::default()
            },
            "k1",
        )
        .await
        .expect("updated");
    assert_eq!(contact.id, CONTACT_ID);
    assert_eq!(contact.first_name.as_deref(), Some("Ted"));
    assert_eq!(contact.last_name.as_deref(), Some("Ray"));
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn a_new_caller_is_upserted_keyed_by_phone_and_a_refusal_is_clear() {
    let server = MockServer::start().await;
    mount_search(&server, "Contacts", "criteria", US_CRITERIA, "").await;
    mount_search(&server, "Leads", "criteria", US_CRITERIA, "").await;
    Mock::given(method("POST"))
        .and(path("/crm/v8/Contacts/upsert"))
        .and(body_json(json!({
            "data": [{"Last_Name": "Ann", "Phone": "+14155550100"}],
            "duplicate_check_fields": ["Phone"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(WRITE_SUCCESS)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v8/Contacts/upsert"))
        .respond_with(ResponseTemplate::new(202).set_body_json(fixture(WRITE_DUPLICATE)))
        .mount(&server)
        .await;
    let zoho = connector(&server);
    let input = ContactInput {
        first_name: Some("Ann".into()),
        phone: Some("+14155550100".into()),
        ..ContactInput::default()
    };
    let created = zoho
        .upsert_contact(&context(), &input, "k2")
        .await
        .expect("created");
    assert_eq!(created.id, WRITTEN_ID);
    let refused = zoho
        .upsert_contact(&context(), &input, "k3")
        .await
        .expect_err("record-level error");
    assert!(
        matches!(&refused, ConnectorError::Rejected(m) if m.contains("DUPLICATE_DATA")),
        "{refused:?}"
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn calls_are_logged_on_contacts_and_leads_with_duration_and_result() {
    let server = MockServer::start().await;
    // A contact is the call's Who_Id; a lead is its "related to" record.
    let links = [
        ("Who_Id", json!({"id": CONTACT_ID}), None),
        ("What_Id", json!({"id": LEAD_ID}), Some("Leads")),
    ];
    for (field, link, se_module) in links {
        let mut record = json!({
            "Subject": "Phone call",
            "Call_Type": "Outbound",
            "Call_Start_Time": "2025-03-04T15:00:00+00:00",
            "Description": "Wants a quote for 20 seats.",
            "Call_Duration": "02:05",
            "Call_Result": "Busy",
        });
        record[field] = link;
        if let Some(module) = se_module {
            record["$se_module"] = json!(module);
        }
        Mock::given(method("POST"))
            .and(path("/crm/v8/Calls"))
            .and(header("authorization", AUTH))
            .and(body_json(json!({ "data": [record] })))
            .respond_with(ResponseTemplate::new(201).set_body_json(fixture(WRITE_SUCCESS)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let note = CallNote {
        body: "Wants a quote for 20 seats.".into(),
        at: Utc
            .with_ymd_and_hms(2025, 3, 4, 15, 0, 0)
            .single()
            .expect("valid"),
        duration_secs: Some(125),
        outcome: Some(CallOutcome::Busy),
        inbound: Some(false),
    };
    let zoho = connector(&server);
    for contact_id in [CONTACT_ID.to_owned(), format!("lead:{LEAD_ID}")] {
        let id = zoho
            .log_call_note(&context(), &contact_id, &note, "k4")
            .await
            .expect("noted");
        assert_eq!(id, WRITTEN_ID);
    }
    let bad = zoho
        .log_call_note(&context(), "lead:1 or 1", &note, "k5")
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
        .and(path("/crm/v8/Events"))
        .and(body_json(json!({
            "data": [{
                "Event_Title": "Appointment: Kris Marrier",
                "Start_DateTime": "2025-03-04T15:00:00+00:00",
                "End_DateTime": "2025-03-04T15:30:00+00:00",
                "Description": "Booked by phone. Booking reference: bk_1.",
                "What_Id": {"id": LEAD_ID},
                "$se_module": "Leads"
            }]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture(WRITE_SUCCESS)))
        .expect(1)
        .mount(&server)
        .await;
    let event_path = format!("/crm/v8/Events/{WRITTEN_ID}");
    Mock::given(method("PUT"))
        .and(path(event_path.as_str()))
        .and(body_json(json!({"data": [{
            "Start_DateTime": "2025-03-05T09:00:00+00:00",
            "End_DateTime": "2025-03-05T09:30:00+00:00"
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(WRITE_SUCCESS)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(event_path.as_str()))
        .and(body_json(
            json!({"data": [{"Event_Title": "Cancelled by the caller"}]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(WRITE_SUCCESS)))
        .expect(1)
        .mount(&server)
        .await;
    let zoho = connector(&server);
    let id = zoho
        .record_meeting(
            &context(),
            &format!("lead:{LEAD_ID}"),
            &CrmMeeting {
                title: "Appointment: Kris Marrier".into(),
                start,
                end: start + chrono::Duration::minutes(30),
                body: "Booked by phone. Booking reference: bk_1.".into(),
            },
            "k6",
        )
        .await
        .expect("event created");
    assert_eq!(id, WRITTEN_ID);
    let moved = Utc
        .with_ymd_and_hms(2025, 3, 5, 9, 0, 0)
        .single()
        .expect("valid");
    zoho.update_meeting(
        &context(),
        &id,
        &MeetingChange::Moved {
            start: moved,
            end: moved + chrono::Duration::minutes(30),
        },
    )
    .await
    .expect("moved");
    zoho.update_meeting(&context(), &id, &MeetingChange::Cancelled)
        .await
        .expect("cancelled");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn vendor_errors_become_clear_tool_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/Contacts/search"))
        .and(query_param("email", "expired@zylker.example"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture(INVALID_TOKEN)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/Contacts/search"))
        .and(query_param("email", "busy@zylker.example"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(fixture(TOO_MANY)),
        )
        .mount(&server)
        .await;
    let zoho = connector(&server);
    let expired = zoho
        .find_contact(
            &context(),
            &ContactLookup::Email("expired@zylker.example".into()),
        )
        .await
        .expect_err("401");
    assert!(matches!(expired, ConnectorError::Auth(_)), "{expired:?}");
    let busy = zoho
        .find_contact(
            &context(),
            &ContactLookup::Email("busy@zylker.example".into()),
        )
        .await
        .expect_err("429");
    assert_eq!(busy.speakable(), "The system we use is busy right now.");
    contract().assert_valid(&server).await;
}

/// A connection's token, as the OAuth service's token source hands it over.
struct ConnectionToken;

#[async_trait::async_trait]
impl TokenSource for ConnectionToken {
    async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        Ok(SecretString::from("1000.zoho-access-token"))
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
    oauth: Option<OAuthGrant>,
) -> Result<callbridge::connectors::kit::Built, callbridge::connectors::kit::BuildFailure> {
    let credentials = Credentials::parse(&SecretString::from(secret.to_owned()))?;
    credentials.validate(&VENDOR.secret)?;
    (VENDOR.build)(BuildContext {
        vendor: &VENDOR,
        base_url: None,
        credentials,
        policy: policy(),
        oauth,
    })
}

#[tokio::test]
async fn the_connection_api_domain_is_the_data_centre() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/users"))
        .and(query_param("type", "CurrentUser"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CURRENT_USER)))
        .expect(1)
        .mount(&server)
        .await;
    let grant = OAuthGrant {
        tokens: Arc::new(ConnectionToken),
        api_base: Some(format!("{}/", server.uri())),
    };
    build("{}", Some(grant))
        .expect("builds from the connection")
        .crm
        .expect("serves crm")
        .health_check(&context())
        .await
        .expect("healthy");
    contract().assert_valid(&server).await;
}

#[test]
fn a_secret_api_domain_must_be_a_zoho_data_centre() {
    assert!(
        build(
            r#"{"access_token": "t", "api_domain": "https://www.zohoapis.eu"}"#,
            None
        )
        .is_ok()
    );
    assert!(
        build("1000.bare-token", None).is_ok(),
        "US data centre by default"
    );
    let elsewhere = build(
        r#"{"access_token": "t", "api_domain": "https://zohoapis.attacker.example"}"#,
        None,
    );
    assert!(
        matches!(&elsewhere, Err(f) if f.to_string().contains("Zoho API domain")),
        "refused"
    );
    assert!(build(r#"{"api_domain": "https://www.zohoapis.eu"}"#, None).is_err());
}

const DEAL_FIELDS: &str = include_str!("../../fixtures/vendors/zoho_crm/deal_fields.json");
const CONTACT_DEALS: &str = include_str!("../../fixtures/vendors/zoho_crm/contact_deals.json");

/// `update_deal` on Zoho: the contact's only open deal (a closed one is skipped by its stage's
/// forecast type) moves to a Stage pick-list value; a stage not in the pick list is refused.
#[tokio::test]
async fn update_deal_moves_the_contacts_open_deal() {
    use callbridge::connectors::DealUpdate;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v8/settings/fields"))
        .and(query_param("module", "Deals"))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(DEAL_FIELDS)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/crm/v8/Contacts/{CONTACT_ID}/Deals")))
        .and(query_param("fields", "Deal_Name,Stage,Amount,Closing_Date"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACT_DEALS)))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/crm/v8/Deals/3477061000000600001"))
        .and(body_json(json!({"data": [{
            "Stage": "Negotiation/Review",
            "Closing_Date": "2025-06-15",
            "Next_Step": "Legal review"
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(WRITE_SUCCESS)))
        .expect(1)
        .mount(&server)
        .await;
    let zoho = connector(&server);
    assert!(zoho.serves_deals());
    let deal = zoho
        .update_deal(
            &context(),
            CONTACT_ID,
            None,
            &DealUpdate {
                stage: Some("Negotiation/Review".into()),
                close_date: chrono::NaiveDate::from_ymd_opt(2025, 6, 15),
                next_step: Some("Legal review".into()),
                amount: None,
            },
        )
        .await
        .expect("moved");
    assert_eq!(deal.name, "Zylker 40 seats");
    assert_eq!(deal.amount.as_deref(), Some("12000"));
    let unknown = zoho
        .update_deal(
            &context(),
            CONTACT_ID,
            None,
            &DealUpdate {
                stage: Some("Proposal".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("no such stage");
    assert!(
        matches!(&unknown, ConnectorError::InvalidInput(m) if m.contains("\"Closed Lost\"")),
        "{unknown:?}"
    );
    let lead = zoho
        .update_deal(
            &context(),
            &format!("lead:{LEAD_ID}"),
            None,
            &DealUpdate {
                next_step: Some("x".into()),
                ..DealUpdate::default()
            },
        )
        .await
        .expect_err("a lead has no deals");
    assert!(matches!(lead, ConnectorError::NotFound(_)), "{lead:?}");
    contract().assert_valid(&server).await;
}

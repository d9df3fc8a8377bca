//! Google Sheets as a CRM end to end against a local mock of the Sheets API (values get, append,
//! update) and Google's token endpoint; every request checked against the discovery document's
//! methods (`fixtures/vendor-specs/google-sheets/`, written by `scripts/discovery-to-swagger2.py`).
//! Canned answers in `fixtures/vendors/google-sheets/`.

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::google_sheets::{GoogleSheets, GoogleSheetsConfig, VENDOR};
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::kit::{BuildContext, BuildFailure, Credentials};
use callbridge::connectors::oauth::{OAuthCredentials, OAuthTokenSource};
use callbridge::connectors::{
    CallNote, CallOutcome, ConnectorError, ContactInput, ContactLookup, Crm, CrmMeeting,
    MeetingChange,
};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const CONTACTS: &str = include_str!("../../fixtures/vendors/google-sheets/contacts.json");
const APPEND: &str = include_str!("../../fixtures/vendors/google-sheets/append.json");
const UPDATE: &str = include_str!("../../fixtures/vendors/google-sheets/update.json");
const TOKEN: &str = include_str!("../../fixtures/vendors/google-sheets/token.json");
const BEARER: &str = "Bearer ya29.a0-sheets-access-token";

fn contract() -> Contract {
    Contract::load("google-sheets", &["sheets.v4.swagger2.json"]).ignoring("/token")
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
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

async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(TOKEN)))
        .mount(&server)
        .await;
    server
}

fn connector(server: &MockServer) -> GoogleSheets {
    let policy = policy();
    let tokens = OAuthTokenSource::new(
        policy.clone(),
        OAuthCredentials {
            token_url: format!("{}/token", server.uri()).parse().expect("url"),
            client_id: "client-123".into(),
            client_secret: SecretString::from("client-secret"),
            refresh_token: SecretString::from("1//refresh-secret"),
        },
        "google_sheets",
    );
    let config = GoogleSheetsConfig::new(
        format!("{}/v4/", server.uri()).parse().expect("url"),
        "sheet-1",
    );
    GoogleSheets::new(policy, config, Arc::new(tokens))
}

async fn mount_contacts(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v4/spreadsheets/sheet-1/values/Contacts!A1:Z5001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(CONTACTS)))
        .mount(server)
        .await;
}

fn api_requests(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.url.path() != "/token")
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn finds_a_caller_by_phone_or_email_in_the_contacts_tab() {
    let server = server().await;
    mount_contacts(&server).await;
    let sheets = connector(&server);

    let ann = sheets
        .find_contact(&context(), &ContactLookup::Phone("+4915112345678".into()))
        .await
        .expect("lookup")
        .expect("Ann is in the sheet");
    assert_eq!(ann.id, "row:3");
    assert_eq!(ann.first_name.as_deref(), Some("Ann"));
    assert_eq!(ann.last_name.as_deref(), Some("Lee"));
    let by_email = sheets
        .find_contact(
            &context(),
            &ContactLookup::Email("ann.lee@EXAMPLE.com".into()),
        )
        .await
        .expect("lookup");
    assert_eq!(by_email.map(|c| c.id).as_deref(), Some("row:3"));
    let nobody = sheets
        .find_contact(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect("lookup");
    assert!(nobody.is_none());

    let requests = server.received_requests().await.expect("recorded");
    for request in api_requests(&requests) {
        assert_eq!(request.headers["authorization"], BEARER);
        assert_eq!(
            query(request, "valueRenderOption").as_deref(),
            Some("UNFORMATTED_VALUE")
        );
    }
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn upsert_updates_the_matching_row_in_place_or_appends_raw_values() {
    let server = server().await;
    mount_contacts(&server).await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/v4/spreadsheets/sheet-1/values/Contacts!A3$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(UPDATE)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/Contacts!A1:append$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(APPEND)))
        .expect(1)
        .mount(&server)
        .await;
    let sheets = connector(&server);

    let updated = sheets
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("Annie".into()),
                last_name: None,
                email: Some("ann.lee@example.com".into()),
                phone: None,
            },
            "key-1",
        )
        .await
        .expect("update");
    assert_eq!(updated.id, "row:3");
    assert_eq!(updated.first_name.as_deref(), Some("Annie"));

    // A new caller whose name looks like a formula: appended as text (RAW), never evaluated.
    let created = sheets
        .upsert_contact(
            &context(),
            &ContactInput {
                first_name: Some("=IMPORTXML(\"http://x\")".into()),
                last_name: Some("Doe".into()),
                email: None,
                phone: Some("+14155550100".into()),
            },
            "key-2",
        )
        .await
        .expect("append");
    assert_eq!(created.id, "row:6");

    let requests = server.received_requests().await.expect("recorded");
    let put = requests
        .iter()
        .find(|r| r.method.as_str() == "PUT")
        .expect("the update");
    assert_eq!(query(put, "valueInputOption").as_deref(), Some("RAW"));
    assert_eq!(
        body(put)["values"],
        json!([[
            "Annie",
            "Lee",
            "ann.lee@example.com",
            "+49 151 12345678",
            "VIP"
        ]]),
        "other columns are kept"
    );
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() != "/token")
        .expect("the append");
    assert_eq!(query(post, "valueInputOption").as_deref(), Some("RAW"));
    assert_eq!(
        query(post, "insertDataOption").as_deref(),
        Some("INSERT_ROWS")
    );
    assert_eq!(
        body(post)["values"],
        json!([["=IMPORTXML(\"http://x\")", "Doe", "", "+14155550100"]])
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn notes_and_meetings_go_to_their_tabs_and_meetings_are_updated_in_place() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/'Call%20notes'!A1:append$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "sheet-1",
            "updates": {"spreadsheetId": "sheet-1", "updatedRange": "'Call notes'!A9:F9"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/Meetings!A1:append$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "sheet-1",
            "updates": {"spreadsheetId": "sheet-1", "updatedRange": "Meetings!A4:G4"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/Meetings!(B4:D4|D4)$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(UPDATE)))
        .expect(2)
        .mount(&server)
        .await;
    let sheets = connector(&server);
    let ctx = context();

    let note = sheets
        .log_call_note(
            &ctx,
            "row:3",
            &CallNote {
                body: "Asked about whitening".into(),
                at: at("2026-12-03T10:00:00Z"),
                duration_secs: Some(95),
                outcome: Some(CallOutcome::Connected),
                inbound: Some(true),
            },
            "note-key",
        )
        .await
        .expect("note");
    assert_eq!(note, "'Call notes'!A9:F9");
    let meeting = sheets
        .record_meeting(
            &ctx,
            "row:3",
            &CrmMeeting {
                title: "Cleaning".into(),
                start: at("2026-12-04T09:00:00Z"),
                end: at("2026-12-04T09:30:00Z"),
                body: "Thu 10:00, booking b-1".into(),
            },
            "booking-key",
        )
        .await
        .expect("meeting");
    assert_eq!(meeting, "Meetings!A4:G4");
    sheets
        .update_meeting(
            &ctx,
            &meeting,
            &MeetingChange::Moved {
                start: at("2026-12-05T09:00:00Z"),
                end: at("2026-12-05T09:30:00Z"),
            },
        )
        .await
        .expect("moved");
    sheets
        .update_meeting(&ctx, &meeting, &MeetingChange::Cancelled)
        .await
        .expect("cancelled");
    // Ids that are not rows of this sheet's tabs are refused before any request.
    for bad in ["Contacts!A4:G4", "Meetings!A:G", "x"] {
        let err = sheets
            .update_meeting(&ctx, bad, &MeetingChange::Cancelled)
            .await
            .expect_err("not a meeting row");
        assert!(
            matches!(err, ConnectorError::InvalidInput(_)),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        sheets
            .log_call_note(
                &ctx,
                "42",
                &CallNote {
                    body: "x".into(),
                    at: at("2026-12-03T10:00:00Z"),
                    duration_secs: None,
                    outcome: None,
                    inbound: None,
                },
                "k"
            )
            .await,
        Err(ConnectorError::InvalidInput(_))
    ));

    let requests = server.received_requests().await.expect("recorded");
    let note_row = requests
        .iter()
        .find(|r| r.url.path().contains("Call%20notes"))
        .map(body)
        .expect("note request");
    // Columns: time, contact, note, key, duration in seconds, outcome.
    assert_eq!(
        note_row["values"],
        json!([[
            "2026-12-03T10:00:00Z",
            "row:3",
            "Asked about whitening",
            "note-key",
            "95",
            "Connected"
        ]])
    );
    let moved = requests
        .iter()
        .find(|r| r.url.path().ends_with("B4:D4"))
        .map(body)
        .expect("move");
    assert_eq!(
        moved["values"],
        json!([["2026-12-05T09:00:00Z", "2026-12-05T09:30:00Z", "scheduled"]])
    );
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn an_append_is_never_sent_twice_and_errors_are_precise() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v4/spreadsheets/sheet-1/values/.*:append$"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/v4/spreadsheets/sheet-1/values/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "range": "Contacts!A1:Z5001",
            "majorDimension": "ROWS",
            "values": [["Name", "Company"]]
        })))
        .mount(&server)
        .await;
    let sheets = connector(&server);
    let err = sheets
        .log_call_note(
            &context(),
            "row:2",
            &CallNote {
                body: "x".into(),
                at: at("2026-12-03T10:00:00Z"),
                duration_secs: None,
                outcome: None,
                inbound: None,
            },
            "k",
        )
        .await
        .expect_err("503");
    assert!(!matches!(err, ConnectorError::InvalidInput(_)), "{err}");
    // A contacts tab without an email or phone column is a configuration error, named.
    let err = sheets
        .find_contact(&context(), &ContactLookup::Phone("+14155550100".into()))
        .await
        .expect_err("no columns");
    assert!(
        matches!(&err, ConnectorError::Config(m) if m.contains("Contacts")),
        "{err}"
    );
    contract().assert_valid(&server).await;
}

#[test]
fn build_needs_a_spreadsheet_and_plain_tab_names() {
    let build = |secret: Value| {
        (VENDOR.build)(BuildContext {
            vendor: &VENDOR,
            base_url: None,
            credentials: Credentials::parse(&SecretString::from(secret.to_string()))
                .expect("parse"),
            policy: policy(),
            oauth: None,
        })
    };
    let refresh = json!({"client_id": "c", "client_secret": "s", "refresh_token": "r"});
    let mut secret = refresh.clone();
    assert!(matches!(
        build(secret.clone()),
        Err(BuildFailure::Missing(field)) if field == "spreadsheet_id"
    ));
    secret["spreadsheet_id"] = json!("1AbC-d_9");
    let built = build(secret.clone()).expect("builds");
    assert!(built.crm.is_some());
    secret["notes_sheet"] = json!("Notes!A1");
    assert!(
        matches!(build(secret.clone()), Err(BuildFailure::Config(m)) if m.contains("notes_sheet"))
    );
    let mut secret = refresh;
    secret["spreadsheet_id"] = json!("../other");
    assert!(matches!(build(secret), Err(BuildFailure::Config(_))));
}

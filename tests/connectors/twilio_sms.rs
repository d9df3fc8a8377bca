//! Twilio SMS end to end against a 127.0.0.1 mock of `CreateMessage`: the form is checked against
//! the operation's form schema in Twilio's spec (`fixtures/vendor-specs/twilio_sms/`), the answer
//! is shaped like the spec's Message resource, and Twilio's error bodies map to their meaning.

use std::time::Duration;

use callbridge::connectors::ConnectorError;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::messages::{Message, Messenger};
use callbridge::connectors::twilio_sms::{Sender, TwilioSms};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::fake_twilio_rest::OperationSchema;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";

fn spec() -> Value {
    let text = std::fs::read_to_string(
        callbridge_testkit::contract::specs_dir().join("twilio_sms/api_v2010_messages.json"),
    )
    .expect("spec");
    serde_json::from_str(&text).expect("JSON")
}

fn sms(server: &MockServer, sender: Sender) -> TwilioSms {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    TwilioSms::new(
        policy,
        server.uri().parse().expect("url"),
        ACCOUNT,
        SecretString::from("auth-token"),
        sender,
    )
    .expect("built")
}

fn context() -> RequestContext {
    RequestContext::new("t1", "call_1", Instant::now() + Duration::from_secs(5))
}

fn message() -> Message {
    Message {
        to: "+1 415 555 2671".into(),
        from: Some("+14155550100".into()),
        subject: None,
        text: "Your appointment is on Tuesday at 10:00.".into(),
        template: None,
    }
}

/// Every request the mock got is a valid `CreateMessage` form.
async fn assert_forms_valid(server: &MockServer) -> Vec<Vec<(String, String)>> {
    let schema = OperationSchema::from_spec(&spec(), MESSAGES_PATH).expect("schema");
    let requests = server.received_requests().await.expect("recorded");
    assert!(!requests.is_empty(), "no request reached the mock");
    requests
        .iter()
        .map(|request| {
            let form: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&request.body).expect("form body");
            let problems = schema.check(&form);
            assert!(problems.is_empty(), "not valid per spec: {problems:?}");
            form
        })
        .collect()
}

#[tokio::test]
async fn an_sms_goes_out_from_the_called_number_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        )))
        .and(header(
            "authorization",
            "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjphdXRoLXRva2Vu",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0123456789abcdef0123456789abcdef",
            "status": "queued",
            "to": "+14155552671",
            "body": "Your appointment is on Tuesday at 10:00."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let sent = sms(&server, Sender::CalledNumber)
        .send(&context(), &message())
        .await
        .expect("sent");
    assert_eq!(sent.id, "SM0123456789abcdef0123456789abcdef");
    let forms = assert_forms_valid(&server).await;
    assert!(forms[0].contains(&("To".into(), "+14155552671".into())));
    assert!(forms[0].contains(&("From".into(), "+14155550100".into())));
}

#[tokio::test]
async fn a_messaging_service_sends_and_an_opt_out_is_refused_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400
        })))
        .expect(1)
        .mount(&server)
        .await;
    let service = "MG0123456789abcdef0123456789abcdef".to_owned();
    let err = sms(&server, Sender::Service(service.clone()))
        .send(&context(), &message())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ConnectorError::Rejected(m) if m.contains("opted out")),
        "{err:?}"
    );
    let forms = assert_forms_valid(&server).await;
    assert!(forms[0].contains(&("MessagingServiceSid".into(), service)));
    assert!(!forms[0].iter().any(|(k, _)| k == "From"));
}

#[tokio::test]
async fn a_lost_answer_is_not_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let err = sms(&server, Sender::CalledNumber)
        .send(&context(), &message())
        .await
        .expect_err("503");
    assert!(
        matches!(
            err,
            ConnectorError::UnexpectedResponse(_) | ConnectorError::Policy(_)
        ),
        "{err:?}"
    );
    assert_eq!(
        server.received_requests().await.expect("recorded").len(),
        1,
        "never replayed"
    );
}

//! WhatsApp Cloud API end to end against a 127.0.0.1 mock of `sendMessage`, each request checked
//! against `fixtures/vendor-specs/whatsapp/` (the `Message` oneOf: `TextMessage` or
//! `TemplateMessage`).

use std::time::Duration;

use callbridge::connectors::ConnectorError;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::messages::{Message, Messenger, Template};
use callbridge::connectors::whatsapp::Whatsapp;
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn contract(variant: &str) -> Contract {
    Contract::load("whatsapp", &["messages_v23.json"]).variant("sendMessage", variant)
}

fn connector(server: &MockServer) -> Whatsapp {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    Whatsapp::new(
        policy,
        server.uri().parse().expect("url"),
        SecretString::from("EAAtest"),
        "106540352242922",
        "v23.0",
    )
    .expect("built")
}

fn context() -> RequestContext {
    RequestContext::new("t1", "call_1", Instant::now() + Duration::from_secs(5))
}

fn answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "14155552671", "wa_id": "14155552671"}],
        "messages": [{"id": "wamid.HBgLMTQxNTU1NTI2NzEVAgARGBI"}]
    }))
}

#[tokio::test]
async fn free_text_inside_the_window() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .and(header("authorization", "Bearer EAAtest"))
        .and(body_partial_json(
            json!({"type": "text", "text": {"body": "See you at 10"}}),
        ))
        .respond_with(answer())
        .expect(1)
        .mount(&server)
        .await;
    let sent = connector(&server)
        .send(
            &context(),
            &Message {
                to: "+14155552671".into(),
                from: None,
                subject: None,
                text: "See you at 10".into(),
                template: None,
            },
        )
        .await
        .expect("sent");
    assert_eq!(sent.form, "text");
    assert!(sent.id.starts_with("wamid."));
    contract("#/components/schemas/TextMessage")
        .assert_valid(&server)
        .await;
}

#[tokio::test]
async fn an_approved_template_outside_the_window() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/106540352242922/messages"))
        .and(body_partial_json(json!({
            "type": "template",
            "template": {"name": "booking_confirmation", "language": {"code": "en_US"}}
        })))
        .respond_with(answer())
        .expect(1)
        .mount(&server)
        .await;
    let sent = connector(&server)
        .send(
            &context(),
            &Message {
                to: "+14155552671".into(),
                from: None,
                subject: None,
                text: "See you at 10".into(),
                template: Some(Template {
                    name: "booking_confirmation".into(),
                    language: "en_US".into(),
                    parameters: vec!["See you at 10".into()],
                }),
            },
        )
        .await
        .expect("sent");
    assert_eq!(sent.form, "template");
    contract("#/components/schemas/TemplateMessage")
        .assert_valid(&server)
        .await;
}

#[tokio::test]
async fn a_refused_token_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
        })))
        .mount(&server)
        .await;
    let err = connector(&server)
        .send(
            &context(),
            &Message {
                to: "+14155552671".into(),
                from: None,
                subject: None,
                text: "hi".into(),
                template: None,
            },
        )
        .await
        .expect_err("401");
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
}

//! Slack for staff notifications against a 127.0.0.1 mock: `chat.postMessage` with a bot token
//! (checked against `fixtures/vendor-specs/slack/`; the held spec lists the form fields, the JSON
//! body follows <https://api.slack.com/methods/chat.postMessage>), Slack's `ok: false` answers,
//! and an incoming webhook (<https://api.slack.com/messaging/webhooks>).

use std::time::Duration;

use callbridge::connectors::ConnectorError;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::messages::{Message, Messenger};
use callbridge::connectors::slack::Slack;
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy")
}

fn context() -> RequestContext {
    RequestContext::new("t1", "n1", Instant::now() + Duration::from_secs(5))
}

fn note() -> Message {
    Message {
        to: "default".into(),
        from: None,
        subject: Some("Booking made".into()),
        text: "Ann Lee booked Tuesday 10:00.".into(),
        template: None,
    }
}

fn contract() -> Contract {
    Contract::load("slack", &["web_chat.json"]).with_operation(
        "POST",
        "/api/chat.postMessage",
        &["authorization"],
        json!({
            "type": "object",
            "required": ["channel"],
            "properties": {"channel": {"type": "string"}, "text": {"type": "string"}}
        }),
    )
}

#[tokio::test]
async fn a_bot_posts_to_its_channel() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-test"))
        .and(body_json(json!({"channel": "C0123456789", "text": "*Booking made*\nAnn Lee booked Tuesday 10:00."})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": "C0123456789", "ts": "1503435956.000247"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let slack = Slack::bot(
        policy(),
        format!("{}/api/", server.uri()).parse().expect("url"),
        SecretString::from("xoxb-test"),
        "C0123456789",
    )
    .expect("built");
    let sent = slack.send(&context(), &note()).await.expect("posted");
    assert_eq!(sent.id, "1503435956.000247");
    contract().assert_valid(&server).await;
}

#[tokio::test]
async fn ok_false_is_an_error_with_its_meaning() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&server)
        .await;
    let slack = Slack::bot(
        policy(),
        format!("{}/api/", server.uri()).parse().expect("url"),
        SecretString::from("xoxb-test"),
        "C0123456789",
    )
    .expect("built");
    let err = slack.send(&context(), &note()).await.expect_err("refused");
    assert!(
        matches!(&err, ConnectorError::Config(m) if m.contains("channel_not_found")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_incoming_webhook_gets_the_text() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .and(body_json(
            json!({"text": "*Booking made*\nAnn Lee booked Tuesday 10:00."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let url = SecretString::from(format!("{}/services/T000/B000/XXXX", server.uri()));
    let slack = Slack::webhook(policy(), &url).expect("built");
    slack.send(&context(), &note()).await.expect("posted");
    // A webhook URL to an internal address is refused when the policy is strict.
    let strict = HttpPolicy::new(PolicyConfig::default()).expect("policy");
    assert!(Slack::webhook(strict, &url).is_err());
}

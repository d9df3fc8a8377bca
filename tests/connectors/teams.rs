//! Microsoft Teams for staff notifications against a 127.0.0.1 mock: a Graph channel message
//! (checked against `fixtures/vendor-specs/teams/`) and an incoming webhook.

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::ConnectorError;
use callbridge::connectors::client::TokenSource;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::messages::{Message, Messenger};
use callbridge::connectors::teams::Teams;
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::json;
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Fixed;

#[async_trait::async_trait]
impl TokenSource for Fixed {
    async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        Ok(SecretString::from("graph-token"))
    }
    async fn refresh(
        &self,
        _ctx: &RequestContext,
        _rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError> {
        Ok(SecretString::from("graph-token"))
    }
}

fn policy() -> HttpPolicy {
    HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy")
}

fn note() -> Message {
    Message {
        to: "default".into(),
        from: None,
        subject: Some("Transfer requested".into()),
        text: "A caller asked for a person.".into(),
        template: None,
    }
}

fn context() -> RequestContext {
    RequestContext::new("t1", "n1", Instant::now() + Duration::from_secs(5))
}

#[tokio::test]
async fn a_graph_channel_message() {
    let server = MockServer::start().await;
    let team = "fbe2bf47-16c8-47cf-b4a5-4b9b187c508b";
    let channel = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2";
    Mock::given(method("POST"))
        .and(path(format!("/v1.0/teams/{team}/channels/{channel}/messages")))
        .and(header("authorization", "Bearer graph-token"))
        .and(body_json(json!({"body": {"contentType": "text", "content": "Transfer requested\nA caller asked for a person."}})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "1616965872395", "messageType": "message"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let teams = Teams::graph(
        policy(),
        format!("{}/v1.0/", server.uri()).parse().expect("url"),
        Arc::new(Fixed),
        team,
        channel,
    )
    .expect("built");
    let sent = teams.send(&context(), &note()).await.expect("posted");
    assert_eq!(sent.id, "1616965872395");
    Contract::load("teams", &["graph_channel_messages.json"])
        .assert_valid(&server)
        .await;
}

#[tokio::test]
async fn an_incoming_webhook() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/webhookb2/abc/IncomingWebhook/def/ghi"))
        .and(body_json(
            json!({"text": "Transfer requested\nA caller asked for a person."}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string("1"))
        .expect(1)
        .mount(&server)
        .await;
    let url = SecretString::from(format!(
        "{}/webhookb2/abc/IncomingWebhook/def/ghi",
        server.uri()
    ));
    let teams = Teams::webhook(policy(), &url).expect("built");
    teams.send(&context(), &note()).await.expect("posted");
}

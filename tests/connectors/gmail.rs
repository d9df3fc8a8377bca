//! Gmail end to end against a 127.0.0.1 mock of `users.messages.send`: the raw RFC 5322 message
//! is decoded and read back, the request checked against the discovery document's method
//! (`fixtures/vendor-specs/gmail/`, converted to Swagger 2), and a refused token is refreshed once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use callbridge::connectors::ConnectorError;
use callbridge::connectors::client::TokenSource;
use callbridge::connectors::gmail::Gmail;
use callbridge::connectors::http::{HttpPolicy, PolicyConfig, RequestContext};
use callbridge::connectors::messages::{Message, Messenger};
use callbridge::egress::EgressPolicy;
use callbridge_testkit::contract::Contract;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Tokens `t0`, `t1`, …: each refresh hands out the next.
#[derive(Default)]
struct Tokens(AtomicUsize);

#[async_trait::async_trait]
impl TokenSource for Tokens {
    async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
        Ok(SecretString::from(format!(
            "t{}",
            self.0.load(Ordering::SeqCst)
        )))
    }
    async fn refresh(
        &self,
        _ctx: &RequestContext,
        _rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError> {
        let next = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(SecretString::from(format!("t{next}")))
    }
}

fn gmail(server: &MockServer) -> Gmail {
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy");
    Gmail::new(
        policy,
        format!("{}/", server.uri()).parse().expect("url"),
        Arc::new(Tokens::default()),
        "Clinic <desk@clinic.example>".parse().expect("mailbox"),
    )
}

#[tokio::test]
async fn the_message_is_sent_raw_and_a_refused_token_refreshed_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/gmail/v1/users/me/messages/send"))
        .and(header("authorization", "Bearer t0"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/gmail/v1/users/me/messages/send"))
        .and(header("authorization", "Bearer t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "18c5f1a2b3d4e5f6", "threadId": "18c5f1a2b3d4e5f6", "labelIds": ["SENT"]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let ctx = RequestContext::new("t1", "call_1", Instant::now() + Duration::from_secs(5))
        .with_idempotency_key("key-9");
    let sent = gmail(&server)
        .send(
            &ctx,
            &Message {
                to: "ann@example.com".into(),
                from: None,
                subject: Some("Directions".into()),
                text: "We are at 1 Main Street.".into(),
                template: None,
            },
        )
        .await
        .expect("sent");
    assert_eq!(sent.id, "18c5f1a2b3d4e5f6");
    let requests = server.received_requests().await.expect("recorded");
    let body: Value = serde_json::from_slice(&requests[1].body).expect("json");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body["raw"].as_str().expect("raw"))
        .expect("base64url");
    let mail = String::from_utf8(raw).expect("utf-8");
    assert!(mail.contains("To: ann@example.com"), "{mail}");
    assert!(mail.contains("Subject: Directions"), "{mail}");
    assert!(
        mail.contains("Message-ID: <key-9@clinic.example>"),
        "{mail}"
    );
    assert!(mail.contains("We are at 1 Main Street."), "{mail}");
    Contract::load("gmail", &["gmail.v1.swagger2.json"])
        .assert_valid(&server)
        .await;
}

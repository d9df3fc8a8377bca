//! What the policy logs about a vendor call: enough to debug, never a credential or a caller's
//! email or phone number. Captures the real `tracing` output of a real request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbridge::connectors::http::{
    ConnectorProfile, HttpPolicy, PolicyConfig, Replay, RequestContext,
};
use callbridge::egress::EgressPolicy;
use tokio::time::Instant;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_and_personal_data_never_reach_the_log() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded, so the thread-local default covers the whole call.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string(
            r#"{"error":"duplicate","contact":{"email":"jane.doe@example.org","phone":"+44 20 7946 0958"}}"#,
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"id":"c_1","access_token":"ya29.response-token","email":"jane.doe@example.org"}"#,
        ))
        .mount(&server)
        .await;

    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let request = policy
        .client()
        .post(format!("{}/contacts?api_key=query-secret&page=2", server.uri()))
        .bearer_auth("sk_live_header_secret")
        .header("X-Api-Key", "second-header-secret")
        .body(r#"{"email":"jane.doe@example.org","phone":"+1 415 555 0100","client_secret":"body-secret"}"#)
        .build()
        .expect("request builds");
    let context = RequestContext::new(
        "tenant-a",
        "call_9",
        Instant::now() + Duration::from_secs(5),
    )
    .with_idempotency_key("idem-1");
    let profile = ConnectorProfile::new("crm")
        .with_idempotency_header(reqwest::header::HeaderName::from_static("idempotency-key"));
    policy
        .send(&context, &profile, request, Replay::ByMethod)
        .await
        .expect("retry succeeds");

    let log = captured.text();
    assert!(log.contains("vendor request"), "request logged: {log}");
    assert!(log.contains("vendor response"), "response logged: {log}");
    assert!(log.contains("page=2"), "harmless query kept: {log}");
    assert!(
        log.contains("status=500") || log.contains("500"),
        "error status logged: {log}"
    );
    for secret in [
        "sk_live_header_secret",
        "second-header-secret",
        "query-secret",
        "body-secret",
        "ya29.response-token",
        "jane.doe@example.org",
        "555 0100",
        "7946 0958",
    ] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

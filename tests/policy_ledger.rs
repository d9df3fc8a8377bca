//! The ledger with the policy end to end: a duplicated `book_appointment` (same tool-call id, or
//! the same arguments replayed after a reconnect) reaches the vendor once, and every caller
//! gets the first result.

use std::sync::Arc;
use std::time::Duration;

use callbridge::connectors::http::{
    ConnectorProfile, HttpPolicy, PolicyConfig, Replay, RequestContext,
};
use callbridge::egress::EgressPolicy;
use callbridge::tools::ledger::{
    InMemoryLedger, ToolInvocation, ToolLedger, ToolOutcome, args_hash, run_once,
};
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn book(
    policy: &HttpPolicy,
    base: &str,
    idempotency_key: String,
    args: &Value,
) -> Result<Value, String> {
    let profile = ConnectorProfile::new("booking")
        .with_idempotency_header(reqwest::header::HeaderName::from_static("idempotency-key"));
    let context = RequestContext::new("acme", "call", Instant::now() + Duration::from_secs(5))
        .with_idempotency_key(idempotency_key);
    let request = policy
        .client()
        .post(format!("{base}/bookings"))
        .json(args)
        .build()
        .map_err(|e| e.to_string())?;
    let response = policy
        .send(&context, &profile, request, Replay::ByMethod)
        .await
        .map_err(|e| e.to_string())?;
    response.json::<Value>().map_err(|e| e.to_string())
}

fn invocation(tool_call_id: &str, args: &Value) -> ToolInvocation {
    ToolInvocation {
        tenant: "acme".into(),
        call_id: "CA123".into(),
        tool_call_id: tool_call_id.into(),
        tool: "book_appointment".into(),
        args_hash: args_hash(args),
    }
}

#[tokio::test]
async fn concurrent_duplicates_book_once_and_share_the_result() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/bookings"))
        .and(header_exists("idempotency-key"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"uid": "bk_1"}))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&server)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let ledger: Arc<dyn ToolLedger> = Arc::new(InMemoryLedger::default());
    let args = json!({"start": "2025-03-04T10:00:00Z", "name": "Ann"});
    // The model's reconnect replays the same arguments in another key order and another id.
    let replayed_args = json!({"name": "Ann", "start": "2025-03-04T10:00:00Z"});
    let deadline = Instant::now() + Duration::from_secs(5);

    let mut tasks = Vec::new();
    for (tool_call_id, call_args) in [
        ("t1", &args),
        ("t1", &args),
        ("t2-reconnect", &replayed_args),
    ] {
        let ledger = ledger.clone();
        let policy = policy.clone();
        let base = server.uri();
        let call_args = call_args.clone();
        let invocation = invocation(tool_call_id, &call_args);
        tasks.push(tokio::spawn(async move {
            run_once(ledger.as_ref(), &invocation, deadline, |key| async move {
                book(&policy, &base, key, &call_args).await
            })
            .await
        }));
    }
    for task in tasks {
        let outcome = task.await.expect("task joins").expect("ledger answers");
        assert_eq!(outcome, ToolOutcome::Succeeded(json!({"uid": "bk_1"})));
    }
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1, "the vendor saw the booking once");

    // Later repeats are answered from the ledger.
    let base = server.uri();
    let later = run_once(
        ledger.as_ref(),
        &invocation("t3", &args),
        deadline,
        |key| async move { book(&policy, &base, key, &args).await },
    )
    .await
    .expect("ledger answers");
    assert_eq!(later, ToolOutcome::Succeeded(json!({"uid": "bk_1"})));
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1
    );
}

#[tokio::test]
async fn a_failed_booking_is_retried_with_the_same_vendor_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "slot taken"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"uid": "bk_2"})))
        .mount(&server)
        .await;
    let policy = HttpPolicy::new(PolicyConfig {
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .expect("policy builds");
    let ledger = InMemoryLedger::default();
    let args = json!({"start": "2025-03-04T11:00:00Z"});
    let deadline = Instant::now() + Duration::from_secs(5);
    let base = server.uri();
    let first = run_once(&ledger, &invocation("t1", &args), deadline, |key| {
        book(&policy, &base, key, &args)
    })
    .await;
    assert!(matches!(first, Ok(ToolOutcome::Failed(_))), "{first:?}");
    let second = run_once(&ledger, &invocation("t1", &args), deadline, |key| {
        book(&policy, &base, key, &args)
    })
    .await;
    assert_eq!(second, Ok(ToolOutcome::Succeeded(json!({"uid": "bk_2"}))));
    let keys: Vec<_> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

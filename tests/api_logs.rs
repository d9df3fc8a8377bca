//! Secrets never reach the logs: every log line (TRACE and up, from every crate, including the
//! HTTP server, the client and the database driver) is captured while secrets, API keys and
//! signing secrets go through the API and a webhook is signed and delivered.

mod api_harness;
#[allow(unused_macros)]
mod store_harness;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_harness::{ADMIN_KEY, TestApi};
use callbridge::store::{
    CallDirection, CallEnd, CallStatus, NewCall, OutboxStatus, Store, TenantId,
};
use callbridge::tenant::vault::{Keyring, MasterKey};
use callbridge::webhooks::{self, DeliveryWorker, WorkerOptions};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("only subscriber of this test binary");

    let db = store_harness::sqlite().await;
    let store = &db.store;
    let api = TestApi::start(store).await;
    let secret_value = "sk_live_LOGCHECK_0123456789abcdef";
    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            json!({"id": "acme", "name": "Acme", "time_zone": "UTC"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = api
        .put(
            "/tenants/acme/secrets/token",
            ADMIN_KEY,
            json!({"vendor": "hubspot", "value": secret_value}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api
        .post("/tenants/acme/api-keys", ADMIN_KEY, json!({}))
        .await;
    let api_key = r.body["key"].as_str().unwrap().to_owned();
    // Use the tenant key, so authentication runs on it.
    let r = api
        .post("/tenants/acme/webhook/signing-secret", &api_key, json!({}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let signing = r.body["signing_secret"].as_str().unwrap().to_owned();
    // A malformed body that echoes a secret-like value must not be logged either.
    let r = api
        .put(
            "/tenants/acme/secrets/other",
            &api_key,
            json!({"vendor": "nope", "value": secret_value}),
        )
        .await;
    assert_eq!(r.status, 400);

    // Deliver one signed webhook through a worker using a separate keyring-holding vault: the
    // API above used its own random master key, so set the signing secret again under ours.
    let keyring = Keyring::new(MasterKey::generate());
    let vault = callbridge::tenant::vault::Vault::new(store.clone(), keyring.clone());
    let tenant = TenantId::parse("acme").unwrap();
    vault
        .put(
            &tenant,
            "webhook-signing",
            "webhook",
            &signing.clone().into(),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        let _ = axum::serve(listener, app).await;
    });
    let r = api
        .put(
            "/tenants/acme/webhook",
            &api_key,
            json!({"url": format!("http://{addr}/hook"), "secret_name": "webhook-signing"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let agent = api
        .post(
            "/tenants/acme/agents",
            &api_key,
            json!({"name": "Front", "prompt_template": "default"}),
        )
        .await;
    let call = store
        .create_call(&NewCall {
            tenant_id: tenant.clone(),
            agent_id: agent.body["id"].as_str().unwrap().into(),
            direction: CallDirection::Inbound,
            from: "+14155550111".into(),
            to: "+14155550100".into(),
            twilio_call_sid: None,
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    store
        .finish_call(
            &tenant,
            &call.id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path: None,
            },
        )
        .await
        .unwrap();
    webhooks::enqueue_call_ended(store, &tenant, &call.id)
        .await
        .unwrap();
    let worker = DeliveryWorker::new(
        store.clone(),
        keyring,
        WorkerOptions {
            egress: callbridge::egress::EgressPolicy::allow_loopback(),
            ..WorkerOptions::default()
        },
    )
    .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let outbox = store.list_outbox(&tenant, 10).await.unwrap();
    assert_eq!(outbox[0].status, OutboxStatus::Delivered, "{outbox:?}");
    receiver.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let logs = captured.text();
    // The capture works: the operations above were logged.
    assert!(logs.contains("secret stored"), "{logs}");
    assert!(logs.contains("API key issued"), "{logs}");
    for secret in [
        secret_value,
        api_key.as_str(),
        &api_key[api_key.len() - 20..],
        signing.as_str(),
        &signing["whsec_".len()..],
        ADMIN_KEY,
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

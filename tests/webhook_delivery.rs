//! Post-call webhook delivery against a real receiver on 127.0.0.1, on SQLite and PostgreSQL:
//! the receiver is down for a while and a worker dies mid-way (one crashed worker even holds
//! leases), then the receiver comes up with two workers racing — every event arrives exactly
//! once with a valid Standard Webhooks signature, verified here independently.

#[macro_use]
mod store_harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use callbridge::admin::dto::{
    AgentRequest, CreateTenantRequest, GenerateSigningSecretRequest, WebhookRequest,
};
use callbridge::admin::{AdminService, Principal};
use callbridge::egress::EgressPolicy;
use callbridge::store::{
    CallDirection, CallEnd, CallEventKind, CallStatus, NewCall, OutboxStatus, SqlStore, Store,
    TenantId, WebhookSettingsSpec,
};
use callbridge::tenant::vault::{Keyring, MasterKey};
use callbridge::webhooks::{self, DeliveryWorker, WorkerOptions};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

backend_suite!(
    outage_and_crash_lose_nothing_and_duplicate_nothing,
    gives_up_after_max_attempts,
    enqueue_rules,
    targets_pass_the_egress_guard_and_errors_stay_neutral,
    post_call_exports_retry_and_survive_a_restart,
    drive_and_docs_exports_upload_fill_retry_and_give_up,
);

#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// A receiver answering `status` to every POST after `delay` (so that sends overlap with other
/// workers' polls), recording what it got.
async fn start_receiver(
    listener: tokio::net::TcpListener,
    status: StatusCode,
    delay: Duration,
) -> (Arc<Mutex<Vec<Received>>>, tokio::task::JoinHandle<()>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                log.lock().unwrap().push(Received {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    body: body.to_vec(),
                });
                tokio::time::sleep(delay).await;
                status
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (received, server)
}

/// Standard Webhooks verification, written from the specification independently of the crate.
fn verify(secret: &str, message: &Received) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| BASE64.decode(k).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", message.id, message.timestamp).as_bytes());
    mac.update(&message.body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    message
        .signature
        .split(' ')
        .any(|candidate| candidate == expected)
}

struct Tenant {
    id: TenantId,
    agent_id: String,
    signing_secret: String,
}

async fn tenant_with_webhook(store: &SqlStore, keyring: &Keyring, url: &str) -> Tenant {
    tenant_with_webhook_under(store, keyring, url, EgressPolicy::allow_loopback()).await
}

/// The tenant, its agent and a webhook to `url`, written through the admin service under
/// `egress` (the receivers here listen on 127.0.0.1: the loopback allow-list the operator would
/// set with `CALLBRIDGE_EGRESS_ALLOW`).
async fn tenant_with_webhook_under(
    store: &SqlStore,
    keyring: &Keyring,
    url: &str,
    egress: EgressPolicy,
) -> Tenant {
    tenant_named(store, keyring, url, egress, "acme").await
}

/// [`tenant_with_webhook_under`] with the tenant id `id`.
async fn tenant_named(
    store: &SqlStore,
    keyring: &Keyring,
    url: &str,
    egress: EgressPolicy,
    id: &str,
) -> Tenant {
    let prompts = tempfile::tempdir().unwrap();
    let svc = AdminService::new(store.clone(), prompts.path().into(), Ok(keyring.clone()))
        .with_egress(egress);
    let admin = Principal::Admin;
    svc.create_tenant(
        &admin,
        CreateTenantRequest {
            id: Some(id.into()),
            name: "Acme".into(),
            time_zone: "UTC".into(),
        },
    )
    .await
    .unwrap();
    let agent = svc
        .create_agent(
            &admin,
            id,
            serde_json::from_value::<AgentRequest>(json!({"name": "Front"})).unwrap(),
        )
        .await
        .unwrap();
    let generated = svc
        .generate_signing_secret(&admin, id, GenerateSigningSecretRequest::default())
        .await
        .unwrap();
    svc.put_webhook(
        &admin,
        id,
        WebhookRequest {
            url: url.into(),
            secret_name: generated.secret.name.clone(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    Tenant {
        id: TenantId::parse(id).unwrap(),
        agent_id: agent.id,
        signing_secret: generated.signing_secret,
    }
}

async fn ended_call(store: &SqlStore, tenant: &Tenant, n: usize) -> String {
    ended_call_recorded(store, tenant, n, None).await
}

/// [`ended_call`] with the recording file the call left, if any.
async fn ended_call_recorded(
    store: &SqlStore,
    tenant: &Tenant,
    n: usize,
    recording_path: Option<String>,
) -> String {
    let call = store
        .create_call(&NewCall {
            tenant_id: tenant.id.clone(),
            agent_id: tenant.agent_id.clone(),
            direction: CallDirection::Inbound,
            from: format!("+1415555{n:04}"),
            to: "+14155550100".into(),
            twilio_call_sid: Some(format!("CA{n:032}")),
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    for (kind, payload) in [
        (
            CallEventKind::Transcript,
            json!({"role": "agent", "text": "Acme, how can I help?"}),
        ),
        (
            CallEventKind::Transcript,
            json!({"role": "caller", "text": format!("Call number {n}")}),
        ),
        (
            CallEventKind::ToolCall,
            json!({"name": "book_appointment", "arguments": {"slot": n}}),
        ),
        (
            CallEventKind::ToolResult,
            json!({"name": "book_appointment", "ok": true}),
        ),
    ] {
        store
            .append_call_event(&tenant.id, &call.id, kind, &payload)
            .await
            .unwrap();
    }
    store
        .finish_call(
            &tenant.id,
            &call.id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path,
            },
        )
        .await
        .unwrap();
    call.id
}

fn fast_options() -> WorkerOptions {
    WorkerOptions {
        poll_interval: Duration::from_millis(50),
        batch_size: 3,
        lease: Duration::from_secs(2),
        request_timeout: Duration::from_millis(800),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        max_attempts: 100,
        retention: Duration::from_secs(3600),
        egress: EgressPolicy::allow_loopback(),
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outage_and_crash_lose_nothing_and_duplicate_nothing(store: &SqlStore) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Reserve a port, then close it: the receiver is down (connections refused).
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant_with_webhook(store, &keyring, &format!("http://{addr}/hook")).await;

    const CALLS: usize = 7;
    let mut call_ids = Vec::new();
    for n in 0..CALLS {
        let id = ended_call(store, &tenant, n).await;
        webhooks::enqueue_call_ended(store, &tenant.id, &id)
            .await
            .unwrap();
        call_ids.push(id);
    }
    // Enqueueing the same call again adds nothing.
    webhooks::enqueue_call_ended(store, &tenant.id, &call_ids[0])
        .await
        .unwrap();
    let outbox = store.list_outbox(&tenant.id, 100).await.unwrap();
    assert_eq!(outbox.len(), CALLS);

    // A worker runs while the receiver is down: every message fails at least once.
    let first = DeliveryWorker::new(store.clone(), keyring.clone(), fast_options())
        .unwrap()
        .spawn();
    wait_until("failed attempts", Duration::from_secs(20), || async {
        store
            .list_outbox(&tenant.id, 100)
            .await
            .unwrap()
            .iter()
            .all(|m| m.attempts >= 1 && m.last_error.is_some())
    })
    .await;
    // It crashes (no graceful shutdown) …
    first.abort();
    // … and another crashed worker left two rows leased to itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lease_until = jiff::Timestamp::now().as_millisecond() + 1_500;
    let stranded = store
        .claim_outbox("crashed-worker", lease_until, 2)
        .await
        .unwrap();
    assert_eq!(stranded.len(), 2, "rows are due again after backoff");
    let stored_errors: Vec<String> = store
        .list_outbox(&tenant.id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| m.last_error)
        .collect();
    assert!(
        stored_errors.iter().all(|e| !e.contains(&addr.to_string())),
        "{stored_errors:?}"
    );

    // The receiver comes up on the same address; two workers race for the rows.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (received, server) =
        start_receiver(listener, StatusCode::NO_CONTENT, Duration::from_millis(150)).await;
    let second = DeliveryWorker::new(store.clone(), keyring.clone(), fast_options())
        .unwrap()
        .spawn();
    let third = DeliveryWorker::new(store.clone(), keyring.clone(), fast_options())
        .unwrap()
        .spawn();
    wait_until("every delivery", Duration::from_secs(30), || async {
        store
            .list_outbox(&tenant.id, 100)
            .await
            .unwrap()
            .iter()
            .all(|m| m.status == OutboxStatus::Delivered)
    })
    .await;
    // Give a duplicate the chance to show up before looking.
    tokio::time::sleep(Duration::from_millis(400)).await;
    second.shutdown().await;
    third.shutdown().await;
    server.abort();

    let received = received.lock().unwrap().clone();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for message in &received {
        *per_id.entry(message.id.as_str()).or_default() += 1;
    }
    let outbox = store.list_outbox(&tenant.id, 100).await.unwrap();
    assert_eq!(received.len(), CALLS, "exactly one delivery per event");
    for row in &outbox {
        assert_eq!(per_id.get(row.id.as_str()), Some(&1), "{}", row.id);
        assert!(row.delivered_at.is_some());
    }
    // Rows leased by the crashed worker were left alone until the lease ran out.
    for row in outbox
        .iter()
        .filter(|r| stranded.iter().any(|s| s.id == r.id))
    {
        let delivered = row.delivered_at.map(|t| t.as_millisecond()).unwrap_or(0);
        assert!(
            delivered >= lease_until,
            "{} sent during another's lease",
            row.id
        );
    }

    let mut delivered_calls = Vec::new();
    for message in &received {
        assert!(verify(&tenant.signing_secret, message), "bad signature");
        let timestamp: i64 = message.timestamp.parse().unwrap();
        assert!((jiff::Timestamp::now().as_second() - timestamp).abs() < 120);
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["type"], "call.ended");
        let data = &body["data"];
        assert_eq!(data["tenant_id"], "acme");
        assert_eq!(data["to"], "+14155550100");
        assert_eq!(data["end_reason"], "caller_hangup");
        assert!(data["duration_ms"].as_i64().is_some());
        assert_eq!(data["transcript"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["transcript"][0]["role"], "agent");
        assert_eq!(data["tool_calls"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["tool_calls"][0]["name"], "book_appointment");
        delivered_calls.push(data["call_id"].as_str().unwrap().to_owned());
        // A tampered body fails verification: the check above is not vacuous.
        let mut tampered = message.clone();
        tampered.body.push(b' ');
        assert!(!verify(&tenant.signing_secret, &tampered));
    }
    delivered_calls.sort();
    call_ids.sort();
    assert_eq!(delivered_calls, call_ids);
}

async fn gives_up_after_max_attempts(store: &SqlStore) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (received, server) =
        start_receiver(listener, StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant_with_webhook(store, &keyring, &format!("http://{addr}/hook")).await;
    let call = ended_call(store, &tenant, 1).await;
    webhooks::enqueue_call_ended(store, &tenant.id, &call)
        .await
        .unwrap();
    let options = WorkerOptions {
        max_attempts: 3,
        ..fast_options()
    };
    let worker = DeliveryWorker::new(store.clone(), keyring, options)
        .unwrap()
        .spawn();
    wait_until("giving up", Duration::from_secs(20), || async {
        store.list_outbox(&tenant.id, 10).await.unwrap()[0].status == OutboxStatus::Failed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.shutdown().await;
    server.abort();
    let row = &store.list_outbox(&tenant.id, 10).await.unwrap()[0];
    assert_eq!(row.attempts, 3);
    assert_eq!(
        row.last_error.as_deref(),
        Some("receiver answered HTTP 500")
    );
    assert_eq!(received.lock().unwrap().len(), 3);
}

async fn enqueue_rules(store: &SqlStore) {
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant_with_webhook(store, &keyring, "http://127.0.0.1:9/hook").await;

    // A call that has not ended cannot be enqueued.
    let running = store
        .create_call(&NewCall {
            tenant_id: tenant.id.clone(),
            agent_id: tenant.agent_id.clone(),
            direction: CallDirection::Inbound,
            from: "+14155550111".into(),
            to: "+14155550100".into(),
            twilio_call_sid: None,
            status: CallStatus::InProgress,
        })
        .await
        .unwrap();
    assert!(matches!(
        webhooks::enqueue_call_ended(store, &tenant.id, &running.id).await,
        Err(webhooks::WebhookError::CallNotEnded { .. })
    ));
    // Another tenant's call id is not found.
    let other = TenantId::parse("other").unwrap();
    let call = ended_call(store, &tenant, 1).await;
    assert!(
        webhooks::enqueue_call_ended(store, &other, &call)
            .await
            .is_err()
    );
    // Enabled: one row. Disabled and removed: nothing new is enqueued.
    webhooks::enqueue_call_ended(store, &tenant.id, &call)
        .await
        .unwrap();
    assert_eq!(store.list_outbox(&tenant.id, 10).await.unwrap().len(), 1);
    let mut settings = store.webhook_settings(&tenant.id).await.unwrap().spec;
    settings.enabled = false;
    store
        .put_webhook_settings(&tenant.id, &settings)
        .await
        .unwrap();
    let second = ended_call(store, &tenant, 2).await;
    webhooks::enqueue_call_ended(store, &tenant.id, &second)
        .await
        .unwrap();
    assert_eq!(store.list_outbox(&tenant.id, 10).await.unwrap().len(), 1);

    // The pending row of a disabled webhook is cancelled, not sent.
    let worker = DeliveryWorker::new(store.clone(), keyring, fast_options()).unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let row = &store.list_outbox(&tenant.id, 10).await.unwrap()[0];
    assert_eq!(row.status, OutboxStatus::Cancelled);
    assert_eq!(row.last_error.as_deref(), Some("webhook is disabled"));
    assert_eq!(worker.run_once().await.unwrap(), 0);
    // Finished rows go once past their retention; pending ones never do.
    assert_eq!(worker.purge_finished().await.unwrap(), 0);
    let fresh = DeliveryWorker::new(
        store.clone(),
        Keyring::new(MasterKey::generate()),
        WorkerOptions {
            retention: Duration::ZERO,
            ..fast_options()
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(fresh.purge_finished().await.unwrap(), 1);
    assert!(store.list_outbox(&tenant.id, 10).await.unwrap().is_empty());
    store
        .put_webhook_settings(
            &tenant.id,
            &WebhookSettingsSpec {
                enabled: true,
                ..settings.clone()
            },
        )
        .await
        .unwrap();
    let pending = ended_call(store, &tenant, 4).await;
    webhooks::enqueue_call_ended(store, &tenant.id, &pending)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(fresh.purge_finished().await.unwrap(), 0);
    assert_eq!(store.list_outbox(&tenant.id, 10).await.unwrap().len(), 1);

    store.delete_webhook_settings(&tenant.id).await.unwrap();
    let third = ended_call(store, &tenant, 3).await;
    webhooks::enqueue_call_ended(store, &tenant.id, &third)
        .await
        .unwrap();
    assert_eq!(store.list_outbox(&tenant.id, 10).await.unwrap().len(), 1);
}

/// Post-call webhook targets go through the egress guard: an internal address is refused when the
/// URL is written (strict policy: public https only), a name that resolves to one is refused at
/// connect time, and what the tenant reads about a failed delivery is neutral.
async fn targets_pass_the_egress_guard_and_errors_stay_neutral(store: &SqlStore) {
    let keyring = Keyring::new(MasterKey::generate());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (received, _server) = start_receiver(listener, StatusCode::OK, Duration::ZERO).await;
    // Written under the strict policy: internal literals and plain http are refused.
    let prompts = tempfile::tempdir().unwrap();
    let strict = AdminService::new(store.clone(), prompts.path().into(), Ok(keyring.clone()));
    strict
        .create_tenant(
            &Principal::Admin,
            CreateTenantRequest {
                id: Some("globex".into()),
                name: "Globex".into(),
                time_zone: "UTC".into(),
            },
        )
        .await
        .unwrap();
    let generated = strict
        .generate_signing_secret(
            &Principal::Admin,
            "globex",
            GenerateSigningSecretRequest::default(),
        )
        .await
        .unwrap();
    for url in [
        format!("http://{addr}/hook"),
        format!("https://{addr}/hook"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://[::1]/hook".to_owned(),
        "http://hooks.example.com/hook".to_owned(),
    ] {
        let refused = strict
            .put_webhook(
                &Principal::Admin,
                "globex",
                WebhookRequest {
                    url: url.clone(),
                    secret_name: generated.secret.name.clone(),
                    enabled: true,
                },
            )
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("url"), "{url}: {refused}");
    }

    // A name is judged at connect time: `localhost` passes the write (https, a name) and is
    // refused by the resolver; the tenant reads only "refused by egress policy".
    let tenant = tenant_with_webhook_under(
        store,
        &keyring,
        &format!("https://localhost:{}/hook", addr.port()),
        EgressPolicy::strict(),
    )
    .await;
    let call = ended_call(store, &tenant, 1).await;
    webhooks::enqueue_call_ended(store, &tenant.id, &call)
        .await
        .unwrap();
    let strict_worker = DeliveryWorker::new(
        store.clone(),
        keyring.clone(),
        WorkerOptions {
            egress: EgressPolicy::strict(),
            ..fast_options()
        },
    )
    .unwrap();
    assert_eq!(strict_worker.run_once().await.unwrap(), 1);
    let row = &store.list_outbox(&tenant.id, 10).await.unwrap()[0];
    assert_eq!(row.last_error.as_deref(), Some("refused by egress policy"));
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );

    // A receiver that is not there: "connection failed", not the socket's words.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut settings = store.webhook_settings(&tenant.id).await.unwrap().spec;
    settings.url = format!("http://{closed}/hook");
    store
        .put_webhook_settings(&tenant.id, &settings)
        .await
        .unwrap();
    due_now(store).await;
    let worker = DeliveryWorker::new(store.clone(), keyring.clone(), fast_options()).unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let row = &store.list_outbox(&tenant.id, 10).await.unwrap()[0];
    assert_eq!(row.last_error.as_deref(), Some("connection failed"));

    // The strict worker refuses a stored http URL to an internal host before sending, and
    // cancels it (an operator who narrowed the allow-list after the URL was written).
    due_now(store).await;
    assert_eq!(strict_worker.run_once().await.unwrap(), 1);
    let row = &store.list_outbox(&tenant.id, 10).await.unwrap()[0];
    assert_eq!(row.status, OutboxStatus::Cancelled);
    assert_eq!(row.last_error.as_deref(), Some("refused by egress policy"));
}

/// Makes every pending row due now (instead of waiting out the backoff).
async fn due_now(store: &SqlStore) {
    sqlx::query("UPDATE webhook_outbox SET next_attempt_at = 0 WHERE status = 'pending'")
        .execute(store.pool())
        .await
        .unwrap();
}

/// Google's token endpoint on `server`, handing out `token`.
async fn google_token_endpoint(server: &wiremock::MockServer, token: &str) {
    use wiremock::matchers::{method, path};
    wiremock::Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(server)
        .await;
}

/// Seals `secret` as the tenant's secret `name` and configures `vendor` with it at `base_url`.
async fn connect(
    store: &SqlStore,
    vault: &callbridge::tenant::vault::Vault<SqlStore>,
    tenant: &TenantId,
    (vendor, name): (&str, &str),
    secret: &Value,
    base_url: String,
) {
    vault
        .put(
            tenant,
            name,
            vendor,
            &secrecy::SecretString::from(secret.to_string()),
        )
        .await
        .unwrap();
    store
        .put_connector(
            tenant,
            &callbridge::store::ConnectorSpec {
                vendor: vendor.into(),
                base_url: Some(base_url),
                secret_name: Some(name.into()),
            },
        )
        .await
        .unwrap();
}

/// The export job of `call` to `vendor`, checked to be `status` after `attempts` attempts.
async fn expect_job(
    store: &SqlStore,
    (tenant, call): (&TenantId, &str),
    vendor: &str,
    status: &str,
    attempts: i64,
) -> callbridge::store::CallExportState {
    let job = store
        .call_export(tenant, call, vendor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status.as_str(), job.attempts),
        (status, attempts),
        "{vendor}: {:?}",
        job.last_error
    );
    job
}

/// The outbound policy of the export tests: loopback allowed, fast in-attempt backoff.
fn export_policy() -> callbridge::connectors::http::HttpPolicy {
    callbridge::connectors::http::HttpPolicy::new(callbridge::connectors::http::PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..Default::default()
    })
    .unwrap()
}

/// Post-call exports share the durability rules: a Google Sheet's call-log row is queued once per
/// call and connector, a vendor outage is retried with backoff, a restarted worker (another lease
/// owner) finishes the job, the row has the tenant's configured columns, and a connector that
/// exports nothing is marked skipped.
async fn post_call_exports_retry_and_survive_a_restart(store: &SqlStore) {
    use callbridge::campaign::clock::{Clock, ManualClock};
    use callbridge::exports::{ExportWorker, enqueue_call_exports};
    use callbridge::tenant::vault::Vault;
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant_with_webhook(store, &keyring, "http://127.0.0.1:9/hook").await;
    let server = MockServer::start().await;
    google_token_endpoint(&server, "ya29.export").await;
    // Google is down for the first attempt.
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/Calls!A1:append$",
        ))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/v4/spreadsheets/sheet-1/values/Calls!A1:append$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "spreadsheetId": "sheet-1",
            "updates": {"spreadsheetId": "sheet-1", "updatedRange": "Calls!A2:D2"}
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    let vault = Vault::new(store.clone(), keyring.clone());
    let secret = json!({
        "client_id": "c", "client_secret": "s", "refresh_token": "r",
        "token_uri": format!("{}/token", server.uri()),
        "spreadsheet_id": "sheet-1",
        "call_log_sheet": "Calls",
        "call_log_columns": ["call_id", "from", "duration_s", "transcript"],
    });
    for (vendor, secret) in [
        (("google_sheets", "sheets"), secret),
        (
            ("calcom", "cal"),
            json!({"api_key": "cal_x", "event_type_id": 1}),
        ),
    ] {
        let base_url = format!("{}/v4/", server.uri());
        connect(store, &vault, &tenant.id, vendor, &secret, base_url).await;
    }
    let call_id = ended_call(store, &tenant, 1).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let now = clock.now_ms();
    assert_eq!(
        enqueue_call_exports(store, &tenant.id, &call_id, None, now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        enqueue_call_exports(store, &tenant.id, &call_id, None, now)
            .await
            .unwrap(),
        0,
        "queued once"
    );
    let policy = export_policy();
    let worker = || {
        ExportWorker::new(store.clone(), Some(vault.clone()), policy.clone(), None)
            .with_clock(clock.clone() as Arc<dyn Clock>)
    };
    let first = worker();
    assert_eq!(first.run_once().await.unwrap(), 2);
    let sheet = store
        .call_export(&tenant.id, &call_id, "google_sheets")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sheet.status, "pending");
    assert_eq!(sheet.attempts, 1);
    assert!(sheet.next_at >= now + 30_000, "backoff");
    assert!(sheet.last_error.is_some());
    let cal = store
        .call_export(&tenant.id, &call_id, "calcom")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cal.status, "skipped");
    assert_eq!(first.run_once().await.unwrap(), 0, "not due yet");

    // A restart: a new worker (another lease owner), once the backoff has passed.
    drop(first);
    clock.advance(chrono::Duration::seconds(31));
    let second = worker();
    assert_eq!(second.run_once().await.unwrap(), 1);
    let sheet = store
        .call_export(&tenant.id, &call_id, "google_sheets")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sheet.status, "done");
    assert_eq!(sheet.attempts, 2);
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(second.run_once().await.unwrap(), 0, "nothing left");

    let appends: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with(":append"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(appends.len(), 2, "one failed attempt, one write");
    let row = &appends[1]["values"][0];
    assert_eq!(row[0], json!(call_id));
    assert_eq!(row[1], json!("+14155550001"));
    assert!(row[2].is_number(), "{row}");
    let transcript = row[3].as_str().unwrap();
    assert!(
        transcript.contains("agent: Acme, how can I help?"),
        "{transcript}"
    );
    assert!(transcript.contains("caller: Call number 1"), "{transcript}");
    callbridge_testkit::contract::Contract::load("google-sheets", &["sheets.v4.swagger2.json"])
        .ignoring("/token")
        .assert_valid(&server)
        .await;
}

/// The parts of a `multipart/related` request body: (part headers, content) each.
fn multipart_parts(request: &wiremock::Request) -> Vec<(String, Vec<u8>)> {
    let content_type = request.headers["content-type"].to_str().unwrap();
    let boundary = content_type.split("boundary=").nth(1).unwrap();
    let delimiter = format!("\r\n--{boundary}");
    let mut body = b"\r\n".to_vec();
    body.extend_from_slice(&request.body);
    let mut parts = Vec::new();
    let mut rest = &body[..];
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        let after = &rest[at + delimiter.len()..];
        if after.starts_with(b"--") {
            break;
        }
        let after = after.strip_prefix(b"\r\n").unwrap();
        let head_end = find(after, b"\r\n\r\n").unwrap();
        let content_start = head_end + 4;
        let next = find(&after[content_start..], delimiter.as_bytes()).unwrap();
        parts.push((
            String::from_utf8_lossy(&after[..head_end]).to_ascii_lowercase(),
            after[content_start..content_start + next].to_vec(),
        ));
        rest = &after[content_start + next..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Google Drive and Docs as post-call exports, through the export queue against loopback mocks
/// checked per the Drive v3 and Docs v1 discovery documents: a call's transcript and recording
/// land in the tenant's folder (multipart: metadata part and media part; a recording over 5 MiB
/// through a resumable session), a 5xx is retried and the retry uploads each file once, the
/// template is copied once and its placeholders filled (after the analysis, with its summary and
/// fields; a 429's `Retry-After` respected), a missing template (404) fails the job at once with
/// a precise error, and each tenant's jobs use only its own connection and folder. The jobs of a
/// recorded call run on the node that recorded it while it is alive, on any node after.
async fn drive_and_docs_exports_upload_fill_retry_and_give_up(store: &SqlStore) {
    use callbridge::campaign::clock::{Clock, ManualClock};
    use callbridge::exports::{ExportWorker, enqueue_call_exports};
    use callbridge::store::{AnalysisStatus, SettledAnalysis};
    use callbridge::tenant::vault::Vault;
    use callbridge_testkit::contract::Contract;
    use wiremock::matchers::{body_string_contains, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let keyring = Keyring::new(MasterKey::generate());
    let vault = Vault::new(store.clone(), keyring.clone());
    let dir = tempfile::tempdir().unwrap();
    let hook = "http://127.0.0.1:9/hook";
    let tenant_a = tenant_named(
        store,
        &keyring,
        hook,
        EgressPolicy::allow_loopback(),
        "acme",
    )
    .await;
    let tenant_b = tenant_named(
        store,
        &keyring,
        hook,
        EgressPolicy::allow_loopback(),
        "bravo",
    )
    .await;
    let small = dir.path().join("a.wav");
    let small_bytes: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&small, &small_bytes).unwrap();
    let large = dir.path().join("b.wav");
    let large_len = 5 * 1024 * 1024 + 1;
    std::fs::write(&large, vec![7u8; large_len]).unwrap();
    let call_a = ended_call_recorded(store, &tenant_a, 1, Some(small.display().to_string())).await;
    let call_b = ended_call_recorded(store, &tenant_b, 2, Some(large.display().to_string())).await;
    store.queue_analysis(&tenant_a.id, &call_a).await.unwrap();

    let file =
        |id: &str| json!({"kind": "drive#file", "id": id, "name": "n", "mimeType": "text/plain"});
    let mut servers = Vec::new();
    for (tenant, token, template) in [
        (&tenant_a, "ya29.A", "tmpl-A"),
        (&tenant_b, "ya29.B", "tmpl-missing"),
    ] {
        let server = MockServer::start().await;
        google_token_endpoint(&server, token).await;
        // The document copy is found on the attempt after it was made.
        Mock::given(method("GET"))
            .and(path("/drive/v3/files"))
            .and(|r: &Request| {
                r.url
                    .query_pairs()
                    .any(|(k, v)| k == "q" && v.contains("document:"))
            })
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"files": []})))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/drive/v3/files"))
            .and(|r: &Request| {
                r.url
                    .query_pairs()
                    .any(|(k, v)| k == "q" && v.contains("document:"))
            })
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"files": [file("doc-A1")]})),
            )
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/drive/v3/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"files": []})))
            .with_priority(3)
            .mount(&server)
            .await;
        // Google is down for tenant A's first upload.
        Mock::given(method("POST"))
            .and(path("/upload/drive/v3/files"))
            .and(query_param("uploadType", "multipart"))
            .and(body_string_contains(call_a.as_str()))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/upload/drive/v3/files"))
            .and(query_param("uploadType", "multipart"))
            .respond_with(ResponseTemplate::new(200).set_body_json(file("file-1")))
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/upload/drive/v3/files"))
            .and(query_param("uploadType", "resumable"))
            .respond_with(ResponseTemplate::new(200).insert_header(
                "location",
                format!(
                    "{}/upload/drive/v3/files?uploadType=resumable&upload_id=sess-1",
                    server.uri()
                ),
            ))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path("/upload/drive/v3/files"))
            .and(query_param("upload_id", "sess-1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(file("rec-2")))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/drive/v3/files/tmpl-A/copy"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "doc-A1", "name": "Visit report", "mimeType": "application/vnd.google-apps.document"
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/drive/v3/files/tmpl-missing/copy"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "error": {"code": 404, "message": "File not found: tmpl-missing.", "status": "NOT_FOUND"}
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/documents/doc-A1:batchUpdate"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/documents/doc-A1:batchUpdate"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"documentId": "doc-A1", "replies": []})),
            )
            .with_priority(2)
            .mount(&server)
            .await;
        let folder = if token == "ya29.A" {
            "folder-A"
        } else {
            "folder-B"
        };
        for (vendor, secret) in [
            ("google_drive", json!({"folder_id": folder})),
            (
                "google_docs",
                json!({"template_id": template, "folder_id": folder, "document_name": "Visit report"}),
            ),
        ] {
            let mut secret = secret;
            secret["client_id"] = json!("c");
            secret["client_secret"] = json!("s");
            secret["refresh_token"] = json!(format!("r-{token}"));
            secret["token_uri"] = json!(format!("{}/token", server.uri()));
            let base_url = format!("{}/", server.uri());
            connect(
                store,
                &vault,
                &tenant.id,
                (vendor, vendor),
                &secret,
                base_url,
            )
            .await;
        }
        servers.push(server);
    }
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let now = clock.now_ms();
    assert_eq!(
        enqueue_call_exports(store, &tenant_a.id, &call_a, Some("node-a"), now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        enqueue_call_exports(store, &tenant_b.id, &call_b, Some("node-a"), now)
            .await
            .unwrap(),
        2
    );
    let policy = export_policy();
    let on_node = |node: &str| {
        ExportWorker::new(store.clone(), Some(vault.clone()), policy.clone(), None)
            .with_clock(clock.clone() as Arc<dyn Clock>)
            .with_node(node)
    };
    let (worker, node_b) = (on_node("node-a"), on_node("node-b"));
    // The recordings are on node-a, alive: another node leaves the jobs to it.
    store.node_heartbeat("node-a", now).await.unwrap();
    assert_eq!(
        node_b.run_once().await.unwrap(),
        0,
        "pinned to the recording's node"
    );
    let (a, b) = (
        (&tenant_a.id, call_a.as_str()),
        (&tenant_b.id, call_b.as_str()),
    );

    // Pass 1: A's upload meets the outage, A's document waits for the analysis; B's files are
    // uploaded (the recording through a resumable session), B's template is missing.
    assert_eq!(worker.run_once().await.unwrap(), 4);
    let a_drive = expect_job(store, a, "google_drive", "pending", 1).await;
    assert!(a_drive.next_at >= now + 30_000, "backoff");
    let a_docs = expect_job(store, a, "google_docs", "pending", 1).await;
    assert_eq!(
        a_docs.last_error.as_deref(),
        Some("waiting for the call's analysis")
    );
    expect_job(store, b, "google_drive", "done", 1).await;
    // A 404 is not retried.
    let b_docs = expect_job(store, b, "google_docs", "failed", 1).await;
    assert_eq!(
        b_docs.last_error.as_deref(),
        Some(
            "not found: Docs template tmpl-missing (missing, or not shared with the connected account)"
        )
    );

    // The analysis is done; pass 2 uploads A's files, copies the template, meets a 429.
    let result = json!({
        "summary": "Ann wants a quote for three rooms.",
        "fields": {"postcode": "SW1A 1AA", "rooms": 3},
        "success": {"achieved": true, "reason": "quote requested"},
    });
    store
        .settle_analysis(
            &tenant_a.id,
            &call_a,
            &SettledAnalysis {
                status: AnalysisStatus::Done,
                attempts: 1,
                outcome: Ok(&result),
                model: "m",
                retry_at_ms: 0,
            },
        )
        .await
        .unwrap();
    clock.advance(chrono::Duration::seconds(31));
    assert_eq!(worker.run_once().await.unwrap(), 2);
    expect_job(store, a, "google_drive", "done", 2).await;
    let a_docs = expect_job(store, a, "google_docs", "pending", 2).await;
    assert!(
        a_docs.next_at >= clock.now_ms() + 600_000,
        "Retry-After is respected"
    );
    assert!(
        a_docs.last_error.as_deref().unwrap().contains("429"),
        "{:?}",
        a_docs.last_error
    );
    // node-a's heartbeat is now stale: any node takes its jobs over.
    clock.advance(chrono::Duration::seconds(601));
    assert_eq!(node_b.run_once().await.unwrap(), 1);
    expect_job(store, a, "google_docs", "done", 3).await;

    // What tenant A's server received.
    let requests = servers[0].received_requests().await.unwrap();
    let uploads: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path() == "/upload/drive/v3/files" && r.method.as_str() == "POST")
        .collect();
    assert_eq!(
        uploads.len(),
        3,
        "the failed upload, then the transcript and the recording once each"
    );
    let transcript = multipart_parts(uploads[1]);
    assert_eq!(transcript.len(), 2);
    assert!(transcript[0].0.contains("content-type: application/json"));
    let metadata: Value = serde_json::from_slice(&transcript[0].1).unwrap();
    assert_eq!(metadata["parents"], json!(["folder-A"]));
    assert_eq!(
        metadata["appProperties"]["callbridgeExport"],
        json!(format!("transcript:{call_a}"))
    );
    let name = metadata["name"].as_str().unwrap();
    assert!(
        name.contains(&call_a) && name.contains("+14155550001") && name.ends_with("transcript.txt"),
        "{name}"
    );
    assert!(transcript[1].0.contains("content-type: text/plain"));
    let text = String::from_utf8(transcript[1].1.clone()).unwrap();
    assert!(
        text.contains("agent: Acme, how can I help?") && text.contains("caller: Call number 1"),
        "{text}"
    );
    let recording = multipart_parts(uploads[2]);
    let metadata: Value = serde_json::from_slice(&recording[0].1).unwrap();
    assert!(
        metadata["name"]
            .as_str()
            .unwrap()
            .ends_with("recording.wav")
    );
    assert_eq!(
        metadata["appProperties"]["callbridgeExport"],
        json!(format!("recording:{call_a}"))
    );
    assert!(recording[1].0.contains("content-type: audio/wav"));
    assert_eq!(recording[1].1, small_bytes, "the recording, byte for byte");
    let copies: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/copy"))
        .collect();
    assert_eq!(copies.len(), 1, "the template is copied once");
    let copy: Value = serde_json::from_slice(&copies[0].body).unwrap();
    assert_eq!(copy["parents"], json!(["folder-A"]));
    assert!(
        copy["name"].as_str().unwrap().starts_with("20")
            && copy["name"].as_str().unwrap().ends_with("Visit report")
    );
    let fills: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.path().ends_with(":batchUpdate"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(fills.len(), 2, "the 429, then the fill");
    let replaced: HashMap<String, String> = fills[1]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = &r["replaceAllText"];
            assert_eq!(r["containsText"]["matchCase"], json!(true));
            (
                r["containsText"]["text"].as_str().unwrap().to_owned(),
                r["replaceText"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(replaced["{{caller}}"], "+14155550001");
    assert_eq!(replaced["{{to}}"], "+14155550100");
    assert_eq!(
        replaced["{{summary}}"],
        "Ann wants a quote for three rooms."
    );
    assert_eq!(replaced["{{outcome}}"], "goal met: quote requested");
    assert_eq!(replaced["{{field.postcode}}"], "SW1A 1AA");
    assert_eq!(replaced["{{field.rooms}}"], "3");
    assert!(replaced["{{transcript}}"].contains("caller: Call number 1"));

    // Tenant B's recording went through a resumable session, announced and sent whole.
    let b_requests = servers[1].received_requests().await.unwrap();
    let session = b_requests
        .iter()
        .find(|r| {
            r.url
                .query_pairs()
                .any(|(k, v)| k == "uploadType" && v == "resumable")
        })
        .expect("a resumable session");
    assert_eq!(
        session.headers["x-upload-content-length"].to_str().unwrap(),
        large_len.to_string()
    );
    assert_eq!(
        session.headers["x-upload-content-type"].to_str().unwrap(),
        "audio/wav"
    );
    let put = b_requests
        .iter()
        .find(|r| r.method.as_str() == "PUT")
        .expect("the content");
    assert_eq!(put.body.len(), large_len);

    // Isolation: each server saw only its tenant's token, folder and call.
    for (requests, token, other) in [
        (&requests, "Bearer ya29.A", &call_b),
        (&b_requests, "Bearer ya29.B", &call_a),
    ] {
        for r in requests.iter().filter(|r| r.url.path() != "/token") {
            assert_eq!(
                r.headers["authorization"].to_str().unwrap(),
                token,
                "{}",
                r.url
            );
            let seen = format!("{} {}", r.url, String::from_utf8_lossy(&r.body));
            assert!(
                !seen.contains(other.as_str()),
                "another tenant's call reached {}",
                r.url
            );
        }
    }
    for server in &servers {
        let all = server.received_requests().await.unwrap();
        let (docs, drive): (Vec<Request>, Vec<Request>) = all
            .into_iter()
            .filter(|r| r.url.path() != "/token")
            .partition(|r| r.url.path().starts_with("/v1/documents"));
        Contract::load("google-drive", &["drive.v3.swagger2.json"])
            .with_media(
                "PUT",
                "/upload/drive/v3/files",
                &["uploadType", "upload_id"],
            )
            .assert_requests(&drive);
        if !docs.is_empty() {
            Contract::load("google-docs", &["docs.v1.swagger2.json"]).assert_requests(&docs);
        }
    }
}

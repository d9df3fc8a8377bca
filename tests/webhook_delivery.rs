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
    let prompts = tempfile::tempdir().unwrap();
    let svc = AdminService::new(store.clone(), prompts.path().into(), Ok(keyring.clone()))
        .with_egress(egress);
    let admin = Principal::Admin;
    svc.create_tenant(
        &admin,
        CreateTenantRequest {
            id: Some("acme".into()),
            name: "Acme".into(),
            time_zone: "UTC".into(),
        },
    )
    .await
    .unwrap();
    let agent = svc
        .create_agent(
            &admin,
            "acme",
            serde_json::from_value::<AgentRequest>(json!({"name": "Front"})).unwrap(),
        )
        .await
        .unwrap();
    let generated = svc
        .generate_signing_secret(&admin, "acme", GenerateSigningSecretRequest::default())
        .await
        .unwrap();
    svc.put_webhook(
        &admin,
        "acme",
        WebhookRequest {
            url: url.into(),
            secret_name: generated.secret.name.clone(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        agent_id: agent.id,
        signing_secret: generated.signing_secret,
    }
}

async fn ended_call(store: &SqlStore, tenant: &Tenant, n: usize) -> String {
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
                recording_path: None,
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

/// Post-call exports share the durability rules: a Google Sheet's call-log row is queued once per
/// call and connector, a vendor outage is retried with backoff, a restarted worker (another lease
/// owner) finishes the job, the row has the tenant's configured columns, and a connector that
/// exports nothing is marked skipped.
async fn post_call_exports_retry_and_survive_a_restart(store: &SqlStore) {
    use callbridge::campaign::clock::{Clock, ManualClock};
    use callbridge::connectors::http::{HttpPolicy, PolicyConfig};
    use callbridge::exports::{ExportWorker, enqueue_call_exports};
    use callbridge::store::ConnectorSpec;
    use callbridge::tenant::vault::Vault;
    use secrecy::SecretString;
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let keyring = Keyring::new(MasterKey::generate());
    let tenant = tenant_with_webhook(store, &keyring, "http://127.0.0.1:9/hook").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.export", "expires_in": 3599, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
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
    vault
        .put(
            &tenant.id,
            "sheets",
            "google_sheets",
            &SecretString::from(secret.to_string()),
        )
        .await
        .unwrap();
    vault
        .put(
            &tenant.id,
            "cal",
            "calcom",
            &SecretString::from(json!({"api_key": "cal_x", "event_type_id": 1}).to_string()),
        )
        .await
        .unwrap();
    for (vendor, secret) in [("google_sheets", "sheets"), ("calcom", "cal")] {
        store
            .put_connector(
                &tenant.id,
                &ConnectorSpec {
                    vendor: vendor.into(),
                    base_url: Some(format!("{}/v4/", server.uri())),
                    secret_name: Some(secret.into()),
                },
            )
            .await
            .unwrap();
    }
    let call_id = ended_call(store, &tenant, 1).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let now = clock.now_ms();
    assert_eq!(
        enqueue_call_exports(store, &tenant.id, &call_id, now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        enqueue_call_exports(store, &tenant.id, &call_id, now)
            .await
            .unwrap(),
        0,
        "queued once"
    );
    let policy = HttpPolicy::new(PolicyConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        egress: EgressPolicy::allow_loopback(),
        ..PolicyConfig::default()
    })
    .unwrap();
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

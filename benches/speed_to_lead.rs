//! Speed to lead: from a vendor's signed webhook leaving the sender to the `CreateCall` request
//! reaching Twilio, through the product's own path — the HTTP route (`/hooks/{tenant}/{source}`,
//! Standard Webhooks signature verified, event stored in the inbox, 200), the inbound worker
//! (woken by the store; the rule enrols the lead in its call rule's campaign), and the campaign
//! dispatcher at its default tick (claims within the calling window, do-not-call and dial limits,
//! writes the call record, sends `CreateCall`) — against the fake Twilio REST server on 127.0.0.1,
//! on SQLite. The calling window is open (00:00–24:00 in the lead's zone).
//!
//! Run: `cargo bench --bench speed_to_lead`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use callbridge::campaign::{CampaignRunner, Dialer, RunnerOptions, SystemClock};
use callbridge::config::{Config, ServeArgs};
use callbridge::connectors::twilio_rest::TwilioRest;
use callbridge::inbound::{Action, ContactMapping, WorkerOptions};
use callbridge::store::{CallStatus, ContactState, Store};
use callbridge::tenant::vault::{Keyring, MasterKey};
use callbridge_testkit::fake_twilio_rest::{FakeTwilioRest, calls_spec};
use callbridge_testkit::{ACCOUNT_SID, AUTH_TOKEN, LOOPBACK_EGRESS, provision_dialling_tenant};
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

struct Setup {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    fake: FakeTwilioRest,
    store: callbridge::store::SqlStore,
    tenant: callbridge::store::TenantId,
    campaign_id: String,
    next: std::sync::atomic::AtomicU32,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let public_url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = Config::resolve(ServeArgs {
        public_url: Some(public_url.clone()),
        twilio_account_sid: Some(ACCOUNT_SID.into()),
        twilio_auth_token: Some(AUTH_TOKEN.into()),
        openai_api_key: Some("sk-bench".into()),
        openai_realtime_url: Some("ws://127.0.0.1:9".into()),
        database_url: Some(database_url),
        egress_allow: Some(LOOPBACK_EGRESS.into()),
        ..ServeArgs::default()
    })
    .expect("configuration");
    let keyring = Keyring::new(MasterKey::generate());
    let app = callbridge::build_deps_with(config, Some(keyring))
        .await
        .expect("app");
    let (tenant, _) = provision_dialling_tenant(&app.store, "acme", 10_000).await;
    let agent = app.store.list_agents(&tenant).await.expect("agents")[0]
        .id
        .clone();
    let created = app
        .inbound
        .create_source(&tenant, "crm", "standard", None)
        .await
        .expect("source");
    let secret = created.secret.expect("secret").expose_secret().to_owned();
    let rule = app
        .inbound
        .create_rule(
            &tenant,
            "speed to lead",
            "crm",
            "lead.created",
            Vec::new(),
            Action::Call {
                agent_id: agent,
                contact: ContactMapping {
                    phone: "data.phone".into(),
                    variables: [("name".to_owned(), "data.first_name".to_owned())].into(),
                    time_zone: Some("data.tz".into()),
                },
                hours: Some("00:00-24:00".into()),
                days: Some("all".into()),
                max_attempts: None,
                campaign_id: None,
            },
        )
        .await
        .expect("rule");
    let Ok(Action::Call {
        campaign_id: Some(campaign_id),
        ..
    }) = serde_json::from_str::<Action>(&rule.action)
    else {
        panic!("call rule without campaign");
    };
    let fake = FakeTwilioRest::start(&calls_spec().expect("spec"), ACCOUNT_SID, AUTH_TOKEN)
        .await
        .expect("fake Twilio");
    let rest =
        TwilioRest::new(&app.policy, &fake.base_url, ACCOUNT_SID, AUTH_TOKEN).expect("client");
    // What `serve` starts: the inbound worker and the campaign dispatcher, at their defaults.
    let runner = CampaignRunner::new(
        app.store.clone(),
        Dialer::new(rest, &public_url, AUTH_TOKEN),
        Arc::new(SystemClock),
        app.metrics.clone(),
        RunnerOptions {
            node_id: "bench".into(),
            tick: app.config.campaigns.tick,
            ..RunnerOptions::default()
        },
    )
    .expect("runner");
    std::mem::forget(runner.spawn());
    std::mem::forget(app.inbound.clone().spawn_worker(WorkerOptions {
        node_id: "bench".into(),
        ..WorkerOptions::default()
    }));
    let store = app.store.clone();
    let (limits, metrics) = (app.config.http, app.metrics.clone());
    let router = callbridge::http::router(app);
    // The product's own listener, with its limits.
    tokio::spawn(callbridge::http::serve(
        listener,
        router,
        limits,
        metrics,
        std::future::pending(),
    ));
    Setup {
        client: reqwest::Client::new(),
        url: format!("{public_url}/hooks/acme/crm"),
        secret: STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .expect("secret"),
        fake,
        store,
        tenant,
        campaign_id,
        next: std::sync::atomic::AtomicU32::new(0),
        _dir: dir,
    }
}

impl Setup {
    /// One lead: signed POST → `CreateCall` at the fake; returns the latency.
    async fn lead(&self) -> Duration {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let phone = format!("+1415555{:04}", 2000 + n % 7000);
        let body = serde_json::json!({
            "type": "lead.created",
            "data": {"phone": phone, "first_name": "Ana", "tz": "Etc/UTC"}
        })
        .to_string();
        let id = format!("msg_{n}_{}", rand::random::<u32>());
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("key");
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let before = self.fake.calls().len();
        let started = Instant::now();
        let response = self
            .client
            .post(&self.url)
            .header("webhook-id", &id)
            .header("webhook-timestamp", &ts)
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 200);
        while self.fake.calls().len() == before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no call placed"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let elapsed = started.elapsed();
        self.hang_up().await;
        elapsed
    }

    /// Ends the calls placed (as their status callback would), outside the measurement, so
    /// the campaign's concurrency cap never binds.
    async fn hang_up(&self) {
        let contacts = self
            .store
            .campaign_contacts(&self.tenant, &self.campaign_id, -1, 100_000)
            .await
            .expect("contacts");
        for contact in contacts {
            if matches!(contact.state, ContactState::InCall | ContactState::Dialing)
                && let Some(call) = contact.call_id
            {
                let _ = self
                    .store
                    .advance_call_status(&call, CallStatus::Completed)
                    .await;
            }
        }
    }
}

fn speed_to_lead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let setup = runtime.block_on(setup());
    let mut group = c.benchmark_group("speed_to_lead");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("signed_webhook_to_create_call", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += setup.lead().await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, speed_to_lead);
criterion_main!(benches);

//! Loopback fakes for callbridge's end-to-end tests and its load generator: a fake Twilio (signed
//! webhook and upgrade, paced caller audio, a playout model that echoes marks and honours `clear`),
//! a fake OpenAI Realtime server (GA events, energy VAD, scripted turns, strict validation; also in
//! xAI and Azure flavors), a fake Gemini Live server, and a helper that runs the real bridge
//! in-process on 127.0.0.1. Nothing here is part of the product.

pub mod contract;
pub mod fake_gemini;
pub mod fake_oauth;
pub mod fake_realtime;
pub mod fake_responses;
pub mod fake_twilio;
pub mod fake_twilio_rest;
pub mod ulaw;
pub mod vendor_mocks;

use std::net::SocketAddr;
use std::sync::Arc;

use callbridge::config::{Config, ServeArgs};
use callbridge::metrics::Metrics;

pub const AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// The egress allow-list the in-process bridge and the test clients use: loopback only, because
/// every mock listens on 127.0.0.1 (the product's default is strict; this is the explicit setting).
pub const LOOPBACK_EGRESS: &str = "127.0.0.0/8,::1/128,localhost";

/// The outbound HTTP policy with loopback allowed, for clients that talk to a 127.0.0.1 mock.
pub fn loopback_policy() -> callbridge::connectors::http::HttpPolicy {
    callbridge::connectors::http::HttpPolicy::new(callbridge::connectors::http::PolicyConfig {
        egress: callbridge::egress::EgressPolicy::allow_loopback(),
        ..Default::default()
    })
    .expect("the HTTP client builds")
}

/// The real bridge, serving on 127.0.0.1 in this process.
pub struct TestBridge {
    pub addr: SocketAddr,
    pub public_url: String,
    pub metrics: Arc<Metrics>,
    pub store: callbridge::store::SqlStore,
    /// The vault's keyring the bridge runs with (tests seal secrets with it).
    pub keyring: callbridge::tenant::vault::Keyring,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestBridge {
    /// Starts the bridge against the realtime server at `realtime_url`; `tweak` adjusts settings.
    pub async fn start(realtime_url: &str, tweak: impl FnOnce(&mut ServeArgs)) -> TestBridge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind bridge");
        let addr = listener.local_addr().expect("addr");
        let public_url = format!("http://{addr}");
        let mut args = ServeArgs {
            public_url: Some(public_url.clone()),
            twilio_account_sid: Some(ACCOUNT_SID.into()),
            twilio_auth_token: Some(AUTH_TOKEN.into()),
            openai_api_key: Some("sk-test-key".into()),
            openai_realtime_url: Some(realtime_url.into()),
            database_url: Some("sqlite::memory:".into()),
            // Vendor and Twilio mocks listen on 127.0.0.1; a test that checks the guard itself
            // sets this back to `None` (strict).
            egress_allow: Some(LOOPBACK_EGRESS.into()),
            ..ServeArgs::default()
        };
        tweak(&mut args);
        let config = Config::resolve(args).expect("test configuration is valid");
        let config_limits = config.http;
        let keyring = callbridge::tenant::vault::Keyring::new(
            callbridge::tenant::vault::MasterKey::generate(),
        );
        let deps = callbridge::build_deps_with(config, Some(keyring.clone()))
            .await
            .expect("in-memory store opens");
        let metrics = deps.metrics.clone();
        let store = deps.store.clone();
        let app = callbridge::http::router(deps);
        // The product's own listener, with its limits (CALLBRIDGE_HTTP_*).
        let limits = config_limits;
        let served_metrics = metrics.clone();
        let task = tokio::spawn(callbridge::http::serve(
            listener,
            app,
            limits,
            served_metrics,
            std::future::pending(),
        ));
        TestBridge {
            addr,
            public_url,
            metrics,
            store,
            keyring,
            task,
        }
    }

    /// The vault over the bridge's store and keyring.
    pub fn vault(&self) -> callbridge::tenant::vault::Vault<callbridge::store::SqlStore> {
        callbridge::tenant::vault::Vault::new(self.store.clone(), self.keyring.clone())
    }

    pub fn twilio(&self) -> fake_twilio::FakeTwilio {
        fake_twilio::FakeTwilio {
            bridge: self.addr,
            public_url: self.public_url.clone(),
            auth_token: AUTH_TOKEN.into(),
            account_sid: ACCOUNT_SID.into(),
        }
    }
}

/// The number [`fake_twilio::FakeTwilio::call`] dials.
pub const CALLED_NUMBER: &str = "+15005550006";

/// Creates tenant `tenant` with one agent answering [`CALLED_NUMBER`].
pub async fn provision_agent(
    store: &callbridge::store::SqlStore,
    tenant: &str,
    agent: callbridge::store::AgentSpec,
) -> callbridge::store::TenantId {
    use callbridge::store::{E164, NewTenant, Store, TenantId};
    let id = TenantId::parse(tenant).expect("valid tenant id");
    store
        .create_tenant(&NewTenant {
            id: id.clone(),
            name: format!("{tenant} Inc."),
            time_zone: "America/New_York".into(),
        })
        .await
        .expect("create tenant");
    store
        .create_agent(
            &id,
            &agent,
            &[E164::parse(CALLED_NUMBER).expect("valid number")],
        )
        .await
        .expect("create agent");
    id
}

/// A tenant with one agent (see [`provision_agent`]) whose dialling limits allow
/// `max_concurrent` calls at once without pacing, for campaign tests; returns the tenant and the
/// agent's id.
pub async fn provision_dialling_tenant(
    store: &callbridge::store::SqlStore,
    tenant: &str,
    max_concurrent: u32,
) -> (callbridge::store::TenantId, String) {
    use callbridge::store::{Store, TenantDialLimits};
    let id = provision_agent(store, tenant, agent_spec("openai", "gpt-realtime", "alloy")).await;
    store
        .set_tenant_dial_limits(
            &id,
            TenantDialLimits {
                max_concurrent,
                dial_interval_ms: 0,
            },
        )
        .await
        .expect("tenant dial limits");
    let agent = store.list_agents(&id).await.expect("agents")[0].id.clone();
    (id, agent)
}

/// An agent of `provider` with the built-in prompt and the time tool.
pub fn agent_spec(provider: &str, model: &str, voice: &str) -> callbridge::store::AgentSpec {
    callbridge::store::AgentSpec {
        name: "front-desk".into(),
        provider: provider.into(),
        model: model.into(),
        voice: voice.into(),
        prompt_template: "default".into(),
        enabled_tools: vec!["get_current_time".into()],
        max_duration_s: 600,
        silence_timeout_s: 45,
        recording: false,
        voicemail: None,
    }
}

/// The tenant's only call, once it has ended (panics after 5 s).
pub async fn ended_call(
    store: &callbridge::store::SqlStore,
    tenant: &callbridge::store::TenantId,
) -> callbridge::store::Call {
    use callbridge::store::Store;
    for _ in 0..250 {
        let calls = store.list_calls(tenant, 10).await.expect("list calls");
        if let Some(call) = calls.into_iter().find(|c| c.ended_at.is_some()) {
            return call;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the call never ended in the store");
}

/// The fakes' WebSocket buffers, sized like the bridge's (`call::driver`): the library's default
/// read size (128 KiB) is zero-filled before every read, which at load-test scale made the
/// generator, not the bridge, the limit. A larger message still arrives whole (the buffer grows).
pub fn fake_socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
}

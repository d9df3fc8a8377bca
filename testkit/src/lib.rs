//! Loopback fakes for callbridge's end-to-end tests and its load generator: a fake Twilio (signed
//! webhook and upgrade, paced caller audio, a playout model that echoes marks and honours `clear`),
//! a fake OpenAI Realtime server (GA events, energy VAD, scripted turns, strict validation), and a
//! helper that runs the real bridge in-process on 127.0.0.1. Nothing here is part of the product.

pub mod fake_realtime;
pub mod fake_twilio;
pub mod ulaw;

use std::net::SocketAddr;
use std::sync::Arc;

use callbridge::config::{Config, ServeArgs};
use callbridge::metrics::Metrics;

pub const AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// The real bridge, serving on 127.0.0.1 in this process.
pub struct TestBridge {
    pub addr: SocketAddr,
    pub public_url: String,
    pub metrics: Arc<Metrics>,
    pub store: callbridge::store::SqlStore,
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
            ..ServeArgs::default()
        };
        tweak(&mut args);
        let config = Config::resolve(args).expect("test configuration is valid");
        let deps = callbridge::build_deps(config)
            .await
            .expect("in-memory store opens");
        let metrics = deps.metrics.clone();
        let store = deps.store.clone();
        let app = callbridge::http::router(deps);
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestBridge {
            addr,
            public_url,
            metrics,
            store,
            task,
        }
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

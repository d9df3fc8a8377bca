//! Test harness of the admin API suites: serves the API router on 127.0.0.1 over a given store,
//! with a fixed admin key, a temporary prompts directory and (optionally) a master key, and a
//! small JSON client.
#![allow(dead_code)]

use std::net::SocketAddr;

use callbridge::admin::AdminService;
use callbridge::http::api::{ApiState, router_with};
use callbridge::store::SqlStore;
use callbridge::tenant::vault::{Keyring, MasterKey, VaultError};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdefghij";

pub struct TestApi {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub prompts: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A response: status and JSON body (`Value::Null` for an empty body).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl TestApi {
    /// Serves the API with a master key (secrets work).
    pub async fn start(store: &SqlStore) -> Self {
        Self::start_with(store, Ok(Keyring::new(MasterKey::generate()))).await
    }

    /// Serves the API with no master key (secret writes answer 503).
    pub async fn start_without_vault(store: &SqlStore) -> Self {
        Self::start_with(store, Err(VaultError::MissingMasterKey)).await
    }

    async fn start_with(store: &SqlStore, keyring: Result<Keyring, VaultError>) -> Self {
        // reqwest is built without a bundled TLS provider; the crate uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prompts = tempfile::tempdir().expect("prompts dir");
        std::fs::write(
            prompts.path().join("dental.md"),
            "You are the receptionist. The caller is {{caller}}.",
        )
        .expect("write prompt");
        // The tests' receivers and mocks listen on 127.0.0.1: the operator's allow-list for it. A
        // deployment with an OpenAI key only (agents on other providers are refused).
        let vault = keyring
            .as_ref()
            .ok()
            .map(|k| callbridge::tenant::vault::Vault::new(store.clone(), k.clone()));
        let service = AdminService::new(store.clone(), prompts.path().to_owned(), keyring)
            .with_egress(callbridge::egress::EgressPolicy::allow_loopback())
            .with_providers(vec!["openai"])
            .with_inbound(callbridge::inbound::InboundService::new(
                store.clone(),
                vault,
                None,
                "https://bridge.example.com",
                std::sync::Arc::default(),
                std::sync::Arc::new(callbridge::campaign::SystemClock),
            ));
        let state = ApiState::new(service, Some(SecretString::from(ADMIN_KEY)));
        let app: axum::Router = axum::Router::new().nest("/api/v1", router_with(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}/api/v1"),
            addr,
            client: reqwest::Client::new(),
            prompts,
            server,
        }
    }

    /// Sends `body` as JSON (when given) with `key` as bearer (when given).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::reply(request.send().await.expect("request")).await
    }

    /// Sends raw bytes with a JSON content type.
    pub async fn raw(&self, method: Method, path: &str, key: &str, body: Vec<u8>) -> Reply {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body);
        Self::reply(request.send().await.expect("request")).await
    }

    async fn reply(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Reply { status, body, text }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        self.call(Method::DELETE, path, Some(key), None).await
    }
}

/// Asserts the status and the JSON error code; returns the body.
#[track_caller]
pub fn expect_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body["error"]["code"], code, "{reply:?}");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply:?}"
    );
    reply.body.clone()
}

/// Creates a tenant with an agent (`Front`), a number, a secret, a connector, a webhook, an API
/// key and an ended call with events. Returns the tenant's key and the ids of its objects.
pub struct Seeded {
    pub tenant: String,
    pub key: String,
    pub key_id: String,
    pub agent_id: String,
    pub number: String,
    pub secret: String,
    pub call_id: String,
}

pub async fn seed_tenant(api: &TestApi, store: &SqlStore, tenant: &str, number: &str) -> Seeded {
    use callbridge::store::{
        CallDirection, CallEnd, CallEventKind, CallStatus, NewCall, Store, TenantId,
    };

    let r = api
        .post(
            "/tenants",
            ADMIN_KEY,
            serde_json::json!({"id": tenant, "name": format!("Tenant {tenant}"), "time_zone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api
        .post(
            &format!("/tenants/{tenant}/api-keys"),
            ADMIN_KEY,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let key = r.body["key"].as_str().expect("key").to_owned();
    let key_id = r.body["api_key"]["id"].as_str().expect("key id").to_owned();
    // The CRM connector first: an agent may enable only tools the tenant can run.
    let secret = format!("sk_{tenant}_0123456789abcdef");
    let r = api
        .put(
            &format!("/tenants/{tenant}/secrets/hubspot-token"),
            &key,
            serde_json::json!({"vendor": "hubspot", "value": secret}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api
        .put(
            &format!("/tenants/{tenant}/connectors/hubspot"),
            &key,
            serde_json::json!({"secret_name": "hubspot-token"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The prompt directory's template becomes the tenant's own prompt.
    let r = api
        .post(
            &format!("/tenants/{tenant}/prompt-imports"),
            &key,
            serde_json::json!({"template": "dental"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api
        .post(
            &format!("/tenants/{tenant}/agents"),
            &key,
            serde_json::json!({"name": "Front", "prompt_template": "dental", "enabled_tools": ["log_call_note"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let agent_id = r.body["id"].as_str().expect("agent id").to_owned();
    let r = api
        .post(
            &format!("/tenants/{tenant}/numbers"),
            &key,
            serde_json::json!({"number": number, "agent": "Front"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api
        .call(
            Method::POST,
            &format!("/tenants/{tenant}/webhook/signing-secret"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = api
        .put(
            &format!("/tenants/{tenant}/webhook"),
            &key,
            serde_json::json!({"url": "https://hooks.example.com/calls", "secret_name": "webhook-signing"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let tenant_id = TenantId::parse(tenant).expect("tenant id");
    let call = store
        .create_call(&NewCall {
            tenant_id: tenant_id.clone(),
            agent_id: agent_id.clone(),
            direction: CallDirection::Inbound,
            from: "+14155550111".into(),
            to: number.into(),
            twilio_call_sid: Some(format!("CA{tenant}")),
            status: CallStatus::InProgress,
        })
        .await
        .expect("create call");
    store
        .append_call_event(
            &tenant_id,
            &call.id,
            CallEventKind::Transcript,
            &serde_json::json!({"role": "caller", "text": "Hi"}),
        )
        .await
        .expect("event");
    store
        .finish_call(
            &tenant_id,
            &call.id,
            &CallEnd {
                status: CallStatus::Completed,
                end_reason: "caller_hangup".into(),
                recording_path: None,
            },
        )
        .await
        .expect("finish call");
    Seeded {
        tenant: tenant.into(),
        key,
        key_id,
        agent_id,
        number: number.into(),
        secret,
        call_id: call.id,
    }
}

/// Every GET view of a tenant, as the admin sees it, for before/after comparisons.
pub async fn snapshot(api: &TestApi, tenant: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in [
        "",
        "/api-keys",
        "/numbers",
        "/agents",
        "/connectors",
        "/secrets",
        "/calls",
        "/webhook",
    ] {
        let full = format!("/tenants/{tenant}{path}");
        let r = api.get(&full, ADMIN_KEY).await;
        assert_eq!(r.status, 200, "{full}: {r:?}");
        out.push((full, r.body));
    }
    out
}

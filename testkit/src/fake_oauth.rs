//! A standards-following OAuth 2.0 authorization server on 127.0.0.1, for the gateway's tests:
//! authorization endpoint (RFC 6749 §4.1, consent given or refused by a switch), token endpoint
//! (authorization_code with PKCE S256 required (RFC 7636), exact redirect URI, single-use codes;
//! refresh_token with rotation), revocation (RFC 7009), and a protected resource at every other
//! path that answers 200 only to a live access token (so a connector pointed here proves which
//! token it sent). Time is the server's own clock, moved by the test.
//!
//! It must not accept what a real server refuses: a wrong verifier, a replayed code, a spent or
//! revoked refresh token all answer `invalid_grant`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct FakeOAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    /// The one redirect URI registered for the client (compared exactly).
    pub redirect_uri: String,
    pub access_ttl_s: i64,
    /// Issue a new refresh token on each refresh and retire the old one.
    pub rotate_refresh_tokens: bool,
    /// Extra fields of every token response (`instance_url`, `api_domain`, `id`).
    pub extra_token_fields: Map<String, Value>,
    /// Extra query parameters of the redirect back (`accounts-server`).
    pub extra_redirect_params: Vec<(String, String)>,
    /// How long a refresh takes (to make concurrent refreshes overlap).
    pub refresh_delay: Duration,
    /// Answer the token endpoint as Slack does: `"ok": true` in each token response, and errors
    /// as HTTP 200 `{"ok": false, "error": …}`.
    pub ok_envelope: bool,
    /// The error code a refresh with an unknown or revoked refresh token is refused with
    /// (`invalid_grant`; Slack answers `invalid_refresh_token` or `token_revoked`).
    pub refresh_refusal: &'static str,
}

impl FakeOAuthConfig {
    pub fn new(redirect_uri: &str) -> Self {
        Self {
            client_id: "client-abc".into(),
            client_secret: "client-secret-xyz-0123456789".into(),
            redirect_uri: redirect_uri.into(),
            access_ttl_s: 3600,
            rotate_refresh_tokens: true,
            extra_token_fields: Map::new(),
            extra_redirect_params: Vec::new(),
            refresh_delay: Duration::ZERO,
            ok_envelope: false,
            refresh_refusal: "invalid_grant",
        }
    }
}

struct Code {
    challenge: Option<String>,
    redirect_uri: String,
    scope: String,
    used: bool,
}

#[derive(Default)]
struct Grants {
    codes: HashMap<String, Code>,
    /// refresh token → live?
    refresh: HashMap<String, bool>,
    /// access token → expiry (server seconds)
    access: HashMap<String, i64>,
    /// Every access token the resource endpoint accepted, in order.
    accepted: Vec<String>,
}

struct Shared {
    config: Mutex<FakeOAuthConfig>,
    grants: Mutex<Grants>,
    now_s: AtomicI64,
    deny: Mutex<bool>,
    pub_token_requests: AtomicUsize,
    refresh_requests: AtomicUsize,
    revocations: AtomicUsize,
    /// Every token request body, for the leak scan.
    bodies: Mutex<Vec<String>>,
}

/// The running server.
#[derive(Clone)]
pub struct FakeOAuth {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": code }).to_string(),
    )
        .into_response()
}

impl FakeOAuth {
    pub async fn start(config: FakeOAuthConfig) -> Self {
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            grants: Mutex::new(Grants::default()),
            now_s: AtomicI64::new(1_000_000),
            deny: Mutex::new(false),
            pub_token_requests: AtomicUsize::new(0),
            refresh_requests: AtomicUsize::new(0),
            revocations: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            // Zoho's path, for the data-centre switch (the host comes from the callback).
            .route("/oauth/v2/token", post(token))
            .route("/revoke", post(revoke))
            .fallback(resource)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake OAuth server");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Moves the server's clock.
    pub fn advance(&self, seconds: i64) {
        self.shared.now_s.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Makes the next consents refused (`error=access_denied`).
    pub fn deny_consent(&self, deny: bool) {
        *self.shared.deny.lock().expect("lock") = deny;
    }

    pub fn configure(&self, change: impl FnOnce(&mut FakeOAuthConfig)) {
        change(&mut self.shared.config.lock().expect("lock"));
    }

    pub fn token_requests(&self) -> usize {
        self.shared.pub_token_requests.load(Ordering::SeqCst)
    }

    pub fn refresh_requests(&self) -> usize {
        self.shared.refresh_requests.load(Ordering::SeqCst)
    }

    pub fn revocations(&self) -> usize {
        self.shared.revocations.load(Ordering::SeqCst)
    }

    /// Whether `refresh_token` is still live.
    pub fn refresh_token_live(&self, refresh_token: &str) -> bool {
        self.shared
            .grants
            .lock()
            .expect("lock")
            .refresh
            .get(refresh_token)
            .copied()
            .unwrap_or(false)
    }

    /// Every refresh token ever issued (live or not).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.shared
            .grants
            .lock()
            .expect("lock")
            .refresh
            .keys()
            .cloned()
            .collect()
    }

    /// Every access token ever issued.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.shared
            .grants
            .lock()
            .expect("lock")
            .access
            .keys()
            .cloned()
            .collect()
    }

    /// The access tokens the protected resource accepted, in order.
    pub fn accepted_tokens(&self) -> Vec<String> {
        self.shared.grants.lock().expect("lock").accepted.clone()
    }

    /// Revokes every refresh token (the user removed the app at the vendor).
    pub fn revoke_all(&self) {
        let mut grants = self.shared.grants.lock().expect("lock");
        for live in grants.refresh.values_mut() {
            *live = false;
        }
    }

    /// Follows the authorization endpoint as a consenting user would: returns the query
    /// parameters of the redirect back to the bridge.
    pub async fn consent(&self, authorization_url: &str) -> HashMap<String, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let response = client
            .get(authorization_url)
            .send()
            .await
            .expect("authorize");
        assert_eq!(
            response.status(),
            302,
            "authorize: {:?}",
            response.text().await
        );
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned();
        let url = reqwest::Url::parse(&location).expect("redirect URL");
        url.query_pairs().into_owned().collect()
    }
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let config = shared.config.lock().expect("lock").clone();
    if query.get("client_id") != Some(&config.client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    // RFC 6749 §3.1.2.4: a mismatched redirect URI is never redirected to.
    if query.get("redirect_uri") != Some(&config.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "redirect_uri mismatch").into_response();
    }
    if query.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "response_type must be code").into_response();
    }
    let state = query.get("state").cloned().unwrap_or_default();
    let mut back = reqwest::Url::parse(&config.redirect_uri).expect("redirect URI");
    if *shared.deny.lock().expect("lock") {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &state);
    } else {
        let challenge = match (
            query.get("code_challenge"),
            query.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            (Some(_), _) => {
                return (StatusCode::BAD_REQUEST, "only S256 is accepted").into_response();
            }
            (None, _) => None,
        };
        let code = random_token("code-");
        shared.grants.lock().expect("lock").codes.insert(
            code.clone(),
            Code {
                challenge,
                redirect_uri: config.redirect_uri.clone(),
                scope: query.get("scope").cloned().unwrap_or_default(),
                used: false,
            },
        );
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
        for (name, value) in &config.extra_redirect_params {
            back.query_pairs_mut().append_pair(name, value);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

/// Client authentication: HTTP basic or the body (RFC 6749 §2.3.1).
fn client_ok(
    config: &FakeOAuthConfig,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> bool {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let Ok(decoded) = STANDARD.decode(basic) else {
            return false;
        };
        let text = String::from_utf8_lossy(&decoded).to_string();
        let Some((id, secret)) = text.split_once(':') else {
            return false;
        };
        let id = urlencoding_decode(id);
        let secret = urlencoding_decode(secret);
        return id == config.client_id && secret == config.client_secret;
    }
    form.get("client_id") == Some(&config.client_id)
        && form.get("client_secret") == Some(&config.client_secret)
}

fn urlencoding_decode(text: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
        .ok()
        .and_then(|mut pairs| pairs.pop())
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn issue(shared: &Shared, config: &FakeOAuthConfig, scope: &str, refresh: bool) -> Value {
    let now = shared.now_s.load(Ordering::SeqCst);
    let access = random_token("at-");
    let mut grants = shared.grants.lock().expect("lock");
    grants
        .access
        .insert(access.clone(), now + config.access_ttl_s);
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": config.access_ttl_s,
        "scope": scope,
    });
    if refresh {
        let rt = random_token("rt-");
        grants.refresh.insert(rt.clone(), true);
        body["refresh_token"] = Value::String(rt);
    }
    if let Some(object) = body.as_object_mut() {
        for (k, v) in &config.extra_token_fields {
            object.insert(k.clone(), v.clone());
        }
    }
    body
}

/// A token-endpoint refusal in the configured shape.
fn refused(config: &FakeOAuthConfig, code: &str) -> Response {
    if config.ok_envelope {
        return Json(json!({ "ok": false, "error": code })).into_response();
    }
    oauth_error(code)
}

/// A token response in the configured shape.
fn answer(config: &FakeOAuthConfig, mut body: Value) -> Response {
    if config.ok_envelope {
        body["ok"] = Value::Bool(true);
    }
    Json(body).into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    shared.pub_token_requests.fetch_add(1, Ordering::SeqCst);
    shared.bodies.lock().expect("lock").push(body.clone());
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let config = shared.config.lock().expect("lock").clone();
    if !client_ok(&config, &headers, &form) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "error": "invalid_client" }).to_string(),
        )
            .into_response();
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let scope = {
                let mut grants = shared.grants.lock().expect("lock");
                let Some(grant) = grants.codes.get_mut(&code) else {
                    return refused(&config, "invalid_grant");
                };
                if grant.used {
                    return refused(&config, "invalid_grant");
                }
                grant.used = true;
                if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                    return refused(&config, "invalid_grant");
                }
                if let Some(challenge) = &grant.challenge {
                    let Some(verifier) = form.get("code_verifier") else {
                        return refused(&config, "invalid_grant");
                    };
                    let digest = ring_sha256(verifier.as_bytes());
                    if URL_SAFE_NO_PAD.encode(digest) != *challenge {
                        return refused(&config, "invalid_grant");
                    }
                }
                grant.scope.clone()
            };
            answer(&config, issue(&shared, &config, &scope, true))
        }
        Some("refresh_token") => {
            shared.refresh_requests.fetch_add(1, Ordering::SeqCst);
            if !config.refresh_delay.is_zero() {
                tokio::time::sleep(config.refresh_delay).await;
            }
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            {
                let mut grants = shared.grants.lock().expect("lock");
                match grants.refresh.get_mut(&rt) {
                    Some(live) if *live => {
                        if config.rotate_refresh_tokens {
                            *live = false;
                        }
                    }
                    _ => return refused(&config, config.refresh_refusal),
                }
            }
            answer(
                &config,
                issue(&shared, &config, "", config.rotate_refresh_tokens),
            )
        }
        _ => refused(&config, "unsupported_grant_type"),
    }
}

struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let config = shared.config.lock().expect("lock").clone();
    if !client_ok(&config, &headers, &form) {
        return (StatusCode::UNAUTHORIZED, "invalid_client").into_response();
    }
    shared.revocations.fetch_add(1, Ordering::SeqCst);
    let token = form.get("token").cloned().unwrap_or_default();
    let mut grants = shared.grants.lock().expect("lock");
    if let Some(live) = grants.refresh.get_mut(&token) {
        *live = false;
        // Revoking the refresh token ends the grant's access tokens too (RFC 7009 §2.1).
        grants.access.clear();
    }
    grants.access.remove(&token);
    StatusCode::OK.into_response()
}

/// Every other path: a protected resource.
async fn resource(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let now = shared.now_s.load(Ordering::SeqCst);
    let mut grants = shared.grants.lock().expect("lock");
    match grants.access.get(&token) {
        Some(expiry) if *expiry > now => {
            grants.accepted.push(token);
            Json(json!({ "results": [], "items": [] })).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "status": "error", "message": "expired or unknown token" }).to_string(),
        )
            .into_response(),
    }
}

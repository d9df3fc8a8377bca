//! The shared vendor client: what every connector used to write for itself, written once.
//!
//! Owns: joining paths onto a vendor's base URL (each segment percent-encoded, never a double
//! slash), attaching the credentials ([`Auth`]: bearer, a custom header, basic, or an OAuth
//! [`TokenSource`] with the refresh-once-on-401-then-retry rule), a typed request builder
//! ([`VendorRequest`]: method, path, query, JSON, form or raw bytes body — [`multipart_related`]
//! builds Google's two-part uploads —, extra headers, replay rule, idempotency key), sending through the one [`HttpPolicy`] (retries, breaker, egress guard stay there), and
//! mapping failures to [`ConnectorError`] (status and the vendor's redacted body come from the
//! policy). It must not know any vendor, retry by itself (the only resend is the single one after a
//! refused OAuth token), or log a credential: secrets live in `SecretString`s and go out as
//! sensitive header values.

use std::fmt;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::ConnectorError;
use crate::connectors::http::{
    ConnectorProfile, HttpPolicy, PolicyError, PolicyResponse, Replay, RequestContext,
};

/// Where an OAuth access token comes from: a refresh-token grant, a Google service account, the
/// tenant's OAuth connection, … The [`VendorClient`] asks for [`TokenSource::token`] before each
/// request and, when the vendor answers 401, calls [`TokenSource::refresh`] once and resends once.
///
/// Implementations cache the token, refresh it before it expires, and send their own token
/// requests through the shared policy. They must never log or display a token.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A token to send now: the cached one while it is valid, else a freshly obtained one.
    async fn token(&self, ctx: &RequestContext) -> Result<SecretString, ConnectorError>;

    /// The vendor refused `rejected` (HTTP 401): return a different, freshly obtained token. When
    /// a concurrent caller already replaced `rejected`, returning that newer token is enough.
    async fn refresh(
        &self,
        ctx: &RequestContext,
        rejected: &SecretString,
    ) -> Result<SecretString, ConnectorError>;
}

/// How a vendor's requests carry the tenant's credentials.
#[derive(Clone)]
pub enum Auth {
    /// Nothing (a public endpoint, or credentials in the body).
    None,
    /// `Authorization: Bearer <token>` with a static token (API key, private-app token).
    Bearer(SecretString),
    /// The secret in a header of the vendor's choosing (`X-Shopify-Access-Token`, `api-key`).
    Header {
        name: HeaderName,
        value: SecretString,
    },
    /// HTTP basic auth (`Authorization: Basic base64(user:password)`).
    Basic {
        username: String,
        password: SecretString,
    },
    /// `Authorization: Bearer <token>` from a token source, refreshed once after a 401.
    OAuth(Arc<dyn TokenSource>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the kind: no secret, no user name.
        f.write_str(match self {
            Self::None => "Auth::None",
            Self::Bearer(_) => "Auth::Bearer",
            Self::Header { .. } => "Auth::Header",
            Self::Basic { .. } => "Auth::Basic",
            Self::OAuth(_) => "Auth::OAuth",
        })
    }
}

/// One vendor account: base URL, credentials, the vendor's policy profile and the shared policy.
/// Cheap to clone.
#[derive(Clone)]
pub struct VendorClient {
    policy: HttpPolicy,
    profile: ConnectorProfile,
    base: Url,
    auth: Auth,
}

impl fmt::Debug for VendorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorClient")
            .field("vendor", &self.profile.name)
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

impl VendorClient {
    pub fn new(policy: HttpPolicy, profile: ConnectorProfile, base: Url, auth: Auth) -> Self {
        Self {
            policy,
            profile,
            base,
            auth,
        }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    pub fn profile(&self) -> &ConnectorProfile {
        &self.profile
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The base URL with `segments` appended, each percent-encoded as one segment (`/` in a
    /// segment becomes `%2F`), with exactly one slash between base and path.
    pub fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        join(&self.base, segments)
    }

    /// A request to the base URL plus `segments`.
    pub fn request(&self, method: Method, segments: &[&str]) -> VendorRequest<'_> {
        VendorRequest {
            client: self,
            method,
            url: self.url(segments),
            headers: HeaderMap::new(),
            body: None,
            replay: Replay::ByMethod,
            idempotency_key: None,
        }
    }

    pub fn get(&self, segments: &[&str]) -> VendorRequest<'_> {
        self.request(Method::GET, segments)
    }

    pub fn post(&self, segments: &[&str]) -> VendorRequest<'_> {
        self.request(Method::POST, segments)
    }

    pub fn patch(&self, segments: &[&str]) -> VendorRequest<'_> {
        self.request(Method::PATCH, segments)
    }

    pub fn delete(&self, segments: &[&str]) -> VendorRequest<'_> {
        self.request(Method::DELETE, segments)
    }

    /// A request to a URL the vendor handed out (an upload session's `Location`): refused unless
    /// it has the base URL's scheme, host and port, so a vendor answer cannot point the
    /// credentials elsewhere.
    pub fn request_at(&self, method: Method, url: &str) -> VendorRequest<'_> {
        let url = Url::parse(url)
            .map_err(|err| ConnectorError::UnexpectedResponse(format!("a URL it gave: {err}")))
            .and_then(|url| {
                if url.origin() == self.base.origin() {
                    Ok(url)
                } else {
                    Err(ConnectorError::UnexpectedResponse(
                        "a URL it gave is not on the API's origin".into(),
                    ))
                }
            });
        VendorRequest {
            client: self,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            replay: Replay::ByMethod,
            idempotency_key: None,
        }
    }

    /// The prepared request with the credentials `token` (for OAuth) or the static ones.
    fn prepare(
        &self,
        parts: &Parts,
        token: Option<&SecretString>,
    ) -> Result<reqwest::Request, ConnectorError> {
        let mut builder = self
            .policy
            .client()
            .request(parts.method.clone(), parts.url.clone())
            .headers(parts.headers.clone());
        builder = match (&self.auth, token) {
            (Auth::OAuth(_), Some(token)) | (Auth::Bearer(token), _) => {
                builder.bearer_auth(token.expose_secret())
            }
            (Auth::Header { name, value }, _) => {
                let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                    ConnectorError::Config(format!("the {name} credential is not a header value"))
                })?;
                value.set_sensitive(true);
                builder.header(name.clone(), value)
            }
            (Auth::Basic { username, password }, _) => {
                builder.basic_auth(username, Some(password.expose_secret()))
            }
            (Auth::OAuth(_), None) | (Auth::None, _) => builder,
        };
        match &parts.body {
            Some(Body::Json(body)) => builder = builder.json(body),
            Some(Body::Form(pairs)) => builder = builder.form(pairs),
            Some(Body::Bytes {
                content_type,
                bytes,
            }) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, content_type.clone())
                    .body(bytes.clone());
            }
            None => {}
        }
        builder
            .build()
            .map_err(|err| ConnectorError::Config(format!("request: {}", err.without_url())))
    }

    async fn send(
        &self,
        ctx: &RequestContext,
        parts: Parts,
    ) -> Result<PolicyResponse, ConnectorError> {
        let keyed;
        let ctx = match &parts.idempotency_key {
            Some(key) => {
                keyed = ctx.clone().with_idempotency_key(key.clone());
                &keyed
            }
            None => ctx,
        };
        let Auth::OAuth(tokens) = &self.auth else {
            let request = self.prepare(&parts, None)?;
            return Ok(self
                .policy
                .send(ctx, &self.profile, request, parts.replay)
                .await?);
        };
        let token = tokens.token(ctx).await?;
        let request = self.prepare(&parts, Some(&token))?;
        match self
            .policy
            .send(ctx, &self.profile, request, parts.replay)
            .await
        {
            // The token was refused (expired early, revoked and re-granted, rotated): one fresh
            // token, one more try. A second 401 is the answer.
            Err(PolicyError::Status { code: 401, .. }) => {
                let fresh = tokens.refresh(ctx, &token).await?;
                let request = self.prepare(&parts, Some(&fresh))?;
                Ok(self
                    .policy
                    .send(ctx, &self.profile, request, parts.replay)
                    .await?)
            }
            other => Ok(other?),
        }
    }
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
pub fn join(base: &Url, segments: &[&str]) -> Result<Url, ConnectorError> {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|_| ConnectorError::Config(format!("base URL {base} cannot take a path")))?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// A request body: JSON, form-encoded pairs (Stripe's `a[0][b]=c` bodies), or bytes of a given
/// content type (a file, a multipart body). Cheap to clone for the resend after a 401.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
    Bytes {
        content_type: HeaderValue,
        bytes: bytes::Bytes,
    },
}

/// A `multipart/related` body (RFC 2387) of a JSON part then a media part, the form of Google's
/// one-request uploads (metadata and content). Returns the content type, with its boundary, and
/// the body. The boundary is random and checked not to occur in the media.
pub fn multipart_related(
    metadata: &Value,
    media_type: &str,
    media: &[u8],
) -> (String, bytes::Bytes) {
    let boundary = loop {
        let random: [u8; 16] = rand::random();
        let boundary = format!(
            "callbridge-{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let needle = boundary.as_bytes();
        if !media.windows(needle.len()).any(|w| w == needle) {
            break boundary;
        }
    };
    let mut body = Vec::with_capacity(media.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
             --{boundary}\r\nContent-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(media);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; boundary={boundary}"),
        bytes::Bytes::from(body),
    )
}

/// What one request is made of, kept so it can be rebuilt for the resend after a 401.
struct Parts {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Body>,
    replay: Replay,
    idempotency_key: Option<String>,
}

/// A request being built; nothing is sent until [`VendorRequest::send`].
#[must_use = "a request does nothing until it is sent"]
pub struct VendorRequest<'c> {
    client: &'c VendorClient,
    method: Method,
    url: Result<Url, ConnectorError>,
    headers: HeaderMap,
    body: Option<Body>,
    replay: Replay,
    idempotency_key: Option<String>,
}

impl VendorRequest<'_> {
    /// Appends `name=value` to the query (form-encoded).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        if let Ok(url) = &mut self.url {
            url.query_pairs_mut().append_pair(name, value);
        }
        self
    }

    /// A header of the vendor's (an API version, …); never a credential, which [`Auth`] carries.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }

    /// A form-encoded body (`application/x-www-form-urlencoded`), pairs in order.
    pub fn form(mut self, pairs: Vec<(String, String)>) -> Self {
        self.body = Some(Body::Form(pairs));
        self
    }

    /// A body of `content_type` (a file's bytes, a [`multipart_related`] body); an invalid
    /// content type fails the send as a configuration error.
    pub fn bytes(mut self, content_type: &str, bytes: bytes::Bytes) -> Self {
        match HeaderValue::from_str(content_type) {
            Ok(content_type) => {
                self.body = Some(Body::Bytes {
                    content_type,
                    bytes,
                })
            }
            Err(_) => {
                self.url = Err(ConnectorError::Config(format!(
                    "content type {content_type:?} is not a header value"
                )))
            }
        }
        self
    }

    /// Whether the policy may send it more than once (default: by method).
    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }

    /// The side effect's ledger key, sent in the vendor's idempotency header when its profile
    /// names one (then a write may be replayed under [`Replay::ByMethod`]).
    pub fn idempotency_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }

    /// Sends it; vendor statuses stay [`ConnectorError::Policy`] for a caller that gives some of
    /// them a meaning of its own (Google's 409 on a duplicate event id, 410 on a deleted event).
    pub async fn send_raw(self, ctx: &RequestContext) -> Result<PolicyResponse, ConnectorError> {
        let parts = Parts {
            method: self.method,
            url: self.url?,
            headers: self.headers,
            body: self.body,
            replay: self.replay,
            idempotency_key: self.idempotency_key,
        };
        self.client.send(ctx, parts).await
    }

    /// Sends it; a vendor status becomes what it means for `what` (`booking`, `contact`, …):
    /// 404/410 not found, 409 conflict, 401/403 authorisation, 400/422 rejected with the vendor's
    /// redacted error body; other failures stay policy errors (status and redacted body kept).
    pub async fn send(
        self,
        ctx: &RequestContext,
        what: &str,
    ) -> Result<PolicyResponse, ConnectorError> {
        self.send_raw(ctx).await.map_err(|err| map_error(err, what))
    }

    /// [`VendorRequest::send`], then the body as JSON of type `T`.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        self,
        ctx: &RequestContext,
        what: &str,
    ) -> Result<T, ConnectorError> {
        Ok(self.send(ctx, what).await?.json()?)
    }
}

/// A connector error with vendor statuses given their meaning for `what`.
pub fn map_error(err: ConnectorError, what: &str) -> ConnectorError {
    match err {
        ConnectorError::Policy(inner) => ConnectorError::from_policy(inner, what),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> Url {
        Url::parse(text).expect("valid")
    }

    #[test]
    fn joining_never_doubles_a_slash_and_escapes_segments() {
        let with = base("https://api.example.com/v2/");
        let without = base("https://api.example.com/v2");
        for url in [&with, &without] {
            assert_eq!(
                join(url, &["bookings", "a/b c#d", "cancel"])
                    .expect("joins")
                    .as_str(),
                "https://api.example.com/v2/bookings/a%2Fb%20c%23d/cancel"
            );
        }
        assert_eq!(
            join(&base("https://api.example.com"), &["me"])
                .expect("joins")
                .as_str(),
            "https://api.example.com/me"
        );
        assert!(join(&base("mailto:x@example.com"), &["me"]).is_err());
    }

    /// Hands out `tok-1`, then `tok-2`, … one per refresh; counts refreshes.
    struct Counting {
        issued: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl TokenSource for Counting {
        async fn token(&self, _ctx: &RequestContext) -> Result<SecretString, ConnectorError> {
            let n = self.issued.load(std::sync::atomic::Ordering::SeqCst);
            Ok(SecretString::from(format!("tok-{}", n + 1)))
        }
        async fn refresh(
            &self,
            _ctx: &RequestContext,
            rejected: &SecretString,
        ) -> Result<SecretString, ConnectorError> {
            let n = self
                .issued
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            assert_eq!(rejected.expose_secret(), format!("tok-{n}"));
            Ok(SecretString::from(format!("tok-{}", n + 1)))
        }
    }

    fn ctx() -> RequestContext {
        RequestContext::new(
            "tenant",
            "call_1",
            tokio::time::Instant::now() + std::time::Duration::from_secs(5),
        )
    }

    fn client(server: &wiremock::MockServer, auth: Auth) -> VendorClient {
        let policy = HttpPolicy::new(crate::connectors::http::PolicyConfig {
            egress: crate::egress::EgressPolicy::allow_loopback(),
            ..Default::default()
        })
        .expect("policy");
        let base = Url::parse(&format!("{}/api/", server.uri())).expect("url");
        VendorClient::new(policy, ConnectorProfile::new("test_vendor"), base, auth)
    }

    #[tokio::test]
    async fn a_refused_token_is_refreshed_once_and_the_request_resent_once() {
        use wiremock::matchers::{header, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/me"))
            .and(header("authorization", "Bearer tok-2"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/me"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let tokens = Arc::new(Counting {
            issued: Default::default(),
        });
        let vendor = client(&server, Auth::OAuth(tokens.clone()));
        vendor
            .get(&["me"])
            .send(&ctx(), "account")
            .await
            .expect("the fresh token is accepted");
        assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A vendor that refuses every token: one refresh, one resend, then the answer.
        let refusing = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&refusing)
            .await;
        let tokens = Arc::new(Counting {
            issued: Default::default(),
        });
        let err = client(&refusing, Auth::OAuth(tokens.clone()))
            .get(&["me"])
            .send(&ctx(), "account")
            .await
            .expect_err("refused twice");
        assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
        assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst), 1);
        let requests = refusing.received_requests().await.expect("recorded");
        assert_eq!(requests.len(), 2, "the first try and one resend");
    }

    #[tokio::test]
    async fn static_credentials_go_in_the_header_their_kind_names() {
        use wiremock::matchers::{body_json, header, method, path, query_param};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/things/a%2Fb"))
            .and(query_param("q", "x y"))
            .and(header("authorization", "Basic b3duZXI6cHc="))
            .and(header("x-api-version", "7"))
            .and(body_json(serde_json::json!({"n": 1})))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/me"))
            .and(header("x-key", "k-secret"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/bearer"))
            .and(header("authorization", "Bearer b-secret"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&server)
            .await;
        let basic = client(
            &server,
            Auth::Basic {
                username: "owner".into(),
                password: SecretString::from("pw"),
            },
        );
        basic
            .post(&["things", "a/b"])
            .query("q", "x y")
            .header(
                HeaderName::from_static("x-api-version"),
                HeaderValue::from_static("7"),
            )
            .json(serde_json::json!({"n": 1}))
            .send(&ctx(), "thing")
            .await
            .expect("basic");
        client(
            &server,
            Auth::Header {
                name: HeaderName::from_static("x-key"),
                value: SecretString::from("k-secret"),
            },
        )
        .get(&["me"])
        .send(&ctx(), "account")
        .await
        .expect("custom header");
        client(&server, Auth::Bearer(SecretString::from("b-secret")))
            .get(&["bearer"])
            .send(&ctx(), "account")
            .await
            .expect("bearer");
        let missing = basic
            .get(&["nothing"])
            .send(&ctx(), "booking")
            .await
            .expect_err("404");
        assert!(matches!(missing, ConnectorError::NotFound(ref what) if what == "booking"));
    }

    #[test]
    fn multipart_related_has_a_metadata_part_then_the_media() {
        let media = b"\x00\x01binary\r\n--not-the-boundary";
        let (content_type, body) =
            multipart_related(&serde_json::json!({"name": "a.wav"}), "audio/wav", media);
        let boundary = content_type
            .strip_prefix("multipart/related; boundary=")
            .expect("a boundary");
        let expected = [
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n")
                .into_bytes(),
            br#"{"name":"a.wav"}"#.to_vec(),
            format!("\r\n--{boundary}\r\nContent-Type: audio/wav\r\n\r\n").into_bytes(),
            media.to_vec(),
            format!("\r\n--{boundary}--\r\n").into_bytes(),
        ]
        .concat();
        assert_eq!(body.as_ref(), expected.as_slice());
    }

    #[tokio::test]
    async fn a_url_the_vendor_gave_must_be_on_the_api_origin() {
        let server = wiremock::MockServer::start().await;
        let vendor = client(&server, Auth::None);
        let elsewhere = vendor
            .request_at(Method::PUT, "https://example.com/upload?id=1")
            .send(&ctx(), "upload")
            .await
            .expect_err("another origin");
        assert!(
            matches!(elsewhere, ConnectorError::UnexpectedResponse(_)),
            "{elsewhere:?}"
        );
        assert!(
            server
                .received_requests()
                .await
                .expect("recorded")
                .is_empty()
        );
    }

    #[test]
    fn auth_debug_shows_only_the_kind() {
        let shown = format!(
            "{:?}",
            Auth::Basic {
                username: "owner".into(),
                password: SecretString::from("pw-secret"),
            }
        );
        assert_eq!(shown, "Auth::Basic");
    }
}

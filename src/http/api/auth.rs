//! Bearer authentication of the admin API: the admin key (compared in constant time, through
//! SHA-256 so neither content nor length leaks) or a tenant API key (looked up by prefix, hash
//! compared in constant time by [`crate::tenant::api_keys`]). It attaches the [`Principal`] to the
//! request and must not make authorization decisions (the service does) or log presented keys.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::tenant::api_keys;

use super::ApiState;
use super::error::ApiError;
use crate::admin::{Principal, ServiceError};

/// Middleware: 401 unless the request carries a valid key; 429 once the client's address or the
/// presented key's prefix failed too often (see `throttle`).
pub(crate) async fn require_key(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty());
    let prefix = presented.and_then(api_keys::lookup_prefix);
    let now = tokio::time::Instant::now();
    if let Err(wait) = state.throttle.check(address, prefix, now) {
        state.metrics.error("api_auth_throttled");
        return throttled(wait);
    }
    let failed = |why: &'static str| {
        state.metrics.error("api_auth_failed");
        state.throttle.failed(address, prefix, now);
        // The prefix is the key's public lookup id (shown in key listings), never its secret.
        warn!(
            address = ?address,
            key_prefix = prefix.unwrap_or("-"),
            why,
            "admin API authentication failed"
        );
        ApiError::unauthorized().into_response()
    };
    let Some(presented) = presented else {
        return failed("no bearer key");
    };
    let principal = match identify(&state, presented).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return failed("unknown or revoked key"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn throttled(wait: std::time::Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failed_authentications",
        "too many failed authentications; retry later",
    )
    .into_response();
    if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

async fn identify(state: &ApiState, presented: &str) -> Result<Option<Principal>, ServiceError> {
    if let Some(admin_key) = &state.admin_key {
        let expected = Sha256::digest(admin_key.expose_secret().as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        if bool::from(expected.ct_eq(&given)) {
            return Ok(Some(Principal::Admin));
        }
    }
    let key = api_keys::authenticate(state.service.store(), presented).await?;
    Ok(key.map(|key| Principal::Tenant(key.tenant_id)))
}

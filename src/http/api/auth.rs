//! Bearer authentication of the admin API: the admin key (compared in constant time, through
//! SHA-256 so neither content nor length leaks) or a tenant API key (looked up by prefix, hash
//! compared in constant time by [`crate::tenant::api_keys`]). It attaches the [`Principal`] to the
//! request and must not make authorization decisions (the service does) or log presented keys.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tenant::api_keys;

use super::ApiState;
use super::error::ApiError;
use crate::admin::{Principal, ServiceError};

/// Middleware: 401 unless the request carries a valid key.
pub(super) async fn require_key(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty());
    let Some(presented) = presented else {
        return ApiError::unauthorized().into_response();
    };
    let principal = match identify(&state, presented).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return ApiError::unauthorized().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
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

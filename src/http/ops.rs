//! Operational endpoints: liveness and Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;

pub(super) async fn healthz(State(deps): State<Arc<App>>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "active_calls": deps.metrics.active_calls.load(Ordering::Relaxed),
        "provider": deps.dialect.name(),
    }))
}

/// `GET /oauth/callback`: where a vendor sends the business owner back after consent; a short
/// plain HTML page either way.
pub(super) async fn oauth_callback(
    State(deps): State<Arc<App>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    let page = match &deps.oauth {
        Some(oauth) => oauth.callback(&query).await,
        None => crate::oauth::CallbackPage {
            status: 503,
            html: "<!doctype html><html><body><p>Connections are not enabled on this server \
                   (no master key).</p></body></html>"
                .into(),
            connected: None,
        },
    };
    let status = axum::http::StatusCode::from_u16(page.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page.html,
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text. With `CALLBRIDGE_METRICS_TOKEN` set, only for
/// `Authorization: Bearer <token>` (compared in constant time through SHA-256).
pub(super) async fn metrics(State(deps): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = &deps.config.metrics_token {
        use secrecy::ExposeSecret as _;
        use sha2::{Digest as _, Sha256};
        use subtle::ConstantTimeEq as _;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let expected = Sha256::digest(token.expose_secret().as_bytes());
        let given = Sha256::digest(presented.trim().as_bytes());
        if !bool::from(expected.ct_eq(&given)) {
            deps.metrics.error("metrics_unauthorized");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token (CALLBRIDGE_METRICS_TOKEN)\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        deps.metrics.render(),
    )
        .into_response()
}

//! Operational endpoints: liveness and Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
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

pub(super) async fn metrics(State(deps): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        deps.metrics.render(),
    )
}

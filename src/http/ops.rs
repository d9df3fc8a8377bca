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

pub(super) async fn metrics(State(deps): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        deps.metrics.render(),
    )
}

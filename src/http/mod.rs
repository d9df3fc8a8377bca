//! The HTTP surface (axum): Twilio's voice webhook and media WebSocket, health and metrics.
//!
//! Owns routing, request validation (signatures) and responses. It must not hold call state: an
//! accepted media socket is handed to the call driver.

pub mod api;
mod ops;
mod twilio;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::call::driver::CallDeps;

/// Builds the application router.
pub fn router(deps: CallDeps) -> Router {
    Router::new()
        .route("/twilio/voice", post(twilio::voice_webhook))
        .route("/twilio/media", get(twilio::media_socket))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api::router(&deps))
        .with_state(Arc::new(deps))
}

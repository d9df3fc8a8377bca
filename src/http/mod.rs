//! The HTTP surface (axum): Twilio's voice webhook, media WebSocket and outbound call callbacks
//! (status, answering machine detection), health and metrics.
//!
//! Owns routing, request validation (signatures) and responses. It must not hold call state: an
//! accepted media socket is handed to the call driver.

pub mod api;
mod hooks;
pub mod listener;
pub mod mcp;
mod ops;
mod twilio;
mod warm;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::app::App;

pub use listener::{HttpLimits, serve};

/// Builds the application router.
pub fn router(deps: App) -> Router {
    // One authentication state (keys, failed-attempt throttle) for the admin API and `/mcp`.
    let api_state = Arc::new(api::ApiState::from_app(&deps));
    Router::new()
        .route("/twilio/voice", post(twilio::voice_webhook))
        .route("/twilio/media", get(twilio::media_socket))
        .route("/twilio/status", post(twilio::status_callback))
        .route("/twilio/amd", post(twilio::amd_callback))
        .route("/twilio/warm/{id}/{step}", post(warm::callback))
        .route("/healthz", get(ops::healthz))
        .route(crate::oauth::CALLBACK_PATH, get(ops::oauth_callback))
        .route("/metrics", get(ops::metrics))
        .route(
            "/hooks/{tenant}/{source}",
            post(hooks::receive)
                .get(hooks::handshake)
                .layer(axum::extract::DefaultBodyLimit::max(hooks::MAX_HOOK_BODY)),
        )
        .nest("/api/v1", api::router_shared(api_state.clone()))
        .merge(mcp::router(&deps, api_state))
        .with_state(Arc::new(deps))
}

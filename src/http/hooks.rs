//! Inbound webhook routes: `POST /hooks/{tenant}/{source}` (a vendor's event) and
//! `GET /hooks/{tenant}/{source}` (the subscription handshake vendors such as WhatsApp/Meta make).
//!
//! Owns the HTTP adaptation only: the raw body under a size cap (413 beyond it), the headers, and
//! the public URL the vendor signed; verification, storage and statuses' meaning belong to
//! [`crate::inbound`]. It must not parse the body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::App;
use crate::inbound::{Delivery, InboundError, SourceKind};

/// Largest webhook body accepted.
pub const MAX_HOOK_BODY: usize = crate::store::MAX_INBOUND_PAYLOAD;

fn answer(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn refusal(err: &InboundError) -> Response {
    match err {
        InboundError::Rejected(rejection) => answer(
            StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED),
            rejection.label(),
        ),
        InboundError::NotFound(_) => answer(StatusCode::NOT_FOUND, "unknown source"),
        InboundError::Forbidden => answer(StatusCode::FORBIDDEN, "verify token mismatch"),
        InboundError::Unavailable(_) => {
            answer(StatusCode::SERVICE_UNAVAILABLE, "source unavailable")
        }
        InboundError::Invalid { .. } => answer(StatusCode::BAD_REQUEST, "invalid delivery"),
        InboundError::Conflict(_) | InboundError::Store(_) | InboundError::Vault(_) => {
            // The vendor retries; details are in the log.
            tracing::error!(error = %err, "inbound delivery not stored");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "not stored; retry")
        }
    }
}

pub(super) async fn receive(
    State(app): State<Arc<App>>,
    Path((tenant, source)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
            app.inbound
                .count_refusal(if too_large { "too_large" } else { "unreadable" });
            tracing::warn!(tenant = %tenant.chars().take(64).collect::<String>(),
                too_large, "inbound delivery refused before verification");
            return answer(
                rejection.status(),
                if too_large { "too_large" } else { "unreadable" },
            );
        }
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let url = app.inbound.public_url_of(path_and_query);
    let delivery = Delivery {
        method: method.as_str(),
        url: &url,
        headers: &headers,
        body: &body,
    };
    match app.inbound.receive(&tenant, &source, &delivery).await {
        Ok(receipt) if receipt.kind == SourceKind::Twilio => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
        )
            .into_response(),
        Ok(receipt) => (
            StatusCode::OK,
            axum::Json(json!({ "stored": receipt.stored, "duplicates": receipt.duplicates })),
        )
            .into_response(),
        Err(err) => refusal(&err),
    }
}

pub(super) async fn handshake(
    State(app): State<Arc<App>>,
    Path((tenant, source)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    match app
        .inbound
        .verify_subscription(&tenant, &source, &query)
        .await
    {
        Ok(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Err(err) => refusal(&err),
    }
}

//! Twilio's callbacks for a warm transfer's destination leg (`/twilio/warm/{id}/…`): `answer`
//! (the leg's `Url`: the whisper), `accept` (the `<Gather>` action: the key pressed) and `status`
//! (the leg's `StatusCallback`). Each is signature-checked like the voice webhook; the transfer
//! itself is decided in `call::warm`. It must not hold transfer state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::twilio::{form_param, signed_params, twiml_response};
use crate::app::App;
use crate::call::warm;

/// `POST /twilio/warm/{id}/{step}`.
pub(super) async fn callback(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deps = app.call_deps();
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let params = match signed_params(&deps, path, &headers, &body) {
        Ok(params) => params,
        Err(refused) => return refused,
    };
    match step.as_str() {
        "answer" => {
            twiml_response(warm::answered(&deps, &id, form_param(&params, "AnsweredBy")).await)
        }
        "accept" => twiml_response(
            warm::accepted(
                &deps,
                &id,
                form_param(&params, "Digits").unwrap_or_default(),
            )
            .await,
        ),
        "status" => {
            let status = form_param(&params, "CallStatus").unwrap_or_default();
            warm::leg_status(&deps, &id, status).await;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => {
            deps.metrics.error("twilio_unknown_callback");
            (StatusCode::NOT_FOUND, "no such callback\n").into_response()
        }
    }
}

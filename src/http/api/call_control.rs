//! Call-control routes of the admin API: an agent's transfer destinations, the tenant's live calls,
//! supervisors' commands to one (hang up, inject an instruction, transfer) and its SSE event stream. Thin adapters from HTTP
//! to [`crate::admin::AdminService`] (`admin::transfer`), each annotated for the OpenAPI document;
//! they must not hold business rules.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};

use super::handlers::{ApiErrors, ApiResult, Body, Svc, Who};
use crate::admin::dto::ErrorBody;
use crate::admin::transfer::TransferDestinationsDoc;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/agents/{agent}/transfer-destinations", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    responses((status = 200, description = "Where the agent's `transfer_call` may send a caller", body = TransferDestinationsDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_transfer_destinations(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<TransferDestinationsDoc>> {
    let Path((tenant, agent)) = path?;
    Ok(Json(
        s.service
            .transfer_destinations(&who, &tenant, &agent)
            .await?,
    ))
}

#[utoipa::path(put, path = "/tenants/{tenant}/agents/{agent}/transfer-destinations", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    request_body = TransferDestinationsDoc,
    responses((status = 200, description = "Replaced (all or nothing)", body = TransferDestinationsDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_transfer_destinations(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<TransferDestinationsDoc>,
) -> ApiResult<Json<TransferDestinationsDoc>> {
    let Path((tenant, agent)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .put_transfer_destinations(&who, &tenant, &agent, req)
            .await?,
    ))
}

// --- live calls ----------------------------------------------------------------------------------

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::admin::transfer::LiveCallsDoc;
use crate::call::live::LiveCalls;
use crate::call::session::OperatorCommand;

/// `POST …/hangup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HangUpRequest {
    /// `goodbye` (the agent says a short goodbye first, default) or `now`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "goodbye".into()
}

/// `POST …/inject`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// What the model should do from its next turn on ("offer the 10 % discount").
    pub instruction: String,
}

/// `POST …/transfer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// One of the agent's transfer destinations.
    pub destination: String,
    /// `cold` (default): the caller is connected at once. `warm`: the destination hears
    /// `summary` and presses 1 to accept; the caller waits on hold and comes back to the agent
    /// if nobody accepts.
    #[serde(default)]
    pub mode: Option<String>,
    /// What the destination hears before accepting (warm only; 1 to 1000 characters).
    #[serde(default)]
    pub summary: Option<String>,
}

fn live(s: &super::ApiState) -> Result<&LiveCalls, ApiError> {
    s.live.as_deref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server runs no calls",
        )
    })
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls/live", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Calls in progress: this node's first, then other nodes' (from the store)", body = LiveCallsDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_live_calls(
    State(s): Svc,
    Extension(who): Who,
    path: super::handlers::P1,
) -> ApiResult<Json<LiveCallsDoc>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.live_calls(&who, live(&s)?, &tenant).await?))
}

async fn command(
    s: &super::ApiState,
    who: &crate::admin::Principal,
    tenant: &str,
    call: &str,
    command: OperatorCommand,
) -> ApiResult<axum::http::StatusCode> {
    s.service
        .command_live_call(who, live(s)?, tenant, call, command)
        .await?;
    Ok(axum::http::StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/tenants/{tenant}/calls/{call}/hangup", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    request_body = HangUpRequest,
    responses((status = 202, description = "Delivered to the call"),
        (status = 409, description = "The call has ended, or runs on another node (named in the message)", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn hang_up_live_call(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<HangUpRequest>,
) -> ApiResult<axum::http::StatusCode> {
    let Path((tenant, call)) = path?;
    let Json(req) = body?;
    let goodbye = match req.mode.as_str() {
        "goodbye" => true,
        "now" => false,
        other => {
            return Err(crate::admin::ServiceError::invalid(
                "mode",
                format!("{other:?} is not one of goodbye, now"),
            )
            .into());
        }
    };
    command(
        &s,
        &who,
        &tenant,
        &call,
        OperatorCommand::HangUp { goodbye },
    )
    .await
}

#[utoipa::path(post, path = "/tenants/{tenant}/calls/{call}/inject", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    request_body = InjectRequest,
    responses((status = 202, description = "Delivered to the call"),
        (status = 409, description = "The call has ended, or runs on another node (named in the message)", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn inject_live_call(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<InjectRequest>,
) -> ApiResult<axum::http::StatusCode> {
    let Path((tenant, call)) = path?;
    let Json(req) = body?;
    let instruction = req.instruction;
    command(
        &s,
        &who,
        &tenant,
        &call,
        OperatorCommand::Inject { instruction },
    )
    .await
}

#[utoipa::path(post, path = "/tenants/{tenant}/calls/{call}/transfer", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    request_body = TransferRequest,
    responses((status = 202, description = "Delivered: the agent says a handover line, then the call is redirected (cold) or put on hold while the destination is rung (warm)"),
        (status = 409, description = "The call has ended, or runs on another node (named in the message)", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn transfer_live_call(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<TransferRequest>,
) -> ApiResult<axum::http::StatusCode> {
    let Path((tenant, call)) = path?;
    let Json(req) = body?;
    let destination = req.destination;
    let order = match req.mode.as_deref() {
        None | Some("cold") => OperatorCommand::Transfer { destination },
        Some("warm") => {
            let summary =
                crate::call::transfer::check_summary(req.summary.as_deref().unwrap_or(""))
                    .map_err(|why| {
                        ApiError::from(crate::admin::ServiceError::invalid("summary", why))
                    })?;
            OperatorCommand::WarmTransfer {
                destination,
                summary,
            }
        }
        Some(_) => {
            return Err(ApiError::from(crate::admin::ServiceError::invalid(
                "mode",
                "must be \"cold\" or \"warm\"",
            )));
        }
    };
    command(&s, &who, &tenant, &call, order).await
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls/{call}/events", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    responses((status = 200, description = "Server-sent events: one `data:` JSON `{kind, payload}` per transcript line, tool call, transfer or command, `ended` last", content_type = "text/event-stream"),
        (status = 409, description = "The call has ended, or runs on another node (named in the message)", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn live_call_events(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Path((tenant, call)) = path?;
    let rx = s
        .service
        .live_call_scope(&who, live(&s)?, &tenant, &call)
        .await?;
    let stream = futures_util::stream::unfold(Some(rx), |state| async move {
        let mut rx = state?;
        match rx.recv().await {
            Ok(value) => {
                let ended = value["kind"] == "ended";
                let event = Event::default().data(value.to_string());
                Some((Ok(event), (!ended).then_some(rx)))
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                // A slow reader is told how many entries it missed, and goes on.
                let event = Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}"));
                Some((Ok(event), Some(rx)))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

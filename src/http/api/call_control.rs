//! Call-control routes of the admin API: an agent's transfer destinations. Thin adapters from HTTP
//! to [`crate::admin::AdminService`] (`admin::transfer`), each annotated for the OpenAPI document;
//! they must not hold business rules.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};

use super::handlers::{ApiErrors, ApiResult, Body, Svc, Who};
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

//! Do-not-call list handlers: thin adapters to [`crate::admin::AdminService`]
//! (`admin::do_not_call`). No business rules here.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, P1, Svc, Who};
use crate::admin::dto::*;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/do-not-call", tag = "outbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's do-not-call list", body = Vec<DoNotCallView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_do_not_call(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<DoNotCallView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_do_not_call(&who, &tenant).await?))
}

#[utoipa::path(post, path = "/tenants/{tenant}/do-not-call", tag = "outbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = DoNotCallRequest,
    responses((status = 201, description = "On the list (adding again keeps the first entry)", body = DoNotCallView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn add_do_not_call(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<DoNotCallRequest>,
) -> ApiResult<(StatusCode, Json<DoNotCallView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.add_do_not_call(&who, &tenant, req).await?),
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/do-not-call/{number}", tag = "outbound",
    params(("tenant" = String, Path, description = "Tenant id"), ("number" = String, Path, description = "E.164 number (`%2B` for `+`)")),
    responses((status = 204, description = "Removed"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn remove_do_not_call(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, number)) = path?;
    s.service.remove_do_not_call(&who, &tenant, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

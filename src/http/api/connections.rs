//! `/tenants/{tenant}/connections`: start an OAuth connection, list, show, disconnect. Thin
//! handlers over the admin service; no token is ever in a response.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};

use super::handlers::{ApiErrors, ApiResult, P1, Svc, Who};
use crate::admin::connections::{ConnectionStartView, ConnectionView, DisconnectView};

type P2 = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;

#[utoipa::path(post, path = "/tenants/{tenant}/connections/{vendor}/start", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id (`hubspot`, `google_calendar`, …)")),
    responses((status = 200, description = "The one-time authorization URL the business owner opens (valid 10 minutes)", body = ConnectionStartView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn start_connection(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<ConnectionStartView>> {
    let Path((tenant, vendor)) = path?;
    Ok(Json(
        s.service.start_connection(&who, &tenant, &vendor).await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/connections", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Vendor, account, scopes, status, expiry, last refresh; never tokens", body = Vec<ConnectionView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_connections(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<ConnectionView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_connections(&who, &tenant).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/connections/{vendor}", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id")),
    responses((status = 200, description = "One connection; never tokens", body = ConnectionView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_connection(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<ConnectionView>> {
    let Path((tenant, vendor)) = path?;
    Ok(Json(
        s.service.get_connection(&who, &tenant, &vendor).await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/connections/{vendor}", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id")),
    responses((status = 200, description = "Revoked at the vendor where it can be, then deleted", body = DisconnectView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_connection(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<DisconnectView>> {
    let Path((tenant, vendor)) = path?;
    Ok(Json(s.service.disconnect(&who, &tenant, &vendor).await?))
}

//! `/tenants/{tenant}/connections`: start an OAuth connection, list, show, disconnect; and the
//! OAuth apps (`/oauth-apps/{vendor}` for the deployment, `/tenants/{tenant}/oauth-apps/{vendor}`
//! for a tenant's own). Thin handlers over the admin service; no token or client secret is ever
//! in a response.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, P1, Svc, Who};
use crate::admin::connections::{
    ConnectionStartView, ConnectionView, DisconnectView, OAuthAppRequest,
};
use crate::oauth::AppView;

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

// --- OAuth apps --------------------------------------------------------------------------------

#[utoipa::path(get, path = "/oauth-apps", tag = "connections",
    responses((status = 200, description = "The deployment's OAuth apps (set through the API or the environment); never a secret", body = Vec<AppView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_deployment_apps(
    State(s): Svc,
    Extension(who): Who,
) -> ApiResult<Json<Vec<AppView>>> {
    Ok(Json(s.service.list_oauth_apps(&who, None).await?))
}

#[utoipa::path(put, path = "/oauth-apps/{vendor}", tag = "connections",
    params(("vendor" = String, Path, description = "Vendor id")),
    request_body = OAuthAppRequest,
    responses((status = 200, description = "Set (admin key); the secret is sealed and never returned", body = AppView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_deployment_app(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<OAuthAppRequest>,
) -> ApiResult<Json<AppView>> {
    let Path(vendor) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service.put_oauth_app(&who, None, &vendor, req).await?,
    ))
}

#[utoipa::path(get, path = "/oauth-apps/{vendor}", tag = "connections",
    params(("vendor" = String, Path, description = "Vendor id")),
    responses((status = 200, description = "The deployment's app for the vendor; never its secret", body = AppView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_deployment_app(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<AppView>> {
    let Path(vendor) = path?;
    Ok(Json(s.service.get_oauth_app(&who, None, &vendor).await?))
}

#[utoipa::path(delete, path = "/oauth-apps/{vendor}", tag = "connections",
    params(("vendor" = String, Path, description = "Vendor id")),
    responses((status = 204, description = "Deleted (the environment's app, if any, applies again)"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_deployment_app(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<StatusCode> {
    let Path(vendor) = path?;
    s.service.delete_oauth_app(&who, None, &vendor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tenants/{tenant}/oauth-apps", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's own OAuth apps; never a secret", body = Vec<AppView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_tenant_apps(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<AppView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_oauth_apps(&who, Some(&tenant)).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/oauth-apps/{vendor}", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id")),
    request_body = OAuthAppRequest,
    responses((status = 200, description = "The tenant's own app, used for its connections instead of the deployment's; the secret is sealed and never returned", body = AppView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_tenant_app(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<OAuthAppRequest>,
) -> ApiResult<Json<AppView>> {
    let Path((tenant, vendor)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .put_oauth_app(&who, Some(&tenant), &vendor, req)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/oauth-apps/{vendor}", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id")),
    responses((status = 200, description = "The tenant's own app; never its secret", body = AppView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_tenant_app(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<AppView>> {
    let Path((tenant, vendor)) = path?;
    Ok(Json(
        s.service
            .get_oauth_app(&who, Some(&tenant), &vendor)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/oauth-apps/{vendor}", tag = "connections",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor id")),
    responses((status = 204, description = "Deleted (the deployment's app applies again)"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_tenant_app(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, vendor)) = path?;
    s.service
        .delete_oauth_app(&who, Some(&tenant), &vendor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Messaging settings, staff notification rules and the notification log: thin adapters to
//! [`crate::admin::AdminService`] (`admin::messaging`). No business rules here.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, P1, Svc, Who};
use crate::admin::dto::*;
use crate::store::MessagingSettings;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/messaging", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's messaging settings (defaults when never set)", body = MessagingSettings), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_messaging(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<MessagingSettings>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.messaging_settings(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/messaging", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = MessagingSettings,
    responses((status = 200, description = "Stored (addresses in canonical form)", body = MessagingSettings), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_messaging(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<MessagingSettings>,
) -> ApiResult<Json<MessagingSettings>> {
    let Path(tenant) = path?;
    let Json(settings) = body?;
    Ok(Json(
        s.service
            .put_messaging_settings(&who, &tenant, settings)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/notification-rules", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's staff notification rules", body = Vec<NotificationRuleView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_notification_rules(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<NotificationRuleView>>> {
    let Path(tenant) = path?;
    Ok(Json(
        s.service.list_notification_rules(&who, &tenant).await?,
    ))
}

#[utoipa::path(post, path = "/tenants/{tenant}/notification-rules", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = NotificationRuleRequest,
    responses((status = 201, description = "Rule added", body = NotificationRuleView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn add_notification_rule(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<NotificationRuleRequest>,
) -> ApiResult<(StatusCode, Json<NotificationRuleView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.add_notification_rule(&who, &tenant, req).await?),
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/notification-rules/{rule}", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id"), ("rule" = String, Path, description = "Rule id")),
    responses((status = 204, description = "Removed"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_notification_rule(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, rule)) = path?;
    s.service
        .delete_notification_rule(&who, &tenant, &rule)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tenants/{tenant}/notifications", tag = "messaging",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The 100 most recent notifications and their delivery state", body = Vec<NotificationView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_notifications(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<NotificationView>>> {
    let Path(tenant) = path?;
    Ok(Json(
        s.service.list_notifications(&who, &tenant, 100).await?,
    ))
}

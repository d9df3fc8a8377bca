//! Post-call analysis routes: an agent's analysis settings and a call's analysis. Thin adapters
//! to [`crate::admin::AdminService`] (`admin::analysis`); no business rules here.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, Svc, Who};
use crate::admin::analysis::{AnalysisSettingsDoc, CallAnalysisDoc};

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/agents/{agent}/analysis", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    responses((status = 200, description = "What is computed after each of the agent's calls (404: no analysis)", body = AnalysisSettingsDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_analysis_settings(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<AnalysisSettingsDoc>> {
    let Path((tenant, agent)) = path?;
    Ok(Json(
        s.service.analysis_settings(&who, &tenant, &agent).await?,
    ))
}

#[utoipa::path(put, path = "/tenants/{tenant}/agents/{agent}/analysis", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    request_body = AnalysisSettingsDoc,
    responses((status = 200, description = "Set; the agent's next calls are analysed", body = AnalysisSettingsDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_analysis_settings(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<AnalysisSettingsDoc>,
) -> ApiResult<Json<AnalysisSettingsDoc>> {
    let Path((tenant, agent)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .put_analysis_settings(&who, &tenant, &agent, req)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/agents/{agent}/analysis", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    responses((status = 204, description = "Analysis turned off for the agent's next calls"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_analysis_settings(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, agent)) = path?;
    s.service
        .delete_analysis_settings(&who, &tenant, &agent)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls/{call}/analysis", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    responses((status = 200, description = "The call's post-call analysis (404: none was queued)", body = CallAnalysisDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_call_analysis(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<CallAnalysisDoc>> {
    let Path((tenant, call)) = path?;
    Ok(Json(s.service.call_analysis(&who, &tenant, &call).await?))
}

// --- retention (issue 12) ------------------------------------------------------------------------

use crate::admin::retention::RetentionDoc;

#[utoipa::path(get, path = "/tenants/{tenant}/retention", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "How long call transcripts and recordings are kept", body = RetentionDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_retention(
    State(s): Svc,
    Extension(who): Who,
    path: super::handlers::P1,
) -> ApiResult<Json<RetentionDoc>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.retention(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/retention", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = RetentionDoc,
    responses((status = 200, description = "Set; the hourly sweep purges calls past it", body = RetentionDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_retention(
    State(s): Svc,
    Extension(who): Who,
    path: super::handlers::P1,
    body: Body<RetentionDoc>,
) -> ApiResult<Json<RetentionDoc>> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok(Json(s.service.set_retention(&who, &tenant, req).await?))
}

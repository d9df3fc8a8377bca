//! Campaign routes of the admin API: thin adapters from HTTP to the campaign operations of
//! [`crate::admin::AdminService`] (`admin::campaigns`), each annotated for the OpenAPI
//! document. Like `handlers`, they must not hold business rules; the only HTTP-specific work
//! here is the larger body limit of `POST /campaigns` and streaming the results CSV.

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;
use super::handlers::{ApiErrors, ApiResult, Body as JsonBody, P1, Svc, Who};
use crate::admin::campaigns::{CampaignMove, MAX_CAMPAIGN_CSV_BYTES};
use crate::admin::dto::*;

/// Body limit of `POST /campaigns`: the CSV file (at most [`MAX_CAMPAIGN_CSV_BYTES`]) as a JSON
/// string, where escaping may double it, plus the other fields.
pub const CAMPAIGN_BODY_BYTES: usize = 2 * MAX_CAMPAIGN_CSV_BYTES + super::MAX_BODY_BYTES;

#[utoipa::path(post, path = "/campaigns", tag = "campaigns",
    request_body = CreateCampaignRequest,
    responses((status = 201, description = "Created; `rejected` lists the rows not imported", body = CampaignView),
        (status = 400, description = "`invalid_csv`: bad header, no valid row, or bad rows with `strict` (`rejected` lists them); or an invalid field", body = ErrorBody),
        (status = 413, description = "The CSV file is over 10 MiB", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_campaign(
    State(s): Svc,
    Extension(who): Who,
    body: JsonBody<CreateCampaignRequest>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let Json(req) = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than {CAMPAIGN_BODY_BYTES} bytes; the CSV file may \
                 be at most {MAX_CAMPAIGN_CSV_BYTES} bytes (10 MiB)"
            ),
        ),
        _ => ApiError::from(rejection),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_campaign(&who, req).await?),
    ))
}

#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(CampaignsQuery),
    responses((status = 200, description = "The tenant's campaigns, newest first (without rejected rows)", body = Vec<CampaignView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_campaigns(
    State(s): Svc,
    Extension(who): Who,
    query: Result<Query<CampaignsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<CampaignView>>> {
    let Query(query) = query?;
    Ok(Json(
        s.service
            .list_campaigns(&who, query.tenant.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/campaigns/{campaign}", tag = "campaigns",
    params(("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "Settings, status, counts by state and outcome, rejected rows", body = CampaignView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_campaign(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<CampaignView>> {
    let axum::extract::Path(id) = path?;
    Ok(Json(s.service.get_campaign(&who, &id).await?))
}

async fn move_campaign(
    s: &ApiState,
    who: &crate::admin::Principal,
    path: P1,
    to: CampaignMove,
) -> ApiResult<Json<CampaignView>> {
    let axum::extract::Path(id) = path?;
    Ok(Json(s.service.move_campaign(who, &id, to).await?))
}

#[utoipa::path(post, path = "/campaigns/{campaign}/pause", tag = "campaigns",
    params(("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "Paused: nothing more is dialled until resumed", body = CampaignView),
        (status = 409, description = "The campaign is not active", body = ErrorBody), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn pause_campaign(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<CampaignView>> {
    move_campaign(&s, &who, path, CampaignMove::Pause).await
}

#[utoipa::path(post, path = "/campaigns/{campaign}/resume", tag = "campaigns",
    params(("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "Active again", body = CampaignView),
        (status = 409, description = "The campaign is not paused", body = ErrorBody), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn resume_campaign(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<CampaignView>> {
    move_campaign(&s, &who, path, CampaignMove::Resume).await
}

#[utoipa::path(post, path = "/campaigns/{campaign}/cancel", tag = "campaigns",
    params(("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "Cancelled: pending contacts are done as `cancelled`; calls in progress finish normally", body = CampaignView),
        (status = 409, description = "The campaign is already cancelled or completed", body = ErrorBody), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn cancel_campaign(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<CampaignView>> {
    move_campaign(&s, &who, path, CampaignMove::Cancel).await
}

#[utoipa::path(get, path = "/campaigns/{campaign}/results.csv", tag = "campaigns",
    params(("campaign" = String, Path, description = "Campaign id")),
    responses((status = 200, description = "One row per contact in file order: line, phone, state, outcome, attempts, last_status, answered_by, call_id, dialed_by, last_error, then `var.NAME` per variable", content_type = "text/csv", body = String),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn campaign_results(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Response> {
    let axum::extract::Path(id) = path?;
    let export = s.service.export_campaign_results(&who, &id).await?;
    let file_name = format!(
        "attachment; filename=\"{}-results.csv\"",
        export.campaign_id()
    );
    // Written as it is read, one page of contacts at a time; a store failure midway ends the
    // body early (the status line is already sent) and is logged.
    let chunks = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(export))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(campaign = export.campaign_id(), error = %e, "results export failed");
                Some((Err(e), None))
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, file_name),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[utoipa::path(get, path = "/tenants/{tenant}/dial-limits", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's limits across all its campaigns", body = DialLimitsView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_dial_limits(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<DialLimitsView>> {
    let axum::extract::Path(tenant) = path?;
    Ok(Json(s.service.get_dial_limits(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/dial-limits", tag = "campaigns",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = DialLimitsRequest,
    responses((status = 200, description = "Set (admin key only)", body = DialLimitsView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_dial_limits(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: JsonBody<DialLimitsRequest>,
) -> ApiResult<Json<DialLimitsView>> {
    let axum::extract::Path(tenant) = path?;
    let Json(req) = body?;
    Ok(Json(s.service.put_dial_limits(&who, &tenant, req).await?))
}

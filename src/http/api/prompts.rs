//! Prompt handlers: thin adapters from HTTP to the per-tenant prompt operations of
//! [`crate::admin::AdminService`] (`admin::prompts`). No business rules here.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, P1, Svc, Who};
use crate::admin::dto::*;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/prompts", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The current version of each of the tenant's prompts", body = Vec<PromptView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_prompts(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<PromptView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_prompts(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/prompts/{name}", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Prompt name")),
    request_body = PromptRequest,
    responses((status = 200, description = "Written as the next version (1 when new)", body = PromptView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_prompt(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<PromptRequest>,
) -> ApiResult<Json<PromptView>> {
    let Path((tenant, name)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .put_prompt(&who, &tenant, &name, &req.text)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/prompts/{name}", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Prompt name"), PromptQuery),
    responses((status = 200, description = "The prompt (current version unless `version` is given)", body = PromptView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_prompt(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    query: Result<Query<PromptQuery>, QueryRejection>,
) -> ApiResult<Json<PromptView>> {
    let Path((tenant, name)) = path?;
    let Query(query) = query?;
    Ok(Json(
        s.service
            .get_prompt(&who, &tenant, &name, query.version)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/prompts/{name}/versions", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Prompt name")),
    responses((status = 200, description = "Every version, oldest first", body = Vec<PromptVersionView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn prompt_versions(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<Vec<PromptVersionView>>> {
    let Path((tenant, name)) = path?;
    Ok(Json(s.service.prompt_versions(&who, &tenant, &name).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/prompts/{name}/diff", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Prompt name"), PromptDiffQuery),
    responses((status = 200, description = "Line diff between two versions", body = PromptDiffView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn diff_prompt(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    query: Result<Query<PromptDiffQuery>, QueryRejection>,
) -> ApiResult<Json<PromptDiffView>> {
    let Path((tenant, name)) = path?;
    let Query(query) = query?;
    Ok(Json(
        s.service
            .diff_prompt(&who, &tenant, &name, query.from, query.to)
            .await?,
    ))
}

#[utoipa::path(post, path = "/tenants/{tenant}/prompts/{name}/rollback", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Prompt name")),
    request_body = PromptRollbackRequest,
    responses((status = 200, description = "The old text, written as the next version", body = PromptView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn rollback_prompt(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<PromptRollbackRequest>,
) -> ApiResult<Json<PromptView>> {
    let Path((tenant, name)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .rollback_prompt(&who, &tenant, &name, req.version)
            .await?,
    ))
}

#[utoipa::path(post, path = "/tenants/{tenant}/prompt-imports", tag = "prompts",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = PromptImportRequest,
    responses((status = 201, description = "The template's text, written as the tenant's prompt", body = PromptView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn import_prompt(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<PromptImportRequest>,
) -> ApiResult<(StatusCode, Json<PromptView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.import_prompt(&who, &tenant, req).await?),
    ))
}

#[utoipa::path(get, path = "/prompt-templates", tag = "prompts",
    responses((status = 200, description = "Template files of the server's prompts directory, importable by any tenant", body = Vec<String>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_prompt_templates(State(s): Svc) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.service.prompt_templates()))
}

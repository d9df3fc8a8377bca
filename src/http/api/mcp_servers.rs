//! `GET/PUT /tenants/{tenant}/agents/{agent}/mcp-servers`: an agent's external MCP servers. Thin
//! adapters to [`crate::admin::AdminService`] (`admin::mcp_servers`), annotated for the OpenAPI
//! document; they must not hold business rules.

use axum::Extension;
use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;

use super::handlers::{ApiErrors, ApiResult, Body, Svc, Who};
use crate::admin::mcp_servers::McpServersDoc;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/agents/{agent}/mcp-servers", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    responses((status = 200, description = "The external MCP servers whose tools the agent's calls may use", body = McpServersDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_mcp_servers(
    axum::extract::State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<McpServersDoc>> {
    let Path((tenant, agent)) = path?;
    Ok(Json(s.service.mcp_servers(&who, &tenant, &agent).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/agents/{agent}/mcp-servers", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id")),
    request_body = McpServersDoc,
    responses((status = 200, description = "Replaced (all or nothing); every URL passed the egress policy", body = McpServersDoc), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_mcp_servers(
    axum::extract::State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<McpServersDoc>,
) -> ApiResult<Json<McpServersDoc>> {
    let Path((tenant, agent)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service
            .put_mcp_servers(&who, &tenant, &agent, req)
            .await?,
    ))
}

//! `POST /tools/{tool}/invoke`: run one of a tenant's tools outside a call, through the same
//! runtime a call uses ([`crate::tools::invoke::ToolRuntime`]). A tenant key runs its own tenant's
//! tools; the admin key names the tenant with `?tenant=`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::ApiError;
use super::handlers::ApiErrors;
use crate::admin::{Principal, ServiceError};
use crate::tools::invoke::InvokeError;
use crate::tools::resolver::ResolveError;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InvokeQuery {
    /// The tenant (admin key only; a tenant key always runs its own tenant's tools).
    tenant: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct InvokeRequest {
    /// The tool's arguments, as the model would send them.
    #[serde(default)]
    #[schema(value_type = Object)]
    arguments: Value,
    /// The caller's number, as a call would pass it.
    #[serde(default)]
    caller: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InvokeResponse {
    /// `ok`, `invalid_arguments`, `failed`, `timeout`, …
    outcome: String,
    /// Exactly what the model would receive.
    #[schema(value_type = Object)]
    output: Value,
    /// When the tool failed: the connector's real error (status, vendor code, redacted), which
    /// the model never sees — e.g. "calcom: refused by egress policy: …".
    #[serde(skip_serializing_if = "Option::is_none")]
    error_detail: Option<String>,
}

#[utoipa::path(post, path = "/tools/{tool}/invoke", tag = "tools",
    params(("tool" = String, Path, description = "Tool name, e.g. check_availability"), InvokeQuery),
    request_body = InvokeRequest,
    responses(
        (status = 200, description = "The tool ran; `output` is what the model would get", body = InvokeResponse),
        (status = 409, description = "The tool is not available to this tenant (connector or credentials missing)"),
        (status = 503, description = "Tools cannot run on this server"),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn invoke_tool(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<InvokeQuery>, QueryRejection>,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Result<Json<InvokeResponse>, ApiError> {
    let Path(tool) = path?;
    let Query(query) = query?;
    let Json(request) = body?;
    let raw_tenant = match (&who, query.tenant) {
        (Principal::Tenant(own), _) => own.as_str().to_owned(),
        (Principal::Admin, Some(tenant)) => tenant,
        (Principal::Admin, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "the admin key must name the tenant with ?tenant=",
            ));
        }
    };
    let tenant = state.service.tenant_scope(&who, &raw_tenant).await?;
    let Some(runtime) = &state.tools else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "tools cannot run on this server",
        ));
    };
    match runtime
        .invoke(&tenant, &tool, &request.arguments, &request.caller)
        .await
    {
        Ok(invoked) => Ok(Json(InvokeResponse {
            outcome: invoked.outcome.to_owned(),
            output: invoked.output,
            error_detail: invoked.error_detail,
        })),
        Err(InvokeError::UnknownTool(name)) => {
            Err(ApiError::not_found(format!("no tool called {name:?}")))
        }
        Err(e @ InvokeError::Unavailable { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "unavailable",
            e.to_string(),
        )),
        Err(InvokeError::Resolve(ResolveError::Store(e))) => Err(ServiceError::from(e).into()),
        Err(InvokeError::Resolve(e)) => Err(ServiceError::Conflict(e.to_string()).into()),
    }
}

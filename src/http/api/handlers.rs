//! Admin API handlers: thin adapters from HTTP to [`crate::admin::AdminService`], each
//! annotated for the OpenAPI document. They must not contain business rules: extract, call the
//! service, pick the status.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use utoipa::IntoResponses;

use super::ApiState;
use super::error::ApiError;
use crate::admin::Principal;
use crate::admin::dto::*;

pub(super) type Svc = State<Arc<ApiState>>;
pub(super) type Who = Extension<Principal>;
pub(super) type ApiResult<T> = Result<T, ApiError>;
pub(super) type Body<T> = Result<Json<T>, JsonRejection>;
pub(super) type P1 = Result<Path<String>, PathRejection>;
type P2 = Result<Path<(String, String)>, PathRejection>;

/// The error answers every authenticated endpoint may give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ApiErrors {
    /// Malformed JSON or an invalid field (`field` names it).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No key, or not a valid key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The operation needs the admin key.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such object — or it belongs to another tenant.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A uniqueness or reference rule refused the write.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body exceeds the size limit.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The named prompt template is too large or uses unknown variables.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Secrets need a master key (`CALLBRIDGE_MASTER_KEY`) on the server.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

fn created<T>(value: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(value))
}

// --- tenants -----------------------------------------------------------------------------------

#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenantRequest,
    responses((status = 201, description = "Created", body = TenantView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_tenant(
    State(s): Svc,
    Extension(who): Who,
    body: Body<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    let Json(req) = body?;
    Ok(created(s.service.create_tenant(&who, req).await?))
}

#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, description = "All tenants (a tenant key sees its own)", body = Vec<TenantView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_tenants(
    State(s): Svc,
    Extension(who): Who,
) -> ApiResult<Json<Vec<TenantView>>> {
    Ok(Json(s.service.list_tenants(&who).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = TenantView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_tenant(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<TenantView>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.get_tenant(&who, &tenant).await?))
}

#[utoipa::path(patch, path = "/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = UpdateTenantRequest,
    responses((status = 200, description = "Updated", body = TenantView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn update_tenant(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<UpdateTenantRequest>,
) -> ApiResult<Json<TenantView>> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok(Json(s.service.update_tenant(&who, &tenant, req).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Deleted with everything it owns"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_tenant(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<StatusCode> {
    let Path(tenant) = path?;
    s.service.delete_tenant(&who, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- API keys ----------------------------------------------------------------------------------

#[utoipa::path(post, path = "/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 201, description = "Created; `key` is shown only now", body = CreatedApiKey), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_api_key(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let Path(tenant) = path?;
    Ok(created(s.service.create_api_key(&who, &tenant).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's keys (prefixes only)", body = Vec<ApiKeyView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_api_keys(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_api_keys(&who, &tenant).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/api-keys/{key_id}", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 200, description = "Revoked", body = ApiKeyView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn revoke_api_key(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<ApiKeyView>> {
    let Path((tenant, key_id)) = path?;
    Ok(Json(
        s.service.revoke_api_key(&who, &tenant, &key_id).await?,
    ))
}

// --- numbers -----------------------------------------------------------------------------------

#[utoipa::path(post, path = "/tenants/{tenant}/numbers", tag = "numbers",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = AddNumberRequest,
    responses((status = 201, description = "Added", body = NumberView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn add_number(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<AddNumberRequest>,
) -> ApiResult<(StatusCode, Json<NumberView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok(created(s.service.add_number(&who, &tenant, req).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/numbers", tag = "numbers",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's numbers", body = Vec<NumberView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_numbers(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<NumberView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_numbers(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/numbers/{number}", tag = "numbers",
    params(("tenant" = String, Path, description = "Tenant id"), ("number" = String, Path, description = "E.164 number (`%2B` for `+`)")),
    request_body = RouteNumberRequest,
    responses((status = 200, description = "Routed to the agent", body = NumberView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn route_number(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<RouteNumberRequest>,
) -> ApiResult<Json<NumberView>> {
    let Path((tenant, number)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service.route_number(&who, &tenant, &number, req).await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/numbers/{number}", tag = "numbers",
    params(("tenant" = String, Path, description = "Tenant id"), ("number" = String, Path, description = "E.164 number")),
    responses((status = 204, description = "Removed"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn remove_number(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, number)) = path?;
    s.service.remove_number(&who, &tenant, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- agents ------------------------------------------------------------------------------------

#[utoipa::path(post, path = "/tenants/{tenant}/agents", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = AgentRequest,
    responses((status = 201, description = "Created", body = AgentView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_agent(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<AgentRequest>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok(created(s.service.create_agent(&who, &tenant, req).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/agents", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's agents", body = Vec<AgentView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_agents(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<AgentView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_agents(&who, &tenant).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/agents/{agent}", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id or name")),
    responses((status = 200, description = "The agent", body = AgentView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_agent(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<AgentView>> {
    let Path((tenant, agent)) = path?;
    Ok(Json(s.service.get_agent(&who, &tenant, &agent).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/agents/{agent}", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id or name")),
    request_body = AgentRequest,
    responses((status = 200, description = "Replaced", body = AgentView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn update_agent(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<AgentRequest>,
) -> ApiResult<Json<AgentView>> {
    let Path((tenant, agent)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service.update_agent(&who, &tenant, &agent, req).await?,
    ))
}

#[utoipa::path(patch, path = "/tenants/{tenant}/agents/{agent}", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id or name")),
    request_body(content = AgentPatch, description = "JSON merge patch (RFC 7396): only the fields given change; `null` resets one to its default", content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Patched", body = AgentView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn patch_agent(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<serde_json::Value>,
) -> ApiResult<Json<AgentView>> {
    let Path((tenant, agent)) = path?;
    let Json(patch) = body?;
    Ok(Json(
        s.service.patch_agent(&who, &tenant, &agent, patch).await?,
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/agents/{agent}", tag = "agents",
    params(("tenant" = String, Path, description = "Tenant id"), ("agent" = String, Path, description = "Agent id or name")),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_agent(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, agent)) = path?;
    s.service.delete_agent(&who, &tenant, &agent).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- connectors --------------------------------------------------------------------------------

#[utoipa::path(get, path = "/tenants/{tenant}/connectors", tag = "connectors",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's connectors", body = Vec<ConnectorView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_connectors(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<ConnectorView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_connectors(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/connectors/{vendor}", tag = "connectors",
    params(("tenant" = String, Path, description = "Tenant id"),
        ("vendor" = String, Path, description = "A vendor id (`callbridge connector vendors` lists them)")),
    request_body = ConnectorRequest,
    responses((status = 200, description = "Created or replaced", body = ConnectorView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_connector(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<ConnectorRequest>,
) -> ApiResult<Json<ConnectorView>> {
    let Path((tenant, vendor)) = path?;
    let Json(req) = body?;
    Ok(Json(
        s.service.put_connector(&who, &tenant, &vendor, req).await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/connectors/{vendor}", tag = "connectors",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor")),
    responses((status = 200, description = "The connector", body = ConnectorView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_connector(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<ConnectorView>> {
    let Path((tenant, vendor)) = path?;
    Ok(Json(s.service.get_connector(&who, &tenant, &vendor).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/connectors/{vendor}", tag = "connectors",
    params(("tenant" = String, Path, description = "Tenant id"), ("vendor" = String, Path, description = "Vendor")),
    responses((status = 204, description = "Removed"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_connector(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, vendor)) = path?;
    s.service.delete_connector(&who, &tenant, &vendor).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- secrets -----------------------------------------------------------------------------------

#[utoipa::path(get, path = "/tenants/{tenant}/secrets", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "Names, vendors, last 4 characters and timestamps; never values", body = Vec<SecretView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_secrets(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<SecretView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_secrets(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/secrets/{name}", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    request_body = SecretRequest,
    responses((status = 200, description = "Stored encrypted; the value is never returned", body = SecretView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_secret(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
    body: Body<SecretRequest>,
) -> ApiResult<Json<SecretView>> {
    let Path((tenant, name)) = path?;
    let Json(req) = body?;
    let value = SecretString::from(req.value);
    Ok(Json(
        s.service
            .put_secret(&who, &tenant, &name, &req.vendor, value)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/secrets/{name}", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 200, description = "The secret's metadata (never its value)", body = SecretView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_secret(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<SecretView>> {
    let Path((tenant, name)) = path?;
    Ok(Json(s.service.get_secret(&who, &tenant, &name).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/secrets/{name}", tag = "secrets",
    params(("tenant" = String, Path, description = "Tenant id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_secret(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, name)) = path?;
    s.service.delete_secret(&who, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- calls -------------------------------------------------------------------------------------

#[utoipa::path(post, path = "/calls", tag = "calls",
    request_body = PlaceCallRequest,
    responses((status = 201, description = "Twilio accepted the call", body = PlacedCallView),
        (status = 409, description = "Number on the do-not-call list, or no caller ID", body = ErrorBody),
        (status = 503, description = "Outbound calling unavailable or Twilio rate limiting", body = ErrorBody),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn place_call(
    State(s): Svc,
    Extension(who): Who,
    body: Body<PlaceCallRequest>,
) -> ApiResult<(StatusCode, Json<PlacedCallView>)> {
    let Json(request) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.place_call(&who, &request).await?),
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), CallsQuery),
    responses((status = 200, description = "Most recent calls first", body = Vec<CallView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_calls(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    query: Result<Query<CallsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<CallView>>> {
    let Path(tenant) = path?;
    let Query(query) = query?;
    Ok(Json(
        s.service.list_calls(&who, &tenant, query.limit).await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls/{call}", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    responses((status = 200, description = "The call and its events", body = CallDetail), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_call(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<CallDetail>> {
    let Path((tenant, call)) = path?;
    Ok(Json(s.service.get_call(&who, &tenant, &call).await?))
}

#[utoipa::path(get, path = "/tenants/{tenant}/calls/{call}/recording", tag = "calls",
    params(("tenant" = String, Path, description = "Tenant id"), ("call" = String, Path, description = "Call id")),
    responses(
        (status = 200, description = "The call's recording: WAV (PCM16) or Ogg/Opus, as recorded", content((String = "audio/wav"), (String = "audio/ogg"))),
        ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_call_recording(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let Path((tenant, call)) = path?;
    let (file, media_type) = s.service.call_recording(&who, &tenant, &call).await?;
    let file = tokio::fs::File::open(&file).await.map_err(|_| {
        ApiError::from(crate::admin::ServiceError::NotFound(format!(
            "recording of call {call:?}"
        )))
    })?;
    // Streamed in chunks: a long call's recording is not held in memory.
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let name = format!(
        "attachment; filename=\"{call}.{}\"",
        if media_type == "audio/wav" {
            "wav"
        } else {
            "opus"
        }
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, media_type.to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, name),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

// --- webhook -----------------------------------------------------------------------------------

#[utoipa::path(get, path = "/tenants/{tenant}/webhook", tag = "webhook",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The post-call webhook settings", body = WebhookView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_webhook(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<WebhookView>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.get_webhook(&who, &tenant).await?))
}

#[utoipa::path(put, path = "/tenants/{tenant}/webhook", tag = "webhook",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = WebhookRequest,
    responses((status = 200, description = "Created or replaced", body = WebhookView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn put_webhook(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<WebhookRequest>,
) -> ApiResult<Json<WebhookView>> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok(Json(s.service.put_webhook(&who, &tenant, req).await?))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/webhook", tag = "webhook",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Removed; pending deliveries are cancelled"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_webhook(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<StatusCode> {
    let Path(tenant) = path?;
    s.service.delete_webhook(&who, &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/tenants/{tenant}/webhook/signing-secret", tag = "webhook",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = GenerateSigningSecretRequest,
    responses((status = 201, description = "Generated; `signing_secret` is shown only now", body = GeneratedSigningSecret), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn generate_signing_secret(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Result<Option<Json<GenerateSigningSecretRequest>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<GeneratedSigningSecret>)> {
    let Path(tenant) = path?;
    // The body is optional: no body (and no Content-Type) means the default name.
    let req = body?.map(|Json(req)| req).unwrap_or_default();
    Ok(created(
        s.service
            .generate_signing_secret(&who, &tenant, req)
            .await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/webhook/deliveries", tag = "webhook",
    params(("tenant" = String, Path, description = "Tenant id"), CallsQuery),
    responses((status = 200, description = "Recent outbox messages and their delivery state", body = Vec<DeliveryView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_deliveries(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    query: Result<Query<CallsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    let Path(tenant) = path?;
    let Query(query) = query?;
    Ok(Json(
        s.service
            .list_deliveries(&who, &tenant, query.limit)
            .await?,
    ))
}

//! `/mcp`: the tenant's tools over MCP's streamable HTTP transport (POST for requests, GET for the
//! server's event stream, DELETE to end a session), served by the SDK's own service
//! ([`rmcp::transport::StreamableHttpService`]) around [`crate::mcp::server::TenantToolServer`].
//!
//! Owns the HTTP side only: the bearer key is checked by the admin API's own middleware (same
//! keys, same throttle), then the tenant is settled — a tenant key's own tenant; the admin key
//! names one with `?tenant=` or the `X-Callbridge-Tenant` header — and put in the request's
//! extensions as [`McpTenant`]. It must not run tools or read tenant data itself.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::api::error::ApiError;
use super::api::{ApiState, MAX_BODY_BYTES, auth};
use crate::admin::Principal;
use crate::app::App;
use crate::mcp::server::{McpServerDeps, McpTenant, TenantToolServer};

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// The header an admin key names the tenant with (instead of `?tenant=`).
pub const TENANT_HEADER: &str = "x-callbridge-tenant";

/// The `/mcp` route, authenticated with `api` (the admin API's keys and throttle).
pub fn router<S: Clone + Send + Sync + 'static>(deps: &App, api: Arc<ApiState>) -> Router<S> {
    let server = McpServerDeps {
        runtime: deps.tool_runtime(),
        service: api.service.clone(),
        metrics: deps.metrics.clone(),
    };
    let service = StreamableHttpService::new(
        move || Ok(TenantToolServer::new(server.clone())),
        Arc::new(LocalSessionManager::default()),
        transport_config(&deps.config.public_url),
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&api),
            settle_tenant,
        ))
        .layer(axum::middleware::from_fn_with_state(api, auth::require_key))
}

/// The SDK's transport settings: the `Host` header must name this server (its public URL's host
/// or loopback: a DNS-rebinding page cannot borrow it), and bodies are as small as the API's.
fn transport_config(public_url: &str) -> StreamableHttpServerConfig {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(url) = url::Url::parse(public_url)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.trim_matches(['[', ']']).to_owned());
    }
    StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(MAX_BODY_BYTES)
}

/// Middleware after authentication: the request's tenant, or the API's error answer (an unknown
/// tenant and another tenant's answer alike: 404).
async fn settle_tenant(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(who) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let named = request
        .uri()
        .query()
        .and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "tenant")
                .map(|(_, value)| value.into_owned())
        })
        .or_else(|| {
            request
                .headers()
                .get(TENANT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    match state.service.requested_tenant(&who, named.as_deref()).await {
        Ok(tenant) => {
            request.extensions_mut().insert(McpTenant(tenant));
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

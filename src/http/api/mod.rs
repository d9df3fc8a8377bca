//! The admin REST API, nested under `/api/v1`: tenants, API keys, numbers, agents, connectors,
//! secrets (write-only), calls (read-only), post-call webhook settings and campaigns, with its OpenAPI
//! document at `GET /api/v1/openapi.json` (no authentication).
//!
//! Layout: [`service`] holds every operation (the CLI calls the same functions), [`dto`] the wire
//! types, `handlers` the thin HTTP adapters, `auth` the bearer-key middleware and [`error`] the
//! JSON error answers. This module only assembles the router; it must not hold business rules.
//!
//! Authorization: the admin key (`CALLBRIDGE_ADMIN_KEY`) sees every tenant; a tenant API key
//! sees only its own tenant, and any other tenant's object answers 404 exactly as a missing one.

mod analysis;
pub(crate) mod auth;
mod call_control;
mod campaigns;
mod connections;
mod do_not_call;

pub mod error;
mod handlers;
mod inbound;
mod mcp_servers;
mod messaging;
mod prompts;

mod throttle;
mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use secrecy::SecretString;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;

use self::error::ApiError;
use crate::admin::AdminService;

/// Largest request body accepted (a prompt is at most 32 KiB, so bodies are small;
/// `POST /campaigns` alone takes a contacts file, see `campaigns::CAMPAIGN_BODY_BYTES`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the API's handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub service: AdminService,
    /// `None`: no admin access (tenant keys still work).
    pub admin_key: Option<SecretString>,
    /// Runs tenants' tools for `POST /tools/{tool}/invoke`; `None` answers 503.
    pub tools: Option<crate::tools::invoke::ToolRuntime>,
    /// This node's live calls; `None` answers 503 (an API served without calls).
    pub live: Option<std::sync::Arc<crate::call::live::LiveCalls>>,
    /// Failed authentications per address and key prefix (429 past the limit).
    pub throttle: throttle::AuthThrottle,
    /// Where failed and throttled authentications are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl ApiState {
    pub fn new(service: AdminService, admin_key: Option<SecretString>) -> Self {
        Self {
            service,
            admin_key,
            tools: None,
            live: None,
            throttle: throttle::AuthThrottle::default(),
            metrics: std::sync::Arc::default(),
        }
    }

    /// From the server's shared state (its store, prompts, admin key and vault keyring).
    pub fn from_app(deps: &App) -> Self {
        let keyring = match &deps.keyring {
            Some(keyring) => Ok(keyring.clone()),
            None => Err(crate::tenant::vault::VaultError::MissingMasterKey),
        };
        let mut state = Self::new(
            AdminService::new(deps.store.clone(), deps.config.prompts_dir.clone(), keyring)
                .with_egress(deps.config.egress.clone())
                .with_providers(crate::admin::configured_providers(&deps.config)),
            deps.config.admin_key.clone(),
        );
        state.tools = Some(deps.tool_runtime());
        state.live = Some(deps.live.clone());
        state.metrics = deps.metrics.clone();
        if let Some(oauth) = &deps.oauth {
            state.service = state.service.clone().with_oauth(oauth.clone());
        }
        state.service = state.service.clone().with_inbound(deps.inbound.clone());
        match deps.dialer() {
            Ok(dialer) => state.service = state.service.with_dialer(dialer),
            Err(e) => tracing::warn!(error = %e, "outbound calls disabled"),
        }
        state
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callbridge admin API",
        description = "Tenants, numbers, agents, connectors, secrets, calls and post-call webhooks. \
                       Authenticate with `Authorization: Bearer <admin key or tenant API key>`."
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every authenticated route, registered together with its OpenAPI path.
fn documented_routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::create_tenant, handlers::list_tenants))
        .routes(routes!(
            handlers::get_tenant,
            handlers::update_tenant,
            handlers::delete_tenant
        ))
        .routes(routes!(handlers::create_api_key, handlers::list_api_keys))
        .routes(routes!(handlers::revoke_api_key))
        .routes(routes!(handlers::add_number, handlers::list_numbers))
        .routes(routes!(handlers::route_number, handlers::remove_number))
        .routes(routes!(handlers::create_agent, handlers::list_agents))
        .routes(routes!(
            handlers::get_agent,
            handlers::update_agent,
            handlers::patch_agent,
            handlers::delete_agent
        ))
        .routes(routes!(
            do_not_call::list_do_not_call,
            do_not_call::add_do_not_call
        ))
        .routes(routes!(do_not_call::remove_do_not_call))
        .routes(routes!(messaging::get_messaging, messaging::put_messaging))
        .routes(routes!(
            messaging::list_notification_rules,
            messaging::add_notification_rule
        ))
        .routes(routes!(messaging::delete_notification_rule))
        .routes(routes!(messaging::list_notifications))
        .routes(routes!(prompts::list_prompts))
        .routes(routes!(prompts::put_prompt, prompts::get_prompt))
        .routes(routes!(prompts::prompt_versions))
        .routes(routes!(prompts::diff_prompt))
        .routes(routes!(prompts::rollback_prompt))
        .routes(routes!(prompts::import_prompt))
        .routes(routes!(prompts::list_prompt_templates))
        .routes(routes!(handlers::list_connectors))
        .routes(routes!(
            handlers::put_connector,
            handlers::get_connector,
            handlers::delete_connector
        ))
        .routes(routes!(handlers::list_secrets))
        .routes(routes!(
            handlers::put_secret,
            handlers::get_secret,
            handlers::delete_secret
        ))
        .routes(routes!(handlers::place_call))
        .routes(routes!(handlers::list_calls))
        .routes(routes!(handlers::get_call))
        .routes(routes!(handlers::get_call_recording))
        .routes(routes!(
            handlers::get_webhook,
            handlers::put_webhook,
            handlers::delete_webhook
        ))
        .routes(routes!(handlers::generate_signing_secret))
        .routes(routes!(handlers::list_deliveries))
        .routes(routes!(tools::invoke_tool))
        .routes(routes!(
            call_control::get_transfer_destinations,
            call_control::put_transfer_destinations
        ))
        .routes(routes!(
            mcp_servers::get_mcp_servers,
            mcp_servers::put_mcp_servers
        ))
        .routes(routes!(call_control::list_live_calls))
        .routes(routes!(call_control::hang_up_live_call))
        .routes(routes!(call_control::inject_live_call))
        .routes(routes!(call_control::transfer_live_call))
        .routes(routes!(call_control::live_call_events))
        .routes(routes!(
            analysis::get_analysis_settings,
            analysis::put_analysis_settings,
            analysis::delete_analysis_settings
        ))
        .routes(routes!(analysis::get_call_analysis))
        .routes(routes!(analysis::get_retention, analysis::put_retention))
        .merge(
            // A campaign is created with its contacts file, far larger than any other body.
            OpenApiRouter::new()
                .routes(routes!(
                    campaigns::create_campaign,
                    campaigns::list_campaigns
                ))
                .layer(DefaultBodyLimit::max(campaigns::CAMPAIGN_BODY_BYTES)),
        )
        .routes(routes!(connections::start_connection))
        .routes(routes!(connections::list_connections))
        .routes(routes!(
            connections::get_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::list_deployment_apps))
        .routes(routes!(
            connections::put_deployment_app,
            connections::get_deployment_app,
            connections::delete_deployment_app
        ))
        .routes(routes!(connections::list_tenant_apps))
        .routes(routes!(
            connections::put_tenant_app,
            connections::get_tenant_app,
            connections::delete_tenant_app
        ))
        .routes(routes!(campaigns::get_campaign))
        .routes(routes!(campaigns::pause_campaign))
        .routes(routes!(campaigns::resume_campaign))
        .routes(routes!(campaigns::cancel_campaign))
        .routes(routes!(campaigns::campaign_results))
        .routes(routes!(
            campaigns::get_dial_limits,
            campaigns::put_dial_limits
        ))
        .routes(routes!(inbound::list_sources, inbound::create_source))
        .routes(routes!(inbound::delete_source))
        .routes(routes!(inbound::list_rules, inbound::create_rule))
        .routes(routes!(inbound::delete_rule))
        .routes(routes!(inbound::list_events))
        .routes(routes!(inbound::get_event))
        .routes(routes!(inbound::replay_event))
}

/// The OpenAPI document (paths relative to `/api/v1`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// The API router for the server, to nest under `/api/v1`.
pub fn router<S: Clone + Send + Sync + 'static>(deps: &App) -> Router<S> {
    router_with(ApiState::from_app(deps))
}

/// The API router over an explicit state (tests, embedding).
pub fn router_with<S: Clone + Send + Sync + 'static>(state: ApiState) -> Router<S> {
    router_shared(Arc::new(state))
}

/// The API router over a state another surface shares (`/mcp` uses the same keys and throttle).
pub fn router_shared<S: Clone + Send + Sync + 'static>(state: Arc<ApiState>) -> Router<S> {
    let (authenticated, doc) = documented_routes().split_for_parts();
    let doc = Arc::new(doc);
    let authenticated = authenticated.route_layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state),
        auth::require_key,
    ));
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(authenticated)
        .fallback(|| async { ApiError::not_found("no such API route").into_response() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

//! Inbound webhook management handlers (sources, rules, events, replay): thin adapters to
//! [`crate::admin::AdminService`] (`admin::inbound`). The vendors' own deliveries arrive at
//! `/hooks/...` (`http/hooks.rs`), not here. No business rules here.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::handlers::{ApiErrors, ApiResult, Body, P1, Svc, Who};
use crate::admin::inbound::*;

type P2 = Result<Path<(String, String)>, PathRejection>;

#[utoipa::path(get, path = "/tenants/{tenant}/inbound/sources", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's sources with their URLs (never their secrets)", body = Vec<SourceView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_sources(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<SourceView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_sources(&who, &tenant).await?))
}

#[utoipa::path(post, path = "/tenants/{tenant}/inbound/sources", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = CreateSourceRequest,
    responses((status = 201, description = "Created: the URL and, once, the generated secret to paste at the vendor", body = CreatedSourceView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_source(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<CreateSourceRequest>,
) -> ApiResult<(StatusCode, Json<CreatedSourceView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_source(&who, &tenant, req).await?),
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/inbound/sources/{source}", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id"), ("source" = String, Path, description = "Source id")),
    responses((status = 204, description = "Deleted with its secrets (its events stay)"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_source(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, source)) = path?;
    s.service.delete_source(&who, &tenant, &source).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tenants/{tenant}/inbound/rules", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant's rules", body = Vec<RuleView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_rules(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
) -> ApiResult<Json<Vec<RuleView>>> {
    let Path(tenant) = path?;
    Ok(Json(s.service.list_rules(&who, &tenant).await?))
}

#[utoipa::path(post, path = "/tenants/{tenant}/inbound/rules", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = CreateRuleRequest,
    responses((status = 201, description = "Created (a call rule with its campaign)", body = RuleView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn create_rule(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    body: Body<CreateRuleRequest>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let Path(tenant) = path?;
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_rule(&who, &tenant, req).await?),
    ))
}

#[utoipa::path(delete, path = "/tenants/{tenant}/inbound/rules/{rule}", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id"), ("rule" = String, Path, description = "Rule id")),
    responses((status = 204, description = "Deleted (a call rule's campaign is cancelled)"), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn delete_rule(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<StatusCode> {
    let Path((tenant, rule)) = path?;
    s.service.delete_rule(&who, &tenant, &rule).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tenants/{tenant}/inbound/events", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id"), EventsQuery),
    responses((status = 200, description = "Recent verified events, newest first, with their processing state", body = Vec<InboundEventView>), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn list_events(
    State(s): Svc,
    Extension(who): Who,
    path: P1,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<InboundEventView>>> {
    let Path(tenant) = path?;
    let Query(query) = query?;
    Ok(Json(
        s.service.list_inbound_events(&who, &tenant, query).await?,
    ))
}

#[utoipa::path(get, path = "/tenants/{tenant}/inbound/events/{event}", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id"), ("event" = String, Path, description = "Event id")),
    responses((status = 200, description = "The event, its payload and what each rule did", body = InboundEventDetail), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn get_event(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<InboundEventDetail>> {
    let Path((tenant, event)) = path?;
    Ok(Json(s.service.inbound_event(&who, &tenant, &event).await?))
}

#[utoipa::path(post, path = "/tenants/{tenant}/inbound/events/{event}/replay", tag = "inbound",
    params(("tenant" = String, Path, description = "Tenant id"), ("event" = String, Path, description = "Event id")),
    responses((status = 200, description = "Back in the inbox, due now (rules already recorded for it are not run again)", body = InboundEventView), ApiErrors),
    security(("bearer" = [])))]
pub(super) async fn replay_event(
    State(s): Svc,
    Extension(who): Who,
    path: P2,
) -> ApiResult<Json<InboundEventView>> {
    let Path((tenant, event)) = path?;
    Ok(Json(
        s.service
            .replay_inbound_event(&who, &tenant, &event)
            .await?,
    ))
}

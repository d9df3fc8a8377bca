//! Twilio's two entry points: the voice webhook (answers TwiML that opens a media stream) and the
//! media WebSocket upgrade. Both are signature-checked against `PUBLIC_URL` before anything else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tracing::{error, info, warn};

use crate::app::App;
use crate::call::driver::{CallDeps, run_call, unix_now};
use crate::call::plan::{PlanError, Route, plan_call, route_call};
use crate::campaign::verify_call_reference;
use crate::connectors::twilio_rest::{Hangup, Instructions, TwilioRest, UpdateCall};
use crate::logging::number_for_log;
use crate::store::{CallEventKind, CallStatus, MachineAction, Store, StoreError};
use crate::twilio::signature;
use crate::twilio::stream::MAX_FRAME_LEN;
use crate::twilio::token::{self, StreamClaims};
use crate::twilio::twiml;

/// How long the stream token in the TwiML stays valid: Twilio connects within seconds.
const STREAM_TOKEN_TTL_SECS: u64 = 120;

fn forbidden(deps: &CallDeps, kind: &'static str, why: &str, path: &str) -> Response {
    deps.metrics.error(kind);
    warn!(path, why, "rejected Twilio request");
    (StatusCode::FORBIDDEN, "invalid Twilio signature\n").into_response()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /twilio/voice`: Twilio asks what to do with a call.
pub(super) async fn voice_webhook(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deps = app.call_deps();
    let path = uri.path_and_query().map_or("/twilio/voice", |p| p.as_str());
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        deps.metrics.error("twilio_malformed_webhook");
        return (StatusCode::BAD_REQUEST, "body is not form-encoded\n").into_response();
    };
    let url = format!("{}{}", deps.config.public_url, path);
    let Some(given) = header_text(&headers, "x-twilio-signature") else {
        return forbidden(
            &deps,
            "twilio_missing_signature",
            "no X-Twilio-Signature",
            path,
        );
    };
    if !signature::is_valid(
        deps.config.twilio_auth_token.expose_secret(),
        &url,
        &params,
        given,
    ) {
        return forbidden(&deps, "twilio_bad_signature", "signature mismatch", path);
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if param("AccountSid") != Some(deps.config.twilio_account_sid.as_str()) {
        return forbidden(
            &deps,
            "twilio_wrong_account",
            "AccountSid is not ours",
            path,
        );
    }
    let (Some(call_sid), Some(from), Some(to)) = (param("CallSid"), param("From"), param("To"))
    else {
        deps.metrics.error("twilio_malformed_webhook");
        return (
            StatusCode::BAD_REQUEST,
            "CallSid, From and To are required\n",
        )
            .into_response();
    };
    if let Some(refused) = already_streamed(&deps, call_sid).await {
        return refused;
    }
    // Outbound calls are routed by the call reference we signed into the URL, never by number.
    if param("Direction") == Some("outbound-api") {
        return outbound_voice(&deps, uri.query(), call_sid, from, to).await;
    }
    let route = match route_call(&deps, to).await {
        Ok(route) => route,
        Err(e) => return technical_difficulties(&deps, call_sid, &e),
    };
    if route == Route::NotInService {
        deps.metrics.error("call_to_unknown_number");
        warn!(
            call_sid,
            to, "no tenant owns the called number; playing not-in-service"
        );
        return twiml_response(twiml::say_and_hang_up(NOT_IN_SERVICE));
    }
    // Check now that the agent can run (provider, prompt), while the caller can still be told;
    // the tenant's call history keeps the failed call and its reason.
    if let Err(e) = plan_call(&deps, route.clone()).await {
        crate::call::plan::record_failed_setup(&deps, &route, call_sid, from, to, &e).await;
        return technical_difficulties(&deps, call_sid, &e);
    }
    let (tenant, agent) = route.ids();
    let claims = StreamClaims {
        call_sid: call_sid.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        tenant: tenant.to_owned(),
        agent: agent.to_owned(),
        expires_at: unix_now() + STREAM_TOKEN_TTL_SECS,
        resume: String::new(),
    };
    let stream_token = token::mint(deps.config.twilio_auth_token.expose_secret(), &claims);
    let expires = claims.expires_at.to_string();
    let xml = twiml::connect_stream(
        &deps.config.media_url(),
        &[
            ("from", from),
            ("to", to),
            ("tenant", tenant),
            ("agent", agent),
            ("exp", &expires),
            ("token", &stream_token),
        ],
    );
    info!(
        call_sid,
        from = %number_for_log(from),
        to = %number_for_log(to),
        tenant,
        agent,
        "incoming call: opening media stream"
    );
    twiml_response(xml)
}

/// A replayed voice webhook (signatures carry no timestamp) must not mint a fresh stream token for
/// a call that already streamed: `Some(refusal)` then, or when the claim cannot be read.
async fn already_streamed(deps: &CallDeps, call_sid: &str) -> Option<Response> {
    match deps.store.stream_claimed(call_sid).await {
        Ok(false) => None,
        Ok(true) => {
            deps.metrics.error("twilio_webhook_replayed");
            warn!(
                call_sid,
                "voice webhook for a call that already streamed; no new stream token"
            );
            Some((StatusCode::CONFLICT, "call already streamed\n").into_response())
        }
        Err(e) => {
            deps.metrics.error("store_unavailable");
            error!(call_sid, error = %e, "cannot read the stream claim");
            Some((StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response())
        }
    }
}

/// The stream TwiML for a routed call, or the technical-difficulties message if the agent
/// cannot run.
async fn stream_twiml(
    deps: &CallDeps,
    route: Route,
    call_sid: &str,
    from: &str,
    to: &str,
) -> Response {
    if let Err(e) = plan_call(deps, route.clone()).await {
        return technical_difficulties(deps, call_sid, &e);
    }
    let (tenant, agent) = route.ids();
    let claims = StreamClaims {
        call_sid: call_sid.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        tenant: tenant.to_owned(),
        agent: agent.to_owned(),
        expires_at: unix_now() + STREAM_TOKEN_TTL_SECS,
        resume: String::new(),
    };
    let stream_token = token::mint(deps.config.twilio_auth_token.expose_secret(), &claims);
    let expires = claims.expires_at.to_string();
    twiml_response(twiml::connect_stream(
        &deps.config.media_url(),
        &[
            ("from", from),
            ("to", to),
            ("tenant", tenant),
            ("agent", agent),
            ("exp", &expires),
            ("token", &stream_token),
        ],
    ))
}

/// The call record id named by the signed `ref` query parameter.
fn call_reference(deps: &CallDeps, query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    let reference = pairs.into_iter().find(|(k, _)| k == "ref")?.1;
    verify_call_reference(deps.config.twilio_auth_token.expose_secret(), &reference)
        .map(str::to_owned)
}

/// An outbound call was answered: stream it to the agent the call record names.
async fn outbound_voice(
    deps: &CallDeps,
    query: Option<&str>,
    call_sid: &str,
    from: &str,
    to: &str,
) -> Response {
    let Some(call_id) = call_reference(deps, query) else {
        deps.metrics.error("outbound_without_reference");
        warn!(
            call_sid,
            "outbound call webhook without a valid call reference; hanging up"
        );
        return twiml_response(twiml::say_and_hang_up(TECHNICAL_DIFFICULTIES));
    };
    let outbound = match deps.store.outbound_call(&call_id).await {
        Ok(outbound) => outbound,
        Err(e) => {
            deps.metrics.error("outbound_unknown_call");
            error!(call_sid, call_id, error = %e, "outbound call record not found");
            return twiml_response(twiml::say_and_hang_up(TECHNICAL_DIFFICULTIES));
        }
    };
    if let Some(known) = &outbound.call.twilio_call_sid
        && known != call_sid
    {
        return forbidden(
            deps,
            "outbound_sid_mismatch",
            "reference names another call",
            "/twilio/voice",
        );
    }
    if let Err(e) = deps.store.attach_call_sid(&call_id, call_sid).await {
        warn!(call_sid, call_id, error = %e, "cannot attach the call SID");
    }
    let route = Route::Agent {
        tenant: outbound.call.tenant_id.clone(),
        agent_id: outbound.call.agent_id.clone(),
    };
    info!(
        call_sid,
        call_id,
        from = %number_for_log(from),
        to = %number_for_log(to),
        "outbound call answered: opening media stream"
    );
    stream_twiml(deps, route, call_sid, from, to).await
}

/// Checks a Twilio callback's signature and account; returns its form parameters.
#[allow(clippy::result_large_err)]
pub(super) fn signed_params(
    deps: &CallDeps,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Response> {
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else {
        deps.metrics.error("twilio_malformed_webhook");
        return Err((StatusCode::BAD_REQUEST, "body is not form-encoded\n").into_response());
    };
    let url = format!("{}{}", deps.config.public_url, path);
    let Some(given) = header_text(headers, "x-twilio-signature") else {
        return Err(forbidden(
            deps,
            "twilio_missing_signature",
            "no X-Twilio-Signature",
            path,
        ));
    };
    if !signature::is_valid(
        deps.config.twilio_auth_token.expose_secret(),
        &url,
        &params,
        given,
    ) {
        return Err(forbidden(
            deps,
            "twilio_bad_signature",
            "signature mismatch",
            path,
        ));
    }
    let account = params
        .iter()
        .find(|(k, _)| k == "AccountSid")
        .map(|(_, v)| v.as_str());
    if account != Some(deps.config.twilio_account_sid.as_str()) {
        return Err(forbidden(
            deps,
            "twilio_wrong_account",
            "AccountSid is not ours",
            path,
        ));
    }
    Ok(params)
}

pub(super) fn form_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `POST /twilio/status?ref=…`: call progress of an outbound call. Callbacks can arrive out of
/// order; the store only ever moves a call forward and never out of a final status.
pub(super) async fn status_callback(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deps = app.call_deps();
    let path = uri
        .path_and_query()
        .map_or("/twilio/status", |p| p.as_str());
    let params = match signed_params(&deps, path, &headers, &body) {
        Ok(params) => params,
        Err(response) => return response,
    };
    let Some(call_id) = call_reference(&deps, uri.query()) else {
        deps.metrics.error("outbound_without_reference");
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid call reference\n",
        )
            .into_response();
    };
    let (Some(call_sid), Some(status)) = (
        form_param(&params, "CallSid"),
        form_param(&params, "CallStatus").and_then(twilio_call_status),
    ) else {
        deps.metrics.error("twilio_malformed_webhook");
        return (
            StatusCode::BAD_REQUEST,
            "CallSid and a known CallStatus are required\n",
        )
            .into_response();
    };
    if let Err(e) = deps.store.attach_call_sid(&call_id, call_sid).await {
        warn!(call_id, error = %e, "cannot attach the call SID");
    }
    match deps.store.advance_call_status(&call_id, status).await {
        Ok((call, changed)) => {
            let payload = serde_json::json!({
                "source": "twilio_status_callback",
                "call_status": form_param(&params, "CallStatus"),
                "sequence": form_param(&params, "SequenceNumber"),
                "duration_s": form_param(&params, "CallDuration"),
                "answered_by": form_param(&params, "AnsweredBy"),
                "applied": changed,
            });
            if let Err(e) = deps
                .store
                .append_call_event(&call.tenant_id, &call.id, CallEventKind::Status, &payload)
                .await
            {
                warn!(call_id, error = %e, "cannot record the status event");
            }
            info!(
                call_id,
                call_sid,
                status = status.as_str(),
                changed,
                "outbound call status"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(StoreError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "unknown call\n").into_response()
        }
        Err(e) => {
            deps.metrics.error("store_write_failed");
            error!(call_id, error = %e, "cannot record the call status");
            // 5xx so Twilio's retry (if any) can deliver it again.
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// Twilio's `CallStatus`; `initiated` is Twilio's name for a call leaving the queue.
fn twilio_call_status(raw: &str) -> Option<CallStatus> {
    match raw {
        "initiated" => Some(CallStatus::Queued),
        other => CallStatus::parse(other),
    }
}

/// `POST /twilio/amd?ref=…`: the asynchronous answering machine detection result. A machine gets
/// the call's configured treatment: hang up, or the voicemail message once the greeting ended.
pub(super) async fn amd_callback(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let deps = app.call_deps();
    let path = uri.path_and_query().map_or("/twilio/amd", |p| p.as_str());
    let params = match signed_params(&deps, path, &headers, &body) {
        Ok(params) => params,
        Err(response) => return response,
    };
    let Some(call_id) = call_reference(&deps, uri.query()) else {
        deps.metrics.error("outbound_without_reference");
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid call reference\n",
        )
            .into_response();
    };
    let (Some(call_sid), Some(answered_by)) = (
        form_param(&params, "CallSid"),
        form_param(&params, "AnsweredBy"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "CallSid and AnsweredBy are required\n",
        )
            .into_response();
    };
    let outbound = match deps.store.outbound_call(&call_id).await {
        Ok(outbound) => outbound,
        Err(_) => return (StatusCode::NOT_FOUND, "unknown call\n").into_response(),
    };
    let machine = answered_by.starts_with("machine_") || answered_by == "fax";
    let message_ready = answered_by.starts_with("machine_end_");
    let update = match (machine, outbound.machine_action, &outbound.voicemail_text) {
        (false, _, _) | (true, None, _) => None,
        (true, Some(MachineAction::Message), Some(text)) if message_ready => Some((
            "voicemail_left",
            UpdateCall::Redirect(Instructions::Twiml(twiml::say_and_hang_up(text))),
        )),
        (true, Some(_), _) => Some(("machine_hung_up", UpdateCall::Hangup(Hangup::Completed))),
    };
    let outcome = match update {
        None if machine => "machine_ignored",
        None => "human",
        Some((outcome, update)) => {
            let rest = match TwilioRest::from_env(
                &deps.policy,
                &deps.config.twilio_account_sid,
                deps.config.twilio_auth_token.expose_secret(),
            ) {
                Ok(rest) => rest,
                Err(e) => {
                    error!(call_id, error = %e, "cannot build the Twilio client");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Twilio client unavailable\n",
                    )
                        .into_response();
                }
            };
            match rest.update_call(call_sid, &update).await {
                Ok(_) => outcome,
                Err(e) => {
                    deps.metrics.error("twilio_update_failed");
                    error!(call_id, call_sid, error = %e, "cannot act on the machine answer");
                    "machine_action_failed"
                }
            }
        }
    };
    if let Err(e) = deps.store.record_amd(&call_id, answered_by, outcome).await {
        warn!(call_id, error = %e, "cannot record the AMD outcome");
    }
    info!(
        call_id,
        call_sid, answered_by, outcome, "answering machine detection"
    );
    StatusCode::NO_CONTENT.into_response()
}

const NOT_IN_SERVICE: &str =
    "Sorry, the number you have called is not in service. Please check the number and try again.";
const TECHNICAL_DIFFICULTIES: &str =
    "Sorry, we are experiencing technical difficulties. Please call again later.";

pub(super) fn twiml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

fn technical_difficulties(deps: &CallDeps, call_sid: &str, error: &PlanError) -> Response {
    deps.metrics.error("call_setup_failed");
    error!(call_sid, error = %error, "cannot set up the call");
    twiml_response(twiml::say_and_hang_up(TECHNICAL_DIFFICULTIES))
}

/// `GET /twilio/media`: the media stream WebSocket.
pub(super) async fn media_socket(
    State(app): State<Arc<App>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let deps = app.call_deps();
    let path = uri.path_and_query().map_or("/twilio/media", |p| p.as_str());
    // Twilio signs the wss:// URL exactly as written in the TwiML, with no parameters.
    let url = format!("{}{}", deps.config.public_ws_url, path);
    let Some(given) = header_text(&headers, "x-twilio-signature") else {
        return forbidden(
            &deps,
            "twilio_missing_signature",
            "no x-twilio-signature on upgrade",
            path,
        );
    };
    if !signature::is_valid(
        deps.config.twilio_auth_token.expose_secret(),
        &url,
        &[],
        given,
    ) {
        return forbidden(
            &deps,
            "twilio_bad_signature",
            "upgrade signature mismatch",
            path,
        );
    }

    upgrade
        // Oversized frames are refused by the frame parser (counted, call goes on); the socket
        // limit only stops a peer from making us buffer without bound.
        .max_message_size(16 * MAX_FRAME_LEN)
        .read_buffer_size(crate::call::driver::TWILIO_READ_BUFFER)
        .write_buffer_size(crate::call::driver::TWILIO_WRITE_BUFFER)
        .on_upgrade(move |socket| run_call(deps, socket))
}

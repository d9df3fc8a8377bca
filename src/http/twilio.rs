//! Twilio's two entry points: the voice webhook (answers TwiML that opens a media stream) and the
//! media WebSocket upgrade. Both are signature-checked against `PUBLIC_URL` before anything else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tracing::{error, info, warn};

use crate::call::driver::{CallDeps, run_call, unix_now};
use crate::call::plan::{PlanError, Route, plan_call, route_call};
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
    State(deps): State<Arc<CallDeps>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    // Check now that the agent can run (provider, prompt), while the caller can still be told.
    if let Err(e) = plan_call(&deps, route.clone()).await {
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
        from, to, tenant, agent, "incoming call: opening media stream"
    );
    twiml_response(xml)
}

const NOT_IN_SERVICE: &str =
    "Sorry, the number you have called is not in service. Please check the number and try again.";
const TECHNICAL_DIFFICULTIES: &str =
    "Sorry, we are experiencing technical difficulties. Please call again later.";

fn twiml_response(xml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}

fn technical_difficulties(deps: &CallDeps, call_sid: &str, error: &PlanError) -> Response {
    deps.metrics.error("call_setup_failed");
    error!(call_sid, error = %error, "cannot set up the call");
    twiml_response(twiml::say_and_hang_up(TECHNICAL_DIFFICULTIES))
}

/// `GET /twilio/media`: the media stream WebSocket.
pub(super) async fn media_socket(
    State(deps): State<Arc<CallDeps>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
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
    let deps = CallDeps::clone(&deps);
    upgrade
        // Oversized frames are refused by the frame parser (counted, call goes on); the socket
        // limit only stops a peer from making us buffer without bound.
        .max_message_size(16 * MAX_FRAME_LEN)
        .on_upgrade(move |socket| run_call(deps, socket))
}

//! Twilio's two entry points: the voice webhook (answers TwiML that opens a media stream) and the
//! media WebSocket upgrade. Both are signature-checked against `PUBLIC_URL` before anything else.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tracing::{info, warn};

use crate::call::driver::{CallDeps, run_call, unix_now};
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
    let claims = StreamClaims {
        call_sid: call_sid.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        expires_at: unix_now() + STREAM_TOKEN_TTL_SECS,
    };
    let stream_token = token::mint(deps.config.twilio_auth_token.expose_secret(), &claims);
    let expires = claims.expires_at.to_string();
    let xml = twiml::connect_stream(
        &deps.config.media_url(),
        &[
            ("from", from),
            ("to", to),
            ("exp", &expires),
            ("token", &stream_token),
        ],
    );
    info!(call_sid, from, to, "incoming call: opening media stream");
    ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
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

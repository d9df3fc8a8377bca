//! Twilio request signatures (`X-Twilio-Signature`): computing and checking them.
//!
//! Owns the HMAC-SHA1 scheme of protocols.md §2 — URL, then each form key followed by its values,
//! sorted — and the port tolerance Twilio's own validator has. It must not decide which URL a request
//! was made to: callers pass the public URL they configured, never one rebuilt from request headers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// The signature Twilio sends for a request to `url` carrying the form `params` (empty for GET and
/// for the WebSocket upgrade).
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut mac =
        HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts a key of any length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `signature` matches `url` and `params`, with the URL taken as written or with its
/// default port added or removed (Twilio signs either form).
pub fn is_valid(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let given = signature.trim().as_bytes();
    let mut ok = false;
    for candidate in [Some(url.to_owned()), toggle_default_port(url)]
        .into_iter()
        .flatten()
    {
        let expected = compute(auth_token, &candidate, params);
        // Evaluate every candidate so the time taken does not depend on which one matched.
        ok |= bool::from(expected.as_bytes().ct_eq(given));
    }
    ok
}

/// `url` with its scheme's default port removed when present, or added when absent.
fn toggle_default_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    // A ':' after the last ']' separates the port (so IPv6 literals like [::1] are left whole).
    let port_sep = hostport
        .rfind(':')
        .filter(|&i| !hostport[i..].contains(']'));
    let new_hostport = match port_sep {
        Some(i) if &hostport[i + 1..] == default_port => hostport[..i].to_owned(),
        Some(_) => return None,
        None => format!("{hostport}:{default_port}"),
    };
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Some(format!("{scheme}://{userinfo}{new_hostport}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Test vectors from protocols.md §2.5, computed with twilio-python's RequestValidator.
    #[test]
    fn v1_form_post_with_query() {
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(compute("12345", url, &p), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(is_valid("12345", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        // Signed with the port written out, validated against the configured URL without it.
        assert!(is_valid(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &p,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!is_valid("12345", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ"));
        assert!(!is_valid("54321", url, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
    }

    #[test]
    fn v2_inbound_voice_webhook() {
        let p = params(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", "CA11111111111111111111111111111111"),
            ("CallStatus", "ringing"),
            ("Called", "+15005550006"),
            ("Caller", "+14155551234"),
            ("Direction", "inbound"),
            ("From", "+14155551234"),
            ("To", "+15005550006"),
        ]);
        let token = "0123456789abcdef0123456789abcdef";
        let url = "https://example.ngrok.app/incoming-call";
        assert_eq!(compute(token, url, &p), "RUL82K15GhuCcW34MRO5/rRprJ8=");
        let mut tampered = p.clone();
        tampered[5].1 = "+14155559999".into();
        assert!(!is_valid(
            token,
            url,
            &tampered,
            "RUL82K15GhuCcW34MRO5/rRprJ8="
        ));
    }

    #[test]
    fn v4_websocket_upgrade_uses_wss_url() {
        let token = "0123456789abcdef0123456789abcdef";
        let sig = "yLEaBihom5LivCmjGo5DanhVuwE=";
        assert!(is_valid(
            token,
            "wss://example.ngrok.app/media-stream",
            &[],
            sig
        ));
        assert!(!is_valid(
            token,
            "https://example.ngrok.app/media-stream",
            &[],
            sig
        ));
    }

    #[test]
    fn v5_get_with_encoded_query_is_not_normalised() {
        let url = "https://example.com/voice?CallSid=CA123&From=%2B14155551234";
        assert_eq!(compute("12345", url, &[]), "DuD7Sk8YQmYUnMlJG2aovatXnaE=");
    }

    #[test]
    fn repeated_keys_contribute_each_value_sorted() {
        let a = params(&[("K", "b"), ("K", "a")]);
        let b = params(&[("K", "a"), ("K", "b")]);
        assert_eq!(
            compute("t", "https://x/y", &a),
            compute("t", "https://x/y", &b)
        );
    }

    #[test]
    fn port_toggling() {
        assert_eq!(
            toggle_default_port("https://h.example/p?q=1").as_deref(),
            Some("https://h.example:443/p?q=1")
        );
        assert_eq!(
            toggle_default_port("wss://h.example:443/p").as_deref(),
            Some("wss://h.example/p")
        );
        assert_eq!(toggle_default_port("http://127.0.0.1:8080/p"), None);
        assert_eq!(toggle_default_port("not a url"), None);
    }
}

//! TwiML documents callbridge answers Twilio's voice webhook with.
//!
//! Owns XML building and escaping. It must not decide routing or mint tokens; callers pass the
//! stream URL and parameters in.

/// `<Response><Connect><Stream url="…">` with `<Parameter>`s, opening a bidirectional media stream.
/// Nothing follows `</Connect>`, so closing the stream's WebSocket hangs the call up.
pub fn connect_stream(stream_url: &str, parameters: &[(&str, &str)]) -> String {
    let mut xml = String::with_capacity(256);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
    push_escaped(&mut xml, stream_url);
    xml.push_str(r#"">"#);
    for (name, value) in parameters {
        xml.push_str(r#"<Parameter name=""#);
        push_escaped(&mut xml, name);
        xml.push_str(r#"" value=""#);
        push_escaped(&mut xml, value);
        xml.push_str(r#""/>"#);
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// A spoken message followed by a hang-up, for calls callbridge cannot take.
pub fn say_and_hang_up(message: &str) -> String {
    let mut xml = String::with_capacity(128 + message.len());
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>"#);
    push_escaped(&mut xml, message);
    xml.push_str("</Say><Hangup/></Response>");
    xml
}

/// Where a `<Dial>` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialTarget<'a> {
    /// An E.164 number (`<Number>`).
    Number(&'a str),
    /// A SIP URI (`<Sip>`).
    Sip(&'a str),
}

/// `<Response><Dial callerId="…" timeout="…">` to one number or SIP URI: the cold transfer. The
/// call ends when the dialled party hangs up (nothing follows `</Dial>`).
pub fn dial(target: DialTarget<'_>, caller_id: Option<&str>, timeout_s: u32) -> String {
    let mut xml = String::with_capacity(256);
    xml.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial"#);
    if let Some(caller_id) = caller_id {
        xml.push_str(r#" callerId=""#);
        push_escaped(&mut xml, caller_id);
        xml.push('"');
    }
    xml.push_str(&format!(r#" timeout="{timeout_s}">"#));
    let (open, close, value) = match target {
        DialTarget::Number(n) => ("<Number>", "</Number>", n),
        DialTarget::Sip(uri) => ("<Sip>", "</Sip>", uri),
    };
    xml.push_str(open);
    push_escaped(&mut xml, value);
    xml.push_str(close);
    xml.push_str("</Dial></Response>");
    xml
}

/// `<Response><Dial><Conference …>room</Conference></Dial></Response>`: one side of a warm transfer.
/// The caller's side (`starts = false`) waits on hold (Twilio's default hold music, no `waitUrl`)
/// until a participant with `starts = true` joins; either side leaving ends the conference.
pub fn conference(room: &str, starts: bool) -> String {
    let mut xml = String::with_capacity(256);
    xml.push_str(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Conference beep="false" startConferenceOnEnter=""#,
    );
    xml.push_str(if starts { "true" } else { "false" });
    xml.push_str(r#"" endConferenceOnExit="true">"#);
    push_escaped(&mut xml, room);
    xml.push_str("</Conference></Dial></Response>");
    xml
}

/// The whisper a warm transfer's destination hears when it answers: the summary, then one key to
/// accept (posted to `accept_url`). Without a key within `timeout_s` the call says so and hangs up.
pub fn whisper(summary: &str, accept_url: &str, timeout_s: u32) -> String {
    let mut xml = String::with_capacity(384 + summary.len());
    xml.push_str(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf" numDigits="1" method="POST" action=""#,
    );
    push_escaped(&mut xml, accept_url);
    xml.push_str(&format!(r#"" timeout="{timeout_s}"><Say>"#));
    push_escaped(&mut xml, summary);
    xml.push_str(
        "</Say><Say>Press 1 to take the call, or any other key to decline.</Say></Gather>\
         <Say>No key was pressed. The caller stays with the assistant. Goodbye.</Say><Hangup/></Response>",
    );
    xml
}

/// An empty response that ends the call (`<Hangup/>`).
pub fn hang_up() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#.to_owned()
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_names_the_target_and_escapes() {
        let xml = dial(DialTarget::Number("+15551234567"), Some("+15005550006"), 30);
        assert!(xml.ends_with(
            r#"<Response><Dial callerId="+15005550006" timeout="30"><Number>+15551234567</Number></Dial></Response>"#
        ));
        let xml = dial(DialTarget::Sip("sip:a&b@pbx.example.com"), None, 20);
        assert!(xml.contains(r#"<Dial timeout="20"><Sip>sip:a&amp;b@pbx.example.com</Sip>"#));
    }

    #[test]
    fn connect_stream_escapes_everything() {
        let xml = connect_stream(
            "wss://bridge.example/twilio/media",
            &[("from", "+1415<5>"), ("note", "a&b\"c")],
        );
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bridge.example/twilio/media"><Parameter name="from" value="+1415&lt;5&gt;"/><Parameter name="note" value="a&amp;b&quot;c"/></Stream></Connect></Response>"#
        );
    }

    #[test]
    fn warm_transfer_documents() {
        let caller = conference("callbridge-ab&c", false);
        assert!(caller.ends_with(
            r#"<Response><Dial><Conference beep="false" startConferenceOnEnter="false" endConferenceOnExit="true">callbridge-ab&amp;c</Conference></Dial></Response>"#
        ), "{caller}");
        assert!(conference("r", true).contains(r#"startConferenceOnEnter="true""#));
        let xml = whisper(
            "Caller <Ann> needs billing",
            "https://b.example/twilio/warm/x/accept?a=1&b=2",
            10,
        );
        assert!(
            xml.contains(
                r#"action="https://b.example/twilio/warm/x/accept?a=1&amp;b=2" timeout="10""#
            ),
            "{xml}"
        );
        assert!(xml.contains("<Say>Caller &lt;Ann&gt; needs billing</Say>"));
        assert!(xml.ends_with("<Hangup/></Response>"));
    }

    #[test]
    fn say_and_hang_up_is_escaped() {
        assert!(say_and_hang_up("R&D").contains("<Say>R&amp;D</Say><Hangup/>"));
    }
}

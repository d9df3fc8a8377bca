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
    fn say_and_hang_up_is_escaped() {
        assert!(say_and_hang_up("R&D").contains("<Say>R&amp;D</Say><Hangup/>"));
    }
}

//! Twilio media stream frames: any text must parse to an event or a precise error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = callbridge::twilio::stream::parse_frame(text) {
            let _ = (e.kind(), e.to_string());
        }
    }
});

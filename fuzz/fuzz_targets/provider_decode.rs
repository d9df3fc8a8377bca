//! Provider dialect decoders (OpenAI, Azure, xAI, Gemini Live): any wire text decodes to events or
//! a precise error, statelessly and with connection state, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use callbridge::realtime::{Dialect, StreamState};
use callbridge::realtime::{gemini::GeminiDialect, openai::OpenAiDialect, xai::XaiDialect};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dialects: [Box<dyn Dialect>; 3] = [
        Box::new(OpenAiDialect::new("wss://127.0.0.1/v1/realtime", "m", "k")),
        Box::new(XaiDialect::new("wss://127.0.0.1/v1/realtime", "m", "k")),
        Box::new(GeminiDialect::new("wss://127.0.0.1/ws", "m", "k")),
    ];
    for dialect in &dialects {
        let _ = dialect.decode(text);
        let mut state = StreamState::for_connection(1);
        let mut out = Vec::new();
        // Twice: the second frame sees the state the first left.
        let _ = dialect.decode_stream(text, &mut state, &mut out);
        let _ = dialect.decode_stream(text, &mut state, &mut out);
    }
    if let Ok(azure) = callbridge::realtime::azure::dialect("https://r.openai.azure.com", "d", "k") {
        let _ = azure.decode(text);
    }
});

//! Passthrough hot path, per 20 ms frame, in each direction, with the functions the call driver
//! runs per frame (see `call::driver::run_actor` and `read_provider`):
//! - inbound: Twilio text frame → `parse_frame_with` (into the payload string the previous frame's
//!   command handed back) → call session → `Dialect::encode_into` the socket's reused
//!   [`MessageBuf`] → the message the socket writes (`Utf8Bytes`, checked once);
//! - outbound: provider `response.output_audio.delta` text (100 ms) → `decode_stream` (ids shared
//!   across deltas) → call session → five `Outbound::media_into` and one `mark_into` (the name
//!   written by `MarkName::write_into`) → socket messages, then Twilio's mark echo parsed with
//!   `parse_frame_with` and handed to `CallSession::handle_mark`; reported per frame.
//!
//! Besides criterion's timings it prints heap allocations per frame, counted by a wrapping global
//! allocator over a fixed number of frames (`tests/audio_alloc.rs` asserts the same figures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use callbridge::call::driver::{MessageBuf, PROVIDER_MESSAGE_BUFFER, TWILIO_MESSAGE_BUFFER};
use callbridge::call::session::{CallSession, Input, Output, SessionParams, TwilioCommand};
use callbridge::realtime::openai::OpenAiDialect;
use callbridge::realtime::{Dialect, LlmCommand, LlmEvent, StreamState};
use callbridge::twilio::stream::{self, TwilioEvent, parse_frame_with};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DELTA_FRAMES: usize = 5;
const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

struct Path {
    session: CallSession,
    dialect: OpenAiDialect,
    now: Instant,
    ts: u64,
    /// Caller frames with consecutive timestamps, as Twilio sends them.
    inbound_texts: Vec<String>,
    next_inbound: usize,
    delta_text: String,
    /// The reader's per-connection decoding state and event list.
    state: StreamState,
    events: Vec<LlmEvent>,
    /// The string a caller payload (or mark echo name) is parsed into, handed back each frame.
    spare: String,
    mark_name: String,
    /// Twilio's echoes of this turn's marks.
    echoes: Vec<String>,
    echoes_used: usize,
    /// The call's fixed message parts and reused message buffers, as the driver keeps them.
    envelope: stream::Outbound,
    twilio_out: MessageBuf,
    provider_out: MessageBuf,
    in_flight: Vec<Bytes>,
}

/// What the socket writer does with a queued message: takes it over as a text message (the
/// UTF-8 check) and, once written, drops it.
fn write(message: Bytes) -> usize {
    let message = Message::Text(Utf8Bytes::try_from(message).expect("UTF-8"));
    message.len()
}

impl Path {
    fn new() -> Path {
        let now = Instant::now();
        let mut session = CallSession::new(SessionParams::default(), now);
        session.handle(
            now,
            Input::Llm(LlmEvent::SessionUpdated {
                input_format: Some("audio/pcmu".into()),
                output_format: Some("audio/pcmu".into()),
            }),
        );
        session.handle(
            now,
            Input::Llm(LlmEvent::ResponseCreated {
                response_id: "resp_1".into(),
            }),
        );
        while session.poll_output().is_some() {}
        let payload = STANDARD.encode([0x5Au8; 160]);
        let inbound_texts = (0..1_000u64)
            .map(|n| {
                format!(
                    r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"{payload}"}},"streamSid":"{STREAM_SID}"}}"#,
                    n + 2,
                    n * 20
                )
            })
            .collect();
        let delta = STANDARD.encode([0x33u8; 160 * DELTA_FRAMES]);
        let delta_text = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"event_CD1w4MXGkO0kmFKnkLG8n","response_id":"resp_1","item_id":"item_CD1w4y0vAWHl9vJBnkXsv","output_index":0,"content_index":0,"delta":"{delta}"}}"#
        );
        Path {
            session,
            dialect: OpenAiDialect::new("wss://api.openai.com/v1/realtime", "gpt-realtime", "k"),
            now,
            ts: 0,
            inbound_texts,
            next_inbound: 0,
            delta_text,
            state: StreamState::default(),
            events: Vec::with_capacity(8),
            spare: String::new(),
            mark_name: String::with_capacity(64),
            echoes: (0..4).map(|_| String::with_capacity(256)).collect(),
            echoes_used: 0,
            envelope: stream::Outbound::new(STREAM_SID),
            twilio_out: MessageBuf::new(TWILIO_MESSAGE_BUFFER),
            provider_out: MessageBuf::new(PROVIDER_MESSAGE_BUFFER),
            in_flight: Vec::with_capacity(64),
        }
    }

    /// One caller frame, Twilio text in → provider message out.
    fn inbound(&mut self) -> usize {
        let text = &self.inbound_texts[self.next_inbound];
        self.next_inbound = (self.next_inbound + 1) % self.inbound_texts.len();
        let mut event = parse_frame_with(text, &mut self.spare).expect("valid frame");
        // The session's stream clock only moves forward: keep it moving across the loop.
        self.ts += 20;
        if let TwilioEvent::Media { timestamp_ms, .. } = &mut event {
            *timestamp_ms = self.ts;
        }
        self.provider_out.reclaim();
        self.session.handle(self.now, Input::Twilio(event));
        let mut bytes = 0;
        while let Some(output) = self.session.poll_output() {
            if let Output::Llm(command) = output {
                self.dialect
                    .encode_into(&command, self.provider_out.writer());
                if let Some(message) = self.provider_out.take() {
                    bytes += write(message);
                }
                if let LlmCommand::AppendAudio(payload) = command {
                    self.spare = payload;
                }
            }
        }
        bytes
    }

    /// One 100 ms delta, provider text in → Twilio messages out (and the mark echoed back).
    fn outbound(&mut self) -> usize {
        self.events.clear();
        self.dialect
            .decode_stream(&self.delta_text, &mut self.state, &mut self.events)
            .expect("valid delta");
        let event = self.events.pop().expect("an event");
        self.twilio_out.reclaim();
        self.session.handle(self.now, Input::Llm(event));
        while let Some(output) = self.session.poll_output() {
            let out = self.twilio_out.writer();
            match output {
                Output::Twilio(TwilioCommand::Media(frame)) => {
                    self.envelope.media_into(&frame, out)
                }
                Output::Twilio(TwilioCommand::Mark(name)) => {
                    let wire = name.write_into(&mut self.mark_name);
                    self.envelope.mark_into(wire, out);
                    // Twilio echoes it once the audio before it has played.
                    let echo = &mut self.echoes[self.echoes_used];
                    echo.clear();
                    let _ = write!(
                        echo,
                        r#"{{"event":"mark","sequenceNumber":"9","streamSid":"{STREAM_SID}","mark":{{"name":"{wire}"}}}}"#
                    );
                    self.echoes_used += 1;
                }
                _ => continue,
            }
            // Queued: the writer takes the turn's messages as one batch.
            self.in_flight
                .push(self.twilio_out.take().expect("a message"));
        }
        let mut bytes = 0;
        for message in self.in_flight.drain(..) {
            bytes += write(message);
        }
        // Twilio plays it and echoes the marks: keeps the ledger at steady state.
        for echo in &self.echoes[..self.echoes_used] {
            if let TwilioEvent::Mark { name } =
                parse_frame_with(echo, &mut self.spare).expect("valid echo")
            {
                self.session.handle_mark(self.now, &name);
                self.spare = name;
            }
        }
        self.echoes_used = 0;
        while self.session.poll_output().is_some() {}
        bytes
    }
}

fn allocations_per_frame(mut step: impl FnMut() -> usize, frames_per_step: usize) -> f64 {
    for _ in 0..1_000 {
        black_box(step());
    }
    let steps = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..steps {
        black_box(step());
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / (steps * frames_per_step) as f64
}

fn passthrough(c: &mut Criterion) {
    let mut path = Path::new();
    let inbound = allocations_per_frame(|| path.inbound(), 1);
    let mut path = Path::new();
    let outbound = allocations_per_frame(|| path.outbound(), DELTA_FRAMES);
    println!("heap allocations per 20 ms frame: inbound {inbound:.2}, outbound {outbound:.2}");

    let mut group = c.benchmark_group("passthrough_per_frame");
    group.throughput(Throughput::Elements(1));
    let mut path = Path::new();
    group.bench_function("inbound_twilio_to_provider", |b| {
        b.iter(|| black_box(path.inbound()))
    });
    let mut path = Path::new();
    group.throughput(Throughput::Elements(DELTA_FRAMES as u64));
    group.bench_function("outbound_provider_to_twilio_5_frames", |b| {
        b.iter(|| black_box(path.outbound()))
    });
    group.finish();
}

criterion_group!(benches, passthrough);
criterion_main!(benches);

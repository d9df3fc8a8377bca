//! Passthrough hot path, per 20 ms frame, in each direction:
//! - inbound: Twilio text frame → parse → call session → `input_audio_buffer.append` text;
//! - outbound: provider `response.output_audio.delta` text (100 ms) → decode → call session →
//!   five 160-byte Twilio `media` texts and their mark (and the mark's echo), reported per frame.
//!
//! Besides criterion's timings it prints heap allocations per frame, counted by a wrapping global
//! allocator over a fixed number of frames.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use callbridge::call::session::{CallSession, Input, Output, SessionParams, TwilioCommand};
use callbridge::realtime::openai::OpenAiDialect;
use callbridge::realtime::{Dialect, LlmCommand, LlmEvent};
use callbridge::twilio::stream::{self, TwilioEvent, parse_frame};

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

struct Path {
    session: CallSession,
    dialect: OpenAiDialect,
    now: Instant,
    ts: u64,
    inbound_text: String,
    delta_text: String,
    marks: Vec<String>,
    /// The call's fixed message parts, as the driver keeps them.
    envelope: stream::Outbound,
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
        let inbound_text = format!(
            r#"{{"event":"media","sequenceNumber":"4","media":{{"track":"inbound","chunk":"2","timestamp":"40","payload":"{payload}"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}}"#
        );
        let delta = STANDARD.encode([0x33u8; 160 * DELTA_FRAMES]);
        let delta_text = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"event_CD1w4MXGkO0kmFKnkLG8n","response_id":"resp_1","item_id":"item_CD1w4y0vAWHl9vJBnkXsv","output_index":0,"content_index":0,"delta":"{delta}"}}"#
        );
        Path {
            session,
            dialect: OpenAiDialect::new("wss://api.openai.com/v1/realtime", "gpt-realtime", "k"),
            now,
            ts: 0,
            inbound_text,
            delta_text,
            marks: Vec::with_capacity(4),
            envelope: stream::Outbound::new("MZ18ad3ab5a668481ce02b83e7395059f0"),
        }
    }

    /// One caller frame, Twilio text in → provider text out.
    fn inbound(&mut self) -> usize {
        let mut event = parse_frame(&self.inbound_text).expect("valid frame");
        self.ts += 20;
        if let TwilioEvent::Media { timestamp_ms, .. } = &mut event {
            *timestamp_ms = self.ts;
        }
        self.session.handle(self.now, Input::Twilio(event));
        let mut bytes = 0;
        while let Some(output) = self.session.poll_output() {
            if let Output::Llm(command @ LlmCommand::AppendAudio(_)) = output {
                bytes += self.dialect.encode(&command).len();
            }
        }
        bytes
    }

    /// One 100 ms delta, provider text in → Twilio texts out (and the mark echoed back).
    fn outbound(&mut self) -> usize {
        let event = self
            .dialect
            .decode(&self.delta_text)
            .expect("valid delta")
            .expect("an event");
        self.session.handle(self.now, Input::Llm(event));
        let mut bytes = 0;
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Twilio(TwilioCommand::Media(frame)) => {
                    bytes += self.envelope.media(&frame).len()
                }
                Output::Twilio(TwilioCommand::Mark(name)) => {
                    bytes += self.envelope.mark(&name).len();
                    self.marks.push(name);
                }
                _ => {}
            }
        }
        // Twilio plays it and echoes the marks: keeps the ledger at steady state.
        for name in self.marks.drain(..) {
            self.session
                .handle(self.now, Input::Twilio(TwilioEvent::Mark { name }));
        }
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

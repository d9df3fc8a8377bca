//! Transcoded hot path of a Gemini Live call, per 20 ms frame, in each direction:
//! - inbound: Twilio text frame → parse → call session (base64 decode, μ-law 8 kHz → PCM16 16 kHz,
//!   base64 encode) → `realtimeInput.audio` text;
//! - outbound: Gemini `serverContent.modelTurn` text with 100 ms of 24 kHz PCM16 → dialect decode →
//!   call session (PCM16 24 kHz → μ-law 8 kHz, re-framing) → five Twilio `media` texts and their
//!   mark (and the mark's echo), reported per frame.
//!
//! After criterion's timings it runs one minute of simulated call (both directions, 3 000 frames
//! each) and prints the CPU time that costs, i.e. the share of one core a transcoded call needs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use callbridge::audio::Transcoder;
use callbridge::call::session::{
    AudioStage, CallSession, Input, Output, SessionParams, TwilioCommand,
};
use callbridge::realtime::gemini::GeminiDialect;
use callbridge::realtime::{Dialect, LlmCommand, LlmEvent, StreamState};
use callbridge::twilio::stream::{self, TwilioEvent, parse_frame};

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const DELTA_FRAMES: u64 = 5;

struct Call {
    session: CallSession,
    dialect: GeminiDialect,
    state: StreamState,
    events: Vec<LlmEvent>,
    now: Instant,
    ts: u64,
    inbound_text: String,
    model_turn_text: String,
    marks: Vec<String>,
}

impl Call {
    fn new() -> Call {
        let now = Instant::now();
        let params = SessionParams {
            provider_truncates: false,
            provider_continues_after_tools: true,
            expected_input_format: "audio/pcm;rate=16000".into(),
            expected_output_format: "audio/pcm;rate=24000".into(),
            speak_first: false,
            ..SessionParams::default()
        };
        let transcoder = Transcoder::new(16_000, 24_000).expect("Gemini rates are supported");
        let mut session =
            CallSession::with_audio(params, now, AudioStage::Transcode(Box::new(transcoder)));
        let dialect = GeminiDialect::new("wss://example.invalid/live", "gemini-live", "k");
        let mut state = StreamState::default();
        let mut events = Vec::new();
        dialect
            .decode_stream(r#"{"setupComplete":{}}"#, &mut state, &mut events)
            .expect("setupComplete");
        for event in events.drain(..) {
            session.handle(now, Input::Llm(event));
        }
        while session.poll_output().is_some() {}

        // A 440 Hz caller tone, as Twilio would send it.
        let tone: Vec<u8> = (0..160)
            .map(|n| {
                let t = f64::from(n) / 8_000.0;
                let s = 8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
                callbridge::audio::g711::linear_to_ulaw(s as i16)
            })
            .collect();
        let payload = STANDARD.encode(tone);
        let inbound_text = format!(
            r#"{{"event":"media","sequenceNumber":"4","media":{{"track":"inbound","chunk":"2","timestamp":"40","payload":"{payload}"}},"streamSid":"{STREAM_SID}"}}"#
        );
        // 100 ms of a 300 Hz voice-like tone at 24 kHz.
        let pcm: Vec<u8> = (0..2_400)
            .flat_map(|n| {
                let t = f64::from(n) / 24_000.0;
                ((9_000.0 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()) as i16).to_le_bytes()
            })
            .collect();
        let model_turn_text = format!(
            r#"{{"serverContent":{{"modelTurn":{{"parts":[{{"inlineData":{{"mimeType":"audio/pcm;rate=24000","data":"{}"}}}}]}}}}}}"#,
            STANDARD.encode(pcm)
        );
        Call {
            session,
            dialect,
            state,
            events,
            now,
            ts: 0,
            inbound_text,
            model_turn_text,
            marks: Vec::with_capacity(4),
        }
    }

    /// One caller frame, Twilio text in → Gemini text out.
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

    /// 100 ms of model audio, Gemini text in → Twilio texts out (and the marks echoed back).
    fn outbound(&mut self) -> usize {
        self.events.clear();
        self.dialect
            .decode_stream(&self.model_turn_text, &mut self.state, &mut self.events)
            .expect("valid model turn");
        let mut bytes = 0;
        for event in self.events.drain(..) {
            self.session.handle(self.now, Input::Llm(event));
            while let Some(output) = self.session.poll_output() {
                match output {
                    Output::Twilio(TwilioCommand::Media(frame)) => {
                        bytes += stream::media_message(STREAM_SID, &frame).len()
                    }
                    Output::Twilio(TwilioCommand::Mark(name)) => {
                        bytes += stream::mark_message(STREAM_SID, &name.to_string()).len();
                        self.marks.push(name.to_string());
                    }
                    _ => {}
                }
            }
        }
        for name in self.marks.drain(..) {
            self.session
                .handle(self.now, Input::Twilio(TwilioEvent::Mark { name }));
        }
        while self.session.poll_output().is_some() {}
        bytes
    }
}

fn per_frame(c: &mut Criterion) {
    let mut call = Call::new();
    let mut group = c.benchmark_group("gemini_transcoded_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inbound_frame", |b| b.iter(|| black_box(call.inbound())));
    group.throughput(Throughput::Elements(DELTA_FRAMES));
    group.bench_function("outbound_100ms_delta", |b| {
        b.iter(|| black_box(call.outbound()))
    });
    group.finish();
}

/// CPU time for one minute of a transcoded call (both directions), single-threaded.
fn cpu_per_call(_: &mut Criterion) {
    const CALL_SECONDS: u64 = 60;
    let frames = CALL_SECONDS * 50;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let mut call = Call::new();
        let started = Instant::now();
        for frame in 0..frames {
            black_box(call.inbound());
            if frame % DELTA_FRAMES == 0 {
                black_box(call.outbound());
            }
        }
        best = best.min(started.elapsed());
    }
    let share = best.as_secs_f64() / CALL_SECONDS as f64;
    println!(
        "gemini_transcoded_call/cpu_per_call: {:.1} ms of CPU per minute of call = {:.3} % of one core \
         (best of 5; ≈ {:.0} concurrent calls per core on the audio path alone)",
        best.as_secs_f64() * 1_000.0,
        share * 100.0,
        1.0 / share
    );
}

criterion_group!(benches, per_frame, cpu_per_call);
criterion_main!(benches);

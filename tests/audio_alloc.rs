//! Proves the transcoding hot path allocates nothing per frame once a call is running, and bounds
//! what the passthrough path allocates per frame: the messages it sends, and no more.
//!
//! Its own test binary because it installs a counting global allocator. Counting is
//! per thread, so the test harness's other threads cannot disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use callbridge::audio::{StreamResampler, Transcoder, g711};

struct CountingAllocator;

thread_local! {
    // Per thread, so tests running in parallel never count each other's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while this thread's locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `work` and returns how many allocations this thread made meanwhile.
fn allocations_during(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    work();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

fn ulaw_frame(seed: u8) -> [u8; 160] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the other tests against a counter that counts nothing.
    let counted = allocations_during(|| {
        let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(64));
        drop(v);
    });
    assert_eq!(counted, 1);
}

#[test]
fn transcoder_steady_state_allocates_nothing_per_frame() {
    for (in_rate, out_rate) in [(16_000, 24_000), (24_000, 24_000), (8_000, 8_000)] {
        let mut transcoder = Transcoder::new(in_rate, out_rate).expect("supported rates");
        // Provider chunks of varying sizes (odd ones too), up to 100 ms.
        let provider_chunks: Vec<Vec<u8>> = [4_800usize, 961, 1_919, 480, 3]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7) as u8).collect())
            .collect();
        let mut run = |frames: usize| {
            for n in 0..frames {
                let up = transcoder
                    .caller_to_provider(&ulaw_frame(n as u8))
                    .expect("to provider");
                std::hint::black_box(up);
                let chunk = &provider_chunks[n % provider_chunks.len()];
                let down = transcoder.provider_to_caller(chunk).expect("to caller");
                std::hint::black_box(down);
                if n % 17 == 16 {
                    transcoder.reset_output();
                }
            }
        };
        run(10); // warm-up: anything lazily sized grows here
        let counted = allocations_during(|| run(500));
        assert_eq!(counted, 0, "{in_rate}/{out_rate} Hz: {counted} allocations");
    }
}

#[test]
fn resamplers_steady_state_allocate_nothing_per_frame() {
    for (from, to, frame) in [
        (8_000, 16_000, 160),
        (8_000, 24_000, 160),
        (24_000, 8_000, 480),
        (16_000, 8_000, 320),
    ] {
        let mut resampler = StreamResampler::new(from, to).expect("supported rates");
        let input: Vec<i16> = (0..frame).map(|i| (i * 97 % 4000) as i16).collect();
        let mut output = Vec::with_capacity(resampler.max_output_len(frame));
        let counted = allocations_during(|| {
            for _ in 0..500 {
                output.clear();
                resampler.process(&input, &mut output).expect("resample");
            }
        });
        assert_eq!(counted, 0, "{from}->{to}: {counted} allocations");
    }
}

#[test]
fn g711_slice_codecs_allocate_nothing() {
    let codes = ulaw_frame(3);
    let mut pcm = [0i16; 160];
    let mut back = [0u8; 160];
    let counted = allocations_during(|| {
        for _ in 0..100 {
            g711::decode_ulaw_into(&codes, &mut pcm);
            g711::encode_ulaw_into(&pcm, &mut back);
            g711::decode_alaw_into(&codes, &mut pcm);
            g711::encode_alaw_into(&pcm, &mut back);
        }
    });
    assert_eq!(counted, 0);
}

mod passthrough {
    //! The passthrough path per 20 ms frame, as the call driver runs it (no transcoding).

    use super::allocations_during;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use callbridge::call::session::{CallSession, Input, Output, SessionParams, TwilioCommand};
    use callbridge::realtime::openai::OpenAiDialect;
    use callbridge::realtime::{Dialect, LlmCommand, LlmEvent};
    use callbridge::twilio::stream::{Outbound, TwilioEvent, parse_frame};
    use std::time::Instant;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
    const DELTA_FRAMES: usize = 5;

    fn running_session(now: Instant) -> CallSession {
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
        session
    }

    /// Inbound: what may allocate is the caller payload the session hands on and the one provider
    /// message it becomes — nothing else (the frame is parsed in place, the envelope is fixed).
    #[test]
    fn an_inbound_frame_allocates_its_payload_and_its_provider_message_only() {
        let now = Instant::now();
        let mut session = running_session(now);
        let dialect = OpenAiDialect::new("wss://api.openai.com/v1/realtime", "gpt-realtime", "k");
        let payload = STANDARD.encode([0x5Au8; 160]);
        let texts: Vec<String> = (0..600u64)
            .map(|n| {
                format!(
                    r#"{{"event":"media","sequenceNumber":"{n}","media":{{"track":"inbound","chunk":"{n}","timestamp":"{}","payload":"{payload}"}},"streamSid":"{SID}"}}"#,
                    n * 20
                )
            })
            .collect();
        let mut sent = Vec::with_capacity(texts.len());
        let mut step = |text: &str, sent: &mut Vec<Utf8Bytes>| {
            let event = parse_frame(text).expect("valid frame");
            session.handle(now, Input::Twilio(event));
            while let Some(output) = session.poll_output() {
                if let Output::Llm(command @ LlmCommand::AppendAudio(_)) = output {
                    // What the driver does: the string becomes the socket's message as is.
                    sent.push(Utf8Bytes::from(dialect.encode(&command)));
                }
            }
        };
        for text in &texts[..100] {
            step(text, &mut sent);
        }
        sent.clear();
        let frames = 500;
        let counted = allocations_during(|| {
            for text in &texts[100..] {
                step(text, &mut sent);
            }
        });
        assert_eq!(sent.len(), frames);
        eprintln!("inbound: {counted} allocations for {frames} frames");
        assert!(
            counted <= 2 * frames,
            "{counted} allocations for {frames} inbound frames (at most 2 each)"
        );
    }

    /// Outbound: a 100 ms delta is decoded once, and becomes five `media` messages and a mark;
    /// each message is one allocation, sized exactly (the socket takes it over as is), the mark's
    /// echo none.
    #[test]
    fn an_outbound_delta_allocates_its_messages_and_little_else() {
        let now = Instant::now();
        let mut session = running_session(now);
        let dialect = OpenAiDialect::new("wss://api.openai.com/v1/realtime", "gpt-realtime", "k");
        let envelope = Outbound::new(SID);
        let delta = STANDARD.encode([0x33u8; 160 * DELTA_FRAMES]);
        let text = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{delta}"}}"#
        );
        let mut sent: Vec<Utf8Bytes> = Vec::with_capacity(8 * 1_000);
        let mut marks: Vec<String> = Vec::with_capacity(4);
        let mut step = |sent: &mut Vec<Utf8Bytes>| {
            let event = dialect
                .decode(&text)
                .expect("valid delta")
                .expect("an event");
            session.handle(now, Input::Llm(event));
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Twilio(TwilioCommand::Media(frame)) => {
                        sent.push(Utf8Bytes::from(envelope.media(&frame)))
                    }
                    Output::Twilio(TwilioCommand::Mark(name)) => {
                        sent.push(Utf8Bytes::from(envelope.mark(&name)));
                        marks.push(name);
                    }
                    _ => {}
                }
            }
            for name in marks.drain(..) {
                session.handle(now, Input::Twilio(TwilioEvent::Mark { name }));
            }
            while session.poll_output().is_some() {}
        };
        for _ in 0..100 {
            step(&mut sent);
        }
        sent.clear();
        let deltas = 500;
        let counted = allocations_during(|| {
            for _ in 0..deltas {
                step(&mut sent);
            }
        });
        assert_eq!(sent.len(), deltas * (DELTA_FRAMES + 1));
        eprintln!("outbound: {counted} allocations for {deltas} deltas");
        // Six messages; the decoded audio, response and item ids of the delta; the mark's name.
        assert!(
            counted <= 13 * deltas,
            "{counted} allocations for {deltas} deltas (at most 13 each)"
        );
    }
}

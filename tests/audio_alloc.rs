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
    //! The passthrough path per 20 ms frame, as the call driver runs it (no transcoding): frames
    //! parsed into the payload string the previous frame's provider command handed back, messages
    //! written into the call's reused [`MessageBuf`]s and taken over by the socket as they are
    //! (the writer drops each one once written, as the socket's own write buffer copies it).

    use super::allocations_during;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use callbridge::call::driver::{MessageBuf, PROVIDER_MESSAGE_BUFFER, TWILIO_MESSAGE_BUFFER};
    use callbridge::call::session::{CallSession, Input, Output, SessionParams, TwilioCommand};
    use callbridge::realtime::openai::OpenAiDialect;
    use callbridge::realtime::{Dialect, LlmCommand, LlmEvent, StreamState};
    use callbridge::twilio::stream::{Outbound, TwilioEvent, parse_frame_with};
    use std::fmt::Write as _;
    use std::time::Instant;
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

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

    /// What a socket writer does with one queued message: hands it to the socket, which copies
    /// it into its write buffer, and drops it. Returns the bytes written.
    fn write(message: Bytes) -> usize {
        let message = Message::Text(Utf8Bytes::try_from(message).expect("UTF-8"));
        message.len()
    }

    /// Twilio → provider: a steady-state caller frame allocates nothing at all.
    #[test]
    fn an_inbound_frame_allocates_nothing() {
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
        let mut out = MessageBuf::new(PROVIDER_MESSAGE_BUFFER);
        let mut spare = String::new();
        let mut sent = 0;
        let mut written = 0;
        let mut step = |text: &str, sent: &mut usize, written: &mut usize| {
            let event = parse_frame_with(text, &mut spare).expect("valid frame");
            out.reclaim();
            session.handle(now, Input::Twilio(event));
            while let Some(output) = session.poll_output() {
                if let Output::Llm(command) = output {
                    dialect.encode_into(&command, out.writer());
                    let message = out.take().expect("a wire form");
                    if let LlmCommand::AppendAudio(payload) = command {
                        spare = payload;
                        *sent += 1;
                    }
                    *written += write(message);
                }
            }
        };
        for text in &texts[..100] {
            step(text, &mut sent, &mut written);
        }
        sent = 0;
        let counted = allocations_during(|| {
            for text in &texts[100..] {
                step(text, &mut sent, &mut written);
            }
        });
        assert_eq!(sent, 500, "every frame went to the provider");
        assert!(written > 500 * 200);
        assert_eq!(counted, 0, "{counted} allocations for 500 inbound frames");
    }

    /// Provider → Twilio: a delta's `media` frames and its marks allocate nothing, whatever its
    /// length. What remains is one allocation per delta: its base64 audio, copied out of the
    /// provider's frame by the reader (the ids are shared with the previous delta of the item,
    /// the ledger keeps the item id shared and the position as a number, the mark's name is
    /// written straight into the message, and Twilio's echo is parsed into the reused string).
    #[test]
    fn outbound_frames_allocate_nothing() {
        const PER_DELTA: usize = 1;
        const PER_MARK: usize = 0;
        for frames in [1, 2, 5, 8, 12] {
            let now = Instant::now();
            let mut session = running_session(now);
            let dialect =
                OpenAiDialect::new("wss://api.openai.com/v1/realtime", "gpt-realtime", "k");
            let envelope = Outbound::new(SID);
            let delta = STANDARD.encode(vec![0x33u8; 160 * frames]);
            let text = format!(
                r#"{{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{delta}"}}"#
            );
            let mut out = MessageBuf::new(TWILIO_MESSAGE_BUFFER);
            let mut marks: Vec<String> = (0..4).map(|_| String::with_capacity(256)).collect();
            let mut marks_sent = 0;
            let mut mark_name = String::with_capacity(64);
            let mut spare = String::new();
            let mut state = StreamState::default();
            let mut events = Vec::with_capacity(4);
            let mut in_flight: Vec<Bytes> = Vec::with_capacity(64);
            let (mut media, mut marked) = (0, 0);
            let mut step = |media: &mut usize, marked: &mut usize| {
                events.clear();
                dialect
                    .decode_stream(&text, &mut state, &mut events)
                    .expect("valid delta");
                let event = events.pop().expect("an event");
                out.reclaim();
                session.handle(now, Input::Llm(event));
                while let Some(output) = session.poll_output() {
                    match output {
                        Output::Twilio(TwilioCommand::Media(frame)) => {
                            envelope.media_into(&frame, out.writer());
                            *media += 1;
                        }
                        Output::Twilio(TwilioCommand::Mark(name)) => {
                            let wire = name.write_into(&mut mark_name);
                            envelope.mark_into(wire, out.writer());
                            // What Twilio echoes once the audio before the mark has played.
                            let echo = &mut marks[marks_sent];
                            echo.clear();
                            let _ = write!(
                                echo,
                                r#"{{"event":"mark","sequenceNumber":"9","streamSid":"{SID}","mark":{{"name":"{wire}"}}}}"#
                            );
                            marks_sent += 1;
                            *marked += 1;
                        }
                        _ => continue,
                    }
                    // Queued: the writer takes the turn's messages as one batch.
                    in_flight.push(out.take().expect("a message"));
                }
                for message in in_flight.drain(..) {
                    write(message);
                }
                for echo in &marks[..marks_sent] {
                    // As the call driver does: the echo's name is parsed into the reused
                    // string, handed to the session borrowed, and kept for the next frame.
                    match parse_frame_with(echo, &mut spare).expect("valid echo") {
                        TwilioEvent::Mark { name } => {
                            session.handle_mark(now, &name);
                            spare = name;
                        }
                        other => panic!("not a mark: {other:?}"),
                    }
                }
                marks_sent = 0;
                while session.poll_output().is_some() {}
            };
            for _ in 0..100 {
                step(&mut media, &mut marked);
            }
            (media, marked) = (0, 0);
            let deltas = 300;
            let counted = allocations_during(|| {
                for _ in 0..deltas {
                    step(&mut media, &mut marked);
                }
            });
            assert_eq!(media, deltas * frames, "every frame went to Twilio");
            assert!(marked >= deltas, "every delta was marked");
            eprintln!(
                "outbound, {frames}-frame deltas: {counted} allocations for {deltas} deltas, \
                 {media} media frames, {marked} marks"
            );
            assert!(
                counted <= PER_DELTA * deltas + PER_MARK * marked,
                "{frames}-frame deltas: {counted} allocations for {deltas} deltas and {marked} \
                 marks: the media frames or the marks allocate"
            );
        }
    }
}

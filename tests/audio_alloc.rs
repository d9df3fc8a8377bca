//! Proves the transcoding hot path allocates nothing per frame once a call is running.
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

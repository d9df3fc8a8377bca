//! Cost of the transcoding hot path per 20 ms frame: G.711, each resampling direction,
//! and the whole `Transcoder` each way.

use std::hint::black_box;

use callbridge::audio::{StreamResampler, Transcoder, g711};
use criterion::{Criterion, criterion_group, criterion_main};

/// 20 ms of a 440 Hz tone at `rate`, as PCM16.
fn tone_frame(rate: u32) -> Vec<i16> {
    let len = rate as usize / 50;
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            (10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

fn ulaw_frame() -> Vec<u8> {
    tone_frame(8_000)
        .into_iter()
        .map(g711::linear_to_ulaw)
        .collect()
}

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn g711_frames(c: &mut Criterion) {
    let codes = ulaw_frame();
    let pcm = tone_frame(8_000);
    let mut decoded = [0i16; 160];
    let mut encoded = [0u8; 160];
    c.bench_function("ulaw_decode_20ms", |b| {
        b.iter(|| g711::decode_ulaw_into(black_box(&codes), &mut decoded))
    });
    c.bench_function("ulaw_encode_20ms", |b| {
        b.iter(|| g711::encode_ulaw_into(black_box(&pcm), &mut encoded))
    });
}

fn resampler_frames(c: &mut Criterion) {
    for (from, to) in [
        (8_000, 16_000),
        (8_000, 24_000),
        (24_000, 8_000),
        (16_000, 8_000),
    ] {
        let mut resampler = StreamResampler::new(from, to).expect("supported rates");
        let frame = tone_frame(from);
        let mut output = Vec::with_capacity(resampler.max_output_len(frame.len()));
        c.bench_function(
            &format!("resample_{}k_to_{}k_20ms", from / 1000, to / 1000),
            |b| {
                b.iter(|| {
                    output.clear();
                    resampler
                        .process(black_box(&frame), &mut output)
                        .expect("resample");
                })
            },
        );
    }
}

fn transcoder_frames(c: &mut Criterion) {
    // Gemini Live shape: 16 kHz in, 24 kHz out.
    let mut transcoder = Transcoder::new(16_000, 24_000).expect("supported rates");
    let inbound = ulaw_frame();
    let outbound = pcm_bytes(&tone_frame(24_000));
    c.bench_function("transcoder_caller_to_provider_16k_20ms", |b| {
        b.iter(|| {
            black_box(
                transcoder
                    .caller_to_provider(black_box(&inbound))
                    .expect("transcode")
                    .len(),
            )
        })
    });
    c.bench_function("transcoder_provider_24k_to_caller_20ms", |b| {
        b.iter(|| {
            black_box(
                transcoder
                    .provider_to_caller(black_box(&outbound))
                    .expect("transcode")
                    .len(),
            )
        })
    });
}

criterion_group!(benches, g711_frames, resampler_frames, transcoder_frames);
criterion_main!(benches);

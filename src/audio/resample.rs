//! Stateful fixed-ratio resampling of one mono PCM stream, one instance per direction per
//! call (8 kHz ⇄ a provider's 16/24/48 kHz).
//!
//! Owns: the rubato FFT resampler, an input FIFO that feeds it fixed 20 ms chunks, and
//! the scratch buffers, all allocated at construction. It must not allocate per call to
//! [`StreamResampler::process`] (beyond growing the caller's output `Vec` the first time),
//! reset itself on a timer, or know about codecs and frames: it sees only samples.
//!
//! Every input sample goes through the same FIFO, so the output depends only on the
//! sample sequence, never on how it was split into calls: processing a signal in 20 ms
//! pieces gives bit-for-bit the same output as processing it whole.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::AudioError;

/// Sample rates (Hz) a [`StreamResampler`] accepts on either side.
pub const SUPPORTED_RATES: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

/// Length of the fixed chunk fed to rubato, in milliseconds. 20 ms matches Twilio's
/// frame, so the 8 kHz side never waits for input; it also sets the FFT block, whose
/// half is the resampler's delay (10 ms).
const CHUNK_MS: u32 = 20;

/// Full scale of i16 PCM as a float, for converting to and from rubato's f32 samples.
const I16_SCALE: f32 = 32_768.0;

/// Resamples one mono stream from `input_rate` to `output_rate` in 20 ms chunks.
pub struct StreamResampler {
    engine: Fft<f32>,
    input_rate: u32,
    output_rate: u32,
    /// Samples waiting for a full chunk; capacity is exactly one input chunk.
    pending: Vec<f32>,
    /// One output chunk from rubato, reused for every chunk.
    chunk_out: Vec<f32>,
    /// Input samples accepted since construction or the last reset (for `flush`).
    samples_in: u64,
    /// Output samples emitted since construction or the last reset (for `flush`).
    samples_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn to_f32(sample: i16) -> f32 {
    f32::from(sample) / I16_SCALE
}

fn to_i16(sample: f32) -> i16 {
    // The float-to-int `as` cast saturates, so out-of-range filter overshoot clips
    // instead of wrapping.
    (sample * I16_SCALE).round() as i16
}

impl StreamResampler {
    /// Creates a resampler from `input_rate` to `output_rate` (both in
    /// [`SUPPORTED_RATES`]). All buffers are allocated here.
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, AudioError> {
        for rate in [input_rate, output_rate] {
            if !SUPPORTED_RATES.contains(&rate) {
                return Err(AudioError::UnsupportedRate(rate));
            }
        }
        let chunk_in = (input_rate / 1000 * CHUNK_MS) as usize;
        // One FFT block per chunk: a longer block gives a sharper anti-aliasing filter
        // but more delay; 20 ms already gives > 50 dB stop-band rejection.
        let engine = Fft::<f32>::new_custom(
            input_rate as usize,
            output_rate as usize,
            chunk_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )?;
        let pending = Vec::with_capacity(engine.input_frames_next());
        let chunk_out = vec![0.0; engine.output_frames_next()];
        Ok(Self {
            engine,
            input_rate,
            output_rate,
            pending,
            chunk_out,
            samples_in: 0,
            samples_out: 0,
        })
    }

    /// Input sample rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output sample rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Input samples per internal chunk (20 ms at the input rate).
    pub fn input_chunk_len(&self) -> usize {
        self.engine.input_frames_next()
    }

    /// Output samples per internal chunk (20 ms at the output rate).
    pub fn output_chunk_len(&self) -> usize {
        self.chunk_out.len()
    }

    /// Filter delay in output samples: output sample `n` corresponds to input time
    /// `n - delay` (in output-rate samples). Half an FFT block, i.e. 10 ms.
    pub fn delay_output_samples(&self) -> usize {
        self.engine.output_delay()
    }

    /// Input samples buffered until the next chunk completes (0..chunk). This is the
    /// extra latency the FIFO adds when input does not arrive in whole 20 ms chunks.
    pub fn buffered_input_samples(&self) -> usize {
        self.pending.len()
    }

    /// Upper bound on the samples one `process` call with `input_len` samples appends,
    /// so callers can reserve their output buffer once.
    pub fn max_output_len(&self, input_len: usize) -> usize {
        let chunks = (self.pending.len() + input_len).div_ceil(self.input_chunk_len());
        chunks * self.output_chunk_len()
    }

    /// Feeds `input` and appends every completed output sample to `output`.
    ///
    /// Does not allocate unless `output` lacks capacity (see
    /// [`max_output_len`](Self::max_output_len)).
    pub fn process(&mut self, input: &[i16], output: &mut Vec<i16>) -> Result<(), AudioError> {
        let chunk_len = self.input_chunk_len();
        let mut rest = input;
        while !rest.is_empty() {
            let take = (chunk_len - self.pending.len()).min(rest.len());
            let (head, tail) = rest.split_at(take);
            self.pending.extend(head.iter().map(|&s| to_f32(s)));
            rest = tail;
            if self.pending.len() == chunk_len {
                self.run_chunk(output)?;
            }
        }
        self.samples_in += input.len() as u64;
        Ok(())
    }

    /// Emits what is still inside the resampler for the input given so far: the
    /// buffered partial chunk and the filter's delayed tail, padded with silence and cut
    /// at the exact length the input corresponds to. Then resets, so the next input
    /// starts a new segment. Use at the end of an utterance, not per frame.
    pub fn flush(&mut self, output: &mut Vec<i16>) -> Result<(), AudioError> {
        if self.samples_in == 0 {
            // No input since the last reset: there is no tail, not even a silent one.
            return Ok(());
        }
        let wanted_total = (self.samples_in * u64::from(self.output_rate))
            .div_ceil(u64::from(self.input_rate))
            + self.delay_output_samples() as u64;
        let start_len = output.len();
        let chunk_len = self.input_chunk_len();
        while self.samples_out < wanted_total {
            self.pending.resize(chunk_len, 0.0);
            self.run_chunk(output)?;
        }
        let excess = (self.samples_out - wanted_total) as usize;
        output.truncate(output.len().saturating_sub(excess).max(start_len));
        self.reset();
        Ok(())
    }

    /// Drops buffered input and filter state, as if newly created. Buffers are kept.
    pub fn reset(&mut self) {
        self.engine.reset();
        self.pending.clear();
        self.samples_in = 0;
        self.samples_out = 0;
    }

    fn run_chunk(&mut self, output: &mut Vec<i16>) -> Result<(), AudioError> {
        let frames_in = self.pending.len();
        let frames_out = self.chunk_out.len();
        let input = InterleavedSlice::new(&self.pending[..], 1, frames_in)?;
        let mut out = InterleavedSlice::new_mut(&mut self.chunk_out[..], 1, frames_out)?;
        let (_, written) = self.engine.process_into_buffer(&input, &mut out, None)?;
        output.extend(self.chunk_out[..written].iter().map(|&s| to_i16(s)));
        self.pending.clear();
        self.samples_out += written as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f64, amplitude: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    /// A deterministic broadband test signal (xorshift noise), so chunking is exercised
    /// on content with energy at every frequency.
    fn noise(len: usize) -> Vec<i16> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 18) as i16 - 8192
            })
            .collect()
    }

    fn process_in_pieces(
        resampler: &mut StreamResampler,
        input: &[i16],
        sizes: &[usize],
    ) -> Vec<i16> {
        let mut output = Vec::new();
        let mut rest = input;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            resampler
                .process(piece, &mut output)
                .expect("resampling a test signal");
            rest = tail;
        }
        output
    }

    #[test]
    fn rejects_unsupported_rates() {
        assert!(matches!(
            StreamResampler::new(8_000, 22_050),
            Err(AudioError::UnsupportedRate(22_050))
        ));
        assert!(matches!(
            StreamResampler::new(0, 8_000),
            Err(AudioError::UnsupportedRate(0))
        ));
    }

    #[test]
    fn chunked_processing_equals_whole_processing() {
        for (from, to, piece_sizes) in [
            (8_000, 16_000, vec![160]),
            (8_000, 24_000, vec![160]),
            (24_000, 8_000, vec![480]),
            (16_000, 8_000, vec![320]),
            // Provider chunks of arbitrary sizes, including single samples.
            (24_000, 8_000, vec![1, 7, 480, 1000, 33, 2400, 479]),
            (16_000, 8_000, vec![3, 641, 100]),
        ] {
            let signal = noise(from as usize); // one second
            let mut whole = StreamResampler::new(from, to).expect("supported rates");
            let whole_out = process_in_pieces(&mut whole, &signal, &[signal.len()]);
            let mut chunked = StreamResampler::new(from, to).expect("supported rates");
            let chunked_out = process_in_pieces(&mut chunked, &signal, &piece_sizes);
            assert_eq!(whole_out.len(), to as usize, "{from}->{to}");
            assert_eq!(whole_out, chunked_out, "{from}->{to} in {piece_sizes:?}");
        }
    }

    #[test]
    fn twenty_ms_frames_in_give_twenty_ms_frames_out_on_the_8k_side() {
        let mut up = StreamResampler::new(8_000, 24_000).expect("supported rates");
        let mut out = Vec::new();
        for _ in 0..5 {
            out.clear();
            up.process(&[100; 160], &mut out).expect("resample");
            assert_eq!(out.len(), 480);
            assert_eq!(up.buffered_input_samples(), 0);
        }
    }

    #[test]
    fn tone_through_8k_24k_8k_keeps_60_db_snr() {
        let input = tone(8_000, 1_000.0, 16_000.0, 16_000);
        let mut up = StreamResampler::new(8_000, 24_000).expect("supported rates");
        let mut down = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut wide = Vec::new();
        let mut output = Vec::new();
        for frame in input.chunks(160) {
            wide.clear();
            up.process(frame, &mut wide).expect("upsample");
            down.process(&wide, &mut output).expect("downsample");
        }
        // The reported delays, converted to 8 kHz samples, must line the signals up.
        assert_eq!(up.delay_output_samples() % 3, 0);
        let delay = up.delay_output_samples() / 3 + down.delay_output_samples();
        // Skip the start-up transient (the filters fill with the tone's onset).
        let settle = 4 * delay;
        let mut signal_energy = 0.0;
        let mut error_energy = 0.0;
        for n in settle..output.len() {
            let reference = f64::from(input[n - delay]);
            signal_energy += reference.powi(2);
            error_energy += (f64::from(output[n]) - reference).powi(2);
        }
        let snr_db = 10.0 * (signal_energy / error_energy).log10();
        assert!(snr_db >= 60.0, "SNR {snr_db:.1} dB with delay {delay}");
    }

    #[test]
    fn content_above_4k_is_rejected_when_downsampling_from_24k() {
        for freq in [4_300.0, 5_000.0, 6_000.0, 7_900.0, 9_000.0, 11_500.0] {
            let input = tone(24_000, freq, 16_000.0, 24_000);
            let mut down = StreamResampler::new(24_000, 8_000).expect("supported rates");
            let mut output = Vec::new();
            down.process(&input, &mut output).expect("downsample");
            let settled = &output[4 * down.delay_output_samples()..];
            let attenuation_db = 20.0 * (rms(settled).max(1e-9) / rms(&input)).log10();
            assert!(
                attenuation_db <= -50.0,
                "{freq} Hz only attenuated {attenuation_db:.1} dB"
            );
        }
        // And the pass band survives: a 1 kHz tone keeps its level within 0.1 dB.
        let input = tone(24_000, 1_000.0, 16_000.0, 24_000);
        let mut down = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut output = Vec::new();
        down.process(&input, &mut output).expect("downsample");
        let settled = &output[4 * down.delay_output_samples()..];
        let gain_db = 20.0 * (rms(settled) / rms(&input)).log10();
        assert!(gain_db.abs() < 0.1, "1 kHz gain {gain_db:.3} dB");
    }

    #[test]
    fn reset_forgets_buffered_input_and_filter_state() {
        let signal = noise(24_000);
        let mut fresh = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut expected = Vec::new();
        fresh.process(&signal, &mut expected).expect("resample");

        let mut reused = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut scrap = Vec::new();
        reused.process(&noise(1_234), &mut scrap).expect("resample");
        assert!(reused.buffered_input_samples() > 0);
        reused.reset();
        assert_eq!(reused.buffered_input_samples(), 0);
        let mut after_reset = Vec::new();
        reused.process(&signal, &mut after_reset).expect("resample");
        assert_eq!(after_reset, expected);
    }

    #[test]
    fn flush_emits_exactly_the_tail_of_the_input() {
        // 1234 samples at 24 kHz = 411.33 samples at 8 kHz, plus the filter delay.
        let input = tone(24_000, 440.0, 12_000.0, 1_234);
        let mut down = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut output = Vec::new();
        down.process(&input, &mut output).expect("resample");
        assert_eq!(output.len(), 320);
        down.flush(&mut output).expect("flush");
        assert_eq!(output.len(), 412 + down.delay_output_samples());
        assert_eq!(down.buffered_input_samples(), 0);
        // The flushed tail carries the tone, not silence.
        assert!(rms(&output[320..412]) > 1_000.0);
        // Flushing again with nothing new in emits nothing: no stale audio, no silence.
        let mut again = Vec::new();
        down.flush(&mut again).expect("flush");
        assert!(again.is_empty());
    }

    #[test]
    fn max_output_len_is_an_upper_bound() {
        let mut down = StreamResampler::new(24_000, 8_000).expect("supported rates");
        let mut output = Vec::new();
        for size in [1, 479, 480, 481, 2_000, 7] {
            let bound = down.max_output_len(size);
            output.clear();
            down.process(&noise(size), &mut output).expect("resample");
            assert!(output.len() <= bound, "{size}: {} > {bound}", output.len());
        }
    }
}

//! Audio for the transcoding path and call recording: G.711 codecs, stateful
//! resamplers, the per-call [`Transcoder`], the two-channel [`recording::Recorder`] and its
//! Ogg/Opus output.
//!
//! Owns sample formats and rates only. It must not know about WebSockets, JSON, base64
//! or providers' wire events; the call path hands it bytes and sends what it returns.
//! The μ-law passthrough path (providers that accept `audio/pcmu`) does not come here.

pub mod dtmf;
pub mod g711;
pub mod ogg_opus;
pub mod recording;
pub mod resample;
pub mod sink;

use std::path::PathBuf;
use std::time::Duration;

pub use recording::{Recorder, RecordingFormat};
pub use resample::StreamResampler;

/// Errors of the audio layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A sample rate outside [`resample::SUPPORTED_RATES`].
    #[error("unsupported sample rate {0} Hz (supported: 8000, 16000, 24000, 48000)")]
    UnsupportedRate(u32),
    /// rubato refused the resampler configuration.
    #[error("cannot build resampler: {0}")]
    ResamplerSetup(#[from] rubato::ResamplerConstructionError),
    /// rubato refused a chunk (a buffer-size bug in this module, not bad input).
    #[error("resampling failed: {0}")]
    Resample(#[from] rubato::ResampleError),
    /// A scratch buffer was too small for rubato (a bug in this module, not bad input).
    #[error("resampler buffer size: {0}")]
    ResampleBuffer(#[from] rubato::audioadapter_buffers::SizeError),
    /// A call id that cannot safely be used as a file name.
    #[error("invalid call id {0:?}: use 1-128 characters from A-Z, a-z, 0-9, '_' and '-'")]
    InvalidCallId(String),
    /// Creating, writing or finalising the recording file failed.
    #[error("recording {path}: {source}")]
    Recording {
        /// The recording file.
        path: PathBuf,
        /// What the file's writer or encoder reported.
        source: recording::SinkError,
    },
    /// The recording reached its length limit; later audio is not recorded.
    #[error("recording {path} reached its limit of {limit_ms} ms; later audio is not recorded")]
    RecordingTooLong {
        /// The recording file.
        path: PathBuf,
        /// The configured limit.
        limit_ms: u64,
    },
    /// More agent audio was queued than the recorder holds; the excess is not recorded.
    #[error("recorder agent queue full: {dropped_samples} samples of agent audio not recorded")]
    AgentQueueFull {
        /// Samples (8 kHz) dropped from this call.
        dropped_samples: usize,
    },
}

/// The telephony side's rate: Twilio media streams are μ-law at 8 kHz.
pub const CALLER_RATE: u32 = 8_000;

/// Audio preallocated per direction at construction, so that provider chunks up to this
/// long never allocate. Longer chunks grow the buffers once, then reuse them.
const PREALLOCATED_MS: usize = 1_000;

/// Per-call conversion between Twilio's μ-law 8 kHz and a PCM16 provider.
///
/// One instance per call, created at call start and kept for the whole call. Each
/// direction owns its resampler and buffers; the returned slices borrow those buffers
/// and are valid until the next call on the same direction.
#[derive(Debug)]
pub struct Transcoder {
    to_provider: Option<StreamResampler>,
    to_caller: Option<StreamResampler>,
    provider_in_rate: u32,
    provider_out_rate: u32,
    inbound_pcm: Vec<i16>,
    inbound_resampled: Vec<i16>,
    inbound_bytes: Vec<u8>,
    outbound_pcm: Vec<i16>,
    outbound_resampled: Vec<i16>,
    outbound_ulaw: Vec<u8>,
    /// First byte of a sample split across two provider chunks.
    carry_byte: Option<u8>,
}

/// Delay each direction of a [`Transcoder`] adds to the audio timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscodeLatency {
    /// Caller → provider filter delay.
    pub to_provider: Duration,
    /// Provider → caller filter delay (buffering of partial 20 ms chunks comes on top,
    /// at most 20 ms, and only when the provider sends sizes that are not whole chunks).
    pub to_caller: Duration,
}

fn resampler_between(from: u32, to: u32) -> Result<Option<StreamResampler>, AudioError> {
    if from == to {
        if resample::SUPPORTED_RATES.contains(&from) {
            Ok(None)
        } else {
            Err(AudioError::UnsupportedRate(from))
        }
    } else {
        StreamResampler::new(from, to).map(Some)
    }
}

fn samples_per_ms(rate: u32) -> usize {
    rate as usize / 1000
}

impl Transcoder {
    /// Creates the per-call transcoder for a provider that takes PCM16 LE mono at
    /// `provider_in_rate` and sends it at `provider_out_rate` (e.g. Gemini Live: 16000
    /// in, 24000 out). Allocates all buffers now.
    pub fn new(provider_in_rate: u32, provider_out_rate: u32) -> Result<Self, AudioError> {
        let to_provider = resampler_between(CALLER_RATE, provider_in_rate)?;
        let to_caller = resampler_between(provider_out_rate, CALLER_RATE)?;
        let caller_samples = samples_per_ms(CALLER_RATE) * PREALLOCATED_MS;
        let in_samples = samples_per_ms(provider_in_rate) * PREALLOCATED_MS;
        let out_samples = samples_per_ms(provider_out_rate) * PREALLOCATED_MS;
        // Resampler output can exceed the nominal ratio by one chunk.
        let slack = 2 * samples_per_ms(provider_in_rate.max(provider_out_rate)) * 20;
        Ok(Self {
            to_provider,
            to_caller,
            provider_in_rate,
            provider_out_rate,
            inbound_pcm: Vec::with_capacity(caller_samples),
            inbound_resampled: Vec::with_capacity(in_samples + slack),
            inbound_bytes: Vec::with_capacity(2 * (in_samples + slack)),
            outbound_pcm: Vec::with_capacity(out_samples),
            outbound_resampled: Vec::with_capacity(caller_samples + slack),
            outbound_ulaw: Vec::with_capacity(caller_samples + slack),
            carry_byte: None,
        })
    }

    /// The provider's input rate in Hz.
    pub fn provider_in_rate(&self) -> u32 {
        self.provider_in_rate
    }

    /// The provider's output rate in Hz.
    pub fn provider_out_rate(&self) -> u32 {
        self.provider_out_rate
    }

    /// Filter delay of each direction.
    pub fn latency(&self) -> TranscodeLatency {
        let delay = |r: &Option<StreamResampler>| {
            r.as_ref().map_or(Duration::ZERO, |r| {
                Duration::from_micros(
                    r.delay_output_samples() as u64 * 1_000_000 / u64::from(r.output_rate()),
                )
            })
        };
        TranscodeLatency {
            to_provider: delay(&self.to_provider),
            to_caller: delay(&self.to_caller),
        }
    }

    /// Converts one inbound Twilio payload (μ-law 8 kHz) to PCM16 LE bytes at the
    /// provider's input rate. With 20 ms frames every call returns a full 20 ms.
    pub fn caller_to_provider(&mut self, ulaw: &[u8]) -> Result<&[u8], AudioError> {
        self.inbound_pcm.resize(ulaw.len(), 0);
        g711::decode_ulaw_into(ulaw, &mut self.inbound_pcm);
        let samples = match &mut self.to_provider {
            Some(resampler) => {
                self.inbound_resampled.clear();
                resampler.process(&self.inbound_pcm, &mut self.inbound_resampled)?;
                &self.inbound_resampled
            }
            None => &self.inbound_pcm,
        };
        self.inbound_bytes.clear();
        self.inbound_bytes
            .extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        Ok(&self.inbound_bytes)
    }

    /// Converts one provider audio chunk (PCM16 LE at the provider's output rate, any
    /// length, odd byte counts allowed) to μ-law 8 kHz bytes for Twilio. Returns an
    /// empty slice while less than 20 ms is buffered.
    pub fn provider_to_caller(&mut self, pcm16le: &[u8]) -> Result<&[u8], AudioError> {
        self.outbound_pcm.clear();
        let mut bytes = pcm16le;
        if let Some(low) = self.carry_byte.take() {
            match bytes.split_first() {
                Some((&high, rest)) => {
                    self.outbound_pcm.push(i16::from_le_bytes([low, high]));
                    bytes = rest;
                }
                None => self.carry_byte = Some(low),
            }
        }
        let pairs = bytes.chunks_exact(2);
        if let [odd] = pairs.remainder() {
            self.carry_byte = Some(*odd);
        }
        self.outbound_pcm
            .extend(pairs.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
        let samples = match &mut self.to_caller {
            Some(resampler) => {
                self.outbound_resampled.clear();
                resampler.process(&self.outbound_pcm, &mut self.outbound_resampled)?;
                &self.outbound_resampled
            }
            None => &self.outbound_pcm,
        };
        self.outbound_ulaw.resize(samples.len(), g711::ULAW_SILENCE);
        g711::encode_ulaw_into(samples, &mut self.outbound_ulaw);
        Ok(&self.outbound_ulaw)
    }

    /// Emits the provider audio still buffered (partial chunk and filter tail) as μ-law,
    /// then resets the output side. Call when a response's audio ends, so its last
    /// milliseconds are not held back until the next response.
    pub fn flush_output(&mut self) -> Result<&[u8], AudioError> {
        // A dangling odd byte is half a sample: there is nothing playable in it.
        self.carry_byte = None;
        self.outbound_resampled.clear();
        if let Some(resampler) = &mut self.to_caller {
            resampler.flush(&mut self.outbound_resampled)?;
        }
        self.outbound_ulaw
            .resize(self.outbound_resampled.len(), g711::ULAW_SILENCE);
        g711::encode_ulaw_into(&self.outbound_resampled, &mut self.outbound_ulaw);
        Ok(&self.outbound_ulaw)
    }

    /// Discards buffered provider audio and filter state (on Twilio `clear` / barge-in),
    /// so nothing from the interrupted response leaks into the next one.
    pub fn reset_output(&mut self) {
        self.carry_byte = None;
        if let Some(resampler) = &mut self.to_caller {
            resampler.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulaw_tone(freq: f64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(CALLER_RATE);
                let sample = 12_000.0 * (2.0 * std::f64::consts::PI * freq * t).sin();
                g711::linear_to_ulaw(sample.round() as i16)
            })
            .collect()
    }

    fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn per_call_state_can_move_into_a_call_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Transcoder>();
        assert_send::<StreamResampler>();
        assert_send::<Recorder>();
        fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<AudioError>();
    }

    #[test]
    fn rejects_unsupported_provider_rates() {
        assert!(matches!(
            Transcoder::new(44_100, 24_000),
            Err(AudioError::UnsupportedRate(44_100))
        ));
        assert!(matches!(
            Transcoder::new(16_000, 11_025),
            Err(AudioError::UnsupportedRate(11_025))
        ));
    }

    #[test]
    fn one_twilio_frame_becomes_20_ms_at_the_provider_rate() {
        for (rate, bytes) in [(8_000, 320), (16_000, 640), (24_000, 960)] {
            let mut transcoder = Transcoder::new(rate, 24_000).expect("supported");
            for _ in 0..3 {
                let out = transcoder
                    .caller_to_provider(&[g711::ULAW_SILENCE; 160])
                    .expect("transcode");
                assert_eq!(out.len(), bytes, "{rate} Hz");
                assert!(out.iter().all(|&b| b == 0), "silence stays silence");
            }
        }
    }

    #[test]
    fn provider_audio_comes_back_as_ulaw_once_20_ms_is_buffered() {
        let mut transcoder = Transcoder::new(16_000, 24_000).expect("supported");
        // 10 ms at 24 kHz is not a full chunk yet.
        assert!(
            transcoder
                .provider_to_caller(&[0; 480])
                .expect("transcode")
                .is_empty()
        );
        let out = transcoder.provider_to_caller(&[0; 480]).expect("transcode");
        assert_eq!(out, &[g711::ULAW_SILENCE; 160][..]);
    }

    #[test]
    fn odd_byte_splits_give_the_same_audio_as_whole_samples() {
        let samples: Vec<i16> = (0..4_800)
            .map(|n| ((n * 37) % 20_000 - 10_000) as i16)
            .collect();
        let bytes = pcm_bytes(&samples);

        let mut whole = Transcoder::new(16_000, 24_000).expect("supported");
        let expected = whole
            .provider_to_caller(&bytes)
            .expect("transcode")
            .to_vec();
        assert_eq!(expected.len(), 1_600);

        let mut split = Transcoder::new(16_000, 24_000).expect("supported");
        let mut got = Vec::new();
        let mut rest = &bytes[..];
        for size in [1, 0, 3, 961, 1, 2_047, 5].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            got.extend_from_slice(split.provider_to_caller(piece).expect("transcode"));
            rest = tail;
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_tone_survives_the_round_trip_through_a_24k_provider() {
        let input = ulaw_tone(1_000.0, 8_000);
        let mut transcoder = Transcoder::new(24_000, 24_000).expect("supported");
        let mut returned = Vec::new();
        for frame in input.chunks(160) {
            let pcm = transcoder
                .caller_to_provider(frame)
                .expect("to provider")
                .to_vec();
            returned.extend_from_slice(transcoder.provider_to_caller(&pcm).expect("to caller"));
        }
        assert_eq!(returned.len(), input.len());
        let latency = transcoder.latency();
        assert_eq!(latency.to_provider, Duration::from_millis(10));
        assert_eq!(latency.to_caller, Duration::from_millis(10));
        let delay = 160; // 20 ms at 8 kHz
        let (mut signal, mut error) = (0.0, 0.0);
        for n in 4 * delay..input.len() {
            let reference = f64::from(g711::ulaw_to_linear(input[n - delay]));
            let got = f64::from(g711::ulaw_to_linear(returned[n]));
            signal += reference * reference;
            error += (got - reference).powi(2);
        }
        // A second μ-law quantisation bounds this at roughly 35-38 dB.
        let snr_db = 10.0 * (signal / error).log10();
        assert!(snr_db > 30.0, "round-trip SNR {snr_db:.1} dB");
    }

    #[test]
    fn reset_output_drops_buffered_audio_and_the_odd_byte() {
        let mut transcoder = Transcoder::new(16_000, 24_000).expect("supported");
        // 15 ms of loud audio plus a dangling byte, then a barge-in.
        let loud = pcm_bytes(&[20_000; 360]);
        assert!(
            transcoder
                .provider_to_caller(&loud)
                .expect("transcode")
                .is_empty()
        );
        assert!(
            transcoder
                .provider_to_caller(&[0x7F])
                .expect("transcode")
                .is_empty()
        );
        transcoder.reset_output();
        // The next response starts clean: pure silence in gives pure silence out.
        let out = transcoder.provider_to_caller(&[0; 960]).expect("transcode");
        assert_eq!(out, &[g711::ULAW_SILENCE; 160][..]);
    }

    #[test]
    fn flush_output_releases_the_end_of_a_response() {
        let mut transcoder = Transcoder::new(16_000, 24_000).expect("supported");
        let loud = pcm_bytes(&[20_000; 1_200]); // 50 ms
        let first = transcoder
            .provider_to_caller(&loud)
            .expect("transcode")
            .len();
        assert_eq!(first, 320);
        let tail = transcoder.flush_output().expect("flush").to_vec();
        // 10 ms still buffered plus the 10 ms filter delay.
        assert_eq!(tail.len(), 160);
        assert!(tail[..80].iter().any(|&c| g711::ulaw_to_linear(c) > 10_000));
        // Nothing new since: a second flush (e.g. a response without audio) adds nothing.
        assert!(transcoder.flush_output().expect("flush").is_empty());
    }

    #[test]
    fn an_8k_provider_passes_samples_through_unchanged() {
        let mut transcoder = Transcoder::new(8_000, 8_000).expect("supported");
        let input = ulaw_tone(440.0, 160);
        let pcm = transcoder
            .caller_to_provider(&input)
            .expect("to provider")
            .to_vec();
        let expected: Vec<u8> = pcm_bytes(
            &input
                .iter()
                .map(|&c| g711::ulaw_to_linear(c))
                .collect::<Vec<_>>(),
        );
        assert_eq!(pcm, expected);
        assert_eq!(
            transcoder.provider_to_caller(&pcm).expect("to caller"),
            &input[..]
        );
        assert_eq!(transcoder.latency().to_caller, Duration::ZERO);
    }
}

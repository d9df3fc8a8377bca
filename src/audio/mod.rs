//! Audio for the transcoding path and call recording: G.711 codecs, stateful
//! resamplers, the per-call [`Transcoder`], and the two-channel [`recording::Recorder`].
//!
//! Owns sample formats and rates only. It must not know about WebSockets, JSON, base64
//! or providers' wire events; the call path hands it bytes and sends what it returns.
//! The μ-law passthrough path (providers that accept `audio/pcmu`) does not come here.

pub mod g711;
pub mod recording;
pub mod resample;

use std::path::PathBuf;
use std::time::Duration;

pub use recording::Recorder;
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
        /// What the WAV writer or the file system reported.
        source: hound::Error,
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

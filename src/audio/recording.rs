//! Two-channel call recorder: caller on the left, agent on the right, 8 kHz PCM16 WAV,
//! streamed to disk while the call runs.
//!
//! Owns the call's recording file and the timeline that aligns both channels in 8 kHz
//! samples since stream start. It must not hold the call in memory (only a short
//! hold-back window and a capped queue of agent audio not yet played) and must not block
//! on anything but its own buffered file writes.
//!
//! Timeline rules:
//! - caller audio is placed at its Twilio timestamp; gaps become silence, overlaps are
//!   dropped;
//! - agent audio plays after what is already queued, never earlier than the caller
//!   position at the time it is queued (Twilio plays in order, in real time);
//! - a `clear` at time `t` discards queued agent audio from `t` on: it was never heard;
//! - a frame reaches the file only once the caller timeline is more than the hold-back
//!   window past it, so a `clear` that arrives slightly late can still remove audio.
//!
//! The WAV writer is `hound`: it writes the classic 44-byte PCM header and its `flush()`
//! rewrites the RIFF and data sizes in place, which gives the periodic checkpoints that
//! keep a file playable after an abrupt end.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{AudioError, g711};

/// Recorder sample rate: the telephony rate, so nothing is resampled for recording.
pub const RECORDING_RATE: u32 = 8_000;

const SAMPLES_PER_MS: u64 = RECORDING_RATE as u64 / 1000;

/// Longest accepted call id (it becomes a file name).
const MAX_CALL_ID_LEN: usize = 128;

/// Tunable bounds of a [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderLimits {
    /// Agent audio queued ahead of the caller timeline that is kept for recording; the
    /// excess is dropped (and reported). Bounds memory at 8 bytes per ms.
    pub max_pending_agent_ms: u64,
    /// How far behind the caller timeline frames stay in memory before they are written,
    /// so a late `clear` can still remove agent audio.
    pub hold_back_ms: u64,
    /// How often (in recorded audio) the WAV header sizes are rewritten on disk.
    pub checkpoint_ms: u64,
    /// Longest recording; audio past it is not recorded.
    pub max_duration_ms: u64,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        Self {
            max_pending_agent_ms: 120_000,
            hold_back_ms: 500,
            checkpoint_ms: 1_000,
            max_duration_ms: 4 * 60 * 60 * 1_000,
        }
    }
}

/// Streams one call's audio to `<dir>/<call_id>.wav` (stereo: caller left, agent right).
///
/// Dropping it without [`finish`](Self::finish) still finalises the file (best effort).
pub struct Recorder {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    hold_back: usize,
    max_pending_agent: usize,
    checkpoint_every: u64,
    max_frames: u64,
    /// Stereo frames already on disk; also the timeline index of `caller_held[0]`
    /// and `agent_pending[0]`.
    written: u64,
    /// Caller μ-law samples heard but not yet written.
    caller_held: VecDeque<u8>,
    /// Agent μ-law samples from `written` on, in play order; silence fills gaps.
    agent_pending: VecDeque<u8>,
    last_checkpoint: u64,
    dropped_agent_samples: usize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("written", &self.written)
            .field("caller_held", &self.caller_held.len())
            .field("agent_pending", &self.agent_pending.len())
            .finish_non_exhaustive()
    }
}

fn valid_call_id(call_id: &str) -> bool {
    !call_id.is_empty()
        && call_id.len() <= MAX_CALL_ID_LEN
        && call_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn ms_to_samples(ms: u64) -> u64 {
    ms.saturating_mul(SAMPLES_PER_MS)
}

fn usize_from(samples: u64) -> usize {
    usize::try_from(samples).unwrap_or(usize::MAX)
}

impl Recorder {
    /// Creates `<dir>/<call_id>.wav` with default [`RecorderLimits`]. Fails if the id is
    /// not 1–128 characters of `[A-Za-z0-9_-]` or the file already exists.
    pub fn create(dir: &Path, call_id: &str) -> Result<Self, AudioError> {
        Self::create_with_limits(dir, call_id, RecorderLimits::default())
    }

    /// Like [`create`](Self::create), with explicit limits.
    pub fn create_with_limits(
        dir: &Path,
        call_id: &str,
        limits: RecorderLimits,
    ) -> Result<Self, AudioError> {
        if !valid_call_id(call_id) {
            return Err(AudioError::InvalidCallId(call_id.to_owned()));
        }
        let path = dir.join(format!("{call_id}.wav"));
        let recording_error = |source| AudioError::Recording {
            path: path.clone(),
            source,
        };
        // create_new: never overwrite an earlier recording of the same id.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| recording_error(hound::Error::IoError(e)))?;
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RECORDING_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer =
            hound::WavWriter::new(BufWriter::new(file), spec).map_err(recording_error)?;
        // Sizes are zero now; writing them makes even an empty file a valid WAV.
        writer.flush().map_err(recording_error)?;
        let hold_back = usize_from(ms_to_samples(limits.hold_back_ms));
        Ok(Self {
            writer: Some(writer),
            hold_back,
            // The pending queue must hold at least the hold-back window of padding.
            max_pending_agent: usize_from(ms_to_samples(limits.max_pending_agent_ms))
                .max(hold_back),
            checkpoint_every: ms_to_samples(limits.checkpoint_ms).max(1),
            max_frames: ms_to_samples(limits.max_duration_ms),
            written: 0,
            caller_held: VecDeque::with_capacity(hold_back + 160),
            agent_pending: VecDeque::new(),
            last_checkpoint: 0,
            dropped_agent_samples: 0,
            path,
        })
    }

    /// The recording file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Caller timeline position in ms since stream start (end of the caller audio so far).
    pub fn caller_position_ms(&self) -> u64 {
        self.caller_end() / SAMPLES_PER_MS
    }

    /// Agent samples waiting for the caller timeline to reach them (memory in use).
    pub fn pending_agent_samples(&self) -> usize {
        self.agent_pending.len()
    }

    /// Agent samples dropped because the pending queue was full.
    pub fn dropped_agent_samples(&self) -> usize {
        self.dropped_agent_samples
    }

    fn caller_end(&self) -> u64 {
        self.written + self.caller_held.len() as u64
    }

    /// Records an inbound caller frame (μ-law 8 kHz) whose Twilio timestamp is `at_ms`.
    /// A gap before it is recorded as silence; audio overlapping what is already
    /// recorded is dropped.
    pub fn caller_audio(&mut self, at_ms: u64, ulaw: &[u8]) -> Result<(), AudioError> {
        let start = ms_to_samples(at_ms);
        let caller_end = self.caller_end();
        let payload = if start < caller_end {
            let overlap = usize_from(caller_end - start).min(ulaw.len());
            &ulaw[overlap..]
        } else {
            self.push_caller_silence(start - caller_end)?;
            ulaw
        };
        let room = usize_from(self.max_frames.saturating_sub(self.caller_end()));
        let (recordable, beyond_limit) = payload.split_at(payload.len().min(room));
        // Push in windows of the hold-back size so a huge payload never piles up.
        for piece in recordable.chunks(self.hold_back.max(160)) {
            self.caller_held.extend(piece);
            self.write_ready_frames()?;
        }
        if beyond_limit.is_empty() {
            Ok(())
        } else {
            Err(self.too_long())
        }
    }

    fn push_caller_silence(&mut self, samples: u64) -> Result<(), AudioError> {
        let room = self.max_frames.saturating_sub(self.caller_end());
        let mut remaining = samples.min(room);
        let window = self.hold_back.max(160) as u64;
        while remaining > 0 {
            let piece = remaining.min(window);
            self.caller_held
                .extend(std::iter::repeat_n(g711::ULAW_SILENCE, usize_from(piece)));
            remaining -= piece;
            self.write_ready_frames()?;
        }
        if samples > room {
            Err(self.too_long())
        } else {
            Ok(())
        }
    }

    fn too_long(&self) -> AudioError {
        AudioError::RecordingTooLong {
            path: self.path.clone(),
            limit_ms: self.max_frames / SAMPLES_PER_MS,
        }
    }

    /// Records agent audio (μ-law 8 kHz) just sent to Twilio. It plays after the agent
    /// audio already queued, and no earlier than the current caller position. Returns
    /// [`AudioError::AgentQueueFull`] if some of it did not fit in the pending queue;
    /// the rest is still recorded.
    pub fn agent_audio_queued(&mut self, ulaw: &[u8]) -> Result<(), AudioError> {
        let caller_offset = self.caller_held.len();
        if self.agent_pending.len() < caller_offset {
            // The agent queue ran dry before now: this audio starts at the caller
            // position, and the interval in between was agent silence.
            self.agent_pending.resize(caller_offset, g711::ULAW_SILENCE);
        }
        let room = self
            .max_pending_agent
            .saturating_sub(self.agent_pending.len());
        let (kept, dropped) = ulaw.split_at(ulaw.len().min(room));
        self.agent_pending.extend(kept);
        if dropped.is_empty() {
            Ok(())
        } else {
            self.dropped_agent_samples += dropped.len();
            Err(AudioError::AgentQueueFull {
                dropped_samples: self.dropped_agent_samples,
            })
        }
    }

    /// Records a Twilio `clear` sent at caller time `at_ms`: queued agent audio that
    /// would have played from `at_ms` on is discarded. Audio already written (more than
    /// the hold-back window ago) stays.
    pub fn agent_cleared(&mut self, at_ms: u64) {
        let cut = ms_to_samples(at_ms).max(self.written);
        let keep = usize_from(cut - self.written);
        self.agent_pending.truncate(keep);
    }

    /// Writes every frame the caller timeline has covered, finalises the header and
    /// returns the file's path. Agent audio still queued past the caller timeline was
    /// never heard and is not written.
    pub fn finish(mut self) -> Result<PathBuf, AudioError> {
        self.finalize()?;
        Ok(self.path.clone())
    }

    fn finalize(&mut self) -> Result<(), AudioError> {
        let flushed = self.write_frames(self.caller_held.len());
        let finalized = match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|source| AudioError::Recording {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        };
        flushed.and(finalized)
    }

    /// Writes the frames that are more than the hold-back window behind the caller.
    fn write_ready_frames(&mut self) -> Result<(), AudioError> {
        let ready = self.caller_held.len().saturating_sub(self.hold_back);
        self.write_frames(ready)
    }

    fn write_frames(&mut self, frames: usize) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let path = &self.path;
        let recording_error = |source| AudioError::Recording {
            path: path.clone(),
            source,
        };
        for caller in self.caller_held.drain(..frames) {
            let agent = self.agent_pending.pop_front().unwrap_or(g711::ULAW_SILENCE);
            writer
                .write_sample(g711::ulaw_to_linear(caller))
                .map_err(recording_error)?;
            writer
                .write_sample(g711::ulaw_to_linear(agent))
                .map_err(recording_error)?;
            self.written += 1;
        }
        if self.written - self.last_checkpoint >= self.checkpoint_every {
            writer.flush().map_err(recording_error)?;
            self.last_checkpoint = self.written;
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Best effort: there is no one to report an error to from a destructor.
            let _ = self.finalize();
        }
    }
}

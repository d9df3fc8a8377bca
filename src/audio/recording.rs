//! Two-channel call recorder: caller on the left, agent on the right, 8 kHz, streamed to disk
//! while the call runs, as WAV or Ogg/Opus.
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
//! The timeline feeds one [`RecordingSink`] per file format, with periodic checkpoints that
//! keep the file playable after an abrupt end. WAV is written by `hound`: it writes the
//! classic 44-byte PCM header and its `flush()` rewrites the RIFF and data sizes in place.
//! Ogg/Opus is [`super::ogg_opus::OpusSink`]: a checkpoint ends an Ogg page.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::ogg_opus::OpusSink;
use super::sink::RecordingSink;
pub use super::sink::{RECORDING_RATE, SinkError};
use super::{AudioError, g711};

const SAMPLES_PER_MS: u64 = RECORDING_RATE as u64 / 1000;

/// Longest accepted call id (it becomes a file name).
const MAX_CALL_ID_LEN: usize = 128;

/// The container and codec of recording files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordingFormat {
    /// PCM16 WAV (`<call id>.wav`): 32 kB/s, every sample exact.
    #[default]
    Wav,
    /// Ogg/Opus (`<call id>.opus`), 20 ms VOIP frames at 24 kbit/s: about 3 kB/s.
    Opus,
}

impl RecordingFormat {
    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Opus => "opus",
        }
    }
}

impl std::str::FromStr for RecordingFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "wav" => Ok(Self::Wav),
            "opus" => Ok(Self::Opus),
            other => Err(format!("{other:?} is not wav or opus")),
        }
    }
}

struct WavSink(hound::WavWriter<BufWriter<File>>);

impl WavSink {
    fn new(file: File) -> Result<Self, SinkError> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RECORDING_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(BufWriter::new(file), spec)?;
        // Sizes are zero now; writing them makes even an empty file a valid WAV.
        writer.flush()?;
        Ok(Self(writer))
    }
}

impl RecordingSink for WavSink {
    fn write(&mut self, interleaved: &[i16]) -> Result<(), SinkError> {
        for &sample in interleaved {
            self.0.write_sample(sample)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), SinkError> {
        Ok(self.0.flush()?)
    }

    fn finish(self: Box<Self>) -> Result<(), SinkError> {
        Ok(self.0.finalize()?)
    }
}

/// Tunable bounds of a [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderLimits {
    /// Agent audio queued ahead of the caller timeline that is kept for recording; the
    /// excess is dropped (and reported). Bounds memory at 8 bytes per ms.
    pub max_pending_agent_ms: u64,
    /// How far behind the caller timeline frames stay in memory before they are written,
    /// so a late `clear` can still remove agent audio.
    pub hold_back_ms: u64,
    /// How often (in recorded audio) the file is made playable on disk: WAV header sizes
    /// rewritten, or an Ogg page ended and flushed.
    pub checkpoint_ms: u64,
    /// Longest recording; audio past it is not recorded.
    pub max_duration_ms: u64,
    /// Longest gap between caller frames recorded as silence. A larger timestamp jump
    /// is recorded as this much silence and later timestamps are shifted to match, so
    /// a bogus timestamp cannot make the recorder write hours of silence.
    pub max_gap_ms: u64,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        Self {
            max_pending_agent_ms: 120_000,
            hold_back_ms: 500,
            checkpoint_ms: 1_000,
            max_duration_ms: 4 * 60 * 60 * 1_000,
            max_gap_ms: 10_000,
        }
    }
}

/// Streams one call's audio to `<dir>/<call_id>.wav` or `.opus` (stereo: caller left, agent
/// right).
///
/// Dropping it without [`finish`](Self::finish) still finalises the file (best effort).
pub struct Recorder {
    path: PathBuf,
    sink: Option<Box<dyn RecordingSink>>,
    /// Interleaved samples on their way to the sink (reused).
    interleaved: Vec<i16>,
    hold_back: usize,
    max_pending_agent: usize,
    checkpoint_every: u64,
    max_frames: u64,
    max_gap: u64,
    /// Samples subtracted from Twilio timestamps after a jump larger than `max_gap`.
    timestamp_shift: u64,
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
    /// Creates `<dir>/<call_id>.<wav|opus>` with default [`RecorderLimits`]. Fails if the id
    /// is not 1–128 characters of `[A-Za-z0-9_-]` or the file already exists.
    pub fn create(dir: &Path, call_id: &str, format: RecordingFormat) -> Result<Self, AudioError> {
        Self::create_with_limits(dir, call_id, format, RecorderLimits::default())
    }

    /// Like [`create`](Self::create), with explicit limits.
    pub fn create_with_limits(
        dir: &Path,
        call_id: &str,
        format: RecordingFormat,
        limits: RecorderLimits,
    ) -> Result<Self, AudioError> {
        if !valid_call_id(call_id) {
            return Err(AudioError::InvalidCallId(call_id.to_owned()));
        }
        let path = dir.join(format!("{call_id}.{}", format.extension()));
        let open_sink = || -> Result<Box<dyn RecordingSink>, SinkError> {
            // create_new: never overwrite an earlier recording of the same id.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            Ok(match format {
                RecordingFormat::Wav => Box::new(WavSink::new(file)?),
                RecordingFormat::Opus => Box::new(OpusSink::new(file)?),
            })
        };
        let sink = open_sink().map_err(|source| AudioError::Recording {
            path: path.clone(),
            source,
        })?;
        let hold_back = usize_from(ms_to_samples(limits.hold_back_ms));
        Ok(Self {
            sink: Some(sink),
            interleaved: Vec::with_capacity(2 * (hold_back + 160)),
            hold_back,
            // The pending queue must hold at least the hold-back window of padding.
            max_pending_agent: usize_from(ms_to_samples(limits.max_pending_agent_ms))
                .max(hold_back),
            checkpoint_every: ms_to_samples(limits.checkpoint_ms).max(1),
            max_frames: ms_to_samples(limits.max_duration_ms),
            max_gap: ms_to_samples(limits.max_gap_ms),
            timestamp_shift: 0,
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
        let mut start = self.timeline_position(at_ms);
        let caller_end = self.caller_end();
        let latest_allowed = caller_end.saturating_add(self.max_gap);
        if start > latest_allowed {
            tracing::warn!(
                path = %self.path.display(),
                at_ms,
                caller_position_ms = caller_end / SAMPLES_PER_MS,
                "caller timestamp jumped ahead; recording a shortened gap"
            );
            self.timestamp_shift += start - latest_allowed;
            start = latest_allowed;
        }
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

    /// Maps a Twilio timestamp to a sample index on the recording's timeline.
    fn timeline_position(&self, at_ms: u64) -> u64 {
        ms_to_samples(at_ms).saturating_sub(self.timestamp_shift)
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
        let cut = self.timeline_position(at_ms).max(self.written);
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
        let finalized = match self.sink.take() {
            Some(sink) => sink.finish().map_err(|source| AudioError::Recording {
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
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        let path = &self.path;
        let recording_error = |source| AudioError::Recording {
            path: path.clone(),
            source,
        };
        self.interleaved.clear();
        for caller in self.caller_held.drain(..frames) {
            let agent = self.agent_pending.pop_front().unwrap_or(g711::ULAW_SILENCE);
            self.interleaved.push(g711::ulaw_to_linear(caller));
            self.interleaved.push(g711::ulaw_to_linear(agent));
        }
        // The drained samples leave memory whatever the sink says: keep the timeline in step.
        self.written += frames as u64;
        sink.write(&self.interleaved).map_err(recording_error)?;
        if self.written - self.last_checkpoint >= self.checkpoint_every {
            sink.checkpoint().map_err(recording_error)?;
            self.last_checkpoint = self.written;
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.sink.is_some() {
            // Best effort: there is no one to report an error to from a destructor.
            let _ = self.finalize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: u8 = 0x80; // μ-law +32124
    const FRAME: usize = 160; // 20 ms

    fn new_recorder(dir: &tempfile::TempDir) -> Recorder {
        Recorder::create(dir.path(), "CA0123abc_test-1", RecordingFormat::Wav)
            .expect("create recorder")
    }

    /// Feeds 20 ms silent caller frames covering `[from_ms, to_ms)`.
    fn caller_silence(recorder: &mut Recorder, from_ms: u64, to_ms: u64) {
        for at in (from_ms..to_ms).step_by(20) {
            recorder
                .caller_audio(at, &[g711::ULAW_SILENCE; FRAME])
                .expect("caller audio");
        }
    }

    /// Reads a WAV back as (left, right) channels, checking the format on the way.
    fn read_channels(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).expect("a valid WAV file");
        let spec = reader.spec();
        assert_eq!(spec.channels, 2);
        assert_eq!(spec.sample_rate, 8_000);
        assert_eq!(spec.bits_per_sample, 16);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("readable samples");
        let left = samples.iter().step_by(2).copied().collect();
        let right = samples.iter().skip(1).step_by(2).copied().collect();
        (left, right)
    }

    fn nonzero_range(channel: &[i16]) -> Option<(usize, usize)> {
        let first = channel.iter().position(|&s| s != 0)?;
        let last = channel.iter().rposition(|&s| s != 0)?;
        Some((first, last + 1))
    }

    #[test]
    fn rejects_call_ids_that_are_not_safe_file_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let too_long = "a".repeat(129);
        for bad in [
            "",
            "../evil",
            "a/b",
            "a b",
            "call.wav",
            "é",
            "a\0b",
            too_long.as_str(),
        ] {
            assert!(
                matches!(
                    Recorder::create(dir.path(), bad, RecordingFormat::Wav),
                    Err(AudioError::InvalidCallId(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn never_overwrites_an_existing_recording() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = new_recorder(&dir).finish().expect("finish");
        assert!(matches!(
            Recorder::create(dir.path(), "CA0123abc_test-1", RecordingFormat::Wav),
            Err(AudioError::Recording { .. })
        ));
        assert!(first.exists());
    }

    #[test]
    fn caller_and_agent_bursts_at_the_same_time_land_at_the_same_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        caller_silence(&mut recorder, 0, 1_000);
        // At t = 1000 ms the agent's burst is sent to Twilio and the caller's burst arrives.
        recorder
            .agent_audio_queued(&[LOUD; FRAME])
            .expect("agent audio");
        recorder
            .caller_audio(1_000, &[LOUD; FRAME])
            .expect("caller audio");
        caller_silence(&mut recorder, 1_020, 2_000);
        let path = recorder.finish().expect("finish");
        assert_eq!(path, dir.path().join("CA0123abc_test-1.wav"));

        let (left, right) = read_channels(&path);
        assert_eq!(left.len(), 16_000);
        assert_eq!(nonzero_range(&left), Some((8_000, 8_160)));
        assert_eq!(nonzero_range(&right), Some((8_000, 8_160)));
        assert!(right[8_000..8_160].iter().all(|&s| s == 32_124));
    }

    #[test]
    fn agent_audio_plays_after_what_is_already_queued() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        caller_silence(&mut recorder, 0, 100);
        recorder.agent_audio_queued(&[LOUD; 800]).expect("first"); // 100 ms
        recorder.agent_audio_queued(&[0x00; 800]).expect("second"); // -32124, 100 ms
        caller_silence(&mut recorder, 100, 500);
        let (_, right) = read_channels(&recorder.finish().expect("finish"));
        assert!(right[800..1_600].iter().all(|&s| s == 32_124));
        assert!(right[1_600..2_400].iter().all(|&s| s == -32_124));
        assert!(right[2_400..].iter().all(|&s| s == 0));
    }

    #[test]
    fn cleared_agent_audio_never_reaches_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        caller_silence(&mut recorder, 0, 1_000);
        recorder
            .agent_audio_queued(&[LOUD; 16_000])
            .expect("2 s of agent audio");
        // The caller barges in; the clear is sent once the frame at 1500 ms is in.
        caller_silence(&mut recorder, 1_000, 1_520);
        recorder.agent_cleared(1_500);
        caller_silence(&mut recorder, 1_520, 4_000);
        // The next response plays from the caller position when it is queued.
        recorder
            .agent_audio_queued(&[LOUD; FRAME])
            .expect("next response");
        caller_silence(&mut recorder, 4_000, 4_200);
        let (left, right) = read_channels(&recorder.finish().expect("finish"));
        assert_eq!(left.len(), 4_200 * 8);
        assert!(right[8_000..12_000].iter().all(|&s| s == 32_124));
        assert!(
            right[12_000..32_000].iter().all(|&s| s == 0),
            "cleared audio recorded"
        );
        assert!(right[32_000..32_160].iter().all(|&s| s == 32_124));
        assert!(right[32_160..].iter().all(|&s| s == 0));
    }

    #[test]
    fn gaps_become_silence_and_overlaps_are_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        recorder
            .caller_audio(0, &[LOUD; FRAME])
            .expect("frame at 0");
        // 10 ms overlap with the first frame: only its second half is new.
        recorder
            .caller_audio(10, &[0x00; FRAME])
            .expect("overlapping frame");
        // A 70 ms gap (lost frames).
        recorder
            .caller_audio(100, &[LOUD; FRAME])
            .expect("frame after gap");
        // A duplicate of an old frame is ignored entirely.
        recorder.caller_audio(0, &[0x00; FRAME]).expect("duplicate");
        let (left, _) = read_channels(&recorder.finish().expect("finish"));
        assert_eq!(left.len(), 120 * 8);
        assert!(left[..160].iter().all(|&s| s == 32_124));
        assert!(left[160..240].iter().all(|&s| s == -32_124));
        assert!(left[240..800].iter().all(|&s| s == 0));
        assert!(left[800..].iter().all(|&s| s == 32_124));
    }

    #[test]
    fn unheard_agent_audio_at_the_end_of_the_call_is_not_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        recorder
            .agent_audio_queued(&[LOUD; 16_000])
            .expect("2 s queued");
        caller_silence(&mut recorder, 0, 500);
        let (left, right) = read_channels(&recorder.finish().expect("finish"));
        assert_eq!(left.len(), 4_000);
        assert!(right.iter().all(|&s| s == 32_124));
    }

    /// Records 3 s of caller silence, then drops the recorder without `finish`.
    fn dropped_after_3_s(mut recorder: Recorder) -> PathBuf {
        caller_silence(&mut recorder, 0, 3_000);
        recorder.path().to_path_buf()
    }

    #[test]
    fn dropping_without_finish_leaves_a_complete_valid_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (left, right) = read_channels(&dropped_after_3_s(new_recorder(&dir)));
        assert_eq!(left.len(), 24_000);
        assert_eq!(right.len(), 24_000);
    }

    #[test]
    fn a_process_dying_mid_call_leaves_a_playable_file_up_to_the_last_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut recorder = new_recorder(&dir);
        let path = recorder.path().to_path_buf();
        caller_silence(&mut recorder, 0, 3_300);
        // No destructor runs, as when the process is killed.
        std::mem::forget(recorder);
        let (left, _) = read_channels(&path);
        // Checkpoints every second of written audio; 500 ms is held back in memory.
        assert_eq!(left.len(), 16_000);
    }

    #[test]
    fn the_pending_agent_queue_is_capped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = RecorderLimits {
            max_pending_agent_ms: 1_000,
            ..RecorderLimits::default()
        };
        let mut recorder =
            Recorder::create_with_limits(dir.path(), "capped", RecordingFormat::Wav, limits)
                .expect("create");
        let result = recorder.agent_audio_queued(&[LOUD; 24_000]);
        assert!(matches!(
            result,
            Err(AudioError::AgentQueueFull {
                dropped_samples: 16_000
            })
        ));
        assert_eq!(recorder.pending_agent_samples(), 8_000);
        assert_eq!(recorder.dropped_agent_samples(), 16_000);
        // The queue drains as the caller timeline passes it, making room again.
        caller_silence(&mut recorder, 0, 1_500);
        assert!(recorder.pending_agent_samples() <= 8 * 500);
        recorder
            .agent_audio_queued(&[LOUD; 4_000])
            .expect("room again");
    }

    #[test]
    fn a_timestamp_jump_is_recorded_as_a_bounded_gap_and_the_timeline_follows_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = RecorderLimits {
            max_gap_ms: 1_000,
            ..RecorderLimits::default()
        };
        let mut recorder =
            Recorder::create_with_limits(dir.path(), "jumpy", RecordingFormat::Wav, limits)
                .expect("create");
        caller_silence(&mut recorder, 0, 100);
        recorder
            .caller_audio(3_600_000, &[LOUD; FRAME])
            .expect("jumped frame");
        recorder
            .agent_audio_queued(&[LOUD; FRAME])
            .expect("agent audio");
        recorder
            .caller_audio(3_600_020, &[0x00; FRAME])
            .expect("next frame");
        recorder.agent_cleared(3_600_030); // keeps the first 10 ms of the agent burst
        caller_silence(&mut recorder, 3_600_040, 3_600_100);
        let (left, right) = read_channels(&recorder.finish().expect("finish"));
        assert_eq!(left.len(), (100 + 1_000 + 100) * 8);
        assert_eq!(nonzero_range(&left), Some((8_800, 9_120)));
        assert_eq!(nonzero_range(&right), Some((8_960, 9_040)));
    }

    #[test]
    fn absurd_timestamps_hit_the_length_limit_instead_of_filling_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = RecorderLimits {
            max_duration_ms: 2_000,
            max_gap_ms: u64::MAX,
            ..RecorderLimits::default()
        };
        let mut recorder =
            Recorder::create_with_limits(dir.path(), "bounded", RecordingFormat::Wav, limits)
                .expect("create");
        caller_silence(&mut recorder, 0, 100);
        assert!(matches!(
            recorder.caller_audio(u64::MAX, &[LOUD; FRAME]),
            Err(AudioError::RecordingTooLong {
                limit_ms: 2_000,
                ..
            })
        ));
        assert!(matches!(
            recorder.caller_audio(1_990, &[LOUD; FRAME]),
            Err(AudioError::RecordingTooLong { .. })
        ));
        let (left, _) = read_channels(&recorder.finish().expect("finish"));
        assert_eq!(left.len(), 16_000);
    }

    mod opus {
        use super::*;
        use crate::audio::ogg_opus::{self, DecodedRecording};

        const CALL_ID: &str = "CA0123abc_opus-1";
        /// One 20 ms frame at 8 kHz: the tolerance the encoder's framing allows.
        const ONE_FRAME: usize = 160;

        fn new_opus_recorder(dir: &tempfile::TempDir) -> Recorder {
            Recorder::create(dir.path(), CALL_ID, RecordingFormat::Opus).expect("create recorder")
        }

        /// μ-law 1 kHz tone, `len` samples from sample `phase`.
        fn tone(phase: usize, len: usize) -> Vec<u8> {
            (phase..phase + len)
                .map(|n| {
                    let t = n as f64 / f64::from(RECORDING_RATE);
                    let sample = 12_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin();
                    g711::linear_to_ulaw(sample.round() as i16)
                })
                .collect()
        }

        /// Feeds 20 ms caller frames of the tone covering `[from_ms, to_ms)`.
        fn caller_tone(recorder: &mut Recorder, from_ms: u64, to_ms: u64) {
            for at in (from_ms..to_ms).step_by(20) {
                let phase = usize_from((at - from_ms) * SAMPLES_PER_MS);
                recorder
                    .caller_audio(at, &tone(phase, FRAME))
                    .expect("caller tone");
            }
        }

        fn energy(channel: &[i16], from_ms: usize, to_ms: usize) -> f64 {
            let to = (to_ms * 8).min(channel.len());
            channel[(from_ms * 8).min(to)..to]
                .iter()
                .map(|&s| f64::from(s).powi(2))
                .sum::<f64>()
                / (to_ms - from_ms).max(1) as f64
        }

        fn decoded(path: &Path) -> DecodedRecording {
            let recording = ogg_opus::read_file(path).expect("a decodable Ogg/Opus file");
            assert_eq!(recording.channels, 2);
            assert_eq!(recording.input_sample_rate, RECORDING_RATE);
            assert!(
                recording.pre_skip > 0,
                "pre-skip from the encoder's lookahead"
            );
            recording
        }

        #[test]
        fn caller_tone_is_left_only_and_the_length_follows_the_timeline() {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut recorder = new_opus_recorder(&dir);
            caller_silence(&mut recorder, 0, 500);
            caller_tone(&mut recorder, 500, 1_500);
            caller_silence(&mut recorder, 1_500, 2_020);
            let path = recorder.finish().expect("finish");
            assert_eq!(path, dir.path().join(format!("{CALL_ID}.opus")));

            let recording = decoded(&path);
            assert!(
                recording.complete,
                "a clean finish writes the end-of-stream page"
            );
            // End trimming makes it exact (the requirement is one frame).
            assert_eq!(recording.left.len(), 2_020 * 8);
            assert_eq!(recording.left.len(), recording.right.len());
            let left = energy(&recording.left, 600, 1_400);
            let right = energy(&recording.right, 600, 1_400);
            let left_before = energy(&recording.left, 0, 450);
            assert!(left > 1e6, "tone energy on the left: {left}");
            assert!(right * 100.0 < left, "right {right} vs left {left}");
            assert!(
                left_before * 100.0 < left,
                "silence before the tone: {left_before}"
            );
        }

        #[test]
        fn cleared_agent_audio_is_not_in_the_right_channel() {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut recorder = new_opus_recorder(&dir);
            caller_silence(&mut recorder, 0, 1_000);
            recorder
                .agent_audio_queued(&tone(0, 16_000))
                .expect("2 s of agent audio");
            caller_silence(&mut recorder, 1_000, 1_520);
            recorder.agent_cleared(1_500);
            caller_silence(&mut recorder, 1_520, 3_000);
            let recording = decoded(&recorder.finish().expect("finish"));
            let heard = energy(&recording.right, 1_050, 1_450);
            let cleared = energy(&recording.right, 1_560, 3_000);
            assert!(heard > 1e6, "agent audio before the clear: {heard}");
            assert!(
                cleared * 1_000.0 < heard,
                "agent audio after the clear: {cleared} vs {heard}"
            );
            assert!(energy(&recording.left, 1_050, 1_450) * 100.0 < heard);
        }

        #[test]
        fn dropping_without_finish_still_ends_the_stream() {
            let dir = tempfile::tempdir().expect("temp dir");
            let recording = decoded(&dropped_after_3_s(new_opus_recorder(&dir)));
            assert!(recording.complete);
            assert_eq!(recording.left.len(), 24_000);
        }

        #[test]
        fn a_process_dying_mid_call_leaves_a_decodable_prefix() {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut recorder = new_opus_recorder(&dir);
            let path = recorder.path().to_path_buf();
            caller_silence(&mut recorder, 0, 500);
            caller_tone(&mut recorder, 500, 3_300);
            // No destructor runs, as when the process is killed.
            std::mem::forget(recorder);
            let recording = decoded(&path);
            assert!(!recording.complete, "no end-of-stream page");
            // Checkpoints every second of written audio (500 ms is held back in memory): the
            // page ended at 2 s is on disk, less the encoder's lookahead.
            let len = recording.left.len();
            assert!(
                (16_000 - 2 * ONE_FRAME..=16_000).contains(&len),
                "{len} samples decodable"
            );
            assert!(energy(&recording.left, 600, 1_900) > 1e6);
        }

        #[test]
        fn an_empty_recording_is_a_valid_empty_stream() {
            let dir = tempfile::tempdir().expect("temp dir");
            let recording = decoded(&new_opus_recorder(&dir).finish().expect("finish"));
            assert!(recording.complete);
            assert!(recording.left.is_empty());
        }

        #[test]
        fn never_overwrites_an_existing_recording() {
            let dir = tempfile::tempdir().expect("temp dir");
            let first = new_opus_recorder(&dir).finish().expect("finish");
            assert!(matches!(
                Recorder::create(dir.path(), CALL_ID, RecordingFormat::Opus),
                Err(AudioError::Recording { .. })
            ));
            // The same call id in the other format is another file.
            assert!(Recorder::create(dir.path(), CALL_ID, RecordingFormat::Wav).is_ok());
            assert!(first.exists());
        }

        #[test]
        fn the_reader_refuses_files_that_are_not_ogg_opus() {
            let dir = tempfile::tempdir().expect("temp dir");
            let wav = new_recorder(&dir).finish().expect("finish");
            assert!(ogg_opus::read_file(&wav).is_err());
            let empty = dir.path().join("empty.opus");
            std::fs::write(&empty, b"").expect("write");
            assert!(ogg_opus::read_file(&empty).is_err());
        }

        #[test]
        fn formats_parse_from_their_names() {
            assert_eq!("wav".parse(), Ok(RecordingFormat::Wav));
            assert_eq!("opus".parse(), Ok(RecordingFormat::Opus));
            assert!("mp3".parse::<RecordingFormat>().is_err());
            assert_eq!(RecordingFormat::default(), RecordingFormat::Wav);
        }
    }
}

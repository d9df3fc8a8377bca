//! What a recording file writer is: the sink trait both formats implement (WAV in
//! [`super::recording`], Ogg/Opus in [`super::ogg_opus`]) and its error. Kept apart so neither
//! writer imports the other's module. It must not decide what is on the timeline.

/// Recorder sample rate: the telephony rate, so nothing is resampled for recording.
pub const RECORDING_RATE: u32 = 8_000;

/// What a recording file's writer reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("WAV writer: {0}")]
    Wav(#[from] hound::Error),
    #[error("Opus encoder: {0}")]
    Opus(#[from] audiopus::Error),
}

/// One file format's writer, fed the recorder's timeline in order.
pub(crate) trait RecordingSink: Send {
    /// Appends interleaved stereo samples (caller, agent) at 8 kHz.
    fn write(&mut self, interleaved: &[i16]) -> Result<(), SinkError>;
    /// Puts everything written so far on disk as a file that plays up to here.
    fn checkpoint(&mut self) -> Result<(), SinkError>;
    /// Writes the end of the file.
    fn finish(self: Box<Self>) -> Result<(), SinkError>;
}

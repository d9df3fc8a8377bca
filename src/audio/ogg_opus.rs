//! Ogg/Opus (RFC 7845) for call recordings: the [`OpusSink`] the recorder streams its stereo
//! 8 kHz timeline into, and [`read_file`], which decodes such a file back to PCM.
//!
//! Owns the container and codec details only: `OpusHead` (2 channels, input rate 8000, pre-skip
//! from the encoder's lookahead), `OpusTags`, 20 ms VOIP frames, granule positions in 48 kHz
//! units, a page ended at every checkpoint, the end-of-stream page with end trimming on a clean
//! finish. It must not decide what is on the timeline (that is [`super::recording`]) and must
//! not hold more than one 20 ms frame and one encoded packet in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};

use super::sink::{RECORDING_RATE, RecordingSink, SinkError};

/// Encoded bitrate: speech on two narrowband channels stays clear at this rate.
pub const OPUS_BITRATE: i32 = 24_000;
/// Samples per channel in one 20 ms frame at the recording rate.
const FRAME_SAMPLES: usize = RECORDING_RATE as usize / 50;
const CHANNELS: usize = 2;
/// Opus granule positions count 48 kHz samples whatever the input rate.
const GRANULE_PER_SAMPLE: u64 = 48_000 / RECORDING_RATE as u64;
/// Largest Opus packet (RFC 6716 allows up to 1275 bytes per frame).
const MAX_PACKET: usize = 1_275;
const VENDOR: &str = "callbridge";

/// Errors reading an Ogg/Opus recording back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid Ogg stream: {0}")]
    Ogg(#[from] ogg::OggReadError),
    #[error("not an Opus stream: {0}")]
    NotOpus(&'static str),
    #[error("cannot decode an Opus packet: {0}")]
    Decode(#[from] audiopus::Error),
}

/// Streams 8 kHz stereo PCM into an Ogg/Opus file.
///
/// The newest encoded packet is held back until the next one (or a checkpoint, or the end)
/// tells which page flag it carries; so a checkpoint ends the page with it, and the file on
/// disk then decodes up to that point even if nothing else is ever written.
pub struct OpusSink {
    pages: PacketWriter<'static, BufWriter<File>>,
    serial: u32,
    encoder: Encoder,
    /// Interleaved samples of the frame being filled.
    frame: [i16; FRAME_SAMPLES * CHANNELS],
    frame_len: usize,
    packet: Vec<u8>,
    /// The last encoded packet and its granule position, not yet handed to the Ogg writer.
    held: Option<(Vec<u8>, u64)>,
    frames_encoded: u64,
    /// Samples per channel the caller of [`RecordingSink::write`] supplied.
    samples_in: u64,
    /// Encoder delay in samples at the recording rate.
    lookahead: usize,
}

impl std::fmt::Debug for OpusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusSink")
            .field("frames_encoded", &self.frames_encoded)
            .field("samples_in", &self.samples_in)
            .finish_non_exhaustive()
    }
}

impl OpusSink {
    /// Writes the two header pages to `file` and returns the sink; the file is a valid, empty
    /// Ogg/Opus stream once this returns.
    pub fn new(file: File) -> Result<Self, SinkError> {
        let mut encoder = Encoder::new(SampleRate::Hz8000, Channels::Stereo, Application::Voip)?;
        encoder.set_bitrate(Bitrate::BitsPerSecond(OPUS_BITRATE))?;
        let lookahead = encoder.lookahead()? as usize;
        // libopus reports a few ms (52 samples at 8 kHz); the field is 16 bits of 48 kHz samples.
        let pre_skip = u16::try_from(lookahead as u64 * GRANULE_PER_SAMPLE).unwrap_or(u16::MAX);
        let mut pages = PacketWriter::new(BufWriter::new(file));
        let serial = rand::random::<u32>();
        // RFC 7845 §5: each header packet alone on its page, audio starting on a fresh page.
        pages.write_packet(opus_head(pre_skip), serial, PacketWriteEndInfo::EndPage, 0)?;
        pages.write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)?;
        pages.inner_mut().flush()?;
        Ok(Self {
            pages,
            serial,
            encoder,
            frame: [0; FRAME_SAMPLES * CHANNELS],
            frame_len: 0,
            packet: vec![0; MAX_PACKET],
            held: None,
            frames_encoded: 0,
            samples_in: 0,
            lookahead,
        })
    }

    fn push_samples(&mut self, mut interleaved: &[i16]) -> Result<(), SinkError> {
        while !interleaved.is_empty() {
            let take = (self.frame.len() - self.frame_len).min(interleaved.len());
            let (now, rest) = interleaved.split_at(take);
            self.frame[self.frame_len..self.frame_len + take].copy_from_slice(now);
            self.frame_len += take;
            interleaved = rest;
            if self.frame_len == self.frame.len() {
                self.encode_frame()?;
            }
        }
        Ok(())
    }

    fn encode_frame(&mut self) -> Result<(), SinkError> {
        let len = self.encoder.encode(&self.frame, &mut self.packet)?;
        self.frame_len = 0;
        self.frames_encoded += 1;
        let granule = self.frames_encoded * FRAME_SAMPLES as u64 * GRANULE_PER_SAMPLE;
        if let Some((packet, granule)) = self.held.replace((self.packet[..len].to_vec(), granule)) {
            self.pages.write_packet(
                packet,
                self.serial,
                PacketWriteEndInfo::NormalPacket,
                granule,
            )?;
        }
        Ok(())
    }
}

impl RecordingSink for OpusSink {
    fn write(&mut self, interleaved: &[i16]) -> Result<(), SinkError> {
        self.samples_in += (interleaved.len() / CHANNELS) as u64;
        self.push_samples(interleaved)
    }

    fn checkpoint(&mut self) -> Result<(), SinkError> {
        if let Some((packet, granule)) = self.held.take() {
            self.pages
                .write_packet(packet, self.serial, PacketWriteEndInfo::EndPage, granule)?;
        }
        self.pages.inner_mut().flush()?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), SinkError> {
        // Feed the encoder's lookahead in silence so the last real samples come out, then pad
        // the frame; end trimming (the final granule) drops the padding again.
        let tail = [0i16; FRAME_SAMPLES * CHANNELS];
        self.push_samples(&tail[..self.lookahead * CHANNELS])?;
        if self.frame_len > 0 {
            self.frame[self.frame_len..].fill(0);
            self.encode_frame()?;
        }
        let end_granule = (self.lookahead as u64 + self.samples_in) * GRANULE_PER_SAMPLE;
        if let Some((packet, _)) = self.held.take() {
            self.pages.write_packet(
                packet,
                self.serial,
                PacketWriteEndInfo::EndStream,
                end_granule,
            )?;
        }
        self.pages.into_inner().flush()?;
        Ok(())
    }
}

fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(CHANNELS as u8);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&RECORDING_RATE.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family 0: mono or stereo, no mapping table
    head
}

fn opus_tags() -> Vec<u8> {
    let mut tags = Vec::with_capacity(16 + VENDOR.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    tags.extend_from_slice(VENDOR.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
    tags
}

/// An Ogg/Opus file decoded to 8 kHz PCM, pre-skip and end trimming applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecording {
    /// Channel count from `OpusHead`.
    pub channels: u8,
    /// The original input rate from `OpusHead`.
    pub input_sample_rate: u32,
    /// Pre-skip from `OpusHead`, in 48 kHz samples.
    pub pre_skip: u16,
    /// Left (caller) channel, 8 kHz.
    pub left: Vec<i16>,
    /// Right (agent) channel, 8 kHz (a copy of the left one for a mono stream).
    pub right: Vec<i16>,
    /// Whether the stream ended with its end-of-stream page (a clean finish); `false` for a
    /// file cut short, which decodes up to its last complete page.
    pub complete: bool,
}

/// Decodes an Ogg/Opus file (the first logical stream) to 8 kHz stereo PCM.
pub fn read_file(path: &Path) -> Result<DecodedRecording, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = PacketReader::new(BufReader::new(file));
    let head = next_packet(&mut reader)?.ok_or(ReadError::NotOpus("empty file"))?;
    let (channels, pre_skip, input_sample_rate) = parse_head(&head.data)?;
    let serial = head.stream_serial();
    let tags = next_packet(&mut reader)?.ok_or(ReadError::NotOpus("no OpusTags packet"))?;
    if !tags.data.starts_with(b"OpusTags") {
        return Err(ReadError::NotOpus("second packet is not OpusTags"));
    }

    let mut decoder = Decoder::new(SampleRate::Hz8000, Channels::Stereo)?;
    // 120 ms, the longest Opus packet, of stereo at 8 kHz.
    let mut pcm = vec![0i16; 960 * CHANNELS];
    let mut interleaved = Vec::new();
    let mut complete = false;
    let mut end_granule = None;
    while let Some(packet) = next_packet(&mut reader)? {
        if packet.stream_serial() != serial {
            continue;
        }
        let frames = decoder.decode(Some(&packet.data), &mut pcm[..], false)?;
        interleaved.extend_from_slice(&pcm[..frames * CHANNELS]);
        if packet.last_in_stream() {
            complete = true;
            end_granule = Some(packet.absgp_page());
            break;
        }
    }
    let skip = usize::from(pre_skip) / GRANULE_PER_SAMPLE as usize;
    let mut frames = interleaved.len() / CHANNELS;
    if let Some(granule) = end_granule {
        let trimmed = granule.saturating_sub(u64::from(pre_skip)) / GRANULE_PER_SAMPLE;
        frames = frames.min(skip + usize::try_from(trimmed).unwrap_or(usize::MAX));
    }
    let samples = interleaved
        .get(skip * CHANNELS..frames * CHANNELS)
        .unwrap_or_default();
    Ok(DecodedRecording {
        channels,
        input_sample_rate,
        pre_skip,
        left: samples.iter().step_by(CHANNELS).copied().collect(),
        right: samples.iter().skip(1).step_by(CHANNELS).copied().collect(),
        complete,
    })
}

/// The next packet; a file that ends in the middle of a page (a process killed mid-write) ends
/// the stream there instead of failing.
fn next_packet(
    reader: &mut PacketReader<BufReader<File>>,
) -> Result<Option<ogg::Packet>, ReadError> {
    match reader.read_packet() {
        Ok(packet) => Ok(packet),
        Err(ogg::OggReadError::ReadError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_head(head: &[u8]) -> Result<(u8, u16, u32), ReadError> {
    if head.len() < 19 || !head.starts_with(b"OpusHead") {
        return Err(ReadError::NotOpus("first packet is not OpusHead"));
    }
    if head[8] >> 4 != 0 {
        return Err(ReadError::NotOpus("unsupported OpusHead version"));
    }
    let channels = head[9];
    if !(1..=2).contains(&channels) || head[18] != 0 {
        return Err(ReadError::NotOpus(
            "only mono and stereo (mapping family 0) are supported",
        ));
    }
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    let input_sample_rate = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    Ok((channels, pre_skip, input_sample_rate))
}

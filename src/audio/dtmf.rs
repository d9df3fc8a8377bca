//! DTMF out: the keypad tones an agent "presses" to navigate a phone menu, generated in-band as
//! μ-law 8 kHz audio for the media stream (ITU-T Q.23 frequency pairs).
//!
//! Owns digit validation and tone synthesis only: each key is a [`TONE_MS`] dual tone followed by a
//! [`GAP_MS`] silence (Q.24 asks for at least 40 ms of each; 100/100 ms is what IVRs accept
//! reliably), and `w` is a [`PAUSE_MS`] wait, as in Twilio's `sendDigits`. Both lengths are whole
//! 20 ms frames, so every tone starts on a frame boundary. It must not decide when tones are sent or
//! touch the stream: the call session queues what this returns like any other agent audio (a
//! redirect would tear the media stream down).

use super::g711::linear_to_ulaw;

/// Length of one key's tone.
pub const TONE_MS: usize = 100;
/// Silence after each key's tone.
pub const GAP_MS: usize = 100;
/// Length of the `w` wait.
pub const PAUSE_MS: usize = 500;
/// Most keys (waits included) one request may send.
pub const MAX_DIGITS: usize = 32;

const RATE: f32 = 8_000.0;
const SAMPLES_PER_MS: usize = 8;
/// μ-law silence.
const SILENCE: u8 = 0xFF;
/// Peak amplitude of each component (16-bit linear): about -10 dBm0 for the low group, with the
/// high group 2 dB louder (the usual positive twist that survives line roll-off).
const LOW_AMPLITUDE: f32 = 7_000.0;
const HIGH_AMPLITUDE: f32 = 8_800.0;

/// The low-group (row) frequencies, Hz.
pub const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// The high-group (column) frequencies, Hz.
pub const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad, by row and column.
pub const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Why a digit string cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("no digits to send")]
    Empty,
    #[error("{0:?} is not a keypad key (use 0-9, *, #, A-D, or w for a half-second wait)")]
    InvalidKey(char),
    #[error("{0} keys is more than the {MAX_DIGITS} one request may send")]
    TooLong(usize),
}

/// The (row, column) frequencies of `key`, `None` for anything that is not a key.
pub fn frequencies(key: char) -> Option<(f32, f32)> {
    let key = key.to_ascii_uppercase();
    KEYPAD.iter().enumerate().find_map(|(row, keys)| {
        keys.iter()
            .position(|k| *k == key)
            .map(|column| (ROWS[row], COLUMNS[column]))
    })
}

/// The keys of `digits` (whitespace ignored, letters upper-cased), checked.
pub fn parse(digits: &str) -> Result<String, DtmfError> {
    let mut keys = String::with_capacity(digits.len());
    for c in digits.chars().filter(|c| !c.is_whitespace()) {
        let c = if c.eq_ignore_ascii_case(&'w') {
            'w'
        } else {
            c.to_ascii_uppercase()
        };
        if c != 'w' && frequencies(c).is_none() {
            return Err(DtmfError::InvalidKey(c));
        }
        keys.push(c);
    }
    let count = keys.chars().count();
    if count == 0 {
        return Err(DtmfError::Empty);
    }
    if count > MAX_DIGITS {
        return Err(DtmfError::TooLong(count));
    }
    Ok(keys)
}

/// Milliseconds of audio [`tones_ulaw`] produces for already parsed `keys`.
pub fn duration_ms(keys: &str) -> usize {
    keys.chars()
        .map(|c| if c == 'w' { PAUSE_MS } else { TONE_MS + GAP_MS })
        .sum()
}

/// Appends the μ-law audio of `digits` to `out`: per key a tone then a gap, per `w` a wait.
pub fn tones_ulaw(digits: &str, out: &mut Vec<u8>) -> Result<(), DtmfError> {
    let keys = parse(digits)?;
    out.reserve(duration_ms(&keys) * SAMPLES_PER_MS);
    for key in keys.chars() {
        let Some((low, high)) = frequencies(key) else {
            out.resize(out.len() + PAUSE_MS * SAMPLES_PER_MS, SILENCE);
            continue;
        };
        let (w_low, w_high) = (
            std::f32::consts::TAU * low / RATE,
            std::f32::consts::TAU * high / RATE,
        );
        for n in 0..TONE_MS * SAMPLES_PER_MS {
            let t = n as f32;
            let sample = LOW_AMPLITUDE * (w_low * t).sin() + HIGH_AMPLITUDE * (w_high * t).sin();
            out.push(linear_to_ulaw(sample as i16));
        }
        out.resize(out.len() + GAP_MS * SAMPLES_PER_MS, SILENCE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::ulaw_to_linear;

    fn power(samples: &[f32], freq: f32) -> f32 {
        let coeff = 2.0 * (std::f32::consts::TAU * freq / RATE).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for x in samples {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    }

    fn detect(ulaw: &[u8]) -> Option<char> {
        let samples: Vec<f32> = ulaw.iter().map(|b| f32::from(ulaw_to_linear(*b))).collect();
        let best = |freqs: &[f32; 4]| {
            let powers: Vec<f32> = freqs.iter().map(|f| power(&samples, *f)).collect();
            let (i, p) = powers
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            let others = powers
                .iter()
                .filter(|q| *q != p)
                .fold(0.0f32, |a, q| a.max(*q));
            (p > &1e9 && *p > 10.0 * others).then_some(i)
        };
        Some(KEYPAD[best(&ROWS)?][best(&COLUMNS)?])
    }

    #[test]
    fn every_key_decodes_back_with_exact_lengths() {
        let mut out = Vec::new();
        tones_ulaw("123A456B789C*0#D", &mut out).unwrap();
        assert_eq!(out.len(), 16 * (TONE_MS + GAP_MS) * SAMPLES_PER_MS);
        let per_key = (TONE_MS + GAP_MS) * SAMPLES_PER_MS;
        let decoded: String = out
            .chunks(per_key)
            .map(|chunk| {
                let (tone, gap) = chunk.split_at(TONE_MS * SAMPLES_PER_MS);
                assert!(gap.iter().all(|b| *b == SILENCE));
                detect(tone).expect("a key")
            })
            .collect();
        assert_eq!(decoded, "123A456B789C*0#D");
    }

    #[test]
    fn waits_are_silence_and_whitespace_is_ignored() {
        let mut out = Vec::new();
        tones_ulaw(" 1 w 2 ", &mut out).unwrap();
        assert_eq!(
            out.len(),
            (2 * (TONE_MS + GAP_MS) + PAUSE_MS) * SAMPLES_PER_MS
        );
        assert_eq!(duration_ms("1w2"), 900);
        let wait = &out[(TONE_MS + GAP_MS) * SAMPLES_PER_MS..][..PAUSE_MS * SAMPLES_PER_MS];
        assert!(wait.iter().all(|b| *b == SILENCE));
    }

    #[test]
    fn bad_input_gets_a_precise_error() {
        let mut out = Vec::new();
        assert_eq!(tones_ulaw("12x", &mut out), Err(DtmfError::InvalidKey('X')));
        assert_eq!(tones_ulaw("   ", &mut out), Err(DtmfError::Empty));
        assert_eq!(
            tones_ulaw(&"1".repeat(33), &mut out),
            Err(DtmfError::TooLong(33))
        );
        assert!(out.is_empty(), "nothing appended on error");
        assert_eq!(parse("1w#d").unwrap(), "1w#D");
    }

    #[test]
    fn tones_never_clip() {
        let mut out = Vec::new();
        tones_ulaw("D", &mut out).unwrap();
        let peak = out.iter().map(|b| ulaw_to_linear(*b).unsigned_abs()).max();
        assert!(peak.unwrap() < 20_000);
    }
}

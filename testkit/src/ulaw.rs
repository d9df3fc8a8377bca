//! Just enough G.711 μ-law for the fakes: a tone to speak with and a loudness measure for the VAD.
//! (The product's codec lives in the main crate; this is a separate, test-side implementation.)

/// Decodes one μ-law byte to linear PCM.
pub fn decode(code: u8) -> i16 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = (code >> 4) & 0x07;
    let mantissa = code & 0x0F;
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes linear PCM to μ-law.
pub fn encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Mean absolute amplitude of a μ-law buffer.
pub fn mean_abs(bytes: &[u8]) -> i64 {
    if bytes.is_empty() {
        return 0;
    }
    bytes.iter().map(|&b| (decode(b) as i64).abs()).sum::<i64>() / bytes.len() as i64
}

/// 20 ms of a 440 Hz tone at a loud, speech-like level, starting at sample `phase`.
pub fn tone_frame(phase: u64) -> [u8; 160] {
    let mut frame = [0xFF; 160];
    for (i, b) in frame.iter_mut().enumerate() {
        let t = (phase + i as u64) as f64 / 8000.0;
        *b = encode((f64::sin(2.0 * std::f64::consts::PI * 440.0 * t) * 12000.0) as i16);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_tone() {
        assert_eq!(decode(0xFF), 0);
        assert_eq!(encode(0), 0xFF);
        assert!(mean_abs(&[0xFF; 160]) < 10);
        assert!(mean_abs(&tone_frame(0)) > 5000);
    }
}

//! G.711 μ-law and A-law codecs, bit-exact with ITU-T G.711 and its reference
//! implementation (ITU-T G.191 STL `g711.c`).
//!
//! Owns only sample-by-sample code conversion. It must not allocate, buffer, resample or
//! know anything about frames or calls: callers pass slices and get slices filled.
//!
//! Decoding goes through 256-entry tables built at compile time. Encoding uses the
//! standard segment search. Like the ITU reference, negative inputs are taken in ones'
//! complement (`!x`), which makes every decoded value encode back to its own code and
//! lets `i16::MIN` encode without overflow.

/// μ-law code of digital silence (positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;

/// A-law code of the smallest positive level, the usual A-law idle pattern.
pub const ALAW_SILENCE: u8 = 0xD5;

/// Bias added to the magnitude before the μ-law segment search (33 in the 14-bit domain).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law represents before clipping (8159 in the 14-bit domain).
const ULAW_CLIP: i32 = 32635;

const fn ulaw_code_to_linear(code: u8) -> i16 {
    // Codes are transmitted inverted; after inversion: sign(1) segment(3) mantissa(4).
    let inverted = !code;
    let segment = ((inverted >> 4) & 0x07) as i32;
    let mantissa = (inverted & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if inverted & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_code_to_linear(code: u8) -> i16 {
    // Even bits are inverted on the line (XOR 0x55); then sign(1) segment(3) mantissa(4).
    let toggled = code ^ 0x55;
    let segment = ((toggled >> 4) & 0x07) as i32;
    let mut mantissa = (toggled & 0x0F) as i32;
    if segment > 0 {
        mantissa += 16;
    }
    let mut magnitude = (mantissa << 4) + 8;
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    // A-law's sign bit set means positive.
    if toggled & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        table[code] = ulaw_code_to_linear(code as u8);
        code += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        table[code] = alaw_code_to_linear(code as u8);
        code += 1;
    }
    table
}

/// μ-law code → 16-bit linear PCM (ITU-T G.711 Table 2a values, scaled by 4).
static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
/// A-law code → 16-bit linear PCM (ITU-T G.711 Table 1a values, scaled by 16).
static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

/// Decodes one μ-law code to 16-bit linear PCM. Both zero codes (0xFF and 0x7F) give 0.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(code)]
}

/// Decodes one A-law code to 16-bit linear PCM.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(code)]
}

/// Encodes one 16-bit linear PCM sample to μ-law. Magnitudes above 32635 clip to the
/// outermost code; 0 encodes to 0xFF (positive zero).
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample < 0 {
        (0x80u8, i32::from(!sample))
    } else {
        (0x00u8, i32::from(sample))
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // `biased` lies in 132..=32767, so its top set bit is bit 7..=14: segment 0..=7.
    let top_bit = 31 - biased.leading_zeros() as i32;
    let segment = top_bit - 7;
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    !(sign | ((segment as u8) << 4) | mantissa as u8)
}

/// Encodes one 16-bit linear PCM sample to A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (sign, magnitude) = if sample < 0 {
        (0x00u8, i32::from(!sample) >> 4)
    } else {
        (0x80u8, i32::from(sample) >> 4)
    };
    // `magnitude` is 12 bits (0..=2047). Segments 0 and 1 both have unit steps.
    let code = if magnitude < 16 {
        magnitude
    } else {
        let top_bit = 31 - magnitude.leading_zeros() as i32; // 4..=10
        let segment = top_bit - 3; // 1..=7
        let mantissa = (magnitude >> (segment - 1)) & 0x0F;
        (segment << 4) | mantissa
    };
    (sign | code as u8) ^ 0x55
}

/// Decodes μ-law bytes into `dst`. Converts `min(src.len(), dst.len())` samples and
/// returns that count.
pub fn decode_ulaw_into(src: &[u8], dst: &mut [i16]) -> usize {
    let count = src.len().min(dst.len());
    for (out, &code) in dst[..count].iter_mut().zip(&src[..count]) {
        *out = ULAW_TO_LINEAR[usize::from(code)];
    }
    count
}

/// Encodes PCM samples into μ-law bytes in `dst`. Converts `min(src.len(), dst.len())`
/// samples and returns that count.
pub fn encode_ulaw_into(src: &[i16], dst: &mut [u8]) -> usize {
    let count = src.len().min(dst.len());
    for (out, &sample) in dst[..count].iter_mut().zip(&src[..count]) {
        *out = linear_to_ulaw(sample);
    }
    count
}

/// Decodes A-law bytes into `dst`. Converts `min(src.len(), dst.len())` samples and
/// returns that count.
pub fn decode_alaw_into(src: &[u8], dst: &mut [i16]) -> usize {
    let count = src.len().min(dst.len());
    for (out, &code) in dst[..count].iter_mut().zip(&src[..count]) {
        *out = ALAW_TO_LINEAR[usize::from(code)];
    }
    count
}

/// Encodes PCM samples into A-law bytes in `dst`. Converts `min(src.len(), dst.len())`
/// samples and returns that count.
pub fn encode_alaw_into(src: &[i16], dst: &mut [u8]) -> usize {
    let count = src.len().min(dst.len());
    for (out, &sample) in dst[..count].iter_mut().zip(&src[..count]) {
        *out = linear_to_alaw(sample);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantisation step (in 16-bit units) of the μ-law segment that `code` belongs to.
    fn ulaw_step(code: u8) -> i32 {
        8 << ((!code >> 4) & 0x07)
    }

    /// Quantisation step (in 16-bit units) of the A-law segment that `code` belongs to.
    fn alaw_step(code: u8) -> i32 {
        let segment = ((code ^ 0x55) >> 4) & 0x07;
        if segment <= 1 {
            16
        } else {
            16 << (segment - 1)
        }
    }

    #[test]
    fn ulaw_known_values_from_itu_table() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        // First code of segment 1: 33 in the 14-bit table, ×4.
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(ulaw_to_linear(0xF0), 120);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_known_values_from_itu_table() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xD4), 24);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_ulaw_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                expected,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn every_alaw_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn ulaw_decode_table_is_odd_symmetric_and_monotonic() {
        for code in 0..0x80u8 {
            assert_eq!(ulaw_to_linear(code), -ulaw_to_linear(code | 0x80));
        }
        // Within each sign half, larger codes mean smaller magnitudes.
        for code in 0x80..0xFFu8 {
            assert!(ulaw_to_linear(code) > ulaw_to_linear(code + 1));
        }
    }

    #[test]
    fn ulaw_round_trip_error_is_within_half_a_step_except_when_clipping() {
        for sample in i16::MIN..=i16::MAX {
            let code = linear_to_ulaw(sample);
            let decoded = i32::from(ulaw_to_linear(code));
            let error = (i32::from(sample) - decoded).abs();
            let clipping = decoded.abs() == 32124 && i32::from(sample).abs() > 32124;
            let bound = if clipping {
                ulaw_step(code)
            } else {
                ulaw_step(code) / 2
            };
            assert!(
                error <= bound,
                "sample {sample} -> {code:#04x} -> {decoded}, error {error} > {bound}"
            );
        }
    }

    #[test]
    fn alaw_round_trip_error_is_within_half_a_step() {
        for sample in i16::MIN..=i16::MAX {
            let code = linear_to_alaw(sample);
            let decoded = i32::from(alaw_to_linear(code));
            let error = (i32::from(sample) - decoded).abs();
            let bound = alaw_step(code) / 2;
            assert!(
                error <= bound,
                "sample {sample} -> {code:#04x} -> {decoded}, error {error} > {bound}"
            );
        }
    }

    /// μ-law encoding as ITU-T G.191 describes it: 14-bit magnitude (ones' complement
    /// for negatives), bias 33, segment found by shifting. Written independently of the
    /// production encoder to cross-check it.
    fn g191_ulaw(sample: i16) -> u8 {
        let x = i32::from(sample);
        let magnitude = if x < 0 { (!x) >> 2 } else { x >> 2 };
        let biased = (magnitude + 33).min(0x1FFF);
        let mut segment_number = 1;
        let mut rest = biased >> 6;
        while rest != 0 {
            segment_number += 1;
            rest >>= 1;
        }
        let high_nibble = 8 - segment_number;
        let low_nibble = 0x0F - ((biased >> segment_number) & 0x0F);
        let code = (high_nibble << 4) | low_nibble;
        (if x >= 0 { code | 0x80 } else { code }) as u8
    }

    /// A-law encoding as ITU-T G.191 describes it: 12-bit magnitude, exponent found by
    /// halving until the mantissa fits, even bits toggled.
    fn g191_alaw(sample: i16) -> u8 {
        let x = i32::from(sample);
        let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
        if ix > 15 {
            let mut exponent = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                exponent += 1;
            }
            ix = ix - 16 + (exponent << 4);
        }
        if x >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    }

    #[test]
    fn encoders_match_the_g191_reference_algorithm_for_every_sample() {
        for sample in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(sample), g191_ulaw(sample), "μ-law {sample}");
            assert_eq!(linear_to_alaw(sample), g191_alaw(sample), "A-law {sample}");
        }
    }

    #[test]
    fn slice_apis_match_scalar_functions_and_report_counts() {
        let codes: Vec<u8> = (0..=255u8).collect();
        let mut pcm = [0i16; 256];
        assert_eq!(decode_ulaw_into(&codes, &mut pcm), 256);
        assert!(
            codes
                .iter()
                .zip(&pcm)
                .all(|(&c, &s)| ulaw_to_linear(c) == s)
        );
        let mut back = [0u8; 256];
        assert_eq!(encode_ulaw_into(&pcm, &mut back), 256);
        assert!(pcm.iter().zip(&back).all(|(&s, &c)| linear_to_ulaw(s) == c));

        assert_eq!(decode_alaw_into(&codes, &mut pcm), 256);
        assert!(
            codes
                .iter()
                .zip(&pcm)
                .all(|(&c, &s)| alaw_to_linear(c) == s)
        );
        assert_eq!(encode_alaw_into(&pcm, &mut back), 256);
        assert_eq!(&back[..], &codes[..]);

        // A short destination limits the count instead of panicking.
        let mut short = [0i16; 10];
        assert_eq!(decode_ulaw_into(&codes, &mut short), 10);
        let mut short_codes = [0u8; 3];
        assert_eq!(encode_alaw_into(&pcm, &mut short_codes), 3);
    }

    #[test]
    fn decode_tables_match_the_independent_reference_fixture() {
        // fixtures/audio/g711_decode.txt was produced by CPython's `audioop` (a separate
        // implementation of the same ITU tables); see the comment at the top of that file.
        let text = include_str!("../../fixtures/audio/g711_decode.txt");
        let mut checked = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "bad fixture line {line:?}");
            let code = u8::from_str_radix(fields[0], 16).expect("fixture code is hex");
            let ulaw: i16 = fields[1].parse().expect("fixture μ-law value");
            let alaw: i16 = fields[2].parse().expect("fixture A-law value");
            assert_eq!(ulaw_to_linear(code), ulaw, "μ-law {code:#04x}");
            assert_eq!(alaw_to_linear(code), alaw, "A-law {code:#04x}");
            checked += 1;
        }
        assert_eq!(checked, 256);
    }
}

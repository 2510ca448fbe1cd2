//! Contribution hashes, and small integers carried exactly through a sum.
//!
//! A reduction sums floating-point values to within its tolerance. A value
//! that only one rank contributes, while all the others contribute zero, is
//! an integer in the sum once it is rounded. That holds as long as the
//! reduction's error stays below one half, which it does by many orders of
//! magnitude for values up to 2¹⁶. So a 128-bit hash travels as eight
//! 16-bit chunks, each stored plus one so that an absent hash (all zeros)
//! is told apart from a present one. An `f64` travels the same way, as
//! the four 16-bit chunks of its bits, when one rank publishes a vector
//! for every rank to adopt bit for bit.

use sha2::{Digest, Sha256};

use crate::error::{LinalgError, Result};

/// 16-bit chunks per hash (128 bits).
pub(super) const CHUNKS: usize = 8;

/// `SHA-256(partition ‖ contribution bytes ‖ holder ‖ operation)`, first
/// 128 bits, as 16-bit chunks.
pub(super) fn hash_u16(
    partition: usize,
    contribution: &[f64],
    holder: usize,
    op: u64,
) -> [u16; CHUNKS] {
    let mut h = Sha256::new();
    h.update((partition as u64).to_le_bytes());
    for x in contribution {
        h.update(x.to_le_bytes());
    }
    h.update((holder as u64).to_le_bytes());
    h.update(op.to_le_bytes());
    let digest = h.finalize();
    let mut out = [0u16; CHUNKS];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u16::from_le_bytes([digest[2 * i], digest[2 * i + 1]]);
    }
    out
}

/// The hash as values to sum: each chunk plus one.
pub(super) fn hash_chunks(
    partition: usize,
    contribution: &[f64],
    holder: usize,
    op: u64,
) -> [f64; CHUNKS] {
    hash_u16(partition, contribution, holder, op).map(|c| f64::from(c) + 1.0)
}

/// Reads a summed hash: `None` if nobody published one.
pub(super) fn decode_hash(values: &[f64]) -> Result<Option<[u16; CHUNKS]>> {
    let mut out = [0u16; CHUNKS];
    let mut zeros = 0;
    for (o, &v) in out.iter_mut().zip(values) {
        let n = integer(v, 65536.0)?;
        if n == 0 {
            zeros += 1;
        } else {
            *o = (n - 1) as u16;
        }
    }
    match zeros {
        0 => Ok(Some(out)),
        z if z == CHUNKS => Ok(None),
        _ => Err(imprecise(
            values
                .iter()
                .copied()
                .find(|v| v.round() == 0.0)
                .unwrap_or(0.0),
        )),
    }
}

/// `values`' bits as values to sum: four 16-bit chunks each, low first.
pub(super) fn bits_chunks(values: &[f64]) -> Vec<f64> {
    let words: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    word_chunks(&words)
}

/// Words as values to sum: four 16-bit chunks each, low first.
pub(super) fn word_chunks(words: &[u64]) -> Vec<f64> {
    words
        .iter()
        .flat_map(|&w| (0..4).map(move |i| f64::from((w >> (16 * i)) as u16)))
        .collect()
}

/// Reads summed [`bits_chunks`] back into the values, bit for bit.
pub(super) fn decode_bits(sums: &[f64]) -> Result<Vec<f64>> {
    Ok(decode_words(sums)?
        .into_iter()
        .map(f64::from_bits)
        .collect())
}

/// Reads summed [`word_chunks`] back into the words.
pub(super) fn decode_words(sums: &[f64]) -> Result<Vec<u64>> {
    sums.chunks(4)
        .map(|c| {
            c.iter().enumerate().try_fold(0u64, |bits, (i, &v)| {
                Ok(bits | (u64::from(integer(v, 65535.0)?) << (16 * i)))
            })
        })
        .collect()
}

/// Reads a summed count (a value only one rank contributed).
pub(super) fn decode_count(value: f64) -> Result<usize> {
    Ok(integer(value, f64::from(u32::MAX))? as usize)
}

/// Reads a summed 0/1 flag.
pub(super) fn decode_flag(value: f64) -> Result<bool> {
    Ok(integer(value, 1.0)? == 1)
}

fn integer(value: f64, max: f64) -> Result<u32> {
    let n = value.round();
    if !((value - n).abs() <= 0.25 && (0.0..=max).contains(&n)) {
        return Err(imprecise(value));
    }
    Ok(n as u32)
}

fn imprecise(value: f64) -> LinalgError {
    LinalgError::InvalidArgument {
        ranks: Vec::new(),
        detail: format!(
            "a replicated reduction carried {value} where a small integer was due; \
             the consensus tolerance is too coarse for the data's magnitude (use a smaller tol)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_every_input_and_survive_a_noisy_sum() {
        let c = [1.0, 2.5, -3.0];
        let h = hash_u16(3, &c, 1, 7);
        assert_ne!(h, hash_u16(4, &c, 1, 7));
        assert_ne!(h, hash_u16(3, &[1.0, 2.5, -3.0 + 1e-15], 1, 7));
        assert_ne!(h, hash_u16(3, &c, 2, 7));
        assert_ne!(h, hash_u16(3, &c, 1, 8));
        let noisy: Vec<f64> = hash_chunks(3, &c, 1, 7)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 1e-7 } else { -1e-7 })
            .collect();
        assert_eq!(decode_hash(&noisy).unwrap(), Some(h));
        assert_eq!(decode_hash(&[0.0; CHUNKS]).unwrap(), None);
        assert!(decode_hash(&[0.4; CHUNKS]).is_err());
        let mut partial = noisy.clone();
        partial[2] = 0.0;
        assert!(decode_hash(&partial).is_err());
    }

    #[test]
    fn published_values_come_back_bit_for_bit_from_a_noisy_sum() {
        let values = [0.1 + 0.2, -0.0, f64::MIN_POSITIVE, -1.5e300, 7.0];
        let noisy: Vec<f64> = bits_chunks(&values)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 3 == 0 { 1e-6 } else { -1e-6 })
            .collect();
        let back = decode_bits(&noisy).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        assert!(decode_bits(&[0.5, 0.0, 0.0, 0.0]).is_err());
        assert!(decode_bits(&[65536.0, 0.0, 0.0, 0.0]).is_err());
    }

    #[test]
    fn flags_are_read_exactly_or_not_at_all() {
        assert!(decode_flag(1.0 - 1e-9).unwrap());
        assert!(!decode_flag(1e-9).unwrap());
        assert!(decode_flag(0.5).is_err());
        assert!(decode_flag(2.0).is_err());
        assert!(decode_flag(f64::NAN).is_err());
    }
}

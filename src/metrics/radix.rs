//! LSD radix sort by a 32-bit key, for the exact metrics' pixel keys (tens to hundreds of
//! millions of entries, where it is several times faster than a comparison sort).
//!
//! Input: a `Vec<T>` and a key function; output: the same vector sorted ascending by key
//! (stable). Keys are taken relative to their minimum, and the bits spanned are split into
//! passes of at most 10 bits (small bucket counts keep the scatter cache-friendly: 3 passes of
//! 8 bits for a 24-bit span); a pass whose digit is the same for every entry is skipped.
//! Extra memory: one buffer of `len * size_of::<T>()` bytes during the sort.

use rayon::prelude::*;

/// Widest digit, in bits.
const MAX_BITS: u32 = 10;
/// Below this length a comparison sort is faster than the histogram passes.
const SMALL: usize = 1 << 14;

/// Sorts `data` ascending by `key` (stable). One read computes every pass's histogram; each
/// pass then scatters sequentially (on a shared machine this beat a chunked parallel scatter,
/// which needs a histogram read per pass; callers sort independent arrays concurrently).
pub(crate) fn radix_sort_by_key<T, K>(data: &mut Vec<T>, key: K)
where
    T: Copy + Default + Send + Sync,
    K: Fn(&T) -> u32 + Sync,
{
    if data.len() < SMALL {
        data.sort_by_key(&key);
        return;
    }
    let (min, max) = data
        .par_iter()
        .map(|item| (key(item), key(item)))
        .reduce(|| (u32::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let span_bits = 32 - (max - min).leading_zeros();
    let passes = span_bits.div_ceil(MAX_BITS) as usize;
    if passes == 0 {
        return; // all keys equal
    }
    let bits = span_bits.div_ceil(passes as u32);
    let buckets = 1usize << bits;
    let mask = (buckets - 1) as u32;
    let counts = data
        .par_chunks(1 << 16)
        .fold(
            || vec![0usize; passes * buckets],
            |mut h, chunk| {
                for item in chunk {
                    let k = key(item) - min;
                    for pass in 0..passes {
                        h[pass * buckets + ((k >> (pass as u32 * bits)) & mask) as usize] += 1;
                    }
                }
                h
            },
        )
        .reduce(
            || vec![0usize; passes * buckets],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut buffer: Vec<T> = vec![T::default(); data.len()];
    for (pass, counts) in counts.chunks(buckets).enumerate() {
        if counts.contains(&data.len()) {
            continue; // every entry has the same digit: this pass would not move anything
        }
        let mut next = vec![0usize; buckets];
        let mut total = 0;
        for (n, &c) in next.iter_mut().zip(counts) {
            *n = total;
            total += c;
        }
        let shift = pass as u32 * bits;
        for item in data.iter() {
            let d = (((key(item) - min) >> shift) & mask) as usize;
            buffer[next[d]] = *item;
            next[d] += 1;
        }
        std::mem::swap(data, &mut buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn sorts_like_std_including_narrow_and_wide_key_ranges() {
        let mut rng = StdRng::seed_from_u64(7);
        for spread in [u32::MAX, 1 << 20, 5, 0] {
            let mut data: Vec<u64> = (0..50_000)
                .map(|i| ((rng.gen_range(0..=spread) as u64) << 32) | i)
                .collect();
            let mut want = data.clone();
            want.sort_by_key(|v| v >> 32); // stable, like the radix sort
            radix_sort_by_key(&mut data, |v| (v >> 32) as u32);
            assert_eq!(data, want, "spread {spread}");
        }
    }
}

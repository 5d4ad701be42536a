//! LSD radix sort by a 32-bit key, for the exact metrics' pixel keys (tens to hundreds of
//! millions of entries, where it is several times faster than a comparison sort).
//!
//! Input: a `Vec<T>` and a key function; output: the same vector sorted ascending by key
//! (stable). Three passes of 11 bits; a pass whose digit is the same for every entry is skipped.
//! Extra memory: one buffer of `len * size_of::<T>()` bytes during the sort.

use rayon::prelude::*;

const BITS: u32 = 11;
const BUCKETS: usize = 1 << BITS;
const PASSES: usize = 3;
/// Below this length a comparison sort is faster than three histogram passes.
const SMALL: usize = 1 << 14;

fn digit(key: u32, pass: usize) -> usize {
    ((key >> (pass as u32 * BITS)) as usize) & (BUCKETS - 1)
}

/// Sorts `data` ascending by `key` (stable). Each pass runs in parallel over contiguous chunks:
/// every chunk counts its digits, then scatters into its own disjoint run of every bucket
/// (safe `split_at_mut` slices, so no synchronisation is needed).
pub(crate) fn radix_sort_by_key<T, K>(data: &mut Vec<T>, key: K)
where
    T: Copy + Default + Send + Sync,
    K: Fn(&T) -> u32 + Sync,
{
    if data.len() < SMALL {
        data.sort_by_key(&key);
        return;
    }
    let chunk_len = data
        .len()
        .div_ceil(4 * rayon::current_num_threads())
        .max(SMALL);
    let mut buffer: Vec<T> = vec![T::default(); data.len()];
    for pass in 0..PASSES {
        let counts: Vec<Vec<usize>> = data
            .par_chunks(chunk_len)
            .map(|chunk| {
                let mut h = vec![0usize; BUCKETS];
                for item in chunk {
                    h[digit(key(item), pass)] += 1;
                }
                h
            })
            .collect();
        let constant =
            (0..BUCKETS).any(|b| counts.iter().map(|h| h[b]).sum::<usize>() == data.len());
        if constant {
            continue; // every entry has the same digit: this pass would not move anything
        }
        // Destination runs in (bucket, chunk) order: chunk c's part of bucket b.
        let mut parts: Vec<Vec<&mut [T]>> = (0..counts.len())
            .map(|_| Vec::with_capacity(BUCKETS))
            .collect();
        let mut rest: &mut [T] = &mut buffer;
        for b in 0..BUCKETS {
            for (c, h) in counts.iter().enumerate() {
                let (run, tail) = rest.split_at_mut(h[b]);
                parts[c].push(run);
                rest = tail;
            }
        }
        data.par_chunks(chunk_len)
            .zip(parts.into_par_iter())
            .for_each(|(chunk, mut runs)| {
                let mut cursor = vec![0usize; BUCKETS];
                for item in chunk {
                    let d = digit(key(item), pass);
                    runs[d][cursor[d]] = *item;
                    cursor[d] += 1;
                }
            });
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
        for spread in [u32::MAX, 1 << 20, 5] {
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

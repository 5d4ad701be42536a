//! Benchmark of the exact pixel metrics at MVTec scale: 1800 maps of 288 x 288 (149 M pixels),
//! smooth random maps with elliptical defect blobs on every other image.
//!
//! Run: `cargo run --example metrics_bench [-- <maps> [<side>]]` (dev profile: dependencies at
//! opt-level 3, this crate at 1) or with `--release`. Prints wall seconds per phase and the
//! process's peak resident memory (VmHWM from /proc/self/status).
//!
//! Phase A pushes every map into an `EvalAccumulator` and times `compute` (image metrics, then
//! P-AUROC, P-AP, P-F1max and AUPRO from ONE sort and ONE sweep). Phase B, after dropping the
//! accumulator, times the standalone `ranking::auroc`, `ranking::average_precision` and
//! `pro::aupro` on flat arrays (each sorts on its own).

use cras::maps::upsample_bilinear;
use cras::metrics::{pro, ranking, EvalAccumulator};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use std::time::Instant;

/// One synthetic map and its mask (all zero for even indices: defect-free images).
fn synth_map(index: usize, side: usize) -> (Vec<f32>, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(index as u64);
    let coarse: Vec<f32> = (0..81).map(|_| rng.gen::<f32>()).collect();
    let mut map = upsample_bilinear(&coarse, 9, 9, side, side);
    for v in map.iter_mut() {
        *v = *v * 0.5 + rng.gen::<f32>() * 0.05;
    }
    let mut mask = vec![0u8; side * side];
    if index % 2 == 1 {
        for _ in 0..rng.gen_range(1..4) {
            let (cy, cx) = (rng.gen_range(0..side) as f32, rng.gen_range(0..side) as f32);
            let (ry, rx) = (rng.gen_range(4.0..30.0f32), rng.gen_range(4.0..30.0f32));
            let strength = rng.gen_range(0.1..0.8f32);
            for y in 0..side {
                for x in 0..side {
                    let d = ((y as f32 - cy) / ry).powi(2) + ((x as f32 - cx) / rx).powi(2);
                    if d <= 1.0 {
                        mask[y * side + x] = 1;
                    }
                    if d <= 2.0 {
                        map[y * side + x] += strength * (1.0 - d / 2.0);
                    }
                }
            }
        }
    }
    (map, mask)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// CPU seconds used so far by all threads of this process (utime + stime).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0, // USER_HZ is 100 on Linux
        _ => f64::NAN,
    }
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let out = f();
    println!(
        "{label:<44} {:>7.2} s wall {:>7.2} s cpu",
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    out
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n_maps = args.first().copied().unwrap_or(1800);
    let side = args.get(1).copied().unwrap_or(288);
    let pixels = n_maps * side * side;
    println!(
        "{n_maps} maps of {side}x{side} = {:.1} M pixels, {} rayon threads",
        pixels as f64 / 1e6,
        rayon::current_num_threads()
    );

    // Phase A: the accumulator, as the evaluation driver uses it.
    let mut acc = EvalAccumulator::new(side);
    timed("A: generate + push", || {
        for chunk in (0..n_maps).collect::<Vec<_>>().chunks(64) {
            let batch: Vec<_> = chunk.par_iter().map(|&i| synth_map(i, side)).collect();
            for (i, (map, mask)) in chunk.iter().zip(&batch) {
                let score = map.iter().copied().fold(f32::MIN, f32::max);
                acc.push(score, i % 2 == 1, map, Some(mask))
                    .expect("synthetic maps are valid");
            }
        }
    });
    let metrics = timed("A: EvalAccumulator::compute (all 7 metrics)", || {
        acc.compute(0.3)
    });
    println!("A: {metrics:?}");
    println!("A: peak RSS {:.0} MiB", peak_rss_mib());
    drop(acc);

    // Phase B: the standalone functions on flat arrays.
    let (maps, masks): (Vec<Vec<f32>>, Vec<Vec<u8>>) = timed("B: generate", || {
        (0..n_maps)
            .into_par_iter()
            .map(|i| synth_map(i, side))
            .unzip()
    });
    let flat: Vec<f32> = maps.concat();
    let labels: Vec<bool> = masks.iter().flatten().map(|&m| m == 1).collect();
    let auroc = timed("B: ranking::auroc (P-AUROC)", || {
        ranking::auroc(&flat, &labels)
    });
    let ap = timed("B: ranking::average_precision (P-AP)", || {
        ranking::average_precision(&flat, &labels)
    });
    drop((flat, labels));
    let map_refs: Vec<&[f32]> = maps.iter().map(|m| &m[..]).collect();
    let mask_refs: Vec<&[u8]> = masks.iter().map(|m| &m[..]).collect();
    let aupro = timed("B: pro::aupro (AUPRO @ 0.3)", || {
        pro::aupro(&map_refs, &mask_refs, side, side, 0.3)
    });
    println!("B: P-AUROC {auroc:?} P-AP {ap:?} AUPRO {aupro:?}");
    println!("B: peak RSS {:.0} MiB (process lifetime)", peak_rss_mib());
}

//! A seeded mutation fuzzer for the `fuzz_*` tests (stable toolchain, no cargo-fuzz): byte-level
//! mutations (bit flips, interesting bytes, truncation, insertion, deletion, duplication),
//! PNG-aware ones (chunk length fields, IHDR dimensions and modes, chunk data, with or without
//! a fixed CRC), JPEG-aware ones (frame dimensions, segment lengths) and JSON-aware ones (any
//! node of a document replaced or removed).
//!
//! Case count: `CRAS_FUZZ_CASES` (default per target, kept small for CI); seed:
//! `CRAS_FUZZ_SEED` (default 0). Case `i` of seed `s` is reproducible on its own.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Cases to run: `CRAS_FUZZ_CASES` or `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("CRAS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generator of case `i`: `CRAS_FUZZ_SEED` (default 0) mixed with `i`.
pub fn case_rng(i: usize) -> ChaCha8Rng {
    let seed: u64 = std::env::var("CRAS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64)
}

/// Values that break arithmetic: zero, one, sign and width edges.
pub const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    0x7F,
    0xFF,
    0xFFFF,
    0x1_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];

fn interesting_u32(rng: &mut ChaCha8Rng) -> u32 {
    if rng.gen_bool(0.5) {
        INTERESTING_U32[rng.gen_range(0..INTERESTING_U32.len())]
    } else {
        rng.gen()
    }
}

/// One to three byte-level mutations of `data`.
pub fn mutate_bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..=3) {
        if data.is_empty() {
            data.push(rng.gen());
            continue;
        }
        let n = data.len();
        let at = rng.gen_range(0..n);
        match rng.gen_range(0..7) {
            0 => data[at] ^= 1 << rng.gen_range(0..8),
            1 => data[at] = [0x00, 0xFF, 0x7F, 0x80][rng.gen_range(0..4)],
            2 => data[at] = rng.gen(),
            3 => data.truncate(at),
            4 => {
                let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                data.splice(at..at, extra);
            }
            5 => {
                let end = (at + rng.gen_range(1..64)).min(n);
                data.drain(at..end);
            }
            _ => {
                let end = (at + rng.gen_range(1..64)).min(n);
                let copy = data[at..end].to_vec();
                let to = rng.gen_range(0..=data.len());
                data.splice(to..to, copy);
            }
        }
    }
}

/// Offsets of the PNG chunks of `png` (start of each length field), in order.
fn png_chunks(png: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 12 <= png.len() {
        out.push(at);
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        at = at.saturating_add(12).saturating_add(len);
    }
    out
}

/// Recomputes the CRC of the chunk at `at` (when its data is all there).
fn fix_crc(png: &mut [u8], at: usize) {
    let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
    let end = at + 8 + len;
    if end + 4 <= png.len() {
        let crc = crc32fast::hash(&png[at + 4..end]);
        png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// One PNG-aware mutation of `png` (or a byte-level one when it has no chunks left).
pub fn mutate_png(rng: &mut ChaCha8Rng, png: &mut Vec<u8>) {
    let chunks = png_chunks(png);
    if chunks.is_empty() {
        return mutate_bytes(rng, png);
    }
    let at = chunks[rng.gen_range(0..chunks.len())];
    let fix = rng.gen_bool(0.8);
    match rng.gen_range(0..5) {
        // The length field: huge, zero or a little off.
        0 => {
            let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
            let new = if rng.gen_bool(0.5) {
                interesting_u32(rng)
            } else {
                len.wrapping_add(rng.gen_range(0..16)).wrapping_sub(8)
            };
            png[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
        // IHDR: dimensions, bit depth, colour type, interlace.
        1 => {
            let ihdr = chunks[0];
            if png.len() >= ihdr + 8 + 13 && &png[ihdr + 4..ihdr + 8] == b"IHDR" {
                let d = ihdr + 8;
                match rng.gen_range(0..3) {
                    0 => {
                        let field = d + 4 * rng.gen_range(0..2);
                        png[field..field + 4].copy_from_slice(&interesting_u32(rng).to_be_bytes());
                    }
                    1 => {
                        let w: u32 = rng.gen_range(1..200_000);
                        let h: u32 = rng.gen_range(1..200_000);
                        png[d..d + 4].copy_from_slice(&w.to_be_bytes());
                        png[d + 4..d + 8].copy_from_slice(&h.to_be_bytes());
                    }
                    _ => {
                        png[d + 8 + rng.gen_range(0..5)] =
                            [0, 1, 2, 3, 4, 6, 8, 16, 0xFF][rng.gen_range(0..9)]
                    }
                }
                if fix {
                    fix_crc(png, ihdr);
                }
            }
        }
        // The chunk's data.
        2 => {
            let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
            let start = at + 8;
            let end = (start + len).min(png.len());
            if end > start {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(start..end);
                    png[i] = rng.gen();
                }
                if fix {
                    fix_crc(png, at);
                }
            }
        }
        // Drop or duplicate the chunk.
        3 => {
            let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
            let end = (at + 12 + len).min(png.len());
            let chunk: Vec<u8> = png[at..end].to_vec();
            if rng.gen_bool(0.5) {
                png.drain(at..end);
            } else {
                png.splice(end..end, chunk);
            }
        }
        _ => mutate_bytes(rng, png),
    }
}

/// One JPEG-aware mutation of `jpeg`: a frame's dimensions or component count, a segment's
/// length field, or a byte-level one.
pub fn mutate_jpeg(rng: &mut ChaCha8Rng, jpeg: &mut Vec<u8>) {
    let markers: Vec<usize> = jpeg
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && (0xC0..=0xFE).contains(&w[1]) && w[1] != 0xD8)
        .map(|(i, _)| i)
        .collect();
    let frames: Vec<usize> = markers
        .iter()
        .copied()
        .filter(|&i| matches!(jpeg[i + 1], 0xC0..=0xC2))
        .collect();
    match rng.gen_range(0..3) {
        0 if !frames.is_empty() => {
            // SOF: FF Cx, length(2), precision(1), height(2), width(2), components(1).
            let f = frames[rng.gen_range(0..frames.len())];
            if f + 10 <= jpeg.len() {
                match rng.gen_range(0..3) {
                    0 => {
                        let v = [0u16, 1, 0x7FFF, 0xFFFF, rng.gen()][rng.gen_range(0..5)];
                        let at = f + 5 + 2 * rng.gen_range(0..2);
                        jpeg[at..at + 2].copy_from_slice(&v.to_be_bytes());
                    }
                    1 => jpeg[f + 9] = [0, 1, 2, 3, 4, 255][rng.gen_range(0..6)],
                    _ => jpeg[f + 4] = [0, 1, 8, 12, 16, 255][rng.gen_range(0..6)],
                }
            }
        }
        1 if !markers.is_empty() => {
            let m = markers[rng.gen_range(0..markers.len())];
            if m + 4 <= jpeg.len() {
                let v = [0u16, 1, 2, 0xFFFF, rng.gen()][rng.gen_range(0..5)];
                jpeg[m + 2..m + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
        _ => mutate_bytes(rng, jpeg),
    }
}

/// JSON pointers to every node of `v` (the root included).
fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One JSON-aware mutation of `doc`: a random node replaced by an awkward value (null, a wrong
/// type, zero, negative, huge, empty), scaled, or removed from its object or array.
pub fn mutate_json(rng: &mut ChaCha8Rng, doc: &mut serde_json::Value) {
    use serde_json::json;
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let target = all[rng.gen_range(0..all.len())].clone();
    if rng.gen_bool(0.2) && !target.is_empty() {
        let (parent, key) = target.rsplit_once('/').expect("a child pointer");
        match doc.pointer_mut(parent) {
            Some(serde_json::Value::Object(m)) => {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            Some(serde_json::Value::Array(a)) => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {}
        }
        return;
    }
    let Some(node) = doc.pointer_mut(&target) else {
        return;
    };
    *node = match rng.gen_range(0..14) {
        0 => json!(null),
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(1e308),
        6 => json!(""),
        7 => json!("x"),
        8 => json!([]),
        9 => json!({}),
        10 => json!(0.5),
        11 => json!(i64::MIN),
        12 => match node.as_f64() {
            Some(x) => json!(x * [2.0, 1e6, -1.0, 0.5][rng.gen_range(0..4)]),
            None => json!([node.clone(), node.clone()]),
        },
        _ => match node.as_u64() {
            Some(x) => json!(x.wrapping_add(rng.gen_range(1..4))),
            None => json!(rng.gen::<u32>()),
        },
    };
}

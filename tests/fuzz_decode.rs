//! Fuzzing of decoding and preprocessing (a seeded mutation loop, see `common/mutate.rs`):
//! valid PNG, JPEG, BMP and TIFF files, mutated (bit flips, truncation, chunk length fields,
//! huge header dimensions, ...), must read their header and decode to `Ok` or a clean `Err`
//! naming the file, never
//! panic, and stay within the decoders' memory limits (this process's peak RSS; one test per
//! binary so no other test shares it). `CRAS_FUZZ_CASES=100000 cargo test --release --test
//! fuzz_decode` runs long; `CRAS_FUZZ_SEED` picks another sequence.
//!
//! A test binary of its own, not a module of `tests/it`: its memory bound is this process's peak
//! RSS, which the training and inference tests there would raise.

#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/mutate.rs"]
mod mutate;

use std::panic::{catch_unwind, AssertUnwindSafe};

use cras::data::decode::{decode_mask_bytes, decode_rgb_bytes_with_limit, open_bytes};
use cras::data::{MaskMode, Preprocess, ResizeMode};
use image::{DynamicImage, ImageFormat};
use rand::Rng;

/// The pixel limit of the fuzzed decodes: 1 megapixel, so that a mutated header's legitimate
/// allocations stay small and the RSS bound below is tight.
const MAX_PIXELS: u64 = 1 << 20;
/// Peak RSS allowed for the whole run: the decoders' bounds at [`MAX_PIXELS`] (a JPEG's
/// allocation cap of 8 bytes a pixel plus 64 MiB; a PNG's 16 MiB of ancillary chunks) with room
/// for the test harness.
const MAX_RSS_MIB: u64 = 256;

fn seeds() -> Vec<(&'static str, ImageFormat, Vec<u8>)> {
    let ramp = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, 77])
    });
    let rgb = DynamicImage::ImageRgb8(ramp);
    let gray = DynamicImage::ImageLuma8(rgb.to_luma8());
    let rgba16 = DynamicImage::ImageRgba16(rgb.to_rgba16());
    let gray16 = DynamicImage::ImageLuma16(rgb.to_luma16());
    let enc = |img: &DynamicImage, f| hostile::encode(img, f);
    vec![
        ("rgb.png", ImageFormat::Png, enc(&rgb, ImageFormat::Png)),
        ("gray.png", ImageFormat::Png, enc(&gray, ImageFormat::Png)),
        (
            "rgba16.png",
            ImageFormat::Png,
            enc(&rgba16, ImageFormat::Png),
        ),
        (
            "gray16.png",
            ImageFormat::Png,
            enc(&gray16, ImageFormat::Png),
        ),
        ("rgb.jpg", ImageFormat::Jpeg, enc(&rgb, ImageFormat::Jpeg)),
        ("gray.jpg", ImageFormat::Jpeg, enc(&gray, ImageFormat::Jpeg)),
        ("rgb.bmp", ImageFormat::Bmp, enc(&rgb, ImageFormat::Bmp)),
        ("rgb.tif", ImageFormat::Tiff, enc(&rgb, ImageFormat::Tiff)),
    ]
}

/// Reads the header, decodes and preprocesses one input as every command does; checks the
/// outputs' sizes.
fn run_case(bytes: &[u8], name: &str) -> Result<(), String> {
    let header = open_bytes(bytes, name).and_then(|o| o.header());
    let img = decode_rgb_bytes_with_limit(bytes, name, MAX_PIXELS).map_err(|e| e.to_string())?;
    let header = header.expect("decodes, so its header reads");
    assert_eq!((header.width, header.height), img.dimensions());
    for pre in [
        Preprocess {
            resize: 20,
            crop: 16,
            mode: ResizeMode::ShorterSideThenCenterCrop,
            mask_mode: MaskMode::Binarize,
            tiling: None,
        },
        Preprocess {
            resize: 16,
            crop: 16,
            mode: ResizeMode::Square,
            mask_mode: MaskMode::ReferenceTruncate,
            tiling: None,
        },
    ] {
        assert_eq!(pre.image(&img).len(), 3 * 16 * 16);
        let mask = decode_mask_bytes(bytes, name).expect("decodes as an image, so as a mask");
        assert_eq!(mask.dimensions(), img.dimensions());
        assert_eq!(pre.mask(&mask).len(), 16 * 16);
    }
    Ok(())
}

#[test]
fn mutated_images_decode_or_fail_cleanly_in_bounded_memory() {
    let seeds = seeds();
    for (name, _, bytes) in &seeds {
        run_case(bytes, name).unwrap_or_else(|e| panic!("seed {name} must decode: {e}"));
    }
    let n = mutate::cases(3000);
    let (mut ok, mut err) = (0usize, 0usize);
    let mut panics = Vec::new();
    for i in 0..n {
        let mut rng = mutate::case_rng(i);
        let (name, format, seed) = &seeds[rng.gen_range(0..seeds.len())];
        let mut bytes = seed.clone();
        for _ in 0..rng.gen_range(1..=3) {
            match format {
                ImageFormat::Png if rng.gen_bool(0.7) => mutate::mutate_png(&mut rng, &mut bytes),
                ImageFormat::Jpeg if rng.gen_bool(0.7) => mutate::mutate_jpeg(&mut rng, &mut bytes),
                _ => mutate::mutate_bytes(&mut rng, &mut bytes),
            }
        }
        match catch_unwind(AssertUnwindSafe(|| run_case(&bytes, name))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(msg)) => {
                assert!(
                    msg.contains(name),
                    "case {i}: the error must name the file: {msg}"
                );
                err += 1;
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push(format!("case {i} ({name}, {} bytes): {msg}", bytes.len()));
            }
        }
    }
    let rss = hostile::peak_rss_kib() / 1024;
    eprintln!(
        "fuzz_decode: {n} cases, {ok} decoded, {err} clean errors, {} panics, peak RSS {rss} MiB",
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "panics (rerun one with CRAS_FUZZ_CASES):\n{}",
        panics.join("\n")
    );
    assert!(
        rss < MAX_RSS_MIB,
        "peak RSS {rss} MiB above {MAX_RSS_MIB} MiB"
    );
    // The mutations must reach both outcomes, or the fuzzing tests nothing.
    if n >= 100 {
        assert!(
            ok * 20 >= n && err * 4 >= n,
            "{ok} decoded, {err} errors of {n}"
        );
    }
}

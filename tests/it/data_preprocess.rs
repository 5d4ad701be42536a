//! Preprocessing parity with Pillow + torchvision on the fixtures of
//! `dev/gen_preprocess_fixtures.py` (tests/fixtures/preprocess/): resized uint8 pixels must be
//! identical, normalised tensors within 1e-6, resized masks identical after thresholding; plus
//! decoding parity of the fixture files (exact for lossless, close for JPEG).

use std::path::{Path, PathBuf};

use cras::data::decode::{decode_mask, decode_rgb};
use cras::data::{MaskMode, Preprocess, ResizeMode};
use image::RgbImage;
use serde::Deserialize;

#[derive(Deserialize)]
struct Setting {
    name: String,
    resize: u32,
    crop: u32,
    mode: ResizeMode,
}

#[derive(Deserialize)]
struct Img {
    #[serde(default)]
    name: String,
    file: String,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct Manifest {
    settings: Vec<Setting>,
    images: Vec<Img>,
    mask: Img,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn manifest() -> Manifest {
    serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap()
}

fn f32s(name: &str) -> Vec<f32> {
    std::fs::read(dir().join(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn pre(s: &Setting, mask_mode: MaskMode) -> Preprocess {
    Preprocess {
        resize: s.resize,
        crop: s.crop,
        mode: s.mode,
        mask_mode,
        tiling: None,
    }
}

/// (share of identical bytes, max abs difference)
fn compare(ours: &[u8], theirs: &[u8]) -> (f64, u8) {
    assert_eq!(ours.len(), theirs.len());
    let same = ours.iter().zip(theirs).filter(|(a, b)| a == b).count();
    let max = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    (same as f64 / ours.len() as f64, max)
}

#[test]
fn resize_crop_and_normalise_match_torchvision() {
    let m = manifest();
    for img in &m.images {
        // Pillow's decoded pixels isolate the resize from the decoder.
        let raw = std::fs::read(dir().join(format!("{}.rgb", img.name))).unwrap();
        let pil = RgbImage::from_raw(img.width, img.height, raw).unwrap();
        for s in &m.settings {
            let p = pre(s, MaskMode::Binarize);
            let ours = p.resized_rgb(&pil);
            let theirs = std::fs::read(dir().join(format!("{}__{}.u8", img.name, s.name))).unwrap();
            let (share, max) = compare(ours.as_raw(), &theirs);
            println!(
                "{} {}: identical {:.4}, max diff {max}",
                img.name, s.name, share
            );
            // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
            // shrinks much more than the width; its exact rule is not published in a release we
            // can read, so we keep Pillow <= 12's horizontal-first order, which is bit-exact for
            // the reference's geometry (same scale on both axes). Square mode on a portrait image
            // hits the reordering: up to one grey level there.
            let reordered = s.mode == ResizeMode::Square && img.height > img.width;
            let tolerance = if reordered { 1 } else { 0 };
            assert!(
                max <= tolerance,
                "{} {}: resized pixels differ by {max}",
                img.name,
                s.name
            );

            let tensor = p.image(&pil);
            let expect = f32s(&format!("{}__{}.f32", img.name, s.name));
            assert_eq!(tensor.len(), expect.len());
            let worst = tensor
                .iter()
                .zip(&expect)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let limit = if reordered {
                1.0 / 255.0 / 0.224 + 1e-6
            } else {
                1e-6
            };
            assert!(
                worst <= limit,
                "{} {}: tensor diff {worst}",
                img.name,
                s.name
            );
        }
    }
}

#[test]
fn decoding_fixture_files_matches_pillow() {
    for img in &manifest().images {
        let ours = decode_rgb(&dir().join(&img.file)).unwrap();
        let pil = std::fs::read(dir().join(format!("{}.rgb", img.name))).unwrap();
        let (share, max) = compare(ours.as_raw(), &pil);
        println!("decode {}: identical {share:.4}, max diff {max}", img.file);
        if img.file.ends_with(".jpg") {
            // Different IDCT/upsampling than libjpeg: close, not identical.
            assert!(
                max <= 8 && share > 0.5,
                "{}: share {share}, max {max}",
                img.file
            );
        } else {
            assert_eq!(max, 0, "{}", img.file);
        }
    }
}

#[test]
fn masks_match_torchvision_in_both_modes() {
    let m = manifest();
    let mask = decode_mask(&dir().join(&m.mask.file)).unwrap();
    assert_eq!(mask.dimensions(), (m.mask.width, m.mask.height));
    for s in &m.settings {
        let tv = f32s(&format!("mask__{}.f32", s.name));
        let binarized = pre(s, MaskMode::Binarize).mask(&mask);
        let truncated = pre(s, MaskMode::ReferenceTruncate).mask(&mask);
        let expect_bin: Vec<u8> = tv.iter().map(|&v| u8::from(v >= 0.5)).collect();
        let expect_trunc: Vec<u8> = tv.iter().map(|&v| u8::from(v == 1.0)).collect();
        assert_eq!(binarized, expect_bin, "{}", s.name);
        assert_eq!(truncated, expect_trunc, "{}", s.name);
        // The fixture has fractional borders, so the modes must differ somewhere.
        let (nb, nt): (usize, usize) = (
            binarized.iter().map(|&v| v as usize).sum(),
            truncated.iter().map(|&v| v as usize).sum(),
        );
        assert!(nb > nt && nt > 0, "{}: {nb} vs {nt}", s.name);
    }
}

/// A deterministic noise image (no `rand` in the test's hands: a simple hash of the position).
fn noise(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).wrapping_mul(97);
        image::Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
    })
}

#[test]
fn resizing_only_the_crop_window_equals_resizing_then_cropping() {
    use cras::data::resize::{resize_bilinear_pil, resize_crop_bilinear_pil};
    let p = Preprocess {
        resize: 37,
        crop: 32,
        mode: ResizeMode::ShorterSideThenCenterCrop,
        mask_mode: MaskMode::Binarize,
        tiling: None,
    };
    for (w, h) in [
        (50, 41),
        (41, 50),
        (37, 37),
        (37, 200),
        (300, 37),
        (3, 90),
        (20, 20),
        (1, 7),
    ] {
        let img = noise(w, h);
        let (rw, rh, left, top) = p.geometry(w, h);
        let full = resize_bilinear_pil(img.as_raw(), w, h, 3, rw, rh);
        let mut expected = Vec::new();
        for y in top..top + 32 {
            let start = ((y * rw + left) * 3) as usize;
            expected.extend_from_slice(&full[start..start + 32 * 3]);
        }
        let got = resize_crop_bilinear_pil(img.as_raw(), (w, h), 3, (rw, rh), (left, top, 32, 32));
        assert_eq!(got, expected, "{w}x{h}");
        assert_eq!(p.resized_rgb(&img).into_raw(), expected, "{w}x{h}");
    }
}

#[test]
fn extreme_aspect_ratios_preprocess_in_bounded_memory() {
    // Resizing the shorter side of 1 pixel to 329 makes the longer side 329 million pixels:
    // resizing all of it (~100 GB) aborted the process; only the crop window is computed.
    let p = Preprocess::reference();
    for (w, h) in [(1, 1_000_000), (1_000_000, 1), (2, 20_000)] {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 128, 250]));
        let out = p.resized_rgb(&img);
        assert_eq!(out.dimensions(), (288, 288), "{w}x{h}");
        assert!(out.pixels().all(|px| px.0 == [10, 128, 250]), "{w}x{h}");
    }
}

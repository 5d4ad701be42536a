//! Heat images of anomaly maps, for people to look at.
//!
//! Inputs: an anomaly map as a row-major `[h * w]` slice of `f32` (any range; non-finite values
//! count as `lo`), and a display range `(lo, hi)`: `lo` maps to 0 (blue), `hi` to 1 (red),
//! values outside are clamped. A degenerate range (`hi <= lo`, or non-finite ends) maps every
//! pixel to 0, so a constant map gives a uniform blue image, never NaN.
//! Outputs: [`image::RgbImage`] / [`image::GrayImage`] of the map's size (`w x h`); a gallery
//! panel is `3w x h` (image | ground truth | overlay). PNG files are written atomically.
//!
//! A map whose length is not `w * h` is a caller bug; it does not panic: missing values count as
//! `lo` and extra values are ignored. Use [`check_map_len`] to turn such a mismatch into an error.

use std::path::Path;

use image::{GrayImage, ImageEncoder, Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::fsio::write_atomic;

/// Piecewise-linear control points `(position, intensity)` of the classic "jet" colormap (the
/// one OpenCV's `COLORMAP_JET` and matplotlib's `jet` draw): dark blue, blue, cyan, yellow, red,
/// dark red.
const JET_RED: &[(f32, f32)] = &[
    (0.0, 0.0),
    (0.35, 0.0),
    (0.66, 1.0),
    (0.89, 1.0),
    (1.0, 0.5),
];
const JET_GREEN: &[(f32, f32)] = &[
    (0.0, 0.0),
    (0.125, 0.0),
    (0.375, 1.0),
    (0.64, 1.0),
    (0.91, 0.0),
    (1.0, 0.0),
];
const JET_BLUE: &[(f32, f32)] = &[
    (0.0, 0.5),
    (0.11, 1.0),
    (0.34, 1.0),
    (0.65, 0.0),
    (1.0, 0.0),
];

/// Linear interpolation through sorted control points; `v` is already in [0, 1].
fn interp(points: &[(f32, f32)], v: f32) -> f32 {
    let mut prev = points[0];
    for &next in &points[1..] {
        if v <= next.0 {
            let span = next.0 - prev.0;
            let t = if span > 0.0 { (v - prev.0) / span } else { 1.0 };
            return prev.1 + t * (next.1 - prev.1);
        }
        prev = next;
    }
    prev.1
}

fn to_u8(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The jet colour of `v` (clamped to [0, 1]; NaN counts as 0) as RGB: 0 is dark blue
/// (0, 0, 128), 1 is dark red (128, 0, 0), the hue falling monotonically in between.
pub fn jet(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    [
        to_u8(interp(JET_RED, v)),
        to_u8(interp(JET_GREEN, v)),
        to_u8(interp(JET_BLUE, v)),
    ]
}

/// Scales every value of `map` to [0, 1] with the display range `(lo, hi)` (clamped).
/// Non-finite values and a degenerate range give 0; the result never holds NaN.
pub fn scale_unit(map: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let range = hi - lo;
    let usable = lo.is_finite() && hi.is_finite() && range.is_finite() && range > 0.0;
    map.iter()
        .map(|&x| {
            if usable && x.is_finite() {
                ((x - lo) / range).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// Returns an error unless `map` holds exactly `w * h` values.
pub fn check_map_len(map: &[f32], w: u32, h: u32) -> Result<()> {
    let expected = w as usize * h as usize;
    if map.len() == expected {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "anomaly map has {} values, expected {w} x {h} = {expected}",
            map.len()
        )))
    }
}

/// The scaled value at pixel (x, y), 0 where the map is too short.
fn unit_at(unit: &[f32], w: u32, x: u32, y: u32) -> f32 {
    unit.get(y as usize * w as usize + x as usize)
        .copied()
        .unwrap_or(0.0)
}

/// The map as a jet heat image of `w x h` pixels: `lo` (and below) blue, `hi` (and above) red.
pub fn heatmap_rgb(map: &[f32], w: u32, h: u32, lo: f32, hi: f32) -> RgbImage {
    let unit = scale_unit(map, lo, hi);
    RgbImage::from_fn(w, h, |x, y| Rgb(jet(unit_at(&unit, w, x, y))))
}

/// The map as an 8-bit grey image of `w x h` pixels: `lo` is 0 (black), `hi` is 255 (white).
pub fn gray_map_png(map: &[f32], w: u32, h: u32, lo: f32, hi: f32) -> GrayImage {
    let unit = scale_unit(map, lo, hi);
    GrayImage::from_fn(w, h, |x, y| image::Luma([to_u8(unit_at(&unit, w, x, y))]))
}

/// The heat image of `map` (the size of `img`) blended over `img`:
/// `(1 - alpha) * img + alpha * heat`, `alpha` clamped to [0, 1] (NaN counts as 0.5).
pub fn overlay(img: &RgbImage, map: &[f32], lo: f32, hi: f32, alpha: f32) -> RgbImage {
    let alpha = if alpha.is_nan() {
        0.5
    } else {
        alpha.clamp(0.0, 1.0)
    };
    let heat = heatmap_rgb(map, img.width(), img.height(), lo, hi);
    let mut out = img.clone();
    for (o, hp) in out.pixels_mut().zip(heat.pixels()) {
        for c in 0..3 {
            let blended = (1.0 - alpha) * o.0[c] as f32 + alpha * hp.0[c] as f32;
            o.0[c] = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// One gallery row, `3w x h` for an image of `w x h`: the image, its ground-truth mask (non-zero
/// pixels white on black; all black when `mask` is None) and the heat overlay (alpha 0.5).
pub fn panel(img: &RgbImage, mask: Option<&[u8]>, map: &[f32], lo: f32, hi: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let over = overlay(img, map, lo, hi, 0.5);
    let mut out = RgbImage::new(3 * w, h);
    for (x, y, p) in img.enumerate_pixels() {
        out.put_pixel(x, y, *p);
        out.put_pixel(2 * w + x, y, *over.get_pixel(x, y));
        let defect = mask
            .and_then(|m| m.get(y as usize * w as usize + x as usize))
            .is_some_and(|&v| v != 0);
        if defect {
            out.put_pixel(w + x, y, Rgb([255, 255, 255]));
        }
    }
    out
}

fn encode_png(
    path: &Path,
    raw: &[u8],
    w: u32,
    h: u32,
    color: image::ExtendedColorType,
) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(raw, w, h, color)
        .map_err(|e| Error::image(path, format!("cannot encode PNG: {e}")))?;
    write_atomic(path, &bytes)
}

/// Writes `img` as a PNG file at `path` atomically (temporary file, then rename); creates the
/// parent folder if needed.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    encode_png(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
}

/// Writes a grey image (see [`gray_map_png`]) as a PNG file at `path` atomically.
pub fn write_gray_png(path: &Path, img: &GrayImage) -> Result<()> {
    encode_png(
        path,
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::L8,
    )
}

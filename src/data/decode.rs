//! Image and mask decoding, bit-compatible with Pillow.
//!
//! Inputs: PNG, JPEG, BMP or TIFF files (or their bytes) in gray, gray+alpha, RGB or RGBA, 8 or
//! 16 bits per sample, palette images included. Outputs:
//! - [`decode_rgb`]: an 8-bit RGB image, equal to what Pillow's `Image.open(p).convert("RGB")`
//!   gives. Pillow's rules, checked against Pillow 13: alpha is dropped without compositing;
//!   gray is replicated to the three channels; 16-bit RGB, RGBA and gray+alpha keep the high byte
//!   of each sample; 16-bit gray (Pillow mode "I;16") is CLIPPED to 255, not rescaled, so any value
//!   above 255 becomes white.
//! - [`decode_mask`]: an 8-bit binary mask, 255 where Pillow's `convert("L")` is nonzero, else 0.
//! - [`decode_mask_gray`]: the raw 8-bit grey levels of Pillow's `convert("L")` (the reference
//!   resizes these, then truncates).
//!
//! Every decode first reads the header and refuses images above a pixel budget
//! ([`DEFAULT_MAX_PIXELS`]) with a clear error, so that a decompression bomb cannot exhaust
//! memory. The decoders' own allocations beyond the pixels are bounded too: a PNG's ancillary
//! chunks (an iCCP profile or text inflating to a gigabyte) get at most
//! [`PNG_ANCILLARY_BYTES`] (the `png` crate's limit; a profile above it is dropped, never used
//! here anyway). A JPEG whose data stops before its end-of-image marker is an error (the
//! decoder would fill the missing rows with gray and only log it; Pillow refuses it too).
//! Errors name the file.
//!
//! The format is always sniffed from the content, never taken from the file name: a JPEG named
//! `.png` decodes as the JPEG it is, in every command. [`read_header`] gives the format and size
//! from the header alone (what discovery and `cras data inspect` check), under the same pixel
//! limit ([`check_pixels`]) as the decoders.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};

use crate::{Error, Result};

/// Largest image, in pixels, that the decoders accept by default (100 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Bytes a PNG decoder may allocate besides the image itself: ancillary chunks (iCCP, text,
/// eXIf, inflated where compressed) and one row buffer (rows up to 2 million 16-bit RGBA pixels).
pub const PNG_ANCILLARY_BYTES: u64 = 16 << 20;

/// What an image's header says: its format (sniffed from the content) and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format the content is in.
    pub format: image::ImageFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Header {
    /// Width times height.
    pub fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Reads the header of the image at `path` (a few bytes, never the pixels); the format comes
/// from the content. Errors name the file; the pixel limit is NOT checked here (see
/// [`check_pixels`]).
pub fn read_header(path: &Path) -> Result<Header> {
    let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    header_of(reader, path)
}

/// As [`read_header`] on encoded `bytes`; `name` labels errors.
pub fn header_of_bytes(bytes: &[u8], name: &str) -> Result<Header> {
    header_of(ImageReader::new(Cursor::new(bytes)), name)
}

fn header_of<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    name: impl AsRef<Path>,
) -> Result<Header> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::image(
            name.as_ref(),
            format!("cannot read the image header ({e}); replace or remove this file"),
        )
    };
    let reader = reader.with_guessed_format().map_err(|e| unreadable(&e))?;
    let format = reader
        .format()
        .ok_or_else(|| unreadable(&"not a PNG, JPEG, BMP or TIFF file"))?;
    let (width, height) = reader.into_dimensions().map_err(|e| unreadable(&e))?;
    Ok(Header {
        format,
        width,
        height,
    })
}

/// Refuses a `width x height` image above `max_pixels` (the decoders' limit) with an error
/// naming `name`.
pub fn check_pixels(
    width: u32,
    height: u32,
    max_pixels: u64,
    name: impl AsRef<Path>,
) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(Error::image(
            name,
            format!(
                "image is {width}x{height} = {pixels} pixels, above the limit of {max_pixels} \
                 pixels (a decompression bomb or a far larger image than expected); resize it first"
            ),
        ));
    }
    Ok(())
}

/// Whether the encoded `bytes` end as a complete file of `format`: `Err(reason)` for a JPEG
/// whose data stops before its end-of-image marker (the decoders refuse it), `Ok(false)` for a
/// PNG without its closing IEND chunk (cut short: its pixels may still be whole, only a decode
/// tells), `Ok(true)` otherwise.
pub fn check_complete(
    bytes: &[u8],
    format: image::ImageFormat,
) -> std::result::Result<bool, &'static str> {
    match format {
        image::ImageFormat::Jpeg if !jpeg_complete(bytes) => Err(TRUNCATED_JPEG),
        image::ImageFormat::Png => Ok(bytes.windows(4).rev().any(|w| w == b"IEND")),
        _ => Ok(true),
    }
}

const TRUNCATED_JPEG: &str = "truncated JPEG: the data ends before the end-of-image marker \
     (missing data); the file is incomplete or damaged";

/// Decodes the image at `path` to 8-bit RGB exactly as Pillow's `convert("RGB")` does.
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb_bytes(&bytes, &path.to_string_lossy())
}

/// Decodes encoded image `bytes` to 8-bit RGB (see [`decode_rgb`]); `name` labels errors.
pub fn decode_rgb_bytes(bytes: &[u8], name: &str) -> Result<RgbImage> {
    decode_rgb_bytes_with_limit(bytes, name, DEFAULT_MAX_PIXELS)
}

/// As [`decode_rgb_bytes`], refusing images with more than `max_pixels` pixels.
pub fn decode_rgb_bytes_with_limit(bytes: &[u8], name: &str, max_pixels: u64) -> Result<RgbImage> {
    let img = decode_dynamic(bytes, name, max_pixels)?;
    to_pil_rgb(img, name)
}

/// Decodes the mask at `path` to a binary image: 255 where Pillow's `convert("L")` is nonzero,
/// 0 elsewhere.
pub fn decode_mask(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_mask_bytes(&bytes, &path.to_string_lossy())
}

/// The mask's grey levels as Pillow's `Image.open(p).convert("L")` gives them, not binarised.
pub fn decode_mask_gray(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_gray_levels(&bytes, &path.to_string_lossy())
}

/// As [`decode_mask`] on encoded `bytes`; `name` labels errors.
pub fn decode_mask_bytes(bytes: &[u8], name: &str) -> Result<GrayImage> {
    let gray = decode_gray_levels(bytes, name)?;
    let (w, h) = (gray.width(), gray.height());
    let binary: Vec<u8> = gray
        .into_raw()
        .into_iter()
        .map(|v| if v > 0 { 255 } else { 0 })
        .collect();
    GrayImage::from_raw(w, h, binary)
        .ok_or_else(|| Error::image(name, "mask buffer does not match its dimensions"))
}

/// Pillow's `convert("L")` of encoded `bytes`; `name` labels errors.
fn decode_gray_levels(bytes: &[u8], name: &str) -> Result<GrayImage> {
    let img = decode_dynamic(bytes, name, DEFAULT_MAX_PIXELS)?;
    let (w, h) = (img.width(), img.height());
    let gray = match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_) => to_pil_rgb(img, name)?.pixels().map(|p| p[0]).collect(),
        other => to_pil_rgb(other, name)?
            .pixels()
            .map(|p| pil_luma(p.0))
            .collect::<Vec<u8>>(),
    };
    GrayImage::from_raw(w, h, gray)
        .ok_or_else(|| Error::image(name, "mask buffer does not match its dimensions"))
}

/// Pillow's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point, rounded).
fn pil_luma([r, g, b]: [u8; 3]) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Reads the header, enforces the pixel budget, then decodes.
fn decode_dynamic(bytes: &[u8], name: &str, max_pixels: u64) -> Result<DynamicImage> {
    let undecodable = |e: &dyn std::fmt::Display| {
        Error::image(
            name,
            format!("cannot decode image ({e}); expected a PNG, JPEG, BMP or TIFF file"),
        )
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| undecodable(&e))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_complete(bytes) {
        return Err(Error::image(name, TRUNCATED_JPEG));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(if reader.format() == Some(image::ImageFormat::Png) {
        // The `png` crate's limit covers its ancillary chunks and row buffer only; the image
        // buffer is sized by the header (checked against `max_pixels` below).
        PNG_ANCILLARY_BYTES
    } else {
        // Room for the decoded image at 16 bits x 4 channels plus the decoder's own buffers.
        max_pixels.saturating_mul(8).saturating_add(64 << 20)
    });
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| undecodable(&e))?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, max_pixels, name)?;
    DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&e))
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so both
/// byte pairs there are real markers; an embedded thumbnail's scan and end come before the main
/// image's last scan.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    last_scan.is_some_and(|s| bytes[s..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// Converts any decoded image to RGB8 with Pillow's `convert("RGB")` rules (module docs).
fn to_pil_rgb(img: DynamicImage, name: &str) -> Result<RgbImage> {
    let (w, h) = (img.width(), img.height());
    let gray = |v: u8| [v, v, v];
    let high = |v: u16| (v >> 8) as u8;
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(i) => return Ok(i),
        DynamicImage::ImageRgba8(i) => i.pixels().flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(i) => i.pixels().flat_map(|p| gray(p[0])).collect(),
        DynamicImage::ImageLumaA8(i) => i.pixels().flat_map(|p| gray(p[0])).collect(),
        DynamicImage::ImageLuma16(i) => {
            i.pixels().flat_map(|p| gray(p[0].min(255) as u8)).collect()
        }
        DynamicImage::ImageLumaA16(i) => i.pixels().flat_map(|p| gray(high(p[0]))).collect(),
        DynamicImage::ImageRgb16(i) => i.pixels().flat_map(|p| p.0.map(high)).collect(),
        DynamicImage::ImageRgba16(i) => i
            .pixels()
            .flat_map(|p| [high(p[0]), high(p[1]), high(p[2])])
            .collect(),
        other => {
            return Err(Error::image(
                name,
                format!(
                    "unsupported pixel format {:?}; convert it to 8- or 16-bit gray or RGB",
                    other.color()
                ),
            ))
        }
    };
    RgbImage::from_raw(w, h, data)
        .ok_or_else(|| Error::image(name, "decoded buffer does not match its dimensions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness_needs_an_end_marker_after_the_last_scan() {
        let scan = [0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00, 3];
        assert!(!jpeg_complete(&scan));
        let mut whole = scan.to_vec();
        whole.extend_from_slice(&[0xFF, 0xD9, b'x', b'y']); // trailing bytes are fine
        assert!(jpeg_complete(&whole));
        // A thumbnail's end marker before the main scan does not count.
        let thumb = [0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 5, 6];
        assert!(!jpeg_complete(&thumb));
    }

    #[test]
    fn pil_luma_matches_known_pillow_values() {
        // Pillow: Image.new("RGB",(1,1),c).convert("L").getpixel((0,0))
        assert_eq!(pil_luma([255, 255, 255]), 255);
        assert_eq!(pil_luma([255, 0, 0]), 76);
        assert_eq!(pil_luma([0, 255, 0]), 150);
        assert_eq!(pil_luma([0, 0, 255]), 29);
        assert_eq!(pil_luma([0, 0, 1]), 0);
    }
}

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
//! [`open_file`] and [`open_bytes`] are the ONLY way into an image, for a header read as for a
//! decode (no other module builds an image reader; a test scans the sources for it): they sniff
//! the format from the content and apply the memory limits before the first chunk is parsed, so
//! a header read is bounded exactly as a decode is. The limits:
//! - the pixels: every decode reads the header first and refuses images above a pixel budget
//!   ([`DEFAULT_MAX_PIXELS`], or the caller's) with a clear error, so that a decompression bomb
//!   cannot exhaust memory;
//! - the decoders' own allocations beyond the pixels: a PNG's ancillary chunks and row buffer get
//!   at most [`PNG_ANCILLARY_BYTES`] (the `png` crate's limit, which it applies while it reads
//!   the header: an iCCP profile is inflated then);
//! - a PNG whose ICC profile (iCCP chunk) inflates beyond [`PNG_ANCILLARY_BYTES`] is refused
//!   with an error naming the file (a 1 MB file inflating to a gigabyte is a decompression bomb;
//!   Pillow refuses such a profile too). The check streams the profile through the inflater
//!   without keeping it.
//!
//! A JPEG whose data stops before its end-of-image marker is an error (the decoder would fill
//! the missing rows with gray and only log it; Pillow refuses it too). Errors name the file.
//!
//! The format is always sniffed from the content, never taken from the file name: a JPEG named
//! `.png` decodes as the JPEG it is, in every command. [`Opened::header`] gives the format and
//! size from the header alone (what discovery and `cras data inspect` check), under the same
//! memory limits; the pixel limit is checked by the caller with [`check_pixels`] (a header read
//! reports the size whatever it is).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::{Error, Result};

/// Largest image, in pixels, that the decoders accept by default (100 megapixels).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Bytes a PNG decoder may allocate besides the image itself: ancillary chunks (iCCP, text,
/// eXIf, inflated where compressed) and one row buffer (rows up to 2 million 16-bit RGBA pixels).
/// An ICC profile inflating beyond it is refused.
pub const PNG_ANCILLARY_BYTES: u64 = 16 << 20;

/// What an image's header says: its format (sniffed from the content) and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format the content is in.
    pub format: ImageFormat,
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

/// An image opened by [`open_file`] or [`open_bytes`]: its format known, its content checked
/// for a PNG profile bomb, not yet decoded. Read its [`Opened::header`] or decode it
/// ([`Opened::rgb`], [`Opened::mask`], [`Opened::mask_gray`]), both under the module's limits.
pub struct Opened<R> {
    reader: R,
    /// `None` when the content is none of the formats (a header read or decode says so).
    format: Option<ImageFormat>,
    name: PathBuf,
}

/// Opens the image file at `path` (see [`Opened`]); errors name the file. Only the bytes a
/// header read or decode needs are read.
pub fn open_file(path: &Path) -> Result<Opened<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Opened::new(BufReader::new(file), path)
}

/// Opens encoded image `bytes` (see [`Opened`]); `name` labels errors.
pub fn open_bytes<'a>(bytes: &'a [u8], name: &str) -> Result<Opened<Cursor<&'a [u8]>>> {
    Opened::new(Cursor::new(bytes), Path::new(name))
}

impl<R: BufRead + Seek> Opened<R> {
    /// Sniffs the format and checks a PNG's profile (module docs); the reader is left at the
    /// start of the content.
    fn new(reader: R, name: &Path) -> Result<Self> {
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::image(
                name,
                format!("cannot read the image header ({e}); replace or remove this file"),
            )
        };
        // The reader only sniffs here (a few bytes, then back to the start): no decoder yet.
        let sniffed = ImageReader::new(reader)
            .with_guessed_format()
            .map_err(|e| unreadable(&e))?;
        let format = sniffed.format();
        let mut reader = sniffed.into_inner();
        if format == Some(ImageFormat::Png) {
            let profile = png_profile_size(&mut reader, PNG_ANCILLARY_BYTES);
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| unreadable(&e))?;
            if profile.is_some_and(|n| n > PNG_ANCILLARY_BYTES) {
                return Err(Error::image(
                    name,
                    format!(
                        "the PNG's ICC profile (iCCP chunk) inflates to more than {} MiB, a \
                         decompression bomb; refused (re-save the image without its profile)",
                        PNG_ANCILLARY_BYTES >> 20
                    ),
                ));
            }
        }
        Ok(Opened {
            reader,
            format,
            name: name.to_path_buf(),
        })
    }

    /// The format the content is in; `None` when it is none of PNG, JPEG, BMP or TIFF.
    pub fn format(&self) -> Option<ImageFormat> {
        self.format
    }

    /// The image reader with the memory limits set, BEFORE any decoder reads a chunk (the PNG
    /// decoder inflates ancillary chunks while it reads the header).
    fn bounded(self, max_pixels: u64) -> (ImageReader<R>, PathBuf) {
        let mut reader = ImageReader::new(self.reader);
        if let Some(format) = self.format {
            reader.set_format(format);
        }
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(if self.format == Some(ImageFormat::Png) {
            // The `png` crate's limit covers its ancillary chunks and row buffer only; the
            // image buffer is sized by the header (checked against `max_pixels` by a decode).
            PNG_ANCILLARY_BYTES
        } else {
            // Room for the decoded image at 16 bits x 4 channels plus the decoder's own buffers.
            max_pixels.saturating_mul(8).saturating_add(64 << 20)
        });
        reader.limits(limits);
        (reader, self.name)
    }

    /// The format and size from the header alone, under the memory limits; the pixel limit is
    /// not checked (see [`check_pixels`]).
    pub fn header(self) -> Result<Header> {
        let unreadable = |name: &Path, e: &dyn std::fmt::Display| {
            Error::image(
                name,
                format!("cannot read the image header ({e}); replace or remove this file"),
            )
        };
        let Some(format) = self.format else {
            return Err(unreadable(&self.name, &"not a PNG, JPEG, BMP or TIFF file"));
        };
        let (reader, name) = self.bounded(DEFAULT_MAX_PIXELS);
        let (width, height) = reader
            .into_decoder()
            .map(|d| d.dimensions())
            .map_err(|e| unreadable(&name, &e))?;
        Ok(Header {
            format,
            width,
            height,
        })
    }

    /// Reads the header, enforces the pixel budget, then decodes.
    fn decode(mut self, max_pixels: u64) -> Result<DynamicImage> {
        let undecodable = |name: &Path, e: &dyn std::fmt::Display| {
            Error::image(
                name,
                format!("cannot decode image ({e}); expected a PNG, JPEG, BMP or TIFF file"),
            )
        };
        if self.format == Some(ImageFormat::Jpeg) {
            let complete = jpeg_complete_in(&mut self.reader);
            let rewound = self.reader.seek(SeekFrom::Start(0));
            match (complete, rewound) {
                (Ok(true), Ok(_)) => {}
                (Ok(false), _) => return Err(Error::image(&self.name, TRUNCATED_JPEG)),
                (Err(e), _) | (_, Err(e)) => return Err(Error::io(&self.name, e)),
            }
        }
        let (reader, name) = self.bounded(max_pixels);
        let decoder = reader.into_decoder().map_err(|e| undecodable(&name, &e))?;
        let (w, h) = decoder.dimensions();
        check_pixels(w, h, max_pixels, &name)?;
        DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&name, &e))
    }

    /// Decodes to 8-bit RGB exactly as Pillow's `convert("RGB")` does, refusing images with
    /// more than `max_pixels` pixels.
    pub fn rgb(self, max_pixels: u64) -> Result<RgbImage> {
        let name = self.name.clone();
        to_pil_rgb(self.decode(max_pixels)?, &name)
    }

    /// Decodes a mask to a binary image: 255 where Pillow's `convert("L")` is nonzero, 0
    /// elsewhere.
    pub fn mask(self) -> Result<GrayImage> {
        let name = self.name.clone();
        let gray = self.mask_gray()?;
        let (w, h) = (gray.width(), gray.height());
        let binary: Vec<u8> = gray
            .into_raw()
            .into_iter()
            .map(|v| if v > 0 { 255 } else { 0 })
            .collect();
        GrayImage::from_raw(w, h, binary)
            .ok_or_else(|| Error::image(&name, "mask buffer does not match its dimensions"))
    }

    /// The grey levels of Pillow's `convert("L")`, not binarised.
    pub fn mask_gray(self) -> Result<GrayImage> {
        let name = self.name.clone();
        let img = self.decode(DEFAULT_MAX_PIXELS)?;
        let (w, h) = (img.width(), img.height());
        let gray = match img {
            DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_) => {
                to_pil_rgb(img, &name)?.pixels().map(|p| p[0]).collect()
            }
            other => to_pil_rgb(other, &name)?
                .pixels()
                .map(|p| pil_luma(p.0))
                .collect::<Vec<u8>>(),
        };
        GrayImage::from_raw(w, h, gray)
            .ok_or_else(|| Error::image(&name, "mask buffer does not match its dimensions"))
    }
}

/// The inflated size of a PNG's ICC profile, counted up to `limit + 1` bytes without keeping
/// them; `None` without an iCCP chunk before the image data, or when the chunks or the profile
/// cannot be read (the decoder then says what is wrong, or drops a damaged profile as before).
fn png_profile_size<R: BufRead + Seek>(r: &mut R, limit: u64) -> Option<u64> {
    r.seek(SeekFrom::Start(8)).ok()?; // after the signature
                                      // Ancillary chunks come before the image data; a file with thousands of them is not an
                                      // image worth walking.
    for _ in 0..4096 {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
        match &head[4..] {
            b"IDAT" | b"IEND" => return None,
            b"iCCP" => {
                let mut chunk = r.by_ref().take(len);
                // The profile name (1 to 79 bytes), its NUL, the compression method (0).
                let mut name = Vec::new();
                chunk.by_ref().take(81).read_until(0, &mut name).ok()?;
                let mut method = [0u8; 1];
                chunk.read_exact(&mut method).ok()?;
                let inflater = flate2::bufread::ZlibDecoder::new(chunk);
                return std::io::copy(&mut inflater.take(limit + 1), &mut std::io::sink()).ok();
            }
            _ => {
                r.seek_relative(len as i64 + 4).ok()?; // data and CRC
            }
        }
    }
    None
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

/// Decodes the image at `path` to 8-bit RGB exactly as Pillow's `convert("RGB")` does
/// (`open_file(path)?.rgb(DEFAULT_MAX_PIXELS)`).
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    open_file(path)?.rgb(DEFAULT_MAX_PIXELS)
}

/// Decodes encoded image `bytes` to 8-bit RGB (see [`decode_rgb`]); `name` labels errors.
pub fn decode_rgb_bytes(bytes: &[u8], name: &str) -> Result<RgbImage> {
    decode_rgb_bytes_with_limit(bytes, name, DEFAULT_MAX_PIXELS)
}

/// As [`decode_rgb_bytes`], refusing images with more than `max_pixels` pixels.
pub fn decode_rgb_bytes_with_limit(bytes: &[u8], name: &str, max_pixels: u64) -> Result<RgbImage> {
    open_bytes(bytes, name)?.rgb(max_pixels)
}

/// Decodes the mask at `path` to a binary image: 255 where Pillow's `convert("L")` is nonzero,
/// 0 elsewhere ([`Opened::mask`]).
pub fn decode_mask(path: &Path) -> Result<GrayImage> {
    open_file(path)?.mask()
}

/// The mask's grey levels as Pillow's `Image.open(p).convert("L")` gives them, not binarised
/// ([`Opened::mask_gray`]).
pub fn decode_mask_gray(path: &Path) -> Result<GrayImage> {
    open_file(path)?.mask_gray()
}

/// As [`decode_mask`] on encoded `bytes`; `name` labels errors.
pub fn decode_mask_bytes(bytes: &[u8], name: &str) -> Result<GrayImage> {
    open_bytes(bytes, name)?.mask()
}

/// Pillow's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point, rounded).
fn pil_luma([r, g, b]: [u8; 3]) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so both
/// byte pairs there are real markers; an embedded thumbnail's scan and end come before the main
/// image's last scan.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let mut markers = JpegEnd::default();
    markers.feed(bytes);
    markers.complete()
}

/// [`jpeg_complete`] of the rest of `r`, read in buffer-sized pieces (never the whole file).
fn jpeg_complete_in<R: BufRead>(r: &mut R) -> std::io::Result<bool> {
    let mut markers = JpegEnd::default();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(markers.complete());
        }
        markers.feed(buf);
        let n = buf.len();
        r.consume(n);
    }
}

/// The markers seen so far (see [`jpeg_complete`]), fed piece by piece.
#[derive(Default)]
struct JpegEnd {
    /// The last byte fed was 0xFF.
    after_ff: bool,
    /// A start-of-scan marker was seen.
    scan: bool,
    /// An end-of-image marker was seen after the last start-of-scan.
    end_after_scan: bool,
}

impl JpegEnd {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.after_ff {
                match b {
                    0xDA => {
                        self.scan = true;
                        self.end_after_scan = false;
                    }
                    0xD9 if self.scan => self.end_after_scan = true,
                    _ => {}
                }
            }
            self.after_ff = b == 0xFF;
        }
    }

    fn complete(&self) -> bool {
        self.scan && self.end_after_scan
    }
}

/// Converts any decoded image to RGB8 with Pillow's `convert("RGB")` rules (module docs).
fn to_pil_rgb(img: DynamicImage, name: &Path) -> Result<RgbImage> {
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
    fn jpeg_completeness_read_in_pieces_is_the_same() {
        let cases: [&[u8]; 4] = [
            &[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00, 3],
            &[0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0xD9, b'x'],
            &[0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 5, 6],
            &[0xFF, 0xFF, 0xDA, 0xFF, 0xFF, 0xD9],
        ];
        for bytes in cases {
            for piece in [1, 2, 3, 64] {
                let mut r = std::io::BufReader::with_capacity(piece, bytes);
                assert_eq!(
                    jpeg_complete_in(&mut r).unwrap(),
                    jpeg_complete(bytes),
                    "{bytes:?} in pieces of {piece}"
                );
            }
        }
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

//! Hostile inputs, built small: PNGs whose ancillary chunks inflate to a gigabyte, images of an
//! extreme aspect ratio, truncated files. Shared by the tests and `examples/hostile_inputs.rs`.
#![allow(dead_code)]

use std::io::{Cursor, Write};

/// `img` encoded in `format`.
pub fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding");
    out.into_inner()
}

/// A `w x h` RGB PNG of a ramp.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Png,
    )
}

/// A zlib stream of `n` zero bytes, built in 1 MiB steps (never holding `n` bytes).
pub fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        z.write_all(&block[..k]).expect("deflate");
        left -= k;
    }
    z.finish().expect("deflate")
}

/// One PNG chunk: length, type, data, CRC.
pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

/// A small valid PNG with an iCCP chunk (after IHDR) whose profile inflates to `inflated` bytes.
pub fn iccp_bomb(inflated: usize) -> Vec<u8> {
    let base = png(8, 8);
    let ihdr_end = 8 + 4 + 4 + 13 + 4;
    let mut data = b"bomb\0\0".to_vec(); // profile name, NUL, compression method 0
    data.extend_from_slice(&zlib_zeros(inflated));
    let mut out = base[..ihdr_end].to_vec();
    out.extend_from_slice(&chunk(b"iCCP", &data));
    out.extend_from_slice(&base[ihdr_end..]);
    out
}

/// [`iccp_bomb`] of 1 GiB, built once per process (compressing a gigabyte takes seconds).
pub fn iccp_bomb_1gib() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| iccp_bomb(1 << 30))
}

/// Peak resident memory of this process so far (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A PNG whose header declares `w x h` RGB pixels, with one tiny IDAT and its IEND: a header
/// bomb (a few dozen bytes claiming gigabytes).
pub fn header_bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&chunk(b"IHDR", &ihdr));
    out.extend_from_slice(&chunk(b"IDAT", &zlib_zeros(64)));
    out.extend_from_slice(&chunk(b"IEND", &[]));
    out
}

/// A `w x h` RGB JPEG of a ramp.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 90]));
    encode(
        &image::DynamicImage::ImageRgb8(img),
        image::ImageFormat::Jpeg,
    )
}

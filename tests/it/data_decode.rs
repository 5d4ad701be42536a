//! Decoding of every mode and bit depth to RGB8 with Pillow's `convert("RGB")` rules, masks to
//! binary, the decompression-bomb limits (pixels, an ICC profile bomb), and the one way into an
//! image (`open_file` / `open_bytes`). Files are generated here with the image crate.

use std::io::Cursor;

use cras::data::decode::{
    decode_mask, decode_rgb, decode_rgb_bytes, decode_rgb_bytes_with_limit, open_bytes, open_file,
    PNG_ANCILLARY_BYTES,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// 4x2 ramp of 16-bit values including values above 255 (Pillow clips 16-bit gray there).
const V16: [u16; 8] = [0, 1, 255, 256, 300, 0x7f80, 0x80ff, 65535];

fn rgb_of(bytes: &[u8]) -> Vec<[u8; 3]> {
    decode_rgb_bytes(bytes, "test")
        .unwrap()
        .pixels()
        .map(|p| p.0)
        .collect()
}

#[test]
fn eight_bit_modes_match_pillow_convert_rgb() {
    let vals: [u8; 8] = [0, 1, 17, 100, 128, 200, 254, 255];
    let gray = ImageBuffer::from_fn(4, 2, |x, y| Luma([vals[(y * 4 + x) as usize]]));
    let la = ImageBuffer::from_fn(4, 2, |x, y| LumaA([vals[(y * 4 + x) as usize], 7]));
    let rgb = ImageBuffer::from_fn(4, 2, |x, y| {
        let v = vals[(y * 4 + x) as usize];
        Rgb([v, 255 - v, v / 2])
    });
    let rgba = ImageBuffer::from_fn(4, 2, |x, y| {
        let v = vals[(y * 4 + x) as usize];
        Rgba([v, 255 - v, v / 2, 3]) // alpha dropped, no compositing
    });
    let gray_expect: Vec<[u8; 3]> = vals.iter().map(|&v| [v, v, v]).collect();
    let rgb_expect: Vec<[u8; 3]> = vals.iter().map(|&v| [v, 255 - v, v / 2]).collect();
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let cases = [
            (DynamicImage::ImageLuma8(gray.clone()), &gray_expect),
            (DynamicImage::ImageLumaA8(la.clone()), &gray_expect),
            (DynamicImage::ImageRgb8(rgb.clone()), &rgb_expect),
            (DynamicImage::ImageRgba8(rgba.clone()), &rgb_expect),
        ];
        for (img, expect) in cases {
            if format == ImageFormat::Tiff && matches!(img, DynamicImage::ImageLumaA8(_)) {
                continue; // the tiff encoder writes no gray+alpha
            }
            assert_eq!(
                &rgb_of(&encode(&img, format)),
                expect,
                "{format:?} {:?}",
                img.color()
            );
        }
    }
    let bmp = encode(&DynamicImage::ImageRgb8(rgb), ImageFormat::Bmp);
    assert_eq!(rgb_of(&bmp), rgb_expect);
}

#[test]
fn sixteen_bit_modes_match_pillow() {
    // Pillow 13: 16-bit gray ("I;16") -> RGB clips at 255; 16-bit RGB/RGBA/LA keep the high byte.
    let gray = ImageBuffer::from_fn(4, 2, |x, y| Luma([V16[(y * 4 + x) as usize]]));
    let clipped: Vec<[u8; 3]> = V16.iter().map(|&v| [v.min(255) as u8; 3]).collect();
    let high: Vec<[u8; 3]> = V16.iter().map(|&v| [(v >> 8) as u8; 3]).collect();
    for format in [ImageFormat::Png, ImageFormat::Tiff] {
        let bytes = encode(&DynamicImage::ImageLuma16(gray.clone()), format);
        assert_eq!(rgb_of(&bytes), clipped, "{format:?}");
    }
    let la = ImageBuffer::from_fn(4, 2, |x, y| LumaA([V16[(y * 4 + x) as usize], 9]));
    let bytes = encode(&DynamicImage::ImageLumaA16(la), ImageFormat::Png);
    assert_eq!(rgb_of(&bytes), high);
    let rgb16 = ImageBuffer::from_fn(4, 2, |x, y| Rgb([V16[(y * 4 + x) as usize]; 3]));
    let bytes = encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png);
    assert_eq!(rgb_of(&bytes), high);
    let rgba16 = ImageBuffer::from_fn(4, 2, |x, y| Rgba([V16[(y * 4 + x) as usize], 1, 2, 3]));
    let bytes = encode(&DynamicImage::ImageRgba16(rgba16), ImageFormat::Png);
    let expect: Vec<[u8; 3]> = V16.iter().map(|&v| [(v >> 8) as u8, 0, 0]).collect();
    assert_eq!(rgb_of(&bytes), expect);
}

#[test]
fn jpeg_decodes_close_to_its_source() {
    let rgb = ImageBuffer::from_fn(16, 16, |x, y| Rgb([(x * 16) as u8, (y * 16) as u8, 128]));
    let bytes = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg);
    let out = decode_rgb_bytes(&bytes, "j.jpg").unwrap();
    assert_eq!(out.dimensions(), (16, 16));
    let max_diff = out
        .as_raw()
        .iter()
        .zip(rgb.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(max_diff < 40, "max diff {max_diff}");
}

#[test]
fn masks_become_binary_and_files_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.png");
    let vals = [0u8, 1, 127, 255];
    ImageBuffer::from_fn(4, 1, |x, _| Luma([vals[x as usize]]))
        .save(&p)
        .unwrap();
    let m = decode_mask(&p).unwrap();
    assert_eq!(m.as_raw(), &vec![0, 255, 255, 255]);
    // RGB mask: Pillow's L of (0,0,4) is 0, of (0,0,5) is 1 (checked with Pillow 13).
    let q = dir.path().join("rgb_mask.png");
    let px = [[0u8, 0, 0], [0, 0, 4], [0, 0, 5], [255, 255, 255]];
    ImageBuffer::from_fn(4, 1, |x, _| Rgb(px[x as usize]))
        .save(&q)
        .unwrap();
    assert_eq!(decode_mask(&q).unwrap().as_raw(), &vec![0, 0, 255, 255]);

    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnonsense").unwrap();
    let msg = decode_rgb(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("broken.png") && msg.contains("cannot decode"),
        "{msg}"
    );
    let msg = decode_rgb(&dir.path().join("absent.png"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absent.png"), "{msg}");
}

#[test]
fn decompression_bomb_is_refused_before_allocation() {
    // A 54-byte BMP header claiming 30000 x 30000 24-bit pixels (2.7 GB) and no pixel data.
    let (w, h) = (30_000u32, 30_000u32);
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54 + w * h * 3).to_le_bytes());
    bmp.extend_from_slice(&[0, 0, 0, 0]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&w.to_le_bytes());
    bmp.extend_from_slice(&h.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0u8; 24]);
    let msg = decode_rgb_bytes(&bmp, "bomb.bmp").unwrap_err().to_string();
    assert!(
        msg.contains("bomb.bmp") && msg.contains("above the limit"),
        "{msg}"
    );

    // A real image over a small limit.
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(40, 30, Rgb([1, 2, 3])));
    let bytes = encode(&img, ImageFormat::Png);
    let msg = decode_rgb_bytes_with_limit(&bytes, "big.png", 1000)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("40x30") && msg.contains("1000"), "{msg}");
    assert!(decode_rgb_bytes_with_limit(&bytes, "ok.png", 1200).is_ok());
}

#[test]
fn a_truncated_jpeg_is_an_error_naming_the_file() {
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(64, 64, |x, y| {
        Rgb([x as u8 * 4, y as u8 * 4, (x ^ y) as u8])
    }));
    let jpeg = encode(&img, ImageFormat::Jpeg);
    assert_eq!(
        decode_rgb_bytes(&jpeg, "whole.jpg").unwrap().dimensions(),
        (64, 64)
    );
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"trailing bytes after the end marker");
    assert!(decode_rgb_bytes(&trailing, "trailing.jpg").is_ok());
    for cut in [jpeg.len() / 2, jpeg.len() - 2] {
        let msg = decode_rgb_bytes(&jpeg[..cut], "cut.jpg")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cut.jpg") && msg.contains("truncated JPEG"),
            "{msg}"
        );
    }
}

#[test]
fn an_icc_profile_bomb_is_refused_by_name_a_small_profile_is_read() {
    let small = crate::common::hostile::iccp_bomb(1 << 10);
    let header = open_bytes(&small, "small.png").unwrap().header().unwrap();
    assert_eq!(
        (header.format, header.width, header.height),
        (ImageFormat::Png, 8, 8)
    );
    assert_eq!(rgb_of(&small).len(), 64);
    let bomb = crate::common::hostile::iccp_bomb((PNG_ANCILLARY_BYTES + (1 << 20)) as usize);
    let header = open_bytes(&bomb, "bomb.png").and_then(|o| o.header());
    for e in [
        header.unwrap_err(),
        decode_rgb_bytes(&bomb, "bomb.png").unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(e.contains("bomb.png") && e.contains("ICC profile"), "{e}");
    }
    // From a file too (a header read, as discovery does, and a decode).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, &bomb).unwrap();
    assert!(open_file(&path).is_err());
    assert!(decode_rgb(&path)
        .unwrap_err()
        .to_string()
        .contains("ICC profile"));
}

/// The calls that build an image reader (and so could skip the limits [`open_file`] and
/// [`open_bytes`] set before the first chunk is parsed), anywhere in `src/` but the decode module.
#[test]
fn only_the_decode_module_opens_images() {
    const OPENERS: [&str; 7] = [
        "ImageReader",
        "image::open",
        "image::load",
        "load_from_memory",
        "into_dimensions",
        "image_dimensions",
        "image::io::Reader",
    ];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let owner = src.join("data").join("decode.rs");
    let mut files = vec![src.clone()];
    let mut found = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") && p != owner {
            let text = std::fs::read_to_string(&p).unwrap();
            for (n, line) in text.lines().enumerate() {
                if let Some(call) = OPENERS.iter().find(|c| line.contains(*c)) {
                    found.push(format!("{}:{}: {call}", p.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "images are opened only through cras::data::decode::open_file / open_bytes (their \
         limits bound header reads too):\n{}",
        found.join("\n")
    );
}

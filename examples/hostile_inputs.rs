//! Writes the hostile inputs of issue 14 into a folder, for measuring `cras predict` / `cras
//! serve` under them with `/usr/bin/time -v` (peak RSS), or with the command's own figure
//! (`cras --log warn,cras::memory=debug ...` logs `peak_rss_kib` at its end):
//! `cargo run --example hostile_inputs -- OUT_DIR`.
//!
//! - `iccp_bomb.png`: 8x8 pixels, an iCCP profile inflating to 1 GiB (~1 MiB file);
//! - `tall_20000.png`, `tall_1000000.png`: 1x20000 and 1x1000000 pixels;
//! - `big_6000.png`: 6000x6000 pixels of one colour (a few hundred KiB);
//! - `truncated.jpg`: a JPEG cut in half.

#[path = "../tests/common/hostile.rs"]
mod hostile;

fn main() -> anyhow::Result<()> {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: hostile_inputs OUT_DIR"))?,
    );
    std::fs::create_dir_all(&out)?;
    let flat = image::RgbImage::from_pixel(6000, 6000, image::Rgb([90, 90, 90]));
    let jpeg = hostile::encode(
        &image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(256, 256, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        })),
        image::ImageFormat::Jpeg,
    );
    let files = [
        ("iccp_bomb.png", hostile::iccp_bomb(1 << 30)),
        ("tall_20000.png", hostile::png(1, 20_000)),
        ("tall_1000000.png", hostile::png(1, 1_000_000)),
        (
            "big_6000.png",
            hostile::encode(
                &image::DynamicImage::ImageRgb8(flat),
                image::ImageFormat::Png,
            ),
        ),
        ("truncated.jpg", jpeg[..jpeg.len() / 2].to_vec()),
    ];
    for (name, bytes) in files {
        std::fs::write(out.join(name), &bytes)?;
        println!("{name}: {} bytes", bytes.len());
    }
    Ok(())
}

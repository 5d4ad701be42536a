//! Decoding memory under hostile inputs, measured as this process's peak RSS (one test per
//! binary, so no other test shares the high-water mark): a 1 MiB PNG whose iCCP profile
//! inflates to 1 GiB is refused by name, by a header read as by a decode, in a bounded few MiB,
//! and a 1x1000000 image preprocesses without allocating its resized size.
//!
//! A test binary of its own, not a module of `tests/it`: it measures this process's peak RSS,
//! which any test running beside it (in parallel or before it) would raise.

#[path = "common/hostile.rs"]
mod hostile;

use cras::data::decode::{decode_rgb_bytes, open_bytes};
use cras::data::Preprocess;

#[test]
fn hostile_images_decode_and_preprocess_in_bounded_memory() {
    let bomb = hostile::iccp_bomb(1 << 30);
    assert!(
        bomb.len() < 2 << 20,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let tall = hostile::png(1, 1_000_000);
    let before = hostile::peak_rss_kib();
    let header = open_bytes(&bomb, "bomb.png").and_then(|o| o.header());
    let decoded = decode_rgb_bytes(&bomb, "bomb.png");
    for e in [header.unwrap_err(), decoded.unwrap_err()] {
        let e = e.to_string();
        assert!(e.contains("bomb.png") && e.contains("ICC profile"), "{e}");
    }
    let tall = decode_rgb_bytes(&tall, "tall.png").unwrap();
    let input = Preprocess::reference().image(&tall);
    assert_eq!(input.len(), 3 * 288 * 288);
    let grown_mib = (hostile::peak_rss_kib() - before) / 1024;
    // Before: the profile was inflated up to the 864 MiB allocation limit (a header read: up
    // to the image crate's default 512 MiB) and the tall image resized whole (329 x 329000000
    // pixels: an abort).
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
}

//! Parity of the anomaly-map post-processing with PyTorch `F.interpolate(bilinear,
//! align_corners=False)` and `scipy.ndimage.gaussian_filter` (fixtures written by
//! `dev/gen_metrics_fixtures.py`), to 1e-5 absolute.

use cras::maps::{anomaly_map, gaussian_blur, upsample_bilinear};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");

fn read_f32(name: &str, expected_len: usize) -> Vec<f32> {
    let path = format!("{FIXTURES}/{name}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(bytes.len(), expected_len * 4, "{path}: wrong size");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn assert_all_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (worst, at) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| ((g - w).abs(), i))
        .fold((0.0f32, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(worst <= tol, "{what}: |diff| {worst} at {at}");
}

#[test]
fn grid36_to_288_matches_torch_then_scipy() {
    let patch = read_f32("grid36_patch.bin", 36 * 36);
    let want = read_f32("grid36_map288.bin", 288 * 288);
    let got = anomaly_map(&patch, 36, 288, 4.0);
    assert_all_close("anomaly_map 36->288 sigma 4", &got, &want, 1e-5);
}

#[test]
fn small_non_square_case_matches_torch_and_scipy() {
    let input = read_f32("small_input.bin", 5 * 7);
    let up = upsample_bilinear(&input, 5, 7, 23, 31);
    assert_all_close(
        "upsample 5x7->23x31",
        &up,
        &read_f32("small_upsampled.bin", 23 * 31),
        1e-5,
    );
    // sigma 4 has radius 16, wider than the image: repeated reflection.
    for (sigma, file) in [(4.0, "small_blur4.bin"), (1.5, "small_blur1_5.bin")] {
        let want = read_f32(file, 23 * 31);
        let got = gaussian_blur(&up, 23, 31, sigma);
        assert_all_close(&format!("blur sigma {sigma}"), &got, &want, 1e-5);
    }
}

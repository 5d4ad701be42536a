//! Map kernels, a leaf of the crate (imports nothing of it). Anomaly-map post-processing (spec
//! section 1, row "anomaly map"): patch scores `[g, g]` ->
//! bilinear upsampling to `[out, out]` (PyTorch `F.interpolate(mode="bilinear",
//! align_corners=False)`) -> Gaussian blur (`scipy.ndimage.gaussian_filter` defaults: mode
//! 'reflect', truncate 4.0). All buffers are row-major f32; arithmetic is f64.
//!
//! [`map_of`] is the one function turning a prediction's patch scores into its map (every
//! command, the exported graph's reference and the test-set probe use it);
//! [`upsample_bilinear`] also resizes maps and masks, [`gaussian_kernel`] gives the exported
//! graph its blur taps.

/// Sigma of the Gaussian blur of CRAS anomaly maps.
pub const SIGMA: f64 = 4.0;

/// The anomaly map `[side, side]` of patch scores `[grid, grid]` (a prediction's
/// `patch_scores`): bilinear upsampling, Gaussian blur of [`SIGMA`].
pub fn map_of(patch_scores: &[f32], grid: usize, side: usize) -> Vec<f32> {
    anomaly_map(patch_scores, grid, side, SIGMA)
}

/// Source taps and weights of 1-D linear interpolation from `n_in` to `n_out` samples with
/// half-pixel centres (align_corners=False): `src = (dst + 0.5) * n_in / n_out - 0.5`, clamped
/// below at 0, as PyTorch does.
fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f64)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|d| {
            let src = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

/// Bilinear upsampling (or downsampling) of `src` (`[h, w]`) to `[oh, ow]` with PyTorch
/// `F.interpolate(mode="bilinear", align_corners=False)` semantics. Returns an empty vector
/// when a size is 0 or `src.len() != h * w`.
pub fn upsample_bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    if h == 0 || w == 0 || oh == 0 || ow == 0 || src.len() != h * w {
        return Vec::new();
    }
    let ys = linear_taps(h, oh);
    let xs = linear_taps(w, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, ly) in &ys {
        let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
        for &(x0, x1, lx) in &xs {
            let top = (1.0 - lx) * r0[x0] as f64 + lx * r0[x1] as f64;
            let bottom = (1.0 - lx) * r1[x0] as f64 + lx * r1[x1] as f64;
            out.push(((1.0 - ly) * top + ly * bottom) as f32);
        }
    }
    out
}

/// The normalised 1-D Gaussian of `scipy.ndimage.gaussian_filter1d`: radius
/// `int(4 * sigma + 0.5)`, weights `exp(-x^2 / (2 sigma^2))` divided by their sum.
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let raw: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|v| v / sum).collect()
}

/// Index of `i` in a line of `n` samples under scipy's 'reflect' extension
/// (d c b a | a b c d | d c b a), for any distance outside the line.
fn reflect_index(i: i64, n: usize) -> usize {
    let period = 2 * n as i64;
    let m = i.rem_euclid(period);
    (if m >= n as i64 { period - 1 - m } else { m }) as usize
}

/// Correlates every line of `data` (`count` lines of `len` samples, `stride` apart between
/// samples and `line_step` apart between lines) with `kernel` under 'reflect' extension.
fn blur_lines(
    data: &[f64],
    len: usize,
    count: usize,
    stride: usize,
    line_step: usize,
    kernel: &[f64],
) -> Vec<f64> {
    let radius = (kernel.len() / 2) as i64;
    let mut out = vec![0.0; data.len()];
    // The line extended by `radius` reflected samples on each side.
    let mut padded = vec![0.0; len + kernel.len() - 1];
    for l in 0..count {
        for (p, v) in padded.iter_mut().enumerate() {
            *v = data[l * line_step + reflect_index(p as i64 - radius, len) * stride];
        }
        for (i, window) in padded.windows(kernel.len()).enumerate() {
            let acc: f64 = window.iter().zip(kernel).map(|(v, w)| v * w).sum();
            out[l * line_step + i * stride] = acc;
        }
    }
    out
}

/// `scipy.ndimage.gaussian_filter(src, sigma)` on `[h, w]` with its defaults (mode 'reflect',
/// truncate 4.0): separable, rows of axis 0 first then axis 1, computed in f64. Returns an empty
/// vector when a size is 0 or `src.len() != h * w`; `src` unchanged when `sigma <= 0`.
pub fn gaussian_blur(src: &[f32], h: usize, w: usize, sigma: f64) -> Vec<f32> {
    if h == 0 || w == 0 || src.len() != h * w {
        return Vec::new();
    }
    if sigma.is_nan() || sigma <= 0.0 {
        return src.to_vec();
    }
    let kernel = gaussian_kernel(sigma);
    let data: Vec<f64> = src.iter().map(|&v| v as f64).collect();
    let along_y = blur_lines(&data, h, w, w, 1, &kernel);
    let along_x = blur_lines(&along_y, w, h, 1, w, &kernel);
    along_x.iter().map(|&v| v as f32).collect()
}

/// Patch scores `[grid, grid]` -> the anomaly map `[out, out]`: bilinear upsampling, then a
/// Gaussian blur of `sigma` (4 in CRAS).
pub fn anomaly_map(patch_scores: &[f32], grid: usize, out: usize, sigma: f64) -> Vec<f32> {
    let up = upsample_bilinear(patch_scores, grid, grid, out, out);
    gaussian_blur(&up, out, out, sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_a_linear_ramp_interpolates_and_clamps() {
        // [0, 1] -> 4 samples: sources -0.25(clamped 0), 0.25, 0.75, 1.25(-> last).
        let out = upsample_bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        assert!(upsample_bilinear(&[0.0; 3], 2, 2, 4, 4).is_empty());
    }

    #[test]
    fn blur_preserves_constants_and_mass_and_reflects() {
        let flat = gaussian_blur(&[2.5; 35], 5, 7, 4.0);
        assert!(flat.iter().all(|&v| (v - 2.5).abs() < 1e-6));
        assert_eq!(gaussian_kernel(4.0).len(), 33);
        assert!((gaussian_kernel(4.0).iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(reflect_index(-1, 4), 0);
        assert_eq!(reflect_index(-5, 4), 3);
        assert_eq!(reflect_index(4, 4), 3);
        assert_eq!(reflect_index(9, 4), 1);
        // An impulse in the middle spreads symmetrically.
        let mut img = vec![0.0f32; 81];
        img[40] = 1.0;
        let b = gaussian_blur(&img, 9, 9, 1.0);
        assert!((b[39] - b[41]).abs() < 1e-7 && (b[31] - b[49]).abs() < 1e-7);
        assert!(b[40] > b[39]);
    }
}

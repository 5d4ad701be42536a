//! Pillow-exact image resizing and the ImageNet normalisation: the pixel kernels every
//! preprocessing path (whole images, tiles, masks) shares. Imports nothing else of the crate.
//!
//! Input: an interleaved 8-bit image (`ch` = 1 or 3 channels, row-major `w x h`). Output: the
//! resized (and cropped) 8-bit image; [`normalize`] maps one 8-bit channel value to the
//! network's input, `(v/255 - mean) / std` in f32.
//!
//! The resize is Pillow's BILINEAR with antialiasing, written here by hand rather than with
//! `fast_image_resize`: that crate's convolution follows Pillow-SIMD's fixed-point scheme, not
//! verified bit-exact with Pillow, while Pillow's algorithm is short and the fixtures check ours
//! to the bit. Pillow's steps: per output pixel, a window of input pixels weighted by a triangle
//! filter stretched by the downscale factor, normalised, rounded to 22-bit fixed point; a
//! horizontal pass then a vertical pass, each rounding and clipping to uint8. Pillow 13 runs the
//! vertical pass first when the height shrinks much more than the width (Pillow#9549); we keep
//! the classic order, identical whenever both axes scale alike (the reference's shorter-side
//! resize), and within one grey level otherwise.

/// ImageNet channel means used by the reference's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations used by the reference's `Normalize`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The network input of 8-bit value `v` of channel `c` (0 = R, 1 = G, 2 = B):
/// `(v/255 - mean[c]) / std[c]` in f32, as torchvision's `ToTensor` + `Normalize` compute it.
#[inline]
pub fn normalize(v: u8, c: usize) -> f32 {
    (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 22;

/// Per output pixel: the first input index and the fixed-point weights of its window.
struct Windows {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

impl Windows {
    /// The input indices all these windows read: `[first, end)`.
    fn span(&self) -> (usize, usize) {
        let first = self.starts.iter().copied().min().unwrap_or(0);
        let end = self
            .starts
            .iter()
            .zip(&self.weights)
            .map(|(s, w)| s + w.len())
            .max()
            .unwrap_or(first);
        (first, end)
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter,
/// for the output pixels `from..to` of a resize from `in_size` to `out_size` only.
fn windows(in_size: u32, out_size: u32, from: u32, to: u32) -> Windows {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // triangle support 1.0, stretched when downscaling
    let inv_scale = 1.0 / filter_scale; // Pillow multiplies by the reciprocal: same rounding
    let n = to.saturating_sub(from) as usize;
    let mut starts = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for xx in from..to {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| {
                let t = ((x as f64 - center + 0.5) * inv_scale).abs();
                if t < 1.0 {
                    1.0 - t
                } else {
                    0.0
                }
            })
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                if scaled < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        starts.push(xmin as usize);
        weights.push(fixed);
    }
    Windows { starts, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((out_w, out_h), BILINEAR)` on an interleaved 8-bit image with
/// `ch` channels (1 or 3): horizontal pass, uint8, then vertical pass. Returns `out_w*out_h*ch`.
pub fn resize_bilinear_pil(
    src: &[u8],
    w: u32,
    h: u32,
    ch: usize,
    out_w: u32,
    out_h: u32,
) -> Vec<u8> {
    resize_crop_bilinear_pil(src, (w, h), ch, (out_w, out_h), (0, 0, out_w, out_h))
}

/// The window `(left, top, crop_w, crop_h)` of [`resize_bilinear_pil`]'s output at
/// `(out_w, out_h)`, bit-identical to resizing then cropping, but computing only the output
/// pixels inside the window from the input rows and columns they read. Memory is bounded by the
/// input and the window whatever the resized size (a 1x1000000 image resized to a shorter side
/// of 329 would be 329 x 329000000 pixels).
pub fn resize_crop_bilinear_pil(
    src: &[u8],
    (w, h): (u32, u32),
    ch: usize,
    (out_w, out_h): (u32, u32),
    (left, top, crop_w, crop_h): (u32, u32, u32, u32),
) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let (cw, chh) = (crop_w as usize, crop_h as usize);
    // Rows of the input the vertical pass reads (all of the window's rows when it is skipped).
    let vertical = (out_h != h).then(|| windows(h, out_h, top, top + crop_h));
    let (row0, row1) = match &vertical {
        Some(win) => win.span(),
        None => (top as usize, top as usize + chh),
    };
    // Horizontal pass over those rows, window columns only (skipped, as in Pillow, when the
    // width does not change).
    let src_stride = w as usize * ch;
    let rows = &src[row0 * src_stride..row1 * src_stride];
    let stride = cw * ch;
    let horizontal: Vec<u8> = if out_w != w {
        let win = windows(w, out_w, left, left + crop_w);
        let mut tmp = vec![0u8; stride * (row1 - row0)];
        for (row, out_row) in rows
            .chunks_exact(src_stride)
            .zip(tmp.chunks_exact_mut(stride))
        {
            for (xx, (&start, weights)) in win.starts.iter().zip(&win.weights).enumerate() {
                for c in 0..ch {
                    let mut acc = half;
                    for (k, &wt) in weights.iter().enumerate() {
                        acc += row[(start + k) * ch + c] as i64 * wt as i64;
                    }
                    out_row[xx * ch + c] = clip8(acc);
                }
            }
        }
        tmp
    } else {
        let from = left as usize * ch;
        rows.chunks_exact(src_stride)
            .flat_map(|row| &row[from..from + stride])
            .copied()
            .collect()
    };
    let Some(win) = vertical else {
        return horizontal;
    };
    let mut out = vec![0u8; stride * chh];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let start = win.starts[yy] - row0;
        for (i, dst) in out_row.iter_mut().enumerate() {
            let mut acc = half;
            for (k, &wt) in win.weights[yy].iter().enumerate() {
                acc += horizontal[(start + k) * stride + i] as i64 * wt as i64;
            }
            *dst = clip8(acc);
        }
    }
    out
}

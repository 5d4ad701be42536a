//! The patch descriptor as ONNX nodes: the same map as `features::PatchDescriptor::forward`
//! (3x3 unfold in (channel, ky, kx) order -> adaptive average pool of each layer's vector to
//! `dims` -> bilinear resize to the first layer's grid -> concat -> pool again to `dims`),
//! computed without materialising the `9C`-wide unfolded tensors where the pooling is uniform.
//!
//! Pooling along the vector commutes with the per-plane resize, so each layer is pooled at its
//! native grid and only the pooled map is resized (two MatMuls with interpolation matrices).
//! The final pool (groups of `L` = number of layers) is folded into the per-layer pool when
//! `dims` is a multiple of `L` (bins never straddle two layers then). Per layer, with
//! `k = 9C/dims` values per bin:
//! - `k` a multiple of 9: whole channels per bin: ReduceMean over channel groups, then the 3x3
//!   window mean (AveragePool 3x3, zero padding counted, as the unfold's zero padding);
//! - `k` a multiple of 3: whole window rows per bin: a horizontal 3-mean (AveragePool 1x3),
//!   three vertical shifts (Pad + Slice) stacked in (channel, ky) order, ReduceMean per bin;
//! - otherwise (e.g. resnet18 layer1: 576 -> 256): a 3x3 Conv whose constant weight is the
//!   pooling matrix (the unfolded tensor is never formed either).
//!
//! Output: `[B, P, D]` (P = grid², row-major positions).

use super::graph::Graph;
use super::source::ModelSource;
use crate::Result;

/// Row-major `[n_out, n_in]` matrix of torch's bilinear resize (align_corners=False), f64.
pub fn interp_matrix(n_out: usize, n_in: usize) -> Vec<f64> {
    let mut m = vec![0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let lambda = src - i0 as f64;
        m[o * n_in + i0] += 1.0 - lambda;
        m[o * n_in + i1] += lambda;
    }
    m
}

/// torch's adaptive_avg_pool1d bins from `len_in` to `len_out`, then groups of `group`
/// consecutive bins averaged: the row-major `[len_out / group, len_in]` pooling matrix.
pub fn pool_matrix(len_in: usize, len_out: usize, group: usize) -> Vec<f32> {
    let rows = len_out / group;
    let mut m = vec![0f64; rows * len_in];
    for o in 0..len_out {
        let (s, e) = (o * len_in / len_out, ((o + 1) * len_in).div_ceil(len_out));
        for i in s..e {
            m[(o / group) * len_in + i] += 1.0 / ((e - s) * group) as f64;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Resizes `[B,C,h,h]` to `[B,C,n,n]` (bilinear, align_corners=False) with two MatMuls.
fn resize(g: &mut Graph, x: &str, h: usize, n: usize) -> String {
    if h == n {
        return x.to_string();
    }
    let m: Vec<f32> = interp_matrix(n, h).into_iter().map(|v| v as f32).collect();
    let mt: Vec<f32> = (0..h * n).map(|i| m[(i % n) * h + i / n]).collect();
    let rows = g.init_f32("resize_rows", &[n, h], &m);
    let cols_t = g.init_f32("resize_cols_t", &[h, n], &mt);
    let y = g.matmul(x, &cols_t); // [B,C,h,n]
    g.matmul(&rows, &y) // [B,C,n,n]
}

/// Pools one layer's unfolded vectors `[B,C,h,h]` -> `[B, dims/group, h, h]`, where `group`
/// consecutive bins of the `dims` are averaged too.
fn pool_layer(
    g: &mut Graph,
    x: &str,
    c: usize,
    h: usize,
    p: usize,
    dims: usize,
    group: usize,
) -> String {
    let len = c * p * p;
    let n_out = dims / group;
    let half = p / 2;
    let k = len / dims;
    let h = h as i64;
    if len.is_multiple_of(dims) && k.is_multiple_of(p * p) {
        let m = (k / (p * p) * group) as i64; // channels per output
        let y = if m > 1 {
            let r = g.reshape(x, &[0, n_out as i64, m, h, h]);
            g.reduce_mean(&r, &[2], false)
        } else {
            x.to_string()
        };
        if p == 1 {
            return y;
        }
        return g.average_pool(&y, [p, p], [half; 4]);
    }
    if len.is_multiple_of(dims) && k.is_multiple_of(p) {
        let rows = (k / p * group) as i64; // window rows per output
        let hm = g.average_pool(x, [1, p], [0, half, 0, half]); // row means [B,C,h,h]
        let hp = half as i64;
        let padded = g.pad(&hm, &[0, 0, hp, 0, 0, 0, hp, 0]);
        let u = g.unsqueeze(&padded, &[2]); // [B,C,1,h+2,h]
        let shifts: Vec<String> = (0..p as i64).map(|ky| g.slice(&u, 3, ky, ky + h)).collect();
        let refs: Vec<&str> = shifts.iter().map(String::as_str).collect();
        let stacked = g.concat(&refs, 2); // [B,C,p,h,h]: (channel, ky) order
        let r = g.reshape(&stacked, &[0, n_out as i64, rows, h, h]);
        return if rows > 1 {
            g.reduce_mean(&r, &[2], false)
        } else {
            g.reshape(&r, &[0, n_out as i64, h, h])
        };
    }
    // General bins: a p x p convolution with the pooling matrix as its weight.
    let w = pool_matrix(len, dims, group);
    let w = g.init_f32("descriptor_pool", &[n_out, c, p, p], &w);
    g.conv(x, &w, None, 1, half)
}

/// Adds the descriptor over the backbone outputs `feats`; returns `[B, P, D]`.
pub fn descriptor(g: &mut Graph, src: &ModelSource, feats: &[String]) -> Result<String> {
    let s = src.input_size;
    let n = src.grid;
    let (dims, l) = (src.dims, src.layers.len());
    // Fold the final pool into each layer's pool when no bin straddles two layers.
    let pre = l > 1 && dims.is_multiple_of(l);
    let group = if pre { l } else { 1 };
    let mut pooled = Vec::with_capacity(l);
    for ((f, layer), &c) in feats.iter().zip(&src.layers).zip(&src.channels) {
        let h = s / layer.stride();
        let y = pool_layer(g, f, c, h, src.patch_size, dims, group);
        pooled.push(resize(g, &y, h, n));
    }
    let refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
    let mut x = if l == 1 {
        pooled[0].clone()
    } else {
        g.concat(&refs, 1)
    };
    if l > 1 && !pre {
        let r = g.reshape(&x, &[0, dims as i64, l as i64, n as i64, n as i64]);
        x = g.reduce_mean(&r, &[2], false);
    }
    let t = g.transpose(&x, &[0, 2, 3, 1]); // [B,n,n,D]
    Ok(g.reshape(&t, &[-1, (n * n) as i64, dims as i64]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_matrix_matches_the_anomaly_map_upsampling() {
        for (n_in, n_out) in [(2, 4), (9, 36), (18, 36), (5, 3)] {
            let m = interp_matrix(n_out, n_in);
            for j in 0..n_in {
                let mut e = vec![0f32; n_in];
                e[j] = 1.0;
                let col = crate::maps::upsample_bilinear(&e, 1, n_in, 1, n_out);
                for o in 0..n_out {
                    assert!((m[o * n_in + j] - col[o] as f64).abs() < 1e-7);
                }
            }
        }
    }

    #[test]
    fn pool_matrix_rows_are_adaptive_pool_bins() {
        // 10 -> 4: bins [0,3), [2,5), [5,8), [7,10); grouped by 2: rows of 6 taps.
        let m = pool_matrix(10, 4, 1);
        assert_eq!(m.len(), 40);
        assert!((m[0] - 1.0 / 3.0).abs() < 1e-7 && m[3] == 0.0);
        assert!((m[10 + 2] - 1.0 / 3.0).abs() < 1e-7 && m[10 + 1] == 0.0);
        let g = pool_matrix(10, 4, 2);
        // Row 0 averages bins 0 and 1: index 2 belongs to both.
        assert!((g[2] - 1.0 / 3.0).abs() < 1e-7 && (g[0] - 1.0 / 6.0).abs() < 1e-7);
        for r in 0..2 {
            let sum: f32 = g[r * 10..(r + 1) * 10].iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
    }
}

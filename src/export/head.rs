//! The CRAS head as ONNX nodes, the same computation as the inference layer's candle scoring
//! (the adaptor, the class, then `HeadRef::score_adapted`): adaptor (MatMul Wᵀ + bias) ->
//! global match (cosine of the l2-normalised flattened map with
//! each class's unit center map: Gemm, ArgMax, ReduceMax) -> class (matched, or the stated
//! `stated_class` input when >= 0) -> local alignment (cosine sims `[B,P,P]` against the class's unit
//! centers, ArgMax, Gather of the chosen centers) -> discriminator on `[f ; f - R]` (fc1, BN
//! affine, LeakyRelu 0.2, fc2, BN affine, LeakyRelu 0.2, tail, Sigmoid) -> patch scores
//! `[B,g,g]`, image score (ReduceMax), anomaly map `A·P·Aᵀ` (`A` = blur ∘ upsample, f64).
//!
//! The center bank is stored once (`[K,P,D]`); its flattened unit-norm version is computed in the
//! graph from it (a constant subgraph: runtimes fold it when the session is created), and the
//! local alignment normalises the rows of the matched class's slice of it at run time, so a
//! runtime holds one bank-sized constant besides the residual table.
//!
//! With `bf16_products` the large products (adaptor, the discriminator's fc1 and fc2) take
//! bfloat16 operands (`Cast`, `MatMul`, `Cast` back); everything between them, the global
//! match and the alignment's cosines (where low precision moves the ranking) stay float32.

use super::graph::{Dim, Elem, Graph};
use super::source::{AffineSrc, HostTensor, LinearSrc, ModelSource};
use crate::Result;

/// `x / max(||x||, 1e-12)` along the last axis, as `model::layers::l2_normalize`.
fn l2_normalize(g: &mut Graph, x: &str, eps: &str) -> String {
    let ss = g.reduce_sum_square(x, &[-1], true);
    let norm = g.sqrt(&ss);
    let norm = g.max(&norm, eps);
    g.div(x, &norm)
}

/// `x · W[:, from..from + width]ᵀ` with W `[out, in]` (all columns when `cols` is `None`).
fn matmul_t(
    g: &mut Graph,
    x: &str,
    w: &HostTensor,
    name: &str,
    cols: Option<(usize, usize)>,
) -> String {
    let wt = w.transposed(); // [in, out]
    let (rows, out) = (wt.dims[0], wt.dims[1]);
    let (from, width) = cols.unwrap_or((0, rows));
    let w = g.init_f32(
        &format!("{name}.weight_t"),
        &[width, out],
        &wt.data[from * out..(from + width) * out],
    );
    g.matmul(x, &w)
}

/// `x Wᵀ (+ b)` (only the input columns `cols` of W when given).
fn linear(
    g: &mut Graph,
    x: &str,
    l: &LinearSrc,
    name: &str,
    cols: Option<(usize, usize)>,
) -> String {
    let y = matmul_t(g, x, &l.weight, name, cols);
    add_bias(g, y, l, name)
}

/// [`linear`] with bfloat16 operands when `bf16` (x and Wᵀ cast to bfloat16, the product cast
/// back to float32 before the bias).
fn product(g: &mut Graph, x: &str, l: &LinearSrc, name: &str, bf16: bool) -> String {
    if !bf16 {
        return linear(g, x, l, name, None);
    }
    let wt = l.weight.transposed(); // [in, out]
    let w = g.init_bf16(&format!("{name}.weight_t_bf16"), &wt.dims, &wt.data);
    let xb = g.cast_bf16(x, true);
    let y = g.matmul(&xb, &w);
    let y = g.cast_bf16(&y, false);
    add_bias(g, y, l, name)
}

fn add_bias(g: &mut Graph, y: String, l: &LinearSrc, name: &str) -> String {
    match &l.bias {
        Some(b) => {
            let b = g.init_f32(&format!("{name}.bias"), &b.dims, &b.data);
            g.add(&y, &b)
        }
        None => y,
    }
}

fn affine(g: &mut Graph, x: &str, a: &AffineSrc, name: &str) -> String {
    let scale = g.init_f32(&format!("{name}.scale"), &a.scale.dims, &a.scale.data);
    let shift = g.init_f32(&format!("{name}.shift"), &a.shift.dims, &a.shift.data);
    let y = g.mul(x, &scale);
    g.add(&y, &shift)
}

/// The anomaly-map matrix `A` `[out, grid]` (row-major): bilinear upsampling (align_corners
/// False) followed by scipy's Gaussian blur (reflect, truncate 4), both linear per axis, so the
/// map of patch scores P `[grid, grid]` is `A P Aᵀ`. Computed in f64.
pub fn map_matrix(grid: usize, out: usize, sigma: f64) -> Vec<f64> {
    let up = super::descriptor::interp_matrix(out, grid); // [out, grid]
    if sigma.is_nan() || sigma <= 0.0 {
        return up;
    }
    let kernel = crate::maps::gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as i64;
    let period = 2 * out as i64;
    let reflect = |i: i64| {
        let m = i.rem_euclid(period);
        (if m >= out as i64 { period - 1 - m } else { m }) as usize
    };
    let mut a = vec![0f64; out * grid];
    for i in 0..out {
        for (t, w) in kernel.iter().enumerate() {
            let src = reflect(i as i64 + t as i64 - radius);
            for j in 0..grid {
                a[i * grid + j] += w * up[src * grid + j];
            }
        }
    }
    a
}

/// fc1 with its two input halves summed: weight `W1a + W1b` `[D1, D]` (in f64), same bias.
fn summed_fc1(src: &ModelSource) -> LinearSrc {
    let w = &src.fc1.weight; // [D1, 2D]
    let (rows, cols) = (w.dims[0], w.dims[1] / 2);
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &w.data[r * 2 * cols..(r + 1) * 2 * cols];
        data.extend((0..cols).map(|c| (f64::from(row[c]) + f64::from(row[cols + c])) as f32));
    }
    LinearSrc {
        weight: HostTensor {
            dims: vec![rows, cols],
            data,
        },
        bias: src.fc1.bias.clone(),
    }
}

/// `T = bank · W1bᵀ` `[K*P, D1]`: every center's contribution to fc1 through the residual
/// half (computed with candle's CPU matmul, f32 as the graph would).
fn residual_table(src: &ModelSource) -> Result<HostTensor> {
    use candle_core::{Device, Tensor};
    let c = &src.centers; // [K,P,D]
    let (rows, d) = (c.dims[0] * c.dims[1], c.dims[2]);
    let w = &src.fc1.weight; // [D1, 2D]
    let d1 = w.dims[0];
    let bank = Tensor::from_slice(&c.data, (rows, d), &Device::Cpu)?;
    let w = Tensor::from_slice(&w.data, (d1, 2 * d), &Device::Cpu)?;
    let w1b_t = w.narrow(1, d, d)?.t()?.contiguous()?; // [D, D1]
    let t = bank.matmul(&w1b_t)?;
    Ok(HostTensor {
        dims: vec![rows, d1],
        data: t.flatten_all()?.to_vec1()?,
    })
}

/// The head's graph outputs.
pub struct HeadOutputs {
    pub image_score: String,
    pub patch_scores: String,
    pub anomaly_map: String,
    pub class_index: String,
    pub matched_class: String,
    pub class_similarity: String,
}

/// Adds the head over descriptors `desc` `[B,P,D]`; `class_input` is the optional int64 `[B]`.
pub fn head(
    g: &mut Graph,
    src: &ModelSource,
    desc: &str,
    class_input: Option<&str>,
    bf16_products: bool,
) -> Result<HeadOutputs> {
    let eps = g.scalar_f32("l2_eps", 1e-12);
    let f = product(g, desc, &src.adaptor, "adaptor", bf16_products); // [B,P,D]
    let m = global_match(g, src, &f, &eps, class_input);
    let h1 = first_layer(g, src, &f, &m, &eps, bf16_products)?;
    let h = affine(g, &h1, &src.bn1, "bn1");
    let h = g.leaky_relu(&h, 0.2);
    let h = product(g, &h, &src.fc2, "fc2", bf16_products);
    let h = affine(g, &h, &src.bn2, "bn2");
    let h = g.leaky_relu(&h, 0.2);
    let logit = linear(g, &h, &src.tail, "tail", None); // [B,P,1]
    let prob = g.sigmoid(&logit);
    let n = src.grid as i64;
    let patch = g.reshape(&prob, &[-1, n, n]);
    let image_score = g.reduce_max(&patch, &[1, 2], false);
    let map = anomaly_map(g, src, &patch);
    Ok(HeadOutputs {
        image_score,
        patch_scores: patch,
        anomaly_map: map,
        class_index: m.class,
        matched_class: m.matched,
        class_similarity: m.similarity,
    })
}

/// The global match's values in the graph.
struct Match {
    /// The bank's flattened unit center maps `[K,P*D]`.
    unit_flat: String,
    /// Matched class `[B]`, its cosine `[B]`, and the class used (stated when >= 0) `[B]`.
    matched: String,
    similarity: String,
    class: String,
}

/// Global match of the adapted features `f` `[B,P,D]`: cosine of the l2-normalised flattened
/// map with each class's unit center map, ArgMax, ReduceMax; the class used is the stated one
/// where `class_input` is given and >= 0.
fn global_match(
    g: &mut Graph,
    src: &ModelSource,
    f: &str,
    eps: &str,
    class_input: Option<&str>,
) -> Match {
    let (k, p, d) = (
        src.centers.dims[0],
        src.centers.dims[1],
        src.centers.dims[2],
    );
    let centers = g.init_f32("centers", &src.centers.dims, &src.centers.data);
    let flat = g.reshape(f, &[-1, (p * d) as i64]);
    let flat = l2_normalize(g, &flat, eps);
    let bank_flat = g.reshape(&centers, &[k as i64, (p * d) as i64]);
    let unit_flat = l2_normalize(g, &bank_flat, eps); // [K,P*D]
    let sim = g.gemm_bt(&flat, &unit_flat); // [B,K]
    let matched = g.argmax(&sim, 1);
    let similarity = g.reduce_max(&sim, &[1], false);
    let class = match class_input {
        Some(ci) => {
            let zero = g.ints(&[0]);
            let negative = g.less(ci, &zero);
            g.where_(&negative, &matched, ci)
        }
        None => matched.clone(),
    };
    Match {
        unit_flat,
        matched,
        similarity,
        class,
    }
}

/// The discriminator's first linear layer on `[f ; f - R]` `[B,P,D1]`, R the local alignment
/// of `f` with the class `m.class` (or `[f ; 0]` without the residual).
///
/// `[f ; f - R] · W1ᵀ = f · (W1a + W1b)ᵀ - R · W1bᵀ` (W1a, W1b: the first and second D input
/// columns of fc1), and R is a row of the center bank, so R · W1bᵀ is a row of the constant
/// table T = bank · W1bᵀ [K*P, D1] computed here once: a Gather instead of a [P,D]x[D,D1]
/// product per image (a tenth of the arithmetic at the paper configuration), and no [B,P,2D]
/// copy.
fn first_layer(
    g: &mut Graph,
    src: &ModelSource,
    f: &str,
    m: &Match,
    eps: &str,
    bf16_products: bool,
) -> Result<String> {
    let (p, d) = (src.centers.dims[1], src.centers.dims[2]);
    if !src.ablation.residual {
        // [f ; 0] · W1ᵀ = f · W1[:, :D]ᵀ: the zero half contributes nothing.
        return Ok(linear(g, f, &src.fc1, "fc1", Some((0, d))));
    }
    let class = &m.class;
    let rows = if src.ablation.center_search {
        // The class's unit centers from the one folded bank constant `unit_flat` (its rows
        // normalised again: the same directions), so the runtime holds the bank once.
        let bank_k = g.gather(&m.unit_flat, class, 0); // [B,P*D]
        let bank_k = g.reshape(&bank_k, &[-1, p as i64, d as i64]);
        let unit = l2_normalize(g, &bank_k, eps); // [B,P,D]
        let unit_k = g.transpose(&unit, &[0, 2, 1]); // [B,D,P]
        let fu = l2_normalize(g, f, eps);
        let cos = g.matmul(&fu, &unit_k); // [B,P,P]
        let best = g.argmax(&cos, 2);
        // Row of the chosen center in the [K*P, D] bank: class * P + best, [B,P].
        let base = g.unsqueeze(class, &[1]);
        let pp = g.ints(&[p as i64]);
        let base = g.mul(&base, &pp);
        g.add(&base, &best)
    } else {
        // The class's centers at the same positions: rows class * P + [0, P).
        let base = g.unsqueeze(class, &[1]);
        let pp = g.ints(&[p as i64]);
        let base = g.mul(&base, &pp);
        let positions: Vec<i64> = (0..p as i64).collect();
        let positions = g.ints(&positions);
        g.add(&base, &positions)
    };
    let table = residual_table(src)?; // [K*P, D1]
    let table = g.init_f32("fc1.residual_table", &table.dims, &table.data);
    let r_w = g.gather(&table, &rows, 0); // [B,P,D1]
    let summed = summed_fc1(src);
    let top = product(g, f, &summed, "fc1", bf16_products);
    Ok(g.sub(&top, &r_w))
}

/// The anomaly map `A·P·Aᵀ` `[B,S,S]` of the patch scores `patch` `[B,g,g]` (`A` = blur ∘
/// upsample, [`map_matrix`], in f32).
fn anomaly_map(g: &mut Graph, src: &ModelSource, patch: &str) -> String {
    let s = src.input_size;
    let a64 = map_matrix(src.grid, s, 4.0);
    let a: Vec<f32> = a64.iter().map(|&v| v as f32).collect();
    let at: Vec<f32> = (0..a.len())
        .map(|i| a[(i % s) * src.grid + i / s])
        .collect();
    let a = g.init_f32("map_a", &[s, src.grid], &a);
    let at = g.init_f32("map_a_t", &[src.grid, s], &at);
    let left = g.matmul(&a, patch); // [B,S,g]
    g.matmul(&left, &at) // [B,S,S]
}

/// Declares the head's outputs in the contract's order.
pub fn declare_outputs(g: &mut Graph, o: &HeadOutputs, grid: usize, s: usize) {
    let b = || Dim::Named("batch");
    let square = |n: usize| [b(), Dim::Fixed(n), Dim::Fixed(n)];
    g.output(&o.image_score, "image_score", Elem::F32, &[b()]);
    g.output(&o.patch_scores, "patch_scores", Elem::F32, &square(grid));
    g.output(&o.anomaly_map, "anomaly_map", Elem::F32, &square(s));
    g.output(&o.class_index, "class_index", Elem::I64, &[b()]);
    g.output(&o.matched_class, "matched_class", Elem::I64, &[b()]);
    g.output(&o.class_similarity, "class_similarity", Elem::F32, &[b()]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn map_matrix_equals_the_anomaly_map_postprocessing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (grid, s) in [(8, 64), (36, 288), (4, 32)] {
            let a = map_matrix(grid, s, 4.0);
            let p: Vec<f32> = (0..grid * grid).map(|_| rng.gen::<f32>()).collect();
            let want = crate::maps::anomaly_map(&p, grid, s, 4.0);
            // A P Aᵀ in f64.
            let mut ap = vec![0f64; s * grid];
            for i in 0..s {
                for j in 0..grid {
                    ap[i * grid + j] = (0..grid)
                        .map(|t| a[i * grid + t] * p[t * grid + j] as f64)
                        .sum();
                }
            }
            let mut worst = 0f64;
            for i in 0..s {
                for j in 0..s {
                    let v: f64 = (0..grid).map(|t| ap[i * grid + t] * a[j * grid + t]).sum();
                    worst = worst.max((v - want[i * s + j] as f64).abs());
                }
            }
            assert!(worst < 1e-5, "grid {grid} -> {s}: max diff {worst}");
        }
    }
}

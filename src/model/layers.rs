//! Trainable building blocks shared by the adaptor and the discriminator: a linear layer with
//! PyTorch's parameter layout and a 1-D batch normalisation with PyTorch's training and
//! evaluation semantics. Parameters are candle [`Var`]s so that autograd sees them; their
//! initial values come from a seeded host RNG so that the same seed gives the same model on
//! every machine and device.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::Result;

/// `y = x W^T + b`, W: `[out, in]`, b: `[out]` (optional).
pub struct Linear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl Linear {
    /// Xavier-normal weight (gain 1: std = sqrt(2 / (in + out))), as the reference's
    /// `init_weight`; bias with torch's default `U(-1/sqrt(in), 1/sqrt(in))`.
    pub fn xavier(
        rng: &mut impl Rng,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let std = (2.0 / (in_dim + out_dim) as f64).sqrt();
        let normal = Normal::new(0.0f64, std).map_err(|e| crate::Error::Other(e.to_string()))?;
        let w: Vec<f32> = (0..in_dim * out_dim)
            .map(|_| normal.sample(rng) as f32)
            .collect();
        let weight = Var::from_tensor(&Tensor::from_vec(w, (out_dim, in_dim), device)?)?;
        let bias = if bias {
            let bound = 1.0 / (in_dim as f64).sqrt();
            let b: Vec<f32> = (0..out_dim)
                .map(|_| rng.gen_range(-bound..bound) as f32)
                .collect();
            Some(Var::from_tensor(&Tensor::from_vec(b, out_dim, device)?)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// From given tensors (checkpoint loading).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: Var::from_tensor(&weight)?,
            bias: bias.map(|b| Var::from_tensor(&b)).transpose()?,
        })
    }

    /// x: [N, in] -> [N, out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.as_tensor();
        let y = x.matmul(&w.to_dtype(x.dtype())?.t()?)?;
        Ok(match &self.bias {
            Some(b) => {
                let b = b.as_tensor().to_dtype(y.dtype())?.unsqueeze(0)?;
                (&y + repeat_rows(&b, y.dim(0)?)?)?
            }
            None => y,
        })
    }

    /// The trainable variables, weight first.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.weight.clone()];
        v.extend(self.bias.clone());
        v
    }
}

/// BatchNorm1d over [N, C] with affine weight/bias and running statistics.
pub struct BatchNorm1d {
    pub weight: Var,
    pub bias: Var,
    /// Running mean `[C]`; updated in training, used in evaluation, never touched by an optimiser.
    pub running_mean: Tensor,
    /// Running (unbiased) variance `[C]`.
    pub running_var: Tensor,
    pub momentum: f64,
    pub eps: f64,
}

impl BatchNorm1d {
    /// Weight 1, bias 0, running mean 0, running var 1 (torch defaults).
    pub fn new(channels: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            weight: Var::ones(channels, DType::F32, device)?,
            bias: Var::zeros(channels, DType::F32, device)?,
            running_mean: Tensor::zeros(channels, DType::F32, device)?,
            running_var: Tensor::ones(channels, DType::F32, device)?,
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    /// Training-mode forward: normalise with the batch's statistics (biased variance) and move
    /// the running statistics toward them (unbiased variance), momentum 0.1.
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let xf = x.to_dtype(DType::F32)?;
        let mean = (column_sum(&xf)? / n as f64)?; // [1, C]
        let centered = (&xf - repeat_rows(&mean, n)?)?;
        let var = (column_sum(&centered.sqr()?)? / n as f64)?; // biased
        let y = (centered / repeat_rows(&(var.clone() + self.eps)?.sqrt()?, n)?)?;
        let out = ((y * repeat_rows(&self.weight.as_tensor().unsqueeze(0)?, n)?)?
            + repeat_rows(&self.bias.as_tensor().unsqueeze(0)?, n)?)?;
        let mean_d = mean.squeeze(0)?.detach();
        let unbiased = (var.squeeze(0)?.detach() * (n as f64 / (n.max(2) - 1) as f64))?;
        let m = self.momentum;
        self.running_mean = ((&self.running_mean * (1.0 - m))? + (mean_d * m)?)?.detach();
        self.running_var = ((&self.running_var * (1.0 - m))? + (unbiased * m)?)?.detach();
        Ok(out.to_dtype(x.dtype())?)
    }

    /// Evaluation-mode forward with the running statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.eval_affine()?;
        Ok(x.broadcast_mul(&scale.to_dtype(x.dtype())?)?
            .broadcast_add(&shift.to_dtype(x.dtype())?)?)
    }

    /// The evaluation-mode transform as `y = x * scale + shift`, scale/shift: [1, C].
    pub fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let scale = (self.weight.as_tensor() / (&self.running_var + self.eps)?.sqrt()?)?;
        let shift = (self.bias.as_tensor() - (&self.running_mean * &scale)?)?;
        Ok((scale.unsqueeze(0)?, shift.unsqueeze(0)?))
    }

    /// The trainable variables (weight, bias).
    pub fn vars(&self) -> Vec<Var> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// Column sums of x [N, C] as [1, C], computed as the product ones[1, N] x. Candle's CPU
/// reduction over the leading axis runs on one thread with strided reads; a matrix product runs
/// on the parallel gemm kernels, and so does its gradient (an outer product).
pub fn column_sum(x: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((1, x.dim(0)?), x.dtype(), x.device())?;
    Ok(ones.matmul(x)?)
}

/// v [1, C] repeated over `n` rows, [n, C], as the outer product ones[n, 1] v: the values are
/// copied exactly, and the gradient with respect to v is a matrix product rather than the
/// leading-axis reduction that the backward pass of a broadcast needs.
pub fn repeat_rows(v: &Tensor, n: usize) -> Result<Tensor> {
    let ones = Tensor::ones((n, 1), v.dtype(), v.device())?;
    Ok(ones.matmul(v)?)
}

/// LeakyReLU with the given negative slope: max(x, 0) + slope * min(x, 0).
///
/// On the CPU, for a contiguous f32 tensor, one pass forward and one backward (`LeakyRelu`)
/// instead of the twenty-odd full-size tensors that the composite and its gradient allocate;
/// the values and gradients are the composite's to the bit. Elsewhere (CUDA, other dtypes) the
/// composite.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        return Ok(x.apply_op1(LeakyRelu { slope })?);
    }
    leaky_relu_composite(x, slope)
}

/// The composite definition: what [`LeakyRelu`] reproduces.
fn leaky_relu_composite(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok((x.relu()? + (x.minimum(0f64)? * slope)?)?)
}

/// Fused LeakyReLU on contiguous f32 CPU tensors. Its arithmetic is that of
/// [`leaky_relu_composite`] and of candle's gradients for it, step by step, NaN included:
/// forward `relu(x) + (min(x, 0) * s + 0)`; backward `g` where x > 0, `g * s` where x < 0,
/// `g + (g * s) / 2` where x = 0 (both branches active, candle halves the `min` gradient) and 0
/// where x is NaN.
struct LeakyRelu {
    slope: f64,
}

/// candle's `minimum(x, 0)` for one f32: `if x > 0 { 0 } else { x }` (NaN stays NaN, where
/// `f32::min` would give 0).
fn candle_min0(x: f32) -> f32 {
    if x > 0.0 {
        0.0
    } else {
        x
    }
}

/// The contiguous f32 slice a layout views, or an error naming the op.
fn f32_slice<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (candle_core::CpuStorage::F32(v), Some((a, b))) = (storage, layout.contiguous_offsets())
    else {
        candle_core::bail!("{op}: expects a contiguous f32 tensor")
    };
    Ok(&v[a..b])
}

impl candle_core::CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let x = f32_slice(storage, layout, self.name())?;
        let s = self.slope as f32;
        let y: Vec<f32> = x
            .par_iter()
            .with_min_len(1 << 14)
            .map(|&v| v.max(0.0) + (candle_min0(v) * s + 0.0))
            .collect();
        Ok((candle_core::CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op2_no_bwd(
            arg,
            &LeakyReluGrad { slope: self.slope },
        )?))
    }
}

/// The gradient of [`LeakyRelu`]: (grad, x) -> grad of x.
struct LeakyReluGrad {
    slope: f64,
}

impl candle_core::CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let g = f32_slice(s1, l1, self.name())?;
        let x = f32_slice(s2, l2, self.name())?;
        if g.len() != x.len() {
            candle_core::bail!(
                "{}: {} gradients for {} values",
                self.name(),
                g.len(),
                x.len()
            )
        }
        let s = self.slope as f32;
        let out: Vec<f32> = g
            .par_iter()
            .zip(x.par_iter())
            .with_min_len(1 << 14)
            .map(|(&g, &x)| {
                // relu: g * (x >= 0); min(x, 0): masks where the result equals either input,
                // the gradient (g * s + 0 from the affine) halved where both do.
                let node = candle_min0(x);
                let one_if = |c: bool| if c { 1f32 } else { 0f32 };
                let relu = g * one_if(x >= 0.0);
                let min = (one_if(node == x) * (g * s + 0.0)) / (one_if(node == 0.0) + 1.0);
                relu + min
            })
            .collect();
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Row-wise L2 normalisation as `F.normalize(x, dim=-1)` (eps 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn column_sum_and_repeat_rows_match_the_broadcast_forms_and_their_gradients() {
        let x = Var::from_tensor(&sample(37, 5)).unwrap();
        let v = Var::from_tensor(&sample(1, 5)).unwrap();
        let w = sample(37, 5); // a weighting so that gradients differ per row

        let ours = column_sum(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().sum_keepdim(0).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-5);
        let rep = repeat_rows(v.as_tensor(), 37).unwrap();
        let bro = v.as_tensor().broadcast_as((37, 5)).unwrap();
        assert_eq!(max_abs_diff(&rep, &bro), 0.0, "repeat_rows copies exactly");

        // Gradients of sum(w * (x + repeat(v))) w.r.t. v are column sums of w, as with a broadcast.
        let loss = ((x.as_tensor() + &rep).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap();
        let gv = g.get(v.as_tensor()).unwrap();
        assert!(max_abs_diff(gv, &w.sum_keepdim(0).unwrap()) < 1e-5);
        let loss2 = (column_sum(&(x.as_tensor() * &w).unwrap()).unwrap())
            .sum_all()
            .unwrap();
        let g2 = loss2.backward().unwrap();
        assert!(max_abs_diff(g2.get(x.as_tensor()).unwrap(), &w) < 1e-6);
    }

    /// The fused LeakyReLU gives the composite's values and gradients bit for bit, zeros
    /// included (where candle halves the `min` branch's gradient), and a non-contiguous input
    /// takes the composite.
    #[test]
    fn fused_leaky_relu_is_the_composite_to_the_bit() {
        let mut v: Vec<f32> = (0..40_000)
            .map(|i| ((i * 7919 % 20011) as f32 - 10_000.0) * 1.37e-3)
            .collect();
        v[5] = 0.0;
        v[17] = -0.0;
        v[23] = f32::NAN;
        v[29] = f32::INFINITY;
        v[31] = f32::NEG_INFINITY;
        let x = Tensor::from_vec(v, (200, 200), &Device::Cpu).unwrap();
        let w = (sample(200, 200) + 0.31).unwrap(); // per-element upstream gradients
        let run = |fused: bool, t: &Tensor| {
            let var = Var::from_tensor(t).unwrap();
            let y = if fused {
                leaky_relu(var.as_tensor(), 0.2).unwrap()
            } else {
                leaky_relu_composite(var.as_tensor(), 0.2).unwrap()
            };
            let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(var.as_tensor()).unwrap().clone();
            let bits = |t: &Tensor| -> Vec<u32> {
                let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                // the sign of zero and a NaN's payload aside
                v.iter()
                    .map(|f| {
                        if f.is_nan() {
                            u32::MAX
                        } else {
                            f.to_bits() & 0x7fff_ffff
                        }
                    })
                    .collect()
            };
            (bits(&y), bits(&gx))
        };
        let (fused, composite) = (run(true, &x), run(false, &x));
        assert!(fused.0 == composite.0, "forward values differ");
        assert!(fused.1 == composite.1, "gradients differ");
        // The zeros took the halved branch: g + g * 0.2 / 2.
        let g5: f32 = w.flatten_all().unwrap().to_vec1::<f32>().unwrap()[5];
        assert_eq!(f32::from_bits(fused.1[5]), (g5 + (g5 * 0.2) / 2.0).abs());
        // A transposed (non-contiguous) view goes through the composite and agrees as well.
        let t = x.t().unwrap();
        assert!(!t.is_contiguous());
        assert!(run(true, &t) == run(false, &t));
    }

    #[test]
    fn batch_norm_training_normalises_each_column() {
        let mut bn = BatchNorm1d::new(5, &Device::Cpu).unwrap();
        let x = (sample(64, 5) * 3.0).unwrap();
        let y = bn.forward_train(&x).unwrap();
        let mean = y.mean_keepdim(0).unwrap().abs().unwrap().max(1).unwrap();
        assert!(
            mean.flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                < 1e-5
        );
        let var = y.sqr().unwrap().mean_keepdim(0).unwrap();
        let ones = Tensor::ones((1, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(max_abs_diff(&var, &ones) < 1e-3);
        // Running mean moved 10% toward the batch mean.
        let want = (x.mean_keepdim(0).unwrap().squeeze(0).unwrap() * 0.1).unwrap();
        assert!(max_abs_diff(&bn.running_mean, &want) < 1e-6);
    }
}

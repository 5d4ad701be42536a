//! Trainable building blocks shared by the adaptor and the discriminator: a linear layer with
//! PyTorch's parameter layout and a 1-D batch normalisation with PyTorch's training and
//! evaluation semantics. Parameters are candle [`Var`]s so that autograd sees them; their
//! initial values come from a seeded host RNG so that the same seed gives the same model on
//! every machine and device.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{rngs::StdRng, Rng};
use rand_distr::{Distribution, Normal};

use crate::Result;

/// `y = x W^T + b`, W: [out, in], b: [out] (optional).
pub struct Linear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl Linear {
    /// Xavier-normal weight (gain 1: std = sqrt(2 / (in + out))), as the reference's
    /// `init_weight`; bias with torch's default `U(-1/sqrt(in), 1/sqrt(in))`.
    pub fn xavier(
        rng: &mut StdRng,
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
            Some(b) => y.broadcast_add(&b.as_tensor().to_dtype(y.dtype())?)?,
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
    /// Running mean [C]; updated in training, used in evaluation, never touched by an optimiser.
    pub running_mean: Tensor,
    /// Running (unbiased) variance [C].
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
        let mean = xf.mean_keepdim(0)?; // [1, C]
        let centered = xf.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(0)?; // biased
        let y = centered.broadcast_div(&(var.clone() + self.eps)?.sqrt()?)?;
        let out = y
            .broadcast_mul(&self.weight.as_tensor().unsqueeze(0)?)?
            .broadcast_add(&self.bias.as_tensor().unsqueeze(0)?)?;
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

/// LeakyReLU with the given negative slope: max(x, 0) + slope * min(x, 0).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok((x.relu()? + (x.minimum(0f64)? * slope)?)?)
}

/// Row-wise L2 normalisation as `F.normalize(x, dim=-1)` (eps 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

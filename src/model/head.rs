//! The trainable CRAS head (spec section 1, rows "adaptor" and "discriminator"):
//! - [`Adaptor`]: one `Linear(D, D)` with bias: descriptors g [N, D] -> adapted f [N, D].
//! - [`Discriminator`]: input `[f ; f - R]` [N, 2D] -> `Linear(2D, D)` - BN1d - LeakyReLU(0.2) -
//!   `Linear(D, D/2)` - BN1d - LeakyReLU(0.2) - `Linear(D/2, 1, no bias)` - Sigmoid -> [N, 1].
//!
//! - [`discriminator_input`]: how f and its aligned centers R [N, D] are fed to the
//!   discriminator, per the [`Ablation`] flags (shared by training and scoring).
//!
//! Parameter names follow the reference's state dict (`pre_projection.layers.0fc.*`,
//! `discriminator.body.block1.0.*`, ...) so checkpoints can be compared with it.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var, D};
use candle_nn::ops::sigmoid;
use rand::Rng;

use super::layers::{leaky_relu, BatchNorm1d, Linear};
use crate::{Error, Result};

/// Which parts of the method are active (ablations). Stored in the model file: scoring wires
/// the head exactly as training did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ablation {
    /// Feed `[f ; f - R]` (true, the method) or `[f ; 0]` (false: no residual half).
    pub residual: bool,
    /// Search all positions of the class's center map (true, the method) or use the center at
    /// the patch's own position (false).
    pub center_search: bool,
}

impl Default for Ablation {
    fn default() -> Self {
        Self {
            residual: true,
            center_search: true,
        }
    }
}

/// The discriminator input for f and R (both [N, D]): `[f ; f - R]`, or `[f ; 0]` without the
/// residual half.
pub fn discriminator_input(f: &Tensor, r: &Tensor, ablation: Ablation) -> Result<Tensor> {
    let shift = if ablation.residual {
        (f - r)?
    } else {
        f.zeros_like()?
    };
    Ok(Tensor::cat(&[f, &shift], D::Minus1)?)
}

/// Looks up `name` in a named-tensor map (checkpoint or fixture), with a clear error.
pub fn take(map: &HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    map.get(name)
        .cloned()
        .ok_or_else(|| Error::Other(format!("missing tensor {name:?}")))
}

fn linear_from(map: &HashMap<String, Tensor>, prefix: &str, bias: bool) -> Result<Linear> {
    let w = take(map, &format!("{prefix}.weight"))?;
    let b = bias
        .then(|| take(map, &format!("{prefix}.bias")))
        .transpose()?;
    Linear::from_tensors(w, b)
}

fn bn_from(map: &HashMap<String, Tensor>, prefix: &str) -> Result<BatchNorm1d> {
    let mut bn = BatchNorm1d::new(
        take(map, &format!("{prefix}.weight"))?.dim(0)?,
        &Device::Cpu,
    )?;
    bn.weight = Var::from_tensor(&take(map, &format!("{prefix}.weight"))?)?;
    bn.bias = Var::from_tensor(&take(map, &format!("{prefix}.bias"))?)?;
    if let (Some(m), Some(v)) = (
        map.get(&format!("{prefix}.running_mean")),
        map.get(&format!("{prefix}.running_var")),
    ) {
        bn.running_mean = m.clone();
        bn.running_var = v.clone();
    } else {
        let dev = bn.weight.as_tensor().device().clone();
        bn.running_mean = bn.running_mean.to_device(&dev)?;
        bn.running_var = bn.running_var.to_device(&dev)?;
    }
    Ok(bn)
}

/// The feature adaptor: f = g W^T + b.
pub struct Adaptor {
    pub linear: Linear,
}

impl Adaptor {
    /// Xavier-normal weight, torch-default bias, from the seeded `rng`.
    pub fn new(rng: &mut impl Rng, dims: usize, device: &Device) -> Result<Self> {
        Ok(Self {
            linear: Linear::xavier(rng, dims, dims, true, device)?,
        })
    }

    /// From named tensors (reference names, see [`Self::named`]).
    pub fn from_named(map: &HashMap<String, Tensor>) -> Result<Self> {
        Ok(Self {
            linear: linear_from(map, "pre_projection.layers.0fc", true)?,
        })
    }

    /// g: [N, D] -> f: [N, D]
    pub fn forward(&self, g: &Tensor) -> Result<Tensor> {
        self.linear.forward(g)
    }

    /// Trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        self.linear.vars()
    }

    /// Named tensors, reference names.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        named_linear("pre_projection.layers.0fc", &self.linear)
    }
}

/// The residual discriminator.
pub struct Discriminator {
    pub fc1: Linear,
    pub bn1: BatchNorm1d,
    pub fc2: Linear,
    pub bn2: BatchNorm1d,
    pub tail: Linear,
}

impl Discriminator {
    /// For descriptors of width `dims` (input width 2 * dims).
    pub fn new(rng: &mut impl Rng, dims: usize, device: &Device) -> Result<Self> {
        let (i, h1, h2) = (2 * dims, dims, dims / 2);
        Ok(Self {
            fc1: Linear::xavier(rng, i, h1, true, device)?,
            bn1: BatchNorm1d::new(h1, device)?,
            fc2: Linear::xavier(rng, h1, h2, true, device)?,
            bn2: BatchNorm1d::new(h2, device)?,
            tail: Linear::xavier(rng, h2, 1, false, device)?,
        })
    }

    /// From named tensors (reference names, see [`Self::named`]); BN buffers optional.
    pub fn from_named(map: &HashMap<String, Tensor>) -> Result<Self> {
        Ok(Self {
            fc1: linear_from(map, "discriminator.body.block1.0", true)?,
            bn1: bn_from(map, "discriminator.body.block1.1")?,
            fc2: linear_from(map, "discriminator.body.block2.0", true)?,
            bn2: bn_from(map, "discriminator.body.block2.1")?,
            tail: linear_from(map, "discriminator.tail.0", false)?,
        })
    }

    /// Training-mode forward (batch statistics, running statistics updated). x: [N, 2D] -> [N, 1]
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let h = leaky_relu(&self.bn1.forward_train(&self.fc1.forward(x)?)?, 0.2)?;
        let h = leaky_relu(&self.bn2.forward_train(&self.fc2.forward(&h)?)?, 0.2)?;
        Ok(sigmoid(&self.tail.forward(&h)?)?)
    }

    /// Evaluation-mode forward (running statistics). x: [N, 2D] -> [N, 1]
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let h = leaky_relu(&self.bn1.forward_eval(&self.fc1.forward(x)?)?, 0.2)?;
        let h = leaky_relu(&self.bn2.forward_eval(&self.fc2.forward(&h)?)?, 0.2)?;
        Ok(sigmoid(&self.tail.forward(&h)?)?)
    }

    /// Trainable variables (optimiser order: fc1, bn1, fc2, bn2, tail).
    pub fn vars(&self) -> Vec<Var> {
        let mut v = self.fc1.vars();
        v.extend(self.bn1.vars());
        v.extend(self.fc2.vars());
        v.extend(self.bn2.vars());
        v.extend(self.tail.vars());
        v
    }

    /// Named tensors, reference names (parameters and BN buffers).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut out = named_linear("discriminator.body.block1.0", &self.fc1);
        out.extend(named_bn("discriminator.body.block1.1", &self.bn1));
        out.extend(named_linear("discriminator.body.block2.0", &self.fc2));
        out.extend(named_bn("discriminator.body.block2.1", &self.bn2));
        out.extend(named_linear("discriminator.tail.0", &self.tail));
        out
    }
}

fn named_linear(prefix: &str, l: &Linear) -> Vec<(String, Tensor)> {
    let mut v = vec![(format!("{prefix}.weight"), l.weight.as_tensor().clone())];
    if let Some(b) = &l.bias {
        v.push((format!("{prefix}.bias"), b.as_tensor().clone()));
    }
    v
}

fn named_bn(prefix: &str, bn: &BatchNorm1d) -> Vec<(String, Tensor)> {
    vec![
        (format!("{prefix}.weight"), bn.weight.as_tensor().clone()),
        (format!("{prefix}.bias"), bn.bias.as_tensor().clone()),
        (format!("{prefix}.running_mean"), bn.running_mean.clone()),
        (format!("{prefix}.running_var"), bn.running_var.clone()),
    ]
}

//! One CRAS training step (spec section 1, rows "local alignment" to "optimisers").
//!
//! Input: descriptors g [B, P, D] of one batch, each image's class index, Gaussian noise
//! [B*P, D]. The adaptor maps g to f; every patch is aligned with the most similar center of
//! its (true) class; fakes are synthesised; the discriminator scores true and fake rows in ONE
//! batch (shared BatchNorm statistics); the loss is BCE(D(true), 0) + BCE(D(fake), 1), means
//! over rows; AdamW updates the adaptor and Adam (coupled L2) the discriminator.

use candle_core::{Tensor, D};

use super::{
    center::CenterBank,
    head::{Adaptor, Discriminator},
    optim::AdamFamily,
    synthesis::synthesize,
};
use crate::Result;

/// Figures of one step.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StepStats {
    /// BCE(true, 0) + BCE(fake, 1).
    pub loss: f64,
    /// Share of true patches scored normal (< 0.5).
    pub p_true: f64,
    /// Share of synthetic patches scored anomalous (>= 0.5).
    pub p_fake: f64,
}

/// Which parts of the method are active (ablations).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// BCE of probabilities against a constant target, as `torch.nn.BCELoss` (log clamped at -100).
fn bce_const(p: &Tensor, target_one: bool) -> Result<Tensor> {
    let x = if target_one { p.clone() } else { (1.0 - p)? };
    Ok(x.log()?.maximum(-100f64)?.mean_all()?.neg()?)
}

/// Aligned centers R for adapted features f [B, P, D].
pub fn aligned_centers(
    bank: &CenterBank,
    f: &Tensor,
    classes: &[usize],
    ablation: Ablation,
) -> Result<Tensor> {
    if ablation.center_search {
        bank.local_align_batch(f, classes)
    } else {
        let idx = Tensor::from_vec(
            classes.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            classes.len(),
            f.device(),
        )?;
        Ok(bank.centers.index_select(&idx, 0)?)
    }
}

/// The discriminator input for f and R (both [N, D]).
pub fn discriminator_input(f: &Tensor, r: &Tensor, ablation: Ablation) -> Result<Tensor> {
    let shift = if ablation.residual {
        (f - r)?
    } else {
        f.zeros_like()?
    };
    Ok(Tensor::cat(&[f, &shift], D::Minus1)?)
}

/// Runs one training step and updates all parameters and BatchNorm statistics.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    adaptor: &Adaptor,
    disc: &mut Discriminator,
    bank: &CenterBank,
    g: &Tensor,
    classes: &[usize],
    noise: &Tensor,
    k: f64,
    ablation: Ablation,
    opt_adaptor: &mut AdamFamily,
    opt_disc: &mut AdamFamily,
) -> Result<StepStats> {
    let (b, p, d) = g.dims3()?;
    let f = adaptor.forward(&g.reshape((b * p, d))?)?; // [N, D]
    let r = aligned_centers(bank, &f.reshape((b, p, d))?.detach(), classes, ablation)?
        .reshape((b * p, d))?;
    let fake = synthesize(&f, &r, noise, k)?;
    let trues = discriminator_input(&f, &r, ablation)?;
    let fakes = discriminator_input(&fake, &r, ablation)?;
    let scores = disc.forward_train(&Tensor::cat(&[&trues, &fakes], 0)?)?; // [2N, 1]
    let n = b * p;
    let true_scores = scores.narrow(0, 0, n)?;
    let fake_scores = scores.narrow(0, n, n)?;
    let loss = (bce_const(&true_scores, false)? + bce_const(&fake_scores, true)?)?;
    let grads = loss.backward()?;
    opt_adaptor.step(&grads)?;
    opt_disc.step(&grads)?;
    let ts = true_scores.detach().flatten_all()?;
    let fs = fake_scores.detach().flatten_all()?;
    let p_true = ts.lt(0.5)?.to_dtype(candle_core::DType::F32)?.mean_all()?;
    let p_fake = fs.ge(0.5)?.to_dtype(candle_core::DType::F32)?.mean_all()?;
    Ok(StepStats {
        loss: loss.to_scalar::<f32>()? as f64,
        p_true: p_true.to_scalar::<f32>()? as f64,
        p_fake: p_fake.to_scalar::<f32>()? as f64,
    })
}

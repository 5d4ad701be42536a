//! One CRAS training step (spec section 1, rows "local alignment" to "optimisers").
//!
//! Input: descriptors g [B, P, D] of one batch, each image's class index, Gaussian noise
//! [B*P, D]. The adaptor maps g to f; every patch is aligned with the most similar center of
//! its (true) class; fakes are synthesised; the discriminator scores true and fake rows in ONE
//! batch (shared BatchNorm statistics); the loss is BCE(D(true), 0) + BCE(D(fake), 1), means
//! over rows; AdamW updates the adaptor and Adam (coupled L2) the discriminator.

use candle_core::Tensor;

use super::{
    center::CenterBank,
    head::{discriminator_input, Ablation, Adaptor, Discriminator},
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

/// BCE of probabilities against a constant target, as `torch.nn.BCELoss` (log clamped at -100).
fn bce_const(p: &Tensor, target_one: bool) -> Result<Tensor> {
    let x = if target_one { p.clone() } else { (1.0 - p)? };
    Ok(x.log()?.maximum(-100f64)?.mean_all()?.neg()?)
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
    let r = bank
        .align(
            &f.reshape((b, p, d))?.detach(),
            classes,
            ablation.center_search,
        )?
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

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

/// What one step saw, for training diagnostics: the discriminator's scores of the true and the
/// synthetic rows (`[B*P]` each, image-major), and the center each patch was aligned with
/// (`[B*P]`, positions of its class's map; `None` without center search).
#[derive(Clone, Debug, Default)]
pub struct StepDetail {
    pub true_scores: Vec<f32>,
    pub fake_scores: Vec<f32>,
    pub centers: Option<Vec<u32>>,
}

/// The floor of the denominator in `torch.nn.BCELoss`'s backward, `max(p (1 - p), 1e-12)`.
const BCE_GRAD_EPS: f64 = 1e-12;

/// BCE of probabilities against a constant target y, as `torch.nn.BCELoss` computes it both
/// ways: the value is the mean of `-max(log x, -100)` (x = p for y = 1, 1 - p for y = 0); the
/// gradient is torch's `(p - y) / max(p (1 - p), 1e-12)` over the mean's count, not the exact
/// derivative of the value. The two differ where p (1 - p) < 1e-12: a synthetic patch scored below
/// 1e-12 (logit under about -27.6) still gets `p * 1e12` of the unit push through the sigmoid,
/// as in the reference, where `-1 / x` with a floor would give it none; a saturated score
/// (exactly 0 or 1) gets a finite gradient that the sigmoid then zeroes, never 0 / 0 = NaN.
fn bce_const(p: &Tensor, target_one: bool) -> Result<Tensor> {
    let y = if target_one { 1.0 } else { 0.0 };
    let pd = p.detach();
    let x = if target_one { pd.clone() } else { (1.0 - &pd)? };
    let value = x.log()?.maximum(-100f64)?.mean_all()?.neg()?; // torch's forward value
    let denom = (&pd * (1.0 - &pd)?)?.maximum(BCE_GRAD_EPS)?;
    let dp = ((&pd - y)? / denom)?; // torch's backward, per element, no gradient of its own
    let surrogate = (p * &dp)?; // gradient dp, value exactly cancelled below
    let zero = (&surrogate - surrogate.detach())?;
    Ok((value + zero.mean_all()?)?)
}

/// Runs one training step and updates all parameters and BatchNorm statistics; returns the
/// step's figures and what it saw ([`StepDetail`]).
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
) -> Result<(StepStats, StepDetail)> {
    let (b, p, d) = g.dims3()?;
    let f = adaptor.forward(&g.reshape((b * p, d))?)?; // [N, D]
    let (r, best) = bank.align_indexed(
        &f.reshape((b, p, d))?.detach(),
        classes,
        ablation.center_search,
    )?;
    let r = r.reshape((b * p, d))?;
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
    let stats = StepStats {
        loss: loss.to_scalar::<f32>()? as f64,
        p_true: p_true.to_scalar::<f32>()? as f64,
        p_fake: p_fake.to_scalar::<f32>()? as f64,
    };
    let detail = StepDetail {
        true_scores: ts.to_dtype(candle_core::DType::F32)?.to_vec1()?,
        fake_scores: fs.to_dtype(candle_core::DType::F32)?.to_vec1()?,
        centers: match best {
            Some(t) => Some(t.flatten_all()?.to_vec1()?),
            None => None,
        },
    };
    Ok((stats, detail))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::bce_const;

    /// Scores as torch would see them: 1.0 and 0.0 exactly (saturated sigmoid) among ordinary ones.
    fn scores() -> Var {
        Var::new(&[1.0f32, 0.0, 0.25, 0.9], &Device::Cpu).unwrap()
    }

    #[test]
    fn saturated_scores_give_torchs_value_and_finite_gradients() {
        for target_one in [false, true] {
            let p = scores();
            let loss = bce_const(p.as_tensor(), target_one).unwrap();
            // torch.nn.BCELoss: mean of -max(log x, -100).
            let xs: Vec<f64> = [1.0f64, 0.0, 0.25, 0.9]
                .iter()
                .map(|&v| if target_one { v } else { 1.0 - v })
                .collect();
            let want = xs.iter().map(|x| -(x.ln().max(-100.0))).sum::<f64>() / 4.0;
            let got = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (got - want).abs() < 1e-4,
                "target {target_one}: {got} vs {want}"
            );
            let grads = loss.backward().unwrap();
            let g: Vec<f32> = grads.get(p.as_tensor()).unwrap().to_vec1().unwrap();
            assert!(
                g.iter().all(|v| v.is_finite()),
                "target {target_one}: {g:?}"
            );
            // Unsaturated entries: d/dp of -log(x)/4 is -1/(4x) for x = p, +1/(4x) for x = 1 - p.
            let sign = if target_one { -1.0 } else { 1.0 };
            for i in [2, 3] {
                let want = sign / (4.0 * xs[i]);
                assert!((g[i] as f64 - want).abs() < 1e-4 * want.abs(), "{i}: {g:?}");
            }
        }
    }

    /// The gradient at the logit, through the sigmoid, as torch gives it. Reference values from
    /// torch 2.x: `x = tensor([v], requires_grad=True); BCELoss()(sigmoid(x), ones_like(x))
    /// .backward()` gives x.grad -1.0 at v = -27, -0.69144 at -28, -0.093576 at -30,
    /// -4.2484e-6 at -40, 0 at -110; with target 0, 0 at v = 17 and 20 (score exactly 1).
    #[test]
    fn gradient_at_the_logit_is_torchs_where_p_1_minus_p_is_below_1e_12() {
        let cases: [(f32, bool, f64); 8] = [
            (-20.0, true, -1.0),
            (-27.0, true, -1.0),
            (-28.0, true, -0.691_44),
            (-30.0, true, -0.093_576),
            (-40.0, true, -4.2484e-6),
            (-110.0, true, 0.0),
            (17.0, false, 0.0),
            (20.0, false, 0.0),
        ];
        for (v, target_one, want) in cases {
            let x = Var::new(&[v], &Device::Cpu).unwrap();
            let p = candle_nn::ops::sigmoid(x.as_tensor()).unwrap();
            let loss = bce_const(&p, target_one).unwrap();
            let g: Vec<f32> = loss
                .backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap()
                .to_vec1()
                .unwrap();
            let tol = 1e-4 * want.abs().max(1e-6);
            assert!(
                (g[0] as f64 - want).abs() <= tol,
                "logit {v}, target {target_one}: {} vs torch {want}",
                g[0]
            );
        }
    }
}

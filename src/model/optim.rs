//! The two optimisers of the reference, written out so that their arithmetic is exactly
//! PyTorch's:
//! - AdamW for the adaptor: decoupled weight decay (`p -= lr * wd * p` before the Adam step),
//!   torch defaults betas (0.9, 0.999), eps 1e-8.
//! - Adam with COUPLED L2 weight decay for the discriminator (`g += wd * p`), as
//!   `torch.optim.Adam(weight_decay=...)` does. candle's own AdamW is decoupled only, hence this.
//!
//! Both keep their first and second moments as tensors beside each parameter (same shape,
//! f32) so that a checkpoint can store and restore them for `--resume`.

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::Result;

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDecay {
    /// AdamW: `p *= 1 - lr * wd` before the Adam update.
    Decoupled(f64),
    /// Adam with L2: `g += wd * p` before the moments are updated.
    Coupled(f64),
}

/// Adam-family optimiser state for a list of parameters.
pub struct AdamFamily {
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Number of steps taken so far.
    pub step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    decay: WeightDecay,
}

impl AdamFamily {
    /// A new optimiser over `vars` with torch's default betas and eps.
    pub fn new(vars: Vec<Var>, lr: f64, decay: WeightDecay) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decay,
        })
    }

    /// The parameters this optimiser updates.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The moment tensors (m, v) per parameter, for checkpoints.
    pub fn moments(&self) -> (&[Tensor], &[Tensor]) {
        (&self.m, &self.v)
    }

    /// Restores moments and the step count saved by [`Self::moments`].
    pub fn restore(&mut self, m: Vec<Tensor>, v: Vec<Tensor>, step: u64) -> Result<()> {
        if m.len() != self.vars.len() || v.len() != self.vars.len() {
            return Err(crate::Error::Other(format!(
                "optimiser state has {} / {} moment tensors for {} parameters",
                m.len(),
                v.len(),
                self.vars.len()
            )));
        }
        for (i, var) in self.vars.iter().enumerate() {
            if m[i].dims() != var.dims() || v[i].dims() != var.dims() {
                return Err(crate::Error::Other(format!(
                    "optimiser moment {i} has shape {:?}, parameter has {:?}",
                    m[i].dims(),
                    var.dims()
                )));
            }
        }
        self.m = m;
        self.v = v;
        self.step = step;
        Ok(())
    }

    /// One step using the gradients in `grads`. Parameters without a gradient are skipped
    /// (their moments are left untouched, as torch does for `p.grad is None`).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor();
            let mut p_new = p.clone();
            let g = match self.decay {
                WeightDecay::Coupled(wd) if wd != 0.0 => (g + (p * wd)?)?,
                WeightDecay::Decoupled(wd) if wd != 0.0 => {
                    p_new = (p * (1.0 - self.lr * wd))?;
                    g.clone()
                }
                _ => g.clone(),
            };
            let m = ((&self.m[i] * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            // torch: denom = sqrt(v) / sqrt(bc2) + eps; p -= (lr / bc1) * m / denom
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.eps)?;
            let update = ((&m / &denom)? * (self.lr / bc1))?;
            var.set(&(p_new - update)?)?;
            // Detached: the moments are built from gradients, whose op graph would otherwise be
            // kept alive step after step (memory growing with every step).
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }
}

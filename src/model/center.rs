//! Center bank, global match and local alignment (spec section 1, rows "centers", "global
//! match", "local alignment"):
//! - [`CenterBank`]: C [K, P, D], per class k and position p the exact mean of the adapted
//!   features f over that class's training images, computed once before training with the
//!   untrained adaptor.
//! - [`CenterBank::global_match`]: f [B, P, D] -> class index `[B]` by the cosine similarity of
//!   the whole flattened map with each class's flattened center map.
//! - [`CenterBank::align`]: f [B, P, D] with each image's class -> R [B, P, D], per patch the
//!   most cosine-similar center among ALL positions of the class's map (no gradient).

use candle_core::{DType, Tensor, D};

use super::layers::l2_normalize;
use crate::{Error, Result};

/// Per-class, per-position feature centers.
#[derive(Clone)]
pub struct CenterBank {
    /// [K, P, D]
    pub centers: Tensor,
    /// Unit-norm centers [K, P, D], precomputed for local alignment.
    unit: Tensor,
    /// Unit-norm flattened center maps [K, P*D], for the global match.
    unit_flat: Tensor,
}

impl CenterBank {
    /// From a [K, P, D] tensor.
    pub fn new(centers: Tensor) -> Result<Self> {
        let (k, p, d) = centers.dims3()?;
        // A constant: detached from the adaptor that computed it (the reference computes it
        // under `torch.no_grad()`). Kept attached, training would send gradient through the
        // centers into the adaptor, and a bank read back from a checkpoint (no graph) would not.
        let centers = centers.to_dtype(DType::F32)?.detach();
        let unit = l2_normalize(&centers)?;
        let unit_flat = l2_normalize(&centers.reshape((k, p * d))?)?;
        Ok(Self {
            centers,
            unit,
            unit_flat,
        })
    }

    /// Number of classes K.
    pub fn classes(&self) -> usize {
        self.centers.dims()[0]
    }

    /// Global match: f `[B, P, D]` -> (class index `[B]`, cosine similarity of the best class `[B]`).
    pub fn global_match(&self, f: &Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
        let (b, p, d) = f.dims3()?;
        let flat = l2_normalize(&f.to_dtype(DType::F32)?.reshape((b, p * d))?)?;
        let sim = flat.matmul(&self.unit_flat.t()?)?; // [B, K]
        let idx: Vec<u32> = sim.argmax(D::Minus1)?.to_vec1()?;
        let best = sim.max(D::Minus1)?.to_vec1::<f32>()?;
        Ok((idx.into_iter().map(|i| i as usize).collect(), best))
    }

    /// Local alignment, the ONE implementation (training, scoring and the median-distance
    /// probe): f [B, P, D] with one class index per image -> R [B, P, D]. With `center_search`
    /// (the method) each patch gets the most cosine-similar center among ALL positions of its
    /// class's map; without it (ablation) the center at the patch's own position. No gradient.
    pub fn align(&self, f: &Tensor, classes: &[usize], center_search: bool) -> Result<Tensor> {
        Ok(self.align_indexed(f, classes, center_search)?.0)
    }

    /// [`Self::align`], with the index of the center each patch took (`[B, P]` u32, positions
    /// of its class's map) when `center_search` is on.
    pub fn align_indexed(
        &self,
        f: &Tensor,
        classes: &[usize],
        center_search: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let b = f.dim(0)?;
        if classes.len() != b {
            return Err(Error::Other(format!(
                "{} class indices for a batch of {b}",
                classes.len()
            )));
        }
        if let Some(&bad) = classes.iter().find(|&&k| k >= self.classes()) {
            return Err(Error::config(
                "class index",
                bad,
                format!("the center bank has {} classes", self.classes()),
            ));
        }
        let idx = Tensor::from_vec(
            classes.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            b,
            f.device(),
        )?;
        let centers = self.centers.index_select(&idx, 0)?; // [B, P, D]
        if !center_search {
            return Ok((centers, None));
        }
        let unit = self.unit.index_select(&idx, 0)?;
        let fu = l2_normalize(&f.to_dtype(DType::F32)?.detach())?;
        let sim = fu.matmul(&unit.transpose(1, 2)?.contiguous()?)?; // [B, P, P]
        let best = sim.argmax(D::Minus1)?; // [B, P]
        let (_, p, d) = f.dims3()?;
        let gathered = centers.gather(
            &best
                .unsqueeze(D::Minus1)?
                .broadcast_as((b, p, d))?
                .contiguous()?,
            1,
        )?;
        Ok((gathered, Some(best)))
    }
}

/// Accumulates exact per-class, per-position means of adapted features.
pub struct CenterAccumulator {
    sums: Vec<Option<Tensor>>,
    counts: Vec<usize>,
}

impl CenterAccumulator {
    /// For `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            sums: vec![None; classes],
            counts: vec![0; classes],
        }
    }

    /// Adds f [B, P, D] whose images all belong to class `k`.
    pub fn add(&mut self, k: usize, f: &Tensor) -> Result<()> {
        let b = f.dim(0)?;
        // Detached: no autograd graph (holding every image's forward pass) is built or kept.
        let s = f.detach().to_dtype(DType::F64)?.sum(0)?;
        self.sums[k] = Some(match self.sums[k].take() {
            Some(acc) => (acc + s)?,
            None => s,
        });
        self.counts[k] += b;
        Ok(())
    }

    /// The bank; every class must have at least one image.
    pub fn finish(self, class_names: &[String]) -> Result<CenterBank> {
        let mut rows = Vec::with_capacity(self.sums.len());
        for (k, (s, n)) in self.sums.into_iter().zip(self.counts).enumerate() {
            let s = s.ok_or_else(|| {
                Error::Other(format!(
                    "class {:?} has no training images: cannot compute its centers",
                    class_names.get(k).map(String::as_str).unwrap_or("?")
                ))
            })?;
            rows.push((s / n as f64)?.to_dtype(DType::F32)?);
        }
        CenterBank::new(Tensor::stack(&rows, 0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// loss = sum(R * f) for a one-image bank built from f itself: d loss / d f must be R alone,
    /// with no second term through the centers (which would make the gradient 2 R here).
    #[test]
    fn the_bank_passes_no_gradient_to_the_features_it_was_built_from() {
        let dev = Device::Cpu;
        let v = Tensor::new(&[[[1f32, 2.], [3., -1.]]], &dev).unwrap(); // [1, P 2, D 2]
        let accumulated = |f: &Tensor| {
            let mut acc = CenterAccumulator::new(1);
            acc.add(0, f).unwrap();
            acc.finish(&["a".into()]).unwrap()
        };
        let direct = |f: &Tensor| CenterBank::new(f.clone()).unwrap();
        for build in [&accumulated as &dyn Fn(&Tensor) -> CenterBank, &direct] {
            let w = Var::from_tensor(&v).unwrap();
            let bank = build(w.as_tensor());
            let r = bank.align(w.as_tensor(), &[0], true).unwrap();
            let loss = (&r * w.as_tensor()).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<f32> = grads
                .get(w.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(g, want);
        }
    }
}

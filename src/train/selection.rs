//! The reference protocol's test-set model selection, opt-in (`--eval-every N
//! --select-on-test`): the test split's descriptors are computed once; every N epochs the
//! current head scores them (global match, as at inference; or, asked to reproduce the
//! reference, each class's images in order in groups of the batch size with the batch vote)
//! and the mean over classes of
//! image AUROC and pixel AUROC is recorded; with selection on, the head of the best epoch
//! (by their sum, as the reference) becomes the model, which is then marked "test-selected".

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::fit::HeadState;
use crate::data::{Dataset, Preprocess};
use crate::features::cache::{CachePrecision, FeatureCache};
use crate::features::FeatureExtractor;
use crate::infer::{score_descriptors, ClassChoice};
use crate::maps::map_of;
use crate::metrics::{EvalAccumulator, MetricSet};
use crate::model::{file, Ablation, CenterBank, HeadRef};
use crate::Result;

/// The test split, ready to be scored by any head.
pub struct TestProbe {
    cache: FeatureCache,
    /// True class of each test image.
    classes: Vec<usize>,
    labels: Vec<bool>,
    masks: Vec<Option<Vec<u8>>>,
    n_classes: usize,
    grid: usize,
    size: usize,
}

impl TestProbe {
    /// Computes the descriptors and masks of every test image of `ds` (classes in model order).
    pub fn build(
        ds: &Dataset,
        pre: &Preprocess,
        extractor: &FeatureExtractor,
        dims: usize,
        device: &Device,
    ) -> Result<Self> {
        let size = pre.crop as usize;
        let grid = extractor.grid_side(size);
        let items: Vec<(usize, &crate::data::TestItem)> = ds
            .classes
            .iter()
            .enumerate()
            .flat_map(|(k, c)| c.test.iter().map(move |t| (k, t)))
            .collect();
        let mut cache = FeatureCache::new(
            items.len(),
            grid * grid,
            dims,
            CachePrecision::F32,
            u64::MAX,
            None,
        )?;
        let paths: Vec<_> = items.iter().map(|(_, t)| t.path.clone()).collect();
        cache.fill_from_images(extractor, &paths, pre, false, device)?;
        let masks = items
            .iter()
            .map(|(_, t)| t.mask.as_ref().map(|m| pre.load_mask(m)).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cache,
            classes: items.iter().map(|(k, _)| *k).collect(),
            labels: items.iter().map(|(_, t)| t.is_anomalous()).collect(),
            masks,
            n_classes: ds.classes.len(),
            grid,
            size,
        })
    }

    /// The groups of test images scored together: with `vote_group`, each class's images in
    /// order in runs of that many (the reference's per-class test batches); else runs of 16.
    fn chunks(&self, vote_group: Option<usize>) -> Vec<Vec<usize>> {
        let Some(g) = vote_group else {
            let idx: Vec<usize> = (0..self.cache.len()).collect();
            return idx.chunks(16).map(<[usize]>::to_vec).collect();
        };
        let mut out = Vec::new();
        for k in 0..self.n_classes {
            let of_class: Vec<usize> = (0..self.classes.len())
                .filter(|&i| self.classes[i] == k)
                .collect();
            out.extend(of_class.chunks(g.max(1)).map(<[usize]>::to_vec));
        }
        out
    }

    /// Mean over classes of (image AUROC, pixel AUROC) for the current head. With
    /// `vote_group`, every image takes its group's majority match ([`ClassChoice::BatchVote`]
    /// over each class's runs of `vote_group` images), as the reference's `_predict` does.
    pub fn evaluate(
        &self,
        state: &HeadState,
        bank: &CenterBank,
        ablation: Ablation,
        vote_group: Option<usize>,
        device: &Device,
    ) -> Result<(f64, f64)> {
        let mut accs: Vec<EvalAccumulator> = (0..self.n_classes)
            .map(|_| EvalAccumulator::new(self.size))
            .collect();
        let choice = if vote_group.is_some() {
            ClassChoice::BatchVote
        } else {
            ClassChoice::Match
        };
        for chunk in self.chunks(vote_group) {
            let chunk = &chunk[..];
            let g = self.cache.batch(chunk, device)?;
            let head = HeadRef {
                bank,
                adaptor: &state.adaptor,
                discriminator: &state.discriminator,
            };
            let preds = score_descriptors(head, ablation, &g, &choice)?;
            for (&i, p) in chunk.iter().zip(&preds) {
                let map = map_of(&p.patch_scores, self.grid, self.size);
                accs[self.classes[i]].push(
                    p.score,
                    self.labels[i],
                    &map,
                    self.masks[i].as_deref(),
                )?;
            }
        }
        let sets: Vec<MetricSet> = accs.iter().map(|a| a.compute(0.3)).collect();
        let mean = MetricSet::mean_of(&sets);
        Ok((
            mean.image_auroc.unwrap_or(0.0),
            mean.pixel_auroc.unwrap_or(0.0),
        ))
    }
}

/// The best head seen so far (tensors on the CPU) and its epoch.
#[derive(Default)]
pub struct BestHead {
    pub epoch: Option<usize>,
    pub score: f64,
    pub tensors: HashMap<String, Tensor>,
}

impl BestHead {
    /// Keeps `state` if `score` beats the best so far.
    pub fn offer(&mut self, state: &HeadState, epoch: usize, score: f64) -> Result<()> {
        if self.epoch.is_none() || score > self.score {
            self.tensors = file::head_tensors(&state.adaptor, &state.discriminator, None)
                .into_iter()
                .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?.copy()?)))
                .collect::<Result<_>>()?;
            self.epoch = Some(epoch);
            self.score = score;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_groups_are_runs_of_each_class_in_order() {
        let cache = FeatureCache::new(5, 1, 2, CachePrecision::F32, u64::MAX, None).unwrap();
        let probe = TestProbe {
            cache,
            classes: vec![0, 1, 0, 0, 1],
            labels: vec![false; 5],
            masks: vec![None; 5],
            n_classes: 2,
            grid: 1,
            size: 1,
        };
        assert_eq!(probe.chunks(Some(2)), vec![vec![0, 2], vec![3], vec![1, 4]]);
        assert_eq!(probe.chunks(Some(32)), vec![vec![0, 2, 3], vec![1, 4]]);
        assert_eq!(probe.chunks(None), vec![vec![0, 1, 2, 3, 4]]);
    }
}

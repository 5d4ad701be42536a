//! The ONE place a [`FeatureExtractor`] is built from a description (`cras train`, `cras embed`,
//! `cras bench`): backbone architecture and weights -> optional BatchNorm re-estimation on
//! preprocessed images [B, 3, S, S] (random backbones) -> the chosen BatchNorm statistics at
//! input side S -> network built up to the descriptor's deepest layer -> descriptor.

use candle_core::{Device, Tensor};

use super::{DescriptorConfig, FeatureExtractor};
use crate::backbone::{Arch, BackboneBuilder, BnStats, BuildOptions, Layer, WeightSource};
use crate::Result;

/// Everything that decides an extractor's features.
#[derive(Clone, Debug)]
pub struct ExtractorSpec {
    pub arch: Arch,
    pub weights: WeightSource,
    pub bn_stats: BnStats,
    /// The input side S the BatchNorm statistics are set for.
    pub input_size: usize,
    pub descriptor: DescriptorConfig,
}

impl ExtractorSpec {
    /// Builds the extractor on `device`; `recalibrate` (may be empty) are preprocessed image
    /// batches on which every BatchNorm's statistics are re-estimated first.
    pub fn build(&self, recalibrate: &[Tensor], device: &Device) -> Result<FeatureExtractor> {
        let last = self
            .descriptor
            .layers
            .iter()
            .copied()
            .max()
            .unwrap_or(Layer::L3);
        // A weight file needs the stages up to the deepest one used (later ones may be absent,
        // as in a truncated file); the BatchNorm statistics of those stages do not depend on
        // later ones. A random network is drawn whole, so its draws stay those of torchvision.
        let mut builder = match &self.weights {
            WeightSource::File(_) => BackboneBuilder::with_options(
                self.arch,
                &self.weights,
                BuildOptions {
                    through: last,
                    ..BuildOptions::default()
                },
            )?,
            _ => BackboneBuilder::new(self.arch, &self.weights)?,
        };
        if !recalibrate.is_empty() {
            builder.recalibrate_bn(recalibrate)?;
        }
        builder.apply_bn_stats(self.bn_stats, self.input_size)?;
        FeatureExtractor::new(builder.build(last, device)?, self.descriptor.clone())
    }
}

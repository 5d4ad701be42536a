//! A complete trained model in memory: its metadata, its feature extractor (the folded backbone
//! plus the descriptor settings) and its head (adaptor, discriminator, center bank).
//!
//! [`TrainedModel::load`] reads a complete model file ([`super::file::load`]: metadata and
//! tensors checked), refuses a partial checkpoint, builds the extractor and runs a test forward
//! pass ([`ModelRef::self_test`]); every error names the file. [`ModelRef`] is the same
//! model borrowed: what the exporter and the inference layer read. [`HeadRef::score_adapted`]
//! is the head's scoring of one adapted image (alignment, discriminator), shared by inference
//! and the self test.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::file::{self, HeadRef, ModelMeta};
use super::head::{discriminator_input, Ablation, Adaptor, Discriminator};
use super::CenterBank;
use crate::features::FeatureExtractor;
use crate::{Error, Result};

/// A complete trained model, owned.
pub struct TrainedModel {
    pub meta: ModelMeta,
    pub extractor: FeatureExtractor,
    pub adaptor: Adaptor,
    pub discriminator: Discriminator,
    pub bank: CenterBank,
}

/// A complete trained model, borrowed: metadata, feature extractor and head.
#[derive(Clone, Copy)]
pub struct ModelRef<'a> {
    pub meta: &'a ModelMeta,
    pub extractor: &'a FeatureExtractor,
    pub head: HeadRef<'a>,
}

impl ModelRef<'_> {
    /// The input side S the model expects.
    pub fn input_size(&self) -> usize {
        self.meta.preprocess.crop as usize
    }
}

impl<'a> From<&'a TrainedModel> for ModelRef<'a> {
    fn from(m: &'a TrainedModel) -> Self {
        m.as_ref()
    }
}

impl TrainedModel {
    /// Loads a complete model file written by `cras train` onto `device` and runs its test
    /// forward pass. A partial checkpoint is refused (finish it with `cras train --resume`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let f = file::load(path, device)?;
        let backbone = match (f.meta.partial, f.backbone) {
            (false, Some(b)) => b,
            _ => {
                return Err(Error::checkpoint(
                    path,
                    "this is a partial checkpoint of an unfinished training run: finish it with `cras train --resume`",
                ))
            }
        };
        let extractor = FeatureExtractor::new(backbone, f.meta.descriptor.clone())
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let model = TrainedModel {
            meta: f.meta,
            extractor,
            adaptor: f.adaptor,
            discriminator: f.discriminator,
            bank: f.bank,
        };
        model
            .as_ref()
            .self_test(device)
            .map_err(|e| Error::checkpoint(path, format!("test forward pass: {e}")))?;
        Ok(model)
    }

    /// The model, borrowed.
    pub fn as_ref(&self) -> ModelRef<'_> {
        ModelRef {
            meta: &self.meta,
            extractor: &self.extractor,
            head: HeadRef {
                bank: &self.bank,
                adaptor: &self.adaptor,
                discriminator: &self.discriminator,
            },
        }
    }
}

impl ModelRef<'_> {
    /// A test forward pass, cheap whatever the model's input size: the backbone and descriptor
    /// on a 32x32 gray image on `device` (their output must be finite and of the model's
    /// width), then the head on the first class's centers as the descriptors of one image
    /// (finite scores, one per patch). Catches what the static checks cannot (e.g. a degenerate
    /// batch-norm variance).
    pub fn self_test(&self, device: &Device) -> Result<()> {
        let d = self.meta.descriptor.dims;
        let image = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, device)?;
        let g = self.extractor.descriptors(&image)?;
        if g.dim(2)? != d {
            return Err(Error::Other(format!(
                "the descriptor is {} wide, the metadata says {d}",
                g.dim(2)?
            )));
        }
        if super::check::non_finite(&g)? > 0 {
            return Err(Error::Other(
                "the backbone gives NaN or infinite features".into(),
            ));
        }
        let head = self.head;
        let (_, p, d) = head.bank.centers.dims3()?;
        let g = head.bank.centers.get(0)?.reshape((p, d))?;
        let f = head.adaptor.forward(&g)?.reshape((1, p, d))?;
        let (matched, _) = head.bank.global_match(&f)?;
        let patch_scores = head.score_adapted(&f, &matched, self.meta.ablation)?;
        let score = patch_scores
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let patches = self.meta.grid * self.meta.grid;
        if patch_scores.len() == patches
            && score.is_finite()
            && patch_scores.iter().all(|s| s.is_finite())
        {
            return Ok(());
        }
        Err(Error::Other(format!(
            "the head gives score {score} over {} patch scores (expected a finite score over \
             {patches})",
            patch_scores.len()
        )))
    }
}

impl HeadRef<'_> {
    /// The patch scores `[P]` of ONE image from its adapted features f `[1, P, D]`, aligned with
    /// the center-bank row `class` (a one-element slice): local alignment R, discriminator on
    /// `[f ; f - R]` wired per `ablation`.
    pub fn score_adapted(
        &self,
        f: &Tensor,
        class: &[usize],
        ablation: Ablation,
    ) -> Result<Vec<f32>> {
        let (_, p, d) = f.dims3()?;
        let r = self.bank.align(f, class, ablation.center_search)?;
        let x = discriminator_input(&f.reshape((p, d))?, &r.reshape((p, d))?, ablation)?;
        let s = self.discriminator.forward_eval(&x)?.flatten_all()?;
        Ok(s.to_device(&Device::Cpu)?.to_vec1()?)
    }
}

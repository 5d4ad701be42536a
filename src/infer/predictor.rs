//! [`Predictor`]: the trained model, loaded once, scoring batches of images.
//!
//! Input: preprocessed images [B, 3, S, S] (or decoded RGB images, or cached descriptors
//! [B, P, D]). Output per image: the class used (matched, stated, or the batch's vote), the
//! cosine similarity of the global match, the image score (max patch score) and the patch
//! scores [g*g]; [`Predictor::anomaly_map`] turns patch scores into the [S, S] map.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::model_file::ModelMeta;
use crate::backbone::ResNet;
use crate::features::FeatureExtractor;
use crate::model::{checkpoint, step, Adaptor, CenterBank, Discriminator};
use crate::{Error, Result};

/// How the class of each image is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassChoice {
    /// Per-image global match against every class's center map (our default).
    Match,
    /// The caller states each image's class (one index per image).
    Stated(Vec<usize>),
    /// The reference's test protocol: every image gets the batch's majority match (parity only).
    BatchVote,
}

/// The result for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Class index used for alignment.
    pub class: usize,
    /// Class index of the global match (equal to `class` unless the class was stated or voted).
    pub matched: usize,
    /// Cosine similarity of the image's feature map with the matched class's center map.
    pub class_similarity: f32,
    /// Image anomaly score: the maximum patch score.
    pub score: f32,
    /// Patch scores [grid * grid], row-major.
    pub patch_scores: Vec<f32>,
}

/// A trained CRAS model ready for inference.
pub struct Predictor {
    pub meta: ModelMeta,
    pub extractor: FeatureExtractor,
    pub adaptor: Adaptor,
    pub discriminator: Discriminator,
    pub bank: CenterBank,
    pub device: Device,
}

impl Predictor {
    /// Loads a model file written by `cras train` onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let file = checkpoint::read(path)?;
        let meta = ModelMeta::from_json(path, &file.meta)?;
        if meta.partial {
            return Err(Error::checkpoint(
                path,
                "this is a partial checkpoint of an unfinished training run: finish it with `cras train --resume`",
            ));
        }
        let tensors = checkpoint::to_device(&file.tensors, device)?;
        let backbone_tensors: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("backbone.")
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect();
        if backbone_tensors.is_empty() {
            return Err(Error::checkpoint(
                path,
                "the model file holds no backbone tensors",
            ));
        }
        let backbone = ResNet::from_folded(
            meta.backbone.clone(),
            meta.last_layer,
            &backbone_tensors,
            device,
        )
        .map_err(|e| Error::checkpoint(path, format!("backbone: {e}")))?;
        let extractor = FeatureExtractor::new(backbone, meta.descriptor.clone())?;
        let adaptor =
            Adaptor::from_named(&tensors).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let discriminator = Discriminator::from_named(&tensors)
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let centers = tensors
            .get("centers")
            .ok_or_else(|| Error::checkpoint(path, "the model file holds no center bank"))?;
        let bank = CenterBank::new(centers.clone())?;
        if bank.classes() != meta.classes.len() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "center bank has {} classes, metadata lists {}",
                    bank.classes(),
                    meta.classes.len()
                ),
            ));
        }
        Ok(Self {
            meta,
            extractor,
            adaptor,
            discriminator,
            bank,
            device: device.clone(),
        })
    }

    /// The input side S the model expects.
    pub fn input_size(&self) -> usize {
        self.meta.preprocess.crop as usize
    }

    /// Scores descriptors g [B, P, D].
    pub fn score_descriptors(&self, g: &Tensor, choice: &ClassChoice) -> Result<Vec<Prediction>> {
        score_with_head(
            &self.adaptor,
            &self.discriminator,
            &self.bank,
            g,
            choice,
            self.ablation(),
        )
    }

    /// The parts of the method the model was trained with (ablation runs turn some off).
    pub fn ablation(&self) -> step::Ablation {
        self.meta
            .config
            .get("fit")
            .and_then(|f| f.get("ablation"))
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default()
    }

    /// Scores preprocessed images [B, 3, S, S].
    pub fn predict_tensor(&self, images: &Tensor, choice: &ClassChoice) -> Result<Vec<Prediction>> {
        let g = self
            .extractor
            .descriptors(&images.to_device(&self.device)?)?;
        self.score_descriptors(&g, choice)
    }

    /// Preprocesses decoded images (in parallel) and scores them.
    pub fn predict_images(
        &self,
        images: &[image::RgbImage],
        choice: &ClassChoice,
    ) -> Result<Vec<Prediction>> {
        let s = self.input_size();
        let pre = &self.meta.preprocess;
        let data: Vec<f32> = images
            .par_iter()
            .map(|im| pre.image(im))
            .flatten()
            .collect();
        let t = Tensor::from_vec(data, (images.len(), 3, s, s), &self.device)?;
        self.predict_tensor(&t, choice)
    }

    /// The anomaly map [S * S] of a prediction (bilinear upsampling + Gaussian blur sigma 4).
    pub fn anomaly_map(&self, p: &Prediction) -> Vec<f32> {
        crate::anomaly_map::anomaly_map(&p.patch_scores, self.meta.grid, self.input_size(), 4.0)
    }

    /// The stored threshold for class `k` (per class, else global), if calibrated.
    pub fn threshold(&self, k: usize) -> Option<f32> {
        self.meta.threshold(k)
    }

    /// Builds a predictor from the parts of a training run (no file round trip).
    pub fn from_parts(
        meta: ModelMeta,
        extractor: FeatureExtractor,
        adaptor: Adaptor,
        discriminator: Discriminator,
        bank: CenterBank,
        device: &Device,
    ) -> Self {
        Self {
            meta,
            extractor,
            adaptor,
            discriminator,
            bank,
            device: device.clone(),
        }
    }
}

/// Reads every image's class in `choice` when a name is given.
pub fn stated_class(meta: &ModelMeta, name: Option<&str>, n: usize) -> Result<ClassChoice> {
    Ok(match name {
        None => ClassChoice::Match,
        Some(c) => ClassChoice::Stated(vec![meta.class_index(c)?; n]),
    })
}

/// Scores descriptors g [B, P, D] with a head (adaptor, discriminator in evaluation mode,
/// center bank): the one scoring path of inference, evaluation and test-set selection.
pub fn score_with_head(
    adaptor: &Adaptor,
    discriminator: &Discriminator,
    bank: &CenterBank,
    g: &Tensor,
    choice: &ClassChoice,
    ablation: step::Ablation,
) -> Result<Vec<Prediction>> {
    let (b, p, d) = g.dims3()?;
    // Every matrix product runs on one image at a time: gemm's blocking (and so its rounding)
    // depends on the number of rows, and an image's score must not depend on its batch
    // (served, batched and single predictions agree bit for bit).
    let f: Vec<Tensor> = (0..b)
        .map(|i| -> Result<Tensor> {
            Ok(adaptor
                .forward(&g.get(i)?.reshape((p, d))?)?
                .reshape((1, p, d))?)
        })
        .collect::<Result<_>>()?;
    let (mut matched, mut sims) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for fi in &f {
        let (m, s) = bank.global_match(fi)?;
        matched.extend(m);
        sims.extend(s);
    }
    let classes = match choice {
        ClassChoice::Match => matched.clone(),
        ClassChoice::Stated(c) => {
            if c.len() != b {
                return Err(Error::Other(format!(
                    "{} stated classes for {b} images",
                    c.len()
                )));
            }
            if let Some(&bad) = c.iter().find(|&&k| k >= bank.classes()) {
                return Err(Error::config("class index", bad, "out of range"));
            }
            c.clone()
        }
        ClassChoice::BatchVote => {
            let mut counts = vec![0usize; bank.classes()];
            for &k in &matched {
                counts[k] += 1;
            }
            // torch.mode picks the smallest value among ties
            let best = (0..counts.len())
                .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
                .unwrap_or(0);
            vec![best; b]
        }
    };
    let mut scores: Vec<Vec<f32>> = Vec::with_capacity(b);
    for (fi, &k) in f.iter().zip(&classes) {
        let r = step::aligned_centers(bank, fi, &[k], ablation)?;
        let x = step::discriminator_input(&fi.reshape((p, d))?, &r.reshape((p, d))?, ablation)?;
        let s = discriminator.forward_eval(&x)?.flatten_all()?;
        scores.push(s.to_device(&Device::Cpu)?.to_vec1()?);
    }
    Ok(scores
        .into_iter()
        .zip(classes)
        .zip(matched.into_iter().zip(sims))
        .map(
            |((patch_scores, class), (matched, class_similarity))| Prediction {
                class,
                matched,
                class_similarity,
                score: patch_scores
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max),
                patch_scores,
            },
        )
        .collect())
}

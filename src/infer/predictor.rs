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

use super::engine::graph_engine::GraphEngine;
use super::engine::{EngineChoice, EngineKind, EngineOptions, Precision};
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
    /// The anomaly map [S * S] when the engine computed it (exported graphs do); otherwise
    /// [`Predictor::anomaly_map`] computes it from the patch scores.
    pub map: Option<Vec<f32>>,
}

/// A trained CRAS model ready for inference.
pub struct Predictor {
    pub meta: ModelMeta,
    pub extractor: FeatureExtractor,
    pub adaptor: Adaptor,
    pub discriminator: Discriminator,
    pub bank: CenterBank,
    pub device: Device,
    /// The exported graph in ONNX Runtime or OpenVINO, when one of them scores (else candle).
    graph: Option<GraphEngine>,
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
            graph: None,
        })
    }

    /// Loads a model file and puts it on the engine `options` asks for (see
    /// [`Self::with_engine`]).
    pub fn load_with(path: &Path, device: &Device, options: &EngineOptions) -> Result<Self> {
        let predictor = Self::load(path, device)?;
        let sha = if options.choice == EngineChoice::Kind(EngineKind::Candle) {
            None
        } else {
            Some(crate::backbone::sha256_file(path)?)
        };
        predictor.with_engine(options, sha)
    }

    /// Moves scoring onto the engine `options` asks for: candle (this predictor as it is), or
    /// the exported graph in ONNX Runtime / OpenVINO, built once here. `auto` takes OpenVINO,
    /// else ONNX Runtime, else candle, and logs its choice and why the others were passed over.
    pub fn with_engine(mut self, options: &EngineOptions, model_sha256: Option<String>) -> Result<Self> {
        let kinds: Vec<EngineKind> = match options.choice {
            EngineChoice::Kind(EngineKind::Candle) => {
                if options.precision != Precision::F32 {
                    return Err(Error::config(
                        "precision",
                        options.precision,
                        "the candle engine runs f32 only (bf16: --engine openvino)",
                    ));
                }
                self.graph = None;
                return Ok(self);
            }
            EngineChoice::Kind(k) => vec![k],
            EngineChoice::Auto => vec![EngineKind::OpenVino, EngineKind::OnnxRuntime],
        };
        let onnx = crate::export::export_onnx(
            &self,
            &crate::export::ExportOptions {
                class_input: true,
                model_sha256,
            },
        )?;
        let (side, patches) = (self.input_size(), self.meta.grid * self.meta.grid);
        for kind in kinds {
            match GraphEngine::new(kind, &onnx, options, side, patches, self.meta.classes.len()) {
                Ok(engine) => {
                    tracing::info!("engine: {}", engine.description());
                    self.graph = Some(engine);
                    return Ok(self);
                }
                Err(e) if options.choice == EngineChoice::Auto => {
                    tracing::info!("engine {kind} not used: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!("engine: candle (exact reference path)");
        self.graph = None;
        Ok(self)
    }

    /// The engine that scores.
    pub fn engine(&self) -> EngineKind {
        self.graph.as_ref().map_or(EngineKind::Candle, |g| g.kind())
    }

    /// The engine's precision.
    pub fn precision(&self) -> Precision {
        self.graph.as_ref().map_or(Precision::F32, |g| g.precision())
    }

    /// The engine in one line (runtime, version, library, precision, threads).
    pub fn engine_description(&self) -> String {
        match &self.graph {
            Some(g) => g.description().to_string(),
            None => format!("candle, f32, {:?}", self.device),
        }
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
        if let Some(graph) = &self.graph {
            return graph.score(images, choice);
        }
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
        if let Some(map) = &p.map {
            return map.clone();
        }
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
            graph: None,
        }
    }
}

/// Checks stated class indices: one per image, each below `classes`.
pub(crate) fn check_stated(stated: &[usize], images: usize, classes: usize) -> Result<()> {
    if stated.len() != images {
        return Err(Error::Other(format!(
            "{} stated classes for {images} images",
            stated.len()
        )));
    }
    if let Some(&bad) = stated.iter().find(|&&k| k >= classes) {
        return Err(Error::config("class index", bad, "out of range"));
    }
    Ok(())
}

/// The reference's batch vote: the most frequent matched class (the smallest index among
/// ties, as `torch.mode`).
pub(crate) fn batch_vote(matched: &[usize], classes: usize) -> usize {
    let mut counts = vec![0usize; classes];
    for &k in matched {
        if k < classes {
            counts[k] += 1;
        }
    }
    (0..counts.len())
        .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
        .unwrap_or(0)
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
            check_stated(c, b, bank.classes())?;
            c.clone()
        }
        ClassChoice::BatchVote => vec![batch_vote(&matched, bank.classes()); b],
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
                map: None,
            },
        )
        .collect())
}

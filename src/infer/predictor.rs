//! [`Predictor`]: the trained model, loaded once, scoring batches of images. It is the ONE
//! scoring type every command goes through (`cras predict`, `cras eval`, `cras serve`'s
//! batcher, `cras bench`, `cras demo`, threshold calibration after training).
//!
//! Central method: [`Predictor::predict_batch`], preprocessed images [B, 3, S, S] plus a
//! [`ClassChoice`] -> one [`Prediction`] per image (class used, matched class, class
//! similarity, image score = max patch score, patch scores `[g*g]`). Around it: decoded RGB images
//! ([`Predictor::predict_images`] = [`Predictor::preprocess`] + `predict_batch`), cached
//! descriptors [B, P, D] ([`Predictor::score_descriptors`]), and [`Predictor::anomaly_map`]
//! (patch scores -> the [S, S] map, [`crate::maps::map_of`]).

use std::path::Path;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::decision::ThresholdOf;
use super::engine::graph_engine::GraphEngine;
use super::engine::{EngineChoice, EngineKind, EngineOptions, Precision};
use super::scoring::{ClassChoice, Prediction};
use super::tiled;
use crate::features::FeatureExtractor;
use crate::model::{
    file, Ablation, Adaptor, CenterBank, Discriminator, HeadRef, ModelMeta, ModelRef, TrainedModel,
};
use crate::{Error, Result};

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
    /// Loads a complete model file written by `cras train` onto `device` (checked, with its
    /// test forward pass: [`TrainedModel::load`]).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let m = TrainedModel::load(path, device)?;
        Ok(Self::from_parts(
            m.meta,
            m.extractor,
            m.adaptor,
            m.discriminator,
            m.bank,
            device,
        ))
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
    /// the exported graph ([`crate::export`]) in ONNX Runtime / OpenVINO, built once here.
    /// `auto` takes OpenVINO, else ONNX Runtime, else candle, and logs its choice and why the
    /// others were passed over.
    pub fn with_engine(
        mut self,
        options: &EngineOptions,
        model_sha256: Option<String>,
    ) -> Result<Self> {
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
        let export = |part: crate::export::GraphPart, precision: Precision| {
            crate::export::export_onnx(
                &self,
                &super::engine::part_options(part, precision, model_sha256.clone()),
            )
        };
        let (side, patches) = (self.input_size(), self.meta.grid * self.meta.grid);
        let mut engine = None;
        for kind in kinds {
            // The graph's class outputs index the bank's rows (per-tile centers: class x tile).
            let band = super::engine::band::resolve_band(&self.meta, kind, options)?;
            let built = GraphEngine::new(
                kind,
                &export,
                options,
                band,
                side,
                patches,
                self.bank.classes(),
            );
            match built {
                Ok(e) => {
                    tracing::info!("engine: {}", e.description());
                    engine = Some(e);
                    break;
                }
                Err(e) if options.choice == EngineChoice::Auto => {
                    tracing::info!("engine {kind} not used: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        if engine.is_some() {
            self.graph = engine;
            return Ok(self);
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
        self.graph
            .as_ref()
            .map_or(Precision::F32, |g| g.precision())
    }

    /// The engine in one line (runtime, version, library, precision, threads).
    pub fn engine_description(&self) -> String {
        match &self.graph {
            Some(g) => g.description().to_string(),
            None => format!("candle, f32, {:?}", self.device),
        }
    }

    /// Writes this model as a complete model file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        file::save(path, &self.meta, self.head(), &self.extractor.backbone)
    }

    /// The trained model (metadata, extractor, head), borrowed: what the exporter reads.
    pub fn parts(&self) -> ModelRef<'_> {
        ModelRef {
            meta: &self.meta,
            extractor: &self.extractor,
            head: self.head(),
        }
    }

    /// The trained head, borrowed.
    pub fn head(&self) -> HeadRef<'_> {
        HeadRef {
            bank: &self.bank,
            adaptor: &self.adaptor,
            discriminator: &self.discriminator,
        }
    }

    /// The input side S the model expects.
    pub fn input_size(&self) -> usize {
        self.meta.preprocess.crop as usize
    }

    /// The side of an image's anomaly map: S, or the working side of a tiled model.
    pub fn map_size(&self) -> usize {
        self.meta.preprocess.map_side() as usize
    }

    /// The parts of the method the model was trained with (ablation runs turn some off).
    pub fn ablation(&self) -> Ablation {
        self.meta.ablation
    }

    /// Scores preprocessed images [B, 3, S, S]: the central method. Decisions will be taken at
    /// the model's stored thresholds (see [`Self::predict_batch_at`]).
    pub fn predict_batch(&self, images: &Tensor, choice: &ClassChoice) -> Result<Vec<Prediction>> {
        self.predict_batch_at(images, choice, &|_, k| self.meta.threshold(k))
    }

    /// [`Self::predict_batch`] for decisions at other thresholds: `threshold_of(i, k)` is the
    /// threshold of image i scored as class k. Only a bf16 engine reads it, to re-score at f32
    /// the images near their threshold ([`super::engine::graph_engine`]).
    ///
    /// A tiled model takes each image's tiles in a row, `[B * T, 3, S, S]` (as
    /// [`crate::data::loader::Batch::to_tensor`] and [`Self::preprocess`] give them), and returns
    /// one prediction per image (the tile passes of module `tiled`).
    pub fn predict_batch_at(
        &self,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        self.predict_with(self.graph.as_ref(), images, choice, threshold_of)
    }

    /// [`Self::predict_batch_at`] on another engine built for this model (measuring one
    /// engine against this predictor's, [`super::engine::band`]).
    pub(crate) fn predict_batch_on(
        &self,
        engine: &GraphEngine,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        self.predict_with(Some(engine), images, choice, threshold_of)
    }

    /// Scores on `graph` (None: candle).
    fn predict_with(
        &self,
        graph: Option<&GraphEngine>,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        let Some(tiling) = self.meta.preprocess.tiling else {
            return self.predict_inputs_at(graph, images, choice, threshold_of);
        };
        let geometry = tiled::TileGeometry {
            tiling,
            classes: self.meta.classes.len(),
            grid: self.meta.grid,
            side: self.input_size(),
        };
        geometry.predict(images, choice, threshold_of, &|x, c, th| {
            self.predict_inputs_at(graph, x, c, th)
        })
    }

    /// Scores network inputs [N, 3, S, S], one prediction per input (a tiled model's tiles
    /// each on their own).
    fn predict_inputs_at(
        &self,
        graph: Option<&GraphEngine>,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        if let Some(graph) = graph {
            return graph.score(images, choice, threshold_of);
        }
        let g = self
            .extractor
            .descriptors(&images.to_device(&self.device)?)?;
        self.score_descriptors(&g, choice)
    }

    /// Scores descriptors g [B, P, D] (e.g. from a feature cache).
    pub fn score_descriptors(&self, g: &Tensor, choice: &ClassChoice) -> Result<Vec<Prediction>> {
        super::scoring::score_descriptors(self.head(), self.ablation(), g, choice)
    }

    /// Preprocesses decoded images (in parallel) into the batch [B * T, 3, S, S] on the device
    /// (T = 1 unless the model is tiled).
    pub fn preprocess(&self, images: &[image::RgbImage]) -> Result<Tensor> {
        let s = self.input_size();
        let pre = &self.meta.preprocess;
        let data: Vec<f32> = images
            .par_iter()
            .map(|im| pre.views(im))
            .flatten()
            .collect();
        Ok(Tensor::from_vec(
            data,
            (images.len() * pre.views_per_image(), 3, s, s),
            &self.device,
        )?)
    }

    /// Preprocesses decoded images and scores them.
    pub fn predict_images(
        &self,
        images: &[image::RgbImage],
        choice: &ClassChoice,
    ) -> Result<Vec<Prediction>> {
        self.predict_batch(&self.preprocess(images)?, choice)
    }

    /// [`Self::predict_images`] with the thresholds in force (see [`Self::predict_batch_at`]).
    pub fn predict_images_at(
        &self,
        images: &[image::RgbImage],
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        self.predict_batch_at(&self.preprocess(images)?, choice, threshold_of)
    }

    /// Of the images this predictor scored, how many a bf16 engine re-scored at f32, and of
    /// how many (None: no such engine).
    pub fn confirmed_at_f32(&self) -> Option<(u64, u64)> {
        self.graph.as_ref().and_then(|g| g.confirmed())
    }

    /// The anomaly map [S * S] of a prediction (bilinear upsampling + Gaussian blur sigma 4).
    pub fn anomaly_map(&self, p: &Prediction) -> Vec<f32> {
        if let Some(map) = &p.map {
            return map.clone();
        }
        crate::maps::map_of(&p.patch_scores, self.meta.grid, self.input_size())
    }

    /// The stored threshold for class `k` (per class, else global), if calibrated.
    pub fn threshold(&self, k: usize) -> Option<f32> {
        self.meta.threshold(k)
    }
}

impl<'a> From<&'a Predictor> for ModelRef<'a> {
    fn from(p: &'a Predictor) -> Self {
        p.parts()
    }
}

/// Every image's class: stated by name (all `n` images), or by global match.
pub fn stated_class(meta: &ModelMeta, name: Option<&str>, n: usize) -> Result<ClassChoice> {
    Ok(match name {
        None => ClassChoice::Match,
        Some(c) => ClassChoice::Stated(vec![meta.class_index(c)?; n]),
    })
}

//! The model file, and its only owner: ONE safetensors file whose header metadata holds a JSON
//! document ([`ModelMeta`]) under the key [`META_KEY`] and whose tensors are the trained model.
//!
//! Tensors (all f32, any device on save, read back onto the device asked for):
//! - [`CENTERS`]: the center bank [K, P, D];
//! - the head under the reference's names (`pre_projection.*`, `discriminator.*`, see
//!   [`crate::model::head`]);
//! - complete model: the folded backbone under [`BACKBONE_PREFIX`] (`backbone.layer1.0.conv1.weight`, ...);
//! - partial checkpoint (`<out>.partial`, for `cras train --resume`): the optimiser moments
//!   `optim.{adaptor,discriminator}.{m,v}.{i}` ([`optim_name`]) instead of the backbone.
//!
//! [`save`] writes a complete model, [`save_partial`] a partial checkpoint, [`load`] reads
//! either back into typed parts ([`ModelFile`]). Every write is atomic (temp file + rename).
//! The metadata is typed: inference reads the ablation flags from [`ModelMeta::ablation`]; the
//! `config` field is the training run's configuration kept as a provenance record only.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::head::{Ablation, Adaptor, Discriminator};
use super::optim::AdamFamily;
use super::CenterBank;
use crate::backbone::{BackboneInfo, Int8Calibration, Layer, ResNet};
use crate::data::Preprocess;
use crate::features::{DescriptorConfig, FeatureExtractor};
use crate::{Error, Result};

/// The metadata key holding the JSON document.
pub const META_KEY: &str = "cras";
/// Bumped whenever the file layout or the meaning of a field changes.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the center bank tensor [K, P, D].
pub const CENTERS: &str = "centers";
/// Prefix of the folded backbone's tensors in a complete model.
pub const BACKBONE_PREFIX: &str = "backbone.";
/// The two optimisers of a partial checkpoint, in (adaptor, discriminator) order.
pub const OPTIMISERS: [&str; 2] = ["adaptor", "discriminator"];

/// Name of moment `kind` ("m" or "v") number `i` of optimiser `optimiser` ([`OPTIMISERS`]).
pub fn optim_name(optimiser: &str, kind: &str, i: usize) -> String {
    format!("optim.{optimiser}.{kind}.{i}")
}

/// Image-level decision thresholds calibrated on held-out normal training images.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// One per class, in the model's class order.
    pub per_class: Vec<f32>,
    /// One for all classes.
    pub global: f32,
    /// How they were chosen, e.g. "quantile 0.99 of held-out normal scores".
    pub method: String,
    /// Held-out normal images used, per class.
    pub holdout_images: Vec<usize>,
    /// Their scores, per class (so a run-time false-alarm rate can re-derive thresholds).
    pub holdout_scores: Vec<Vec<f32>>,
}

/// How far a low-precision engine's image scores lie from the f32 ones on this model, and the
/// confirmation band derived from them: the images whose low-precision score lies within
/// `band` logits of their threshold are scored again at f32 before they are decided
/// (`crate::infer::engine::graph_engine`). Measured by training on the held-out images
/// (`crate::infer::engine::band`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrecisionBand {
    /// The engine and precision measured, by their command-line names ("openvino", "bf16").
    pub engine: String,
    pub precision: String,
    /// Which images were scored ("held-out normal images", "training images").
    pub images_from: String,
    /// How many.
    pub images: usize,
    /// |logit(low-precision score) - logit(f32 score)| over those images: median, mean, the
    /// 90th percentile and the maximum.
    pub median: f64,
    pub mean: f64,
    pub p90: f64,
    pub max: f64,
    /// The quantile of the errors the band is built on, and its value.
    pub quantile: f64,
    pub quantile_error: f64,
    /// The safety factor: `band = factor * quantile_error` (at least the floor).
    pub factor: f64,
    /// The confirmation band, in logits.
    pub band: f32,
    /// The share of those images whose low-precision score lies within `band` of their stored
    /// threshold: what confirmation would re-score at f32 (None without thresholds).
    pub confirmed_share: Option<f64>,
    /// The CPU it was measured on: the runtimes' low-precision kernels, and so the errors,
    /// depend on its instruction sets (None in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_on: Option<crate::device::HostCpu>,
}

/// Statistics of the training run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingStats {
    pub epochs_done: usize,
    pub images: usize,
    pub final_loss: Option<f64>,
    pub final_p_true: Option<f64>,
    pub final_p_fake: Option<f64>,
    pub seconds: f64,
    /// Noise sigma actually used (after `--noise auto`).
    pub noise: f64,
    /// Median distance of an adapted patch to its aligned center before training.
    pub median_center_distance: Option<f64>,
    /// Optimiser step counts (adaptor, discriminator), for resuming.
    pub optimiser_steps: (u64, u64),
    /// Epoch chosen on the test set, when the run was test-selected.
    pub selected_epoch: Option<usize>,
}

/// Everything a model file says about itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    pub tool: String,
    pub created_unix: u64,
    /// Class names in center-bank order.
    pub classes: Vec<String>,
    pub backbone: BackboneInfo,
    pub last_layer: Layer,
    pub preprocess: Preprocess,
    pub descriptor: DescriptorConfig,
    /// Side of the patch grid (input / stride of the descriptor's first layer).
    pub grid: usize,
    /// The parts of the method the head was trained with; scoring wires the head the same way.
    pub ablation: Ablation,
    /// The full training configuration, as a provenance record (never read by inference).
    pub config: serde_json::Value,
    pub thresholds: Option<Thresholds>,
    /// The measured error of each low-precision engine against f32, and its confirmation band
    /// (none measured: empty; older files have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precision_bands: Vec<PrecisionBand>,
    /// The ranges of the backbone's convolution inputs over training images, which an int8
    /// graph quantizes them with (none measured: absent; older files have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Calibration>,
    pub training: TrainingStats,
    /// The model was chosen by its test-set metrics (optimistic; the reference protocol).
    pub test_selected: bool,
    /// True for a partial checkpoint written during training (holds optimiser state).
    pub partial: bool,
}

impl ModelMeta {
    /// The metadata of a model using `extractor` (no thresholds, no training figures yet).
    pub fn describe(
        classes: &[String],
        extractor: &FeatureExtractor,
        preprocess: &Preprocess,
        ablation: Ablation,
        config: serde_json::Value,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            tool: format!("cras {}", env!("CARGO_PKG_VERSION")),
            created_unix: now_unix(),
            classes: classes.to_vec(),
            backbone: extractor.backbone.info().clone(),
            last_layer: extractor.backbone.last_layer(),
            preprocess: preprocess.clone(),
            descriptor: extractor.cfg.clone(),
            grid: extractor.grid_side(preprocess.crop as usize),
            ablation,
            config,
            thresholds: None,
            precision_bands: Vec::new(),
            int8: None,
            training: TrainingStats::default(),
            test_selected: false,
            partial: false,
        }
    }

    /// Parses and checks the JSON document of `path`.
    ///
    /// Files written before the ablation flags had their own field hold them only in
    /// `config.fit.ablation`; they are read from there, strictly (an error when absent or
    /// malformed, never a silent default).
    pub fn from_json(path: &Path, v: &serde_json::Value) -> Result<Self> {
        match v.get("format_version").and_then(|x| x.as_u64()) {
            Some(x) if x == FORMAT_VERSION as u64 => {}
            Some(x) => {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "model format version {x}, this cras reads version {FORMAT_VERSION}: \
                         retrain the model or use the cras version that wrote it"
                    ),
                ))
            }
            None => {
                return Err(Error::checkpoint(
                    path,
                    "no format_version in the model metadata: not a cras model",
                ))
            }
        }
        let mut v = v.clone();
        if v.get("ablation").is_none() {
            let recorded = v.pointer("/config/fit/ablation").cloned().ok_or_else(|| {
                Error::checkpoint(
                    path,
                    "model metadata has no ablation flags (neither `ablation` nor \
                         `config.fit.ablation`): the file is damaged or not written by cras",
                )
            })?;
            v["ablation"] = recorded;
        }
        serde_json::from_value(v)
            .map_err(|e| Error::checkpoint(path, format!("model metadata: {e}")))
    }

    /// Index of a class name, with an error listing the known ones.
    pub fn class_index(&self, name: &str) -> Result<usize> {
        self.classes.iter().position(|c| c == name).ok_or_else(|| {
            Error::config(
                "class",
                name,
                format!("the model knows the classes {}", self.classes.join(", ")),
            )
        })
    }

    /// True when the backbone was randomly initialised (no pretrained weights).
    pub fn random_backbone(&self) -> bool {
        self.backbone.weights_file.is_none()
    }

    /// The band measured for `engine` at `precision` (their command-line names), if any.
    pub fn precision_band(&self, engine: &str, precision: &str) -> Option<&PrecisionBand> {
        self.precision_bands
            .iter()
            .find(|b| b.engine == engine && b.precision == precision)
    }

    /// The stored threshold for class `k` (per-class, else global), if calibrated.
    pub fn threshold(&self, k: usize) -> Option<f32> {
        self.thresholds
            .as_ref()
            .map(|t| t.per_class.get(k).copied().unwrap_or(t.global))
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The trained head a model file stores, borrowed for saving.
#[derive(Clone, Copy)]
pub struct HeadRef<'a> {
    pub bank: &'a CenterBank,
    pub adaptor: &'a Adaptor,
    pub discriminator: &'a Discriminator,
}

/// First and second moments of one optimiser, one tensor per parameter, in parameter order.
pub struct Moments {
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

/// A model file read back.
pub struct ModelFile {
    pub meta: ModelMeta,
    pub bank: CenterBank,
    pub adaptor: Adaptor,
    pub discriminator: Discriminator,
    /// The folded backbone (complete models; None in a partial checkpoint).
    pub backbone: Option<ResNet>,
    /// Optimiser moments (adaptor, discriminator): partial checkpoints only.
    pub optimisers: Option<[Moments; 2]>,
}

/// The head's tensors under their file names, plus the optimiser moments when given.
pub fn head_tensors(
    adaptor: &Adaptor,
    discriminator: &Discriminator,
    optimisers: Option<[&AdamFamily; 2]>,
) -> Vec<(String, Tensor)> {
    let mut out = adaptor.named();
    out.extend(discriminator.named());
    for (tag, opt) in OPTIMISERS.iter().zip(optimisers.into_iter().flatten()) {
        let (m, v) = opt.moments();
        for (kind, moments) in [("m", m), ("v", v)] {
            for (i, t) in moments.iter().enumerate() {
                out.push((optim_name(tag, kind, i), t.clone()));
            }
        }
    }
    out
}

fn meta_json(path: &Path, meta: &ModelMeta) -> Result<serde_json::Value> {
    serde_json::to_value(meta).map_err(|e| Error::checkpoint(path, format!("metadata: {e}")))
}

/// Writes a complete model: metadata, center bank, head and the folded `backbone`.
pub fn save(path: &Path, meta: &ModelMeta, head: HeadRef<'_>, backbone: &ResNet) -> Result<()> {
    if meta.partial {
        return Err(Error::checkpoint(
            path,
            "metadata marked partial for a complete model",
        ));
    }
    let mut tensors = vec![(CENTERS.to_string(), head.bank.centers.clone())];
    tensors.extend(head_tensors(head.adaptor, head.discriminator, None));
    for (name, t) in backbone.folded_tensors() {
        tensors.push((format!("{BACKBONE_PREFIX}{name}"), t));
    }
    write_raw(path, &meta_json(path, meta)?, &tensors)
}

/// Writes a partial checkpoint: metadata (marked partial), center bank, head and the moments of
/// the (adaptor, discriminator) optimisers; their step counts go in
/// `meta.training.optimiser_steps`.
pub fn save_partial(
    path: &Path,
    meta: &ModelMeta,
    head: HeadRef<'_>,
    optimisers: [&AdamFamily; 2],
) -> Result<()> {
    if !meta.partial {
        return Err(Error::checkpoint(
            path,
            "metadata not marked partial for a partial checkpoint",
        ));
    }
    let mut tensors = vec![(CENTERS.to_string(), head.bank.centers.clone())];
    tensors.extend(head_tensors(
        head.adaptor,
        head.discriminator,
        Some(optimisers),
    ));
    write_raw(path, &meta_json(path, meta)?, &tensors)
}

/// Reads a model file or partial checkpoint onto `device`, checking the metadata and that the
/// tensors it needs are present, finite and of the shapes the metadata implies
/// ([`super::check`]).
pub fn load(path: &Path, device: &Device) -> Result<ModelFile> {
    let raw = read_raw(path)?;
    let meta = ModelMeta::from_json(path, &raw.meta)?;
    super::check::check_tensors(path, &raw.tensors)?;
    let tensors: HashMap<String, Tensor> = raw
        .tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?)))
        .collect::<Result<_>>()?;
    let bad = |e: Error| Error::checkpoint(path, e.to_string());
    let adaptor = Adaptor::from_named(&tensors).map_err(bad)?;
    let discriminator = Discriminator::from_named(&tensors).map_err(bad)?;
    let centers = tensors
        .get(CENTERS)
        .ok_or_else(|| Error::checkpoint(path, "the model file holds no center bank"))?;
    let bank = CenterBank::new(centers.clone()).map_err(bad)?;
    let rows = meta.preprocess.center_rows_per_class();
    if bank.classes() != meta.classes.len() * rows {
        return Err(Error::checkpoint(
            path,
            format!(
                "center bank has {} rows, metadata lists {} classes{}",
                bank.classes(),
                meta.classes.len(),
                if rows > 1 {
                    format!(" x {rows} tile positions")
                } else {
                    String::new()
                }
            ),
        ));
    }
    super::check::check_meta(path, &meta, &bank, &adaptor, &discriminator)?;
    let (backbone, optimisers) = if meta.partial {
        let mut sets = Vec::with_capacity(2);
        for tag in OPTIMISERS {
            let take = |kind: &str| -> Vec<Tensor> {
                (0..)
                    .map_while(|i| tensors.get(&optim_name(tag, kind, i)).cloned())
                    .collect()
            };
            sets.push(Moments {
                m: take("m"),
                v: take("v"),
            });
        }
        let d = sets.pop();
        let a = sets.pop();
        (None, a.zip(d).map(|(a, d)| [a, d]))
    } else {
        let folded: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(BACKBONE_PREFIX)
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect();
        if folded.is_empty() {
            return Err(Error::checkpoint(
                path,
                "the model file holds no backbone tensors",
            ));
        }
        let backbone = ResNet::from_folded(meta.backbone.clone(), meta.last_layer, &folded, device)
            .map_err(|e| Error::checkpoint(path, format!("backbone: {e}")))?;
        (Some(backbone), None)
    };
    Ok(ModelFile {
        meta,
        bank,
        adaptor,
        discriminator,
        backbone,
        optimisers,
    })
}

/// The container read back without interpretation: its JSON document and its tensors (CPU,
/// f32). For tools and tests; models are read with [`load`].
pub struct RawFile {
    pub meta: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
}

/// Writes `tensors` (any device; stored as f32) and the JSON document `meta` to `path`
/// atomically. For tools and tests; models are written with [`save`] / [`save_partial`].
pub fn write_raw(
    path: &Path,
    meta: &serde_json::Value,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
        host.push((name.clone(), t.dims().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = host
        .iter()
        .map(|(n, shape, data)| {
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(data),
            )
            .map(|v| (n.clone(), v))
            .map_err(|e| Error::checkpoint(path, format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut info = HashMap::new();
    info.insert(META_KEY.to_string(), meta.to_string());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    crate::fsio::write_atomic(path, &bytes)
}

/// Reads the container written by [`write_raw`] (tensors through candle's safetensors reader).
pub fn read_raw(path: &Path) -> Result<RawFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        Error::checkpoint(path, format!("not a cras model (safetensors header: {e})"))
    })?;
    let meta_text = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            Error::checkpoint(
                path,
                "a safetensors file without cras metadata: not a model written by `cras train`",
            )
        })?;
    let meta: serde_json::Value = serde_json::from_str(meta_text)
        .map_err(|e| Error::checkpoint(path, format!("metadata is not valid JSON: {e}")))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    if let Some((name, t)) = tensors.iter().find(|(_, t)| t.dtype() != DType::F32) {
        return Err(Error::checkpoint(
            path,
            format!("tensor {name} has dtype {:?}, expected F32", t.dtype()),
        ));
    }
    Ok(RawFile { meta, tensors })
}

impl Moments {
    /// Restores these moments into `opt`, at step count `step`.
    pub fn restore_into(self, opt: &mut AdamFamily, step: u64) -> Result<()> {
        opt.restore(self.m, self.v, step)
    }
}

//! The model file: [`ModelMeta`] (the JSON document of a checkpoint, see
//! [`crate::model::checkpoint`]) and the compatibility checks made when a model is loaded.

use std::path::Path;

use crate::backbone::{BackboneInfo, Layer};
use crate::data::Preprocess;
use crate::features::DescriptorConfig;
use crate::{Error, Result};

/// Bumped whenever the file layout or the meaning of a field changes.
pub const FORMAT_VERSION: u32 = 1;

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

/// Per-class thresholds flagging at most `rate` of each class's held-out normal images.
pub fn false_alarm_thresholds(meta: &ModelMeta, rate: f64) -> Result<Vec<f32>> {
    let t = meta.thresholds.as_ref().ok_or_else(|| {
        Error::config(
            "false-alarm-rate",
            rate,
            "the model has no held-out normal scores (trained with --holdout 0)",
        )
    })?;
    let all: Vec<f32> = t.holdout_scores.iter().flatten().copied().collect();
    let global = crate::metrics::threshold::false_alarm_threshold(&all, rate)?;
    t.holdout_scores
        .iter()
        .map(|s| {
            if s.is_empty() {
                Ok(global)
            } else {
                crate::metrics::threshold::false_alarm_threshold(s, rate)
            }
        })
        .collect()
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

/// Everything a checkpoint says about itself.
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
    /// Side of the patch grid (input / 8).
    pub grid: usize,
    /// The full training configuration.
    pub config: serde_json::Value,
    pub thresholds: Option<Thresholds>,
    pub training: TrainingStats,
    /// The model was chosen by its test-set metrics (optimistic; the reference protocol).
    pub test_selected: bool,
    /// True for a partial checkpoint written during training (holds optimiser state).
    pub partial: bool,
}

impl ModelMeta {
    /// Parses and checks the JSON document of `path`.
    pub fn from_json(path: &Path, v: &serde_json::Value) -> Result<Self> {
        let version = v.get("format_version").and_then(|x| x.as_u64());
        match version {
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
        serde_json::from_value(v.clone())
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

    /// The threshold for class `k` (per-class, else global), if calibrated.
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

//! The configuration of a training run ([`TrainConfig`]): what `cras train`, `cras demo` and
//! the tests hand to [`super::pipeline::train`]. Recorded in the model file as provenance.

use std::path::PathBuf;

use super::fit::FitConfig;
use crate::backbone::{Arch, BnStats};
use crate::data::{Format, Preprocess};
use crate::features::cache::CachePrecision;
use crate::features::DescriptorConfig;
use crate::Error;

/// Multi-class (one model for all classes) or single-class (one class per model).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    Multi,
    Single,
}

/// The synthesis noise: a fixed sigma or one set from the measured center distances.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NoiseScale {
    /// A fixed standard deviation (the paper's 0.015 with ImageNet weights).
    Fixed(f64),
    /// sigma such that the expected noise norm is this fraction of the median patch-to-center distance.
    Auto(f64),
}

/// Everything `cras train` needs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    /// Layout of `data` (None: detected, [`crate::data::layouts::detect`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    pub classes: Option<Vec<String>>,
    pub setting: Setting,
    pub backbone: Arch,
    pub weights: Option<PathBuf>,
    pub bn_stats: BnStats,
    /// Re-estimate BatchNorm statistics on this many training images (random backbones; 0 = off).
    pub recalibrate_bn: usize,
    pub preprocess: Preprocess,
    pub descriptor: DescriptorConfig,
    pub fit: FitConfig,
    pub noise: NoiseScale,
    /// Share of each class's train/good images held out for threshold calibration (classes
    /// with `val` images calibrate on those instead).
    pub holdout: f64,
    /// Quantile of held-out normal scores used as the threshold.
    pub threshold_quantile: f64,
    pub cache_budget_mb: u64,
    pub cache_precision: CachePrecision,
    pub device: String,
    pub progress: bool,
    /// Evaluate on the TEST split every N epochs (0 = never; the reference protocol).
    #[serde(default)]
    pub eval_every: usize,
    /// Keep the epoch with the best test I-AUROC + P-AUROC (optimistic; marks the model).
    #[serde(default)]
    pub select_on_test: bool,
    /// Score the test-set evaluations as the reference does: each class's test images in
    /// order, in groups of the batch size, every image taking its group's majority match.
    #[serde(default)]
    pub select_batch_vote: bool,
    /// Stop after this epoch of the schedule, keeping `<out>.partial` (continue with resume).
    #[serde(default)]
    pub stop_after: Option<usize>,
}

impl TrainConfig {
    /// The paper's multi-class configuration (WRN50-2, 329/288, 1536 dims, 100 epochs, batch
    /// 32, noise 0.015, k 0.3) for the dataset at `data`; a seeded random backbone until
    /// `weights` is set.
    pub fn paper(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            format: None,
            classes: None,
            setting: Setting::Multi,
            backbone: Arch::WideResnet50_2,
            weights: None,
            bn_stats: BnStats::Reference,
            recalibrate_bn: 0,
            preprocess: Preprocess::reference(),
            descriptor: DescriptorConfig::default(),
            fit: FitConfig::default(),
            noise: NoiseScale::Fixed(0.015),
            holdout: 0.1,
            threshold_quantile: 0.99,
            cache_budget_mb: 8192,
            cache_precision: CachePrecision::F32,
            device: "auto".into(),
            progress: true,
            eval_every: 0,
            select_on_test: false,
            select_batch_vote: false,
            stop_after: None,
        }
    }

    /// Checks the configuration before any work is done: the preprocessing sizes (a tiling
    /// whose working side is left to the data, 0, is checked once that side is known) and the
    /// options that need, or exclude, each other. Errors name the option.
    pub fn validate(&self) -> crate::Result<()> {
        if self.preprocess.tiling.is_none_or(|t| t.image_size != 0) {
            self.preprocess.validate()?;
        }
        if self.preprocess.tiling.is_some() && self.eval_every > 0 {
            return Err(Error::config(
                "eval-every",
                self.eval_every,
                "is not available with --tile (evaluate the trained model with `cras eval`)",
            ));
        }
        if self.select_batch_vote && self.eval_every == 0 {
            return Err(Error::config(
                "select-batch-vote",
                true,
                "needs --eval-every N (it sets how the test-set evaluation assigns classes)",
            ));
        }
        if self.select_on_test && self.eval_every == 0 {
            return Err(Error::config(
                "select-on-test",
                true,
                "needs --eval-every N",
            ));
        }
        Ok(())
    }
}

/// Checks that `cfg` continues the schedule recorded in a checkpoint's `config` (the
/// [`TrainConfig`] it was started with): another seed, learning rate, batch size, noise or
/// ablation would silently train another model. The number of epochs may change.
pub fn same_schedule(recorded: &serde_json::Value, cfg: &TrainConfig) -> Result<(), String> {
    let fit = recorded.get("fit").cloned().unwrap_or_default();
    let asked = serde_json::to_value(&cfg.fit).unwrap_or_default();
    let null = serde_json::Value::Null;
    for key in [
        "seed",
        "batch_size",
        "lr_adaptor",
        "lr_discriminator",
        "weight_decay_adaptor",
        "weight_decay_discriminator",
        "noise",
        "k",
        "ablation",
    ] {
        if fit.get(key) != asked.get(key) {
            return Err(format!(
                "the checkpoint was trained with {key} = {}, this run asks for {}; resume with \
                 the same settings or train from scratch",
                fit.get(key).unwrap_or(&null),
                asked.get(key).unwrap_or(&null)
            ));
        }
    }
    let noise = serde_json::to_value(cfg.noise).unwrap_or_default();
    if recorded.get("noise") != Some(&noise) {
        return Err(format!(
            "the checkpoint was trained with noise {}, this run asks for {noise}",
            recorded.get("noise").unwrap_or(&null)
        ));
    }
    Ok(())
}

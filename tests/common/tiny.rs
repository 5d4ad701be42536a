//! The tiny training configuration the end-to-end tests share: a seeded random ResNet18
//! (layer2 + layer3 descriptors, 32 dims) on 32x32 inputs, one epoch of batch 4, noise scaled to
//! the measured center distances, 20% held out, a 64 MiB feature cache, CPU, no progress bars.
//! Tests change the fields they are about.
#![allow(dead_code)]

use std::path::Path;

use cras::backbone::Arch;
use cras::data::{MaskMode, Preprocess, ResizeMode};
use cras::features::DescriptorConfig;
use cras::train::fit::FitConfig;
use cras::train::pipeline::{NoiseScale, TrainConfig};

/// See the module documentation.
pub fn tiny_train_config(data: &Path) -> TrainConfig {
    TrainConfig {
        backbone: Arch::Resnet18,
        recalibrate_bn: 0,
        preprocess: Preprocess {
            resize: 32,
            crop: 32,
            mode: ResizeMode::Square,
            mask_mode: MaskMode::Binarize,
            tiling: None,
        },
        descriptor: DescriptorConfig {
            dims: 32,
            ..DescriptorConfig::default()
        },
        fit: FitConfig {
            epochs: 1,
            batch_size: 4,
            seed: 0,
            ..FitConfig::default()
        },
        noise: NoiseScale::Auto(0.5),
        holdout: 0.2,
        cache_budget_mb: 64,
        device: "cpu".into(),
        progress: false,
        ..TrainConfig::paper(data)
    }
}

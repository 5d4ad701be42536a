//! `cras import-reference`: the authors' released checkpoint + centers -> a cras model file.

use std::path::PathBuf;

use cras::backbone::Arch;
use cras::features::DescriptorConfig;
use cras::train::import::{import_reference, ImportConfig};

/// Write a cras model from the authors' checkpoint (`ckpt_best_*.pth`), their `center.pth`
/// and the backbone weights they used, so their published models score with cras.
#[derive(clap::Args, Debug)]
pub struct ImportReferenceArgs {
    /// The authors' checkpoint: a dict with "discriminator" and "pre_projection" state dicts.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The authors' center bank (center.pth, one tensor [classes, positions, dims]).
    #[arg(long)]
    pub centers: PathBuf,
    /// Backbone checkpoint the authors' model was trained on (torchvision .pth or .safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Class names, comma-separated, in the order the authors trained them (their -d order).
    #[arg(long, value_delimiter = ',', required = true)]
    pub classes: Vec<String>,
    /// Output model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone network: wide_resnet50_2, wide_resnet101_2, resnet18, resnet50.
    #[arg(long, default_value = "wide_resnet50_2")]
    pub backbone: Arch,
    /// Shorter side after resizing (their --resize) [default: image-size * 329 / 288].
    #[arg(long)]
    pub resize: Option<u32>,
    /// Center crop side (their --imagesize).
    #[arg(long, default_value_t = 288)]
    pub image_size: u32,
    /// Descriptor and adaptor width (their --pretrain_embed_dimension and
    /// --target_embed_dimension, which must be equal).
    #[arg(long, default_value_t = 1536)]
    pub dims: usize,
    /// Backbone stages, comma-separated (their -le).
    #[arg(long, value_delimiter = ',', default_value = "layer2,layer3")]
    pub layers: Vec<cras::backbone::Layer>,
    /// BatchNorm statistics: reference (the authors' load-time perturbation, as their
    /// published models saw) or clean.
    #[arg(long, value_enum, default_value = "reference")]
    pub bn_stats: super::train::BnStatsArg,
    /// Store the reference's mask handling in the model (`cras eval` then resizes the raw
    /// grey masks and counts only exact 1.0, as the authors' evaluation).
    #[arg(long)]
    pub reference_masks: bool,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Runs `cras import-reference`.
pub fn run(a: ImportReferenceArgs) -> anyhow::Result<()> {
    let cfg = ImportConfig {
        backbone: a.backbone,
        bn_stats: a.bn_stats.into(),
        preprocess: cras::data::Preprocess {
            mask_mode: if a.reference_masks {
                cras::data::MaskMode::ReferenceTruncate
            } else {
                cras::data::MaskMode::Binarize
            },
            ..super::embed::preprocess_from_flags(a.image_size, a.resize, false)
        },
        descriptor: DescriptorConfig {
            dims: a.dims,
            layers: a.layers.clone(),
            ..DescriptorConfig::default()
        },
        device: a.device.clone(),
        ..ImportConfig::paper(&a.checkpoint, &a.centers, &a.weights, a.classes.clone())
    };
    let meta = import_reference(&cfg, &a.out)?;
    println!("model written to {}", a.out.display());
    println!(
        "  classes: {}  backbone: {}  input {} px, {} dims, {}x{} patches",
        meta.classes.join(", "),
        meta.backbone.arch,
        meta.preprocess.crop,
        meta.descriptor.dims,
        meta.grid,
        meta.grid
    );
    if meta.test_selected {
        println!(
            "  marked test-selected: the authors' ckpt_best_* files were chosen on the test set"
        );
    }
    println!("  no thresholds stored: give --threshold at run time");
    Ok(())
}

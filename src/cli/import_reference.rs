//! `cras import-reference`: the authors' released checkpoint + centers -> a cras model file.

use std::path::PathBuf;

use cras::backbone::BnStats;
use cras::train::import::{import_reference, ImportConfig};

use super::args::{paper, preprocess_from_flags, DeviceArg, NetworkArgs};

/// Write a cras model from the authors' checkpoint (`ckpt_best_*.pth`), their `center.pth`
/// and the backbone weights they used, so their published models score with cras.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "The authors' flags: --resize is their --resize, --image-size their \
    --imagesize, --dims their --pretrain_embed_dimension and --target_embed_dimension (which \
    must be equal), --layers their -le."
)]
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
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Shorter side after resizing (their --resize) [default: image-size * 329 / 288].
    #[arg(long)]
    pub resize: Option<u32>,
    /// BatchNorm statistics: reference (the authors' load-time perturbation, as their
    /// published models saw) or clean.
    #[arg(long, value_enum, default_value_t = paper().bn_stats)]
    pub bn_stats: BnStats,
    /// Store the reference's mask handling in the model (`cras eval` then resizes the raw
    /// grey masks and counts only exact 1.0, as the authors' evaluation).
    #[arg(long)]
    pub reference_masks: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Runs `cras import-reference`.
pub fn run(a: ImportReferenceArgs) -> anyhow::Result<()> {
    let cfg = ImportConfig {
        backbone: a.network.backbone,
        bn_stats: a.bn_stats,
        preprocess: cras::data::Preprocess {
            mask_mode: if a.reference_masks {
                cras::data::MaskMode::ReferenceTruncate
            } else {
                cras::data::MaskMode::Binarize
            },
            ..preprocess_from_flags(a.network.image_size, a.resize, false)
        },
        descriptor: a.network.descriptor(),
        device: a.device.device.clone(),
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

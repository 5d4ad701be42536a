//! `cras eval`: metrics, tables, curves and a heatmap gallery for a model on a test split.

use std::path::PathBuf;

use cras::eval::{evaluate, EvalOptions, ProMode};
use cras::infer::Predictor;

use super::args::{DeviceArg, EngineArgs};

/// Evaluate a model on a dataset's test split.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model file written by `cras train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset: a folder in any layout `cras train` reads, or a manifest (.csv / .jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Layout of --data [default: detected].
    #[arg(long, value_enum)]
    pub format: Option<cras::data::Format>,
    /// Output folder (metrics.json, metrics.csv, scores.csv, report.md, curves, gallery/).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these classes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Align with the true class instead of the globally matched one.
    #[arg(long)]
    pub class_given: bool,
    /// The reference's batch-vote class assignment (parity only): each class's test images, in
    /// order, are voted on in groups of --vote-group, every image taking its group's majority
    /// match.
    #[arg(long)]
    pub batch_vote: bool,
    /// Images per vote with --batch-vote: the reference votes over its test batch, which is its
    /// --batch_size (32 multi-class, 8 for a single-class model).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub vote_group: u64,
    /// AUPRO: standard (exact, FPR <= 0.3) or reference (the authors' compute_pro: 200
    /// thresholds, 5x5-dilated predictions, min-max rescaled FPR axis).
    #[arg(long, value_enum, default_value = "standard")]
    pub pro: ProArg,
    /// Masks the reference's way for this evaluation (the raw grey mask resized, only exact
    /// 1.0 counts), whatever the model was trained with.
    #[arg(long)]
    pub reference_masks: bool,
    /// Compute the pixel metrics on maps and masks of PX x PX (maps resized bilinearly) instead
    /// of the model's own map side: compares models of different input sizes or tilings on the
    /// same pixels.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u64).range(8..=8192))]
    pub map_size: Option<u64>,
    /// Decision threshold for every class (overrides the stored ones).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Images per batch (not used for --batch-vote, whose batches are the vote groups); for a
    /// tiled model, network inputs (tiles) per batch, at least one image.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Heatmap panels per class in the gallery (0 = none).
    #[arg(long, default_value_t = 8)]
    pub gallery: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `--pro` choice.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProArg {
    Standard,
    Reference,
}

/// Runs `cras eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let device = a.device.select()?;
    let predictor = Predictor::load_with(&a.model, &device, &a.engine.options())?;
    let opts = EvalOptions {
        classes: a.classes.clone(),
        format: a.format,
        class_given: a.class_given,
        batch_vote: a.batch_vote,
        vote_group: a.vote_group as usize,
        mask_mode: a
            .reference_masks
            .then_some(cras::data::MaskMode::ReferenceTruncate),
        pro: match a.pro {
            ProArg::Standard => ProMode::Standard,
            ProArg::Reference => ProMode::Reference,
        },
        threshold: a.threshold,
        map_size: a.map_size.map(|m| m as usize),
        batch_size: a.batch_size,
        gallery_per_class: a.gallery,
        progress: !a.quiet,
        ..EvalOptions::default()
    };
    let report = evaluate(&predictor, &a.model, &a.data, &a.out, &opts)?;
    print!("{}", report.to_text_table());
    if let Some((c, n)) = predictor.confirmed_at_f32() {
        let what = if predictor.meta.preprocess.tiling.is_some() {
            "tiles"
        } else {
            "images"
        };
        let precision = predictor.precision();
        println!("{precision}: {c} of {n} {what} were near their threshold and re-scored at f32");
    }
    println!("report: {}", a.out.join("report.md").display());
    println!("gallery: {}", a.out.join("gallery/index.html").display());
    Ok(())
}

//! `cras eval`: metrics, tables, curves and a heatmap gallery for a model on a test split.

use std::path::PathBuf;

use cras::infer::evaluate::{evaluate, EvalOptions};
use cras::infer::Predictor;

/// Evaluate a model on a dataset's test split.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model file written by `cras train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset root in MVTec AD layout.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (metrics.json, metrics.csv, scores.csv, report.md, curves, gallery/).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these classes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Align with the true class instead of the globally matched one.
    #[arg(long)]
    pub class_given: bool,
    /// The reference's batch-vote class assignment (parity only; needs single-class batches).
    #[arg(long)]
    pub batch_vote: bool,
    /// Decision threshold for every class (overrides the stored ones).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Heatmap panels per class in the gallery (0 = none).
    #[arg(long, default_value_t = 8)]
    pub gallery: usize,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub engine: super::engine_args::EngineArgs,
}

/// Runs `cras eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let device = cras::device::select(&a.device)?;
    let predictor = Predictor::load_with(&a.model, &device, &a.engine.options())?;
    let opts = EvalOptions {
        classes: a.classes.clone(),
        class_given: a.class_given,
        batch_vote: a.batch_vote,
        threshold: a.threshold,
        batch_size: a.batch_size,
        gallery_per_class: a.gallery,
        progress: !a.quiet,
        ..EvalOptions::default()
    };
    let report = evaluate(&predictor, &a.model, &a.data, &a.out, &opts)?;
    print!("{}", report.to_text_table());
    println!("report: {}", a.out.join("report.md").display());
    println!("gallery: {}", a.out.join("gallery/index.html").display());
    Ok(())
}

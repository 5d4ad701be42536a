//! `cras synth`: writes the deterministic synthetic benchmark (MVTec AD layout) to a new folder
//! and prints what it wrote.

use std::path::PathBuf;

use cras::data::synth::{generate, SynthConfig};

/// Arguments of `cras synth`.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output folder (must be new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of classes (1-8; textures and objects alternate in blocks).
    #[arg(long, default_value_t = SynthConfig::default().classes)]
    pub classes: usize,
    /// Normal training images per class.
    #[arg(long, default_value_t = SynthConfig::default().train_per_class)]
    pub train: usize,
    /// Normal test images per class.
    #[arg(long, default_value_t = SynthConfig::default().test_good_per_class)]
    pub test_good: usize,
    /// Defective test images per class (cycling through 5 defect kinds).
    #[arg(long, default_value_t = SynthConfig::default().test_defect_per_class)]
    pub test_defect: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthConfig::default().size)]
    pub size: u32,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `cras synth`.
pub fn run(a: SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        classes: a.classes,
        train_per_class: a.train,
        test_good_per_class: a.test_good,
        test_defect_per_class: a.test_defect,
        size: a.size,
        seed: a.seed,
    };
    let summary = generate(&cfg, &a.out)?;
    println!(
        "wrote {} images ({} classes: {}) of {}x{} px to {} in {:.2} s",
        summary.images,
        summary.classes.len(),
        summary.classes.join(", "),
        cfg.size,
        cfg.size,
        a.out.display(),
        summary.seconds
    );
    Ok(())
}

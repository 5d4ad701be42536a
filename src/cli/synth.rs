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
    /// Number of classes (1-16; textures and objects alternate in blocks; classes 9-16 are the
    /// first eight again in a second colourway, named `<name>_alt`).
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
    /// Defect extent in pixels whatever --size, as LO-HI (e.g. 10-30 with --size 2048: small
    /// defects on high-resolution images) [default: 4-25% of the image side].
    #[arg(long, value_name = "LO-HI", value_parser = parse_px_range)]
    pub defect_px: Option<(u32, u32)>,
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
        defect_px: a.defect_px,
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

/// `LO-HI` (or one number) as a pixel range.
fn parse_px_range(s: &str) -> Result<(u32, u32), String> {
    let num = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("`{s}` is not a pixel range LO-HI (e.g. 10-30)"))
    };
    match s.split_once('-') {
        Some((lo, hi)) => Ok((num(lo)?, num(hi)?)),
        None => num(s).map(|v| (v, v)),
    }
}

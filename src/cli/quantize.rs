//! `cras quantize`: calibrates a trained model for `--precision int8` / `cras export --int8`
//! (see `cras::train::quantize`) and prints what it measured.

use std::path::PathBuf;

/// Calibrate a trained model for int8 on its training images.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Model file written by `cras train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The dataset the model was trained on (its training images are the calibration images).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the calibrated model (default: over --model, atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `cras quantize`.
pub fn run(a: QuantizeArgs) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.model.clone());
    let meta = cras::train::quantize::quantize(&a.model, &a.data, &out)?;
    println!("wrote {}", out.display());
    if let Some(c) = &meta.int8 {
        println!(
            "  int8 calibration: {} convolution inputs over {} {} ({})",
            c.inputs.len(),
            c.images,
            c.images_from,
            c.method
        );
    }
    for b in meta
        .precision_bands
        .iter()
        .filter(|b| b.precision == "int8")
    {
        println!(
            "  {} int8 against f32 on {} {}: logit error median {:.3}, max {:.3}; band {:.3} logits{}",
            b.engine,
            b.images,
            b.images_from,
            b.median,
            b.max,
            b.band,
            b.confirmed_share
                .map(|s| format!(", {:.0}% of them near their threshold", 100.0 * s))
                .unwrap_or_default()
        );
    }
    Ok(())
}

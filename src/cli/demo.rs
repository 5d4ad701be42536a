//! `cras demo`: the whole product on built-in generated data, CPU-friendly: generate the
//! synthetic multi-class benchmark, train one model for all classes with a random backbone,
//! evaluate it, print the table and where the report is.

use std::path::PathBuf;

use cras::backbone::Arch;
use cras::data::synth::{generate, SynthConfig};
use cras::data::{MaskMode, Preprocess, ResizeMode};
use cras::eval::{evaluate, EvalOptions};
use cras::features::DescriptorConfig;
use cras::infer::Predictor;
use cras::train::fit::FitConfig;
use cras::train::pipeline::{train, NoiseScale, TrainConfig};

use super::args::DeviceArg;

/// Generate data, train, evaluate: the whole product in a few minutes on a CPU.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Output folder (data/, model.safetensors, eval/).
    #[arg(long, default_value = "cras-demo")]
    pub out: PathBuf,
    /// Random seed (data and training).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Normal training images per class.
    #[arg(long, default_value_t = 24)]
    pub train_per_class: usize,
    /// Backbone (random weights).
    #[arg(long, value_enum, default_value_t = Arch::Resnet18)]
    pub backbone: Arch,
    /// Model input side (the synthetic images are 128 px).
    #[arg(long, default_value_t = 96)]
    pub image_size: u32,
    /// Descriptor width.
    #[arg(long, default_value_t = 256)]
    pub dims: usize,
    /// Backbone stages the descriptor combines, comma-separated; the first sets the patch grid.
    /// A random network's early stages describe colour and texture far better than its deeper
    /// ones, so the demo uses layer1 + layer2 (the paper, with ImageNet weights, layer2 + layer3).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "layer1,layer2"
    )]
    pub layers: Vec<cras::backbone::Layer>,
    /// Synthesis noise as a multiple of the median patch-to-center distance (random features
    /// need noise beyond their normal spread).
    #[arg(long, default_value_t = 0.75)]
    pub noise_factor: f64,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Runs `cras demo`.
pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let data = a.out.join("data");
    synthesize(&a, &data)?;
    let model = a.out.join("model.safetensors");
    let cfg = train_config(&a, &data);
    println!(
        "[2/3] training one model for all classes ({} random backbone, {}, {} px, {} dims, {} epochs)",
        a.backbone,
        a.layers
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(" + "),
        a.image_size,
        a.dims,
        a.epochs
    );
    let log_path = a.out.join("train.log.jsonl");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", log_path.display()))?;
    let summary = train(&cfg, &model, false, Some(&mut log))?;
    println!(
        "      noise sigma chosen: {:.4} (median patch-to-center distance {:.3})",
        summary.meta.training.noise,
        summary.meta.training.median_center_distance.unwrap_or(0.0)
    );
    println!("[3/3] evaluating on the test split");
    let device = a.device.select()?;
    let predictor = Predictor::load(&model, &device)?;
    let eval_dir = a.out.join("eval");
    let report = evaluate(
        &predictor,
        &model,
        &data,
        &eval_dir,
        &EvalOptions::default(),
    )?;
    print!("{}", report.to_text_table());
    println!("total time: {:.1}s", started.elapsed().as_secs_f64());
    println!("report:  {}", eval_dir.join("report.md").display());
    println!("gallery: {}", eval_dir.join("gallery/index.html").display());
    println!(
        "NOTE: this demo used a RANDOM backbone (no pretrained weights are downloaded). For real inspection run \
         `cras weights fetch wide_resnet50_2` and train with `--weights <file>` at the paper's settings."
    );
    Ok(())
}

/// Step 1: the synthetic benchmark in `data`, generated, or reused when an earlier run made it
/// with the same settings.
fn synthesize(a: &DemoArgs, data: &std::path::Path) -> anyhow::Result<()> {
    let synth = SynthConfig {
        train_per_class: a.train_per_class,
        test_good_per_class: 8,
        test_defect_per_class: 12,
        size: 128,
        seed: a.seed,
        ..SynthConfig::default()
    };
    // A rerun with the same settings reuses the data (generation is deterministic); other
    // settings need another --out, so that nothing a user made is ever overwritten.
    let marker = a.out.join("synth-config.txt");
    // (Written without the `defect_px` field, which the demo leaves unset, so that folders made
    // before that field existed are still recognised.)
    let wanted = format!("{synth:?}").replace(", defect_px: None", "");
    if data.exists() {
        let have = std::fs::read_to_string(&marker).unwrap_or_default();
        anyhow::ensure!(
            have == wanted,
            "{} exists and was not generated by `cras demo` with these settings: choose another --out or delete it",
            data.display()
        );
        println!(
            "[1/3] reusing the synthetic benchmark in {}",
            data.display()
        );
    } else {
        println!(
            "[1/3] generating the synthetic benchmark in {}",
            data.display()
        );
        let s = generate(&synth, data)?;
        cras::fsio::write_atomic(&marker, wanted.as_bytes())?;
        println!(
            "      {} classes, {} images in {:.1}s",
            s.classes.len(),
            s.images,
            s.seconds
        );
    }
    Ok(())
}

/// Step 2's configuration: the demo's settings over the paper's.
fn train_config(a: &DemoArgs, data: &std::path::Path) -> TrainConfig {
    TrainConfig {
        backbone: a.backbone,
        recalibrate_bn: 32,
        preprocess: Preprocess {
            resize: a.image_size,
            crop: a.image_size,
            mode: ResizeMode::Square,
            mask_mode: MaskMode::Binarize,
            tiling: None,
        },
        descriptor: DescriptorConfig {
            dims: a.dims,
            layers: a.layers.clone(),
            ..DescriptorConfig::default()
        },
        fit: FitConfig {
            epochs: a.epochs,
            batch_size: 8,
            seed: a.seed,
            ..FitConfig::default()
        },
        noise: NoiseScale::Auto(a.noise_factor),
        holdout: 0.15,
        cache_budget_mb: 2048,
        device: a.device.device.clone(),
        progress: true,
        ..TrainConfig::paper(data)
    }
}

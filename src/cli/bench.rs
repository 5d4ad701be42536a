//! `cras bench`: throughput and latency of the pipeline on the chosen device, at a given
//! configuration (default the paper's: WRN50-2, 288 px, 1536 dims), from in-memory tensors so
//! that decoding is not measured. Random weights: speed does not depend on their values.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use cras::backbone::{Arch, BnStats, WeightSource};
use cras::data::{MaskMode, Preprocess, ResizeMode};
use cras::export::{ExportOptions, ExportStage};
use cras::features::cache::{CachePrecision, FeatureCache};
use cras::features::{DescriptorConfig, ExtractorSpec};
use cras::infer::engine::{open_runtime, EngineChoice, EngineKind};
use cras::infer::{ClassChoice, Predictor};
use cras::model::ModelMeta;
use cras::model::{Ablation, Adaptor, CenterBank, Discriminator};
use cras::train::fit::{fit, FitConfig, FitObserver, HeadState};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

/// Measure inference and training speed.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "wide_resnet50_2")]
    pub backbone: Arch,
    /// Input side.
    #[arg(long, default_value_t = 288)]
    pub image_size: usize,
    #[arg(long, default_value_t = 1536)]
    pub dims: usize,
    /// Backbone stages the descriptor combines, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "layer2,layer3")]
    pub layers: Vec<cras::backbone::Layer>,
    /// Batch size of the throughput measurements.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Number of classes in the center bank.
    #[arg(long, default_value_t = 15)]
    pub classes: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub engine: super::engine_args::EngineArgs,
}

fn time_it(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let t = Instant::now();
    for _ in 0..repeats.max(1) {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / repeats.max(1) as f64)
}

/// Runs `cras bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let device = cras::device::select(&a.device)?;
    let s = a.image_size;
    let desc = DescriptorConfig {
        dims: a.dims,
        layers: a.layers.clone(),
        ..DescriptorConfig::default()
    };
    let extractor = ExtractorSpec {
        arch: a.backbone,
        weights: WeightSource::Random { seed: 0 },
        bn_stats: BnStats::Clean,
        input_size: s,
        descriptor: desc,
    }
    .build(&[], &device)?;
    let grid = extractor.grid_side(s);
    let p = grid * grid;
    let mut rng = ChaCha12Rng::seed_from_u64(0);
    let adaptor = Adaptor::new(&mut rng, a.dims, &device)?;
    let disc = Discriminator::new(&mut rng, a.dims, &device)?;
    let bank = CenterBank::new(Tensor::randn(0f32, 1.0, (a.classes, p, a.dims), &device)?)?;
    let batch = Tensor::randn(0f32, 1.0, (a.batch_size, 3, s, s), &device)?;
    let one = batch.narrow(0, 0, 1)?;

    let candle = a.engine.options().choice == EngineChoice::Kind(EngineKind::Candle);
    // Feature cache build (candle: the training path): descriptors per image.
    let t_desc = if candle {
        Some(time_it(a.repeats, || {
            extractor
                .descriptors(&batch)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        })?)
    } else {
        None
    };
    let pre = Preprocess {
        resize: s as u32,
        crop: s as u32,
        mode: ResizeMode::Square,
        mask_mode: MaskMode::Binarize,
        tiling: None,
    };
    let classes: Vec<String> = (0..a.classes).map(|k| format!("class{k}")).collect();
    let mut meta = ModelMeta::describe(
        &classes,
        &extractor,
        &pre,
        Ablation::default(),
        serde_json::json!({}),
    );
    meta.tool = "cras bench".into();
    let loaded = Instant::now();
    let predictor = Predictor::from_parts(meta, extractor, adaptor, disc, bank.clone(), &device)
        .with_engine(&a.engine.options(), None)?;
    let t_load = loaded.elapsed().as_secs_f64();
    let t_infer = time_it(a.repeats, || {
        let preds = predictor.predict_batch(&batch, &ClassChoice::Match)?;
        for p in &preds {
            std::hint::black_box(predictor.anomaly_map(p));
        }
        Ok(())
    })?;
    let t_lat = time_it(a.repeats.max(5), || {
        let preds = predictor.predict_batch(&one, &ClassChoice::Match)?;
        std::hint::black_box(predictor.anomaly_map(&preds[0]));
        Ok(())
    })?;
    let b = a.batch_size as f64;
    // Where the time goes: the same runtime on the graph cut after the backbone and after the
    // descriptors (graph engines; candle's descriptor figure is the feature-cache build).
    let stages = if candle {
        None
    } else {
        Some(stage_times(&predictor, &a, &batch)?)
    };
    // Training with cached features (candle only): one epoch over 2 batches of random
    // descriptors.
    let train_rate = if candle {
        let n = a.batch_size * 2;
        Some(n as f64 / time_training(&a, n, p, &bank, &device)?)
    } else {
        None
    };
    let figures = serde_json::json!({
        "device": format!("{device:?}"),
        "engine": predictor.engine().name(),
        "precision": predictor.precision().to_string(),
        "engine_description": predictor.engine_description(),
        "backbone": a.backbone.to_string(), "image_size": s, "dims": a.dims, "batch_size": a.batch_size,
        "classes": a.classes,
        "engine_setup_s": t_load,
        "descriptors_images_per_s": t_desc.map(|t| b / t),
        "inference_images_per_s": b / t_infer,
        "inference_s_per_image": t_infer / b,
        "latency_batch1_ms": t_lat * 1000.0,
        "training_images_per_s_cached": train_rate,
        // (re-scored at f32, scored) by a bf16 engine: none here, the random model has no
        // thresholds; on real data the f32 pass costs its share of the images.
        "confirmed_at_f32": predictor.confirmed_at_f32(),
        "stages_s_per_image": stages.map(|(bb, desc)| serde_json::json!({
            "backbone": bb,
            "descriptor": desc - bb,
            "head_and_map": t_infer / b - desc,
        })),
    });
    println!(
        "cras bench ({} {}px, {} dims, batch {}, {})",
        a.backbone,
        s,
        a.dims,
        a.batch_size,
        predictor.engine_description()
    );
    println!("  engine setup (export + compile):             {t_load:>9.2} s");
    if let Some(t) = t_desc {
        println!(
            "  feature cache build (backbone + descriptor): {:>9.1} img/s",
            b / t
        );
    }
    println!(
        "  inference from tensors (to blurred maps):    {:>9.1} img/s ({:.4} s/img)",
        b / t_infer,
        t_infer / b
    );
    println!(
        "  latency, batch 1:                            {:>9.1} ms",
        t_lat * 1000.0
    );
    if let Some((bb, desc)) = stages {
        let full = t_infer / b;
        println!(
            "  per stage (s/img): backbone {bb:.4}, descriptor {:.4}, head + map {:.4}",
            desc - bb,
            full - desc
        );
    }
    if let Some((c, n)) = predictor.confirmed_at_f32() {
        println!(
            "  re-scored at f32 (near a threshold):         {c:>9} of {n} (the bench model has no \
             thresholds; with thresholds add that share of the f32 time)"
        );
    }
    if let Some(r) = train_rate {
        println!("  training with cached features:               {r:>9.1} img/s");
    }
    if let Some(path) = &a.json {
        cras::fsio::write_atomic(path, serde_json::to_string_pretty(&figures)?.as_bytes())?;
    }
    Ok(())
}

/// Seconds per image of the graph cut after the backbone and after the descriptors, on the
/// predictor's engine.
fn stage_times(p: &Predictor, a: &BenchArgs, batch: &Tensor) -> anyhow::Result<(f64, f64)> {
    let host: Vec<f32> = batch.flatten_all()?.to_vec1()?;
    let (n, s) = (batch.dim(0)?, batch.dim(2)?);
    let mut t = [0.0; 2];
    for (slot, stage) in t
        .iter_mut()
        .zip([ExportStage::Backbone, ExportStage::Descriptors])
    {
        let options = ExportOptions {
            stop_after: Some(stage),
            ..ExportOptions::default()
        };
        let onnx = cras::export::export_onnx(p, &options)?;
        let mut rt = open_runtime(p.engine(), &onnx, &a.engine.options())?;
        *slot = time_it(a.repeats, || {
            rt.run_discarding(&host, n, s)?;
            Ok(())
        })? / n as f64;
    }
    Ok((t[0], t[1]))
}

/// Seconds for one training epoch over `n` random cached descriptors.
fn time_training(
    a: &BenchArgs,
    n: usize,
    p: usize,
    bank: &CenterBank,
    device: &candle_core::Device,
) -> anyhow::Result<f64> {
    let mut cache = FeatureCache::new(n, p, a.dims, CachePrecision::F32, u64::MAX, None)?;
    for i in 0..n {
        cache.put(
            i,
            &Tensor::randn(0f32, 1.0, (p, a.dims), &candle_core::Device::Cpu)?,
        )?;
    }
    let labels: Vec<usize> = (0..n).map(|i| i % a.classes).collect();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: a.batch_size,
        ..FitConfig::default()
    };
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let mut state = HeadState::new(
        Adaptor::new(&mut rng, a.dims, device)?,
        Discriminator::new(&mut rng, a.dims, device)?,
        &cfg,
    )?;
    time_it(a.repeats, || {
        state.epochs_done = 0;
        let mut cb = |_: &HeadState, _: &cras::train::EpochStats| Ok(());
        let mut obs = FitObserver {
            log: None,
            progress: false,
            on_epoch: &mut cb,
        };
        fit(&mut state, &cache, &labels, bank, &cfg, device, &mut obs)?;
        Ok(())
    })
}

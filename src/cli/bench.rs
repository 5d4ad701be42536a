//! `cras bench`: throughput and latency of the pipeline on the chosen device, at a given
//! configuration (default the paper's: WRN50-2, 288 px, 1536 dims), from in-memory tensors so
//! that decoding is not measured. Random weights: speed does not depend on their values.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use cras::backbone::{BnStats, WeightSource};
use cras::data::{MaskMode, Preprocess, ResizeMode};
use cras::export::{ExportOptions, GraphPart};
use cras::features::cache::{CachePrecision, FeatureCache};
use cras::features::ExtractorSpec;
use cras::infer::engine::{open_runtime, EngineChoice, EngineKind, Precision};
use cras::infer::{ClassChoice, Predictor};
use cras::model::ModelMeta;
use cras::model::{Ablation, Adaptor, CenterBank, Discriminator};
use cras::train::fit::{fit, FitConfig, FitObserver, HeadState};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use super::args::{DeviceArg, EngineArgs, NetworkArgs};

/// Measure inference and training speed.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Batch size of the throughput measurements.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed repetitions per measurement (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Number of classes in the center bank.
    #[arg(long, default_value_t = 15)]
    pub classes: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What `cras bench` measured: printed, and written with `--json` (keys sorted).
#[derive(Debug, serde::Serialize)]
struct Figures {
    device: String,
    /// The host CPU (model, logical cores, low-precision instruction sets): figures from
    /// different CPUs do not compare.
    host_cpu: String,
    engine: &'static str,
    precision: String,
    engine_description: String,
    backbone: String,
    image_size: usize,
    dims: usize,
    batch_size: usize,
    classes: usize,
    /// Export and compile of the engine, seconds.
    engine_setup_s: f64,
    /// Feature cache build (backbone + descriptor; candle only).
    descriptors_images_per_s: Option<f64>,
    inference_images_per_s: f64,
    inference_s_per_image: f64,
    latency_batch1_ms: f64,
    /// Training with cached features (candle only).
    training_images_per_s_cached: Option<f64>,
    /// (re-scored at f32, scored) by a bf16 engine: none here, the random model has no
    /// thresholds; on real data the f32 pass costs its share of the images.
    confirmed_at_f32: Option<(u64, u64)>,
    /// Where the time of a graph engine goes.
    stages_s_per_image: Option<Stages>,
}

/// Seconds per image of each stage of a graph engine.
#[derive(Debug, serde::Serialize)]
struct Stages {
    backbone: f64,
    descriptor: f64,
    head_and_map: f64,
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
    let figures = measure(&a)?;
    print!("{}", figures.text());
    if let Some(path) = &a.json {
        // Through a JSON value: keys sorted, as the file has always had them.
        let value = serde_json::to_value(&figures)?;
        cras::fsio::write_atomic(path, serde_json::to_string_pretty(&value)?.as_bytes())?;
    }
    Ok(())
}

/// The random model of the bench configuration behind the chosen engine, its center bank.
struct BenchModel {
    predictor: Predictor,
    bank: CenterBank,
    /// Patch positions per image.
    positions: usize,
    /// The engine's setup time, seconds.
    setup_s: f64,
}

fn bench_model(a: &BenchArgs, device: &candle_core::Device) -> anyhow::Result<BenchModel> {
    let s = a.network.image_size as usize;
    let extractor = ExtractorSpec {
        arch: a.network.backbone,
        weights: WeightSource::Random { seed: 0 },
        bn_stats: BnStats::Clean,
        input_size: s,
        descriptor: a.network.descriptor(),
    }
    .build(&[], device)?;
    let grid = extractor.grid_side(s);
    let (p, dims) = (grid * grid, a.network.dims);
    let mut rng = ChaCha12Rng::seed_from_u64(0);
    let adaptor = Adaptor::new(&mut rng, dims, device)?;
    let disc = Discriminator::new(&mut rng, dims, device)?;
    let bank = CenterBank::new(Tensor::randn(0f32, 1.0, (a.classes, p, dims), device)?)?;
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
    if a.engine.options().precision == Precision::Int8 {
        // The int8 graph's ranges, from random images like the ones timed.
        let images = Tensor::randn(0f32, 1.0, (a.batch_size.clamp(1, 8), 3, s, s), device)?;
        let layers = &extractor.cfg.layers;
        meta.int8 = Some(cras::backbone::int8::calibrate(
            &extractor.backbone,
            layers,
            [Ok(images)],
            "random images",
        )?);
    }
    let loaded = Instant::now();
    let predictor = Predictor::from_parts(meta, extractor, adaptor, disc, bank.clone(), device)
        .with_engine(&a.engine.options(), None)?;
    Ok(BenchModel {
        predictor,
        bank,
        positions: p,
        setup_s: loaded.elapsed().as_secs_f64(),
    })
}

/// Builds the bench model and times it.
fn measure(a: &BenchArgs) -> anyhow::Result<Figures> {
    let device = a.device.select()?;
    let s = a.network.image_size as usize;
    let BenchModel {
        predictor,
        bank,
        positions,
        setup_s: t_load,
    } = bench_model(a, &device)?;
    let batch = Tensor::randn(0f32, 1.0, (a.batch_size, 3, s, s), &device)?;
    let one = batch.narrow(0, 0, 1)?;
    let candle = a.engine.options().choice == EngineChoice::Kind(EngineKind::Candle);
    // Feature cache build (candle: the training path): descriptors per image.
    let t_desc = if candle {
        Some(time_it(a.repeats, || {
            predictor
                .extractor
                .descriptors(&batch)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        })?)
    } else {
        None
    };
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
        let (bb, desc) = stage_times(&predictor, a, &batch)?;
        Some(Stages {
            backbone: bb,
            descriptor: desc - bb,
            head_and_map: t_infer / b - desc,
        })
    };
    // Training with cached features (candle only): one epoch over 2 batches of random
    // descriptors.
    let train_rate = if candle {
        let n = a.batch_size * 2;
        Some(n as f64 / time_training(a, n, positions, &bank, &device)?)
    } else {
        None
    };
    Ok(Figures {
        device: format!("{device:?}"),
        host_cpu: cras::device::HostCpu::here().describe(),
        engine: predictor.engine().name(),
        precision: predictor.precision().to_string(),
        engine_description: predictor.engine_description(),
        backbone: a.network.backbone.to_string(),
        image_size: s,
        dims: a.network.dims,
        batch_size: a.batch_size,
        classes: a.classes,
        engine_setup_s: t_load,
        descriptors_images_per_s: t_desc.map(|t| b / t),
        inference_images_per_s: b / t_infer,
        inference_s_per_image: t_infer / b,
        latency_batch1_ms: t_lat * 1000.0,
        training_images_per_s_cached: train_rate,
        confirmed_at_f32: predictor.confirmed_at_f32(),
        stages_s_per_image: stages,
    })
}

impl Figures {
    /// The figures as printed.
    fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "cras bench ({} {}px, {} dims, batch {}, {})",
            self.backbone, self.image_size, self.dims, self.batch_size, self.engine_description
        ));
        line(format!("  host: {}", self.host_cpu));
        line(format!(
            "  engine setup (export + compile):             {:>9.2} s",
            self.engine_setup_s
        ));
        if let Some(r) = self.descriptors_images_per_s {
            line(format!(
                "  feature cache build (backbone + descriptor): {r:>9.1} img/s"
            ));
        }
        line(format!(
            "  inference from tensors (to blurred maps):    {:>9.1} img/s ({:.4} s/img)",
            self.inference_images_per_s, self.inference_s_per_image
        ));
        line(format!(
            "  latency, batch 1:                            {:>9.1} ms",
            self.latency_batch1_ms
        ));
        if let Some(st) = &self.stages_s_per_image {
            line(format!(
                "  per stage (s/img): backbone {:.4}, descriptor {:.4}, head + map {:.4}",
                st.backbone, st.descriptor, st.head_and_map
            ));
        }
        if let Some((c, n)) = self.confirmed_at_f32 {
            line(format!(
                "  re-scored at f32 (near a threshold):         {c:>9} of {n} (the bench model \
                 has no thresholds; with thresholds add that share of the f32 time)"
            ));
        }
        if let Some(r) = self.training_images_per_s_cached {
            line(format!(
                "  training with cached features:               {r:>9.1} img/s"
            ));
        }
        out
    }
}

/// Seconds per image of the graph cut after the backbone and after the descriptors, on the
/// predictor's engine.
fn stage_times(p: &Predictor, a: &BenchArgs, batch: &Tensor) -> anyhow::Result<(f64, f64)> {
    let host: Vec<f32> = batch.flatten_all()?.to_vec1()?;
    let (n, s) = (batch.dim(0)?, batch.dim(2)?);
    let mut t = [0.0; 2];
    for (slot, stage) in t
        .iter_mut()
        .zip([GraphPart::Backbone, GraphPart::Descriptors])
    {
        let options = ExportOptions {
            part: stage,
            int8: p.precision() == Precision::Int8,
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
    let mut cache = FeatureCache::new(n, p, a.network.dims, CachePrecision::F32, u64::MAX, None)?;
    for i in 0..n {
        cache.put(
            i,
            &Tensor::randn(0f32, 1.0, (p, a.network.dims), &candle_core::Device::Cpu)?,
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
        Adaptor::new(&mut rng, a.network.dims, device)?,
        Discriminator::new(&mut rng, a.network.dims, device)?,
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

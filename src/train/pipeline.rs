//! End-to-end training: dataset folder -> model file.
//!
//! Steps: discover the classes; hold out a share of each class's train/good images for
//! threshold calibration; build the backbone (weights or seeded random init, BatchNorm as the
//! reference or clean, optional recalibration for random backbones); compute every training
//! image's descriptors once into a [`FeatureCache`]; initialise the head from the seed;
//! compute the center bank with the untrained adaptor; train ([`fit`]), writing a partial
//! checkpoint after every epoch (for `--resume`); calibrate thresholds on the held-out images;
//! write the self-contained model file (head, centers, folded backbone, metadata) atomically.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::fit::{derive_seed, fit, EpochStats, FitConfig, FitObserver, HeadState};
use crate::backbone::{Arch, BackboneBuilder, BnStats, Layer, WeightSource};
use crate::data::{discover, loader, Preprocess};
use crate::features::cache::{CachePrecision, FeatureCache};
use crate::features::{DescriptorConfig, FeatureExtractor};
use crate::infer::model_file::{now_unix, ModelMeta, Thresholds, TrainingStats, FORMAT_VERSION};
use crate::infer::predictor::{ClassChoice, Predictor};
use crate::model::{checkpoint, Adaptor, CenterAccumulator, CenterBank, Discriminator};
use crate::{Error, Result};

use super::selection::{BestHead, TestProbe};

/// Multi-class (one model for all classes) or single-class (one class per model).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    Multi,
    Single,
}

/// The synthesis noise: a fixed sigma or one set from the measured center distances.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NoiseScale {
    /// A fixed standard deviation (the paper's 0.015 with ImageNet weights).
    Fixed(f64),
    /// sigma such that the expected noise norm is this fraction of the median patch-to-center distance.
    Auto(f64),
}

/// Everything `cras train` needs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub classes: Option<Vec<String>>,
    pub setting: Setting,
    pub backbone: Arch,
    pub weights: Option<PathBuf>,
    pub bn_stats: BnStats,
    /// Re-estimate BatchNorm statistics on this many training images (random backbones; 0 = off).
    pub recalibrate_bn: usize,
    pub preprocess: Preprocess,
    pub descriptor: DescriptorConfig,
    pub fit: FitConfig,
    pub noise: NoiseScale,
    /// Share of each class's train/good images held out for threshold calibration.
    pub holdout: f64,
    /// Quantile of held-out normal scores used as the threshold.
    pub threshold_quantile: f64,
    pub cache_budget_mb: u64,
    pub cache_precision: CachePrecision,
    pub device: String,
    pub progress: bool,
    /// Evaluate on the TEST split every N epochs (0 = never; the reference protocol).
    #[serde(default)]
    pub eval_every: usize,
    /// Keep the epoch with the best test I-AUROC + P-AUROC (optimistic; marks the model).
    #[serde(default)]
    pub select_on_test: bool,
    /// Stop after this epoch of the schedule, keeping `<out>.partial` (continue with resume).
    #[serde(default)]
    pub stop_after: Option<usize>,
}

impl TrainConfig {
    /// The paper's multi-class configuration (WRN50-2, 329/288, 1536 dims, 100 epochs, batch
    /// 32, noise 0.015, k 0.3) for the dataset at `data`; a seeded random backbone until
    /// `weights` is set.
    pub fn paper(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            classes: None,
            setting: Setting::Multi,
            backbone: Arch::WideResnet50_2,
            weights: None,
            bn_stats: BnStats::Reference,
            recalibrate_bn: 0,
            preprocess: Preprocess::reference(),
            descriptor: DescriptorConfig::default(),
            fit: FitConfig::default(),
            noise: NoiseScale::Fixed(0.015),
            holdout: 0.1,
            threshold_quantile: 0.99,
            cache_budget_mb: 8192,
            cache_precision: CachePrecision::F32,
            device: "auto".into(),
            progress: true,
            eval_every: 0,
            select_on_test: false,
            stop_after: None,
        }
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainSummary {
    pub model: PathBuf,
    pub meta: ModelMeta,
    pub history: Vec<EpochStats>,
}

/// Path of the partial checkpoint beside the model file.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Splits sorted paths into (train, holdout) deterministically.
fn split_holdout(
    paths: &[PathBuf],
    share: f64,
    seed: u64,
    class: usize,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut idx: Vec<usize> = (0..paths.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(derive_seed(&[
        seed,
        3,
        class as u64,
    ])));
    let n_hold = if share > 0.0 && paths.len() >= 4 {
        ((paths.len() as f64 * share).round() as usize).clamp(1, paths.len() / 2)
    } else {
        0
    };
    let mut hold: Vec<usize> = idx[..n_hold].to_vec();
    let mut train: Vec<usize> = idx[n_hold..].to_vec();
    hold.sort_unstable();
    train.sort_unstable();
    (
        train.into_iter().map(|i| paths[i].clone()).collect(),
        hold.into_iter().map(|i| paths[i].clone()).collect(),
    )
}

/// Builds the backbone + descriptor for `cfg`, recalibrating on `calib` images if asked.
fn build_extractor(
    cfg: &TrainConfig,
    calib: &[PathBuf],
    device: &Device,
) -> Result<FeatureExtractor> {
    let source = match &cfg.weights {
        Some(p) => WeightSource::File(p.clone()),
        None => WeightSource::Random { seed: cfg.fit.seed },
    };
    if cfg.weights.is_none() {
        tracing::warn!(
            "no --weights given: using a seeded RANDOM {} backbone. Features are weak; real inspection needs \
             the ImageNet weights (`cras weights fetch {}`, then --weights FILE)",
            cfg.backbone,
            cfg.backbone
        );
    }
    let mut builder = BackboneBuilder::new(cfg.backbone, &source)?;
    let size = cfg.preprocess.crop as usize;
    if cfg.recalibrate_bn > 0 && !calib.is_empty() {
        let paths = spread_sample(calib, cfg.recalibrate_bn);
        tracing::info!(
            images = paths.len(),
            "recalibrating BatchNorm statistics (offline-demo aid for random backbones)"
        );
        let mut batches = Vec::new();
        for b in loader::batches(paths, cfg.preprocess.clone(), 16, false) {
            batches.push(b?.to_tensor(&Device::Cpu)?);
        }
        builder.recalibrate_bn(&batches)?;
    }
    if cfg.bn_stats == BnStats::Reference {
        builder.perturb_bn_reference(size)?;
    }
    let last = *cfg.descriptor.layers.iter().max().unwrap_or(&Layer::L3);
    let backbone = builder.build(last, device)?;
    FeatureExtractor::new(backbone, cfg.descriptor.clone())
}

/// `n` items spread evenly over `items` (all of them when there are at most `n`). Training
/// paths come grouped by class, so this samples every class in proportion instead of the first
/// class only.
fn spread_sample<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// Computes descriptors of `paths` into a cache.
fn fill_cache(
    cfg: &TrainConfig,
    extractor: &FeatureExtractor,
    paths: &[PathBuf],
    rows: usize,
    device: &Device,
) -> Result<FeatureCache> {
    let mut cache = FeatureCache::new(
        paths.len(),
        rows,
        cfg.descriptor.dims,
        cfg.cache_precision,
        cfg.cache_budget_mb * 1024 * 1024,
        None,
    )?;
    cache.fill_from_images(extractor, paths, &cfg.preprocess, cfg.progress, device)?;
    Ok(cache)
}

/// Median distance of adapted training patches to their aligned centers (a sample).
fn median_center_distance(
    adaptor: &Adaptor,
    bank: &CenterBank,
    cache: &FeatureCache,
    labels: &[usize],
    device: &Device,
) -> Result<f64> {
    let step = (cache.len() / 16).max(1);
    let mut d = Vec::new();
    for i in (0..cache.len()).step_by(step) {
        let g = cache.batch(&[i], device)?;
        let (_, p, dims) = g.dims3()?;
        let f = adaptor.forward(&g.reshape((p, dims))?)?;
        let r = bank.local_align(&f, labels[i])?;
        let dist: Vec<f32> = (f - r)?.sqr()?.sum(1)?.sqrt()?.to_vec1()?;
        d.extend(dist);
    }
    d.sort_by(|a, b| a.total_cmp(b));
    Ok(d.get(d.len() / 2).copied().unwrap_or(0.0) as f64)
}

fn meta_for(
    cfg: &TrainConfig,
    classes: &[String],
    extractor: &FeatureExtractor,
    grid: usize,
    training: TrainingStats,
    partial: bool,
) -> Result<ModelMeta> {
    Ok(ModelMeta {
        format_version: FORMAT_VERSION,
        tool: format!("cras {}", env!("CARGO_PKG_VERSION")),
        created_unix: now_unix(),
        classes: classes.to_vec(),
        backbone: extractor.backbone.info().clone(),
        last_layer: extractor.backbone.last_layer(),
        preprocess: cfg.preprocess.clone(),
        descriptor: cfg.descriptor.clone(),
        grid,
        config: serde_json::to_value(cfg).map_err(|e| Error::Other(e.to_string()))?,
        thresholds: None,
        training,
        test_selected: false,
        partial,
    })
}

/// Writes the complete model file (no optimiser state, with the folded backbone).
pub fn write_model(path: &Path, meta: &ModelMeta, predictor: &Predictor) -> Result<()> {
    let mut tensors = vec![("centers".to_string(), predictor.bank.centers.clone())];
    tensors.extend(predictor.adaptor.named());
    tensors.extend(predictor.discriminator.named());
    for (name, t) in predictor.extractor.backbone.folded_tensors() {
        tensors.push((format!("backbone.{name}"), t));
    }
    let json = serde_json::to_value(meta).map_err(|e| Error::Other(e.to_string()))?;
    checkpoint::write(path, &json, &tensors)
}

/// Runs the whole training. With `resume`, continues from `<out>.partial`.
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    log: Option<&mut dyn std::io::Write>,
) -> Result<TrainSummary> {
    let started = std::time::Instant::now();
    cfg.preprocess.validate()?;
    let device = crate::device::select(&cfg.device)?;
    let ds = discover(&cfg.data, cfg.classes.as_deref())?;
    let classes = ds.class_names();
    if cfg.setting == Setting::Single && classes.len() != 1 {
        return Err(Error::config(
            "setting",
            "single",
            format!("single-class training takes exactly one class (--classes NAME); the dataset has {}", classes.len()),
        ));
    }
    let (mut train_paths, mut labels, mut holdout) = (Vec::new(), Vec::new(), Vec::new());
    for (k, c) in ds.classes.iter().enumerate() {
        let (t, h) = split_holdout(&c.train, cfg.holdout, cfg.fit.seed, k);
        labels.extend(std::iter::repeat_n(k, t.len()));
        train_paths.extend(t);
        holdout.push(h);
    }
    tracing::info!(
        classes = classes.len(),
        train = train_paths.len(),
        holdout = holdout.iter().map(Vec::len).sum::<usize>(),
        "dataset"
    );
    let extractor = build_extractor(cfg, &train_paths, &device)?;
    let size = cfg.preprocess.crop as usize;
    let grid = extractor.grid_side(size);
    let rows = grid * grid;
    tracing::info!(
        images = train_paths.len(),
        "computing training descriptors once (feature cache)"
    );
    let cache = fill_cache(cfg, &extractor, &train_paths, rows, &device)?;

    // Head and centers, from the seed (or the partial checkpoint).
    let partial = partial_path(out);
    let mut rng = StdRng::seed_from_u64(derive_seed(&[cfg.fit.seed, 0]));
    let dims = cfg.descriptor.dims;
    let (mut state, bank, mut stats) = if resume {
        let file = checkpoint::read(&partial)
            .map_err(|e| Error::checkpoint(&partial, format!("cannot resume: {e}")))?;
        let meta = ModelMeta::from_json(&partial, &file.meta)?;
        if meta.classes != classes {
            return Err(Error::checkpoint(
                &partial,
                format!(
                    "trained on classes {:?}, the dataset now gives {:?}",
                    meta.classes, classes
                ),
            ));
        }
        if meta.backbone.arch != cfg.backbone || meta.descriptor != cfg.descriptor {
            return Err(Error::checkpoint(
                &partial,
                "made with another backbone or descriptor configuration",
            ));
        }
        let t = checkpoint::to_device(&file.tensors, &device)?;
        let mut st = HeadState::new(
            Adaptor::from_named(&t)?,
            Discriminator::from_named(&t)?,
            &cfg.fit,
        )?;
        checkpoint::restore_optimisers(&mut st, &t, meta.training.optimiser_steps, &device)?;
        st.epochs_done = meta.training.epochs_done;
        let centers = t
            .get("centers")
            .ok_or_else(|| Error::checkpoint(&partial, "no center bank"))?;
        tracing::info!(epochs_done = st.epochs_done, "resuming");
        (st, CenterBank::new(centers.clone())?, meta.training)
    } else {
        let adaptor = Adaptor::new(&mut rng, dims, &device)?;
        let disc = Discriminator::new(&mut rng, dims, &device)?;
        let mut acc = CenterAccumulator::new(classes.len());
        for k in 0..classes.len() {
            let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == k).collect();
            for chunk in idx.chunks(16) {
                let g = cache.batch(chunk, &device)?;
                let (b, p, d) = g.dims3()?;
                let f = adaptor
                    .forward(&g.reshape((b * p, d))?)?
                    .reshape((b, p, d))?;
                acc.add(k, &f)?;
            }
        }
        let bank = acc.finish(&classes)?;
        (
            HeadState::new(adaptor, disc, &cfg.fit)?,
            bank,
            TrainingStats::default(),
        )
    };
    let median = median_center_distance(&state.adaptor, &bank, &cache, &labels, &device)?;
    let mut fit_cfg = cfg.fit.clone();
    let stop_early = cfg.stop_after.filter(|&n| n < cfg.fit.epochs);
    if let Some(n) = stop_early {
        fit_cfg.epochs = n;
    }
    fit_cfg.noise = match cfg.noise {
        NoiseScale::Fixed(s) => s,
        NoiseScale::Auto(frac) => {
            let s = frac * median / (dims as f64).sqrt();
            tracing::info!(
                median_distance = format!("{median:.3}"),
                sigma = format!("{s:.4}"),
                "noise auto: sigma set from the median patch-to-center distance"
            );
            s
        }
    };
    stats.noise = fit_cfg.noise;
    stats.median_center_distance = Some(median);
    stats.images = train_paths.len();

    let base_meta = meta_for(cfg, &classes, &extractor, grid, stats.clone(), true)?;
    if cfg.select_on_test && cfg.eval_every == 0 {
        return Err(Error::config(
            "select-on-test",
            true,
            "needs --eval-every N",
        ));
    }
    let probe = if cfg.eval_every > 0 {
        tracing::warn!(
            "--eval-every: the TEST split is evaluated during training (the reference protocol)"
        );
        Some(TestProbe::build(
            &ds,
            &cfg.preprocess,
            &extractor,
            dims,
            &device,
        )?)
    } else {
        None
    };
    let mut best = BestHead::default();
    let mut test_log: Vec<serde_json::Value> = Vec::new();
    let mut on_epoch = |s: &HeadState, e: &EpochStats| -> Result<()> {
        if let Some(probe) = &probe {
            if s.epochs_done.is_multiple_of(cfg.eval_every) {
                let (i, p) = probe.evaluate(s, &bank, cfg.fit.ablation, &device)?;
                tracing::info!(
                    epoch = s.epochs_done,
                    image_auroc = format!("{i:.4}"),
                    pixel_auroc = format!("{p:.4}"),
                    "test-set evaluation"
                );
                test_log.push(serde_json::json!({"kind": "test_eval", "epoch": e.epoch, "image_auroc": i, "pixel_auroc": p}));
                if cfg.select_on_test {
                    best.offer(s, e.epoch, i + p)?;
                }
            }
        }
        let mut meta = base_meta.clone();
        meta.training.epochs_done = s.epochs_done;
        meta.training.final_loss = Some(e.loss);
        meta.training.optimiser_steps = (s.opt_adaptor.step, s.opt_discriminator.step);
        let mut tensors = vec![("centers".to_string(), bank.centers.clone())];
        tensors.extend(checkpoint::head_tensors(s, true));
        let json = serde_json::to_value(&meta).map_err(|e| Error::Other(e.to_string()))?;
        checkpoint::write(&partial, &json, &tensors)
    };
    let mut obs = FitObserver {
        log,
        progress: cfg.progress,
        on_epoch: &mut on_epoch,
    };
    let history = fit(
        &mut state, &cache, &labels, &bank, &fit_cfg, &device, &mut obs,
    )?;
    drop(cache);
    if let Some(n) = stop_early {
        tracing::info!(epochs = n, partial = %partial.display(), "stopped as asked; continue with --resume");
        let mut meta = base_meta.clone();
        meta.training.epochs_done = state.epochs_done;
        return Ok(TrainSummary {
            model: partial,
            meta,
            history,
        });
    }
    if let Some(log) = obs.log.as_deref_mut() {
        for line in &test_log {
            writeln!(log, "{line}").map_err(|e| Error::Other(format!("training log: {e}")))?;
        }
    }
    let mut selected = None;
    if let Some(epoch) = best.epoch {
        let t = checkpoint::to_device(&best.tensors, &device)?;
        state.adaptor = Adaptor::from_named(&t)?;
        state.discriminator = Discriminator::from_named(&t)?;
        tracing::warn!(
            epoch = epoch + 1,
            "model chosen on the TEST set (test-selected: optimistic figures)"
        );
        selected = Some(epoch);
    }

    if let Some(last) = history.last() {
        stats.final_loss = Some(last.loss);
        stats.final_p_true = Some(last.p_true);
        stats.final_p_fake = Some(last.p_fake);
    }
    stats.epochs_done = state.epochs_done;
    stats.optimiser_steps = (state.opt_adaptor.step, state.opt_discriminator.step);
    stats.seconds = started.elapsed().as_secs_f64();
    stats.selected_epoch = selected;
    let mut meta = meta_for(cfg, &classes, &extractor, grid, stats, false)?;
    meta.test_selected = selected.is_some();
    let mut predictor = Predictor::from_parts(
        meta,
        extractor,
        state.adaptor,
        state.discriminator,
        bank,
        &device,
    );
    predictor.meta.thresholds = calibrate(&predictor, &holdout, cfg.threshold_quantile)?;
    write_model(out, &predictor.meta, &predictor)?;
    if partial.exists() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(TrainSummary {
        model: out.to_path_buf(),
        meta: predictor.meta,
        history,
    })
}

/// Scores the held-out normal images of each class (class stated) and sets thresholds.
pub fn calibrate(
    predictor: &Predictor,
    holdout: &[Vec<PathBuf>],
    q: f64,
) -> Result<Option<Thresholds>> {
    let mut per_class_scores = Vec::new();
    for (k, paths) in holdout.iter().enumerate() {
        let mut scores = Vec::new();
        for batch in loader::batches(paths.clone(), predictor.meta.preprocess.clone(), 16, false) {
            let batch = batch?;
            let t = batch.to_tensor(&predictor.device)?;
            let preds = predictor.predict_tensor(&t, &ClassChoice::Stated(vec![k; batch.len()]))?;
            scores.extend(preds.iter().map(|p| p.score));
        }
        per_class_scores.push(scores);
    }
    let all: Vec<f32> = per_class_scores.iter().flatten().copied().collect();
    if all.is_empty() {
        tracing::warn!("no held-out normal images: no thresholds calibrated (use --holdout, or give --threshold at run time)");
        return Ok(None);
    }
    let global = crate::metrics::threshold::quantile_threshold(&all, q)?;
    let per_class = per_class_scores
        .iter()
        .map(|s| {
            if s.is_empty() {
                Ok(global)
            } else {
                crate::metrics::threshold::quantile_threshold(s, q)
            }
        })
        .collect::<Result<Vec<f32>>>()?;
    Ok(Some(Thresholds {
        per_class,
        global,
        method: format!("quantile {q} of held-out normal training images' scores"),
        holdout_images: holdout.iter().map(Vec::len).collect(),
        holdout_scores: per_class_scores,
    }))
}

#[cfg(test)]
mod tests {
    use super::spread_sample;

    #[test]
    fn recalibration_sample_covers_every_class_in_proportion() {
        // 3 classes of 10 images each, grouped as the dataset lists them.
        let items: Vec<(usize, usize)> = (0..30).map(|i| (i / 10, i % 10)).collect();
        let pick = spread_sample(&items, 6);
        let per_class: Vec<usize> = (0..3)
            .map(|k| pick.iter().filter(|(c, _)| *c == k).count())
            .collect();
        assert_eq!(per_class, vec![2, 2, 2]);
        assert_eq!(spread_sample(&items, 40).len(), 30);
        assert_eq!(spread_sample(&items, 0).len(), 0);
    }
}

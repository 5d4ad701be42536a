//! End-to-end training: dataset folder -> model file, in five steps, one function each:
//! 1. [`split`]: read the dataset (any layout, [`crate::data::layouts`]); per class, its `val`
//!    images calibrate the thresholds where the layout has some (MVTec AD 2, LOCO, manifests),
//!    else a seeded share of its training images is held out for that;
//! 2. [`training_extractor`]: the backbone + descriptor ([`ExtractorSpec`]; weights or seeded
//!    random init, BatchNorm as the reference or clean, optional recalibration for random
//!    backbones); every training image's descriptors go once into a [`FeatureCache`];
//! 3. [`init_head`] (head from the seed, center bank with the untrained adaptor) or
//!    [`resume_head`] (both from `<out>.partial`);
//! 4. [`fit_with_checkpoints`]: the training loop ([`fit`]) writing a partial checkpoint after
//!    every epoch, with the opt-in test-set probe;
//! 5. [`finalise`]: calibrate thresholds on the held-out images and write the self-contained
//!    model file (head, centers, folded backbone, metadata) atomically.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

pub use super::config::{NoiseScale, Setting, TrainConfig};
use super::fit::{derive_seed, fit, EpochStats, FitConfig, FitObserver, HeadState};
use super::selection::{BestHead, TestProbe};
pub use super::split::{split, Split};
use super::tiles;
use crate::backbone::{Int8Calibration, WeightSource};
use crate::data::loader;
use crate::features::cache::FeatureCache;
use crate::features::{ExtractorSpec, FeatureExtractor};
use crate::infer::engine::{band, EngineKind, Precision};
use crate::infer::{ClassChoice, Predictor};
use crate::model::file::{self, HeadRef, ModelMeta, PrecisionBand, Thresholds, TrainingStats};
use crate::model::{Adaptor, CenterAccumulator, CenterBank, Discriminator};
use crate::{Error, Result};

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

/// Step 2: the extractor of `cfg`, BatchNorm re-estimated on a sample of `calib` if asked.
pub fn training_extractor(
    cfg: &TrainConfig,
    calib: &[PathBuf],
    device: &Device,
) -> Result<FeatureExtractor> {
    let weights = match &cfg.weights {
        Some(p) => WeightSource::File(p.clone()),
        None => {
            tracing::warn!(
                "no --weights given: using a seeded RANDOM {} backbone. Features are weak; real inspection needs \
                 the ImageNet weights (`cras weights fetch {}`, then --weights FILE)",
                cfg.backbone,
                cfg.backbone
            );
            WeightSource::Random { seed: cfg.fit.seed }
        }
    };
    let mut batches = Vec::new();
    if cfg.recalibrate_bn > 0 && !calib.is_empty() {
        let paths = spread_sample(calib, cfg.recalibrate_bn);
        tracing::info!(
            images = paths.len(),
            "recalibrating BatchNorm statistics (offline-demo aid for random backbones)"
        );
        // A tiled model recalibrates on one tile per sampled image (its position cycling), so
        // that the sample holds as many network inputs as asked, not T times as many.
        let mut image = 0usize;
        for b in loader::batches(paths, cfg.preprocess.clone(), 16, false) {
            let b = b?;
            let t = b.to_tensor(&Device::Cpu)?;
            if b.views == 1 {
                batches.push(t);
                continue;
            }
            let rows = tiles::one_view_each(b.len(), b.views, image);
            image += b.len();
            batches.push(loader::select_rows(&t, &rows)?);
        }
    }
    ExtractorSpec {
        arch: cfg.backbone,
        weights,
        bn_stats: cfg.bn_stats,
        input_size: cfg.preprocess.crop as usize,
        descriptor: cfg.descriptor.clone(),
    }
    .build(&batches, device)
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
    device: &Device,
) -> Result<FeatureCache> {
    let grid = extractor.grid_side(cfg.preprocess.crop as usize);
    let views = cfg.preprocess.views_per_image();
    tracing::info!(
        images = paths.len(),
        tiles_per_image = views,
        "computing training descriptors once (feature cache)"
    );
    let mut cache = FeatureCache::new(
        paths.len() * views,
        grid * grid,
        cfg.descriptor.dims,
        cfg.cache_precision,
        cfg.cache_budget_mb * 1024 * 1024,
        None,
    )?;
    cache.fill_from_images(extractor, paths, &cfg.preprocess, cfg.progress, device)?;
    Ok(cache)
}

/// Step 3a: a fresh head from the seed and the center bank computed with its untrained adaptor:
/// one row per name in `classes` (the classes; with per-tile centers, each class's tile
/// positions), `labels` giving each cached item's row.
pub fn init_head(
    cfg: &TrainConfig,
    cache: &FeatureCache,
    labels: &[usize],
    classes: &[String],
    device: &Device,
) -> Result<(HeadState, CenterBank)> {
    let mut rng = ChaCha12Rng::seed_from_u64(derive_seed(&[cfg.fit.seed, 0]));
    let dims = cfg.descriptor.dims;
    let adaptor = Adaptor::new(&mut rng, dims, device)?;
    let disc = Discriminator::new(&mut rng, dims, device)?;
    let bank = center_bank(&adaptor, cache, labels, classes, device)?;
    Ok((HeadState::new(adaptor, disc, &cfg.fit)?, bank))
}

/// The center bank of `adaptor`: per class, per position, the mean of the adapted descriptors of
/// the class's cached images (a constant, no gradient).
pub fn center_bank(
    adaptor: &Adaptor,
    cache: &FeatureCache,
    labels: &[usize],
    classes: &[String],
    device: &Device,
) -> Result<CenterBank> {
    let mut acc = CenterAccumulator::new(classes.len());
    for k in 0..classes.len() {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == k).collect();
        for chunk in idx.chunks(16) {
            let g = cache.batch(chunk, device)?;
            let (b, p, d) = g.dims3()?;
            let f = adaptor
                .forward(&g.reshape((b * p, d))?)?
                .reshape((b, p, d))?;
            acc.add(k, &f)?;
        }
    }
    acc.finish(classes)
}

/// Step 3b: the head, optimiser state, center bank and training figures of the partial
/// checkpoint `partial`, checked against this run's classes and configuration.
pub fn resume_head(
    cfg: &TrainConfig,
    partial: &Path,
    classes: &[String],
    device: &Device,
) -> Result<(HeadState, CenterBank, TrainingStats)> {
    let cannot = |msg: String| Error::checkpoint(partial, format!("cannot resume: {msg}"));
    let f = file::load(partial, device).map_err(|e| cannot(e.to_string()))?;
    if !f.meta.partial {
        return Err(cannot("not a partial checkpoint".into()));
    }
    if f.meta.classes != classes {
        return Err(cannot(format!(
            "trained on classes {:?}, the dataset now gives {:?}",
            f.meta.classes, classes
        )));
    }
    if f.meta.backbone.arch != cfg.backbone || f.meta.descriptor != cfg.descriptor {
        return Err(cannot(
            "made with another backbone or descriptor configuration".into(),
        ));
    }
    super::config::same_schedule(&f.meta.config, cfg).map_err(cannot)?;
    let mut st = HeadState::new(f.adaptor, f.discriminator, &cfg.fit)?;
    let [m_adaptor, m_disc] = f
        .optimisers
        .ok_or_else(|| cannot("no optimiser state".into()))?;
    let (s_adaptor, s_disc) = f.meta.training.optimiser_steps;
    m_adaptor
        .restore_into(&mut st.opt_adaptor, s_adaptor)
        .and_then(|()| m_disc.restore_into(&mut st.opt_discriminator, s_disc))
        .map_err(|e| cannot(e.to_string()))?;
    st.epochs_done = f.meta.training.epochs_done;
    tracing::info!(epochs_done = st.epochs_done, "resuming");
    Ok((st, f.bank, f.meta.training))
}

/// Median distance of adapted training patches to their aligned centers (a sample of 16
/// images), with the same alignment training uses.
fn median_center_distance(
    cfg: &TrainConfig,
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
        let r = bank
            .align(
                &f.unsqueeze(0)?,
                &labels[i..=i],
                cfg.fit.ablation.center_search,
            )?
            .squeeze(0)?;
        let dist: Vec<f32> = (f - r)?.sqr()?.sum(1)?.sqrt()?.to_vec1()?;
        d.extend(dist);
    }
    d.sort_by(|a, b| a.total_cmp(b));
    Ok(d.get(d.len() / 2).copied().unwrap_or(0.0) as f64)
}

/// What the loop hands to [`finalise`].
pub struct FitOutcome {
    pub history: Vec<EpochStats>,
    /// The head of the best test-set epoch, when the run selects on the test set.
    pub best: BestHead,
    /// `test_eval` lines for the training log.
    pub test_log: Vec<serde_json::Value>,
}

/// Step 4: trains `state` up to `fit_cfg.epochs`, writing `partial` (metadata `base_meta`)
/// after every epoch and probing the test split every `cfg.eval_every` epochs if asked.
#[allow(clippy::too_many_arguments)]
pub fn fit_with_checkpoints(
    cfg: &TrainConfig,
    fit_cfg: &super::FitConfig,
    state: &mut HeadState,
    bank: &CenterBank,
    cache: &FeatureCache,
    labels: &[usize],
    probe: Option<&TestProbe>,
    base_meta: &ModelMeta,
    partial: &Path,
    log: Option<&mut dyn std::io::Write>,
    device: &Device,
) -> Result<FitOutcome> {
    let mut best = BestHead::default();
    let mut test_log: Vec<serde_json::Value> = Vec::new();
    let mut on_epoch = |s: &HeadState, e: &EpochStats| -> Result<()> {
        if let Some(probe) = probe {
            if s.epochs_done.is_multiple_of(cfg.eval_every) {
                let vote_group = cfg.select_batch_vote.then_some(cfg.fit.batch_size);
                let (i, p) = probe.evaluate(s, bank, cfg.fit.ablation, vote_group, device)?;
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
        let head = HeadRef {
            bank,
            adaptor: &s.adaptor,
            discriminator: &s.discriminator,
        };
        file::save_partial(partial, &meta, head, [&s.opt_adaptor, &s.opt_discriminator])
    };
    let mut obs = FitObserver {
        log,
        progress: cfg.progress,
        on_epoch: &mut on_epoch,
    };
    let history = fit(state, cache, labels, bank, fit_cfg, device, &mut obs)?;
    if let Some(log) = obs.log.as_deref_mut() {
        for line in &test_log {
            writeln!(log, "{line}").map_err(|e| Error::Other(format!("training log: {e}")))?;
        }
    }
    Ok(FitOutcome {
        history,
        best,
        test_log,
    })
}

/// Step 5: takes the test-selected head if any, calibrates thresholds on `holdout`, measures
/// the low-precision engines against f32 ([`measure_precision`]), writes the model file `out`
/// and removes `partial`.
#[allow(clippy::too_many_arguments)]
pub fn finalise(
    cfg: &TrainConfig,
    mut meta: ModelMeta,
    mut state: HeadState,
    bank: CenterBank,
    extractor: FeatureExtractor,
    outcome: &FitOutcome,
    holdout: &[Vec<PathBuf>],
    train: &[PathBuf],
    out: &Path,
    partial: &Path,
    device: &Device,
) -> Result<ModelMeta> {
    if let Some(epoch) = outcome.best.epoch {
        let t = outcome
            .best
            .tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_device(device)?)))
            .collect::<Result<std::collections::HashMap<String, Tensor>>>()?;
        state.adaptor = Adaptor::from_named(&t)?;
        state.discriminator = Discriminator::from_named(&t)?;
        tracing::warn!(
            epoch = epoch + 1,
            "model chosen on the TEST set (test-selected: optimistic figures)"
        );
    }
    let stats = &mut meta.training;
    if let Some(last) = outcome.history.last() {
        stats.final_loss = Some(last.loss);
        stats.final_p_true = Some(last.p_true);
        stats.final_p_fake = Some(last.p_fake);
    }
    stats.epochs_done = state.epochs_done;
    stats.optimiser_steps = (state.opt_adaptor.step, state.opt_discriminator.step);
    stats.selected_epoch = outcome.best.epoch;
    meta.test_selected = outcome.best.epoch.is_some();
    meta.created_unix = file::now_unix();
    meta.partial = false;
    let mut predictor = Predictor::from_parts(
        meta,
        extractor,
        state.adaptor,
        state.discriminator,
        bank,
        device,
    );
    predictor.meta.thresholds = calibrate(&predictor, holdout, cfg.threshold_quantile)?;
    predictor.meta.int8 = Some(calibrate_int8(&predictor, train)?);
    predictor.meta.precision_bands =
        measure_precision(&predictor, holdout, train, &band::LOW_PRECISIONS)?;
    predictor.save(out)?;
    if partial.exists() {
        let _ = std::fs::remove_file(partial);
    }
    Ok(predictor.meta)
}

/// Runs the whole training. With `resume`, continues from `<out>.partial`. The configuration
/// is checked first ([`TrainConfig::validate`]).
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    log: Option<&mut dyn std::io::Write>,
) -> Result<TrainSummary> {
    let started = std::time::Instant::now();
    cfg.validate()?;
    let split = split(cfg)?;
    let resolved = tiles::with_tile_image_size(cfg, &split.train)?;
    let cfg = resolved.as_ref().unwrap_or(cfg);
    let device = crate::device::select(&cfg.device)?;
    let extractor = training_extractor(cfg, &split.train, &device)?;
    let cache = fill_cache(cfg, &extractor, &split.train, &device)?;
    let labels = tiles::row_labels(&split.labels, &cfg.preprocess);
    let partial = partial_path(out);
    let (mut state, bank, stats) = if resume {
        resume_head(cfg, &partial, &split.classes, &device)?
    } else {
        let bank_rows = tiles::center_row_names(&split.classes, &cfg.preprocess);
        let (state, bank) = init_head(cfg, &cache, &labels, &bank_rows, &device)?;
        (state, bank, TrainingStats::default())
    };
    // Measured on the adaptor before training; a resumed run reuses the checkpoint's figure
    // (its adaptor is trained: measuring again would change the noise and so the model).
    let median = match stats.median_center_distance.filter(|_| resume) {
        Some(m) => m,
        None => median_center_distance(cfg, &state.adaptor, &bank, &cache, &labels, &device)?,
    };
    let fit_cfg = fit_config(cfg, median);
    let mut meta = run_meta(cfg, &split, &extractor, stats, fit_cfg.noise, median)?;
    let probe = test_probe(cfg, &split, &extractor, &device)?;
    let outcome = fit_with_checkpoints(
        cfg,
        &fit_cfg,
        &mut state,
        &bank,
        &cache,
        &labels,
        probe.as_ref(),
        &meta,
        &partial,
        log,
        &device,
    )?;
    drop(cache);
    if fit_cfg.epochs < cfg.fit.epochs {
        // `stop_after` cut the schedule: keep the partial checkpoint.
        tracing::info!(epochs = fit_cfg.epochs, partial = %partial.display(), "stopped as asked; continue with --resume");
        meta.training.epochs_done = state.epochs_done;
        return Ok(TrainSummary {
            model: partial,
            meta,
            history: outcome.history,
        });
    }
    meta.training.seconds = started.elapsed().as_secs_f64();
    let meta = finalise(
        cfg,
        meta,
        state,
        bank,
        extractor,
        &outcome,
        &split.holdout,
        &split.train,
        out,
        &partial,
        &device,
    )?;
    Ok(TrainSummary {
        model: out.to_path_buf(),
        meta,
        history: outcome.history,
    })
}

/// The loop's configuration: `cfg.fit` cut to `stop_after` epochs when that stops early, with
/// the noise sigma fixed, or set from the median patch-to-center distance `median`.
fn fit_config(cfg: &TrainConfig, median: f64) -> FitConfig {
    let mut fit_cfg = cfg.fit.clone();
    if let Some(n) = cfg.stop_after.filter(|&n| n < cfg.fit.epochs) {
        fit_cfg.epochs = n;
    }
    fit_cfg.noise = match cfg.noise {
        NoiseScale::Fixed(s) => s,
        NoiseScale::Auto(frac) => {
            let s = frac * median / (cfg.descriptor.dims as f64).sqrt();
            tracing::info!(
                median_distance = format!("{median:.3}"),
                sigma = format!("{s:.4}"),
                "noise auto: sigma set from the median patch-to-center distance"
            );
            s
        }
    };
    fit_cfg
}

/// The metadata of the run as its partial checkpoints record it: classes, extractor,
/// preprocessing, ablation, the configuration as provenance, and the training figures so far.
fn run_meta(
    cfg: &TrainConfig,
    split: &Split,
    extractor: &FeatureExtractor,
    mut stats: TrainingStats,
    noise: f64,
    median: f64,
) -> Result<ModelMeta> {
    stats.noise = noise;
    stats.median_center_distance = Some(median);
    stats.images = split.train.len();
    let config = serde_json::to_value(cfg).map_err(|e| Error::Other(e.to_string()))?;
    let mut meta = ModelMeta::describe(
        &split.classes,
        extractor,
        &cfg.preprocess,
        cfg.fit.ablation,
        config,
    );
    meta.training = stats;
    meta.partial = true;
    Ok(meta)
}

/// The opt-in test-set probe of `--eval-every` (None when off).
fn test_probe(
    cfg: &TrainConfig,
    split: &Split,
    extractor: &FeatureExtractor,
    device: &Device,
) -> Result<Option<TestProbe>> {
    if cfg.eval_every == 0 {
        return Ok(None);
    }
    tracing::warn!(
        "--eval-every: the TEST split is evaluated during training (the reference protocol)"
    );
    Ok(Some(TestProbe::build(
        &split.dataset,
        &cfg.preprocess,
        extractor,
        cfg.descriptor.dims,
        device,
    )?))
}

/// Training images a model without held-out images measures its low-precision engines on.
pub const PRECISION_SAMPLE: usize = 32;

/// Measures the low-precision `engines` this machine runs (training: [`band::LOW_PRECISIONS`]) against
/// f32 on the held-out images (else on [`PRECISION_SAMPLE`] training images spread over the
/// classes): their confirmation bands ([`band::measure`]). An engine whose runtime is absent
/// or whose precision this CPU lacks is skipped (logged).
pub fn measure_precision(
    predictor: &Predictor,
    holdout: &[Vec<PathBuf>],
    train: &[PathBuf],
    engines: &[(EngineKind, Precision)],
) -> Result<Vec<PrecisionBand>> {
    let held: Vec<PathBuf> = holdout.iter().flatten().cloned().collect();
    let (paths, from) = if held.is_empty() {
        (spread_sample(train, PRECISION_SAMPLE), "training images")
    } else {
        (held, "held-out normal images")
    };
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let pre = &predictor.meta.preprocess;
    let batches = loader::batches(paths, pre.clone(), pre.images_per_batch(16), false)
        .map(|b| Ok(b?.to_tensor(&predictor.device)?))
        .collect::<Result<Vec<Tensor>>>()?;
    let mut bands = Vec::new();
    for &(kind, precision) in engines {
        match band::measure(predictor, kind, precision, from, &batches) {
            Ok(b) => {
                tracing::info!(
                    "{kind} {precision} against f32 on {} {from}: logit error median {:.3}, \
                     90% {:.3}, max {:.3}; confirmation band {:.3} logits ({} x the {} \
                     quantile){}",
                    b.images,
                    b.median,
                    b.p90,
                    b.max,
                    b.band,
                    b.factor,
                    b.quantile,
                    b.confirmed_share
                        .map(|s| format!(", {:.0}% of them near their threshold", 100.0 * s))
                        .unwrap_or_default()
                );
                bands.push(b);
            }
            Err(e) => tracing::info!("{kind} {precision} not measured: {e}"),
        }
    }
    Ok(bands)
}

/// The int8 calibration of the model's backbone ([`crate::backbone::int8::calibrate`]) on
/// [`PRECISION_SAMPLE`] training images spread over the classes.
pub fn calibrate_int8(predictor: &Predictor, train: &[PathBuf]) -> Result<Int8Calibration> {
    let paths = spread_sample(train, PRECISION_SAMPLE);
    let pre = &predictor.meta.preprocess;
    let batches = loader::batches(paths, pre.clone(), pre.images_per_batch(16), false)
        .map(|b| Ok(b?.to_tensor(&predictor.device)?));
    let ext = &predictor.extractor;
    let cal = crate::backbone::int8::calibrate(
        &ext.backbone,
        &ext.cfg.layers,
        batches,
        "training images",
    )?;
    tracing::info!(
        "int8 calibration: the ranges of {} convolution inputs over {} training images",
        cal.inputs.len(),
        cal.images
    );
    Ok(cal)
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
        let pre = &predictor.meta.preprocess;
        let images_per_batch = pre.images_per_batch(16);
        for batch in loader::batches(paths.clone(), pre.clone(), images_per_batch, false) {
            let batch = batch?;
            let t = batch.to_tensor(&predictor.device)?;
            let preds = predictor.predict_batch(&t, &ClassChoice::Stated(vec![k; batch.len()]))?;
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

//! The training loop over cached descriptors (spec section 1, row "schedule").
//!
//! Input: a [`FeatureCache`] of N images' descriptors g [P, D], each image's class index, the
//! [`CenterBank`] and a [`HeadState`] (adaptor, discriminator, optimisers). Each epoch shuffles
//! all images of all classes together (seeded by `(seed, epoch)`), cuts batches of
//! `batch_size`, and runs [`train_step`] on each. The noise of every step is drawn from an RNG
//! seeded by `(seed, epoch, step)`, so a run resumed at an epoch boundary reaches the same model
//! as an uninterrupted one.

use std::io::Write;

use candle_core::Device;
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::diagnostics::{share_changed, EpochDiagnostics, ScoreSummary};
use crate::features::cache::FeatureCache;
use crate::model::{
    optim::{AdamFamily, WeightDecay},
    step::{train_step, StepDetail, StepStats},
    synthesis::gaussian_noise,
    Ablation, Adaptor, CenterBank, Discriminator,
};
use crate::{Error, Result};

/// Hyperparameters of the loop (defaults: the paper's multi-class setting).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr_adaptor: f64,
    pub lr_discriminator: f64,
    pub weight_decay_adaptor: f64,
    pub weight_decay_discriminator: f64,
    /// Standard deviation of the synthesis noise.
    pub noise: f64,
    /// Mixing factor of the distance-guided scale (0 = fixed noise).
    pub k: f64,
    pub seed: u64,
    pub ablation: Ablation,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            lr_adaptor: 1e-4,
            lr_discriminator: 2e-4,
            weight_decay_adaptor: 0.01,
            weight_decay_discriminator: 1e-5,
            noise: 0.015,
            k: 0.3,
            seed: 0,
            ablation: Ablation::default(),
        }
    }
}

/// Everything trained, with its optimiser state.
pub struct HeadState {
    pub adaptor: Adaptor,
    pub discriminator: Discriminator,
    pub opt_adaptor: AdamFamily,
    pub opt_discriminator: AdamFamily,
    /// Epochs completed so far.
    pub epochs_done: usize,
}

impl HeadState {
    /// Wraps freshly initialised (or loaded) modules with optimisers per `cfg`.
    pub fn new(adaptor: Adaptor, discriminator: Discriminator, cfg: &FitConfig) -> Result<Self> {
        let opt_adaptor = AdamFamily::new(
            adaptor.vars(),
            cfg.lr_adaptor,
            WeightDecay::Decoupled(cfg.weight_decay_adaptor),
        )?;
        let opt_discriminator = AdamFamily::new(
            discriminator.vars(),
            cfg.lr_discriminator,
            WeightDecay::Coupled(cfg.weight_decay_discriminator),
        )?;
        Ok(Self {
            adaptor,
            discriminator,
            opt_adaptor,
            opt_discriminator,
            epochs_done: 0,
        })
    }
}

/// Mean figures of one epoch.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub p_true: f64,
    pub p_fake: f64,
    pub seconds: f64,
    pub images: usize,
    /// The discriminator's scores of the epoch's true patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_scores: Option<ScoreSummary>,
    /// The discriminator's scores of the epoch's synthetic patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fake_scores: Option<ScoreSummary>,
    /// Share of (image, position) patches aligned with another center than in the previous
    /// epoch (`None` for a run's first epoch and without center search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_changed: Option<f64>,
}

/// Mixes seed parts into one RNG seed (SplitMix64 finaliser).
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        h ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// The image order of `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha12Rng::seed_from_u64(derive_seed(&[
        seed,
        1,
        epoch as u64,
    ])));
    order
}

/// Where per-step and per-epoch figures go.
pub struct FitObserver<'a, 'b> {
    /// JSONL log (one object per step and per epoch), if any.
    pub log: Option<&'b mut dyn Write>,
    /// Show a progress bar per epoch.
    pub progress: bool,
    /// Called after every epoch (e.g. to write a checkpoint); an error stops training.
    pub on_epoch: &'a mut dyn FnMut(&HeadState, &EpochStats) -> Result<()>,
}

/// Trains from `state.epochs_done` up to `cfg.epochs`. Stops with an error, leaving the state
/// of the last completed epoch to the `on_epoch` callback's last write, when the loss is NaN or
/// infinite.
pub fn fit(
    state: &mut HeadState,
    cache: &FeatureCache,
    labels: &[usize],
    bank: &CenterBank,
    cfg: &FitConfig,
    device: &Device,
    obs: &mut FitObserver<'_, '_>,
) -> Result<Vec<EpochStats>> {
    if labels.len() != cache.len() {
        return Err(Error::Other(format!(
            "{} labels for {} cached images",
            labels.len(),
            cache.len()
        )));
    }
    if cfg.batch_size == 0 {
        return Err(Error::config("batch-size", 0, "must be at least 1"));
    }
    let run = Run {
        cache,
        labels,
        bank,
        cfg,
        device,
    };
    let mut history = Vec::new();
    let mut last_centers: Option<Vec<u32>> = None;
    for epoch in state.epochs_done..cfg.epochs {
        let (stats, centers) = run.epoch(state, epoch, last_centers.as_deref(), obs)?;
        last_centers = centers;
        state.epochs_done = epoch + 1;
        if let Some(log) = obs.log.as_deref_mut() {
            let mut line = serde_json::to_value(stats).unwrap_or_default();
            line["kind"] = "epoch".into();
            writeln!(log, "{line}").map_err(|e| Error::Other(format!("training log: {e}")))?;
        }
        tracing::info!(
            epoch = epoch + 1,
            of = cfg.epochs,
            loss = format!("{:.4}", stats.loss),
            normal_ok = format!("{:.1}%", 100.0 * stats.p_true),
            synthetic_caught = format!("{:.1}%", 100.0 * stats.p_fake),
            secs = format!("{:.1}", stats.seconds),
            "epoch done"
        );
        (obs.on_epoch)(state, &stats)?;
        history.push(stats);
    }
    Ok(history)
}

/// What every step of a run reads.
struct Run<'a> {
    cache: &'a FeatureCache,
    labels: &'a [usize],
    bank: &'a CenterBank,
    cfg: &'a FitConfig,
    device: &'a Device,
}

impl Run<'_> {
    /// One epoch: every cached image once, in the epoch's order, in batches; the step figures
    /// go to the progress bar and the log. Returns the epoch's figures (center changes against
    /// `last_centers`, the previous epoch's) and its center of every patch.
    fn epoch(
        &self,
        state: &mut HeadState,
        epoch: usize,
        last_centers: Option<&[u32]>,
        obs: &mut FitObserver<'_, '_>,
    ) -> Result<(EpochStats, Option<Vec<u32>>)> {
        let cfg = self.cfg;
        let n = self.cache.len();
        let steps = n.div_ceil(cfg.batch_size);
        let started = std::time::Instant::now();
        let order = epoch_order(n, cfg.seed, epoch);
        let bar = progress_bar(obs.progress, steps as u64, epoch, cfg.epochs);
        let mut sum = StepStats::default();
        let mut diag = EpochDiagnostics::new(n, self.cache.rows());
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let (s, detail) = self.step(state, epoch, step, chunk)?;
            diag.add(chunk, &detail)?;
            if !s.loss.is_finite() {
                bar.abandon();
                return Err(Error::Other(format!(
                    "training diverged: loss is {} at epoch {epoch}, step {step}; the last good checkpoint is kept",
                    s.loss
                )));
            }
            sum.loss += s.loss;
            sum.p_true += s.p_true;
            sum.p_fake += s.p_fake;
            let done = (step + 1) as f64;
            bar.set_message(format!(
                "loss {:.3e}  normal ok {:.1}%  synthetic caught {:.1}%",
                sum.loss / done,
                100.0 * sum.p_true / done,
                100.0 * sum.p_fake / done
            ));
            bar.inc(1);
            if let Some(log) = obs.log.as_deref_mut() {
                let line = serde_json::json!({"kind": "step", "epoch": epoch, "step": step,
                    "loss": s.loss, "p_true": s.p_true, "p_fake": s.p_fake});
                writeln!(log, "{line}").map_err(|e| Error::Other(format!("training log: {e}")))?;
            }
        }
        bar.finish_and_clear();
        let k = steps.max(1) as f64;
        let scores = diag.scores()?;
        let centers = diag.into_centers();
        let center_changed = match (last_centers, &centers) {
            (Some(a), Some(b)) => share_changed(a, b),
            _ => None,
        };
        let stats = EpochStats {
            epoch,
            loss: sum.loss / k,
            p_true: sum.p_true / k,
            p_fake: sum.p_fake / k,
            seconds: started.elapsed().as_secs_f64(),
            images: n,
            true_scores: scores.map(|s| s.0),
            fake_scores: scores.map(|s| s.1),
            center_changed,
        };
        Ok((stats, centers))
    }

    /// Step `step` of `epoch` on the cached images `chunk`: their descriptors, the step's
    /// seeded noise, then [`train_step`].
    fn step(
        &self,
        state: &mut HeadState,
        epoch: usize,
        step: usize,
        chunk: &[usize],
    ) -> Result<(StepStats, StepDetail)> {
        let cfg = self.cfg;
        let g = self.cache.batch(chunk, self.device)?;
        let classes: Vec<usize> = chunk.iter().map(|&i| self.labels[i]).collect();
        let mut rng =
            ChaCha12Rng::seed_from_u64(derive_seed(&[cfg.seed, 2, epoch as u64, step as u64]));
        let noise = gaussian_noise(
            &mut rng,
            chunk.len() * self.cache.rows(),
            self.cache.dims(),
            cfg.noise,
            self.device,
        )?;
        train_step(
            &state.adaptor,
            &mut state.discriminator,
            self.bank,
            &g,
            &classes,
            &noise,
            cfg.k,
            cfg.ablation,
            &mut state.opt_adaptor,
            &mut state.opt_discriminator,
        )
    }
}

fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps, ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    bar
}

//! `cras train`: dataset folder -> model file.

use std::path::PathBuf;

use cras::data::{MaskMode, Preprocess};
use cras::features::cache::CachePrecision;
use cras::model::Ablation;
use cras::train::fit::FitConfig;
use cras::train::pipeline::{train, NoiseScale, Setting, TrainConfig};

use super::args::{paper, preprocess_from_flags, DeviceArg, FeatureArgs};

/// Train one CRAS model on the normal (train/good) images of every class.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Dataset: a folder (MVTec AD, your own folders, VisA, MVTec AD 2, LOCO, Real-IAD) or a
    /// manifest (.csv / .jsonl); see the README's "Your own data".
    #[arg(long)]
    pub data: PathBuf,
    /// Layout of --data [default: detected].
    #[arg(long, value_enum)]
    pub format: Option<cras::data::Format>,
    /// Classes to use, comma-separated, in this order (default: every subfolder, sorted).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Output model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Training epochs [default: 100 multi, 640 single].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch [default: 32 multi, 8 single].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Synthesis noise sigma, or "auto[:F]" (sigma = F * median center distance / sqrt(dims), F default 0.5; for random backbones).
    #[arg(long, default_value = default_noise())]
    pub noise: String,
    /// Mixing factor of the distance-guided noise scale (0 = fixed noise).
    #[arg(long, default_value_t = paper().fit.k)]
    pub k: f64,
    /// Random seed (initialisation, shuffling, noise, hold-out split).
    #[arg(long, default_value_t = paper().fit.seed)]
    pub seed: u64,
    /// multi: one model for all classes; single: one class (pass exactly one with --classes).
    #[arg(long, value_enum, default_value_t = paper().setting)]
    pub setting: Setting,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Adaptor learning rate (AdamW).
    #[arg(long, default_value_t = paper().fit.lr_adaptor)]
    pub lr: f64,
    /// Discriminator learning rate (Adam with L2 decay 1e-5) [default: twice --lr, as the
    /// reference's --lr sets it: 2e-4 at the default --lr].
    #[arg(long)]
    pub lr_discriminator: Option<f64>,
    /// Re-estimate BatchNorm statistics on this many training images (random backbones; 0 = off).
    #[arg(long, default_value_t = 0)]
    pub recalibrate_bn: usize,
    /// Share of each class's train/good images held out to calibrate thresholds (training and
    /// the centers see the rest). 0 = the paper's protocol: every normal image trains, and the
    /// model stores no thresholds: scores only, until --threshold is given at run time.
    /// Classes with validation images (MVTec AD 2, LOCO, `val` rows) calibrate on those
    /// instead and keep every training image.
    #[arg(long, default_value_t = paper().holdout)]
    pub holdout: f64,
    /// Threshold = this quantile of the held-out normal scores.
    #[arg(long, default_value_t = paper().threshold_quantile)]
    pub threshold_quantile: f64,
    /// Memory budget of the feature cache in MiB (beyond it: a memory-mapped file).
    #[arg(long, default_value_t = paper().cache_budget_mb)]
    pub cache_mb: u64,
    /// Store cached descriptors in f16 (half the memory; not bit-identical training).
    #[arg(long)]
    pub cache_f16: bool,
    /// Masks (for --eval-every, and stored for `cras eval`): by default every nonzero pixel of the
    /// file is defective, binarised before resizing, >= 0.5 after; with this flag the
    /// reference's way: the raw grey mask is resized and only exact 1.0 (255) counts.
    #[arg(long)]
    pub reference_masks: bool,
    /// Continue an interrupted run from <out>.partial.
    #[arg(long)]
    pub resume: bool,
    /// JSONL log of per-step and per-epoch figures (an epoch's line adds the true / synthetic
    /// score quantiles and the share of patches that changed center) [default: <out>.log.jsonl].
    #[arg(long)]
    pub train_log: Option<PathBuf>,
    /// Ablation: feed [f; 0] instead of [f; f - R] to the discriminator.
    #[arg(long)]
    pub no_residual: bool,
    /// Ablation: use the center at the patch's own position instead of searching all positions.
    #[arg(long)]
    pub no_center_search: bool,
    /// Evaluate on the TEST split every N epochs and log image/pixel AUROC (the reference
    /// protocol; 0 = never, our default: no test data during training).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Keep the epoch with the best test I-AUROC + P-AUROC (needs --eval-every). The model and
    /// every report made from it are marked "test-selected (optimistic)".
    #[arg(long)]
    pub select_on_test: bool,
    /// Score the test-set evaluations as the reference does (with --eval-every): each class's
    /// test images in order, in groups of --batch-size, every image taking its group's majority
    /// class (batch vote). With --select-on-test and --reference-masks: the reference's selection.
    #[arg(long)]
    pub select_batch_vote: bool,
    /// Stop after this epoch, keeping <out>.partial; continue later with --resume.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// High resolution: cut each image into overlapping tiles of SIZE working pixels, each
    /// resized to --image-size and scored on its own (--resize / --square do not apply); maps
    /// are blended, the image score is the tiles' maximum. Stored in the model: every command
    /// tiles as training did.
    #[arg(long, value_name = "SIZE")]
    pub tile: Option<u32>,
    /// Overlap of neighbouring tiles in working pixels [default: SIZE / 8].
    #[arg(long, value_name = "PX", requires = "tile")]
    pub tile_overlap: Option<u32>,
    /// Side of the square every image is resized to before tiling [default: the first training
    /// image's longer side, i.e. native resolution].
    #[arg(long, value_name = "PX", requires = "tile")]
    pub tile_image_size: Option<u32>,
    /// Center bank of a tiled model: one center map per class shared by every tile (shared), or
    /// one per class and tile position (per-tile: T times the memory; for parts always framed
    /// alike).
    #[arg(long, value_enum, default_value = "shared", requires = "tile")]
    pub tile_centers: TileCenters,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// How a tiled model's center bank treats tile position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TileCenters {
    Shared,
    PerTile,
}

/// The default `--noise`: the paper's fixed sigma, as typed.
fn default_noise() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| match paper().noise {
        NoiseScale::Fixed(sigma) => sigma.to_string(),
        NoiseScale::Auto(f) => format!("auto:{f}"),
    })
}

/// Parses `--noise`.
pub fn parse_noise(s: &str) -> anyhow::Result<NoiseScale> {
    if let Some(rest) = s.strip_prefix("auto") {
        let f = match rest.strip_prefix(':') {
            Some(x) => x.parse::<f64>().map_err(|_| {
                anyhow::anyhow!("invalid --noise {s:?}: expected auto:F with a number F")
            })?,
            None if rest.is_empty() => 0.5,
            None => anyhow::bail!("invalid --noise {s:?}: expected a number, auto or auto:F"),
        };
        return Ok(NoiseScale::Auto(f));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --noise {s:?}: expected a number, auto or auto:F"))?;
    anyhow::ensure!(
        v > 0.0 && v.is_finite(),
        "invalid --noise {v}: must be positive"
    );
    Ok(NoiseScale::Fixed(v))
}

impl TrainArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let single = self.setting == Setting::Single;
        let multi = paper().fit;
        let fit = FitConfig {
            epochs: self
                .epochs
                .unwrap_or(if single { 640 } else { multi.epochs }),
            batch_size: self
                .batch_size
                .unwrap_or(if single { 8 } else { multi.batch_size }),
            lr_adaptor: self.lr,
            lr_discriminator: self.lr_discriminator.unwrap_or(2.0 * self.lr),
            k: self.k,
            seed: self.seed,
            ablation: Ablation {
                residual: !self.no_residual,
                center_search: !self.no_center_search,
            },
            ..FitConfig::default()
        };
        anyhow::ensure!(
            (0.0..1.0).contains(&self.holdout),
            "invalid --holdout {}: must be in [0, 1)",
            self.holdout
        );
        Ok(TrainConfig {
            data: self.data.clone(),
            format: self.format,
            classes: self.classes.clone(),
            setting: self.setting,
            backbone: self.features.network.backbone,
            weights: self.features.weights.clone(),
            bn_stats: self.features.bn_stats,
            recalibrate_bn: self.recalibrate_bn,
            preprocess: Preprocess {
                mask_mode: if self.reference_masks {
                    MaskMode::ReferenceTruncate
                } else {
                    MaskMode::Binarize
                },
                tiling: self.tile.map(|tile| cras::data::Tiling {
                    image_size: self.tile_image_size.unwrap_or(0),
                    tile,
                    overlap: self
                        .tile_overlap
                        .unwrap_or_else(|| cras::data::Tiling::default_overlap(tile)),
                    centers_per_tile: self.tile_centers == TileCenters::PerTile,
                }),
                // Tiles are resized straight to the input square: --resize / --square do not apply.
                ..preprocess_from_flags(
                    self.features.network.image_size,
                    self.features.resize,
                    self.features.square || self.tile.is_some(),
                )
            },
            descriptor: self.features.network.descriptor(),
            fit,
            noise: parse_noise(&self.noise)?,
            holdout: self.holdout,
            threshold_quantile: self.threshold_quantile,
            cache_budget_mb: self.cache_mb,
            cache_precision: if self.cache_f16 {
                CachePrecision::F16
            } else {
                CachePrecision::F32
            },
            device: self.device.device.clone(),
            progress: !self.quiet,
            eval_every: self.eval_every,
            select_on_test: self.select_on_test,
            select_batch_vote: self.select_batch_vote,
            stop_after: self.stop_after,
        })
    }
}

/// A file whose write errors name it (a full disk under the training log says which file).
struct NamedWriter<'a> {
    path: &'a std::path::Path,
    file: std::fs::File,
}

impl std::io::Write for NamedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf).map_err(|e| self.named(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| self.named(e))
    }
}

impl NamedWriter<'_> {
    fn named(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

/// Runs `cras train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = a.config()?;
    let log_path = a.train_log.clone().unwrap_or_else(|| {
        let mut s = a.out.as_os_str().to_owned();
        s.push(".log.jsonl");
        PathBuf::from(s)
    });
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(a.resume)
        .write(true)
        .truncate(!a.resume)
        .open(&log_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", log_path.display()))?;
    let mut log = NamedWriter {
        path: &log_path,
        file,
    };
    let summary = train(&cfg, &a.out, a.resume, Some(&mut log))?;
    let m = &summary.meta;
    if m.partial {
        println!(
            "stopped after epoch {} of {}: partial checkpoint {} (continue with --resume)",
            m.training.epochs_done,
            cfg.fit.epochs,
            summary.model.display()
        );
        return Ok(());
    }
    println!("model written to {}", summary.model.display());
    println!(
        "  classes: {}  images: {}  epochs: {}  final loss: {}  time: {:.1}s",
        m.classes.join(", "),
        m.training.images,
        m.training.epochs_done,
        m.training
            .final_loss
            .map(|l| format!("{l:.4}"))
            .unwrap_or("-".into()),
        m.training.seconds
    );
    if let Some(t) = &m.thresholds {
        println!("  thresholds ({}): global {:.4}", t.method, t.global);
    }
    if m.random_backbone() {
        println!("  NOTE: random backbone (no --weights). Real inspection needs ImageNet weights: `cras weights fetch {}`.", m.backbone.arch);
    }
    println!("  training log: {}", log_path.display());
    Ok(())
}

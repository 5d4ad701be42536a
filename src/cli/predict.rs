//! `cras predict`: one JSON line per image, a [`PredictionRecord`] (path, class, score,
//! decision, threshold, milliseconds; `path_bytes`, the path's raw bytes, when it is not UTF-8;
//! `heatmap` with `--heatmaps`), or `{"path", "error"}` (and `path_bytes` when the path is not
//! UTF-8) for a path or image that cannot be read;
//! optional heatmap PNGs. Exit code 0 even when defects are found, 1 when anything could not be
//! read. Folders are searched with [`super::images::collect_images`].
//! `--manifest LIST --shard K/N --out DIR`: batch scoring of a list into a resumable JSONL
//! file per shard (`super::shard`).

use std::path::{Path, PathBuf};

use cras::data::decode;
use cras::infer::{stated_class, Predictor};
use cras::infer::{PredictionRecord, ThresholdChoice};
use cras::report::heatmap::{gray_map_png, write_gray_png};

use super::args::{DeviceArg, EngineArgs};
use super::images::{collect_images, Collected};

/// Score image files or folders with a trained model.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Model file written by `cras train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Image files or folders (searched recursively).
    #[arg(required_unless_present = "manifest")]
    pub paths: Vec<PathBuf>,
    /// The images' class is known: skip the global match.
    #[arg(long)]
    pub class: Option<String>,
    /// Decision threshold (overrides the stored one).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Instead of the stored quantile, set each class's threshold so that at most this share of
    /// the held-out normal images would be flagged (a run-time sensitivity, e.g. 0.05).
    #[arg(long, conflicts_with = "threshold")]
    pub false_alarm_rate: Option<f64>,
    /// Write each image's anomaly map as a grayscale PNG into this folder.
    #[arg(long)]
    pub heatmaps: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// Heatmap file names unique within a run: `<stem>_map.png`, then `<stem>_2_map.png`, ... for
/// images of the same stem in different folders.
#[derive(Default)]
struct MapNames(std::collections::HashSet<String>);

impl MapNames {
    fn name(&mut self, image: &Path) -> String {
        let stem = image
            .file_stem()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let mut name = format!("{stem}_map.png");
        let mut n = 1;
        while !self.0.insert(name.clone()) {
            n += 1;
            name = format!("{stem}_{n}_map.png");
        }
        name
    }
}

/// The raw bytes of a path that is not UTF-8 (its `path` field is then lossy, with U+FFFD),
/// so that a line can still be mapped to its file.
#[cfg(unix)]
pub(super) fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
pub(super) fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_encoded_bytes().to_vec()
}

/// The line of a path that could not be read or decoded: `path`, `path_bytes` when the path is
/// not UTF-8 (as on a scored line, so that the line maps back to its file), `error`.
pub(super) fn error_record(path: &Path, error: &str) -> serde_json::Value {
    let mut line = serde_json::json!({"path": path.display().to_string(), "error": error});
    if path.to_str().is_none() {
        line["path_bytes"] = path_bytes(path).into();
    }
    line
}

fn error_line(path: &Path, error: &str) -> String {
    error_record(path, error).to_string()
}

/// Runs `cras predict`.
pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    if a.shard.manifest.is_some() {
        return super::shard::run(&a);
    }
    let device = a.device.select()?;
    let predictor = Predictor::load_with(&a.model, &device, &a.engine.options())?;
    let Collected { files, errors } = collect_images(&a.paths);
    for (p, e) in &errors {
        println!("{}", error_line(p, e));
    }
    if let Some(dir) = &a.heatmaps {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let mut run = Run {
        args: &a,
        predictor: &predictor,
        thresholds: ThresholdChoice::from_options(
            &predictor.meta,
            a.threshold,
            a.false_alarm_rate,
        )?,
        map_names: MapNames::default(),
        failures: errors.len(),
    };
    for chunk in files.chunks(a.batch_size.max(1)) {
        run.batch(chunk)?;
    }
    if run.failures > 0 {
        anyhow::bail!(
            "{} of {} images or paths could not be read (see the error lines above)",
            run.failures,
            files.len() + errors.len()
        );
    }
    Ok(())
}

/// One `cras predict` run: what every batch needs.
struct Run<'a> {
    args: &'a PredictArgs,
    predictor: &'a Predictor,
    thresholds: ThresholdChoice,
    map_names: MapNames,
    /// Paths and images that could not be read so far.
    failures: usize,
}

impl Run<'_> {
    /// Decodes, scores and prints one batch of files (an error line per unreadable one).
    fn batch(&mut self, chunk: &[PathBuf]) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut images = Vec::new();
        let mut ok_paths = Vec::new();
        for p in chunk {
            match decode::decode_rgb(p) {
                Ok(im) => {
                    images.push(im);
                    ok_paths.push(p);
                }
                Err(e) => {
                    self.failures += 1;
                    println!("{}", error_line(p, &e.to_string()));
                }
            }
        }
        if images.is_empty() {
            return Ok(());
        }
        let (predictor, thresholds) = (self.predictor, &self.thresholds);
        let choice = stated_class(&predictor.meta, self.args.class.as_deref(), images.len())?;
        let threshold_of = |_: usize, k: usize| thresholds.for_class(&predictor.meta, k);
        let preds = predictor.predict_images_at(&images, &choice, &threshold_of)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;
        for (p, path) in preds.iter().zip(ok_paths) {
            let threshold = thresholds.for_class(&predictor.meta, p.class);
            let mut record = PredictionRecord::decided(&predictor.meta.classes, p, threshold, ms);
            record.path = Some(path.display().to_string());
            if path.to_str().is_none() {
                record.path_bytes = Some(path_bytes(path));
            }
            if let Some(dir) = &self.args.heatmaps {
                let s = predictor.map_size() as u32;
                let out = dir.join(self.map_names.name(path));
                write_gray_png(
                    &out,
                    &gray_map_png(&predictor.anomaly_map(p), s, s, 0.0, 1.0),
                )?;
                record.heatmap = Some(out.display().to_string());
            }
            println!("{}", serde_json::to_string(&record)?);
        }
        Ok(())
    }
}

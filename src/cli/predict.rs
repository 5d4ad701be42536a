//! `cras predict`: one JSON line per image (path, class, score, decision, threshold,
//! milliseconds; `path_bytes`, the path's raw bytes, when it is not UTF-8), optional heatmap
//! PNGs. Exit code 0 even when defects are found. `--manifest LIST --shard K/N --out DIR`:
//! batch scoring of a list into a resumable JSONL file per shard (`super::shard`).

use std::path::{Path, PathBuf};

use cras::data::decode;
use cras::infer::{decide, ThresholdChoice};
use cras::infer::{stated_class, Predictor};
use cras::report::heatmap::{gray_map_png, write_gray_png};

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
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub engine: super::engine_args::EngineArgs,
    #[command(flatten)]
    pub shard: super::shard::ShardArgs,
}

/// The image files of the arguments, and the arguments that could not be read.
pub struct Collected {
    /// Files as given, folders expanded into their image files (sorted per folder).
    pub files: Vec<PathBuf>,
    /// (path, what is wrong) for each argument or folder that could not be read.
    pub errors: Vec<(PathBuf, String)>,
}

/// Expands folders into their image files (sorted), keeps files as given. A missing path or an
/// unreadable folder is reported in [`Collected::errors`], never stops the others. Symbolic
/// links are followed, but each folder is walked once (by its canonical path), so link loops
/// end and a folder reached twice is listed once.
pub fn collect_images(paths: &[PathBuf]) -> Collected {
    let mut out = Collected {
        files: Vec::new(),
        errors: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, &mut seen, &mut out.errors);
            found.sort();
            out.files.extend(found);
        } else if p.exists() {
            out.files.push(p.clone());
        } else {
            out.errors
                .push((p.clone(), "no such file or folder".to_string()));
        }
    }
    out
}

fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
    errors: &mut Vec<(PathBuf, String)>,
) {
    match std::fs::canonicalize(dir) {
        Ok(real) => {
            if !seen.insert(real) {
                return;
            }
        }
        Err(e) => return errors.push((dir.to_path_buf(), e.to_string())),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return errors.push((dir.to_path_buf(), e.to_string())),
    };
    for e in entries {
        let p = match e {
            Ok(e) => e.path(),
            Err(e) => {
                errors.push((dir.to_path_buf(), e.to_string()));
                continue;
            }
        };
        if p.is_dir() {
            walk(&p, out, seen, errors);
        } else if is_image(&p) {
            out.push(p);
        }
    }
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

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff")
    )
}

/// The raw bytes of a path that is not UTF-8 (its `path` field is then lossy, with U+FFFD),
/// so that a line can still be mapped to its file.
#[cfg(unix)]
pub(super) fn path_bytes(p: &Path) -> serde_json::Value {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec().into()
}

#[cfg(not(unix))]
pub(super) fn path_bytes(p: &Path) -> serde_json::Value {
    p.as_os_str().as_encoded_bytes().to_vec().into()
}

/// Runs `cras predict`.
pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    if a.shard.manifest.is_some() {
        return super::shard::run(&a);
    }
    let device = cras::device::select(&a.device)?;
    let predictor = Predictor::load_with(&a.model, &device, &a.engine.options())?;
    let Collected { files, errors } = collect_images(&a.paths);
    let mut failures = errors.len();
    for (p, e) in &errors {
        println!(
            "{}",
            serde_json::json!({"path": p.display().to_string(), "error": e})
        );
    }
    let mut map_names = MapNames::default();
    if let Some(dir) = &a.heatmaps {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let thresholds =
        ThresholdChoice::from_options(&predictor.meta, a.threshold, a.false_alarm_rate)?;
    let s = predictor.map_size() as u32;
    for chunk in files.chunks(a.batch_size.max(1)) {
        let started = std::time::Instant::now();
        let mut images = Vec::new();
        let mut ok_paths = Vec::new();
        for p in chunk {
            match decode::decode_rgb(p) {
                Ok(im) => {
                    images.push(im);
                    ok_paths.push(p.clone());
                }
                Err(e) => {
                    failures += 1;
                    println!(
                        "{}",
                        serde_json::json!({"path": p.display().to_string(), "error": e.to_string()})
                    );
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        let choice = stated_class(&predictor.meta, a.class.as_deref(), images.len())?;
        let threshold_of = |_: usize, k: usize| thresholds.for_class(&predictor.meta, k);
        let preds = predictor.predict_images_at(&images, &choice, &threshold_of)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;
        for (p, path) in preds.iter().zip(&ok_paths) {
            let threshold = thresholds.for_class(&predictor.meta, p.class);
            let decision = decide(p.score, threshold);
            let mut line = serde_json::json!({
                "path": path.display().to_string(),
                "class": predictor.meta.classes[p.class],
                "class_similarity": p.class_similarity,
                "score": p.score,
                "threshold": threshold,
                "is_anomalous": decision.is_anomalous(),
                "decision": decision.as_str(),
                "ms": (ms * 1000.0).round() / 1000.0,
            });
            if let Some(dir) = &a.heatmaps {
                let map = predictor.anomaly_map(p);
                let out = dir.join(map_names.name(path));
                write_gray_png(&out, &gray_map_png(&map, s, s, 0.0, 1.0))?;
                line["heatmap"] = out.display().to_string().into();
            }
            if path.to_str().is_none() {
                line["path_bytes"] = path_bytes(path);
            }
            println!("{line}");
        }
    }
    if failures > 0 {
        anyhow::bail!(
            "{failures} of {} images or paths could not be read (see the error lines above)",
            files.len() + errors.len()
        );
    }
    Ok(())
}

//! `cras predict --manifest LIST [--shard K/N] --out DIR`: scores the rows of a list (see
//! `cras::data::image_list`) that belong to shard K of N (`cras::infer::shard`: rows `i` with
//! `i % N == K`) and writes their JSON lines, the lines `cras predict` prints plus `row` (the
//! list's row index), to `DIR/shard-K-of-N.jsonl`: through a `.partial` file flushed every
//! `--checkpoint-every` rows, resumed after an interruption, renamed into place only when every
//! row of the shard has its line. The spec, the list, the classes and the folder are checked
//! before any image is scored. Exit code 1 when a row could not be scored (its line holds the
//! error; a rerun retries those rows only).

use std::path::{Path, PathBuf};

use cras::data::decode;
use cras::data::image_list::{read_image_list, ListedImage};
use cras::infer::shard::{ShardOutput, ShardSpec};
use cras::infer::{stated_class, Predictor};
use cras::infer::{ClassChoice, PredictionRecord, ThresholdChoice};

use super::predict::PredictArgs;

/// The batch-scoring flags of `cras predict`.
#[derive(clap::Args, Debug)]
pub struct ShardArgs {
    /// Score the images listed in this file instead of PATHs: a dataset manifest (.csv or
    /// .jsonl, as `cras data manifest` writes), a one-column CSV with the header `image`, or a
    /// text file with one path per line. The lines go to --out.
    #[arg(long, value_name = "LIST", conflicts_with_all = ["paths", "heatmaps"], requires = "out")]
    pub manifest: Option<PathBuf>,
    /// Score only shard K of N: the list's rows i (0-based) with i % N == K. In a Kubernetes
    /// Indexed Job: --shard $(JOB_COMPLETION_INDEX)/N.
    #[arg(
        long,
        value_name = "K/N",
        default_value = "0/1",
        requires = "manifest",
        conflicts_with = "paths"
    )]
    pub shard: String,
    /// Folder of the shard's output, DIR/shard-K-of-N.jsonl (created).
    #[arg(
        long,
        value_name = "DIR",
        requires = "manifest",
        conflicts_with = "paths"
    )]
    pub out: Option<PathBuf>,
    /// State each row's class from the manifest's class column (skips the global match; the
    /// default scores as `cras predict` does, by global match). Needs a dataset manifest.
    #[arg(long, requires = "manifest", conflicts_with_all = ["paths", "class"])]
    pub class_from_manifest: bool,
    /// Flush the partial output to disk every this many rows.
    #[arg(
        long,
        value_name = "M",
        default_value_t = 64,
        requires = "manifest",
        conflicts_with = "paths"
    )]
    pub checkpoint_every: usize,
}

/// The class index of every row (`--class-from-manifest`), checked against the model.
fn row_classes(
    predictor: &Predictor,
    list: &Path,
    rows: &[ListedImage],
) -> anyhow::Result<Vec<usize>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let Some(c) = &r.class else {
                anyhow::bail!(
                    "{}: --class-from-manifest needs a dataset manifest with a class column; \
                     this list has none",
                    list.display()
                );
            };
            predictor
                .meta
                .class_index(c)
                .map_err(|e| anyhow::anyhow!("{}: row {i}: {e}", list.display()))
        })
        .collect()
}

/// Runs `cras predict --manifest`.
pub fn run(a: &PredictArgs) -> anyhow::Result<()> {
    let s = &a.shard;
    let (Some(list_path), Some(out_dir)) = (&s.manifest, &s.out) else {
        anyhow::bail!("--manifest LIST needs --out DIR");
    };
    let spec: ShardSpec = s.shard.parse()?;
    let list = read_image_list(list_path)?;
    let device = a.device.select()?;
    let predictor = Predictor::load_with(&a.model, &device, &a.engine.options())?;
    let classes = if s.class_from_manifest {
        Some(row_classes(&predictor, list_path, &list)?)
    } else {
        stated_class(&predictor.meta, a.class.as_deref(), 0)?;
        None
    };
    let thresholds =
        ThresholdChoice::from_options(&predictor.meta, a.threshold, a.false_alarm_rate)?;
    let rows: Vec<(usize, String)> = spec
        .rows(list.len())
        .map(|i| (i, list[i].image.display().to_string()))
        .collect();
    let mut out = ShardOutput::open(out_dir, spec, &rows, s.checkpoint_every)?;
    let todo: Vec<usize> = rows
        .iter()
        .map(|r| r.0)
        .filter(|&r| !out.is_done(r))
        .collect();
    let scorer = Scorer {
        predictor: &predictor,
        thresholds: &thresholds,
        class: a.class.as_deref(),
        classes: classes.as_deref(),
    };
    for chunk in todo.chunks(a.batch_size.max(1)) {
        scorer.score(&list, chunk, &mut out)?;
    }
    let resumed = out.resumed();
    let done = out.finish(&rows)?;
    eprintln!(
        "shard {}/{}: {} rows of {} ({resumed} kept from an earlier run, {} scored now, {} failed) -> {}",
        spec.index,
        spec.count,
        done.lines,
        list.len(),
        todo.len(),
        done.failed,
        done.path.display()
    );
    if done.failed > 0 {
        anyhow::bail!(
            "{} of the shard's {} rows could not be scored (their lines hold the error); a rerun \
             retries them only",
            done.failed,
            done.lines
        );
    }
    Ok(())
}

/// Scores rows of a list into a shard's output.
struct Scorer<'a> {
    predictor: &'a Predictor,
    thresholds: &'a ThresholdChoice,
    class: Option<&'a str>,
    /// Each row's stated class (`--class-from-manifest`).
    classes: Option<&'a [usize]>,
}

impl Scorer<'_> {
    /// Decodes and scores `rows` of `list` as one batch and appends their lines (an error line
    /// for each image that cannot be decoded).
    fn score(
        &self,
        list: &[ListedImage],
        rows: &[usize],
        out: &mut ShardOutput,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut images = Vec::new();
        let mut ok_rows = Vec::new();
        for &r in rows {
            let path = &list[r].image;
            match decode::decode_rgb(path) {
                Ok(im) => {
                    images.push(im);
                    ok_rows.push(r);
                }
                Err(e) => {
                    let mut line = super::predict::error_record(path, &e.to_string());
                    line["row"] = r.into();
                    out.append(r, &line)?;
                }
            }
        }
        if images.is_empty() {
            return Ok(());
        }
        let meta = &self.predictor.meta;
        let choice = match self.classes {
            Some(c) => ClassChoice::Stated(ok_rows.iter().map(|&r| c[r]).collect()),
            None => stated_class(meta, self.class, images.len())?,
        };
        let threshold_of = |_: usize, k: usize| self.thresholds.for_class(meta, k);
        let preds = self
            .predictor
            .predict_images_at(&images, &choice, &threshold_of)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0 / images.len() as f64;
        for (p, &r) in preds.iter().zip(&ok_rows) {
            let path: &PathBuf = &list[r].image;
            let threshold = self.thresholds.for_class(meta, p.class);
            let mut record = PredictionRecord::decided(&meta.classes, p, threshold, ms);
            record.path = Some(path.display().to_string());
            if path.to_str().is_none() {
                record.path_bytes = Some(super::predict::path_bytes(path));
            }
            // The record `cras predict` prints, plus the row of the list it scores.
            let mut line = serde_json::to_value(&record)?;
            line["row"] = r.into();
            out.append(r, &line)?;
        }
        Ok(())
    }
}

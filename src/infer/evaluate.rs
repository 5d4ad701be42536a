//! Evaluation of a [`Predictor`] on a dataset's test split (spec sections 2-3), in two parts:
//! [`scoring_pass`] scores every test image once ([`ScoringPass`]), [`write_report`] turns the
//! pass into metrics and files.
//!
//! Per class (in the model's order, restricted to the classes the dataset holds): every test
//! image is scored (class by global match unless stated), its anomaly map [S, S] and binarised
//! ground-truth mask [S, S] go into an [`EvalAccumulator`]; metrics per class, their mean, and
//! pooled over all classes; routing accuracy (matched vs true class); precision/recall/F1 at
//! the stored (or overriding) threshold; ROC/PR curves (SVG) and a heatmap gallery (HTML).
//! An image with several masks (MVTec LOCO) is scored against their union. A class with a
//! defect image that has no mask gets image metrics only: its pixel metrics (and the pooled
//! ones) are `null`, and `config.pixel_metrics_null` in metrics.json (and report.md) says why.

use std::path::{Path, PathBuf};

use crate::data::{decode, layouts, loader, Dataset, Format, MaskMode, Preprocess, Splits};
use crate::metrics::{ranking, EvalAccumulator, MetricSet};
use crate::report::curves::{line_plot_svg, pr_points, roc_points, Curve};
use crate::report::gallery::{write_gallery_html, GalleryEntry};
use crate::report::heatmap::{panel, write_png};
use crate::report::{eval_report, ClassReport, EvalReport, ThresholdReport};
use crate::{Error, Result};

use super::decision::{decide, Decision, ThresholdChoice};
use super::predictor::{ClassChoice, Predictor};

/// Thresholds of the reference's `compute_pro` (its `num_th`).
pub const REFERENCE_PRO_THRESHOLDS: usize = 200;

/// Options of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Restrict to these classes (None: every model class the dataset holds).
    pub classes: Option<Vec<String>>,
    /// Layout of the dataset (None: detected).
    pub format: Option<Format>,
    /// Align with the true class instead of the matched one.
    pub class_given: bool,
    /// The reference's batch-vote class assignment (parity only).
    pub batch_vote: bool,
    /// With `batch_vote`: each class's test images, in order, are voted on in groups of this
    /// many (the reference votes over its test batch: 32 by default).
    pub vote_group: usize,
    /// How AUPRO is computed.
    pub pro: ProMode,
    /// Side of the square maps and masks the pixel metrics are computed on (None: the model's
    /// map side, [`Predictor::map_size`]). Compares models of different input sizes (e.g. a
    /// tiled model and a downscaling one) on the same pixels.
    pub map_size: Option<usize>,
    /// Mask handling for this evaluation (None: the model's, as trained).
    pub mask_mode: Option<MaskMode>,
    /// Override every stored threshold.
    pub threshold: Option<f32>,
    pub batch_size: usize,
    /// Gallery panels per class (defective first, then good); 0 = no gallery.
    pub gallery_per_class: usize,
    pub fpr_limit: f64,
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            classes: None,
            format: None,
            class_given: false,
            batch_vote: false,
            vote_group: 32,
            pro: ProMode::Standard,
            map_size: None,
            mask_mode: None,
            threshold: None,
            batch_size: 16,
            gallery_per_class: 8,
            fpr_limit: 0.3,
            progress: true,
        }
    }
}

/// Which PRO figure fills the reports' AUPRO column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProMode {
    /// Exact per-region overlap integrated to the FPR limit, divided by it (our default).
    #[default]
    Standard,
    /// The reference's `compute_pro` ([`crate::metrics::pro::aupro_reference`], 200
    /// thresholds, dilated predictions, rescaled FPR axis): for parity with published figures.
    Reference,
}

/// A gallery panel chosen during the scoring pass.
pub struct GalleryItem {
    entry: GalleryEntry,
    image: image::RgbImage,
    mask: Option<Vec<u8>>,
    map: Vec<f32>,
}

/// One scored test image (everything but its map, which went into the accumulator).
pub struct ImageRecord {
    pub path: PathBuf,
    pub defect: String,
    pub anomalous: bool,
    /// Class index of the global match.
    pub matched: usize,
    /// Class index the image was aligned with (the match, the stated or the voted class).
    pub class: usize,
    pub score: f32,
    /// The threshold in force for the image's class, if any.
    pub threshold: Option<f32>,
    pub decision: Decision,
}

/// The scoring pass's result for one class.
pub struct ClassScores {
    pub name: String,
    /// The class's index in the model.
    pub index: usize,
    pub n_train: usize,
    /// Scores, labels, maps and masks of every test image, for the metrics.
    pub acc: EvalAccumulator,
    /// One record per test image, in the dataset's order.
    pub images: Vec<ImageRecord>,
    /// Defect images without a mask (their pixel metrics cannot be computed).
    pub unmasked_defects: usize,
}

/// The scoring pass over a test split: per class, every image scored once.
pub struct ScoringPass {
    pub classes: Vec<ClassScores>,
    /// Side of the maps and masks in the accumulators.
    pub map_size: usize,
    /// Panels chosen for the gallery (defective first, then good, per class).
    pub gallery: Vec<GalleryItem>,
    pub seconds: f64,
}

/// Evaluates `predictor` on the test split under `data`, writes every report file into `out`
/// and returns the report: [`scoring_pass`] then [`write_report`].
pub fn evaluate(
    predictor: &Predictor,
    model_path: &Path,
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let meta = &predictor.meta;
    let wanted: Vec<String> = match &opts.classes {
        Some(c) => c.clone(),
        None => meta.classes.clone(),
    };
    for c in &wanted {
        meta.class_index(c)?;
    }
    let ds: Dataset = layouts::load_splits(data, opts.format, Some(&wanted), Splits::Test)?;
    let pass = scoring_pass(predictor, &ds, opts)?;
    write_report(predictor, model_path, data, out, opts, pass)
}

fn progress_bar(show: bool, len: usize) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "evaluating [{bar:30}] {pos}/{len} images, ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Scores every test image of `ds` (classes in the dataset's order, each a class of the model)
/// with the class choice and thresholds of `opts`.
pub fn scoring_pass(
    predictor: &Predictor,
    ds: &Dataset,
    opts: &EvalOptions,
) -> Result<ScoringPass> {
    let started = std::time::Instant::now();
    let meta = &predictor.meta;
    let native = predictor.map_size();
    let s = opts.map_size.unwrap_or(native);
    let pre = &Preprocess {
        mask_mode: opts.mask_mode.unwrap_or(meta.preprocess.mask_mode),
        ..meta.preprocess.clone()
    };
    // Ground truth and gallery images under the geometry of the maps the metrics see.
    let truth = &pre.with_map_side(s as u32);
    let thresholds = ThresholdChoice::from_options(meta, opts.threshold, None)?;
    let total_images: usize = ds.classes.iter().map(|c| c.test.len()).sum();
    let bar = progress_bar(opts.progress, total_images);
    let mut classes = Vec::with_capacity(ds.classes.len());
    let mut gallery: Vec<GalleryItem> = Vec::new();
    for class in &ds.classes {
        let k = meta.class_index(&class.name)?;
        bar.set_message(class.name.clone());
        let threshold = thresholds.for_class(meta, k);
        let mut acc = EvalAccumulator::new(s);
        let mut images = Vec::with_capacity(class.test.len());
        let paths: Vec<PathBuf> = class.test.iter().map(|t| t.path.clone()).collect();
        let (mut shown_defect, mut shown_good) = (0usize, 0usize);
        // A vote covers exactly one batch, so batch-vote batches are the vote groups.
        // (A tiled model's batch counts its tiles: batch-size network inputs, at least one image.)
        let batch_size = if opts.batch_vote && !opts.class_given {
            opts.vote_group
        } else {
            pre.images_per_batch(opts.batch_size)
        };
        for batch in loader::batches(paths, pre.clone(), batch_size.max(1), false) {
            let batch = batch?;
            let t = batch.to_tensor(&predictor.device)?;
            let choice = if opts.class_given {
                ClassChoice::Stated(vec![k; batch.len()])
            } else if opts.batch_vote {
                ClassChoice::BatchVote
            } else {
                ClassChoice::Match
            };
            // The image is decided at its dataset class's threshold.
            for p in predictor.predict_batch_at(&t, &choice, &|_, _| threshold)? {
                let item = &class.test[images.len()];
                let mask = truth.load_masks(item.masks())?;
                let map = resized_map(predictor.anomaly_map(&p), native, s);
                let anomalous = item.is_anomalous();
                acc.push(p.score, anomalous, &map, mask.as_deref())?;
                images.push(ImageRecord {
                    path: item.path.clone(),
                    defect: item.defect.clone(),
                    anomalous,
                    matched: p.matched,
                    class: p.class,
                    score: p.score,
                    threshold,
                    decision: decide(p.score, threshold),
                });
                let (shown, quota) = if anomalous {
                    let q = opts.gallery_per_class - opts.gallery_per_class / 2;
                    (&mut shown_defect, q)
                } else {
                    (&mut shown_good, opts.gallery_per_class / 2)
                };
                if *shown < quota {
                    *shown += 1;
                    let file = format!(
                        "{}_{}_{}.png",
                        sanitize(&class.name),
                        sanitize(&item.defect),
                        images.len()
                    );
                    gallery.push(GalleryItem {
                        entry: GalleryEntry {
                            class: class.name.clone(),
                            defect: item.defect.clone(),
                            file,
                            source: item.path.display().to_string(),
                            score: p.score,
                            threshold,
                            matched_class: meta.classes.get(p.matched).cloned().unwrap_or_default(),
                        },
                        image: truth.resized_rgb(&decode::decode_rgb(&item.path)?),
                        mask,
                        map,
                    });
                }
                bar.inc(1);
            }
        }
        classes.push(ClassScores {
            name: class.name.clone(),
            index: k,
            n_train: class.train.len(),
            acc,
            images,
            unmasked_defects: class
                .test
                .iter()
                .filter(|t| t.is_anomalous() && t.mask.is_none())
                .count(),
        });
    }
    bar.finish_and_clear();
    Ok(ScoringPass {
        classes,
        map_size: s,
        gallery,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A `[from, from]` map at `[to, to]` (bilinear; unchanged when the sides agree).
fn resized_map(map: Vec<f32>, from: usize, to: usize) -> Vec<f32> {
    if from == to {
        map
    } else {
        super::anomaly_map::upsample_bilinear(&map, from, from, to, to)
    }
}

/// Computes the metrics of a scoring pass and writes every report file into `out`:
/// metrics.json / .csv, report.md, scores.csv, image ROC / PR curves and the gallery.
pub fn write_report(
    predictor: &Predictor,
    model_path: &Path,
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
    pass: ScoringPass,
) -> Result<EvalReport> {
    let meta = &predictor.meta;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let source = if opts.threshold.is_some() {
        "override"
    } else {
        "stored-class"
    };
    let mut class_reports = Vec::new();
    let mut per_class_sets = Vec::new();
    let mut pooled = EvalAccumulator::new(pass.map_size);
    let mut image_curves = (Vec::new(), Vec::new());
    let mut score_rows: Vec<Vec<String>> = Vec::new();
    let mut all: Vec<&ImageRecord> = Vec::new();
    let metrics_of = |acc: &EvalAccumulator| {
        let mut set = acc.compute(opts.fpr_limit);
        if opts.pro == ProMode::Reference {
            set.aupro = acc.aupro_reference(REFERENCE_PRO_THRESHOLDS);
            set = set.with_mad();
        }
        set
    };
    let mut pixel_null = serde_json::Map::new();
    for c in &pass.classes {
        let mut set = metrics_of(&c.acc);
        if c.unmasked_defects > 0 {
            set = without_pixel_metrics(set);
            pixel_null.insert(
                c.name.clone(),
                format!(
                    "{} of its defect images have no ground-truth mask: image metrics only",
                    c.unmasked_defects
                )
                .into(),
            );
        }
        pooled.merge(&c.acc);
        let (scores, labels) = c.acc.image_scores();
        let routed = c.images.iter().filter(|r| r.matched == c.index).count();
        for r in &c.images {
            score_rows.push(vec![
                r.path.display().to_string(),
                c.name.clone(),
                r.defect.clone(),
                u8::from(r.anomalous).to_string(),
                meta.classes.get(r.matched).cloned().unwrap_or_default(),
                format!("{}", r.score),
                r.threshold.map(|t| format!("{t}")).unwrap_or_default(),
                r.decision.as_str().to_string(),
            ]);
        }
        all.extend(&c.images);
        image_curves.0.push(Curve {
            label: c.name.clone(),
            points: roc_points(scores, labels, 400),
        });
        image_curves.1.push(Curve {
            label: c.name.clone(),
            points: pr_points(scores, labels, 400),
        });
        let n = c.images.len();
        class_reports.push(ClassReport {
            name: c.name.clone(),
            n_train: c.n_train,
            n_test_good: labels.iter().filter(|l| !**l).count(),
            n_test_defect: labels.iter().filter(|l| **l).count(),
            metrics: set.clone(),
            routing_accuracy: (n > 0).then(|| routed as f64 / n as f64),
            at_threshold: c.images.first().and_then(|r| r.threshold).map(|t| {
                let mut r = threshold_report(&c.images, source);
                r.threshold = t;
                r
            }),
        });
        per_class_sets.push(set);
    }
    let mut pooled_set = metrics_of(&pooled);
    if !pixel_null.is_empty() {
        pooled_set = without_pixel_metrics(pooled_set);
    }
    let mean = MetricSet::mean_of(&per_class_sets);
    let total = all.len();
    let routed: usize = pass
        .classes
        .iter()
        .map(|c| c.images.iter().filter(|r| r.matched == c.index).count())
        .sum();
    // Pooled decision figures: each image judged at its own class's threshold.
    let at_threshold = (!all.is_empty() && all.iter().all(|r| r.threshold.is_some())).then(|| {
        let mut r = threshold_report(
            all.iter().copied(),
            if opts.threshold.is_some() {
                "override"
            } else {
                "stored-class (each image at its class's threshold)"
            },
        );
        r.threshold = opts
            .threshold
            .or(meta.thresholds.as_ref().map(|t| t.global))
            .unwrap_or(f32::NAN);
        r
    });
    let seconds = pass.seconds;
    let mut config = serde_json::json!({
            "map_size": pass.map_size,
            "data": data.display().to_string(),
            "class_choice": if opts.class_given { "stated" } else if opts.batch_vote { "batch-vote" } else { "global-match" },
            "vote_group": (opts.batch_vote && !opts.class_given).then_some(opts.vote_group),
            "pro": opts.pro,
            "threshold_override": opts.threshold,
            "fpr_limit": opts.fpr_limit,
            "preprocess": meta.preprocess,
            "mask_mode": opts.mask_mode.unwrap_or(meta.preprocess.mask_mode),
    });
    if !pixel_null.is_empty() {
        config[eval_report::PIXEL_METRICS_NULL] = pixel_null.into();
    }
    let report = EvalReport {
        format: eval_report::FORMAT_VERSION,
        tool: EvalReport::tool_name(),
        created_unix: EvalReport::now_unix(),
        model: serde_json::json!({
            "path": model_path.display().to_string(),
            "sha256": crate::backbone::weights::sha256_file(model_path).ok(),
            "classes": meta.classes,
            "backbone": meta.backbone,
            "dims": meta.descriptor.dims,
            "input_size": predictor.input_size(),
            "tiling": meta.preprocess.tiling,
            "training": meta.training,
            "thresholds": meta.thresholds.as_ref().map(|t| serde_json::json!({"global": t.global, "per_class": t.per_class, "method": t.method})),
        }),
        test_selected: meta.test_selected,
        random_backbone: meta.random_backbone(),
        config,
        classes: class_reports,
        mean,
        pooled: pooled_set,
        routing_accuracy: (total > 0).then(|| routed as f64 / total as f64),
        at_threshold,
        timing: serde_json::json!({"seconds": seconds, "images": total, "images_per_second": total as f64 / seconds.max(1e-9)}),
        images: total,
    };
    write_visuals(out, image_curves, &pooled, pass.gallery)?;
    let header: Vec<String> = [
        "path",
        "class",
        "defect",
        "anomalous",
        "matched_class",
        "score",
        "threshold",
        "decision",
    ]
    .map(String::from)
    .to_vec();
    crate::error::write_atomic(
        &out.join(eval_report::SCORES_CSV),
        crate::report::table::csv_table(&header, &score_rows).as_bytes(),
    )?;
    report.write_files(out)?;
    Ok(report)
}

/// Precision / recall / F1 of the decisions of `images` (each at its own threshold, by the
/// one decision rule); the caller sets the threshold shown.
fn threshold_report<'a>(
    images: impl IntoIterator<Item = &'a ImageRecord>,
    source: &str,
) -> ThresholdReport {
    let (predicted, labels): (Vec<bool>, Vec<bool>) = images
        .into_iter()
        .map(|r| (r.decision == Decision::Defect, r.anomalous))
        .unzip();
    let c = ranking::confusion(&predicted, &labels);
    ThresholdReport {
        threshold: f32::NAN,
        source: source.into(),
        precision: c.precision,
        recall: c.recall,
        f1: c.f1,
        tp: c.tp,
        fp: c.fp,
        tn: c.tn,
        fn_: c.fn_,
    }
}

/// `set` with its pixel metrics (and mAD) undefined.
fn without_pixel_metrics(set: MetricSet) -> MetricSet {
    MetricSet {
        pixel_auroc: None,
        pixel_ap: None,
        pixel_f1max: None,
        aupro: None,
        ..set
    }
    .with_mad()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_visuals(
    out: &Path,
    image_curves: (Vec<Curve>, Vec<Curve>),
    pooled: &EvalAccumulator,
    gallery: Vec<GalleryItem>,
) -> Result<()> {
    let (mut roc, mut pr) = image_curves;
    let (scores, labels) = pooled.image_scores();
    roc.push(Curve {
        label: "pooled".into(),
        points: roc_points(scores, labels, 400),
    });
    pr.push(Curve {
        label: "pooled".into(),
        points: pr_points(scores, labels, 400),
    });
    crate::error::write_atomic(
        &out.join(eval_report::ROC_IMAGE_SVG),
        line_plot_svg(
            "Image ROC",
            "false positive rate",
            "true positive rate",
            &roc,
            true,
        )
        .as_bytes(),
    )?;
    crate::error::write_atomic(
        &out.join(eval_report::PR_IMAGE_SVG),
        line_plot_svg("Image precision-recall", "recall", "precision", &pr, false).as_bytes(),
    )?;
    if !gallery.is_empty() {
        let dir = out.join("gallery");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // One colour scale for the whole gallery: from the lowest to the highest map value.
        let values = gallery.iter().flat_map(|g| g.map.iter().copied());
        let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let hi = hi.max(lo + 1e-6);
        let mut entries = Vec::new();
        for g in gallery {
            let p = panel(&g.image, g.mask.as_deref(), &g.map, lo, hi);
            write_png(&dir.join(&g.entry.file), &p)?;
            entries.push(g.entry);
        }
        write_gallery_html(
            &out.join(eval_report::GALLERY_INDEX),
            "cras evaluation: heatmaps",
            &entries,
        )?;
    }
    Ok(())
}

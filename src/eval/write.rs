//! The evaluation report built from a scoring pass and written to a folder.
//!
//! Input: a [`ScoringPass`] (per class: accumulator and image records with their decisions),
//! the predictor's metadata, the options. Output, in the folder: `metrics.json` / `.csv`,
//! `report.md` ([`EvalReport::write_files`]), `scores.csv` (one row per image), the image ROC /
//! PR curves (SVG) and the gallery; each part built by its own function below: metrics per
//! class ([`class_report`]), the pooled figures, the CSV rows ([`score_row`]), the curves, the
//! JSON configuration ([`config_json`]) and the model summary ([`model_json`]).

use std::path::Path;

use crate::infer::{Decision, Predictor};
use crate::metrics::{ranking, EvalAccumulator, MetricSet};
use crate::model::ModelMeta;
use crate::report::curves::{line_plot_svg, pr_points, roc_points, Curve};
use crate::report::gallery::write_gallery_html;
use crate::report::heatmap::{panel, write_png};
use crate::report::{eval_report, ClassReport, EvalReport, ThresholdReport};
use crate::{Error, Result};

use super::pass::{ClassScores, GalleryItem, ImageRecord, ScoringPass};
use super::EvalOptions;

/// Points kept per image ROC / PR curve.
const CURVE_POINTS: usize = 400;

/// The columns of scores.csv.
const SCORES_HEADER: [&str; 8] = [
    "path",
    "class",
    "defect",
    "anomalous",
    "matched_class",
    "score",
    "threshold",
    "decision",
];

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
    let mut class_reports = Vec::new();
    let mut per_class_sets = Vec::new();
    let mut pooled = EvalAccumulator::new(pass.map_size);
    let mut curves = ImageCurves::default();
    let mut pixel_null = serde_json::Map::new();
    for c in &pass.classes {
        if c.unmasked_defects > 0 {
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
        curves.push(&c.name, &c.acc);
        let report = class_report(c, opts);
        per_class_sets.push(report.metrics.clone());
        class_reports.push(report);
    }
    let mut pooled_set = opts.metrics_of(&pooled);
    if !pixel_null.is_empty() {
        pooled_set = without_pixel_metrics(pooled_set);
    }
    let all: Vec<&ImageRecord> = pass.classes.iter().flat_map(|c| &c.images).collect();
    let total = all.len();
    let routed: usize = pass.classes.iter().map(routed_images).sum();
    let mut config = config_json(meta, data, opts, pass.map_size);
    if !pixel_null.is_empty() {
        config[eval_report::PIXEL_METRICS_NULL] = pixel_null.into();
    }
    let seconds = pass.seconds;
    let report = EvalReport {
        format: eval_report::FORMAT_VERSION,
        tool: EvalReport::tool_name(),
        created_unix: EvalReport::now_unix(),
        model: model_json(predictor, model_path),
        test_selected: meta.test_selected,
        random_backbone: meta.random_backbone(),
        config,
        classes: class_reports,
        mean: MetricSet::mean_of(&per_class_sets),
        pooled: pooled_set,
        routing_accuracy: (total > 0).then(|| routed as f64 / total as f64),
        at_threshold: pooled_threshold_report(meta, opts, &all),
        timing: serde_json::json!({"seconds": seconds, "images": total, "images_per_second": total as f64 / seconds.max(1e-9)}),
        images: total,
    };
    write_visuals(out, curves, &pooled, pass.gallery)?;
    write_scores_csv(out, meta, &pass.classes)?;
    report.write_files(out)?;
    Ok(report)
}

/// The metrics and figures of one class: its metric set (image metrics only when a defect
/// image has no mask), counts, routing accuracy and the figures at its threshold.
fn class_report(c: &ClassScores, opts: &EvalOptions) -> ClassReport {
    let mut set = opts.metrics_of(&c.acc);
    if c.unmasked_defects > 0 {
        set = without_pixel_metrics(set);
    }
    let (_, labels) = c.acc.image_scores();
    let n = c.images.len();
    let source = if opts.threshold.is_some() {
        "override"
    } else {
        "stored-class"
    };
    ClassReport {
        name: c.name.clone(),
        n_train: c.n_train,
        n_test_good: labels.iter().filter(|l| !**l).count(),
        n_test_defect: labels.iter().filter(|l| **l).count(),
        metrics: set,
        routing_accuracy: (n > 0).then(|| routed_images(c) as f64 / n as f64),
        at_threshold: c.images.first().and_then(|r| r.threshold).map(|t| {
            let mut r = threshold_report(&c.images, source);
            r.threshold = t;
            r
        }),
    }
}

/// Test images of a class matched to it.
fn routed_images(c: &ClassScores) -> usize {
    c.images.iter().filter(|r| r.matched == c.index).count()
}

/// Pooled decision figures: each image judged at its own class's threshold (None unless every
/// image has one).
fn pooled_threshold_report(
    meta: &ModelMeta,
    opts: &EvalOptions,
    all: &[&ImageRecord],
) -> Option<ThresholdReport> {
    (!all.is_empty() && all.iter().all(|r| r.threshold.is_some())).then(|| {
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
    })
}

/// The evaluation's settings as recorded under `config` in metrics.json.
fn config_json(
    meta: &ModelMeta,
    data: &Path,
    opts: &EvalOptions,
    map_size: usize,
) -> serde_json::Value {
    let class_choice = if opts.class_given {
        "stated"
    } else if opts.batch_vote {
        "batch-vote"
    } else {
        "global-match"
    };
    serde_json::json!({
        "map_size": map_size,
        "data": data.display().to_string(),
        "class_choice": class_choice,
        "vote_group": (opts.batch_vote && !opts.class_given).then_some(opts.vote_group),
        "pro": opts.pro,
        "threshold_override": opts.threshold,
        "fpr_limit": opts.fpr_limit,
        "preprocess": meta.preprocess,
        "mask_mode": opts.mask_mode.unwrap_or(meta.preprocess.mask_mode),
    })
}

/// The model's provenance as recorded under `model` in metrics.json.
fn model_json(predictor: &Predictor, model_path: &Path) -> serde_json::Value {
    let meta = &predictor.meta;
    let thresholds = meta.thresholds.as_ref().map(
        |t| serde_json::json!({"global": t.global, "per_class": t.per_class, "method": t.method}),
    );
    serde_json::json!({
        "path": model_path.display().to_string(),
        "sha256": crate::backbone::weights::sha256_file(model_path).ok(),
        "classes": meta.classes,
        "backbone": meta.backbone,
        "dims": meta.descriptor.dims,
        "input_size": predictor.input_size(),
        "tiling": meta.preprocess.tiling,
        "training": meta.training,
        "thresholds": thresholds,
    })
}

/// One row of scores.csv (see [`SCORES_HEADER`]).
fn score_row(meta: &ModelMeta, class: &str, r: &ImageRecord) -> Vec<String> {
    vec![
        r.path.display().to_string(),
        class.to_string(),
        r.defect.clone(),
        u8::from(r.anomalous).to_string(),
        meta.classes.get(r.matched).cloned().unwrap_or_default(),
        format!("{}", r.score),
        r.threshold.map(|t| format!("{t}")).unwrap_or_default(),
        r.decision.as_str().to_string(),
    ]
}

/// Writes scores.csv: one row per test image, classes in the pass's order.
fn write_scores_csv(out: &Path, meta: &ModelMeta, classes: &[ClassScores]) -> Result<()> {
    let rows: Vec<Vec<String>> = classes
        .iter()
        .flat_map(|c| c.images.iter().map(|r| score_row(meta, &c.name, r)))
        .collect();
    let header = SCORES_HEADER.map(String::from).to_vec();
    crate::fsio::write_atomic(
        &out.join(eval_report::SCORES_CSV),
        crate::report::table::csv_table(&header, &rows).as_bytes(),
    )
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

/// The image ROC and PR curves, one per class, in order.
#[derive(Default)]
struct ImageCurves {
    roc: Vec<Curve>,
    pr: Vec<Curve>,
}

impl ImageCurves {
    /// Adds the curves of the image scores in `acc` under `label`.
    fn push(&mut self, label: &str, acc: &EvalAccumulator) {
        let (scores, labels) = acc.image_scores();
        self.roc.push(Curve {
            label: label.to_string(),
            points: roc_points(scores, labels, CURVE_POINTS),
        });
        self.pr.push(Curve {
            label: label.to_string(),
            points: pr_points(scores, labels, CURVE_POINTS),
        });
    }
}

/// Writes the image ROC / PR curves (the classes' plus the pooled one) and the gallery.
fn write_visuals(
    out: &Path,
    mut curves: ImageCurves,
    pooled: &EvalAccumulator,
    gallery: Vec<GalleryItem>,
) -> Result<()> {
    curves.push("pooled", pooled);
    crate::fsio::write_atomic(
        &out.join(eval_report::ROC_IMAGE_SVG),
        line_plot_svg(
            "Image ROC",
            "false positive rate",
            "true positive rate",
            &curves.roc,
            true,
        )
        .as_bytes(),
    )?;
    crate::fsio::write_atomic(
        &out.join(eval_report::PR_IMAGE_SVG),
        line_plot_svg(
            "Image precision-recall",
            "recall",
            "precision",
            &curves.pr,
            false,
        )
        .as_bytes(),
    )?;
    if !gallery.is_empty() {
        write_gallery(out, gallery)?;
    }
    Ok(())
}

/// Writes the gallery's panels (PNG) and its page, on one colour scale for the whole gallery:
/// from the lowest to the highest map value.
fn write_gallery(out: &Path, gallery: Vec<GalleryItem>) -> Result<()> {
    let dir = out.join("gallery");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
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
    )
}

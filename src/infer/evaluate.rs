//! Evaluation of a [`Predictor`] on a dataset's test split (spec sections 2-3).
//!
//! Per class (in the model's order, restricted to the classes the dataset holds): every test
//! image is scored (class by global match unless stated), its anomaly map [S, S] and binarised
//! ground-truth mask [S, S] go into an [`EvalAccumulator`]; metrics per class, their mean, and
//! pooled over all classes; routing accuracy (matched vs true class); precision/recall/F1 at
//! the stored (or overriding) threshold; ROC/PR curves (SVG) and a heatmap gallery (HTML).

use std::path::{Path, PathBuf};

use crate::data::{decode, discover, loader, Dataset};
use crate::metrics::{ranking, EvalAccumulator, MetricSet};
use crate::report::curves::{line_plot_svg, pr_points, roc_points, Curve};
use crate::report::gallery::{write_gallery_html, GalleryEntry};
use crate::report::heatmap::{panel, write_png};
use crate::report::{eval_report, ClassReport, EvalReport, ThresholdReport};
use crate::{Error, Result};

use super::predictor::{ClassChoice, Predictor};

/// Options of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Restrict to these classes (None: every model class the dataset holds).
    pub classes: Option<Vec<String>>,
    /// Align with the true class instead of the matched one.
    pub class_given: bool,
    /// The reference's batch-vote class assignment (parity only).
    pub batch_vote: bool,
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
            class_given: false,
            batch_vote: false,
            threshold: None,
            batch_size: 16,
            gallery_per_class: 8,
            fpr_limit: 0.3,
            progress: true,
        }
    }
}

struct GalleryItem {
    entry: GalleryEntry,
    image: image::RgbImage,
    mask: Option<Vec<u8>>,
    map: Vec<f32>,
}

/// Evaluates `predictor` on the test split under `data`, writes every report file into `out`
/// and returns the report.
pub fn evaluate(
    predictor: &Predictor,
    model_path: &Path,
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let started = std::time::Instant::now();
    let meta = &predictor.meta;
    let wanted: Vec<String> = match &opts.classes {
        Some(c) => c.clone(),
        None => meta.classes.clone(),
    };
    for c in &wanted {
        meta.class_index(c)?;
    }
    let ds: Dataset = discover(data, Some(&wanted))?;
    let s = predictor.input_size();
    let pre = meta.preprocess.clone();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut class_reports = Vec::new();
    let mut per_class_sets = Vec::new();
    let mut pooled = EvalAccumulator::new(s);
    let (mut routed, mut total) = (0usize, 0usize);
    let mut all_scores: Vec<(f32, bool, Option<f32>)> = Vec::new();
    let mut image_curves = (Vec::new(), Vec::new());
    let mut gallery: Vec<GalleryItem> = Vec::new();
    let mut score_rows: Vec<Vec<String>> = Vec::new();
    let total_images: usize = ds.classes.iter().map(|c| c.test.len()).sum();
    let bar = if opts.progress {
        indicatif::ProgressBar::new(total_images as u64)
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
    for class in &ds.classes {
        let k = meta.class_index(&class.name)?;
        bar.set_message(class.name.clone());
        let threshold = opts.threshold.or_else(|| predictor.threshold(k));
        let mut acc = EvalAccumulator::new(s);
        let mut class_routed = 0usize;
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        let paths: Vec<PathBuf> = class.test.iter().map(|t| t.path.clone()).collect();
        let mut idx = 0usize;
        let mut shown_defect = 0usize;
        let mut shown_good = 0usize;
        for batch in loader::batches(paths, pre.clone(), opts.batch_size.max(1), false) {
            let batch = batch?;
            let t = batch.to_tensor(&predictor.device)?;
            let choice = if opts.class_given {
                ClassChoice::Stated(vec![k; batch.len()])
            } else if opts.batch_vote {
                ClassChoice::BatchVote
            } else {
                ClassChoice::Match
            };
            let preds = predictor.predict_tensor(&t, &choice)?;
            for p in preds {
                let item = &class.test[idx];
                idx += 1;
                let mask = match &item.mask {
                    Some(m) => Some(pre.mask(&decode::decode_mask(m)?)),
                    None => None,
                };
                let map = predictor.anomaly_map(&p);
                let anomalous = item.is_anomalous();
                acc.push(p.score, anomalous, &map, mask.as_deref())?;
                scores.push(p.score);
                labels.push(anomalous);
                all_scores.push((p.score, anomalous, threshold));
                if p.matched == k {
                    class_routed += 1;
                }
                score_rows.push(vec![
                    item.path.display().to_string(),
                    class.name.clone(),
                    item.defect.clone(),
                    u8::from(anomalous).to_string(),
                    meta.classes.get(p.matched).cloned().unwrap_or_default(),
                    format!("{}", p.score),
                    threshold.map(|t| format!("{t}")).unwrap_or_default(),
                    match crate::report::gallery::decision(p.score, threshold) {
                        Some(true) => "defect",
                        Some(false) => "ok",
                        None => "",
                    }
                    .to_string(),
                ]);
                let show = if anomalous {
                    &mut shown_defect
                } else {
                    &mut shown_good
                };
                let quota = if anomalous {
                    opts.gallery_per_class - opts.gallery_per_class / 2
                } else {
                    opts.gallery_per_class / 2
                };
                if *show < quota {
                    *show += 1;
                    let image = pre.resized_rgb(&decode::decode_rgb(&item.path)?);
                    let file = format!(
                        "{}_{}_{}.png",
                        sanitize(&class.name),
                        sanitize(&item.defect),
                        idx
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
                        image,
                        mask,
                        map,
                    });
                }
                bar.inc(1);
            }
        }
        let set = acc.compute(opts.fpr_limit);
        pooled.merge(&acc);
        routed += class_routed;
        total += class.test.len();
        let at_threshold = threshold.map(|t| {
            threshold_report(
                &scores,
                &labels,
                t,
                if opts.threshold.is_some() {
                    "override"
                } else {
                    "stored-class"
                },
            )
        });
        image_curves.0.push(Curve {
            label: class.name.clone(),
            points: roc_points(&scores, &labels, 400),
        });
        image_curves.1.push(Curve {
            label: class.name.clone(),
            points: pr_points(&scores, &labels, 400),
        });
        class_reports.push(ClassReport {
            name: class.name.clone(),
            n_train: class.train.len(),
            n_test_good: labels.iter().filter(|l| !**l).count(),
            n_test_defect: labels.iter().filter(|l| **l).count(),
            metrics: set.clone(),
            routing_accuracy: (!class.test.is_empty())
                .then(|| class_routed as f64 / class.test.len() as f64),
            at_threshold,
        });
        per_class_sets.push(set);
    }
    bar.finish_and_clear();
    let pooled_set = pooled.compute(opts.fpr_limit);
    let mean = MetricSet::mean_of(&per_class_sets);
    // Pooled decision figures: each image judged at its own class's threshold.
    let at_threshold = if all_scores.iter().all(|x| x.2.is_some()) && !all_scores.is_empty() {
        // Each image against its own class's threshold: score - threshold >= 0.
        let margins: Vec<f32> = all_scores
            .iter()
            .map(|&(sc, _, t)| sc - t.unwrap_or(f32::INFINITY))
            .collect();
        let labels: Vec<bool> = all_scores.iter().map(|x| x.1).collect();
        let source = if opts.threshold.is_some() {
            "override"
        } else {
            "stored-class (each image at its class's threshold)"
        };
        let mut r = threshold_report(&margins, &labels, 0.0, source);
        r.threshold = opts
            .threshold
            .or(meta.thresholds.as_ref().map(|t| t.global))
            .unwrap_or(f32::NAN);
        Some(r)
    } else {
        None
    };
    let seconds = started.elapsed().as_secs_f64();
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
            "input_size": s,
            "training": meta.training,
            "thresholds": meta.thresholds.as_ref().map(|t| serde_json::json!({"global": t.global, "per_class": t.per_class, "method": t.method})),
        }),
        test_selected: meta.test_selected,
        random_backbone: meta.random_backbone(),
        config: serde_json::json!({
            "data": data.display().to_string(),
            "class_choice": if opts.class_given { "stated" } else if opts.batch_vote { "batch-vote" } else { "global-match" },
            "threshold_override": opts.threshold,
            "fpr_limit": opts.fpr_limit,
            "preprocess": meta.preprocess,
            "mask_mode": meta.preprocess.mask_mode,
        }),
        classes: class_reports,
        mean,
        pooled: pooled_set,
        routing_accuracy: (total > 0).then(|| routed as f64 / total as f64),
        at_threshold,
        timing: serde_json::json!({"seconds": seconds, "images": total, "images_per_second": total as f64 / seconds.max(1e-9)}),
        images: total,
    };
    write_visuals(out, image_curves, &pooled, gallery)?;
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

fn threshold_report(scores: &[f32], labels: &[bool], t: f32, source: &str) -> ThresholdReport {
    let c = ranking::confusion_at(scores, labels, t);
    ThresholdReport {
        threshold: t,
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

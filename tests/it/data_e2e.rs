//! A manifest end to end: `val` rows calibrate the thresholds instead of a hold-out (every
//! training image trains), several masks of one image are united, and a class whose defect
//! images have no masks gets image metrics with `null` pixel metrics and the reason in
//! metrics.json and report.md.

use crate::common::tiny;
use std::path::Path;
use tiny::tiny_train_config;

use cras::data::manifest::{samples_of, write_manifest, Split};
use cras::data::synth::{generate, SynthConfig};
use cras::data::{discover, Label};
use cras::eval::{evaluate, EvalOptions};
use cras::infer::Predictor;
use cras::report::eval_report::PIXEL_METRICS_NULL;
use cras::train::pipeline::{train, TrainConfig};

fn config(data: &Path) -> TrainConfig {
    let mut cfg = tiny_train_config(data);
    cfg.holdout = 0.5;
    cfg
}

#[test]
fn manifest_val_rows_calibrate_and_unmasked_class_reports_null_pixel_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let synth = SynthConfig {
        classes: 2,
        train_per_class: 6,
        test_good_per_class: 2,
        test_defect_per_class: 2,
        size: 32,
        defect_px: None,
        seed: 5,
    };
    generate(&synth, &data).unwrap();
    let ds = discover(&data, None).unwrap();
    let (masked, unmasked) = (ds.classes[0].name.clone(), ds.classes[1].name.clone());
    let mut rows = samples_of(&ds);
    // Two training images of each class become val rows; the second class loses its masks;
    // the first defect image of the first class gets its mask twice (the union is the mask).
    for class in [&masked, &unmasked] {
        for r in rows
            .iter_mut()
            .filter(|r| &r.class == class && r.split == Split::Train)
            .take(2)
        {
            r.split = Split::Val;
        }
    }
    for r in rows.iter_mut().filter(|r| r.class == unmasked) {
        r.masks.clear();
    }
    let first_defect = rows
        .iter_mut()
        .find(|r| r.class == masked && r.label == Label::Anomalous)
        .unwrap();
    first_defect.masks.push(first_defect.masks[0].clone());
    let manifest = tmp.path().join("rows.csv");
    write_manifest(&manifest, &rows).unwrap();

    let model = tmp.path().join("m.safetensors");
    let summary = train(&config(&manifest), &model, false, None).unwrap();
    let th = summary
        .meta
        .thresholds
        .expect("thresholds from the val rows");
    assert_eq!(th.holdout_images, vec![2, 2]);
    assert_eq!(
        summary.meta.training.images, 8,
        "no hold-out carved from train"
    );

    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    let out = tmp.path().join("eval");
    let opts = EvalOptions {
        progress: false,
        gallery_per_class: 0,
        ..EvalOptions::default()
    };
    let report = evaluate(&p, &model, &manifest, &out, &opts).unwrap();
    let by_name = |n: &str| report.classes.iter().find(|c| c.name == n).unwrap();
    let (m, u) = (&by_name(&masked).metrics, &by_name(&unmasked).metrics);
    assert!(m.pixel_auroc.is_some() && m.aupro.is_some());
    assert!(u.image_auroc.is_some());
    assert_eq!(
        (u.pixel_auroc, u.pixel_ap, u.aupro, u.mad),
        (None, None, None, None)
    );
    assert_eq!(report.pooled.pixel_auroc, None);
    assert_eq!(report.mean.pixel_auroc, m.pixel_auroc);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let why = json["config"][PIXEL_METRICS_NULL][&unmasked]
        .as_str()
        .unwrap();
    assert!(
        why.contains("2 of its defect images have no ground-truth mask"),
        "{why}"
    );
    assert!(json["config"][PIXEL_METRICS_NULL].get(&masked).is_none());
    let unmasked_row = &json["classes"][1];
    assert_eq!(unmasked_row["name"], unmasked.as_str());
    assert!(unmasked_row["pixel_auroc"].is_null());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains(&format!("- {unmasked}: {why}")), "{md}");
}

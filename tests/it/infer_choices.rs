//! The choices made at inference, each checked on a tiny trained model: batch-vote routing,
//! the ablation flags stored in the model file (and read strictly from older files), the
//! run-time false-alarm rate of `cras predict`, and `cras train --cache-f16`.

use crate::common::tiny;
use std::path::{Path, PathBuf};
use std::process::Command;
use tiny::tiny_train_config;

use cras::data::synth::{generate, SynthConfig};
use cras::infer::score_descriptors;
use cras::infer::{ClassChoice, Predictor};
use cras::model::{file, Ablation};
use cras::train::pipeline::{train, TrainConfig};

fn dataset(dir: &Path) {
    let cfg = SynthConfig {
        classes: 2,
        train_per_class: 6,
        test_good_per_class: 2,
        test_defect_per_class: 1,
        size: 48,
        defect_px: None,
        seed: 5,
    };
    generate(&cfg, dir).unwrap();
}

fn config(data: &Path, ablation: Ablation) -> TrainConfig {
    let mut cfg = tiny_train_config(data);
    cfg.fit.seed = 2;
    cfg.fit.ablation = ablation;
    cfg
}

/// The test images of `class`, sorted.
fn test_images(data: &Path, class: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for kind in std::fs::read_dir(data.join(class).join("test")).unwrap() {
        for f in std::fs::read_dir(kind.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn decode(paths: &[PathBuf]) -> Vec<image::RgbImage> {
    paths
        .iter()
        .map(|p| cras::data::decode::decode_rgb(p).unwrap())
        .collect()
}

fn cras(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run cras")
}

#[test]
fn batch_vote_routes_every_image_to_the_majority_match() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let model = tmp.path().join("m.safetensors");
    train(&config(&data, Ablation::default()), &model, false, None).unwrap();
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    let mut paths = test_images(&data, &p.meta.classes[0]);
    paths.push(test_images(&data, &p.meta.classes[1])[0].clone());
    let images = decode(&paths);
    let matched = p.predict_images(&images, &ClassChoice::Match).unwrap();
    let voted = p.predict_images(&images, &ClassChoice::BatchVote).unwrap();
    let mut counts = [0usize; 2];
    matched.iter().for_each(|m| counts[m.matched] += 1);
    let majority = if counts[1] > counts[0] { 1 } else { 0 };
    for (m, v) in matched.iter().zip(&voted) {
        assert_eq!(v.class, majority, "every image aligned with the vote");
        assert_eq!(v.matched, m.matched, "the global match is still reported");
        assert_eq!(v.class_similarity, m.class_similarity);
        if m.class == majority {
            assert_eq!(v.score.to_bits(), m.score.to_bits());
        }
    }
    assert!(
        counts[0] > 0 && counts[1] > 0 || voted.iter().zip(&matched).all(|(v, m)| v == m),
        "with one class matched, the vote changes nothing"
    );
}

#[test]
fn ablation_flags_are_stored_typed_and_used_at_inference() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let ablation = Ablation {
        residual: false,
        center_search: false,
    };
    let model = tmp.path().join("abl.safetensors");
    train(&config(&data, ablation), &model, false, None).unwrap();
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    assert_eq!(p.meta.ablation, ablation);
    assert_eq!(p.ablation(), ablation);

    // Scoring follows the stored flags: the predictor's scores are those of the ablated wiring
    // and differ from the full method's wiring of the same head.
    let images = decode(&test_images(&data, &p.meta.classes[0]));
    let g = p
        .extractor
        .descriptors(&p.preprocess(&images).unwrap())
        .unwrap();
    let got = p.score_descriptors(&g, &ClassChoice::Match).unwrap();
    let ablated = score_descriptors(p.head(), ablation, &g, &ClassChoice::Match).unwrap();
    let full = score_descriptors(p.head(), Ablation::default(), &g, &ClassChoice::Match).unwrap();
    assert_eq!(got, ablated);
    assert_ne!(got, full, "the ablation flags change the scores");

    // A file written before the flags had their own field: read from config.fit.ablation.
    let raw = file::read_raw(&model).unwrap();
    let mut old = raw.meta.clone();
    old.as_object_mut().unwrap().remove("ablation");
    assert!(old.pointer("/config/fit/ablation").is_some());
    let tensors: Vec<(String, candle_core::Tensor)> = raw.tensors.into_iter().collect();
    let old_path = tmp.path().join("old.safetensors");
    file::write_raw(&old_path, &old, &tensors).unwrap();
    let back = Predictor::load(&old_path, &candle_core::Device::Cpu).unwrap();
    assert_eq!(back.ablation(), ablation);
    // Neither field: a clear error, never a silent default.
    old["config"]["fit"]
        .as_object_mut()
        .unwrap()
        .remove("ablation");
    let broken = tmp.path().join("broken.safetensors");
    file::write_raw(&broken, &old, &tensors).unwrap();
    let err = Predictor::load(&broken, &candle_core::Device::Cpu)
        .err()
        .expect("no ablation flags must not load")
        .to_string();
    assert!(
        err.contains("broken.safetensors") && err.contains("ablation"),
        "{err}"
    );
}

#[test]
fn predict_false_alarm_rate_rederives_per_class_thresholds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let model = tmp.path().join("m.safetensors");
    let summary = train(&config(&data, Ablation::default()), &model, false, None).unwrap();
    let want = cras::infer::false_alarm_thresholds(&summary.meta, 0.5).unwrap();
    let stored = summary.meta.thresholds.clone().unwrap();
    let images = test_images(&data, &summary.meta.classes[1]);
    let m = model.to_str().unwrap();
    let img = images[0].to_str().unwrap();
    let class = summary.meta.classes[1].as_str();
    let o = cras(&[
        "predict",
        "--model",
        m,
        "--device",
        "cpu",
        "--class",
        class,
        "--false-alarm-rate",
        "0.5",
        img,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let t = line["threshold"].as_f64().unwrap() as f32;
    assert_eq!(t, want[1], "class 1's false-alarm threshold");
    assert_ne!(t, stored.per_class[1], "not the stored quantile threshold");
    let score = line["score"].as_f64().unwrap() as f32;
    let decision = if score >= t { "defect" } else { "ok" };
    assert_eq!(line["decision"], decision);
    // Exclusive with --threshold; an impossible rate names the flag.
    let o = cras(&[
        "predict",
        "--model",
        m,
        "--threshold",
        "0.5",
        "--false-alarm-rate",
        "0.5",
        img,
    ]);
    assert!(!o.status.success());
    let o = cras(&[
        "predict",
        "--model",
        m,
        "--device",
        "cpu",
        "--false-alarm-rate",
        "2",
        img,
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("false"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn train_cache_f16_is_recorded_and_trains_a_working_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let common = |out: &Path| -> Vec<String> {
        [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backbone",
            "resnet18",
            "--image-size",
            "32",
            "--square",
            "--dims",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--noise",
            "auto",
            "--device",
            "cpu",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    let half = tmp.path().join("half.safetensors");
    let mut args = common(&half);
    args.push("--cache-f16".into());
    let o = cras(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = tmp.path().join("full.safetensors");
    let o = cras(&common(&full).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let h = Predictor::load(&half, &candle_core::Device::Cpu).unwrap();
    let f = Predictor::load(&full, &candle_core::Device::Cpu).unwrap();
    assert_eq!(h.meta.config["cache_precision"], "f16");
    assert_eq!(f.meta.config["cache_precision"], "f32");
    let centers =
        |p: &Predictor| -> Vec<f32> { p.bank.centers.flatten_all().unwrap().to_vec1().unwrap() };
    let (ch, cf) = (centers(&h), centers(&f));
    assert_ne!(ch, cf, "f16 descriptors give (slightly) other centers");
    let worst = ch
        .iter()
        .zip(&cf)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 0.05, "f16 rounding moved a center by {worst}");
    let images = decode(&test_images(&data, &h.meta.classes[0]));
    let preds = h.predict_images(&images, &ClassChoice::Match).unwrap();
    assert!(preds.iter().all(|p| p.score.is_finite()));
}

//! The exported graph run by real runtimes (ONNX Runtime, OpenVINO) scores as the candle path:
//! f32 image scores within 1e-5, maps within 1e-4, the same classes; at bf16 every decision is
//! candle's (images near their threshold are re-scored at f32).
//!
//! The runtimes' shared libraries are found as users find them (ORT_DYLIB_PATH /
//! OPENVINO_INSTALL_DIR, the system library path, a pip install in VIRTUAL_ENV). Without them
//! these tests print why and pass; with `CRAS_REQUIRE_RUNTIMES=1` (what `.ci/run` sets) a
//! missing runtime fails them.

use crate::common;
use common::cras;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use cras::infer::engine::{
    EngineChoice, EngineKind, EngineOptions, Precision, DEFAULT_CONFIRM_BAND,
};
use cras::infer::ClassChoice;
use cras::infer::{decide, near_threshold, Decision, Prediction, Predictor};

/// A tiny dataset and a model trained on it with `extra` train options.
fn trained(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    if !data.exists() {
        cras(&[
            "synth",
            "--out",
            data.to_str().unwrap(),
            "--classes",
            "3",
            "--train",
            "10",
            "--test-good",
            "2",
            "--test-defect",
            "2",
            "--size",
            "48",
            "--seed",
            "5",
        ]);
    }
    let model = dir.join(format!("m{}.safetensors", extra.len()));
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--holdout",
        "0.2",
        "--quiet",
    ];
    if !extra.contains(&"--epochs") {
        args.extend_from_slice(&["--epochs", "2"]);
    }
    args.extend_from_slice(extra);
    cras(&args);
    (data, model)
}

/// The predictor on `kind`, or None (with the reason printed) when its runtime is absent and
/// the runtimes are not required.
fn on_engine(model: &Path, kind: EngineKind, precision: Precision) -> Option<Predictor> {
    on_engine_with(model, kind, precision, DEFAULT_CONFIRM_BAND)
}

/// [`on_engine`] with a bf16 confirmation band (0: none).
fn on_engine_with(
    model: &Path,
    kind: EngineKind,
    precision: Precision,
    confirm_band: f32,
) -> Option<Predictor> {
    let options = EngineOptions {
        choice: EngineChoice::Kind(kind),
        precision,
        threads: Some(2),
        confirm_band: Some(confirm_band),
    };
    match Predictor::load_with(model, &Device::Cpu, &options) {
        Ok(p) => {
            assert_eq!(p.engine(), kind);
            Some(p)
        }
        Err(e) => {
            crate::common::engine_unavailable(
                &format!("{kind} {precision}"),
                precision == Precision::Bf16,
                &e,
            );
            None
        }
    }
}

/// Every test image of the dataset, preprocessed as the model does: [N*T,3,S,S] (T tiles per
/// image for a tiled model, else 1).
fn test_batch(p: &Predictor, data: &Path) -> (Tensor, Vec<usize>) {
    let mut images = Vec::new();
    let mut classes = Vec::new();
    for (k, class) in p.meta.classes.iter().enumerate() {
        for kind in ["good", "defect"] {
            let dir = data.join(class).join("test");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|d| d.is_dir() && (d.ends_with("good") == (kind == "good")))
                .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
                .collect();
            files.sort();
            for f in files {
                images.push(cras::data::decode::decode_rgb(&f).unwrap());
                classes.push(k);
            }
        }
    }
    let s = p.input_size();
    let views = p.meta.preprocess.views_per_image();
    let data: Vec<f32> = images
        .iter()
        .flat_map(|im| p.meta.preprocess.views(im))
        .collect();
    (
        Tensor::from_vec(data, (images.len() * views, 3, s, s), &Device::Cpu).unwrap(),
        classes,
    )
}

fn assert_close(want: &[Prediction], got: &[Prediction], p: &Predictor, q: &Predictor, what: &str) {
    assert_eq!(want.len(), got.len());
    for (i, (a, b)) in want.iter().zip(got).enumerate() {
        assert_eq!(a.class, b.class, "{what}: image {i} class");
        assert_eq!(a.matched, b.matched, "{what}: image {i} matched class");
        assert!(
            (a.score - b.score).abs() <= 1e-5,
            "{what}: image {i} score {} vs {}",
            a.score,
            b.score
        );
        assert!((a.class_similarity - b.class_similarity).abs() <= 1e-4);
        let (ma, mb) = (p.anomaly_map(a), q.anomaly_map(b));
        assert_eq!(ma.len(), mb.len());
        let worst = ma
            .iter()
            .zip(&mb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{what}: image {i} map differs by {worst}");
    }
}

fn f32_parity(extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), extra);
    let candle = Predictor::load(&model, &Device::Cpu).unwrap();
    let (batch, truth) = test_batch(&candle, &data);
    for kind in [EngineKind::OnnxRuntime, EngineKind::OpenVino] {
        let Some(engine) = on_engine(&model, kind, Precision::F32) else {
            continue;
        };
        for choice in [
            ClassChoice::Match,
            ClassChoice::Stated(truth.clone()),
            ClassChoice::BatchVote,
        ] {
            let want = candle.predict_batch(&batch, &choice).unwrap();
            let got = engine.predict_batch(&batch, &choice).unwrap();
            assert_close(&want, &got, &candle, &engine, &format!("{kind} {choice:?}"));
        }
        // Batch 1 equals the batched scores (the engine is built once and reused).
        let v = candle.meta.preprocess.views_per_image();
        let one = engine
            .predict_batch(&batch.narrow(0, v, v).unwrap(), &ClassChoice::Match)
            .unwrap();
        let all = engine.predict_batch(&batch, &ClassChoice::Match).unwrap();
        assert!((one[0].score - all[1].score).abs() <= 1e-6);
    }
}

#[test]
fn f32_engines_score_as_candle() {
    f32_parity(&[]);
}

#[test]
fn f32_engines_follow_layers_widths_and_ablations() {
    // layer1 + layer2 with a width that does not divide the unfolded channels (general
    // pooling), and both ablation flags: the graph must honour all of it.
    f32_parity(&[
        "--layers",
        "layer1,layer2",
        "--dims",
        "100",
        "--no-residual",
        "--no-center-search",
    ]);
}

#[test]
fn f32_engines_score_tiled_models_as_candle() {
    // 48 px images in 32 px tiles overlapping by 16: 4 tiles per image, each one input of the
    // graph; votes, maxima and blended maps are cras's on either engine.
    f32_parity(&["--tile", "32", "--tile-overlap", "16"]);
}

#[test]
fn f32_engines_score_per_tile_centers_as_candle() {
    // The graph's bank then has a row per class and tile position; cras states each tile's row.
    f32_parity(&[
        "--tile",
        "32",
        "--tile-overlap",
        "16",
        "--tile-centers",
        "per-tile",
    ]);
}

/// Image `i` scored by the confirming bf16 engine (`got`): candle's score (`want`) within 1e-5
/// when it was re-scored at f32, else the unconfirmed bf16 score (`screen`) bit for bit.
fn assert_confirmation(
    i: usize,
    want: &Prediction,
    got: &Prediction,
    screen: &Prediction,
    rescored: bool,
) {
    if rescored {
        assert!(
            (want.score - got.score).abs() <= 1e-5,
            "image {i}: {} vs {}",
            want.score,
            got.score
        );
    } else {
        assert_eq!(got.score, screen.score, "image {i}");
    }
}

#[test]
fn bf16_decisions_are_the_f32_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &["--epochs", "4"]);
    let candle = Predictor::load(&model, &Device::Cpu).unwrap();
    let Some(confirmed) = on_engine(&model, EngineKind::OpenVino, Precision::Bf16) else {
        return;
    };
    let raw = on_engine_with(&model, EngineKind::OpenVino, Precision::Bf16, 0.0).unwrap();
    assert_eq!(raw.confirmed_at_f32(), None);
    let (batch, _) = test_batch(&candle, &data);
    let n = batch.dim(0).unwrap();
    let want = candle.predict_batch(&batch, &ClassChoice::Match).unwrap();
    let got = confirmed
        .predict_batch(&batch, &ClassChoice::Match)
        .unwrap();
    let screen = raw.predict_batch(&batch, &ClassChoice::Match).unwrap();
    let mut near = 0;
    for (i, ((a, b), r)) in want.iter().zip(&got).zip(&screen).enumerate() {
        let t = candle.threshold(a.class);
        assert!(t.is_some());
        let rescored = near_threshold(r.score, t, DEFAULT_CONFIRM_BAND);
        near += u64::from(rescored);
        assert_confirmation(i, a, b, r, rescored);
        assert_eq!(
            decide(a.score, t),
            decide(b.score, t),
            "image {i}: {} vs {}",
            a.score,
            b.score
        );
    }
    assert_eq!(confirmed.confirmed_at_f32(), Some((near, n as u64)));
    // Decisions go both ways (the thresholds are not saturated).
    let anomalous = want
        .iter()
        .filter(|a| decide(a.score, candle.threshold(a.class)) == Decision::Defect)
        .count();
    assert!(
        anomalous > 0 && anomalous < n,
        "{anomalous} of {n} anomalous"
    );
    eprintln!("bf16: {near} of {n} images re-scored at f32");

    // Thresholds given at run time steer the confirmation: even images get their own f32
    // score as threshold (near it: re-scored, candle's score), odd ones a threshold 16 logits
    // away (far: the bf16 score stands).
    let exact: Vec<f32> = want.iter().map(|p| p.score).collect();
    let at = |i: usize, _: usize| {
        Some(if i.is_multiple_of(2) {
            exact[i]
        } else if exact[i] < 0.5 {
            0.999_999_9
        } else {
            1e-7
        })
    };
    let mixed = confirmed
        .predict_batch_at(&batch, &ClassChoice::Match, &at)
        .unwrap();
    for (i, ((a, b), r)) in want.iter().zip(&mixed).zip(&screen).enumerate() {
        assert_confirmation(i, a, b, r, i.is_multiple_of(2));
        if !i.is_multiple_of(2) {
            assert_eq!(
                decide(a.score, at(i, 0)),
                decide(b.score, at(i, 0)),
                "image {i}"
            );
        }
    }
    let evens = n.div_ceil(2) as u64;
    assert_eq!(
        confirmed.confirmed_at_f32(),
        Some((near + evens, 2 * n as u64))
    );
}

#[test]
fn cli_predict_on_an_engine_prints_candles_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &[]);
    if on_engine(&model, EngineKind::OnnxRuntime, Precision::F32).is_none() {
        return;
    }
    let test = data.to_str().unwrap();
    let m = model.to_str().unwrap();
    let lines = |engine: &str| -> Vec<serde_json::Value> {
        cras(&["predict", "--model", m, test, "--engine", engine])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (lines("candle"), lines("onnxruntime"));
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["path"], y["path"]);
        assert_eq!(x["class"], y["class"]);
        let (sx, sy) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
        assert!((sx - sy).abs() <= 1e-5, "{x} vs {y}");
    }
}

#[test]
fn a_missing_runtime_names_what_to_install_and_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &[]);
    let good = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("train/good"))
        .find(|p| p.is_dir())
        .unwrap();
    let image = std::fs::read_dir(good)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let nowhere = tmp.path().join("nowhere");
    let predict = |engine: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cras"));
        c.args(["predict", "--model", model.to_str().unwrap()])
            .arg(&image)
            .args(["--engine", engine, "--log=warn"]);
        c
    };
    for (engine, var, install) in [
        ("onnxruntime", "ORT_DYLIB_PATH", "onnxruntime"),
        ("openvino", "OPENVINO_INSTALL_DIR", "openvino"),
    ] {
        let out = predict(engine).env(var, &nowhere).output().unwrap();
        assert!(
            !out.status.success(),
            "{engine} with {var} pointing nowhere must fail"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(var) && err.contains(nowhere.to_str().unwrap()),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing is scored when the engine is missing"
        );
        // Without the variable and without any installation, the error says what to install.
        let out = predict(engine)
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("OPENVINO_INSTALL_DIR")
            .env_remove("INTEL_OPENVINO_DIR")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .env("LD_LIBRARY_PATH", &nowhere)
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("pip install {install}")) && err.contains(var),
                "{err}"
            );
        } // else: the runtime is installed system-wide on this machine
    }
}

/// The training images of each class of a dataset, sorted.
fn train_images(p: &Predictor, data: &Path) -> Vec<Vec<PathBuf>> {
    p.meta
        .classes
        .iter()
        .map(|c| {
            let mut v: Vec<PathBuf> = std::fs::read_dir(data.join(c).join("train/good"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        })
        .collect()
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p);
    (p / (1.0 - p)).ln()
}

/// The largest bf16 logit error that training would measure for `model` on its training images;
/// None when this machine does not run OpenVINO at bf16.
fn bf16_max_error(model: &Path, data: &Path) -> Option<f64> {
    use cras::train::pipeline::measure_precision;
    let p = Predictor::load(model, &Device::Cpu).unwrap();
    let train: Vec<PathBuf> = train_images(&p, data).into_iter().flatten().collect();
    let Some(before) =
        measure_precision(&p, &[], &train, &cras::infer::engine::band::LOW_PRECISIONS)
            .unwrap()
            .into_iter()
            .find(|b| b.engine == "openvino" && b.precision == "bf16")
    else {
        crate::common::engine_unavailable("openvino bf16", true, &"not measured by training");
        return None;
    };
    Some(before.max)
}

/// A copy of the model (written to `out`) whose discriminator is sharpened: every patch logit
/// `l` becomes `k * (l - c)` (`c` the median image logit of the training images, `k` the gain),
/// thresholds at `c` and the bf16 band measured again, as training would. The front's bf16
/// error is the model's own; only the head's gain grows, as on realistic data where the
/// discriminator is sharp.
fn sharpened(model: &Path, data: &Path, out: &Path, k: f64) -> Predictor {
    use cras::train::pipeline::measure_precision;
    let mut p = Predictor::load(model, &Device::Cpu).unwrap();
    let per_class = train_images(&p, data);
    let train: Vec<PathBuf> = per_class.iter().flatten().cloned().collect();
    let images: Vec<image::RgbImage> = train
        .iter()
        .map(|f| cras::data::decode::decode_rgb(f).unwrap())
        .collect();
    let mut logits: Vec<f64> = p
        .predict_images(&images, &ClassChoice::Match)
        .unwrap()
        .iter()
        .map(|q| logit(q.score))
        .collect();
    logits.sort_by(f64::total_cmp);
    let c = logits[logits.len() / 2];
    // The tail has no bias: one hidden unit of the last block is made the constant 1 (BN scale
    // 0, shift 1) and carries the offset -k * c.
    let mut named: std::collections::HashMap<String, Tensor> =
        p.discriminator.named().into_iter().collect();
    let vec = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut w = vec(&named["discriminator.tail.0.weight"]);
    let j = (0..w.len())
        .min_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()))
        .unwrap();
    for x in w.iter_mut() {
        *x *= k as f32;
    }
    w[j] = (-k * c) as f32;
    let (mut scale, mut shift) = (
        vec(&named["discriminator.body.block2.1.weight"]),
        vec(&named["discriminator.body.block2.1.bias"]),
    );
    (scale[j], shift[j]) = (0.0, 1.0);
    let n = w.len();
    for (name, v) in [
        ("discriminator.tail.0.weight", (w, (1, n))),
        ("discriminator.body.block2.1.weight", (scale, (n, 1))),
        ("discriminator.body.block2.1.bias", (shift, (n, 1))),
    ] {
        let t = Tensor::from_vec(v.0, v.1, &Device::Cpu).unwrap();
        let t = if name.ends_with("tail.0.weight") {
            t
        } else {
            t.flatten_all().unwrap()
        };
        named.insert(name.into(), t);
    }
    p.discriminator = cras::model::Discriminator::from_named(&named).unwrap();
    // Every threshold at the training images' median score (logit 0 now): half of them on
    // either side, the decisions turn on the scores the sharpening moved least.
    p.meta.thresholds = Some(cras::model::Thresholds {
        per_class: vec![0.5; per_class.len()],
        global: 0.5,
        method: "the training images' median score".into(),
        holdout_images: vec![0; per_class.len()],
        holdout_scores: vec![Vec::new(); per_class.len()],
    });
    p.meta.precision_bands =
        measure_precision(&p, &[], &train, &cras::infer::engine::band::LOW_PRECISIONS).unwrap();
    p.save(out).unwrap();
    p
}

#[test]
fn bf16_keeps_the_f32_decisions_of_a_model_whose_errors_exceed_3_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &["--epochs", "4"]);
    let sharp = tmp.path().join("sharp.safetensors");
    // The error does not grow in proportion to the gain (saturated scores, images far from the
    // median), so the gain is raised until the measured error passes the fixed band.
    let Some(before) = bf16_max_error(&model, &data) else {
        return;
    };
    let mut last = None;
    for target in [6.0, 12.0, 24.0, 48.0] {
        // A gain such that bf16 would move scores by up to `target` logits if its error scaled.
        let k = (target / before.max(1e-3)).clamp(2.0, 1e4);
        let candle = sharpened(&model, &data, &sharp, k);
        let band = candle
            .meta
            .precision_band("openvino", "bf16")
            .expect("the bf16 band is measured and stored")
            .clone();
        assert_eq!(band.measured_on, Some(cras::device::HostCpu::here()));
        let enough = band.max > f64::from(DEFAULT_CONFIRM_BAND);
        last = Some((candle, band));
        if enough {
            break;
        }
    }
    let (candle, measured) = last.unwrap();
    eprintln!("measured: {measured:?}");
    // The fixed band of 3 logits would not cover this model's bf16 errors.
    assert!(
        measured.max > f64::from(DEFAULT_CONFIRM_BAND),
        "{measured:?}"
    );
    assert!(measured.band > DEFAULT_CONFIRM_BAND, "{measured:?}");
    assert!(measured.confirmed_share.unwrap() <= 0.5, "{measured:?}");
    // Stored in the model file, read back by the engine and used by default.
    let reloaded = Predictor::load(&sharp, &Device::Cpu).unwrap();
    assert_eq!(
        reloaded.meta.precision_band("openvino", "bf16"),
        Some(&measured)
    );
    let by_default = EngineOptions {
        choice: EngineChoice::Kind(EngineKind::OpenVino),
        precision: Precision::Bf16,
        threads: Some(2),
        confirm_band: None,
    };
    let confirmed = Predictor::load_with(&sharp, &Device::Cpu, &by_default).unwrap();
    assert!(
        confirmed
            .engine_description()
            .contains(&format!("within {} logits", measured.band)),
        "{}",
        confirmed.engine_description()
    );
    let raw = on_engine_with(&sharp, EngineKind::OpenVino, Precision::Bf16, 0.0).unwrap();
    let old_band = on_engine_with(
        &sharp,
        EngineKind::OpenVino,
        Precision::Bf16,
        DEFAULT_CONFIRM_BAND,
    )
    .unwrap();
    // The images the band was measured on (their scores sit around the thresholds).
    let images: Vec<image::RgbImage> = train_images(&candle, &data)
        .iter()
        .flatten()
        .map(|f| cras::data::decode::decode_rgb(f).unwrap())
        .collect();
    let batch = candle.preprocess(&images).unwrap();
    let n = images.len();
    let want = candle.predict_batch(&batch, &ClassChoice::Match).unwrap();
    let screen = raw.predict_batch(&batch, &ClassChoice::Match).unwrap();
    let error = |i: usize| cras::infer::engine::band::logit_error(screen[i].score, want[i].score);
    let worst = (0..n).map(error).fold(0f64, f64::max);
    assert!(worst > f64::from(DEFAULT_CONFIRM_BAND), "{worst}");
    // Each image's threshold just past its f32 score towards its bf16 score: only its f32
    // score decides it as f32 does.
    let unsaturated = |p: f32| p > 0.0 && p < 1.0;
    let at_image: Vec<f32> = (0..n)
        .map(|i| {
            let (e, l) = (want[i].score, screen[i].score);
            if unsaturated(e) && unsaturated(l) && error(i) > 0.01 {
                let x = logit(e) + 0.01 * (logit(l) - logit(e));
                (1.0 / (1.0 + (-x).exp())) as f32
            } else {
                0.5
            }
        })
        .collect();
    let at = |i: usize, _: usize| Some(at_image[i]);
    let decisions = |p: &Predictor| -> Vec<Decision> {
        p.predict_batch_at(&batch, &ClassChoice::Match, &at)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, q)| decide(q.score, at(i, 0)))
            .collect()
    };
    let exact: Vec<Decision> = (0..n).map(|i| decide(want[i].score, at(i, 0))).collect();
    assert_eq!(decisions(&confirmed), exact);
    // The old fixed band of 3 logits lets the images bf16 moved further flip.
    let flipped = decisions(&old_band)
        .iter()
        .zip(&exact)
        .filter(|(a, b)| a != b)
        .count();
    assert!(flipped > 0, "bf16 error up to {worst:.2} logits");
    let (c, scored) = confirmed.confirmed_at_f32().unwrap();
    assert!(c < scored && scored == n as u64, "{c} of {scored}");
    eprintln!(
        "bf16 error up to {worst:.2} logits: the measured band ({:.2}) keeps every decision \
         ({c} of {n} re-scored), the fixed band of 3 flips {flipped}",
        measured.band
    );

    // --confirm-band overrides the measured band.
    let given = on_engine_with(&sharp, EngineKind::OpenVino, Precision::Bf16, 0.25).unwrap();
    let got = given.predict_batch(&batch, &ClassChoice::Match).unwrap();
    let mut near = 0;
    for (i, ((a, b), r)) in want.iter().zip(&got).zip(&screen).enumerate() {
        let rescored = near_threshold(r.score, candle.threshold(a.class), 0.25);
        near += u64::from(rescored);
        assert_confirmation(i, a, b, r, rescored);
    }
    assert_eq!(given.confirmed_at_f32(), Some((near, n as u64)));
}

#[test]
fn a_precision_whose_measured_band_would_confirm_most_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &[]);
    let mut p = Predictor::load(&model, &Device::Cpu).unwrap();
    // As training stores it where bf16 errors span the scores: 7 of 10 images near threshold.
    p.meta.precision_bands = vec![cras::model::PrecisionBand {
        engine: "openvino".into(),
        precision: "bf16".into(),
        images_from: "held-out normal images".into(),
        images: 10,
        median: 2.5,
        mean: 2.7,
        p90: 5.0,
        max: 6.125,
        quantile: 0.99,
        quantile_error: 6.0,
        factor: 2.0,
        band: 12.0,
        confirmed_share: Some(0.7),
        measured_on: Some(cras::device::HostCpu::here()),
    }];
    let refused = tmp.path().join("refused.safetensors");
    p.save(&refused).unwrap();
    let options = |band: Option<f32>| EngineOptions {
        choice: EngineChoice::Kind(EngineKind::OpenVino),
        precision: Precision::Bf16,
        threads: Some(2),
        confirm_band: band,
    };
    let Err(e) = Predictor::load_with(&refused, &Device::Cpu, &options(None)) else {
        panic!("bf16 must be refused on a model where it would confirm 70% of the images");
    };
    let e = e.to_string();
    for part in ["6.12", "70%", "--precision f32", "--confirm-band"] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
    // The command says so and scores nothing.
    let image = train_images(&p, &data)[0][0].clone();
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["predict", "--model", refused.to_str().unwrap()])
        .arg(&image)
        .args(["--engine", "openvino", "--precision", "bf16", "--log=warn"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("70%") && err.contains("--precision f32"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A band given accepts the cost; f32 needs no band.
    match Predictor::load_with(&refused, &Device::Cpu, &options(Some(1.0))) {
        Ok(q) => assert!(q.engine_description().contains("within 1 logits")),
        Err(e) => crate::common::engine_unavailable("openvino bf16", true, &e),
    }
    let f32_options = EngineOptions {
        precision: Precision::F32,
        ..options(None)
    };
    if let Err(e) = Predictor::load_with(&refused, &Device::Cpu, &f32_options) {
        crate::common::engine_unavailable("openvino f32", false, &e);
    }
}

#[test]
fn int8_keeps_the_f32_decisions_within_its_measured_band_on_both_runtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained(tmp.path(), &["--epochs", "4"]);
    let candle = Predictor::load(&model, &Device::Cpu).unwrap();
    // Training calibrated the backbone for int8: resnet18 up to layer3, 15 convolutions.
    let cal = candle
        .meta
        .int8
        .as_ref()
        .expect("training stores the int8 calibration");
    assert_eq!(cal.inputs.len(), 15);
    assert_eq!(cal.images_from, "training images");
    let (batch, _) = test_batch(&candle, &data);
    let want = candle.predict_batch(&batch, &ClassChoice::Match).unwrap();
    for kind in [EngineKind::OpenVino, EngineKind::OnnxRuntime] {
        let Some(raw) = on_engine_with(&model, kind, Precision::Int8, 0.0) else {
            continue;
        };
        let measured = candle
            .meta
            .precision_band(kind.name(), "int8")
            .unwrap_or_else(|| panic!("training measured {kind} int8"))
            .clone();
        let by_default = EngineOptions {
            choice: EngineChoice::Kind(kind),
            precision: Precision::Int8,
            threads: Some(2),
            confirm_band: None,
        };
        let confirmed = Predictor::load_with(&model, &Device::Cpu, &by_default).unwrap();
        let screen = raw.predict_batch(&batch, &ClassChoice::Match).unwrap();
        let got = confirmed
            .predict_batch(&batch, &ClassChoice::Match)
            .unwrap();
        let errors: Vec<f64> = want
            .iter()
            .zip(&screen)
            .map(|(a, r)| (logit(r.score) - logit(a.score)).abs())
            .collect();
        eprintln!("{kind} int8: band {measured:?}, errors {errors:?}");
        // The graph really is quantized (scores move), and not broken (they stay close).
        assert!(errors.iter().any(|&e| e > 1e-4), "{errors:?}");
        assert!(errors.iter().all(|&e| e < 3.0), "{errors:?}");
        for (i, ((a, b), r)) in want.iter().zip(&got).zip(&screen).enumerate() {
            let t = candle.threshold(a.class);
            let rescored = near_threshold(r.score, t, measured.band);
            assert_confirmation(i, a, b, r, rescored);
            if errors[i] < f64::from(measured.band) {
                assert_eq!(decide(a.score, t), decide(b.score, t), "{kind} image {i}");
            }
        }
    }
}

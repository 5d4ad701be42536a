//! End to end on a tiny generated dataset: synth -> train -> model file -> predictor -> eval
//! files, as a user runs it (small images and dimensions so that it takes seconds).

use crate::common::tiny;
use std::path::Path;
use tiny::tiny_train_config;

use cras::data::synth::{generate, SynthConfig};
use cras::eval::{evaluate, EvalOptions};
use cras::infer::ClassChoice;
use cras::infer::Predictor;
use cras::model::file;
use cras::train::fit::FitConfig;
use cras::train::pipeline::{train, NoiseScale, Setting, TrainConfig};

fn config(data: &Path, seed: u64) -> TrainConfig {
    let mut cfg = tiny_train_config(data);
    cfg.recalibrate_bn = 8;
    cfg.fit.epochs = 2;
    cfg.fit.seed = seed;
    cfg
}

fn dataset(dir: &Path) {
    let cfg = SynthConfig {
        classes: 2,
        train_per_class: 6,
        test_good_per_class: 2,
        test_defect_per_class: 2,
        size: 48,
        defect_px: None,
        seed: 3,
    };
    generate(&cfg, dir).unwrap();
}

/// The first image `read_dir` lists in `<data>/<class>/test/good`, decoded.
fn first_good_test_image(data: &Path, class: &str) -> image::RgbImage {
    let good = data.join(class).join("test/good");
    let path = good.read_dir().unwrap().next().unwrap().unwrap().path();
    cras::data::decode::decode_rgb(&path).unwrap()
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = file::read_raw(path)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn train_predict_eval_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let model = tmp.path().join("m.safetensors");
    let summary = train(&config(&data, 1), &model, false, None).unwrap();
    let meta = &summary.meta;
    assert_eq!(meta.classes.len(), 2);
    assert!(meta.random_backbone());
    assert_eq!(meta.training.epochs_done, 2);
    let th = meta
        .thresholds
        .as_ref()
        .expect("thresholds calibrated on the hold-out");
    assert_eq!(th.per_class.len(), 2);
    assert!(th.holdout_images.iter().all(|&n| n >= 1));
    assert!(
        !cras::train::pipeline::partial_path(&model).exists(),
        "partial checkpoint left behind"
    );

    // Same seed, same model (every tensor bit-identical); another seed differs.
    let again = tmp.path().join("m2.safetensors");
    train(&config(&data, 1), &again, false, None).unwrap();
    assert_eq!(tensors(&model), tensors(&again));
    let other = tmp.path().join("m3.safetensors");
    train(&config(&data, 2), &other, false, None).unwrap();
    assert_ne!(tensors(&model), tensors(&other));

    // The reloaded model scores the held-out images exactly as calibration did, bit for bit.
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    assert_eq!(p.meta.classes, meta.classes);
    let split = cras::train::pipeline::split(&config(&data, 1)).unwrap();
    assert_eq!(split.holdout.len(), th.holdout_scores.len());
    for (k, paths) in split.holdout.iter().enumerate() {
        let images: Vec<_> = paths
            .iter()
            .map(|q| cras::data::decode::decode_rgb(q).unwrap())
            .collect();
        let got = p
            .predict_images(&images, &ClassChoice::Stated(vec![k; images.len()]))
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let got: Vec<f32> = got.iter().map(|x| x.score).collect();
        assert_eq!(
            bits(&got),
            bits(&th.holdout_scores[k]),
            "class {k}: reloaded held-out scores differ from calibration's"
        );
    }
    let img = first_good_test_image(&data, &meta.classes[0]);
    let a = p
        .predict_images(std::slice::from_ref(&img), &ClassChoice::Match)
        .unwrap();
    let b = p
        .predict_images(
            &[img.clone(), img.clone(), img],
            &ClassChoice::Stated(vec![a[0].class; 3]),
        )
        .unwrap();
    assert!(
        b.iter().all(|x| x.score.to_bits() == a[0].score.to_bits()),
        "score depends on the batch"
    );
    assert_eq!(a[0].patch_scores.len(), 16);
    let map = p.anomaly_map(&a[0]);
    assert_eq!(map.len(), 32 * 32);
    assert!(map.iter().all(|v| v.is_finite()));

    // eval writes the documented files with fractions or nulls.
    let out = tmp.path().join("eval");
    let opts = EvalOptions {
        progress: false,
        gallery_per_class: 2,
        ..EvalOptions::default()
    };
    let report = evaluate(&p, &model, &data, &out, &opts).unwrap();
    assert_eq!(report.images, 8);
    for f in [
        "metrics.json",
        "metrics.csv",
        "report.md",
        "roc_image.svg",
        "pr_image.svg",
        "gallery/index.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // scores.csv: one row per test image whose score is the single-image prediction's, bit
    // for bit, although evaluation scores images in batches.
    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "path,class,defect,anomalous,matched_class,score,threshold,decision"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let img = cras::data::decode::decode_rgb(std::path::Path::new(r[0])).unwrap();
        let single = p
            .predict_images(std::slice::from_ref(&img), &ClassChoice::Match)
            .unwrap();
        assert_eq!(r[5].parse::<f32>().unwrap(), single[0].score, "{r:?}");
        assert_eq!(r[3] == "1", r[2] != "good", "{r:?}");
        let t: f32 = r[6].parse().unwrap();
        let want = if single[0].score >= t { "defect" } else { "ok" };
        assert_eq!(r[7], want, "{r:?}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["classes"][0]["name"], meta.classes[0]);
    for scope in [&json["classes"][1], &json["mean"], &json["pooled"]] {
        for key in [
            "image_auroc",
            "image_ap",
            "image_f1max",
            "pixel_auroc",
            "pixel_ap",
            "pixel_f1max",
            "aupro",
        ] {
            let v = scope[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing: {scope}"));
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
    assert_eq!(json["random_backbone"], true);
    // Quality floor: the trained model ranks defects above good images and defect pixels above
    // normal ones better than chance. A model giving every image the same score fails it.
    if let Err(e) = quality_floor(&report) {
        panic!("{e}");
    }
    let mut constant = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    let hidden = constant.discriminator.tail.weight.dims()[1];
    constant.discriminator.tail = cras::model::layers::Linear::from_tensors(
        candle_core::Tensor::zeros(
            (1, hidden),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap(),
        None,
    )
    .unwrap();
    let flat = evaluate(&constant, &model, &data, &tmp.path().join("flat"), &opts).unwrap();
    let csv = std::fs::read_to_string(tmp.path().join("flat/scores.csv")).unwrap();
    let distinct: std::collections::BTreeSet<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap())
        .collect();
    assert_eq!(distinct.len(), 1, "the constant model gives one score");
    assert!(
        quality_floor(&flat).is_err(),
        "a constant model must fail the quality floor"
    );
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .to_lowercase()
        .contains("random"));
}

/// Pooled image and pixel AUROC strictly above chance (0.5, what constant scores give).
fn quality_floor(r: &cras::report::EvalReport) -> Result<(), String> {
    let image = r.pooled.image_auroc.unwrap_or(0.0);
    let pixel = r.pooled.pixel_auroc.unwrap_or(0.0);
    if image > 0.5 && pixel > 0.5 {
        Ok(())
    } else {
        Err(format!(
            "below the quality floor: pooled image AUROC {image:.3}, pixel AUROC {pixel:.3}"
        ))
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = train(
        &config(&missing, 0),
        &tmp.path().join("m.safetensors"),
        false,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope"), "{err}");
    let not_model = tmp.path().join("x.safetensors");
    std::fs::write(&not_model, b"garbage").unwrap();
    let err = Predictor::load(&not_model, &candle_core::Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("x.safetensors") && err.contains("not a cras model"),
        "{err}"
    );
    let data = tmp.path().join("data");
    dataset(&data);
    let mut single = config(&data, 0);
    single.setting = Setting::Single;
    let err = train(&single, &tmp.path().join("s.safetensors"), false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exactly one class"), "{err}");
    let err = train(
        &config(&data, 0),
        &tmp.path().join("r.safetensors"),
        true,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot resume"), "{err}");
}

#[test]
fn test_selection_is_opt_in_and_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let mut cfg = config(&data, 1);
    cfg.select_on_test = true;
    let err = train(&cfg, &tmp.path().join("x.safetensors"), false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--eval-every"), "{err}");
    cfg.eval_every = 1;
    let model = tmp.path().join("sel.safetensors");
    let mut log = Vec::new();
    let s = train(&cfg, &model, false, Some(&mut log)).unwrap();
    assert!(s.meta.test_selected);
    let epoch = s
        .meta
        .training
        .selected_epoch
        .expect("an epoch was selected");
    assert!(epoch < 2);
    let log = String::from_utf8(log).unwrap();
    assert_eq!(log.matches("\"test_eval\"").count(), 2, "{log}");
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    let out = tmp.path().join("eval");
    let opts = EvalOptions {
        progress: false,
        gallery_per_class: 0,
        ..EvalOptions::default()
    };
    let report = evaluate(&p, &model, &data, &out, &opts).unwrap();
    assert!(report.test_selected);
    let md = std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .to_lowercase();
    assert!(md.contains("test-selected"), "{md}");
}

/// Bits of every test image's image and patch scores under the model `path` (classes in model
/// order, images in path order, each routed by the global match).
fn test_scores(path: &Path, data: &Path) -> Vec<u32> {
    let p = Predictor::load(path, &candle_core::Device::Cpu).unwrap();
    let mut bits = Vec::new();
    for class in &p.meta.classes {
        let mut paths: Vec<_> = std::fs::read_dir(data.join(class).join("test"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let images: Vec<_> = paths
            .iter()
            .map(|q| cras::data::decode::decode_rgb(q).unwrap())
            .collect();
        for pred in p.predict_images(&images, &ClassChoice::Match).unwrap() {
            bits.push(pred.score.to_bits());
            bits.extend(pred.patch_scores.iter().map(|x| x.to_bits()));
        }
    }
    bits
}

/// Asserts that two model files hold bit-identical tensors, held-out scores and test scores;
/// the message gives the largest difference.
fn assert_same_model(whole: &Path, other: &Path, data: &Path, what: &str) {
    let (a, b) = (tensors(whole), tensors(other));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let worst = va
            .iter()
            .zip(vb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {na} differs (max |diff| {worst:e})");
    }
    let (sa, sb) = (test_scores(whole, data), test_scores(other, data));
    let worst = sa.iter().zip(&sb).fold(0f32, |m, (x, y)| {
        m.max((f32::from_bits(*x) - f32::from_bits(*y)).abs())
    });
    assert!(
        sa == sb,
        "{what}: test scores differ (max |diff| {worst:e})"
    );
    let meta = |p: &Path| {
        cras::model::file::load(p, &candle_core::Device::Cpu)
            .unwrap()
            .meta
    };
    let (ma, mb) = (meta(whole), meta(other));
    assert_eq!(ma.thresholds, mb.thresholds, "{what}: thresholds differ");
    assert_eq!(ma.training.noise.to_bits(), mb.training.noise.to_bits());
    assert_eq!(ma.training.optimiser_steps, mb.training.optimiser_steps);
}

/// A training log that fails on its `n`-th line, as a run killed mid-epoch stops.
struct FailingLog {
    lines: usize,
    fail_at: usize,
}

impl std::io::Write for FailingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        if self.lines >= self.fail_at {
            return Err(std::io::Error::other("killed"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn interrupted_run_resumes_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let cfg = |stop_after: Option<usize>| TrainConfig {
        stop_after,
        fit: FitConfig {
            epochs: 3,
            ..config(&data, 4).fit
        },
        ..config(&data, 4)
    };
    let whole = tmp.path().join("whole.safetensors");
    train(&cfg(None), &whole, false, None).unwrap();

    // Stopped at epoch 1, resumed and stopped again at epoch 2, resumed to the end: two stops
    // at epoch boundaries.
    let model = tmp.path().join("resumed.safetensors");
    let s = train(&cfg(Some(1)), &model, false, None).unwrap();
    assert!(s.meta.partial && s.meta.training.epochs_done == 1);
    assert!(
        !model.exists(),
        "no model file before the schedule is complete"
    );
    assert!(
        Predictor::load(&s.model, &candle_core::Device::Cpu).is_err(),
        "a partial checkpoint is not servable"
    );
    // Resuming with another seed, learning rate or noise would silently train another model.
    for change in ["seed", "lr", "noise"] {
        let mut other = cfg(None);
        match change {
            "seed" => other.fit.seed += 1,
            "lr" => other.fit.lr_adaptor *= 2.0,
            _ => other.noise = NoiseScale::Fixed(0.02),
        }
        let err = train(&other, &model, true, None).unwrap_err().to_string();
        assert!(
            err.contains("cannot resume")
                && err.contains(if change == "lr" { "lr_adaptor" } else { change }),
            "{change}: {err}"
        );
    }
    let s = train(&cfg(Some(2)), &model, true, None).unwrap();
    assert!(s.meta.partial && s.meta.training.epochs_done == 2);
    assert_eq!(s.history.len(), 1, "only epoch 2 ran");
    let done = train(&cfg(None), &model, true, None).unwrap();
    assert_eq!(done.meta.training.epochs_done, 3);
    assert_eq!(done.history.len(), 1, "only the remaining epoch ran");
    assert_same_model(&whole, &model, &data, "stopped at epochs 1 and 2");

    // Killed in the middle of epoch 2 (10 images, batches of 4: 3 step lines and 1 epoch line
    // per epoch; the 6th line is epoch 2's second step): the checkpoint holds epoch 1, the
    // resumed run repeats all of epoch 2.
    let killed = tmp.path().join("killed.safetensors");
    let mut log = FailingLog {
        lines: 0,
        fail_at: 6,
    };
    let err = train(&cfg(None), &killed, false, Some(&mut log)).unwrap_err();
    assert!(err.to_string().contains("killed"), "{err}");
    let partial = cras::model::file::load(
        &cras::train::pipeline::partial_path(&killed),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(partial.meta.training.epochs_done, 1);
    let done = train(&cfg(None), &killed, true, None).unwrap();
    assert_eq!(done.history.len(), 2, "epochs 2 and 3 ran");
    assert_same_model(&whole, &killed, &data, "killed in epoch 2");
}

#[test]
fn early_layers_give_a_finer_patch_grid_end_to_end() {
    use cras::backbone::Layer;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let mut cfg = config(&data, 0);
    cfg.descriptor.layers = vec![Layer::L1, Layer::L2];
    let model = tmp.path().join("early.safetensors");
    train(&cfg, &model, false, None).unwrap();
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    // layer1 has stride 4: a 32 px input gives an 8 x 8 grid (layer2 + layer3 give 4 x 4).
    assert_eq!(p.meta.grid, 8);
    assert_eq!(p.meta.descriptor.layers, vec![Layer::L1, Layer::L2]);
    let img = first_good_test_image(&data, &p.meta.classes[1]);
    let pred = p
        .predict_images(std::slice::from_ref(&img), &ClassChoice::Match)
        .unwrap();
    assert_eq!(pred[0].patch_scores.len(), 64);
    assert_eq!(pred[0].matched, 1, "routed to its own class");
    assert_eq!(p.anomaly_map(&pred[0]).len(), 32 * 32);
}

//! The flags that reproduce the authors' protocol (README "What differs from the authors'
//! protocol"), each checked on a tiny model trained by the CLI: `--holdout 0`, `--lr` setting
//! the discriminator's rate, the test-set selection's batch vote, `cras eval --batch-vote
//! --vote-group`, `cras eval --pro reference` and `--reference-masks` on grey masks.

use crate::common;
use common::cras;
use std::path::PathBuf;
use std::sync::OnceLock;

use cras::data::{discover, MaskMode, Preprocess, ResizeMode};
use cras::eval::{evaluate, scoring_pass, EvalOptions, ProMode};
use cras::infer::batch_vote;
use cras::infer::Predictor;
use cras::metrics::pro::aupro_reference;

struct Trained {
    _dir: tempfile::TempDir,
    data: PathBuf,
    model: PathBuf,
    log: PathBuf,
}

/// 2 classes x 8 normal training images; one run of `cras train` with every reference flag.
fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let model = dir.path().join("m.safetensors");
        let log = dir.path().join("m.log.jsonl");
        let d = data.to_str().unwrap();
        cras(&[
            "synth",
            "--out",
            d,
            "--classes",
            "2",
            "--train",
            "8",
            "--test-good",
            "3",
            "--test-defect",
            "4",
            "--size",
            "48",
            "--seed",
            "7",
        ]);
        cras(&[
            "train",
            "--data",
            d,
            "--out",
            model.to_str().unwrap(),
            "--backbone",
            "resnet18",
            "--image-size",
            "32",
            "--dims",
            "32",
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--noise",
            "auto",
            "--holdout",
            "0",
            "--lr",
            "3e-4",
            "--eval-every",
            "1",
            "--select-on-test",
            "--select-batch-vote",
            "--reference-masks",
            "--device",
            "cpu",
            "--train-log",
            log.to_str().unwrap(),
            "--quiet",
        ]);
        Trained {
            _dir: dir,
            data,
            model,
            log,
        }
    })
}

fn predictor(t: &Trained) -> Predictor {
    Predictor::load(&t.model, &candle_core::Device::Cpu).unwrap()
}

fn quiet(mut o: EvalOptions) -> EvalOptions {
    o.progress = false;
    o.gallery_per_class = 0;
    o
}

#[test]
fn holdout_zero_trains_on_every_normal_image_and_stores_no_thresholds() {
    let t = trained();
    let p = predictor(t);
    assert_eq!(p.meta.training.images, 16, "all 2 x 8 normal images train");
    assert!(p.meta.thresholds.is_none());
    // Scores only: no stored threshold, so every decision is "no threshold".
    let class = &p.meta.classes[0];
    let image = t.data.join(class).join("test/good/000.png");
    let out = cras(&[
        "predict",
        "--model",
        t.model.to_str().unwrap(),
        "--device",
        "cpu",
        image.to_str().unwrap(),
    ]);
    assert!(out.contains("no threshold"), "{out}");
}

#[test]
fn lr_sets_the_discriminator_to_twice_it() {
    let p = predictor(trained());
    let fit = &p.meta.config["fit"];
    assert_eq!(fit["lr_adaptor"].as_f64(), Some(3e-4));
    assert_eq!(fit["lr_discriminator"].as_f64(), Some(6e-4));
}

/// The selection's test-set figures (batch vote over groups of the batch size, truncated
/// masks) are what `cras eval --batch-vote --vote-group 4` reports for the same head.
#[test]
fn selection_scores_the_test_set_as_eval_batch_vote_does() {
    let t = trained();
    let p = predictor(t);
    assert!(p.meta.test_selected);
    assert_eq!(p.meta.preprocess.mask_mode, MaskMode::ReferenceTruncate);
    let log = std::fs::read_to_string(&t.log).unwrap();
    let line: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "test_eval")
        .expect("a test_eval line");
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet(EvalOptions {
        batch_vote: true,
        vote_group: 4,
        ..EvalOptions::default()
    });
    let r = evaluate(&p, &t.model, &t.data, dir.path(), &opts).unwrap();
    let (i, px) = (r.mean.image_auroc.unwrap(), r.mean.pixel_auroc.unwrap());
    assert!(
        (line["image_auroc"].as_f64().unwrap() - i).abs() < 1e-9,
        "{line} vs {i}"
    );
    assert!(
        (line["pixel_auroc"].as_f64().unwrap() - px).abs() < 1e-9,
        "{line} vs {px}"
    );
    assert_eq!(r.config["vote_group"], 4);
}

/// A dataset whose first class's test folder also holds the other class's images (sorted
/// after its own), so that a vote over a group that spans both changes the routing.
fn mixed_dataset(t: &Trained, classes: &[String], dir: &std::path::Path) -> PathBuf {
    let root = dir.join("mixed");
    let (a, b) = (&classes[0], &classes[1]);
    let good = root.join(a).join("test/good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(root.join(a).join("train/good")).unwrap();
    let copy = |from: PathBuf, to: PathBuf| std::fs::copy(from, to).unwrap();
    copy(
        t.data.join(a).join("train/good/000.png"),
        root.join(a).join("train/good/000.png"),
    );
    for i in 0..3 {
        copy(
            t.data.join(a).join(format!("test/good/{i:03}.png")),
            good.join(format!("a{i}.png")),
        );
    }
    for i in 0..2 {
        copy(
            t.data.join(b).join(format!("test/good/{i:03}.png")),
            good.join(format!("b{i}.png")),
        );
    }
    root
}

/// `--vote-group N`: each class's images, in order, vote in runs of N.
#[test]
fn batch_vote_votes_over_groups_of_the_vote_group() {
    let t = trained();
    let p = predictor(t);
    let dir = tempfile::tempdir().unwrap();
    let root = mixed_dataset(t, &p.meta.classes, dir.path());
    let ds = discover(&root, None).unwrap();
    let matched = scoring_pass(&p, &ds, &quiet(EvalOptions::default())).unwrap();
    let ms: Vec<usize> = matched.classes[0]
        .images
        .iter()
        .map(|r| r.matched)
        .collect();
    assert_eq!(
        ms,
        [0, 0, 0, 1, 1],
        "the tiny model routes these images to their classes"
    );
    for (g, expect) in [
        (1usize, vec![0, 0, 0, 1, 1]),
        (2, vec![0, 0, 0, 0, 1]), // groups [0 0] [0 1] (a tie: the smaller index) [1]
        (3, vec![0, 0, 0, 1, 1]),
        (4, vec![0, 0, 0, 0, 1]),
        (32, vec![0, 0, 0, 0, 0]),
    ] {
        let opts = quiet(EvalOptions {
            batch_vote: true,
            vote_group: g,
            ..EvalOptions::default()
        });
        let voted = scoring_pass(&p, &ds, &opts).unwrap();
        let got: Vec<usize> = voted.classes[0].images.iter().map(|r| r.class).collect();
        assert_eq!(got, expect, "group {g}");
        let from_votes: Vec<usize> = ms
            .chunks(g)
            .flat_map(|c| vec![batch_vote(c, 2); c.len()])
            .collect();
        assert_eq!(got, from_votes, "group {g}");
        let still: Vec<usize> = voted.classes[0].images.iter().map(|r| r.matched).collect();
        assert_eq!(still, ms, "the global match is still recorded");
    }
}

#[test]
fn eval_pro_reference_reports_the_reference_pro() {
    let t = trained();
    let p = predictor(t);
    let ds = discover(&t.data, None).unwrap();
    let pass = scoring_pass(&p, &ds, &quiet(EvalOptions::default())).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    cras(&[
        "eval",
        "--model",
        t.model.to_str().unwrap(),
        "--data",
        t.data.to_str().unwrap(),
        "--out",
        o,
        "--pro",
        "reference",
        "--gallery",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(m["config"]["pro"], "reference");
    let standard = quiet(EvalOptions::default());
    let std_report = evaluate(&p, &t.model, &t.data, &out.path().join("std"), &standard).unwrap();
    assert_eq!(std_report.config["pro"], "standard");
    for (k, c) in pass.classes.iter().enumerate() {
        let want = c.acc.aupro_reference(200).expect("defined");
        let got = m["classes"][k]["aupro"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", c.name);
        assert!(std_report.classes[k].metrics.aupro.is_some());
    }
    let reference_mode = quiet(EvalOptions {
        pro: ProMode::Reference,
        ..EvalOptions::default()
    });
    let r = evaluate(
        &p,
        &t.model,
        &t.data,
        &out.path().join("ref"),
        &reference_mode,
    )
    .unwrap();
    assert_eq!(r.mean.aupro, m["mean"]["aupro"].as_f64());
}

/// A grey mask (left half 255, right half 200): the reference resizes the grey levels and
/// keeps only exact 255, so the right half is normal; binarising first makes it all defect.
#[test]
fn reference_masks_resize_the_raw_grey_mask_then_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.png");
    let img =
        image::GrayImage::from_fn(16, 16, |x, _| image::Luma([if x < 8 { 255 } else { 200 }]));
    img.save(&path).unwrap();
    let pre = |mask_mode| Preprocess {
        resize: 8,
        crop: 8,
        mode: ResizeMode::Square,
        mask_mode,
        tiling: None,
    };
    let binarised = pre(MaskMode::Binarize).load_mask(&path).unwrap();
    assert!(binarised.iter().all(|&v| v == 1));
    let truncated = pre(MaskMode::ReferenceTruncate).load_mask(&path).unwrap();
    for y in 0..8 {
        let row = &truncated[y * 8..y * 8 + 8];
        // Output columns 0-2 see only 255; column 3 blends in 200; 4-7 are below 255.
        assert_eq!(row, &[1, 1, 1, 0, 0, 0, 0, 0], "row {y}");
    }
}

/// The accumulator's reference PRO is `aupro_reference` over its images, defect-free ones
/// with all-zero masks.
#[test]
fn accumulator_reference_pro_matches_the_function() {
    let mut acc = cras::metrics::EvalAccumulator::new(4);
    let maps: Vec<Vec<f32>> = (0..3)
        .map(|i| {
            (0..16)
                .map(|p| ((p * 7 + i * 5) % 11) as f32 / 10.0)
                .collect()
        })
        .collect();
    let mut m0 = vec![0u8; 16];
    m0[5] = 1;
    m0[6] = 1;
    let zeros = vec![0u8; 16];
    acc.push(1.0, true, &maps[0], Some(&m0)).unwrap();
    acc.push(0.2, false, &maps[1], None).unwrap();
    acc.push(0.3, false, &maps[2], Some(&zeros)).unwrap();
    let want = aupro_reference(
        &[&maps[0], &maps[1], &maps[2]],
        &[&m0, &zeros, &zeros],
        4,
        4,
        200,
    );
    assert!(want.is_some());
    assert_eq!(acc.aupro_reference(200), want);
}

/// Parity with torchvision on a grey mask (levels 0, 60, 200, 255; fixture by
/// `dev/gen_grey_mask_fixture.py`): `--reference-masks` gives exactly the reference's truncated
/// mask, while binarising first would count the grey regions.
#[test]
fn reference_masks_match_torchvision_on_a_grey_mask() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess");
    let file = dir.join("grey_mask_45x31.png");
    for (name, resize, crop, mode) in [
        ("short_20_16", 20, 16, ResizeMode::ShorterSideThenCenterCrop),
        ("square_16", 16, 16, ResizeMode::Square),
    ] {
        let pre = |mask_mode| Preprocess {
            resize,
            crop,
            mode,
            mask_mode,
            tiling: None,
        };
        let want = std::fs::read(dir.join(format!("grey_mask__{name}.u8"))).unwrap();
        let got = pre(MaskMode::ReferenceTruncate).load_mask(&file).unwrap();
        assert_eq!(got, want, "{name}");
        let binarised = pre(MaskMode::Binarize).load_mask(&file).unwrap();
        let count = |v: &[u8]| v.iter().map(|&x| x as usize).sum::<usize>();
        assert!(count(&binarised) > count(&got), "{name}");
    }
}

/// `cras eval --reference-masks` overrides the model's mask handling for one evaluation.
#[test]
fn eval_mask_mode_override_is_applied_and_reported() {
    let t = trained();
    let p = predictor(t);
    let dir = tempfile::tempdir().unwrap();
    let as_trained = evaluate(
        &p,
        &t.model,
        &t.data,
        dir.path(),
        &quiet(EvalOptions::default()),
    )
    .unwrap();
    assert_eq!(as_trained.config["mask_mode"], "ReferenceTruncate");
    let opts = quiet(EvalOptions {
        mask_mode: Some(MaskMode::Binarize),
        ..EvalOptions::default()
    });
    let overridden = evaluate(&p, &t.model, &t.data, &dir.path().join("b"), &opts).unwrap();
    assert_eq!(overridden.config["mask_mode"], "Binarize");
    let out = dir.path().join("cli");
    cras(&[
        "eval",
        "--model",
        t.model.to_str().unwrap(),
        "--data",
        t.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--reference-masks",
        "--gallery",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["config"]["mask_mode"], "ReferenceTruncate");
}

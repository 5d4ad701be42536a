//! `cras import-reference` against a checkpoint and center bank written by the AUTHORS' code
//! (`dev/gen_reference_checkpoint.py`: their `CRAS.load` + `trainer` at a tiny configuration,
//! ResNet18 layer1 + layer2, 64 px, 32 dimensions, 2 classes; then their `_predict` on each test
//! image alone). The imported model must give their image scores and anomaly maps.
//!
//! Tolerance: 1e-5 on scores and maps. Both sides compute in f32, but torch and candle sum the
//! convolutions and matrix products in different orders, so the last bits may differ (measured:
//! 1.2e-7, one unit in the last place); 1e-5 is far below any real difference (a wrong center,
//! class or BatchNorm statistic moves the scores by 1e-3 or more).

use std::path::{Path, PathBuf};

use std::process::Command;

use cras::data::decode::decode_rgb;
use cras::infer::{ClassChoice, Predictor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_import")
}

fn import(out: &Path, extra: &[&str]) -> std::process::Output {
    import_from(&fixture().join("ckpt_best.pth"), out, extra)
}

fn import_from(checkpoint: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let f = fixture();
    let arg = |n: &str| f.join(n).to_str().unwrap().to_owned();
    let mut args: Vec<String> = [
        "import-reference",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--centers",
        &arg("center.pth"),
        "--weights",
        &arg("backbone.pth"),
        "--backbone",
        "resnet18",
        "--layers",
        "layer1,layer2",
        "--resize",
        "72",
        "--image-size",
        "64",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--log=warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(&args)
        .output()
        .unwrap()
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
        .unwrap()
}

#[test]
fn imported_model_scores_as_the_authors_predict() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("imported.safetensors");
    let out = import(
        &model,
        &[
            "--classes",
            "plaid,spots",
            "--dims",
            "32",
            "--reference-masks",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    assert_eq!(p.meta.classes, ["plaid", "spots"]);
    assert!(
        p.meta.test_selected,
        "ckpt_best_* was chosen on the test set"
    );
    assert!(p.meta.thresholds.is_none());
    assert_eq!(
        p.meta.preprocess.mask_mode,
        cras::data::MaskMode::ReferenceTruncate
    );
    assert_eq!((p.meta.preprocess.resize, p.meta.preprocess.crop), (72, 64));
    let e = expected();
    let names: Vec<String> = e["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let images: Vec<image::RgbImage> = names
        .iter()
        .map(|n| decode_rgb(&fixture().join("test").join(n)).unwrap())
        .collect();
    let preds = p.predict_images(&images, &ClassChoice::Match).unwrap();
    let bytes = std::fs::read(fixture().join("maps.bin")).unwrap();
    let maps: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let side = 64;
    assert_eq!(maps.len(), names.len() * side * side);
    let (mut worst_score, mut worst_map) = (0f32, 0f32);
    for (i, (pred, name)) in preds.iter().zip(&names).enumerate() {
        let want = e["scores"][i].as_f64().unwrap() as f32;
        worst_score = worst_score.max((pred.score - want).abs());
        // Each image is its class's (the authors' per-image vote is its own match).
        assert_eq!(p.meta.classes[pred.class], name.split('_').next().unwrap());
        let map = p.anomaly_map(pred);
        let want_map = &maps[i * side * side..(i + 1) * side * side];
        for (a, b) in map.iter().zip(want_map) {
            worst_map = worst_map.max((a - b).abs());
        }
    }
    eprintln!("max |score diff| {worst_score:e}, max |map diff| {worst_map:e}");
    assert!(worst_score < 1e-5, "scores differ by {worst_score}");
    assert!(worst_map < 1e-5, "maps differ by {worst_map}");
}

#[test]
fn import_names_the_file_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    // Three classes for a two-class center bank.
    let out = import(&model, &["--classes", "a,b,c", "--dims", "32"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("center.pth") && err.contains("[3, 256, 32]"),
        "{err}"
    );
    // Wrong width: the checkpoint is named, with the tensor that does not fit.
    let out = import(&model, &["--classes", "plaid,spots", "--dims", "64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ckpt_best.pth") && err.contains("pre_projection.layers.0fc.weight"),
        "{err}"
    );
    // Not a checkpoint at all.
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a pickle").unwrap();
    let out = import_from(&junk, &model, &["--classes", "plaid,spots", "--dims", "32"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pth"));
    assert!(!model.exists());
}

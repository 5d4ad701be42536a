//! A model that loads is a model that scores: metadata whose crop exceeds its resize, metadata
//! of one width over tensors of another, and NaN weights are refused at load by every command
//! (the library's `Predictor::load`, `cras predict`, `cras serve` at start and on reload), with
//! an error naming the file.

use crate::serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Tensor;
use cras::infer::Predictor;
use cras::model::file::{read_raw, write_raw};
use cras::serve::{ServeConfig, Server};
use serve_support::{tiny_model, TestServer};

/// The tiny model rewritten by `edit` (metadata, tensors) into `dir/name`.
fn variant(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value, &mut Vec<(String, Tensor)>),
) -> PathBuf {
    let raw = read_raw(&tiny_model().model).unwrap();
    let mut meta = raw.meta;
    let mut tensors: Vec<(String, Tensor)> = raw.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut meta, &mut tensors);
    let path = dir.join(name);
    write_raw(&path, &meta, &tensors).unwrap();
    path
}

fn set_nan(tensors: &mut [(String, Tensor)], name: &str) {
    let t = &mut tensors.iter_mut().find(|(n, _)| n == name).unwrap().1;
    let mut v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v[0] = f32::NAN;
    *t = Tensor::from_vec(v, t.dims(), t.device()).unwrap();
}

/// The three bad variants of the tiny model, with a word their error must hold.
fn bad_models(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let crop_over_resize = variant(dir, "crop.safetensors", |meta, _| {
        meta["preprocess"]["mode"] = "ShorterSideThenCenterCrop".into();
        meta["preprocess"]["resize"] = 16.into();
    });
    // The metadata of a 64-wide model over the tensors of the 32-wide one.
    let other_width = variant(dir, "width.safetensors", |meta, _| {
        meta["descriptor"]["dims"] = 64.into();
    });
    let nan = variant(dir, "nan.safetensors", |_, tensors| {
        set_nan(tensors, "discriminator.tail.0.weight")
    });
    let nan_backbone = variant(dir, "nanbb.safetensors", |_, tensors| {
        let name = tensors
            .iter()
            .find(|(n, _)| n.starts_with("backbone.") && n.ends_with("weight"))
            .unwrap()
            .0
            .clone();
        set_nan(tensors, &name)
    });
    vec![
        (crop_over_resize, "resize"),
        (other_width, "shape"),
        (nan, "NaN"),
        (nan_backbone, "NaN"),
    ]
}

#[test]
fn bad_models_are_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The unchanged model still loads (and passes its test forward pass).
    Predictor::load(&tiny_model().model, &candle_core::Device::Cpu).expect("good model loads");
    for (path, needle) in bad_models(dir.path()) {
        let err = match Predictor::load(&path, &candle_core::Device::Cpu) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&path.display().to_string()) && err.contains(needle),
            "{}: error '{err}' lacks the file or '{needle}'",
            path.display()
        );
    }
}

#[test]
fn predict_refuses_bad_models_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let image = &tiny_model().images[0];
    for (path, needle) in bad_models(dir.path()) {
        let out = Command::new(env!("CARGO_BIN_EXE_cras"))
            .args(["predict", "--device", "cpu", "--model"])
            .arg(&path)
            .arg(image)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{}: {stderr}",
            path.display()
        );
        assert!(
            out.stdout.is_empty(),
            "no score is printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn serve_refuses_bad_models_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(|_| {});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (path, needle) in bad_models(dir.path()) {
        let mut config = ServeConfig::new(&path);
        config.addr = "127.0.0.1:0".into();
        config.device = "cpu".into();
        let err = match runtime.block_on(Server::bind(&config)) {
            Ok(_) => panic!("serve started on {}", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{err}");
        let err = server.handle.reload_from(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains(needle),
            "{err}"
        );
        assert_eq!(
            server.handle.generation(),
            1,
            "the bad model is not swapped in"
        );
    }
    assert_eq!(
        server.handle.reload().unwrap(),
        2,
        "a good reload still works"
    );
}

//! Fuzzing of the model-file reader (a seeded mutation loop, see `common/mutate.rs`): a tiny
//! valid model file, mutated in its safetensors header (tensor names, dtypes, shapes, data
//! offsets), its cras metadata JSON (any field removed or set to an awkward value), its tensor
//! data (NaN, infinities, random bytes) or as raw bytes (truncation, length prefix, flips), must
//! load (`Predictor::load`: the file's reader, its checks and the test forward pass) to `Ok` or
//! a clean `Err` naming the file, never panic. `CRAS_FUZZ_CASES` runs longer, `CRAS_FUZZ_SEED`
//! picks another sequence.

use crate::common::mutate;

use crate::common::tiny;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tiny::tiny_train_config;

use cras::backbone::Layer;
use cras::data::synth::{generate, SynthConfig};
use cras::infer::Predictor;
use cras::train::pipeline::train;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Trains the smallest model the pipeline makes (resnet18 to layer2, 16-wide descriptors, one
/// class at 32x32): a file of about 3 MB.
fn tiny_model(dir: &Path) -> Vec<u8> {
    let data = dir.join("data");
    let synth = SynthConfig {
        classes: 1,
        train_per_class: 4,
        test_good_per_class: 1,
        test_defect_per_class: 1,
        size: 32,
        defect_px: None,
        seed: 0,
    };
    generate(&synth, &data).unwrap();
    let mut cfg = tiny_train_config(&data);
    cfg.descriptor.layers = vec![Layer::L2];
    cfg.descriptor.dims = 16;
    cfg.holdout = 0.0;
    cfg.cache_budget_mb = 16;
    let model = dir.join("model.safetensors");
    train(&cfg, &model, false, None).unwrap();
    std::fs::read(&model).unwrap()
}

/// The safetensors parts: header JSON and tensor data (None when not a safetensors layout).
fn split(file: &[u8]) -> Option<(serde_json::Value, &[u8])> {
    let n = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
    let header = serde_json::from_slice(file.get(8..8usize.checked_add(n)?)?).ok()?;
    Some((header, &file[8 + n..]))
}

fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// One mutation of a model file (see the module docs).
fn mutate_model(rng: &mut ChaCha8Rng, file: &mut Vec<u8>) {
    let Some((mut header, data)) = split(file) else {
        return mutate::mutate_bytes(rng, file);
    };
    let mut data = data.to_vec();
    match rng.gen_range(0..5) {
        // The tensor index: names, dtypes, shapes, offsets.
        0 => {
            let meta = header
                .as_object_mut()
                .and_then(|h| h.remove("__metadata__"));
            mutate::mutate_json(rng, &mut header);
            if let (Some(m), Some(h)) = (meta, header.as_object_mut()) {
                h.insert("__metadata__".into(), m);
            }
        }
        // The cras metadata document.
        1 | 2 => {
            let cras = header["__metadata__"]["cras"]
                .as_str()
                .unwrap_or("{}")
                .to_string();
            let mut doc: serde_json::Value = serde_json::from_str(&cras).unwrap();
            for _ in 0..rng.gen_range(1..=2) {
                mutate::mutate_json(rng, &mut doc);
            }
            header["__metadata__"]["cras"] = doc.to_string().into();
        }
        // Tensor values: NaN, infinities, huge, random.
        3 => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..data.len() / 4) * 4;
                let v: f32 = [
                    f32::NAN,
                    f32::INFINITY,
                    -f32::INFINITY,
                    1e38,
                    0.0,
                    rng.gen(),
                ][rng.gen_range(0..6)];
                data[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        // Raw bytes: anywhere in the file, the length prefix included.
        _ => {
            let mut raw = join(&header, &data);
            if rng.gen_bool(0.3) {
                let n = [0u64, 1, 7, u64::MAX, 1 << 40, raw.len() as u64][rng.gen_range(0..6)];
                raw[..8].copy_from_slice(&n.to_le_bytes());
            } else {
                // Most of the file is tensor data: aim at the header half of the time.
                let header_end = 8 + header.to_string().len();
                if rng.gen_bool(0.5) {
                    let mut head = raw[..header_end].to_vec();
                    mutate::mutate_bytes(rng, &mut head);
                    raw.splice(..header_end, head);
                } else {
                    mutate::mutate_bytes(rng, &mut raw);
                }
            }
            *file = raw;
            return;
        }
    }
    *file = join(&header, &data);
}

#[test]
fn mutated_model_files_load_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let valid = tiny_model(dir.path());
    let path = dir.path().join("fuzzed.safetensors");
    std::fs::write(&path, &valid).unwrap();
    Predictor::load(&path, &candle_core::Device::Cpu).expect("the unmutated model loads");
    let n = mutate::cases(300);
    let (mut ok, mut err) = (0usize, 0usize);
    let mut panics = Vec::new();
    for i in 0..n {
        let mut rng = mutate::case_rng(i);
        let mut bytes = valid.clone();
        mutate_model(&mut rng, &mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| {
            Predictor::load(&path, &candle_core::Device::Cpu).map(|_| ())
        })) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("fuzzed.safetensors"),
                    "case {i}: the error must name the file: {msg}"
                );
                err += 1;
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push(format!("case {i}: {msg}"));
            }
        }
    }
    eprintln!(
        "fuzz_model_file: {n} cases, {ok} loaded, {err} clean errors, {} panics",
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "panics (rerun one with CRAS_FUZZ_CASES):\n{}",
        panics.join("\n")
    );
    if n >= 100 {
        assert!(
            ok * 20 >= n && err * 4 >= n,
            "{ok} loaded, {err} errors of {n}"
        );
    }
}

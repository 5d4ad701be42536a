//! Shared test helpers: reading the parity fixtures written by the `dev/gen_*_fixtures.py`
//! scripts (a JSON index of `{name: {shape, offset}}` beside one little-endian f32 `.bin`).
#![allow(dead_code)]

pub mod hostile;
pub mod mutate;
pub mod tiny;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// Path of a file under tests/fixtures.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A loaded fixture: the JSON metadata and every tensor by name.
pub struct Fixture {
    pub meta: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
}

impl Fixture {
    /// Loads `<stem>.json` + `<stem>.bin` (stem relative to tests/fixtures).
    pub fn load(stem: &str) -> Fixture {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture_path(&format!("{stem}.json"))).expect("fixture json"),
        )
        .expect("fixture json parses");
        let bytes = std::fs::read(fixture_path(&format!("{stem}.bin"))).expect("fixture bin");
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut tensors = HashMap::new();
        for (name, entry) in meta["tensors"].as_object().expect("tensors index") {
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let off = entry["offset"].as_u64().unwrap() as usize;
            let n: usize = shape.iter().product();
            let t = Tensor::from_vec(floats[off..off + n].to_vec(), shape, &Device::Cpu).unwrap();
            tensors.insert(name.clone(), t);
        }
        Fixture { meta, tensors }
    }

    /// Tensor by name.
    pub fn get(&self, name: &str) -> Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no tensor {name}"))
            .clone()
    }

    /// Tensors whose names start with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
            .collect()
    }
}

/// Largest relative difference max|a-b| / max(max|b|, tiny).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Runs the `cras` binary with `args` (logging at warn), asserts it succeeded and returns its
/// standard output.
pub fn cras(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(args)
        .arg("--log=warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cras {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16), the condition under
/// which OpenVINO runs a bf16 model. On other CPUs a bf16 engine is refused with a message
/// and the bf16 tests are skipped even when `CRAS_REQUIRE_RUNTIMES=1` (the runtimes are
/// present; the hardware is what is missing).
pub fn cpu_runs_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.split_whitespace()
            .any(|flag| flag == "avx512_bf16" || flag == "amx_bf16")
    })
}

/// A runtime engine that failed to load: a panic when `CRAS_REQUIRE_RUNTIMES=1` (unless it is
/// a bf16 engine on a CPU without bf16, see [`cpu_runs_bf16`]), else a printed skip.
pub fn engine_unavailable(what: &str, bf16: bool, e: &dyn std::fmt::Display) {
    let required = std::env::var("CRAS_REQUIRE_RUNTIMES").is_ok_and(|v| v == "1");
    if required && (!bf16 || cpu_runs_bf16()) {
        panic!("{what} is required (CRAS_REQUIRE_RUNTIMES=1) but failed: {e}");
    }
    eprintln!("SKIPPED {what}: {e}");
}
